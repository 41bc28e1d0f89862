/* radraft — model files: the JSON description, safetensors weights, validation, and the
 * load-time rewrites (batch norm folded into the preceding convolution, activations fused
 * into the op before them).
 *
 * Everything read here comes from outside: lengths are checked against the bytes actually
 * present before anything is read or allocated, every number is range-checked, and every
 * failure names the file and the field. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/nn_int.h"
#include "base/util.h"

static const char *const op_names[RD_NN_OP_COUNT] = {
    "input",   "conv2d", "batchnorm", "relu",   "silu",   "sigmoid", "maxpool",
    "avgpool", "gap",    "add",       "concat", "linear", "l2norm",
};

const char *rd_nn_op_name(rd_nn_op op)
{
    return (unsigned)op < RD_NN_OP_COUNT ? op_names[op] : "?";
}

/* safetensors ---------------------------------------------------------------------------- */

typedef enum st_dtype { ST_F32, ST_F16 } st_dtype;

typedef struct st_tensor {
    const char *name; /* points into the parsed header, valid while it lives */
    st_dtype dtype;
    int ndim;
    int64_t shape[8];
    size_t numel;
    size_t begin, end; /* byte offsets in the data section */
    const unsigned char *data;
    int used;
} st_tensor;

typedef struct st_file {
    const char *origin;
    cJSON *header;
    st_tensor *t;
    int n;
} st_file;

static void st_file_clear(st_file *sf)
{
    cJSON_Delete(sf->header);
    free(sf->t);
    memset(sf, 0, sizeof *sf);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_tensor_begin(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* A JSON number that is an integer in [0, max] (doubles hold integers exactly to 2^53). */
static int json_uint(const cJSON *v, double max, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= max) || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

static rd_status st_parse(st_file *sf, const unsigned char *buf, size_t len, const char *origin,
                          rd_error *err)
{
    uint64_t hlen = 0;
    size_t data_len;
    const cJSON *item;
    st_tensor **by_offset = NULL;
    rd_status st = RD_OK;
    int cap = 0;

    memset(sf, 0, sizeof *sf);
    sf->origin = origin;
    if (len < 8)
        return rd_error_set(err, RD_E_MODEL, "%s: %zu bytes, shorter than the 8-byte header length",
                            origin, len);
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > len - 8)
        return rd_error_set(err, RD_E_MODEL,
                            "%s: header length %llu exceeds the %zu bytes after it", origin,
                            (unsigned long long)hlen, len - 8);
    if (hlen > RD_NN_MAX_HEADER_BYTES)
        return rd_error_set(err, RD_E_MODEL, "%s: header length %llu exceeds the limit %zu", origin,
                            (unsigned long long)hlen, RD_NN_MAX_HEADER_BYTES);
    if (hlen < 2)
        return rd_error_set(err, RD_E_MODEL, "%s: header of %llu bytes is not a JSON object",
                            origin, (unsigned long long)hlen);
    data_len = len - 8 - (size_t)hlen;
    sf->header = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!sf->header)
        return rd_error_set(err, RD_E_MODEL, "%s: the header is not valid JSON", origin);
    if (!cJSON_IsObject(sf->header)) {
        st = rd_error_set(err, RD_E_MODEL, "%s: the header is not a JSON object", origin);
        goto out;
    }
    cJSON_ArrayForEach(item, sf->header) cap++;
    if (cap > RD_NN_MAX_TENSORS) {
        st = rd_error_set(err, RD_E_MODEL, "%s: %d tensors exceed the limit %d", origin, cap,
                          RD_NN_MAX_TENSORS);
        goto out;
    }
    sf->t = calloc((size_t)cap + 1, sizeof *sf->t);
    if (!sf->t) {
        st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", origin);
        goto out;
    }
    cJSON_ArrayForEach(item, sf->header)
    {
        const char *name = item->string ? item->string : "";
        st_tensor *t = &sf->t[sf->n];
        const cJSON *dtype, *shape, *offs, *dim;
        uint64_t b = 0, e = 0;
        size_t elem, bytes;

        if (strcmp(name, "__metadata__") == 0)
            continue; /* free-form strings; radraft keeps its metadata in the JSON */
        if (!cJSON_IsObject(item)) {
            st = rd_error_set(err, RD_E_MODEL, "%s: tensor '%s' is not an object", origin, name);
            goto out;
        }
        dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
        shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
        offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
        if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs)) {
            st = rd_error_set(err, RD_E_MODEL, "%s: tensor '%s' lacks dtype, shape or data_offsets",
                              origin, name);
            goto out;
        }
        if (strcmp(dtype->valuestring, "F32") == 0) {
            t->dtype = ST_F32;
            elem = 4;
        } else if (strcmp(dtype->valuestring, "F16") == 0) {
            t->dtype = ST_F16;
            elem = 2;
        } else {
            st = rd_error_set(err, RD_E_MODEL,
                              "%s: tensor '%s' has dtype %s (only F32 and F16 are supported)",
                              origin, name, dtype->valuestring);
            goto out;
        }
        t->name = name;
        t->numel = 1;
        cJSON_ArrayForEach(dim, shape)
        {
            uint64_t d = 0;
            if (t->ndim >= 8 || !json_uint(dim, (double)INT32_MAX, &d) ||
                !rd_mul_size(t->numel, (size_t)d, &t->numel)) {
                st = rd_error_set(err, RD_E_MODEL, "%s: tensor '%s' has an invalid shape", origin,
                                  name);
                goto out;
            }
            t->shape[t->ndim++] = (int64_t)d;
        }
        if (cJSON_GetArraySize(offs) != 2 || !json_uint(cJSON_GetArrayItem(offs, 0), 9e15, &b) ||
            !json_uint(cJSON_GetArrayItem(offs, 1), 9e15, &e) || b > e || e > data_len) {
            st = rd_error_set(err, RD_E_MODEL,
                              "%s: tensor '%s' has data_offsets outside the %zu data bytes", origin,
                              name, data_len);
            goto out;
        }
        if (!rd_mul_size(t->numel, elem, &bytes) || bytes != e - b) {
            st = rd_error_set(err, RD_E_MODEL,
                              "%s: tensor '%s' spans %llu bytes but its shape needs %zu x %zu",
                              origin, name, (unsigned long long)(e - b), t->numel, elem);
            goto out;
        }
        t->begin = (size_t)b;
        t->end = (size_t)e;
        t->data = buf + 8 + hlen + b;
        sf->n++;
    }
    /* Names must be unique (JSON allows duplicate keys; safetensors does not). */
    qsort(sf->t, (size_t)sf->n, sizeof *sf->t, cmp_tensor_name);
    for (int i = 1; i < sf->n; i++)
        if (strcmp(sf->t[i - 1].name, sf->t[i].name) == 0) {
            st = rd_error_set(err, RD_E_MODEL, "%s: tensor '%s' appears twice", origin,
                              sf->t[i].name);
            goto out;
        }
    /* Tensors must not overlap: each byte of data belongs to at most one tensor. */
    by_offset = malloc(((size_t)sf->n + 1) * sizeof *by_offset);
    if (!by_offset) {
        st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", origin);
        goto out;
    }
    for (int i = 0; i < sf->n; i++)
        by_offset[i] = &sf->t[i];
    qsort(by_offset, (size_t)sf->n, sizeof *by_offset, cmp_tensor_begin);
    for (int i = 1; i < sf->n; i++)
        if (by_offset[i]->begin < by_offset[i - 1]->end) {
            st = rd_error_set(err, RD_E_MODEL, "%s: tensors '%s' and '%s' overlap", origin,
                              by_offset[i - 1]->name, by_offset[i]->name);
            goto out;
        }
