"""Why a proxy is what it is: all.json, dead.txt, removed.txt and lookup/,
read from a mounted pool of the session's peers with one proxy of each
failure class (closed port: refused; blackhole: timeout; liar:
wrong_answer; wrong password: auth) beside the good ones.

The module's pool is synced once before anything is read (`sync` is the
readiness signal); the remove test uses a pool of its own.
"""

import errno
import os
import urllib.parse

import pytest

from conftest import wait_until

READY_TIMEOUT = 30.0


def by_uri(records):
    return {r["uri"]: r for r in records}


def expected_failures(ps):
    """uri -> (result class, how its detail starts)."""
    return {
        ps.closed.uri: ("refused", "refused: connection refused"),
        ps.blackhole.uri: ("timeout", "timeout after connect"),
        ps.liar.uri: ("wrong_answer", "wrong_answer: 200 without the expected text"),
        ps.wrong_password_uri: ("auth", "auth: SOCKS5 user and password refused"),
    }


def test_all_json_says_why(pool, peer_set):
    ps = peer_set
    records = pool.read_json("all.json")
    assert isinstance(records, list)
    got = by_uri(records)
    assert len(got) == len(records), "a proxy listed twice"
    assert set(got) == ps.good_uris | ps.bad_uris(slow=True)
    for uri in ps.good_uris:
        r = got[uri]
        assert (r["state"], r["result"], r["detail"]) == ("alive", "ok", "ok"), r
        assert r["fails_in_row"] == 0
        assert isinstance(r["latency_ms"], int)
        assert r["next_check"] > r["last_checked"] > 0
    for uri, (result, detail) in expected_failures(ps).items():
        r = got[uri]
        assert r["state"] == "dead", r
        assert r["result"] == result, r
        assert r["detail"].startswith(detail), r
        assert r["fails_in_row"] >= 1
        assert r["latency_ms"] is None
        assert r["last_checked"] > 0
        assert r["next_check"] > r["last_checked"]  # retried after retry_min_s
        assert r["sources"] == ["local"], r
    # The live ones come first, in live.txt's order.
    live = pool.read_lines("live.txt")
    assert [r["uri"] for r in records[:len(live)]] == live


def test_dead_txt_one_line_each(pool, peer_set):
    lines = pool.read_lines("dead.txt")
    want = expected_failures(peer_set)
    assert len(lines) == len(want)
    seen = {}
    for line in lines:
        uri, _, detail = line.partition(" ")
        seen[uri] = detail
    assert set(seen) == set(want)
    for uri, (_, detail) in want.items():
        assert seen[uri].startswith(detail), (uri, seen[uri])
    assert lines == sorted(lines)


def test_lookup(pool, peer_set):
    ps = peer_set
    records = by_uri(pool.read_json("all.json"))
    # host:port: every scheme on it; here one record, all.json's
    text = pool.read_text("lookup/%s:%d" % (ps.closed.host, ps.closed.port))
    assert text.endswith("\n") and text.count("\n") == 1
    rec = pool.read_json("lookup/%s:%d" % (ps.closed.host, ps.closed.port))
    assert rec["uri"] == ps.closed.uri
    assert rec["detail"] == records[ps.closed.uri]["detail"]
    # A URI with its slashes as %2F, credentials and all.
    name = ps.wrong_password_uri.replace("/", "%2F")
    rec = pool.read_json("lookup/" + name)
    assert rec["uri"] == ps.wrong_password_uri and rec["result"] == "auth"
    # Any %XX is decoded.
    rec = pool.read_json("lookup/" + urllib.parse.quote(ps.liar.uri, safe=""))
    assert rec["result"] == "wrong_answer"
    # A live one says so.
    rec = pool.read_json("lookup/%s:%d" % (ps.socks5.host, ps.socks5.port))
    assert rec["state"] == "alive"
    # Unknown names are ENOENT, for stat and open alike; lookup/ lists nothing.
    for name in ("127.0.0.99:1", "socks4:%2F%2F" + "%s:%d" % (ps.closed.host, ps.closed.port),
                 "not a proxy", "%zz"):
        with pytest.raises(OSError) as ei:
            pool.read("lookup/" + name)
        assert ei.value.errno == errno.ENOENT, name
        assert not os.path.exists(pool.path("lookup/" + name))
    assert pool.listdir("lookup") == []
    assert {"all.json", "dead.txt", "removed.txt", "lookup"} <= set(pool.listdir())


def test_removed_txt_after_remove(fresh_pool, peer_set):
    d, ps = fresh_pool, peer_set
    assert d.read_text("removed.txt") == ""
    d.write("control/remove", ps.closed.uri + "\n")
    wait_until(lambda: d.read_lines("removed.txt") == [ps.closed.uri], READY_TIMEOUT,
               "removed.txt lists the closed port")
    rec = by_uri(d.read_json("all.json"))[ps.closed.uri]
    assert rec["state"] == "removed"
    assert rec["next_check"] is None
    assert ps.closed.uri not in {line.split(" ")[0] for line in d.read_lines("dead.txt")}
    assert d.read_json("lookup/%s:%d" % (ps.closed.host, ps.closed.port))["state"] == "removed"
    # Adding it back lifts it.
    d.write("control/add", ps.closed.uri + "\n")
    wait_until(lambda: d.read_text("removed.txt") == "", READY_TIMEOUT, "removed.txt empty")
