"""Countries in every front: /country/ on the mount and over HTTP, the
HTTP query's country=, country=!XX and asn=, and the gateway's
-country-xx, over real proxies whose exits the test's own MaxMind DB
(tests/geo/mmdb_write.py, written by test_geo's write_dbs) maps to
countries.

Each proxy listens at an address of one country and connects out from
another's (microsocks -b, tinyproxy Bind), so a proxy shows up under the
country of its exit; one proxy's addresses are in no database (unknown).
test_geo.py covers the fields themselves, exit versus entry and the
databases changing; this file what users filter with.
"""

import json
import os
import re
import subprocess
import urllib.error
import urllib.request

import pytest

import judging
import peers
from conftest import Mounts
from test_geo import DE_NET, FR_NET, NETS, UNMAPPED_NET, write_dbs

HTTP_TIMEOUT = 10


class Pool:
    """A judge, four proxies (two exit in FR, one in DE, one unknown), the
    test databases, and one daemon with the mount, the HTTP front and the
    gateway, synced with every proxy live."""

    def __init__(self, binary, tmp):
        self.tmp = tmp
        self.peers = []
        self.judge = None
        self.mounts = Mounts(binary, tmp)
        try:
            self._start(tmp)
        except BaseException:
            self.close()
            raise

    def _keep(self, peer):
        self.peers.append(peer)
        return peer

    def _start(self, tmp):
        self.judge = judging.start_judge(self.mounts.binary, tmp)
        # Listed in one country, out from the other (the exit is what counts).
        self.s5_fr = self._keep(judging.microsocks(tmp, DE_NET + ".21", bind=FR_NET + ".21"))
        self.tp_fr = self._keep(judging.tinyproxy(tmp, DE_NET + ".22", bind=FR_NET + ".22"))
        self.s5_de = self._keep(judging.microsocks(tmp, FR_NET + ".23", bind=DE_NET + ".23"))
        self.s5_none = self._keep(judging.microsocks(tmp, UNMAPPED_NET + ".24",
                                                     bind=UNMAPPED_NET + ".25"))
        geo_dir = os.path.join(tmp, "geo")
        os.makedirs(geo_dir)
        country_db, asn_db = write_dbs(geo_dir, "geolite2")
        lst = judging.write_list(tmp, [p.line for p in self.peers])
        conf = judging.write_conf(tmp, [self.judge.url], lst)
        self.http = "127.0.0.1:%d" % peers.free_port("127.0.0.1")
        self.gateway = "127.0.0.1:%d" % peers.free_port("127.0.0.1")
        with open(conf, "a") as f:
            f.write("\n[geo]\ncountry_db = %s\nasn_db = %s\n" % (country_db, asn_db))
            f.write("\n[http]\nlisten = %s\n" % self.http)
            f.write("\n[gateway]\nlisten = %s\n" % self.gateway)
        self.d = self.mounts.new(conf).start()
        self.d.sync()
        live = {e["uri"]: e for e in self.d.read_json("live.json")}
        assert set(live) == {p.uri for p in self.peers}, self.d.read_text("all.json")
        # The databases say where each exits (test_geo proves the lookups).
        want = {self.s5_fr.uri: "FR", self.tp_fr.uri: "FR", self.s5_de.uri: "DE",
                self.s5_none.uri: None}
        assert {u: e["country"] for u, e in live.items()} == want, live

    def uris(self, *peers_):
        return {p.uri for p in peers_}

    def get(self, path):
        """GET over the HTTP front: (status, body text)."""
        try:
            with urllib.request.urlopen("http://%s%s" % (self.http, path),
                                        timeout=HTTP_TIMEOUT) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def get_set(self, path):
        status, body = self.get(path)
        assert status == 200, (path, status, body)
        return set(body.split())

    def close(self):
        try:
            self.mounts.cleanup()
        finally:
            for p in self.peers:
                p.stop()
            if self.judge is not None:
                self.judge.kill()


