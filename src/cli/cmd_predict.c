/* radraft predict: finding scores of images as CSV (one row per image): the scores radraft
 * bases its report on, that is the encoder's scores combined with the votes of similar
 * archived cases when an archive is available, else the encoder's own. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "radraft/dicom.h"
#include "radraft/encoder.h"
#include "radraft/findings.h"
#include "radraft/generator.h"
#include "radraft/image.h"
#include "radraft/index.h"
#include "radraft/log.h"
#include "radraft/pipeline.h"
#include "radraft/store.h"
#include "base/util.h"
#include "base/walk.h"

static const char help[] =
    "usage: radraft predict [--model MODEL] [--out FILE.csv] [--data-dir DIR] [--encoder-only]\n"
    "                       [--uncalibrated] FILE_OR_DIR...\n"
    "Scores every image (DICOM or PNG; folders are searched recursively, in name order) and\n"
    "writes a CSV: a header row \"path,<finding>,...\" with the 14 findings in vocabulary\n"
    "order, then one row per image with its path and a score in [0, 1] per finding.\n"
    "The score is the one radraft drafts reports from: with an archive of similar cases (the\n"
    "data directory's archive, else the model's seed archive when archive.load_seed is on),\n"
    "the encoder's scores combined with the similarity-weighted votes of the nearest archived\n"
    "cases (settings retrieval.* and the model's \"retrieval\"); without one, the encoder's\n"
    "own scores. Either is then calibrated into a probability when the model has a\n"
    "\"calibration\" (--uncalibrated: not). Which one is used is said on stderr. A PNG never votes "
    "for itself: archive\n"
    "entries of the image with the same file name are left out (a DICOM file's own study\n"
    "and patient are, as in the pipeline). A file that cannot be read is reported on stderr\n"
    "and the exit status is 1. --log-level debug logs every image's neighbours.\n\n"
    "  --model MODEL       model folder (with model.json) or JSON file (config encoder.model)\n"
    "  --out FILE          write the CSV here instead of standard output\n"
    "  --data-dir DIR      data directory holding the archive (config server.data_dir)\n"
    "  --encoder-only      the encoder's own scores, without the archive\n"
    "  --uncalibrated      the scores before the model's calibration (what it is fitted on)\n"
    "  --threads N         worker threads (config encoder.threads; 0 = one per core)\n"
    "  --batch N           images per forward pass (config encoder.batch)\n" RD_CLI_COMMON_HELP;

#define MAX_FILES 10000000
/* Folders 33 levels below a given folder are an error (32 levels are walked). */
#define MAX_DEPTH 33

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

/* The rd_walk callback: keeps the images (PNG or DICOM by their first bytes). */
static rd_status walk_file(void *ctx, const char *path, const struct stat *sb, rd_error *err)
{
    (void)sb;
    if (!rd_png_probe(path) && !rd_dicom_probe(path))
        return RD_OK;
    if (list_add(ctx, path) != 0)
        return rd_error_set(err, RD_E_NOMEM, "out of memory or more than %d files", MAX_FILES);
    return RD_OK;
}

/* Adds the images under `dir`, depth first in name order, following links (not loops). A
 * folder that cannot be read, or nested MAX_DEPTH levels deep, is an error: the CSV would
 * otherwise be silently short of images. */
