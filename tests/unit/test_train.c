/* The trainer: AUROC on known values, a tiny overfit, determinism for a seed, resume
 * equal to an uninterrupted run, the written model equal through the inference engine and
 * the trainer's own eval forward, and a smoke run on the NIH 64 px images. Synthetic sets
 * are small PNGs written to a temporary folder. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/nn_train_int.h"
#include "radraft/encoder.h"
#include "radraft/image.h"
#include "radraft/train.h"
#include "rdtest.h"
#include "base/util.h"

RD_TEST(auroc_known_values)
{
    float s1[4] = {0.1f, 0.4f, 0.35f, 0.8f};
    unsigned char y1[4] = {0, 0, 1, 1};
    CHECK_NEAR(rd_auroc(s1, y1, 4), 0.75, 1e-12); /* scikit-learn's roc_auc_score example */
    float s2[4] = {0.5f, 0.5f, 0.2f, 0.9f};
    unsigned char y2[4] = {1, 0, 0, 1};
    /* Pairs (pos, neg): (0.5, 0.5) ties = 1/2, the other three are won: 3.5 / 4. */
    CHECK_NEAR(rd_auroc(s2, y2, 4), 0.875, 1e-12);
    float s3[5] = {0.3f, 0.3f, 0.3f, 0.3f, 0.3f};
    unsigned char y3[5] = {1, 0, 1, 0, 0};
    CHECK_NEAR(rd_auroc(s3, y3, 5), 0.5, 1e-12);
    float s4[4] = {0.9f, 0.8f, 0.2f, 0.1f};
    unsigned char y4[4] = {1, 1, 0, 0}, y5[4] = {0, 0, 1, 1}, y6[4] = {1, 1, 1, 1};
    CHECK_NEAR(rd_auroc(s4, y4, 4), 1.0, 1e-12);
    CHECK_NEAR(rd_auroc(s4, y5, 4), 0.0, 1e-12);
    CHECK(isnan(rd_auroc(s4, y6, 4)));
}

/* Writes `n` images of side `size` and a labels CSV into `dir`. Finding f is present when
 * bit f of a per-image code is set; the image shows that code as bright squares (one per
 * finding, at fixed places) over noise, so that it is learnable. Two images per patient. */
static void write_set(const char *dir, int n, int size, uint64_t seed)
{
    char path[2048];
    rd_error err;
    uint64_t r = seed;
    snprintf(path, sizeof path, "%s/labels.csv", dir);
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    fputs("image,patient_id,view,age,sex,labels\n", fp);
    static const char *const names[4] = {"Atelectasis", "Cardiomegaly", "Effusion", "Mass"};
    for (int i = 0; i < n; i++) {
        rd_image *img = NULL;
        REQUIRE_OK(rd_image_create(&img, size, size, &err), &err);
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int code = (int)((r >> 33) & 15);
        for (int q = 0; q < size * size; q++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            img->data[q] = 0.3f + 0.2f * (float)((r >> 40) & 0xff) / 255.0f;
        }
        for (int f = 0; f < 4; f++)
            if (code >> f & 1)
                for (int y = 0; y < size / 4; y++)
                    for (int x = 0; x < size / 4; x++)
                        img->data[(size_t)(y + (f / 2) * size / 2) * size + x +
                                  (f % 2) * size / 2] = 0.95f;
        snprintf(path, sizeof path, "%s/img%03d.png", dir, i);
        REQUIRE_OK(rd_png_write(img, path, 8, &err), &err);
        rd_image_free(img);
        fprintf(fp, "img%03d.png,%d,PA,50,M,", i, 1000 + i / 2);
        int first = 1;
        for (int f = 0; f < 4; f++)
            if (code >> f & 1) {
                fprintf(fp, "%s%s", first ? "" : "|", names[f]);
                first = 0;
            }
        fputs(first ? "No Finding\n" : "\n", fp);
    }
    fclose(fp);
}

static void tiny_options(rd_train_options *o, const char *dir, const char *out)
{
    static char csv[2048];
    snprintf(csv, sizeof csv, "%s/labels.csv", dir);
    rd_train_options_default(o);
    o->images_dir = dir;
    o->labels_csv = csv;
    o->out_dir = out;
    o->input_size = 32;
    o->threads = 2;
    o->batch = 8;
    o->patience = 0;
}