out:
    free(by_offset);
    if (st != RD_OK)
        st_file_clear(sf);
    return st;
}

static st_tensor *st_find(st_file *sf, const char *name)
{
    st_tensor key;
    key.name = name;
    return bsearch(&key, sf->t, (size_t)sf->n, sizeof *sf->t, cmp_tensor_name);
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    float f;
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24. */
        f = ldexpf((float)mant, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Copies a tensor out as float32, converting from little-endian F32 or F16. */
static void st_copy(const st_tensor *t, float *dst)
{
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->numel; i++) {
        if (t->dtype == ST_F32) {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(&dst[i], &u, sizeof u);
        } else {
            dst[i] = half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        }
    }
}

/* Takes the tensor `node.suffix`, which must have exactly the expected shape, as floats
 * owned by the caller. */
static rd_status take_param(st_file *sf, const char *ctx, const char *node, const char *suffix,
                            int ndim, const int64_t *shape, float **out, rd_error *err)
{
    char name[RD_NN_NAME_MAX + 32];
    st_tensor *t;
    size_t n = 1;
    snprintf(name, sizeof name, "%s.%s", node, suffix);
    t = st_find(sf, name);
    if (!t)
        return rd_error_set(err, RD_E_MODEL, "%s: tensor '%s' is missing from %s", ctx, name,
                            sf->origin);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) {
        same = t->shape[i] == shape[i];
        n *= (size_t)shape[i];
    }
    if (!same) {
        char want[96] = "", got[96] = "";
        size_t wl = 0, gl = 0;
        for (int i = 0; i < ndim && wl < sizeof want; i++)
            wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s%lld", i ? "," : "",
                                   (long long)shape[i]);
        for (int i = 0; i < t->ndim && gl < sizeof got; i++)
            gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%lld", i ? "," : "",
                                   (long long)t->shape[i]);
        return rd_error_set(err, RD_E_MODEL, "%s: tensor '%s' has shape [%s], expected [%s]", ctx,
                            name, got, want);
    }
    float *buf = malloc((n ? n : 1) * sizeof *buf);
    if (!buf)
        return rd_error_set(err, RD_E_NOMEM, "%s: out of memory for '%s'", ctx, name);
    st_copy(t, buf);
    t->used = 1;
    *out = buf;
    return RD_OK;
}

/* JSON description ----------------------------------------------------------------------- */

#define NO_DEFAULT INT_MIN

/* An integer attribute in [lo, hi]; `def` when absent (NO_DEFAULT: required). */
static rd_status j_int(const cJSON *obj, const char *key, int def, int lo, int hi, int *out,
                       const char *ctx, rd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (def == NO_DEFAULT)
            return rd_error_set(err, RD_E_MODEL, "%s: '%s' is missing", ctx, key);
        *out = def;
        return RD_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        !(v->valuedouble >= lo && v->valuedouble <= hi))
        return rd_error_set(err, RD_E_MODEL, "%s: '%s' must be an integer in [%d, %d]", ctx, key,
                            lo, hi);
    *out = (int)v->valuedouble;
    return RD_OK;
}

