"""What a user reads from a mounted pool: the live set, random and next,
the per-protocol folders, live.json, stat.json, metrics and health.

One daemon for the module, over a list of five good proxies (tinyproxy,
microsocks, microsocks with a password, danted as SOCKS4, a second tinyproxy
listed as https://), four bad ones
(a closed port, a blackhole, a liar, the right proxy with the wrong
password), a duplicate, comments and two malformed lines; synced once with
`echo sync > control/reload` before the first test. Nothing here changes the
pool.
"""

import errno
import json
import os
import shutil
import subprocess

import pytest

from conftest import PeerSet, call_with_deadline

LIVE_FIELDS = ("uri", "protocol", "host", "port", "latency_ms", "anonymity", "exit_ip",
               "last_checked", "sources")


def test_live_set_after_sync(pool, peer_set):
    live = pool.read_lines("live.txt")
    assert len(live) == len(set(live)), "live.txt repeats a proxy: %r" % live
    assert set(live) == peer_set.good_uris
    assert not set(live) & peer_set.bad_uris()


def test_live_txt_is_newline_terminated_uris(pool):
    data = pool.read("live.txt")
    assert data.endswith(b"\n")
    for line in data.decode().splitlines():
        assert line == line.strip() and "://" in line, "not a URI line: %r" % line


def test_random_only_returns_live_members(pool):
    live = pool.live()
    seen = set()
    for _ in range(100):
        data = pool.read_text("random")
        assert data.endswith("\n") and data.count("\n") == 1, "random read %r" % data
        seen.add(data.rstrip("\n"))
    assert seen <= live, "random gave proxies not in live.txt: %r" % (seen - live)
    assert len(seen) > 1, "100 opens of random always gave %r" % seen


def test_next_cycles_through_all(pool):
    live = pool.live()
    got = [pool.read_text("next").rstrip("\n") for _ in range(2 * len(live))]
    assert set(got) == live, "next over %d opens gave %r" % (len(got), got)
    # Round robin: any len(live) consecutive opens cover the whole set.
    for i in range(len(live) + 1):
        window = got[i:i + len(live)]
        assert set(window) == live, "next is not round-robin: %r" % got


@pytest.mark.parametrize("folder,scheme", [("socks5", "socks5://"), ("socks4", "socks4://")])
def test_socks_folder(pool, peer_set, folder, scheme):
    expected = {u for u in peer_set.good_uris if u.startswith(scheme)}
    assert pool.live(folder + "/live.txt") == expected
    assert pool.read_text(folder + "/random").rstrip("\n") in expected
    assert pool.read_text(folder + "/next").rstrip("\n") in expected


def test_http_folder(pool, peer_set):
    live = pool.live("http/live.txt")
    # The proxy listed https:// was checked through CONNECT only; whether it
    # also counts as a plain HTTP proxy is the daemon's choice.
    assert peer_set.tinyproxy.uri in live
    assert live <= {peer_set.tinyproxy.uri, peer_set.tunnel.uri}
    assert pool.read_text("http/random").rstrip("\n") in live
    assert pool.read_text("http/next").rstrip("\n") in live


def test_https_folder(pool, peer_set):
    st = pool.stat("https")
    assert os.path.stat.S_ISDIR(st.st_mode)
    assert {"random", "next", "live.txt"} <= set(pool.listdir("https"))
    # Listed as https://, verified through CONNECT, printed as http://.
    assert pool.read_lines("https/live.txt") == [peer_set.tunnel.uri]
    assert pool.read_text("https/random") == peer_set.tunnel.uri + "\n"


def test_root_listing(pool):
    names = set(pool.listdir())
    assert {"random", "next", "live.txt", "live.json", "stat.json", "metrics", "health",
            "http", "https", "socks4", "socks5", "prometheus", "control"} <= names
    assert {"reload", "add", "remove"} <= set(pool.listdir("control"))


def _live_json_entries(doc):
    if isinstance(doc, dict):
        assert "proxies" in doc, "live.json object without proxies: %r" % list(doc)
        doc = doc["proxies"]
    assert isinstance(doc, list)
    return doc


