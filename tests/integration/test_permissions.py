"""Who may do what: with `-o allow_other`, another user (nobody) reads the
pool but can neither write nor read the control files; without it, nobody
cannot touch the mount at all, as with any FUSE mount. The db, which holds
proxy credentials, is readable by its owner only.

The mountpoint lives in a directory of its own under /tmp that nobody can
traverse (pytest's tmp_path is private to root).
"""

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

# Run as nobody: tries each operation and prints one line per operation,
# "ok <bytes>" or "err <errno name>".
PROBE = r"""
import errno, os, sys
mnt = sys.argv[1]
def attempt(name, fn):
    try:
        r = fn()
        print(name, "ok", len(r) if r is not None else 0)
    except OSError as e:
        print(name, "err", errno.errorcode.get(e.errno, e.errno))
def read(rel):
    with open(os.path.join(mnt, rel), "rb") as f:
        return f.read()
def write(rel, data):
    fd = os.open(os.path.join(mnt, rel), os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
attempt("list", lambda: os.listdir(mnt))
attempt("live", lambda: read("live.txt"))
attempt("random", lambda: read("random"))
attempt("add", lambda: write("control/add", sys.argv[2].encode() + b"\n"))
attempt("remove", lambda: write("control/remove", sys.argv[3].encode() + b"\n"))
attempt("reload", lambda: write("control/reload", b"sync\n"))
attempt("read_add", lambda: read("control/add"))
attempt("read_reload", lambda: read("control/reload"))
"""
PROBE_TIMEOUT = 30


def as_nobody(mnt, add_uri, remove_uri):
    """Runs PROBE as user nobody; returns {operation: (outcome, detail)}."""
    pw = pwd.getpwnam("nobody")

    def drop():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    p = subprocess.run([peers.PYTHON, "-c", PROBE, mnt, add_uri, remove_uri],
                       preexec_fn=drop, capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                       cwd="/")
    assert p.returncode == 0, "the probe as nobody failed: %s" % p.stderr
    return {name: (outcome, detail) for name, outcome, detail in
            (line.split() for line in p.stdout.splitlines())}


@pytest.fixture
def open_dir():
    """A directory under /tmp that every user may traverse."""
    path = tempfile.mkdtemp(prefix="proxyfs-perm-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def daemon(mounts, peer_set, tmp, mnt, db):
    lst = hostile.write_lines(os.path.join(tmp, "list.txt"), [p.line for p in peer_set.good])
    conf = hostile.write_conf(tmp, peer_set.judge, lst, db=db)
    return mounts.new(conf, mnt=mnt)


def test_allow_other_lets_others_read_only(mounts, peer_set, open_dir, tmp_path):
    tmp = str(tmp_path)
    mnt = os.path.join(open_dir, "mnt")
    db = os.path.join(tmp, "proxyfs.db")
    d = daemon(mounts, peer_set, tmp, mnt, db).start(["-o", "allow_other"])
    d.sync()
    live, total = d.live(), d.read_json("stat.json")["pool"]["total"]
    assert live == peer_set.good_uris

    seen = as_nobody(mnt, peer_set.extra.uri, peer_set.tinyproxy.uri)
    assert seen["list"][0] == "ok", "nobody cannot list the mount: %r" % (seen["list"],)
    assert seen["live"] == ("ok", str(len(d.read("live.txt")))), \
        "nobody reading live.txt: %r" % (seen["live"],)
    assert seen["random"][0] == "ok" and seen["random"][1] != "0", \
        "nobody reading random: %r" % (seen["random"],)
    for op in ("add", "remove", "reload", "read_add", "read_reload"):
        assert seen[op] in (("err", "EACCES"), ("err", "EPERM")), \
            "nobody's %s: %r, expected EACCES" % (op, seen[op])

    # Nothing nobody tried changed the pool.
    d.sync()
    assert d.live() == live
    assert d.read_json("stat.json")["pool"]["total"] == total
    d.stop()


def test_without_allow_other_others_see_nothing(mounts, peer_set, open_dir, tmp_path):
    tmp = str(tmp_path)
    mnt = os.path.join(open_dir, "mnt")
    d = daemon(mounts, peer_set, tmp, mnt, os.path.join(tmp, "proxyfs.db")).start()
    d.sync()
    seen = as_nobody(mnt, peer_set.extra.uri, peer_set.tinyproxy.uri)
    for op, result in seen.items():
        assert result == ("err", "EACCES"), "nobody's %s without allow_other: %r" % (op, result)
    assert d.live() == peer_set.good_uris
    d.stop()


def test_db_is_private(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    # Created under a umask that would leave it readable by all.
    db = os.path.join(tmp, "state", "proxyfs.db")
    old = os.umask(0)
    try:
        d = daemon(mounts, peer_set, tmp, None, db).start()
    finally:
        os.umask(old)
    d.sync()
    # A proxy with a password: the store holds credentials.
    uri = peer_set.socks5_auth.uri
    wait_until(lambda: uri in hostile.db_uris(db), 10.0, "the store to hold %s" % uri)
    for path in (db, db + "-wal", db + "-shm"):
        if os.path.exists(path):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            assert mode == 0o600, "%s has mode %o" % (path, mode)
    d.stop()
    mode = stat.S_IMODE(os.stat(db).st_mode)
    assert mode == 0o600, "%s has mode %o after stop" % (db, mode)
