/* The encoder: preprocessing from the model file, embeddings and scores, batches, encoders
 * sharing one model, and the models it refuses. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

RD_TEST_MAIN()
