/* radraft — HTTP requests over libcurl (see radraft/http.h). One easy handle per request:
 * the callers (the outbox thread, a batch worker) each make their own. */
#include "radraft/http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"

typedef struct http_url {
    int tls;
    char host[256];
    char port[8];
    char path[1024];
    int host_is_ip;
} http_url;

/* http[s]://host[:port][/path], host a name, an IPv4 address or [IPv6]; no user info, no
 * query or fragment, nothing outside printable ASCII. */
static rd_status parse_url(const char *s, http_url *u, rd_error *err)
{
    const char *p, *host, *end;
    size_t n;
    memset(u, 0, sizeof *u);
    for (p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 127 || *p == '#' || *p == '?' ||
            *p == '@' || *p == '\\')
            return rd_error_set(err, RD_E_INVALID,
                                "'%.200s': only http[s]://host[:port][/path] "
                                "(printable, no user, query or fragment)",
                                s);
    if (strncmp(s, "https://", 8) == 0) {
        u->tls = 1;
        host = s + 8;
    } else if (strncmp(s, "http://", 7) == 0) {
        host = s + 7;
    } else {
        return rd_error_set(err, RD_E_INVALID, "'%.200s': not an http(s) URL", s);
    }
    end = host + strcspn(host, "/");
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (!close || (size_t)(close - host - 1) >= sizeof u->host)
            return rd_error_set(err, RD_E_INVALID, "'%.200s': bad IPv6 host", s);
        memcpy(u->host, host + 1, (size_t)(close - host - 1));
        p = close + 1;
        u->host_is_ip = 1;
    } else {
        p = memchr(host, ':', (size_t)(end - host));
        if (!p)
            p = end;
        if (p == host || (size_t)(p - host) >= sizeof u->host)
            return rd_error_set(err, RD_E_INVALID, "'%.200s': bad host", s);
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
            return rd_error_set(err, RD_E_INVALID, "'%.200s': bad port", s);
        snprintf(u->port, sizeof u->port, "%ld", port);
    } else if (p != end) {
        return rd_error_set(err, RD_E_INVALID, "'%.200s': bad host", s);
    } else {
        rd_strlcpy(u->port, u->tls ? "443" : "80", sizeof u->port);
    }
    if (rd_strlcpy(u->path, *end ? end : "/", sizeof u->path) >= sizeof u->path)
        return rd_error_set(err, RD_E_INVALID, "'%.200s': path too long", s);
    return RD_OK;
}

rd_status rd_http_url_check(const char *url_text, char *host, size_t host_size, rd_error *err)
{
    http_url u;
    rd_status st = parse_url(url_text, &u, err);
    if (st == RD_OK && host)
        rd_strlcpy(host, u.host, host_size);
    return st;
}

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init = CURLE_OK;

static void curl_init(void)
{
    g_curl_init = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Where the reply's body goes. */
typedef struct sink {
    FILE *fp;  /* to a file, or */
    char *buf; /* to memory */
    size_t len, max;
    int too_large; /* the file would exceed max */
} sink;

static size_t on_data(char *data, size_t size, size_t n, void *ctx)
{
    sink *k = ctx;
    size_t bytes = size * n;
    if (k->fp) {
        if (k->len + bytes > k->max) {
            k->too_large = 1;
            return 0; /* ends the transfer */
        }
        if (fwrite(data, 1, bytes, k->fp) != bytes)
            return 0;
        k->len += bytes;
        return bytes;
    }
    /* To memory: what fits is kept, the rest read and dropped. */
    size_t room = k->max > k->len ? k->max - k->len : 0, take = bytes < room ? bytes : room;
    if (take) {
        char *nb = realloc(k->buf, k->len + take + 1);
        if (!nb)
            return 0;
        k->buf = nb;
        memcpy(k->buf + k->len, data, take);
        k->len += take;
        k->buf[k->len] = '\0';
    }
    return bytes;
}

rd_status rd_http_read_secret(const char *path, char *out, size_t size, rd_error *err)
{
    char *data = NULL;
    size_t len = 0;
    rd_status st = rd_read_file(path, 4096, &data, &len, err);
    if (st != RD_OK)
        return st;
    len = strcspn(data, "\r\n");
    data[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] < ' ' || (unsigned char)data[i] >= 127)
            st = RD_E_CONFIG;
    if (st != RD_OK || len == 0 || len >= size) {
        free(data);
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: the first line must be 1 to %zu printable characters", path,
                            size - 1);
    }
    memcpy(out, data, len + 1);
    free(data);
    return RD_OK;
}

