"""Sticky sessions in the mount: session/KEY at the top and in every folder.

A key gives the same live proxy on every read; proxies joining the pool
never move it; removing its proxy moves it; a folder's session is a proxy
of that folder; `ls session/` is empty; a KEY that is not a session name is
ENOENT. Each test has a daemon of its own (fresh_pool), since some change
the pool.
"""

import errno
import os
import subprocess

import pytest

import peers
from conftest import wait_until, write_config, write_list

APPEAR_TIMEOUT = 10.0  # a check of a proxy on loopback takes milliseconds
KEYS = ["user-%d" % i for i in range(40)]


def session_of(d, key, folder=""):
    return d.read_text(os.path.join(folder, "session", key))


def placed(d, keys, folder=""):
    return {k: session_of(d, k, folder) for k in keys}


def test_key_sticks(fresh_pool, peer_set):
    first = session_of(fresh_pool, "alice")
    assert first.endswith("\n") and first.count("\n") == 1
    assert first.strip() in peer_set.good_uris
    for _ in range(50):
        assert session_of(fresh_pool, "alice") == first
    # Keys spread: 40 keys over 5 proxies do not all land on one.
    got = placed(fresh_pool, KEYS)
    assert {u.strip() for u in got.values()} <= peer_set.good_uris
    assert len(set(got.values())) > 1
    assert placed(fresh_pool, KEYS) == got


def test_joining_never_moves_a_key(fresh_pool, peer_set, tmp_path):
    before = placed(fresh_pool, KEYS)
    joined = [peers.start_microsocks(str(tmp_path), "127.0.0.%d" % (41 + i)) for i in range(4)]
    try:
        fresh_pool.write("control/add", "".join(p.uri + "\n" for p in joined))
        new = {p.uri for p in joined}
        wait_until(lambda: new <= fresh_pool.live(), APPEAR_TIMEOUT, "the new proxies live")
        assert placed(fresh_pool, KEYS) == before
        # New keys do land on the new proxies: they had a fair chance at
        # the old keys too, and took none.
        fresh = placed(fresh_pool, ["late-%d" % i for i in range(40)])
        assert {u.strip() for u in fresh.values()} & new
    finally:
        for p in joined:
            p.stop()


def test_removing_its_proxy_moves_a_key(fresh_pool, peer_set):
    before = placed(fresh_pool, KEYS)
    gone = before[KEYS[0]].strip()
    fresh_pool.write("control/remove", gone + "\n")
    wait_until(lambda: gone not in fresh_pool.live(), APPEAR_TIMEOUT, "%s gone" % gone)
    after = placed(fresh_pool, KEYS)
    for k in KEYS:
        assert after[k].strip() in fresh_pool.live()
        if before[k].strip() == gone:
            assert after[k] != before[k]
        else:
            assert after[k] == before[k], "%s moved though its proxy stayed" % k
    sessions = fresh_pool.read_json("stat.json")["sessions"]
    assert sessions["moved_total"] == sum(1 for k in KEYS if before[k].strip() == gone)
    # Back in the pool, it does not take its keys back: they moved.
    fresh_pool.write("control/add", gone + "\n")
    wait_until(lambda: gone in fresh_pool.live(), APPEAR_TIMEOUT, "%s back" % gone)
    assert placed(fresh_pool, KEYS) == after


def test_same_placement_after_restart(fresh_pool, peer_set):
    """The table is not kept, but placement depends only on KEY and the
    live set: after a restart over the same pool, every key is back on its
    proxy."""
    before = placed(fresh_pool, KEYS)
    socks5 = placed(fresh_pool, KEYS[:10], "socks5")
    fresh_pool.stop()
    fresh_pool.start()
    fresh_pool.sync()
    assert fresh_pool.live() == peer_set.good_uris
    assert fresh_pool.read_json("stat.json")["sessions"]["active"] == 0
    assert placed(fresh_pool, KEYS) == before
    assert placed(fresh_pool, KEYS[:10], "socks5") == socks5


def test_folders_have_sessions(fresh_pool, peer_set):
    for folder, want in (("socks5", "socks5://"), ("socks4", "socks4://"),
                         ("http", "http://"), ("https", "http://")):
        for k in KEYS[:10]:
            uri = session_of(fresh_pool, k, folder).strip()
            assert uri.startswith(want), "%s/session/%s gave %s" % (folder, k, uri)
            assert uri in fresh_pool.live(folder + "/live.txt")
    assert session_of(fresh_pool, "k", "sources/local").strip() in peer_set.good_uris
    for grade in ("elite", "anonymous", "transparent"):
        live = fresh_pool.live("anonymity/%s/live.txt" % grade)
        got = session_of(fresh_pool, "k", "anonymity/" + grade)
        assert (got.strip() in live) if live else got == ""