/* A pair attribute given as one integer or [a, b]. */
static rd_status j_pair(const cJSON *obj, const char *key, int def, int lo, int hi, int out[2],
                        const char *ctx, rd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v && cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) != 2)
            return rd_error_set(err, RD_E_MODEL, "%s: '%s' must be an integer or a pair", ctx, key);
        for (int i = 0; i < 2; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) ||
                !(e->valuedouble >= lo && e->valuedouble <= hi))
                return rd_error_set(err, RD_E_MODEL, "%s: '%s' must hold integers in [%d, %d]", ctx,
                                    key, lo, hi);
            out[i] = (int)e->valuedouble;
        }
        return RD_OK;
    }
    rd_status st = j_int(obj, key, def, lo, hi, &out[0], ctx, err);
    out[1] = out[0];
    return st;
}

static rd_status j_bool(const cJSON *obj, const char *key, int def, int *out, const char *ctx,
                        rd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        *out = def;
        return RD_OK;
    }
    if (!cJSON_IsBool(v))
        return rd_error_set(err, RD_E_MODEL, "%s: '%s' must be true or false", ctx, key);
    *out = cJSON_IsTrue(v);
    return RD_OK;
}

static rd_status j_float(const cJSON *obj, const char *key, double def, double lo, double hi,
                         float *out, const char *ctx, rd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        *out = (float)def;
        return RD_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return rd_error_set(err, RD_E_MODEL, "%s: '%s' must be a number in [%g, %g]", ctx, key, lo,
                            hi);
    *out = (float)v->valuedouble;
    return RD_OK;
}

/* A short printable string (names, versions). */
static rd_status j_name(const cJSON *obj, const char *key, int required, char *dst, size_t size,
                        const char *ctx, rd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (required)
            return rd_error_set(err, RD_E_MODEL, "%s: '%s' is missing", ctx, key);
        dst[0] = '\0';
        return RD_OK;
    }
    if (!cJSON_IsString(v))
        return rd_error_set(err, RD_E_MODEL, "%s: '%s' must be a string", ctx, key);
    size_t n = strlen(v->valuestring);
    if (n == 0 || n >= size)
        return rd_error_set(err, RD_E_MODEL, "%s: '%s' must have 1 to %zu characters", ctx, key,
                            size - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v->valuestring[i] < 0x20 || v->valuestring[i] == 0x7f)
            return rd_error_set(err, RD_E_MODEL, "%s: '%s' holds a control character", ctx, key);
    memcpy(dst, v->valuestring, n + 1);
    return RD_OK;
}

static int find_node(const rd_nn_model *m, int before, const char *name)
{
    for (int i = 0; i < before; i++)
        if (strcmp(m->nodes[i].name, name) == 0)
            return i;
    return -1;
}

static rd_status check_act_size(const rd_nn_node *nd, const char *ctx, rd_error *err)
{
    size_t n;
    if (nd->c < 1 || nd->h < 1 || nd->w < 1)
        return rd_error_set(err, RD_E_MODEL, "%s: output shape [%d,%d,%d] is empty", ctx, nd->c,
                            nd->h, nd->w);
    if (!rd_mul_size((size_t)nd->c, (size_t)nd->h, &n) || !rd_mul_size(n, (size_t)nd->w, &n) ||
        n > RD_NN_MAX_ACT_ELEMS)
        return rd_error_set(err, RD_E_MODEL, "%s: output shape [%d,%d,%d] exceeds the limit", ctx,
                            nd->c, nd->h, nd->w);
    return RD_OK;
}

/* Output size of a window sliding over `in` (PyTorch's floor rule). */
static int window_out(int in, int k, int s, int p)
{
    long span = (long)in + 2L * p - k;
    return span < 0 ? 0 : (int)(span / s + 1);
}

