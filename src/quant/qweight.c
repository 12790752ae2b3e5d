/* qweight.c -- the weight quantizers of quantization-aware training (include/xb_quant.h): uniform,
 * binary (XNOR-Net), ternary (plain, TWN, asymmetric), DoReFa, per matrix or per output row, with
 * deterministic or stochastic rounding, their straight-through derivatives, and xb_qw_apply_ref, the
 * plain double reference the tests hold xb_qw_apply to.
 *
 * xb_qw_apply runs on every mapped layer at every training step, so it makes at most three passes over
 * the weights (statistics, the selected means of the ternary kinds, the quantization), each a
 * vectorizable loop over one row, allocates nothing, and parallelizes over rows (or over fixed blocks of
 * the matrix for the per-matrix statistics) when the matrix has more than 65536 weights.  Statistics are
 * summed in double over fixed blocks and then in block order, so results do not depend on the thread
 * count.
 *
 * Choices where the header's contract leaves room (tests/test_quant.c holds them):
 *  - DOREFA codes are xq_round(t (2^b - 1), 1) = rint(t (2^b - 1)) exactly as the header's formula; the
 *    grid on t has step 1 / (2^b - 1), but xq_round(t, 1 / (2^b - 1)) in float32 misrounds exact ties:
 *    w = 0 gives t = 1/2, and 0.5f / (1.0f / 3) = 1.4999999 would round to 1 instead of 2 for 2 bits.
 *  - DOREFA on an all-zero matrix (row with per_channel): max|tanh(w)| = 0 is taken as 1, so t = 1/2 and
 *    ste = 1 (as UNIFORM takes s = 1 when max|w| = 0).
 *  - TERNARY_ASYM: the mean over an empty side (no positive, or no negative, weight) is 0, so that side's
 *    threshold is 0 and its scale 0 (no weight is selected).
 *  - NONE: wq = w, code = w (there is no integer code), ste = 1.
 *  - Thresholds D are compared in double (|w| > D), as the reference does.
 *  - Stochastic rounding draws u from 32 random bits and computes floor(v + u) in double: the code is
 *    always floor(v) or floor(v) + 1, and its mean is v to 2^-32.  The stream: (seed, "qw") forked by the
 *    counter, then by the row, so that it does not depend on the thread count.
 *  - DOREFA's tanh is qw_tanhf below (1.33 ulp, vectorizable), not glibc's tanhf (8 ns per call).
 *  - On XB_ERR_NUMERIC (a non-finite weight) the outputs are unspecified. */
#include "xbar.h"
#include "core/quant.h"

#include <math.h>
#include <string.h>

const char *const xb_qw_names[XB_QW_COUNT] = {"none",        "uniform",      "binary", "ternary",
                                              "ternary-sym", "ternary-asym", "dorefa"};

#define QW_PAR 65536    /* weights above which loops run on several threads */
#define QW_BLOCKS 64    /* per-matrix statistics: at most this many blocks, summed in order */
#define QW_MIN_BLOCK 4096

static int is_ternary(xb_qw_kind k) {
    return k == XB_QW_TERNARY || k == XB_QW_TERNARY_SYM || k == XB_QW_TERNARY_ASYM;
}

xb_status xb_qw_check(const xb_qw_spec *s, const char *where) {
    const char *at = where && *where ? where : "weight quantizer";
    if (!s) return xb_errorf(XB_ERR_ARG, "%s: no weight quantizer given (NULL spec). HINT: pass an xb_qw_spec", at);
    if ((unsigned)s->kind >= XB_QW_COUNT)
        return xb_errorf(XB_ERR_ARG, "%s: weight quantizer kind %d is unknown. HINT: one of none, uniform, binary, "
                         "ternary, ternary-sym, ternary-asym, dorefa", at, (int)s->kind);
    const char *name = xb_qw_names[s->kind];
    if (s->kind == XB_QW_UNIFORM && (s->bits < 2 || s->bits > 16))
        return xb_errorf(XB_ERR_ARG, "%s: weight_bits = %d is out of range for uniform weights. HINT: 2..16 bits "
                         "(1 bit: weight = binary)", at, s->bits);
    if (s->kind == XB_QW_DOREFA && (s->bits < 1 || s->bits > 16))
        return xb_errorf(XB_ERR_ARG, "%s: weight_bits = %d is out of range for dorefa weights. HINT: 1..16 bits",
                         at, s->bits);
    if (s->stochastic && s->kind != XB_QW_UNIFORM && s->kind != XB_QW_DOREFA)
        return xb_errorf(XB_ERR_ARG, "%s: stochastic rounding is not defined for %s weights. HINT: only uniform and "
                         "dorefa round stochastically; turn stochastic rounding off for %s", at, name, name);
    if (is_ternary(s->kind) && !(s->delta > 0 && s->delta < 2))
        return xb_errorf(XB_ERR_ARG, "%s: ternary threshold factor delta = %g is out of range for %s weights. "
                         "HINT: 0 < delta < 2 (TWN uses 0.7)", at, s->delta, name);
    return XB_OK;
}