@pytest.fixture(scope="module")
def pool(binary, tmp_path_factory):
    old = os.environ.get("PROXYFS_GEO_DIRS")
    os.environ["PROXYFS_GEO_DIRS"] = ""  # no database of the machine's leaks in
    p = None
    try:
        p = Pool(binary, str(tmp_path_factory.mktemp("country")))
        yield p
    finally:
        if p is not None:
            p.close()
        if old is None:
            del os.environ["PROXYFS_GEO_DIRS"]
        else:
            os.environ["PROXYFS_GEO_DIRS"] = old


# --- the tree ---

def test_country_folders_on_the_mount(pool):
    """ls country/ lists the countries present, upper case, unknown last;
    each folder's files hold its proxies; lower case names the same folder;
    a country with no proxy is an empty folder (empty files)."""
    d = pool.d
    assert d.listdir("country") == ["DE", "FR", "unknown"]
    assert sorted(d.listdir("country/FR")) == ["live.txt", "next", "random", "session"]
    fr = pool.uris(pool.s5_fr, pool.tp_fr)
    assert d.live("country/FR/live.txt") == fr
    assert d.live("country/fr/live.txt") == fr
    assert d.live("country/DE/live.txt") == pool.uris(pool.s5_de)
    assert d.live("country/unknown/live.txt") == pool.uris(pool.s5_none)
    assert d.live("country/Unknown/live.txt") == pool.uris(pool.s5_none)
    for _ in range(6):
        assert d.read_text("country/fr/random").strip() in fr
    got = {d.read_text("country/FR/next").strip() for _ in range(4)}
    assert got == fr
    key = d.read_text("country/FR/session/job7").strip()
    assert key in fr
    assert all(d.read_text("country/fr/session/job7").strip() == key for _ in range(5))
    assert d.read_text("country/DE/session/job7").strip() == pool.s5_de.uri
    # Nobody in CN: an empty folder, not an error.
    assert d.read_text("country/CN/random") == ""
    assert d.read_text("country/cn/live.txt") == ""
    assert d.read_text("country/CN/session/job7") == ""
    for bad in ("country/DEU", "country/D", "country/F1/random", "country/FR/other"):
        assert not os.path.exists(d.path(bad)), bad


def test_country_folders_over_http(pool):
    """The HTTP front serves the same folders: the listing, the lists,
    the picks, lower case; a pick in an empty country is a 404."""
    status, body = pool.get("/country")
    assert (status, body.split()) == (200, ["DE", "FR", "unknown"])
    status, body = pool.get("/country?format=json")
    assert (status, json.loads(body)) == (200, ["DE", "FR", "unknown"])
    fr = pool.uris(pool.s5_fr, pool.tp_fr)
    assert pool.get_set("/country/FR/live.txt") == fr
    assert pool.get_set("/country/fr/live.txt") == fr
    assert pool.get_set("/country/unknown/live.txt") == pool.uris(pool.s5_none)
    assert pool.get_set("/country/de/random") == pool.uris(pool.s5_de)
    assert pool.get_set("/country/FR/random?count=5") == fr
    assert pool.get_set("/country/FR/session/h1") <= fr
    assert pool.get("/country/CN/random") == (404, "")
    assert pool.get("/country/CN/live.txt") == (200, "")
    # A folder and a query narrow together.
    assert pool.get_set("/country/FR/live.txt?protocol=socks5") == pool.uris(pool.s5_fr)
    assert pool.get("/country/FR/live.txt?country=!FR") == (200, "")
    assert pool.get_set("/country/FR/live.txt?country=!CN") == fr
    status, body = pool.get("/country/FR/live.txt?format=json")
    assert status == 200
    assert {e["uri"]: e["country"] for e in json.loads(body)} == {u: "FR" for u in fr}


# --- the HTTP query ---

