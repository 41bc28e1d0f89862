/* radraft — temporary file names that carry their writer (see radraft/tempname.h). */
#include "radraft/tempname.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define HOST_MAX 64

/* This machine's name, made safe for a file name; "host" when it has none. */
static void host_name(char *out, size_t size)
{
    char raw[HOST_MAX + 1] = {0};
    size_t i, n = 0;
    if (gethostname(raw, sizeof raw - 1) != 0)
        raw[0] = '\0';
    for (i = 0; raw[i] && n + 1 < size; i++) {
        char c = raw[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        out[n++] = ok ? c : '_';
    }
    out[n] = '\0';
    if (n == 0 && size > 4)
        memcpy(out, "host", 5);
}

int rd_temp_name(char *buf, size_t size, const char *path)
{
    char host[HOST_MAX + 1];
    int n;
    host_name(host, sizeof host);
    n = snprintf(buf, size, "%s.tmp.%s@%ld", path, host, (long)getpid());
    return n >= 0 && (size_t)n < size;
}

/* The last ".tmp" in `name`, or NULL. */
static const char *last_tmp(const char *name)
{
    const char *p = name, *last = NULL;
    while ((p = strstr(p, ".tmp")) != NULL) {
        last = p;
        p += 4;
    }
    return last;
}

/* 1 when `p` is "-XXXXXX" as mkstemp fills it in (six letters or digits) and nothing more. */
static int mkstemp_suffix(const char *p)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    return p[0] == '-' && strlen(p + 1) == 6 && strspn(p + 1, alnum) == 6;
}

rd_temp_owner rd_temp_owner_of(const char *name)
{
    char host[HOST_MAX + 1];
    const char *t = last_tmp(name), *at, *h;
    char *end;
    long pid;
    if (!t || t == name || (t[4] != '.' && t[4] != '-'))
        return RD_TEMP_NOT_TEMP;
    if (t[4] == '-') /* "<name>.tmp-XXXXXX": mkstemp's, no writer recorded */
        return mkstemp_suffix(t + 4) ? RD_TEMP_ELSEWHERE : RD_TEMP_NOT_TEMP;
    h = t + 5;
    at = strrchr(h, '@');
    if (!at) /* "<name>.tmp.<pid>": a writer's id without its host */
        return h[0] && strspn(h, "0123456789") == strlen(h) ? RD_TEMP_ELSEWHERE : RD_TEMP_NOT_TEMP;
    errno = 0;
    pid = strtol(at + 1, &end, 10);
    if (errno != 0 || end == at + 1 || pid <= 0 || pid > INT_MAX || (*end && !mkstemp_suffix(end)))
        return RD_TEMP_NOT_TEMP;
    host_name(host, sizeof host);
    if ((size_t)(at - h) != strlen(host) || strncmp(h, host, (size_t)(at - h)) != 0)
        return RD_TEMP_ELSEWHERE;
    if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
        return RD_TEMP_LIVE;
    return RD_TEMP_DEAD;
}
