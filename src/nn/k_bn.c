/*
 * k_bn.c -- batch normalisation (PyTorch nn.BatchNorm1d/2d, affine, track_running_stats) over
 * x (c, m): every channel is one contiguous row of m = n*h*w values in CNHW layout.
 *
 * Training forward: mean and biased variance of each row in ONE pass (sum and sum of squares in
 * double, eight independent accumulators so the compiler can vectorise without reassociating), then
 * y = x*scale + shift with scale = gamma/sqrt(var+eps), shift = beta - mean*scale.  Running stats
 * follow PyTorch: r = (1-momentum) r + momentum * stat, with the unbiased variance var*m/(m-1).
 * Eval forward: the same affine map built from the running stats.
 * Backward (of training mode), with xhat = (x-mean)*invstd:
 *     dbeta = sum dy,  dgamma = sum dy*xhat,
 *     dx = gamma*invstd * (dy - dbeta/m - xhat*dgamma/m)
 * in two passes (sums in double, then dx += A*dy + B*x + C per channel).
 * The _relu variants are batchnorm followed by ReLU in one pass each way (the ReLU's output y
 * replaces the batchnorm's; backward takes the ReLU's y and dy): no intermediate array.
 * Channels run in parallel; each channel's arithmetic is fixed, so results are thread-count
 * independent.  gamma/beta may be NULL (affine=False: 1 and 0).
 */
#include "xbar.h"

#include <math.h>

#define LANES 8

#if defined(__AVX512F__) && !defined(XB_BN_NO_SIMD)
#include <immintrin.h>
#define XB_BN_SIMD 1
/* The same sums with explicit vectors (GCC does not vectorise the lane loops below): 16 floats per
 * step widened to two 8-lane double accumulators. */
static void row_sums(int64_t m, const float *x, double *sum, double *sumsq) {
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    int64_t i = 0;
    for (; i + 16 <= m; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        s0 = _mm512_add_pd(s0, lo);
        s1 = _mm512_add_pd(s1, hi);
        q0 = _mm512_fmadd_pd(lo, lo, q0);
        q1 = _mm512_fmadd_pd(hi, hi, q1);
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)), q = _mm512_reduce_add_pd(_mm512_add_pd(q0, q1));
    for (; i < m; i++) {
        s += x[i];
        q += (double)x[i] * x[i];
    }
    *sum = s;
    *sumsq = q;
}

/* sum g and sum g*x with g = dy, or g = (yr > 0 ? dy : 0) (the gradient through a ReLU whose output
 * is yr) when yr is given */
static inline __attribute__((always_inline)) void row_dot_g(int64_t m, const float *dy, const float *yr,
                                                            const float *x, double *sdy, double *sdyx) {
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    const __m512 zero = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= m; i += 16) {
        __m512 g = _mm512_loadu_ps(dy + i), v = _mm512_loadu_ps(x + i);
        if (yr) g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_loadu_ps(yr + i), zero, _CMP_GT_OQ), g);
        __m512d glo = _mm512_cvtps_pd(_mm512_castps512_ps256(g));
        __m512d ghi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(g), 1)));
        __m512d vlo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d vhi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        s0 = _mm512_add_pd(s0, glo);
        s1 = _mm512_add_pd(s1, ghi);
        q0 = _mm512_fmadd_pd(glo, vlo, q0);
        q1 = _mm512_fmadd_pd(ghi, vhi, q1);
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)), q = _mm512_reduce_add_pd(_mm512_add_pd(q0, q1));
    for (; i < m; i++) {
        float g = yr && !(yr[i] > 0.0f) ? 0.0f : dy[i];
        s += g;
        q += (double)g * x[i];
    }
    *sdy = s;
    *sdyx = q;
}
#elif defined(__AVX2__) && defined(__FMA__) && !defined(XB_BN_NO_SIMD)
#include <immintrin.h>
#define XB_BN_SIMD 1
/* AVX2: 8 floats per step widened to two 4-lane double accumulators. */
static inline double hsum4d(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

static void row_sums(int64_t m, const float *x, double *sum, double *sumsq) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        s0 = _mm256_add_pd(s0, lo);
        s1 = _mm256_add_pd(s1, hi);
        q0 = _mm256_fmadd_pd(lo, lo, q0);
        q1 = _mm256_fmadd_pd(hi, hi, q1);
    }
    double s = hsum4d(_mm256_add_pd(s0, s1)), q = hsum4d(_mm256_add_pd(q0, q1));
    for (; i < m; i++) {
        s += x[i];
        q += (double)x[i] * x[i];
    }
    *sum = s;
    *sumsq = q;
}

