/* model_internal.h -- the model graph's types, shared by model.c (building, planning, forward) and
 * backward.c (the step API and backward).  Private to src/nn/. */
#ifndef XB_MODEL_INTERNAL_H
#define XB_MODEL_INTERNAL_H
#include "nn_internal.h"

typedef enum {
    L_CONV = 0, L_LINEAR, L_BN, L_RELU, L_MAXPOOL, L_AVGPOOL, L_GAP, L_FLATTEN, L_DROPOUT, L_ADD,
    L_SHORTCUT, L_QUANT, L_COUNT
} ltype;

extern const char *const xb_ltype_names[L_COUNT];

typedef struct node {
    ltype type;
    char name[96];
    int line;
    int in[2], n_in;          /* producer node indices; -1 is the image */
    int c, h, w;              /* output per image: (c, h, w); features are (c, 1, 1) */
    int p_w, p_b, p_rm, p_rv, p_nbt; /* param indices, -1 when absent */
    int mapped;               /* index among conv/linear layers, -1 otherwise */
    xb_conv2d_desc conv;
    xb_pool_desc pool;
    float eps, momentum, p_drop;
    int sc_pad_lo, sc_stride;
    /* quant (activation quantizer, include/xb_quant.h): kind, bits, fixed clip or PACT's initial alpha,
     * calibrated: the clip is the buffer p_clip, a running maximum of |x| with weight qa_momentum */
    int qa_kind, qa_bits, qa_calibrated, p_alpha, p_clip;
    float qa_clip, qa_momentum;
    int fold_bn;              /* conv: index of the batchnorm it feeds alone (folded at inference), else -1 */
    int folded;               /* batchnorm: filled by its convolution in this forward (2: with its relu) */
    int fuse_relu;            /* batchnorm, add: index of the relu that alone consumes it, else -1 */
    int relu_fused;           /* relu: its producer (batchnorm or add) wrote this node's output in this forward */
    float *wfold;             /* conv with fold_bn: folded weights (cout*K) and bias (cout) */
    int64_t macs;
    /* runtime, (c, nmax, h, w) */
    float *y, *dy;
    int dy_live;              /* dy holds accumulated gradient this backward pass */
    float *save_mean, *save_invstd;
    int32_t *argmax;
    uint8_t *mask;
    double prof[2];           /* XBAR_PROFILE=2: seconds in this node, forward / backward */
} node;

struct xb_model {
    char name[64];
    int in_c, in_h, in_w, classes;
    int n_nodes;
    node *nodes;
    int n_params;
    xb_param *params;
    int64_t n_train, n_buf;
    float *pv, *gv, *bv;      /* params, grads, buffers */
    uint8_t *decay_mask;      /* per trainable element */
    int training;
    int nmax, n_cur;
    float *xin;               /* (c, nmax, h, w) image batch in CNHW */
    float *dxin;              /* its gradient, when a backward asks for it */
    int want_dx, dxin_live;
    float *ws;
    size_t ws_floats;
    float *gtmp;              /* one mapped layer's weight gradient before an operator's weight_grad_scale */
    int n_mapped;
    int *mapped_nodes;
    xb_mm_op op;              /* the mapped-matmul operator */
    int has_op;               /* 0: the native fused kernels */
    int keep_graph;           /* eval forwards keep every output (no conv+batchnorm folding) */
    int folded_fwd;           /* the last forward folded a batchnorm into its convolution */
    uint64_t passes;          /* forwards so far */
    int bn_cumulative;        /* batchnorm running statistics as the plain mean over the batches since
                                 xb_model_reset_bn_stats (torch's momentum=None), not an exponential one */
    int profile;              /* XBAR_PROFILE=1: seconds per layer type, 2: also per node; printed by xb_model_free */
    double prof[2][L_COUNT];  /* [forward, backward][type] */
};

static inline size_t node_size(const node *nd, int n) {
    return (size_t)nd->c * (size_t)n * (size_t)nd->h * (size_t)nd->w;
}
static inline void in_shape(const xb_model *m, int idx, int *c, int *h, int *w) {
    if (idx < 0) { *c = m->in_c; *h = m->in_h; *w = m->in_w; return; }
    *c = m->nodes[idx].c; *h = m->nodes[idx].h; *w = m->nodes[idx].w;
}
static inline const float *node_in(const xb_model *m, const node *nd, int k) {
    return nd->in[k] < 0 ? m->xin : m->nodes[nd->in[k]].y;
}
static inline const float *pp(const xb_model *m, int p) { return p < 0 ? NULL : m->pv + m->params[p].offset; }
static inline float *bp(xb_model *m, int p) { return m->bv + m->params[p].offset; }
static inline float *gp(xb_model *m, int p) { return p < 0 ? NULL : m->gv + m->params[p].offset; }
/* The operator's linear weights for node nd (forward, and backward when bwd != NULL), or NULL ones
 * when it has none for this call (then the callbacks run). */
xb_status xb_node_op_linear(xb_model *m, const node *nd, int n, const float **fwd, const float **bwd);
/* The operator's weight-gradient factors for node nd's fast path (NULL: none) */
xb_status xb_node_op_grad_scale(xb_model *m, const node *nd, int n, const float **scale);
/* the mapped-matmul call of node nd, group g, for ncols columns */
xb_mm_call xb_node_mm_call(const xb_model *m, const node *nd, int g, int ncols);
/* XBAR_PROFILE: seconds per layer type (and per node) on stderr (model_info.c) */
void xb_model_print_profile(const xb_model *m);
#endif
