/* radraft serve: the DICOM listener, the job scheduler and the outbox. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "radraft/log.h"
#include "radraft/net.h"
#include "radraft/pipeline.h"
#include "radraft/store.h"
#include "base/util.h"

static const char help[] =
    "usage: radraft serve [OPTIONS]\n"
    "Runs radraft as a DICOM node: a C-STORE/C-ECHO listener that stores what it receives\n"
    "durably (a success response only once the file and its index row are on disk), a job\n"
    "for every study that stops receiving for server.stable_seconds, and an outbox that\n"
    "delivers results to the configured destinations with retries. SIGINT or SIGTERM stop it\n"
    "cleanly: no new association, the stores in progress finish, then it exits.\n"
    "With an encoder model (encoder.model), every stable study is drafted by\n"
    "pipeline.workers workers: the draft SR goes to DATA/sr, a review item (state draft)\n"
    "to the database, and the SR to every destination through the outbox.\n\n"
    "  --port N            listener TCP port (server.port, default 11112)\n"
    "  --ae-title T        listener AE title (server.ae_title, default RADRAFT)\n"
    "  --data-dir D        data directory (server.data_dir, default ./radraft-data)\n"
    "  --stable-seconds N  seconds without a new instance before a study's job is queued\n"
    "  --send-to AE@host:port  a destination for results (repeatable; replaces\n"
    "                      outbox.destinations)\n" RD_CLI_COMMON_HELP;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct serve_ctx {
    const rd_config *cfg;
    rd_store_options store_opts;
    rd_net_scu_options scu;
    int drafting;           /* the pipeline's workers take the jobs */
    rd_pipeline_pool *pool; /* NULL without drafting */
    /* Wakeups that shorten the polling sleeps (which stay as the fallback): a new instance
     * wakes the scheduler, a finished job the outbox, and the shutdown both. */
    rd_wake sched_wake;
    rd_wake outbox_wake;
} serve_ctx;

static rd_status on_assoc_begin(void *ctx, void **assoc_ctx, rd_error *err)
{
    serve_ctx *sc = ctx;
    rd_store *s = NULL;
    /* One SQLite connection per association thread. */
    rd_status st = rd_store_open(&s, sc->cfg->server_data_dir, &sc->store_opts, err);
    if (st == RD_OK)
        *assoc_ctx = s;
    return st;
}

static void on_assoc_end(void *ctx, void *assoc_ctx)
{
    (void)ctx;
    rd_store_close(assoc_ctx);
}

static rd_status on_store(void *ctx, void *assoc_ctx, const rd_net_instance *in, rd_error *err)
{
    rd_store_instance si = {in->study_uid,     in->series_uid,          in->sop_instance_uid,
                            in->sop_class_uid, in->transfer_syntax_uid, in->modality,
                            in->calling_ae};
    rd_store_put_result res = RD_STORE_NEW;
    serve_ctx *sc = ctx;
    rd_status st;
    st = rd_store_put(assoc_ctx, &si, in->file, in->file_len, in->dataset_offset, &res, err);
    /* The scheduler looks at least every 0.5 s and then sleeps until the next study is due;
     * only a shorter stable delay needs it to look now (a wakeup per instance would cost
     * it a write transaction per instance, contending with the stores). */
    if (st == RD_OK && res == RD_STORE_NEW && sc->cfg->server_stable_seconds < 0.5)
        rd_wake_post(&sc->sched_wake);
    if (st == RD_OK && res == RD_STORE_NEW)
        rd_log_debug("serve: stored %s (study %s) from %s", in->sop_instance_uid, in->study_uid,
                     in->calling_ae);
    return st;
}

static void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !g_stop)
        ;
}

/* The pool's hook after each job: its SR, if any, is in the outbox now. */
static void wake_outbox(void *ctx)
{
    rd_wake_post(ctx);
}