def test_country_query(pool):
    """country=DE,FR takes either; country=!FR everything else (unknown
    too); country=unknown those of no known country; codes in any case."""
    all_ = pool.uris(*pool.peers)
    fr = pool.uris(pool.s5_fr, pool.tp_fr)
    assert pool.get_set("/live.txt?country=FR") == fr
    assert pool.get_set("/live.txt?country=fr,de") == fr | pool.uris(pool.s5_de)
    assert pool.get_set("/live.txt?country=FR&country=DE") == fr | pool.uris(pool.s5_de)
    assert pool.get_set("/live.txt?country=!FR") == all_ - fr
    assert pool.get_set("/live.txt?country=!fr,!DE") == pool.uris(pool.s5_none)
    assert pool.get_set("/live.txt?country=!CN") == all_
    assert pool.get_set("/live.txt?country=unknown") == pool.uris(pool.s5_none)
    assert pool.get_set("/live.txt?country=!unknown") == fr | pool.uris(pool.s5_de)
    assert pool.get("/live.txt?country=CN") == (200, "")
    for _ in range(6):
        assert pool.get_set("/random?country=!FR") <= all_ - fr
    assert pool.get_set("/random?country=!FR&count=10") == all_ - fr
    assert pool.get("/random?country=CN") == (404, "")
    assert pool.get_set("/next?country=DE") == pool.uris(pool.s5_de)
    assert pool.get_set("/socks5/live.txt?country=FR") == pool.uris(pool.s5_fr)
    status, body = pool.get("/live.json?country=DE")
    assert status == 200
    assert [(e["uri"], e["asn"]) for e in json.loads(body)] == [(pool.s5_de.uri, NETS["DE"][1])]


def test_asn_query(pool):
    """asn= takes the networks of the exits, with or without AS."""
    fr_asn, de_asn = NETS["FR"][1], NETS["DE"][1]
    fr = pool.uris(pool.s5_fr, pool.tp_fr)
    assert pool.get_set("/live.txt?asn=%d" % fr_asn) == fr
    assert pool.get_set("/live.txt?asn=AS%d,%d" % (fr_asn, de_asn)) == fr | pool.uris(pool.s5_de)
    assert pool.get_set("/live.txt?asn=%d&country=FR" % de_asn) == set()
    assert pool.get("/random?asn=64512") == (404, "")


@pytest.mark.parametrize("query,word", [
    ("country=!FR,DE", "DE"), ("country=FR,!DE", "!DE"), ("country=!FR&country=DE", "DE"),
    ("country=FRA", "FRA"), ("country=1", "country"), ("country=", "country"),
    ("asn=x", "asn"), ("asn=0", "asn"), ("asn=", "asn"),
])
def test_bad_country_or_asn_is_400(pool, query, word):
    status, body = pool.get("/live.txt?" + query)
    assert status == 400, (query, status, body)
    assert word in body, (query, body)


# --- the gateway ---

def curl_gateway(pool, user):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "-x", "socks5h://" + pool.gateway,
                        "--proxy-user", user + ":x", pool.judge.url],
                       capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def remote_addr(body):
    m = re.search(r"^remote_addr (\S+)$", body, re.M)
    return m.group(1) if m else None


def test_gateway_country_option(pool):
    """USER-country-de goes out only through proxies exiting in DE (as
    country=DE); -country-fr through FR's; -country-unknown through the
    unknown one; a country with none fails the connection."""
    # The exits the judge sees for each country's tunnel-capable upstreams
    # (microsocks; the tinyproxy is listed http://, not proven to CONNECT).
    for user, want in (("alice-country-de", {DE_NET + ".23"}),
                       ("alice-country-FR", {FR_NET + ".21"}),
                       ("country-unknown-session-g1", {UNMAPPED_NET + ".25"})):
        for _ in range(4):
            rc, out, err = curl_gateway(pool, user)
            assert rc == 0, (user, err)
            assert remote_addr(out) in want, (user, out)
    rc, out, err = curl_gateway(pool, "alice-country-cn")
    assert rc != 0, out
    rc, out, err = curl_gateway(pool, "alice-country-xyz")
    assert rc != 0, out
