/* radraft — the file store: where a received instance's file lives under the data directory
 * (store/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm, from sanitized UIDs only), how it is
 * written atomically and durably (a temporary file in the same directory, fsync, rename,
 * fsync of the directory), and the recovery at start-up that removes what an interrupted
 * write left and requeues the work a crash interrupted. The index rows are
 * store_instances.c's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "radraft/log.h"
#include "radraft/store.h"
#include "radraft/uid.h"
#include "store/store_int.h"

/* How old a temporary file in a folder that several nodes share must be to be a left-over
 * of an interrupted write rather than one being written. */
#define TEMP_GRACE_S 600

int rd_store_uid_valid(const char *uid)
{
    return rd_uid_valid(uid);
}

rd_status rd__file_place_of(rd_store *s, const rd_store_instance *inst, rd__file_place *out,
                            rd_error *err)
{
    /* Validated UIDs are at most 64 characters and the data directory leaves room for
     * them (rd_store_open), so these never truncate; the check is a defence only. */
    if ((size_t)snprintf(out->rel, sizeof out->rel, "store/%s/%s/%s.dcm", inst->study_uid,
                         inst->series_uid, inst->sop_instance_uid) >= sizeof out->rel ||
        (size_t)snprintf(out->dir, sizeof out->dir, "%s/store/%s/%s", s->dir, inst->study_uid,
                         inst->series_uid) >= sizeof out->dir ||
        (size_t)snprintf(out->abs, sizeof out->abs, "%s/%s", s->dir, out->rel) >= sizeof out->abs)
        return rd_error_set(err, RD_E_INVALID, "%s: path of instance %.80s too long", s->dir,
                            inst->sop_instance_uid);
    return RD_OK;
}

rd_status rd__file_fsync_dir(const char *dir, rd_error *err)
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

rd_status rd__file_write_temp(rd_store *s, const char *dir, const char *sop, const void *data,
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

rd_status rd__file_fsync_path(const char *path, rd_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return rd_error_set(err, RD_E_IO, "%s: fsync: %s", path, strerror(e));
    }
    close(fd);
    return RD_OK;
}

rd_status rd__file_rename(rd_store *s, const char *tmp, const char *abs, rd_error *err)
{
    if (s->fault == RD_STORE_FAULT_RENAME) {
        s->fault = RD_STORE_FAULT_NONE;
        errno = EIO;
        return rd_error_set(err, RD_E_IO, "%s: rename: %s", abs, strerror(errno));
    }
    if (rename(tmp, abs) != 0)
        return rd_error_set(err, RD_E_IO, "%s: rename: %s", abs, strerror(errno));
    return RD_OK;
}

/* Removes temporary files (".tmp-*") that a crash left under store/, three levels deep. */
/* Removes the temporaries under `dir` (to `depth` levels) last changed before
 * `older_than` (seconds since the epoch; 0: all). */
static void remove_temps(const char *dir, int depth, double older_than)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[RD__STORE_PATH_MAX];
        struct stat sb;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        if (lstat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode) && depth < 3)
            remove_temps(path, depth + 1, older_than);
        else if (S_ISREG(sb.st_mode) && strncmp(e->d_name, ".tmp-", 5) == 0 &&
                 (older_than <= 0 || (double)sb.st_mtime < older_than)) {
            rd_log_info("store: removing the temporary file %s left by an interrupted write", path);
            unlink(path);
        }
    }
    closedir(d);
}

/* Runs the two statements that put jobs and deliveries back in their queues (?1 this node's
 * name, ?2 the oldest heartbeat still alive); *n gets how many. Inside the caller's
 * transaction. */
static rd_status requeue(rd_store *s, const char *jobs_sql, const char *outbox_sql, double cutoff,
                         int *n, rd_error *err)
{
    int a = 0, b = 0;
    rd_status st = rd__run(s, "requeueing the jobs of stopped nodes", jobs_sql,
                           RD__ARGS(RD__TEXT(s->opts.node), RD__REAL(cutoff)), &a, err);
    if (st == RD_OK)
        st = rd__run(s, "requeueing the deliveries of stopped nodes", outbox_sql,
                     RD__ARGS(RD__TEXT(s->opts.node), RD__REAL(cutoff)), &b, err);
    *n = a + b;
    return st;
}

