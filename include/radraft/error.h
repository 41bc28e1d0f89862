/* radraft — status codes and caller-owned error messages.
 *
 * Every fallible function returns an rd_status and takes an `rd_error *err` that the
 * caller owns (it may be NULL when the caller only wants the code). On failure the
 * function fills `err` with the code and a message that names what went wrong and where
 * ("foo.dcm: bits stored 24 exceeds 16"); on success `err` is left untouched.
 */
#ifndef RADRAFT_ERROR_H
#define RADRAFT_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One table generates the enum, the names and the default messages. */
#define RD_STATUS_MAP(X)                                                                           \
    X(OK, "success")                                                                               \
    X(E_NOMEM, "out of memory")                                                                    \
    X(E_INVALID, "invalid argument")                                                               \
    X(E_IO, "input/output error")                                                                  \
    X(E_NOT_FOUND, "not found")                                                                    \
    X(E_TOO_LARGE, "exceeds a size limit")                                                         \
    X(E_CONFIG, "configuration error")                                                             \
    X(E_DICOM, "DICOM error")                                                                      \
    X(E_NOT_IMAGE, "not an image object")                                                          \
    X(E_UNSUPPORTED, "unsupported")                                                                \
    X(E_CORRUPT, "corrupt or truncated data")                                                      \
    X(E_IMAGE, "image error")                                                                      \
    X(E_DB, "database error")                                                                      \
    X(E_MODEL, "model error")                                                                      \
    X(E_NET, "network error")                                                                      \
    X(E_INTERNAL, "internal error")                                                                \
    X(E_DENIED, "permission denied")

typedef enum rd_status {
#define RD__STATUS_ENUM(name, msg) RD_##name,
    RD_STATUS_MAP(RD__STATUS_ENUM)
#undef RD__STATUS_ENUM
        RD_STATUS_COUNT
} rd_status;

#define RD_ERROR_MSG_MAX 512

typedef struct rd_error {
    rd_status status;
    char msg[RD_ERROR_MSG_MAX];
} rd_error;

/* "RD_E_IO" for RD_E_IO; "RD_E_UNKNOWN" for a value outside the table. */
const char *rd_status_name(rd_status status);
/* The table's default message for a code. */
const char *rd_status_str(rd_status status);

/* Fills `err` (when not NULL) with `status` and a printf-style message, and returns
 * `status`, so that a failure path reads `return rd_error_set(err, RD_E_IO, ...)`. */
rd_status rd_error_set(rd_error *err, rd_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in `err` with "prefix: " (e.g. the file name), keeping
 * its status. Returns err->status (or `status` when err is NULL). */
rd_status rd_error_prefix(rd_error *err, rd_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets `err` to RD_OK with an empty message. Accepts NULL. */
void rd_error_clear(rd_error *err);

/* The message of `err`, or the default message of its status when empty. */
const char *rd_error_message(const rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
