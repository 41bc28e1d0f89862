/* radraft — the forward kernels shared by inference and training (see nn_ops.h).
 *
 * Convolutions are im2col + OpenBLAS sgemm on a tile of output positions per task, so that
 * the threads' tasks never share scratch memory; OpenBLAS runs single-threaded inside each
 * thread (the pool sets it so), which keeps the number of busy threads equal to the pool's. */
#include "nn/nn_ops.h"

#include <cblas.h>
#include <string.h>

#include "nn/nn_pool.h"

/* Upper bound on one thread's im2col tile (floats): 2 MiB keeps it in a core's L2/L3 share. */
#define IM2COL_TILE_FLOATS ((size_t)1 << 19)

static inline float act_apply(rd_nn_act act, float v)
{
    switch (act) {
    case RD_NN_ACT_NONE:
        return v;
    case RD_NN_ACT_RELU:
        return v > 0 ? v : 0;
    case RD_NN_ACT_SILU:
        return v / (1.0f + expf(-v));
    }
    return v;
}

/* Four floats at a time through GCC/Clang vector extensions: the build targets baseline
 * x86-64 at -O2, where the compiler does not vectorize these loops by itself. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void v4_store(float *p, v4f v)
{
    memcpy(p, &v, sizeof v);
}

static inline v4f v4_relu(v4f v)
{
    v4f zero = {0, 0, 0, 0};
    return (v4f)((v4i)v & (v4i)(v > zero));
}

/* y += bias, then the activation, in place. */
static void epilogue(float *y, size_t n, float bias, rd_nn_act act)
{
    v4f bv = {bias, bias, bias, bias};
    size_t i = 0;
    switch (act) {
    case RD_NN_ACT_NONE:
        if (bias == 0)
            return;
        for (; i + 4 <= n; i += 4)
            v4_store(y + i, v4_load(y + i) + bv);
        for (; i < n; i++)
            y[i] += bias;
        break;
    case RD_NN_ACT_RELU:
        for (; i + 4 <= n; i += 4)
            v4_store(y + i, v4_relu(v4_load(y + i) + bv));
        for (; i < n; i++) {
            float v = y[i] + bias;
            y[i] = v > 0 ? v : 0;
        }
        break;
    case RD_NN_ACT_SILU:
        for (; i < n; i++) {
            float v = y[i] + bias;
            y[i] = v / (1.0f + expf(-v));
        }
        break;
    }
}

/* Convolution ------------------------------------------------------------------------------ */

void rd__nn_im2col(const float *x, int cin, int h, int w, const rd_nn_node *nd, size_t p0,
                   size_t p1, float *col)
{
    size_t np = p1 - p0, ow = (size_t)nd->w;
    for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < nd->kh; ky++)
            for (int kx = 0; kx < nd->kw; kx++) {
                const float *plane = x + (size_t)ci * h * w;
                float *dst = col + ((size_t)(ci * nd->kh + ky) * nd->kw + kx) * np;
                size_t p = p0;
                while (p < p1) {
                    size_t oy = p / ow, ox = p % ow;
                    size_t seg = ow - ox < p1 - p ? ow - ox : p1 - p;
                    long iy = (long)oy * nd->sh - nd->ph + ky;
                    if (iy < 0 || iy >= h) {
                        memset(dst, 0, seg * sizeof *dst);
                    } else {
                        const float *src = plane + (size_t)iy * w;
                        long ix0 = (long)ox * nd->sw - nd->pw + kx, sw = nd->sw;
                        /* Columns j in [jlo, jhi) read inside the row; the others are
                         * padding. */
                        long jlo = ix0 >= 0 ? 0 : (-ix0 + sw - 1) / sw;
                        long jhi = ix0 >= w ? 0 : (w - 1 - ix0) / sw + 1;
                        if (jhi > (long)seg)
                            jhi = (long)seg;
                        if (jlo > jhi)
                            jlo = jhi;
                        for (long j = 0; j < jlo; j++)
                            dst[j] = 0.0f;
                        if (sw == 1) {
                            memcpy(dst + jlo, src + ix0 + jlo, (size_t)(jhi - jlo) * sizeof *dst);
                        } else {
                            const float *sp = src + ix0 + jlo * sw;
                            for (long j = jlo; j < jhi; j++, sp += sw)
                                dst[j] = *sp;
                        }
                        for (long j = jhi; j < (long)seg; j++)
                            dst[j] = 0.0f;
                    }
                    dst += seg;
                    p += seg;
                }
            }
}

