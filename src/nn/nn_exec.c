/* radraft — inference: the context (arena plan, worker threads) and the op kernels.
 *
 * Every worker walks the same list of nodes; each op splits its work by (ith, nth) and a
 * barrier separates consecutive nodes, as ggml does. Convolutions are im2col + OpenBLAS
 * sgemm on a tile of output positions per task, so the workers' tasks never share
 * scratch memory; OpenBLAS runs single-threaded inside each worker, which keeps the number
 * of busy threads equal to the context's thread count. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nn/nn_int.h"
#include "base/util.h"

/* Upper bound on one worker's im2col tile (floats): 2 MiB keeps it in a core's L2/L3 share. */
#define IM2COL_TILE_FLOATS ((size_t)1 << 19)
#define ALIGN_FLOATS 16

struct rd_nn_ctx {
    const rd_nn_model *m;
    int max_batch;
    int nth;
    float *arena;
    size_t arena_floats;
    size_t *off;    /* per node: offset of its output in the arena (floats) */
    float *scratch; /* nth im2col tiles of scratch_floats each */
    size_t scratch_floats;
    int batch; /* batch of the forward in progress */
    pthread_t *threads;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned job_gen;
    int quit;
    atomic_uint bar_count;
    atomic_uint bar_gen;
    double *prof_ms; /* per node, summed over forwards when $RADRAFT_NN_PROFILE is set */
    int prof_runs;
};

typedef struct worker_arg {
    rd_nn_ctx *ctx;
    int ith;
} worker_arg;

static void split(size_t n, int ith, int nth, size_t *a, size_t *b)
{
    *a = n * (size_t)ith / (size_t)nth;
    *b = n * (size_t)(ith + 1) / (size_t)nth;
}

static size_t node_elems(const rd_nn_node *nd)
{
    return (size_t)nd->c * (size_t)nd->h * (size_t)nd->w;
}

static int is_depthwise(const rd_nn_model *m, const rd_nn_node *nd)
{
    const rd_nn_node *x = &m->nodes[nd->in[0]];
    return nd->groups == x->c && nd->groups == nd->c;
}

static int is_pointwise(const rd_nn_node *nd)
{
    return nd->kh == 1 && nd->kw == 1 && nd->sh == 1 && nd->sw == 1 && nd->ph == 0 && nd->pw == 0;
}

/* Columns of output positions per im2col tile of a convolution. */
static size_t conv_tile(const rd_nn_model *m, const rd_nn_node *nd)
{
    size_t k = (size_t)(m->nodes[nd->in[0]].c / nd->groups) * (size_t)(nd->kh * nd->kw);
    size_t p = (size_t)nd->h * (size_t)nd->w, t = IM2COL_TILE_FLOATS / k;
    if (t < 64)
        t = 64;
    return t < p ? t : p;
}

/* OpenBLAS kernels ---------------------------------------------------------------------------- */

const char *rd_nn_blas_core(void)
{
    const char *core = openblas_get_corename();
    return core ? core : "unknown";
}

/* Kernels ---------------------------------------------------------------------------------- */

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