/* How long the scheduler may sleep: until the earliest moment a study can become stable,
 * but at most 0.5 s (the polling fallback) and at least 10 ms (no spinning on a study that
 * is due but not yet queued, e.g. when the clock went back). */
static double scheduler_delay(serve_ctx *sc, rd_store *s)
{
    double due, delay = 0.5;
    rd_error err;
    if (rd_store_next_stable_due(s, sc->cfg->server_stable_seconds, &due, &err) != RD_OK)
        rd_log_error("serve: scheduler: %s", rd_error_message(&err));
    else if (due >= 0)
        delay = due - rd_store_now();
    if (delay > 0.5)
        delay = 0.5;
    if (!(delay >= 0.01))
        delay = 0.01;
    return delay;
}

/* The scheduler: queues jobs for stable studies. The pipeline's workers run them; without
 * a model (no drafting), running a job only marks its study ready. */
static void *scheduler_main(void *arg)
{
    serve_ctx *sc = arg;
    rd_store *s = NULL;
    rd_error err;
    if (rd_store_open(&s, sc->cfg->server_data_dir, &sc->store_opts, &err) != RD_OK) {
        rd_log_error("serve: scheduler: %s", rd_error_message(&err));
        return NULL;
    }
    while (!g_stop) {
        int queued = 0;
        rd_store_job job;
        if (rd_store_queue_stable(s, rd_store_now(), sc->cfg->server_stable_seconds, &queued,
                                  &err) != RD_OK)
            rd_log_error("serve: scheduler: %s", rd_error_message(&err));
        else if (queued > 0)
            rd_log_info("serve: %d stable stud%s queued", queued, queued == 1 ? "y" : "ies");
        if (queued > 0)
            rd_pipeline_pool_wake(sc->pool);
        while (!g_stop && !sc->drafting && rd_store_job_claim(s, &job, &err) == RD_OK) {
            rd_log_info("serve: job %lld: study %s ready", (long long)job.id, job.study_uid);
            if (rd_store_job_finish(s, job.id, NULL, &err) != RD_OK)
                rd_log_error("serve: job %lld: %s", (long long)job.id, rd_error_message(&err));
        }
        if (!g_stop)
            (void)rd_wake_wait(&sc->sched_wake, scheduler_delay(sc, s));
    }
    rd_store_close(s);
    return NULL;
}

/* The outbox: delivers due files, one association each, with backoff on failure. */
static void *outbox_main(void *arg)
{
    serve_ctx *sc = arg;
    rd_store *s = NULL;
    rd_error err;
    if (rd_store_open(&s, sc->cfg->server_data_dir, &sc->store_opts, &err) != RD_OK) {
        rd_log_error("serve: outbox: %s", rd_error_message(&err));
        return NULL;
    }
    while (!g_stop) {
        rd_store_delivery d;
        while (!g_stop && rd_store_outbox_claim(s, rd_store_now(), &d, &err) == RD_OK) {
            rd_net_peer peer;
            rd_error send_err;
            const char *files[1] = {d.file};
            rd_status st = rd_net_peer_parse(d.destination, &peer, &send_err);
            if (st == RD_OK)
                st = rd_net_send_files(&peer, &sc->scu, files, 1, NULL, &send_err);
            if (st == RD_OK)
                rd_log_info("serve: outbox: %s delivered to %s", d.file, d.destination);
            else
                rd_log_warn("serve: outbox: %s to %s: attempt %d failed: %s", d.file, d.destination,
                            d.attempts + 1, rd_error_message(&send_err));
            if (rd_store_outbox_result(s, d.id, st == RD_OK ? NULL : rd_error_message(&send_err),
                                       rd_store_now(), sc->cfg->outbox_retry_initial_seconds,
                                       sc->cfg->outbox_retry_max_seconds,
                                       sc->cfg->outbox_retry_max_attempts, &err) != RD_OK)
                rd_log_error("serve: outbox: %s", rd_error_message(&err));
        }
        /* A finished job wakes the outbox at once; the timeout is the fallback, and the
         * moment a failed delivery's retry comes due. */
        if (!g_stop)
            (void)rd_wake_wait(&sc->outbox_wake, 0.5);
    }
    rd_store_close(s);
    return NULL;
}

