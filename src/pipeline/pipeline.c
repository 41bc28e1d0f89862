/* radraft — pipeline: one study through every stage, from its files to a recorded draft.
 *
 * The stages (read, done before, select, decode, embed, retrieve, generate, write) are the
 * functions of the `stages` table below, run in order until one fails or decides the study's
 * outcome; record then stores the review item, the study version and the deliveries in one
 * transaction. It owns the shared pipeline (model, templates, labeler, thresholds, archive
 * index) and each worker's store connection and encoder. The rest of the folder: the job
 * pool (jobs.c), batch's studies (batch.c), study selection (study.c), serve's scheduler,
 * outbox and node (scheduler.c, outbox.c, service.c, serve.c). */
#include "radraft/pipeline.h"
#include "radraft/codes.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "radraft/encoder.h"
#include "radraft/fhir.h"
#include "radraft/findings.h"
#include "radraft/generator.h"
#include "radraft/image.h"
#include "radraft/index.h"
#include "radraft/labeler.h"
#include "radraft/log.h"
#include "radraft/metrics.h"
#include "radraft/review.h"
#include "radraft/sr.h"
#include "radraft/tempname.h"
#include "radraft/version.h"
#include "base/util.h"
#include "pipeline/pipeline_int.h"

#define PL_PATH_MAX 1024

struct rd_pipeline {
    rd_config cfg;
    char data_dir[PL_PATH_MAX];
    rd_store_options store_opts; /* from the configuration: backend, DSN */
    char sr_dir[PL_PATH_MAX];
    char model_path[PL_PATH_MAX];
    char model_name[128];
    char model_version[128];
    int encoder_threads;
    struct rd_histogram *draft_seconds; /* borrowed; NULL */
    rd_encoder_model *model;            /* loaded once; each worker's encoder runs over it */
    int enqueue;
    rd_thresholds th;
    rd_calibration cal; /* the model's; the identity when it has none */
    rd_generator *gen;
    rd_sr_codes codes; /* the code table of the SRs (sr.finding_codes) */
    rd_labeler *lab;
    rd_index *ix; /* NULL when the model has no embedding */
    rd_retrieval_settings rs;
    rd_finding urgent[RD_FINDING_COUNT]; /* review.urgent_findings */
    int n_urgent;
    /* The one mutable part, for sync_archive: when the archive was last looked at. */
    pthread_mutex_t sync_mu;
    int sync_mu_ready;
    double last_sync;
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
    case RD_PIPELINE_IMPORTED:
        return "imported";
    }
    return "?";
}

/* ---- creation ------------------------------------------------------------------- */

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

/* Thresholds: generator.thresholds, else the model's "thresholds", else the default. They
 * apply to the calibrated score, so the model's calibration is read in every case. */
static rd_status load_thresholds(rd_pipeline *p, const char *model_json, rd_error *err)
{
    cJSON *root;
    int has;
    rd_status st = rd_calibration_parse(&p->cal, model_json, p->model_path, err);
    if (st != RD_OK)
        return st;
    if (p->cfg.generator_thresholds[0])
        return rd_thresholds_load(&p->th, p->cfg.generator_thresholds, err);
    root = cJSON_Parse(model_json);
    has = root && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "thresholds"));
    cJSON_Delete(root);
    if (has)
        return rd_thresholds_parse(&p->th, model_json, p->model_path, err);
    rd_thresholds_builtin(&p->th);
    return RD_OK;
}

/* SRs, AI results SRs and FHIR Bundles are written to a temporary (radraft/tempname.h) and
 * renamed into place; a process killed in between leaves the temporary behind. With the
 * SQLite store one radraft process drafts into a folder at a time, so whatever temporary is
 * there at start-up is stale. With PostgreSQL the folder may be shared by several nodes:
 * a temporary is stale when its writer on this host is gone, or, written elsewhere, when it
 * is older than any write takes (STALE_TEMP_S). */
#define STALE_TEMP_S 600

/* 1 when the temporary `name` is on its way to a name the pipeline writes: an SR or AI
 * results SR ("-sr.dcm") or a FHIR Bundle ("-fhir.json"). Any other file in the folder is
 * someone else's and stays. */
static int drafted_name(const char *name)
{
    const char *t = strstr(name, ".tmp"), *n;
    while (t && (n = strstr(t + 4, ".tmp")) != NULL)
        t = n;
    if (!t)
        return 0;
    size_t len = (size_t)(t - name);
    return (len >= 7 && memcmp(t - 7, "-sr.dcm", 7) == 0) ||
           (len >= 10 && memcmp(t - 10, "-fhir.json", 10) == 0);
}

