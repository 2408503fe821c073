"""Readers in numbers while snapshots swap: 16 processes open, read whole
and close random, live.txt and metrics as fast as they can while the
daemon rescans a pool of thousands (publishing a snapshot every 50 ms),
the list shrinking to half and growing back between rescans.

Every read must be a whole, consistent file: random one well-formed URI
line of a proxy that can be alive; live.txt well-formed lines without
repeats; metrics in the exposition format, ending with a newline. No read
takes 2 s, and the daemon's memory after the third rescan is within a
small margin of what it was after the first (snapshots are freed).

The pool is tests/sim/proxysim's (PROXYSIM_BIN, default
build/tests/sim/proxysim) when it is built; otherwise closed ports and
slow good proxies around the good peers. Either way no proxy holds a check
for its whole timeout: a scan lasts as long as the slow ones take to
answer, and the timeout is long enough that 16 busy readers on two cores
cannot starve a live proxy into looking dead (which would empty the pool
and make an empty random the right answer).
"""

import os

import pytest

import hostile

READERS = 16
SIM_COUNT = 3000
SIM_SEED = 2024
SLOW_MS = 1500
# proxysim's mix without blackholes; the slow ones answer after SLOW_MS.
SIM_ARGS = ("--slow-ms", str(SLOW_MS), "--mix",
            "alive_http=10,alive_socks4=5,alive_socks5=5,alive_socks5_auth=5,slow=10,"
            "refused=40,liar=5,garbage=5,early_close=5")
CLOSED = 2500
SLOW_GOOD = 200
SLOWEST_READ_S = 2.0
RSS_MARGIN_KB = 8 * 1024


class Pool:
    """The list's lines and the URIs that may be alive."""

    def __init__(self, tmp, peer_set):
        self.sim = self.slow = None
        binary = hostile.proxysim_bin()
        good = [p.line for p in peer_set.good]
        if binary:
            self.sim = hostile.Sim(binary, os.path.join(tmp, "sim"), SIM_COUNT, SIM_SEED,
                                   SIM_ARGS)
            self.lines = good + self.sim.lines
            self.may_live = self.sim.truth | peer_set.good_uris
        else:
            self.slow = hostile.Hostile(os.path.join(tmp, "slow"),
                                        [("slow_good", SLOW_MS)] * SLOW_GOOD)
            self.lines = good + sorted(self.slow.uris) + hostile.closed_uris(CLOSED)
            self.may_live = peer_set.good_uris | self.slow.uris

    def stop(self):
        for p in (self.sim, self.slow):
            if p:
                p.stop()


@pytest.fixture
def big_pool(peer_set, tmp_path):
    p = Pool(str(tmp_path), peer_set)
    try:
        yield p
    finally:
        p.stop()


def test_readers_see_whole_files_while_snapshots_swap(mounts, peer_set, big_pool, tmp_path):
    tmp = str(tmp_path)
    everything = big_pool.lines
    # The good peers stay in both lists: live.txt is never empty.
    half = everything[:len(peer_set.good)] + everything[len(peer_set.good)::2]
    lst = hostile.write_lines(os.path.join(tmp, "list.txt"), everything)
    conf = hostile.write_conf(tmp, peer_set.judge, lst, timeout_ms=6000,
                              connect_timeout_ms=3000, retries=0, concurrency=4000,
                              publish_ms=50)
    d = mounts.new(conf).start()
    d.sync()
    assert d.live() >= peer_set.good_uris
    gen = d.read_json("stat.json")["generation"]

    readers = hostile.Readers(os.path.join(tmp, "readers"), d.mnt, READERS)
    try:
        d.sync()
        rss_first = hostile.rss_kb(d.proc.pid)
        hostile.write_lines(lst, half)
        d.sync()
        hostile.write_lines(lst, everything)
        d.sync()
        rss_third = hostile.rss_kb(d.proc.pid)
        seen = readers.finish()
    finally:
        readers.kill()

    assert d.running(), "proxyfs died under the readers; log:\n%s" % d.log()
    errors = [e for s in seen for e in s["errors"]]
    assert not errors, "%d bad reads, e.g.:\n%s" % (len(errors), "\n".join(errors[:10]))
    reads = sum(s["reads"] for s in seen)
    slowest = max(s["slowest"] for s in seen)
    assert all(s["reads"] > 0 for s in seen), "a reader read nothing"
    assert slowest < SLOWEST_READ_S, "a read took %.2f s" % slowest
    random_seen = set().union(*(s["random"] for s in seen))
    # The last snapshot too, in case a reader of random saw it last.
    live_seen = set().union(*(s["live"] for s in seen)) | d.live()
    assert random_seen <= live_seen, \
        "random gave proxies no live.txt ever listed: %r" % sorted(random_seen - live_seen)[:5]
    assert random_seen <= big_pool.may_live, \
        "random gave proxies that cannot be alive: %r" % sorted(random_seen - big_pool.may_live)[:5]
    assert live_seen <= big_pool.may_live, \
        "live.txt listed proxies that cannot be alive: %r" % sorted(live_seen - big_pool.may_live)[:5]
    published = d.read_json("stat.json")["generation"] - gen
    assert published >= 6, "only %d snapshots published while %d reads ran" % (published, reads)

    if not hostile.asan_build(d.binary):
        assert rss_third - rss_first < RSS_MARGIN_KB, \
            "RSS after the first rescan %d kB, after the third %d kB" % (rss_first, rss_third)
    d.stop()
