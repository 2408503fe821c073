"""The truth of a check, seen from the mount.

A proxy that answers every connection at once with a canned judge page,
and one that replays the judge's answer to an earlier check, are never
alive; proxyfs's own judge works with the default expect; and proxies our
host has no route to (an IPv6 one where IPv6 is off, an IPv4 one with no
route) are counted `unreachable` and listed as unknown, not dead. That
last case runs the daemon and its judge in a network namespace of their
own (`unshare -n`), where only loopback is up and IPv6 is switched off.
"""

import os
import socket
import subprocess
import sys
import threading

import pytest

import peers
from conftest import write_config, write_list
from test_judge import Judge

HERE = os.path.dirname(os.path.abspath(__file__))


def read_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class Server:
    """A TCP server on a thread: handle(conn) for each connection."""

    def __init__(self, host, handle):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.host, self.port = self.sock.getsockname()
        self.handle = handle
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.settimeout(10)
            self.handle(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.sock.close()


def judge_page(judge):
    """The test judge's whole answer to a request of another client's."""
    with socket.create_connection((judge.host, judge.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: %s:%d\r\nUser-Agent: curl/8.0\r\n"
                  b"Accept: */*\r\n\r\n" % (judge.host.encode(), judge.port))
        return read_all(s)


def canned(page):
    """Sends page as soon as a client connects, then waits for its close."""
    def handle(conn):
        conn.sendall(page)
        read_all(conn)
    return handle


def replaying(judge, kept):
    """Forwards the first request to the judge and keeps its answer in
    kept; sends that answer to every later request, after reading it."""
    lock = threading.Lock()

    def handle(conn):
        req = read_head(conn)
        with lock:
            kept["served"] = kept.get("served", 0) + 1
            if "page" not in kept:
                with socket.create_connection((judge.host, judge.port), timeout=5) as j:
                    j.sendall(req)
                    kept["page"] = read_all(j)
            page = kept["page"]
        conn.sendall(page)
    return handle


def test_canned_and_replayed_pages_are_not_alive(binary, peer_set, mounts, tmp_path):
    tmp = str(tmp_path)
    page = judge_page(peer_set.judge)
    assert peers.JUDGE_TOKEN.encode() in page and b"REMOTE_ADDR" in page
    kept = {}
    servers = [Server("127.0.0.31", canned(page)), Server("127.0.0.31", canned(page)),
               Server("127.0.0.32", replaying(peer_set.judge, kept))]
    plain, tunnel, replay = servers
    good = peer_set.tinyproxy
    try:
        lst = write_list(tmp, "%s\nhttp://%s:%d\nhttps://%s:%d\nhttp://%s:%d\n"
                         % (good.line, plain.host, plain.port, tunnel.host, tunnel.port,
                            replay.host, replay.port))
        d = mounts.new(write_config(tmp, peer_set.judge, lst)).start()
        d.sync()  # the scan at start, then this one: each proxy checked twice
        live = d.live()
        assert good.uri in live, d.log()
        assert not [u for u in live if "127.0.0.31" in u], (live, d.log())
        # the replaying proxy's first check went to the judge, the next
        # one got that answer again
        assert kept.get("served", 0) >= 2 and b"proxyfs-check/" in kept["page"], kept
        assert not [u for u in live if "127.0.0.32" in u], (live, d.log())
        checks = d.read_json("stat.json")["engine"]["checks"]
        # the tunnel's canned page comes with its "reply": nothing it sends
        # before our request counts
        assert checks["protocol_error"] >= 1, checks
        assert checks["wrong_answer"] >= 1, checks
    finally:
        for s in servers:
            s.stop()


def test_default_expect_accepts_proxyfs_judge(binary, peer_set, mounts, tmp_path):
    tmp = str(tmp_path)
    judge = Judge(binary, tmp)
    try:
        conf = write_config(tmp, judge, write_list(tmp, peer_set.tinyproxy.line + "\n"))
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:  # no expect line: the default
            f.write("".join(l for l in text.splitlines(True) if not l.startswith("expect")))
        d = mounts.new(conf).start()
        d.sync()
        assert d.live() == {peer_set.tinyproxy.uri}, d.log()
        assert d.read_text("health").startswith("ok"), d.read_text("health")
    finally:
        judge.stop()


NETNS_JUDGE_PORT = 18080  # the namespace is ours alone: any port is free

NETNS_WRAPPER = """#!/bin/sh
# proxyfs in a network namespace of its own: loopback only, IPv6 off, with
# the test judge beside it. Execs proxyfs, so the caller's PID is its PID.
exec unshare -n bash -c '
ip link set lo up || exit 97
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 || exit 97
echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6 || exit 97
%(python)s %(peers)s judge 127.0.0.1 %(port)d >/dev/null 2>&1 &
echo $! > %(pidfile)s
i=0
until (exec 3<>/dev/tcp/127.0.0.1/%(port)d) 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 200 ] && exit 98
    sleep 0.05
done
exec %(binary)s "$@"' proxyfs "$@"
"""


@pytest.fixture
def netns_binary(binary, tmp_path):
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("no network namespace allowed here")
    pidfile = str(tmp_path / "judge.pid")
    wrapper = str(tmp_path / "proxyfs-netns")
    with open(wrapper, "w") as f:
        f.write(NETNS_WRAPPER % {"python": sys.executable, "peers": os.path.join(HERE, "peers.py"),
                                 "port": NETNS_JUDGE_PORT, "pidfile": pidfile,
                                 "binary": binary})
    os.chmod(wrapper, 0o755)
    try:
        yield wrapper
    finally:
        try:
            with open(pidfile) as f:
                os.kill(int(f.read()), 15)
        except (OSError, ValueError):
            pass


class NetnsJudge:
    host = "127.0.0.1"
    port = NETNS_JUDGE_PORT


def test_no_route_is_unreachable_not_dead(netns_binary, mounts, tmp_path):
    tmp = str(tmp_path)
    lst = write_list(tmp, "socks5://[2001:db8::1]:1080\nhttp://192.0.2.1:8080\n")
    mounts.binary = netns_binary
    d = mounts.new(write_config(tmp, NetnsJudge, lst)).start()
    d.sync()  # the scan at start, then this one
    st = d.read_json("stat.json")
    checks = st["engine"]["checks"]
    # each scan: one of each, neither refused nor our overload
    assert checks["unreachable"] >= 2 and checks["unreachable"] % 2 == 0, (checks, d.log())
    assert checks["refused"] == 0 and checks["local_error"] == 0, checks
    assert st["pool"]["unknown"] == 2 and st["pool"]["dead"] == 0, (st["pool"], d.log())
    assert d.live() == set()
    metrics = d.read_text("metrics")
    assert 'proxyfs_checks_total{result="unreachable"} %d' % checks["unreachable"] in metrics
