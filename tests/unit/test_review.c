/* The review queue's library (src/review/queue.c over src/store/store_reviews.c) with a real
 * store, real drafts from the pipeline and real SRs: every transition from every state,
 * each refusal changing nothing, the edit's final states and size, signing durably even
 * when the process dies between the SR and its record, stats, and a signed study teaching a
 * running pipeline without a restart. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "review/review_int.h"
#include "store/store_int.h"
#include "radraft/codes.h"
#include "radraft/config.h"
#include "radraft/nn.h"
#include "radraft/pipeline.h"
#include "radraft/review.h"
#include "radraft/samples.h"
#include "radraft/store.h"
#include "rdtest.h"
#include "rdtest_store.h"
#include "base/util.h"

typedef struct fixture {
    char dir[1024], data[1100], model[1100];
    rd_config cfg;
    rd_pipeline *p;
    rd_pipeline_worker *w;
    rd_store *s;
    int64_t items[4]; /* one drafted study per sample patient */
    char files[4][2][1200];
} fixture;

static void add_user(rd_store *s, const char *name, rd_user_role role, const char *pn)
{
    rd_store_user u;
    rd_error err;
    memset(&u, 0, sizeof u);
    rd_strlcpy(u.name, name, sizeof u.name);
    rd_strlcpy(u.display_name, pn, sizeof u.display_name);
    u.role = role;
    CHECK_OK(rd_store_user_add(s, &u, &err), &err);
}

/* Drafts the four sample studies with a random model (it has an embedding), adds users. */
static int fixture_make(fixture *f, const char *name)
{
    rd_pipeline_options po;
    rd_samples_options so;
    rd_error err;
    memset(f, 0, sizeof *f);
    rd_strlcpy(f->dir, rd_test_tmpdir(name), sizeof f->dir);
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    snprintf(f->model, sizeof f->model, "%s/model", f->dir);
    if (rd_nn_model_init("resnet-small", 1, f->model, &err) != RD_OK)
        return 0;
    rd_config_defaults(&f->cfg);
    rdt_config_store(&f->cfg, f->data);
    rd_strlcpy(f->cfg.encoder_model, f->model, sizeof f->cfg.encoder_model);
    rd_strlcpy(f->cfg.review_organization, "Test Hospital", sizeof f->cfg.review_organization);
    snprintf(f->cfg.outbox_destinations.items[0], sizeof f->cfg.outbox_destinations.items[0],
             "PACS@127.0.0.1:104");
    f->cfg.outbox_destinations.count = 1;
    rd_samples_options_default(&so);
    so.rows = 256;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 2; k++) {
            char rel[128], *slash;
            if (rd_samples_case_path((size_t)(2 * i + k), rel, sizeof rel, &err) != RD_OK)
                return 0;
            snprintf(f->files[i][k], sizeof f->files[i][k], "%s/%s", f->dir, rel);
            slash = strrchr(f->files[i][k], '/');
            *slash = '\0';
            mkdir(f->files[i][k], 0755);
            *slash = '/';
            if (rd_samples_write_case((size_t)(2 * i + k), &so, f->files[i][k], &err) != RD_OK)
                return 0;
        }
    memset(&po, 0, sizeof po);
    po.data_dir = f->data;
    po.encoder_threads = 1;
    if (rd_pipeline_create(&f->p, &f->cfg, &po, &err) != RD_OK ||
        rd_pipeline_worker_create(&f->w, f->p, &err) != RD_OK ||
        rd_store_open(&f->s, f->data, rdt_store_opts(f->data), &err) != RD_OK) {
        fprintf(stderr, "fixture: %s\n", rd_error_message(&err));
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        const char *files[2] = {f->files[i][0], f->files[i][1]};
        rd_pipeline_result res;
        if (rd_pipeline_run_study(f->w, files, 2, &res, &err) != RD_OK ||
            res.outcome != RD_PIPELINE_DRAFTED) {
            fprintf(stderr, "fixture: study %d: %s\n", i, rd_error_message(&err));
            return 0;
        }
        f->items[i] = res.review_id;
    }
    add_user(f->s, "alice", RD_ROLE_RADIOLOGIST, "Smith^Alice");
    add_user(f->s, "bob", RD_ROLE_RADIOLOGIST, "Jones^Bob");
    add_user(f->s, "vic", RD_ROLE_VIEWER, "Viewer^Vic");
    return 1;
}

