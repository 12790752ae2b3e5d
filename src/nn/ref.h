/*
 * ref.h -- extra double-precision reference kernels (beyond the *_ref functions in xb_nn.h) that
 * the kernel and gradient tests hold the fast float kernels to.  Internal: not part of the API.
 */
#ifndef XB_NN_REF_H
#define XB_NN_REF_H

#include "xbar.h"

/* eval-mode batchnorm with given running statistics; gamma/beta may be NULL */
void xb_batchnorm_eval_ref(int c, int64_t m, const double *x, const double *gamma, const double *beta,
                           const double *running_mean, const double *running_var, double eps, double *y);
void xb_gap_forward_ref(int c, int n, int hw, const double *x, double *y);
void xb_flatten_forward_ref(int c, int n, int hw, const double *x, double *y);
void xb_shortcut_pad_forward_ref(int cin, int cout, int pad_lo, int s, int n, int h, int w,
                                 const double *x, double *y);

#endif
