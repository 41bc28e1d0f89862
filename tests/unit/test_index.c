/* The archive index: exact top-k against a brute-force reference (filters, ties, k > n)
 * with every scan kernel this CPU runs and dims that are not a multiple of any vector
 * width, thread counts that do not change results, the f16 / int8 storages (conversions,
 * recall, exact re-ranked similarities), batch == single searches, concurrent adds and
 * searches, persistence through the store, model-version isolation, votes, settings, and
 * seed files (round trip, corruption). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/config.h"
#include "radraft/index.h"
#include "rdtest.h"
#include "rdtest_store.h"
#include "store/store_int.h"
#include "base/util.h"
#include "retrieval/index_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TEST_X86 1
#endif

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static float frand(void)
{
    return (float)((double)(rng() >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

/* A synthetic archive kept beside the index so that the reference can recompute
 * everything: entry i has id ids[i] (assigned by the index). */
typedef struct fixture {
    int n, dim;
    float *emb; /* raw (not normalized) */
    char (*key)[32];
    char (*study)[65];
    char (*patient)[65];
    int *view, *date;
    rd_finding_state (*state)[RD_FINDING_COUNT];
    int64_t *ids;
} fixture;

static void fixture_make(fixture *f, int n, int dim, int n_patients)
{
    f->n = n;
    f->dim = dim;
    f->emb = malloc(sizeof(float) * (size_t)n * (size_t)dim);
    f->key = calloc((size_t)n, sizeof *f->key);
    f->study = calloc((size_t)n, sizeof *f->study);
    f->patient = calloc((size_t)n, sizeof *f->patient);
    f->view = calloc((size_t)n, sizeof(int));
    f->date = calloc((size_t)n, sizeof(int));
    f->state = calloc((size_t)n, sizeof *f->state);
    f->ids = calloc((size_t)n, sizeof(int64_t));
    for (int i = 0; i < n; i++) {
        char pid[32];
        /* Every 10th entry repeats the previous embedding exactly: ties. */
        for (int d = 0; d < dim; d++)
            f->emb[(size_t)i * dim + d] =
                (i % 10 == 9) ? f->emb[(size_t)(i - 1) * dim + d] * 2.0f : frand();
        snprintf(f->key[i], sizeof f->key[i], "key-%d", i);
        snprintf(f->study[i], sizeof f->study[i], "1.2.3.%d", i / 2); /* 2 images a study */
        snprintf(pid, sizeof pid, "P%d", (int)(rng() % (uint64_t)n_patients));
        if (i % 17 == 5)
            f->patient[i][0] = '\0'; /* unknown patient */
        else
            rd_index_patient_hash("salt", pid, f->patient[i]);
        f->view[i] = (int)(rng() % 3);
        f->date[i] = (i % 7 == 3) ? 0 : 20200101 + (int)(rng() % 12) * 100 + (int)(rng() % 28);
        for (int k = 0; k < RD_FINDING_COUNT; k++)
            f->state[i][k] = (rd_finding_state)(rng() % 4);
    }
}

static void fixture_free(fixture *f)
{
    free(f->emb);
    free(f->key);
    free(f->study);
    free(f->patient);
    free(f->view);
    free(f->date);
    free(f->state);
    free(f->ids);
}

static rd_index_entry fixture_entry(const fixture *f, int i)
{
    rd_index_entry e;
    memset(&e, 0, sizeof e);
    e.key = f->key[i];
    e.study_uid = f->study[i];
    e.patient_hash = f->patient[i];
    e.view = (rd_view_family)f->view[i];
    e.study_date = f->date[i];
    e.source = (rd_archive_source)(i % 3);
    memcpy(e.state, f->state[i], sizeof e.state);
    return e;
}

static rd_status fixture_add_all(const fixture *f, rd_index *ix, rd_store *store, rd_error *err)
{
    for (int i = 0; i < f->n; i++) {
        rd_index_entry e = fixture_entry(f, i);
        int added = 0;
        rd_status st =
            rd_index_add(ix, store, &e, f->emb + (size_t)i * f->dim, &f->ids[i], &added, err);
        if (st != RD_OK)
            return st;
        if (!added)
            return rd_error_set(err, RD_E_INTERNAL, "entry %d not added", i);
    }
    return RD_OK;
}

static double cosine(const float *a, const float *b, int dim)
{
    double ab = 0, aa = 0, bb = 0;
    for (int d = 0; d < dim; d++) {
        ab += (double)a[d] * b[d];
        aa += (double)a[d] * a[d];
        bb += (double)b[d] * b[d];
    }
    return ab / sqrt(aa * bb);
}

/* Days since an epoch, by the straightforward month walk (independent of the index's
 * formula). */
