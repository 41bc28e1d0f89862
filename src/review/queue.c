/* radraft — the review queue: what a radiologist does with a draft.
 *
 * The policy of the queue lives here and the rows in the store (store_reviews.c): who may
 * act (radraft/review.h's users: viewers read, radiologists and admins act), what an edit
 * means (final texts, the radiologist's explicit finding choices, else what the labeler
 * reads in the final text, and how much changed), and what signing writes (the verified SR
 * named by item and version, so that a retry after a crash rewrites the same file) before
 * the store records it, queues it and files the study in the archive in one transaction;
 * with sr.air, the signed AI Results SR (the final states) is written and queued with it.
 * Every action and every view is audited in the transaction that makes it. It owns nothing
 * past a call. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "review/review_int.h"
#include "radraft/codes.h"
#include "radraft/fhir.h"
#include "radraft/index.h"
#include "radraft/labeler.h"
#include "radraft/log.h"
#include "radraft/review.h"
#include "base/util.h"

void (*rd__review_after_sr)(void) = NULL;

static const char *const reject_reasons[] = {"wrong-findings", "poor-image", "not-chest-radiograph",
                                             "other", NULL};

const char *const *rd_review_reject_reasons(void)
{
    return reject_reasons;
}

/* ---- checks on what a user typed ---- */

static rd_status check_text(const char *what, const char *text, rd_error *err)
{
    size_t n = strlen(text);
    if (n > RD_REVIEW_MAX_TEXT)
        return rd_error_set(err, RD_E_TOO_LARGE, "%s: %zu bytes (at most %d)", what, n,
                            RD_REVIEW_MAX_TEXT);
    if (!rd_utf8_valid(text, n))
        return rd_error_set(err, RD_E_INVALID, "%s: not valid UTF-8", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 && c != '\n' && c != '\r' && c != '\t')
            return rd_error_set(err, RD_E_INVALID, "%s: control character 0x%02x at byte %zu", what,
                                c, i);
    }
    return RD_OK;
}

/* ---- finding states as JSON {finding: state} ---- */

static rd_status states_from_json(const char *json, rd_finding_state st[RD_FINDING_COUNT],
                                  int set[RD_FINDING_COUNT], rd_error *err)
{
    cJSON *root;
    for (int f = 0; f < RD_FINDING_COUNT; f++) {
        st[f] = RD_STATE_NOT_MENTIONED;
        if (set)
            set[f] = 0;
    }
    if (!json)
        return RD_OK;
    if (!(root = cJSON_Parse(json)))
        return rd_error_set(err, RD_E_CORRUPT, "review item: finding states are not JSON");
    for (int f = 0; f < RD_FINDING_COUNT; f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, rd_finding_name((rd_finding)f));
        /* The draft's findings_json holds an object per finding, with its state inside. */
        if (cJSON_IsObject(v))
            v = cJSON_GetObjectItemCaseSensitive(v, "state");
        if (cJSON_IsString(v) && rd_state_from_name(v->valuestring, &st[f], NULL) == RD_OK && set)
            set[f] = 1;
    }
    cJSON_Delete(root);
    return RD_OK;
}

/* Only the findings with set[f] (all when set is NULL). */
static rd_status states_to_json(const rd_finding_state st[RD_FINDING_COUNT],
                                const int set[RD_FINDING_COUNT], char **out, rd_error *err)
{
    cJSON *o = cJSON_CreateObject();
    *out = NULL;
    for (int f = 0; o && f < RD_FINDING_COUNT; f++)
        if ((!set || set[f]) &&
            !cJSON_AddStringToObject(o, rd_finding_name((rd_finding)f), rd_state_name(st[f]))) {
            cJSON_Delete(o);
            o = NULL;
        }
    if (o)
        *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? RD_OK : rd_error_set(err, RD_E_NOMEM, "out of memory");
}

static int positive(rd_finding_state s)
{
    return s == RD_STATE_PRESENT || s == RD_STATE_UNCERTAIN;
}

/* Bytes that differ between two texts: what is left of the longer one once their common
 * beginning and end are taken away. A cheap, stable measure of an edit's size (an exact
 * edit distance of two 64 KiB texts would cost billions of steps). */
