/* radraft — private declarations of the training engine (src/train/nn_train.c): a network
 * that runs forward in training mode (batch norm with batch statistics) and backward, the
 * loss and the optimizer. Used by the trainer (src/train/train.c) and by the gradient tests.
 *
 * A training network works on a model parsed raw (rd_nn_model_parse_raw / _load_raw: batch
 * norm unfolded, nothing fused) and uses that model's weight arrays as its parameters: it
 * updates them in place, so the model must outlive the network, and writing the model out
 * (rd_tnet_tensors) writes the trained weights. */
#ifndef RADRAFT_NN_TRAIN_INT_H
#define RADRAFT_NN_TRAIN_INT_H

#include "nn/nn_int.h"

typedef struct rd_tnet rd_tnet;

/* One tensor the network trains (a parameter: `g`, `m`, `v` set) or keeps (a batch norm
 * running statistic: `g`, `m`, `v` NULL). `w` points into the model. */
typedef struct rd_tnet_param {
    char name[RD_NN_NAME_MAX + 16]; /* "layer1.0.conv1.weight", as in the weights file */
    int ndim;
    int64_t shape[4];
    size_t n;
    float *w;
    float *g;
    float *m;
    float *v;
    int decay; /* 1 for convolution and linear weights; 0 for biases and batch norm */
} rd_tnet_param;

/* Plans a network for batches of up to `max_batch` on `threads` worker threads (0 = one per
 * online processor); OpenBLAS is set to one thread, the workers are the parallelism. The
 * model (parsed raw) must outlive the network. */
rd_status rd_tnet_create(rd_tnet **out, rd_nn_model *raw, int max_batch, int threads,
                         rd_error *err);
void rd_tnet_free(rd_tnet *net);

int rd_tnet_threads(const rd_tnet *net);
int rd_tnet_find(const rd_tnet *net, const char *node_name);
/* The node an output key ("scores", "embedding") names; -1 when there is none. */
int rd_tnet_output_node(const rd_tnet *net, const char *key);
/* A node's output of the last forward: batch x elems floats (*elems set when not NULL). */
float *rd_tnet_value(const rd_tnet *net, int node, size_t *elems);
/* The gradient of the last backward with respect to the network input (batch x input
 * elems), computed only when rd_tnet_want_input_grad(net, 1) was called. */
const float *rd_tnet_input_grad(const rd_tnet *net);
/* The gradient of the loss with respect to a node's output in the last backward (zero for
 * nodes the backward did not reach), batch x elems floats. */
const float *rd_tnet_grad(const rd_tnet *net, int node);
void rd_tnet_want_input_grad(rd_tnet *net, int on);

/* Runs the network on `batch` inputs (NCHW, already normalized). training = 1: batch norm
 * normalizes with the batch's statistics and updates its running statistics (momentum
 * 0.1); training = 0: it uses the running statistics, as the inference engine does. */
rd_status rd_tnet_forward(rd_tnet *net, const float *input, int batch, int training, rd_error *err);

/* Sets every parameter gradient to zero. */
void rd_tnet_zero_grad(rd_tnet *net);

/* Back-propagates `dy` (batch x elems of `node`, the gradient of the loss with respect to
 * that node's output in the last forward) to every parameter that node depends on, adding to
 * their gradients. The last forward must have been in training mode for the batch norm
 * gradients to be those of training. */
rd_status rd_tnet_backward(rd_tnet *net, int node, const float *dy, rd_error *err);

/* Parameters and kept statistics, in graph order. */
int rd_tnet_n_params(const rd_tnet *net);
rd_tnet_param *rd_tnet_param_at(rd_tnet *net, int i);

/* Sum of squared gradients (for logs and tests). */
double rd_tnet_grad_norm(const rd_tnet *net);

/* One AdamW step (Loshchilov & Hutter: weight decay decoupled from the gradient, applied
 * only to parameters with decay = 1); `step` counts from 1 for the bias correction. */
void rd_tnet_adamw(rd_tnet *net, double lr, double weight_decay, double beta1, double beta2,
                   double eps, long step);

/* Multi-label binary cross-entropy on logits, computed stably (softplus form), averaged
 * over batch x n: targets in [0, 1] are smoothed as t (1 - s) + s / 2; positives weigh
 * pos_weight[c] (NULL = 1). Writes dL/dlogits to `dlogits` when not NULL; returns the loss. */
double rd_tnet_bce(const float *logits, const float *targets, const float *pos_weight, int batch,
                   int n, double smoothing, float *dlogits);

#endif
