/*
 * xb_nn.h -- layer kernels, model graphs, optimizers, training and evaluation.  Included by xbar.h.
 *
 * Kernel contract (src/nn/k_*.c):
 *  - float32, activations in CNHW layout (see xbar.h); no allocation; scratch comes from `ws`.
 *  - Forward kernels overwrite their outputs.  Backward kernels ACCUMULATE (+=) into every gradient
 *    they produce (dx, dw, db, ...); callers zero gradients first.  A NULL gradient pointer means
 *    "not needed" and is skipped.
 *  - Every kernel has a plain reference (*_ref, in double precision where it matters) in
 *    src/nn/ref.c that tests hold the fast one to; backward kernels are checked by finite differences.
 *  - Kernels parallelise with OpenMP over independent outer loops only, so results do not depend on
 *    the thread count except through BLAS (which is deterministic for a fixed thread count).
 */
#ifndef XB_NN_H
#define XB_NN_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---- convolution (PyTorch Conv2d semantics: zero padding, dilation 1, groups) -------------------- */
typedef struct xb_conv2d_desc {
    int cin, cout, kh, kw, sh, sw, ph, pw, groups;
    int h, w;    /* input spatial size */
    int ho, wo;  /* output spatial size: (h + 2ph - kh)/sh + 1 */
} xb_conv2d_desc;

/* Fills d; returns XB_ERR_SHAPE (with message) if the output would be empty or cin/cout are not
 * divisible by groups. */
xb_status xb_conv2d_desc_init(xb_conv2d_desc *d, int cin, int cout, int kh, int kw, int sh, int sw,
                              int ph, int pw, int groups, int h, int w);
/* K = cin/groups*kh*kw: rows of the unrolled (im2col) matrix, i.e. the crossbar rows of this layer. */
int xb_conv2d_k(const xb_conv2d_desc *d);
/* The convolution kernels this build runs: "avx512", "avx2" (both: xbar's own implicit-GEMM and
 * packed kernels; results do not depend on the thread count) or "cblas" (im2col + CBLAS sgemm). */
const char *xb_conv2d_isa(void);
/* Scratch floats needed by forward/backward for batch n. */
size_t xb_conv2d_workspace(const xb_conv2d_desc *d, int n);
/* col (K, n*ho*wo) for group g from x (cin, n, h, w). */
void xb_im2col(const xb_conv2d_desc *d, int n, int g, const float *x, float *col);
/* dx (cin, n, h, w) += col2im(dcol) for group g. */
void xb_col2im(const xb_conv2d_desc *d, int n, int g, const float *dcol, float *dx);
/* y (cout, n, ho, wo) = conv(x (cin, n, h, w), w (cout, cin/groups, kh, kw)) + b (cout, may be NULL) */
void xb_conv2d_forward(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *b,
                       float *y, float *ws);
/* the same, then y = relu(y) if relu, in the convolution's last pass over y (inference's
 * conv+BN+ReLU; same bits as xb_conv2d_forward followed by xb_relu_forward) */
void xb_conv2d_relu_forward(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *b,
                            float *y, float *ws, int relu);
/* dx += d/dx, dw += d/dw, db += d/db of sum(y * dy); any of dx, dw, db may be NULL */
void xb_conv2d_backward(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *db, float *ws);
/* the same with dx written (dx_acc = 0: dx need not be zeroed first) or added into (dx_acc = 1);
 * dw and db are always added into */
void xb_conv2d_backward_ex(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *dy,
                           float *dx, int dx_acc, float *dw, float *db, float *ws);

/* ---- linear: y (f, n) = W (f, k) x (k, n) + b (f) ------------------------------------------------ */
void xb_linear_forward(int k, int f, int n, const float *x, const float *w, const float *b, float *y);
void xb_linear_backward(int k, int f, int n, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *db);