static rd_status parse_node(rd_nn_model *m, int idx, const cJSON *jn, st_file *sf,
                            const char *origin, int raw, rd_error *err)
{
    rd_nn_node *nd = &m->nodes[idx];
    char ctx[RD_NN_NAME_MAX + 96];
    char opname[32];
    const cJSON *inputs, *in, *shape;
    const rd_nn_node *x;
    rd_status st;
    int k[2], s[2], p[2], v;

    snprintf(ctx, sizeof ctx, "%s: graph[%d]", origin, idx - 1);
    if (!cJSON_IsObject(jn))
        return rd_error_set(err, RD_E_MODEL, "%s: not an object", ctx);
    if ((st = j_name(jn, "name", 1, nd->name, sizeof nd->name, ctx, err)) != RD_OK)
        return st;
    snprintf(ctx, sizeof ctx, "%s: graph[%d] '%s'", origin, idx - 1, nd->name);
    if (find_node(m, idx, nd->name) >= 0)
        return rd_error_set(err, RD_E_MODEL, "%s: the name is used twice", ctx);
    if ((st = j_name(jn, "op", 1, opname, sizeof opname, ctx, err)) != RD_OK)
        return st;
    nd->op = RD_NN_OP_COUNT;
    for (int i = 1; i < RD_NN_OP_COUNT; i++)
        if (strcmp(opname, op_names[i]) == 0)
            nd->op = (rd_nn_op)i;
    if (nd->op == RD_NN_OP_COUNT)
        return rd_error_set(err, RD_E_MODEL, "%s: unknown op '%s'", ctx, opname);

    inputs = cJSON_GetObjectItemCaseSensitive(jn, "inputs");
    if (!cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) < 1 ||
        cJSON_GetArraySize(inputs) > RD_NN_MAX_INPUTS)
        return rd_error_set(err, RD_E_MODEL, "%s: 'inputs' must list 1 to %d node names", ctx,
                            RD_NN_MAX_INPUTS);
    cJSON_ArrayForEach(in, inputs)
    {
        int j = cJSON_IsString(in) ? find_node(m, idx, in->valuestring) : -1;
        if (j < 0)
            return rd_error_set(err, RD_E_MODEL,
                                "%s: input '%s' is not the model input or an earlier node", ctx,
                                cJSON_IsString(in) ? in->valuestring : "?");
        nd->in[nd->n_in++] = j;
    }
    int want_inputs = (nd->op == RD_NN_OP_ADD || nd->op == RD_NN_OP_CONCAT) ? 0 : 1;
    if (want_inputs && nd->n_in != 1)
        return rd_error_set(err, RD_E_MODEL, "%s: %s takes exactly one input", ctx, opname);
    if (!want_inputs && nd->n_in < 2)
        return rd_error_set(err, RD_E_MODEL, "%s: %s takes two or more inputs", ctx, opname);
    x = &m->nodes[nd->in[0]];
    nd->c = x->c;
    nd->h = x->h;
    nd->w = x->w;

    switch (nd->op) {
    case RD_NN_OP_CONV2D: {
        int bias, dil[2];
        int64_t wshape[4], bshape[1];
        if ((st = j_int(jn, "out_channels", NO_DEFAULT, 1, 1 << 16, &nd->c, ctx, err)) ||
            (st = j_pair(jn, "kernel", NO_DEFAULT, 1, RD_NN_MAX_KERNEL, k, ctx, err)) ||
            (st = j_pair(jn, "stride", 1, 1, RD_NN_MAX_STRIDE, s, ctx, err)) ||
            (st = j_pair(jn, "padding", 0, 0, RD_NN_MAX_KERNEL, p, ctx, err)) ||
            (st = j_pair(jn, "dilation", 1, 1, 1, dil, ctx, err)) ||
            (st = j_int(jn, "groups", 1, 1, 1 << 16, &nd->groups, ctx, err)) ||
            (st = j_bool(jn, "bias", 0, &bias, ctx, err)))
            return st;
        if (x->c % nd->groups || nd->c % nd->groups)
            return rd_error_set(err, RD_E_MODEL,
                                "%s: groups %d does not divide input channels %d and output "
                                "channels %d",
                                ctx, nd->groups, x->c, nd->c);
        nd->kh = k[0], nd->kw = k[1], nd->sh = s[0], nd->sw = s[1], nd->ph = p[0], nd->pw = p[1];
        nd->h = window_out(x->h, k[0], s[0], p[0]);
        nd->w = window_out(x->w, k[1], s[1], p[1]);
        wshape[0] = nd->c, wshape[1] = x->c / nd->groups, wshape[2] = k[0], wshape[3] = k[1];
        bshape[0] = nd->c;
        if ((st = check_act_size(nd, ctx, err)) ||
            (st = take_param(sf, ctx, nd->name, "weight", 4, wshape, &nd->weight, err)))
            return st;
        if (bias && (st = take_param(sf, ctx, nd->name, "bias", 1, bshape, &nd->bias, err)))
            return st;
        break;
    }
    case RD_NN_OP_BATCHNORM: {
        int64_t cshape[1] = {nd->c};
        float *mean = NULL, *var = NULL;
        if ((st = j_float(jn, "eps", 1e-5, 1e-12, 1.0, &nd->eps, ctx, err)) ||
            (st = take_param(sf, ctx, nd->name, "weight", 1, cshape, &nd->weight, err)) ||
            (st = take_param(sf, ctx, nd->name, "bias", 1, cshape, &nd->bias, err)) ||
            (st = take_param(sf, ctx, nd->name, "running_mean", 1, cshape, &mean, err)) ||
            (st = take_param(sf, ctx, nd->name, "running_var", 1, cshape, &var, err))) {
            free(mean);
            return st;
        }
        /* Stored as scale and shift from here on: y = x * scale + shift (unless raw). */
        for (int c = 0; c < nd->c; c++) {
            double sc;
            if (!(var[c] >= 0) || !isfinite(var[c])) {
                double bad = var[c];
                free(mean);
                free(var);
                return rd_error_set(err, RD_E_MODEL, "%s: running_var[%d] is %g", ctx, c, bad);
            }
            if (raw)
                continue;
            sc = (double)nd->weight[c] / sqrt((double)var[c] + nd->eps);
            nd->bias[c] = (float)((double)nd->bias[c] - (double)mean[c] * sc);
            nd->weight[c] = (float)sc;
        }
        if (raw) {
            nd->mean = mean;
            nd->var = var;
            break;
        }
        free(mean);
        free(var);
        break;
    }
    case RD_NN_OP_RELU:
    case RD_NN_OP_SILU:
    case RD_NN_OP_SIGMOID:
        break;
    case RD_NN_OP_MAXPOOL:
    case RD_NN_OP_AVGPOOL:
        if ((st = j_pair(jn, "kernel", NO_DEFAULT, 1, RD_NN_MAX_KERNEL, k, ctx, err)) ||
            (st = j_pair(jn, "stride", 0, 0, RD_NN_MAX_STRIDE, s, ctx, err)) ||
            (st = j_pair(jn, "padding", 0, 0, RD_NN_MAX_KERNEL, p, ctx, err)) ||
            (st = j_bool(jn, "count_include_pad", 1, &nd->count_include_pad, ctx, err)))
            return st;
        if (s[0] == 0)
            s[0] = k[0];
        if (s[1] == 0)
            s[1] = k[1];
        /* PyTorch's rule: a window never lies entirely in the padding. */
        if (2 * p[0] > k[0] || 2 * p[1] > k[1])
            return rd_error_set(err, RD_E_MODEL, "%s: padding exceeds half the kernel", ctx);
        nd->kh = k[0], nd->kw = k[1], nd->sh = s[0], nd->sw = s[1], nd->ph = p[0], nd->pw = p[1];
        nd->h = window_out(x->h, k[0], s[0], p[0]);
        nd->w = window_out(x->w, k[1], s[1], p[1]);
        break;
    case RD_NN_OP_GAP:
        nd->h = nd->w = 1;
        break;
    case RD_NN_OP_ADD:
        for (int i = 1; i < nd->n_in; i++) {
            const rd_nn_node *y = &m->nodes[nd->in[i]];
            if (y->c != x->c || y->h != x->h || y->w != x->w)
                return rd_error_set(err, RD_E_MODEL,
                                    "%s: input '%s' has shape [%d,%d,%d], '%s' has [%d,%d,%d]", ctx,
                                    y->name, y->c, y->h, y->w, x->name, x->c, x->h, x->w);
        }
        break;
    case RD_NN_OP_CONCAT:
        if ((st = j_int(jn, "axis", 1, 1, 1, &v, ctx, err)) != RD_OK)
            return st;
        for (int i = 1; i < nd->n_in; i++) {
            const rd_nn_node *y = &m->nodes[nd->in[i]];
            if (y->h != x->h || y->w != x->w)
                return rd_error_set(err, RD_E_MODEL, "%s: input '%s' is %dx%d, '%s' is %dx%d", ctx,
                                    y->name, y->h, y->w, x->name, x->h, x->w);
            nd->c += y->c;
        }
        break;
    case RD_NN_OP_LINEAR: {
        int bias;
        int64_t wshape[2], bshape[1];
        if ((st = j_int(jn, "out_features", NO_DEFAULT, 1, 1 << 20, &nd->c, ctx, err)) ||
            (st = j_bool(jn, "bias", 1, &bias, ctx, err)))
            return st;
        nd->h = nd->w = 1;
        wshape[0] = nd->c;
        wshape[1] = (int64_t)x->c * x->h * x->w;
        bshape[0] = nd->c;
        if ((st = take_param(sf, ctx, nd->name, "weight", 2, wshape, &nd->weight, err)))
            return st;
        if (bias && (st = take_param(sf, ctx, nd->name, "bias", 1, bshape, &nd->bias, err)))
            return st;
        break;
    }
    case RD_NN_OP_L2NORM:
        if ((st = j_float(jn, "eps", 1e-12, 0, 1.0, &nd->eps, ctx, err)) != RD_OK)
            return st;
        break;
    case RD_NN_OP_INPUT:
    case RD_NN_OP_COUNT:
        return rd_error_set(err, RD_E_MODEL, "%s: op '%s' cannot appear in the graph", ctx, opname);
    }
    if ((st = check_act_size(nd, ctx, err)) != RD_OK)
        return st;
    /* The description states each node's output shape; it must be what the ops give. */
    shape = cJSON_GetObjectItemCaseSensitive(jn, "shape");
    if (shape) {
        int got[3] = {0, 0, 0};
        int ok = cJSON_IsArray(shape) && cJSON_GetArraySize(shape) == 3;
        for (int i = 0; ok && i < 3; i++) {
            const cJSON *e = cJSON_GetArrayItem(shape, i);
            ok = cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble <= INT_MAX;
            if (ok)
                got[i] = (int)e->valuedouble;
        }
        if (!ok || got[0] != nd->c || got[1] != nd->h || got[2] != nd->w)
            return rd_error_set(err, RD_E_MODEL,
                                "%s: stated shape does not match the computed [%d,%d,%d]", ctx,
                                nd->c, nd->h, nd->w);
    }
    return RD_OK;
}

