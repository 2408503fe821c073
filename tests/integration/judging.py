"""judging: what the tests of judges, anonymity and the re-check policy
share: a config naming any judges and policy keys, `proxyfs judge`
processes, and real proxies whose outgoing address is PROXY_OUT.

A proxy that connects out from PROXY_OUT (tinyproxy `Bind`, microsocks
`-b`, danted `external:`, squid `tcp_outgoing_address`) shows the judge
that address, while the daemon's direct probe shows it 127.0.0.1 (OUR):
so what the judge echoes tells elite, anonymous and transparent apart on
loopback. Each peer is started on a fresh port below 32768 and stopped by
its PID (peers.Peer). Nothing here asserts anything about proxyfs.
"""

import os
import shutil
import signal
import subprocess
import tempfile

import peers
from test_judge import Judge

PROXY_OUT = "127.0.0.2"   # where the proxies below connect out from
OUR = "127.0.0.1"         # what the judge sees for the daemon directly
EXPECT = "proxyfs-judge"  # what `proxyfs judge` answers


def write_conf(tmp, judges, list_path, check=None, name="proxyfs.ini"):
    """A daemon config: judges is a list of URLs (each a `judge =` line),
    check the [check] keys to set besides or instead of the defaults."""
    keys = {"expect": EXPECT, "timeout_ms": 2000, "connect_timeout_ms": 1000,
            "concurrency": 100, "interval_s": 3600}
    keys.update(check or {})
    conf = os.path.join(tmp, name)
    with open(conf, "w") as f:
        f.write("[proxyfs]\ndb = %s\nlog_level = debug\n\n[check]\n"
                % os.path.join(tmp, "proxyfs.db"))
        for url in judges:
            f.write("judge = %s\n" % url)
        for k, v in keys.items():
            f.write("%s = %s\n" % (k, v))
        f.write("\n[source:local]\nurl = %s\nprotocol = http\n" % list_path)
    return conf


