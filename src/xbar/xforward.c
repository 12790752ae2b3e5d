/* xforward.c -- the products through a programmed crossbar network: the forward of one mapped layer
 * (fast path: one GEMM with the effective weights, DAC and read noise; tiled path: per row tile, slice
 * and input plane, ADC, shift-add), calibration of its ranges, and the mapped-matmul operator that
 * the model calls in forward and backward (xnet.c builds and programs the network). */
#include "xnet_internal.h"

/* ------------------------------------------------------------------------------------------------ */
/* Forward                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

/* in-place quantizer with clip count (serial: callers parallelise over chunks) */
static int64_t quant_(int64_t n, float *v, float step, float lo, float hi) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) {
        float q = rintf(v[i] / step);
        c += (q < lo) | (q > hi);
        q = q < lo ? lo : q > hi ? hi : q;
        v[i] = q * step;
    }
    return c;
}

static void gemm_(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *Cm, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, Cm, ldc);
}

/* sig[i] += sqrt(max(var[i], 0)) * N(0,1), row by row (z: n floats of scratch) */
static void noise_add_(int64_t n, const float *var, float *sig, float *z, int zn, xb_rng *rng) {
    for (int64_t i0 = 0; i0 < n; i0 += zn) {
        int b = (int)(n - i0 < zn ? n - i0 : zn);
        xb_normal_fill(rng, b, z);
        for (int i = 0; i < b; i++) {
            float v = var[i0 + i];
            sig[i0 + i] += sqrtf(v > 0 ? v : 0) * z[i];
        }
    }
}

/* Calibration samples of |value|: a chunk keeps every stride-th value in its own slot of the buffer
 * (so the sample does not depend on the thread count), and the exact maximum. */
typedef struct cal_ { float *buf; int64_t n, cap, stride, cnt; float maxabs; } cal_;
static void cal_add_(cal_ *c, const float *v, int64_t n) {
    float m[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) {
            float a = fabsf(v[i + j]);
            m[j] = a > m[j] ? a : m[j];
        }
    float mx = c->maxabs;
    for (; i < n; i++) mx = fabsf(v[i]) > mx ? fabsf(v[i]) : mx;
    for (int j = 0; j < 16; j++) mx = m[j] > mx ? m[j] : mx;
    c->maxabs = mx;
    /* every stride-th value, counting on from the previous call: positions with (cnt + i + 1) % stride == 0 */
    for (i = c->stride - 1 - c->cnt; i < n && c->n < c->cap; i += c->stride) c->buf[c->n++] = fabsf(v[i]);
    c->cnt = (c->cnt + n) % c->stride;
}

/* Merges the chunks' samples (slot ci at buf + ci*slot, n[ci] values) and takes the percentile. */
static double cal_merge_(float *buf, int64_t slot, int64_t nch, const int64_t *n, const float *mx, double p) {
    float m = 0;
    int64_t u = 0;
    for (int64_t ci = 0; ci < nch; ci++) {
        if (mx[ci] > m) m = mx[ci];
        memmove(buf + u, buf + ci * slot, (size_t)n[ci] * sizeof(float));
        u += n[ci];
    }
    if (p >= 100 || u == 0) return m;
    return xb_percentile_abs(buf, u, p);
}

/* Input range x_max of a layer from this call's inputs (k x ncols). */
static void calibrate_input_(xb_xnet *xn, xlayer *l, int64_t n, const float *x) {
    cal_ c = {xn->cal, 0, XL_CAL_SAMPLES, n / XL_CAL_SAMPLES + 1, 0, 0};
    cal_add_(&c, x, n);
    double v = xn->hw.input_percentile >= 100 ? c.maxabs : xb_percentile_abs(c.buf, c.n, xn->hw.input_percentile);
    l->x_max = v > 0 ? v : 1.0;
    l->x_set = 1;
    l->st.input_full_scale = l->x_max;
}

