"""Hostile proxies: endless headers, a drip of one byte a second, an answer
cut at every byte offset (HTTP and SOCKS5), impossible SOCKS5 replies,
hundreds of megabytes of body, garbage, and a Content-Length longer than
what is sent. Every one of them must be checked and found dead, next to
good proxies that stay alive; a scan of them all costs no more than the
check timeout allows, and the daemon's memory stays where it was.

The daemon first scans the good proxies alone (its memory then is the
baseline); then the list grows by the hostile ones and is scanned twice.
"""

import os
import time

import pytest

import hostile
from conftest import wait_until

TIMEOUT_MS = 2000
RETRIES = 1
RETRY_BACKOFF_S = 0.25  # the engine's first retry waits this long
SLACK_S = 3.0
RSS_GROWTH_MAX_KB = 30 * 1024
STORE_TIMEOUT = 10.0

# The kinds served once each; the cut kinds are served once per offset.
ONE_EACH = ["endless_headers", "drip", "huge_body", "huge_chunked", "giant_length",
            "short_length", "garbage", "garbage_flood", "s5_bad_ver", "s5_bad_method",
            "s5_atyp9", "s5_domain_past", "s5_rep0_garbage", "s5_flood"]
CONTROLS = ["good", "s5_good"]  # the same servers answering correctly: alive


@pytest.fixture
def hostile_set(tmp_path):
    specs = ([("cut", k) for k in range(len(hostile.ANSWER))] +
             [("s5_cut", k) for k in range(len(hostile.S5_STREAM))] + ONE_EACH + CONTROLS)
    h = hostile.Hostile(str(tmp_path / "hostile"), specs)
    try:
        yield h
    finally:
        h.stop()


def timed_sync(d):
    t = time.monotonic()
    d.sync()
    return time.monotonic() - t


def test_hostile_proxies_are_dead_and_cheap(mounts, peer_set, hostile_set, tmp_path):
    tmp = str(tmp_path)
    h = hostile_set
    good_lines = [p.line for p in peer_set.good]
    lst = hostile.write_lines(os.path.join(tmp, "list.txt"), good_lines)
    db = os.path.join(tmp, "proxyfs.db")
    conf = hostile.write_conf(tmp, peer_set.judge, lst, db=db, timeout_ms=TIMEOUT_MS,
                              retries=RETRIES, concurrency=1000, publish_ms=200)
    d = mounts.new(conf).start()
    d.sync()
    assert d.live() == peer_set.good_uris
    rss_before = hostile.rss_kb(d.proc.pid)

    controls = {p.uri for p in h.proxies if p.kind in CONTROLS}
    bad = h.uris - controls
    hostile.write_lines(lst, good_lines + sorted(h.uris))
    bound = TIMEOUT_MS / 1000.0 * (RETRIES + 1) + RETRY_BACKOFF_S + SLACK_S
    for scan in (1, 2):
        took = timed_sync(d)
        assert took <= bound, \
            "scan %d of %d hostile proxies took %.1f s, more than timeout x (retries + 1)" \
            " + slack = %.1f s" % (scan, len(bad), took, bound)
        assert d.running(), "proxyfs died during a hostile scan; log:\n%s" % d.log()

    live = d.live()
    wrongly_alive = [p for p in h.proxies if p.uri in live and p.uri in bad]
    assert not wrongly_alive, "hostile proxies listed as live: %r" % wrongly_alive
    assert live == peer_set.good_uris | controls

    st = d.read_json("stat.json")
    assert st["pool"]["total"] == len(peer_set.good) + len(h.proxies)
    assert st["pool"]["unknown"] == 0
    assert st["pool"]["dead"] == len(bad)
    # Found dead, not merely left out: the store holds every one as dead.
    wait_until(lambda: hostile.db_uris(db, state=2) >= bad, STORE_TIMEOUT,
               "every hostile proxy stored as dead")

    rss_after = hostile.rss_kb(d.proc.pid)
    if not hostile.asan_build(d.binary):
        assert rss_after - rss_before < RSS_GROWTH_MAX_KB, \
            "RSS grew from %d kB to %d kB over two hostile scans" % (rss_before, rss_after)
    assert d.read_text("health").strip() == "ok"
    d.stop()