/* ---- batchnorm over x (c, m) with m = n*h*w (1d: m = n) ------------------------------------------
 * training: normalise with the batch mean and biased variance, save mean and 1/sqrt(var+eps) for
 * backward, and update running stats as PyTorch does: r = (1-momentum) r + momentum * stat, with the
 * unbiased variance (m/(m-1)) for running_var.  eval: use running stats.  running_* may be NULL in
 * training (no update). */
void xb_batchnorm_forward(int c, int64_t m, const float *x, const float *gamma, const float *beta,
                          float *running_mean, float *running_var, float momentum, float eps,
                          int training, float *y, float *save_mean, float *save_invstd);
/* backward of the training-mode forward: dx, dgamma, dbeta += (dx, dgamma, dbeta may be NULL) */
void xb_batchnorm_backward(int c, int64_t m, const float *x, const float *gamma,
                           const float *save_mean, const float *save_invstd, const float *dy,
                           float *dx, float *dgamma, float *dbeta);
/* batchnorm then ReLU, without the intermediate: y = relu(bn(x)); backward takes that y and its dy
 * (same results as xb_batchnorm_* followed by xb_relu_*) */
void xb_batchnorm_relu_forward(int c, int64_t m, const float *x, const float *gamma, const float *beta,
                               float *running_mean, float *running_var, float momentum, float eps,
                               int training, float *y, float *save_mean, float *save_invstd);
void xb_batchnorm_relu_backward(int c, int64_t m, const float *x, const float *gamma,
                                const float *save_mean, const float *save_invstd, const float *y,
                                const float *dy, float *dx, float *dgamma, float *dbeta);
/* either backward (y: the ReLU's output, or NULL for plain batchnorm) with dx written (dx_acc = 0) or
 * added into (dx_acc = 1) */
void xb_batchnorm_backward_ex(int c, int64_t m, const float *x, const float *gamma, const float *save_mean,
                              const float *save_invstd, const float *y, const float *dy, float *dx, int dx_acc,
                              float *dgamma, float *dbeta);
/* eval mode: batchnorm is the per-channel affine y = (x - rm) sc + beta, sc = gamma / sqrt(rv + eps), of
 * the running statistics; y_relu (the ReLU's output, or NULL) masks dy.  dx written (dx_acc = 0) or
 * added (1); dgamma, dbeta (may be NULL; x is only read for dgamma) added. */
void xb_batchnorm_eval_backward(int c, int64_t m, const float *x, const float *gamma, const float *rm,
                                const float *rv, float eps, const float *y_relu, const float *dy, float *dx,
                                int dx_acc, float *dgamma, float *dbeta);

/* ---- elementwise ------------------------------------------------------------------------------- */
void xb_relu_forward(int64_t n, const float *x, float *y);
void xb_relu_backward(int64_t n, const float *y, const float *dy, float *dx); /* dx += dy*(y>0) */
void xb_add_forward(int64_t n, const float *a, const float *b, float *y);
/* y = relu(a + b); backward: g = dy*(y>0), da += g and db += g (either may be NULL) */
void xb_add_relu_forward(int64_t n, const float *a, const float *b, float *y);
void xb_add_relu_backward(int64_t n, const float *y, const float *dy, float *da, float *db);
/* the same with da (db) written where da_acc (db_acc) is 0, added into where it is 1; y NULL: no ReLU
 * (the backward of xb_add_forward) */
void xb_add_relu_backward_ex(int64_t n, const float *y, const float *dy, float *da, int da_acc, float *db,
                             int db_acc);
/* dropout: mask[i] = 1 with probability 1-p (from rng), y = x*mask/(1-p) */
void xb_dropout_forward(int64_t n, float p, xb_rng *rng, const float *x, uint8_t *mask, float *y);
void xb_dropout_backward(int64_t n, float p, const uint8_t *mask, const float *dy, float *dx);

