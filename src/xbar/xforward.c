/* xforward.c -- the forward product of one mapped layer through its programmed tiles (fast path: one
 * GEMM with the effective weights, DAC and read noise; tiled path: per row tile, slice and input plane,
 * ADC, shift-add).  xnet.c builds and programs the network, xcal.c calibrates it, xop.c is the
 * mapped-matmul operator the model calls. */
#include "xnet_internal.h"
#include "core/quant.h"

/* ------------------------------------------------------------------------------------------------ */
/* Forward                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

/* in-place ADC with clip count: v becomes the integer code clamp(rint(v / step), lo, hi); the step is
 * applied once, after the shift-add.  A NaN signal reads 0 (its output is made NaN from the input; see
 * tiled_chunk_).  Serial: callers parallelise over chunks. */
static int64_t quant_(int64_t n, float *v, float step, float lo, float hi) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) {
        float q = xq_round(v[i], step);
        c += (q < lo) | (q > hi);
        q = xq_clamp(q, lo, hi);
        v[i] = q == q ? q : 0.0f;
    }
    return c;
}

/* per column c of the chunk: max_i |x[i, c0 + c]| over the k rows (1 for an all-zero column); returns the
 * largest */
static float col_absmax_(int k, int ncols, const float *x, int64_t c0, int nc, float *amax) {
    for (int c = 0; c < nc; c++) amax[c] = 0;
    for (int i = 0; i < k; i++) {
        const float *xr = x + (size_t)i * ncols + c0;
        for (int c = 0; c < nc; c++) {
            float a = fabsf(xr[c]);
            amax[c] = a > amax[c] ? a : amax[c];
        }
    }
    float mx = 0;
    for (int c = 0; c < nc; c++) {
        mx = amax[c] > mx ? amax[c] : mx;
        if (!(amax[c] > 0)) amax[c] = 1.0f;
    }
    return mx;
}

/* sig[i] += sqrt(max(var[i], 0)) * N(0,1) (the normals of the chunk's read-noise generator) */
static void noise_add_(int64_t n, const float *var, float *sig, float *z, int zn, xb_normal8 *ng) {
    (void)z; (void)zn;
    xb_normal8_add(ng, n, var, sig);
}

#if defined(__AVX512F__) && !defined(XB_NOISE_NO_SIMD)
#include <immintrin.h>
#define XL_PANEL 256
/* The fast path's noisy product in one pass over the inputs: per block of 32 columns and 4 outputs,
 * y = W x and var = V x^2 accumulate side by side (x^2 formed in registers; no packing of x, no second
 * GEMM, no x^2 buffer), then y += sqrt(max(var, 0)) z with z from the chunk's generator.  pack: the
 * weights and variances interleaved per input row, 8 floats (4 outputs of W, then of V) per row and
 * group of 4 outputs (room for ceil(ro/8) * 16 * k floats), then a panel of XL_PANEL input columns (XL_PANEL * k floats). */
