/* radraft — the web server of the review page (stage `web`).
 *
 * What it does: one libmicrohttpd daemon (a small pool of polling threads, so that a slow
 * client holds a connection, never a thread) answers the routes of docs/web-api.md: the
 * page and its assets (compiled into the binary, served from a fixed table: there is no
 * file system path to traverse), the JSON API of the review queue and its users, /healthz
 * and /metrics. What it owns: the daemon, the in-memory session table and login lockout
 * (web_session.c), and the request bodies it accumulates, bounded by web.max_body_bytes.
 * What it does not own: every decision about the queue. Each action calls the review
 * queue's function (radraft/review.h) with the session's user, which checks the role and
 * the state and writes the audit row; this file only maps the outcome to a status code.
 *
 * Threads: each request opens its own store connection and closes it before answering,
 * since an rd_store is one SQLite connection that must never be shared between threads.
 * Logging: method, route pattern, status and time at debug; patient data never above it.
 */
#include "radraft/web.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "base/util.h"
#include "radraft/dicom.h"
#include "radraft/findings.h"
#include "radraft/image.h"
#include "radraft/index.h"
#include "radraft/log.h"
#include "radraft/metrics.h"
#include "radraft/review.h"
#include "radraft/store.h"
#include "web/web_int.h"

/* The page and its assets, embedded by cmake/embed.cmake. */
extern const char rd_embedded_web_index_html[];
extern const size_t rd_embedded_web_index_html_len;
extern const char rd_embedded_web_app_js[];
extern const size_t rd_embedded_web_app_js_len;
extern const char rd_embedded_web_app_css[];
extern const size_t rd_embedded_web_app_css_len;

/* Polling threads of the daemon. Requests are short but some are heavy (an argon2id hash
 * at login, decoding an image), so a few threads keep one heavy request from holding up
 * the rest without oversubscribing the node's drafting workers. */
#define WEB_THREADS 4
/* The tallest PNG the image route makes: a very thin image at width 2048 stops here. */
#define WEB_IMAGE_MAX_HEIGHT 8192
/* The most items one queue listing returns. */
#define WEB_LIST_MAX 10000

#define COOKIE_NAME "radraft_session"

static const char csp[] = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                          "script-src 'self'; frame-ancestors 'none'";

struct rd_web {
    rd_config cfg;
    rd_web_options opts;
    rd_store_options store_opts;
    rd_dicom_options dicom_opts;
    struct MHD_Daemon *daemon;
    rd__web_sessions *sessions;
    rd__web_lockout *lockout;
    char *tls_cert, *tls_key;
    int tls;
    int port;
};

/* One request as it arrives: its body, accumulated up to web.max_body_bytes. */
typedef struct web_req {
    char *body;
    size_t len, cap;
    double t0;
    int answered;     /* a response was queued before the body was read (413) */
    int too_large;    /* a body without a declared length outgrew the limit */
    size_t discarded; /* the bytes of such a body dropped since */
} web_req;

/* One request being answered: what the handlers read and the response they leave. */
typedef struct call {
    rd_web *web;
    struct MHD_Connection *conn;
    web_req *req;
    const char *method;
    const char *route; /* the route's pattern, for the log */
    rd__web_session sess;
    char token[RD__WEB_TOKEN_HEX];
    int status;
    const char *ctype;
    char *body; /* malloc'ed, or NULL with a persistent `static_body` */
    const char *static_body;
    size_t len;
    int no_store;
    char cookie[256];
    const char *allow;
} call;

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- responses ---- */

static void reply_json(call *c, int status, cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    free(c->body);
    c->body = NULL;
    c->static_body = NULL;
    if (!text) {
        c->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        c->static_body = "{\"error\":\"out of memory\"}";
        c->len = strlen(c->static_body);
    } else {
        c->status = status;
        c->body = text;
        c->len = strlen(text);
    }
    c->ctype = "application/json";
}

static void reply_error(call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(call *c, int status, const char *fmt, ...)
{
    char msg[RD_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, "error", msg)) {
        cJSON_Delete(o);
        o = NULL;
    }
    reply_json(c, status, o);
}

/* Maps the outcome of a review function to the contract's codes. `conflict` is the code of
 * RD_E_INVALID and RD_E_TOO_LARGE: 409 where the input was checked here first (so that
 * what remains is a state that forbids the action), 400 where it was not. */
static void reply_status(call *c, const rd_error *e, int conflict)
{
    int code;
    switch (e->status) {
    case RD_E_NOT_FOUND:
        code = MHD_HTTP_NOT_FOUND;
        break;
    case RD_E_DENIED:
        code = MHD_HTTP_FORBIDDEN;
        break;
    case RD_E_INVALID:
    case RD_E_TOO_LARGE:
        code = conflict;
        break;
    case RD_E_DB:
        code = MHD_HTTP_SERVICE_UNAVAILABLE;
        break;
    default:
        code = MHD_HTTP_INTERNAL_SERVER_ERROR;
        break;
    }
    if (code >= 500)
        rd_log_warn("web: %s %s: %s", c->method, c->route, rd_error_message(e));
    reply_error(c, code, "%s", rd_error_message(e));
}

static void add_header(struct MHD_Response *r, const char *name, const char *value)
{
    if (MHD_add_response_header(r, name, value) != MHD_YES)
        rd_log_warn("web: could not add the header %s", name);
}

static enum MHD_Result send_call(call *c)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    if (c->body)
        r = MHD_create_response_from_buffer(c->len, c->body, MHD_RESPMEM_MUST_FREE);
    else
        r = MHD_create_response_from_buffer(c->len, (void *)(c->static_body ? c->static_body : ""),
                                            MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(c->body);
        c->body = NULL;
        return MHD_NO;
    }
    c->body = NULL; /* the response owns it now */
    add_header(r, "Content-Type", c->ctype ? c->ctype : "text/plain; charset=utf-8");
    add_header(r, "Content-Security-Policy", csp);
    add_header(r, "X-Frame-Options", "DENY");
    add_header(r, "X-Content-Type-Options", "nosniff");
    add_header(r, "Referrer-Policy", "no-referrer");
    if (c->no_store)
        add_header(r, "Cache-Control", "no-store");
    if (c->cookie[0])
        add_header(r, "Set-Cookie", c->cookie);
    if (c->allow)
        add_header(r, "Allow", c->allow);
    ret = MHD_queue_response(c->conn, (unsigned)c->status, r);
    MHD_destroy_response(r);
    rd_log_debug("web: %s %s %d %.1f ms", c->method, c->route, c->status,
                 (now_mono() - c->req->t0) * 1000.0);
    return ret;
}

/* ---- small readers of the request ---- */