static int is_depthwise(const rd_nn_node *nd, const rd_nn_node *in)
{
    return nd->groups == in->c && nd->groups == nd->c;
}

/* Columns of output positions per im2col tile of a convolution. */
static size_t conv_tile(const rd_nn_node *nd, const rd_nn_node *in)
{
    size_t k = (size_t)(in->c / nd->groups) * (size_t)(nd->kh * nd->kw);
    size_t p = (size_t)nd->h * (size_t)nd->w, t = IM2COL_TILE_FLOATS / k;
    if (t < 64)
        t = 64;
    return t < p ? t : p;
}

size_t rd__nn_conv_scratch(const rd_nn_node *nd, const rd_nn_node *in)
{
    if (is_depthwise(nd, in) || rd__nn_is_pointwise(nd))
        return 0;
    return (size_t)(in->c / nd->groups) * (size_t)(nd->kh * nd->kw) * conv_tile(nd, in);
}

/* A depthwise convolution as a direct loop: one k x k filter per plane leaves sgemm nothing
 * to gain. Threads split the planes. */
static void conv_depthwise(const rd_nn_node *nd, const rd_nn_node *in, const float *x, float *y,
                           int batch, int ith, int nth)
{
    int h = in->h, w = in->w;
    size_t hw = (size_t)h * w, p = (size_t)nd->h * nd->w, a, b;
    rd__nn_split((size_t)batch * nd->c, ith, nth, &a, &b);
    for (size_t pl = a; pl < b; pl++) {
        int c = (int)(pl % (size_t)nd->c);
        const float *xp = x + pl * hw, *wt = nd->weight + (size_t)c * nd->kh * nd->kw;
        float *yp = y + pl * p;
        for (int oy = 0; oy < nd->h; oy++)
            for (int ox = 0; ox < nd->w; ox++) {
                float acc = 0;
                for (int ky = 0; ky < nd->kh; ky++) {
                    int iy = oy * nd->sh - nd->ph + ky;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int kx = 0; kx < nd->kw; kx++) {
                        int ix = ox * nd->sw - nd->pw + kx;
                        if (ix >= 0 && ix < w)
                            acc += wt[ky * nd->kw + kx] * xp[(size_t)iy * w + ix];
                    }
                }
                yp[(size_t)oy * nd->w + ox] = acc;
            }
        epilogue(yp, p, nd->bias ? nd->bias[c] : 0.0f, nd->act);
    }
}

