/* The encoder: preprocessing from the model file, embeddings and scores, batches, encoders
 * sharing one model, and the models it refuses. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "radraft/encoder.h"
#include "radraft/image.h"
#include "radraft/nn.h"
#include "rdtest.h"
#include "base/util.h"

static rd_image *gradient(int w, int h, float phase)
{
    rd_image *img = NULL;
    if (rd_image_create(&img, w, h, NULL) != RD_OK)
        return NULL;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            img->data[y * w + x] =
                0.5f + 0.45f * sinf(phase + 0.05f * (float)x) * cosf(0.03f * (float)y);
    return img;
}

RD_TEST(preprocess_matches_resize_and_normalize)
{
    const char *dir = rd_test_tmpdir("enc_pre");
    rd_encoder *enc = NULL;
    rd_error err;
    REQUIRE_OK(rd_nn_model_init("resnet18", 1, dir, &err), &err);
    REQUIRE_OK(rd_encoder_create(&enc, dir, 1, 1, &err), &err);
    const rd_nn_info *info = rd_encoder_info(enc);
    rd_image *img = gradient(300, 260, 0.0f), *small = NULL;
    REQUIRE(img);
    size_t plane = 224 * 224;
    float *x = malloc(3 * plane * sizeof *x);
    CHECK_OK(rd_encoder_preprocess(enc, img, x, &err), &err);
    REQUIRE_OK(rd_image_resize(img, 224, 224, &small, &err), &err);
    /* Three channels, each the same gray image with its own mean and std. */
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    double d = 0;
    for (int c = 0; c < 3; c++) {
        CHECK_NEAR(info->mean[c], mean[c], 1e-6);
        for (size_t i = 0; i < plane; i++)
            d = fmax(d, fabs(x[c * plane + i] - (small->data[i] - mean[c]) / sd[c]));
    }
    CHECK_MSG(d < 1e-5, "preprocessing differs by %g", d);
    rd_image_free(small);
    rd_image_free(img);
    free(x);
    rd_encoder_free(enc);
}

RD_TEST(embed_single_and_batch)
{
    const char *dir = rd_test_tmpdir("enc_embed");
    rd_encoder *enc = NULL;
    rd_error err;
    REQUIRE_OK(rd_nn_model_init("resnet-small", 5, dir, &err), &err);
    /* Batch of 2 with 5 images: three forward passes, the last one partial. */
    REQUIRE_OK(rd_encoder_create(&enc, dir, 2, 2, &err), &err);
    const rd_nn_info *info = rd_encoder_info(enc);
    REQUIRE(info->embedding_dim == 256 && info->n_labels == 14);
    rd_image *imgs[5];
    for (int i = 0; i < 5; i++)
        imgs[i] = gradient(200 + 40 * i, 256, (float)i);
    float emb[5 * 256], sc[5 * 14], e1[256], s1[14];
    REQUIRE_OK(rd_encoder_embed_batch(enc, (const rd_image *const *)imgs, 5, emb, sc, &err), &err);
    for (int i = 0; i < 5; i++) {
        double norm = 0, d = 0;
        for (int j = 0; j < 256; j++)
            norm += (double)emb[i * 256 + j] * emb[i * 256 + j];
        CHECK_NEAR(norm, 1.0, 1e-5);
        CHECK_OK(rd_encoder_embed(enc, imgs[i], e1, s1, &err), &err);
        for (int j = 0; j < 256; j++)
            d = fmax(d, fabs(e1[j] - emb[i * 256 + j]));
        for (int j = 0; j < 14; j++) {
            d = fmax(d, fabs(s1[j] - sc[i * 14 + j]));
            CHECK(s1[j] >= 0 && s1[j] <= 1);
        }
        CHECK_MSG(d < 1e-5, "image %d: single and batched results differ by %g", i, d);
    }
    /* Different images, different embeddings. */
    double diff = 0;
    for (int j = 0; j < 256; j++)
        diff += fabs(emb[j] - emb[256 + j]);
    CHECK(diff > 1e-3);
    /* scores may be NULL. */
    CHECK_OK(rd_encoder_embed(enc, imgs[0], e1, NULL, &err), &err);
    CHECK_EQ_INT(rd_encoder_embed_batch(enc, (const rd_image *const *)imgs, 0, emb, sc, &err),
                 RD_E_INVALID);
    for (int i = 0; i < 5; i++)
        rd_image_free(imgs[i]);
    rd_encoder_free(enc);
    rd_encoder_free(NULL);
}