static void fixture_free(fixture *f)
{
    rd_store_close(f->s);
    rd_pipeline_worker_free(f->w);
    rd_pipeline_free(f->p);
}

static rd_review_state state_of(fixture *f, int64_t id)
{
    rd_store_review_item it;
    rd_error err;
    rd_review_state st = (rd_review_state)-1;
    if (rd_store_review_get(f->s, id, &it, &err) == RD_OK)
        st = it.state;
    rd_store_review_item_clear(&it);
    return st;
}

static long count(fixture *f, const char *sql)
{
    long n = -1;
    rd_error err;
    if (rd__count(f->s, sql, RD__NO_ARGS, &n, &err) != RD_OK)
        fprintf(stderr, "count: %s\n", rd_error_message(&err));
    return n;
}

/* What a refused action must leave as it was. */
typedef struct snapshot {
    rd_review_state state;
    double updated_at;
    long audit, outbox, signatures;
} snapshot;

static snapshot snap(fixture *f, int64_t id)
{
    snapshot sn;
    rd_store_review_item it;
    rd_error err;
    memset(&sn, 0, sizeof sn);
    if (rd_store_review_get(f->s, id, &it, &err) == RD_OK) {
        sn.state = it.state;
        sn.updated_at = it.updated_at;
    }
    rd_store_review_item_clear(&it);
    sn.audit = count(f, "SELECT COUNT(*) FROM audit");
    sn.outbox = count(f, "SELECT COUNT(*) FROM outbox");
    sn.signatures = count(f, "SELECT COUNT(*) FROM signatures");
    return sn;
}

static int same(snapshot a, snapshot b)
{
    return a.state == b.state && a.updated_at == b.updated_at && a.audit == b.audit &&
           a.outbox == b.outbox && a.signatures == b.signatures;
}

/* Every action as bob on item `id`; `want[i]` the status of action i (RD_OK: allowed, not
 * tried here). Each refusal must change nothing. */
static void expect_refusals(fixture *f, int64_t id, const char *where, const rd_status want[6])
{
    static const char *const names[6] = {"claim", "release", "edit", "reject", "sign", "amend"};
    rd_review_changes c;
    rd_review_signed sg;
    memset(&c, 0, sizeof c);
    c.impression_text = "Changed.";
    for (int a = 0; a < 6; a++) {
        rd_error err;
        rd_status st;
        snapshot before = snap(f, id);
        if (want[a] == RD_OK)
            continue;
        switch (a) {
        case 0:
            st = rd_review_claim(f->s, &f->cfg, id, "bob", &err);
            break;
        case 1:
            st = rd_review_release(f->s, id, "bob", &err);
            break;
        case 2:
            st = rd_review_edit(f->s, &f->cfg, id, "bob", &c, &err);
            break;
        case 3:
            st = rd_review_reject(f->s, id, "bob", "poor-image", NULL, &err);
            break;
        case 4:
            st = rd_review_sign(f->s, &f->cfg, id, "bob", NULL, &sg, &err);
            break;
        default:
            st = rd_review_sign(f->s, &f->cfg, id, "bob", &c, &sg, &err);
            break;
        }
        CHECK_MSG(st == want[a], "%s: %s gave %s (%s), wanted %s", where, names[a],
                  rd_status_name(st), st == RD_OK ? "" : rd_error_message(&err),
                  rd_status_name(want[a]));
        CHECK_MSG(same(before, snap(f, id)), "%s: a refused %s changed something", where, names[a]);
    }
}

