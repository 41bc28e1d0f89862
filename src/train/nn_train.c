/* radraft — the training engine: forward in training mode, backward of every op, the
 * multi-label loss and AdamW.
 *
 * This folder, src/train, is the trainer (train.c: data, loop, checkpoints) and this network.
 * The network runs on the nn engine's shared parts: its forward ops are the inference
 * kernels (src/nn/nn_ops.c) and its threads are an nn worker pool (src/nn/nn_pool.c). What
 * is only here is what training needs on top: batch norm with batch statistics (and its
 * running statistics), every activation kept for the backward (one buffer per node, planned
 * once for the largest batch) with a gradient buffer beside it, the backward ops and col2im.
 *
 * The pool's threads split each op by (ith, nth): backward convolutions by image, batch norm
 * by channel, element-wise ops by element. A convolution's weight gradient is summed per
 * thread and the threads' sums are added in a fixed order afterwards, so that a run is
 * bitwise reproducible for a given thread count. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "train/nn_train_int.h"
#include "nn/nn_ops.h"
#include "nn/nn_pool.h"
#include "base/util.h"

#define BN_MOMENTUM 0.1

struct rd_tnet;
typedef void (*task_fn)(struct rd_tnet *net, int node, int ith);

struct rd_tnet {
    rd_nn_model *m;
    int max_batch, nth, batch, training;
    size_t *elems;                 /* per node: floats of one sample's output */
    float **y, **dy;               /* per node: outputs and their gradients, max_batch x elems */
    int32_t **arg;                 /* per maxpool node: index of the maximum in the input plane */
    double **bn_mean, **bn_invstd; /* per batch norm node: the statistics the forward used */
    char *need;                    /* per node: on the path of the current backward */
    int want_input_grad;
    rd_tnet_param *params;
    int n_params;
    int *param_of; /* per node: index of its first tensor in params, -1 if none */
    float *col;    /* nth im2col scratch buffers of col_floats */
    float *dcol;   /* nth col2im scratch buffers */
    size_t col_floats;
    float *acc; /* nth weight-gradient accumulators of acc_floats */
    size_t acc_floats;
    float *bn_scale, *bn_shift; /* the batch norm being run: its per-channel affine */
    rd__nn_pool *pool;
    /* Time per op (forward, backward) when $RADRAFT_TRAIN_PROFILE is set, printed to stderr
     * when the network is freed. */
    int profile;
    double prof[RD_NN_OP_COUNT][2];
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One op's task on the pool. */
typedef struct tnet_job {
    rd_tnet *net;
    task_fn fn;
    int node;
} tnet_job;

static void tnet_job_run(void *arg, int ith, int nth)
{
    const tnet_job *job = arg;
    (void)nth; /* the network's own */
    job->fn(job->net, job->node, ith);
}

/* Runs fn(net, node, ith) on every thread and returns when all have finished. */
static void run_all(rd_tnet *net, task_fn fn, int node)
{
    tnet_job job = {net, fn, node};
    rd__nn_pool_run(net->pool, tnet_job_run, &job);
}

/* col2im ---------------------------------------------------------------------------------- */

/* The adjoint of im2col: adds each column entry back to the input position it came from. */
static void col2im(const float *col, int cin, int h, int w, const rd_nn_node *nd, float *dx)
{
    size_t p = (size_t)nd->h * nd->w;
    for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < nd->kh; ky++)
            for (int kx = 0; kx < nd->kw; kx++) {
                const float *src = col + ((size_t)(ci * nd->kh + ky) * nd->kw + kx) * p;
                float *plane = dx + (size_t)ci * h * w;
                for (int oy = 0; oy < nd->h; oy++) {
                    int iy = oy * nd->sh - nd->ph + ky;
                    if (iy < 0 || iy >= h)
                        continue;
                    const float *s = src + (size_t)oy * nd->w;
                    float *row = plane + (size_t)iy * w;
                    for (int ox = 0; ox < nd->w; ox++) {
                        int ix = ox * nd->sw - nd->pw + kx;
                        if (ix >= 0 && ix < w)
                            row[ix] += s[ox];
                    }
                }
            }
}

/* Forward --------------------------------------------------------------------------------- */

/* Batch norm: the statistics per channel (the batch's in training mode, then folded into
 * the running statistics; the running ones otherwise), kept for the backward, then the
 * shared per-channel affine once every thread has written its channels'. */
