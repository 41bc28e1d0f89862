/* radraft train: train the image encoder on labelled images (NIH ChestX-ray14 CSV format). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "radraft/nn.h"
#include "radraft/train.h"

static const char help[] =
    "usage: radraft train --images DIR --labels CSV --out MODEL_DIR [OPTIONS]\n"
    "Trains the chest X-ray encoder. CSV columns: image,patient_id,view,age,sex,labels\n"
    "(labels '|'-separated finding names, or \"No Finding\"). Images (PNG or DICOM) are split\n"
    "by patient into training and validation, streamed from disk per batch and augmented\n"
    "(rotation, scale, translation, brightness/contrast/gamma; no flip). Writes\n"
    "MODEL_DIR/model.json + model.safetensors (the best epoch by validation mean AUROC, with\n"
    "recipe, split and metrics) and MODEL_DIR/checkpoint/ (latest epoch, for --resume).\n\n"
    "  --images DIR          folder of the images named in the CSV\n"
    "  --labels CSV          labels file\n"
    "  --extra-labels CSV    more labelled images, for training only (patients on the\n"
    "                        validation or holdout side and images the main set has are\n"
    "                        left out)\n"
    "  --extra-images DIR    their folder (default: --images)\n"
    "  --out DIR             output model folder\n"
    "  --arch NAME           resnet-small (default), resnet18, opzoo\n"
    "  --init-model M        start from this model's weights instead of a random init\n"
    "  --input-size N        square input side (default: the architecture's, 256)\n"
    "  --epochs N            default 30\n"
    "  --batch N             default 32\n"
    "  --lr X                peak learning rate (default 0.001)\n"
    "  --weight-decay X      AdamW decoupled weight decay (default 0.0001)\n"
    "  --warmup X            warmup epochs (default 1)\n"
    "  --label-smoothing X   default 0.05\n"
    "  --pos-weight-cap X    cap of the per-finding positive weight neg/pos (default 10)\n"
    "  --val-fraction F      share of patients for validation (default 0.15)\n"
    "  --folds K             patient-level K-fold cross-validation instead: a holdout of\n"
    "                        patients is left out, the rest cut into K folds\n"
    "  --fold I              with --folds: validate on fold I (0..K-1), train on the others;\n"
    "                        -1 trains on every fold without validation (default 0)\n"
    "  --holdout-fraction F  with --folds: share of patients never trained on, for\n"
    "                        calibration and thresholds (default 0.15)\n"
    "  --patience N          early stopping after N epochs without improvement (default 8,\n"
    "                        0 = never)\n"
    "  --mixup A             blend pairs of training images and their labels, weight ~\n"
    "                        Beta(A, A) (0 < A <= 1; default 0 = off)\n"
    "  --no-augment          train on the plain images\n"
    "  --seed N              default 1 (same seed + same threads = same weights)\n"
    "  --threads N           compute threads (default 0 = one per core)\n"
    "  --max-images N        use only the first N rows of the CSV\n"
    "  --max-steps N         stop after N optimizer steps (for timing)\n"
    "  --resume DIR          continue from a checkpoint folder (pass the same options)\n"
    "  --version TEXT        model version to write\n" RD_CLI_COMMON_HELP;

static int parse_double(const rd_cli *cli, const char *name, const char *text, double lo, double hi,
                        double *out)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (!end || end == text || *end || !(v >= lo && v <= hi)) {
        rd_cli_error(cli, "%s: '%s' is not a number in [%g, %g]", name, text, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int rd_cmd_train(int argc, char **argv)
{
    enum {
        OPT_IMAGES = RD_OPT_FIRST_PRIVATE,
        OPT_LABELS,
        OPT_OUT,
        OPT_ARCH,
        OPT_INIT,
        OPT_INPUT,
        OPT_EPOCHS,
        OPT_BATCH,
        OPT_LR,
        OPT_WD,
        OPT_WARMUP,
        OPT_SMOOTH,
        OPT_PWCAP,
        OPT_VALFRAC,
        OPT_FOLDS,
        OPT_FOLD,
        OPT_HOLDOUT,
        OPT_PATIENCE,
        OPT_NOAUG,
        OPT_MIXUP,
        OPT_EXTRA_LABELS,
        OPT_EXTRA_IMAGES,
        OPT_SEED,
        OPT_THREADS,
        OPT_MAXIMG,
        OPT_MAXSTEPS,
        OPT_RESUME,
        OPT_VERSION
    };
    static const struct option opts[] = {
        {"images", required_argument, NULL, OPT_IMAGES},
        {"labels", required_argument, NULL, OPT_LABELS},
        {"out", required_argument, NULL, OPT_OUT},
        {"arch", required_argument, NULL, OPT_ARCH},
        {"init-model", required_argument, NULL, OPT_INIT},
        {"input-size", required_argument, NULL, OPT_INPUT},
        {"epochs", required_argument, NULL, OPT_EPOCHS},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"lr", required_argument, NULL, OPT_LR},
        {"weight-decay", required_argument, NULL, OPT_WD},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"label-smoothing", required_argument, NULL, OPT_SMOOTH},
        {"pos-weight-cap", required_argument, NULL, OPT_PWCAP},
        {"val-fraction", required_argument, NULL, OPT_VALFRAC},
        {"folds", required_argument, NULL, OPT_FOLDS},
        {"fold", required_argument, NULL, OPT_FOLD},
        {"holdout-fraction", required_argument, NULL, OPT_HOLDOUT},
        {"patience", required_argument, NULL, OPT_PATIENCE},
        {"no-augment", no_argument, NULL, OPT_NOAUG},
        {"mixup", required_argument, NULL, OPT_MIXUP},
        {"extra-labels", required_argument, NULL, OPT_EXTRA_LABELS},
        {"extra-images", required_argument, NULL, OPT_EXTRA_IMAGES},
        {"seed", required_argument, NULL, OPT_SEED},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"max-images", required_argument, NULL, OPT_MAXIMG},
        {"max-steps", required_argument, NULL, OPT_MAXSTEPS},
        {"resume", required_argument, NULL, OPT_RESUME},
        {"version", required_argument, NULL, OPT_VERSION},
        RD_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    rd_train_options o;
    rd_train_result *res = NULL;
    long v;
    int opt, rc, bad = 0;

    rd_cli_init(&cli, "radraft train");
    rd_train_options_default(&o);
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_IMAGES:
            o.images_dir = optarg;
            break;
        case OPT_LABELS:
            o.labels_csv = optarg;
            break;
        case OPT_OUT:
            o.out_dir = optarg;
            break;
        case OPT_ARCH:
            o.arch = optarg;
            break;
        case OPT_INIT:
            o.init_model = optarg;
            break;
        case OPT_RESUME:
            o.resume = optarg;
            break;
        case OPT_VERSION:
            o.version = optarg;
            break;
        case OPT_INPUT:
            bad |= rd_cli_parse_int(&cli, "--input-size", optarg, 16, 2048, &v);
            o.input_size = (int)v;
            break;
        case OPT_EPOCHS:
            bad |= rd_cli_parse_int(&cli, "--epochs", optarg, 1, RD_TRAIN_MAX_EPOCHS, &v);
            o.epochs = (int)v;
            break;
        case OPT_BATCH:
            bad |= rd_cli_parse_int(&cli, "--batch", optarg, 2, 1024, &v);
            o.batch = (int)v;
            break;
        case OPT_PATIENCE:
            bad |= rd_cli_parse_int(&cli, "--patience", optarg, 0, RD_TRAIN_MAX_EPOCHS, &v);
            o.patience = (int)v;
            break;
        case OPT_THREADS:
            bad |= rd_cli_parse_int(&cli, "--threads", optarg, 0, RD_NN_MAX_THREADS, &v);
            o.threads = (int)v;
            break;
        case OPT_MAXIMG:
            bad |= rd_cli_parse_int(&cli, "--max-images", optarg, 0, 100000000, &v);
            o.max_images = (int)v;
            break;
        case OPT_MAXSTEPS:
            bad |= rd_cli_parse_int(&cli, "--max-steps", optarg, 0, 1000000000, &v);
            o.max_steps = v;
            break;
        case OPT_SEED:
            bad |= rd_cli_parse_int(&cli, "--seed", optarg, 0, 2147483647, &v);
            o.seed = (uint64_t)v;
            break;
        case OPT_LR:
            bad |= parse_double(&cli, "--lr", optarg, 1e-8, 1.0, &o.lr);
            break;
        case OPT_WD:
            bad |= parse_double(&cli, "--weight-decay", optarg, 0, 0.5, &o.weight_decay);
            break;
        case OPT_WARMUP:
            bad |= parse_double(&cli, "--warmup", optarg, 0, 1000, &o.warmup_epochs);
            break;
        case OPT_SMOOTH:
            bad |= parse_double(&cli, "--label-smoothing", optarg, 0, 0.5, &o.label_smoothing);
            break;
        case OPT_PWCAP:
            bad |= parse_double(&cli, "--pos-weight-cap", optarg, 1, 1000, &o.pos_weight_cap);
            break;
        case OPT_VALFRAC:
            bad |= parse_double(&cli, "--val-fraction", optarg, 0, 0.9, &o.val_fraction);
            break;
        case OPT_FOLDS:
            bad |= rd_cli_parse_int(&cli, "--folds", optarg, 2, 100, &v);
            o.folds = (int)v;
            break;
        case OPT_FOLD:
            bad |= rd_cli_parse_int(&cli, "--fold", optarg, -1, 99, &v);
            o.fold = (int)v;
            break;
        case OPT_HOLDOUT:
            bad |= parse_double(&cli, "--holdout-fraction", optarg, 0, 0.89, &o.holdout_fraction);
            break;
        case OPT_EXTRA_LABELS:
            o.extra_labels_csv = optarg;
            break;
        case OPT_EXTRA_IMAGES:
            o.extra_images_dir = optarg;
            break;
        case OPT_MIXUP:
            bad |= parse_double(&cli, "--mixup", optarg, 0, 1, &o.mixup);
            break;
        case OPT_NOAUG:
            o.augment = 0;
            break;
        }
        if (bad)
            return RD_EXIT_USAGE;
    }
    if (opt < 0)
        return rc;
    if (optind < argc || !o.images_dir || !o.labels_csv || !o.out_dir)
        return rd_cli_usage_error(&cli, help,
                                  "--images, --labels and --out are required (and nothing else)");
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_NO_OPERANDS)) != RD_EXIT_OK)
        return rc;
    res = malloc(sizeof *res);
    if (!res) {
        rd_cli_error(&cli, "out of memory");
        return RD_EXIT_FAIL;
    }
    if (rd_train_run(&o, res, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        free(res);
        return RD_EXIT_FAIL;
    }
    printf("radraft train: %s: %d epochs run, best epoch %d, validation mean AUROC %.4f, "
           "%ld steps, %d training / %d validation / %d holdout images, %.2f images/s\n",
           o.out_dir, res->epochs_run, res->best_epoch + 1, res->best_val_auroc, res->steps,
           res->n_train, res->n_val, res->n_holdout, res->images_per_s);
    free(res);
    return RD_EXIT_OK;
}
