/* The backward pass of every op of the training engine against central finite differences
 * of its own forward, in training mode (batch norm with batch statistics), at batch 2 or 3
 * and with 1 and 2 worker threads. The loss is L = sum(r * y) with a fixed random r, summed
 * in double; every sampled coordinate of every parameter and of the input is compared.
 * Also: the loss (sigmoid + BCE with class weights and smoothing) against its finite
 * differences and known values, AdamW against a hand computation, and the equality of
 * training-engine eval mode with the inference engine on the same weights. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/nn_train_int.h"
#include "radraft/nn.h"
#include "rdtest.h"

static uint64_t rng = 7;
static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 16777215.0f * 2.0f - 1.0f;
}

typedef struct tens {
    const char *name;
    int ndim;
    int64_t shape[4];
    double lo, hi; /* uniform range of the random values */
} tens;

/* Builds a raw model with input "x" (c x h x w), graph `graph`, output "y" = `out`, and
 * random tensors as listed. `fold` = 1 parses it for inference instead. */
static rd_nn_model *make_model(int c, int h, int w, const char *graph, const char *out,
                               const tens *ts, int nt, int fold)
{
    char json[8192];
    void *st = NULL;
    size_t st_len = 0;
    rd_error err;
    rd_nn_model *m = NULL;
    rd_nn_tensor_desc d[32];
    uint64_t save = rng;
    rng = 99; /* the same weights every time a test builds its model */
    for (int i = 0; i < nt; i++) {
        size_t n = 1;
        for (int k = 0; k < ts[i].ndim; k++)
            n *= (size_t)ts[i].shape[k];
        float *v = malloc(n * sizeof *v);
        for (size_t q = 0; q < n; q++)
            v[q] = (float)(ts[i].lo + (ts[i].hi - ts[i].lo) * (frand() + 1) / 2);
        d[i].name = ts[i].name;
        d[i].ndim = ts[i].ndim;
        memcpy(d[i].shape, ts[i].shape, sizeof d[i].shape);
        d[i].data = v;
    }
    rng = save;
    snprintf(json, sizeof json,
             "{\"format\":\"radraft-model\",\"format_version\":1,\"version\":\"test\","
             "\"input\":{\"name\":\"x\",\"channels\":%d,\"height\":%d,\"width\":%d},"
             "\"preprocessing\":{\"mean\":[0],\"std\":[1]},\"outputs\":{\"y\":\"%s\"},"
             "\"graph\":[%s]}",
             c, h, w, out, graph);
    if (rd_nn_safetensors_encode(d, nt, &st, &st_len, &err) != RD_OK ||
        (fold ? rd_nn_model_parse(&m, json, strlen(json), st, st_len, "test", &err)
              : rd_nn_model_parse_raw(&m, json, strlen(json), st, st_len, "test", &err)) != RD_OK) {
        fprintf(stderr, "make_model: %s\n", rd_error_message(&err));
        m = NULL;
    }
    for (int i = 0; i < nt; i++)
        free((void *)d[i].data);
    free(st);
    return m;
}

static double loss_of(rd_tnet *net, const float *x, int batch, int out, const float *r)
{
    size_t e = 0;
    rd_error err;
    if (rd_tnet_forward(net, x, batch, 1, &err) != RD_OK)
        return NAN;
    const float *y = rd_tnet_value(net, out, &e);
    double s = 0;
    for (size_t q = 0; q < (size_t)batch * e; q++)
        s += (double)r[q] * y[q];
    return s;
}

static int close_enough(double a, double n, double atol, double rtol)
{
    double d = fabs(a - n), m = fabs(a) > fabs(n) ? fabs(a) : fabs(n);
    return d <= atol + rtol * m;
}

/* Compares the analytic gradient of every trained tensor and of the input with central
 * differences (step eps) at up to `samples` coordinates each. `x` is batch x input elems. */