static size_t chars_changed(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), pre = 0, suf = 0;
    while (pre < na && pre < nb && a[pre] == b[pre])
        pre++;
    while (suf < na - pre && suf < nb - pre && a[na - 1 - suf] == b[nb - 1 - suf])
        suf++;
    return (na > nb ? na : nb) - pre - suf;
}

/* ---- the actions ---- */

static rd_audit_event event(const char *user, const char *action, int64_t id, const char *study_uid,
                            const char *sr_uid, const char *detail)
{
    rd_audit_event ev = {user, action, id, study_uid, sr_uid, detail};
    return ev;
}

/* The item's study UID, for its audit rows (the store checks the rest). */
static rd_status item_study(rd_store *s, int64_t id, char study[RD_UID_SIZE], rd_error *err)
{
    rd_store_review_item it;
    rd_status st = rd_store_review_get(s, id, &it, err);
    if (st == RD_OK)
        rd_strlcpy(study, it.study_uid, RD_UID_SIZE);
    rd_store_review_item_clear(&it);
    return st;
}

rd_status rd_review_claim(rd_store *s, const rd_config *cfg, int64_t id, const char *user,
                          rd_error *err)
{
    char study[RD_UID_SIZE];
    double now = rd_store_now();
    rd_audit_event ev;
    rd_status st;
    if ((st = rd_review_user_require(s, user, RD_ROLE_RADIOLOGIST, NULL, err)) != RD_OK ||
        (st = item_study(s, id, study, err)) != RD_OK)
        return st;
    ev = event(user, "claim", id, study, NULL, NULL);
    return rd_store_review_claim(s, id, user, now, now + 60.0 * cfg->review_claim_minutes, &ev,
                                 err);
}

rd_status rd_review_release(rd_store *s, int64_t id, const char *user, rd_error *err)
{
    char study[RD_UID_SIZE];
    rd_audit_event ev;
    rd_status st;
    if ((st = rd_review_user_require(s, user, RD_ROLE_RADIOLOGIST, NULL, err)) != RD_OK ||
        (st = item_study(s, id, study, err)) != RD_OK)
        return st;
    ev = event(user, "release", id, study, NULL, NULL);
    return rd_store_review_release(s, id, user, rd_store_now(), &ev, err);
}

rd_status rd_review_show(rd_store *s, int64_t id, const char *user, rd_store_review_item *out,
                         rd_error *err)
{
    rd_audit_event ev;
    rd_status st;
    memset(out, 0, sizeof *out);
    if ((st = rd_review_user_require(s, user, RD_ROLE_VIEWER, NULL, err)) != RD_OK ||
        (st = rd_store_review_get(s, id, out, err)) != RD_OK)
        return st;
    /* Access to patient data is auditable: the view is on record before it is shown. */
    ev = event(user, "view", id, out->study_uid, NULL, NULL);
    if ((st = rd_store_audit_append(s, &ev, err)) != RD_OK)
        rd_store_review_item_clear(out);
    return st;
}

/* The final texts and states of `it` after `c` (NULL: no change), with the edit's size
 * against the draft. `e`'s strings are malloc'ed (free them with edit_free). */
typedef struct edit_result {
    rd_store_review_edit e;
    char *findings, *impression, *explicit_json, *final_json;
    rd_finding_state final_states[RD_FINDING_COUNT];
} edit_result;

static void edit_free(edit_result *r)
{
    free(r->findings);
    free(r->impression);
    cJSON_free(r->explicit_json);
    cJSON_free(r->final_json);
    memset(r, 0, sizeof *r);
}