/* ---- pooling over x (c, n, h, w) ----------------------------------------------------------------- */
typedef struct xb_pool_desc { int k, s, p, h, w, ho, wo; } xb_pool_desc;
xb_status xb_pool_desc_init(xb_pool_desc *d, int k, int s, int p, int h, int w);
/* max pool (padding acts as -inf); argmax (c, n, ho, wo) holds the flat h*w index chosen */
void xb_maxpool_forward(const xb_pool_desc *d, int c, int n, const float *x, float *y, int32_t *argmax);
void xb_maxpool_backward(const xb_pool_desc *d, int c, int n, const int32_t *argmax, const float *dy,
                         float *dx);
/* average pool, count_include_pad = true (PyTorch's default) */
void xb_avgpool_forward(const xb_pool_desc *d, int c, int n, const float *x, float *y);
void xb_avgpool_backward(const xb_pool_desc *d, int c, int n, const float *dy, float *dx);
/* global average pool: (c, n, hw) -> (c, n) */
void xb_gap_forward(int c, int n, int hw, const float *x, float *y);
void xb_gap_backward(int c, int n, int hw, const float *dy, float *dx);

/* ---- layout ------------------------------------------------------------------------------------- */
/* flatten (c, n, h, w) -> (c*h*w, n) in PyTorch's per-sample (c, h, w) order, and back */
void xb_flatten_forward(int c, int n, int hw, const float *x, float *y);
void xb_flatten_backward(int c, int n, int hw, const float *dy, float *dx);
/* NCHW (n, c, hw) <-> CNHW (c, n, hw) */
void xb_nchw_to_cnhw(int n, int c, int hw, const float *x, float *y);
void xb_cnhw_to_nchw(int c, int n, int hw, const float *x, float *y);
/* option-A shortcut of He et al.: y (cout, n, ho, wo) with ho = ceil(h/s): channels pad_lo ..
 * pad_lo+cin-1 hold x[:, :, ::s, ::s], the rest are zero */
void xb_shortcut_pad_forward(int cin, int cout, int pad_lo, int s, int n, int h, int w, const float *x,
                             float *y);
void xb_shortcut_pad_backward(int cin, int cout, int pad_lo, int s, int n, int h, int w,
                              const float *dy, float *dx); /* dx += */
/* dx written (dx_acc = 0) or added into (dx_acc = 1) */
void xb_shortcut_pad_backward_ex(int cin, int cout, int pad_lo, int s, int n, int h, int w,
                                 const float *dy, float *dx, int dx_acc);

/* ---- loss --------------------------------------------------------------------------------------- */
/* Softmax cross-entropy over logits (k, n) with labels (n) and label smoothing eps (PyTorch's
 * CrossEntropyLoss(label_smoothing=eps), mean over the batch).  Returns the mean loss; dlogits (k, n)
 * (may be NULL) is OVERWRITTEN with d(mean loss)/d logits; *correct (may be NULL) counts argmax hits. */
double xb_softmax_ce(int k, int n, const float *logits, const int32_t *labels, float eps,
                     float *dlogits, int *correct);

/* ---- plain references (src/nn/ref.c): direct loops, double accumulation ------------------------- */
void xb_conv2d_forward_ref(const xb_conv2d_desc *d, int n, const double *x, const double *w,
                           const double *b, double *y);
void xb_conv2d_backward_ref(const xb_conv2d_desc *d, int n, const double *x, const double *w,
                            const double *dy, double *dx, double *dw, double *db);
void xb_linear_forward_ref(int k, int f, int n, const double *x, const double *w, const double *b,
                           double *y);
void xb_batchnorm_forward_ref(int c, int64_t m, const double *x, const double *gamma,
                              const double *beta, double eps, double *y);
void xb_maxpool_forward_ref(const xb_pool_desc *d, int c, int n, const double *x, double *y);
void xb_avgpool_forward_ref(const xb_pool_desc *d, int c, int n, const double *x, double *y);
double xb_softmax_ce_ref(int k, int n, const double *logits, const int32_t *labels, double eps);

#ifdef __cplusplus
}
#endif

#include "xb_model.h"

#endif /* XB_NN_H */