RD_TEST(embed_nih_png)
{
    const char *data = rd_test_shared_data();
    const char *dir = rd_test_tmpdir("enc_nih");
    char path[1200];
    rd_encoder *enc = NULL;
    rd_image *img = NULL;
    rd_error err;
    float emb[256], sc[14];
    snprintf(path, sizeof path, "%s/nih/images/00000001_000.png", data);
    REQUIRE_OK(rd_nn_model_init("resnet-small", 5, dir, &err), &err);
    REQUIRE_OK(rd_encoder_create(&enc, dir, 0, 1, &err), &err);
    REQUIRE_OK(rd_png_read(path, &img, NULL, &err), &err);
    CHECK_EQ_INT(img->width, 256);
    CHECK_OK(rd_encoder_embed(enc, img, emb, sc, &err), &err);
    double norm = 0;
    for (int j = 0; j < 256; j++)
        norm += (double)emb[j] * emb[j];
    CHECK_NEAR(norm, 1.0, 1e-5);
    rd_image_free(img);
    rd_encoder_free(enc);
}

typedef struct shared_job {
    rd_encoder *enc;
    rd_image *const *imgs;
    float emb[4 * 256], sc[4 * 14];
    rd_status st;
} shared_job;

static void *shared_embed(void *p)
{
    shared_job *job = p;
    /* Several rounds, so that the threads' forwards overlap. */
    for (int r = 0; r < 3 && job->st == RD_OK; r++)
        job->st = rd_encoder_embed_batch(job->enc, (const rd_image *const *)job->imgs, 4, job->emb,
                                         job->sc, NULL);
    return NULL;
}

RD_TEST(encoders_share_one_model)
{
    const char *dir = rd_test_tmpdir("enc_shared");
    rd_encoder_model *model = NULL;
    rd_encoder *own = NULL, *enc[3] = {NULL, NULL, NULL};
    rd_image *imgs[4];
    rd_error err;
    float emb[4 * 256], sc[4 * 14];
    REQUIRE_OK(rd_nn_model_init("resnet-small", 7, dir, &err), &err);
    REQUIRE_OK(rd_encoder_model_load(&model, dir, &err), &err);
    const rd_nn_info *info = rd_encoder_model_info(model);
    REQUIRE(info->embedding_dim == 256 && info->n_labels == 14);
    /* Encoders of different thread counts and batch sizes over the one model, and one over a
     * model of its own: all give the same results, also when they run at the same time. */
    REQUIRE_OK(rd_encoder_create(&own, dir, 1, 4, &err), &err);
    REQUIRE_OK(rd_encoder_create_shared(&enc[0], model, 1, 4, &err), &err);
    REQUIRE_OK(rd_encoder_create_shared(&enc[1], model, 2, 2, &err), &err);
    REQUIRE_OK(rd_encoder_create_shared(&enc[2], model, 1, 1, &err), &err);
    CHECK(rd_encoder_info(enc[0]) == info && rd_encoder_info(enc[2]) == info);
    for (int i = 0; i < 4; i++)
        REQUIRE((imgs[i] = gradient(256, 256, 0.7f * (float)i)) != NULL);
    REQUIRE_OK(rd_encoder_embed_batch(own, (const rd_image *const *)imgs, 4, emb, sc, &err), &err);
    shared_job jobs[3];
    pthread_t th[3];
    for (int t = 0; t < 3; t++) {
        jobs[t] = (shared_job){.enc = enc[t], .imgs = imgs, .st = RD_OK};
        REQUIRE(pthread_create(&th[t], NULL, shared_embed, &jobs[t]) == 0);
    }
    for (int t = 0; t < 3; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < 3; t++) {
        double d = 0;
        CHECK_EQ_INT(jobs[t].st, RD_OK);
        for (int j = 0; j < 4 * 256; j++)
            d = fmax(d, fabs(jobs[t].emb[j] - emb[j]));
        for (int j = 0; j < 4 * 14; j++)
            d = fmax(d, fabs(jobs[t].sc[j] - sc[j]));
        CHECK_MSG(d < 1e-5, "encoder %d differs from a private model's by %g", t, d);
    }
    /* The encoders borrow the model: freeing them leaves it usable. */
    rd_encoder_free(enc[0]);
    rd_encoder_free(enc[1]);
    REQUIRE_OK(rd_encoder_embed_batch(enc[2], (const rd_image *const *)imgs, 4, jobs[0].emb,
                                      jobs[0].sc, &err),
               &err);
    CHECK(memcmp(jobs[0].emb, jobs[2].emb, sizeof jobs[0].emb) == 0);
    rd_encoder_free(enc[2]);
    rd_encoder_free(own);
    for (int i = 0; i < 4; i++)
        rd_image_free(imgs[i]);
    rd_encoder_model_free(model);
    rd_encoder_model_free(NULL);
}

