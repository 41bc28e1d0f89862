/* radraft archive: the archive of past studies for similar-case retrieval — import (NIH
 * images + labels CSV, DICOM studies with an SR or JSON Lines reports, a seed file), list,
 * stats, export-seed, and query (the neighbours, votes and combined scores of images). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "radraft/dicom.h"
#include "radraft/encoder.h"
#include "radraft/findings.h"
#include "radraft/image.h"
#include "radraft/index.h"
#include "radraft/labeler.h"
#include "radraft/log.h"
#include "radraft/nn.h"
#include "radraft/review.h"
#include "radraft/sr.h"
#include "radraft/store.h"
#include "radraft/train.h"
#include "base/util.h"
#include "base/walk.h"

static const char help[] =
    "usage: radraft archive COMMAND [OPTIONS]\n"
    "The archive of past studies that similar-case retrieval searches (one set of entries per\n"
    "model version, in the data directory's radraft.db).\n\n"
    "  import --nih LABELS.csv [--images DIR] [--limit N]\n"
    "         images (PNG) with NIH-format labels (image,patient_id,view,age,sex,labels);\n"
    "         --images defaults to the CSV's folder + /images\n"
    "  import --dicom PATH... [--reports REPORTS.jsonl]\n"
    "         DICOM studies (files or folders); each study's report is its SR among the files,\n"
    "         or a JSON Lines record {\"study_uid\"|\"accession\"|\"id\", \"findings\",\n"
    "         \"impression\"}; report text goes through the labeler\n"
    "  import --seed FILE        a seed archive file\n"
    "  list [--model-version V] [--limit N]   entries as JSON lines\n"
    "  stats                                 counts by model version, source and view\n"
    "  export-seed [-o FILE] [--include-signed]\n"
    "         writes the model's entries (no images, no text) as a seed archive;\n"
    "         default FILE: the model's folder/" RD_INDEX_SEED_FILE "\n"
    "  query FILE...             each image's neighbours, votes and combined scores (JSON)\n"
    "  evaluate --nih LABELS.csv [--images DIR] [--patients val|all] [--limit N] [--write]\n"
    "         per-finding AUROC of the encoder alone, the neighbours' votes alone and their\n"
    "         combination over a grid of k, temperature and encoder weight, on the model's\n"
    "         held-out patients (model.json training.split.holdout_patient_ids, else\n"
    "         val_patient_ids) searched\n"
    "         against the archive (never their own images); --write stores the best\n"
    "         settings as the model's \"retrieval\" member\n\n"
    "  --data-dir DIR      data directory (config server.data_dir)\n"
    "  --model MODEL       encoder model folder or JSON (config encoder.model)\n"
    "  --source SOURCE     import or signed (import; default import)\n" RD_CLI_COMMON_HELP;

enum {
    OPT_DATA_DIR = RD_OPT_FIRST_PRIVATE,
    OPT_MODEL,
    OPT_NIH,
    OPT_IMAGES,
    OPT_LIMIT,
    OPT_DICOM,
    OPT_REPORTS,
    OPT_SEED,
    OPT_SOURCE,
    OPT_MODEL_VERSION,
    OPT_INCLUDE_SIGNED,
    OPT_PATIENTS,
    OPT_WRITE
};

typedef struct archive_args {
    rd_cli cli;
    const char *sub;
    const char *data_dir;
    const char *model;
    const char *nih;
    const char *images;
    const char *reports;
    const char *seed;
    const char *out;
    const char *model_version;
    long limit;
    int dicom;
    int include_signed;
    int all_patients;
    int write_model;
    rd_archive_source source;
    char **paths;
    int n_paths;
} archive_args;

static rd_status open_store(const archive_args *a, rd_store **s, rd_error *err)
{
    return rd_cli_store_open(&a->cli, a->data_dir, s, err);
}

/* ---- import: NIH images + labels CSV ---- */

/* A file name from the CSV becomes a path component only when it is a plain name. */
static int plain_name(const char *s)
{
    size_t n = 0;
    if (!s[0] || s[0] == '.')
        return 0;
    for (; s[n]; n++)
        if (n > 200 || !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
                         (s[n] >= '0' && s[n] <= '9') || s[n] == '_' || s[n] == '-' || s[n] == '.'))
            return 0;
    return 1;
}