static int same_file(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    int same = rd_read_file(a, (size_t)1 << 30, &x, &lx, NULL) == RD_OK &&
               rd_read_file(b, (size_t)1 << 30, &y, &ly, NULL) == RD_OK && lx == ly &&
               memcmp(x, y, lx) == 0;
    free(x);
    free(y);
    return same;
}

/* 16 images, no augmentation, no validation: the network memorizes them. */
RD_TEST(overfit_tiny)
{
    char dir[1100], out[1200];
    rd_train_options o;
    rd_train_result *res = calloc(1, sizeof *res);
    rd_error err;
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir("train_overfit"));
    snprintf(out, sizeof out, "%s/model", dir);
    write_set(dir, 16, 32, 3);
    tiny_options(&o, dir, out);
    o.augment = 0;
    o.val_fraction = 0;
    o.label_smoothing = 0;
    o.pos_weight_cap = 1;
    o.epochs = 30;
    o.lr = 2e-3;
    o.warmup_epochs = 2;
    REQUIRE_OK(rd_train_run(&o, res, &err), &err);
    CHECK_EQ_INT(res->epochs_run, 30);
    CHECK_EQ_INT(res->n_train, 16);
    fprintf(stderr, "overfit: loss %.4f -> %.4f\n", res->train_loss[0], res->train_loss[29]);
    CHECK_MSG(res->train_loss[29] < res->train_loss[0] / 5, "loss %.4f -> %.4f", res->train_loss[0],
              res->train_loss[29]);
    free(res);
}

RD_TEST(deterministic_and_resume)
{
    char dir[1100], a[1200], b[1200], c[1200], d[1200], pa[1300], pb[1300];
    rd_train_options o;
    rd_train_result *res = calloc(1, sizeof *res);
    rd_error err;
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir("train_determinism"));
    write_set(dir, 40, 32, 5);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir);
    snprintf(d, sizeof d, "%s/d", dir);
    tiny_options(&o, dir, a);
    o.epochs = 2;
    o.val_fraction = 0.3;
    o.min_positives = 1;
    REQUIRE_OK(rd_train_run(&o, res, &err), &err);
    CHECK(res->n_val > 0 && res->n_train > 0);
    CHECK_EQ_INT(res->n_train + res->n_val, 40);
    long steps_per_epoch = res->n_train / 8;
    o.out_dir = b;
    REQUIRE_OK(rd_train_run(&o, res, &err), &err);
    snprintf(pa, sizeof pa, "%s/checkpoint/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/checkpoint/model.safetensors", b);
    CHECK_MSG(same_file(pa, pb), "two runs with seed %llu differ", (unsigned long long)o.seed);
    snprintf(pb, sizeof pb, "%s/checkpoint/optimizer.safetensors", b);
    snprintf(pa, sizeof pa, "%s/checkpoint/optimizer.safetensors", a);
    CHECK(same_file(pa, pb));
    /* Another seed gives other weights. */
    o.out_dir = c;
    o.seed = 2;
    REQUIRE_OK(rd_train_run(&o, res, &err), &err);
    snprintf(pa, sizeof pa, "%s/checkpoint/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/checkpoint/model.safetensors", c);
    CHECK(!same_file(pa, pb));
    /* One epoch, then resume for the second: the same weights as two epochs at once. */
    o.seed = 1;
    o.out_dir = d;
    o.max_steps = steps_per_epoch; /* exactly one epoch */
    REQUIRE_OK(rd_train_run(&o, res, &err), &err);
    CHECK_EQ_INT(res->last_epoch, 0);
    o.max_steps = 0;
    snprintf(pb, sizeof pb, "%s/checkpoint", d);
    o.resume = pb;
    REQUIRE_OK(rd_train_run(&o, res, &err), &err);
    CHECK_EQ_INT(res->epochs_run, 1);
    CHECK_EQ_INT(res->last_epoch, 1);
    snprintf(pb, sizeof pb, "%s/checkpoint/model.safetensors", d);
    CHECK_MSG(same_file(pa, pb), "resumed run differs from the uninterrupted one");
    free(res);
}

/* The written model through the inference engine (batch norm folded) and the encoder's
 * preprocessing gives the scores of the trainer's own eval-mode forward. */
