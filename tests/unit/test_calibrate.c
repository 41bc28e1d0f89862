/* Calibration and thresholds: the Platt fit recovers a known map, the model's calibration
 * parses and refuses what it must, F-beta thresholds and ECE on hand-made cases, the
 * cross-fitted fit on a synthetic held-out set, and the bootstrap interval over patients. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/findings.h"
#include "radraft/generator.h"
#include "radraft/train.h"
#include "rdtest.h"

#define NF RD_FINDING_N_ABNORMAL

static double unit(uint64_t *r)
{
    *r = *r * 6364136223846793005ull + 1442695040888963407ull;
    return ((*r >> 11) + 0.5) / 9007199254740992.0;
}

/* Scores whose true probability of a positive is sigmoid(a * logit(s) + b). */
static void draw(int n, double a, double b, double *s, unsigned char *y, uint64_t seed)
{
    uint64_t r = seed;
    for (int i = 0; i < n; i++) {
        s[i] = 0.02 + 0.96 * unit(&r);
        double p = 1 / (1 + exp(-(a * log(s[i] / (1 - s[i])) + b)));
        y[i] = unit(&r) < p;
    }
}

RD_TEST(platt_recovers_a_known_map)
{
    enum { N = 20000 };
    double *s = malloc(N * sizeof *s), a, b;
    unsigned char *y = malloc(N);
    rd_error err;
    REQUIRE(s && y);
    draw(N, 1.7, -0.8, s, y, 7);
    REQUIRE_OK(rd_calib_fit_platt(s, y, N, &a, &b, &err), &err);
    CHECK_NEAR(a, 1.7, 0.08);
    CHECK_NEAR(b, -0.8, 0.08);
    /* Scores that are already probabilities stay (nearly) as they are. */
    draw(N, 1.0, 0.0, s, y, 8);
    REQUIRE_OK(rd_calib_fit_platt(s, y, N, &a, &b, &err), &err);
    CHECK_NEAR(a, 1.0, 0.06);
    CHECK_NEAR(b, 0.0, 0.06);
    /* No positive at all: a finite, cautious fit with a positive slope, never a reversal. */
    for (int i = 0; i < 50; i++)
        y[i] = 0;
    REQUIRE_OK(rd_calib_fit_platt(s, y, 50, &a, &b, &err), &err);
    CHECK(a > 0 && isfinite(b) && b < 0);
    CHECK(rd_calib_fit_platt(s, y, 1, &a, &b, &err) == RD_E_INVALID);
    free(s);
    free(y);
}

RD_TEST(ece_and_thresholds_on_known_cases)
{
    /* Half the cases at 0.25 with one positive in four, half at 0.75 with three in four:
     * perfectly calibrated. The same labels at 0.95 / 0.05 are off by 0.2 everywhere. */
    double p[8] = {0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75};
    double q[8] = {0.05, 0.05, 0.05, 0.05, 0.95, 0.95, 0.95, 0.95};
    unsigned char y[8] = {1, 0, 0, 0, 1, 1, 1, 0};
    CHECK_NEAR(rd_calib_ece(p, y, 8, 10), 0.0, 1e-12);
    CHECK_NEAR(rd_calib_ece(q, y, 8, 10), 0.2, 1e-12);
    CHECK(isnan(rd_calib_ece(p, y, 0, 10)));

    /* Scores 0.9 0.8 0.7 0.6 0.5 with labels 1 1 0 1 0: calling the top two gives F1 0.8,
     * the top four 6/7 = 0.857 (best), all five 0.75. The threshold is halfway to 0.5. */
    double s[5] = {0.6, 0.9, 0.5, 0.8, 0.7};
    unsigned char l[5] = {1, 1, 0, 1, 0}, none[5] = {0};
    double f = 0;
    CHECK_NEAR(rd_calib_best_threshold(s, l, 5, 1.0, &f), 0.55, 1e-12);
    CHECK_NEAR(f, 6.0 / 7.0, 1e-12);
    /* F0.5 favours precision: the top two (precision 1, recall 2/3) win, F0.5 = 0.909. */
    CHECK_NEAR(rd_calib_best_threshold(s, l, 5, 0.5, &f), 0.75, 1e-12);
    CHECK_NEAR(f, 1.25 * 2 / (1.25 * 2 + 0.25 * 1 + 0), 1e-12);
    CHECK(isnan(rd_calib_best_threshold(s, none, 5, 1.0, &f)));
}

