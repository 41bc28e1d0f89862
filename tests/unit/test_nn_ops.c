/* Each op of the nn engine against a straightforward reference implementation written here,
 * at batch 1 and 2 and with 1 and 3 worker threads (odd splits). A model of one or a few ops
 * is written as JSON + safetensors in memory and run through the real loader and executor. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"
#include "radraft/nn.h"
#include "rdtest.h"

#define TOL 1e-4

static uint64_t rng = 1;
static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 16777215.0f * 2.0f - 1.0f;
}
static float *rand_buf(size_t n)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}

/* Builds a model whose input is C x H x W named "x", with `graph` as its node list and
 * output "y" = node `out`. */
static rd_nn_model *make_model(int c, int h, int w, const char *graph, const char *out,
                               const rd_nn_tensor_desc *t, int nt)
{
    char json[8192];
    void *st = NULL;
    size_t st_len = 0;
    rd_error err;
    rd_nn_model *m = NULL;
    snprintf(json, sizeof json,
             "{\"format\":\"radraft-model\",\"format_version\":1,\"version\":\"test\","
             "\"input\":{\"name\":\"x\",\"channels\":%d,\"height\":%d,\"width\":%d},"
             "\"preprocessing\":{\"mean\":[0],\"std\":[1]},\"outputs\":{\"y\":\"%s\"},"
             "\"graph\":[%s]}",
             c, h, w, out, graph);
    if (rd_nn_safetensors_encode(t, nt, &st, &st_len, &err) != RD_OK ||
        rd_nn_model_parse(&m, json, strlen(json), st, st_len, "test", &err) != RD_OK) {
        fprintf(stderr, "make_model: %s\n", rd_error_message(&err));
        m = NULL;
    }
    free(st);
    return m;
}

/* Runs `m` on `x` and returns a copy of output "y" (*size floats per image). */
static float *run(const rd_nn_model *m, const float *x, int batch, int threads, int *size)
{
    rd_nn_ctx *ctx = NULL;
    rd_error err;
    float *y = NULL;
    if (rd_nn_ctx_create(&ctx, m, batch, threads, &err) != RD_OK ||
        rd_nn_forward(ctx, x, batch, &err) != RD_OK) {
        fprintf(stderr, "run: %s\n", rd_error_message(&err));
        rd_nn_ctx_free(ctx);
        return NULL;
    }
    const float *out = rd_nn_ctx_output(ctx, "y", size);
    y = malloc((size_t)batch * (size_t)*size * sizeof *y);
    memcpy(y, out, (size_t)batch * (size_t)*size * sizeof *y);
    rd_nn_ctx_free(ctx);
    return y;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (isnan(e))
            return INFINITY; /* a NaN anywhere is a failure */
        if (e > d)
            d = e;
    }
    return d;
}

/* Runs the model at batch 1 and `batch`, threads 1 and 3, and compares every run with the
 * reference `ref` (batch x n floats). */
static void check_all(const rd_nn_model *m, const float *x, int batch, const float *ref, size_t n)
{
    int threads[2] = {1, 3};
    REQUIRE(m);
    for (int t = 0; t < 2; t++) {
        for (int b = 1; b <= batch; b += batch - 1 > 0 ? batch - 1 : 1) {
            int size = 0;
            float *y = run(m, x, b, threads[t], &size);
            REQUIRE(y);
            CHECK_EQ_INT(size, n);
            double d = max_diff(y, ref, (size_t)b * n);
            CHECK_MSG(d <= TOL, "batch %d threads %d: max rel diff %g", b, threads[t], d);
            free(y);
            if (batch == 1)
                break;
        }
    }
}

/* Reference convolution: NCHW, OIHW weights, zero padding, groups. */
static void ref_conv(const float *x, int n, int c, int h, int w, const float *wt, const float *bias,
                     int o, int kh, int kw, int sh, int sw, int ph, int pw, int g, float *y,
                     int *oh_out, int *ow_out)
{
    int oh = (h + 2 * ph - kh) / sh + 1, ow = (w + 2 * pw - kw) / sw + 1;
    int cg = c / g, og = o / g;
    for (int b = 0; b < n; b++)
        for (int oc = 0; oc < o; oc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double s = bias ? bias[oc] : 0;
                    int grp = oc / og;
                    for (int ic = 0; ic < cg; ic++)
                        for (int ky = 0; ky < kh; ky++)
                            for (int kx = 0; kx < kw; kx++) {
                                int iy = oy * sh - ph + ky, ix = ox * sw - pw + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                    continue;
                                s += (double)wt[((oc * cg + ic) * kh + ky) * kw + kx] *
                                     x[((b * c + grp * cg + ic) * h + iy) * w + ix];
                            }
                    y[((b * o + oc) * oh + oy) * ow + ox] = (float)s;
                }
    *oh_out = oh;
    *ow_out = ow;
}