static void fwd_bn(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i];
    size_t hw = (size_t)nd->h * nd->w, per = net->elems[i], a, b;
    size_t cnt = hw * (size_t)net->batch;
    const float *x = net->y[nd->in[0]];
    rd__nn_split((size_t)nd->c, ith, net->nth, &a, &b);
    for (size_t c = a; c < b; c++) {
        double mean, invstd;
        if (net->training) {
            double s = 0, s2 = 0;
            for (int n = 0; n < net->batch; n++) {
                const float *xp = x + (size_t)n * per + c * hw;
                for (size_t q = 0; q < hw; q++)
                    s += xp[q];
            }
            mean = s / (double)cnt;
            for (int n = 0; n < net->batch; n++) {
                const float *xp = x + (size_t)n * per + c * hw;
                for (size_t q = 0; q < hw; q++) {
                    double d = xp[q] - mean;
                    s2 += d * d;
                }
            }
            double var = s2 / (double)cnt;
            invstd = 1.0 / sqrt(var + nd->eps);
            /* PyTorch's running statistics: the variance is the unbiased one. */
            double unb = cnt > 1 ? var * (double)cnt / (double)(cnt - 1) : var;
            nd->mean[c] = (float)((1 - BN_MOMENTUM) * nd->mean[c] + BN_MOMENTUM * mean);
            nd->var[c] = (float)((1 - BN_MOMENTUM) * nd->var[c] + BN_MOMENTUM * unb);
        } else {
            mean = nd->mean[c];
            invstd = 1.0 / sqrt((double)nd->var[c] + nd->eps);
        }
        net->bn_mean[i][c] = mean;
        net->bn_invstd[i][c] = invstd;
        net->bn_scale[c] = (float)(nd->weight[c] * invstd);
        net->bn_shift[c] = (float)(nd->bias[c] - mean * nd->weight[c] * invstd);
    }
    rd__nn_pool_barrier(net->pool);
    rd__nn_scale_shift(x, net->y[i], (size_t)net->batch * nd->c, nd->c, hw, net->bn_scale,
                       net->bn_shift, RD_NN_ACT_NONE, ith, net->nth);
}

/* Every other op: the inference kernel (the model is raw, so nothing is fused), with a max
 * pooling's argmax kept for the backward. */
static void fwd_op(rd_tnet *net, int i, int ith)
{
    float *col = net->col ? net->col + (size_t)ith * net->col_floats : NULL;
    rd__nn_forward_node(net->m, i, net->y, net->batch, col, net->arg[i], ith, net->nth);
}

/* Backward kernels: each adds to the gradients of its inputs (dy of a node read by several
 * others is the sum of what they send back). ---------------------------------------------- */

static void bwd_conv(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i], *in = &net->m->nodes[nd->in[0]];
    int g = nd->groups, cin_g = in->c / g, cout_g = nd->c / g;
    size_t p = (size_t)nd->h * nd->w, hw = (size_t)in->h * in->w;
    size_t k = (size_t)cin_g * nd->kh * nd->kw, a, b;
    float *col = net->col + (size_t)ith * net->col_floats;
    float *dcol = net->dcol + (size_t)ith * net->col_floats;
    float *acc = net->acc + (size_t)ith * net->acc_floats;
    size_t wn = (size_t)nd->c * k;
    int need_dx = net->need[nd->in[0]];
    memset(acc, 0, (wn + (size_t)nd->c) * sizeof *acc);
    rd__nn_split((size_t)net->batch, ith, net->nth, &a, &b);
    for (size_t n = a; n < b; n++) {
        const float *x = net->y[nd->in[0]] + n * net->elems[nd->in[0]];
        const float *dy = net->dy[i] + n * net->elems[i];
        float *dx = net->dy[nd->in[0]] + n * net->elems[nd->in[0]];
        for (int gi = 0; gi < g; gi++) {
            const float *xg = x + (size_t)gi * cin_g * hw, *bm = xg;
            const float *dyg = dy + (size_t)gi * cout_g * p;
            const float *wg = nd->weight + (size_t)gi * cout_g * k;
            if (!rd__nn_is_pointwise(nd)) {
                rd__nn_im2col(xg, cin_g, in->h, in->w, nd, 0, p, col);
                bm = col;
            }
            /* dW_g += dY_g (cout_g x p) . col^T (p x k) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout_g, (int)k, (int)p, 1.0f, dyg,
                        (int)p, bm, (int)p, 1.0f, acc + (size_t)gi * cout_g * k, (int)k);
            if (!need_dx)
                continue;
            float *dxg = dx + (size_t)gi * cin_g * hw;
            if (rd__nn_is_pointwise(nd)) {
                /* dX_g += W_g^T (k x cout_g) . dY_g */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)p, cout_g, 1.0f,
                            wg, (int)k, dyg, (int)p, 1.0f, dxg, (int)p);
            } else {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)p, cout_g, 1.0f,
                            wg, (int)k, dyg, (int)p, 0.0f, dcol, (int)p);
                col2im(dcol, cin_g, in->h, in->w, nd, dxg);
            }
        }
        if (nd->bias)
            for (int o = 0; o < nd->c; o++) {
                float s = 0;
                for (size_t q = 0; q < p; q++)
                    s += dy[(size_t)o * p + q];
                acc[wn + (size_t)o] += s;
            }
    }
}

