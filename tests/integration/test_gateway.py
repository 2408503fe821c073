"""The gateway ([gateway] listen): one proxy address over the pool.

curl, pointed at the gateway as an HTTP proxy (plain and CONNECT), as
SOCKS5 (remote names) and as SOCKS4a, reaches the judge through a live
upstream of the pool. The upstreams are this module's own real proxies,
each going out from its own loopback address (microsocks -b, tinyproxy
Bind, danted external), so the judge's REMOTE_ADDR names the upstream a
connection went out through. Failures are hidden: an upstream stopped
after the pool saw it alive is replaced by another without the client
noticing. Hostile clients (junk, a 1 MB CONNECT line, a stalled
handshake) cost only their own connection.
"""

import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time

import pytest

import certs
import peers
import test_https
from conftest import concurrency_max_with, wait_until, write_config, write_list

# Outgoing address of each upstream: the judge shows it as REMOTE_ADDR.
S5_OUT = "127.0.0.61"
S5_AUTH_OUT = "127.0.0.62"
HTTPS_OUT = "127.0.0.63"
S4_OUT = "127.0.0.64"


def curl(*args, timeout=10):
    p = subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                       capture_output=True, timeout=timeout + 10)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def remote_addr(body):
    m = re.search(r"^REMOTE_ADDR = (\S+)$", body, re.M)
    return m.group(1) if m else None


def judge_header(body, name):
    m = re.search(r"^HTTP_%s = (.*)$" % name, body, re.M)
    return m.group(1) if m else None


def start_microsocks_out(tmp, host, out, user=None, password=None):
    def make():
        port = peers.free_port(host)
        argv = ["microsocks", "-i", host, "-p", str(port), "-b", out]
        cred = ""
        if user:
            argv += ["-u", user, "-P", password]
            cred = "%s:%s@" % (user, password)
        uri = "socks5://%s%s:%d" % (cred, host, port)
        return peers.Peer("microsocks", host, port, argv,
                          os.path.join(tmp, "microsocks-%d.log" % port), line=uri, uri=uri)
    return peers._start_with_retry(make)


def start_tinyproxy_out(tmp, host, out, listed="https", user=None, password=None):
    """tinyproxy going out from out, with BasicAuth when given. Listed
    https:// it is checked through CONNECT (in https/); listed http://, by
    plain forwarding only (in http/, not https/)."""
    def make():
        port = peers.free_port(host)
        conf = os.path.join(tmp, "tinyproxy-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("Port %d\nListen %s\nBind %s\nTimeout 30\nLogLevel Info\n"
                    "MaxClients 100\nAllow 127.0.0.0/8\n" % (port, host, out))
            if user:
                f.write("BasicAuth %s %s\n" % (user, password))
        cred = "%s:%s@" % (user, password) if user else ""
        return peers.Peer("tinyproxy", host, port, ["tinyproxy", "-d", "-c", conf],
                          os.path.join(tmp, "tinyproxy-%d.log" % port),
                          line="%s://%s%s:%d" % (listed, cred, host, port),
                          uri="http://%s%s:%d" % (cred, host, port))
    return peers._start_with_retry(make)


def start_tinyproxy_plain(tmp, host, out, user=None, password=None):
    """tinyproxy listed http://: proven to forward, never asked to CONNECT."""
    return start_tinyproxy_out(tmp, host, out, "http", user, password)


def start_danted_out(tmp, host, out):
    def make():
        port = peers.free_port(host)
        conf = os.path.join(tmp, "danted-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("logoutput: stderr\ninternal: %s port = %d\nexternal: %s\n"
                    "socksmethod: none\nclientmethod: none\n"
                    "user.privileged: root\nuser.unprivileged: nobody\n"
                    "client pass {\n\tfrom: 127.0.0.0/8\n\tto: 0.0.0.0/0\n}\n"
                    "socks pass {\n\tfrom: 127.0.0.0/8\n\tto: 0.0.0.0/0\n}\n"
                    % (host, port, out))
        uri = "socks4://%s:%d" % (host, port)
        return peers.Peer("danted", host, port,
                          ["danted", "-f", conf, "-p", os.path.join(tmp, "danted-%d.pid" % port)],
                          os.path.join(tmp, "danted-%d.log" % port), line=uri, uri=uri)
    return peers._start_with_retry(make)