def write_list(tmp, lines, name="list.txt"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write("".join("%s\n" % line for line in lines))
    return path


def start_judge(binary, tmp, port=0):
    """`proxyfs judge` on 127.0.0.1 (port 0: the kernel's choice)."""
    return Judge(binary, tmp, "%s:%d" % (OUR, port))


def closed_url(host=OUR):
    """The URL of a judge nobody serves."""
    return "http://%s:%d/" % (host, peers.free_port(host))


def _start(host, make, tries=5):
    """make(port) builds a Peer on host; retried on a fresh port when the
    one chosen was taken meanwhile."""
    last = None
    for _ in range(tries):
        try:
            return make(peers.free_port(host)).start()
        except peers.PeerError as e:
            last = e
    raise last


def tinyproxy(tmp, host, via=True, add_xff=None, bind=PROXY_OUT):
    """tinyproxy connecting out from bind; via=False leaves out its Via
    and X-Tinyproxy headers; add_xff adds a fixed X-Forwarded-For."""
    def make(port):
        conf = os.path.join(tmp, "tinyproxy-%s-%d.conf" % (host, port))
        with open(conf, "w") as f:
            f.write("Port %d\nListen %s\nTimeout 30\nLogLevel Info\nMaxClients 50\n"
                    "Allow 127.0.0.0/8\n" % (port, host))
            if bind:
                f.write("Bind %s\n" % bind)
            if not via:
                f.write("DisableViaHeader Yes\nXTinyproxy No\n")
            if add_xff:
                f.write("AddHeader \"X-Forwarded-For\" \"%s\"\n" % add_xff)
        return peers.Peer("tinyproxy", host, port, ["tinyproxy", "-d", "-c", conf],
                          os.path.join(tmp, "tinyproxy-%s-%d.log" % (host, port)),
                          line="http://%s:%d" % (host, port),
                          uri="http://%s:%d" % (host, port))
    return _start(host, make)


def microsocks(tmp, host, bind=PROXY_OUT):
    def make(port):
        argv = ["microsocks", "-i", host, "-p", str(port)]
        if bind:
            argv += ["-b", bind]
        uri = "socks5://%s:%d" % (host, port)
        return peers.Peer("microsocks", host, port, argv,
                          os.path.join(tmp, "microsocks-%s-%d.log" % (host, port)),
                          line=uri, uri=uri)
    return _start(host, make)


def danted(tmp, host, external=PROXY_OUT):
    """danted as a SOCKS4 proxy connecting out from external."""
    def make(port):
        conf = os.path.join(tmp, "danted-%s-%d.conf" % (host, port))
        with open(conf, "w") as f:
            f.write("logoutput: stderr\n"
                    "internal: %s port = %d\n"
                    "external: %s\n"
                    "socksmethod: none\n"
                    "clientmethod: none\n"
                    "user.privileged: root\n"
                    "user.unprivileged: nobody\n"
                    "client pass {\n\tfrom: 127.0.0.0/8\n\tto: 0.0.0.0/0\n}\n"
                    "socks pass {\n\tfrom: 127.0.0.0/8\n\tto: 0.0.0.0/0\n}\n"
                    % (host, port, external))
        uri = "socks4://%s:%d" % (host, port)
        return peers.Peer("danted", host, port,
                          ["danted", "-f", conf, "-p",
                           os.path.join(tmp, "danted-%s-%d.pid" % (host, port))],
                          os.path.join(tmp, "danted-%s-%d.log" % (host, port)),
                          line=uri, uri=uri)
    return _start(host, make)


def have_squid():
    return shutil.which("squid") is not None


class Squid:
    """squid in the foreground as user proxy, connecting out from
    PROXY_OUT, with no cache; headers=False turns off Via and
    X-Forwarded-For. Its files live in a directory of its own that the
    proxy user can write (pytest's tmp_path is root's alone)."""

    def __init__(self, tmp, host, headers=True):
        self.dir = tempfile.mkdtemp(prefix="proxyfs-squid-")
        try:
            shutil.chown(self.dir, user="proxy")
            self.peer = _start(host, lambda port: self._make(tmp, host, port, headers))
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.uri = self.line = self.peer.uri

    def _make(self, tmp, host, port, headers):
        conf = os.path.join(self.dir, "squid-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("http_port %s:%d\n"
                    "pid_filename %s\n"
                    "cache_log %s\n"
                    "access_log none\n"
                    "coredump_dir %s\n"
                    "cache deny all\n"
                    "pinger_enable off\n"
                    "shutdown_lifetime 0 seconds\n"
                    "acl lo src 127.0.0.0/8\n"
                    "http_access allow lo\n"
                    "http_access deny all\n"
                    "tcp_outgoing_address %s\n"
                    % (host, port, os.path.join(self.dir, "squid.pid"),
                       os.path.join(self.dir, "cache.log"), self.dir, PROXY_OUT))
            if not headers:
                f.write("via off\nforwarded_for delete\n")
        name = "proxyfstest%d" % port
        return peers.Peer("squid", host, port, ["squid", "-N", "-n", name, "-f", conf],
                          os.path.join(tmp, "squid-%s-%d.log" % (host, port)),
                          line="http://%s:%d" % (host, port), uri="http://%s:%d" % (host, port))

    def log(self):
        try:
            with open(os.path.join(self.dir, "cache.log"), "rb") as f:
                return self.peer.log() + f.read()[-3000:].decode(errors="replace")
        except OSError:
            return self.peer.log()

    def terminate(self):
        """Asks squid to exit without waiting (it takes about a second);
        stop() then waits for it."""
        if self.peer.running():
            try:
                os.killpg(self.peer.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self):
        self.peer.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def curl_via(uri, url, timeout=5):
    """curl through the proxy uri; (exit status, body and errors)."""
    p = subprocess.run(["curl", "-sS", "--max-time", str(timeout), "-x", uri, url],
                       capture_output=True, timeout=timeout + 5)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def metric(text, name, labels=None):
    """The value of one sample in a Prometheus text page, or None."""
    want = name if labels is None else "%s{%s}" % (
        name, ",".join('%s="%s"' % kv for kv in labels.items()))
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == want:
            return float(value)
    return None
