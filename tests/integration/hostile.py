"""hostile: what the robustness tests share: misbehaving proxies, the proxy
simulator, a config with knobs, reader processes that check every byte they
read, the store read from outside, and a process's memory.

The misbehaving proxies run in one child process (this file run as
`hostile.py serve SPEC OUT`), each on its own loopback address and a port
below 32768, with one behaviour each (KINDS). The child binds every
listener, writes the addresses it got to OUT as JSON, prints "ready" and
serves until SIGTERM. HTTP kinds read the request head first; SOCKS5 kinds
play the handshake up to the point where they misbehave. None of them
forwards anything: a "correct" answer is one the judge would give
(ANSWER), made up on the spot.

Reader processes are this file run as `hostile.py read MNT OUT STOP SECS`:
each reads random, live.txt and metrics in turn until STOP exists, checks
each read (URI lines, the exposition format, time taken) and writes what it
saw to OUT as JSON.

Nothing here knows how proxyfs works inside; the tests say what a user
must see.
"""

import asyncio
import json
import os
import random
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import peers

BODY = ("%s\nREMOTE_ADDR = 127.0.0.1\n" % peers.JUDGE_TOKEN).encode()
# What the judge answers through a working proxy: a whole HTTP answer whose
# length is known, so any cut of it is an incomplete answer.
ANSWER = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
          % len(BODY) + BODY)
S5_METHOD_OK = b"\x05\x00"
S5_CONNECT_OK = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50"
# Everything a correct SOCKS5 proxy sends back, in order.
S5_STREAM = S5_METHOD_OK + S5_CONNECT_OK + ANSWER

HUGE_BYTES = 256 * 1024 * 1024  # most a flooding peer sends before it gives up
FLOOD_SECONDS = 60.0
READY_TIMEOUT = 15.0
HEAD_LIMIT = 65536

# kind: (scheme, one line on what it does). arg is the K of the cut kinds.
KINDS = {
    "blackhole": ("http", "accepts, never reads, never answers"),
    "good": ("http", "the judge's answer, whole"),
    "slow_good": ("http", "the judge's answer, whole, after arg ms"),
    "cut": ("http", "the first arg bytes of the judge's answer, then close"),
    "endless_headers": ("http", "200 OK, then header lines until the client leaves"),
    "drip": ("http", "the judge's answer, one byte a second"),
    "huge_body": ("http", "200 OK without a length, then 256 MiB of body, the token last"),
    "huge_chunked": ("http", "200 OK chunked, 8 KiB chunks until the client leaves"),
    "giant_length": ("http", "200 OK with a Content-Length of 10**30 and the token"),
    "short_length": ("http", "200 OK, the token, Content-Length larger than sent, close"),
    "garbage": ("http", "4 KiB of random bytes, then close"),
    "garbage_flood": ("http", "random bytes until the client leaves"),
    "s5_good": ("socks5", "a correct SOCKS5 handshake and the judge's answer"),
    "s5_cut": ("socks5", "the first arg bytes of a correct SOCKS5 exchange, then close"),
    "s5_bad_ver": ("socks5", "method reply with version 4"),
    "s5_bad_method": ("socks5", "method reply choosing a method never offered (0x7f)"),
    "s5_atyp9": ("socks5", "CONNECT reply with address type 9, then the answer"),
    "s5_domain_past": ("socks5", "CONNECT reply whose domain length (255) runs past the"
                                 " packet, then the answer, then close"),
    "s5_rep0_garbage": ("socks5", "CONNECT reply 0 (granted), then random bytes, close"),
    "s5_flood": ("socks5", "after the greeting, random bytes until the client leaves"),
}


