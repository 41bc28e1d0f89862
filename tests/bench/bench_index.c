/* Benchmark (not a test) of the archive index: one query and a batch of 16 over N random
 * unit vectors of DIM floats, against the memory-bandwidth floor measured in the same run.
 * Built and run by bench_index.sh.
 *
 * usage: bench_index N DIM K REPS THREADS IDS_OUT
 *
 * What it does, in order:
 *  1. N + 16 random unit vectors (the same generator as bench_index_faiss.cc); three
 *     indexes of the same entries: storage f32, f16 and int8.
 *  2. The reference: every similarity in double precision by a plain loop, the k best by
 *     (similarity, id), for each of the 16 queries.
 *  3. For 1 thread and for THREADS threads, REPS rounds of: for each query, the memory
 *     floor (reading an N x DIM float buffer, as many bytes as the f32 rows, with the same
 *     number of threads), then the query on each index. Every hit list is kept.
 *  4. The checks: every f32 search (every round, every thread count) and every batch must
 *     return exactly the reference's ids in its order; f16 and int8 must return exact f32
 *     similarities for the ids they share with the reference, and their recall@k is
 *     counted. If any check fails it prints what differs and no figure, and exits 1.
 *  5. Only then the figures: medians of each time, the floor's median, each time over it.
 * The ids of the reference go to IDS_OUT (one line per query) for the FAISS comparison. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "radraft/index.h"
#include "retrieval/index_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#endif

#define NQ 16
#define MAX_K 1024
#define MAX_THREADS 64

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
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
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

/* ---- the reference: a plain loop in double precision ---- */

typedef struct ref_hit {
    double sim;
    int64_t id; /* the index's id: row + 1 */
} ref_hit;

static void reference(const float *db, size_t n, int dim, const float *q, int k, ref_hit *out)
{
    int nb = 0;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int d = 0; d < dim; d++)
            s += (double)db[i * dim + d] * q[d];
        /* Ranks by similarity, then smaller id, as the index does. */
        if (nb == k && s <= out[k - 1].sim)
            continue;
        int j = nb < k ? nb++ : k - 1;
        while (j > 0 && out[j - 1].sim < s) {
            out[j] = out[j - 1];
            j--;
        }
        out[j].sim = s;
        out[j].id = (int64_t)i + 1;
    }
}

/* ---- the memory floor: read as many bytes as the f32 rows ---- */

typedef struct read_part {
    const uint64_t *p;
    size_t n;    /* words */
    int streams; /* 1, 4 or 8 parts of the share read side by side */
    rd__index_isa isa;
    uint64_t sum;
} read_part;

/* The floor is read with the widest loads the CPU has (the index's kernels use the same)
 * and independent sums, so that the loop waits on memory only, in the fastest of three
 * patterns (chosen at start, see main): one sequential stream, or 4 or 8 streams far
 * apart, one cache line of each in turn; a machine's prefetchers may keep more reads in
 * flight for several streams than for one, and a slower floor would flatter the index. */
