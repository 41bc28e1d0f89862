/* radraft — the outbox: delivers the SRs the pipeline queued to their DICOM destinations,
 * and the FHIR Bundles to the FHIR server.
 *
 * Each due delivery goes in an association of its own, so that one destination that is
 * down delays only its own files; the store keeps every delivery's state and backoff
 * (rd_store_outbox_claim, rd_store_outbox_result), so a restart resumes where it stopped
 * and a confirmed delivery is never sent again. It owns its thread and that thread's store
 * connection. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline_int.h"
#include "radraft/fhir.h"
#include "radraft/log.h"
#include "radraft/serve.h"

/* The polling fallback: the longest a retry waits past its due time, and what a missed
 * wakeup costs. */
#define OUTBOX_MAX_SLEEP_S 0.5

struct rd_outbox {
    rd__service svc;
    rd_net_scu_options scu;
};

/* One attempt: a FHIR Bundle POSTed to its server, an SR sent to its DICOM peer.
 * *permanent: the server refused the content itself (a 4xx other than 408 and 429), which
 * no retry changes; the delivery is then failed at once. */
static rd_status deliver(const rd_config *cfg, const rd_net_scu_options *scu,
                         const rd_store_delivery *d, int *permanent, rd_error *err)
{
    if (rd_fhir_is_endpoint(d->destination)) {
        rd_fhir_client client = {.timeout_s = cfg->fhir_timeout_seconds,
                                 .ca_file = cfg->fhir_ca_certificates,
                                 .bearer_file = cfg->fhir_bearer_token_file};
        rd_fhir_reply reply;
        rd_status st = rd_fhir_post(d->destination, d->file, &client, &reply, err);
        *permanent = st != RD_OK && reply.permanent;
        return st;
    }
    rd_net_peer peer;
    const char *files[1] = {d->file};
    rd_status st = rd_net_peer_parse(d->destination, &peer, err);
    return st == RD_OK ? rd_net_send_files(&peer, scu, files, 1, NULL, err) : st;
}

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
        rd_error send_err;
        int permanent = 0;
        rd_status sst = deliver(cfg, scu, &d, &permanent, &send_err);
        n++;
        if (sst == RD_OK)
            rd_log_info("serve: outbox: %s delivered to %s", d.file, d.destination);
        else
            rd_log_warn("serve: outbox: %s to %s: attempt %d failed: %s", d.file, d.destination,
                        d.attempts + 1, rd_error_message(&send_err));
        if ((st = rd_store_outbox_result(
                 s, d.id, sst == RD_OK ? NULL : rd_error_message(&send_err),
                 now + (rd_store_now() - started), cfg->outbox_retry_initial_seconds,
                 cfg->outbox_retry_max_seconds, permanent ? 1 : cfg->outbox_retry_max_attempts,
                 err)) != RD_OK)
            break;
    }
    if (attempted)
        *attempted = n;
    return st == RD_E_NOT_FOUND || (stop && atomic_load(stop)) ? RD_OK : st;
}

static void *outbox_main(void *arg)
{
    rd_outbox *ob = arg;
    while (!rd__service_stopping(&ob->svc)) {
        rd_error err;
        if (rd_outbox_run_due(ob->svc.store, &ob->svc.cfg, &ob->scu, rd_store_now(), &ob->svc.stop,
                              NULL, &err) != RD_OK)
            rd_log_error("serve: outbox: %s", rd_error_message(&err));
        /* A finished job wakes the outbox at once; the timeout is the fallback, and the
         * moment a failed delivery's retry comes due. */
        if (!rd__service_stopping(&ob->svc))
            (void)rd_wake_wait(&ob->svc.wake, OUTBOX_MAX_SLEEP_S);
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
    ob->scu = *scu;
    if ((st = rd__service_start(&ob->svc, cfg, store_opts, outbox_main, ob, "outbox", err)) !=
        RD_OK) {
        free(ob);
        return st;
    }
    *out = ob;
    return RD_OK;
}

void rd_outbox_wake(rd_outbox *ob)
{
    if (ob)
        rd__service_wake(&ob->svc);
}

void rd_outbox_stop(rd_outbox *ob)
{
    if (!ob)
        return;
    rd__service_stop(&ob->svc);
    free(ob);
}
