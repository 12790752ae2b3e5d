/* xcal.c -- calibration of a crossbar network from data: input ranges (DAC full scale) and ADC full
 * scales as the nearest-rank percentile (the ceil(p/100 n)-th smallest) of |value| over every input entry
 * or every conversion of the layer's calibration call, or, past XL_CAL_SAMPLES values, over a systematic
 * sample of every stride-th of them (stride = ceil(n / XL_CAL_SAMPLES), in a fixed order: the same for
 * every thread count); and a digital gain per layer (least squares against the float product).  The
 * pipeline (xforward.c) feeds the samples.  A calibration that yields nothing usable (a range of 0, a gain
 * that is not finite and positive) falls back to 1 and is counted in the layer's statistics. */
#include "xnet_internal.h"

int64_t xl_cal_kept(int64_t total) {
    const int64_t stride = total > XL_CAL_SAMPLES ? (total + XL_CAL_SAMPLES - 1) / XL_CAL_SAMPLES : 1;
    return total / stride;
}

cal_ xl_cal_at(float *base, int64_t total, int64_t g0, int64_t n) {
    const int64_t stride = total > XL_CAL_SAMPLES ? (total + XL_CAL_SAMPLES - 1) / XL_CAL_SAMPLES : 1;
    cal_ c = {base + g0 / stride, 0, (g0 + n) / stride - g0 / stride, stride, g0 % stride, 0};
    return c;
}

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

/* the nearest-rank p-th percentile of the samples, or their exact maximum m at p = 100 */
static double cal_value_(float *v, int64_t n, float m, double p) {
    return p >= 100 || n == 0 ? m : xb_percentile_abs(v, n, p);
}

void xl_calibrate_adc(xb_xnet *xn, xlayer *l, float *base, int64_t nkept, float mx) {
    double v = cal_value_(base, nkept, mx, xn->hw.adc_percentile);
    l->st.fallback_adc = !(v > 0 && isfinite(v));
    if (l->st.fallback_adc) v = 1.0; /* all-zero signals: any full scale reads them; 1 code unit */
    l->fs = v;
    l->fs_set = 1;
    l->st.adc_full_scale_a = l->fs * xn->hw.v_read_v * l->g.g_unit_s;
}

void xl_calibrate_input(xb_xnet *xn, xlayer *l, int64_t n, const float *x) {
    cal_ c = xl_cal_at(xn->cal, n, 0, n);
    xl_cal_add(&c, x, n);
    double v = cal_value_(c.buf, c.n, c.maxabs, xn->hw.input_percentile);
    l->st.fallback_input = !(v > 0 && isfinite(v));
    if (l->st.fallback_input) v = 1.0; /* all-zero inputs: any range holds them */
    l->x_max = v;
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
    double g = yy > 0 ? ry / yy : 0.0;
    l->st.fallback_gain = !(g > 0 && isfinite(g));
    if (l->st.fallback_gain) g = 1.0; /* a zero hardware output, or one not positively correlated with the float one */
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
    if (!xn->programmed)
        return xb_errorf(XB_ERR_STATE, "crossbar network: calibration before programming. HINT: call xb_xnet_program "
                         "before xb_xnet_calibrate");
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
