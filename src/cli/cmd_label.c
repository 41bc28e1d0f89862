/* radraft label / radraft evaluate-labeler: report text -> finding states, and the
 * labeler measured against expert labels. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/lines.h"
#include "radraft/labeler.h"
#include "radraft/sr.h"

/* --sr: labels the texts of SR files, one JSON line each. Returns the exit status. */
static int label_srs(const rd_cli *cli, const rd_labeler *lab, char **files, int n)
{
    int rc = RD_EXIT_OK;
    for (int i = 0; i < n; i++) {
        rd_sr_info info;
        rd_labels labels;
        rd_error err;
        if (rd_sr_read(files[i], NULL, &info, &err) != RD_OK) {
            rd_cli_error(cli, "%s: %s", files[i], rd_error_message(&err));
            rc = RD_EXIT_FAIL;
            continue;
        }
        if (rd_labeler_label(lab, info.findings_text ? info.findings_text : "",
                             info.impression_text ? info.impression_text : "", &labels,
                             &err) != RD_OK) {
            rd_cli_error(cli, "%s: %s", files[i], rd_error_message(&err));
            rc = RD_EXIT_FAIL;
        } else {
            /* The labels' object, with the SR's identity added in front of its members. */
            char *line = NULL;
            size_t len = 0;
            FILE *mem = open_memstream(&line, &len);
            if (!mem || rd_labels_write_json(mem, info.study_uid, &labels, &err) != RD_OK) {
                if (mem)
                    fclose(mem);
                free(line);
                rd_sr_info_free(&info);
                rd_cli_error(cli, "out of memory");
                return RD_EXIT_FAIL;
            }
            fclose(mem);
            cJSON *o = cJSON_Parse(line);
            free(line);
            if (o) {
                cJSON_AddStringToObject(o, "patient_id", info.patient_id);
                cJSON_AddStringToObject(o, "file", files[i]);
                char *out = cJSON_PrintUnformatted(o);
                if (out)
                    puts(out);
                cJSON_free(out);
                cJSON_Delete(o);
            }
            if (!o)
                rc = RD_EXIT_FAIL;
        }
        rd_sr_info_free(&info);
    }
    return rc;
}

static const char label_help[] =
    "usage: radraft label [--in FILE.jsonl] [OPTIONS]\n"
    "       radraft label --sr [OPTIONS] SR.dcm...\n"
    "Reads reports as JSON Lines (objects with \"id\", \"findings\", \"impression\"; other\n"
    "members are ignored) from FILE or standard input and writes one JSON object a line:\n"
    "{\"id\": ..., \"findings\": {\"Cardiomegaly\": \"present\", \"Effusion\": \"absent\", ...}}\n"
    "with every finding the report states (present, absent or uncertain), plus\n"
    "\"No Finding\": \"present\" when nothing abnormal is present, uncertain or speculative,\n"
    "and \"speculative\": [...] naming the findings the report only raises as a possibility\n"
    "(\"may represent pneumonia\"). A bad line is reported on standard error with its number\n"
    "and skipped; the exit status is then 1.\n\n"
    "With --sr, the reports are DICOM SRs (radraft's or another producer's): each one's\n"
    "findings and impression texts are labelled, and its line's id is the SR's Study\n"
    "Instance UID, with \"patient_id\" and \"file\" beside it.\n\n"
    "  --in FILE           read FILE instead of standard input\n"
    "  --sr                the operands are SR files to read the report texts "
    "from\n" RD_CLI_COMMON_HELP
    "\nConfiguration: labeler.phrases = a JSON phrase file extending the built-in phrases;\n"
    "labeler.speculative = not_mentioned (default) or uncertain: the state of a speculative\n"
    "finding.\n";