static const char *arg(call *c, const char *name)
{
    return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* A whole decimal number within [lo, hi]; 0 when `text` is anything else. */
static int parse_long(const char *text, long lo, long hi, long *out)
{
    char *end;
    long v;
    if (!text || !*text || strlen(text) > 18)
        return 0;
    for (const char *p = text; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static int parse_double(const char *text, double lo, double hi, double *out)
{
    char *end;
    double v;
    if (!text || !*text || strlen(text) > 32)
        return 0;
    errno = 0;
    v = strtod(text, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static void client_address(call *c, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    rd_strlcpy(out, "unknown", size);
    if (!ci || !ci->client_addr)
        return;
    socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                           : sizeof(struct sockaddr_in);
    if (getnameinfo(ci->client_addr, len, out, (socklen_t)size, NULL, 0, NI_NUMERICHOST) != 0)
        rd_strlcpy(out, "unknown", size);
}

/* The body as a JSON object: an empty body is {}. NULL (and a 400 left in `c`) when it is
 * not JSON or not an object. */
static cJSON *body_object(call *c)
{
    cJSON *o;
    if (c->req->len == 0)
        return cJSON_CreateObject();
    o = cJSON_ParseWithLength(c->req->body, c->req->len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        reply_error(c, MHD_HTTP_BAD_REQUEST, "the body is not a JSON object");
        return NULL;
    }
    return o;
}

/* A member that must be a string when present: 1 with *out (NULL when absent), 0 with a
 * 400 left in `c` when it has another type. */
static int opt_string(call *c, const cJSON *o, const char *name, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 1;
    if (!cJSON_IsString(v)) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "'%s' must be a string", name);
        return 0;
    }
    *out = v->valuestring;
    return 1;
}

static rd_status open_store(call *c, rd_store **s, rd_error *e)
{
    rd_status st = rd_store_open(s, c->web->cfg.server_data_dir, &c->web->store_opts, e);
    if (st != RD_OK)
        reply_status(c, e, MHD_HTTP_INTERNAL_SERVER_ERROR);
    return st;
}

/* ---- JSON of review items ---- */

static void add_str_or_null(cJSON *o, const char *name, const char *v)
{
    if (v && v[0])
        cJSON_AddStringToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

static void add_raw_json(cJSON *o, const char *name, const char *json)
{
    cJSON *v = json ? cJSON_Parse(json) : NULL;
    if (v)
        cJSON_AddItemToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

static cJSON *summary_json(const rd_store_review_item *it)
{
    cJSON *o = cJSON_CreateObject();
    char date[16];
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", (double)it->id);
    cJSON_AddStringToObject(o, "state", rd_review_state_name(it->state));
    cJSON_AddStringToObject(o, "priority", it->priority ? "urgent" : "routine");
    cJSON_AddNumberToObject(o, "created_at", it->created_at);
    add_str_or_null(o, "claimed_by", it->state == RD_REVIEW_IN_REVIEW ? it->claimed_by : NULL);
    add_str_or_null(o, "signed_by", it->signed_by);
    if (it->study_date > 0) {
        snprintf(date, sizeof date, "%08d", it->study_date);
        cJSON_AddStringToObject(o, "study_date", date);
    } else {
        cJSON_AddNullToObject(o, "study_date");
    }
    return o;
}

typedef struct history_ctx {
    cJSON *arr;
} history_ctx;

static rd_status history_row(void *vctx, const rd_audit_row *r, rd_error *err)
{
    history_ctx *h = vctx;
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(h->arr, o)) {
        cJSON_Delete(o);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
    cJSON_AddNumberToObject(o, "at", r->at);
    cJSON_AddStringToObject(o, "user", r->user);
    cJSON_AddStringToObject(o, "action", r->action);
    cJSON_AddStringToObject(o, "detail", r->detail);
    return RD_OK;
}

/* The images of an item (images_json) as a parsed array; NULL when it has none. */
static cJSON *item_images(const rd_store_review_item *it)
{
    cJSON *a = it->images_json ? cJSON_Parse(it->images_json) : NULL;
    if (!cJSON_IsArray(a)) {
        cJSON_Delete(a);
        return NULL;
    }
    return a;
}

static int image_is_frontal(const cJSON *img)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(img, "frontal"));
}

static cJSON *patient_json(const cJSON *images)
{
    const cJSON *img, *frontal = NULL;
    rd_dicom_meta meta;
    rd_error e;
    /* The frontal image names the patient; any image will do when none is marked. */
    cJSON_ArrayForEach(img, images)
    {
        if (image_is_frontal(img)) {
            frontal = img;
            break;
        }
    }
    if (!frontal)
        frontal = cJSON_GetArrayItem(images, 0);
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(frontal, "path");
    if (!cJSON_IsString(path) || rd_dicom_read_meta(path->valuestring, &meta, &e) != RD_OK)
        return cJSON_CreateNull();
    cJSON *p = cJSON_CreateObject();
    if (!p)
        return NULL;
    cJSON_AddStringToObject(p, "name", meta.patient_name);
    cJSON_AddStringToObject(p, "id", meta.patient_id);
    cJSON_AddStringToObject(p, "sex", meta.patient_sex);
    cJSON_AddStringToObject(p, "birth_date", meta.patient_birth_date);
    return p;
}

/* What each similar case said (its present and uncertain findings) and where it came from
 * (seed, import, signed), read from the archive: a radiologist weighs a signed neighbour
 * above a seed image. A row replaced since the draft has neither. */
static void add_neighbour_states(rd_store *s, cJSON *neighbours)
{
    cJSON *n;
    cJSON_ArrayForEach(n, neighbours)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(n, "id");
        char states[RD_FINDING_COUNT + 1];
        int source = 0, found = 0;
        rd_error e;
        if (!cJSON_IsNumber(id) ||
            rd_store_archive_states(s, (int64_t)id->valuedouble, states, sizeof states, &source,
                                    &found, &e) != RD_OK ||
            !found)
            continue;
        cJSON_AddStringToObject(n, "source", rd_archive_source_name((rd_archive_source)source));
        cJSON *st = cJSON_AddObjectToObject(n, "states");
        for (int f = 0; st && f < RD_FINDING_N_ABNORMAL; f++) {
            int v = states[f] - '0';
            if (v == RD_STATE_PRESENT || v == RD_STATE_UNCERTAIN)
                cJSON_AddStringToObject(st, rd_finding_name((rd_finding)f),
                                        rd_state_name((rd_finding_state)v));
        }
    }
}

/* The whole ITEM of the contract; NULL when out of memory (or the history failed). */
static cJSON *item_json(rd_store *s, const rd_store_review_item *it, rd_error *e)
{
    cJSON *o = summary_json(it), *images = item_images(it), *arr, *v;
    history_ctx h;
    if (!o)
        goto nomem;
    cJSON_AddItemToObject(o, "patient", patient_json(images));
    add_raw_json(o, "findings", it->findings_json);
    /* A finding's heat map is a file of the server: the page learns only that there is one
     * (GET /api/queue/:id/heatmap?finding=NAME serves it). */
    {
        cJSON *f, *fo = cJSON_GetObjectItemCaseSensitive(o, "findings");
        cJSON_ArrayForEach(f,
                           fo) if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(f, "heatmap")))
            cJSON_ReplaceItemInObjectCaseSensitive(f, "heatmap", cJSON_CreateTrue());
    }
    add_raw_json(o, "final_states", it->final_states);
    cJSON_AddStringToObject(o, "findings_text", it->findings_text ? it->findings_text : "");
    cJSON_AddStringToObject(o, "impression_text", it->impression_text ? it->impression_text : "");
    if (it->final_findings_text)
        cJSON_AddStringToObject(o, "final_findings_text", it->final_findings_text);
    else
        cJSON_AddNullToObject(o, "final_findings_text");
    if (it->final_impression_text)
        cJSON_AddStringToObject(o, "final_impression_text", it->final_impression_text);
    else
        cJSON_AddNullToObject(o, "final_impression_text");
    v = it->neighbours_json ? cJSON_Parse(it->neighbours_json) : NULL;
    if (cJSON_IsArray(v))
        add_neighbour_states(s, v);
    cJSON_AddItemToObject(o, "neighbours", cJSON_IsArray(v) ? v : cJSON_CreateArray());
    if (v && !cJSON_IsArray(v))
        cJSON_Delete(v);
    v = cJSON_AddObjectToObject(o, "edits");
    if (v) {
        cJSON_AddNumberToObject(v, "findings_added", it->findings_added);
        cJSON_AddNumberToObject(v, "findings_removed", it->findings_removed);
        cJSON_AddNumberToObject(v, "findings_changed", it->findings_changed);
        cJSON_AddNumberToObject(v, "characters", it->chars_edited);
    }
    h.arr = cJSON_AddArrayToObject(o, "history");
    if (!h.arr)
        goto nomem;
    if (rd_store_audit_list(s, it->study_uid, NULL, history_row, &h, e) != RD_OK) {
        cJSON_Delete(o);
        cJSON_Delete(images);
        return NULL;
    }
    arr = cJSON_AddArrayToObject(o, "images");
    if (!arr)
        goto nomem;
    int index = 0;
    const cJSON *img;
    cJSON_ArrayForEach(img, images)
    {
        cJSON *x = cJSON_CreateObject();
        const cJSON *vp = cJSON_GetObjectItemCaseSensitive(img, "view_position");
        if (!x || !cJSON_AddItemToArray(arr, x)) {
            cJSON_Delete(x);
            goto nomem;
        }
        cJSON_AddNumberToObject(x, "index", index++);
        cJSON_AddStringToObject(x, "view_position", cJSON_IsString(vp) ? vp->valuestring : "");
        cJSON_AddBoolToObject(x, "frontal", image_is_frontal(img));
    }
    cJSON_Delete(images);
    return o;
nomem:
    cJSON_Delete(o);
    cJSON_Delete(images);
    rd_error_set(e, RD_E_NOMEM, "out of memory");
    return NULL;
}