def host_for(index, net=10):
    """The loopback address of listener number index: 127.0.NET+i/250.1+i%250."""
    return "127.0.%d.%d" % (net + index // 250, 1 + index % 250)


def uri_of(kind, host, port):
    return "%s://%s:%d" % (KINDS[kind][0], host, port)


# --- the child: serving ---

async def _read_head(reader):
    """Reads up to the empty line ending an HTTP request head."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < HEAD_LIMIT:
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionResetError("peer closed before its request was whole")
        data += chunk
    return data


async def _send(writer, data):
    writer.write(data)
    await writer.drain()


async def _flood(writer, make_chunk, limit=HUGE_BYTES):
    """Sends make_chunk() until the client leaves, limit bytes or FLOOD_SECONDS."""
    sent = 0
    deadline = time.monotonic() + FLOOD_SECONDS
    while sent < limit and time.monotonic() < deadline:
        chunk = make_chunk()
        await _send(writer, chunk)
        sent += len(chunk)
    return sent


async def _s5_greeting(reader):
    head = await reader.readexactly(2)
    await reader.readexactly(head[1])


async def _s5_request(reader):
    head = await reader.readexactly(4)
    atyp = head[3]
    if atyp == 1:
        await reader.readexactly(4 + 2)
    elif atyp == 4:
        await reader.readexactly(16 + 2)
    else:
        n = (await reader.readexactly(1))[0]
        await reader.readexactly(n + 2)


async def _cut_stream(reader, writer, segments, k):
    """Plays segments (what to wait for, what to send) but sends only the
    first k bytes of everything, then closes."""
    for wait_for, data in segments:
        if k <= 0:
            return
        await wait_for(reader)
        await _send(writer, data[:k])
        k -= len(data)


async def _behave(kind, arg, rng, reader, writer):
    if kind == "blackhole":
        await asyncio.Event().wait()
    if kind == "s5_cut":
        await _cut_stream(reader, writer, [(_s5_greeting, S5_METHOD_OK),
                                           (_s5_request, S5_CONNECT_OK),
                                           (_read_head, ANSWER)], arg)
        return
    if kind.startswith("s5_"):
        await _s5_greeting(reader)
        if kind == "s5_bad_ver":
            await _send(writer, b"\x04\x00")
            return
        if kind == "s5_bad_method":
            await _send(writer, b"\x05\x7f")
            return
        if kind == "s5_flood":
            await _flood(writer, lambda: rng.randbytes(16384))
            return
        await _send(writer, S5_METHOD_OK)
        await _s5_request(reader)
        if kind == "s5_good":
            await _send(writer, S5_CONNECT_OK)
            await _read_head(reader)
            await _send(writer, ANSWER)
        elif kind == "s5_atyp9":
            await _send(writer, b"\x05\x00\x00\x09" + bytes(6) + ANSWER)
        elif kind == "s5_domain_past":
            await _send(writer, b"\x05\x00\x00\x03\xffshort.example\x00\x50" + ANSWER)
        elif kind == "s5_rep0_garbage":
            await _send(writer, S5_CONNECT_OK + rng.randbytes(4096))
        return
    if kind == "cut":
        await _cut_stream(reader, writer, [(_read_head, ANSWER)], arg)
        return
    await _read_head(reader)
    if kind == "good":
        await _send(writer, ANSWER)
    elif kind == "slow_good":
        await asyncio.sleep(arg / 1000.0)
        await _send(writer, ANSWER)
    elif kind == "endless_headers":
        await _send(writer, b"HTTP/1.1 200 OK\r\n")
        n = iter(range(1 << 62))
        await _flood(writer, lambda: b"".join(b"X-Hostile-%d: %s\r\n" % (next(n), b"h" * 100)
                                              for _ in range(64)))
    elif kind == "drip":
        for i in range(len(ANSWER)):
            await _send(writer, ANSWER[i:i + 1])
            await asyncio.sleep(1.0)
    elif kind == "huge_body":
        await _send(writer, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        sent = await _flood(writer, lambda: b"x" * 1048576, HUGE_BYTES - len(BODY))
        if sent >= HUGE_BYTES - len(BODY):
            await _send(writer, BODY)
    elif kind == "huge_chunked":
        await _send(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await _flood(writer, lambda: b"2000\r\n" + b"c" * 8192 + b"\r\n")
    elif kind == "giant_length":
        await _send(writer, b"HTTP/1.0 200 OK\r\nContent-Length: 1%s\r\n\r\n" % (b"0" * 30)
                    + BODY)
    elif kind == "short_length":
        await _send(writer, b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(BODY) + 4000)
                    + BODY)
    elif kind == "garbage":
        await _send(writer, rng.randbytes(4096))
    elif kind == "garbage_flood":
        await _flood(writer, lambda: rng.randbytes(16384))


def _handler(kind, arg, seed):
    async def handle(reader, writer):
        rng = random.Random(seed)
        try:
            await _behave(kind, arg, rng, reader, writer)
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    return handle


def _bind(host):
    """A listening socket on host and a free port below 32768."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, random.randrange(peers.PORT_LOW, peers.PORT_HIGH)))
            s.listen(1024)
            s.setblocking(False)
            return s
        except OSError:
            s.close()
    raise RuntimeError("no free port on %s" % host)


async def _serve(spec, out_path):
    servers, result = [], []
    for i, item in enumerate(spec):
        sock = _bind(item["host"])
        servers.append(await asyncio.start_server(
            _handler(item["kind"], item.get("arg", 0), i), sock=sock, limit=HEAD_LIMIT))
        result.append(dict(item, port=sock.getsockname()[1]))
    with open(out_path + ".tmp", "w") as f:
        json.dump(result, f)
    os.rename(out_path + ".tmp", out_path)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def serve_main(spec_path, out_path):
    with open(spec_path) as f:
        spec = json.load(f)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(_serve(spec, out_path))
    return 0


# --- the parent: starting and stopping them ---

class HostileProxy:
    """One listener of a Hostile set."""

    def __init__(self, kind, arg, host, port):
        self.kind, self.arg, self.host, self.port = kind, arg, host, port
        self.uri = self.line = uri_of(kind, host, port)

    def __repr__(self):
        return "<hostile %s%s %s>" % (self.kind, "(%d)" % self.arg if "cut" in self.kind
                                      else "", self.uri)


class Hostile:
    """The misbehaving proxies of one test, served by one child process.

    specs: (kind, arg) pairs, or kind names; listener i is on host_for(i, net).
    """

    def __init__(self, tmp, specs, net=10, name="hostile"):
        self.proc = None
        os.makedirs(tmp, exist_ok=True)
        spec = []
        for i, s in enumerate(specs):
            kind, arg = (s, 0) if isinstance(s, str) else s
            if kind not in KINDS:
                raise ValueError("no hostile kind %r" % kind)
            spec.append({"kind": kind, "arg": arg, "host": host_for(i, net)})
        spec_path = os.path.join(tmp, name + ".spec.json")
        out_path = os.path.join(tmp, name + ".ports.json")
        self.logpath = os.path.join(tmp, name + ".log")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        with open(self.logpath, "ab") as log:
            self.proc = subprocess.Popen([peers.PYTHON, os.path.abspath(__file__), "serve",
                                          spec_path, out_path],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=log, start_new_session=True)
        try:
            ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT)
            said = self.proc.stdout.readline() if ready else b""
            if said != b"ready\n":
                raise peers.PeerError("hostile proxies did not get ready (%r); log:\n%s"
                                      % (said, self.log()))
            with open(out_path) as f:
                self.proxies = [HostileProxy(p["kind"], p["arg"], p["host"], p["port"])
                                for p in json.load(f)]
        except BaseException:
            self.stop()
            raise

    def of_kind(self, kind):
        return [p for p in self.proxies if p.kind == kind]

    @property
    def uris(self):
        return {p.uri for p in self.proxies}

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        """Stops the child by its PID (its session)."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc.stdout.close()
        self.proc = None


def closed_uris(count, net=40):
    """count http:// URIs of loopback ports nothing listens on (each bound
    once to learn it is free), on addresses of their own."""
    return ["http://%s:%d" % (h, peers.free_port(h))
            for h in (host_for(i, net) for i in range(count))]


# --- the proxy simulator ---

def proxysim_bin():
    """tests/sim/proxysim as built, or None where it is not built."""
    path = peers.proxysim_bin()
    return path if os.access(path, os.X_OK) else None


class Sim:
    """One proxysim of count proxies: its list file and the URIs a correct
    checker finds alive (truth). Started in its own session, ready when it
    writes "ready" to a pipe, stopped by its PID."""

    def __init__(self, binary, tmp, count, seed, extra_args=()):
        os.makedirs(tmp, exist_ok=True)
        self.list = os.path.join(tmp, "sim.list")
        truth = os.path.join(tmp, "sim.truth")
        self.logpath = os.path.join(tmp, "proxysim.log")
        self.proc, said = peers.start_ready(
            [binary, "--count", str(count), "--seed", str(seed), "--list", self.list,
             "--truth", truth, "--expect", peers.JUDGE_TOKEN, *extra_args],
            self.logpath, READY_TIMEOUT)
        if said != b"ready\n":
            self.stop()
            raise peers.PeerError("proxysim did not get ready (%r)" % said)
        with open(truth) as f:
            self.truth = set(f.read().split())
        with open(self.list) as f:
            self.lines = [line for line in f.read().split("\n") if line]

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


# --- the daemon's settings ---

def write_conf(tmp, judge, list_path, db=None, name="proxyfs.ini", **check):
    """Like conftest.write_config, with any [check] setting overridden or
    added (timeout_ms=800, publish_ms=100, retries=0, ...) and the db where
    the test wants it."""
    settings = {"judge": "http://%s:%d/" % (judge.host, judge.port),
                "expect": peers.JUDGE_TOKEN, "timeout_ms": 2000, "connect_timeout_ms": 1000,
                "concurrency": 100, "interval_s": 3600}
    settings.update(check)
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write("[proxyfs]\ndb = %s\nlog_level = debug\n\n[check]\n"
                % (db or os.path.join(tmp, "proxyfs.db")))
        for key, value in settings.items():
            f.write("%s = %s\n" % (key, value))
        f.write("\n[source:local]\nurl = %s\nprotocol = http\n" % list_path)
    return path


def write_lines(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    os.rename(tmp, path)
    return path


# --- the store, read from outside ---

def _ro(db):
    return sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)


def db_query(db, sql):
    """Rows of sql over a read-only connection (the daemon may be writing)."""
    con = _ro(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def printed(uri):
    """The store keys an HTTP proxy listed https:// as written; live.txt
    prints it http://."""
    return "http://" + uri[len("https://"):] if uri.startswith("https://") else uri


