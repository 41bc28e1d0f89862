/* radraft render: decode a DICOM (or PNG) image and write it as a grayscale PNG. */
#include "cli.h"

#include <math.h>
#include <string.h>

#include "radraft/dicom.h"
#include "radraft/image.h"

static const char help[] =
    "usage: radraft render FILE -o OUT.png [--size N] [--bits 8|16] [OPTIONS]\n"
    "Decodes the first frame of a DICOM file (or a PNG) as radraft sees it -- modality LUT,\n"
    "VOI window (or the dicom.voi_percentile_low/high window when the file has none),\n"
    "MONOCHROME1 inverted, colour as luminance -- and writes it as a grayscale PNG.\n\n"
    "  -o, --output FILE   the PNG to write (required)\n"
    "  --size N            resize so that the longer side is N pixels (aspect kept)\n"
    "  --bits 8|16         PNG bit depth (default 8)\n" RD_CLI_COMMON_HELP;

int rd_cmd_render(int argc, char **argv)
{
    enum { OPT_SIZE = RD_OPT_FIRST_PRIVATE, OPT_BITS };
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"size", required_argument, NULL, OPT_SIZE},
                                         {"bits", required_argument, NULL, OPT_BITS},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_image *img = NULL, *resized = NULL;
    rd_dicom_options dopts;
    const char *output = NULL;
    long size = 0, bits = 8;
    int opt, rc;
    rd_status st;

    rd_cli_init(&cli, "radraft render");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "ho:", opts, help, &rc)) > 0) {
        switch (opt) {
        case 'o':
            output = optarg;
            break;
        case OPT_SIZE:
            if (rd_cli_parse_int(&cli, "--size", optarg, 1, RD_IMAGE_MAX_DIM, &size) != 0)
                return RD_EXIT_USAGE;
            break;
        case OPT_BITS:
            if (rd_cli_parse_int(&cli, "--bits", optarg, 8, 16, &bits) != 0 ||
                (bits != 8 && bits != 16)) {
                rd_cli_error(&cli, "--bits expects 8 or 16");
                return RD_EXIT_USAGE;
            }
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (optind != argc - 1 || !output)
        return rd_cli_usage_error(&cli, help, "%s",
                                  optind >= argc      ? "no FILE given"
                                  : optind < argc - 1 ? "one FILE at a time"
                                                      : "-o OUT.png is required");
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    rd_dicom_options_from_config(&dopts, &cli.cfg);

    rc = RD_EXIT_FAIL; /* what `goto out` returns until the PNG is written */
    if ((st = rd_cli_read_image(argv[optind], &dopts, &img, NULL, &err)) != RD_OK) {
        rd_cli_error(&cli, "%s (%s)", rd_error_message(&err), rd_status_name(st));
        goto out;
    }
    if (size > 0) {
        int w, h;
        if (img->width >= img->height) {
            w = (int)size;
            h = (int)lround((double)img->height * (double)size / (double)img->width);
        } else {
            h = (int)size;
            w = (int)lround((double)img->width * (double)size / (double)img->height);
        }
        if (w < 1)
            w = 1;
        if (h < 1)
            h = 1;
        if (rd_image_resize(img, w, h, &resized, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            goto out;
        }
        rd_image_free(img);
        img = resized;
        resized = NULL;
    }
    if (rd_png_write(img, output, (int)bits, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    rc = RD_EXIT_OK;
out:
    rd_image_free(img);
    rd_image_free(resized);
    return rc;
}
