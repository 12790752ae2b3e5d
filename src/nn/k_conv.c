/*
 * k_conv.c -- 2-D convolution (PyTorch nn.Conv2d: zero padding, dilation 1, groups, optional bias)
 * on CNHW activations, as im2col + SGEMM.
 *
 * For group g the layer is one matrix product over the whole batch:
 *     Y_g (cout/G, N*Ho*Wo) = W_g (cout/G, K) x col_g (K, N*Ho*Wo),   K = cin/G * kh * kw,
 * and backward is  dW_g += dY_g col_g^T,  dcol_g = W_g^T dY_g,  dx_g += col2im(dcol_g).
 * The columns are produced in chunks of whole output rows (n, oh) sized to stay in L2, so the
 * unrolled matrix is written, multiplied and (in backward) scattered back while it is cache-hot;
 * each chunk is one GEMM with ldc = N*Ho*Wo.  A 1x1 stride-1 unpadded convolution needs no col:
 * its input already is col.
 *
 * Threads: im2col parallelises over the K rows and col2im over input channels, so every output
 * element is written by one thread in a fixed order (bit-identical for any thread count); the GEMMs
 * run on OpenBLAS's threads.  Not here: dilation, non-zero padding modes, transposed convolution.
 */
#include "xbar.h"

#include <cblas.h>
#include <string.h>

/* Target size of one column chunk in floats (1 MiB: half the L2 of the cores we tune for). */
#ifndef XB_CONV_CHUNK_FLOATS
#define XB_CONV_CHUNK_FLOATS (256 * 1024)
#endif

xb_status xb_conv2d_desc_init(xb_conv2d_desc *d, int cin, int cout, int kh, int kw, int sh, int sw,
                              int ph, int pw, int groups, int h, int w) {
    memset(d, 0, sizeof *d);
    if (cin <= 0 || cout <= 0 || kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || groups <= 0 || h <= 0 ||
        w <= 0 || ph < 0 || pw < 0)
        return xb_errorf(XB_ERR_SHAPE,
                         "conv2d: invalid descriptor (cin=%d cout=%d kernel=%dx%d stride=%dx%d "
                         "padding=%dx%d groups=%d input=%dx%d). HINT: channels, kernel, stride, groups "
                         "and input size must be positive and padding non-negative.",
                         cin, cout, kh, kw, sh, sw, ph, pw, groups, h, w);
    if (cin % groups || cout % groups)
        return xb_errorf(XB_ERR_SHAPE,
                         "conv2d: cin=%d and cout=%d must both be divisible by groups=%d. HINT: pick "
                         "groups among the common divisors of cin and cout.", cin, cout, groups);
    if (h + 2 * ph < kh || w + 2 * pw < kw)
        return xb_errorf(XB_ERR_SHAPE,
                         "conv2d: kernel %dx%d is larger than the padded input %dx%d (input %dx%d, "
                         "padding %dx%d), so the output would be empty. HINT: use a smaller kernel, "
                         "more padding, or a larger input (remove a downsampling layer before it).",
                         kh, kw, h + 2 * ph, w + 2 * pw, h, w, ph, pw);
    d->cin = cin; d->cout = cout; d->kh = kh; d->kw = kw; d->sh = sh; d->sw = sw;
    d->ph = ph; d->pw = pw; d->groups = groups; d->h = h; d->w = w;
    d->ho = (h + 2 * ph - kh) / sh + 1;
    d->wo = (w + 2 * pw - kw) / sw + 1;
    return XB_OK;
}

int xb_conv2d_k(const xb_conv2d_desc *d) { return d->cin / d->groups * d->kh * d->kw; }

/* 1x1, stride 1, no padding: x (cin, n, h, w) is already col. */
static int is_pointwise(const xb_conv2d_desc *d) {
    return d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
}

/* Output rows (n, oh) per column chunk. */
static int64_t chunk_rows(const xb_conv2d_desc *d, int n) {
    int64_t per_row = (int64_t)xb_conv2d_k(d) * d->wo;
    int64_t rows = XB_CONV_CHUNK_FLOATS / per_row;
    int64_t total = (int64_t)n * d->ho;
    if (rows < 1) rows = 1;
    return rows < total ? rows : total;
}

size_t xb_conv2d_workspace(const xb_conv2d_desc *d, int n) {
    if (is_pointwise(d)) return 0;
    return (size_t)xb_conv2d_k(d) * (size_t)(chunk_rows(d, n) * d->wo);
}

