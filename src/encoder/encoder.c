/* radraft — the image encoder: preprocessing from the model file + the nn engine.
 *
 * This folder, src/encoder, turns a chest X-ray into an embedding and finding scores. It owns
 * encoder models (an nn model checked for the encoder's outputs, shared read-only) and
 * encoders (an inference context and an input batch each, one per thread). */
#include "radraft/encoder.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/findings.h"
#include "base/util.h"

struct rd_encoder_model {
    rd_nn_model *nn;
    /* Test-time augmentation: the scores are the mean logit of the image and of the image
     * shrunk by this share (centred, the border replicated around it); 0 = off. */
    double tta_shrink;
};

struct rd_encoder {
    rd_encoder_model *own_model; /* the model when this encoder loaded it, else NULL (borrowed) */
    rd_nn_ctx *ctx;
    const rd_nn_info *info;
    int max_batch;
    size_t in_elems; /* floats of one preprocessed image */
    float *input;    /* max_batch preprocessed images, reused by every call */
    int has_cam;     /* the scores have class activation maps */
    rd_nn_cam_info cam;
    double tta_shrink; /* the model's, see rd_encoder_model */
};

void rd_encoder_model_free(rd_encoder_model *model)
{
    if (!model)
        return;
    rd_nn_model_free(model->nn);
    free(model);
}

/* The model description's "test_time_augmentation": {"views": ["identity", "shrink"],
 * "shrink": s} with 0 < s <= 0.3; absent or null is off. */
static rd_status read_tta(rd_encoder_model *model, const char *model_path, rd_error *err)
{
    char *text = NULL;
    rd_status st = rd_nn_model_read_json(model_path, &text, NULL, err);
    if (st != RD_OK)
        return st;
    cJSON *root = cJSON_Parse(text);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "test_time_augmentation");
    free(text);
    model->tta_shrink = 0;
    if (t && !cJSON_IsNull(t)) {
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shrink");
        if (!cJSON_IsObject(t) || !cJSON_IsNumber(sh) || !(sh->valuedouble > 0) ||
            !(sh->valuedouble <= 0.3))
            st = rd_error_set(err, RD_E_MODEL,
                              "%s: test_time_augmentation must be {\"shrink\": s} with 0 < s <= "
                              "0.3",
                              model_path);
        else
            model->tta_shrink = sh->valuedouble;
    }
    cJSON_Delete(root);
    return st;
}

double rd_encoder_model_tta_shrink(const rd_encoder_model *model)
{
    return model->tta_shrink;
}

rd_status rd_encoder_model_load(rd_encoder_model **out, const char *model_path, rd_error *err)
{
    rd_encoder_model *model = calloc(1, sizeof *model);
    const rd_nn_info *info;
    rd_status st;

    if (!model)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    if ((st = rd_nn_model_load(&model->nn, model_path, err)) != RD_OK)
        goto fail;
    if ((st = read_tta(model, model_path, err)) != RD_OK)
        goto fail;
    info = rd_nn_model_info(model->nn);
    if (info->embedding_dim <= 0) {
        st = rd_error_set(err, RD_E_MODEL, "%s: the model has no 'embedding' output", model_path);
        goto fail;
    }
    if (info->n_labels > 0) {
        /* The scores are indexed by rd_finding everywhere downstream. */
        int ok = info->n_labels == RD_FINDING_N_ABNORMAL;
        for (int i = 0; ok && i < RD_FINDING_N_ABNORMAL; i++)
            ok = strcmp(info->labels[i], rd_finding_name((rd_finding)i)) == 0;
        if (!ok) {
            st = rd_error_set(err, RD_E_MODEL,
                              "%s: the model's labels are not the 14 findings of the "
                              "vocabulary in its order",
                              model_path);
            goto fail;
        }
    }
    *out = model;
    return RD_OK;
fail:
    rd_encoder_model_free(model);
    return st;
}

const rd_nn_info *rd_encoder_model_info(const rd_encoder_model *model)
{
    return rd_nn_model_info(model->nn);
}

void rd_encoder_free(rd_encoder *enc)
{
    if (!enc)
        return;
    rd_nn_ctx_free(enc->ctx);
    rd_encoder_model_free(enc->own_model);
    free(enc->input);
    free(enc);
}

