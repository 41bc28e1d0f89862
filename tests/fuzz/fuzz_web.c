/* Fuzz target: the review web server's handling of requests (include/radraft/web.h,
 * src/web/).
 *
 * radraft has no HTTP parser of its own: libmicrohttpd parses the request line, headers,
 * chunked bodies, the query string and cookies, and radraft's parsers (the route and item
 * id of the URL, the query arguments, the Content-Length bound, the session cookie and CSRF
 * token, the JSON bodies of login, edits, rejections and users) read what it hands over
 * through an MHD_Connection. They are reached here as in production: the input is the raw
 * bytes of one connection (one or more requests) sent to a server started once with
 * rd_web_start on the loopback interface, over a data directory holding an admin user and
 * one review item of a sample study. The client half-closes after writing, so a complete
 * request is answered and an incomplete one is dropped, then reads the whole answer; what
 * the server's threads do for the input is done when LLVMFuzzerTestOneInput returns.
 *
 * "@SESSION@" and "@CSRF@" in the input become the session cookie and the CSRF token of a
 * login made at start, so that inputs reach the routes behind a session. A logout (an
 * answer that clears the cookie) is followed by a new login. The server is configured with
 * a 1 s login lockout, so that failed logins, which the fuzzer makes often, cannot keep the
 * harness's own login out for long. With RD_FUZZ_WEB_ECHO set in the environment the answers
 * are printed, to see what a replayed input did. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "fuzz.h"
#include "radraft/config.h"
#include "radraft/image.h"
#include "radraft/review.h"
#include "radraft/samples.h"
#include "radraft/store.h"
#include "radraft/web.h"

#define FUZZ_USER "fuzz"
#define FUZZ_PASSWORD "fuzz-password-17"
/* An answer slower than this is a hang of the server. */
#define FUZZ_REPLY_SECONDS 20

static rd_web *g_web;
static int g_port;
static char g_session[80], g_csrf[80];

static void die(const char *what, const rd_error *err)
{
    fprintf(stderr, "fuzz_web: %s%s%s\n", what, err ? ": " : "", err ? rd_error_message(err) : "");
    abort();
}

/* Sends `len` bytes as one connection and reads the answer into `reply` (NUL-terminated,
 * cut at `size` - 1 bytes; the rest is read and dropped).
 *
 * The end of the input is told by half-closing the connection, but not at once:
 * libmicrohttpd waits for its sockets edge-triggered (epoll), and when the end arrives with
 * the request in one read it can miss it and keep a kept-alive connection open until its
 * timeout. So the client waits until the server has read the input (its first answer byte,
 * or 2 ms), then half-closes; the server answers every complete request and closes. */
