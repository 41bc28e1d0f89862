#include "radraft/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "radraft/log.h"
#include "store/store_int.h"
#include "base/util.h"

#define PATH_MAX_RD 4096

struct rd_store {
    sqlite3 *db;
    char dir[PATH_MAX_RD];
    rd_store_options opts;
    rd_store_fault fault;
};

/* Migration i brings the schema from version i to i+1. Never edit a released entry:
 * append a new one. */
static const char *const migrations[] = {
    /* 1: instances, studies, jobs, outbox */
    "CREATE TABLE instances("
    "  sop_instance_uid TEXT PRIMARY KEY,"
    "  study_uid TEXT NOT NULL,"
    "  series_uid TEXT NOT NULL,"
    "  sop_class_uid TEXT,"
    "  transfer_syntax_uid TEXT,"
    "  modality TEXT,"
    "  calling_ae TEXT,"
    "  path TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  sha256 TEXT,"
    "  dataset_offset INTEGER NOT NULL DEFAULT 0,"
    "  received_at REAL NOT NULL);"
    "CREATE INDEX instances_study ON instances(study_uid);"
    "CREATE TABLE studies("
    "  study_uid TEXT PRIMARY KEY,"
    "  first_received REAL NOT NULL,"
    "  last_received REAL NOT NULL,"
    "  dirty INTEGER NOT NULL DEFAULT 1,"
    "  ready_at REAL);"
    "CREATE TABLE jobs("
    "  id INTEGER PRIMARY KEY,"
    "  study_uid TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('queued','running','done','failed')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL);"
    "CREATE INDEX jobs_state ON jobs(state, id);"
    "CREATE INDEX jobs_study ON jobs(study_uid);"
    "CREATE TABLE outbox("
    "  id INTEGER PRIMARY KEY,"
    "  file TEXT NOT NULL,"
    "  destination TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('pending','sending','done','failed')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt REAL NOT NULL,"
    "  last_error TEXT,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL,"
    "  UNIQUE(file, destination));"
    "CREATE INDEX outbox_due ON outbox(state, next_attempt);",
    /* 2: the pipeline: retry times of jobs, what became of each content version of a
     * study (drafted or skipped, and why), and the review items of the drafts. */
    "ALTER TABLE jobs ADD COLUMN not_before REAL NOT NULL DEFAULT 0;"
    "CREATE TABLE study_versions("
    "  study_uid TEXT NOT NULL,"
    "  content_version TEXT NOT NULL,"
    "  outcome TEXT NOT NULL CHECK(outcome IN ('drafted','skipped')),"
    "  reason TEXT,"
    "  review_id INTEGER,"
    "  created_at REAL NOT NULL,"
    "  PRIMARY KEY(study_uid, content_version));"
    "CREATE TABLE reviews("
    "  id INTEGER PRIMARY KEY,"
    "  study_uid TEXT NOT NULL,"
    "  content_version TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('draft','approved','edited','rejected')),"
    "  sr_path TEXT NOT NULL,"
    "  sr_sop_instance_uid TEXT,"
    "  frontal_sop_instance_uid TEXT,"
    "  model_version TEXT,"
    "  findings_text TEXT,"
    "  impression_text TEXT,"
    "  findings_json TEXT,"
    "  neighbours_json TEXT,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL,"
    "  UNIQUE(study_uid, content_version));"
    "CREATE INDEX reviews_state ON reviews(state, id);",
    /* 3: the archive of past studies for similar-case retrieval (src/store_archive.c) */
    "CREATE TABLE archive("
    "  id INTEGER PRIMARY KEY,"
    "  model_version TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  study_uid TEXT NOT NULL,"
    "  patient_hash TEXT NOT NULL DEFAULT '',"
    "  view INTEGER NOT NULL DEFAULT 0,"
    "  study_date INTEGER NOT NULL DEFAULT 0,"
    "  source INTEGER NOT NULL,"
    "  states TEXT NOT NULL,"
    "  findings_text TEXT,"
    "  impression_text TEXT,"
    "  dim INTEGER NOT NULL,"
    "  embedding BLOB NOT NULL,"
    "  added_at REAL NOT NULL,"
    "  UNIQUE(model_version, key));",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

sqlite3 *rd_store__db(rd_store *s)
{
    return s->db;
}

const char *rd_store__dir(const rd_store *s)
{
    return s->dir;
}

void rd_store__set_fault(rd_store *s, rd_store_fault fault)
{
    s->fault = fault;
}

void rd_store_options_default(rd_store_options *opts)
{
    opts->duplicate_policy = RD_STORE_DUP_KEEP_FIRST;
    opts->busy_timeout_ms = 30000;
}

rd_status rd_store_dup_policy_parse(const char *text, rd_store_dup_policy *out, rd_error *err)
{
    if (strcmp(text, "keep-first") == 0)
        *out = RD_STORE_DUP_KEEP_FIRST;
    else if (strcmp(text, "replace") == 0)
        *out = RD_STORE_DUP_REPLACE;
    else
        return rd_error_set(err, RD_E_INVALID, "duplicate policy '%s' is not keep-first or replace",
                            text);
    return RD_OK;
}

int rd_store_uid_valid(const char *uid)
{
    size_t n = 0;
    int prev_dot = 1; /* a leading dot is an empty first component */
    if (!uid)
        return 0;
    for (const char *p = uid; *p; p++, n++) {
        if (n >= RD_STORE_UID_MAX)
            return 0;
        if (*p == '.') {
            if (prev_dot)
                return 0;
            prev_dot = 1;
        } else if (*p >= '0' && *p <= '9') {
            prev_dot = 0;
        } else {
            return 0;
        }
    }
    return n > 0 && !prev_dot;
}

double rd_store_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

const char *rd_job_state_name(rd_job_state state)
{
    switch (state) {
    case RD_JOB_QUEUED:
        return "queued";
    case RD_JOB_RUNNING:
        return "running";
    case RD_JOB_DONE:
        return "done";
    case RD_JOB_FAILED:
        return "failed";
    }
    return "?";
}

static rd_status db_error(rd_store *s, rd_error *err, const char *what)
{
    return rd_error_set(err, RD_E_DB, "%s/radraft.db: %s: %s", s->dir, what, sqlite3_errmsg(s->db));
}

static rd_status exec(rd_store *s, const char *sql, rd_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        rd_status st = rd_error_set(err, RD_E_DB, "%s/radraft.db: %s", s->dir,
                                    msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return st;
    }
    return RD_OK;
}

static rd_status prepare(rd_store *s, const char *sql, sqlite3_stmt **stmt, rd_error *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, stmt, NULL) != SQLITE_OK)
        return db_error(s, err, "prepare");
    return RD_OK;
}

