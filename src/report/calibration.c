/* radraft — calibrated scores: the model's per-finding Platt scaling, read from its
 * description and applied to the combined score before the thresholds turn it into a
 * state. Fitting lives with the trainer (src/train/calibrate.c). */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "radraft/findings.h"
#include "radraft/generator.h"

/* Scores are clamped this far inside (0, 1) so that the logit stays finite. */
#define SCORE_EPS 1e-6
/* Larger slopes or offsets than these are not a calibration but a broken file. */
#define MAX_COEF 100.0

static rd_status read_coef(const cJSON *o, const char *key, const char *finding, const char *origin,
                           double *out, rd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > MAX_COEF)
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: calibration: %s needs a number \"%s\" in [-%g, %g]", origin,
                            finding, key, MAX_COEF, MAX_COEF);
    *out = v->valuedouble;
    return RD_OK;
}

rd_status rd_calibration_parse(rd_calibration *out, const char *json, const char *origin,
                               rd_error *err)
{
    cJSON *root = cJSON_Parse(json);
    const cJSON *cal, *fo, *method;
    rd_calibration tmp;
    rd_status st = RD_OK;

    if (!origin)
        origin = "model";
    memset(out, 0, sizeof *out);
    if (!root)
        return rd_error_set(err, RD_E_CONFIG, "%s: not valid JSON", origin);
    cal = cJSON_GetObjectItemCaseSensitive(root, "calibration");
    if (!cal || cJSON_IsNull(cal))
        goto out; /* no calibration: the identity */
    method = cJSON_GetObjectItemCaseSensitive(cal, "method");
    fo = cJSON_GetObjectItemCaseSensitive(cal, "findings");
    if (!cJSON_IsObject(cal) || !cJSON_IsString(method) || strcmp(method->valuestring, "platt") ||
        !cJSON_IsObject(fo)) {
        st = rd_error_set(err, RD_E_CONFIG,
                          "%s: calibration must be {\"method\": \"platt\", \"findings\": {...}}",
                          origin);
        goto out;
    }
    memset(&tmp, 0, sizeof tmp);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        const char *name = rd_finding_name((rd_finding)f);
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(fo, name);
        if (!cJSON_IsObject(o)) {
            st = rd_error_set(err, RD_E_CONFIG, "%s: calibration: no entry for %s", origin, name);
            goto out;
        }
        if ((st = read_coef(o, "a", name, origin, &tmp.a[f], err)) != RD_OK ||
            (st = read_coef(o, "b", name, origin, &tmp.b[f], err)) != RD_OK)
            goto out;
        if (!(tmp.a[f] > 0)) {
            /* A non-positive slope would reverse or flatten the ranking. */
            st = rd_error_set(err, RD_E_CONFIG, "%s: calibration: %s: the slope a must be > 0",
                              origin, name);
            goto out;
        }
    }
    tmp.enabled = 1;
    *out = tmp;
out:
    cJSON_Delete(root);
    return st;
}

double rd_calibration_prob(const rd_calibration *c, int f, double s)
{
    if (!c || !c->enabled || f < 0 || f >= RD_FINDING_N_ABNORMAL)
        return s;
    s = s < SCORE_EPS ? SCORE_EPS : s > 1 - SCORE_EPS ? 1 - SCORE_EPS : s;
    double z = c->a[f] * log(s / (1 - s)) + c->b[f];
    return 1 / (1 + exp(-z));
}

void rd_calibration_apply(const rd_calibration *c, double scores[RD_FINDING_N_ABNORMAL])
{
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        scores[f] = rd_calibration_prob(c, f, scores[f]);
}