/* Load-time rewrites ---------------------------------------------------------------------- */

static int resolve(const rd_nn_model *m, int i)
{
    while (m->nodes[i].dead)
        i = m->nodes[i].replaced_by;
    return i;
}

/* Removes node `dead`, whose output `into` now provides; `uses` counts the readers of each
 * live node's output, and the readers of `dead` become readers of `into`. */
static void kill_node(rd_nn_model *m, int *uses, int dead, int into)
{
    rd_nn_node *nd = &m->nodes[dead];
    uses[into] += uses[dead] - 1;
    nd->dead = 1;
    nd->replaced_by = into;
    free(nd->weight);
    free(nd->bias);
    nd->weight = nd->bias = NULL;
}

/* Folds a batch norm into the convolution before it (when nothing else reads the
 * convolution's output), then fuses ReLU/SiLU into the op before it, so that inference
 * makes one pass over memory where the description has two or three. */
static rd_status rewrite(rd_nn_model *m, rd_error *err)
{
    /* Readers of each node's output; a graph output counts as many readers, so that it is
     * never folded away. Kept up to date by kill_node: the pass stays linear in the graph. */
    int *uses = calloc((size_t)m->n_nodes, sizeof *uses);
    if (!uses)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    for (int i = 0; i < m->n_nodes; i++)
        for (int j = 0; j < m->nodes[i].n_in; j++)
            uses[m->nodes[i].in[j]]++;
    for (int o = 0; o < m->n_outputs; o++)
        uses[m->outputs[o].node] += 2;
    for (int i = 1; i < m->n_nodes; i++) {
        rd_nn_node *bn = &m->nodes[i];
        int pi = resolve(m, bn->in[0]);
        rd_nn_node *cv = &m->nodes[pi];
        if (bn->op != RD_NN_OP_BATCHNORM || cv->op != RD_NN_OP_CONV2D ||
            cv->act != RD_NN_ACT_NONE || uses[pi] != 1)
            continue;
        size_t per = (size_t)(m->nodes[resolve(m, cv->in[0])].c / cv->groups) * (size_t)cv->kh *
                     (size_t)cv->kw;
        if (!cv->bias) {
            cv->bias = calloc((size_t)cv->c, sizeof *cv->bias);
            if (!cv->bias) {
                free(uses);
                return rd_error_set(err, RD_E_NOMEM, "out of memory folding '%s'", bn->name);
            }
        }
        for (int o = 0; o < cv->c; o++) {
            for (size_t j = 0; j < per; j++)
                cv->weight[(size_t)o * per + j] *= bn->weight[o];
            cv->bias[o] = cv->bias[o] * bn->weight[o] + bn->bias[o];
        }
        kill_node(m, uses, i, pi);
    }
    for (int i = 1; i < m->n_nodes; i++) {
        rd_nn_node *a = &m->nodes[i];
        if (a->dead || (a->op != RD_NN_OP_RELU && a->op != RD_NN_OP_SILU))
            continue;
        int pi = resolve(m, a->in[0]);
        rd_nn_node *prev = &m->nodes[pi];
        if ((prev->op != RD_NN_OP_CONV2D && prev->op != RD_NN_OP_ADD &&
             prev->op != RD_NN_OP_BATCHNORM && prev->op != RD_NN_OP_LINEAR) ||
            prev->act != RD_NN_ACT_NONE || uses[pi] != 1)
            continue;
        prev->act = a->op == RD_NN_OP_RELU ? RD_NN_ACT_RELU : RD_NN_ACT_SILU;
        kill_node(m, uses, i, pi);
    }
    free(uses);
    for (int i = 0; i < m->n_nodes; i++)
        for (int j = 0; j < m->nodes[i].n_in; j++)
            m->nodes[i].in[j] = resolve(m, m->nodes[i].in[j]);
    for (int o = 0; o < m->n_outputs; o++)
        m->outputs[o].node = resolve(m, m->outputs[o].node);
    return RD_OK;
}

