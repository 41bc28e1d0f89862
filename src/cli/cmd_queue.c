/* radraft queue: the review queue on the command line (src/review/queue.c does the work). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "radraft/findings.h"
#include "radraft/review.h"
#include "radraft/store.h"
#include "base/util.h"

static const char help[] =
    "usage: radraft queue ACTION [ARGS] [OPTIONS]\n"
    "The radiologists' review queue of the drafts in the data directory.\n\n"
    "  list [--state S] [--sort priority|age] [--limit N]\n"
    "                      the items (state draft, in_review, signed, rejected, superseded;\n"
    "                      default: every state), urgent first by default\n"
    "  show ID             texts, finding states and scores, neighbours, signatures and\n"
    "                      history of an item (the view is audited)\n"
    "  claim ID            take an item for review (review.claim_minutes)\n"
    "  release ID          give a claim back\n"
    "  edit ID [--findings TEXT] [--impression TEXT] [--set FINDING=present|uncertain|absent]...\n"
    "                      change the texts or set findings explicitly (a claimed item)\n"
    "  sign ID             write the signed SR of a claimed item and queue it to every\n"
    "                      destination; the study joins the archive with the signed states\n"
    "  amend ID [--findings TEXT] [--impression TEXT] [--set ...]...\n"
    "                      sign a new version of a signed item\n"
    "  reject ID --reason wrong-findings|poor-image|not-chest-radiograph|other [--note TEXT]\n"
    "  stats [--since YYYY-MM-DD]\n"
    "                      items per state, signed unchanged, draft vs signed agreement per\n"
    "                      finding, mean edit size, median time from draft to signature\n\n"
    "  --user NAME         who acts (required but for list and stats)\n"
    "  --data-dir D        data directory (server.data_dir, default ./radraft-data)\n"
    "  --json              JSON output\n" RD_CLI_COMMON_HELP;

typedef struct queue_args {
    rd_cli cli;
    const char *action;
    int64_t id;
    const char *user, *state, *sort, *since, *reason, *note;
    long limit;
    int json;
    rd_review_changes changes;
} queue_args;

/* ---- output ---- */

static int print_json(cJSON *o)
{
    char *text = o ? cJSON_Print(o) : NULL;
    if (!text)
        return -1;
    puts(text);
    cJSON_free(text);
    return 0;
}

static void time_text(double t, char *out, size_t size)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&s, &tm) || strftime(out, size, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
        rd_strlcpy(out, "-", size);
}

static cJSON *item_json(const rd_store_review_item *it)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", (double)it->id);
    cJSON_AddStringToObject(o, "state", rd_review_state_name(it->state));
    cJSON_AddStringToObject(o, "priority", it->priority ? "urgent" : "routine");
    cJSON_AddStringToObject(o, "study_uid", it->study_uid);
    cJSON_AddStringToObject(o, "content_version", it->content_version);
    cJSON_AddStringToObject(o, "model_version", it->model_version);
    cJSON_AddStringToObject(o, "draft_sr", it->sr_path);
    cJSON_AddStringToObject(o, "draft_sr_sop_instance_uid", it->sr_sop_instance_uid);
    cJSON_AddStringToObject(o, "frontal_sop_instance_uid", it->frontal_sop_instance_uid);
    cJSON_AddNumberToObject(o, "created_at", it->created_at);
    if (it->claimed_by[0]) {
        cJSON_AddStringToObject(o, "claimed_by", it->claimed_by);
        cJSON_AddNumberToObject(o, "claim_expires", it->claim_expires);
    }
    if (it->signed_by[0]) {
        cJSON_AddStringToObject(o, "signed_by", it->signed_by);
        cJSON_AddNumberToObject(o, "signed_at", it->signed_at);
        cJSON_AddNumberToObject(o, "signatures", it->signatures);
    }
    if (it->rejected_by[0]) {
        cJSON_AddStringToObject(o, "rejected_by", it->rejected_by);
        cJSON_AddStringToObject(o, "reject_reason", it->reject_reason);
        if (it->reject_note)
            cJSON_AddStringToObject(o, "reject_note", it->reject_note);
    }
    if (it->superseded_by)
        cJSON_AddNumberToObject(o, "superseded_by", (double)it->superseded_by);
    if (it->findings_text) {
        cJSON *e = cJSON_AddObjectToObject(o, "edits");
        cJSON_AddStringToObject(o, "findings_text", it->findings_text);
        cJSON_AddStringToObject(o, "impression_text",
                                it->impression_text ? it->impression_text : "");
        if (it->final_findings_text) {
            cJSON_AddStringToObject(o, "final_findings_text", it->final_findings_text);
            cJSON_AddStringToObject(o, "final_impression_text",
                                    it->final_impression_text ? it->final_impression_text : "");
        }
        cJSON_AddNumberToObject(e, "findings_added", it->findings_added);
        cJSON_AddNumberToObject(e, "findings_removed", it->findings_removed);
        cJSON_AddNumberToObject(e, "findings_changed", it->findings_changed);
        cJSON_AddNumberToObject(e, "characters", it->chars_edited);
        /* The stored JSON goes out as it is: the draft's per-finding states and scores, the
         * neighbours with their similarity, the final and explicit states. */
        const char *raw[][2] = {{"findings", it->findings_json},
                                {"neighbours", it->neighbours_json},
                                {"final_states", it->final_states},
                                {"explicit_states", it->explicit_states}};
        for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++)
            if (raw[i][1])
                cJSON_AddItemToObject(o, raw[i][0], cJSON_Parse(raw[i][1]));
    }
    return o;
}