static void rollback(rd_store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int read_version(rd_store *s)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT name FROM sqlite_master WHERE type='table' AND "
                           "name='schema_version'",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    int has = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!has)
        return 0;
    if (sqlite3_prepare_v2(s->db, "SELECT version FROM schema_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    return v;
}

static rd_status migrate(rd_store *s, rd_error *err)
{
    rd_status st;
    int v;
    /* IMMEDIATE takes the write lock first, so that two processes opening a new store at
     * once apply each migration exactly once. */
    if ((st = exec(s, "BEGIN IMMEDIATE", err)) != RD_OK)
        return st;
    v = read_version(s);
    if (v < 0) {
        st = db_error(s, err, "reading the schema version");
        goto out;
    }
    if (v > N_MIGRATIONS) {
        st = rd_error_set(err, RD_E_DB,
                          "%s/radraft.db: schema version %d is newer than this radraft (%d)",
                          s->dir, v, N_MIGRATIONS);
        goto out;
    }
    if (v == 0 && (st = exec(s,
                             "CREATE TABLE schema_version(version INTEGER NOT NULL);"
                             "INSERT INTO schema_version VALUES(0);",
                             err)) != RD_OK)
        goto out;
    for (; v < N_MIGRATIONS; v++) {
        char sql[64];
        if ((st = exec(s, migrations[v], err)) != RD_OK)
            goto out;
        snprintf(sql, sizeof sql, "UPDATE schema_version SET version=%d", v + 1);
        if ((st = exec(s, sql, err)) != RD_OK)
            goto out;
    }
    st = exec(s, "COMMIT", err);
out:
    if (st != RD_OK)
        rollback(s);
    return st;
}

rd_status rd_store_open(rd_store **out, const char *data_dir, const rd_store_options *opts,
                        rd_error *err)
{
    rd_store *s = calloc(1, sizeof *s);
    char path[PATH_MAX_RD + 32];
    rd_status st;

    if (!s)
        return rd_error_set(err, RD_E_NOMEM, "out of memory opening the store");
    if (opts)
        s->opts = *opts;
    else
        rd_store_options_default(&s->opts);
    if (s->opts.busy_timeout_ms <= 0)
        s->opts.busy_timeout_ms = 30000;
    if (rd_strlcpy(s->dir, data_dir, sizeof s->dir) >= sizeof s->dir - 64) {
        st = rd_error_set(err, RD_E_INVALID, "%s: data directory path too long", data_dir);
        goto out;
    }
    snprintf(path, sizeof path, "%s/store", s->dir);
    if ((st = rd_mkdirs(path, err)) != RD_OK)
        goto out;
    snprintf(path, sizeof path, "%s/radraft.db", s->dir);
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        st = rd_error_set(err, RD_E_DB, "%s: %s", path,
                          s->db ? sqlite3_errmsg(s->db) : "cannot open");
        goto out;
    }
    sqlite3_busy_timeout(s->db, s->opts.busy_timeout_ms);
    /* WAL lets readers and one writer proceed together; synchronous=FULL makes every
     * commit durable before it returns, which the C-STORE success response relies on. */
    if ((st = exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err)) != RD_OK)
        goto out;
    st = migrate(s, err);
out:
    if (st != RD_OK) {
        rd_store_close(s);
        return st;
    }
    *out = s;
    return RD_OK;
}

void rd_store_close(rd_store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s);
}

int rd_store_schema_version(rd_store *s)
{
    return read_version(s);
}

/* Removes temporary files (".tmp-*") that a crash left under store/, three levels deep. */
static void remove_temps(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[PATH_MAX_RD];
        struct stat sb;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        if (lstat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode) && depth < 3)
            remove_temps(path, depth + 1);
        else if (S_ISREG(sb.st_mode) && strncmp(e->d_name, ".tmp-", 5) == 0) {
            rd_log_info("store: removing the temporary file %s left by an interrupted write", path);
            unlink(path);
        }
    }
    closedir(d);
}

rd_status rd_store_recover(rd_store *s, rd_error *err)
{
    char path[PATH_MAX_RD + 16];
    rd_status st;
    if ((st = exec(s,
                   "BEGIN IMMEDIATE;"
                   "UPDATE jobs SET state='queued' WHERE state='running';"
                   "UPDATE outbox SET state='pending' WHERE state='sending';"
                   "COMMIT;",
                   err)) != RD_OK) {
        rollback(s);
        return st;
    }
    snprintf(path, sizeof path, "%s/store", s->dir);
    remove_temps(path, 0);
    return RD_OK;
}

/* ---- instances ---- */

static rd_status fsync_dir(const char *dir, rd_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return rd_error_set(err, RD_E_IO, "%s: %s", dir, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return rd_error_set(err, RD_E_IO, "%s: fsync: %s", dir, strerror(e));
    }
    close(fd);
    return RD_OK;
}

/* Writes `data` to a new temporary file in `dir` and fsyncs it; *tmp gets its path. On
 * failure the temporary file is gone. */
