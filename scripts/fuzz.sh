#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, -fsanitize=fuzzer,address,undefined) in
# build-fuzz and runs each for a fixed time over a copy of its committed corpus
# (tests/fuzz/corpus/<target>), so that the repository is never written. Fails when a target
# finds a crash, a sanitizer report (leaks included), a hang or an out-of-memory input, and
# prints the reproducer's path and the command that replays it.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; the targets to all of them: dicom model seed config
# labeler phrases web net. RADRAFT_FUZZ_JOBS sets the build's parallelism (default 1);
# RADRAFT_FUZZ_WORK the scratch folder (default build-fuzz/fuzz-work, emptied per target),
# which keeps each target's log, grown corpus and reproducers after the run.
# Extra libFuzzer flags can be given in RADRAFT_FUZZ_FLAGS (e.g. "-fork=4").
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
all=(dicom model seed config labeler phrases web net)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")
case "$secs" in
'' | *[!0-9]*)
    echo "usage: fuzz.sh [SECONDS_PER_TARGET] [TARGET...] (targets: ${all[*]})" >&2
    exit 2
    ;;
esac
for t in "${targets[@]}"; do
    if [[ " ${all[*]} " != *" $t "* ]]; then
        echo "fuzz: unknown target '$t' (targets: ${all[*]})" >&2
        exit 2
    fi
done

if ! command -v clang >/dev/null || ! command -v clang++ >/dev/null; then
    echo "fuzz: clang is missing (bash scripts/setup.sh --test installs it)" >&2
    exit 1
fi
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DRADRAFT_FUZZ=ON -DRADRAFT_BUILD_TESTS=OFF >/dev/null
if ! cmake --build build-fuzz -j "${RADRAFT_FUZZ_JOBS:-1}" --target "${targets[@]/#/fuzz_}" \
    >build-fuzz/build.log 2>&1; then
    tail -40 build-fuzz/build.log >&2
    echo "fuzz: the build failed (build-fuzz/build.log)" >&2
    exit 1
fi

work=${RADRAFT_FUZZ_WORK:-build-fuzz/fuzz-work}
# Leaks fail a target as any other report; UBSan's reports abort (the build also makes them
# unrecoverable). A single input may take 30 s (a hang otherwise) and 2 GiB (libFuzzer's
# default memory limit, which also caps any one allocation).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
total_execs=0
for t in "${targets[@]}"; do
    dir=$work/$t
    rm -rf "$dir"
    mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
    cp tests/fuzz/corpus/"$t"/* "$dir/corpus/"
    n0=$(find "$dir/corpus" -type f | wc -l)
    rc=0
    # shellcheck disable=SC2086 # RADRAFT_FUZZ_FLAGS is a list of flags
    # TMPDIR: the target's scratch files (fuzz.h) stay in the work folder, even after a crash.
    TMPDIR=$dir/tmp build-fuzz/tests/fuzz/fuzz_"$t" -max_total_time="$secs" -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/" ${RADRAFT_FUZZ_FLAGS:-} "$dir/corpus" \
        >"$dir/log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    # -fork=N prints no final stats: its last progress line counts every job's executions.
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$dir/log" | tail -1)
    execs=${execs:-0}
    total_execs=$((total_execs + execs))
    n1=$(find "$dir/corpus" -type f | wc -l)
    found=$(find "$dir/artifacts" -type f | sort)
    if [ "$rc" != 0 ] || [ -n "$found" ]; then
        status=1
        echo "fuzz: $t FAILED (exit $rc) after $execs executions; the report:" >&2
        grep -E -A30 '^==[0-9]+==ERROR|runtime error|^SUMMARY|ERROR: libFuzzer' "$dir/log" |
            head -60 >&2 || tail -40 "$dir/log" >&2
        for f in $found; do
            echo "fuzz: reproducer $f (replay: build-fuzz/tests/fuzz/fuzz_$t $f)" >&2
        done
        echo "fuzz: full log $dir/log" >&2
    else
        printf 'fuzz: %-8s ok: %9d executions in %d s (corpus %d -> %d inputs)\n' "$t" "$execs" \
            "$secs" "$n0" "$n1"
    fi
done
[ "$status" = 0 ] && echo "fuzz: all ${#targets[@]} targets passed ($total_execs executions)" ||
    echo "fuzz: FAILURES (see above)"
exit "$status"
