#!/usr/bin/env bash
# tsan.sh: the unit tests and the integration suite under ThreadSanitizer.
#
# Builds build-tsan/ (-Db_sanitize=thread, gcc unless TSAN_CC says
# otherwise; reused if it exists), runs `meson test` there, then the
# integration suite against build-tsan/proxyfs. Every TSan-built process
# stops at its first report with exit status 66 (halt_on_error), so a race
# in the daemon fails the test that requires a clean exit; the reports go to
# files under build-tsan/tsan-logs/, which are printed at the end. The
# libraries (libfuse, libevent, SQLite) are not instrumented, but they
# synchronise through pthreads, which TSan sees.
#
# The integration run leaves out, to stay within CI's time budget, the
# tests whose subject is not threads: test_crash.py (kill -9 and warm
# start: no exit to check), test_sim.py (scale, against a simulator) and
# test_hostile.py (misbehaving peers, all on the engine's one thread).
# TSAN_PYTEST_ARGS replaces that selection (e.g. "tests/integration" for
# all). Warnings are not errors here (the normal builds police them). Every
# step runs; exits non-zero if any step failed or any report was written.
set -uo pipefail
cd "$(dirname "$0")/.."

dir=build-tsan
reports=$dir/tsan-logs
default_args="tests/integration -n ${PYTEST_WORKERS:-4}
	--ignore=tests/integration/test_crash.py
	--ignore=tests/integration/test_sim.py
	--ignore=tests/integration/test_hostile.py"
read -r -d '' -a pytest_args <<<"${TSAN_PYTEST_ARGS:-$default_args}"

failed=()
step() {
	local name=$1
	shift
	echo "==> tsan $name: $*"
	if ! "$@"; then
		echo "==> tsan $name: FAILED"
		failed+=("$name")
		return 1
	fi
}

setup() {
	local opts=(-Db_sanitize=thread -Db_lundef=false -Dwerror=false)

	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" "${opts[@]}" >/dev/null
	else
		CC=${TSAN_CC:-gcc} meson setup "$dir" "${opts[@]}" >/dev/null
	fi
}

# TSan needs the usual address-space layout; where the kernel randomises
# mmap more than it allows, everything runs with ASLR off instead.
runner=()
layout_check() {
	local out

	out=$("$dir/proxyfs" --version 2>&1) && return 0
	if grep -q 'unexpected memory mapping' <<<"$out"; then
		runner=(setarch "$(uname -m)" -R)
		"${runner[@]}" "$dir/proxyfs" --version >/dev/null && return 0
	fi
	echo "$out"
	return 1
}

print_reports() {
	local f n=0

	for f in "$reports"/report.*; do
		[ -e "$f" ] || continue
		n=$((n + 1))
		echo "==> tsan report $f:"
		cat "$f"
	done
	[ "$n" -eq 0 ]
}

rm -rf "$reports"
mkdir -p "$reports"
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:log_path=$PWD/$reports/report"

if step setup setup && step build-daemon ninja -C "$dir" proxyfs && step layout layout_check; then
	# A unit test that does not build must not keep the daemon from its run.
	if step build ninja -C "$dir"; then
		step unit "${runner[@]}" meson test -C "$dir" --print-errorlogs
	fi
	sim=$dir/tests/sim/proxysim
	if [ -x "$sim" ]; then
		export PROXYSIM_BIN=$sim
	fi
	step integration env PROXYFS_BIN="$dir/proxyfs" "${runner[@]}" \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider "${pytest_args[@]}"
fi
step reports print_reports

if [ "${#failed[@]}" -gt 0 ]; then
	echo "==> tsan: failed: ${failed[*]}"
	exit 1
fi
echo "==> tsan: no data race or deadlock reported"
