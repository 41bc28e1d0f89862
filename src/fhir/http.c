/* radraft — POSTing a Bundle to a FHIR server: a small HTTP/1.1 client over a POSIX socket,
 * with TLS from OpenSSL (which DCMTK's TLS already brings) for https endpoints. One
 * request per connection (Connection: close); the reply's status line decides, and its
 * body gives the detail of a failure. Every wait is bounded by the client's timeout. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/util.h"
#include "radraft/fhir.h"
#include "radraft/version.h"

#define REPLY_MAX (64 * 1024) /* bytes of the reply kept; the rest is not read */
#define TOKEN_MAX 4096

typedef struct url {
    int tls;
    char host[256];
    char port[8];
    char path[1024];
    int host_is_ip;
} url;

typedef struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    double deadline;
} conn;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* http[s]://host[:port][/path], host a name, an IPv4 address or [IPv6]; no user info, no
 * query or fragment, nothing outside printable ASCII. */
static rd_status parse_url(const char *s, url *u, rd_error *err)
{
    const char *p, *host, *end;
    size_t n;
    memset(u, 0, sizeof *u);
    for (p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 127 || *p == '#' || *p == '?' ||
            *p == '@' || *p == '\\')
            return rd_error_set(err, RD_E_INVALID,
                                "FHIR endpoint '%.200s': only http[s]://host[:port][/path] "
                                "(printable, no user, query or fragment)",
                                s);
    if (strncmp(s, "https://", 8) == 0) {
        u->tls = 1;
        host = s + 8;
    } else if (strncmp(s, "http://", 7) == 0) {
        host = s + 7;
    } else {
        return rd_error_set(err, RD_E_INVALID, "FHIR endpoint '%.200s': not an http(s) URL", s);
    }
    end = host + strcspn(host, "/");
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (!close || (size_t)(close - host - 1) >= sizeof u->host)
            return rd_error_set(err, RD_E_INVALID, "FHIR endpoint '%.200s': bad IPv6 host", s);
        memcpy(u->host, host + 1, (size_t)(close - host - 1));
        p = close + 1;
        u->host_is_ip = 1;
    } else {
        p = memchr(host, ':', (size_t)(end - host));
        if (!p)
            p = end;
        if (p == host || (size_t)(p - host) >= sizeof u->host)
            return rd_error_set(err, RD_E_INVALID, "FHIR endpoint '%.200s': bad host", s);
        memcpy(u->host, host, (size_t)(p - host));
        struct in_addr a;
        u->host_is_ip = inet_pton(AF_INET, u->host, &a) == 1;
    }
    if (p < end && *p == ':') {
        n = (size_t)(end - p - 1);
        long port = 0;
        for (size_t i = 0; i < n; i++)
            port = p[1 + i] >= '0' && p[1 + i] <= '9' && port < 65536 ? port * 10 + (p[1 + i] - '0')
                                                                      : -1;
        if (n == 0 || port < 1 || port > 65535)
            return rd_error_set(err, RD_E_INVALID, "FHIR endpoint '%.200s': bad port", s);
        snprintf(u->port, sizeof u->port, "%ld", port);
    } else if (p != end) {
        return rd_error_set(err, RD_E_INVALID, "FHIR endpoint '%.200s': bad host", s);
    } else {
        rd_strlcpy(u->port, u->tls ? "443" : "80", sizeof u->port);
    }
    if (rd_strlcpy(u->path, *end ? end : "/", sizeof u->path) >= sizeof u->path)
        return rd_error_set(err, RD_E_INVALID, "FHIR endpoint '%.200s': path too long", s);
    return RD_OK;
}

rd_status rd_fhir_endpoint_check(const char *endpoint, rd_error *err)
{
    url u;
    return parse_url(endpoint, &u, err);
}

static void set_timeouts(int fd, double left)
{
    struct timeval tv;
    if (left < 0.001)
        left = 0.001;
    tv.tv_sec = (time_t)left;
    tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec) * 1e6);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Connects to the first address of `u` that answers before the deadline. */
static rd_status tcp_connect(const url *u, conn *c, rd_error *err)
{
    struct addrinfo hints, *res = NULL, *ai;
    int rc, last = 0;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if ((rc = getaddrinfo(u->host, u->port, &hints, &res)) != 0)
        return rd_error_set(err, RD_E_NET, "FHIR server %s: %s", u->host, gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno != EINPROGRESS) {
            last = errno;
            close(fd);
            continue;
        }
        if (rc != 0) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            double left = c->deadline - now_s();
            int soerr = 0;
            socklen_t len = sizeof soerr;
            rc = left > 0 ? poll(&pfd, 1, (int)(left * 1000) + 1) : 0;
            if (rc <= 0)
                soerr = rc == 0 ? ETIMEDOUT : errno;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
                soerr = errno;
            if (soerr) {
                last = soerr;
                close(fd);
                continue;
            }
        }
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        set_timeouts(fd, c->deadline - now_s());
        c->fd = fd;
        freeaddrinfo(res);
        return RD_OK;
    }
    freeaddrinfo(res);
    return rd_error_set(err, RD_E_NET, "FHIR server %s port %s: %s", u->host, u->port,
                        strerror(last ? last : ECONNREFUSED));
}

