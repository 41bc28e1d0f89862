/* radraft evaluate: per-finding AUROC of a predictions CSV (radraft predict) against a labels
 * CSV in the NIH format, optionally restricted to a set of patients (a model's validation
 * split), so that a model card's numbers are reproduced by one command. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "radraft/findings.h"
#include "radraft/nn.h"
#include "radraft/train.h"
#include "base/util.h"

static const char help[] =
    "usage: radraft evaluate --labels LABELS.csv PREDICTIONS.csv [--json]\n"
    "                        [--patients FILE | --split-from MODEL] [--min-positives N]\n"
    "                        [--bootstrap N] [--calibrate MODEL [--write] [--own-thresholds N]]\n"
    "Measures finding scores against labels: per finding the AUROC with its numbers of\n"
    "positive and negative images, the mean AUROC over the findings with at least N positives\n"
    "(default 5) and the mean over every finding with both classes.\n"
    "LABELS.csv is in the NIH format (header image,patient_id,view,age,sex,labels; labels\n"
    "'|'-separated finding names or \"No Finding\"). PREDICTIONS.csv is what radraft predict\n"
    "writes (header path,<finding>,...). Rows are matched by file name: the last component of\n"
    "the prediction's path against the labels' image column.\n\n"
    "  --labels FILE       the labels CSV (required)\n"
    "  --patients FILE     count only images of these patients (one patient id per line)\n"
    "  --split-from MODEL  count only the held-out patients of MODEL's training split\n"
    "                      (model folder or model.json: training.split.holdout_patient_ids\n"
    "                      when the model was trained with --folds, else val_patient_ids)\n"
    "  --bootstrap N       95% intervals of every AUROC and of the mean from N resamplings\n"
    "                      of the patients (needs the labels' patient_id column)\n"
    "  --calibrate MODEL   fit MODEL's calibration (Platt per finding) and thresholds on these\n"
    "                      images: PREDICTIONS.csv must hold uncalibrated scores (radraft\n"
    "                      predict --uncalibrated). \"uncertain\" maximizes F1 (a draft\n"
    "                      mentions the finding above it), \"present\" F0.5, both pooled over\n"
    "                      every finding's calibrated probabilities (one pair for all). The\n"
    "                      figures printed are cross-fitted over two halves of the patients\n"
    "  --own-thresholds N  a finding with at least N positives gets thresholds of its own\n"
    "                      (default 0: none; the pooled pair did better end to end)\n"
    "  --write             with --calibrate: write the calibration and thresholds into MODEL\n"
    "  --min-positives N   findings with fewer positives are left out of the mean (default 5)\n"
    "  --json              print one JSON object instead of the table\n" RD_CLI_COMMON_HELP;

#define EV_MAX_CSV_BYTES (1024u << 20) /* 1 GiB: the full NIH list is 7 MB */
#define EV_MAX_ROWS 20000000
#define EV_MAX_FIELDS 64
#define EV_MAX_ID 256

#define NF RD_FINDING_N_ABNORMAL

typedef struct label_row {
    const char *name;    /* the image's file name (points into the CSV text) */
    const char *patient; /* "" when the CSV has no patient_id column */
    uint16_t bits;       /* bit f: finding f present */
    int line;
    int used; /* a prediction matched it */
} label_row;

typedef struct pred_row {
    const char *path;
    float score[NF];
    int line;
} pred_row;

/* Reads one CSV record in place from *cur (RFC 4180 quoting: a quoted field may hold commas,
 * doubled quotes and line breaks). Returns 1 with the fields in f[0..*nf), 0 at the end of
 * the text, -1 on a malformed record (more than `max` fields, an unterminated quote, text
 * after a closing quote). *lines gets the number of line breaks consumed. */
static int csv_next(char **cur, char **f, int max, int *nf, int *lines)
{
    char *r = *cur, *w;
    int n = 0;
    *lines = 0;
    if (!*r)
        return 0;
    for (;;) {
        char c;
        if (n == max)
            return -1;
        f[n++] = w = r;
        if (*r == '"') {
            r++;
            for (;;) {
                if (!*r)
                    return -1;
                if (*r == '"') {
                    if (r[1] == '"') {
                        *w++ = '"';
                        r += 2;
                        continue;
                    }
                    r++;
                    break;
                }
                if (*r == '\n')
                    (*lines)++;
                *w++ = *r++;
            }
            if (*r == '\r')
                r++;
            if (*r && *r != ',' && *r != '\n')
                return -1;
        } else {
            while (*r && *r != ',' && *r != '\n')
                *w++ = *r++;
            if (*r != ',' && w > f[n - 1] && w[-1] == '\r')
                w--;
        }
        c = *r;
        *w = '\0'; /* may overwrite the separator at r: it was saved in c */
        if (c == ',') {
            r++;
            continue;
        }
        if (c == '\n') {
            r++;
            (*lines)++;
        }
        break;
    }
    *cur = r;
    *nf = n;
    return 1;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const label_row *)a)->name, ((const label_row *)b)->name);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Grows an array of `size`-byte elements to hold at least n + 1, up to EV_MAX_ROWS. */
