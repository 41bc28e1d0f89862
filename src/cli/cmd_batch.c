/* radraft batch: the drafting pipeline over an archive of DICOM files, without the network;
 * the studies are a job source of the pipeline's pool (src/pipeline/batch.c). */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "radraft/batch.h"
#include "radraft/fhir.h"
#include "radraft/log.h"
#include "radraft/pipeline.h"

static const char help[] =
    "usage: radraft batch [OPTIONS] DIR_OR_FILE...\n"
    "Drafts every chest radiograph study found under the folders (recursively) with the same\n"
    "pipeline as radraft serve: instances are grouped into studies by Study Instance UID,\n"
    "studies are drafted in parallel (pipeline.workers; default one per core), and each\n"
    "draft SR is written to the SR folder and recorded as a review item in the data\n"
    "directory's database. A study is drafted once per content version (its image\n"
    "instances): running again skips what is done, so an interrupted run resumes. Progress\n"
    "(count, rate, ETA) goes to stderr: a status line on a terminal, else a line every 10 s.\n"
    "The summary lists drafted, skipped (with reasons) and failed studies. A failed study\n"
    "is recorded as a failed job with its error in the database (as serve records one) and\n"
    "is tried again by the next run. Exit status 1 when a study failed.\n\n"
    "  --out DIR           where SRs are written (default DATA/sr)\n"
    "  --send              also queue every SR for outbox.destinations and every FHIR Bundle\n"
    "                      for fhir.endpoint (radraft serve on the same data directory\n"
    "                      delivers them)\n"
    "  --data-dir D        data directory (server.data_dir, default ./radraft-data)\n"
    "  --model MODEL       encoder model (encoder.model)\n"
    "  --workers N         parallel studies (pipeline.workers)\n" RD_CLI_COMMON_HELP;

static atomic_int g_batch_stop;

