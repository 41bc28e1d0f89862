#include "radraft/pipeline.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "radraft/encoder.h"
#include "radraft/findings.h"
#include "radraft/generator.h"
#include "radraft/image.h"
#include "radraft/index.h"
#include "radraft/labeler.h"
#include "radraft/log.h"
#include "radraft/sr.h"
#include "radraft/version.h"
#include "base/util.h"

#define PL_PATH_MAX 1024
#define PL_MODEL_JSON_MAX (64u << 20)

/* Thresholds when neither generator.thresholds nor the model names any. */
static const char default_thresholds[] = "{\"default\": {\"present\": 0.5, \"uncertain\": 0.3}}";

struct rd_pipeline {
    rd_config cfg;
    char data_dir[PL_PATH_MAX];
    char sr_dir[PL_PATH_MAX];
    char model_path[PL_PATH_MAX];
    char model_name[128];
    char model_version[128];
    int encoder_threads;
    rd_encoder_model *model; /* loaded once; each worker's encoder runs over it */
    int enqueue;
    rd_thresholds th;
    rd_generator *gen;
    rd_labeler *lab;
    rd_index *ix; /* NULL when the model has no embedding */
    rd_retrieval_settings rs;
};

struct rd_pipeline_worker {
    rd_pipeline *p;
    rd_store *store;
    rd_encoder *enc;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

rd_status rd_pipeline_model_path(const rd_config *cfg, char *out, size_t size, rd_error *err)
{
    const char *m = cfg->encoder_model;
    if (!m[0])
        return rd_error_set(err, RD_E_CONFIG,
                            "no encoder model: set encoder.model (radraft model init makes an "
                            "untrained one for tests)");
    if (rd_strlcpy(out, m, size) >= size)
        return rd_error_set(err, RD_E_CONFIG, "encoder.model: path too long");
    return RD_OK;
}

void rd_pipeline_plan_threads(const rd_config *cfg, int batch, int *workers, int *threads)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int c = cores > 0 && cores < 4096 ? (int)cores : 1;
    int w = cfg->pipeline_workers;
    int t = cfg->encoder_threads;
    if (w <= 0)
        w = batch ? c : (c / 2 > 1 ? c / 2 : 1);
    if (t <= 0 || w * t > c)
        t = c / w > 1 ? c / w : 1;
    *workers = w;
    *threads = t;
}

const char *rd_pipeline_outcome_name(rd_pipeline_outcome o)
{
    switch (o) {
    case RD_PIPELINE_DRAFTED:
        return "drafted";
    case RD_PIPELINE_SKIPPED:
        return "skipped";
    case RD_PIPELINE_DONE_BEFORE:
        return "done before";
    }
    return "?";
}

int rd_pipeline_status_retriable(rd_status st)
{
    return st == RD_E_IO || st == RD_E_DB || st == RD_E_NOMEM || st == RD_E_NET;
}

/* ---- creation ------------------------------------------------------------------- */

/* The model description's text: the JSON itself, or model.json inside a folder. */
static rd_status read_model_json(const char *model, char **text, rd_error *err)
{
    char path[PL_PATH_MAX + 16];
    struct stat sb;
    size_t len;
    if (stat(model, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(path, sizeof path, "%s/model.json", model);
    else
        rd_strlcpy(path, model, sizeof path);
    return rd_read_file(path, PL_MODEL_JSON_MAX, text, &len, err);
}

/* The seed archive beside the model, when the model is a folder. */
static void seed_path(const char *model, char *out, size_t size)
{
    struct stat sb;
    const char *slash;
    if (stat(model, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(out, size, "%s/%s", model, RD_INDEX_SEED_FILE);
        return;
    }
    slash = strrchr(model, '/');
    if (slash)
        snprintf(out, size, "%.*s/%s", (int)(slash - model), model, RD_INDEX_SEED_FILE);
    else
        snprintf(out, size, "%s", RD_INDEX_SEED_FILE);
}

/* Thresholds: generator.thresholds, else the model's "thresholds", else the default. */
static rd_status load_thresholds(rd_pipeline *p, const char *model_json, rd_error *err)
{
    cJSON *root;
    int has;
    if (p->cfg.generator_thresholds[0])
        return rd_thresholds_load(&p->th, p->cfg.generator_thresholds, err);
    root = cJSON_Parse(model_json);
    has = root && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "thresholds"));
    cJSON_Delete(root);
    if (has)
        return rd_thresholds_parse(&p->th, model_json, p->model_path, err);
    return rd_thresholds_parse(&p->th, default_thresholds, "built-in thresholds", err);
}

/* An SR is written to "<name>.tmp-XXXXXX" and renamed into place; a process killed in
 * between leaves the temporary behind. Nothing else writes there, and one radraft process
 * drafts into a folder at a time, so whatever temporary is there at start-up is stale. */
static void remove_stale_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[PL_PATH_MAX + 256];
        if (!strstr(e->d_name, "-sr.dcm.tmp-"))
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        if (unlink(path) == 0)
            rd_log_warn("pipeline: removed %s, left by an interrupted SR write", path);
    }
    closedir(d);
}