static void noisy_gemm_(int ro, int nc, int k, const float *W, const float *V, const float *B, int ldb, float *Y,
                        int ldy, float *pack, xb_normal8 *ng) {
    const int ng4 = (ro + 3) / 4;
    for (int q = 0; q < ng4; q++)
        for (int i = 0; i < k; i++) {
            float *pk = pack + ((size_t)q * k + i) * 8;
            for (int r = 0; r < 4; r++) {
                const int j = q * 4 + r;
                pk[r] = j < ro ? W[(size_t)j * k + i] : 0.0f;
                pk[4 + r] = j < ro ? V[(size_t)j * k + i] : 0.0f;
            }
        }
    float z[128], *panel = pack + (size_t)(ro + 7) / 8 * 16 * k;
    const __m512 zero = _mm512_setzero_ps();
    for (int p0 = 0; p0 < nc; p0 += XL_PANEL) {
        /* the inputs of XL_PANEL columns, contiguous (the chunk's rows are ncols apart: a stride the caches
         * and the prefetchers do not follow), then read from L2 once per group of 4 outputs */
        const int pw = nc - p0 < XL_PANEL ? nc - p0 : XL_PANEL;
        for (int i = 0; i < k; i++) {
            const float *src = B + (size_t)i * ldb + p0;
            float *dst = panel + (size_t)i * XL_PANEL;
            if (i + 2 < k) for (int c = 0; c < pw; c += 16) _mm_prefetch((const char *)(src + 2 * (size_t)ldb + c), _MM_HINT_T0);
            for (int c = 0; c < XL_PANEL; c += 16) {
                const int rem = pw - c;
                const __mmask16 m = (__mmask16)(rem >= 16 ? 0xFFFF : rem <= 0 ? 0 : (1u << rem) - 1);
                _mm512_storeu_ps(dst + c, _mm512_maskz_loadu_ps(m, src + c));
            }
        }
        for (int q = 0; q < ng4; q++)
            for (int c0 = p0; c0 < p0 + pw; c0 += 32) {
                /* 4 outputs x 32 columns: y and var side by side, 16 accumulators */
                __m512 ya0 = zero, ya1 = zero, ya2 = zero, ya3 = zero, yb0 = zero, yb1 = zero, yb2 = zero, yb3 = zero;
                __m512 va0 = zero, va1 = zero, va2 = zero, va3 = zero, vb0 = zero, vb1 = zero, vb2 = zero, vb3 = zero;
                const float *pk = pack + (size_t)q * k * 8, *bp = panel + (c0 - p0);
                for (int i = 0; i < k; i++, pk += 8, bp += XL_PANEL) {
                    const __m512 a = _mm512_loadu_ps(bp), b = _mm512_loadu_ps(bp + 16);
                    const __m512 a2 = _mm512_mul_ps(a, a), b2 = _mm512_mul_ps(b, b);
                    __m512 w = _mm512_set1_ps(pk[0]);
                    ya0 = _mm512_fmadd_ps(w, a, ya0); yb0 = _mm512_fmadd_ps(w, b, yb0);
                    w = _mm512_set1_ps(pk[1]);
                    ya1 = _mm512_fmadd_ps(w, a, ya1); yb1 = _mm512_fmadd_ps(w, b, yb1);
                    w = _mm512_set1_ps(pk[2]);
                    ya2 = _mm512_fmadd_ps(w, a, ya2); yb2 = _mm512_fmadd_ps(w, b, yb2);
                    w = _mm512_set1_ps(pk[3]);
                    ya3 = _mm512_fmadd_ps(w, a, ya3); yb3 = _mm512_fmadd_ps(w, b, yb3);
                    w = _mm512_set1_ps(pk[4]);
                    va0 = _mm512_fmadd_ps(w, a2, va0); vb0 = _mm512_fmadd_ps(w, b2, vb0);
                    w = _mm512_set1_ps(pk[5]);
                    va1 = _mm512_fmadd_ps(w, a2, va1); vb1 = _mm512_fmadd_ps(w, b2, vb1);
                    w = _mm512_set1_ps(pk[6]);
                    va2 = _mm512_fmadd_ps(w, a2, va2); vb2 = _mm512_fmadd_ps(w, b2, vb2);
                    w = _mm512_set1_ps(pk[7]);
                    va3 = _mm512_fmadd_ps(w, a2, va3); vb3 = _mm512_fmadd_ps(w, b2, vb3);
                }
                const int nr = ro - q * 4 < 4 ? ro - q * 4 : 4;
                xb_normal8_fill(ng, (int64_t)nr * 32, z);
                const __m512 ys[8] = {ya0, yb0, ya1, yb1, ya2, yb2, ya3, yb3};
                const __m512 vs[8] = {va0, vb0, va1, vb1, va2, vb2, va3, vb3};
                for (int h = 0; h < 2; h++) {
                    const int c = c0 + 16 * h, rem = nc - c;
                    if (rem <= 0) break;
                    const __mmask16 mk = (__mmask16)(rem >= 16 ? 0xFFFF : (1u << rem) - 1);
                    for (int r = 0; r < nr; r++) {
                        __m512 sd = _mm512_sqrt_ps(_mm512_max_ps(vs[2 * r + h], zero));
                        __m512 o = _mm512_fmadd_ps(sd, _mm512_loadu_ps(z + 32 * r + 16 * h), ys[2 * r + h]);
                        _mm512_mask_storeu_ps(Y + (size_t)(q * 4 + r) * ldy + c, mk, o);
                    }
                }
            }
    }
}
#define XL_NOISY_GEMM 1
#endif

/* fast path, chunk [c0, c0+nc): DAC on inputs, one GEMM, read noise */
static void fast_chunk_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, int64_t c0, int nc,
                        float *buf, xb_rng *rng, int64_t *dac_clip, float *xmax) {
    const xb_hw *hw = &xn->hw;
    const int k = l->k, ro = l->rows_out, ct = l->g.ct;
    float *xq = buf, *x2 = xq + (size_t)k * nc, *var = x2 + (size_t)k * nc, *varr = var + (size_t)ro * nc;
    float *z = varr + (size_t)ct * nc;
    const float *B = x + c0;
    int ldb = ncols;
    if (hw->dac_bits > 0 && xn->vec) {
        /* each input vector scaled by its own max |x| to the DAC's full scale: per-column steps, no clipping */
        const float top = (float)((1L << l->in_bits) - 1);
        float *st = buf + xl_tbuf_base_(xn, l);
        *xmax = col_absmax_(k, ncols, x, c0, nc, st);
        for (int c = 0; c < nc; c++) st[c] = xq_dac_step(st[c], top);
        for (int i = 0; i < k; i++) {
            const float *xr = x + (size_t)i * ncols + c0;
            float *qr = xq + (size_t)i * nc;
            for (int c = 0; c < nc; c++) {
                float q = xq_clamp(xq_round(fabsf(xr[c]), st[c]), 0, top);
                qr[c] = copysignf(q * st[c], xr[c]);
            }
        }
        B = xq;
        ldb = nc;
    } else if (hw->dac_bits > 0) {
        const float top = (float)((1L << l->in_bits) - 1), step = xq_dac_step((float)l->x_max, top);
        int64_t clip = 0;
        for (int i = 0; i < k; i++) {
            const float *xr = x + (size_t)i * ncols + c0;
            float *qr = xq + (size_t)i * nc;
            for (int c = 0; c < nc; c++) {
                float q = xq_round(fabsf(xr[c]), step);
                clip += q > top;
                q = xq_clamp(q, 0, top);
                qr[c] = copysignf(q * step, xr[c]);
            }
        }
        *dac_clip += clip;
        B = xq;
        ldb = nc;
    }
    if (!l->noise) {
        gemm_(ro, nc, k, l->weff, k, B, ldb, y + c0, ncols);
        return;
    }
    xb_normal8 ng;
    xb_normal8_init(&ng, rng);
#ifdef XL_NOISY_GEMM
    if (!l->vref) { /* the product and its read noise in one pass (the pack region follows the buffers) */
        noisy_gemm_(ro, nc, k, l->weff, l->vnoise, B, ldb, y + c0, ncols, buf + xl_tbuf_base_(xn, l) +
                    (xn->vec ? l->ch : 0), &ng);
        return;
    }
#endif
    gemm_(ro, nc, k, l->weff, k, B, ldb, y + c0, ncols);
    for (int i = 0; i < k; i++)
        for (int c = 0; c < nc; c++) {
            float v = B[(size_t)i * ldb + c];
            x2[(size_t)i * nc + c] = v * v;
        }
    gemm_(ro, nc, k, l->vnoise, k, x2, nc, var, nc);
    for (int j = 0; j < ro; j++) noise_add_(nc, var + (size_t)j * nc, y + (size_t)j * ncols + c0, z, nc, &ng);
    if (l->vref) { /* reference-column noise is shared by the outputs of a column tile */
        gemm_(ct, nc, k, l->vref, k, x2, nc, varr, nc);
        const int wc = l->g.wcols;
        for (int cc = 0; cc < ct; cc++) {
            float *vr = varr + (size_t)cc * nc;
            xb_normal_fill(rng, nc, z);
            for (int c = 0; c < nc; c++) vr[c] = sqrtf(vr[c] > 0 ? vr[c] : 0) * z[c];
            int jend = (cc + 1) * wc < ro ? (cc + 1) * wc : ro;
            for (int j = cc * wc; j < jend; j++) {
                float *yr = y + (size_t)j * ncols + c0;
                if (l->dcomp) { /* the output's drift compensation scales the shared noise it sees */
                    const float f = l->dcomp[j];
                    for (int c = 0; c < nc; c++) yr[c] -= f * vr[c];
                } else {
                    for (int c = 0; c < nc; c++) yr[c] -= vr[c];
                }
            }
        }
    }
}