rd_status rd_encoder_create_shared(rd_encoder **out, const rd_encoder_model *model, int threads,
                                   int max_batch, rd_error *err)
{
    rd_encoder *enc = calloc(1, sizeof *enc);
    rd_status st;
    size_t n;

    if (!enc)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    enc->info = rd_nn_model_info(model->nn);
    if ((st = rd_nn_ctx_create(&enc->ctx, model->nn, max_batch, threads, err)) != RD_OK)
        goto fail;
    enc->max_batch = max_batch;
    enc->tta_shrink = model->tta_shrink;
    enc->has_cam = enc->info->n_labels > 0 &&
                   rd_nn_model_cam_info(model->nn, "scores", &enc->cam, NULL) == RD_OK &&
                   enc->cam.n_maps == enc->info->n_labels;
    enc->in_elems =
        (size_t)enc->info->in_channels * (size_t)enc->info->in_height * (size_t)enc->info->in_width;
    if (!rd_mul_size(enc->in_elems * sizeof(float), (size_t)max_batch, &n) ||
        !(enc->input = malloc(n))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory for the input batch");
        goto fail;
    }
    *out = enc;
    return RD_OK;
fail:
    rd_encoder_free(enc);
    return st;
}

rd_status rd_encoder_create(rd_encoder **out, const char *model_path, int threads, int max_batch,
                            rd_error *err)
{
    rd_encoder_model *model = NULL;
    rd_status st;

    if ((st = rd_encoder_model_load(&model, model_path, err)) != RD_OK)
        return st;
    if ((st = rd_encoder_create_shared(out, model, threads, max_batch, err)) != RD_OK) {
        rd_encoder_model_free(model);
        return st;
    }
    (*out)->own_model = model;
    return RD_OK;
}

const rd_nn_info *rd_encoder_info(const rd_encoder *enc)
{
    return enc->info;
}

rd_status rd_encoder_preprocess(const rd_encoder *enc, const rd_image *img, float *dst,
                                rd_error *err)
{
    const rd_nn_info *info = enc->info;
    rd_image *resized = NULL;
    const rd_image *src = img;
    size_t plane = (size_t)info->in_height * (size_t)info->in_width;

    if (!img || !img->data || img->width < 1 || img->height < 1)
        return rd_error_set(err, RD_E_INVALID, "empty image");
    if (img->width != info->in_width || img->height != info->in_height) {
        rd_status st = rd_image_resize(img, info->in_width, info->in_height, &resized, err);
        if (st != RD_OK)
            return st;
        src = resized;
    }
    for (int c = 0; c < info->in_channels; c++) {
        float mean = info->mean[c], inv = 1.0f / info->std[c];
        float *d = dst + (size_t)c * plane;
        for (size_t i = 0; i < plane; i++)
            d[i] = (src->data[i] - mean) * inv;
    }
    rd_image_free(resized);
    return RD_OK;
}

/* The shrunk view of test-time augmentation: the image at (1 - shrink) of the input size,
 * centred, with its border rows and columns replicated out to the input size, then
 * normalized like any input. */
static rd_status preprocess_shrunk(const rd_encoder *enc, const rd_image *img, float *dst,
                                   rd_error *err)
{
    const rd_nn_info *info = enc->info;
    int w = info->in_width, h = info->in_height;
    int iw = (int)lround(w * (1 - enc->tta_shrink)), ih = (int)lround(h * (1 - enc->tta_shrink));
    int x0 = (w - iw) / 2, y0 = (h - ih) / 2;
    rd_image *small = NULL;
    size_t plane = (size_t)h * (size_t)w;
    rd_status st;

    if (!img || !img->data || img->width < 1 || img->height < 1)
        return rd_error_set(err, RD_E_INVALID, "empty image");
    iw = iw < 1 ? 1 : iw;
    ih = ih < 1 ? 1 : ih;
    if ((st = rd_image_resize(img, iw, ih, &small, err)) != RD_OK)
        return st;
    for (int c = 0; c < info->in_channels; c++) {
        float mean = info->mean[c], inv = 1.0f / info->std[c];
        float *d = dst + (size_t)c * plane;
        for (int y = 0; y < h; y++) {
            int sy = y - y0 < 0 ? 0 : y - y0 >= ih ? ih - 1 : y - y0;
            for (int x = 0; x < w; x++) {
                int sx = x - x0 < 0 ? 0 : x - x0 >= iw ? iw - 1 : x - x0;
                d[(size_t)y * w + x] = (small->data[(size_t)sy * iw + sx] - mean) * inv;
            }
        }
    }
    rd_image_free(small);
    return RD_OK;
}

static double logit(double p)
{
    p = p < 1e-7 ? 1e-7 : p > 1 - 1e-7 ? 1 - 1e-7 : p;
    return log(p / (1 - p));
}

