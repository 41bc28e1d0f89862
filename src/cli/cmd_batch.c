/* radraft batch: the drafting pipeline over an archive of DICOM files, without the network. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "radraft/dicom.h"
#include "radraft/log.h"
#include "radraft/pipeline.h"
#include "base/util.h"
#include "base/walk.h"

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
    "  --send              also queue every SR for outbox.destinations (radraft serve on the\n"
    "                      same data directory delivers them)\n"
    "  --data-dir D        data directory (server.data_dir, default ./radraft-data)\n"
    "  --model MODEL       encoder model (encoder.model)\n"
    "  --workers N         parallel studies (pipeline.workers)\n" RD_CLI_COMMON_HELP;

#define BATCH_MAX_FILES 10000000L
#define BATCH_MAX_REASONS 32

static atomic_int g_batch_stop;

static void on_batch_signal(int sig)
{
    (void)sig;
    atomic_store(&g_batch_stop, 1);
}

typedef struct inst {
    char *path;
    char study[65];
} inst;

typedef struct scan {
    inst *v;
    long n, cap;
    long not_dicom, unreadable;
} scan;

/* The rd_walk callback: one file of the folders given. */
static rd_status add_file(void *ctx, const char *path, const struct stat *sb, rd_error *err)
{
    scan *sc = ctx;
    rd_dicom_meta m;
    rd_error e;
    (void)sb;
    if (!rd_dicom_probe(path)) {
        sc->not_dicom++;
        return RD_OK;
    }
    rd_status rs = rd_dicom_read_meta(path, &m, &e);
    if (rs != RD_OK || !m.study_uid[0] || strlen(m.study_uid) > 64) {
        rd_log_warn("batch: %s: %s", path,
                    rs != RD_OK      ? rd_error_message(&e)
                    : m.study_uid[0] ? "Study Instance UID longer than 64 characters"
                                     : "no Study Instance UID");
        sc->unreadable++;
        return RD_OK;
    }
    if (sc->n >= BATCH_MAX_FILES)
        return rd_error_set(err, RD_E_TOO_LARGE, "more than %ld DICOM files", BATCH_MAX_FILES);
    if (sc->n == sc->cap) {
        long ncap = sc->cap ? sc->cap * 2 : 256;
        inst *nv = realloc(sc->v, (size_t)ncap * sizeof *nv);
        if (!nv)
            return rd_error_set(err, RD_E_NOMEM, "out of memory while scanning");
        sc->v = nv;
        sc->cap = ncap;
    }
    sc->v[sc->n].path = strdup(path);
    if (!sc->v[sc->n].path)
        return rd_error_set(err, RD_E_NOMEM, "out of memory while scanning");
    rd_strlcpy(sc->v[sc->n].study, m.study_uid, sizeof sc->v[sc->n].study);
    sc->n++;
    return RD_OK;
}

/* Scans a folder (recursively) or takes a file. Symbolic links below the roots are not
 * followed, and folders that cannot be read or lie more than 32 levels deep are skipped:
 * an archive is scanned as far as it can be. A root that does not exist is warned about
 * and skipped; only running out of memory or past BATCH_MAX_FILES stops the scan. */