typedef struct conv_case {
    int c, h, w, o, kh, kw, sh, sw, ph, pw, g, bias;
} conv_case;

static void conv_test(conv_case k)
{
    const int n = 2;
    char graph[1024];
    size_t xs = (size_t)n * k.c * k.h * k.w, ws = (size_t)k.o * (k.c / k.g) * k.kh * k.kw;
    float *x = rand_buf(xs), *wt = rand_buf(ws), *bias = rand_buf((size_t)k.o);
    int oh, ow;
    float *ref = malloc((size_t)n * k.o * (k.h + 2 * k.ph) * (k.w + 2 * k.pw) * sizeof *ref);
    ref_conv(x, n, k.c, k.h, k.w, wt, k.bias ? bias : NULL, k.o, k.kh, k.kw, k.sh, k.sw, k.ph, k.pw,
             k.g, ref, &oh, &ow);
    snprintf(graph, sizeof graph,
             "{\"name\":\"cv\",\"op\":\"conv2d\",\"inputs\":[\"x\"],\"out_channels\":%d,"
             "\"kernel\":[%d,%d],\"stride\":[%d,%d],\"padding\":[%d,%d],\"groups\":%d,"
             "\"bias\":%s,\"shape\":[%d,%d,%d]}",
             k.o, k.kh, k.kw, k.sh, k.sw, k.ph, k.pw, k.g, k.bias ? "true" : "false", k.o, oh, ow);
    rd_nn_tensor_desc t[2] = {{"cv.weight", 4, {k.o, k.c / k.g, k.kh, k.kw}, wt},
                              {"cv.bias", 1, {k.o}, bias}};
    rd_nn_model *m = make_model(k.c, k.h, k.w, graph, "cv", t, k.bias ? 2 : 1);
    check_all(m, x, n, ref, (size_t)k.o * oh * ow);
    rd_nn_model_free(m);
    free(x);
    free(wt);
    free(bias);
    free(ref);
}

RD_TEST(conv_3x3_same)
{
    conv_test((conv_case){3, 9, 11, 5, 3, 3, 1, 1, 1, 1, 1, 1});
}

RD_TEST(conv_nonsquare_strided)
{
    conv_test((conv_case){2, 13, 10, 4, 5, 3, 2, 1, 2, 0, 1, 0});
}

RD_TEST(conv_grouped)
{
    conv_test((conv_case){4, 7, 8, 6, 3, 3, 1, 2, 1, 1, 2, 1});
}

RD_TEST(conv_depthwise)
{
    conv_test((conv_case){4, 9, 9, 4, 3, 3, 2, 2, 1, 1, 4, 1});
}

RD_TEST(conv_pointwise)
{
    conv_test((conv_case){3, 6, 7, 8, 1, 1, 1, 1, 0, 0, 1, 1});
    conv_test((conv_case){3, 6, 7, 8, 1, 1, 2, 2, 0, 0, 1, 0}); /* strided: im2col path */
}

RD_TEST(conv_stem_7x7)
{
    conv_test((conv_case){1, 30, 34, 8, 7, 7, 2, 2, 3, 3, 1, 0});
}

RD_TEST(conv_many_tiles)
{
    /* K = 4*9 = 36 rows: a tile holds 2^19/36 columns; 160x160 outputs need two tiles, so
     * tile edges inside a row of output positions are exercised. */
    conv_test((conv_case){4, 160, 160, 3, 3, 3, 1, 1, 1, 1, 1, 1});
}

/* More input channels than fit in one im2col row block, several paddings. */
RD_TEST(conv_wide_channels)
{
    conv_test((conv_case){8, 9, 11, 10, 3, 3, 1, 1, 1, 1, 1, 1});
    conv_test((conv_case){12, 8, 8, 8, 3, 3, 1, 1, 0, 0, 1, 0}); /* no padding */
    conv_test((conv_case){8, 7, 10, 9, 3, 3, 1, 1, 2, 2, 1, 1}); /* padding 2 */
    conv_test((conv_case){16, 40, 38, 16, 3, 3, 1, 1, 1, 1, 1, 0});
}

