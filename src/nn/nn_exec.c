/* radraft — inference: the context (arena plan, worker pool) and the walk over the graph.
 *
 * This folder, src/nn, is the neural network engine: model files and their validation
 * (nn_model.c), the built-in architectures (nn_init.c), the forward kernels (nn_ops.c) and
 * the worker pool (nn_pool.c) that inference here and training (src/train/nn_train.c) share,
 * and inference contexts. A model is immutable once loaded, so any number of contexts (each
 * owning its arena, scratch and pool) may run over one model at the same time.
 *
 * Every thread of the context's pool walks the same list of nodes in one task; each op
 * splits its work by (ith, nth) and a barrier separates consecutive nodes, as ggml does. */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/nn_int.h"
#include "nn/nn_ops.h"
#include "nn/nn_pool.h"
#include "base/util.h"

#define ALIGN_FLOATS 16

struct rd_nn_ctx {
    const rd_nn_model *m;
    int max_batch;
    int nth;
    float *arena;
    size_t arena_floats;
    size_t *off;    /* per node: offset of its output in the arena (floats) */
    float **val;    /* per node: arena + off, the output's address */
    float *scratch; /* nth im2col tiles of scratch_floats each */
    size_t scratch_floats;
    int batch; /* batch of the forward in progress */
    rd__nn_pool *pool;
    double *prof_ms; /* per node, summed over forwards when $RADRAFT_NN_PROFILE is set */
    int prof_runs;
};

static size_t node_elems(const rd_nn_node *nd)
{
    return (size_t)nd->c * (size_t)nd->h * (size_t)nd->w;
}

const char *rd_nn_blas_core(void)
{
    const char *core = openblas_get_corename();
    return core ? core : "unknown";
}

/* The graph --------------------------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The pool task of a forward: every thread walks every live node. */
static void run_graph(void *arg, int ith, int nth)
{
    rd_nn_ctx *ctx = arg;
    const rd_nn_model *m = ctx->m;
    float *col = ctx->scratch ? ctx->scratch + (size_t)ith * ctx->scratch_floats : NULL;
    double t0 = ctx->prof_ms && ith == 0 ? now_ms() : 0;
    for (int i = 1; i < m->n_nodes; i++) {
        if (m->nodes[i].dead)
            continue;
        rd__nn_forward_node(m, i, ctx->val, ctx->batch, col, NULL, ith, nth);
        rd__nn_pool_barrier(ctx->pool);
        if (ctx->prof_ms && ith == 0) {
            double t1 = now_ms();
            ctx->prof_ms[i] += t1 - t0;
            t0 = t1;
        }
    }
}

/* Class activation maps ------------------------------------------------------------------ */

int rd__nn_cam_head(const rd_nn_model *m, int o, int *feature)
{
    int i = m->outputs[o].node, g, f;
    const rd_nn_node *lin;
    if (m->nodes[i].op == RD_NN_OP_SIGMOID)
        i = m->nodes[i].in[0];
    lin = &m->nodes[i];
    /* A linear head over global average pooling, with no activation between the two:
     * only then is the head's value the mean over positions of a per-position map. */
    if (lin->dead || lin->op != RD_NN_OP_LINEAR || lin->act != RD_NN_ACT_NONE || !lin->weight)
        return -1;
    g = lin->in[0];
    if (m->nodes[g].op != RD_NN_OP_GAP || m->nodes[g].act != RD_NN_ACT_NONE)
        return -1;
    f = m->nodes[g].in[0];
    if (m->nodes[f].c != m->nodes[g].c || m->nodes[f].h < 1 || m->nodes[f].w < 1)
        return -1;
    *feature = f;
    return i;
}

static int output_index(const rd_nn_model *m, const char *key)
{
    for (int o = 0; o < m->n_outputs; o++)
        if (strcmp(m->outputs[o].key, key) == 0)
            return o;
    return -1;
}