RD_TEST(refuses_wrong_labels_and_missing_model)
{
    const char *dir = rd_test_tmpdir("enc_labels");
    char path[1200];
    char *json = NULL;
    size_t len = 0;
    rd_encoder *enc = NULL;
    rd_error err;
    REQUIRE_OK(rd_nn_model_init("opzoo", 1, dir, &err), &err);
    snprintf(path, sizeof path, "%s/model.json", dir);
    REQUIRE_OK(rd_read_file(path, 1 << 20, &json, &len, &err), &err);
    /* Swap two findings: same count, wrong order. */
    char *a = strstr(json, "\"Atelectasis\""), *b = strstr(json, "\"Cardiomegaly\"");
    REQUIRE(a && b);
    char *fixed = malloc(len + 16);
    size_t pa = (size_t)(a - json), pb = (size_t)(b - json);
    memcpy(fixed, json, pa);
    size_t o = pa;
    memcpy(fixed + o, "\"Cardiomegaly\"", 14), o += 14;
    memcpy(fixed + o, json + pa + 13, pb - (pa + 13)), o += pb - (pa + 13);
    memcpy(fixed + o, "\"Atelectasis\"", 13), o += 13;
    memcpy(fixed + o, json + pb + 14, len - (pb + 14)), o += len - (pb + 14);
    REQUIRE_OK(rd_write_file_atomic(path, fixed, o, &err), &err);
    CHECK_EQ_INT(rd_encoder_create(&enc, dir, 1, 1, &err), RD_E_MODEL);
    CHECK(strstr(err.msg, "labels") != NULL);
    CHECK_EQ_INT(rd_encoder_create(&enc, "/nonexistent/model", 1, 1, &err), RD_E_NOT_FOUND);
    /* The same checks when the model is loaded to be shared. */
    rd_encoder_model *model = NULL;
    CHECK_EQ_INT(rd_encoder_model_load(&model, dir, &err), RD_E_MODEL);
    CHECK(strstr(err.msg, "labels") != NULL && model == NULL);
    CHECK_EQ_INT(rd_encoder_model_load(&model, "/nonexistent/model", &err), RD_E_NOT_FOUND);
    free(fixed);
    free(json);
}

/* Class activation maps ------------------------------------------------------------------ */

/* Adds outputs to the model description in `dir` (pairs of key, node name). */
static rd_status add_outputs(const char *dir, const char *const *pairs, int n, rd_error *err)
{
    char path[1300];
    char *json = NULL, *out = NULL;
    cJSON *root, *outs;
    rd_status st;
    snprintf(path, sizeof path, "%s/model.json", dir);
    if ((st = rd_read_file(path, 1 << 24, &json, NULL, err)) != RD_OK)
        return st;
    root = cJSON_Parse(json);
    free(json);
    outs = root ? cJSON_GetObjectItemCaseSensitive(root, "outputs") : NULL;
    for (int i = 0; outs && i < n; i++)
        cJSON_AddStringToObject(outs, pairs[2 * i], pairs[2 * i + 1]);
    out = outs ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!out)
        return rd_error_set(err, RD_E_INTERNAL, "cannot edit %s", path);
    st = rd_write_file_atomic(path, out, strlen(out), err);
    cJSON_free(out);
    return st;
}

