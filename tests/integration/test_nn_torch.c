/* Cross-check of the nn engine against an independent implementation: PyTorch (Debian's
 * python3-torch, CPU) builds the same network from the same model.json through
 * tests/integration/torch_ref.py (batch norm unfolded, activations unfused, its own
 * safetensors reader), runs the same inputs, and every embedding and score must agree within
 * 1e-4. Needs python3 with torch: $RADRAFT_PYTHON, else /usr/bin/python3, else python3. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "radraft/encoder.h"
#include "radraft/image.h"
#include "radraft/nn.h"
#include "rdtest.h"

static const char *python(void)
{
    const char *env = getenv("RADRAFT_PYTHON");
    if (env && env[0])
        return env;
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

static int write_floats(const char *path, const float *x, size_t n)
{
    FILE *fp = fopen(path, "wb");
    int ok = fp && fwrite(x, sizeof *x, n, fp) == n;
    if (fp)
        ok = (fclose(fp) == 0) && ok;
    return ok;
}

static float *read_floats(const char *path, size_t n)
{
    FILE *fp = fopen(path, "rb");
    float *x = malloc(n * sizeof *x + 4);
    size_t got = fp ? fread(x, sizeof *x, n + 1, fp) : 0;
    if (fp)
        fclose(fp);
    if (got != n) {
        fprintf(stderr, "%s: %zu floats, expected %zu\n", path, got, n);
        free(x);
        return NULL;
    }
    return x;
}

/* Runs model `dir` on `x` (batch images) with radraft (2 threads) and with PyTorch, and
 * compares the embedding and the scores. */
static void crosscheck(const char *dir, const float *x, int batch)
{
    rd_nn_model *m = NULL;
    rd_nn_ctx *ctx = NULL;
    rd_error err;
    char in_path[1200], out_path[1200], cmd[4000];
    REQUIRE_OK(rd_nn_model_load(&m, dir, &err), &err);
    const rd_nn_info *info = rd_nn_model_info(m);
    size_t in_n = (size_t)batch * info->in_channels * info->in_height * info->in_width;
    int dim = info->embedding_dim, nl = info->n_labels, row = dim + nl;
    REQUIRE_OK(rd_nn_ctx_create(&ctx, m, batch, 2, &err), &err);
    REQUIRE_OK(rd_nn_forward(ctx, x, batch, &err), &err);
    const float *emb = rd_nn_ctx_output(ctx, "embedding", NULL);
    const float *sc = rd_nn_ctx_output(ctx, "scores", NULL);
    REQUIRE(emb && sc);

    snprintf(in_path, sizeof in_path, "%s/in.bin", dir);
    snprintf(out_path, sizeof out_path, "%s/torch_out.bin", dir);
    REQUIRE(write_floats(in_path, x, in_n));
    snprintf(cmd, sizeof cmd,
             "%s %s/tests/integration/torch_ref.py --model %s --input %s "
             "--batch %d --out %s --threads 2",
             python(), RD_TEST_SOURCE_DIR, dir, in_path, batch, out_path);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "'%s' failed (%d): is python3-torch installed?", cmd, rc);
    float *ref = rc == 0 ? read_floats(out_path, (size_t)batch * row) : NULL;
    REQUIRE(ref);
    double de = 0, ds = 0, smin = 1, smax = 0;
    for (int b = 0; b < batch; b++) {
        for (int i = 0; i < dim; i++)
            de = fmax(de, fabs((double)emb[b * dim + i] - ref[b * row + i]));
        for (int i = 0; i < nl; i++) {
            ds = fmax(ds, fabs((double)sc[b * nl + i] - ref[b * row + dim + i]));
            smin = fmin(smin, sc[b * nl + i]);
            smax = fmax(smax, sc[b * nl + i]);
        }
    }
    fprintf(stderr,
            "%s: batch %d, max |diff| embedding %.3g, scores %.3g (scores in [%.3f, %.3f])\n",
            info->name, batch, de, ds, smin, smax);
    CHECK_MSG(de <= 1e-4, "embedding differs from PyTorch by %g", de);
    CHECK_MSG(ds <= 1e-4, "scores differ from PyTorch by %g", ds);
    /* Scores that are all 0 or 1 would make the comparison meaningless. */
    CHECK(smax - smin > 0.01);
    free(ref);
    rd_nn_ctx_free(ctx);
    rd_nn_model_free(m);
}

static float *random_inputs(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((seed >> 40) & 0xffffff) / 16777215.0f * 4.0f - 2.0f;
    }
    return x;
}

static void crosscheck_arch(const char *arch, int batch)
{
    char name[64];
    snprintf(name, sizeof name, "nn_torch_%s", arch);
    const char *dir = rd_test_tmpdir(name);
    rd_nn_model *m = NULL;
    rd_error err;
    REQUIRE_OK(rd_nn_model_init(arch, 11, dir, &err), &err);
    REQUIRE_OK(rd_nn_model_load(&m, dir, &err), &err);
    const rd_nn_info *info = rd_nn_model_info(m);
    size_t n = (size_t)batch * info->in_channels * info->in_height * info->in_width;
    rd_nn_model_free(m);
    float *x = random_inputs(n, 5);
    crosscheck(dir, x, batch);
    free(x);
}

RD_TEST(opzoo)
{
    crosscheck_arch("opzoo", 4);
}

RD_TEST(resnet_small)
{
    crosscheck_arch("resnet-small", 3);
}

RD_TEST(resnet18)
{
    crosscheck_arch("resnet18", 2);
}

/* Real chest X-rays through the encoder's preprocessing (one resized from 256 to 224 for
 * resnet18's input, one at its native size for resnet-small). */
RD_TEST(nih_images)
{
    const char *data = rd_test_shared_data();
    const char *names[2] = {"00000001_000.png", "00000001_001.png"};
    const char *arch[2] = {"resnet-small", "resnet18"};
    for (int a = 0; a < 2; a++) {
        char sub[64], path[1200];
        rd_encoder *enc = NULL;
        rd_error err;
        snprintf(sub, sizeof sub, "nih_%s", arch[a]);
        const char *dir = rd_test_tmpdir(sub);
        REQUIRE_OK(rd_nn_model_init(arch[a], 23, dir, &err), &err);
        REQUIRE_OK(rd_encoder_create(&enc, dir, 2, 2, &err), &err);
        const rd_nn_info *info = rd_encoder_info(enc);
        size_t per = (size_t)info->in_channels * info->in_height * info->in_width;
        float *x = malloc(2 * per * sizeof *x);
        for (int i = 0; i < 2; i++) {
            rd_image *img = NULL;
            snprintf(path, sizeof path, "%s/nih/images/%s", data, names[i]);
            REQUIRE_OK(rd_png_read(path, &img, NULL, &err), &err);
            CHECK_OK(rd_encoder_preprocess(enc, img, x + i * per, &err), &err);
            rd_image_free(img);
        }
        rd_encoder_free(enc);
        crosscheck(dir, x, 2);
        free(x);
    }
}

RD_TEST_MAIN()
