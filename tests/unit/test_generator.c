/* Templated report generator: thresholds, templates, evidence reuse, and the round trip
 * labeler(generator(states)) == states. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/generator.h"
#include "radraft/labeler.h"
#include "rdtest.h"
#include "report/embedded.h"
#include "report/report_int.h"
#include "base/util.h"

static rd_generator *default_generator(void)
{
    rd_generator *gen = NULL;
    rd_error err;
    if (rd_generator_create(&gen, NULL, &err) != RD_OK) {
        fprintf(stderr, "rd_generator_create: %s\n", rd_error_message(&err));
        return NULL;
    }
    return gen;
}

static rd_labeler *default_labeler(void)
{
    rd_labeler *lab = NULL;
    rd_error err;
    if (rd_labeler_create(&lab, NULL, &err) != RD_OK) {
        fprintf(stderr, "rd_labeler_create: %s\n", rd_error_message(&err));
        return NULL;
    }
    return lab;
}

/* A small deterministic generator (xorshift), so that a failure can be replayed. */
static uint32_t rng_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* Checks that the labeler reads the draft as the draft's own states say, and that those
 * are the states asked for. Returns 1 when all agree. */
static int round_trip_ok(const rd_labeler *lab, const rd_draft *d, const rd_finding_state *want)
{
    rd_labels l;
    rd_error err;
    int ok = 1;
    if (rd_labeler_label(lab, d->findings_text, d->impression_text, &l, &err) != RD_OK) {
        fprintf(stderr, "rd_labeler_label: %s\n", rd_error_message(&err));
        return 0;
    }
    for (int f = 0; f < RD_FINDING_COUNT; f++) {
        if (l.state[f] != d->state[f] || (f < RD_FINDING_N_ABNORMAL && d->state[f] != want[f])) {
            fprintf(stderr, "%s: asked %s, draft says %s, labeler reads %s\n",
                    rd_finding_name((rd_finding)f),
                    f < RD_FINDING_N_ABNORMAL ? rd_state_name(want[f]) : "-",
                    rd_state_name(d->state[f]), rd_state_name(l.state[f]));
            ok = 0;
        }
    }
    if (!ok)
        fprintf(stderr, "FINDINGS: %s\nIMPRESSION: %s\n", d->findings_text, d->impression_text);
    return ok;
}

RD_TEST(round_trip_random_states)
{
    rd_generator *gen = default_generator();
    rd_labeler *lab = default_labeler();
    uint32_t seed = 12345;
    int failures = 0;
    REQUIRE(gen && lab);
    for (int iter = 0; iter < 3000 && failures < 3; iter++) {
        rd_finding_state st[RD_FINDING_N_ABNORMAL];
        rd_draft d;
        rd_error err;
        /* Half the vectors are sparse (mostly not mentioned), as real reports are. */
        int sparse = iter % 2;
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
            uint32_t r = rng_next(&seed) % 8;
            if (sparse)
                st[f] = r < 5 ? RD_STATE_NOT_MENTIONED : (rd_finding_state)(r - 4);
            else
                st[f] = (rd_finding_state)(r % 4);
        }
        if (rd_generator_draft_states(gen, st, NULL, NULL, 0, lab, &d, &err) != RD_OK) {
            RD_FAIL_AT("draft: %s", rd_error_message(&err));
            break;
        }
        if (!round_trip_ok(lab, &d, st)) {
            RD_FAIL_AT("round trip failed at iteration %d", iter);
            failures++;
        }
        rd_draft_free(&d);
    }
    rd_generator_free(gen);
    rd_labeler_free(lab);
}

/* Each single finding in each state, alone: the smallest cases, named when they fail. */
RD_TEST(round_trip_each_finding)
{
    rd_generator *gen = default_generator();
    rd_labeler *lab = default_labeler();
    REQUIRE(gen && lab);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        for (int s = 0; s < RD_STATE_COUNT; s++) {
            rd_finding_state st[RD_FINDING_N_ABNORMAL] = {RD_STATE_NOT_MENTIONED};
            rd_draft d;
            st[f] = (rd_finding_state)s;
            REQUIRE_OK(rd_generator_draft_states(gen, st, NULL, NULL, 0, lab, &d, NULL), NULL);
            CHECK_MSG(round_trip_ok(lab, &d, st), "%s %s", rd_finding_name((rd_finding)f),
                      rd_state_name((rd_finding_state)s));
            rd_draft_free(&d);
        }
    rd_generator_free(gen);
    rd_labeler_free(lab);
}

