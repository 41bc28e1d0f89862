/* Cross-check of one training step against PyTorch autograd: the loss (BCE on logits with
 * positive weights and label smoothing), every parameter gradient through the whole network
 * (batch norm in training mode), the running statistics after the forward, and the weights
 * after one AdamW step, for opzoo (every op) and resnet-small (the project's network).
 *
 * In resnet-small, ReLU and max pooling are replaced by SiLU and average pooling: among its
 * hundreds of thousands of activations, some lie within float32 rounding of a ReLU's kink or
 * of a tie in a pooling window, where float32 and the float64 reference legitimately take
 * different branches (seen: one activation at -6e-7 in float32 and +2.5e-7 in float64 moved a
 * batch norm's gradient by 1.5%). The smooth network keeps every shape, stride, batch norm
 * and residual path; opzoo, small enough to stay clear of such coincidences, checks ReLU and
 * max pooling.
 * tests/integration/torch_train_ref.py computes the reference from the same files. Needs
 * python3 with torch: $RADRAFT_PYTHON, else /usr/bin/python3, else python3. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "train/nn_train_int.h"
#include "radraft/nn.h"
#include "rdtest.h"
#include "base/util.h"

static const char *python(void)
{
    const char *env = getenv("RADRAFT_PYTHON");
    if (env && env[0])
        return env;
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

static void write_floats(const char *path, const float *v, size_t n)
{
    rd_error err;
    REQUIRE_OK(rd_write_file_atomic(path, v, n * sizeof *v, &err), &err);
}

/* Rewrites DIR/model.json with ReLU -> SiLU and max -> average pooling. */
static void smooth_ops(const char *dir)
{
    char path[1300], *text = NULL, *out;
    size_t len = 0;
    rd_error err;
    cJSON *root, *nd;
    snprintf(path, sizeof path, "%s/model.json", dir);
    REQUIRE_OK(rd_read_file(path, (size_t)16 << 20, &text, &len, &err), &err);
    root = cJSON_ParseWithLength(text, len);
    REQUIRE(root);
    cJSON_ArrayForEach(nd, cJSON_GetObjectItemCaseSensitive(root, "graph"))
    {
        const cJSON *op = cJSON_GetObjectItemCaseSensitive(nd, "op");
        if (strcmp(op->valuestring, "relu") == 0)
            cJSON_ReplaceItemInObjectCaseSensitive(nd, "op", cJSON_CreateString("silu"));
        else if (strcmp(op->valuestring, "maxpool") == 0)
            cJSON_ReplaceItemInObjectCaseSensitive(nd, "op", cJSON_CreateString("avgpool"));
    }
    out = cJSON_Print(root);
    REQUIRE(out);
    REQUIRE_OK(rd_write_file_atomic(path, out, strlen(out), &err), &err);
    free(out);
    free(text);
    cJSON_Delete(root);
}

