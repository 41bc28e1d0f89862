/* radraft — HTTP requests over libcurl, for the FHIR server (radraft/fhir.h) and DICOMweb
 * (batch --from-dicomweb).
 *
 * Every request is bounded in time (the whole request, connecting included) and in what is
 * kept of the reply; https verifies the server's certificate (the CA file given, else the
 * system store) and its host name; redirects are not followed; nothing is read from or
 * written to the environment's proxy settings beyond what libcurl does by default. */
#ifndef RADRAFT_HTTP_H
#define RADRAFT_HTTP_H

#include <stddef.h>

#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_http_options {
    double timeout_s;     /* the whole request; > 0 */
    const char *ca_file;  /* https: PEM CA certificates; NULL or "": the system store */
    const char *bearer;   /* NULL or "": none; else sent as "Authorization: Bearer <it>" */
    const char *user;     /* with `password`: HTTP basic authentication; NULL: none */
    const char *password; /* NULL with a user: an empty password */
} rd_http_options;

/* The outcome of a request. */
typedef struct rd_http_reply {
    long status;            /* the HTTP status, 0 when no reply came */
    char content_type[256]; /* "" when none */
} rd_http_reply;

/* Sends `method` ("GET" or "POST") to `url` with the extra `headers` (NULL-terminated, may be
 * NULL) and, for POST, the body of file `body_path` with `content_type`. The reply's body goes
 * to `out_path` (written as it arrives, at most `max_body` bytes) when it is not NULL, else
 * to *body (the caller's, free(); NUL-terminated; at most `max_body` bytes kept, the rest
 * dropped). RD_OK whenever a reply came, whatever its status: the caller judges it.
 * Errors: RD_E_NET (no reply: connection, TLS, timeout; the message says which),
 * RD_E_TOO_LARGE (a reply over `max_body` into `out_path`), RD_E_NOT_FOUND / RD_E_IO (the
 * files), RD_E_NOMEM, RD_E_INVALID. */
rd_status rd_http_request(const char *method, const char *url, const char *const *headers,
                          const char *body_path, const char *content_type,
                          const rd_http_options *opts, const char *out_path, char **body,
                          size_t max_body, rd_http_reply *reply, rd_error *err);

/* Checks that `url` is http[s]://host[:port][/path] (a name, an IPv4 address or [IPv6]; no
 * user, query or fragment; printable ASCII) and copies its host to `host` (may be NULL).
 * Errors: RD_E_INVALID, saying what is wrong. */
rd_status rd_http_url_check(const char *url, char *host, size_t host_size, rd_error *err);

/* The first line of a file (a token, a password), printable ASCII only, into `out`.
 * Errors: RD_E_NOT_FOUND / RD_E_IO, RD_E_CONFIG (empty, control characters, too long). */
rd_status rd_http_read_secret(const char *path, char *out, size_t size, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
