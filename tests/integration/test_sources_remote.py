"""Proxy lists downloaded over http(s): what a user sees in live.txt,
/sources/NAME/, stat.json and metrics for each kind of answer.

The lists are served by listserver.py on 127.0.0.1 (one plain HTTP server,
one HTTPS server with a throwaway test CA that `[check] ca_file` names).
They name the peer set's proxies, so the live set is known exactly. One
daemon for the module reads a source of each shape: a clean list, an HTML
table, a JSON array, a CSV export, a gzip-encoded answer, a redirect, a 404, a slow
server that never answers within the module, and three answers over the
16 MiB cap. Tests that change what a server answers, or need another
`[check]` section, run a daemon of their own.
"""

import json
import os
import re

import pytest

import peers
from conftest import Mounts, wait_until
from listserver import ListServer

READY_TIMEOUT = 30.0   # downloads, the judge probe and the first checks
CHANGE_TIMEOUT = 15.0  # a refresh every second, then checks
SLOW_DELAY = 300.0     # longer than the module: the slow source stays pending
BIG = 50 << 20         # the oversized answers
CAP = 16 << 20         # the daemon's limit on a decoded answer


def write_conf(tmp, judge, sources, ca_file=None, check=None, name="proxyfs.ini"):
    """Writes a config over the given sources, [(name, {key: value})] in
    order; check overrides [check] keys. The file is replaced whole, so a
    reload never reads it half-written. Returns its path."""
    keys = {"judge": "http://%s:%d/" % (judge.host, judge.port), "expect": peers.JUDGE_TOKEN,
            "timeout_ms": 2000, "connect_timeout_ms": 1000, "concurrency": 100,
            "interval_s": 3600}
    if ca_file:
        keys["ca_file"] = ca_file
    keys.update(check or {})
    text = ("[proxyfs]\ndb = %s\nlog_level = debug\n\n[check]\n"
            % os.path.join(tmp, "proxyfs.db"))
    text += "".join("%s = %s\n" % kv for kv in keys.items())
    for src, opts in sources:
        text += "\n[source:%s]\n" % src
        text += "".join("%s = %s\n" % kv for kv in opts.items())
    path = os.path.join(tmp, name)
    with open(path + ".new", "w") as f:
        f.write(text)
    os.replace(path + ".new", path)
    return path


def source_stat(d, name):
    for s in d.read_json("stat.json")["sources"]:
        if s["name"] == name:
            return s
    pytest.fail("source %s not in stat.json" % name)


def metric(d, family, source):
    """The value of family{source="NAME"} in /metrics, None if absent."""
    pat = re.compile(r'^%s\{source="%s"\} (\S+)$' % (re.escape(family), re.escape(source)),
                     re.M)
    m = pat.search(d.read_text("metrics"))
    return float(m.group(1)) if m else None


def source_live(d, name):
    return set(d.read_lines("sources/%s/live.txt" % name))


def live_json_sources(d):
    """{uri: sorted source names} from live.json."""
    return {p["uri"]: sorted(p["sources"]) for p in d.read_json("live.json")}


def host_port(peer):
    return peer.host, peer.port


# --- the module's daemon ---

class Remote:
    """The module's daemon (d), its servers, its sources and what each one
    should yield (expect), and the live set they make together."""