/* ADC in place with per-column bookkeeping for bound management: clips per column into ccnt[c] and
 * hit[c] = 1 where a conversion saturated (|signal| beyond full scale; for an unsigned ADC only the top).
 * rows x (P planes of nc columns). */
static int64_t quant_cols_(int64_t rows, int P, int nc, float *v, float step, float lo, float hi, int *ccnt, int *hit) {
    int64_t tot = 0;
    for (int64_t q = 0; q < rows; q++)
        for (int p = 0; p < P; p++) {
            float *vr = v + ((size_t)q * P + p) * nc;
            const int neg = lo < 0;
            for (int c = 0; c < nc; c++) { /* branch-free, so that it vectorizes */
                float a = xq_round(vr[c], step);
                int lc = a < lo, hc = a > hi;
                ccnt[c] += lc | hc;
                tot += lc | hc;
                hit[c] |= hc | (lc & neg);
                a = xq_clamp(a, lo, hi);
                vr[c] = a == a ? a : 0.0f; /* the integer code, as quant_ */
            }
        }
    return tot;
}

typedef struct chunk_stats_ { int64_t adc_conv, adc_clip, dac_conv, dac_clip, reruns; float xmax; } chunk_stats_;

/* One read of row tile [i0, i0+m) in one input pass for nc columns: x points at (row i0, first column) with
 * row stride ldx; column c is divided by div[c] (NULL: by xm) before the DAC.  DAC into the planes Xp
 * (m x P*nc, plane p in columns p*nc ..), the signals sig (S*ro x P*nc) and, for column ADCs, sigN (S*nN x
 * P*nc) with read noise, then the ADCs; csum gets the column sums of the planes (column ADC with a digital
 * reference).  main: counts DAC and ADC conversions and clips (re-reads of bound management do not).  ccnt/hit (may
 * be NULL): per column clip counts and saturation flags.  cal != NULL: the signals are sampled before the
 * ADC and 1 is returned (no ADC). */
