/* radraft — the pipeline: one study through every stage, and the worker pool that runs it.
 *
 * Stages of one study (rd_pipeline_run_study):
 *   read      the metadata of every instance; the study's content version is the SHA-256 of
 *             its image instances' sorted SOP Instance UIDs, so a study is drafted once per
 *             version (an SR sent back into the study does not make a new version);
 *   check     a chest radiograph? (an instance with pixel data, Modality CR or DX, Body Part
 *             Examined CHEST-like or absent); otherwise a recorded reason and no draft;
 *   frontal   the frontal image: View Position PA, then AP, else the most left-right
 *             symmetric image not marked lateral (rd_pipeline_choose_frontal);
 *   decode    the frontal image to a gray image (rd_dicom_read_image);
 *   embed     the encoder's embedding and finding scores (rd_encoder_embed);
 *   retrieve  the top-k similar archive studies (rd_index_search), their votes combined with
 *             the encoder's scores (rd_index_votes, rd_index_combine);
 *   generate  the report text (rd_generator_draft_scores_at, thresholds from
 *             generator.thresholds, else the model's, else present 0.5 / uncertain 0.3),
 *             naming the side and zone of each mentioned finding that the encoder's class
 *             activation map places (generator.localize; include/radraft/localize.h);
 *   write     the draft SR (rd_sr_write_draft) into the SR folder and, with sr.air, the AI
 *             Results SR beside it (rd_sr_write_air) (these stages are
 *             rd_pipeline_draft_files, which `radraft report` uses alone);
 *   record    the heat map of each located finding (DATA/heatmaps, rd_pipeline_write_heatmaps),
 *             then one transaction: the review item (state 'draft': findings with their
 *             side, zone and heat map, scores, neighbours, SR path), the study version's
 *             outcome, and one outbox delivery per destination and SR (rd_store_review_add).
 *
 * Threads: an rd_pipeline (configuration, generator, labeler, thresholds, archive index, the
 * encoder model's weights) is immutable once created and shared; each thread has its own
 * rd_pipeline_worker (its SQLite connection and its encoder, an inference context over the
 * pipeline's one copy of the weights). rd_pipeline_plan_threads sizes workers and encoder
 * threads so that their product does not exceed the cores.
 */
#ifndef RADRAFT_PIPELINE_H
#define RADRAFT_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "radraft/config.h"
#include "radraft/dicom.h"
#include "radraft/error.h"
#include "radraft/findings.h"
#include "radraft/generator.h"
#include "radraft/image.h"
#include "radraft/limits.h"
#include "radraft/localize.h"
#include "radraft/sr.h"
#include "radraft/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_pipeline rd_pipeline;
typedef struct rd_pipeline_worker rd_pipeline_worker;

typedef struct rd_pipeline_options {
    const char *data_dir; /* the store (radraft.db); NULL: cfg->server_data_dir */
    const char *sr_dir;   /* where draft SRs are written; NULL: DATA/sr */
    int enqueue;          /* non-zero: queue every SR for cfg->outbox_destinations */
    int encoder_threads;  /* threads of each worker's encoder (>= 1) */
    /* Where a drafted study's time goes (borrowed; must outlive the pipeline); NULL: not
     * measured. */
    struct rd_histogram *draft_seconds;
} rd_pipeline_options;

/* The encoder model to use: encoder.model (by default the model radraft ships). RD_E_CONFIG
 * when it is set empty. */
rd_status rd_pipeline_model_path(const rd_config *cfg, char *out, size_t size, rd_error *err);

/* Workers and encoder threads per worker: pipeline.workers (0: `batch` ? one per core :
 * half the cores, at least 1) and encoder.threads (0: cores / workers, at least 1), with
 * workers x threads capped at the cores by lowering the threads. */
void rd_pipeline_plan_threads(const rd_config *cfg, int batch, int *workers, int *threads);

/* Creates the shared part: loads the encoder model, templates, labeler, thresholds and the
 * archive index of the model's version (importing the model's seed archive when
 * archive.load_seed and the archive has none of that version). `cfg` is copied. On success
 * *out is the caller's (rd_pipeline_free). Errors: RD_E_CONFIG (no model, a bad data file),
 * RD_E_MODEL, RD_E_DB, RD_E_IO. */
rd_status rd_pipeline_create(rd_pipeline **out, const rd_config *cfg,
                             const rd_pipeline_options *opts, rd_error *err);
/* Accepts NULL. Every worker must be freed first. */
void rd_pipeline_free(rd_pipeline *p);

