/* radraft — DICOMweb for batch --from-dicomweb (radraft/dicomweb.h): QIDO-RS for the study
 * list, WADO-RS for a study's instances, over radraft/http.h. */
#define _GNU_SOURCE /* memmem */
#include "radraft/dicomweb.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "radraft/uid.h"
#include "base/util.h"

#define QIDO_MAX_BYTES (64u << 20) /* a page of study matches, as JSON */
#define DW_PATH_MAX 1200

/* `s` percent-encoded for a query value (unreserved characters kept). */
static void encode(const char *s, char *out, size_t size)
{
    size_t o = 0;
    for (; *s && o + 4 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || c == '*')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, size - o, "%%%02X", c);
    }
    out[o] = '\0';
}

/* The first value of attribute `tag` ("0020000D") of a DICOM JSON object as text; several
 * values joined with `sep`. "" when absent. */
static void value_of(const cJSON *obj, const char *tag, char sep, char *out, size_t size)
{
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, tag), "Value");
    size_t o = 0;
    out[0] = '\0';
    for (const cJSON *x = cJSON_IsArray(v) ? v->child : NULL; x && o + 1 < size; x = x->next) {
        char num[32];
        const char *t = cJSON_IsString(x) ? x->valuestring : NULL;
        if (!t && cJSON_IsNumber(x)) {
            snprintf(num, sizeof num, "%.0f", x->valuedouble);
            t = num;
        }
        if (!t)
            continue;
        int n = snprintf(out + o, size - o, "%s%s", o ? (char[2]){sep, '\0'} : "", t);
        if (n < 0 || (size_t)n >= size - o)
            break;
        o += (size_t)n;
    }
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < ' ')
            *p = '?';
}

static int in_range(const char *d, const rd_qr_query *q)
{
    if ((!q->date_from || !q->date_from[0]) && (!q->date_to || !q->date_to[0]))
        return 1;
    if (strlen(d) != 8)
        return 0;
    return (!q->date_from || !q->date_from[0] || strcmp(d, q->date_from) >= 0) &&
           (!q->date_to || !q->date_to[0] || strcmp(d, q->date_to) <= 0);
}

/* Does "CR\\DX" name one of the modalities of the query's list? An empty list matches. */
static int modality_ok(const char *have, const char *want)
{
    char w[80], h[80];
    if (!want || !want[0] || !have[0])
        return 1;
    snprintf(h, sizeof h, "\\%s\\", have);
    rd_strlcpy(w, want, sizeof w);
    for (char *p = w, *e; p && *p; p = e ? e + 1 : NULL) {
        char one[24];
        e = strchr(p, '\\');
        snprintf(one, sizeof one, "\\%.*s\\", (int)(e ? e - p : (long)strlen(p)), p);
        if (strstr(h, one))
            return 1;
    }
    return 0;
}

