/* radraft — jobs: the one pool of workers and the one retry policy of serve and batch.
 *
 * A worker thread takes a job (one study) from its pool's source, runs the study through
 * every stage (rd_pipeline_run_study), asks the retry policy what a failure means, and
 * hands the outcome back to the source, which records it. serve's source is the store's
 * durable queue, so a crash loses no job; batch's is the list of studies it scanned. The
 * pool owns its threads and their workers (each with its own store connection and
 * encoder); the source's state stays the caller's. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/log.h"
#include "radraft/pipeline.h"
#include "base/util.h"

/* The polling fallback of an idle worker: for jobs whose retry delay has passed and for a
 * missed wakeup. */
#define POOL_IDLE_WAIT_S 0.2

int rd_pipeline_status_retriable(rd_status st)
{
    return st == RD_E_IO || st == RD_E_DB || st == RD_E_NOMEM || st == RD_E_NET;
}

double rd_pipeline_retry_delay(const rd_config *cfg, rd_status st, int attempts)
{
    double delay = cfg->pipeline_retry_initial_seconds;
    if (!rd_pipeline_status_retriable(st) || attempts >= cfg->pipeline_retry_max_attempts)
        return -1;
    for (int i = 1; i < attempts && delay < cfg->pipeline_retry_max_seconds; i++)
        delay *= 2;
    return delay < cfg->pipeline_retry_max_seconds ? delay : cfg->pipeline_retry_max_seconds;
}

/* ---- the store's durable queue (serve) ---- */

static rd_status store_claim(void *ctx, rd_pipeline_worker *w, rd_store_job *job, int *finished,
                             rd_error *err)
{
    (void)ctx;
    (void)finished; /* more jobs may always be queued */
    return rd_store_job_claim(rd_pipeline_worker_store(w), job, err);
}

static rd_status store_files(void *ctx, rd_pipeline_worker *w, const rd_store_job *job,
                             char ***files, int *n, rd_error *err)
{
    rd_status st;
    (void)ctx;
    st = rd_store_study_files(rd_pipeline_worker_store(w), job->study_uid, files, n, err);
    if (st == RD_OK && *n == 0) {
        rd_store_free_paths(*files, 0);
        *files = NULL;
        return rd_error_set(err, RD_E_NOT_FOUND, "study %s has no stored instance", job->study_uid);
    }
    return st;
}

static rd_status store_finish(void *ctx, rd_pipeline_worker *w, const rd_store_job *job,
                              rd_status st, const rd_pipeline_result *res, const char *error,
                              double retry_delay, rd_error *err)
{
    rd_store *s = rd_pipeline_worker_store(w);
    (void)ctx;
    if (st == RD_OK) {
        if (res->outcome == RD_PIPELINE_DONE_BEFORE)
            rd_log_info("pipeline: job %lld: study %s: this version was processed before",
                        (long long)job->id, job->study_uid);
        return rd_store_job_finish(s, job->id, NULL, err);
    }
    if (retry_delay >= 0) {
        rd_log_warn("pipeline: job %lld: study %s: attempt %d failed, retrying in %.0f s: %s",
                    (long long)job->id, job->study_uid, job->attempts, retry_delay, error);
        return rd_store_job_retry(s, job->id, error, retry_delay, err);
    }
    rd_log_error("pipeline: job %lld: study %s failed: %s", (long long)job->id, job->study_uid,
                 error);
    return rd_store_job_finish(s, job->id, error, err);
}

/* One job at a time: a study queued by serve is drafted as soon as a worker is free, not
 * after the ones claimed with it. */
static const rd_pipeline_source store_source = {NULL,         store_claim, store_files,
                                                store_finish, NULL,        1};

/* ---- one job ---- */

/* What rd_pipeline_run_jobs keeps per job (on the heap: a block of 64 is a few hundred
 * KiB). */
typedef struct job_slot {
    char **files;
    int n;
    rd_status st;
    rd_pipeline_result res;
    rd_error err;
} job_slot;

rd_status rd_pipeline_run_jobs(rd_pipeline_worker *w, const rd_pipeline_source *src,
                               const rd_store_job *jobs, int count, rd_error *err)
{
    const char *const *study_files[RD_PIPELINE_MAX_BLOCK];
    int run_n[RD_PIPELINE_MAX_BLOCK], at[RD_PIPELINE_MAX_BLOCK], n_run = 0;
    rd_status run_sts[RD_PIPELINE_MAX_BLOCK], out = RD_OK;
    rd_pipeline_result *run_res = NULL;
    rd_error *run_errs = NULL, e;
    job_slot *js = NULL;
    if (!src)
        src = &store_source;
    if (count < 1 || count > RD_PIPELINE_MAX_BLOCK)
        return rd_error_set(err, RD_E_INVALID, "%d jobs at once (1..%d)", count,
                            RD_PIPELINE_MAX_BLOCK);
    if (src->run) {
        /* A hook other than drafting: one job after the other. */
        for (int i = 0; i < count; i++)
            (void)rd_pipeline_run_job(w, src, &jobs[i], NULL, &e);
        return RD_OK;
    }
    js = calloc((size_t)count, sizeof *js);
    run_res = calloc((size_t)count, sizeof *run_res);
    run_errs = calloc((size_t)count, sizeof *run_errs);
    if (!js || !run_res || !run_errs) {
        /* No room to run them: one at a time, as without a block. */
        free(js);
        free(run_res);
        free(run_errs);
        for (int i = 0; i < count; i++)
            (void)rd_pipeline_run_job(w, src, &jobs[i], NULL, &e);
        return RD_OK;
    }
    for (int i = 0; i < count; i++) {
        job_slot *j = &js[i];
        j->st = src->files(src->ctx, w, &jobs[i], &j->files, &j->n, &j->err);
        if (j->st != RD_OK) {
            (void)rd_error_prefix(&j->err, j->st, "read");
            continue;
        }
        study_files[n_run] = (const char *const *)j->files;
        run_n[n_run] = j->n;
        at[n_run++] = i;
    }
    if (n_run > 0)
        rd_pipeline_run_studies(w, n_run, study_files, run_n, run_res, run_sts, run_errs);
    for (int k = 0; k < n_run; k++) {
        js[at[k]].st = run_sts[k];
        js[at[k]].res = run_res[k];
        js[at[k]].err = run_errs[k];
    }
    for (int i = 0; i < count; i++) {
        job_slot *j = &js[i];
        double delay = -1;
        rd_status fst;
        rd_store_free_paths(j->files, j->n);
        if (j->st != RD_OK)
            delay = rd_pipeline_retry_delay(rd_pipeline_worker_config(w), j->st, jobs[i].attempts);
        fst = src->finish(src->ctx, w, &jobs[i], j->st, &j->res,
                          j->st == RD_OK ? NULL : rd_error_message(&j->err), delay, &e);
        if (fst != RD_OK && out == RD_OK) {
            out = fst;
            if (err)
                *err = e;
        }
    }
    free(js);
    free(run_res);
    free(run_errs);
    return out;
}