static long ref_days(int date)
{
    static const int md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = date / 10000, m = date / 100 % 100, d = date % 100;
    long days = 0;
    for (int yy = 1900; yy < y; yy++)
        days += ((yy % 4 == 0 && yy % 100 != 0) || yy % 400 == 0) ? 366 : 365;
    for (int mm = 1; mm < m; mm++)
        days += md[mm - 1] + (mm == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    return days + d;
}

typedef struct ref_hit {
    double sim;
    int64_t id;
    int i;
} ref_hit;

static int ref_cmp(const void *a, const void *b)
{
    const ref_hit *x = a, *y = b;
    if (x->sim != y->sim)
        return x->sim > y->sim ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Brute force: every entry that passes the filters, best first. Returns the count. */
static int reference(const fixture *f, const rd_index_query *q, const rd_index_params *p,
                     ref_hit *out)
{
    int n = 0;
    for (int i = 0; i < f->n; i++) {
        double s = cosine(q->embedding, f->emb + (size_t)i * f->dim, f->dim);
        if (p->min_similarity > -1 && s < p->min_similarity - 1e-6)
            continue;
        if (q->study_uid && q->study_uid[0] && strcmp(q->study_uid, f->study[i]) == 0)
            continue;
        if (q->patient_hash && q->patient_hash[0] && f->patient[i][0] &&
            strcmp(q->patient_hash, f->patient[i]) == 0)
            continue;
        if (q->view != RD_VIEW_UNKNOWN && (int)q->view != f->view[i])
            continue;
        if (p->date_window_days > 0 && q->study_date) {
            if (!f->date[i] ||
                labs(ref_days(f->date[i]) - ref_days(q->study_date)) > p->date_window_days)
                continue;
        }
        out[n].sim = s;
        out[n].id = f->ids[i];
        out[n].i = i;
        n++;
    }
    qsort(out, (size_t)n, sizeof *out, ref_cmp);
    return n;
}

/* Index hits == the reference's first k, similarities within `tol`; where the reference
 * has near-ties the order or the choice among the tied may differ (float rounding), so an
 * id is accepted when the reference ranks it with a similarity within `tol` of the hit's. */
static int hits_match(const fixture *f, const rd_index_hit *hits, int n_hits, const ref_hit *ref,
                      int n_ref, int k, double tol)
{
    int expect = n_ref < k ? n_ref : k, bad = 0;
    if (n_hits != expect) {
        fprintf(stderr, "hits %d, reference %d\n", n_hits, expect);
        return 0;
    }
    for (int r = 0; r < n_hits; r++) {
        int found = 0;
        if (fabs(hits[r].similarity - ref[r].sim) > tol) {
            fprintf(stderr, "rank %d: similarity %g, reference %g\n", r, hits[r].similarity,
                    ref[r].sim);
            bad = 1;
        }
        if (r > 0 &&
            (hits[r].similarity > hits[r - 1].similarity ||
             (hits[r].similarity == hits[r - 1].similarity && hits[r].id <= hits[r - 1].id))) {
            fprintf(stderr, "rank %d out of order\n", r);
            bad = 1;
        }
        for (int j = 0; j < n_ref && !found; j++)
            if (ref[j].id == hits[r].id && fabs(ref[j].sim - hits[r].similarity) <= tol &&
                (ref[j].id == ref[r].id || fabs(ref[j].sim - ref[r].sim) <= tol)) {
                int i = ref[j].i;
                found = 1;
                if (strcmp(hits[r].study_uid, f->study[i]) != 0 ||
                    memcmp(hits[r].state, f->state[i], sizeof hits[r].state) != 0 ||
                    (int)hits[r].view != f->view[i] || hits[r].study_date != f->date[i]) {
                    fprintf(stderr, "rank %d: metadata differs\n", r);
                    bad = 1;
                }
            }
        if (!found) {
            fprintf(stderr, "rank %d: id %lld not in the reference at this rank\n", r,
                    (long long)hits[r].id);
            bad = 1;
        }
    }
    return !bad;
}

static void random_query(const fixture *f, float *qv, rd_index_query *q, rd_index_params *p,
                         int variant)
{
    int src = (int)(rng() % (uint64_t)f->n);
    memset(q, 0, sizeof *q);
    rd_index_params_default(p);
    /* Half the queries are near an archive entry (so that its study and patient matter). */
    for (int d = 0; d < f->dim; d++)
        qv[d] = (variant & 1) ? f->emb[(size_t)src * f->dim + d] + 0.3f * frand() : frand();
    q->embedding = qv;
    if (variant & 2) {
        q->study_uid = f->study[src];
        q->patient_hash = f->patient[src];
    }
    q->view = (rd_view_family)((variant >> 2) % 3);
    p->k = 1 + (int)(rng() % 40);
    if (variant % 5 == 0)
        p->k = 1000; /* more than any filtered set */
    if (variant % 3 == 1)
        p->min_similarity = 0.1 * (double)(rng() % 5);
    if (variant % 4 == 3) {
        q->study_date = 20200615;
        p->date_window_days = 20 + (int)(rng() % 100);
    }
}

RD_TEST(topk_exact_random)
{
    fixture f;
    rd_index *ix = NULL;
    rd_error err;
    ref_hit *ref;
    rd_index_hit *hits;
    float qv[48];
    fixture_make(&f, 1500, 48, 60);
    ref = malloc(sizeof *ref * (size_t)f.n);
    hits = calloc(1000, sizeof *hits);
    REQUIRE_OK(rd_index_create(&ix, "test-v1", 48, &err), &err);
    REQUIRE_OK(fixture_add_all(&f, ix, NULL, &err), &err);
    CHECK_EQ_INT(rd_index_count(ix), f.n);
    for (int t = 0; t < 200; t++) {
        rd_index_query q;
        rd_index_params p;
        int n_hits = -1;
        random_query(&f, qv, &q, &p, t);
        CHECK_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
        int n_ref = reference(&f, &q, &p, ref);
        CHECK_MSG(hits_match(&f, hits, n_hits, ref, n_ref, p.k, 2e-5), "query %d differs", t);
        /* The filters themselves, checked on the hits directly. */
        for (int r = 0; r < n_hits; r++) {
            if (q.study_uid)
                CHECK(strcmp(hits[r].study_uid, q.study_uid) != 0);
            if (q.patient_hash && q.patient_hash[0])
                CHECK(strcmp(hits[r].patient_hash, q.patient_hash) != 0);
            if (q.view != RD_VIEW_UNKNOWN)
                CHECK_EQ_INT(hits[r].view, q.view);
            CHECK(hits[r].similarity >= p.min_similarity - 1e-6);
        }
    }
    rd_index_free(ix);
    free(ref);
    free(hits);
    fixture_free(&f);
}

RD_TEST(ties_and_k_larger_than_n)
{
    rd_index *ix = NULL;
    rd_error err;
    rd_index_hit hits[20];
    int n_hits = 0;
    const char *keys[] = {"a", "b", "c", "d", "e"};
    /* Entries b, c, d have exactly the same direction (different lengths): a tie broken by
     * id; a is orthogonal; e is opposite. */
    const float vecs[5][4] = {
        {0, 1, 0, 0}, {1, 0, 0, 0}, {2, 0, 0, 0}, {3, 0, 0, 0}, {-1, 0, 0, 0}};
    REQUIRE_OK(rd_index_create(&ix, "v", 4, &err), &err);
    for (int i = 0; i < 5; i++) {
        rd_index_entry e;
        int64_t id;
        memset(&e, 0, sizeof e);
        e.key = keys[i];
        e.study_uid = keys[i];
        REQUIRE_OK(rd_index_add(ix, NULL, &e, vecs[i], &id, NULL, &err), &err);
        CHECK_EQ_INT(id, i + 1);
    }
    float qv[4] = {5, 0.0f, 0, 0};
    rd_index_query q = {qv, NULL, NULL, RD_VIEW_UNKNOWN, 0};
    rd_index_params p;
    rd_index_params_default(&p);
    p.k = 20;
    REQUIRE_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
    REQUIRE(n_hits == 5);
    CHECK_EQ_INT(hits[0].id, 2);
    CHECK_EQ_INT(hits[1].id, 3);
    CHECK_EQ_INT(hits[2].id, 4);
    CHECK_EQ_INT(hits[3].id, 1);
    CHECK_EQ_INT(hits[4].id, 5);
    CHECK_NEAR(hits[0].similarity, 1.0, 1e-6);
    CHECK_NEAR(hits[3].similarity, 0.0, 1e-6);
    CHECK_NEAR(hits[4].similarity, -1.0, 1e-6);
    /* k = 2 keeps the two smallest ids of the tie. */
    p.k = 2;
    REQUIRE_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
    CHECK_EQ_INT(n_hits, 2);
    CHECK_EQ_INT(hits[0].id, 2);
    CHECK_EQ_INT(hits[1].id, 3);
    /* Minimum similarity 0 keeps the orthogonal entry (exactly 0) and drops the opposite. */
    p.k = 20;
    p.min_similarity = 0;
    REQUIRE_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
    CHECK_EQ_INT(n_hits, 4);
    /* Same study excluded. */
    q.study_uid = "c";
    REQUIRE_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
    CHECK_EQ_INT(n_hits, 3);
    for (int i = 0; i < n_hits; i++)
        CHECK(hits[i].id != 3);
    /* A duplicate key is not added twice. */
    {
        rd_index_entry e;
        int64_t id = 0;
        int added = 1;
        memset(&e, 0, sizeof e);
        e.key = "b";
        e.study_uid = "b";
        CHECK_OK(rd_index_add(ix, NULL, &e, vecs[0], &id, &added, &err), &err);
        CHECK_EQ_INT(added, 0);
        CHECK_EQ_INT(id, 2);
        CHECK_EQ_INT(rd_index_count(ix), 5);
    }
    rd_index_free(ix);
}

RD_TEST(bad_input_refused)
{
    rd_index *ix = NULL;
    rd_error err;
    rd_index_entry e;
    float zero[4] = {0, 0, 0, 0}, nanv[4] = {1, NAN, 0, 0}, ok[4] = {1, 0, 0, 0};
    rd_index_hit hits[4];
    int n_hits;
    CHECK(rd_index_create(&ix, "v", 0, &err) == RD_E_INVALID);
    CHECK(rd_index_create(&ix, "", 4, &err) == RD_E_INVALID);
    CHECK(rd_index_create(&ix, "v", RD_INDEX_MAX_DIM + 1, &err) == RD_E_INVALID);
    REQUIRE_OK(rd_index_create(&ix, "v", 4, &err), &err);
    memset(&e, 0, sizeof e);
    e.key = "k";
    e.study_uid = "s";
    CHECK(rd_index_add(ix, NULL, &e, zero, NULL, NULL, &err) == RD_E_INVALID);
    CHECK(rd_index_add(ix, NULL, &e, nanv, NULL, NULL, &err) == RD_E_INVALID);
    e.patient_hash = "not-a-hash";
    CHECK(rd_index_add(ix, NULL, &e, ok, NULL, NULL, &err) == RD_E_INVALID);
    e.patient_hash = NULL;
    e.study_date = 20231341;
    CHECK(rd_index_add(ix, NULL, &e, ok, NULL, NULL, &err) == RD_E_INVALID);
    e.study_date = 0;
    e.state[3] = (rd_finding_state)7;
    CHECK(rd_index_add(ix, NULL, &e, ok, NULL, NULL, &err) == RD_E_INVALID);
    CHECK_EQ_INT(rd_index_count(ix), 0);
    rd_index_query q = {zero, NULL, NULL, RD_VIEW_UNKNOWN, 0};
    rd_index_params p;
    rd_index_params_default(&p);
    CHECK(rd_index_search(ix, &q, &p, hits, &n_hits, &err) == RD_E_INVALID);
    q.embedding = ok;
    p.k = 0;
    CHECK(rd_index_search(ix, &q, &p, hits, &n_hits, &err) == RD_E_INVALID);
    p.k = 4;
    CHECK_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
    CHECK_EQ_INT(n_hits, 0); /* empty index */
    rd_index_free(ix);
    rd_index_free(NULL);
}

RD_TEST(batch_equals_single)
{
    fixture f;
    rd_index *ix = NULL;
    rd_error err;
    enum { NQ = 16, K = 12 };
    static float qv[NQ][64];
    rd_index_query qs[NQ];
    rd_index_hit batch[NQ * K], single[K];
    int n_batch[NQ], n_single;
    rd_index_params p;
    fixture_make(&f, 3000, 64, 100);
    REQUIRE_OK(rd_index_create(&ix, "v", 64, &err), &err);
    REQUIRE_OK(fixture_add_all(&f, ix, NULL, &err), &err);
    for (int nq = 2; nq <= NQ; nq += 7) {
        for (int i = 0; i < nq; i++) {
            rd_index_params pi;
            random_query(&f, qv[i], &qs[i], &pi, i);
        }
        rd_index_params_default(&p);
        p.k = K;
        p.min_similarity = -0.5;
        p.date_window_days = 60;
        for (int i = 0; i < nq; i++)
            qs[i].study_date = (i % 2) ? 20200601 : 0;
        REQUIRE_OK(rd_index_search_batch(ix, qs, nq, &p, batch, n_batch, &err), &err);
        for (int i = 0; i < nq; i++) {
            REQUIRE_OK(rd_index_search(ix, &qs[i], &p, single, &n_single, &err), &err);
            CHECK_EQ_INT(n_batch[i], n_single);
            for (int r = 0; r < n_single && r < n_batch[i]; r++) {
                CHECK_NEAR(batch[i * K + r].similarity, single[r].similarity, 1e-5);
                /* Same ids unless two similarities are within rounding of each other. */
                if (batch[i * K + r].id != single[r].id)
                    CHECK((r > 0 && fabs(single[r].similarity - single[r - 1].similarity) < 1e-5) ||
                          (r + 1 < n_single &&
                           fabs(single[r].similarity - single[r + 1].similarity) < 1e-5));
            }
        }
    }
    rd_index_free(ix);
    fixture_free(&f);
}

/* ---- the scan kernels, instruction set by instruction set ---- */

static const int kernel_dims[] = {1,  3,  7,  8,   9,   15,  16,  17, 31,
                                  32, 33, 63, 100, 255, 256, 257, 515};

/* Raw kernels against double sums: every storage, 1 and 4 streams, and a row scored in a
 * group of four is bit-equal to the same row scored alone. */
RD_TEST(kernels_match_double_sums)
{
    enum { NR = 4 * 9 };
    for (int isa = 0; isa < RD__ISA_COUNT; isa++) {
        if (!rd__index_isa_supported((rd__index_isa)isa))
            continue;
        const rd__scan_ops *ops = rd__scan_ops_of((rd__index_isa)isa);
        for (size_t di = 0; di < sizeof kernel_dims / sizeof kernel_dims[0]; di++) {
            size_t dim = (size_t)kernel_dims[di];
            float *rows = malloc(NR * dim * sizeof(float)), q[515], o4[NR], o1[NR];
            uint16_t *h = malloc(NR * dim * sizeof *h);
            int8_t *b = malloc(NR * dim);
            int16_t q16[515];
            int32_t i4[NR], i1[NR];
            REQUIRE(rows && h && b);
            for (size_t i = 0; i < NR * dim; i++) {
                rows[i] = frand();
                h[i] = rd__f32_to_f16(rows[i]);
                b[i] = (int8_t)(rng() % 255 - 127);
            }
            for (size_t d = 0; d < dim; d++) {
                q[d] = frand();
                q16[d] = (int16_t)((int)(rng() % 32767) - 16383);
            }
            /* Four streams of NR / 4 rows each, then each row alone. */
            const size_t per = NR / 4;
            const float *fs[4] = {rows, rows + per * dim, rows + 2 * per * dim,
                                  rows + 3 * per * dim};
            const uint16_t *hs[4] = {h, h + per * dim, h + 2 * per * dim, h + 3 * per * dim};
            const int8_t *bs[4] = {b, b + per * dim, b + 2 * per * dim, b + 3 * per * dim};
            float f4[NR], h4[NR];
            ops->dot_f32(fs, 4, per, dim, q, f4);
            ops->dot_f16(hs, 4, per, dim, q, h4);
            ops->dot_i8(bs, 4, per, dim, q16, i4);
            for (int j = 0; j < NR; j++) {
                const float *fr = rows + (size_t)j * dim;
                const uint16_t *hr = h + (size_t)j * dim;
                const int8_t *br = b + (size_t)j * dim;
                ops->dot_f32(&fr, 1, 1, dim, q, &o1[j]);
                ops->dot_f16(&hr, 1, 1, dim, q, &o4[j]);
                ops->dot_i8(&br, 1, 1, dim, q16, &i1[j]);
                double sf = 0, sh = 0, abs_f = 0, abs_h = 0;
                long long si = 0;
                for (size_t d = 0; d < dim; d++) {
                    sf += (double)fr[d] * q[d];
                    abs_f += fabs((double)fr[d] * q[d]);
                    sh += (double)rd__f16_to_f32(hr[d]) * q[d];
                    abs_h += fabs((double)rd__f16_to_f32(hr[d]) * q[d]);
                    si += (long long)br[d] * q16[d];
                }
                CHECK_MSG(fabs(o1[j] - sf) <= 1e-6 * abs_f + 1e-7,
                          "%s f32 dim %zu row %d: %g vs %g", rd__index_isa_name((rd__index_isa)isa),
                          dim, j, o1[j], sf);
                CHECK_MSG(fabs(o4[j] - sh) <= 1e-6 * abs_h + 1e-7,
                          "%s f16 dim %zu row %d: %g vs %g", rd__index_isa_name((rd__index_isa)isa),
                          dim, j, o4[j], sh);
                CHECK_MSG(i1[j] == si, "%s int8 dim %zu row %d: %d vs %lld",
                          rd__index_isa_name((rd__index_isa)isa), dim, j, i1[j], si);
                /* Grouped == alone, to the bit. */
                CHECK_MSG(f4[j] == o1[j] && h4[j] == o4[j] && i4[j] == i1[j],
                          "%s dim %zu row %d: grouped and alone differ",
                          rd__index_isa_name((rd__index_isa)isa), dim, j);
            }
            free(rows);
            free(h);
            free(b);
        }
    }
}

/* Every kernel this CPU runs, across dims, with the filters, min similarity, date windows
 * and k > the filtered set, against the brute-force reference. */
RD_TEST(topk_every_kernel_and_dim)
{
    for (size_t di = 0; di < sizeof kernel_dims / sizeof kernel_dims[0]; di++) {
        int dim = kernel_dims[di];
        fixture f;
        rd_index *ix = NULL;
        rd_error err;
        /* Not a multiple of 4 streams or of a 64-row block. */
        fixture_make(&f, 403 + 2 * (int)di, dim, 30);
        ref_hit *ref = malloc(sizeof *ref * (size_t)f.n);
        rd_index_hit *hits = calloc(1000, sizeof *hits);
        float *qv = malloc(sizeof(float) * (size_t)dim);
        REQUIRE(ref && hits && qv);
        REQUIRE_OK(rd_index_create(&ix, "test-v1", dim, &err), &err);
        REQUIRE_OK(fixture_add_all(&f, ix, NULL, &err), &err);
        for (int isa = 0; isa < RD__ISA_COUNT; isa++) {
            if (!rd__index_isa_supported((rd__index_isa)isa))
                continue;
            REQUIRE_OK(rd__index_set_isa(ix, (rd__index_isa)isa, &err), &err);
            for (int t = 0; t < 30; t++) {
                rd_index_query q;
                rd_index_params p;
                int n_hits = -1;
                random_query(&f, qv, &q, &p, t);
                CHECK_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
                int n_ref = reference(&f, &q, &p, ref);
                CHECK_MSG(hits_match(&f, hits, n_hits, ref, n_ref, p.k, 2e-5),
                          "%s dim %d query %d differs", rd__index_isa_name((rd__index_isa)isa), dim,
                          t);
                rd_index_hits_clear(hits, n_hits);
            }
        }
        rd_index_free(ix);
        free(ref);
        free(hits);
        free(qv);
        fixture_free(&f);
    }
}

/* Equal rows at positions that land in different streams, blocks and the remainder give
 * bit-equal similarities in every kernel and storage, so that they come out by id. */
RD_TEST(ties_across_streams_every_kernel)
{
    enum { N = 1031, DIM = 37 };
    static const int dup[] = {0, 5, 63, 64, 257, 258, 515, 700, 1027, 1030};
    const int n_dup = (int)(sizeof dup / sizeof dup[0]);
    float *emb = malloc(sizeof(float) * N * DIM), v[DIM], qv[DIM];
    char keys[N][12];
    rd_index *ix = NULL;
    rd_error err;
    rd_index_hit hits[20];
    int n_hits = 0;
    REQUIRE(emb);
    for (int d = 0; d < DIM; d++) {
        v[d] = frand();
        qv[d] = v[d] + 0.01f * frand();
    }
    for (int i = 0; i < N; i++)
        for (int d = 0; d < DIM; d++)
            emb[i * DIM + d] = 0.2f * frand();
    for (int j = 0; j < n_dup; j++)
        memcpy(emb + dup[j] * DIM, v, sizeof v);
    REQUIRE_OK(rd_index_create(&ix, "v", DIM, &err), &err);
    for (int i = 0; i < N; i++) {
        rd_index_entry e;
        memset(&e, 0, sizeof e);
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        e.key = keys[i];
        e.study_uid = keys[i];
        REQUIRE_OK(rd_index_add(ix, NULL, &e, emb + i * DIM, NULL, NULL, &err), &err);
    }
    for (int isa = 0; isa < RD__ISA_COUNT; isa++) {
        if (!rd__index_isa_supported((rd__index_isa)isa))
            continue;
        REQUIRE_OK(rd__index_set_isa(ix, (rd__index_isa)isa, &err), &err);
        for (int s = RD_INDEX_STORAGE_F32; s <= RD_INDEX_STORAGE_INT8; s++) {
            rd_index_query q = {qv, NULL, NULL, RD_VIEW_UNKNOWN, 0};
            rd_index_params p;
            REQUIRE_OK(rd_index_set_storage(ix, (rd_index_storage)s, &err), &err);
            rd_index_params_default(&p);
            p.k = n_dup + 2;
            REQUIRE_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
            REQUIRE(n_hits == p.k);
            for (int j = 0; j < n_dup; j++) {
                CHECK_MSG(hits[j].id == dup[j] + 1, "%s %s rank %d: id %lld, expected %d",
                          rd__index_isa_name((rd__index_isa)isa),
                          rd_index_storage_name((rd_index_storage)s), j, (long long)hits[j].id,
                          dup[j] + 1);
                CHECK(hits[j].similarity == hits[0].similarity);
            }
            CHECK(hits[n_dup].similarity < hits[0].similarity);
            /* k = 3 keeps the three smallest ids of the tie. */
            p.k = 3;
            REQUIRE_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
            CHECK_EQ_INT(n_hits, 3);
            CHECK(hits[0].id == 1 && hits[1].id == 6 && hits[2].id == 64);
        }
    }
    rd_index_free(ix);
    free(emb);
}

/* Searches split across threads return exactly what one thread returns (the index splits
 * only archives of at least 2 x 2 Mi floats: this one takes up to 5 threads). */
RD_TEST(threads_do_not_change_results)
{
    enum { N = 41000, DIM = 257 };
    fixture f;
    rd_index *ix = NULL;
    rd_error err;
    rd_index_hit one[40], many[40];
    float qv[DIM];
    fixture_make(&f, N, DIM, 500);
    REQUIRE_OK(rd_index_create(&ix, "v", DIM, &err), &err);
    REQUIRE_OK(fixture_add_all(&f, ix, NULL, &err), &err);
    for (int s = RD_INDEX_STORAGE_F32; s <= RD_INDEX_STORAGE_INT8; s++) {
        REQUIRE_OK(rd_index_set_storage(ix, (rd_index_storage)s, &err), &err);
        for (int t = 0; t < 12; t++) {
            rd_index_query q;
            rd_index_params p;
            int n_one = 0, n_many = 0;
            random_query(&f, qv, &q, &p, t);
            if (p.k > 40)
                p.k = 40;
            p.threads = 1;
            REQUIRE_OK(rd_index_search(ix, &q, &p, one, &n_one, &err), &err);
            for (int th = 2; th <= 7; th += 5) {
                p.threads = th;
                REQUIRE_OK(rd_index_search(ix, &q, &p, many, &n_many, &err), &err);
                CHECK_EQ_INT(n_many, n_one);
                for (int r = 0; r < n_one && r < n_many; r++)
                    CHECK_MSG(one[r].id == many[r].id && one[r].similarity == many[r].similarity,
                              "%s, %d threads, query %d rank %d differs",
                              rd_index_storage_name((rd_index_storage)s), th, t, r);
            }
        }
    }
    rd_index_free(ix);
    fixture_free(&f);
}

/* f16 and int8 storage: recall@10 against f32 on random data, the similarities of the
 * shared hits exactly the f32 ones (re-ranked), and the filters still hold. */
RD_TEST(reduced_storage_recall)
{
    static const int dims[] = {100, 256};
    for (int di = 0; di < 2; di++) {
        int dim = dims[di];
        fixture f;
        rd_index *ix32 = NULL, *ixl = NULL;
        rd_error err;
        rd_index_hit h32[40], hl[40];
        float *qv = malloc(sizeof(float) * (size_t)dim);
        REQUIRE(qv);
        fixture_make(&f, 20000, dim, 1000);
        REQUIRE_OK(rd_index_create(&ix32, "v", dim, &err), &err);
        REQUIRE_OK(rd_index_create(&ixl, "v", dim, &err), &err);
        REQUIRE_OK(fixture_add_all(&f, ix32, NULL, &err), &err);
        /* The storage set before the entries come: kept up to date by each addition. */
        REQUIRE_OK(rd_index_set_storage(ixl, RD_INDEX_STORAGE_INT8, &err), &err);
        for (int i = 0; i < f.n; i++) {
            rd_index_entry e = fixture_entry(&f, i);
            REQUIRE_OK(rd_index_add(ixl, NULL, &e, f.emb + (size_t)i * dim, NULL, NULL, &err),
                       &err);
        }
        for (int s = RD_INDEX_STORAGE_INT8; s >= RD_INDEX_STORAGE_F16; s--) {
            long found = 0, total = 0;
            REQUIRE_OK(rd_index_set_storage(ixl, (rd_index_storage)s, &err), &err);
            CHECK_EQ_INT(rd_index_get_storage(ixl), s);
            for (int t = 0; t < 60; t++) {
                rd_index_query q;
                rd_index_params p;
                int n32 = 0, nl = 0;
                random_query(&f, qv, &q, &p, t);
                p.k = 10;
                REQUIRE_OK(rd_index_search(ix32, &q, &p, h32, &n32, &err), &err);
                REQUIRE_OK(rd_index_search(ixl, &q, &p, hl, &nl, &err), &err);
                CHECK(nl <= n32);
                total += n32;
                for (int r = 0; r < nl; r++) {
                    int hit = 0;
                    for (int j = 0; j < n32; j++)
                        if (hl[r].id == h32[j].id) {
                            hit = 1;
                            CHECK(hl[r].similarity == h32[j].similarity);
                        }
                    found += hit;
                    if (q.view != RD_VIEW_UNKNOWN)
                        CHECK_EQ_INT(hl[r].view, q.view);
                    if (q.study_uid)
                        CHECK(strcmp(hl[r].study_uid, q.study_uid) != 0);
                    CHECK(hl[r].similarity >= p.min_similarity - 1e-6);
                }
            }
            double recall = total ? (double)found / (double)total : 1;
            CHECK_MSG(recall >= 0.99, "%s dim %d: recall@10 %.4f",
                      rd_index_storage_name((rd_index_storage)s), dim, recall);
        }
        rd_index_free(ix32);
        rd_index_free(ixl);
        free(qv);
        fixture_free(&f);
    }
}

#ifdef TEST_X86
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h)
{
    return _cvtsh_ss(h);
}
#endif

/* The portable half conversions: every half round-trips, and where the CPU converts
 * (F16C) both directions agree with it, subnormals, ties and overflow included. */
RD_TEST(f16_conversions)
{
    int hw = rd__index_isa_supported(RD__ISA_AVX2) || rd__index_isa_supported(RD__ISA_AVX512);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = rd__f16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        CHECK_MSG(rd__f32_to_f16(f) == h, "half %04x does not round-trip", (unsigned)h);
#ifdef TEST_X86
        if (hw)
            CHECK_MSG(memcmp(&f, &(float){hw_f16_to_f32((uint16_t)h)}, sizeof f) == 0,
                      "half %04x converts differently", (unsigned)h);
#endif
    }
    CHECK_EQ_INT(rd__f32_to_f16(65519.0f), 0x7bff);
    CHECK_EQ_INT(rd__f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(rd__f32_to_f16(-INFINITY), 0xfc00);
    CHECK_EQ_INT(rd__f32_to_f16(0x1p-25f), 0);          /* a tie: to even, zero */
    CHECK_EQ_INT(rd__f32_to_f16(0x1.000002p-25f), 1);   /* above the tie */
    CHECK_EQ_INT(rd__f32_to_f16(0x1.ff8p-15f), 0x03ff); /* the largest subnormal */
    CHECK_EQ_INT(rd__f32_to_f16(0x1.ffap-15f), 0x03ff); /* below the tie */
    CHECK_EQ_INT(rd__f32_to_f16(0x1.ffcp-15f), 0x0400); /* a tie: to even, the smallest normal */
    CHECK(isnan(rd__f16_to_f32(rd__f32_to_f16(NAN))));
#ifdef TEST_X86
    if (hw)
        for (int i = 0; i < 200000; i++) {
            uint32_t u = (uint32_t)rng();
            float f;
            memcpy(&f, &u, sizeof f);
            if (isnan(f))
                continue;
            CHECK_MSG(rd__f32_to_f16(f) == hw_f32_to_f16(f), "float %08x converts differently",
                      (unsigned)u);
        }
#else
    (void)hw;
#endif
}

RD_TEST(storage_names_and_settings)
{
    rd_index *ix = NULL;
    rd_error err;
    rd_index_storage s;
    for (int v = RD_INDEX_STORAGE_F32; v <= RD_INDEX_STORAGE_INT8; v++) {
        CHECK_OK(rd_index_storage_parse(rd_index_storage_name((rd_index_storage)v), &s, &err),
                 &err);
        CHECK_EQ_INT(s, v);
    }
    CHECK(rd_index_storage_parse("f64", &s, &err) == RD_E_INVALID);
    CHECK(rd_index_storage_parse(NULL, &s, &err) == RD_E_INVALID);
    REQUIRE_OK(rd_index_create(&ix, "v", 4, &err), &err);
    CHECK_EQ_INT(rd_index_get_storage(ix), RD_INDEX_STORAGE_F32);
    CHECK(rd_index_set_storage(ix, (rd_index_storage)7, &err) == RD_E_INVALID);
    /* An empty index changes storage, then grows with it. */
    CHECK_OK(rd_index_set_storage(ix, RD_INDEX_STORAGE_F16, &err), &err);
    {
        rd_index_entry e;
        const float v[4] = {0, 0, 3, 4};
        float qv[4] = {0, 0, 3, 4};
        rd_index_hit h[2];
        int n_hits = 0;
        rd_index_params p;
        rd_index_query q = {qv, NULL, NULL, RD_VIEW_UNKNOWN, 0};
        memset(&e, 0, sizeof e);
        e.key = "a";
        e.study_uid = "a";
        CHECK_OK(rd_index_add(ix, NULL, &e, v, NULL, NULL, &err), &err);
        rd_index_params_default(&p);
        CHECK_OK(rd_index_search(ix, &q, &p, h, &n_hits, &err), &err);
        CHECK_EQ_INT(n_hits, 1);
        CHECK_NEAR(h[0].similarity, 1.0, 1e-6);
    }
    CHECK_OK(rd_index_set_storage(ix, RD_INDEX_STORAGE_F32, &err), &err);
    CHECK(rd__index_set_isa(ix, (rd__index_isa)RD__ISA_COUNT, &err) == RD_E_INVALID);
    CHECK_OK(rd__index_set_isa(ix, RD__ISA_SCALAR, &err), &err);
    CHECK_EQ_INT(rd__index_get_isa(ix), RD__ISA_SCALAR);
    rd_index_free(ix);
}

typedef struct thread_arg {
    rd_index *ix;
    const fixture *f;
    int first, step;
    int failures;
} thread_arg;

static void *adder(void *v)
{
    thread_arg *a = v;
    rd_error err;
    for (int i = a->first; i < a->f->n; i += a->step) {
        rd_index_entry e = fixture_entry(a->f, i);
        if (rd_index_add(a->ix, NULL, &e, a->f->emb + (size_t)i * a->f->dim, NULL, NULL, &err) !=
            RD_OK)
            a->failures++;
    }
    return NULL;
}

static void *searcher(void *v)
{
    thread_arg *a = v;
    rd_error err;
    rd_index_hit hits[8];
    float qv[32];
    uint64_t s = 12345u + (uint64_t)a->first;
    for (int t = 0; t < 300; t++) {
        int n_hits = 0;
        for (int d = 0; d < a->f->dim; d++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            qv[d] = (float)((double)(s >> 11) / (double)(1ull << 53) - 0.5);
        }
        rd_index_query q = {qv, NULL, NULL, RD_VIEW_UNKNOWN, 0};
        rd_index_params p;
        rd_index_params_default(&p);
        p.k = 8;
        long before = rd_index_count(a->ix);
        if (rd_index_search(a->ix, &q, &p, hits, &n_hits, &err) != RD_OK) {
            a->failures++;
            continue;
        }
        if (n_hits > 8 || (before >= 8 && n_hits != 8))
            a->failures++;
        /* Every hit is a real entry: its similarity recomputed from the fixture (the key
         * number is the fixture row) matches. */
        for (int r = 0; r < n_hits; r++) {
            int i = atoi(hits[r].study_uid + 6) * 2; /* "1.2.3.<i/2>" */
            double s0 = cosine(qv, a->f->emb + (size_t)i * a->f->dim, a->f->dim);
            double s1 = cosine(qv, a->f->emb + (size_t)(i + 1) * a->f->dim, a->f->dim);
            if (fabs(hits[r].similarity - s0) > 1e-5 && fabs(hits[r].similarity - s1) > 1e-5)
                a->failures++;
            if (r > 0 && hits[r].similarity > hits[r - 1].similarity)
                a->failures++;
        }
    }
    return NULL;
}

RD_TEST(concurrent_add_and_search)
{
    fixture f;
    rd_index *ix = NULL;
    rd_error err;
    pthread_t th[6];
    thread_arg args[6];
    ref_hit *ref;
    rd_index_hit hits[10];
    int n_hits;
    fixture_make(&f, 4000, 32, 200);
    ref = malloc(sizeof *ref * (size_t)f.n);
    REQUIRE_OK(rd_index_create(&ix, "v", 32, &err), &err);
    for (int t = 0; t < 6; t++) {
        args[t] = (thread_arg){ix, &f, t < 3 ? t : t + 100, 3, 0};
        pthread_create(&th[t], NULL, t < 3 ? adder : searcher, &args[t]);
    }
    for (int t = 0; t < 6; t++) {
        pthread_join(th[t], NULL);
        CHECK_EQ_INT(args[t].failures, 0);
    }
    CHECK_EQ_INT(rd_index_count(ix), f.n);
    /* After the dust settles the index equals the brute force (ids were assigned in
     * arrival order: look them up by searching each entry's own vector). */
    for (int i = 0; i < f.n; i++) {
        rd_index_query q = {f.emb + (size_t)i * f.dim, NULL, NULL, RD_VIEW_UNKNOWN, 0};
        rd_index_params p;
        rd_index_params_default(&p);
        p.k = 1;
        if (i % 10 == 8 || i % 10 == 9) {
            f.ids[i] = -1; /* a tie pair: resolved below */
            continue;
        }
        REQUIRE_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
        f.ids[i] = hits[0].id;
    }
    {
        float qv[32];
        for (int d = 0; d < 32; d++)
            qv[d] = frand();
        rd_index_query q = {qv, NULL, NULL, RD_VIEW_UNKNOWN, 0};
        rd_index_params p;
        rd_index_params_default(&p);
        p.k = 10;
        REQUIRE_OK(rd_index_search(ix, &q, &p, hits, &n_hits, &err), &err);
        int n_ref = reference(&f, &q, &p, ref);
        CHECK_EQ_INT(n_hits, 10);
        for (int r = 0; r < n_hits && r < n_ref; r++)
            CHECK_NEAR(hits[r].similarity, ref[r].sim, 2e-5);
    }
    rd_index_free(ix);
    free(ref);
    fixture_free(&f);
}

RD_TEST(persistence_round_trip)
{
    const char *dir = rd_test_tmpdir("index_persist");
    char dirbuf[1024];
    fixture f;
    rd_store *s = NULL;
    rd_index *ix = NULL;
    rd_error err;
    enum { K = 15 };
    rd_index_hit before[5][K], after[5][K];
    int nb[5], na[5];
    float qv[5][24];
    rd_index_query qs[5];
    rd_index_params p;
    long seeded = -1;

    rd_strlcpy(dirbuf, dir, sizeof dirbuf);
    fixture_make(&f, 400, 24, 30);
    REQUIRE_OK(rd_store_open(&s, dirbuf, rdt_store_opts(dirbuf), &err), &err);
    REQUIRE_OK(rd_index_load(&ix, s, "model-a", 24, NULL, &seeded, &err), &err);
    CHECK_EQ_INT(rd_index_count(ix), 0);
    CHECK_EQ_INT(seeded, 0);
    /* Half one by one, half in one batch; entry 0 carries report text. */
    for (int i = 0; i < 200; i++) {
        rd_index_entry e = fixture_entry(&f, i);
        if (i == 0) {
            e.findings_text = "Small left pleural effusion.";
            e.impression_text = "Effusion.";
        }
        REQUIRE_OK(rd_index_add(ix, s, &e, f.emb + (size_t)i * 24, &f.ids[i], NULL, &err), &err);
    }
    {
        rd_index_entry es[200];
        int added[200];
        for (int i = 200; i < 400; i++)
            es[i - 200] = fixture_entry(&f, i);
        REQUIRE_OK(rd_index_add_batch(ix, s, es, 200, f.emb + 200 * 24, f.ids + 200, added, &err),
                   &err);
        for (int i = 0; i < 200; i++)
            CHECK_EQ_INT(added[i], 1);
    }
    /* The same key again: no new row, the same id. */
    {
        rd_index_entry e = fixture_entry(&f, 7);
        int64_t id = 0;
        int added = 1;
        long rows = 0;
        CHECK_OK(rd_index_add(ix, s, &e, f.emb + 7 * 24, &id, &added, &err), &err);
        CHECK_EQ_INT(added, 0);
        CHECK_EQ_INT(id, f.ids[7]);
        CHECK_OK(rd_store_archive_count(s, "model-a", &rows, &err), &err);
        CHECK_EQ_INT(rows, 400);
    }
    /* Another model version in the same store: never mixed in. */
    {
        rd_index *other = NULL;
        rd_index_entry e = fixture_entry(&f, 0);
        float v16[16];
        for (int d = 0; d < 16; d++)
            v16[d] = (float)d + 1;
        REQUIRE_OK(rd_index_create(&other, "model-b", 16, &err), &err);
        CHECK_OK(rd_index_add(other, s, &e, v16, NULL, NULL, &err), &err);
        rd_index_free(other);
    }
    rd_index_params_default(&p);
    p.k = K;
    p.with_text = 1;
    for (int i = 0; i < 5; i++) {
        rd_index_params pi;
        random_query(&f, qv[i], &qs[i], &pi, i);
    }
    qs[0].embedding = f.emb; /* entry 0 itself: its text comes back */
    qs[0].study_uid = NULL;
    qs[0].patient_hash = NULL;
    qs[0].view = RD_VIEW_UNKNOWN;
    REQUIRE_OK(rd_index_search_batch(ix, qs, 5, &p, &before[0][0], nb, &err), &err);
    REQUIRE(nb[0] > 0);
    CHECK_EQ_INT(before[0][0].id, f.ids[0]);
    CHECK_STR(before[0][0].findings_text, "Small left pleural effusion.");
    rd_index_free(ix);
    rd_store_close(s);

    REQUIRE_OK(rd_store_open(&s, dirbuf, rdt_store_opts(dirbuf), &err), &err);
    REQUIRE_OK(rd_index_load(&ix, s, "model-a", 24, NULL, NULL, &err), &err);
    CHECK_EQ_INT(rd_index_count(ix), 400);
    REQUIRE_OK(rd_index_search_batch(ix, qs, 5, &p, &after[0][0], na, &err), &err);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(na[i], nb[i]);
        for (int r = 0; r < na[i] && r < nb[i]; r++) {
            CHECK_EQ_INT(after[i][r].id, before[i][r].id);
            CHECK(after[i][r].similarity == before[i][r].similarity);
            CHECK(memcmp(after[i][r].state, before[i][r].state, sizeof after[i][r].state) == 0);
            CHECK_EQ_INT(after[i][r].source, before[i][r].source);
        }
    }
    CHECK_STR(after[0][0].findings_text, "Small left pleural effusion.");
    CHECK_STR(after[0][0].impression_text, "Effusion.");
    for (int i = 0; i < 5; i++) {
        rd_index_hits_clear(before[i], nb[i]);
        rd_index_hits_clear(after[i], na[i]);
    }
    rd_index_free(ix);
    /* The other version loads alone; loading it with the wrong dimension is refused. */
    REQUIRE_OK(rd_index_load(&ix, s, "model-b", 16, NULL, NULL, &err), &err);
    CHECK_EQ_INT(rd_index_count(ix), 1);
    rd_index_free(ix);
    ix = NULL;
    CHECK(rd_index_load(&ix, s, "model-b", 24, NULL, NULL, &err) == RD_E_CORRUPT);
    CHECK(ix == NULL);
    /* A damaged row (an embedding BLOB of the wrong size, bad states) is refused, not read
     * past its end. */
    {
        static const unsigned char one_float[4] = {0x00, 0x00, 0x80, 0x3f};
        CHECK_OK(rd__run(s, "damaging a row",
                         "UPDATE archive SET embedding=?1 WHERE model_version='model-b'",
                         RD__ARGS(RD__BLOB(one_float, sizeof one_float)), NULL, &err),
                 &err);
    }
    CHECK(rd_index_load(&ix, s, "model-b", 16, NULL, NULL, &err) == RD_E_CORRUPT);
    CHECK(ix == NULL);
    CHECK_OK(rd__exec(s, "damaging a row",
                      "UPDATE archive SET states='0000000000000x0' WHERE id=(SELECT MIN(id) FROM "
                      "archive WHERE model_version='model-a')",
                      &err),
             &err);
    CHECK(rd_index_load(&ix, s, "model-a", 24, NULL, NULL, &err) == RD_E_CORRUPT);
    CHECK(ix == NULL);
    rd_store_close(s);
    fixture_free(&f);
}