static void remove_stale_temporaries(const char *dir, int shared)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    double now = rd_store_now();
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[PL_PATH_MAX + 256];
        struct stat sb;
        rd_temp_owner owner = rd_temp_owner_of(e->d_name);
        if (owner == RD_TEMP_NOT_TEMP || !drafted_name(e->d_name))
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (shared && owner != RD_TEMP_DEAD &&
            (owner == RD_TEMP_LIVE || (double)sb.st_mtime >= now - STALE_TEMP_S))
            continue;
        if (unlink(path) == 0)
            rd_log_warn("pipeline: removed %s, left by an interrupted write", path);
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
    if (pthread_mutex_init(&p->sync_mu, NULL) != 0) {
        free(p);
        return rd_error_set(err, RD_E_INTERNAL, "cannot create a mutex");
    }
    p->sync_mu_ready = 1;
    p->last_sync = rd_store_now(); /* the index was loaded just now */
    p->cfg = *cfg;
    p->encoder_threads = opts && opts->encoder_threads > 0 ? opts->encoder_threads : 1;
    p->enqueue = opts ? opts->enqueue : 0;
    p->draft_seconds = opts ? opts->draft_seconds : NULL;
    rd_strlcpy(p->data_dir, opts && opts->data_dir ? opts->data_dir : cfg->server_data_dir,
               sizeof p->data_dir);
    if ((st = rd_store_options_from_config(&p->store_opts, cfg, err)) != RD_OK)
        goto out;
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
        remove_stale_temporaries(p->sr_dir, p->store_opts.backend == RD_STORE_POSTGRESQL);
    if (st != RD_OK)
        goto out;
    if ((st = rd_pipeline_model_path(cfg, p->model_path, sizeof p->model_path, err)) != RD_OK)
        goto out;
    if ((st = rd_nn_model_read_json(p->model_path, &model_json, NULL, err)) != RD_OK)
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
    for (int i = 0; i < cfg->review_urgent_findings.count && i < RD_FINDING_COUNT; i++)
        if ((st = rd_finding_from_name(cfg->review_urgent_findings.items[i],
                                       &p->urgent[p->n_urgent++], err)) != RD_OK) {
            st = rd_error_prefix(err, RD_E_CONFIG, "review.urgent_findings");
            goto out;
        }
    if ((st = rd_labeler_create_from_config(&p->lab, cfg, err)) != RD_OK)
        goto out;
    if ((st = rd_retrieval_settings_resolve(&p->rs, cfg, model_json, err)) != RD_OK)
        goto out;
    /* Reusing a similar case's sentence puts another patient's wording into this patient's
     * draft (the generator cleans it, but cleaning can miss): only when the site asks. */
    p->rs.search.with_text = cfg->generator_reuse_neighbour_sentences ? 1 : 0;
    /* A worker's search may use the threads its encoder does: workers x encoder threads
     * never exceed the cores, and a worker does one or the other at a time. */
    p->rs.search.threads = p->encoder_threads;
    if ((st = rd_sr_codes_load(&p->codes, cfg->sr_finding_codes, err)) != RD_OK) {
        st = rd_error_prefix(err, st, "sr.finding_codes");
        goto out;
    }
    if (info->embedding_dim > 0) {
        char seed[PL_PATH_MAX + 64];
        long n_seeded = 0;
        seed_path(p->model_path, seed, sizeof seed);
        if ((st = rd_store_open(&store, p->data_dir, &p->store_opts, err)) != RD_OK)
            goto out;
        if ((st = rd_index_load(&p->ix, store, p->model_version, info->embedding_dim,
                                cfg->archive_load_seed ? seed : NULL, &n_seeded, err)) != RD_OK)
            goto out;
        if (n_seeded > 0)
            rd_log_info("pipeline: imported %ld seed archive entries from %s", n_seeded, seed);
        if ((st = rd_index_set_storage(p->ix, p->rs.storage, err)) != RD_OK)
            goto out;
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
    if (p->sync_mu_ready)
        pthread_mutex_destroy(&p->sync_mu);
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
    if ((st = rd_store_open(&w->store, p->data_dir, &p->store_opts, err)) != RD_OK ||
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

const rd_config *rd_pipeline_worker_config(const rd_pipeline_worker *w)
{
    return &w->p->cfg;
}

/* Picks up the archive entries other processes added since the last look (a report signed
 * with `radraft queue sign` while serve runs), at most every archive.refresh_seconds. */
static void sync_archive(rd_pipeline_worker *w)
{
    rd_pipeline *p = w->p;
    double now = rd_store_now();
    rd_error err;
    long added = 0;
    int due;
    pthread_mutex_lock(&p->sync_mu);
    due = now - p->last_sync >= p->cfg.archive_refresh_seconds;
    if (due)
        p->last_sync = now;
    pthread_mutex_unlock(&p->sync_mu);
    if (!due)
        return;
    if (rd_index_sync(p->ix, w->store, &added, &err) != RD_OK)
        rd_log_warn("pipeline: archive refresh: %s", rd_error_message(&err));
    else if (added != 0)
        rd_log_info("pipeline: archive refreshed: %ld entries now", rd_index_count(p->ix));
}

/* The archive search of the retrieval stage, for `nq` studies at once: the top-k similar
 * archive studies of each query, query i's into hits[i * rs.search.k ...] (n_hits[i] of
 * them). One query is one scan of the archive; several are one rd_index_search_batch,
 * which reads the archive once for all of them (sgemm). Without an archive (or an empty
 * one) there are no hits. */
static rd_status search_archive(rd_pipeline_worker *w, const rd_index_query *qs, int nq,
                                rd_index_hit *hits, int *n_hits, rd_error *err)
{
    rd_pipeline *p = w->p;
    for (int i = 0; i < nq; i++)
        n_hits[i] = 0;
    if (p->ix)
        sync_archive(w);
    if (!p->ix || rd_index_count(p->ix) == 0)
        return RD_OK;
    return rd_index_search_batch(p->ix, qs, nq, &p->rs.search, hits, n_hits, err);
}

/* The combined scores become calibrated probabilities; the raw ones are kept beside. */
static void calibrate(const rd_pipeline *p, rd_pipeline_draft *d)
{
    memcpy(d->uncalibrated, d->combined, sizeof d->uncalibrated);
    rd_calibration_apply(&p->cal, d->combined);
}

/* The review item's JSON: per finding its drafted state, the combined score, the
 * encoder's score and the neighbours' vote; the neighbours with their similarity. */
static rd_status review_json(const rd_pipeline_draft *d, char heatmaps[RD_FINDING_N_ABNORMAL][1024],
                             char **findings, char **neighbours, rd_error *err)
{
    cJSON *fo = cJSON_CreateObject(), *no = cJSON_CreateArray();
    rd_status st = RD_OK;
    /* Every member is checked: one that cJSON could not add would leave the item without it,
     * silently. */
    int ok = fo && no;
    *findings = *neighbours = NULL;
    for (int f = 0; ok && f < RD_FINDING_COUNT; f++) {
        cJSON *o = cJSON_AddObjectToObject(fo, rd_finding_name((rd_finding)f));
        ok = o && cJSON_AddStringToObject(o, "state", rd_state_name(d->draft.state[f]));
        if (ok && f < RD_FINDING_N_ABNORMAL) {
            ok = cJSON_AddNumberToObject(o, "score", d->combined[f]) != NULL;
            if (ok && d->uncalibrated[f] != d->combined[f])
                ok = cJSON_AddNumberToObject(o, "uncalibrated", d->uncalibrated[f]) != NULL;
            if (ok && d->has_encoder_scores)
                ok = cJSON_AddNumberToObject(o, "encoder", d->encoder[f]) != NULL;
        }
        if (ok && d->n_neighbours > 0)
            ok = cJSON_AddNumberToObject(o, "votes", d->votes[f]) != NULL;
    }
    /* Where the text places each located finding, and its heat map. */
    for (int i = 0; ok && i < d->draft.n_items; i++) {
        const rd_draft_item *it = &d->draft.items[i];
        cJSON *o = cJSON_GetObjectItemCaseSensitive(fo, rd_finding_name(it->finding));
        if (it->side == RD_SIDE_NONE || !o)
            continue;
        ok = cJSON_AddStringToObject(o, "side", rd_side_name(it->side)) != NULL;
        if (ok && it->zone != RD_ZONE_NONE)
            ok = cJSON_AddStringToObject(o, "zone", rd_zone_name(it->zone)) != NULL;
        if (ok && heatmaps && heatmaps[it->finding][0])
            ok = cJSON_AddStringToObject(o, "heatmap", heatmaps[it->finding]) != NULL;
    }
    for (int i = 0; ok && i < d->n_neighbours; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(no, o)) {
            cJSON_Delete(o);
            ok = 0;
            break;
        }
        ok = cJSON_AddNumberToObject(o, "id", (double)d->neighbours[i].id) &&
             cJSON_AddNumberToObject(o, "similarity", d->neighbours[i].similarity) &&
             cJSON_AddStringToObject(o, "study_uid", d->neighbours[i].study_uid);
    }
    if (!ok)
        goto nomem;
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
    cJSON_free(d->images_json);
    free(d->embedding);
    free(d->cams);
    memset(d, 0, sizeof *d);
    d->frontal = -1;
    d->frontal_rule = "";
}

rd_status rd_pipeline_write_draft_sr(const char *const *sources, int n_sources,
                                     const rd_draft *draft,
                                     const double scores[RD_FINDING_N_ABNORMAL],
                                     const char *model_name, const char *model_version,
                                     const rd_sr_codes *codes, const char *sr_path,
                                     rd_sr_result *out, rd_error *err)
{
    rd_sr_finding coded[RD_FINDING_N_ABNORMAL];
    rd_sr_params sp;
    /* The SR names the model (Manufacturer's Model Name, LO) and its version (a value of
     * Software Versions, LO): at most 64 characters each, so longer ones are cut. */
    char sr_model[65], sr_version[65];
    for (int i = 0; i < draft->n_items; i++) {
        coded[i].name = rd_finding_name(draft->items[i].finding);
        coded[i].state = draft->items[i].state;
        coded[i].score = scores[draft->items[i].finding];
    }
    rd_strlcpy(sr_model, model_name, sizeof sr_model);
    rd_strlcpy(sr_version, model_version, sizeof sr_version);
    rd_sr_params_init(&sp);
    sp.sources = sources;
    sp.n_sources = (size_t)n_sources;
    sp.findings_text = draft->findings_text;
    sp.impression_text = draft->impression_text;
    sp.findings = coded;
    sp.n_findings = (size_t)draft->n_items;
    sp.model_name = sr_model;
    sp.model_version = sr_version;
    sp.codes = codes;
    return rd_sr_write_draft(&sp, sr_path, out, err);
}

rd_status rd_pipeline_write_air_sr(const char *const *sources, int n_sources,
                                   const char *frontal_sop_instance_uid, const rd_draft *draft,
                                   const double scores[RD_FINDING_N_ABNORMAL],
                                   const rd_thresholds *th, const char *model_name,
                                   const char *model_version, const char *parameters,
                                   const rd_sr_codes *codes, const char *path, rd_sr_result *out,
                                   rd_error *err)
{
    rd_sr_air_params ap;
    char sr_model[65], sr_version[65];
    rd_strlcpy(sr_model, model_name, sizeof sr_model);
    rd_strlcpy(sr_version, model_version, sizeof sr_version);
    rd_sr_air_params_init(&ap);
    ap.sources = sources;
    ap.n_sources = n_sources > 0 ? (size_t)n_sources : 0;
    ap.frontal_sop_instance_uid = frontal_sop_instance_uid;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        ap.findings[f].state = draft->state[f];
        ap.findings[f].probability = scores[f];
        ap.findings[f].present_threshold = th->present[f];
        ap.findings[f].uncertain_threshold = th->uncertain[f];
    }
    ap.model_name = sr_model;
    ap.model_version = sr_version;
    ap.algorithm_parameters = parameters;
    ap.codes = codes;
    return rd_sr_write_air(&ap, path, out, err);
}

