/* radraft audit: the review queue's audit trail — list its rows (all, or a study's or a
 * user's) and verify its hash chain (src/store/store_audit.c describes the chain). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "radraft/store.h"

static const char help[] =
    "usage: radraft audit COMMAND [OPTIONS]\n"
    "The audit trail of the review queue: every action on a review item, every view of\n"
    "patient data and every change to a user, oldest first. The trail is append-only, and\n"
    "each row carries the SHA-256 of the row before and of its own fields, so that a row\n"
    "changed or removed behind radraft's back breaks the chain.\n\n"
    "  list [--study UID] [--user U]   the rows (of one study and/or one user)\n"
    "  verify                          recomputes the chain: exit 0 and \"audit: N rows,\n"
    "                                  chain intact\", or exit 1 naming the first row that\n"
    "                                  does not match\n\n"
    "  --data-dir D        data directory (server.data_dir, default ./radraft-data)\n"
    "  --study UID         only the rows of this Study Instance UID (list)\n"
    "  --user U            only the rows of this user (list)\n"
    "  --json              JSON lines (list), one JSON object (verify)\n" RD_CLI_COMMON_HELP;

enum { OPT_DATA_DIR = RD_OPT_FIRST_PRIVATE, OPT_STUDY, OPT_USER, OPT_JSON };

typedef struct audit_args {
    rd_cli cli;
    const char *sub;
    const char *data_dir;
    const char *study;
    const char *user;
    int json;
} audit_args;

/* "2026-01-02T03:04:05.678Z": the row's time in UTC to the millisecond. */
static void format_time(double at, char *buf, size_t size)
{
    time_t secs = (time_t)at;
    int ms = (int)((at - (double)secs) * 1000.0);
    struct tm tm;
    char base[32];
    if (ms < 0 || ms > 999)
        ms = 0;
    if (!gmtime_r(&secs, &tm) || strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, size, "%.3f", at);
        return;
    }
    snprintf(buf, size, "%s.%03dZ", base, ms);
}

static rd_status print_json(cJSON *o, rd_error *err)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return rd_error_set(err, RD_E_NOMEM, "out of memory printing JSON");
    printf("%s\n", text);
    free(text);
    return RD_OK;
}

static rd_status list_one(void *ctx, const rd_audit_row *r, rd_error *err)
{
    const audit_args *a = ctx;
    char when[48];
    format_time(r->at, when, sizeof when);
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return rd_error_set(err, RD_E_NOMEM, "out of memory printing JSON");
        cJSON_AddNumberToObject(o, "id", (double)r->id);
        cJSON_AddNumberToObject(o, "at", r->at);
        cJSON_AddStringToObject(o, "time", when);
        cJSON_AddStringToObject(o, "user", r->user);
        cJSON_AddStringToObject(o, "action", r->action);
        if (r->item_id)
            cJSON_AddNumberToObject(o, "item_id", (double)r->item_id);
        else
            cJSON_AddNullToObject(o, "item_id");
        cJSON_AddStringToObject(o, "study_uid", r->study_uid);
        cJSON_AddStringToObject(o, "sr_sop_instance_uid", r->sr_sop_instance_uid);
        cJSON_AddStringToObject(o, "detail", r->detail);
        cJSON_AddStringToObject(o, "prev_hash", r->prev_hash);
        cJSON_AddStringToObject(o, "hash", r->hash);
        return print_json(o, err);
    }
    /* One line per row; the empty fields are left out. The store refuses control
     * characters in every field, so a row cannot fake a line of its own. */
    printf("%6lld %s %-16s %-14s", (long long)r->id, when, r->user[0] ? r->user : "(radraft)",
           r->action);
    if (r->item_id)
        printf(" item=%lld", (long long)r->item_id);
    if (r->study_uid[0])
        printf(" study=%s", r->study_uid);
    if (r->sr_sop_instance_uid[0])
        printf(" sr=%s", r->sr_sop_instance_uid);
    if (r->detail[0])
        printf(" %s", r->detail);
    printf("\n");
    return RD_OK;
}

static int verify(const audit_args *a, rd_store *s)
{
    rd_error err;
    long rows = 0;
    int64_t bad = 0;
    rd_status st = rd_store_audit_verify(s, &rows, &bad, &err);

    if (st != RD_OK && st != RD_E_CORRUPT) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        rd_error perr;
        if (o) {
            cJSON_AddNumberToObject(o, "rows", (double)rows);
            cJSON_AddBoolToObject(o, "intact", st == RD_OK);
            if (st != RD_OK) {
                cJSON_AddNumberToObject(o, "bad_id", (double)bad);
                cJSON_AddStringToObject(o, "error", rd_error_message(&err));
            }
        }
        if (print_json(o, &perr) != RD_OK) {
            rd_cli_error(&a->cli, "%s", rd_error_message(&perr));
            return RD_EXIT_FAIL;
        }
    } else if (st == RD_OK) {
        printf("audit: %ld rows, chain intact\n", rows);
    } else {
        printf("audit: chain broken at row %lld (%ld row%s before it verified)\n", (long long)bad,
               rows, rows == 1 ? "" : "s");
    }
    if (st != RD_OK)
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
    return st == RD_OK ? RD_EXIT_OK : RD_EXIT_FAIL;
}

int rd_cmd_audit(int argc, char **argv)
{
    static const struct option opts[] = {{"data-dir", required_argument, NULL, OPT_DATA_DIR},
                                         {"study", required_argument, NULL, OPT_STUDY},
                                         {"user", required_argument, NULL, OPT_USER},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    audit_args a;
    rd_store *s = NULL;
    rd_error err;
    int opt, rc;

    memset(&a, 0, sizeof a);
    rd_cli_init(&a.cli, "radraft audit");
    if (!(a.sub = rd_cli_action(argc, argv, help, &rc)))
        return rc;
    argc--;
    argv++;
    while ((opt = rd_cli_getopt(&a.cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_DATA_DIR:
            a.data_dir = optarg;
            break;
        case OPT_STUDY:
            a.study = optarg;
            break;
        case OPT_USER:
            a.user = optarg;
            break;
        case OPT_JSON:
            a.json = 1;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if ((rc = rd_cli_no_operands(&a.cli, argc, argv)) != RD_EXIT_OK)
        return rc;
    if (strcmp(a.sub, "list") != 0 && strcmp(a.sub, "verify") != 0) {
        rd_cli_error(&a.cli, "unknown audit command '%s' (list, verify)", a.sub);
        return RD_EXIT_USAGE;
    }
    if (strcmp(a.sub, "verify") == 0 && (a.study || a.user)) {
        rd_cli_error(&a.cli, "verify checks the whole chain: --study and --user are options of "
                             "list");
        return RD_EXIT_USAGE;
    }
    if (rd_cli_finish_config(&a.cli) != 0)
        return RD_EXIT_FAIL;
    if (!a.data_dir)
        a.data_dir = a.cli.cfg.server_data_dir;
    if (rd_cli_store_open(&a.cli, a.data_dir, &s, &err) != RD_OK) {
        rd_cli_error(&a.cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    if (strcmp(a.sub, "verify") == 0) {
        rc = verify(&a, s);
    } else if (rd_store_audit_list(s, a.study, a.user, list_one, &a, &err) != RD_OK) {
        rd_cli_error(&a.cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
    } else {
        rc = RD_EXIT_OK;
    }
    rd_store_close(s);
    return rc;
}