int xb_qw_scales_per_row(const xb_qw_spec *s) {
    switch (s->kind) {
    case XB_QW_NONE: case XB_QW_TERNARY: return 0;
    case XB_QW_TERNARY_ASYM: return 2;
    default: return 1;
    }
}

int xb_qw_bits(const xb_qw_spec *s) {
    switch (s->kind) {
    case XB_QW_UNIFORM: case XB_QW_DOREFA: return s->bits;
    case XB_QW_BINARY: return 1;
    case XB_QW_TERNARY: case XB_QW_TERNARY_SYM: case XB_QW_TERNARY_ASYM: return 2;
    default: return 32;
    }
}

/* ---- tanh ---------------------------------------------------------------------------------------- */

/* exp(x) in float32 for 0 <= x <= 20, vectorizable: Cephes' expf (x = n ln 2 + r, |r| <= ln 2 / 2, a degree-6
 * polynomial, then 2^n from its bits). */
static inline float qw_expf(float x) {
    const float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    const float y = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
                      1.6666665459e-1f) * r + 5.0000001201e-1f) * (r * r) + r + 1.0f;
    union { int32_t i; float f; } p2;
    p2.i = ((int32_t)n + 127) << 23;
    return y * p2.f;
}

/* tanh in float32, vectorizable (glibc's tanhf is a call per element, 8 ns; this is under 1 ns in a loop):
 * Cephes' tanhf, an odd polynomial below 0.625 and 1 - 2 / (exp(2|x|) + 1) above; odd exactly; at most
 * 1.33 ulp from the exact tanh, and non-decreasing (both checked on every float against double tanh). */
static inline float qw_tanhf(float x) {
    const float a = fabsf(x), z = a * a;
    const float p = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                      1.33314422036e-1f) * z - 3.33332819422e-1f) * z * a + a;
    const float e = qw_expf(2.0f * (a < 10.0f ? a : 10.0f));
    const float q = 1.0f - 2.0f / (e + 1.0f);
    return copysignf(a < 0.625f ? p : q, x);
}

/* ---- statistics ---------------------------------------------------------------------------------- */

/* First pass over n weights: max|w| (UNIFORM, DOREFA), sum|w| (BINARY, TERNARY, TERNARY_SYM), the sums
 * and counts of the positive and of the negative weights (TERNARY_ASYM); bad: non-zero if a weight is
 * not finite (w - w is NaN exactly then). */
typedef struct { float maxabs, bad; double sabs, spos, sneg; int64_t npos, nneg; } qstat;

static void stats1(xb_qw_kind kind, const float *w, int64_t n, qstat *st) {
    memset(st, 0, sizeof *st);
    float m = 0, z = 0;
    if (kind == XB_QW_UNIFORM || kind == XB_QW_DOREFA) {
#pragma omp simd reduction(max : m) reduction(+ : z)
        for (int64_t j = 0; j < n; j++) {
            float a = fabsf(w[j]);
            m = a > m ? a : m; /* not fmaxf, which does not vectorize; a NaN shows in z */
            z += w[j] - w[j];
        }
    } else if (kind == XB_QW_TERNARY_ASYM) {
        /* all in double (counts too: exact), so that the loop vectorizes */
        double sp = 0, sn = 0, np = 0, nn = 0, zd = 0;
#pragma omp simd reduction(+ : zd, sp, sn, np, nn)
        for (int64_t j = 0; j < n; j++) {
            const double x = w[j];
            zd += x - x;
            sp += x > 0 ? x : 0.0;
            np += x > 0 ? 1.0 : 0.0;
            sn += x < 0 ? -x : 0.0;
            nn += x < 0 ? 1.0 : 0.0;
        }
        z = (float)zd;
        st->spos = sp; st->sneg = sn; st->npos = (int64_t)np; st->nneg = (int64_t)nn;
    } else {
        double sa = 0, zd = 0;
#pragma omp simd reduction(+ : zd, sa)
        for (int64_t j = 0; j < n; j++) {
            const double x = w[j];
            zd += x - x;
            sa += fabs(x);
        }
        st->sabs = sa;
        z = (float)zd;
    }
    st->maxabs = m;
    st->bad = z != 0 || z != z;
}

