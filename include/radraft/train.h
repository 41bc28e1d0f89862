/* radraft — training the image encoder from labelled radiographs (`radraft train`).
 *
 * Input: a folder of images (PNG or DICOM) and a labels CSV in the NIH ChestX-ray14 format
 * (image,patient_id,view,age,sex,labels; labels '|'-separated finding names or "No
 * Finding"). The images are split by patient into training and validation (deterministic
 * from the seed), streamed from disk one batch at a time (a loader thread prepares the next
 * batch while the current one trains), augmented in ways that suit radiographs (small
 * rotation, scale and translation, brightness/contrast/gamma; never a left-right flip, which
 * would move the heart), and trained with multi-label binary cross-entropy (positive
 * weights from the training prevalence, capped; optional label smoothing), AdamW, linear
 * warmup + cosine learning rate, batch norm with batch statistics.
 *
 * Output, in `out_dir`: model.json + model.safetensors, the model of include/radraft/nn.h
 * (batch norm stored unfolded; the inference loader folds it) with the recipe, the split and
 * the validation metrics in its JSON, rewritten whenever the validation mean AUROC
 * improves; checkpoint/ (the latest epoch's weights, optimizer state and progress) for
 * resuming. Same seed, same data and same thread count give bitwise the same weights.
 */
#ifndef RADRAFT_TRAIN_H
#define RADRAFT_TRAIN_H

#include <stdint.h>

#include "radraft/error.h"
#include "radraft/findings.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_TRAIN_MAX_EPOCHS 1000

typedef struct rd_train_options {
    const char *images_dir; /* folder the CSV's image names are relative to */
    const char *labels_csv; /* NIH-format labels */
    /* An extra labelled set for training only (e.g. NIH's 64 px images): its rows whose
     * patient falls on the validation or holdout side, and rows naming an image the main
     * set has, are left out. NULL = none; the images folder defaults to images_dir. */
    const char *extra_labels_csv;
    const char *extra_images_dir;
    const char *out_dir;    /* created if needed */
    const char *arch;       /* an architecture of rd_nn_archs (default "resnet-small") */
    const char *init_model; /* start from this model's weights instead of a random init */
    const char *resume;     /* a checkpoint folder (OUT/checkpoint) to continue from */
    const char *version;    /* model version to write; NULL = derived from arch and seed */
    int input_size;         /* square input side; 0 = the architecture's own */
    int epochs;             /* default 30 */
    int batch;              /* default 32 */
    int threads;            /* compute threads; 0 = one per online processor */
    int max_images;         /* use only the first N rows of the CSV; 0 = all */
    int patience;           /* stop after this many epochs without a better AUROC; 0 = never */
    long max_steps;         /* stop after this many optimizer steps in this run; 0 = none */
    int augment;            /* 1 (default) = augment the training images */
    double lr;              /* peak learning rate (default 1e-3) */
    double weight_decay;    /* AdamW decoupled decay on conv/linear weights (default 1e-4) */
    double warmup_epochs;   /* linear warmup length in epochs (default 1) */
    double min_lr_ratio;    /* the cosine ends at lr * this (default 0.01) */
    double label_smoothing; /* default 0.05 */
    double mixup;           /* mixup Beta(a, a) parameter in (0, 1]; 0 (default) = off */
    double pos_weight_cap;  /* positive weight = min(neg/pos, cap) per finding (default 10) */
    double val_fraction;    /* share of patients held out (default 0.15); folds == 0 only */
    /* Patient-level k-fold cross-validation (folds >= 2): the patients with hash below
     * holdout_fraction are the holdout, never trained or validated on (they are for
     * calibration and thresholds); the rest fall into `folds` folds by the same hash.
     * `fold` in [0, folds) validates on that fold and trains on the others; -1 trains on
     * every fold with no validation (the last epoch is kept). */
    int folds;               /* 0 (default) = the val_fraction split */
    int fold;                /* see above */
    double holdout_fraction; /* default 0.15 */
    int min_positives;       /* findings with fewer validation positives are not averaged (5) */
    uint64_t seed;           /* default 1 */
} rd_train_options;

/* What a run did. Losses are means over the epoch's batches. */
typedef struct rd_train_result {
    int epochs_run; /* epochs finished in this run (resumed ones not counted) */
    int last_epoch; /* index of the last finished epoch (0-based), -1 if none */
    int best_epoch; /* epoch whose weights are in out_dir/model.*, -1 if none */
    long steps;     /* optimizer steps in total (including resumed ones) */
    int n_train, n_val, n_train_patients, n_val_patients;
    int n_holdout, n_holdout_patients; /* left out by the k-fold split */
    double best_val_auroc;             /* mean over findings with enough positives; NaN if none */
    double images_per_s;               /* training throughput of this run */
    double train_loss[RD_TRAIN_MAX_EPOCHS]; /* by epoch index; NaN when not run here */
    double val_loss[RD_TRAIN_MAX_EPOCHS];
    double val_auroc[RD_TRAIN_MAX_EPOCHS];
} rd_train_result;

