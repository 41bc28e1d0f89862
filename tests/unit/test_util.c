/* The private helpers: the wakeup between threads, the histogram, whole files and folders,
 * bounded string copies, UTF-8 and size arithmetic. */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "radraft/log.h"
#include "radraft/metrics.h"
#include "radraft/tempname.h"
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

/* ---- whole files and folders ---- */

/* Writes `len` bytes to `path` with stdio (not with the helpers under test). */
static int put_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    int ok;
    if (!fp)
        return 0;
    ok = fwrite(data, 1, len, fp) == len;
    return fclose(fp) == 0 && ok;
}

/* The number of entries in folder `dir` other than . and .. (-1 when it cannot be read). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A file larger than the first buffer comes back whole, NUL bytes included, with a NUL after
 * its end. */
RD_TEST(read_file_whole_file)
{
    static char data[200000];
    char path[1100], *buf = NULL;
    size_t len = 0;
    rd_error err;
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7 % 256);
    snprintf(path, sizeof path, "%s/data.bin", rd_test_tmpdir("read_file_whole_file"));
    REQUIRE(put_file(path, data, sizeof data));
    REQUIRE_OK(rd_read_file(path, sizeof data, &buf, &len, &err), &err);
    CHECK_EQ_INT(len, sizeof data);
    CHECK(memcmp(buf, data, sizeof data) == 0);
    CHECK_EQ_INT(buf[sizeof data], '\0');
    free(buf);
    /* The length is optional. */
    buf = NULL;
    REQUIRE_OK(rd_read_file(path, sizeof data, &buf, NULL, &err), &err);
    CHECK(buf != NULL && memcmp(buf, data, 16) == 0);
    free(buf);
}

/* Exactly max_bytes is fine, one byte more is RD_E_TOO_LARGE; an empty file is an empty
 * string; a missing file RD_E_NOT_FOUND, a folder RD_E_IO; nothing is handed out on a failure. */
RD_TEST(read_file_limits_and_failures)
{
    const char *dir = rd_test_tmpdir("read_file_limits_and_failures");
    char path[1100], empty[1100], missing[1100], *buf = NULL;
    size_t len = 99;
    rd_error err;
    snprintf(path, sizeof path, "%s/ten.txt", dir);
    snprintf(empty, sizeof empty, "%s/empty.txt", dir);
    snprintf(missing, sizeof missing, "%s/missing.txt", dir);
    REQUIRE(put_file(path, "0123456789", 10));
    REQUIRE(put_file(empty, "", 0));

    REQUIRE_OK(rd_read_file(path, 10, &buf, &len, &err), &err);
    CHECK_STR(buf, "0123456789");
    CHECK_EQ_INT(len, 10);
    free(buf);

    buf = NULL;
    CHECK_EQ_INT(rd_read_file(path, 9, &buf, &len, &err), RD_E_TOO_LARGE);
    CHECK_MSG(strstr(rd_error_message(&err), "larger than 9 bytes") != NULL, "message: %s",
              rd_error_message(&err));
    CHECK(buf == NULL);

    REQUIRE_OK(rd_read_file(empty, 10, &buf, &len, &err), &err);
    CHECK_STR(buf, "");
    CHECK_EQ_INT(len, 0);
    free(buf);

    buf = NULL;
    CHECK_EQ_INT(rd_read_file(missing, 10, &buf, &len, &err), RD_E_NOT_FOUND);
    CHECK_MSG(strstr(rd_error_message(&err), "missing.txt") != NULL, "message: %s",
              rd_error_message(&err));
    CHECK(buf == NULL);
    CHECK_EQ_INT(rd_read_file(dir, 10, &buf, &len, &err), RD_E_IO);
    CHECK(buf == NULL);
}

/* A write replaces the whole file, through a temporary file that does not stay behind. */
RD_TEST(write_file_atomic_replaces_the_file)
{
    const char *dir = rd_test_tmpdir("write_file_atomic_replaces_the_file");
    char path[1100], *buf = NULL;
    size_t len = 0;
    rd_error err;
    snprintf(path, sizeof path, "%s/model.json", dir);
    REQUIRE_OK(rd_write_file_atomic(path, "a longer first version", 22, &err), &err);
    REQUIRE_OK(rd_write_file_atomic(path, "second", 6, &err), &err);
    REQUIRE_OK(rd_read_file(path, 100, &buf, &len, &err), &err);
    CHECK_STR(buf, "second");
    CHECK_EQ_INT(len, 6);
    free(buf);
    CHECK_EQ_INT(count_entries(dir), 1);
    /* Zero bytes make an empty file. */
    REQUIRE_OK(rd_write_file_atomic(path, "", 0, &err), &err);
    buf = NULL;
    REQUIRE_OK(rd_read_file(path, 100, &buf, &len, &err), &err);
    CHECK_EQ_INT(len, 0);
    free(buf);
    CHECK_EQ_INT(count_entries(dir), 1);
}

