/* radraft — the outbox: deliveries of files (draft and verified SRs to DICOM destinations,
 * FHIR Bundles to a FHIR server).
 * A delivery is queued once per file and destination, claimed when due, and its result
 * recorded: done for good once the peer confirmed it, else retried with exponential
 * backoff until it has failed too often. */
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"
#include "base/util.h"

rd_status rd__outbox_check(const char *file, const char *destination, rd_error *err)
{
    if (strlen(file) >= sizeof((rd_store_delivery *)0)->file ||
        strlen(destination) >= sizeof((rd_store_delivery *)0)->destination)
        return rd_error_set(err, RD_E_TOO_LARGE, "outbox: file or destination name too long");
    return RD_OK;
}

rd_status rd__outbox_insert(rd_store *s, const char *file, const char *destination, double now,
                            rd_error *err)
{
    return rd__run(s, "queueing a delivery",
                   "INSERT INTO outbox(file, destination, state, attempts, next_attempt,"
                   " created_at, updated_at) VALUES(?1, ?2, 'pending', 0, ?3, ?3, ?3)"
                   " ON CONFLICT(file, destination) DO NOTHING",
                   RD__ARGS(RD__TEXT(file), RD__TEXT(destination), RD__REAL(now)), NULL, err);
}

rd_status rd_store_outbox_add(rd_store *s, const char *file, const char *destination, double now,
                              int64_t *id, rd_error *err)
{
    rd_status rc;
    if ((rc = rd__outbox_check(file, destination, err)) != RD_OK ||
        (rc = rd__outbox_insert(s, file, destination, now, err)) != RD_OK || !id)
        return rc;
    /* The row may be one queued before (the insert then did nothing): look its id up. */
    return rd__query_int64(s, "queueing a delivery",
                           "SELECT id FROM outbox WHERE file=?1 AND destination=?2",
                           RD__ARGS(RD__TEXT(file), RD__TEXT(destination)), id, NULL, err);
}

/* Deliveries to a FHIR server go in the order they were queued: a report's signed Bundle
 * updates the resources its draft's created, so it must not overtake a draft still being
 * retried. (DICOM deliveries are independent instances and go as they come due.) */
#define FHIR_ORDERED "(o.destination LIKE 'http://%' OR o.destination LIKE 'https://%')"

rd_status rd_store_outbox_claim(rd_store *s, double now, rd_store_delivery *d, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    rd_status rc;
    int row;
    if ((rc = rd__begin(s, err)) != RD_OK)
        return rc;
    if ((rc = rd__stmt_row(&q, s, "claiming a delivery",
                           "SELECT id, file, destination, attempts FROM outbox o WHERE"
                           " state='pending' AND next_attempt <= ?1 AND NOT (" FHIR_ORDERED
                           " AND EXISTS (SELECT 1 FROM outbox e WHERE"
                           " e.destination=o.destination AND e.id<o.id AND"
                           " e.state IN ('pending','sending')))"
                           " ORDER BY next_attempt, id LIMIT 1",
                           RD__ARGS(RD__REAL(now)), &row, err)) != RD_OK)
        goto out;
    if (!row) {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "no delivery due");
        goto out;
    }
    d->id = rd__col_int64(&q, 0);
    rd_strlcpy(d->file, rd__or_empty(rd__col_text(&q, 1)), sizeof d->file);
    rd_strlcpy(d->destination, rd__or_empty(rd__col_text(&q, 2)), sizeof d->destination);
    d->attempts = rd__col_int(&q, 3);
    rd__stmt_close(&q);
    if ((rc = rd__run(s, "claiming a delivery",
                      "UPDATE outbox SET state='sending', updated_at=?1, node=NULLIF(?3, '')"
                      " WHERE id=?2",
                      RD__ARGS(RD__REAL(now), RD__INT(d->id), RD__TEXT(s->opts.node)), NULL,
                      err)) != RD_OK)
        goto out;
    rc = rd__commit(s, err);
out:
    rd__stmt_close(&q);
    if (rc != RD_OK)
        rd__rollback(s);
    return rc;
}

/* min(retry_max, retry_initial * 2^(attempts-1)) seconds. */
static double backoff(int attempts, double retry_initial, double retry_max)
{
    double delay = retry_initial;
    for (int i = 1; i < attempts && delay < retry_max; i++)
        delay *= 2;
    return delay > retry_max ? retry_max : delay;
}

rd_status rd_store_outbox_result(rd_store *s, int64_t id, const char *error, double now,
                                 double retry_initial, double retry_max, int max_attempts,
                                 rd_error *err)
{
    rd_status rc;
    int64_t attempts = 0;
    int found = 0;
    const char *state = "done";
    double next = now;

    if ((rc = rd__begin(s, err)) != RD_OK)
        return rc;
    if ((rc = rd__query_int64(s, "recording a delivery",
                              "SELECT attempts FROM outbox WHERE id=?1 AND state='sending'",
                              RD__ARGS(RD__INT(id)), &attempts, &found, err)) != RD_OK)
        goto out;
    if (!found) {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "delivery %lld is not being sent", (long long)id);
        goto out;
    }
    attempts++;
    if (error) {
        next = now + backoff((int)attempts, retry_initial, retry_max);
        state = max_attempts > 0 && attempts >= max_attempts ? "failed" : "pending";
    }
    if ((rc = rd__run(s, "recording a delivery",
                      "UPDATE outbox SET state=?1, attempts=?2, next_attempt=?3, last_error=?4,"
                      " updated_at=?5 WHERE id=?6",
                      RD__ARGS(RD__TEXT(state), RD__INT(attempts), RD__REAL(next), RD__TEXT(error),
                               RD__REAL(now), RD__INT(id)),
                      NULL, err)) != RD_OK)
        goto out;
    rc = rd__commit(s, err);
out:
    if (rc != RD_OK)
        rd__rollback(s);
    return rc;
}

rd_status rd_store_outbox_count(rd_store *s, const char *state, long *count, rd_error *err)
{
    if (state)
        return rd__count(s, "SELECT COUNT(*) FROM outbox WHERE state=?1", RD__ARGS(RD__TEXT(state)),
                         count, err);
    return rd__count(s, "SELECT COUNT(*) FROM outbox", RD__NO_ARGS, count, err);
}