/* The SR folder in use. */
const char *rd_pipeline_sr_dir(const rd_pipeline *p);
/* Entries of the archive index (0 when there is none). */
long rd_pipeline_archive_size(rd_pipeline *p);

/* A worker: its own store connection and encoder, for one thread at a time. On success
 * *out is the caller's (rd_pipeline_worker_free). */
rd_status rd_pipeline_worker_create(rd_pipeline_worker **out, rd_pipeline *p, rd_error *err);
/* Accepts NULL. */
void rd_pipeline_worker_free(rd_pipeline_worker *w);
/* The worker's store connection (borrowed). */
rd_store *rd_pipeline_worker_store(rd_pipeline_worker *w);
/* The pipeline's configuration (borrowed). */
const rd_config *rd_pipeline_worker_config(const rd_pipeline_worker *w);

typedef enum rd_pipeline_outcome {
    RD_PIPELINE_DRAFTED = 0,     /* a draft SR was written and its review item recorded */
    RD_PIPELINE_SKIPPED = 1,     /* no draft, for the recorded reason */
    RD_PIPELINE_DONE_BEFORE = 2, /* this content version was drafted or skipped before */
    RD_PIPELINE_IMPORTED = 3 /* its own report went into the archive (rd_pipeline_import_study) */
} rd_pipeline_outcome;

const char *rd_pipeline_outcome_name(rd_pipeline_outcome o);

/* What one study gave, and how long each stage took (milliseconds). */
typedef struct rd_pipeline_result {
    rd_pipeline_outcome outcome;
    char study_uid[RD_UID_SIZE];
    char content_version[RD_SHA256_HEX_SIZE];
    char reason[512];   /* SKIPPED (or DONE_BEFORE of a skipped version): why */
    char sr_path[1024]; /* DRAFTED: the SR */
    int64_t review_id;  /* DRAFTED, DONE_BEFORE of a draft */
    int n_neighbours;
    int n_present; /* findings drafted as present */
    int n_uncertain;
    double ms_read, ms_decode, ms_embed, ms_retrieve, ms_generate, ms_write, ms_record;
} rd_pipeline_result;

/* One archive study that voted. */
typedef struct rd_pipeline_neighbour {
    int64_t id;        /* the archive entry */
    double similarity; /* cosine similarity to the frontal image */
    char study_uid[RD_UID_SIZE];
} rd_pipeline_neighbour;

/* A study drafted from its files: every stage up to and including the SR written, nothing
 * recorded. Filled by rd_pipeline_draft_files; rd_pipeline_draft_free releases it. */
typedef struct rd_pipeline_draft {
    rd_pipeline_outcome outcome; /* DRAFTED, or SKIPPED for `reason` (no SR written) */
    char reason[512];
    char study_uid[RD_UID_SIZE];
    char content_version[RD_SHA256_HEX_SIZE];
    int frontal;              /* index in `files` of the embedded image; -1 when skipped before */
    const char *frontal_rule; /* static: "view position PA", ... ("" when none) */
    char frontal_sop_instance_uid[RD_UID_SIZE];
    char model_name[128];
    char model_version[128];
    int has_encoder_scores;                     /* the model scores the 14 findings itself */
    double encoder[RD_FINDING_N_ABNORMAL];      /* the encoder's scores (0 without) */
    double votes[RD_FINDING_COUNT];             /* the neighbours' votes (0 without neighbours) */
    double combined[RD_FINDING_N_ABNORMAL];     /* what the generator used: the calibrated
                                                   probability (the model's calibration) */
    double uncalibrated[RD_FINDING_N_ABNORMAL]; /* encoder and votes combined, before it */
    rd_pipeline_neighbour *neighbours; /* owned; n_neighbours of them, most similar first */
    int n_neighbours;
    char *images_json; /* owned: the study's images, as rd_store_review.images_json */
    float *embedding;  /* owned: the frontal image's, embedding_dim floats (NULL without) */
    int embedding_dim;
    /* The frontal image's patient (as the archive hashes it), view family and date. */
    char patient_hash[RD_SHA256_HEX_SIZE];
    int view;
    int study_date;
    int urgent; /* a finding of review.urgent_findings is drafted present or uncertain */
    /* Localization (generator.localize, a model whose scores have class activation maps):
     * the maps of the frontal image (owned; n_cams maps of cam_height x cam_width floats,
     * index rd_finding; NULL without), how its orientation was read, and where each map
     * puts its finding (side NONE for all without maps). The draft's items say what the
     * text names. */
    float *cams;
    int n_cams, cam_height, cam_width;
    rd_orientation orientation;
    rd_location where[RD_FINDING_N_ABNORMAL];
    int image_width, image_height; /* the frontal image as decoded (0 when not decoded) */
    rd_draft draft;                /* owned: the texts and the states */
    char sr_path[1024];
    rd_sr_result sr;
    char air_sr_path[1024]; /* the AI Results SR beside it (sr.air), "" when none */
    rd_sr_result air_sr;
    char fhir_path[1024]; /* the FHIR Bundle beside it (fhir.enabled), "" when none */
    double ms_read, ms_decode, ms_embed, ms_retrieve, ms_generate, ms_write;
} rd_pipeline_draft;

