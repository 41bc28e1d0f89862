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

#ifdef __cplusplus
}
#endif
#endif
