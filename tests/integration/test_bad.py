"""control/bad: a user's report that proxies failed them.

Each named live proxy leaves live.txt and random before the write returns,
and its re-check, queued at once, alone decides whether it comes back. The
test holds that re-check still by stopping its own judge (SIGSTOP: the
proxy's request to it waits unanswered) so that what the write did can be
read before any check says otherwise; SIGCONT lets the check end.

A peer set and a daemon of the test's own, since the test stops proxies.
"""

import errno
import os
import signal

import pytest

from conftest import Mounts, wait_until
from test_sources_remote import write_conf

READY_TIMEOUT = 30.0
BACK_TIMEOUT = 15.0  # a check on loopback takes milliseconds; the timeout is 10 s


def write_list(path, lines):
    with open(path, "w") as f:
        f.write("".join("%s\n" % line for line in lines))


def record(d, uri):
    for r in d.read_json("all.json"):
        if r["uri"] == uri:
            return r
    pytest.fail("%s not in all.json" % uri)


def ejections(d):
    """stat.json's ejections: total and by who; the last few apart."""
    ej = d.read_json("stat.json")["ejections"]
    return {"total": ej["total"], "by": ej["by"]}


def last_ejected(d):
    return [(x["uri"], x["by"], x["why"]) for x in d.read_json("stat.json")["ejections"]["last"]]


def metric_line(d):
    lines = [l for l in d.read_text("metrics").splitlines()
             if l.startswith('proxyfs_ejections_total{by="control"} ')]
    assert len(lines) == 1, lines
    return lines[0]


def expect_einval(d, text):
    with pytest.raises(OSError) as e:
        d.write("control/bad", text)
    assert e.value.errno == errno.EINVAL


def test_bad(binary, own_peers, tmp_path):
    ps = own_peers
    tmp = str(tmp_path)
    t, s5, s4 = ps.tinyproxy, ps.socks5, ps.socks4
    everyone = {t.uri, s5.uri, s4.uri}
    path = os.path.join(tmp, "list.txt")
    write_list(path, [t.line, s5.line, s4.line])
    # A long timeout: the held re-check must not end by timing out.
    conf = write_conf(tmp, ps.judge, [("local", {"url": path})], check={"timeout_ms": 10000})
    mounts = Mounts(binary, tmp)
    judge_stopped = False
    try:
        d = mounts.new(conf).start()
        wait_until(lambda: d.live() == everyone, READY_TIMEOUT, "all three live")
        assert ejections(d) == {"total": 0, "by": {"control": 0, "gateway": 0}}
        assert last_ejected(d) == []

        # A malformed line, or a proxy the pool does not track (a typo),
        # fails the whole write, and nothing of it is applied.
        expect_einval(d, "%s\nnot a proxy\n" % t.uri)
        expect_einval(d, "%s\nhttp://127.0.0.1:9\n" % t.uri)
        assert d.live() == everyone
        assert ejections(d)["total"] == 0

        # Two live proxies at once, their re-checks held by the judge.
        os.kill(ps.judge.proc.pid, signal.SIGSTOP)
        judge_stopped = True
        d.write("control/bad", "%s\n%s\n" % (t.uri, s4.uri))
        assert d.live() == {s5.uri}
        picks = [d.read_text("random") for _ in range(10)]
        assert picks == [s5.uri + "\n"] * 10
        for uri in (t.uri, s4.uri):
            r = record(d, uri)
            assert r["state"] == "unknown" and r["result"] == "reported_bad", r
            assert "reported bad" in r["detail"], r
        assert ejections(d) == {"total": 2, "by": {"control": 2, "gateway": 0}}
        why = "reported through control/bad"
        assert last_ejected(d) == [(s4.uri, "control", why), (t.uri, "control", why)]
        assert metric_line(d).endswith(" 2")
        # Not a removal: still tracked, nothing kept out.
        assert d.read_json("stat.json")["pool"]["removed"] == 0

        # The checker alone brings them back: they are alive.
        os.kill(ps.judge.proc.pid, signal.SIGCONT)
        judge_stopped = False
        wait_until(lambda: d.live() == everyone, BACK_TIMEOUT, "both back after their re-check")
        assert record(d, t.uri)["result"] == "ok"

        # A proxy that is really dead stays out after its re-check.
        s5.stop()
        d.write("control/bad", s5.uri + "\n")
        assert d.live() == {t.uri, s4.uri}
        wait_until(lambda: record(d, s5.uri)["state"] == "dead", BACK_TIMEOUT,
                   "socks5 found dead by its re-check")
        assert d.live() == {t.uri, s4.uri}
        assert ejections(d) == {"total": 3, "by": {"control": 3, "gateway": 0}}
        assert last_ejected(d)[0] == (s5.uri, "control", why)
        assert metric_line(d).endswith(" 3")
        d.stop()
    finally:
        if judge_stopped:
            os.kill(ps.judge.proc.pid, signal.SIGCONT)
        mounts.cleanup()