RD_TEST(transitions_from_every_state)
{
    fixture f;
    rd_error err;
    rd_review_changes c;
    rd_review_signed sg;
    REQUIRE(fixture_make(&f, "review_transitions"));
    const rd_status I = RD_E_INVALID, D = RD_E_DENIED, Y = RD_OK;

    /* draft: only a claim (tried below) */
    expect_refusals(&f, f.items[0], "draft", (rd_status[6]){Y, I, I, I, I, I});
    /* in_review, held by alice: bob is refused everything, naming her */
    CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[0], "alice", &err), &err);
    CHECK_EQ_INT(state_of(&f, f.items[0]), RD_REVIEW_IN_REVIEW);
    expect_refusals(&f, f.items[0], "in_review", (rd_status[6]){D, D, D, D, D, I});
    CHECK_EQ_INT(rd_review_claim(f.s, &f.cfg, f.items[0], "bob", &err), RD_E_DENIED);
    CHECK(strstr(rd_error_message(&err), "alice") != NULL);
    /* a viewer may read but not act; an unknown user nothing */
    CHECK_EQ_INT(rd_review_claim(f.s, &f.cfg, f.items[1], "vic", &err), RD_E_DENIED);
    CHECK_EQ_INT(rd_review_claim(f.s, &f.cfg, f.items[1], "nobody", &err), RD_E_NOT_FOUND);
    CHECK_EQ_INT(rd_review_claim(f.s, &f.cfg, 424242, "alice", &err), RD_E_NOT_FOUND);
    /* release and claim again; then sign: signed allows only an amendment */
    CHECK_OK(rd_review_release(f.s, f.items[0], "alice", &err), &err);
    CHECK_EQ_INT(state_of(&f, f.items[0]), RD_REVIEW_DRAFT);
    CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[0], "alice", &err), &err);
    CHECK_OK(rd_review_sign(f.s, &f.cfg, f.items[0], "alice", NULL, &sg, &err), &err);
    CHECK_EQ_INT(sg.version, 1);
    CHECK_EQ_INT(state_of(&f, f.items[0]), RD_REVIEW_SIGNED);
    expect_refusals(&f, f.items[0], "signed", (rd_status[6]){I, I, I, I, I, Y});
    memset(&c, 0, sizeof c);
    c.findings_text = "Amended findings.";
    CHECK_OK(rd_review_sign(f.s, &f.cfg, f.items[0], "bob", &c, &sg, &err), &err);
    CHECK_EQ_INT(sg.version, 2);
    /* rejected: nothing more */
    CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[1], "alice", &err), &err);
    CHECK_EQ_INT(rd_review_reject(f.s, f.items[1], "alice", "other", NULL, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_review_reject(f.s, f.items[1], "alice", "dull", "x", &err), RD_E_INVALID);
    CHECK_OK(rd_review_reject(f.s, f.items[1], "alice", "other", "not my patient", &err), &err);
    CHECK_EQ_INT(state_of(&f, f.items[1]), RD_REVIEW_REJECTED);
    expect_refusals(&f, f.items[1], "rejected", (rd_status[6]){I, I, I, I, I, I});
    /* superseded: a new content version of the study replaces its waiting draft */
    {
        rd_store_review_item it;
        rd_store_review r;
        int64_t newer = 0;
        int added = 0;
        CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[2], "alice", &err), &err);
        REQUIRE_OK(rd_store_review_get(f.s, f.items[2], &it, &err), &err);
        memset(&r, 0, sizeof r);
        r.study_uid = it.study_uid;
        r.content_version = "another-version";
        r.sr_path = it.sr_path;
        r.findings_json = "{}";
        CHECK_OK(rd_store_review_add(f.s, &r, NULL, 0, &newer, &added, &err), &err);
        CHECK_EQ_INT(added, 1);
        rd_store_review_item_clear(&it);
        REQUIRE_OK(rd_store_review_get(f.s, f.items[2], &it, &err), &err);
        CHECK_EQ_INT(it.state, RD_REVIEW_SUPERSEDED);
        CHECK(it.superseded_by == newer);
        CHECK(it.claimed_by[0] == '\0');
        rd_store_review_item_clear(&it);
        expect_refusals(&f, f.items[2], "superseded", (rd_status[6]){I, I, I, I, I, I});
    }
    /* an expired claim is taken over */
    {
        rd_config quick = f.cfg;
        rd_audit_event ev = {"alice", "claim", f.items[3], NULL, NULL, NULL};
        double now = rd_store_now();
        CHECK_OK(rd_store_review_claim(f.s, f.items[3], "alice", now - 100, now - 1, &ev, &err),
                 &err);
        CHECK_EQ_INT(rd_review_edit(f.s, &quick, f.items[3], "alice", &c, &err), RD_E_DENIED);
        CHECK(strstr(rd_error_message(&err), "expired") != NULL);
        CHECK_OK(rd_review_claim(f.s, &quick, f.items[3], "bob", &err), &err);
    }
    CHECK_OK(rd_store_audit_verify(f.s, NULL, NULL, &err), &err);
    fixture_free(&f);
}

