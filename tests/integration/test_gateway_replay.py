"""A tunnel's upstream dying before the answer: the client never sees it.

The gateway has said "tunnel up" (SOCKS success, CONNECT 200, or sent an
absolute-form request on), the client has sent its request, and the
upstream is SIGKILLed before the target's answer comes back. The gateway
makes the tunnel again through another upstream and sends the client's
bytes again: the client gets its answer. The target here holds its answer
until the test has killed the upstream, so the death falls exactly in
that window every run. What cannot be made again is not: a POST (it may
have been carried out), bytes past the first answer byte.
"""

import base64
import json
import os
import signal
import socket
import threading

import pytest

from conftest import wait_until
from test_gateway import (Target, Upstreams, gateway_daemon, socks5_open,
                          start_microsocks_out, start_tinyproxy_out, start_tinyproxy_plain)

A_OUT = "127.0.0.71"
B_OUT = "127.0.0.72"


class HeldTarget:
    """An HTTP target that answers each request with the address it came
    from, but only once release is set; seen lists (source address, first
    request line) of every request it read."""

    def __init__(self):
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.seen = []
        self.t = Target(self._handle)
        self.host, self.port = self.t.host, self.t.port

    def _handle(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        src = conn.getpeername()[0]
        self.seen.append((src, data.split(b"\r\n", 1)[0].decode()))
        self.arrived.set()
        self.release.wait(20)
        body = ("from %s\n" % src).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(body) + body)

    def stop(self):
        self.release.set()
        self.t.stop()


def two_upstreams(tmp, kind):
    u = Upstreams.__new__(Upstreams)
    u.all = []
    start = {"socks5": start_microsocks_out, "https": start_tinyproxy_out,
             "http": start_tinyproxy_plain}[kind]
    try:
        u.a = u._keep(start(tmp, "127.0.0.73", A_OUT))
        u.b = u._keep(start(tmp, "127.0.0.74", B_OUT))
    except BaseException:
        u.stop()
        raise
    u.out = {u.a.uri: A_OUT, u.b.uri: B_OUT}
    return u


def kill(peer):
    os.killpg(peer.proc.pid, signal.SIGKILL)
    peer.proc.wait(timeout=5)


def read_all(s):
    s.settimeout(20)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def gateway_figures(d):
    return json.loads(d.read_text("stat.json"))["gateway"]


def open_tunnel(how, addr, target, user):
    """A connection through the gateway on which the request for / is (or
    is about to be) on its way to target."""
    gh, gp = addr.rsplit(":", 1)
    if how == "socks5":
        s = socks5_open(addr, target.host, target.port, user, "x")
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        return s
    s = socket.create_connection((gh, int(gp)), timeout=10)
    auth = "Proxy-Authorization: Basic %s\r\n" % base64.b64encode(
        (user + ":x").encode()).decode()
    if how == "connect":
        s.sendall(("CONNECT %s:%d HTTP/1.1\r\nHost: t\r\n%s\r\n"
                   % (target.host, target.port, auth)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, "closed before the CONNECT answer"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    else:
        s.sendall(("GET http://%s:%d/ HTTP/1.1\r\nHost: t\r\n%s\r\n"
                   % (target.host, target.port, auth)).encode())
    return s


@pytest.mark.parametrize("how,kind", [("socks5", "socks5"), ("connect", "https"),
                                      ("absolute", "https"), ("absolute", "http")])
def test_upstream_killed_before_the_answer_is_not_seen(mounts, tmp_path, peer_set, how, kind):
    tmp = str(tmp_path)
    u = two_upstreams(tmp, kind)
    target = HeldTarget()
    try:
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u, "eject_after = 0\n")
        pinned = d.read_text("session/r1").strip()
        victim = u.a if pinned == u.a.uri else u.b
        other_out = B_OUT if victim is u.a else A_OUT
        s = open_tunnel(how, addr, target, "u-session-r1")
        assert target.arrived.wait(10), "the request never reached the target"
        assert target.seen[0][0] == u.out[victim.uri]
        kill(victim)
        target.release.set()
        answer = read_all(s)
        s.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert answer.endswith(("from %s\n" % other_out).encode()), answer
        assert [src for src, _ in target.seen] == [u.out[victim.uri], other_out]
        assert gateway_figures(d)["replays"] == 1
    finally:
        target.stop()
        u.stop()


@pytest.mark.parametrize("how", ["socks5", "absolute"])
def test_a_post_is_not_sent_twice(mounts, tmp_path, peer_set, how):
    """A POST may have been carried out before its upstream died: the
    client sees the connection close, as it would without the gateway."""
    tmp = str(tmp_path)
    u = two_upstreams(tmp, "socks5" if how == "socks5" else "https")
    target = HeldTarget()
    try:
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u, "eject_after = 0\n")
        pinned = d.read_text("session/p1").strip()
        victim = u.a if pinned == u.a.uri else u.b
        if how == "socks5":
            s = socks5_open(addr, target.host, target.port, "u-session-p1", "x")
            s.sendall(b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        else:
            gh, gp = addr.rsplit(":", 1)
            s = socket.create_connection((gh, int(gp)), timeout=10)
            s.sendall(("POST http://%s:%d/order HTTP/1.1\r\nHost: t\r\n"
                       "Proxy-Authorization: Basic %s\r\nContent-Length: 2\r\n\r\nhi"
                       % (target.host, target.port,
                          base64.b64encode(b"u-session-p1:x").decode())).encode())
        assert target.arrived.wait(10)
        kill(victim)
        target.release.set()
        assert read_all(s) == b""
        s.close()
        assert len(target.seen) == 1, target.seen
        assert gateway_figures(d)["replays"] == 0
    finally:
        target.stop()
        u.stop()


def test_a_target_that_closes_without_a_word_is_seen_closing(mounts, tmp_path, peer_set):
    """A target that reads and closes is not an upstream's death to hide
    for ever: after retries + 1 tunnels the client sees it close, and no
    upstream is blamed."""
    tmp = str(tmp_path)
    u = two_upstreams(tmp, "socks5")
    seen = []

    def close_at_once(conn):
        seen.append(conn.recv(4096))

    target = Target(close_at_once)
    try:
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u, "retries = 1\n")
        s = socks5_open(addr, target.host, target.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_all(s) == b""
        s.close()
        wait_until(lambda: len(seen) == 2, 5, "the request sent through both upstreams")
        assert gateway_figures(d)["replays"] == 1
        st = json.loads(d.read_text("stat.json"))
        assert st["ejections"]["total"] == 0
        assert sorted(d.live()) == sorted(p.uri for p in u.all)
    finally:
        target.stop()
        u.stop()
