"""A full disk under the store: the db lives on a 256 KiB tmpfs that a
filler file fills to the last byte while results keep coming (a sync
rescan, and control/add of a few thousand proxies). The mount keeps serving
and says what is wrong (health, stat.json); once the filler is gone, the
store writes again by itself, health is ok again, and what was checked
meanwhile is on disk.
"""

import errno
import os
import subprocess

import pytest

import hostile
from conftest import wait_until

ADDED = 300            # ~40 KB of rows: the data fits the disk many times
RESCANS_AFTER = 30
STORE_TIMEOUT = 10.0
DEGRADED_TIMEOUT = 10.0
# The store retries a failed write with a doubling backoff of at most 30 s.
RECOVER_TIMEOUT = 35.0


@pytest.fixture
def tiny_disk(tmp_path):
    path = str(tmp_path / "disk")
    os.makedirs(path)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", path],
                       capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        pytest.fail("cannot mount a tmpfs on %s: %s" % (path, p.stderr))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=10)


def fill(path):
    """Writes a file at path until the filesystem has no byte left."""
    with open(path, "wb", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return os.statvfs(os.path.dirname(path)).f_bavail


def health(d):
    return d.read_text("health").strip()


def wait_health(d, pred, timeout, what):
    """Polls health until pred(health) holds; the failure shows the last."""
    seen = []

    def ok():
        seen.append(health(d))
        return pred(seen[-1])
    try:
        wait_until(ok, timeout, what)
    except BaseException:
        raise AssertionError("health never became %s; it says %r; stat.json store: %r"
                             % (what, seen[-1], d.read_json("stat.json")["store"]))


def test_full_disk_degrades_and_recovers(mounts, peer_set, tiny_disk, tmp_path):
    tmp = str(tmp_path)
    db = os.path.join(tiny_disk, "proxyfs.db")
    good = peer_set.good_uris
    lst = hostile.write_lines(os.path.join(tmp, "list.txt"), [p.line for p in peer_set.good])
    conf = hostile.write_conf(tmp, peer_set.judge, lst, db=db, concurrency=500,
                              publish_ms=100)
    d = mounts.new(conf)
    try:
        d.start()
        d.sync()
        wait_until(lambda: hostile.db_uris(db, state=1) >= good, STORE_TIMEOUT,
                   "the good proxies on disk")
        assert health(d) == "ok"

        filler = os.path.join(tiny_disk, "filler")
        left = fill(filler)
        assert left == 0, "the tmpfs still has %d blocks free" % left
        added = hostile.closed_uris(ADDED, net=60)
        d.write("control/add", "".join(u + "\n" for u in added))
        d.sync()
        d.sync()
        assert d.live() == good, "the mount stopped serving the pool on a full disk"
        wait_health(d, lambda h: h.startswith("degraded: store: "), DEGRADED_TIMEOUT,
                    "'degraded: store: ...' on a full disk")
        st = d.read_json("stat.json")
        assert st["store"]["errors"] > 0, "stat.json store: %r" % st["store"]
        assert st["store"]["error"], "stat.json store: %r" % st["store"]
        assert st["pool"]["total"] == len(good) + ADDED

        os.unlink(filler)
        wait_health(d, lambda h: h == "ok", RECOVER_TIMEOUT, "ok once the disk has room")
        assert d.read_json("stat.json")["store"]["error"] is None
        check = hostile.integrity_check(db)
        assert check == "ok", "integrity_check after the full disk: %s" % check
        # What was checked while the disk was full, and what is checked now.
        d.write("control/add", peer_set.extra.uri + "\n")
        wait_until(lambda: peer_set.extra.uri in d.live(), STORE_TIMEOUT,
                   "a proxy added after recovery in live.txt")
        wait_until(lambda: hostile.db_uris(db, state=2) >= set(added) and
                   peer_set.extra.uri in hostile.db_uris(db, state=1), STORE_TIMEOUT,
                   "the results checked during and after the full disk in the db")
        # The disk has room for the data many times over: the store must not
        # fill it again by itself as rescans go on.
        for _ in range(RESCANS_AFTER):
            d.sync()
        wait_health(d, lambda h: h == "ok", 2.0, "ok after %d more rescans" % RESCANS_AFTER)
        free_kb = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize // 1024
        assert free_kb > 0, "the store filled the disk again: %r" % sorted(
            (f, os.path.getsize(os.path.join(tiny_disk, f))) for f in os.listdir(tiny_disk))
        d.stop()
    finally:
        d.kill()  # before the tmpfs goes: the daemon holds the db open