/* The final states, one per finding, as the item records them (JSON {finding: state}). */
static void final_states_of(fixture *f, int64_t id, rd_finding_state st[RD_FINDING_COUNT])
{
    rd_store_review_item it;
    rd_error err;
    for (int k = 0; k < RD_FINDING_COUNT; k++)
        st[k] = RD_STATE_NOT_MENTIONED;
    REQUIRE_OK(rd_store_review_get(f->s, id, &it, &err), &err);
    cJSON *o = cJSON_Parse(it.final_states ? it.final_states : "");
    REQUIRE(o != NULL);
    for (int k = 0; k < RD_FINDING_N_ABNORMAL; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, rd_finding_name((rd_finding)k));
        REQUIRE(cJSON_IsString(v));
        REQUIRE_OK(rd_state_from_name(v->valuestring, &st[k], &err), &err);
    }
    cJSON_Delete(o);
    rd_store_review_item_clear(&it);
}

/* The AI Results SR's states read back: each finding's state, not mentioned written absent. */
static void check_air_states(const char *path, const rd_finding_state *want)
{
    rd_sr_codes codes;
    rd_sr_info info;
    rd_error err;
    REQUIRE_OK(rd_sr_codes_load(&codes, NULL, &err), &err);
    REQUIRE_OK(rd_sr_read(path, &codes, &info, &err), &err);
    CHECK(info.is_air);
    CHECK_STR(info.verification_flag, "VERIFIED");
    CHECK_EQ_INT(info.n_findings, RD_FINDING_N_ABNORMAL);
    for (int k = 0; k < info.n_findings; k++) {
        rd_finding_state w = want[info.findings[k].finding];
        CHECK_EQ_INT(info.findings[k].state, w == RD_STATE_NOT_MENTIONED ? RD_STATE_ABSENT : w);
        CHECK(info.findings[k].score >= 0 && info.findings[k].score <= 1);
    }
    rd_sr_info_free(&info);
}

/* Signing also signs the draft's AI Results SR with the final states, in its own series,
 * queued with the signed SR; an amendment signs the signed one again; sr.air off signs the
 * text report alone. */
