/* The durable store: UID sanitizing, layout, duplicates, fault injection, jobs, outbox,
 * database errors. */
#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "radraft/config.h"
#include "radraft/store.h"
#include "radraft/uid.h"
#include "rdtest.h"
#include "rdtest_store.h"
#include "store/store_int.h"
#include "base/util.h"

static const char fake_file[] = "PREAMBLE-META|dataset bytes of an instance, pixel data...";
#define META_LEN 14 /* "PREAMBLE-META|" */

static rd_store_instance inst_of(const char *study, const char *series, const char *sop)
{
    rd_store_instance in = {
        study, series, sop, "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.1.2.1", "CR", "TESTSCU"};
    return in;
}

/* Counts regular files under a folder (recursively), and those whose name starts with
 * ".tmp-". */
static void count_files(const char *dir, int *files, int *temps)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[2048];
        struct stat sb;
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode))
            count_files(path, files, temps);
        else {
            (*files)++;
            if (strncmp(e->d_name, ".tmp-", 5) == 0)
                (*temps)++;
        }
    }
    closedir(d);
}

RD_TEST(sha256_known_vectors)
{
    char hex[65];
    rd_sha256_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    rd_sha256_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* 56 bytes: the padding spills into a second block. */
    rd_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

RD_TEST(uid_validation)
{
    char long_uid[80];
    CHECK(rd_store_uid_valid("1.2.840.10008.5.1.4.1.1.1"));
    CHECK(rd_store_uid_valid("1"));
    CHECK(!rd_store_uid_valid(""));
    CHECK(!rd_store_uid_valid(NULL));
    CHECK(!rd_store_uid_valid("../../etc/passwd"));
    CHECK(!rd_store_uid_valid("1.2/3"));
    CHECK(!rd_store_uid_valid("1..2"));
    CHECK(!rd_store_uid_valid(".1.2"));
    CHECK(!rd_store_uid_valid("1.2."));
    CHECK(!rd_store_uid_valid(".."));
    CHECK(!rd_store_uid_valid("1.2 "));
    CHECK(!rd_store_uid_valid("1.2a"));
    /* PS3.5 9.1: no leading zero in a component, but "0" is a component. */
    CHECK(!rd_store_uid_valid("1.02"));
    CHECK(!rd_store_uid_valid("01.2"));
    CHECK(!rd_store_uid_valid("1.2.00"));
    CHECK(rd_store_uid_valid("1.0.2"));
    CHECK(rd_store_uid_valid("0"));
    CHECK(rd_store_uid_valid("1.20.300"));
    CHECK(rd_uid_valid("2.25.0") && !rd_uid_valid("2.25.007"));
    CHECK(!rd_store_uid_valid("1.2 3"));
    CHECK(!rd_store_uid_valid("1.2\x01"));
    memset(long_uid, '1', 64);
    long_uid[64] = '\0';
    CHECK(rd_store_uid_valid(long_uid));
    long_uid[64] = '1';
    long_uid[65] = '\0';
    CHECK(!rd_store_uid_valid(long_uid));
}

RD_TEST(open_creates_schema_and_reopens)
{
    const char *dir = rd_test_tmpdir("store_open");
    rd_store *s = NULL, *s2 = NULL;
    rd_error err;
    char path[1200];
    struct stat sb;
    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    /* Every migration applied (2: the pipeline's tables, 3: the archive, ...). */
    CHECK(rd_store_schema_version(s) >= 3);
    snprintf(path, sizeof path, "%s/store", dir);
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    /* A second connection (another thread) opens the same store. */
    REQUIRE_OK(rd_store_open(&s2, dir, rdt_store_opts(dir), &err), &err);
    CHECK_EQ_INT(rd_store_schema_version(s2), rd_store_schema_version(s));
    rd_store_close(s2);
    rd_store_close(s);
    rd_store_close(NULL);
}

RD_TEST(put_writes_file_and_row)
{
    const char *dir = rd_test_tmpdir("store_put");
    rd_store *s = NULL;
    rd_error err;
    rd_store_put_result res = RD_STORE_SAME;
    rd_store_instance in = inst_of("1.2.3", "1.2.3.4", "1.2.3.4.5");
    char path[2048], expect[2048], *data = NULL;
    size_t len = 0;
    long n = -1;
    int files = 0, temps = 0;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    CHECK_OK(rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, &res, &err), &err);
    CHECK_EQ_INT(res, RD_STORE_NEW);
    CHECK_OK(rd_store_instance_path(s, "1.2.3.4.5", path, sizeof path, &err), &err);
    snprintf(expect, sizeof expect, "%s/store/1.2.3/1.2.3.4/1.2.3.4.5.dcm", dir);
    CHECK_STR(path, expect);
    CHECK_OK(rd_read_file(path, 1 << 20, &data, &len, &err), &err);
    CHECK_EQ_INT(len, sizeof fake_file - 1);
    CHECK(data && memcmp(data, fake_file, len) == 0);
    free(data);
    CHECK_OK(rd_store_count_instances(s, NULL, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    CHECK_OK(rd_store_count_instances(s, "1.2.3", &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    snprintf(path, sizeof path, "%s/store", dir);
    count_files(path, &files, &temps);
    CHECK_EQ_INT(files, 1);
    CHECK_EQ_INT(temps, 0);
    CHECK_EQ_INT(rd_store_instance_path(s, "9.9", path, sizeof path, &err), RD_E_NOT_FOUND);
    rd_store_close(s);
}

RD_TEST(put_refuses_hostile_uids)
{
    const char *dir = rd_test_tmpdir("store_hostile");
    const char *bad[] = {"../../../../tmp/evil",
                         "1.2/../../x",
                         "1..2",
                         "/etc/passwd",
                         "",
                         "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26"};
    rd_store *s = NULL;
    rd_error err;
    char path[1200];
    int files = 0, temps = 0;
    long n = -1;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rd_store_instance a = inst_of(bad[i], "1.2", "1.2.3");
        rd_store_instance b = inst_of("1.2", bad[i], "1.2.3");
        rd_store_instance c = inst_of("1.2", "1.2", bad[i]);
        CHECK_EQ_INT(rd_store_put(s, &a, fake_file, 10, 0, NULL, &err), RD_E_INVALID);
        CHECK_EQ_INT(rd_store_put(s, &b, fake_file, 10, 0, NULL, &err), RD_E_INVALID);
        CHECK_EQ_INT(rd_store_put(s, &c, fake_file, 10, 0, NULL, &err), RD_E_INVALID);
    }
    CHECK_OK(rd_store_count_instances(s, NULL, &n, &err), &err);
    CHECK_EQ_INT(n, 0);
    snprintf(path, sizeof path, "%s/store", dir);
    count_files(path, &files, &temps);
    CHECK_EQ_INT(files, 0);
    rd_store_close(s);
}

RD_TEST(duplicate_same_content_is_one_copy)
{
    const char *dir = rd_test_tmpdir("store_dup_same");
    rd_store *s = NULL;
    rd_error err;
    rd_store_put_result res = RD_STORE_NEW;
    rd_store_instance in = inst_of("1.2.3", "1.2.3.4", "1.2.3.4.5");
    char other_meta[sizeof fake_file];
    char path[1200];
    long n = -1;
    int files = 0, temps = 0;

    /* Same dataset, another file meta header: still the same content. */
    memcpy(other_meta, fake_file, sizeof fake_file);
    memcpy(other_meta, "XXXXXXXXXXXXX|", META_LEN);
    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    CHECK_OK(rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, &res, &err), &err);
    CHECK_EQ_INT(res, RD_STORE_NEW);
    CHECK_OK(rd_store_put(s, &in, other_meta, sizeof fake_file - 1, META_LEN, &res, &err), &err);
    CHECK_EQ_INT(res, RD_STORE_SAME);
    CHECK_OK(rd_store_count_instances(s, NULL, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    snprintf(path, sizeof path, "%s/store", dir);
    count_files(path, &files, &temps);
    CHECK_EQ_INT(files, 1);
    rd_store_close(s);
}

static void check_dup_policy(rd_store_dup_policy policy, const char *name)
{
    const char *dir = rd_test_tmpdir(name);
    rd_store *s = NULL;
    rd_error err;
    rd_store_options opts;
    rd_store_put_result res = RD_STORE_NEW;
    rd_store_instance in = inst_of("1.2.3", "1.2.3.4", "1.2.3.4.5");
    const char *second = "PREAMBLE-META|other content!";
    char path[2048], *data = NULL;
    size_t len = 0;

    rdt_store_opts_init(&opts, dir);
    opts.duplicate_policy = policy;
    REQUIRE_OK(rd_store_open(&s, dir, &opts, &err), &err);
    CHECK_OK(rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, &res, &err), &err);
    CHECK_OK(rd_store_put(s, &in, second, strlen(second), META_LEN, &res, &err), &err);
    CHECK_EQ_INT(res, policy == RD_STORE_DUP_KEEP_FIRST ? RD_STORE_KEPT_FIRST : RD_STORE_REPLACED);
    CHECK_OK(rd_store_instance_path(s, "1.2.3.4.5", path, sizeof path, &err), &err);
    CHECK_OK(rd_read_file(path, 1 << 20, &data, &len, &err), &err);
    if (policy == RD_STORE_DUP_KEEP_FIRST)
        CHECK(data && len == sizeof fake_file - 1 && memcmp(data, fake_file, len) == 0);
    else
        CHECK(data && len == strlen(second) && memcmp(data, second, len) == 0);
    free(data);
    rd_store_close(s);
}

RD_TEST(duplicate_different_keep_first)
{
    check_dup_policy(RD_STORE_DUP_KEEP_FIRST, "store_dup_keep");
}

RD_TEST(duplicate_different_replace)
{
    check_dup_policy(RD_STORE_DUP_REPLACE, "store_dup_replace");
}

RD_TEST(dup_policy_parse)
{
    rd_store_dup_policy p = RD_STORE_DUP_KEEP_FIRST;
    CHECK_OK(rd_store_dup_policy_parse("replace", &p, NULL), NULL);
    CHECK_EQ_INT(p, RD_STORE_DUP_REPLACE);
    CHECK_OK(rd_store_dup_policy_parse("keep-first", &p, NULL), NULL);
    CHECK_EQ_INT(p, RD_STORE_DUP_KEEP_FIRST);
    CHECK_EQ_INT(rd_store_dup_policy_parse("newest", &p, NULL), RD_E_INVALID);
}

/* Each injected fault: an error, no file (not even a temporary one), no row; and the
 * same put succeeds afterwards. */
static void check_fault(rd_store_fault fault, rd_status expect, const char *name)
{
    const char *dir = rd_test_tmpdir(name);
    rd_store *s = NULL;
    rd_error err;
    rd_store_instance in = inst_of("1.2.3", "1.2.3.4", "1.2.3.4.5");
    char path[1200];
    long n = -1;
    int files = 0, temps = 0;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    rd_store__set_fault(s, fault);
    CHECK_EQ_INT(rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, NULL, &err),
                 expect);
    CHECK_OK(rd_store_count_instances(s, NULL, &n, &err), &err);
    CHECK_EQ_INT(n, 0);
    snprintf(path, sizeof path, "%s/store", dir);
    count_files(path, &files, &temps);
    CHECK_EQ_INT(files, 0);
    CHECK_EQ_INT(rd_store_queue_stable(s, rd_store_now() + 1000, 0, NULL, &err), RD_OK);
    CHECK_OK(rd_store_count_jobs(s, NULL, -1, &n, &err), &err);
    CHECK_EQ_INT(n, 0);
    /* The fault was one-shot: the retry stores it. */
    CHECK_OK(rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, NULL, &err), &err);
    CHECK_OK(rd_store_count_instances(s, NULL, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    files = temps = 0;
    count_files(path, &files, &temps);
    CHECK_EQ_INT(files, 1);
    CHECK_EQ_INT(temps, 0);
    rd_store_close(s);
}

RD_TEST(fault_disk_full_during_write)
{
    check_fault(RD_STORE_FAULT_WRITE, RD_E_IO, "store_fault_write");
}

RD_TEST(fault_fsync_error)
{
    check_fault(RD_STORE_FAULT_FSYNC, RD_E_IO, "store_fault_fsync");
}

RD_TEST(fault_rename_error)
{
    check_fault(RD_STORE_FAULT_RENAME, RD_E_IO, "store_fault_rename");
}

RD_TEST(fault_commit_error)
{
    check_fault(RD_STORE_FAULT_COMMIT, RD_E_DB, "store_fault_commit");
}

RD_TEST(recover_removes_temporary_files)
{
    const char *dir = rd_test_tmpdir("store_recover");
    rd_store *s = NULL;
    rd_error err;
    char path[1200];
    int files = 0, temps = 0;
    FILE *fp;
    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    snprintf(path, sizeof path, "%s/store/1.2/1.3", dir);
    REQUIRE_OK(rd_mkdirs(path, &err), &err);
    /* One left by a write an hour ago, one as fresh as a write still going on. */
    for (int fresh = 0; fresh < 2; fresh++) {
        struct timeval hour_ago[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
        snprintf(path, sizeof path, "%s/store/1.2/1.3/.tmp-1.%d-abcdef", dir, 4 + fresh);
        fp = fopen(path, "wb");
        REQUIRE(fp);
        fputs("half a file", fp);
        fclose(fp);
        if (!fresh)
            REQUIRE(utimes(path, hour_ago) == 0);
    }
    CHECK_OK(rd_store_recover(s, &err), &err);
    snprintf(path, sizeof path, "%s/store", dir);
    count_files(path, &files, &temps);
    /* SQLite's data directory is this node's alone; on PostgreSQL other nodes share the
     * folder, and a fresh temporary may be theirs. */
    CHECK_EQ_INT(temps, rdt_store_opts(dir) ? 1 : 0);
    snprintf(path, sizeof path, "%s/store/1.2/1.3/.tmp-1.4-abcdef", dir);
    CHECK(access(path, F_OK) != 0);
    rd_store_close(s);
}

RD_TEST(stable_study_queues_one_job_and_requeues)
{
    const char *dir = rd_test_tmpdir("store_jobs");
    rd_store *s = NULL, *s2 = NULL;
    rd_error err;
    rd_store_instance a = inst_of("1.2.3", "1.2.3.4", "1.2.3.4.1");
    rd_store_instance b = inst_of("1.2.3", "1.2.3.4", "1.2.3.4.2");
    rd_store_instance c = inst_of("1.2.3", "1.2.3.4", "1.2.3.4.3");
    rd_store_job job;
    int queued = -1;
    long n = -1;
    double now;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    CHECK_OK(rd_store_put(s, &a, "AAAA", 4, 0, NULL, &err), &err);
    CHECK_OK(rd_store_put(s, &b, "BBBB", 4, 0, NULL, &err), &err);
    now = rd_store_now();
    /* Not yet stable: nothing queued. */
    CHECK_OK(rd_store_queue_stable(s, now, 30, &queued, &err), &err);
    CHECK_EQ_INT(queued, 0);
    CHECK_EQ_INT(rd_store_job_claim(s, &job, &err), RD_E_NOT_FOUND);
    /* Stable: exactly one job, however often the scheduler looks. */
    CHECK_OK(rd_store_queue_stable(s, now + 31, 30, &queued, &err), &err);
    CHECK_EQ_INT(queued, 1);
    CHECK_OK(rd_store_queue_stable(s, now + 60, 30, &queued, &err), &err);
    CHECK_EQ_INT(queued, 0);
    /* Jobs survive a restart (a new connection) and a crash while running. */
    rd_store_close(s);
    REQUIRE_OK(rd_store_open(&s2, dir, rdt_store_opts(dir), &err), &err);
    REQUIRE_OK(rd_store_job_claim(s2, &job, &err), &err);
    CHECK_STR(job.study_uid, "1.2.3");
    CHECK_EQ_INT(job.attempts, 1);
    CHECK_OK(rd_store_recover(s2, &err), &err); /* as after kill -9 while running */
    REQUIRE_OK(rd_store_job_claim(s2, &job, &err), &err);
    CHECK_EQ_INT(job.attempts, 2);
    CHECK_OK(rd_store_job_finish(s2, job.id, NULL, &err), &err);
    CHECK_EQ_INT(rd_store_job_finish(s2, job.id, NULL, &err), RD_E_NOT_FOUND);
    CHECK_OK(rd_store_count_jobs(s2, "1.2.3", RD_JOB_DONE, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    /* A new instance after the job ran: a new job once stable again. */
    CHECK_OK(rd_store_put(s2, &c, "CCCC", 4, 0, NULL, &err), &err);
    now = rd_store_now();
    CHECK_OK(rd_store_queue_stable(s2, now + 31, 30, &queued, &err), &err);
    CHECK_EQ_INT(queued, 1);
    CHECK_OK(rd_store_count_jobs(s2, "1.2.3", -1, &n, &err), &err);
    CHECK_EQ_INT(n, 2);
    /* A resend of a stored instance is not news: no new job. */
    CHECK_OK(rd_store_put(s2, &c, "CCCC", 4, 0, NULL, &err), &err);
    CHECK_OK(rd_store_queue_stable(s2, now + 100, 30, &queued, &err), &err);
    CHECK_EQ_INT(queued, 0);
    REQUIRE_OK(rd_store_job_claim(s2, &job, &err), &err);
    CHECK_OK(rd_store_job_finish(s2, job.id, "decoder failed", &err), &err);
    CHECK_OK(rd_store_count_jobs(s2, NULL, RD_JOB_FAILED, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    rd_store_close(s2);
}

RD_TEST(next_stable_due_is_the_oldest_dirty_study)
{
    const char *dir = rd_test_tmpdir("store_due");
    rd_store *s = NULL;
    rd_error err;
    rd_store_instance a = inst_of("1.2.5", "1.2.5.4", "1.2.5.4.1");
    rd_store_instance b = inst_of("1.2.6", "1.2.6.4", "1.2.6.4.1");
    double due = 0, before, t_a, after;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    /* No study at all: nothing is due. */
    CHECK_OK(rd_store_next_stable_due(s, 30, &due, &err), &err);
    CHECK(due < 0);
    before = rd_store_now();
    CHECK_OK(rd_store_put(s, &a, "AAAA", 4, 0, NULL, &err), &err);
    t_a = rd_store_now();
    CHECK_OK(rd_store_put(s, &b, "BBBB", 4, 0, NULL, &err), &err);
    after = rd_store_now();
    /* The older study decides: received between `before` and `t_a`, stable 30 s later. */
    CHECK_OK(rd_store_next_stable_due(s, 30, &due, &err), &err);
    CHECK(due >= before + 30 && due <= t_a + 30);
    /* Once both are queued, no dirty study is left. */
    CHECK_OK(rd_store_queue_stable(s, after + 31, 30, NULL, &err), &err);
    CHECK_OK(rd_store_next_stable_due(s, 30, &due, &err), &err);
    CHECK(due < 0);
    rd_store_close(s);
}

RD_TEST(outbox_retries_with_backoff_and_never_resends_done)
{
    const char *dir = rd_test_tmpdir("store_outbox");
    rd_store *s = NULL;
    rd_error err;
    rd_store_delivery d;
    int64_t id = 0, id2 = 0;
    long n = -1;
    double t0 = 1000000.0;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    CHECK_OK(rd_store_outbox_add(s, "/x/a.dcm", "PACS@localhost:104", t0, &id, &err), &err);
    CHECK_OK(rd_store_outbox_add(s, "/x/a.dcm", "PACS@localhost:104", t0, &id2, &err), &err);
    CHECK_EQ_INT(id, id2); /* queued once */
    REQUIRE_OK(rd_store_outbox_claim(s, t0, &d, &err), &err);
    CHECK_STR(d.file, "/x/a.dcm");
    CHECK_STR(d.destination, "PACS@localhost:104");
    /* While it is being sent nobody else takes it. */
    CHECK_EQ_INT(rd_store_outbox_claim(s, t0, &d, &err), RD_E_NOT_FOUND);
    CHECK_OK(rd_store_outbox_result(s, id, "connection refused", t0, 5, 60, 0, &err), &err);
    /* First retry after 5 s, then 10, 20, 40, 60 (capped). */
    CHECK_EQ_INT(rd_store_outbox_claim(s, t0 + 4.9, &d, &err), RD_E_NOT_FOUND);
    REQUIRE_OK(rd_store_outbox_claim(s, t0 + 5, &d, &err), &err);
    CHECK_OK(rd_store_outbox_result(s, id, "refused", t0 + 5, 5, 60, 0, &err), &err);
    CHECK_EQ_INT(rd_store_outbox_claim(s, t0 + 14.9, &d, &err), RD_E_NOT_FOUND);
    REQUIRE_OK(rd_store_outbox_claim(s, t0 + 15, &d, &err), &err);
    CHECK_EQ_INT(d.attempts, 2);
    /* A crash while sending: the delivery is pending again after recovery. */
    CHECK_OK(rd_store_recover(s, &err), &err);
    REQUIRE_OK(rd_store_outbox_claim(s, t0 + 15, &d, &err), &err);
    CHECK_OK(rd_store_outbox_result(s, id, NULL, t0 + 16, 5, 60, 0, &err), &err);
    CHECK_OK(rd_store_outbox_count(s, "done", &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    /* Confirmed: never claimed again, not even much later or after recovery. */
    CHECK_OK(rd_store_recover(s, &err), &err);
    CHECK_EQ_INT(rd_store_outbox_claim(s, t0 + 1e6, &d, &err), RD_E_NOT_FOUND);
    /* With a maximum of 2 attempts a delivery ends failed. */
    CHECK_OK(rd_store_outbox_add(s, "/x/b.dcm", "PACS@localhost:104", t0, &id, &err), &err);
    REQUIRE_OK(rd_store_outbox_claim(s, t0, &d, &err), &err);
    CHECK_OK(rd_store_outbox_result(s, id, "refused", t0, 5, 60, 2, &err), &err);
    REQUIRE_OK(rd_store_outbox_claim(s, t0 + 5, &d, &err), &err);
    CHECK_OK(rd_store_outbox_result(s, id, "refused", t0 + 5, 5, 60, 2, &err), &err);
    CHECK_OK(rd_store_outbox_count(s, "failed", &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    rd_store_close(s);
}

RD_TEST(job_begin_records_a_job_run_outside_the_queue)
{
    const char *dir = rd_test_tmpdir("store_job_begin");
    rd_store *s = NULL;
    rd_error err;
    rd_store_job job, claimed;
    char msg[256];
    long n = -1;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    /* A failure: the job row holds the state, the attempts and the message. */
    REQUIRE_OK(rd_store_job_begin(s, "1.2.9", 3, &job, &err), &err);
    CHECK_STR(job.study_uid, "1.2.9");
    CHECK_EQ_INT(job.attempts, 3);
    /* Never claimed by the queue's workers. */
    CHECK_EQ_INT(rd_store_job_claim(s, &claimed, &err), RD_E_NOT_FOUND);
    CHECK_OK(rd_store_job_finish(s, job.id, "read: malformed Study Instance UID", &err), &err);
    CHECK_OK(rd_store_count_jobs(s, "1.2.9", RD_JOB_FAILED, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    CHECK_OK(rd_store_job_error(s, job.id, msg, sizeof msg, &err), &err);
    CHECK_STR(msg, "read: malformed Study Instance UID");
    /* A later success is a second, done job. */
    REQUIRE_OK(rd_store_job_begin(s, "1.2.9", 1, &job, &err), &err);
    CHECK_OK(rd_store_job_finish(s, job.id, NULL, &err), &err);
    CHECK_OK(rd_store_count_jobs(s, "1.2.9", RD_JOB_DONE, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    /* Bad arguments change nothing. */
    CHECK_EQ_INT(rd_store_job_begin(s, "", 1, &job, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_store_job_begin(s, "1.2.9", 0, &job, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_store_job_begin(s,
                                    "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22."
                                    "23.24.25.26.27",
                                    1, &job, &err),
                 RD_E_INVALID);
    CHECK_OK(rd_store_count_jobs(s, NULL, -1, &n, &err), &err);
    CHECK_EQ_INT(n, 2);
    rd_store_close(s);
}

RD_TEST(db_errors_name_what_failed_and_a_lock_waits_the_busy_timeout)
{
    const char *dir = rd_test_tmpdir("store_db_errors");
    rd_store *s = NULL, *other = NULL;
    rd_store_options opts;
    rd_store_job job;
    rd_store_review r = {.study_uid = "1.2.5", .content_version = "v1", .sr_path = "/tmp/sr.dcm"};
    rd_error err;
    long n = -1;
    double t0;

    rdt_store_opts_init(&opts, dir);
    opts.busy_timeout_ms = 200;
    REQUIRE_OK(rd_store_open(&s, dir, &opts, &err), &err);
    REQUIRE_OK(rd_store_open(&other, dir, rdt_store_opts(dir), &err), &err);
    /* Another connection holds the write lock: a write waits the busy timeout, then fails
     * as a database error that says what it was doing. */
    REQUIRE(sqlite3_exec(rd_store__db(other), "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    t0 = rd_store_now();
    CHECK_EQ_INT(rd_store_job_begin(s, "1.2.5", 1, &job, &err), RD_E_DB);
    CHECK(rd_store_now() - t0 >= 0.15);
    CHECK_MSG(strstr(rd_error_message(&err), "adding a job") &&
                  strstr(rd_error_message(&err), "locked"),
              "message: %s", rd_error_message(&err));
    /* A transaction that cannot start leaves the connection usable. */
    CHECK_EQ_INT(rd_store_job_claim(s, &job, &err), RD_E_DB);
    CHECK(sqlite3_get_autocommit(rd_store__db(s)));
    REQUIRE(sqlite3_exec(rd_store__db(other), "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_OK(rd_store_job_begin(s, "1.2.5", 1, &job, &err), &err);

    /* A table gone under a statement prepared before (cached) and one never prepared. */
    CHECK_OK(rd_store_count_reviews(s, NULL, NULL, &n, &err), &err);
    CHECK_EQ_INT(n, 0);
    REQUIRE(sqlite3_exec(rd_store__db(other), "DROP TABLE reviews", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_EQ_INT(rd_store_count_reviews(s, NULL, NULL, &n, &err), RD_E_DB);
    CHECK_MSG(strstr(rd_error_message(&err), "radraft.db: counting") &&
                  strstr(rd_error_message(&err), "no such table: reviews"),
              "message: %s", rd_error_message(&err));
    CHECK_EQ_INT(rd_store_review_add(s, &r, NULL, 0, NULL, NULL, &err), RD_E_DB);
    CHECK_MSG(strstr(rd_error_message(&err), "adding a review item") &&
                  strstr(rd_error_message(&err), "no such table: reviews"),
              "message: %s", rd_error_message(&err));
    /* Its transaction was rolled back, and the other tables still work. */
    CHECK(sqlite3_get_autocommit(rd_store__db(s)));
    CHECK_OK(rd_store_count_jobs(s, "1.2.5", RD_JOB_RUNNING, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    rd_store_close(other);
    rd_store_close(s);
}

typedef struct nested_scan {
    rd_store *s;
    int rows, inner_rows;
    long count;
} nested_scan;

static rd_status count_row(void *ctx, const rd_store_archive_row *row, rd_error *err)
{
    (void)err;
    (void)row;
    ((nested_scan *)ctx)->inner_rows++;
    return RD_OK;
}

/* Runs the same scan again and a count from inside the outer scan's callback. */
static rd_status scan_again(void *ctx, const rd_store_archive_row *row, rd_error *err)
{
    nested_scan *ns = ctx;
    rd_status st;
    ns->rows++;
    CHECK_EQ_INT(row->dim, 4);
    if ((st = rd_store_archive_scan(ns->s, "m1", 1, count_row, ctx, err)) != RD_OK)
        return st;
    return rd_store_archive_count(ns->s, "m1", &ns->count, err);
}

RD_TEST(archive_scan_callback_may_query_the_same_store)
{
    const char *dir = rd_test_tmpdir("store_nested_scan");
    rd_store *s = NULL;
    rd_error err;
    const float emb[4] = {1, 0, 0, 0};
    rd_store_archive_row rows[2] = {
        {0, "m1", "a", "1.2.1", "", 0, 0, 0, "000000000000000", NULL, NULL, 4, emb},
        {0, "m1", "b", "1.2.2", "", 0, 0, 0, "000000000000000", "text", NULL, 4, emb}};
    nested_scan ns = {NULL, 0, 0, 0};

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    REQUIRE_OK(rd_store_archive_add_many(s, rows, 2, NULL, NULL, &err), &err);
    ns.s = s;
    CHECK_OK(rd_store_archive_scan(s, "m1", 1, scan_again, &ns, &err), &err);
    CHECK_EQ_INT(ns.rows, 2);
    CHECK_EQ_INT(ns.inner_rows, 4);
    CHECK_EQ_INT(ns.count, 2);
    /* And the statements are all back for the next use. */
    ns.rows = ns.inner_rows = 0;
    CHECK_OK(rd_store_archive_scan(s, "m1", 1, scan_again, &ns, &err), &err);
    CHECK_EQ_INT(ns.rows, 2);
    CHECK_EQ_INT(ns.inner_rows, 4);
    rd_store_close(s);
}

/* The work a node does with its store on receiving: two new instances (one of them sent
 * twice), their study jobs, a delivery. Stops at the first error. */
static rd_status receive_scenario(rd_store *s, rd_error *err)
{
    rd_store_instance a = inst_of("1.2.3", "1.2.3.4", "1.2.3.4.5");
    rd_store_instance b = inst_of("1.2.9", "1.2.9.4", "1.2.9.4.5");
    rd_status st;
    if ((st = rd_store_put(s, &a, fake_file, sizeof fake_file - 1, META_LEN, NULL, err)) ||
        (st = rd_store_put(s, &a, fake_file, sizeof fake_file - 1, META_LEN, NULL, err)) ||
        (st = rd_store_put(s, &b, fake_file, sizeof fake_file - 2, META_LEN, NULL, err)) ||
        (st = rd_store_queue_stable(s, rd_store_now() + 1000, 0, NULL, err)) ||
        (st = rd_store_outbox_add(s, "/x/sr.dcm", "PACS@h:104", rd_store_now(), NULL, err)))
        return st;
    return RD_OK;
}

/* SQLite busy and I/O errors injected at each statement of the scenario in turn: every
 * failure is RD_E_DB with the statement named, leaves no file without its row and no row
 * without its file, and the scenario run again afterwards completes. */
RD_TEST(store_statement_faults_leave_it_consistent)
{
    for (int busy = 0; busy <= 1; busy++) {
        long n, fired = 0, swallowed = 0;
        for (n = 1; n < 500; n++) {
            char dir[1200], store_dir[1300], path[2048];
            rd_store *s = NULL;
            rd_error err;
            rd_status st;
            long before, after, rows = -1, outbox = -1;
            int files = 0, temps = 0;
            snprintf(dir, sizeof dir, "%s/%d-%ld", rd_test_tmpdir("store_faults"), busy, n);
            REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
            before = rd_store__fail_statement(s, n, busy);
            st = receive_scenario(s, &err);
            after = rd_store__fail_statement(s, 0, 0);
            if (after < before + n) { /* the scenario has fewer statements: all covered */
                CHECK_OK(st, &err);
                rd_store_close(s);
                break;
            }
            fired++;
            if (st == RD_OK) {
                /* Only a best-effort write may fail unseen (caching a stored file's hash),
                 * and then the work is all done. */
                swallowed++;
                CHECK_OK(rd_store_count_instances(s, NULL, &rows, &err), &err);
                CHECK_EQ_INT(rows, 2);
                rd_store_close(s);
                continue;
            }
            CHECK_EQ_INT(st, RD_E_DB);
            CHECK(strstr(err.msg, "(injected)") != NULL);
            /* Consistent: each row's file is there, and nothing else is. */
            CHECK_OK(rd_store_count_instances(s, NULL, &rows, &err), &err);
            snprintf(store_dir, sizeof store_dir, "%s/store", dir);
            count_files(store_dir, &files, &temps);
            CHECK_EQ_INT(files, rows);
            CHECK_EQ_INT(temps, 0);
            if (rows >= 1)
                CHECK_OK(rd_store_instance_path(s, "1.2.3.4.5", path, sizeof path, &err), &err);
            /* And it works again. */
            CHECK_OK(receive_scenario(s, &err), &err);
            CHECK_OK(rd_store_count_instances(s, NULL, &rows, &err), &err);
            CHECK_EQ_INT(rows, 2);
            CHECK_OK(rd_store_outbox_count(s, "pending", &outbox, &err), &err);
            CHECK_EQ_INT(outbox, 1);
            rd_store_close(s);
        }
        /* Every statement of the scenario failed once (there are more than ten). */
        CHECK(fired > 10 && n < 500);
        CHECK(swallowed <= 1);
        fprintf(stderr,
                "%s: %ld statements, each failed once; %ld failure(s) of a cache write "
                "passed unseen\n",
                busy ? "busy" : "I/O error", fired, swallowed);
    }
}

/* ---- group commit ---- */

#define GROUP_THREADS 8
#define GROUP_PUTS 40

typedef struct group_worker {
    const char *dir;
    rd_store_group *g;
    int k;
    int failed, new_count;
    pthread_t t;
} group_worker;

/* Each worker its own handle in the group, as each association has: 40 instances of its
 * own, and the same shared instance that every worker sends too. */
static void *group_main(void *arg)
{
    group_worker *w = arg;
    rd_store_options o;
    rd_store *s = NULL;
    rd_error err;
    rdt_store_opts_init(&o, w->dir);
    o.group = w->g;
    if (rd_store_open(&s, w->dir, &o, &err) != RD_OK) {
        fprintf(stderr, "worker %d: open: %s\n", w->k, rd_error_message(&err));
        w->failed = GROUP_PUTS + 1;
        return NULL;
    }
    for (int i = 0; i <= GROUP_PUTS; i++) {
        char sop[64];
        rd_store_put_result res;
        if (i < GROUP_PUTS)
            snprintf(sop, sizeof sop, "1.2.9.%d.%d", w->k + 1, i + 1);
        else
            snprintf(sop, sizeof sop, "1.2.9.99");
        rd_store_instance in = inst_of("1.2.9", "1.2.9.1", sop);
        if (rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, &res, &err) != RD_OK) {
            fprintf(stderr, "worker %d: put %s: %s\n", w->k, sop, rd_error_message(&err));
            w->failed++;
        } else if (res == RD_STORE_NEW)
            w->new_count++;
    }
    rd_store_close(s);
    return NULL;
}

RD_TEST(group_commit_indexes_every_concurrent_put_once)
{
    const char *dir = rd_test_tmpdir("store_group");
    group_worker w[GROUP_THREADS];
    rd_store_group *g = NULL;
    rd_store *s = NULL;
    rd_error err;
    long n = -1, tx = 0, inst = 0;
    int news = 0;
    REQUIRE_OK(rd_store_group_create(&g, &err), &err);
    for (int k = 0; k < GROUP_THREADS; k++) {
        w[k] = (group_worker){dir, g, k, 0, 0, 0};
        REQUIRE(pthread_create(&w[k].t, NULL, group_main, &w[k]) == 0);
    }
    for (int k = 0; k < GROUP_THREADS; k++) {
        pthread_join(w[k].t, NULL);
        CHECK_EQ_INT(w[k].failed, 0);
        news += w[k].new_count;
    }
    /* Every worker's own instances new, the shared one new for exactly one of them. */
    CHECK_EQ_INT(news, GROUP_THREADS * GROUP_PUTS + 1);
    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    CHECK_OK(rd_store_count_instances(s, NULL, &n, &err), &err);
    CHECK_EQ_INT((int)n, GROUP_THREADS * GROUP_PUTS + 1);
    for (int k = 0; k < GROUP_THREADS; k++) {
        char path[2048], sop[64];
        snprintf(sop, sizeof sop, "1.2.9.%d.%d", k + 1, GROUP_PUTS);
        CHECK_OK(rd_store_instance_path(s, sop, path, sizeof path, &err), &err);
        CHECK(access(path, F_OK) == 0);
    }
    rd_store_group_stats(g, &tx, &inst);
    /* Only puts that reached the write lock count (the shared instance's resends may stop
     * before it); some transactions held several (printed: a busy machine may group
     * fewer). On PostgreSQL each put commits alone: the group is SQLite's. */
    if (!rdt_store_opts(dir)) {
        CHECK(inst >= GROUP_THREADS * GROUP_PUTS + 1 && inst <= GROUP_THREADS * (GROUP_PUTS + 1));
        CHECK(tx >= 1 && tx <= inst);
    } else {
        CHECK(inst == 0 && tx == 0);
    }
    fprintf(stderr, "group commit: %ld instances in %ld transactions\n", inst, tx);
    rd_store_close(s);
    /* A put that fails inside a group's transaction fails alone and leaves nothing: the
     * rename fault of the handle that leads it. */
    {
        rd_store_options o;
        rd_store_put_result res = RD_STORE_NEW;
        rd_store_instance in = inst_of("1.2.9", "1.2.9.1", "1.2.9.77");
        char path[2048];
        rdt_store_opts_init(&o, dir);
        o.group = g;
        o.sync_filesystem = 1; /* store.sync filesystem: only the spool case below differs */
        REQUIRE_OK(rd_store_open(&s, dir, &o, &err), &err);
        rd_store__set_fault(s, RD_STORE_FAULT_RENAME);
        CHECK(rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, &res, &err) ==
              RD_E_IO);
        CHECK(rd_store_instance_path(s, "1.2.9.77", path, sizeof path, &err) == RD_E_NOT_FOUND);
        CHECK_OK(rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, &res, &err), &err);
        CHECK_EQ_INT(res, RD_STORE_NEW);
        CHECK_OK(rd_store_count_instances(s, NULL, &n, &err), &err);
        CHECK_EQ_INT((int)n, GROUP_THREADS * GROUP_PUTS + 2);
        /* The folder's fsync, which the leader does once for the group before its commit
         * (store.sync file), fails: the group's rows are not committed and its new files
         * are gone. With store.sync filesystem the same fault fails the syncfs after the
         * commit: the committed rows are taken out again, the files gone as well. */
        for (int fs = 0; fs < 2 && !rdt_store_opts(dir); fs++) {
            char sop[32];
            rd_store_close(s);
            o.sync_filesystem = fs;
            REQUIRE_OK(rd_store_open(&s, dir, &o, &err), &err);
            snprintf(sop, sizeof sop, "1.2.9.7%d", 8 + fs);
            in = inst_of("1.2.9", "1.2.9.1", sop);
            rd_store__set_fault(s, RD_STORE_FAULT_DIR_FSYNC);
            CHECK(rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, &res, &err) ==
                  RD_E_IO);
            CHECK(strstr(rd_error_message(&err), fs ? "syncfs" : "fsync") != NULL);
            CHECK(rd_store_instance_path(s, sop, path, sizeof path, &err) == RD_E_NOT_FOUND);
            snprintf(path, sizeof path, "%s/store/1.2.9/1.2.9.1/%s.dcm", dir, sop);
            CHECK(access(path, F_OK) != 0);
            CHECK_OK(rd_store_put(s, &in, fake_file, sizeof fake_file - 1, META_LEN, &res, &err),
                     &err);
            CHECK_EQ_INT(res, RD_STORE_NEW);
            CHECK(access(path, F_OK) == 0);
        }
        if (!rdt_store_opts(dir)) {
            /* With store.sync filesystem a spool file of a group is not fsynced alone: the
             * leader's syncfs makes the group's data, renames and rows durable. When it
             * fails, nothing of the group stays. */
            for (int attempt = 0; attempt < 2; attempt++) {
                char spool[2048];
                int fd = -1;
                in = inst_of("1.2.9", "1.2.9.1", "1.2.9.80");
                REQUIRE_OK(rd_store_spool_create(s, spool, sizeof spool, &fd, &err), &err);
                REQUIRE(write(fd, fake_file, sizeof fake_file - 1) ==
                        (ssize_t)(sizeof fake_file - 1));
                close(fd);
                if (attempt == 0) {
                    rd_store__set_fault(s, RD_STORE_FAULT_FSYNC);
                    CHECK(rd_store_put_file(s, &in, spool, META_LEN, &res, &err) == RD_E_IO);
                    CHECK(strstr(rd_error_message(&err), "syncfs") != NULL);
                    CHECK(rd_store_instance_path(s, "1.2.9.80", path, sizeof path, &err) ==
                          RD_E_NOT_FOUND);
                } else {
                    CHECK_OK(rd_store_put_file(s, &in, spool, META_LEN, &res, &err), &err);
                    CHECK_EQ_INT(res, RD_STORE_NEW);
                    CHECK_OK(rd_store_instance_path(s, "1.2.9.80", path, sizeof path, &err), &err);
                }
                CHECK(access(spool, F_OK) != 0); /* gone whatever the outcome */
            }
        }
        rd_store_close(s);
    }
    rd_store_group_free(g);
}

/* A spool put of `sop` with store.sync filesystem, in a child process that ends where a
 * power cut would hit: after its group's commit, before the syncfs. Returns its exit code. */
static int put_and_cut_power(const char *dir, const char *sop)
{
    int status = 0;
    pid_t pid = fork();
    if (pid == 0) {
        rd_store_group *g = NULL;
        rd_store *s = NULL;
        rd_store_options o;
        rd_store_put_result res;
        rd_error err;
        char spool[2048];
        int fd = -1;
        rd_store_instance in = inst_of("1.2.10", "1.2.10.1", sop);
        rd_store_options_default(&o);
        o.sync_filesystem = 1;
        if (rd_store_group_create(&g, &err) != RD_OK)
            _exit(1);
        o.group = g;
        if (rd_store_open(&s, dir, &o, &err) != RD_OK ||
            rd_store_spool_create(s, spool, sizeof spool, &fd, &err) != RD_OK)
            _exit(2);
        if (write(fd, fake_file, sizeof fake_file - 1) != (ssize_t)(sizeof fake_file - 1))
            _exit(3);
        close(fd);
        rd_store__set_fault(s, RD_STORE_FAULT_EXIT_BEFORE_SYNCFS);
        (void)rd_store_put_file(s, &in, spool, META_LEN, &res, &err);
        _exit(4); /* the fault ends the process before this */
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static long unsynced_listed(rd_store *s)
{
    sqlite3_stmt *q = NULL;
    long n = -1;
    if (sqlite3_prepare_v2(rd_store__db(s), "SELECT COUNT(*) FROM unsynced_puts", -1, &q, NULL) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

/* store.sync filesystem commits a group's rows before the syncfs that makes them and their
 * files durable (nothing is answered before it returns). A power cut in between may keep a
 * row and lose its file's data: simulated here by ending the writer there and dropping the
 * unsynced data of one file (ext4 leaves such a file empty). The next start removes that
 * row, keeps the one whose file did reach the disk and every acknowledged one, and a resend
 * of the lost instance is stored again, not taken for a duplicate. (SQLite's own: the
 * PostgreSQL store syncs every file.) */
RD_TEST(power_cut_between_commit_and_syncfs_leaves_no_row_without_its_file)
{
    const char *dir = rd_test_tmpdir("store_power_cut");
    rd_store_group *g = NULL;
    rd_store *s = NULL;
    rd_store_options o;
    rd_store_put_result res = RD_STORE_SAME;
    rd_error err;
    char path[2048], spool[2048];
    int fd = -1;
    long n = 0;
    struct stat sb;
    rd_store_instance acked = inst_of("1.2.10", "1.2.10.1", "1.2.10.1.1");
    rd_store_instance lost = inst_of("1.2.10", "1.2.10.1", "1.2.10.1.2");

    rd_store_options_default(&o);
    o.sync_filesystem = 1;
    REQUIRE_OK(rd_store_group_create(&g, &err), &err);
    o.group = g;
    /* An instance stored and answered before the cut. */
    REQUIRE_OK(rd_store_open(&s, dir, &o, &err), &err);
    REQUIRE_OK(rd_store_spool_create(s, spool, sizeof spool, &fd, &err), &err);
    REQUIRE(write(fd, fake_file, sizeof fake_file - 1) == (ssize_t)(sizeof fake_file - 1));
    close(fd);
    CHECK_OK(rd_store_put_file(s, &acked, spool, META_LEN, &res, &err), &err);
    CHECK_EQ_INT(res, RD_STORE_NEW);
    CHECK(unsynced_listed(s) == 1); /* until the next group's transaction */
    rd_store_close(s);

    CHECK_EQ_INT(put_and_cut_power(dir, "1.2.10.1.2"), RD__FAULT_EXIT);
    CHECK_EQ_INT(put_and_cut_power(dir, "1.2.10.1.3"), RD__FAULT_EXIT);
    REQUIRE_OK(rd_store_open(&s, dir, NULL, &err), &err);
    CHECK_OK(rd_store_count_instances(s, NULL, &n, &err), &err);
    CHECK_EQ_INT((int)n, 3); /* both rows committed */
    CHECK(unsynced_listed(s) == 3);
    /* The cut drops the second file's data; the third's had reached the disk. */
    REQUIRE_OK(rd_store_instance_path(s, "1.2.10.1.2", path, sizeof path, &err), &err);
    REQUIRE(truncate(path, 0) == 0);

    CHECK_OK(rd_store_recover(s, &err), &err);
    CHECK(rd_store_instance_path(s, "1.2.10.1.2", path, sizeof path, &err) == RD_E_NOT_FOUND);
    snprintf(path, sizeof path, "%s/store/1.2.10/1.2.10.1/1.2.10.1.2.dcm", dir);
    CHECK(access(path, F_OK) != 0);
    CHECK_OK(rd_store_instance_path(s, "1.2.10.1.1", path, sizeof path, &err), &err);
    CHECK(stat(path, &sb) == 0 && sb.st_size == (off_t)(sizeof fake_file - 1));
    CHECK_OK(rd_store_instance_path(s, "1.2.10.1.3", path, sizeof path, &err), &err);
    CHECK_OK(rd_store_count_instances(s, NULL, &n, &err), &err);
    CHECK_EQ_INT((int)n, 2);
    CHECK(unsynced_listed(s) == 0);
    rd_store_close(s);

    /* Its sender had no success response and sends it again: stored anew. */
    REQUIRE_OK(rd_store_open(&s, dir, &o, &err), &err);
    REQUIRE_OK(rd_store_spool_create(s, spool, sizeof spool, &fd, &err), &err);
    REQUIRE(write(fd, fake_file, sizeof fake_file - 1) == (ssize_t)(sizeof fake_file - 1));
    close(fd);
    res = RD_STORE_SAME;
    CHECK_OK(rd_store_put_file(s, &lost, spool, META_LEN, &res, &err), &err);
    CHECK_EQ_INT(res, RD_STORE_NEW);
    CHECK_OK(rd_store_instance_path(s, "1.2.10.1.2", path, sizeof path, &err), &err);
    CHECK(stat(path, &sb) == 0 && sb.st_size == (off_t)(sizeof fake_file - 1));
    rd_store_close(s);
    rd_store_group_free(g);
}

/* store.sync: auto (the default) decides when the store opens, filesystem only where the
 * data directory is a mount point; an unknown value names the key and the choices. */
RD_TEST(store_sync_auto_is_filesystem_only_on_a_mount_point)
{
    const char *dir = rd_test_tmpdir("store_sync_auto");
    rd_config cfg;
    rd_store_options o;
    rd_store *s = NULL;
    rd_error err;
    rd_config_defaults(&cfg);
    CHECK_STR(cfg.store_sync, "auto");
    CHECK_OK(rd_store_options_from_config(&o, &cfg, &err), &err);
    CHECK(o.sync_auto && !o.sync_filesystem);
    REQUIRE_OK(rd_store_open(&s, dir, &o, &err), &err);
    CHECK(!s->opts.sync_filesystem); /* a folder inside the build tree, not a mount point */
    rd_store_close(s);
    CHECK(rd__own_file_system("/proc"));
    CHECK(!rd__own_file_system("/"));
    CHECK(!rd__own_file_system(dir));
    CHECK(!rd__own_file_system("/nonexistent/radraft"));
    CHECK_OK(rd_config_set(&cfg, "store.sync", "filesystem", &err), &err);
    CHECK_OK(rd_store_options_from_config(&o, &cfg, &err), &err);
    CHECK(!o.sync_auto && o.sync_filesystem);
    CHECK(rd_config_set(&cfg, "store.sync", "fsync", &err) == RD_E_CONFIG);
    CHECK(strstr(rd_error_message(&err), "'fsync' is not one of auto|file|filesystem") != NULL);
    /* A configuration built otherwise is checked again. */
    rd_strlcpy(cfg.store_sync, "fsync", sizeof cfg.store_sync);
    CHECK(rd_store_options_from_config(&o, &cfg, &err) == RD_E_INVALID);
    CHECK(strstr(rd_error_message(&err), "store.sync: 'auto', 'file' or 'filesystem'") != NULL);
}

RD_TEST_MAIN()
