/* radraft — the labeler's JSON Lines interface and its evaluation against expert labels. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/lines.h"
#include "radraft/labeler.h"
#include "base/util.h"

#define EVAL_MAX_ROWS 1000000
#define EVAL_ID_MAX 128

rd_status rd_labeler_label_json(const rd_labeler *lab, const char *line, char *id_out,
                                size_t id_size, rd_labels *out, rd_error *err)
{
    cJSON *root = cJSON_Parse(line);
    const cJSON *id, *fi, *im;
    rd_status st = RD_OK;

    if (!root)
        return rd_error_set(err, RD_E_INVALID, "not valid JSON");
    if (!cJSON_IsObject(root)) {
        st = rd_error_set(err, RD_E_INVALID, "not a JSON object");
        goto out;
    }
    id = cJSON_GetObjectItemCaseSensitive(root, "id");
    fi = cJSON_GetObjectItemCaseSensitive(root, "findings");
    im = cJSON_GetObjectItemCaseSensitive(root, "impression");
    if (cJSON_IsString(id)) {
        rd_strlcpy(id_out, id->valuestring, id_size);
    } else if (cJSON_IsNumber(id)) {
        snprintf(id_out, id_size, "%.17g", id->valuedouble);
    } else {
        st = rd_error_set(err, RD_E_INVALID, "member \"id\" is missing or not a string");
        goto out;
    }
    if ((fi && !cJSON_IsString(fi) && !cJSON_IsNull(fi)) ||
        (im && !cJSON_IsString(im) && !cJSON_IsNull(im))) {
        st = rd_error_set(err, RD_E_INVALID, "\"findings\" and \"impression\" must be strings");
        goto out;
    }
    if (!cJSON_IsString(fi) && !cJSON_IsString(im)) {
        st = rd_error_set(err, RD_E_INVALID, "neither \"findings\" nor \"impression\" is given");
        goto out;
    }
    st = rd_labeler_label(lab, cJSON_IsString(fi) ? fi->valuestring : NULL,
                          cJSON_IsString(im) ? im->valuestring : NULL, out, err);
out:
    cJSON_Delete(root);
    return st;
}

rd_status rd_labels_write_json(FILE *fp, const char *id, const rd_labels *labels, rd_error *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *obj = NULL, *spec = NULL;
    char *text = NULL;
    rd_status st = RD_OK;

    if (!root || !cJSON_AddStringToObject(root, "id", id) ||
        !(obj = cJSON_AddObjectToObject(root, "findings"))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory writing labels");
        goto out;
    }
    for (int f = 0; f < RD_FINDING_COUNT; f++) {
        rd_finding_state s = labels->state[f];
        if (s == RD_STATE_NOT_MENTIONED)
            continue;
        if (!cJSON_AddStringToObject(obj, rd_finding_name((rd_finding)f), rd_state_name(s))) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory writing labels");
            goto out;
        }
    }
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        cJSON *name;
        if (!labels->speculative[f])
            continue;
        if ((!spec && !(spec = cJSON_AddArrayToObject(root, "speculative"))) ||
            !(name = cJSON_CreateString(rd_finding_name((rd_finding)f))) ||
            !cJSON_AddItemToArray(spec, name)) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory writing labels");
            goto out;
        }
    }
    text = cJSON_PrintUnformatted(root);
    if (!text) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory writing labels");
        goto out;
    }
    if (fprintf(fp, "%s\n", text) < 0)
        st = rd_error_set(err, RD_E_IO, "write error: %s", strerror(errno));
out:
    free(text);
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------------------- */

typedef struct gold_row {
    char id[EVAL_ID_MAX];
    unsigned char pos[RD_FINDING_COUNT];
} gold_row;

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const gold_row *)a)->id, ((const gold_row *)b)->id);
}

/* Splits a CSV line in place at commas (the gold files hold no quoted fields). Returns
 * the number of fields, at most `max`; more fields than that is -1. */
static int split_csv(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n >= max)
            return -1;
        fields[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return n;
}

