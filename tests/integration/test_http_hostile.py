"""Hostile clients of the HTTP front: each must cost its own connection only.

A daemon with `[http]` on (a small request_timeout_s and idle_timeout_s, no
rate limit, a token so the control paths read bodies) serves a synced pool.
Each attack runs while a well-behaved client asks GET /live.txt twenty
times a second on a new connection each time (or, for the connection
limit, on keep-alive connections opened first), from before the attack
starts until after it ends: every one of its requests must be answered,
200 with the pool's lines, within GOOD_BOUND_S.

The attackers: slowloris (a header or a body a byte a second, and a
connection that never says anything: closed once request_timeout_s, or
idle_timeout_s for the silent one, has passed, not before), a 1 MB header
line, 1 MB of small headers and a 1 MB request line (400, 413, 414 or 431,
or closed), a 100 MB POST body by Content-Length and chunked (413 or
closed before it was all sent), half-closed sockets (a whole request and
then shutdown(SHUT_WR): still answered; a part of one: closed), junk
pipelined after good requests (the good ones answered, then closed),
garbage bytes, a TLS ClientHello and an HTTP/2 preface (closed), more
connections than max_connections (the extra ones closed, the first ones
still served), and all of them at once, after which the daemon's open
descriptors come back to where they were and its RSS near it.

Nothing here knows how the front is built; it says what a client sees.
"""

import concurrent.futures
import http.client
import os
import random
import select
import socket
import ssl
import threading
import time

import pytest

import hostile
import peers
from conftest import Mounts, wait_until, write_config, write_list

HOST = "127.0.0.1"
TOKEN = "hostile-test-token"
REQUEST_TIMEOUT_S = 2
IDLE_TIMEOUT_S = 4
MAX_CONNECTIONS = 256    # the shared daemon: far above what its tests open
LIMITED_CONNECTIONS = 16  # the daemon of the connection-limit test
GOOD_BOUND_S = 2.0       # a good request is answered within this
GOOD_PAUSE_S = 0.05      # between a good client's requests
SLACK_S = 2.0            # a timeout's close may come this much late
READY_TIMEOUT = 10.0
MB = 1024 * 1024
BODY_BYTES = 100 * MB
RSS_GROWTH_MAX_KB = 10 * 1024


# --- the daemon ---

class Front:
    """A mounted, synced daemon and its HTTP front on HOST:port."""

    def __init__(self, mounts, peer_set, tmp, **http):
        self.port = peers.free_port(HOST)
        settings = {"listen": "%s:%d" % (HOST, self.port), "token": TOKEN, "rate": 0,
                    "max_connections": MAX_CONNECTIONS,
                    "request_timeout_s": REQUEST_TIMEOUT_S, "idle_timeout_s": IDLE_TIMEOUT_S}
        settings.update(http)
        extra = "\n[http]\n" + "".join("%s = %s\n" % kv for kv in settings.items())
        conf = write_config(tmp, peer_set.judge, write_list(tmp, peer_set.list_text(slow=False)),
                            extra=extra)
        self.daemon = mounts.new(conf).start()
        self.daemon.sync()
        self.live = set(self.daemon.read_lines("live.txt"))
        assert self.live == peer_set.good_uris
        wait_until(lambda: self.get_ok(), READY_TIMEOUT, "the HTTP front to serve /live.txt")

    def get_ok(self):
        try:
            c = http.client.HTTPConnection(HOST, self.port, timeout=GOOD_BOUND_S)
            c.request("GET", "/live.txt")
            r = c.getresponse()
            ok = r.status == 200 and set(r.read().decode().splitlines()) == self.live
            c.close()
            return ok
        except OSError:
            return False

    def connect(self, timeout=GOOD_BOUND_S):
        return socket.create_connection((HOST, self.port), timeout=timeout)

    def resources(self):
        """The daemon's (RSS in kB, open descriptors)."""
        pid = self.daemon.proc.pid
        return hostile.rss_kb(pid), len(os.listdir("/proc/%d/fd" % pid))

    def alive(self):
        assert self.daemon.running(), "proxyfs died; log:\n%s" % self.daemon.log()


@pytest.fixture(scope="module")
def front(binary, peer_set, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("http-hostile"))
    m = Mounts(binary, tmp)
    try:
        f = Front(m, peer_set, tmp)
        yield f
        if f.daemon.running():
            f.daemon.stop()
    finally:
        m.cleanup()