/* The whole model ------------------------------------------------------------------------- */

void rd_nn_model_free(rd_nn_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_nodes; i++) {
        free(m->nodes[i].weight);
        free(m->nodes[i].bias);
        free(m->nodes[i].mean);
        free(m->nodes[i].var);
    }
    free(m->nodes);
    if (m->labels)
        for (int i = 0; i < m->info.n_labels; i++)
            free(m->labels[i]);
    free(m->labels);
    free(m);
}

const rd_nn_info *rd_nn_model_info(const rd_nn_model *m)
{
    return &m->info;
}

static rd_status parse_preproc(rd_nn_model *m, const cJSON *root, const char *origin, rd_error *err)
{
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "preprocessing");
    const char *keys[2] = {"mean", "std"};
    float *dst[2] = {m->info.mean, m->info.std};
    if (!cJSON_IsObject(pre))
        return rd_error_set(err, RD_E_MODEL, "%s: 'preprocessing' must be an object", origin);
    for (int k = 0; k < 2; k++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(pre, keys[k]);
        int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
        if (n != 1 && n != m->info.in_channels)
            return rd_error_set(err, RD_E_MODEL, "%s: preprocessing '%s' must list 1 or %d numbers",
                                origin, keys[k], m->info.in_channels);
        for (int c = 0; c < m->info.in_channels; c++) {
            const cJSON *e = cJSON_GetArrayItem(arr, n == 1 ? 0 : c);
            double lo = k == 0 ? -1e6 : 1e-8;
            if (!cJSON_IsNumber(e) || !(e->valuedouble >= lo && e->valuedouble <= 1e6))
                return rd_error_set(err, RD_E_MODEL,
                                    "%s: preprocessing '%s' holds a value outside [%g, 1e6]",
                                    origin, keys[k], lo);
            dst[k][c] = (float)e->valuedouble;
        }
    }
    return RD_OK;
}

static rd_status parse_labels(rd_nn_model *m, const cJSON *root, const char *origin, rd_error *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "labels"), *e;
    int n;
    if (!arr)
        return RD_OK;
    n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (n < 0 || n > RD_NN_MAX_LABELS)
        return rd_error_set(err, RD_E_MODEL, "%s: 'labels' must be a list of at most %d names",
                            origin, RD_NN_MAX_LABELS);
    m->labels = calloc((size_t)n + 1, sizeof *m->labels);
    if (!m->labels)
        return rd_error_set(err, RD_E_NOMEM, "%s: out of memory", origin);
    cJSON_ArrayForEach(e, arr)
    {
        size_t len = cJSON_IsString(e) ? strlen(e->valuestring) : 0;
        if (len == 0 || len >= RD_NN_NAME_MAX)
            return rd_error_set(err, RD_E_MODEL, "%s: label %d must be a name of 1 to %d bytes",
                                origin, m->info.n_labels, RD_NN_NAME_MAX - 1);
        m->labels[m->info.n_labels] = malloc(len + 1);
        if (!m->labels[m->info.n_labels])
            return rd_error_set(err, RD_E_NOMEM, "%s: out of memory", origin);
        memcpy(m->labels[m->info.n_labels++], e->valuestring, len + 1);
    }
    return RD_OK;
}

