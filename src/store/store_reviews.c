/* radraft — the review queue's rows: drafts, claims, edits, signatures, rejections.
 *
 * Adding an item also records its study version as drafted, queues the draft SR in the
 * outbox and supersedes the study's older items still waiting, all in one transaction.
 * Every transition is one write transaction that checks the item's state and holder in
 * its UPDATE's WHERE clause (so that of two processes claiming at once exactly one wins),
 * makes the change and appends the audit row; what the check refused is then read back to
 * say why. The policy (who may do what, the SR written on signing) is src/review's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"

/* A FHIR Bundle is queued when there is one and a server to send it to. */
static int queue_fhir(const char *path, const char *destination)
{
    return path && path[0] && destination && destination[0];
}

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
        if ((rc = rd__outbox_check(r->sr_path, destinations[i], err)) != RD_OK ||
            (r->air_sr_path &&
             (rc = rd__outbox_check(r->air_sr_path, destinations[i], err)) != RD_OK))
            return rc;
    if (queue_fhir(r->fhir_path, r->fhir_destination) &&
        (rc = rd__outbox_check(r->fhir_path, r->fhir_destination, err)) != RD_OK)
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
                      " embedding, patient_hash, view, study_date, priority, created_at,"
                      " updated_at, images_json, air_sr_path, air_sr_sop_instance_uid)"
                      " VALUES(?1,?2,'draft',?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,"
                      "?16,?17,?18,?19) ON CONFLICT(study_uid, content_version) DO NOTHING",
                      RD__ARGS(RD__TEXT(r->study_uid), RD__TEXT(r->content_version),
                               RD__TEXT(r->sr_path), RD__TEXT(r->sr_sop_instance_uid),
                               RD__TEXT(r->frontal_sop_instance_uid), RD__TEXT(r->model_version),
                               RD__TEXT(r->findings_text), RD__TEXT(r->impression_text),
                               RD__TEXT(r->findings_json), RD__TEXT(r->neighbours_json),
                               r->embedding && r->dim > 0
                                   ? RD__BLOB(r->embedding, (size_t)r->dim * sizeof(float))
                                   : RD__NULL,
                               RD__TEXT(rd__or_empty(r->patient_hash)), RD__INT(r->view),
                               RD__INT(r->study_date), RD__INT(r->priority), RD__REAL(now),
                               RD__TEXT(r->images_json), RD__TEXT(r->air_sr_path),
                               RD__TEXT(r->air_sr_sop_instance_uid)),
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
    /* The study received new images: its older drafts, claimed or not, are out of date. A
     * signed or rejected item stays what it is. */
    if ((rc = rd__run(s, "superseding older drafts",
                      "UPDATE reviews SET state='superseded', superseded_by=?1, updated_at=?2,"
                      " claimed_by=NULL, claim_expires=NULL WHERE study_uid=?3 AND id<>?1 AND"
                      " state IN ('draft','in_review')",
                      RD__ARGS(RD__INT(id), RD__REAL(now), RD__TEXT(r->study_uid)), NULL, err)) !=
        RD_OK)
        goto out;
    for (int i = 0; i < n_destinations; i++)
        if ((rc = rd__outbox_insert(s, r->sr_path, destinations[i], now, err)) != RD_OK ||
            (r->air_sr_path &&
             (rc = rd__outbox_insert(s, r->air_sr_path, destinations[i], now, err)) != RD_OK))
            goto out;
    if (queue_fhir(r->fhir_path, r->fhir_destination) &&
        (rc = rd__outbox_insert(s, r->fhir_path, r->fhir_destination, now, err)) != RD_OK)
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

/* ---- states ---- */

static const char *const state_names[RD_REVIEW_STATE_COUNT] = {"draft", "in_review", "signed",
                                                               "rejected", "superseded"};

const char *rd_review_state_name(rd_review_state state)
{
    return (unsigned)state < RD_REVIEW_STATE_COUNT ? state_names[state] : "?";
}

