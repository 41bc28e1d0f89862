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
static void remove_temps(const char *dir, int depth)
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
    char path[RD__STORE_PATH_MAX + 16];
    rd_status st;
    if ((st = rd__exec(s, "recovering interrupted work",
                       "BEGIN IMMEDIATE;"
                       "UPDATE jobs SET state='queued' WHERE state='running';"
                       "UPDATE outbox SET state='pending' WHERE state='sending';"
                       "COMMIT;",
                       err)) != RD_OK) {
        rd__rollback(s);
        return st;
    }
    snprintf(path, sizeof path, "%s/store", s->dir);
    remove_temps(path, 0);
    snprintf(path, sizeof path, "%s/spool", s->dir);
    remove_temps(path, 3); /* flat: no subfolders */
    return RD_OK;
}
