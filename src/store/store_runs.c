/* radraft — reprocessing runs (radraft batch --queue): a run is a set of studies put into the
 * shared job queue, and its progress is what the queue did with them since: each study's
 * latest job queued after it was added, and the study versions drafted or skipped since.
 * The times are the nodes' clocks (kept in step, as the heartbeats need them); the stable
 * delay between a study's last file and its job is far above their skew. */
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"

rd_status rd_store_run_create(rd_store *s, const char *label, int64_t *id, rd_error *err)
{
    rd_status st;
    if (!label || strlen(label) > RD_STORE_RUN_LABEL_MAX)
        return rd_error_set(err, RD_E_INVALID, "run label: at most %d bytes",
                            RD_STORE_RUN_LABEL_MAX);
    if ((st = rd__begin(s, err)) != RD_OK)
        return st;
    if ((st = rd__run(s, "creating a run", "INSERT INTO runs(label, created_at) VALUES(?1, ?2)",
                      RD__ARGS(RD__TEXT(label), RD__REAL(rd_store_now())), NULL, err)) != RD_OK ||
        (st = rd__last_insert_id(s, id, err)) != RD_OK || (st = rd__commit(s, err)) != RD_OK)
        rd__rollback(s);
    return st;
}

rd_status rd_store_run_add_study(rd_store *s, int64_t run_id, const char *study_uid, double now,
                                 rd_error *err)
{
    /* Added again (more files of it later in the run): the later time counts. */
    return rd__run(s, "adding a study to a run",
                   "INSERT INTO run_studies(run_id, study_uid, added_at) VALUES(?1, ?2, ?3)"
                   " ON CONFLICT(run_id, study_uid) DO UPDATE SET added_at=excluded.added_at",
                   RD__ARGS(RD__INT(run_id), RD__TEXT(study_uid), RD__REAL(now)), NULL, err);
}

rd_status rd_store_run_get(rd_store *s, int64_t run_id, rd_store_run_progress *p, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    rd_status st;
    int row;
    memset(p, 0, sizeof *p);
    if ((st = rd__stmt_row(&q, s, "reading a run", "SELECT label, created_at FROM runs WHERE id=?1",
                           RD__ARGS(RD__INT(run_id)), &row, err)) != RD_OK)
        goto out;
    if (!row) {
        st = rd_error_set(err, RD_E_NOT_FOUND, "no run %lld", (long long)run_id);
        goto out;
    }
    p->created_at = rd__col_real(&q, 1);
    rd__stmt_close(&q);
    /* Each study's latest job since it was added. */
    if ((st = rd__stmt_row(&q, s, "reading a run's jobs",
                           "SELECT COUNT(*),"
                           " SUM(CASE WHEN j.state IS NULL THEN 1 ELSE 0 END),"
                           " SUM(CASE WHEN j.state='queued' THEN 1 ELSE 0 END),"
                           " SUM(CASE WHEN j.state='running' THEN 1 ELSE 0 END),"
                           " SUM(CASE WHEN j.state='done' THEN 1 ELSE 0 END),"
                           " SUM(CASE WHEN j.state='failed' THEN 1 ELSE 0 END)"
                           " FROM run_studies r LEFT JOIN jobs j ON j.id=(SELECT MAX(id) FROM jobs"
                           " WHERE study_uid=r.study_uid AND created_at >= r.added_at)"
                           " WHERE r.run_id=?1",
                           RD__ARGS(RD__INT(run_id)), &row, err)) != RD_OK ||
        !row)
        goto out;
    p->studies = rd__col_int64(&q, 0);
    p->waiting = rd__col_int64(&q, 1);
    p->queued = rd__col_int64(&q, 2);
    p->running = rd__col_int64(&q, 3);
    p->done = rd__col_int64(&q, 4);
    p->failed = rd__col_int64(&q, 5);
    rd__stmt_close(&q);
    /* What the done jobs made of them: drafted, skipped, or neither (done before). */
    if ((st = rd__stmt_row(&q, s, "reading a run's outcomes",
                           "SELECT SUM(CASE WHEN EXISTS(SELECT 1 FROM study_versions v WHERE"
                           " v.study_uid=r.study_uid AND v.outcome='drafted' AND"
                           " v.created_at >= r.added_at) THEN 1 ELSE 0 END),"
                           " SUM(CASE WHEN EXISTS(SELECT 1 FROM study_versions v WHERE"
                           " v.study_uid=r.study_uid AND v.outcome='skipped' AND"
                           " v.created_at >= r.added_at) THEN 1 ELSE 0 END)"
                           " FROM run_studies r WHERE r.run_id=?1",
                           RD__ARGS(RD__INT(run_id)), &row, err)) != RD_OK ||
        !row)
        goto out;
    p->drafted = rd__col_int64(&q, 0);
    p->skipped = rd__col_int64(&q, 1);
out:
    rd__stmt_close(&q);
    return st;
}
