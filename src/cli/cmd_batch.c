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
#include "radraft/http.h"
#include "radraft/log.h"
#include "radraft/net.h"
#include "radraft/store.h"
#include "base/util.h"
#include "base/walk.h"
#include "radraft/pipeline.h"

static const char help[] =
    "usage: radraft batch [OPTIONS] DIR_OR_FILE...\n"
    "       radraft batch --from-pacs AE@host:port [--since DATE] [--until DATE] [OPTIONS]\n"
    "       radraft batch --from-dicomweb URL [--since DATE] [--until DATE] [OPTIONS]\n"
    "       radraft batch --queue [--no-wait] DIR_OR_FILE...\n"
    "       radraft batch --run ID\n"
    "Drafts every chest radiograph study found under the folders (recursively) with the same\n"
    "pipeline as radraft serve: instances are grouped into studies by Study Instance UID,\n"
    "studies are drafted in parallel (pipeline.workers; default one per core), and each\n"
    "draft SR is written to the SR folder and recorded as a review item in the data\n"
    "directory's database. A study is drafted once per content version (its image\n"
    "instances): running again skips what is done, so an interrupted run resumes. Progress\n"
    "(count, rate, ETA) goes to stderr: a status line on a terminal, else a line every 10 s.\n"
    "The summary lists drafted, skipped (with reasons) and failed studies. A failed study\n"
    "is recorded as a failed job with its error in the database (as serve records one) and\n"
    "is tried again by the next run. Exit status 1 when a study failed.\n"
    "With --from-pacs the studies come from a PACS: C-FIND of the studies in the date range\n"
    "(asked in pages of qr.page_days), then each one retrieved by C-GET (qr.retrieve get) or\n"
    "C-MOVE to radraft's listener on server.port (qr.retrieve move; the PACS must know\n"
    "qr.move_destination, default server.ae_title), drafted, and its files removed. What was\n"
    "found and what became of each study is kept in the data directory: a rerun continues,\n"
    "and a study drafted before is not retrieved again (unless the PACS has new images).\n"
    "--from-dicomweb does the same over DICOMweb: QIDO-RS for the studies, WADO-RS for\n"
    "their instances (dicomweb.* keys: basic or bearer authentication, CAs, timeout).\n"
    "--queue does not draft here: it stores the folders' DICOM files in the data directory\n"
    "(durably, as C-STORE would) as one numbered run, and the `radraft serve` nodes of that\n"
    "data directory draft its studies from the shared job queue once each is stable\n"
    "(server.stable_seconds); with store.backend postgresql every node takes part. It then\n"
    "follows the run's progress in the database until every study is done (--no-wait:\n"
    "returns at once); --run ID prints a run's progress and summary at any time.\n\n"
    "  --out DIR           where SRs are written (default DATA/sr)\n"
    "  --send              also queue every SR for outbox.destinations and every FHIR Bundle\n"
    "                      for fhir.endpoint (radraft serve on the same data directory\n"
    "                      delivers them)\n"
    "  --data-dir D        data directory (server.data_dir, default ./radraft-data)\n"
    "  --model MODEL       encoder model (encoder.model)\n"
    "  --workers N         parallel studies (pipeline.workers)\n"
    "  --from-pacs PEER    query/retrieve from AE@host:port[+tls|+plain] instead of folders\n"
    "  --from-dicomweb URL the same from a DICOMweb base URL (http[s]://host[:port]/path)\n"
    "  --since DATE        first study date, YYYYMMDD (without it: one C-FIND, no paging)\n"
    "  --until DATE        last study date, YYYYMMDD (default: today)\n"
    "  --modality LIST     Modalities in Study, comma-separated (default CR,DX)\n"
    "  --study-description PATTERN  Study Description, * and ? wildcards\n"
    "  --limit N           retrieve at most N studies in this run\n"
    "  --keep              leave the retrieved files in DATA/qr/<StudyInstanceUID>\n"
    "  --import-reports    put each study's own report (its SR) and frontal image into the\n"
    "                      similar-case archive instead of drafting it: how a site seeds\n"
    "                      retrieval with its signed history\n"
    "  --queue             put the studies into the shared job queue (see above)\n"
    "  --no-wait           with --queue: do not wait for the run to finish\n"
    "  --run ID            the progress and summary of run ID (from --queue)\n" RD_CLI_COMMON_HELP;

