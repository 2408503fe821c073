"""Local source lists as a user keeps them: many lists, a protocol written
in its remote-DNS form, and a list caught while it is being rewritten.

- 200 list files: a proxy listed only by the 151st or the 200th list is
  kept, checked and shown in its source's folder and figures (a 64-bit
  source mask used to lose it), also after a restart from the database.
- `protocol = socks5h` on a source: its bare lines are socks5h proxies
  (printed socks5h://), and stat.json shows the protocol as written.
- A list file emptied (or left with only comments) while proxies came from
  it keeps its last list, with an error in stat.json; a list replaced by
  rename takes effect.

Each test runs a daemon of its own over the session's peer set and waits
for what it expects with a deadline; `sync` (a rescan that re-reads the
lists first) is the readiness signal.
"""

import os

from conftest import Mounts, wait_until
from test_sources_remote import source_live, source_stat, write_conf

READY_TIMEOUT = 30.0
NLISTS = 200


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def replace_file(path, text):
    """What README advises: write beside it, then rename over it."""
    write_file(path + ".new", text)
    os.replace(path + ".new", path)


def live_json_sources(d):
    return {p["uri"]: sorted(p["sources"]) for p in d.read_json("live.json")}


def test_two_hundred_lists(binary, peer_set, tmp_path):
    ps = peer_set
    tmp = str(tmp_path)
    # Where each good proxy is listed: past the 64th list, and in several.
    where = {
        ps.tinyproxy: [150],
        ps.socks5: [199],
        ps.socks4: [0, 100],
        ps.socks5_auth: list(range(60, 200, 7)),
    }
    names = ["s%03d" % i for i in range(NLISTS)]
    sources = []
    for i, name in enumerate(names):
        path = os.path.join(tmp, name + ".txt")
        write_file(path, "# list %d\n" % i +
                   "".join("%s\n" % p.line for p, idx in where.items() if i in idx))
        sources.append((name, {"url": path}))
    conf = write_conf(tmp, ps.judge, sources)
    mounts = Mounts(binary, tmp)
    try:
        d = mounts.new(conf).start()
        want = {p.uri for p in where}
        wait_until(lambda: d.live() == want, READY_TIMEOUT, "live.txt == %r" % sorted(want))

        def check(d):
            got = live_json_sources(d)
            for p, idx in where.items():
                assert got[p.uri] == sorted(names[i] for i in idx), p.uri
                for i in idx:
                    assert p.uri in source_live(d, names[i])
            for i in (150, 199, 100, 193):
                stat = source_stat(d, names[i])
                listed = [p for p, idx in where.items() if i in idx]
                assert stat["proxies"] == len(listed), (names[i], stat)
                assert stat["alive"] == len(listed), (names[i], stat)
            assert source_live(d, names[152]) == set()
            assert len(d.listdir("sources")) == NLISTS

        check(d)
        d.sync()  # a second read of every list changes nothing
        assert d.live() == want
        check(d)
        d.stop()

        # Warm start: the sources come back from the database, and the
        # lists read again agree.
        d = mounts.new(conf).start()
        wait_until(lambda: d.live() == want, READY_TIMEOUT, "live.txt after restart")
        assert live_json_sources(d) == {p.uri: sorted(names[i] for i in idx)
                                        for p, idx in where.items()}
        d.sync()
        check(d)
        d.stop()
    finally:
        mounts.cleanup()


