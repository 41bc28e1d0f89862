/* Fuzz target: the DICOM listener's handling of one connection (pacs/net.cc): association
 * negotiation, P-DATA and DIMSE parsing, C-ECHO, the C-STORE dataset spooled as it arrives
 * (the spool consumer), the UID checks (pacs/dcm_uid.h), the bounded loader
 * (pacs/dcm_load.h) and the store (rd_store_spool_create, rd_store_put_file, as
 * `radraft serve` stores an instance).
 *
 * The input is what a peer sends on one connection. A listener is started once, with the
 * serve node's callbacks (below) over a data directory in the scratch folder; each input
 * gets a connected pair of TCP sockets over the loopback interface (DCMTK's transport wants
 * TCP: a Unix socket pair fails its socket options), whose accepted end the listener serves
 * on a thread of its own through the same per-connection path as a connection it accepted
 * itself (rd__net_scp_serve_socket: the request read with the hand-off to DCMTK, the
 * association's limits, its thread's store connection), while this thread writes the input
 * to the other end, half-closes it, and reads what comes back until the listener closes. When
 * LLVMFuzzerTestOneInput returns, the listener is done with the input. Timeouts are 1 s (the end of
 * the input is seen at once: the peer half-closed), so an input that makes the listener wait is a
 * hang.
 *
 * No state passes from one input to the next: after an input that stored an instance, the
 * data directory is removed (the next association creates it again). With RD_FUZZ_NET_ECHO
 * set the listener logs at debug level and the bytes it answered are counted, to see what
 * a replayed input did. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "net_int.h"
#include "radraft/log.h"
#include "radraft/net.h"
#include "radraft/store.h"

#define FUZZ_AE "FUZZSCP"
/* A listener slower than this to close the connection is a hang. */
#define FUZZ_REPLY_MS 20000

static rd_net_scp *g_scp;
static int g_pair_fd = -1; /* listening on the loopback interface: the pairs' server ends */
static struct sockaddr_in g_pair_addr;
static char g_data_dir[1024];
static long g_stored; /* instances the listener had stored after the previous input */

static void die(const char *what, const rd_error *err)
{
    fprintf(stderr, "fuzz_net: %s%s%s\n", what, err ? ": " : "", err ? rd_error_message(err) : "");
    abort();
}

/* ---- the serve node's callbacks (src/pipeline/serve.c), without scheduler or metrics ---- */

static rd_status on_assoc_begin(void *ctx, void **assoc_ctx, rd_error *err)
{
    rd_store *s = NULL;
    rd_status st = rd_store_open(&s, ctx, NULL, err);
    if (st == RD_OK)
        *assoc_ctx = s;
    return st;
}

static void on_assoc_end(void *ctx, void *assoc_ctx)
{
    (void)ctx;
    rd_store_close(assoc_ctx);
}

static rd_status on_spool(void *ctx, void *assoc_ctx, char *path, size_t size, int *fd,
                          rd_error *err)
{
    (void)ctx;
    return rd_store_spool_create(assoc_ctx, path, size, fd, err);
}

static rd_status on_store(void *ctx, void *assoc_ctx, const rd_net_instance *in, rd_error *err)
{
    rd_store_instance si = {in->study_uid,     in->series_uid,          in->sop_instance_uid,
                            in->sop_class_uid, in->transfer_syntax_uid, in->modality,
                            in->calling_ae};
    (void)ctx;
    return rd_store_put_file(assoc_ctx, &si, in->path, in->dataset_offset, NULL, err);
}

/* ---- one connection ---- */

typedef struct served {
    int fd;
} served;

static void *serve_main(void *arg)
{
    served *sv = arg;
    if (rd__net_scp_serve_socket(g_scp, sv->fd, "127.0.0.1") != RD_OK)
        die("cannot serve a connection (out of memory)", NULL);
    return NULL;
}

/* Writes `len` bytes to `fd` while reading (and counting) what comes back, so that neither
 * side blocks the other; then half-closes and reads until the listener closes. */