# --- the well-behaved client ---

class GoodClient(threading.Thread):
    """GET /live.txt every GOOD_PAUSE_S until stopped: on a new connection
    each time, or round-robin over `conns` keep-alive connections opened
    (and used once) before the attack starts. Used as a context manager,
    whose exit checks that every request was answered in time."""

    def __init__(self, front, keepalive=0):
        super().__init__(daemon=True)
        self.front = front
        self.answered = 0
        self.failures = []
        self.slowest = 0.0
        self.done = threading.Event()
        self.conns = []
        for _ in range(keepalive):
            self.conns.append(http.client.HTTPConnection(HOST, front.port,
                                                         timeout=GOOD_BOUND_S))
            self.ask(self.conns[-1])
        assert not self.failures, self.failures

    def ask(self, conn):
        t0 = time.monotonic()
        try:
            conn.request("GET", "/live.txt")
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or set(body.decode().splitlines()) != self.front.live:
                self.failures.append("answer %d %r" % (r.status, body[:200]))
                return
        except (OSError, http.client.HTTPException) as e:
            self.failures.append("%s after %.2f s" % (e.__class__.__name__ + ": " + str(e),
                                                       time.monotonic() - t0))
            return
        took = time.monotonic() - t0
        self.slowest = max(self.slowest, took)
        if took > GOOD_BOUND_S:
            self.failures.append("answered after %.2f s" % took)
        self.answered += 1

    def run(self):
        i = 0
        while not self.done.is_set():
            if self.conns:
                self.ask(self.conns[i % len(self.conns)])
                i += 1
            else:
                c = http.client.HTTPConnection(HOST, self.front.port, timeout=GOOD_BOUND_S)
                self.ask(c)
                c.close()
            self.done.wait(GOOD_PAUSE_S)

    def asked(self):
        return self.answered + len(self.failures)

    def __enter__(self):
        """Returns once the client has had its first answer."""
        self.start()
        wait_until(lambda: self.asked() >= 1, GOOD_BOUND_S * 2, "the good client's first answer",
                   interval=0.01)
        return self

    def __exit__(self, *exc):
        """Stops the client after one more request (one made once the
        attack is over), then checks what it got."""
        if exc[0] is None:
            n = self.asked()
            wait_until(lambda: self.asked() > n, GOOD_BOUND_S * 2,
                       "the good client's request after the attack", interval=0.01)
        self.done.set()
        self.join(GOOD_BOUND_S * 3)
        for c in self.conns:
            c.close()
        if exc[0] is None:
            assert not self.is_alive(), "the good client hangs"
            assert not self.failures, "the good client was not served: %d answered; %s" % (
                self.answered, self.failures[:5])


# --- what a client sees ---

class Outcome:
    """What one connection saw: the bytes it read, whether the server closed
    it (EOF or reset) and when, counted from the connect."""

    def __init__(self, label):
        self.label = label
        self.data = b""
        self.closed = False
        self.elapsed = None
        self.sent = 0

    def status(self):
        return status_of(self.data)

    def __repr__(self):
        return "<%s: closed=%s after %s s, sent %d, read %r>" % (
            self.label, self.closed, None if self.elapsed is None else "%.2f" % self.elapsed,
            self.sent, self.data[:80])


