/* radraft — the review web page's HTTP server (src/web/).
 *
 * One libmicrohttpd daemon serves the single page and its assets (embedded in the binary),
 * the JSON API of docs/web-api.md (login sessions with CSRF tokens, the review queue, the
 * users) and /healthz and /metrics. Every action goes through the review queue's functions
 * (radraft/review.h), so the page and `radraft queue` act and audit alike. Each request
 * opens its own store connection: an rd_store is never shared between the daemon's
 * threads.
 */
#ifndef RADRAFT_WEB_H
#define RADRAFT_WEB_H

#include "radraft/config.h"
#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_web rd_web;

/* What the server reports about the node it runs in. */
typedef struct rd_web_options {
    int workers; /* drafting workers of the node, for /healthz (0: a reviewing-only node) */
    /* The node's latency histograms (borrowed; must outlive the server); NULL on a
     * reviewing-only node, whose /metrics then has none. */
    const struct rd_metrics *metrics;
} rd_web_options;

/* Starts the web server on web.bind:web.port of `cfg` (copied), with the store of
 * server.data_dir, over HTTPS when web.tls_certificate and web.tls_private_key are set.
 * `opts` may be NULL (no workers). On success *out is the caller's (rd_web_stop).
 * Errors: RD_E_CONFIG (web.port 0, a bad web.bind, unreadable or half-given TLS files, TLS
 * not supported by libmicrohttpd), RD_E_NET (the port cannot be bound), RD_E_NOMEM. */
rd_status rd_web_start(rd_web **out, const rd_config *cfg, const rd_web_options *opts,
                       rd_error *err);

/* The port the server listens on (useful when web.port names a port in use by nobody). */
int rd_web_port(const rd_web *web);

/* Stops accepting, finishes the requests in progress, and frees the server. Accepts NULL. */
void rd_web_stop(rd_web *web);

#ifdef __cplusplus
}
#endif
#endif