static rd_status read_gold(const char *path, gold_row **rows_out, size_t *n_out,
                           int annotated[RD_FINDING_COUNT], int has_column[RD_FINDING_COUNT],
                           rd_error *err)
{
    enum { MAX_COLS = 64 };
    FILE *fp = fopen(path, "r");
    rd_line_reader r;
    gold_row *rows = NULL;
    size_t n = 0, cap = 0;
    int col_finding[MAX_COLS], ncols = 0, eof = 0;
    rd_status st = RD_OK;

    if (!fp)
        return rd_error_set(err, errno == ENOENT ? RD_E_NOT_FOUND : RD_E_IO, "%s: %s", path,
                            strerror(errno));
    rd_line_reader_init(&r, fp);
    memset(has_column, 0, sizeof(int) * RD_FINDING_COUNT);
    memset(annotated, 0, sizeof(int) * RD_FINDING_COUNT);
    for (;;) {
        char *fields[MAX_COLS];
        int nf;
        st = rd_line_read(&r, RD_LINE_MAX, &eof, err);
        if (st != RD_OK) {
            rd_error_prefix(err, st, "%s", path);
            goto out;
        }
        if (eof)
            break;
        if (r.len == 0)
            continue;
        nf = split_csv(r.buf, fields, MAX_COLS);
        if (ncols == 0) {
            /* The header: the first column is the id; the others name findings. */
            if (nf < 2) {
                st = rd_error_set(err, RD_E_CORRUPT, "%s:%ld: the header names no findings", path,
                                  r.lineno);
                goto out;
            }
            ncols = nf;
            for (int c = 1; c < nf; c++) {
                rd_finding f;
                col_finding[c] = -1;
                if (strcmp(fields[c], "normal") == 0)
                    f = RD_FINDING_NO_FINDING;
                else if (rd_finding_from_name(fields[c], &f, NULL) != RD_OK)
                    continue; /* a column radraft does not know is ignored */
                col_finding[c] = (int)f;
                has_column[f] = 1;
            }
            continue;
        }
        if (nf != ncols) {
            st = rd_error_set(err, RD_E_CORRUPT, "%s:%ld: %d fields, the header has %d", path,
                              r.lineno, nf < 0 ? MAX_COLS : nf, ncols);
            goto out;
        }
        if (n >= EVAL_MAX_ROWS) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "%s: more than %d rows", path, EVAL_MAX_ROWS);
            goto out;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 1024, bytes;
            gold_row *nr;
            if (!rd_mul_size(ncap, sizeof *nr, &bytes) || !(nr = realloc(rows, bytes))) {
                st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", path);
                goto out;
            }
            rows = nr;
            cap = ncap;
        }
        memset(&rows[n], 0, sizeof rows[n]);
        if (fields[0][0] == '\0' || strlen(fields[0]) >= EVAL_ID_MAX) {
            st = rd_error_set(err, RD_E_CORRUPT, "%s:%ld: bad id", path, r.lineno);
            goto out;
        }
        rd_strlcpy(rows[n].id, fields[0], EVAL_ID_MAX);
        for (int c = 1; c < nf; c++) {
            if (col_finding[c] < 0)
                continue;
            if (strcmp(fields[c], "1") == 0)
                rows[n].pos[col_finding[c]] = 1;
            else if (strcmp(fields[c], "0") != 0) {
                st = rd_error_set(err, RD_E_CORRUPT, "%s:%ld: column %d is '%.16s', not 0 or 1",
                                  path, r.lineno, c + 1, fields[c]);
                goto out;
            }
        }
        n++;
    }
    qsort(rows, n, sizeof *rows, row_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(rows[i - 1].id, rows[i].id) == 0) {
            st = rd_error_set(err, RD_E_CORRUPT, "%s: id '%s' appears twice", path, rows[i].id);
            goto out;
        }
    for (size_t i = 0; i < n; i++)
        for (int f = 0; f < RD_FINDING_COUNT; f++)
            if (rows[i].pos[f])
                annotated[f] = 1;
out:
    rd_line_reader_free(&r);
    fclose(fp);
    if (st != RD_OK) {
        free(rows);
        return st;
    }
    *rows_out = rows;
    *n_out = n;
    return RD_OK;
}

static void prf(int tp, int fp, int fn, double *p, double *r, double *f)
{
    *p = tp + fp ? (double)tp / (tp + fp) : 0.0;
    *r = tp + fn ? (double)tp / (tp + fn) : 0.0;
    *f = *p + *r > 0 ? 2 * *p * *r / (*p + *r) : 0.0;
}

const char *rd_labeler_positive_name(rd_labeler_positive mode)
{
    switch (mode) {
    case RD_LABELER_POSITIVE_PRESENT:
        return "present";
    case RD_LABELER_POSITIVE_UNCERTAIN:
        return "uncertain";
    case RD_LABELER_POSITIVE_SPECULATIVE:
        return "speculative";
    }
    return "?";
}

