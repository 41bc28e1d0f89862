#!/bin/bash
# Benchmark (not a test): exact top-k search of the archive index (src/retrieval/) against
# the memory-bandwidth floor the same run measures, for the three storages (f32, and f16 /
# int8 with f32 re-ranking), on 1 thread and on THREADS; FAISS IndexFlatIP (Debian
# libfaiss-dev) on the same vectors when it is installed.
#
# usage: bench_index.sh [SIZES] [DIMS] [K] [REPS] [THREADS]
#   SIZES   comma-separated archive sizes (default 100000,1000000)
#   DIMS    comma-separated embedding sizes (default 256,512)
#   K       top-k (default 10); REPS rounds of the 16 queries (default 3)
#   THREADS threads of the second set of rows (default: the cores)
#
# For each size: the floor is the time to read as many bytes as the f32 rows (N x DIM x 4)
# with the same number of threads, measured right before every query; each time is the
# median over REPS x 16 queries, and "x floor" is it over the floor's median. The f32 ids
# of every search must be the reference's (a plain double-precision loop) and those of the
# batch too; f16 / int8 must carry the exact f32 similarity for every id they share with
# it, and their recall@k against f32 is printed. When a check fails the row says what
# differs and prints no figure, and the script exits 1.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIZES=${1:-100000,1000000}
DIMS=${2:-256,512}
K=${3:-10}
REPS=${4:-3}
THREADS=${5:-$(getconf _NPROCESSORS_ONLN)}
for v in ${SIZES//,/ } ${DIMS//,/ } "$K" "$REPS" "$THREADS"; do
    case $v in '' | *[!0-9]*) echo "bench_index.sh: '$v' is not a number" >&2 && exit 2 ;; esac
done
WORK=$(mktemp -d /tmp/radraft-bench-index.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# The batch's sgemm gets its thread count from the program (openblas_set_num_threads).
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=$THREADS

# The index and what it links (the store, src/base, and src/nn for reading a model's
# retrieval settings), compiled directly: no DCMTK, no build folder. No -march: the kernels
# are chosen at run time, as in the radraft binary.
gcc -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE -DRD_MODELS_DIR="\"$ROOT/models\"" \
    -I"$ROOT/include" -I"$ROOT/src" \
    -o "$WORK/bench_index" "$ROOT/tests/bench/bench_index.c" "$ROOT"/src/retrieval/*.c \
    "$ROOT"/src/store/*.c "$ROOT"/src/base/*.c "$ROOT"/src/nn/*.c \
    $(pkg-config --cflags --libs openblas libcjson sqlite3 libpq) -lpthread -lm
HAVE_FAISS=0
if [ -f /usr/include/faiss/IndexFlat.h ] &&
    g++ -std=c++17 -O2 -o "$WORK/bench_faiss" "$ROOT/tests/bench/bench_index_faiss.cc" \
        -lfaiss -fopenmp $(pkg-config --libs openblas) 2>"$WORK/faiss.err"; then
    HAVE_FAISS=1
fi

echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(grep -m1 'model name' /proc/cpuinfo |
    cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' \
    /proc/meminfo); kernels $("$WORK/bench_index" --isa); load average before: $(cut -d' ' \
    -f1-3 /proc/loadavg)"
echo "top-$K, $REPS x 16 queries per row; times are medians; x floor = time / floor;" \
    "x f32 = time / the f32 time; recall@$K against f32"
printf "%-14s | %2s | %-22s | %-18s | %-30s | %-30s | %-11s | %s\n" "entries x dim" th \
    "floor (read)" "f32 1 query" "f16 1 query  x f32  recall" "int8 1 query  x f32  recall" \
    "f32 16 q" "checks"
status=0
for dim in ${DIMS//,/ }; do
    for n in ${SIZES//,/ }; do
        if ! "$WORK/bench_index" "$n" "$dim" "$K" "$REPS" "$THREADS" "$WORK/ids_ref"; then
            status=1
            continue
        fi
        if [ $HAVE_FAISS = 1 ]; then
            read -r _ _ f1 f16 _ < <("$WORK/bench_faiss" "$n" "$dim" "$K" "$REPS" "$WORK/ids_fa")
            same=$(paste -d'\n' "$WORK/ids_ref" "$WORK/ids_fa" | awk 'NR % 2 { a = $0; next }
                { n++; if (a == $0) s++ } END { printf "%d/%d", s, n }')
            if [ "$same" = "16/16" ]; then
                echo "  FAISS IndexFlatIP $n x $dim ($THREADS threads): 1 query $f1 ms, 16 queries $f16 ms (same ids as the reference: $same)"
            else
                echo "  FAISS IndexFlatIP $n x $dim: ids differ from the reference ($same queries the same): no figure"
            fi
        fi
    done
done
[ $HAVE_FAISS = 1 ] || echo "(FAISS not installed: apt-get install libfaiss-dev for its rows)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
