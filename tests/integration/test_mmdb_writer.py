"""The tests' MaxMind DB writer (tests/geo/mmdb_write.py) read back by
libmaxminddb: Debian's mmdblookup (and the python3-maxminddb extension
built on the same library) must find in every file it writes exactly what
was put in, for both record layouts proxyfs reads, IPv4 and IPv6 trees,
24-, 28- and 32-bit records, and misses where nothing was put."""

import ipaddress
import json
import os
import random
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "geo"))
import mmdb_write  # noqa: E402

MMDBLOOKUP = "mmdblookup"
VALUE_LINE = re.compile(r'^\s*(.*?) <(\w+)>\s*$')


def lookup(path, ip, *keys):
    """(value, mmdb type) at keys for ip, as mmdblookup prints it; None on a
    miss."""
    r = subprocess.run([MMDBLOOKUP, "--file", path, "--ip", ip] + list(keys),
                       capture_output=True, text=True, timeout=10)
    if "Could not find an entry" in r.stdout + r.stderr:
        return None
    assert r.returncode == 0, (ip, keys, r.stdout, r.stderr)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, r.stdout
    m = VALUE_LINE.match(lines[0])
    assert m, lines[0]
    text, kind = m.groups()
    if kind == "utf8_string":
        return json.loads(text), kind
    if kind.startswith("uint") or kind == "int32":
        return int(text), kind
    if kind in ("double", "float"):
        return float(text), kind
    if kind == "boolean":
        return text == "true", kind
    return text, kind


def metadata(path):
    r = subprocess.run([MMDBLOOKUP, "--verbose", "--file", path, "--ip", "127.0.0.1"],
                       capture_output=True, text=True, timeout=10)
    meta = {}
    for line in r.stdout.splitlines():
        m = re.match(r'^\s*(Node count|Record size|IP version|Binary format|Build epoch|Type):\s*(.*)$', line)
        if m:
            meta[m.group(1)] = m.group(2).strip()
    return meta


def geolite_country(code):
    return {"country": {"iso_code": code, "names": {"en": "Land " + code}},
            "continent": {"code": "EU"}}


def asn_record(number, org):
    return {"autonomous_system_number": number, "autonomous_system_organization": org}


NETWORKS_V4 = [
    ("127.0.0.0/8", "US", 64500, "Loopback Wide"),
    ("127.0.1.0/24", "DE", 3320, "Deutsche Telekom AG"),
    ("127.0.2.0/24", "FR", 3215, "Orange S.A."),
    ("127.0.2.128/25", "NL", 1136, "KPN B.V."),
    ("127.0.3.7/32", "JP", 2516, "KDDI CORPORATION"),
    ("10.1.0.0/16", "CH", 4294967295, "Largest ASN"),
]
HITS = [("127.0.1.1", "DE", 3320), ("127.0.1.255", "DE", 3320),
        ("127.0.2.1", "FR", 3215), ("127.0.2.200", "NL", 1136),
        ("127.0.3.7", "JP", 2516), ("127.0.3.8", "US", 64500),
        ("127.255.255.255", "US", 64500), ("10.1.255.1", "CH", 4294967295)]
MISSES = ["10.0.0.1", "10.2.0.0", "0.0.0.0", "128.0.0.1", "255.255.255.255", "192.168.1.1"]


@pytest.fixture
def tmpdir_path(tmp_path):
    return str(tmp_path)


@pytest.mark.parametrize("ip_version", [4, 6])
@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_geolite2_layout_reads_back(tmpdir_path, ip_version, record_size):
    """GeoLite2's layout: country.iso_code in one file, the ASN keys in
    another; hits, narrower networks inside wider ones, and misses."""
    country = os.path.join(tmpdir_path, "GeoLite2-Country.mmdb")
    asn = os.path.join(tmpdir_path, "GeoLite2-ASN.mmdb")
    mmdb_write.write(country, [(n, geolite_country(c)) for n, c, _, _ in NETWORKS_V4],
                     ip_version=ip_version, record_size=record_size,
                     database_type="GeoLite2-Country", build_epoch=1700000000)
    mmdb_write.write(asn, [(n, asn_record(a, o)) for n, _, a, o in NETWORKS_V4],
                     ip_version=ip_version, record_size=record_size,
                     database_type="GeoLite2-ASN", build_epoch=1700000000)
    orgs = {a: o for _, _, a, o in NETWORKS_V4}
    for ip, code, number in HITS:
        assert lookup(country, ip, "country", "iso_code") == (code, "utf8_string"), ip
        assert lookup(country, ip, "country", "names", "en") == ("Land " + code, "utf8_string")
        assert lookup(asn, ip, "autonomous_system_number") == (number, "uint32"), ip
        assert lookup(asn, ip, "autonomous_system_organization") == (orgs[number], "utf8_string")
    for ip in MISSES:
        assert lookup(country, ip, "country", "iso_code") is None, ip
        assert lookup(asn, ip, "autonomous_system_number") is None, ip
    for path, kind in ((country, "GeoLite2-Country"), (asn, "GeoLite2-ASN")):
        meta = metadata(path)
        assert meta["Record size"] == "%d bits" % record_size
        assert meta["IP version"] == "IPv%d" % ip_version
        assert meta["Binary format"] == "2.0"
        assert meta["Build epoch"].startswith("1700000000 (2023-11-14")
        assert meta["Type"] == kind


