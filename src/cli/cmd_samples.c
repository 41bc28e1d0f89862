#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/samples.h"
#include "base/util.h"

static const char help[] =
    "usage: radraft samples --out DIR [--seed N] [--size ROWS] [--syntax NAME] [OPTIONS]\n"
    "Writes the synthetic sample studies (chest X-rays of made-up patients: normal,\n"
    "cardiomegaly, left effusion, right upper lobe nodule; PA and lateral; CR and DX) as\n"
    "DICOM files DIR/<PatientID>/<view>.dcm, and prints one line per file: path, patient,\n"
    "view, finding, SOP class, transfer syntax. The same options write the same bytes.\n\n"
    "  --out DIR           output folder (created if missing)\n"
    "  --seed N            varies the anatomy, the noise and the UIDs (default 1)\n"
    "  --size ROWS         image height in pixels, 64..4096 (default 1024; width 0.86x)\n"
    "  --syntax NAME       write every file in one transfer syntax instead of each file's\n"
    "                      own: explicit-le, jpeg-lossless, jpeg-ls or rle\n" RD_CLI_COMMON_HELP;

static const char *view_name(rd_sample_view v)
{
    switch (v) {
    case RD_SAMPLE_VIEW_PA:
        return "PA";
    case RD_SAMPLE_VIEW_AP:
        return "AP";
    case RD_SAMPLE_VIEW_LATERAL:
        return "LATERAL";
    }
    return "?";
}

int rd_cmd_samples(int argc, char **argv)
{
    enum { OPT_OUT = RD_OPT_FIRST_PRIVATE, OPT_SEED, OPT_SIZE, OPT_SYNTAX };
    static const struct option opts[] = {{"out", required_argument, NULL, OPT_OUT},
                                         {"seed", required_argument, NULL, OPT_SEED},
                                         {"size", required_argument, NULL, OPT_SIZE},
                                         {"syntax", required_argument, NULL, OPT_SYNTAX},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_samples_options so;
    const char *out = NULL;
    int opt, rc;
    long v;

    rd_cli_init(&cli, "radraft samples");
    rd_samples_options_default(&so);
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_OUT:
            out = optarg;
            break;
        case OPT_SEED:
            if (rd_cli_parse_int(&cli, "--seed", optarg, 0, 2147483647L, &v) != 0)
                return RD_EXIT_USAGE;
            so.seed = (uint64_t)v;
            break;
        case OPT_SIZE:
            if (rd_cli_parse_int(&cli, "--size", optarg, RD_SAMPLE_MIN_ROWS, RD_SAMPLE_MAX_ROWS,
                                 &v) != 0)
                return RD_EXIT_USAGE;
            so.rows = (int)v;
            break;
        case OPT_SYNTAX: {
            rd_dicom_syntax syn;
            if (rd_dicom_syntax_parse(optarg, &syn, &err) != RD_OK) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                return RD_EXIT_USAGE;
            }
            so.force_syntax = (int)syn;
            break;
        }
        }
    }
    if (opt < 0 || (rc = rd_cli_no_operands(&cli, argc, argv)) != RD_EXIT_OK)
        return rc;
    if (!out || !out[0])
        return rd_cli_usage_error(&cli, help, "--out DIR is required");
    if (rd_cli_finish_config(&cli) != 0)
        return RD_EXIT_FAIL;

    for (size_t i = 0; i < rd_samples_count(); i++) {
        const rd_sample_case *c = rd_samples_case(i);
        char rel[256], path[4096], dir[4096];
        rd_dicom_syntax syn = so.force_syntax >= 0 ? (rd_dicom_syntax)so.force_syntax : c->syntax;

        if (rd_samples_case_path(i, rel, sizeof rel, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            return RD_EXIT_FAIL;
        }
        if ((size_t)snprintf(path, sizeof path, "%s/%s", out, rel) >= sizeof path ||
            (size_t)snprintf(dir, sizeof dir, "%s/%s", out, c->patient_id) >= sizeof dir) {
            rd_cli_error(&cli, "output path too long");
            return RD_EXIT_FAIL;
        }
        if (rd_mkdirs(dir, &err) != RD_OK || rd_samples_write_case(i, &so, path, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            return RD_EXIT_FAIL;
        }
        printf("%s\t%s\t%s\t%s\t%s\t%s\n", path, c->patient_id, view_name(c->params.view),
               c->finding, c->sop_class == RD_DICOM_XRAY_DX ? "DX" : "CR",
               rd_dicom_syntax_short_name(syn));
        fflush(stdout);
    }
    return RD_EXIT_OK;
}