@pytest.fixture(scope="module")
def http_srv():
    with ListServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def https_srv():
    with ListServer(tls=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def remote(binary, peer_set, http_srv, https_srv, tmp_path_factory):
    ps = peer_set
    tmp = str(tmp_path_factory.mktemp("remote"))
    closed = ps.closed
    r = Remote()
    r.http, r.https = http_srv, https_srv

    http_srv.route("/clean.txt", "# a clean list\n%s\n%s\n%s\n"
                   % (ps.tinyproxy.line, ps.tunnel.line, closed.line))
    https_srv.route("/table.html",
                    "<html><body><table>\n"
                    "<tr><th>IP Address</th><th>Port</th><th>Anonymity</th></tr>\n"
                    "<tr><td>%s</td><td>%d</td><td>elite proxy</td></tr>\n"
                    "<tr><td>%s</td><td>%d</td><td>anonymous</td></tr>\n"
                    "<tr><td>%s</td><td>%d</td><td>transparent</td></tr>\n"
                    "</table></body></html>\n"
                    % (host_port(ps.extra) + host_port(ps.tinyproxy) + host_port(closed)))
    http_srv.route("/proxies.json",
                   json.dumps([{"ip": ps.socks5.host, "port": ps.socks5.port, "country": "ZZ"},
                               {"ip": closed.host, "port": closed.port, "country": "ZZ"}]),
                   headers={"Content-Type": "application/json"})
    http_srv.route("/export.csv", "ip,port,country\n%s,%d,ZZ\n%s,%d,ZZ\n"
                   % (host_port(ps.socks4) + host_port(closed)),
                   headers={"Content-Type": "text/csv"})
    https_srv.route("/list.gz", "%s\n" % ps.socks4.line, gzip=True)
    http_srv.route("/moved", redirect="/real.txt")
    http_srv.route("/real.txt", "%s\n" % ps.socks5_auth.line)
    http_srv.route("/missing", "no such list\n", status=404)
    http_srv.route("/slow", "%s\n" % ps.extra.line, delay=SLOW_DELAY)
    big = ("%s\n" % ps.extra.line).encode()
    big = big * (BIG // len(big) + 1)
    http_srv.route("/big", big)                   # announced by Content-Length
    http_srv.route("/big-stream", big, length=False)  # ended by closing
    https_srv.route("/bomb.gz", big, gzip=True)   # small on the wire, 50 MB decoded

    r.sources = [
        ("clean", {"url": http_srv.url("/clean.txt")}),
        ("html", {"url": https_srv.url("/table.html"), "protocol": "http"}),
        ("json", {"url": http_srv.url("/proxies.json"), "protocol": "socks5"}),
        ("csv", {"url": http_srv.url("/export.csv"), "protocol": "socks4"}),
        ("gzip", {"url": https_srv.url("/list.gz")}),
        ("moved", {"url": http_srv.url("/moved")}),
        ("missing", {"url": http_srv.url("/missing")}),
        ("slow", {"url": http_srv.url("/slow")}),
        ("big", {"url": http_srv.url("/big")}),
        ("big_stream", {"url": http_srv.url("/big-stream")}),
        ("bomb", {"url": https_srv.url("/bomb.gz")}),
    ]
    r.expect = {
        "clean": {ps.tinyproxy.uri, ps.tunnel.uri},
        "html": {ps.extra.uri, ps.tinyproxy.uri},
        "json": {ps.socks5.uri},
        "csv": {ps.socks4.uri},
        "gzip": {ps.socks4.uri},
        "moved": {ps.socks5_auth.uri},
        "missing": set(), "slow": set(), "big": set(), "big_stream": set(), "bomb": set(),
    }
    r.all_live = set().union(*r.expect.values())
    assert r.all_live == ps.good_uris | {ps.extra.uri}
    conf = write_conf(tmp, ps.judge, r.sources, ca_file=https_srv.ca_file)
    m = Mounts(binary, tmp)
    try:
        r.d = m.new(conf).start()
        settled = [n for n, _ in r.sources if n != "slow"]
        wait_until(lambda: r.d.live() == r.all_live and
                   all(source_stat(r.d, n)["fetches"] >= 1 for n in settled),
                   READY_TIMEOUT, "every source but the slow one fetched and checked")
        yield r
        r.d.stop()
    finally:
        m.cleanup()


def assert_fetched_ok(d, name, proxies, scraped=0):
    s = source_stat(d, name)
    assert s["error"] is None, s
    assert s["http_status"] == 200, s
    assert s["proxies"] == proxies, s
    assert s["scraped"] == scraped, s
    assert s["fetches"] == 1 and s["fetch_errors"] == 0, s
    assert s["last_read"] > 0 and s["last_try"] > 0, s
    assert metric(d, "proxyfs_source_up", name) == 1
    assert metric(d, "proxyfs_source_http_status", name) == 200
    assert metric(d, "proxyfs_source_fetches_total", name) == 1
    assert metric(d, "proxyfs_source_errors_total", name) == 0


def assert_nothing_from(r, name):
    d = r.d
    assert source_live(d, name) == set()
    assert d.read("sources/%s/random" % name) == b""
    s = source_stat(d, name)
    assert s["proxies"] == 0 and s["alive"] == 0 and s["last_read"] == 0, s


# --- one daemon, every shape of answer ---

def test_live_set_is_every_listed_good_proxy(remote, peer_set):
    live = remote.d.read_lines("live.txt")
    assert len(live) == len(set(live)), live
    assert set(live) == remote.all_live
    assert not set(live) & peer_set.bad_uris()
    assert remote.d.read_text("health") == "ok\n"


def test_sources_folder_has_each_source(remote):
    d = remote.d
    assert sorted(d.listdir("sources")) == sorted(n for n, _ in remote.sources)
    for name, _ in remote.sources:
        assert sorted(d.listdir("sources/" + name)) == ["live.txt", "next", "random", "session"]
    assert [s["name"] for s in d.read_json("stat.json")["sources"]] == \
        [n for n, _ in remote.sources]
    assert {s["name"]: s["url"] for s in d.read_json("stat.json")["sources"]} == \
        {n: k["url"] for n, k in remote.sources}


def test_each_source_folder_serves_only_its_proxies(remote):
    d = remote.d
    for name, want in remote.expect.items():
        assert source_live(d, name) == want, name
        assert source_stat(d, name)["alive"] == len(want), name
    clean = remote.expect["clean"]
    seen = {d.read_text("sources/clean/random").rstrip("\n") for _ in range(30)}
    assert seen <= clean and seen, seen
    got = [d.read_text("sources/clean/next").rstrip("\n") for _ in range(2 * len(clean))]
    assert set(got) == clean, got


def test_clean_list(remote):
    assert_fetched_ok(remote.d, "clean", proxies=3)
    assert source_live(remote.d, "clean") == remote.expect["clean"]


def test_html_table_is_scraped(remote, peer_set):
    d = remote.d
    assert source_live(d, "html") == remote.expect["html"]
    assert_fetched_ok(d, "html", proxies=3, scraped=3)
    s = source_stat(d, "html")
    assert s["invalid"] >= 1, "markup lines without a proxy are counted: %r" % s
    # A proxy listed by two sources is one proxy with both names.
    assert live_json_sources(d)[peer_set.tinyproxy.uri] == ["clean", "html"]
    assert live_json_sources(d)[peer_set.extra.uri] == ["html"]


def test_json_array_is_scraped_with_the_source_protocol(remote, peer_set):
    d = remote.d
    assert source_live(d, "json") == {peer_set.socks5.uri}
    assert peer_set.socks5.uri.startswith("socks5://")
    assert_fetched_ok(d, "json", proxies=2, scraped=2)


def test_csv_export_is_scraped(remote, peer_set):
    d = remote.d
    assert source_live(d, "csv") == {peer_set.socks4.uri}
    assert_fetched_ok(d, "csv", proxies=2, scraped=2)
    assert source_stat(d, "csv")["invalid_sample"] == ["ip,port,country"]
    assert live_json_sources(d)[peer_set.socks4.uri] == ["csv", "gzip"]


def test_gzip_answer_is_decoded(remote):
    d = remote.d
    assert source_live(d, "gzip") == remote.expect["gzip"]
    assert_fetched_ok(d, "gzip", proxies=1)
    reqs = [h for p, h in remote.https.requests if p == "/list.gz"]
    assert reqs and "gzip" in reqs[0].get("Accept-Encoding", ""), reqs


def test_redirect_is_followed(remote):
    d = remote.d
    assert source_live(d, "moved") == remote.expect["moved"]
    assert_fetched_ok(d, "moved", proxies=1)
    assert remote.http.hits("/moved") == 1 and remote.http.hits("/real.txt") == 1
    assert source_stat(d, "moved")["url"] == remote.http.url("/moved")


def test_404_is_recorded_and_lists_nothing(remote):
    d = remote.d
    assert_nothing_from(remote, "missing")
    s = source_stat(d, "missing")
    assert s["http_status"] == 404, s
    assert s["error"] and "404" in s["error"], s
    assert s["fetches"] == 1 and s["fetch_errors"] == 1 and s["last_try"] > 0, s
    assert metric(d, "proxyfs_source_up", "missing") == 0
    assert metric(d, "proxyfs_source_http_status", "missing") == 404
    assert metric(d, "proxyfs_source_errors_total", "missing") == 1
    assert metric(d, "proxyfs_source_fetches_total", "missing") == 1


def test_slow_source_does_not_delay_the_others(remote):
    # The module's daemon reached its full live set while this one's
    # answer is still held back by the server.
    d = remote.d
    assert remote.http.hits("/slow") == 1, "the slow list was not even asked for"
    s = source_stat(d, "slow")
    assert s["fetches"] == 0 and s["last_read"] == 0 and s["last_try"] > 0, s
    assert s["error"] is None, s
    assert_nothing_from(remote, "slow")
    assert d.live() == remote.all_live


@pytest.mark.parametrize("name", ["big", "big_stream", "bomb"])
def test_answer_over_the_size_cap_is_refused(remote, name):
    d = remote.d
    assert_nothing_from(remote, name)
    s = source_stat(d, name)
    assert s["error"] and str(CAP) in s["error"], \
        "the error should name the %d-byte cap: %r" % (CAP, s)
    assert s["fetches"] == 1 and s["fetch_errors"] == 1, s
    assert metric(d, "proxyfs_source_up", name) == 0


# --- daemons of their own ---

def test_failed_refresh_keeps_the_last_good_list(binary, peer_set, http_srv, tmp_path):
    ps = peer_set
    path = "/flaky-%s.txt" % tmp_path.name
    first = {ps.tinyproxy.uri, ps.socks5.uri}
    http_srv.route(path, "%s\n%s\n" % (ps.tinyproxy.line, ps.socks5.line), etag='"v1"')
    conf = write_conf(str(tmp_path), ps.judge,
                      [("flaky", {"url": http_srv.url(path), "interval_s": 1})])
    m = Mounts(binary, str(tmp_path))
    try:
        d = m.new(conf).start()
        wait_until(lambda: d.live() == first, READY_TIMEOUT, "the first list checked")

        for status in (500, 404):
            http_srv.route(path, "broken\n", status=status)
            s = stat_when(d, "flaky", lambda s: s["http_status"] == status,
                          "HTTP %d in stat.json" % status)
            assert s["error"] and str(status) in s["error"], s
            assert s["fetch_errors"] >= 1 and s["proxies"] == 2, s
            assert metric(d, "proxyfs_source_up", "flaky") == 0
            assert metric(d, "proxyfs_source_http_status", "flaky") == status
            assert d.live() == first, "a failed refresh lost the source's proxies"
            assert source_live(d, "flaky") == first

        # A good answer again replaces the list and clears the error.
        http_srv.route(path, "%s\n" % ps.socks5.line, etag='"v2"')
        wait_until(lambda: d.live() == {ps.socks5.uri}, CHANGE_TIMEOUT, "the new list alone")
        s = source_stat(d, "flaky")
        assert s["error"] is None and s["proxies"] == 1, s
        assert metric(d, "proxyfs_source_up", "flaky") == 1
        errors = s["fetch_errors"]
        assert errors >= 2 and metric(d, "proxyfs_source_errors_total", "flaky") >= errors
        d.stop()
    finally:
        m.cleanup()
        http_srv.remove(path)


def stat_when(d, name, pred, what):
    """Polls stat.json until pred holds for the source's entry; returns it."""
    return wait_until(lambda: (lambda s: s if pred(s) else None)(source_stat(d, name)),
                      CHANGE_TIMEOUT, what)


def test_unchanged_list_gets_a_304_and_stays(binary, peer_set, http_srv, tmp_path):
    ps = peer_set
    tagged, dated = "/tagged-%s.txt" % tmp_path.name, "/dated-%s.txt" % tmp_path.name
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    http_srv.route(tagged, "%s\n" % ps.tinyproxy.line, etag='"v1"')
    http_srv.route(dated, "%s\n" % ps.socks5.line, last_modified=stamp)
    conf = write_conf(str(tmp_path), ps.judge,
                      [("tagged", {"url": http_srv.url(tagged), "interval_s": 1}),
                       ("dated", {"url": http_srv.url(dated), "interval_s": 1})])
    m = Mounts(binary, str(tmp_path))
    try:
        d = m.new(conf).start()
        want = {ps.tinyproxy.uri, ps.socks5.uri}
        wait_until(lambda: d.live() == want, READY_TIMEOUT, "both lists checked")
        for name, path, header, value in (("tagged", tagged, "If-None-Match", '"v1"'),
                                          ("dated", dated, "If-Modified-Since", stamp)):
            wait_until(lambda: any(p == path and h.get(header) == value
                                   for p, h in http_srv.requests),
                       CHANGE_TIMEOUT, "a refresh of %s with %s" % (name, header))
            s = stat_when(d, name, lambda s: s["http_status"] == 304, "the 304 in stat.json")
            assert s["error"] is None and s["fetch_errors"] == 0, s
            assert s["proxies"] == 1 and s["fetches"] >= 2, s
            assert metric(d, "proxyfs_source_up", name) == 1
            assert metric(d, "proxyfs_source_http_status", name) == 304
        assert d.live() == want
        assert source_live(d, "tagged") == {ps.tinyproxy.uri}
        assert source_live(d, "dated") == {ps.socks5.uri}
        d.stop()
    finally:
        m.cleanup()
        http_srv.remove(tagged)
        http_srv.remove(dated)


def test_https_without_ca_file_is_a_tls_error(binary, peer_set, https_srv, tmp_path):
    ps = peer_set
    path = "/untrusted-%s.txt" % tmp_path.name
    https_srv.route(path, "%s\n" % ps.tinyproxy.line)
    conf = write_conf(str(tmp_path), ps.judge, [("tls", {"url": https_srv.url(path)})])
    m = Mounts(binary, str(tmp_path))
    try:
        d = m.new(conf).start()
        s = stat_when(d, "tls", lambda s: s["fetches"] >= 1, "the download's outcome")
        assert s["error"] and re.search(r"certificate|SSL|TLS", s["error"], re.I), s
        assert s["http_status"] == 0 and s["fetch_errors"] >= 1, s
        assert s["proxies"] == 0 and s["last_read"] == 0, s
        assert https_srv.hits(path) == 0, "a request went over an unverified connection"
        assert d.live() == set()
        assert source_live(d, "tls") == set()
        assert metric(d, "proxyfs_source_up", "tls") == 0
        assert d.read_text("health").startswith("degraded")
        d.stop()
    finally:
        m.cleanup()
        https_srv.remove(path)
