/* update.c -- writing conductance changes during on-chip training (methods.md item 6, TxSim; the
 * [update] section of docs/hardware.md is the reference with the sources of every formula).
 *
 * The training loop keeps conductances as its state.  A weight change becomes per-cell conductance
 * changes (xb_update_weight_cells: which cells of the differential pair and which bit slice), and each
 * cell's requested change dG is written by the device model (xb_device_update):
 *   1. pulses:  with dg_min_s > 0 the change is a whole number n of pulses (nearest or stochastic
 *               rounding of |dG|/dg_min_s); dG_q = sign(dG) n dg_min_s.  dg_min_s = 0: continuous.
 *   2. model:   linear:     G + dG_q
 *               txsim:      G + dG_q f(G) + gamma sigma0 sqrt(|dG_q| range) N(0,1)   (one shot)
 *               softbounds: n pulses, each changing G by a step proportional to its distance to the
 *                           bound it moves toward (aihwkit SoftBoundsDevice), with multiplicative
 *                           cycle-to-cycle noise; continuous: the n -> infinity limit (exponential).
 *   3. clamp:   to [g_min, g_max] (softbounds: after every pulse, as aihwkit clips per pulse).
 *
 * Randomness: element i of an array draws only from xb_rng_fork(rng, i), in the order: one uniform
 * (stochastic rounding), then the normals of its model.  The fork is made only for elements that need
 * a draw, so deterministic configs cost no rng work, and any split of an array (xb_device_update_at
 * with the piece's offset) gives the same bits as one call. */
#include "xb_xbar.h"

#include <math.h>

int xb_update_is_ideal(const xb_hw *hw) {
    return hw->update.model == XB_UPDATE_LINEAR && hw->update.dg_min_s == 0;
}

/* The lazily forked random stream of one element. */
typedef struct elem_rng_ {
    const xb_rng *parent;
    uint64_t index;
    int ready;
    xb_rng r;
} elem_rng_;

static xb_rng *elem_rng_get_(elem_rng_ *e) {
    if (!e->ready) {
        xb_rng_fork(e->parent, e->index, &e->r);
        e->ready = 1;
    }
    return &e->r;
}

/* Whole pulses for a request of |dG| = a siemens (step > 0). */
static double pulse_count_(const xb_update_cfg *u, double a, double step, elem_rng_ *er) {
    double x = a / step;
    if (!(x < XB_UPDATE_MAX_PULSES)) x = XB_UPDATE_MAX_PULSES;
    if (u->pulse_rounding == XB_PULSE_STOCHASTIC) {
        double fl = floor(x);
        return fl + (xb_rng_uniform(elem_rng_get_(er)) < x - fl ? 1.0 : 0.0);
    }
    return rint(x);
}

/* TxSim one-shot write of a (quantized) change dq at conductance G (inside the range). */
static double txsim_(const xb_update_cfg *u, double G, double dq, double gmin, double gmax, elem_rng_ *er) {
    const double range = gmax - gmin;
    double f = dq > 0 ? 1.0 - u->nonlinearity * (G - gmin) / range : 1.0 - u->nonlinearity * (gmax - G) / range;
    if (f < 0) f = 0; /* v > 1 (or a start at the far bound): a write never moves against its sign [R] */
    double gn = G + dq * f;
    const double amp = u->write_noise * u->write_noise_sigma;
    if (amp > 0) gn += amp * sqrt(fabs(dq) * range) * xb_rng_normal(elem_rng_get_(er));
    return gn;
}

/* Soft bounds, n pulses toward g_max (up) or g_min.  *hit: -1 / +1 when a pulse was clamped. */
static double softbounds_(const xb_update_cfg *u, double G, int up, double n, double gmin, double gmax,
                          elem_rng_ *er, int *hit) {
    const double range = gmax - gmin;
    /* aihwkit's step dw_min (1 +- up_down)(1 - w/b) with w in [-b, b] mapped onto [g_min, g_max] */
    const double a = 2.0 * u->dg_min_s * (up ? 1.0 + u->up_down : 1.0 - u->up_down) / range;
    const double bound = up ? gmax : gmin;
    if (u->write_noise_ctoc > 0) {
        xb_rng *r = elem_rng_get_(er);
        for (double k = 0; k < n; k++) {
            double step = a * (bound - G) * (1.0 + u->write_noise_ctoc * xb_rng_normal(r));
            G += step;
            if (G > gmax) { G = gmax; *hit = 1; }
            else if (G < gmin) { G = gmin; *hit = -1; }
        }
        return G;
    }
    if (n <= 0) return G;
    if (a >= 1) { /* one pulse reaches (a > 1: overshoots) the bound; only configs built in code get here */
        if (a > 1 && G != bound) *hit = up ? 1 : -1;
        return bound;
    }
    return bound - (bound - G) * pow(1.0 - a, n); /* distance to the bound shrinks by (1 - a) per pulse */
}