static rd_index_hit hit_of(double sim, const char *states)
{
    rd_index_hit h;
    memset(&h, 0, sizeof h);
    h.similarity = (float)sim;
    for (int f = 0; f < RD_FINDING_COUNT; f++)
        h.state[f] = (rd_finding_state)(states[f] - '0');
    return h;
}

/* A running index follows the store: rows another connection adds appear at the next sync,
 * a deleted row (a signed entry replaced by an amendment) makes it rebuild, and a sync with
 * nothing new changes nothing. */
RD_TEST(sync_follows_other_connections)
{
    const char *dir = rd_test_tmpdir("index_sync");
    char dirbuf[1024];
    fixture f;
    rd_store *s = NULL, *other = NULL;
    rd_index *ix = NULL, *writer = NULL;
    rd_index_hit hits[3];
    rd_index_query q;
    rd_index_params p;
    rd_error err;
    long added = -1;
    int n = 0;

    rd_strlcpy(dirbuf, dir, sizeof dirbuf);
    fixture_make(&f, 60, 16, 10);
    REQUIRE_OK(rd_store_open(&s, dirbuf, rdt_store_opts(dirbuf), &err), &err);
    REQUIRE_OK(rd_store_open(&other, dirbuf, rdt_store_opts(dirbuf), &err), &err);
    REQUIRE_OK(rd_index_load(&writer, other, "model-s", 16, NULL, NULL, &err), &err);
    for (int i = 0; i < 20; i++) {
        rd_index_entry e = fixture_entry(&f, i);
        REQUIRE_OK(rd_index_add(writer, other, &e, f.emb + (size_t)i * 16, NULL, NULL, &err), &err);
    }
    REQUIRE_OK(rd_index_load(&ix, s, "model-s", 16, NULL, NULL, &err), &err);
    CHECK_EQ_INT(rd_index_count(ix), 20);
    /* int8 storage: what the syncs add, and the rebuild after a deletion, keep it. */
    REQUIRE_OK(rd_index_set_storage(ix, RD_INDEX_STORAGE_INT8, &err), &err);
    CHECK_OK(rd_index_sync(ix, s, &added, &err), &err);
    CHECK_EQ_INT(added, 0);
    /* 30 more by the other connection, one of them exactly the query. */
    for (int i = 20; i < 50; i++) {
        rd_index_entry e = fixture_entry(&f, i);
        REQUIRE_OK(rd_index_add(writer, other, &e, f.emb + (size_t)i * 16, NULL, NULL, &err), &err);
    }
    CHECK_EQ_INT(rd_index_count(ix), 20);
    CHECK_OK(rd_index_sync(ix, s, &added, &err), &err);
    CHECK_EQ_INT(added, 30);
    CHECK_EQ_INT(rd_index_count(ix), 50);
    rd_index_params_default(&p);
    p.k = 3;
    memset(&q, 0, sizeof q);
    q.embedding = f.emb + 33 * 16;
    CHECK_OK(rd_index_search(ix, &q, &p, hits, &n, &err), &err);
    CHECK(n >= 1 && strcmp(hits[0].study_uid, f.study[33]) == 0);
    rd_index_hits_clear(hits, n);
    /* A row replaced: deleted, then added again with other states (a new row id). */
    {
        rd_index_entry e = fixture_entry(&f, 33);
        char sql[200];
        rd_index *fresh = NULL;
        snprintf(sql, sizeof sql, "DELETE FROM archive WHERE key='%s'", f.key[33]);
        REQUIRE_OK(rd__exec(other, "deleting a row", sql, &err), &err);
        for (int k = 0; k < RD_FINDING_COUNT; k++)
            e.state[k] = RD_STATE_PRESENT;
        /* A new writer index: the old one still holds the key in memory. */
        REQUIRE_OK(rd_index_load(&fresh, other, "model-s", 16, NULL, NULL, &err), &err);
        REQUIRE_OK(rd_index_add(fresh, other, &e, f.emb + 33 * 16, NULL, NULL, &err), &err);
        rd_index_free(fresh);
    }
    CHECK_OK(rd_index_sync(ix, s, &added, &err), &err);
    CHECK_EQ_INT(added, 0);
    CHECK_EQ_INT(rd_index_count(ix), 50);
    CHECK_EQ_INT(rd_index_get_storage(ix), RD_INDEX_STORAGE_INT8);
    CHECK_OK(rd_index_search(ix, &q, &p, hits, &n, &err), &err);
    REQUIRE(n >= 1);
    CHECK(strcmp(hits[0].study_uid, f.study[33]) == 0);
    for (int k = 0; k < RD_FINDING_COUNT; k++)
        CHECK_EQ_INT(hits[0].state[k], RD_STATE_PRESENT);
    rd_index_hits_clear(hits, n);
    rd_index_free(writer);
    rd_index_free(ix);
    rd_store_close(other);
    rd_store_close(s);
    fixture_free(&f);
}