/* Adds the workers' weight-gradient sums into the parameters, in worker order. */
static void reduce_conv(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i];
    rd_tnet_param *pw = &net->params[net->param_of[i]];
    size_t wn = pw->n, a, b;
    size_t total = wn + (nd->bias ? (size_t)nd->c : 0);
    rd__nn_split(total, ith, net->nth, &a, &b);
    for (size_t q = a; q < b; q++) {
        float s = 0;
        for (int t = 0; t < net->nth; t++)
            s += net->acc[(size_t)t * net->acc_floats + q];
        if (q < wn)
            pw->g[q] += s;
        else
            pw[1].g[q - wn] += s;
    }
}

static void bwd_bn(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i];
    rd_tnet_param *pg = &net->params[net->param_of[i]], *pb = pg + 1;
    size_t hw = (size_t)nd->h * nd->w, per = net->elems[i], a, b;
    double cnt = (double)hw * net->batch;
    rd__nn_split((size_t)nd->c, ith, net->nth, &a, &b);
    for (size_t c = a; c < b; c++) {
        double mean = net->bn_mean[i][c], invstd = net->bn_invstd[i][c];
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < net->batch; n++) {
            const float *xp = net->y[nd->in[0]] + (size_t)n * per + c * hw;
            const float *dyp = net->dy[i] + (size_t)n * per + c * hw;
            for (size_t q = 0; q < hw; q++) {
                sdy += dyp[q];
                sdyx += dyp[q] * ((xp[q] - mean) * invstd);
            }
        }
        pg->g[c] += (float)sdyx;
        pb->g[c] += (float)sdy;
        if (!net->need[nd->in[0]])
            continue;
        double gi = nd->weight[c] * invstd;
        for (int n = 0; n < net->batch; n++) {
            const float *xp = net->y[nd->in[0]] + (size_t)n * per + c * hw;
            const float *dyp = net->dy[i] + (size_t)n * per + c * hw;
            float *dxp = net->dy[nd->in[0]] + (size_t)n * per + c * hw;
            if (net->training) {
                for (size_t q = 0; q < hw; q++) {
                    double xh = (xp[q] - mean) * invstd;
                    dxp[q] += (float)(gi * (dyp[q] - sdy / cnt - xh * sdyx / cnt));
                }
            } else {
                for (size_t q = 0; q < hw; q++)
                    dxp[q] += (float)(gi * dyp[q]);
            }
        }
    }
}

static void bwd_unary(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i];
    const float *x = net->y[nd->in[0]], *y = net->y[i], *dy = net->dy[i];
    float *dx = net->dy[nd->in[0]];
    size_t a, b;
    rd__nn_split((size_t)net->batch * net->elems[i], ith, net->nth, &a, &b);
    for (size_t q = a; q < b; q++) {
        if (nd->op == RD_NN_OP_RELU) {
            if (x[q] > 0)
                dx[q] += dy[q];
        } else if (nd->op == RD_NN_OP_SILU) {
            float s = rd__nn_sigmoid(x[q]);
            dx[q] += dy[q] * (s + x[q] * s * (1.0f - s));
        } else {
            dx[q] += dy[q] * y[q] * (1.0f - y[q]);
        }
    }
}

