/* The private helpers: the wakeup between threads. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "radraft/log.h"
#include "radraft/metrics.h"
#include "rdtest.h"
#include "base/util.h"

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct poster {
    rd_wake *w;
    double delay;
} poster;

static void *post_later(void *arg)
{
    poster *p = arg;
    struct timespec ts = {0, (long)(p->delay * 1e9)};
    nanosleep(&ts, NULL);
    rd_wake_post(p->w);
    return NULL;
}

RD_TEST(wake_times_out_without_a_post)
{
    rd_wake w;
    rd_error err;
    double t0;
    REQUIRE_OK(rd_wake_init(&w, &err), &err);
    t0 = mono_now();
    CHECK_EQ_INT(rd_wake_wait(&w, 0.05), 0);
    CHECK(mono_now() - t0 >= 0.049);
    rd_wake_destroy(&w);
    rd_wake_destroy(&w); /* twice is harmless */
    rd_wake_destroy(NULL);
    rd_wake_post(NULL);
}

RD_TEST(wake_post_before_wait_is_not_lost)
{
    rd_wake w;
    rd_error err;
    double t0;
    REQUIRE_OK(rd_wake_init(&w, &err), &err);
    rd_wake_post(&w);
    rd_wake_post(&w);
    t0 = mono_now();
    CHECK_EQ_INT(rd_wake_wait(&w, 5), 1);
    CHECK(mono_now() - t0 < 1);
    /* Both posts were consumed by that wait: the next one times out. */
    CHECK_EQ_INT(rd_wake_wait(&w, 0.02), 0);
    rd_wake_destroy(&w);
}

RD_TEST(wake_post_from_another_thread_ends_the_wait)
{
    rd_wake w;
    rd_error err;
    pthread_t t;
    poster p;
    double t0, waited;
    REQUIRE_OK(rd_wake_init(&w, &err), &err);
    p.w = &w;
    p.delay = 0.05;
    t0 = mono_now();
    REQUIRE(pthread_create(&t, NULL, post_later, &p) == 0);
    CHECK_EQ_INT(rd_wake_wait(&w, 10), 1);
    waited = mono_now() - t0;
    pthread_join(t, NULL);
    CHECK(waited >= 0.04 && waited < 5);
    rd_wake_destroy(&w);
}

RD_TEST(histogram_buckets_and_sum)
{
    rd_metrics m;
    rd_metrics_init(&m);
    rd_histogram_observe(&m.draft, 0.001); /* first bucket (<= 5 ms) */
    rd_histogram_observe(&m.draft, 0.005); /* on a bound: that bucket */
    rd_histogram_observe(&m.draft, 0.3);   /* (0.25, 0.5] */
    rd_histogram_observe(&m.draft, 99);    /* above every bound: +Inf */
    rd_histogram_observe(&m.draft, NAN);   /* not a time: counted as 0 */
    rd_histogram_observe(NULL, 1);
    CHECK_EQ_INT((int)atomic_load(&m.draft.counts[0]), 3);
    CHECK_EQ_INT((int)atomic_load(&m.draft.counts[6]), 1);
    CHECK_EQ_INT((int)atomic_load(&m.draft.counts[RD_HISTOGRAM_BUCKETS]), 1);
    CHECK_EQ_INT((int)atomic_load(&m.draft.sum_us), 1000 + 5000 + 300000 + 99000000);
    CHECK_EQ_INT((int)atomic_load(&m.cstore.counts[0]), 0);
}

/* A value from the network cannot forge a log line: control characters become escapes. */
RD_TEST(log_escapes_control_characters)
{
    FILE *fp = tmpfile();
    char buf[512] = "";
    REQUIRE(fp != NULL);
    rd_log_set_stream(fp);
    rd_log_set_level(RD_LOG_INFO);
    rd_log_info("association from %s",
                "EVIL\n2026-01-01T00:00:00.000Z radraft info: forged\x1b[2J");
    rd_log_set_stream(NULL);
    rewind(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    CHECK(strchr(buf, '\n') == buf + n - 1); /* one line */
    CHECK(strstr(buf, "EVIL\\x0a2026-01-01") != NULL);
    CHECK(strstr(buf, "\\x1b[2J") != NULL);
    CHECK(strchr(buf, 0x1b) == NULL);
}

RD_TEST_MAIN()