RD_TEST(votes_math)
{
    /* Atelectasis: present, uncertain, absent; Cardiomegaly: present in the last only. */
    rd_index_hit hits[3] = {hit_of(0.8, "310000000000000"), hit_of(0.4, "200000000000000"),
                            hit_of(0.2, "130000000000000")};
    rd_vote_params vp;
    double votes[RD_FINDING_COUNT], combined[RD_FINDING_N_ABNORMAL], enc[RD_FINDING_COUNT] = {0};
    rd_vote_params_default(&vp);
    double total = rd_index_votes(hits, 3, &vp, votes);
    CHECK_NEAR(total, 1.4, 1e-6);
    CHECK_NEAR(votes[0], (0.8 * 1 + 0.4 * 0.5 + 0.2 * 0) / 1.4, 1e-6);
    CHECK_NEAR(votes[1], 0.2 / 1.4, 1e-6);
    CHECK_NEAR(votes[2], 0, 1e-12);
    vp.uncertain_value = 0;
    rd_index_votes(hits, 3, &vp, votes);
    CHECK_NEAR(votes[0], 0.8 / 1.4, 1e-6);
    /* Temperature: weights exp((s - 0.8) / 0.1). */
    vp.uncertain_value = 0.5;
    vp.temperature = 0.1;
    total = rd_index_votes(hits, 3, &vp, votes);
    {
        double w0 = 1, w1 = exp(-4), w2 = exp(-6);
        CHECK_NEAR(total, w0 + w1 + w2, 1e-6);
        CHECK_NEAR(votes[0], (w0 + 0.5 * w1) / (w0 + w1 + w2), 1e-6);
        CHECK_NEAR(votes[1], w2 / (w0 + w1 + w2), 1e-6);
    }
    /* Combination. */
    enc[0] = 0.2;
    enc[1] = 0.9;
    vp.encoder_weight = 0.25;
    rd_index_combine(enc, votes, total, &vp, combined);
    CHECK_NEAR(combined[0], 0.25 * 0.2 + 0.75 * votes[0], 1e-9);
    CHECK_NEAR(combined[1], 0.25 * 0.9 + 0.75 * votes[1], 1e-9);
    /* Negative similarities carry no weight; no weight at all: the encoder alone. */
    rd_index_hit neg[1] = {hit_of(-0.3, "300000000000000")};
    vp.temperature = 0;
    total = rd_index_votes(neg, 1, &vp, votes);
    CHECK_NEAR(total, 0, 1e-12);
    CHECK_NEAR(votes[0], 0, 1e-12);
    rd_index_combine(enc, votes, total, &vp, combined);
    CHECK_NEAR(combined[1], 0.9, 1e-12);
    CHECK_NEAR(rd_index_votes(NULL, 0, &vp, votes), 0, 1e-12);
    /* Without encoder scores the votes are the scores. */
    total = rd_index_votes(hits, 3, &vp, votes);
    rd_index_combine(NULL, votes, total, &vp, combined);
    CHECK_NEAR(combined[0], votes[0], 1e-12);
    /* Evidence for the generator. */
    {
        rd_evidence_case ev[3];
        hits[0].findings_text = (char *)"Text.";
        rd_index_evidence(hits, 3, ev);
        CHECK_NEAR(ev[1].similarity, 0.4, 1e-6);
        CHECK_EQ_INT(ev[2].state[1], RD_STATE_PRESENT);
        CHECK_STR(ev[0].findings_text, "Text.");
        CHECK(ev[1].findings_text == NULL);
    }
}

