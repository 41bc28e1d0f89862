/* radraft — DICOM networking (implemented in pacs/ over DCMTK): the C-STORE/C-ECHO
 * listener (SCP) and the C-STORE/C-ECHO sender (SCU).
 *
 * The listener accepts every storage SOP class DCMTK knows in every transfer syntax it can
 * receive, without transcoding: the dataset is handed to the store callback as received
 * (same elements and values, pixel data bit-identical) inside a Part 10 file whose meta
 * header radraft writes. What the callback returns decides the C-STORE response status, so
 * that success is answered only once the instance is durable.
 *
 * Nagle's algorithm is disabled on every DICOM socket (TCP_NODELAY), listener and sender.
 */
#ifndef RADRAFT_NET_H
#define RADRAFT_NET_H

#include <stddef.h>

#include "radraft/config.h"
#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_NET_AE_MAX 16

/* A DICOM peer "AE@host:port", optionally with "+tls" or "+plain" after the port. */
typedef struct rd_net_peer {
    char ae_title[RD_NET_AE_MAX + 1];
    char host[256];
    int port;
    int tls; /* -1: as the sender options say (outbox.tls); 0: plain TCP; 1: DICOM TLS */
} rd_net_peer;

/* Parses "AE@host:port[+tls|+plain]" (AE 1-16 characters without backslash or control
 * characters, port 1-65535). The suffix decides TLS for this peer whatever outbox.tls
 * says; without one, tls is -1. Errors: RD_E_INVALID naming what is wrong. */
rd_status rd_net_peer_parse(const char *text, rd_net_peer *out, rd_error *err);

/* Process-wide network set-up (TCP_NODELAY for DCMTK's sockets, SIGPIPE ignored). Called
 * by the functions below; call it once before starting threads of your own. */
void rd_net_init(void);

/* ---- listener ---- */

/* One received instance, valid during the store callback only. UIDs are valid UIDs as
 * received (PS3.5 9.1; others are refused before the callback); `path` is the spool file
 * (from the `spool` callback) that holds a complete Part 10 file of `file_len` bytes, its
 * dataset from `dataset_offset` on (after the meta header). The store callback owns that
 * file: it renames it into place or removes it, whatever it answers. */
typedef struct rd_net_instance {
    const char *calling_ae;
    const char *peer_host;
    const char *sop_class_uid;
    const char *sop_instance_uid;
    const char *study_uid;
    const char *series_uid;
    const char *transfer_syntax_uid;
    const char *modality;
    const char *path;
    size_t file_len;
    size_t dataset_offset;
} rd_net_instance;

/* Callbacks of the listener, called from its association threads (one thread per
 * association; several at once). `assoc_begin` may create per-association state (e.g. a
 * store connection) in *assoc_ctx; `assoc_end` frees it. `store` returns RD_OK for a
 * success response; RD_E_IO and RD_E_NOMEM answer 0xA700 (Out of Resources), RD_E_INVALID
 * 0xA900 (Data Set does not match SOP Class), anything else 0xC000 (Cannot Understand). */
typedef struct rd_net_handlers {
    void *ctx;
    rd_status (*assoc_begin)(void *ctx, void **assoc_ctx, rd_error *err);
    void (*assoc_end)(void *ctx, void *assoc_ctx);
    /* Creates the file an arriving dataset is written to as it arrives (never held in
     * memory whole): its name in `path`, open for writing as *fd (the listener closes it;
     * it removes the file itself when the instance never reaches `store`). Required. */
    rd_status (*spool)(void *ctx, void *assoc_ctx, char *path, size_t size, int *fd, rd_error *err);
    rd_status (*store)(void *ctx, void *assoc_ctx, const rd_net_instance *inst, rd_error *err);
} rd_net_handlers;