static rd_status write_temp(rd_store *s, const char *dir, const char *sop, const void *data,
                            size_t len, char *tmp, size_t tmp_size, rd_error *err)
{
    const char *p = data;
    size_t left = len;
    int fd, e;
    if (snprintf(tmp, tmp_size, "%s/.tmp-%s-XXXXXX", dir, sop) >= (int)tmp_size)
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", dir);
    fd = mkstemp(tmp);
    if (fd < 0)
        return rd_error_set(err, RD_E_IO, "%s: %s", tmp, strerror(errno));
    while (left > 0) {
        size_t chunk = left;
        ssize_t w;
        if (s->fault == RD_STORE_FAULT_WRITE && left <= len / 2) {
            s->fault = RD_STORE_FAULT_NONE;
            errno = ENOSPC;
            w = -1;
        } else {
            if (s->fault == RD_STORE_FAULT_WRITE && chunk > len / 2)
                chunk = len - len / 2; /* write half, then fail as a full disk would */
            w = write(fd, p, chunk);
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            e = w < 0 ? errno : EIO;
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (s->fault == RD_STORE_FAULT_FSYNC) {
        s->fault = RD_STORE_FAULT_NONE;
        e = EIO;
        goto fail;
    }
    if (fsync(fd) != 0) {
        e = errno;
        goto fail;
    }
    if (close(fd) != 0) {
        e = errno;
        fd = -1;
        goto fail;
    }
    return RD_OK;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rd_error_set(err, RD_E_IO, "%s: %s", tmp, strerror(e));
}

typedef struct existing {
    int found;
    char sha[65]; /* "" until a duplicate needed it: hashing is done lazily */
    char path[PATH_MAX_RD];
    long long size;
    long long offset;
} existing;

static rd_status lookup(rd_store *s, const char *sop, existing *ex, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc = prepare(s,
                           "SELECT sha256, path, size, dataset_offset FROM instances"
                           " WHERE sop_instance_uid=?",
                           &st, err);
    if (rc != RD_OK)
        return rc;
    memset(ex, 0, sizeof *ex);
    sqlite3_bind_text(st, 1, sop, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const char *sha = (const char *)sqlite3_column_text(st, 0);
        const char *path = (const char *)sqlite3_column_text(st, 1);
        ex->found = 1;
        rd_strlcpy(ex->sha, sha ? sha : "", sizeof ex->sha);
        rd_strlcpy(ex->path, path ? path : "", sizeof ex->path);
        ex->size = sqlite3_column_int64(st, 2);
        ex->offset = sqlite3_column_int64(st, 3);
    } else if (r != SQLITE_DONE) {
        rc = db_error(s, err, "looking up an instance");
    }
    sqlite3_finalize(st);
    return rc;
}

/* 1 if the stored file of a row is present with the size recorded. */
static int file_present(rd_store *s, const existing *ex)
{
    char abs[2 * PATH_MAX_RD];
    struct stat sb;
    snprintf(abs, sizeof abs, "%s/%s", s->dir, ex->path);
    return stat(abs, &sb) == 0 && S_ISREG(sb.st_mode) && (long long)sb.st_size == ex->size;
}

/* The content hash of a stored instance. A new instance is stored without one (hashing
 * half a megabyte costs more than the fsyncs on the hot path); the first duplicate of it
 * hashes the stored file and caches the result in its row. Returns 0 if the file cannot
 * be read. */
static int stored_sha(rd_store *s, const char *sop, existing *ex)
{
    char abs[2 * PATH_MAX_RD];
    char *data = NULL;
    size_t len = 0;
    sqlite3_stmt *st = NULL;
    if (ex->sha[0])
        return 1;
    snprintf(abs, sizeof abs, "%s/%s", s->dir, ex->path);
    if (ex->size < 0 || ex->offset < 0 || ex->offset > ex->size ||
        rd_read_file(abs, (size_t)ex->size, &data, &len, NULL) != RD_OK)
        return 0;
    if ((long long)len != ex->size) {
        free(data);
        return 0;
    }
    rd_sha256_hex(data + ex->offset, len - (size_t)ex->offset, ex->sha);
    free(data);
    if (sqlite3_prepare_v2(s->db, "UPDATE instances SET sha256=? WHERE sop_instance_uid=?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, ex->sha, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, sop, -1, SQLITE_STATIC);
        (void)sqlite3_step(st); /* only a cache: a failure costs a rehash later */
    }
    sqlite3_finalize(st);
    return 1;
}

/* 1 if the stored row's file is present and has the content whose hash is `sha`. */
static int same_content(rd_store *s, const char *sop, existing *ex, const char *sha)
{
    return ex->found && file_present(s, ex) && stored_sha(s, sop, ex) && strcmp(ex->sha, sha) == 0;
}

/* 1 if the stored row's file is present with content other than `sha`. */
static int other_content(rd_store *s, const char *sop, existing *ex, const char *sha)
{
    return ex->found && file_present(s, ex) && stored_sha(s, sop, ex) && strcmp(ex->sha, sha) != 0;
}

static rd_status write_row(rd_store *s, const rd_store_instance *inst, const char *rel, size_t len,
                           size_t offset, const char *sha, double now, int replace, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    const char *sql =
        replace ? "UPDATE instances SET study_uid=?1, series_uid=?2, sop_class_uid=?4,"
                  " transfer_syntax_uid=?5, modality=?6, calling_ae=?7, path=?8, size=?9,"
                  " sha256=?10, received_at=?11, dataset_offset=?12 WHERE sop_instance_uid=?3"
                : "INSERT INTO instances(study_uid, series_uid, sop_instance_uid,"
                  " sop_class_uid, transfer_syntax_uid, modality, calling_ae, path, size,"
                  " sha256, received_at, dataset_offset)"
                  " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)";
    if ((rc = prepare(s, sql, &st, err)) != RD_OK)
        return rc;
    sqlite3_bind_text(st, 1, inst->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, inst->series_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, inst->sop_instance_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, inst->sop_class_uid ? inst->sop_class_uid : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, inst->transfer_syntax_uid ? inst->transfer_syntax_uid : "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 6, inst->modality ? inst->modality : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, inst->calling_ae ? inst->calling_ae : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, rel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)len);
    if (sha && sha[0])
        sqlite3_bind_text(st, 10, sha, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 10);
    sqlite3_bind_double(st, 11, now);
    sqlite3_bind_int64(st, 12, (sqlite3_int64)offset);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(s, err, "writing an instance row");
    sqlite3_finalize(st);
    if (rc != RD_OK)
        return rc;
    if ((rc = prepare(s,
                      "INSERT INTO studies(study_uid, first_received, last_received, dirty)"
                      " VALUES(?1, ?2, ?2, 1) ON CONFLICT(study_uid) DO UPDATE SET"
                      " last_received=excluded.last_received, dirty=1",
                      &st, err)) != RD_OK)
        return rc;
    sqlite3_bind_text(st, 1, inst->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, now);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(s, err, "updating a study row");
    sqlite3_finalize(st);
    return rc;
}

rd_status rd_store_put(rd_store *s, const rd_store_instance *inst, const void *data, size_t len,
                       size_t hash_offset, rd_store_put_result *result, rd_error *err)
{
    char sha[65] = "", rel[PATH_MAX_RD], dir[2 * PATH_MAX_RD], abs[2 * PATH_MAX_RD + 128];
    char tmp[2 * PATH_MAX_RD + 128];
    existing ex;
    rd_store_put_result res = RD_STORE_NEW;
    rd_status st;
    int renamed = 0, have_tmp = 0;
    double now = rd_store_now();

    if (!rd_store_uid_valid(inst->study_uid) || !rd_store_uid_valid(inst->series_uid) ||
        !rd_store_uid_valid(inst->sop_instance_uid))
        return rd_error_set(err, RD_E_INVALID,
                            "refusing an instance with an unsafe or invalid UID (study '%.80s', "
                            "series '%.80s', SOP instance '%.80s')",
                            inst->study_uid ? inst->study_uid : "",
                            inst->series_uid ? inst->series_uid : "",
                            inst->sop_instance_uid ? inst->sop_instance_uid : "");
    if (hash_offset > len)
        return rd_error_set(err, RD_E_INVALID, "hash offset %zu beyond %zu bytes", hash_offset,
                            len);
    snprintf(rel, sizeof rel, "store/%s/%s/%s.dcm", inst->study_uid, inst->series_uid,
             inst->sop_instance_uid);
    snprintf(dir, sizeof dir, "%s/store/%s/%s", s->dir, inst->study_uid, inst->series_uid);
    snprintf(abs, sizeof abs, "%s/%s", s->dir, rel);

    /* Fast path without the write lock: a resend of what is already stored. */
    if ((st = lookup(s, inst->sop_instance_uid, &ex, err)) != RD_OK)
        return st;
    /* The new data's hash is needed only when the SOP instance is already stored. */
    if (ex.found)
        rd_sha256_hex((const char *)data + hash_offset, len - hash_offset, sha);
    if (same_content(s, inst->sop_instance_uid, &ex, sha)) {
        if (result)
            *result = RD_STORE_SAME;
        return RD_OK;
    }
    if (s->opts.duplicate_policy == RD_STORE_DUP_KEEP_FIRST &&
        other_content(s, inst->sop_instance_uid, &ex, sha)) {
        rd_log_warn("store: SOP instance %s received again with different content (from %s); "
                    "keeping the first (store.duplicate_policy keep-first)",
                    inst->sop_instance_uid, inst->calling_ae ? inst->calling_ae : "?");
        if (result)
            *result = RD_STORE_KEPT_FIRST;
        return RD_OK;
    }

    /* The slow parts (writing and fsyncing the data) happen before the write lock. */
    if ((st = rd_mkdirs(dir, err)) != RD_OK)
        return st;
    if ((st = write_temp(s, dir, inst->sop_instance_uid, data, len, tmp, sizeof tmp, err)) != RD_OK)
        return st;
    have_tmp = 1;

    if ((st = exec(s, "BEGIN IMMEDIATE", err)) != RD_OK)
        goto out;
    /* Look again under the lock: another association may have stored it meanwhile. */
    if ((st = lookup(s, inst->sop_instance_uid, &ex, err)) != RD_OK)
        goto out;
    if (ex.found && !sha[0])
        rd_sha256_hex((const char *)data + hash_offset, len - hash_offset, sha);
    if (same_content(s, inst->sop_instance_uid, &ex, sha)) {
        res = RD_STORE_SAME;
        goto commit;
    }
    if (other_content(s, inst->sop_instance_uid, &ex, sha)) {
        if (s->opts.duplicate_policy == RD_STORE_DUP_KEEP_FIRST) {
            rd_log_warn("store: SOP instance %s received again with different content (from "
                        "%s); keeping the first (store.duplicate_policy keep-first)",
                        inst->sop_instance_uid, inst->calling_ae ? inst->calling_ae : "?");
            res = RD_STORE_KEPT_FIRST;
            goto commit;
        }
        rd_log_warn("store: SOP instance %s received again with different content (from %s); "
                    "replacing it (store.duplicate_policy replace)",
                    inst->sop_instance_uid, inst->calling_ae ? inst->calling_ae : "?");
        res = RD_STORE_REPLACED;
    }
    if (s->fault == RD_STORE_FAULT_RENAME) {
        s->fault = RD_STORE_FAULT_NONE;
        errno = EIO;
        st = rd_error_set(err, RD_E_IO, "%s: rename: %s", abs, strerror(errno));
        goto out;
    }
    if (rename(tmp, abs) != 0) {
        st = rd_error_set(err, RD_E_IO, "%s: rename: %s", abs, strerror(errno));
        goto out;
    }
    have_tmp = 0;
    renamed = 1;
    if ((st = write_row(s, inst, rel, len, hash_offset, sha, now, ex.found, err)) != RD_OK)
        goto out;
    if (ex.found && strcmp(ex.path, rel) != 0) {
        /* A replacement filed under another study or series: the old file goes. */
        char old[2 * PATH_MAX_RD];
        snprintf(old, sizeof old, "%s/%s", s->dir, ex.path);
        unlink(old);
    }
commit:
    if (s->fault == RD_STORE_FAULT_COMMIT) {
        s->fault = RD_STORE_FAULT_NONE;
        st = rd_error_set(err, RD_E_DB, "%s/radraft.db: commit: disk I/O error (injected)", s->dir);
        goto out;
    }
    if ((st = exec(s, "COMMIT", err)) != RD_OK)
        goto out;
    renamed = 0;
    /* The rename is durable only once its directory is: fsync it before answering. */
    if (res != RD_STORE_SAME && res != RD_STORE_KEPT_FIRST)
        st = fsync_dir(dir, err);
out:
    if (st != RD_OK) {
        rollback(s);
        /* A new file whose row did not commit is removed: no file without its row. (A
         * replaced file cannot be restored; the row keeps the old hash, so the next resend
         * of either version is stored again rather than taken for a duplicate.) */
        if (renamed && !ex.found)
            unlink(abs);
    }
    if (have_tmp)
        unlink(tmp);
    if (st == RD_OK && result)
        *result = res;
    return st;
}

rd_status rd_store_instance_path(rd_store *s, const char *sop_instance_uid, char *path, size_t size,
                                 rd_error *err)
{
    existing ex;
    rd_status st = lookup(s, sop_instance_uid, &ex, err);
    if (st != RD_OK)
        return st;
    if (!ex.found)
        return rd_error_set(err, RD_E_NOT_FOUND, "SOP instance %.80s is not stored",
                            sop_instance_uid);
    if ((size_t)snprintf(path, size, "%s/%s", s->dir, ex.path) >= size)
        return rd_error_set(err, RD_E_TOO_LARGE, "path of %.80s too long", sop_instance_uid);
    return RD_OK;
}

static rd_status count_query(rd_store *s, const char *sql, const char *a, const char *b, int n_int,
                             int ival, long *count, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc = prepare(s, sql, &st, err);
    int idx = 1;
    if (rc != RD_OK)
        return rc;
    if (a)
        sqlite3_bind_text(st, idx++, a, -1, SQLITE_STATIC);
    if (b)
        sqlite3_bind_text(st, idx++, b, -1, SQLITE_STATIC);
    if (n_int)
        sqlite3_bind_int(st, idx++, ival);
    if (sqlite3_step(st) == SQLITE_ROW)
        *count = (long)sqlite3_column_int64(st, 0);
    else
        rc = db_error(s, err, "counting");
    sqlite3_finalize(st);
    return rc;
}

rd_status rd_store_count_instances(rd_store *s, const char *study_uid, long *count, rd_error *err)
{
    if (study_uid)
        return count_query(s, "SELECT COUNT(*) FROM instances WHERE study_uid=?", study_uid, NULL,
                           0, 0, count, err);
    return count_query(s, "SELECT COUNT(*) FROM instances", NULL, NULL, 0, 0, count, err);
}

/* ---- jobs ---- */

rd_status rd_store_queue_stable(rd_store *s, double now, double stable_seconds, int *queued,
                                rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    int n = 0;
    double cutoff = now - stable_seconds;

    if ((rc = exec(s, "BEGIN IMMEDIATE", err)) != RD_OK)
        return rc;
    /* A study that already has a queued job gets no second one: the queued job will see
     * every instance received so far when it runs. */
    if ((rc = prepare(s,
                      "INSERT INTO jobs(study_uid, state, attempts, created_at, updated_at)"
                      " SELECT study_uid, 'queued', 0, ?1, ?1 FROM studies"
                      " WHERE dirty=1 AND last_received <= ?2 AND NOT EXISTS (SELECT 1 FROM"
                      " jobs j WHERE j.study_uid=studies.study_uid AND j.state='queued')",
                      &st, err)) != RD_OK)
        goto out;
    sqlite3_bind_double(st, 1, now);
    sqlite3_bind_double(st, 2, cutoff);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_error(s, err, "queueing jobs");
        goto out;
    }
    n = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = prepare(s, "UPDATE studies SET dirty=0 WHERE dirty=1 AND last_received <= ?1", &st,
                      err)) != RD_OK)
        goto out;
    sqlite3_bind_double(st, 1, cutoff);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_error(s, err, "marking studies");
        goto out;
    }
    rc = exec(s, "COMMIT", err);
out:
    sqlite3_finalize(st);
    if (rc != RD_OK)
        rollback(s);
    else if (queued)
        *queued = n;
    return rc;
}