/* ---- service routes ---- */

static void route_healthz(call *c)
{
    rd_store *s = NULL;
    rd_error e;
    long pending = 0, failed = 0;
    cJSON *o = cJSON_CreateObject();
    int ok = rd_store_open(&s, c->web->cfg.server_data_dir, &c->web->store_opts, &e) == RD_OK &&
             rd_store_outbox_count(s, "pending", &pending, &e) == RD_OK &&
             rd_store_outbox_count(s, "failed", &failed, &e) == RD_OK;
    rd_store_close(s);
    c->no_store = 1;
    if (!o) {
        reply_json(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        return;
    }
    cJSON_AddStringToObject(o, "status", ok ? "ok" : "degraded");
    cJSON_AddBoolToObject(o, "database", ok);
    cJSON_AddNumberToObject(o, "workers", c->web->opts.workers);
    cJSON_AddNumberToObject(o, "outbox_pending", (double)pending);
    cJSON_AddNumberToObject(o, "outbox_failed", (double)failed);
    if (!ok)
        cJSON_AddStringToObject(o, "error", rd_error_message(&e));
    reply_json(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, o);
}

/* A growing text buffer for /metrics. */
typedef struct textbuf {
    char *data;
    size_t len, cap;
    int failed;
} textbuf;

static void tb_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tb_printf(textbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (b->failed)
        return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
}

/* A histogram in the Prometheus text format: cumulative buckets, +Inf, sum and count. */
static void write_histogram(textbuf *b, const char *name, const char *help, const rd_histogram *h)
{
    unsigned long cum = 0;
    tb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < RD_HISTOGRAM_BUCKETS; i++) {
        cum += atomic_load(&h->counts[i]);
        tb_printf(b, "%s_bucket{le=\"%g\"} %lu\n", name, rd_histogram_bounds[i], cum);
    }
    cum += atomic_load(&h->counts[RD_HISTOGRAM_BUCKETS]);
    tb_printf(b, "%s_bucket{le=\"+Inf\"} %lu\n%s_sum %.6f\n%s_count %lu\n", name, cum, name,
              (double)atomic_load(&h->sum_us) / 1e6, name, cum);
}

static void route_metrics(call *c)
{
    rd_store *s = NULL;
    rd_error e;
    textbuf b = {NULL, 0, 0, 0};
    long instances = 0, drafted = 0, skipped = 0, failed_jobs = 0, n;
    rd_status st;
    if (open_store(c, &s, &e) != RD_OK)
        return;
    st = rd_store_count_instances(s, NULL, &instances, &e);
    if (st == RD_OK)
        st = rd_store_count_reviews(s, NULL, NULL, &drafted, &e);
    if (st == RD_OK)
        st = rd_store_count_jobs(s, NULL, RD_JOB_FAILED, &failed_jobs, &e);
    if (st == RD_OK)
        st = rd_store_count_study_versions(s, "skipped", &skipped, &e);
    tb_printf(&b,
              "# HELP radraft_instances_received_total DICOM instances in the store.\n"
              "# TYPE radraft_instances_received_total counter\n"
              "radraft_instances_received_total %ld\n",
              instances);
    tb_printf(&b,
              "# HELP radraft_studies_total Studies by outcome (drafted: review items; skipped: "
              "study versions not drafted, with their reason; failed: failed jobs).\n"
              "# TYPE radraft_studies_total counter\n"
              "radraft_studies_total{outcome=\"drafted\"} %ld\n"
              "radraft_studies_total{outcome=\"skipped\"} %ld\n"
              "radraft_studies_total{outcome=\"failed\"} %ld\n",
              drafted, skipped, failed_jobs);
    tb_printf(&b, "# HELP radraft_queue_items Review items by state.\n"
                  "# TYPE radraft_queue_items gauge\n");
    for (int i = 0; i < RD_REVIEW_STATE_COUNT && st == RD_OK; i++) {
        const char *name = rd_review_state_name((rd_review_state)i);
        if ((st = rd_store_count_reviews(s, NULL, name, &n, &e)) == RD_OK)
            tb_printf(&b, "radraft_queue_items{state=\"%s\"} %ld\n", name, n);
    }
    tb_printf(&b, "# HELP radraft_outbox_deliveries Deliveries waiting or given up.\n"
                  "# TYPE radraft_outbox_deliveries gauge\n");
    const char *const outbox_states[] = {"pending", "failed"};
    for (int i = 0; i < 2 && st == RD_OK; i++)
        if ((st = rd_store_outbox_count(s, outbox_states[i], &n, &e)) == RD_OK)
            tb_printf(&b, "radraft_outbox_deliveries{state=\"%s\"} %ld\n", outbox_states[i], n);
    rd_store_close(s);
    if (c->web->opts.metrics) {
        write_histogram(&b, "radraft_draft_seconds",
                        "Drafting of a study by this node, read to record.",
                        &c->web->opts.metrics->draft);
        write_histogram(&b, "radraft_cstore_seconds",
                        "One C-STORE received by this node: the file durable and its row "
                        "committed.",
                        &c->web->opts.metrics->cstore);
    }
    if (st != RD_OK || b.failed) {
        free(b.data);
        if (st != RD_OK)
            reply_status(c, &e, MHD_HTTP_INTERNAL_SERVER_ERROR);
        else
            reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return;
    }
    c->status = MHD_HTTP_OK;
    c->body = b.data;
    c->len = b.len;
    c->ctype = "text/plain; version=0.0.4; charset=utf-8";
    c->no_store = 1;
}

/* ---- sessions ---- */

static void session_json_reply(call *c, const rd__web_session *s)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "user", s->user);
        cJSON_AddStringToObject(o, "display_name", s->display_name);
        cJSON_AddStringToObject(o, "role", rd_user_role_name(s->role));
        cJSON_AddStringToObject(o, "csrf", s->csrf);
    }
    reply_json(c, MHD_HTTP_OK, o);
}

