"""Several judges, and judges going away.

A judge that does not answer its direct probe is set aside with the
reason, and every check goes through the ones that answer. While no judge
answers, checking pauses and every proxy keeps its state, however often a
rescan is asked for; once a judge answers again, checking resumes. A daemon
that starts with no judge answering serves the pool its database kept.

The proxies are the session's peer set (conftest.PeerSet) without the
blackhole; the judge is `proxyfs judge` on 127.0.0.1, stopped by its PID
and restarted on the same port.
"""

import time

import pytest

import judging
from conftest import wait_until
from judging import OUR

READY_TIMEOUT = 30.0    # the first probe and the first full scan
OUTAGE_TIMEOUT = 15.0   # a probe noticing the judge gone, or back
QUIET_S = 4.0           # how long nothing may change while no judge answers


class Outage:
    """A judge, a list of the peer set's proxies, a config and a daemon."""

    def __init__(self, binary, peer_set, mounts, tmp):
        self.binary = binary
        self.ps = peer_set
        self.mounts = mounts
        self.tmp = tmp
        self.judge = judging.start_judge(binary, tmp)
        self.port = self.judge.port
        self.list = judging.write_list(tmp, self.ps.list_text(slow=False).splitlines())

    def configure(self, judges=None, **check):
        self.conf = judging.write_conf(self.tmp, judges or [self.judge.url], self.list,
                                       check=check)
        return self.conf

    def stop_judge(self):
        assert self.judge.stop() == 0, self.judge.log()

    def restart_judge(self):
        self.judge = judging.start_judge(self.binary, self.tmp, self.port)

    def close(self):
        self.judge.kill()


@pytest.fixture
def outage(binary, peer_set, mounts, tmp_path):
    o = Outage(binary, peer_set, mounts, str(tmp_path))
    try:
        yield o
    finally:
        o.close()


def health(d):
    return d.read_text("health").rstrip("\n")


def judges_of(d):
    return {j["url"]: j for j in d.read_json("stat.json")["judges"]}


def assert_quiet(d, live, pool, seconds=QUIET_S):
    """For seconds, live.txt stays live and stat.json's pool counts stay
    pool, with checking paused."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        st = d.read_json("stat.json")
        assert st["engine"]["paused"] is True, st["engine"]
        assert d.live() == live, "live.txt changed while no judge answers:\n%s" % d.log()
        got = {k: st["pool"][k] for k in ("total", "alive", "dead", "unknown")}
        assert got == pool, "pool changed while no judge answers: %s, was %s" % (got, pool)
        time.sleep(0.25)


def pool_counts(d):
    pool = d.read_json("stat.json")["pool"]
    return {k: pool[k] for k in ("total", "alive", "dead", "unknown")}


def test_a_dead_judge_is_set_aside_and_checks_use_the_other(outage):
    o = outage
    down = judging.closed_url()
    conf = o.configure([down, o.judge.url])
    d = o.mounts.new(conf).start()
    d.sync()
    assert d.live() == o.ps.good_uris
    st = d.read_json("stat.json")
    assert [j["url"] for j in st["judges"]] == [down, o.judge.url]
    bad, good = st["judges"]
    assert bad["healthy"] is False and bad["error"], bad
    assert bad["last_probe"] > 0 and bad["checks"] == 0 and bad["alive"] == 0, bad
    assert bad["our_address"] is None, bad
    assert good["healthy"] is True and good["error"] is None, good
    assert good["our_address"] == OUR and good["last_probe"] > 0, good
    eng = st["engine"]
    results = sum(n for r, n in eng["checks"].items() if r not in ("local_error", "unreachable"))
    assert good["checks"] == results + eng["retries"] + eng["held"], (good, eng)
    assert good["alive"] == eng["checks"]["ok"] >= len(o.ps.good_uris), (good, eng)
    assert eng["paused"] is False
    assert st["pool"]["alive"] == len(o.ps.good_uris)
    assert st["pool"]["dead"] == len(o.ps.bad_uris(slow=False))
    assert st["pool"]["total"] == o.ps.list_distinct(slow=False)
    assert health(d) == "ok"
    metrics = d.read_text("metrics")
    assert judging.metric(metrics, "proxyfs_judge_up", {"judge": down}) == 0
    assert judging.metric(metrics, "proxyfs_judge_up", {"judge": o.judge.url}) == 1
    assert judging.metric(metrics, "proxyfs_checks_paused") == 0
    d.stop()


def test_no_judge_pauses_checking_until_one_answers(outage):
    o = outage
    d = o.mounts.new(o.configure()).start()
    d.sync()
    live = o.ps.good_uris
    assert d.live() == live
    pool = pool_counts(d)
    assert pool["alive"] == len(live) and pool["unknown"] == 0

    # Probes every second from now on; the reload's rescan runs while the
    # judge still answers, so no check is in flight when it goes away.
    o.configure(judge_probe_s=1)
    assert d.write("control/reload", "reload\n") == len("reload\n")
    d.sync()
    assert d.live() == live
    o.stop_judge()
    h = wait_until(lambda: health(d).startswith("degraded: no judge reachable") and health(d),
                   OUTAGE_TIMEOUT, "health to say no judge is reachable")
    assert o.judge.url in h, h
    st = d.read_json("stat.json")
    assert st["engine"]["paused"] is True
    j = st["judges"][0]
    assert j["healthy"] is False and j["error"], j
    metrics = d.read_text("metrics")
    assert judging.metric(metrics, "proxyfs_judge_up", {"judge": o.judge.url}) == 0
    assert judging.metric(metrics, "proxyfs_checks_paused") == 1
    assert d.live() == live, "proxies lost when the judge went away:\n%s" % d.log()
    assert pool_counts(d) == pool

    d.write("control/reload", "now\n")
    assert_quiet(d, live, pool)

    o.restart_judge()
    wait_until(lambda: health(d) == "ok", OUTAGE_TIMEOUT, "health to be ok again")
    st = d.read_json("stat.json")
    assert st["engine"]["paused"] is False
    assert st["judges"][0]["healthy"] is True and st["judges"][0]["error"] is None
    d.sync()
    assert d.live() == live
    assert pool_counts(d) == pool
    d.stop()


def test_warm_start_with_no_judge_keeps_the_pool(outage):
    o = outage
    d = o.mounts.new(o.configure()).start()
    d.sync()
    live = o.ps.good_uris
    assert d.live() == live
    pool = pool_counts(d)
    d.stop()
    o.stop_judge()

    d = o.mounts.new(o.configure(judge_probe_s=1)).start()
    assert d.live() == live, "the warm-start pool is not served"
    wait_until(lambda: health(d).startswith("degraded: no judge reachable"),
               OUTAGE_TIMEOUT, "health to say no judge is reachable")
    assert pool_counts(d) == pool
    d.write("control/reload", "now\n")
    assert_quiet(d, live, pool)
    d.stop()