static uint64_t read_words(const uint64_t *p, size_t n, int streams)
{
    uint64_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t per = n / (size_t)streams / 8 * 8, i = 0;
    for (; i < per; i += 8)
        for (int s = 0; s < streams; s++)
            for (int l = 0; l < 8; l++)
                a[l] += p[(size_t)s * per + i + l];
    for (i = per * (size_t)streams; i < n; i++)
        a[0] += p[i];
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

#ifdef BENCH_X86
__attribute__((target("avx2"))) static uint64_t read_words_avx2(const uint64_t *p, size_t n,
                                                                int streams)
{
    __m256i a[8];
    size_t per = n / (size_t)streams / 8 * 8, i;
    uint64_t t[4], s = 0;
    for (int k = 0; k < 8; k++)
        a[k] = _mm256_setzero_si256();
    if (streams == 1) {
        for (i = 0; i + 16 <= n; i += 16)
            for (int k = 0; k < 4; k++)
                a[k] = _mm256_add_epi64(a[k], _mm256_loadu_si256((const __m256i *)(p + i + 4 * k)));
        per = i;
    } else if (streams == 4) {
        for (i = 0; i < per; i += 8)
            for (int k = 0; k < 4; k++) {
                const uint64_t *q = p + (size_t)k * per + i;
                a[2 * k] = _mm256_add_epi64(a[2 * k], _mm256_loadu_si256((const __m256i *)q));
                a[2 * k + 1] =
                    _mm256_add_epi64(a[2 * k + 1], _mm256_loadu_si256((const __m256i *)(q + 4)));
            }
        per *= 4;
    } else {
        for (i = 0; i < per; i += 8)
            for (int k = 0; k < 8; k++) {
                const uint64_t *q = p + (size_t)k * per + i;
                a[k] = _mm256_add_epi64(a[k], _mm256_loadu_si256((const __m256i *)q));
                a[k] = _mm256_add_epi64(a[k], _mm256_loadu_si256((const __m256i *)(q + 4)));
            }
        per *= 8;
    }
    for (int k = 1; k < 8; k++)
        a[0] = _mm256_add_epi64(a[0], a[k]);
    _mm256_storeu_si256((__m256i *)t, a[0]);
    for (i = per; i < n; i++)
        s += p[i];
    return s + t[0] + t[1] + t[2] + t[3];
}

__attribute__((target("avx512f"))) static uint64_t read_words_avx512(const uint64_t *p, size_t n,
                                                                     int streams)
{
    __m512i a[8];
    size_t per = n / (size_t)streams / 8 * 8, i;
    uint64_t s = 0;
    for (int k = 0; k < 8; k++)
        a[k] = _mm512_setzero_si512();
    if (streams == 1) {
        for (i = 0; i + 32 <= n; i += 32)
            for (int k = 0; k < 4; k++)
                a[k] = _mm512_add_epi64(a[k], _mm512_loadu_si512((const void *)(p + i + 8 * k)));
        per = i;
    } else if (streams == 4) {
        for (i = 0; i < per; i += 8)
            for (int k = 0; k < 4; k++)
                a[k] = _mm512_add_epi64(
                    a[k], _mm512_loadu_si512((const void *)(p + (size_t)k * per + i)));
        per *= 4;
    } else {
        for (i = 0; i < per; i += 8)
            for (int k = 0; k < 8; k++)
                a[k] = _mm512_add_epi64(
                    a[k], _mm512_loadu_si512((const void *)(p + (size_t)k * per + i)));
        per *= 8;
    }
    for (int k = 1; k < 8; k++)
        a[0] = _mm512_add_epi64(a[0], a[k]);
    for (i = per; i < n; i++)
        s += p[i];
    return s + (uint64_t)_mm512_reduce_add_epi64(a[0]);
}
#endif

static void *read_thread(void *v)
{
    read_part *rp = v;
#ifdef BENCH_X86
    if (rp->isa == RD__ISA_AVX512) {
        rp->sum = read_words_avx512(rp->p, rp->n, rp->streams);
        return NULL;
    }
    if (rp->isa == RD__ISA_AVX2) {
        rp->sum = read_words_avx2(rp->p, rp->n, rp->streams);
        return NULL;
    }
#endif
    rp->sum = read_words(rp->p, rp->n, rp->streams);
    return NULL;
}

/* Reads `bytes` of `buf` on `nth` threads (contiguous shares, threads started as the
 * search starts them); returns milliseconds. */
static double read_floor(const void *buf, size_t bytes, int nth, int streams, rd__index_isa isa,
                         uint64_t *sink)
{
    read_part parts[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    size_t words = bytes / 8;
    double t0 = now_ms();
    for (int t = 0; t < nth; t++) {
        size_t lo = words * (size_t)t / (size_t)nth, hi = words * (size_t)(t + 1) / (size_t)nth;
        parts[t].p = (const uint64_t *)buf + lo;
        parts[t].n = hi - lo;
        parts[t].streams = streams;
        parts[t].isa = isa;
    }
    for (int t = 1; t < nth; t++)
        started[t] = pthread_create(&th[t], NULL, read_thread, &parts[t]) == 0;
    read_thread(&parts[0]);
    for (int t = 1; t < nth; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            read_thread(&parts[t]);
    }
    double ms = now_ms() - t0;
    for (int t = 0; t < nth; t++)
        *sink += parts[t].sum;
    return ms;
}

/* ---- checks ---- */

enum { S_F32, S_F16, S_INT8, N_STORAGE };

/* Exactly the reference's ids, in its order. */
static int same_ids(const rd_index_hit *h, int n_hits, const ref_hit *ref, int k, const char *what,
                    int query)
{
    if (n_hits != k) {
        printf("MISMATCH %s query %d: %d hits, the reference %d\n", what, query, n_hits, k);
        return 0;
    }
    for (int j = 0; j < k; j++)
        if (h[j].id != ref[j].id) {
            printf("MISMATCH %s query %d rank %d: id %lld (%.9f), the reference id %lld (%.9f)\n",
                   what, query, j, (long long)h[j].id, h[j].similarity, (long long)ref[j].id,
                   ref[j].sim);
            return 0;
        }
    return 1;
}

/* Hits of a reduced-precision search: how many of the reference's ids it has; each shared
 * id must carry the f32 search's similarity exactly (re-ranked from the f32 rows). */
static int recall_of(const rd_index_hit *h, int n_hits, const rd_index_hit *f32, int k,
                     const char *what, int query, int *ok)
{
    int found = 0;
    for (int j = 0; j < n_hits; j++)
        for (int r = 0; r < k; r++)
            if (h[j].id == f32[r].id) {
                found++;
                if (h[j].similarity != f32[r].similarity) {
                    printf("MISMATCH %s query %d: id %lld has similarity %.9f, f32 %.9f\n", what,
                           query, (long long)h[j].id, h[j].similarity, f32[r].similarity);
                    *ok = 0;
                }
            }
    return found;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--isa") == 0) {
        printf("%s\n", rd__index_isa_name(rd__index_isa_best()));
        return 0;
    }
    if (argc != 7) {
        fprintf(stderr, "usage: bench_index N DIM K REPS THREADS IDS_OUT\n");
        return 2;
    }
    char *end;
    size_t n = strtoul(argv[1], &end, 10);
    long dim_l = strtol(argv[2], &end, 10), k_l = strtol(argv[3], &end, 10),
         reps_l = strtol(argv[4], &end, 10), th_l = strtol(argv[5], &end, 10);
    if (n < 1 || dim_l < 1 || dim_l > RD_INDEX_MAX_DIM || k_l < 1 || k_l > MAX_K ||
        (size_t)k_l > n || reps_l < 1 || th_l < 1 || th_l > MAX_THREADS) {
        fprintf(stderr, "bench_index: bad arguments\n");
        return 2;
    }
    int dim = (int)dim_l, k = (int)k_l, reps = (int)reps_l, threads = (int)th_l;
    int thread_counts[2] = {1, threads}, n_tc = threads > 1 ? 2 : 1;
    size_t bytes = n * (size_t)dim * sizeof(float);
    float *db = malloc(bytes), *qs = malloc((size_t)NQ * dim * sizeof(float));
    rd_index_entry *es = calloc(n, sizeof *es);
    char(*keys)[24] = calloc(n, sizeof *keys);
    rd_index *ix[N_STORAGE] = {NULL, NULL, NULL};
    const rd_index_storage storage[N_STORAGE] = {RD_INDEX_STORAGE_F32, RD_INDEX_STORAGE_F16,
                                                 RD_INDEX_STORAGE_INT8};
    rd_error err;
    ref_hit(*ref)[MAX_K] = calloc(NQ, sizeof *ref);
    size_t n_runs = (size_t)reps * NQ;
    /* Every hit list of every timed search: [thread count][storage][run][k]. */
    rd_index_hit *hits = calloc((size_t)n_tc * N_STORAGE * n_runs * (size_t)k, sizeof *hits);
    rd_index_hit *bhits = calloc((size_t)n_tc * reps * NQ * (size_t)k, sizeof *bhits);
    double *t_floor = calloc((size_t)n_tc * n_runs, sizeof(double));
    double *t_q = calloc((size_t)n_tc * N_STORAGE * n_runs, sizeof(double));
    double *t_b = calloc((size_t)n_tc * reps, sizeof(double));
    int *nh = calloc((size_t)n_tc * N_STORAGE * n_runs, sizeof(int)), bn[NQ];
    int *bnh = calloc((size_t)n_tc * reps * NQ, sizeof(int));
    uint64_t sink = 0;
    if (!db || !qs || !es || !keys || !ref || !hits || !bhits || !t_floor || !t_q || !t_b || !nh ||
        !bnh) {
        fprintf(stderr, "bench_index: out of memory\n");
        return 1;
    }
    gen(db, n, dim);
    gen(qs, NQ, dim);
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        es[i].key = keys[i];
        es[i].study_uid = keys[i];
    }
    double add_ms = 0;
    for (int s = 0; s < N_STORAGE; s++) {
        double a0 = now_ms();
        if (rd_index_create(&ix[s], "bench", dim, &err) != RD_OK ||
            rd_index_set_storage(ix[s], storage[s], &err) != RD_OK ||
            rd_index_add_batch(ix[s], NULL, es, n, db, NULL, NULL, &err) != RD_OK) {
            fprintf(stderr, "bench_index: %s\n", rd_error_message(&err));
            return 1;
        }
        if (s == S_F32)
            add_ms = now_ms() - a0;
    }
    double r0 = now_ms();
    for (int i = 0; i < NQ; i++)
        reference(db, n, dim, qs + (size_t)i * dim, k, ref[i]);
    double ref_ms = (now_ms() - r0) / NQ;

    rd_index_params p;
    rd_index_query q[NQ];
    rd_index_params_default(&p);
    p.k = k;
    for (int i = 0; i < NQ; i++)
        q[i] = (rd_index_query){qs + (size_t)i * dim, NULL, NULL, RD_VIEW_UNKNOWN, 0};
    /* Warm-up: every index once, the floor once. */
    for (int s = 0; s < N_STORAGE; s++)
        rd_index_search(ix[s], &q[0], &p, hits, &nh[0], &err);
    /* The floor's read pattern: the fastest of the three over 3 tries each (the last
     * round also warms up). */
    rd__index_isa isa = rd__index_get_isa(ix[S_F32]);
    const int patterns[3] = {1, 4, 8};
    int streams = 1;
    double best = INFINITY, pattern_ms[3];
    for (int pi = 0; pi < 3; pi++) {
        double v[3];
        for (int r = 0; r < 3; r++)
            v[r] = read_floor(db, bytes, 1, patterns[pi], isa, &sink);
        pattern_ms[pi] = median(v, 3);
        if (pattern_ms[pi] < best) {
            best = pattern_ms[pi];
            streams = patterns[pi];
        }
    }

    for (int c = 0; c < n_tc; c++) {
        p.threads = thread_counts[c];
        openblas_set_num_threads(thread_counts[c]);
        for (int r = 0; r < reps; r++) {
            for (int i = 0; i < NQ; i++) {
                size_t run = (size_t)r * NQ + (size_t)i;
                t_floor[c * n_runs + run] =
                    read_floor(db, bytes, thread_counts[c], streams, isa, &sink);
                for (int s = 0; s < N_STORAGE; s++) {
                    size_t at = ((size_t)c * N_STORAGE + (size_t)s) * n_runs + run;
                    double t0 = now_ms();
                    if (rd_index_search(ix[s], &q[i], &p, hits + at * (size_t)k, &nh[at], &err) !=
                        RD_OK) {
                        fprintf(stderr, "bench_index: %s\n", rd_error_message(&err));
                        return 1;
                    }
                    t_q[at] = now_ms() - t0;
                }
            }
            double t0 = now_ms();
            size_t at = ((size_t)c * reps + (size_t)r) * NQ;
            if (rd_index_search_batch(ix[S_F32], q, NQ, &p, bhits + at * (size_t)k, bn, &err) !=
                RD_OK) {
                fprintf(stderr, "bench_index: %s\n", rd_error_message(&err));
                return 1;
            }
            t_b[c * reps + r] = now_ms() - t0;
            memcpy(bnh + at, bn, sizeof bn);
        }
    }

    /* The checks, before any figure. */
    int ok = 1;
    long found[2][N_STORAGE] = {{0}};
    for (int c = 0; c < n_tc; c++) {
        char what[64];
        for (size_t run = 0; run < n_runs; run++) {
            int i = (int)(run % NQ);
            size_t a32 = ((size_t)c * N_STORAGE + S_F32) * n_runs + run;
            snprintf(what, sizeof what, "f32 (%d threads)", thread_counts[c]);
            ok &= same_ids(hits + a32 * (size_t)k, nh[a32], ref[i], k, what, i);
            for (int s = S_F16; s < N_STORAGE; s++) {
                size_t at = ((size_t)c * N_STORAGE + (size_t)s) * n_runs + run;
                snprintf(what, sizeof what, "%s (%d threads)", rd_index_storage_name(storage[s]),
                         thread_counts[c]);
                found[c][s] += recall_of(hits + at * (size_t)k, nh[at], hits + a32 * (size_t)k, k,
                                         what, i, &ok);
            }
        }
        for (int r = 0; r < reps; r++)
            for (int i = 0; i < NQ; i++) {
                size_t at = ((size_t)c * reps + (size_t)r) * NQ + (size_t)i;
                snprintf(what, sizeof what, "batch of 16 (%d threads)", thread_counts[c]);
                ok &= same_ids(bhits + at * (size_t)k, bnh[at], ref[i], k, what, i);
            }
    }
    FILE *fp = fopen(argv[6], "w");
    for (int i = 0; fp && i < NQ; i++) {
        for (int j = 0; j < k; j++)
            fprintf(fp, "%s%lld", j ? " " : "", (long long)ref[i][j].id - 1);
        fputc('\n', fp);
    }
    if (!fp || fclose(fp) != 0) {
        fprintf(stderr, "bench_index: cannot write %s\n", argv[6]);
        return 1;
    }
    if (!ok) {
        printf("REFUSED: %zu x %d: the index did not return the reference's top-%d; no figures\n",
               n, dim, k);
        return 1;
    }
    for (int c = 0; c < n_tc; c++) {
        double fl = median(t_floor + c * n_runs, (int)n_runs);
        double tm[N_STORAGE];
        for (int s = 0; s < N_STORAGE; s++)
            tm[s] = median(t_q + ((size_t)c * N_STORAGE + (size_t)s) * n_runs, (int)n_runs);
        double tb = median(t_b + c * reps, reps);
        double gbs = (double)bytes / 1e6 / fl;
        printf("%7zu x %-4d | %2d | %8.2f ms %5.1f GB/s | %8.2f ms %5.2fx | %8.2f ms %5.2fx %4.2f "
               "%5.3f | %8.2f ms %5.2fx %4.2f %5.3f | %8.1f ms | ok (%d x %d searches)\n",
               n, dim, thread_counts[c], fl, gbs, tm[S_F32], tm[S_F32] / fl, tm[S_F16],
               tm[S_F16] / fl, tm[S_F16] / tm[S_F32],
               (double)found[c][S_F16] / ((double)n_runs * k), tm[S_INT8], tm[S_INT8] / fl,
               tm[S_INT8] / tm[S_F32], (double)found[c][S_INT8] / ((double)n_runs * k), tb,
               N_STORAGE, (int)n_runs);
    }
    printf("  (%zu x %d: kernels %s; floor read as %d stream(s): 1 / 4 / 8 streams took %.1f / "
           "%.1f / %.1f ms on 1 thread; add %.0f ms; reference %.0f ms a query; %llu)\n",
           n, dim, rd__index_isa_name(isa), streams, pattern_ms[0], pattern_ms[1], pattern_ms[2],
           add_ms, ref_ms, (unsigned long long)(sink & 1));
    for (int s = 0; s < N_STORAGE; s++)
        rd_index_free(ix[s]);
    free(db);
    free(qs);
    free(es);
    free(keys);
    free(ref);
    free(hits);
    free(bhits);
    free(t_floor);
    free(t_q);
    free(t_b);
    free(nh);
    free(bnh);
    return 0;
}