rd_status rd_review_state_parse(const char *name, rd_review_state *out, rd_error *err)
{
    for (int i = 0; i < RD_REVIEW_STATE_COUNT; i++)
        if (name && strcmp(name, state_names[i]) == 0) {
            *out = (rd_review_state)i;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID,
                        "unknown review state '%s' (draft, in_review, signed, rejected, "
                        "superseded)",
                        name ? name : "");
}

/* ---- reading items ---- */

/* The columns of an item, in the order read_item expects. */
#define ITEM_COLUMNS                                                                               \
    "id, study_uid, content_version, state, sr_path, sr_sop_instance_uid,"                         \
    " frontal_sop_instance_uid, model_version, patient_hash, view, study_date, priority,"          \
    " claimed_by, claimed_at, claim_expires, edited_by, edited_at, signed_by, signed_at,"          \
    " rejected_by, rejected_at, reject_reason, findings_added, findings_removed,"                  \
    " findings_changed, chars_edited, superseded_by, created_at, updated_at,"                      \
    " (SELECT COUNT(*) FROM signatures g WHERE g.review_id=reviews.id), air_sr_path,"              \
    " air_sr_sop_instance_uid"
/* The texts that follow them in a whole item. */
#define ITEM_TEXTS                                                                                 \
    ", findings_text, impression_text, findings_json, neighbours_json, final_findings_text,"       \
    " final_impression_text, explicit_states, final_states, reject_note, images_json, embedding"

static void col_copy(rd__stmt *q, int col, char *out, size_t size)
{
    const char *v = rd__col_text(q, col);
    snprintf(out, size, "%s", v ? v : "");
}

static rd_status col_dup(rd__stmt *q, int col, char **out, rd_error *err)
{
    const char *v = rd__col_text(q, col);
    *out = NULL;
    if (!v)
        return RD_OK;
    if (!(*out = strdup(v)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory reading a review item");
    return RD_OK;
}

static rd_status read_item(rd__stmt *q, int with_texts, rd_store_review_item *it, rd_error *err)
{
    rd_review_state state = RD_REVIEW_DRAFT;
    rd_status st = RD_OK;
    memset(it, 0, sizeof *it);
    it->id = rd__col_int64(q, 0);
    col_copy(q, 1, it->study_uid, sizeof it->study_uid);
    col_copy(q, 2, it->content_version, sizeof it->content_version);
    (void)rd_review_state_parse(rd__col_text(q, 3), &state, NULL);
    it->state = state;
    col_copy(q, 4, it->sr_path, sizeof it->sr_path);
    col_copy(q, 5, it->sr_sop_instance_uid, sizeof it->sr_sop_instance_uid);
    col_copy(q, 6, it->frontal_sop_instance_uid, sizeof it->frontal_sop_instance_uid);
    col_copy(q, 7, it->model_version, sizeof it->model_version);
    col_copy(q, 8, it->patient_hash, sizeof it->patient_hash);
    it->view = rd__col_int(q, 9);
    it->study_date = rd__col_int(q, 10);
    it->priority = rd__col_int(q, 11);
    col_copy(q, 12, it->claimed_by, sizeof it->claimed_by);
    it->claimed_at = rd__col_real(q, 13);
    it->claim_expires = rd__col_real(q, 14);
    col_copy(q, 15, it->edited_by, sizeof it->edited_by);
    it->edited_at = rd__col_real(q, 16);
    col_copy(q, 17, it->signed_by, sizeof it->signed_by);
    it->signed_at = rd__col_real(q, 18);
    col_copy(q, 19, it->rejected_by, sizeof it->rejected_by);
    it->rejected_at = rd__col_real(q, 20);
    col_copy(q, 21, it->reject_reason, sizeof it->reject_reason);
    it->findings_added = rd__col_int(q, 22);
    it->findings_removed = rd__col_int(q, 23);
    it->findings_changed = rd__col_int(q, 24);
    it->chars_edited = rd__col_int(q, 25);
    it->superseded_by = rd__col_int64(q, 26);
    it->created_at = rd__col_real(q, 27);
    it->updated_at = rd__col_real(q, 28);
    it->signatures = rd__col_int(q, 29);
    col_copy(q, 30, it->air_sr_path, sizeof it->air_sr_path);
    col_copy(q, 31, it->air_sr_sop_instance_uid, sizeof it->air_sr_sop_instance_uid);
    if (!with_texts)
        return RD_OK;
    char **texts[] = {&it->findings_text,   &it->impression_text,     &it->findings_json,
                      &it->neighbours_json, &it->final_findings_text, &it->final_impression_text,
                      &it->explicit_states, &it->final_states,        &it->reject_note,
                      &it->images_json};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0] && st == RD_OK; i++)
        st = col_dup(q, 32 + (int)i, texts[i], err);
    if (st == RD_OK) {
        size_t bytes = 0;
        const void *blob = rd__col_blob(q, 42, &bytes);
        if (blob && bytes >= sizeof(float) && bytes % sizeof(float) == 0) {
            if (!(it->embedding = malloc(bytes)))
                st = rd_error_set(err, RD_E_NOMEM, "out of memory reading a review item");
            else {
                memcpy(it->embedding, blob, bytes);
                it->dim = (int)(bytes / sizeof(float));
            }
        }
    }
    if (st != RD_OK)
        rd_store_review_item_clear(it);
    return st;
}