rd_status
rd_dicomweb_find_studies(const char *base, const rd_http_options *http, const rd_qr_query *q,
                         rd_status (*on_match)(void *ctx, const rd_qr_study *s, rd_error *err),
                         void *ctx, rd_qr_find_stats *stats, rd_error *err)
{
    char url[4096], val[512], *body = NULL;
    static const char *const accept[] = {"Accept: application/dicom+json", NULL};
    rd_qr_find_stats fs = {0, 0, 0};
    rd_http_reply r;
    cJSON *doc = NULL;
    rd_status st;
    int n = snprintf(url, sizeof url,
                     "%s/studies?includefield=00201208&includefield=00080061&limit=%ld", base,
                     q->max_matches + 1);
    if (q->date_from || q->date_to) {
        char range[20];
        snprintf(range, sizeof range, "%s-%s", q->date_from ? q->date_from : "",
                 q->date_to ? q->date_to : "");
        n += snprintf(url + n, sizeof url - (size_t)n, "&StudyDate=%s", range);
    }
    /* One modality is matched by the server; several are checked here (QIDO-RS servers
     * differ in how they take a list). */
    if (q->modalities && q->modalities[0] && !strchr(q->modalities, '\\')) {
        encode(q->modalities, val, sizeof val);
        n += snprintf(url + n, sizeof url - (size_t)n, "&ModalitiesInStudy=%s", val);
    }
    if (q->description && q->description[0]) {
        encode(q->description, val, sizeof val);
        n += snprintf(url + n, sizeof url - (size_t)n, "&StudyDescription=%s", val);
    }
    if (n < 0 || (size_t)n >= sizeof url)
        return rd_error_set(err, RD_E_INVALID, "QIDO-RS: query URL too long");
    if ((st = rd_http_request("GET", url, accept, NULL, NULL, http, NULL, &body, QIDO_MAX_BYTES, &r,
                              err)) != RD_OK)
        return rd_error_prefix(err, st, "QIDO-RS");
    if (r.status == 204) { /* no match */
        free(body);
        if (stats)
            *stats = fs;
        return RD_OK;
    }
    if (r.status != 200) {
        st = rd_error_set(err, r.status >= 500 || r.status == 429 ? RD_E_NET : RD_E_DICOM,
                          "QIDO-RS %s: HTTP %ld", base, r.status);
        goto out;
    }
    if (!(doc = cJSON_Parse(body)) || !cJSON_IsArray(doc)) {
        st = rd_error_set(err, RD_E_DICOM, "QIDO-RS %s: the reply is not a JSON array", base);
        goto out;
    }
    if (q->max_matches > 0 && cJSON_GetArraySize(doc) > q->max_matches) {
        st = rd_error_set(err, RD_E_TOO_LARGE, "QIDO-RS %s: more than %ld matches", base,
                          q->max_matches);
        goto out;
    }
    for (const cJSON *m = doc->child; m; m = m->next) {
        rd_qr_study s;
        char count[16];
        memset(&s, 0, sizeof s);
        value_of(m, "0020000D", '\\', s.study_uid, sizeof s.study_uid);
        if (!rd_uid_valid(s.study_uid)) {
            fs.invalid++;
            continue;
        }
        value_of(m, "00080020", '\\', s.study_date, sizeof s.study_date);
        value_of(m, "00080061", '\\', s.modalities, sizeof s.modalities);
        value_of(m, "00081030", '\\', s.description, sizeof s.description);
        value_of(m, "00080050", '\\', s.accession, sizeof s.accession);
        value_of(m, "00201208", '\\', count, sizeof count);
        s.n_instances =
            count[0] && strspn(count, "0123456789") == strlen(count) && strlen(count) < 9
                ? (int)strtol(count, NULL, 10)
                : -1;
        if (strlen(s.study_date) != 8 || strspn(s.study_date, "0123456789") != 8)
            s.study_date[0] = '\0';
        if (!in_range(s.study_date, q) || !modality_ok(s.modalities, q->modalities)) {
            fs.filtered++;
            continue;
        }
        if ((st = on_match(ctx, &s, err)) != RD_OK)
            goto out;
        fs.matches++;
    }
    st = RD_OK;
out:
    if (stats)
        *stats = fs;
    cJSON_Delete(doc);
    free(body);
    return st;
}

/* The boundary parameter of a multipart Content-Type, unquoted. */
static int boundary_of(const char *ct, char *out, size_t size)
{
    const char *b = strstr(ct, "boundary=");
    size_t n;
    if (!b)
        return 0;
    b += 9;
    if (*b == '"') {
        b++;
        n = strcspn(b, "\"");
    } else {
        n = strcspn(b, "; \t");
    }
    if (n == 0 || n + 1 > size || n > 70)
        return 0;
    memcpy(out, b, n);
    out[n] = '\0';
    return 1;
}

/* Splits the multipart body in `path` into one file per part in `dir` ("w<n>.dcm"), each
 * checked to be an instance of `study_uid` (rd_qr_check_instance; others are removed and
 * counted in *refused). */
