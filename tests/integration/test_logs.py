"""Logs that help: at debug each subsystem says what it does (scans with
their counts, each control write with what it applied, each judge probe,
each source read with its status and counts); at info the daemon is quiet
at rest, a state change said once; in the background with no syslog
socket the lines go to log_file, or stay on the stderr it was started with.
"""

import os
import re
import signal

import pytest

import hostile
from conftest import wait_until

RESCANS = 4          # rescans watched for repeated info lines
RESCAN_TIMEOUT = 30  # seconds for those


def conf_with(tmp, peer_set, proxyfs_keys, lines=None, **check):
    lst = hostile.write_lines(os.path.join(tmp, "list.txt"),
                              lines if lines is not None else [p.line for p in peer_set.good])
    conf = hostile.write_conf(tmp, peer_set.judge, lst, **check)
    with open(conf) as f:
        text = f.read()
    text = text.replace("log_level = debug\n", "")
    extra = "".join("%s = %s\n" % kv for kv in proxyfs_keys.items())
    with open(conf, "w") as f:
        f.write(text.replace("[proxyfs]\n", "[proxyfs]\n" + extra, 1))
    return conf


def scans_done(d):
    return d.read_json("stat.json")["scan"]["generation"]


def wait_rescans(d, n):
    first = scans_done(d)
    wait_until(lambda: scans_done(d) >= first + n and
               not d.read_json("stat.json")["scan"]["running"],
               RESCAN_TIMEOUT, "%d rescans" % n, interval=0.2)


def full_log(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


def messages(text, level):
    """The messages of level in a log, without their time stamps."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\S+ proxyfs (\w+): (.*)$", line)
        if m and m.group(1) == level:
            out.append(m.group(2))
    return out


# (rescans watched, [check] settings): frequent probes and re-checks; and
# judges probed seldom, so each scan re-confirms them first (they are older
# than the 5 s a scan trusts), which said "checking resumes" every time.
QUIET = {
    "busy": (RESCANS, dict(interval_s=1, judge_probe_s=1, recheck_s=1, retry_min_s=1,
                           retry_max_s=1)),
    "judges re-confirmed": (2, dict(interval_s=6, judge_probe_s=3600)),
}


@pytest.mark.parametrize("case", list(QUIET))
def test_info_is_quiet_at_rest(mounts, peer_set, tmp_path, case):
    rescans, check = QUIET[case]
    tmp = str(tmp_path)
    lines = [p.line for p in peer_set.good] + [peer_set.closed.line]
    conf = conf_with(tmp, peer_set, {"log_level": "info"}, lines=lines, **check)
    d = mounts.new(conf).start()
    d.sync()
    wait_rescans(d, rescans)
    d.stop()
    info = messages(full_log(d.logpath), "info")
    shapes = [re.sub(r"\d+(\.\d+)?", "#", m) for m in info]
    repeated = sorted({s for s in shapes if shapes.count(s) > 1})
    assert not repeated, "info lines said again and again over %d rescans: %r\nlog:\n%s" % (
        rescans, repeated, "\n".join(info))
    # Nothing a judge did is news at info: it answered from the start.
    assert not [m for m in info if "judge" in m], info


def test_debug_says_what_each_subsystem_does(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    conf = conf_with(tmp, peer_set, {"log_level": "debug"}, judge_probe_s=1)
    d = mounts.new(conf).start()
    d.sync()
    n = len(peer_set.good)
    d.write("control/add", peer_set.extra.line + "\nnot a proxy line\n" * 0)
    d.write("control/remove", peer_set.tinyproxy.uri + "\n")
    d.sync()
    d.stop()
    debug = messages(full_log(d.logpath), "debug")
    text = "\n".join(debug)

    def said(pattern, what):
        assert any(re.search(pattern, m) for m in debug), "no debug line for %s (%s):\n%s" % (
            what, pattern, text)
    said(r"^scan \d+ started: %d proxies" % n, "a scan's start with its count")
    said(r"^scan \d+ finished: \d+ checked in [\d.]+ s: \d+ alive, \d+ dead", "a scan's end")
    said(r"^source local: read \S+: %d proxies, 0 invalid" % n, "a source read with counts")
    said(r"^judge http://\S+ probe: answers", "a judge probe")
    said(r"^control/add: 1 line: 1 added", "control/add and what it applied")
    said(r"^control/remove: 1 line: 1 removed", "control/remove and what it applied")
    said(r"^control/reload: sync", "control/reload")


def test_background_log_file(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    log_file = os.path.join(tmp, "proxyfs.log")
    conf = conf_with(tmp, peer_set, {"log_level": "debug", "log_file": log_file})
    d = mounts.new(conf, background=True).start()
    d.sync()
    d.stop()
    text = full_log(log_file)
    assert messages(text, "debug"), "nothing in log_file:\n" + text
    assert any(m.startswith("mounted on ") for m in messages(text, "info")), text
    assert any(m.startswith("unmounting ") for m in messages(text, "info")), text


def test_background_without_syslog_keeps_stderr(mounts, peer_set, tmp_path):
    assert not os.path.exists("/dev/log"), "this test needs a machine with no syslog socket"
    tmp = str(tmp_path)
    conf = conf_with(tmp, peer_set, {"log_level": "info"})
    d = mounts.new(conf, background=True).start()
    d.sync()
    d.stop()
    text = full_log(d.logpath)
    assert any("no syslog socket" in m for m in messages(text, "warn")), text
    # Said after the daemon left the terminal: not lost in /dev/null.
    assert any(m.startswith("unmounting ") for m in messages(text, "info")), text


def test_log_file_reopened_on_sighup(mounts, peer_set, tmp_path):
    """logrotate's way: move the file away, send SIGHUP; the daemon goes on
    in a new file at the same path and writes nothing more to the old."""
    tmp = str(tmp_path)
    log_file = os.path.join(tmp, "proxyfs.log")
    conf = conf_with(tmp, peer_set, {"log_level": "info", "log_file": log_file})
    d = mounts.new(conf, background=True).start()
    d.sync()
    os.rename(log_file, log_file + ".1")
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: os.path.exists(log_file) and
               "SIGHUP: re-reading" in full_log(log_file), 10.0, "the log in a new file")
    d.stop()
    old = full_log(log_file + ".1")
    assert "mounted on" in old and "SIGHUP" not in old and "unmounting" not in old, old
    assert any(m.startswith("unmounting ") for m in messages(full_log(log_file), "info"))