rd_status rd_pipeline_write_fhir(const char *sr_path, const char *report_key, const rd_draft *draft,
                                 const double scores[RD_FINDING_N_ABNORMAL],
                                 const rd_thresholds *th, const char *model_name,
                                 const char *model_version, const rd_sr_codes *codes,
                                 const char *path, rd_error *err)
{
    rd_fhir_params fp;
    /* The model named as in the AIR SR (cut to 64 characters), so both give one Device UID. */
    char uid[RD_UID_SIZE], name[160], sr_model[65], sr_version[65];
    rd_status st;
    rd_strlcpy(sr_model, model_name, sizeof sr_model);
    rd_strlcpy(sr_version, model_version, sizeof sr_version);
    if ((st = rd_sr_air_device_uid(sr_model, sr_version, uid, err)) != RD_OK)
        return st;
    snprintf(name, sizeof name, "radraft %s %s", sr_model, sr_version);
    rd_fhir_params_init(&fp);
    fp.sr_path = sr_path;
    fp.report_key = report_key;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        fp.findings[f].state = draft->state[f];
        fp.findings[f].probability = scores[f];
        fp.findings[f].present_threshold = th->present[f];
        fp.findings[f].uncertain_threshold = th->uncertain[f];
    }
    fp.device_uid = uid;
    fp.device_name = name;
    fp.codes = codes;
    return rd_fhir_write(&fp, path, err);
}

rd_status rd_pipeline_air_sr_path(const char *sr_path, char *out, size_t size, rd_error *err)
{
    return rd_path_beside_sr(sr_path, "-air-sr.dcm", "AIR SR", out, size, err);
}

rd_status rd_pipeline_write_heatmaps(const rd_pipeline_draft *d, const char *dir,
                                     char paths[RD_FINDING_N_ABNORMAL][1024], rd_error *err)
{
    int w = d->image_width, h = d->image_height, cells = d->cam_height * d->cam_width, any = 0;
    char *abs = NULL;
    rd_status st = RD_OK;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        paths[f][0] = '\0';
    for (int i = 0; i < d->draft.n_items; i++)
        any |= d->draft.items[i].side != RD_SIDE_NONE;
    if (!d->cams || w < 1 || h < 1 || !any)
        return RD_OK;
    /* Absolute paths, so that a web node started elsewhere finds the files (as the images'). */
    if ((st = rd_mkdirs(dir, err)) != RD_OK)
        return st;
    if (!(abs = realpath(dir, NULL)))
        return rd_error_set(err, RD_E_IO, "%s: %s", dir, strerror(errno));
    /* The frontal image's aspect, the longest side at most RD_PIPELINE_HEATMAP_MAX_SIDE. */
    if (w > RD_PIPELINE_HEATMAP_MAX_SIDE || h > RD_PIPELINE_HEATMAP_MAX_SIDE) {
        double k = (double)RD_PIPELINE_HEATMAP_MAX_SIDE / (w > h ? w : h);
        w = (int)lround(w * k);
        h = (int)lround(h * k);
        w = w < 1 ? 1 : w;
        h = h < 1 ? 1 : h;
    }
    for (int i = 0; i < d->draft.n_items && st == RD_OK; i++) {
        const rd_draft_item *it = &d->draft.items[i];
        rd_image *hm = NULL;
        void *png = NULL;
        size_t len = 0;
        int f = it->finding;
        if (it->side == RD_SIDE_NONE || f >= d->n_cams)
            continue;
        if (snprintf(paths[f], sizeof paths[f], "%s/%s-%.16s-%s.png", abs, d->study_uid,
                     d->content_version, rd_finding_name(it->finding)) >= (int)sizeof paths[f]) {
            paths[f][0] = '\0';
            st = rd_error_set(err, RD_E_INVALID, "heat map path too long");
            break;
        }
        if ((st = rd_localize_heatmap(d->cams + (size_t)f * cells, d->cam_height, d->cam_width, w,
                                      h, &hm, err)) == RD_OK &&
            (st = rd_png_encode(hm, &png, &len, err)) == RD_OK)
            st = rd_write_file_atomic(paths[f], png, len, err);
        free(png);
        rd_image_free(hm);
        if (st != RD_OK)
            paths[f][0] = '\0';
    }
    free(abs);
    return st;
}