rd_status rd_pipeline_create(rd_pipeline **out, const rd_config *cfg,
                             const rd_pipeline_options *opts, rd_error *err)
{
    rd_pipeline *p = calloc(1, sizeof *p);
    char *model_json = NULL;
    rd_store *store = NULL;
    rd_status st;

    if (!p)
        return rd_error_set(err, RD_E_NOMEM, "out of memory creating the pipeline");
    p->cfg = *cfg;
    p->encoder_threads = opts && opts->encoder_threads > 0 ? opts->encoder_threads : 1;
    p->enqueue = opts ? opts->enqueue : 0;
    rd_strlcpy(p->data_dir, opts && opts->data_dir ? opts->data_dir : cfg->server_data_dir,
               sizeof p->data_dir);
    if (opts && opts->sr_dir) {
        if (rd_strlcpy(p->sr_dir, opts->sr_dir, sizeof p->sr_dir) >= sizeof p->sr_dir - 200) {
            st = rd_error_set(err, RD_E_INVALID, "SR folder path too long");
            goto out;
        }
    } else if (snprintf(p->sr_dir, sizeof p->sr_dir, "%s/sr", p->data_dir) >=
               (int)sizeof p->sr_dir - 200) {
        st = rd_error_set(err, RD_E_INVALID, "data directory path too long");
        goto out;
    }
    if ((st = rd_mkdirs(p->sr_dir, err)) == RD_OK)
        remove_stale_temporaries(p->sr_dir);
    if (st != RD_OK)
        goto out;
    if ((st = rd_pipeline_model_path(cfg, p->model_path, sizeof p->model_path, err)) != RD_OK)
        goto out;
    if ((st = read_model_json(p->model_path, &model_json, err)) != RD_OK)
        goto out;
    /* The weights are loaded once here; every worker's encoder shares them. */
    if ((st = rd_encoder_model_load(&p->model, p->model_path, err)) != RD_OK)
        goto out;
    const rd_nn_info *info = rd_encoder_model_info(p->model);
    rd_strlcpy(p->model_name, info->name ? info->name : "model", sizeof p->model_name);
    rd_strlcpy(p->model_version, info->version ? info->version : "0", sizeof p->model_version);
    if ((st = load_thresholds(p, model_json, err)) != RD_OK)
        goto out;
    if ((st = rd_generator_create(&p->gen, cfg->generator_templates, err)) != RD_OK)
        goto out;
    if ((st = rd_labeler_create_from_config(&p->lab, cfg, err)) != RD_OK)
        goto out;
    if ((st = rd_retrieval_settings_resolve(&p->rs, cfg, model_json, err)) != RD_OK)
        goto out;
    p->rs.search.with_text = 1; /* the generator may reuse a neighbour's sentence */
    if (info->embedding_dim > 0) {
        char seed[PL_PATH_MAX + 64];
        long n_seeded = 0;
        seed_path(p->model_path, seed, sizeof seed);
        if ((st = rd_store_open(&store, p->data_dir, NULL, err)) != RD_OK)
            goto out;
        if ((st = rd_index_load(&p->ix, store, p->model_version, info->embedding_dim,
                                cfg->archive_load_seed ? seed : NULL, &n_seeded, err)) != RD_OK)
            goto out;
        if (n_seeded > 0)
            rd_log_info("pipeline: imported %ld seed archive entries from %s", n_seeded, seed);
    }
    rd_log_info("pipeline: model %s (%s), archive of %ld studies, SRs into %s", p->model_name,
                p->model_version, p->ix ? rd_index_count(p->ix) : 0L, p->sr_dir);
out:
    rd_store_close(store);
    free(model_json);
    if (st != RD_OK) {
        rd_pipeline_free(p);
        return st;
    }
    *out = p;
    return RD_OK;
}

void rd_pipeline_free(rd_pipeline *p)
{
    if (!p)
        return;
    rd_index_free(p->ix);
    rd_labeler_free(p->lab);
    rd_generator_free(p->gen);
    rd_encoder_model_free(p->model);
    free(p);
}

const char *rd_pipeline_sr_dir(const rd_pipeline *p)
{
    return p->sr_dir;
}

long rd_pipeline_archive_size(rd_pipeline *p)
{
    return p->ix ? rd_index_count(p->ix) : 0;
}

rd_status rd_pipeline_worker_create(rd_pipeline_worker **out, rd_pipeline *p, rd_error *err)
{
    rd_pipeline_worker *w = calloc(1, sizeof *w);
    rd_status st;
    if (!w)
        return rd_error_set(err, RD_E_NOMEM, "out of memory creating a worker");
    w->p = p;
    if ((st = rd_store_open(&w->store, p->data_dir, NULL, err)) != RD_OK ||
        (st = rd_encoder_create_shared(&w->enc, p->model, p->encoder_threads, 1, err)) != RD_OK) {
        rd_pipeline_worker_free(w);
        return st;
    }
    *out = w;
    return RD_OK;
}

void rd_pipeline_worker_free(rd_pipeline_worker *w)
{
    if (!w)
        return;
    rd_encoder_free(w->enc);
    rd_store_close(w->store);
    free(w);
}

rd_store *rd_pipeline_worker_store(rd_pipeline_worker *w)
{
    return w->store;
}

/* ---- frontal image ---------------------------------------------------------------- */

int rd_pipeline_is_lateral(const rd_dicom_meta *m)
{
    return strcmp(m->view_position, "LL") == 0 || strcmp(m->view_position, "RL") == 0 ||
           strcmp(m->view_position, "LATERAL") == 0 || strcmp(m->view_position, "LAT") == 0;
}