static void bwd_pool(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i], *in = &net->m->nodes[nd->in[0]];
    size_t ihw = (size_t)in->h * in->w, ohw = (size_t)nd->h * nd->w, a, b;
    rd__nn_split((size_t)net->batch * nd->c, ith, net->nth, &a, &b);
    for (size_t pl = a; pl < b; pl++) {
        float *dxp = net->dy[nd->in[0]] + pl * ihw;
        const float *dyp = net->dy[i] + pl * ohw;
        for (int oy = 0; oy < nd->h; oy++)
            for (int ox = 0; ox < nd->w; ox++) {
                size_t o = (size_t)oy * nd->w + ox;
                if (nd->op == RD_NN_OP_MAXPOOL) {
                    dxp[net->arg[i][pl * ohw + o]] += dyp[o];
                    continue;
                }
                int y0, y1, x0, x1;
                int cnt = rd__nn_pooling_window(nd, in->h, in->w, oy, ox, &y0, &y1, &x0, &x1);
                if (cnt <= 0)
                    continue;
                float gv = dyp[o] / (float)cnt;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        dxp[iy * in->w + ix] += gv;
            }
    }
}

static void bwd_gap(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i], *in = &net->m->nodes[nd->in[0]];
    size_t hw = (size_t)in->h * in->w, a, b;
    rd__nn_split((size_t)net->batch * nd->c, ith, net->nth, &a, &b);
    for (size_t pl = a; pl < b; pl++) {
        float gv = net->dy[i][pl] / (float)hw, *dxp = net->dy[nd->in[0]] + pl * hw;
        for (size_t q = 0; q < hw; q++)
            dxp[q] += gv;
    }
}

static void bwd_add(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i];
    size_t a, b;
    rd__nn_split((size_t)net->batch * net->elems[i], ith, net->nth, &a, &b);
    for (int j = 0; j < nd->n_in; j++) {
        if (!net->need[nd->in[j]])
            continue;
        float *dx = net->dy[nd->in[j]];
        for (size_t q = a; q < b; q++)
            dx[q] += net->dy[i][q];
    }
}

static void bwd_concat(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i];
    size_t a, b;
    rd__nn_split((size_t)net->batch, ith, net->nth, &a, &b);
    for (size_t n = a; n < b; n++) {
        size_t off = 0;
        for (int j = 0; j < nd->n_in; j++) {
            size_t e = net->elems[nd->in[j]];
            float *dx = net->dy[nd->in[j]] + n * e;
            const float *dy = net->dy[i] + n * net->elems[i] + off;
            for (size_t q = 0; q < e; q++)
                dx[q] += dy[q];
            off += e;
        }
    }
}

static void bwd_linear(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i];
    rd_tnet_param *pw = &net->params[net->param_of[i]];
    size_t f = net->elems[nd->in[0]], a, b;
    const float *dy = net->dy[i], *x = net->y[nd->in[0]];
    /* Weight and bias gradients split by output feature; the input gradient by image. */
    rd__nn_split((size_t)nd->c, ith, net->nth, &a, &b);
    if (b > a) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(b - a), (int)f, net->batch, 1.0f,
                    dy + a, nd->c, x, (int)f, 1.0f, pw->g + a * f, (int)f);
        if (nd->bias)
            for (size_t o = a; o < b; o++) {
                float s = 0;
                for (int n = 0; n < net->batch; n++)
                    s += dy[(size_t)n * nd->c + o];
                pw[1].g[o] += s;
            }
    }
    if (!net->need[nd->in[0]])
        return;
    rd__nn_split((size_t)net->batch, ith, net->nth, &a, &b);
    if (b > a)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(b - a), (int)f, nd->c, 1.0f,
                    dy + a * nd->c, nd->c, nd->weight, (int)f, 1.0f, net->dy[nd->in[0]] + a * f,
                    (int)f);
}