RD_TEST(model_calibration_parse_and_apply)
{
    rd_calibration c;
    rd_error err;
    char json[8192];
    size_t k = 0;
    k += (size_t)snprintf(json + k, sizeof json - k,
                          "{\"calibration\": {\"method\": \"platt\", \"findings\": {");
    for (int f = 0; f < NF; f++)
        k += (size_t)snprintf(json + k, sizeof json - k, "%s\"%s\": {\"a\": %g, \"b\": %g}",
                              f ? ", " : "", rd_finding_name((rd_finding)f), 1.0 + f * 0.1,
                              -0.5 + f * 0.05);
    snprintf(json + k, sizeof json - k, "}}}");
    REQUIRE_OK(rd_calibration_parse(&c, json, "test", &err), &err);
    CHECK(c.enabled);
    /* The formula, and monotone in the score. */
    double s = 0.3, z = 1.2 * log(0.3 / 0.7) + (-0.4);
    CHECK_NEAR(rd_calibration_prob(&c, 2, s), 1 / (1 + exp(-z)), 1e-12);
    double prev = -1;
    for (double v = 0; v <= 1.0; v += 0.01) {
        double pv = rd_calibration_prob(&c, 5, v);
        CHECK(pv > prev && pv > 0 && pv < 1);
        prev = pv;
    }
    double sc[NF];
    for (int f = 0; f < NF; f++)
        sc[f] = 0.4;
    rd_calibration_apply(&c, sc);
    CHECK_NEAR(sc[0], 1 / (1 + exp(-(log(0.4 / 0.6) - 0.5))), 1e-12);

    /* No calibration: the identity. */
    REQUIRE_OK(rd_calibration_parse(&c, "{\"thresholds\": {}}", "test", &err), &err);
    CHECK(!c.enabled);
    CHECK_NEAR(rd_calibration_prob(&c, 3, 0.37), 0.37, 0);

    /* Refused: not JSON, another method, a missing finding, a reversing slope, a huge
     * coefficient. */
    CHECK(rd_calibration_parse(&c, "{", "t", &err) == RD_E_CONFIG);
    CHECK(rd_calibration_parse(&c,
                               "{\"calibration\": {\"method\": \"isotonic\", "
                               "\"findings\": {}}}",
                               "t", &err) == RD_E_CONFIG);
    CHECK(rd_calibration_parse(&c,
                               "{\"calibration\": {\"method\": \"platt\", \"findings\": "
                               "{\"Atelectasis\": {\"a\": 1, \"b\": 0}}}}",
                               "t", &err) == RD_E_CONFIG);
    CHECK(strstr(rd_error_message(&err), "Cardiomegaly") != NULL);
    char bad[8192];
    snprintf(bad, sizeof bad, "%s", json);
    char *p = strstr(bad, "\"a\": 1.2");
    REQUIRE(p);
    memcpy(p, "\"a\": -1 ", 8);
    CHECK(rd_calibration_parse(&c, bad, "t", &err) == RD_E_CONFIG);
    snprintf(bad, sizeof bad, "%s", json);
    p = strstr(bad, "\"a\": 1.2");
    memcpy(p, "\"a\": 1e9", 8);
    CHECK(rd_calibration_parse(&c, bad, "t", &err) == RD_E_CONFIG);
    CHECK(!c.enabled);
}

/* A held-out set where finding f's raw score is overconfident in a known way: the fit on it
 * must lower the calibration error a lot, the cross-fitted F1 must beat calling nothing and
 * the thresholds must sit where the probabilities make calling worthwhile. */