def status_of(data):
    """The status code of the first answer in data, or None."""
    if not data.startswith(b"HTTP/1."):
        return None
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def answers(data):
    """The whole answers at the start of data, as (status, body); stops at
    the first incomplete one."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = status_of(lines[0])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            if len(rest) < n:
                break
            body, data = rest[:n], rest[n:]
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = b""
            while True:
                size_line, sep, rest = rest.partition(b"\r\n")
                if not sep:
                    return out
                n = int(size_line.split(b";")[0], 16)
                if len(rest) < n + 2:
                    return out
                body, rest = body + rest[:n], rest[n + 2:]
                if n == 0:
                    break
            data = rest
        else:
            body, data = rest, b""
        out.append((status, body))
    return out


def read_until_closed(sock, out, t0, timeout):
    """Reads into out until the server closes sock or timeout passes."""
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            out.closed = True
            out.elapsed = time.monotonic() - t0
            return out
        out.data += chunk


def exchange(front, label, payload=b"", shut_wr=False, timeout=REQUEST_TIMEOUT_S + SLACK_S):
    """Connects, sends payload (a send the server cuts short is a close),
    optionally shuts the write side, and reads until closed or timeout."""
    out = Outcome(label)
    t0 = time.monotonic()
    try:
        s = front.connect()
    except ConnectionRefusedError:
        out.closed, out.elapsed = True, time.monotonic() - t0
        return out
    try:
        try:
            s.sendall(payload)
            out.sent = len(payload)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.setblocking(False)
        return read_until_closed(s, out, t0, timeout)
    finally:
        s.close()


def drip(front, label, head, byte, timeout=REQUEST_TIMEOUT_S + SLACK_S):
    """Slowloris: sends head, then byte once a second until the server
    closes the connection or timeout passes."""
    out = Outcome(label)
    t0 = time.monotonic()
    s = front.connect()
    try:
        s.sendall(head)
        s.setblocking(False)
        while time.monotonic() - t0 < timeout:
            r, _, _ = select.select([s], [], [], 1.0)
            if r:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    out.closed, out.elapsed = True, time.monotonic() - t0
                    return out
                out.data += chunk
                continue
            try:
                s.send(byte)
                out.sent += 1
            except (BrokenPipeError, ConnectionResetError):
                return read_until_closed(s, out, t0, timeout)
        return out
    finally:
        s.close()


def flood_body(front, label, chunked):
    """POST /control/add announcing 100 MB of body (by Content-Length, or
    chunked) and sending it as fast as the server takes it; stops when the
    server answers or closes, or stops reading for a second."""
    out = Outcome(label)
    head = (b"POST /control/add HTTP/1.1\r\nHost: proxyfs\r\nAuthorization: Bearer "
            + TOKEN.encode() + b"\r\n")
    head += (b"Transfer-Encoding: chunked\r\n\r\n" if chunked
             else b"Content-Length: %d\r\n\r\n" % BODY_BYTES)
    piece = b"x" * (MB - 32)
    if chunked:
        piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
    t0 = time.monotonic()
    s = front.connect()
    try:
        s.sendall(head)
        s.setblocking(False)
        pending = b""
        while out.sent < BODY_BYTES:
            r, w, _ = select.select([s], [s], [], 1.0)
            if r:
                break
            if not w:
                break  # the server stopped reading: its answer or close follows
            pending = pending or piece[:BODY_BYTES - out.sent]
            try:
                n = s.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            pending = pending[n:]
            out.sent += n
        return read_until_closed(s, out, t0, time.monotonic() - t0 + REQUEST_TIMEOUT_S + SLACK_S)
    finally:
        s.close()


def client_hello():
    """The first flight of a TLS client: what a browser sends to https://."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="proxyfs.test")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


GET = b"GET /live.txt HTTP/1.1\r\nHost: proxyfs\r\n\r\n"


def garbage_payloads():
    rnd = random.Random(13)
    return {
        "random bytes": bytes(rnd.getrandbits(8) for _ in range(65536)),
        "zeros": b"\0" * 4096,
        "TLS ClientHello": client_hello(),
        "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\4\0\0\0\0\0",
        "bad request line": b"GET\r\n\r\n",
        "negative length": (b"POST /control/add HTTP/1.1\r\nHost: proxyfs\r\n"
                            b"Authorization: Bearer " + TOKEN.encode() +
                            b"\r\nContent-Length: -5\r\n\r\n"),
        "blank lines": b"\r\n" * 20000,
    }


def assert_not_served(o):
    assert o.closed, "%s: still open after %.0f s" % (o, REQUEST_TIMEOUT_S + SLACK_S)
    assert o.status() is None or o.status() >= 400, "%s was served" % o


