/* radraft — POSTing a Bundle to a FHIR server over libcurl (radraft/http.h), and the check of
 * fhir.endpoint: the reply's status decides, and its OperationOutcome gives the detail of a
 * refusal. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/util.h"
#include "radraft/fhir.h"
#include "radraft/http.h"

#define REPLY_MAX (64 * 1024) /* bytes of the reply kept */
#define TOKEN_MAX 4096

typedef struct url {
    int tls;
    char host[256];
    char port[8];
    char path[1024];
    int host_is_ip;
} url;

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

rd_status rd_fhir_post(const char *endpoint, const char *path, const rd_fhir_client *client,
                       rd_fhir_reply *reply, rd_error *err)
{
    static const char *const headers[] = {"Accept: application/fhir+json", "Prefer: return=minimal",
                                          NULL};
    rd_fhir_reply unused;
    rd_http_reply hr;
    char token[TOKEN_MAX + 1] = "", *body = NULL;
    url u;
    rd_status st;
    if (!reply)
        reply = &unused;
    memset(reply, 0, sizeof *reply);
    if (!client || !(client->timeout_s > 0))
        return rd_error_set(err, RD_E_INVALID, "FHIR: a client with a timeout is required");
    if ((st = parse_url(endpoint, &u, err)) != RD_OK)
        return st;
    if (client->bearer_file && client->bearer_file[0] &&
        (st = rd_http_read_secret(client->bearer_file, token, sizeof token, err)) != RD_OK)
        return rd_error_prefix(err, st, "fhir.bearer_token_file");
    rd_http_options o = {client->timeout_s, client->ca_file, token, NULL, NULL};
    st = rd_http_request("POST", endpoint, headers, path, "application/fhir+json; charset=utf-8",
                         &o, NULL, &body, REPLY_MAX, &hr, err);
    if (st != RD_OK)
        return st == RD_E_NET ? rd_error_prefix(err, st, "FHIR server %s", u.host) : st;
    reply->http_status = (int)hr.status;
    if (hr.status >= 200 && hr.status < 300) {
        free(body);
        return RD_OK;
    }
    reply_detail(body, reply->detail, sizeof reply->detail);
    free(body);
    reply->permanent = hr.status >= 400 && hr.status < 500 && hr.status != 408 && hr.status != 429;
    return rd_error_set(err, RD_E_NET, "FHIR server %s: HTTP %ld%s%s", u.host, hr.status,
                        reply->detail[0] ? ": " : "", reply->detail);
}