RD_TEST(cross_fitted_fit_improves_calibration)
{
    enum { N = 3000 };
    float *scores = malloc((size_t)N * NF * sizeof *scores);
    uint16_t *bits = calloc(N, sizeof *bits);
    int *patient = malloc(N * sizeof *patient);
    rd_calib_report r;
    rd_error err;
    uint64_t g = 11;
    REQUIRE(scores && bits && patient);
    for (int i = 0; i < N; i++) {
        patient[i] = i / 2;
        for (int f = 0; f < NF; f++) {
            double s = 0.02 + 0.96 * unit(&g);
            double p = 1 / (1 + exp(-(0.6 * log(s / (1 - s)) - 1.5)));
            scores[(size_t)i * NF + f] = (float)s;
            if (unit(&g) < p)
                bits[i] |= (uint16_t)(1u << f);
        }
    }
    REQUIRE_OK(rd_calib_fit(scores, bits, patient, N, 10, &r, &err), &err);
    for (int f = 0; f < NF; f++) {
        CHECK_MSG(r.f[f].ece_cal < r.f[f].ece_raw / 3, "%d: ECE %.4f -> %.4f", f, r.f[f].ece_raw,
                  r.f[f].ece_cal);
        CHECK_NEAR(r.f[f].a, 0.6, 0.15);
        CHECK_NEAR(r.f[f].b, -1.5, 0.2);
        CHECK(r.f[f].uncertain > 0 && r.f[f].uncertain < 1);
        CHECK(r.f[f].present >= r.f[f].uncertain);
        CHECK(!r.f[f].rule_global);
        CHECK(r.f[f].tp + r.f[f].fn == r.f[f].positives);
    }
    CHECK(r.micro_f1 > 0.3 && r.micro_f1 < 1);
    CHECK(r.labels_per_image > 0);
    CHECK(rd_calib_fit(scores, bits, patient, 3, 10, &r, &err) == RD_E_INVALID);
    free(scores);
    free(bits);
    free(patient);
}

RD_TEST(bootstrap_interval_over_patients)
{
    enum { N = 600 };
    float *scores = malloc((size_t)N * NF * sizeof *scores);
    uint16_t *bits = calloc(N, sizeof *bits);
    int *patient = malloc(N * sizeof *patient);
    rd_auroc_interval ci[NF + 1], ci2[NF + 1];
    rd_error err;
    uint64_t g = 5;
    REQUIRE(scores && bits && patient);
    for (int i = 0; i < N; i++) {
        patient[i] = i / 3;
        for (int f = 0; f < NF; f++) {
            int y = unit(&g) < 0.3;
            /* Finding 0 is separable, the others partly. */
            double s = f == 0 ? (y ? 0.6 : 0.4) + 0.1 * unit(&g) : 0.5 * unit(&g) + 0.2 * y;
            scores[(size_t)i * NF + f] = (float)s;
            bits[i] |= (uint16_t)(y << f);
        }
    }
    REQUIRE_OK(rd_auroc_bootstrap(scores, bits, patient, N, N / 3, 200, 1, 5, ci, &err), &err);
    CHECK_NEAR(ci[0].lo, 1.0, 1e-12);
    CHECK_NEAR(ci[0].hi, 1.0, 1e-12);
    for (int f = 1; f <= NF; f++) {
        CHECK(ci[f].lo > 0.5 && ci[f].lo < ci[f].hi && ci[f].hi < 1.0);
        CHECK(ci[f].hi - ci[f].lo < 0.2);
        CHECK_EQ_INT(ci[f].replicates, 200);
    }
    /* The same seed gives the same interval. */
    REQUIRE_OK(rd_auroc_bootstrap(scores, bits, patient, N, N / 3, 200, 1, 5, ci2, &err), &err);
    CHECK_NEAR(ci2[NF].lo, ci[NF].lo, 0);
    patient[7] = N; /* out of range */
    CHECK(rd_auroc_bootstrap(scores, bits, patient, N, N / 3, 200, 1, 5, ci, &err) == RD_E_INVALID);
    free(scores);
    free(bits);
    free(patient);
}

RD_TEST_MAIN()