static int rt_read_(xb_xnet *xn, xlayer *l, const float *x, int ldx, int nc, int i0, int m, int pass, float xm,
                    const float *div, float *Xp, float *X2, float *sig, float *sigN, float *var, float *csum, float *z,
                    xb_rng *rng, xb_normal8 *ng, chunk_stats_ *cs, cal_ *cal, int main, int *ccnt, int *hit) {
    const xb_hw *hw = &xn->hw;
    const xb_map_geom *g = &l->g;
    const int k = l->k, ro = l->rows_out, S = g->slices, P = l->planes, PN = P * nc, nN = l->nN;
    const int SR = S * ro, SN = S * nN, wc = g->wcols;
    const int diffadc = hw->adc_signal == XB_ADC_DIFFERENCE;
    const int dac = hw->dac_bits > 0, d = hw->dac_bits;
    const float top = dac ? (float)((1L << l->in_bits) - 1) : 1.0f, dmax = dac ? (float)((1L << d) - 1) : 1.0f;
    const unsigned dmask = dac ? (1u << d) - 1 : 0;
    const float atop = diffadc ? (float)((1L << (hw->adc_bits - 1)) - 1) : (float)((1L << hw->adc_bits) - 1);
    const float astep = (float)(l->fs / atop), alo = diffadc ? -atop : 0.0f;
    /* DAC: input planes Xp (m x P*nc), plane p in columns p*nc .. p*nc+nc-1 */
    const int split = hw->signed_inputs == XB_SIGNED_SPLIT;
    const float inv_dmax = 1.0f / dmax;
    int64_t dclip = 0;
    for (int i = 0; i < m; i++) {
        const float *xr = x + (size_t)i * ldx;
        float *row = Xp + (size_t)i * PN;
        if (!dac) {
            /* the input in units of its range: of the layer (xm) or of each column (div) */
            if (div) for (int c = 0; c < nc; c++) row[c] = xr[c] / div[c];
            else for (int c = 0; c < nc; c++) row[c] = xr[c] / xm;
            for (int c = 0; c < nc; c++) {
                float v = row[c];
                row[c] = !split ? v : pass ? (v < 0 ? v : 0) * -1.0f : (v > 0 ? v : 0);
            }
            continue;
        }
        /* signed code (sign x magnitude) in csum as scratch, then one vector loop per plane; the DAC's
         * step is the range (the layer's xm or the column's div) over the top code, as the fast path's */
        for (int c = 0; c < nc; c++) {
            float v = xr[c];
            float a = split ? (pass ? (v < 0 ? -v : 0) : (v > 0 ? v : 0)) : fabsf(v);
            float q = xq_round(a, xq_dac_step(div ? div[c] : xm, top));
            dclip += q > top;
            q = xq_clamp(q, 0, top);
            csum[c] = (!split && v < 0) ? -q : q;
        }
        for (int p = 0; p < P; p++) {
            float *rp = row + (size_t)p * nc;
            const int sh = d * p;
            for (int c = 0; c < nc; c++) {
                float q = csum[c];
                unsigned code = (unsigned)fabsf(q);
                float dg = (float)((code >> sh) & dmask) * inv_dmax;
                rp[c] = q < 0 ? -dg : dg;
            }
        }
    }
    if (main) {
        cs->dac_clip += dclip;
        if (dac) cs->dac_conv += (int64_t)m * nc;
    }
    if (l->noise)
        for (int64_t i = 0; i < (int64_t)m * PN; i++) X2[i] = Xp[i] * Xp[i];
    if (!diffadc && l->ntype == NT_DIGITAL) {
        for (int c = 0; c < PN; c++) csum[c] = 0;
        for (int i = 0; i < m; i++)
            for (int c = 0; c < PN; c++) csum[c] += Xp[(size_t)i * PN + c];
    }
    /* every slice of every output in one GEMM */
    gemm_(SR, PN, m, l->D + i0, k, Xp, PN, sig, PN);
    if (l->noise) {
        gemm_(SR, PN, m, l->VP + i0, k, X2, PN, var, PN);
        noise_add_((int64_t)SR * PN, var, sig, z, PN, ng);
    }
    if (diffadc) {
        if (l->VN) { /* shared reference-column noise: one draw per (slice, column tile, column) */
            gemm_(SN, PN, m, l->VN + i0, k, X2, PN, var, PN);
            for (int q = 0; q < SN; q++) {
                float *vr = var + (size_t)q * PN;
                xb_normal_fill(rng, PN, z);
                for (int c = 0; c < PN; c++) vr[c] = sqrtf(vr[c] > 0 ? vr[c] : 0) * z[c];
                int t = q / nN, cc = q % nN, jend = (cc + 1) * wc < ro ? (cc + 1) * wc : ro;
                for (int j = cc * wc; j < jend; j++) {
                    float *sr = sig + ((size_t)t * ro + j) * PN;
                    for (int c = 0; c < PN; c++) sr[c] -= vr[c];
                }
            }
        }
        if (cal) { xl_cal_add(cal, sig, (int64_t)SR * PN); return 1; }
        const int64_t t = ccnt ? quant_cols_(SR, P, nc, sig, astep, alo, atop, ccnt, hit)
                               : quant_((int64_t)SR * PN, sig, astep, alo, atop);
        if (main) { cs->adc_conv += (int64_t)SR * PN; cs->adc_clip += t; }
    } else {
        if (nN) {
            gemm_(SN, PN, m, l->Nm + i0, k, Xp, PN, sigN, PN);
            if (l->noise) {
                gemm_(SN, PN, m, l->VN + i0, k, X2, PN, var, PN);
                noise_add_((int64_t)SN * PN, var, sigN, z, PN, ng);
            }
        }
        if (cal) {
            xl_cal_add(cal, sig, (int64_t)SR * PN);
            if (nN) xl_cal_add(cal, sigN, (int64_t)SN * PN);
            return 1;
        }
        int64_t t = ccnt ? quant_cols_(SR, P, nc, sig, astep, alo, atop, ccnt, hit)
                         : quant_((int64_t)SR * PN, sig, astep, alo, atop);
        if (nN) t += ccnt ? quant_cols_(SN, P, nc, sigN, astep, alo, atop, ccnt, hit)
                          : quant_((int64_t)SN * PN, sigN, astep, alo, atop);
        if (main) { cs->adc_conv += (int64_t)(SR + SN) * PN; cs->adc_clip += t; }
    }
    return 0;
}

/* Bound management (iterative): the columns whose ADC saturated in this read of row tile [i0, i0+m) are
 * read again with their input halved, up to max_steps times, and their signals (and column sums) replaced
 * by the new ADC results times 2^step unless the new read clipped more conversions (then the column keeps
 * its read and stops); the clip count keeps only the conversions that are used. */
