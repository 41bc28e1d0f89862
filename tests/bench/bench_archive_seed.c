/* Benchmark helper (not a test): a seed archive of N entries for a model, for measuring
 * `radraft batch` against a large archive (bench_batch.sh --archive N). The entries of the
 * model's own seed file come first, then random unit vectors (frontal, undated, random
 * finding states, no patient) up to N; written with rd_index_seed_write.
 *
 * usage: bench_archive_seed MODEL_VERSION DIM SEED_IN N SEED_OUT */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/index.h"

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: bench_archive_seed MODEL_VERSION DIM SEED_IN N SEED_OUT\n");
        return 2;
    }
    char *end;
    long dim = strtol(argv[2], &end, 10), n = strtol(argv[4], &end, 10), have = 0, written = 0;
    rd_index *ix = NULL;
    rd_error err;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    if (dim < 1 || dim > RD_INDEX_MAX_DIM || n < 1 || n > RD_INDEX_MAX_ENTRIES) {
        fprintf(stderr, "bench_archive_seed: bad DIM or N\n");
        return 2;
    }
    if (rd_index_create(&ix, argv[1], (int)dim, &err) != RD_OK ||
        rd_index_seed_read(ix, NULL, argv[3], 0, &have, &err) != RD_OK) {
        fprintf(stderr, "bench_archive_seed: %s\n", rd_error_message(&err));
        return 1;
    }
    enum { CHUNK = 65536 };
    float *emb = malloc(sizeof(float) * CHUNK * (size_t)dim);
    rd_index_entry *es = calloc(CHUNK, sizeof *es);
    char(*keys)[32] = calloc(CHUNK, sizeof *keys), (*studies)[32] = calloc(CHUNK, sizeof *studies);
    if (!emb || !es || !keys || !studies) {
        fprintf(stderr, "bench_archive_seed: out of memory\n");
        return 1;
    }
    for (long at = have; at < n;) {
        long m = n - at < CHUNK ? n - at : CHUNK;
        for (long i = 0; i < m; i++) {
            snprintf(keys[i], sizeof keys[i], "synthetic-%ld", at + i);
            snprintf(studies[i], sizeof studies[i], "2.25.77%ld", at + i);
            memset(&es[i], 0, sizeof es[i]);
            es[i].key = keys[i];
            es[i].study_uid = studies[i];
            es[i].view = RD_VIEW_FRONTAL;
            es[i].source = RD_ARCHIVE_IMPORT;
            for (int f = 0; f < RD_FINDING_COUNT; f++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                es[i].state[f] = (rd_finding_state)(x % 4);
            }
            for (long d = 0; d < dim; d++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                emb[i * dim + d] = (float)((double)(x >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
            }
        }
        if (rd_index_add_batch(ix, NULL, es, (size_t)m, emb, NULL, NULL, &err) != RD_OK) {
            fprintf(stderr, "bench_archive_seed: %s\n", rd_error_message(&err));
            return 1;
        }
        at += m;
    }
    if (rd_index_seed_write(ix, argv[5], 1, &written, &err) != RD_OK) {
        fprintf(stderr, "bench_archive_seed: %s\n", rd_error_message(&err));
        return 1;
    }
    printf("%ld entries (%ld from %s) written to %s\n", written, have, argv[3], argv[5]);
    rd_index_free(ix);
    free(emb);
    free(es);
    free(keys);
    free(studies);
    return written == n ? 0 : 1;
}
