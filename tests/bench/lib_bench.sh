# Shared by the C-STORE benchmarks (sourced, not run).

# rd_bench_instances SRC N: N copies of the DICOM file SRC in src/s1 .. src/s8 of the current
# folder (copy i in src/s((i-1) % 8 + 1)), each with a SOP Instance UID of its own (dcmodify
# -gin; -nb: no backup files) in SRC's study and series, so that every copy is a distinct
# instance of one series; sets BYTES to their total size.
rd_bench_instances() {
    local src=$1 n=$2 s i
    for s in $(seq 1 8); do mkdir -p src/s$s; done
    for i in $(seq 1 "$n"); do cp "$src" src/s$(((i - 1) % 8 + 1))/f$i.dcm; done
    chmod -R u+w src
    for s in $(seq 1 8); do dcmodify -nb -gin src/s$s/*.dcm >/dev/null 2>&1; done
    BYTES=$(du -cb src/s*/*.dcm | tail -1 | cut -f1)
}
