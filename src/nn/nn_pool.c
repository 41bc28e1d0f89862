/* radraft — the worker pool of the nn engine (see nn_pool.h). */
#include "nn/nn_pool.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "radraft/nn.h"

typedef struct pool_worker {
    rd__nn_pool *pool;
    int ith;
} pool_worker;

struct rd__nn_pool {
    int nth;
    pthread_t *threads;
    pool_worker *workers;
    int n_started;
    /* The task: set under `mu` with `gen` bumped; a worker that sees a new `gen` reads them
     * under `mu` too. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned gen;
    int quit;
    rd__nn_task fn;
    void *arg;
    atomic_uint bar_count;
    atomic_uint bar_gen;
};

rd_status rd__nn_threads_resolve(int threads, int *out, rd_error *err)
{
    if (threads < 0 || threads > RD_NN_MAX_THREADS)
        return rd_error_set(err, RD_E_INVALID, "threads %d outside [0, %d]", threads,
                            RD_NN_MAX_THREADS);
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > RD_NN_MAX_THREADS ? RD_NN_MAX_THREADS : (int)n;
    }
    *out = threads;
    return RD_OK;
}

void rd__nn_pool_barrier(rd__nn_pool *pool)
{
    if (pool->nth == 1)
        return;
    unsigned gen = atomic_load(&pool->bar_gen);
    if (atomic_fetch_add(&pool->bar_count, 1) == (unsigned)pool->nth - 1) {
        atomic_store(&pool->bar_count, 0);
        atomic_fetch_add(&pool->bar_gen, 1);
        return;
    }
    /* Spin briefly (the other threads finish their share within microseconds when the split
     * is even), then yield so that an overloaded machine is not made worse. */
    for (int spins = 0; atomic_load(&pool->bar_gen) == gen; spins++)
        if (spins > 4000)
            sched_yield();
}

static void *worker_main(void *p)
{
    pool_worker *wk = p;
    rd__nn_pool *pool = wk->pool;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool->mu);
        while (pool->gen == seen && !pool->quit)
            pthread_cond_wait(&pool->cv, &pool->mu);
        seen = pool->gen;
        int quit = pool->quit;
        rd__nn_task fn = pool->fn;
        void *arg = pool->arg;
        pthread_mutex_unlock(&pool->mu);
        if (quit)
            return NULL;
        fn(arg, wk->ith, pool->nth);
        /* The end of the run: the caller waits here for every worker. A worker that passes
         * it cannot miss the next task, whose `gen` it compares with `seen` under `mu`. */
        rd__nn_pool_barrier(pool);
    }
}

void rd__nn_pool_run(rd__nn_pool *pool, rd__nn_task fn, void *arg)
{
    if (pool->nth == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->arg = arg;
    pool->gen++;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0, pool->nth);
    rd__nn_pool_barrier(pool);
}

void rd__nn_pool_free(rd__nn_pool *pool)
{
    if (!pool)
        return;
    if (pool->n_started > 0) {
        pthread_mutex_lock(&pool->mu);
        pool->quit = 1;
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
        for (int i = 0; i < pool->n_started; i++)
            pthread_join(pool->threads[i], NULL);
    }
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool->threads);
    free(pool->workers);
    free(pool);
}

rd_status rd__nn_pool_create(rd__nn_pool **out, int nth, rd_error *err)
{
    rd__nn_pool *pool;
    rd_status st = RD_OK;

    if (nth < 1 || nth > RD_NN_MAX_THREADS)
        return rd_error_set(err, RD_E_INVALID, "threads %d outside [1, %d]", nth,
                            RD_NN_MAX_THREADS);
    pool = calloc(1, sizeof *pool);
    if (!pool)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->nth = nth;
    /* The pool's threads are the parallelism; OpenBLAS must not add its own on top. */
    openblas_set_num_threads(1);
    pool->threads = calloc((size_t)nth, sizeof *pool->threads);
    pool->workers = calloc((size_t)nth, sizeof *pool->workers);
    if (!pool->threads || !pool->workers) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 1; i < nth; i++) {
        pool->workers[i] = (pool_worker){pool, i};
        if (pthread_create(&pool->threads[pool->n_started], NULL, worker_main, &pool->workers[i]) !=
            0) {
            st = rd_error_set(err, RD_E_INTERNAL, "cannot start worker thread %d", i);
            goto out;
        }
        pool->n_started++;
    }
out:
    if (st != RD_OK) {
        rd__nn_pool_free(pool);
        return st;
    }
    *out = pool;
    return RD_OK;
}

int rd__nn_pool_threads(const rd__nn_pool *pool)
{
    return pool->nth;
}