static void grad_check_key(rd_nn_model *m, const char *key, float *x, int batch, int threads,
                           double eps, double atol, double rtol, int samples)
{
    rd_tnet *net = NULL;
    rd_error err;
    size_t e = 0, in_e = (size_t)m->nodes[0].c * m->nodes[0].h * m->nodes[0].w;
    REQUIRE_OK(rd_tnet_create(&net, m, batch, threads, &err), &err);
    int out = rd_tnet_output_node(net, key);
    REQUIRE(out > 0);
    rd_tnet_want_input_grad(net, 1);
    REQUIRE_OK(rd_tnet_forward(net, x, batch, 1, &err), &err);
    rd_tnet_value(net, out, &e);
    float *r = malloc((size_t)batch * e * sizeof *r);
    for (size_t q = 0; q < (size_t)batch * e; q++)
        r[q] = frand();
    rd_tnet_zero_grad(net);
    REQUIRE_OK(rd_tnet_backward(net, out, r, &err), &err);
    /* Copy the analytic gradients before the probing forwards. */
    int np = rd_tnet_n_params(net), bad = 0, checked = 0;
    float **g = calloc((size_t)np + 1, sizeof *g);
    for (int p = 0; p < np; p++) {
        rd_tnet_param *pr = rd_tnet_param_at(net, p);
        if (pr->g) {
            g[p] = malloc(pr->n * sizeof(float));
            memcpy(g[p], pr->g, pr->n * sizeof(float));
        }
    }
    float *gx = malloc((size_t)batch * in_e * sizeof *gx);
    memcpy(gx, rd_tnet_input_grad(net), (size_t)batch * in_e * sizeof *gx);
    for (int p = -1; p < np; p++) {
        float *w, *ga;
        size_t n;
        const char *name;
        if (p < 0) {
            w = x, ga = gx, n = (size_t)batch * in_e, name = "input";
        } else {
            rd_tnet_param *pr = rd_tnet_param_at(net, p);
            if (!pr->g)
                continue;
            w = pr->w, ga = g[p], n = pr->n, name = pr->name;
        }
        for (int s = 0; s < samples && (size_t)s < n; s++) {
            size_t q = n <= (size_t)samples ? (size_t)s : (size_t)((frand() + 1) / 2 * (n - 1));
            float save = w[q];
            double num = 0;
            int ok = 0;
            /* A ReLU crossing its kink inside the step spoils a difference; a second, smaller
             * step tells that apart from a wrong gradient. */
            for (int tries = 0; tries < 2 && !ok; tries++) {
                double h = tries ? eps / 4 : eps;
                w[q] = (float)(save + h);
                double lp = loss_of(net, x, batch, out, r);
                w[q] = (float)(save - h);
                double lm = loss_of(net, x, batch, out, r);
                w[q] = save;
                num = (lp - lm) / ((double)(float)(save + h) - (double)(float)(save - h));
                ok = close_enough(ga[q], num, atol, rtol);
            }
            checked++;
            if (!ok) {
                if (bad < 8)
                    fprintf(stderr, "  %s[%zu]: analytic %.6g numeric %.6g\n", name, q,
                            (double)ga[q], num);
                bad++;
            }
        }
    }
    CHECK_MSG(bad == 0, "%d of %d coordinates differ (threads %d)", bad, checked, threads);
    CHECK(checked > 0);
    for (int p = 0; p < np; p++)
        free(g[p]);
    free(g);
    free(gx);
    free(r);
    rd_tnet_free(net);
}

static void grad_check_x(rd_nn_model *m, float *x, int batch, int threads, double eps, double atol,
                         double rtol, int samples)
{
    grad_check_key(m, "y", x, batch, threads, eps, atol, rtol, samples);
}

static void grad_check(rd_nn_model *m, int batch, double eps, double atol, double rtol)
{
    size_t in_e = (size_t)m->nodes[0].c * m->nodes[0].h * m->nodes[0].w;
    float *x = malloc((size_t)batch * in_e * sizeof *x);
    for (int threads = 1; threads <= 2; threads++) {
        for (size_t q = 0; q < (size_t)batch * in_e; q++)
            x[q] = frand();
        grad_check_x(m, x, batch, threads, eps, atol, rtol, 24);
    }
    free(x);
}

#define EPS 1e-2
#define ATOL 2e-3
#define RTOL 1e-2

RD_TEST(conv_plain)
{
    tens t[] = {{"c.weight", 4, {4, 3, 3, 3}, -0.5, 0.5}, {"c.bias", 1, {4}, -0.5, 0.5}};
    rd_nn_model *m = make_model(3, 7, 6,
                                "{\"name\":\"c\",\"op\":\"conv2d\",\"inputs\":[\"x\"],"
                                "\"out_channels\":4,\"kernel\":3,\"padding\":1,\"bias\":true}",
                                "c", t, 2, 0);
    REQUIRE(m);
    grad_check(m, 2, EPS, ATOL, RTOL);
    rd_nn_model_free(m);
}