def test_socks5h_source(binary, peer_set, tmp_path):
    ps = peer_set
    tmp = str(tmp_path)
    path = os.path.join(tmp, "h.txt")
    p, s4 = ps.socks5, ps.socks4
    write_file(path, "%s:%d\n%s\n" % (p.host, p.port, s4.uri))
    conf = write_conf(tmp, ps.judge, [("h", {"url": path, "protocol": "socks5h"})])
    mounts = Mounts(binary, tmp)
    try:
        d = mounts.new(conf).start()
        uri = "socks5h://%s:%d" % (p.host, p.port)
        # The bare line takes socks5h; a line with its own scheme keeps it.
        want = {uri, s4.uri}
        wait_until(lambda: d.live() == want, READY_TIMEOUT, "live.txt == %r" % sorted(want))
        assert uri in d.live("socks5/live.txt")
        assert [p["uri"] for p in d.read_json("live.json") if p["uri"] == uri]
        stat = source_stat(d, "h")
        assert stat["protocol"] == "socks5h"
        assert stat["proxies"] == 2
        d.stop()
    finally:
        mounts.cleanup()


def test_list_rewritten_keeps_last(binary, peer_set, tmp_path):
    ps = peer_set
    tmp = str(tmp_path)
    path = os.path.join(tmp, "list.txt")
    write_file(path, "%s\n%s\n" % (ps.tinyproxy.line, ps.socks5.line))
    conf = write_conf(tmp, ps.judge, [("local", {"url": path})])
    mounts = Mounts(binary, tmp)
    try:
        d = mounts.new(conf).start()
        both = {ps.tinyproxy.uri, ps.socks5.uri}
        wait_until(lambda: d.live() == both, READY_TIMEOUT, "both live")

        # Caught while rewritten in place: empty, then only its header.
        for text in ("", "# proxies, rewritten at night\n\n"):
            write_file(path, text)
            d.sync()
            assert d.live() == both
            stat = source_stat(d, "local")
            assert stat["error"] and "kept" in stat["error"], stat
            assert stat["proxies"] == 2, stat
            assert source_live(d, "local") == both

        # Replaced by rename: the new list applies, the error goes.
        replace_file(path, "%s\n" % ps.socks5.line)
        d.sync()
        assert d.live() == {ps.socks5.uri}
        stat = source_stat(d, "local")
        assert stat["error"] is None and stat["proxies"] == 1, stat
        d.stop()

        # The proxy the list dropped is gone from the database too; the
        # kept one survived the empty reads with its history.
        d = mounts.new(conf).start()
        assert d.live() == {ps.socks5.uri}
        d.stop()
    finally:
        mounts.cleanup()


def test_download_without_proxies_keeps_last(binary, peer_set, tmp_path):
    """The same rule for a download: a page with no proxy in it (a 200 with
    only comments) keeps the last list, and its validators are not kept,
    so the next download is a full one rather than a 304 for that page."""
    from listserver import ListServer

    ps = peer_set
    tmp = str(tmp_path)
    with ListServer() as srv:
        srv.route("/l.txt", "%s\n%s\n" % (ps.tinyproxy.line, ps.socks5.line), etag='"a"')
        conf = write_conf(tmp, ps.judge, [("remote", {"url": srv.url("/l.txt")})])
        mounts = Mounts(binary, tmp)
        try:
            d = mounts.new(conf).start()
            both = {ps.tinyproxy.uri, ps.socks5.uri}
            wait_until(lambda: d.live() == both, READY_TIMEOUT, "both live")

            srv.route("/l.txt", "# maintenance, back soon\n", etag='"b"')
            fetches = source_stat(d, "remote")["fetches"]
            d.sync()
            wait_until(lambda: source_stat(d, "remote")["fetches"] > fetches, READY_TIMEOUT,
                       "the list downloaded again")
            stat = source_stat(d, "remote")
            assert stat["error"] and "kept" in stat["error"], stat
            assert stat["proxies"] == 2, stat
            d.sync()
            assert d.live() == both

            srv.route("/l.txt", "%s\n" % ps.socks5.line, etag='"c"')
            d.sync()
            wait_until(lambda: d.live() == {ps.socks5.uri}, READY_TIMEOUT, "the new list")
            assert source_stat(d, "remote")["error"] is None
            sent = [h.get("If-None-Match") for p, h in srv.requests if p == "/l.txt"]
            assert '"b"' not in sent, sent
            d.stop()
        finally:
            mounts.cleanup()
