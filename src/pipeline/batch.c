/* radraft — batch: the studies of folders of DICOM files as a job source for the pool.
 *
 * Study selection for `radraft batch`: the files are probed, grouped by Study Instance UID
 * and handed out one study per job; the pool runs them with serve's stages and retry
 * policy, and this source records each outcome as serve would (see radraft/batch.h). It
 * owns the file list, the per-study attempts and due times, and the counters. */
#include "radraft/batch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "radraft/dicom.h"
#include "radraft/log.h"
#include "radraft/store.h"
#include "base/util.h"
#include "base/walk.h"

typedef struct batch_file {
    char *path;
    char study[RD_STORE_UID_MAX + 1];
} batch_file;

typedef struct batch_study {
    long first, count; /* a run of `files` after grouping */
    int attempts;
    double retry_due; /* while in the retry list: when it may run again */
} batch_study;

struct rd_batch {
    pthread_mutex_t mu; /* guards everything below once the source is in use */
    batch_file *files;
    long n_files, cap_files;
    batch_study *studies;
    long next;      /* the next study never claimed */
    long in_flight; /* claimed, not yet finished */
    long *retry;    /* studies waiting for a retry */
    long n_retry, cap_retry;
    long reserved; /* room in `retry` promised to workers about to add a study */
    rd_batch_stats stats;
};

rd_status rd_batch_create(rd_batch **out, rd_error *err)
{
    rd_batch *b = calloc(1, sizeof *b);
    if (!b)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return rd_error_set(err, RD_E_INTERNAL, "cannot create a mutex");
    }
    *out = b;
    return RD_OK;
}

