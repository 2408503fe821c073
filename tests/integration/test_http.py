"""The HTTP front ([http] listen, --http): the tree over HTTP.

A daemon over the peer set's list (without the blackhole) is mounted with
[http] on; what the HTTP front answers is compared with what the mount
shows, from the same snapshot (stat.json's generation the same before and
after, else asked again). Tests that change the pool, or need other
[http] settings, start daemons of their own.
"""

import http.client
import json
import os
import socket
import subprocess
import time

import pytest

import peers
from conftest import (Mounts, call_with_deadline, concurrency_max_with, wait_until,
                      write_config, write_list)

TOKEN = "s3cret-token"
APPEAR_TIMEOUT = 10.0
# Live figures, not fixed per snapshot: they differ between two reads.
LIVE_FIGURES = {"stat.json", "metrics", "prometheus/proxyfs.prom"}
# Picked per read.
PICKS = {"random", "next"}


class Front:
    """The HTTP side of a daemon: requests with http.client."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token

    def request(self, path, method="GET", body=None, headers=None, token=True):
        hdrs = dict(headers or {})
        if token and self.token:
            hdrs.setdefault("Authorization", "Bearer " + self.token)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request(path, **kw)

    def body(self, path, **kw):
        status, _, data = self.request(path, **kw)
        assert status == 200, "%s: %d %r" % (path, status, data)
        return data

    def lines(self, path, **kw):
        return self.body(path, **kw).decode().splitlines()

    def post(self, path, body, **kw):
        return self.request(path, method="POST", body=body, **kw)


def http_daemon(mounts, tmp, peer_set, http_extra="", judge=None, token=TOKEN, sync=True,
                args=()):
    """A daemon over the list without the blackhole, [http] on a free port;
    returns (Daemon, Front)."""
    port = peers.free_port("127.0.0.1")
    section = "\n[http]\nlisten = 127.0.0.1:%d\n" % port
    if token:
        section += "token = %s\n" % token
    if "rate" not in http_extra:
        section += "rate = 0\n"  # these tests ask faster than the default allows
    section += http_extra
    conf = write_config(tmp, judge or peer_set.judge,
                        write_list(tmp, peer_set.list_text(slow=False)), extra=section)
    d = mounts.new(conf).start(extra_args=args)
    if sync:
        d.sync()
    return d, Front(port, token)


@pytest.fixture(scope="module")
def served(binary, peer_set, tmp_path_factory):
    """One daemon for the module's read-only tests."""
    tmp = str(tmp_path_factory.mktemp("http"))
    m = Mounts(binary, tmp)
    try:
        d, front = http_daemon(m, tmp, peer_set)
        yield d, front
        if d.running():
            d.stop()
    finally:
        m.cleanup()


@pytest.fixture
def own(mounts, tmp_path, peer_set):
    """A daemon of the test's own (it may change the pool); it must stop
    cleanly (SIGTERM, status 0) at the end."""
    d, front = http_daemon(mounts, str(tmp_path), peer_set)
    yield d, front
    if d.running():
        d.stop()


def generation(d):
    return d.read_json("stat.json")["generation"]


def same_snapshot(d, fn, tries=20):
    """fn() while the snapshot stays the same: its value from a try where
    stat.json's generation was the same before and after."""
    for _ in range(tries):
        before = generation(d)
        value = fn()
        if generation(d) == before:
            return value
    pytest.fail("the snapshot changed on every one of %d tries" % tries)


def tree_files(d):
    """Every reader file and directory of the mount, relative to it."""
    files, dirs = [], []

    def walk():
        for root, dnames, fnames in os.walk(d.mnt):
            rel = os.path.relpath(root, d.mnt)
            rel = "" if rel == "." else rel
            dirs.append(rel)
            for f in fnames:
                files.append(os.path.join(rel, f))
    call_with_deadline(walk, what="walking the mount")
    return files, dirs


def strip_live(rel, data):
    """stat.json without its live objects (http, sessions)."""
    if rel != "stat.json":
        return data
    doc = json.loads(data)
    doc.pop("http", None)
    doc.pop("sessions", None)
    return doc


# --- the same bytes as the mount ---

