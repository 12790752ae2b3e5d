/* periph.c -- peripheral quantizers (DAC, ADC, conductance levels) with their straight-through
 * gradients, the percentile used to calibrate ranges, and the fast Gaussian draws of read noise.
 * Every vector quantizer has a scalar *_ref twin written straight from the formula; tests hold the
 * two together.  Rounding is to the nearest integer, ties to even (IEEE rint), which vectorizes. */
#include "xb_xbar.h"
#include "core/quant.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

double xb_quant_uniform_ref(double x, double step, double lo_code, double hi_code, int *clipped) {
    XB_ASSERT(step > 0 && lo_code <= hi_code);
    double c = rint(x / step);
    if (c < lo_code || c > hi_code) {
        if (clipped) (*clipped)++;
        c = c < lo_code ? lo_code : hi_code;
    }
    return c * step;
}

int64_t xb_quant_uniform(int64_t n, const float *x, float step, float lo_code, float hi_code, float *y) {
    XB_ASSERT(step > 0 && lo_code <= hi_code);
    int64_t clipped = 0;
#pragma omp parallel for reduction(+ : clipped) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float c = xq_round(x[i], step);
        clipped += (c < lo_code) | (c > hi_code);
        y[i] = xq_clamp(c, lo_code, hi_code) * step;
    }
    return clipped;
}

void xb_quant_ste_grad(int64_t n, const float *x, float step, float lo_code, float hi_code, const float *dy,
                       float *dx) {
    const float lo = lo_code * step, hi = hi_code * step;
    for (int64_t i = 0; i < n; i++)
        if (x[i] >= lo && x[i] <= hi) dx[i] += dy[i];
}

double xb_quant_dac_ref(double x, int bits, double full_scale, int *clipped) {
    XB_ASSERT(bits >= 1 && bits <= 30 && full_scale > 0);
    double top = (double)((1L << bits) - 1);
    return xb_quant_uniform_ref(x, full_scale / top, 0, top, clipped);
}

double xb_quant_adc_ref(double i, int bits, double full_scale, int is_signed, int *clipped) {
    XB_ASSERT(bits >= 1 && bits <= 30 && full_scale > 0 && (!is_signed || bits >= 2));
    double top = is_signed ? (double)((1L << (bits - 1)) - 1) : (double)((1L << bits) - 1);
    return xb_quant_uniform_ref(i, full_scale / top, is_signed ? -top : 0, top, clipped);
}

double xb_quant_levels_ref(double u, int levels) {
    XB_ASSERT(levels >= 2);
    double t = levels - 1;
    double c = rint(u * t);
    if (c < 0) c = 0;
    if (c > t) c = t;
    return c / t;
}

/* ---- percentile: quickselect on |v| --------------------------------------------------------------- */

static void swapf_(float *a, float *b) { float t = *a; *a = *b; *b = t; }