/* ---- list ---- */

typedef struct list_ctx {
    queue_args *a;
    cJSON *arr;
    long n;
} list_ctx;

static rd_status list_row(void *vctx, const rd_store_review_item *it, rd_error *err)
{
    list_ctx *c = vctx;
    char when[32];
    if (c->arr) {
        cJSON *o = item_json(it);
        if (!o || !cJSON_AddItemToArray(c->arr, o)) {
            cJSON_Delete(o);
            return rd_error_set(err, RD_E_NOMEM, "out of memory");
        }
    } else {
        time_text(it->created_at, when, sizeof when);
        printf("%6lld  %-10s  %-7s  %s  %s%s%s\n", (long long)it->id,
               rd_review_state_name(it->state), it->priority ? "urgent" : "routine", when,
               it->study_uid, it->claimed_by[0] ? "  claimed by " : "", it->claimed_by);
    }
    c->n++;
    return RD_OK;
}

static int cmd_list(queue_args *a, rd_store *s)
{
    rd_review_state state = RD_REVIEW_DRAFT;
    list_ctx c = {a, NULL, 0};
    rd_error err;
    int rc = RD_EXIT_OK;
    if (a->state && rd_review_state_parse(a->state, &state, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        return RD_EXIT_USAGE;
    }
    if (a->sort && strcmp(a->sort, "priority") != 0 && strcmp(a->sort, "age") != 0) {
        rd_cli_error(&a->cli, "--sort: priority or age");
        return RD_EXIT_USAGE;
    }
    if (a->json && !(c.arr = cJSON_CreateArray())) {
        rd_cli_error(&a->cli, "out of memory");
        return RD_EXIT_FAIL;
    }
    if (rd_store_review_list(s, a->state ? (int)state : -1,
                             !a->sort || strcmp(a->sort, "priority") == 0, a->limit, list_row, &c,
                             &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
    } else if (c.arr && print_json(c.arr) != 0) {
        rc = RD_EXIT_FAIL;
    } else if (!c.arr && c.n == 0) {
        printf("(no review items)\n");
    }
    cJSON_Delete(c.arr);
    return rc;
}

/* ---- show ---- */

typedef struct history_ctx {
    cJSON *arr;
} history_ctx;

static rd_status history_row(void *vctx, const rd_audit_row *r, rd_error *err)
{
    history_ctx *c = vctx;
    char when[32];
    if (c->arr) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(c->arr, o)) {
            cJSON_Delete(o);
            return rd_error_set(err, RD_E_NOMEM, "out of memory");
        }
        cJSON_AddNumberToObject(o, "at", r->at);
        cJSON_AddStringToObject(o, "user", r->user);
        cJSON_AddStringToObject(o, "action", r->action);
        cJSON_AddNumberToObject(o, "item", (double)r->item_id);
        if (r->detail[0])
            cJSON_AddStringToObject(o, "detail", r->detail);
        return RD_OK;
    }
    time_text(r->at, when, sizeof when);
    printf("  %s  %-12s %-14s item %lld%s%s\n", when, r->user[0] ? r->user : "-", r->action,
           (long long)r->item_id, r->detail[0] ? "  " : "", r->detail);
    return RD_OK;
}