static void bwd_l2norm(rd_tnet *net, int i, int ith)
{
    const rd_nn_node *nd = &net->m->nodes[i];
    size_t e = net->elems[i], a, b;
    rd__nn_split((size_t)net->batch, ith, net->nth, &a, &b);
    for (size_t n = a; n < b; n++) {
        const float *x = net->y[nd->in[0]] + n * e, *y = net->y[i] + n * e;
        const float *dy = net->dy[i] + n * e;
        float *dx = net->dy[nd->in[0]] + n * e;
        double s = 0, dot = 0;
        for (size_t q = 0; q < e; q++) {
            s += (double)x[q] * x[q];
            dot += (double)y[q] * dy[q];
        }
        double norm = sqrt(s);
        if (norm > nd->eps) {
            for (size_t q = 0; q < e; q++)
                dx[q] += (float)((dy[q] - y[q] * dot) / norm);
        } else {
            for (size_t q = 0; q < e; q++)
                dx[q] += (float)(dy[q] / nd->eps);
        }
    }
}

static task_fn bwd_fn(rd_nn_op op)
{
    switch (op) {
    case RD_NN_OP_CONV2D:
        return bwd_conv;
    case RD_NN_OP_BATCHNORM:
        return bwd_bn;
    case RD_NN_OP_RELU:
    case RD_NN_OP_SILU:
    case RD_NN_OP_SIGMOID:
        return bwd_unary;
    case RD_NN_OP_MAXPOOL:
    case RD_NN_OP_AVGPOOL:
        return bwd_pool;
    case RD_NN_OP_GAP:
        return bwd_gap;
    case RD_NN_OP_ADD:
        return bwd_add;
    case RD_NN_OP_CONCAT:
        return bwd_concat;
    case RD_NN_OP_LINEAR:
        return bwd_linear;
    case RD_NN_OP_L2NORM:
        return bwd_l2norm;
    case RD_NN_OP_INPUT:
    case RD_NN_OP_COUNT:
        break;
    }
    return NULL;
}

/* Creation -------------------------------------------------------------------------------- */

static rd_status add_param(rd_tnet *net, const rd_nn_node *nd, const char *suffix, float *w,
                           int ndim, const int64_t *shape, int trained, int decay, rd_error *err)
{
    rd_tnet_param *p = &net->params[net->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s.%s", nd->name, suffix);
    p->ndim = ndim;
    p->n = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->n *= (size_t)shape[d];
    }
    p->w = w;
    p->decay = decay;
    if (trained) {
        p->g = calloc(p->n, sizeof(float));
        p->m = calloc(p->n, sizeof(float));
        p->v = calloc(p->n, sizeof(float));
        if (!p->g || !p->m || !p->v) {
            free(p->g), free(p->m), free(p->v);
            return rd_error_set(err, RD_E_NOMEM, "out of memory for '%s'", p->name);
        }
    }
    net->n_params++;
    return RD_OK;
}

void rd_tnet_free(rd_tnet *net)
{
    if (!net)
        return;
    if (net->profile) {
        double total = 0;
        for (int o = 0; o < RD_NN_OP_COUNT; o++)
            total += net->prof[o][0] + net->prof[o][1];
        fprintf(stderr, "train profile: %.0f ms in ops\n", total);
        for (int o = 0; o < RD_NN_OP_COUNT; o++)
            if (net->prof[o][0] + net->prof[o][1] > 0)
                fprintf(stderr, "  %-10s forward %9.0f ms  backward %9.0f ms  %5.1f%%\n",
                        rd_nn_op_name((rd_nn_op)o), net->prof[o][0], net->prof[o][1],
                        100 * (net->prof[o][0] + net->prof[o][1]) / total);
    }
    rd__nn_pool_free(net->pool);
    if (net->m)
        for (int i = 0; i < net->m->n_nodes; i++) {
            if (net->y)
                free(net->y[i]);
            if (net->dy)
                free(net->dy[i]);
            if (net->arg)
                free(net->arg[i]);
            if (net->bn_mean)
                free(net->bn_mean[i]);
            if (net->bn_invstd)
                free(net->bn_invstd[i]);
        }
    for (int p = 0; p < net->n_params; p++) {
        free(net->params[p].g);
        free(net->params[p].m);
        free(net->params[p].v);
    }
    free(net->params);
    free(net->param_of);
    free(net->y);
    free(net->dy);
    free(net->arg);
    free(net->bn_mean);
    free(net->bn_invstd);
    free(net->elems);
    free(net->need);
    free(net->col);
    free(net->dcol);
    free(net->acc);
    free(net->bn_scale);
    free(net->bn_shift);
    free(net);
}

