#!/usr/bin/env bash
# The benchmarks of tests/bench still build and do their checks, at their smallest sizes:
# they are not run by CTest otherwise, and one that no longer builds (a new source file
# with a new library) or whose checks fail is caught here. Timings are printed, never
# compared.
#   test_benchmarks.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -euo pipefail
radraft="$1"
work="$3"
here="$(cd "$(dirname "$0")" && pwd)"
bench="$here/../bench"
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

# The archive index: every search must return the reference's ids; it exits 1 otherwise.
bash "$bench/bench_index.sh" 3000 64,100 10 1 2 >"$work/index.txt" 2>&1 ||
    { cat "$work/index.txt"; fail "bench_index.sh"; }
cat "$work/index.txt"
[ "$(grep -c '| ok (' "$work/index.txt")" = 4 ] || fail "bench_index.sh: expected 4 checked rows"

# The encoder: outputs checked against PyTorch's before the table.
"$radraft" --version >/dev/null
bash "$bench/bench_encoder.sh" "$radraft" 2 1 1 >"$work/encoder.txt" 2>&1 ||
    { cat "$work/encoder.txt"; fail "bench_encoder.sh"; }
cat "$work/encoder.txt"
[ "$(grep -c 'equal PyTorch' "$work/encoder.txt")" = 2 ] || fail "bench_encoder.sh: outputs not checked"
[ "$(grep -cE '^\| (resnet-small|resnet18) \| (1|16) \|' "$work/encoder.txt")" = 4 ] ||
    fail "bench_encoder.sh: expected 4 rows"
echo "all checks passed"
