/* radraft report: draft one study as a DICOM SR; radraft sign: write its verified version. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/codes.h"
#include "radraft/dicom.h"
#include "radraft/fhir.h"
#include "radraft/findings.h"
#include "radraft/generator.h"
#include "radraft/image.h"
#include "radraft/log.h"
#include "radraft/pipeline.h"
#include "radraft/review.h"
#include "radraft/sr.h"
#include "radraft/version.h"
#include "base/util.h"

/* With scores given by --scores, these thresholds apply when neither --thresholds nor
 * generator.thresholds names a file (the pipeline also has the model's). */

#define SCORES_MAX_BYTES (1u << 20)

static const char report_help[] =
    "usage: radraft report [OPTIONS] FILE.dcm...\n"
    "Drafts the report of one study from its instances (all FILEs must belong to one study)\n"
    "and writes it as a DICOM Enhanced SR (draft: PARTIAL, UNVERIFIED, PRELIMINARY) in a new\n"
    "series of that study, the way `radraft serve` and `radraft batch` draft: the frontal\n"
    "image (View Position PA, then AP, else the most left-right symmetric image not marked\n"
    "lateral) is decoded and embedded by the encoder model, the most similar studies of the\n"
    "archive vote, and the combined scores drive the generator. Nothing is recorded: no\n"
    "review item, no outbox delivery.\n\n"
    "  -o, --output FILE      the SR to write (default: ./<StudyInstanceUID>-draft-sr.dcm);\n"
    "                         with sr.air (the default) the AI Results SR goes beside it, as\n"
    "                         FILE less its .dcm and -sr, then -air-sr.dcm, and with\n"
    "                         fhir.enabled (the default) the FHIR Bundle, ...-fhir.json\n"
    "  --model M              encoder model folder or model.json (encoder.model)\n"
    "  --data-dir D           whose radraft.db holds the archive (server.data_dir); with\n"
    "                         archive.load_seed, the model's seed archive is loaded into it\n"
    "                         when it has nothing of the model's version\n"
    "  --scores JSON|FILE     override: finding scores in [0, 1], a JSON object such as\n"
    "                         '{\"Cardiomegaly\": 0.8, \"Effusion\": 0.4}' or a file holding\n"
    "                         one (findings not named score 0); no model or archive is used,\n"
    "                         and the command says so on stderr\n"
    "  --thresholds FILE      per-finding present/uncertain thresholds (default: the key\n"
    "                         generator.thresholds, else the model's, else present 0.5 /\n"
    "                         uncertain 0.3)\n"
    "  --heatmaps DIR         also write the heat map of each finding the draft places (the\n"
    "                         encoder's class activation map over the frontal image, 8-bit gray\n"
    "                         PNG) to DIR/<StudyUID>-<version>-<Finding>.png\n"
    "  --json                 print the texts, per finding its state, combined score, encoder\n"
    "                         score and neighbours' vote (and, for a finding the text places,\n"
    "                         its side, zone and heat map), the neighbours, the model version\n"
    "                         and the paths and UIDs of the SR and the AI Results SR (air_sr)\n"
    "                         and the FHIR Bundle's path (fhir) as one JSON "
    "object\n" RD_CLI_COMMON_HELP;

static const char sign_help[] =
    "usage: radraft sign [OPTIONS] DRAFT.dcm --verifier NAME --organization ORG\n"
    "Writes the signed version of a draft SR: a new instance in the draft's series, COMPLETE,\n"
    "VERIFIED, FINAL, with the verifying observer and a Predecessor Documents reference to\n"
    "the draft. Edited texts replace the draft's, and their findings (read by the labeler)\n"
    "replace the draft's coded findings.\n\n"
    "  --verifier NAME        the radiologist, as a DICOM name (\"Family^Given\")\n"
    "  --organization ORG     the verifier's organization\n"
    "  --findings TEXT        edited findings text (default: the draft's)\n"
    "  --impression TEXT      edited impression text (default: the draft's)\n"
    "  --datetime DT          verification date-time YYYYMMDDHHMMSS (default: now)\n"
    "  -o, --output FILE      the SR to write (default: ./<StudyInstanceUID>-signed-sr.dcm)\n"
    "  --air AIR.dcm          also sign the draft's AI Results SR: its states become what the\n"
    "                         final texts say\n"
    "  --air-output FILE      the signed AI Results SR (default: the signed SR's path less its\n"
    "                         .dcm and -sr, then -air-sr.dcm)\n"
    "  --json                 print the signed SRs' paths and UIDs as JSON\n" RD_CLI_COMMON_HELP;

