#include "radraft/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* The log sink is the one piece of global state: it is configured at start-up and read by
 * every thread. The stream is read and written under the lock. The level is checked on every
 * call, before any formatting, so it is an atomic read without the lock instead; relaxed
 * order is enough, since nothing else is published through it (a thread that sees a new
 * level a little late logs or skips one more line, as it would have a moment earlier). */
static struct {
    pthread_mutex_t lock;
    FILE *stream;
    atomic_int level; /* an rd_log_level */
} g_log = {PTHREAD_MUTEX_INITIALIZER, NULL, RD_LOG_INFO};

rd_status rd_log_level_parse(const char *name, rd_log_level *out, rd_error *err)
{
    for (int i = 0; i <= (int)RD_LOG_DEBUG; i++) {
        if (name && strcmp(name, level_names[i]) == 0) {
            *out = (rd_log_level)i;
            return RD_OK;
        }
    }
    return rd_error_set(err, RD_E_INVALID,
                        "unknown log level '%s' (expected error, warn, info or debug)",
                        name ? name : "(null)");
}

const char *rd_log_level_name(rd_log_level level)
{
    if ((unsigned)level > (unsigned)RD_LOG_DEBUG)
        return "?";
    return level_names[level];
}

void rd_log_set_level(rd_log_level level)
{
    atomic_store_explicit(&g_log.level, (int)level, memory_order_relaxed);
}

rd_log_level rd_log_get_level(void)
{
    return (rd_log_level)atomic_load_explicit(&g_log.level, memory_order_relaxed);
}

void rd_log_set_stream(FILE *fp)
{
    pthread_mutex_lock(&g_log.lock);
    g_log.stream = fp;
    pthread_mutex_unlock(&g_log.lock);
}

/* Copies `in` to `out` (of `size` bytes, NUL-terminated) with every control character as a
 * visible "\xNN" escape, so that a value from the network (an AE title with a newline, say)
 * can never start a forged log line or move the terminal's cursor. A line cut short by
 * `size` ends with its last whole escape. */
static void escape_controls(const char *in, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 1 < size; p++) {
        if (*p >= 0x20 && *p != 0x7f) {
            out[o++] = (char)*p;
            continue;
        }
        if (o + 5 > size)
            break;
        out[o++] = '\\';
        out[o++] = 'x';
        out[o++] = hex[*p >> 4];
        out[o++] = hex[*p & 15];
    }
    out[o] = '\0';
}

void rd_log(rd_log_level level, const char *fmt, ...)
{
    char line[2048], safe[2048 * 4];
    char stamp[32];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if ((unsigned)level > (unsigned)atomic_load_explicit(&g_log.level, memory_order_relaxed))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof line, "%s.%03ldZ radraft %s: ", stamp, ts.tv_nsec / 1000000L,
                 rd_log_level_name(level));
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);

    escape_controls(line, safe, sizeof safe);
    pthread_mutex_lock(&g_log.lock);
    FILE *out = g_log.stream ? g_log.stream : stderr;
    fputs(safe, out);
    fputc('\n', out);
    fflush(out);
    pthread_mutex_unlock(&g_log.lock);
}
