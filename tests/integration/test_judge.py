"""`proxyfs judge` seen from outside: what curl gets directly and through
tinyproxy, the methods it refuses, its exit statuses.

The judge listens on 127.0.0.1 port 0 (the port it was given is read from
its "listening on" line). tinyproxy forwards from 127.0.0.2 (its `Bind`),
so the judge must report that address, and tinyproxy's Via header unless
DisableViaHeader is set.
"""

import os
import re
import signal
import socket
import subprocess
import time

import peers
import pytest

from conftest import wait_until

START_TIMEOUT = 10.0
EXIT_TIMEOUT = 10.0
PROXY_OUT = "127.0.0.2"      # tinyproxy's outgoing address (Bind)
LISTENING = re.compile(r"^proxyfs judge: listening on (\[[^\]]+\]|[^\s:]+):(\d+)$", re.M)
PROXY_HEADERS = ("via", "x-forwarded-for", "forwarded", "x-real-ip", "proxy-connection",
                 "client-ip", "x-proxy-id", "x-tinyproxy", "proxy-agent")


class Judge:
    """One `proxyfs judge` process; host and port once it listens."""

    def __init__(self, binary, tmp, listen="127.0.0.1:0"):
        self.logpath = os.path.join(tmp, "judge-%d.log" % time.monotonic_ns())
        with open(self.logpath, "wb") as log:
            self.proc = subprocess.Popen([binary, "judge", "--listen", listen],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        m = wait_until(self._listening, START_TIMEOUT, "the judge's listening line")
        self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
        self.authority = "%s:%d" % (m.group(1), self.port)
        self.url = "http://%s/" % self.authority

    def _listening(self):
        m = LISTENING.search(self.log())
        if not m and self.proc.poll() is not None:
            pytest.fail("the judge exited with %s before listening; log:\n%s"
                        % (self.proc.returncode, self.log()))
        return m

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        """Sends sig and returns the exit status."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the judge did not exit within %.0fs of signal %d" % (EXIT_TIMEOUT, sig))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT)


@pytest.fixture
def judge(binary, tmp_path):
    j = Judge(binary, str(tmp_path))
    try:
        yield j
        if j.proc.poll() is None:
            assert j.stop() == 0, "the judge exited non-zero on SIGTERM; log:\n" + j.log()
    finally:
        j.kill()


def start_bound_tinyproxy(tmp, listen, via=True):
    """tinyproxy listening on listen and connecting out from PROXY_OUT;
    via=False turns off its proxy headers."""
    last = None
    for _ in range(5):
        port = peers.free_port(listen)
        conf = os.path.join(tmp, "tinyproxy-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("Port %d\nListen %s\nBind %s\nTimeout 30\nLogLevel Info\n"
                    "PidFile \"%s\"\nMaxClients 20\nAllow 127.0.0.0/8\n"
                    % (port, listen, PROXY_OUT, os.path.join(tmp, "tinyproxy-%d.pid" % port)))
            if not via:
                f.write("DisableViaHeader Yes\nXTinyproxy No\n")
        peer = peers.Peer("tinyproxy", listen, port, ["tinyproxy", "-d", "-c", conf],
                          os.path.join(tmp, "tinyproxy-%d.log" % port),
                          uri="http://%s:%d" % (listen, port))
        try:
            return peer.start()
        except peers.PeerError as e:
            last = e
    raise last


@pytest.fixture
def tinyproxy(tmp_path):
    p = start_bound_tinyproxy(str(tmp_path), "127.0.0.41")
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def tinyproxy_no_via(tmp_path):
    p = start_bound_tinyproxy(str(tmp_path), "127.0.0.42", via=False)
    try:
        yield p
    finally:
        p.stop()


def curl(*args, timeout=5):
    """curl -sS ARGS: (exit status, response head, body)."""
    p = subprocess.run(["curl", "-sS", "--max-time", str(timeout), "-D", "-", *args],
                       capture_output=True, timeout=timeout + 5)
    out = p.stdout.decode(errors="replace")
    head, _, body = out.partition("\r\n\r\n")
    return p.returncode, head, body


def status_of(head):
    return int(head.split(" ", 2)[1])


def head_field(head, name):
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def answer(body):
    """The judge's answer as (items, headers): items maps each first word to
    the rest of its line; headers is a list of (name, value)."""
    lines = body.splitlines()
    assert lines and lines[0] == "proxyfs-judge 1", "not the judge's answer: %r" % body
    items, headers = {}, []
    for line in lines[1:]:
        key, _, rest = line.partition(" ")
        if key == "header":
            name, _, value = rest.partition(": ")
            headers.append((name, value))
        else:
            items[key] = rest
    return items, headers


def raw_request(host, port, data, timeout=5):
    """Sends data and reads until the judge closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode(errors="replace")
            out += chunk


def test_direct_answer_echoes_address_and_headers(judge):
    rc, head, body = curl("-A", "proxyfs-test/1", "-H", "X-Test: hello world",
                          judge.url + "some/path?q=1")
    assert rc == 0, body
    assert status_of(head) == 200
    assert head_field(head, "Content-Type").startswith("text/plain")
    assert head_field(head, "Cache-Control") == "no-store"
    items, headers = answer(body)
    assert items["remote_addr"] == "127.0.0.1"
    assert 0 < int(items["remote_port"]) < 65536
    assert items["method"] == "GET"
    assert items["uri"] == "/some/path?q=1"
    assert ("Host", judge.authority) in headers
    assert ("User-Agent", "proxyfs-test/1") in headers
    assert ("X-Test", "hello world") in headers
    assert ("Accept", "*/*") in headers
    assert not [h for h in headers if h[0].lower() in PROXY_HEADERS]


def test_through_tinyproxy_shows_its_address_and_via(judge, tinyproxy):
    rc, head, body = curl("-x", tinyproxy.uri, judge.url + "through")
    assert rc == 0, body + "\ntinyproxy log:\n" + tinyproxy.log()
    assert status_of(head) == 200
    items, headers = answer(body)
    assert items["remote_addr"] == PROXY_OUT
    via = [v for n, v in headers if n.lower() == "via"]
    assert len(via) == 1 and "tinyproxy" in via[0], headers


def test_through_tinyproxy_without_via_shows_no_proxy_header(judge, tinyproxy_no_via):
    rc, head, body = curl("-x", tinyproxy_no_via.uri, judge.url)
    assert rc == 0, body + "\ntinyproxy log:\n" + tinyproxy_no_via.log()
    items, headers = answer(body)
    assert items["remote_addr"] == PROXY_OUT
    assert not [h for h in headers if h[0].lower() in PROXY_HEADERS], headers


def test_absolute_uri_is_answered(judge):
    # What a proxy that forwards the request line unchanged sends.
    out = raw_request(judge.host, judge.port,
                      b"GET http://judge.example/abs HTTP/1.1\r\nHost: judge.example\r\n"
                      b"Via: 1.1 someproxy\r\n\r\n")
    head, _, body = out.partition("\r\n\r\n")
    assert status_of(head) == 200, out
    items, headers = answer(body)
    assert items["uri"] == "http://judge.example/abs"
    assert items["remote_addr"] == "127.0.0.1"
    assert ("Via", "1.1 someproxy") in headers


def test_control_characters_stay_on_their_line(judge):
    out = raw_request(judge.host, judge.port,
                      b"GET / HTTP/1.0\r\nX-Odd: a\x01b\x7fc\r\n\r\n")
    items, headers = answer(out.partition("\r\n\r\n")[2])
    assert ("X-Odd", "a?b?c") in headers


def test_head_has_no_body(judge):
    out = raw_request(judge.host, judge.port, b"HEAD / HTTP/1.0\r\n\r\n")
    head, _, body = out.partition("\r\n\r\n")
    assert status_of(head) == 200
    assert body == ""
    assert int(head_field(head, "Content-Length")) > 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405(judge, method):
    rc, head, body = curl("-X", method, "-d", "a=b", judge.url)
    assert rc == 0, body
    assert status_of(head) == 405
    assert head_field(head, "Allow") == "GET, HEAD"
    assert not body.startswith("proxyfs-judge")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_0(judge, sig):
    rc, _, _ = curl(judge.url)
    assert rc == 0
    assert judge.stop(sig) == 0, judge.log()
    assert not peers.port_accepts(judge.host, judge.port)


def test_ipv6_listen(binary, tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    j = Judge(binary, str(tmp_path), "[::1]:0")
    try:
        assert j.authority.startswith("[::1]:")
        rc, _, body = curl("-g", j.url)
        assert rc == 0, body
        assert answer(body)[0]["remote_addr"] == "::1"
        assert j.stop() == 0
    finally:
        j.kill()


def run_judge(binary, *args):
    return subprocess.run([binary, "judge", *args], capture_output=True, timeout=10,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [[], ["--listen"], ["--listen", "127.0.0.1"],
                                  ["--listen", "::1:80"], ["--listen", "127.0.0.1:99999"],
                                  ["--listen", "no-such-host.invalid:80"],
                                  ["--listen", "127.0.0.1:0", "extra"], ["--bogus"]])
def test_usage_errors_exit_2(binary, args):
    p = run_judge(binary, *args)
    assert p.returncode == 2, p.stderr
    assert p.stderr


def test_port_in_use_exits_1(binary):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = run_judge(binary, "--listen", "127.0.0.1:%d" % s.getsockname()[1])
    assert p.returncode == 1
    assert b"in use" in p.stderr


def test_help(binary):
    p = run_judge(binary, "--help")
    assert p.returncode == 0
    assert b"--listen ADDR:PORT" in p.stdout
    assert b"proxyfs-judge" in p.stdout