static rd_status apply_edit(const rd_config *cfg, const rd_store_review_item *it,
                            const rd_review_changes *c, edit_result *r, rd_error *err)
{
    rd_finding_state draft[RD_FINDING_COUNT], expl[RD_FINDING_COUNT];
    int set[RD_FINDING_COUNT];
    rd_labeler *lab = NULL;
    rd_labels labels;
    rd_status st;
    const char *ft, *it_text;

    memset(r, 0, sizeof *r);
    ft = c && c->findings_text     ? c->findings_text
         : it->final_findings_text ? it->final_findings_text
                                   : it->findings_text;
    it_text = c && c->impression_text     ? c->impression_text
              : it->final_impression_text ? it->final_impression_text
                                          : it->impression_text;
    if ((st = check_text("findings text", ft ? ft : "", err)) != RD_OK ||
        (st = check_text("impression text", it_text ? it_text : "", err)) != RD_OK)
        return st;
    if ((st = states_from_json(it->findings_json, draft, NULL, err)) != RD_OK ||
        (st = states_from_json(it->explicit_states, expl, set, err)) != RD_OK)
        return st;
    for (int i = 0; c && i < c->n_set; i++) {
        expl[c->set_finding[i]] = c->set_state[i];
        set[c->set_finding[i]] = 1;
    }
    if (!(r->findings = strdup(ft ? ft : "")) ||
        !(r->impression = strdup(it_text ? it_text : ""))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    /* The final states: the radiologist's explicit choices, else what the final text says. */
    if ((st = rd_labeler_create_from_config(&lab, cfg, err)) != RD_OK ||
        (st = rd_labeler_label(lab, r->findings, r->impression, &labels, err)) != RD_OK)
        goto out;
    for (int f = 0; f < RD_FINDING_COUNT; f++) {
        r->final_states[f] = set[f] ? expl[f] : labels.state[f];
        if (f == RD_FINDING_NO_FINDING)
            continue;
        if (!positive(draft[f]) && positive(r->final_states[f]))
            r->e.findings_added++;
        else if (positive(draft[f]) && !positive(r->final_states[f]))
            r->e.findings_removed++;
        else if (positive(draft[f]) && draft[f] != r->final_states[f])
            r->e.findings_changed++;
    }
    {
        size_t n1 = chars_changed(it->findings_text ? it->findings_text : "", r->findings);
        size_t n2 = chars_changed(it->impression_text ? it->impression_text : "", r->impression);
        r->e.chars_edited = (int)(n1 + n2 > 0x7fffffff ? 0x7fffffff : n1 + n2);
    }
    if ((st = states_to_json(expl, set, &r->explicit_json, err)) != RD_OK ||
        (st = states_to_json(r->final_states, NULL, &r->final_json, err)) != RD_OK)
        goto out;
    r->e.findings_text = r->findings;
    r->e.impression_text = r->impression;
    r->e.explicit_states = r->explicit_json;
    r->e.final_states = r->final_json;
out:
    rd_labeler_free(lab);
    if (st != RD_OK)
        edit_free(r);
    return st;
}

rd_status rd_review_edit(rd_store *s, const rd_config *cfg, int64_t id, const char *user,
                         const rd_review_changes *c, rd_error *err)
{
    rd_store_review_item it;
    edit_result r;
    rd_audit_event ev;
    char detail[96];
    rd_status st;
    memset(&it, 0, sizeof it);
    memset(&r, 0, sizeof r);
    if ((st = rd_review_user_require(s, user, RD_ROLE_RADIOLOGIST, NULL, err)) != RD_OK ||
        (st = rd_store_review_get(s, id, &it, err)) != RD_OK ||
        (st = apply_edit(cfg, &it, c, &r, err)) != RD_OK)
        goto out;
    snprintf(detail, sizeof detail, "findings +%d -%d ~%d, %d characters", r.e.findings_added,
             r.e.findings_removed, r.e.findings_changed, r.e.chars_edited);
    ev = event(user, "edit", id, it.study_uid, NULL, detail);
    st = rd_store_review_save_edit(s, id, user, rd_store_now(), &r.e, &ev, err);
out:
    edit_free(&r);
    rd_store_review_item_clear(&it);
    return st;
}

rd_status rd_review_reject(rd_store *s, int64_t id, const char *user, const char *reason,
                           const char *note, rd_error *err)
{
    char study[RD_UID_SIZE];
    rd_audit_event ev;
    rd_status st;
    int known = 0;
    for (int i = 0; reject_reasons[i]; i++)
        known |= reason && strcmp(reason, reject_reasons[i]) == 0;
    if (!known)
        return rd_error_set(err, RD_E_INVALID,
                            "reject reason '%s': one of wrong-findings, poor-image, "
                            "not-chest-radiograph, other",
                            reason ? reason : "");
    if (strcmp(reason, "other") == 0 && (!note || !note[0]))
        return rd_error_set(err, RD_E_INVALID, "reject reason 'other' needs --note");
    if (note && (st = check_text("note", note, err)) != RD_OK)
        return st;
    if (note && strlen(note) > 1000)
        return rd_error_set(err, RD_E_TOO_LARGE, "note: at most 1000 bytes");
    if ((st = rd_review_user_require(s, user, RD_ROLE_RADIOLOGIST, NULL, err)) != RD_OK ||
        (st = item_study(s, id, study, err)) != RD_OK)
        return st;
    ev = event(user, "reject", id, study, NULL, reason);
    return rd_store_review_reject(s, id, user, rd_store_now(), reason, note, &ev, err);
}

/* ---- signing ---- */

/* The signed SR's path: by item and version, beside the draft, so that a sign retried
 * after a crash rewrites the same file instead of leaving a second one. */
static rd_status signed_path(const rd_store_review_item *it, int version, char *out, size_t size,
                             rd_error *err)
{
    char dir[1024];
    const char *slash = strrchr(it->sr_path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - it->sr_path), it->sr_path);
    else
        rd_strlcpy(dir, ".", sizeof dir);
    if (snprintf(out, size, "%s/%s-%.16s-signed-v%d-sr.dcm", dir, it->study_uid,
                 it->content_version, version) >= (int)size)
        return rd_error_set(err, RD_E_INVALID, "signed SR path too long");
    return RD_OK;
}

