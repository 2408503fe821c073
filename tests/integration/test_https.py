"""An https judge: `proxyfs check` reaches it through real proxies over
verified TLS, and a proxy that answers TLS itself (a man in the middle
with a certificate from another CA) is dead.

The peers are this module's own: a test CA and a second, untrusted one
(certs.py, made with the openssl command), an HTTPS judge and the MITM
served from threads of this process, and Debian's tinyproxy (CONNECT
allowed to the judge's port only, and one with CONNECT disabled),
microsocks (with and without a password) and danted as SOCKS4. proxyfs is
told to trust the test CA by `--ca-file`, or by SSL_CERT_FILE, which
OpenSSL's default verify paths honour for the checks (not for the direct
probe of the judge, made with libcurl: that run skips the probe).
"""

import http.server
import os
import re
import socketserver
import ssl
import subprocess
import threading

import pytest

import certs
import peers

TOKEN = "PROXYFS-HTTPS-JUDGE-OK"
CHECK_TIMEOUT = 60.0


def _bind_retry(make, host, tries=20):
    """make(port) builds a server bound to host:port; retried while the
    port chosen turns out to be taken."""
    last = None
    for _ in range(tries):
        try:
            return make(peers.free_port(host))
        except OSError as e:
            last = e
    raise last


class _JudgeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "proxyfs-test-https-judge"

    def do_GET(self):
        lines = [TOKEN, "REMOTE_ADDR = %s" % self.client_address[0]]
        lines += ["HTTP_%s = %s" % (k.upper().replace("-", "_"), v)
                  for k, v in self.headers.items()]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class _TLSJudge(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """The HTTPS judge: the TLS handshake runs in the request's thread, so
    a client that stalls or fails it holds up no one."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, ctx):
        self.tls = ctx
        super().__init__(addr, _JudgeHandler)

    def finish_request(self, request, client_address):
        request.settimeout(10)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except OSError:
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()


def _read_head(sock, limit=65536):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class _MitmHandler(socketserver.BaseRequestHandler):
    """Grants any CONNECT, then plays the judge itself over TLS with its
    own certificate: a client that checks nothing reads the token."""

    def handle(self):
        self.request.settimeout(10)
        try:
            if not _read_head(self.request).startswith(b"CONNECT "):
                return
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with self.server.tls.wrap_socket(self.request, server_side=True) as conn:
                _read_head(conn)
                body = ("%s\nREMOTE_ADDR = 10.1.2.3\n" % TOKEN).encode()
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
                             + body)
        except OSError:
            pass


class _Mitm(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, ctx):
        self.tls = ctx
        super().__init__(addr, _MitmHandler)


class _Served:
    """A socketserver run by a thread of this process until stop()."""

    def __init__(self, server):
        self.server = server
        self.host, self.port = server.server_address[:2]
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _server_ctx(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def _start_tinyproxy(tmp, host, connect_port):
    """tinyproxy allowing CONNECT to connect_port only (0: no CONNECT)."""
    def make(port):
        conf = os.path.join(tmp, "tinyproxy-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("Port %d\nListen %s\nTimeout 30\nLogLevel Info\nMaxClients 50\n"
                    "Allow 127.0.0.0/8\nConnectPort %d\n" % (port, host, connect_port))
        peer = peers.Peer("tinyproxy", host, port, ["tinyproxy", "-d", "-c", conf],
                          os.path.join(tmp, "tinyproxy-%d.log" % port),
                          line="http://%s:%d" % (host, port),
                          uri="http://%s:%d" % (host, port))
        try:
            return peer.start()
        except peers.PeerError as e:
            raise OSError(str(e))
    return _bind_retry(make, host, tries=5)


class HttpsPeers:
    """The CAs, the judge, the MITM and the proxies; alive and dead are the
    lines of the proxies that must be found alive and dead."""

    def __init__(self, tmp):
        self.stoppable = []
        self.ca = certs.CA(tmp, "trusted")
        self.stranger = certs.CA(tmp, "stranger")
        names = ["IP:127.0.0.1", "DNS:localhost"]
        judge_ctx = _server_ctx(*self.ca.issue("judge", names))
        mitm_ctx = _server_ctx(*self.stranger.issue("mitm", names))
        self.judge = self._keep(_Served(_bind_retry(
            lambda port: _TLSJudge(("127.0.0.1", port), judge_ctx), "127.0.0.1")))
        self.judge_url = "https://127.0.0.1:%d/judge" % self.judge.port
        self.mitm = self._keep(_Served(_bind_retry(
            lambda port: _Mitm(("127.0.0.46", port), mitm_ctx), "127.0.0.46")))
        self.mitm.line = "http://127.0.0.46:%d" % self.mitm.port
        self.tinyproxy = self._keep(_start_tinyproxy(tmp, "127.0.0.41", self.judge.port))
        self.no_connect = self._keep(_start_tinyproxy(tmp, "127.0.0.42", 0))
        self.socks5 = self._keep(peers.start_microsocks(tmp, "127.0.0.43"))
        self.socks5_auth = self._keep(peers.start_microsocks(tmp, "127.0.0.44", "bob", "pw1"))
        self.socks4 = self._keep(peers.start_danted(tmp, "127.0.0.45"))
        self.alive = [self.tinyproxy.line, self.socks5.line, self.socks5_auth.line,
                      self.socks4.line]
        self.dead = [self.mitm.line, self.no_connect.line]

    def _keep(self, peer):
        self.stoppable.append(peer)
        return peer

    def stop(self):
        for p in reversed(self.stoppable):
            p.stop()


@pytest.fixture(scope="module")
def https_peers(tmp_path_factory):
    hp = None
    try:
        hp = HttpsPeers(str(tmp_path_factory.mktemp("https")))
        yield hp
    finally:
        if hp is not None:
            hp.stop()


def curl(url, proxy=None, cacert=None, tunnel=False, timeout=5):
    argv = ["curl", "-sS", "--max-time", str(timeout)]
    if proxy:
        argv += ["-x", proxy]
    if tunnel:
        argv.append("-p")
    if cacert:
        argv += ["--cacert", cacert]
    p = subprocess.run(argv + [url], capture_output=True, timeout=timeout + 5)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def test_https_peers_behave(https_peers):
    """curl trusting the test CA reaches the judge directly and through
    every live proxy; the MITM serves the token to a client that trusts
    its CA, and fails one that trusts ours: so a dead MITM below is
    proxyfs verifying, not the MITM failing."""
    hp = https_peers
    rc, out = curl(hp.judge_url, cacert=hp.ca.cert)
    assert rc == 0 and TOKEN in out, "judge: curl %d: %s" % (rc, out)
    for line in hp.alive:
        rc, out = curl(hp.judge_url, proxy=line, cacert=hp.ca.cert, tunnel=True)
        assert rc == 0 and TOKEN in out, "%s: curl %d: %s" % (line, rc, out)
    rc, out = curl(hp.judge_url, proxy=hp.mitm.line, cacert=hp.stranger.cert, tunnel=True)
    assert rc == 0 and TOKEN in out, "the MITM does not answer: curl %d: %s" % (rc, out)
    rc, out = curl(hp.judge_url, proxy=hp.mitm.line, cacert=hp.ca.cert, tunnel=True)
    assert rc != 0 and TOKEN not in out, "curl trusted the MITM: %s" % out
    rc, out = curl(hp.judge_url, proxy=hp.no_connect.line, cacert=hp.ca.cert, tunnel=True)
    assert TOKEN not in out, "CONNECT through the no-CONNECT tinyproxy worked"


def run_check(binary, hp, tmp, extra=(), cert_file=None):
    """`proxyfs check` over every proxy, with SSL_CERT_FILE set to
    cert_file or not set at all; returns (stdout lines, stderr)."""
    lst = os.path.join(tmp, "https-list.txt")
    with open(lst, "w") as f:
        f.write("\n".join(hp.alive + hp.dead) + "\n")
    argv = [binary, "check", "--judge", hp.judge_url, "--expect", TOKEN, "--timeout", "3000",
            "--connect-timeout", "1000", "--retries", "0", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    if cert_file:
        env["SSL_CERT_FILE"] = cert_file
    try:
        p = subprocess.run(argv + [lst], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=CHECK_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("proxyfs check did not finish within %.0fs" % CHECK_TIMEOUT)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, "proxyfs check exited %d:\n%s" % (p.returncode, err[-3000:])
    return p.stdout.decode().splitlines(), err


def _result_counts(err):
    """The counts of the summary's 'results:' line, by result name."""
    m = re.search(r"results:((?: \w+ \d+)+)", err)
    assert m, "no results line in:\n" + err[-2000:]
    words = m.group(1).split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}