/* fast path, chunk [c0, c0+nc): DAC on inputs, one GEMM, read noise */
static void fast_chunk_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, int64_t c0, int nc,
                        float *buf, xb_rng *rng, int64_t *dac_clip) {
    const xb_hw *hw = &xn->hw;
    const int k = l->k, ro = l->rows_out, ct = l->g.ct;
    float *xq = buf, *x2 = xq + (size_t)k * nc, *var = x2 + (size_t)k * nc, *varr = var + (size_t)ro * nc;
    float *z = varr + (size_t)ct * nc;
    const float *B = x + c0;
    int ldb = ncols;
    if (hw->dac_bits > 0) {
        const float top = (float)((1L << xn->in_bits) - 1), step = (float)l->x_max / top;
        int64_t clip = 0;
        for (int i = 0; i < k; i++) {
            const float *xr = x + (size_t)i * ncols + c0;
            float *qr = xq + (size_t)i * nc;
            for (int c = 0; c < nc; c++) {
                float q = rintf(fabsf(xr[c]) / step);
                clip += q > top;
                q = q > top ? top : q;
                qr[c] = copysignf(q * step, xr[c]);
            }
        }
        *dac_clip += clip;
        B = xq;
        ldb = nc;
    }
    gemm_(ro, nc, k, l->weff, k, B, ldb, y + c0, ncols);
    if (!l->noise) return;
    for (int i = 0; i < k; i++)
        for (int c = 0; c < nc; c++) {
            float v = B[(size_t)i * ldb + c];
            x2[(size_t)i * nc + c] = v * v;
        }
    gemm_(ro, nc, k, l->vnoise, k, x2, nc, var, nc);
    for (int j = 0; j < ro; j++) noise_add_(nc, var + (size_t)j * nc, y + (size_t)j * ncols + c0, z, nc, rng);
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
                for (int c = 0; c < nc; c++) yr[c] -= vr[c];
            }
        }
    }
}

typedef struct chunk_stats_ { int64_t adc_conv, adc_clip, dac_conv, dac_clip; } chunk_stats_;

