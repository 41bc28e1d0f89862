#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/samples.h"
#include "base/util.h"

static const char help[] =
    "usage: radraft samples --out DIR [--seed N] [--size ROWS] [--syntax NAME] [OPTIONS]\n"
    "       radraft samples --from-png FILE.png --out FILE.dcm --patient-id ID [OPTIONS]\n"
    "Writes the synthetic sample studies (chest X-rays of made-up patients: normal,\n"
    "cardiomegaly, left effusion, right upper lobe nodule; PA and lateral; CR and DX) as\n"
    "DICOM files DIR/<PatientID>/<view>.dcm, and prints one line per file: path, patient,\n"
    "view, finding, SOP class, transfer syntax. The same options write the same bytes.\n\n"
    "  --out DIR           output folder (created if missing)\n"
    "  --seed N            varies the anatomy, the noise and the UIDs (default 1)\n"
    "  --size ROWS         image height in pixels, 64..4096 (default 1024; width 0.86x)\n"
    "  --syntax NAME       write every file in one transfer syntax instead of each file's\n"
    "                      own: explicit-le, jpeg-lossless, jpeg-ls or rle\n\n"
    "With --from-png, wraps one grayscale PNG (8 or 16 bits) as a frontal chest X-ray\n"
    "instance with made-up patient data instead: every stored value is the PNG's sample,\n"
    "the UIDs derive from the patient, the accession number and the pixels, so the same\n"
    "command writes the same bytes. --out is then the file to write.\n"
    "  --patient-id ID     required (at most 64 characters)\n"
    "  --patient-name PN   e.g. Demo^Cardiomegaly\n"
    "  --birth-date D      YYYYMMDD\n"
    "  --sex M|F|O\n"
    "  --view PA|AP        View Position (default PA)\n"
    "  --study-date D      YYYYMMDD (default 20240101)\n"
    "  --study-time T      HHMMSS (default 120000)\n"
    "  --accession A       accession number (at most 16 characters)\n"
    "  --modality DX|CR    DX For Presentation (default) or CR\n"
    "  --syntax NAME       as above (default explicit-le)\n"
    "  --pixel-spacing MM  at the detector (default: 430 mm / rows)\n"
    "  --comment TEXT      Image Comments: where the image came from\n" RD_CLI_COMMON_HELP;

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