rd_status rd_tnet_create(rd_tnet **out, rd_nn_model *m, int max_batch, int threads, rd_error *err)
{
    rd_tnet *net;
    rd_status st = RD_OK;
    int n = m->n_nodes, max_c = 0;

    if (max_batch < 1 || max_batch > RD_NN_MAX_BATCH)
        return rd_error_set(err, RD_E_INVALID, "batch %d outside [1, %d]", max_batch,
                            RD_NN_MAX_BATCH);
    if ((st = rd__nn_threads_resolve(threads, &threads, err)) != RD_OK)
        return st;
    for (int i = 0; i < n; i++)
        if (m->nodes[i].dead ||
            (m->nodes[i].op == RD_NN_OP_BATCHNORM && (!m->nodes[i].mean || !m->nodes[i].var)) ||
            m->nodes[i].act != RD_NN_ACT_NONE)
            return rd_error_set(err, RD_E_INVALID,
                                "the model was folded for inference; training needs it raw");
    net = calloc(1, sizeof *net);
    if (!net)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    net->max_batch = max_batch;
    net->nth = threads;
    net->profile = getenv("RADRAFT_TRAIN_PROFILE") != NULL;
    net->elems = calloc((size_t)n, sizeof *net->elems);
    net->y = calloc((size_t)n, sizeof *net->y);
    net->dy = calloc((size_t)n, sizeof *net->dy);
    net->arg = calloc((size_t)n, sizeof *net->arg);
    net->bn_mean = calloc((size_t)n, sizeof *net->bn_mean);
    net->bn_invstd = calloc((size_t)n, sizeof *net->bn_invstd);
    net->need = calloc((size_t)n, 1);
    net->param_of = malloc((size_t)n * sizeof *net->param_of);
    net->params = calloc(2 * (size_t)n + 2, sizeof *net->params);
    if (!net->elems || !net->y || !net->dy || !net->arg || !net->bn_mean || !net->bn_invstd ||
        !net->need || !net->param_of || !net->params) {
        free(net->param_of);
        net->param_of = NULL;
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto fail;
    }
    net->m = m;
    for (int i = 0; i < n; i++) {
        const rd_nn_node *nd = &m->nodes[i];
        size_t e = (size_t)nd->c * nd->h * nd->w, total;
        net->param_of[i] = -1;
        net->elems[i] = e;
        if (!rd_mul_size(e, (size_t)max_batch, &total) || total > ((size_t)1 << 34)) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "activation '%s' too large", nd->name);
            goto fail;
        }
        net->y[i] = malloc(total * sizeof(float));
        net->dy[i] = calloc(total, sizeof(float));
        if (!net->y[i] || !net->dy[i]) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory for the activations of '%s'",
                              nd->name);
            goto fail;
        }
        if (nd->op == RD_NN_OP_MAXPOOL && !(net->arg[i] = malloc(total * sizeof(int32_t)))) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory");
            goto fail;
        }
        if (nd->op == RD_NN_OP_BATCHNORM && nd->c > max_c)
            max_c = nd->c;
        if (nd->op == RD_NN_OP_BATCHNORM &&
            (!(net->bn_mean[i] = calloc((size_t)nd->c, sizeof(double))) ||
             !(net->bn_invstd[i] = calloc((size_t)nd->c, sizeof(double))))) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory");
            goto fail;
        }
        if (nd->op == RD_NN_OP_CONV2D) {
            const rd_nn_node *in = &m->nodes[nd->in[0]];
            size_t k = (size_t)(in->c / nd->groups) * nd->kh * nd->kw;
            size_t colf = k * (size_t)nd->h * nd->w, accf = (size_t)nd->c * k + (size_t)nd->c;
            int64_t ws[4] = {nd->c, in->c / nd->groups, nd->kh, nd->kw}, bs[1] = {nd->c};
            if (colf > net->col_floats)
                net->col_floats = colf;
            if (accf > net->acc_floats)
                net->acc_floats = accf;
            net->param_of[i] = net->n_params;
            if ((st = add_param(net, nd, "weight", nd->weight, 4, ws, 1, 1, err)) ||
                (nd->bias && (st = add_param(net, nd, "bias", nd->bias, 1, bs, 1, 0, err))))
                goto fail;
        } else if (nd->op == RD_NN_OP_LINEAR) {
            int64_t ws[2] = {nd->c, (int64_t)m->nodes[nd->in[0]].c * m->nodes[nd->in[0]].h *
                                        m->nodes[nd->in[0]].w},
                    bs[1] = {nd->c};
            net->param_of[i] = net->n_params;
            if ((st = add_param(net, nd, "weight", nd->weight, 2, ws, 1, 1, err)) ||
                (nd->bias && (st = add_param(net, nd, "bias", nd->bias, 1, bs, 1, 0, err))))
                goto fail;
        } else if (nd->op == RD_NN_OP_BATCHNORM) {
            int64_t cs[1] = {nd->c};
            net->param_of[i] = net->n_params;
            if ((st = add_param(net, nd, "weight", nd->weight, 1, cs, 1, 0, err)) ||
                (st = add_param(net, nd, "bias", nd->bias, 1, cs, 1, 0, err)) ||
                (st = add_param(net, nd, "running_mean", nd->mean, 1, cs, 0, 0, err)) ||
                (st = add_param(net, nd, "running_var", nd->var, 1, cs, 0, 0, err)))
                goto fail;
        }
    }
    if (net->col_floats) {
        size_t bytes;
        if (!rd_mul_size(net->col_floats * sizeof(float), (size_t)threads, &bytes) ||
            !(net->col = malloc(bytes)) || !(net->dcol = malloc(bytes))) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory for the im2col scratch");
            goto fail;
        }
    }
    if (net->acc_floats &&
        !(net->acc = malloc(net->acc_floats * (size_t)threads * sizeof(float)))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto fail;
    }
    if (!(net->bn_scale = malloc((size_t)(max_c > 0 ? max_c : 1) * sizeof(float))) ||
        !(net->bn_shift = malloc((size_t)(max_c > 0 ? max_c : 1) * sizeof(float)))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = rd__nn_pool_create(&net->pool, threads, err)) != RD_OK)
        goto fail;
    *out = net;
    return RD_OK;