class Upstreams:
    """The pool's proxies: SOCKS5, SOCKS5 with a password, an HTTP proxy
    that CONNECTs, SOCKS4; out maps each one's URI to its outgoing address."""

    def __init__(self, tmp):
        self.all = []
        try:
            self.s5 = self._keep(start_microsocks_out(tmp, "127.0.0.51", S5_OUT))
            self.s5_auth = self._keep(start_microsocks_out(tmp, "127.0.0.52", S5_AUTH_OUT,
                                                           "carol", "pw9"))
            self.https = self._keep(start_tinyproxy_out(tmp, "127.0.0.53", HTTPS_OUT))
            self.s4 = self._keep(start_danted_out(tmp, "127.0.0.54", S4_OUT))
        except BaseException:
            self.stop()
            raise
        self.out = {self.s5.uri: S5_OUT, self.s5_auth.uri: S5_AUTH_OUT,
                    self.https.uri: HTTPS_OUT, self.s4.uri: S4_OUT}

    def _keep(self, p):
        self.all.append(p)
        return p

    def lines(self):
        return "".join(p.line + "\n" for p in self.all)

    def stop(self):
        for p in self.all:
            p.stop()


def gateway_daemon(mounts, tmp, judge, upstreams, extra=""):
    """A daemon over upstreams with the gateway on a free port, synced;
    returns (daemon, gateway address "127.0.0.1:PORT")."""
    port = peers.free_port("127.0.0.1")
    section = "\n[gateway]\nlisten = 127.0.0.1:%d\n%s" % (port, extra)
    conf = write_config(tmp, judge, write_list(tmp, upstreams.lines()), extra=section)
    d = mounts.new(conf).start()
    d.sync()
    assert len(d.live()) == len(upstreams.all), d.read_text("all.json")
    return d, "127.0.0.1:%d" % port


@pytest.fixture(scope="module")
def ups(tmp_path_factory):
    u = Upstreams(str(tmp_path_factory.mktemp("ups")))
    try:
        yield u
    finally:
        u.stop()


@pytest.fixture
def gw(mounts, tmp_path, peer_set, ups):
    return gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups)


def exits(ups):
    return set(ups.out.values())


# --- what clients speak ---

def test_http_proxy_absolute_form(gw, peer_set, ups):
    """curl -x http://GW http://judge/path: the request reaches the judge in
    origin form, with the Proxy-* headers gone and Connection: close."""
    _, addr = gw
    rc, out, err = curl("-x", "http://" + addr, "-H", "Proxy-Foo: bar",
                        peer_set.judge_url + "some/path?q=1")
    assert rc == 0, err
    assert peers.JUDGE_TOKEN in out
    assert "REQUEST_URI = /some/path?q=1" in out
    assert judge_header(out, "PROXY_FOO") is None
    assert judge_header(out, "CONNECTION") == "close"
    assert remote_addr(out) in exits(ups)


def test_python_http_proxy_env(gw, peer_set, ups):
    """A program that honours http_proxy (Python's urllib, as requests
    does) gets its answer through the gateway."""
    _, addr = gw
    env = dict(os.environ, http_proxy="http://" + addr, no_proxy="")
    p = subprocess.run(["/usr/bin/python3", "-c",
                        "import sys, urllib.request;"
                        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10)"
                        ".read().decode())", peer_set.judge_url],
                       env=env, capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, p.stderr
    assert peers.JUDGE_TOKEN in out and remote_addr(out) in exits(ups)


def test_http_connect(gw, peer_set, ups):
    _, addr = gw
    rc, out, err = curl("-p", "-x", "http://" + addr, peer_set.judge_url)
    assert rc == 0, err
    assert peers.JUDGE_TOKEN in out and remote_addr(out) in exits(ups)


def test_socks5h(gw, peer_set, ups):
    _, addr = gw
    rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
    assert rc == 0, err
    assert peers.JUDGE_TOKEN in out and remote_addr(out) in exits(ups)


def test_socks5h_name_goes_to_the_upstream(gw, peer_set, ups):
    """A host name is sent on as a name (never resolved by the gateway),
    so only upstreams that take names carry it: never SOCKS4."""
    _, addr = gw
    url = "http://localhost:%d/" % peer_set.judge.port
    for _ in range(8):
        rc, out, err = curl("-x", "socks5h://" + addr, url)
        assert rc == 0, err
        assert peers.JUDGE_TOKEN in out
        assert remote_addr(out) in exits(ups) - {S4_OUT}


def test_socks4a(gw, peer_set, ups):
    _, addr = gw
    rc, out, err = curl("-x", "socks4a://" + addr, peer_set.judge_url)
    assert rc == 0, err
    assert peers.JUDGE_TOKEN in out and remote_addr(out) in exits(ups)


def test_ipv6_target(gw, peer_set, ups):
    """An IPv6 literal target (SOCKS5 address type 4, CONNECT [::1]:port)
    goes to upstreams that can take it: never SOCKS4."""
    target = Target(lambda conn: (conn.recv(4096),
                                  conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nv6\n")),
                    host="::1")
    try:
        _, addr = gw
        url = "http://[::1]:%d/" % target.port
        for args in (("-x", "socks5h://" + addr), ("-p", "-x", "http://" + addr),
                     ("-x", "socks5://" + addr)):
            for _ in range(4):
                rc, out, err = curl(*args, url)
                assert rc == 0 and out == "v6\n", (args, err)
    finally:
        target.stop()


def test_round_robin_takes_each_in_turn(mounts, tmp_path, peer_set, ups):
    d, addr = gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups,
                             "policy = round_robin\n")
    seq = []
    for _ in range(8):
        rc, out, err = curl("-x", "http://" + addr, peer_set.judge_url)
        assert rc == 0, err
        seq.append(remote_addr(out))
    assert set(seq[:4]) == exits(ups) and seq[4:] == seq[:4], seq