rd_status rd_store_next_stable_due(rd_store *s, double stable_seconds, double *due, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    *due = -1;
    if ((rc = prepare(s, "SELECT MIN(last_received) FROM studies WHERE dirty=1", &st, err)) !=
        RD_OK)
        return rc;
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        /* MIN over no row is NULL: no study is waiting to become stable. */
        if (sqlite3_column_type(st, 0) != SQLITE_NULL)
            *due = sqlite3_column_double(st, 0) + stable_seconds;
        break;
    default:
        rc = db_error(s, err, "reading the studies");
        break;
    }
    sqlite3_finalize(st);
    return rc;
}

rd_status rd_store_job_claim(rd_store *s, rd_store_job *job, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    int r;
    if ((rc = exec(s, "BEGIN IMMEDIATE", err)) != RD_OK)
        return rc;
    if ((rc = prepare(s,
                      "SELECT id, study_uid, attempts FROM jobs WHERE state='queued'"
                      " AND not_before <= ?1 ORDER BY id LIMIT 1",
                      &st, err)) != RD_OK)
        goto out;
    sqlite3_bind_double(st, 1, rd_store_now());
    r = sqlite3_step(st);
    if (r == SQLITE_DONE) {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "no queued job");
        goto out;
    }
    if (r != SQLITE_ROW) {
        rc = db_error(s, err, "claiming a job");
        goto out;
    }
    job->id = sqlite3_column_int64(st, 0);
    rd_strlcpy(job->study_uid, (const char *)sqlite3_column_text(st, 1), sizeof job->study_uid);
    job->attempts = sqlite3_column_int(st, 2) + 1;
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = prepare(s,
                      "UPDATE jobs SET state='running', attempts=attempts+1, updated_at=?"
                      " WHERE id=?",
                      &st, err)) != RD_OK)
        goto out;
    sqlite3_bind_double(st, 1, rd_store_now());
    sqlite3_bind_int64(st, 2, job->id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_error(s, err, "claiming a job");
        goto out;
    }
    rc = exec(s, "COMMIT", err);
