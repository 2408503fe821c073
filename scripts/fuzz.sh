#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer targets in build-fuzz/ and runs each for a
# fixed time.
#
# Usage: scripts/fuzz.sh [TARGET...]   (default: every tests/fuzz/fuzz_*.c)
# FUZZ_SECONDS sets the time per target (default 20).
#
# build-fuzz/ is made with clang, ASan+UBSan and -Dfuzz=true, or reused if it
# exists. For each target, the inputs in tests/fuzz/regressions/TARGET (ones
# that crashed once) are replayed first; then libFuzzer runs on a copy of
# tests/fuzz/corpus/TARGET in a temporary directory, so the repository is
# never written to. A crash, leak, UBSan report or timeout fails the target;
# its log is kept in build-fuzz/fuzz-logs/, the input that did it in
# build-fuzz/fuzz-artifacts/TARGET/, and both paths are printed (add the
# input to tests/fuzz/regressions/TARGET/ with the fix). Exits non-zero if
# any target failed; does not stop at the first one. Warnings are not errors
# here: clang warns where gcc does not, and the gcc builds police warnings.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
dir=build-fuzz
logs=$dir/fuzz-logs
artifacts=$dir/fuzz-artifacts

# Longest input worth trying, per target: a little past what each parser
# bounds (a URI line, the 8 KiB answer head or captured body, a SOCKS
# reply); 4 KiB for the rest.
max_len() {
	case $1 in
	proxy_line) echo 2200 ;;
	http_answer | judge_answer) echo 9000 ;;
	socks) echo 600 ;;
	*) echo 4096 ;;
	esac
}

setup() {
	local opts=(-Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=false)

	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" "${opts[@]}"
	else
		CC=clang meson setup "$dir" "${opts[@]}"
	fi
}

# Runs the target on each file of the regressions directory, if any.
replay() {
	local t=$1 exe=$2 log=$3
	local regs=tests/fuzz/regressions/$t

	if [ -d "$regs" ] && [ -n "$(ls -A "$regs")" ]; then
		"$exe" -runs=1 "$regs"/* >"$log" 2>&1
	fi
}

# Fuzzes one target from a temporary copy of its corpus.
fuzz() {
	local t=$1 exe=$2 log=$3 work

	work=$(mktemp -d "${TMPDIR:-/tmp}/proxyfs-fuzz-$t.XXXXXX") || return 1
	if [ -d "tests/fuzz/corpus/$t" ]; then
		cp -r "tests/fuzz/corpus/$t/." "$work/"
	fi
	rm -rf "$artifacts/$t"
	mkdir -p "$artifacts/$t"
	"$exe" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$artifacts/$t/" "$work" >>"$log" 2>&1
	local rc=$?
	rm -rf "$work"
	return $rc
}

# Prints where the failure is: the input that did it (libFuzzer's artifact,
# or the regression being replayed), the log, and the start of the report.
report() {
	local t=$1 exe=$2 log=$3 input

	input=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
	if [ -z "$input" ]; then
		input=$(sed -n 's/^Running: //p' "$log" | tail -1)
	fi
	echo "fuzz: $t FAILED; log: $log"
	grep -m1 -A30 'ERROR: \|runtime error\|check failed' "$log" | sed 's/^/    /'
	echo "fuzz:   reproducer: ${input:-(none written; see the log)}"
	echo "fuzz:   reproduce: $exe ${input:-INPUT}"
}

if [ "$#" -gt 0 ]; then
	targets=("$@")
else
	targets=()
	for src in tests/fuzz/fuzz_*.c; do
		t=${src#tests/fuzz/fuzz_}
		targets+=("${t%.c}")
	done
fi

mkdir -p "$logs"
if ! setup >"$logs/build.log" 2>&1 ||
   ! ninja -C "$dir" "${targets[@]/#/tests/fuzz/fuzz_}" >>"$logs/build.log" 2>&1; then
	tail -40 "$logs/build.log"
	echo "fuzz: building $dir failed; log: $logs/build.log"
	exit 1
fi

# A UBSan report must stop the run so libFuzzer keeps the input.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
failed=()
for t in "${targets[@]}"; do
	exe=$dir/tests/fuzz/fuzz_$t
	log=$logs/$t.log
	: >"$log"
	if replay "$t" "$exe" "$log" && fuzz "$t" "$exe" "$log"; then
		runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
		cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
		echo "fuzz: $t ok (${seconds}s, ${runs:-?} runs, ${cov:-cov: ?})"
	else
		report "$t" "$exe" "$log"
		failed+=("$t")
	fi
done

if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz: failed: ${failed[*]}"
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without a finding"