/* Writes rows (ci, ky, kx) x columns [p0, p1) of output positions of the im2col matrix. */
static void im2col(const float *x, int cin, int h, int w, const rd_nn_node *nd, size_t p0,
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

static void op_conv(rd_nn_ctx *ctx, const rd_nn_node *nd, const float *x, float *y, int ith)
{
    const rd_nn_model *m = ctx->m;
    const rd_nn_node *in = &m->nodes[nd->in[0]];
    int cin = in->c, h = in->h, w = in->w, g = nd->groups;
    int cin_g = cin / g, cout_g = nd->c / g;
    size_t hw = (size_t)h * w, p = (size_t)nd->h * nd->w;
    size_t k = (size_t)cin_g * nd->kh * nd->kw, a, b;

    if (is_depthwise(m, nd)) {
        split((size_t)ctx->batch * nd->c, ith, ctx->nth, &a, &b);
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
        return;
    }

    size_t tile = conv_tile(m, nd);
    int direct = is_pointwise(nd);
    float *col = ctx->scratch + (size_t)ith * ctx->scratch_floats;
    /* Small feature maps with fewer images than workers (the deep layers at batch 1): split
     * the output channels instead of the positions, so that each sgemm keeps all the
     * columns (a 7x7 map split in two would leave OpenBLAS 24-column panels). Each worker
     * builds the whole (small) im2col matrix itself. */
    if (g == 1 && (size_t)ctx->batch < (size_t)ctx->nth && p <= tile && p < 400) {
        size_t rchunks = ((size_t)ctx->nth + ctx->batch - 1) / (size_t)ctx->batch;
        split((size_t)ctx->batch * rchunks, ith, ctx->nth, &a, &b);
        for (size_t t = a; t < b; t++) {
            size_t img = t / rchunks, rc = t % rchunks;
            size_t r0 = (size_t)nd->c * rc / rchunks, r1 = (size_t)nd->c * (rc + 1) / rchunks;
            const float *xi = x + img * (size_t)cin * hw, *bm = xi;
            float *yi = y + img * (size_t)nd->c * p;
            if (r1 == r0)
                continue;
            if (!direct) {
                im2col(xi, cin, h, w, nd, 0, p, col);
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
     * worker has one even at batch 1. */
    size_t cpi = (p + tile - 1) / tile;
    size_t want = ((size_t)ctx->nth + ctx->batch - 1) / (size_t)ctx->batch;
    if (cpi < want)
        cpi = want < p ? want : p;
    split((size_t)ctx->batch * cpi, ith, ctx->nth, &a, &b);
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
                im2col(xg, cin_g, h, w, nd, p0, p1, col);
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

static void op_pool(rd_nn_ctx *ctx, const rd_nn_node *nd, const float *x, float *y, int ith)
{
    const rd_nn_node *in = &ctx->m->nodes[nd->in[0]];
    int h = in->h, w = in->w;
    size_t a, b;
    split((size_t)ctx->batch * nd->c, ith, ctx->nth, &a, &b);
    for (size_t pl = a; pl < b; pl++) {
        const float *xp = x + pl * (size_t)h * w;
        float *yp = y + pl * (size_t)nd->h * nd->w;
        for (int oy = 0; oy < nd->h; oy++)
            for (int ox = 0; ox < nd->w; ox++) {
                int y0 = oy * nd->sh - nd->ph, x0 = ox * nd->sw - nd->pw;
                int y1 = y0 + nd->kh, x1 = x0 + nd->kw;
                /* PyTorch's divisor with count_include_pad: the window clipped to the
                 * padded input, before it is clipped to the input itself. */
                int y1p = y1 < h + nd->ph ? y1 : h + nd->ph,
                    x1p = x1 < w + nd->pw ? x1 : w + nd->pw;
                int padded = (y1p - y0) * (x1p - x0);
                if (y0 < 0)
                    y0 = 0;
                if (x0 < 0)
                    x0 = 0;
                if (y1 > h)
                    y1 = h;
                if (x1 > w)
                    x1 = w;
                float v;
                if (nd->op == RD_NN_OP_MAXPOOL) {
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
                    int n = nd->count_include_pad ? padded : (y1 - y0) * (x1 - x0);
                    v = n > 0 ? s / (float)n : 0.0f;
                }
                yp[(size_t)oy * nd->w + ox] = v;
            }
    }
}

static void op_gap(rd_nn_ctx *ctx, const rd_nn_node *nd, const float *x, float *y, int ith)
{
    const rd_nn_node *in = &ctx->m->nodes[nd->in[0]];
    size_t hw = (size_t)in->h * in->w, a, b;
    split((size_t)ctx->batch * nd->c, ith, ctx->nth, &a, &b);
    for (size_t pl = a; pl < b; pl++) {
        const float *xp = x + pl * hw;
        double s = 0;
        for (size_t i = 0; i < hw; i++)
            s += xp[i];
        y[pl] = (float)(s / (double)hw);
    }
}

static void op_batchnorm(rd_nn_ctx *ctx, const rd_nn_node *nd, const float *x, float *y, int ith)
{
    size_t hw = (size_t)nd->h * nd->w, a, b;
    split((size_t)ctx->batch * nd->c, ith, ctx->nth, &a, &b);
    for (size_t pl = a; pl < b; pl++) {
        int c = (int)(pl % (size_t)nd->c);
        float sc = nd->weight[c], sh = nd->bias[c];
        for (size_t i = 0; i < hw; i++)
            y[pl * hw + i] = act_apply(nd->act, x[pl * hw + i] * sc + sh);
    }
}

static void op_unary(rd_nn_ctx *ctx, const rd_nn_node *nd, const float *x, float *y, int ith)
{
    size_t a, b;
    split((size_t)ctx->batch * node_elems(nd), ith, ctx->nth, &a, &b);
    for (size_t i = a; i < b; i++) {
        float v = x[i];
        switch (nd->op) {
        case RD_NN_OP_RELU:
            y[i] = v > 0 ? v : 0;
            break;
        case RD_NN_OP_SILU:
            y[i] = v / (1.0f + expf(-v));
            break;
        default: /* sigmoid, computed without overflow on either side */
            if (v >= 0) {
                y[i] = 1.0f / (1.0f + expf(-v));
            } else {
                float e = expf(v);
                y[i] = e / (1.0f + e);
            }
            break;
        }
    }
}

static void op_add(rd_nn_ctx *ctx, const rd_nn_node *nd, float *y, int ith)
{
    size_t a, b, i;
    split((size_t)ctx->batch * node_elems(nd), ith, ctx->nth, &a, &b);
    const float *x0 = ctx->arena + ctx->off[nd->in[0]];
    const float *x1 = ctx->arena + ctx->off[nd->in[1]];
    /* The first two inputs in one pass (a residual add has exactly two). */
    for (i = a; i + 4 <= b; i += 4)
        v4_store(y + i, v4_load(x0 + i) + v4_load(x1 + i));
    for (; i < b; i++)
        y[i] = x0[i] + x1[i];
    for (int j = 2; j < nd->n_in; j++) {
        const float *xj = ctx->arena + ctx->off[nd->in[j]];
        for (i = a; i < b; i++)
            y[i] += xj[i];
    }
    if (nd->act != RD_NN_ACT_NONE)
        epilogue(y + a, b - a, 0.0f, nd->act);
}

static void op_concat(rd_nn_ctx *ctx, const rd_nn_node *nd, float *y, int ith)
{
    size_t hw = (size_t)nd->h * nd->w, a, b;
    split((size_t)ctx->batch * nd->n_in, ith, ctx->nth, &a, &b);
    for (size_t t = a; t < b; t++) {
        size_t img = t / (size_t)nd->n_in;
        int j = (int)(t % (size_t)nd->n_in), coff = 0;
        for (int q = 0; q < j; q++)
            coff += ctx->m->nodes[nd->in[q]].c;
        const rd_nn_node *in = &ctx->m->nodes[nd->in[j]];
        const float *src = ctx->arena + ctx->off[nd->in[j]] + img * (size_t)in->c * hw;
        memcpy(y + (img * (size_t)nd->c + (size_t)coff) * hw, src, (size_t)in->c * hw * sizeof *y);
    }
}

static void op_linear(rd_nn_ctx *ctx, const rd_nn_node *nd, const float *x, float *y, int ith)
{
    size_t f = node_elems(&ctx->m->nodes[nd->in[0]]), a, b;
    split((size_t)nd->c, ith, ctx->nth, &a, &b);
    if (b == a)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ctx->batch, (int)(b - a), (int)f, 1.0f, x,
                (int)f, nd->weight + a * f, (int)f, 0.0f, y + a, nd->c);
    for (int img = 0; img < ctx->batch; img++)
        for (size_t o = a; o < b; o++) {
            float *v = &y[(size_t)img * nd->c + o];
            *v = act_apply(nd->act, *v + (nd->bias ? nd->bias[o] : 0.0f));
        }
}

static void op_l2norm(rd_nn_ctx *ctx, const rd_nn_node *nd, const float *x, float *y, int ith)
{
    size_t n = node_elems(nd), a, b;
    split((size_t)ctx->batch, ith, ctx->nth, &a, &b);
    for (size_t img = a; img < b; img++) {
        double s = 0;
        for (size_t i = 0; i < n; i++)
            s += (double)x[img * n + i] * x[img * n + i];
        double norm = sqrt(s);
        float inv = (float)(1.0 / (norm > nd->eps ? norm : (double)nd->eps));
        for (size_t i = 0; i < n; i++)
            y[img * n + i] = x[img * n + i] * inv;
    }
}

/* Threads ------------------------------------------------------------------------------------ */

static void barrier(rd_nn_ctx *ctx)
{
    if (ctx->nth == 1)
        return;
    unsigned gen = atomic_load(&ctx->bar_gen);
    if (atomic_fetch_add(&ctx->bar_count, 1) == (unsigned)ctx->nth - 1) {
        atomic_store(&ctx->bar_count, 0);
        atomic_fetch_add(&ctx->bar_gen, 1);
        return;
    }
    /* Spin briefly (the other workers finish their share within microseconds when the
     * split is even), then yield so that an overloaded machine is not made worse. */
    for (int spins = 0; atomic_load(&ctx->bar_gen) == gen; spins++)
        if (spins > 4000)
            sched_yield();
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void run_graph(rd_nn_ctx *ctx, int ith)
{
    const rd_nn_model *m = ctx->m;
    double t0 = ctx->prof_ms && ith == 0 ? now_ms() : 0;
    for (int i = 1; i < m->n_nodes; i++) {
        const rd_nn_node *nd = &m->nodes[i];
        if (nd->dead)
            continue;
        const float *x = ctx->arena + ctx->off[nd->in[0]];
        float *y = ctx->arena + ctx->off[i];
        switch (nd->op) {
        case RD_NN_OP_CONV2D:
            op_conv(ctx, nd, x, y, ith);
            break;
        case RD_NN_OP_BATCHNORM:
            op_batchnorm(ctx, nd, x, y, ith);
            break;
        case RD_NN_OP_RELU:
        case RD_NN_OP_SILU:
        case RD_NN_OP_SIGMOID:
            op_unary(ctx, nd, x, y, ith);
            break;
        case RD_NN_OP_MAXPOOL:
        case RD_NN_OP_AVGPOOL:
            op_pool(ctx, nd, x, y, ith);
            break;
        case RD_NN_OP_GAP:
            op_gap(ctx, nd, x, y, ith);
            break;
        case RD_NN_OP_ADD:
            op_add(ctx, nd, y, ith);
            break;
        case RD_NN_OP_CONCAT:
            op_concat(ctx, nd, y, ith);
            break;
        case RD_NN_OP_LINEAR:
            op_linear(ctx, nd, x, y, ith);
            break;
        case RD_NN_OP_L2NORM:
            op_l2norm(ctx, nd, x, y, ith);
            break;
        case RD_NN_OP_INPUT:
        case RD_NN_OP_COUNT:
            break;
        }
        barrier(ctx);
        if (ctx->prof_ms && ith == 0) {
            double t1 = now_ms();
            ctx->prof_ms[i] += t1 - t0;
            t0 = t1;
        }
    }
}

static void *worker_main(void *p)
{
    worker_arg *wa = p;
    rd_nn_ctx *ctx = wa->ctx;
    int ith = wa->ith;
    unsigned seen = 0;
    free(wa);
    for (;;) {
        pthread_mutex_lock(&ctx->mu);
        while (ctx->job_gen == seen && !ctx->quit)
            pthread_cond_wait(&ctx->cv, &ctx->mu);
        seen = ctx->job_gen;
        int quit = ctx->quit;
        pthread_mutex_unlock(&ctx->mu);
        if (quit)
            return NULL;
        run_graph(ctx, ith);
    }
}

/* Context ------------------------------------------------------------------------------------ */

typedef struct block {
    size_t off, size;
    int node;
} block;

/* Plans the arena: walks the nodes in order, places each output at the first gap large
 * enough among the outputs still to be read, and releases an output after its last reader.
 * Graph outputs and the input live for the whole forward. */
static rd_status plan_arena(rd_nn_ctx *ctx, rd_error *err)
{
    const rd_nn_model *m = ctx->m;
    int n = m->n_nodes;
    int *last = malloc((size_t)n * sizeof *last);
    block *live = malloc((size_t)n * sizeof *live);
    int n_live = 0;
    size_t top = 0;
    rd_status st = RD_OK;

    if (!last || !live) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory planning the arena");
        goto out;
    }
    for (int i = 0; i < n; i++)
        last[i] = i;
    for (int i = 0; i < n; i++) {
        if (m->nodes[i].dead)
            continue;
        for (int j = 0; j < m->nodes[i].n_in; j++)
            if (last[m->nodes[i].in[j]] < i)
                last[m->nodes[i].in[j]] = i;
    }
    for (int o = 0; o < m->n_outputs; o++)
        last[m->outputs[o].node] = n;
    last[0] = n;
    for (int i = 0; i < n; i++) {
        size_t size;
        if (m->nodes[i].dead) {
            ctx->off[i] = 0;
            continue;
        }
        if (!rd_mul_size(node_elems(&m->nodes[i]), (size_t)ctx->max_batch, &size) ||
            size > SIZE_MAX / 8) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "activation '%s' too large for batch %d",
                              m->nodes[i].name, ctx->max_batch);
            goto out;
        }
        size = (size + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
        /* First fit among the gaps between live blocks (kept sorted by offset). */
        size_t pos = 0;
        int at = 0;
        for (; at < n_live; at++) {
            if (live[at].off >= pos + size)
                break;
            if (live[at].off + live[at].size > pos)
                pos = live[at].off + live[at].size;
        }
        memmove(&live[at + 1], &live[at], (size_t)(n_live - at) * sizeof *live);
        live[at] = (block){pos, size, i};
        n_live++;
        ctx->off[i] = pos;
        if (pos + size > top)
            top = pos + size;
        /* Release what node i was the last to read. */
        for (int q = 0; q < n_live;) {
            if (last[live[q].node] <= i && live[q].node != i) {
                memmove(&live[q], &live[q + 1], (size_t)(n_live - q - 1) * sizeof *live);
                n_live--;
            } else {
                q++;
            }
        }
    }
    ctx->arena_floats = top;
out:
    free(last);
    free(live);
    return st;
}

void rd_nn_ctx_free(rd_nn_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->prof_ms && ctx->prof_runs > 0) {
        const rd_nn_model *m = ctx->m;
        double total = 0;
        for (int i = 1; i < m->n_nodes; i++)
            total += ctx->prof_ms[i];
        fprintf(stderr, "nn profile: %d forwards, %.3f ms each\n", ctx->prof_runs,
                total / ctx->prof_runs);
        for (int i = 1; i < m->n_nodes; i++) {
            const rd_nn_node *nd = &m->nodes[i];
            if (!nd->dead)
                fprintf(stderr, "  %-28s %-9s %4dx%3dx%3d %8.3f ms %5.1f%%\n", nd->name,
                        rd_nn_op_name(nd->op), nd->c, nd->h, nd->w,
                        ctx->prof_ms[i] / ctx->prof_runs, 100.0 * ctx->prof_ms[i] / total);
        }
    }
    free(ctx->prof_ms);
    if (ctx->n_started > 0) {
        pthread_mutex_lock(&ctx->mu);
        ctx->quit = 1;
        pthread_cond_broadcast(&ctx->cv);
        pthread_mutex_unlock(&ctx->mu);
        for (int i = 0; i < ctx->n_started; i++)
            pthread_join(ctx->threads[i], NULL);
    }
    pthread_mutex_destroy(&ctx->mu);
    pthread_cond_destroy(&ctx->cv);
    free(ctx->threads);
    free(ctx->off);
    free(ctx->arena);
    free(ctx->scratch);
    free(ctx);
}

rd_status rd_nn_ctx_create(rd_nn_ctx **out, const rd_nn_model *m, int max_batch, int threads,
                           rd_error *err)
{
    rd_nn_ctx *ctx;
    rd_status st;
    size_t bytes;

    if (max_batch < 1 || max_batch > RD_NN_MAX_BATCH)
        return rd_error_set(err, RD_E_INVALID, "batch %d outside [1, %d]", max_batch,
                            RD_NN_MAX_BATCH);
    if (threads < 0 || threads > RD_NN_MAX_THREADS)
        return rd_error_set(err, RD_E_INVALID, "threads %d outside [0, %d]", threads,
                            RD_NN_MAX_THREADS);
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > RD_NN_MAX_THREADS ? RD_NN_MAX_THREADS : (int)n;
    }
    ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    pthread_mutex_init(&ctx->mu, NULL);
    pthread_cond_init(&ctx->cv, NULL);
    ctx->m = m;
    ctx->max_batch = max_batch;
    ctx->nth = threads;
    ctx->off = calloc((size_t)m->n_nodes, sizeof *ctx->off);
    if (!ctx->off) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = plan_arena(ctx, err)) != RD_OK)
        goto fail;
    /* A per-node time profile for tuning, printed to stderr when the context is freed. */
    if (getenv("RADRAFT_NN_PROFILE") &&
        !(ctx->prof_ms = calloc((size_t)m->n_nodes, sizeof *ctx->prof_ms))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 1; i < m->n_nodes; i++) {
        const rd_nn_node *nd = &m->nodes[i];
        if (nd->dead || nd->op != RD_NN_OP_CONV2D || is_depthwise(m, nd) || is_pointwise(nd))
            continue;
        size_t k = (size_t)(m->nodes[nd->in[0]].c / nd->groups) * (size_t)(nd->kh * nd->kw);
        size_t need = k * conv_tile(m, nd);
        if (need > ctx->scratch_floats)
            ctx->scratch_floats = need;
    }
    ctx->scratch_floats = (ctx->scratch_floats + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    if (!rd_mul_size(ctx->arena_floats, sizeof(float), &bytes) ||
        !(ctx->arena = aligned_alloc(64, bytes ? bytes : 64))) {
        st = rd_error_set(err, RD_E_NOMEM, "cannot allocate an arena of %zu floats",
                          ctx->arena_floats);
        goto fail;
    }
    if (ctx->scratch_floats) {
        if (!rd_mul_size(ctx->scratch_floats * sizeof(float), (size_t)threads, &bytes) ||
            !(ctx->scratch = aligned_alloc(64, bytes))) {
            st = rd_error_set(err, RD_E_NOMEM, "cannot allocate the im2col scratch");
            goto fail;
        }
    }
    /* The workers are the parallelism; OpenBLAS must not add its own threads on top. */
    openblas_set_num_threads(1);
    ctx->threads = calloc((size_t)threads, sizeof *ctx->threads);
    if (!ctx->threads) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 1; i < threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory");
            goto fail;
        }
        wa->ctx = ctx;
        wa->ith = i;
        if (pthread_create(&ctx->threads[ctx->n_started], NULL, worker_main, wa) != 0) {
            free(wa);
            st = rd_error_set(err, RD_E_INTERNAL, "cannot start worker thread %d", i);
            goto fail;
        }
        ctx->n_started++;
    }
    *out = ctx;
    return RD_OK;