/* ---- the stages of one study ---- */

/* One study on its way through the stages: what each stage leaves for the next. */
typedef struct study {
    rd_pipeline_worker *w;
    const char *const *files;
    int n;
    int record;          /* 0: nothing touches the store (rd_pipeline_draft_files) */
    const char *sr_path; /* NULL: the default name in the SR folder */
    int64_t *done_review_id;
    rd_pipeline_draft *d;
    rd_dicom_meta *metas;   /* the readable instances of the study, n_read of them */
    const char **img_files; /* those with pixel data, n_img of them */
    rd_dicom_meta *img_metas;
    int n_read, n_img;
    int frontal;        /* index in img_* of the chosen image */
    rd_image *img;      /* the frontal image, decoded */
    float *embedding;   /* info->embedding_dim floats */
    rd_index_hit *hits; /* room for rs.search.k */
    int n_hits;
    rd_index_query query; /* the frontal image's archive query (retrieve_query) */
    int outcome_set;      /* d->outcome is final: skipped, done before, or drafted */
} study;

static void study_free(study *s)
{
    if (s->hits)
        rd_index_hits_clear(s->hits, s->n_hits);
    free(s->hits);
    free(s->embedding);
    rd_image_free(s->img);
    free(s->img_metas);
    free(s->img_files);
    free(s->metas);
}

/* A study that gets no draft: fills in the reason and, when recording, records it as the
 * outcome of the study's content version. */
static rd_status skip(study *s, rd_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rd_status skip(study *s, rd_error *err, const char *fmt, ...)
{
    rd_pipeline_draft *d = s->d;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
    d->outcome = RD_PIPELINE_SKIPPED;
    s->outcome_set = 1;
    if (!s->record)
        return RD_OK;
    rd_status st =
        rd_store_study_skip(s->w->store, d->study_uid, d->content_version, d->reason, err);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "record");
    rd_log_info("pipeline: study %s: no draft: %s", d->study_uid, d->reason);
    return RD_OK;
}

/* read: every instance's metadata, keeping the instances of the first readable one's
 * study; its UID and content version. A file that is not DICOM is ignored with a warning;
 * an I/O error fails the stage (it may pass on a retry). */
static rd_status stage_read(study *s, rd_error *err)
{
    rd_pipeline_draft *d = s->d;
    if (s->n < 1 || s->n > RD_SR_MAX_SOURCES)
        return rd_error_set(err, RD_E_INVALID, "read: a study of %d instances (1..%d)", s->n,
                            RD_SR_MAX_SOURCES);
    s->metas = calloc((size_t)s->n, sizeof *s->metas);
    s->img_files = calloc((size_t)s->n, sizeof *s->img_files);
    s->img_metas = calloc((size_t)s->n, sizeof *s->img_metas);
    if (!s->metas || !s->img_files || !s->img_metas)
        return rd_error_set(err, RD_E_NOMEM, "read: out of memory");
    for (int i = 0; i < s->n; i++) {
        rd_dicom_meta *m = &s->metas[s->n_read];
        rd_error e;
        rd_status rs = rd_dicom_read_meta(s->files[i], m, &e);
        if (rs != RD_OK) {
            if (rd_pipeline_status_retriable(rs))
                return rd_error_set(err, rs, "read: %s", rd_error_message(&e));
            rd_log_warn("pipeline: ignoring %s: %s", s->files[i], rd_error_message(&e));
            continue;
        }
        if (s->n_read > 0 && strcmp(m->study_uid, s->metas[0].study_uid) != 0) {
            rd_log_warn("pipeline: ignoring %s: it belongs to another study", s->files[i]);
            continue;
        }
        if (m->has_pixel_data) {
            s->img_files[s->n_img] = s->files[i];
            s->img_metas[s->n_img++] = *m;
        }
        s->n_read++;
    }
    if (s->n_read == 0)
        return rd_error_set(err, RD_E_DICOM, "read: no readable DICOM instance among %d files",
                            s->n);
    if (!rd_store_uid_valid(s->metas[0].study_uid))
        return rd_error_set(err, RD_E_INVALID, "read: %s: malformed Study Instance UID",
                            s->files[0]);
    rd_strlcpy(d->study_uid, s->metas[0].study_uid, sizeof d->study_uid);
    return rd__study_content_version(s->metas, s->n_read, d->content_version, err);
}

/* Drafted or skipped before for this content version? Then the outcome is DONE_BEFORE,
 * with the earlier review id (or skip reason). */
static rd_status stage_done_before(study *s, rd_error *err)
{
    rd_pipeline_draft *d = s->d;
    rd_store_study_version sv;
    rd_status st;
    if (!s->record)
        return RD_OK;
    st = rd_store_study_version_get(s->w->store, d->study_uid, d->content_version, &sv, err);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "read");
    if (sv.found) {
        d->outcome = RD_PIPELINE_DONE_BEFORE;
        s->outcome_set = 1;
        *s->done_review_id = sv.review_id;
        rd_strlcpy(d->reason, sv.drafted ? "" : sv.reason, sizeof d->reason);
    }
    return RD_OK;
}

/* The study's images for the review page: where each is, and which one is the frontal. */
static rd_status images_json(study *s, rd_error *err)
{
    cJSON *arr = cJSON_CreateArray();
    int ok = arr != NULL; /* every member checked, as in review_json */
    for (int i = 0; ok && i < s->n_img; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            ok = 0;
            break;
        }
        /* Absolute, so that a web node started elsewhere finds batch's files too. A path
         * that cannot be resolved (out of memory among the reasons) is kept as given. */
        char *abs = realpath(s->img_files[i], NULL);
        ok = cJSON_AddStringToObject(o, "path", abs ? abs : s->img_files[i]) &&
             cJSON_AddStringToObject(o, "sop_instance_uid", s->img_metas[i].sop_instance_uid) &&
             cJSON_AddStringToObject(o, "view_position", s->img_metas[i].view_position) &&
             cJSON_AddBoolToObject(o, "frontal", i == s->frontal);
        free(abs);
    }
    s->d->images_json = ok ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    return s->d->images_json ? RD_OK : rd_error_set(err, RD_E_NOMEM, "frontal: out of memory");
}

/* check + frontal: keeps the images of a chest radiograph (CR or DX, chest-like body part)
 * and chooses the frontal one among them, or skips the study with the reason. The image
 * decoded while choosing (by symmetry) is kept for the decode stage. */
