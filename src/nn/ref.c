/*
 * ref.c -- plain reference kernels in double precision: direct loops written for obviousness, not
 * speed (no im2col, no BLAS, no threads).  The tests compare every fast kernel in k_*.c against
 * these, and the gradient tests differentiate them by central differences.  Same semantics and
 * layouts as the fast kernels (CNHW activations, PyTorch parameter layouts).
 */
#include "xbar.h"
#include "nn/ref.h"

#include <math.h>
#include <string.h>

/* ---- convolution --------------------------------------------------------------------------------- */

/* y (cout, n, ho, wo) = sum over the group's input channels and the kernel window; b may be NULL. */
void xb_conv2d_forward_ref(const xb_conv2d_desc *d, int n, const double *x, const double *w,
                           const double *b, double *y) {
    const int cing = d->cin / d->groups, coutg = d->cout / d->groups;
    for (int co = 0; co < d->cout; co++) {
        int g = co / coutg;
        for (int i = 0; i < n; i++)
            for (int oh = 0; oh < d->ho; oh++)
                for (int ow = 0; ow < d->wo; ow++) {
                    double s = b ? b[co] : 0.0;
                    for (int c = 0; c < cing; c++) {
                        int ci = g * cing + c;
                        for (int ki = 0; ki < d->kh; ki++) {
                            int ih = oh * d->sh - d->ph + ki;
                            if (ih < 0 || ih >= d->h) continue;
                            for (int kj = 0; kj < d->kw; kj++) {
                                int iw = ow * d->sw - d->pw + kj;
                                if (iw < 0 || iw >= d->w) continue;
                                s += w[((int64_t)(co * cing + c) * d->kh + ki) * d->kw + kj] *
                                     x[(((int64_t)ci * n + i) * d->h + ih) * d->w + iw];
                            }
                        }
                    }
                    y[(((int64_t)co * n + i) * d->ho + oh) * d->wo + ow] = s;
                }
    }
}

/* Accumulates dx, dw, db (each may be NULL) from dy, the transpose of the loops above. */
void xb_conv2d_backward_ref(const xb_conv2d_desc *d, int n, const double *x, const double *w,
                            const double *dy, double *dx, double *dw, double *db) {
    const int cing = d->cin / d->groups, coutg = d->cout / d->groups;
    for (int co = 0; co < d->cout; co++) {
        int g = co / coutg;
        for (int i = 0; i < n; i++)
            for (int oh = 0; oh < d->ho; oh++)
                for (int ow = 0; ow < d->wo; ow++) {
                    double gy = dy[(((int64_t)co * n + i) * d->ho + oh) * d->wo + ow];
                    if (db) db[co] += gy;
                    for (int c = 0; c < cing; c++) {
                        int ci = g * cing + c;
                        for (int ki = 0; ki < d->kh; ki++) {
                            int ih = oh * d->sh - d->ph + ki;
                            if (ih < 0 || ih >= d->h) continue;
                            for (int kj = 0; kj < d->kw; kj++) {
                                int iw = ow * d->sw - d->pw + kj;
                                if (iw < 0 || iw >= d->w) continue;
                                int64_t wi = ((int64_t)(co * cing + c) * d->kh + ki) * d->kw + kj;
                                int64_t xi = (((int64_t)ci * n + i) * d->h + ih) * d->w + iw;
                                if (dx) dx[xi] += w[wi] * gy;
                                if (dw) dw[wi] += x[xi] * gy;
                            }
                        }
                    }
                }
    }
}

/* ---- linear --------------------------------------------------------------------------------------- */

void xb_linear_forward_ref(int k, int f, int n, const double *x, const double *w, const double *b,
                           double *y) {
    for (int o = 0; o < f; o++)
        for (int j = 0; j < n; j++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < k; i++) s += w[(int64_t)o * k + i] * x[(int64_t)i * n + j];
            y[(int64_t)o * n + j] = s;
        }
}

/* ---- batchnorm ------------------------------------------------------------------------------------ */

/* Training-mode normalisation: two-pass mean and biased variance per channel row. */
void xb_batchnorm_forward_ref(int c, int64_t m, const double *x, const double *gamma,
                              const double *beta, double eps, double *y) {
    for (int ch = 0; ch < c; ch++) {
        const double *xc = x + (int64_t)ch * m;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < m; i++) mean += xc[i];
        mean /= (double)m;
        for (int64_t i = 0; i < m; i++) var += (xc[i] - mean) * (xc[i] - mean);
        var /= (double)m;
        double invstd = 1.0 / sqrt(var + eps);
        double g = gamma ? gamma[ch] : 1.0, b = beta ? beta[ch] : 0.0;
        for (int64_t i = 0; i < m; i++) y[(int64_t)ch * m + i] = (xc[i] - mean) * invstd * g + b;
    }
}