RD_TEST(conv_strided_grouped)
{
    tens t[] = {{"c.weight", 4, {6, 2, 5, 3}, -0.5, 0.5}, {"c.bias", 1, {6}, -0.5, 0.5}};
    rd_nn_model *m = make_model(4, 9, 8,
                                "{\"name\":\"c\",\"op\":\"conv2d\",\"inputs\":[\"x\"],"
                                "\"out_channels\":6,\"kernel\":[5,3],\"stride\":[2,3],"
                                "\"padding\":[2,1],\"groups\":2,\"bias\":true}",
                                "c", t, 2, 0);
    REQUIRE(m);
    grad_check(m, 3, EPS, ATOL, RTOL);
    rd_nn_model_free(m);
}

RD_TEST(conv_depthwise_and_pointwise)
{
    tens t[] = {{"d.weight", 4, {4, 1, 3, 3}, -0.5, 0.5},
                {"p.weight", 4, {5, 4, 1, 1}, -0.5, 0.5},
                {"s.weight", 4, {3, 5, 1, 1}, -0.5, 0.5}};
    rd_nn_model *m = make_model(4, 6, 7,
                                "{\"name\":\"d\",\"op\":\"conv2d\",\"inputs\":[\"x\"],"
                                "\"out_channels\":4,\"kernel\":3,\"stride\":2,\"padding\":1,"
                                "\"groups\":4},"
                                "{\"name\":\"p\",\"op\":\"conv2d\",\"inputs\":[\"d\"],"
                                "\"out_channels\":5,\"kernel\":1},"
                                "{\"name\":\"s\",\"op\":\"conv2d\",\"inputs\":[\"p\"],"
                                "\"out_channels\":3,\"kernel\":1,\"stride\":2}",
                                "s", t, 3, 0);
    REQUIRE(m);
    grad_check(m, 2, EPS, ATOL, RTOL);
    rd_nn_model_free(m);
}

RD_TEST(batchnorm_training)
{
    tens t[] = {{"b.weight", 1, {3}, 0.5, 1.5},
                {"b.bias", 1, {3}, -0.5, 0.5},
                {"b.running_mean", 1, {3}, -0.1, 0.1},
                {"b.running_var", 1, {3}, 0.8, 1.2}};
    rd_nn_model *m = make_model(3, 4, 5, "{\"name\":\"b\",\"op\":\"batchnorm\",\"inputs\":[\"x\"]}",
                                "b", t, 4, 0);
    REQUIRE(m);
    grad_check(m, 3, EPS, ATOL, 2e-2);
    rd_nn_model_free(m);
}

/* Running statistics follow PyTorch: momentum 0.1 and the unbiased batch variance. */
RD_TEST(batchnorm_running_stats)
{
    tens t[] = {{"b.weight", 1, {1}, 1, 1},
                {"b.bias", 1, {1}, 0, 0},
                {"b.running_mean", 1, {1}, 0, 0},
                {"b.running_var", 1, {1}, 1, 1}};
    rd_nn_model *m = make_model(1, 1, 2, "{\"name\":\"b\",\"op\":\"batchnorm\",\"inputs\":[\"x\"]}",
                                "b", t, 4, 0);
    REQUIRE(m);
    rd_tnet *net = NULL;
    rd_error err;
    float x[4] = {1, 2, 3, 6}; /* mean 3, biased var 3.5, unbiased 14/3 */
    REQUIRE_OK(rd_tnet_create(&net, m, 2, 1, &err), &err);
    REQUIRE_OK(rd_tnet_forward(net, x, 2, 1, &err), &err);
    CHECK_NEAR(m->nodes[1].mean[0], 0.3, 1e-6);
    CHECK_NEAR(m->nodes[1].var[0], 0.9 + 0.1 * 14.0 / 3.0, 1e-6);
    const float *y = rd_tnet_value(net, 1, NULL);
    CHECK_NEAR(y[0], (1 - 3) / sqrt(3.5 + 1e-5), 1e-5);
    /* Eval mode uses the running statistics. */
    REQUIRE_OK(rd_tnet_forward(net, x, 1, 0, &err), &err);
    CHECK_NEAR(y[1], (2 - 0.3) / sqrt(0.9 + 0.1 * 14.0 / 3.0 + 1e-5), 1e-5);
    rd_tnet_free(net);
    rd_nn_model_free(m);
}

