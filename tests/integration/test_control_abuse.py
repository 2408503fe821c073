"""The control files under abuse: writers racing each other, a write too
large, a line split across writes, binary junk, one bad line among good
ones, and a storm of `sync` writes. Each write is applied whole, once, or
not at all (EINVAL), and the daemon stays healthy.

Every test has its own daemon over the list without the blackhole
(conftest's fresh_pool), synced once.
"""

import errno
import os
import random
import threading

import pytest

import hostile
from conftest import FS_TIMEOUT, call_with_deadline, wait_until

APPLY_TIMEOUT = 10.0
WRITERS = 8
LINES_PER_WRITER = 50


def pool_total(d):
    return d.read_json("stat.json")["pool"]["total"]


def refused_checks(d):
    return d.read_json("stat.json")["engine"]["checks"]["refused"]


def assert_nothing_applied(d, total, live):
    """A rescan later the pool is what it was."""
    d.sync()
    assert pool_total(d) == total, "pool.total went from %d to %d" % (total, pool_total(d))
    assert d.live() == live


def expect_einval(d, data):
    with pytest.raises(OSError) as e:
        d.write("control/add", data)
    assert e.value.errno == errno.EINVAL, "control/add answered %r" % e.value


def run_threads(targets):
    """Starts one thread per callable at once; returns their exceptions."""
    errors = []
    start = threading.Barrier(len(targets))

    def run(fn):
        try:
            start.wait(timeout=FS_TIMEOUT)
            fn()
        except BaseException as e:
            errors.append(e)
    threads = [threading.Thread(target=run, args=(fn,), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(FS_TIMEOUT)
        assert not t.is_alive(), "a control writer did not return within %.0f s" % FS_TIMEOUT
    return errors


def test_concurrent_writers_each_line_once(fresh_pool):
    d = fresh_pool
    refused = refused_checks(d)
    d.sync()
    per_rescan = refused_checks(d) - refused  # the list's own closed port
    total, refused = pool_total(d), refused_checks(d)
    uris = hostile.closed_uris(WRITERS * LINES_PER_WRITER, net=70)
    shares = [uris[i::WRITERS] for i in range(WRITERS)]

    def one_fd(lines):
        # One open file, a write per line.
        def run():
            fd = os.open(d.path("control/add"), os.O_WRONLY)
            try:
                for line in lines:
                    assert os.write(fd, (line + "\n").encode()) == len(line) + 1
            finally:
                os.close(fd)
        return run

    def open_per_line(lines):
        def run():
            for line in lines:
                with open(d.path("control/add"), "w") as f:
                    f.write(line + "\n")
        return run

    errors = run_threads([(one_fd if i % 2 else open_per_line)(share)
                          for i, share in enumerate(shares)])
    assert not errors, "control/add writers failed: %r" % errors[:3]
    wait_until(lambda: pool_total(d) >= total + len(uris), APPLY_TIMEOUT,
               "%d added proxies in pool.total" % len(uris))
    wait_until(lambda: refused_checks(d) >= refused + len(uris), APPLY_TIMEOUT,
               "a check of every added proxy")
    d.sync()  # every added proxy is checked once more
    st = d.read_json("stat.json")
    assert st["pool"]["total"] == total + len(uris), "pool.total %d, expected %d" \
        % (st["pool"]["total"], total + len(uris))
    assert st["engine"]["checks"]["refused"] == refused + 2 * len(uris) + per_rescan, \
        "each added line must be checked once when added and once by the rescan"


def test_write_of_2_mib_is_einval(fresh_pool):
    d = fresh_pool
    total, live = pool_total(d), d.live()
    lines = []
    size = 0
    i = 0
    while size <= 2 * 1024 * 1024:
        # Loopback addresses only: were they applied, they would be checked.
        line = "http://127.%d.%d.%d:1\n" % (100 + (i >> 16 & 63), i >> 8 & 255, i & 255)
        lines.append(line)
        size += len(line)
        i += 1
    data = "".join(lines)
    expect_einval(d, data)
    assert_nothing_applied(d, total, live)


def test_line_split_across_writes(fresh_pool, peer_set):
    d = fresh_pool
    uri = peer_set.extra.uri
    total = pool_total(d)
    pieces = [uri[:3], uri[3:9], uri[9:-2], uri[-2:], "\n"]

    def run():
        fd = os.open(d.path("control/add"), os.O_WRONLY)
        try:
            for p in pieces:
                os.write(fd, p.encode())
        finally:
            os.close(fd)
    call_with_deadline(run, what="a line written in pieces")
    wait_until(lambda: uri in d.live(), APPLY_TIMEOUT, "%s in live.txt" % uri)
    d.sync()
    assert pool_total(d) == total + 1, "the pieces of one line made %d proxies" \
        % (pool_total(d) - total)
    assert d.live() == peer_set.good_uris | {uri}


def test_binary_junk_is_einval(fresh_pool):
    d = fresh_pool
    total, live = pool_total(d), d.live()
    rng = random.Random(1234)
    junk = bytes(rng.randrange(256) for _ in range(8192))
    expect_einval(d, junk)
    expect_einval(d, b"\x00" * 100 + b"\n")
    expect_einval(d, b"http://127.0.0.1:80\x00junk\n")
    assert_nothing_applied(d, total, live)


@pytest.mark.parametrize("bad_at", ["first", "middle", "last", "unterminated"])
def test_one_bad_line_refuses_the_whole_write(fresh_pool, bad_at):
    d = fresh_pool
    total, live = pool_total(d), d.live()
    good = hostile.closed_uris(10, net=80)
    bad = "not-a-proxy:99999"
    if bad_at == "first":
        lines = [bad] + good
    elif bad_at == "middle":
        lines = good[:5] + [bad] + good[5:]
    else:
        lines = good + [bad]
    data = "\n".join(lines) + ("" if bad_at == "unterminated" else "\n")
    expect_einval(d, data)
    assert_nothing_applied(d, total, live)


def test_sync_storm_from_many_threads(fresh_pool, peer_set):
    d = fresh_pool
    gen = d.read_json("stat.json")["scan"]["generation"]

    def sync():
        d.write("control/reload", "sync\n")

    errors = run_threads([sync] * WRITERS + [lambda: d.write("control/reload", "now\n")] * 4)
    assert not errors, "sync writes failed: %r" % errors[:3]
    assert d.running()
    st = d.read_json("stat.json")
    assert st["scan"]["generation"] > gen
    assert d.read_text("health").strip() == "ok"
    assert d.live() == peer_set.good_uris