static void route_login(call *c)
{
    cJSON *b = body_object(c);
    const char *name = NULL, *password = NULL;
    char addr[NI_MAXHOST], ukey[160], akey[160 + NI_MAXHOST];
    rd_store *s = NULL;
    rd_store_user u;
    rd_error e;
    double now = now_mono();
    rd__web_session sess;
    if (!b)
        return;
    if (!opt_string(c, b, "user", &name) || !opt_string(c, b, "password", &password))
        goto out;
    if (!name || !password) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "'user' and 'password' are required");
        goto out;
    }
    client_address(c, addr, sizeof addr);
    snprintf(ukey, sizeof ukey, "user:%.100s", name);
    snprintf(akey, sizeof akey, "addr:%s", addr);
    if (rd__web_lockout_locked(c->web->lockout, ukey, now) ||
        rd__web_lockout_locked(c->web->lockout, akey, now)) {
        rd_log_warn("web: login of '%.64s' from %s refused: too many failed logins", name, addr);
        reply_error(c, MHD_HTTP_TOO_MANY_REQUESTS,
                    "too many failed logins: try again in %d seconds",
                    c->web->cfg.web_lockout_seconds);
        goto out;
    }
    if (open_store(c, &s, &e) != RD_OK)
        goto out;
    if (rd_review_user_login(s, name, password, RD_ROLE_VIEWER, &u, &e) != RD_OK) {
        if (e.status == RD_E_DENIED && strcmp(e.msg, "wrong user name or password") == 0) {
            int fu = rd__web_lockout_fail(c->web->lockout, ukey, now);
            int fa = rd__web_lockout_fail(c->web->lockout, akey, now);
            rd_log_warn("web: failed login of '%.64s' from %s (%d for the user, %d from the "
                        "address)",
                        name, addr, fu, fa);
            rd_audit_event ev = {
                rd_user_name_valid(name) ? name : NULL, "login-failed", 0, NULL, NULL, addr};
            rd_error ae;
            if (rd_store_audit_append(s, &ev, &ae) != RD_OK)
                rd_log_warn("web: audit of a failed login: %s", rd_error_message(&ae));
            reply_error(c, MHD_HTTP_UNAUTHORIZED, "wrong user name or password");
        } else {
            reply_status(c, &e, MHD_HTTP_BAD_REQUEST);
        }
        goto out;
    }
    memset(&sess, 0, sizeof sess);
    rd_strlcpy(sess.user, u.name, sizeof sess.user);
    rd_strlcpy(sess.display_name, u.display_name, sizeof sess.display_name);
    sess.role = u.role;
    if (rd__web_session_open(c->web->sessions, &sess, now, c->token, &e) != RD_OK) {
        reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", rd_error_message(&e));
        goto out;
    }
    rd__web_lockout_clear(c->web->lockout, ukey);
    rd_audit_event ev = {u.name, "login", 0, NULL, NULL, addr};
    if (rd_store_audit_append(s, &ev, &e) != RD_OK)
        rd_log_warn("web: audit of a login: %s", rd_error_message(&e));
    snprintf(c->cookie, sizeof c->cookie, COOKIE_NAME "=%s; HttpOnly; SameSite=Strict; Path=/%s",
             c->token, c->web->tls ? "; Secure" : "");
    rd_log_info("web: %s logged in from %s", u.name, addr);
    session_json_reply(c, &sess);
out:
    rd_store_close(s);
    cJSON_Delete(b);
}

static void route_logout(call *c)
{
    rd__web_session_close(c->web->sessions, c->token);
    snprintf(c->cookie, sizeof c->cookie,
             COOKIE_NAME "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0%s",
             c->web->tls ? "; Secure" : "");
    reply_json(c, MHD_HTTP_OK, cJSON_CreateObject());
}

/* ---- the queue ---- */

typedef struct list_ctx {
    cJSON *arr;
} list_ctx;

static rd_status list_row(void *vctx, const rd_store_review_item *it, rd_error *err)
{
    list_ctx *l = vctx;
    cJSON *o = summary_json(it);
    if (!o || !cJSON_AddItemToArray(l->arr, o)) {
        cJSON_Delete(o);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
    return RD_OK;
}

static void route_queue(call *c)
{
    const char *state = arg(c, "state"), *sort = arg(c, "sort"), *limit = arg(c, "limit");
    rd_review_state st_filter = RD_REVIEW_DRAFT;
    long lim = 0, n;
    rd_store *s = NULL;
    rd_error e;
    cJSON *o = NULL, *counts;
    list_ctx l;
    if (state && rd_review_state_parse(state, &st_filter, &e) != RD_OK) {
        reply_error(c, MHD_HTTP_BAD_REQUEST,
                    "state: draft, in_review, signed, rejected or "
                    "superseded");
        return;
    }
    if (sort && strcmp(sort, "priority") != 0 && strcmp(sort, "age") != 0) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "sort: priority or age");
        return;
    }
    if (limit && !parse_long(limit, 1, WEB_LIST_MAX, &lim)) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "limit: 1 to %d", WEB_LIST_MAX);
        return;
    }
    if (open_store(c, &s, &e) != RD_OK)
        return;
    if (rd_review_user_require(s, c->sess.user, RD_ROLE_VIEWER, NULL, &e) != RD_OK) {
        reply_status(c, &e, MHD_HTTP_BAD_REQUEST);
        goto out;
    }
    o = cJSON_CreateObject();
    counts = o ? cJSON_AddObjectToObject(o, "counts") : NULL;
    l.arr = counts ? cJSON_AddArrayToObject(o, "items") : NULL;
    if (!l.arr) {
        reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        goto out;
    }
    for (int i = 0; i < RD_REVIEW_STATE_COUNT; i++) {
        const char *name = rd_review_state_name((rd_review_state)i);
        if (rd_store_count_reviews(s, NULL, name, &n, &e) != RD_OK) {
            reply_status(c, &e, MHD_HTTP_INTERNAL_SERVER_ERROR);
            goto out;
        }
        cJSON_AddNumberToObject(counts, name, (double)n);
    }
    if (rd_store_review_list(s, state ? (int)st_filter : -1, !sort || strcmp(sort, "priority") == 0,
                             lim, list_row, &l, &e) != RD_OK) {
        reply_status(c, &e, MHD_HTTP_INTERNAL_SERVER_ERROR);
        goto out;
    }
    reply_json(c, MHD_HTTP_OK, o);
    o = NULL;
out:
    cJSON_Delete(o);
    rd_store_close(s);
}

static void route_item(call *c, int64_t id)
{
    rd_store *s = NULL;
    rd_store_review_item it;
    rd_error e;
    cJSON *o;
    memset(&it, 0, sizeof it);
    if (open_store(c, &s, &e) != RD_OK)
        return;
    if (rd_review_show(s, id, c->sess.user, &it, &e) != RD_OK) {
        reply_status(c, &e, MHD_HTTP_BAD_REQUEST);
    } else if (!(o = item_json(s, &it, &e))) {
        reply_status(c, &e, MHD_HTTP_INTERNAL_SERVER_ERROR);
    } else {
        reply_json(c, MHD_HTTP_OK, o);
    }
    rd_store_review_item_clear(&it);
    rd_store_close(s);
}