fail:
    if (!net->m)
        net->m = m;
    rd_tnet_free(net);
    return st;
}

int rd_tnet_threads(const rd_tnet *net)
{
    return net->nth;
}

int rd_tnet_find(const rd_tnet *net, const char *name)
{
    for (int i = 0; i < net->m->n_nodes; i++)
        if (strcmp(net->m->nodes[i].name, name) == 0)
            return i;
    return -1;
}

int rd_tnet_output_node(const rd_tnet *net, const char *key)
{
    for (int o = 0; o < net->m->n_outputs; o++)
        if (strcmp(net->m->outputs[o].key, key) == 0)
            return net->m->outputs[o].node;
    return -1;
}

float *rd_tnet_value(const rd_tnet *net, int node, size_t *elems)
{
    if (node < 0 || node >= net->m->n_nodes)
        return NULL;
    if (elems)
        *elems = net->elems[node];
    return net->y[node];
}

const float *rd_tnet_input_grad(const rd_tnet *net)
{
    return net->want_input_grad ? net->dy[0] : NULL;
}

const float *rd_tnet_grad(const rd_tnet *net, int node)
{
    return node >= 0 && node < net->m->n_nodes ? net->dy[node] : NULL;
}

void rd_tnet_want_input_grad(rd_tnet *net, int on)
{
    net->want_input_grad = on;
}

rd_status rd_tnet_forward(rd_tnet *net, const float *input, int batch, int training, rd_error *err)
{
    if (batch < 1 || batch > net->max_batch)
        return rd_error_set(err, RD_E_INVALID, "batch %d outside [1, %d]", batch, net->max_batch);
    if (training && batch * net->elems[net->m->n_nodes - 1] < 1)
        return rd_error_set(err, RD_E_INVALID, "empty batch");
    memcpy(net->y[0], input, (size_t)batch * net->elems[0] * sizeof *input);
    net->batch = batch;
    net->training = training;
    for (int i = 1; i < net->m->n_nodes; i++) {
        double t0 = net->profile ? now_ms() : 0;
        run_all(net, net->m->nodes[i].op == RD_NN_OP_BATCHNORM ? fwd_bn : fwd_op, i);
        if (net->profile)
            net->prof[net->m->nodes[i].op][0] += now_ms() - t0;
    }
    return RD_OK;
}

