/* radraft — instances and studies: storing a received instance (rd_store_put: duplicate
 * detection by content, the file written through store_files.c, its row and its study's
 * row committed together), finding stored instances again, and what became of each content
 * version of a study (drafted or skipped). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syncfs */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "radraft/log.h"
#include "radraft/store.h"
#include "store/store_int.h"
#include "base/util.h"

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

/* The row of a stored instance, as rd_store_put compares an arriving one with it. */
typedef struct existing {
    int found;
    char sha[RD_SHA256_HEX_SIZE]; /* "" until a duplicate needed it: hashing is done lazily */
    char path[RD__STORE_PATH_MAX];
    long long size;
    long long offset;
} existing;

static rd_status lookup(rd_store *s, const char *sop, existing *ex, rd_error *err)
{
    rd__stmt q;
    int row;
    rd_status rc = rd__stmt_row(&q, s, "looking up an instance",
                                "SELECT sha256, path, size, dataset_offset FROM instances"
                                " WHERE sop_instance_uid=?1",
                                RD__ARGS(RD__TEXT(sop)), &row, err);
    memset(ex, 0, sizeof *ex);
    if (rc == RD_OK && row) {
        ex->found = 1;
        rd_strlcpy(ex->sha, rd__or_empty(rd__col_text(&q, 0)), sizeof ex->sha);
        rd_strlcpy(ex->path, rd__or_empty(rd__col_text(&q, 1)), sizeof ex->path);
        ex->size = rd__col_int64(&q, 2);
        ex->offset = rd__col_int64(&q, 3);
    }
    rd__stmt_close(&q);
    return rc;
}

