/* radraft — the DICOM node that `radraft serve` runs, and its two service threads.
 *
 * A node is four parts wired together (src/pipeline/serve.c):
 *   listener   the C-STORE/C-ECHO SCP (radraft/net.h); every association has its own store
 *              connection, and a success response is sent only once the instance is durable
 *              (rd_store_put);
 *   scheduler  queues a job for every study that received nothing for
 *              server.stable_seconds (rd_scheduler, below);
 *   pool       the pipeline's workers draft the queued studies (radraft/pipeline.h); without
 *              an encoder model there is no pool and the scheduler only marks studies ready;
 *   outbox     delivers what the pipeline queued to the destinations, with backoff
 *              (rd_outbox, below).
 *   web        when web.port is not 0, the review page and its API (radraft/web.h),
 *              started last and stopped first.
 * Each thread opens its own SQLite connection; the parts wake each other (a stored
 * instance wakes the scheduler when the stable delay is short, a queued job the pool, a
 * finished job the outbox) and fall back to polling, so a missed wakeup only costs time.
 */
#ifndef RADRAFT_SERVE_H
#define RADRAFT_SERVE_H

#include <stdatomic.h>

#include "radraft/config.h"
#include "radraft/error.h"
#include "radraft/net.h"
#include "radraft/pipeline.h"
#include "radraft/store.h"

/* A C header only (it uses C11 atomics): nothing of it crosses into the C++ shim. */

/* ---- the node ---- */

typedef struct rd_serve rd_serve;

/* Opens the store (migrations; recovery of jobs and deliveries left running by a crash),
 * creates the pipeline and its pool when an encoder model is configured (without one,
 * studies are stored and delivered but not drafted, and a warning says so), then starts the
 * listener, the scheduler and the outbox. `cfg` is copied. On success *out is the caller's
 * (rd_serve_stop). Errors: RD_E_CONFIG, RD_E_DB, RD_E_IO, RD_E_MODEL, RD_E_NET (the port). */
rd_status rd_serve_start(rd_serve **out, const rd_config *cfg, rd_error *err);

/* Number of pipeline workers drafting (0 when there is no model). */
int rd_serve_workers(const rd_serve *srv);

/* Stops in the order that loses nothing: the listener first (no new association, stores in
 * progress finish), then the scheduler, the pool (jobs in progress finish) and the outbox
 * (a delivery in progress finishes; the rest waits in the store for the next start).
 * Accepts NULL. */
void rd_serve_stop(rd_serve *srv);

/* ---- the scheduler ---- */

typedef struct rd_scheduler rd_scheduler;

/* How long the scheduler may sleep at `now` when the next study becomes stable at `due`
 * (-1: none pending): until then, but at most 0.5 s (the polling fallback) and at least
 * 10 ms (no spinning on a study that is due but not yet queued, e.g. when the clock went
 * back). */
double rd_scheduler_delay(double due, double now);

/* Starts the scheduler thread on the store of cfg->server_data_dir. It queues a job per
 * stable study and wakes `pool`; when `pool` is NULL (no drafting) it ends each job itself,
 * which marks the study ready. `cfg` and `store_opts` (NULL: the defaults) are copied. On success
 * *out is the caller's (rd_scheduler_stop). Errors: RD_E_DB, RD_E_INTERNAL (no thread). */
rd_status rd_scheduler_start(rd_scheduler **out, const rd_config *cfg,
                             const rd_store_options *store_opts, rd_pipeline_pool *pool,
                             rd_error *err);
/* Makes it look at the store now (an instance arrived). Thread-safe; accepts NULL. */
void rd_scheduler_wake(rd_scheduler *sch);
/* Stops and joins the thread, then frees it. Accepts NULL. */
void rd_scheduler_stop(rd_scheduler *sch);

/* ---- the outbox ---- */

typedef struct rd_outbox rd_outbox;

/* One pass over the deliveries due at `now`: each is sent in its own association and its
 * outcome recorded (rd_store_outbox_result: done, or the next attempt after the backoff of
 * outbox.retry_initial_seconds doubling up to outbox.retry_max_seconds, or failed after
 * outbox.retry_max_attempts). *attempted (may be NULL) gets the number of deliveries
 * tried. Outcomes are timed from `now` plus the time spent sending. Stops early, between
 * deliveries, when `stop` (may be NULL) becomes non-zero.
 * Returns the store's error, if any; a failed delivery is not an error. */
rd_status rd_outbox_run_due(rd_store *s, const rd_config *cfg, const rd_net_scu_options *scu,
                            double now, atomic_int *stop, int *attempted, rd_error *err);

/* Starts the outbox thread on the store of cfg->server_data_dir: rd_outbox_run_due, then a
 * wait of 0.5 s at most (a wakeup ends it early). Copies its arguments (`store_opts`
 * NULL: the defaults). On success *out is
 * the caller's (rd_outbox_stop). Errors: RD_E_DB, RD_E_INTERNAL (no thread). */
rd_status rd_outbox_start(rd_outbox **out, const rd_config *cfg, const rd_store_options *store_opts,
                          const rd_net_scu_options *scu, rd_error *err);
/* Makes it look for due deliveries now (a job finished). Thread-safe; accepts NULL. */
void rd_outbox_wake(rd_outbox *ob);
/* Stops and joins the thread (a delivery in progress finishes), then frees it. Accepts
 * NULL. */
void rd_outbox_stop(rd_outbox *ob);

#endif