/* ---- scores ---------------------------------------------------------------------- */

static rd_status parse_scores(const char *arg, double scores[RD_FINDING_N_ABNORMAL], rd_error *err)
{
    char *text = NULL;
    const char *json = arg;
    const char *p = arg;
    cJSON *root = NULL;
    rd_status st = RD_OK;
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '{') {
        size_t len;
        st = rd_read_file(arg, SCORES_MAX_BYTES, &text, &len, err);
        if (st != RD_OK)
            return rd_error_prefix(err, st, "--scores");
        json = text;
    }
    for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++)
        scores[i] = 0;
    root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        st = rd_error_set(err, RD_E_INVALID, "--scores: not a JSON object of finding scores");
        goto out;
    }
    for (cJSON *it = root->child; it; it = it->next) {
        rd_finding f;
        if (rd_finding_from_name(it->string, &f, err) != RD_OK) {
            st = rd_error_set(err, RD_E_INVALID, "--scores: unknown finding '%s'", it->string);
            goto out;
        }
        if (f == RD_FINDING_NO_FINDING) {
            st = rd_error_set(err, RD_E_INVALID,
                              "--scores: \"No Finding\" is not scored; give the 14 findings");
            goto out;
        }
        if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0 && it->valuedouble <= 1)) {
            st = rd_error_set(err, RD_E_INVALID,
                              "--scores: %s: the score must be a number in "
                              "[0, 1]",
                              it->string);
            goto out;
        }
        scores[f] = it->valuedouble;
    }
out:
    cJSON_Delete(root);
    free(text);
    return st;
}

/* ---- output ---------------------------------------------------------------------- */

static int print_json(cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    if (!s)
        return -1;
    puts(s);
    cJSON_free(s);
    return 0;
}

static void add_result(cJSON *obj, const char *key, const char *path, const rd_sr_result *res)
{
    cJSON *sr = cJSON_AddObjectToObject(obj, key);
    if (!sr)
        return;
    cJSON_AddStringToObject(sr, "path", path);
    cJSON_AddStringToObject(sr, "sop_class_uid", res->sop_class_uid);
    cJSON_AddStringToObject(sr, "sop_instance_uid", res->sop_instance_uid);
    cJSON_AddStringToObject(sr, "series_uid", res->series_uid);
    cJSON_AddStringToObject(sr, "study_uid", res->study_uid);
    cJSON_AddNumberToObject(sr, "evidence_instances", res->n_evidence);
}

/* The draft from scores given on the command line: no model, no archive, no check that
 * the study is a chest radiograph (the scores say what it shows). Fills `d` as
 * rd_pipeline_draft_files would, with no encoder scores and no neighbours. */
