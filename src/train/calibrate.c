/* radraft — fitting what turns scores into a report: Platt scaling per finding (the
 * calibration that src/report/calibration.c applies), the calibration error it is judged by,
 * and the score thresholds that maximize F-beta on held-out patients. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/train.h"
#include "base/util.h"

#define EPS 1e-6

static double logit_clamped(double s)
{
    s = s < EPS ? EPS : s > 1 - EPS ? 1 - EPS : s;
    return log(s / (1 - s));
}

/* The log loss of p = sigmoid(a x + b) against the targets t. */
static double platt_loss(const double *x, const double *t, int n, double a, double b)
{
    double loss = 0;
    for (int i = 0; i < n; i++) {
        double z = a * x[i] + b;
        /* log(1 + exp(-z)) and log(1 + exp(z)), both stable. */
        double lp = z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z));
        double lq = z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
        loss += t[i] * lp + (1 - t[i]) * lq;
    }
    return loss;
}

rd_status rd_calib_fit_platt(const double *s, const unsigned char *y, int n, double *a_out,
                             double *b_out, rd_error *err)
{
    double *x = NULL, *t = NULL;
    int npos = 0;
    if (n < 2)
        return rd_error_set(err, RD_E_INVALID, "calibration needs at least two scores");
    for (int i = 0; i < n; i++)
        npos += y[i] != 0;
    if (!(x = malloc((size_t)n * sizeof *x)) || !(t = malloc((size_t)n * sizeof *t))) {
        free(x);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
    /* Platt's targets: (P + 1) / (P + 2) and 1 / (N + 2) instead of 1 and 0, so that a
     * finding with few positives, or none, still gets a finite, cautious fit. */
    double tp = (npos + 1.0) / (npos + 2.0), tn = 1.0 / (n - npos + 2.0);
    for (int i = 0; i < n; i++) {
        x[i] = logit_clamped(s[i]);
        t[i] = y[i] ? tp : tn;
    }
    double a = 1, b = 0, loss = platt_loss(x, t, n, a, b);
    for (int it = 0; it < 100; it++) {
        double ga = 0, gb = 0, haa = 1e-9, hab = 0, hbb = 1e-9;
        for (int i = 0; i < n; i++) {
            double p = 1 / (1 + exp(-(a * x[i] + b))), d = p - t[i], w = p * (1 - p);
            ga += d * x[i];
            gb += d;
            haa += w * x[i] * x[i];
            hab += w * x[i];
            hbb += w;
        }
        double det = haa * hbb - hab * hab;
        if (!(fabs(det) > 1e-12))
            break;
        double da = (hbb * ga - hab * gb) / det, db = (haa * gb - hab * ga) / det;
        /* Newton's step, halved until the loss does not grow. */
        double step = 1, na = a, nb = b, nl = loss;
        for (int h = 0; h < 30; h++, step /= 2) {
            na = a - step * da;
            nb = b - step * db;
            nl = platt_loss(x, t, n, na, nb);
            if (nl <= loss)
                break;
        }
        if (!(nl <= loss))
            break;
        double moved = fabs(na - a) + fabs(nb - b);
        a = na;
        b = nb;
        loss = nl;
        if (moved < 1e-10)
            break;
    }
    free(x);
    free(t);
    /* A slope at or below zero would reverse or flatten the ranking: the scores then carry
     * no usable signal here, and the fit falls back to a flat but monotone map. */
    if (!(a > 1e-3))
        a = 1e-3;
    *a_out = a > 100 ? 100 : a;
    *b_out = b < -100 ? -100 : b > 100 ? 100 : b;
    return RD_OK;
}

double rd_calib_ece(const double *p, const unsigned char *y, int n, int bins)
{
    double sum_p[64] = {0}, sum_y[64] = {0};
    int cnt[64] = {0};
    double ece = 0;
    if (n <= 0)
        return NAN;
    if (bins < 1)
        bins = 1;
    if (bins > 64)
        bins = 64;
    for (int i = 0; i < n; i++) {
        int k = (int)(p[i] * bins);
        k = k < 0 ? 0 : k >= bins ? bins - 1 : k;
        sum_p[k] += p[i];
        sum_y[k] += y[i] != 0;
        cnt[k]++;
    }
    for (int k = 0; k < bins; k++)
        if (cnt[k])
            ece += fabs(sum_p[k] - sum_y[k]) / n;
    return ece;
}

typedef struct scored {
    double p;
    unsigned char y;
} scored;

static int cmp_desc(const void *a, const void *b)
{
    double x = ((const scored *)a)->p, z = ((const scored *)b)->p;
    return x > z ? -1 : x < z;
}

double rd_calib_best_threshold(const double *p, const unsigned char *y, int n, double beta,
                               double *fbeta)
{
    scored *v;
    int npos = 0;
    double best = -1, th = 1.0, b2 = beta * beta;
    if (fbeta)
        *fbeta = NAN;
    if (n <= 0 || !(v = malloc((size_t)n * sizeof *v)))
        return NAN;
    for (int i = 0; i < n; i++) {
        v[i].p = p[i];
        v[i].y = y[i] != 0;
        npos += v[i].y;
    }
    if (npos == 0) {
        free(v);
        return NAN;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_desc);
    /* Cut after every group of equal scores: everything above the cut is called positive.
     * The threshold sits halfway to the next lower score, so that a new case close to the
     * last one included is included too. */
    int tp = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && v[j].p == v[i].p)
            tp += v[j++].y;
        int called = j, fp = called - tp, fn = npos - tp;
        double f = (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp);
        if (f > best) {
            best = f;
            th = j < n ? (v[i].p + v[j].p) / 2 : v[i].p;
        }
        i = j;
    }
    free(v);
    if (fbeta)
        *fbeta = best;
    return th;
}