static size_t exchange(int fd, const uint8_t *data, size_t len)
{
    char sink[16384];
    size_t sent = 0, got = 0;
    int writing = 1;
    for (;;) {
        struct pollfd p = {fd, (short)(POLLIN | (writing ? POLLOUT : 0)), 0};
        int n = poll(&p, 1, FUZZ_REPLY_MS);
        if (n == 0)
            die("no answer in time (a hang of the listener)", NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("poll", NULL);
        }
        if (writing && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = sent < len ? send(fd, data + sent, len - sent, MSG_NOSIGNAL) : 0;
            if (w > 0)
                sent += (size_t)w;
            /* The listener may close before it has read everything (a rejected request,
             * an abort): a failed send just ends the input. */
            if (w <= 0 || sent == len) {
                shutdown(fd, SHUT_WR);
                writing = 0;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                break; /* closed (or reset) by the listener */
            if (r > 0)
                got += (size_t)r;
        }
    }
    return got;
}

/* A connected pair of loopback TCP sockets: sv[0] the accepted end, sv[1] the peer's. */
static void tcp_pair(int sv[2])
{
    sv[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sv[1] < 0 || connect(sv[1], (struct sockaddr *)&g_pair_addr, sizeof g_pair_addr) != 0) {
        perror("fuzz_net: connect");
        die("connecting a socket pair", NULL);
    }
    sv[0] = accept(g_pair_fd, NULL, NULL);
    if (sv[0] < 0)
        die("accepting a socket pair", NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    pthread_t thread;
    served s;
    rd_net_scp_stats stats;
    size_t got;
    tcp_pair(sv);
    s.fd = sv[0];
    if (pthread_create(&thread, NULL, serve_main, &s) != 0)
        die("pthread_create", NULL);
    got = exchange(sv[1], data, size);
    pthread_join(thread, NULL);
    /* Closed at once (a reset): the peer's end would otherwise wait a minute in TIME_WAIT,
     * and a few hundred inputs a second run out of loopback ports. */
    struct linger hard = {1, 0};
    setsockopt(sv[1], SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    close(sv[1]);
    rd_net_scp_get_stats(g_scp, &stats);
    if (getenv("RD_FUZZ_NET_ECHO"))
        fprintf(stderr,
                "fuzz_net: %zu bytes answered; so far %ld associations, %ld rejected, %ld "
                "stored, %ld failed\n",
                got, stats.associations, stats.rejected, stats.stored, stats.failed);
    /* Each input starts from an empty store. */
    if (stats.stored != g_stored) {
        rd_fuzz_remove_tree(g_data_dir);
        g_stored = stats.stored;
    }
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    rd_net_scp_options o;
    rd_net_handlers h = {g_data_dir, on_assoc_begin, on_assoc_end, on_spool, on_store};
    rd_error err;
    (void)argc;
    (void)argv;
    rd_fuzz_init();
    if (getenv("RD_FUZZ_NET_ECHO"))
        rd_log_set_level(RD_LOG_DEBUG);
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_data_dir, sizeof g_data_dir, "%s/data", rd_fuzz_dir());
    memset(&o, 0, sizeof o);
    o.bind_address = "127.0.0.1";
    snprintf(o.ae_title, sizeof o.ae_title, "%s", FUZZ_AE);
    o.check_called_ae = 1;
    o.max_associations = 4;
    o.max_pdu = 16384;
    o.acse_timeout = 1;
    o.dimse_timeout = 1;
    o.idle_timeout = 1;
    o.request_timeout = 1;
    o.max_pending_per_peer = 4;
    /* Deflated datasets within small bounds, so that a bomb is refused quickly. */
    o.max_inflated_mb = 8;
    o.max_inflate_ratio = 50;
    o.receive_memory_mb = 64;
    /* The listener's port is not used (its connections come from socket pairs), but it
     * listens on one: a free one near the process's own, so that parallel jobs do not
     * collide. */
    for (int i = 0; i < 200 && !g_scp; i++) {
        o.port = 20000 + (int)((getpid() * 7 + i * 131) % 40000);
        if (rd_net_scp_start(&g_scp, &o, &h, &err) != RD_OK && err.status != RD_E_NET)
            die("starting the listener", &err);
    }
    if (!g_scp)
        die("no free port for the listener", NULL);
    socklen_t len = sizeof g_pair_addr;
    memset(&g_pair_addr, 0, sizeof g_pair_addr);
    g_pair_addr.sin_family = AF_INET;
    g_pair_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_pair_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (g_pair_fd < 0 || bind(g_pair_fd, (struct sockaddr *)&g_pair_addr, sizeof g_pair_addr) ||
        listen(g_pair_fd, 4) || getsockname(g_pair_fd, (struct sockaddr *)&g_pair_addr, &len))
        die("a loopback socket for the pairs", NULL);
    return 0;
}
