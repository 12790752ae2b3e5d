/*
 * k_layout.c -- layout changes between the engine's CNHW activations and other layouts:
 * NCHW <-> CNHW at the API boundary, flatten to a linear layer's (c*h*w, n) in PyTorch's per-sample
 * (c, h, w) order, and the option-A (zero-padding, strided identity) shortcut of He et al. 2016.
 * Pure copies: parallel over channels, bit-identical for any thread count.
 */
#include "xbar.h"

#include <string.h>

/* x (n, c, hw) -> y (c, n, hw) */
void xb_nchw_to_cnhw(int n, int c, int hw, const float *x, float *y) {
#pragma omp parallel for schedule(static) if ((int64_t)n * c * hw > (1 << 16))
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++)
            memcpy(y + ((int64_t)ch * n + i) * hw, x + ((int64_t)i * c + ch) * hw, sizeof(float) * (size_t)hw);
}

/* x (c, n, hw) -> y (n, c, hw) */
void xb_cnhw_to_nchw(int c, int n, int hw, const float *x, float *y) {
#pragma omp parallel for schedule(static) if ((int64_t)n * c * hw > (1 << 16))
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++)
            memcpy(y + ((int64_t)i * c + ch) * hw, x + ((int64_t)ch * n + i) * hw, sizeof(float) * (size_t)hw);
}

/* x (c, n, hw) -> y (c*hw, n): y[(ch*hw + j)*n + i] = x[(ch*n + i)*hw + j] */
void xb_flatten_forward(int c, int n, int hw, const float *x, float *y) {
#pragma omp parallel for schedule(static) if ((int64_t)n * c * hw > (1 << 16))
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++) {
            const float *xs = x + ((int64_t)ch * n + i) * hw;
            float *yd = y + (int64_t)ch * hw * n + i;
            for (int j = 0; j < hw; j++) yd[(int64_t)j * n] = xs[j];
        }
}

void xb_flatten_backward(int c, int n, int hw, const float *dy, float *dx) {
#pragma omp parallel for schedule(static) if ((int64_t)n * c * hw > (1 << 16))
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++) {
            float *dxs = dx + ((int64_t)ch * n + i) * hw;
            const float *ds = dy + (int64_t)ch * hw * n + i;
            for (int j = 0; j < hw; j++) dxs[j] += ds[(int64_t)j * n];
        }
}

/* y (cout, n, ho, wo), ho = ceil(h/s): y[pad_lo + ch] = x[ch, :, ::s, ::s], other channels zero. */
void xb_shortcut_pad_forward(int cin, int cout, int pad_lo, int s, int n, int h, int w, const float *x,
                             float *y) {
    XB_ASSERT(s >= 1 && pad_lo >= 0 && pad_lo + cin <= cout);
    const int ho = (h + s - 1) / s, wo = (w + s - 1) / s;
    const int64_t plane_o = (int64_t)ho * wo, plane_i = (int64_t)h * w;
#pragma omp parallel for schedule(static) if ((int64_t)cout * n * plane_o > (1 << 16))
    for (int co = 0; co < cout; co++) {
        float *yc = y + (int64_t)co * n * plane_o;
        int ch = co - pad_lo;
        if (ch < 0 || ch >= cin) {
            memset(yc, 0, sizeof(float) * (size_t)(n * plane_o));
            continue;
        }
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((int64_t)ch * n + i) * plane_i;
            float *yp = yc + (int64_t)i * plane_o;
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++) yp[oh * wo + ow] = xp[(int64_t)oh * s * w + (int64_t)ow * s];
        }
    }
}

void xb_shortcut_pad_backward(int cin, int cout, int pad_lo, int s, int n, int h, int w,
                              const float *dy, float *dx) {
    xb_shortcut_pad_backward_ex(cin, cout, pad_lo, s, n, h, w, dy, dx, 1);
}

void xb_shortcut_pad_backward_ex(int cin, int cout, int pad_lo, int s, int n, int h, int w,
                                 const float *dy, float *dx, int dx_acc) {
    XB_ASSERT(s >= 1 && pad_lo >= 0 && pad_lo + cin <= cout);
    const int ho = (h + s - 1) / s, wo = (w + s - 1) / s;
    const int64_t plane_o = (int64_t)ho * wo, plane_i = (int64_t)h * w;
#pragma omp parallel for schedule(static) if ((int64_t)cin * n * plane_o > (1 << 16))
    for (int ch = 0; ch < cin; ch++) {
        const float *dyc = dy + (int64_t)(ch + pad_lo) * n * plane_o;
        for (int i = 0; i < n; i++) {
            float *dxp = dx + ((int64_t)ch * n + i) * plane_i;
            const float *dyp = dyc + (int64_t)i * plane_o;
            if (!dx_acc) memset(dxp, 0, sizeof(float) * (size_t)plane_i); /* positions off the stride get 0 */
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++) dxp[(int64_t)oh * s * w + (int64_t)ow * s] += dyp[oh * wo + ow];
        }
    }
}
