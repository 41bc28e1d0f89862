/* radraft — base: status codes and their messages (one X-macro table in radraft/error.h)
 * and the caller-owned error every fallible call fills. This folder holds what every stage
 * uses and owns no state but the log sink: errors, logging, the configuration table,
 * small helpers (files, wakeups, UTF-8), the folder walker and SHA-256. */
#include "radraft/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
#define RD__STATUS_NAME(name, msg) "RD_" #name,
    RD_STATUS_MAP(RD__STATUS_NAME)
#undef RD__STATUS_NAME
};

static const char *const status_msgs[] = {
#define RD__STATUS_MSG(name, msg) msg,
    RD_STATUS_MAP(RD__STATUS_MSG)
#undef RD__STATUS_MSG
};

const char *rd_status_name(rd_status status)
{
    if ((unsigned)status >= RD_STATUS_COUNT)
        return "RD_E_UNKNOWN";
    return status_names[status];
}

const char *rd_status_str(rd_status status)
{
    if ((unsigned)status >= RD_STATUS_COUNT)
        return "unknown status";
    return status_msgs[status];
}

rd_status rd_error_set(rd_error *err, rd_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->status = status;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

rd_status rd_error_prefix(rd_error *err, rd_status status, const char *fmt, ...)
{
    char prefix[RD_ERROR_MSG_MAX];
    char old[RD_ERROR_MSG_MAX];
    va_list ap;

    if (!err)
        return status;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    /* A message too long for the buffer is cut; the prefix and its start survive. */
    if (snprintf(err->msg, sizeof err->msg, "%s: %s", prefix,
                 old[0] ? old : rd_status_str(err->status)) < 0)
        err->msg[0] = '\0';
    if (err->status == RD_OK)
        err->status = status;
    return err->status;
}

void rd_error_clear(rd_error *err)
{
    if (err) {
        err->status = RD_OK;
        err->msg[0] = '\0';
    }
}

const char *rd_error_message(const rd_error *err)
{
    if (!err)
        return "";
    return err->msg[0] ? err->msg : rd_status_str(err->status);
}
