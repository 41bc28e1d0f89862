/* radraft — private declarations of the nn module: the model representation shared by the
 * loader (nn_model.c), the forward kernels (nn_ops.c), the inference executor (nn_exec.c)
 * and the trainer (src/train/nn_train.c). */
#ifndef RADRAFT_NN_INT_H
#define RADRAFT_NN_INT_H

#include "radraft/nn.h"

#define RD_NN_MAX_NODES 4096
#define RD_NN_MAX_INPUTS 16
#define RD_NN_NAME_MAX 128
#define RD_NN_MAX_OUTPUTS 8
#define RD_NN_MAX_LABELS 256
#define RD_NN_MAX_KERNEL 31
#define RD_NN_MAX_STRIDE 16
#define RD_NN_MAX_DIM 8192
/* Per-sample size of one activation; bounds the arena before anything is multiplied. */
#define RD_NN_MAX_ACT_ELEMS ((size_t)1 << 28)
#define RD_NN_MAX_HEADER_BYTES ((size_t)64 << 20)
#define RD_NN_MAX_WEIGHTS_BYTES ((size_t)2 << 30)
#define RD_NN_MAX_TENSORS 65536

/* The op of a node, dispatched by a switch in the executor. */
typedef enum rd_nn_op {
    RD_NN_OP_INPUT,
    RD_NN_OP_CONV2D,
    RD_NN_OP_BATCHNORM,
    RD_NN_OP_RELU,
    RD_NN_OP_SILU,
    RD_NN_OP_SIGMOID,
    RD_NN_OP_MAXPOOL,
    RD_NN_OP_AVGPOOL,
    RD_NN_OP_GAP,
    RD_NN_OP_ADD,
    RD_NN_OP_CONCAT,
    RD_NN_OP_LINEAR,
    RD_NN_OP_L2NORM,
    RD_NN_OP_COUNT
} rd_nn_op;

/* An activation applied in place at the end of an op (fused at load). */
typedef enum rd_nn_act { RD_NN_ACT_NONE, RD_NN_ACT_RELU, RD_NN_ACT_SILU } rd_nn_act;

typedef struct rd_nn_node {
    char name[RD_NN_NAME_MAX];
    rd_nn_op op;
    int n_in;
    int in[RD_NN_MAX_INPUTS]; /* indices of earlier nodes */
    int c, h, w;              /* output shape of one sample */
    /* conv2d, pools */
    int kh, kw, sh, sw, ph, pw, groups, count_include_pad;
    float eps;
    rd_nn_act act;
    /* conv2d: weight [c][in_c/groups*kh*kw], bias [c] or NULL. linear: weight [c][in
     * features], bias [c] or NULL. batchnorm: weight = scale, bias = shift (folded from
     * gamma, beta, mean, var). Owned by the node. */
    float *weight;
    float *bias;
    /* batchnorm of a model parsed raw (for training): running mean and variance, with
     * weight = gamma and bias = beta unfolded; NULL otherwise. Owned by the node. */
    float *mean;
    float *var;
    int dead;        /* removed by folding or fusion; its consumers read `replaced_by` */
    int replaced_by; /* for a dead node, the node whose output now stands for it */
} rd_nn_node;

typedef struct rd_nn_output {
    char key[RD_NN_NAME_MAX];
    int node;
} rd_nn_output;

struct rd_nn_model {
    rd_nn_info info;
    char name[RD_NN_NAME_MAX];
    char version[RD_NN_NAME_MAX];
    char **labels;
    int n_nodes;
    rd_nn_node *nodes;
    int n_outputs;
    rd_nn_output outputs[RD_NN_MAX_OUTPUTS];
};

const char *rd_nn_op_name(rd_nn_op op);

/* For output `o`: when it is sigmoid(linear(gap(F))) or linear(gap(F)) (the linear with no
 * fused activation), returns the linear node and sets *feature to F, the feature map whose
 * class activation maps the head gives; else -1. */
int rd__nn_cam_head(const rd_nn_model *m, int o, int *feature);

/* As rd_nn_model_parse / rd_nn_model_load, with the same validation, but the graph is kept
 * as described for the trainer (src/train/nn_train.c): batch norm keeps gamma, beta, running mean
 * and running variance, and nothing is folded or fused. Such a model is not for inference
 * contexts. */
rd_status rd_nn_model_parse_raw(rd_nn_model **out, const char *json, size_t json_len,
                                const void *weights, size_t weights_len, const char *origin,
                                rd_error *err);
rd_status rd_nn_model_load_raw(rd_nn_model **out, const char *path, rd_error *err);

#endif