@pytest.mark.parametrize("ip_version", [4, 6])
@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_ip_location_db_layout_reads_back(tmpdir_path, ip_version, record_size):
    """ip-location-db's layout: a flat country_code, and one file holding
    both the country and the ASN keys."""
    both = os.path.join(tmpdir_path, "country-asn.mmdb")
    mmdb_write.write(both, [(n, dict(country_code=c, **asn_record(a, o)))
                            for n, c, a, o in NETWORKS_V4],
                     ip_version=ip_version, record_size=record_size,
                     database_type="ip-location-db", build_epoch=1600000000)
    for ip, code, number in HITS:
        assert lookup(both, ip, "country_code") == (code, "utf8_string"), ip
        assert lookup(both, ip, "autonomous_system_number") == (number, "uint32"), ip
    for ip in MISSES:
        assert lookup(both, ip, "country_code") is None, ip


def test_ipv6_tree_holds_ipv6_networks_and_ipv4_at_96(tmpdir_path):
    """In an IPv6 tree IPv4 networks sit at ::a.b.c.d/96+n, where
    libmaxminddb looks IPv4 up, beside real IPv6 networks."""
    path = os.path.join(tmpdir_path, "v6.mmdb")
    mmdb_write.write(path, [("127.0.1.0/24", {"country_code": "DE"}),
                            ("2001:db8::/32", {"country_code": "NL"}),
                            ("2001:db8:1::/48", {"country_code": "SE"})],
                     ip_version=6, record_size=28)
    assert lookup(path, "127.0.1.9", "country_code") == ("DE", "utf8_string")
    assert lookup(path, "::127.0.1.9", "country_code") == ("DE", "utf8_string")
    assert lookup(path, "2001:db8:2::1", "country_code") == ("NL", "utf8_string")
    assert lookup(path, "2001:db8:1:ffff::1", "country_code") == ("SE", "utf8_string")
    assert lookup(path, "2001:db9::1", "country_code") is None
    assert lookup(path, "127.0.2.1", "country_code") is None
    with pytest.raises(ValueError):
        mmdb_write.build([("2001:db8::/32", {"country_code": "NL"})], ip_version=4)


def test_value_types_read_back(tmpdir_path):
    """Every type the writer emits has the type and value libmaxminddb
    reports, forced types included."""
    path = os.path.join(tmpdir_path, "types.mmdb")
    record = {"u16": mmdb_write.Uint16(3320), "u32": 3320, "u64": mmdb_write.Uint64(1 << 40),
              "big": 1 << 70, "neg": -5, "dbl": 2.5, "flt": mmdb_write.Float(1.5),
              "yes": True, "no": False, "s": "Zürich", "arr": ["a", 1],
              "long": "x" * 70000}
    mmdb_write.write(path, [("127.0.0.0/8", record)], ip_version=4, record_size=24)
    assert lookup(path, "127.1.2.3", "u16") == (3320, "uint16")
    assert lookup(path, "127.1.2.3", "u32") == (3320, "uint32")
    assert lookup(path, "127.1.2.3", "u64") == (1 << 40, "uint64")
    assert lookup(path, "127.1.2.3", "neg") == (-5, "int32")
    assert lookup(path, "127.1.2.3", "dbl") == (2.5, "double")
    assert lookup(path, "127.1.2.3", "flt") == (1.5, "float")
    assert lookup(path, "127.1.2.3", "yes") == (True, "boolean")
    assert lookup(path, "127.1.2.3", "no") == (False, "boolean")
    assert lookup(path, "127.1.2.3", "s") == ("Zürich", "utf8_string")
    assert lookup(path, "127.1.2.3", "arr", "1") == (1, "uint32")
    assert lookup(path, "127.1.2.3", "long") == ("x" * 70000, "utf8_string")
    maxminddb = pytest.importorskip("maxminddb")
    with maxminddb.open_database(path, maxminddb.MODE_MMAP_EXT) as reader:
        got = reader.get("127.1.2.3")
    assert got["big"] == 1 << 70 and got["u64"] == 1 << 40


