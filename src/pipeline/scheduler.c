/* radraft — the scheduler: a job for every study that stops receiving instances.
 *
 * A study is stable when it has received nothing for server.stable_seconds; the store
 * knows when that is (rd_store_next_stable_due), so the thread sleeps until then instead of
 * polling, and a wakeup (an instance arrived, or stop) ends the sleep early. It owns its
 * thread and that thread's store connection; the jobs it queues belong to the store. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/log.h"
#include "radraft/serve.h"
#include "base/util.h"

/* The polling fallback, and the shortest sleep. */
#define SCHED_MAX_SLEEP_S 0.5
#define SCHED_MIN_SLEEP_S 0.01

struct rd_scheduler {
    rd_config cfg;
    rd_store_options store_opts;
    rd_pipeline_pool *pool; /* borrowed; NULL without drafting */
    rd_store *store;        /* the thread's connection */
    rd_wake wake;
    atomic_int stop;
    pthread_t thread;
};

double rd_scheduler_delay(double due, double now)
{
    double delay = SCHED_MAX_SLEEP_S;
    if (due >= 0)
        delay = due - now;
    if (delay > SCHED_MAX_SLEEP_S)
        delay = SCHED_MAX_SLEEP_S;
    if (!(delay >= SCHED_MIN_SLEEP_S))
        delay = SCHED_MIN_SLEEP_S;
    return delay;
}

/* One look at the store: queue the stable studies, wake the pool; without a pool, end each
 * queued job at once (the study is ready). Returns how long to sleep. */
static double schedule_once(rd_scheduler *sch)
{
    rd_store *s = sch->store;
    int queued = 0;
    double due = -1;
    rd_store_job job;
    rd_error err;
    if (rd_store_queue_stable(s, rd_store_now(), sch->cfg.server_stable_seconds, &queued, &err) !=
        RD_OK)
        rd_log_error("serve: scheduler: %s", rd_error_message(&err));
    else if (queued > 0)
        rd_log_info("serve: %d stable stud%s queued", queued, queued == 1 ? "y" : "ies");
    if (queued > 0)
        rd_pipeline_pool_wake(sch->pool);
    while (!sch->pool && !atomic_load(&sch->stop) && rd_store_job_claim(s, &job, &err) == RD_OK) {
        rd_log_info("serve: job %lld: study %s ready", (long long)job.id, job.study_uid);
        if (rd_store_job_finish(s, job.id, NULL, &err) != RD_OK)
            rd_log_error("serve: job %lld: %s", (long long)job.id, rd_error_message(&err));
    }
    if (rd_store_next_stable_due(s, sch->cfg.server_stable_seconds, &due, &err) != RD_OK) {
        rd_log_error("serve: scheduler: %s", rd_error_message(&err));
        due = -1;
    }
    return rd_scheduler_delay(due, rd_store_now());
}

static void *scheduler_main(void *arg)
{
    rd_scheduler *sch = arg;
    while (!atomic_load(&sch->stop)) {
        double delay = schedule_once(sch);
        if (!atomic_load(&sch->stop))
            (void)rd_wake_wait(&sch->wake, delay);
    }
    return NULL;
}

rd_status rd_scheduler_start(rd_scheduler **out, const rd_config *cfg,
                             const rd_store_options *store_opts, rd_pipeline_pool *pool,
                             rd_error *err)
{
    rd_scheduler *sch = calloc(1, sizeof *sch);
    rd_status st;
    if (!sch)
        return rd_error_set(err, RD_E_NOMEM, "out of memory starting the scheduler");
    sch->cfg = *cfg;
    if (store_opts)
        sch->store_opts = *store_opts;
    else
        rd_store_options_default(&sch->store_opts);
    sch->pool = pool;
    atomic_init(&sch->stop, 0);
    if ((st = rd_wake_init(&sch->wake, err)) != RD_OK) {
        free(sch);
        return st;
    }
    if ((st = rd_store_open(&sch->store, cfg->server_data_dir, &sch->store_opts, err)) != RD_OK)
        goto fail;
    if (pthread_create(&sch->thread, NULL, scheduler_main, sch) != 0) {
        st = rd_error_set(err, RD_E_INTERNAL, "cannot start the scheduler thread");
        goto fail;
    }
    *out = sch;
    return RD_OK;
fail:
    rd_store_close(sch->store);
    rd_wake_destroy(&sch->wake);
    free(sch);
    return rd_error_prefix(err, st, "scheduler");
}

void rd_scheduler_wake(rd_scheduler *sch)
{
    if (sch)
        rd_wake_post(&sch->wake);
}

void rd_scheduler_stop(rd_scheduler *sch)
{
    if (!sch)
        return;
    atomic_store(&sch->stop, 1);
    rd_wake_post(&sch->wake);
    pthread_join(sch->thread, NULL);
    rd_store_close(sch->store);
    rd_wake_destroy(&sch->wake);
    free(sch);
}