rd_status rd_http_request(const char *method, const char *url, const char *const *headers,
                          const char *body_path, const char *content_type,
                          const rd_http_options *opts, const char *out_path, char **body,
                          size_t max_body, rd_http_reply *reply, rd_error *err)
{
    CURL *c = NULL;
    struct curl_slist *hl = NULL;
    FILE *in = NULL;
    sink k = {0};
    char errbuf[CURL_ERROR_SIZE] = "", line[4200];
    rd_http_reply unused;
    rd_status st = RD_OK;
    int post = method && strcmp(method, "POST") == 0;
    CURLcode rc;

    if (!reply)
        reply = &unused;
    memset(reply, 0, sizeof *reply);
    if (body)
        *body = NULL;
    if (!url || !opts || !(opts->timeout_s > 0) || (!out_path && !body) ||
        (!post && (!method || strcmp(method, "GET") != 0)) || (post && !body_path))
        return rd_error_set(err, RD_E_INVALID, "HTTP: bad request arguments");
    pthread_once(&g_curl_once, curl_init);
    if (g_curl_init != CURLE_OK)
        return rd_error_set(err, RD_E_INTERNAL, "libcurl: %s", curl_easy_strerror(g_curl_init));
    if (!(c = curl_easy_init()))
        return rd_error_set(err, RD_E_NOMEM, "libcurl: cannot create a handle");

    k.max = max_body;
    if (out_path && !(k.fp = fopen(out_path, "wb"))) {
        st = rd_error_set(err, RD_E_IO, "%s: %s", out_path, strerror(errno));
        goto out;
    }
    if (post) {
        struct stat sb;
        if (!(in = fopen(body_path, "rb")) || fstat(fileno(in), &sb) != 0) {
            st = rd_error_set(err, errno == ENOENT ? RD_E_NOT_FOUND : RD_E_IO, "%s: %s", body_path,
                              strerror(errno));
            goto out;
        }
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READDATA, in);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)sb.st_size);
        snprintf(line, sizeof line, "Content-Type: %s", content_type ? content_type : "");
        hl = curl_slist_append(hl, line);
        hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */
    }
    for (int i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    if (opts->bearer && opts->bearer[0]) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", opts->bearer);
        hl = curl_slist_append(hl, line);
    }
    if (opts->user && opts->user[0]) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, opts->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, opts->password ? opts->password : "");
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: thread-safe */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(opts->timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(opts->timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (opts->ca_file && opts->ca_file[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, opts->ca_file);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "radraft");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);

    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply->status);
    {
        char *ct = NULL;
        if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
            rd_strlcpy(reply->content_type, ct, sizeof reply->content_type);
    }
    if (k.too_large)
        st = rd_error_set(err, RD_E_TOO_LARGE, "%s: the reply exceeds %zu bytes", url, max_body);
    else if (rc != CURLE_OK)
        st = rd_error_set(err, rc == CURLE_OUT_OF_MEMORY ? RD_E_NOMEM : RD_E_NET, "%s: %s", url,
                          errbuf[0] ? errbuf : curl_easy_strerror(rc));
    if (st != RD_OK)
        reply->status = rc == CURLE_OK || k.too_large ? reply->status : 0;
out:
    if (k.fp && fclose(k.fp) != 0 && st == RD_OK)
        st = rd_error_set(err, RD_E_IO, "%s: %s", out_path, strerror(errno));
    if (in)
        fclose(in);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (body && st == RD_OK) {
        *body = k.buf ? k.buf : calloc(1, 1);
        if (!*body)
            st = rd_error_set(err, RD_E_NOMEM, "out of memory");
    } else {
        free(k.buf);
    }
    return st;
}
