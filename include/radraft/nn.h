/* radraft — the neural network engine: model files, validation and CPU inference.
 *
 * A model is two files: a JSON description (format "radraft-model", the graph of ops with
 * their attributes and output shapes, input size, preprocessing, label names, named outputs,
 * version, training recipe and metrics) and its weights in safetensors format (8-byte
 * little-endian header length, JSON header naming each tensor's dtype, shape and
 * data_offsets, then the raw little-endian tensors). The loader validates every byte it
 * reads and refuses a bad file with RD_E_MODEL and a message naming the file and the fault;
 * a truncated or hostile file never crashes it.
 *
 * Inference runs in an rd_nn_ctx: one arena planned at creation for a maximum batch (no
 * allocation per image), `threads` worker threads that split every op by ith/nth, and
 * OpenBLAS sgemm called single-threaded from each worker so that the process never runs more
 * compute threads than `threads`. Tensors are NCHW float32.
 */
#ifndef RADRAFT_NN_H
#define RADRAFT_NN_H

#include <stddef.h>
#include <stdint.h>

#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_NN_FORMAT "radraft-model"
#define RD_NN_FORMAT_VERSION 1
#define RD_NN_MAX_IN_CHANNELS 16
#define RD_NN_MAX_BATCH 1024
#define RD_NN_MAX_THREADS 256

typedef struct rd_nn_model rd_nn_model;
typedef struct rd_nn_ctx rd_nn_ctx;

/* What a loaded model says about itself. Strings and arrays belong to the model and live as
 * long as it does. */
typedef struct rd_nn_info {
    const char *name;    /* architecture name, e.g. "resnet-small" */
    const char *version; /* model version, e.g. "resnet-small-2026.11-nih" */
    int in_channels;     /* 1..RD_NN_MAX_IN_CHANNELS */
    int in_height;
    int in_width;
    float mean[RD_NN_MAX_IN_CHANNELS]; /* preprocessing: (pixel - mean) / std per channel */
    float std[RD_NN_MAX_IN_CHANNELS];
    int embedding_dim; /* size of output "embedding", 0 when the model has none */
    int n_labels;      /* size of output "scores" = number of label names, 0 when none */
    const char *const *labels;
    size_t n_params; /* number of weights as stored in the file */
    int n_nodes;     /* graph nodes as stored (before folding) */
} rd_nn_info;

/* Loads a model from a folder holding model.json, or from the path of its JSON description;
 * the weights file is named by the JSON's "weights" (a plain file name beside the JSON).
 * On success *out is the caller's (free with rd_nn_model_free). Errors: RD_E_NOT_FOUND,
 * RD_E_IO, RD_E_TOO_LARGE, RD_E_MODEL (anything invalid, with the reason). */
rd_status rd_nn_model_load(rd_nn_model **out, const char *path, rd_error *err);

/* The most bytes a model description (model.json) may have, wherever it is read. */
#define RD_NN_MAX_JSON_BYTES ((size_t)16 << 20)

/* The model description of `model`: model.json inside it when it is a folder, else `model`
 * itself (a JSON file). RD_E_TOO_LARGE when the path does not fit in `size`. */
rd_status rd_nn_model_json_path(const char *model, char *out, size_t size, rd_error *err);

/* Reads the model description of `model` (a folder or the JSON file; at most
 * RD_NN_MAX_JSON_BYTES) into *text, malloc'ed and NUL-terminated, the caller's on success;
 * *len (may be NULL) gets its length. Errors: RD_E_NOT_FOUND, RD_E_IO, RD_E_TOO_LARGE. */
rd_status rd_nn_model_read_json(const char *model, char **text, size_t *len, rd_error *err);

/* Builds a model from a JSON description and safetensors bytes held in memory (neither is
 * kept; the model copies what it needs). `origin` names the source in messages. */
rd_status rd_nn_model_parse(rd_nn_model **out, const char *json, size_t json_len,
                            const void *weights, size_t weights_len, const char *origin,
                            rd_error *err);

void rd_nn_model_free(rd_nn_model *model);

const rd_nn_info *rd_nn_model_info(const rd_nn_model *model);

/* Creates an inference context for batches of up to `max_batch` images with `threads`
 * worker threads (0 = the number of online processors). The context reads the model, which
 * must outlive it, and never writes it: any number of contexts may run over one model at the
 * same time, each on its own thread. Sets OpenBLAS to one thread (a process-wide setting):
 * the context's workers are the parallelism, each calling sgemm on its own share, so code
 * elsewhere in the process must not raise OpenBLAS's thread count while contexts run.
 * On success *out is the caller's (free with rd_nn_ctx_free). */
rd_status rd_nn_ctx_create(rd_nn_ctx **out, const rd_nn_model *model, int max_batch, int threads,
                           rd_error *err);
void rd_nn_ctx_free(rd_nn_ctx *ctx);

/* OpenBLAS's kernel family in use ("Haswell", "SkylakeX", "Cooperlake", ...): chosen by
 * OpenBLAS from the processor, or by $OPENBLAS_CORETYPE when that is set. */
