/* xforward.c -- the forward product of one mapped layer through its programmed tiles (fast path: one
 * GEMM with the effective weights, DAC and read noise; tiled path: per row tile, slice and input plane,
 * ADC, shift-add).  xnet.c builds and programs the network, xcal.c calibrates it, xop.c is the
 * mapped-matmul operator the model calls. */
#include "xnet_internal.h"

/* ------------------------------------------------------------------------------------------------ */
/* Forward                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

/* in-place ADC with clip count: v becomes the integer code clamp(rint(v / step), lo, hi); the step is
 * applied once, after the shift-add.  A NaN signal reads 0 (its output is made NaN from the input; see
 * tiled_chunk_).  Serial: callers parallelise over chunks. */
static int64_t quant_(int64_t n, float *v, float step, float lo, float hi) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) {
        float q = rintf(v[i] / step);
        c += (q < lo) | (q > hi);
        q = q < lo ? lo : q > hi ? hi : q;
        v[i] = q == q ? q : 0.0f;
    }
    return c;
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

/* tiled (ADC) path, chunk [c0, c0+nc).  cal != NULL: collect |signals| before the ADC, no output.
 * The ADC codes are shift-added over slices, planes, passes and row tiles in int64, exactly (xl_layer_forward
 * refuses layers whose sums could overflow), and every output is converted to float once, with the layer's
 * scale.  A digital reference (offset scheme, column ADC), not an ADC code, is accumulated in double. */
static void tiled_chunk_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, int64_t c0, int nc,
                         float *buf, xb_rng *rng, chunk_stats_ *cs, cal_ *cal) {
    const xb_hw *hw = &xn->hw;
    const xb_map_geom *g = &l->g;
    const int k = l->k, ro = l->rows_out, R = g->R, S = g->slices, P = xn->planes, PN = P * nc, nN = l->nN;
    const int N = nN > ro ? nN : ro, SR = S * ro, SN = S * nN, wc = g->wcols;
    float *Xp = buf, *X2 = Xp + (size_t)R * PN, *sig = X2 + (size_t)R * PN, *sigN = sig + (size_t)SR * PN;
    float *var = sigN + (size_t)S * N * PN, *csum = var + (size_t)S * N * PN, *z = csum + PN;
    int64_t *acc = (int64_t *)(void *)(((uintptr_t)(z + PN) + 7) & ~(uintptr_t)7); /* ro x nc, 8-byte aligned */
    double *racc = (double *)(void *)(acc + (size_t)ro * nc);                       /* nc: digital reference */
    const int diffadc = hw->adc_signal == XB_ADC_DIFFERENCE;
    const int dac = hw->dac_bits > 0, d = hw->dac_bits;
    const float top = dac ? (float)((1L << xn->in_bits) - 1) : 1.0f, dmax = dac ? (float)((1L << d) - 1) : 1.0f;
    const unsigned dmask = dac ? (1u << d) - 1 : 0;
    const float xm = (float)l->x_max;
    const float atop = diffadc ? (float)((1L << (hw->adc_bits - 1)) - 1) : (float)((1L << hw->adc_bits) - 1);
    const float astep = (float)(l->fs / atop), alo = diffadc ? -atop : 0.0f;
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
                if (cal) { xl_cal_add(cal, sig, (int64_t)SR * PN); continue; }
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
                    xl_cal_add(cal, sig, (int64_t)SR * PN);
                    if (nN) xl_cal_add(cal, sigN, (int64_t)SN * PN);
                    continue;
                }
                cs->adc_conv += (int64_t)(SR + SN) * PN;
                cs->adc_clip += quant_((int64_t)SR * PN, sig, astep, alo, atop);
                if (nN) cs->adc_clip += quant_((int64_t)SN * PN, sigN, astep, alo, atop);
                /* digital subtraction of the N side's codes: per output or per column tile (the digital reference
                 * is not a code: it goes to racc in the shift-add) */
                if (l->ntype != NT_DIGITAL)
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
}

/* Values chunk [c0, c0+nc) adds to the calibration sample in tiled_chunk_: per row tile and pass (the
 * negative pass of split inputs only where the tile's inputs in the chunk have a negative value), every
 * slice, output and plane of the signal, and for column ADCs the N side's as well. */
static int64_t cal_values_(const xb_xnet *xn, const xlayer *l, int ncols, const float *x, int64_t c0, int nc) {
    const int k = l->k, R = l->g.R;
    const int64_t per_pass = (int64_t)l->g.slices * (l->rows_out + (xn->hw.adc_signal == XB_ADC_DIFFERENCE ? 0 : l->nN)) *
                             xn->planes * nc;
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
    int64_t adc_conv = 0, adc_clip = 0, dac_conv = 0, dac_clip = 0, *g0 = NULL, *cn = NULL;
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
#pragma omp parallel for schedule(dynamic, 1) num_threads(xn->nthreads) reduction(+ : adc_conv, adc_clip, dac_conv, dac_clip)
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
            fast_chunk_(xn, l, ncols, x, y, c0, nc, buf, &rc, &cs.dac_clip);
            if (xn->hw.dac_bits > 0) cs.dac_conv = (int64_t)l->k * nc;
        }
        adc_conv += cs.adc_conv; adc_clip += cs.adc_clip; dac_conv += cs.dac_conv; dac_clip += cs.dac_clip;
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
}

xb_status xl_layer_forward(xb_xnet *xn, xlayer *l, int ncols, const float *w, const float *x, float *y) {
    const xb_hw *hw = &xn->hw;
    const int ro = l->rows_out, k = l->k;
    const double t0 = xb_time_s();
    const int needs_x = hw->dac_bits > 0 || hw->adc_bits > 0;
    if (xn->calibrating && needs_x && hw->input_range == XB_RANGE_CALIBRATED)
        xl_calibrate_input(xn, l, (int64_t)k * ncols, x);
    if (needs_x && !l->x_set)
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: its input range is calibrated from data and not set yet. "
                         "HINT: call xb_xnet_calibrate after xb_xnet_program", l->st.name);
    if (l->tiled) { /* the shift-add sums +-code 2^(b t + d p) in int64 over slices, planes, passes and row tiles */
        double ws = 0, xs = 1;
        for (int t = 0; t < l->g.slices; t++) ws += ldexp(1.0, l->g.slice_bits * t);
        if (hw->dac_bits > 0) xs = (ldexp(1.0, hw->dac_bits * xn->planes) - 1) / (ldexp(1.0, hw->dac_bits) - 1);
        if (2.0 * l->g.rt * ldexp(1.0, hw->adc_bits) * ws * xs >= 0x1p63)
            return xb_errorf(XB_ERR_UNSUPPORTED, "crossbar layer %s: %d row tiles of %d-bit ADC codes shifted over %d weight "
                             "slices and %d input planes could overflow the 64-bit shift-add. HINT: use more rows per "
                             "array, or fewer weight, input or ADC bits", l->st.name, l->g.rt, hw->adc_bits, l->g.slices,
                             xn->planes);
    }
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