/* The maps of `key` for each sample of the last forward of `ctx`, against a direct
 * computation from `fmap` (the feature map as a model output of its own, one sample after
 * the other) and the head's weights: sum over channels of weight x feature, per position.
 * Returns the largest difference. */
static double cam_vs_direct(const rd_nn_ctx *ctx, const rd_nn_cam_info *ci, const float *fmap,
                            int batch)
{
    int pos = ci->height * ci->width;
    size_t per = (size_t)ci->channels * pos;
    float *maps = malloc((size_t)ci->n_maps * pos * sizeof *maps);
    double worst = 0;
    if (!maps)
        return INFINITY;
    for (int b = 0; b < batch; b++) {
        if (rd_nn_ctx_cam(ctx, "scores", b, maps, NULL) != RD_OK) {
            worst = INFINITY;
            break;
        }
        for (int k = 0; k < ci->n_maps; k++)
            for (int p = 0; p < pos; p++) {
                double d = 0;
                for (int c = 0; c < ci->channels; c++)
                    d += (double)ci->weight[(size_t)k * ci->channels + c] *
                         fmap[(size_t)b * per + (size_t)c * pos + p];
                worst = fmax(worst, fabs(d - maps[(size_t)k * pos + p]));
            }
    }
    free(maps);
    return worst;
}

/* For `arch`: the maps of a context over the model as it is against a direct computation
 * from the feature map read out through an output of its own (a second model: the same
 * weights, the feature map and the logits as outputs), for a batch of 3 different inputs;
 * and each map's mean over positions against the logit minus the bias. */