static void bound_retry_(xb_xnet *xn, xlayer *l, const float *x, int ncols, int64_t c0, int nc, int i0, int m,
                         int pass, float xm, const float *colx, float *Xp, float *X2, float *sig, float *sigN,
                         float *var, float *csum, float *z, float *ex, xb_rng *rng, xb_normal8 *ng, chunk_stats_ *cs,
                         int *ccnt, int *hit) {
    const xb_map_geom *g = &l->g;
    const int ro = l->rows_out, S = g->slices, P = l->planes, PN = P * nc, nN = l->nN;
    const int N = nN > ro ? nN : ro, SR = S * ro, SN = S * nN, R = g->R, ch = l->ch;
    float *xg = ex, *sig2 = xg + (size_t)R * ch, *sigN2 = sig2 + (size_t)SR * P * ch;
    float *csum2 = sigN2 + (size_t)S * N * P * ch, *div = csum2 + (size_t)P * ch;
    int *idx = (int *)(void *)(div + ch), *cnt2 = idx + ch, *hit2 = cnt2 + ch;
    const int digref = xn->hw.adc_signal == XB_ADC_COLUMN && l->ntype == NT_DIGITAL; /* csum is read */
    int ncl = 0;
    for (int c = 0; c < nc; c++) if (hit[c]) idx[ncl++] = c;
    float scale = 1.0f;
    for (int step = 0; step < xn->hw.bound_management_max_steps && ncl > 0; step++) {
        scale *= 2.0f;
        for (int i = 0; i < m; i++) {
            const float *xr = x + (size_t)(i0 + i) * ncols + c0;
            float *gr = xg + (size_t)i * ncl;
            for (int cc = 0; cc < ncl; cc++) gr[cc] = xr[idx[cc]];
        }
        for (int cc = 0; cc < ncl; cc++) {
            div[cc] = (colx ? colx[idx[cc]] : xm) * scale;
            cnt2[cc] = hit2[cc] = 0;
        }
        rt_read_(xn, l, xg, ncl, ncl, i0, m, pass, xm, div, Xp, X2, sig2, sigN2, var, csum2, z, rng, ng, cs, NULL, 0,
                 cnt2, hit2);
        cs->reruns += ncl;
        const int PL = P * ncl;
        for (int cc = 0; cc < ncl; cc++) {
            const int c = idx[cc];
            if (cnt2[cc] > ccnt[c]) { /* worse (bit-serial planes: the halved code's lower digits grow) */
                hit2[cc] = 0;
                continue;
            }
            cs->adc_clip += cnt2[cc] - ccnt[c];
            ccnt[c] = cnt2[cc];
            for (int p = 0; p < P; p++) {
                for (int q = 0; q < SR; q++) sig[(size_t)q * PN + p * nc + c] = scale * sig2[(size_t)q * PL + p * ncl + cc];
                for (int q = 0; q < SN && !(xn->hw.adc_signal == XB_ADC_DIFFERENCE); q++)
                    sigN[(size_t)q * PN + p * nc + c] = scale * sigN2[(size_t)q * PL + p * ncl + cc];
                if (digref) csum[p * nc + c] = scale * csum2[p * ncl + cc];
            }
        }
        int n2 = 0;
        for (int cc = 0; cc < ncl; cc++) if (hit2[cc]) idx[n2++] = idx[cc];
        ncl = n2;
    }
}

/* The ADC's straight-through mask of row tile r for chunk [c0, c0+nc): l->smask[(r ro + j) ncols + c] = 1
 * where a conversion of output j's partial sum saturated -- a code at the ADC's end, on any slice or plane
 * (both ends for the signed difference ADC, the top for column ADCs, the P or N side) -- or, with bound
 * management, where the column still clipped after its re-reads (then for every output of the column).
 * Bit 0 is the first (or only) input pass, bit 1 the second pass of split inputs (the negative parts). */
static void record_saturation_(const xb_xnet *xn, xlayer *l, int r, int pass, int ncols, int64_t c0, int nc,
                               const float *sig, const float *sigN, const int *ccnt) {
    const int ro = l->rows_out, S = l->g.slices, P = l->planes, PN = P * nc, nN = l->nN, wc = l->g.wcols;
    const int diffadc = xn->hw.adc_signal == XB_ADC_DIFFERENCE;
    const float atop = diffadc ? (float)((1L << (xn->hw.adc_bits - 1)) - 1) : (float)((1L << xn->hw.adc_bits) - 1);
    for (int j = 0; j < ro; j++) {
        uint8_t *mk = l->smask + ((size_t)r * ro + j) * ncols + c0;
        const uint8_t bit = (uint8_t)(1u << pass);
        if (!pass) memset(mk, 0, (size_t)nc);
        if (ccnt) {
            for (int c = 0; c < nc; c++) mk[c] |= ccnt[c] > 0 ? bit : 0;
            continue;
        }
        for (int t = 0; t < S; t++) {
            const float *sr = sig + ((size_t)t * ro + j) * PN;
            const float *nr = !diffadc && l->ntype != NT_DIGITAL
                                  ? sigN + ((size_t)t * nN + (l->ntype == NT_PAIR ? j : j / wc)) * PN : NULL;
            for (int p = 0; p < P; p++)
                for (int c = 0; c < nc; c++) {
                    const float a = sr[(size_t)p * nc + c];
                    if ((diffadc ? fabsf(a) : a) >= atop || (nr && nr[(size_t)p * nc + c] >= atop)) mk[c] |= bit;
                }
        }
    }
}

/* tiled (ADC) path, chunk [c0, c0+nc).  cal != NULL: collect |signals| before the ADC, no output.
 * The ADC codes are shift-added over slices, planes, passes and row tiles in int64, exactly (xl_layer_forward
 * refuses layers whose sums could overflow), and every output is converted to float once, with the layer's
 * scale.  A digital reference (offset scheme, column ADC), not an ADC code, is accumulated in double. */