void rd__nn_conv(const rd_nn_node *nd, const rd_nn_node *in, const float *x, float *y, int batch,
                 float *col, int ith, int nth)
{
    int cin = in->c, h = in->h, w = in->w, g = nd->groups;
    int cin_g = cin / g, cout_g = nd->c / g;
    size_t hw = (size_t)h * w, p = (size_t)nd->h * nd->w;
    size_t k = (size_t)cin_g * nd->kh * nd->kw, a, b;

    if (is_depthwise(nd, in)) {
        conv_depthwise(nd, in, x, y, batch, ith, nth);
        return;
    }
    size_t tile = conv_tile(nd, in);
    int direct = rd__nn_is_pointwise(nd);
    /* Small feature maps with fewer images than threads (the deep layers at batch 1): split
     * the output channels instead of the positions, so that each sgemm keeps all the
     * columns (a 7x7 map split in two would leave OpenBLAS 24-column panels). Each thread
     * builds the whole (small) im2col matrix itself. */
    if (g == 1 && (size_t)batch < (size_t)nth && p <= tile && p < 400) {
        size_t rchunks = ((size_t)nth + batch - 1) / (size_t)batch;
        rd__nn_split((size_t)batch * rchunks, ith, nth, &a, &b);
        for (size_t t = a; t < b; t++) {
            size_t img = t / rchunks, rc = t % rchunks;
            size_t r0 = (size_t)nd->c * rc / rchunks, r1 = (size_t)nd->c * (rc + 1) / rchunks;
            const float *xi = x + img * (size_t)cin * hw, *bm = xi;
            float *yi = y + img * (size_t)nd->c * p;
            if (r1 == r0)
                continue;
            if (!direct) {
                rd__nn_im2col(xi, cin, h, w, nd, 0, p, col);
                bm = col;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), (int)p, (int)k,
                        1.0f, nd->weight + r0 * k, (int)k, bm, (int)p, 0.0f, yi + r0 * p, (int)p);
            for (size_t o = r0; o < r1; o++)
                epilogue(yi + o * p, p, nd->bias ? nd->bias[o] : 0.0f, nd->act);
        }
        return;
    }
    /* Tasks are (image, tile of output positions); enough tiles per image that every
     * thread has one even at batch 1. */
    size_t cpi = (p + tile - 1) / tile;
    size_t want = ((size_t)nth + batch - 1) / (size_t)batch;
    if (cpi < want)
        cpi = want < p ? want : p;
    rd__nn_split((size_t)batch * cpi, ith, nth, &a, &b);
    for (size_t t = a; t < b; t++) {
        size_t img = t / cpi, ci = t % cpi;
        size_t p0 = p * ci / cpi, p1 = p * (ci + 1) / cpi, np = p1 - p0;
        if (np == 0)
            continue;
        for (int gi = 0; gi < g; gi++) {
            const float *xg = x + img * (size_t)cin * hw + (size_t)gi * cin_g * hw;
            float *yg = y + img * (size_t)nd->c * p + (size_t)gi * cout_g * p + p0;
            const float *wg = nd->weight + (size_t)gi * cout_g * k;
            const float *bm;
            size_t ldb;
            if (direct) {
                bm = xg + p0;
                ldb = p;
            } else {
                rd__nn_im2col(xg, cin_g, h, w, nd, p0, p1, col);
                bm = col;
                ldb = np;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout_g, (int)np, (int)k, 1.0f,
                        wg, (int)k, bm, (int)ldb, 0.0f, yg, (int)p);
        }
        for (int o = 0; o < nd->c; o++)
            epilogue(y + img * (size_t)nd->c * p + (size_t)o * p + p0, np,
                     nd->bias ? nd->bias[o] : 0.0f, nd->act);
    }
}

/* Pooling ---------------------------------------------------------------------------------- */

int rd__nn_pooling_window(const rd_nn_node *nd, int h, int w, int oy, int ox, int *y0, int *y1,
                          int *x0, int *x1)
{
    int a0 = oy * nd->sh - nd->ph, b0 = ox * nd->sw - nd->pw;
    int a1 = a0 + nd->kh, b1 = b0 + nd->kw;
    int a1p = a1 < h + nd->ph ? a1 : h + nd->ph, b1p = b1 < w + nd->pw ? b1 : w + nd->pw;
    int padded = (a1p - a0) * (b1p - b0);
    *y0 = a0 < 0 ? 0 : a0;
    *x0 = b0 < 0 ? 0 : b0;
    *y1 = a1 > h ? h : a1;
    *x1 = b1 > w ? w : b1;
    return nd->count_include_pad ? padded : (*y1 - *y0) * (*x1 - *x0);
}