rd_status rd_nn_model_cam_info(const rd_nn_model *m, const char *key, rd_nn_cam_info *out,
                               rd_error *err)
{
    int o = output_index(m, key), feature = -1, head;
    if (o < 0)
        return rd_error_set(err, RD_E_NOT_FOUND, "the model has no output '%s'", key);
    if ((head = rd__nn_cam_head(m, o, &feature)) < 0)
        return rd_error_set(err, RD_E_UNSUPPORTED,
                            "output '%s' is not a linear head over global average pooling "
                            "(optionally followed by a sigmoid): no class activation maps",
                            key);
    out->n_maps = m->nodes[head].c;
    out->channels = m->nodes[feature].c;
    out->height = m->nodes[feature].h;
    out->width = m->nodes[feature].w;
    out->weight = m->nodes[head].weight;
    out->bias = m->nodes[head].bias;
    out->feature_node = m->nodes[feature].name;
    return RD_OK;
}

const float *rd_nn_ctx_cam_features(const rd_nn_ctx *ctx, const char *key, int sample)
{
    const rd_nn_model *m = ctx->m;
    int o = output_index(m, key), feature;
    if (o < 0 || sample < 0 || sample >= ctx->batch || rd__nn_cam_head(m, o, &feature) < 0)
        return NULL;
    return ctx->val[feature] + (size_t)sample * node_elems(&m->nodes[feature]);
}

rd_status rd_nn_ctx_cam(const rd_nn_ctx *ctx, const char *key, int sample, float *maps,
                        rd_error *err)
{
    rd_nn_cam_info ci;
    const float *x;
    rd_status st;
    if ((st = rd_nn_model_cam_info(ctx->m, key, &ci, err)) != RD_OK)
        return st;
    if (sample < 0 || sample >= ctx->batch)
        return rd_error_set(err, RD_E_INVALID, "sample %d outside the last forward's batch of %d",
                            sample, ctx->batch);
    x = rd_nn_ctx_cam_features(ctx, key, sample);
    /* maps (n_maps x positions) = weight (n_maps x channels) . features (channels x
     * positions): one small sgemm, on the caller's thread. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ci.n_maps, ci.height * ci.width,
                ci.channels, 1.0f, ci.weight, ci.channels, x, ci.height * ci.width, 0.0f, maps,
                ci.height * ci.width);
    return RD_OK;
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
    for (int o = 0; o < m->n_outputs; o++) {
        int feature;
        last[m->outputs[o].node] = n;
        /* The feature map of an output that has class activation maps stays readable after
         * the forward, for rd_nn_ctx_cam: one small map per sample (256 x 7 x 7 floats for
         * the shipped encoder). */
        if (rd__nn_cam_head(m, o, &feature) >= 0)
            last[feature] = n;
    }
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
    rd__nn_pool_free(ctx->pool);
    free(ctx->off);
    free(ctx->val);
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
    if ((st = rd__nn_threads_resolve(threads, &threads, err)) != RD_OK)
        return st;
    ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
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
        if (nd->dead || nd->op != RD_NN_OP_CONV2D)
            continue;
        size_t need = rd__nn_conv_scratch(nd, &m->nodes[nd->in[0]]);
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
    if (!(ctx->val = calloc((size_t)m->n_nodes, sizeof *ctx->val))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < m->n_nodes; i++)
        ctx->val[i] = ctx->arena + ctx->off[i];
    if (ctx->scratch_floats) {
        if (!rd_mul_size(ctx->scratch_floats * sizeof(float), (size_t)threads, &bytes) ||
            !(ctx->scratch = aligned_alloc(64, bytes))) {
            st = rd_error_set(err, RD_E_NOMEM, "cannot allocate the im2col scratch");
            goto fail;
        }
    }
    if ((st = rd__nn_pool_create(&ctx->pool, threads, err)) != RD_OK)
        goto fail;
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
    memcpy(ctx->val[0], input, (size_t)batch * node_elems(&ctx->m->nodes[0]) * sizeof *input);
    ctx->batch = batch;
    rd__nn_pool_run(ctx->pool, run_graph, ctx);
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