static int parse_double(const rd_cli *cli, const char *name, const char *text, double lo, double hi,
                        double *out)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (!end || end == text || *end || !(v > lo && v < hi)) {
        rd_cli_error(cli, "%s: '%s' is not a number in (%g, %g)", name, text, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* --from-png: one PNG to one instance. */
static int write_from_png(const rd_cli *cli, const char *png, const char *out,
                          const rd_sample_png *sp)
{
    rd_error err;
    if (rd_samples_write_png(png, sp, out, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    printf("%s\t%s\t%s\t%s\t%s\t%s\n", out, sp->patient_id, view_name(sp->view), png,
           sp->sop_class == RD_DICOM_XRAY_DX ? "DX" : "CR", rd_dicom_syntax_short_name(sp->syntax));
    fflush(stdout);
    return RD_EXIT_OK;
}

int rd_cmd_samples(int argc, char **argv)
{
    enum {
        OPT_OUT = RD_OPT_FIRST_PRIVATE,
        OPT_SEED,
        OPT_SIZE,
        OPT_SYNTAX,
        OPT_FROM_PNG,
        OPT_PATIENT_ID,
        OPT_PATIENT_NAME,
        OPT_BIRTH_DATE,
        OPT_SEX,
        OPT_VIEW,
        OPT_STUDY_DATE,
        OPT_STUDY_TIME,
        OPT_ACCESSION,
        OPT_MODALITY,
        OPT_PIXEL_SPACING,
        OPT_COMMENT
    };
    static const struct option opts[] = {
        {"out", required_argument, NULL, OPT_OUT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"size", required_argument, NULL, OPT_SIZE},
        {"syntax", required_argument, NULL, OPT_SYNTAX},
        {"from-png", required_argument, NULL, OPT_FROM_PNG},
        {"patient-id", required_argument, NULL, OPT_PATIENT_ID},
        {"patient-name", required_argument, NULL, OPT_PATIENT_NAME},
        {"birth-date", required_argument, NULL, OPT_BIRTH_DATE},
        {"sex", required_argument, NULL, OPT_SEX},
        {"view", required_argument, NULL, OPT_VIEW},
        {"study-date", required_argument, NULL, OPT_STUDY_DATE},
        {"study-time", required_argument, NULL, OPT_STUDY_TIME},
        {"accession", required_argument, NULL, OPT_ACCESSION},
        {"modality", required_argument, NULL, OPT_MODALITY},
        {"pixel-spacing", required_argument, NULL, OPT_PIXEL_SPACING},
        {"comment", required_argument, NULL, OPT_COMMENT},
        RD_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_samples_options so;
    rd_sample_png sp;
    const char *out = NULL, *png = NULL;
    int opt, rc, synthetic_only = 0, png_only = 0;
    long v;

    rd_cli_init(&cli, "radraft samples");
    rd_samples_options_default(&so);
    rd_sample_png_default(&sp);
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_OUT:
            out = optarg;
            break;
        case OPT_SEED:
            if (rd_cli_parse_int(&cli, "--seed", optarg, 0, 2147483647L, &v) != 0)
                return RD_EXIT_USAGE;
            so.seed = (uint64_t)v;
            synthetic_only = 1;
            break;
        case OPT_SIZE:
            if (rd_cli_parse_int(&cli, "--size", optarg, RD_SAMPLE_MIN_ROWS, RD_SAMPLE_MAX_ROWS,
                                 &v) != 0)
                return RD_EXIT_USAGE;
            so.rows = (int)v;
            synthetic_only = 1;
            break;
        case OPT_SYNTAX: {
            rd_dicom_syntax syn;
            if (rd_dicom_syntax_parse(optarg, &syn, &err) != RD_OK) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                return RD_EXIT_USAGE;
            }
            so.force_syntax = (int)syn;
            sp.syntax = syn;
            break;
        }
        case OPT_FROM_PNG:
            png = optarg;
            break;
        case OPT_PATIENT_ID:
            sp.patient_id = optarg;
            png_only = 1;
            break;
        case OPT_PATIENT_NAME:
            sp.patient_name = optarg;
            png_only = 1;
            break;
        case OPT_BIRTH_DATE:
            sp.birth_date = optarg;
            png_only = 1;
            break;
        case OPT_SEX:
            sp.sex = optarg;
            png_only = 1;
            break;
        case OPT_VIEW:
            if (strcmp(optarg, "PA") == 0)
                sp.view = RD_SAMPLE_VIEW_PA;
            else if (strcmp(optarg, "AP") == 0)
                sp.view = RD_SAMPLE_VIEW_AP;
            else
                return rd_cli_usage_error(&cli, help, "--view: '%s' is not PA or AP", optarg);
            png_only = 1;
            break;
        case OPT_STUDY_DATE:
            sp.study_date = optarg;
            png_only = 1;
            break;
        case OPT_STUDY_TIME:
            sp.study_time = optarg;
            png_only = 1;
            break;
        case OPT_ACCESSION:
            sp.accession_number = optarg;
            png_only = 1;
            break;
        case OPT_MODALITY:
            if (strcmp(optarg, "DX") == 0)
                sp.sop_class = RD_DICOM_XRAY_DX;
            else if (strcmp(optarg, "CR") == 0)
                sp.sop_class = RD_DICOM_XRAY_CR;
            else
                return rd_cli_usage_error(&cli, help, "--modality: '%s' is not DX or CR", optarg);
            png_only = 1;
            break;
        case OPT_PIXEL_SPACING:
            if (parse_double(&cli, "--pixel-spacing", optarg, 0.0, 100.0, &sp.pixel_spacing) != 0)
                return RD_EXIT_USAGE;
            png_only = 1;
            break;
        case OPT_COMMENT:
            sp.image_comments = optarg;
            png_only = 1;
            break;
        }
    }
    if (opt < 0 || (rc = rd_cli_no_operands(&cli, argc, argv)) != RD_EXIT_OK)
        return rc;
    if (!out || !out[0])
        return rd_cli_usage_error(&cli, help, "--out %s is required", png ? "FILE" : "DIR");
    if (png && synthetic_only)
        return rd_cli_usage_error(&cli, help, "--seed and --size do not apply to --from-png");
    if (!png && png_only)
        return rd_cli_usage_error(&cli, help, "the patient options need --from-png");
    if (png && (!sp.patient_id || !sp.patient_id[0]))
        return rd_cli_usage_error(&cli, help, "--from-png needs --patient-id");
    if (rd_cli_finish_config(&cli) != 0)
        return RD_EXIT_FAIL;
    if (png)
        return write_from_png(&cli, png, out, &sp);

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
