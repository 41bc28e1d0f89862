/* radraft — the node `radraft serve` runs: listener, scheduler, pipeline pool and outbox.
 *
 * The listener's threads only receive, store and enqueue (the store callback below); the
 * heavy work runs on the pool's workers; see radraft/serve.h for how the parts wake each
 * other. It owns the parts it starts and stops them in the order that loses nothing and
 * never wakes a part already gone. */
#include <stdlib.h>
#include <string.h>

#include "radraft/log.h"
#include "radraft/metrics.h"
#include "radraft/serve.h"
#include "radraft/web.h"

struct rd_serve {
    rd_config cfg;
    rd_store_options store_opts;
    rd_store_group *group;  /* the listener's commit group (store_opts.group) */
    rd_pipeline *pipeline;  /* NULL without a model */
    rd_pipeline_pool *pool; /* NULL without a model */
    int workers;
    rd_scheduler *scheduler;
    rd_outbox *outbox;
    rd_net_scp *scp;
    rd_web *web;        /* NULL when web.port is 0 */
    rd_metrics metrics; /* the node's latencies, for /metrics */
};

/* ---- ingest: the listener's callbacks ---- */

static rd_status on_assoc_begin(void *ctx, void **assoc_ctx, rd_error *err)
{
    rd_serve *srv = ctx;
    rd_store *s = NULL;
    /* One SQLite connection per association thread. */
    rd_status st = rd_store_open(&s, srv->cfg.server_data_dir, &srv->store_opts, err);
    if (st == RD_OK)
        *assoc_ctx = s;
    return st;
}

static void on_assoc_end(void *ctx, void *assoc_ctx)
{
    (void)ctx;
    rd_store_close(assoc_ctx);
}

static rd_status on_spool(void *ctx, void *assoc_ctx, char *path, size_t size, int *fd,
                          rd_error *err)
{
    (void)ctx;
    return rd_store_spool_create(assoc_ctx, path, size, fd, err);
}

static rd_status on_store(void *ctx, void *assoc_ctx, const rd_net_instance *in, rd_error *err)
{
    rd_store_instance si = {in->study_uid,     in->series_uid,          in->sop_instance_uid,
                            in->sop_class_uid, in->transfer_syntax_uid, in->modality,
                            in->calling_ae};
    rd_store_put_result res = RD_STORE_NEW;
    rd_serve *srv = ctx;
    rd_status st;
    double t0 = rd_store_now();
    st = rd_store_put_file(assoc_ctx, &si, in->path, in->dataset_offset, &res, err);
    if (st == RD_OK)
        rd_histogram_observe(&srv->metrics.cstore, rd_store_now() - t0);
    /* The scheduler looks at least every 0.5 s and then sleeps until the next study is due;
     * only a shorter stable delay needs it to look now (a wakeup per instance would cost
     * it a write transaction per instance, contending with the stores). */
    if (st == RD_OK && res == RD_STORE_NEW && srv->cfg.server_stable_seconds < 0.5)
        rd_scheduler_wake(srv->scheduler);
    if (st == RD_OK && res == RD_STORE_NEW)
        rd_log_debug("serve: stored %s (study %s) from %s", in->sop_instance_uid, in->study_uid,
                     in->calling_ae);
    return st;
}

/* The pool's hook after each job: its SR, if any, is in the outbox now. */
static void wake_outbox(void *ctx)
{
    rd_outbox_wake(((rd_serve *)ctx)->outbox);
}

/* ---- the node ---- */

/* The drafting pipeline and its pool, when there is a model. Without one, radraft still
 * receives, stores and delivers. */
static rd_status start_drafting(rd_serve *srv, rd_error *err)
{
    char model[RD_CONFIG_STR_MAX];
    int threads;
    rd_pipeline_options po;
    rd_error why;
    rd_status st;
    if (rd_pipeline_model_path(&srv->cfg, model, sizeof model, &why) != RD_OK) {
        rd_log_warn("serve: %s; studies are stored but not drafted", rd_error_message(&why));
        return RD_OK;
    }
    rd_pipeline_plan_threads(&srv->cfg, 0, &srv->workers, &threads);
    memset(&po, 0, sizeof po);
    po.enqueue = 1;
    po.encoder_threads = threads;
    po.draft_seconds = &srv->metrics.draft;
    if ((st = rd_pipeline_create(&srv->pipeline, &srv->cfg, &po, err)) != RD_OK ||
        (st = rd_pipeline_pool_start(&srv->pool, srv->pipeline, srv->workers, NULL, err)) !=
            RD_OK) {
        srv->workers = 0;
        return st;
    }
    rd_log_info("serve: drafting with %d worker(s) x %d encoder thread(s)", srv->workers, threads);
    return RD_OK;
}

