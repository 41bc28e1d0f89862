/* radraft embed: images -> embedding + finding scores, one JSON object a line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "radraft/dicom.h"
#include "radraft/encoder.h"
#include "radraft/image.h"

static const char help[] =
    "usage: radraft embed [--model MODEL] [OPTIONS] FILE...\n"
    "Embeds each image (DICOM or PNG) with the encoder and prints one JSON object a line:\n"
    "{\"file\", \"model\" (version), \"embedding\" (L2-normalized), \"scores\" (per finding)}.\n"
    "A file that cannot be read is reported on stderr; the others are still embedded, and the\n"
    "exit status is 1.\n\n"
    "  --model MODEL       model folder (with model.json) or JSON file (config encoder.model)\n"
    "  --threads N         worker threads (config encoder.threads; 0 = one per core)\n"
    "  --batch N           images per forward pass (config encoder.batch)\n" RD_CLI_COMMON_HELP;

static void print_json_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(fp, "\\u%04x", *p);
        else
            fputc(*p, fp);
    }
    fputc('"', fp);
}

static void print_result(const char *file, const rd_nn_info *info, const float *emb,
                         const float *scores)
{
    fputs("{\"file\": ", stdout);
    print_json_string(stdout, file);
    fputs(", \"model\": ", stdout);
    print_json_string(stdout, info->version);
    fputs(", \"embedding\": [", stdout);
    for (int i = 0; i < info->embedding_dim; i++)
        printf("%s%.7g", i ? ", " : "", (double)emb[i]);
    fputs("], \"scores\": {", stdout);
    for (int i = 0; i < info->n_labels; i++) {
        fputs(i ? ", " : "", stdout);
        print_json_string(stdout, info->labels[i]);
        printf(": %.6f", (double)scores[i]);
    }
    fputs("}}\n", stdout);
}

int rd_cmd_embed(int argc, char **argv)
{
    enum { OPT_MODEL = RD_OPT_FIRST_PRIVATE, OPT_THREADS, OPT_BATCH };
    static const struct option opts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                         {"threads", required_argument, NULL, OPT_THREADS},
                                         {"batch", required_argument, NULL, OPT_BATCH},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_encoder *enc = NULL;
    rd_dicom_options dopts;
    const char *model = NULL;
    long threads = -1, batch = -1;
    int opt, rc = RD_EXIT_OK;
    rd_image **imgs = NULL;
    const char **names = NULL;
    float *emb = NULL, *scores = NULL;

    rd_cli_init(&cli, "radraft embed");
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = rd_cli_common_option(&cli, opt, optarg);
        if (r < 0)
            return RD_EXIT_USAGE;
        if (r > 0)
            continue;
        switch (opt) {
        case OPT_MODEL:
            model = optarg;
            break;
        case OPT_THREADS:
            if (rd_cli_parse_int(&cli, "--threads", optarg, 0, RD_NN_MAX_THREADS, &threads))
                return RD_EXIT_USAGE;
            break;
        case OPT_BATCH:
            if (rd_cli_parse_int(&cli, "--batch", optarg, 1, 256, &batch))
                return RD_EXIT_USAGE;
            break;
        case 'h':
            fputs(help, stdout);
            return RD_EXIT_OK;
        default:
            fputs(help, stderr);
            return RD_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        rd_cli_error(&cli, "no FILE given");
        fputs(help, stderr);
        return RD_EXIT_USAGE;
    }
    if (rd_cli_finish_config(&cli) != 0)
        return RD_EXIT_FAIL;
    if (!model)
        model = cli.cfg.encoder_model;
    if (!model[0]) {
        rd_cli_error(&cli, "no model: give --model or set encoder.model");
        return RD_EXIT_USAGE;
    }
    if (threads < 0)
        threads = cli.cfg.encoder_threads;
    if (batch < 0)
        batch = cli.cfg.encoder_batch;
    if (batch > argc - optind)
        batch = argc - optind;
    if (rd_encoder_create(&enc, model, (int)threads, (int)batch, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    const rd_nn_info *info = rd_encoder_info(enc);
    rd_dicom_options_from_config(&dopts, &cli.cfg);
    imgs = calloc((size_t)batch, sizeof *imgs);
    names = calloc((size_t)batch, sizeof *names);
    emb = malloc((size_t)batch * info->embedding_dim * sizeof *emb);
    scores = malloc(((size_t)batch * info->n_labels + 1) * sizeof *scores);
    if (!imgs || !names || !emb || !scores) {
        rd_cli_error(&cli, "out of memory");
        rc = RD_EXIT_FAIL;
        goto out;
    }
    for (int i = optind; i < argc;) {
        int n = 0;
        while (n < batch && i < argc) {
            const char *path = argv[i++];
            rd_status st = rd_png_probe(path)
                               ? rd_png_read(path, &imgs[n], NULL, &err)
                               : rd_dicom_read_image(path, &dopts, &imgs[n], NULL, &err);
            if (st != RD_OK) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                rc = RD_EXIT_FAIL;
                continue;
            }
            names[n++] = path;
        }
        if (n > 0) {
            if (rd_encoder_embed_batch(enc, (const rd_image *const *)imgs, n, emb, scores, &err) !=
                RD_OK) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                rc = RD_EXIT_FAIL;
            } else {
                for (int j = 0; j < n; j++)
                    print_result(names[j], info, emb + (size_t)j * info->embedding_dim,
                                 scores + (size_t)j * info->n_labels);
            }
        }
        for (int j = 0; j < n; j++) {
            rd_image_free(imgs[j]);
            imgs[j] = NULL;
        }
        fflush(stdout);
    }
out:
    free(imgs);
    free(names);
    free(emb);
    free(scores);
    rd_encoder_free(enc);
    return rc;
}
