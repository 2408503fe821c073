"""One HTTP proxy listed both http:// and https://: each way gets its own
check and grade.

tinyproxy adds Via to the requests it forwards, but not to a CONNECT
tunnel's bytes: through plain HTTP it is anonymous, through the tunnel
elite. Listed both ways it must not land in anonymity/elite (a user who
picks elite for plain HTTP would leak the header); live.json shows both
grades. The same tinyproxy without Via is elite both ways; one listed
only https:// keeps its tunnel's grade. A restart with the judge gone
shows the same from the database.
"""

import pytest

import judging
from conftest import Mounts, wait_until


class Setup:
    def __init__(self, binary, tmp):
        self.peers = []
        self.mounts = Mounts(binary, tmp)
        try:
            self.judge = judging.start_judge(binary, tmp)
            self.via = self._keep(judging.tinyproxy(tmp, "127.0.0.61"))
            self.plain = self._keep(judging.tinyproxy(tmp, "127.0.0.62", via=False))
            self.tunnel_only = self._keep(judging.tinyproxy(tmp, "127.0.0.63"))
            lines = [self.via.uri, https(self.via), https(self.plain), self.plain.uri,
                     https(self.tunnel_only)]
            lst = judging.write_list(tmp, lines)
            self.conf = judging.write_conf(tmp, [self.judge.url], lst)
        except BaseException:
            self.close()
            raise

    def _keep(self, peer):
        self.peers.append(peer)
        return peer

    def close(self):
        try:
            self.mounts.cleanup()
        finally:
            for p in self.peers:
                p.stop()
            if getattr(self, "judge", None):
                self.judge.kill()


def https(peer):
    return "https://%s:%d" % (peer.host, peer.port)


@pytest.fixture
def ways(binary, tmp_path):
    s = Setup(binary, str(tmp_path))
    try:
        yield s
    finally:
        s.close()


def check_tree(s, d):
    live = {e["uri"]: e for e in d.read_json("live.json")}
    uris = [s.via.uri, s.plain.uri, s.tunnel_only.uri]
    assert sorted(live) == sorted(uris)
    assert sorted(d.read_lines("live.txt")) == sorted(uris)  # each proxy once

    v = live[s.via.uri]
    assert v["anonymity"] == "anonymous", v
    assert v["anonymity_by_protocol"] == {"http": "anonymous", "https": "elite"}, v
    p = live[s.plain.uri]
    assert p["anonymity"] == "elite" and "anonymity_by_protocol" not in p, p
    t = live[s.tunnel_only.uri]
    assert t["anonymity"] == "elite" and "anonymity_by_protocol" not in t, t
    for e in (v, p):
        assert e["sources"] == ["local"], e

    assert d.live("anonymity/elite/live.txt") == {s.plain.uri, s.tunnel_only.uri}
    assert d.live("anonymity/anonymous/live.txt") == {s.via.uri}
    assert d.live("https/live.txt") == set(uris)
    assert {s.via.uri, s.plain.uri} <= d.live("http/live.txt")
    stat = d.read_json("stat.json")
    assert stat["pool"]["total"] == 3 and stat["pool"]["alive"] == 3, stat["pool"]
    assert stat["sources"][0]["alive"] == 3, stat["sources"]


def test_each_way_its_own_grade(ways):
    d = ways.mounts.new(ways.conf).start()
    d.sync()
    check_tree(ways, d)
    d.stop()

    # From the database, with nothing checked again.
    assert ways.judge.stop() == 0, ways.judge.log()
    d = ways.mounts.new(ways.conf).start()
    check_tree(ways, d)
    wait_until(lambda: d.read_text("health").startswith("degraded: no judge reachable"),
               15, "health to say no judge is reachable")
    check_tree(ways, d)
    d.stop()


def test_remove_http_line_takes_both_ways(ways):
    d = ways.mounts.new(ways.conf).start()
    d.sync()
    d.write("control/remove", ways.via.uri + "\n")
    wait_until(lambda: ways.via.uri not in d.live(), 15, "%s gone" % ways.via.uri)
    d.sync()
    assert ways.via.uri not in d.live("https/live.txt")
    assert d.live() == {ways.plain.uri, ways.tunnel_only.uri}
    d.stop()


def test_dropping_one_way_leaves_the_other(ways, tmp_path):
    d = ways.mounts.new(ways.conf).start()
    d.sync()
    assert d.live("anonymity/anonymous/live.txt") == {ways.via.uri}
    # The list keeps only the https:// line: the tunnel's grade is all left.
    judging.write_list(str(tmp_path), [https(ways.via), ways.plain.uri])
    d.sync()
    live = {e["uri"]: e for e in d.read_json("live.json")}
    assert sorted(live) == sorted([ways.via.uri, ways.plain.uri])
    assert live[ways.via.uri]["anonymity"] == "elite", live[ways.via.uri]
    assert "anonymity_by_protocol" not in live[ways.via.uri]
    assert d.live("anonymity/elite/live.txt") == {ways.via.uri, ways.plain.uri}
    assert d.read_json("stat.json")["pool"]["total"] == 2
    d.stop()