/* conv -> batchnorm -> relu: folded and fused at load; the reference applies them in turn. */
RD_TEST(conv_bn_relu_folded)
{
    const int n = 2, c = 3, h = 8, w = 9, o = 5;
    float *x = rand_buf((size_t)n * c * h * w), *wt = rand_buf((size_t)o * c * 9);
    float gamma[5], beta[5], mean[5], var[5];
    for (int i = 0; i < o; i++) {
        gamma[i] = 1.0f + 0.5f * frand();
        beta[i] = frand();
        mean[i] = 0.3f * frand();
        var[i] = 1.0f + 0.9f * frand();
    }
    float *ref = malloc((size_t)n * o * h * w * sizeof *ref);
    int oh, ow;
    ref_conv(x, n, c, h, w, wt, NULL, o, 3, 3, 1, 1, 1, 1, 1, ref, &oh, &ow);
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < o; ch++)
            for (int i = 0; i < oh * ow; i++) {
                float *v = &ref[(b * o + ch) * oh * ow + i];
                double t = (*v - mean[ch]) / sqrt((double)var[ch] + 1e-5) * gamma[ch] + beta[ch];
                *v = (float)(t > 0 ? t : 0);
            }
    const char *graph =
        "{\"name\":\"cv\",\"op\":\"conv2d\",\"inputs\":[\"x\"],\"out_channels\":5,\"kernel\":3,"
        "\"padding\":1},{\"name\":\"bn\",\"op\":\"batchnorm\",\"inputs\":[\"cv\"]},"
        "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"bn\"]}";
    rd_nn_tensor_desc t[5] = {{"cv.weight", 4, {o, c, 3, 3}, wt},
                              {"bn.weight", 1, {o}, gamma},
                              {"bn.bias", 1, {o}, beta},
                              {"bn.running_mean", 1, {o}, mean},
                              {"bn.running_var", 1, {o}, var}};
    rd_nn_model *m = make_model(c, h, w, graph, "r", t, 5);
    REQUIRE(m);
    /* Folding and fusion happened: only the convolution is left. */
    CHECK(m->nodes[2].dead && m->nodes[3].dead && !m->nodes[1].dead);
    CHECK_EQ_INT(m->nodes[1].act, RD_NN_ACT_RELU);
    check_all(m, x, n, ref, (size_t)o * oh * ow);
    rd_nn_model_free(m);
    free(x);
    free(wt);
    free(ref);
}

/* A batch norm after a pool cannot be folded: the standalone op, with SiLU fused. */
RD_TEST(batchnorm_standalone_silu)
{
    const int n = 2, c = 3, h = 5, w = 6;
    float *x = rand_buf((size_t)n * c * h * w), gamma[3], beta[3], mean[3], var[3];
    for (int i = 0; i < c; i++) {
        gamma[i] = 1.0f + 0.5f * frand();
        beta[i] = frand();
        mean[i] = 0.3f * frand();
        var[i] = 1.0f + 0.9f * frand();
    }
    float *ref = malloc((size_t)n * c * h * w * sizeof *ref);
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < h * w; i++) {
                size_t j = (size_t)(b * c + ch) * h * w + i;
                double t = (x[j] - mean[ch]) / sqrt((double)var[ch] + 1e-3) * gamma[ch] + beta[ch];
                ref[j] = (float)(t / (1 + exp(-t)));
            }
    const char *graph = "{\"name\":\"bn\",\"op\":\"batchnorm\",\"inputs\":[\"x\"],\"eps\":0.001},"
                        "{\"name\":\"s\",\"op\":\"silu\",\"inputs\":[\"bn\"]}";
    rd_nn_tensor_desc t[4] = {{"bn.weight", 1, {c}, gamma},
                              {"bn.bias", 1, {c}, beta},
                              {"bn.running_mean", 1, {c}, mean},
                              {"bn.running_var", 1, {c}, var}};
    rd_nn_model *m = make_model(c, h, w, graph, "s", t, 4);
    check_all(m, x, n, ref, (size_t)c * h * w);
    rd_nn_model_free(m);
    free(x);
    free(ref);
}