def test_live_json(pool, peer_set):
    entries = _live_json_entries(pool.read_json("live.json"))
    assert {e["uri"] for e in entries} == peer_set.good_uris
    for e in entries:
        missing = [k for k in LIVE_FIELDS if k not in e]
        assert not missing, "live.json entry lacks %r: %r" % (missing, e)
        assert e["uri"].startswith(e["protocol"] + "://") or \
            (e["protocol"] == "https" and e["uri"].startswith("http://")), e
        assert isinstance(e["port"], int) and e["uri"].endswith(":%d" % e["port"])
        assert e["host"] in e["uri"]
        assert isinstance(e["latency_ms"], int) and e["latency_ms"] >= 0
        assert isinstance(e["last_checked"], int) and e["last_checked"] > 0
        assert e["anonymity"] in ("unknown", "transparent", "anonymous", "elite")
        assert "local" in (e["sources"] if isinstance(e["sources"], list)
                           else e["sources"].split(","))
    # Same order as live.txt (fastest first).
    assert [e["uri"] for e in entries] == pool.read_lines("live.txt")


def test_stat_json(pool, peer_set):
    st = pool.read_json("stat.json")
    good, bad = len(peer_set.good_uris), len(peer_set.bad_uris())
    assert st["pool"]["total"] == peer_set.list_distinct() == good + bad
    assert st["pool"]["alive"] == good
    assert st["pool"]["dead"] == bad
    assert st["pool"]["unknown"] == 0, "proxies left unchecked after a sync rescan"
    assert st["scan"]["generation"] >= 1
    assert st["scan"]["running"] is False
    src = st["sources"][0]
    assert src["name"] == "local"
    assert src["proxies"] == peer_set.list_distinct()
    assert src["invalid"] == PeerSet.LIST_INVALID


def test_health_ok(pool):
    assert pool.read_text("health").strip() == "ok"


def _promtool():
    for p in (shutil.which("promtool"), "/usr/local/bin/promtool"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def test_metrics_same_bytes_and_valid(pool):
    # The two files show the same snapshot unless one is published between
    # the reads; a few tries rule that out.
    for _ in range(5):
        metrics = pool.read("metrics")
        prom = pool.read("prometheus/proxyfs.prom")
        if metrics == prom:
            break
    assert metrics == prom, "metrics and prometheus/proxyfs.prom differ"
    assert metrics.endswith(b"\n"), "no final newline (node_exporter would skip the file)"
    assert b"proxyfs_" in metrics
    promtool = _promtool()
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool missing in CI (scripts/install-deps.sh installs it)")
        pytest.skip("promtool not installed (scripts/install-deps.sh installs it)")
    p = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True,
                       timeout=30)
    assert p.returncode == 0, "promtool check metrics: %d\n%s%s" % (
        p.returncode, p.stdout.decode(), p.stderr.decode())


def test_unknown_path_enoent(pool):
    for rel in ("nope", "http/nope", "control/nope", "nope/live.txt"):
        with pytest.raises(FileNotFoundError):
            pool.stat(rel)
        with pytest.raises(FileNotFoundError):
            pool.read(rel)


@pytest.mark.parametrize("name", ["reload", "add", "remove"])
def test_reading_control_is_refused(pool, name):
    with pytest.raises(OSError) as e:
        pool.read("control/" + name)
    assert e.value.errno in (errno.EACCES, errno.EPERM), e.value


def test_pool_files_are_read_only(pool):
    with pytest.raises(OSError) as e:
        pool.write("live.txt", "x\n")
    assert e.value.errno in (errno.EACCES, errno.EPERM, errno.EROFS), e.value


def test_stat_json_is_one_document(pool):
    # Read in small pieces, the way a slow reader would.
    def run():
        out = b""
        with open(pool.path("stat.json"), "rb", buffering=0) as f:
            while True:
                chunk = f.read(7)
                if not chunk:
                    return out
                out += chunk
    json.loads(call_with_deadline(run))