static rd_status draft_from_scores(rd_cli *cli, char **files, int n, const rd_dicom_meta *metas,
                                   const double scores[RD_FINDING_N_ABNORMAL], const char *out_path,
                                   rd_pipeline_draft *d, rd_error *err)
{
    rd_generator *gen = NULL;
    rd_thresholds th;
    rd_sr_codes codes;
    rd_status st;
    const char *rule = "";

    memset(d, 0, sizeof *d);
    rd_strlcpy(d->study_uid, metas[0].study_uid, sizeof d->study_uid);
    d->frontal =
        rd_pipeline_choose_frontal((const char *const *)files, metas, n, NULL, NULL, &rule);
    d->frontal_rule = rule;
    if (d->frontal < 0)
        fprintf(stderr, "radraft report: no frontal image among the instances (not needed "
                        "while scores are given)\n");
    else
        rd_strlcpy(d->frontal_sop_instance_uid, metas[d->frontal].sop_instance_uid,
                   sizeof d->frontal_sop_instance_uid);
    rd_strlcpy(d->model_name, "no-model-cli-scores", sizeof d->model_name);
    rd_strlcpy(d->model_version, RD_VERSION, sizeof d->model_version);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        d->combined[f] = scores[f];

    const char *th_path = cli->cfg.generator_thresholds;
    st = RD_OK;
    if (th_path[0])
        st = rd_thresholds_load(&th, th_path, err);
    else
        rd_thresholds_builtin(&th);
    if (st == RD_OK)
        st = rd_generator_create(&gen, cli->cfg.generator_templates, err);
    if (st == RD_OK)
        st = rd_generator_draft_scores(gen, scores, &th, NULL, 0, NULL, &d->draft, err);
    if (st != RD_OK)
        goto out;
    rd_strlcpy(d->sr_path, out_path, sizeof d->sr_path);
    if ((st = rd_sr_codes_load(&codes, cli->cfg.sr_finding_codes, err)) != RD_OK) {
        st = rd_error_prefix(err, st, "sr.finding_codes");
        goto out;
    }
    st = rd_pipeline_write_draft_sr((const char *const *)files, n, &d->draft, scores, d->model_name,
                                    d->model_version, &codes, out_path, &d->sr, err);
    if (st == RD_OK && d->sr.warning[0])
        fprintf(stderr, "radraft report: warning: %s\n", d->sr.warning);
    /* The AI results name the image they were computed from; without a frontal one there
     * is none to name. */
    if (st == RD_OK && cli->cfg.sr_air && d->frontal < 0)
        fprintf(stderr, "radraft report: no AI results SR: no frontal image\n");
    else if (st == RD_OK && cli->cfg.sr_air &&
             (st = rd_pipeline_air_sr_path(out_path, d->air_sr_path, sizeof d->air_sr_path, err)) ==
                 RD_OK)
        st = rd_pipeline_write_air_sr(
            (const char *const *)files, n, d->frontal_sop_instance_uid, &d->draft, scores, &th,
            d->model_name, d->model_version,
            "probability: the score given on the command line; state: present at or above the "
            "present threshold, uncertain at or above the uncertain threshold",
            &codes, d->air_sr_path, &d->air_sr, err);
    if (st != RD_OK)
        d->air_sr_path[0] = '\0';
    /* The Bundle of this one SR: its own lifecycle, named by the SR. */
    if (st == RD_OK && cli->cfg.fhir_enabled &&
        ((st = rd_fhir_path(out_path, d->fhir_path, sizeof d->fhir_path, err)) != RD_OK ||
         (st = rd_pipeline_write_fhir(out_path, d->sr.sop_instance_uid, &d->draft, scores, &th,
                                      d->model_name, d->model_version, &codes, d->fhir_path,
                                      err)) != RD_OK))
        d->fhir_path[0] = '\0';
out:
    rd_generator_free(gen);
    return st;
}

/* The draft as the pipeline makes it: one worker, every core for its encoder, the SR
 * folder being the output's own. */