static rd_status stage_select(study *s, rd_error *err)
{
    rd_pipeline_draft *d = s->d;
    rd_dicom_options dopts;
    const char **cf = NULL;
    rd_dicom_meta *cm = NULL;
    int *cand = NULL, n_cand = 0, k = 0, f;
    const char *rule = "";
    rd_status st = RD_OK;
    if (s->n_img == 0)
        return skip(s, err, "no image: none of the %d instances has pixel data", s->n_read);
    cand = calloc((size_t)s->n_img, sizeof *cand);
    cf = calloc((size_t)s->n_img, sizeof *cf);
    cm = calloc((size_t)s->n_img, sizeof *cm);
    if (!cand || !cf || !cm) {
        st = rd_error_set(err, RD_E_NOMEM, "frontal: out of memory");
        goto out;
    }
    for (int i = 0; i < s->n_img; i++)
        if (rd__study_radiograph_modality(s->img_metas[i].modality))
            cand[n_cand++] = i;
    if (n_cand == 0) {
        st = skip(s, err, "not a chest radiograph: modality %s (CR or DX expected)",
                  s->img_metas[0].modality[0] ? s->img_metas[0].modality : "(none)");
        goto out;
    }
    for (int i = 0; i < n_cand; i++)
        if (rd__study_chest_like(s->img_metas[cand[i]].body_part))
            cand[k++] = cand[i];
    if (k == 0) {
        st = skip(s, err, "not a chest radiograph: body part %s", s->img_metas[cand[0]].body_part);
        goto out;
    }
    n_cand = k;
    for (int i = 0; i < n_cand; i++) {
        cf[i] = s->img_files[cand[i]];
        cm[i] = s->img_metas[cand[i]];
    }
    rd_dicom_options_from_config(&dopts, &s->w->p->cfg);
    f = rd_pipeline_choose_frontal(cf, cm, n_cand, &dopts, &s->img, &rule);
    if (f < 0) {
        st = skip(s, err, "no usable image: no frontal view among %d image(s)", n_cand);
        goto out;
    }
    s->frontal = cand[f];
    d->frontal_rule = rule;
    for (int i = 0; i < s->n; i++)
        if (s->files[i] == s->img_files[s->frontal]) {
            d->frontal = i;
            break;
        }
    rd_strlcpy(d->frontal_sop_instance_uid, s->img_metas[s->frontal].sop_instance_uid,
               sizeof d->frontal_sop_instance_uid);
    rd_log_debug("pipeline: study %s: frontal %s (%s)", d->study_uid, s->img_files[s->frontal],
                 rule);
    st = images_json(s, err);
out:
    free(cm);
    free(cf);
    free(cand);
    return st;
}

/* decode: the frontal image (unless choosing decoded it). An image that cannot be decoded
 * skips the study; an I/O error fails the stage. */
static rd_status stage_decode(study *s, rd_error *err)
{
    rd_dicom_options dopts;
    rd_error e;
    rd_status st;
    if (s->img)
        return RD_OK;
    rd_dicom_options_from_config(&dopts, &s->w->p->cfg);
    st = rd_dicom_read_image(s->img_files[s->frontal], &dopts, &s->img, NULL, &e);
    if (st == RD_OK)
        return RD_OK;
    if (rd_pipeline_status_retriable(st))
        return rd_error_set(err, st, "decode: %s", rd_error_message(&e));
    return skip(s, err, "no usable image: %s", rd_error_message(&e));
}

/* embed: the encoder's embedding and, when the model scores the findings, its scores. */
static rd_status stage_embed(study *s, rd_error *err)
{
    rd_pipeline_draft *d = s->d;
    const rd_nn_info *info = rd_encoder_info(s->w->enc);
    float fscores[RD_FINDING_N_ABNORMAL];
    rd_status st;
    d->has_encoder_scores = info->n_labels == RD_FINDING_N_ABNORMAL;
    s->embedding =
        calloc((size_t)(info->embedding_dim > 0 ? info->embedding_dim : 1), sizeof(float));
    if (!s->embedding)
        return rd_error_set(err, RD_E_NOMEM, "embed: out of memory");
    d->image_width = s->img->width;
    d->image_height = s->img->height;
    /* The class activation maps come from the same forward pass (a few microseconds more). */
    if (s->w->p->cfg.generator_localize && d->has_encoder_scores &&
        rd_encoder_cam_size(s->w->enc, &d->cam_height, &d->cam_width)) {
        d->n_cams = info->n_labels;
        d->cams = malloc((size_t)d->n_cams * d->cam_height * d->cam_width * sizeof *d->cams);
        if (!d->cams)
            return rd_error_set(err, RD_E_NOMEM, "embed: out of memory");
    }
    if ((st = rd_encoder_embed_batch_cam(s->w->enc, (const rd_image *const *)&s->img, 1,
                                         s->embedding, d->has_encoder_scores ? fscores : NULL,
                                         d->cams, err)) != RD_OK)
        return rd_error_prefix(err, st, "embed");
    if (d->cams) {
        const rd_dicom_meta *m = &s->img_metas[s->frontal];
        int cells = d->cam_height * d->cam_width;
        rd_orientation_from_dicom(m->patient_orientation, m->view_position, &d->orientation);
        for (int f = 0; f < RD_FINDING_N_ABNORMAL && f < d->n_cams; f++)
            if ((st = rd_localize_map(d->cams + (size_t)f * cells, d->cam_height, d->cam_width,
                                      &d->orientation, &d->where[f], err)) != RD_OK)
                return rd_error_prefix(err, st, "embed");
    }
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        d->encoder[f] = d->has_encoder_scores ? fscores[f] : 0;
    /* No later stage reads the pixels: a block of studies does not keep them all. */
    rd_image_free(s->img);
    s->img = NULL;
    /* The review item keeps it: signing makes it the study's archive entry. */
    if (info->embedding_dim > 0) {
        d->embedding = s->embedding;
        d->embedding_dim = info->embedding_dim;
        s->embedding = NULL;
    }
    return RD_OK;
}

/* retrieve, in three steps so that a block of studies can share the search: the query of
 * the frontal image (kept in the draft: a signed study's archive entry is filed the same
 * way) and room for its hits; the search (search_archive); then the votes, the combined
 * and calibrated scores, and the neighbours, kept in the draft. */
static rd_status retrieve_query(study *s, rd_error *err)
{
    rd_pipeline *p = s->w->p;
    rd_pipeline_draft *d = s->d;
    rd_index_query *q = &s->query;
    s->hits = calloc((size_t)(p->rs.search.k > 0 ? p->rs.search.k : 1), sizeof *s->hits);
    if (!s->hits)
        return rd_error_set(err, RD_E_NOMEM, "retrieve: out of memory");
    memset(q, 0, sizeof *q);
    q->embedding = d->embedding;
    rd_index_query_from_meta(q, &s->img_metas[s->frontal], p->cfg.archive_patient_salt,
                             d->patient_hash);
    if (q->view == RD_VIEW_UNKNOWN)
        q->view = RD_VIEW_FRONTAL; /* the frontal image was chosen as such */
    d->view = q->view;
    d->study_date = q->study_date;
    return RD_OK;
}