out:
    sqlite3_finalize(st);
    if (rc != RD_OK)
        rollback(s);
    return rc;
}

rd_status rd_store_job_finish(rd_store *s, int64_t job_id, const char *error, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    double now = rd_store_now();
    if ((rc = exec(s, "BEGIN IMMEDIATE", err)) != RD_OK)
        return rc;
    if ((rc = prepare(s,
                      "UPDATE jobs SET state=?1, error=?2, updated_at=?3 WHERE id=?4 AND"
                      " state='running'",
                      &st, err)) != RD_OK)
        goto out;
    sqlite3_bind_text(st, 1, error ? "failed" : "done", -1, SQLITE_STATIC);
    if (error)
        sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_double(st, 3, now);
    sqlite3_bind_int64(st, 4, job_id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_error(s, err, "finishing a job");
        goto out;
    }
    if (sqlite3_changes(s->db) != 1) {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "job %lld is not running", (long long)job_id);
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (!error) {
        if ((rc = prepare(s,
                          "UPDATE studies SET ready_at=?1 WHERE study_uid=(SELECT study_uid"
                          " FROM jobs WHERE id=?2)",
                          &st, err)) != RD_OK)
            goto out;
        sqlite3_bind_double(st, 1, now);
        sqlite3_bind_int64(st, 2, job_id);
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = db_error(s, err, "marking a study ready");
            goto out;
        }
    }
    rc = exec(s, "COMMIT", err);