static void check_cam(const char *arch, const char *feature_node, const char *logit_node)
{
    char dir[1100], dir2[1200];
    const char *pairs[4] = {"fmap", feature_node, "logits", logit_node};
    rd_nn_model *m = NULL, *m2 = NULL;
    rd_nn_ctx *ctx = NULL, *ctx2 = NULL;
    rd_nn_cam_info ci, ci2;
    rd_error err;
    float *x = NULL, *maps = NULL;
    char name[64];
    /* A folder per architecture: the cases run in parallel under ctest -j. */
    snprintf(name, sizeof name, "cam_%s", arch);
    snprintf(dir, sizeof dir, "%s", rd_test_tmpdir(name));
    snprintf(dir2, sizeof dir2, "%s/%s", dir, arch);
    REQUIRE_OK(rd_nn_model_init(arch, 11, dir, &err), &err);
    REQUIRE_OK(rd_nn_model_init(arch, 11, dir2, &err), &err);
    REQUIRE_OK(add_outputs(dir2, pairs, 2, &err), &err);
    REQUIRE_OK(rd_nn_model_load(&m, dir, &err), &err);
    REQUIRE_OK(rd_nn_model_load(&m2, dir2, &err), &err);
    REQUIRE_OK(rd_nn_model_cam_info(m, "scores", &ci, &err), &err);
    REQUIRE_OK(rd_nn_model_cam_info(m2, "scores", &ci2, &err), &err);
    CHECK_EQ_INT(ci.n_maps, 14);
    CHECK_STR(ci.feature_node, ci2.feature_node);
    CHECK(ci.bias != NULL);
    const rd_nn_info *info = rd_nn_model_info(m);
    size_t in = (size_t)info->in_channels * info->in_height * info->in_width;
    int pos = ci.height * ci.width;
    REQUIRE((x = malloc(3 * in * sizeof *x)) != NULL);
    REQUIRE((maps = malloc((size_t)14 * pos * sizeof *maps)) != NULL);
    for (size_t i = 0; i < 3 * in; i++)
        x[i] = sinf(0.001f * (float)i * (1.0f + (float)(i / in))) * 1.5f;
    REQUIRE_OK(rd_nn_ctx_create(&ctx, m, 3, 2, &err), &err);
    REQUIRE_OK(rd_nn_ctx_create(&ctx2, m2, 3, 1, &err), &err);
    REQUIRE_OK(rd_nn_forward(ctx, x, 3, &err), &err);
    REQUIRE_OK(rd_nn_forward(ctx2, x, 3, &err), &err);
    int fsize = 0, lsize = 0;
    const float *fmap = rd_nn_ctx_output(ctx2, "fmap", &fsize);
    const float *logits = rd_nn_ctx_output(ctx2, "logits", &lsize);
    const float *scores = rd_nn_ctx_output(ctx, "scores", NULL);
    REQUIRE(fmap && logits && scores);
    CHECK_EQ_INT(fsize, ci.channels * pos);
    CHECK_EQ_INT(lsize, 14);
    /* The feature map the context kept is the one the graph computed, for every sample. */
    for (int b = 0; b < 3; b++) {
        const float *kept = rd_nn_ctx_cam_features(ctx, "scores", b);
        double d = 0;
        REQUIRE(kept);
        for (int i = 0; i < fsize; i++)
            d = fmax(d, fabs(kept[i] - fmap[(size_t)b * fsize + i]));
        CHECK_MSG(d < 1e-4, "%s sample %d: kept feature map differs by %g", arch, b, d);
    }
    double worst = cam_vs_direct(ctx, &ci, fmap, 3);
    CHECK_MSG(worst < 1e-3, "%s: maps differ from the direct computation by %g", arch, worst);
    /* mean over positions == logit - bias, and sigmoid(mean + bias) == score. */
    double dmean = 0, dscore = 0, spread = 0;
    for (int b = 0; b < 3; b++) {
        REQUIRE_OK(rd_nn_ctx_cam(ctx, "scores", b, maps, &err), &err);
        for (int k = 0; k < 14; k++) {
            double mean = 0, lo = INFINITY, hi = -INFINITY;
            for (int p = 0; p < pos; p++) {
                mean += maps[(size_t)k * pos + p];
                lo = fmin(lo, maps[(size_t)k * pos + p]);
                hi = fmax(hi, maps[(size_t)k * pos + p]);
            }
            mean /= pos;
            spread = fmax(spread, hi - lo);
            dmean = fmax(dmean, fabs(mean - (logits[b * 14 + k] - ci.bias[k])));
            dscore =
                fmax(dscore, fabs(1.0 / (1.0 + exp(-(mean + ci.bias[k]))) - scores[b * 14 + k]));
        }
    }
    CHECK_MSG(dmean < 1e-4, "%s: mean of a map differs from logit - bias by %g", arch, dmean);
    CHECK_MSG(dscore < 1e-5, "%s: sigmoid(mean + bias) differs from the score by %g", arch, dscore);
    /* Not a flat map: the property says something about positions. */
    CHECK_MSG(spread > 1e-3, "%s: the maps are flat (spread %g)", arch, spread);
    /* Bad samples and outputs. */
    CHECK_EQ_INT(rd_nn_ctx_cam(ctx, "scores", 3, maps, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_nn_ctx_cam(ctx, "nothing", 0, maps, &err), RD_E_NOT_FOUND);
    CHECK_EQ_INT(rd_nn_ctx_cam(ctx, "embedding", 0, maps, &err), RD_E_UNSUPPORTED);
    CHECK(rd_nn_ctx_cam_features(ctx, "embedding", 0) == NULL);
    CHECK(rd_nn_ctx_cam_features(ctx, "scores", -1) == NULL);
    free(maps);
    free(x);
    rd_nn_ctx_free(ctx);
    rd_nn_ctx_free(ctx2);
    rd_nn_model_free(m);
    rd_nn_model_free(m2);
}

RD_TEST(cam_matches_direct_computation_resnet)
{
    check_cam("resnet-small", "layer4.1.relu2", "fc");
}

/* The network with every op: its feature map is also read by another layer (so the arena
 * would reuse its memory after that reader without the keep-alive). */
RD_TEST(cam_matches_direct_computation_opzoo)
{
    check_cam("opzoo", "c4", "fc");
}

/* The encoder's maps: shape, batches of several forwards, and the mean property on the
 * shipped model (whatever its weights). */
/* Sets (or with shrink <= 0, removes) the model's test-time augmentation. */
static rd_status set_tta(const char *dir, double shrink, rd_error *err)
{
    char path[1300], *json = NULL, *out = NULL;
    rd_status st;
    snprintf(path, sizeof path, "%s/model.json", dir);
    if ((st = rd_read_file(path, 1 << 24, &json, NULL, err)) != RD_OK)
        return st;
    cJSON *root = cJSON_Parse(json);
    free(json);
    if (!root)
        return rd_error_set(err, RD_E_INTERNAL, "cannot parse %s", path);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "test_time_augmentation");
    if (shrink > 0) {
        cJSON *t = cJSON_AddObjectToObject(root, "test_time_augmentation");
        cJSON_AddNumberToObject(t, "shrink", shrink);
    }
    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    st = rd_write_file_atomic(path, out, strlen(out), err);
    cJSON_free(out);
    return st;
}