/* Windows `img` (values in 0..1) in place to centre `center` and width `width`. */
static void apply_window(rd_image *img, double center, double width)
{
    const float lo = (float)(center - width / 2), inv = (float)(1.0 / width);
    size_t n = (size_t)img->width * (size_t)img->height;
    for (size_t i = 0; i < n; i++) {
        float v = (img->data[i] - lo) * inv;
        img->data[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    }
}

/* Replies with `img` scaled to `width` pixels (the height keeps the aspect, at most
 * WEB_IMAGE_MAX_HEIGHT) as a PNG: gray, or with `overlay` an RGBA overlay
 * (rd_png_encode_overlay). `what` names the picture in the error. */
static void reply_png_at_width(call *c, const rd_image *img, long width, const char *what,
                               int overlay)
{
    rd_image *sized = NULL;
    void *png = NULL;
    size_t png_len = 0;
    rd_error e;
    long height = lround((double)img->height * (double)width / (double)img->width);
    height = height < 1 ? 1 : height;
    if (height > WEB_IMAGE_MAX_HEIGHT) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "the %s would be %ld pixels tall at width %ld", what,
                    height, width);
        return;
    }
    if (rd_image_resize(img, (int)width, (int)height, &sized, &e) != RD_OK ||
        (overlay ? rd_png_encode_overlay(sized, &png, &png_len, &e)
                 : rd_png_encode(sized, &png, &png_len, &e)) != RD_OK) {
        reply_status(c, &e, MHD_HTTP_INTERNAL_SERVER_ERROR);
        rd_image_free(sized);
        return;
    }
    rd_image_free(sized);
    c->status = MHD_HTTP_OK;
    c->body = png;
    c->len = png_len;
    c->ctype = "image/png";
}

static void route_image(call *c, int64_t id)
{
    const char *index_s = arg(c, "index"), *width_s = arg(c, "width");
    const char *center_s = arg(c, "center"), *window_s = arg(c, "window");
    long index = -1, width = 1024;
    double center = 0.5, window = 1.0;
    rd_store *s = NULL;
    rd_store_review_item it;
    rd_image *img = NULL;
    rd_error e;
    cJSON *images = NULL;
    const cJSON *pick = NULL, *v;
    memset(&it, 0, sizeof it);
    if ((index_s && !parse_long(index_s, 0, RD_STUDY_MAX_INSTANCES, &index)) ||
        (width_s && !parse_long(width_s, 64, 2048, &width))) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "index: 0 or more; width: 64 to 2048");
        return;
    }
    if ((center_s || window_s) &&
        (!center_s || !window_s || !parse_double(center_s, -1.0, 2.0, &center) ||
         !parse_double(window_s, 1e-3, 4.0, &window))) {
        reply_error(c, MHD_HTTP_BAD_REQUEST,
                    "center (-1 to 2) and window (0.001 to 4) go together, in the image's 0..1 "
                    "display range");
        return;
    }
    if (open_store(c, &s, &e) != RD_OK)
        return;
    if (rd_review_user_require(s, c->sess.user, RD_ROLE_VIEWER, NULL, &e) != RD_OK ||
        rd_store_review_get(s, id, &it, &e) != RD_OK) {
        reply_status(c, &e, MHD_HTTP_BAD_REQUEST);
        goto out;
    }
    images = item_images(&it);
    int i = 0;
    cJSON_ArrayForEach(v, images)
    {
        if ((index < 0 && image_is_frontal(v)) || i == index) {
            pick = v;
            break;
        }
        i++;
    }
    if (!pick && index < 0)
        pick = cJSON_GetArrayItem(images, 0);
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(pick, "path");
    if (!cJSON_IsString(path)) {
        reply_error(c, MHD_HTTP_NOT_FOUND, "item %lld has no image %ld", (long long)id,
                    index < 0 ? 0 : index);
        goto out;
    }
    if (rd_dicom_read_image(path->valuestring, &c->web->dicom_opts, &img, NULL, &e) != RD_OK) {
        reply_status(c, &e, MHD_HTTP_INTERNAL_SERVER_ERROR);
        goto out;
    }
    if (center_s)
        apply_window(img, center, window);
    reply_png_at_width(c, img, width, "image", 0);
out:
    rd_image_free(img);
    cJSON_Delete(images);
    rd_store_review_item_clear(&it);
    rd_store_close(s);
}

/* GET /api/queue/:id/heatmap?finding=NAME[&width=N]: the heat map the draft keeps for a
 * finding (over the frontal image), at `width` pixels (64 to 2048, default 1024; the
 * height keeps the aspect), as an RGBA PNG to lay over the image (rd_png_encode_overlay). */
static void route_heatmap(call *c, int64_t id)
{
    const char *finding_s = arg(c, "finding"), *width_s = arg(c, "width");
    long width = 1024;
    rd_finding f;
    rd_store *s = NULL;
    rd_store_review_item it;
    rd_image *hm = NULL;
    rd_error e;
    cJSON *fo = NULL;
    const cJSON *path;
    memset(&it, 0, sizeof it);
    if (!finding_s || rd_finding_from_name(finding_s, &f, NULL) != RD_OK ||
        f == RD_FINDING_NO_FINDING || (width_s && !parse_long(width_s, 64, 2048, &width))) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "finding: a finding's name; width: 64 to 2048");
        return;
    }
    if (open_store(c, &s, &e) != RD_OK)
        return;
    if (rd_review_user_require(s, c->sess.user, RD_ROLE_VIEWER, NULL, &e) != RD_OK ||
        rd_store_review_get(s, id, &it, &e) != RD_OK) {
        reply_status(c, &e, MHD_HTTP_BAD_REQUEST);
        goto out;
    }
    fo = it.findings_json ? cJSON_Parse(it.findings_json) : NULL;
    path = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(fo, rd_finding_name(f)), "heatmap");
    if (!cJSON_IsString(path)) {
        reply_error(c, MHD_HTTP_NOT_FOUND, "item %lld has no heat map of %s", (long long)id,
                    rd_finding_name(f));
        goto out;
    }
    if (rd_png_read(path->valuestring, &hm, NULL, &e) != RD_OK) {
        reply_status(c, &e, MHD_HTTP_INTERNAL_SERVER_ERROR);
        goto out;
    }
    reply_png_at_width(c, hm, width, "heat map", 1);
out:
    rd_image_free(hm);
    cJSON_Delete(fo);
    rd_store_review_item_clear(&it);
    rd_store_close(s);
}

/* A text of an edit, checked here so that what the review function refuses afterwards is
 * the item's state (409), not the input (400). */
static int text_ok(call *c, const char *name, const char *text)
{
    size_t n;
    if (!text)
        return 1;
    n = strlen(text);
    if (n > RD_REVIEW_MAX_TEXT) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "%s: more than %d bytes", name, RD_REVIEW_MAX_TEXT);
        return 0;
    }
    if (!rd_utf8_valid(text, n)) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "%s: not valid UTF-8", name);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        if ((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f) {
            reply_error(c, MHD_HTTP_BAD_REQUEST, "%s: control character at byte %zu", name, i);
            return 0;
        }
    }
    return 1;
}

