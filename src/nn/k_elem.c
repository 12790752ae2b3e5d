/*
 * k_elem.c -- elementwise kernels: ReLU (nn.ReLU), residual add (alone or followed by a ReLU, in
 * one pass), inverted dropout (nn.Dropout).
 * Plain loops the compiler vectorises; ReLU and add split over threads by index ranges, which cannot
 * change results.  Dropout draws its mask serially from the caller's rng, so the mask depends only on
 * the rng state, never on the thread count.
 */
#include "xbar.h"

#include <string.h>

void xb_relu_forward(int64_t n, const float *x, float *y) {
    /* x < 0 ? 0 : x keeps NaN, as torch.relu does */
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void xb_relu_backward(int64_t n, const float *y, const float *dy, float *dx) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}

void xb_add_forward(int64_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void xb_add_relu_forward(int64_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        y[i] = v < 0.0f ? 0.0f : v;
    }
}

void xb_add_relu_backward(int64_t n, const float *y, const float *dy, float *da, float *db) {
    xb_add_relu_backward_ex(n, y, dy, da, 1, db, 1);
}

/* one destination: d = g or d += g (the branches on acc and y hoist out of the loop) */
static void put_grad(int64_t n, const float *y, const float *dy, float *d, int acc) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) {
        const float g = !y || y[i] > 0.0f ? dy[i] : 0.0f;
        d[i] = acc ? d[i] + g : g;
    }
}

void xb_add_relu_backward_ex(int64_t n, const float *y, const float *dy, float *da, int da_acc, float *db,
                             int db_acc) {
    if (!da || !db || da == db) { /* one destination (or the same twice: a + a) */
        if (da) put_grad(n, y, dy, da, da_acc);
        if (db) put_grad(n, y, dy, db, da == db ? 1 : db_acc);
        return;
    }
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) {
        const float g = !y || y[i] > 0.0f ? dy[i] : 0.0f;
        da[i] = da_acc ? da[i] + g : g;
        db[i] = db_acc ? db[i] + g : g;
    }
}

void xb_dropout_forward(int64_t n, float p, xb_rng *rng, const float *x, uint8_t *mask, float *y) {
    XB_ASSERT(p >= 0.0f && p <= 1.0f);
    if (p == 0.0f) {
        memset(mask, 1, (size_t)n);
        if (y != x) memcpy(y, x, sizeof(float) * (size_t)n);
        return;
    }
    if (p == 1.0f) { /* PyTorch: everything dropped */
        memset(mask, 0, (size_t)n);
        memset(y, 0, sizeof(float) * (size_t)n);
        return;
    }
    float scale = (float)(1.0 / (1.0 - (double)p));
    for (int64_t i = 0; i < n; i++) {
        mask[i] = xb_rng_uniform(rng) >= (double)p;
        y[i] = mask[i] ? x[i] * scale : 0.0f;
    }
}

void xb_dropout_backward(int64_t n, float p, const uint8_t *mask, const float *dy, float *dx) {
    if (p >= 1.0f) return;
    float scale = (float)(1.0 / (1.0 - (double)p));
    for (int64_t i = 0; i < n; i++) dx[i] += mask[i] ? dy[i] * scale : 0.0f;
}