/* A copy of the shipped model's files in `dir` without its test-time augmentation: the maps
 * explain the plain view's score, not the mean over views. */
static rd_status shipped_plain_copy(const char *dir, rd_error *err)
{
    static const char *const files[] = {"model.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char from[1300], to[1300], *data = NULL;
        size_t len = 0;
        rd_status st;
        snprintf(from, sizeof from, "%s/models/cxr-resnet-small/%s", RD_TEST_SOURCE_DIR, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        if ((st = rd_read_file(from, (size_t)1 << 26, &data, &len, err)) != RD_OK)
            return st;
        st = rd_write_file_atomic(to, data, len, err);
        free(data);
        if (st != RD_OK)
            return st;
    }
    return set_tta(dir, 0, err);
}

RD_TEST(encoder_cam_batches_and_shipped_model)
{
    char model[1200];
    rd_encoder *enc = NULL, *one = NULL;
    rd_error err;
    rd_image *imgs[3];
    int h = 0, w = 0;
    snprintf(model, sizeof model, "%s", rd_test_tmpdir("enc_cam_shipped"));
    REQUIRE_OK(shipped_plain_copy(model, &err), &err);
    REQUIRE_OK(rd_encoder_create(&enc, model, 2, 2, &err), &err);
    REQUIRE_OK(rd_encoder_create(&one, model, 1, 1, &err), &err);
    REQUIRE(rd_encoder_cam_size(enc, &h, &w));
    const rd_nn_info *info = rd_encoder_info(enc);
    /* One map cell per 32 input pixels (the network's stride). */
    CHECK_EQ_INT(h, info->in_height / 32);
    CHECK_EQ_INT(w, info->in_width / 32);
    const float *bias = rd_encoder_cam_bias(enc);
    REQUIRE(bias);
    int pos = h * w, nl = info->n_labels;
    float *cams = malloc((size_t)3 * nl * pos * sizeof *cams);
    float *cam1 = malloc((size_t)nl * pos * sizeof *cam1);
    float *emb = malloc((size_t)3 * info->embedding_dim * sizeof *emb);
    float *e1 = malloc((size_t)info->embedding_dim * sizeof *e1);
    float sc[3 * 14], s1[14];
    REQUIRE(cams && cam1 && emb && e1);
    for (int i = 0; i < 3; i++)
        REQUIRE((imgs[i] = gradient(300, 280, 1.3f * (float)i)) != NULL);
    /* Batches of 2: the third image's maps come from a second forward. */
    REQUIRE_OK(
        rd_encoder_embed_batch_cam(enc, (const rd_image *const *)imgs, 3, emb, sc, cams, &err),
        &err);
    double dmean = 0, d1 = 0;
    for (int i = 0; i < 3; i++) {
        REQUIRE_OK(rd_encoder_embed_batch_cam(one, (const rd_image *const *)&imgs[i], 1, e1, s1,
                                              cam1, &err),
                   &err);
        for (int j = 0; j < nl * pos; j++)
            d1 = fmax(d1, fabs(cam1[j] - cams[(size_t)i * nl * pos + j]));
        for (int f = 0; f < nl; f++) {
            double mean = 0, s = sc[i * nl + f];
            for (int p = 0; p < pos; p++)
                mean += cams[((size_t)i * nl + f) * pos + p];
            mean /= pos;
            if (s > 1e-4 && s < 1 - 1e-4)
                dmean = fmax(dmean, fabs(mean + bias[f] - log(s / (1 - s))));
        }
    }
    CHECK_MSG(d1 < 1e-3, "batched and single maps differ by %g", d1);
    CHECK_MSG(dmean < 2e-3, "mean(map) + bias differs from logit(score) by %g", dmean);
    /* scores and maps may be asked without the other. */
    CHECK_OK(
        rd_encoder_embed_batch_cam(one, (const rd_image *const *)imgs, 1, e1, NULL, cam1, &err),
        &err);
    for (int i = 0; i < 3; i++)
        rd_image_free(imgs[i]);
    free(cams);
    free(cam1);
    free(emb);
    free(e1);
    rd_encoder_free(enc);
    rd_encoder_free(one);
}

static double logit_of(double p)
{
    return log(p / (1 - p));
}

/* Test-time augmentation: the scores are the sigmoid of the mean logit of the plain image
 * and of the image shrunk by s at the input size, centred, its border replicated (built here
 * by hand and scored without augmentation); the embedding and the maps stay the plain
 * image's; a bad setting is refused. */
RD_TEST(test_time_augmentation_mean_logit)
{
    const char *dir = rd_test_tmpdir("enc_tta");
    rd_encoder *plain = NULL, *tta = NULL;
    rd_error err;
    REQUIRE_OK(rd_nn_model_init("resnet-small", 3, dir, &err), &err);
    REQUIRE_OK(rd_encoder_create(&plain, dir, 1, 2, &err), &err);
    REQUIRE_OK(set_tta(dir, 0.12, &err), &err);
    REQUIRE_OK(rd_encoder_create(&tta, dir, 1, 2, &err), &err);
    const rd_nn_info *info = rd_encoder_info(plain);
    int S = info->in_width, iw = (int)lround(S * 0.88), x0 = (S - iw) / 2;
    REQUIRE(info->in_height == S);
    rd_image *imgs[2] = {gradient(300, 260, 0.3f), gradient(256, 256, 1.7f)};
    float emb_t[2 * 256], sc_t[2 * 14], emb_p[256], sc_p[14], sc_s[14];
    REQUIRE_OK(rd_encoder_embed_batch(tta, (const rd_image *const *)imgs, 2, emb_t, sc_t, &err),
               &err);
    for (int i = 0; i < 2; i++) {
        rd_image *small = NULL, *view = NULL;
        REQUIRE_OK(rd_image_resize(imgs[i], iw, iw, &small, &err), &err);
        REQUIRE_OK(rd_image_create(&view, S, S, &err), &err);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int sx = x - x0 < 0 ? 0 : x - x0 >= iw ? iw - 1 : x - x0;
                int sy = y - x0 < 0 ? 0 : y - x0 >= iw ? iw - 1 : y - x0;
                view->data[y * S + x] = small->data[sy * iw + sx];
            }
        REQUIRE_OK(rd_encoder_embed(plain, imgs[i], emb_p, sc_p, &err), &err);
        float emb_s[256];
        REQUIRE_OK(rd_encoder_embed(plain, view, emb_s, sc_s, &err), &err);
        double de = 0, ds = 0, moved = 0;
        for (int j = 0; j < 256; j++)
            de = fmax(de, fabs(emb_p[j] - emb_t[i * 256 + j]));
        for (int j = 0; j < 14; j++) {
            double want = 1 / (1 + exp(-(logit_of(sc_p[j]) + logit_of(sc_s[j])) / 2));
            double d = fabs(want - sc_t[i * 14 + j]);
            ds = d > ds || d != d ? d : ds;
            moved += fabs(sc_t[i * 14 + j] - sc_p[j]);
        }
        CHECK_MSG(de < 1e-5, "image %d: the embedding is not the plain view's (%g)", i, de);
        CHECK_MSG(ds < 2e-5, "image %d: scores differ from the mean logit by %g", i, ds);
        CHECK_MSG(moved > 1e-4, "image %d: the augmentation changed nothing", i);
        rd_image_free(small);
        rd_image_free(view);
    }
    rd_encoder_free(tta);
    /* Out of range: refused when the model loads, naming the key. */
    REQUIRE_OK(set_tta(dir, 0.5, &err), &err);
    CHECK(rd_encoder_create(&tta, dir, 1, 1, &err) == RD_E_MODEL);
    CHECK(strstr(rd_error_message(&err), "test_time_augmentation") != NULL);
    for (int i = 0; i < 2; i++)
        rd_image_free(imgs[i]);
    rd_encoder_free(plain);
}

RD_TEST_MAIN()