/* Cross-fitted calibration and thresholds --------------------------------------------------- */

#define NF RD_FINDING_N_ABNORMAL

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* What one fit (on the cases with in[i] set) decides for every finding. */
typedef struct fit {
    double a[NF], b[NF], uncertain[NF], present[NF];
    int global[NF];
    double g_uncertain, g_present;
} fit;

static rd_status fit_on(const float *scores, const uint16_t *bits, const unsigned char *in, int n,
                        int min_pos, fit *out, double *buf_s, double *buf_p, unsigned char *buf_y,
                        double *pool_p, unsigned char *pool_y, rd_error *err)
{
    int m = 0, np = 0;
    rd_status st;
    for (int f = 0; f < NF; f++) {
        int pos = 0;
        m = 0;
        for (int i = 0; i < n; i++)
            if (in[i]) {
                buf_s[m] = scores[(size_t)i * NF + f];
                buf_y[m] = (unsigned char)((bits[i] >> f) & 1u);
                pos += buf_y[m];
                m++;
            }
        if ((st = rd_calib_fit_platt(buf_s, buf_y, m, &out->a[f], &out->b[f], err)) != RD_OK)
            return st;
        for (int i = 0; i < m; i++) {
            double z = out->a[f] * logit_clamped(buf_s[i]) + out->b[f];
            buf_p[i] = 1 / (1 + exp(-z));
            pool_p[np] = buf_p[i];
            pool_y[np++] = buf_y[i];
        }
        out->global[f] = pos < min_pos;
        if (!out->global[f]) {
            out->uncertain[f] = rd_calib_best_threshold(buf_p, buf_y, m, 1.0, NULL);
            out->present[f] = rd_calib_best_threshold(buf_p, buf_y, m, 0.5, NULL);
        }
    }
    /* One pooled threshold over every finding: what the findings with too few positives of
     * their own use, and the rule the per-finding one is compared with. */
    out->g_uncertain = rd_calib_best_threshold(pool_p, pool_y, np, 1.0, NULL);
    out->g_present = rd_calib_best_threshold(pool_p, pool_y, np, 0.5, NULL);
    if (!isfinite(out->g_uncertain))
        out->g_uncertain = out->g_present = 0.5;
    for (int f = 0; f < NF; f++) {
        if (out->global[f] || !isfinite(out->uncertain[f])) {
            out->global[f] = 1;
            out->uncertain[f] = out->g_uncertain;
            out->present[f] = out->g_present;
        }
        if (!isfinite(out->present[f]) || out->present[f] < out->uncertain[f])
            out->present[f] = out->uncertain[f];
    }
    return RD_OK;
}

static double f1_of(int tp, int fp, int fn)
{
    return tp + fp + fn ? 2.0 * tp / (2.0 * tp + fp + fn) : NAN;
}