RD_TEST(settings_from_config_and_model)
{
    rd_config cfg;
    rd_retrieval_settings s;
    rd_error err;
    rd_config_defaults(&cfg);
    CHECK_OK(rd_retrieval_settings_resolve(&s, &cfg, NULL, &err), &err);
    CHECK_EQ_INT(s.search.k, 10);
    CHECK_NEAR(s.votes.encoder_weight, 0.5, 1e-12);
    CHECK_NEAR(s.search.min_similarity, -1, 1e-12);
    const char *model = "{\"name\": \"x\", \"retrieval\": {\"chosen_by\": \"evaluate\", \"k\": 25, "
                        "\"encoder_weight\": 0.7, "
                        "\"min_similarity\": 0.2, \"temperature\": 0.05}}";
    CHECK_OK(rd_retrieval_settings_resolve(&s, &cfg, model, &err), &err);
    CHECK_EQ_INT(s.search.k, 25);
    CHECK_NEAR(s.votes.encoder_weight, 0.7, 1e-12);
    CHECK_NEAR(s.search.min_similarity, 0.2, 1e-12);
    CHECK_NEAR(s.votes.temperature, 0.05, 1e-12);
    CHECK_NEAR(s.votes.uncertain_value, 0.5, 1e-12);
    /* Configuration keys set by the site win over the model. */
    CHECK_OK(rd_config_set(&cfg, "retrieval.k", "5", &err), &err);
    CHECK_OK(rd_config_set(&cfg, "retrieval.encoder_weight", "0", &err), &err);
    CHECK_OK(rd_config_set(&cfg, "retrieval.date_window_days", "365", &err), &err);
    CHECK_OK(rd_retrieval_settings_resolve(&s, &cfg, model, &err), &err);
    CHECK_EQ_INT(s.search.k, 5);
    CHECK_NEAR(s.votes.encoder_weight, 0, 1e-12);
    CHECK_EQ_INT(s.search.date_window_days, 365);
    CHECK(rd_config_set(&cfg, "retrieval.k", "5000", &err) == RD_E_CONFIG);
    CHECK(rd_retrieval_settings_resolve(&s, &cfg, "{\"retrieval\": {\"k\": 0}}", &err) ==
          RD_E_CONFIG);
    CHECK(rd_retrieval_settings_resolve(&s, &cfg, "{\"retrieval\": {\"kk\": 3}}", &err) ==
          RD_E_CONFIG);
    CHECK(rd_retrieval_settings_resolve(&s, &cfg, "{\"retrieval\": [1]}", &err) == RD_E_CONFIG);
    CHECK(rd_retrieval_settings_resolve(&s, &cfg, "{\"retrieval\": {\"chosen_by\": 1}}", &err) ==
          RD_E_CONFIG);
    CHECK(rd_retrieval_settings_resolve(&s, &cfg, "not json", &err) == RD_E_CONFIG);
}