/* tiled (ADC) path, chunk [c0, c0+nc).  cal != NULL: collect |signals| before the ADC, no output. */
static void tiled_chunk_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, int64_t c0, int nc,
                         float *buf, xb_rng *rng, chunk_stats_ *cs, cal_ *cal) {
    const xb_hw *hw = &xn->hw;
    const xb_map_geom *g = &l->g;
    const int k = l->k, ro = l->rows_out, R = g->R, S = g->slices, P = xn->planes, PN = P * nc, nN = l->nN;
    const int N = nN > ro ? nN : ro, SR = S * ro, SN = S * nN, wc = g->wcols;
    float *Xp = buf, *X2 = Xp + (size_t)R * PN, *sig = X2 + (size_t)R * PN, *sigN = sig + (size_t)SR * PN;
    float *var = sigN + (size_t)S * N * PN, *acc = var + (size_t)S * N * PN, *csum = acc + (size_t)ro * nc;
    float *z = csum + PN;
    const int diffadc = hw->adc_signal == XB_ADC_DIFFERENCE;
    const int dac = hw->dac_bits > 0, d = hw->dac_bits;
    const float top = dac ? (float)((1L << xn->in_bits) - 1) : 1.0f, dmax = dac ? (float)((1L << d) - 1) : 1.0f;
    const unsigned dmask = dac ? (1u << d) - 1 : 0;
    const float xm = (float)l->x_max;
    float omega[32];
    for (int p = 0; p < P; p++) omega[p] = dac ? (float)(ldexp(1.0, d * p) * dmax / top) : 1.0f;
    const float atop = diffadc ? (float)((1L << (hw->adc_bits - 1)) - 1) : (float)((1L << hw->adc_bits) - 1);
    const float astep = (float)(l->fs / atop), alo = diffadc ? -atop : 0.0f;
    if (!cal) memset(acc, 0, (size_t)ro * nc * sizeof(float));
    for (int r = 0; r < g->rt; r++) {
        const int i0 = r * R, m = k - i0 < R ? k - i0 : R;
        int npass = 1;
        if (hw->signed_inputs == XB_SIGNED_SPLIT)
            for (int i = 0; i < m && npass == 1; i++) {
                const float *xr = x + (size_t)(i0 + i) * ncols + c0;
                for (int c = 0; c < nc; c++) if (xr[c] < 0) { npass = 2; break; }
            }
        for (int pass = 0; pass < npass; pass++) {
            /* DAC: input planes Xp (m x P*nc), plane p in columns p*nc .. p*nc+nc-1 */
            const int split = hw->signed_inputs == XB_SIGNED_SPLIT;
            const float inv_dmax = 1.0f / dmax;
            int64_t dclip = 0;
            for (int i = 0; i < m; i++) {
                const float *xr = x + (size_t)(i0 + i) * ncols + c0;
                float *row = Xp + (size_t)i * PN;
                if (!dac) {
                    for (int c = 0; c < nc; c++) {
                        float v = xr[c] / xm;
                        row[c] = !split ? v : pass ? (v < 0 ? v : 0) * -1.0f : (v > 0 ? v : 0);
                    }
                    continue;
                }
                /* signed code (sign x magnitude) in csum as scratch, then one vector loop per plane */
                for (int c = 0; c < nc; c++) {
                    float v = xr[c] / xm;
                    float a = split ? (pass ? (v < 0 ? -v : 0) : (v > 0 ? v : 0)) : fabsf(v);
                    float q = rintf(a * top);
                    dclip += q > top;
                    q = q > top ? top : q;
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
            cs->dac_clip += dclip;
            if (dac) cs->dac_conv += (int64_t)m * nc;
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
                noise_add_((int64_t)SR * PN, var, sig, z, PN, rng);
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
                if (cal) { cal_add_(cal, sig, (int64_t)SR * PN); continue; }
                cs->adc_conv += (int64_t)SR * PN;
                cs->adc_clip += quant_((int64_t)SR * PN, sig, astep, alo, atop);
            } else {
                if (nN) {
                    gemm_(SN, PN, m, l->Nm + i0, k, Xp, PN, sigN, PN);
                    if (l->noise) {
                        gemm_(SN, PN, m, l->VN + i0, k, X2, PN, var, PN);
                        noise_add_((int64_t)SN * PN, var, sigN, z, PN, rng);
                    }
                }
                if (cal) {
                    cal_add_(cal, sig, (int64_t)SR * PN);
                    if (nN) cal_add_(cal, sigN, (int64_t)SN * PN);
                    continue;
                }
                cs->adc_conv += (int64_t)(SR + SN) * PN;
                cs->adc_clip += quant_((int64_t)SR * PN, sig, astep, alo, atop);
                if (nN) cs->adc_clip += quant_((int64_t)SN * PN, sigN, astep, alo, atop);
                /* digital subtraction of the N side: per output, per column tile, or the digital reference */
                for (int t = 0; t < S; t++)
                    for (int j = 0; j < ro; j++) {
                        float *sr = sig + ((size_t)t * ro + j) * PN;
                        if (l->ntype == NT_DIGITAL) {
                            const float nc_ = (float)l->ncode[t];
                            for (int c = 0; c < PN; c++) sr[c] -= nc_ * csum[c];
                        } else {
                            const float *nr = sigN + ((size_t)t * nN + (l->ntype == NT_PAIR ? j : j / wc)) * PN;
                            for (int c = 0; c < PN; c++) sr[c] -= nr[c];
                        }
                    }
            }
            /* shift-add over slices and planes, accumulation over row tiles and passes */
            const float ps = pass ? -1.0f : 1.0f;
            for (int t = 0; t < S; t++)
                for (int j = 0; j < ro; j++) {
                    float *ar = acc + (size_t)j * nc;
                    const float *sr = sig + ((size_t)t * ro + j) * PN;
                    for (int p = 0; p < P; p++) {
                        const float f = ps * (float)l->coef[t] * omega[p];
                        const float *sp = sr + (size_t)p * nc;
                        for (int c = 0; c < nc; c++) ar[c] += f * sp[c];
                    }
                }
        }
    }
    if (cal) return;
    for (int j = 0; j < ro; j++) {
        float *yr = y + (size_t)j * ncols + c0;
        const float *ar = acc + (size_t)j * nc;
        for (int c = 0; c < nc; c++) yr[c] = xm * ar[c];
    }
}

/* Runs the chunks of one call in parallel; cal != NULL collects calibration samples instead. */
static void run_chunks_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, const xb_rng *rcall,
                        int calib, chunk_stats_ *tot) {
    const int64_t nch = (ncols + l->ch - 1) / l->ch;
    int64_t adc_conv = 0, adc_clip = 0, dac_conv = 0, dac_clip = 0;
    int64_t slot = XL_CAL_SAMPLES / nch, *cn = NULL;
    float *cm = NULL;
    if (calib) {
        XB_ASSERT(slot >= 1);
        cn = xb_calloc((size_t)nch * sizeof(int64_t));
        cm = xb_calloc((size_t)nch * sizeof(float));
    }
    /* values one chunk produces before its ADCs, for the sampling stride */
    const int64_t per_chunk = (int64_t)l->g.rt * 2 * l->g.slices * (l->rows_out + l->nN) * xn->planes * l->ch;
#pragma omp parallel for schedule(dynamic, 1) num_threads(xn->nthreads) reduction(+ : adc_conv, adc_clip, dac_conv, dac_clip)
    for (int64_t ci = 0; ci < nch; ci++) {
        int64_t c0 = ci * l->ch;
        int nc = (int)(ncols - c0 < l->ch ? ncols - c0 : l->ch);
        float *buf = xn->tbuf + (size_t)thread_id_() * xn->tbuf_floats;
        xb_rng rc;
        xb_rng_fork(rcall, (uint64_t)ci, &rc);
        chunk_stats_ cs = {0};
        if (l->tiled) {
            cal_ c = {calib ? xn->cal + ci * slot : NULL, 0, slot, per_chunk / slot + 1, 0, 0};
            tiled_chunk_(xn, l, ncols, x, y, c0, nc, buf, &rc, &cs, calib ? &c : NULL);
            if (calib) { cn[ci] = c.n; cm[ci] = c.maxabs; }
        } else {
            fast_chunk_(xn, l, ncols, x, y, c0, nc, buf, &rc, &cs.dac_clip);
            if (xn->hw.dac_bits > 0) cs.dac_conv = (int64_t)l->k * nc;
        }
        adc_conv += cs.adc_conv; adc_clip += cs.adc_clip; dac_conv += cs.dac_conv; dac_clip += cs.dac_clip;
    }
    if (calib) {
        double v = cal_merge_(xn->cal, slot, nch, cn, cm, xn->hw.adc_percentile);
        l->fs = v > 0 ? v : 1.0;
        l->fs_set = 1;
        l->st.adc_full_scale_a = l->fs * xn->hw.v_read_v * l->g.g_unit_s;
        xb_free(cn);
        xb_free(cm);
    }
    tot->adc_conv = adc_conv; tot->adc_clip = adc_clip; tot->dac_conv = dac_conv; tot->dac_clip = dac_clip;
}

