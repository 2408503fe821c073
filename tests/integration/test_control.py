"""The control files and what rescans do to files a reader holds.

Each test has a daemon of its own over the list without the blackhole (so a
rescan takes well under a second), since these tests change the pool.
"""

import errno
import json
import os

import pytest

from conftest import call_with_deadline, wait_until

APPEAR_TIMEOUT = 10.0  # a check of a proxy on loopback takes milliseconds


def test_add_good_proxy_goes_live(fresh_pool, peer_set):
    uri = peer_set.extra.uri
    assert uri.startswith("http://")
    assert uri not in fresh_pool.live()
    fresh_pool.write("control/add", uri + "\n")
    wait_until(lambda: uri in fresh_pool.live(), APPEAR_TIMEOUT, "%s in live.txt" % uri)
    assert fresh_pool.live() == peer_set.good_uris | {uri}
    assert uri in fresh_pool.live("http/live.txt")
    total = fresh_pool.read_json("stat.json")["pool"]["total"]
    assert total == peer_set.list_distinct(slow=False) + 1


def test_add_without_final_newline(fresh_pool, peer_set):
    # printf %s LINE > add: the line is taken at close.
    uri = peer_set.extra.uri
    fresh_pool.write("control/add", uri)
    wait_until(lambda: uri in fresh_pool.live(), APPEAR_TIMEOUT, "%s in live.txt" % uri)


def test_add_garbage_is_einval_and_changes_nothing(fresh_pool, peer_set):
    before = fresh_pool.live()
    total = fresh_pool.read_json("stat.json")["pool"]["total"]
    with pytest.raises(OSError) as e:
        fresh_pool.write("control/add", "garbage line\n")
    assert e.value.errno == errno.EINVAL
    # A good line next to a bad one: the whole write is refused.
    with pytest.raises(OSError) as e:
        fresh_pool.write("control/add", peer_set.extra.uri + "\nnot a proxy at all\n")
    assert e.value.errno == errno.EINVAL
    fresh_pool.sync()
    assert fresh_pool.live() == before
    assert fresh_pool.read_json("stat.json")["pool"]["total"] == total


def test_remove_garbage_is_einval(fresh_pool):
    before = fresh_pool.live()
    with pytest.raises(OSError) as e:
        fresh_pool.write("control/remove", "http://nope:0\n")
    assert e.value.errno == errno.EINVAL
    assert fresh_pool.live() == before


def test_remove_keeps_out_and_add_lifts(fresh_pool, peer_set):
    uri = peer_set.socks4.uri
    assert uri in fresh_pool.live()
    fresh_pool.write("control/remove", uri + "\n")
    wait_until(lambda: uri not in fresh_pool.live(), APPEAR_TIMEOUT, "%s gone from live.txt" % uri)
    assert uri not in fresh_pool.live("socks4/live.txt")
    # The source still lists it; a rescan must not bring it back.
    fresh_pool.sync()
    assert fresh_pool.live() == peer_set.good_uris - {uri}
    # Adding the same line lifts the removal.
    fresh_pool.write("control/add", uri + "\n")
    wait_until(lambda: uri in fresh_pool.live(), APPEAR_TIMEOUT, "%s back in live.txt" % uri)
    fresh_pool.sync()
    assert fresh_pool.live() == peer_set.good_uris


def test_removal_survives_restart(fresh_pool, peer_set):
    uri = peer_set.socks5.uri
    fresh_pool.write("control/remove", uri + "\n")
    wait_until(lambda: uri not in fresh_pool.live(), APPEAR_TIMEOUT, "%s gone from live.txt" % uri)
    fresh_pool.stop()
    fresh_pool.start()
    assert uri not in fresh_pool.live()
    fresh_pool.sync()
    assert fresh_pool.live() == peer_set.good_uris - {uri}


def test_reload_without_sync_returns_and_rescans(fresh_pool):
    gen = fresh_pool.read_json("stat.json")["scan"]["generation"]
    fresh_pool.write("control/reload", "now\n", timeout=5)

    def scanned():
        st = fresh_pool.read_json("stat.json")
        return st["scan"]["generation"] > gen and not st["scan"]["running"]
    wait_until(scanned, APPEAR_TIMEOUT, "the queued rescan to finish")


def test_mtime_follows_the_snapshot(fresh_pool):
    before = fresh_pool.stat("live.txt").st_mtime_ns
    fresh_pool.sync()
    after = fresh_pool.stat("live.txt").st_mtime_ns
    assert after > before, "st_mtime of live.txt did not change across a rescan"


def test_open_file_keeps_its_snapshot(fresh_pool, peer_set):
    uri = peer_set.tinyproxy.uri
    old_live = fresh_pool.read("live.txt")
    old_gen = fresh_pool.read_json("stat.json")["scan"]["generation"]
    assert uri.encode() in old_live

    def open_and_start(rel):
        f = open(fresh_pool.path(rel), "rb", buffering=0)
        return f, f.read(5)

    live_f, live_head = call_with_deadline(lambda: open_and_start("live.txt"))
    stat_f, stat_head = call_with_deadline(lambda: open_and_start("stat.json"))
    try:
        fresh_pool.write("control/remove", uri + "\n")
        wait_until(lambda: uri not in fresh_pool.live(), APPEAR_TIMEOUT, "%s gone" % uri)
        fresh_pool.sync()
        live_rest = call_with_deadline(live_f.read)
        stat_rest = call_with_deadline(stat_f.read)
    finally:
        live_f.close()
        stat_f.close()
    assert live_head + live_rest == old_live, "an open live.txt changed under its reader"
    assert json.loads(stat_head + stat_rest)["scan"]["generation"] == old_gen
    # A new open shows the new pool.
    assert uri not in fresh_pool.live()
    assert fresh_pool.read_json("stat.json")["scan"]["generation"] > old_gen


def test_control_files_are_write_only_for_the_owner(fresh_pool):
    for name in ("reload", "add", "remove"):
        st = fresh_pool.stat("control/" + name)
        mode = st.st_mode & 0o777
        assert mode & 0o200 and not mode & 0o022, "control/%s has mode %o" % (name, mode)
        assert st.st_uid == os.getuid()
