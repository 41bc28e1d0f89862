/* Fuzz target: the model loader (include/radraft/nn.h, encoder.h) and the readers of the
 * model description's other members (calibration, thresholds, retrieval settings).
 *
 * Input: the model description (JSON), a NUL byte, then the weights (safetensors); with no
 * NUL the whole input is the description and the weights are empty. Each input is loaded
 * the way `radraft model check` and the pipeline load a model: the two files are written to
 * a model folder and rd_encoder_model_load reads it (rd_nn_model_load's file reading and
 * validation, the test-time augmentation member, the label check), after the in-memory
 * parser rd_nn_model_parse. A model the loader accepts must also run: when its activations
 * are small (at most 2^20 floats in all, so that the arena stays small) one forward pass
 * over a zero input is made, and its outputs and class activation maps are read, so that a
 * graph the loader lets through with inconsistent shapes shows up as a sanitizer report. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "nn/nn_int.h"
#include "radraft/encoder.h"
#include "radraft/generator.h"
#include "radraft/index.h"
#include "radraft/nn.h"

/* The most activation floats (per sample, over every node) a model may have to be run. */
#define FUZZ_MAX_ACT ((size_t)1 << 20)

static char g_model_dir[600];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rd_fuzz_init();
    snprintf(g_model_dir, sizeof g_model_dir, "%s/model", rd_fuzz_dir());
    if (mkdir(g_model_dir, 0700) != 0) {
        perror("fuzz_model: mkdir");
        abort();
    }
    return 0;
}

static size_t act_elems(const rd_nn_model *m)
{
    size_t total = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const rd_nn_node *nd = &m->nodes[i];
        size_t n = (size_t)nd->c * (size_t)nd->h * (size_t)nd->w;
        if (n > FUZZ_MAX_ACT || (total += n) > FUZZ_MAX_ACT)
            return FUZZ_MAX_ACT + 1;
    }
    return total;
}

static void run_once(const rd_nn_model *m)
{
    const rd_nn_info *info = rd_nn_model_info(m);
    static const char *const keys[] = {"embedding", "scores"};
    rd_nn_ctx *ctx = NULL;
    float *input = NULL, *maps = NULL;
    size_t n_in = (size_t)info->in_channels * (size_t)info->in_height * (size_t)info->in_width;
    rd_error err;

    if (act_elems(m) > FUZZ_MAX_ACT || n_in > FUZZ_MAX_ACT)
        return;
    if (rd_nn_ctx_create(&ctx, m, 1, 1, &err) != RD_OK)
        return;
    if (!(input = calloc(n_in ? n_in : 1, sizeof *input)))
        abort();
    if (rd_nn_forward(ctx, input, 1, &err) == RD_OK) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            int size = 0;
            rd_nn_cam_info cam;
            volatile float sink = 0;
            const float *out = rd_nn_ctx_output(ctx, keys[k], &size);
            for (int i = 0; out && i < size; i++)
                sink += out[i];
            (void)sink;
            if (rd_nn_model_cam_info(m, keys[k], &cam, &err) != RD_OK)
                continue;
            size_t n = (size_t)cam.n_maps * (size_t)cam.height * (size_t)cam.width;
            if (n == 0 || n > FUZZ_MAX_ACT || !(maps = malloc(n * sizeof *maps)))
                continue;
            (void)rd_nn_ctx_cam_features(ctx, keys[k], 0);
            (void)rd_nn_ctx_cam(ctx, keys[k], 0, maps, &err);
            free(maps);
            maps = NULL;
        }
    }
    free(input);
    rd_nn_ctx_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    const uint8_t *weights = nul ? nul + 1 : data + size;
    size_t weights_len = nul ? size - json_len - 1 : 0;
    char *json = rd_fuzz_strndup(data, json_len), path[700];
    rd_nn_model *m = NULL;
    rd_encoder_model *em = NULL;
    rd_retrieval_settings rs;
    rd_thresholds th;
    rd_calibration cal;
    rd_error err;

    /* What the pipeline reads from the description besides the graph. */
    (void)rd_retrieval_settings_resolve(&rs, NULL, json, &err);
    (void)rd_thresholds_parse(&th, json, "fuzz", &err);
    (void)rd_calibration_parse(&cal, json, "fuzz", &err);

    if (rd_nn_model_parse(&m, json, json_len, weights, weights_len, "fuzz", &err) == RD_OK) {
        run_once(m);
        rd_nn_model_free(m);
        /* The same bytes through the files, as `radraft model check` and the encoder read
         * them (a model that fails in memory fails the same way there). */
        snprintf(path, sizeof path, "model/model.json");
        rd_fuzz_write_file(path, data, json_len);
        snprintf(path, sizeof path, "model/model.safetensors");
        rd_fuzz_write_file(path, weights, weights_len);
        if (rd_encoder_model_load(&em, g_model_dir, &err) == RD_OK)
            rd_encoder_model_free(em);
    }
    free(json);
    return 0;
}