/* The changes of an edit or amendment body; 0 with a 400 left in `c` when malformed. */
static int parse_changes(call *c, const cJSON *b, rd_review_changes *ch)
{
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(b, "set"), *v;
    memset(ch, 0, sizeof *ch);
    if (!opt_string(c, b, "findings_text", &ch->findings_text) ||
        !opt_string(c, b, "impression_text", &ch->impression_text) ||
        !text_ok(c, "findings_text", ch->findings_text) ||
        !text_ok(c, "impression_text", ch->impression_text))
        return 0;
    if (set && !cJSON_IsNull(set) && !cJSON_IsObject(set)) {
        reply_error(c, MHD_HTTP_BAD_REQUEST, "'set' must be an object {FINDING: STATE}");
        return 0;
    }
    cJSON_ArrayForEach(v, set)
    {
        rd_finding f;
        rd_finding_state st;
        rd_error e;
        if (rd_finding_from_name(v->string, &f, &e) != RD_OK || f == RD_FINDING_NO_FINDING ||
            !cJSON_IsString(v) || rd_state_from_name(v->valuestring, &st, &e) != RD_OK ||
            (st != RD_STATE_PRESENT && st != RD_STATE_UNCERTAIN && st != RD_STATE_ABSENT)) {
            reply_error(c, MHD_HTTP_BAD_REQUEST,
                        "set: '%.64s' must be an abnormal finding of the vocabulary, and its "
                        "state present, uncertain or absent",
                        v->string ? v->string : "");
            return 0;
        }
        int k = 0;
        while (k < ch->n_set && ch->set_finding[k] != f)
            k++;
        if (k == RD_FINDING_COUNT)
            continue;
        ch->set_finding[k] = f;
        ch->set_state[k] = st;
        if (k == ch->n_set)
            ch->n_set++;
    }
    return 1;
}

static int reason_known(const char *reason)
{
    for (const char *const *r = rd_review_reject_reasons(); *r; r++)
        if (strcmp(*r, reason) == 0)
            return 1;
    return 0;
}

static void route_action(call *c, int64_t id, const char *verb)
{
    cJSON *b = body_object(c), *o;
    rd_store *s = NULL;
    rd_store_review_item it;
    rd_review_changes ch;
    rd_review_signed sg;
    rd_error e;
    rd_status st;
    const rd_config *cfg = &c->web->cfg;
    const char *user = c->sess.user;
    memset(&it, 0, sizeof it);
    memset(&sg, 0, sizeof sg);
    if (!b)
        return;
    if ((strcmp(verb, "edit") == 0 || strcmp(verb, "amend") == 0) && !parse_changes(c, b, &ch))
        goto out;
    const char *reason = NULL, *note = NULL;
    if (strcmp(verb, "reject") == 0) {
        if (!opt_string(c, b, "reason", &reason) || !opt_string(c, b, "note", &note))
            goto out;
        if (!reason || !reason_known(reason)) {
            reply_error(c, MHD_HTTP_BAD_REQUEST,
                        "reason: wrong-findings, poor-image, not-chest-radiograph or other");
            goto out;
        }
        if (strcmp(reason, "other") == 0 && (!note || !note[0])) {
            reply_error(c, MHD_HTTP_BAD_REQUEST, "the reason 'other' needs a note");
            goto out;
        }
        if (!text_ok(c, "note", note))
            goto out;
    }
    if (open_store(c, &s, &e) != RD_OK)
        goto out;
    if (strcmp(verb, "claim") == 0) {
        st = rd_review_claim(s, cfg, id, user, &e);
    } else if (strcmp(verb, "release") == 0) {
        st = rd_review_release(s, id, user, &e);
    } else if (strcmp(verb, "edit") == 0) {
        st = rd_review_edit(s, cfg, id, user, &ch, &e);
    } else if (strcmp(verb, "reject") == 0) {
        st = rd_review_reject(s, id, user, reason, note, &e);
    } else if (strcmp(verb, "amend") == 0) {
        st = rd_review_sign(s, cfg, id, user, &ch, &sg, &e);
    } else {
        /* An unchanged draft is signed in one request: claimed first when nobody holds it
         * (a live claim of someone else makes the claim fail with their name). */
        st = rd_store_review_get(s, id, &it, &e);
        if (st == RD_OK && it.state == RD_REVIEW_DRAFT)
            st = rd_review_claim(s, cfg, id, user, &e);
        rd_store_review_item_clear(&it);
        if (st == RD_OK)
            st = rd_review_sign(s, cfg, id, user, NULL, &sg, &e);
    }
    if (st != RD_OK) {
        reply_status(c, &e, MHD_HTTP_CONFLICT);
        goto out;
    }
    /* The item as the action left it. Read without rd_review_show: the action has its own
     * audit row, and a second "view" row per action would only blur the trail. */
    if (rd_store_review_get(s, id, &it, &e) != RD_OK || !(o = item_json(s, &it, &e))) {
        reply_status(c, &e, MHD_HTTP_INTERNAL_SERVER_ERROR);
        goto out;
    }
    if (sg.version) {
        cJSON *x = cJSON_AddObjectToObject(o, "signed");
        if (x) {
            cJSON_AddNumberToObject(x, "version", sg.version);
            cJSON_AddStringToObject(x, "sop_instance_uid", sg.sr_sop_instance_uid);
            cJSON_AddStringToObject(x, "series_uid", sg.series_uid);
            cJSON_AddNumberToObject(x, "deliveries", sg.destinations);
            if (sg.air_sr_sop_instance_uid[0])
                cJSON_AddStringToObject(x, "air_sop_instance_uid", sg.air_sr_sop_instance_uid);
        }
    }
    rd_log_info("web: %s %s item %lld", user, verb, (long long)id);
    reply_json(c, MHD_HTTP_OK, o);
out:
    rd_store_review_item_clear(&it);
    rd_store_close(s);
    cJSON_Delete(b);
}

/* ---- users ---- */

static cJSON *user_json(const rd_store_user *u)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "name", u->name);
    cJSON_AddStringToObject(o, "display_name", u->display_name);
    cJSON_AddStringToObject(o, "role", rd_user_role_name(u->role));
    cJSON_AddBoolToObject(o, "disabled", u->disabled != 0);
    return o;
}

static rd_status user_row(void *ctx, const rd_store_user *u, rd_error *err)
{
    cJSON *o = user_json(u);
    if (!o || !cJSON_AddItemToArray(ctx, o)) {
        cJSON_Delete(o);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
    return RD_OK;
}

static void route_users(call *c, const char *name, const char *verb)
{
    int is_post = strcmp(c->method, "POST") == 0;
    cJSON *b = is_post ? body_object(c) : NULL, *arr = NULL;
    rd_store *s = NULL;
    rd_store_user u;
    rd_error e;
    rd_status st;
    if (is_post && !b)
        return;
    if (open_store(c, &s, &e) != RD_OK)
        goto out;
    if (!is_post) {
        if (rd_review_user_require(s, c->sess.user, RD_ROLE_ADMIN, NULL, &e) != RD_OK) {
            reply_status(c, &e, MHD_HTTP_BAD_REQUEST);
            goto out;
        }
        if (!(arr = cJSON_CreateArray())) {
            reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
            goto out;
        }
        if (rd_store_user_list(s, user_row, arr, &e) != RD_OK) {
            reply_status(c, &e, MHD_HTTP_INTERNAL_SERVER_ERROR);
            goto out;
        }
        reply_json(c, MHD_HTTP_OK, arr);
        arr = NULL;
        goto out;
    }
    if (!verb) {
        const char *role_s, *display, *password;
        rd_user_role role;
        if (!opt_string(c, b, "name", &name) || !opt_string(c, b, "display_name", &display) ||
            !opt_string(c, b, "role", &role_s) || !opt_string(c, b, "password", &password))
            goto out;
        if (!name || !display || !role_s || rd_user_role_parse(role_s, &role, &e) != RD_OK) {
            reply_error(c, MHD_HTTP_BAD_REQUEST,
                        "'name', 'display_name' and 'role' (viewer, radiologist or admin) are "
                        "required");
            goto out;
        }
        st = rd_review_user_add(s, c->sess.user, name, role, display, password, &e);
    } else {
        st = rd_review_user_disable(s, c->sess.user, name, strcmp(verb, "disable") == 0, &e);
    }
    if (st != RD_OK || rd_store_user_get(s, name, &u, &e) != RD_OK) {
        reply_status(c, &e, MHD_HTTP_BAD_REQUEST);
        goto out;
    }
    reply_json(c, MHD_HTTP_OK, user_json(&u));
out:
    cJSON_Delete(arr);
    cJSON_Delete(b);
    rd_store_close(s);
}

/* ---- routing ---- */

typedef struct asset {
    const char *path;
    const char *ctype;
    const char *data;
    const size_t *len;
} asset;

static const asset assets[] = {
    {"/", "text/html; charset=utf-8", rd_embedded_web_index_html, &rd_embedded_web_index_html_len},
    {"/assets/app.js", "text/javascript; charset=utf-8", rd_embedded_web_app_js,
     &rd_embedded_web_app_js_len},
    {"/assets/app.css", "text/css; charset=utf-8", rd_embedded_web_app_css,
     &rd_embedded_web_app_css_len},
};

/* An item id from the URL: 1 to 18 digits, not 0. */
static int parse_id(const char *text, size_t n, int64_t *out)
{
    char buf[20];
    long v;
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, text, n);
    buf[n] = '\0';
    if (!parse_long(buf, 1, INT64_MAX < LONG_MAX ? INT64_MAX : LONG_MAX, &v))
        return 0;
    *out = v;
    return 1;
}