void rd_store_review_item_clear(rd_store_review_item *it)
{
    if (!it)
        return;
    free(it->findings_text);
    free(it->impression_text);
    free(it->findings_json);
    free(it->neighbours_json);
    free(it->final_findings_text);
    free(it->final_impression_text);
    free(it->explicit_states);
    free(it->final_states);
    free(it->reject_note);
    free(it->images_json);
    free(it->embedding);
    memset(it, 0, sizeof *it);
}

rd_status rd_store_review_get(rd_store *s, int64_t id, rd_store_review_item *out, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    int row = 0;
    rd_status st;
    memset(out, 0, sizeof *out); /* cleared even on failure, for rd_store_review_item_clear */
    st = rd__stmt_row(&q, s, "reading a review item",
                      "SELECT " ITEM_COLUMNS ITEM_TEXTS " FROM reviews WHERE id=?1",
                      RD__ARGS(RD__INT(id)), &row, err);
    if (st == RD_OK && !row)
        st = rd_error_set(err, RD_E_NOT_FOUND, "no review item %lld", (long long)id);
    if (st == RD_OK)
        st = read_item(&q, 1, out, err);
    rd__stmt_close(&q);
    return st;
}

rd_status rd_store_review_list(rd_store *s, int state, int by_priority, long limit,
                               rd_status (*fn)(void *ctx, const rd_store_review_item *it,
                                               rd_error *err),
                               void *ctx, rd_error *err)
{
    static const char *const sql[2][2] = {
        {"SELECT " ITEM_COLUMNS " FROM reviews ORDER BY created_at, id LIMIT ?2",
         "SELECT " ITEM_COLUMNS " FROM reviews ORDER BY priority DESC, created_at, id LIMIT ?2"},
        {"SELECT " ITEM_COLUMNS " FROM reviews WHERE state=?1 ORDER BY created_at, id LIMIT ?2",
         "SELECT " ITEM_COLUMNS " FROM reviews WHERE state=?1 ORDER BY priority DESC, created_at,"
         " id LIMIT ?2"}};
    rd__stmt q = RD__STMT_INIT;
    rd_store_review_item it;
    int more = 0;
    rd_status st = rd__stmt_open(
        &q, s, "listing review items", sql[state >= 0][by_priority != 0],
        RD__ARGS(RD__TEXT(state >= 0 ? rd_review_state_name((rd_review_state)state) : NULL),
                 RD__INT(limit > 0 ? limit : INT64_MAX)),
        err);
    while (st == RD_OK && (st = rd__stmt_step(&q, &more, err)) == RD_OK && more)
        if ((st = read_item(&q, 0, &it, err)) == RD_OK)
            st = fn(ctx, &it, err);
    rd__stmt_close(&q);
    return st;
}

/* ---- transitions ---- */