/* The signed AI Results SR's path: the signed SR's, "-air-sr.dcm" for "-sr.dcm". */
static rd_status signed_air_path(const char *signed_sr, char *out, size_t size, rd_error *err)
{
    size_t n = strlen(signed_sr);
    if (n < 7 || strcmp(signed_sr + n - 7, "-sr.dcm") != 0 || n - 7 > 0x7fffffff ||
        snprintf(out, size, "%.*s-air-sr.dcm", (int)(n - 7), signed_sr) >= (int)size)
        return rd_error_set(err, RD_E_INVALID, "signed AI results SR path too long");
    return RD_OK;
}

/* The signed version of the item's AI Results SR (sr.air): the final states over the
 * previous signed version's AI results (an amendment) or the draft's. *written is 0 when
 * there is none to sign (sr.air off, an item drafted without one). */
static rd_status sign_air(const rd_config *cfg, rd_store *s, const rd_store_review_item *it,
                          int amend, const rd_finding_state *final_states, const char *verifier,
                          const rd_sr_codes *codes, const char *signed_sr, char *path, size_t size,
                          rd_sr_result *res, int *written, rd_error *err)
{
    rd_sr_air_sign_params ap;
    char prev[1024], prev_uid[RD_UID_SIZE];
    const char *in = it->air_sr_path;
    rd_status st;
    *written = 0;
    path[0] = '\0';
    rd_sr_air_sign_params_init(&ap);
    if (amend) {
        if ((st = rd_store_review_current_air_signature(s, it->id, prev, prev_uid, err)) != RD_OK)
            return st;
        if (prev[0]) {
            in = prev;
            ap.amend = 1;
        }
    }
    if (!cfg->sr_air || !in[0])
        return RD_OK;
    if ((st = signed_air_path(signed_sr, path, size, err)) != RD_OK)
        return st;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        ap.states[f] = final_states[f];
    ap.verifier_name = verifier;
    ap.organization = cfg->review_organization;
    ap.codes = codes;
    if ((st = rd_sr_write_air_signed(in, &ap, path, res, err)) != RD_OK) {
        path[0] = '\0';
        return rd_error_prefix(err, st, "signed AI results SR");
    }
    *written = 1;
    return RD_OK;
}

