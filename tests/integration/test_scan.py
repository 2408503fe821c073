"""A scan seen from outside: live proxies are published while it runs, and
`sync` waits for the whole of it."""

from conftest import wait_until, write_config, write_list


def test_live_proxies_appear_while_the_scan_runs(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    # The blackhole holds the first scan open for timeout_ms (2 s) per try;
    # the good proxies answer in milliseconds and must be published
    # (publish_ms, default 500) long before the scan ends.
    d = mounts.new(write_config(tmp, peer_set.judge,
                                write_list(tmp, peer_set.list_text(slow=True)))).start()
    wait_until(lambda: d.live() == peer_set.good_uris, 10.0, "the good proxies in live.txt")
    st = d.read_json("stat.json")
    assert st["scan"]["running"] is True, "the scan ended before the blackhole's timeout"
    assert st["pool"]["alive"] == len(peer_set.good_uris)
    d.sync()
    st = d.read_json("stat.json")
    assert st["scan"]["running"] is False
    assert st["pool"]["unknown"] == 0
    assert st["pool"]["dead"] == len(peer_set.bad_uris(slow=True))
    assert d.live() == peer_set.good_uris
    d.stop()


def test_sync_returns_after_its_own_rescan(fresh_pool):
    for _ in range(3):
        gen = fresh_pool.read_json("stat.json")["scan"]["generation"]
        fresh_pool.sync()
        st = fresh_pool.read_json("stat.json")
        assert st["scan"]["generation"] > gen
        assert st["scan"]["running"] is False
        assert st["scan"]["checked"] == st["scan"]["total"]