static void print_states(const char *title, const char *json)
{
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *v;
    printf("%s:", title);
    cJSON_ArrayForEach(v, root)
    {
        const cJSON *st = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "state") : v;
        const cJSON *sc = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "score") : NULL;
        if (!cJSON_IsString(st) || strcmp(st->valuestring, "not mentioned") == 0)
            continue;
        if (cJSON_IsNumber(sc))
            printf(" %s=%s (%.3f)", v->string, st->valuestring, sc->valuedouble);
        else
            printf(" %s=%s", v->string, st->valuestring);
    }
    printf("\n");
    cJSON_Delete(root);
}

static int cmd_show(queue_args *a, rd_store *s)
{
    rd_store_review_item it;
    history_ctx h = {NULL};
    rd_error err;
    char when[32];
    int rc = RD_EXIT_FAIL;
    if (rd_review_show(s, a->id, a->user, &it, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    if (a->json) {
        cJSON *o = item_json(&it);
        h.arr = o ? cJSON_AddArrayToObject(o, "history") : NULL;
        if (h.arr && rd_store_audit_list(s, it.study_uid, NULL, history_row, &h, &err) == RD_OK &&
            print_json(o) == 0)
            rc = RD_EXIT_OK;
        else
            rd_cli_error(&a->cli, "%s", h.arr ? rd_error_message(&err) : "out of memory");
        cJSON_Delete(o);
        rd_store_review_item_clear(&it);
        return rc;
    }
    time_text(it.created_at, when, sizeof when);
    printf("item %lld: %s, %s, drafted %s by model %s\n", (long long)it.id,
           rd_review_state_name(it.state), it.priority ? "urgent" : "routine", when,
           it.model_version);
    printf("study %s, frontal image %s\ndraft SR %s\n", it.study_uid,
           it.frontal_sop_instance_uid[0] ? it.frontal_sop_instance_uid : "-", it.sr_path);
    if (it.claimed_by[0])
        printf("claimed by %s\n", it.claimed_by);
    printf("\nDraft findings: %s\nDraft impression: %s\n", it.findings_text ? it.findings_text : "",
           it.impression_text ? it.impression_text : "");
    print_states("Draft states", it.findings_json);
    if (it.final_findings_text) {
        printf("\nFinal findings: %s\nFinal impression: %s\n", it.final_findings_text,
               it.final_impression_text ? it.final_impression_text : "");
        print_states("Final states", it.final_states);
        printf("Edit: %d findings added, %d removed, %d changed, %d characters\n",
               it.findings_added, it.findings_removed, it.findings_changed, it.chars_edited);
    }
    if (it.neighbours_json) {
        cJSON *nb = cJSON_Parse(it.neighbours_json);
        const cJSON *v;
        printf("\nNeighbours:");
        cJSON_ArrayForEach(v, nb)
        {
            const cJSON *sim = cJSON_GetObjectItemCaseSensitive(v, "similarity");
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(v, "study_uid");
            printf(" %s (%.3f)", cJSON_IsString(st) ? st->valuestring : "?",
                   cJSON_IsNumber(sim) ? sim->valuedouble : 0.0);
        }
        printf("\n");
        cJSON_Delete(nb);
    }
    if (it.signed_by[0])
        printf("\nSigned by %s (%d version%s)\n", it.signed_by, it.signatures,
               it.signatures == 1 ? "" : "s");
    if (it.rejected_by[0])
        printf("\nRejected by %s: %s%s%s\n", it.rejected_by, it.reject_reason,
               it.reject_note ? ": " : "", it.reject_note ? it.reject_note : "");
    printf("\nHistory of the study:\n");
    if (rd_store_audit_list(s, it.study_uid, NULL, history_row, &h, &err) != RD_OK)
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
    else
        rc = RD_EXIT_OK;
    rd_store_review_item_clear(&it);
    return rc;
}

/* ---- stats ---- */

static int cmd_stats(queue_args *a, rd_store *s)
{
    rd_review_stats st;
    rd_error err;
    double since = 0;
    long n_signed;
    if (a->since) {
        struct tm tm;
        int y, mo, d;
        char tail;
        memset(&tm, 0, sizeof tm);
        if (sscanf(a->since, "%4d-%2d-%2d%c", &y, &mo, &d, &tail) != 3 || y < 1970 || mo < 1 ||
            mo > 12 || d < 1 || d > 31) {
            rd_cli_error(&a->cli, "--since: YYYY-MM-DD");
            return RD_EXIT_USAGE;
        }
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        since = (double)timegm(&tm);
    }
    if (rd_review_compute_stats(s, since, &st, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    n_signed = st.per_state[RD_REVIEW_SIGNED];
    if (a->json) {
        cJSON *o = cJSON_CreateObject(), *ps = cJSON_AddObjectToObject(o, "per_state");
        cJSON *pf = cJSON_AddObjectToObject(o, "per_finding");
        int rc;
        cJSON_AddNumberToObject(o, "items", (double)st.items);
        for (int i = 0; i < RD_REVIEW_STATE_COUNT; i++)
            cJSON_AddNumberToObject(ps, rd_review_state_name((rd_review_state)i),
                                    (double)st.per_state[i]);
        cJSON_AddNumberToObject(o, "signed_unchanged", (double)st.signed_unchanged);
        cJSON_AddNumberToObject(o, "mean_characters_edited",
                                n_signed ? (double)st.chars_edited_sum / (double)n_signed : 0);
        cJSON_AddNumberToObject(o, "median_seconds_to_sign", st.median_seconds_to_sign);
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
            cJSON *x = cJSON_AddObjectToObject(pf, rd_finding_name((rd_finding)f));
            cJSON_AddNumberToObject(x, "draft_and_signed", (double)st.tp[f]);
            cJSON_AddNumberToObject(x, "draft_only", (double)st.fp[f]);
            cJSON_AddNumberToObject(x, "signed_only", (double)st.fn[f]);
        }
        rc = print_json(o) == 0 ? RD_EXIT_OK : RD_EXIT_FAIL;
        cJSON_Delete(o);
        return rc;
    }
    printf("%ld items:", st.items);
    for (int i = 0; i < RD_REVIEW_STATE_COUNT; i++)
        printf(" %s %ld%s", rd_review_state_name((rd_review_state)i), st.per_state[i],
               i + 1 < RD_REVIEW_STATE_COUNT ? "," : "\n");
    if (n_signed == 0) {
        printf("nothing signed yet\n");
        return RD_EXIT_OK;
    }
    printf("signed unchanged: %ld of %ld (%.0f%%); mean edit %.1f characters; median time "
           "from draft to signature %.0f s\n",
           st.signed_unchanged, n_signed, 100.0 * (double)st.signed_unchanged / (double)n_signed,
           (double)st.chars_edited_sum / (double)n_signed, st.median_seconds_to_sign);
    printf("%-20s %9s %9s   (the draft against what was signed)\n", "finding", "precision",
           "recall");
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        long tp = st.tp[f], fp = st.fp[f], fn = st.fn[f];
        if (tp + fp + fn == 0)
            continue;
        char p[16] = "-", r[16] = "-";
        if (tp + fp)
            snprintf(p, sizeof p, "%.2f", (double)tp / (double)(tp + fp));
        if (tp + fn)
            snprintf(r, sizeof r, "%.2f", (double)tp / (double)(tp + fn));
        printf("%-20s %9s %9s   (%ld both, %ld draft only, %ld signed only)\n",
               rd_finding_name((rd_finding)f), p, r, tp, fp, fn);
    }
    return RD_EXIT_OK;
}

/* ---- actions that change an item ---- */

static int cmd_change(queue_args *a, rd_store *s)
{
    rd_error err;
    rd_status st;
    const char *verb = a->action;
    rd_review_signed sg;
    memset(&sg, 0, sizeof sg);
    if (strcmp(verb, "claim") == 0)
        st = rd_review_claim(s, &a->cli.cfg, a->id, a->user, &err);
    else if (strcmp(verb, "release") == 0)
        st = rd_review_release(s, a->id, a->user, &err);
    else if (strcmp(verb, "edit") == 0)
        st = rd_review_edit(s, &a->cli.cfg, a->id, a->user, &a->changes, &err);
    else if (strcmp(verb, "reject") == 0)
        st = rd_review_reject(s, a->id, a->user, a->reason, a->note, &err);
    else
        st = rd_review_sign(s, &a->cli.cfg, a->id, a->user,
                            strcmp(verb, "amend") == 0 ? &a->changes : NULL, &sg, &err);
    if (st != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        int rc;
        cJSON_AddNumberToObject(o, "id", (double)a->id);
        cJSON_AddStringToObject(o, "action", verb);
        if (sg.version) {
            cJSON_AddNumberToObject(o, "version", sg.version);
            cJSON_AddStringToObject(o, "sr", sg.sr_path);
            cJSON_AddStringToObject(o, "sop_instance_uid", sg.sr_sop_instance_uid);
            cJSON_AddStringToObject(o, "series_uid", sg.series_uid);
            cJSON_AddStringToObject(o, "predecessor_sop_instance_uid",
                                    sg.predecessor_sop_instance_uid);
            cJSON_AddNumberToObject(o, "deliveries", sg.destinations);
            cJSON_AddBoolToObject(o, "archived", sg.archived);
            if (sg.air_sr_path[0]) {
                cJSON_AddStringToObject(o, "air_sr", sg.air_sr_path);
                cJSON_AddStringToObject(o, "air_sop_instance_uid", sg.air_sr_sop_instance_uid);
            } else {
                cJSON_AddNullToObject(o, "air_sr");
            }
            if (sg.fhir_path[0])
                cJSON_AddStringToObject(o, "fhir", sg.fhir_path);
            else
                cJSON_AddNullToObject(o, "fhir");
        }
        rc = print_json(o) == 0 ? RD_EXIT_OK : RD_EXIT_FAIL;
        cJSON_Delete(o);
        return rc;
    }
    if (sg.version)
        printf("item %lld signed (version %d): %s%s%s%s%s, to %d destination%s%s\n",
               (long long)a->id, sg.version, sg.sr_path, sg.air_sr_path[0] ? " and " : "",
               sg.air_sr_path, sg.fhir_path[0] ? ", FHIR " : "", sg.fhir_path, sg.destinations,
               sg.destinations == 1 ? "" : "s", sg.archived ? ", added to the archive" : "");
    else
        printf("item %lld: %s done\n", (long long)a->id, verb);
    return RD_EXIT_OK;
}

/* --set FINDING=STATE */
static int add_set(queue_args *a, const char *arg)
{
    char name[64];
    const char *eq = strchr(arg, '=');
    rd_finding f;
    rd_finding_state st;
    rd_error err;
    if (!eq || (size_t)(eq - arg) >= sizeof name) {
        rd_cli_error(&a->cli, "--set %s: FINDING=present|uncertain|absent", arg);
        return -1;
    }
    snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
    if (rd_finding_from_name(name, &f, &err) != RD_OK ||
        rd_state_from_name(eq + 1, &st, &err) != RD_OK || f == RD_FINDING_NO_FINDING ||
        (st != RD_STATE_PRESENT && st != RD_STATE_UNCERTAIN && st != RD_STATE_ABSENT)) {
        rd_cli_error(&a->cli,
                     "--set %s: an abnormal finding of the vocabulary = present, "
                     "uncertain or absent",
                     arg);
        return -1;
    }
    for (int i = 0; i < a->changes.n_set; i++)
        if (a->changes.set_finding[i] == f) {
            a->changes.set_state[i] = st;
            return 0;
        }
    a->changes.set_finding[a->changes.n_set] = f;
    a->changes.set_state[a->changes.n_set++] = st;
    return 0;
}

/* Parses what follows the action (`argv[0]` is the action: rd_cli_getopt starts at
 * argv[1]) and builds the configuration. Returns RD_EXIT_OK, or the exit code to return. */
static int parse(queue_args *a, int argc, char **argv)
{
    enum {
        OPT_USER = RD_OPT_FIRST_PRIVATE,
        OPT_DATA,
        OPT_JSON,
        OPT_STATE,
        OPT_SORT,
        OPT_LIMIT,
        OPT_FINDINGS,
        OPT_IMPRESSION,
        OPT_REASON,
        OPT_NOTE,
        OPT_SINCE
    };
    static const struct option opts[] = {{"user", required_argument, NULL, OPT_USER},
                                         {"data-dir", required_argument, NULL, OPT_DATA},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {"state", required_argument, NULL, OPT_STATE},
                                         {"sort", required_argument, NULL, OPT_SORT},
                                         {"limit", required_argument, NULL, OPT_LIMIT},
                                         {"findings", required_argument, NULL, OPT_FINDINGS},
                                         {"impression", required_argument, NULL, OPT_IMPRESSION},
                                         {"reason", required_argument, NULL, OPT_REASON},
                                         {"note", required_argument, NULL, OPT_NOTE},
                                         {"since", required_argument, NULL, OPT_SINCE},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *data = NULL;
    int opt, rc;
    while ((opt = rd_cli_getopt(&a->cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_USER:
            a->user = optarg;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_JSON:
            a->json = 1;
            break;
        case OPT_STATE:
            a->state = optarg;
            break;
        case OPT_SORT:
            a->sort = optarg;
            break;
        case OPT_LIMIT:
            if (rd_cli_parse_int(&a->cli, "--limit", optarg, 1, 1000000, &a->limit) != 0)
                return RD_EXIT_USAGE;
            break;
        case OPT_FINDINGS:
            a->changes.findings_text = optarg;
            break;
        case OPT_IMPRESSION:
            a->changes.impression_text = optarg;
            break;
        case OPT_REASON:
            a->reason = optarg;
            break;
        case OPT_NOTE:
            a->note = optarg;
            break;
        case OPT_SINCE:
            a->since = optarg;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (strcmp(a->action, "list") != 0 && strcmp(a->action, "stats") != 0) {
        long id;
        if (optind >= argc)
            return rd_cli_usage_error(&a->cli, help, "%s: give an item ID", a->action);
        if (rd_cli_parse_int(&a->cli, "ID", argv[optind++], 1, 0x7fffffffL, &id) != 0)
            return RD_EXIT_USAGE;
        a->id = id;
        if (!a->user)
            return rd_cli_usage_error(&a->cli, help, "%s: give --user", a->action);
    }
    if (strcmp(a->action, "reject") == 0 && !a->reason)
        return rd_cli_usage_error(&a->cli, help, "reject: give --reason");
    if ((rc = rd_cli_finish(&a->cli, argc, argv, RD_CLI_NO_OPERANDS)) != RD_EXIT_OK)
        return rc;
    rd_cli_setting settings[] = {{"server.data_dir", data}};
    return rd_cli_set_options(&a->cli, settings, RD_CLI_COUNT(settings));
}

int rd_cmd_queue(int argc, char **argv)
{
    static const char *const actions[] = {"list", "show",  "claim",  "release", "edit",
                                          "sign", "amend", "reject", "stats",   NULL};
    queue_args a;
    rd_store *s = NULL;
    rd_error err;
    char **args;
    int rc, n = 0, known = 0, changing;

    memset(&a, 0, sizeof a);
    rd_cli_init(&a.cli, "radraft queue");
    if (!(a.action = rd_cli_action(argc, argv, help, &rc)))
        return rc;
    for (int i = 0; actions[i]; i++)
        known |= strcmp(a.action, actions[i]) == 0;
    if (!known)
        return rd_cli_usage_error(&a.cli, help, "unknown action '%s'", a.action);
    /* --set is also the common option that overrides configuration keys. After edit and
     * amend, a `--set NAME=STATE` whose NAME has no dot is a finding (every configuration
     * key has one): those are taken out here, before the option loop sees them. */
    changing = strcmp(a.action, "edit") == 0 || strcmp(a.action, "amend") == 0;
    if (!(args = calloc((size_t)argc + 1, sizeof *args)))
        return RD_EXIT_FAIL;
    args[n++] = argv[1]; /* the action, where rd_cli_getopt expects the program name */
    for (int i = 2; i < argc; i++) {
        const char *v = NULL, *eq;
        int width = 1;
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            v = argv[i + 1];
            width = 2;
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            v = argv[i] + 6;
        }
        eq = v ? strchr(v, '=') : NULL;
        if (changing && eq && !memchr(v, '.', (size_t)(eq - v))) {
            if (add_set(&a, v) != 0) {
                free(args);
                return RD_EXIT_USAGE;
            }
            i += width - 1;
            continue;
        }
        args[n++] = argv[i];
    }
    rc = parse(&a, n, args);
    if (rc == RD_EXIT_OK &&
        rd_cli_store_open(&a.cli, a.cli.cfg.server_data_dir, &s, &err) != RD_OK) {
        rd_cli_error(&a.cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
    } else if (rc == RD_EXIT_OK) {
        if (strcmp(a.action, "list") == 0)
            rc = cmd_list(&a, s);
        else if (strcmp(a.action, "show") == 0)
            rc = cmd_show(&a, s);
        else if (strcmp(a.action, "stats") == 0)
            rc = cmd_stats(&a, s);
        else
            rc = cmd_change(&a, s);
    }
    rd_store_close(s);
    free(args);
    return rc;
}