def test_fastest_prefers_the_faster(mounts, tmp_path, peer_set):
    """Two upstreams, one behind a 300 ms delay: fastest takes the better
    of two, so every connection goes out through the fast one."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    slow_front = None
    try:
        fast = u._keep(start_microsocks_out(tmp, "127.0.0.71", S5_OUT))
        slow = start_microsocks_out(tmp, "127.0.0.72", S5_AUTH_OUT)
        u.all.append(slow)

        def delayed(conn):
            time.sleep(0.3)
            up = socket.create_connection((slow.host, slow.port), timeout=10)
            pump = threading.Thread(target=_pump, args=(up, conn), daemon=True)
            pump.start()
            _pump(conn, up)
            pump.join(10)
            up.close()

        slow_front = Target(delayed, host="127.0.0.73")
        line = "socks5://127.0.0.73:%d" % slow_front.port
        conf_list = "%s\n%s\n" % (fast.line, line)

        class L:
            all = [fast, slow_front]

            @staticmethod
            def lines():
                return conf_list

        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, L, "policy = fastest\n")
        lat = {p["uri"]: p["latency_ms"] for p in d.read_json("live.json")}
        assert lat[line] > lat[fast.uri], lat
        for _ in range(10):
            rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
            assert rc == 0, err
            assert remote_addr(out) == S5_OUT
    finally:
        if slow_front:
            slow_front.stop()
        u.stop()


def _pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                dst.shutdown(socket.SHUT_WR)
                return
            dst.sendall(data)
    except OSError:
        pass


def test_proxychains_through_the_gateway(gw, peer_set, ups, tmp_path):
    """proxychains4 pointed at the gateway: an unaware program (curl with
    no proxy option) goes out through the pool."""
    _, addr = gw
    host, port = addr.rsplit(":", 1)
    conf = tmp_path / "proxychains.conf"
    conf.write_text("strict_chain\nquiet_mode\nproxy_dns\ntcp_read_time_out 15000\n"
                    "tcp_connect_time_out 8000\n[ProxyList]\nsocks5 %s %s\n" % (host, port))
    p = subprocess.run(["proxychains4", "-f", str(conf), "curl", "-sS", "--max-time", "10",
                        peer_set.judge_url], capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, p.stderr
    assert peers.JUDGE_TOKEN in out and remote_addr(out) in exits(ups)


def test_every_upstream_protocol_used(gw, peer_set, ups):
    """The upstream handshakes of every protocol (SOCKS5 with and without
    a password, HTTP CONNECT, SOCKS4) carry real traffic: over enough
    connections each upstream is an exit."""
    _, addr = gw
    seen = set()
    for _ in range(60):
        rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
        assert rc == 0, err
        seen.add(remote_addr(out))
        if seen == exits(ups):
            break
    assert seen == exits(ups)


def test_user_options_choose_the_protocol(gw, peer_set, ups):
    _, addr = gw
    for user, want in (("u-proto-socks4", {S4_OUT}), ("u-proto-https", {HTTPS_OUT}),
                       ("u-proto-socks5", {S5_OUT, S5_AUTH_OUT})):
        for _ in range(4):
            rc, out, err = curl("-x", "socks5h://" + addr, "--proxy-user", user + ":x",
                                peer_set.judge_url)
            assert rc == 0, (user, err)
            assert remote_addr(out) in want, (user, out)


def test_sticky_session_is_the_trees(gw, peer_set, ups):
    """USER-session-KEY: one exit across 20 connections, the upstream the
    tree's /session/KEY names (one session table)."""
    d, addr = gw
    got = set()
    for _ in range(20):
        rc, out, err = curl("-x", "http://" + addr, "--proxy-user", "alice-session-k42:x",
                            peer_set.judge_url)
        assert rc == 0, err
        got.add(remote_addr(out))
    assert len(got) == 1
    assert got == {ups.out[d.read_text("session/k42").strip()]}