/* OpenSSL's queued errors, or the certificate verification result, as one message. */
static void tls_message(SSL *ssl, char *out, size_t size)
{
    unsigned long e = ERR_get_error();
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (v != X509_V_OK)
        snprintf(out, size, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    else if (e)
        ERR_error_string_n(e, out, size);
    else
        rd_strlcpy(out, "the connection was closed", size);
    ERR_clear_error();
}

/* TLS 1.2 or later, the server's certificate verified against `ca_file` (or the system
 * store) and matched to the host name. */
static rd_status tls_connect(const url *u, const rd_fhir_client *cl, conn *c, rd_error *err)
{
    char msg[256];
    ERR_clear_error();
    if (!(c->ctx = SSL_CTX_new(TLS_client_method())) ||
        !SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION))
        goto fail;
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (cl->ca_file && cl->ca_file[0]) {
        if (SSL_CTX_load_verify_locations(c->ctx, cl->ca_file, NULL) != 1) {
            tls_message(NULL, msg, sizeof msg);
            return rd_error_set(err, RD_E_CONFIG, "fhir.ca_certificates %s: %s", cl->ca_file, msg);
        }
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        goto fail;
    }
    if (!(c->ssl = SSL_new(c->ctx)) || SSL_set_fd(c->ssl, c->fd) != 1)
        goto fail;
    if (u->host_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), u->host) != 1)
            goto fail;
    } else if (SSL_set_tlsext_host_name(c->ssl, u->host) != 1 ||
               SSL_set1_host(c->ssl, u->host) != 1) {
        goto fail;
    }
    if (SSL_connect(c->ssl) == 1)
        return RD_OK;
fail:
    tls_message(c->ssl, msg, sizeof msg);
    return rd_error_set(err, RD_E_NET, "FHIR server %s: TLS: %s", u->host, msg);
}

static rd_status send_all(conn *c, const char *data, size_t len, rd_error *err)
{
    while (len > 0) {
        size_t chunk = len > (1u << 20) ? (1u << 20) : len;
        ssize_t n;
        if (now_s() > c->deadline)
            return rd_error_set(err, RD_E_NET, "FHIR server: timed out sending");
        if (c->ssl) {
            int w = SSL_write(c->ssl, data, (int)chunk);
            n = w > 0 ? w : -1;
        } else {
            n = send(c->fd, data, chunk, MSG_NOSIGNAL);
        }
        if (n < 0 && !c->ssl && errno == EINTR)
            continue;
        if (n <= 0)
            return rd_error_set(err, RD_E_NET, "FHIR server: sending: %s",
                                c->ssl ? "TLS write failed" : strerror(errno));
        data += n;
        len -= (size_t)n;
    }
    return RD_OK;
}

/* Reads the reply until the server closes, the headers and Content-Length bytes are in,
 * REPLY_MAX bytes are kept or the deadline passes. */
static size_t read_reply(conn *c, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap && now_s() <= c->deadline) {
        ssize_t n;
        if (c->ssl) {
            int r = SSL_read(c->ssl, buf + len, (int)(cap - 1 - len));
            n = r > 0 ? r : 0;
        } else {
            n = recv(c->fd, buf + len, cap - 1 - len, 0);
            if (n < 0 && errno == EINTR)
                continue;
        }
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        const char *body = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (body && cl && cl < body) {
            long want = strtol(cl + 17, NULL, 10);
            if (want >= 0 && (size_t)(body + 4 - buf) + (size_t)want <= len)
                break;
        }
    }
    buf[len] = '\0';
    return len;
}

/* What a failed reply says: an OperationOutcome's first diagnostics or details text, else
 * the body's first bytes, with control characters shown as '?'. */
static void reply_detail(const char *body, char *out, size_t size)
{
    cJSON *doc = cJSON_Parse(body), *issue, *d = NULL;
    out[0] = '\0';
    issue = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "issue"), 0);
    if (issue) {
        d = cJSON_GetObjectItemCaseSensitive(issue, "diagnostics");
        if (!cJSON_IsString(d))
            d = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(issue, "details"),
                                                 "text");
    }
    rd_strlcpy(out, cJSON_IsString(d) ? d->valuestring : body, size);
    cJSON_Delete(doc);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < ' ')
            *p = '?';
}