typedef struct rd_net_scp_options {
    int port;
    /* IPv4 address to listen on; NULL or "" for every interface (0.0.0.0). Borrowed. */
    const char *bind_address;
    char ae_title[RD_NET_AE_MAX + 1];
    int check_called_ae;                   /* reject a called AE title other than ae_title */
    const rd_strlist *allowed_calling_aes; /* NULL or empty: any peer */
    int max_associations;
    int max_pdu;
    int acse_timeout;  /* seconds */
    int dimse_timeout; /* seconds */
    int idle_timeout;  /* seconds */
    /* Seconds from a connection's accept until its association request has been read
     * (TLS handshake included); a connection still short of it then is closed. 0: 10. */
    int request_timeout;
    /* Connections of one peer address whose request is not read yet; more are closed at
     * once. 0: 4. Their total is at most max_associations. */
    int max_pending_per_peer;
    /* A deflated dataset (Deflated Explicit VR Little Endian) is refused (0xA700) when it
     * inflates to more than max_inflated_mb MiB, or, above 16 MiB, to more than
     * max_inflate_ratio times its size on the wire. 0: 256 and 200. */
    int max_inflated_mb;
    int max_inflate_ratio;
    /* Memory the listener may use for receiving, in MiB: each association reserves its
     * buffers while it lasts (a new one is rejected when they do not fit) and a deflated
     * dataset its inflated size while it is parsed (0xA700 when it does not fit). 0: 1024. */
    int receive_memory_mb;
    /* DICOM TLS (DCMTK dcmtls): when tls_certificate is set the listener speaks TLS only,
     * with this PEM certificate and private key, and requires a client certificate that
     * chains to a CA of tls_ca_file (the system store /etc/ssl/certs when it is NULL or "");
     * tls_skip_verify accepts any client certificate or none. Borrowed strings. */
    const char *tls_certificate;
    const char *tls_private_key;
    const char *tls_ca_file;
    int tls_skip_verify;
} rd_net_scp_options;

/* The listener options from a configuration (server.* keys). `cfg` must outlive the
 * listener (the allowlist is borrowed). */
void rd_net_scp_options_from_config(rd_net_scp_options *opts, const rd_config *cfg);

typedef struct rd_net_scp rd_net_scp;

/* Binds the port and starts accepting associations in a background thread. On success
 * *out is the running listener, which the caller stops with rd_net_scp_stop; `handlers`
 * is copied. Errors: RD_E_NET (port in use, ...), RD_E_INVALID. */
rd_status rd_net_scp_start(rd_net_scp **out, const rd_net_scp_options *opts,
                           const rd_net_handlers *handlers, rd_error *err);

/* Stops accepting, then ends every association in progress once the C-STORE it is
 * receiving has been stored and answered (or within a second when idle), by an abort
 * (an SCP cannot release), waits for them, and frees the listener. Accepts NULL. */
void rd_net_scp_stop(rd_net_scp *scp);

/* Counters of a running listener (for logs and tests). */
typedef struct rd_net_scp_stats {
    long associations; /* accepted */
    long rejected;     /* rejected (allowlist, called AE, limit) */
    long stored;       /* C-STORE answered with success */
    long failed;       /* C-STORE answered with a failure */
    long active;       /* associations in progress */
    long pending;      /* connections whose association request is not read yet */
    long cut;          /* connections closed before their request was read (too slow, too
                        * many from one peer) */
} rd_net_scp_stats;

void rd_net_scp_get_stats(rd_net_scp *scp, rd_net_scp_stats *stats);

/* ---- sender ---- */

typedef struct rd_net_scu_options {
    char calling_ae[RD_NET_AE_MAX + 1];
    int max_pdu;
    int acse_timeout;
    int dimse_timeout;
    /* TLS: when `tls` is set the sender speaks TLS, requiring the peer's certificate to
     * chain to a CA of tls_ca_file (of the system store /etc/ssl/certs when it is NULL or
     * ""; tls_skip_verify accepts any), and presenting tls_certificate/tls_private_key when
     * set. Borrowed strings. */
    int tls;
    const char *tls_certificate;
    const char *tls_private_key;
    const char *tls_ca_file;
    int tls_skip_verify;
} rd_net_scu_options;

/* The sender options from a configuration (server.ae_title as the calling AE, timeouts). */
void rd_net_scu_options_from_config(rd_net_scu_options *opts, const rd_config *cfg);

/* C-ECHO to a peer. Errors: RD_E_NET (connection, association rejected, bad status). */
rd_status rd_net_echo(const rd_net_peer *peer, const rd_net_scu_options *opts, rd_error *err);

/* Sends files with C-STORE over one association, each in its own transfer syntax (no
 * transcoding). results[i] (may be NULL) gets each file's outcome: RD_OK when the peer
 * answered success (or a warning), RD_E_NET for a failure status, RD_E_DICOM/RD_E_IO when
 * the file cannot be read. Returns RD_OK only when every file was confirmed; otherwise the
 * first error, with its message in `err`. */
rd_status rd_net_send_files(const rd_net_peer *peer, const rd_net_scu_options *opts,
                            const char *const *files, int n_files, rd_status *results,
                            rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
