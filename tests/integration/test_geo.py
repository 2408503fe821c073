"""Geo end to end: the country and network of each proxy's exit, from
MaxMind DB files the tests write themselves (tests/geo/mmdb_write.py).

Real proxies listen at an address of one test "country" and connect out
from another (tinyproxy `Bind`, microsocks `-b`): `proxyfs judge` echoes
the exit address, and live.json must show the exit's country and network,
not the entry's. With a judge that echoes no address, the entry's country
is shown instead (geo_from "entry"). Databases are replaced by rename while
mounted (seen within 15 s, at once after control/reload), deleted or
corrupted later (health degraded, the pool and the last good database
kept), bad at start (exit 2 naming the file), and found without [geo] in
the directories PROXYFS_GEO_DIRS names, which stat.json then shows.

Every daemon here runs with PROXYFS_GEO_DIRS set (empty unless a test
says otherwise), so databases on the machine never leak in.
"""

import datetime
import http.server
import os
import subprocess
import sys
import threading

import pytest

import judging
from conftest import Mounts, is_mounted, lazy_unmount, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "geo"))
import mmdb_write  # noqa: E402

# The test's map of loopback: each /24 a country and a network.
DE_NET, FR_NET, UNMAPPED_NET = "127.15.1", "127.15.2", "127.15.3"
NETS = {
    "DE": (DE_NET + ".0/24", 3320, "Deutsche Telekom AG"),
    "FR": (FR_NET + ".0/24", 3215, "Orange S.A."),
}
# What the exit range maps to in the databases swapped in later.
SWAPS = {"IT": (12874, "Fastweb SpA"), "ES": (3352, "Telefonica de Espana")}
EPOCHS = {"v1": 1700000000, "v2": 1710000000, "v3": 1720000000}
SWAP_TIMEOUT = 15 + 5   # the 15 s, and the publish after it
HEALTH_TIMEOUT = 15 + 5


