#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
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

rd_status rd_mkdirs(const char *path, rd_error *err)
{
    char buf[4096];
    size_t n = rd_strlcpy(buf, path, sizeof buf);
    if (n >= sizeof buf)
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return rd_error_set(err, RD_E_IO, "%s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return rd_error_set(err, RD_E_IO, "%s: %s", buf, strerror(errno));
    return RD_OK;
}