static int grow(void **p, int *cap, int n, size_t size)
{
    void *np;
    int nc;
    if (n < *cap)
        return 0;
    nc = *cap ? 2 * *cap : 1024;
    if (nc > EV_MAX_ROWS || !(np = realloc(*p, (size_t)nc * size)))
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

/* Parses the labels CSV (text is kept: the rows point into it). */
static rd_status load_labels(const char *path, char *text, label_row **out, int *n_out,
                             int *has_patient, rd_error *err)
{
    char *cur = text, *f[EV_MAX_FIELDS];
    int nf, nl, line = 1, ncols = -1, c_image = -1, c_patient = -1, c_labels = -1, n = 0, cap = 0;
    label_row *rows = NULL;
    rd_status st = RD_OK;
    int r;

    while ((r = csv_next(&cur, f, EV_MAX_FIELDS, &nf, &nl)) == 1) {
        int this_line = line;
        line += nl;
        if (nf == 1 && !f[0][0])
            continue;
        if (ncols < 0) {
            for (int i = 0; i < nf; i++) {
                if (strcmp(f[i], "image") == 0)
                    c_image = i;
                else if (strcmp(f[i], "patient_id") == 0)
                    c_patient = i;
                else if (strcmp(f[i], "labels") == 0)
                    c_labels = i;
            }
            if (c_image < 0 || c_labels < 0) {
                st = rd_error_set(err, RD_E_INVALID,
                                  "%s: the header must name the columns image and labels (NIH "
                                  "format: image,patient_id,view,age,sex,labels)",
                                  path);
                goto out;
            }
            ncols = nf;
            continue;
        }
        if (nf != ncols) {
            st = rd_error_set(err, RD_E_INVALID, "%s:%d: %d fields, the header has %d", path,
                              this_line, nf, ncols);
            goto out;
        }
        if (!f[c_image][0]) {
            st = rd_error_set(err, RD_E_INVALID, "%s:%d: no image name", path, this_line);
            goto out;
        }
        uint16_t bits = 0;
        for (char *lab = f[c_labels], *bar; lab && *lab; lab = bar) {
            rd_finding fi;
            bar = strchr(lab, '|');
            if (bar)
                *bar++ = '\0';
            if (!lab[0] || strcmp(lab, "No Finding") == 0)
                continue;
            if (rd_finding_from_name(lab, &fi, NULL) != RD_OK || (int)fi >= NF) {
                st = rd_error_set(err, RD_E_INVALID, "%s:%d: unknown finding '%.64s'", path,
                                  this_line, lab);
                goto out;
            }
            bits |= (uint16_t)(1u << fi);
        }
        if (grow((void **)&rows, &cap, n, sizeof *rows) != 0) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "%s: too many rows", path);
            goto out;
        }
        rows[n].name = base_name(f[c_image]);
        rows[n].patient = c_patient >= 0 ? f[c_patient] : "";
        rows[n].bits = bits;
        rows[n].line = this_line;
        rows[n].used = 0;
        n++;
    }
    if (r < 0) {
        st = rd_error_set(err, RD_E_INVALID, "%s:%d: malformed CSV record", path, line);
        goto out;
    }
    if (ncols < 0) {
        st = rd_error_set(err, RD_E_INVALID, "%s: empty (no header)", path);
        goto out;
    }
    qsort(rows, (size_t)n, sizeof *rows, cmp_label);
    for (int i = 1; i < n; i++)
        if (strcmp(rows[i].name, rows[i - 1].name) == 0) {
            st = rd_error_set(
                err, RD_E_INVALID, "%s: image %.128s is listed twice (lines %d and %d)", path,
                rows[i].name, rows[i - 1].line < rows[i].line ? rows[i - 1].line : rows[i].line,
                rows[i - 1].line < rows[i].line ? rows[i].line : rows[i - 1].line);
            goto out;
        }
    *has_patient = c_patient >= 0;
out:
    if (st != RD_OK) {
        free(rows);
        return st;
    }
    *out = rows;
    *n_out = n;
    return RD_OK;
}