RD_TEST(sign_writes_the_signed_ai_results)
{
    fixture f;
    rd_error err;
    rd_review_changes c;
    rd_review_signed sg, sg2;
    rd_finding_state fin[RD_FINDING_COUNT];
    char series[RD_UID_SIZE], air1[1024];
    rd_store_review_item it;
    REQUIRE(fixture_make(&f, "review_sign_air"));
    REQUIRE_OK(rd_store_review_get(f.s, f.items[0], &it, &err), &err);
    REQUIRE(it.air_sr_path[0]);
    REQUIRE_OK(rd_sr_signed_air_series_uid(it.study_uid, series, &err), &err);
    long outbox = count(&f, "SELECT COUNT(*) FROM outbox");

    CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[0], "alice", &err), &err);
    memset(&c, 0, sizeof c);
    c.set_finding[0] = RD_FINDING_PNEUMOTHORAX;
    c.set_state[0] = RD_STATE_PRESENT;
    c.n_set = 1;
    CHECK_OK(rd_review_edit(f.s, &f.cfg, f.items[0], "alice", &c, &err), &err);
    CHECK_OK(rd_review_sign(f.s, &f.cfg, f.items[0], "alice", NULL, &sg, &err), &err);
    CHECK(strstr(sg.air_sr_path, "-signed-v1-air-sr.dcm") != NULL);
    CHECK(sg.air_sr_sop_instance_uid[0]);
    CHECK_EQ_INT(count(&f, "SELECT COUNT(*) FROM outbox") - outbox, 2);
    CHECK_EQ_INT(count(&f, "SELECT COUNT(*) FROM signatures WHERE air_sr_path IS NOT NULL"), 1);
    final_states_of(&f, f.items[0], fin);
    CHECK_EQ_INT(fin[RD_FINDING_PNEUMOTHORAX], RD_STATE_PRESENT);
    check_air_states(sg.air_sr_path, fin);
    {
        rd_sr_info info;
        REQUIRE_OK(rd_sr_read(sg.air_sr_path, NULL, &info, &err), &err);
        CHECK_STR(info.series_uid, series);
        CHECK_STR(info.predecessor_sop_uid, it.air_sr_sop_instance_uid);
        CHECK_STR(info.verifier_name, "Smith^Alice");
        rd_sr_info_free(&info);
    }
    rd_strlcpy(air1, sg.air_sr_sop_instance_uid, sizeof air1);

    /* The amendment: Pneumothorax withdrawn; its predecessor is the first signed one. */
    memset(&c, 0, sizeof c);
    c.set_finding[0] = RD_FINDING_PNEUMOTHORAX;
    c.set_state[0] = RD_STATE_ABSENT;
    c.n_set = 1;
    CHECK_OK(rd_review_sign(f.s, &f.cfg, f.items[0], "bob", &c, &sg2, &err), &err);
    CHECK(strstr(sg2.air_sr_path, "-signed-v2-air-sr.dcm") != NULL);
    final_states_of(&f, f.items[0], fin);
    CHECK_EQ_INT(fin[RD_FINDING_PNEUMOTHORAX], RD_STATE_ABSENT);
    check_air_states(sg2.air_sr_path, fin);
    {
        rd_sr_info info;
        REQUIRE_OK(rd_sr_read(sg2.air_sr_path, NULL, &info, &err), &err);
        CHECK_STR(info.series_uid, series);
        CHECK_STR(info.predecessor_sop_uid, air1);
        CHECK_STR(info.verifier_name, "Jones^Bob");
        rd_sr_info_free(&info);
    }
    rd_store_review_item_clear(&it);

    /* sr.air off: the text report alone. */
    rd_config off = f.cfg;
    off.sr_air = 0;
    outbox = count(&f, "SELECT COUNT(*) FROM outbox");
    CHECK_OK(rd_review_claim(f.s, &off, f.items[1], "alice", &err), &err);
    CHECK_OK(rd_review_sign(f.s, &off, f.items[1], "alice", NULL, &sg, &err), &err);
    CHECK_STR(sg.air_sr_path, "");
    CHECK_EQ_INT(count(&f, "SELECT COUNT(*) FROM outbox") - outbox, 1);
    fixture_free(&f);
}

