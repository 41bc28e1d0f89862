/* radraft — private: the forward kernels of the nn engine, on plain NCHW float buffers,
 * shared by inference (nn_exec.c) and training (src/train/nn_train.c) so that the math of
 * every forward op is written once.
 *
 * Each kernel does the share (ith, nth) of one op over a batch and is called by every thread
 * of an rd__nn_pool task with the same arguments; the shares never overlap, so the kernels
 * need no locking. A node (nn_int.h) gives an op's attributes (kernel, stride, padding,
 * groups, fused activation, weights) and output shape; `in` is the node of its input, for
 * the input's shape. Inputs and outputs never alias. What only training needs (batch norm
 * with batch statistics, the backward ops, col2im) is in src/train/nn_train.c. */
#ifndef RADRAFT_NN_OPS_H
#define RADRAFT_NN_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/nn_int.h"

/* The logistic function, computed without overflow on either side. */
static inline float rd__nn_sigmoid(float v)
{
    if (v >= 0)
        return 1.0f / (1.0f + expf(-v));
    float e = expf(v);
    return e / (1.0f + e);
}

static inline int rd__nn_is_pointwise(const rd_nn_node *nd)
{
    return nd->kh == 1 && nd->kw == 1 && nd->sh == 1 && nd->sw == 1 && nd->ph == 0 && nd->pw == 0;
}

/* Rows (ci, ky, kx) x columns [p0, p1) of output positions of the im2col matrix of
 * convolution `nd` over one image (or group) `x` of cin x h x w: col[row][p - p0] =
 * x[ci][oy*sh - ph + ky][ox*sw - pw + kx], or 0 in the padding. */
void rd__nn_im2col(const float *x, int cin, int h, int w, const rd_nn_node *nd, size_t p0,
                   size_t p1, float *col);

/* Floats of im2col scratch one thread needs for rd__nn_conv of `nd` (0 when the convolution
 * reads its input directly: depthwise or pointwise). At most the whole im2col matrix of an
 * image, (in->c / groups) x kh x kw x oh x ow. */
size_t rd__nn_conv_scratch(const rd_nn_node *nd, const rd_nn_node *in);

/* Convolution + bias + the node's fused activation: im2col and OpenBLAS sgemm on tiles of
 * output positions (or of output channels, for small maps with fewer images than threads),
 * or a direct loop for a depthwise convolution. `col` is this thread's scratch of at least
 * rd__nn_conv_scratch floats. */
void rd__nn_conv(const rd_nn_node *nd, const rd_nn_node *in, const float *x, float *y, int batch,
                 float *col, int ith, int nth);

/* The window of output (oy, ox) of a pooling clipped to the h x w input, and PyTorch's
 * divisor for an average (with count_include_pad, the window clipped to the padded input). */
int rd__nn_pooling_window(const rd_nn_node *nd, int h, int w, int oy, int ox, int *y0, int *y1,
                          int *x0, int *x1);

/* Max or average pooling of batch x nd->c planes. When `arg` is not NULL (training), a max
 * pooling also writes there the index in its input plane of each output's maximum. */
void rd__nn_pooling(const rd_nn_node *nd, const rd_nn_node *in, const float *x, float *y,
                    int32_t *arg, int batch, int ith, int nth);

/* Global average pooling: y[pl] = the mean of plane pl of `planes` planes of hw floats,
 * summed in double. */
void rd__nn_gap(const float *x, float *y, size_t planes, size_t hw, int ith, int nth);

/* Per-channel affine + activation: y = act(x * scale[c] + shift[c]) over `planes` planes of
 * hw floats, plane pl being channel pl % c. The batch norm of inference (folded) and the
 * application step of training's. */
void rd__nn_scale_shift(const float *x, float *y, size_t planes, int c, size_t hw,
                        const float *scale, const float *shift, rd_nn_act act, int ith, int nth);

/* relu, silu or sigmoid (`op`) of n floats. */
void rd__nn_unary(rd_nn_op op, const float *x, float *y, size_t n, int ith, int nth);

/* y = act(x[0] + x[1] + ... + x[n_in - 1]) over n floats (n_in >= 2). */
void rd__nn_add(const float *const *x, int n_in, float *y, size_t n, rd_nn_act act, int ith,
                int nth);

/* Concatenation along channels: each of the `batch` samples of y is input 0's sample
 * (elems[0] floats), then input 1's, and so on. */
void rd__nn_concat(const float *const *x, const size_t *elems, int n_in, float *y, int batch,
                   int ith, int nth);

/* Fully connected: y[n][o] = act(x[n] . weight[o] + bias[o]) for `batch` rows of f features
 * and c outputs (bias may be NULL); threads split the outputs. */
void rd__nn_linear(const float *x, size_t f, const float *weight, const float *bias, int c,
                   rd_nn_act act, float *y, int batch, int ith, int nth);

/* Each of the `batch` rows of n floats divided by max(its L2 norm, eps). */
void rd__nn_l2norm(const float *x, float *y, size_t n, float eps, int batch, int ith, int nth);

/* Node i's share (ith, nth) of a forward over `batch` samples: val[j] is node j's output
 * (batch x c x h x w floats), read for i's inputs and written for i; `col` is this thread's
 * scratch of rd__nn_conv_scratch floats for the largest convolution; `arg` is passed to
 * rd__nn_pooling. A batch norm here is the folded one of inference (weight = scale, bias =
 * shift); training runs its own. */
void rd__nn_forward_node(const rd_nn_model *m, int i, float *const *val, int batch, float *col,
                         int32_t *arg, int ith, int nth);

#endif
