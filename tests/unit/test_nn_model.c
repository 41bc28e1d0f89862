/* Model files: the built-in architectures written and read back, forward invariants, each
 * validation rule with its message, and a fuzz-like pass that truncates and corrupts valid
 * files at many points (run under ASan in the sanitizer build). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"
#include "radraft/nn.h"
#include "rdtest.h"
#include "base/util.h"

/* Reads DIR/model.json and DIR/model.safetensors of a freshly initialized `arch`. */
static int init_files(const char *arch, const char *name, char **json, size_t *json_len, char **st,
                      size_t *st_len)
{
    const char *dir = rd_test_tmpdir(name);
    char path[1100];
    rd_error err;
    if (rd_nn_model_init(arch, 7, dir, &err) != RD_OK) {
        fprintf(stderr, "init: %s\n", rd_error_message(&err));
        return 0;
    }
    snprintf(path, sizeof path, "%s/model.json", dir);
    if (rd_read_file(path, 1 << 24, json, json_len, &err) != RD_OK)
        return 0;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return rd_read_file(path, 1 << 28, st, st_len, &err) == RD_OK;
}

static int count_live(const rd_nn_model *m, rd_nn_op op)
{
    int n = 0;
    for (int i = 0; i < m->n_nodes; i++)
        n += !m->nodes[i].dead && m->nodes[i].op == op;
    return n;
}

RD_TEST(init_load_every_arch)
{
    struct {
        const char *arch;
        int c, h, w, dim;
    } want[3] = {{"resnet-small", 1, 256, 256, 256},
                 {"resnet18", 3, 224, 224, 512},
                 {"opzoo", 2, 19, 21, 32}};
    for (int i = 0; i < 3; i++) {
        /* Not the bare arch name: test_nn_torch's cases use those folders under ctest -j. */
        char name[64];
        snprintf(name, sizeof name, "nn_model_%s", want[i].arch);
        const char *dir = rd_test_tmpdir(name);
        rd_nn_model *m = NULL;
        rd_error err;
        REQUIRE_OK(rd_nn_model_init(want[i].arch, 42, dir, &err), &err);
        REQUIRE_OK(rd_nn_model_load(&m, dir, &err), &err);
        const rd_nn_info *info = rd_nn_model_info(m);
        CHECK_STR(info->name, want[i].arch);
        CHECK(strstr(info->version, "seed42") != NULL);
        CHECK_EQ_INT(info->in_channels, want[i].c);
        CHECK_EQ_INT(info->in_height, want[i].h);
        CHECK_EQ_INT(info->in_width, want[i].w);
        CHECK_EQ_INT(info->embedding_dim, want[i].dim);
        CHECK_EQ_INT(info->n_labels, 14);
        CHECK_STR(info->labels[0], "Atelectasis");
        CHECK_STR(info->labels[13], "Hernia");
        if (strcmp(want[i].arch, "resnet18") == 0)
        /* torchvision's 11,689,512 parameters less its 1000-class head (513,000), plus
         * the batch norms' running statistics (2 x 4,800 channels) and a 14-way head. */
        {
            CHECK_EQ_INT(info->n_params, 11689512 - 513000 + 9600 + 512 * 14 + 14);
            /* The convolutions' 1,813,561,344 multiply-adds at 224 px (the 1.81 GMAC that is
             * published for ResNet-18, less its 1000-class head) and the 14-way head, two
             * operations each. */
            CHECK(rd_nn_model_flops(m) == 2.0 * (1813561344.0 + 512 * 14));
        }
        if (strcmp(want[i].arch, "opzoo") != 0) {
            /* Every batch norm folded into its convolution, every ReLU fused. */
            CHECK_EQ_INT(count_live(m, RD_NN_OP_BATCHNORM), 0);
            CHECK_EQ_INT(count_live(m, RD_NN_OP_RELU), 0);
        } else {
            /* b3 follows a concat: it stays, with its SiLU fused; r4 follows a pool. */
            CHECK_EQ_INT(count_live(m, RD_NN_OP_BATCHNORM), 1);
            CHECK_EQ_INT(count_live(m, RD_NN_OP_RELU), 1);
            CHECK_EQ_INT(count_live(m, RD_NN_OP_SILU), 0);
        }
        rd_nn_model_free(m);
    }
    rd_nn_model_free(NULL);
}