static rd_status draft_with_model(rd_cli *cli, char **files, int n, const char *out_path,
                                  rd_pipeline_draft *d, long *archive_size, rd_error *err)
{
    rd_pipeline *pl = NULL;
    rd_pipeline_worker *w = NULL;
    rd_pipeline_options po;
    rd_config one = cli->cfg;
    char dir[1024];
    int workers, threads;
    rd_status st;

    memset(d, 0, sizeof *d);
    d->frontal = -1;
    d->frontal_rule = "";
    rd_strlcpy(dir, out_path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (!slash)
        rd_strlcpy(dir, ".", sizeof dir);
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    one.pipeline_workers = 1;
    rd_pipeline_plan_threads(&one, 1, &workers, &threads);
    memset(&po, 0, sizeof po);
    po.sr_dir = dir;
    po.encoder_threads = threads;
    if ((st = rd_pipeline_create(&pl, &cli->cfg, &po, err)) != RD_OK)
        goto out;
    *archive_size = rd_pipeline_archive_size(pl);
    if ((st = rd_pipeline_worker_create(&w, pl, err)) != RD_OK)
        goto out;
    st = rd_pipeline_draft_files(w, (const char *const *)files, n, out_path, d, err);
    if (st == RD_OK && d->outcome == RD_PIPELINE_SKIPPED)
        st = rd_error_set(err, RD_E_UNSUPPORTED, "%s: no draft: %s", d->study_uid, d->reason);
out:
    rd_pipeline_worker_free(w);
    rd_pipeline_free(pl);
    return st;
}

/* --json: the study, the frontal image, per finding its state and scores, the neighbours,
 * the model, the texts and the SR. */
static int print_report_json(char **files, int n, const rd_pipeline_draft *d, int from_model,
                             long archive_size, char heatmaps[RD_FINDING_N_ABNORMAL][1024])
{
    cJSON *obj = cJSON_CreateObject();
    cJSON *fl = obj ? cJSON_AddArrayToObject(obj, "findings") : NULL;
    cJSON *nl = obj ? cJSON_AddArrayToObject(obj, "neighbours") : NULL;
    int rc = -1;
    if (!fl || !nl)
        goto out;
    cJSON_AddStringToObject(obj, "study_uid", d->study_uid);
    cJSON_AddNumberToObject(obj, "instances", n);
    if (d->frontal >= 0)
        cJSON_AddStringToObject(obj, "frontal", files[d->frontal]);
    else
        cJSON_AddNullToObject(obj, "frontal");
    cJSON_AddStringToObject(obj, "frontal_rule", d->frontal_rule ? d->frontal_rule : "");
    cJSON_AddStringToObject(obj, "scores_source", from_model ? "model" : "command line (no model)");
    if (from_model) {
        cJSON_AddStringToObject(obj, "model", d->model_name);
        cJSON_AddStringToObject(obj, "model_version", d->model_version);
        cJSON_AddNumberToObject(obj, "archive_size", (double)archive_size);
    } else {
        cJSON_AddNullToObject(obj, "model");
        cJSON_AddNullToObject(obj, "model_version");
        cJSON_AddNullToObject(obj, "archive_size");
    }
    cJSON_AddStringToObject(obj, "findings_text", d->draft.findings_text);
    cJSON_AddStringToObject(obj, "impression_text", d->draft.impression_text);
    for (int f = 0; f < RD_FINDING_COUNT; f++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(fl, o)) {
            cJSON_Delete(o);
            goto out;
        }
        cJSON_AddStringToObject(o, "name", rd_finding_name((rd_finding)f));
        cJSON_AddStringToObject(o, "state", rd_state_name(d->draft.state[f]));
        if (f < RD_FINDING_N_ABNORMAL) {
            cJSON_AddNumberToObject(o, "score", d->combined[f]);
            if (d->has_encoder_scores)
                cJSON_AddNumberToObject(o, "encoder", d->encoder[f]);
            else
                cJSON_AddNullToObject(o, "encoder");
        }
        if (d->n_neighbours > 0)
            cJSON_AddNumberToObject(o, "votes", d->votes[f]);
        else
            cJSON_AddNullToObject(o, "votes");
        for (int i = 0; i < d->draft.n_items; i++) {
            const rd_draft_item *it = &d->draft.items[i];
            if ((int)it->finding != f || it->side == RD_SIDE_NONE)
                continue;
            cJSON_AddStringToObject(o, "side", rd_side_name(it->side));
            cJSON_AddStringToObject(o, "zone", rd_zone_name(it->zone));
            if (heatmaps[f][0])
                cJSON_AddStringToObject(o, "heatmap", heatmaps[f]);
        }
    }
    if (d->cams)
        cJSON_AddStringToObject(obj, "orientation", d->orientation.rule);
    for (int i = 0; i < d->n_neighbours; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(nl, o)) {
            cJSON_Delete(o);
            goto out;
        }
        cJSON_AddNumberToObject(o, "id", (double)d->neighbours[i].id);
        cJSON_AddNumberToObject(o, "similarity", d->neighbours[i].similarity);
        cJSON_AddStringToObject(o, "study_uid", d->neighbours[i].study_uid);
    }
    if (from_model) {
        cJSON *ms = cJSON_AddObjectToObject(obj, "ms");
        if (!ms)
            goto out;
        cJSON_AddNumberToObject(ms, "read", d->ms_read);
        cJSON_AddNumberToObject(ms, "decode", d->ms_decode);
        cJSON_AddNumberToObject(ms, "embed", d->ms_embed);
        cJSON_AddNumberToObject(ms, "retrieve", d->ms_retrieve);
        cJSON_AddNumberToObject(ms, "generate", d->ms_generate);
        cJSON_AddNumberToObject(ms, "write", d->ms_write);
    }
    add_result(obj, "sr", d->sr_path, &d->sr);
    if (d->air_sr_path[0])
        add_result(obj, "air_sr", d->air_sr_path, &d->air_sr);
    else
        cJSON_AddNullToObject(obj, "air_sr");
    if (d->fhir_path[0])
        cJSON_AddStringToObject(obj, "fhir", d->fhir_path);
    else
        cJSON_AddNullToObject(obj, "fhir");
    rc = print_json(obj);
out:
    cJSON_Delete(obj);
    return rc;
}