/* sum g and sum g*x with g = dy, or g = (yr > 0 ? dy : 0) when yr is given */
static inline __attribute__((always_inline)) void row_dot_g(int64_t m, const float *dy, const float *yr,
                                                            const float *x, double *sdy, double *sdyx) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) {
        __m256 g = _mm256_loadu_ps(dy + i), v = _mm256_loadu_ps(x + i);
        if (yr) g = _mm256_and_ps(_mm256_cmp_ps(_mm256_loadu_ps(yr + i), zero, _CMP_GT_OQ), g);
        __m256d glo = _mm256_cvtps_pd(_mm256_castps256_ps128(g)), ghi = _mm256_cvtps_pd(_mm256_extractf128_ps(g, 1));
        __m256d vlo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), vhi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        s0 = _mm256_add_pd(s0, glo);
        s1 = _mm256_add_pd(s1, ghi);
        q0 = _mm256_fmadd_pd(glo, vlo, q0);
        q1 = _mm256_fmadd_pd(ghi, vhi, q1);
    }
    double s = hsum4d(_mm256_add_pd(s0, s1)), q = hsum4d(_mm256_add_pd(q0, q1));
    for (; i < m; i++) {
        float g = yr && !(yr[i] > 0.0f) ? 0.0f : dy[i];
        s += g;
        q += (double)g * x[i];
    }
    *sdy = s;
    *sdyx = q;
}
#else
static void row_sums(int64_t m, const float *x, double *sum, double *sumsq) {
    double s[LANES] = {0}, q[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= m; i += LANES)
        for (int j = 0; j < LANES; j++) {
            double v = x[i + j];
            s[j] += v;
            q[j] += v * v;
        }
    for (; i < m; i++) {
        double v = x[i];
        s[0] += v;
        q[0] += v * v;
    }
    *sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    *sumsq = ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
}

/* sum g and sum g*x with g = dy, or g = (yr > 0 ? dy : 0) when yr is given */
static inline void row_dot_g(int64_t m, const float *dy, const float *yr, const float *x, double *sdy,
                             double *sdyx) {
    double s[LANES] = {0}, q[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= m; i += LANES)
        for (int j = 0; j < LANES; j++) {
            double g = yr && !(yr[i + j] > 0.0f) ? 0.0 : dy[i + j];
            s[j] += g;
            q[j] += g * (double)x[i + j];
        }
    for (; i < m; i++) {
        double g = yr && !(yr[i] > 0.0f) ? 0.0 : dy[i];
        s[0] += g;
        q[0] += g * (double)x[i];
    }
    *sdy = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    *sdyx = ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
}
#endif

static void bn_forward(int c, int64_t m, const float *x, const float *gamma, const float *beta,
                       float *running_mean, float *running_var, float momentum, float eps, int training,
                       float *y, float *save_mean, float *save_invstd, int relu) {
    XB_ASSERT(m >= 1);
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *xc = x + (int64_t)ch * m;
        float *yc = y + (int64_t)ch * m;
        double mean, var;
        if (training) {
            double s, q;
            row_sums(m, xc, &s, &q);
            mean = s / (double)m;
            var = q / (double)m - mean * mean;
            if (var < 0) var = 0;
            if (running_mean) running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mean);
            if (running_var) {
                double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
                running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * unbiased);
            }
        } else {
            mean = running_mean[ch];
            var = running_var[ch];
        }
        double invstd = 1.0 / sqrt(var + (double)eps);
        if (save_mean) save_mean[ch] = (float)mean;
        if (save_invstd) save_invstd[ch] = (float)invstd;
        double g = gamma ? gamma[ch] : 1.0, bt = beta ? beta[ch] : 0.0;
        float scale = (float)(g * invstd), shift = (float)(bt - mean * g * invstd);
        if (relu)
            for (int64_t i = 0; i < m; i++) {
                float v = xc[i] * scale + shift;
                yc[i] = v < 0.0f ? 0.0f : v; /* as xb_relu_forward */
            }
        else
            for (int64_t i = 0; i < m; i++) yc[i] = xc[i] * scale + shift;
    }
}

void xb_batchnorm_forward(int c, int64_t m, const float *x, const float *gamma, const float *beta,
                          float *running_mean, float *running_var, float momentum, float eps,
                          int training, float *y, float *save_mean, float *save_invstd) {
    bn_forward(c, m, x, gamma, beta, running_mean, running_var, momentum, eps, training, y, save_mean,
               save_invstd, 0);
}

