/*
 * k_pool.c -- pooling on CNHW activations: max pool (nn.MaxPool2d, padding acts as -inf, the FIRST
 * maximum in row-major window order wins ties; NaN propagates and, as in PyTorch, the last NaN is
 * the argmax), average pool (nn.AvgPool2d with
 * count_include_pad=True) and global average pooling (AdaptiveAvgPool2d(1)).  ceil_mode and
 * dilation are not supported.  Every (channel, image) plane is independent: planes run in parallel.
 */
#include "xbar.h"

#include <math.h>
#include <string.h>

xb_status xb_pool_desc_init(xb_pool_desc *d, int k, int s, int p, int h, int w) {
    memset(d, 0, sizeof *d);
    if (k <= 0 || s <= 0 || p < 0 || h <= 0 || w <= 0)
        return xb_errorf(XB_ERR_SHAPE,
                         "pool: invalid descriptor (kernel=%d stride=%d padding=%d input=%dx%d). HINT: "
                         "kernel, stride and input size must be positive, padding non-negative.",
                         k, s, p, h, w);
    if (2 * p > k)
        return xb_errorf(XB_ERR_SHAPE,
                         "pool: padding %d is more than half the kernel %d. HINT: PyTorch requires "
                         "padding <= kernel/2; use padding=%d.", p, k, k / 2);
    if (h + 2 * p < k || w + 2 * p < k)
        return xb_errorf(XB_ERR_SHAPE,
                         "pool: kernel %d is larger than the padded input %dx%d, so the output would "
                         "be empty. HINT: use a smaller kernel or remove a downsampling layer before "
                         "this one.", k, h + 2 * p, w + 2 * p);
    d->k = k; d->s = s; d->p = p; d->h = h; d->w = w;
    d->ho = (h + 2 * p - k) / s + 1;
    d->wo = (w + 2 * p - k) / s + 1;
    return XB_OK;
}

void xb_maxpool_forward(const xb_pool_desc *d, int c, int n, const float *x, float *y, int32_t *argmax) {
    const int k = d->k, s = d->s, p = d->p, h = d->h, w = d->w, ho = d->ho, wo = d->wo;
    const int64_t planes = (int64_t)c * n;
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * h * w;
        float *yp = y + pl * ho * wo;
        int32_t *ap = argmax ? argmax + pl * ho * wo : NULL;
        for (int oh = 0; oh < ho; oh++) {
            int h0 = oh * s - p, h1 = h0 + k;
            if (h0 < 0) h0 = 0;
            if (h1 > h) h1 = h;
            for (int ow = 0; ow < wo; ow++) {
                int w0 = ow * s - p, w1 = w0 + k;
                if (w0 < 0) w0 = 0;
                if (w1 > w) w1 = w;
                float best = -INFINITY;
                int bi = h0 * w + w0;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) {
                        float v = xp[ih * w + iw];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = ih * w + iw;
                        }
                    }
                yp[oh * wo + ow] = best;
                if (ap) ap[oh * wo + ow] = bi;
            }
        }
    }
}

void xb_maxpool_backward(const xb_pool_desc *d, int c, int n, const int32_t *argmax, const float *dy,
                         float *dx) {
    const int64_t planes = (int64_t)c * n, hw = (int64_t)d->h * d->w, po = (int64_t)d->ho * d->wo;
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dxp = dx + pl * hw;
        const float *dyp = dy + pl * po;
        const int32_t *ap = argmax + pl * po;
        for (int64_t i = 0; i < po; i++) dxp[ap[i]] += dyp[i];
    }
}

void xb_avgpool_forward(const xb_pool_desc *d, int c, int n, const float *x, float *y) {
    const int k = d->k, s = d->s, p = d->p, h = d->h, w = d->w, ho = d->ho, wo = d->wo;
    const int64_t planes = (int64_t)c * n;
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * h * w;
        float *yp = y + pl * ho * wo;
        for (int oh = 0; oh < ho; oh++) {
            int h0 = oh * s - p, h1 = h0 + k;
            if (h1 > h + p) h1 = h + p;
            int hp = h1 - h0; /* window rows counted, padding included */
            if (h0 < 0) h0 = 0;
            if (h1 > h) h1 = h;
            for (int ow = 0; ow < wo; ow++) {
                int w0 = ow * s - p, w1 = w0 + k;
                if (w1 > w + p) w1 = w + p;
                int wp = w1 - w0;
                if (w0 < 0) w0 = 0;
                if (w1 > w) w1 = w;
                float sum = 0.0f;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) sum += xp[ih * w + iw];
                yp[oh * wo + ow] = sum / (float)(hp * wp);
            }
        }
    }
}

void xb_avgpool_backward(const xb_pool_desc *d, int c, int n, const float *dy, float *dx) {
    const int k = d->k, s = d->s, p = d->p, h = d->h, w = d->w, ho = d->ho, wo = d->wo;
    const int64_t planes = (int64_t)c * n;
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dxp = dx + pl * h * w;
        const float *dyp = dy + pl * ho * wo;
        for (int oh = 0; oh < ho; oh++) {
            int h0 = oh * s - p, h1 = h0 + k;
            if (h1 > h + p) h1 = h + p;
            int hp = h1 - h0;
            if (h0 < 0) h0 = 0;
            if (h1 > h) h1 = h;
            for (int ow = 0; ow < wo; ow++) {
                int w0 = ow * s - p, w1 = w0 + k;
                if (w1 > w + p) w1 = w + p;
                int wp = w1 - w0;
                if (w0 < 0) w0 = 0;
                if (w1 > w) w1 = w;
                float g = dyp[oh * wo + ow] / (float)(hp * wp);
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) dxp[ih * w + iw] += g;
            }
        }
    }
}

void xb_gap_forward(int c, int n, int hw, const float *x, float *y) {
    const int64_t planes = (int64_t)c * n;
#pragma omp parallel for schedule(static) if (planes * hw > (1 << 16))
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * hw;
        float s = 0.0f;
        for (int i = 0; i < hw; i++) s += xp[i];
        y[pl] = s / (float)hw;
    }
}

void xb_gap_backward(int c, int n, int hw, const float *dy, float *dx) {
    const int64_t planes = (int64_t)c * n;
#pragma omp parallel for schedule(static) if (planes * hw > (1 << 16))
    for (int64_t pl = 0; pl < planes; pl++) {
        float g = dy[pl] / (float)hw, *dxp = dx + pl * hw;
        for (int i = 0; i < hw; i++) dxp[i] += g;
    }
}
