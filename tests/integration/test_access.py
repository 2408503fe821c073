"""Access that protects credentials: with `-o allow_other` every local user
could read user:pass@ of every proxy. `[proxyfs] group` and `file_mode`
(0440 with a group, 0444 without) are applied to every reader file and
enforced by the kernel (default_permissions); `hide_credentials = yes`
leaves credentials out of every file but control/.

Each test reads the mount as user nobody, with or without a supplementary
group, the way `runuser -u nobody -- cat MNT/random` would.
"""

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest

import hostile
import peers
from conftest import wait_until

# Run as nobody: reads each file named and prints one JSON object
# {file: [errno name or "ok", content]}.
PROBE = r"""
import errno, json, os, sys
out = {}
for rel in sys.argv[2:]:
    try:
        with open(os.path.join(sys.argv[1], rel), "rb") as f:
            out[rel] = ["ok", f.read().decode()]
    except OSError as e:
        out[rel] = [errno.errorcode.get(e.errno, str(e.errno)), ""]
print(json.dumps(out))
"""
PROBE_TIMEOUT = 30

# Every reader file of the tree that may carry a proxy's URI.
READERS = ["random", "next", "live.txt", "live.json", "stat.json", "socks5/random",
           "socks5/live.txt", "anonymity/elite/live.txt", "sources/local/live.txt",
           "all.json", "dead.txt", "removed.txt"]


def as_nobody(mnt, files, groups=()):
    """Reads files as nobody (supplementary groups: gids); {file: (outcome, text)}."""
    pw = pwd.getpwnam("nobody")

    def drop():
        os.setgroups(list(groups))
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    p = subprocess.run([peers.PYTHON, "-c", PROBE, mnt, *files], preexec_fn=drop,
                       capture_output=True, text=True, timeout=PROBE_TIMEOUT, cwd="/")
    assert p.returncode == 0, "the probe as nobody failed: %s" % p.stderr
    return {k: tuple(v) for k, v in json.loads(p.stdout).items()}


@pytest.fixture
def open_dir():
    """A directory under /tmp that every user may traverse."""
    path = tempfile.mkdtemp(prefix="proxyfs-access-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start(mounts, peer_set, tmp, mnt, proxyfs_keys):
    """A daemon over the good proxies, with proxyfs_keys added to [proxyfs]."""
    lst = hostile.write_lines(os.path.join(tmp, "list.txt"), [p.line for p in peer_set.good])
    conf = hostile.write_conf(tmp, peer_set.judge, lst)
    with open(conf) as f:
        text = f.read()
    extra = "".join("%s = %s\n" % kv for kv in proxyfs_keys.items())
    with open(conf, "w") as f:
        f.write(text.replace("[proxyfs]\n", "[proxyfs]\n" + extra, 1))
    d = mounts.new(conf, mnt=mnt).start(["-o", "allow_other"])
    d.sync()
    assert len(d.live()) == len(peer_set.good_uris), d.live()
    return d


def test_group_and_mode_keep_readers_to_the_group(mounts, peer_set, open_dir, tmp_path):
    group = grp.getgrnam("adm")
    mnt = os.path.join(open_dir, "mnt")
    d = start(mounts, peer_set, str(tmp_path), mnt, {"group": "adm"})

    for rel in READERS + ["metrics", "health"]:
        st = os.stat(os.path.join(mnt, rel))
        assert stat.S_IMODE(st.st_mode) == 0o440 and st.st_gid == group.gr_gid, \
            "%s: mode %o gid %d, expected 0440 and adm" % (rel, st.st_mode, st.st_gid)
    st = os.stat(os.path.join(mnt, "control/add"))
    assert stat.S_IMODE(st.st_mode) == 0o200, "control/add: mode %o" % st.st_mode

    # Not in the group: the kernel refuses every reader file.
    p = subprocess.run(["runuser", "-u", "nobody", "--", "cat", os.path.join(mnt, "random")],
                       capture_output=True, text=True, timeout=PROBE_TIMEOUT, cwd="/")
    assert p.returncode != 0 and "Permission denied" in p.stderr and not p.stdout, p
    seen = as_nobody(mnt, READERS)
    for rel in READERS:
        assert seen[rel][0] == "EACCES", "nobody read %s: %r" % (rel, seen[rel])
    # In the group: readable, with the credentials (they are not hidden).
    seen = as_nobody(mnt, READERS, groups=[group.gr_gid])
    for rel in READERS:
        assert seen[rel][0] == "ok", "nobody in adm reading %s: %r" % (rel, seen[rel])
    assert peer_set.socks5_auth.uri in seen["live.txt"][1]
    d.stop()


def test_file_mode_without_group(mounts, peer_set, open_dir, tmp_path):
    mnt = os.path.join(open_dir, "mnt")
    d = start(mounts, peer_set, str(tmp_path), mnt, {"file_mode": "0400"})
    st = os.stat(os.path.join(mnt, "live.txt"))
    assert stat.S_IMODE(st.st_mode) == 0o400 and st.st_gid == os.getgid()
    seen = as_nobody(mnt, ["live.txt", "random"])
    assert seen["live.txt"][0] == "EACCES" and seen["random"][0] == "EACCES", seen
    d.stop()


def test_hide_credentials(mounts, peer_set, open_dir, tmp_path):
    mnt = os.path.join(open_dir, "mnt")
    d = start(mounts, peer_set, str(tmp_path), mnt, {"hide_credentials": "yes"})
    auth = peer_set.socks5_auth
    assert "alice:s3cret@" in auth.uri
    bare = "socks5://%s:%d" % (auth.host, auth.port)
    d.write("control/add", peer_set.wrong_password_uri + "\n")  # a dead one with credentials
    d.sync()

    st = os.stat(os.path.join(mnt, "live.txt"))
    assert stat.S_IMODE(st.st_mode) == 0o444, "default mode without a group: %o" % st.st_mode
    p = subprocess.run(["runuser", "-u", "nobody", "--", "cat", os.path.join(mnt, "live.txt")],
                       capture_output=True, text=True, timeout=PROBE_TIMEOUT, cwd="/")
    assert p.returncode == 0 and bare + "\n" in p.stdout and "s3cret" not in p.stdout, p
    seen = as_nobody(mnt, READERS)
    for rel in READERS:
        outcome, text = seen[rel]
        assert outcome == "ok", "nobody reading %s: %r" % (rel, seen[rel])
        assert "s3cret" not in text and "alice" not in text, "%s shows credentials" % rel
    assert bare + "\n" in seen["live.txt"][1]
    assert bare + "\n" in seen["socks5/live.txt"][1]
    assert bare in [p["uri"] for p in json.loads(seen["live.json"][1])]
    # The wrong password's proxy is dead: dead.txt and all.json name it bare.
    assert "socks5://%s:%d " % (auth.host, auth.port) in seen["dead.txt"][1]
    look = "lookup/%s:%d" % (auth.host, auth.port)
    outcome, text = as_nobody(mnt, [look])[look]
    assert outcome == "ok" and bare in text and "s3cret" not in text and "alice" not in text, text
    # The pool itself keeps them (it checked through the proxy with them).
    db = os.path.join(str(tmp_path), "proxyfs.db")
    wait_until(lambda: auth.uri in hostile.db_uris(db), 10.0, "the store to hold %s" % auth.uri)
    d.stop()