/* Which methods a route takes, so that a wrong one is 405 with Allow. */
static int method_ok(call *c, const char *allowed)
{
    int get = strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0;
    int post = strcmp(c->method, "POST") == 0;
    if ((strcmp(allowed, "GET") == 0 && get) || (strcmp(allowed, "POST") == 0 && post) ||
        (strcmp(allowed, "GET, POST") == 0 && (get || post)))
        return 1;
    c->allow = allowed;
    reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "%s takes %s", c->route, allowed);
    return 0;
}

/* The session of an /api/ request, and its CSRF token for a POST; 0 with a 401 or 403 left
 * in `c` when either is missing. */
static int authorize(call *c)
{
    const char *cookie = MHD_lookup_connection_value(c->conn, MHD_COOKIE_KIND, COOKIE_NAME);
    rd_error e;
    if (!cookie ||
        rd__web_session_find(c->web->sessions, cookie, now_mono(), &c->sess, &e) != RD_OK) {
        reply_error(c, MHD_HTTP_UNAUTHORIZED, "not logged in, or the session has expired");
        return 0;
    }
    rd_strlcpy(c->token, cookie, sizeof c->token);
    if (strcmp(c->method, "POST") == 0 &&
        !rd__web_csrf_ok(c->sess.csrf,
                         MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "X-CSRF-Token"))) {
        reply_error(c, MHD_HTTP_FORBIDDEN, "missing or wrong X-CSRF-Token header");
        return 0;
    }
    return 1;
}

static void route_queue_path(call *c, const char *rest)
{
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    int64_t id;
    static const char *const verbs[] = {"claim", "release", "edit", "sign", "amend", "reject"};
    if (!parse_id(rest, n, &id)) {
        c->route = "/api/queue/?";
        reply_error(c, MHD_HTTP_NOT_FOUND, "no such route");
        return;
    }
    if (!slash) {
        c->route = "/api/queue/:id";
        if (method_ok(c, "GET") && authorize(c))
            route_item(c, id);
        return;
    }
    if (strcmp(slash + 1, "image") == 0) {
        c->route = "/api/queue/:id/image";
        if (method_ok(c, "GET") && authorize(c))
            route_image(c, id);
        return;
    }
    if (strcmp(slash + 1, "heatmap") == 0) {
        c->route = "/api/queue/:id/heatmap";
        if (method_ok(c, "GET") && authorize(c))
            route_heatmap(c, id);
        return;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(slash + 1, verbs[i]) == 0) {
            c->route = "/api/queue/:id/:action";
            if (method_ok(c, "POST") && authorize(c))
                route_action(c, id, verbs[i]);
            return;
        }
    c->route = "/api/queue/:id/?";
    reply_error(c, MHD_HTTP_NOT_FOUND, "no such route");
}

static void route_users_path(call *c, const char *rest)
{
    char name[RD_USER_NAME_MAX + 1];
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : 0;
    c->route = "/api/users/:name/:action";
    if (!slash || n == 0 || n >= sizeof name ||
        (strcmp(slash + 1, "disable") != 0 && strcmp(slash + 1, "enable") != 0)) {
        reply_error(c, MHD_HTTP_NOT_FOUND, "no such route");
        return;
    }
    memcpy(name, rest, n);
    name[n] = '\0';
    if (method_ok(c, "POST") && authorize(c))
        route_users(c, name, slash + 1);
}

static void dispatch(call *c, const char *url)
{
    c->route = url;
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++)
        if (strcmp(url, assets[i].path) == 0) {
            if (!method_ok(c, "GET"))
                return;
            c->status = MHD_HTTP_OK;
            c->static_body = assets[i].data;
            c->len = *assets[i].len;
            c->ctype = assets[i].ctype;
            c->no_store = i == 0;
            return;
        }
    if (strcmp(url, "/healthz") == 0) {
        if (method_ok(c, "GET"))
            route_healthz(c);
        return;
    }
    if (strcmp(url, "/metrics") == 0) {
        if (method_ok(c, "GET"))
            route_metrics(c);
        return;
    }
    if (strncmp(url, "/api/", 5) != 0) {
        c->route = strncmp(url, "/assets/", 8) == 0 ? "/assets/?" : "?";
        reply_error(c, MHD_HTTP_NOT_FOUND, "no such page");
        return;
    }
    c->no_store = 1;
    if (strcmp(url, "/api/login") == 0) {
        if (method_ok(c, "POST"))
            route_login(c);
    } else if (strcmp(url, "/api/logout") == 0) {
        if (method_ok(c, "POST") && authorize(c))
            route_logout(c);
    } else if (strcmp(url, "/api/me") == 0) {
        if (method_ok(c, "GET") && authorize(c))
            session_json_reply(c, &c->sess);
    } else if (strcmp(url, "/api/queue") == 0) {
        if (method_ok(c, "GET") && authorize(c))
            route_queue(c);
    } else if (strncmp(url, "/api/queue/", 11) == 0) {
        route_queue_path(c, url + 11);
    } else if (strcmp(url, "/api/users") == 0) {
        c->route = "/api/users";
        if (method_ok(c, "GET, POST") && authorize(c))
            route_users(c, NULL, NULL);
    } else if (strncmp(url, "/api/users/", 11) == 0) {
        route_users_path(c, url + 11);
    } else {
        c->route = "/api/?";
        reply_error(c, MHD_HTTP_NOT_FOUND, "no such route");
    }
}