RD_TEST(load_json_path_and_errors)
{
    const char *dir = rd_test_tmpdir("load_json_path");
    char path[1100];
    rd_nn_model *m = NULL;
    rd_error err;
    REQUIRE_OK(rd_nn_model_init("opzoo", 1, dir, &err), &err);
    snprintf(path, sizeof path, "%s/model.json", dir);
    CHECK_OK(rd_nn_model_load(&m, path, &err), &err);
    rd_nn_model_free(m);
    snprintf(path, sizeof path, "%s/nothing", dir);
    CHECK_EQ_INT(rd_nn_model_load(&m, path, &err), RD_E_NOT_FOUND);
    CHECK_EQ_INT(rd_nn_model_init("vgg", 1, dir, &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "vgg") != NULL);
}

/* Same output at batch 1 and inside a batch of 3, with 1 and 2 threads; unit embeddings,
 * scores in (0, 1). */
RD_TEST(forward_invariants_resnet_small)
{
    const char *dir = rd_test_tmpdir("fwd_resnet_small");
    rd_nn_model *m = NULL;
    rd_nn_ctx *c1 = NULL, *c3 = NULL;
    rd_error err;
    REQUIRE_OK(rd_nn_model_init("resnet-small", 3, dir, &err), &err);
    REQUIRE_OK(rd_nn_model_load(&m, dir, &err), &err);
    REQUIRE_OK(rd_nn_ctx_create(&c1, m, 1, 1, &err), &err);
    REQUIRE_OK(rd_nn_ctx_create(&c3, m, 3, 2, &err), &err);
    size_t n = 256 * 256;
    float *x = malloc(3 * n * sizeof *x);
    for (size_t i = 0; i < 3 * n; i++)
        x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f + (float)(i / n);
    CHECK_OK(rd_nn_forward(c3, x, 3, &err), &err);
    int dim = 0, nl = 0;
    const float *e3 = rd_nn_ctx_output(c3, "embedding", &dim);
    const float *s3 = rd_nn_ctx_output(c3, "scores", &nl);
    REQUIRE(e3 && s3 && dim == 256 && nl == 14);
    for (int b = 0; b < 3; b++) {
        double norm = 0;
        for (int i = 0; i < dim; i++)
            norm += (double)e3[b * dim + i] * e3[b * dim + i];
        CHECK_NEAR(norm, 1.0, 1e-5);
        for (int i = 0; i < nl; i++)
            CHECK_MSG(s3[b * nl + i] > 0.001 && s3[b * nl + i] < 0.999, "score %g", s3[b * nl + i]);
    }
    /* The three images differ, so their embeddings must too. */
    CHECK(fabs(e3[0] - e3[dim]) + fabs(e3[1] - e3[dim + 1]) > 1e-6);
    for (int b = 0; b < 3; b++) {
        CHECK_OK(rd_nn_forward(c1, x + b * n, 1, &err), &err);
        const float *e1 = rd_nn_ctx_output(c1, "embedding", NULL);
        const float *s1 = rd_nn_ctx_output(c1, "scores", NULL);
        double d = 0;
        for (int i = 0; i < dim; i++)
            d = fmax(d, fabs(e1[i] - e3[b * dim + i]));
        for (int i = 0; i < nl; i++)
            d = fmax(d, fabs(s1[i] - s3[b * nl + i]));
        CHECK_MSG(d < 1e-5, "image %d: batch-1 and batch-3 outputs differ by %g", b, d);
    }
    CHECK(rd_nn_ctx_arena_bytes(c1) > 0);
    CHECK(rd_nn_ctx_arena_bytes(c3) > rd_nn_ctx_arena_bytes(c1));
    /* Liveness planning: far less than one buffer per node. */
    CHECK(rd_nn_ctx_arena_bytes(c1) < 8u * 1024 * 1024);
    free(x);
    rd_nn_ctx_free(c1);
    rd_nn_ctx_free(c3);
    rd_nn_model_free(m);
}