/* Accepts a zeroed or filled draft; leaves it zeroed. */
void rd_pipeline_draft_free(rd_pipeline_draft *d);

/* Drafts one study (`files`: its instances, 1..RD_SR_MAX_SOURCES) through the stages read,
 * check, frontal, decode, embed, retrieve, generate and write, and writes the draft SR to
 * `sr_path` (NULL: <SR folder>/<StudyUID>-<version>-draft-sr.dcm). Nothing goes to the
 * store: no review item, no study version, no outbox row; it is what `radraft report` does
 * and what rd_pipeline_run_study records. RD_OK with d->outcome SKIPPED (and d->reason) when
 * the study cannot be drafted (not a chest radiograph, no usable image); otherwise the error
 * of the failing stage, prefixed with its name. On return `d` holds what was filled, for
 * rd_pipeline_draft_free, whatever the status. */
rd_status rd_pipeline_draft_files(rd_pipeline_worker *w, const char *const *files, int n,
                                  const char *sr_path, rd_pipeline_draft *d, rd_error *err);

/* The write stage alone: the draft SR of `draft` (its texts, and its findings coded with
 * their `scores`) over the study's instances `sources` (1..RD_SR_MAX_SOURCES), naming the
 * model (name and version cut to 64 characters, as the SR's LO elements require), written
 * to `sr_path` atomically, its codes from `codes` (the code table, radraft/codes.h). `radraft
 * report` with scores given uses it as the pipeline does. */
rd_status rd_pipeline_write_draft_sr(const char *const *sources, int n_sources,
                                     const rd_draft *draft,
                                     const double scores[RD_FINDING_N_ABNORMAL],
                                     const char *model_name, const char *model_version,
                                     const rd_sr_codes *codes, const char *sr_path,
                                     rd_sr_result *out, rd_error *err);

/* The AI Results SR of a draft (radraft/sr.h): per finding its state in `draft` (not
 * mentioned written absent), its calibrated probability in `scores` and the thresholds
 * `th`, the frontal image `frontal_sop_instance_uid` (one of `sources`) as the image read,
 * the model as the algorithm (name and version cut to 64 characters) with `parameters`
 * (NULL: none), written to `path` atomically. */
rd_status rd_pipeline_write_air_sr(const char *const *sources, int n_sources,
                                   const char *frontal_sop_instance_uid, const rd_draft *draft,
                                   const double scores[RD_FINDING_N_ABNORMAL],
                                   const rd_thresholds *th, const char *model_name,
                                   const char *model_version, const char *parameters,
                                   const rd_sr_codes *codes, const char *path, rd_sr_result *out,
                                   rd_error *err);

/* The AI Results SR's path beside the text SR `sr_path`: without its ".dcm" and "-sr",
 * then "-air-sr.dcm" ("x-draft-sr.dcm" -> "x-draft-air-sr.dcm", "a.dcm" -> "a-air-sr.dcm").
 * RD_E_INVALID when it does not fit `size`. */
rd_status rd_pipeline_air_sr_path(const char *sr_path, char *out, size_t size, rd_error *err);

/* The FHIR Bundle of a draft (radraft/fhir.h) whose text SR is `sr_path`: per finding its
 * state in `draft`, its probability in `scores` and the thresholds `th`, the report's
 * lifecycle named by `report_key`, written to `path` atomically. */
rd_status rd_pipeline_write_fhir(const char *sr_path, const char *report_key, const rd_draft *draft,
                                 const double scores[RD_FINDING_N_ABNORMAL],
                                 const rd_thresholds *th, const char *model_name,
                                 const char *model_version, const rd_sr_codes *codes,
                                 const char *path, rd_error *err);

/* The heat maps of a drafted study: for each item of d->draft that names a side, the
 * rd_localize_heatmap of its finding's map at the frontal image's size (the longest side cut
 * to RD_PIPELINE_HEATMAP_MAX_SIDE, the aspect kept), written atomically as an 8-bit gray PNG
 * to DIR/<StudyUID>-<version, 16 hex digits>-<Finding>.png (named by study and version, so
 * that a rerun rewrites the same files). paths[f] receives the absolute path of finding f's
 * file, "" for the others. DIR is created when needed. Nothing is written without maps. */
