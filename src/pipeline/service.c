/* radraft — the service thread that serve's scheduler and outbox are each made of: a loop on
 * its own store connection, woken early by a post and ended by a stop flag. It owns the
 * thread, the connection and the wakeup; the loop's work is its caller's. */
#include <string.h>

#include "pipeline/pipeline_int.h"

rd_status rd__service_start(rd__service *svc, const rd_config *cfg,
                            const rd_store_options *store_opts, void *(*main)(void *), void *arg,
                            const char *name, rd_error *err)
{
    rd_status st;
    svc->cfg = *cfg;
    if (store_opts)
        svc->store_opts = *store_opts;
    else
        rd_store_options_default(&svc->store_opts);
    svc->store = NULL;
    atomic_init(&svc->stop, 0);
    if ((st = rd_wake_init(&svc->wake, err)) != RD_OK)
        return rd_error_prefix(err, st, "%s", name);
    if ((st = rd_store_open(&svc->store, cfg->server_data_dir, &svc->store_opts, err)) != RD_OK)
        goto fail;
    if (pthread_create(&svc->thread, NULL, main, arg) != 0) {
        st = rd_error_set(err, RD_E_INTERNAL, "cannot start the thread");
        goto fail;
    }
    return RD_OK;
fail:
    rd_store_close(svc->store);
    svc->store = NULL;
    rd_wake_destroy(&svc->wake);
    return rd_error_prefix(err, st, "%s", name);
}

int rd__service_stopping(rd__service *svc)
{
    return atomic_load(&svc->stop);
}

void rd__service_wake(rd__service *svc)
{
    rd_wake_post(&svc->wake);
}

void rd__service_stop(rd__service *svc)
{
    atomic_store(&svc->stop, 1);
    rd_wake_post(&svc->wake);
    pthread_join(svc->thread, NULL);
    rd_store_close(svc->store);
    svc->store = NULL;
    rd_wake_destroy(&svc->wake);
}