RD_TEST(written_model_matches_trainer)
{
    char dir[1100], out[1200], png[1300];
    rd_train_options o;
    rd_train_result *res = calloc(1, sizeof *res);
    rd_error err;
    rd_nn_model *raw = NULL;
    rd_tnet *net = NULL;
    rd_encoder *enc = NULL;
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir("train_written"));
    snprintf(out, sizeof out, "%s/model", dir);
    write_set(dir, 24, 32, 9);
    tiny_options(&o, dir, out);
    o.epochs = 2;
    o.val_fraction = 0;
    REQUIRE_OK(rd_train_run(&o, res, &err), &err);
    REQUIRE_OK(rd_nn_model_load_raw(&raw, out, &err), &err);
    REQUIRE_OK(rd_tnet_create(&net, raw, 4, 2, &err), &err);
    REQUIRE_OK(rd_encoder_create(&enc, out, 2, 4, &err), &err);
    const rd_nn_info *info = rd_encoder_info(enc);
    CHECK_EQ_INT(info->in_height, 32);
    float x[4 * 32 * 32], scores[4 * 14], emb[4 * 256];
    const rd_image *imgs[4];
    rd_image *own[4];
    for (int i = 0; i < 4; i++) {
        snprintf(png, sizeof png, "%s/img%03d.png", dir, i);
        REQUIRE_OK(rd_png_read(png, &own[i], NULL, &err), &err);
        imgs[i] = own[i];
        for (int q = 0; q < 32 * 32; q++)
            x[i * 1024 + q] = (own[i]->data[q] - info->mean[0]) / info->std[0];
    }
    REQUIRE(info->embedding_dim <= 256);
    REQUIRE_OK(rd_encoder_embed_batch(enc, imgs, 4, emb, scores, &err), &err);
    REQUIRE_OK(rd_tnet_forward(net, x, 4, 0, &err), &err);
    const float *s = rd_tnet_value(net, rd_tnet_output_node(net, "scores"), NULL);
    const float *e = rd_tnet_value(net, rd_tnet_output_node(net, "embedding"), NULL);
    double ds = 0, de = 0, spread = 0;
    for (int q = 0; q < 4 * 14; q++) {
        ds = fmax(ds, fabs((double)s[q] - scores[q]));
        spread = fmax(spread, fabs((double)scores[q] - scores[q % 14]));
    }
    for (int q = 0; q < 4 * info->embedding_dim; q++)
        de = fmax(de, fabs((double)e[q] - emb[q]));
    CHECK_MSG(ds <= 1e-5, "scores differ by %g", ds);
    CHECK_MSG(de <= 1e-5, "embeddings differ by %g", de);
    CHECK(spread > 1e-4); /* the images do get different scores */
    for (int i = 0; i < 4; i++)
        rd_image_free(own[i]);
    rd_encoder_free(enc);
    rd_tnet_free(net);
    rd_nn_model_free(raw);
    free(res);
}

/* The k-fold split: the holdout is the same for every fold and never trained or validated
 * on; the folds' validation sets are disjoint and together cover every other patient; fold
 * -1 trains on all of them. Read back from the split each model records. */
static void split_of(const char *model_dir, cJSON **doc)
{
    char path[1300], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/model.json", model_dir);
    REQUIRE_OK(rd_read_file(path, (size_t)1 << 26, &text, &len, NULL), NULL);
    *doc = cJSON_Parse(text);
    free(text);
    REQUIRE(*doc);
}

static const cJSON *split_member(const cJSON *doc, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "training"),
                                         "split"),
        key);
}

static int in_array(const cJSON *arr, const char *id)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) if (strcmp(v->valuestring, id) == 0) return 1;
    return 0;
}