/* Digital gain of a layer (calibration): g = <Y_float, Y_hw> / <Y_hw, Y_hw> over the calibration call,
 * the least-squares scalar that maps the hardware output onto the float product; applied to y now (so
 * later layers calibrate on corrected outputs) and to every later product through coef / W_eff. */
static void calibrate_gain_(xb_xnet *xn, xlayer *l, int ncols, const float *w, const float *x, float *y) {
    const int ro = l->rows_out, k = l->k;
    double ry = 0, yy = 0;
    for (int c0 = 0; c0 < ncols; c0 += XL_STATS_COLS) {
        int nc = ncols - c0 < XL_STATS_COLS ? ncols - c0 : XL_STATS_COLS;
        gemm_(ro, nc, k, w, k, x + c0, ncols, xn->refbuf, nc);
        for (int j = 0; j < ro; j++)
            for (int c = 0; c < nc; c++) {
                double rf = xn->refbuf[(size_t)j * nc + c], hv = y[(size_t)j * ncols + c0 + c];
                ry += rf * hv;
                yy += hv * hv;
            }
    }
    double g = yy > 0 ? ry / yy : 1.0;
    if (!(g > 0 && isfinite(g))) g = 1.0; /* a hardware output uncorrelated with the float one: leave it */
    l->gain *= g;
    l->st.gain = l->gain;
    for (int64_t i = 0; i < (int64_t)ro * ncols; i++) y[i] = (float)(g * y[i]);
    if (!l->tiled) {
        for (int64_t i = 0; i < (int64_t)ro * k; i++) l->weff[i] = (float)(g * l->weff[i]);
        if (l->vnoise)
            for (int64_t i = 0; i < (int64_t)ro * k; i++) l->vnoise[i] = (float)(g * g * l->vnoise[i]);
        if (l->vref)
            for (int64_t i = 0; i < (int64_t)l->g.ct * k; i++) l->vref[i] = (float)(g * g * l->vref[i]);
    } else {
        for (int t = 0; t < l->g.slices; t++) l->coef[t] *= g;
    }
}