static const char thresholds_json[] = "{\"default\": {\"present\": 0.6, \"uncertain\": 0.4},"
                                      " \"Pneumothorax\": {\"present\": 0.3, \"uncertain\": 0.2}}";

RD_TEST(scores_through_thresholds)
{
    rd_generator *gen = default_generator();
    rd_labeler *lab = default_labeler();
    rd_thresholds th;
    rd_draft d;
    rd_error err;
    double scores[RD_FINDING_N_ABNORMAL] = {0};
    REQUIRE(gen && lab);
    REQUIRE_OK(rd_thresholds_parse(&th, thresholds_json, "t.json", &err), &err);
    CHECK_NEAR(th.present[RD_FINDING_PNEUMOTHORAX], 0.3, 1e-12);
    CHECK_NEAR(th.present[RD_FINDING_MASS], 0.6, 1e-12);
    scores[RD_FINDING_CARDIOMEGALY] = 0.9;  /* present */
    scores[RD_FINDING_EFFUSION] = 0.5;      /* uncertain */
    scores[RD_FINDING_PNEUMOTHORAX] = 0.35; /* present by its own threshold */
    scores[RD_FINDING_MASS] = 0.39;         /* below: not a pertinent negative, left out */
    scores[RD_FINDING_EDEMA] = 0.1;         /* below: a pertinent negative, absent */
    REQUIRE_OK(rd_generator_draft_scores(gen, scores, &th, NULL, 0, lab, &d, &err), &err);
    CHECK_EQ_INT(d.state[RD_FINDING_CARDIOMEGALY], RD_STATE_PRESENT);
    CHECK_EQ_INT(d.state[RD_FINDING_EFFUSION], RD_STATE_UNCERTAIN);
    CHECK_EQ_INT(d.state[RD_FINDING_PNEUMOTHORAX], RD_STATE_PRESENT);
    CHECK_EQ_INT(d.state[RD_FINDING_MASS], RD_STATE_NOT_MENTIONED);
    CHECK_EQ_INT(d.state[RD_FINDING_EDEMA], RD_STATE_ABSENT);
    CHECK_EQ_INT(d.state[RD_FINDING_NO_FINDING], RD_STATE_NOT_MENTIONED);
    CHECK_NEAR(d.confidence[RD_FINDING_CARDIOMEGALY], 0.9, 1e-12);
    CHECK_NEAR(d.confidence[RD_FINDING_EDEMA], 0.9, 1e-12);
    /* Impression: present findings first, most significant first (pneumothorax), then the
     * uncertain ones, even when more significant (effusion). */
    REQUIRE(d.n_items == 3);
    CHECK_EQ_INT(d.items[0].finding, RD_FINDING_PNEUMOTHORAX);
    CHECK_EQ_INT(d.items[1].finding, RD_FINDING_CARDIOMEGALY);
    CHECK_EQ_INT(d.items[2].finding, RD_FINDING_EFFUSION);
    CHECK_EQ_INT(d.items[2].state, RD_STATE_UNCERTAIN);
    CHECK(strstr(d.impression_text, "neumothorax") < strstr(d.impression_text, "ardiomegaly"));
    CHECK(strstr(d.impression_text, "ardiomegaly") < strstr(d.impression_text, "ffusion"));
    /* Findings: organ order, lungs then pleura then heart. */
    {
        const char *lungs = strstr(d.findings_text, "lungs are");
        const char *pleura = strstr(d.findings_text, "pneumothorax");
        const char *heart = strstr(d.findings_text, "heart is enlarged");
        CHECK(lungs && pleura && heart && lungs < pleura && pleura < heart);
    }
    CHECK(round_trip_ok(lab, &d, d.state));
    rd_draft_free(&d);
    /* A score outside [0, 1] is refused. */
    scores[RD_FINDING_MASS] = 1.5;
    CHECK(rd_generator_draft_scores(gen, scores, &th, NULL, 0, lab, &d, &err) == RD_E_INVALID);
    CHECK(d.findings_text == NULL);
    rd_generator_free(gen);
    rd_labeler_free(lab);
}