RD_TEST(kfold_split_partitions_patients)
{
    char dir[1100], out[1200];
    rd_train_options o;
    rd_train_result *res = calloc(1, sizeof *res);
    rd_error err;
    cJSON *docs[6] = {NULL};
    int n_holdout = -1, val_total = 0;
    REQUIRE(res);
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir("train_kfold"));
    write_set(dir, 120, 16, 9); /* 60 patients, two images each */
    for (int k = -1; k < 5; k++) {
        snprintf(out, sizeof out, "%s/fold%d", dir, k);
        tiny_options(&o, dir, out);
        o.input_size = 16;
        o.epochs = 1;
        o.max_steps = 1;
        o.folds = 5;
        o.fold = k;
        o.holdout_fraction = 0.2;
        REQUIRE_OK(rd_train_run(&o, res, &err), &err);
        CHECK_EQ_INT(res->n_train + res->n_val + res->n_holdout, 120);
        if (n_holdout < 0)
            n_holdout = res->n_holdout;
        CHECK_EQ_INT(res->n_holdout, n_holdout);
        if (k == -1)
            CHECK_EQ_INT(res->n_val, 0);
        else
            val_total += res->n_val;
        split_of(out, &docs[k + 1]);
    }
    /* About a fifth of 60 patients are held out, and each fold validates on some. */
    CHECK_MSG(n_holdout >= 8 && n_holdout <= 40, "holdout %d images", n_holdout);
    CHECK_EQ_INT(val_total + n_holdout, 120);
    const cJSON *hold = split_member(docs[0], "holdout_patient_ids");
    REQUIRE(cJSON_IsArray(hold));
    for (int p = 1000; p < 1060; p++) {
        char id[16];
        snprintf(id, sizeof id, "%d", p);
        int held = in_array(hold, id), folds_with = 0;
        for (int k = 1; k < 6; k++) {
            CHECK(in_array(split_member(docs[k], "holdout_patient_ids"), id) == held);
            folds_with += in_array(split_member(docs[k], "val_patient_ids"), id);
        }
        CHECK_MSG(folds_with == (held ? 0 : 1), "patient %s: validated in %d folds (held %d)", id,
                  folds_with, held);
    }
    for (int k = 0; k < 6; k++)
        cJSON_Delete(docs[k]);
    /* Out of range: a fold past the folds, one fold, a holdout of everything. */
    tiny_options(&o, dir, out);
    o.folds = 5;
    o.fold = 5;
    CHECK(rd_train_run(&o, res, &err) == RD_E_INVALID);
    o.folds = 1;
    o.fold = 0;
    CHECK(rd_train_run(&o, res, &err) == RD_E_INVALID);
    o.folds = 5;
    o.holdout_fraction = 0.95;
    CHECK(rd_train_run(&o, res, &err) == RD_E_INVALID);
    free(res);
}

/* The extra set adds training images only: its patients on the validation or holdout side
 * and its images that the main set already has are left out, so the validation and
 * holdout stay exactly what they were. */
RD_TEST(extra_set_trains_only)
{
    char dir[1100], extra[1200], out[1200], csv[1300], src[1300], dst[1300];
    rd_train_options o;
    rd_train_result *res = calloc(1, sizeof *res), *base = calloc(1, sizeof *base);
    rd_error err;
    REQUIRE(res && base);
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir("train_extra"));
    snprintf(extra, sizeof extra, "%s/extra", dir);
    REQUIRE_OK(rd_mkdirs(extra, &err), &err);
    write_set(dir, 80, 16, 4);   /* patients 1000..1039 */
    write_set(extra, 60, 16, 5); /* the same names and patients 1000..1029 */
    /* The extra set's last 20 images become new patients 2000..2019 under new names. */
    snprintf(csv, sizeof csv, "%s/labels.csv", extra);
    char *text = NULL;
    size_t len = 0;
    REQUIRE_OK(rd_read_file(csv, 1 << 20, &text, &len, &err), &err);
    FILE *fp = fopen(csv, "w");
    REQUIRE(fp);
    int row = 0;
    for (char *line = text, *nl; line && *line; line = nl, row++) {
        nl = strchr(line, '\n');
        if (nl)
            *nl++ = '\0';
        if (row <= 40) {
            fprintf(fp, "%s\n", line);
            continue;
        }
        int i = row - 1;
        const char *rest = strchr(strchr(line, ',') + 1, ',');
        fprintf(fp, "new%03d.png,%d%s\n", i, 2000 + (i - 40), rest);
        snprintf(src, sizeof src, "%s/img%03d.png", extra, i);
        snprintf(dst, sizeof dst, "%s/new%03d.png", extra, i);
        REQUIRE(rename(src, dst) == 0);
    }
    fclose(fp);
    free(text);

    snprintf(out, sizeof out, "%s/base", dir);
    tiny_options(&o, dir, out);
    o.epochs = 1;
    o.max_steps = 1;
    o.folds = 5;
    o.fold = 1;
    o.holdout_fraction = 0.2;
    REQUIRE_OK(rd_train_run(&o, base, &err), &err);
    snprintf(out, sizeof out, "%s/with-extra", dir);
    o.out_dir = out;
    o.extra_labels_csv = csv;
    o.extra_images_dir = extra;
    REQUIRE_OK(rd_train_run(&o, res, &err), &err);
    CHECK_EQ_INT(res->n_val, base->n_val);
    CHECK_EQ_INT(res->n_holdout, base->n_holdout);
    /* The first 40 extra images share names with the main set: none is added. Of the 20
     * new ones, those whose patient trains are added. */
    int added = res->n_train - base->n_train;
    CHECK_MSG(added > 0 && added < 20, "%d extra images added", added);
    free(res);
    free(base);
}