/* The FHIR Bundle of a signed SR (fhir.enabled): the final states, the model's
 * probabilities as drafted, the device named as the draft's AI results name it (else as
 * its text SR does), in the lifecycle of the item's draft. "" in `path` when off. */
static rd_status sign_fhir(const rd_config *cfg, const rd_store_review_item *it, int amended,
                           const rd_finding_state *final_states, const rd_sr_codes *codes,
                           const char *signed_sr, char *path, size_t size, rd_error *err)
{
    rd_fhir_params fp;
    rd_sr_info dev;
    cJSON *scores;
    char key[RD_UID_SIZE + RD_SHA256_HEX_SIZE + 2];
    rd_status st;
    path[0] = '\0';
    if (!cfg->fhir_enabled)
        return RD_OK;
    if ((st = rd_fhir_path(signed_sr, path, size, err)) != RD_OK ||
        (st = rd_sr_read(it->air_sr_path[0] ? it->air_sr_path : it->sr_path, NULL, &dev, err)) !=
            RD_OK) {
        path[0] = '\0';
        return rd_error_prefix(err, st, "signed FHIR Bundle");
    }
    rd_fhir_params_init(&fp);
    snprintf(key, sizeof key, "%s/%s", it->study_uid, it->content_version);
    fp.sr_path = signed_sr;
    fp.report_key = key;
    fp.amended = amended;
    fp.device_uid = dev.device_uid;
    fp.device_name = dev.device_model_name;
    fp.codes = codes;
    scores = it->findings_json ? cJSON_Parse(it->findings_json) : NULL;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(scores, rd_finding_name((rd_finding)f));
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "score");
        fp.findings[f].state = final_states[f];
        if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1)
            fp.findings[f].probability = v->valuedouble;
    }
    cJSON_Delete(scores);
    st = rd_fhir_write(&fp, path, err);
    rd_sr_info_free(&dev);
    if (st != RD_OK) {
        path[0] = '\0';
        return rd_error_prefix(err, st, "signed FHIR Bundle");
    }
    return RD_OK;
}

/* The archive entry of a signed study: its draft-time embedding and the signed states. */
static void archive_row(const rd_store_review_item *it, const rd_finding_state *st,
                        const char *findings, const char *impression, char key[96],
                        char states[RD_FINDING_COUNT + 1], rd_store_archive_row *row)
{
    snprintf(key, 96, "signed:%s", it->study_uid);
    for (int f = 0; f < RD_FINDING_COUNT; f++)
        states[f] = (char)('0' + (int)st[f]);
    states[RD_FINDING_COUNT] = '\0';
    memset(row, 0, sizeof *row);
    row->model_version = it->model_version;
    row->key = key;
    row->study_uid = it->study_uid;
    row->patient_hash = it->patient_hash;
    row->view = it->view;
    row->study_date = it->study_date;
    row->source = RD_ARCHIVE_SIGNED;
    row->states = states;
    row->findings_text = findings;
    row->impression_text = impression;
    row->dim = it->dim;
    row->embedding = it->embedding;
}