void rd_train_options_default(rd_train_options *opts);

/* Trains as described above. Progress is logged at info level (one line per epoch, and
 * every few steps at debug). `res` may be NULL. Errors: RD_E_INVALID (options, CSV, no
 * training image), RD_E_IO / RD_E_NOT_FOUND (files), RD_E_MODEL, RD_E_NOMEM, and the
 * image decoders' errors for an image that cannot be read (naming the file). */
rd_status rd_train_run(const rd_train_options *opts, rd_train_result *res, rd_error *err);

/* Area under the ROC curve of `scores` for binary `labels` (n of each): the probability that
 * a random positive scores above a random negative, ties counting one half. NaN when there
 * is no positive or no negative. */
double rd_auroc(const float *scores, const unsigned char *labels, int n);

/* Calibration and thresholds, fitted on held-out patients (`radraft evaluate --calibrate`).
 *
 * rd_calib_fit_platt fits p = 1 / (1 + exp(-(a * logit(s) + b))) to scores s in [0, 1] and
 * binary labels y (n of each) by Newton's method on the log loss, with Platt's smoothed
 * targets ((P + 1) / (P + 2) for positives, 1 / (N + 2) for negatives), so that a finding
 * with few positives gets a cautious fit. The slope is kept positive (at least 0.001): the
 * map never reverses the ranking. RD_E_INVALID for fewer than two scores. */
rd_status rd_calib_fit_platt(const double *s, const unsigned char *y, int n, double *a, double *b,
                             rd_error *err);
/* Expected calibration error over `bins` equal-width bins of p (at most 64): the mean
 * absolute gap between the predicted and the observed rate, weighted by the bin's share of
 * the n cases. NaN when n is 0. */
double rd_calib_ece(const double *p, const unsigned char *y, int n, int bins);
/* The threshold t that maximizes F-beta of "p >= t" (beta 1 weighs precision and recall
 * alike, 0.5 favours precision): halfway between the lowest score called positive and the
 * next lower one. *fbeta (may be NULL) gets the F-beta reached. NaN without a positive. */
double rd_calib_best_threshold(const double *p, const unsigned char *y, int n, double beta,
                               double *fbeta);

/* What `radraft evaluate --calibrate` fits and measures for one finding. */
typedef struct rd_calib_finding {
    int positives;
    double a, b;               /* the Platt fit on every case */
    double uncertain, present; /* thresholds on the calibrated scale, fitted on every case */
    int rule_global;           /* too few positives: the pooled thresholds were used */
    double ece_raw, ece_cal;   /* of the raw scores; of the cross-fitted probabilities */
    double f1, f1_global;      /* cross-fitted F1 of "p >= uncertain"; with the pooled one */
    int tp, fp, fn;            /* cross-fitted calls */
} rd_calib_finding;

typedef struct rd_calib_report {
    rd_calib_finding f[RD_FINDING_N_ABNORMAL];
    double global_uncertain, global_present; /* the pooled thresholds, fitted on every case */
    double micro_f1, macro_f1;               /* cross-fitted, per-finding thresholds */
    double micro_f1_global, macro_f1_global; /* cross-fitted, the pooled threshold */
    double mentions_per_image;               /* cross-fitted calls per image */
    double labels_per_image;                 /* positive labels per image */
    int n, min_positives;
} rd_calib_report;

/* Fits a calibration and thresholds on n held-out images: scores (n x 14, uncalibrated, in
 * [0, 1]), label bits (bit f: finding f) and a patient index per image. Per finding the
 * "uncertain" threshold (the one that makes a draft mention the finding) maximizes F1 and
 * the "present" one F0.5 (never below it); a finding with fewer than `min_positives`
 * positives uses the thresholds pooled over every finding. The figures in the report are
 * cross-fitted: the patients are cut in two halves, and each half is scored with what was
 * fitted on the other. The fit itself (a, b, thresholds) uses every image. */
rd_status rd_calib_fit(const float *scores, const uint16_t *bits, const int *patient, int n,
                       int min_positives, rd_calib_report *report, rd_error *err);

/* A 95% percentile interval from a bootstrap over patients. */
typedef struct rd_auroc_interval {
    double lo, hi;
    int replicates; /* those in which the AUROC was defined */
} rd_auroc_interval;

/* Resamples the patients (n_patients of them, with replacement, `reps` times, from `seed`)
 * and gives the interval of each finding's AUROC (ci[0..13]) and of the mean AUROC over the
 * findings with at least `min_positives` positives in the replicate (ci[14]). */
rd_status rd_auroc_bootstrap(const float *scores, const uint16_t *bits, const int *patient, int n,
                             int n_patients, int reps, uint64_t seed, int min_positives,
                             rd_auroc_interval ci[RD_FINDING_N_ABNORMAL + 1], rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