static void step_check(const char *arch, int batch, int smooth)
{
    char dir[1100], path[1300], cmd[8192], pw_text[512], name[64];
    rd_error err;
    rd_nn_model *m = NULL;
    rd_tnet *net = NULL;
    uint64_t r = 42;
    const double lr = 0.01, wd = 0.05, smoothing = 0.1;
    float pw[14];

    /* Not the bare arch name: test_nn_torch's cases use those folders, and ctest -j runs
     * both files at once. */
    snprintf(name, sizeof name, "train_torch_%s", arch);
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir(name));
    REQUIRE_OK(rd_nn_model_init(arch, 11, dir, &err), &err);
    if (smooth)
        smooth_ops(dir);
    REQUIRE_OK(rd_nn_model_load_raw(&m, dir, &err), &err);
    REQUIRE_OK(rd_tnet_create(&net, m, batch, 2, &err), &err);
    size_t in_e = (size_t)m->nodes[0].c * m->nodes[0].h * m->nodes[0].w;
    float *x = malloc((size_t)batch * in_e * sizeof *x), t[64 * 14], dz[64 * 14];
    REQUIRE(batch <= 64);
    for (size_t q = 0; q < (size_t)batch * in_e; q++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[q] = (float)((r >> 40) & 0xffff) / 32768.0f - 1.0f;
    }
    for (int q = 0; q < batch * 14; q++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        t[q] = (r >> 60) & 1 ? 1.0f : 0.0f;
    }
    size_t pl = 0;
    for (int f = 0; f < 14; f++) {
        pw[f] = 1.0f + 0.5f * (float)f;
        pl += (size_t)snprintf(pw_text + pl, sizeof pw_text - pl, "%s%.9g", f ? "," : "",
                               (double)pw[f]);
    }
    /* Save the input weights: the step changes them in place. */
    snprintf(path, sizeof path, "%s/x.bin", dir);
    write_floats(path, x, (size_t)batch * in_e);
    snprintf(path, sizeof path, "%s/t.bin", dir);
    write_floats(path, t, (size_t)batch * 14);

    int scores = rd_tnet_output_node(net, "scores");
    REQUIRE(scores > 0);
    int logits = m->nodes[scores].in[0];
    REQUIRE_OK(rd_tnet_forward(net, x, batch, 1, &err), &err);
    float loss =
        (float)rd_tnet_bce(rd_tnet_value(net, logits, NULL), t, pw, batch, 14, smoothing, dz);
    rd_tnet_zero_grad(net);
    REQUIRE_OK(rd_tnet_backward(net, logits, dz, &err), &err);

    /* Gradients, then the step; running statistics are already updated by the forward. */
    int np = rd_tnet_n_params(net), n = 0;
    rd_nn_tensor_desc *td = calloc(2 * (size_t)np + 2, sizeof *td);
    char(*names)[RD_NN_NAME_MAX + 32] = calloc(2 * (size_t)np + 2, sizeof *names);
    float **copies = calloc(2 * (size_t)np + 2, sizeof *copies);
    td[n].name = "loss";
    td[n].ndim = 1;
    td[n].shape[0] = 1;
    td[n].data = &loss;
    n++;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            rd_tnet_adamw(net, lr, wd, 0.9, 0.999, 1e-8, 1);
        for (int i = 0; i < np; i++) {
            rd_tnet_param *p = rd_tnet_param_at(net, i);
            if (pass == 0 && !p->g)
                continue;
            snprintf(names[n], sizeof names[n], "%s.%s", p->name, pass == 0 ? "grad" : "new");
            copies[n] = malloc(p->n * sizeof(float));
            memcpy(copies[n], pass == 0 ? p->g : p->w, p->n * sizeof(float));
            td[n].name = names[n];
            td[n].ndim = p->ndim;
            memcpy(td[n].shape, p->shape, sizeof td[n].shape);
            td[n].data = copies[n];
            n++;
        }
    }
    void *bytes = NULL;
    size_t len = 0;
    REQUIRE_OK(rd_nn_safetensors_encode(td, n, &bytes, &len, &err), &err);
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    REQUIRE_OK(rd_write_file_atomic(path, bytes, len, &err), &err);
    snprintf(cmd, sizeof cmd,
             "%s %s/tests/integration/torch_train_ref.py --model %s --input %s/x.bin "
             "--targets %s/t.bin --batch %d --c-out %s --lr %g --wd %g --smoothing %g "
             "--pos-weight %s",
             python(), RD_TEST_SOURCE_DIR, dir, dir, dir, batch, path, lr, wd, smoothing, pw_text);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s: the PyTorch training step differs (or torch is missing): rc %d", arch,
              rc);
    for (int i = 0; i < n; i++)
        free(copies[i]);
    free(copies);
    free(names);
    free(td);
    free(bytes);
    free(x);
    rd_tnet_free(net);
    rd_nn_model_free(m);
}

RD_TEST(opzoo_step)
{
    step_check("opzoo", 3, 0);
}

RD_TEST(resnet_small_step)
{
    step_check("resnet-small", 2, 1);
}

RD_TEST_MAIN()
