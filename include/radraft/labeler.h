/* radraft — report labeler: report text -> finding states.
 *
 * Rule-based. A phrase file (JSON; the default, models/labeler.json, is compiled into the
 * binary) lists for every finding the words that mention it and the words that exclude a
 * look-alike ("pericardial effusion" is not a pleural effusion), plus negation,
 * uncertainty and speculation triggers that act forward ("no pneumothorax") or backward
 * ("pneumothorax is not seen"), pseudo-triggers that only look like them ("no change in"), and the
 * words that end a trigger's scope ("but", "however"). A trigger's scope never leaves its sentence
 * and stops at a comma that starts a new clause, so "no effusion, the heart is enlarged"
 * negates only the effusion. De-identification tokens ("XXXX") are skipped.
 *
 * Hedged mentions come in two kinds. A finding named as one of a differential for what is
 * seen ("atelectasis versus scarring") is uncertain. A finding the report only raises as a
 * possibility ("may represent pneumonia", "cannot exclude a nodule", "suggestive of
 * emphysema") is speculative: it is flagged, but by default its state stays not mentioned,
 * because that is how the expert labels this labeler is measured against treat it: in
 * ../shared/data/iu-reports, 4 of the 142 speculative findings are labeled positive there,
 * against 35 of the 50 uncertain (differential) ones and 702 of the 744 present ones. The
 * configuration key labeler.speculative = "uncertain" makes them uncertain instead.
 *
 * A labeler is immutable once created: one may be shared by any number of threads.
 */
#ifndef RADRAFT_LABELER_H
#define RADRAFT_LABELER_H

#include <stdio.h>

#include "radraft/config.h"
#include "radraft/error.h"
#include "radraft/findings.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest text (findings plus impression) one call accepts. */
#define RD_LABELER_MAX_TEXT (1u << 20)
/* Largest phrase file accepted. */
#define RD_LABELER_MAX_FILE (4u << 20)

typedef struct rd_labeler rd_labeler;

/* What one report says: a state for every finding. speculative[f] is 1 when the report
 * raises f only as a possibility (its state is then not mentioned, or uncertain with
 * labeler.speculative = "uncertain"). state[RD_FINDING_NO_FINDING] is RD_STATE_PRESENT
 * exactly when no abnormal finding is present, uncertain or speculative. */
typedef struct rd_labels {
    rd_finding_state state[RD_FINDING_COUNT];
    unsigned char speculative[RD_FINDING_COUNT];
} rd_labels;

/* Creates a labeler from the built-in phrases, extended or replaced by the phrase file at
 * `path` when it is not NULL or empty (the configuration key labeler.phrases). The file is
 * a JSON object with the layout of models/labeler.json; its optional "mode" is "extend"
 * (the default: its lists are added to the built-in ones) or "replace". A file that is not
 * valid JSON, has unknown keys, names an unknown finding or holds a malformed phrase is
 * RD_E_CONFIG with a message naming the place. On success *out is the caller's, to free
 * with rd_labeler_free. */
rd_status rd_labeler_create(rd_labeler **out, const char *path, rd_error *err);

/* As rd_labeler_create with the phrase file of labeler.phrases, and speculative mentions
 * stated as labeler.speculative says. */
rd_status rd_labeler_create_from_config(rd_labeler **out, const rd_config *cfg, rd_error *err);

/* As rd_labeler_create, from a phrase document in memory (NULL: built-in phrases only).
 * `origin` names it in error messages. */
rd_status rd_labeler_create_from_json(rd_labeler **out, const char *json, const char *origin,
                                      rd_error *err);

/* Accepts NULL. */
void rd_labeler_free(rd_labeler *lab);

/* Labels a report from its findings and impression sections (either may be NULL or empty).
 * A finding mentioned several times takes the strongest state: present over uncertain over
 * speculative over absent. Fails (RD_E_TOO_LARGE) only when the text exceeds RD_LABELER_MAX_TEXT,
 * or RD_E_NOMEM. */
rd_status rd_labeler_label(const rd_labeler *lab, const char *findings, const char *impression,
                           rd_labels *out, rd_error *err);