static rd_status parse_outputs(rd_nn_model *m, const cJSON *root, const char *origin, rd_error *err)
{
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(root, "outputs"), *o;
    if (!cJSON_IsObject(outs) || cJSON_GetArraySize(outs) < 1 ||
        cJSON_GetArraySize(outs) > RD_NN_MAX_OUTPUTS)
        return rd_error_set(err, RD_E_MODEL, "%s: 'outputs' must map 1 to %d keys to node names",
                            origin, RD_NN_MAX_OUTPUTS);
    cJSON_ArrayForEach(o, outs)
    {
        rd_nn_output *out = &m->outputs[m->n_outputs];
        size_t klen = strlen(o->string ? o->string : "");
        int node = cJSON_IsString(o) ? find_node(m, m->n_nodes, o->valuestring) : -1;
        if (klen == 0 || klen >= sizeof out->key)
            return rd_error_set(err, RD_E_MODEL, "%s: an output key is empty or too long", origin);
        if (node < 0)
            return rd_error_set(err, RD_E_MODEL, "%s: output '%s' names no node of the graph",
                                origin, o->string);
        memcpy(out->key, o->string, klen + 1);
        out->node = node;
        m->n_outputs++;
        const rd_nn_node *nd = &m->nodes[node];
        int size = nd->c * nd->h * nd->w;
        if (strcmp(out->key, "embedding") == 0)
            m->info.embedding_dim = size;
        if (strcmp(out->key, "scores") == 0 && size != m->info.n_labels)
            return rd_error_set(err, RD_E_MODEL,
                                "%s: output 'scores' has %d values but there are %d labels", origin,
                                size, m->info.n_labels);
    }
    return RD_OK;
}

static rd_status model_parse(rd_nn_model **out, const char *json, size_t json_len,
                             const void *weights, size_t weights_len, const char *origin, int raw,
                             rd_error *err)
{
    cJSON *root = NULL;
    const cJSON *graph, *input, *jn, *fmt;
    rd_nn_model *m = NULL;
    st_file sf;
    rd_status st;
    int fv = 0, n;

    memset(&sf, 0, sizeof sf);
    if (json_len > RD_NN_MAX_JSON_BYTES)
        return rd_error_set(err, RD_E_MODEL, "%s: description of %zu bytes exceeds %zu", origin,
                            json_len, RD_NN_MAX_JSON_BYTES);
    root = cJSON_ParseWithLength(json, json_len);
    if (!root)
        return rd_error_set(err, RD_E_MODEL, "%s: not valid JSON", origin);
    m = calloc(1, sizeof *m);
    if (!m) {
        st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", origin);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        st = rd_error_set(err, RD_E_MODEL, "%s: the description must be a JSON object", origin);
        goto out;
    }
    fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, RD_NN_FORMAT) != 0) {
        st = rd_error_set(err, RD_E_MODEL, "%s: 'format' is not \"%s\"", origin, RD_NN_FORMAT);
        goto out;
    }
    if ((st = j_int(root, "format_version", NO_DEFAULT, 1, 1000, &fv, origin, err)) != RD_OK)
        goto out;
    if (fv != RD_NN_FORMAT_VERSION) {
        st = rd_error_set(err, RD_E_MODEL, "%s: format_version %d is not supported (only %d)",
                          origin, fv, RD_NN_FORMAT_VERSION);
        goto out;
    }
    if ((st = j_name(root, "name", 0, m->name, sizeof m->name, origin, err)) ||
        (st = j_name(root, "version", 1, m->version, sizeof m->version, origin, err)))
        goto out;
    m->info.name = m->name;
    m->info.version = m->version;
    input = cJSON_GetObjectItemCaseSensitive(root, "input");
    graph = cJSON_GetObjectItemCaseSensitive(root, "graph");
    if (!cJSON_IsObject(input)) {
        st = rd_error_set(err, RD_E_MODEL, "%s: 'input' must be an object", origin);
        goto out;
    }
    n = cJSON_IsArray(graph) ? cJSON_GetArraySize(graph) : -1;
    if (n < 1 || n >= RD_NN_MAX_NODES) {
        st = rd_error_set(err, RD_E_MODEL, "%s: 'graph' must list 1 to %d nodes", origin,
                          RD_NN_MAX_NODES - 1);
        goto out;
    }
    m->nodes = calloc((size_t)n + 1, sizeof *m->nodes);
    if (!m->nodes) {
        st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", origin);
        goto out;
    }
    /* Node 0 is the model input. */
    {
        rd_nn_node *in0 = &m->nodes[0];
        char ictx[RD_NN_NAME_MAX + 32];
        snprintf(ictx, sizeof ictx, "%s: input", origin);
        in0->op = RD_NN_OP_INPUT;
        if ((st = j_name(input, "name", 1, in0->name, sizeof in0->name, ictx, err)) ||
            (st = j_int(input, "channels", NO_DEFAULT, 1, RD_NN_MAX_IN_CHANNELS, &in0->c, ictx,
                        err)) ||
            (st = j_int(input, "height", NO_DEFAULT, 1, RD_NN_MAX_DIM, &in0->h, ictx, err)) ||
            (st = j_int(input, "width", NO_DEFAULT, 1, RD_NN_MAX_DIM, &in0->w, ictx, err)))
            goto out;
        m->n_nodes = 1;
        m->info.in_channels = in0->c;
        m->info.in_height = in0->h;
        m->info.in_width = in0->w;
    }
    if ((st = parse_preproc(m, root, origin, err)) || (st = parse_labels(m, root, origin, err)))
        goto out;
    if (cJSON_GetObjectItemCaseSensitive(root, "training") &&
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "training"))) {
        st = rd_error_set(err, RD_E_MODEL, "%s: 'training' must be an object", origin);
        goto out;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "metrics") &&
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "metrics"))) {
        st = rd_error_set(err, RD_E_MODEL, "%s: 'metrics' must be an object", origin);
        goto out;
    }
    if ((st = st_parse(&sf, weights, weights_len, "weights", err)) != RD_OK) {
        rd_error_prefix(err, st, "%s", origin);
        goto out;
    }
    cJSON_ArrayForEach(jn, graph)
    {
        st = parse_node(m, m->n_nodes, jn, &sf, origin, raw, err);
        m->n_nodes++; /* count it even on failure so that its parameters are freed */
        if (st != RD_OK)
            goto out;
    }
    m->info.n_nodes = n;
    for (int i = 0; i < sf.n; i++) {
        if (!sf.t[i].used) {
            st = rd_error_set(err, RD_E_MODEL, "%s: weights tensor '%s' belongs to no node", origin,
                              sf.t[i].name);
            goto out;
        }
        m->info.n_params += sf.t[i].numel;
    }
    if ((st = parse_outputs(m, root, origin, err)) != RD_OK)
        goto out;
    if (m->info.n_labels > 0 && m->info.n_labels != 0 &&
        !cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "outputs"),
                                          "scores")) {
        st = rd_error_set(err, RD_E_MODEL, "%s: 'labels' are given but no 'scores' output", origin);
        goto out;
    }
    m->info.labels = (const char *const *)m->labels;
    if (!raw && (st = rewrite(m, err)) != RD_OK)
        goto out;
    *out = m;
    m = NULL;
