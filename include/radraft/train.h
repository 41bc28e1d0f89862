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

#ifdef __cplusplus
extern "C" {
#endif

#define RD_TRAIN_MAX_EPOCHS 1000

typedef struct rd_train_options {
    const char *images_dir; /* folder the CSV's image names are relative to */
    const char *labels_csv; /* NIH-format labels */
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
    double pos_weight_cap;  /* positive weight = min(neg/pos, cap) per finding (default 10) */
    double val_fraction;    /* share of patients held out (default 0.15) */
    int min_positives;      /* findings with fewer validation positives are not averaged (5) */
    uint64_t seed;          /* default 1 */
} rd_train_options;

/* What a run did. Losses are means over the epoch's batches. */
typedef struct rd_train_result {
    int epochs_run; /* epochs finished in this run (resumed ones not counted) */
    int last_epoch; /* index of the last finished epoch (0-based), -1 if none */
    int best_epoch; /* epoch whose weights are in out_dir/model.*, -1 if none */
    long steps;     /* optimizer steps in total (including resumed ones) */
    int n_train, n_val, n_train_patients, n_val_patients;
    double best_val_auroc; /* mean over findings with enough positives; NaN if none */
    double images_per_s;   /* training throughput of this run */
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

#ifdef __cplusplus
}
#endif
#endif