/* ReLU and max pooling have kinks: inputs are kept away from them (|x| >= 0.05 and distinct
 * values 0.04 apart in every window), further than the step. */
RD_TEST(relu_maxpool)
{
    rd_nn_model *m = make_model(2, 7, 6,
                                "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"x\"]},"
                                "{\"name\":\"p\",\"op\":\"maxpool\",\"inputs\":[\"r\"],"
                                "\"kernel\":3,\"stride\":2,\"padding\":1}",
                                "p", NULL, 0, 0);
    REQUIRE(m);
    int batch = 2, n = batch * 2 * 7 * 6;
    float *x = malloc((size_t)n * sizeof *x);
    for (int threads = 1; threads <= 2; threads++) {
        /* A shuffled ladder of distinct values, every one away from zero. */
        for (int i = 0; i < n; i++)
            x[i] = (float)(0.05 + 0.04 * i) * (i % 3 == 0 ? -1.0f : 1.0f);
        for (int i = n - 1; i > 0; i--) {
            int j = (int)((frand() + 1) / 2 * i);
            float tmp = x[i];
            x[i] = x[j];
            x[j] = tmp;
        }
        grad_check_x(m, x, batch, threads, 1e-3, ATOL, RTOL, 40);
    }
    free(x);
    rd_nn_model_free(m);
}

RD_TEST(smooth_unary_ops)
{
    rd_nn_model *m = make_model(2, 3, 4,
                                "{\"name\":\"s\",\"op\":\"silu\",\"inputs\":[\"x\"]},"
                                "{\"name\":\"g\",\"op\":\"sigmoid\",\"inputs\":[\"s\"]},"
                                "{\"name\":\"n\",\"op\":\"l2norm\",\"inputs\":[\"g\"]}",
                                "n", NULL, 0, 0);
    REQUIRE(m);
    grad_check(m, 2, EPS, 1e-3, RTOL);
    rd_nn_model_free(m);
}

RD_TEST(avgpool_gap_add_concat)
{
    rd_nn_model *m = make_model(2, 7, 7,
                                "{\"name\":\"a\",\"op\":\"avgpool\",\"inputs\":[\"x\"],"
                                "\"kernel\":3,\"stride\":2,\"padding\":1,"
                                "\"count_include_pad\":false},"
                                "{\"name\":\"b\",\"op\":\"avgpool\",\"inputs\":[\"x\"],"
                                "\"kernel\":3,\"stride\":2,\"padding\":1},"
                                "{\"name\":\"s\",\"op\":\"add\",\"inputs\":[\"a\",\"b\",\"a\"]},"
                                "{\"name\":\"c\",\"op\":\"concat\",\"inputs\":[\"s\",\"b\"]},"
                                "{\"name\":\"g\",\"op\":\"gap\",\"inputs\":[\"c\"]}",
                                "g", NULL, 0, 0);
    REQUIRE(m);
    grad_check(m, 2, EPS, 1e-3, RTOL);
    rd_nn_model_free(m);
}

RD_TEST(linear)
{
    tens t[] = {{"l.weight", 2, {5, 24}, -0.5, 0.5}, {"l.bias", 1, {5}, -0.5, 0.5}};
    rd_nn_model *m = make_model(2, 3, 4,
                                "{\"name\":\"l\",\"op\":\"linear\",\"inputs\":[\"x\"],"
                                "\"out_features\":5}",
                                "l", t, 2, 0);
    REQUIRE(m);
    grad_check(m, 3, EPS, ATOL, RTOL);
    rd_nn_model_free(m);
}

/* A residual block as resnet-small has it, end to end (stride, downsample, batch norm,
 * ReLU, add, global pooling, linear). A smaller step keeps kinks unlikely to be crossed. */
