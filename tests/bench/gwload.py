#!/usr/bin/python3
"""gwload: new connections per second through proxies, the gateway bench's client.

Each request is a new connection to one proxy of --proxy (picked at random
per connection when several are given): a tunnel to --target (HTTP CONNECT
for http:// and https:// proxies, SOCKS5 CONNECT with an IPv4 address, and
RFC 1929 user/password when the URI has them, for socks5://), then one
`GET PATH` with `Connection: close`, read to the end: a success is a 200
with the whole body. The same client for every side of a comparison, so
that the ratios compare the proxies, not the clients.

    gwload.py --proxy URI [--proxy URI ...] --target HOST:PORT --path /small
              [--total N] [--concurrency C] [--timeout S] [--progress N]

Prints `done N` every --progress requests (so the bench can act mid-run)
and at the end one line `result JSON`: requests, ok, failed, seconds,
rate (requests/s), p50/p99 ms of the successes, and the failures by kind.
"""

import argparse
import asyncio
import json
import socket
import struct
import sys
import time
import urllib.parse


class Failed(Exception):
    """A proxy or target answer that is not the one wanted."""


def parse_proxy(uri):
    u = urllib.parse.urlsplit(uri)
    if u.scheme not in ("http", "https", "socks5", "socks5h"):
        sys.exit("gwload: unsupported proxy %s" % uri)
    return {"scheme": u.scheme, "host": u.hostname, "port": u.port,
            "user": urllib.parse.unquote(u.username) if u.username else None,
            "password": urllib.parse.unquote(u.password or "") if u.username else None}


async def socks5(r, w, p, host, port):
    w.write(b"\x05\x01\x02" if p["user"] is not None else b"\x05\x01\x00")
    rep = await r.readexactly(2)
    if rep[1] == 2 and p["user"] is not None:
        user, pw = p["user"].encode(), p["password"].encode()
        w.write(bytes([1, len(user)]) + user + bytes([len(pw)]) + pw)
        if (await r.readexactly(2))[1] != 0:
            raise Failed("socks5 auth refused")
    elif rep != b"\x05\x00":
        raise Failed("socks5 method %r" % rep)
    w.write(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack("!H", port))
    rep = await r.readexactly(4)
    if rep[1] != 0:
        raise Failed("socks5 reply %d" % rep[1])
    if rep[3] == 1:
        await r.readexactly(6)
    elif rep[3] == 4:
        await r.readexactly(18)
    else:
        await r.readexactly((await r.readexactly(1))[0] + 2)


async def http_connect(r, w, p, host, port):
    auth = b""
    if p["user"] is not None:
        import base64
        auth = b"Proxy-Authorization: Basic %s\r\n" % base64.b64encode(
            ("%s:%s" % (p["user"], p["password"])).encode())
    w.write(b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n"
            % (host.encode(), port, host.encode(), port, auth))
    head = await r.readuntil(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or parts[1] != b"200":
        raise Failed("CONNECT %s" % head.split(b"\r\n", 1)[0].decode(errors="replace")[:60])


async def one(p, host, port, path):
    """One connection: tunnel, GET, the whole answer."""
    r, w = await asyncio.open_connection(p["host"], p["port"])
    try:
        if p["scheme"].startswith("socks5"):
            await socks5(r, w, p, host, port)
        else:
            await http_connect(r, w, p, host, port)
        w.write(b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                % (path.encode(), host.encode(), port))
        data = await r.read(-1)
    finally:
        w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not data:
        # The proxy had said yes: its upstream's tunnel broke after that,
        # past the point where anyone could try another upstream.
        raise Failed("tunnel made, then closed without an answer")
    if not head.startswith(b"HTTP/1.1 200"):
        raise Failed("answer %r" % head[:40])
    low = head.lower()
    i = low.find(b"content-length:")
    if i >= 0 and int(low[i + 15:].split(b"\r\n", 1)[0]) != len(body):
        raise Failed("short body")


async def main_async(a):
    proxies = [parse_proxy(u) for u in a.proxy]
    host, port = a.target.rsplit(":", 1)
    port = int(port)
    import random
    state = {"next": 0, "done": 0, "ok": 0, "fail": {}, "lat": []}

    async def worker():
        while state["next"] < a.total:
            state["next"] += 1
            p = random.choice(proxies)
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(one(p, host, port, a.path), a.timeout)
                state["ok"] += 1
                state["lat"].append(time.monotonic() - t0)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, Failed, ValueError) as e:
                kind = "%s: %s" % (type(e).__name__, str(e)[:60])
                state["fail"][kind] = state["fail"].get(kind, 0) + 1
            state["done"] += 1
            if a.progress and state["done"] % a.progress == 0:
                print("done %d" % state["done"], flush=True)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(a.concurrency)))
    wall = time.monotonic() - t0
    lat = sorted(state["lat"])

    def q(f):
        return round(lat[min(int(len(lat) * f), len(lat) - 1)] * 1000, 3) if lat else None
    failed = sum(state["fail"].values())
    print("result " + json.dumps({"requests": state["done"], "ok": state["ok"],
                                  "failed": failed, "seconds": round(wall, 3),
                                  "rate": round(state["done"] / wall, 1), "p50": q(0.5),
                                  "p99": q(0.99), "failures": state["fail"]}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy", action="append", required=True)
    ap.add_argument("--target", required=True, help="HOST:PORT, an IPv4 address")
    ap.add_argument("--path", default="/small")
    ap.add_argument("--total", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--progress", type=int, default=0)
    a = ap.parse_args()
    if a.total < 1 or a.concurrency < 1:
        ap.error("--total and --concurrency must be positive")
    asyncio.run(main_async(a))


if __name__ == "__main__":
    main()