rd_status rd_calib_fit(const float *scores, const uint16_t *bits, const int *patient, int n,
                       int min_positives, rd_calib_report *r, rd_error *err)
{
    size_t pool = 0;
    double *bs = NULL, *bp = NULL, *pp = NULL, *cal = NULL;
    unsigned char *by = NULL, *py = NULL, *in = NULL;
    int gtp[NF] = {0}, gfp[NF] = {0}, gfn[NF] = {0};
    long mentions = 0, labelled = 0;
    rd_status st = RD_OK;
    fit ft;

    memset(r, 0, sizeof *r);
    r->n = n;
    r->min_positives = min_positives;
    if (n < 4)
        return rd_error_set(err, RD_E_INVALID, "calibration needs at least 4 images, not %d", n);
    if (!rd_mul_size((size_t)n, NF, &pool))
        return rd_error_set(err, RD_E_TOO_LARGE, "too many images");
    bs = malloc((size_t)n * sizeof *bs);
    bp = malloc((size_t)n * sizeof *bp);
    by = malloc((size_t)n);
    in = malloc((size_t)n);
    pp = malloc(pool * sizeof *pp);
    py = malloc(pool);
    cal = malloc(pool * sizeof *cal);
    if (!bs || !bp || !by || !in || !pp || !py || !cal) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    /* Cross-fitting: the patients fall into two halves; each half's probabilities and calls
     * come from what was fitted on the other half, so the figures below are measured on
     * patients the fit did not see. */
    for (int half = 0; half < 2; half++) {
        int n_in = 0;
        for (int i = 0; i < n; i++) {
            in[i] =
                (unsigned char)((mix64((uint64_t)patient[i] ^ 0xca1bull) & 1u) != (unsigned)half);
            n_in += in[i];
        }
        if (n_in < 2 || n - n_in < 1) {
            st = rd_error_set(err, RD_E_INVALID,
                              "calibration: the %d images do not split into two halves of "
                              "patients",
                              n);
            goto out;
        }
        if ((st = fit_on(scores, bits, in, n, min_positives, &ft, bs, bp, by, pp, py, err)) !=
            RD_OK)
            goto out;
        for (int i = 0; i < n; i++) {
            if (in[i])
                continue;
            for (int f = 0; f < NF; f++) {
                double z = ft.a[f] * logit_clamped(scores[(size_t)i * NF + f]) + ft.b[f];
                double p = 1 / (1 + exp(-z));
                int y = (bits[i] >> f) & 1, call = p >= ft.uncertain[f],
                    gcall = p >= ft.g_uncertain;
                cal[(size_t)i * NF + f] = p;
                r->f[f].tp += call && y;
                r->f[f].fp += call && !y;
                r->f[f].fn += !call && y;
                gtp[f] += gcall && y;
                gfp[f] += gcall && !y;
                gfn[f] += !gcall && y;
                mentions += call;
                labelled += y;
            }
        }
    }
    /* The figures, then the fit on every case (what a model gets). */
    {
        int tp = 0, fp = 0, fn = 0, g_tp = 0, g_fp = 0, g_fn = 0, nm = 0, ngm = 0;
        double macro = 0, gmacro = 0;
        for (int f = 0; f < NF; f++) {
            rd_calib_finding *c = &r->f[f];
            for (int i = 0; i < n; i++) {
                bs[i] = scores[(size_t)i * NF + f];
                bp[i] = cal[(size_t)i * NF + f];
                by[i] = (unsigned char)((bits[i] >> f) & 1u);
                c->positives += by[i];
            }
            c->ece_raw = rd_calib_ece(bs, by, n, 10);
            c->ece_cal = rd_calib_ece(bp, by, n, 10);
            c->f1 = f1_of(c->tp, c->fp, c->fn);
            c->f1_global = f1_of(gtp[f], gfp[f], gfn[f]);
            tp += c->tp, fp += c->fp, fn += c->fn;
            g_tp += gtp[f], g_fp += gfp[f], g_fn += gfn[f];
            if (c->positives > 0) {
                macro += isfinite(c->f1) ? c->f1 : 0;
                gmacro += isfinite(c->f1_global) ? c->f1_global : 0;
                nm++;
                ngm++;
            }
        }
        r->micro_f1 = f1_of(tp, fp, fn);
        r->micro_f1_global = f1_of(g_tp, g_fp, g_fn);
        r->macro_f1 = nm ? macro / nm : NAN;
        r->macro_f1_global = ngm ? gmacro / ngm : NAN;
        r->mentions_per_image = (double)mentions / n;
        r->labels_per_image = (double)labelled / n;
    }
    for (int i = 0; i < n; i++)
        in[i] = 1;
    if ((st = fit_on(scores, bits, in, n, min_positives, &ft, bs, bp, by, pp, py, err)) != RD_OK)
        goto out;
    for (int f = 0; f < NF; f++) {
        r->f[f].a = ft.a[f];
        r->f[f].b = ft.b[f];
        r->f[f].uncertain = ft.uncertain[f];
        r->f[f].present = ft.present[f];
        r->f[f].rule_global = ft.global[f];
    }
    r->global_uncertain = ft.g_uncertain;
    r->global_present = ft.g_present;
out:
    free(bs);
    free(bp);
    free(by);
    free(in);
    free(pp);
    free(py);
    free(cal);
    return st;
}

