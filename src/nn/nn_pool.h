/* radraft — private: the worker pool of the nn engine, shared by the inference context
 * (nn_exec.c) and the training network (src/train/nn_train.c).
 *
 * A pool of nth threads runs one task at a time: rd__nn_pool_run calls fn(arg, ith, nth) on
 * every thread (the caller's thread is ith = 0) and returns when all have returned. Inside a
 * task, rd__nn_pool_barrier waits until every thread of the pool has reached it, so that one
 * task may walk a whole graph with a barrier between consecutive ops, as ggml does. Work is
 * split by (ith, nth) with rd__nn_split, so that a given thread count always splits work the
 * same way and results are reproducible. OpenBLAS is set to one thread when a pool is
 * created: the pool's threads are the parallelism, and OpenBLAS threads on top of them would
 * oversubscribe the cores. */
#ifndef RADRAFT_NN_POOL_H
#define RADRAFT_NN_POOL_H

#include <stddef.h>

#include "radraft/error.h"

typedef struct rd__nn_pool rd__nn_pool;

/* The work of one thread: ith in [0, nth). */
typedef void (*rd__nn_task)(void *arg, int ith, int nth);

/* Checks a requested thread count against [0, RD_NN_MAX_THREADS] and resolves 0 to one
 * thread per online processor (capped at RD_NN_MAX_THREADS). */
rd_status rd__nn_threads_resolve(int threads, int *out, rd_error *err);

/* Starts nth - 1 worker threads (nth >= 1; the caller of rd__nn_pool_run is the nth). On
 * success *out is the caller's (free with rd__nn_pool_free); on failure no thread is left
 * running. */
rd_status rd__nn_pool_create(rd__nn_pool **out, int nth, rd_error *err);
/* Stops and joins the workers. Accepts NULL. Must not be called while a task runs. */
void rd__nn_pool_free(rd__nn_pool *pool);

int rd__nn_pool_threads(const rd__nn_pool *pool);

/* Runs fn(arg, ith, nth) on every thread of the pool and returns when all have finished;
 * what the tasks wrote is visible to the caller then. One run at a time per pool. */
void rd__nn_pool_run(rd__nn_pool *pool, rd__nn_task fn, void *arg);

/* Called by every thread of a running task: returns once all nth have called it, with what
 * each wrote before it visible to all. */
void rd__nn_pool_barrier(rd__nn_pool *pool);

/* The share [*a, *b) of n items that thread ith of nth works on: contiguous, in thread order,
 * sizes differing by at most one. */
static inline void rd__nn_split(size_t n, int ith, int nth, size_t *a, size_t *b)
{
    *a = n * (size_t)ith / (size_t)nth;
    *b = n * (size_t)(ith + 1) / (size_t)nth;
}

#endif