static void stats_add(qstat *a, const qstat *b) {
    a->maxabs = fmaxf(a->maxabs, b->maxabs);
    a->bad = a->bad || b->bad;
    a->sabs += b->sabs; a->spos += b->spos; a->sneg += b->sneg;
    a->npos += b->npos; a->nneg += b->nneg;
}

/* Second pass of the ternary kinds: TERNARY_SYM the sum and count of |w| over |w| > D (in spos, npos);
 * TERNARY_ASYM the sum and count of w over w > Dp (spos, npos) and of -w over w < -Dm (sneg, nneg). */
static void stats2(xb_qw_kind kind, const float *w, int64_t n, double D, double Dp, double Dm, qstat *st) {
    memset(st, 0, sizeof *st);
    double sp = 0, sn = 0, np = 0, nn = 0;
    if (kind == XB_QW_TERNARY_SYM) {
#pragma omp simd reduction(+ : sp, np)
        for (int64_t j = 0; j < n; j++) {
            const double a = fabsf(w[j]);
            sp += a > D ? a : 0.0;
            np += a > D ? 1.0 : 0.0;
        }
    } else {
#pragma omp simd reduction(+ : sp, sn, np, nn)
        for (int64_t j = 0; j < n; j++) {
            const double x = w[j];
            sp += x > Dp ? x : 0.0;
            np += x > Dp ? 1.0 : 0.0;
            sn += x < -Dm ? -x : 0.0;
            nn += x < -Dm ? 1.0 : 0.0;
        }
    }
    st->spos = sp; st->sneg = sn; st->npos = (int64_t)np; st->nneg = (int64_t)nn;
}

/* ---- one group (a row, or the matrix) ----------------------------------------------------------- */

/* What the quantization pass of a group needs, from its statistics. */
typedef struct {
    float s, a, b;      /* scale (UNIFORM, BINARY, TERNARY_SYM, DOREFA's 1 / (2^b - 1)); ASYM's a and b */
    float Q;            /* UNIFORM's top code; DOREFA's 2^b - 1 */
    float M;            /* DOREFA: max|tanh(w)| (1 when it is 0) */
    double D, Dp, Dm;   /* ternary thresholds */
} qparam;

static double mean_or0(double sum, int64_t n) { return n > 0 ? sum / (double)n : 0.0; }

/* The parameters that the first pass decides (the ternary thresholds; every scale but SYM's and ASYM's). */
static void params1(const xb_qw_spec *s, const qstat *st, int64_t n, qparam *p) {
    memset(p, 0, sizeof *p);
    switch (s->kind) {
    case XB_QW_UNIFORM:
        p->Q = (float)((1 << (s->bits - 1)) - 1);
        p->s = st->maxabs > 0 ? st->maxabs / p->Q : 1.0f;
        break;
    case XB_QW_DOREFA:
        p->Q = (float)((1 << s->bits) - 1);
        p->s = 1.0f / p->Q;
        p->M = qw_tanhf(st->maxabs); /* = max|tanh(w)|: tanh is increasing, and so is qw_tanhf */
        if (!(p->M > 0)) p->M = 1.0f;
        break;
    case XB_QW_BINARY: p->s = (float)mean_or0(st->sabs, n); break;
    case XB_QW_TERNARY: case XB_QW_TERNARY_SYM: p->D = s->delta * mean_or0(st->sabs, n); break;
    case XB_QW_TERNARY_ASYM:
        p->Dp = s->delta * mean_or0(st->spos, st->npos);
        p->Dm = s->delta * mean_or0(st->sneg, st->nneg);
        break;
    default: break;
    }
}

