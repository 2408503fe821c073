"""An empty pool: the files still read, as empty, and health says why."""

import os

from conftest import write_config, write_list


def test_empty_pool(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    lst = write_list(tmp, "# nothing here yet\n\n")
    d = mounts.new(write_config(tmp, peer_set.judge, lst)).start()
    d.sync()
    for rel in ("random", "next", "live.txt", "http/random", "socks5/next", "socks4/live.txt"):
        assert d.read(rel) == b"", "%s of an empty pool reads %r" % (rel, d.read(rel))
    assert d.read_json("live.json") == []
    health = d.read_text("health")
    assert health.startswith("degraded: ") and health.endswith("\n") and len(health) > 12, \
        "health of an empty pool: %r" % health
    st = d.read_json("stat.json")
    assert st["pool"]["total"] == 0 and st["pool"]["alive"] == 0
    assert st["sources"][0]["name"] == "local"
    assert st["sources"][0]["proxies"] == 0 and st["sources"][0]["invalid"] == 0
    d.stop()


def test_all_dead_pool(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    lst = write_list(tmp, "%s\n%s\n" % (peer_set.closed.line, peer_set.liar.line))
    d = mounts.new(write_config(tmp, peer_set.judge, lst)).start()
    d.sync()
    assert d.read("random") == b""
    assert d.read("live.txt") == b""
    assert d.read_text("health").startswith("degraded: ")
    st = d.read_json("stat.json")
    assert (st["pool"]["total"], st["pool"]["alive"], st["pool"]["dead"]) == (2, 0, 2)
    d.stop()


def test_missing_source_file_is_reported_not_fatal(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    lst = os.path.join(tmp, "does-not-exist.txt")
    d = mounts.new(write_config(tmp, peer_set.judge, lst)).start()
    d.sync()
    src = d.read_json("stat.json")["sources"][0]
    assert src["name"] == "local"
    assert src["error"], "a missing source file shows no error in stat.json: %r" % src
    assert d.read("random") == b""
    d.stop()