static rd_status retrieve_scores(study *s, rd_error *err)
{
    rd_pipeline *p = s->w->p;
    rd_pipeline_draft *d = s->d;
    (void)rd_index_scores(s->hits, s->n_hits, d->has_encoder_scores ? d->encoder : NULL,
                          &p->rs.votes, d->votes, d->combined);
    calibrate(p, d);
    if (s->n_hits == 0)
        return RD_OK;
    d->neighbours = calloc((size_t)s->n_hits, sizeof *d->neighbours);
    if (!d->neighbours)
        return rd_error_set(err, RD_E_NOMEM, "retrieve: out of memory");
    for (int i = 0; i < s->n_hits; i++) {
        d->neighbours[i].id = s->hits[i].id;
        d->neighbours[i].similarity = s->hits[i].similarity;
        rd_strlcpy(d->neighbours[i].study_uid, s->hits[i].study_uid,
                   sizeof d->neighbours[i].study_uid);
    }
    d->n_neighbours = s->n_hits;
    return RD_OK;
}

/* retrieve for one study alone. */
static rd_status stage_retrieve(study *s, rd_error *err)
{
    rd_status st;
    if ((st = retrieve_query(s, err)) != RD_OK)
        return st;
    if ((st = search_archive(s->w, &s->query, 1, s->hits, &s->n_hits, err)) != RD_OK)
        return rd_error_prefix(err, st, "retrieve");
    return retrieve_scores(s, err);
}

/* generate: the report text from the combined scores, the neighbours as evidence. */
static rd_status stage_generate(study *s, rd_error *err)
{
    rd_pipeline *p = s->w->p;
    rd_evidence_case *evidence = NULL;
    rd_status st;
    if (s->n_hits > 0) {
        evidence = calloc((size_t)s->n_hits, sizeof *evidence);
        if (!evidence)
            return rd_error_set(err, RD_E_NOMEM, "generate: out of memory");
        rd_index_evidence(s->hits, s->n_hits, evidence);
    }
    st = rd_generator_draft_scores_at(p->gen, s->d->combined, &p->th,
                                      s->d->cams ? s->d->where : NULL, evidence, (size_t)s->n_hits,
                                      p->lab, &s->d->draft, err);
    free(evidence);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "generate");
    for (int i = 0; i < p->n_urgent; i++) {
        rd_finding_state fs = s->d->draft.state[p->urgent[i]];
        if (fs == RD_STATE_PRESENT || fs == RD_STATE_UNCERTAIN)
            s->d->urgent = 1;
    }
    return RD_OK;
}

/* write: the draft SR, by default named by study and content version, so that a rerun
 * after a crash rewrites the same file rather than adding a second one. */
static rd_status stage_write(study *s, rd_error *err)
{
    rd_pipeline *p = s->w->p;
    rd_pipeline_draft *d = s->d;
    const char *sr_path = s->sr_path;
    rd_status st;
    if (sr_path ? rd_strlcpy(d->sr_path, sr_path, sizeof d->sr_path) >= sizeof d->sr_path
                : snprintf(d->sr_path, sizeof d->sr_path, "%s/%s-%.16s-draft-sr.dcm", p->sr_dir,
                           d->study_uid, d->content_version) >= (int)sizeof d->sr_path) {
        d->sr_path[0] = '\0';
        return rd_error_set(err, RD_E_INVALID, "write: SR path too long");
    }
    if ((st = rd_pipeline_write_draft_sr(s->img_files, s->n_img, &d->draft, d->combined,
                                         p->model_name, p->model_version, &p->codes, d->sr_path,
                                         &d->sr, err)) != RD_OK)
        return rd_error_prefix(err, st, "write");
    if (d->sr.warning[0])
        rd_log_warn("pipeline: study %s: SR: %s", d->study_uid, d->sr.warning);
    if (p->cfg.sr_air) {
        char params[512];
        snprintf(params, sizeof params,
                 "probability: the encoder's score combined with the votes of up to %d similar "
                 "archive studies, %s; state: present at or above the present threshold, "
                 "uncertain at or above the uncertain threshold",
                 p->rs.search.k, p->cal.enabled ? "calibrated per finding" : "not calibrated");
        if ((st = rd_pipeline_air_sr_path(d->sr_path, d->air_sr_path, sizeof d->air_sr_path,
                                          err)) != RD_OK ||
            (st = rd_pipeline_write_air_sr(s->img_files, s->n_img, d->frontal_sop_instance_uid,
                                           &d->draft, d->combined, &p->th, p->model_name,
                                           p->model_version, params, &p->codes, d->air_sr_path,
                                           &d->air_sr, err)) != RD_OK) {
            d->air_sr_path[0] = '\0';
            return rd_error_prefix(err, st, "write: AI results SR");
        }
    }
    if (p->cfg.fhir_enabled) {
        char key[RD_UID_SIZE + 80];
        snprintf(key, sizeof key, "%s/%s", d->study_uid, d->content_version);
        if ((st = rd_fhir_path(d->sr_path, d->fhir_path, sizeof d->fhir_path, err)) != RD_OK ||
            (st = rd_pipeline_write_fhir(d->sr_path, key, &d->draft, d->combined, &p->th,
                                         p->model_name, p->model_version, &p->codes, d->fhir_path,
                                         err)) != RD_OK) {
            d->fhir_path[0] = '\0';
            return rd_error_prefix(err, st, "write: FHIR");
        }
    }
    d->outcome = RD_PIPELINE_DRAFTED;
    s->outcome_set = 1;
    return RD_OK;
}

/* The stages in order, each with where its time goes (NULL: counted with the previous). */
static const struct {
    rd_status (*run)(study *s, rd_error *err);
    size_t ms; /* offset of the rd_pipeline_draft field, or 0 */
} stages[] = {
    {stage_read, offsetof(rd_pipeline_draft, ms_read)},
    {stage_done_before, 0},
    {stage_select, 0},
    {stage_decode, offsetof(rd_pipeline_draft, ms_decode)},
    {stage_embed, offsetof(rd_pipeline_draft, ms_embed)},
    {stage_retrieve, offsetof(rd_pipeline_draft, ms_retrieve)},
    {stage_generate, offsetof(rd_pipeline_draft, ms_generate)},
    {stage_write, offsetof(rd_pipeline_draft, ms_write)},
};

#define N_STAGES (sizeof stages / sizeof stages[0])
#define STAGE_RETRIEVE 5 /* stages[STAGE_RETRIEVE] is stage_retrieve */

/* A study about to go through the stages: `d` is initialized here and always left for
 * rd_pipeline_draft_free, `s` for study_free. With record == 0 nothing touches the store
 * (rd_pipeline_draft_files); with record != 0 a content version processed before is not
 * drafted again, its review id going to *done_review_id, and skips are recorded. */
static void study_begin(study *s, rd_pipeline_worker *w, const char *const *files, int n,
                        const char *sr_path, int record, rd_pipeline_draft *d,
                        int64_t *done_review_id)
{
    memset(s, 0, sizeof *s);
    s->w = w;
    s->files = files;
    s->n = n;
    s->record = record;
    s->sr_path = sr_path;
    s->done_review_id = done_review_id;
    s->d = d;
    s->frontal = -1;
    memset(d, 0, sizeof *d);
    d->frontal = -1;
    d->frontal_rule = "";
    rd_strlcpy(d->model_name, w->p->model_name, sizeof d->model_name);
    rd_strlcpy(d->model_version, w->p->model_version, sizeof d->model_version);
}