static xb_status layer_forward_(xb_xnet *xn, xlayer *l, int ncols, const float *w, const float *x, float *y) {
    const xb_hw *hw = &xn->hw;
    const int ro = l->rows_out, k = l->k;
    const double t0 = xb_time_s();
    const int needs_x = hw->dac_bits > 0 || hw->adc_bits > 0;
    if (xn->calibrating && needs_x && hw->input_range == XB_RANGE_CALIBRATED)
        calibrate_input_(xn, l, (int64_t)k * ncols, x);
    if (needs_x && !l->x_set)
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: its input range is calibrated from data and not set yet. "
                         "HINT: call xb_xnet_calibrate after xb_xnet_program", l->st.name);
    xb_rng rbase, rlayer, rcall;
    xb_rng_seed(&rbase, xn->seed, "read");
    xb_rng_fork(&rbase, (uint64_t)l->li * 65536u + (uint64_t)l->group, &rlayer);
    xb_rng_fork(&rlayer, l->calls++, &rcall);
    chunk_stats_ cs = {0};
    if (l->tiled && xn->calibrating && hw->adc_range == XB_RANGE_CALIBRATED)
        run_chunks_(xn, l, ncols, x, y, &rcall, 1, &cs); /* sets the ADC full scale */
    if (!l->fs_set)
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: its ADC full scale is calibrated from data and not set yet. "
                         "HINT: call xb_xnet_calibrate after xb_xnet_program", l->st.name);
    if (!l->tiled && hw->dac_bits == 0 && !l->noise) {
        gemm_(ro, ncols, k, l->weff, k, x, ncols, y, ncols);
    } else {
        run_chunks_(xn, l, ncols, x, y, &rcall, 0, &cs);
        l->st.adc_conversions += cs.adc_conv; l->st.adc_clipped += cs.adc_clip;
        l->st.dac_conversions += cs.dac_conv; l->st.dac_clipped += cs.dac_clip;
    }
    if (xn->calibrating && xn->need_gain) calibrate_gain_(xn, l, ncols, w, x, y);
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

/* ---- the mapped-matmul operator -------------------------------------------------------------------- */

/* The xlayer of a call, checked against the network: programmed, same shape, and programmed from the
 * weights the model holds now (a crossbar never silently computes with weights that have changed). */
static xb_status layer_of_(xb_xnet *xn, const xb_mm_call *c, xlayer **out) {
    if (c->layer < 0 || c->layer >= xn->n_mapped || c->group < 0 ||
        xn->first_xl[c->layer] + c->group >= xn->first_xl[c->layer + 1])
        return xb_errorf(XB_ERR_ARG, "crossbar network: mapped layer %d, group %d does not exist (the network has %d "
                         "mapped layers). HINT: build the network (xb_xnet_init) for this model", c->layer, c->group,
                         xn->n_mapped);
    xlayer *l = &xn->xl[xn->first_xl[c->layer] + c->group];
    if (l->rows_out != c->rows_out || l->k != c->k)
        return xb_errorf(XB_ERR_SHAPE, "crossbar layer %s: a %dx%d product, but its tiles hold %dx%d. HINT: build the "
                         "network (xb_xnet_init) for this model", l->st.name, c->rows_out, c->k, l->rows_out, l->k);
    *out = l;
    if (l->digital) return XB_OK;
    if (!xn->programmed)
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: the tiles are not programmed. HINT: call xb_xnet_program "
                         "before the forward", l->st.name);
    if (xb_xnet_hash_(c->w, (int64_t)c->rows_out * c->k) != l->whash) {
        xn->stale++;
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: the weights changed after the tiles were programmed, so "
                         "the crossbar would compute with the old ones. HINT: program again (xb_xnet_program) after "
                         "changing weights, or train through xb_xtrain, which reprograms after every update",
                         l->st.name);
    }
    return XB_OK;
}

