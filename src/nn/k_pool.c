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

#if defined(__AVX512F__) && !defined(XB_POOL_NO_SIMD)
#include <immintrin.h>
/* 2x2 stride-2 unpadded max pool of even-sized planes (vgg's pools), 16 outputs per step: the
 * window's four values a b / c d are taken in row-major order with the scalar loop's rule (replace
 * when greater, or when NaN), as masked blends, so results and argmax are the same. */
static void maxpool2x2(int64_t planes, int h, int w, const float *x, float *y, int32_t *argmax) {
    const int ho = h / 2, wo = w / 2;
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i lane2 = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * h * w;
        float *yp = y + pl * ho * wo;
        int32_t *ap = argmax ? argmax + pl * ho * wo : NULL;
        for (int oh = 0; oh < ho; oh++) {
            const float *r0 = xp + (int64_t)2 * oh * w, *r1 = r0 + w;
            for (int ow = 0; ow < wo; ow += 16) {
                const int left = 2 * (wo - ow); /* input columns left in the row */
                const __mmask16 m0 = (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1);
                const __mmask16 m1 = (__mmask16)(left >= 32 ? 0xffff : left <= 16 ? 0 : (1u << (left - 16)) - 1);
                const __mmask16 mo = (__mmask16)(wo - ow >= 16 ? 0xffff : (1u << (wo - ow)) - 1);
                __m512 u0 = _mm512_maskz_loadu_ps(m0, r0 + 2 * ow), u1 = _mm512_maskz_loadu_ps(m1, r0 + 2 * ow + 16);
                __m512 v0 = _mm512_maskz_loadu_ps(m0, r1 + 2 * ow), v1 = _mm512_maskz_loadu_ps(m1, r1 + 2 * ow + 16);
                __m512 best = _mm512_permutex2var_ps(u0, even, u1);
                __m512i code = _mm512_setzero_si512();
                __m512 cand[3] = {_mm512_permutex2var_ps(u0, odd, u1), _mm512_permutex2var_ps(v0, even, v1),
                                  _mm512_permutex2var_ps(v0, odd, v1)};
                for (int q = 0; q < 3; q++) {
                    __mmask16 take = _mm512_cmp_ps_mask(cand[q], best, _CMP_GT_OQ) |
                                     _mm512_cmp_ps_mask(cand[q], cand[q], _CMP_UNORD_Q);
                    best = _mm512_mask_mov_ps(best, take, cand[q]);
                    code = _mm512_mask_mov_epi32(code, take, _mm512_set1_epi32(q + 1));
                }
                _mm512_mask_storeu_ps(yp + (int64_t)oh * wo + ow, mo, best);
                if (ap) { /* index = 2*oh*w + 2*ow + (code & 1) + (code >> 1) * w */
                    __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(2 * oh * w + 2 * ow), lane2);
                    idx = _mm512_add_epi32(idx, _mm512_and_si512(code, _mm512_set1_epi32(1)));
                    idx = _mm512_add_epi32(idx, _mm512_mullo_epi32(_mm512_srli_epi32(code, 1), _mm512_set1_epi32(w)));
                    _mm512_mask_storeu_epi32(ap + (int64_t)oh * wo + ow, mo, idx);
                }
            }
        }
    }
}
#endif

void xb_maxpool_forward(const xb_pool_desc *d, int c, int n, const float *x, float *y, int32_t *argmax) {
    const int k = d->k, s = d->s, p = d->p, h = d->h, w = d->w, ho = d->ho, wo = d->wo;
    const int64_t planes = (int64_t)c * n;
#if defined(__AVX512F__) && !defined(XB_POOL_NO_SIMD)
    if (k == 2 && s == 2 && p == 0 && h % 2 == 0 && w % 2 == 0) {
        maxpool2x2(planes, h, w, x, y, argmax);
        return;
    }
#endif
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
