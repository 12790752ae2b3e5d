/* qact.c -- the activation quantizers of quantization-aware training (include/xb_quant.h, the [quant NAME]
 * layer of a model .cfg): the grid of each kind, the forward  y = step clamp(rint(x / step), lo, hi)  with
 * its straight-through mask, and the backward (the masked gradient and PACT's d alpha).
 *
 * Choices where the header's contract leaves room (tests/test_quant.c holds them):
 *  - A NaN input stays NaN in y (it is not hidden) and gets mask 0, so no gradient flows through it; like
 *    every element whose mask is not 1, it is counted in the number clipped that xb_qa_forward returns.
 *  - xb_qa_grid takes the bits and the clip as validated by its caller (src/nn/model.c checks the .cfg:
 *    bits 1..16, SIGNED 2..16, clip > 0); bits outside 1..24 (SIGNED 2..24; TERNARY ignores them) or an
 *    unknown kind are a programmer error (XB_ASSERT).  DOREFA ignores clip (it clips at 1).
 *  - The backward's d alpha is summed in double over fixed blocks, then in block order, so that it does
 *    not depend on the thread count. */
#include "xbar.h"
#include "core/quant.h"

#include <math.h>

const char *const xb_qa_names[XB_QA_COUNT] = {"uniform", "pact", "dorefa", "ternary", "signed"};

#define QA_PAR 65536     /* elements above which the loops run on several threads */
#define QA_BLOCKS 64
#define QA_MIN_BLOCK 16384

void xb_qa_grid(xb_qa_kind kind, int bits, float clip, float *step, float *lo, float *hi) {
    XB_ASSERT((unsigned)kind < XB_QA_COUNT && step && lo && hi);
    float l = 0, h = 1, s = clip;
    switch (kind) {
    case XB_QA_UNIFORM: case XB_QA_PACT: case XB_QA_DOREFA:
        XB_ASSERT(bits >= 1 && bits <= 24);
        h = (float)((1L << bits) - 1);
        s = (kind == XB_QA_DOREFA ? 1.0f : clip) / h;
        break;
    case XB_QA_TERNARY: l = -1; h = 1; s = clip; break;
    case XB_QA_SIGNED:
        XB_ASSERT(bits >= 2 && bits <= 24);
        h = (float)((1L << (bits - 1)) - 1);
        l = -h;
        s = clip / h;
        break;
    default: break;
    }
    *step = s; *lo = l; *hi = h;
}

/* elements [o, e): branch-free, so that it vectorizes (the clamp keeps a NaN: both comparisons are false) */
static int64_t qa_run_(int64_t o, int64_t e, const float *x, float step, float lo, float hi, float *y,
                       uint8_t *mask) {
    int64_t clipped = 0;
#pragma omp simd reduction(+ : clipped)
    for (int64_t i = o; i < e; i++) {
        const float c = xq_round(x[i], step);
        /* 2 above the grid, 1 inside, 0 below it or NaN (every comparison with NaN is false) */
        const int above = c > hi, inside = (c >= lo) & (c <= hi);
        float q = c < lo ? lo : c;
        q = q > hi ? hi : q;
        if (mask) mask[i] = (uint8_t)(above * 2 + inside);
        clipped += !inside;
        y[i] = q * step;
    }
    return clipped;
}

int64_t xb_qa_forward(int64_t n, const float *x, float step, float lo, float hi, float *y, uint8_t *mask) {
    if (n <= QA_PAR) return mask ? qa_run_(0, n, x, step, lo, hi, y, mask) : qa_run_(0, n, x, step, lo, hi, y, NULL);
    const int64_t bs = QA_MIN_BLOCK * 4;
    const int64_t nb = (n + bs - 1) / bs;
    int64_t clipped = 0;
#pragma omp parallel for reduction(+ : clipped) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t o = b * bs, e = n - o < bs ? n : o + bs;
        clipped += qa_run_(o, e, x, step, lo, hi, y, mask);
    }
    return clipped;
}

double xb_qa_backward(int64_t n, const uint8_t *mask, const float *dy, float *dx) {
    if (n <= 0) return 0;
    int64_t bs = (n + QA_BLOCKS - 1) / QA_BLOCKS;
    if (bs < QA_MIN_BLOCK) bs = QA_MIN_BLOCK;
    const int nb = (int)((n + bs - 1) / bs);
    double part[QA_BLOCKS];
#pragma omp parallel for schedule(static) if (n > QA_PAR)
    for (int b = 0; b < nb; b++) {
        const int64_t o = b * bs, e = n - o < bs ? n : o + bs;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = o; i < e; i++) {
            const float g = dy[i]; /* dx may alias dy */
            const uint8_t m = mask[i];
            s += m == 2 ? (double)g : 0.0;
            dx[i] = m == 1 ? g : 0.0f;
        }
        part[b] = s;
    }
    double sum = 0;
    for (int b = 0; b < nb; b++) sum += part[b];
    return sum;
}