/* Splits a CSV line (no quoting in the NIH format) in place into at most `max` fields. */
static int split_csv(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    line[strcspn(line, "\r\n")] = '\0';
    while (n < max) {
        fields[n++] = p;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    return strchr(p, ',') ? -1 : n;
}

static rd_status nih_states(const char *labels, rd_finding_state st[RD_FINDING_COUNT],
                            rd_error *err)
{
    char buf[512], *save = NULL;
    int any = 0;
    if (rd_strlcpy(buf, labels, sizeof buf) >= sizeof buf)
        return rd_error_set(err, RD_E_INVALID, "labels too long");
    /* NIH's labels list every finding its report mentioned as present: the others are
     * absent, and "No Finding" stands alone. */
    for (int f = 0; f < RD_FINDING_COUNT; f++)
        st[f] = RD_STATE_ABSENT;
    for (char *tok = strtok_r(buf, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
        rd_finding f;
        if (rd_finding_from_name(tok, &f, err) != RD_OK)
            return rd_error_set(err, RD_E_INVALID, "unknown finding '%s'", tok);
        st[f] = RD_STATE_PRESENT;
        if (f != RD_FINDING_NO_FINDING)
            any = 1;
    }
    st[RD_FINDING_NO_FINDING] = any ? RD_STATE_ABSENT : RD_STATE_PRESENT;
    return RD_OK;
}

typedef struct pending {
    rd_image *img;
    char key[RD_INDEX_KEY_MAX + 1];
    char study[RD_UID_SIZE];
    char patient[RD_SHA256_HEX_SIZE];
    rd_index_entry e;
} pending;

static rd_status flush_batch(rd_encoder *enc, rd_index *ix, rd_store *s, pending *pb, int n,
                             float *emb, long *added_total, rd_error *err)
{
    const rd_image *imgs[256];
    rd_index_entry entries[256];
    int added[256];
    rd_status st;
    if (n == 0)
        return RD_OK;
    for (int i = 0; i < n; i++) {
        imgs[i] = pb[i].img;
        entries[i] = pb[i].e;
        entries[i].key = pb[i].key;
        entries[i].study_uid = pb[i].study;
        entries[i].patient_hash = pb[i].patient;
    }
    if ((st = rd_encoder_embed_batch(enc, imgs, n, emb, NULL, err)) != RD_OK)
        return st;
    if ((st = rd_index_add_batch(ix, s, entries, (size_t)n, emb, NULL, added, err)) != RD_OK)
        return st;
    for (int i = 0; i < n; i++)
        *added_total += added[i];
    return RD_OK;
}

static int import_nih(archive_args *a, rd_encoder *enc, rd_index *ix, rd_store *s)
{
    char images[4096], line[4096];
    rd_error err;
    FILE *fp = NULL;
    pending *pb = NULL;
    float *emb = NULL;
    int batch = a->cli.cfg.encoder_batch, n = 0, rc = RD_EXIT_OK;
    long lineno = 0, rows = 0, added = 0, failed = 0;
    const rd_nn_info *info = rd_encoder_info(enc);

    if (batch > 256)
        batch = 256;
    if (a->images) {
        if (rd_strlcpy(images, a->images, sizeof images) >= sizeof images - 256)
            goto too_long;
    } else {
        const char *slash = strrchr(a->nih, '/');
        int len = slash ? (int)(slash - a->nih) : 1;
        if (snprintf(images, sizeof images, "%.*s/images", len, slash ? a->nih : ".") >=
            (int)sizeof images - 256)
            goto too_long;
    }
    if (!(fp = fopen(a->nih, "r"))) {
        rd_cli_error(&a->cli, "%s: cannot open", a->nih);
        return RD_EXIT_FAIL;
    }
    pb = calloc((size_t)batch, sizeof *pb);
    emb = malloc((size_t)batch * (size_t)info->embedding_dim * sizeof *emb);
    if (!pb || !emb) {
        rd_cli_error(&a->cli, "out of memory");
        rc = RD_EXIT_FAIL;
        goto out;
    }
    while (fgets(line, sizeof line, fp)) {
        char *fld[6], path[4400];
        rd_status st;
        lineno++;
        if (!strchr(line, '\n') && !feof(fp)) {
            rd_cli_error(&a->cli, "%s:%ld: line too long", a->nih, lineno);
            rc = RD_EXIT_FAIL;
            goto out;
        }
        if (split_csv(line, fld, 6) != 6) {
            rd_cli_error(&a->cli,
                         "%s:%ld: expected 6 fields (image,patient_id,view,age,sex,labels)", a->nih,
                         lineno);
            rc = RD_EXIT_FAIL;
            goto out;
        }
        if (lineno == 1) {
            if (strcmp(fld[0], "image") != 0 || strcmp(fld[5], "labels") != 0) {
                rd_cli_error(&a->cli, "%s: header is not image,patient_id,view,age,sex,labels",
                             a->nih);
                rc = RD_EXIT_FAIL;
                goto out;
            }
            continue;
        }
        if (a->limit > 0 && rows >= a->limit)
            break;
        rows++;
        pending *p = &pb[n];
        memset(p, 0, sizeof *p);
        if (!plain_name(fld[0]) || !fld[1][0] || nih_states(fld[5], p->e.state, &err) != RD_OK) {
            rd_log_warn("%s:%ld: malformed row skipped", a->nih, lineno);
            failed++;
            continue;
        }
        if (snprintf(path, sizeof path, "%s/%s", images, fld[0]) >= (int)sizeof path ||
            snprintf(p->key, sizeof p->key, "nih:%s", fld[0]) >= (int)sizeof p->key) {
            rd_log_warn("%s:%ld: image name too long: row skipped", a->nih, lineno);
            failed++;
            continue;
        }
        if ((st = rd_png_read(path, &p->img, NULL, &err)) != RD_OK) {
            rd_log_warn("%s: %s", path, rd_error_message(&err));
            failed++;
            continue;
        }
        /* An NIH image is one follow-up visit of a patient: its name without the extension
         * stands for the study. */
        snprintf(p->study, sizeof p->study, "nih:%.*s", (int)strcspn(fld[0], "."), fld[0]);
        rd_index_patient_hash(a->cli.cfg.archive_patient_salt, fld[1], p->patient);
        p->e.view = rd_view_family_from_position(fld[2]);
        p->e.source = a->source;
        if (++n == batch) {
            st = flush_batch(enc, ix, s, pb, n, emb, &added, &err);
            for (int i = 0; i < n; i++)
                rd_image_free(pb[i].img), pb[i].img = NULL;
            n = 0;
            if (st != RD_OK) {
                rd_cli_error(&a->cli, "%s", rd_error_message(&err));
                rc = RD_EXIT_FAIL;
                goto out;
            }
        }
    }
    if (flush_batch(enc, ix, s, pb, n, emb, &added, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
    }
    printf("imported %ld of %ld images (%ld already in the archive, %ld failed) for model %s\n",
           added, rows, rows - failed - added, failed, info->version);
    if (failed)
        rc = RD_EXIT_FAIL;
out:
    if (pb)
        for (int i = 0; i < n; i++)
            rd_image_free(pb[i].img);
    free(pb);
    free(emb);
    if (fp)
        fclose(fp);
    return rc;
too_long:
    rd_cli_error(&a->cli, "image folder path too long");
    return RD_EXIT_USAGE;
}

/* ---- import: DICOM studies with SR or JSON Lines reports ---- */

typedef struct report {
    char study_uid[72];
    char accession[72];
    char id[72];
    int verified;
    char *findings, *impression;
} report;

typedef struct image_ref {
    char *path;
    rd_dicom_meta meta;
} image_ref;

typedef struct dicom_set {
    image_ref *images;
    size_t n_images, cap_images;
    report *reports;
    size_t n_reports, cap_reports;
    long not_dicom, unreadable;
} dicom_set;

#define MAX_FILES 1000000
#define MAX_DEPTH 16

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 1;
    size_t nc = *cap ? *cap * 2 : 64, bytes;
    if (nc > MAX_FILES || !rd_mul_size(nc, elem, &bytes))
        return 0;
    void *p = realloc(*arr, bytes);
    if (!p)
        return 0;
    *arr = p;
    *cap = nc;
    return 1;
}

static char *dup_str(const char *s)
{
    size_t n;
    char *d;
    if (!s)
        return NULL;
    n = strlen(s);
    if ((d = malloc(n + 1)))
        memcpy(d, s, n + 1);
    return d;
}

static int is_sr(const rd_dicom_meta *m)
{
    return strcmp(m->modality, "SR") == 0 ||
           strncmp(m->sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.", 27) == 0;
}

static rd_status add_file(dicom_set *ds, const char *path, rd_error *err)
{
    rd_dicom_meta meta;
    if (!rd_dicom_probe(path)) {
        ds->not_dicom++;
        return RD_OK;
    }
    if (rd_dicom_read_meta(path, &meta, err) != RD_OK) {
        rd_log_warn("%s", rd_error_message(err));
        ds->unreadable++;
        return RD_OK;
    }
    if (is_sr(&meta)) {
        rd_sr_info info;
        if (rd_sr_read(path, NULL, &info, err) != RD_OK) {
            rd_log_warn("%s", rd_error_message(err));
            ds->unreadable++;
            return RD_OK;
        }
        /* An SR without report texts (an AI Results SR, a measurement report) is not the
         * study's report. */
        if (!info.findings_text && !info.impression_text) {
            rd_sr_info_free(&info);
            return RD_OK;
        }
        if (!grow((void **)&ds->reports, &ds->cap_reports, ds->n_reports, sizeof(report))) {
            rd_sr_info_free(&info);
            return rd_error_set(err, RD_E_TOO_LARGE, "too many reports");
        }
        report *r = &ds->reports[ds->n_reports++];
        memset(r, 0, sizeof *r);
        rd_strlcpy(r->study_uid, info.study_uid, sizeof r->study_uid);
        rd_strlcpy(r->accession, meta.accession_number, sizeof r->accession);
        r->verified = strcmp(info.verification_flag, "VERIFIED") == 0;
        r->findings = info.findings_text;
        r->impression = info.impression_text;
        info.findings_text = info.impression_text = NULL;
        rd_sr_info_free(&info);
        return RD_OK;
    }
    if (!meta.has_pixel_data) {
        ds->not_dicom++;
        return RD_OK;
    }
    if (!grow((void **)&ds->images, &ds->cap_images, ds->n_images, sizeof(image_ref)))
        return rd_error_set(err, RD_E_TOO_LARGE, "too many images");
    image_ref *im = &ds->images[ds->n_images];
    if (!(im->path = dup_str(path)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    im->meta = meta;
    ds->n_images++;
    return RD_OK;
}

static rd_status walk_file(void *ctx, const char *path, const struct stat *sb, rd_error *err)
{
    (void)sb;
    return add_file(ctx, path, err);
}

/* Adds the files of a folder (recursively, in name order, following links but not loops;
 * folders MAX_DEPTH levels deep are not entered) or a file. A folder that cannot be read
 * is an error: an archive import should not silently leave out part of what it was
 * given. */
static rd_status walk(dicom_set *ds, const char *path, rd_error *err)
{
    rd_walk_options o;
    rd_walk_options_default(&o);
    o.follow_symlinks = 1;
    o.sorted = 1;
    o.skip_too_deep = 1;
    o.max_depth = MAX_DEPTH;
    return rd_walk(path, &o, walk_file, ds, NULL, err);
}

static const char *json_text(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static rd_status read_reports(dicom_set *ds, const char *path, rd_error *err)
{
    FILE *fp = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    rd_status st = RD_OK;
    if (!fp)
        return rd_error_set(err, RD_E_NOT_FOUND, "%s: cannot open", path);
    while ((len = getline(&line, &cap, fp)) != -1) {
        cJSON *o;
        lineno++;
        if (len > (ssize_t)(2 * RD_LABELER_MAX_TEXT)) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "%s:%ld: line too long", path, lineno);
            break;
        }
        if (strspn(line, " \t\r\n") == (size_t)len)
            continue;
        if (!(o = cJSON_Parse(line)) || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            st = rd_error_set(err, RD_E_CORRUPT, "%s:%ld: not a JSON object", path, lineno);
            break;
        }
        const char *study = json_text(o, "study_uid"), *acc = json_text(o, "accession");
        const char *id = json_text(o, "id");
        if (!acc)
            acc = json_text(o, "accession_number");
        if (!grow((void **)&ds->reports, &ds->cap_reports, ds->n_reports, sizeof(report))) {
            cJSON_Delete(o);
            st = rd_error_set(err, RD_E_TOO_LARGE, "%s: too many reports", path);
            break;
        }
        report *r = &ds->reports[ds->n_reports];
        memset(r, 0, sizeof *r);
        rd_strlcpy(r->study_uid, study ? study : "", sizeof r->study_uid);
        rd_strlcpy(r->accession, acc ? acc : "", sizeof r->accession);
        rd_strlcpy(r->id, id ? id : "", sizeof r->id);
        r->verified = 1;
        r->findings = dup_str(json_text(o, "findings"));
        r->impression = dup_str(json_text(o, "impression"));
        cJSON_Delete(o);
        if (!r->findings && !r->impression) {
            rd_log_warn("%s:%ld: a record without findings or impression text", path, lineno);
            continue;
        }
        ds->n_reports++;
    }
    free(line);
    fclose(fp);
    return st;
}

/* The report of an image's study: a verified SR over a draft; then JSON Lines records by
 * study UID, accession number or id. */
static const report *find_report(const dicom_set *ds, const rd_dicom_meta *m)
{
    const report *best = NULL;
    for (size_t i = 0; i < ds->n_reports; i++) {
        const report *r = &ds->reports[i];
        int match =
            (r->study_uid[0] && strcmp(r->study_uid, m->study_uid) == 0) ||
            (r->accession[0] && m->accession_number[0] &&
             strcmp(r->accession, m->accession_number) == 0) ||
            (r->id[0] && (strcmp(r->id, m->study_uid) == 0 ||
                          (m->accession_number[0] && strcmp(r->id, m->accession_number) == 0)));
        if (match && (!best || (r->verified && !best->verified)))
            best = r;
    }
    return best;
}

static void dicom_set_free(dicom_set *ds)
{
    for (size_t i = 0; i < ds->n_images; i++)
        free(ds->images[i].path);
    for (size_t i = 0; i < ds->n_reports; i++) {
        free(ds->reports[i].findings);
        free(ds->reports[i].impression);
    }
    free(ds->images);
    free(ds->reports);
}

static int import_dicom(archive_args *a, rd_encoder *enc, rd_index *ix, rd_store *s)
{
    dicom_set ds;
    rd_error err;
    rd_labeler *lab = NULL;
    long added = 0, no_report = 0, failed = 0;
    int rc = RD_EXIT_OK;
    const rd_nn_info *info = rd_encoder_info(enc);

    memset(&ds, 0, sizeof ds);
    for (int i = 0; i < a->n_paths; i++)
        if (walk(&ds, a->paths[i], &err) != RD_OK) {
            rd_cli_error(&a->cli, "%s", rd_error_message(&err));
            rc = RD_EXIT_FAIL;
            goto out;
        }
    if (a->reports && read_reports(&ds, a->reports, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    if (rd_labeler_create_from_config(&lab, &a->cli.cfg, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    for (size_t i = 0; i < ds.n_images; i++) {
        const image_ref *im = &ds.images[i];
        const report *r = find_report(&ds, &im->meta);
        int was_added = 0;
        if (!r) {
            rd_log_warn("%s: no report for study %s: not imported", im->path, im->meta.study_uid);
            no_report++;
            continue;
        }
        if (rd_review_archive_add(ix, s, enc, lab, &a->cli.cfg, im->path, &im->meta, a->source,
                                  NULL, r->findings, r->impression, &was_added, &err) != RD_OK) {
            rd_log_warn("%s: %s", im->path, rd_error_message(&err));
            failed++;
            continue;
        }
        added += was_added;
    }
    printf("imported %ld of %zu images (%ld without a report, %ld failed, %ld already in the "
           "archive; %zu reports, %ld other files) for model %s\n",
           added, ds.n_images, no_report, failed, (long)ds.n_images - added - no_report - failed,
           ds.n_reports, ds.not_dicom + ds.unreadable, info->version);
    if (failed)
        rc = RD_EXIT_FAIL;
out:
    rd_labeler_free(lab);
    dicom_set_free(&ds);
    return rc;
}

static int cmd_import(archive_args *a)
{
    rd_error err;
    rd_encoder *enc = NULL;
    rd_store *s = NULL;
    rd_index *ix = NULL;
    int rc = RD_EXIT_OK, modes = !!a->nih + !!a->dicom + !!a->seed;
    if (modes != 1) {
        rd_cli_error(&a->cli, "import needs exactly one of --nih, --dicom, --seed");
        return RD_EXIT_USAGE;
    }
    if (a->dicom && a->n_paths == 0) {
        rd_cli_error(&a->cli, "--dicom needs at least one PATH");
        return RD_EXIT_USAGE;
    }
    if (!a->model[0]) {
        rd_cli_error(&a->cli, "no model: give --model or set encoder.model");
        return RD_EXIT_USAGE;
    }
    if (rd_encoder_create(&enc, a->model, a->cli.cfg.encoder_threads,
                          a->nih ? a->cli.cfg.encoder_batch : 1, &err) != RD_OK ||
        open_store(a, &s, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    const rd_nn_info *info = rd_encoder_info(enc);
    if (info->embedding_dim <= 0) {
        rd_cli_error(&a->cli, "%s: the model has no embedding output", a->model);
        rc = RD_EXIT_FAIL;
        goto out;
    }
    /* Additions go through the store (which refuses a key twice); the in-memory index is
     * only the vehicle, so it starts empty rather than loading the archive. */
    if (rd_index_create(&ix, info->version, info->embedding_dim, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    if (a->nih)
        rc = import_nih(a, enc, ix, s);
    else if (a->dicom)
        rc = import_dicom(a, enc, ix, s);
    else {
        long n = 0;
        if (rd_index_seed_read(ix, s, a->seed, 0, &n, &err) != RD_OK) {
            rd_cli_error(&a->cli, "%s", rd_error_message(&err));
            rc = RD_EXIT_FAIL;
        } else {
            printf("imported %ld seed entries for model %s\n", n, info->version);
        }
    }
out:
    rd_index_free(ix);
    rd_store_close(s);
    rd_encoder_free(enc);
    return rc;
}

/* ---- list, stats ---- */

typedef struct list_ctx {
    long limit, n;
} list_ctx;

static rd_status list_row(void *vctx, const rd_store_archive_row *r, rd_error *err)
{
    list_ctx *c = vctx;
    int first = 1;
    (void)err;
    if (c->limit > 0 && c->n >= c->limit)
        return RD_OK;
    c->n++;
    printf("{\"id\": %lld, \"model_version\": ", (long long)r->id);
    rd_cli_print_json_string(stdout, r->model_version);
    fputs(", \"key\": ", stdout);
    rd_cli_print_json_string(stdout, r->key);
    fputs(", \"study_uid\": ", stdout);
    rd_cli_print_json_string(stdout, r->study_uid);
    printf(", \"source\": \"%s\", \"view\": \"%s\", \"study_date\": %d, \"findings\": {",
           rd_archive_source_name((rd_archive_source)r->source),
           rd_view_family_name((rd_view_family)r->view), r->study_date);
    for (int f = 0; f < RD_FINDING_COUNT && r->states[f]; f++) {
        int st = r->states[f] - '0';
        if (st <= RD_STATE_NOT_MENTIONED || st > RD_STATE_PRESENT)
            continue;
        printf("%s\"%s\": \"%s\"", first ? "" : ", ", rd_finding_name((rd_finding)f),
               rd_state_name((rd_finding_state)st));
        first = 0;
    }
    printf("}, \"has_text\": %s}\n", r->findings_text || r->impression_text ? "true" : "false");
    return RD_OK;
}

#define MAX_VERSIONS 64
typedef struct stats_row {
    char version[RD_INDEX_VERSION_MAX];
    long total, by_source[RD_ARCHIVE_SOURCE_COUNT], by_view[3], with_text;
} stats_row;
typedef struct stats_ctx {
    stats_row rows[MAX_VERSIONS];
    int n;
    long other;
} stats_ctx;

static rd_status stats_row_fn(void *vctx, const rd_store_archive_row *r, rd_error *err)
{
    stats_ctx *c = vctx;
    stats_row *row = NULL;
    (void)err;
    for (int i = 0; i < c->n && !row; i++)
        if (strcmp(c->rows[i].version, r->model_version) == 0)
            row = &c->rows[i];
    if (!row) {
        if (c->n == MAX_VERSIONS) {
            c->other++;
            return RD_OK;
        }
        row = &c->rows[c->n++];
        memset(row, 0, sizeof *row);
        rd_strlcpy(row->version, r->model_version, sizeof row->version);
    }
    row->total++;
    if (r->source >= 0 && r->source < RD_ARCHIVE_SOURCE_COUNT)
        row->by_source[r->source]++;
    if (r->view >= 0 && r->view < 3)
        row->by_view[r->view]++;
    row->with_text += r->findings_text || r->impression_text;
    return RD_OK;
}

static int cmd_list_stats(archive_args *a, int stats)
{
    rd_error err;
    rd_store *s = NULL;
    int rc = RD_EXIT_OK;
    if (open_store(a, &s, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    if (!stats) {
        list_ctx c = {a->limit, 0};
        if (rd_store_archive_scan(s, a->model_version, 0, list_row, &c, &err) != RD_OK) {
            rd_cli_error(&a->cli, "%s", rd_error_message(&err));
            rc = RD_EXIT_FAIL;
        }
    } else {
        stats_ctx *c = calloc(1, sizeof *c);
        if (!c || rd_store_archive_scan(s, a->model_version, 0, stats_row_fn, c, &err) != RD_OK) {
            rd_cli_error(&a->cli, "%s", c ? rd_error_message(&err) : "out of memory");
            rc = RD_EXIT_FAIL;
        } else {
            printf("%-32s %8s %8s %8s %8s %8s %8s %8s %9s\n", "model_version", "entries", "seed",
                   "import", "signed", "frontal", "lateral", "unknown", "with_text");
            for (int i = 0; i < c->n; i++) {
                const stats_row *r = &c->rows[i];
                printf("%-32s %8ld %8ld %8ld %8ld %8ld %8ld %8ld %9ld\n", r->version, r->total,
                       r->by_source[0], r->by_source[1], r->by_source[2], r->by_view[1],
                       r->by_view[2], r->by_view[0], r->with_text);
            }
            if (c->n == 0)
                printf("(the archive is empty)\n");
            if (c->other)
                printf("(%ld entries of further model versions not shown)\n", c->other);
        }
        free(c);
    }
    rd_store_close(s);
    return rc;
}

/* ---- export-seed ---- */

static int cmd_export_seed(archive_args *a)
{
    rd_error err;
    rd_nn_model *model = NULL;
    rd_store *s = NULL;
    rd_index *ix = NULL;
    char path[4096];
    long n = 0;
    int rc = RD_EXIT_OK;
    if (!a->model[0]) {
        rd_cli_error(&a->cli, "no model: give --model or set encoder.model");
        return RD_EXIT_USAGE;
    }
    if (a->out) {
        if (rd_strlcpy(path, a->out, sizeof path) >= sizeof path) {
            rd_cli_error(&a->cli, "output path too long");
            return RD_EXIT_USAGE;
        }
    } else if (rd_index_seed_default_path(a->model, path, sizeof path, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        return RD_EXIT_USAGE;
    }
    if (rd_nn_model_load(&model, a->model, &err) != RD_OK || open_store(a, &s, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    const rd_nn_info *info = rd_nn_model_info(model);
    if (rd_index_load(&ix, s, info->version, info->embedding_dim, NULL, NULL, &err) != RD_OK ||
        rd_index_seed_write(ix, path, a->include_signed, &n, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    printf("wrote %ld entries of model %s to %s\n", n, info->version, path);
out:
    rd_index_free(ix);
    rd_store_close(s);
    rd_nn_model_free(model);
    return rc;
}

/* ---- query ---- */

static void print_scores(const char *name, const double *v, int n)
{
    printf(", \"%s\": {", name);
    for (int f = 0; f < n; f++)
        printf("%s\"%s\": %.6f", f ? ", " : "", rd_finding_name((rd_finding)f), v[f]);
    fputs("}", stdout);
}

static int cmd_query(archive_args *a)
{
    rd_error err;
    rd_encoder *enc = NULL;
    rd_store *s = NULL;
    rd_index *ix = NULL;
    rd_retrieval_settings rs;
    rd_index_hit *hits = NULL;
    rd_dicom_options dopts;
    float *emb = NULL, *scores = NULL;
    char seed[4096];
    int rc = RD_EXIT_OK;
    if (a->n_paths == 0) {
        rd_cli_error(&a->cli, "query needs at least one FILE");
        return RD_EXIT_USAGE;
    }
    if (!a->model[0]) {
        rd_cli_error(&a->cli, "no model: give --model or set encoder.model");
        return RD_EXIT_USAGE;
    }
    rd_dicom_options_from_config(&dopts, &a->cli.cfg);
    if (rd_encoder_create(&enc, a->model, a->cli.cfg.encoder_threads, 1, &err) != RD_OK ||
        rd_retrieval_settings_load(&rs, &a->cli.cfg, a->model, &err) != RD_OK ||
        rd_index_seed_default_path(a->model, seed, sizeof seed, &err) != RD_OK ||
        open_store(a, &s, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    const rd_nn_info *info = rd_encoder_info(enc);
    rs.search.with_text = 0;
    if (rd_index_load(&ix, s, info->version, info->embedding_dim,
                      a->cli.cfg.archive_load_seed ? seed : NULL, NULL, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    hits = calloc((size_t)rs.search.k, sizeof *hits);
    emb = malloc((size_t)info->embedding_dim * sizeof *emb);
    scores = malloc(((size_t)info->n_labels + 1) * sizeof *scores);
    if (!hits || !emb || !scores) {
        rd_cli_error(&a->cli, "out of memory");
        rc = RD_EXIT_FAIL;
        goto out;
    }
    for (int i = 0; i < a->n_paths; i++) {
        const char *file = a->paths[i];
        rd_image *img = NULL;
        rd_dicom_meta meta;
        rd_index_query q;
        char patient[RD_SHA256_HEX_SIZE] = "";
        double votes[RD_FINDING_COUNT], enc_scores[RD_FINDING_COUNT] = {0};
        double combined[RD_FINDING_N_ABNORMAL];
        int n_hits = 0;
        rd_status st;
        memset(&meta, 0, sizeof meta);
        memset(&q, 0, sizeof q);
        st = rd_cli_read_image(file, &dopts, &img, &meta, &err);
        if (st == RD_OK)
            st = rd_encoder_embed(enc, img, emb, info->n_labels ? scores : NULL, &err);
        rd_image_free(img);
        if (st == RD_OK) {
            q.embedding = emb;
            rd_index_query_from_meta(&q, &meta, a->cli.cfg.archive_patient_salt, patient);
            st = rd_index_search(ix, &q, &rs.search, hits, &n_hits, &err);
        }
        if (st != RD_OK) {
            rd_cli_error(&a->cli, "%s: %s", file, rd_error_message(&err));
            rc = RD_EXIT_FAIL;
            continue;
        }
        for (int f = 0; f < info->n_labels && f < RD_FINDING_N_ABNORMAL; f++)
            enc_scores[f] = scores[f];
        rd_index_scores(hits, n_hits, info->n_labels ? enc_scores : NULL, &rs.votes, votes,
                        combined);
        fputs("{\"file\": ", stdout);
        rd_cli_print_json_string(stdout, file);
        fputs(", \"model\": ", stdout);
        rd_cli_print_json_string(stdout, info->version);
        printf(", \"archive_entries\": %ld, \"neighbours\": [", rd_index_count(ix));
        for (int h = 0; h < n_hits; h++) {
            printf("%s{\"id\": %lld, \"similarity\": %.6f, \"study_uid\": ", h ? ", " : "",
                   (long long)hits[h].id, (double)hits[h].similarity);
            rd_cli_print_json_string(stdout, hits[h].study_uid);
            printf(", \"source\": \"%s\", \"view\": \"%s\"}",
                   rd_archive_source_name(hits[h].source), rd_view_family_name(hits[h].view));
        }
        fputs("]", stdout);
        print_scores("votes", votes, RD_FINDING_N_ABNORMAL);
        if (info->n_labels)
            print_scores("encoder", enc_scores, RD_FINDING_N_ABNORMAL);
        print_scores("combined", combined, RD_FINDING_N_ABNORMAL);
        fputs("}\n", stdout);
    }
out:
    free(hits);
    free(emb);
    free(scores);
    rd_index_free(ix);
    rd_store_close(s);
    rd_encoder_free(enc);
    return rc;
}

/* ---- evaluate: choose k, temperature and encoder weight on the validation patients ---- */

#define EVAL_KMAX 100
static const int eval_ks[] = {1, 3, 5, 10, 20, 30, 50, 75, 100};
static const double eval_temps[] = {0, 0.01, 0.02, 0.05, 0.1};
#define EVAL_N_WEIGHTS 11 /* 0, 0.1, ..., 1 */
#define EVAL_MIN_POSITIVES 5

typedef struct eval_item {
    int fold; /* 0 or 1, by patient, for the held-out estimate */
    float enc[RD_FINDING_N_ABNORMAL];
    unsigned char label[RD_FINDING_N_ABNORMAL];
    int n_hits;
    float sim[EVAL_KMAX];
    unsigned char state[EVAL_KMAX][RD_FINDING_COUNT];
} eval_item;

/* 0 or 1 from a patient hash (hex digits), so that a patient's images share a fold. */
static int str_hash_fold(const char *hex)
{
    int v = 0;
    for (int i = 0; hex[i] && i < 8; i++)
        v += (unsigned char)hex[i];
    return v & 1;
}

static int cmp_cstr(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Macro AUROC over the findings with enough positives (and at least one negative); `per`
 * (may be NULL) receives every finding's AUROC (NaN when not measurable). */
static double macro_auroc(const eval_item *items, int n, int k, double temp, double w, int mode,
                          float *col, unsigned char *lab, double *per)
{
    double sum = 0;
    int m = 0;
    rd_vote_params vp;
    rd_vote_params_default(&vp);
    vp.temperature = temp;
    vp.encoder_weight = w;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        int pos = 0;
        for (int i = 0; i < n; i++) {
            const eval_item *it = &items[i];
            double v = 0, total = 0, best = it->n_hits ? it->sim[0] : 0;
            int kk = it->n_hits < k ? it->n_hits : k;
            for (int h = 0; h < kk; h++) {
                double wt =
                    temp > 0 ? exp((it->sim[h] - best) / temp) : (it->sim[h] > 0 ? it->sim[h] : 0);
                total += wt;
                if (it->state[h][f] == RD_STATE_PRESENT)
                    v += wt;
                else if (it->state[h][f] == RD_STATE_UNCERTAIN)
                    v += wt * vp.uncertain_value;
            }
            double votes = total > 0 ? v / total : 0;
            /* mode 0: encoder alone; 1: votes alone; 2: combined (as rd_index_combine). */
            if (mode == 0 || (mode == 2 && !(total > 0)))
                col[i] = it->enc[f];
            else if (mode == 1)
                col[i] = (float)votes;
            else
                col[i] = (float)(w * it->enc[f] + (1 - w) * votes);
            lab[i] = it->label[f];
            pos += lab[i];
        }
        double auc = rd_auroc(col, lab, n);
        if (per)
            per[f] = auc;
        if (pos >= EVAL_MIN_POSITIVES && !isnan(auc)) {
            sum += auc;
            m++;
        }
    }
    return m ? sum / m : NAN;
}

typedef struct eval_choice {
    int k;
    double temp, w, auroc, best_votes;
} eval_choice;

/* The grid point with the best combined macro AUROC on `items`. */
static eval_choice eval_grid(const eval_item *items, int n, float *col, unsigned char *lab)
{
    eval_choice c = {10, 0, 1, -1, -1};
    for (size_t ki = 0; ki < sizeof eval_ks / sizeof eval_ks[0]; ki++)
        for (size_t ti = 0; ti < sizeof eval_temps / sizeof eval_temps[0]; ti++) {
            double v = macro_auroc(items, n, eval_ks[ki], eval_temps[ti], 0, 1, col, lab, NULL);
            if (v > c.best_votes)
                c.best_votes = v;
            for (int wi = 0; wi < EVAL_N_WEIGHTS; wi++) {
                double w = wi / (double)(EVAL_N_WEIGHTS - 1);
                double m = macro_auroc(items, n, eval_ks[ki], eval_temps[ti], w, 2, col, lab, NULL);
                if (m > c.auroc + 1e-12) {
                    c.auroc = m;
                    c.k = eval_ks[ki];
                    c.temp = eval_temps[ti];
                    c.w = w;
                }
            }
        }
    return c;
}

static rd_status write_retrieval(const char *json_path, int k, double temp, double w, rd_error *err)
{
    char *text = NULL, *out = NULL;
    size_t len = 0;
    cJSON *root = NULL, *r;
    rd_status st;
    if ((st = rd_read_file(json_path, RD_NN_MAX_JSON_BYTES, &text, &len, err)) != RD_OK)
        return st;
    if (!(root = cJSON_ParseWithLength(text, len)) || !cJSON_IsObject(root)) {
        st = rd_error_set(err, RD_E_MODEL, "%s: not a JSON object", json_path);
        goto out;
    }
    if (!(r = cJSON_CreateObject())) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    cJSON_AddNumberToObject(r, "k", k);
    cJSON_AddNumberToObject(r, "temperature", temp);
    cJSON_AddNumberToObject(r, "encoder_weight", w);
    cJSON_AddStringToObject(r, "chosen_by", "radraft archive evaluate (validation patients)");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "retrieval");
    cJSON_AddItemToObject(root, "retrieval", r);
    if (!(out = cJSON_Print(root))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    st = rd_write_file_atomic(json_path, out, strlen(out), err);
out:
    cJSON_Delete(root);
    free(text);
    free(out);
    return st;
}

static int cmd_evaluate(archive_args *a)
{
    rd_error err;
    rd_encoder *enc = NULL;
    rd_store *s = NULL;
    rd_index *ix = NULL;
    rd_retrieval_settings rs;
    char json_path[4096], seed[4096], images[4096], line[4096];
    char *json = NULL;
    size_t json_len = 0;
    cJSON *doc = NULL;
    const char **val_ids = NULL;
    size_t n_val_ids = 0;
    eval_item *items = NULL;
    int n_items = 0, cap_items = 0, rc = RD_EXIT_OK;
    float *col = NULL, *emb = NULL, *scores = NULL;
    unsigned char *lab = NULL;
    rd_index_hit *hits = NULL;
    FILE *fp = NULL;
    long lineno = 0;

    if (!a->nih) {
        rd_cli_error(&a->cli, "evaluate needs --nih LABELS.csv");
        return RD_EXIT_USAGE;
    }
    if (!a->model[0]) {
        rd_cli_error(&a->cli, "no model: give --model or set encoder.model");
        return RD_EXIT_USAGE;
    }
    if (rd_nn_model_json_path(a->model, json_path, sizeof json_path, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        return RD_EXIT_USAGE;
    }
    if (a->images)
        rd_strlcpy(images, a->images, sizeof images);
    else {
        const char *slash = strrchr(a->nih, '/');
        snprintf(images, sizeof images, "%.*s/images", slash ? (int)(slash - a->nih) : 1,
                 slash ? a->nih : ".");
    }
    if (rd_read_file(json_path, RD_NN_MAX_JSON_BYTES, &json, &json_len, &err) != RD_OK ||
        rd_encoder_create(&enc, a->model, a->cli.cfg.encoder_threads, 1, &err) != RD_OK ||
        rd_retrieval_settings_resolve(&rs, &a->cli.cfg, json, &err) != RD_OK ||
        rd_index_seed_default_path(a->model, seed, sizeof seed, &err) != RD_OK ||
        open_store(a, &s, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    const rd_nn_info *info = rd_encoder_info(enc);
    if (info->n_labels != RD_FINDING_N_ABNORMAL || info->embedding_dim <= 0) {
        rd_cli_error(&a->cli, "%s: the model needs an embedding and 14 finding scores", a->model);
        rc = RD_EXIT_FAIL;
        goto out;
    }
    if (!a->all_patients) {
        const cJSON *ids = NULL, *v;
        doc = cJSON_ParseWithLength(json, json_len);
        const cJSON *split = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(doc, "training"), "split");
        /* A k-fold model's holdout (never trained on) first, else its validation split. */
        ids = cJSON_GetObjectItemCaseSensitive(split, "holdout_patient_ids");
        if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) == 0)
            ids = cJSON_GetObjectItemCaseSensitive(split, "val_patient_ids");
        if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) == 0) {
            rd_cli_error(&a->cli,
                         "%s: no training.split.holdout_patient_ids or val_patient_ids (a model "
                         "from radraft train); --patients all evaluates every image instead",
                         json_path);
            rc = RD_EXIT_USAGE;
            goto out;
        }
        if (!(val_ids = calloc((size_t)cJSON_GetArraySize(ids), sizeof *val_ids))) {
            rd_cli_error(&a->cli, "out of memory");
            rc = RD_EXIT_FAIL;
            goto out;
        }
        cJSON_ArrayForEach(v, ids) if (cJSON_IsString(v)) val_ids[n_val_ids++] = v->valuestring;
        qsort(val_ids, n_val_ids, sizeof *val_ids, cmp_cstr);
    }
    if (rd_index_load(&ix, s, info->version, info->embedding_dim,
                      a->cli.cfg.archive_load_seed ? seed : NULL, NULL, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    if (rd_index_count(ix) == 0) {
        rd_cli_error(&a->cli, "the archive holds nothing for model %s: import first",
                     info->version);
        rc = RD_EXIT_FAIL;
        goto out;
    }
    hits = calloc(EVAL_KMAX, sizeof *hits);
    emb = malloc((size_t)info->embedding_dim * sizeof *emb);
    scores = malloc(RD_FINDING_N_ABNORMAL * sizeof *scores);
    if (!hits || !emb || !scores || !(fp = fopen(a->nih, "r"))) {
        rd_cli_error(&a->cli, "%s",
                     hits && emb && scores ? "cannot open the CSV" : "out of memory");
        rc = RD_EXIT_FAIL;
        goto out;
    }
    while (fgets(line, sizeof line, fp)) {
        char *fld[6], path[4400], patient[RD_SHA256_HEX_SIZE], study[80];
        rd_finding_state st[RD_FINDING_COUNT];
        rd_image *img = NULL;
        rd_index_query q;
        rd_index_params p = rs.search;
        int n_hits = 0;
        if (++lineno == 1 || split_csv(line, fld, 6) != 6)
            continue;
        if (a->limit > 0 && n_items >= a->limit)
            break;
        if (!a->all_patients &&
            !bsearch(&(const char *){fld[1]}, val_ids, n_val_ids, sizeof *val_ids, cmp_cstr))
            continue;
        if (!plain_name(fld[0]) || nih_states(fld[5], st, &err) != RD_OK)
            continue;
        if (snprintf(path, sizeof path, "%s/%s", images, fld[0]) >= (int)sizeof path)
            continue; /* a name longer than any file name */
        if (rd_png_read(path, &img, NULL, &err) != RD_OK ||
            rd_encoder_embed(enc, img, emb, scores, &err) != RD_OK) {
            rd_log_warn("%s: %s", path, rd_error_message(&err));
            rd_image_free(img);
            continue;
        }
        rd_image_free(img);
        rd_index_patient_hash(a->cli.cfg.archive_patient_salt, fld[1], patient);
        snprintf(study, sizeof study, "nih:%.*s", (int)strcspn(fld[0], "."), fld[0]);
        memset(&q, 0, sizeof q);
        q.embedding = emb;
        q.study_uid = study;
        q.patient_hash = patient;
        q.view = rd_view_family_from_position(fld[2]);
        p.k = EVAL_KMAX;
        p.with_text = 0;
        if (rd_index_search(ix, &q, &p, hits, &n_hits, &err) != RD_OK) {
            rd_cli_error(&a->cli, "%s", rd_error_message(&err));
            rc = RD_EXIT_FAIL;
            goto out;
        }
        if (n_items == cap_items) {
            int nc = cap_items ? cap_items * 2 : 256;
            eval_item *ni = nc > 10000000 ? NULL : realloc(items, (size_t)nc * sizeof *ni);
            if (!ni) {
                rd_cli_error(&a->cli, "out of memory");
                rc = RD_EXIT_FAIL;
                goto out;
            }
            items = ni;
            cap_items = nc;
        }
        eval_item *it = &items[n_items++];
        memset(it, 0, sizeof *it);
        it->fold = str_hash_fold(patient);
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
            it->enc[f] = scores[f];
            it->label[f] = st[f] == RD_STATE_PRESENT;
        }
        it->n_hits = n_hits;
        for (int h = 0; h < n_hits; h++) {
            it->sim[h] = hits[h].similarity;
            for (int f = 0; f < RD_FINDING_COUNT; f++)
                it->state[h][f] = (unsigned char)hits[h].state[f];
        }
    }
    if (n_items < 2) {
        rd_cli_error(&a->cli, "only %d evaluation images found", n_items);
        rc = RD_EXIT_FAIL;
        goto out;
    }
    col = malloc((size_t)n_items * sizeof *col);
    lab = malloc((size_t)n_items);
    if (!col || !lab) {
        rd_cli_error(&a->cli, "out of memory");
        rc = RD_EXIT_FAIL;
        goto out;
    }
    {
        double enc_only, def, per_enc[RD_FINDING_N_ABNORMAL];
        double per_votes[RD_FINDING_N_ABNORMAL], per_comb[RD_FINDING_N_ABNORMAL];
        eval_choice c = eval_grid(items, n_items, col, lab);
        int bk = c.k;
        double bt = c.temp, bw = c.w, best = c.auroc, best_votes = c.best_votes;
        enc_only = macro_auroc(items, n_items, 1, 0, 1, 0, col, lab, per_enc);
        def = macro_auroc(items, n_items, 10, 0, 0.5, 2, col, lab, NULL);
        macro_auroc(items, n_items, bk, bt, 0, 1, col, lab, per_votes);
        macro_auroc(items, n_items, bk, bt, bw, 2, col, lab, per_comb);
        printf("evaluated %d images (%s) against %ld archive entries of model %s\n", n_items,
               a->all_patients ? "all patients" : "validation patients", rd_index_count(ix),
               info->version);
        printf("%-20s %9s %8s %8s %9s\n", "finding", "positives", "encoder", "votes", "combined");
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
            int pos = 0;
            for (int i = 0; i < n_items; i++)
                pos += items[i].label[f];
            printf("%-20s %9d %8.4f %8.4f %9.4f%s\n", rd_finding_name((rd_finding)f), pos,
                   per_enc[f], per_votes[f], per_comb[f],
                   pos < EVAL_MIN_POSITIVES ? "  (too few positives: not averaged)" : "");
        }
        printf("macro AUROC: encoder %.4f, best votes alone %.4f, combined %.4f at k=%d "
               "temperature=%g encoder_weight=%.1f (%+.4f over the encoder); defaults k=10 "
               "weight=0.5: %.4f (%+.4f)\n",
               enc_only, best_votes, best, bk, bt, bw, best - enc_only, def, def - enc_only);
        /* The choice above is measured on the images it was chosen on, which flatters it.
         * Two folds by patient give an honest estimate: choose on one half, measure the gain
         * over the encoder on the other. */
        {
            eval_item *fold[2] = {malloc((size_t)n_items * sizeof(eval_item)),
                                  malloc((size_t)n_items * sizeof(eval_item))};
            int nf[2] = {0, 0};
            if (fold[0] && fold[1]) {
                for (int i = 0; i < n_items; i++)
                    fold[items[i].fold][nf[items[i].fold]++] = items[i];
                printf("held-out (2 folds by patient, chosen on one, measured on the other):");
                for (int f = 0; f < 2; f++) {
                    const eval_item *other = fold[1 - f];
                    int no = nf[1 - f];
                    if (nf[f] < 2 || no < 2) {
                        printf(" fold too small");
                        break;
                    }
                    eval_choice cf = eval_grid(fold[f], nf[f], col, lab);
                    double e = macro_auroc(other, no, 1, 0, 1, 0, col, lab, NULL);
                    double m = macro_auroc(other, no, cf.k, cf.temp, cf.w, 2, col, lab, NULL);
                    printf("%s k=%d T=%g w=%.1f: %.4f vs encoder %.4f (%+.4f)", f ? ";" : "", cf.k,
                           cf.temp, cf.w, m, e, m - e);
                }
                printf("\n");
            }
            free(fold[0]);
            free(fold[1]);
        }
        printf("{\"retrieval\": {\"k\": %d, \"temperature\": %g, \"encoder_weight\": %.1f}}\n", bk,
               bt, bw);
        if (a->write_model) {
            if (write_retrieval(json_path, bk, bt, bw, &err) != RD_OK) {
                rd_cli_error(&a->cli, "%s", rd_error_message(&err));
                rc = RD_EXIT_FAIL;
            } else {
                printf("wrote the retrieval settings into %s\n", json_path);
            }
        }
    }
out:
    if (fp)
        fclose(fp);
    free(col);
    free(lab);
    free(items);
    free(hits);
    free(emb);
    free(scores);
    free(val_ids);
    cJSON_Delete(doc);
    free(json);
    rd_index_free(ix);
    rd_store_close(s);
    rd_encoder_free(enc);
    return rc;
}

int rd_cmd_archive(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"model", required_argument, NULL, OPT_MODEL},
        {"nih", required_argument, NULL, OPT_NIH},
        {"images", required_argument, NULL, OPT_IMAGES},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"dicom", no_argument, NULL, OPT_DICOM},
        {"reports", required_argument, NULL, OPT_REPORTS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"source", required_argument, NULL, OPT_SOURCE},
        {"model-version", required_argument, NULL, OPT_MODEL_VERSION},
        {"include-signed", no_argument, NULL, OPT_INCLUDE_SIGNED},
        {"patients", required_argument, NULL, OPT_PATIENTS},
        {"write", no_argument, NULL, OPT_WRITE},
        {"out", required_argument, NULL, 'o'},
        RD_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0}};
    archive_args a;
    int opt, rc;
    rd_error err;

    memset(&a, 0, sizeof a);
    a.source = RD_ARCHIVE_IMPORT;
    rd_cli_init(&a.cli, "radraft archive");
    if (!(a.sub = rd_cli_action(argc, argv, help, &rc)))
        return rc;
    argc--;
    argv++;
    while ((opt = rd_cli_getopt(&a.cli, argc, argv, "ho:", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_DATA_DIR:
            a.data_dir = optarg;
            break;
        case OPT_MODEL:
            a.model = optarg;
            break;
        case OPT_NIH:
            a.nih = optarg;
            break;
        case OPT_IMAGES:
            a.images = optarg;
            break;
        case OPT_LIMIT:
            if (rd_cli_parse_int(&a.cli, "--limit", optarg, 1, 100000000L, &a.limit))
                return RD_EXIT_USAGE;
            break;
        case OPT_DICOM:
            a.dicom = 1;
            break;
        case OPT_REPORTS:
            a.reports = optarg;
            break;
        case OPT_SEED:
            a.seed = optarg;
            break;
        case OPT_SOURCE:
            if (rd_archive_source_parse(optarg, &a.source, &err) != RD_OK ||
                a.source == RD_ARCHIVE_SEED) {
                rd_cli_error(&a.cli, "--source must be import or signed");
                return RD_EXIT_USAGE;
            }
            break;
        case OPT_MODEL_VERSION:
            a.model_version = optarg;
            break;
        case OPT_INCLUDE_SIGNED:
            a.include_signed = 1;
            break;
        case OPT_PATIENTS:
            if (strcmp(optarg, "val") != 0 && strcmp(optarg, "all") != 0) {
                rd_cli_error(&a.cli, "--patients must be val or all");
                return RD_EXIT_USAGE;
            }
            a.all_patients = strcmp(optarg, "all") == 0;
            break;
        case OPT_WRITE:
            a.write_model = 1;
            break;
        case 'o':
            a.out = optarg;
            break;
        }
    }
    if (opt < 0)
        return rc;
    a.paths = argv + optind;
    a.n_paths = argc - optind;
    /* The operands depend on the command, which checks them below. */
    if ((rc = rd_cli_finish(&a.cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    if (!a.data_dir)
        a.data_dir = a.cli.cfg.server_data_dir;
    if (!a.model)
        a.model = a.cli.cfg.encoder_model;
    if (strcmp(a.sub, "import") == 0)
        return cmd_import(&a);
    if (a.n_paths && strcmp(a.sub, "query") != 0) {
        rd_cli_error(&a.cli, "unexpected argument '%s'", a.paths[0]);
        return RD_EXIT_USAGE;
    }
    if (strcmp(a.sub, "list") == 0)
        return cmd_list_stats(&a, 0);
    if (strcmp(a.sub, "stats") == 0)
        return cmd_list_stats(&a, 1);
    if (strcmp(a.sub, "export-seed") == 0)
        return cmd_export_seed(&a);
    if (strcmp(a.sub, "query") == 0)
        return cmd_query(&a);
    if (strcmp(a.sub, "evaluate") == 0)
        return cmd_evaluate(&a);
    rd_cli_error(&a.cli,
                 "unknown archive command '%s' (import, list, stats, export-seed, query, "
                 "evaluate)",
                 a.sub);
    return RD_EXIT_USAGE;
}