out:
    sqlite3_finalize(st);
    if (rc != RD_OK)
        rollback(s);
    return rc;
}

rd_status rd_store_count_jobs(rd_store *s, const char *study_uid, int state, long *count,
                              rd_error *err)
{
    const char *name = state >= 0 ? rd_job_state_name((rd_job_state)state) : NULL;
    if (study_uid && name)
        return count_query(s, "SELECT COUNT(*) FROM jobs WHERE study_uid=? AND state=?", study_uid,
                           name, 0, 0, count, err);
    if (study_uid)
        return count_query(s, "SELECT COUNT(*) FROM jobs WHERE study_uid=?", study_uid, NULL, 0, 0,
                           count, err);
    if (name)
        return count_query(s, "SELECT COUNT(*) FROM jobs WHERE state=?", name, NULL, 0, 0, count,
                           err);
    return count_query(s, "SELECT COUNT(*) FROM jobs", NULL, NULL, 0, 0, count, err);
}

/* ---- outbox ---- */

rd_status rd_store_outbox_add(rd_store *s, const char *file, const char *destination, double now,
                              int64_t *id, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    if (strlen(file) >= sizeof((rd_store_delivery *)0)->file ||
        strlen(destination) >= sizeof((rd_store_delivery *)0)->destination)
        return rd_error_set(err, RD_E_TOO_LARGE, "outbox: file or destination name too long");
    if ((rc = prepare(s,
                      "INSERT INTO outbox(file, destination, state, attempts, next_attempt,"
                      " created_at, updated_at) VALUES(?1, ?2, 'pending', 0, ?3, ?3, ?3)"
                      " ON CONFLICT(file, destination) DO NOTHING",
                      &st, err)) != RD_OK)
        return rc;
    sqlite3_bind_text(st, 1, file, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, destination, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, now);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(s, err, "queueing a delivery");
    sqlite3_finalize(st);
    if (rc != RD_OK || !id)
        return rc;
    if ((rc = prepare(s, "SELECT id FROM outbox WHERE file=? AND destination=?", &st, err)) !=
        RD_OK)
        return rc;
    sqlite3_bind_text(st, 1, file, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, destination, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else
        rc = db_error(s, err, "queueing a delivery");
    sqlite3_finalize(st);
    return rc;
}

rd_status rd_store_outbox_claim(rd_store *s, double now, rd_store_delivery *d, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    int r;
    if ((rc = exec(s, "BEGIN IMMEDIATE", err)) != RD_OK)
        return rc;
    if ((rc = prepare(s,
                      "SELECT id, file, destination, attempts FROM outbox WHERE"
                      " state='pending' AND next_attempt <= ? ORDER BY next_attempt, id LIMIT 1",
                      &st, err)) != RD_OK)
        goto out;
    sqlite3_bind_double(st, 1, now);
    r = sqlite3_step(st);
    if (r == SQLITE_DONE) {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "no delivery due");
        goto out;
    }
    if (r != SQLITE_ROW) {
        rc = db_error(s, err, "claiming a delivery");
        goto out;
    }
    d->id = sqlite3_column_int64(st, 0);
    rd_strlcpy(d->file, (const char *)sqlite3_column_text(st, 1), sizeof d->file);
    rd_strlcpy(d->destination, (const char *)sqlite3_column_text(st, 2), sizeof d->destination);
    d->attempts = sqlite3_column_int(st, 3);
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = prepare(s, "UPDATE outbox SET state='sending', updated_at=? WHERE id=?", &st, err)) !=
        RD_OK)
        goto out;
    sqlite3_bind_double(st, 1, now);
    sqlite3_bind_int64(st, 2, d->id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_error(s, err, "claiming a delivery");
        goto out;
    }
    rc = exec(s, "COMMIT", err);
out:
    sqlite3_finalize(st);
    if (rc != RD_OK)
        rollback(s);
    return rc;
}

rd_status rd_store_outbox_result(rd_store *s, int64_t id, const char *error, double now,
                                 double retry_initial, double retry_max, int max_attempts,
                                 rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    int attempts = 0;
    const char *state = "done";
    double next = now, delay;

    if ((rc = exec(s, "BEGIN IMMEDIATE", err)) != RD_OK)
        return rc;
    if ((rc = prepare(s, "SELECT attempts FROM outbox WHERE id=? AND state='sending'", &st, err)) !=
        RD_OK)
        goto out;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "delivery %lld is not being sent", (long long)id);
        goto out;
    }
    attempts = sqlite3_column_int(st, 0) + 1;
    sqlite3_finalize(st);
    st = NULL;
    if (error) {
        delay = retry_initial;
        for (int i = 1; i < attempts && delay < retry_max; i++)
            delay *= 2;
        if (delay > retry_max)
            delay = retry_max;
        next = now + delay;
        state = max_attempts > 0 && attempts >= max_attempts ? "failed" : "pending";
    }
    if ((rc = prepare(s,
                      "UPDATE outbox SET state=?1, attempts=?2, next_attempt=?3, last_error=?4,"
                      " updated_at=?5 WHERE id=?6",
                      &st, err)) != RD_OK)
        goto out;
    sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, attempts);
    sqlite3_bind_double(st, 3, next);
    if (error)
        sqlite3_bind_text(st, 4, error, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_double(st, 5, now);
    sqlite3_bind_int64(st, 6, id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_error(s, err, "recording a delivery");
        goto out;
    }
    rc = exec(s, "COMMIT", err);
out:
    sqlite3_finalize(st);
    if (rc != RD_OK)
        rollback(s);
    return rc;
}

