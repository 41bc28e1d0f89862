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

static void print_result(const char *file, const rd_nn_info *info, const float *emb,
                         const float *scores)
{
    fputs("{\"file\": ", stdout);
    rd_cli_print_json_string(stdout, file);
    fputs(", \"model\": ", stdout);
    rd_cli_print_json_string(stdout, info->version);
    fputs(", \"embedding\": [", stdout);
    for (int i = 0; i < info->embedding_dim; i++)
        printf("%s%.7g", i ? ", " : "", (double)emb[i]);
    fputs("], \"scores\": {", stdout);
    for (int i = 0; i < info->n_labels; i++) {
        fputs(i ? ", " : "", stdout);
        rd_cli_print_json_string(stdout, info->labels[i]);
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
    rd_cli_embedder e;
    rd_dicom_options dopts;
    const char *model = NULL;
    long threads = -1, batch = -1;
    int opt, rc = RD_EXIT_OK;

    rd_cli_init(&cli, "radraft embed");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
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
        }
    }
    if (opt < 0)
        return rc;
    if (optind >= argc)
        return rd_cli_usage_error(&cli, help, "no FILE given");
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    if (!model)
        model = cli.cfg.encoder_model;
    if (!model[0]) {
        rd_cli_error(&cli, "no model: give --model or set encoder.model");
        return RD_EXIT_USAGE;
    }
    if (rd_cli_embedder_open(&e, &cli, model, threads, batch, argc - optind) != 0) {
        rc = RD_EXIT_FAIL;
        goto out;
    }
    rd_dicom_options_from_config(&dopts, &cli.cfg);
    for (int i = optind; i < argc;) {
        int n = 0;
        while (n < e.batch && i < argc) {
            const char *path = argv[i++];
            if (rd_cli_read_image(path, &dopts, &e.imgs[n], NULL, &err) != RD_OK) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                rc = RD_EXIT_FAIL;
                continue;
            }
            e.names[n++] = path;
        }
        if (n > 0) {
            if (rd_cli_embedder_embed(&e, n, &err) != RD_OK) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                rc = RD_EXIT_FAIL;
            } else {
                for (int j = 0; j < n; j++)
                    print_result(e.names[j], e.info, e.emb + (size_t)j * e.info->embedding_dim,
                                 e.scores + (size_t)j * e.info->n_labels);
            }
        }
        rd_cli_embedder_clear(&e, n);
        fflush(stdout);
    }
out:
    rd_cli_embedder_close(&e);
    return rc;
}
