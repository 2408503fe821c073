"""Anonymity and exit addresses, from `proxyfs judge`'s echo through real
proxies.

The daemon probes the judge directly and learns that it shows as
127.0.0.1. Every proxy here but one connects out from 127.0.0.2, so the
judge names that as the exit address; which class a proxy lands in then
depends only on the headers it adds: none (elite), Via (anonymous), or an
X-Forwarded-For carrying 127.0.0.1 (transparent). A proxy connecting out
from 127.0.0.1 itself is transparent by its client address alone. squid,
when installed, is checked both ways (no headers: elite; its defaults put
our address in X-Forwarded-For: transparent).

One daemon serves the module; it is synced once, and the last test
restarts it to see the classes come back from the database.
"""

import pytest

import judging
from conftest import Mounts, wait_until
from judging import OUR, PROXY_OUT

CLASSES = ("elite", "anonymous", "transparent")


class Case:
    """A proxy and what the judge must make of it."""

    def __init__(self, peer, anonymity, exit_ip):
        self.peer = peer
        self.uri = peer.uri
        self.anonymity = anonymity
        self.exit_ip = exit_ip


class AnonSetup:
    def __init__(self, binary, tmp):
        self.tmp = tmp
        self.stoppable = []
        self.cases = []
        self.squid = []
        self.mounts = Mounts(binary, tmp)
        try:
            self._start(binary)
        except BaseException:
            self.close()
            raise

    def _keep(self, peer):
        self.stoppable.append(peer)
        return peer

    def _case(self, peer, anonymity, exit_ip=PROXY_OUT):
        self.cases.append(Case(self._keep(peer), anonymity, exit_ip))

    def _start(self, binary):
        tmp = self.tmp
        self.judge = self._keep(judging.start_judge(binary, tmp))
        self._case(judging.tinyproxy(tmp, "127.0.0.51", via=False), "elite")
        self._case(judging.tinyproxy(tmp, "127.0.0.52"), "anonymous")
        self._case(judging.tinyproxy(tmp, "127.0.0.53", via=False, add_xff=OUR), "transparent")
        self._case(judging.microsocks(tmp, "127.0.0.54"), "elite")
        self._case(judging.danted(tmp, "127.0.0.55"), "elite")
        self._case(judging.microsocks(tmp, "127.0.0.58", bind=None), "transparent", OUR)
        if judging.have_squid():
            self._case(judging.Squid(tmp, "127.0.0.56", headers=False), "elite")
            self._case(judging.Squid(tmp, "127.0.0.57"), "transparent")
            self.squid = self.cases[-2:]
        self.dead = judging.closed_url("127.0.0.59").rstrip("/")
        for c in self.cases:
            rc, out = judging.curl_via(c.uri, self.judge.url)
            assert rc == 0 and out.startswith("proxyfs-judge"), \
                "%s does not reach the judge (curl %d): %s" % (c.uri, rc, out)
        lst = judging.write_list(tmp, [c.peer.line for c in self.cases] + [self.dead])
        self.conf = judging.write_conf(tmp, [self.judge.url], lst)
        self.d = self.mounts.new(self.conf).start()
        self.d.sync()

    def by_class(self, cls):
        return {c.uri for c in self.cases if c.anonymity == cls}

    def close(self):
        try:
            self.mounts.cleanup()
        finally:
            for c in self.squid:
                c.peer.terminate()  # squid takes a second to go: all at once
            for p in reversed(self.stoppable):
                if isinstance(p, judging.Judge):
                    p.kill()
                else:
                    p.stop()


@pytest.fixture(scope="module")
def anon(binary, tmp_path_factory):
    s = AnonSetup(binary, str(tmp_path_factory.mktemp("anon")))
    try:
        yield s
        if s.d.running():
            s.d.stop()
    finally:
        s.close()


def live_by_uri(d):
    return {e["uri"]: e for e in d.read_json("live.json")}


def check_cases(cases, live):
    for c in cases:
        assert c.uri in live, "%s is not alive; live: %s\nlog:\n%s" % (
            c.uri, sorted(live), c.peer.log())
        got = (live[c.uri]["anonymity"], live[c.uri]["exit_ip"])
        assert got == (c.anonymity, c.exit_ip), "%s: %s, expected %s" % (
            c.uri, got, (c.anonymity, c.exit_ip))


def test_judge_sees_our_address(anon):
    judges = anon.d.read_json("stat.json")["judges"]
    assert len(judges) == 1
    j = judges[0]
    assert j["url"] == anon.judge.url
    assert j["healthy"] is True and j["error"] is None
    assert j["our_address"] == OUR
    assert j["checks"] >= len(anon.cases) + 1
    assert j["alive"] >= len(anon.cases)


def test_each_proxy_gets_its_class_and_exit(anon):
    live = live_by_uri(anon.d)
    assert set(live) == {c.uri for c in anon.cases}
    check_cases(anon.cases, live)


def test_anonymity_folders_hold_exactly_their_class(anon):
    assert sorted(anon.d.listdir("anonymity")) == sorted(CLASSES)
    for cls in CLASSES:
        want = anon.by_class(cls)
        assert want, "no %s proxy in the setup" % cls
        assert anon.d.live("anonymity/%s/live.txt" % cls) == want, cls
        for name in ("random", "next"):
            got = anon.d.read_text("anonymity/%s/%s" % (cls, name))
            assert got.endswith("\n") and got[:-1] in want, "%s/%s: %r" % (cls, name, got)


def test_squid_headers_decide_its_class(anon):
    if not judging.have_squid():
        pytest.skip("squid is not installed (apt-get install squid)")
    check_cases(anon.squid, live_by_uri(anon.d))


def test_classes_come_back_from_the_database(anon):
    """A restart serves each proxy's class and exit address from the
    database: with the judge gone nothing is checked again, so what shows
    is what was stored."""
    anon.d.stop()
    assert anon.judge.stop() == 0, anon.judge.log()
    d = anon.mounts.new(anon.conf).start()
    anon.d = d
    live = live_by_uri(d)
    assert set(live) == {c.uri for c in anon.cases}
    check_cases(anon.cases, live)
    for cls in CLASSES:
        assert d.live("anonymity/%s/live.txt" % cls) == anon.by_class(cls), cls
    wait_until(lambda: d.read_text("health").startswith("degraded: no judge reachable"),
               15, "health to say no judge is reachable")
    assert live_by_uri(d) == live