rd_status rd_store_outbox_count(rd_store *s, const char *state, long *count, rd_error *err)
{
    if (state)
        return count_query(s, "SELECT COUNT(*) FROM outbox WHERE state=?", state, NULL, 0, 0, count,
                           err);
    return count_query(s, "SELECT COUNT(*) FROM outbox", NULL, NULL, 0, 0, count, err);
}

/* ---- pipeline: job retries, study versions, review items ---- */

rd_status rd_store_job_retry(rd_store *s, int64_t job_id, const char *error, double delay_seconds,
                             rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    double now = rd_store_now();
    if ((rc = prepare(s,
                      "UPDATE jobs SET state='queued', error=?1, updated_at=?2, not_before=?3"
                      " WHERE id=?4 AND state='running'",
                      &st, err)) != RD_OK)
        return rc;
    sqlite3_bind_text(st, 1, error ? error : "", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, now);
    sqlite3_bind_double(st, 3, now + (delay_seconds > 0 ? delay_seconds : 0));
    sqlite3_bind_int64(st, 4, job_id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(s, err, "requeueing a job");
    else if (sqlite3_changes(s->db) != 1)
        rc = rd_error_set(err, RD_E_NOT_FOUND, "job %lld is not running", (long long)job_id);
    sqlite3_finalize(st);
    return rc;
}

rd_status rd_store_job_begin(rd_store *s, const char *study_uid, int attempts, rd_store_job *job,
                             rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    double now = rd_store_now();
    size_t len = study_uid ? strlen(study_uid) : 0;
    if (len == 0 || len > RD_STORE_UID_MAX || attempts < 1)
        return rd_error_set(err, RD_E_INVALID,
                            "job: a study UID of 1..%d characters and attempts >= 1 expected",
                            RD_STORE_UID_MAX);
    if ((rc = prepare(s,
                      "INSERT INTO jobs(study_uid, state, attempts, created_at, updated_at)"
                      " VALUES(?1, 'running', ?2, ?3, ?3)",
                      &st, err)) != RD_OK)
        return rc;
    sqlite3_bind_text(st, 1, study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, attempts);
    sqlite3_bind_double(st, 3, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_error(s, err, "adding a job");
    } else {
        job->id = sqlite3_last_insert_rowid(s->db);
        rd_strlcpy(job->study_uid, study_uid, sizeof job->study_uid);
        job->attempts = attempts;
    }
    sqlite3_finalize(st);
    return rc;
}

rd_status rd_store_job_error(rd_store *s, int64_t job_id, char *buf, size_t size, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc = prepare(s, "SELECT error FROM jobs WHERE id=?", &st, err);
    if (rc != RD_OK)
        return rc;
    sqlite3_bind_int64(st, 1, job_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *e = (const char *)sqlite3_column_text(st, 0);
        rd_strlcpy(buf, e ? e : "", size);
    } else {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "no job %lld", (long long)job_id);
    }
    sqlite3_finalize(st);
    return rc;
}

rd_status rd_store_study_files(rd_store *s, const char *study_uid, char ***paths, int *n,
                               rd_error *err)
{
    sqlite3_stmt *st = NULL;
    char **list = NULL;
    int count = 0, cap = 0;
    rd_status rc;
    *paths = NULL;
    *n = 0;
    if ((rc = prepare(s,
                      "SELECT path FROM instances WHERE study_uid=? ORDER BY series_uid,"
                      " sop_instance_uid",
                      &st, err)) != RD_OK)
        return rc;
    sqlite3_bind_text(st, 1, study_uid, -1, SQLITE_STATIC);
    for (;;) {
        int r = sqlite3_step(st);
        if (r == SQLITE_DONE)
            break;
        if (r != SQLITE_ROW) {
            rc = db_error(s, err, "listing a study's instances");
            goto out;
        }
        if (count >= RD_STORE_STUDY_MAX_FILES) {
            rc = rd_error_set(err, RD_E_TOO_LARGE, "study %.80s has more than %d instances",
                              study_uid, RD_STORE_STUDY_MAX_FILES);
            goto out;
        }
        if (count == cap) {
            int ncap = cap ? cap * 2 : 8;
            char **nl = realloc(list, (size_t)ncap * sizeof *nl);
            if (!nl) {
                rc = rd_error_set(err, RD_E_NOMEM, "out of memory listing a study");
                goto out;
            }
            list = nl;
            cap = ncap;
        }
        const char *rel = (const char *)sqlite3_column_text(st, 0);
        size_t len = strlen(s->dir) + 1 + strlen(rel ? rel : "") + 1;
        list[count] = malloc(len);
        if (!list[count]) {
            rc = rd_error_set(err, RD_E_NOMEM, "out of memory listing a study");
            goto out;
        }
        snprintf(list[count], len, "%s/%s", s->dir, rel ? rel : "");
        count++;
    }
out:
    sqlite3_finalize(st);
    if (rc != RD_OK) {
        rd_store_free_paths(list, count);
        return rc;
    }
    *paths = list;
    *n = count;
    return RD_OK;
}