/* Output columns ow whose input column ow*sw - pw + kj lies inside [0, w): [*lo, *hi). */
static void valid_cols(int wo, int sw, int pw, int w, int kj, int *lo, int *hi) {
    int off = kj - pw; /* iw = ow*sw + off */
    int l = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int h = (w - 1 - off) >= 0 ? (w - 1 - off) / sw + 1 : 0;
    if (h > wo) h = wo;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col (K, (q1-q0)*wo) for output rows q = nn*ho + oh in [q0, q1) of group g. */
static void im2col_rows(const xb_conv2d_desc *d, int n, int g, const float *x, int64_t q0, int64_t q1,
                        float *col) {
    const int kh = d->kh, kw = d->kw, sh = d->sh, sw = d->sw, ph = d->ph, pw = d->pw;
    const int h = d->h, w = d->w, ho = d->ho, wo = d->wo;
    const int cing = d->cin / d->groups, K = cing * kh * kw;
    const int64_t cols = (q1 - q0) * wo, hw = (int64_t)h * w;
    const float *xg = x + (int64_t)g * cing * n * hw; /* (cing, n, h, w) */
#pragma omp parallel for schedule(static)
    for (int r = 0; r < K; r++) {
        int c = r / (kh * kw), ki = r / kw % kh, kj = r % kw;
        int lo, hi;
        valid_cols(wo, sw, pw, w, kj, &lo, &hi);
        const float *xc = xg + (int64_t)c * n * hw;
        float *dst = col + (int64_t)r * cols;
        int64_t q = q0;
        int nn = (int)(q0 / ho), oh = (int)(q0 % ho);
        for (; q < q1; q++, dst += wo) {
            int ih = oh * sh - ph + ki;
            if (ih < 0 || ih >= h) {
                memset(dst, 0, sizeof(float) * (size_t)wo);
            } else {
                const float *src = xc + (int64_t)nn * hw + (int64_t)ih * w + (kj - pw);
                for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                if (sw == 1) {
                    memcpy(dst + lo, src + lo, sizeof(float) * (size_t)(hi - lo));
                } else if (sw == 2) {
                    for (int ow = lo; ow < hi; ow++) dst[ow] = src[2 * ow];
                } else {
                    for (int ow = lo; ow < hi; ow++) dst[ow] = src[(int64_t)ow * sw];
                }
                for (int ow = hi; ow < wo; ow++) dst[ow] = 0.0f;
            }
            if (++oh == ho) { oh = 0; nn++; }
        }
    }
}

/* dx += col2im(dcol) for output rows [q0, q1) of group g; dcol (K, (q1-q0)*wo). */
static void col2im_rows(const xb_conv2d_desc *d, int n, int g, const float *dcol, int64_t q0, int64_t q1,
                        float *dx) {
    const int kh = d->kh, kw = d->kw, sh = d->sh, sw = d->sw, ph = d->ph, pw = d->pw;
    const int h = d->h, w = d->w, ho = d->ho, wo = d->wo;
    const int cing = d->cin / d->groups;
    const int64_t cols = (q1 - q0) * wo, hw = (int64_t)h * w;
    float *dxg = dx + (int64_t)g * cing * n * hw;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < cing; c++) {
        float *dxc = dxg + (int64_t)c * n * hw;
        for (int ki = 0; ki < kh; ki++) {
            for (int kj = 0; kj < kw; kj++) {
                int lo, hi;
                valid_cols(wo, sw, pw, w, kj, &lo, &hi);
                const float *src = dcol + ((int64_t)(c * kh + ki) * kw + kj) * cols;
                int nn = (int)(q0 / ho), oh = (int)(q0 % ho);
                for (int64_t q = q0; q < q1; q++, src += wo) {
                    int ih = oh * sh - ph + ki;
                    if (ih >= 0 && ih < h) {
                        float *dst = dxc + (int64_t)nn * hw + (int64_t)ih * w + (kj - pw);
                        if (sw == 1) {
                            for (int ow = lo; ow < hi; ow++) dst[ow] += src[ow];
                        } else if (sw == 2) {
                            for (int ow = lo; ow < hi; ow++) dst[2 * ow] += src[ow];
                        } else {
                            for (int ow = lo; ow < hi; ow++) dst[(int64_t)ow * sw] += src[ow];
                        }
                    }
                    if (++oh == ho) { oh = 0; nn++; }
                }
            }
        }
    }
}

void xb_im2col(const xb_conv2d_desc *d, int n, int g, const float *x, float *col) {
    XB_ASSERT(g >= 0 && g < d->groups);
    im2col_rows(d, n, g, x, 0, (int64_t)n * d->ho, col);
}

