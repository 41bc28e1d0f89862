#include "base/util.h"
#include "radraft/tempname.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

size_t rd_strlcpy(char *dst, const char *src, size_t size)
{
    size_t len = strlen(src);
    if (size > 0) {
        size_t n = len < size - 1 ? len : size - 1;
        memcpy(dst, src, n);
        dst[n] = '\0';
    }
    return len;
}

rd_status rd_read_file(const char *path, size_t max_bytes, char **out, size_t *len, rd_error *err)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    rd_status st = RD_OK;

    if (!fp)
        return rd_error_set(err, errno == ENOENT ? RD_E_NOT_FOUND : RD_E_IO, "%s: %s", path,
                            strerror(errno));
    for (;;) {
        if (n + 1 >= cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            if (ncap > max_bytes + 2)
                ncap = max_bytes + 2;
            if (ncap <= n + 1) {
                st =
                    rd_error_set(err, RD_E_TOO_LARGE, "%s: larger than %zu bytes", path, max_bytes);
                goto out;
            }
            char *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", path);
                goto out;
            }
            buf = nbuf;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, fp);
        n += got;
        if (n > max_bytes) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "%s: larger than %zu bytes", path, max_bytes);
            goto out;
        }
        if (got == 0) {
            if (ferror(fp))
                st = rd_error_set(err, RD_E_IO, "%s: read error", path);
            break;
        }
    }
out:
    fclose(fp);
    if (st != RD_OK) {
        free(buf);
        return st;
    }
    if (!buf && !(buf = malloc(1)))
        return rd_error_set(err, RD_E_NOMEM, "%s: out of memory", path);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return RD_OK;
}

rd_status rd_write_file_atomic(const char *path, const void *data, size_t len, rd_error *err)
{
    char tmp[4096];
    int fd;
    const char *p = data;
    size_t left = len;

    if (!rd_temp_name(tmp, sizeof tmp, path))
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return rd_error_set(err, RD_E_IO, "%s: %s", tmp, strerror(errno));
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return rd_error_set(err, RD_E_IO, "%s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return rd_error_set(err, RD_E_IO, "%s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(e));
    }
    return RD_OK;
}

/* fsync of the directory that holds `path` (the part before its last '/'), so that a new
 * entry in it survives a power loss. */
static rd_status fsync_parent(char *path, rd_error *err)
{
    char *slash = strrchr(path, '/');
    int fd, rc;
    if (!slash)
        return RD_OK;
    if (slash == path)
        fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    else {
        *slash = '\0';
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        *slash = '/';
    }
    if (fd < 0)
        return rd_error_set(err, RD_E_IO, "%s: the folder above: %s", path, strerror(errno));
    rc = fsync(fd);
    close(fd);
    if (rc != 0)
        return rd_error_set(err, RD_E_IO, "%s: fsync of the folder above: %s", path,
                            strerror(errno));
    return RD_OK;
}

/* Makes one folder, fsynced into the folder above when it is new; one that exists already
 * is fine, anything else there is not (a file by that name would only fail later, when
 * something is written into it). */
static rd_status mkdir_one(char *path, rd_error *err)
{
    struct stat sb;
    if (mkdir(path, 0755) == 0)
        return fsync_parent(path, err);
    if (errno != EEXIST)
        return rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
    if (stat(path, &sb) != 0)
        return rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return rd_error_set(err, RD_E_IO, "%s: exists and is not a folder", path);
    return RD_OK;
}

rd_status rd_mkdirs(const char *path, rd_error *err)
{
    char buf[4096];
    rd_status st;
    size_t n = rd_strlcpy(buf, path, sizeof buf);
    if (n >= sizeof buf)
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", path);
    if (n == 0)
        return rd_error_set(err, RD_E_INVALID, "an empty folder name");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if ((st = mkdir_one(buf, err)) != RD_OK)
            return st;
        *p = '/';
    }
    return mkdir_one(buf, err);
}

rd_status rd_wake_init(rd_wake *w, rd_error *err)
{
    pthread_condattr_t attr;
    int ok;
    memset(w, 0, sizeof *w);
    if (pthread_condattr_init(&attr) != 0)
        return rd_error_set(err, RD_E_INTERNAL, "cannot create a wakeup");
    /* The monotonic clock, so that a change of the wall clock neither stalls nor spins. */
    ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
         pthread_cond_init(&w->cv, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (!ok)
        return rd_error_set(err, RD_E_INTERNAL, "cannot create a wakeup");
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        pthread_cond_destroy(&w->cv);
        return rd_error_set(err, RD_E_INTERNAL, "cannot create a wakeup");
    }
    w->ready = 1;
    return RD_OK;
}

void rd_wake_destroy(rd_wake *w)
{
    if (!w || !w->ready)
        return;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->ready = 0;
}

void rd_wake_post(rd_wake *w)
{
    if (!w || !w->ready)
        return;
    pthread_mutex_lock(&w->mu);
    w->seq++;
    w->pending = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int rd_wake_wait(rd_wake *w, double timeout_s)
{
    struct timespec deadline;
    unsigned long seq;
    int woken = 0;
    if (!(timeout_s > 0))
        timeout_s = 0;
    if (timeout_s > 86400)
        timeout_s = 86400;
    if (!w || !w->ready) {
        struct timespec ts;
        ts.tv_sec = (time_t)timeout_s;
        ts.tv_nsec = (long)((timeout_s - (double)ts.tv_sec) * 1e9);
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)timeout_s;
    deadline.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    seq = w->seq;
    /* A post since the last wait counts; otherwise wait for a new one (the sequence number
     * guards against spurious wakeups) or the deadline. */
    while (!w->pending && w->seq == seq)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) == ETIMEDOUT)
            break;
    if (w->pending || w->seq != seq) {
        woken = 1;
        w->pending = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return woken;
}

int rd_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        unsigned cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

rd_status rd_path_beside_sr(const char *sr_path, const char *suffix, const char *what, char *out,
                            size_t size, rd_error *err)
{
    size_t n = strlen(sr_path);
    if (n >= 4 && strcmp(sr_path + n - 4, ".dcm") == 0)
        n -= 4;
    if (n >= 3 && strncmp(sr_path + n - 3, "-sr", 3) == 0)
        n -= 3;
    if (n > (size_t)INT_MAX ||
        snprintf(out, size, "%.*s%s", (int)n, sr_path, suffix) >= (int)size) {
        if (size)
            out[0] = '\0';
        return rd_error_set(err, RD_E_INVALID, "%s path too long", what);
    }
    return RD_OK;
}