RD_TEST(helpers)
{
    char h1[65], h2[65], h3[65];
    rd_view_family v;
    rd_archive_source src;
    rd_error err;
    CHECK_EQ_INT(rd_view_family_from_position("PA"), RD_VIEW_FRONTAL);
    CHECK_EQ_INT(rd_view_family_from_position(" ap "), RD_VIEW_FRONTAL);
    CHECK_EQ_INT(rd_view_family_from_position("LL"), RD_VIEW_LATERAL);
    CHECK_EQ_INT(rd_view_family_from_position("LATERAL"), RD_VIEW_LATERAL);
    CHECK_EQ_INT(rd_view_family_from_position("OBLIQUE"), RD_VIEW_UNKNOWN);
    CHECK_EQ_INT(rd_view_family_from_position(NULL), RD_VIEW_UNKNOWN);
    CHECK_OK(rd_view_family_parse("lateral", &v, &err), &err);
    CHECK_EQ_INT(v, RD_VIEW_LATERAL);
    CHECK(rd_view_family_parse("side", &v, &err) == RD_E_INVALID);
    CHECK_OK(rd_archive_source_parse("signed", &src, &err), &err);
    CHECK_EQ_INT(src, RD_ARCHIVE_SIGNED);
    CHECK_EQ_INT(rd_index_parse_date("20240229"), 20240229);
    CHECK_EQ_INT(rd_index_parse_date("20230229"), 0);
    CHECK_EQ_INT(rd_index_parse_date("2023-01-01"), 0);
    CHECK_EQ_INT(rd_index_parse_date(""), 0);
    CHECK_EQ_INT(rd_index_parse_date("1999123"), 0);
    rd_index_patient_hash("ab", "c", h1);
    rd_index_patient_hash("a", "bc", h2);
    rd_index_patient_hash("ab", "c", h3);
    CHECK(strcmp(h1, h2) != 0);
    CHECK_STR(h1, h3);
    CHECK_EQ_INT(strlen(h1), 64);
    /* sha256("salt\0P1") computed independently (printf 'salt\0P1' | sha256sum). */
    rd_index_patient_hash("salt", "", h2);
    CHECK_STR(h2, "");
    rd_index_patient_hash("salt", NULL, h2);
    CHECK_STR(h2, "");
    rd_index_patient_hash("salt", "P1", h1);
    CHECK_STR(h1, "f555695e6fee6ddf12a8c77f20fd3c4455070e451aabb0cda33030800bbcf2b4");
}

