/* radraft model: write (init), validate (check) and time (bench) encoder model files. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "base/util.h"
#include "radraft/nn.h"

static const char help[] =
    "usage: radraft model init --arch ARCH [--seed N] --out DIR\n"
    "       radraft model check MODEL\n"
    "       radraft model bench MODEL [--batch N] [--threads N] [--iters N] [--save-io DIR]\n"
    "init writes DIR/model.json and DIR/model.safetensors with seeded random (He-normal)\n"
    "weights; ARCH is resnet-small (the project's network), resnet18 or opzoo (every op).\n"
    "check loads and validates a model (a folder with model.json, or the JSON file) and\n"
    "prints what it describes as JSON. bench times forward passes on random input and prints\n"
    "as JSON the median milliseconds per batch, images per second, the GFLOP/s achieved\n"
    "and the sgemm rate this machine reaches on the same threads (measured in the run).\n\n"
    "  --arch ARCH         architecture for init\n"
    "  --seed N            random seed for init (default 1)\n"
    "  --out DIR           folder for init\n"
    "  --batch N           images per forward pass for bench (default 1)\n"
    "  --threads N         worker threads for bench (default: config encoder.threads; 0 = "
    "cores)\n"
    "  --iters N           timed forward passes for bench (default 20, after 3 "
    "warm-up)\n"
    "  --save-io DIR       bench: write the input (DIR/input.bin, float32 N x C x H x W) and\n"
    "                      the outputs (DIR/output.bin, each image's embedding then scores)\n"
    "                      of the last pass, to check them against a "
    "reference\n" RD_CLI_COMMON_HELP;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int do_check(rd_cli *cli, const char *path)
{
    rd_nn_model *m = NULL;
    rd_nn_ctx *ctx = NULL;
    rd_error err;
    if (rd_nn_model_load(&m, path, &err) != RD_OK ||
        rd_nn_ctx_create(&ctx, m, 1, 1, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        rd_nn_model_free(m);
        return RD_EXIT_FAIL;
    }
    const rd_nn_info *info = rd_nn_model_info(m);
    printf("{\"name\": \"%s\", \"version\": \"%s\", \"input\": [%d, %d, %d], \"params\": %zu, "
           "\"nodes\": %d, \"embedding_dim\": %d, \"labels\": %d, \"arena_bytes_batch1\": %zu, "
           "\"blas_core\": \"%s\"}\n",
           info->name, info->version, info->in_channels, info->in_height, info->in_width,
           info->n_params, info->n_nodes, info->embedding_dim, info->n_labels,
           rd_nn_ctx_arena_bytes(ctx), rd_nn_blas_core());
    rd_nn_ctx_free(ctx);
    rd_nn_model_free(m);
    return RD_EXIT_OK;
}

/* Writes the bench's input and the last pass's outputs (see --save-io). */
static rd_status save_io(const rd_nn_ctx *ctx, const char *dir, const float *input, size_t n,
                         int batch, rd_error *err)
{
    char path[4096];
    int esz = 0, ssz = 0;
    const float *e = rd_nn_ctx_output(ctx, "embedding", &esz);
    const float *sc = rd_nn_ctx_output(ctx, "scores", &ssz);
    size_t row = (size_t)(e ? esz : 0) + (size_t)(sc ? ssz : 0);
    float *out;
    rd_status st;
    if ((st = rd_mkdirs(dir, err)) != RD_OK)
        return st;
    if (snprintf(path, sizeof path, "%s/input.bin", dir) >= (int)sizeof path)
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", dir);
    if ((st = rd_write_file_atomic(path, input, n * sizeof *input, err)) != RD_OK)
        return st;
    if (!(out = malloc((size_t)batch * row * sizeof *out + 1)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    for (int b = 0; b < batch; b++) {
        float *o = out + (size_t)b * row;
        if (e)
            memcpy(o, e + (size_t)b * esz, (size_t)esz * sizeof *o);
        if (sc)
            memcpy(o + (e ? esz : 0), sc + (size_t)b * ssz, (size_t)ssz * sizeof *o);
    }
    snprintf(path, sizeof path, "%s/output.bin", dir);
    st = rd_write_file_atomic(path, out, (size_t)batch * row * sizeof *out, err);
    free(out);
    return st;
}

static int do_bench(rd_cli *cli, const char *path, int batch, int threads, int iters,
                    const char *save_dir)
{
    rd_nn_model *m = NULL;
    rd_nn_ctx *ctx = NULL;
    rd_error err;
    float *input = NULL;
    double *times = NULL, *cam_times = NULL;
    float *maps = NULL;
    rd_nn_cam_info ci;
    int rc = RD_EXIT_FAIL;
    uint64_t s = 12345;
    double peak = 0, gflops;

    if (rd_nn_model_load(&m, path, &err) != RD_OK ||
        rd_nn_ctx_create(&ctx, m, batch, threads, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        goto out;
    }
    const rd_nn_info *info = rd_nn_model_info(m);
    size_t n = (size_t)batch * info->in_channels * info->in_height * info->in_width;
    input = malloc(n * sizeof *input);
    times = malloc((size_t)iters * sizeof *times);
    cam_times = malloc((size_t)iters * sizeof *cam_times);
    if (!input || !times || !cam_times) {
        rd_cli_error(cli, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        input[i] = (float)((s >> 40) & 0xffff) / 65535.0f * 4.0f - 2.0f;
    }
    /* The class activation maps of the scores, when the model has them, are timed apart:
     * what drafting adds to a forward to say where the findings are. */
    if (rd_nn_model_cam_info(m, "scores", &ci, NULL) == RD_OK &&
        !(maps = malloc((size_t)ci.n_maps * ci.height * ci.width * sizeof *maps))) {
        rd_cli_error(cli, "out of memory");
        goto out;
    }
    for (int i = 0; i < 3 + iters; i++) {
        double t0 = now_ms();
        if (rd_nn_forward(ctx, input, batch, &err) != RD_OK) {
            rd_cli_error(cli, "%s", rd_error_message(&err));
            goto out;
        }
        double t1 = now_ms();
        for (int b = 0; maps && b < batch; b++)
            if (rd_nn_ctx_cam(ctx, "scores", b, maps, &err) != RD_OK) {
                rd_cli_error(cli, "%s", rd_error_message(&err));
                goto out;
            }
        if (i >= 3) {
            times[i - 3] = t1 - t0;
            cam_times[i - 3] = now_ms() - t1;
        }
    }
    qsort(times, (size_t)iters, sizeof *times, cmp_double);
    qsort(cam_times, (size_t)iters, sizeof *cam_times, cmp_double);
    double med = times[iters / 2];
    printf("{\"engine\": \"radraft\", \"model\": \"%s\", \"batch\": %d, \"threads\": %d, "
           "\"iters\": %d, \"ms_per_batch\": %.3f, \"min_ms\": %.3f, \"images_per_s\": %.2f, ",
           info->name, batch, rd_nn_ctx_threads(ctx), iters, med, times[0], 1000.0 * batch / med);
    if (maps)
        printf("\"cam_ms_per_batch\": %.4f, \"cam_maps\": \"%d x %dx%d\", ", cam_times[iters / 2],
               ci.n_maps, ci.height, ci.width);
    if (save_dir && save_io(ctx, save_dir, input, n, batch, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        goto out;
    }
    /* The achieved rate against what sgemm reaches on the same threads, measured now. */
    if (rd_nn_sgemm_peak(rd_nn_ctx_threads(ctx), &peak, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        goto out;
    }
    gflops = rd_nn_model_flops(m) * batch / med * 1e-6;
    printf("\"gflop_per_image\": %.3f, \"gflops\": %.1f, \"sgemm_peak_gflops\": %.1f, "
           "\"peak_share\": %.3f, ",
           rd_nn_model_flops(m) * 1e-9, gflops, peak, gflops / peak);
    printf("\"blas_core\": \"%s\"}\n", rd_nn_blas_core());
    rc = RD_EXIT_OK;
out:
    free(input);
    free(times);
    free(cam_times);
    free(maps);
    rd_nn_ctx_free(ctx);
    rd_nn_model_free(m);
    return rc;
}

int rd_cmd_model(int argc, char **argv)
{
    enum {
        OPT_ARCH = RD_OPT_FIRST_PRIVATE,
        OPT_SEED,
        OPT_OUT,
        OPT_BATCH,
        OPT_THREADS,
        OPT_ITERS,
        OPT_SAVE_IO
    };
    static const struct option opts[] = {{"arch", required_argument, NULL, OPT_ARCH},
                                         {"seed", required_argument, NULL, OPT_SEED},
                                         {"out", required_argument, NULL, OPT_OUT},
                                         {"batch", required_argument, NULL, OPT_BATCH},
                                         {"threads", required_argument, NULL, OPT_THREADS},
                                         {"iters", required_argument, NULL, OPT_ITERS},
                                         {"save-io", required_argument, NULL, OPT_SAVE_IO},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    const char *arch = NULL, *outdir = NULL, *save_dir = NULL, *verb;
    long seed = 1, batch = 1, threads = -1, iters = 20;
    int opt, rc;

    rd_cli_init(&cli, "radraft model");
    if (!(verb = rd_cli_action(argc, argv, help, &rc)))
        return rc;
    argc--;
    argv++;
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_ARCH:
            arch = optarg;
            break;
        case OPT_OUT:
            outdir = optarg;
            break;
        case OPT_SAVE_IO:
            save_dir = optarg;
            break;
        case OPT_SEED:
            if (rd_cli_parse_int(&cli, "--seed", optarg, 0, 2147483647L, &seed))
                return RD_EXIT_USAGE;
            break;
        case OPT_BATCH:
            if (rd_cli_parse_int(&cli, "--batch", optarg, 1, RD_NN_MAX_BATCH, &batch))
                return RD_EXIT_USAGE;
            break;
        case OPT_THREADS:
            if (rd_cli_parse_int(&cli, "--threads", optarg, 0, RD_NN_MAX_THREADS, &threads))
                return RD_EXIT_USAGE;
            break;
        case OPT_ITERS:
            if (rd_cli_parse_int(&cli, "--iters", optarg, 1, 100000, &iters))
                return RD_EXIT_USAGE;
            break;
        }
    }
    /* The operands depend on the action, which checks them itself. */
    if (opt < 0 || (rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    if (strcmp(verb, "init") == 0) {
        if (!arch || !outdir || optind < argc) {
            rd_cli_error(&cli, "init needs --arch and --out, and no other argument");
            return RD_EXIT_USAGE;
        }
        if (rd_nn_model_init(arch, (uint64_t)seed, outdir, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            return RD_EXIT_FAIL;
        }
        return RD_EXIT_OK;
    }
    if (strcmp(verb, "check") == 0 || strcmp(verb, "bench") == 0) {
        if (optind != argc - 1) {
            rd_cli_error(&cli, "%s needs exactly one MODEL", verb);
            return RD_EXIT_USAGE;
        }
        if (verb[0] == 'c')
            return do_check(&cli, argv[optind]);
        return do_bench(&cli, argv[optind], (int)batch,
                        threads >= 0 ? (int)threads : cli.cfg.encoder_threads, (int)iters,
                        save_dir);
    }
    rd_cli_error(&cli, "unknown verb '%s' (init, check, bench)", verb);
    return RD_EXIT_USAGE;
}