fail:
    rd_nn_ctx_free(ctx);
    return st;
}

size_t rd_nn_ctx_arena_bytes(const rd_nn_ctx *ctx)
{
    return (ctx->arena_floats + ctx->scratch_floats * (size_t)ctx->nth) * sizeof(float);
}

int rd_nn_ctx_threads(const rd_nn_ctx *ctx)
{
    return ctx->nth;
}

rd_status rd_nn_forward(rd_nn_ctx *ctx, const float *input, int batch, rd_error *err)
{
    if (batch < 1 || batch > ctx->max_batch)
        return rd_error_set(err, RD_E_INVALID, "batch %d outside [1, %d]", batch, ctx->max_batch);
    if (ctx->n_started != ctx->nth - 1)
        return rd_error_set(err, RD_E_INTERNAL, "context workers are not running");
    memcpy(ctx->arena + ctx->off[0], input,
           (size_t)batch * node_elems(&ctx->m->nodes[0]) * sizeof *input);
    ctx->batch = batch;
    if (ctx->nth > 1) {
        pthread_mutex_lock(&ctx->mu);
        ctx->job_gen++;
        pthread_cond_broadcast(&ctx->cv);
        pthread_mutex_unlock(&ctx->mu);
    }
    run_graph(ctx, 0);
    ctx->prof_runs++;
    return RD_OK;
}

const float *rd_nn_ctx_output(const rd_nn_ctx *ctx, const char *key, int *size)
{
    const rd_nn_model *m = ctx->m;
    for (int o = 0; o < m->n_outputs; o++)
        if (strcmp(m->outputs[o].key, key) == 0) {
            if (size)
                *size = (int)node_elems(&m->nodes[m->outputs[o].node]);
            return ctx->arena + ctx->off[m->outputs[o].node];
        }
    return NULL;
}
