/* radraft — logging with levels.
 *
 * One process-wide sink (the only mutable global radraft keeps): stderr by default, or a
 * file. Lines are written whole under a lock, so threads never interleave. Patient names
 * and IDs are logged only at DEBUG; UIDs may appear at any level.
 */
#ifndef RADRAFT_LOG_H
#define RADRAFT_LOG_H

#include <stdio.h>

#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rd_log_level {
    RD_LOG_ERROR = 0,
    RD_LOG_WARN = 1,
    RD_LOG_INFO = 2,
    RD_LOG_DEBUG = 3
} rd_log_level;

/* Parses "error", "warn", "info" or "debug". */
rd_status rd_log_level_parse(const char *name, rd_log_level *out, rd_error *err);
const char *rd_log_level_name(rd_log_level level);

void rd_log_set_level(rd_log_level level);
rd_log_level rd_log_get_level(void);

/* Directs log lines to `fp` (not owned; NULL restores stderr). */
void rd_log_set_stream(FILE *fp);

void rd_log(rd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rd_log_error(...) rd_log(RD_LOG_ERROR, __VA_ARGS__)
#define rd_log_warn(...) rd_log(RD_LOG_WARN, __VA_ARGS__)
#define rd_log_info(...) rd_log(RD_LOG_INFO, __VA_ARGS__)
#define rd_log_debug(...) rd_log(RD_LOG_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