def test_every_path_is_the_mounts_bytes(served):
    d, front = served
    files, dirs = tree_files(d)
    assert "live.txt" in files and "socks5/live.txt" in files and "sources/local/live.txt" in files
    for rel in files:
        if rel.startswith("control/") or os.path.basename(rel) in PICKS or rel in LIVE_FIGURES - {"stat.json"}:
            continue

        def both(rel=rel):
            return d.read(rel), front.get("/" + rel)
        mount_bytes, (status, headers, body) = same_snapshot(d, both)
        want = 503 if rel == "health" and not mount_bytes.startswith(b"ok") else 200
        assert status == want, rel
        assert strip_live(rel, body) == strip_live(rel, mount_bytes), rel
    for rel in dirs:
        listing = front.lines("/" + rel)
        assert sorted(listing) == sorted(d.listdir(rel)), rel


def test_picks_are_live_proxies(served, peer_set):
    d, front = served
    live = d.live()
    for path in ("/random", "/next", "/get-proxy", "/socks5/random", "/http/next"):
        status, headers, body = front.get(path)
        assert status == 200, path
        assert headers.get("cache-control") == "no-store"
        assert "etag" not in headers
        (line,) = body.decode().splitlines()
        assert line in live, path
    assert front.lines("/socks5/random")[0].startswith("socks5://")


def test_metrics_content_type_and_counters(served):
    d, front = served
    front.get("/random")
    status, headers, body = front.get("/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "etag" not in headers
    text = body.decode()
    assert 'proxyfs_http_requests_total{class="pick",code="200"}' in text
    assert "proxyfs_http_request_duration_seconds_bucket{le=\"+Inf\"}" in text
    assert "proxyfs_http_connections " in text
    stat = json.loads(front.body("/stat"))
    assert stat["http"]["enabled"] is True
    assert stat["http"]["requests"]["pick 200"] >= 1
    assert "etag" not in front.get("/stat.json")[1]


# --- filters ---

def test_filters_narrow_lists_and_picks(served, peer_set):
    d, front = served
    live = d.live()
    socks5 = front.lines("/live.txt?protocol=socks5")
    assert socks5 and all(u.startswith("socks5://") for u in socks5)
    assert set(socks5) == d.live("socks5/live.txt")
    both = set(front.lines("/live.txt?protocol=socks5,socks4"))
    assert both == d.live("socks5/live.txt") | d.live("socks4/live.txt")
    assert set(front.lines("/live.txt?protocol=socks5&protocol=socks4")) == both
    assert set(front.lines("/live.txt?source=local")) == live
    grade = json.loads(d.read("live.json"))[0]["anonymity"]
    graded = set(front.lines("/live.txt?anonymity=" + grade))
    assert graded == d.live("anonymity/%s/live.txt" % grade)
    # A folder and a query narrow together.
    assert set(front.lines("/socks5/live.txt?protocol=socks5")) == d.live("socks5/live.txt")
    for _ in range(10):
        (one,) = front.lines("/random?protocol=socks5")
        assert one.startswith("socks5://")
    fastest = min(p["latency_ms"] for p in json.loads(d.read("live.json")))
    bounded = json.loads(front.body("/live.json?max_latency_ms=%d" % max(fastest, 1)))
    assert bounded and all(p["latency_ms"] <= max(fastest, 1) for p in bounded)


def test_count_gives_distinct_proxies(served):
    d, front = served
    live = d.live()
    picked = front.lines("/random?count=%d" % len(live))
    assert sorted(picked) == sorted(live)
    picked = front.lines("/random?count=1000")  # fewer when the pool has fewer
    assert sorted(picked) == sorted(live)
    two = front.lines("/next?count=2")
    assert len(set(two)) == 2 and set(two) <= live
    assert len(front.lines("/live.txt?count=2")) == 2


def test_json_by_format_or_accept(served):
    d, front = served
    live = d.live()
    objs = json.loads(front.body("/random?format=json&count=3"))
    assert len(objs) == 3 and all(o["uri"] in live for o in objs)
    assert {"protocol", "host", "port", "latency_ms", "anonymity"} <= set(objs[0])
    status, headers, body = front.get("/get-proxy", headers={"Accept": "application/json"})
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)[0]["uri"] in live
    as_json = json.loads(front.body("/live.txt?format=json"))
    assert [o["uri"] for o in as_json] == d.read_lines("live.txt")
    assert front.lines("/live.json?format=txt") == d.read_lines("live.txt")
    assert json.loads(front.body("/socks5?format=json")) == front.lines("/socks5")


