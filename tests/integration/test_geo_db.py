"""The [geo] databases as a user sees them: a file named in the config
that is missing or not a MaxMind DB stops the start (exit 2, naming it);
stat.json's "geo" and the metrics name the files in use with their build
date; nothing is looked up again while nothing changes; a file replaced
while mounted is picked up on control/reload, and within 15 s without
one; a file deleted or corrupted later leaves health degraded naming it,
the pool and the last good answers kept, until a good file is back; a
reload naming a file that cannot be read is refused.

The databases are written at test time by tests/geo/mmdb_write.py (renamed
into place, as an update is installed). PROXYFS_GEO_DIRS is empty for
every daemon here, so no database of the machine's own is found. The
proxies (the session's peer set, on 127.0.0.2x) reach the judge from
127.0.0.1, so their exit is 127.0.0.1, which the databases map to another
country than the 127.0.0.0/24 the proxies are listed in.
"""

import errno
import os
import signal
import subprocess
import sys

import pytest

import peers
from conftest import MOUNT_TIMEOUT, wait_until, write_config, write_list

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "geo"))
import mmdb_write  # noqa: E402

SWAP_TIMEOUT = 20.0  # the 15 s, and a publish
EPOCH_A = 1700000000  # 2023-11-14
EPOCH_B = 1710000000  # 2024-03-09


@pytest.fixture(autouse=True)
def no_default_places(monkeypatch):
    monkeypatch.setenv("PROXYFS_GEO_DIRS", "")


def write_country(path, exit_country="FR", epoch=EPOCH_A, kind="Test-Country-A"):
    mmdb_write.write(path, [("127.0.0.0/24", {"country": {"iso_code": "DE"}}),
                            ("127.0.0.1/32", {"country": {"iso_code": exit_country}})],
                     ip_version=6, database_type=kind, build_epoch=epoch)


def write_asn(path):
    mmdb_write.write(path, [("127.0.0.0/24", {"autonomous_system_number": 3320,
                                              "autonomous_system_organization": "Telekom"}),
                            ("127.0.0.1/32", {"autonomous_system_number": 3215,
                                              "autonomous_system_organization": "Orange"})],
                     ip_version=4, database_type="Test-ASN", build_epoch=EPOCH_A)


def geo_conf(tmp, peer_set, country, asn, extra=""):
    lst = write_list(tmp, peer_set.list_text(slow=False))
    return write_config(tmp, peer_set.judge, lst,
                        extra="\n[geo]\ncountry_db = %s\nasn_db = %s\n%s" % (country, asn, extra))


def start_fails(binary, conf, mnt):
    os.makedirs(mnt, exist_ok=True)
    p = subprocess.run([binary, "-f", "-c", conf, mnt], capture_output=True, text=True,
                       timeout=MOUNT_TIMEOUT)
    return p.returncode, p.stderr


@pytest.fixture
def dbs(tmp_path):
    country, asn = str(tmp_path / "country.mmdb"), str(tmp_path / "asn.mmdb")
    write_country(country)
    write_asn(asn)
    return country, asn


@pytest.fixture
def geo_daemon(binary, peer_set, mounts, tmp_path, dbs):
    conf = geo_conf(str(tmp_path), peer_set, *dbs)
    d = mounts.new(conf).start()
    d.sync()
    return d


def geo_stat(d):
    return d.read_json("stat.json")["geo"]


def test_missing_db_at_start_exits_2_naming_it(binary, peer_set, tmp_path, dbs):
    missing = str(tmp_path / "nowhere.mmdb")
    conf = geo_conf(str(tmp_path), peer_set, missing, dbs[1])
    rc, err = start_fails(binary, conf, str(tmp_path / "mnt"))
    assert rc == 2, err
    assert "proxyfs: geo: %s: No such file or directory\n" % missing in err, err
    assert not os.path.ismount(str(tmp_path / "mnt"))


def test_corrupt_db_at_start_exits_2_naming_it(binary, peer_set, tmp_path, dbs):
    bad = str(tmp_path / "bad.mmdb")
    with open(bad, "wb") as f:
        f.write(b"PK\x03\x04 not a MaxMind DB, a zip perhaps" * 10)
    conf = geo_conf(str(tmp_path), peer_set, dbs[0], bad)
    rc, err = start_fails(binary, conf, str(tmp_path / "mnt"))
    assert rc == 2, err
    assert "proxyfs: geo: %s: not a MaxMind DB file" % bad in err, err