/* 1 if the stored file of a row is present with the size recorded. */
static int file_present(rd_store *s, const existing *ex)
{
    char abs[2 * RD__STORE_PATH_MAX];
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
    char abs[2 * RD__STORE_PATH_MAX];
    struct stat sb;
    void *map;
    int fd;
    if (ex->sha[0])
        return 1;
    snprintf(abs, sizeof abs, "%s/%s", s->dir, ex->path);
    if (ex->size <= 0 || ex->offset < 0 || ex->offset > ex->size)
        return 0;
    /* Mapped, not read into memory: a stored instance may be as large as 2 GiB. */
    if ((fd = open(abs, O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    if (fstat(fd, &sb) != 0 || sb.st_size != ex->size) {
        close(fd);
        return 0;
    }
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return 0;
    rd_sha256_hex((const char *)map + ex->offset, (size_t)(ex->size - ex->offset), ex->sha);
    munmap(map, (size_t)sb.st_size);
    /* Only a cache: a failure costs a rehash later. */
    (void)rd__run(s, "caching an instance's hash",
                  "UPDATE instances SET sha256=?1 WHERE sop_instance_uid=?2",
                  RD__ARGS(RD__TEXT(ex->sha), RD__TEXT(sop)), NULL, NULL);
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

/* Writes (or with `replace` rewrites) an instance's row and marks its study as having
 * received something, inside the caller's transaction. */
static rd_status write_row(rd_store *s, const rd_store_instance *inst, const char *rel, size_t len,
                           size_t offset, const char *sha, double now, int replace, rd_error *err)
{
    const char *sql =
        replace ? "UPDATE instances SET study_uid=?1, series_uid=?2, sop_class_uid=?4,"
                  " transfer_syntax_uid=?5, modality=?6, calling_ae=?7, path=?8, size=?9,"
                  " sha256=?10, received_at=?11, dataset_offset=?12 WHERE sop_instance_uid=?3"
                : "INSERT INTO instances(study_uid, series_uid, sop_instance_uid,"
                  " sop_class_uid, transfer_syntax_uid, modality, calling_ae, path, size,"
                  " sha256, received_at, dataset_offset)"
                  " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)";
    rd_status rc = rd__run(
        s, "writing an instance row", sql,
        RD__ARGS(RD__TEXT(inst->study_uid), RD__TEXT(inst->series_uid),
                 RD__TEXT(inst->sop_instance_uid), RD__TEXT(rd__or_empty(inst->sop_class_uid)),
                 RD__TEXT(rd__or_empty(inst->transfer_syntax_uid)),
                 RD__TEXT(rd__or_empty(inst->modality)), RD__TEXT(rd__or_empty(inst->calling_ae)),
                 RD__TEXT(rel), RD__INT(len), RD__TEXT(sha && sha[0] ? sha : NULL), RD__REAL(now),
                 RD__INT(offset)),
        NULL, err);
    if (rc != RD_OK)
        return rc;
    return rd__run(s, "updating a study row",
                   "INSERT INTO studies(study_uid, first_received, last_received, dirty)"
                   " VALUES(?1, ?2, ?2, 1) ON CONFLICT(study_uid) DO UPDATE SET"
                   " last_received=excluded.last_received, dirty=1",
                   RD__ARGS(RD__TEXT(inst->study_uid), RD__REAL(now)), NULL, err);
}

static void warn_duplicate(const rd_store_instance *inst, const char *what)
{
    rd_log_warn("store: SOP instance %s received again with different content (from %s); %s",
                inst->sop_instance_uid, inst->calling_ae ? inst->calling_ae : "?", what);
}

#define KEEPING_FIRST "keeping the first (store.duplicate_policy keep-first)"

/* One instance on its way into the index: what put() knows before the write lock, and what
 * the locked part decides. */
typedef struct put_req {
    const rd_store_instance *inst;
    const void *data;
    size_t len, hash_offset;
    double now;
    rd__file_place f;
    char tmp[2 * RD__STORE_PATH_MAX + 128];
    char sha[RD_SHA256_HEX_SIZE];
    existing ex;
    rd_store_put_result res;
    int renamed, have_tmp;
    int dir_synced;    /* its folder was fsynced after the rename (by a group's leader) */
    int data_unsynced; /* a spool file not yet fsynced: the group's syncfs does it */
    /* Group commit (rd_store_group): the outcome the leader leaves, and its next. */
    rd_status st;
    rd_error err;
    int done;
    struct put_req *next;
} put_req;

/* The part of a put under the write lock, inside the caller's transaction: looks again
 * (another association may have stored it meanwhile), then renames the file into place and
 * writes its row, or decides it is a duplicate. */
static rd_status put_locked(rd_store *s, put_req *r, rd_error *err)
{
    const rd_store_instance *inst = r->inst;
    rd_status st;
    if ((st = lookup(s, inst->sop_instance_uid, &r->ex, err)) != RD_OK)
        return st;
    if (r->ex.found && !r->sha[0])
        rd_sha256_hex((const char *)r->data + r->hash_offset, r->len - r->hash_offset, r->sha);
    if (same_content(s, inst->sop_instance_uid, &r->ex, r->sha)) {
        r->res = RD_STORE_SAME;
        return RD_OK;
    }
    if (other_content(s, inst->sop_instance_uid, &r->ex, r->sha)) {
        if (s->opts.duplicate_policy == RD_STORE_DUP_KEEP_FIRST) {
            warn_duplicate(inst, KEEPING_FIRST);
            r->res = RD_STORE_KEPT_FIRST;
            return RD_OK;
        }
        warn_duplicate(inst, "replacing it (store.duplicate_policy replace)");
        r->res = RD_STORE_REPLACED;
    }
    if ((st = rd__file_rename(s, r->tmp, r->f.abs, err)) != RD_OK)
        return st;
    r->have_tmp = 0;
    r->renamed = 1;
    if ((st = write_row(s, inst, r->f.rel, r->len, r->hash_offset, r->sha, r->now, r->ex.found,
                        err)) != RD_OK)
        return st;
    if (r->ex.found && strcmp(r->ex.path, r->f.rel) != 0) {
        /* A replacement filed under another study or series: the old file goes. */
        char old[2 * RD__STORE_PATH_MAX];
        snprintf(old, sizeof old, "%s/%s", s->dir, r->ex.path);
        unlink(old);
    }
    return RD_OK;
}

/* A put whose row did not commit: a new file renamed into place is removed, so that there
 * is never a file without its row. (A replaced file cannot be restored; the row keeps the
 * old hash, so the next resend of either version is stored again rather than taken for a
 * duplicate.) */
static void put_undo(put_req *r)
{
    if (r->renamed && !r->ex.found)
        unlink(r->f.abs);
    r->renamed = 0;
}

/* ---- group commit ---- */

struct rd_store_group {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    put_req *queue, **tail; /* waiting for the next transaction */
    int leading;            /* a thread is running a transaction for a group */
    long transactions, instances;
    /* store.sync filesystem: the number of this group's next transaction in unsynced_puts
     * (the process id in the high bits, so that processes never share one), and the last
     * whose syncfs succeeded (0: none), whose rows the next transaction takes off the
     * list. The leaders' own: one leads at a time. */
    long long next_grp, synced_grp;
};

rd_status rd_store_group_create(rd_store_group **out, rd_error *err)
{
    rd_store_group *g = calloc(1, sizeof *g);
    if (!g)
        return rd_error_set(err, RD_E_NOMEM, "out of memory creating the commit group");
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        return rd_error_set(err, RD_E_INTERNAL, "cannot create a mutex");
    }
    if (pthread_cond_init(&g->cv, NULL) != 0) {
        pthread_mutex_destroy(&g->mu);
        free(g);
        return rd_error_set(err, RD_E_INTERNAL, "cannot create a condition variable");
    }
    g->tail = &g->queue;
    g->next_grp = ((long long)getpid() << 32) + 1;
    *out = g;
    return RD_OK;
}

void rd_store_group_free(rd_store_group *g)
{
    if (!g)
        return;
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void rd_store_group_stats(rd_store_group *g, long *transactions, long *instances)
{
    pthread_mutex_lock(&g->mu);
    *transactions = g->transactions;
    *instances = g->instances;
    pthread_mutex_unlock(&g->mu);
}

/* fsync of the folder `dir`, where a file was just renamed. */
static rd_status sync_dir(rd_store *s, const char *dir, rd_error *err)
{
    if (s->fault == RD_STORE_FAULT_DIR_FSYNC) {
        s->fault = RD_STORE_FAULT_NONE;
        return rd_error_set(err, RD_E_IO, "%s: fsync: %s (injected)", dir, strerror(EIO));
    }
    return rd__file_fsync_dir(dir, err);
}

/* One syncfs of the file system of the data directory: every file written, renamed or
 * changed there (the WAL too) is on disk when it returns. Honours the fsync faults. */
static rd_status sync_filesystem(rd_store *s, rd_error *err)
{
    int fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return rd_error_set(err, RD_E_IO, "%s: %s", s->dir, strerror(errno));
    int fault = s->fault == RD_STORE_FAULT_FSYNC || s->fault == RD_STORE_FAULT_DIR_FSYNC;
    if (fault || syncfs(fd) != 0) {
        int e = fault ? EIO : errno;
        if (fault)
            s->fault = RD_STORE_FAULT_NONE;
        close(fd);
        return rd_error_set(err, RD_E_IO, "%s: syncfs: %s", s->dir, strerror(e));
    }
    close(fd);
    return RD_OK;
}

/* Makes the renames of a group's new files durable before its commit: each folder they were
 * placed in is fsynced once, however many of the group went there (concurrent senders of one
 * series share a folder). Spool files left unsynced for a syncfs after the commit that
 * could not be had (rd__commit_sync failed) get one syncfs before it instead. A failure
 * fails the whole group. */
static rd_status sync_group_dirs(rd_store *s, put_req *batch, rd_error *err)
{
    int need_fs = 0;
    for (put_req *r = batch; r; r = r->next)
        need_fs |= r->st == RD_OK && r->renamed && r->data_unsynced;
    if (need_fs) {
        rd_status st = sync_filesystem(s, err);
        for (put_req *r = batch; st == RD_OK && r; r = r->next)
            if (r->st == RD_OK && r->renamed)
                r->dir_synced = 1;
        return st;
    }
    for (put_req *r = batch; r; r = r->next) {
        int seen = 0;
        rd_status st;
        if (r->st != RD_OK || !r->renamed)
            continue;
        for (put_req *o = batch; o != r && !seen; o = o->next)
            seen = o->dir_synced && strcmp(o->f.dir, r->f.dir) == 0;
        if (!seen && (st = sync_dir(s, r->f.dir, err)) != RD_OK)
            return st;
        r->dir_synced = 1;
    }
    return RD_OK;
}

/* Marks every request of the batch still OK as failed with `st`/`err` and undoes its file. */
static void fail_batch(put_req *batch, rd_status st, const rd_error *err)
{
    for (put_req *r = batch; r; r = r->next) {
        if (r->st == RD_OK) {
            r->st = st;
            r->err = *err;
        }
        put_undo(r);
    }
}

/* A group whose syncfs failed after its commit: its new rows are taken out again (in a
 * transaction of their own, synced as any other) and their files removed, so that nothing
 * that may not be on disk stays indexed. Replaced rows stay listed in unsynced_puts for
 * the next start to check. */
static void unindex_unsynced(rd_store *s, put_req *batch)
{
    rd_error e2;
    rd_status st = rd__begin(s, &e2);
    for (put_req *r = batch; st == RD_OK && r; r = r->next)
        if (r->st == RD_OK && r->renamed && !r->ex.found)
            st = rd__run(s, "taking out an instance whose sync failed",
                         "DELETE FROM instances WHERE sop_instance_uid=?1",
                         RD__ARGS(RD__TEXT(r->inst->sop_instance_uid)), NULL, &e2);
    if (st == RD_OK)
        st = rd__commit(s, &e2);
    if (st != RD_OK) {
        rd__rollback(s);
        rd_log_error("store: the rows of a group whose syncfs failed stay until the next "
                     "start checks their files: %s",
                     rd_error_message(&e2));
    }
}

/* The leader's transaction for the requests of one group, on its own connection: each
 * request in a savepoint of its own (one that fails is undone alone), then one commit for
 * all. With store.sync file each new file was fsynced before; the folders they went to are
 * fsynced once each, then the commit syncs the WAL. With store.sync filesystem nothing is
 * synced before: the commit does not sync the WAL either, and one syncfs after it makes the
 * group's files, renames and rows durable together before any of them is answered. Until
 * it returns the group's rows are listed in unsynced_puts (rd__instances_recover). */
static void run_group(rd_store *s, put_req *batch)
{
    rd_store_group *g = s->opts.group;
    long long grp = g->next_grp++;
    int one_sync = s->opts.sync_filesystem && !s->pg, renamed = 0;
    rd_error err;
    rd_status st = RD_OK;
    /* Where SQLite's sync cannot be left out, the group is synced as with store.sync file. */
    if (one_sync && rd__commit_sync(s, 0, &err) != RD_OK)
        one_sync = 0;
    if ((st = rd__begin(s, &err)) == RD_OK && one_sync && g->synced_grp)
        st = rd__run(s, "taking synced instances off the list",
                     "DELETE FROM unsynced_puts WHERE grp=?1", RD__ARGS(RD__INT(g->synced_grp)),
                     NULL, &err);
    for (put_req *r = batch; r; r = r->next) {
        if (st != RD_OK) {
            r->st = st;
            r->err = err;
            continue;
        }
        if ((r->st = rd__exec(s, "a savepoint", "SAVEPOINT put", &r->err)) == RD_OK &&
            (r->st = put_locked(s, r, &r->err)) == RD_OK && one_sync && r->renamed)
            r->st =
                rd__run(s, "listing an instance until its sync",
                        "INSERT INTO unsynced_puts(sop_instance_uid, grp) VALUES(?1, ?2)",
                        RD__ARGS(RD__TEXT(r->inst->sop_instance_uid), RD__INT(grp)), NULL, &r->err);
        if (r->st == RD_OK)
            r->st = rd__exec(s, "releasing a savepoint", "RELEASE put", &r->err);
        if (r->st != RD_OK) {
            rd_error ignored;
            (void)rd__exec(s, "undoing an instance", "ROLLBACK TO put; RELEASE put", &ignored);
            put_undo(r);
        }
        renamed |= r->st == RD_OK && r->renamed;
    }
    if (st == RD_OK && !one_sync)
        st = sync_group_dirs(s, batch, &err);
    if (st == RD_OK)
        st = rd__commit_as_set(s, &err);
    if (one_sync) {
        rd_error ignored;
        /* On failure the connection stays marked: its next commit sets FULL first. */
        (void)rd__commit_sync(s, 1, &ignored);
    }
    if (st != RD_OK) {
        rd__rollback(s);
        fail_batch(batch, st, &err);
        return;
    }
    if (one_sync && renamed) {
        if (s->fault == RD_STORE_FAULT_EXIT_BEFORE_SYNCFS)
            _exit(RD__FAULT_EXIT);
        if ((st = sync_filesystem(s, &err)) != RD_OK) {
            unindex_unsynced(s, batch);
            fail_batch(batch, st, &err);
            return;
        }
        g->synced_grp = grp;
    }
    for (put_req *r = batch; r; r = r->next) {
        if (r->st != RD_OK)
            continue;
        r->dir_synced |= one_sync && r->renamed; /* by the syncfs */
        r->renamed = 0; /* its row committed: the file stays whatever follows */
    }
}

/* With store.sync filesystem a row is visible from its group's commit, a moment before
 * that group's syncfs returns: a resend answered from it (the same content, or a different
 * one kept first) waits until the transaction that may have written it is over. */
static void group_wait_for_leader(rd_store_group *g)
{
    pthread_mutex_lock(&g->mu);
    long seen = g->transactions;
    while (g->leading && g->transactions == seen)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/* Hands `r` to the group's next transaction and waits for its outcome. The first thread to
 * find no transaction running leads one for every request queued by then, on its own
 * connection; the others wait, and one of them leads the next. */
static rd_status group_put(rd_store *s, put_req *r, rd_error *err)
{
    rd_store_group *g = s->opts.group;
    pthread_mutex_lock(&g->mu);
    r->next = NULL;
    *g->tail = r;
    g->tail = &r->next;
    while (!r->done) {
        if (g->leading) {
            pthread_cond_wait(&g->cv, &g->mu);
            continue;
        }
        put_req *batch = g->queue;
        long n = 0;
        g->queue = NULL;
        g->tail = &g->queue;
        g->leading = 1;
        pthread_mutex_unlock(&g->mu);
        run_group(s, batch);
        pthread_mutex_lock(&g->mu);
        for (put_req *b = batch; b; b = b->next) {
            b->done = 1;
            n++;
        }
        g->leading = 0;
        g->transactions++;
        g->instances += n;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    if (r->st != RD_OK)
        *err = r->err;
    return r->st;
}

/* rd_store_put and rd_store_put_file: `data` holds the file's bytes; with `spool` (the file
 * they are in, mapped by the caller) that file is fsynced and renamed into place instead of
 * writing a new one, and it is gone on return whatever happens. */
static rd_status put(rd_store *s, const rd_store_instance *inst, const void *data, size_t len,
                     const char *spool, size_t hash_offset, rd_store_put_result *result,
                     rd_error *err)
{
    put_req r;
    rd_status st = RD_OK;

    memset(&r, 0, sizeof r);
    r.inst = inst;
    r.data = data;
    r.len = len;
    r.hash_offset = hash_offset;
    r.now = rd_store_now();
    r.res = RD_STORE_NEW;
    r.have_tmp = spool != NULL;
    if (spool && rd_strlcpy(r.tmp, spool, sizeof r.tmp) >= sizeof r.tmp) {
        unlink(spool);
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", spool);
    }
    if (!rd_store_uid_valid(inst->study_uid) || !rd_store_uid_valid(inst->series_uid) ||
        !rd_store_uid_valid(inst->sop_instance_uid)) {
        st = rd_error_set(err, RD_E_INVALID,
                          "refusing an instance with an unsafe or invalid UID (study '%.80s', "
                          "series '%.80s', SOP instance '%.80s')",
                          rd__or_empty(inst->study_uid), rd__or_empty(inst->series_uid),
                          rd__or_empty(inst->sop_instance_uid));
        goto done;
    }
    if (hash_offset > len) {
        st = rd_error_set(err, RD_E_INVALID, "hash offset %zu beyond %zu bytes", hash_offset, len);
        goto done;
    }
    if ((st = rd__file_place_of(s, inst, &r.f, err)) != RD_OK)
        goto done;

    /* Fast path without the write lock: a resend of what is already stored. */
    if ((st = lookup(s, inst->sop_instance_uid, &r.ex, err)) != RD_OK)
        goto done;
    /* The new data's hash is needed only when the SOP instance is already stored. */
    if (r.ex.found)
        rd_sha256_hex((const char *)data + hash_offset, len - hash_offset, r.sha);
    if (same_content(s, inst->sop_instance_uid, &r.ex, r.sha))
        r.res = RD_STORE_SAME;
    else if (s->opts.duplicate_policy == RD_STORE_DUP_KEEP_FIRST &&
             other_content(s, inst->sop_instance_uid, &r.ex, r.sha)) {
        warn_duplicate(inst, KEEPING_FIRST);
        r.res = RD_STORE_KEPT_FIRST;
    }
    if (r.res != RD_STORE_NEW) {
        if (s->opts.group && s->opts.sync_filesystem && !s->pg)
            group_wait_for_leader(s->opts.group);
        goto done;
    }

    /* The slow parts (writing and fsyncing the data) happen before the write lock. */
    if ((st = rd_mkdirs(r.f.dir, err)) != RD_OK)
        goto done;
    if (spool && s->opts.group && s->opts.sync_filesystem && !s->pg)
        r.data_unsynced = 1; /* the group's syncfs */
    else if (spool)
        st = rd__file_fsync_path(r.tmp, err);
    else if ((st = rd__file_write_temp(s, r.f.dir, inst->sop_instance_uid, data, len, r.tmp,
                                       sizeof r.tmp, err)) == RD_OK)
        r.have_tmp = 1;
    if (st != RD_OK)
        goto done;

    if (s->opts.group && !s->pg) {
        /* Concurrent associations share one transaction and one sync of the WAL. */
        if ((st = group_put(s, &r, err)) != RD_OK)
            goto done;
    } else {
        if ((st = rd__begin(s, err)) != RD_OK || (st = put_locked(s, &r, err)) != RD_OK)
            goto out;
        if (s->fault == RD_STORE_FAULT_COMMIT) {
            s->fault = RD_STORE_FAULT_NONE;
            st = rd_error_set(err, RD_E_DB, "%s: commit: disk I/O error (injected)", s->db_name);
            goto out;
        }
        if ((st = rd__commit(s, err)) != RD_OK)
            goto out;
        r.renamed = 0;
    }
    /* The rename is durable only once its directory is: fsync it before answering (a
     * group's leader did it already for the group). */
    if (r.res != RD_STORE_SAME && r.res != RD_STORE_KEPT_FIRST && !r.dir_synced)
        st = sync_dir(s, r.f.dir, err);
out:
    if (st != RD_OK) {
        rd__rollback(s);
        put_undo(&r);
    }
done:
    if (r.have_tmp)
        unlink(r.tmp);
    if (st == RD_OK && result)
        *result = r.res;
    return st;
}

rd_status rd_store_put(rd_store *s, const rd_store_instance *inst, const void *data, size_t len,
                       size_t hash_offset, rd_store_put_result *result, rd_error *err)
{
    return put(s, inst, data, len, NULL, hash_offset, result, err);
}

rd_status rd_store_spool_create(rd_store *s, char *path, size_t size, int *fd, rd_error *err)
{
    char dir[RD__STORE_PATH_MAX];
    rd_status st;
    if ((size_t)snprintf(dir, sizeof dir, "%s/spool", s->dir) >= sizeof dir)
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", s->dir);
    if ((st = rd_mkdirs(dir, err)) != RD_OK)
        return st;
    if ((size_t)snprintf(path, size, "%s/.tmp-XXXXXX", dir) >= size)
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", dir);
    if ((*fd = mkstemp(path)) < 0)
        return rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
    (void)fcntl(*fd, F_SETFD, FD_CLOEXEC);
    return RD_OK;
}

rd_status rd_store_put_file(rd_store *s, const rd_store_instance *inst, const char *spool,
                            size_t hash_offset, rd_store_put_result *result, rd_error *err)
{
    struct stat sb;
    void *map = NULL;
    rd_status st;
    int fd = open(spool, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size <= 0) {
        st = rd_error_set(err, RD_E_IO, "%s: %s", spool, fd < 0 ? strerror(errno) : "empty");
        if (fd >= 0)
            close(fd);
        unlink(spool);
        return st;
    }
    /* Mapped, not read: its pages are read from the file only when a duplicate needs the
     * hash, and they are the page cache's, not the heap's. */
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        st = rd_error_set(err, RD_E_IO, "%s: mmap: %s", spool, strerror(errno));
        unlink(spool);
        return st;
    }
    st = put(s, inst, map, (size_t)sb.st_size, spool, hash_offset, result, err);
    munmap(map, (size_t)sb.st_size);
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

rd_status rd_store_count_instances(rd_store *s, const char *study_uid, long *count, rd_error *err)
{
    if (study_uid)
        return rd__count(s, "SELECT COUNT(*) FROM instances WHERE study_uid=?1",
                         RD__ARGS(RD__TEXT(study_uid)), count, err);
    return rd__count(s, "SELECT COUNT(*) FROM instances", RD__NO_ARGS, count, err);
}

/* Appends "<data dir>/<rel>" to a growing list of paths. */
static rd_status append_path(rd_store *s, const char *rel, char ***list, int *count, int *cap,
                             rd_error *err)
{
    size_t len = strlen(s->dir) + 1 + strlen(rel) + 1;
    if (*count == *cap) {
        int ncap = *cap ? *cap * 2 : 8;
        char **nl = realloc(*list, (size_t)ncap * sizeof *nl);
        if (!nl)
            return rd_error_set(err, RD_E_NOMEM, "out of memory listing a study");
        *list = nl;
        *cap = ncap;
    }
    if (!((*list)[*count] = malloc(len)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory listing a study");
    snprintf((*list)[*count], len, "%s/%s", s->dir, rel);
    (*count)++;
    return RD_OK;
}

rd_status rd_store_study_files(rd_store *s, const char *study_uid, char ***paths, int *n,
                               rd_error *err)
{
    rd__stmt q;
    char **list = NULL;
    int count = 0, cap = 0, row;
    rd_status rc;
    *paths = NULL;
    *n = 0;
    rc = rd__stmt_open(&q, s, "listing a study's instances",
                       "SELECT path FROM instances WHERE study_uid=?1 ORDER BY series_uid,"
                       " sop_instance_uid",
                       RD__ARGS(RD__TEXT(study_uid)), err);
    while (rc == RD_OK && (rc = rd__stmt_step(&q, &row, err)) == RD_OK && row) {
        if (count >= RD_STORE_STUDY_MAX_FILES)
            rc = rd_error_set(err, RD_E_TOO_LARGE, "study %.80s has more than %d instances",
                              study_uid, RD_STORE_STUDY_MAX_FILES);
        else
            rc = append_path(s, rd__or_empty(rd__col_text(&q, 0)), &list, &count, &cap, err);
    }
    rd__stmt_close(&q);
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
    rd__stmt q;
    int row;
    rd_status rc =
        rd__stmt_row(&q, s, "looking up a study version",
                     "SELECT outcome, reason, review_id FROM study_versions WHERE"
                     " study_uid=?1 AND content_version=?2",
                     RD__ARGS(RD__TEXT(study_uid), RD__TEXT(content_version)), &row, err);
    memset(out, 0, sizeof *out);
    if (rc == RD_OK && row) {
        const char *outcome = rd__col_text(&q, 0);
        out->found = 1;
        out->drafted = outcome && strcmp(outcome, "drafted") == 0;
        rd_strlcpy(out->reason, rd__or_empty(rd__col_text(&q, 1)), sizeof out->reason);
        out->review_id = rd__col_int64(&q, 2);
    }
    rd__stmt_close(&q);
    return rc;
}

rd_status rd_store_study_skip(rd_store *s, const char *study_uid, const char *content_version,
                              const char *reason, rd_error *err)
{
    return rd__run(s, "recording a skipped study",
                   "INSERT INTO study_versions(study_uid, content_version, outcome, reason,"
                   " created_at) VALUES(?1, ?2, 'skipped', ?3, ?4)"
                   " ON CONFLICT(study_uid, content_version) DO NOTHING",
                   RD__ARGS(RD__TEXT(study_uid), RD__TEXT(content_version),
                            RD__TEXT(rd__or_empty(reason)), RD__REAL(rd_store_now())),
                   NULL, err);
}

rd_status rd_store_count_study_versions(rd_store *s, const char *outcome, long *count,
                                        rd_error *err)
{
    if (outcome)
        return rd__count(s, "SELECT COUNT(*) FROM study_versions WHERE outcome=?1",
                         RD__ARGS(RD__TEXT(outcome)), count, err);
    return rd__count(s, "SELECT COUNT(*) FROM study_versions", RD__NO_ARGS, count, err);
}

/* ---- after a power cut (store.sync filesystem) ---- */

rd_status rd__instances_recover(rd_store *s, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    struct lost_file {
        char sop[RD_STORE_UID_MAX + 1], path[RD__STORE_PATH_MAX];
    } *lost = NULL;
    int n_lost = 0, cap = 0, row = 0, listed = 0;
    rd_status st;
    if ((st = rd__begin(s, err)) != RD_OK)
        return st;
    st = rd__stmt_open(&q, s, "reading the instances not known to be synced",
                       "SELECT u.sop_instance_uid, i.path, i.size FROM unsynced_puts u"
                       " JOIN instances i ON i.sop_instance_uid=u.sop_instance_uid",
                       RD__NO_ARGS, err);
    while (st == RD_OK && (st = rd__stmt_step(&q, &row, err)) == RD_OK && row) {
        existing ex;
        const char *sop = rd__or_empty(rd__col_text(&q, 0));
        memset(&ex, 0, sizeof ex);
        rd_strlcpy(ex.path, rd__or_empty(rd__col_text(&q, 1)), sizeof ex.path);
        ex.size = rd__col_int64(&q, 2);
        listed++;
        if (file_present(s, &ex) || strlen(sop) > RD_STORE_UID_MAX)
            continue;
        if (n_lost == cap) {
            void *more = realloc(lost, (size_t)(cap ? 2 * cap : 16) * sizeof *lost);
            if (!more) {
                st = rd_error_set(err, RD_E_NOMEM, "out of memory checking unsynced instances");
                break;
            }
            lost = more;
            cap = cap ? 2 * cap : 16;
        }
        rd_strlcpy(lost[n_lost].sop, sop, sizeof lost[0].sop);
        rd_strlcpy(lost[n_lost++].path, ex.path, sizeof lost[0].path);
    }
    rd__stmt_close(&q);
    for (int i = 0; st == RD_OK && i < n_lost; i++)
        st = rd__run(s, "removing an instance lost before its sync",
                     "DELETE FROM instances WHERE sop_instance_uid=?1",
                     RD__ARGS(RD__TEXT(lost[i].sop)), NULL, err);
    if (st == RD_OK)
        st = rd__run(s, "emptying the list of unsynced instances", "DELETE FROM unsynced_puts",
                     RD__NO_ARGS, NULL, err);
    if (st == RD_OK)
        st = rd__commit(s, err);
    if (st != RD_OK)
        rd__rollback(s);
    /* Whatever is left of a lost file goes once its row is gone. */
    for (int i = 0; st == RD_OK && i < n_lost; i++) {
        char abs[2 * RD__STORE_PATH_MAX];
        snprintf(abs, sizeof abs, "%s/%s", s->dir, lost[i].path);
        unlink(abs);
    }
    if (st == RD_OK && n_lost > 0)
        rd_log_warn("store: %d of %d instance(s) committed just before a crash were not on disk "
                    "(their senders had no success response): removed, a resend stores them",
                    n_lost, listed);
    free(lost);
    return st;
}
