/* The code table (include/radraft/codes.h). */
#include "radraft/codes.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "radraft/findings.h"
#include "report/embedded.h"

/* Copies string member `key` of `obj` into `dst` (of `size` bytes): required, non-empty,
 * shorter than `size`, printable ASCII or UTF-8 without control characters. */
static rd_status get_str(const cJSON *obj, const char *key, char *dst, size_t size,
                         const char *origin, const char *where, rd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v) || !v->valuestring || !v->valuestring[0])
        return rd_error_set(err, RD_E_CONFIG, "%s: %s: \"%s\" missing or not a string", origin,
                            where, key);
    if (strlen(v->valuestring) >= size)
        return rd_error_set(err, RD_E_CONFIG, "%s: %s: \"%s\" longer than %zu bytes", origin, where,
                            key, size - 1);
    for (const unsigned char *p = (const unsigned char *)v->valuestring; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '\\')
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: %s: \"%s\" holds a control character or backslash", origin,
                                where, key);
    rd_strlcpy(dst, v->valuestring, size);
    return RD_OK;
}

static rd_status get_code(const cJSON *parent, const char *key, rd_sr_code *out, const char *origin,
                          const char *where, rd_error *err)
{
    char place[96];
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, key);
    snprintf(place, sizeof place, "%s%s%s", where, where[0] ? "." : "", key);
    if (!cJSON_IsObject(o))
        return rd_error_set(err, RD_E_CONFIG, "%s: %s missing or not an object", origin, place);
    rd_status st = get_str(o, "code", out->value, sizeof out->value, origin, place, err);
    if (st == RD_OK)
        st = get_str(o, "scheme", out->scheme, sizeof out->scheme, origin, place, err);
    if (st == RD_OK)
        st = get_str(o, "meaning", out->meaning, sizeof out->meaning, origin, place, err);
    return st;
}

rd_status rd_sr_codes_parse(rd_sr_codes *out, const char *json, const char *origin, rd_error *err)
{
    rd_status st = RD_OK;
    cJSON *doc;
    const cJSON *v, *f, *ps;
    if (!out)
        return rd_error_set(err, RD_E_INVALID, "no output table");
    memset(out, 0, sizeof *out);
    if (!json) {
        json = rd_embedded_finding_codes_json;
        origin = "built-in finding codes";
    }
    if (!origin)
        origin = "finding codes";
    doc = cJSON_Parse(json);
    if (!doc)
        return rd_error_set(err, RD_E_CONFIG, "%s: not valid JSON", origin);
    v = cJSON_GetObjectItemCaseSensitive(doc, "version");
    if (!cJSON_IsNumber(v) || v->valuedouble != 1) {
        st = rd_error_set(err, RD_E_CONFIG, "%s: \"version\" must be 1", origin);
        goto out;
    }
    ps = cJSON_GetObjectItemCaseSensitive(doc, "private_scheme");
    if (!cJSON_IsObject(ps)) {
        st = rd_error_set(err, RD_E_CONFIG, "%s: private_scheme missing or not an object", origin);
        goto out;
    }
    if ((st = get_str(ps, "designator", out->private_scheme, sizeof out->private_scheme, origin,
                      "private_scheme", err)) != RD_OK ||
        (st = get_str(ps, "name", out->private_scheme_name, sizeof out->private_scheme_name, origin,
                      "private_scheme", err)) != RD_OK ||
        (st = get_str(ps, "responsible", out->private_scheme_responsible,
                      sizeof out->private_scheme_responsible, origin, "private_scheme", err)) !=
            RD_OK)
        goto out;
    if ((st = get_code(doc, "procedure", &out->procedure, origin, "", err)) != RD_OK)
        goto out;
    f = cJSON_GetObjectItemCaseSensitive(doc, "findings");
    if (!cJSON_IsObject(f)) {
        st = rd_error_set(err, RD_E_CONFIG, "%s: findings missing or not an object", origin);
        goto out;
    }
    for (const cJSON *it = f->child; it; it = it->next) {
        rd_finding x;
        if (rd_finding_from_name(it->string, &x, NULL) != RD_OK || x >= RD_FINDING_N_ABNORMAL) {
            st = rd_error_set(err, RD_E_CONFIG, "%s: findings.%s: not one of the 14 findings",
                              origin, it->string ? it->string : "?");
            goto out;
        }
    }
    for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++) {
        if ((st = get_code(f, rd_finding_name((rd_finding)i), &out->finding[i], origin, "findings",
                           err)) != RD_OK)
            goto out;
        for (int j = 0; j < i; j++)
            if (strcmp(out->finding[i].value, out->finding[j].value) == 0 &&
                strcmp(out->finding[i].scheme, out->finding[j].scheme) == 0) {
                st = rd_error_set(err, RD_E_CONFIG, "%s: findings %s and %s share the code %s",
                                  origin, rd_finding_name((rd_finding)j),
                                  rd_finding_name((rd_finding)i), out->finding[i].value);
                goto out;
            }
    }
    v = cJSON_GetObjectItemCaseSensitive(doc, "states");
    if ((st = get_code(v, "present", &out->present, origin, "states", err)) != RD_OK ||
        (st = get_code(v, "absent", &out->absent, origin, "states", err)) != RD_OK ||
        (st = get_code(v, "uncertain", &out->uncertain, origin, "states", err)) != RD_OK ||
        (st = get_code(doc, "score", &out->score, origin, "", err)) != RD_OK)
        goto out;
out:
    cJSON_Delete(doc);
    if (st != RD_OK)
        memset(out, 0, sizeof *out);
    return st;
}

rd_status rd_sr_codes_load(rd_sr_codes *out, const char *path, rd_error *err)
{
    char *text = NULL;
    if (!path || !path[0])
        return rd_sr_codes_parse(out, NULL, NULL, err);
    rd_status st = rd_read_file(path, RD_CODES_MAX_FILE, &text, NULL, err);
    if (st == RD_OK)
        st = rd_sr_codes_parse(out, text, path, err);
    free(text);
    return st;
}

int rd_sr_codes_find(const rd_sr_codes *codes, const char *value, const char *scheme)
{
    if (!codes || !value || !scheme)
        return -1;
    for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++)
        if (strcmp(codes->finding[i].value, value) == 0 &&
            strcmp(codes->finding[i].scheme, scheme) == 0)
            return i;
    return -1;
}