/* The continuous limit of soft bounds: dG/dn = a (bound - G), n = |dq| / dg_min_s. */
static double softbounds_continuous_(const xb_update_cfg *u, double G, double dq, double gmin, double gmax) {
    const double range = gmax - gmin;
    const int up = dq > 0;
    const double rate = 2.0 * (up ? 1.0 + u->up_down : 1.0 - u->up_down) / range;
    const double bound = up ? gmax : gmin;
    return bound - (bound - G) * exp(-rate * fabs(dq));
}

void xb_device_update_at(const xb_hw *hw, int64_t i0, int64_t n, double *g, const double *dg, const xb_rng *rng,
                         xb_update_counts *cnt) {
    const xb_update_cfg *u = &hw->update;
    const double gmin = hw->g_min_s, gmax = hw->g_max_s, step = u->dg_min_s;
    for (int64_t i = 0; i < n; i++) {
        double d = dg[i], G = g[i];
        if (!isfinite(d) || !isfinite(G)) { cnt->skipped++; continue; }
        if (d == 0) continue;
        cnt->updates++;
        int hit = 0; /* -1 / +1: the last clamp was at g_min / g_max */
        if (G < gmin) { G = gmin; hit = -1; }
        else if (G > gmax) { G = gmax; hit = 1; }
        elem_rng_ er = {rng, (uint64_t)(i0 + i), 0, {{0}, 0, 0}};
        double np = 0, dq = d;
        if (step > 0) {
            np = pulse_count_(u, fabs(d), step, &er);
            cnt->pulses += (int64_t)np;
            dq = copysign(np * step, d);
        }
        double gn = G;
        if (np > 0 || step == 0) {
            switch (u->model) {
            case XB_UPDATE_TXSIM: gn = txsim_(u, G, dq, gmin, gmax, &er); break;
            case XB_UPDATE_SOFTBOUNDS:
                gn = step > 0 ? softbounds_(u, G, d > 0, np, gmin, gmax, &er, &hit)
                              : softbounds_continuous_(u, G, dq, gmin, gmax);
                break;
            default: gn = G + dq; break; /* linear (and any out-of-range model value) */
            }
        }
        if (gn < gmin) { gn = gmin; hit = -1; }
        else if (gn > gmax) { gn = gmax; hit = 1; }
        if (hit < 0 && gn == gmin) cnt->clamped_gmin++;
        else if (hit > 0 && gn == gmax) cnt->clamped_gmax++;
        g[i] = gn;
    }
}

void xb_device_update(const xb_hw *hw, int64_t n, double *g, const double *dg, const xb_rng *rng,
                      xb_update_counts *cnt) {
    xb_device_update_at(hw, 0, n, g, dg, rng, cnt);
}

void xb_update_weight_cells(const xb_hw *hw, const xb_map_geom *geom, double dw_code, double *dg_cells) {
    const int S = geom->slices, ns = geom->n_sign;
    if (S < 1 || S > XB_MAX_SLICES || ns < 1 || ns > 2) return; /* not a geometry from xb_map_geom_init */
    for (int q = 0; q < ns * S; q++) dg_cells[q] = 0;
    if (!isfinite(dw_code) || dw_code == 0) return;
    const int t = hw->update.slice_update == XB_SLICE_LSB ? 0 : S - 1;
    const double dc = dw_code / ldexp(1.0, geom->slice_bits * t); /* codes of slice t */
    const double dgv = geom->g_unit_s * dc;
    if (ns == 1) {
        dg_cells[t] = dgv; /* offset: the weight cell alone; the reference stays */
    } else if (hw->update.pair_update == XB_PAIR_SIGN) {
        if (dgv > 0) dg_cells[t] = dgv;   /* potentiate G+ */
        else dg_cells[S + t] = -dgv;      /* potentiate G- */
    } else {
        dg_cells[t] = 0.5 * dgv;
        dg_cells[S + t] = -0.5 * dgv;
    }
}