RD_TEST(residual_block)
{
    tens t[] = {{"c1.weight", 4, {4, 2, 3, 3}, -0.5, 0.5},
                {"b1.weight", 1, {4}, 0.5, 1.5},
                {"b1.bias", 1, {4}, -0.5, 0.5},
                {"b1.running_mean", 1, {4}, 0, 0},
                {"b1.running_var", 1, {4}, 1, 1},
                {"c2.weight", 4, {4, 4, 3, 3}, -0.5, 0.5},
                {"b2.weight", 1, {4}, 0.5, 1.5},
                {"b2.bias", 1, {4}, -0.5, 0.5},
                {"b2.running_mean", 1, {4}, 0, 0},
                {"b2.running_var", 1, {4}, 1, 1},
                {"d.weight", 4, {4, 2, 1, 1}, -0.5, 0.5},
                {"fc.weight", 2, {3, 4}, -0.5, 0.5},
                {"fc.bias", 1, {3}, -0.5, 0.5}};
    rd_nn_model *m = make_model(
        2, 8, 8,
        "{\"name\":\"c1\",\"op\":\"conv2d\",\"inputs\":[\"x\"],\"out_channels\":4,\"kernel\":3,"
        "\"stride\":2,\"padding\":1},"
        "{\"name\":\"b1\",\"op\":\"batchnorm\",\"inputs\":[\"c1\"]},"
        "{\"name\":\"r1\",\"op\":\"relu\",\"inputs\":[\"b1\"]},"
        "{\"name\":\"c2\",\"op\":\"conv2d\",\"inputs\":[\"r1\"],\"out_channels\":4,\"kernel\":3,"
        "\"padding\":1},"
        "{\"name\":\"b2\",\"op\":\"batchnorm\",\"inputs\":[\"c2\"]},"
        "{\"name\":\"d\",\"op\":\"conv2d\",\"inputs\":[\"x\"],\"out_channels\":4,\"kernel\":1,"
        "\"stride\":2},"
        "{\"name\":\"a\",\"op\":\"add\",\"inputs\":[\"b2\",\"d\"]},"
        "{\"name\":\"r2\",\"op\":\"relu\",\"inputs\":[\"a\"]},"
        "{\"name\":\"g\",\"op\":\"gap\",\"inputs\":[\"r2\"]},"
        "{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"g\"],\"out_features\":3}",
        "fc", t, 13, 0);
    REQUIRE(m);
    grad_check(m, 3, 1e-3, 3e-3, 2e-2);
    rd_nn_model_free(m);
}

RD_TEST(bce_loss)
{
    float z[6] = {0.3f, -2.0f, 4.0f, -0.7f, 0.0f, 30.0f}, t[6] = {1, 0, 1, 0, 1, 0};
    float pw[3] = {2.0f, 1.0f, 0.5f}, d[6];
    /* Known value: one term, z = 0, t = 1: log 2. */
    float z0 = 0, t0 = 1;
    CHECK_NEAR(rd_tnet_bce(&z0, &t0, NULL, 1, 1, 0.0, NULL), log(2.0), 1e-12);
    /* Saturated logits do not overflow: z = 30, t = 0 costs ~30. */
    float z1 = 30, t1 = 0;
    CHECK_NEAR(rd_tnet_bce(&z1, &t1, NULL, 1, 1, 0.0, NULL), 30.0, 1e-9);
    double l = rd_tnet_bce(z, t, pw, 2, 3, 0.1, d);
    CHECK(isfinite(l) && l > 0);
    for (int i = 0; i < 6; i++) {
        float save = z[i];
        z[i] = save + 1e-3f;
        double lp = rd_tnet_bce(z, t, pw, 2, 3, 0.1, NULL);
        z[i] = save - 1e-3f;
        double lm = rd_tnet_bce(z, t, pw, 2, 3, 0.1, NULL);
        z[i] = save;
        CHECK_NEAR(d[i], (lp - lm) / ((double)(save + 1e-3f) - (double)(save - 1e-3f)), 1e-4);
    }
}

RD_TEST(adamw_step)
{
    tens t[] = {{"l.weight", 2, {1, 1}, 2, 2}, {"l.bias", 1, {1}, 1, 1}};
    rd_nn_model *m = make_model(1, 1, 1,
                                "{\"name\":\"l\",\"op\":\"linear\",\"inputs\":[\"x\"],"
                                "\"out_features\":1}",
                                "l", t, 2, 0);
    REQUIRE(m);
    rd_tnet *net = NULL;
    rd_error err;
    REQUIRE_OK(rd_tnet_create(&net, m, 1, 1, &err), &err);
    rd_tnet_param *w = rd_tnet_param_at(net, 0), *b = rd_tnet_param_at(net, 1);
    w->g[0] = 0.5f;
    b->g[0] = -0.25f;
    rd_tnet_adamw(net, 0.1, 0.01, 0.9, 0.999, 1e-8, 1);
    /* Step 1: m/(1-b1) = g, v/(1-b2) = g^2, so the update is lr * sign(g); the weight also
     * decays by lr * wd, the bias does not. */
    CHECK_NEAR(w->w[0], 2.0 * (1 - 0.1 * 0.01) - 0.1, 1e-6);
    CHECK_NEAR(b->w[0], 1.0 + 0.1, 1e-6);
    rd_tnet_free(net);
    rd_nn_model_free(m);
}