def run_all(fns):
    """Runs every callable at once, each in its own thread; their values."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(fns)) as ex:
        return [f.result() for f in [ex.submit(fn) for fn in fns]]


# --- the attacks ---

def slowloris_attackers(front, n=4):
    header = b"GET /live.txt HTTP/1.1\r\nHost: proxyfs\r\nX-Slow: "
    body = (b"POST /control/reload HTTP/1.1\r\nHost: proxyfs\r\nAuthorization: Bearer "
            + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\nn")
    fns = []
    for i in range(n):
        fns.append(lambda i=i: drip(front, "header drip %d" % i, header, b"a"))
        fns.append(lambda i=i: drip(front, "body drip %d" % i, body, b"o"))
    return fns


def test_slowloris_is_cut_at_request_timeout(front):
    silent_timeout = max(REQUEST_TIMEOUT_S, IDLE_TIMEOUT_S) + SLACK_S
    with GoodClient(front):
        fns = slowloris_attackers(front)
        fns.append(lambda: exchange(front, "silent", timeout=silent_timeout))
        outcomes = run_all(fns)
    for o in outcomes:
        assert o.closed, "%s: still open (request_timeout_s = %d)" % (o, REQUEST_TIMEOUT_S)
        assert o.status() is None or o.status() >= 400, "%s was served" % o
        if o.label != "silent":
            assert REQUEST_TIMEOUT_S - 0.5 <= o.elapsed <= REQUEST_TIMEOUT_S + SLACK_S, \
                "%s: closed after %.2f s, request_timeout_s = %d" % (o, o.elapsed,
                                                                    REQUEST_TIMEOUT_S)
            assert o.sent >= 1, "%s: closed before it could drip" % o
        else:
            assert o.elapsed >= REQUEST_TIMEOUT_S - 0.5, "%s: closed at once" % o
    front.alive()


def big_head_attackers(front):
    line = b"GET /live.txt HTTP/1.1\r\nHost: proxyfs\r\n"
    return [
        lambda: exchange(front, "1 MB header", line + b"X-Big: " + b"a" * MB + b"\r\n\r\n"),
        lambda: exchange(front, "1 MB of headers",
                         line + b"X-Small: b\r\n" * (MB // 12) + b"\r\n"),
        lambda: exchange(front, "1 MB request line",
                         b"GET /" + b"a" * MB + b" HTTP/1.1\r\nHost: proxyfs\r\n\r\n"),
    ]


def test_huge_headers_cost_their_connection(front):
    with GoodClient(front):
        outcomes = run_all(big_head_attackers(front) * 2)
    for o in outcomes:
        assert_not_served(o)
        assert o.status() in (None, 400, 413, 414, 431), "%s: answered %s" % (o, o.status())
    front.alive()
    assert front.get_ok()


def test_huge_body_is_refused_unread(front):
    with GoodClient(front):
        outcomes = run_all([lambda: flood_body(front, "100 MB by length", chunked=False),
                            lambda: flood_body(front, "100 MB chunked", chunked=True)])
    for o in outcomes:
        assert_not_served(o)
        assert o.status() in (None, 413), "%s: answered %s" % (o, o.status())
        assert o.sent < BODY_BYTES, "%s: the server read all 100 MB" % o
    front.alive()
    # Nothing of it was added to the pool.
    assert set(front.daemon.read_lines("live.txt")) == front.live


def half_closed_attackers(front):
    return [
        lambda: exchange(front, "whole request, then SHUT_WR", GET, shut_wr=True),
        lambda: exchange(front, "part of a request, then SHUT_WR",
                         b"GET /live.txt HTTP/1.1\r\nHo", shut_wr=True),
        lambda: exchange(front, "part of a body, then SHUT_WR",
                         b"POST /control/add HTTP/1.1\r\nHost: proxyfs\r\nAuthorization: Bearer "
                         + TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n127.0.0",
                         shut_wr=True),
    ]


def test_half_closed_sockets(front):
    with GoodClient(front):
        whole, part, body = run_all(half_closed_attackers(front))
    got = answers(whole.data)
    assert got and got[0][0] == 200, "%s: no answer to a whole request" % whole
    assert set(got[0][1].decode().splitlines()) == front.live, whole
    assert whole.closed, "%s: left open after answering a half-closed client" % whole
    for o in (part, body):
        assert_not_served(o)
    front.alive()
    # The partial body was not applied.
    assert set(front.daemon.read_lines("live.txt")) == front.live


def pipelined_attackers(front):
    junk = {
        "garbage": b"\x00\xff\xfegarbage junk\r\n\r\n",
        "TLS": client_hello(),
        "bad header": b"GET /live.txt HTTP/1.1\r\nHost proxyfs no colon\r\n\r\n",
    }
    return [lambda k=k, v=v: exchange(front, "2 GETs then " + k, GET + GET + v)
            for k, v in junk.items()]


def test_pipelined_junk_after_good_requests(front):
    with GoodClient(front):
        outcomes = run_all(pipelined_attackers(front))
    for o in outcomes:
        got = answers(o.data)
        assert [s for s, _ in got[:2]] == [200, 200], "%s: the good requests not answered" % o
        for _, body in got[:2]:
            assert set(body.decode().splitlines()) == front.live, o
        assert all(s >= 400 for s, _ in got[2:]), "%s: junk answered %r" % (o, got[2:])
        assert o.closed, "%s: still open after junk" % o
    front.alive()


def garbage_attackers(front):
    return [lambda k=k, v=v: exchange(front, k, v) for k, v in garbage_payloads().items()]


def test_garbage_costs_its_connection(front):
    with GoodClient(front):
        outcomes = run_all(garbage_attackers(front))
    for o in outcomes:
        assert_not_served(o)
    front.alive()


def test_connections_past_the_limit_are_closed(mounts, peer_set, tmp_path):
    """max_connections = 16: four good keep-alive connections first, then 40
    more, each sending a request. At most 12 of those can be served; the
    others must be closed (or refused), not left hanging; the first four
    are served throughout, and once the 40 leave, a new connection is
    served again."""
    extra, good_conns = 40, 4
    f = Front(mounts, peer_set, str(tmp_path), max_connections=LIMITED_CONNECTIONS,
              request_timeout_s=30, idle_timeout_s=60)
    socks = []
    try:
        with GoodClient(f, keepalive=good_conns):
            outcomes = [Outcome("extra %d" % i) for i in range(extra)]
            t0 = time.monotonic()
            for o in outcomes:
                try:
                    s = f.connect()
                    s.sendall(GET)
                except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
                    o.closed, o.elapsed = True, time.monotonic() - t0
                    continue
                s.setblocking(False)
                socks.append((s, o))

            def settled():
                for s, o in socks:
                    if o.closed or len(answers(o.data)) == 1:
                        continue
                    r, _, _ = select.select([s], [], [], 0)
                    if r:
                        try:
                            chunk = s.recv(65536)
                        except ConnectionResetError:
                            chunk = b""
                        if chunk:
                            o.data += chunk
                        else:
                            o.closed, o.elapsed = True, time.monotonic() - t0
                return all(o.closed or len(answers(o.data)) == 1 for o in outcomes)
            wait_until(settled, GOOD_BOUND_S + SLACK_S,
                       "every connection past the limit served or closed", interval=0.02)
            served = [o for o in outcomes if not o.closed]
            closed = [o for o in outcomes if o.closed]
            assert len(served) <= LIMITED_CONNECTIONS - good_conns, \
                "%d extra connections served with max_connections = %d and %d in use" % (
                    len(served), LIMITED_CONNECTIONS, good_conns)
            assert len(closed) >= extra - (LIMITED_CONNECTIONS - good_conns), closed
            for o in served:
                assert answers(o.data)[0][0] == 200, o
            for o in closed:
                assert o.status() is None or o.status() >= 500, "%s: refused how?" % o
            for s, _ in socks:
                s.close()
            socks = []
            # The slots come back once the others leave.
            wait_until(f.get_ok, GOOD_BOUND_S + SLACK_S, "a new connection to be served")
    finally:
        for s, _ in socks:
            s.close()
    f.alive()
    f.daemon.stop()


def test_resources_come_back_after_the_attackers_leave(front):
    for _ in range(20):
        assert front.get_ok()
    rss0, fds0 = front.resources()
    silent_timeout = max(REQUEST_TIMEOUT_S, IDLE_TIMEOUT_S) + SLACK_S
    fns = (slowloris_attackers(front, n=10) + big_head_attackers(front) * 2 +
           [lambda: flood_body(front, "100 MB by length", chunked=False),
            lambda: flood_body(front, "100 MB chunked", chunked=True)] +
           half_closed_attackers(front) * 3 + pipelined_attackers(front) * 3 +
           garbage_attackers(front) * 2 +
           [lambda i=i: exchange(front, "silent %d" % i, timeout=silent_timeout)
            for i in range(30)])
    with GoodClient(front):
        outcomes = run_all(fns)
    open_ones = [o for o in outcomes if not o.closed]
    assert not open_ones, "left open: %r" % open_ones[:5]
    front.alive()
    wait_until(lambda: front.resources()[1] <= fds0, SLACK_S,
               "the daemon's descriptors back to %d (now %d)" % (fds0, front.resources()[1]))
    rss1, _ = front.resources()
    if not hostile.asan_build(front.daemon.binary):
        assert rss1 - rss0 < RSS_GROWTH_MAX_KB, \
            "RSS %d kB before %d attackers, %d kB after" % (rss0, len(fns), rss1)
    assert front.get_ok()