@pytest.mark.parametrize("trust", ["ca-file", "SSL_CERT_FILE"])
def test_check_through_proxies_to_an_https_judge(binary, https_peers, tmp_path, trust):
    """Every proxy that tunnels to the judge is alive; the MITM fails TLS
    verification and the tinyproxy without CONNECT refuses the tunnel."""
    hp = https_peers
    if trust == "ca-file":
        lines, err = run_check(binary, hp, str(tmp_path), ["--ca-file", hp.ca.cert])
    else:
        lines, err = run_check(binary, hp, str(tmp_path), ["--no-probe"], hp.ca.cert)
    assert set(lines) == set(hp.alive), "alive: %s, expected %s\nstderr:\n%s" % (
        sorted(lines), sorted(hp.alive), err[-3000:])
    counts = _result_counts(err)
    assert counts.get("ok") == len(hp.alive), err[-2000:]
    assert counts.get("tls_error") == 1, "the MITM is not a TLS failure:\n" + err[-2000:]


def test_untrusted_judge_leaves_nothing_alive(binary, https_peers, tmp_path):
    """Without the test CA the real judge's certificate is refused like
    the MITM's: every tunnel that opens ends in a TLS failure."""
    hp = https_peers
    lines, err = run_check(binary, hp, str(tmp_path), ["--no-probe"])
    assert lines == [], "alive without trusting the judge: %s\n%s" % (lines, err[-2000:])
    counts = _result_counts(err)
    assert counts.get("tls_error") == len(hp.alive) + 1, err[-2000:]