def test_stat_and_metrics_name_the_databases(geo_daemon, dbs, peer_set):
    d = geo_daemon
    g = geo_stat(d)
    assert g["country_db"] == {"path": dbs[0], "build_date": "2023-11-14",
                               "type": "Test-Country-A", "error": None}
    assert g["asn_db"] == {"path": dbs[1], "build_date": "2023-11-14", "type": "Test-ASN",
                           "error": None}
    assert g["lookups_total"] >= peer_set.list_distinct(slow=False)
    metrics = d.read_text("metrics")
    assert "proxyfs_geo_lookups_total %d\n" % g["lookups_total"] in metrics
    assert ('proxyfs_geo_database_info{db="country",path="%s",build_date="2023-11-14"} 1\n'
            % dbs[0]) in metrics
    assert ('proxyfs_geo_database_info{db="asn",path="%s",build_date="2023-11-14"} 1\n'
            % dbs[1]) in metrics
    assert d.read_text("health") == "ok\n"
    # The live proxies come out of 127.0.0.1: the exit's country, not the
    # listed address's.
    live = d.read_json("live.json")
    assert live and all((p["country"], p["asn"], p["as_org"], p["geo_from"])
                        == ("FR", 3215, "Orange", "exit") for p in live), live


def test_no_lookup_again_while_nothing_changes(geo_daemon):
    d = geo_daemon
    before = geo_stat(d)["lookups_total"]
    d.sync()
    d.sync()
    assert geo_stat(d)["lookups_total"] == before


def test_off_without_geo_and_nothing_found(binary, peer_set, mounts, tmp_path):
    conf = write_config(str(tmp_path), peer_set.judge,
                        write_list(str(tmp_path), peer_set.list_text(slow=False)))
    d = mounts.new(conf).start()
    d.sync()
    g = geo_stat(d)
    off = {"path": None, "build_date": None, "type": None, "error": None}
    assert g == {"country_db": off, "asn_db": off, "lookups_total": 0}
    assert "proxyfs_geo_database_info{" not in d.read_text("metrics")
    assert all(p["country"] is None and p["geo_from"] is None for p in d.read_json("live.json"))


def test_found_at_the_default_places(binary, peer_set, mounts, tmp_path, monkeypatch):
    places = tmp_path / "geo"
    places.mkdir()
    write_country(str(places / "dbip-country-lite.mmdb"), exit_country="IT")
    write_asn(str(places / "GeoLite2-ASN.mmdb"))
    monkeypatch.setenv("PROXYFS_GEO_DIRS", "%s:%s" % (tmp_path / "empty", places))
    conf = write_config(str(tmp_path), peer_set.judge,
                        write_list(str(tmp_path), peer_set.list_text(slow=False)))
    d = mounts.new(conf).start()
    d.sync()
    g = geo_stat(d)
    assert g["country_db"]["path"] == str(places / "dbip-country-lite.mmdb")
    assert g["asn_db"]["path"] == str(places / "GeoLite2-ASN.mmdb")
    assert {p["country"] for p in d.read_json("live.json")} == {"IT"}


def test_replaced_file_picked_up_on_reload(geo_daemon, dbs):
    d = geo_daemon
    write_country(dbs[0], exit_country="NL", epoch=EPOCH_B, kind="Test-Country-B")
    d.sync()
    g = geo_stat(d)["country_db"]
    assert (g["type"], g["build_date"]) == ("Test-Country-B", "2024-03-09")
    assert {p["country"] for p in d.read_json("live.json")} == {"NL"}


def test_replaced_file_picked_up_without_reload(geo_daemon, dbs):
    d = geo_daemon
    write_country(dbs[0], exit_country="NL", epoch=EPOCH_B, kind="Test-Country-B")
    wait_until(lambda: geo_stat(d)["country_db"]["type"] == "Test-Country-B", SWAP_TIMEOUT,
               "the replaced country file in stat.json")
    wait_until(lambda: {p["country"] for p in d.read_json("live.json")} == {"NL"}, 5.0,
               "the new countries in live.json")