@pytest.mark.parametrize("record_size", [28, 32])
def test_records_beyond_24_bits(tmpdir_path, record_size):
    """Record values of 2^24 and more (the upper nibble of a 28-bit record,
    the fourth byte of a 32-bit one) and pointers of every width: an 18 MB
    record pushes the data written after it past 2^24."""
    path = os.path.join(tmpdir_path, "big.mmdb")
    networks = [("127.0.0.0/24", {"country_code": "AA", "filler": "f" * (9 << 20),
                                          "filler2": "g" * (9 << 20)})]
    networks += [("127.0.%d.0/24" % i, {"country_code": "B%d" % (i % 10), "n": i})
                 for i in range(1, 200)]
    mmdb_write.write(path, networks, ip_version=6, record_size=record_size)
    assert os.path.getsize(path) > 17 << 20
    assert lookup(path, "127.0.0.1", "country_code") == ("AA", "utf8_string")
    for i in (1, 9, 150, 199):
        assert lookup(path, "127.0.%d.1" % i, "country_code") == ("B%d" % (i % 10), "utf8_string")
        assert lookup(path, "127.0.%d.1" % i, "n") == (i, "uint32")
    assert lookup(path, "127.0.200.1", "country_code") is None
    with pytest.raises(ValueError):
        mmdb_write.build(networks, ip_version=6, record_size=24)
    # record_size=None: the smallest that fits, 28 bits here, 24 for a small file.
    mmdb_write.write(path, networks, ip_version=6, record_size=None)
    assert metadata(path)["Record size"] == "28 bits"
    assert lookup(path, "127.0.199.1", "n") == (199, "uint32")
    mmdb_write.write(path, networks[1:], ip_version=6, record_size=None)
    assert metadata(path)["Record size"] == "24 bits"


@pytest.mark.parametrize("ip_version,record_size", [(4, 24), (6, 28), (6, 32)])
def test_random_networks_match_last_covering(tmpdir_path, ip_version, record_size):
    """2,000 random networks (nested and overlapping) against 5,000 random
    addresses: the answer is the last network listed that covers the
    address, or a miss when none does; read by the libmaxminddb extension,
    and a sample by mmdblookup."""
    maxminddb = pytest.importorskip("maxminddb")
    rng = random.Random(15)
    networks = []
    for i in range(2000):
        plen = rng.choice([16, 18, 20, 24, 28, 32])
        addr = rng.choice([0x7F000000, 0x0A000000, 0xC0A80000]) | rng.getrandbits(24)
        net = ipaddress.ip_network((addr, plen), strict=False)
        networks.append((str(net), {"country_code": "C%d" % (i % 37), "i": i}))
    path = os.path.join(tmpdir_path, "rand.mmdb")
    mmdb_write.write(path, networks, ip_version=ip_version, record_size=record_size)
    parsed = [(ipaddress.ip_network(n), v) for n, v in networks]

    def expect(ip):
        a = ipaddress.ip_address(ip)
        for net, v in reversed(parsed):
            if a in net:
                return v
        return None

    probes = [str(ipaddress.ip_address(rng.choice([0x7F000000, 0x0A000000, 0xC0A80000])
                                       | rng.getrandbits(24))) for _ in range(5000)]
    misses = 0
    with maxminddb.open_database(path, maxminddb.MODE_MMAP_EXT) as reader:
        for ip in probes:
            want = expect(ip)
            misses += want is None
            assert reader.get(ip) == want, ip
    assert 0 < misses < len(probes)
    for ip in probes[:40]:
        want = expect(ip)
        got = lookup(path, ip, "i")
        assert got == (None if want is None else (want["i"], "uint32")), ip


def test_cli_from_json_spec(tmpdir_path):
    """The command writes what a JSON spec lists, $type included; bad specs
    are a clear error and leave no file."""
    spec = os.path.join(tmpdir_path, "spec.json")
    out = os.path.join(tmpdir_path, "out.mmdb")
    with open(spec, "w") as f:
        json.dump({"ip_version": 4, "record_size": 32, "database_type": "Spec-Test",
                   "build_epoch": 1234567890,
                   "networks": [["127.0.5.0/24", {"country": {"iso_code": "IT"},
                                                  "autonomous_system_number":
                                                  {"$type": "uint16", "value": 137}}]]}, f)
    tool = mmdb_write.__file__
    r = subprocess.run([sys.executable, tool, spec, out], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert lookup(out, "127.0.5.5", "country", "iso_code") == ("IT", "utf8_string")
    assert lookup(out, "127.0.5.5", "autonomous_system_number") == (137, "uint16")
    assert lookup(out, "127.0.6.5", "country", "iso_code") is None
    meta = metadata(out)
    assert meta["Type"] == "Spec-Test" and meta["Build epoch"].startswith("1234567890 ")

    bad = os.path.join(tmpdir_path, "bad.json")
    with open(bad, "w") as f:
        json.dump({"networks": [["127.0.0.0/33", {}]]}, f)
    out2 = os.path.join(tmpdir_path, "out2.mmdb")
    r = subprocess.run([sys.executable, tool, bad, out2], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "bad.json" in r.stderr
    assert not os.path.exists(out2)
    assert [n for n in os.listdir(tmpdir_path) if n.startswith(".mmdb-")] == []