/* ---- seed files ---- */

static rd_status build_index(const fixture *f, rd_index **out, rd_error *err)
{
    rd_status st = rd_index_create(out, "seed-model", f->dim, err);
    if (st == RD_OK && (st = fixture_add_all(f, *out, NULL, err)) != RD_OK) {
        rd_index_free(*out);
        *out = NULL;
    }
    return st;
}

RD_TEST(seed_round_trip)
{
    const char *dir = rd_test_tmpdir("index_seed");
    char path[1200], dbdir[1200];
    fixture f;
    rd_index *ix = NULL, *back = NULL;
    rd_store *s = NULL;
    rd_error err;
    long written = 0, added = 0, seeded = 0;
    fixture_make(&f, 300, 16, 40);
    snprintf(path, sizeof path, "%s/seed-archive.bin", dir);
    snprintf(dbdir, sizeof dbdir, "%s/db", dir);
    REQUIRE_OK(build_index(&f, &ix, &err), &err);
    REQUIRE_OK(rd_index_seed_write(ix, path, 0, &written, &err), &err);
    CHECK_EQ_INT(written, 200); /* every third entry is "signed" and stays at the site */
    REQUIRE_OK(rd_index_seed_write(ix, path, 1, &written, &err), &err);
    CHECK_EQ_INT(written, 300);
    REQUIRE_OK(rd_index_create(&back, "seed-model", 16, &err), &err);
    REQUIRE_OK(rd_index_seed_read(back, NULL, path, 0, &added, &err), &err);
    CHECK_EQ_INT(added, 300);
    /* Reading it twice adds nothing (keys are unique). */
    REQUIRE_OK(rd_index_seed_read(back, NULL, path, 0, &added, &err), &err);
    CHECK_EQ_INT(added, 0);
    CHECK_EQ_INT(rd_index_count(back), 300);
    for (int t = 0; t < 20; t++) {
        float qv[16];
        rd_index_hit h1[10], h2[10];
        int n1, n2;
        for (int d = 0; d < 16; d++)
            qv[d] = frand();
        rd_index_query q = {qv, NULL, NULL, (rd_view_family)(t % 3), 0};
        rd_index_params p;
        rd_index_params_default(&p);
        p.k = 10;
        REQUIRE_OK(rd_index_search(ix, &q, &p, h1, &n1, &err), &err);
        REQUIRE_OK(rd_index_search(back, &q, &p, h2, &n2, &err), &err);
        CHECK_EQ_INT(n1, n2);
        for (int r = 0; r < n1 && r < n2; r++) {
            CHECK(h1[r].similarity == h2[r].similarity);
            CHECK(memcmp(h1[r].state, h2[r].state, sizeof h1[r].state) == 0);
            CHECK_STR(h1[r].patient_hash, h2[r].patient_hash);
            CHECK_EQ_INT(h1[r].view, h2[r].view);
            CHECK_EQ_INT(h1[r].study_date, h2[r].study_date);
            CHECK_EQ_INT(h2[r].source, RD_ARCHIVE_SEED);
            /* The study is named by its hash only. */
            char hs[65];
            rd_sha256_hex(h1[r].study_uid, strlen(h1[r].study_uid), hs);
            CHECK_STR(h2[r].study_uid, hs);
        }
    }
    /* Loading from a store with no rows of the model imports the seed once. */
    {
        rd_index *fromdb = NULL;
        REQUIRE_OK(rd_store_open(&s, dbdir, rdt_store_opts(dbdir), &err), &err);
        REQUIRE_OK(rd_index_load(&fromdb, s, "seed-model", 16, path, &seeded, &err), &err);
        CHECK_EQ_INT(seeded, 300);
        CHECK_EQ_INT(rd_index_count(fromdb), 300);
        rd_index_free(fromdb);
        REQUIRE_OK(rd_index_load(&fromdb, s, "seed-model", 16, path, &seeded, &err), &err);
        CHECK_EQ_INT(seeded, 0); /* rows exist now: the seed is not read again */
        CHECK_EQ_INT(rd_index_count(fromdb), 300);
        rd_index_free(fromdb);
        /* A missing seed file is not an error. */
        REQUIRE_OK(
            rd_index_load(&fromdb, s, "other-model", 16, "/nonexistent/seed.bin", &seeded, &err),
            &err);
        CHECK_EQ_INT(rd_index_count(fromdb), 0);
        rd_index_free(fromdb);
        rd_store_close(s);
    }
    /* A seed of another model version or dimension is refused. */
    {
        rd_index *other = NULL;
        REQUIRE_OK(rd_index_create(&other, "other-model", 16, &err), &err);
        CHECK(rd_index_seed_read(other, NULL, path, 0, NULL, &err) == RD_E_MODEL);
        rd_index_free(other);
        REQUIRE_OK(rd_index_create(&other, "seed-model", 17, &err), &err);
        CHECK(rd_index_seed_read(other, NULL, path, 0, NULL, &err) == RD_E_MODEL);
        rd_index_free(other);
    }
    rd_index_free(ix);
    rd_index_free(back);
    fixture_free(&f);
}

