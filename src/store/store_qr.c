/* radraft — the studies `radraft batch --from-pacs` found at a PACS, each one's state, and
 * the date pages of its queries already asked (see radraft/store.h). */
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"

static const char *const qr_names[RD_QR_STATE_COUNT] = {"queried", "retrieved", "drafted",
                                                        "skipped", "failed",    "imported"};

const char *rd_qr_state_name(rd_qr_state s)
{
    return (unsigned)s < RD_QR_STATE_COUNT ? qr_names[s] : "?";
}

rd_status rd_store_qr_found(rd_store *s, const char *source, const rd_store_qr_study *st,
                            double now, rd_error *err)
{
    if (!source || !st || !st->study_uid || !rd_store_uid_valid(st->study_uid))
        return rd_error_set(err, RD_E_INVALID, "a found study needs a source and a valid UID");
    return rd__run(
        s, "recording a study found",
        "INSERT INTO qr_studies(source, study_uid, study_date, modalities, description,"
        " accession, n_instances, state, created_at, updated_at)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,'queried',?8,?8)"
        " ON CONFLICT(source, study_uid) DO UPDATE SET"
        " study_date=excluded.study_date, modalities=excluded.modalities,"
        " description=excluded.description, accession=excluded.accession,"
        " n_instances=excluded.n_instances, updated_at=excluded.updated_at,"
        " state=CASE WHEN qr_studies.state='failed' THEN 'queried'"
        "  WHEN qr_studies.state IN ('drafted','skipped','imported') AND"
        "   excluded.n_instances>=0 AND"
        "   excluded.n_instances<>COALESCE(qr_studies.done_instances, -1) THEN 'queried'"
        "  ELSE qr_studies.state END,"
        " attempts=CASE WHEN qr_studies.state='failed' THEN 0 ELSE qr_studies.attempts END",
        RD__ARGS(RD__TEXT(source), RD__TEXT(st->study_uid), RD__TEXT(st->study_date),
                 RD__TEXT(st->modalities), RD__TEXT(st->description), RD__TEXT(st->accession),
                 RD__INT(st->n_instances), RD__REAL(now)),
        NULL, err);
}

rd_status rd_store_qr_set_state(rd_store *s, const char *source, const char *study_uid,
                                rd_qr_state state, const char *error, int64_t review_id,
                                int done_instances, double now, rd_error *err)
{
    int changed = 0;
    rd_status st;
    if ((unsigned)state >= RD_QR_STATE_COUNT)
        return rd_error_set(err, RD_E_INVALID, "no such state %d", (int)state);
    st = rd__run(s, "recording a study's state",
                 "UPDATE qr_studies SET state=?3, last_error=?4,"
                 " review_id=CASE WHEN ?5>0 THEN ?5 ELSE review_id END,"
                 " done_instances=CASE WHEN ?6>=0 THEN ?6 ELSE done_instances END,"
                 " attempts=attempts+CASE WHEN ?3 IN ('failed','retrieved') THEN 1 ELSE 0 END,"
                 " updated_at=?7"
                 " WHERE source=?1 AND study_uid=?2",
                 RD__ARGS(RD__TEXT(source), RD__TEXT(study_uid), RD__TEXT(qr_names[state]),
                          RD__TEXT(error), RD__INT(review_id), RD__INT(done_instances),
                          RD__REAL(now)),
                 &changed, err);
    if (st == RD_OK && changed == 0)
        return rd_error_set(err, RD_E_NOT_FOUND, "study %s was not found at %s", study_uid, source);
    return st;
}

rd_status rd_store_qr_each(rd_store *s, const char *source, unsigned mask, long limit,
                           rd_status (*fn)(void *ctx, const char *study_uid, int n_instances,
                                           rd_error *err),
                           void *ctx, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    rd_status st;
    int row = 0;
    long n = 0;
    st = rd__stmt_row(&q, s, "listing the studies found",
                      "SELECT study_uid, n_instances, state FROM qr_studies WHERE source=?1"
                      " ORDER BY study_date, study_uid",
                      RD__ARGS(RD__TEXT(source)), &row, err);
    while (st == RD_OK && row && (limit <= 0 || n < limit)) {
        const char *state = rd__or_empty(rd__col_text(&q, 2));
        for (int k = 0; k < RD_QR_STATE_COUNT; k++)
            if (strcmp(state, qr_names[k]) == 0 && (mask & (1u << k))) {
                if ((st = fn(ctx, rd__or_empty(rd__col_text(&q, 0)), rd__col_int(&q, 1), err)) !=
                    RD_OK)
                    goto out;
                n++;
            }
        st = rd__stmt_step(&q, &row, err);
    }
out:
    rd__stmt_close(&q);
    return st;
}

rd_status rd_store_qr_counts(rd_store *s, const char *source, long counts[RD_QR_STATE_COUNT],
                             rd_error *err)
{
    rd_status st = RD_OK;
    for (int k = 0; k < RD_QR_STATE_COUNT && st == RD_OK; k++)
        st = rd__count(s, "SELECT COUNT(*) FROM qr_studies WHERE source=?1 AND state=?2",
                       RD__ARGS(RD__TEXT(source), RD__TEXT(qr_names[k])), &counts[k], err);
    return st;
}

rd_status rd_store_qr_page_done(rd_store *s, const char *source, const char *query,
                                const char *date_from, const char *date_to, long matches,
                                double now, rd_error *err)
{
    return rd__run(s, "recording a query page",
                   "INSERT INTO qr_pages(source, query, date_from, date_to, matches, done_at)"
                   " VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(source, query, date_from, date_to)"
                   " DO UPDATE SET matches=excluded.matches, done_at=excluded.done_at",
                   RD__ARGS(RD__TEXT(source), RD__TEXT(query), RD__TEXT(date_from),
                            RD__TEXT(date_to), RD__INT(matches), RD__REAL(now)),
                   NULL, err);
}

rd_status rd_store_qr_page_is_done(rd_store *s, const char *source, const char *query,
                                   const char *date_from, const char *date_to, int *done,
                                   rd_error *err)
{
    long n = 0;
    rd_status st = rd__count(
        s,
        "SELECT COUNT(*) FROM qr_pages WHERE source=?1 AND query=?2 AND"
        " date_from=?3 AND date_to=?4",
        RD__ARGS(RD__TEXT(source), RD__TEXT(query), RD__TEXT(date_from), RD__TEXT(date_to)), &n,
        err);
    *done = st == RD_OK && n > 0;
    return st;
}