void rd__nn_pooling(const rd_nn_node *nd, const rd_nn_node *in, const float *x, float *y,
                    int32_t *arg, int batch, int ith, int nth)
{
    int h = in->h, w = in->w;
    size_t ihw = (size_t)h * w, ohw = (size_t)nd->h * nd->w, a, b;
    rd__nn_split((size_t)batch * nd->c, ith, nth, &a, &b);
    for (size_t pl = a; pl < b; pl++) {
        const float *xp = x + pl * ihw;
        float *yp = y + pl * ohw;
        for (int oy = 0; oy < nd->h; oy++)
            for (int ox = 0; ox < nd->w; ox++) {
                int y0, y1, x0, x1;
                int n = rd__nn_pooling_window(nd, h, w, oy, ox, &y0, &y1, &x0, &x1);
                size_t o = (size_t)oy * nd->w + ox;
                float v;
                if (nd->op == RD_NN_OP_MAXPOOL && arg) {
                    /* Where the maximum is, for the backward: the first one in the window. */
                    int32_t at = y0 * w + x0;
                    v = -INFINITY;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++)
                            if (xp[iy * w + ix] > v) {
                                v = xp[iy * w + ix];
                                at = iy * w + ix;
                            }
                    arg[pl * ohw + o] = at;
                } else if (nd->op == RD_NN_OP_MAXPOOL) {
                    /* Branch-free max (a NaN in the window is not propagated). */
                    v = -INFINITY;
                    for (int iy = y0; iy < y1; iy++) {
                        const float *row = xp + (size_t)iy * w;
                        for (int ix = x0; ix < x1; ix++)
                            v = row[ix] > v ? row[ix] : v;
                    }
                } else {
                    float s = 0;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++)
                            s += xp[(size_t)iy * w + ix];
                    v = n > 0 ? s / (float)n : 0.0f;
                }
                yp[o] = v;
            }
    }
}

void rd__nn_gap(const float *x, float *y, size_t planes, size_t hw, int ith, int nth)
{
    size_t a, b;
    rd__nn_split(planes, ith, nth, &a, &b);
    for (size_t pl = a; pl < b; pl++) {
        const float *xp = x + pl * hw;
        double s = 0;
        for (size_t i = 0; i < hw; i++)
            s += xp[i];
        y[pl] = (float)(s / (double)hw);
    }
}

/* Element-wise ----------------------------------------------------------------------------- */

void rd__nn_scale_shift(const float *x, float *y, size_t planes, int c, size_t hw,
                        const float *scale, const float *shift, rd_nn_act act, int ith, int nth)
{
    size_t a, b;
    rd__nn_split(planes, ith, nth, &a, &b);
    for (size_t pl = a; pl < b; pl++) {
        int ch = (int)(pl % (size_t)c);
        float sc = scale[ch], sh = shift[ch];
        for (size_t i = 0; i < hw; i++)
            y[pl * hw + i] = act_apply(act, x[pl * hw + i] * sc + sh);
    }
}

void rd__nn_unary(rd_nn_op op, const float *x, float *y, size_t n, int ith, int nth)
{
    size_t a, b;
    rd__nn_split(n, ith, nth, &a, &b);
    for (size_t i = a; i < b; i++) {
        float v = x[i];
        switch (op) {
        case RD_NN_OP_RELU:
            y[i] = act_apply(RD_NN_ACT_RELU, v);
            break;
        case RD_NN_OP_SILU:
            y[i] = act_apply(RD_NN_ACT_SILU, v);
            break;
        default:
            y[i] = rd__nn_sigmoid(v);
            break;
        }
    }
}

void rd__nn_add(const float *const *x, int n_in, float *y, size_t n, rd_nn_act act, int ith,
                int nth)
{
    size_t a, b, i;
    rd__nn_split(n, ith, nth, &a, &b);
    const float *x0 = x[0], *x1 = x[1];
    /* The first two inputs in one pass (a residual add has exactly two). */
    for (i = a; i + 4 <= b; i += 4)
        v4_store(y + i, v4_load(x0 + i) + v4_load(x1 + i));
    for (; i < b; i++)
        y[i] = x0[i] + x1[i];
    for (int j = 2; j < n_in; j++) {
        const float *xj = x[j];
        for (i = a; i < b; i++)
            y[i] += xj[i];
    }
    if (act != RD_NN_ACT_NONE)
        epilogue(y + a, b - a, 0.0f, act);
}

void rd__nn_concat(const float *const *x, const size_t *elems, int n_in, float *y, int batch,
                   int ith, int nth)
{
    size_t per = 0, a, b;
    for (int j = 0; j < n_in; j++)
        per += elems[j];
    /* Tasks are (image, input), so that a concatenation of a few large inputs at batch 1
     * still splits. */
    rd__nn_split((size_t)batch * n_in, ith, nth, &a, &b);
    for (size_t t = a; t < b; t++) {
        size_t img = t / (size_t)n_in, off = 0;
        int j = (int)(t % (size_t)n_in);
        for (int q = 0; q < j; q++)
            off += elems[q];
        memcpy(y + img * per + off, x[j] + img * elems[j], elems[j] * sizeof *y);
    }
}