/* k-th smallest (0-based) of v[0..n-1]; reorders v.  Median-of-three Hoare partition. */
static float select_(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo]) swapf_(&v[mid], &v[lo]);
        if (v[hi] < v[lo]) swapf_(&v[hi], &v[lo]);
        if (v[hi] < v[mid]) swapf_(&v[hi], &v[mid]);
        float piv = v[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < piv) i++;
            while (v[j] > piv) j--;
            if (i <= j) { swapf_(&v[i], &v[j]); i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

double xb_percentile_abs(float *v, int64_t n, double p) {
    XB_ASSERT(p > 0 && p <= 100);
    if (n <= 0) return 0;
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    if (p >= 100) {
        float m = 0;
        for (int64_t i = 0; i < n; i++) if (v[i] > m) m = v[i];
        return m;
    }
    int64_t k = (int64_t)ceil(p / 100.0 * (double)n) - 1;
    if (k < 0) k = 0;
    if (k > n - 1) k = n - 1;
    return select_(v, n, k);
}

/* ---- standard normals: the ziggurat of Marsaglia & Tsang (2000), 128 layers ----------------------
 * One xoshiro draw per normal: 32 bits for the value and 7 other bits for the layer (the original
 * RNOR took both from one 32-bit word, which correlates them).  Exact in distribution. */

static uint32_t zig_k_[128], zig_k24_[128];
static float zig_w_[128], zig_f_[128], zig_w24_[128];
static pthread_once_t zig_once_ = PTHREAD_ONCE_INIT;

static void zig_init_(void) {
    const double m1 = 2147483648.0, vn = 9.91256303526217e-3;
    double dn = 3.442619855899, tn = dn;
    double q = vn / exp(-0.5 * dn * dn);
    zig_k_[0] = (uint32_t)((dn / q) * m1);
    zig_k_[1] = 0;
    zig_w_[0] = (float)(q / m1);
    zig_w_[127] = (float)(dn / m1);
    zig_f_[0] = 1.0f;
    zig_f_[127] = (float)exp(-0.5 * dn * dn);
    for (int i = 126; i >= 1; i--) {
        dn = sqrt(-2.0 * log(vn / dn + exp(-0.5 * dn * dn)));
        zig_k_[i + 1] = (uint32_t)((dn / tn) * m1);
        tn = dn;
        zig_f_[i] = (float)exp(-0.5 * dn * dn);
        zig_w_[i] = (float)(dn / m1);
    }
    /* the same ziggurat for 25-bit signed values (|hz| < 2^24): xb_normal8's two normals per 64-bit draw */
    for (int i = 0; i < 128; i++) {
        zig_k24_[i] = zig_k_[i] >> 7;
        zig_w24_[i] = zig_w_[i] * 128.0f;
    }
}

/* The ziggurat's slow path for a draw (hz, iz) that missed its layer's rectangle: the base strip's tail,
 * or the wedge test, else a new draw -- 32-bit (hz the high word, iz the low 7 bits) or, for the 8-lane
 * generator's 25-bit draws (w24), hz the high 25 bits of a 32-bit word and iz its low 7 -- with the
 * matching tables. */
static float zig_slow_(xb_rng *r, int32_t hz, int iz, int w24) {
    const double rr = 3.442620;
    const float *wt = w24 ? zig_w24_ : zig_w_;
    const uint32_t *kt = w24 ? zig_k24_ : zig_k_;
    for (;;) {
        double x = hz * (double)wt[iz];
        if (iz == 0) {
            double y;
            do {
                x = -log(1.0 - xb_rng_uniform(r)) / rr;
                y = -log(1.0 - xb_rng_uniform(r));
            } while (y + y < x * x);
            return (float)(hz > 0 ? rr + x : -rr - x);
        }
        if (zig_f_[iz] + xb_rng_uniform(r) * (zig_f_[iz - 1] - zig_f_[iz]) < exp(-0.5 * x * x)) return (float)x;
        uint64_t u = xb_rng_u64(r);
        if (w24) {
            uint32_t w = (uint32_t)(u >> 32);
            hz = (int32_t)w >> 7;
            iz = (int)(w & 127);
        } else {
            hz = (int32_t)(uint32_t)(u >> 32);
            iz = (int)(u & 127);
        }
        uint32_t a = hz < 0 ? (uint32_t)0 - (uint32_t)hz : (uint32_t)hz;
        if (a < kt[iz]) return hz * wt[iz];
    }
}
static float zig_tail_(xb_rng *r, int32_t hz, int iz) { return zig_slow_(r, hz, iz, 0); }

static inline uint64_t rotl_(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void xb_normal_fill(xb_rng *r, int64_t n, float *z) {
    pthread_once(&zig_once_, zig_init_);
    /* xoshiro256** inline on a local copy of the state (the same sequence as xb_rng_u64) */
    uint64_t s0 = r->s[0], s1 = r->s[1], s2 = r->s[2], s3 = r->s[3];
    for (int64_t i = 0; i < n; i++) {
        uint64_t u = rotl_(s1 * 5, 7) * 9, t = s1 << 17;
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl_(s3, 45);
        int32_t hz = (int32_t)(uint32_t)(u >> 32);
        int iz = (int)(u & 127);
        uint32_t a = hz < 0 ? (uint32_t)0 - (uint32_t)hz : (uint32_t)hz;
        if (a < zig_k_[iz]) {
            z[i] = hz * zig_w_[iz];
        } else {
            r->s[0] = s0; r->s[1] = s1; r->s[2] = s2; r->s[3] = s3;
            z[i] = zig_tail_(r, hz, iz);
            s0 = r->s[0]; s1 = r->s[1]; s2 = r->s[2]; s3 = r->s[3];
        }
    }
    r->s[0] = s0; r->s[1] = s1; r->s[2] = s2; r->s[3] = s3;
}


/* ---- standard normals, 8 xoshiro256** lanes, two per 64-bit draw (xb_normal8) ------------------------
 * The same 128-layer ziggurat as xb_normal_fill on 32-bit halves of the lanes' outputs: 7 bits choose
 * the layer, the other 25 are the signed value (hz = w >> 7, |hz| <= 2^24, so z = hz w24[layer] keeps the
 * 24 bits a float holds).  The fast path (98.8 % of the draws) is a table look-up and a compare, written
 * as plain loops over blocks of 16 that the compiler vectorizes; the rest go through the exact slow path
 * (wedge and tail tests, redraws) on the scalar stream `slow`.  Exact in distribution, like the scalar
 * generator; a different sequence. */

void xb_normal8_init(xb_normal8 *g, xb_rng *r) {
    pthread_once(&zig_once_, zig_init_);
    for (int l = 0; l < 8; l++) {
        xb_rng f;
        xb_rng_fork(r, (uint64_t)l, &f);
        for (int q = 0; q < 4; q++) g->s[q][l] = f.s[q];
    }
    xb_rng_fork(r, 8, &g->slow);
    (void)xb_rng_u64(r); /* the next init from r starts elsewhere */
}

/* slow path for a 25-bit draw (hz, iz) that missed the layer's rectangle */
static float zig24_slow_(xb_rng *r, int32_t hz, int iz) { return zig_slow_(r, hz, iz, 1); }

#if defined(__AVX512F__) && defined(__AVX512DQ__) && !defined(XB_NOISE_NO_SIMD)
#include <immintrin.h>
/* 16 normals into z from one step of the 8 lanes; returns a mask of the entries left for the slow path
 * (AVX-512: the lanes' states in registers, the layer tables gathered) */
static inline uint32_t normal16_(xb_normal8 *g, float *z, int32_t *hzo, int32_t *izo) {
    __m512i s0 = _mm512_loadu_si512(g->s[0]), s1 = _mm512_loadu_si512(g->s[1]);
    __m512i s2 = _mm512_loadu_si512(g->s[2]), s3 = _mm512_loadu_si512(g->s[3]);
    __m512i u = _mm512_add_epi64(s1, _mm512_slli_epi64(s1, 2)); /* s1 * 5 */
    u = _mm512_rol_epi64(u, 7);
    u = _mm512_add_epi64(u, _mm512_slli_epi64(u, 3));           /* * 9 */
    const __m512i t = _mm512_slli_epi64(s1, 17);
    s2 = _mm512_xor_si512(s2, s0); s3 = _mm512_xor_si512(s3, s1); s1 = _mm512_xor_si512(s1, s2);
    s0 = _mm512_xor_si512(s0, s3); s2 = _mm512_xor_si512(s2, t); s3 = _mm512_rol_epi64(s3, 45);
    _mm512_storeu_si512(g->s[0], s0); _mm512_storeu_si512(g->s[1], s1);
    _mm512_storeu_si512(g->s[2], s2); _mm512_storeu_si512(g->s[3], s3);
    const __m512i iz = _mm512_and_si512(u, _mm512_set1_epi32(127)), hz = _mm512_srai_epi32(u, 7);
    const __m512i kk = _mm512_i32gather_epi32(iz, (const void *)zig_k24_, 4);
    const __m512 w = _mm512_i32gather_ps(iz, (const void *)zig_w24_, 4);
    _mm512_storeu_ps(z, _mm512_mul_ps(_mm512_cvtepi32_ps(hz), w));
    _mm512_storeu_si512(hzo, hz);
    _mm512_storeu_si512(izo, iz);
    return (uint32_t)_mm512_cmpge_epu32_mask(_mm512_abs_epi32(hz), kk);
}
#else
/* 16 normals into z from one step of the 8 lanes; returns a mask of the entries left for the slow path */
static inline uint32_t normal16_(xb_normal8 *g, float *z, int32_t *hzo, int32_t *izo) {
    uint64_t u[8];
    for (int l = 0; l < 8; l++) {
        uint64_t s0 = g->s[0][l], s1 = g->s[1][l], s2 = g->s[2][l], s3 = g->s[3][l];
        u[l] = rotl_(s1 * 5, 7) * 9;
        uint64_t t = s1 << 17;
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl_(s3, 45);
        g->s[0][l] = s0; g->s[1][l] = s1; g->s[2][l] = s2; g->s[3][l] = s3;
    }
    uint32_t w[16];
    memcpy(w, u, sizeof w);
    uint32_t miss = 0;
    for (int i = 0; i < 16; i++) {
        int32_t hz = (int32_t)w[i] >> 7;
        int iz = (int)(w[i] & 127);
        uint32_t a = (uint32_t)(hz < 0 ? -hz : hz);
        z[i] = (float)hz * zig_w24_[iz];
        hzo[i] = hz;
        izo[i] = iz;
        miss |= (uint32_t)(a >= zig_k24_[iz]) << i;
    }
    return miss;
}
#endif

void xb_normal8_fill(xb_normal8 *g, int64_t n, float *z) {
    float t[16];
    int32_t hz[16], iz[16];
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        const int b = n - i0 < 16 ? (int)(n - i0) : 16;
        float *d = b == 16 ? z + i0 : t;
        uint32_t miss = normal16_(g, d, hz, iz);
        while (miss) {
            int i = __builtin_ctz(miss);
            miss &= miss - 1;
            d[i] = zig24_slow_(&g->slow, hz[i], iz[i]);
        }
        if (b < 16) memcpy(z + i0, t, (size_t)b * sizeof(float));
    }
}

void xb_normal8_add(xb_normal8 *g, int64_t n, const float *var, float *sig) {
    float z[16];
    int32_t hz[16], iz[16];
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        const int b = n - i0 < 16 ? (int)(n - i0) : 16;
        uint32_t miss = normal16_(g, z, hz, iz);
        while (miss) {
            int i = __builtin_ctz(miss);
            miss &= miss - 1;
            z[i] = zig24_slow_(&g->slow, hz[i], iz[i]);
        }
#if defined(__AVX512F__) && defined(__AVX512DQ__) && !defined(XB_NOISE_NO_SIMD)
        const __mmask16 mk = (__mmask16)(b == 16 ? 0xFFFF : (1u << b) - 1);
        __m512 sd = _mm512_sqrt_ps(_mm512_max_ps(_mm512_maskz_loadu_ps(mk, var + i0), _mm512_setzero_ps()));
        _mm512_mask_storeu_ps(sig + i0, mk, _mm512_fmadd_ps(sd, _mm512_loadu_ps(z), _mm512_maskz_loadu_ps(mk, sig + i0)));
#else
        for (int i = 0; i < b; i++) {
            float v = var[i0 + i];
            sig[i0 + i] += sqrtf(v > 0 ? v : 0) * z[i];
        }
#endif
    }
}