/* Applies `edit` to the opzoo description and expects RD_E_MODEL with `needle` in the
 * message. */
typedef void (*json_edit)(cJSON *root);

static void expect_json_error(const char *json, size_t json_len, const char *st, size_t st_len,
                              json_edit edit, const char *needle)
{
    cJSON *root = cJSON_ParseWithLength(json, json_len);
    rd_nn_model *m = NULL;
    rd_error err;
    REQUIRE(root);
    edit(root);
    char *text = cJSON_PrintUnformatted(root);
    rd_status got = rd_nn_model_parse(&m, text, strlen(text), st, st_len, "zoo.json", &err);
    CHECK_MSG(got == RD_E_MODEL && strstr(err.msg, needle) && strstr(err.msg, "zoo.json"),
              "expected RD_E_MODEL with '%s', got %s: %s", needle, rd_status_name(got),
              got == RD_OK ? "" : err.msg);
    if (got == RD_OK)
        rd_nn_model_free(m);
    free(text);
    cJSON_Delete(root);
}

static cJSON *node(cJSON *root, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItem(root, "graph"), i);
}
static void set(cJSON *obj, const char *key, cJSON *v)
{
    if (cJSON_GetObjectItem(obj, key))
        cJSON_ReplaceItemInObject(obj, key, v);
    else
        cJSON_AddItemToObject(obj, key, v);
}
static void e_op(cJSON *r)
{
    set(node(r, 0), "op", cJSON_CreateString("deconv"));
}
static void e_input(cJSON *r)
{
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(node(r, 1), "inputs"), 0,
                             cJSON_CreateString("nowhere"));
}
static void e_forward(cJSON *r)
{
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(node(r, 0), "inputs"), 0,
                             cJSON_CreateString("r1"));
}
static void e_shape(cJSON *r)
{
    int s[3] = {8, 19, 20};
    set(node(r, 0), "shape", cJSON_CreateIntArray(s, 3));
}
static void e_channels(cJSON *r)
{
    set(node(r, 0), "out_channels", cJSON_CreateNumber(10));
}
static void e_kernel(cJSON *r)
{
    set(node(r, 0), "kernel", cJSON_CreateNumber(0));
}
static void e_groups(cJSON *r)
{
    set(node(r, 0), "groups", cJSON_CreateNumber(3));
}
static void e_dup(cJSON *r)
{
    set(node(r, 1), "name", cJSON_CreateString("c1"));
}
static void e_version(cJSON *r)
{
    set(r, "format_version", cJSON_CreateNumber(2));
}
static void e_format(cJSON *r)
{
    set(r, "format", cJSON_CreateString("onnx"));
}
static void e_labels(cJSON *r)
{
    cJSON_DeleteItemFromArray(cJSON_GetObjectItem(r, "labels"), 0);
}
static void e_output(cJSON *r)
{
    set(cJSON_GetObjectItem(r, "outputs"), "embedding", cJSON_CreateString("ghost"));
}
static void e_bias(cJSON *r)
{
    set(node(r, 0), "bias", cJSON_CreateFalse());
}
static void e_add(cJSON *r)
{
    /* add1 of c2 (16ch) and ap (20ch): shapes differ. */
    cJSON *g = cJSON_GetObjectItem(r, "graph"), *n;
    cJSON_ArrayForEach(n, g) if (strcmp(cJSON_GetObjectItem(n, "name")->valuestring, "add1") == 0)
        cJSON_ReplaceItemInArray(cJSON_GetObjectItem(n, "inputs"), 1, cJSON_CreateString("ap"));
}
static void e_mean(cJSON *r)
{
    double v[3] = {0, 0, 0};
    set(cJSON_GetObjectItem(r, "preprocessing"), "mean", cJSON_CreateDoubleArray(v, 3));
}
static void e_std(cJSON *r)
{
    double v[1] = {0};
    set(cJSON_GetObjectItem(r, "preprocessing"), "std", cJSON_CreateDoubleArray(v, 1));
}
static void e_pool(cJSON *r)
{
    cJSON *g = cJSON_GetObjectItem(r, "graph"), *n;
    cJSON_ArrayForEach(n, g) if (strcmp(cJSON_GetObjectItem(n, "name")->valuestring, "mp") == 0)
        set(n, "padding", cJSON_CreateNumber(2));
}
static void e_dilation(cJSON *r)
{
    set(node(r, 0), "dilation", cJSON_CreateNumber(2));
}
static void e_not_object(cJSON *r)
{
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(r, "graph"), 2, cJSON_CreateNumber(1));
}