static rd_status walk(file_list *l, const char *dir, rd_error *err)
{
    rd_walk_options o;
    rd_walk_options_default(&o);
    o.follow_symlinks = 1;
    o.sorted = 1;
    o.max_depth = MAX_DEPTH;
    return rd_walk(dir, &o, walk_file, l, NULL, err);
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

/* The archive to retrieve from, or NULL in *out with the reason in `why`. The data
 * directory's archive rows of this model version come first; when it holds none (or there
 * is no database there: predict never creates one), the model's seed archive is read into
 * memory, as the pipeline would import it on its first start. */
static rd_status open_archive(const rd_cli *cli, const char *model, const char *data_dir,
                              const rd_nn_info *info, rd_index **out, char *why, size_t why_size,
                              rd_error *err)
{
    char db[4200], seed[4096];
    struct stat sb;
    rd_store *store = NULL;
    rd_index *ix = NULL;
    rd_status st;
    long n_seed = 0, n_store;

    *out = NULL;
    if (info->embedding_dim <= 0) {
        snprintf(why, why_size, "the model has no embedding");
        return RD_OK;
    }
    /* A data directory on PostgreSQL holds no radraft.db but its id, once a store used it. */
    if (snprintf(db, sizeof db, "%s/%s", data_dir,
                 strcmp(cli->cfg.store_backend, "postgresql") == 0 ? "store-id" : "radraft.db") >=
        (int)sizeof db)
        return rd_error_set(err, RD_E_INVALID, "%s: data directory path too long", data_dir);
    if (stat(db, &sb) == 0) {
        if ((st = rd_cli_store_open(cli, data_dir, &store, err)) != RD_OK)
            return st;
        st = rd_index_load(&ix, store, info->version, info->embedding_dim, NULL, NULL, err);
        rd_store_close(store);
        if (st != RD_OK)
            return st;
    } else if ((st = rd_index_create(&ix, info->version, info->embedding_dim, err)) != RD_OK) {
        return st;
    }
    n_store = rd_index_count(ix);
    if (n_store > 0) {
        snprintf(why, why_size, "the archive in %s (%ld entries)", data_dir, n_store);
        *out = ix;
        return RD_OK;
    }
    if ((st = rd_index_seed_default_path(model, seed, sizeof seed, err)) != RD_OK)
        goto fail;
    if (!cli->cfg.archive_load_seed || stat(seed, &sb) != 0) {
        snprintf(why, why_size, "no archive: nothing for model %s in %s%s", info->version, data_dir,
                 cli->cfg.archive_load_seed ? " and no seed archive beside the model"
                                            : " (archive.load_seed is off)");
        rd_index_free(ix);
        return RD_OK;
    }
    if ((st = rd_index_seed_read(ix, NULL, seed, 0, &n_seed, err)) != RD_OK)
        goto fail;
    if (rd_index_count(ix) == 0) {
        snprintf(why, why_size, "no archive: the seed archive %s is empty", seed);
        rd_index_free(ix);
        return RD_OK;
    }
    snprintf(why, why_size, "the seed archive %s (%ld entries)", seed, rd_index_count(ix));
    *out = ix;
    return RD_OK;
fail:
    rd_index_free(ix);
    return st;
}

/* What one image's query excludes besides the usual filters: its own study, in the form
 * the archive keeps it ("nih:<name without extension>" for an imported NIH image, the Study
 * Instance UID for DICOM) and as the SHA-256 a seed archive keeps instead. */
typedef struct query_self {
    char study[RD_INDEX_KEY_MAX + 8];
    char study_hash[RD_SHA256_HEX_SIZE];
    char patient_hash[RD_SHA256_HEX_SIZE];
} query_self;

static void query_for_png(const char *path, query_self *qs)
{
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    snprintf(qs->study, sizeof qs->study, "nih:%.*s", (int)strcspn(name, "."), name);
    rd_sha256_hex(qs->study, strlen(qs->study), qs->study_hash);
    qs->patient_hash[0] = '\0';
}

static void query_for_dicom(const rd_config *cfg, const rd_dicom_meta *m, query_self *qs)
{
    rd_strlcpy(qs->study, m->study_uid, sizeof qs->study);
    rd_sha256_hex(qs->study, strlen(qs->study), qs->study_hash);
    rd_index_patient_hash(cfg->archive_patient_salt, m->patient_id, qs->patient_hash);
}

/* Drops the hits of the query's own study as a seed names it (the search itself already
 * left out the plain form) and keeps at most k. Returns the number kept. */
static int drop_self(rd_index_hit *hits, int n, const query_self *qs, int k)
{
    int m = 0;
    for (int i = 0; i < n && m < k; i++) {
        if (qs->study[0] && strcmp(hits[i].study_uid, qs->study_hash) == 0)
            continue;
        if (m != i)
            hits[m] = hits[i];
        m++;
    }
    return m;
}

/* Retrieves the neighbours of a batch of `n` embedded images in one search, combines their
 * votes with the encoder's scores, calibrates them and writes the rows. Returns 1 on success. */
static int search_and_write(const rd_cli *cli, FILE *out, rd_index *ix,
                            const rd_retrieval_settings *rs, int k_search, const char *const *names,
                            int n, const float *emb, const float *scores, rd_index_query *queries,
                            const query_self *selves, rd_index_hit *hits, int *n_hits,
                            const rd_calibration *cal)
{
    rd_index_params p = rs->search;
    rd_error err;
    int dim = rd_index_dim(ix);
    p.k = k_search;
    for (int j = 0; j < n; j++)
        queries[j].embedding = emb + (size_t)j * (size_t)dim;
    if (rd_index_search_batch(ix, queries, n, &p, hits, n_hits, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        return 0;
    }
    for (int j = 0; j < n; j++) {
        rd_index_hit *h = hits + (size_t)j * (size_t)k_search;
        double enc[RD_FINDING_N_ABNORMAL], votes[RD_FINDING_COUNT];
        double combined[RD_FINDING_N_ABNORMAL];
        int m = drop_self(h, n_hits[j], &selves[j], rs->search.k);
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
            enc[f] = scores[(size_t)j * RD_FINDING_N_ABNORMAL + f];
        rd_index_scores(h, m, enc, &rs->votes, votes, combined);
        rd_calibration_apply(cal, combined);
        rd_log_debug("predict: %s: %d neighbours (own study %s left out)", names[j], m,
                     selves[j].study);
        for (int i = 0; i < m; i++)
            rd_log_debug("predict: %s: neighbour %d: id %lld similarity %.6f study %s", names[j],
                         i + 1, (long long)h[i].id, (double)h[i].similarity, h[i].study_uid);
        csv_field(out, names[j]);
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
            fprintf(out, ",%.6f", combined[f]);
        fputc('\n', out);
    }
    return 1;
}

int rd_cmd_predict(int argc, char **argv)
{
    enum {
        OPT_MODEL = RD_OPT_FIRST_PRIVATE,
        OPT_OUT,
        OPT_THREADS,
        OPT_BATCH,
        OPT_DATA_DIR,
        OPT_ENCODER_ONLY,
        OPT_UNCALIBRATED
    };
    static const struct option opts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                         {"out", required_argument, NULL, OPT_OUT},
                                         {"threads", required_argument, NULL, OPT_THREADS},
                                         {"batch", required_argument, NULL, OPT_BATCH},
                                         {"data-dir", required_argument, NULL, OPT_DATA_DIR},
                                         {"encoder-only", no_argument, NULL, OPT_ENCODER_ONLY},
                                         {"uncalibrated", no_argument, NULL, OPT_UNCALIBRATED},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_cli_embedder e = {0};
    rd_dicom_options dopts;
    const char *model = NULL, *out_path = NULL, *data_dir = NULL;
    char model_buf[4096], why[8400] = "--encoder-only";
    long threads = -1, batch = -1;
    int opt, rc, encoder_only = 0, uncalibrated = 0, k_search = 0;
    rd_calibration cal = {0};
    rd_index *ix = NULL;
    rd_retrieval_settings rs;
    rd_index_query *queries = NULL;
    query_self *selves = NULL;
    rd_index_hit *hits = NULL;
    int *n_hits = NULL;
    file_list files = {0};
    FILE *out = stdout;

    rd_cli_init(&cli, "radraft predict");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
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
        case OPT_DATA_DIR:
            data_dir = optarg;
            break;
        case OPT_ENCODER_ONLY:
            encoder_only = 1;
            break;
        case OPT_UNCALIBRATED:
            uncalibrated = 1;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (optind >= argc)
        return rd_cli_usage_error(&cli, help, "no FILE or DIR given");
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    if (!model) {
        if (rd_pipeline_model_path(&cli.cfg, model_buf, sizeof model_buf, &err) != RD_OK) {
            rd_cli_error(&cli, "no model: give --model or set encoder.model");
            return RD_EXIT_USAGE;
        }
        model = model_buf;
    }
    if (!data_dir)
        data_dir = cli.cfg.server_data_dir;
    for (int i = optind; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            if (walk(&files, argv[i], &err) != RD_OK) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                rc = RD_EXIT_FAIL;
            }
        } else if (list_add(&files, argv[i]) != 0) {
            rd_cli_error(&cli, "%s: cannot list", argv[i]);
            rc = RD_EXIT_FAIL;
        }
    }
    if (rd_cli_embedder_open(&e, &cli, model, threads, batch, files.n) != 0) {
        rc = RD_EXIT_FAIL;
        goto out;
    }
    const rd_nn_info *info = e.info;
    batch = e.batch;
    if (info->n_labels != RD_FINDING_N_ABNORMAL) {
        rd_cli_error(&cli, "%s: the model has no finding scores", model);
        rc = RD_EXIT_FAIL;
        goto out;
    }
    if (!uncalibrated) {
        char *mj = NULL;
        if (rd_nn_model_read_json(model, &mj, NULL, &err) != RD_OK ||
            rd_calibration_parse(&cal, mj, model, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            free(mj);
            rc = RD_EXIT_FAIL;
            goto out;
        }
        free(mj);
    }
    if (!encoder_only) {
        if (open_archive(&cli, model, data_dir, info, &ix, why, sizeof why, &err) != RD_OK ||
            (ix && rd_retrieval_settings_load(&rs, &cli.cfg, model, &err) != RD_OK)) {
            rd_cli_error(&cli, "%s (--encoder-only scores without the archive)",
                         rd_error_message(&err));
            rc = RD_EXIT_FAIL;
            goto out;
        }
    }
    if (ix) {
        /* One more hit than k: a seed archive's entry of the image itself is only recognised
         * after the search (by its hashed study) and then dropped. */
        rs.search.with_text = 0;
        k_search = rs.search.k < RD_INDEX_MAX_K ? rs.search.k + 1 : RD_INDEX_MAX_K;
        fprintf(stderr,
                "radraft predict: scores: combined: encoder x %.2f + votes of up to %d similar "
                "cases x %.2f, from %s\n",
                rs.votes.encoder_weight, rs.search.k, 1 - rs.votes.encoder_weight, why);
    } else {
        fprintf(stderr, "radraft predict: scores: the encoder's own (%s)\n", why);
    }
    fprintf(stderr, "radraft predict: %s\n",
            cal.enabled    ? "calibrated by the model's calibration"
            : uncalibrated ? "not calibrated (--uncalibrated)"
                           : "not calibrated (the model has no calibration)");
    if (out_path && !(out = fopen(out_path, "w"))) {
        rd_cli_error(&cli, "%s: cannot write", out_path);
        out = stdout;
        rc = RD_EXIT_FAIL;
        goto out;
    }
    rd_dicom_options_from_config(&dopts, &cli.cfg);
    if (ix) {
        size_t nh = 0;
        queries = calloc((size_t)batch, sizeof *queries);
        selves = calloc((size_t)batch, sizeof *selves);
        n_hits = calloc((size_t)batch, sizeof *n_hits);
        if (rd_mul_size((size_t)batch, (size_t)k_search, &nh))
            hits = calloc(nh, sizeof *hits);
        if (!queries || !selves || !n_hits || !hits) {
            rd_cli_error(&cli, "out of memory");
            rc = RD_EXIT_FAIL;
            goto out;
        }
    }
    fputs("path", out);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        fprintf(out, ",%s", rd_finding_name((rd_finding)f));
    fputc('\n', out);
    for (int i = 0; i < files.n;) {
        int n = 0;
        while (n < e.batch && i < files.n) {
            const char *path = files.p[i++];
            rd_dicom_meta meta;
            int png = rd_png_probe(path);
            rd_status st = png ? rd_png_read(path, &e.imgs[n], NULL, &err)
                               : rd_dicom_read_image(path, &dopts, &e.imgs[n], &meta, &err);
            if (st != RD_OK) {
                rd_cli_error(&cli, "%s: %s", path, rd_error_message(&err));
                rc = RD_EXIT_FAIL;
                continue;
            }
            if (ix) {
                rd_index_query *q = &queries[n];
                memset(q, 0, sizeof *q);
                if (png) {
                    query_for_png(path, &selves[n]);
                    q->view = RD_VIEW_UNKNOWN; /* a PNG says nothing of its view */
                } else {
                    query_for_dicom(&cli.cfg, &meta, &selves[n]);
                    q->view = rd_view_family_from_position(meta.view_position);
                    q->study_date = rd_index_parse_date(meta.study_date);
                }
                q->study_uid = selves[n].study;
                q->patient_hash = selves[n].patient_hash;
            }
            e.names[n++] = path;
        }
        if (n > 0) {
            if (rd_cli_embedder_embed(&e, n, &err) != RD_OK) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                rc = RD_EXIT_FAIL;
            } else if (ix && !search_and_write(&cli, out, ix, &rs, k_search, e.names, n, e.emb,
                                               e.scores, queries, selves, hits, n_hits, &cal)) {
                rc = RD_EXIT_FAIL;
            } else if (!ix) {
                for (int j = 0; j < n; j++) {
                    csv_field(out, e.names[j]);
                    for (int f = 0; f < info->n_labels; f++)
                        fprintf(out, ",%.6f",
                                rd_calibration_prob(
                                    &cal, f, (double)e.scores[(size_t)j * info->n_labels + f]));
                    fputc('\n', out);
                }
            }
        }
        rd_cli_embedder_clear(&e, n);
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
    rd_cli_embedder_close(&e);
    free(queries);
    free(selves);
    free(hits);
    free(n_hits);
    rd_index_free(ix);
    return rc;
}