void rd__nn_linear(const float *x, size_t f, const float *weight, const float *bias, int c,
                   rd_nn_act act, float *y, int batch, int ith, int nth)
{
    size_t a, b;
    rd__nn_split((size_t)c, ith, nth, &a, &b);
    if (b == a)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, (int)(b - a), (int)f, 1.0f, x,
                (int)f, weight + a * f, (int)f, 0.0f, y + a, c);
    for (int img = 0; img < batch; img++)
        for (size_t o = a; o < b; o++) {
            float *v = &y[(size_t)img * c + o];
            *v = act_apply(act, *v + (bias ? bias[o] : 0.0f));
        }
}

void rd__nn_l2norm(const float *x, float *y, size_t n, float eps, int batch, int ith, int nth)
{
    size_t a, b;
    rd__nn_split((size_t)batch, ith, nth, &a, &b);
    for (size_t img = a; img < b; img++) {
        double s = 0;
        for (size_t i = 0; i < n; i++)
            s += (double)x[img * n + i] * x[img * n + i];
        double norm = sqrt(s);
        float inv = (float)(1.0 / (norm > eps ? norm : (double)eps));
        for (size_t i = 0; i < n; i++)
            y[img * n + i] = x[img * n + i] * inv;
    }
}

/* One node ----------------------------------------------------------------------------------- */

void rd__nn_forward_node(const rd_nn_model *m, int i, float *const *val, int batch, float *col,
                         int32_t *arg, int ith, int nth)
{
    const rd_nn_node *nd = &m->nodes[i], *in = &m->nodes[nd->in[0]];
    const float *x = val[nd->in[0]], *xs[RD_NN_MAX_INPUTS];
    float *y = val[i];
    size_t elems[RD_NN_MAX_INPUTS], hw = (size_t)nd->h * nd->w;
    size_t per = (size_t)nd->c * hw, n = (size_t)batch;

    switch (nd->op) {
    case RD_NN_OP_CONV2D:
        rd__nn_conv(nd, in, x, y, batch, col, ith, nth);
        break;
    case RD_NN_OP_BATCHNORM:
        rd__nn_scale_shift(x, y, n * nd->c, nd->c, hw, nd->weight, nd->bias, nd->act, ith, nth);
        break;
    case RD_NN_OP_RELU:
    case RD_NN_OP_SILU:
    case RD_NN_OP_SIGMOID:
        rd__nn_unary(nd->op, x, y, n * per, ith, nth);
        break;
    case RD_NN_OP_MAXPOOL:
    case RD_NN_OP_AVGPOOL:
        rd__nn_pooling(nd, in, x, y, arg, batch, ith, nth);
        break;
    case RD_NN_OP_GAP:
        rd__nn_gap(x, y, n * nd->c, (size_t)in->h * in->w, ith, nth);
        break;
    case RD_NN_OP_ADD:
    case RD_NN_OP_CONCAT:
        for (int j = 0; j < nd->n_in; j++) {
            const rd_nn_node *nj = &m->nodes[nd->in[j]];
            xs[j] = val[nd->in[j]];
            elems[j] = (size_t)nj->c * nj->h * nj->w;
        }
        if (nd->op == RD_NN_OP_ADD)
            rd__nn_add(xs, nd->n_in, y, n * per, nd->act, ith, nth);
        else
            rd__nn_concat(xs, elems, nd->n_in, y, batch, ith, nth);
        break;
    case RD_NN_OP_LINEAR:
        rd__nn_linear(x, (size_t)in->c * in->h * in->w, nd->weight, nd->bias, nd->c, nd->act, y,
                      batch, ith, nth);
        break;
    case RD_NN_OP_L2NORM:
        rd__nn_l2norm(x, y, per, nd->eps, batch, ith, nth);
        break;
    case RD_NN_OP_INPUT:
    case RD_NN_OP_COUNT:
        break;
    }
}
