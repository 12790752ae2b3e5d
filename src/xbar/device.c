/* device.c -- what happens to a cell between the target conductance and the one that is read:
 * programming variation, conductance drift and stuck-at faults (methods.md S4).  Read noise is applied
 * per MVM in xlayer.c.
 *
 * Order per cell: target G0 -> variation -> drift -> faults.
 *   variation  gaussian relative:  G = G0 (1 + sigma N)       gaussian absolute: G = G0 + sigma N (siemens)
 *              lognormal:          G = G0 exp(sigma N)         (median-preserving; mean G0 exp(sigma^2/2))
 *              then G is kept >= 0 (variation_clip = zero) or inside [g_min, g_max] (= range); the cells
 *              moved by that are counted.
 *   drift      G(t) = G(t0) (t/t0)^-nu, nu per cell ~ max(0, N(drift_nu, drift_nu_sigma)).
 *   faults     with probability stuck_at_gmin_rate the cell is exactly g_min, with stuck_at_gmax_rate
 *              exactly g_max (one uniform draw per cell decides), whatever was programmed.
 * Each effect draws from its own fork of the tile's rng, one draw (or normal) per cell in cell order,
 * so results do not depend on which other effects are on. */
#include "xb_xbar.h"

#include <math.h>

double xb_drift_factor(double nu, double t_s, double t0_s) {
    XB_ASSERT(t_s > 0 && t0_s > 0);
    return pow(t_s / t0_s, -nu);
}

void xb_device_program(const xb_hw *hw, int64_t n, double *g, const xb_rng *rng, xb_device_counts *cnt) {
    xb_rng rv, rf, rd;
    xb_rng_fork(rng, 0, &rv);
    xb_rng_fork(rng, 1, &rf);
    xb_rng_fork(rng, 2, &rd);
    const double gmin = hw->g_min_s, gmax = hw->g_max_s, sig = hw->variation_sigma;
    cnt->cells += n;
    if (hw->variation != XB_VAR_NONE && sig > 0) {
        const double lo = hw->variation_clip == XB_GCLIP_RANGE ? gmin : 0.0;
        const double hi = hw->variation_clip == XB_GCLIP_RANGE ? gmax : INFINITY;
        for (int64_t i = 0; i < n; i++) {
            double z = xb_rng_normal(&rv), v;
            if (hw->variation == XB_VAR_LOGNORMAL) v = g[i] * exp(sig * z);
            else if (hw->variation_mode == XB_NOISE_RELATIVE) v = g[i] * (1.0 + sig * z);
            else v = g[i] + sig * z;
            if (v < lo) { v = lo; cnt->clipped++; }
            else if (v > hi) { v = hi; cnt->clipped++; }
            g[i] = v;
        }
    }
    if (hw->drift_nu > 0 || hw->drift_nu_sigma > 0) {
        const double lr = log(hw->drift_t_s / hw->drift_t0_s);
        if (hw->drift_nu_sigma > 0) {
            for (int64_t i = 0; i < n; i++) {
                double nu = hw->drift_nu + hw->drift_nu_sigma * xb_rng_normal(&rd);
                if (nu < 0) nu = 0;
                g[i] *= exp(-nu * lr);
            }
        } else {
            const double f = xb_drift_factor(hw->drift_nu, hw->drift_t_s, hw->drift_t0_s);
            for (int64_t i = 0; i < n; i++) g[i] *= f;
        }
    }
    const double p0 = hw->stuck_at_gmin_rate, p1 = hw->stuck_at_gmax_rate;
    if (p0 > 0 || p1 > 0) {
        for (int64_t i = 0; i < n; i++) {
            double u = xb_rng_uniform(&rf);
            if (u < p0) { g[i] = gmin; cnt->stuck_gmin++; }
            else if (u < p0 + p1) { g[i] = gmax; cnt->stuck_gmax++; }
        }
    }
}
