#!/bin/bash
# Benchmark (not a test): exact top-k search of the archive index (src/retrieval/, OpenBLAS
# sgemv / sgemm) against FAISS IndexFlatIP (Debian libfaiss-dev) and a naive C loop, on the
# same random unit vectors, same machine, same thread count.
#
# usage: bench_index.sh [SIZES] [DIM] [K] [REPS] [THREADS]
#   SIZES   comma-separated archive sizes (default 2000,20000,100000)
#   DIM     embedding size (default 256); K top-k (default 10); REPS repetitions (default 20)
#   THREADS OpenBLAS and OpenMP threads for both (default 1)
# Prints one row per size: median ms of one query and of a batch of 16 for radraft and
# FAISS, their ratio (radraft / FAISS, < 1 means radraft is faster), the naive loop, and
# whether both return the same top-k ids. Without libfaiss-dev the FAISS columns say n/a.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIZES=${1:-2000,20000,100000}
DIM=${2:-256}
K=${3:-10}
REPS=${4:-20}
THREADS=${5:-1}
WORK=$(mktemp -d /tmp/radraft-bench-index.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

# The index and what it links, compiled directly (no DCMTK needed for this module).
gcc -std=c11 -O2 -D_GNU_SOURCE -I"$ROOT/include" -I"$ROOT/src" -o "$WORK/bench_index" \
    "$ROOT/tests/bench/bench_index.c" "$ROOT"/src/retrieval/*.c "$ROOT"/src/store/*.c \
    "$ROOT/src/base/util.c" "$ROOT/src/base/log.c" "$ROOT/src/base/error.c" \
    "$ROOT/src/base/sha256.c" $(pkg-config --cflags --libs openblas libcjson sqlite3) -lpthread -lm
HAVE_FAISS=0
if [ -f /usr/include/faiss/IndexFlat.h ] &&
    g++ -std=c++17 -O2 -o "$WORK/bench_faiss" "$ROOT/tests/bench/bench_index_faiss.cc" \
        -lfaiss -fopenmp $(pkg-config --libs openblas) 2>"$WORK/faiss.err"; then
    HAVE_FAISS=1
else
    echo "(FAISS not available: apt-get install libfaiss-dev; comparing with the naive loop only)"
fi

echo "threads=$THREADS dim=$DIM k=$K reps=$REPS ($(getconf _NPROCESSORS_ONLN) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
printf "%8s | %12s %12s | %12s %12s | %8s %8s | %10s | %s\n" entries "radraft 1q" "radraft 16q" \
    "faiss 1q" "faiss 16q" "ratio 1q" "ratio 16" "naive 1q" "same top-k"
for n in ${SIZES//,/ }; do
    read -r _ _ r1 r16 rn _ agree < <("$WORK/bench_index" "$n" "$DIM" "$K" "$REPS" "$WORK/ids_rd")
    f1=n/a f16=n/a q1=n/a q16=n/a same=n/a
    if [ $HAVE_FAISS = 1 ]; then
        read -r _ _ f1 f16 _ < <("$WORK/bench_faiss" "$n" "$DIM" "$K" "$REPS" "$WORK/ids_fa")
        q1=$(awk -v a="$r1" -v b="$f1" 'BEGIN { printf "%.2f", a / b }')
        q16=$(awk -v a="$r16" -v b="$f16" 'BEGIN { printf "%.2f", a / b }')
        same=$(paste -d'\n' "$WORK/ids_rd" "$WORK/ids_fa" | awk 'NR % 2 { a = $0; next }
            { n++; if (a == $0) s++ } END { printf "%d/%d queries", s, n }')
    fi
    printf "%8s | %9s ms %9s ms | %9s ms %9s ms | %8s %8s | %7s ms | %s (naive %d/%d)\n" \
        "$n" "$r1" "$r16" "$f1" "$f16" "$q1" "$q16" "$rn" "$same" "$agree" "$K"
done