/* Left-right symmetry of the body in an image. On a 128 x 128 copy, the band of rows from
 * 20% to 70% of the height (the chest) is cut to the body's columns (those brighter than
 * halfway between the darkest and brightest column means), and the correlation of that cut
 * with its mirror image is the answer. A frontal chest radiograph is close to
 * mirror-symmetric about the spine; a lateral is not (spine to one side, sternum to the
 * other), even though its body outline is. Returns -2 when the image cannot be decoded. */
static double symmetry(const char *path)
{
    enum { S = 128 };
    rd_image *img = NULL, *small = NULL;
    double r = -2, prof[S], lo = 1e30, hi = -1e30;
    const int y0 = S / 5, y1 = S * 7 / 10;
    if (rd_dicom_read_image(path, NULL, &img, NULL, NULL) != RD_OK ||
        rd_image_resize(img, S, S, &small, NULL) != RD_OK)
        goto out;
    for (int x = 0; x < S; x++) {
        prof[x] = 0;
        for (int y = y0; y < y1; y++)
            prof[x] += small->data[y * S + x];
        prof[x] /= y1 - y0;
        lo = prof[x] < lo ? prof[x] : lo;
        hi = prof[x] > hi ? prof[x] : hi;
    }
    int c0 = 0, c1 = S - 1;
    while (c0 < S - 1 && prof[c0] <= lo + 0.5 * (hi - lo))
        c0++;
    while (c1 > 0 && prof[c1] <= lo + 0.5 * (hi - lo))
        c1--;
    if (c1 - c0 < 8) {
        r = 0;
        goto out;
    }
    double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0, n = 0;
    for (int y = y0; y < y1; y++) {
        for (int x = c0; x <= c1; x++) {
            double a = small->data[y * S + x], b = small->data[y * S + (c0 + c1 - x)];
            sa += a;
            sb += b;
            sab += a * b;
            saa += a * a;
            sbb += b * b;
            n++;
        }
    }
    double cov = sab - sa * sb / n, va = saa - sa * sa / n, vb = sbb - sb * sb / n;
    r = va > 0 && vb > 0 ? cov / sqrt(va * vb) : 0;
out:
    rd_log_debug("%s: left-right symmetry %.3f", path, r);
    rd_image_free(small);
    rd_image_free(img);
    return r;
}

int rd_pipeline_choose_frontal(const char *const *files, const rd_dicom_meta *metas, int n,
                               const char **rule)
{
    const char *why = "none found";
    int best = -1;
    double best_s = -1.5;
    for (int i = 0; i < n; i++)
        if (strcmp(metas[i].view_position, "PA") == 0) {
            if (rule)
                *rule = "view position PA";
            return i;
        }
    for (int i = 0; i < n; i++)
        if (strcmp(metas[i].view_position, "AP") == 0) {
            if (rule)
                *rule = "view position AP";
            return i;
        }
    for (int i = 0; i < n; i++) {
        if (!metas[i].has_pixel_data || rd_pipeline_is_lateral(&metas[i]))
            continue;
        double s = symmetry(files[i]);
        if (s > best_s) {
            best_s = s;
            best = i;
        }
    }
    if (best >= 0)
        why = "most left-right symmetric image";
    if (rule)
        *rule = why;
    return best;
}

/* ---- one study -------------------------------------------------------------------- */

static int chest_like(const char *body_part)
{
    static const char *const words[] = {"CHEST", "THORAX", "LUNG", "THORACIC"};
    char up[72];
    size_t i;
    if (!body_part[0])
        return 1; /* many chest radiographs do not say; the other checks still apply */
    for (i = 0; body_part[i] && i < sizeof up - 1; i++)
        up[i] = (char)toupper((unsigned char)body_part[i]);
    up[i] = '\0';
    for (i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(up, words[i]))
            return 1;
    return 0;
}