/* Records this node's heartbeat (a named node only). Inside the caller's transaction. */
static rd_status beat(rd_store *s, double now, rd_error *err)
{
    if (!s->opts.node[0])
        return RD_OK;
    return rd__run(s, "recording the node's heartbeat",
                   "INSERT INTO nodes(name, started_at, heartbeat_at) VALUES(?1, ?2, ?2)"
                   " ON CONFLICT(name) DO UPDATE SET heartbeat_at=excluded.heartbeat_at",
                   RD__ARGS(RD__TEXT(s->opts.node), RD__REAL(now)), NULL, err);
}

rd_status rd_store_recover(rd_store *s, rd_error *err)
{
    char path[RD__STORE_PATH_MAX + 16];
    double now = rd_store_now();
    int n = 0;
    rd_status st;
    if ((st = rd__begin(s, err)) != RD_OK)
        return st;
    if ((st = requeue(s,
                      "UPDATE jobs SET state='queued', node=NULL WHERE state='running' AND"
                      " (node IS NULL OR node=?1 OR node IN"
                      " (SELECT name FROM nodes WHERE heartbeat_at < ?2))",
                      "UPDATE outbox SET state='pending', node=NULL WHERE state='sending' AND"
                      " (node IS NULL OR node=?1 OR node IN"
                      " (SELECT name FROM nodes WHERE heartbeat_at < ?2))",
                      now - s->opts.node_timeout_seconds, &n, err)) != RD_OK ||
        (st = beat(s, now, err)) != RD_OK ||
        (st = rd__run(s, "recording the node's start",
                      "UPDATE nodes SET started_at=?2 WHERE name=?1",
                      RD__ARGS(RD__TEXT(s->opts.node), RD__REAL(now)), NULL, err)) != RD_OK ||
        (st = rd__commit(s, err)) != RD_OK) {
        rd__rollback(s);
        return st;
    }
    if (n > 0)
        rd_log_info("store: %d interrupted job(s) or deliveries queued again", n);
    if (!s->pg && (st = rd__instances_recover(s, err)) != RD_OK)
        return st;
    if (!s->pg)
        rd_log_info("store: store.sync %s%s", s->opts.sync_filesystem ? "filesystem" : "file",
                    !s->opts.sync_auto        ? ""
                    : s->opts.sync_filesystem ? " (auto: the data directory is a mount point)"
                                              : " (auto: the data directory is not a mount point)");
    /* Other nodes write temporaries in a shared folder: only old ones are left-overs. */
    double older_than = s->pg ? now - TEMP_GRACE_S : 0;
    snprintf(path, sizeof path, "%s/store", s->dir);
    remove_temps(path, 0, older_than);
    snprintf(path, sizeof path, "%s/spool", s->dir);
    remove_temps(path, 3, older_than); /* flat: no subfolders */
    return RD_OK;
}

rd_status rd_store_node_heartbeat(rd_store *s, double now, int *requeued, rd_error *err)
{
    int n = 0;
    rd_status st;
    if (requeued)
        *requeued = 0;
    if (!s->opts.node[0])
        return RD_OK;
    if ((st = rd__begin(s, err)) != RD_OK)
        return st;
    if ((st = beat(s, now, err)) != RD_OK ||
        (st = requeue(s,
                      "UPDATE jobs SET state='queued', node=NULL WHERE state='running' AND"
                      " node IN (SELECT name FROM nodes WHERE heartbeat_at < ?2 AND name<>?1)",
                      "UPDATE outbox SET state='pending', node=NULL WHERE state='sending' AND"
                      " node IN (SELECT name FROM nodes WHERE heartbeat_at < ?2 AND name<>?1)",
                      now - s->opts.node_timeout_seconds, &n, err)) != RD_OK ||
        (st = rd__commit(s, err)) != RD_OK) {
        rd__rollback(s);
        return st;
    }
    if (requeued)
        *requeued = n;
    return RD_OK;
}
