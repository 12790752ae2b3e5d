/* xcal.c -- calibration of a crossbar network from data: input ranges (DAC full scale) and ADC full
 * scales as a nearest-rank percentile of |value| over the sampled conversions, and a digital gain per
 * layer (least squares against the float product).  The pipeline (xforward.c) feeds the samples. */
#include "xnet_internal.h"

void xl_cal_add(cal_ *c, const float *v, int64_t n) {
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

double xl_cal_merge(float *buf, int64_t slot, int64_t nch, const int64_t *n, const float *mx, double p) {
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

void xl_calibrate_input(xb_xnet *xn, xlayer *l, int64_t n, const float *x) {
    cal_ c = {xn->cal, 0, XL_CAL_SAMPLES, n / XL_CAL_SAMPLES + 1, 0, 0};
    xl_cal_add(&c, x, n);
    double v = xn->hw.input_percentile >= 100 ? c.maxabs : xb_percentile_abs(c.buf, c.n, xn->hw.input_percentile);
    l->x_max = v > 0 ? v : 1.0;
    l->x_set = 1;
    l->st.input_full_scale = l->x_max;
}

/* Digital gain of a layer (calibration): g = <Y_float, Y_hw> / <Y_hw, Y_hw> over the calibration call,
 * the least-squares scalar that maps the hardware output onto the float product; applied to y now (so
 * later layers calibrate on corrected outputs) and to every later product through coef / W_eff. */
void xl_calibrate_gain(xb_xnet *xn, xlayer *l, int ncols, const float *w, const float *x, float *y) {
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
    for (int64_t i = 0; i < (int64_t)ro * k; i++) l->weff[i] = (float)(g * l->weff[i]); /* the backward reads it */
    if (l->weff_bwd)
        for (int64_t i = 0; i < (int64_t)ro * k; i++) l->weff_bwd[i] = (float)(g * l->weff_bwd[i]);
    if (!l->tiled) {
        if (l->vnoise)
            for (int64_t i = 0; i < (int64_t)ro * k; i++) l->vnoise[i] = (float)(g * g * l->vnoise[i]);
        if (l->vref)
            for (int64_t i = 0; i < (int64_t)l->g.ct * k; i++) l->vref[i] = (float)(g * g * l->vref[i]);
    } else {
        for (int t = 0; t < l->g.slices; t++) l->coef[t] *= g;
    }
}

xb_status xb_xnet_calibrate(xb_xnet *xn, int n, const float *x) {
    XB_ASSERT(xn->programmed && "xb_xnet_program before xb_xnet_calibrate");
    if (n < 1) return xb_errorf(XB_ERR_ARG, "calibration needs at least one image");
    xb_status st = xb_model_set_batch(xn->m, n);
    if (st) return st;
    int was = xn->attached;
    xb_xnet_attach(xn);
    xb_model_train_mode(xn->m, 0);
    xn->calibrating = 1;
    st = xb_model_forward(xn->m, n, x, NULL, NULL);
    xn->calibrating = 0;
    if (!was) xb_xnet_detach(xn);
    xb_xnet_reset_stats(xn);
    return st;
}