rd_status rd_serve_start(rd_serve **out, const rd_config *cfg, rd_error *err)
{
    rd_serve *srv = calloc(1, sizeof *srv);
    rd_store *s = NULL;
    rd_net_scu_options scu;
    rd_net_scp_options scp_opts;
    rd_net_handlers handlers;
    rd_status st;
    if (!srv)
        return rd_error_set(err, RD_E_NOMEM, "out of memory starting the node");
    srv->cfg = *cfg;
    rd_metrics_init(&srv->metrics);
    if ((st = rd_store_options_from_config(&srv->store_opts, cfg, err)) != RD_OK ||
        (st = rd_store_group_create(&srv->group, err)) != RD_OK)
        goto fail;
    /* The associations' puts that arrive together share a commit (rd_store_group). */
    srv->store_opts.group = srv->group;
    rd_net_init();
    /* Open the store once up front: migrations, and recovery after a crash (jobs and
     * deliveries left running go back to their queues, half-written temporaries go). */
    if ((st = rd_store_open(&s, cfg->server_data_dir, &srv->store_opts, err)) != RD_OK ||
        (st = rd_store_recover(s, err)) != RD_OK)
        goto fail;
    rd_store_close(s);
    s = NULL;
    if ((st = start_drafting(srv, err)) != RD_OK)
        goto fail;
    rd_net_scu_options_from_config(&scu, &srv->cfg);
    if ((st = rd_outbox_start(&srv->outbox, &srv->cfg, &srv->store_opts, &scu, err)) != RD_OK)
        goto fail;
    rd_pipeline_pool_set_on_done(srv->pool, wake_outbox, srv);
    if ((st = rd_scheduler_start(&srv->scheduler, &srv->cfg, &srv->store_opts, srv->pool, err)) !=
        RD_OK)
        goto fail;
    rd_net_scp_options_from_config(&scp_opts, &srv->cfg);
    handlers.ctx = srv;
    handlers.assoc_begin = on_assoc_begin;
    handlers.spool = on_spool;
    handlers.assoc_end = on_assoc_end;
    handlers.store = on_store;
    if ((st = rd_net_scp_start(&srv->scp, &scp_opts, &handlers, err)) != RD_OK)
        goto fail;
    /* The review page comes last, once there is a node to report on. */
    if (cfg->web_port != 0) {
        rd_web_options wopts = {srv->workers, &srv->metrics};
        if ((st = rd_web_start(&srv->web, &srv->cfg, &wopts, err)) != RD_OK)
            goto fail;
    }
    rd_log_info("serve: ready: %s on port %d, data in %s, %d destination(s)", cfg->server_ae_title,
                cfg->server_port, cfg->server_data_dir, cfg->outbox_destinations.count);
    *out = srv;
    return RD_OK;
fail:
    rd_store_close(s);
    rd_serve_stop(srv);
    return st;
}

int rd_serve_workers(const rd_serve *srv)
{
    return srv->workers;
}

void rd_serve_stop(rd_serve *srv)
{
    if (!srv)
        return;
    /* Each part is stopped before the one it wakes: the listener wakes the scheduler, the
     * scheduler the pool, the pool the outbox. */
    rd_web_stop(srv->web);     /* no new review action while the node winds down */
    rd_net_scp_stop(srv->scp); /* stops accepting, lets in-flight stores finish */
    rd_scheduler_stop(srv->scheduler);
    rd_pipeline_pool_stop(srv->pool); /* the jobs in progress finish first */
    rd_outbox_stop(srv->outbox);      /* what the last jobs queued is sent after a restart */
    rd_pipeline_free(srv->pipeline);
    rd_store_group_free(srv->group); /* after every handle opened with it is closed */
    free(srv);
}
