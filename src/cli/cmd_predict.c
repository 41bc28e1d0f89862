/* radraft predict: finding scores of images as CSV (one row per image). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "radraft/dicom.h"
#include "radraft/encoder.h"
#include "radraft/findings.h"
#include "radraft/image.h"

static const char help[] =
    "usage: radraft predict [--model MODEL] [--out FILE.csv] FILE_OR_DIR...\n"
    "Scores every image (DICOM or PNG; folders are searched recursively, in name order) with\n"
    "the encoder and writes a CSV: a header row \"path,<finding>,...\" with the 14 findings\n"
    "in vocabulary order, then one row per image with its path and a score in [0, 1] per\n"
    "finding. A file that cannot be read is reported on stderr and the exit status is 1.\n\n"
    "  --model MODEL       model folder (with model.json) or JSON file (config encoder.model)\n"
    "  --out FILE          write the CSV here instead of standard output\n"
    "  --threads N         worker threads (config encoder.threads; 0 = one per core)\n"
    "  --batch N           images per forward pass (config encoder.batch)\n" RD_CLI_COMMON_HELP;

#define MAX_FILES 10000000
#define MAX_DEPTH 32

typedef struct file_list {
    char **p;
    int n, cap;
} file_list;

static int list_add(file_list *l, const char *path)
{
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 256;
        char **np;
        if (nc > MAX_FILES || !(np = realloc(l->p, (size_t)nc * sizeof *np)))
            return -1;
        l->p = np;
        l->cap = nc;
    }
    if (!(l->p[l->n] = strdup(path)))
        return -1;
    l->n++;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_png(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char buf[8];
    FILE *fp = fopen(path, "rb");
    int ok = fp && fread(buf, 1, 8, fp) == 8 && memcmp(buf, sig, 8) == 0;
    if (fp)
        fclose(fp);
    return ok;
}

/* Adds the images under `dir` (PNG or DICOM by their first bytes), sorted by name. */
static int walk(file_list *l, const char *dir, int depth)
{
    DIR *d;
    struct dirent *e;
    file_list names = {0};
    int rc = 0;
    if (depth > MAX_DEPTH || !(d = opendir(dir)))
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (list_add(&names, e->d_name) != 0) {
            rc = -1;
            break;
        }
    }
    closedir(d);
    qsort(names.p, (size_t)names.n, sizeof *names.p, cmp_name);
    for (int i = 0; rc == 0 && i < names.n; i++) {
        char path[4096];
        struct stat sb;
        if (snprintf(path, sizeof path, "%s/%s", dir, names.p[i]) >= (int)sizeof path ||
            stat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode))
            rc = walk(l, path, depth + 1);
        else if (S_ISREG(sb.st_mode) && (is_png(path) || rd_dicom_probe(path)))
            rc = list_add(l, path);
    }
    for (int i = 0; i < names.n; i++)
        free(names.p[i]);
    free(names.p);
    return rc;
}

/* A CSV field: quoted when it holds a comma, a quote or a line break. */
static void csv_field(FILE *fp, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

int rd_cmd_predict(int argc, char **argv)
{
    enum { OPT_MODEL = RD_OPT_FIRST_PRIVATE, OPT_OUT, OPT_THREADS, OPT_BATCH };
    static const struct option opts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                         {"out", required_argument, NULL, OPT_OUT},
                                         {"threads", required_argument, NULL, OPT_THREADS},
                                         {"batch", required_argument, NULL, OPT_BATCH},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_encoder *enc = NULL;
    rd_dicom_options dopts;
    const char *model = NULL, *out_path = NULL;
    long threads = -1, batch = -1;
    int opt, rc = RD_EXIT_OK;
    file_list files = {0};
    rd_image **imgs = NULL;
    const char **names = NULL;
    float *emb = NULL, *scores = NULL;
    FILE *out = stdout;

    rd_cli_init(&cli, "radraft predict");
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
        case OPT_OUT:
            out_path = optarg;
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
        rd_cli_error(&cli, "no FILE or DIR given");
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
    for (int i = optind; i < argc; i++) {
        struct stat sb;
        int r = stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode) ? walk(&files, argv[i], 0)
                                                               : list_add(&files, argv[i]);
        if (r != 0) {
            rd_cli_error(&cli, "%s: cannot list", argv[i]);
            rc = RD_EXIT_FAIL;
        }
    }
    if (threads < 0)
        threads = cli.cfg.encoder_threads;
    if (batch < 0)
        batch = cli.cfg.encoder_batch;
    if (batch > files.n)
        batch = files.n > 0 ? files.n : 1;
    if (rd_encoder_create(&enc, model, (int)threads, (int)batch, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    const rd_nn_info *info = rd_encoder_info(enc);
    if (info->n_labels != RD_FINDING_N_ABNORMAL) {
        rd_cli_error(&cli, "%s: the model has no finding scores", model);
        rc = RD_EXIT_FAIL;
        goto out;
    }
    if (out_path && !(out = fopen(out_path, "w"))) {
        rd_cli_error(&cli, "%s: cannot write", out_path);
        out = stdout;
        rc = RD_EXIT_FAIL;
        goto out;
    }
    rd_dicom_options_default(&dopts);
    dopts.max_dimension = cli.cfg.dicom_max_dimension;
    dopts.voi_percentile_low = cli.cfg.dicom_voi_percentile_low;
    dopts.voi_percentile_high = cli.cfg.dicom_voi_percentile_high;
    imgs = calloc((size_t)batch, sizeof *imgs);
    names = calloc((size_t)batch, sizeof *names);
    emb = malloc((size_t)batch * info->embedding_dim * sizeof *emb);
    scores = malloc((size_t)batch * info->n_labels * sizeof *scores);
    if (!imgs || !names || !emb || !scores) {
        rd_cli_error(&cli, "out of memory");
        rc = RD_EXIT_FAIL;
        goto out;
    }
    fputs("path", out);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        fprintf(out, ",%s", rd_finding_name((rd_finding)f));
    fputc('\n', out);
    for (int i = 0; i < files.n;) {
        int n = 0;
        while (n < batch && i < files.n) {
            const char *path = files.p[i++];
            rd_status st = is_png(path) ? rd_png_read(path, &imgs[n], NULL, &err)
                                        : rd_dicom_read_image(path, &dopts, &imgs[n], NULL, &err);
            if (st != RD_OK) {
                rd_cli_error(&cli, "%s: %s", path, rd_error_message(&err));
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
                for (int j = 0; j < n; j++) {
                    csv_field(out, names[j]);
                    for (int f = 0; f < info->n_labels; f++)
                        fprintf(out, ",%.6f", (double)scores[(size_t)j * info->n_labels + f]);
                    fputc('\n', out);
                }
            }
        }
        for (int j = 0; j < n; j++) {
            rd_image_free(imgs[j]);
            imgs[j] = NULL;
        }
    }
out:
    if (out != stdout && fclose(out) != 0) {
        rd_cli_error(&cli, "%s: write failed", out_path);
        rc = RD_EXIT_FAIL;
    } else if (out == stdout) {
        fflush(stdout);
    }
    for (int i = 0; i < files.n; i++)
        free(files.p[i]);
    free(files.p);
    free(imgs);
    free(names);
    free(emb);
    free(scores);
    rd_encoder_free(enc);
    return rc;
}