def db_uris(db, state=None):
    """URIs in the store's proxies table (with that state: 1 alive, 2 dead),
    as live.txt prints them."""
    sql = "SELECT uri FROM proxies"
    if state is not None:
        sql += " WHERE state = %d" % state
    return {printed(r[0]) for r in db_query(db, sql)}


def integrity_check(db):
    """PRAGMA integrity_check, as a user would run it (read-only)."""
    rows = db_query(db, "PRAGMA integrity_check")
    return "\n".join(str(r[0]) for r in rows)


# --- what a reader must see ---

URI_RE = re.compile(r"^(http|https|socks4|socks5)://(?:[^\s:@/]+:[^\s@/]*@)?"
                    r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
                    r":\d{1,5}$")
_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE_RE = re.compile(r"^(%s)(?:\{(?:%s(?:,%s)*,?)?\})? (\S+)(?: (-?\d+))?$"
                        % (_METRIC_NAME, _LABEL, _LABEL))
_META_RE = re.compile(r"^# (HELP|TYPE) (%s)(?: (.*))?$" % _METRIC_NAME)
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def exposition_errors(data):
    """What is wrong with data as Prometheus text exposition 0.0.4 (a
    list of messages, empty when it parses)."""
    if not data.endswith(b"\n"):
        return ["does not end with a newline"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return ["not UTF-8: %s" % e]
    errors, typed, sampled = [], {}, set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        if line.startswith("#"):
            m = _META_RE.match(line)
            if not m:
                continue  # a plain comment
            kind, name, rest = m.groups()
            if kind == "TYPE":
                if rest not in _TYPES:
                    errors.append("line %d: unknown type %r" % (n, rest))
                if name in typed or name in sampled:
                    errors.append("line %d: TYPE of %s repeated or after its samples"
                                  % (n, name))
                typed[name] = rest
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            errors.append("line %d: not a sample: %r" % (n, line))
            continue
        sampled.add(m.group(1))
        try:
            float(m.group(2))
        except ValueError:
            errors.append("line %d: bad value %r" % (n, m.group(2)))
    return errors


def uri_lines_errors(data, exactly_one=False):
    """What is wrong with data as URI lines (live.txt, or random with
    exactly_one)."""
    if not data:
        return ["empty"] if exactly_one else []
    if not data.endswith(b"\n"):
        return ["does not end with a newline: %r" % data[-40:]]
    lines = data[:-1].decode(errors="replace").split("\n")
    errors = ["not a URI line: %r" % line for line in lines if not URI_RE.match(line)]
    if exactly_one and len(lines) != 1:
        errors.append("%d lines, not one" % len(lines))
    if len(set(lines)) != len(lines):
        errors.append("%d lines repeated" % (len(lines) - len(set(lines))))
    return errors[:5]


READ_FILES = ("random", "live.txt", "metrics")


def read_main(mnt, out_path, stop_path, max_seconds):
    """One reader process: opens, reads whole and closes the READ_FILES in
    turn until stop_path exists (or max_seconds), checking each read, and
    writes what it saw to out_path as JSON."""
    seen = {"reads": 0, "slowest": 0.0, "errors": [], "random": set(), "live": set(),
            "live_versions": set()}
    deadline = time.monotonic() + float(max_seconds)
    i = 0
    while not os.path.exists(stop_path) and time.monotonic() < deadline:
        name = READ_FILES[i % len(READ_FILES)]
        i += 1
        t = time.monotonic()
        try:
            with open(os.path.join(mnt, name), "rb") as f:
                data = f.read()
        except OSError as e:
            seen["errors"].append("%s: %s" % (name, e))
            continue
        took = time.monotonic() - t
        seen["reads"] += 1
        seen["slowest"] = max(seen["slowest"], took)
        if took > 2.0:
            seen["errors"].append("%s: a read took %.2f s" % (name, took))
        if name == "metrics":
            errors = exposition_errors(data)
        else:
            errors = uri_lines_errors(data, exactly_one=name == "random")
        if errors:
            seen["errors"].append("%s: %s" % (name, "; ".join(errors)))
        elif name == "random":
            seen["random"].add(data.decode().strip())
        elif name == "live.txt":
            seen["live"].update(data.decode().split())
            seen["live_versions"].add(hash(data))
        if len(seen["errors"]) > 20:
            break
    with open(out_path, "w") as f:
        json.dump({k: sorted(v) if isinstance(v, set) else v for k, v in seen.items()}, f)
    return 0


class Readers:
    """n reader processes (read_main) over the mount at mnt."""

    def __init__(self, tmp, mnt, n, max_seconds=120):
        os.makedirs(tmp, exist_ok=True)
        self.stop_path = os.path.join(tmp, "readers.stop")
        self.outs = [os.path.join(tmp, "reader-%d.json" % i) for i in range(n)]
        self.procs = []
        try:
            for out in self.outs:
                self.procs.append(subprocess.Popen(
                    [peers.PYTHON, os.path.abspath(__file__), "read", mnt, out, self.stop_path,
                     str(max_seconds)], stdin=subprocess.DEVNULL, start_new_session=True))
        except BaseException:
            self.kill()
            raise

    def finish(self, timeout=30):
        """Tells them to stop and returns what each saw."""
        with open(self.stop_path, "w"):
            pass
        results = []
        for p, out in zip(self.procs, self.outs):
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("a reader did not stop within %d s (stuck in a read?)"
                                     % timeout)
            if rc != 0:
                raise AssertionError("a reader exited with %d" % rc)
            with open(out) as f:
                results.append(json.load(f))
        self.procs = []
        return results

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        self.procs = []


# --- a process's memory ---

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def asan_build(binary):
    """True for a daemon built with AddressSanitizer (whose freed memory
    waits in a quarantine of up to 256 MB) or ThreadSanitizer (whose shadow
    memory grows with use): their RSS says nothing of leaks."""
    with open(binary, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        sys.exit(serve_main(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 6 and sys.argv[1] == "read":
        sys.exit(read_main(*sys.argv[2:]))
    sys.stderr.write("usage: hostile.py serve SPEC OUT | read MNT OUT STOPFILE SECONDS\n")
    sys.exit(2)
