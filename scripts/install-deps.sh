#!/usr/bin/env bash
# install-deps.sh: installs what building and testing proxyfs needs (Debian 12).
#
# Run as root. Idempotent: when every package is already installed it skips
# apt entirely, so a rerun takes a fraction of a second. promtool and the
# prometheus server (which the integration tests start on loopback) are taken
# out of Debian's prometheus package without installing that package (332 MB,
# and a service): the .deb is downloaded once, unpacked in a temporary
# directory, and only usr/bin/promtool and usr/bin/prometheus are copied to
# /usr/local/bin. nginx (the benchmark's static-file ceiling) is started by
# the benchmark itself on a port of its own: if installing it started the
# distribution's service, that service is stopped and disabled again.
set -euo pipefail

PACKAGES=(
	build-essential meson ninja-build pkg-config
	libfuse3-dev fuse3
	libevent-dev libsqlite3-dev libinih-dev libssl-dev libcurl4-openssl-dev
	clang
	python3-pytest python3-pytest-xdist python3-requests
	libmaxminddb-dev mmdb-bin python3-maxminddb
	tinyproxy microsocks dante-server squid
	curl sqlite3 openssl ca-certificates
	groff-base man-db
	proxycheck
	wrk nginx-light proxychains4
)
PROMTOOL=/usr/local/bin/promtool
PROMETHEUS=/usr/local/bin/prometheus

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

# Where services start on install (not in containers with a policy-rc.d
# that forbids it), Debian's nginx starts listening on :80 at once: stop
# and disable the service that this install started, and only that one.
case " ${missing[*]} " in
*" nginx-light "*)
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now nginx.service || true
	elif [ -s /run/nginx.pid ]; then
		nginx -s quit || true
	fi
	update-rc.d nginx disable >/dev/null 2>&1 || true
	;;
esac

# A tool is wanted when it is in neither /usr/local/bin nor $PATH.
want_tool() {
	[ ! -x "$1" ] && ! command -v "$(basename "$1")" >/dev/null 2>&1
}

if want_tool "$PROMTOOL" || want_tool "$PROMETHEUS"; then
	echo "install-deps.sh: fetching promtool and prometheus from the prometheus package"
	if [ "$apt_updated" = no ]; then
		apt-get update
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# apt-get download writes as the _apt user when it can; let it.
	chmod 0777 "$tmp"
	(cd "$tmp" && apt-get download prometheus)
	dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
	for tool in "$PROMTOOL" "$PROMETHEUS"; do
		if want_tool "$tool"; then
			install -m 0755 "$tmp/x/usr/bin/$(basename "$tool")" "$tool"
		fi
	done
fi

echo "install-deps.sh: all dependencies present"