#define RD_PIPELINE_HEATMAP_MAX_SIDE 1024
rd_status rd_pipeline_write_heatmaps(const rd_pipeline_draft *d, const char *dir,
                                     char paths[RD_FINDING_N_ABNORMAL][1024], rd_error *err);

/* Runs one study (`files`: its instances, n >= 1) through every stage. RD_OK for every
 * outcome in rd_pipeline_outcome; otherwise the error of the stage that failed, its message
 * prefixed with the stage ("decode: ...", "record: ..."), and nothing recorded. */
rd_status rd_pipeline_run_study(rd_pipeline_worker *w, const char *const *files, int n,
                                rd_pipeline_result *res, rd_error *err);

/* The most studies a block holds (rd_pipeline_run_studies, rd_pipeline_source.block). */
#define RD_PIPELINE_MAX_BLOCK 64

/* Runs `count` studies (1..RD_PIPELINE_MAX_BLOCK; study i's files[i], n[i] of them) as one
 * block: each through the stages up to its embedding, then the archive searches of all of
 * them at once (one rd_index_search_batch: the archive is read once for the block, with
 * sgemm), then each through the rest and recorded as rd_pipeline_run_study would.
 * sts[i], res[i] and errs[i] (`errs` may be NULL for count 1) are study i's status,
 * result and error; each study's ms_retrieve is its share of the block's search. */
void rd_pipeline_run_studies(rd_pipeline_worker *w, int count, const char *const *const *files,
                             const int *n, rd_pipeline_result *res, rd_status *sts, rd_error *errs);

/* ---- jobs: the one pool and the one retry policy of serve and batch (src/pipeline/jobs.c) */

/* 1 if a failure with this status may pass on a retry (I/O, database, memory, network). */
int rd_pipeline_status_retriable(rd_status st);

/* The retry policy: after attempt `attempts` (>= 1) failed with `st`, the seconds to wait
 * before the next one: pipeline.retry_initial_seconds doubling with each attempt, at most
 * pipeline.retry_max_seconds; -1 when there is no next attempt (the failure is not
 * retriable, or pipeline.retry_max_attempts attempts were made). */
double rd_pipeline_retry_delay(const rd_config *cfg, rd_status st, int attempts);

/* Where a pool's jobs come from and where their outcomes go. A job is one study; its id,
 * study and attempts (this one included) are the source's. serve's source is the store's
 * durable queue (rd_pipeline_pool_start); batch's is the studies it scanned
 * (src/pipeline/batch.c). The functions are called on the workers' threads, several at
 * once: they must be thread-safe. */
typedef struct rd_pipeline_source {
    void *ctx;
    /* Takes the next job that is due. RD_OK; RD_E_NOT_FOUND when none is due now, with
     * *finished set to 1 when none will ever be again (the worker then ends); another
     * status is an error (logged; the worker tries again later). */
    rd_status (*claim)(void *ctx, rd_pipeline_worker *w, rd_store_job *job, int *finished,
                       rd_error *err);
    /* The job's instance files: on success *files (*n paths) is the caller's, freed with
     * rd_store_free_paths. */
    rd_status (*files)(void *ctx, rd_pipeline_worker *w, const rd_store_job *job, char ***files,
                       int *n, rd_error *err);
    /* Ends a job. `st` is the study's status: RD_OK with `res` its outcome, else a failure
     * with its message `error`; `retry_delay` >= 0 means the policy wants another attempt
     * after that many seconds, < 0 that the outcome is final. */
    rd_status (*finish)(void *ctx, rd_pipeline_worker *w, const rd_store_job *job, rd_status st,
                        const rd_pipeline_result *res, const char *error, double retry_delay,
                        rd_error *err);
    /* What is done with the job's files; NULL: rd_pipeline_run_study (drafting). */
    rd_status (*run)(rd_pipeline_worker *w, const char *const *files, int n,
                     rd_pipeline_result *res, rd_error *err);
    /* Jobs a worker claims at once, up to this many (1..RD_PIPELINE_MAX_BLOCK; 0: 1), and
     * drafts as one block (rd_pipeline_run_jobs); only without a `run` hook. */
    int block;
} rd_pipeline_source;

