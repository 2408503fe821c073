"""The command line and config errors: a bad start exits 2 with a message
naming the file, line and key, and never mounts."""

import os
import re
import subprocess

import pytest

from conftest import REPO, is_mounted, lazy_unmount, write_config

RUN_TIMEOUT = 15


def run(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          stdin=subprocess.DEVNULL)


def project_version():
    with open(os.path.join(REPO, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


def test_help(binary):
    p = run(binary, "--help")
    assert p.returncode == 0, p.stderr
    assert "usage" in (p.stdout + p.stderr).lower()
    assert "MOUNTPOINT" in p.stdout


def test_version(binary):
    p = run(binary, "--version")
    assert p.returncode == 0, p.stderr
    assert project_version() in p.stdout


def test_no_mountpoint_is_usage_error(binary):
    p = run(binary, "-f")
    assert p.returncode == 2
    assert p.stderr


# (what, section, bad line, the word the message must name)
BAD = [
    ("unknown key", "check", "frobnicate = 1", "frobnicate"),
    ("bad number", "check", "timeout_ms = soon", "timeout_ms"),
    ("negative number", "check", "concurrency = -5", "concurrency"),
    ("bad log level", "proxyfs", "log_level = loud", "log_level"),
    ("bad protocol", "source:local", "protocol = gopher", "protocol"),
    ("unknown section", None, "[nonsense]", "nonsense"),
]


@pytest.mark.parametrize("what,section,line,key", BAD, ids=[b[0] for b in BAD])
def test_config_error_names_file_line_key(binary, peer_set, tmp_path, what, section, line, key):
    tmp = str(tmp_path)
    conf = write_config(tmp, peer_set.judge, os.path.join(tmp, "list.txt"))
    with open(conf) as f:
        lines = f.read().splitlines()
    if section is None:
        # inih sees a section only through its first key: either line will do.
        lines += ["", line, "x = 1"]
        linenos = (len(lines) - 1, len(lines))
    else:
        lineno = lines.index("[%s]" % section) + 2  # right after the header
        lines.insert(lineno - 1, line)
        linenos = (lineno,)
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = run(binary, "-f", "-c", conf, str(mnt))
    assert not is_mounted(str(mnt)), "mounted despite a bad config"
    assert p.returncode == 2, "exit %d; stderr: %s" % (p.returncode, p.stderr)
    assert any("%s:%d" % (conf, n) in p.stderr for n in linenos), \
        "%s:%s missing: %r" % (conf, " or ".join(map(str, linenos)), p.stderr)
    assert key in p.stderr, "%r missing: %r" % (key, p.stderr)


def test_missing_config_file(binary, tmp_path):
    conf = str(tmp_path / "no-such.ini")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = run(binary, "-f", "-c", conf, str(mnt))
    assert not is_mounted(str(mnt))
    assert p.returncode == 2, "exit %d; stderr: %s" % (p.returncode, p.stderr)
    assert conf in p.stderr


def test_bad_judge_url(binary, peer_set, tmp_path):
    tmp = str(tmp_path)
    conf = write_config(tmp, peer_set.judge, os.path.join(tmp, "list.txt"))
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(re.sub(r"judge = .*", "judge = not-a-url", text))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = run(binary, "-f", "-c", conf, str(mnt))
    assert not is_mounted(str(mnt))
    assert p.returncode == 2, "exit %d; stderr: %s" % (p.returncode, p.stderr)
    assert "judge" in p.stderr


def with_expect(conf, lines):
    """Replaces the config's expect line by lines."""
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(re.sub(r"(?m)^expect = .*$", "\n".join(lines), text))
    with open(conf) as f:
        return f.read().splitlines()


def test_empty_expect_is_refused(binary, peer_set, tmp_path):
    tmp = str(tmp_path)
    conf = write_config(tmp, peer_set.judge, os.path.join(tmp, "list.txt"))
    lines = with_expect(conf, ["expect ="])
    lineno = lines.index("expect =") + 1
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        p = run(binary, "-f", "-c", conf, str(mnt))
    finally:
        if is_mounted(str(mnt)):
            lazy_unmount(str(mnt))
            pytest.fail("mounted with an empty expect")
    assert p.returncode == 2, "exit %d; stderr: %s" % (p.returncode, p.stderr)
    assert "%s:%d: [check] expect: empty" % (conf, lineno) in p.stderr, p.stderr
    assert "require_echo" in p.stderr, p.stderr


def test_empty_expect_with_require_echo(binary, peer_set, mounts, tmp_path):
    """The judge's echo of each check's token is the proof: a proxy whose
    page lacks it (the liar) is dead, one that reaches the judge alive."""
    tmp = str(tmp_path)
    lst = os.path.join(tmp, "list.txt")
    with open(lst, "w") as f:
        f.write("%s\n%s\n" % (peer_set.tinyproxy.line, peer_set.liar.line))
    conf = write_config(tmp, peer_set.judge, lst)
    with_expect(conf, ["expect =", "require_echo = yes"])
    d = mounts.new(conf).start()
    d.sync()
    assert d.live() == {peer_set.tinyproxy.uri}, d.log()