static int radiograph_modality(const char *m)
{
    return strcmp(m, "CR") == 0 || strcmp(m, "DX") == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* SHA-256 of the sorted SOP Instance UIDs of the instances with pixel data (all instances
 * when none has any), one per line. */
static rd_status content_version(const rd_dicom_meta *metas, int n, char out[65], rd_error *err)
{
    const char **uids = calloc((size_t)n, sizeof *uids);
    char *buf = NULL;
    size_t len = 0, pos = 0;
    int m = 0, any_image = 0;
    for (int i = 0; i < n; i++)
        any_image |= metas[i].has_pixel_data;
    if (!uids)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        if (metas[i].has_pixel_data || !any_image) {
            uids[m++] = metas[i].sop_instance_uid;
            len += strlen(metas[i].sop_instance_uid) + 1;
        }
    qsort(uids, (size_t)m, sizeof *uids, cmp_str);
    buf = malloc(len + 1);
    if (!buf) {
        free(uids);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < m; i++) {
        size_t l = strlen(uids[i]);
        memcpy(buf + pos, uids[i], l);
        pos += l;
        buf[pos++] = '\n';
    }
    rd_sha256_hex(buf, pos, out);
    free(buf);
    free(uids);
    return RD_OK;
}

/* A study that gets no draft: fills in the reason and, when `record`, records it as the
 * outcome of the study's content version. */
static rd_status skip(rd_pipeline_worker *w, int record, rd_pipeline_draft *d, rd_error *err,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static rd_status skip(rd_pipeline_worker *w, int record, rd_pipeline_draft *d, rd_error *err,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
    d->outcome = RD_PIPELINE_SKIPPED;
    if (!record)
        return RD_OK;
    rd_status st = rd_store_study_skip(w->store, d->study_uid, d->content_version, d->reason, err);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "record");
    rd_log_info("pipeline: study %s: no draft: %s", d->study_uid, d->reason);
    return RD_OK;
}

/* The retrieval stage: the top-k similar archive studies of the frontal image and their
 * votes combined with the encoder's scores into `combined`. Without an archive (or an
 * empty one) the encoder's scores pass through. `hits` has room for rs.search.k hits. */
static rd_status retrieve(rd_pipeline_worker *w, const rd_dicom_meta *frontal,
                          const float *embedding, const double *enc_scores, rd_index_hit *hits,
                          int *n_hits, double votes[RD_FINDING_COUNT],
                          double combined[RD_FINDING_N_ABNORMAL], rd_error *err)
{
    rd_pipeline *p = w->p;
    rd_index_query q;
    char patient[65];
    double total;
    rd_status st;
    *n_hits = 0;
    for (int f = 0; f < RD_FINDING_COUNT; f++)
        votes[f] = 0;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        combined[f] = enc_scores ? enc_scores[f] : 0;
    if (!p->ix || rd_index_count(p->ix) == 0)
        return RD_OK;
    memset(&q, 0, sizeof q);
    rd_index_patient_hash(p->cfg.archive_patient_salt, frontal->patient_id, patient);
    q.embedding = embedding;
    q.study_uid = frontal->study_uid;
    q.patient_hash = frontal->patient_id[0] ? patient : NULL;
    q.view = rd_view_family_from_position(frontal->view_position);
    if (q.view == RD_VIEW_UNKNOWN)
        q.view = RD_VIEW_FRONTAL; /* the frontal image was chosen as such */
    q.study_date = rd_index_parse_date(frontal->study_date);
    if ((st = rd_index_search(p->ix, &q, &p->rs.search, hits, n_hits, err)) != RD_OK)
        return st;
    total = rd_index_votes(hits, *n_hits, &p->rs.votes, votes);
    rd_index_combine(enc_scores, votes, total, &p->rs.votes, combined);
    return RD_OK;
}

static double clamp01(double x)
{
    return !(x >= 0) ? 0 : x > 1 ? 1 : x;
}

/* The review item's JSON: per finding its drafted state, the combined score, the
 * encoder's score and the neighbours' vote; the neighbours with their similarity. */
static rd_status review_json(const rd_pipeline_draft *d, char **findings, char **neighbours,
                             rd_error *err)
{
    cJSON *fo = cJSON_CreateObject(), *no = cJSON_CreateArray();
    rd_status st = RD_OK;
    *findings = *neighbours = NULL;
    if (!fo || !no)
        goto nomem;
    for (int f = 0; f < RD_FINDING_COUNT; f++) {
        cJSON *o = cJSON_AddObjectToObject(fo, rd_finding_name((rd_finding)f));
        if (!o || !cJSON_AddStringToObject(o, "state", rd_state_name(d->draft.state[f])))
            goto nomem;
        if (f < RD_FINDING_N_ABNORMAL) {
            cJSON_AddNumberToObject(o, "score", d->combined[f]);
            if (d->has_encoder_scores)
                cJSON_AddNumberToObject(o, "encoder", d->encoder[f]);
        }
        if (d->n_neighbours > 0)
            cJSON_AddNumberToObject(o, "votes", d->votes[f]);
    }
    for (int i = 0; i < d->n_neighbours; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(no, o)) {
            cJSON_Delete(o);
            goto nomem;
        }
        cJSON_AddNumberToObject(o, "id", (double)d->neighbours[i].id);
        cJSON_AddNumberToObject(o, "similarity", d->neighbours[i].similarity);
        cJSON_AddStringToObject(o, "study_uid", d->neighbours[i].study_uid);
    }
    *findings = cJSON_PrintUnformatted(fo);
    *neighbours = cJSON_PrintUnformatted(no);
    if (!*findings || !*neighbours) {
        cJSON_free(*findings);
        cJSON_free(*neighbours);
        *findings = *neighbours = NULL;
        goto nomem;
    }
    goto out;
nomem:
    st = rd_error_set(err, RD_E_NOMEM, "out of memory writing the review item");
out:
    cJSON_Delete(fo);
    cJSON_Delete(no);
    return st;
}

void rd_pipeline_draft_free(rd_pipeline_draft *d)
{
    if (!d)
        return;
    rd_draft_free(&d->draft);
    free(d->neighbours);
    memset(d, 0, sizeof *d);
    d->frontal = -1;
    d->frontal_rule = "";
}

/* The stages from read to write, shared by rd_pipeline_draft_files (record == 0: nothing
 * touches the store) and rd_pipeline_run_study (record != 0: a content version processed
 * before is not drafted again, its review id going to *done_review_id, and skips are
 * recorded). `d` is initialized here and always left for rd_pipeline_draft_free. */