RD_TEST(rejects_invalid_descriptions)
{
    char *json = NULL, *st = NULL;
    size_t jl = 0, sl = 0;
    REQUIRE(init_files("opzoo", "rejects_desc", &json, &jl, &st, &sl));
    /* The unmodified description loads (so each failure below is the edit's). */
    rd_nn_model *m = NULL;
    rd_error err;
    CHECK_OK(rd_nn_model_parse(&m, json, jl, st, sl, "zoo.json", &err), &err);
    rd_nn_model_free(m);
    expect_json_error(json, jl, st, sl, e_op, "unknown op 'deconv'");
    expect_json_error(json, jl, st, sl, e_input, "input 'nowhere'");
    expect_json_error(json, jl, st, sl, e_forward, "input 'r1'");
    expect_json_error(json, jl, st, sl, e_shape, "stated shape");
    expect_json_error(json, jl, st, sl, e_channels,
                      "tensor 'c1.weight' has shape [8,1,3,3], expected [10,1,3,3]");
    expect_json_error(json, jl, st, sl, e_kernel, "'kernel' must be an integer in [1, 31]");
    expect_json_error(json, jl, st, sl, e_groups, "groups 3 does not divide");
    expect_json_error(json, jl, st, sl, e_dup, "used twice");
    expect_json_error(json, jl, st, sl, e_version, "format_version 2");
    expect_json_error(json, jl, st, sl, e_format, "'format'");
    expect_json_error(json, jl, st, sl, e_labels, "13 labels");
    expect_json_error(json, jl, st, sl, e_output, "output 'embedding' names no node");
    expect_json_error(json, jl, st, sl, e_bias, "'c1.bias' belongs to no node");
    expect_json_error(json, jl, st, sl, e_add, "has shape [20,5,6]");
    expect_json_error(json, jl, st, sl, e_mean, "'mean' must list 1 or 2");
    expect_json_error(json, jl, st, sl, e_std, "'std' holds a value");
    expect_json_error(json, jl, st, sl, e_pool, "padding exceeds half the kernel");
    expect_json_error(json, jl, st, sl, e_dilation, "'dilation'");
    expect_json_error(json, jl, st, sl, e_not_object, "graph[2]: not an object");
    CHECK_EQ_INT(rd_nn_model_parse(&m, "{\"format\": ", 11, st, sl, "zoo.json", &err), RD_E_MODEL);
    CHECK(strstr(err.msg, "not valid JSON"));
    free(json);
    free(st);
}

/* A safetensors file built by hand around one 1x1x1x2 conv weight. */
static size_t make_st(unsigned char *buf, size_t cap, const char *header, const void *data,
                      size_t data_len)
{
    size_t hl = strlen(header);
    if (8 + hl + data_len > cap)
        return 0;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    memcpy(buf + 8 + hl, data, data_len);
    return 8 + hl + data_len;
}

static const char conv_json[] =
    "{\"format\":\"radraft-model\",\"format_version\":1,\"version\":\"v\","
    "\"input\":{\"name\":\"x\",\"channels\":1,\"height\":1,\"width\":1},"
    "\"preprocessing\":{\"mean\":[0],\"std\":[1]},\"outputs\":{\"y\":\"cv\"},"
    "\"graph\":[{\"name\":\"cv\",\"op\":\"conv2d\",\"inputs\":[\"x\"],\"out_channels\":2,"
    "\"kernel\":1}]}";