def test_sticky_session_moves_when_its_upstream_leaves(mounts, tmp_path, peer_set, ups):
    """The session's upstream removed (control/remove): the key moves to
    another live upstream, and sticks there."""
    d, addr = gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups)

    def exit_of(key):
        rc, out, err = curl("-x", "http://" + addr, "--proxy-user", "bob-session-%s:x" % key,
                            peer_set.judge_url)
        assert rc == 0, err
        return remote_addr(out)

    first = exit_of("mv1")
    uri = [u for u, out in ups.out.items() if out == first][0]
    d.write("control/remove", uri + "\n")
    wait_until(lambda: uri not in d.live(), 10, "the session's upstream out of the live set")
    moved = {exit_of("mv1") for _ in range(5)}
    assert len(moved) == 1 and moved != {first}, (first, moved)
    assert moved == {ups.out[d.read_text("session/mv1").strip()]}


# --- failures hidden ---

def test_dead_upstream_retried(mounts, tmp_path, peer_set):
    """One upstream of two stopped after the pool saw it alive: every
    request still gets its answer, through the other."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    try:
        u.s5 = u._keep(start_microsocks_out(tmp, "127.0.0.55", S5_OUT))
        dead = u._keep(start_microsocks_out(tmp, "127.0.0.56", S5_AUTH_OUT))
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u,
                                 "policy = round_robin\neject_after = 0\n")
        dead.stop()
        for _ in range(10):
            rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
            assert rc == 0, err
            assert remote_addr(out) == S5_OUT
        assert dead.uri in d.live()  # still live: the gateway hid it, nothing more
    finally:
        u.stop()


def test_retry_goes_to_what_worked_lately(mounts, tmp_path, peer_set):
    """Three upstreams of four stopped while the gateway is in use, one
    retry only, round_robin (which meets two stopped ones in a row): every
    request is answered, because a retry goes to the upstream that worked
    a moment ago rather than to the next unknown."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    try:
        live = u._keep(start_microsocks_out(tmp, "127.0.0.91", S5_OUT))
        dead = [u._keep(start_microsocks_out(tmp, "127.0.0.%d" % (92 + i), "127.0.0.%d" % (95 + i)))
                for i in range(3)]
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u,
                                 "policy = round_robin\nretries = 1\neject_after = 0\n")
        # Traffic as usual until the one that stays was the last to work.
        for _ in range(8):
            rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
            assert rc == 0, err
            if remote_addr(out) == S5_OUT:
                break
        assert remote_addr(out) == S5_OUT
        for p in dead:
            p.stop()
        for _ in range(12):
            rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
            assert rc == 0, err
            assert remote_addr(out) == S5_OUT
    finally:
        u.stop()


def test_dead_upstream_ejected_by_real_traffic(mounts, tmp_path, peer_set):
    """A stopped upstream fails real traffic eject_after times in a row:
    it leaves the live set (an ejection by the gateway, with why), while
    every client got its answer; the one that worked keeps its slot."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    try:
        good = u._keep(start_microsocks_out(tmp, "127.0.0.58", S5_OUT))
        dead = u._keep(start_microsocks_out(tmp, "127.0.0.59", S5_AUTH_OUT))
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u,
                                 "policy = round_robin\neject_after = 2\n")
        dead.stop()
        for _ in range(8):
            rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
            assert rc == 0, err
            assert remote_addr(out) == S5_OUT
        wait_until(lambda: dead.uri not in d.live(), 10, "the dead upstream ejected")
        ej = d.read_json("stat.json")["ejections"]
        assert ej["by"]["gateway"] >= 1, ej
        assert any(x["uri"] == dead.uri and x["by"] == "gateway" and x["why"]
                   for x in ej["last"]), ej
        assert good.uri in d.live()
    finally:
        u.stop()


def test_a_target_that_never_answers_ejects_no_upstream(mounts, tmp_path, peer_set):
    """A client's target that never answers (its listen queue full, so
    every SYN is dropped) makes the upstream's reply to the CONNECT wait
    until the gateway gives up: that is the target's doing, not the
    upstream's, so even with eject_after = 1 nothing is ejected, and the
    same upstream carries the next request. (Two tries of 2 s each: the
    first one's own deadline, not the whole handshake's, ends it.)"""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    hole = socket.socket()
    fillers = []
    try:
        up = u._keep(start_microsocks_out(tmp, "127.0.0.78", S5_OUT))
        hole.bind(("127.0.0.79", 0))
        hole.listen(0)
        port = hole.getsockname()[1]
        # Fill the accept queue; later SYNs to the port are dropped.
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.79", port))
            fillers.append(f)
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u,
                                 "retries = 1\nhandshake_timeout_s = 4\neject_after = 1\n")
        rc, _, _ = curl("-x", "socks5h://" + addr, "http://127.0.0.79:%d/" % port, timeout=8)
        assert rc != 0
        ej = d.read_json("stat.json")["ejections"]
        assert ej["by"].get("gateway", 0) == 0, ej
        assert up.uri in d.live()
        rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
        assert rc == 0, err
        assert remote_addr(out) == S5_OUT
    finally:
        for f in fillers:
            f.close()
        hole.close()
        u.stop()


def test_failed_upstream_logged_without_its_credentials(mounts, tmp_path, peer_set):
    """The debug log names an upstream that failed by scheme, host and port:
    its password is not written to the log."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    try:
        good = u._keep(start_microsocks_out(tmp, "127.0.0.81", S5_OUT))
        locked = u._keep(start_microsocks_out(tmp, "127.0.0.82", S5_AUTH_OUT,
                                              "dave", "s3cretpw"))
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u,
                                 "policy = round_robin\neject_after = 0\n")
        locked.stop()
        for _ in range(2):
            rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
            assert rc == 0, err
        name = "gateway: upstream socks5://127.0.0.82:%d:" % locked.port
        wait_until(lambda: name in d.log(), 5, "the failed upstream in the log")
        assert "s3cretpw" not in d.log()
    finally:
        u.stop()