static rd_status draft_study(rd_pipeline_worker *w, const char *const *files, int n,
                             const char *sr_path, int record, rd_pipeline_draft *d,
                             int64_t *done_review_id, rd_error *err)
{
    rd_pipeline *p = w->p;
    rd_dicom_meta *metas = NULL;
    const char **img_files = NULL;
    rd_dicom_meta *img_metas = NULL;
    int *cand = NULL;
    rd_image *img = NULL;
    float *embedding = NULL, *fscores = NULL;
    rd_index_hit *hits = NULL;
    rd_evidence_case *evidence = NULL;
    rd_status st = RD_OK;
    int n_read = 0, n_img = 0, n_cand = 0, n_hits = 0;
    double t;
    const char *study = "";

    memset(d, 0, sizeof *d);
    d->frontal = -1;
    d->frontal_rule = "";
    rd_strlcpy(d->model_name, p->model_name, sizeof d->model_name);
    rd_strlcpy(d->model_version, p->model_version, sizeof d->model_version);
    if (n < 1 || n > RD_SR_MAX_SOURCES)
        return rd_error_set(err, RD_E_INVALID, "read: a study of %d instances (1..%d)", n,
                            RD_SR_MAX_SOURCES);

    /* read: every instance's metadata; the instances of the first readable one's study. */
    t = now_ms();
    metas = calloc((size_t)n, sizeof *metas);
    img_files = calloc((size_t)n, sizeof *img_files);
    img_metas = calloc((size_t)n, sizeof *img_metas);
    cand = calloc((size_t)n, sizeof *cand);
    if (!metas || !img_files || !img_metas || !cand) {
        st = rd_error_set(err, RD_E_NOMEM, "read: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        rd_error e;
        rd_status rs = rd_dicom_read_meta(files[i], &metas[n_read], &e);
        if (rs != RD_OK) {
            if (rd_pipeline_status_retriable(rs)) {
                st = rd_error_set(err, rs, "read: %s", rd_error_message(&e));
                goto out;
            }
            rd_log_warn("pipeline: ignoring %s: %s", files[i], rd_error_message(&e));
            continue;
        }
        if (n_read > 0 && strcmp(metas[n_read].study_uid, metas[0].study_uid) != 0) {
            rd_log_warn("pipeline: ignoring %s: it belongs to another study", files[i]);
            continue;
        }
        if (metas[n_read].has_pixel_data) {
            img_files[n_img] = files[i];
            img_metas[n_img++] = metas[n_read];
        }
        n_read++;
    }
    if (n_read == 0) {
        st = rd_error_set(err, RD_E_DICOM, "read: no readable DICOM instance among %d files", n);
        goto out;
    }
    study = metas[0].study_uid;
    if (!rd_store_uid_valid(study)) {
        st = rd_error_set(err, RD_E_INVALID, "read: %s: malformed Study Instance UID", files[0]);
        goto out;
    }
    rd_strlcpy(d->study_uid, study, sizeof d->study_uid);
    if ((st = content_version(metas, n_read, d->content_version, err)) != RD_OK)
        goto out;
    d->ms_read = now_ms() - t;

    /* Drafted (or skipped) before for this content version: nothing to do. */
    if (record) {
        rd_store_study_version sv;
        if ((st = rd_store_study_version_get(w->store, study, d->content_version, &sv, err)) !=
            RD_OK) {
            st = rd_error_prefix(err, st, "read");
            goto out;
        }
        if (sv.found) {
            d->outcome = RD_PIPELINE_DONE_BEFORE;
            *done_review_id = sv.review_id;
            rd_strlcpy(d->reason, sv.drafted ? "" : sv.reason, sizeof d->reason);
            goto out;
        }
    }

    /* check: a chest radiograph with an image. */
    if (n_img == 0) {
        st = skip(w, record, d, err, "no image: none of the %d instances has pixel data", n_read);
        goto out;
    }
    for (int i = 0; i < n_img; i++)
        if (radiograph_modality(img_metas[i].modality))
            cand[n_cand++] = i;
    if (n_cand == 0) {
        st = skip(w, record, d, err, "not a chest radiograph: modality %s (CR or DX expected)",
                  img_metas[0].modality[0] ? img_metas[0].modality : "(none)");
        goto out;
    }
    {
        int k = 0;
        for (int i = 0; i < n_cand; i++)
            if (chest_like(img_metas[cand[i]].body_part))
                cand[k++] = cand[i];
        if (k == 0) {
            st = skip(w, record, d, err, "not a chest radiograph: body part %s",
                      img_metas[cand[0]].body_part);
            goto out;
        }
        n_cand = k;
    }

    /* frontal */
    {
        const char **cf = calloc((size_t)n_cand, sizeof *cf);
        rd_dicom_meta *cm = calloc((size_t)n_cand, sizeof *cm);
        const char *rule = "";
        int f = -1;
        if (cf && cm) {
            for (int i = 0; i < n_cand; i++) {
                cf[i] = img_files[cand[i]];
                cm[i] = img_metas[cand[i]];
            }
            f = rd_pipeline_choose_frontal(cf, cm, n_cand, &rule);
        }
        free(cf);
        free(cm);
        if (!cf || !cm) {
            st = rd_error_set(err, RD_E_NOMEM, "frontal: out of memory");
            goto out;
        }
        if (f < 0) {
            st = skip(w, record, d, err, "no usable image: no frontal view among %d image(s)",
                      n_cand);
            goto out;
        }
        int fi = cand[f];
        cand[0] = fi; /* the frontal image's index in img_* from here on */
        d->frontal_rule = rule;
        for (int i = 0; i < n; i++)
            if (files[i] == img_files[fi]) {
                d->frontal = i;
                break;
            }
        rd_log_debug("pipeline: study %s: frontal %s (%s)", study, img_files[fi], rule);
    }
    const rd_dicom_meta *fm = &img_metas[cand[0]];
    const char *ffile = img_files[cand[0]];
    rd_strlcpy(d->frontal_sop_instance_uid, fm->sop_instance_uid,
               sizeof d->frontal_sop_instance_uid);

    /* decode */
    t = now_ms();
    {
        rd_dicom_options dopts;
        rd_error e;
        rd_dicom_options_from_config(&dopts, &p->cfg);
        rd_status ds = rd_dicom_read_image(ffile, &dopts, &img, NULL, &e);
        if (ds != RD_OK) {
            if (rd_pipeline_status_retriable(ds)) {
                st = rd_error_set(err, ds, "decode: %s", rd_error_message(&e));
                goto out;
            }
            st = skip(w, record, d, err, "no usable image: %s", rd_error_message(&e));
            goto out;
        }
    }
    d->ms_decode = now_ms() - t;

    /* embed */
    t = now_ms();
    const rd_nn_info *info = rd_encoder_info(w->enc);
    d->has_encoder_scores = info->n_labels == RD_FINDING_N_ABNORMAL;
    embedding = calloc((size_t)(info->embedding_dim > 0 ? info->embedding_dim : 1), sizeof(float));
    fscores = calloc(RD_FINDING_N_ABNORMAL, sizeof(float));
    if (!embedding || !fscores) {
        st = rd_error_set(err, RD_E_NOMEM, "embed: out of memory");
        goto out;
    }
    if ((st = rd_encoder_embed(w->enc, img, embedding, d->has_encoder_scores ? fscores : NULL,
                               err)) != RD_OK) {
        st = rd_error_prefix(err, st, "embed");
        goto out;
    }
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        d->encoder[f] = d->has_encoder_scores ? fscores[f] : 0;
    d->ms_embed = now_ms() - t;

    /* retrieve + combine */
    t = now_ms();
    hits = calloc((size_t)(p->rs.search.k > 0 ? p->rs.search.k : 1), sizeof *hits);
    if (!hits) {
        st = rd_error_set(err, RD_E_NOMEM, "retrieve: out of memory");
        goto out;
    }
    if ((st = retrieve(w, fm, embedding, d->has_encoder_scores ? d->encoder : NULL, hits, &n_hits,
                       d->votes, d->combined, err)) != RD_OK) {
        st = rd_error_prefix(err, st, "retrieve");
        goto out;
    }
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        d->combined[f] = clamp01(d->combined[f]);
    if (n_hits > 0) {
        d->neighbours = calloc((size_t)n_hits, sizeof *d->neighbours);
        if (!d->neighbours) {
            st = rd_error_set(err, RD_E_NOMEM, "retrieve: out of memory");
            goto out;
        }
        for (int i = 0; i < n_hits; i++) {
            d->neighbours[i].id = hits[i].id;
            d->neighbours[i].similarity = hits[i].similarity;
            rd_strlcpy(d->neighbours[i].study_uid, hits[i].study_uid,
                       sizeof d->neighbours[i].study_uid);
        }
        d->n_neighbours = n_hits;
    }
    d->ms_retrieve = now_ms() - t;

    /* generate */
    t = now_ms();
    if (n_hits > 0) {
        evidence = calloc((size_t)n_hits, sizeof *evidence);
        if (!evidence) {
            st = rd_error_set(err, RD_E_NOMEM, "generate: out of memory");
            goto out;
        }
        rd_index_evidence(hits, n_hits, evidence);
    }
    if ((st = rd_generator_draft_scores(p->gen, d->combined, &p->th, evidence, (size_t)n_hits,
                                        p->lab, &d->draft, err)) != RD_OK) {
        st = rd_error_prefix(err, st, "generate");
        goto out;
    }
    d->ms_generate = now_ms() - t;

    /* write: by default the draft SR is named by study and content version, so that a rerun
     * after a crash rewrites the same file rather than adding a second one. */
    t = now_ms();
    rd_sr_finding coded[RD_FINDING_N_ABNORMAL];
    rd_sr_params sp;
    for (int i = 0; i < d->draft.n_items; i++) {
        coded[i].name = rd_finding_name(d->draft.items[i].finding);
        coded[i].state = d->draft.items[i].state;
        coded[i].score = d->combined[d->draft.items[i].finding];
    }
    if (sr_path ? rd_strlcpy(d->sr_path, sr_path, sizeof d->sr_path) >= sizeof d->sr_path
                : snprintf(d->sr_path, sizeof d->sr_path, "%s/%s-%.16s-draft-sr.dcm", p->sr_dir,
                           study, d->content_version) >= (int)sizeof d->sr_path) {
        d->sr_path[0] = '\0';
        st = rd_error_set(err, RD_E_INVALID, "write: SR path too long");
        goto out;
    }
    rd_sr_params_init(&sp);
    sp.sources = img_files;
    sp.n_sources = (size_t)n_img;
    sp.findings_text = d->draft.findings_text;
    sp.impression_text = d->draft.impression_text;
    sp.findings = coded;
    sp.n_findings = (size_t)d->draft.n_items;
    /* The SR names the model (Manufacturer's Model Name, LO) and its version (a value of
     * Software Versions, LO): at most 64 characters each, so longer ones are cut. */
    char sr_model[65], sr_version[65];
    rd_strlcpy(sr_model, p->model_name, sizeof sr_model);
    rd_strlcpy(sr_version, p->model_version, sizeof sr_version);
    sp.model_name = sr_model;
    sp.model_version = sr_version;
    if ((st = rd_sr_write_draft(&sp, d->sr_path, &d->sr, err)) != RD_OK) {
        st = rd_error_prefix(err, st, "write");
        goto out;
    }
    if (d->sr.warning[0])
        rd_log_warn("pipeline: study %s: SR: %s", study, d->sr.warning);
    d->ms_write = now_ms() - t;
    d->outcome = RD_PIPELINE_DRAFTED;
out:
    free(evidence);
    if (hits)
        rd_index_hits_clear(hits, n_hits);
    free(hits);
    free(fscores);
    free(embedding);
    rd_image_free(img);
    free(cand);
    free(img_metas);
    free(img_files);
    free(metas);
    return st;
}

rd_status rd_pipeline_draft_files(rd_pipeline_worker *w, const char *const *files, int n,
                                  const char *sr_path, rd_pipeline_draft *d, rd_error *err)
{
    int64_t unused = 0;
    return draft_study(w, files, n, sr_path, 0, d, &unused, err);
}

rd_status rd_pipeline_run_study(rd_pipeline_worker *w, const char *const *files, int n,
                                rd_pipeline_result *res, rd_error *err)
{
    rd_pipeline *p = w->p;
    rd_pipeline_draft d;
    char *findings_json = NULL, *neighbours_json = NULL;
    rd_status st;
    double t;

    memset(res, 0, sizeof *res);
    st = draft_study(w, files, n, NULL, 1, &d, &res->review_id, err);
    rd_strlcpy(res->study_uid, d.study_uid, sizeof res->study_uid);
    rd_strlcpy(res->content_version, d.content_version, sizeof res->content_version);
    rd_strlcpy(res->reason, d.reason, sizeof res->reason);
    res->outcome = d.outcome;
    res->n_neighbours = d.n_neighbours;
    res->ms_read = d.ms_read;
    res->ms_decode = d.ms_decode;
    res->ms_embed = d.ms_embed;
    res->ms_retrieve = d.ms_retrieve;
    res->ms_generate = d.ms_generate;
    res->ms_write = d.ms_write;
    if (st != RD_OK || d.outcome != RD_PIPELINE_DRAFTED)
        goto out;
    rd_strlcpy(res->sr_path, d.sr_path, sizeof res->sr_path);
    for (int i = 0; i < d.draft.n_items; i++) {
        if (d.draft.items[i].state == RD_STATE_PRESENT)
            res->n_present++;
        else
            res->n_uncertain++;
    }

    /* record: the review item, the study version and the deliveries, together. */
    t = now_ms();
    if ((st = review_json(&d, &findings_json, &neighbours_json, err)) != RD_OK) {
        st = rd_error_prefix(err, st, "record");
        goto out;
    }
    {
        rd_store_review r;
        const char *dests[RD_CONFIG_LIST_MAX];
        int nd = 0, added = 0;
        if (p->enqueue)
            for (int i = 0; i < p->cfg.outbox_destinations.count; i++)
                dests[nd++] = p->cfg.outbox_destinations.items[i];
        memset(&r, 0, sizeof r);
        r.study_uid = d.study_uid;
        r.content_version = d.content_version;
        r.sr_path = d.sr_path;
        r.sr_sop_instance_uid = d.sr.sop_instance_uid;
        r.frontal_sop_instance_uid = d.frontal_sop_instance_uid;
        r.model_version = d.model_version;
        r.findings_text = d.draft.findings_text;
        r.impression_text = d.draft.impression_text;
        r.findings_json = findings_json;
        r.neighbours_json = neighbours_json;
        if ((st = rd_store_review_add(w->store, &r, dests, nd, &res->review_id, &added, err)) !=
            RD_OK) {
            st = rd_error_prefix(err, st, "record");
            goto out;
        }
        res->outcome = added ? RD_PIPELINE_DRAFTED : RD_PIPELINE_DONE_BEFORE;
    }
    res->ms_record = now_ms() - t;
    rd_log_info("pipeline: study %s drafted: %d present, %d uncertain, %d neighbours, SR %s",
                d.study_uid, res->n_present, res->n_uncertain, d.n_neighbours, res->sr_path);
out:
    cJSON_free(findings_json);
    cJSON_free(neighbours_json);
    rd_pipeline_draft_free(&d);
    return st;
}

/* ---- jobs and the pool ------------------------------------------------------------ */

rd_status rd_pipeline_run_job(rd_pipeline_worker *w, const rd_store_job *job,
                              rd_pipeline_result *res, rd_error *err)
{
    rd_pipeline_result local;
    char **files = NULL;
    int n = 0;
    rd_error e;
    rd_status st, fst;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    st = rd_store_study_files(w->store, job->study_uid, &files, &n, &e);
    if (st == RD_OK && n == 0)
        st = rd_error_set(&e, RD_E_NOT_FOUND, "read: study %s has no stored instance",
                          job->study_uid);
    if (st == RD_OK)
        st = rd_pipeline_run_study(w, (const char *const *)files, n, res, &e);
    rd_store_free_paths(files, n);
    if (st == RD_OK) {
        fst = rd_store_job_finish(w->store, job->id, NULL, err);
        if (res->outcome == RD_PIPELINE_DONE_BEFORE)
            rd_log_info("pipeline: job %lld: study %s: this version was processed before",
                        (long long)job->id, job->study_uid);
        return fst;
    }
    if (rd_pipeline_status_retriable(st) && job->attempts < w->p->cfg.pipeline_retry_max_attempts) {
        double delay = 2;
        for (int i = 1; i < job->attempts && delay < 300; i++)
            delay *= 2;
        rd_log_warn("pipeline: job %lld: study %s: attempt %d failed, retrying in %.0f s: %s",
                    (long long)job->id, job->study_uid, job->attempts, delay, rd_error_message(&e));
        fst = rd_store_job_retry(w->store, job->id, rd_error_message(&e), delay, err);
    } else {
        rd_log_error("pipeline: job %lld: study %s failed: %s", (long long)job->id, job->study_uid,
                     rd_error_message(&e));
        fst = rd_store_job_finish(w->store, job->id, rd_error_message(&e), err);
    }
    if (fst != RD_OK)
        return fst;
    if (err)
        *err = e;
    return st;
}

struct rd_pipeline_pool {
    rd_pipeline *p;
    int n;
    atomic_int stop;
    rd_pipeline_worker **workers;
    pthread_t *threads;
    int started;
    rd_wake wake; /* posted when jobs are queued and on stop */
    pthread_mutex_t hook_mu;
    int hook_mu_ready;
    void (*on_done)(void *ctx); /* guarded by hook_mu */
    void *on_done_ctx;
};

typedef struct pool_arg {
    rd_pipeline_pool *pool;
    int index;
} pool_arg;

static void pool_job_done(rd_pipeline_pool *pool)
{
    void (*fn)(void *);
    void *ctx;
    pthread_mutex_lock(&pool->hook_mu);
    fn = pool->on_done;
    ctx = pool->on_done_ctx;
    pthread_mutex_unlock(&pool->hook_mu);
    if (fn)
        fn(ctx);
}

static void *pool_main(void *arg)
{
    rd_pipeline_pool *pool = ((pool_arg *)arg)->pool;
    rd_pipeline_worker *w = pool->workers[((pool_arg *)arg)->index];
    free(arg);
    while (!atomic_load(&pool->stop)) {
        rd_store_job job;
        rd_error err;
        rd_status st = rd_store_job_claim(w->store, &job, &err);
        if (st == RD_OK) {
            rd_log_info("pipeline: job %lld: study %s (attempt %d)", (long long)job.id,
                        job.study_uid, job.attempts);
            (void)rd_pipeline_run_job(w, &job, NULL, &err);
            pool_job_done(pool);
            continue;
        }
        if (st != RD_E_NOT_FOUND)
            rd_log_error("pipeline: %s", rd_error_message(&err));
        /* A wakeup (jobs queued, or stop) ends the wait early; the timeout keeps polling as
         * the fallback, for jobs whose retry delay has passed and for a missed wakeup. */
        if (!atomic_load(&pool->stop))
            (void)rd_wake_wait(&pool->wake, 0.2);
    }
    return NULL;
}

rd_status rd_pipeline_pool_start(rd_pipeline_pool **out, rd_pipeline *p, int workers, rd_error *err)
{
    rd_pipeline_pool *pool = calloc(1, sizeof *pool);
    rd_status st = RD_OK;
    if (workers < 1 || workers > 1024) {
        free(pool);
        return rd_error_set(err, RD_E_INVALID, "%d workers (1..1024)", workers);
    }
    if (!pool)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    pool->p = p;
    atomic_init(&pool->stop, 0);
    if ((st = rd_wake_init(&pool->wake, err)) != RD_OK)
        goto out;
    if (pthread_mutex_init(&pool->hook_mu, NULL) != 0) {
        st = rd_error_set(err, RD_E_INTERNAL, "cannot create a mutex");
        goto out;
    }
    pool->hook_mu_ready = 1;
    pool->workers = calloc((size_t)workers, sizeof *pool->workers);
    pool->threads = calloc((size_t)workers, sizeof *pool->threads);
    if (!pool->workers || !pool->threads) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    pool->n = workers;
    for (int i = 0; i < workers; i++)
        if ((st = rd_pipeline_worker_create(&pool->workers[i], p, err)) != RD_OK)
            goto out;
    for (int i = 0; i < workers; i++) {
        pool_arg *a = malloc(sizeof *a);
        if (!a) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory");
            goto out;
        }
        a->pool = pool;
        a->index = i;
        if (pthread_create(&pool->threads[i], NULL, pool_main, a) != 0) {
            free(a);
            st = rd_error_set(err, RD_E_INTERNAL, "cannot start a pipeline worker thread");
            goto out;
        }
        pool->started++;
    }
out:
    if (st != RD_OK) {
        rd_pipeline_pool_stop(pool);
        return st;
    }
    *out = pool;
    return RD_OK;
}

void rd_pipeline_pool_stop(rd_pipeline_pool *pool)
{
    if (!pool)
        return;
    atomic_store(&pool->stop, 1);
    rd_wake_post(&pool->wake); /* the idle workers see the stop now */
    for (int i = 0; i < pool->started; i++)
        pthread_join(pool->threads[i], NULL);
    for (int i = 0; i < pool->n; i++)
        rd_pipeline_worker_free(pool->workers ? pool->workers[i] : NULL);
    rd_wake_destroy(&pool->wake);
    if (pool->hook_mu_ready)
        pthread_mutex_destroy(&pool->hook_mu);
    free(pool->workers);
    free(pool->threads);
    free(pool);
}

void rd_pipeline_pool_wake(rd_pipeline_pool *pool)
{
    if (pool)
        rd_wake_post(&pool->wake);
}

void rd_pipeline_pool_set_on_done(rd_pipeline_pool *pool, void (*on_done)(void *ctx), void *ctx)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->hook_mu);
    pool->on_done = on_done;
    pool->on_done_ctx = ctx;
    pthread_mutex_unlock(&pool->hook_mu);
}