/* A study that comes with its own report, into the similar-case archive instead of being
 * drafted (batch --import-reports): the report is the study's SR with findings or impression
 * text (a verified one over a draft), its states what the labeler reads in it, and the
 * frontal image (rd_pipeline_choose_frontal) is embedded by the worker's encoder and added
 * with them to the archive (source import) through rd_review_archive_add, searchable at once.
 * res->outcome IMPORTED, or SKIPPED with the reason (no report, no frontal image, the model
 * has no embedding); an entry already there counts as DONE_BEFORE. */
rd_status rd_pipeline_import_study(rd_pipeline_worker *w, const char *const *files, int n,
                                   rd_pipeline_result *res, rd_error *err);

/* Stores the DICOM Part 10 file at `path` in `s` as a C-STORE of it from `source_ae` would
 * (the file copied into the store's spool, then rd_store_put_file: durable on RD_OK); its
 * study then becomes a job of the store's queue once stable, on whichever node takes it
 * (radraft batch --queue). `study_uid` gets its Study Instance UID. RD_E_DICOM for a file
 * that is not Part 10 DICOM; the store's errors otherwise (a hostile UID: RD_E_INVALID). */
rd_status rd_pipeline_ingest_file(rd_store *s, const char *path, const char *source_ae,
                                  char *study_uid, size_t study_uid_size,
                                  rd_store_put_result *result, rd_error *err);

/* Runs one claimed job of `src` (NULL: the store's queue): its files through
 * rd_pipeline_run_study, then the retry policy, then src->finish, which records the
 * outcome (for the store's queue: done, back in the queue after the delay, or failed, the
 * failure's message on the job). `res` may be NULL. Returns the study's status (RD_OK when
 * it was drafted or skipped), or the source's error when recording failed. */
rd_status rd_pipeline_run_job(rd_pipeline_worker *w, const rd_pipeline_source *src,
                              const rd_store_job *job, rd_pipeline_result *res, rd_error *err);

/* As rd_pipeline_run_job for `count` claimed jobs (1..RD_PIPELINE_MAX_BLOCK) drafted as
 * one block (rd_pipeline_run_studies; with a `run` hook, one after the other); each job is
 * finished on its own. Returns RD_OK, or the first error of recording an outcome (every
 * job is still finished). */
rd_status rd_pipeline_run_jobs(rd_pipeline_worker *w, const rd_pipeline_source *src,
                               const rd_store_job *jobs, int count, rd_error *err);

/* A pool of `workers` threads, each with its own worker, taking jobs from `src` (copied;
 * NULL: the store's queue, until stopped). Workers are created before it returns, so a bad
 * model fails here. */
typedef struct rd_pipeline_pool rd_pipeline_pool;
rd_status rd_pipeline_pool_start(rd_pipeline_pool **out, rd_pipeline *p, int workers,
                                 const rd_pipeline_source *src, rd_error *err);
/* 1 when every worker has ended because the source has finished. */
int rd_pipeline_pool_finished(rd_pipeline_pool *pool);
/* Lets the running jobs finish, joins the threads and frees the pool. Accepts NULL. */
void rd_pipeline_pool_stop(rd_pipeline_pool *pool);
/* Makes the idle workers look for a job now, rather than at their next poll (every 0.2 s,
 * which remains the fallback). Call it after queueing jobs. Accepts NULL. */
void rd_pipeline_pool_wake(rd_pipeline_pool *pool);
/* Sets a hook that a worker calls, on its own thread, after each job it ran (drafted, done
 * before, failed or retried); NULL removes it. The hook must be quick and thread-safe (it
 * may run on several workers at once); ctx stays the caller's and must outlive the pool or
 * the next call. Accepts a NULL pool. */
void rd_pipeline_pool_set_on_done(rd_pipeline_pool *pool, void (*on_done)(void *ctx), void *ctx);

/* Chooses the frontal instance among `n`: the first PA, else the first AP, else the most
 * left-right symmetric decodable image not marked lateral (decoded from files[i] with `opts`,
 * NULL: the defaults). Returns its index, or -1 when there is none; *rule (may be NULL)
 * names the rule. When `decoded` is not NULL it gets the chosen image if choosing decoded
 * it (the caller's, rd_image_free), else NULL. */
int rd_pipeline_choose_frontal(const char *const *files, const rd_dicom_meta *metas, int n,
                               const rd_dicom_options *opts, rd_image **decoded, const char **rule);

/* 1 if a View Position marks a lateral view (LL, RL, LATERAL, LAT; the one view classifier,
 * rd_view_family_from_position). */
int rd_pipeline_is_lateral(const rd_dicom_meta *m);

#ifdef __cplusplus
}
#endif
#endif
