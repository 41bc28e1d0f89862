/* radraft — the job queue: a study becomes a queued job once it has received nothing for
 * a while (stable), a worker claims the oldest due job, and ends it as done or failed or
 * puts it back with a delay (retry); radraft batch records the jobs it runs itself. A job
 * moves between states only inside a transaction that takes the write lock first, so two
 * workers never claim the same job. */
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"
#include "base/util.h"

const char *rd_job_state_name(rd_job_state state)
{
    switch (state) {
    case RD_JOB_QUEUED:
        return "queued";
    case RD_JOB_RUNNING:
        return "running";
    case RD_JOB_DONE:
        return "done";
    case RD_JOB_FAILED:
        return "failed";
    }
    return "?";
}

rd_status rd_store_queue_stable(rd_store *s, double now, double stable_seconds, int *queued,
                                rd_error *err)
{
    rd_status rc;
    int n = 0;
    double cutoff = now - stable_seconds;

    if ((rc = rd__begin(s, err)) != RD_OK)
        return rc;
    /* A study that already has a queued job gets no second one: the queued job will see
     * every instance received so far when it runs. */
    if ((rc = rd__run(s, "queueing jobs",
                      "INSERT INTO jobs(study_uid, state, attempts, created_at, updated_at)"
                      " SELECT study_uid, 'queued', 0, ?1, ?1 FROM studies"
                      " WHERE dirty=1 AND last_received <= ?2 AND NOT EXISTS (SELECT 1 FROM"
                      " jobs j WHERE j.study_uid=studies.study_uid AND j.state='queued')",
                      RD__ARGS(RD__REAL(now), RD__REAL(cutoff)), &n, err)) != RD_OK)
        goto out;
    if ((rc = rd__run(s, "marking studies",
                      "UPDATE studies SET dirty=0 WHERE dirty=1 AND last_received <= ?1",
                      RD__ARGS(RD__REAL(cutoff)), NULL, err)) != RD_OK)
        goto out;
    rc = rd__commit(s, err);
out:
    if (rc != RD_OK)
        rd__rollback(s);
    else if (queued)
        *queued = n;
    return rc;
}

rd_status rd_store_next_stable_due(rd_store *s, double stable_seconds, double *due, rd_error *err)
{
    rd__stmt q;
    int row;
    rd_status rc = rd__stmt_row(&q, s, "reading the studies",
                                "SELECT MIN(last_received) FROM studies WHERE dirty=1", RD__NO_ARGS,
                                &row, err);
    *due = -1;
    /* MIN over no row is NULL: no study is waiting to become stable. */
    if (rc == RD_OK && row && !rd__col_is_null(&q, 0))
        *due = rd__col_real(&q, 0) + stable_seconds;
    rd__stmt_close(&q);
    return rc;
}

rd_status rd_store_job_claim(rd_store *s, rd_store_job *job, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    rd_status rc;
    int row;
    if ((rc = rd__begin(s, err)) != RD_OK)
        return rc;
    if ((rc = rd__stmt_row(&q, s, "claiming a job",
                           "SELECT id, study_uid, attempts FROM jobs WHERE state='queued'"
                           " AND not_before <= ?1 ORDER BY id LIMIT 1",
                           RD__ARGS(RD__REAL(rd_store_now())), &row, err)) != RD_OK)
        goto out;
    if (!row) {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "no queued job");
        goto out;
    }
    job->id = rd__col_int64(&q, 0);
    rd_strlcpy(job->study_uid, rd__or_empty(rd__col_text(&q, 1)), sizeof job->study_uid);
    job->attempts = rd__col_int(&q, 2) + 1;
    rd__stmt_close(&q);
    if ((rc = rd__run(s, "claiming a job",
                      "UPDATE jobs SET state='running', attempts=attempts+1, updated_at=?1,"
                      " node=NULLIF(?3, '') WHERE id=?2",
                      RD__ARGS(RD__REAL(rd_store_now()), RD__INT(job->id), RD__TEXT(s->opts.node)),
                      NULL, err)) != RD_OK)
        goto out;
    rc = rd__commit(s, err);
out:
    rd__stmt_close(&q);
    if (rc != RD_OK)
        rd__rollback(s);
    return rc;
}