rd_status rd_review_sign(rd_store *s, const rd_config *cfg, int64_t id, const char *user,
                         const rd_review_changes *amend, rd_review_signed *out, rd_error *err)
{
    rd_store_review_item it;
    rd_store_user u;
    edit_result r;
    rd_sr_sign_params sp;
    rd_sr_result res, air_res;
    rd_sr_finding coded[RD_FINDING_N_ABNORMAL];
    rd_sr_codes codes;
    rd_store_signature sig;
    rd_store_archive_row row;
    rd_audit_event ev;
    const char *dests[RD_CONFIG_LIST_MAX];
    char path[1100], prev_path[1024], prev_uid[RD_UID_SIZE], key[96], states[RD_FINDING_COUNT + 1],
        detail[64], air_path[1200], fhir_path[1200];
    int version = 0, nd = 0, air = 0;
    size_t nc = 0;
    rd_status st;

    memset(&it, 0, sizeof it);
    memset(&r, 0, sizeof r);
    memset(out, 0, sizeof *out);
    if (!cfg->review_organization[0])
        return rd_error_set(err, RD_E_CONFIG,
                            "set review.organization: a signed SR names the verifying "
                            "organization");
    if ((st = rd_review_user_require(s, user, RD_ROLE_RADIOLOGIST, &u, err)) != RD_OK ||
        (st = rd_store_review_get(s, id, &it, err)) != RD_OK ||
        (st = rd_store_review_current_signature(s, id, &version, prev_path, prev_uid, err)) !=
            RD_OK)
        goto out;
    /* An amendment is a new version of a signed item; the first signature needs the claim
     * (checked again by the store inside its transaction). */
    if (amend && it.state != RD_REVIEW_SIGNED) {
        st = rd_error_set(err, RD_E_INVALID, "item %lld is %s: only a signed item is amended",
                          (long long)id, rd_review_state_name(it.state));
        goto out;
    }
    if (!amend && it.state != RD_REVIEW_IN_REVIEW) {
        st = rd_error_set(err, RD_E_INVALID, "item %lld is %s: claim it before signing",
                          (long long)id, rd_review_state_name(it.state));
        goto out;
    }
    if (!amend && strcmp(it.claimed_by, user) != 0) {
        st = rd_error_set(err, RD_E_DENIED, "item %lld is claimed by %s: sign refused",
                          (long long)id, it.claimed_by);
        goto out;
    }
    if ((st = apply_edit(cfg, &it, amend, &r, err)) != RD_OK ||
        (st = signed_path(&it, version + 1, path, sizeof path, err)) != RD_OK)
        goto out;

    /* The SR first, durable, then the record: a crash in between leaves the item as it was
     * (claimed, or signed at the previous version) and an SR file the retry overwrites. */
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        if (positive(r.final_states[f])) {
            coded[nc].name = rd_finding_name((rd_finding)f);
            coded[nc].state = r.final_states[f];
            coded[nc].score = -1; /* the radiologist's call, not a model's */
            nc++;
        }
    if ((st = rd_sr_codes_load(&codes, cfg->sr_finding_codes, err)) != RD_OK) {
        st = rd_error_prefix(err, st, "sr.finding_codes");
        goto out;
    }
    rd_sr_sign_params_init(&sp);
    sp.codes = &codes;
    sp.verifier_name = u.display_name;
    sp.organization = cfg->review_organization;
    sp.findings_text = r.findings;
    sp.impression_text = r.impression;
    sp.replace_findings = 1;
    sp.findings = coded;
    sp.n_findings = nc;
    sp.amend = amend != NULL;
    if ((st = rd_sr_write_signed(amend ? prev_path : it.sr_path, &sp, path, &res, err)) != RD_OK)
        goto out;
    if ((st = sign_air(cfg, s, &it, amend != NULL, r.final_states, u.display_name, &codes, path,
                       air_path, sizeof air_path, &air_res, &air, err)) != RD_OK ||
        (st = sign_fhir(cfg, &it, amend != NULL, r.final_states, &codes, path, fhir_path,
                        sizeof fhir_path, err)) != RD_OK)
        goto out;
    if (rd__review_after_sr)
        rd__review_after_sr();

    memset(&sig, 0, sizeof sig);
    sig.version = version + 1;
    sig.sr_path = path;
    sig.sr_sop_instance_uid = res.sop_instance_uid;
    sig.predecessor_sop_instance_uid = amend ? prev_uid : it.sr_sop_instance_uid;
    sig.air_sr_path = air ? air_path : NULL;
    sig.air_sr_sop_instance_uid = air ? air_res.sop_instance_uid : NULL;
    sig.fhir_path = fhir_path;
    sig.fhir_destination = cfg->fhir_endpoint;
    sig.findings_text = r.findings;
    sig.impression_text = r.impression;
    sig.final_states = r.final_json;
    if (it.embedding && it.dim > 0) {
        archive_row(&it, r.final_states, r.findings, r.impression, key, states, &row);
        sig.archive = &row;
    }
    for (int i = 0; i < cfg->outbox_destinations.count; i++)
        dests[nd++] = cfg->outbox_destinations.items[i];
    snprintf(detail, sizeof detail, "version %d", sig.version);
    ev = event(user, amend ? "amend" : "sign", id, it.study_uid, res.sop_instance_uid, detail);
    if ((st = rd_store_review_sign(s, id, user, rd_store_now(), &sig, dests, nd, &ev, err)) !=
        RD_OK)
        goto out;
    out->version = sig.version;
    rd_strlcpy(out->sr_path, path, sizeof out->sr_path);
    rd_strlcpy(out->sr_sop_instance_uid, res.sop_instance_uid, sizeof out->sr_sop_instance_uid);
    rd_strlcpy(out->series_uid, res.series_uid, sizeof out->series_uid);
    rd_strlcpy(out->predecessor_sop_instance_uid, sig.predecessor_sop_instance_uid,
               sizeof out->predecessor_sop_instance_uid);
    if (air) {
        rd_strlcpy(out->air_sr_path, air_path, sizeof out->air_sr_path);
        rd_strlcpy(out->air_sr_sop_instance_uid, air_res.sop_instance_uid,
                   sizeof out->air_sr_sop_instance_uid);
    }
    rd_strlcpy(out->fhir_path, fhir_path, sizeof out->fhir_path);
    out->destinations = nd;
    out->archived = sig.archive != NULL;
out:
    edit_free(&r);
    rd_store_review_item_clear(&it);
    return st;
}

