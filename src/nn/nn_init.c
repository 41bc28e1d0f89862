/* radraft — writing model files: safetensors encoding and the built-in architectures with
 * seeded random weights (for tests, benchmarks, and as the starting point of training).
 *
 * Node and tensor names follow torchvision's ResNet ("layer1.0.conv1", "bn1", "fc") so that
 * a PyTorch state_dict maps onto a radraft model one tensor for one tensor. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"
#include "base/util.h"

const char *const rd_nn_archs[] = {"resnet-small", "resnet18", "opzoo", NULL};

static const char *const findings[14] = {
    "Atelectasis", "Cardiomegaly", "Effusion",           "Infiltration",  "Mass",
    "Nodule",      "Pneumonia",    "Pneumothorax",       "Consolidation", "Edema",
    "Emphysema",   "Fibrosis",     "Pleural_Thickening", "Hernia"};

/* safetensors -------------------------------------------------------------------------------- */

rd_status rd_nn_safetensors_encode(const rd_nn_tensor_desc *t, int n, void **out, size_t *len,
                                   rd_error *err)
{
    cJSON *hdr = cJSON_CreateObject(), *meta;
    char *text = NULL;
    unsigned char *buf = NULL;
    size_t data = 0, hlen, total;
    rd_status st = RD_OK;

    if (!hdr)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    meta = cJSON_AddObjectToObject(hdr, "__metadata__");
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt"))
        goto nomem;
    for (int i = 0; i < n; i++) {
        size_t numel = 1, bytes;
        cJSON *e = cJSON_AddObjectToObject(hdr, t[i].name), *shape, *offs;
        if (!e || !cJSON_AddStringToObject(e, "dtype", "F32") ||
            !(shape = cJSON_AddArrayToObject(e, "shape")) ||
            !(offs = cJSON_AddArrayToObject(e, "data_offsets")))
            goto nomem;
        if (t[i].ndim < 0 || t[i].ndim > 4) {
            st =
                rd_error_set(err, RD_E_INVALID, "tensor '%s': %d dimensions", t[i].name, t[i].ndim);
            goto out;
        }
        for (int d = 0; d < t[i].ndim; d++) {
            if (t[i].shape[d] < 0 || !rd_mul_size(numel, (size_t)t[i].shape[d], &numel)) {
                st = rd_error_set(err, RD_E_INVALID, "tensor '%s': bad shape", t[i].name);
                goto out;
            }
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        }
        if (!rd_mul_size(numel, 4, &bytes)) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "tensor '%s' too large", t[i].name);
            goto out;
        }
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)data));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(data + bytes)));
        data += bytes;
    }
    text = cJSON_PrintUnformatted(hdr);
    if (!text)
        goto nomem;
    hlen = strlen(text);
    hlen = (hlen + 7) / 8 * 8; /* pad with spaces so that the data starts aligned */
    total = 8 + hlen + data;
    buf = malloc(total);
    if (!buf)
        goto nomem;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memset(buf + 8, ' ', hlen);
    memcpy(buf + 8, text, strlen(text));
    {
        unsigned char *p = buf + 8 + hlen;
        for (int i = 0; i < n; i++) {
            size_t numel = 1;
            for (int d = 0; d < t[i].ndim; d++)
                numel *= (size_t)t[i].shape[d];
            for (size_t j = 0; j < numel; j++) {
                uint32_t u;
                memcpy(&u, &t[i].data[j], sizeof u);
                p[0] = (unsigned char)u, p[1] = (unsigned char)(u >> 8);
                p[2] = (unsigned char)(u >> 16), p[3] = (unsigned char)(u >> 24);
                p += 4;
            }
        }
    }
    *out = buf;
    *len = total;
    buf = NULL;
    goto out;
nomem:
    st = rd_error_set(err, RD_E_NOMEM, "out of memory encoding safetensors");
out:
    free(buf);
    free(text);
    cJSON_Delete(hdr);
    return st;
}