static rd_status scan_root(scan *sc, const char *root, rd_error *err)
{
    rd_walk_options o;
    rd_walk_stats ws;
    rd_status st;
    rd_walk_options_default(&o);
    o.skip_unreadable = 1;
    o.skip_too_deep = 1;
    o.max_depth = 32;
    st = rd_walk(root, &o, add_file, sc, &ws, err);
    sc->unreadable += ws.unreadable;
    if (st == RD_E_NOT_FOUND || (st == RD_E_IO && ws.folders == 0)) {
        rd_log_warn("batch: %s; skipped", rd_error_message(err));
        return RD_OK;
    }
    return st;
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

static int cmp_inst(const void *a, const void *b)
{
    const inst *x = a, *y = b;
    int c = strcmp(x->study, y->study);
    return c ? c : strcmp(x->path, y->path);
}

typedef struct study_range {
    long first, count;
} study_range;

typedef struct batch_state {
    rd_pipeline *pipeline;
    rd_pipeline_worker **workers;
    const scan *sc;
    study_range *studies;
    long n_studies;
    int max_attempts;
    atomic_long next;
    atomic_long finished;
    pthread_mutex_t mu;
    long drafted, skipped, before, failed;
    struct {
        char text[160];
        long count;
    } reasons[BATCH_MAX_REASONS];
    int n_reasons;
    double ms_read, ms_decode, ms_embed, ms_retrieve, ms_generate, ms_write, ms_record;
} batch_state;

typedef struct thread_arg {
    batch_state *bs;
    int index;
} thread_arg;

static void count_reason(batch_state *bs, const char *reason)
{
    char text[160];
    /* Reasons that name a value ("modality CT") are kept whole; long ones are cut. */
    rd_strlcpy(text, reason, sizeof text);
    for (int i = 0; i < bs->n_reasons; i++)
        if (strcmp(bs->reasons[i].text, text) == 0) {
            bs->reasons[i].count++;
            return;
        }
    if (bs->n_reasons < BATCH_MAX_REASONS) {
        rd_strlcpy(bs->reasons[bs->n_reasons].text, text, sizeof bs->reasons[0].text);
        bs->reasons[bs->n_reasons++].count = 1;
    } else {
        bs->reasons[BATCH_MAX_REASONS - 1].count++;
    }
}

static void *batch_main(void *arg)
{
    batch_state *bs = ((thread_arg *)arg)->bs;
    rd_pipeline_worker *w = bs->workers[((thread_arg *)arg)->index];
    const char **files = NULL;
    long files_cap = 0;
    while (!atomic_load(&g_batch_stop)) {
        long i = atomic_fetch_add(&bs->next, 1);
        if (i >= bs->n_studies)
            break;
        study_range r = bs->studies[i];
        if (r.count > files_cap) {
            const char **nf = realloc(files, (size_t)r.count * sizeof *nf);
            if (!nf) {
                rd_log_error("batch: out of memory");
                break;
            }
            files = nf;
            files_cap = r.count;
        }
        for (long k = 0; k < r.count; k++)
            files[k] = bs->sc->v[r.first + k].path;
        rd_pipeline_result res;
        rd_error err;
        rd_status st = RD_OK;
        int attempt; /* after the loop: the attempts made */
        for (attempt = 1; attempt <= bs->max_attempts; attempt++) {
            st =
                rd_pipeline_run_study(w, files, (int)(r.count > 4096 ? 4096 : r.count), &res, &err);
            if (st == RD_OK || !rd_pipeline_status_retriable(st) || attempt == bs->max_attempts)
                break;
            rd_log_warn("batch: study %s: attempt %d failed, retrying: %s",
                        bs->sc->v[r.first].study, attempt, rd_error_message(&err));
            sleep((unsigned)attempt);
        }
        if (st != RD_OK)
            record_job(w, bs->sc->v[r.first].study, attempt, rd_error_message(&err));
        else if (res.outcome != RD_PIPELINE_DONE_BEFORE)
            record_job(w, bs->sc->v[r.first].study, attempt, NULL);
        pthread_mutex_lock(&bs->mu);
        if (st != RD_OK) {
            bs->failed++;
            rd_log_error("batch: study %s failed: %s", bs->sc->v[r.first].study,
                         rd_error_message(&err));
        } else if (res.outcome == RD_PIPELINE_DRAFTED) {
            bs->drafted++;
            bs->ms_read += res.ms_read;
            bs->ms_decode += res.ms_decode;
            bs->ms_embed += res.ms_embed;
            bs->ms_retrieve += res.ms_retrieve;
            bs->ms_generate += res.ms_generate;
            bs->ms_write += res.ms_write;
            bs->ms_record += res.ms_record;
        } else if (res.outcome == RD_PIPELINE_SKIPPED) {
            bs->skipped++;
            count_reason(bs, res.reason);
        } else {
            bs->before++;
        }
        pthread_mutex_unlock(&bs->mu);
        atomic_fetch_add(&bs->finished, 1);
    }
    free(files);
    return NULL;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(batch_state *bs, double t0, int tty, int final)
{
    long done = atomic_load(&bs->finished);
    double el = mono_s() - t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(bs->n_studies - done) / rate : 0;
    pthread_mutex_lock(&bs->mu);
    long d = bs->drafted, s = bs->skipped, b = bs->before, f = bs->failed;
    pthread_mutex_unlock(&bs->mu);
    if (tty)
        fprintf(stderr,
                "\r[%ld/%ld] %.2f studies/s, ETA %.0f s | drafted %ld, skipped %ld, done "
                "before %ld, failed %ld   %s",
                done, bs->n_studies, rate, eta, d, s, b, f, final ? "\n" : "");
    else
        rd_log_info("batch: %ld/%ld studies, %.2f studies/s, ETA %.0f s (drafted %ld, skipped "
                    "%ld, done before %ld, failed %ld)",
                    done, bs->n_studies, rate, eta, d, s, b, f);
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
    int send = 0, opt, rc = RD_EXIT_FAIL, n_workers = 1, threads = 1, started = 0;
    rd_cli cli;
    rd_error err;
    scan sc;
    batch_state bs;
    pthread_t *tids = NULL;
    thread_arg *targs = NULL;
    struct sigaction sa;
    int tty = isatty(STDERR_FILENO);

    memset(&sc, 0, sizeof sc);
    memset(&bs, 0, sizeof bs);
    pthread_mutex_init(&bs.mu, NULL);
    rd_cli_init(&cli, "radraft batch");
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = rd_cli_common_option(&cli, opt, optarg);
        if (r < 0)
            return RD_EXIT_USAGE;
        if (r > 0)
            continue;
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
        case 'h':
            fputs(help, stdout);
            return RD_EXIT_OK;
        default:
            fputs(help, stderr);
            return RD_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        rd_cli_error(&cli, "no folder or file given");
        fputs(help, stderr);
        return RD_EXIT_USAGE;
    }
    if (rd_cli_finish_config(&cli) != 0)
        return RD_EXIT_FAIL;
    if ((data && rd_config_set(&cli.cfg, "server.data_dir", data, &err) != RD_OK) ||
        (model && rd_config_set(&cli.cfg, "encoder.model", model, &err) != RD_OK) ||
        (workers_arg && rd_config_set(&cli.cfg, "pipeline.workers", workers_arg, &err) != RD_OK)) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        return RD_EXIT_USAGE;
    }
    if (send && cli.cfg.outbox_destinations.count == 0) {
        rd_cli_error(&cli, "--send: no destination (set outbox.destinations)");
        return RD_EXIT_USAGE;
    }

    /* Scan and group. */
    double t0 = mono_s();
    for (int i = optind; i < argc; i++)
        if (scan_root(&sc, argv[i], &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            goto out;
        }
    qsort(sc.v, (size_t)sc.n, sizeof *sc.v, cmp_inst);
    bs.studies = calloc((size_t)(sc.n > 0 ? sc.n : 1), sizeof *bs.studies);
    if (!bs.studies) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    for (long i = 0; i < sc.n; i++) {
        if (i == 0 || strcmp(sc.v[i].study, sc.v[i - 1].study) != 0)
            bs.studies[bs.n_studies++].first = i;
        bs.studies[bs.n_studies - 1].count++;
    }
    rd_log_info("batch: %ld DICOM instances in %ld studies (%ld other files, %ld unreadable), "
                "scanned in %.1f s",
                sc.n, bs.n_studies, sc.not_dicom, sc.unreadable, mono_s() - t0);

    /* The pipeline and one worker per thread. */
    rd_pipeline_options po;
    rd_pipeline_plan_threads(&cli.cfg, 1, &n_workers, &threads);
    if (bs.n_studies > 0 && n_workers > bs.n_studies)
        n_workers = (int)bs.n_studies;
    memset(&po, 0, sizeof po);
    po.sr_dir = out;
    po.enqueue = send;
    po.encoder_threads = threads;
    if (rd_pipeline_create(&bs.pipeline, &cli.cfg, &po, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    bs.max_attempts = cli.cfg.pipeline_retry_max_attempts;
    bs.sc = &sc;
    bs.workers = calloc((size_t)n_workers, sizeof *bs.workers);
    tids = calloc((size_t)n_workers, sizeof *tids);
    targs = calloc((size_t)n_workers, sizeof *targs);
    if (!bs.workers || !tids || !targs) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    for (int i = 0; i < n_workers; i++)
        if (rd_pipeline_worker_create(&bs.workers[i], bs.pipeline, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            goto out;
        }
    rd_log_info("batch: %d worker(s) x %d encoder thread(s), SRs into %s", n_workers, threads,
                rd_pipeline_sr_dir(bs.pipeline));

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_batch_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    double t1 = mono_s(), last = t1;
    for (int i = 0; i < n_workers; i++) {
        targs[i].bs = &bs;
        targs[i].index = i;
        if (pthread_create(&tids[i], NULL, batch_main, &targs[i]) != 0) {
            rd_cli_error(&cli, "cannot start a worker thread");
            atomic_store(&g_batch_stop, 1);
            break;
        }
        started++;
    }
    while (atomic_load(&bs.finished) < bs.n_studies && !atomic_load(&g_batch_stop) &&
           started == n_workers) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (tty || mono_s() - last >= 10) {
            progress(&bs, t1, tty, 0);
            last = mono_s();
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    double el = mono_s() - t1;
    progress(&bs, t1, tty, 1);

    /* The summary. */
    long processed = atomic_load(&bs.finished);
    printf("batch: %ld studies in %.1f s (%.2f studies/s, %.1f studies/min)%s\n", processed, el,
           el > 0 ? (double)processed / el : 0, el > 0 ? 60.0 * (double)processed / el : 0,
           atomic_load(&g_batch_stop) ? ", interrupted" : "");
    printf("  drafted      %ld\n", bs.drafted);
    printf("  done before  %ld\n", bs.before);
    printf("  skipped      %ld\n", bs.skipped);
    for (int i = 0; i < bs.n_reasons; i++)
        printf("    %5ld  %s\n", bs.reasons[i].count, bs.reasons[i].text);
    printf("  failed       %ld\n", bs.failed);
    if (sc.unreadable)
        printf("  unreadable files %ld\n", sc.unreadable);
    if (bs.drafted > 0) {
        double k = (double)bs.drafted;
        printf("  mean ms per drafted study: read %.2f, decode %.2f, embed %.2f, retrieve %.2f, "
               "generate %.2f, SR write %.2f, record %.2f\n",
               bs.ms_read / k, bs.ms_decode / k, bs.ms_embed / k, bs.ms_retrieve / k,
               bs.ms_generate / k, bs.ms_write / k, bs.ms_record / k);
    }
    rc = bs.failed == 0 && !atomic_load(&g_batch_stop) ? RD_EXIT_OK : RD_EXIT_FAIL;
out:
    if (bs.workers)
        for (int i = 0; i < n_workers; i++)
            rd_pipeline_worker_free(bs.workers[i]);
    free(bs.workers);
    rd_pipeline_free(bs.pipeline);
    free(tids);
    free(targs);
    free(bs.studies);
    for (long i = 0; i < sc.n; i++)
        free(sc.v[i].path);
    free(sc.v);
    pthread_mutex_destroy(&bs.mu);
    return rc;
}