/* Creates the labeler the configuration asks for; prints the error on failure. */
static rd_labeler *make_labeler(const rd_cli *cli)
{
    rd_labeler *lab = NULL;
    rd_error err;
    if (rd_labeler_create_from_config(&lab, &cli->cfg, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        return NULL;
    }
    return lab;
}

int rd_cmd_label(int argc, char **argv)
{
    enum { OPT_IN = RD_OPT_FIRST_PRIVATE, OPT_SR };
    static const struct option opts[] = {{"in", required_argument, NULL, OPT_IN},
                                         {"sr", no_argument, NULL, OPT_SR},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_line_reader r;
    rd_labeler *lab = NULL;
    const char *in_path = NULL;
    FILE *in = stdin;
    int opt, bad = 0, eof = 0, rc = RD_EXIT_OK, sr = 0;

    rd_cli_init(&cli, "radraft label");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, label_help, &rc)) > 0) {
        if (opt == OPT_IN)
            in_path = optarg;
        else if (opt == OPT_SR)
            sr = 1;
    }
    if (opt < 0)
        return rc;
    if (sr && (in_path || optind >= argc))
        return rd_cli_usage_error(&cli, label_help, "--sr takes SR files, not --in");
    if ((rc = rd_cli_finish(&cli, argc, argv, sr ? RD_CLI_OPERANDS : RD_CLI_NO_OPERANDS)) !=
        RD_EXIT_OK)
        return rc;
    if (!(lab = make_labeler(&cli)))
        return RD_EXIT_FAIL;
    if (sr) {
        rc = label_srs(&cli, lab, argv + optind, argc - optind);
        rd_labeler_free(lab);
        return rc;
    }
    if (in_path && strcmp(in_path, "-") != 0) {
        in = fopen(in_path, "r");
        if (!in) {
            rd_cli_error(&cli, "%s: %s", in_path, strerror(errno));
            rd_labeler_free(lab);
            return RD_EXIT_FAIL;
        }
    } else {
        in_path = "<stdin>";
    }
    rd_line_reader_init(&r, in);
    for (;;) {
        char id[256];
        rd_labels labels;
        rd_status st = rd_line_read(&r, RD_LINE_MAX, &eof, &err);
        if (st == RD_E_TOO_LARGE) {
            rd_cli_error(&cli, "%s: %s; skipped", in_path, rd_error_message(&err));
            bad++;
            continue;
        }
        if (st != RD_OK) {
            rd_cli_error(&cli, "%s: %s", in_path, rd_error_message(&err));
            rc = RD_EXIT_FAIL;
            break;
        }
        if (eof)
            break;
        if (strspn(r.buf, " \t") == r.len)
            continue; /* blank lines separate nothing in JSON Lines; they are allowed */
        if (rd_labeler_label_json(lab, r.buf, id, sizeof id, &labels, &err) != RD_OK) {
            rd_cli_error(&cli, "%s:%ld: %s; skipped", in_path, r.lineno, rd_error_message(&err));
            bad++;
            continue;
        }
        if (rd_labels_write_json(stdout, id, &labels, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            rc = RD_EXIT_FAIL;
            break;
        }
    }
    if (fflush(stdout) != 0) {
        rd_cli_error(&cli, "write error: %s", strerror(errno));
        rc = RD_EXIT_FAIL;
    }
    if (bad) {
        rd_cli_error(&cli, "%d bad line%s", bad, bad == 1 ? "" : "s");
        rc = RD_EXIT_FAIL;
    }
    rd_line_reader_free(&r);
    if (in != stdin)
        fclose(in);
    rd_labeler_free(lab);
    return rc;
}

static const char eval_help[] =
    "usage: radraft evaluate-labeler [--reports FILE.jsonl] [--gold FILE.csv] [OPTIONS]\n"
    "Labels every report that has a row of expert labels and prints precision, recall and F1\n"
    "per finding, then micro and macro averages, three times: counting a finding as positive\n"
    "when it is present or uncertain, when it is present, and when it is present, uncertain\n"
    "or speculative. Without --reports/--gold it reads\n"
    "$RADRAFT_SHARED_DATA/iu-reports/reports.jsonl and gold14.csv.\n\n"
    "  --reports FILE      reports as JSON Lines (id, findings, impression)\n"
    "  --gold FILE         CSV: id column, then one 0/1 column per finding\n"
    "  --part PART         the reports compared: all (default), tuning (the 70% that rules\n"
    "                      are tuned on) or held-out (the 30% the bar is checked on), split\n"
    "                      by a hash of the report id\n"
    "  --positive MODE     print one table only: 'uncertain' (present or uncertain is\n"
    "                      positive), 'present' (present only) or 'speculative' (present,\n"
    "                      uncertain or speculative)\n" RD_CLI_COMMON_HELP;