void xb_col2im(const xb_conv2d_desc *d, int n, int g, const float *dcol, float *dx) {
    XB_ASSERT(g >= 0 && g < d->groups);
    col2im_rows(d, n, g, dcol, 0, (int64_t)n * d->ho, dx);
}

void xb_conv2d_forward(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *b,
                       float *y, float *ws) {
    const int G = d->groups, cing = d->cin / G, coutg = d->cout / G, K = xb_conv2d_k(d);
    const int64_t np = (int64_t)n * d->ho * d->wo, nhw = (int64_t)n * d->h * d->w;
    float beta = 0.0f;
    if (b) { /* y starts as the bias; the GEMMs accumulate onto it */
#pragma omp parallel for schedule(static)
        for (int co = 0; co < d->cout; co++) {
            float *yc = y + (int64_t)co * np, v = b[co];
            for (int64_t i = 0; i < np; i++) yc[i] = v;
        }
        beta = 1.0f;
    }
    if (is_pointwise(d)) {
        for (int g = 0; g < G; g++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, coutg, (int)np, K, 1.0f,
                        w + (int64_t)g * coutg * K, K, x + (int64_t)g * cing * nhw, (int)np, beta,
                        y + (int64_t)g * coutg * np, (int)np);
        return;
    }
    XB_ASSERT(ws != NULL);
    const int64_t rows = (int64_t)n * d->ho, cr = chunk_rows(d, n);
    for (int g = 0; g < G; g++) {
        const float *wg = w + (int64_t)g * coutg * K;
        float *yg = y + (int64_t)g * coutg * np;
        for (int64_t q0 = 0; q0 < rows; q0 += cr) {
            int64_t q1 = q0 + cr < rows ? q0 + cr : rows, cols = (q1 - q0) * d->wo;
            im2col_rows(d, n, g, x, q0, q1, ws);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, coutg, (int)cols, K, 1.0f, wg, K, ws,
                        (int)cols, beta, yg + q0 * d->wo, (int)np);
        }
    }
}

void xb_conv2d_backward(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *db, float *ws) {
    const int G = d->groups, cing = d->cin / G, coutg = d->cout / G, K = xb_conv2d_k(d);
    const int64_t np = (int64_t)n * d->ho * d->wo, nhw = (int64_t)n * d->h * d->w;
    if (db) {
#pragma omp parallel for schedule(static)
        for (int co = 0; co < d->cout; co++) {
            const float *g = dy + (int64_t)co * np;
            double s[8] = {0};
            int64_t i = 0;
            for (; i + 8 <= np; i += 8)
                for (int j = 0; j < 8; j++) s[j] += g[i + j];
            for (; i < np; i++) s[0] += g[i];
            db[co] += (float)(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
        }
    }
    if (!dx && !dw) return;
    if (is_pointwise(d)) {
        for (int g = 0; g < G; g++) {
            const float *xg = x + (int64_t)g * cing * nhw, *dyg = dy + (int64_t)g * coutg * np;
            const float *wg = w + (int64_t)g * coutg * K;
            if (dw)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, coutg, K, (int)np, 1.0f, dyg,
                            (int)np, xg, (int)np, 1.0f, dw + (int64_t)g * coutg * K, K);
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)np, coutg, 1.0f, wg, K, dyg,
                            (int)np, 1.0f, dx + (int64_t)g * cing * nhw, (int)np);
        }
        return;
    }
    XB_ASSERT(ws != NULL);
    const int64_t rows = (int64_t)n * d->ho, cr = chunk_rows(d, n);
    for (int g = 0; g < G; g++) {
        const float *wg = w + (int64_t)g * coutg * K, *dyg = dy + (int64_t)g * coutg * np;
        for (int64_t q0 = 0; q0 < rows; q0 += cr) {
            int64_t q1 = q0 + cr < rows ? q0 + cr : rows, cols = (q1 - q0) * d->wo;
            if (dw) {
                im2col_rows(d, n, g, x, q0, q1, ws);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, coutg, K, (int)cols, 1.0f,
                            dyg + q0 * d->wo, (int)np, ws, (int)cols, 1.0f, dw + (int64_t)g * coutg * K,
                            K);
            }
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)cols, coutg, 1.0f, wg, K,
                            dyg + q0 * d->wo, (int)np, 0.0f, ws, (int)cols);
                col2im_rows(d, n, g, ws, q0, q1, dx);
            }
        }
    }
}
