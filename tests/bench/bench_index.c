/* Benchmark (not a test) of the archive index: exact top-k search time over N random
 * unit vectors of DIM floats, one query (sgemv) and a batch of 16 (sgemm), beside a naive
 * C loop over the same data. Built and run by bench_index.sh, which compares with FAISS.
 *
 * usage: bench_index N DIM K REPS IDS_OUT
 * prints: N DIM single_ms batch16_ms_per_batch naive_single_ms add_ms
 * and writes the ids (0-based) of each of the 16 queries' single-search top-k to IDS_OUT. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "radraft/index.h"

#define NQ 16

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* The same vectors the FAISS program generates: uniform in [-1, 1], normalized in float. */
static void gen(float *v, size_t n, int dim)
{
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (int d = 0; d < dim; d++) {
            v[i * dim + d] = frand();
            ss += (double)v[i * dim + d] * v[i * dim + d];
        }
        float inv = (float)(1.0 / sqrt(ss));
        for (int d = 0; d < dim; d++)
            v[i * dim + d] *= inv;
    }
}

/* A naive loop: every dot product in plain C, then a k-best insertion. */
static void naive(const float *db, size_t n, int dim, const float *q, int k, int64_t *ids)
{
    float best[1024];
    int nb = 0;
    for (size_t i = 0; i < n; i++) {
        float s = 0;
        for (int d = 0; d < dim; d++)
            s += db[i * dim + d] * q[d];
        if (nb == k && s <= best[k - 1])
            continue;
        int j = nb < k ? nb++ : k - 1;
        while (j > 0 && best[j - 1] < s) {
            best[j] = best[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        best[j] = s;
        ids[j] = (int64_t)i;
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: bench_index N DIM K REPS IDS_OUT\n");
        return 2;
    }
    size_t n = strtoul(argv[1], NULL, 10);
    int dim = atoi(argv[2]), k = atoi(argv[3]), reps = atoi(argv[4]);
    float *db = malloc(n * dim * sizeof(float)), *qs = malloc(NQ * dim * sizeof(float));
    rd_index_entry *es = calloc(n, sizeof *es);
    char(*keys)[24] = calloc(n, sizeof *keys);
    rd_index *ix = NULL;
    rd_error err;
    rd_index_query q[NQ];
    rd_index_params p;
    rd_index_hit *hits = calloc((size_t)NQ * k, sizeof *hits);
    int n_hits[NQ];
    double *t1 = calloc((size_t)reps * NQ, sizeof(double)),
           *tb = calloc((size_t)reps, sizeof(double));
    double *tn = calloc((size_t)reps, sizeof(double));
    int64_t naive_ids[1024];
    if (!db || !qs || !es || !keys || !hits || !t1 || !tb || !tn)
        return 1;
    gen(db, n, dim);
    gen(qs, NQ, dim);
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        es[i].key = keys[i];
        es[i].study_uid = keys[i];
    }
    if (rd_index_create(&ix, "bench", dim, &err) != RD_OK)
        return 1;
    double a0 = now_ms();
    if (rd_index_add_batch(ix, NULL, es, n, db, NULL, NULL, &err) != RD_OK) {
        fprintf(stderr, "%s\n", rd_error_message(&err));
        return 1;
    }
    double add_ms = now_ms() - a0;
    rd_index_params_default(&p);
    p.k = k;
    for (int i = 0; i < NQ; i++)
        q[i] = (rd_index_query){qs + (size_t)i * dim, NULL, NULL, RD_VIEW_UNKNOWN, 0};
    /* warm-up */
    rd_index_search_batch(ix, q, NQ, &p, hits, n_hits, &err);
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < NQ; i++) {
            double t0 = now_ms();
            if (rd_index_search(ix, &q[i], &p, hits + (size_t)i * k, &n_hits[i], &err) != RD_OK)
                return 1;
            t1[r * NQ + i] = now_ms() - t0;
        }
        double t0 = now_ms();
        if (rd_index_search_batch(ix, q, NQ, &p, hits, n_hits, &err) != RD_OK)
            return 1;
        tb[r] = now_ms() - t0;
        t0 = now_ms();
        naive(db, n, dim, qs + (size_t)(r % NQ) * dim, k, naive_ids);
        tn[r] = now_ms() - t0;
    }
    /* Exactness against the naive loop for one query. */
    for (int i = 0; i < NQ; i++)
        rd_index_search(ix, &q[i], &p, hits + (size_t)i * k, &n_hits[i], &err);
    naive(db, n, dim, qs, k, naive_ids);
    int agree = 0;
    for (int j = 0; j < k; j++)
        agree += naive_ids[j] == hits[j].id - 1;
    FILE *fp = fopen(argv[5], "w");
    for (int i = 0; fp && i < NQ; i++) {
        for (int j = 0; j < n_hits[i]; j++)
            fprintf(fp, "%s%lld", j ? " " : "", (long long)hits[(size_t)i * k + j].id - 1);
        fputc('\n', fp);
    }
    if (fp)
        fclose(fp);
    printf("%zu %d %.4f %.4f %.4f %.1f %d\n", n, dim, median(t1, reps * NQ), median(tb, reps),
           median(tn, reps), add_ms, agree);
    rd_index_free(ix);
    return 0;
}