/* A folder that does not exist is RD_E_IO, and neither the file nor a temporary one appears. */
RD_TEST(write_file_atomic_fails_cleanly)
{
    const char *dir = rd_test_tmpdir("write_file_atomic_fails_cleanly");
    char path[1100], target[1100];
    struct stat sb;
    rd_error err;
    snprintf(path, sizeof path, "%s/no/such/folder/f.json", dir);
    CHECK_EQ_INT(rd_write_file_atomic(path, "x", 1, &err), RD_E_IO);
    CHECK_MSG(strstr(rd_error_message(&err), "f.json") != NULL, "message: %s",
              rd_error_message(&err));
    CHECK(stat(path, &sb) != 0);
    CHECK_EQ_INT(count_entries(dir), 0);
    /* The target is a folder: the rename fails, and the temporary file is removed. */
    snprintf(target, sizeof target, "%s/taken", dir);
    REQUIRE(mkdir(target, 0755) == 0);
    CHECK_EQ_INT(rd_write_file_atomic(target, "x", 1, &err), RD_E_IO);
    CHECK(stat(target, &sb) == 0 && S_ISDIR(sb.st_mode));
    CHECK_EQ_INT(count_entries(dir), 1);
}

RD_TEST(mkdirs_creates_parents)
{
    const char *dir = rd_test_tmpdir("mkdirs_creates_parents");
    char path[1100], file[1100], under_file[1200];
    static char too_long[5000];
    struct stat sb;
    rd_error err;
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    REQUIRE_OK(rd_mkdirs(path, &err), &err);
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    /* Existing folders are fine, and so is a trailing slash. */
    CHECK_OK(rd_mkdirs(path, &err), &err);
    snprintf(path, sizeof path, "%s/a/d/", dir);
    CHECK_OK(rd_mkdirs(path, &err), &err);
    snprintf(path, sizeof path, "%s/a/d", dir);
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    /* A file in the way is RD_E_IO, naming the path. */
    snprintf(file, sizeof file, "%s/a/file", dir);
    REQUIRE(put_file(file, "x", 1));
    snprintf(under_file, sizeof under_file, "%s/sub", file);
    CHECK_EQ_INT(rd_mkdirs(under_file, &err), RD_E_IO);
    CHECK_MSG(strstr(rd_error_message(&err), "a/file") != NULL, "message: %s",
              rd_error_message(&err));
    CHECK_EQ_INT(rd_mkdirs(file, &err), RD_E_IO); /* the file itself is no folder */
    CHECK_MSG(strstr(rd_error_message(&err), "exists and is not a folder") != NULL, "message: %s",
              rd_error_message(&err));
    /* A path longer than the limit is refused before anything is made. */
    memset(too_long, 'x', sizeof too_long - 1);
    CHECK_EQ_INT(rd_mkdirs(too_long, &err), RD_E_INVALID);
    CHECK(stat(too_long, &sb) != 0);
}

/* ---- strings and sizes ---- */

RD_TEST(strlcpy_truncates_and_terminates)
{
    char small[4];
    char big[16];
    memset(small, 'z', sizeof small);
    CHECK_EQ_INT(rd_strlcpy(small, "abcdef", sizeof small), 6);
    CHECK_STR(small, "abc");
    CHECK_EQ_INT(rd_strlcpy(big, "abc", sizeof big), 3);
    CHECK_STR(big, "abc");
    /* Size 0 writes nothing. */
    small[0] = 'q';
    CHECK_EQ_INT(rd_strlcpy(small, "xy", 0), 2);
    CHECK_EQ_INT(small[0], 'q');
}