/* Whether finding f of `labels` counts as a positive prediction under `mode`. */
static int predicted_positive(const rd_labels *labels, int f, rd_labeler_positive mode)
{
    switch (mode) {
    case RD_LABELER_POSITIVE_PRESENT:
        return labels->state[f] == RD_STATE_PRESENT;
    case RD_LABELER_POSITIVE_UNCERTAIN:
        return labels->state[f] >= RD_STATE_UNCERTAIN;
    case RD_LABELER_POSITIVE_SPECULATIVE:
        return labels->state[f] >= RD_STATE_UNCERTAIN || labels->speculative[f];
    }
    return 0;
}

const char *rd_labeler_part_name(rd_labeler_part part)
{
    return part == RD_LABELER_PART_TUNING     ? "tuning"
           : part == RD_LABELER_PART_HELD_OUT ? "held-out"
                                              : "all";
}

int rd_labeler_in_part(const char *id, rd_labeler_part part)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    h ^= 0x1abe1ull;
    h += 0x9e3779b97f4a7c15ull; /* splitmix64's finalizer */
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
    int held = (double)(h >> 11) / 9007199254740992.0 < 0.3;
    return part == RD_LABELER_PART_ALL || (part == RD_LABELER_PART_HELD_OUT) == held;
}

rd_status rd_labeler_evaluate(const rd_labeler *lab, const char *reports_path,
                              const char *gold_path, rd_labeler_positive positive,
                              rd_labeler_eval *out, rd_error *err)
{
    return rd_labeler_evaluate_part(lab, reports_path, gold_path, positive, RD_LABELER_PART_ALL,
                                    out, err);
}

rd_status rd_labeler_evaluate_part(const rd_labeler *lab, const char *reports_path,
                                   const char *gold_path, rd_labeler_positive positive,
                                   rd_labeler_part part, rd_labeler_eval *out, rd_error *err)
{
    gold_row *rows = NULL;
    size_t nrows = 0;
    unsigned char *seen = NULL;
    int has_column[RD_FINDING_COUNT];
    FILE *fp = NULL;
    rd_line_reader r;
    rd_status st;
    int eof = 0;

    memset(out, 0, sizeof *out);
    out->positive = positive;
    out->part = (int)part;
    rd_line_reader_init(&r, NULL);
    st = read_gold(gold_path, &rows, &nrows, out->annotated, has_column, err);
    if (st != RD_OK)
        return st;
    seen = calloc(nrows + 1, 1);
    fp = fopen(reports_path, "r");
    if (!seen || !fp) {
        st = !seen ? rd_error_set(err, RD_E_NOMEM, "out of memory")
                   : rd_error_set(err, errno == ENOENT ? RD_E_NOT_FOUND : RD_E_IO, "%s: %s",
                                  reports_path, strerror(errno));
        goto out;
    }
    rd_line_reader_init(&r, fp);
    for (;;) {
        gold_row key;
        const gold_row *g;
        rd_labels labels;
        st = rd_line_read(&r, RD_LINE_MAX, &eof, err);
        if (st != RD_OK) {
            rd_error_prefix(err, st, "%s", reports_path);
            goto out;
        }
        if (eof)
            break;
        if (r.len == 0)
            continue;
        st = rd_labeler_label_json(lab, r.buf, key.id, sizeof key.id, &labels, err);
        if (st != RD_OK) {
            st = rd_error_prefix(err, RD_E_CORRUPT, "%s:%ld", reports_path, r.lineno);
            goto out;
        }
        g = bsearch(&key, rows, nrows, sizeof *rows, row_cmp);
        if (!g || seen[g - rows])
            continue;
        if (!rd_labeler_in_part(key.id, part)) {
            seen[g - rows] = 2; /* compared in the other part */
            continue;
        }
        seen[g - rows] = 1;
        out->n_reports++;
        for (int f = 0; f < RD_FINDING_COUNT; f++) {
            int pred = predicted_positive(&labels, f, positive);
            if (!has_column[f])
                continue;
            if (pred && g->pos[f])
                out->tp[f]++;
            else if (pred)
                out->fp[f]++;
            else if (g->pos[f])
                out->fn[f]++;
            else
                out->tn[f]++;
        }
    }
    out->n_missing = 0;
    for (size_t i = 0; i < nrows; i++)
        out->n_missing += !seen[i] && rd_labeler_in_part(rows[i].id, part);
    if (part != RD_LABELER_PART_ALL)
        for (int f = 0; f < RD_FINDING_COUNT; f++)
            out->annotated[f] = has_column[f] && out->tp[f] + out->fn[f] > 0;
    {
        int tp = 0, fpos = 0, fn = 0, tp_all = 0, fp_all = 0, fn_all = 0, nmacro = 0;
        double sum_f1 = 0;
        for (int f = 0; f < RD_FINDING_COUNT; f++) {
            prf(out->tp[f], out->fp[f], out->fn[f], &out->precision[f], &out->recall[f],
                &out->f1[f]);
            if (f == RD_FINDING_NO_FINDING || !has_column[f])
                continue;
            tp_all += out->tp[f];
            fp_all += out->fp[f];
            fn_all += out->fn[f];
            if (!out->annotated[f])
                continue;
            tp += out->tp[f];
            fpos += out->fp[f];
            fn += out->fn[f];
            sum_f1 += out->f1[f];
            nmacro++;
        }
        prf(tp, fpos, fn, &out->micro_precision, &out->micro_recall, &out->micro_f1);
        prf(tp_all, fp_all, fn_all, &out->micro_all_precision, &out->micro_all_recall,
            &out->micro_all_f1);
        out->macro_f1 = nmacro ? sum_f1 / nmacro : 0.0;
    }
out:
    rd_line_reader_free(&r);
    if (fp)
        fclose(fp);
    free(seen);
    free(rows);
    return st;
}