static void pool_test(const char *op, int k, int s, int p, int include_pad)
{
    const int n = 2, c = 3, h = 11, w = 8;
    char graph[512];
    float *x = rand_buf((size_t)n * c * h * w);
    int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
    float *ref = malloc((size_t)n * c * oh * ow * sizeof *ref);
    int is_max = strcmp(op, "maxpool") == 0;
    for (int pl = 0; pl < n * c; pl++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                double best = -1e30, sum = 0;
                int cnt = 0, cnt_pad = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int iy = oy * s - p + ky, ix = ox * s - p + kx;
                        if (iy < h + p && ix < w + p)
                            cnt_pad++; /* inside the padded input */
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                            continue;
                        double v = x[(pl * h + iy) * w + ix];
                        best = v > best ? v : best;
                        sum += v;
                        cnt++;
                    }
                ref[(pl * oh + oy) * ow + ox] =
                    (float)(is_max ? best : sum / (include_pad ? cnt_pad : cnt));
            }
    snprintf(graph, sizeof graph,
             "{\"name\":\"p\",\"op\":\"%s\",\"inputs\":[\"x\"],\"kernel\":%d,\"stride\":%d,"
             "\"padding\":%d,\"count_include_pad\":%s}",
             op, k, s, p, include_pad ? "true" : "false");
    rd_nn_model *m = make_model(c, h, w, graph, "p", NULL, 0);
    check_all(m, x, n, ref, (size_t)c * oh * ow);
    rd_nn_model_free(m);
    free(x);
    free(ref);
}

RD_TEST(maxpool)
{
    pool_test("maxpool", 3, 2, 1, 1);
    pool_test("maxpool", 2, 2, 0, 1);
}

RD_TEST(avgpool)
{
    pool_test("avgpool", 3, 2, 1, 1);
    pool_test("avgpool", 3, 2, 1, 0);
    pool_test("avgpool", 3, 1, 1, 0);
    pool_test("avgpool", 2, 3, 0, 1);
}

RD_TEST(gap_linear_sigmoid)
{
    const int n = 2, c = 4, h = 5, w = 3, o = 7;
    float *x = rand_buf((size_t)n * c * h * w), *wt = rand_buf((size_t)o * c);
    float *bias = rand_buf((size_t)o), ref[2 * 7];
    for (int i = 0; i < o * c; i++)
        wt[i] *= 8; /* large logits: the sigmoid's tails */
    for (int b = 0; b < n; b++)
        for (int j = 0; j < o; j++) {
            double s = bias[j];
            for (int ch = 0; ch < c; ch++) {
                double g = 0;
                for (int i = 0; i < h * w; i++)
                    g += x[(b * c + ch) * h * w + i];
                s += wt[j * c + ch] * g / (h * w);
            }
            ref[b * o + j] = (float)(1.0 / (1.0 + exp(-s)));
        }
    const char *graph = "{\"name\":\"g\",\"op\":\"gap\",\"inputs\":[\"x\"],\"shape\":[4,1,1]},"
                        "{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"g\"],\"out_features\":7},"
                        "{\"name\":\"sg\",\"op\":\"sigmoid\",\"inputs\":[\"fc\"]}";
    rd_nn_tensor_desc t[2] = {{"fc.weight", 2, {o, c}, wt}, {"fc.bias", 1, {o}, bias}};
    rd_nn_model *m = make_model(c, h, w, graph, "sg", t, 2);
    check_all(m, x, n, ref, (size_t)o);
    rd_nn_model_free(m);
    free(x);
    free(wt);
    free(bias);
}

/* linear over a whole C x H x W feature map (flattened), SiLU fused, then L2 normalized. */
RD_TEST(linear_flatten_silu_l2norm)
{
    const int n = 2, c = 2, h = 3, w = 4, o = 9, f = c * h * w;
    float *x = rand_buf((size_t)n * f), *wt = rand_buf((size_t)o * f), *bias = rand_buf(o);
    float ref[2 * 9];
    for (int b = 0; b < n; b++) {
        double norm = 0;
        for (int j = 0; j < o; j++) {
            double s = bias[j];
            for (int i = 0; i < f; i++)
                s += (double)wt[j * f + i] * x[b * f + i];
            s = s / (1 + exp(-s));
            ref[b * o + j] = (float)s;
            norm += s * s;
        }
        for (int j = 0; j < o; j++)
            ref[b * o + j] = (float)(ref[b * o + j] / sqrt(norm));
    }
    const char *graph = "{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"x\"],\"out_features\":9},"
                        "{\"name\":\"s\",\"op\":\"silu\",\"inputs\":[\"fc\"]},"
                        "{\"name\":\"e\",\"op\":\"l2norm\",\"inputs\":[\"s\"]}";
    rd_nn_tensor_desc t[2] = {{"fc.weight", 2, {o, f}, wt}, {"fc.bias", 1, {o}, bias}};
    rd_nn_model *m = make_model(c, h, w, graph, "e", t, 2);
    check_all(m, x, n, ref, (size_t)o);
    rd_nn_model_free(m);
    free(x);
    free(wt);
    free(bias);
}