/* ---- stats ---- */

typedef struct stats_ctx {
    rd_store *s;
    double since;
    rd_review_stats *out;
    double *delays;
    long n_delays, cap_delays;
} stats_ctx;

static rd_status stats_row(void *vctx, const rd_store_review_item *sum, rd_error *err)
{
    stats_ctx *c = vctx;
    rd_review_stats *o = c->out;
    rd_store_review_item it;
    rd_finding_state draft[RD_FINDING_COUNT], fin[RD_FINDING_COUNT];
    rd_status st;
    if (sum->created_at < c->since)
        return RD_OK;
    o->items++;
    o->per_state[sum->state]++;
    if (sum->state != RD_REVIEW_SIGNED)
        return RD_OK;
    if ((st = rd_store_review_get(c->s, sum->id, &it, err)) != RD_OK)
        return st;
    st = states_from_json(it.findings_json, draft, NULL, err);
    if (st == RD_OK)
        st = states_from_json(it.final_states, fin, NULL, err);
    if (st == RD_OK) {
        int unchanged = it.findings_added + it.findings_removed + it.findings_changed == 0 &&
                        it.chars_edited == 0;
        o->signed_unchanged += unchanged;
        o->chars_edited_sum += it.chars_edited;
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
            int d = positive(draft[f]), g = positive(fin[f]);
            o->tp[f] += d && g;
            o->fp[f] += d && !g;
            o->fn[f] += !d && g;
        }
        if (c->n_delays == c->cap_delays) {
            long ncap = c->cap_delays ? c->cap_delays * 2 : 64;
            double *nv = realloc(c->delays, (size_t)ncap * sizeof *nv);
            if (!nv)
                st = rd_error_set(err, RD_E_NOMEM, "out of memory");
            else {
                c->delays = nv;
                c->cap_delays = ncap;
            }
        }
        if (st == RD_OK)
            c->delays[c->n_delays++] = it.signed_at - it.created_at;
    }
    rd_store_review_item_clear(&it);
    return st;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

rd_status rd_review_compute_stats(rd_store *s, double since, rd_review_stats *out, rd_error *err)
{
    stats_ctx c = {s, since, out, NULL, 0, 0};
    rd_status st;
    memset(out, 0, sizeof *out);
    st = rd_store_review_list(s, -1, 0, 0, stats_row, &c, err);
    if (st == RD_OK && c.n_delays > 0) {
        qsort(c.delays, (size_t)c.n_delays, sizeof *c.delays, cmp_double);
        out->median_seconds_to_sign =
            c.n_delays % 2 ? c.delays[c.n_delays / 2]
                           : (c.delays[c.n_delays / 2 - 1] + c.delays[c.n_delays / 2]) / 2;
    }
    free(c.delays);
    return st;
}
