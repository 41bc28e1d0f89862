/* radraft — templated report generator: finding scores -> Findings and Impression text.
 *
 * A score in [0, 1] per finding becomes a state through per-finding thresholds that come
 * from the model or the configuration (rd_thresholds, a JSON object), never from code:
 * present at or above `present`, uncertain at or above `uncertain`, otherwise absent when
 * the templates list the finding as a pertinent negative, else not mentioned. The text is
 * written from templates (JSON; the default, models/report-templates.json, is compiled into
 * the binary): organs in the templates' order (lines and tubes, lungs, pleura, heart and
 * mediastinum, bones), a normal sentence for an organ with nothing present or uncertain, a
 * sentence naming the absent findings, and an impression with the most significant finding
 * first, or the normal impression when nothing is present or uncertain.
 *
 * Evidence (similar past cases with their finding states and, where a site has them, their
 * report text) may supply a sentence for a finding instead of the template: only a sentence
 * of a case that agrees on that finding, cleaned of comparison language and of anything that
 * could identify the other patient, and that the labeler reads as agreeing with every chosen
 * state. Otherwise the template sentence is used, so the draft never carries another
 * patient's identifying text.
 *
 * Where a finding is (rd_generator_draft_*_at: the side and zone rd_localize_map reads in
 * the encoder's class activation map) is written with the finding's "located" sentences
 * when its templates have them ("A nodule in the right upper zone."); the templates' top-level
 * "locations" holds the words for sides, zones and places.
 *
 * A generator is immutable once created and may be shared between threads.
 */
#ifndef RADRAFT_GENERATOR_H
#define RADRAFT_GENERATOR_H

#include <stddef.h>

#include "radraft/error.h"
#include "radraft/findings.h"
#include "radraft/labeler.h"
#include "radraft/localize.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest template or thresholds file accepted. */
#define RD_GENERATOR_MAX_FILE (1u << 20)
/* Longest evidence sentence considered for reuse, in bytes. */
#define RD_GENERATOR_MAX_SENTENCE 300

/* Per-finding score thresholds; 0 <= uncertain <= present <= 1. */
typedef struct rd_thresholds {
    double present[RD_FINDING_N_ABNORMAL];
    double uncertain[RD_FINDING_N_ABNORMAL];
} rd_thresholds;

/* Parses thresholds from JSON: an object keyed by finding name, each value an object
 * {"present": p, "uncertain": u}; a "default" entry covers the findings not named. The
 * object may also be the member "thresholds" of a larger document (a model description).
 * Every finding must end up covered. Errors are RD_E_CONFIG naming the place. */
rd_status rd_thresholds_parse(rd_thresholds *out, const char *json, const char *origin,
                              rd_error *err);
/* Reads a thresholds file (at most RD_GENERATOR_MAX_FILE bytes) and parses it. */
rd_status rd_thresholds_load(rd_thresholds *out, const char *path, rd_error *err);
/* The thresholds used when neither the configuration nor the model names any: present at
 * 0.5, uncertain at 0.3 for every finding. */
void rd_thresholds_builtin(rd_thresholds *out);

/* Per-finding calibration: the combined score s (encoder and similar cases) becomes the
 * probability p = 1 / (1 + exp(-(a * logit(s) + b))) (Platt scaling on the logit, fitted on
 * held-out patients by `radraft model calibrate`). Monotone, so it changes no ranking and no
 * AUROC; it makes the score read as a probability for the mix of patients it was fitted
 * on. Disabled (the identity) when the model has no "calibration". */
typedef struct rd_calibration {
    int enabled;
    double a[RD_FINDING_N_ABNORMAL];
    double b[RD_FINDING_N_ABNORMAL];
} rd_calibration;

/* Parses the "calibration" member of a model description ({"method": "platt", "findings":
 * {NAME: {"a": a, "b": b}, ...}} with every finding present); no such member gives the
 * identity. Errors are RD_E_CONFIG naming `origin`. */
rd_status rd_calibration_parse(rd_calibration *out, const char *json, const char *origin,
                               rd_error *err);
/* The calibrated probability of score `s` for finding `f` (s itself when disabled). */
double rd_calibration_prob(const rd_calibration *c, int f, double s);
/* Calibrates every finding's score in place. */
void rd_calibration_apply(const rd_calibration *c, double scores[RD_FINDING_N_ABNORMAL]);

/* One similar past case. The strings are borrowed for the duration of the call. */
typedef struct rd_evidence_case {
    double similarity;                        /* larger is more similar */
    rd_finding_state state[RD_FINDING_COUNT]; /* what its report said */
    const char *findings_text;                /* may be NULL */
    const char *impression_text;              /* may be NULL */
} rd_evidence_case;

