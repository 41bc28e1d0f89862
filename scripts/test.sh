#!/usr/bin/env bash
# Sets up, builds and runs every test: the unit and integration tests on the normal build,
# then the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer, the unit
# tests of the threaded serve path under ThreadSanitizer, and each libFuzzer target for
# RADRAFT_FUZZ_SECONDS (default 12) over its corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

if [ ! -d ../shared/data ] && [ -z "${RADRAFT_SHARED_DATA:-}" ]; then
    echo "test: ../shared/data is missing: the tests that read real DICOM files, reports and" \
         "images will fail (set RADRAFT_SHARED_DATA to its location)" >&2
fi

jobs=$(nproc 2>/dev/null || echo 2)
status=0
echo "== tests (normal build)"
ctest --test-dir build --output-on-failure -j "$jobs" || status=1

echo "== unit tests (ASan + UBSan build)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRADRAFT_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan -L unit --output-on-failure -j "$jobs" || status=1

echo "== serve-path unit tests (ThreadSanitizer build)"
# The tests whose code runs on several threads in `radraft serve`: the listener, the store,
# the worker pool, the wakeups, and the DICOM reader and index shared by the workers. Only
# their executables are built. A race report fails the test (halt_on_error). OpenBLAS runs
# single-threaded here: its own worker threads hand results back through spin-waits that
# ThreadSanitizer cannot see (OpenBLAS is not instrumented), so every sgemm it splits would be
# reported as a race between its threads and ours; with one BLAS thread no suppression is
# needed, and our own threads (listener, workers, index readers) are still checked in full.
tsan_tests=(test_net test_store test_pipeline test_serve test_review test_users_audit test_util test_dicom test_index test_web)
tsan_regex="^($(IFS='|'; echo "${tsan_tests[*]}"))\\."
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRADRAFT_TSAN=ON >/dev/null
cmake --build build-tsan -j "$jobs" --target "${tsan_tests[@]}"
OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    ctest --test-dir build-tsan -R "$tsan_regex" --output-on-failure -j "$jobs" || status=1

echo "== fuzz targets (libFuzzer + ASan + UBSan, ${RADRAFT_FUZZ_SECONDS:-12} s each; scripts/fuzz.sh)"
# Each target starts from its committed corpus (tests/fuzz/corpus), copied to build-fuzz so
# that the run writes nothing in the tree; a crash, sanitizer report, leak or hang fails it.
RADRAFT_FUZZ_JOBS=$jobs bash scripts/fuzz.sh "${RADRAFT_FUZZ_SECONDS:-12}" || status=1

echo "== banned calls (unbounded or unchecked: sprintf, strcpy, strcat, atoi, atol, gets, strtok)"
if git grep -nE '(^|[^a-z_])(sprintf|strcpy|strcat|atoi|atol|gets|strtok)\(' -- src pacs include; then
    echo "test: use snprintf, rd_strlcpy, strtol with checks instead" >&2
    status=1
fi

echo "== source format (.clang-format)"
if ! git ls-files -z '*.c' '*.h' '*.cc' | xargs -0 clang-format --dry-run --Werror; then
    echo "test: some files differ from .clang-format (run clang-format -i on them)" >&2
    status=1
fi

[ "$status" = 0 ] && echo "test: all passed" || echo "test: FAILURES (see above)"
exit "$status"