static void tiled_chunk_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, int64_t c0, int nc,
                         float *buf, xb_rng *rng, chunk_stats_ *cs, cal_ *cal) {
    const xb_hw *hw = &xn->hw;
    const xb_map_geom *g = &l->g;
    const int k = l->k, ro = l->rows_out, R = g->R, S = g->slices, P = l->planes, PN = P * nc, nN = l->nN;
    const int N = nN > ro ? nN : ro, SR = S * ro, wc = g->wcols;
    float *Xp = buf, *X2 = Xp + (size_t)R * PN, *sig = X2 + (size_t)R * PN, *sigN = sig + (size_t)SR * PN;
    float *var = sigN + (size_t)S * N * PN, *csum = var + (size_t)S * N * PN, *z = csum + PN;
    int64_t *acc = (int64_t *)(void *)(((uintptr_t)(z + PN) + 7) & ~(uintptr_t)7); /* ro x nc, 8-byte aligned */
    double *racc = (double *)(void *)(acc + (size_t)ro * nc);                       /* nc: digital reference */
    /* after the buffers above (sized for the layer's chunk width): per column input scales, bound management */
    float *colx = xn->vec ? buf + xl_tbuf_base_(xn, l) : NULL;
    float *ex = buf + xl_tbuf_base_(xn, l) + (xn->vec ? l->ch : 0);
    int *ccnt = xn->bm && !cal ? (int *)(void *)(ex + xl_tbuf_bmex_(xn, l)) : NULL, *hit = ccnt ? ccnt + l->ch : NULL;
    const int diffadc = hw->adc_signal == XB_ADC_DIFFERENCE;
    const int dac = hw->dac_bits > 0, d = hw->dac_bits;
    const float top = dac ? (float)((1L << l->in_bits) - 1) : 1.0f, dmax = dac ? (float)((1L << d) - 1) : 1.0f;
    const float xm = xn->vec ? 1.0f : (float)l->x_max;
    const float atop = diffadc ? (float)((1L << (hw->adc_bits - 1)) - 1) : (float)((1L << hw->adc_bits) - 1);
    const float astep = (float)(l->fs / atop);
    if (colx) cs->xmax = col_absmax_(k, ncols, x, c0, nc, colx);
    xb_normal8 ng;
    if (l->noise) xb_normal8_init(&ng, rng);
    if (!cal) {
        memset(acc, 0, (size_t)ro * nc * sizeof *acc);
        memset(racc, 0, (size_t)nc * sizeof *racc);
        for (int i = 0; i < k; i++) { /* a non-finite input makes its column's outputs NaN (codes are integers) */
            const float *xr = x + (size_t)i * ncols + c0;
            for (int c = 0; c < nc; c++) if (!isfinite(xr[c])) racc[c] = NAN;
        }
    }
    for (int r = 0; r < g->rt; r++) {
        const int i0 = r * R, m = k - i0 < R ? k - i0 : R;
        int npass = 1;
        if (hw->signed_inputs == XB_SIGNED_SPLIT)
            for (int i = 0; i < m && npass == 1; i++) {
                const float *xr = x + (size_t)(i0 + i) * ncols + c0;
                for (int c = 0; c < nc; c++) if (xr[c] < 0) { npass = 2; break; }
            }
        for (int pass = 0; pass < npass; pass++) {
            if (ccnt) memset(ccnt, 0, 2 * (size_t)l->ch * sizeof(int));
            if (rt_read_(xn, l, x + (size_t)i0 * ncols + c0, ncols, nc, i0, m, pass, xm, colx, Xp, X2, sig, sigN, var,
                         csum, z, rng, &ng, cs, cal, 1, ccnt, hit))
                continue;
            if (ccnt) bound_retry_(xn, l, x, ncols, c0, nc, i0, m, pass, xm, colx, Xp, X2, sig, sigN, var, csum, z, ex,
                                   rng, &ng, cs, ccnt, hit);
            if (l->smask) record_saturation_(xn, l, r, pass, ncols, c0, nc, sig, sigN, ccnt);
            if (!diffadc && l->ntype != NT_DIGITAL) {
                /* digital subtraction of the N side's codes: per output or per column tile (the digital reference
                 * is not a code: it goes to racc in the shift-add) */
                for (int t = 0; t < S; t++)
                    for (int j = 0; j < ro; j++) {
                        float *sr = sig + ((size_t)t * ro + j) * PN;
                        const float *nr = sigN + ((size_t)t * nN + (l->ntype == NT_PAIR ? j : j / wc)) * PN;
                        for (int c = 0; c < PN; c++) sr[c] -= nr[c];
                    }
            }
            /* shift-add over slices and planes, accumulation over row tiles and passes: the integer codes times
             * +-2^(b t + d p) in int64 (exact); the digital reference ncode_t x (the plane's input sum) in double */
            const int64_t ps = pass ? -1 : 1;
            for (int t = 0; t < S; t++)
                for (int j = 0; j < ro; j++) {
                    int64_t *ar = acc + (size_t)j * nc;
                    const float *sr = sig + ((size_t)t * ro + j) * PN;
                    for (int p = 0; p < P; p++) {
                        const int64_t f = ps * ((int64_t)1 << (g->slice_bits * t + d * p));
                        const float *sp = sr + (size_t)p * nc;
                        for (int c = 0; c < nc; c++) ar[c] += f * (int64_t)sp[c];
                    }
                }
            if (!diffadc && l->ntype == NT_DIGITAL)
                for (int t = 0; t < S; t++)
                    for (int p = 0; p < P; p++) {
                        const double f = (double)ps * ldexp(l->ncode[t], g->slice_bits * t + d * p);
                        const float *cp = csum + (size_t)p * nc;
                        for (int c = 0; c < nc; c++) racc[c] += f * cp[c];
                    }
        }
    }
    if (cal) return;
    /* y = x_max s/qmax (drift compensation, gain) (2^d - 1)/(2^k - 1) (step acc - racc), rounded to float once */
    const double kr = (double)xm * l->coef[0] * (dac ? (double)dmax / top : 1.0), ka = kr * astep;
    for (int j = 0; j < ro; j++) {
        float *yr = y + (size_t)j * ncols + c0;
        const int64_t *ar = acc + (size_t)j * nc;
        for (int c = 0; c < nc; c++) yr[c] = (float)(ka * (double)ar[c] - kr * racc[c]);
    }
    if (colx || l->dcomp) /* the per-vector input scales and the per-column drift compensation, digitally */
        for (int j = 0; j < ro; j++) {
            float *yr = y + (size_t)j * ncols + c0;
            const float f = l->dcomp ? l->dcomp[j] : 1.0f;
            if (colx) for (int c = 0; c < nc; c++) yr[c] *= f * colx[c];
            else for (int c = 0; c < nc; c++) yr[c] *= f;
        }
}