def test_bad_query_is_400_naming_the_parameter(served):
    d, front = served
    for query, word in (("protocol=ftp", "protocol"), ("anonymity=secret", "anonymity"),
                        ("count=0", "count"), ("count=abc", "count"),
                        ("max_latency_ms=-1", "max_latency_ms"), ("format=xml", "format"),
                        ("source=nosuch", "source"), ("source=a%20b", "source"),
                        ("colour=red", "colour"), ("count=1&count=2", "count"),
                        ("protocol=%zz", "protocol")):
        for path in ("/random", "/live.txt"):
            status, _, body = front.get(path + "?" + query)
            assert status == 400, (path, query)
            assert word in body.decode(), (path, query, body)
    status, _, body = front.get("/health?protocol=http")
    assert status == 400


def test_empty_pick_is_404_empty_list_is_200(served):
    d, front = served
    status, _, body = front.get("/https/random?protocol=socks5")
    assert (status, body) == (404, b"")
    status, _, body = front.get("/https/live.txt?protocol=socks5")
    assert (status, body) == (200, b"")
    assert json.loads(front.body("/https/live.txt?protocol=socks5&format=json")) == []


def test_unknown_path_and_method(served):
    d, front = served
    status, _, body = front.get("/no/such/file")
    assert (status, body) == (404, b"no such path\n")
    status, headers, _ = front.post("/live.txt", b"x")
    assert status == 405 and "GET" in headers["allow"]
    status, headers, _ = front.get("/control/add")
    assert status == 405 and headers["allow"] == "POST"
    status, _, _ = front.request("/live.txt", method="DELETE")
    assert status in (405, 501)


# --- HEAD and conditional GET ---

def test_head_gives_length_without_body(served):
    d, front = served
    for path in ("/live.txt", "/stat.json", "/random", "/socks5"):
        status, headers, body = front.request(path, method="HEAD")
        assert status == 200 and body == b"", path
        assert int(headers["content-length"]) > 0, path
    status, headers, _ = front.request("/live.txt", method="HEAD")
    assert int(headers["content-length"]) == len(front.body("/live.txt"))


def test_etag_and_304_for_files_fixed_per_snapshot(served):
    d, front = served

    def fetch():
        return front.get("/live.txt")
    status, headers, body = same_snapshot(d, fetch)
    tag = headers["etag"]
    stat = d.read_json("stat.json")
    assert tag == '"%d-%d"' % (stat["generation"], stat["started"])
    status, headers, body = front.get("/live.txt", headers={"If-None-Match": tag})
    if generation(d) == stat["generation"]:
        assert (status, body) == (304, b"")
    status, _, _ = front.get("/live.txt", headers={"If-None-Match": '"0-0"'})
    assert status == 200
    for path in ("/random", "/next", "/metrics", "/stat.json", "/live.txt?protocol=http"):
        assert "etag" not in front.get(path)[1], path
    assert "etag" in front.get("/all.json")[1]


# --- control ---

def test_control_add_appears(own, peer_set):
    d, front = own
    uri = peer_set.extra.uri
    assert uri not in d.live()
    status, _, body = front.post("/control/add", (uri + "\n").encode())
    assert (status, body) == (200, b"ok\n")
    wait_until(lambda: uri in front.lines("/live.txt"), APPEAR_TIMEOUT, uri + " live")
    assert uri in d.live()


def test_control_bad_line_is_400_and_nothing_applied(own, peer_set):
    d, front = own
    total = d.read_json("stat.json")["pool"]["total"]
    status, _, body = front.post("/control/add",
                                 (peer_set.extra.uri + "\nnot a proxy\n").encode())
    assert status == 400
    assert b"line 2" in body and b"not a proxy" in body
    status, _, _ = front.post("/reload", b"sync\n")
    assert status == 200
    assert d.read_json("stat.json")["pool"]["total"] == total
    assert peer_set.extra.uri not in d.live()