RD_TEST(edit_sets_final_states_and_size)
{
    fixture f;
    rd_error err;
    rd_review_changes c;
    rd_store_review_item it;
    REQUIRE(fixture_make(&f, "review_edit"));
    CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[0], "alice", &err), &err);
    /* Unchanged text, one explicit finding: it is in the final states, the rest follows the
     * labeler's reading of the (unchanged) text. */
    /* A finding the draft does not call present or uncertain (the random model's drafts
     * vary), made present. */
    rd_finding pick = RD_FINDING_COUNT;
    char want[96];
    REQUIRE_OK(rd_store_review_get(f.s, f.items[0], &it, &err), &err);
    for (int k = 0; k < RD_FINDING_N_ABNORMAL && pick == RD_FINDING_COUNT; k++) {
        char pres[96], unc[96];
        snprintf(pres, sizeof pres, "\"%s\":{\"state\":\"present\"", rd_finding_name(k));
        snprintf(unc, sizeof unc, "\"%s\":{\"state\":\"uncertain\"", rd_finding_name(k));
        if (!strstr(it.findings_json, pres) && !strstr(it.findings_json, unc))
            pick = (rd_finding)k;
    }
    rd_store_review_item_clear(&it);
    REQUIRE(pick != RD_FINDING_COUNT);
    memset(&c, 0, sizeof c);
    c.n_set = 1;
    c.set_finding[0] = pick;
    c.set_state[0] = RD_STATE_PRESENT;
    CHECK_OK(rd_review_edit(f.s, &f.cfg, f.items[0], "alice", &c, &err), &err);
    REQUIRE_OK(rd_store_review_get(f.s, f.items[0], &it, &err), &err);
    snprintf(want, sizeof want, "\"%s\":\"present\"", rd_finding_name(pick));
    CHECK(it.final_states && strstr(it.final_states, want));
    CHECK(it.explicit_states && strstr(it.explicit_states, rd_finding_name(pick)));
    CHECK_EQ_INT(it.findings_added, 1);
    CHECK_EQ_INT(it.chars_edited, 0);
    CHECK_STR(it.edited_by, "alice");
    rd_store_review_item_clear(&it);
    /* New text: the labeler reads it (the explicit choice stays). */
    memset(&c, 0, sizeof c);
    c.findings_text = "Large right pleural effusion.";
    CHECK_OK(rd_review_edit(f.s, &f.cfg, f.items[0], "alice", &c, &err), &err);
    REQUIRE_OK(rd_store_review_get(f.s, f.items[0], &it, &err), &err);
    CHECK(strstr(it.final_states, "\"Effusion\":\"present\"") != NULL);
    CHECK(strstr(it.final_states, want) != NULL);
    CHECK(it.chars_edited > 0);
    CHECK_STR(it.final_findings_text, "Large right pleural effusion.");
    rd_store_review_item_clear(&it);
    /* Bad text changes nothing. */
    {
        char big[RD_REVIEW_MAX_TEXT + 2];
        snapshot before = snap(&f, f.items[0]);
        memset(big, 'a', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        c.findings_text = big;
        CHECK_EQ_INT(rd_review_edit(f.s, &f.cfg, f.items[0], "alice", &c, &err), RD_E_TOO_LARGE);
        c.findings_text = "bad \xc3\x28 UTF-8";
        CHECK_EQ_INT(rd_review_edit(f.s, &f.cfg, f.items[0], "alice", &c, &err), RD_E_INVALID);
        c.findings_text = "a\x01 control";
        CHECK_EQ_INT(rd_review_edit(f.s, &f.cfg, f.items[0], "alice", &c, &err), RD_E_INVALID);
        CHECK(same(before, snap(&f, f.items[0])));
    }
    fixture_free(&f);
}

static void die_now(void)
{
    _exit(9);
}

/* kill -9 between the SR and its record: the item stays claimed with nothing queued; the
 * retry signs it once, with one delivery. */
RD_TEST(sign_survives_a_crash_between_sr_and_record)
{
    fixture f;
    rd_error err;
    rd_review_signed sg;
    char sql[1400];
    REQUIRE(fixture_make(&f, "review_crash"));
    CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[0], "alice", &err), &err);
    long outbox_before = count(&f, "SELECT COUNT(*) FROM outbox");
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        rd_store *own = NULL;
        rd__review_after_sr = die_now;
        if (rd_store_open(&own, f.data, rdt_store_opts(f.data), &err) != RD_OK)
            _exit(2);
        (void)rd_review_sign(own, &f.cfg, f.items[0], "alice", NULL, &sg, &err);
        _exit(3); /* not reached when the hook ran */
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 9);
    CHECK_EQ_INT(state_of(&f, f.items[0]), RD_REVIEW_IN_REVIEW);
    CHECK_EQ_INT((int)count(&f, "SELECT COUNT(*) FROM signatures"), 0);
    CHECK_EQ_INT((int)count(&f, "SELECT COUNT(*) FROM outbox"), (int)outbox_before);
    /* The retry: signed once, queued once, the audit chain intact. */
    CHECK_OK(rd_review_sign(f.s, &f.cfg, f.items[0], "alice", NULL, &sg, &err), &err);
    CHECK_EQ_INT(state_of(&f, f.items[0]), RD_REVIEW_SIGNED);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM outbox WHERE file='%s'", sg.sr_path);
    CHECK_EQ_INT((int)count(&f, sql), 1);
    CHECK_EQ_INT((int)count(&f, "SELECT COUNT(*) FROM signatures"), 1);
    CHECK_EQ_INT((int)count(&f, "SELECT COUNT(*) FROM archive WHERE source=2"), 1);
    CHECK_OK(rd_store_audit_verify(f.s, NULL, NULL, &err), &err);
    fixture_free(&f);
}