void rd_labeler_eval_print(const rd_labeler_eval *ev, FILE *fp)
{
    fprintf(fp, "reports compared: %d of part %s (gold rows without a report: %d); positive = %s\n",
            ev->n_reports, rd_labeler_part_name((rd_labeler_part)ev->part), ev->n_missing,
            ev->positive == RD_LABELER_POSITIVE_PRESENT     ? "present"
            : ev->positive == RD_LABELER_POSITIVE_UNCERTAIN ? "present or uncertain"
                                                            : "present, uncertain or speculative");
    fprintf(fp, "%-20s %6s %6s %5s %5s %5s %9s %7s %6s\n", "finding", "gold+", "pred+", "TP", "FP",
            "FN", "precision", "recall", "F1");
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        int gold = ev->tp[f] + ev->fn[f], pred = ev->tp[f] + ev->fp[f];
        if (!ev->annotated[f]) {
            fprintf(fp,
                    "%-20s %6d %6d %5d %5d %5d %9s %7s %6s  (no gold positive: not annotated)\n",
                    rd_finding_name((rd_finding)f), gold, pred, ev->tp[f], ev->fp[f], ev->fn[f],
                    "-", "-", "-");
            continue;
        }
        fprintf(fp, "%-20s %6d %6d %5d %5d %5d %9.3f %7.3f %6.3f\n", rd_finding_name((rd_finding)f),
                gold, pred, ev->tp[f], ev->fp[f], ev->fn[f], ev->precision[f], ev->recall[f],
                ev->f1[f]);
    }
    fprintf(fp, "%-20s %6s %6s %5s %5s %5s %9.3f %7.3f %6.3f\n", "micro (annotated)", "", "", "",
            "", "", ev->micro_precision, ev->micro_recall, ev->micro_f1);
    fprintf(fp, "%-20s %6s %6s %5s %5s %5s %9s %7s %6.3f\n", "macro (annotated)", "", "", "", "",
            "", "", "", ev->macro_f1);
    fprintf(fp, "%-20s %6s %6s %5s %5s %5s %9.3f %7.3f %6.3f\n", "micro (all 14)", "", "", "", "",
            "", ev->micro_all_precision, ev->micro_all_recall, ev->micro_all_f1);
    if (ev->annotated[RD_FINDING_NO_FINDING])
        fprintf(fp, "%-20s %6d %6d %5d %5d %5d %9.3f %7.3f %6.3f\n", "No Finding",
                ev->tp[RD_FINDING_NO_FINDING] + ev->fn[RD_FINDING_NO_FINDING],
                ev->tp[RD_FINDING_NO_FINDING] + ev->fp[RD_FINDING_NO_FINDING],
                ev->tp[RD_FINDING_NO_FINDING], ev->fp[RD_FINDING_NO_FINDING],
                ev->fn[RD_FINDING_NO_FINDING], ev->precision[RD_FINDING_NO_FINDING],
                ev->recall[RD_FINDING_NO_FINDING], ev->f1[RD_FINDING_NO_FINDING]);
}