def test_silent_upstream_costs_only_its_share_of_the_deadline(mounts, tmp_path, peer_set):
    """An upstream that goes silent after the pool saw it alive (it takes
    the connection and never answers): each attempt has its share of
    handshake_timeout_s, so the retry still answers the client in time."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    front = None
    try:
        good = u._keep(start_microsocks_out(tmp, "127.0.0.74", S5_OUT))
        inner = u._keep(start_microsocks_out(tmp, "127.0.0.75", S5_AUTH_OUT))
        silent = threading.Event()

        def maybe_silent(conn):
            if silent.is_set():
                conn.recv(65536)  # takes the greeting, answers nothing
                time.sleep(30)
                return
            up = socket.create_connection((inner.host, inner.port), timeout=10)
            pump = threading.Thread(target=_pump, args=(up, conn), daemon=True)
            pump.start()
            _pump(conn, up)
            pump.join(10)
            up.close()

        front = Target(maybe_silent, host="127.0.0.76")
        line = "socks5://127.0.0.76:%d" % front.port

        class L:
            all = [good, front]

            @staticmethod
            def lines():
                return "%s\n%s\n" % (good.line, line)

        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, L,
                                 "policy = round_robin\nretries = 2\n"
                                 "handshake_timeout_s = 6\neject_after = 0\n")
        silent.set()
        for _ in range(4):
            t0 = time.monotonic()
            rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
            assert rc == 0, err
            assert remote_addr(out) == S5_OUT
            assert time.monotonic() - t0 < 4.5
    finally:
        if front:
            front.stop()
        u.stop()


def test_all_upstreams_dead_is_502(mounts, tmp_path, peer_set):
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    try:
        dead = u._keep(start_microsocks_out(tmp, "127.0.0.57", S5_OUT, "erin", "pw5"))
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u)
        dead.stop()
        rc, out, err = curl("-i", "-x", "http://" + addr, peer_set.judge_url)
        assert " 502 " in out.splitlines()[0], out
        why = [line for line in out.splitlines() if line.lower().startswith("x-proxyfs-error:")]
        assert why and "tried" in why[0] and "refused" in why[0].lower(), out
        # Why, never which upstream: its URI holds its credentials.
        assert "pw5" not in out and "127.0.0.57" not in out, out
        rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
        assert rc != 0
    finally:
        u.stop()


# --- auth ---

def test_auth(mounts, tmp_path, peer_set, ups):
    d, addr = gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups, "auth = dave:pw7\n")
    rc, out, err = curl("-i", "-x", "http://" + addr, peer_set.judge_url)
    assert " 407 " in out.splitlines()[0], out
    rc, out, err = curl("-x", "http://" + addr, "--proxy-user", "dave:pw7", peer_set.judge_url)
    assert rc == 0 and peers.JUDGE_TOKEN in out, err
    rc, out, err = curl("-x", "socks5h://" + addr, "--proxy-user", "dave-proto-socks5:pw7",
                        peer_set.judge_url)
    assert rc == 0 and remote_addr(out) in (S5_OUT, S5_AUTH_OUT), err
    rc, out, err = curl("-x", "socks5h://" + addr, "--proxy-user", "dave:nope",
                        peer_set.judge_url)
    assert rc != 0 and peers.JUDGE_TOKEN not in out
    rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
    assert rc != 0 and peers.JUDGE_TOKEN not in out


# --- hostile clients ---

def _connect(addr):
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _read_all(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_hostile_clients_cost_only_their_connection(mounts, tmp_path, peer_set, ups):
    d, addr = gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups,
                             "handshake_timeout_s = 2\n")
    slow = _connect(addr)
    slow.sendall(b"\x05")  # a SOCKS5 greeting that never ends
    junk = _connect(addr)
    junk.sendall(b"\x00\xffjunk\r\n\r\n")
    assert _read_all(junk) == b""  # closed, nothing said
    big = _connect(addr)
    try:
        big.sendall(b"CONNECT " + b"a" * (1 << 20) + b":443 HTTP/1.1\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = _read_all(big)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    # Meanwhile the gateway serves everyone else.
    rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
    assert rc == 0 and peers.JUDGE_TOKEN in out, err
    # The stalled handshake is cut at its deadline.
    t0 = time.monotonic()
    assert _read_all(slow) == b""
    assert time.monotonic() - t0 < 5
    for s in (slow, junk, big):
        s.close()


def test_https_target_verified_end_to_end(mounts, tmp_path, peer_set, ups):
    """CONNECT to an https target: TLS runs between curl and the target,
    verified against the test CA, through the gateway and an upstream."""
    tmp = str(tmp_path)
    ca = certs.CA(tmp, "gw")
    ctx = test_https._server_ctx(*ca.issue("judge", ["IP:127.0.0.1", "DNS:localhost"]))
    judge = test_https._Served(test_https._bind_retry(
        lambda port: test_https._TLSJudge(("127.0.0.1", port), ctx), "127.0.0.1"))
    try:
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, ups)
        url = "https://127.0.0.1:%d/judge" % judge.port
        for scheme in ("http", "socks5h"):
            rc, out, err = curl("--cacert", ca.cert, "-x", scheme + "://" + addr, url)
            assert rc == 0, (scheme, err)
            assert test_https.TOKEN in out
    finally:
        judge.stop()


def test_python_requests_session_http_and_https(mounts, tmp_path, peer_set, ups):
    """Python's requests, pointed at the gateway by http_proxy and
    https_proxy, in one Session (it keeps connections for reuse): plain
    http:// requests and an https:// one verified against the test CA all
    get their answers."""
    tmp = str(tmp_path)
    ca = certs.CA(tmp, "gwreq")
    ctx = test_https._server_ctx(*ca.issue("judge", ["IP:127.0.0.1", "DNS:localhost"]))
    judge = test_https._Served(test_https._bind_retry(
        lambda port: test_https._TLSJudge(("127.0.0.1", port), ctx), "127.0.0.1"))
    try:
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, ups)
        env = dict(os.environ, http_proxy="http://" + addr, https_proxy="http://" + addr,
                   no_proxy="", REQUESTS_CA_BUNDLE=ca.cert)
        script = (
            "import sys, requests\n"
            "s = requests.Session()\n"
            "for _ in range(3):\n"
            "    r = s.get(sys.argv[1], timeout=10)\n"
            "    r.raise_for_status()\n"
            "    print(r.text)\n"
            "r = s.get(sys.argv[2], timeout=10)\n"
            "r.raise_for_status()\n"
            "print(r.text)\n")
        p = subprocess.run(["/usr/bin/python3", "-c", script, peer_set.judge_url,
                            "https://127.0.0.1:%d/judge" % judge.port],
                           env=env, capture_output=True, timeout=60)
        out = p.stdout.decode(errors="replace")
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        assert out.count(peers.JUDGE_TOKEN) == 3, out
        assert test_https.TOKEN in out
    finally:
        judge.stop()


# --- limits and the relay ---

class Target:
    """A TCP server of this process: handler(conn) runs in a thread per
    connection."""

    def __init__(self, handler, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.host, self.port = self.sock.getsockname()[:2]
        self.handler = handler
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def socks5_open(addr, host, port, user=None, password=None, src=None):
    """A SOCKS5 tunnel through the gateway to host:port (an IPv4 literal)."""
    gh, gp = addr.rsplit(":", 1)
    s = socket.create_connection((gh, int(gp)), timeout=10,
                                 source_address=(src, 0) if src else None)
    if user is None:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
    else:
        s.sendall(b"\x05\x01\x02")
        assert s.recv(2) == b"\x05\x02"
        s.sendall(bytes([1, len(user)]) + user.encode() + bytes([len(password)])
                  + password.encode())
        assert s.recv(2) == b"\x01\x00"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + port.to_bytes(2, "big"))
    reply = b""
    while len(reply) < 10:
        chunk = s.recv(10 - len(reply))
        assert chunk, "closed during the SOCKS5 reply"
        reply += chunk
    assert reply[1] == 0, reply
    return s


def _socks5_greeted(addr, src=None):
    """A connection that said its SOCKS5 greeting and got the answer, so
    the gateway holds it; or None when the gateway closed it at once."""
    gh, gp = addr.rsplit(":", 1)
    s = socket.create_connection((gh, int(gp)), timeout=5,
                                 source_address=(src, 0) if src else None)
    try:
        s.sendall(b"\x05\x01\x00")
        if s.recv(2) == b"\x05\x00":
            return s
    except (ConnectionResetError, BrokenPipeError):
        pass
    s.close()
    return None


def test_connections_over_max_are_refused(mounts, tmp_path, peer_set, ups):
    d, addr = gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups,
                             "max_connections = 2\n")
    held = [_socks5_greeted(addr) for _ in range(2)]
    try:
        assert all(held)
        assert _socks5_greeted(addr) is None
        held.pop().close()
        ok = False
        for _ in range(50):  # the close is seen by the gateway's loop soon
            s = _socks5_greeted(addr)
            if s:
                s.close()
                ok = True
                break
            time.sleep(0.05)
        assert ok
    finally:
        for s in held:
            s.close()


def test_per_client_limit(mounts, tmp_path, peer_set, ups):
    d, addr = gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups, "per_client = 2\n")
    held = [_socks5_greeted(addr) for _ in range(2)]
    try:
        assert all(held)
        assert _socks5_greeted(addr) is None
        other = _socks5_greeted(addr, src="127.0.0.2")  # another client address
        assert other
        other.close()
    finally:
        for s in held:
            s.close()


def test_checks_leave_two_descriptors_per_gateway_connection(mounts, tmp_path, peer_set):
    tmp = str(tmp_path)
    maxes = [concurrency_max_with(mounts, tmp, peer_set.judge, extra)
             for extra in ("", "\n[gateway]\nlisten = 127.0.0.1:%d\nmax_connections = 3000\n"
                           % peers.free_port("127.0.0.1"))]
    assert maxes[0] - maxes[1] >= 6000, maxes


def test_gateway_takes_at_most_half_the_spare_descriptors(mounts, tmp_path, peer_set):
    """max_connections beyond what the open-file limit allows is clamped
    (2 fds a connection, at most half of what the daemon can spare), and
    the checks keep the other half."""
    tmp = str(tmp_path)
    conf = write_config(tmp, peer_set.judge, write_list(tmp, ""),
                        extra="\n[gateway]\nlisten = 127.0.0.1:%d\nmax_connections = 1000000\n"
                        % peers.free_port("127.0.0.1"),
                        edits=[("concurrency = 100\n", "concurrency = 1000000\n")])
    d = mounts.new(conf).start()
    st = d.read_json("stat.json")
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    share = st["gateway"]["max_connections"]
    assert 0 < share <= (limit - 512) // 4, (share, limit)
    assert st["engine"]["concurrency_max"] >= (limit - 512) // 2 - 600, st["engine"]
    assert "clamped" in d.log()
    d.stop()


def test_half_close_kept(mounts, tmp_path, peer_set, ups):
    """The client sends, then shuts its write side; the target answers
    after that EOF, and the client still gets the answer."""
    def count_then_answer(conn):
        n = 0
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            n += len(chunk)
        conn.sendall(b"got %d\n" % n)

    target = Target(count_then_answer)
    try:
        d, addr = gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups)
        # Through danted (SOCKS4), which keeps half-closed tunnels itself
        # (microsocks and tinyproxy end both ways at the first EOF).
        s = socks5_open(addr, target.host, target.port, "u-proto-socks4", "x")
        s.sendall(b"x" * 100000)
        s.shutdown(socket.SHUT_WR)
        assert _read_all(s) == b"got 100000\n"
        s.close()
    finally:
        target.stop()


def test_idle_tunnel_closed(mounts, tmp_path, peer_set, ups):
    silent = Target(lambda conn: conn.recv(1))  # waits for a byte that never comes
    try:
        d, addr = gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups,
                                 "idle_timeout_s = 1\n")
        s = socks5_open(addr, silent.host, silent.port)
        t0 = time.monotonic()
        assert _read_all(s) == b""
        assert time.monotonic() - t0 < 4
        s.close()
    finally:
        silent.stop()


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_slow_reader_does_not_fill_memory(mounts, tmp_path, peer_set, ups):
    """A target that sends 256 MB to a client that reads nothing for a
    while: the relay stops reading the upstream (watermarks), so the
    daemon's memory grows by far less than what was offered."""
    chunk = b"\0" * (1 << 20)

    def flood(conn):
        for _ in range(256):
            conn.sendall(chunk)

    target = Target(flood)
    try:
        d, addr = gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups)
        pid = d.proc.pid
        before = _rss_kb(pid)
        s = socks5_open(addr, target.host, target.port, "u-proto-socks5", "x")
        time.sleep(2)  # the flood runs into the relay while nobody reads
        grown = _rss_kb(pid) - before
        got = 0
        while got < 256 << 20:
            data = s.recv(1 << 20)
            if not data:
                break
            got += len(data)
        s.close()
        assert got == 256 << 20
        assert grown < 32 * 1024, "daemon grew by %d kB with a stalled reader" % grown
    finally:
        target.stop()