static void expect_st_error(const char *header, const void *data, size_t dl, const char *needle)
{
    unsigned char buf[1024];
    size_t n = make_st(buf, sizeof buf, header, data, dl);
    rd_nn_model *m = NULL;
    rd_error err;
    rd_status got = rd_nn_model_parse(&m, conv_json, strlen(conv_json), buf, n, "m.json", &err);
    CHECK_MSG(got == RD_E_MODEL && strstr(err.msg, needle),
              "expected RD_E_MODEL with '%s', got %s: %s", needle, rd_status_name(got),
              got == RD_OK ? "" : err.msg);
    rd_nn_model_free(got == RD_OK ? m : NULL);
}

RD_TEST(safetensors_validation_and_f16)
{
    float w32[2] = {1.5f, -2.25f};
    unsigned char w16[4] = {0x00, 0x3e, 0x80, 0xc0}; /* 1.5, -2.25 in IEEE half */
    unsigned char buf[1024];
    rd_nn_model *m = NULL;
    rd_nn_ctx *ctx = NULL;
    rd_error err;
    float x = 2.0f;

    /* F32 and F16 both load and give the same convolution. */
    const char *h32 =
        "{\"cv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,1,1],\"data_offsets\":[0,8]}}";
    const char *h16 = "{\"__metadata__\":{\"a\":\"b\"},\"cv.weight\":{\"dtype\":\"F16\","
                      "\"shape\":[2,1,1,1],\"data_offsets\":[0,4]}}";
    for (int k = 0; k < 2; k++) {
        size_t n =
            k == 0 ? make_st(buf, sizeof buf, h32, w32, 8) : make_st(buf, sizeof buf, h16, w16, 4);
        REQUIRE_OK(rd_nn_model_parse(&m, conv_json, strlen(conv_json), buf, n, "m", &err), &err);
        REQUIRE_OK(rd_nn_ctx_create(&ctx, m, 1, 1, &err), &err);
        REQUIRE_OK(rd_nn_forward(ctx, &x, 1, &err), &err);
        const float *y = rd_nn_ctx_output(ctx, "y", NULL);
        CHECK_NEAR(y[0], 3.0, 1e-6);
        CHECK_NEAR(y[1], -4.5, 1e-6);
        CHECK_EQ_INT(rd_nn_model_info(m)->n_params, 2);
        rd_nn_ctx_free(ctx);
        rd_nn_model_free(m);
    }
    expect_st_error(
        "{\"cv.weight\":{\"dtype\":\"I64\",\"shape\":[2,1,1,1],\"data_offsets\":[0,16]}}", w32, 8,
        "dtype I64");
    expect_st_error(
        "{\"cv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,1,1],\"data_offsets\":[0,12]}}", w32, 8,
        "data_offsets outside");
    expect_st_error(
        "{\"cv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,1,1],\"data_offsets\":[0,4]}}", w32, 8,
        "needs 2 x 4");
    expect_st_error("{\"cv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,1],\"data_offsets\":[0,8]}}",
                    w32, 8, "has shape [2,1,1], expected [2,1,1,1]");
    expect_st_error("{\"cv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,1,1],\"data_offsets\":[0,8]},"
                    "\"other\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    w32, 8, "overlap");
    expect_st_error("{\"cv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,1,1],\"data_offsets\":[0,8]},"
                    "\"cv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,1,1],\"data_offsets\":[0,8]}}",
                    w32, 8, "appears twice");
    expect_st_error(
        "{\"cv.weight\":{\"dtype\":\"F32\",\"shape\":[-2,1,1,1],\"data_offsets\":[0,8]}}", w32, 8,
        "invalid shape");
    expect_st_error("{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,1,1],\"data_offsets\":[0,8]}}",
                    w32, 8, "'cv.weight' is missing");
    expect_st_error("[1,2]", w32, 8, "not a JSON object");
    expect_st_error("{\"cv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,1,1],\"data_offsets\":[0,8]}",
                    w32, 8, "not valid JSON");
    /* A header length beyond the file. */
    size_t n = make_st(buf, sizeof buf, h32, w32, 8);
    buf[0] = 0xff;
    buf[3] = 0x01;
    CHECK_EQ_INT(rd_nn_model_parse(&m, conv_json, strlen(conv_json), buf, n, "m", &err),
                 RD_E_MODEL);
    CHECK(strstr(err.msg, "header length") && strstr(err.msg, "exceeds"));
    CHECK_EQ_INT(rd_nn_model_parse(&m, conv_json, strlen(conv_json), buf, 5, "m", &err),
                 RD_E_MODEL);
    CHECK(strstr(err.msg, "shorter than the 8-byte header length"));
}

static uint64_t frng = 99;
static uint32_t fnext(void)
{
    frng = frng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(frng >> 33);
}

/* Truncation at many points and random byte corruption of both files: the loader must
 * return (an error or, for bytes that only change weight values, a model), never crash or
 * leak; ASan checks every read. */
RD_TEST(fuzz_truncate_and_corrupt)
{
    char *json = NULL, *st = NULL;
    size_t jl = 0, sl = 0, hl = 0;
    rd_nn_model *m = NULL;
    rd_error err;
    int ok = 0, failed = 0;
    REQUIRE(init_files("opzoo", "fuzz", &json, &jl, &st, &sl));
    for (int i = 0; i < 8; i++)
        hl |= (size_t)(unsigned char)st[i] << (8 * i);
    REQUIRE(hl < sl);
    /* Every truncation of the weights fails: each tensor is needed. */
    for (size_t cut = 0; cut < sl; cut += cut < hl + 16 ? 1 : 37) {
        char *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
        memcpy(copy, st, cut);
        rd_status got = rd_nn_model_parse(&m, json, jl, copy, cut, "t", &err);
        CHECK_MSG(got == RD_E_MODEL && err.msg[0], "weights cut at %zu: %s", cut,
                  rd_status_name(got));
        if (got == RD_OK)
            rd_nn_model_free(m);
        free(copy);
    }
    /* Every truncation of the description fails (it is one JSON object). */
    for (size_t cut = 0; cut < jl; cut += 3) {
        char *copy = malloc(cut ? cut : 1);
        memcpy(copy, json, cut);
        rd_status got = rd_nn_model_parse(&m, copy, cut, st, sl, "t", &err);
        CHECK_MSG(got == RD_E_MODEL, "description cut at %zu: %s", cut, rd_status_name(got));
        if (got == RD_OK)
            rd_nn_model_free(m);
        free(copy);
    }
    /* Random corruption of 1-4 bytes, in the weights header or the description. */
    for (int round = 0; round < 3000; round++) {
        int in_json = round & 1;
        size_t len = in_json ? jl : sl, span = in_json ? jl : hl + 8;
        char *copy = malloc(len);
        memcpy(copy, in_json ? json : st, len);
        int nb = 1 + (int)(fnext() % 4);
        for (int b = 0; b < nb; b++) {
            static const char pool[] = "{}[]\",:0123456789-.eE \x00\xff\x80tfnul";
            size_t at = fnext() % span;
            copy[at] = (fnext() & 1) ? (char)fnext() : pool[fnext() % (sizeof pool - 1)];
        }
        rd_status got = in_json ? rd_nn_model_parse(&m, copy, len, st, sl, "t", &err)
                                : rd_nn_model_parse(&m, json, jl, copy, len, "t", &err);
        if (got == RD_OK) {
            ok++;
            /* What loads must also run. */
            rd_nn_ctx *ctx = NULL;
            const rd_nn_info *info = rd_nn_model_info(m);
            size_t n = (size_t)info->in_channels * info->in_height * info->in_width;
            if (n <= 4096 && rd_nn_ctx_create(&ctx, m, 1, 1, &err) == RD_OK) {
                float *x = calloc(n, sizeof *x);
                CHECK_OK(rd_nn_forward(ctx, x, 1, &err), &err);
                free(x);
            }
            rd_nn_ctx_free(ctx);
            rd_nn_model_free(m);
        } else {
            failed++;
            CHECK_MSG(err.msg[0] != '\0', "empty message for %s", rd_status_name(got));
            CHECK_MSG(got == RD_E_MODEL || got == RD_E_NOMEM, "unexpected %s: %s",
                      rd_status_name(got), err.msg);
        }
        free(copy);
    }
    fprintf(stderr, "corruptions: %d loaded, %d refused\n", ok, failed);
    CHECK(failed > 1000);
    free(json);
    free(st);
}

/* The largest graph the format allows, 4095 nodes of add + relu pairs: loads (with half of
 * the nodes fused away) and runs, in time linear in the graph. */
RD_TEST(longest_graph_loads_and_runs)
{
    size_t cap = 4096 * 96 + 1024, len = 0;
    char *json = malloc(cap);
    rd_nn_model *m = NULL;
    rd_nn_ctx *ctx = NULL;
    rd_error err;
    void *st = NULL;
    size_t st_len = 0;
    REQUIRE(json);
    len += (size_t)snprintf(
        json + len, cap - len,
        "{\"format\":\"radraft-model\",\"format_version\":1,\"version\":\"v\","
        "\"input\":{\"name\":\"n0\",\"channels\":1,\"height\":2,\"width\":2},"
        "\"preprocessing\":{\"mean\":[0],\"std\":[1]},\"outputs\":{\"y\":\"n4095\"},"
        "\"graph\":[");
    for (int i = 1; i <= 4095; i++)
        len += (size_t)snprintf(
            json + len, cap - len, "%s{\"name\":\"n%d\",\"op\":\"%s\",\"inputs\":[\"n%d\"%s]}",
            i > 1 ? "," : "", i, i % 2 ? "add" : "relu", i - 1, i % 2 ? ",\"n0\"" : "");
    len += (size_t)snprintf(json + len, cap - len, "]}");
    REQUIRE(len < cap);
    REQUIRE_OK(rd_nn_safetensors_encode(NULL, 0, &st, &st_len, &err), &err);
    REQUIRE_OK(rd_nn_model_parse(&m, json, len, st, st_len, "long", &err), &err);
    CHECK_EQ_INT(count_live(m, RD_NN_OP_RELU), 0);
    CHECK_EQ_INT(count_live(m, RD_NN_OP_ADD), 2048);
    REQUIRE_OK(rd_nn_ctx_create(&ctx, m, 1, 2, &err), &err);
    float x[4] = {1, -1, 0.5f, -0.25f};
    CHECK_OK(rd_nn_forward(ctx, x, 1, &err), &err);
    /* n1 = 2x, then 2047 times relu and + x (the last add without relu): 2049 x for x > 0;
     * for x < 0 the first relu gives 0 and the last add leaves x. */
    const float *y = rd_nn_ctx_output(ctx, "y", NULL);
    CHECK_NEAR(y[0], 2049.0, 1e-3);
    CHECK_NEAR(y[1], -1.0, 1e-6);
    CHECK_NEAR(y[2], 1024.5, 1e-3);
    CHECK_NEAR(y[3], -0.25, 1e-6);
    rd_nn_ctx_free(ctx);
    rd_nn_model_free(m);
    free(st);
    free(json);
}

RD_TEST(sgemm_peak_is_measured)
{
    double g = 0;
    rd_error err;
    REQUIRE_OK(rd_nn_sgemm_peak(1, &g, &err), &err);
    /* Any machine that runs the tests does more than 0.1 GFLOP/s, and none a PFLOP/s. */
    CHECK(g > 0.1 && g < 1e6);
    CHECK_EQ_INT(rd_nn_sgemm_peak(-1, &g, &err), RD_E_INVALID);
}

RD_TEST_MAIN()
