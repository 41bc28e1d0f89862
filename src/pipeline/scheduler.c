/* radraft — the scheduler: a job for every study that stops receiving instances.
 *
 * A study is stable when it has received nothing for server.stable_seconds; the store
 * knows when that is (rd_store_next_stable_due), so the thread sleeps until then instead of
 * polling, and a wakeup (an instance arrived, or stop) ends the sleep early. It owns its
 * thread and that thread's store connection; the jobs it queues belong to the store. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline_int.h"
#include "radraft/log.h"
#include "radraft/serve.h"

/* The polling fallback, and the shortest sleep. */
#define SCHED_MAX_SLEEP_S 0.5
#define SCHED_MIN_SLEEP_S 0.01

struct rd_scheduler {
    rd__service svc;
    rd_pipeline_pool *pool; /* borrowed; NULL without drafting */
    double last_beat;       /* when the node's heartbeat was last recorded */
};

/* How often the node records its heartbeat: a quarter of the node timeout, so that a
 * heartbeat or two may be late before the other nodes take its work. */
static double beat_interval(const rd_config *cfg)
{
    return cfg->server_node_timeout_seconds / 4;
}

/* The node's sign of life; the work of nodes that stopped goes back to the queues. */
static void heartbeat(rd_scheduler *sch)
{
    int requeued = 0;
    rd_error err;
    double now = rd_store_now();
    if (now - sch->last_beat < beat_interval(&sch->svc.cfg))
        return;
    sch->last_beat = now;
    if (rd_store_node_heartbeat(sch->svc.store, now, &requeued, &err) != RD_OK) {
        rd_log_error("serve: heartbeat: %s", rd_error_message(&err));
        return;
    }
    if (requeued > 0) {
        rd_log_warn("serve: %d job(s) or deliveries of a node without a heartbeat for %g s"
                    " queued again",
                    requeued, sch->svc.cfg.server_node_timeout_seconds);
        rd_pipeline_pool_wake(sch->pool);
    }
}

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
    rd_store *s = sch->svc.store;
    int queued = 0;
    double due = -1;
    rd_store_job job;
    rd_error err;
    heartbeat(sch);
    if (rd_store_queue_stable(s, rd_store_now(), sch->svc.cfg.server_stable_seconds, &queued,
                              &err) != RD_OK)
        rd_log_error("serve: scheduler: %s", rd_error_message(&err));
    else if (queued > 0)
        rd_log_info("serve: %d stable stud%s queued", queued, queued == 1 ? "y" : "ies");
    if (queued > 0)
        rd_pipeline_pool_wake(sch->pool);
    while (!sch->pool && !rd__service_stopping(&sch->svc) &&
           rd_store_job_claim(s, &job, &err) == RD_OK) {
        rd_log_info("serve: job %lld: study %s ready", (long long)job.id, job.study_uid);
        if (rd_store_job_finish(s, job.id, NULL, &err) != RD_OK)
            rd_log_error("serve: job %lld: %s", (long long)job.id, rd_error_message(&err));
    }
    if (rd_store_next_stable_due(s, sch->svc.cfg.server_stable_seconds, &due, &err) != RD_OK) {
        rd_log_error("serve: scheduler: %s", rd_error_message(&err));
        due = -1;
    }
    return rd_scheduler_delay(due, rd_store_now());
}

static void *scheduler_main(void *arg)
{
    rd_scheduler *sch = arg;
    while (!rd__service_stopping(&sch->svc)) {
        double delay = schedule_once(sch);
        if (!rd__service_stopping(&sch->svc))
            (void)rd_wake_wait(&sch->svc.wake, delay);
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
    sch->pool = pool;
    if ((st = rd__service_start(&sch->svc, cfg, store_opts, scheduler_main, sch, "scheduler",
                                err)) != RD_OK) {
        free(sch);
        return st;
    }
    *out = sch;
    return RD_OK;
}

void rd_scheduler_wake(rd_scheduler *sch)
{
    if (sch)
        rd__service_wake(&sch->svc);
}

void rd_scheduler_stop(rd_scheduler *sch)
{
    if (!sch)
        return;
    rd__service_stop(&sch->svc);
    free(sch);
}
