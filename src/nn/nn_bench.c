/* radraft — what a forward pass costs in arithmetic, and what this machine's sgemm can do,
 * so that `radraft model bench` reports the engine's speed as a share of a measured limit. */
#include <cblas.h>
#include <stdlib.h>
#include <time.h>

#include "nn/nn_int.h"
#include "nn/nn_pool.h"
#include "radraft/nn.h"

double rd_nn_model_flops(const rd_nn_model *m)
{
    double flops = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const rd_nn_node *nd = &m->nodes[i];
        const rd_nn_node *in = nd->n_in > 0 ? &m->nodes[nd->in[0]] : NULL;
        if (nd->dead || !in)
            continue;
        if (nd->op == RD_NN_OP_CONV2D)
            flops += 2.0 * nd->c * nd->h * nd->w * (double)(in->c / nd->groups) * nd->kh * nd->kw;
        else if (nd->op == RD_NN_OP_LINEAR)
            flops += 2.0 * nd->c * (double)in->c * in->h * in->w;
    }
    return flops;
}

/* Each thread multiplies its own square matrices: the side is large enough for OpenBLAS's
 * blocking to reach its plateau, and each thread's three matrices (12 MiB) are its own, as
 * the engine's tasks are. */
#define PEAK_N 1024
#define PEAK_REPS 5

typedef struct peak_job {
    float *mem; /* 3 * PEAK_N^2 floats per thread */
} peak_job;

static void peak_task(void *arg, int ith, int nth)
{
    peak_job *job = arg;
    size_t nn = (size_t)PEAK_N * PEAK_N;
    float *a = job->mem + (size_t)ith * 3 * nn, *b = a + nn, *c = b + nn;
    (void)nth;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, PEAK_N, PEAK_N, PEAK_N, 1.0f, a, PEAK_N,
                b, PEAK_N, 0.0f, c, PEAK_N);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

rd_status rd_nn_sgemm_peak(int threads, double *gflops, rd_error *err)
{
    rd__nn_pool *pool = NULL;
    peak_job job = {NULL};
    size_t total;
    double best = 0;
    int nth;
    rd_status st;

    if ((st = rd__nn_threads_resolve(threads, &nth, err)) != RD_OK)
        return st;
    total = (size_t)nth * 3 * PEAK_N * PEAK_N;
    if (!(job.mem = malloc(total * sizeof *job.mem)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory measuring the sgemm peak");
    for (size_t i = 0; i < total; i++)
        job.mem[i] = (float)(i % 17) * 0.0625f - 0.5f;
    if ((st = rd__nn_pool_create(&pool, nth, err)) != RD_OK)
        goto out;
    rd__nn_pool_run(pool, peak_task, &job); /* warm-up: pages, caches, clocks */
    for (int r = 0; r < PEAK_REPS; r++) {
        double t0 = now_s();
        rd__nn_pool_run(pool, peak_task, &job);
        double dt = now_s() - t0;
        double g = 2.0 * PEAK_N * PEAK_N * (double)PEAK_N * nth / dt * 1e-9;
        if (g > best)
            best = g;
    }
    *gflops = best;
out:
    rd__nn_pool_free(pool);
    free(job.mem);
    return st;
}