const char *rd_nn_blas_core(void);

/* Floating-point operations of one image's forward pass through the convolutions and linear
 * layers (a multiply-add counts two), the work the engine hands to sgemm. */
double rd_nn_model_flops(const rd_nn_model *model);

/* The sgemm rate this machine reaches in the engine's way of working: `threads` threads (0 =
 * one per core) at once, each multiplying its own 1024 x 1024 matrices with single-threaded
 * OpenBLAS; the best of 5 runs, in GFLOP/s. Takes about a second. */
rd_status rd_nn_sgemm_peak(int threads, double *gflops, rd_error *err);

/* Bytes of the activation arena (planned once at creation) and the worker thread count. */
size_t rd_nn_ctx_arena_bytes(const rd_nn_ctx *ctx);
int rd_nn_ctx_threads(const rd_nn_ctx *ctx);

/* Runs the network on `batch` (1..max_batch) inputs laid out NCHW as the model's input
 * shape. A context runs one forward at a time (it is not to be shared between threads). */
rd_status rd_nn_forward(rd_nn_ctx *ctx, const float *input, int batch, rd_error *err);

/* The named output ("embedding", "scores", or any key of the model's "outputs") of the last
 * forward: batch rows of *size floats each, inside the context's arena (valid until the next
 * forward). NULL when the model has no such output. */
const float *rd_nn_ctx_output(const rd_nn_ctx *ctx, const char *key, int *size);

/* Class activation maps (Zhou et al., CVPR 2016) ------------------------------------------
 *
 * When an output is a linear head over global average pooling of a feature map F (channels
 * x height x width), optionally followed by a sigmoid, as "scores" is in radraft's
 * encoders, the head's value k before its bias is the mean over positions p of
 * map_k(p) = sum_c weight[k][c] * F[c][p]: where in the image the evidence for k lies. An
 * inference context keeps F of every such output readable after a forward, and computes the
 * maps from it on request (one n_maps x channels x positions sgemm). Nothing is looked up
 * by node name: the graph's shape decides, so any model of that shape has maps. */
typedef struct rd_nn_cam_info {
    int n_maps;               /* values of the output (rows of the linear head) */
    int channels;             /* channels of the feature map */
    int height, width;        /* its positions: a map is height x width floats, row-major */
    const float *weight;      /* n_maps x channels, the head's weights (owned by the model) */
    const float *bias;        /* n_maps values, NULL when the head has none */
    const char *feature_node; /* the feature map's node name (the model's) */
} rd_nn_cam_info;

/* Fills *out for output `key`. Errors: RD_E_NOT_FOUND (no such output), RD_E_UNSUPPORTED
 * (the output is not a linear head over global average pooling). */
rd_status rd_nn_model_cam_info(const rd_nn_model *model, const char *key, rd_nn_cam_info *out,
                               rd_error *err);

/* The feature map of output `key` for sample `sample` of the last forward: channels x height
 * x width floats inside the arena (valid until the next forward); NULL when the output has
 * no maps or `sample` is outside the last batch. */
const float *rd_nn_ctx_cam_features(const rd_nn_ctx *ctx, const char *key, int sample);

/* The class activation maps of output `key` for sample `sample` of the last forward:
 * maps[k * height * width + p] as above, without the bias, so that the mean of map k over
 * its positions is the head's value k minus its bias (the logit, for a sigmoid output).
 * `maps` holds n_maps x height x width floats. Errors as rd_nn_model_cam_info, and
 * RD_E_INVALID for a sample outside the last batch. */
rd_status rd_nn_ctx_cam(const rd_nn_ctx *ctx, const char *key, int sample, float *maps,
                        rd_error *err);

/* Writing models ------------------------------------------------------------------------ */

/* One float32 tensor to store in a safetensors file. */
typedef struct rd_nn_tensor_desc {
    const char *name;
    int ndim; /* 0..4 */
    int64_t shape[4];
    const float *data; /* product(shape) values */
} rd_nn_tensor_desc;

/* Encodes tensors as safetensors bytes (F32, header padded to 8 bytes). On success *out is
 * a malloc'd buffer of *len bytes owned by the caller. */
rd_status rd_nn_safetensors_encode(const rd_nn_tensor_desc *tensors, int n, void **out, size_t *len,
                                   rd_error *err);

/* The architectures rd_nn_model_init knows, NULL-terminated: "resnet-small" (the project's
 * network: 1x256x256, stem + 4 stages of basic blocks 32/64/128/256, 256-d embedding, 14
 * scores), "resnet18" (3x224x224, the common yardstick) and "opzoo" (a small network that
 * uses every op, for tests). */
extern const char *const rd_nn_archs[];

/* Writes DIR/model.json and DIR/model.safetensors for `arch` with random weights from
 * `seed`: He-normal convolutions and linear layers, batch norm statistics drawn near their
 * neutral values so that folding is exercised. The folder is created if needed. */
rd_status rd_nn_model_init(const char *arch, uint64_t seed, const char *dir, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