def test_upstream_given_by_name(mounts, tmp_path, peer_set):
    """An upstream listed by host name (localhost) carries connections: the
    gateway resolves the upstream's name (never the target's)."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    try:
        p = u._keep(start_microsocks_out(tmp, "127.0.0.1", S5_OUT))
        p.line = p.uri = p.uri.replace("127.0.0.1", "localhost")
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u)
        for scheme in ("socks5h", "http"):
            rc, out, err = curl("-x", "%s://%s" % (scheme, addr), peer_set.judge_url)
            assert rc == 0, err
            assert remote_addr(out) == S5_OUT
    finally:
        u.stop()


def test_ejected_by_traffic_then_back_by_its_recheck(mounts, tmp_path, peer_set):
    """An upstream that stops answering (SIGSTOP: it still accepts, says
    nothing) fails real traffic and is ejected at once (eject_after = 1)
    while every client gets its answer through the other; its re-check,
    queued at the ejection, finds it answering again once it is resumed,
    and it is back in the live set and carrying connections: the checker
    alone decided both ways."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    stopped = None
    try:
        u._keep(start_microsocks_out(tmp, "127.0.0.57", S5_OUT))
        flaky = u._keep(start_microsocks_out(tmp, "127.0.0.58", S5_AUTH_OUT))
        port = peers.free_port("127.0.0.1")
        # The re-check must outlast the pause between the ejection and
        # the resume.
        conf = write_config(tmp, peer_set.judge, write_list(tmp, u.lines()),
                            extra="\n[gateway]\nlisten = 127.0.0.1:%d\npolicy = round_robin\n"
                                  "eject_after = 1\nretries = 1\nhandshake_timeout_s = 4\n"
                                  % port,
                            edits=[("timeout_ms = 2000\n", "timeout_ms = 15000\n")])
        d = mounts.new(conf).start()
        d.sync()
        addr = "127.0.0.1:%d" % port
        os.kill(flaky.proc.pid, signal.SIGSTOP)
        stopped = flaky
        for _ in range(4):
            rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
            assert rc == 0, err
            assert remote_addr(out) == S5_OUT
        wait_until(lambda: flaky.uri not in d.live(), 10, "the silent upstream ejected")
        ej = d.read_json("stat.json")["ejections"]
        assert ej["by"]["gateway"] == 1 and ej["last"][0]["uri"] == flaky.uri, ej
        os.kill(flaky.proc.pid, signal.SIGCONT)
        stopped = None
        wait_until(lambda: flaky.uri in d.live(), 30, "the upstream back after its re-check")
        exits = set()
        for _ in range(4):
            rc, out, err = curl("-x", "socks5h://" + addr, peer_set.judge_url)
            assert rc == 0, err
            exits.add(remote_addr(out))
        assert exits == {S5_OUT, S5_AUTH_OUT}
    finally:
        if stopped:
            os.kill(stopped.proc.pid, signal.SIGCONT)
        u.stop()