/* Why a transition's UPDATE changed nothing, read inside its transaction. */
static rd_status refused(rd_store *s, int64_t id, const char *action, const char *user, double now,
                         rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    int row = 0;
    rd_status st = rd__stmt_row(&q, s, "reading a review item",
                                "SELECT state, claimed_by, claim_expires FROM reviews WHERE id=?1",
                                RD__ARGS(RD__INT(id)), &row, err);
    if (st == RD_OK && !row)
        st = rd_error_set(err, RD_E_NOT_FOUND, "no review item %lld", (long long)id);
    else if (st == RD_OK) {
        const char *state = rd__col_text(&q, 0), *holder = rd__col_text(&q, 1);
        double left = rd__col_real(&q, 2) - now;
        if (state && strcmp(state, "in_review") == 0 && holder && strcmp(holder, user) != 0)
            st = rd_error_set(err, RD_E_DENIED,
                              "item %lld is claimed by %s (for %.0f more minutes): %s refused",
                              (long long)id, holder, left > 0 ? left / 60 : 0, action);
        else if (state && strcmp(state, "in_review") == 0 && left <= 0)
            st = rd_error_set(err, RD_E_DENIED,
                              "item %lld: your claim has expired; claim it again to %s",
                              (long long)id, action);
        else
            st = rd_error_set(err, RD_E_INVALID, "item %lld is %s: %s is not possible",
                              (long long)id, state ? state : "?", action);
    }
    rd__stmt_close(&q);
    return st;
}

/* Runs one transition: `sql` (whose ?1 is the item id) must change exactly the item's row
 * when the transition is allowed; then `more` (may be NULL) and the audit row, all in one
 * transaction. */
static rd_status transition(rd_store *s, int64_t id, const char *action, const char *user,
                            double now, const char *sql, rd__args args,
                            rd_status (*more)(rd_store *s, void *ctx, rd_error *err), void *ctx,
                            const rd_audit_event *ev, rd_error *err)
{
    int changed = 0;
    rd_status st = rd__begin(s, err);
    if (st != RD_OK)
        return st;
    if ((st = rd__run(s, action, sql, args, &changed, err)) != RD_OK)
        goto out;
    if (changed != 1) {
        st = refused(s, id, action, user, now, err);
        goto out;
    }
    if (more && (st = more(s, ctx, err)) != RD_OK)
        goto out;
    if (ev && (st = rd__audit_insert(s, ev, now, err)) != RD_OK)
        goto out;
    st = rd__commit(s, err);
out:
    if (st != RD_OK)
        rd__rollback(s);
    return st;
}

rd_status rd_store_review_claim(rd_store *s, int64_t id, const char *user, double now,
                                double expires, const rd_audit_event *ev, rd_error *err)
{
    return transition(s, id, "claim", user, now,
                      "UPDATE reviews SET state='in_review', claimed_by=?2, claimed_at=?3,"
                      " claim_expires=?4, updated_at=?3 WHERE id=?1 AND (state='draft' OR"
                      " (state='in_review' AND (claimed_by=?2 OR claim_expires<=?3)))",
                      RD__ARGS(RD__INT(id), RD__TEXT(user), RD__REAL(now), RD__REAL(expires)), NULL,
                      NULL, ev, err);
}

rd_status rd_store_review_release(rd_store *s, int64_t id, const char *user, double now,
                                  const rd_audit_event *ev, rd_error *err)
{
    return transition(s, id, "release", user, now,
                      "UPDATE reviews SET state='draft', claimed_by=NULL, claimed_at=NULL,"
                      " claim_expires=NULL, updated_at=?3 WHERE id=?1 AND state='in_review' AND"
                      " claimed_by=?2",
                      RD__ARGS(RD__INT(id), RD__TEXT(user), RD__REAL(now)), NULL, NULL, ev, err);
}