/* The bearer token: the file's first line, printable ASCII only. */
static rd_status read_token(const char *path, char *out, size_t size, rd_error *err)
{
    char *data = NULL;
    size_t len = 0;
    rd_status st = rd_read_file(path, TOKEN_MAX, &data, &len, err);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "fhir.bearer_token_file");
    len = strcspn(data, "\r\n");
    data[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] <= ' ' || (unsigned char)data[i] >= 127)
            st = RD_E_CONFIG;
    if (st != RD_OK || len == 0 || len >= size) {
        free(data);
        return rd_error_set(err, RD_E_CONFIG,
                            "fhir.bearer_token_file %s: the first line must be a token of "
                            "printable characters",
                            path);
    }
    memcpy(out, data, len + 1);
    free(data);
    return RD_OK;
}

static void conn_close(conn *c)
{
    if (c->ssl) {
        (void)SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    ERR_clear_error();
}

static rd_status post(const url *u, const char *body, size_t body_len, const rd_fhir_client *cl,
                      rd_fhir_reply *reply, rd_error *err)
{
    conn c = {.fd = -1, .deadline = now_s() + cl->timeout_s};
    char token[TOKEN_MAX + 1], head[2048 + sizeof token];
    char *buf = NULL;
    rd_status st;
    int status = 0, n;
    if (cl->bearer_file && cl->bearer_file[0] &&
        (st = read_token(cl->bearer_file, token, sizeof token, err)) != RD_OK)
        return st;
    n = snprintf(head, sizeof head,
                 "POST %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nUser-Agent: radraft/%s\r\n"
                 "Content-Type: application/fhir+json; charset=utf-8\r\n"
                 "Accept: application/fhir+json\r\nPrefer: return=minimal\r\n"
                 "Content-Length: %zu\r\n%s%s%sConnection: close\r\n\r\n",
                 u->path, strchr(u->host, ':') ? "[" : "", u->host, strchr(u->host, ':') ? "]" : "",
                 strcmp(u->port, u->tls ? "443" : "80") != 0 ? ":" : "",
                 strcmp(u->port, u->tls ? "443" : "80") != 0 ? u->port : "", RD_VERSION, body_len,
                 cl->bearer_file && cl->bearer_file[0] ? "Authorization: Bearer " : "",
                 cl->bearer_file && cl->bearer_file[0] ? token : "",
                 cl->bearer_file && cl->bearer_file[0] ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return rd_error_set(err, RD_E_INVALID, "FHIR endpoint: request head too long");
    if ((st = tcp_connect(u, &c, err)) != RD_OK ||
        (u->tls && (st = tls_connect(u, cl, &c, err)) != RD_OK) ||
        (st = send_all(&c, head, (size_t)n, err)) != RD_OK ||
        (st = send_all(&c, body, body_len, err)) != RD_OK)
        goto out;
    if (!(buf = malloc(REPLY_MAX + 1))) {
        st = rd_error_set(err, RD_E_NOMEM, "FHIR: out of memory reading the reply");
        goto out;
    }
    read_reply(&c, buf, REPLY_MAX + 1);
    if (sscanf(buf, "HTTP/1.%*[01] %3d", &status) != 1 || status < 100 || status > 599) {
        st = rd_error_set(err, RD_E_NET, "FHIR server %s: %s", u->host,
                          buf[0] ? "not an HTTP reply" : "no reply before the timeout");
        goto out;
    }
    reply->http_status = status;
    if (status >= 200 && status < 300)
        goto out;
    {
        const char *b = strstr(buf, "\r\n\r\n");
        reply_detail(b ? b + 4 : "", reply->detail, sizeof reply->detail);
    }
    reply->permanent = status >= 400 && status < 500 && status != 408 && status != 429;
    st = rd_error_set(err, RD_E_NET, "FHIR server %s: HTTP %d%s%s", u->host, status,
                      reply->detail[0] ? ": " : "", reply->detail);
out:
    free(buf);
    conn_close(&c);
    return st;
}

rd_status rd_fhir_post(const char *endpoint, const char *path, const rd_fhir_client *client,
                       rd_fhir_reply *reply, rd_error *err)
{
    rd_fhir_reply unused;
    url u;
    char *body = NULL;
    size_t len = 0;
    sigset_t pipe_set, old;
    rd_status st;
    if (!reply)
        reply = &unused;
    memset(reply, 0, sizeof *reply);
    if (!client || !(client->timeout_s > 0))
        return rd_error_set(err, RD_E_INVALID, "FHIR: a client with a timeout is required");
    if ((st = parse_url(endpoint, &u, err)) != RD_OK ||
        (st = rd_read_file(path, RD_FHIR_MAX_BUNDLE, &body, &len, err)) != RD_OK)
        return st;
    /* A server that closes early must not kill the process: SIGPIPE is held for this
     * thread during the call, and one raised meanwhile is taken before letting it go. */
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    st = post(&u, body, len, client, reply, err);
    {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(body);
    return st;
}
