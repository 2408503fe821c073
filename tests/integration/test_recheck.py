"""The re-check policy, seen from the mount without any manual rescan.

With recheck_s=1 a live proxy is checked every second, so one that dies
leaves live.txt by itself; a failed one is retried after retry_min_s,
doubling up to retry_max_s, so one that comes back is found within that
backoff. A proxy failed max_fails times in a row and dead for longer than
dead_ttl_s is dropped: out of the counts, no longer checked (not even by a
full rescan), until control/add lifts it.

Full rescans are an hour apart (interval_s), so everything seen here comes
from the policy, except in the last test: a sync while more re-checks are
due than the checker can do, which must still end. Each test has its own
judge, proxies and daemon.
"""

import time

import pytest

import judging
import peers
from conftest import wait_until

READY_TIMEOUT = 20.0
DIE_TIMEOUT = 10.0     # recheck_s=1: a dead proxy is seen within a couple of seconds
RETRY_MAX_S = 2
# A proxy back up is checked again within retry_max_s (plus the check and
# the publish): found later than this, the backoff is not honoured.
BACK_WITHIN = RETRY_MAX_S + 3.0
DEAD_FOR = 4 * RETRY_MAX_S


class Setup:
    def __init__(self, binary, mounts, tmp):
        self.mounts = mounts
        self.tmp = tmp
        self.stoppable = []
        self.judge = judging.start_judge(binary, tmp)

    def proxy(self, host):
        p = judging.tinyproxy(self.tmp, host, bind=None)
        self.stoppable.append(p)
        return p

    def socks(self, host):
        p = judging.microsocks(self.tmp, host, bind=None)
        self.stoppable.append(p)
        return p

    def daemon(self, proxies, **check):
        lst = judging.write_list(self.tmp, [p.line for p in proxies])
        conf = judging.write_conf(self.tmp, [self.judge.url], lst, check=check)
        return self.mounts.new(conf).start()

    def close(self):
        for p in self.stoppable:
            p.stop()
        self.judge.kill()


@pytest.fixture
def setup(binary, mounts, tmp_path):
    s = Setup(binary, mounts, str(tmp_path))
    try:
        yield s
    finally:
        s.close()


def pool(d):
    return d.read_json("stat.json")["pool"]


def test_a_proxy_that_dies_and_returns_is_followed(setup):
    a = setup.proxy("127.0.0.61")
    b = setup.socks("127.0.0.62")
    d = setup.daemon([a, b], recheck_s=1, retry_min_s=1, retry_max_s=RETRY_MAX_S)
    d.sync()
    assert d.live() == {a.uri, b.uri}
    for e in d.read_json("live.json"):
        assert isinstance(e["latency_ms"], int) and 0 <= e["latency_ms"] < 2000, e

    a.stop()
    wait_until(lambda: d.live() == {b.uri}, DIE_TIMEOUT, "the stopped proxy to leave live.txt")
    st = pool(d)
    assert (st["alive"], st["dead"], st["total"], st["dropped"]) == (1, 1, 2, 0), st
    # Dead long enough to fail five times or so: past the cap, so its
    # retries are retry_max_s apart (uncapped, the next would be 8 s away).
    time.sleep(DEAD_FOR)
    assert d.live() == {b.uri}

    a.start()
    t0 = time.monotonic()
    wait_until(lambda: d.live() == {a.uri, b.uri}, BACK_WITHIN,
               "the restarted proxy back in live.txt within the retry backoff")
    back = time.monotonic() - t0
    assert back <= BACK_WITHIN, back
    st = pool(d)
    assert (st["alive"], st["dead"], st["total"]) == (2, 0, 2), st
    for e in d.read_json("live.json"):
        assert isinstance(e["latency_ms"], int) and 0 <= e["latency_ms"] < 2000, e
    d.stop()


def test_the_long_dead_are_dropped_until_added(setup):
    a = setup.proxy("127.0.0.63")
    gone = setup.proxy("127.0.0.64")
    gone.stop()  # listed, but nothing serves its port until later
    d = setup.daemon([a, gone], max_fails=2, dead_ttl_s=0, retry_min_s=1,
                     retry_max_s=RETRY_MAX_S)
    d.sync()
    assert d.live() == {a.uri}
    st = wait_until(lambda: (lambda p: p if p["dropped"] == 1 else None)(pool(d)),
                    DIE_TIMEOUT, "the dead proxy to be dropped")
    assert (st["total"], st["alive"], st["dead"], st["unknown"]) == (1, 1, 0, 0), st
    assert judging.metric(d.read_text("metrics"), "proxyfs_proxies_dropped") == 1

    # Back up, but dropped: neither the policy nor a full rescan checks it.
    gone.start()
    d.sync()
    time.sleep(RETRY_MAX_S + 0.5)
    assert d.live() == {a.uri}
    st = pool(d)
    assert (st["total"], st["dropped"]) == (1, 1), st

    line = gone.uri + "\n"
    assert d.write("control/add", line) == len(line)
    wait_until(lambda: d.live() == {a.uri, gone.uri}, READY_TIMEOUT,
               "the added proxy in live.txt")
    st = pool(d)
    assert (st["total"], st["alive"], st["dropped"]) == (2, 2, 0), st
    d.stop()


def test_a_sync_ends_while_more_is_due_than_can_be_checked(setup):
    # Eight blackholes (each check takes its whole second of timeout), due
    # again a second after each failure, two checks at a time: more
    # re-checks are due than the checker can ever do. A scan must still
    # get its turn, so `echo sync` returns, with the live proxy found.
    bh = peers.start_script_peer("blackhole", setup.tmp, "127.0.0.65")
    setup.stoppable.append(bh)
    a = setup.proxy("127.0.0.66")
    hp = "%s:%d" % (bh.host, bh.port)
    lines = ["http://" + hp, "socks4://" + hp, "socks5://" + hp]
    lines += ["socks5://user%d:pw@%s" % (i, hp) for i in range(5)] + [a.line]
    conf = judging.write_conf(setup.tmp, [setup.judge.url], judging.write_list(setup.tmp, lines),
                              check={"concurrency": 2, "timeout_ms": 1000, "retries": 0,
                                     "recheck_s": 3600, "retry_min_s": 1, "retry_max_s": 1,
                                     "max_fails": 1000})
    d = setup.mounts.new(conf).start()
    t0 = time.monotonic()
    d.sync()
    d.sync()
    assert time.monotonic() - t0 < 30.0
    assert d.live() == {a.uri}
    st = pool(d)
    assert (st["total"], st["alive"], st["dead"]) == (9, 1, 8), st
    d.stop()