/* Labels one JSON Lines record ({"id": ..., "findings": "...", "impression": "..."}; other
 * members are ignored; id may be a string or a number). On success *id_out (at most
 * id_size bytes, truncated) holds the id. A record that is not a JSON object, or whose id
 * or sections have the wrong type, is RD_E_INVALID. */
rd_status rd_labeler_label_json(const rd_labeler *lab, const char *line, char *id_out,
                                size_t id_size, rd_labels *out, rd_error *err);

/* Writes {"id": ..., "findings": {name: state, ...}, "speculative": [name, ...]} (the
 * stated findings in vocabulary order, plus "No Finding" when present; "speculative" only
 * when the report raises a finding as a possibility) as one line to `fp`. */
rd_status rd_labels_write_json(FILE *fp, const char *id, const rd_labels *labels, rd_error *err);

/* Which predictions count as positive when a labeler is measured. */
typedef enum rd_labeler_positive {
    RD_LABELER_POSITIVE_PRESENT,     /* present only */
    RD_LABELER_POSITIVE_UNCERTAIN,   /* present or uncertain (the measure the bar is set on) */
    RD_LABELER_POSITIVE_SPECULATIVE, /* present, uncertain or speculative */
} rd_labeler_positive;

/* Its name: "present", "uncertain" or "speculative". */
const char *rd_labeler_positive_name(rd_labeler_positive mode);

/* A labeler measured against expert labels. Micro and macro averages cover the abnormal
 * findings that have at least one positive gold label ("annotated"); micro_all_* also count
 * the other abnormal findings, whose predictions can then only be false positives. */
typedef struct rd_labeler_eval {
    int n_reports;                /* reports found in both files and compared */
    int n_missing;                /* gold rows without a report */
    rd_labeler_positive positive; /* which predictions counted as positive */
    int part;                     /* rd_labeler_part: which reports were compared */
    int tp[RD_FINDING_COUNT], fp[RD_FINDING_COUNT], fn[RD_FINDING_COUNT];
    int tn[RD_FINDING_COUNT];
    int annotated[RD_FINDING_COUNT]; /* the gold file has a column for it with a positive */
    double precision[RD_FINDING_COUNT], recall[RD_FINDING_COUNT], f1[RD_FINDING_COUNT];
    double micro_precision, micro_recall, micro_f1, macro_f1;
    double micro_all_precision, micro_all_recall, micro_all_f1;
} rd_labeler_eval;

/* Labels every report of `reports_path` (JSON Lines as above) whose id has a row in
 * `gold_path` (CSV: a header naming the id column first, then one column per finding by
 * machine name, "normal" for No Finding; values 0 or 1), and compares, counting as positive
 * what `positive` says. Bad lines in either file are RD_E_CORRUPT naming the file and
 * line. */
rd_status rd_labeler_evaluate(const rd_labeler *lab, const char *reports_path,
                              const char *gold_path, rd_labeler_positive positive,
                              rd_labeler_eval *out, rd_error *err);

/* The reports are split once, by a hash of the report id, into a tuning part (70%) that
 * phrase and rule changes are tuned on and a held-out part (30%) that the labeler's bar is
 * checked on: a report is held out when splitmix64(fnv1a64(id) ^ 0x1abe1) / 2^64 < 0.3. */
typedef enum rd_labeler_part {
    RD_LABELER_PART_ALL = 0,
    RD_LABELER_PART_TUNING,
    RD_LABELER_PART_HELD_OUT,
} rd_labeler_part;

/* "all", "tuning" or "held-out". */
const char *rd_labeler_part_name(rd_labeler_part part);
/* 1 when the report with this id belongs to `part`. */
int rd_labeler_in_part(const char *id, rd_labeler_part part);
/* rd_labeler_evaluate over one part only; "annotated" then means a gold positive in it. */
rd_status rd_labeler_evaluate_part(const rd_labeler *lab, const char *reports_path,
                                   const char *gold_path, rd_labeler_positive positive,
                                   rd_labeler_part part, rd_labeler_eval *out, rd_error *err);

/* Prints the evaluation as a table (one row per finding, then micro and macro). */
void rd_labeler_eval_print(const rd_labeler_eval *ev, FILE *fp);

#ifdef __cplusplus
}
#endif
#endif