/* The scales of the second pass (TERNARY_SYM, TERNARY_ASYM). */
static void params2(const xb_qw_spec *s, const qstat *st2, qparam *p) {
    if (s->kind == XB_QW_TERNARY_SYM) p->s = (float)mean_or0(st2->spos, st2->npos);
    else if (s->kind == XB_QW_TERNARY_ASYM) {
        p->b = (float)mean_or0(st2->spos, st2->npos);
        p->a = (float)mean_or0(st2->sneg, st2->nneg);
    }
}

static void write_scales(const xb_qw_spec *s, const qparam *p, float *scale) {
    if (!scale) return;
    switch (s->kind) {
    case XB_QW_NONE: case XB_QW_TERNARY: break;
    case XB_QW_TERNARY_ASYM: scale[0] = p->a; scale[1] = p->b; break;
    default: scale[0] = p->s; break;
    }
}

/* hard tanh's derivative: 1 where |w| <= 1 */
static void ste_htanh(const float *w, int64_t n, float *ste) {
    for (int64_t j = 0; j < n; j++) ste[j] = fabsf(w[j]) <= 1.0f ? 1.0f : 0.0f;
}

static void fill1(float *x, int64_t n) {
    for (int64_t j = 0; j < n; j++) x[j] = 1.0f;
}

/* Stochastic codes: c = clamp(floor(x / step + u), lo, hi), u uniform in [0, 1) with 32 bits, two draws per
 * 64-bit number (low half first); the draws are taken a chunk at a time, so that the arithmetic vectorizes.
 * The sum is taken in double, exact but for |x / step| < 2^-20, so c is floor(x / step) or the next code,
 * the next one with probability frac(x / step) to 2^-32.  floor is a truncation to int32 (|v| < 2^17) and
 * a correction: GCC 12 vectorizes that, not floor(). */
static void stoch_codes(const float *x, int64_t n, float step, float lo, float hi, xb_rng *r, float *c) {
    enum { CHUNK = 256 };
    uint32_t u[CHUNK];
    for (int64_t j0 = 0; j0 < n; j0 += CHUNK) {
        const int m = n - j0 < CHUNK ? (int)(n - j0) : CHUNK;
        for (int h = 0; h < m; h += 2) {
            const uint64_t b = xb_rng_u64(r);
            u[h] = (uint32_t)b;
            u[h + 1] = (uint32_t)(b >> 32);
        }
        const float *xc = x + j0;
        float *cc = c + j0;
        for (int h = 0; h < m; h++) {
            /* u / 2^32 as (u - 2^31) / 2^32 + 1/2: a signed conversion, which vectorizes */
            const double v = (double)(xc[h] / step) + (double)(int32_t)(u[h] ^ 0x80000000u) * 0x1p-32 + 0.5;
            const int32_t t = (int32_t)v;
            cc[h] = xq_clamp((float)(t - (v < (double)t)), lo, hi);
        }
    }
}

/* Quantizes n weights of one group with the parameters p.  code (may be NULL) and ste (may be NULL).
 * r: the group's stream, NULL for deterministic rounding. */