static enum MHD_Result too_large(rd_web *web, struct MHD_Connection *conn, web_req *r,
                                 const char *method)
{
    call c;
    memset(&c, 0, sizeof c);
    c.web = web;
    c.conn = conn;
    c.req = r;
    c.method = method;
    c.route = "(body)";
    c.no_store = 1;
    r->answered = 1;
    reply_error(&c, MHD_HTTP_CONTENT_TOO_LARGE, "the body exceeds %d bytes (web.max_body_bytes)",
                web->cfg.web_max_body_bytes);
    return send_call(&c);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    rd_web *web = cls;
    web_req *r = *con_cls;
    size_t max = (size_t)web->cfg.web_max_body_bytes;
    (void)version;
    if (!r) {
        /* The headers are in; the body (if any) follows in later calls. A declared length
         * over the limit is refused now, before a byte of it is read. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        r->t0 = now_mono();
        *con_cls = r;
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || *end || n > max)
                return too_large(web, conn, r, method);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->answered)
            return MHD_YES;
        /* A body without a declared length (chunked) that outgrows the limit: this
         * libmicrohttpd cannot answer before the body ends, so the rest is dropped unread
         * into memory and answered 413 at its end, and a client that keeps sending long
         * after the limit is disconnected. */
        if (r->too_large || n > max - r->len) {
            r->too_large = 1;
            r->discarded += n;
            return r->discarded > 16 * max ? MHD_NO : MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1)
                cap *= 2;
            char *grown = realloc(r->body, cap);
            if (!grown)
                return MHD_NO;
            r->body = grown;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    if (r->answered)
        return MHD_YES;
    if (r->too_large)
        return too_large(web, conn, r, method);
    call c;
    memset(&c, 0, sizeof c);
    c.web = web;
    c.conn = conn;
    c.req = r;
    c.method = method;
    dispatch(&c, url);
    if (!c.status)
        reply_error(&c, MHD_HTTP_INTERNAL_SERVER_ERROR, "no response");
    return send_call(&c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    web_req *r = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (r) {
        free(r->body);
        free(r);
        *con_cls = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    rd_log_warn("web: %s", msg);
}

/* ---- start and stop ---- */

/* Reads a PEM file of the TLS configuration; RD_E_CONFIG when it is missing or is not PEM
 * of the `kind` expected ("CERTIFICATE", "PRIVATE KEY"). */
static rd_status read_pem(const char *key, const char *path, const char *kind, char **out,
                          rd_error *err)
{
    size_t len;
    rd_error e;
    if (rd_read_file(path, 1 << 20, out, &len, &e) != RD_OK)
        return rd_error_set(err, RD_E_CONFIG, "%s: %s", key, rd_error_message(&e));
    if (!strstr(*out, "-----BEGIN ") || !strstr(*out, kind)) {
        free(*out);
        *out = NULL;
        return rd_error_set(err, RD_E_CONFIG, "%s: %s is not a PEM %s", key, path, kind);
    }
    return RD_OK;
}

rd_status rd_web_start(rd_web **out, const rd_config *cfg, const rd_web_options *opts,
                       rd_error *err)
{
    rd_web *web = calloc(1, sizeof *web);
    struct sockaddr_in sa4;
    struct sockaddr_in6 sa6;
    struct sockaddr *sa;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_AUTO;
    rd_status st;
    *out = NULL;
    if (!web)
        return rd_error_set(err, RD_E_NOMEM, "out of memory starting the web server");
    web->cfg = *cfg;
    if (opts)
        web->opts = *opts;
    rd_dicom_options_from_config(&web->dicom_opts, cfg);
    if ((st = rd_store_options_from_config(&web->store_opts, cfg, err)) != RD_OK)
        goto fail;
    if (cfg->web_port <= 0 || cfg->web_port > 65535) {
        st = rd_error_set(err, RD_E_CONFIG, "web.port: %d is not a port to listen on",
                          cfg->web_port);
        goto fail;
    }
    memset(&sa4, 0, sizeof sa4);
    memset(&sa6, 0, sizeof sa6);
    if (inet_pton(AF_INET, cfg->web_bind, &sa4.sin_addr) == 1) {
        sa4.sin_family = AF_INET;
        sa4.sin_port = htons((uint16_t)cfg->web_port);
        sa = (struct sockaddr *)&sa4;
    } else if (inet_pton(AF_INET6, cfg->web_bind, &sa6.sin6_addr) == 1) {
        sa6.sin6_family = AF_INET6;
        sa6.sin6_port = htons((uint16_t)cfg->web_port);
        sa = (struct sockaddr *)&sa6;
        flags |= MHD_USE_IPv6;
    } else {
        st = rd_error_set(err, RD_E_CONFIG, "web.bind: '%s' is not an IPv4 or IPv6 address",
                          cfg->web_bind);
        goto fail;
    }
    if (!!cfg->web_tls_certificate[0] != !!cfg->web_tls_private_key[0]) {
        st = rd_error_set(err, RD_E_CONFIG,
                          "web.tls_certificate and web.tls_private_key go together");
        goto fail;
    }
    if (cfg->web_tls_certificate[0]) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            st = rd_error_set(err, RD_E_CONFIG, "this libmicrohttpd was built without TLS");
            goto fail;
        }
        if ((st = read_pem("web.tls_certificate", cfg->web_tls_certificate, "CERTIFICATE",
                           &web->tls_cert, err)) != RD_OK ||
            (st = read_pem("web.tls_private_key", cfg->web_tls_private_key, "PRIVATE KEY",
                           &web->tls_key, err)) != RD_OK)
            goto fail;
        web->tls = 1;
        flags |= MHD_USE_TLS;
    }
    if ((st = rd__web_sessions_create(&web->sessions, RD__WEB_MAX_SESSIONS,
                                      cfg->web_session_idle_minutes * 60.0, err)) != RD_OK ||
        (st = rd__web_lockout_create(&web->lockout, cfg->web_login_max_failures,
                                     cfg->web_lockout_seconds, err)) != RD_OK)
        goto fail;
    /* The options that depend on the configuration, as one array: the thread pool only
     * with two threads or more (libmicrohttpd splits the connection limit among its
     * threads, so never more threads than connections), the TLS key and certificate only
     * under TLS. */
    unsigned int threads = WEB_THREADS;
    if ((unsigned int)cfg->web_max_connections < threads)
        threads = (unsigned int)cfg->web_max_connections;
    struct MHD_OptionItem extra[4];
    int n_extra = 0;
    if (threads > 1)
        extra[n_extra++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    if (web->tls) {
        extra[n_extra++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, web->tls_key};
        extra[n_extra++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, web->tls_cert};
    }
    extra[n_extra] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    web->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->web_port, NULL, NULL, on_request, web, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, web, MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)cfg->web_max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)cfg->web_request_timeout_seconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)cfg->web_max_header_bytes, MHD_OPTION_NOTIFY_COMPLETED, on_completed, web,
        MHD_OPTION_ARRAY, extra, MHD_OPTION_END);
    if (!web->daemon) {
        st = rd_error_set(err, web->tls ? RD_E_CONFIG : RD_E_NET,
                          "web server: cannot listen on %s port %d%s", cfg->web_bind, cfg->web_port,
                          web->tls ? " (port in use, or a TLS key or certificate that GnuTLS "
                                     "refuses)"
                                   : " (in use?)");
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(web->daemon, MHD_DAEMON_INFO_BIND_PORT);
    web->port = di ? di->port : cfg->web_port;
    rd_log_info("web: serving the review page on %s://%s:%d", web->tls ? "https" : "http",
                cfg->web_bind, web->port);
    *out = web;
    return RD_OK;
fail:
    rd_web_stop(web);
    return st;
}

int rd_web_port(const rd_web *web)
{
    return web ? web->port : 0;
}

void rd_web_stop(rd_web *web)
{
    if (!web)
        return;
    if (web->daemon)
        MHD_stop_daemon(web->daemon);
    rd__web_sessions_free(web->sessions);
    rd__web_lockout_free(web->lockout);
    free(web->tls_cert);
    if (web->tls_key) {
        /* The private key stays out of freed memory. */
        explicit_bzero(web->tls_key, strlen(web->tls_key));
        free(web->tls_key);
    }
    free(web);
}