rd_status rd_store_job_finish(rd_store *s, int64_t job_id, const char *error, rd_error *err)
{
    rd_status rc;
    double now = rd_store_now();
    int changed = 0;
    if ((rc = rd__begin(s, err)) != RD_OK)
        return rc;
    if ((rc = rd__run(s, "finishing a job",
                      "UPDATE jobs SET state=?1, error=?2, updated_at=?3 WHERE id=?4 AND"
                      " state='running'",
                      RD__ARGS(RD__TEXT(error ? "failed" : "done"), RD__TEXT(error), RD__REAL(now),
                               RD__INT(job_id)),
                      &changed, err)) != RD_OK)
        goto out;
    if (changed != 1) {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "job %lld is not running", (long long)job_id);
        goto out;
    }
    if (!error && (rc = rd__run(s, "marking a study ready",
                                "UPDATE studies SET ready_at=?1 WHERE study_uid=(SELECT study_uid"
                                " FROM jobs WHERE id=?2)",
                                RD__ARGS(RD__REAL(now), RD__INT(job_id)), NULL, err)) != RD_OK)
        goto out;
    rc = rd__commit(s, err);
out:
    if (rc != RD_OK)
        rd__rollback(s);
    return rc;
}

rd_status rd_store_job_retry(rd_store *s, int64_t job_id, const char *error, double delay_seconds,
                             rd_error *err)
{
    double now = rd_store_now();
    int changed = 0;
    rd_status rc =
        rd__run(s, "requeueing a job",
                "UPDATE jobs SET state='queued', error=?1, updated_at=?2, not_before=?3"
                " WHERE id=?4 AND state='running'",
                RD__ARGS(RD__TEXT(rd__or_empty(error)), RD__REAL(now),
                         RD__REAL(now + (delay_seconds > 0 ? delay_seconds : 0)), RD__INT(job_id)),
                &changed, err);
    if (rc == RD_OK && changed != 1)
        rc = rd_error_set(err, RD_E_NOT_FOUND, "job %lld is not running", (long long)job_id);
    return rc;
}

rd_status rd_store_job_begin(rd_store *s, const char *study_uid, int attempts, rd_store_job *job,
                             rd_error *err)
{
    size_t len = study_uid ? strlen(study_uid) : 0;
    rd_status rc;
    if (len == 0 || len > RD_STORE_UID_MAX || attempts < 1)
        return rd_error_set(err, RD_E_INVALID,
                            "job: a study UID of 1..%d characters and attempts >= 1 expected",
                            RD_STORE_UID_MAX);
    rc = rd__run(s, "adding a job",
                 "INSERT INTO jobs(study_uid, state, attempts, created_at, updated_at)"
                 " VALUES(?1, 'running', ?2, ?3, ?3)",
                 RD__ARGS(RD__TEXT(study_uid), RD__INT(attempts), RD__REAL(rd_store_now())), NULL,
                 err);
    if (rc != RD_OK || (rc = rd__last_insert_id(s, &job->id, err)) != RD_OK)
        return rc;
    rd_strlcpy(job->study_uid, study_uid, sizeof job->study_uid);
    job->attempts = attempts;
    return RD_OK;
}

rd_status rd_store_job_error(rd_store *s, int64_t job_id, char *buf, size_t size, rd_error *err)
{
    rd__stmt q;
    int row;
    rd_status rc =
        rd__stmt_row(&q, s, "reading a job's error", "SELECT error FROM jobs WHERE id=?1",
                     RD__ARGS(RD__INT(job_id)), &row, err);
    if (rc == RD_OK && row)
        rd_strlcpy(buf, rd__or_empty(rd__col_text(&q, 0)), size);
    else if (rc == RD_OK)
        rc = rd_error_set(err, RD_E_NOT_FOUND, "no job %lld", (long long)job_id);
    rd__stmt_close(&q);
    return rc;
}

rd_status rd_store_count_jobs(rd_store *s, const char *study_uid, int state, long *count,
                              rd_error *err)
{
    const char *name = state >= 0 ? rd_job_state_name((rd_job_state)state) : NULL;
    if (study_uid && name)
        return rd__count(s, "SELECT COUNT(*) FROM jobs WHERE study_uid=?1 AND state=?2",
                         RD__ARGS(RD__TEXT(study_uid), RD__TEXT(name)), count, err);
    if (study_uid)
        return rd__count(s, "SELECT COUNT(*) FROM jobs WHERE study_uid=?1",
                         RD__ARGS(RD__TEXT(study_uid)), count, err);
    if (name)
        return rd__count(s, "SELECT COUNT(*) FROM jobs WHERE state=?1", RD__ARGS(RD__TEXT(name)),
                         count, err);
    return rd__count(s, "SELECT COUNT(*) FROM jobs", RD__NO_ARGS, count, err);
}
