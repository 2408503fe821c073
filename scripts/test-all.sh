#!/usr/bin/env bash
# test-all.sh: builds proxyfs and runs every test there is.
#
# Steps: dependencies (scripts/install-deps.sh, when root), the normal build
# in build/ with its unit tests, a second build in build-asan/ with
# AddressSanitizer and UndefinedBehaviorSanitizer running the unit tests
# again, the fuzz targets (scripts/fuzz.sh) and a ThreadSanitizer run
# (scripts/tsan.sh), and last the integration suite (pytest, real mounts,
# real proxies on loopback) against build/proxyfs or $PROXYFS_BIN. Every
# step runs even when an earlier one failed, so one run shows everything;
# the exit status is non-zero if any step failed. The last line printed is
# pytest's summary.
# With CI=true, warnings are errors.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
step() {
	local name=$1 start=$SECONDS
	shift
	echo "==> $name: $*"
	if ! "$@"; then
		echo "==> $name: FAILED after $((SECONDS - start)) s"
		failed+=("$name")
		return 1
	fi
	echo "==> $name: done in $((SECONDS - start)) s"
}

# The integration tests spend most of their time waiting on timeouts and
# peers, not on the CPU: several pytest workers (pytest-xdist) cut the
# suite's wall time about three times on 2 cores. PYTEST_WORKERS=1 for one.
workers=${PYTEST_WORKERS:-4}
export PYTEST_WORKERS=$workers

werror=false
if [ "${CI:-}" = true ]; then
	werror=true
fi

# setup_build DIR [meson options...]: configure DIR, or reconfigure it if it
# exists already (so a changed option takes effect without a wipe).
setup_build() {
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" -Dwerror="$werror" "$@" >/dev/null
	else
		meson setup "$dir" -Dwerror="$werror" "$@"
	fi
}

if [ "$(id -u)" -eq 0 ]; then
	step deps bash scripts/install-deps.sh
else
	echo "==> deps: not root, skipping scripts/install-deps.sh"
fi

built=no
if step setup setup_build build && step build ninja -C build; then
	built=yes
	step unit meson test -C build --print-errorlogs
fi

if step asan-setup setup_build build-asan -Db_sanitize=address,undefined -Db_lundef=false &&
   step asan-build ninja -C build-asan; then
	step asan-unit meson test -C build-asan --print-errorlogs
fi

bin=${PROXYFS_BIN:-build/proxyfs}
if [ "$built" = no ] && [ -z "${PROXYFS_BIN:-}" ]; then
	# A failed build may leave an old binary behind; do not test that one.
	bin=build/proxyfs.missing-because-the-build-failed
fi

# The integration suite under ASan+UBSan first (leaks and memory errors in
# the daemon fail its clean-exit checks), then against the normal build so
# the last line printed is that run's summary.
if [ -x build-asan/proxyfs ] && [ -z "${PROXYFS_BIN:-}" ]; then
	step asan-integration env PROXYFS_BIN=build-asan/proxyfs \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider -n "$workers" tests/integration
fi

# libFuzzer on the parsers (scripts/fuzz.sh, FUZZ_SECONDS per target: a
# smoke run of each here, longer runs by hand), and the unit and
# integration tests under ThreadSanitizer (scripts/tsan.sh).
step fuzz env FUZZ_SECONDS="${FUZZ_SECONDS:-5}" bash scripts/fuzz.sh
step tsan bash scripts/tsan.sh

if [ "${#failed[@]}" -gt 0 ]; then
	echo "==> failed before the integration suite: ${failed[*]}"
else
	echo "==> build and unit tests passed"
fi
echo "==> integration: PROXYFS_BIN=$bin /usr/bin/python3 -m pytest -v -n $workers tests/integration"
PROXYFS_BIN=$bin /usr/bin/python3 -m pytest -v -n "$workers" tests/integration
pytest_rc=$?

if [ "${#failed[@]}" -gt 0 ] || [ "$pytest_rc" -ne 0 ]; then
	exit 1
fi
exit 0