def iso_date(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d")


def write_dbs(geo_dir, layout, fr_net_as=None, epoch=EPOCHS["v1"], names=None):
    """Writes the test's databases into geo_dir (renamed over any old ones);
    returns (country_db, asn_db) paths. layout "geolite2": two files,
    country.iso_code, an IPv6 tree; "ip-location-db": one file holding
    country_code and the ASN keys, an IPv4-only tree. fr_net_as: (code,
    asn, org) the exit range maps to instead of FR's."""
    entries = [(code, net, asn, org) for code, (net, asn, org) in NETS.items()]
    if fr_net_as:
        entries = [e for e in entries if e[0] != "FR"] + [(fr_net_as[0], NETS["FR"][0]) + fr_net_as[1:]]
    names = names or {}
    if layout == "geolite2":
        country = os.path.join(geo_dir, names.get("country", "GeoLite2-Country.mmdb"))
        asn = os.path.join(geo_dir, names.get("asn", "GeoLite2-ASN.mmdb"))
        mmdb_write.write(country, [(net, {"country": {"iso_code": code, "names": {"en": code}},
                                          "continent": {"code": "EU"}})
                                   for code, net, _, _ in entries],
                         ip_version=6, record_size=28, database_type="GeoLite2-Country",
                         build_epoch=epoch)
        mmdb_write.write(asn, [(net, {"autonomous_system_number": n,
                                      "autonomous_system_organization": org})
                               for _, net, n, org in entries],
                         ip_version=6, record_size=28, database_type="GeoLite2-ASN",
                         build_epoch=epoch)
        return country, asn
    both = os.path.join(geo_dir, names.get("country", "country-asn.mmdb"))
    mmdb_write.write(both, [(net, {"country_code": code, "autonomous_system_number": n,
                                   "autonomous_system_organization": org})
                            for code, net, n, org in entries],
                     ip_version=4, record_size=24, database_type="ip-location-db",
                     build_epoch=epoch)
    return both, both


class SilentJudge:
    """A judge answering the expected text and nothing else: no address
    echoed, so no exit is known for any proxy checked through it."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                body = (judging.EXPECT + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((judging.OUR, 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://%s:%d/" % self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Setup:
    """A judge, proxies that enter in one country and exit in another, and
    a geo directory; mounts made by the test are cleared at close."""

    def __init__(self, binary, tmp, silent_judge=False):
        self.tmp = tmp
        self.peers = []
        self.judge = None
        self.mounts = Mounts(binary, tmp)
        self.geo_dir = os.path.join(tmp, "geo")
        os.makedirs(self.geo_dir)
        try:
            if silent_judge:
                self.judge = SilentJudge()
            else:
                self.judge = judging.start_judge(binary, tmp)
            # Listed in DE, out from FR; and the other way round; and one
            # whose addresses no database maps.
            self.tp_de_fr = self._keep(judging.tinyproxy(tmp, DE_NET + ".1", bind=FR_NET + ".1"))
            self.ms_de_fr = self._keep(judging.microsocks(tmp, DE_NET + ".2", bind=FR_NET + ".2"))
            self.tp_fr_de = self._keep(judging.tinyproxy(tmp, FR_NET + ".3", bind=DE_NET + ".3"))
            self.tp_none = self._keep(judging.tinyproxy(tmp, UNMAPPED_NET + ".1",
                                                        bind=UNMAPPED_NET + ".2"))
            self.list = judging.write_list(tmp, [p.line for p in self.peers])
        except BaseException:
            self.close()
            raise

    def _keep(self, peer):
        self.peers.append(peer)
        return peer

    def conf(self, geo_lines, name="proxyfs.ini"):
        """A config with the [geo] lines given (None: no [geo] section)."""
        conf = judging.write_conf(self.tmp, [self.judge.url], self.list, name=name)
        if geo_lines is not None:
            with open(conf, "a") as f:
                f.write("\n[geo]\n" + "".join("%s\n" % line for line in geo_lines))
        return conf

    def close(self):
        try:
            self.mounts.cleanup()
        finally:
            for p in self.peers:
                p.stop()
            if isinstance(self.judge, SilentJudge):
                self.judge.stop()
            elif self.judge is not None:
                self.judge.kill()


@pytest.fixture
def no_geo_dirs(monkeypatch):
    """The daemons started by the test search no default place."""
    monkeypatch.setenv("PROXYFS_GEO_DIRS", "")


@pytest.fixture
def geo(binary, tmp_path, no_geo_dirs):
    s = Setup(binary, str(tmp_path))
    try:
        yield s
    finally:
        s.close()


def by_uri(d, rel="live.json"):
    return {e["uri"]: e for e in d.read_json(rel)}


def all_live(s, d):
    """Waits for every proxy of the setup to be live; returns live.json by URI."""
    d.sync()
    want = {p.uri for p in s.peers}
    wait_until(lambda: set(by_uri(d)) == want, 15, "all %d proxies live" % len(want))
    return by_uri(d)


def country_of(d, uri):
    return by_uri(d).get(uri, {}).get("country")


# --- exit versus entry ---

@pytest.mark.parametrize("layout", ["geolite2", "ip-location-db"])
def test_exit_country_not_entry(geo, layout):
    """Each proxy shows where its traffic leaves, as the judge saw it: the
    country, ASN and organisation of its exit address, geo_from "exit";
    a proxy whose addresses no database maps shows nulls and is counted
    "unknown". Both record layouts, in an IPv6 and an IPv4-only tree."""
    country_db, asn_db = write_dbs(geo.geo_dir, layout)
    d = geo.mounts.new(geo.conf(["country_db = " + country_db, "asn_db = " + asn_db])).start()
    live = all_live(geo, d)

    for p in (geo.tp_de_fr, geo.ms_de_fr):
        e = live[p.uri]
        assert e["exit_ip"] == FR_NET + ".%d" % (1 if p is geo.tp_de_fr else 2), e
        assert (e["country"], e["asn"], e["as_org"], e["geo_from"]) == \
            ("FR", 3215, "Orange S.A.", "exit"), e
    e = live[geo.tp_fr_de.uri]
    assert (e["exit_ip"], e["country"], e["asn"], e["as_org"], e["geo_from"]) == \
        (DE_NET + ".3", "DE", 3320, "Deutsche Telekom AG", "exit"), e
    e = live[geo.tp_none.uri]
    assert e["exit_ip"] == UNMAPPED_NET + ".2", e
    assert (e["country"], e["asn"], e["as_org"]) == (None, None, None), e

    allj = by_uri(d, "all.json")
    assert (allj[geo.tp_de_fr.uri]["country"], allj[geo.tp_de_fr.uri]["asn"],
            allj[geo.tp_de_fr.uri]["geo_from"]) == ("FR", 3215, "exit"), allj[geo.tp_de_fr.uri]

    # What the pool's fronts show follows the exit too.
    assert d.listdir("country") == ["DE", "FR", "unknown"]
    assert d.live("country/FR/live.txt") == {geo.tp_de_fr.uri, geo.ms_de_fr.uri}
    assert d.live("country/de/live.txt") == {geo.tp_fr_de.uri}
    assert d.live("country/unknown/live.txt") == {geo.tp_none.uri}
    stat = d.read_json("stat.json")
    assert stat["countries"] == {"FR": 2, "DE": 1, "unknown": 1}, stat["countries"]
    assert stat["geo"]["country_db"]["path"] == country_db, stat["geo"]
    assert stat["geo"]["asn_db"]["path"] == asn_db, stat["geo"]
    assert stat["geo"]["lookups_total"] >= 4, stat["geo"]
    metrics = d.read_text("metrics")
    assert 'proxyfs_live_proxies_by_country{country="FR"} 2' in metrics
    assert 'proxyfs_live_proxies_by_country{country="unknown"} 1' in metrics
    d.stop()


def test_entry_country_when_no_exit_is_known(binary, tmp_path, no_geo_dirs):
    """A judge that echoes no address leaves the exit unknown: the listed
    address is looked up instead, and geo_from says so."""
    s = Setup(binary, str(tmp_path), silent_judge=True)
    try:
        country_db, asn_db = write_dbs(s.geo_dir, "geolite2")
        d = s.mounts.new(s.conf(["country_db = " + country_db, "asn_db = " + asn_db])).start()
        live = all_live(s, d)
        for p, code, asn in ((s.tp_de_fr, "DE", 3320), (s.ms_de_fr, "DE", 3320),
                             (s.tp_fr_de, "FR", 3215)):
            e = live[p.uri]
            assert e["exit_ip"] is None, e
            assert (e["country"], e["asn"], e["geo_from"]) == (code, asn, "entry"), e
        e = live[s.tp_none.uri]
        assert (e["country"], e["asn"], e["as_org"]) == (None, None, None), e
        d.stop()
    finally:
        s.close()


def test_no_geo_means_nulls(geo):
    """Without a database every proxy's geo fields are null (not absent),
    and stat.json says no file is in use."""
    d = geo.mounts.new(geo.conf(None)).start()
    live = all_live(geo, d)
    for e in live.values():
        assert (e["country"], e["asn"], e["as_org"], e["geo_from"]) == (None, None, None, None), e
    stat = d.read_json("stat.json")
    assert stat["geo"]["country_db"]["path"] is None, stat["geo"]
    assert stat["geo"]["asn_db"]["path"] is None, stat["geo"]
    d.stop()


# --- databases changing under a running daemon ---

def test_database_swapped_while_mounted(geo):
    """A database renamed over the one in use is picked up without being
    told within 15 s, and at once after control/reload; stat.json shows
    the new build date."""
    country_db, asn_db = write_dbs(geo.geo_dir, "geolite2", epoch=EPOCHS["v1"])
    d = geo.mounts.new(geo.conf(["country_db = " + country_db, "asn_db = " + asn_db])).start()
    all_live(geo, d)
    uri = geo.tp_de_fr.uri
    assert country_of(d, uri) == "FR"
    assert d.read_json("stat.json")["geo"]["country_db"]["build_date"] == iso_date(EPOCHS["v1"])

    # Renamed over (as the fetch script installs): seen without a word.
    write_dbs(geo.geo_dir, "geolite2", fr_net_as=("IT",) + SWAPS["IT"], epoch=EPOCHS["v2"])
    wait_until(lambda: country_of(d, uri) == "IT", SWAP_TIMEOUT,
               "the swapped database's country for %s" % uri)
    wait_until(lambda: by_uri(d)[uri]["asn"] == SWAPS["IT"][0], SWAP_TIMEOUT,
               "the swapped database's ASN for %s" % uri)
    e = by_uri(d)[uri]
    assert (e["as_org"], e["geo_from"]) == (SWAPS["IT"][1], "exit"), e
    stat = d.read_json("stat.json")
    assert stat["geo"]["country_db"]["build_date"] == iso_date(EPOCHS["v2"]), stat["geo"]
    assert stat["geo"]["asn_db"]["build_date"] == iso_date(EPOCHS["v2"]), stat["geo"]
    assert stat["countries"] == {"IT": 2, "DE": 1, "unknown": 1}, stat["countries"]
    assert d.live("country/IT/live.txt") == {geo.tp_de_fr.uri, geo.ms_de_fr.uri}

    # And once more, told at once: reload, then a rescan waited for.
    write_dbs(geo.geo_dir, "geolite2", fr_net_as=("ES",) + SWAPS["ES"], epoch=EPOCHS["v3"])
    d.write("control/reload", "reload\n")
    d.sync()
    e = by_uri(d)[uri]
    assert (e["country"], e["asn"], e["as_org"]) == ("ES",) + SWAPS["ES"], e
    assert d.read_json("stat.json")["geo"]["country_db"]["build_date"] == iso_date(EPOCHS["v3"])
    d.stop()


def test_database_written_over_in_place(geo, tmp_path):
    """A database written over in place (truncated, then written: what cp
    does), not renamed over, while the daemon reads it: the read of the
    truncated file faults, which costs the daemon nothing; health names
    the file until it is whole again, then the new data is used."""
    country_db, asn_db = write_dbs(geo.geo_dir, "geolite2", epoch=EPOCHS["v1"])
    d = geo.mounts.new(geo.conf(["country_db = " + country_db, "asn_db = " + asn_db])).start()
    all_live(geo, d)
    uri = geo.tp_de_fr.uri
    assert country_of(d, uri) == "FR"
    staged = str(tmp_path / "staged")
    os.makedirs(staged)
    new_country, _ = write_dbs(staged, "geolite2", fr_net_as=("IT",) + SWAPS["IT"],
                               epoch=EPOCHS["v2"])

    os.truncate(country_db, 0)
    # A proxy new to the pool is looked up at the next publish, in the
    # truncated file.
    d.write("control/add", "socks5://127.0.0.9:1\n")
    d.sync()
    assert d.proc.poll() is None, "the daemon died reading the truncated database"
    wait_until(lambda: d.read_text("health").startswith("degraded: geo: %s" % country_db),
               HEALTH_TIMEOUT, "health to name %s" % country_db)
    with open(new_country, "rb") as src, open(country_db, "r+b") as dst:
        dst.write(src.read())  # in place: the same inode
    wait_until(lambda: country_of(d, uri) == "IT", SWAP_TIMEOUT,
               "the rewritten database's country for %s" % uri)
    wait_until(lambda: d.read_text("health").strip() == "ok", HEALTH_TIMEOUT, "health ok")
    assert d.proc.poll() is None
    d.stop()


def test_database_deleted_or_corrupted_later(geo):
    """A database that goes missing, or is replaced by a corrupt file,
    makes health degraded naming it while the pool keeps serving with the
    last good database; a good file back makes health ok again."""
    country_db, asn_db = write_dbs(geo.geo_dir, "geolite2")
    d = geo.mounts.new(geo.conf(["country_db = " + country_db, "asn_db = " + asn_db])).start()
    live = all_live(geo, d)
    assert d.read_text("health").strip() == "ok"
    before = {uri: (e["country"], e["asn"]) for uri, e in live.items()}

    os.unlink(country_db)
    wait_until(lambda: d.read_text("health").startswith("degraded: geo: %s" % country_db),
               HEALTH_TIMEOUT, "health to name the deleted %s" % country_db)
    d.sync()
    after = by_uri(d)
    assert set(after) == set(live), "the pool changed when the database went away"
    assert {uri: (e["country"], e["asn"]) for uri, e in after.items()} == before
    assert d.read_json("stat.json")["geo"]["country_db"]["error"], "no error in stat.json"

    write_dbs(geo.geo_dir, "geolite2")
    wait_until(lambda: d.read_text("health").strip() == "ok", HEALTH_TIMEOUT,
               "health ok once the database is back")
    assert not d.read_json("stat.json")["geo"]["country_db"]["error"]

    # Corrupt, renamed over: the same, for the ASN database.
    tmp = asn_db + ".new"
    with open(tmp, "wb") as f:
        f.write(b"this is not a MaxMind DB\n" * 100)
    os.rename(tmp, asn_db)
    wait_until(lambda: d.read_text("health").startswith("degraded: geo: %s" % asn_db),
               HEALTH_TIMEOUT, "health to name the corrupt %s" % asn_db)
    d.sync()
    assert {uri: (e["country"], e["asn"]) for uri, e in by_uri(d).items()} == before
    d.stop()


# --- bad databases at start ---

@pytest.mark.parametrize("key,what", [("country_db", "missing"), ("country_db", "corrupt"),
                                      ("asn_db", "corrupt"), ("asn_db", "empty")])
def test_bad_database_at_start(geo, key, what):
    """A configured database that is missing or not a MaxMind DB stops the
    daemon at start: exit 2, the file named, nothing mounted."""
    country_db, asn_db = write_dbs(geo.geo_dir, "geolite2")
    bad = os.path.join(geo.geo_dir, "bad-%s.mmdb" % key)
    if what == "corrupt":
        # The first half of a real database: its metadata section cut off.
        with open(country_db, "rb") as f:
            whole = f.read()
        with open(bad, "wb") as f:
            f.write(whole[:len(whole) // 2])
    elif what == "empty":
        open(bad, "wb").close()
    paths = {"country_db": country_db, "asn_db": asn_db, key: bad}
    conf = geo.conf(["country_db = " + paths["country_db"], "asn_db = " + paths["asn_db"]])
    mnt = os.path.join(geo.tmp, "mnt")
    os.makedirs(mnt, exist_ok=True)
    try:
        p = subprocess.run([geo.mounts.binary, "-f", "-c", conf, mnt], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=15)
    finally:
        mounted = is_mounted(mnt)
        if mounted:
            lazy_unmount(mnt)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert bad in p.stderr, p.stderr
    assert not mounted


# --- found without [geo] ---

def test_default_places_from_proxyfs_geo_dirs(geo, monkeypatch):
    """Without [geo] the directories of PROXYFS_GEO_DIRS are searched in
    order, each for the usual names in order; stat.json names the files
    found with their build dates and types. An empty `country_db =` turns
    the country lookups off even with files there."""
    first = os.path.join(geo.tmp, "first")
    second = os.path.join(geo.tmp, "second")
    os.makedirs(first)
    os.makedirs(second)
    # In the first directory: a country database under a later name and
    # one under an earlier name (which wins); no ASN database. In the
    # second: a country database (not reached) and the ASN database.
    write_dbs(first, "geolite2", fr_net_as=("IT",) + SWAPS["IT"], epoch=EPOCHS["v1"],
              names={"country": "dbip-country-lite.mmdb", "asn": "ignored.mmdb"})
    os.unlink(os.path.join(first, "ignored.mmdb"))
    write_dbs(first, "geolite2", epoch=EPOCHS["v2"],
              names={"country": "GeoLite2-Country.mmdb", "asn": "ignored.mmdb"})
    os.unlink(os.path.join(first, "ignored.mmdb"))
    write_dbs(second, "geolite2", fr_net_as=("ES",) + SWAPS["ES"], epoch=EPOCHS["v3"],
              names={"country": "country.mmdb", "asn": "asn.mmdb"})
    monkeypatch.setenv("PROXYFS_GEO_DIRS", "%s:%s:%s" % (os.path.join(geo.tmp, "none"),
                                                        first, second))

    d = geo.mounts.new(geo.conf(None)).start()
    live = all_live(geo, d)
    e = live[geo.tp_de_fr.uri]
    # Country from first/GeoLite2-Country.mmdb (FR), network from
    # second/asn.mmdb (which maps the exit range to ES's network).
    assert (e["country"], e["asn"], e["as_org"], e["geo_from"]) == \
        ("FR", SWAPS["ES"][0], SWAPS["ES"][1], "exit"), e
    g = d.read_json("stat.json")["geo"]
    assert g["country_db"]["path"] == os.path.join(first, "GeoLite2-Country.mmdb"), g
    assert g["country_db"]["build_date"] == iso_date(EPOCHS["v2"]), g
    assert g["country_db"]["type"] == "GeoLite2-Country", g
    assert g["asn_db"]["path"] == os.path.join(second, "asn.mmdb"), g
    assert g["asn_db"]["build_date"] == iso_date(EPOCHS["v3"]), g
    assert g["asn_db"]["type"] == "GeoLite2-ASN", g
    metrics = d.read_text("metrics")
    assert ('proxyfs_geo_database_info{db="country",path="%s",build_date="%s"} 1'
            % (g["country_db"]["path"], iso_date(EPOCHS["v2"]))) in metrics, metrics
    d.stop()

    # `country_db =` empty: off, no search; the ASN database still found.
    d = geo.mounts.new(geo.conf(["country_db ="], name="off.ini")).start()
    e = all_live(geo, d)[geo.tp_de_fr.uri]
    assert (e["country"], e["asn"]) == (None, SWAPS["ES"][0]), e
    g = d.read_json("stat.json")["geo"]
    assert g["country_db"]["path"] is None and g["asn_db"]["path"] == os.path.join(second, "asn.mmdb"), g
    d.stop()

    # An empty PROXYFS_GEO_DIRS searches nowhere.
    monkeypatch.setenv("PROXYFS_GEO_DIRS", "")
    d = geo.mounts.new(geo.conf(None, name="nowhere.ini")).start()
    e = all_live(geo, d)[geo.tp_de_fr.uri]
    assert (e["country"], e["asn"]) == (None, None), e
    d.stop()
