"""kill -9 in the middle of scans, twenty times in a row, over one db.

The pool is ~300 proxies: the good peers, blackholes (each check lasts the
whole timeout) and closed ports, so a scan lasts seconds and results reach
the store throughout it. Each round waits for stat.json to say a scan is
running, kills the daemon at a random moment of it, and then, as a user
would: the db passes SQLite's integrity check, every proxy the db knew
before the kill is still in it, and the restarted mount serves the live
set the db holds as soon as the mount appears. In every other round the
dead daemon's mount is left in place: the next start must clear it itself.
"""

import os
import random
import time

import pytest

import hostile
from conftest import is_mounted, wait_until

ROUNDS = 20
BLACKHOLES = 150
CLOSED = 145
KILL_WINDOW_S = 1.5     # kills land this long into the scan at most
SERVE_WITHIN_S = 1.0
STORE_TIMEOUT = 10.0
SCAN_VISIBLE_TIMEOUT = 5.0


@pytest.fixture
def holes(tmp_path):
    h = hostile.Hostile(str(tmp_path / "holes"), ["blackhole"] * BLACKHOLES)
    try:
        yield h
    finally:
        h.stop()


def scan_running(d):
    return d.read_json("stat.json")["scan"]["running"]


def test_kill_9_during_scans(mounts, peer_set, holes, tmp_path):
    tmp = str(tmp_path)
    seed = int(os.environ.get("PROXYFS_CRASH_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    good = peer_set.good_uris
    lines = [p.line for p in peer_set.good] + sorted(holes.uris) + hostile.closed_uris(CLOSED)
    lst = hostile.write_lines(os.path.join(tmp, "list.txt"), lines)
    db = os.path.join(tmp, "proxyfs.db")
    # A low concurrency spreads the blackholes' results over the scan, so
    # the store writes all along it.
    conf = hostile.write_conf(tmp, peer_set.judge, lst, db=db, timeout_ms=500,
                              connect_timeout_ms=250, retries=0, concurrency=20,
                              publish_ms=50)
    d = mounts.new(conf).start()
    # The first results: the good proxies live, and on disk.
    wait_until(lambda: hostile.db_uris(db, state=1) >= good, STORE_TIMEOUT,
               "the good proxies stored as alive")
    known = hostile.db_uris(db)

    for i in range(ROUNDS):
        rnd = "%d (PROXYFS_CRASH_SEED=%d)" % (i, seed)
        wait_until(lambda: scan_running(d), SCAN_VISIBLE_TIMEOUT,
                   "round %s: stat.json showing a running scan" % rnd)
        time.sleep(rng.uniform(0, KILL_WINDOW_S))
        known |= hostile.db_uris(db)
        leave_stale = i % 2 == 0
        d.kill(unmount=not leave_stale)  # SIGKILL
        if leave_stale:
            assert is_mounted(d.mnt), "round %s: no stale mount left to recover from" % rnd

        check = hostile.integrity_check(db)
        assert check == "ok", "round %s: integrity_check after kill -9: %s" % (rnd, check)
        after = hostile.db_uris(db)
        assert known <= after, "round %s: kill -9 lost %d stored proxies, e.g. %r" \
            % (rnd, len(known - after), sorted(known - after)[:5])
        known = after
        stored_live = hostile.db_uris(db, state=1)
        assert stored_live and stored_live <= good, \
            "round %s: the db's live set is %r" % (rnd, stored_live)

        d.start()
        appeared = time.monotonic()
        served = wait_until(lambda: d.live(), SERVE_WITHIN_S + 5.0,
                            "round %s: live.txt of the restarted mount" % rnd, interval=0.01)
        took = time.monotonic() - appeared
        assert took <= SERVE_WITHIN_S, \
            "round %s: the restarted mount served nothing for %.2f s" % (rnd, took)
        assert served <= good, "round %s: live.txt lists %r" % (rnd, served - good)
        assert stored_live <= served, \
            "round %s: restarted mount serves %r, the db's live set is %r" \
            % (rnd, served, stored_live)

    d.stop()
    assert hostile.integrity_check(db) == "ok"