@pytest.mark.parametrize("auth", [False, True])
def test_plain_http_upstream_forwards_absolute_form(mounts, tmp_path, peer_set, auth):
    """An HTTP proxy listed http:// (proven to forward, not to CONNECT) is
    an upstream for absolute-form requests: the gateway hands it the
    request in absolute form, with the proxy's own credentials (tinyproxy
    BasicAuth), and the answer comes back through it (its Via header at
    the judge says it forwarded, no tunnel)."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    try:
        p = u._keep(start_tinyproxy_plain(tmp, "127.0.0.86", HTTPS_OUT,
                                          *(("dora", "pw7") if auth else ())))
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u)
        assert d.live("http/live.txt") == {p.uri} and d.live("https/live.txt") == set()
        for _ in range(3):
            rc, out, err = curl("-x", "http://" + addr, peer_set.judge_url)
            assert rc == 0, err
            assert peers.JUDGE_TOKEN in out, out
            assert remote_addr(out) == HTTPS_OUT
            assert judge_header(out, "VIA"), out
    finally:
        u.stop()


def test_tunnel_falls_back_to_an_http_proxy_not_proven_to_connect(mounts, tmp_path, peer_set):
    """A pool whose only HTTP proxy was listed http:// (forwarding proven,
    CONNECT never tried) still carries SOCKS5 and CONNECT clients: with no
    upstream proven to tunnel, the gateway asks that one to CONNECT."""
    tmp = str(tmp_path)
    u = Upstreams.__new__(Upstreams)
    u.all = []
    try:
        u._keep(start_tinyproxy_plain(tmp, "127.0.0.87", HTTPS_OUT))
        d, addr = gateway_daemon(mounts, tmp, peer_set.judge, u)
        for scheme, extra in (("socks5h", ()), ("http", ("--proxytunnel",))):
            rc, out, err = curl("-x", "%s://%s" % (scheme, addr), *extra, peer_set.judge_url)
            assert rc == 0, (scheme, err)
            assert remote_addr(out) == HTTPS_OUT
            assert judge_header(out, "VIA") is None, out  # a tunnel: nothing added
    finally:
        u.stop()