int rd_cmd_report(int argc, char **argv)
{
    enum {
        OPT_JSON = RD_OPT_FIRST_PRIVATE,
        OPT_SCORES,
        OPT_THRESHOLDS,
        OPT_MODEL,
        OPT_DATA,
        OPT_HEATMAPS
    };
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {"scores", required_argument, NULL, OPT_SCORES},
                                         {"thresholds", required_argument, NULL, OPT_THRESHOLDS},
                                         {"model", required_argument, NULL, OPT_MODEL},
                                         {"data-dir", required_argument, NULL, OPT_DATA},
                                         {"heatmaps", required_argument, NULL, OPT_HEATMAPS},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    const char *out_arg = NULL, *scores_arg = NULL, *thresholds_arg = NULL;
    const char *model_arg = NULL, *data_arg = NULL, *heatmaps_arg = NULL;
    char heatmaps[RD_FINDING_N_ABNORMAL][1024];
    int json = 0, opt, rc;
    rd_dicom_meta *metas = NULL;
    rd_pipeline_draft d;
    char out_path[1024];
    double scores[RD_FINDING_N_ABNORMAL];
    long archive_size = 0;
    rd_status st;

    memset(&d, 0, sizeof d);
    rd_cli_init(&cli, "radraft report");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "ho:", opts, report_help, &rc)) > 0) {
        switch (opt) {
        case 'o':
            out_arg = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_SCORES:
            scores_arg = optarg;
            break;
        case OPT_THRESHOLDS:
            thresholds_arg = optarg;
            break;
        case OPT_MODEL:
            model_arg = optarg;
            break;
        case OPT_DATA:
            data_arg = optarg;
            break;
        case OPT_HEATMAPS:
            heatmaps_arg = optarg;
            break;
        }
    }
    if (opt < 0)
        return rc;
    int n = argc - optind;
    char **files = argv + optind;
    if (n < 1)
        return rd_cli_usage_error(&cli, report_help, "no DICOM file given");
    if (n > RD_SR_MAX_SOURCES) {
        rd_cli_error(&cli, "%d files: at most %d instances per study", n, RD_SR_MAX_SOURCES);
        return RD_EXIT_USAGE;
    }
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    const rd_cli_setting settings[] = {{"server.data_dir", data_arg},
                                       {"encoder.model", model_arg},
                                       {"generator.thresholds", thresholds_arg}};
    if (rd_cli_set_options(&cli, settings, RD_CLI_COUNT(settings)) != RD_EXIT_OK)
        return RD_EXIT_USAGE;
    rc = RD_EXIT_FAIL; /* what `goto out` returns from here on, until the SR is written */
    if (scores_arg) {
        if (parse_scores(scores_arg, scores, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            return RD_EXIT_USAGE;
        }
        fprintf(stderr, "radraft report: scores given on the command line; no model\n");
    } else {
        char model[1024];
        if (rd_pipeline_model_path(&cli.cfg, model, sizeof model, &err) != RD_OK) {
            rd_cli_error(&cli, "no encoder model: give --model M or set encoder.model (or give the "
                               "finding scores with --scores '{\"Cardiomegaly\": 0.8, ...}')");
            return RD_EXIT_USAGE;
        }
    }

    /* The instances: one study. */
    metas = calloc((size_t)n, sizeof *metas);
    if (!metas) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (rd_dicom_read_meta(files[i], &metas[i], &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            goto out;
        }
        if (strcmp(metas[i].study_uid, metas[0].study_uid) != 0) {
            rd_cli_error(&cli,
                         "%s and %s belong to different studies; give the instances of "
                         "one study",
                         files[0], files[i]);
            rc = RD_EXIT_USAGE;
            goto out;
        }
    }
    if (!rd_store_uid_valid(metas[0].study_uid)) {
        rd_cli_error(&cli, "%s: missing or malformed Study Instance UID", files[0]);
        goto out;
    }
    if (out_arg) {
        if (rd_strlcpy(out_path, out_arg, sizeof out_path) >= sizeof out_path) {
            rd_cli_error(&cli, "output path too long");
            goto out;
        }
    } else if (snprintf(out_path, sizeof out_path, "%s-draft-sr.dcm", metas[0].study_uid) >=
               (int)sizeof out_path) {
        goto out;
    }

    st = scores_arg ? draft_from_scores(&cli, files, n, metas, scores, out_path, &d, &err)
                    : draft_with_model(&cli, files, n, out_path, &d, &archive_size, &err);
    if (st != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    memset(heatmaps, 0, sizeof heatmaps);
    if (heatmaps_arg && rd_pipeline_write_heatmaps(&d, heatmaps_arg, heatmaps, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    if (!json) {
        printf("%s\n%s%s%s%s\nFINDINGS:\n%s\n\nIMPRESSION:\n%s\n", d.sr_path, d.air_sr_path,
               d.air_sr_path[0] ? "\n" : "", d.fhir_path, d.fhir_path[0] ? "\n" : "",
               d.draft.findings_text, d.draft.impression_text);
        rc = RD_EXIT_OK;
        goto out;
    }
    if (print_report_json(files, n, &d, !scores_arg, archive_size, heatmaps) != 0) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    rc = RD_EXIT_OK;
out:
    rd_pipeline_draft_free(&d);
    free(metas);
    return rc;
}

int rd_cmd_sign(int argc, char **argv)
{
    enum {
        OPT_JSON = RD_OPT_FIRST_PRIVATE,
        OPT_VERIFIER,
        OPT_ORG,
        OPT_FINDINGS,
        OPT_IMPRESSION,
        OPT_DATETIME,
        OPT_AIR,
        OPT_AIR_OUTPUT
    };
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {"verifier", required_argument, NULL, OPT_VERIFIER},
                                         {"organization", required_argument, NULL, OPT_ORG},
                                         {"findings", required_argument, NULL, OPT_FINDINGS},
                                         {"impression", required_argument, NULL, OPT_IMPRESSION},
                                         {"datetime", required_argument, NULL, OPT_DATETIME},
                                         {"air", required_argument, NULL, OPT_AIR},
                                         {"air-output", required_argument, NULL, OPT_AIR_OUTPUT},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_review_signature sig;
    rd_sr_result res, air_res;
    const char *out_arg = NULL, *air_arg = NULL, *air_out_arg = NULL;
    char out_path[1024], predecessor[RD_UID_SIZE], air_path[1024] = "";
    int json = 0, opt, rc;
    cJSON *obj = NULL;

    memset(&sig, 0, sizeof sig);
    rd_cli_init(&cli, "radraft sign");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "ho:", opts, sign_help, &rc)) > 0) {
        switch (opt) {
        case 'o':
            out_arg = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_VERIFIER:
            sig.verifier_name = optarg;
            break;
        case OPT_ORG:
            sig.organization = optarg;
            break;
        case OPT_FINDINGS:
            sig.findings_text = optarg;
            break;
        case OPT_IMPRESSION:
            sig.impression_text = optarg;
            break;
        case OPT_DATETIME:
            sig.datetime = optarg;
            break;
        case OPT_AIR:
            air_arg = optarg;
            break;
        case OPT_AIR_OUTPUT:
            air_out_arg = optarg;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (air_out_arg && !air_arg)
        return rd_cli_usage_error(&cli, sign_help, "--air-output needs --air");
    if (argc - optind != 1 || !sig.verifier_name || !sig.organization)
        return rd_cli_usage_error(&cli, sign_help,
                                  "give one draft SR, --verifier and --organization");
    const char *draft_path = argv[optind];
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    rc = RD_EXIT_FAIL; /* what `goto out` returns from here on */
    if (rd_review_sign_file(&cli.cfg, draft_path, &sig, out_arg, NULL, out_path, sizeof out_path,
                            predecessor, &res, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    if (air_arg) {
        rd_status ast =
            air_out_arg ? (rd_strlcpy(air_path, air_out_arg, sizeof air_path) < sizeof air_path
                               ? RD_OK
                               : rd_error_set(&err, RD_E_INVALID, "--air-output: path too long"))
                        : rd_pipeline_air_sr_path(out_path, air_path, sizeof air_path, &err);
        if (ast == RD_OK)
            ast = rd_review_sign_air_file(&cli.cfg, draft_path, air_arg, &sig, air_path, &air_res,
                                          &err);
        if (ast != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            goto out;
        }
    }
    if (!json) {
        printf("%s\n", out_path);
        if (air_arg)
            printf("%s\n", air_path);
        rc = RD_EXIT_OK;
        goto out;
    }
    obj = cJSON_CreateObject();
    if (!obj) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    cJSON_AddStringToObject(obj, "draft", draft_path);
    cJSON_AddStringToObject(obj, "predecessor_sop_instance_uid", predecessor);
    add_result(obj, "sr", out_path, &res);
    if (air_arg)
        add_result(obj, "air_sr", air_path, &air_res);
    if (print_json(obj) != 0) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    rc = RD_EXIT_OK;
out:
    cJSON_Delete(obj);
    return rc;
}
