#!/usr/bin/env bash
# install-deps.sh: installs what building and testing proxyfs needs (Debian 12).
#
# Run as root. Idempotent: when every package is already installed it skips
# apt entirely, so a rerun takes a fraction of a second. promtool is taken out
# of Debian's prometheus package without installing that package (332 MB):
# the .deb is downloaded, unpacked in a temporary directory, and only
# usr/bin/promtool is copied to /usr/local/bin.
set -euo pipefail

PACKAGES=(
	build-essential meson ninja-build pkg-config
	libfuse3-dev fuse3
	libevent-dev libsqlite3-dev libinih-dev libssl-dev libcurl4-openssl-dev
	clang
	python3-pytest python3-pytest-xdist
	tinyproxy microsocks dante-server squid
	curl sqlite3 openssl ca-certificates
	groff-base man-db
	proxycheck
)
PROMTOOL=/usr/local/bin/promtool

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: run as root (sudo bash scripts/install-deps.sh)" >&2
	exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "install ok installed" ]; then
		missing+=("$pkg")
	fi
done

apt_updated=no
if [ "${#missing[@]}" -gt 0 ]; then
	echo "install-deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt_updated=yes
	apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$PROMTOOL" ] && ! command -v promtool >/dev/null 2>&1; then
	echo "install-deps.sh: fetching promtool from the prometheus package"
	if [ "$apt_updated" = no ]; then
		apt-get update
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# apt-get download writes as the _apt user when it can; let it.
	chmod 0777 "$tmp"
	(cd "$tmp" && apt-get download prometheus)
	dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
	install -m 0755 "$tmp/x/usr/bin/promtool" "$PROMTOOL"
fi

echo "install-deps.sh: all dependencies present"