/* Graph builder -------------------------------------------------------------------------------- */

typedef struct shape_entry {
    char name[RD_NN_NAME_MAX];
    int c, h, w;
} shape_entry;

typedef struct builder {
    cJSON *graph;
    shape_entry *shapes;
    int n_shapes, cap_shapes;
    rd_nn_tensor_desc *tensors;
    int n_tensors, cap_tensors;
    uint64_t rng;
    int failed;
} builder;

static uint64_t rng_next(builder *b)
{
    /* splitmix64: tiny, seedable, and good enough for initial weights. */
    uint64_t z = (b->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(builder *b)
{
    return ((double)(rng_next(b) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(builder *b)
{
    double u = rng_uniform(b), v = rng_uniform(b);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static const shape_entry *b_shape(builder *b, const char *name)
{
    for (int i = b->n_shapes - 1; i >= 0; i--)
        if (strcmp(b->shapes[i].name, name) == 0)
            return &b->shapes[i];
    b->failed = 1;
    return NULL;
}

static void b_add_shape(builder *b, const char *name, int c, int h, int w)
{
    if (b->n_shapes == b->cap_shapes) {
        int cap = b->cap_shapes ? 2 * b->cap_shapes : 64;
        shape_entry *ns = realloc(b->shapes, (size_t)cap * sizeof *ns);
        if (!ns) {
            b->failed = 1;
            return;
        }
        b->shapes = ns;
        b->cap_shapes = cap;
    }
    shape_entry *e = &b->shapes[b->n_shapes++];
    rd_strlcpy(e->name, name, sizeof e->name);
    e->c = c, e->h = h, e->w = w;
}

/* Adds a tensor `node.suffix` of `numel` values: normal(mean, sd) or uniform [lo, hi]. */
static void b_tensor(builder *b, const char *node, const char *suffix, int ndim,
                     const int64_t *shape, int normal, double p1, double p2)
{
    char name[RD_NN_NAME_MAX + 32];
    size_t numel = 1;
    float *data;
    if (b->n_tensors == b->cap_tensors) {
        int cap = b->cap_tensors ? 2 * b->cap_tensors : 128;
        rd_nn_tensor_desc *nt = realloc(b->tensors, (size_t)cap * sizeof *nt);
        if (!nt) {
            b->failed = 1;
            return;
        }
        b->tensors = nt;
        b->cap_tensors = cap;
    }
    for (int i = 0; i < ndim; i++)
        numel *= (size_t)shape[i];
    data = malloc(numel * sizeof *data);
    snprintf(name, sizeof name, "%s.%s", node, suffix);
    char *nm = strdup(name);
    if (!data || !nm) {
        free(data);
        free(nm);
        b->failed = 1;
        return;
    }
    for (size_t i = 0; i < numel; i++)
        data[i] = (float)(normal ? p1 + p2 * rng_normal(b) : p1 + (p2 - p1) * rng_uniform(b));
    rd_nn_tensor_desc *t = &b->tensors[b->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = data;
}

static cJSON *b_node(builder *b, const char *name, const char *op, const char *const *inputs,
                     int n_in)
{
    cJSON *nd = cJSON_CreateObject(), *arr;
    if (!nd || !cJSON_AddItemToArray(b->graph, nd)) {
        cJSON_Delete(nd);
        b->failed = 1;
        return NULL;
    }
    cJSON_AddStringToObject(nd, "name", name);
    cJSON_AddStringToObject(nd, "op", op);
    arr = cJSON_AddArrayToObject(nd, "inputs");
    for (int i = 0; arr && i < n_in; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(inputs[i]));
    return nd;
}

static void b_finish(builder *b, cJSON *nd, const char *name, int c, int h, int w)
{
    int shape[3] = {c, h, w};
    if (!nd || !cJSON_AddItemToObject(nd, "shape", cJSON_CreateIntArray(shape, 3)))
        b->failed = 1;
    b_add_shape(b, name, c, h, w);
}

static void add_pair(cJSON *nd, const char *key, int a, int c)
{
    if (a == c) {
        cJSON_AddNumberToObject(nd, key, a);
    } else {
        int v[2] = {a, c};
        cJSON_AddItemToObject(nd, key, cJSON_CreateIntArray(v, 2));
    }
}

static const char *b_conv(builder *b, const char *name, const char *in, int out, int kh, int kw,
                          int sh, int sw, int ph, int pw, int groups, int bias)
{
    const shape_entry *x = b_shape(b, in);
    if (!x)
        return name;
    cJSON *nd = b_node(b, name, "conv2d", &in, 1);
    int cin = x->c, h = (x->h + 2 * ph - kh) / sh + 1, w = (x->w + 2 * pw - kw) / sw + 1;
    if (nd) {
        cJSON_AddNumberToObject(nd, "out_channels", out);
        add_pair(nd, "kernel", kh, kw);
        add_pair(nd, "stride", sh, sw);
        add_pair(nd, "padding", ph, pw);
        cJSON_AddNumberToObject(nd, "groups", groups);
        cJSON_AddBoolToObject(nd, "bias", bias);
    }
    int64_t ws[4] = {out, cin / groups, kh, kw}, bs[1] = {out};
    double fan_in = (double)(cin / groups) * kh * kw;
    b_tensor(b, name, "weight", 4, ws, 1, 0.0, sqrt(2.0 / fan_in)); /* He-normal */
    if (bias)
        b_tensor(b, name, "bias", 1, bs, 0, -0.1, 0.1);
    b_finish(b, nd, name, out, h, w);
    return name;
}

static const char *b_bn_range(builder *b, const char *name, const char *in, double glo, double ghi)
{
    const shape_entry *x = b_shape(b, in);
    if (!x)
        return name;
    cJSON *nd = b_node(b, name, "batchnorm", &in, 1);
    if (nd)
        cJSON_AddNumberToObject(nd, "eps", 1e-5);
    int64_t cs[1] = {x->c};
    /* Statistics near their neutral values, but not at them, so that folding is tested. */
    b_tensor(b, name, "weight", 1, cs, 0, glo, ghi);
    b_tensor(b, name, "bias", 1, cs, 0, -0.1, 0.1);
    b_tensor(b, name, "running_mean", 1, cs, 0, -0.1, 0.1);
    b_tensor(b, name, "running_var", 1, cs, 0, 0.8, 1.2);
    b_finish(b, nd, name, x->c, x->h, x->w);
    return name;
}

static const char *b_unary(builder *b, const char *name, const char *op, const char *in)
{
    const shape_entry *x = b_shape(b, in);
    if (!x)
        return name;
    int c = x->c, h = x->h, w = x->w;
    cJSON *nd = b_node(b, name, op, &in, 1);
    if (strcmp(op, "gap") == 0)
        h = w = 1;
    b_finish(b, nd, name, c, h, w);
    return name;
}

static const char *b_pool(builder *b, const char *name, const char *op, const char *in, int k,
                          int s, int p, int include_pad)
{
    const shape_entry *x = b_shape(b, in);
    if (!x)
        return name;
    int c = x->c, h = (x->h + 2 * p - k) / s + 1, w = (x->w + 2 * p - k) / s + 1;
    cJSON *nd = b_node(b, name, op, &in, 1);
    if (nd) {
        cJSON_AddNumberToObject(nd, "kernel", k);
        cJSON_AddNumberToObject(nd, "stride", s);
        cJSON_AddNumberToObject(nd, "padding", p);
        if (strcmp(op, "avgpool") == 0)
            cJSON_AddBoolToObject(nd, "count_include_pad", include_pad);
    }
    b_finish(b, nd, name, c, h, w);
    return name;
}

static const char *b_multi(builder *b, const char *name, const char *op, const char *const *inputs,
                           int n)
{
    const shape_entry *x = b_shape(b, inputs[0]);
    if (!x)
        return name;
    int c = x->c, h = x->h, w = x->w;
    if (strcmp(op, "concat") == 0)
        for (int i = 1; i < n; i++) {
            const shape_entry *y = b_shape(b, inputs[i]);
            c += y ? y->c : 0;
        }
    cJSON *nd = b_node(b, name, op, inputs, n);
    b_finish(b, nd, name, c, h, w);
    return name;
}

static const char *b_linear(builder *b, const char *name, const char *in, int out)
{
    const shape_entry *x = b_shape(b, in);
    if (!x)
        return name;
    int64_t f = (int64_t)x->c * x->h * x->w, ws[2] = {out, f}, bs[1] = {out};
    cJSON *nd = b_node(b, name, "linear", &in, 1);
    if (nd) {
        cJSON_AddNumberToObject(nd, "out_features", out);
        cJSON_AddBoolToObject(nd, "bias", 1);
    }
    b_tensor(b, name, "weight", 2, ws, 1, 0.0, sqrt(1.0 / (double)f));
    b_tensor(b, name, "bias", 1, bs, 0, -0.1, 0.1);
    b_finish(b, nd, name, out, 1, 1);
    return name;
}

static const char *b_bn(builder *b, const char *name, const char *in)
{
    return b_bn_range(b, name, in, 0.8, 1.2);
}

/* Architectures ------------------------------------------------------------------------------ */

/* A torchvision-style ResNet of basic blocks. */
static void arch_resnet(builder *b, const int widths[4], const int blocks[4], int stem_k)
{
    char cur[RD_NN_NAME_MAX], n1[RD_NN_NAME_MAX], n2[RD_NN_NAME_MAX], n3[RD_NN_NAME_MAX];
    char sc[RD_NN_NAME_MAX];
    b_conv(b, "conv1", "image", widths[0], stem_k, stem_k, 2, 2, stem_k / 2, stem_k / 2, 1, 0);
    b_bn(b, "bn1", "conv1");
    b_unary(b, "relu", "relu", "bn1");
    b_pool(b, "maxpool", "maxpool", "relu", 3, 2, 1, 1);
    rd_strlcpy(cur, "maxpool", sizeof cur);
    int cin = widths[0];
    for (int l = 0; l < 4; l++)
        for (int k = 0; k < blocks[l]; k++) {
            int stride = (l > 0 && k == 0) ? 2 : 1, w = widths[l];
            char p[64];
            snprintf(p, sizeof p, "layer%d.%d", l + 1, k);
            snprintf(n1, sizeof n1, "%s.conv1", p);
            b_conv(b, n1, cur, w, 3, 3, stride, stride, 1, 1, 1, 0);
            snprintf(n2, sizeof n2, "%s.bn1", p);
            b_bn(b, n2, n1);
            snprintf(n3, sizeof n3, "%s.relu1", p);
            b_unary(b, n3, "relu", n2);
            snprintf(n1, sizeof n1, "%s.conv2", p);
            b_conv(b, n1, n3, w, 3, 3, 1, 1, 1, 1, 1, 0);
            snprintf(n2, sizeof n2, "%s.bn2", p);
            /* A small scale on the last norm of each residual branch (Goyal et al.'s zero
             * init, softened) keeps the random network's activations from doubling in
             * variance at every block, so its scores are not all saturated. */
            b_bn_range(b, n2, n1, 0.1, 0.3);
            rd_strlcpy(sc, cur, sizeof sc);
            if (stride != 1 || cin != w) {
                snprintf(n1, sizeof n1, "%s.downsample.0", p);
                b_conv(b, n1, cur, w, 1, 1, stride, stride, 0, 0, 1, 0);
                snprintf(sc, sizeof sc, "%s.downsample.1", p);
                b_bn(b, sc, n1);
            }
            const char *ins[2] = {n2, sc};
            snprintf(n3, sizeof n3, "%s.add", p);
            b_multi(b, n3, "add", ins, 2);
            snprintf(cur, sizeof cur, "%s.relu2", p);
            b_unary(b, cur, "relu", n3);
            cin = w;
        }
    b_unary(b, "avgpool", "gap", cur);
    b_unary(b, "embedding", "l2norm", "avgpool");
    b_linear(b, "fc", "avgpool", 14);
    b_unary(b, "scores", "sigmoid", "fc");
}

/* Every op, odd sizes, grouped, depthwise and non-square convolutions, standalone batch norm
 * and activations that cannot be fused: the network the cross-check tests use. */
static void arch_opzoo(builder *b)
{
    b_conv(b, "c1", "image", 8, 3, 3, 1, 1, 1, 1, 2, 1);
    b_bn(b, "b1", "c1");
    b_unary(b, "r1", "relu", "b1");
    b_conv(b, "dw", "r1", 8, 3, 3, 2, 2, 1, 1, 8, 1);
    b_unary(b, "s1", "silu", "dw");
    b_conv(b, "pw", "s1", 12, 1, 1, 1, 1, 0, 0, 1, 0);
    b_bn(b, "b2", "pw");
    b_pool(b, "mp", "maxpool", "r1", 3, 2, 1, 1);
    const char *cat_in[2] = {"b2", "mp"};
    b_multi(b, "cat", "concat", cat_in, 2);
    b_bn(b, "b3", "cat");
    b_unary(b, "s2", "silu", "b3");
    b_pool(b, "ap", "avgpool", "s2", 3, 2, 1, 1);
    b_conv(b, "c2", "ap", 16, 5, 3, 1, 1, 2, 1, 1, 0);
    b_conv(b, "c3", "ap", 16, 1, 1, 1, 1, 0, 0, 4, 1);
    b_unary(b, "r2", "relu", "c3");
    const char *add_in[2] = {"c2", "r2"};
    b_multi(b, "add1", "add", add_in, 2);
    b_unary(b, "r3", "relu", "add1");
    b_pool(b, "ap2", "avgpool", "r3", 3, 1, 1, 0);
    b_unary(b, "sg", "sigmoid", "ap2");
    b_unary(b, "r4", "relu", "ap2");
    const char *add2_in[3] = {"sg", "r4", "ap2"};
    b_multi(b, "add2", "add", add2_in, 3);
    b_conv(b, "c4", "add2", 24, 3, 3, 2, 2, 0, 0, 1, 1);
    b_unary(b, "gap", "gap", "c4");
    b_linear(b, "el", "c4", 32);
    b_unary(b, "es", "silu", "el");
    b_unary(b, "embedding", "l2norm", "es");
    b_linear(b, "fc", "gap", 14);
    b_unary(b, "scores", "sigmoid", "fc");
}

rd_status rd_nn_model_init(const char *arch, uint64_t seed, const char *dir, rd_error *err)
{
    builder b;
    cJSON *root = NULL, *o;
    char *json = NULL, path[4096], version[RD_NN_NAME_MAX];
    void *st_bytes = NULL;
    size_t st_len = 0;
    rd_status st = RD_OK;
    int in_c, in_h, in_w;
    double mean[3], sd[3];

    memset(&b, 0, sizeof b);
    b.rng = seed;
    if (strcmp(arch, "resnet-small") == 0) {
        in_c = 1, in_h = in_w = 256, mean[0] = 0.5, sd[0] = 0.25;
    } else if (strcmp(arch, "resnet18") == 0) {
        in_c = 3, in_h = in_w = 224;
        mean[0] = 0.485, mean[1] = 0.456, mean[2] = 0.406;
        sd[0] = 0.229, sd[1] = 0.224, sd[2] = 0.225;
    } else if (strcmp(arch, "opzoo") == 0) {
        in_c = 2, in_h = 19, in_w = 21, mean[0] = 0.5, mean[1] = 0.4, sd[0] = 0.25, sd[1] = 0.3;
    } else {
        return rd_error_set(err, RD_E_INVALID,
                            "unknown architecture '%s' (resnet-small, resnet18, opzoo)", arch);
    }
    root = cJSON_CreateObject();
    if (!root)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    snprintf(version, sizeof version, "%s-random-seed%llu", arch, (unsigned long long)seed);
    cJSON_AddStringToObject(root, "format", RD_NN_FORMAT);
    cJSON_AddNumberToObject(root, "format_version", RD_NN_FORMAT_VERSION);
    cJSON_AddStringToObject(root, "name", arch);
    cJSON_AddStringToObject(root, "version", version);
    cJSON_AddStringToObject(root, "weights", "model.safetensors");
    o = cJSON_AddObjectToObject(root, "input");
    if (o) {
        cJSON_AddStringToObject(o, "name", "image");
        cJSON_AddNumberToObject(o, "channels", in_c);
        cJSON_AddNumberToObject(o, "height", in_h);
        cJSON_AddNumberToObject(o, "width", in_w);
    }
    o = cJSON_AddObjectToObject(root, "preprocessing");
    if (o) {
        cJSON_AddStringToObject(o, "resize",
                                "area average when shrinking, bilinear when "
                                "growing, to input height x width");
        cJSON_AddStringToObject(o, "pixels",
                                "gray in [0, 1], brighter = denser; copied to "
                                "every input channel; then (x - mean) / std");
        cJSON_AddItemToObject(o, "mean", cJSON_CreateDoubleArray(mean, in_c));
        cJSON_AddItemToObject(o, "std", cJSON_CreateDoubleArray(sd, in_c));
    }
    cJSON_AddItemToObject(root, "labels", cJSON_CreateStringArray(findings, 14));
    o = cJSON_AddObjectToObject(root, "outputs");
    if (o) {
        cJSON_AddStringToObject(o, "embedding", "embedding");
        cJSON_AddStringToObject(o, "scores", "scores");
        if (strcmp(arch, "opzoo") == 0)
            cJSON_AddStringToObject(o, "features", "gap");
    }
    b.graph = cJSON_AddArrayToObject(root, "graph");
    if (!b.graph) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    b_add_shape(&b, "image", in_c, in_h, in_w);
    if (strcmp(arch, "resnet-small") == 0) {
        static const int widths[4] = {32, 64, 128, 256}, blocks[4] = {2, 2, 2, 2};
        arch_resnet(&b, widths, blocks, 7);
    } else if (strcmp(arch, "resnet18") == 0) {
        static const int widths[4] = {64, 128, 256, 512}, blocks[4] = {2, 2, 2, 2};
        arch_resnet(&b, widths, blocks, 7);
    } else {
        arch_opzoo(&b);
    }
    o = cJSON_AddObjectToObject(root, "training");
    if (o) {
        cJSON_AddStringToObject(o, "recipe", "untrained: He-normal random initialization");
        cJSON_AddNumberToObject(o, "seed", (double)seed);
    }
    cJSON_AddObjectToObject(root, "metrics");
    if (b.failed) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory building '%s'", arch);
        goto out;
    }
    json = cJSON_Print(root);
    if (!json) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    if ((st = rd_nn_safetensors_encode(b.tensors, b.n_tensors, &st_bytes, &st_len, err)) ||
        (st = rd_mkdirs(dir, err)))
        goto out;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((st = rd_write_file_atomic(path, st_bytes, st_len, err)) != RD_OK)
        goto out;
    snprintf(path, sizeof path, "%s/model.json", dir);
    st = rd_write_file_atomic(path, json, strlen(json), err);
out:
    for (int i = 0; i < b.n_tensors; i++) {
        free((void *)b.tensors[i].name);
        free((void *)b.tensors[i].data);
    }
    free(b.tensors);
    free(b.shapes);
    free(json);
    free(st_bytes);
    cJSON_Delete(root);
    return st;
}