int rd_cmd_serve(int argc, char **argv)
{
    enum { OPT_PORT = RD_OPT_FIRST_PRIVATE, OPT_AE, OPT_DATA, OPT_STABLE, OPT_SEND_TO };
    static const struct option opts[] = {{"port", required_argument, NULL, OPT_PORT},
                                         {"ae-title", required_argument, NULL, OPT_AE},
                                         {"data-dir", required_argument, NULL, OPT_DATA},
                                         {"stable-seconds", required_argument, NULL, OPT_STABLE},
                                         {"send-to", required_argument, NULL, OPT_SEND_TO},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *port = NULL, *ae = NULL, *data = NULL, *stable = NULL;
    const char *send_to[RD_CONFIG_LIST_MAX];
    int n_send_to = 0, opt, rc = RD_EXIT_FAIL;
    rd_cli cli;
    rd_error err;
    serve_ctx sc;
    rd_store *s = NULL;
    rd_net_scp *scp = NULL;
    rd_pipeline *pipeline = NULL;
    rd_pipeline_pool *pool = NULL;
    rd_net_scp_options scp_opts;
    rd_net_handlers handlers;
    pthread_t sched_thread, outbox_thread;
    int sched_started = 0, outbox_started = 0;
    struct sigaction sa;

    rd_cli_init(&cli, "radraft serve");
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = rd_cli_common_option(&cli, opt, optarg);
        if (r < 0)
            return RD_EXIT_USAGE;
        if (r > 0)
            continue;
        switch (opt) {
        case OPT_PORT:
            port = optarg;
            break;
        case OPT_AE:
            ae = optarg;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_STABLE:
            stable = optarg;
            break;
        case OPT_SEND_TO:
            if (n_send_to >= RD_CONFIG_LIST_MAX) {
                rd_cli_error(&cli, "at most %d --send-to", RD_CONFIG_LIST_MAX);
                return RD_EXIT_USAGE;
            }
            send_to[n_send_to++] = optarg;
            break;
        case 'h':
            fputs(help, stdout);
            return RD_EXIT_OK;
        default:
            fputs(help, stderr);
            return RD_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        rd_cli_error(&cli, "unexpected argument '%s'", argv[optind]);
        return RD_EXIT_USAGE;
    }
    if (rd_cli_finish_config(&cli) != 0)
        return RD_EXIT_FAIL;
    /* Command-line options override the file, as DCMTK's tools do. */
    if ((port && rd_config_set(&cli.cfg, "server.port", port, &err) != RD_OK) ||
        (ae && rd_config_set(&cli.cfg, "server.ae_title", ae, &err) != RD_OK) ||
        (data && rd_config_set(&cli.cfg, "server.data_dir", data, &err) != RD_OK) ||
        (stable && rd_config_set(&cli.cfg, "server.stable_seconds", stable, &err) != RD_OK)) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        return RD_EXIT_USAGE;
    }
    if (n_send_to > 0) {
        cli.cfg.outbox_destinations.count = 0;
        for (int i = 0; i < n_send_to; i++)
            rd_strlcpy(cli.cfg.outbox_destinations.items[i], send_to[i],
                       sizeof cli.cfg.outbox_destinations.items[i]);
        cli.cfg.outbox_destinations.count = n_send_to;
    }
    for (int i = 0; i < cli.cfg.outbox_destinations.count; i++) {
        rd_net_peer peer;
        if (rd_net_peer_parse(cli.cfg.outbox_destinations.items[i], &peer, &err) != RD_OK) {
            rd_cli_error(&cli, "destination: %s", rd_error_message(&err));
            return RD_EXIT_USAGE;
        }
    }

    memset(&sc, 0, sizeof sc);
    sc.cfg = &cli.cfg;
    rd_store_options_default(&sc.store_opts);
    if (rd_store_dup_policy_parse(cli.cfg.store_duplicate_policy, &sc.store_opts.duplicate_policy,
                                  &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        return RD_EXIT_USAGE;
    }
    rd_net_scu_options_from_config(&sc.scu, &cli.cfg);
    rd_net_init();
    if (rd_wake_init(&sc.sched_wake, &err) != RD_OK ||
        rd_wake_init(&sc.outbox_wake, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }

    /* Open the store once up front: migrations, and recovery after a crash (jobs and
     * deliveries left running go back to their queues, half-written temporaries go). */
    if (rd_store_open(&s, cli.cfg.server_data_dir, &sc.store_opts, &err) != RD_OK ||
        rd_store_recover(s, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }

    /* The drafting pipeline, when there is a model: its workers take the stable studies'
     * jobs. Without one, radraft still receives, stores and delivers. */
    {
        char model[RD_CONFIG_STR_MAX];
        int workers, threads;
        rd_pipeline_options po;
        rd_pipeline_plan_threads(&cli.cfg, 0, &workers, &threads);
        memset(&po, 0, sizeof po);
        po.enqueue = 1;
        po.encoder_threads = threads;
        if (rd_pipeline_model_path(&cli.cfg, model, sizeof model, &err) != RD_OK) {
            rd_log_warn("serve: %s; studies are stored but not drafted", rd_error_message(&err));
        } else if (rd_pipeline_create(&pipeline, &cli.cfg, &po, &err) != RD_OK ||
                   rd_pipeline_pool_start(&pool, pipeline, workers, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            goto out;
        } else {
            sc.drafting = 1;
            sc.pool = pool;
            rd_pipeline_pool_set_on_done(pool, wake_outbox, &sc.outbox_wake);
            rd_log_info("serve: drafting with %d worker(s) x %d encoder thread(s)", workers,
                        threads);
        }
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rd_net_scp_options_from_config(&scp_opts, &cli.cfg);
    handlers.ctx = &sc;
    handlers.assoc_begin = on_assoc_begin;
    handlers.assoc_end = on_assoc_end;
    handlers.store = on_store;
    if (rd_net_scp_start(&scp, &scp_opts, &handlers, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    if (pthread_create(&sched_thread, NULL, scheduler_main, &sc) == 0)
        sched_started = 1;
    if (pthread_create(&outbox_thread, NULL, outbox_main, &sc) == 0)
        outbox_started = 1;
    if (!sched_started || !outbox_started) {
        rd_cli_error(&cli, "cannot start the scheduler or outbox thread");
        g_stop = 1;
    }
    rd_log_info("serve: ready: %s on port %d, data in %s, %d destination(s)",
                cli.cfg.server_ae_title, cli.cfg.server_port, cli.cfg.server_data_dir,
                cli.cfg.outbox_destinations.count);
    while (!g_stop)
        sleep_s(0.2);
    rd_log_info("serve: shutting down");
    rc = sched_started && outbox_started ? RD_EXIT_OK : RD_EXIT_FAIL;
out:
    g_stop = 1;
    /* The signal handler cannot post (not async-signal-safe); this thread does. */
    rd_wake_post(&sc.sched_wake);
    rd_wake_post(&sc.outbox_wake);
    rd_net_scp_stop(scp); /* stops accepting, lets in-flight stores finish */
    if (sched_started)
        pthread_join(sched_thread, NULL);
    if (outbox_started)
        pthread_join(outbox_thread, NULL);
    rd_pipeline_pool_stop(pool); /* the jobs in progress finish first */
    rd_pipeline_free(pipeline);
    rd_store_close(s);
    /* After every thread that posts or waits has been joined. */
    rd_wake_destroy(&sc.sched_wake);
    rd_wake_destroy(&sc.outbox_wake);
    return rc;
}