RD_TEST(normal_report_below_thresholds)
{
    rd_generator *gen = default_generator();
    rd_labeler *lab = default_labeler();
    rd_thresholds th;
    rd_draft d;
    double scores[RD_FINDING_N_ABNORMAL];
    REQUIRE(gen && lab);
    REQUIRE_OK(rd_thresholds_parse(&th, thresholds_json, NULL, NULL), NULL);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        scores[f] = 0.15;
    REQUIRE_OK(rd_generator_draft_scores(gen, scores, &th, NULL, 0, lab, &d, NULL), NULL);
    CHECK_STR(d.impression_text, "No acute cardiopulmonary abnormality.");
    CHECK_EQ_INT(d.n_items, 0);
    CHECK_EQ_INT(d.state[RD_FINDING_NO_FINDING], RD_STATE_PRESENT);
    CHECK(strstr(d.findings_text, "The lungs are well expanded and clear.") != NULL);
    CHECK(strstr(d.findings_text, "No pneumothorax or pleural effusion.") != NULL);
    CHECK(round_trip_ok(lab, &d, d.state));
    rd_draft_free(&d);
    rd_draft_free(&d); /* a cleared draft may be freed again */
    rd_draft_free(NULL);
    rd_generator_free(gen);
    rd_labeler_free(lab);
}

RD_TEST(bad_thresholds)
{
    rd_thresholds th;
    rd_error err;
    CHECK(rd_thresholds_parse(&th, "{", "t.json", &err) == RD_E_CONFIG);
    CHECK(rd_thresholds_parse(&th, "{\"Mass\": {\"present\": 0.5, \"uncertain\": 0.3}}", "t.json",
                              &err) == RD_E_CONFIG);
    CHECK_MSG(strstr(err.msg, "no entry for") != NULL, "%s", err.msg);
    CHECK(rd_thresholds_parse(&th, "{\"default\": {\"present\": 0.3, \"uncertain\": 0.5}}",
                              "t.json", &err) == RD_E_CONFIG);
    CHECK(rd_thresholds_parse(&th, "{\"default\": {\"present\": 1.5, \"uncertain\": 0.5}}",
                              "t.json", &err) == RD_E_CONFIG);
    CHECK(rd_thresholds_parse(&th, "{\"default\": {\"present\": 0.5}}", "t.json", &err) ==
          RD_E_CONFIG);
    CHECK(rd_thresholds_parse(&th,
                              "{\"default\": {\"present\": 0.5, \"uncertain\": 0.2}, "
                              "\"Fracture\": {\"present\": 0.5, \"uncertain\": 0.2}}",
                              "t.json", &err) == RD_E_CONFIG);
    CHECK_MSG(strstr(err.msg, "Fracture") != NULL, "%s", err.msg);
    /* Inside a model description. */
    CHECK_OK(rd_thresholds_parse(&th,
                                 "{\"name\": \"m\", \"thresholds\": {\"default\": "
                                 "{\"present\": 0.7, \"uncertain\": 0.2}}}",
                                 "model.json", &err),
             &err);
    CHECK_NEAR(th.uncertain[RD_FINDING_HERNIA], 0.2, 1e-12);
}