RD_TEST(utf8_valid_accepts_only_well_formed_utf8)
{
    CHECK(rd_utf8_valid("", 0));
    CHECK(rd_utf8_valid("plain ASCII", 11));
    CHECK(rd_utf8_valid("\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0", 9)); /* やまだ */
    CHECK(rd_utf8_valid("\xf0\x9f\x98\x80", 4));                     /* U+1F600 */
    CHECK(rd_utf8_valid("\xf4\x8f\xbf\xbf", 4));                     /* U+10FFFF */
    CHECK(!rd_utf8_valid("\xff", 1));
    CHECK(!rd_utf8_valid("\x80", 1));             /* a continuation byte alone */
    CHECK(!rd_utf8_valid("\xc3", 1));             /* cut short */
    CHECK(!rd_utf8_valid("\xe3\x82\x84", 2));     /* cut by the length given */
    CHECK(!rd_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    CHECK(!rd_utf8_valid("\xe0\x80\xaf", 3));     /* overlong '/' */
    CHECK(!rd_utf8_valid("\xed\xa0\x80", 3));     /* surrogate U+D800 */
    CHECK(!rd_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    CHECK(!rd_utf8_valid("ok\xe3\x41\x41", 5));   /* not a continuation */
}

RD_TEST(mul_size_detects_overflow)
{
    size_t out = 7;
    CHECK(rd_mul_size(1000, 1000, &out));
    CHECK_EQ_INT(out, 1000000);
    CHECK(rd_mul_size(0, SIZE_MAX, &out));
    CHECK_EQ_INT(out, 0);
    CHECK(rd_mul_size(SIZE_MAX, 1, &out));
    CHECK(out == SIZE_MAX);
    out = 7;
    CHECK(!rd_mul_size(SIZE_MAX / 2 + 1, 2, &out));
    CHECK(!rd_mul_size((size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4), &out));
    CHECK_EQ_INT(out, 7); /* untouched on overflow */
}

RD_TEST(temp_names_tell_their_writer)
{
    char name[256], other[300];
    const char *base;
    pid_t child;
    int status;
    CHECK(rd_temp_name(name, sizeof name, "out/1.2.3-draft-sr.dcm"));
    CHECK(strncmp(name, "out/1.2.3-draft-sr.dcm.tmp.", 27) == 0);
    base = strrchr(name, '/') + 1;
    CHECK_EQ_INT(rd_temp_owner_of(base), RD_TEMP_LIVE); /* this process writes it */
    snprintf(other, sizeof other, "%s-Ab12Cd", base);   /* mkstemp's suffix after it */
    CHECK_EQ_INT(rd_temp_owner_of(other), RD_TEMP_LIVE);
    CHECK(!rd_temp_name(name, 20, "out/1.2.3-draft-sr.dcm"));

    /* A writer that has exited: its temporary is a left-over. */
    child = fork();
    if (child == 0)
        _exit(0);
    CHECK(child > 0);
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(rd_temp_name(name, sizeof name, "x.json"));
    {
        char *at = strrchr(name, '@');
        snprintf(at + 1, sizeof name - (size_t)(at + 1 - name), "%ld", (long)child);
    }
    CHECK_EQ_INT(rd_temp_owner_of(name), RD_TEMP_DEAD);

    CHECK_EQ_INT(rd_temp_owner_of("x.json.tmp.some-other-host@1"), RD_TEMP_ELSEWHERE);
    CHECK_EQ_INT(rd_temp_owner_of("x-sr.dcm.tmp-Ab12Cd"), RD_TEMP_ELSEWHERE);
    CHECK_EQ_INT(rd_temp_owner_of("x.json.tmp.12174"), RD_TEMP_ELSEWHERE);
    CHECK_EQ_INT(rd_temp_owner_of("1.2.3-draft-sr.dcm"), RD_TEMP_NOT_TEMP);
    CHECK_EQ_INT(rd_temp_owner_of(".tmp.host@1"), RD_TEMP_NOT_TEMP);
    CHECK_EQ_INT(rd_temp_owner_of("x.tmpl"), RD_TEMP_NOT_TEMP);
    CHECK_EQ_INT(rd_temp_owner_of("x.tmp.host@"), RD_TEMP_NOT_TEMP);
    CHECK_EQ_INT(rd_temp_owner_of("x.tmp.host@12x"), RD_TEMP_NOT_TEMP);
    CHECK_EQ_INT(rd_temp_owner_of("x.tmp.host@99999999999999999999"), RD_TEMP_NOT_TEMP);
    /* A user's files that merely contain ".tmp" are not temporaries. */
    CHECK_EQ_INT(rd_temp_owner_of("notes.tmp.txt"), RD_TEMP_NOT_TEMP);
    CHECK_EQ_INT(rd_temp_owner_of("x-sr.dcm.tmp-old"), RD_TEMP_NOT_TEMP);
    CHECK_EQ_INT(rd_temp_owner_of("x.tmp.host@12-Ab12Cd.bak"), RD_TEMP_NOT_TEMP);
}

RD_TEST_MAIN()
