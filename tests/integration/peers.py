"""peers: the servers the integration suite checks proxies against.

Every peer runs as a child process in the foreground on a loopback address
and a port below 32768, is ready when its port accepts a connection, and is
stopped by its PID (never through an init script: those stop every instance
on the machine). Real proxies come from Debian (tinyproxy, microsocks,
danted); the judge and the misbehaving servers are this file run as a
script:

    peers.py judge HOST PORT      answers every GET with 200, JUDGE_TOKEN and
                                  the caller's address and headers
    peers.py liar HOST PORT       answers anything with 200 and a wrong page
    peers.py blackhole HOST PORT  accepts and never answers

Nothing here knows about proxyfs.
"""

import http.server
import os
import random
import select
import signal
import socket
import socketserver
import subprocess
import sys
import time

JUDGE_TOKEN = "PROXYFS-JUDGE-OK"
PYTHON = "/usr/bin/python3"
PORT_LOW, PORT_HIGH = 20000, 32000


def free_port(host):
    """A port below 32768 that host:port can bind to right now."""
    for _ in range(200):
        port = random.randrange(PORT_LOW, PORT_HIGH)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port on %s" % host)


def port_accepts(host, port, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PeerError(RuntimeError):
    pass


def proxysim_bin():
    """tests/sim/proxysim as built: PROXYSIM_BIN, default
    build/tests/sim/proxysim, relative to the repository."""
    path = os.environ.get("PROXYSIM_BIN", "build/tests/sim/proxysim")
    if not os.path.isabs(path):
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.path.join(repo, path)
    return path


def start_ready(argv, logpath, timeout):
    """Starts argv with "--ready-fd FD" added, in its own session, its
    output appended to logpath, and waits for it to write to that pipe.
    Returns (the process, what it wrote: b"ready\n" when it got ready);
    the caller stops a process that said anything else."""
    rfd, wfd = os.pipe()
    with open(logpath, "ab") as log:
        proc = subprocess.Popen(argv + ["--ready-fd", str(wfd)], pass_fds=(wfd,),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    os.close(wfd)
    try:
        ready, _, _ = select.select([rfd], [], [], timeout)
        said = os.read(rfd, 16) if ready else b""
    finally:
        os.close(rfd)
    return proc, said


class Peer:
    """One child process serving on host:port. line is how a proxy list
    names it; uri is how proxyfs prints it (None for non-proxies)."""

    def __init__(self, name, host, port, argv, logpath, line=None, uri=None):
        self.name = name
        self.host = host
        self.port = port
        self.argv = argv
        self.logpath = logpath
        self.line = line
        self.uri = uri
        self.proc = None

    def start(self, timeout=10.0):
        log = open(self.logpath, "ab")
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError("%s exited with %s before serving; log:\n%s"
                                % (self.name, self.proc.returncode, self.log()))
            if port_accepts(self.host, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise PeerError("%s did not accept on %s:%d within %.0fs; log:\n%s"
                        % (self.name, self.host, self.port, timeout, self.log()))

    def stop(self):
        """Stops the process (its whole session: danted forks children)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # danted's children may outlive their parent for a moment.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def __repr__(self):
        return "<peer %s %s:%d>" % (self.name, self.host, self.port)


def _start_with_retry(make, tries=5):
    """make() builds a Peer on a fresh port; retried when the port was taken
    between choosing and binding it."""
    last = None
    for _ in range(tries):
        peer = make()
        try:
            return peer.start()
        except PeerError as e:
            last = e
    raise last


def start_script_peer(kind, tmp, host="127.0.0.1"):
    """The judge, the liar or the blackhole, served by this file."""
    def make():
        port = free_port(host)
        return Peer(kind, host, port, [PYTHON, os.path.abspath(__file__), kind, host, str(port)],
                    os.path.join(tmp, "%s-%d.log" % (kind, port)),
                    line="http://%s:%d" % (host, port), uri="http://%s:%d" % (host, port))
    return _start_with_retry(make)


def start_tinyproxy(tmp, host):
    def make():
        port = free_port(host)
        conf = os.path.join(tmp, "tinyproxy-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("Port %d\nListen %s\nTimeout 30\nLogLevel Info\n"
                    "PidFile \"%s\"\nMaxClients 200\nAllow 127.0.0.0/8\n"
                    % (port, host, os.path.join(tmp, "tinyproxy-%d.pid" % port)))
        # Listed bare (host:port): the source's protocol, http, applies.
        return Peer("tinyproxy", host, port, ["tinyproxy", "-d", "-c", conf],
                    os.path.join(tmp, "tinyproxy-%d.log" % port),
                    line="%s:%d" % (host, port), uri="http://%s:%d" % (host, port))
    return _start_with_retry(make)


def start_microsocks(tmp, host, user=None, password=None):
    def make():
        port = free_port(host)
        argv = ["microsocks", "-i", host, "-p", str(port)]
        cred = ""
        if user is not None:
            argv += ["-u", user, "-P", password]
            cred = "%s:%s@" % (user, password)
        uri = "socks5://%s%s:%d" % (cred, host, port)
        return Peer("microsocks" + ("-auth" if user else ""), host, port, argv,
                    os.path.join(tmp, "microsocks-%d.log" % port), line=uri, uri=uri)
    return _start_with_retry(make)


def start_danted(tmp, host):
    def make():
        port = free_port(host)
        conf = os.path.join(tmp, "danted-%d.conf" % port)
        with open(conf, "w") as f:
            # Each keyword of a rule on its own line: danted rejects
            # "from: A to: B" written on one line in some builds.
            f.write("logoutput: stderr\n"
                    "internal: %s port = %d\n"
                    "external: 127.0.0.1\n"
                    "socksmethod: none\n"
                    "clientmethod: none\n"
                    "user.privileged: root\n"
                    "user.unprivileged: nobody\n"
                    "client pass {\n\tfrom: 127.0.0.0/8\n\tto: 0.0.0.0/0\n}\n"
                    "socks pass {\n\tfrom: 127.0.0.0/8\n\tto: 0.0.0.0/0\n}\n"
                    % (host, port))
        uri = "socks4://%s:%d" % (host, port)
        return Peer("danted", host, port,
                    ["danted", "-f", conf, "-p", os.path.join(tmp, "danted-%d.pid" % port)],
                    os.path.join(tmp, "danted-%d.log" % port), line=uri, uri=uri)
    return _start_with_retry(make)


class ClosedPort:
    """A port nothing listens on: bound once to learn it is free, then closed."""

    def __init__(self, host):
        self.name = "closed"
        self.host = host
        self.port = free_port(host)
        self.line = self.uri = "http://%s:%d" % (host, self.port)

    def stop(self):
        pass


def curl_through(proxy_uri, url, timeout=5, tunnel=False):
    """Fetches url through proxy_uri with curl (through CONNECT if tunnel);
    returns (exit status, body and errors)."""
    argv = ["curl", "-sS", "--max-time", str(timeout), "-x", proxy_uri, url]
    if tunnel:
        argv.insert(1, "-p")
    p = subprocess.run(argv, capture_output=True, timeout=timeout + 5)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


# --- the servers this file runs as a script ---

class _JudgeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "proxyfs-test-judge"

    def do_GET(self):
        lines = [JUDGE_TOKEN, "REMOTE_ADDR = %s" % self.client_address[0],
                 "REMOTE_PORT = %d" % self.client_address[1],
                 "REQUEST_URI = %s" % self.path]
        for name, value in self.headers.items():
            lines.append("HTTP_%s = %s" % (name.upper().replace("-", "_"), value))
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class _LiarHandler(socketserver.BaseRequestHandler):
    """200 and a page without the judge's token, whatever was asked."""

    def handle(self):
        self.request.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = self.request.recv(4096)
                if not chunk:
                    break
                data += chunk
            body = b"<html>not the page you asked for</html>\n"
            self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                                 % len(body) + body)
        except OSError:
            pass


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def _serve_blackhole(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(1024)
    held = []
    while True:
        conn, _ = s.accept()
        held.append(conn)  # kept open, never read from, never answered


def main(argv):
    if len(argv) != 4 or argv[1] not in ("judge", "liar", "blackhole"):
        sys.stderr.write("usage: peers.py judge|liar|blackhole HOST PORT\n")
        return 2
    kind, host, port = argv[1], argv[2], int(argv[3])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if kind == "judge":
        _Server((host, port), _JudgeHandler).serve_forever()
    elif kind == "liar":
        _TcpServer((host, port), _LiarHandler).serve_forever()
    else:
        _serve_blackhole(host, port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
