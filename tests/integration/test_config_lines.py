"""Config messages a user can act on: every key's error names the full
path and line (keys that bound each other too), a negative number says it
must be positive, and a db path that is not a database is refused with its
mode left as it was."""

import os
import stat
import subprocess

import pytest

from conftest import config_db, is_mounted, write_config

RUN_TIMEOUT = 15


def start_with(binary, peer_set, tmp_path, section, line):
    """Runs the daemon over a config with line (replacing its key's) right after [section];
    returns (config path, that line's number, the finished process)."""
    tmp = str(tmp_path)
    conf = write_config(tmp, peer_set.judge, os.path.join(tmp, "list.txt"))
    key = line.split("=")[0].strip()
    with open(conf) as f:
        lines = [ln for ln in f.read().splitlines() if ln.split("=")[0].strip() != key]
    lineno = lines.index("[%s]" % section) + 2
    lines.insert(lineno - 1, line)
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run([binary, "-f", "-c", conf, str(mnt)], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    assert not is_mounted(str(mnt)), "mounted despite a bad config"
    return conf, lineno, p


# (what, section, line, what the message must say after "PATH:LINE: ")
BAD = [
    ("retry_min_s above retry_max_s", "check", "retry_min_s = 7200",
     "[check] retry_min_s: 7200 is more than retry_max_s (3600)"),
    ("retry_max_s below retry_min_s", "check", "retry_max_s = 30",
     "[check] retry_max_s: 30 is less than retry_min_s (60)"),
    ("connect_timeout_ms above timeout_ms", "check", "connect_timeout_ms = 3000",
     "[check] connect_timeout_ms: 3000 is more than timeout_ms (2000)"),
    ("negative number", "check", "concurrency = -5", "[check] concurrency: -5: must be positive"),
    ("negative retries", "check", "retries = -1", "[check] retries: -1: must not be negative"),
    ("unknown group", "proxyfs", "group = no-such-group", "[proxyfs] group: 'no-such-group': "
     "no such group"),
    ("writable file_mode", "proxyfs", "file_mode = 0666", "[proxyfs] file_mode: 0666: only "
     "read bits"),
]


@pytest.mark.parametrize("what,section,line,says", BAD, ids=[b[0] for b in BAD])
def test_error_names_path_and_line(binary, peer_set, tmp_path, what, section, line, says):
    conf, lineno, p = start_with(binary, peer_set, tmp_path, section, line)
    assert p.returncode == 2, "exit %d; stderr: %s" % (p.returncode, p.stderr)
    assert os.path.isabs(conf)
    assert "%s:%d: %s" % (conf, lineno, says) in p.stderr, p.stderr


def test_db_that_is_no_database_keeps_its_mode(binary, peer_set, tmp_path):
    tmp = str(tmp_path)
    conf = write_config(tmp, peer_set.judge, os.path.join(tmp, "list.txt"))
    db = config_db(conf)
    with open(db, "w") as f:
        f.write("my notes, not a database\n" * 50)
    os.chmod(db, 0o644)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run([binary, "-f", "-c", conf, str(mnt)], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    assert not is_mounted(str(mnt))
    assert p.returncode != 0
    assert db in p.stderr and "not a database" in p.stderr, p.stderr
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o644, "the refused file's mode was changed"
    with open(db) as f:
        assert f.read() == "my notes, not a database\n" * 50