void rd_tnet_zero_grad(rd_tnet *net)
{
    for (int p = 0; p < net->n_params; p++)
        if (net->params[p].g)
            memset(net->params[p].g, 0, net->params[p].n * sizeof(float));
}

rd_status rd_tnet_backward(rd_tnet *net, int node, const float *dy, rd_error *err)
{
    const rd_nn_model *m = net->m;
    if (node < 1 || node >= m->n_nodes)
        return rd_error_set(err, RD_E_INVALID, "no node %d to back-propagate from", node);
    /* The nodes whose gradient is needed: the ancestors of `node`. */
    memset(net->need, 0, (size_t)m->n_nodes);
    net->need[node] = 1;
    for (int i = node; i >= 1; i--)
        if (net->need[i])
            for (int j = 0; j < m->nodes[i].n_in; j++)
                net->need[m->nodes[i].in[j]] = 1;
    net->need[0] = (char)net->want_input_grad;
    for (int i = 0; i <= node; i++)
        if (net->need[i])
            memset(net->dy[i], 0, (size_t)net->batch * net->elems[i] * sizeof(float));
    memcpy(net->dy[node], dy, (size_t)net->batch * net->elems[node] * sizeof *dy);
    for (int i = node; i >= 1; i--) {
        if (!net->need[i])
            continue;
        double t0 = net->profile ? now_ms() : 0;
        run_all(net, bwd_fn(m->nodes[i].op), i);
        if (m->nodes[i].op == RD_NN_OP_CONV2D)
            run_all(net, reduce_conv, i);
        if (net->profile)
            net->prof[m->nodes[i].op][1] += now_ms() - t0;
    }
    return RD_OK;
}

int rd_tnet_n_params(const rd_tnet *net)
{
    return net->n_params;
}

rd_tnet_param *rd_tnet_param_at(rd_tnet *net, int i)
{
    return i >= 0 && i < net->n_params ? &net->params[i] : NULL;
}

double rd_tnet_grad_norm(const rd_tnet *net)
{
    double s = 0;
    for (int p = 0; p < net->n_params; p++)
        if (net->params[p].g)
            for (size_t q = 0; q < net->params[p].n; q++)
                s += (double)net->params[p].g[q] * net->params[p].g[q];
    return sqrt(s);
}

void rd_tnet_adamw(rd_tnet *net, double lr, double wd, double b1, double b2, double eps, long step)
{
    double c1 = 1.0 - pow(b1, (double)step), c2 = 1.0 - pow(b2, (double)step);
    for (int p = 0; p < net->n_params; p++) {
        rd_tnet_param *pr = &net->params[p];
        if (!pr->g)
            continue;
        float decay = pr->decay ? (float)(1.0 - lr * wd) : 1.0f;
        float fb1 = (float)b1, fb2 = (float)b2, step_size = (float)(lr / c1);
        float inv_c2 = (float)(1.0 / c2), feps = (float)eps;
        for (size_t q = 0; q < pr->n; q++) {
            float g = pr->g[q];
            pr->m[q] = fb1 * pr->m[q] + (1.0f - fb1) * g;
            pr->v[q] = fb2 * pr->v[q] + (1.0f - fb2) * g * g;
            pr->w[q] = pr->w[q] * decay - step_size * pr->m[q] / (sqrtf(pr->v[q] * inv_c2) + feps);
        }
    }
}

/* log(1 + e^z) without overflow. */
static double softplus(double z)
{
    return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

double rd_tnet_bce(const float *logits, const float *targets, const float *pos_weight, int batch,
                   int n, double smoothing, float *dlogits)
{
    double total = 0, scale = 1.0 / ((double)batch * n);
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < n; c++) {
            size_t q = (size_t)b * n + c;
            double z = logits[q], t = targets[q] * (1.0 - smoothing) + 0.5 * smoothing;
            double pw = pos_weight ? pos_weight[c] : 1.0;
            /* -[pw t log s(z) + (1 - t) log(1 - s(z))], log s(z) = -softplus(-z). */
            total += pw * t * softplus(-z) + (1.0 - t) * softplus(z);
            if (dlogits) {
                double s = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
                dlogits[q] = (float)((s * (pw * t + 1.0 - t) - pw * t) * scale);
            }
        }
    return total * scale;
}
