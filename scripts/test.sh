#!/usr/bin/env bash
# Sets up, builds and runs every test: the unit and integration tests on the normal build,
# then the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
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