static xb_status op_forward_(void *ctx, const xb_mm_call *c, const float *x, float *y) {
    xb_xnet *xn = ctx;
    xlayer *l = NULL;
    xb_status st = layer_of_(xn, c, &l);
    if (st) return st;
    if (l->digital) {
        xb_mm_float_forward(c, x, y);
        return XB_OK;
    }
    return layer_forward_(xn, l, c->ncols, c->w, x, y);
}

/* The input as the DAC delivers it (k x ncols, in activation units): |x| rounded to the DAC's grid
 * and clipped at x_max (sign kept), as the forward's pipeline reads it; with no DAC, x itself. */
static const float *dac_input_(const xb_xnet *xn, const xlayer *l, int64_t n, const float *x, float *buf) {
    if (xn->hw.dac_bits <= 0) return x;
    const float top = (float)((1L << xn->in_bits) - 1), xm = (float)l->x_max;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float q = rintf(fabsf(x[i]) / xm * top);
        q = q > top ? top : q;
        buf[i] = copysignf(q / top * xm, x[i]);
    }
    return buf;
}

/* Straight-through mask of the DAC: the gradient passes where the input was inside the DAC's range
 * [-x_max, x_max] and is zero where it was clipped. */
static void dac_mask_(const xb_xnet *xn, const xlayer *l, int64_t n, const float *x, float *dx) {
    if (xn->hw.dac_bits <= 0) return;
    const float xm = (float)l->x_max;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) > xm) dx[i] = 0;
}

/* dx = M^T dy through the weights the backward reads: the programmed effective weights (hardware) or
 * the float ones; then the DAC's clip mask. */
static xb_status op_backward_input_(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dx) {
    xb_xnet *xn = ctx;
    xlayer *l = NULL;
    xb_status st = layer_of_(xn, c, &l);
    if (st) return st;
    if (l->digital || xn->bwd == XB_XBWD_FLOAT) xb_mm_float_backward_input(c, dy, dx);
    else cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->k, c->ncols, c->rows_out, 1.0f, l->weff, c->k, dy,
                     c->ncols, 0.0f, dx, c->ncols);
    if (!l->digital) dac_mask_(xn, l, (int64_t)c->k * c->ncols, x, dx);
    return XB_OK;
}

/* dW += dy xq^T with xq the input the tiles saw (after the DAC). */
static xb_status op_backward_weight_(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dw) {
    xb_xnet *xn = ctx;
    xlayer *l = NULL;
    xb_status st = layer_of_(xn, c, &l);
    if (st) return st;
    const int64_t n = (int64_t)c->k * c->ncols;
    float *buf = NULL;
    if (!l->digital && xn->hw.dac_bits > 0 && xn->bwd != XB_XBWD_FLOAT) {
        buf = xb_try_malloc((size_t)n * sizeof(float));
        if (!buf) return xb_errorf(XB_ERR_NOMEM, "crossbar layer %s: no memory for the backward's %lld inputs",
                                   l->st.name, (long long)n);
        x = dac_input_(xn, l, n, x, buf);
    }
    xb_mm_float_backward_weight(c, x, dy, dw);
    xb_free(buf);
    return XB_OK;
}

xb_mm_op xb_xnet_op(xb_xnet *xn) {
    xb_mm_op op = {xn, op_forward_, op_backward_input_, op_backward_weight_, NULL};
    return op;
}

void xb_xnet_install_op_(xb_xnet *xn) {
    xb_mm_op op = xb_xnet_op(xn);
    xb_model_set_op(xn->m, &op);
}