/* With test-time augmentation, the batch's scores become the sigmoid of the mean logit of
 * the plain view (already in `scores`) and the shrunk one. The embedding and the maps stay
 * the plain view's: the archive was built from plain views. */
static rd_status tta_scores(rd_encoder *enc, const rd_image *const *imgs, int b, float *scores,
                            rd_error *err)
{
    int nl = enc->info->n_labels, size = 0;
    rd_status st;
    for (int i = 0; i < b; i++)
        if ((st = preprocess_shrunk(enc, imgs[i], enc->input + (size_t)i * enc->in_elems, err)) !=
            RD_OK)
            return rd_error_prefix(err, st, "image %d", i);
    if ((st = rd_nn_forward(enc->ctx, enc->input, b, err)) != RD_OK)
        return st;
    const float *sc = rd_nn_ctx_output(enc->ctx, "scores", &size);
    if (!sc || size != nl)
        return rd_error_set(err, RD_E_INTERNAL, "scores output missing");
    for (int q = 0; q < b * nl; q++)
        scores[q] = (float)(1 / (1 + exp(-(logit(scores[q]) + logit(sc[q])) / 2)));
    return RD_OK;
}

int rd_encoder_cam_size(const rd_encoder *enc, int *height, int *width)
{
    if (height)
        *height = enc->has_cam ? enc->cam.height : 0;
    if (width)
        *width = enc->has_cam ? enc->cam.width : 0;
    return enc->has_cam;
}

const float *rd_encoder_cam_bias(const rd_encoder *enc)
{
    return enc->has_cam ? enc->cam.bias : NULL;
}

rd_status rd_encoder_embed_batch(rd_encoder *enc, const rd_image *const *imgs, int n,
                                 float *embeddings, float *scores, rd_error *err)
{
    return rd_encoder_embed_batch_cam(enc, imgs, n, embeddings, scores, NULL, err);
}

rd_status rd_encoder_embed_batch_cam(rd_encoder *enc, const rd_image *const *imgs, int n,
                                     float *embeddings, float *scores, float *cams, rd_error *err)
{
    const rd_nn_info *info = enc->info;
    int dim = info->embedding_dim, nl = info->n_labels;
    size_t per_image = enc->has_cam ? (size_t)nl * enc->cam.height * enc->cam.width : 0;

    if (n < 1)
        return rd_error_set(err, RD_E_INVALID, "no image to embed");
    if (cams && !enc->has_cam)
        return rd_error_set(err, RD_E_UNSUPPORTED,
                            "the model's scores have no class activation maps");
    for (int start = 0; start < n; start += enc->max_batch) {
        int b = n - start < enc->max_batch ? n - start : enc->max_batch, size = 0;
        rd_status st;
        const float *emb, *sc;
        for (int i = 0; i < b; i++) {
            st = rd_encoder_preprocess(enc, imgs[start + i], enc->input + (size_t)i * enc->in_elems,
                                       err);
            if (st != RD_OK)
                return rd_error_prefix(err, st, "image %d", start + i);
        }
        if ((st = rd_nn_forward(enc->ctx, enc->input, b, err)) != RD_OK)
            return st;
        emb = rd_nn_ctx_output(enc->ctx, "embedding", &size);
        if (!emb || size != dim)
            return rd_error_set(err, RD_E_INTERNAL, "embedding output missing");
        if (embeddings)
            memcpy(embeddings + (size_t)start * dim, emb, (size_t)b * dim * sizeof *emb);
        if (scores && nl > 0) {
            sc = rd_nn_ctx_output(enc->ctx, "scores", &size);
            if (!sc || size != nl)
                return rd_error_set(err, RD_E_INTERNAL, "scores output missing");
            memcpy(scores + (size_t)start * nl, sc, (size_t)b * nl * sizeof *sc);
        }
        for (int i = 0; cams && i < b; i++)
            if ((st = rd_nn_ctx_cam(enc->ctx, "scores", i, cams + (size_t)(start + i) * per_image,
                                    err)) != RD_OK)
                return st;
        /* The second view last: its forward pass replaces the feature map the maps read.
         * Without scores wanted there is no second pass. */
        if (enc->tta_shrink > 0 && nl > 0 && scores &&
            (st = tta_scores(enc, imgs + start, b, scores + (size_t)start * nl, err)) != RD_OK)
            return st;
    }
    return RD_OK;
}

rd_status rd_encoder_embed(rd_encoder *enc, const rd_image *img, float *embedding, float *scores,
                           rd_error *err)
{
    return rd_encoder_embed_batch(enc, &img, 1, embedding, scores, err);
}