RD_TEST(clean_sentence)
{
    char out[RD_GENERATOR_MAX_SENTENCE + 8];
    CHECK(rd__generator_clean_sentence("Stable mild cardiomegaly", out, sizeof out));
    CHECK_STR(out, "Mild cardiomegaly.");
    CHECK(rd__generator_clean_sentence("small left pleural effusion, unchanged from the prior "
                                       "study",
                                       out, sizeof out));
    CHECK_STR(out, "Small left pleural effusion.");
    CHECK(rd__generator_clean_sentence("The heart is again enlarged", out, sizeof out));
    CHECK_STR(out, "The heart is enlarged.");
    CHECK(
        rd__generator_clean_sentence("Hyperinflated lungs consistent with COPD", out, sizeof out));
    CHECK_STR(out, "Hyperinflated lungs consistent with COPD.");
    /* Refused: comparison it cannot remove, identifying or de-identified text, numbers. */
    CHECK(!rd__generator_clean_sentence("Cardiomegaly is unchanged", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("Effusion has increased since the prior study", out,
                                        sizeof out));
    CHECK(!rd__generator_clean_sentence("Compared to prior, effusion is larger", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("Small XXXX effusion", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("Effusion noted on 3/14", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("A 12 mm nodule", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("Findings discussed with Smith", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("Nodule seen by LEE", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("Mild cardiomegaly per Jones", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("Findings called to the ordering physician", out,
                                        sizeof out));
    CHECK(!rd__generator_clean_sentence("Nodule seen by Dr. Jones", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("Effusion \xc3\xa9", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("", out, sizeof out));
    CHECK(!rd__generator_clean_sentence("Effusion", out, sizeof out));
    /* Too small an output buffer is a refusal, not an overflow. */
    CHECK(!rd__generator_clean_sentence("Mild cardiomegaly", out, 8));
}

/* Past cases, written for this test (radraft's own words, not from any report). */
static void make_case(rd_evidence_case *c, double sim, const char *findings)
{
    memset(c, 0, sizeof *c);
    c->similarity = sim;
    c->findings_text = findings;
}

RD_TEST(evidence_sentences_reused_only_when_consistent)
{
    rd_generator *gen = default_generator();
    rd_labeler *lab = default_labeler();
    rd_evidence_case ev[4];
    rd_finding_state st[RD_FINDING_N_ABNORMAL] = {RD_STATE_NOT_MENTIONED};
    rd_draft d;
    REQUIRE(gen && lab);
    st[RD_FINDING_CARDIOMEGALY] = RD_STATE_PRESENT;
    st[RD_FINDING_EFFUSION] = RD_STATE_ABSENT;
    /* Most similar, but disagrees on cardiomegaly: not used. */
    make_case(&ev[0], 0.99, "The heart is not enlarged. No effusion.");
    ev[0].state[RD_FINDING_CARDIOMEGALY] = RD_STATE_ABSENT;
    /* Agrees; its first sentence is identifying, its second also mentions an effusion
     * (present, against the chosen absent); its third is usable after cleaning. */
    make_case(&ev[1], 0.9,
              "Results discussed with Dr. Brown. Cardiomegaly with a small effusion. "
              "Stable moderate cardiomegaly.");
    ev[1].state[RD_FINDING_CARDIOMEGALY] = RD_STATE_PRESENT;
    ev[1].state[RD_FINDING_EFFUSION] = RD_STATE_PRESENT;
    /* Agrees, less similar: not needed. */
    make_case(&ev[2], 0.5, "Marked cardiomegaly.");
    ev[2].state[RD_FINDING_CARDIOMEGALY] = RD_STATE_PRESENT;
    make_case(&ev[3], 0.7, NULL);
    ev[3].state[RD_FINDING_CARDIOMEGALY] = RD_STATE_PRESENT;
    REQUIRE_OK(rd_generator_draft_states(gen, st, NULL, ev, 4, lab, &d, NULL), NULL);
    CHECK_EQ_INT(d.n_reused, 1);
    CHECK_MSG(strstr(d.findings_text, "Moderate cardiomegaly.") != NULL, "%s", d.findings_text);
    CHECK(strstr(d.findings_text, "Brown") == NULL);
    CHECK(strstr(d.findings_text, "Stable") == NULL);
    CHECK(strstr(d.findings_text, "The heart is enlarged.") == NULL);
    CHECK(round_trip_ok(lab, &d, st));
    rd_draft_free(&d);
    /* Without a labeler only templates are used. */
    REQUIRE_OK(rd_generator_draft_states(gen, st, NULL, ev, 4, NULL, &d, NULL), NULL);
    CHECK_EQ_INT(d.n_reused, 0);
    CHECK(strstr(d.findings_text, "The heart is enlarged.") != NULL);
    rd_draft_free(&d);
    rd_generator_free(gen);
    rd_labeler_free(lab);
}

/* Random states with a pool of evidence sentences: whatever is reused, the labeler still
 * reads the draft as the chosen states. */
RD_TEST(round_trip_with_evidence)
{
    static const char *const pool[] = {
        "Moderate cardiomegaly, new since the prior examination.",
        "Stable small bilateral pleural effusions.",
        "There is a small right apical pneumothorax.",
        "Patchy right lower lobe opacity may represent pneumonia.",
        "Scattered calcified granulomas. No pneumothorax.",
        "Mild interstitial pulmonary edema.",
        "Left basilar subsegmental atelectasis.",
        "Hyperexpanded lungs with emphysema.",
        "The heart is normal in size, no effusion.",
        "A small hiatal hernia is again seen.",
        "Possible small left pleural effusion versus pleural thickening.",
        "Right upper lobe mass, unchanged.",
        "No focal consolidation or pneumothorax.",
        "Dense right middle lobe consolidation.",
        "Biapical pleural thickening.",
        "Noncalcified nodule in the left upper lobe.",
    };
    enum { NP = sizeof pool / sizeof pool[0] };
    rd_generator *gen = default_generator();
    rd_labeler *lab = default_labeler();
    rd_evidence_case ev[NP];
    uint32_t seed = 777;
    int reused = 0, failures = 0;
    REQUIRE(gen && lab);
    for (int i = 0; i < NP; i++) {
        rd_labels l;
        make_case(&ev[i], 1.0 - i * 0.01, pool[i]);
        REQUIRE_OK(rd_labeler_label(lab, pool[i], NULL, &l, NULL), NULL);
        memcpy(ev[i].state, l.state, sizeof l.state);
    }
    for (int iter = 0; iter < 1000 && failures < 3; iter++) {
        rd_finding_state st[RD_FINDING_N_ABNORMAL];
        rd_draft d;
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
            uint32_t r = rng_next(&seed) % 8;
            st[f] = r < 4 ? RD_STATE_NOT_MENTIONED : (rd_finding_state)(r - 4);
            if (st[f] == RD_STATE_NOT_MENTIONED && r == 3)
                st[f] = RD_STATE_ABSENT;
        }
        REQUIRE_OK(rd_generator_draft_states(gen, st, NULL, ev, NP, lab, &d, NULL), NULL);
        reused += d.n_reused;
        if (!round_trip_ok(lab, &d, st)) {
            RD_FAIL_AT("round trip with evidence failed at iteration %d", iter);
            failures++;
        }
        rd_draft_free(&d);
    }
    CHECK_MSG(reused > 100, "only %d sentences reused", reused);
    rd_generator_free(gen);
    rd_labeler_free(lab);
}

static void expect_bad_templates(const char *json, const char *what)
{
    rd_generator *gen = NULL;
    rd_error err;
    rd_error_clear(&err);
    rd_status st = rd_generator_create_from_json(&gen, json, "site.json", &err);
    CHECK_MSG(st == RD_E_CONFIG, "status %s for %.60s", rd_status_name(st), json);
    CHECK(gen == NULL);
    CHECK_MSG(strstr(err.msg, what) != NULL, "message '%s' lacks '%s'", err.msg, what);
    rd_generator_free(gen);
}

RD_TEST(bad_template_files)
{
    char *good = NULL, *bad = NULL, *at;
    size_t len;
    rd_generator *gen = NULL;
    rd_error err;
    char path[1024];
    expect_bad_templates("{", "not valid JSON");
    expect_bad_templates("[]", "JSON object");
    expect_bad_templates("{\"version\": 1, \"colour\": 1}", "colour");
    expect_bad_templates("{\"version\": 1}", "organ_order");
    /* Start from the shipped file and break one thing at a time. */
    snprintf(path, sizeof path, "%s/models/report-templates.json", RD_TEST_SOURCE_DIR);
    REQUIRE_OK(rd_read_file(path, 1 << 20, &good, &len, &err), &err);
    REQUIRE_OK(rd_generator_create_from_json(&gen, good, path, &err), &err);
    rd_generator_free(gen);
    bad = strdup(good);
    REQUIRE(bad);
    at = strstr(bad, "\"Hernia\": {");
    REQUIRE(at);
    memcpy(at, "\"Hernix\"", 8);
    expect_bad_templates(bad, "Hernix");
    memcpy(bad, good, len + 1);
    at = strstr(bad, "\"No {list}.\"");
    REQUIRE(at);
    memcpy(at, "\"No {lost}", 10);
    expect_bad_templates(bad, "{list}");
    memcpy(bad, good, len + 1);
    at = strstr(bad, "\"priority\": 1,");
    REQUIRE(at);
    memcpy(at, "\"priority\": 0,", 14);
    expect_bad_templates(bad, "priority");
    memcpy(bad, good, len + 1);
    at = strstr(bad, "\"bones\"]");
    REQUIRE(at);
    memcpy(at, "\"lungs\"]", 8);
    expect_bad_templates(bad, "twice");
    free(bad);
    free(good);
}

/* The "locations" and "located" parts of a template file, broken one at a time. */
RD_TEST(bad_located_templates)
{
    char *good = NULL, *bad = NULL, *at;
    size_t len;
    rd_error err;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/report-templates.json", RD_TEST_SOURCE_DIR);
    REQUIRE_OK(rd_read_file(path, 1 << 20, &good, &len, &err), &err);
    REQUIRE((bad = malloc(len + 64)) != NULL);
    static const struct {
        const char *from, *to, *message;
    } cases[] = {
        {"\"There is a {side} {zone} pneumothorax.\"", "\"There is a {sides} pneumothorax.\"",
         "placeholder"},
        {"\"at the {side} apex\"", "\"at the {zone} apex\"", "placeholder"},
        {"\"zones\": [\"apical\"]", "\"zones\": [\"apexx\"]", "unknown zone"},
        {"\"bilateral\": false", "\"bilateral\": 0", "true or false"},
        {"\"retrocardiac\": \"retrocardiac\"", "\"behind\": \"retrocardiac\"", "behind"},
        {"\"locations\": {", "\"locationz\": {", "locationz"},
        {"\"where_bilateral\": {", "\"where_bilateral\": {\"retrocardiac\": \"x\",",
         "retrocardiac"},
        {"\"located\": {", "\"locatd\": {", "locatd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        at = strstr(good, cases[i].from);
        REQUIRE(at);
        size_t pre = (size_t)(at - good), fl = strlen(cases[i].from), tl = strlen(cases[i].to);
        REQUIRE(len - fl + tl < len + 64);
        memcpy(bad, good, pre);
        memcpy(bad + pre, cases[i].to, tl);
        memcpy(bad + pre + tl, at + fl, len - pre - fl + 1);
        expect_bad_templates(bad, cases[i].message);
    }
    /* A bilateral sentence for a finding that never names both sides. */
    at = strstr(good, "\"bilateral\": false,");
    REQUIRE(at);
    {
        const char *extra = "\"bilateral\": false, \"present_bilateral\": \"x {side}.\",";
        size_t pre = (size_t)(at - good), fl = strlen("\"bilateral\": false,"), tl = strlen(extra);
        char *big = malloc(len + tl + 1);
        REQUIRE(big);
        memcpy(big, good, pre);
        memcpy(big + pre, extra, tl);
        memcpy(big + pre + tl, at + fl, len - pre - fl + 1);
        expect_bad_templates(big, "bilateral is false");
        free(big);
    }
    free(bad);
    free(good);
}

/* A location as rd_localize_map would give it: the side, every half in `band`, and for the
 * left side the retrocardiac flag. */
static rd_location make_location(rd_side side, rd_zone band, int retrocardiac)
{
    rd_location l;
    memset(&l, 0, sizeof l);
    l.side = side;
    l.right_share = side == RD_SIDE_LEFT ? 0.2 : side == RD_SIDE_RIGHT ? 0.8 : 0.55;
    l.left_share = 1.0 - l.right_share;
    for (int s = RD_SIDE_RIGHT; s < RD_SIDE_COUNT; s++)
        l.band[s] = band;
    l.retrocardiac = retrocardiac;
    return l;
}

/* The words a located sentence must hold for the side named. */
static int names_side(const char *text, rd_side side)
{
    switch (side) {
    case RD_SIDE_RIGHT:
        return strstr(text, "right") != NULL || strstr(text, "Right") != NULL;
    case RD_SIDE_LEFT:
        return strstr(text, "left") != NULL || strstr(text, "Left") != NULL;
    case RD_SIDE_BILATERAL:
        return strstr(text, "ilateral") != NULL || strstr(text, "both") != NULL;
    default:
        return 1;
    }
}

/* Every finding with located sentences, in each state that is written (present, uncertain),
 * for each side and each band (and retrocardiac): the labeler reads the draft as the chosen
 * states, the draft item records what rd_location_name names, and the text says the side. */
RD_TEST(round_trip_located_each_finding_side_zone)
{
    static const rd_side sides[] = {RD_SIDE_RIGHT, RD_SIDE_LEFT, RD_SIDE_BILATERAL};
    static const rd_zone bands[] = {RD_ZONE_UPPER, RD_ZONE_MIDDLE, RD_ZONE_LOWER};
    rd_generator *gen = default_generator();
    rd_labeler *lab = default_labeler();
    int n_located = 0, n_drafts = 0;
    REQUIRE(gen && lab);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        rd_location_rule rule;
        rd_generator_location_rule(gen, (rd_finding)f, &rule);
        if (!rule.sides)
            continue;
        n_located++;
        for (int s = RD_STATE_UNCERTAIN; s <= RD_STATE_PRESENT; s++)
            for (int si = 0; si < 3; si++)
                for (int bi = 0; bi < 4; bi++) {
                    rd_finding_state st[RD_FINDING_N_ABNORMAL] = {RD_STATE_NOT_MENTIONED};
                    rd_location where[RD_FINDING_N_ABNORMAL];
                    rd_side want_side;
                    rd_zone want_zone;
                    rd_draft d;
                    /* bi == 3: the left lower zone behind the heart. */
                    rd_side side = bi == 3 ? RD_SIDE_LEFT : sides[si];
                    memset(where, 0, sizeof where);
                    where[f] = make_location(side, bi == 3 ? RD_ZONE_LOWER : bands[bi], bi == 3);
                    st[f] = (rd_finding_state)s;
                    rd_location_name(&where[f], &rule, &want_side, &want_zone);
                    REQUIRE_OK(
                        rd_generator_draft_states_at(gen, st, NULL, where, NULL, 0, lab, &d, NULL),
                        NULL);
                    n_drafts++;
                    CHECK_MSG(round_trip_ok(lab, &d, st), "%s %s at %s %s",
                              rd_finding_name((rd_finding)f), rd_state_name(st[f]),
                              rd_side_name(side), rd_zone_name(where[f].band[side]));
                    REQUIRE(d.n_items == 1);
                    CHECK_EQ_INT(d.items[0].side, want_side);
                    CHECK_EQ_INT(d.items[0].zone, want_zone);
                    /* A map over both sides names no side of a one-sided finding. */
                    CHECK_EQ_INT(want_side == RD_SIDE_NONE,
                                 side == RD_SIDE_BILATERAL && !rule.bilateral);
                    CHECK_MSG(names_side(d.findings_text, want_side) &&
                                  names_side(d.impression_text, want_side),
                              "%s: the %s side is not named: %s / %s",
                              rd_finding_name((rd_finding)f), rd_side_name(want_side),
                              d.findings_text, d.impression_text);
                    /* No doubled space, no space before a period. */
                    CHECK(strstr(d.findings_text, "  ") == NULL &&
                          strstr(d.impression_text, "  ") == NULL);
                    CHECK(strstr(d.findings_text, " .") == NULL &&
                          strstr(d.impression_text, " .") == NULL);
                    CHECK(strchr(d.findings_text, '{') == NULL &&
                          strchr(d.impression_text, '{') == NULL);
                    rd_draft_free(&d);
                }
    }
    CHECK_MSG(n_located >= 7, "only %d findings have located sentences", n_located);
    CHECK(n_drafts == n_located * 2 * 3 * 4);
    rd_generator_free(gen);
    rd_labeler_free(lab);
}

/* The shipped templates with a nodule's located block put back: the shipped model names a
 * nodule's side at chance (models/README.md, Localization), so the shipped templates leave
 * it out, and a site whose model localizes nodules adds it in its own template file. */
static rd_generator *generator_with_located_nodule(void)
{
    rd_generator *gen = NULL;
    rd_error err;
    cJSON *doc = cJSON_ParseWithLength(rd_embedded_templates_json, rd_embedded_templates_json_len);
    cJSON *nod = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "findings"),
                                                  "Nodule");
    cJSON *loc = cJSON_Parse("{\"zones\": [\"upper\", \"middle\", \"lower\"], \"bilateral\": "
                             "false, \"present\": \"A nodule {where}.\", \"uncertain\": \"A small "
                             "rounded density {where}, pulmonary nodule versus nipple shadow.\", "
                             "\"impression_present\": \"Pulmonary nodule {where}.\", "
                             "\"impression_uncertain\": \"Pulmonary nodule {where} versus nipple "
                             "shadow.\"}");
    char *text = NULL;
    if (nod && loc && cJSON_AddItemToObject(nod, "located", loc))
        text = cJSON_PrintUnformatted(doc);
    else
        cJSON_Delete(loc);
    cJSON_Delete(doc);
    if (!text || rd_generator_create_from_json(&gen, text, "test", &err) != RD_OK)
        fprintf(stderr, "templates with a located nodule: %s\n",
                text ? rd_error_message(&err) : "");
    cJSON_free(text);
    return gen;
}

/* The sentences the issue names, word for word. */
RD_TEST(located_sentences_read_as_written)
{
    rd_generator *gen = generator_with_located_nodule();
    rd_labeler *lab = default_labeler();
    rd_finding_state st[RD_FINDING_N_ABNORMAL] = {RD_STATE_NOT_MENTIONED};
    rd_location where[RD_FINDING_N_ABNORMAL];
    rd_draft d;
    REQUIRE(gen && lab);
    memset(where, 0, sizeof where);
    st[RD_FINDING_PNEUMOTHORAX] = RD_STATE_UNCERTAIN;
    where[RD_FINDING_PNEUMOTHORAX] = make_location(RD_SIDE_LEFT, RD_ZONE_UPPER, 0);
    st[RD_FINDING_NODULE] = RD_STATE_PRESENT;
    where[RD_FINDING_NODULE] = make_location(RD_SIDE_RIGHT, RD_ZONE_UPPER, 0);
    st[RD_FINDING_EFFUSION] = RD_STATE_UNCERTAIN;
    where[RD_FINDING_EFFUSION] = make_location(RD_SIDE_RIGHT, RD_ZONE_LOWER, 0);
    st[RD_FINDING_ATELECTASIS] = RD_STATE_PRESENT;
    where[RD_FINDING_ATELECTASIS] = make_location(RD_SIDE_LEFT, RD_ZONE_LOWER, 1);
    /* Cardiomegaly has no located sentences: its location is ignored. */
    st[RD_FINDING_CARDIOMEGALY] = RD_STATE_PRESENT;
    where[RD_FINDING_CARDIOMEGALY] = make_location(RD_SIDE_LEFT, RD_ZONE_LOWER, 0);
    REQUIRE_OK(rd_generator_draft_states_at(gen, st, NULL, where, NULL, 0, lab, &d, NULL), NULL);
    CHECK_MSG(strstr(d.impression_text, "Left apical pneumothorax versus skin fold.") != NULL, "%s",
              d.impression_text);
    CHECK_MSG(strstr(d.findings_text, "A nodule in the right upper zone.") != NULL, "%s",
              d.findings_text);
    CHECK_MSG(strstr(d.impression_text, "Small right pleural effusion versus scarring.") != NULL,
              "%s", d.impression_text);
    CHECK_MSG(strstr(d.findings_text, "There is left retrocardiac atelectasis.") != NULL, "%s",
              d.findings_text);
    CHECK(strstr(d.findings_text, "The heart is enlarged.") != NULL);
    for (int i = 0; i < d.n_items; i++)
        if (d.items[i].finding == RD_FINDING_CARDIOMEGALY)
            CHECK_EQ_INT(d.items[i].side, RD_SIDE_NONE);
    CHECK(round_trip_ok(lab, &d, st));
    rd_draft_free(&d);
    /* A location with no side (a flat map, a lateral view) writes the plain sentences. */
    where[RD_FINDING_NODULE].side = RD_SIDE_NONE;
    REQUIRE_OK(rd_generator_draft_states_at(gen, st, NULL, where, NULL, 0, lab, &d, NULL), NULL);
    CHECK(strstr(d.findings_text, "There is a pulmonary nodule.") != NULL);
    rd_draft_free(&d);
    rd_generator_free(gen);
    rd_labeler_free(lab);
}

/* Random states and random locations, with and without evidence: the round trip holds, and
 * a located finding never takes another patient's sentence. */
RD_TEST(round_trip_located_random_with_evidence)
{
    static const char *const pool[] = {
        "Stable small bilateral pleural effusions.",
        "There is a small right apical pneumothorax.",
        "Left basilar subsegmental atelectasis.",
        "Right upper lobe mass, unchanged.",
        "Dense right middle lobe consolidation.",
        "Noncalcified nodule in the left upper lobe.",
        "Moderate cardiomegaly, new since the prior examination.",
        "Cardiomegaly with a small left effusion.",
    };
    enum { NP = sizeof pool / sizeof pool[0] };
    rd_generator *gen = default_generator();
    rd_labeler *lab = default_labeler();
    rd_evidence_case ev[NP];
    uint32_t seed = 4242;
    int failures = 0, reused = 0;
    REQUIRE(gen && lab);
    for (int i = 0; i < NP; i++) {
        rd_labels l;
        make_case(&ev[i], 1.0 - i * 0.01, pool[i]);
        REQUIRE_OK(rd_labeler_label(lab, pool[i], NULL, &l, NULL), NULL);
        memcpy(ev[i].state, l.state, sizeof l.state);
    }
    for (int iter = 0; iter < 2000 && failures < 3; iter++) {
        rd_finding_state st[RD_FINDING_N_ABNORMAL];
        rd_location where[RD_FINDING_N_ABNORMAL];
        rd_draft d;
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
            uint32_t r = rng_next(&seed) % 8;
            st[f] = r < 4 ? RD_STATE_NOT_MENTIONED : (rd_finding_state)(r - 4);
            r = rng_next(&seed);
            where[f] = make_location((rd_side)(r % 4), (rd_zone)(1 + (r / 4) % 3), (r / 12) % 2);
        }
        REQUIRE_OK(rd_generator_draft_states_at(gen, st, NULL, where, iter % 2 ? ev : NULL,
                                                iter % 2 ? NP : 0, lab, &d, NULL),
                   NULL);
        reused += d.n_reused;
        if (!round_trip_ok(lab, &d, st)) {
            RD_FAIL_AT("located round trip failed at iteration %d", iter);
            failures++;
        }
        /* A located finding's words are the templates': no "lobe" (the pool's word). */
        for (int i = 0; i < d.n_items; i++)
            if (d.items[i].side != RD_SIDE_NONE &&
                (strstr(d.findings_text, "lobe") || strstr(d.findings_text, "basilar"))) {
                int other = 0;
                /* Allowed only when a non-located finding took the sentence. */
                for (int k = 0; k < d.n_items; k++)
                    other |= d.items[k].side == RD_SIDE_NONE;
                CHECK_MSG(other, "a located draft reused: %s", d.findings_text);
            }
        rd_draft_free(&d);
    }
    CHECK_MSG(reused > 10, "only %d sentences reused", reused);
    rd_generator_free(gen);
    rd_labeler_free(lab);
}

RD_TEST_MAIN()