void xb_batchnorm_eval_ref(int c, int64_t m, const double *x, const double *gamma, const double *beta,
                           const double *running_mean, const double *running_var, double eps, double *y) {
    for (int ch = 0; ch < c; ch++) {
        double invstd = 1.0 / sqrt(running_var[ch] + eps);
        double g = gamma ? gamma[ch] : 1.0, b = beta ? beta[ch] : 0.0;
        for (int64_t i = 0; i < m; i++)
            y[(int64_t)ch * m + i] = (x[(int64_t)ch * m + i] - running_mean[ch]) * invstd * g + b;
    }
}

/* ---- pooling -------------------------------------------------------------------------------------- */

void xb_maxpool_forward_ref(const xb_pool_desc *d, int c, int n, const double *x, double *y) {
    for (int64_t pl = 0; pl < (int64_t)c * n; pl++)
        for (int oh = 0; oh < d->ho; oh++)
            for (int ow = 0; ow < d->wo; ow++) {
                double best = -INFINITY;
                for (int ki = 0; ki < d->k; ki++)
                    for (int kj = 0; kj < d->k; kj++) {
                        int ih = oh * d->s - d->p + ki, iw = ow * d->s - d->p + kj;
                        if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue; /* -inf padding */
                        double v = x[(pl * d->h + ih) * d->w + iw];
                        if (v > best || isnan(v)) best = v;
                    }
                y[(pl * d->ho + oh) * d->wo + ow] = best;
            }
}

/* count_include_pad=True: always divide by k*k (without ceil_mode every window lies inside the
 * padded input). */
void xb_avgpool_forward_ref(const xb_pool_desc *d, int c, int n, const double *x, double *y) {
    for (int64_t pl = 0; pl < (int64_t)c * n; pl++)
        for (int oh = 0; oh < d->ho; oh++)
            for (int ow = 0; ow < d->wo; ow++) {
                double s = 0;
                for (int ki = 0; ki < d->k; ki++)
                    for (int kj = 0; kj < d->k; kj++) {
                        int ih = oh * d->s - d->p + ki, iw = ow * d->s - d->p + kj;
                        if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                        s += x[(pl * d->h + ih) * d->w + iw];
                    }
                y[(pl * d->ho + oh) * d->wo + ow] = s / (double)(d->k * d->k);
            }
}

void xb_gap_forward_ref(int c, int n, int hw, const double *x, double *y) {
    for (int64_t pl = 0; pl < (int64_t)c * n; pl++) {
        double s = 0;
        for (int i = 0; i < hw; i++) s += x[pl * hw + i];
        y[pl] = s / hw;
    }
}

/* ---- layout --------------------------------------------------------------------------------------- */

void xb_flatten_forward_ref(int c, int n, int hw, const double *x, double *y) {
    for (int i = 0; i < n; i++)          /* sample i's feature vector, PyTorch order (c, h, w) */
        for (int ch = 0; ch < c; ch++)
            for (int j = 0; j < hw; j++) y[((int64_t)ch * hw + j) * n + i] = x[((int64_t)ch * n + i) * hw + j];
}

void xb_shortcut_pad_forward_ref(int cin, int cout, int pad_lo, int s, int n, int h, int w,
                                 const double *x, double *y) {
    int ho = (h + s - 1) / s, wo = (w + s - 1) / s;
    memset(y, 0, sizeof(double) * (size_t)cout * n * ho * wo);
    for (int ch = 0; ch < cin; ch++)
        for (int i = 0; i < n; i++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++)
                    y[(((int64_t)(ch + pad_lo) * n + i) * ho + oh) * wo + ow] =
                        x[(((int64_t)ch * n + i) * h + oh * s) * w + ow * s];
}

/* ---- loss ----------------------------------------------------------------------------------------- */

/* mean over samples of (1-eps)*(-log p_y) + eps * mean_c(-log p_c), log p from logits (k, n). */
double xb_softmax_ce_ref(int k, int n, const double *logits, const int32_t *labels, double eps) {
    double total = 0;
    for (int j = 0; j < n; j++) {
        double mx = -INFINITY;
        for (int c = 0; c < k; c++) mx = fmax(mx, logits[(int64_t)c * n + j]);
        double se = 0;
        for (int c = 0; c < k; c++) se += exp(logits[(int64_t)c * n + j] - mx);
        double lse = mx + log(se), nll = 0, smooth = 0;
        for (int c = 0; c < k; c++) {
            double nlp = lse - logits[(int64_t)c * n + j];
            if (c == labels[j]) nll = nlp;
            smooth += nlp / k;
        }
        total += (1 - eps) * nll + eps * smooth;
    }
    return total / n;
}