RD_TEST(bad_inputs_refused)
{
    char dir[1100], csv[1200];
    rd_train_options o;
    rd_error err;
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir("train_bad"));
    write_set(dir, 4, 32, 1);
    tiny_options(&o, dir, dir);
    snprintf(csv, sizeof csv, "%s/bad.csv", dir);
    o.labels_csv = csv;
    const char *bad[] = {"image,patient_id,view,age,sex,labels\nimg000.png,1,PA,1,M,Unicorn\n",
                         "image,patient_id,view,age,sex,labels\n../etc/passwd,1,PA,1,M,Mass\n",
                         "image,view,labels\nimg000.png,PA,Mass\n",
                         "image,patient_id,view,age,sex,labels\nimg000.png,1,PA\n"};
    for (int i = 0; i < 4; i++) {
        REQUIRE_OK(rd_write_file_atomic(csv, bad[i], strlen(bad[i]), &err), &err);
        CHECK_EQ_INT(rd_train_run(&o, NULL, &err), RD_E_INVALID);
    }
    tiny_options(&o, dir, dir);
    o.batch = 1;
    CHECK_EQ_INT(rd_train_run(&o, NULL, &err), RD_E_INVALID);
    /* A file that is not an image stops the run with an error naming it. */
    char junk[1200];
    snprintf(junk, sizeof junk, "%s/junk.png", dir);
    REQUIRE_OK(rd_write_file_atomic(junk, "not a png", 9, &err), &err);
    const char *with_junk = "image,patient_id,view,age,sex,labels\nimg000.png,1,PA,1,M,Mass\n"
                            "junk.png,2,PA,1,M,Mass\nimg001.png,3,PA,1,M,No Finding\n";
    tiny_options(&o, dir, dir);
    o.labels_csv = csv;
    o.val_fraction = 0;
    o.batch = 3;
    REQUIRE_OK(rd_write_file_atomic(csv, with_junk, strlen(with_junk), &err), &err);
    CHECK(rd_train_run(&o, NULL, &err) != RD_OK);
    CHECK_MSG(strstr(rd_error_message(&err), "junk.png") != NULL, "message: %s",
              rd_error_message(&err));
}

/* A few steps of resnet-small on real NIH radiographs at 64 px: the loss goes down and the
 * model loads in the encoder. */
RD_TEST(smoke_nih_lowres)
{
    char images[1100], csv[1100], out[1200];
    const char *shared = rd_test_shared_data();
    rd_train_options o;
    rd_train_result *res = calloc(1, sizeof *res);
    rd_error err;
    rd_encoder *enc = NULL;
    REQUIRE(shared);
    snprintf(images, sizeof images, "%s/nih/lowres64/images", shared);
    snprintf(csv, sizeof csv, "%s/nih/lowres64/labels.csv", shared);
    snprintf(out, sizeof out, "%s/model", rd_test_tmpdir("train_smoke"));
    rd_train_options_default(&o);
    o.images_dir = images;
    o.labels_csv = csv;
    o.out_dir = out;
    o.input_size = 64;
    o.max_images = 96;
    o.batch = 16;
    o.epochs = 4;
    o.threads = 2;
    o.augment = 0;
    o.val_fraction = 0;
    o.patience = 0;
    REQUIRE_OK(rd_train_run(&o, res, &err), &err);
    fprintf(stderr, "smoke: loss %.4f %.4f %.4f %.4f, %.1f img/s\n", res->train_loss[0],
            res->train_loss[1], res->train_loss[2], res->train_loss[3], res->images_per_s);
    CHECK_EQ_INT(res->epochs_run, 4);
    CHECK_MSG(res->train_loss[3] < res->train_loss[0], "loss %.4f -> %.4f", res->train_loss[0],
              res->train_loss[3]);
    REQUIRE_OK(rd_encoder_create(&enc, out, 1, 1, &err), &err);
    CHECK_EQ_INT(rd_encoder_info(enc)->n_labels, 14);
    rd_encoder_free(enc);
    free(res);
}

RD_TEST_MAIN()
