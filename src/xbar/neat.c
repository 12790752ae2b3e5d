/*
 * neat.c -- NEAT's analysis of 1T-1R cells (include/xb_neat.h, docs/neat.md): the tolerance metric, the cut-off
 * conductance, and per layer the weight cut-off, the share of weights in the linear range and the heterogeneous
 * gate voltage.
 */
#include "xb_neat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TM_POINTS 64

double xb_cell_tolerance(const xb_cell *c, double g, double v_max) {
    XB_ASSERT(c && v_max > 0);
    if (c->type != XB_CELL_1T1R || !(g > 0)) return 0;
    const double g0 = xb_cell_g0(c), geff0 = g * g0 / (g + g0);
    double worst = 0;
    for (int k = 1; k <= TM_POINTS; k++) {
        const double v = v_max * k / TM_POINTS;
        double i;
        xb_cell_1t1r_current(c, g, v, 0, NULL, &i, NULL, NULL, NULL, NULL);
        const double d = fabs(i / v - geff0) / geff0;
        if (d > worst) worst = d;
    }
    return worst;
}

int xb_cell_g_cut(const xb_cell *c, double v_max, double tol, double g_lo, double g_hi, double *g_cut) {
    XB_ASSERT(c && g_cut && g_hi >= g_lo && g_lo >= 0);
    if (xb_cell_tolerance(c, g_hi, v_max) < tol) { *g_cut = g_hi; return 1; }
    double lo = g_lo, hi = g_hi;
    if (!(xb_cell_tolerance(c, lo, v_max) < tol)) { *g_cut = lo; return 0; }
    while (hi - lo > 1e-10 * hi) {
        const double mid = 0.5 * (lo + hi);
        if (xb_cell_tolerance(c, mid, v_max) < tol) lo = mid; else hi = mid;
    }
    *g_cut = lo;
    return 0;
}

/* The weight cut-off over the scale: where the mapping puts g_cut, (g_cut - g_min) / (g_max - g_min) in the
 * conductances the weights map onto (the small-signal ones with [cell] compensate). */
static double cut_frac_(const xb_hw *hw, const xb_cell *c, double g_cut) {
    if (!hw->cell_compensate) return (g_cut - hw->g_min_s) / (hw->g_max_s - hw->g_min_s);
    const double a = xb_cell_small_signal(c, hw->g_min_s), b = xb_cell_small_signal(c, hw->g_max_s);
    return (xb_cell_small_signal(c, g_cut) - a) / (b - a);
}

static int cmp_f_(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

xb_status xb_neat_layers(const xb_hw *hw, const xb_model *m, double tol, const double *vgrid, int nv,
                         double percentile, xb_neat_layer *out) {
    return xb_neat_layers_scaled(hw, m, tol, vgrid, nv, percentile, NULL, out);
}

xb_status xb_neat_layers_scaled(const xb_hw *hw, const xb_model *m, double tol, const double *vgrid, int nv,
                                double percentile, const double *scales, xb_neat_layer *out) {
    XB_ASSERT(hw && m && out);
    if (hw->cell.type != XB_CELL_1T1R)
        return xb_errorf(XB_ERR_ARG, "NEAT: %s has resistor cells. HINT: set [cell] type = 1t1r and the transistor "
                         "(docs/hardware.md)", hw->path[0] ? hw->path : "the hardware config");
    if (hw->scheme != XB_SCHEME_DIFFERENTIAL || hw->weight_bits != 0)
        return xb_errorf(XB_ERR_ARG, "NEAT: the weight cut-off assumes one cell per weight sign (scheme = differential, "
                         "no weight_bits slicing) in %s. HINT: use scheme = differential with continuous conductances "
                         "or levels = N", hw->path[0] ? hw->path : "the hardware config");
    if (!(tol > 0) || nv < 1 || !(percentile > 0 && percentile <= 100))
        return xb_errorf(XB_ERR_ARG, "NEAT: tolerance %g, %d gate voltages, percentile %g. HINT: tolerance > 0 (0.025), "
                         "at least one gate voltage, percentile in (0, 100]", tol, nv, percentile);
    for (int k = 0; k < nv; k++)
        if (!(vgrid[k] > hw->cell.v_t_v) || (k && !(vgrid[k] > vgrid[k - 1])))
            return xb_errorf(XB_ERR_ARG, "NEAT: gate voltage %g V in the grid is %s. HINT: increasing voltages above "
                             "v_t_v = %g V", vgrid[k], vgrid[k] > hw->cell.v_t_v ? "not increasing" : "below threshold",
                             hw->cell.v_t_v);
    const double gmin = hw->g_min_s, gmax = hw->g_max_s, vmax = hw->v_read_v;
    double *gcut = malloc((size_t)nv * sizeof(double));   /* the grid's cut-offs as fractions of the scale */
    if (!gcut) return xb_errorf(XB_ERR_NOMEM, "NEAT: out of memory");
    for (int k = 0; k < nv; k++) {
        xb_cell c = hw->cell;
        c.v_gate_v = vgrid[k];
        xb_cell_g_cut(&c, vmax, tol, gmin, gmax, &gcut[k]);
        gcut[k] = cut_frac_(hw, &c, gcut[k]);
    }
    const int n = xb_model_n_mapped(m);
    xb_status st = XB_OK;
    for (int i = 0; i < n && !st; i++) {
        const char *name;
        int param;
        xb_model_mapped_info(m, i, &name, &param, NULL, NULL);
        const xb_param *p = xb_model_param(m, param);
        const float *w = xb_model_params((xb_model *)m) + p->offset;
        xb_neat_layer *L = &out[i];
        memset(L, 0, sizeof *L);
        L->name = name;
        L->digital = xb_hw_layer_digital(hw, name, i, n);
        const xb_cell c = xb_hw_layer_cell(hw, name);
        L->v_gate_v = c.v_gate_v;
        L->no_cut = xb_cell_g_cut(&c, vmax, tol, gmin, gmax, &L->g_cut_s);
        L->scale = scales && scales[i] > 0 ? scales[i] : xb_map_scale(hw, p->numel, w);
        L->w_cut = L->scale * cut_frac_(hw, &c, L->g_cut_s);
        float *a = malloc((size_t)(p->numel + 1) * sizeof(float));
        if (!a) { st = xb_errorf(XB_ERR_NOMEM, "NEAT: out of memory"); break; }
        int64_t lin = 0;
        const float wc = (float)L->w_cut;   /* as the clip writes it (float), so that clipped weights count as inside */
        for (int64_t j = 0; j < p->numel; j++) {
            a[j] = fabsf(w[j]);
            lin += a[j] <= wc;
        }
        L->linear_share = p->numel ? (double)lin / (double)p->numel : 1;
        qsort(a, (size_t)p->numel, sizeof(float), cmp_f_);   /* nearest rank, as xb_percentile_abs */
        int64_t r = (int64_t)ceil(percentile / 100 * (double)p->numel) - 1;
        if (r < 0) r = 0;
        L->w_pct = p->numel ? a[r] : 0;
        free(a);
        L->v_gate_hetero = vgrid[nv - 1];
        for (int k = 0; k < nv; k++)
            if ((float)(L->scale * gcut[k]) >= (float)L->w_pct) {   /* in float, as weights and clips are */
                L->v_gate_hetero = vgrid[k];
                L->hetero_covered = 1;
                break;
            }
    }
    free(gcut);
    return st;
}