typedef struct rd_draft_item {
    rd_finding finding;
    rd_finding_state state; /* present or uncertain */
    double confidence;      /* the score that chose the state */
    /* Where the text says it is (rd_generator_draft_*_at): NONE, NONE when it names no
     * place. */
    rd_side side;
    rd_zone zone;
} rd_draft_item;

/* A draft report. The caller owns the texts; rd_draft_free releases them. */
typedef struct rd_draft {
    char *findings_text;
    char *impression_text;
    /* What the text says about every finding (No Finding included), and how sure: the
     * score for present and uncertain findings, 1 - score for the others. */
    rd_finding_state state[RD_FINDING_COUNT];
    double confidence[RD_FINDING_COUNT];
    /* The present and uncertain findings in impression order: present before uncertain,
     * each group most significant first. */
    rd_draft_item items[RD_FINDING_N_ABNORMAL];
    int n_items;
    int n_reused; /* sentences taken from evidence rather than templates */
} rd_draft;

typedef struct rd_generator rd_generator;

/* Creates a generator from the template file at `path`, or from the built-in templates
 * when `path` is NULL or empty (the configuration key generator.templates). A template file
 * is complete (it replaces the built-in one); a malformed one is RD_E_CONFIG naming the
 * place. On success *out is the caller's, to free with rd_generator_free. */
rd_status rd_generator_create(rd_generator **out, const char *path, rd_error *err);
/* As rd_generator_create, from a template document in memory (NULL: built-in). */
rd_status rd_generator_create_from_json(rd_generator **out, const char *json, const char *origin,
                                        rd_error *err);
/* Accepts NULL. */
void rd_generator_free(rd_generator *gen);

/* Drafts a report from scores (index rd_finding, each in [0, 1]) and thresholds.
 * `evidence` (n_evidence cases, may be NULL) may supply sentences when `lab` is not NULL;
 * without a labeler only template sentences are used. On success the caller owns `out`'s
 * texts (rd_draft_free); on failure `out` holds nothing to free. */
rd_status rd_generator_draft_scores(const rd_generator *gen, const double *scores,
                                    const rd_thresholds *th, const rd_evidence_case *evidence,
                                    size_t n_evidence, const rd_labeler *lab, rd_draft *out,
                                    rd_error *err);

/* Drafts a report from chosen states (index rd_finding, RD_FINDING_N_ABNORMAL of them;
 * RD_STATE_ABSENT is written as a negative, RD_STATE_NOT_MENTIONED is left out).
 * `confidence` may be NULL (then 1 for every finding). Otherwise as above. */
rd_status rd_generator_draft_states(const rd_generator *gen, const rd_finding_state *states,
                                    const double *confidence, const rd_evidence_case *evidence,
                                    size_t n_evidence, const rd_labeler *lab, rd_draft *out,
                                    rd_error *err);

/* As rd_generator_draft_scores and rd_generator_draft_states, with where each finding is
 * (`where`: RD_FINDING_N_ABNORMAL locations, index rd_finding, from rd_localize_map; NULL:
 * nowhere). A present or uncertain finding whose templates have "located" sentences, and
 * for which rd_location_name names a side, is written with them ("A nodule in the right
 * upper zone.") and its draft item records the side and zone named; the others as without
 * locations. A located finding never takes an evidence sentence, and no evidence sentence
 * that states a located finding is reused: another patient's side is not this patient's. */
rd_status rd_generator_draft_scores_at(const rd_generator *gen, const double *scores,
                                       const rd_thresholds *th, const rd_location *where,
                                       const rd_evidence_case *evidence, size_t n_evidence,
                                       const rd_labeler *lab, rd_draft *out, rd_error *err);
rd_status rd_generator_draft_states_at(const rd_generator *gen, const rd_finding_state *states,
                                       const double *confidence, const rd_location *where,
                                       const rd_evidence_case *evidence, size_t n_evidence,
                                       const rd_labeler *lab, rd_draft *out, rd_error *err);

/* What finding f's located sentences may name (sides 0 when its templates have none), so
 * that a measurement can ask which side the text would name (rd_location_name). */
void rd_generator_location_rule(const rd_generator *gen, rd_finding f, rd_location_rule *out);

/* Releases a draft's texts and clears it. Accepts NULL and a cleared draft. */
void rd_draft_free(rd_draft *d);

#ifdef __cplusplus
}
#endif
#endif
