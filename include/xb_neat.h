/*
 * xb_neat.h -- NEAT, non-linearity aware training for 1T-1R crossbars (arXiv 2012.00261, methods.md item 2;
 * docs/neat.md): the tolerance metric of a cell, the cut-off conductance G_cut(V_g), each layer's weight cut-off,
 * the share of its weights in the transistor's linear range, and the heterogeneous per-layer gate voltages.  The
 * clip-and-retrain loop is `xbar train --neat-hw` (a weight constraint, src/prune/wct.c, with these bounds).
 *
 * [R] parts (methods.md): the metric's form, tm(G) = max over v in (0, v_max] of |G_eff(v) - G_eff(0+)| /
 * G_eff(0+) with G_eff(v) = I(G, v, 0) / v the cell's secant conductance and G_eff(0+) = G g0 / (G + g0),
 * g0 = beta (v_gate - v_t) its small-signal limit; the linear weight cut-off W_cut = s (G_cut - g_min) /
 * (g_max - g_min) of the differential mapping with the layer's clip scale s (with [cell] compensate, where the
 * weights map onto small-signal conductances, the same in those: s (ss(G_cut) - ss(g_min)) / (ss(g_max) -
 * ss(g_min)), ss = xb_cell_small_signal); the heterogeneous rule (per layer
 * the lowest gate voltage of a grid whose G_cut covers the layer's `percentile`-th percentile of |W|, mapped).
 */
#ifndef XB_NEAT_H
#define XB_NEAT_H

#include "xb_cell.h"
#include "xb_model.h"
#include "xb_xbar.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tolerance metric of a 1T-1R cell of conductance g (S) read at voltages up to v_max (V): the largest
 * relative change of its secant conductance from its small-signal value, over 64 voltages spread evenly in
 * (0, v_max] (v_max included).  0 for a resistor cell. */
double xb_cell_tolerance(const xb_cell *c, double g, double v_max);

/* The cut-off conductance: the largest g in [g_lo, g_hi] whose tolerance metric is below tol, by bisection
 * to 1e-10 relative (the metric grows with g).  Returns 1 and g_hi when the whole range is linear (no cut-off),
 * 0 otherwise; *g_cut = g_lo when even g_lo is not linear.  XB_ERR_ARG for bad arguments via the status of
 * xb_cell_validate is the caller's to check. */
int xb_cell_g_cut(const xb_cell *c, double v_max, double tol, double g_lo, double g_hi, double *g_cut);

typedef struct xb_neat_layer {
    const char *name;      /* the layer's name in the model (valid while the model lives) */
    int digital;           /* kept digital on this hardware: no cut-off */
    double v_gate_v;       /* its gate voltage in the config ([cell] v_gate_v or its v_gate_layers entry) */
    double g_cut_s;        /* G_cut at that gate voltage */
    int no_cut;            /* the whole conductance range is linear there */
    double scale;          /* the mapping's clip scale s of its weights ([mapping] w_clip) */
    double w_cut;          /* its weight cut-off: where the mapping puts G_cut (header comment) */
    double linear_share;   /* the share of its weights with |w| <= w_cut */
    double w_pct;          /* the percentile of |w| the heterogeneous rule covers */
    double v_gate_hetero;  /* the lowest gate voltage of the grid whose cut-off covers w_pct (the grid's highest
                              when none does) */
    int hetero_covered;    /* 1 when some grid voltage covers it */
} xb_neat_layer;

/* One entry per mapped layer of m (out: xb_model_n_mapped(m) entries) on hardware hw, whose cell must be 1t1r
 * with unsliced differential cells (XB_ERR_ARG with a HINT otherwise).  tol: the tolerance (0.025 in the paper);
 * vgrid (nv > 0, increasing): the gate voltages the heterogeneous rule chooses from; percentile in (0, 100]. */
xb_status xb_neat_layers(const xb_hw *hw, const xb_model *m, double tol, const double *vgrid, int nv,
                         double percentile, xb_neat_layer *out);
/* The same with fixed mapping scales (one per mapped layer, > 0; NULL: from the weights), as xbar eval --w-scales
 * maps clipped weights with their pre-clip scales. */
xb_status xb_neat_layers_scaled(const xb_hw *hw, const xb_model *m, double tol, const double *vgrid, int nv,
                                double percentile, const double *scales, xb_neat_layer *out);

#ifdef __cplusplus
}
#endif
#endif