static void quant_group(const xb_qw_spec *s, const qparam *p, const float *w, int64_t n, float *wq, float *code,
                        float *ste, xb_rng *r) {
    switch (s->kind) {
    case XB_QW_NONE:
        memcpy(wq, w, (size_t)n * sizeof *w);
        if (code) memcpy(code, w, (size_t)n * sizeof *w);
        if (ste) fill1(ste, n);
        break;
    case XB_QW_UNIFORM: {
        const float sc = p->s, Q = p->Q;
        if (r) {
            float *c = code ? code : wq; /* the codes first, then the values over them */
            stoch_codes(w, n, sc, -Q, Q, r, c);
            for (int64_t j = 0; j < n; j++) wq[j] = c[j] * sc;
        } else if (code) {
            for (int64_t j = 0; j < n; j++) {
                float c = xq_clamp(xq_round(w[j], sc), -Q, Q);
                code[j] = c;
                wq[j] = c * sc;
            }
        } else {
            for (int64_t j = 0; j < n; j++) wq[j] = xq_clamp(xq_round(w[j], sc), -Q, Q) * sc;
        }
        if (ste) fill1(ste, n);
        break;
    }
    case XB_QW_BINARY: {
        const float sc = p->s;
        for (int64_t j = 0; j < n; j++) wq[j] = w[j] >= 0 ? sc : -sc;
        if (code) for (int64_t j = 0; j < n; j++) code[j] = w[j] >= 0 ? 1.0f : -1.0f;
        if (ste) ste_htanh(w, n, ste);
        break;
    }
    case XB_QW_TERNARY: case XB_QW_TERNARY_SYM: case XB_QW_TERNARY_ASYM: {
        /* codes: +1 above the upper threshold, -1 below minus the lower one; TERNARY and SYM: one D */
        const double up = s->kind == XB_QW_TERNARY_ASYM ? p->Dp : p->D;
        const double dn = s->kind == XB_QW_TERNARY_ASYM ? p->Dm : p->D;
        const float vp = s->kind == XB_QW_TERNARY ? 1.0f : s->kind == XB_QW_TERNARY_SYM ? p->s : p->b;
        const float vn = s->kind == XB_QW_TERNARY ? -1.0f : s->kind == XB_QW_TERNARY_SYM ? -p->s : -p->a;
        for (int64_t j = 0; j < n; j++) {
            double x = w[j];
            wq[j] = x > up ? vp : x < -dn ? vn : 0.0f;
        }
        if (code)
            for (int64_t j = 0; j < n; j++) {
                double x = w[j];
                code[j] = x > up ? 1.0f : x < -dn ? -1.0f : 0.0f;
            }
        if (ste) ste_htanh(w, n, ste);
        break;
    }
    case XB_QW_DOREFA: {
        /* t = tanh(w) / (2 M) + 1/2 in [0, 1]; code on t: rint(t Q) in [0, Q]; c = 2 code - Q; wq = c / Q */
        const float Q = p->Q, sc = p->s, M = p->M, M2 = 2.0f * p->M;
        float *tq = code ? code : wq; /* t (2^b - 1), then the codes, over the output */
        if (ste)
            for (int64_t j = 0; j < n; j++) {
                float th = qw_tanhf(w[j]);
                tq[j] = (th / M2 + 0.5f) * Q;
                ste[j] = (1.0f - th * th) / M;
            }
        else
            for (int64_t j = 0; j < n; j++) tq[j] = (qw_tanhf(w[j]) / M2 + 0.5f) * Q;
        if (r) stoch_codes(tq, n, 1.0f, 0, Q, r, tq);
        for (int64_t j = 0; j < n; j++) {
            float c = 2.0f * (r ? tq[j] : xq_clamp(xq_round(tq[j], 1.0f), 0, Q)) - Q;
            if (code) code[j] = c;
            wq[j] = c * sc;
        }
        break;
    }
    default: break;
    }
}

/* ---- the matrix ---------------------------------------------------------------------------------- */

static xb_status nonfinite_error(int rows, int k, const float *w) {
    for (int64_t i = 0; i < (int64_t)rows * k; i++)
        if (!isfinite(w[i]))
            return xb_errorf(XB_ERR_NUMERIC, "xb_qw_apply: weight [%lld, %lld] of a %d x %d matrix is %g (not finite). "
                             "HINT: the training diverged: lower the learning rate, or check the weights loaded",
                             (long long)(i / k), (long long)(i % k), rows, k, w[i]);
    return xb_errorf(XB_ERR_NUMERIC, "xb_qw_apply: a weight is not finite. HINT: lower the learning rate");
}