def test_deleted_or_corrupt_later_degrades_and_keeps_the_pool(geo_daemon, dbs):
    d = geo_daemon
    live = d.live()
    assert live
    os.unlink(dbs[0])
    want = "degraded: geo: %s: No such file or directory\n" % dbs[0]
    wait_until(lambda: d.read_text("health") == want, SWAP_TIMEOUT, "health naming the file")
    assert geo_stat(d)["country_db"]["error"] == "No such file or directory"
    d.sync()
    assert d.live() == live
    # The last good copy still answers.
    assert {p["country"] for p in d.read_json("live.json")} == {"FR"}

    tmp = dbs[0] + ".new"
    with open(tmp, "wb") as f:
        f.write(b"\0" * 4096)
    os.rename(tmp, dbs[0])
    d.sync()
    assert d.read_text("health").startswith("degraded: geo: %s: not a MaxMind DB file" % dbs[0])
    assert d.live() == live

    write_country(dbs[0], exit_country="CH")
    d.sync()
    assert d.read_text("health") == "ok\n"
    assert geo_stat(d)["country_db"]["error"] is None
    assert {p["country"] for p in d.read_json("live.json")} == {"CH"}


def test_reload_naming_an_unreadable_file_is_refused(geo_daemon, dbs, tmp_path):
    d = geo_daemon
    conf = d.conf
    good = open(conf).read()
    missing = str(tmp_path / "gone.mmdb")
    with open(conf, "w") as f:
        f.write(good.replace("asn_db = %s" % dbs[1], "asn_db = %s" % missing))
    with pytest.raises(OSError) as err:
        d.write("control/reload", "reload\n")
    assert err.value.errno == errno.EINVAL
    assert "%s: No such file or directory" % missing in d.log()
    assert geo_stat(d)["asn_db"]["path"] == dbs[1]

    # A readable one is taken, by SIGHUP too; an empty value turns it off.
    other = str(tmp_path / "asn2.mmdb")
    write_asn(other)
    with open(conf, "w") as f:
        f.write(good.replace("asn_db = %s" % dbs[1], "asn_db = %s" % other))
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: geo_stat(d)["asn_db"]["path"] == other, 10.0, "the new asn_db")
    with open(conf, "w") as f:
        f.write(good.replace("asn_db = %s" % dbs[1], "asn_db ="))
    d.write("control/reload", "reload\n")
    assert geo_stat(d)["asn_db"]["path"] is None
    wait_until(lambda: all(p["asn"] is None for p in d.read_json("live.json")), 5.0,
               "no ASN once asn_db is off")


def start_microsocks_from(tmp, port, out):
    """microsocks on 127.0.0.41:port, going out from out (-b)."""
    p = peers.Peer("microsocks-b", "127.0.0.41", port,
                   ["microsocks", "-i", "127.0.0.41", "-p", str(port), "-b", out],
                   os.path.join(tmp, "microsocks-%s.log" % out),
                   line="socks5://127.0.0.41:%d" % port, uri="socks5://127.0.0.41:%d" % port)
    return p.start()


def test_exit_that_changes_is_looked_up_again(binary, peer_set, mounts, tmp_path):
    """The same proxy, restarted to go out from another address: the next
    check's exit is looked up, not the first one's answer kept."""
    tmp = str(tmp_path)
    country = str(tmp_path / "country.mmdb")
    mmdb_write.write(country, [("127.0.0.0/24", {"country": {"iso_code": "DE"}}),
                               ("127.0.0.42/32", {"country": {"iso_code": "AT"}}),
                               ("127.0.0.43/32", {"country": {"iso_code": "BE"}})],
                     ip_version=4, database_type="Test-Country", build_epoch=EPOCH_A)
    port = peers.free_port("127.0.0.41")
    proxy = start_microsocks_from(tmp, port, "127.0.0.42")
    try:
        lst = write_list(tmp, proxy.line + "\n")
        conf = write_config(tmp, peer_set.judge, lst,
                            extra="\n[geo]\ncountry_db = %s\nasn_db =\n" % country)
        d = mounts.new(conf).start()
        d.sync()
        [p] = d.read_json("live.json")
        assert (p["exit_ip"], p["country"], p["geo_from"]) == ("127.0.0.42", "AT", "exit")
        proxy.stop()
        proxy = start_microsocks_from(tmp, port, "127.0.0.43")
        d.sync()
        [p] = d.read_json("live.json")
        assert (p["exit_ip"], p["country"], p["geo_from"]) == ("127.0.0.43", "BE", "exit")
    finally:
        proxy.stop()