/* Runs stages [from, to) while none fails and the study's outcome is not final (skipped,
 * done before); the last stage sets the outcome DRAFTED. Each stage's time goes to the
 * draft. */
static rd_status run_stages(study *s, size_t from, size_t to, rd_error *err)
{
    rd_status st = RD_OK;
    for (size_t i = from; i < to && !s->outcome_set; i++) {
        double t = now_ms();
        st = stages[i].run(s, err);
        if (stages[i].ms)
            *(double *)((char *)s->d + stages[i].ms) = now_ms() - t;
        if (st != RD_OK)
            break;
    }
    return st;
}

/* The stages from read to write, for rd_pipeline_draft_files (record == 0). */
static rd_status draft_study(rd_pipeline_worker *w, const char *const *files, int n,
                             const char *sr_path, int record, rd_pipeline_draft *d,
                             int64_t *done_review_id, rd_error *err)
{
    study s;
    rd_status st;
    study_begin(&s, w, files, n, sr_path, record, d, done_review_id);
    st = run_stages(&s, 0, N_STAGES, err);
    study_free(&s);
    return st;
}

rd_status rd_pipeline_draft_files(rd_pipeline_worker *w, const char *const *files, int n,
                                  const char *sr_path, rd_pipeline_draft *d, rd_error *err)
{
    int64_t unused = 0;
    return draft_study(w, files, n, sr_path, 0, d, &unused, err);
}

/* The report of a study's files for rd_pipeline_import_study: the texts of its SR with
 * findings or impression text, a verified one first. *found 0 when there is none. */
static rd_status study_report(const char *const *files, int n, const rd_dicom_meta *metas,
                              rd_sr_info *best, int *found, rd_error *err)
{
    *found = 0;
    for (int i = 0; i < n; i++) {
        rd_sr_info info;
        if (strcmp(metas[i].modality, "SR") != 0 ||
            rd_sr_read(files[i], NULL, &info, NULL) != RD_OK)
            continue;
        int verified = strcmp(info.verification_flag, "VERIFIED") == 0;
        if ((info.findings_text || info.impression_text) &&
            (!*found || (verified && strcmp(best->verification_flag, "VERIFIED") != 0))) {
            if (*found)
                rd_sr_info_free(best);
            *best = info;
            *found = 1;
            continue;
        }
        rd_sr_info_free(&info);
    }
    (void)err;
    return RD_OK;
}

