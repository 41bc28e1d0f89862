/* radraft — the image encoder: a chest X-ray -> an L2-normalized embedding (for similar-case
 * retrieval) and one score in [0, 1] per finding of the vocabulary.
 *
 * An encoder is an inference context (include/radraft/nn.h: its arena and worker threads)
 * over an encoder model. The model is immutable once loaded, so one rd_encoder_model may be
 * shared by any number of encoders, each used by its own thread: a pipeline with several
 * workers loads the weights once and gives each worker its own encoder over them (and sizes
 * their threads so that their sum does not exceed the cores). Preprocessing comes from the
 * model file: the gray image is resized to the model's input size (rd_image_resize: area
 * averaging when shrinking, bilinear when growing), copied to every input channel and
 * normalized per channel as (x - mean) / std. An encoder runs one call at a time.
 */
#ifndef RADRAFT_ENCODER_H
#define RADRAFT_ENCODER_H

#include "radraft/error.h"
#include "radraft/image.h"
#include "radraft/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_encoder rd_encoder;
typedef struct rd_encoder_model rd_encoder_model;

/* Loads and checks the model at `model_path` (a folder with model.json, or the JSON itself).
 * The model must have an "embedding" output; when it has a "scores" output its labels must
 * be the 14 ChestX-ray14 findings in the vocabulary order of DESIGN.md. On success *out is
 * the caller's (free with rd_encoder_model_free, after every encoder created over it). */
rd_status rd_encoder_model_load(rd_encoder_model **out, const char *model_path, rd_error *err);
/* Accepts NULL. Every encoder created over the model with rd_encoder_create_shared must have
 * been freed first. */
void rd_encoder_model_free(rd_encoder_model *model);
/* The model's description (version, input size, embedding size, labels), owned by the
 * model. */
const rd_nn_info *rd_encoder_model_info(const rd_encoder_model *model);

/* Plans an encoder over `model`: an inference context for batches of up to `max_batch`
 * images with `threads` worker threads (0 = one per online processor). The encoder borrows
 * the model, which must outlive it; it never changes it, so encoders over one model may run
 * on different threads at the same time. On success *out is the caller's (free with
 * rd_encoder_free). */
rd_status rd_encoder_create_shared(rd_encoder **out, const rd_encoder_model *model, int threads,
                                   int max_batch, rd_error *err);

/* rd_encoder_model_load + rd_encoder_create_shared over a model of the encoder's own, freed
 * with it. On success *out is the caller's (free with rd_encoder_free). */
rd_status rd_encoder_create(rd_encoder **out, const char *model_path, int threads, int max_batch,
                            rd_error *err);
/* Accepts NULL; frees the model too when the encoder was made by rd_encoder_create. */
void rd_encoder_free(rd_encoder *enc);

/* The model's description (version, input size, embedding size, labels). */
const rd_nn_info *rd_encoder_info(const rd_encoder *enc);

/* Writes the preprocessed network input of `img` (channels x height x width floats of the
 * model's input) to `dst`. */
/* The model's test-time augmentation ("test_time_augmentation": {"shrink": s} in its
 * description): the finding scores are then the sigmoid of the mean logit of the image and
 * of the image shrunk by s (centred, its border replicated around it), which costs a second
 * forward pass; the embedding and the class activation maps are the plain image's. 0 when
 * the model has none. */
double rd_encoder_model_tta_shrink(const rd_encoder_model *model);

rd_status rd_encoder_preprocess(const rd_encoder *enc, const rd_image *img, float *dst,
                                rd_error *err);

/* Embeds one image: `embedding` receives info->embedding_dim floats (unit L2 norm), `scores`
 * (may be NULL) info->n_labels floats in [0, 1]. */
rd_status rd_encoder_embed(rd_encoder *enc, const rd_image *img, float *embedding, float *scores,
                           rd_error *err);

/* Embeds `n` images (any n >= 1; run in batches of the context's size): row i of
 * `embeddings` (n x embedding_dim) and of `scores` (n x n_labels, may be NULL) is image i's. */
rd_status rd_encoder_embed_batch(rd_encoder *enc, const rd_image *const *imgs, int n,
                                 float *embeddings, float *scores, rd_error *err);

/* Class activation maps of the scores (include/radraft/nn.h): 1 when the model's "scores"
 * output is a linear head over global average pooling, with *height and *width (may be
 * NULL) the size of one map (7 x 7 for the shipped encoder at 224 x 224 input); else 0. A
 * map's rows and columns cover the whole image as the encoder sees it (resized to its input
 * size, aspect ratio not kept): map cell (i, j) is centred at ((j + 0.5) / width, (i + 0.5)
 * / height) of the image's width and height, row 0 at the top, column 0 at the left of the
 * pixels as stored. */
int rd_encoder_cam_size(const rd_encoder *enc, int *height, int *width);

/* As rd_encoder_embed_batch, and `cams` (may be NULL; needs rd_encoder_cam_size) gets for
 * each image its n_labels maps of height x width floats (image i's map of finding f starts
 * at cams + (i * n_labels + f) * height * width), computed from the same forward pass. The
 * mean of a map over its positions is that finding's logit minus the head's bias.
 * `embeddings` may be NULL here (only the scores or the maps wanted). Errors as
 * rd_encoder_embed_batch, and RD_E_UNSUPPORTED when `cams` is given for a model without
 * maps. */
rd_status rd_encoder_embed_batch_cam(rd_encoder *enc, const rd_image *const *imgs, int n,
                                     float *embeddings, float *scores, float *cams, rd_error *err);

/* The head's bias for finding f (0 when the head has none), for checking a map against its
 * score: logit(score) = mean(map) + bias. NULL when the model has no maps. Owned by the
 * model. */
const float *rd_encoder_cam_bias(const rd_encoder *enc);

#ifdef __cplusplus
}
#endif
#endif