xb_status xb_qw_apply(const xb_qw_spec *s, int rows, int k, const float *w, float *wq, float *code, float *scale,
                      float *ste, uint64_t seed, uint64_t counter) {
    xb_status e = xb_qw_check(s, "xb_qw_apply");
    if (e) return e;
    if (rows < 0 || k < 0)
        return xb_errorf(XB_ERR_ARG, "xb_qw_apply: a %d x %d weight matrix. HINT: rows and k must be >= 0", rows, k);
    const int64_t n = (int64_t)rows * k;
    if (n > 0 && (!w || !wq))
        return xb_errorf(XB_ERR_ARG, "xb_qw_apply: w and wq must not be NULL. HINT: pass the weights and an output");
    if (n > 0 && (wq == w || code == w || ste == w))
        return xb_errorf(XB_ERR_ARG, "xb_qw_apply: an output aliases the weights. HINT: write to separate buffers");
    const int spr = xb_qw_scales_per_row(s);
    const int par = n > QW_PAR;
    const int stoch = s->stochastic != 0;
    xb_rng base;
    if (stoch) {
        xb_rng r0;
        xb_rng_seed(&r0, seed, "qw");
        xb_rng_fork(&r0, counter, &base);
    }
    if (n == 0) { /* no weights: the scales of an all-zero matrix */
        qstat st;
        qparam p;
        memset(&st, 0, sizeof st);
        params1(s, &st, 0, &p);
        for (int r = 0; r < (s->per_channel ? rows : 1); r++) write_scales(s, &p, scale ? scale + r * spr : NULL);
        return XB_OK;
    }
    int bad = 0;
    if (s->per_channel) {
#pragma omp parallel for schedule(static) reduction(| : bad) if (par)
        for (int r = 0; r < rows; r++) {
            const float *wr = w + (int64_t)r * k;
            qstat st, st2;
            qparam p;
            stats1(s->kind, wr, k, &st);
            if (st.bad) { bad = 1; continue; }
            params1(s, &st, k, &p);
            if (s->kind == XB_QW_TERNARY_SYM || s->kind == XB_QW_TERNARY_ASYM) {
                stats2(s->kind, wr, k, p.D, p.Dp, p.Dm, &st2);
                params2(s, &st2, &p);
            }
            write_scales(s, &p, scale ? scale + (int64_t)r * spr : NULL);
            xb_rng rr, *rp = NULL;
            if (stoch) { xb_rng_fork(&base, (uint64_t)r, &rr); rp = &rr; }
            const int64_t o = (int64_t)r * k;
            quant_group(s, &p, wr, k, wq + o, code ? code + o : NULL, ste ? ste + o : NULL, rp);
        }
        return bad ? nonfinite_error(rows, k, w) : XB_OK;
    }
    /* one scale for the matrix: statistics over fixed blocks (the same whatever the thread count) */
    int64_t bs = (n + QW_BLOCKS - 1) / QW_BLOCKS;
    if (bs < QW_MIN_BLOCK) bs = QW_MIN_BLOCK;
    const int nb = (int)((n + bs - 1) / bs);
    qstat part[QW_BLOCKS], st, st2;
#pragma omp parallel for schedule(static) if (par)
    for (int b = 0; b < nb; b++) {
        const int64_t o = b * bs, m = n - o < bs ? n - o : bs;
        stats1(s->kind, w + o, m, &part[b]);
    }
    st = part[0];
    for (int b = 1; b < nb; b++) stats_add(&st, &part[b]);
    if (st.bad) return nonfinite_error(rows, k, w);
    qparam p;
    params1(s, &st, n, &p);
    if (s->kind == XB_QW_TERNARY_SYM || s->kind == XB_QW_TERNARY_ASYM) {
#pragma omp parallel for schedule(static) if (par)
        for (int b = 0; b < nb; b++) {
            const int64_t o = b * bs, m = n - o < bs ? n - o : bs;
            stats2(s->kind, w + o, m, p.D, p.Dp, p.Dm, &part[b]);
        }
        st2 = part[0];
        for (int b = 1; b < nb; b++) stats_add(&st2, &part[b]);
        params2(s, &st2, &p);
    }
    write_scales(s, &p, scale);
    if (!stoch && !par) { /* one group: a single loop over the matrix */
        quant_group(s, &p, w, n, wq, code, ste, NULL);
        return XB_OK;
    }
#pragma omp parallel for schedule(static) if (par)
    for (int r = 0; r < rows; r++) {
        xb_rng rr, *rp = NULL;
        if (stoch) { xb_rng_fork(&base, (uint64_t)r, &rr); rp = &rr; }
        const int64_t o = (int64_t)r * k;
        quant_group(s, &p, w + o, k, wq + o, code ? code + o : NULL, ste ? ste + o : NULL, rp);
    }
    return XB_OK;
}

/* ---- the reference ------------------------------------------------------------------------------- */