out:
    st_file_clear(&sf);
    cJSON_Delete(root);
    rd_nn_model_free(m);
    return st;
}

rd_status rd_nn_model_parse(rd_nn_model **out, const char *json, size_t json_len,
                            const void *weights, size_t weights_len, const char *origin,
                            rd_error *err)
{
    return model_parse(out, json, json_len, weights, weights_len, origin, 0, err);
}

rd_status rd_nn_model_parse_raw(rd_nn_model **out, const char *json, size_t json_len,
                                const void *weights, size_t weights_len, const char *origin,
                                rd_error *err)
{
    return model_parse(out, json, json_len, weights, weights_len, origin, 1, err);
}

static rd_status model_load(rd_nn_model **out, const char *path, int raw, rd_error *err)
{
    char json_path[4096], weights_path[4096], dir[4096];
    char *json = NULL, *weights = NULL;
    size_t json_len = 0, weights_len = 0;
    cJSON *root = NULL;
    const cJSON *wname;
    rd_status st;
    size_t plen = strlen(path);

    if (plen >= sizeof dir - 16)
        return rd_error_set(err, RD_E_INVALID, "model path too long");
    if (plen >= 5 && strcmp(path + plen - 5, ".json") == 0) {
        const char *slash = strrchr(path, '/');
        rd_strlcpy(json_path, path, sizeof json_path);
        if (slash) {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = '\0';
        } else {
            rd_strlcpy(dir, ".", sizeof dir);
        }
    } else {
        rd_strlcpy(dir, path, sizeof dir);
        snprintf(json_path, sizeof json_path, "%s/model.json", path);
    }
    st = rd_read_file(json_path, RD_NN_MAX_JSON_BYTES, &json, &json_len, err);
    if (st != RD_OK)
        goto out;
    root = cJSON_ParseWithLength(json, json_len);
    wname = root ? cJSON_GetObjectItemCaseSensitive(root, "weights") : NULL;
    if (!cJSON_IsString(wname) || !wname->valuestring[0] || strchr(wname->valuestring, '/') ||
        strcmp(wname->valuestring, ".") == 0 || strcmp(wname->valuestring, "..") == 0 ||
        strlen(wname->valuestring) > 255) {
        st = rd_error_set(err, RD_E_MODEL, "%s: 'weights' must name a file beside the description",
                          json_path);
        goto out;
    }
    if (snprintf(weights_path, sizeof weights_path, "%s/%s", dir, wname->valuestring) >=
        (int)sizeof weights_path) {
        st = rd_error_set(err, RD_E_INVALID, "%s: weights path too long", json_path);
        goto out;
    }
    st = rd_read_file(weights_path, RD_NN_MAX_WEIGHTS_BYTES, &weights, &weights_len, err);
    if (st != RD_OK)
        goto out;
    st = model_parse(out, json, json_len, weights, weights_len, json_path, raw, err);
out:
    cJSON_Delete(root);
    free(json);
    free(weights);
    return st;
}

rd_status rd_nn_model_load(rd_nn_model **out, const char *path, rd_error *err)
{
    return model_load(out, path, 0, err);
}

rd_status rd_nn_model_load_raw(rd_nn_model **out, const char *path, rd_error *err)
{
    return model_load(out, path, 1, err);
}

rd_status rd_nn_model_json_path(const char *model, char *out, size_t size, rd_error *err)
{
    struct stat sb;
    int n = stat(model, &sb) == 0 && S_ISDIR(sb.st_mode)
                ? snprintf(out, size, "%s/model.json", model)
                : snprintf(out, size, "%s", model);
    if (n < 0 || (size_t)n >= size)
        return rd_error_set(err, RD_E_TOO_LARGE, "%s: model path too long", model);
    return RD_OK;
}

rd_status rd_nn_model_read_json(const char *model, char **text, size_t *len, rd_error *err)
{
    char path[4096 + 16];
    size_t n = 0;
    rd_status st = rd_nn_model_json_path(model, path, sizeof path, err);
    if (st == RD_OK)
        st = rd_read_file(path, RD_NN_MAX_JSON_BYTES, text, &n, err);
    if (st == RD_OK && len)
        *len = n;
    return st;
}