static void on_batch_signal(int sig)
{
    (void)sig;
    atomic_store(&g_batch_stop, 1);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(rd_batch *b, double t0, int tty, int final)
{
    rd_batch_stats bs;
    rd_batch_get_stats(b, &bs);
    double el = mono_s() - t0, rate = el > 0 ? (double)bs.finished / el : 0;
    double eta = rate > 0 ? (double)(bs.studies - bs.finished) / rate : 0;
    if (tty)
        fprintf(stderr,
                "\r[%ld/%ld] %.2f studies/s, ETA %.0f s | drafted %ld, skipped %ld, done "
                "before %ld, failed %ld   %s",
                bs.finished, bs.studies, rate, eta, bs.drafted, bs.skipped, bs.before, bs.failed,
                final ? "\n" : "");
    else
        rd_log_info("batch: %ld/%ld studies, %.2f studies/s, ETA %.0f s (drafted %ld, skipped "
                    "%ld, done before %ld, failed %ld)",
                    bs.finished, bs.studies, rate, eta, bs.drafted, bs.skipped, bs.before,
                    bs.failed);
}

static void summary(const rd_batch_stats *bs, double el, int interrupted)
{
    printf("batch: %ld studies in %.1f s (%.2f studies/s, %.1f studies/min)%s\n", bs->finished, el,
           el > 0 ? (double)bs->finished / el : 0, el > 0 ? 60.0 * (double)bs->finished / el : 0,
           interrupted ? ", interrupted" : "");
    printf("  drafted      %ld\n", bs->drafted);
    printf("  done before  %ld\n", bs->before);
    printf("  skipped      %ld\n", bs->skipped);
    for (int i = 0; i < bs->n_reasons; i++)
        printf("    %5ld  %s\n", bs->reasons[i].count, bs->reasons[i].text);
    printf("  failed       %ld\n", bs->failed);
    if (bs->unreadable)
        printf("  unreadable files %ld\n", bs->unreadable);
    if (bs->drafted > 0) {
        double k = (double)bs->drafted;
        printf("  mean ms per drafted study: read %.2f, decode %.2f, embed %.2f, retrieve %.2f, "
               "generate %.2f, SR write %.2f, record %.2f\n",
               bs->ms_read / k, bs->ms_decode / k, bs->ms_embed / k, bs->ms_retrieve / k,
               bs->ms_generate / k, bs->ms_write / k, bs->ms_record / k);
    }
}

int rd_cmd_batch(int argc, char **argv)
{
    enum { OPT_OUT = RD_OPT_FIRST_PRIVATE, OPT_SEND, OPT_DATA, OPT_MODEL, OPT_WORKERS };
    static const struct option opts[] = {{"out", required_argument, NULL, OPT_OUT},
                                         {"send", no_argument, NULL, OPT_SEND},
                                         {"data-dir", required_argument, NULL, OPT_DATA},
                                         {"model", required_argument, NULL, OPT_MODEL},
                                         {"workers", required_argument, NULL, OPT_WORKERS},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *out = NULL, *data = NULL, *model = NULL, *workers_arg = NULL;
    int send = 0, opt, rc, n_workers = 1, threads = 1;
    rd_cli cli;
    rd_error err;
    rd_batch *b = NULL;
    rd_batch_stats bs;
    rd_pipeline *pipeline = NULL;
    rd_pipeline_pool *pool = NULL;
    struct sigaction sa;
    int tty = isatty(STDERR_FILENO);

    rd_cli_init(&cli, "radraft batch");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_OUT:
            out = optarg;
            break;
        case OPT_SEND:
            send = 1;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_MODEL:
            model = optarg;
            break;
        case OPT_WORKERS:
            workers_arg = optarg;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (optind >= argc)
        return rd_cli_usage_error(&cli, help, "no folder or file given");
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    const rd_cli_setting settings[] = {
        {"server.data_dir", data}, {"encoder.model", model}, {"pipeline.workers", workers_arg}};
    if (rd_cli_set_options(&cli, settings, RD_CLI_COUNT(settings)) != RD_EXIT_OK)
        return RD_EXIT_USAGE;
    rc = RD_EXIT_FAIL; /* what `goto out` returns from here on */
    if (send && cli.cfg.outbox_destinations.count == 0 && !cli.cfg.fhir_endpoint[0]) {
        rd_cli_error(&cli, "--send: no destination (set outbox.destinations or fhir.endpoint)");
        return RD_EXIT_USAGE;
    }
    if (send && cli.cfg.fhir_endpoint[0] &&
        rd_fhir_endpoint_check(cli.cfg.fhir_endpoint, &err) != RD_OK) {
        rd_cli_error(&cli, "fhir.endpoint: %s", rd_error_message(&err));
        return RD_EXIT_USAGE;
    }

    /* Scan and group. */
    double t0 = mono_s();
    if (rd_batch_create(&b, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    for (int i = optind; i < argc; i++)
        if (rd_batch_add_root(b, argv[i], &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            goto out;
        }
    if (rd_batch_group(b, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    rd_batch_get_stats(b, &bs);
    rd_log_info("batch: %ld DICOM instances in %ld studies (%ld other files, %ld unreadable), "
                "scanned in %.1f s",
                bs.instances, bs.studies, bs.not_dicom, bs.unreadable, mono_s() - t0);

    /* The pipeline and its pool, one worker per thread, on the studies found. */
    rd_pipeline_options po;
    rd_pipeline_plan_threads(&cli.cfg, 1, &n_workers, &threads);
    if (bs.studies > 0 && n_workers > bs.studies)
        n_workers = (int)bs.studies;
    memset(&po, 0, sizeof po);
    po.sr_dir = out;
    po.enqueue = send;
    po.encoder_threads = threads;
    rd_pipeline_source src = rd_batch_source(b);
    /* Blocks of pipeline.block studies, but no larger than an equal share of the studies
     * per worker, so that a small batch still keeps every worker busy. */
    src.block = cli.cfg.pipeline_block;
    if (bs.studies > 0 && src.block > (bs.studies + n_workers - 1) / n_workers)
        src.block = (int)((bs.studies + n_workers - 1) / n_workers);
    if (rd_pipeline_create(&pipeline, &cli.cfg, &po, &err) != RD_OK ||
        rd_pipeline_pool_start(&pool, pipeline, n_workers, &src, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    rd_log_info("batch: %d worker(s) x %d encoder thread(s), SRs into %s", n_workers, threads,
                rd_pipeline_sr_dir(pipeline));

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_batch_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    double t1 = mono_s(), last = t1;
    while (!rd_pipeline_pool_finished(pool) && !atomic_load(&g_batch_stop)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (tty || mono_s() - last >= 10) {
            progress(b, t1, tty, 0);
            last = mono_s();
        }
    }
    rd_pipeline_pool_stop(pool); /* the studies in progress finish */
    pool = NULL;
    double el = mono_s() - t1;
    progress(b, t1, tty, 1);
    rd_batch_get_stats(b, &bs);
    summary(&bs, el, atomic_load(&g_batch_stop));
    rc = bs.failed == 0 && !atomic_load(&g_batch_stop) ? RD_EXIT_OK : RD_EXIT_FAIL;
out:
    rd_pipeline_pool_stop(pool);
    rd_pipeline_free(pipeline);
    rd_batch_free(b);
    return rc;
}