/* Values chunk [c0, c0+nc) adds to the calibration sample in tiled_chunk_: per row tile and pass (the
 * negative pass of split inputs only where the tile's inputs in the chunk have a negative value), every
 * slice, output and plane of the signal, and for column ADCs the N side's as well. */
static int64_t cal_values_(const xb_xnet *xn, const xlayer *l, int ncols, const float *x, int64_t c0, int nc) {
    const int k = l->k, R = l->g.R;
    const int64_t per_pass = (int64_t)l->g.slices * (l->rows_out + (xn->hw.adc_signal == XB_ADC_DIFFERENCE ? 0 : l->nN)) *
                             l->planes * nc;
    int64_t v = 0;
    for (int r = 0; r < l->g.rt; r++) {
        const int i0 = r * R, m = k - i0 < R ? k - i0 : R;
        int npass = 1;
        if (xn->hw.signed_inputs == XB_SIGNED_SPLIT)
            for (int i = 0; i < m && npass == 1; i++) {
                const float *xr = x + (size_t)(i0 + i) * ncols + c0;
                for (int c = 0; c < nc; c++) if (xr[c] < 0) { npass = 2; break; }
            }
        v += npass * per_pass;
    }
    return v;
}

/* Runs the chunks of one call in parallel; calib != 0 collects calibration samples instead (every value
 * when the call's values fit in XL_CAL_SAMPLES, else every stride-th, numbered chunk after chunk: see
 * xl_cal_at) and sets the layer's ADC full scale. */