rd_status rd_pipeline_run_job(rd_pipeline_worker *w, const rd_pipeline_source *src,
                              const rd_store_job *job, rd_pipeline_result *res, rd_error *err)
{
    rd_pipeline_result local;
    char **files = NULL;
    int n = 0;
    rd_error e;
    rd_status st, fst;
    double delay = -1;
    if (!src)
        src = &store_source;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    st = src->files(src->ctx, w, job, &files, &n, &e);
    if (st != RD_OK)
        (void)rd_error_prefix(&e, st, "read");
    else
        st = (src->run ? src->run : rd_pipeline_run_study)(w, (const char *const *)files, n, res,
                                                           &e);
    rd_store_free_paths(files, n);
    if (st != RD_OK)
        delay = rd_pipeline_retry_delay(rd_pipeline_worker_config(w), st, job->attempts);
    fst = src->finish(src->ctx, w, job, st, res, st == RD_OK ? NULL : rd_error_message(&e), delay,
                      err);
    if (fst != RD_OK)
        return fst;
    if (st != RD_OK && err)
        *err = e;
    return st;
}

/* ---- the pool ---- */

struct rd_pipeline_pool {
    rd_pipeline *p;
    rd_pipeline_source src;
    int n;
    atomic_int stop;
    atomic_int ended; /* workers that ended because the source finished */
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
        rd_store_job jobs[RD_PIPELINE_MAX_BLOCK];
        rd_error err;
        /* Blocks only for drafting: a `run` hook takes one study at a time. */
        int finished = 0, n = 0, block = pool->src.run ? 1 : pool->src.block;
        rd_status st = pool->src.claim(pool->src.ctx, w, &jobs[0], &finished, &err);
        if (block < 1)
            block = 1;
        if (block > RD_PIPELINE_MAX_BLOCK)
            block = RD_PIPELINE_MAX_BLOCK;
        if (st == RD_OK) {
            /* A block: as many more as are due now, up to the source's block. */
            rd_store_job *job = &jobs[0];
            for (n = 1; n < block; n++) {
                int more_finished = 0;
                rd_error e;
                if (pool->src.claim(pool->src.ctx, w, &jobs[n], &more_finished, &e) != RD_OK)
                    break;
            }
            for (int i = 0; i < n; i++) {
                job = &jobs[i];
                rd_log_info("pipeline: job %lld: study %s (attempt %d)", (long long)job->id,
                            job->study_uid, job->attempts);
            }
            if (n == 1)
                (void)rd_pipeline_run_job(w, &pool->src, &jobs[0], NULL, &err);
            else if (rd_pipeline_run_jobs(w, &pool->src, jobs, n, &err) != RD_OK)
                rd_log_error("pipeline: %s", rd_error_message(&err));
            for (int i = 0; i < n; i++)
                pool_job_done(pool);
            continue;
        }
        if (st == RD_E_NOT_FOUND && finished) {
            atomic_fetch_add(&pool->ended, 1);
            rd_wake_post(&pool->wake); /* a worker waiting for a retry may be done too */
            break;
        }
        if (st != RD_E_NOT_FOUND)
            rd_log_error("pipeline: %s", rd_error_message(&err));
        /* A wakeup (jobs queued, or stop) ends the wait early; the timeout keeps polling as
         * the fallback. */
        if (!atomic_load(&pool->stop))
            (void)rd_wake_wait(&pool->wake, POOL_IDLE_WAIT_S);
    }
    return NULL;
}

rd_status rd_pipeline_pool_start(rd_pipeline_pool **out, rd_pipeline *p, int workers,
                                 const rd_pipeline_source *src, rd_error *err)
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
    pool->src = src ? *src : store_source;
    atomic_init(&pool->stop, 0);
    atomic_init(&pool->ended, 0);
    if ((st = rd_wake_init(&pool->wake, err)) != RD_OK) {
        free(pool);
        return st;
    }
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

int rd_pipeline_pool_finished(rd_pipeline_pool *pool)
{
    return atomic_load(&pool->ended) == pool->started;
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
