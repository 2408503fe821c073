"""Config reloads seen from the mount: `echo reload > control/reload` and
SIGHUP re-read the config file, and the sources it names are added,
changed and removed without a remount, while readers keep what they
opened; a file that does not parse is refused with EINVAL and changes
nothing.

Each test runs a daemon of its own over lists served by listserver.py on
127.0.0.1 (plus a local file in one test), naming the peer set's proxies,
so every live set is known exactly. Each waits for what a reload should
bring by polling, with a deadline.
"""

import errno
import os
import signal

import pytest

from conftest import Mounts, call_with_deadline, mount_ids, wait_until
from listserver import ListServer
from test_sources_remote import source_live, source_stat, write_conf

READY_TIMEOUT = 30.0   # downloads, the judge probe and the first checks
RELOAD_TIMEOUT = 20.0  # a reload's downloads and checks


@pytest.fixture(scope="module")
def list_srv():
    with ListServer() as srv:
        yield srv


class Setup:
    """One test's lists, config and daemon."""

    def __init__(self, binary, peer_set, srv, tmp):
        self.ps = peer_set
        self.srv = srv
        self.tmp = tmp
        self.paths = []
        self.mounts = Mounts(binary, tmp)
        self.conf = None
        self.d = None

    def serve(self, name, peers_listed):
        """Serves a list of the given peers, with an ETag so that a refresh
        after a reload gets a 304 and changes nothing; returns its URL."""
        path = "/%s-%s.txt" % (os.path.basename(self.tmp), name)
        self.srv.route(path, "".join("%s\n" % p.line for p in peers_listed),
                       etag='"%s"' % name)
        self.paths.append(path)
        return self.srv.url(path)

    def configure(self, sources, **check):
        """Writes the config: sources is [(name, url)]."""
        self.conf = write_conf(self.tmp, self.ps.judge,
                               [(n, {"url": u}) for n, u in sources], check=check)

    def start(self, want):
        self.d = self.mounts.new(self.conf).start()
        self.wait_live(want, READY_TIMEOUT)
        return self.d

    def wait_live(self, want, timeout=RELOAD_TIMEOUT):
        want = {p.uri for p in want}
        wait_until(lambda: self.d.live() == want, timeout, "live.txt == %r" % sorted(want))

    def reload(self):
        data = "reload\n"
        assert self.d.write("control/reload", data) == len(data)

    def close(self):
        try:
            if self.d is not None and self.d.running():
                self.d.stop()
        finally:
            self.mounts.cleanup()
            for path in self.paths:
                self.srv.remove(path)


@pytest.fixture
def setup(binary, peer_set, list_srv, tmp_path):
    s = Setup(binary, peer_set, list_srv, str(tmp_path))
    try:
        yield s
    finally:
        s.close()


def uris(*peer_list):
    return {p.uri for p in peer_list}


def refusals(d):
    """The log lines refusing a reload, from the whole log (Daemon.log()
    keeps only its tail)."""
    with open(d.logpath, "rb") as f:
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if "reload refused" in line]


def held_open(d, rel):
    return call_with_deadline(lambda: os.open(d.path(rel), os.O_RDONLY), what="open " + rel)


def read_to_end(fd):
    def run():
        chunks = []
        while True:
            b = os.read(fd, 7)  # small reads: many calls into the snapshot held open
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    return call_with_deadline(run, what="reading a held file")


def test_reload_adds_a_source_while_a_reader_holds_live_txt(setup):
    ps = setup.ps
    a = setup.serve("a", [ps.tinyproxy, ps.socks5])
    new = setup.serve("new", [ps.socks4, ps.tunnel])
    setup.configure([("a", a)])
    d = setup.start([ps.tinyproxy, ps.socks5])
    mounted, pid = mount_ids(d.mnt), d.proc.pid
    assert "new" not in d.listdir("sources")

    before = d.read("live.txt")
    fd = held_open(d, "live.txt")
    try:
        first = call_with_deadline(lambda: os.read(fd, 5), what="reading a held file")
        setup.configure([("a", a), ("new", new)])
        setup.reload()
        setup.wait_live([ps.tinyproxy, ps.socks5, ps.socks4, ps.tunnel])
        rest = read_to_end(fd)
    finally:
        os.close(fd)
    assert first + rest == before, "a reader open across the reload saw the new pool"
    assert set(before.decode().splitlines()) == uris(ps.tinyproxy, ps.socks5)

    assert sorted(d.listdir("sources")) == ["a", "new"]
    assert source_live(d, "new") == uris(ps.socks4, ps.tunnel)
    assert source_live(d, "a") == uris(ps.tinyproxy, ps.socks5)
    assert d.read_text("sources/new/random").rstrip("\n") in uris(ps.socks4, ps.tunnel)
    s = source_stat(d, "new")
    assert s["url"] == new and s["proxies"] == 2 and s["error"] is None, s
    assert mount_ids(d.mnt) == mounted and d.proc.pid == pid, "the reload remounted"