/* One group of n weights, in double, straight from the header's table. */
static void ref_group(const xb_qw_spec *s, int64_t n, const float *w, double *wq, double *ste) {
    double sabs = 0, maxabs = 0, sp = 0, sn = 0, np = 0, nn = 0;
    for (int64_t j = 0; j < n; j++) {
        double x = w[j];
        sabs += fabs(x);
        if (fabs(x) > maxabs) maxabs = fabs(x);
        if (x > 0) { sp += x; np++; }
        if (x < 0) { sn -= x; nn++; }
    }
    const double mean_abs = n > 0 ? sabs / (double)n : 0;
    double M = 0; /* DOREFA: max|tanh(w)|, 1 when it is 0 */
    for (int64_t j = 0; j < n; j++) if (fabs(tanh(w[j])) > M) M = fabs(tanh(w[j]));
    if (!(M > 0)) M = 1;
    switch (s->kind) {
    case XB_QW_NONE:
        for (int64_t j = 0; j < n; j++) wq[j] = w[j];
        break;
    case XB_QW_UNIFORM: {
        double Q = (double)((1 << (s->bits - 1)) - 1), sc = maxabs > 0 ? maxabs / Q : 1.0;
        for (int64_t j = 0; j < n; j++) {
            double c = rint(w[j] / sc);
            wq[j] = sc * (c < -Q ? -Q : c > Q ? Q : c);
        }
        break;
    }
    case XB_QW_BINARY:
        for (int64_t j = 0; j < n; j++) wq[j] = w[j] >= 0 ? mean_abs : -mean_abs;
        break;
    case XB_QW_TERNARY: case XB_QW_TERNARY_SYM: {
        double D = s->delta * mean_abs, ssel = 0, nsel = 0;
        for (int64_t j = 0; j < n; j++)
            if (fabs(w[j]) > D) { ssel += fabs(w[j]); nsel++; }
        double sc = s->kind == XB_QW_TERNARY ? 1.0 : nsel > 0 ? ssel / nsel : 0.0;
        for (int64_t j = 0; j < n; j++) wq[j] = fabs(w[j]) > D ? (w[j] > 0 ? sc : -sc) : 0.0;
        break;
    }
    case XB_QW_TERNARY_ASYM: {
        double Dp = np > 0 ? s->delta * sp / np : 0, Dm = nn > 0 ? s->delta * sn / nn : 0;
        double sb = 0, nb = 0, sa = 0, na = 0;
        for (int64_t j = 0; j < n; j++) {
            if (w[j] > Dp) { sb += w[j]; nb++; }
            if (w[j] < -Dm) { sa -= w[j]; na++; }
        }
        double b = nb > 0 ? sb / nb : 0, a = na > 0 ? sa / na : 0;
        for (int64_t j = 0; j < n; j++) wq[j] = w[j] > Dp ? b : w[j] < -Dm ? -a : 0.0;
        break;
    }
    case XB_QW_DOREFA: {
        double Q = (double)((1 << s->bits) - 1);
        for (int64_t j = 0; j < n; j++) {
            double t = tanh(w[j]) / (2 * M) + 0.5;
            wq[j] = (2 * rint(t * Q) - Q) / Q;
        }
        break;
    }
    default: break;
    }
    if (!ste) return;
    for (int64_t j = 0; j < n; j++) {
        double th = tanh(w[j]);
        switch (s->kind) {
        case XB_QW_NONE: case XB_QW_UNIFORM: ste[j] = 1; break;
        case XB_QW_DOREFA: ste[j] = (1 - th * th) / M; break;
        default: ste[j] = fabs(w[j]) <= 1 ? 1 : 0; break;
        }
    }
}

void xb_qw_apply_ref(const xb_qw_spec *s, int rows, int k, const float *w, double *wq, double *ste) {
    XB_ASSERT(s && rows >= 0 && k >= 0 && xb_qw_check(s, "xb_qw_apply_ref") == XB_OK);
    const int groups = s->per_channel ? rows : 1;
    const int64_t gn = s->per_channel ? k : (int64_t)rows * k;
    for (int g = 0; g < groups; g++)
        ref_group(s, gn, w + g * gn, wq + g * gn, ste ? ste + g * gn : NULL);
}