/* Bootstrap over patients ------------------------------------------------------------------- */

rd_status rd_auroc_bootstrap(const float *scores, const uint16_t *bits, const int *patient, int n,
                             int n_patients, int reps, uint64_t seed, int min_positives,
                             rd_auroc_interval ci[RD_FINDING_N_ABNORMAL + 1], rd_error *err)
{
    int *first = NULL, *next = NULL, *draw_idx = NULL;
    float *col = NULL;
    unsigned char *lab = NULL;
    double *samples = NULL; /* (NF + 1) x reps */
    int cap = 0;
    rd_status st = RD_OK;

    memset(ci, 0, (NF + 1) * sizeof *ci);
    if (n <= 0 || n_patients <= 0 || reps < 10)
        return rd_error_set(err, RD_E_INVALID, "bootstrap: %d images, %d patients, %d replicates",
                            n, n_patients, reps);
    first = malloc((size_t)n_patients * sizeof *first);
    next = malloc((size_t)n * sizeof *next);
    samples = malloc((size_t)(NF + 1) * (size_t)reps * sizeof *samples);
    if (!first || !next || !samples) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    /* Each patient's images as a linked list, so that a drawn patient brings all of them. */
    for (int p = 0; p < n_patients; p++)
        first[p] = -1;
    for (int i = n - 1; i >= 0; i--) {
        if (patient[i] < 0 || patient[i] >= n_patients) {
            st = rd_error_set(err, RD_E_INVALID, "bootstrap: bad patient index");
            goto out;
        }
        next[i] = first[patient[i]];
        first[patient[i]] = i;
    }
    /* A replicate holds at most n_patients draws of the largest patient. */
    {
        int most = 0;
        for (int p = 0; p < n_patients; p++) {
            int c = 0;
            for (int i = first[p]; i >= 0; i = next[i])
                c++;
            most = c > most ? c : most;
        }
        size_t total = 0;
        if (!rd_mul_size((size_t)n_patients, (size_t)most, &total) || total > (size_t)1 << 28) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "bootstrap: too many images per patient");
            goto out;
        }
        cap = (int)total;
        draw_idx = malloc(total * sizeof *draw_idx);
        col = malloc(total * sizeof *col);
        lab = malloc(total);
        if (!draw_idx || !col || !lab) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory");
            goto out;
        }
    }
    uint64_t state = seed;
    for (int r = 0; r < reps; r++) {
        int m = 0;
        for (int k = 0; k < n_patients; k++) {
            state += 0x9e3779b97f4a7c15ull;
            int p = (int)(mix64(state) % (uint64_t)n_patients);
            for (int i = first[p]; i >= 0 && m < cap; i = next[i])
                draw_idx[m++] = i;
        }
        double sum = 0;
        int cnt = 0;
        for (int f = 0; f < NF; f++) {
            int pos = 0;
            for (int j = 0; j < m; j++) {
                col[j] = scores[(size_t)draw_idx[j] * NF + f];
                lab[j] = (unsigned char)((bits[draw_idx[j]] >> f) & 1u);
                pos += lab[j];
            }
            double a = rd_auroc(col, lab, m);
            samples[(size_t)f * reps + r] = a;
            if (isfinite(a) && pos >= min_positives) {
                sum += a;
                cnt++;
            }
        }
        samples[(size_t)NF * reps + r] = cnt ? sum / cnt : NAN;
    }
    for (int f = 0; f <= NF; f++) {
        double *v = samples + (size_t)f * reps;
        int k = 0;
        for (int r = 0; r < reps; r++)
            if (isfinite(v[r]))
                v[k++] = v[r];
        ci[f].replicates = k;
        if (k < 2) {
            ci[f].lo = ci[f].hi = NAN;
            continue;
        }
        for (int i = 1; i < k; i++) /* insertion sort: reps is small */
            for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
                double t = v[j];
                v[j] = v[j - 1];
                v[j - 1] = t;
            }
        ci[f].lo = v[(int)floor(0.025 * (k - 1))];
        ci[f].hi = v[(int)ceil(0.975 * (k - 1))];
    }
out:
    free(first);
    free(next);
    free(draw_idx);
    free(col);
    free(lab);
    free(samples);
    return st;
}