static atomic_int g_batch_stop;

static void on_batch_signal(int sig)
{
    (void)sig;
    atomic_store(&g_batch_stop, 1);
}

/* SIGINT and SIGTERM end the run cleanly: the studies in progress finish first. */
static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_batch_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The counters of the run's source: folders (rd_batch) or a PACS (rd_qr_batch). */
typedef struct run_source {
    rd_batch *b;
    rd_qr_batch *qb;
} run_source;

static void get_stats(const run_source *r, rd_batch_stats *bs)
{
    if (r->qb)
        rd_qr_batch_get_stats(r->qb, bs);
    else
        rd_batch_get_stats(r->b, bs);
}

static void progress(const run_source *r, double t0, int tty, int final)
{
    rd_batch_stats bs;
    get_stats(r, &bs);
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
    if (bs->imported)
        printf("  imported     %ld\n", bs->imported);
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

/* ---- batch --queue: the studies into the shared job queue ---- */

typedef struct queue_ctx {
    rd_store *store;
    int64_t run;
    long files, stored, same, not_dicom, failed;
    char last_study[RD_UID_SIZE];
} queue_ctx;

static rd_status queue_file(void *ctx, const char *path, const struct stat *sb, rd_error *err)
{
    queue_ctx *q = ctx;
    char study[RD_UID_SIZE];
    rd_store_put_result res;
    rd_error e;
    rd_status st;
    (void)sb;
    if (atomic_load(&g_batch_stop))
        return rd_error_set(err, RD_E_INTERNAL, "interrupted");
    q->files++;
    st = rd_pipeline_ingest_file(q->store, path, "BATCH", study, sizeof study, &res, &e);
    if (st == RD_E_DICOM || st == RD_E_NOT_FOUND) {
        q->not_dicom++;
        rd_log_debug("batch: %s", rd_error_message(&e));
        return RD_OK;
    }
    if (st != RD_OK) {
        /* A file the store refuses (a hostile UID) is reported; the store failing stops. */
        q->failed++;
        rd_log_warn("batch: %s", rd_error_message(&e));
        return st == RD_E_INVALID ? RD_OK : rd_error_set(err, st, "%s", rd_error_message(&e));
    }
    if (res == RD_STORE_NEW || res == RD_STORE_REPLACED)
        q->stored++;
    else
        q->same++;
    /* Added after each file of it: the study counts from its last file on. */
    return rd_store_run_add_study(q->store, q->run, study, rd_store_now(), err);
}

static void print_run(int64_t run, const rd_store_run_progress *p)
{
    long before = p->done - p->drafted - p->skipped;
    printf("batch: run %lld: %ld studies: %ld waiting to be stable, %ld queued, %ld running, "
           "%ld done, %ld failed\n",
           (long long)run, p->studies, p->waiting, p->queued, p->running, p->done, p->failed);
    printf("  drafted      %ld\n", p->drafted);
    printf("  done before  %ld\n", before > 0 ? before : 0);
    printf("  skipped      %ld\n", p->skipped);
    printf("  failed       %ld\n", p->failed);
}

/* Follows the run in the database until no study is left to do (or a signal). */
static int follow_run(rd_cli *cli, rd_store *s, int64_t run, int wait)
{
    rd_store_run_progress p;
    rd_error err;
    double last = 0;
    for (;;) {
        if (rd_store_run_get(s, run, &p, &err) != RD_OK) {
            rd_cli_error(cli, "%s", rd_error_message(&err));
            return RD_EXIT_FAIL;
        }
        int left = p.waiting + p.queued + p.running > 0L;
        if (!wait || !left || atomic_load(&g_batch_stop))
            break;
        if (mono_s() - last >= 10) {
            rd_log_info("batch: run %lld: %ld of %ld studies done (%ld failed), %ld running, %ld"
                        " queued, %ld waiting",
                        (long long)run, p.done + p.failed, p.studies, p.failed, p.running, p.queued,
                        p.waiting);
            last = mono_s();
        }
        struct timespec ts = {0, 500 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    print_run(run, &p);
    return p.failed > 0 ? RD_EXIT_FAIL : RD_EXIT_OK;
}

static int queue_folders(rd_cli *cli, char **roots, int n, int wait)
{
    queue_ctx q;
    rd_walk_options wo;
    rd_store *s = NULL;
    rd_error err;
    char label[RD_STORE_RUN_LABEL_MAX + 1] = "";
    size_t len = 0;
    int rc = RD_EXIT_FAIL;

    memset(&q, 0, sizeof q);
    for (int i = 0; i < n && len < sizeof label; i++)
        len += (size_t)snprintf(label + len, sizeof label - len, "%s%s", i ? " " : "", roots[i]);
    if (rd_cli_store_open(cli, cli->cfg.server_data_dir, &s, &err) != RD_OK ||
        rd_store_run_create(s, label, &q.run, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        goto out;
    }
    q.store = s;
    rd_walk_options_default(&wo);
    wo.sorted = 1;
    wo.skip_unreadable = 1;
    for (int i = 0; i < n; i++)
        if (rd_walk(roots[i], &wo, queue_file, &q, NULL, &err) != RD_OK) {
            rd_cli_error(cli, "%s", rd_error_message(&err));
            goto out;
        }
    rd_log_info("batch: run %lld: %ld files: %ld instances stored, %ld stored before, %ld not "
                "DICOM, %ld refused",
                (long long)q.run, q.files, q.stored, q.same, q.not_dicom, q.failed);
    rc = follow_run(cli, s, q.run, wait);
    if (q.failed > 0)
        rc = RD_EXIT_FAIL;
out:
    rd_store_close(s);
    return rc;
}

/* A YYYYMMDD date. */
static int date_arg(const char *s)
{
    if (!s || strlen(s) != 8 || strspn(s, "0123456789") != 8)
        return 0;
    int m = (s[4] - '0') * 10 + (s[5] - '0'), d = (s[6] - '0') * 10 + (s[7] - '0');
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

/* "CR,DX" as DICOM's "CR\DX"; each one 1-16 upper-case letters or digits. */
static int modality_arg(const char *s, char *out, size_t size)
{
    size_t n = strlen(s), run = 0;
    if (n == 0 || n >= size)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == ',' || c == '\0') {
            if (run == 0 || run > 16)
                return 0;
            out[i] = c ? '\\' : '\0';
            run = 0;
        } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            out[i] = c;
            run++;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ---- C-MOVE: radraft's listener files what the PACS sends into the study's folder ---- */

static rd_status moved_spool(void *ctx, void *assoc_ctx, char *path, size_t size, int *fd,
                             rd_error *err)
{
    const char *dir = ctx ? rd_qr_batch_work_dir(ctx) : ".";
    (void)assoc_ctx;
    if ((size_t)snprintf(path, size, "%s/.spool-XXXXXX", dir) >= size)
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", dir);
    if ((*fd = mkstemp(path)) < 0)
        return rd_error_set(err, RD_E_IO, "%s: cannot create a spool file", path);
    return RD_OK;
}

static rd_status moved_store(void *ctx, void *assoc_ctx, const rd_net_instance *in, rd_error *err)
{
    (void)assoc_ctx;
    return rd_qr_batch_file_moved(ctx, in->study_uid, in->sop_instance_uid, in->path, err);
}

int rd_cmd_batch(int argc, char **argv)
{
    enum {
        OPT_OUT = RD_OPT_FIRST_PRIVATE,
        OPT_SEND,
        OPT_DATA,
        OPT_MODEL,
        OPT_WORKERS,
        OPT_PACS,
        OPT_SINCE,
        OPT_UNTIL,
        OPT_MODALITY,
        OPT_DESCRIPTION,
        OPT_LIMIT,
        OPT_KEEP,
        OPT_DICOMWEB,
        OPT_IMPORT,
        OPT_QUEUE,
        OPT_NO_WAIT,
        OPT_RUN
    };
    static const struct option opts[] = {
        {"out", required_argument, NULL, OPT_OUT},
        {"send", no_argument, NULL, OPT_SEND},
        {"data-dir", required_argument, NULL, OPT_DATA},
        {"model", required_argument, NULL, OPT_MODEL},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"from-pacs", required_argument, NULL, OPT_PACS},
        {"since", required_argument, NULL, OPT_SINCE},
        {"until", required_argument, NULL, OPT_UNTIL},
        {"modality", required_argument, NULL, OPT_MODALITY},
        {"study-description", required_argument, NULL, OPT_DESCRIPTION},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"from-dicomweb", required_argument, NULL, OPT_DICOMWEB},
        {"import-reports", no_argument, NULL, OPT_IMPORT},
        {"queue", no_argument, NULL, OPT_QUEUE},
        {"no-wait", no_argument, NULL, OPT_NO_WAIT},
        {"run", required_argument, NULL, OPT_RUN},
        RD_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0}};
    const char *out = NULL, *data = NULL, *model = NULL, *workers_arg = NULL, *pacs = NULL;
    const char *since = NULL, *until = NULL, *description = NULL, *dicomweb = NULL;
    char modalities[68] = "CR\\DX";
    long limit = 0;
    int send = 0, keep = 0, import = 0, queue = 0, no_wait = 0, opt, rc, n_workers = 1;
    int threads = 1;
    long run_id = 0;
    rd_cli cli;
    rd_error err;
    rd_batch *b = NULL;
    rd_qr_batch *qb = NULL;
    rd_net_scp *scp = NULL;
    rd_store *store = NULL;
    run_source run = {NULL, NULL};
    rd_batch_stats bs;
    rd_pipeline *pipeline = NULL;
    rd_pipeline_pool *pool = NULL;
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
        case OPT_PACS:
            pacs = optarg;
            break;
        case OPT_SINCE:
            since = optarg;
            break;
        case OPT_UNTIL:
            until = optarg;
            break;
        case OPT_MODALITY:
            if (!modality_arg(optarg, modalities, sizeof modalities))
                return rd_cli_usage_error(&cli, help,
                                          "--modality: a comma-separated list of "
                                          "modalities (CR,DX)");
            break;
        case OPT_DESCRIPTION:
            description = optarg;
            break;
        case OPT_LIMIT: {
            char *end = NULL;
            limit = strtol(optarg, &end, 10);
            if (!end || *end || limit < 1)
                return rd_cli_usage_error(&cli, help, "--limit: a positive number");
            break;
        }
        case OPT_KEEP:
            keep = 1;
            break;
        case OPT_DICOMWEB:
            dicomweb = optarg;
            break;
        case OPT_IMPORT:
            import = 1;
            break;
        case OPT_QUEUE:
            queue = 1;
            break;
        case OPT_NO_WAIT:
            no_wait = 1;
            break;
        case OPT_RUN:
            if (rd_cli_parse_int(&cli, "--run", optarg, 1, 2147483647L, &run_id) != 0)
                return RD_EXIT_USAGE;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (run_id || queue) {
        rd_store *s = NULL;
        if (pacs || dicomweb || out || send || model || workers_arg || import || keep)
            return rd_cli_usage_error(&cli, help,
                                      "--queue and --run take folders (--queue) and --data-dir"
                                      " only: the nodes draft");
        if (run_id && (queue || optind < argc))
            return rd_cli_usage_error(&cli, help, "--run ID takes no folder");
        if (queue && optind >= argc)
            return rd_cli_usage_error(&cli, help, "--queue: no folder or file given");
        if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
            return rc;
        const rd_cli_setting qs[] = {{"server.data_dir", data}};
        if (rd_cli_set_options(&cli, qs, RD_CLI_COUNT(qs)) != RD_EXIT_OK)
            return RD_EXIT_USAGE;
        catch_stop_signals();
        if (queue)
            return queue_folders(&cli, argv + optind, argc - optind, !no_wait);
        if (rd_cli_store_open(&cli, cli.cfg.server_data_dir, &s, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            return RD_EXIT_FAIL;
        }
        rc = follow_run(&cli, s, run_id, 0);
        rd_store_close(s);
        return rc;
    }
    if (no_wait)
        return rd_cli_usage_error(&cli, help, "--no-wait goes with --queue");
    if (pacs && dicomweb)
        return rd_cli_usage_error(&cli, help, "--from-pacs or --from-dicomweb, not both");
    if (dicomweb)
        pacs = dicomweb; /* a PACS either way, below */
    if (!pacs && optind >= argc)
        return rd_cli_usage_error(&cli, help, "no folder or file given");
    if (pacs && optind < argc)
        return rd_cli_usage_error(&cli, help, "--from-pacs takes no folder or file");
    if (!pacs && (since || until || description || limit || keep || import))
        return rd_cli_usage_error(
            &cli, help,
            "--since, --until, --modality, --limit, --keep and --import-reports "
            "go with --from-pacs");
    if ((since && !date_arg(since)) || (until && !date_arg(until)))
        return rd_cli_usage_error(&cli, help, "--since and --until take a date YYYYMMDD");
    if (since && until && strcmp(since, until) > 0)
        return rd_cli_usage_error(&cli, help, "--since is after --until");
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

    double t0 = mono_s();
    if (pacs) {
        /* Query the PACS; the studies left to retrieve are this run's. */
        rd_qr_batch_options qo;
        char work[RD_CONFIG_STR_MAX + 8];
        long found = 0;
        char bearer[4100] = "", password[4100] = "";
        memset(&qo, 0, sizeof qo);
        if (dicomweb) {
            if (rd_http_url_check(dicomweb, NULL, 0, &err) != RD_OK) {
                rd_cli_error(&cli, "--from-dicomweb: %s", rd_error_message(&err));
                return RD_EXIT_USAGE;
            }
            if ((cli.cfg.dicomweb_bearer_token_file[0] &&
                 rd_http_read_secret(cli.cfg.dicomweb_bearer_token_file, bearer, sizeof bearer,
                                     &err) != RD_OK) ||
                (cli.cfg.dicomweb_password_file[0] &&
                 rd_http_read_secret(cli.cfg.dicomweb_password_file, password, sizeof password,
                                     &err) != RD_OK)) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                return RD_EXIT_USAGE;
            }
            qo.dicomweb_url = dicomweb;
            qo.http.timeout_s = cli.cfg.dicomweb_timeout_seconds;
            qo.http.ca_file = cli.cfg.dicomweb_ca_certificates;
            qo.http.bearer = bearer;
            qo.http.user = cli.cfg.dicomweb_user;
            qo.http.password = password;
            qo.max_study_bytes = (size_t)cli.cfg.dicomweb_max_study_mb << 20;
        } else if (rd_net_peer_parse(pacs, &qo.peer, &err) != RD_OK) {
            rd_cli_error(&cli, "--from-pacs: %s", rd_error_message(&err));
            return RD_EXIT_USAGE;
        }
        rd_net_scu_options_from_config(&qo.scu, &cli.cfg);
        snprintf(work, sizeof work, "%s/qr", cli.cfg.server_data_dir);
        qo.date_from = since;
        qo.date_to = until;
        qo.modalities = modalities;
        qo.description = description;
        qo.limit = limit;
        qo.use_move = !dicomweb && strcmp(cli.cfg.qr_retrieve, "move") == 0;
        qo.move_destination =
            cli.cfg.qr_move_destination[0] ? cli.cfg.qr_move_destination : cli.cfg.server_ae_title;
        qo.work_dir = work;
        qo.keep = keep;
        qo.import_reports = import;
        qo.studies_per_minute = cli.cfg.qr_studies_per_minute;
        qo.page_days = cli.cfg.qr_page_days;
        qo.page_max_matches = cli.cfg.qr_page_max_matches;
        if (rd_mkdirs(work, &err) != RD_OK || rd_qr_batch_create(&qb, &qo, &err) != RD_OK ||
            rd_cli_store_open(&cli, cli.cfg.server_data_dir, &store, &err) != RD_OK ||
            rd_qr_batch_query(qb, store, &found, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            goto out;
        }
        rd_store_close(store);
        store = NULL;
        run.qb = qb;
        get_stats(&run, &bs);
        rd_log_info("batch: %s answered %ld matching studies; %ld to retrieve (%s), queried "
                    "in %.1f s",
                    pacs, found, bs.studies,
                    dicomweb      ? "WADO-RS"
                    : qo.use_move ? "C-MOVE"
                                  : "C-GET",
                    mono_s() - t0);
        if (qo.use_move) {
            /* The PACS sends the studies to radraft's own listener. */
            rd_net_scp_options so;
            rd_net_handlers h = {qb, NULL, NULL, moved_spool, moved_store};
            rd_net_scp_options_from_config(&so, &cli.cfg);
            rd_strlcpy(so.ae_title, qo.move_destination, sizeof so.ae_title);
            if (rd_net_scp_start(&scp, &so, &h, &err) != RD_OK) {
                rd_cli_error(&cli, "the listener for C-MOVE: %s", rd_error_message(&err));
                goto out;
            }
        }
    } else {
        /* Scan and group. */
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
        run.b = b;
        rd_batch_get_stats(b, &bs);
        rd_log_info("batch: %ld DICOM instances in %ld studies (%ld other files, %ld "
                    "unreadable), scanned in %.1f s",
                    bs.instances, bs.studies, bs.not_dicom, bs.unreadable, mono_s() - t0);
    }

    /* The pipeline and its pool, one worker per thread, on the studies found. */
    rd_pipeline_options po;
    rd_pipeline_plan_threads(&cli.cfg, 1, &n_workers, &threads);
    if (bs.studies > 0 && n_workers > bs.studies)
        n_workers = (int)bs.studies;
    memset(&po, 0, sizeof po);
    po.sr_dir = out;
    po.enqueue = send;
    po.encoder_threads = threads;
    rd_pipeline_source src = qb ? rd_qr_batch_source(qb) : rd_batch_source(b);
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

    catch_stop_signals();

    double t1 = mono_s(), last = t1;
    while (!rd_pipeline_pool_finished(pool) && !atomic_load(&g_batch_stop)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (tty || mono_s() - last >= 10) {
            progress(&run, t1, tty, 0);
            last = mono_s();
        }
    }
    rd_pipeline_pool_stop(pool); /* the studies in progress finish */
    pool = NULL;
    double el = mono_s() - t1;
    progress(&run, t1, tty, 1);
    get_stats(&run, &bs);
    summary(&bs, el, atomic_load(&g_batch_stop));
    rc = bs.failed == 0 && !atomic_load(&g_batch_stop) ? RD_EXIT_OK : RD_EXIT_FAIL;
out:
    rd_pipeline_pool_stop(pool);
    rd_net_scp_stop(scp);
    rd_pipeline_free(pipeline);
    rd_store_close(store);
    rd_batch_free(b);
    rd_qr_batch_free(qb);
    return rc;
}