void rd_store_free_paths(char **paths, int n)
{
    if (!paths)
        return;
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

rd_status rd_store_study_version_get(rd_store *s, const char *study_uid,
                                     const char *content_version, rd_store_study_version *out,
                                     rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc = prepare(s,
                           "SELECT outcome, reason, review_id FROM study_versions WHERE"
                           " study_uid=? AND content_version=?",
                           &st, err);
    if (rc != RD_OK)
        return rc;
    memset(out, 0, sizeof *out);
    sqlite3_bind_text(st, 1, study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, content_version, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const char *o = (const char *)sqlite3_column_text(st, 0);
        const char *why = (const char *)sqlite3_column_text(st, 1);
        out->found = 1;
        out->drafted = o && strcmp(o, "drafted") == 0;
        rd_strlcpy(out->reason, why ? why : "", sizeof out->reason);
        out->review_id = sqlite3_column_int64(st, 2);
    } else if (r != SQLITE_DONE) {
        rc = db_error(s, err, "looking up a study version");
    }
    sqlite3_finalize(st);
    return rc;
}

rd_status rd_store_study_skip(rd_store *s, const char *study_uid, const char *content_version,
                              const char *reason, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc = prepare(s,
                           "INSERT INTO study_versions(study_uid, content_version, outcome, reason,"
                           " created_at) VALUES(?1, ?2, 'skipped', ?3, ?4)"
                           " ON CONFLICT(study_uid, content_version) DO NOTHING",
                           &st, err);
    if (rc != RD_OK)
        return rc;
    sqlite3_bind_text(st, 1, study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, content_version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, rd_store_now());
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(s, err, "recording a skipped study");
    sqlite3_finalize(st);
    return rc;
}

static void bind_opt_text(sqlite3_stmt *st, int idx, const char *v)
{
    if (v)
        sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, idx);
}

rd_status rd_store_review_add(rd_store *s, const rd_store_review *r,
                              const char *const *destinations, int n_destinations,
                              int64_t *review_id, int *added, rd_error *err)
{
    sqlite3_stmt *st = NULL;
    rd_status rc;
    double now = rd_store_now();
    int64_t id = 0;
    int is_new = 0;

    if (!r->study_uid || !r->content_version || !r->sr_path)
        return rd_error_set(err, RD_E_INVALID, "a review item needs a study, a version and an SR");
    for (int i = 0; i < n_destinations; i++)
        if (strlen(r->sr_path) >= sizeof((rd_store_delivery *)0)->file ||
            strlen(destinations[i]) >= sizeof((rd_store_delivery *)0)->destination)
            return rd_error_set(err, RD_E_TOO_LARGE, "outbox: file or destination name too long");
    /* One transaction: the review item, the study version's outcome and the deliveries
     * appear together or not at all, so a crash can neither deliver an SR that has no
     * review item nor leave a draft that is never delivered. */
    if ((rc = exec(s, "BEGIN IMMEDIATE", err)) != RD_OK)
        return rc;
    if ((rc = prepare(s,
                      "INSERT INTO reviews(study_uid, content_version, state, sr_path,"
                      " sr_sop_instance_uid, frontal_sop_instance_uid, model_version,"
                      " findings_text, impression_text, findings_json, neighbours_json,"
                      " created_at, updated_at) VALUES(?1,?2,'draft',?3,?4,?5,?6,?7,?8,?9,?10,"
                      "?11,?11) ON CONFLICT(study_uid, content_version) DO NOTHING",
                      &st, err)) != RD_OK)
        goto out;
    sqlite3_bind_text(st, 1, r->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->content_version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->sr_path, -1, SQLITE_STATIC);
    bind_opt_text(st, 4, r->sr_sop_instance_uid);
    bind_opt_text(st, 5, r->frontal_sop_instance_uid);
    bind_opt_text(st, 6, r->model_version);
    bind_opt_text(st, 7, r->findings_text);
    bind_opt_text(st, 8, r->impression_text);
    bind_opt_text(st, 9, r->findings_json);
    bind_opt_text(st, 10, r->neighbours_json);
    sqlite3_bind_double(st, 11, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_error(s, err, "adding a review item");
        goto out;
    }
    is_new = sqlite3_changes(s->db) == 1;
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = prepare(s, "SELECT id FROM reviews WHERE study_uid=? AND content_version=?", &st,
                      err)) != RD_OK)
        goto out;
    sqlite3_bind_text(st, 1, r->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->content_version, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = db_error(s, err, "adding a review item");
        goto out;
    }
    id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (!is_new)
        goto commit; /* drafted before: nothing more to record or send */
    if ((rc = prepare(s,
                      "INSERT INTO study_versions(study_uid, content_version, outcome,"
                      " review_id, created_at) VALUES(?1, ?2, 'drafted', ?3, ?4)"
                      " ON CONFLICT(study_uid, content_version) DO UPDATE SET"
                      " outcome='drafted', reason=NULL, review_id=excluded.review_id",
                      &st, err)) != RD_OK)
        goto out;
    sqlite3_bind_text(st, 1, r->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->content_version, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, id);
    sqlite3_bind_double(st, 4, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_error(s, err, "recording a drafted study");
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    for (int i = 0; i < n_destinations; i++) {
        if ((rc = prepare(s,
                          "INSERT INTO outbox(file, destination, state, attempts, next_attempt,"
                          " created_at, updated_at) VALUES(?1, ?2, 'pending', 0, ?3, ?3, ?3)"
                          " ON CONFLICT(file, destination) DO NOTHING",
                          &st, err)) != RD_OK)
            goto out;
        sqlite3_bind_text(st, 1, r->sr_path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, destinations[i], -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, now);
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = db_error(s, err, "queueing a delivery");
            goto out;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
commit:
    rc = exec(s, "COMMIT", err);
out:
    sqlite3_finalize(st);
    if (rc != RD_OK) {
        rollback(s);
        return rc;
    }
    if (review_id)
        *review_id = id;
    if (added)
        *added = is_new;
    return RD_OK;
}

rd_status rd_store_count_reviews(rd_store *s, const char *study_uid, const char *state, long *count,
                                 rd_error *err)
{
    if (study_uid && state)
        return count_query(s, "SELECT COUNT(*) FROM reviews WHERE study_uid=? AND state=?",
                           study_uid, state, 0, 0, count, err);
    if (study_uid)
        return count_query(s, "SELECT COUNT(*) FROM reviews WHERE study_uid=?", study_uid, NULL, 0,
                           0, count, err);
    if (state)
        return count_query(s, "SELECT COUNT(*) FROM reviews WHERE state=?", state, NULL, 0, 0,
                           count, err);
    return count_query(s, "SELECT COUNT(*) FROM reviews", NULL, NULL, 0, 0, count, err);
}
