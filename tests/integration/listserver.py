"""listserver: proxy lists served over HTTP and HTTPS on loopback, for tests.

A helper, not a test. A ListServer answers GET and HEAD for the paths it
is given, each with its own body, status, headers, gzip encoding, redirect,
delay, ETag and Last-Modified (a matching If-None-Match or If-Modified-Since
gets 304). It listens on 127.0.0.1 at a port the kernel chooses, and is
bound and listening when the constructor returns, so no readiness polling is
needed. With tls=True it serves HTTPS with a certificate for 127.0.0.1 and
localhost signed by a throwaway test CA that the openssl CLI makes in a
temporary directory; point the client at server.ca_file.

    with ListServer(tls=True) as srv:
        srv.route("/list.txt", "1.2.3.4:8080\\n", etag='"v1"')
        srv.route("/list.gz", "1.2.3.4:8080\\n", gzip=True)
        srv.route("/moved", redirect="/list.txt")
        srv.route("/slow", "1.2.3.4:8080\\n", delay=5)
        srv.route("/gone", status=404)
        url, ca = srv.url("/list.txt"), srv.ca_file
        ...
        assert srv.hits("/list.txt") == 2

Run as a script it serves files until interrupted (for trying by hand):

    listserver.py [--tls] /PATH=FILE ...

Nothing here knows about proxyfs.
"""

import gzip as gzip_module
import http.server
import os
import shutil
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading

HANDSHAKE_TIMEOUT = 10.0


class LocalCA:
    """A CA and a server certificate for 127.0.0.1 and localhost, made with
    the openssl CLI in a temporary directory that close() removes."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="proxyfs-ca-")
        self.ca_file = os.path.join(self.dir, "ca.pem")
        self.cert_file = os.path.join(self.dir, "server.pem")
        self.key_file = os.path.join(self.dir, "server.key")
        try:
            self._make()
        except Exception:
            self.close()
            raise

    def _openssl(self, *args):
        p = subprocess.run(["openssl"] + list(args), cwd=self.dir, capture_output=True,
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (args[0], p.stderr.decode(errors="replace")))

    def _make(self):
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self._openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
                      "-days", "2", "-subj", "/CN=proxyfs test CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
                      "-subj", "/CN=127.0.0.1")
        with open(os.path.join(self.dir, "server.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n")
        self._openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                      "-CAcreateserial", "-days", "2", "-extfile", "server.ext",
                      "-out", "server.pem")

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Route:
    """How one path answers. body is bytes or str; redirect is a Location
    (status 302 unless given); delay is seconds before answering; length
    False ends the body by closing instead of sending Content-Length."""

    def __init__(self, body=b"", status=None, headers=None, gzip=False, redirect=None,
                 delay=0.0, etag=None, last_modified=None, length=True):
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self.status = status or (302 if redirect else 200)
        self.headers = dict(headers or {})
        self.gzip = gzip
        self.redirect = redirect
        self.delay = delay
        self.etag = etag
        self.last_modified = last_modified
        self.length = length

    def not_modified(self, req_headers):
        inm = req_headers.get("If-None-Match")
        ims = req_headers.get("If-Modified-Since")
        if self.etag is not None and inm is not None:
            return inm == self.etag
        return self.last_modified is not None and ims == self.last_modified


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "proxyfs-listserver"

    def do_GET(self):
        self._answer(with_body=True)

    def do_HEAD(self):
        self._answer(with_body=False)

    def _answer(self, with_body):
        path = self.path.split("?", 1)[0]
        route = self.server.owner._seen(path, self.headers)
        if route is None:
            route = Route(b"not found\n", status=404)
        if route.delay and self.server.owner._stopping.wait(route.delay):
            self.close_connection = True
            return
        body, status = route.body, route.status
        if route.not_modified(self.headers):
            body, status = b"", 304
        elif route.gzip:
            body = gzip_module.compress(body)
        self.send_response(status)
        if route.redirect:
            self.send_header("Location", route.redirect)
        if route.gzip and status != 304:
            self.send_header("Content-Encoding", "gzip")
        if route.etag is not None:
            self.send_header("ETag", route.etag)
        if route.last_modified is not None:
            self.send_header("Last-Modified", route.last_modified)
        for name, value in route.headers.items():
            self.send_header(name, value)
        if route.length or status == 304:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if with_body and status != 304:
            self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, owner, port, context):
        self.owner = owner
        self.context = context
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request, client_address):
        """A client that went away (a timeout, a cancelled fetch) is no
        error of the server's; anything else is printed."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            super().handle_error(request, client_address)

    def finish_request(self, request, client_address):
        """Runs on the request's thread, so a slow or failed TLS handshake
        holds up no other client."""
        if self.context is None:
            return super().finish_request(request, client_address)
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return None
        try:
            return super().finish_request(tls, client_address)
        finally:
            tls.close()


class ListServer:
    """Serves routes on 127.0.0.1:port (0: the kernel chooses); see the
    module's comment. Thread-safe: routes may change while it serves."""

    def __init__(self, tls=False, port=0):
        self.tls = tls
        self.ca = LocalCA() if tls else None
        self._lock = threading.Lock()  # guards _routes, _hits and requests
        self._routes = {}
        self._hits = {}
        self.requests = []  # (path, {header: value}) of every request, in order
        self._stopping = threading.Event()
        self._thread = None
        try:
            self._server = _Server(self, port, self.ca.server_context() if tls else None)
        except Exception:
            if self.ca:
                self.ca.close()
            raise
        self.host, self.port = self._server.server_address[:2]

    @property
    def ca_file(self):
        """The test CA's certificate (PEM), None without TLS."""
        return self.ca.ca_file if self.ca else None

    def url(self, path="/"):
        return "%s://127.0.0.1:%d%s" % ("https" if self.tls else "http", self.port, path)

    def route(self, path, body=b"", **kwargs):
        """Sets (or replaces) how path answers; see Route."""
        with self._lock:
            self._routes[path] = Route(body, **kwargs)

    def remove(self, path):
        with self._lock:
            self._routes.pop(path, None)

    def hits(self, path):
        with self._lock:
            return self._hits.get(path, 0)

    def _seen(self, path, headers):
        with self._lock:
            self._hits[path] = self._hits.get(path, 0) + 1
            self.requests.append((path, dict(headers.items())))
            return self._routes.get(path)

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops serving; delayed answers are dropped at once."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        if self.ca:
            self.ca.close()
            self.ca = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    tls = "--tls" in argv
    pairs = [a for a in argv[1:] if a != "--tls"]
    if not pairs or any("=" not in p or not p.startswith("/") for p in pairs):
        sys.stderr.write("usage: listserver.py [--tls] /PATH=FILE ...\n")
        return 2
    srv = ListServer(tls=tls)
    for pair in pairs:
        path, name = pair.split("=", 1)
        with open(name, "rb") as f:
            srv.route(path, f.read())
    srv.start()
    print(srv.url("/"), flush=True)
    if srv.ca_file:
        print("CA: %s" % srv.ca_file, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
