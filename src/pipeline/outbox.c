/* radraft — the outbox: delivers the SRs the pipeline queued to their destinations.
 *
 * Each due delivery goes in an association of its own, so that one destination that is
 * down delays only its own files; the store keeps every delivery's state and backoff
 * (rd_store_outbox_claim, rd_store_outbox_result), so a restart resumes where it stopped
 * and a confirmed delivery is never sent again. It owns its thread and that thread's store
 * connection. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/log.h"
#include "radraft/serve.h"
#include "base/util.h"

/* The polling fallback: the longest a retry waits past its due time, and what a missed
 * wakeup costs. */
#define OUTBOX_MAX_SLEEP_S 0.5

struct rd_outbox {
    rd_config cfg;
    rd_store_options store_opts;
    rd_net_scu_options scu;
    rd_store *store; /* the thread's connection */
    rd_wake wake;
    atomic_int stop;
    pthread_t thread;
};

rd_status rd_outbox_run_due(rd_store *s, const rd_config *cfg, const rd_net_scu_options *scu,
                            double now, atomic_int *stop, int *attempted, rd_error *err)
{
    rd_store_delivery d;
    rd_status st = RD_OK;
    int n = 0;
    /* Outcomes are timed from `now` plus the time spent sending, so that a caller's clock
     * (a test's, in the future) and the store's backoff agree. */
    double started = rd_store_now();
    while (!(stop && atomic_load(stop)) && (st = rd_store_outbox_claim(s, now, &d, err)) == RD_OK) {
        rd_net_peer peer;
        rd_error send_err;
        const char *files[1] = {d.file};
        rd_status sst = rd_net_peer_parse(d.destination, &peer, &send_err);
        if (sst == RD_OK)
            sst = rd_net_send_files(&peer, scu, files, 1, NULL, &send_err);
        n++;
        if (sst == RD_OK)
            rd_log_info("serve: outbox: %s delivered to %s", d.file, d.destination);
        else
            rd_log_warn("serve: outbox: %s to %s: attempt %d failed: %s", d.file, d.destination,
                        d.attempts + 1, rd_error_message(&send_err));
        if ((st = rd_store_outbox_result(
                 s, d.id, sst == RD_OK ? NULL : rd_error_message(&send_err),
                 now + (rd_store_now() - started), cfg->outbox_retry_initial_seconds,
                 cfg->outbox_retry_max_seconds, cfg->outbox_retry_max_attempts, err)) != RD_OK)
            break;
    }
    if (attempted)
        *attempted = n;
    return st == RD_E_NOT_FOUND || (stop && atomic_load(stop)) ? RD_OK : st;
}

static void *outbox_main(void *arg)
{
    rd_outbox *ob = arg;
    while (!atomic_load(&ob->stop)) {
        rd_error err;
        if (rd_outbox_run_due(ob->store, &ob->cfg, &ob->scu, rd_store_now(), &ob->stop, NULL,
                              &err) != RD_OK)
            rd_log_error("serve: outbox: %s", rd_error_message(&err));
        /* A finished job wakes the outbox at once; the timeout is the fallback, and the
         * moment a failed delivery's retry comes due. */
        if (!atomic_load(&ob->stop))
            (void)rd_wake_wait(&ob->wake, OUTBOX_MAX_SLEEP_S);
    }
    return NULL;
}

rd_status rd_outbox_start(rd_outbox **out, const rd_config *cfg, const rd_store_options *store_opts,
                          const rd_net_scu_options *scu, rd_error *err)
{
    rd_outbox *ob = calloc(1, sizeof *ob);
    rd_status st;
    if (!ob)
        return rd_error_set(err, RD_E_NOMEM, "out of memory starting the outbox");
    ob->cfg = *cfg;
    if (store_opts)
        ob->store_opts = *store_opts;
    else
        rd_store_options_default(&ob->store_opts);
    ob->scu = *scu;
    atomic_init(&ob->stop, 0);
    if ((st = rd_wake_init(&ob->wake, err)) != RD_OK) {
        free(ob);
        return st;
    }
    if ((st = rd_store_open(&ob->store, cfg->server_data_dir, &ob->store_opts, err)) != RD_OK)
        goto fail;
    if (pthread_create(&ob->thread, NULL, outbox_main, ob) != 0) {
        st = rd_error_set(err, RD_E_INTERNAL, "cannot start the outbox thread");
        goto fail;
    }
    *out = ob;
    return RD_OK;
fail:
    rd_store_close(ob->store);
    rd_wake_destroy(&ob->wake);
    free(ob);
    return rd_error_prefix(err, st, "outbox");
}

void rd_outbox_wake(rd_outbox *ob)
{
    if (ob)
        rd_wake_post(&ob->wake);
}

void rd_outbox_stop(rd_outbox *ob)
{
    if (!ob)
        return;
    atomic_store(&ob->stop, 1);
    rd_wake_post(&ob->wake);
    pthread_join(ob->thread, NULL);
    rd_store_close(ob->store);
    rd_wake_destroy(&ob->wake);
    free(ob);
}