/* A study signed while the pipeline runs: the next draft of a copy of it (same pixels,
 * another patient and study) has it as nearest neighbour, voting with the signed states,
 * without a restart. */
RD_TEST(signed_study_teaches_a_running_pipeline)
{
    fixture f;
    rd_error err;
    rd_review_changes c;
    rd_review_signed sg;
    rd_pipeline_draft d;
    REQUIRE(fixture_make(&f, "review_teach"));
    /* The pipeline loaded its (empty) index in fixture_make, before anything was signed. */
    CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[0], "alice", &err), &err);
    memset(&c, 0, sizeof c);
    c.n_set = 1;
    c.set_finding[0] = RD_FINDING_CARDIOMEGALY;
    c.set_state[0] = RD_STATE_PRESENT;
    CHECK_OK(rd_review_edit(f.s, &f.cfg, f.items[0], "alice", &c, &err), &err);
    CHECK_OK(rd_review_sign(f.s, &f.cfg, f.items[0], "alice", NULL, &sg, &err), &err);
    CHECK_EQ_INT(sg.archived, 1);
    sleep(2); /* past archive.refresh_seconds (1 s) */
    /* The signed study itself: the running pipeline has picked its entry up (the count)
     * and leaves it out as the same study (no neighbour). */
    {
        const char *files[2] = {f.files[0][0], f.files[0][1]};
        CHECK_OK(rd_pipeline_draft_files(f.w, files, 2, NULL, &d, &err), &err);
        CHECK_EQ_INT(rd_pipeline_archive_size(f.p), 1);
        CHECK_EQ_INT(d.n_neighbours, 0);
        rd_pipeline_draft_free(&d);
    }
    /* Another patient's study: the signed entry is a neighbour and votes Cardiomegaly. */
    {
        const char *files[2] = {f.files[1][0], f.files[1][1]};
        CHECK_OK(rd_pipeline_draft_files(f.w, files, 2, NULL, &d, &err), &err);
        REQUIRE(d.n_neighbours == 1);
        CHECK(d.votes[RD_FINDING_CARDIOMEGALY] > 0.99);
        rd_pipeline_draft_free(&d);
    }
    fixture_free(&f);
}

RD_TEST(stats_count_states_agreement_and_time)
{
    fixture f;
    rd_error err;
    rd_review_signed sg;
    rd_review_stats st;
    REQUIRE(fixture_make(&f, "review_stats"));
    CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[0], "alice", &err), &err);
    CHECK_OK(rd_review_sign(f.s, &f.cfg, f.items[0], "alice", NULL, &sg, &err), &err);
    CHECK_OK(rd_review_claim(f.s, &f.cfg, f.items[1], "bob", &err), &err);
    CHECK_OK(rd_review_compute_stats(f.s, 0, &st, &err), &err);
    CHECK_EQ_INT((int)st.items, 4);
    CHECK_EQ_INT((int)st.per_state[RD_REVIEW_SIGNED], 1);
    CHECK_EQ_INT((int)st.per_state[RD_REVIEW_IN_REVIEW], 1);
    CHECK_EQ_INT((int)st.per_state[RD_REVIEW_DRAFT], 2);
    CHECK_EQ_INT((int)st.signed_unchanged, 1); /* signed as drafted */
    long fp = 0, fn = 0;
    for (int k = 0; k < RD_FINDING_N_ABNORMAL; k++) {
        fp += st.fp[k];
        fn += st.fn[k];
    }
    CHECK_EQ_INT((int)(fp + fn), 0);
    CHECK(st.median_seconds_to_sign >= 0);
    /* Nothing drafted after tomorrow. */
    CHECK_OK(rd_review_compute_stats(f.s, rd_store_now() + 86400, &st, &err), &err);
    CHECK_EQ_INT((int)st.items, 0);
    fixture_free(&f);
}

RD_TEST_MAIN()