rd_status rd_store_review_save_edit(rd_store *s, int64_t id, const char *user, double now,
                                    const rd_store_review_edit *e, const rd_audit_event *ev,
                                    rd_error *err)
{
    return transition(
        s, id, "edit", user, now,
        "UPDATE reviews SET final_findings_text=?4, final_impression_text=?5,"
        " explicit_states=?6, final_states=?7, findings_added=?8, findings_removed=?9,"
        " findings_changed=?10, chars_edited=?11, edited_by=?2, edited_at=?3, updated_at=?3"
        " WHERE id=?1 AND state='in_review' AND claimed_by=?2 AND claim_expires>?3",
        RD__ARGS(RD__INT(id), RD__TEXT(user), RD__REAL(now), RD__TEXT(e->findings_text),
                 RD__TEXT(e->impression_text), RD__TEXT(e->explicit_states),
                 RD__TEXT(e->final_states), RD__INT(e->findings_added),
                 RD__INT(e->findings_removed), RD__INT(e->findings_changed),
                 RD__INT(e->chars_edited)),
        NULL, NULL, ev, err);
}

rd_status rd_store_review_reject(rd_store *s, int64_t id, const char *user, double now,
                                 const char *reason, const char *note, const rd_audit_event *ev,
                                 rd_error *err)
{
    return transition(
        s, id, "reject", user, now,
        "UPDATE reviews SET state='rejected', rejected_by=?2, rejected_at=?3,"
        " reject_reason=?4, reject_note=?5, claimed_by=NULL, claim_expires=NULL,"
        " updated_at=?3 WHERE id=?1 AND state='in_review' AND claimed_by=?2 AND"
        " claim_expires>?3",
        RD__ARGS(RD__INT(id), RD__TEXT(user), RD__REAL(now), RD__TEXT(reason), RD__TEXT(note)),
        NULL, NULL, ev, err);
}

typedef struct sign_ctx {
    int64_t id;
    const char *user;
    double now;
    const rd_store_signature *sig;
    const char *const *destinations;
    int n_destinations;
} sign_ctx;

/* What signing adds to the item's state change: the signature row (the previous one
 * superseded), the deliveries and the archive entry. */
static rd_status sign_more(rd_store *s, void *vctx, rd_error *err)
{
    sign_ctx *c = vctx;
    const rd_store_signature *g = c->sig;
    rd_status st;
    if ((st = rd__run(s, "superseding the previous signature",
                      "UPDATE signatures SET state='superseded' WHERE review_id=?1 AND"
                      " state='current'",
                      RD__ARGS(RD__INT(c->id)), NULL, err)) != RD_OK)
        return st;
    if ((st = rd__run(s, "recording a signature",
                      "INSERT INTO signatures(review_id, version, state, sr_path,"
                      " sr_sop_instance_uid, predecessor_sop_instance_uid, signed_by, signed_at,"
                      " findings_text, impression_text, final_states, air_sr_path,"
                      " air_sr_sop_instance_uid)"
                      " VALUES(?1,?2,'current',?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                      RD__ARGS(RD__INT(c->id), RD__INT(g->version), RD__TEXT(g->sr_path),
                               RD__TEXT(g->sr_sop_instance_uid),
                               RD__TEXT(g->predecessor_sop_instance_uid), RD__TEXT(c->user),
                               RD__REAL(c->now), RD__TEXT(g->findings_text),
                               RD__TEXT(g->impression_text), RD__TEXT(g->final_states),
                               RD__TEXT(g->air_sr_path), RD__TEXT(g->air_sr_sop_instance_uid)),
                      NULL, err)) != RD_OK)
        return st;
    for (int i = 0; i < c->n_destinations; i++)
        if ((st = rd__outbox_insert(s, g->sr_path, c->destinations[i], c->now, err)) != RD_OK ||
            (g->air_sr_path &&
             (st = rd__outbox_insert(s, g->air_sr_path, c->destinations[i], c->now, err)) != RD_OK))
            return st;
    if (queue_fhir(g->fhir_path, g->fhir_destination) &&
        (st = rd__outbox_insert(s, g->fhir_path, g->fhir_destination, c->now, err)) != RD_OK)
        return st;
    if (!g->archive)
        return RD_OK;
    /* The study's signed entry is replaced, not updated in place: a new row id is what
     * tells a running index (rd_index_sync) that the entry changed. */
    if ((st = rd__run(s, "replacing the study's signed archive entry",
                      "DELETE FROM archive WHERE model_version=?1 AND key=?2",
                      RD__ARGS(RD__TEXT(g->archive->model_version), RD__TEXT(g->archive->key)),
                      NULL, err)) != RD_OK)
        return st;
    return rd_store_archive_add(s, g->archive, NULL, NULL, err);
}