void xb_batchnorm_relu_forward(int c, int64_t m, const float *x, const float *gamma, const float *beta,
                               float *running_mean, float *running_var, float momentum, float eps,
                               int training, float *y, float *save_mean, float *save_invstd) {
    bn_forward(c, m, x, gamma, beta, running_mean, running_var, momentum, eps, training, y, save_mean,
               save_invstd, 1);
}

/* yr: NULL, or the output of a ReLU applied to the batchnorm's output, whose gradient dy is */
void xb_batchnorm_backward_ex(int c, int64_t m, const float *x, const float *gamma, const float *save_mean,
                              const float *save_invstd, const float *yr, const float *dy, float *dx, int dx_acc,
                              float *dgamma, float *dbeta) {
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *xc = x + (int64_t)ch * m, *gc = dy + (int64_t)ch * m, *rc = yr ? yr + (int64_t)ch * m : NULL;
        double mean = save_mean[ch], invstd = save_invstd[ch], sdy, sdyx;
        if (rc) row_dot_g(m, gc, rc, xc, &sdy, &sdyx);
        else row_dot_g(m, gc, NULL, xc, &sdy, &sdyx);
        double sdxhat = (sdyx - mean * sdy) * invstd; /* sum dy * xhat */
        if (dbeta) dbeta[ch] += (float)sdy;
        if (dgamma) dgamma[ch] += (float)sdxhat;
        if (dx) {
            double g = gamma ? gamma[ch] : 1.0, a = g * invstd;
            /* dx = a*dy - a*invstd*sdxhat/m * (x - mean) - a*sdy/m */
            float A = (float)a, B = (float)(-a * invstd * sdxhat / (double)m);
            float C = (float)(-a * sdy / (double)m), M = (float)mean;
            float *dxc = dx + (int64_t)ch * m;
            if (rc && dx_acc)
                for (int64_t i = 0; i < m; i++) dxc[i] += A * (rc[i] > 0.0f ? gc[i] : 0.0f) + B * (xc[i] - M) + C;
            else if (rc)
                for (int64_t i = 0; i < m; i++) dxc[i] = A * (rc[i] > 0.0f ? gc[i] : 0.0f) + B * (xc[i] - M) + C;
            else if (dx_acc)
                for (int64_t i = 0; i < m; i++) dxc[i] += A * gc[i] + B * (xc[i] - M) + C;
            else
                for (int64_t i = 0; i < m; i++) dxc[i] = A * gc[i] + B * (xc[i] - M) + C;
        }
    }
}

void xb_batchnorm_backward(int c, int64_t m, const float *x, const float *gamma,
                           const float *save_mean, const float *save_invstd, const float *dy,
                           float *dx, float *dgamma, float *dbeta) {
    xb_batchnorm_backward_ex(c, m, x, gamma, save_mean, save_invstd, NULL, dy, dx, 1, dgamma, dbeta);
}

void xb_batchnorm_relu_backward(int c, int64_t m, const float *x, const float *gamma,
                                const float *save_mean, const float *save_invstd, const float *y,
                                const float *dy, float *dx, float *dgamma, float *dbeta) {
    xb_batchnorm_backward_ex(c, m, x, gamma, save_mean, save_invstd, y, dy, dx, 1, dgamma, dbeta);
}

void xb_batchnorm_eval_backward(int c, int64_t m, const float *x, const float *gamma, const float *rm,
                                const float *rv, float eps, const float *y_relu, const float *dy, float *dx,
                                int dx_acc, float *dgamma, float *dbeta) {
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const double inv = 1.0 / sqrt((double)rv[ch] + (double)eps);
        const float sc = (float)(gamma[ch] * inv), mu = rm[ch];
        const float *xr = x ? x + (int64_t)ch * m : NULL, *gr = dy + (int64_t)ch * m;
        const float *yr = y_relu ? y_relu + (int64_t)ch * m : NULL;
        float *dr = dx ? dx + (int64_t)ch * m : NULL;
        double sg = 0, sb = 0;
        for (int64_t i = 0; i < m; i++) {
            float g = yr && !(yr[i] > 0) ? 0.0f : gr[i];
            if (dr) dr[i] = dx_acc ? dr[i] + g * sc : g * sc;
            sb += g;
            if (dgamma) sg += (double)g * ((double)xr[i] - mu);
        }
        if (dgamma) dgamma[ch] += (float)(sg * inv);
        if (dbeta) dbeta[ch] += (float)sb;
    }
}