static rd_status split_parts(const char *path, const char *boundary, const char *dir,
                             const char *study_uid, int *kept, int *refused, rd_error *err)
{
    char delim[80];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    rd_status st = RD_OK;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0)
            close(fd);
        return rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
    }
    if (sb.st_size == 0) {
        close(fd);
        return RD_OK;
    }
    const char *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return rd_error_set(err, RD_E_IO, "%s: mmap: %s", path, strerror(errno));
    const char *end = m + sb.st_size;
    size_t dl = (size_t)snprintf(delim, sizeof delim, "--%s", boundary);
    const char *p = memmem(m, (size_t)(end - m), delim, dl);
    while (p && st == RD_OK) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            break; /* the closing delimiter */
        const char *hdr_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hdr_end)
            break;
        const char *data = hdr_end + 4;
        const char *next = memmem(data, (size_t)(end - data), delim, dl);
        if (!next) {
            st = rd_error_set(err, RD_E_CORRUPT, "WADO-RS: a part without its closing delimiter");
            break;
        }
        const char *data_end = next;
        if (data_end - data >= 2 && data_end[-2] == '\r' && data_end[-1] == '\n')
            data_end -= 2; /* the CRLF before the delimiter belongs to it */
        char out[DW_PATH_MAX + 32];
        snprintf(out, sizeof out, "%s/w%06d.dcm", dir, *kept + *refused + 1);
        if ((st = rd_write_file_atomic(out, data, (size_t)(data_end - data), err)) != RD_OK)
            break;
        if (rd_qr_check_instance(out, study_uid, NULL) == RD_OK) {
            (*kept)++;
        } else {
            (*refused)++;
            unlink(out);
        }
        p = next;
    }
    munmap((void *)m, (size_t)sb.st_size);
    return st;
}

rd_status rd_dicomweb_get_study(const char *base, const rd_http_options *http,
                                const char *study_uid, const char *dir, size_t max_bytes,
                                rd_qr_retrieve_stats *stats, rd_error *err)
{
    static const char *const accept[] = {
        "Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*", NULL};
    char url[4096], body[DW_PATH_MAX + 16], boundary[80];
    rd_http_reply r;
    rd_qr_retrieve_stats unused;
    rd_status st;
    if (!stats)
        stats = &unused;
    memset(stats, 0, sizeof *stats);
    stats->completed = stats->failed = stats->warning = -1;
    if (!study_uid || !rd_uid_valid(study_uid) || !dir)
        return rd_error_set(err, RD_E_INVALID, "WADO-RS: a valid study UID and a folder needed");
    snprintf(url, sizeof url, "%s/studies/%s", base, study_uid);
    snprintf(body, sizeof body, "%s/.wado-reply", dir);
    st = rd_http_request("GET", url, accept, NULL, NULL, http, body, NULL, max_bytes, &r, err);
    if (st != RD_OK) {
        unlink(body);
        return rd_error_prefix(err, st, "WADO-RS");
    }
    if (r.status != 200) {
        unlink(body);
        return rd_error_set(err, r.status >= 500 || r.status == 429 ? RD_E_NET : RD_E_DICOM,
                            "WADO-RS %s: HTTP %ld", url, r.status);
    }
    if (strncmp(r.content_type, "multipart/related", 17) != 0 ||
        !boundary_of(r.content_type, boundary, sizeof boundary)) {
        unlink(body);
        return rd_error_set(err, RD_E_DICOM, "WADO-RS %s: not a multipart reply (%s)", url,
                            r.content_type);
    }
    st = split_parts(body, boundary, dir, study_uid, &stats->received, &stats->refused, err);
    unlink(body);
    if (st == RD_OK && stats->received == 0)
        st = rd_error_set(err, RD_E_NOT_FOUND, "WADO-RS %s: no instance kept (%d refused)", url,
                          stats->refused);
    return st;
}