RD_TEST(l2norm_zero_vector)
{
    float x[2 * 6] = {0, 0, 0, 0, 0, 0, 3, 0, 4, 0, 0, 0}, ref[12] = {0};
    ref[6] = 0.6f;
    ref[8] = 0.8f;
    rd_nn_model *m =
        make_model(1, 2, 3, "{\"name\":\"e\",\"op\":\"l2norm\",\"inputs\":[\"x\"]}", "e", NULL, 0);
    check_all(m, x, 2, ref, 6);
    rd_nn_model_free(m);
}

/* relu / silu / sigmoid as standalone ops (after a pool: nothing to fuse them into), add of
 * three inputs and concat along channels. */
RD_TEST(unary_add_concat)
{
    const int n = 2, c = 3, h = 4, w = 5, e = c * h * w;
    float *x = rand_buf((size_t)n * e);
    for (int i = 0; i < n * e; i++)
        x[i] *= 6;
    float *ref = malloc((size_t)n * 4 * e * sizeof *ref);
    for (int b = 0; b < n; b++)
        for (int i = 0; i < e; i++) {
            double v = x[b * e + i];
            double r = v > 0 ? v : 0, s = v / (1 + exp(-v)), g = 1 / (1 + exp(-v));
            ref[b * 4 * e + i] = (float)(r + s + g);
            ref[b * 4 * e + e + i] = (float)r;
            ref[b * 4 * e + 2 * e + i] = (float)g;
            ref[b * 4 * e + 3 * e + i] = (float)v;
        }
    const char *graph = "{\"name\":\"p\",\"op\":\"maxpool\",\"inputs\":[\"x\"],\"kernel\":1},"
                        "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"p\"]},"
                        "{\"name\":\"s\",\"op\":\"silu\",\"inputs\":[\"p\"]},"
                        "{\"name\":\"g\",\"op\":\"sigmoid\",\"inputs\":[\"p\"]},"
                        "{\"name\":\"a\",\"op\":\"add\",\"inputs\":[\"r\",\"s\",\"g\"]},"
                        "{\"name\":\"c\",\"op\":\"concat\",\"inputs\":[\"a\",\"r\",\"g\",\"x\"],"
                        "\"shape\":[12,4,5]}";
    rd_nn_model *m = make_model(c, h, w, graph, "c", NULL, 0);
    check_all(m, x, n, ref, (size_t)4 * e);
    rd_nn_model_free(m);
    free(x);
    free(ref);
}

/* add followed by relu: fused into the add. */
RD_TEST(add_relu_fused)
{
    const int n = 2, e = 2 * 3 * 3;
    float *x = rand_buf((size_t)n * e), ref[2 * 18];
    for (int i = 0; i < n * e; i++)
        ref[i] = x[i] + x[i] > 0 ? x[i] + x[i] : 0;
    const char *graph = "{\"name\":\"a\",\"op\":\"add\",\"inputs\":[\"x\",\"x\"]},"
                        "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"a\"]}";
    rd_nn_model *m = make_model(2, 3, 3, graph, "r", NULL, 0);
    REQUIRE(m);
    CHECK(m->nodes[2].dead);
    CHECK_EQ_INT(m->nodes[1].act, RD_NN_ACT_RELU);
    check_all(m, x, n, ref, (size_t)e);
    rd_nn_model_free(m);
    free(x);
}

RD_TEST(forward_rejects_bad_batch)
{
    rd_nn_model *m =
        make_model(1, 2, 2, "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"x\"]}", "r", NULL, 0);
    rd_nn_ctx *ctx = NULL;
    rd_error err;
    float x[8] = {0};
    REQUIRE(m);
    REQUIRE_OK(rd_nn_ctx_create(&ctx, m, 2, 2, &err), &err);
    CHECK_EQ_INT(rd_nn_forward(ctx, x, 3, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_nn_forward(ctx, x, 0, &err), RD_E_INVALID);
    CHECK_OK(rd_nn_forward(ctx, x, 2, &err), &err);
    CHECK(rd_nn_ctx_output(ctx, "nope", NULL) == NULL);
    CHECK_EQ_INT(rd_nn_ctx_create(&ctx, m, 0, 1, &err), RD_E_INVALID);
    rd_nn_ctx_free(ctx);
    rd_nn_ctx_free(NULL);
    rd_nn_model_free(m);
}

RD_TEST_MAIN()