def test_control_bad_over_http_takes_the_proxy_out(own, peer_set):
    d, front = own
    live = d.live()
    assert live
    uri = sorted(live)[0]
    status, _, body = front.post("/control/bad", (uri + "\n").encode())
    assert (status, body) == (200, b"ok\n")
    # Out of the live set when the answer comes, as with the file.
    assert uri not in front.lines("/live.txt")
    status, _, body = front.post("/control/bad", b"socks5://127.9.9.9:9\n")
    assert status == 400 and b"not in the pool" in body


def test_reload_sync_answers_after_the_rescan(own):
    d, front = own
    scans = d.read_json("stat.json")["scan"]["generation"]
    status, _, body = front.post("/reload", b"sync")
    assert (status, body) == (200, b"ok\n")
    stat = d.read_json("stat.json")["scan"]
    assert stat["generation"] > scans and not stat["running"]
    status, _, _ = front.post("/control/reload", b"sync\n")
    assert status == 200


def test_control_needs_the_token(own):
    d, front = own
    status, headers, _ = front.post("/control/add", b"", token=False)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    status, _, _ = front.post("/reload", b"x", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    # Reading stays open.
    assert front.get("/live.txt", token=False)[0] == 200


def test_control_without_a_token_set_is_403(mounts, tmp_path, peer_set):
    d, front = http_daemon(mounts, str(tmp_path), peer_set, token=None)
    for path in ("/control/add", "/control/remove", "/control/reload", "/reload"):
        status, _, body = front.post(path, b"sync\n")
        assert status == 403, path
        assert b"token" in body
    assert front.get("/random")[0] == 200
    d.stop()



def test_private_needs_the_token_everywhere(mounts, tmp_path, peer_set):
    d, front = http_daemon(mounts, str(tmp_path), peer_set, http_extra="private = yes\n")
    for path in ("/random", "/live.txt", "/", "/no/such/path", "/health"):
        assert front.get(path, token=False)[0] == 401, path
        assert front.get(path, headers={"Authorization": "Bearer nope"},
                         token=False)[0] == 401, path
    assert front.get("/live.txt")[0] == 200
    d.stop()



def test_private_without_token_is_a_config_error(tmp_path, peer_set, binary):
    port = peers.free_port("127.0.0.1")
    conf = write_config(str(tmp_path), peer_set.judge, write_list(str(tmp_path), ""),
                        extra="\n[http]\nlisten = 127.0.0.1:%d\nprivate = yes\n" % port)
    os.makedirs(str(tmp_path / "mnt"))
    p = subprocess.run([binary, "-f", "-c", conf, str(tmp_path / "mnt")], capture_output=True,
                       timeout=15)
    assert p.returncode == 2
    assert b"[http] private: yes needs a token" in p.stderr, p.stderr


# --- limits ---

def test_rate_limit_answers_429_with_retry_after(mounts, tmp_path, peer_set):
    d, front = http_daemon(mounts, str(tmp_path), peer_set, http_extra="rate = 1/s\nburst = 3\n")
    codes = [front.get("/random") for _ in range(6)]
    assert [c[0] for c in codes[:3]] == [200, 200, 200]
    limited = [c for c in codes if c[0] == 429]
    assert limited, [c[0] for c in codes]
    assert int(limited[0][1]["retry-after"]) >= 1
    metrics = d.read_text("metrics")
    assert "proxyfs_http_rate_limited_total %d" % len(limited) in metrics
    d.stop()



def test_slow_request_is_closed_at_the_deadline(mounts, tmp_path, peer_set):
    d, front = http_daemon(mounts, str(tmp_path), peer_set, sync=False,
                           http_extra="request_timeout_s = 1\n")
    s = socket.create_connection(("127.0.0.1", front.port), timeout=10)
    try:
        started = time.monotonic()
        s.sendall(b"GET /live.txt HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - started < 8:
            s.sendall(b"X-Slow: 1\r\n")  # a byte now and then: no idle timeout
            try:
                s.settimeout(0.3)
                if s.recv(100) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
        assert closed, "a request still not whole after 8 s was kept open"
        assert time.monotonic() - started < 4
    finally:
        s.close()
    assert front.get("/live.txt")[0] == 200
    d.stop()



def test_connections_over_the_bound_are_closed_at_once(mounts, tmp_path, peer_set):
    d, front = http_daemon(mounts, str(tmp_path), peer_set, sync=False,
                           http_extra="max_connections = 2\n")
    held = [socket.create_connection(("127.0.0.1", front.port), timeout=5) for _ in range(2)]
    try:
        # The two are counted once the daemon took them: a request on each.
        for s in held:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1")
        extra = socket.create_connection(("127.0.0.1", front.port), timeout=5)
        try:
            extra.settimeout(5)
            try:
                data = extra.recv(100)
            except ConnectionResetError:
                data = b""
            assert data == b""
        finally:
            extra.close()
    finally:
        for s in held:
            s.close()
    def served_again():
        try:
            return front.get("/health")[0] in (200, 503)
        except (ConnectionError, http.client.HTTPException):
            return False  # the two closes not seen yet
    wait_until(served_again, 5, "a connection accepted again")
    assert d.read_json("stat.json")["http"]["connections_refused"] >= 1
    d.stop()


# --- health ---

def test_health_503_when_degraded(mounts, tmp_path, peer_set):
    judge = peers.ClosedPort("127.0.0.1")
    d, front = http_daemon(mounts, str(tmp_path), peer_set, judge=judge, sync=False)
    wait_until(lambda: d.read_text("health").startswith("degraded"), 15, "health degraded")
    status, _, body = front.get("/health")
    assert status == 503
    assert body.startswith(b"degraded")
    d.stop()



def test_health_200_when_ok(served):
    d, front = served
    status, _, body = same_snapshot(d, lambda: front.get("/health"))
    assert (status, body) == (200, b"ok\n")


# --- start and command line ---

def test_command_line_listen_and_bind_failure(mounts, tmp_path, peer_set, binary):
    port = peers.free_port("127.0.0.1")
    conf = write_config(str(tmp_path), peer_set.judge,
                        write_list(str(tmp_path), peer_set.list_text(slow=False)))
    d = mounts.new(conf, background=True).start(extra_args=["--http", "127.0.0.1:%d" % port])
    # The command returned: the front listens already.
    front = Front(port)
    assert front.get("/health")[0] in (200, 503)
    mnt2 = str(tmp_path / "mnt2")
    os.makedirs(mnt2)
    second = str(tmp_path / "second")
    os.makedirs(second)
    conf2 = write_config(second, peer_set.judge, write_list(second, ""))
    p = subprocess.run([binary, "-c", conf2, "--http", "127.0.0.1:%d" % port, mnt2],
                       capture_output=True, timeout=15)
    assert p.returncode == 1
    assert b"127.0.0.1:%d" % port in p.stderr and b"in use" in p.stderr
    assert not os.path.ismount(mnt2)
    p = subprocess.run([binary, "--http", "localhost", mnt2], capture_output=True, timeout=15)
    assert p.returncode == 2 and b"--http" in p.stderr
    d.stop()


# --- sessions ---

def test_sessions_over_http_are_the_mounts(served):
    d, front = served
    live = d.live()
    for key in ("alice", "bob.1", "c-2_x", "k" * 64):
        for folder in ("", "socks5/", "sources/local/"):
            over_http = front.body("/%ssession/%s" % (folder, key))
            assert over_http == d.read("%ssession/%s" % (folder, key)), (folder, key)
            assert over_http.decode().strip() in live
            # It sticks.
            assert front.body("/%ssession/%s" % (folder, key)) == over_http
    assert front.lines("/socks5/session/alice")[0].startswith("socks5://")
    assert front.lines("/session") == []


def test_session_with_a_filter_and_bad_keys(served):
    d, front = served
    first = front.lines("/session/zed?protocol=socks5")
    assert first[0].startswith("socks5://")
    for _ in range(5):
        assert front.lines("/session/zed?protocol=socks5") == first
    obj = json.loads(front.body("/session/zed?protocol=socks5&format=json"))
    assert [o["uri"] for o in obj] == first
    for bad in ("/session/a%20b", "/session/" + "k" * 65, "/session/a%25"):
        assert front.get(bad)[0] == 404, bad
    assert front.get("/session/zed?count=2")[0] == 400
    status, _, body = front.get("/https/session/zed?protocol=socks5")
    assert (status, body) == (404, b"")


def test_stop_ends_a_waiting_sync(mounts, tmp_path, peer_set):
    """SIGTERM while a POST sync waits for a rescan (the blackhole makes it
    last the whole check timeout): the daemon exits 0 at once, the client
    gets its answer or a closed connection, never a hang."""
    port = peers.free_port("127.0.0.1")
    conf = write_config(str(tmp_path), peer_set.judge,
                        write_list(str(tmp_path), peer_set.list_text(slow=True)),
                        extra="\n[http]\nlisten = 127.0.0.1:%d\ntoken = %s\n" % (port, TOKEN))
    d = mounts.new(conf).start()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("POST", "/reload", body=b"sync", headers={"Authorization": "Bearer " + TOKEN})
    # Taken, and a scan runs (the first one, or the one it asked for).
    wait_until(lambda: d.read_json("stat.json")["http"]["connections"] >= 1, 5, "the connection")
    wait_until(lambda: d.read_json("stat.json")["scan"]["running"], 5, "a scan running")
    started = time.monotonic()
    d.stop()
    assert time.monotonic() - started < 5
    try:
        status = c.getresponse().status
        assert status == 503
    except (ConnectionError, http.client.HTTPException):
        pass
    finally:
        c.close()


def test_reload_that_changes_http_says_it_waits_for_a_restart(mounts, tmp_path, peer_set):
    port = peers.free_port("127.0.0.1")
    extra = peers.free_port("127.0.0.1")
    tmp = str(tmp_path)
    lst = write_list(tmp, peer_set.list_text(slow=False))
    conf = write_config(tmp, peer_set.judge, lst,
                        extra="\n[http]\nlisten = 127.0.0.1:%d\nrate = 0\n" % port)
    d = mounts.new(conf).start(extra_args=["--http", "127.0.0.1:%d" % extra])
    # The same file: the listen from --http is no change.
    d.write("control/reload", "reload\n")
    assert "[http] changed" not in d.log()
    write_config(tmp, peer_set.judge, lst,
                 extra="\n[http]\nlisten = 127.0.0.1:%d\nrate = 5\n" % port)
    d.write("control/reload", "reload\n")
    wait_until(lambda: "[http] changed; it takes effect at the next start" in d.log(), 5,
               "the log line")
    # Still served as started: both addresses, no rate limit.
    for p in (port, extra):
        assert all(Front(p).get("/health")[0] in (200, 503) for _ in range(20))
    d.stop()


def test_checks_leave_descriptors_for_the_connections(mounts, tmp_path, peer_set):
    """The open-file clamp on concurrent checks leaves max_connections
    descriptors to the HTTP front."""
    tmp = str(tmp_path)
    maxes = [concurrency_max_with(mounts, tmp, peer_set.judge, extra)
             for extra in ("", "\n[http]\nlisten = 127.0.0.1:%d\nmax_connections = 5000\n"
                           % peers.free_port("127.0.0.1"))]
    assert maxes[0] - maxes[1] >= 5000, maxes


def test_curl_through_a_proxy_the_front_gave(served, peer_set):
    """What a user runs: curl -x "$(curl -s HOST/get-proxy?protocol=socks5)" URL."""
    d, front = served
    base = "http://127.0.0.1:%d" % front.port
    p = subprocess.run(["curl", "-sS", "--max-time", "5", base + "/get-proxy?protocol=socks5"],
                       capture_output=True, timeout=10)
    assert p.returncode == 0, p.stderr
    proxy = p.stdout.decode().strip()
    assert proxy.startswith("socks5://")
    rc, out = peers.curl_through(proxy, peer_set.judge_url)
    assert rc == 0 and peers.JUDGE_TOKEN in out, out
    p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                        "-H", "Authorization: Bearer " + TOKEN, "--data", "x",
                        base + "/control/add"], capture_output=True, timeout=10)
    assert p.stdout == b"400"