void rd_batch_free(rd_batch *b)
{
    if (!b)
        return;
    for (long i = 0; i < b->n_files; i++)
        free(b->files[i].path);
    free(b->files);
    free(b->studies);
    free(b->retry);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* ---- scanning ---- */

/* The rd_walk callback: one file of the folders given. */
static rd_status add_file(void *ctx, const char *path, const struct stat *sb, rd_error *err)
{
    rd_batch *b = ctx;
    rd_dicom_meta m;
    rd_error e;
    (void)sb;
    if (!rd_dicom_probe(path)) {
        b->stats.not_dicom++;
        return RD_OK;
    }
    rd_status rs = rd_dicom_read_meta(path, &m, &e);
    if (rs != RD_OK || !m.study_uid[0] || strlen(m.study_uid) > RD_STORE_UID_MAX) {
        rd_log_warn("batch: %s: %s", path,
                    rs != RD_OK      ? rd_error_message(&e)
                    : m.study_uid[0] ? "Study Instance UID longer than 64 characters"
                                     : "no Study Instance UID");
        b->stats.unreadable++;
        return RD_OK;
    }
    if (b->n_files >= RD_BATCH_MAX_FILES)
        return rd_error_set(err, RD_E_TOO_LARGE, "more than %ld DICOM files", RD_BATCH_MAX_FILES);
    if (b->n_files == b->cap_files) {
        long ncap = b->cap_files ? b->cap_files * 2 : 256;
        batch_file *nv = realloc(b->files, (size_t)ncap * sizeof *nv);
        if (!nv)
            return rd_error_set(err, RD_E_NOMEM, "out of memory while scanning");
        b->files = nv;
        b->cap_files = ncap;
    }
    b->files[b->n_files].path = strdup(path);
    if (!b->files[b->n_files].path)
        return rd_error_set(err, RD_E_NOMEM, "out of memory while scanning");
    rd_strlcpy(b->files[b->n_files].study, m.study_uid, sizeof b->files[b->n_files].study);
    b->n_files++;
    return RD_OK;
}

rd_status rd_batch_add_root(rd_batch *b, const char *root, rd_error *err)
{
    rd_walk_options o;
    rd_walk_stats ws;
    rd_status st;
    rd_walk_options_default(&o);
    o.skip_unreadable = 1;
    o.skip_too_deep = 1;
    o.max_depth = 32;
    st = rd_walk(root, &o, add_file, b, &ws, err);
    b->stats.unreadable += ws.unreadable;
    if (st == RD_E_NOT_FOUND || (st == RD_E_IO && ws.folders == 0)) {
        rd_log_warn("batch: %s; skipped", rd_error_message(err));
        return RD_OK;
    }
    return st;
}

static int cmp_file(const void *a, const void *b)
{
    const batch_file *x = a, *y = b;
    int c = strcmp(x->study, y->study);
    return c ? c : strcmp(x->path, y->path);
}

rd_status rd_batch_group(rd_batch *b, rd_error *err)
{
    long n = 0;
    qsort(b->files, (size_t)b->n_files, sizeof *b->files, cmp_file);
    b->studies = calloc((size_t)(b->n_files > 0 ? b->n_files : 1), sizeof *b->studies);
    if (!b->studies)
        return rd_error_set(err, RD_E_NOMEM, "out of memory grouping studies");
    for (long i = 0; i < b->n_files; i++) {
        if (i == 0 || strcmp(b->files[i].study, b->files[i - 1].study) != 0)
            b->studies[n++].first = i;
        b->studies[n - 1].count++;
    }
    b->stats.instances = b->n_files;
    b->stats.studies = n;
    return RD_OK;
}

/* ---- the source ---- */

static void fill_job(rd_batch *b, long i, rd_store_job *job)
{
    batch_study *bs = &b->studies[i];
    bs->attempts++;
    job->id = i;
    rd_strlcpy(job->study_uid, b->files[bs->first].study, sizeof job->study_uid);
    job->attempts = bs->attempts;
    b->in_flight++;
}

static rd_status batch_claim(void *ctx, rd_pipeline_worker *w, rd_store_job *job, int *finished,
                             rd_error *err)
{
    rd_batch *b = ctx;
    rd_status st = RD_E_NOT_FOUND;
    (void)w;
    (void)err;
    pthread_mutex_lock(&b->mu);
    /* Retries first, once due: they have waited; then the studies never tried. */
    double now = rd_store_now();
    for (long k = 0; k < b->n_retry; k++)
        if (b->studies[b->retry[k]].retry_due <= now) {
            fill_job(b, b->retry[k], job);
            b->retry[k] = b->retry[--b->n_retry];
            st = RD_OK;
            break;
        }
    if (st != RD_OK && b->next < b->stats.studies) {
        fill_job(b, b->next++, job);
        st = RD_OK;
    }
    if (st != RD_OK && b->in_flight == 0 && b->n_retry == 0)
        *finished = 1;
    pthread_mutex_unlock(&b->mu);
    return st;
}

static rd_status batch_files(void *ctx, rd_pipeline_worker *w, const rd_store_job *job,
                             char ***files, int *n, rd_error *err)
{
    rd_batch *b = ctx;
    const batch_study *bs = &b->studies[job->id];
    char **v;
    (void)w;
    /* A study over the cap is refused whole, never cut down to it, as the store refuses
     * one in serve; the refusal is recorded on its job with this reason. */
    if (bs->count > RD_STORE_STUDY_MAX_FILES)
        return rd_error_set(err, RD_E_TOO_LARGE, "a study of %ld instances (at most %d)", bs->count,
                            RD_STORE_STUDY_MAX_FILES);
    *n = (int)bs->count;
    v = calloc((size_t)*n, sizeof *v);
    if (!v)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    for (int k = 0; k < *n; k++)
        if (!(v[k] = strdup(b->files[bs->first + k].path))) {
            rd_store_free_paths(v, *n);
            return rd_error_set(err, RD_E_NOMEM, "out of memory");
        }
    *files = v;
    return RD_OK;
}

/* Records a study's outcome as a job in the store, as `serve` records the jobs it runs:
 * a failure as a failed job with its message, so that it is durable and a rerun can tell
 * it from a study never seen; a success (`error` NULL) only when a failed job of the study
 * is on record, so that the study's newest job tells its state. A store error is logged:
 * the study's outcome stands either way. */
static void record_job(rd_pipeline_worker *w, const char *study, int attempts, const char *error)
{
    rd_store *s = rd_pipeline_worker_store(w);
    rd_store_job job;
    rd_error e;
    long failed_before = 0;
    rd_status st = RD_OK;
    if (!error) {
        st = rd_store_count_jobs(s, study, RD_JOB_FAILED, &failed_before, &e);
        if (st != RD_OK || failed_before == 0)
            goto out;
    }
    if ((st = rd_store_job_begin(s, study, attempts, &job, &e)) == RD_OK)
        st = rd_store_job_finish(s, job.id, error, &e);
out:
    if (st != RD_OK)
        rd_log_error("batch: study %s: cannot record its job: %s", study, rd_error_message(&e));
}

static void count_reason(rd_batch_stats *bs, const char *reason)
{
    char text[sizeof bs->reasons[0].text];
    /* Reasons that name a value ("modality CT") are kept whole; long ones are cut. */
    rd_strlcpy(text, reason, sizeof text);
    for (int i = 0; i < bs->n_reasons; i++)
        if (strcmp(bs->reasons[i].text, text) == 0) {
            bs->reasons[i].count++;
            return;
        }
    if (bs->n_reasons < RD_BATCH_MAX_REASONS) {
        rd_strlcpy(bs->reasons[bs->n_reasons].text, text, sizeof bs->reasons[0].text);
        bs->reasons[bs->n_reasons++].count = 1;
    } else {
        bs->reasons[RD_BATCH_MAX_REASONS - 1].count++;
    }
}

void rd_batch_stats_count(rd_batch_stats *bs, const rd_pipeline_result *res)
{
    switch (res->outcome) {
    case RD_PIPELINE_DRAFTED:
        bs->drafted++;
        bs->ms_read += res->ms_read;
        bs->ms_decode += res->ms_decode;
        bs->ms_embed += res->ms_embed;
        bs->ms_retrieve += res->ms_retrieve;
        bs->ms_generate += res->ms_generate;
        bs->ms_write += res->ms_write;
        bs->ms_record += res->ms_record;
        break;
    case RD_PIPELINE_SKIPPED:
        bs->skipped++;
        count_reason(bs, res->reason);
        break;
    case RD_PIPELINE_DONE_BEFORE:
        bs->before++;
        break;
    case RD_PIPELINE_IMPORTED:
        bs->imported++;
        break;
    }
}

/* Reserves room in the retry list for one more study; 0 when there is none. */
static int reserve_retry(rd_batch *b)
{
    int ok = 1;
    pthread_mutex_lock(&b->mu);
    if (b->n_retry + b->reserved >= b->cap_retry) {
        long ncap = b->cap_retry ? b->cap_retry * 2 : 16;
        long *nv = realloc(b->retry, (size_t)ncap * sizeof *nv);
        if (nv) {
            b->retry = nv;
            b->cap_retry = ncap;
        } else {
            ok = 0;
        }
    }
    if (ok)
        b->reserved++;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

static rd_status batch_finish(void *ctx, rd_pipeline_worker *w, const rd_store_job *job,
                              rd_status st, const rd_pipeline_result *res, const char *error,
                              double retry_delay, rd_error *err)
{
    rd_batch *b = ctx;
    rd_status out = RD_OK;
    if (st != RD_OK && retry_delay >= 0 && !reserve_retry(b)) {
        retry_delay = -1; /* no room to wait: the failure is final */
        out = rd_error_set(err, RD_E_NOMEM, "out of memory queueing a retry");
    }
    /* The store first, outside the lock: the counters follow what is on record. */
    if (st != RD_OK && retry_delay < 0)
        record_job(w, job->study_uid, job->attempts, error);
    else if (st == RD_OK && res->outcome != RD_PIPELINE_DONE_BEFORE)
        record_job(w, job->study_uid, job->attempts, NULL);
    pthread_mutex_lock(&b->mu);
    b->in_flight--;
    if (st != RD_OK && retry_delay >= 0) {
        b->studies[job->id].retry_due = rd_store_now() + retry_delay;
        b->retry[b->n_retry++] = job->id;
        b->reserved--;
    } else {
        b->stats.finished++;
        if (st != RD_OK)
            b->stats.failed++;
        else
            rd_batch_stats_count(&b->stats, res);
    }
    pthread_mutex_unlock(&b->mu);
    if (st != RD_OK && retry_delay >= 0)
        rd_log_warn("batch: study %s: attempt %d failed, retrying in %.0f s: %s", job->study_uid,
                    job->attempts, retry_delay, error);
    else if (st != RD_OK)
        rd_log_error("batch: study %s failed: %s", job->study_uid, error);
    return out;
}

rd_pipeline_source rd_batch_source(rd_batch *b)
{
    rd_pipeline_source src = {b, batch_claim, batch_files, batch_finish, NULL, 1};
    return src;
}

void rd_batch_get_stats(rd_batch *b, rd_batch_stats *out)
{
    pthread_mutex_lock(&b->mu);
    *out = b->stats;
    pthread_mutex_unlock(&b->mu);
}