rd_status rd_pipeline_import_study(rd_pipeline_worker *w, const char *const *files, int n,
                                   rd_pipeline_result *res, rd_error *err)
{
    rd_pipeline *p = w->p;
    rd_dicom_meta *metas = NULL;
    const char **images = NULL;
    rd_dicom_meta *image_metas = NULL;
    rd_dicom_options dopts;
    rd_sr_info report;
    int found = 0, n_images = 0, added = 0, frontal;
    const char *rule = "";
    rd_status st = RD_OK;

    memset(res, 0, sizeof *res);
    memset(&report, 0, sizeof report);
    if (!p->ix) {
        res->outcome = RD_PIPELINE_SKIPPED;
        rd_strlcpy(res->reason, "the model has no embedding: no archive", sizeof res->reason);
        return RD_OK;
    }
    if (!(metas = calloc((size_t)n, sizeof *metas)) ||
        !(images = calloc((size_t)n, sizeof *images)) ||
        !(image_metas = calloc((size_t)n, sizeof *image_metas))) {
        st = rd_error_set(err, RD_E_NOMEM, "import: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        rd_error e;
        if (rd_dicom_read_meta(files[i], &metas[i], &e) != RD_OK) {
            metas[i].modality[0] = '\0';
            continue;
        }
        if (i == 0 || !res->study_uid[0])
            rd_strlcpy(res->study_uid, metas[i].study_uid, sizeof res->study_uid);
        if (strcmp(metas[i].modality, "SR") != 0) {
            images[n_images] = files[i];
            image_metas[n_images++] = metas[i];
        }
    }
    if ((st = study_report(files, n, metas, &report, &found, err)) != RD_OK)
        goto out;
    if (!found) {
        res->outcome = RD_PIPELINE_SKIPPED;
        rd_strlcpy(res->reason, "no report (SR with text) to import", sizeof res->reason);
        goto out;
    }
    rd_dicom_options_from_config(&dopts, &p->cfg);
    frontal = rd_pipeline_choose_frontal(images, image_metas, n_images, &dopts, NULL, &rule);
    if (frontal < 0) {
        res->outcome = RD_PIPELINE_SKIPPED;
        rd_strlcpy(res->reason, "no frontal image to import", sizeof res->reason);
        goto out;
    }
    /* The review module's one "decode, embed, add" path for reported studies. */
    if ((st = rd_review_archive_add(p->ix, w->store, w->enc, p->lab, &p->cfg, images[frontal],
                                    &image_metas[frontal], RD_ARCHIVE_IMPORT, NULL,
                                    report.findings_text, report.impression_text, &added, err)) !=
        RD_OK) {
        st = rd_error_prefix(err, st, "import");
        goto out;
    }
    res->outcome = added ? RD_PIPELINE_IMPORTED : RD_PIPELINE_DONE_BEFORE;
out:
    rd_sr_info_free(&report);
    free(metas);
    free(images);
    free(image_metas);
    return st;
}

/* record, after the stages of one study (`st` their status): its result from the draft,
 * then for a draft the heat maps, the review item, the study version and the deliveries,
 * together. `t0` is when the study started (for the drafting time histogram). */
static rd_status record_study(rd_pipeline_worker *w, rd_pipeline_draft *d, rd_status st,
                              rd_pipeline_result *res, double t0, rd_error *err)
{
    rd_pipeline *p = w->p;
    char *findings_json = NULL, *neighbours_json = NULL;
    char heatmaps[RD_FINDING_N_ABNORMAL][1024];
    double t;

    rd_strlcpy(res->study_uid, d->study_uid, sizeof res->study_uid);
    rd_strlcpy(res->content_version, d->content_version, sizeof res->content_version);
    rd_strlcpy(res->reason, d->reason, sizeof res->reason);
    res->outcome = d->outcome;
    res->n_neighbours = d->n_neighbours;
    res->ms_read = d->ms_read;
    res->ms_decode = d->ms_decode;
    res->ms_embed = d->ms_embed;
    res->ms_retrieve = d->ms_retrieve;
    res->ms_generate = d->ms_generate;
    res->ms_write = d->ms_write;
    if (st != RD_OK || d->outcome != RD_PIPELINE_DRAFTED)
        goto out;
    rd_strlcpy(res->sr_path, d->sr_path, sizeof res->sr_path);
    for (int i = 0; i < d->draft.n_items; i++) {
        if (d->draft.items[i].state == RD_STATE_PRESENT)
            res->n_present++;
        else
            res->n_uncertain++;
    }

    /* record: the heat maps, then the review item, the study version and the deliveries,
     * together. */
    t = now_ms();
    if (d->cams) {
        char dir[PL_PATH_MAX + 16];
        snprintf(dir, sizeof dir, "%s/heatmaps", p->data_dir);
        if ((st = rd_pipeline_write_heatmaps(d, dir, heatmaps, err)) != RD_OK) {
            st = rd_error_prefix(err, st, "record: heat maps");
            goto out;
        }
    }
    if ((st = review_json(d, d->cams ? heatmaps : NULL, &findings_json, &neighbours_json, err)) !=
        RD_OK) {
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
        r.study_uid = d->study_uid;
        r.content_version = d->content_version;
        r.sr_path = d->sr_path;
        r.sr_sop_instance_uid = d->sr.sop_instance_uid;
        r.air_sr_path = d->air_sr_path[0] ? d->air_sr_path : NULL;
        r.air_sr_sop_instance_uid = d->air_sr_path[0] ? d->air_sr.sop_instance_uid : NULL;
        r.fhir_path = d->fhir_path;
        r.fhir_destination = p->enqueue ? p->cfg.fhir_endpoint : NULL;
        r.frontal_sop_instance_uid = d->frontal_sop_instance_uid;
        r.model_version = d->model_version;
        r.findings_text = d->draft.findings_text;
        r.impression_text = d->draft.impression_text;
        r.findings_json = findings_json;
        r.neighbours_json = neighbours_json;
        r.images_json = d->images_json;
        r.embedding = d->embedding;
        r.dim = d->embedding_dim;
        r.patient_hash = d->patient_hash;
        r.view = d->view;
        r.study_date = d->study_date;
        r.priority = d->urgent;
        if ((st = rd_store_review_add(w->store, &r, dests, nd, &res->review_id, &added, err)) !=
            RD_OK) {
            st = rd_error_prefix(err, st, "record");
            goto out;
        }
        res->outcome = added ? RD_PIPELINE_DRAFTED : RD_PIPELINE_DONE_BEFORE;
    }
    res->ms_record = now_ms() - t;
    if (res->outcome == RD_PIPELINE_DRAFTED)
        rd_histogram_observe(p->draft_seconds, (now_ms() - t0) / 1e3);
    rd_log_info("pipeline: study %s drafted: %d present, %d uncertain, %d neighbours, SR %s%s%s",
                d->study_uid, res->n_present, res->n_uncertain, d->n_neighbours, res->sr_path,
                d->air_sr_path[0] ? ", AI results SR " : "", d->air_sr_path);
out:
    cJSON_free(findings_json);
    cJSON_free(neighbours_json);
    return st;
}

/* A block of studies: each through the stages up to the embedding, then their archive
 * searches as one (search_archive: the archive is read once for the block), then each on
 * through the rest, then recorded. A study's status and result are what it would have had
 * alone, but for the time of the search, which the block's studies share equally. */
void rd_pipeline_run_studies(rd_pipeline_worker *w, int count, const char *const *const *files,
                             const int *n, rd_pipeline_result *res, rd_status *sts, rd_error *errs)
{
    study *ss = NULL;
    rd_pipeline_draft *ds = NULL;
    rd_index_query *qs = NULL;
    rd_index_hit *hits = NULL;
    int *n_hits = NULL, *at = NULL, nq = 0, k = w->p->rs.search.k > 0 ? w->p->rs.search.k : 1;
    double *t0 = NULL;
    rd_error scratch[1], e;
    rd_status bst;

    if (count < 1)
        return;
    if (!errs && count == 1)
        errs = scratch;
    ss = calloc((size_t)count, sizeof *ss);
    ds = calloc((size_t)count, sizeof *ds);
    qs = calloc((size_t)count, sizeof *qs);
    hits = calloc((size_t)count * (size_t)k, sizeof *hits);
    n_hits = calloc((size_t)count, sizeof *n_hits);
    at = calloc((size_t)count, sizeof *at);
    t0 = calloc((size_t)count, sizeof *t0);
    if (!ss || !ds || !qs || !hits || !n_hits || !at || !t0 || !errs ||
        count > RD_INDEX_MAX_BATCH) {
        for (int i = 0; i < count; i++) {
            memset(&res[i], 0, sizeof res[i]);
            sts[i] = count > RD_INDEX_MAX_BATCH ? RD_E_INVALID : RD_E_NOMEM;
            if (errs)
                rd_error_set(&errs[i], sts[i], "read: %s",
                             sts[i] == RD_E_NOMEM ? "out of memory" : "too many studies at once");
        }
        goto out;
    }
    for (int i = 0; i < count; i++) {
        memset(&res[i], 0, sizeof res[i]);
        t0[i] = now_ms();
        study_begin(&ss[i], w, files[i], n[i], NULL, 1, &ds[i], &res[i].review_id);
        sts[i] = run_stages(&ss[i], 0, STAGE_RETRIEVE, &errs[i]);
        if (sts[i] == RD_OK && !ss[i].outcome_set &&
            (sts[i] = retrieve_query(&ss[i], &errs[i])) == RD_OK) {
            qs[nq] = ss[i].query;
            at[nq++] = i;
        }
    }
    if (nq > 0) {
        double t = now_ms(), share;
        bst = search_archive(w, qs, nq, hits, n_hits, &e);
        share = (now_ms() - t) / nq;
        for (int j = 0; j < nq; j++) {
            study *s = &ss[at[j]];
            if (bst != RD_OK) {
                sts[at[j]] = bst;
                errs[at[j]] = e;
                (void)rd_error_prefix(&errs[at[j]], bst, "retrieve");
                continue;
            }
            /* The hits (and their texts) move to the study, which frees them. */
            memcpy(s->hits, hits + (size_t)j * (size_t)k, (size_t)n_hits[j] * sizeof *hits);
            s->n_hits = n_hits[j];
            t = now_ms();
            sts[at[j]] = retrieve_scores(s, &errs[at[j]]);
            s->d->ms_retrieve = share + (now_ms() - t);
        }
    }
    for (int i = 0; i < count; i++) {
        if (sts[i] == RD_OK)
            sts[i] = run_stages(&ss[i], STAGE_RETRIEVE + 1, N_STAGES, &errs[i]);
        study_free(&ss[i]);
        sts[i] = record_study(w, &ds[i], sts[i], &res[i], t0[i], &errs[i]);
        rd_pipeline_draft_free(&ds[i]);
    }
out:
    free(ss);
    free(ds);
    free(qs);
    free(hits);
    free(n_hits);
    free(at);
    free(t0);
}

rd_status rd_pipeline_run_study(rd_pipeline_worker *w, const char *const *files, int n,
                                rd_pipeline_result *res, rd_error *err)
{
    rd_status st;
    rd_error e;
    rd_pipeline_run_studies(w, 1, &files, &n, res, &st, &e);
    if (st != RD_OK && err)
        *err = e;
    return st;
}