def test_reload_with_a_changed_url_replaces_that_sources_proxies(setup):
    ps = setup.ps
    a1 = setup.serve("a1", [ps.tinyproxy, ps.socks5])
    a2 = setup.serve("a2", [ps.socks5_auth, ps.tunnel])
    b = setup.serve("b", [ps.socks4])
    setup.configure([("a", a1), ("b", b)])
    d = setup.start([ps.tinyproxy, ps.socks5, ps.socks4])

    setup.configure([("a", a2), ("b", b)])
    setup.reload()
    setup.wait_live([ps.socks5_auth, ps.tunnel, ps.socks4])
    assert source_live(d, "a") == uris(ps.socks5_auth, ps.tunnel)
    assert source_live(d, "b") == uris(ps.socks4)
    assert source_stat(d, "a")["url"] == a2
    assert sorted(d.listdir("sources")) == ["a", "b"]


def test_reload_removing_a_source_drops_only_the_proxies_it_alone_listed(setup):
    ps = setup.ps
    a = setup.serve("a", [ps.tinyproxy, ps.socks5])
    # b is a local file: both kinds of source go the same way.
    b = os.path.join(setup.tmp, "b.txt")
    with open(b, "w") as f:
        f.write("%s\n%s\n" % (ps.socks5.line, ps.socks4.line))
    setup.configure([("a", a), ("b", b)])
    d = setup.start([ps.tinyproxy, ps.socks5, ps.socks4])
    wait_until(lambda: {u: sorted(p) for u, p in live_sources(d).items()}.get(ps.socks5.uri)
               == ["a", "b"], RELOAD_TIMEOUT, "socks5 listed by both sources")

    setup.configure([("a", a)])
    setup.reload()
    setup.wait_live([ps.tinyproxy, ps.socks5])
    assert live_sources(d)[ps.socks5.uri] == ["a"]
    assert sorted(d.listdir("sources")) == ["a"]
    with pytest.raises(FileNotFoundError):
        d.stat("sources/b")
    assert [s["name"] for s in d.read_json("stat.json")["sources"]] == ["a"]
    # A rescan afterwards does not bring the removed source back.
    d.sync()
    assert d.live() == uris(ps.tinyproxy, ps.socks5)


def live_sources(d):
    return {p["uri"]: p["sources"] for p in d.read_json("live.json")}


def test_reload_refuses_a_config_that_does_not_parse(setup):
    ps = setup.ps
    a = setup.serve("a", [ps.tinyproxy, ps.socks5])
    setup.configure([("a", a)])
    d = setup.start([ps.tinyproxy, ps.socks5])
    live, sources = d.read("live.txt"), d.read_json("stat.json")["sources"]
    good_conf = open(setup.conf).read()

    with open(setup.conf, "w") as f:
        f.write(good_conf + "\n[source:broken\nurl = %s\n" % a)
    with pytest.raises(OSError) as err:
        setup.reload()
    assert err.value.errno == errno.EINVAL, err.value
    where = "%s:%d:" % (setup.conf, good_conf.count("\n") + 2)  # the broken header's line
    assert len(refusals(d)) == 1 and where in refusals(d)[0], \
        "the refusal is not logged with %s:\n%s" % (where, d.log())

    assert d.read("live.txt") == live
    assert d.read_json("stat.json")["sources"] == sources
    assert d.listdir("sources") == ["a"]
    assert source_live(d, "a") == uris(ps.tinyproxy, ps.socks5)
    assert d.read_text("health") == "ok\n"

    # SIGHUP has no caller to tell: the refusal is only logged.
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(refusals(d)) == 2, RELOAD_TIMEOUT,
               "the SIGHUP reload refused in the log")
    assert d.running()
    assert d.read("live.txt") == live
    assert d.read_json("stat.json")["sources"] == sources
    d.sync()
    assert d.live() == uris(ps.tinyproxy, ps.socks5)


def test_sighup_applies_a_valid_edit(setup):
    ps = setup.ps
    a = setup.serve("a", [ps.tinyproxy])
    c = setup.serve("c", [ps.socks4, ps.socks5])
    setup.configure([("a", a)])
    d = setup.start([ps.tinyproxy])
    mounted = mount_ids(d.mnt)
    assert d.read_json("stat.json")["engine"]["concurrency_configured"] == 100

    setup.configure([("a", a), ("c", c)], concurrency=37)
    d.proc.send_signal(signal.SIGHUP)
    setup.wait_live([ps.tinyproxy, ps.socks4, ps.socks5])
    assert source_live(d, "c") == uris(ps.socks4, ps.socks5)
    assert d.read_json("stat.json")["engine"]["concurrency_configured"] == 37
    assert "proxyfs_check_concurrency_configured 37" in d.read_text("metrics")
    assert mount_ids(d.mnt) == mounted and d.running()
