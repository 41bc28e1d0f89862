/* radraft — POSTing a Bundle to a FHIR server over libcurl (radraft/http.h): the reply's status
 * decides, and its OperationOutcome gives the detail of a refusal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/util.h"
#include "radraft/fhir.h"
#include "radraft/http.h"

#define REPLY_MAX (64 * 1024) /* bytes of the reply kept */
#define TOKEN_MAX 4096

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
    char host[256];
    rd_status st;
    if (!reply)
        reply = &unused;
    memset(reply, 0, sizeof *reply);
    if (!client || !(client->timeout_s > 0))
        return rd_error_set(err, RD_E_INVALID, "FHIR: a client with a timeout is required");
    if ((st = rd_http_url_check(endpoint, host, sizeof host, err)) != RD_OK)
        return rd_error_prefix(err, st, "FHIR endpoint");
    if (client->bearer_file && client->bearer_file[0] &&
        (st = rd_http_read_secret(client->bearer_file, token, sizeof token, err)) != RD_OK)
        return rd_error_prefix(err, st, "fhir.bearer_token_file");
    rd_http_options o = {client->timeout_s, client->ca_file, token, NULL, NULL};
    st = rd_http_request("POST", endpoint, headers, path, "application/fhir+json; charset=utf-8",
                         &o, NULL, &body, REPLY_MAX, &hr, err);
    if (st != RD_OK)
        return st == RD_E_NET ? rd_error_prefix(err, st, "FHIR server %s", host) : st;
    reply->http_status = (int)hr.status;
    if (hr.status >= 200 && hr.status < 300) {
        free(body);
        return RD_OK;
    }
    reply_detail(body, reply->detail, sizeof reply->detail);
    free(body);
    reply->permanent = hr.status >= 400 && hr.status < 500 && hr.status != 408 && hr.status != 429;
    return rd_error_set(err, RD_E_NET, "FHIR server %s: HTTP %ld%s%s", host, hr.status,
                        reply->detail[0] ? ": " : "", reply->detail);
}

rd_status rd_fhir_endpoint_check(const char *endpoint, rd_error *err)
{
    char host[256];
    rd_status st = rd_http_url_check(endpoint, host, sizeof host, err);
    return st == RD_OK ? st : rd_error_prefix(err, st, "FHIR endpoint");
}
