/* The serve path's service threads on their own: the scheduler (due times, jobs of stable
 * studies, stop) and the outbox (delivery, backoff, final failure, never twice), with a real
 * store and a real DICOM listener in the same process. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "radraft/config.h"
#include "radraft/log.h"
#include "radraft/samples.h"
#include "radraft/serve.h"
#include "radraft/store.h"
#include "rdtest.h"
#include "base/util.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

RD_TEST(scheduler_delay_bounds)
{
    /* None pending: the polling fallback. */
    CHECK(fabs(rd_scheduler_delay(-1, 1000) - 0.5) < 1e-9);
    /* Due soon: until then. */
    CHECK(fabs(rd_scheduler_delay(1000.2, 1000) - 0.2) < 1e-9);
    /* Due far ahead: at most the fallback. */
    CHECK(fabs(rd_scheduler_delay(1060, 1000) - 0.5) < 1e-9);
    /* Due already (or the clock went back): a short sleep, never a spin. */
    CHECK(fabs(rd_scheduler_delay(999, 1000) - 0.01) < 1e-9);
    CHECK(fabs(rd_scheduler_delay(1000, 1000) - 0.01) < 1e-9);
    /* A due time that is not a number counts as none pending. */
    CHECK(fabs(rd_scheduler_delay(NAN, 1000) - 0.5) < 1e-9);
    /* A clock that is not a number: a short sleep. */
    CHECK(fabs(rd_scheduler_delay(1000, NAN) - 0.01) < 1e-9);
}

/* Stores one fake instance of `study` (the store keeps bytes; it does not parse them). */
static void put_instance(rd_store *s, const char *study, const char *sop)
{
    static const char bytes[] = "DICM-not-really";
    rd_store_instance in = {
        study, "1.2.3.9", sop, "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.1.2.1", "CR", "TESTSCU"};
    rd_error err;
    CHECK_OK(rd_store_put(s, &in, bytes, sizeof bytes - 1, 0, NULL, &err), &err);
}

static long count_jobs(rd_store *s, int state)
{
    long n = -1;
    rd_error err;
    CHECK_OK(rd_store_count_jobs(s, NULL, state, &n, &err), &err);
    return n;
}

RD_TEST(scheduler_queues_stable_studies_and_stops)
{
    char dir[1024];
    rd_config cfg;
    rd_store_options so;
    rd_store *s = NULL;
    rd_scheduler *sch = NULL;
    rd_error err;
    rd_strlcpy(dir, rd_test_tmpdir("serve_sched"), sizeof dir);
    rd_log_set_level(RD_LOG_ERROR);
    rd_config_defaults(&cfg);
    rd_strlcpy(cfg.server_data_dir, dir, sizeof cfg.server_data_dir);
    cfg.server_stable_seconds = 1;
    rd_store_options_default(&so);
    REQUIRE_OK(rd_store_open(&s, dir, &so, &err), &err);
    /* No pool: the scheduler ends each job itself (the study is ready). */
    REQUIRE_OK(rd_scheduler_start(&sch, &cfg, &so, NULL, &err), &err);
    put_instance(s, "1.2.3.1", "1.2.3.1.1");
    put_instance(s, "1.2.3.2", "1.2.3.2.1");
    rd_scheduler_wake(sch);
    /* Not stable yet: received less than a second ago. */
    sleep_ms(200);
    CHECK_EQ_INT((int)count_jobs(s, -1), 0);
    /* Stable after 1 s: one job per study, done. */
    for (int i = 0; i < 100 && count_jobs(s, RD_JOB_DONE) < 2; i++)
        sleep_ms(50);
    CHECK_EQ_INT((int)count_jobs(s, RD_JOB_DONE), 2);
    /* A new instance of a study that had its job makes one more job, not two. */
    put_instance(s, "1.2.3.1", "1.2.3.1.2");
    rd_scheduler_wake(sch);
    for (int i = 0; i < 100 && count_jobs(s, RD_JOB_DONE) < 3; i++)
        sleep_ms(50);
    sleep_ms(600); /* more than one polling round: nothing else is queued */
    CHECK_EQ_INT((int)count_jobs(s, RD_JOB_DONE), 3);
    CHECK_EQ_INT((int)count_jobs(s, -1), 3);
    rd_scheduler_stop(sch); /* joins its thread */
    rd_scheduler_stop(NULL);
    rd_scheduler_wake(NULL);
    /* Stopped: a study that becomes stable now gets no job. */
    put_instance(s, "1.2.3.3", "1.2.3.3.1");
    sleep_ms(1300);
    CHECK_EQ_INT((int)count_jobs(s, -1), 3);
    rd_store_close(s);
}