/* The training engine in eval mode computes what the inference engine computes from the
 * same model file (batch norm folded, activations fused there). */
RD_TEST(eval_matches_inference)
{
    char dir[1100];
    rd_error err;
    rd_nn_model *raw = NULL, *inf = NULL;
    rd_tnet *net = NULL;
    rd_nn_ctx *ctx = NULL;
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir("nn_grad_opzoo"));
    REQUIRE_OK(rd_nn_model_init("opzoo", 5, dir, &err), &err);
    REQUIRE_OK(rd_nn_model_load_raw(&raw, dir, &err), &err);
    REQUIRE_OK(rd_nn_model_load(&inf, dir, &err), &err);
    const rd_nn_info *info = rd_nn_model_info(inf);
    size_t in_e = (size_t)info->in_channels * info->in_height * info->in_width;
    float *x = malloc(3 * in_e * sizeof *x);
    for (size_t q = 0; q < 3 * in_e; q++)
        x[q] = frand();
    REQUIRE_OK(rd_tnet_create(&net, raw, 3, 2, &err), &err);
    REQUIRE_OK(rd_nn_ctx_create(&ctx, inf, 3, 2, &err), &err);
    REQUIRE_OK(rd_tnet_forward(net, x, 3, 0, &err), &err);
    REQUIRE_OK(rd_nn_forward(ctx, x, 3, &err), &err);
    const char *keys[3] = {"scores", "embedding", "features"};
    for (int k = 0; k < 3; k++) {
        int size = 0;
        size_t e = 0;
        const float *a = rd_nn_ctx_output(ctx, keys[k], &size);
        const float *b = rd_tnet_value(net, rd_tnet_output_node(net, keys[k]), &e);
        REQUIRE(a && b);
        CHECK_EQ_INT(size, (int)e);
        double d = 0;
        int bad = 0;
        for (size_t q = 0; q < 3 * e; q++) {
            double diff = fabs((double)a[q] - b[q]);
            /* A NaN on either side must fail: fmax would drop it. */
            if (!(diff <= 1e-5))
                bad++;
            if (diff > d)
                d = diff;
        }
        CHECK_MSG(bad == 0, "%s: %d values differ by more than 1e-5 or are NaN (max %g)", keys[k],
                  bad, d);
    }
    rd_tnet_free(net);
    rd_nn_ctx_free(ctx);
    free(x);
    rd_nn_model_free(inf);
    rd_nn_model_free(raw);
}

/* The whole opzoo network (every op, batch norm with batch statistics) in training mode:
 * the analytic gradient of a random projection of the scores against central differences,
 * a few coordinates of the input and of every parameter tensor. The step is small (1e-3):
 * with ReLUs and a max pool after every convolution, a larger one crosses kinks (at 1e-2 a
 * c3 coordinate's difference is 4x its derivative, and shrinks toward it with the step). */
RD_TEST(opzoo_gradient_training_mode)
{
    char dir[1100];
    rd_error err;
    rd_nn_model *raw = NULL;
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir("nn_grad_opzoo_train"));
    REQUIRE_OK(rd_nn_model_init("opzoo", 9, dir, &err), &err);
    REQUIRE_OK(rd_nn_model_load_raw(&raw, dir, &err), &err);
    size_t in_e = (size_t)raw->nodes[0].c * raw->nodes[0].h * raw->nodes[0].w;
    float *x = malloc(2 * in_e * sizeof *x);
    REQUIRE(x);
    for (size_t q = 0; q < 2 * in_e; q++)
        x[q] = frand();
    grad_check_key(raw, "scores", x, 2, 2, 1e-3, ATOL, 5e-2, 4);
    free(x);
    rd_nn_model_free(raw);
}

RD_TEST_MAIN()