static rd_status try_seed(const char *path, const void *data, size_t len, long *count)
{
    rd_index *ix = NULL;
    rd_error err;
    rd_status st;
    *count = -1;
    if ((st = rd_write_file_atomic(path, data, len, &err)) != RD_OK)
        return st;
    if ((st = rd_index_create(&ix, "seed-model", 8, &err)) != RD_OK)
        return st;
    st = rd_index_seed_read(ix, NULL, path, 1 << 20, NULL, &err);
    *count = rd_index_count(ix);
    rd_index_free(ix);
    return st;
}

RD_TEST(seed_corruption)
{
    const char *dir = rd_test_tmpdir("index_seed_bad");
    char good[1200], bad[1200];
    fixture f;
    rd_index *ix = NULL;
    rd_error err;
    char *data = NULL;
    size_t len = 0;
    long count;
    rd_status st;
    fixture_make(&f, 12, 8, 5);
    snprintf(good, sizeof good, "%s/good.bin", dir);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    REQUIRE_OK(build_index(&f, &ix, &err), &err);
    REQUIRE_OK(rd_index_seed_write(ix, good, 1, NULL, &err), &err);
    rd_index_free(ix);
    REQUIRE_OK(rd_read_file(good, 1 << 20, &data, &len, &err), &err);
    CHECK_OK(try_seed(bad, data, len, &count), &err);
    CHECK_EQ_INT(count, 12);
    /* Every truncation is refused and adds nothing. */
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 7)) {
        st = try_seed(bad, data, cut, &count);
        CHECK_MSG(st == RD_E_CORRUPT, "truncated at %zu: %s", cut, rd_status_name(st));
        CHECK_EQ_INT(count, 0);
    }
    /* Flipped bytes anywhere: either refused, or (a flip inside a float or a string that
     * stays valid) accepted whole; never a crash, never a partial load. */
    for (size_t pos = 0; pos < len; pos += 3) {
        char *copy = malloc(len);
        memcpy(copy, data, len);
        copy[pos] ^= (char)(0x5a + pos % 7);
        st = try_seed(bad, copy, len, &count);
        CHECK(count == 0 || (st == RD_OK && count == 12));
        free(copy);
    }
    /* A hostile header length. */
    {
        char *copy = malloc(len);
        memcpy(copy, data, len);
        memset(copy + 8, 0xff, 8);
        CHECK(try_seed(bad, copy, len, &count) == RD_E_CORRUPT);
        free(copy);
    }
    /* A NaN embedding. */
    {
        char *copy = malloc(len);
        uint32_t nanbits = 0x7fc00000u;
        memcpy(copy, data, len);
        memcpy(copy + len - 4, &nanbits, 4);
        CHECK(try_seed(bad, copy, len, &count) == RD_E_CORRUPT);
        CHECK_EQ_INT(count, 0);
        free(copy);
    }
    /* Extra bytes after the embeddings. */
    {
        char *copy = malloc(len + 4);
        memcpy(copy, data, len);
        memset(copy + len, 0, 4);
        CHECK(try_seed(bad, copy, len + 4, &count) == RD_E_CORRUPT);
        free(copy);
    }
    /* A count that claims more entries than there are, with a matching data size. */
    {
        const char *hdr = "{\"format\":\"radraft-seed-archive\",\"version\":1,"
                          "\"model_version\":\"seed-model\",\"dim\":8,\"count\":1e15,"
                          "\"entries\":[]}";
        size_t hl = strlen(hdr);
        unsigned char buf[512];
        memcpy(buf, "RDSEED01", 8);
        for (int i = 0; i < 8; i++)
            buf[8 + i] = (unsigned char)((uint64_t)hl >> (8 * i));
        memcpy(buf + 16, hdr, hl);
        CHECK(try_seed(bad, buf, 16 + hl, &count) == RD_E_CORRUPT);
    }
    /* Over the caller's size cap. */
    {
        rd_index *small = NULL;
        REQUIRE_OK(rd_index_create(&small, "seed-model", 8, &err), &err);
        CHECK(rd_index_seed_read(small, NULL, good, 100, NULL, &err) == RD_E_TOO_LARGE);
        rd_index_free(small);
    }
    free(data);
    fixture_free(&f);
}

RD_TEST_MAIN()