def test_empty_folder_keeps_the_key(fresh_pool, peer_set):
    uri = peer_set.socks4.uri
    assert session_of(fresh_pool, "k", "socks4").strip() == uri
    fresh_pool.write("control/remove", uri + "\n")
    wait_until(lambda: uri not in fresh_pool.live(), APPEAR_TIMEOUT, "%s gone" % uri)
    assert session_of(fresh_pool, "k", "socks4") == ""
    assert fresh_pool.stat("socks4/session/k").st_size == 0
    fresh_pool.write("control/add", uri + "\n")
    wait_until(lambda: uri in fresh_pool.live(), APPEAR_TIMEOUT, "%s back" % uri)
    assert session_of(fresh_pool, "k", "socks4").strip() == uri
    assert fresh_pool.read_json("stat.json")["sessions"]["moved_total"] == 0


def test_listing(fresh_pool):
    for folder in ("", "socks5", "http", "https", "socks4", "anonymity/elite",
                   "sources/local"):
        assert "session" in fresh_pool.listdir(folder), folder
        session_of(fresh_pool, "listed-%d" % len(folder), folder)
        assert fresh_pool.listdir(os.path.join(folder, "session")) == []
    assert "session" not in fresh_pool.listdir("anonymity")
    assert "session" not in fresh_pool.listdir("sources")


@pytest.mark.parametrize("key", ["k" * 65, "a b", "a%", "a+b", "a:b", "caf\u00e9", "a\\b"])
def test_bad_keys_are_enoent(fresh_pool, peer_set, key):
    for folder in ("", "socks5", "sources/local"):
        # Beside a good key of the same folder.
        assert session_of(fresh_pool, "good-key", folder).strip() in peer_set.good_uris
        with pytest.raises(OSError) as e:
            session_of(fresh_pool, key, folder)
        assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        session_of(fresh_pool, "x", "nofolder")
    assert e.value.errno == errno.ENOENT


def test_longest_key_and_every_character(fresh_pool, peer_set):
    for key in ("k" * 64, "Az09._-", "...", ".k", "-"):
        assert session_of(fresh_pool, key).strip() in peer_set.good_uris


def test_stat_json_counts(fresh_pool):
    s = fresh_pool.read_json("stat.json")["sessions"]
    assert s == {"active": 0, "max": 100000, "ttl_s": 600, "created_total": 0,
                 "moved_total": 0, "dropped_total": 0}
    placed(fresh_pool, KEYS)
    placed(fresh_pool, KEYS[:5], "socks5")
    placed(fresh_pool, KEYS)
    s = fresh_pool.read_json("stat.json")["sessions"]
    assert s["active"] == len(KEYS) + 5
    assert s["created_total"] == len(KEYS) + 5
    metrics = fresh_pool.read_text("metrics")
    assert "proxyfs_sessions_active %d\n" % (len(KEYS) + 5) in metrics
    assert "proxyfs_sessions_created_total %d\n" % (len(KEYS) + 5) in metrics
    assert "proxyfs_sessions_moved_total 0\n" in metrics
    assert "proxyfs_sessions_dropped_total 0\n" in metrics


def session_conf(tmp, peer_set, ttl, most):
    conf = write_config(tmp, peer_set.judge, write_list(tmp, peer_set.list_text(slow=False)))
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("[proxyfs]\n", "[proxyfs]\nsession_ttl_s = %d\nsessions_max = %d\n"
                             % (ttl, most), 1))
    return conf


def test_config_keys_at_start_and_reload(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    conf = session_conf(tmp, peer_set, 30, 3)
    d = mounts.new(conf).start()
    d.sync()
    s = d.read_json("stat.json")["sessions"]
    assert (s["ttl_s"], s["max"]) == (30, 3)
    placed(d, KEYS[:5])
    s = d.read_json("stat.json")["sessions"]
    assert (s["active"], s["created_total"], s["dropped_total"]) == (3, 5, 2)
    # The oldest two were dropped: the newest three are still placed.
    assert "proxyfs_sessions_dropped_total 2\n" in d.read_text("metrics")
    # A reload takes new values; a smaller bound drops at once.
    session_conf(tmp, peer_set, 45, 1)
    d.write("control/reload", "reload\n")
    s = d.read_json("stat.json")["sessions"]
    assert (s["ttl_s"], s["max"], s["active"], s["dropped_total"]) == (45, 1, 1, 4)
    # A value out of range: the reload is refused, the running values stay.
    session_conf(tmp, peer_set, 604801, 1)
    with pytest.raises(OSError) as e:
        d.write("control/reload", "reload\n")
    assert e.value.errno == errno.EINVAL
    assert d.read_json("stat.json")["sessions"]["ttl_s"] == 45
    d.stop()


def test_bad_config_value_does_not_start(binary, peer_set, tmp_path):
    conf = session_conf(str(tmp_path), peer_set, 1, 0)
    p = subprocess.run([binary, "-f", "-c", conf, str(tmp_path / "mnt")], capture_output=True,
                       timeout=15)
    assert p.returncode == 2
    assert b"sessions_max" in p.stderr and b"out of range 1..10000000" in p.stderr