static void exchange(const char *req, size_t len, char *reply, size_t size)
{
    struct sockaddr_in sa;
    struct timeval tv = {FUZZ_REPLY_SECONDS, 0};
    struct pollfd pfd;
    size_t got = 0, sent = 0;
    char sink[4096];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket", NULL);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        /* libFuzzer's timers interrupt a connect now and then: it goes on without us, so
         * wait until it has finished and ask how it went. */
        int soerr = errno;
        socklen_t sl = sizeof soerr;
        struct pollfd wp = {.fd = fd, .events = POLLOUT};
        if (soerr == EINTR && poll(&wp, 1, 5000) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
            /* connected */
        } else {
            fprintf(stderr, "fuzz_web: connect: %s\n", strerror(soerr));
            die("connect to the server", NULL);
        }
    }
    /* The server may answer and close before it has read everything (a 413, a malformed
     * request line): a failed send just ends the request. */
    while (sent < len) {
        ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    pfd.fd = fd;
    pfd.events = POLLIN;
    (void)poll(&pfd, 1, 2);
    shutdown(fd, SHUT_WR);
    for (;;) {
        ssize_t n = got + 1 < size ? recv(fd, reply + got, size - 1 - got, 0)
                                   : recv(fd, sink, sizeof sink, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                die("no answer in time (a hang of the server)", NULL);
            break; /* reset by the server */
        }
        if (got + 1 < size)
            got += (size_t)n;
    }
    reply[got] = '\0';
    /* Reset rather than close: at a few hundred connections a second the closed ones hold
     * loopback ports in TIME_WAIT. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* Copies the 64 hex digits after `key` in `text` into `out`; 0 when there are none. */
static int take_token(const char *text, const char *key, char *out, size_t size)
{
    const char *p = strstr(text, key);
    size_t n = 0;
    if (!p)
        return 0;
    p += strlen(key);
    while (n + 1 < size && ((p[n] >= '0' && p[n] <= '9') || (p[n] >= 'a' && p[n] <= 'f')))
        n++;
    memcpy(out, p, n);
    out[n] = '\0';
    return n == 64;
}

static void login(void)
{
    static const char body[] = "{\"user\": \"" FUZZ_USER "\", \"password\": \"" FUZZ_PASSWORD "\"}";
    char req[512], reply[8192];
    for (int attempt = 0; attempt < 10; attempt++) {
        int n = snprintf(req, sizeof req,
                         "POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                         "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                         strlen(body), body);
        exchange(req, (size_t)n, reply, sizeof reply);
        if (take_token(reply, "radraft_session=", g_session, sizeof g_session) &&
            take_token(reply, "\"csrf\":\"", g_csrf, sizeof g_csrf))
            return;
        sleep(1); /* locked out by the fuzzer's failed logins: the window is 1 s */
    }
    die("cannot log in", NULL);
}

/* An admin user and one review item (a sample study's frontal image, a heat map of its
 * cardiomegaly) in `data_dir`. */
static void fill_store(const char *data_dir)
{
    rd_store *s = NULL;
    rd_samples_options so;
    rd_store_review r;
    char image[700], images_json[900], heatmap[700], findings_json[1200];
    rd_image *hm = NULL;
    rd_error err;
    int64_t id = 0;
    int added = 0;

    if (rd_store_open(&s, data_dir, NULL, &err) != RD_OK)
        die("opening the store", &err);
    if (rd_review_user_add(s, NULL, FUZZ_USER, RD_ROLE_ADMIN, "Fuzz^Admin", FUZZ_PASSWORD, &err) !=
        RD_OK)
        die("adding the user", &err);
    rd_samples_options_default(&so);
    so.rows = 64;
    snprintf(image, sizeof image, "%s/pa.dcm", rd_fuzz_dir());
    if (rd_samples_write_case(0, &so, image, &err) != RD_OK)
        die("writing a sample image", &err);
    snprintf(images_json, sizeof images_json,
             "[{\"path\": \"%s\", \"sop_instance_uid\": \"2.25.2\", \"view_position\": \"PA\", "
             "\"frontal\": true}]",
             image);
    snprintf(heatmap, sizeof heatmap, "%s/heatmap.png", rd_fuzz_dir());
    if (rd_image_create(&hm, 7, 7, &err) != RD_OK)
        die("a heat map", &err);
    for (int i = 0; i < 49; i++)
        hm->data[i] = (float)i / 48.0f;
    if (rd_png_write(hm, heatmap, 8, &err) != RD_OK)
        die("writing a heat map", &err);
    rd_image_free(hm);
    snprintf(findings_json, sizeof findings_json,
             "{\"Cardiomegaly\": {\"state\": \"present\", \"score\": 0.8, \"encoder\": 0.8, "
             "\"side\": \"left\", \"zone\": \"lower\", \"heatmap\": \"%s\"}, \"Effusion\": "
             "{\"state\": \"absent\", \"score\": 0.1}}",
             heatmap);
    memset(&r, 0, sizeof r);
    r.study_uid = "2.25.1";
    r.content_version = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    r.sr_path = "/nonexistent/draft-sr.dcm";
    r.sr_sop_instance_uid = "2.25.3";
    r.frontal_sop_instance_uid = "2.25.2";
    r.model_version = "fuzz-model";
    r.findings_text = "The heart is enlarged. No pleural effusion.";
    r.impression_text = "Cardiomegaly.";
    r.findings_json = findings_json;
    r.neighbours_json = "[]";
    r.images_json = images_json;
    r.study_date = 20240115;
    r.view = 1;
    if (rd_store_review_add(s, &r, NULL, 0, &id, &added, &err) != RD_OK)
        die("adding a review item", &err);
    rd_store_close(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    rd_config cfg;
    rd_error err;
    (void)argc;
    (void)argv;
    rd_fuzz_init();
    signal(SIGPIPE, SIG_IGN);
    rd_config_defaults(&cfg);
    snprintf(cfg.server_data_dir, sizeof cfg.server_data_dir, "%s/data", rd_fuzz_dir());
    fill_store(cfg.server_data_dir);
    cfg.web_lockout_seconds = 1;
    snprintf(cfg.review_organization, sizeof cfg.review_organization, "Fuzz Hospital");
    cfg.web_session_idle_minutes = 1440;
    /* A connection whose end the server missed (see exchange) is closed after 2 s. */
    cfg.web_request_timeout_seconds = 2;
    /* A free port near one of the process's own, so that parallel jobs do not collide. */
    for (int i = 0; i < 200 && !g_web; i++) {
        cfg.web_port = 20000 + (int)((getpid() * 7 + i * 131) % 40000);
        if (rd_web_start(&g_web, &cfg, NULL, &err) != RD_OK && err.status != RD_E_NET)
            die("starting the server", &err);
    }
    if (!g_web)
        die("no free port for the server", NULL);
    g_port = rd_web_port(g_web);
    login();
    return 0;
}

/* The input with every "@SESSION@" and "@CSRF@" replaced (malloc'ed; *len its length). */
static char *substitute(const uint8_t *data, size_t size, size_t *len)
{
    static const char *const keys[] = {"@SESSION@", "@CSRF@"};
    const char *values[] = {g_session, g_csrf};
    size_t cap = size + 1, n = 0;
    char *out;
    /* A value is at most 79 bytes longer than its key: room for every occurrence. */
    cap += (size / 6 + 1) * 80;
    if (!(out = malloc(cap)))
        abort();
    for (size_t i = 0; i < size;) {
        int hit = 0;
        for (size_t k = 0; k < 2 && !hit; k++) {
            size_t kl = strlen(keys[k]);
            if (size - i >= kl && memcmp(data + i, keys[k], kl) == 0) {
                size_t vl = strlen(values[k]);
                memcpy(out + n, values[k], vl);
                n += vl;
                i += kl;
                hit = 1;
            }
        }
        if (!hit)
            out[n++] = (char)data[i++];
    }
    *len = n;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char reply[1 << 16];
    size_t len = 0;
    char *req = substitute(data, size, &len);
    exchange(req, len, reply, sizeof reply);
    free(req);
    if (getenv("RD_FUZZ_WEB_ECHO")) /* replaying an input: what the server answered */
        fprintf(stderr, "%s\n", reply);
    /* A logout ends the harness's session: log in again for the next inputs. */
    if (strstr(reply, "radraft_session=;"))
        login();
    return 0;
}