def test_mount_lists_tls_tunnels_under_https(binary, https_peers, tmp_path):
    """Mounted with an https judge, an HTTP proxy that carried verified TLS
    to it is listed under https/ (and http/), printed http://; SOCKS
    proxies stay in their own folders; the MITM is in none."""
    from conftest import Mounts, write_list

    hp = https_peers
    tmp = str(tmp_path)
    lst = write_list(tmp, "\n".join(hp.alive + hp.dead) + "\n")
    conf = os.path.join(tmp, "https.ini")
    with open(conf, "w") as f:
        f.write("[proxyfs]\ndb = %s\n[check]\njudge = %s\nexpect = %s\nca_file = %s\n"
                "timeout_ms = 3000\nconnect_timeout_ms = 1000\nretries = 0\n"
                "[source:tls]\nurl = %s\n"
                % (os.path.join(tmp, "proxyfs.db"), hp.judge_url, TOKEN, hp.ca.cert, lst))
    m = Mounts(binary, tmp)
    try:
        d = m.new(conf).start()
        d.sync()
        assert d.live("https/live.txt") == {hp.tinyproxy.line}
        assert hp.tinyproxy.line in d.live("http/live.txt")
        assert d.live() == set(hp.alive)
        assert hp.mitm.line not in d.live()
        d.stop()
    finally:
        m.cleanup()