/* Parses the predictions CSV: "path" then the 14 findings (any order, each once). */
static rd_status load_predictions(const char *path, char *text, pred_row **out, int *n_out,
                                  rd_error *err)
{
    char *cur = text, *f[EV_MAX_FIELDS];
    int nf, nl, line = 1, ncols = -1, col_finding[EV_MAX_FIELDS], n = 0, cap = 0, r;
    pred_row *rows = NULL;
    rd_status st = RD_OK;

    while ((r = csv_next(&cur, f, EV_MAX_FIELDS, &nf, &nl)) == 1) {
        int this_line = line;
        line += nl;
        if (nf == 1 && !f[0][0])
            continue;
        if (ncols < 0) {
            int seen[NF] = {0};
            if (strcmp(f[0], "path") != 0) {
                st = rd_error_set(err, RD_E_INVALID,
                                  "%s: the header must begin with \"path\" (as radraft predict "
                                  "writes: path,Atelectasis,...,Hernia)",
                                  path);
                goto out;
            }
            for (int i = 1; i < nf; i++) {
                rd_finding fi;
                if (rd_finding_from_name(f[i], &fi, NULL) != RD_OK || (int)fi >= NF) {
                    st = rd_error_set(err, RD_E_INVALID,
                                      "%s: header column %d '%.64s' is not a finding of the "
                                      "vocabulary",
                                      path, i + 1, f[i]);
                    goto out;
                }
                if (seen[fi]++) {
                    st = rd_error_set(err, RD_E_INVALID, "%s: header names %s twice", path,
                                      rd_finding_name(fi));
                    goto out;
                }
                col_finding[i] = (int)fi;
            }
            for (int k = 0; k < NF; k++)
                if (!seen[k]) {
                    st = rd_error_set(err, RD_E_INVALID, "%s: the header has no column %s", path,
                                      rd_finding_name((rd_finding)k));
                    goto out;
                }
            ncols = nf;
            continue;
        }
        if (nf != ncols) {
            st = rd_error_set(err, RD_E_INVALID, "%s:%d: %d fields, the header has %d", path,
                              this_line, nf, ncols);
            goto out;
        }
        if (grow((void **)&rows, &cap, n, sizeof *rows) != 0) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "%s: too many rows", path);
            goto out;
        }
        pred_row *p = &rows[n];
        p->path = f[0];
        p->line = this_line;
        for (int i = 1; i < nf; i++) {
            char *end;
            double v = strtod(f[i], &end);
            if (end == f[i] || *end || !isfinite(v) || fabs(v) > 1e30) {
                st = rd_error_set(err, RD_E_INVALID, "%s:%d: column %d: '%.32s' is not a score",
                                  path, this_line, i + 1, f[i]);
                goto out;
            }
            p->score[col_finding[i]] = (float)v;
        }
        n++;
    }
    if (r < 0) {
        st = rd_error_set(err, RD_E_INVALID, "%s:%d: malformed CSV record", path, line);
        goto out;
    }
    if (ncols < 0) {
        st = rd_error_set(err, RD_E_INVALID, "%s: empty (no header)", path);
        goto out;
    }
out:
    if (st != RD_OK) {
        free(rows);
        return st;
    }
    *out = rows;
    *n_out = n;
    return RD_OK;
}

/* The patient set: one id per line of a text file (blank lines and '#' comments skipped).
 * The ids point into `text`; *ids is sorted. */