static void run_chunks_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, const xb_rng *rcall,
                        int calib, chunk_stats_ *tot) {
    const int64_t nch = (ncols + l->ch - 1) / l->ch;
    int64_t adc_conv = 0, adc_clip = 0, dac_conv = 0, dac_clip = 0, reruns = 0, *g0 = NULL, *cn = NULL;
    float xmax = 0;
    float *cm = NULL;
    if (calib) { /* g0[ci]: the number of chunk ci's first value in the call */
        g0 = xb_calloc((size_t)(nch + 1) * sizeof(int64_t));
        cn = xb_calloc((size_t)nch * sizeof(int64_t));
        cm = xb_calloc((size_t)nch * sizeof(float));
        for (int64_t ci = 0; ci < nch; ci++) {
            int64_t c0 = ci * l->ch;
            g0[ci + 1] = g0[ci] + cal_values_(xn, l, ncols, x, c0, (int)(ncols - c0 < l->ch ? ncols - c0 : l->ch));
        }
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(xn->nthreads) reduction(+ : adc_conv, adc_clip, dac_conv, dac_clip, reruns) reduction(max : xmax)
    for (int64_t ci = 0; ci < nch; ci++) {
        int64_t c0 = ci * l->ch;
        int nc = (int)(ncols - c0 < l->ch ? ncols - c0 : l->ch);
        float *buf = xn->tbuf + (size_t)thread_id_() * xn->tbuf_floats;
        xb_rng rc;
        xb_rng_fork(rcall, (uint64_t)ci, &rc);
        chunk_stats_ cs = {0};
        if (l->tiled) {
            cal_ c = calib ? xl_cal_at(xn->cal, g0[nch], g0[ci], g0[ci + 1] - g0[ci]) : (cal_){0};
            tiled_chunk_(xn, l, ncols, x, y, c0, nc, buf, &rc, &cs, calib ? &c : NULL);
            if (calib) { cn[ci] = c.n != c.cap || c.cnt != g0[ci + 1] % c.stride; cm[ci] = c.maxabs; }
        } else {
            fast_chunk_(xn, l, ncols, x, y, c0, nc, buf, &rc, &cs.dac_clip, &cs.xmax);
            if (xn->hw.dac_bits > 0) cs.dac_conv = (int64_t)l->k * nc;
        }
        adc_conv += cs.adc_conv; adc_clip += cs.adc_clip; dac_conv += cs.dac_conv; dac_clip += cs.dac_clip;
        reruns += cs.reruns;
        xmax = cs.xmax > xmax ? cs.xmax : xmax;
    }
    if (calib) {
        float mx = 0;
        for (int64_t ci = 0; ci < nch; ci++) {
            XB_ASSERT(cn[ci] == 0 && "a chunk's calibration values differ from cal_values_'s count");
            if (cm[ci] > mx) mx = cm[ci];
        }
        xl_calibrate_adc(xn, l, xn->cal, xl_cal_kept(g0[nch]), mx);
        xb_free(g0);
        xb_free(cn);
        xb_free(cm);
    }
    tot->adc_conv = adc_conv; tot->adc_clip = adc_clip; tot->dac_conv = dac_conv; tot->dac_clip = dac_clip;
    tot->reruns = reruns; tot->xmax = xmax;
}

xb_status xl_layer_forward(xb_xnet *xn, xlayer *l, int ncols, const float *w, const float *x, float *y) {
    const xb_hw *hw = &xn->hw;
    const int ro = l->rows_out, k = l->k;
    const double t0 = xb_time_s();
    const int needs_x = hw->dac_bits > 0 || hw->adc_bits > 0;
    if (xn->calibrating && needs_x && hw->input_range == XB_RANGE_CALIBRATED && !xn->vec)
        xl_calibrate_input(xn, l, (int64_t)k * ncols, x);

    if (needs_x && !l->x_set)
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: its input range is calibrated from data and not set yet. "
                         "HINT: call xb_xnet_calibrate after xb_xnet_program", l->st.name);
    if (l->en) xl_energy_observe(xn, l, ncols, x);
    if (l->tiled) { /* the shift-add sums +-code 2^(b t + d p) in int64 over slices, planes, passes and row tiles */
        double ws = 0, xs = 1;
        for (int t = 0; t < l->g.slices; t++) ws += ldexp(1.0, l->g.slice_bits * t);
        if (hw->dac_bits > 0) xs = (ldexp(1.0, hw->dac_bits * l->planes) - 1) / (ldexp(1.0, hw->dac_bits) - 1);
        if (2.0 * l->g.rt * ldexp(1.0, hw->adc_bits) * ws * xs >= 0x1p63)
            return xb_errorf(XB_ERR_UNSUPPORTED, "crossbar layer %s: %d row tiles of %d-bit ADC codes shifted over %d weight "
                             "slices and %d input planes could overflow the 64-bit shift-add. HINT: use more rows per "
                             "array, or fewer weight, input or ADC bits", l->st.name, l->g.rt, hw->adc_bits, l->g.slices,
                             l->planes);
    }
    xb_rng rbase, rlayer, rcall;
    xb_rng_seed(&rbase, xn->seed, "read");
    xb_rng_fork(&rbase, (uint64_t)l->li * 65536u + (uint64_t)l->sid, &rlayer);
    xb_rng_fork(&rlayer, l->calls++, &rcall);
    chunk_stats_ cs = {0};
    if (l->tiled && xn->calibrating && hw->adc_range == XB_RANGE_CALIBRATED)
        run_chunks_(xn, l, ncols, x, y, &rcall, 1, &cs); /* sets the ADC full scale */
    if (!l->fs_set)
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: its ADC full scale is calibrated from data and not set yet. "
                         "HINT: call xb_xnet_calibrate after xb_xnet_program", l->st.name);
    if (l->tiled && !xn->calibrating) { /* the ADC's straight-through mask of this call, for the backward */
        const size_t need = (size_t)l->g.rt * ro * ncols;
        if (need > l->smask_cap) {
            xb_free(l->smask);
            l->smask = xb_try_malloc(need);
            l->smask_cap = l->smask ? need : 0;
            if (!l->smask)
                return xb_errorf(XB_ERR_NOMEM, "crossbar layer %s: no memory for the ADC's straight-through mask "
                                 "(%zu bytes). HINT: a smaller batch", l->st.name, need);
        }
        l->smask_cols = ncols;
        l->smask_pass = xn->cur_pass;
    }
    if (!l->tiled && hw->dac_bits == 0 && !l->noise) {
        gemm_(ro, ncols, k, l->weff, k, x, ncols, y, ncols);
    } else {
        run_chunks_(xn, l, ncols, x, y, &rcall, 0, &cs);
        l->st.adc_conversions += cs.adc_conv; l->st.adc_clipped += cs.adc_clip;
        l->st.dac_conversions += cs.dac_conv; l->st.dac_clipped += cs.dac_clip;
        l->st.adc_reruns += cs.reruns;
        if (needs_x && xn->vec) {
            /* per-vector scaling has no layer range; the largest |x| of the call stands in for it where one
             * is read (the backward's DAC mask and straight-through input, the report) */
            l->x_max = cs.xmax > 0 ? cs.xmax : 1.0;
            l->st.input_full_scale = l->x_max;
        }
    }
    if (xn->calibrating && xn->need_gain) xl_calibrate_gain(xn, l, ncols, w, x, y);
    if (!xn->calibrating) {
        /* relative error against the float product on the first columns */
        int ns = ncols < XL_STATS_COLS ? ncols : XL_STATS_COLS;
        gemm_(ro, ns, k, w, k, x, ncols, xn->refbuf, ns);
        double e2 = 0, r2 = 0;
        for (int j = 0; j < ro; j++)
            for (int c = 0; c < ns; c++) {
                double rf = xn->refbuf[(size_t)j * ns + c], dd = (double)y[(size_t)j * ncols + c] - rf;
                e2 += dd * dd;
                r2 += rf * rf;
            }
        l->st.err_sq += e2;
        l->st.ref_sq += r2;
    }
    l->st.forward_s += xb_time_s() - t0;
    return XB_OK;
}