int rd_cmd_evaluate_labeler(int argc, char **argv)
{
    enum { OPT_REPORTS = RD_OPT_FIRST_PRIVATE, OPT_GOLD, OPT_POSITIVE, OPT_PART };
    static const struct option opts[] = {{"reports", required_argument, NULL, OPT_REPORTS},
                                         {"gold", required_argument, NULL, OPT_GOLD},
                                         {"positive", required_argument, NULL, OPT_POSITIVE},
                                         {"part", required_argument, NULL, OPT_PART},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_labeler *lab = NULL;
    rd_labeler_eval ev;
    const char *reports = NULL, *gold = NULL;
    char reports_buf[1100], gold_buf[1100];
    /* The tables printed, in this order; the first is the measure the bar is set on. */
    static const rd_labeler_positive order[] = {RD_LABELER_POSITIVE_UNCERTAIN,
                                                RD_LABELER_POSITIVE_PRESENT,
                                                RD_LABELER_POSITIVE_SPECULATIVE};
    int opt, rc, only = -1;
    rd_labeler_part part = RD_LABELER_PART_ALL;

    rd_cli_init(&cli, "radraft evaluate-labeler");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, eval_help, &rc)) > 0) {
        switch (opt) {
        case OPT_REPORTS:
            reports = optarg;
            break;
        case OPT_GOLD:
            gold = optarg;
            break;
        case OPT_PART:
            if (strcmp(optarg, "all") == 0)
                part = RD_LABELER_PART_ALL;
            else if (strcmp(optarg, "tuning") == 0)
                part = RD_LABELER_PART_TUNING;
            else if (strcmp(optarg, "held-out") == 0)
                part = RD_LABELER_PART_HELD_OUT;
            else {
                rd_cli_error(&cli, "--part expects 'all', 'tuning' or 'held-out', got '%s'",
                             optarg);
                return RD_EXIT_USAGE;
            }
            break;
        case OPT_POSITIVE:
            for (int m = 0; m < 3; m++)
                if (strcmp(optarg, rd_labeler_positive_name(order[m])) == 0)
                    only = m;
            if (only < 0) {
                rd_cli_error(&cli,
                             "--positive expects 'uncertain', 'present' or 'speculative', got "
                             "'%s'",
                             optarg);
                return RD_EXIT_USAGE;
            }
            break;
        }
    }
    if (opt < 0 || (rc = rd_cli_no_operands(&cli, argc, argv)) != RD_EXIT_OK)
        return rc;
    if (!reports || !gold) {
        const char *shared = getenv("RADRAFT_SHARED_DATA");
        if (!shared || !shared[0]) {
            rd_cli_error(&cli, "give --reports and --gold, or set RADRAFT_SHARED_DATA to the "
                               "shared data folder");
            return RD_EXIT_USAGE;
        }
        if (!reports) {
            if (snprintf(reports_buf, sizeof reports_buf, "%s/iu-reports/reports.jsonl", shared) >=
                (int)sizeof reports_buf) {
                rd_cli_error(&cli, "RADRAFT_SHARED_DATA is too long");
                return RD_EXIT_USAGE;
            }
            reports = reports_buf;
        }
        if (!gold) {
            if (snprintf(gold_buf, sizeof gold_buf, "%s/iu-reports/gold14.csv", shared) >=
                (int)sizeof gold_buf) {
                rd_cli_error(&cli, "RADRAFT_SHARED_DATA is too long");
                return RD_EXIT_USAGE;
            }
            gold = gold_buf;
        }
    }
    if (rd_cli_finish_config(&cli) != 0)
        return RD_EXIT_FAIL;
    if (!(lab = make_labeler(&cli)))
        return RD_EXIT_FAIL;
    printf("reports: %s\ngold: %s\n", reports, gold);
    for (int m = 0; m < 3; m++) {
        if (only >= 0 && m != only)
            continue;
        if (rd_labeler_evaluate_part(lab, reports, gold, order[m], part, &ev, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            rd_labeler_free(lab);
            return RD_EXIT_FAIL;
        }
        printf("\n");
        rd_labeler_eval_print(&ev, stdout);
    }
    rd_labeler_free(lab);
    return RD_EXIT_OK;
}