rd_status rd_store_review_sign(rd_store *s, int64_t id, const char *user, double now,
                               const rd_store_signature *sig, const char *const *destinations,
                               int n_destinations, const rd_audit_event *ev, rd_error *err)
{
    sign_ctx c = {id, user, now, sig, destinations, n_destinations};
    rd_status st;
    if (!sig->sr_path || !sig->sr_sop_instance_uid || !sig->predecessor_sop_instance_uid ||
        !sig->final_states || sig->version < 1)
        return rd_error_set(err, RD_E_INVALID, "a signature needs its SR, UIDs and states");
    for (int i = 0; i < n_destinations; i++)
        if ((st = rd__outbox_check(sig->sr_path, destinations[i], err)) != RD_OK ||
            (sig->air_sr_path &&
             (st = rd__outbox_check(sig->air_sr_path, destinations[i], err)) != RD_OK))
            return st;
    if (queue_fhir(sig->fhir_path, sig->fhir_destination) &&
        (st = rd__outbox_check(sig->fhir_path, sig->fhir_destination, err)) != RD_OK)
        return st;
    /* Version 1 needs the user's live claim; an amendment needs a signed item with exactly
     * version - 1 signatures, so that of two amendments at once only one is recorded. */
    return transition(
        s, id, sig->version == 1 ? "sign" : "amend", user, now,
        "UPDATE reviews SET state='signed', signed_by=?2, signed_at=?3, claimed_by=NULL,"
        " claim_expires=NULL, final_findings_text=?5, final_impression_text=?6,"
        " final_states=?7, updated_at=?3 WHERE id=?1 AND"
        " (SELECT COUNT(*) FROM signatures g WHERE g.review_id=?1)=?4-1 AND"
        " ((?4=1 AND state='in_review' AND claimed_by=?2 AND claim_expires>?3) OR"
        " (?4>1 AND state='signed'))",
        RD__ARGS(RD__INT(id), RD__TEXT(user), RD__REAL(now), RD__INT(sig->version),
                 RD__TEXT(sig->findings_text), RD__TEXT(sig->impression_text),
                 RD__TEXT(sig->final_states)),
        sign_more, &c, ev, err);
}

rd_status rd_store_review_current_signature(rd_store *s, int64_t id, int *version,
                                            char sr_path[1024], char sop_uid[RD_UID_SIZE],
                                            rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    int row = 0;
    rd_status st = rd__stmt_row(&q, s, "reading a signature",
                                "SELECT version, sr_path, sr_sop_instance_uid FROM signatures"
                                " WHERE review_id=?1 AND state='current'",
                                RD__ARGS(RD__INT(id)), &row, err);
    *version = 0;
    sr_path[0] = sop_uid[0] = '\0';
    if (st == RD_OK && row) {
        *version = rd__col_int(&q, 0);
        col_copy(&q, 1, sr_path, 1024);
        col_copy(&q, 2, sop_uid, RD_UID_SIZE);
    }
    rd__stmt_close(&q);
    return st;
}

rd_status rd_store_review_current_air_signature(rd_store *s, int64_t id, char air_path[1024],
                                                char air_uid[RD_UID_SIZE], rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    int row = 0;
    rd_status st = rd__stmt_row(&q, s, "reading a signature",
                                "SELECT air_sr_path, air_sr_sop_instance_uid FROM signatures"
                                " WHERE review_id=?1 AND state='current'",
                                RD__ARGS(RD__INT(id)), &row, err);
    air_path[0] = air_uid[0] = '\0';
    if (st == RD_OK && row) {
        col_copy(&q, 0, air_path, 1024);
        col_copy(&q, 1, air_uid, RD_UID_SIZE);
    }
    rd__stmt_close(&q);
    return st;
}