static rd_status load_patient_file(const char *path, char *text, const char ***ids, int *n_ids,
                                   rd_error *err)
{
    int n = 0, cap = 0, line = 0;
    const char **v = NULL;
    char *next;
    for (char *s = text; s && *s; s = next) {
        next = strchr(s, '\n');
        if (next)
            *next++ = '\0';
        line++;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t len = strlen(s);
        while (len && (s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t'))
            s[--len] = '\0';
        if (!len || s[0] == '#')
            continue;
        if (len > EV_MAX_ID) {
            free(v);
            return rd_error_set(err, RD_E_INVALID, "%s:%d: patient id longer than %d bytes", path,
                                line, EV_MAX_ID);
        }
        if (grow((void **)&v, &cap, n, sizeof *v) != 0) {
            free(v);
            return rd_error_set(err, RD_E_TOO_LARGE, "%s: too many patient ids", path);
        }
        v[n++] = s;
    }
    if (n == 0) {
        free(v);
        return rd_error_set(err, RD_E_INVALID, "%s: no patient id", path);
    }
    qsort(v, (size_t)n, sizeof *v, cmp_cstr);
    *ids = v;
    *n_ids = n;
    return RD_OK;
}

/* The validation patients of a model's training split; the ids point into *doc. */
static rd_status load_split(const char *model, cJSON **doc, const char ***ids, int *n_ids,
                            char *json_path, size_t json_path_size, rd_error *err)
{
    char *text = NULL;
    size_t len = 0;
    const cJSON *arr, *v;
    const char **out = NULL;
    int n = 0;
    rd_status st;

    if ((st = rd_nn_model_json_path(model, json_path, json_path_size, err)) != RD_OK ||
        (st = rd_nn_model_read_json(model, &text, &len, err)) != RD_OK)
        return st;
    *doc = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*doc)
        return rd_error_set(err, RD_E_INVALID, "%s: not valid JSON", json_path);
    {
        const cJSON *split = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(*doc, "training"), "split");
        /* A k-fold model's holdout was never trained on nor chosen on; it comes first. */
        arr = cJSON_GetObjectItemCaseSensitive(split, "holdout_patient_ids");
        if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
            arr = cJSON_GetObjectItemCaseSensitive(split, "val_patient_ids");
    }
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        return rd_error_set(err, RD_E_INVALID,
                            "%s: no training.split.holdout_patient_ids or val_patient_ids (a "
                            "model written by radraft train has them)",
                            json_path);
    if (!(out = calloc((size_t)cJSON_GetArraySize(arr), sizeof *out)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    cJSON_ArrayForEach(v, arr)
    {
        if (!cJSON_IsString(v)) {
            free(out);
            return rd_error_set(err, RD_E_INVALID, "%s: a patient id list holds a non-string",
                                json_path);
        }
        out[n++] = v->valuestring;
    }
    qsort(out, (size_t)n, sizeof *out, cmp_cstr);
    *ids = out;
    *n_ids = n;
    return RD_OK;
}

static void json_number_or_null(cJSON *o, const char *name, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

/* The matched images as arrays: scores (matched x 14), label bits and a patient index (into
 * the distinct patients, in id order). Returns -1 when out of memory. */
static int matched_arrays(const pred_row *preds, int n_preds, const label_row *labels,
                          const int *match, int matched, float **scores, uint16_t **bits,
                          int **patient, int *n_patients)
{
    const char **ids = malloc(((size_t)matched + 1) * sizeof *ids);
    int m = 0, u = 0;
    *scores = malloc(((size_t)matched + 1) * NF * sizeof **scores);
    *bits = malloc(((size_t)matched + 1) * sizeof **bits);
    *patient = malloc(((size_t)matched + 1) * sizeof **patient);
    if (!ids || !*scores || !*bits || !*patient) {
        free(ids);
        return -1;
    }
    for (int i = 0; i < n_preds; i++)
        if (match[i] >= 0)
            ids[m++] = labels[match[i]].patient;
    qsort(ids, (size_t)m, sizeof *ids, cmp_cstr);
    for (int i = 0; i < m; i++)
        if (u == 0 || strcmp(ids[u - 1], ids[i]) != 0)
            ids[u++] = ids[i];
    m = 0;
    for (int i = 0; i < n_preds; i++) {
        if (match[i] < 0)
            continue;
        const label_row *l = &labels[match[i]];
        const char **hit = bsearch(&l->patient, ids, (size_t)u, sizeof *ids, cmp_cstr);
        memcpy(*scores + (size_t)m * NF, preds[i].score, NF * sizeof(float));
        (*bits)[m] = l->bits;
        (*patient)[m] = (int)(hit - ids);
        m++;
    }
    *n_patients = u;
    free(ids);
    return 0;
}

static cJSON *calib_json(const rd_calib_report *r, int images, int patients)
{
    cJSON *o = cJSON_CreateObject(), *fo;
    cJSON_AddStringToObject(o, "method", "platt");
    cJSON_AddStringToObject(o, "fitted_on", "held-out patients (radraft evaluate --calibrate)");
    cJSON_AddNumberToObject(o, "images", images);
    cJSON_AddNumberToObject(o, "patients", patients);
    fo = cJSON_AddObjectToObject(o, "findings");
    for (int f = 0; f < NF; f++) {
        const rd_calib_finding *c = &r->f[f];
        cJSON *e = cJSON_AddObjectToObject(fo, rd_finding_name((rd_finding)f));
        cJSON_AddNumberToObject(e, "a", c->a);
        cJSON_AddNumberToObject(e, "b", c->b);
        cJSON_AddNumberToObject(e, "positives", c->positives);
        json_number_or_null(e, "ece_uncalibrated", c->ece_raw);
        json_number_or_null(e, "ece_calibrated", c->ece_cal);
        json_number_or_null(e, "f1", c->f1);
        json_number_or_null(e, "f1_pooled_threshold", c->f1_global);
        cJSON_AddNumberToObject(e, "uncertain", c->uncertain);
        cJSON_AddNumberToObject(e, "present", c->present);
        cJSON_AddBoolToObject(e, "pooled_thresholds", c->rule_global);
    }
    cJSON *x = cJSON_AddObjectToObject(o, "cross_fitted");
    json_number_or_null(x, "micro_f1", r->micro_f1);
    json_number_or_null(x, "macro_f1", r->macro_f1);
    json_number_or_null(x, "micro_f1_pooled_threshold", r->micro_f1_global);
    json_number_or_null(x, "macro_f1_pooled_threshold", r->macro_f1_global);
    cJSON_AddNumberToObject(x, "mentions_per_image", r->mentions_per_image);
    cJSON_AddNumberToObject(x, "labels_per_image", r->labels_per_image);
    cJSON_AddNumberToObject(o, "pooled_uncertain", r->global_uncertain);
    cJSON_AddNumberToObject(o, "pooled_present", r->global_present);
    cJSON_AddNumberToObject(o, "min_positives", r->min_positives);
    return o;
}

static void print_calibration(const rd_calib_report *r, int images, int patients)
{
    printf("\ncalibration (Platt per finding) and thresholds on %d images of %d patients;\n"
           "ECE and F1 cross-fitted over two halves of the patients\n",
           images, patients);
    printf("%-20s %5s %7s %7s %8s %8s %9s %8s %6s %6s\n", "finding", "pos", "a", "b", "ECE raw",
           "ECE cal", "uncertain", "present", "F1", "F1 pool");
    for (int f = 0; f < NF; f++) {
        const rd_calib_finding *c = &r->f[f];
        printf("%-20s %5d %7.3f %7.3f %8.4f %8.4f %9.4f %8.4f %6.3f %6.3f%s\n",
               rd_finding_name((rd_finding)f), c->positives, c->a, c->b, c->ece_raw, c->ece_cal,
               c->uncertain, c->present, c->f1, c->f1_global,
               c->rule_global ? "  (pooled thresholds)" : "");
    }
    printf("cross-fitted: micro-F1 %.4f, macro-F1 %.4f (the thresholds as fitted); micro-F1 %.4f, "
           "macro-F1 %.4f (one pooled pair for all findings); findings called per image %.2f, "
           "labelled %.2f\n",
           r->micro_f1, r->macro_f1, r->micro_f1_global, r->macro_f1_global, r->mentions_per_image,
           r->labels_per_image);
}

/* Writes the fit into the model description: "calibration" and "thresholds" (on the
 * calibrated scale), and how they were chosen under metrics. */
static rd_status write_calibration(const char *model, const rd_calib_report *r, int images,
                                   int patients, rd_error *err)
{
    char path[4200], *text = NULL, *out = NULL;
    size_t len = 0;
    cJSON *doc = NULL, *th, *metrics;
    rd_status st;
    if ((st = rd_nn_model_json_path(model, path, sizeof path, err)) != RD_OK ||
        (st = rd_nn_model_read_json(model, &text, &len, err)) != RD_OK)
        return st;
    doc = cJSON_ParseWithLength(text, len);
    free(text);
    if (!doc)
        return rd_error_set(err, RD_E_INVALID, "%s: not valid JSON", path);
    cJSON *cal = calib_json(r, images, patients);
    th = cJSON_CreateObject();
    for (int f = 0; f < NF; f++) {
        cJSON *e = cJSON_AddObjectToObject(th, rd_finding_name((rd_finding)f));
        cJSON_AddNumberToObject(e, "present", r->f[f].present);
        cJSON_AddNumberToObject(e, "uncertain", r->f[f].uncertain);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "calibration");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "thresholds");
    cJSON_AddItemToObject(doc, "calibration", cal);
    cJSON_AddItemToObject(doc, "thresholds", th);
    metrics = cJSON_GetObjectItemCaseSensitive(doc, "metrics");
    if (!cJSON_IsObject(metrics))
        metrics = cJSON_AddObjectToObject(doc, "metrics");
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "thresholds_rule");
    cJSON_AddStringToObject(metrics, "thresholds_rule",
                            "on the calibrated probability, fitted on held-out patients: "
                            "uncertain where F1 is highest, present where F0.5 is highest (not "
                            "below uncertain), over every finding's probabilities pooled, "
                            "except findings with their own (radraft evaluate --calibrate "
                            "--own-thresholds)");
    if (!(out = cJSON_Print(doc))) {
        cJSON_Delete(doc);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
    cJSON_Delete(doc);
    st = rd_write_file_atomic(path, out, strlen(out), err);
    cJSON_free(out);
    return st;
}

int rd_cmd_evaluate(int argc, char **argv)
{
    enum {
        OPT_LABELS = RD_OPT_FIRST_PRIVATE,
        OPT_PATIENTS,
        OPT_SPLIT_FROM,
        OPT_MIN_POS,
        OPT_JSON,
        OPT_BOOTSTRAP,
        OPT_CALIBRATE,
        OPT_WRITE,
        OPT_OWN_THRESHOLDS
    };
    static const struct option opts[] = {
        {"labels", required_argument, NULL, OPT_LABELS},
        {"patients", required_argument, NULL, OPT_PATIENTS},
        {"split-from", required_argument, NULL, OPT_SPLIT_FROM},
        {"min-positives", required_argument, NULL, OPT_MIN_POS},
        {"json", no_argument, NULL, OPT_JSON},
        {"bootstrap", required_argument, NULL, OPT_BOOTSTRAP},
        {"calibrate", required_argument, NULL, OPT_CALIBRATE},
        {"write", no_argument, NULL, OPT_WRITE},
        {"own-thresholds", required_argument, NULL, OPT_OWN_THRESHOLDS},
        RD_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    const char *labels_path = NULL, *pred_path, *patients_path = NULL, *split_model = NULL;
    char *labels_text = NULL, *pred_text = NULL, *pat_text = NULL, json_path[4200] = "";
    size_t len;
    label_row *labels = NULL;
    pred_row *preds = NULL;
    int n_labels = 0, n_preds = 0, has_patient = 0, as_json = 0, opt, rc;
    const char **pids = NULL;
    int n_pids = 0;
    cJSON *doc = NULL;
    long min_pos = 5, boot = 0, own_th = 0;
    const char *cal_model = NULL;
    int cal_write = 0;
    float *mscores = NULL;
    uint16_t *mbits = NULL;
    int *mpat = NULL, n_mpat = 0;
    rd_auroc_interval ci[NF + 1];
    int *match = NULL; /* per prediction: index of its label row, -1 none */
    float *col = NULL;
    unsigned char *lab = NULL;

    rd_cli_init(&cli, "radraft evaluate");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_LABELS:
            labels_path = optarg;
            break;
        case OPT_PATIENTS:
            patients_path = optarg;
            break;
        case OPT_SPLIT_FROM:
            split_model = optarg;
            break;
        case OPT_MIN_POS:
            if (rd_cli_parse_int(&cli, "--min-positives", optarg, 1, 1000000, &min_pos))
                return RD_EXIT_USAGE;
            break;
        case OPT_JSON:
            as_json = 1;
            break;
        case OPT_BOOTSTRAP:
            if (rd_cli_parse_int(&cli, "--bootstrap", optarg, 10, 100000, &boot))
                return RD_EXIT_USAGE;
            break;
        case OPT_CALIBRATE:
            cal_model = optarg;
            break;
        case OPT_WRITE:
            cal_write = 1;
            break;
        case OPT_OWN_THRESHOLDS:
            if (rd_cli_parse_int(&cli, "--own-thresholds", optarg, 0, 1000000000, &own_th))
                return RD_EXIT_USAGE;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (!labels_path || optind != argc - 1)
        return rd_cli_usage_error(&cli, help, "%s",
                                  !labels_path ? "--labels FILE is required"
                                               : "give exactly one PREDICTIONS.csv");
    if (patients_path && split_model) {
        rd_cli_error(&cli, "--patients and --split-from exclude each other");
        return RD_EXIT_USAGE;
    }
    if (cal_write && !cal_model) {
        rd_cli_error(&cli, "--write needs --calibrate MODEL");
        return RD_EXIT_USAGE;
    }
    pred_path = argv[optind];
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    rc = RD_EXIT_FAIL; /* what `goto out` and `goto fail` return until the results print */

    if (rd_read_file(labels_path, EV_MAX_CSV_BYTES, &labels_text, &len, &err) != RD_OK ||
        load_labels(labels_path, labels_text, &labels, &n_labels, &has_patient, &err) != RD_OK ||
        rd_read_file(pred_path, EV_MAX_CSV_BYTES, &pred_text, &len, &err) != RD_OK ||
        load_predictions(pred_path, pred_text, &preds, &n_preds, &err) != RD_OK)
        goto fail;
    if (patients_path &&
        (rd_read_file(patients_path, EV_MAX_CSV_BYTES, &pat_text, &len, &err) != RD_OK ||
         load_patient_file(patients_path, pat_text, &pids, &n_pids, &err) != RD_OK))
        goto fail;
    if (split_model &&
        load_split(split_model, &doc, &pids, &n_pids, json_path, sizeof json_path, &err) != RD_OK)
        goto fail;
    if (pids && !has_patient) {
        rd_cli_error(&cli, "%s: no patient_id column, so it cannot be restricted to patients",
                     labels_path);
        goto out;
    }

    /* Match every prediction to its labelled image by file name. */
    int matched = 0, unlabelled = 0, outside = 0;
    if (!(match = malloc(((size_t)n_preds + 1) * sizeof *match))) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    for (int i = 0; i < n_preds; i++) {
        label_row key = {0};
        label_row *l;
        key.name = base_name(preds[i].path);
        match[i] = -1;
        l = n_labels ? bsearch(&key, labels, (size_t)n_labels, sizeof *labels, cmp_label) : NULL;
        if (!l) {
            unlabelled++;
            continue;
        }
        if (l->used) {
            rd_cli_error(&cli,
                         "%s:%d: a second prediction for image %.128s (file names must be "
                         "unique)",
                         pred_path, preds[i].line, l->name);
            goto out;
        }
        l->used = 1;
        if (pids && !bsearch(&l->patient, pids, (size_t)n_pids, sizeof *pids, cmp_cstr)) {
            outside++;
            continue;
        }
        match[i] = (int)(l - labels);
        matched++;
    }
    if (matched == 0) {
        if (n_preds - unlabelled == 0)
            rd_cli_error(&cli,
                         "no prediction matches a labelled image: %d predictions, %d labelled "
                         "images (file names of %s%s%s vs the image column of %s)",
                         n_preds, n_labels, pred_path, n_preds ? ", e.g. " : "",
                         n_preds ? base_name(preds[0].path) : "", labels_path);
        else
            rd_cli_error(&cli, "none of the %d matched images belongs to the %d patients given",
                         n_preds - unlabelled, n_pids);
        goto out;
    }
    col = malloc((size_t)matched * sizeof *col);
    lab = malloc((size_t)matched);
    if (!col || !lab) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    if ((boot || cal_model) && !has_patient) {
        rd_cli_error(&cli, "%s: no patient_id column: --bootstrap and --calibrate work by patient",
                     labels_path);
        goto out;
    }
    if ((boot || cal_model) && matched_arrays(preds, n_preds, labels, match, matched, &mscores,
                                              &mbits, &mpat, &n_mpat) != 0) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    double auroc[NF], sum_main = 0, sum_all = 0;
    int pos[NF], neg[NF], n_main = 0, n_all = 0;
    for (int f = 0; f < NF; f++) {
        int m = 0;
        pos[f] = 0;
        for (int i = 0; i < n_preds; i++) {
            if (match[i] < 0)
                continue;
            col[m] = preds[i].score[f];
            lab[m] = (unsigned char)((labels[match[i]].bits >> f) & 1u);
            pos[f] += lab[m];
            m++;
        }
        neg[f] = m - pos[f];
        auroc[f] = rd_auroc(col, lab, m);
        if (isfinite(auroc[f])) {
            sum_all += auroc[f];
            n_all++;
            if (pos[f] >= min_pos) {
                sum_main += auroc[f];
                n_main++;
            }
        }
    }
    double mean_main = n_main ? sum_main / n_main : NAN, mean_all = n_all ? sum_all / n_all : NAN;
    if (boot && rd_auroc_bootstrap(mscores, mbits, mpat, matched, n_mpat, (int)boot, 1,
                                   (int)min_pos, ci, &err) != RD_OK)
        goto fail;
    rd_calib_report cr;
    if (cal_model && rd_calib_fit(mscores, mbits, mpat, matched, own_th > 0 ? (int)own_th : INT_MAX,
                                  &cr, &err) != RD_OK)
        goto fail;
    int not_predicted = n_labels;
    for (int i = 0; i < n_labels; i++)
        not_predicted -= labels[i].used;

    if (as_json) {
        cJSON *o = cJSON_CreateObject(), *fa;
        char *s;
        if (!o) {
            rd_cli_error(&cli, "out of memory");
            goto out;
        }
        cJSON_AddStringToObject(o, "labels", labels_path);
        cJSON_AddStringToObject(o, "predictions", pred_path);
        cJSON_AddNumberToObject(o, "predicted", n_preds);
        cJSON_AddNumberToObject(o, "labelled", n_labels);
        cJSON_AddNumberToObject(o, "matched", matched);
        cJSON_AddNumberToObject(o, "without_labels", unlabelled);
        cJSON_AddNumberToObject(o, "not_predicted", not_predicted);
        if (pids) {
            cJSON *r = cJSON_AddObjectToObject(o, "patients");
            cJSON_AddStringToObject(r, "from", split_model ? json_path : patients_path);
            cJSON_AddNumberToObject(r, "count", n_pids);
            cJSON_AddNumberToObject(r, "left_out", outside);
        }
        fa = cJSON_AddArrayToObject(o, "findings");
        for (int f = 0; f < NF; f++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddItemToArray(fa, e);
            cJSON_AddStringToObject(e, "finding", rd_finding_name((rd_finding)f));
            cJSON_AddNumberToObject(e, "positives", pos[f]);
            cJSON_AddNumberToObject(e, "negatives", neg[f]);
            json_number_or_null(e, "auroc", auroc[f]);
            if (boot) {
                json_number_or_null(e, "auroc_ci_lo", ci[f].lo);
                json_number_or_null(e, "auroc_ci_hi", ci[f].hi);
            }
        }
        if (boot) {
            cJSON *b = cJSON_AddObjectToObject(o, "bootstrap");
            cJSON_AddNumberToObject(b, "replicates", (double)boot);
            cJSON_AddStringToObject(b, "over", "patients");
            json_number_or_null(b, "mean_auroc_ci_lo", ci[NF].lo);
            json_number_or_null(b, "mean_auroc_ci_hi", ci[NF].hi);
        }
        if (cal_model)
            cJSON_AddItemToObject(o, "calibration", calib_json(&cr, matched, n_mpat));
        cJSON_AddNumberToObject(o, "min_positives", (double)min_pos);
        json_number_or_null(o, "mean_auroc", mean_main);
        cJSON_AddNumberToObject(o, "mean_auroc_findings", n_main);
        json_number_or_null(o, "mean_auroc_all", mean_all);
        cJSON_AddNumberToObject(o, "mean_auroc_all_findings", n_all);
        s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!s) {
            rd_cli_error(&cli, "out of memory");
            goto out;
        }
        puts(s);
        free(s);
    } else {
        printf("matched %d of %d predictions to labels (%d without labels); %d of %d labelled "
               "images not predicted\n",
               matched + outside, n_preds, unlabelled, not_predicted, n_labels);
        if (pids)
            printf("restricted to the %d patients of %s: %d images evaluated, %d left out\n",
                   n_pids, split_model ? json_path : patients_path, matched, outside);
        printf("%-20s %9s %9s %8s\n", "finding", "positives", "negatives", "AUROC");
        for (int f = 0; f < NF; f++) {
            printf("%-20s %9d %9d ", rd_finding_name((rd_finding)f), pos[f], neg[f]);
            if (isfinite(auroc[f])) {
                printf("%8.4f", auroc[f]);
                if (boot)
                    printf("  [%.3f, %.3f]", ci[f].lo, ci[f].hi);
                printf("%s\n", pos[f] < min_pos
                                   ? "  (fewer than the minimum positives: not in the mean)"
                                   : "");
            } else {
                printf("%8s\n", "n/a");
            }
        }
        if (n_main && boot)
            printf("mean AUROC over the %d findings with >= %ld positives: %.4f [%.3f, %.3f] "
                   "(95%% interval, %ld bootstrap resamplings of the %d patients)\n",
                   n_main, min_pos, mean_main, ci[NF].lo, ci[NF].hi, boot, n_mpat);
        else if (n_main)
            printf("mean AUROC over the %d findings with >= %ld positives: %.4f\n", n_main, min_pos,
                   mean_main);
        else
            printf("mean AUROC over the findings with >= %ld positives: n/a (none)\n", min_pos);
        if (n_all)
            printf("mean AUROC over the %d findings with positives and negatives: %.4f\n", n_all,
                   mean_all);
        else
            printf("mean AUROC over the findings with positives and negatives: n/a (none)\n");
    }
    if (cal_model && !as_json)
        print_calibration(&cr, matched, n_mpat);
    if (cal_write && write_calibration(cal_model, &cr, matched, n_mpat, &err) != RD_OK)
        goto fail;
    if (cal_write && !as_json)
        printf("wrote the calibration and thresholds into %s\n", cal_model);
    fflush(stdout);
    rc = RD_EXIT_OK;
    goto out;
fail:
    rd_cli_error(&cli, "%s", rd_error_message(&err));
out:
    free(match);
    free(mscores);
    free(mbits);
    free(mpat);
    free(col);
    free(lab);
    free(pids);
    cJSON_Delete(doc);
    free(labels);
    free(preds);
    free(labels_text);
    free(pred_text);
    free(pat_text);
    return rc;
}
