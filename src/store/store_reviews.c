/* radraft — review items: the drafts waiting for a radiologist. Adding one also records its
 * study version as drafted and queues the draft SR in the outbox, all in one transaction. */
#include "radraft/store.h"
#include "store/store_int.h"

rd_status rd_store_review_add(rd_store *s, const rd_store_review *r,
                              const char *const *destinations, int n_destinations,
                              int64_t *review_id, int *added, rd_error *err)
{
    rd_status rc;
    double now = rd_store_now();
    int64_t id = 0;
    int changed = 0;

    if (!r->study_uid || !r->content_version || !r->sr_path)
        return rd_error_set(err, RD_E_INVALID, "a review item needs a study, a version and an SR");
    for (int i = 0; i < n_destinations; i++)
        if ((rc = rd__outbox_check(r->sr_path, destinations[i], err)) != RD_OK)
            return rc;
    /* One transaction: the review item, the study version's outcome and the deliveries
     * appear together or not at all, so a crash can neither deliver an SR that has no
     * review item nor leave a draft that is never delivered. */
    if ((rc = rd__begin(s, err)) != RD_OK)
        return rc;
    if ((rc = rd__run(s, "adding a review item",
                      "INSERT INTO reviews(study_uid, content_version, state, sr_path,"
                      " sr_sop_instance_uid, frontal_sop_instance_uid, model_version,"
                      " findings_text, impression_text, findings_json, neighbours_json,"
                      " created_at, updated_at) VALUES(?1,?2,'draft',?3,?4,?5,?6,?7,?8,?9,?10,"
                      "?11,?11) ON CONFLICT(study_uid, content_version) DO NOTHING",
                      RD__ARGS(RD__TEXT(r->study_uid), RD__TEXT(r->content_version),
                               RD__TEXT(r->sr_path), RD__TEXT(r->sr_sop_instance_uid),
                               RD__TEXT(r->frontal_sop_instance_uid), RD__TEXT(r->model_version),
                               RD__TEXT(r->findings_text), RD__TEXT(r->impression_text),
                               RD__TEXT(r->findings_json), RD__TEXT(r->neighbours_json),
                               RD__REAL(now)),
                      &changed, err)) != RD_OK)
        goto out;
    if ((rc = rd__query_int64(s, "adding a review item",
                              "SELECT id FROM reviews WHERE study_uid=?1 AND content_version=?2",
                              RD__ARGS(RD__TEXT(r->study_uid), RD__TEXT(r->content_version)), &id,
                              NULL, err)) != RD_OK)
        goto out;
    if (changed != 1)
        goto commit; /* drafted before: nothing more to record or send */
    if ((rc = rd__run(s, "recording a drafted study",
                      "INSERT INTO study_versions(study_uid, content_version, outcome,"
                      " review_id, created_at) VALUES(?1, ?2, 'drafted', ?3, ?4)"
                      " ON CONFLICT(study_uid, content_version) DO UPDATE SET"
                      " outcome='drafted', reason=NULL, review_id=excluded.review_id",
                      RD__ARGS(RD__TEXT(r->study_uid), RD__TEXT(r->content_version), RD__INT(id),
                               RD__REAL(now)),
                      NULL, err)) != RD_OK)
        goto out;
    for (int i = 0; i < n_destinations; i++)
        if ((rc = rd__outbox_insert(s, r->sr_path, destinations[i], now, err)) != RD_OK)
            goto out;
commit:
    rc = rd__commit(s, err);
out:
    if (rc != RD_OK) {
        rd__rollback(s);
        return rc;
    }
    if (review_id)
        *review_id = id;
    if (added)
        *added = changed == 1;
    return RD_OK;
}

rd_status rd_store_count_reviews(rd_store *s, const char *study_uid, const char *state, long *count,
                                 rd_error *err)
{
    if (study_uid && state)
        return rd__count(s, "SELECT COUNT(*) FROM reviews WHERE study_uid=?1 AND state=?2",
                         RD__ARGS(RD__TEXT(study_uid), RD__TEXT(state)), count, err);
    if (study_uid)
        return rd__count(s, "SELECT COUNT(*) FROM reviews WHERE study_uid=?1",
                         RD__ARGS(RD__TEXT(study_uid)), count, err);
    if (state)
        return rd__count(s, "SELECT COUNT(*) FROM reviews WHERE state=?1",
                         RD__ARGS(RD__TEXT(state)), count, err);
    return rd__count(s, "SELECT COUNT(*) FROM reviews", RD__NO_ARGS, count, err);
}