/* A listener in this process that counts what it receives. */
typedef struct receiver {
    pthread_mutex_t mu;
    int stored;
} receiver;

static rd_status rcv_begin(void *ctx, void **actx, rd_error *err)
{
    (void)err;
    *actx = ctx;
    return RD_OK;
}

static void rcv_end(void *ctx, void *actx)
{
    (void)ctx;
    (void)actx;
}

/* The peer keeps nothing: a received dataset goes to a temporary file, removed at once. */
static rd_status rcv_spool(void *ctx, void *actx, char *path, size_t size, int *fd, rd_error *err)
{
    (void)ctx;
    (void)actx;
    snprintf(path, size, "/tmp/rd-test-serve-rcv-XXXXXX");
    if ((*fd = mkstemp(path)) < 0)
        return rd_error_set(err, RD_E_IO, "%s: cannot create", path);
    return RD_OK;
}

static rd_status rcv_store(void *ctx, void *actx, const rd_net_instance *in, rd_error *err)
{
    receiver *r = ctx;
    (void)actx;
    (void)err;
    unlink(in->path);
    pthread_mutex_lock(&r->mu);
    r->stored++;
    pthread_mutex_unlock(&r->mu);
    return RD_OK;
}

static int received(receiver *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->stored;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static int test_port(int offset)
{
    /* 21800-21899 are the integration tests' last range: test_net.c takes 21900-21979,
     * so this file takes 21990-22069. */
    return 21990 + (int)(getpid() % 20) * 4 + offset;
}

static rd_net_scp *start_receiver(receiver *r, int port)
{
    rd_net_scp_options o;
    rd_net_handlers h = {r, rcv_begin, rcv_end, rcv_spool, rcv_store};
    rd_net_scp *scp = NULL;
    rd_error err;
    memset(&o, 0, sizeof o);
    o.port = port;
    rd_strlcpy(o.ae_title, "UNITPACS", sizeof o.ae_title);
    o.max_associations = 4;
    o.max_pdu = 116794;
    o.acse_timeout = 10;
    o.dimse_timeout = 10;
    o.idle_timeout = 10;
    if (rd_net_scp_start(&scp, &o, &h, &err) != RD_OK) {
        fprintf(stderr, "start: %s\n", rd_error_message(&err));
        return NULL;
    }
    return scp;
}

/* One sample study file to deliver, under dir. */
static void sample_file(const char *dir, char *path, size_t size)
{
    rd_samples_options o;
    rd_error err;
    rd_samples_options_default(&o);
    o.rows = 64;
    snprintf(path, size, "%s/sample.dcm", dir);
    REQUIRE_OK(rd_samples_write_case(0, &o, path, &err), &err);
}

static void outbox_config(rd_config *cfg, const char *dir)
{
    rd_config_defaults(cfg);
    rd_strlcpy(cfg->server_data_dir, dir, sizeof cfg->server_data_dir);
    cfg->outbox_retry_initial_seconds = 10;
    cfg->outbox_retry_max_seconds = 15;
    cfg->outbox_retry_max_attempts = 3;
}

static long deliveries(rd_store *s, const char *state)
{
    long n = -1;
    rd_error err;
    CHECK_OK(rd_store_outbox_count(s, state, &n, &err), &err);
    return n;
}

RD_TEST(outbox_backoff_then_final_failure)
{
    char dir[1024], file[1200], dest[64];
    rd_config cfg;
    rd_net_scu_options scu;
    rd_store *s = NULL;
    rd_error err;
    int attempted = -1;
    double t0 = rd_store_now();
    rd_strlcpy(dir, rd_test_tmpdir("serve_outbox_fail"), sizeof dir);
    rd_log_set_level(RD_LOG_ERROR);
    outbox_config(&cfg, dir);
    rd_net_scu_options_from_config(&scu, &cfg);
    sample_file(dir, file, sizeof file);
    /* Nothing listens there. */
    snprintf(dest, sizeof dest, "NOBODY@127.0.0.1:%d", test_port(0));
    REQUIRE_OK(rd_store_open(&s, dir, NULL, &err), &err);
    REQUIRE_OK(rd_store_outbox_add(s, file, dest, t0, NULL, &err), &err);
    /* Attempt 1 fails: pending again, due after the initial 10 s. */
    CHECK_OK(rd_outbox_run_due(s, &cfg, &scu, t0, NULL, &attempted, &err), &err);
    CHECK_EQ_INT(attempted, 1);
    CHECK_EQ_INT((int)deliveries(s, "pending"), 1);
    CHECK_OK(rd_outbox_run_due(s, &cfg, &scu, t0 + 5, NULL, &attempted, &err), &err);
    CHECK_EQ_INT(attempted, 0);
    /* Attempt 2 at +11 s fails; attempt 3 is due 15 s later (doubling, capped at 15), not
     * 20 s later. */
    CHECK_OK(rd_outbox_run_due(s, &cfg, &scu, t0 + 11, NULL, &attempted, &err), &err);
    CHECK_EQ_INT(attempted, 1);
    CHECK_OK(rd_outbox_run_due(s, &cfg, &scu, t0 + 11 + 14, NULL, &attempted, &err), &err);
    CHECK_EQ_INT(attempted, 0);
    CHECK_OK(rd_outbox_run_due(s, &cfg, &scu, t0 + 11 + 16, NULL, &attempted, &err), &err);
    CHECK_EQ_INT(attempted, 1);
    /* Three attempts made: failed, never tried again. */
    CHECK_EQ_INT((int)deliveries(s, "failed"), 1);
    CHECK_EQ_INT((int)deliveries(s, "pending"), 0);
    CHECK_OK(rd_outbox_run_due(s, &cfg, &scu, t0 + 1e6, NULL, &attempted, &err), &err);
    CHECK_EQ_INT(attempted, 0);
    /* A stop flag already set: nothing is tried. */
    atomic_int stop;
    atomic_init(&stop, 1);
    REQUIRE_OK(rd_store_outbox_add(s, file, "OTHER@127.0.0.1:1", t0, NULL, &err), &err);
    CHECK_OK(rd_outbox_run_due(s, &cfg, &scu, t0 + 1e6, &stop, &attempted, &err), &err);
    CHECK_EQ_INT(attempted, 0);
    CHECK_EQ_INT((int)deliveries(s, "pending"), 1);
    rd_store_close(s);
}

RD_TEST(outbox_thread_delivers_once_when_woken)
{
    char dir[1024], file[1200], dest[64];
    rd_config cfg;
    rd_net_scu_options scu;
    rd_store *s = NULL;
    rd_outbox *ob = NULL;
    rd_net_scp *scp;
    receiver r;
    rd_error err;
    int port = test_port(1);
    rd_strlcpy(dir, rd_test_tmpdir("serve_outbox_ok"), sizeof dir);
    rd_log_set_level(RD_LOG_ERROR);
    outbox_config(&cfg, dir);
    rd_net_scu_options_from_config(&scu, &cfg);
    sample_file(dir, file, sizeof file);
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.mu, NULL);
    scp = start_receiver(&r, port);
    REQUIRE(scp != NULL);
    snprintf(dest, sizeof dest, "UNITPACS@127.0.0.1:%d", port);
    REQUIRE_OK(rd_store_open(&s, dir, NULL, &err), &err);
    REQUIRE_OK(rd_outbox_start(&ob, &cfg, NULL, &scu, &err), &err);
    REQUIRE_OK(rd_store_outbox_add(s, file, dest, rd_store_now(), NULL, &err), &err);
    rd_outbox_wake(ob);
    for (int i = 0; i < 200 && deliveries(s, "done") < 1; i++)
        sleep_ms(50);
    CHECK_EQ_INT((int)deliveries(s, "done"), 1);
    CHECK_EQ_INT(received(&r), 1);
    /* Queued again (the same file to the same destination): not sent a second time. */
    REQUIRE_OK(rd_store_outbox_add(s, file, dest, rd_store_now(), NULL, &err), &err);
    rd_outbox_wake(ob);
    sleep_ms(1200); /* more than two polling rounds */
    CHECK_EQ_INT(received(&r), 1);
    rd_outbox_stop(ob);
    rd_outbox_stop(NULL);
    rd_outbox_wake(NULL);
    rd_net_scp_stop(scp);
    rd_store_close(s);
    pthread_mutex_destroy(&r.mu);
}

/* A destination that refuses for good is given up by default, not retried forever: 150
 * attempts with the default backoff span about a day. */
RD_TEST(outbox_gives_up_by_default_after_about_a_day)
{
    rd_config cfg;
    double total = 0, delay;
    rd_config_defaults(&cfg);
    REQUIRE(cfg.outbox_retry_max_attempts > 0);
    delay = cfg.outbox_retry_initial_seconds;
    for (int i = 1; i < cfg.outbox_retry_max_attempts; i++) {
        total += delay < cfg.outbox_retry_max_seconds ? delay : cfg.outbox_retry_max_seconds;
        delay *= 2;
    }
    CHECK_MSG(total > 12 * 3600 && total < 48 * 3600, "gives up after %.1f h", total / 3600);
}

RD_TEST_MAIN()
