/*
 * xb_cell.h -- non-linear crossbar cells: 1T-1R (a memristor in series with an access NMOS) and the exact
 * solve of a tile built from them (docs/solver.md, "Non-linear cells").
 *
 * The 1T-1R cell (i,j), the circuit of ../shared/tools/xbar_spice.py --cell 1t1r:
 *   row node (i,j) -> memristor of conductance G[i,j] -> internal node d = the NMOS drain;
 *   NMOS gate at v_gate_v (one common gate voltage), source and bulk at column node (i,j).
 * The transistor is SPICE's level-1 (Shichman-Hodges) NMOS with channel-length modulation in both regions
 * and no body effect: ngspice's LEVEL=1 with KP = beta_a_per_v2 (W = L), VTO = v_t_v, LAMBDA = lambda_per_v,
 * GAMMA = 0.  With vgs = V(g) - V(s), vds = V(d) - V(s) >= 0 and vov = vgs - v_t_v:
 *     cutoff      vov <= 0:          I = 0
 *     triode      0 <= vds < vov:    I = beta (vov - vds/2) vds (1 + lambda vds)
 *     saturation  vds >= vov > 0:    I = beta/2 vov^2 (1 + lambda vds)
 * The device is symmetric: with V(d) < V(s) drain and source swap, I = -f(V(g) - V(d), V(s) - V(d)).  I and
 * its first derivatives are continuous (C1).
 *
 * The tile: the linear circuit of xb_solve.h (drivers, row and column wire segments, sense resistors) with
 * every cell's conductance replaced by the cell above.  Eliminating each cell's internal node (one scalar
 * equation, G (V_r - V_d) = I_mos(V_d, V_c), monotone in V_d, solved by safeguarded Newton) leaves a
 * two-terminal element I(V_r, V_c) with exact derivatives, so the nodal equations keep the linear
 * solver's row and column nodes.  They are solved by damped Newton's method (docs/solver.md).
 */
#ifndef XB_CELL_H
#define XB_CELL_H

#include "xb_solve.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum xb_cell_type {
    XB_CELL_RESISTOR = 0,   /* a linear conductance G (the circuit of xb_solve.h) */
    XB_CELL_1T1R,           /* G in series with a level-1 NMOS, source at the column node */
    XB_CELL_TYPE_COUNT
} xb_cell_type;

typedef enum xb_mos_model {
    XB_MOS_LEVEL1 = 0,      /* SPICE level 1 (Shichman-Hodges), as above: ngspice's LEVEL=1 */
    XB_MOS_EKV,             /* EKV's smooth interpolation, C-infinity in the gate and drain voltages (weak to strong
                               inversion, triode to saturation): I = 2 n beta U_T^2 [L(x_f)^2 - L(x_r)^2] (1 + lambda
                               |V_d - V_s|), L(x) = ln(1 + e^x), x_f = V_P / (2 U_T), x_r = (V_P - (V_d - V_s)) / (2 U_T),
                               V_P = (V_g - V_s - V_t) / n, with the bulk (and so the reference) at the column node;
                               with n = 1 and U_T -> 0 it is level 1 in both directions */
    XB_MOS_MODEL_COUNT
} xb_mos_model;

typedef struct xb_cell {
    xb_cell_type type;
    xb_mos_model model;     /* the transistor's equations */
    double v_gate_v;        /* gate voltage (V), common to the tile */
    double beta_a_per_v2;   /* KP * W / L (A/V^2), > 0 */
    double v_t_v;           /* threshold voltage (V); v_gate_v - v_t_v > 0 */
    double lambda_per_v;    /* channel-length modulation (1/V), >= 0 */
    double ekv_n;           /* EKV: slope factor n >= 1 (default 1.3) */
    double ekv_ut_v;        /* EKV: thermal voltage U_T (V), > 0 (default 0.025852, 300 K) */
} xb_cell;

/* A resistor cell; and the defaults of xbar_spice.py's 1t1r cases (0.7 V gate, 2e-4 A/V^2, 0.4 V, 0.05/V). */
xb_cell xb_cell_resistor(void);
xb_cell xb_cell_1t1r_default(void);
const char *xb_cell_type_name(xb_cell_type t);        /* "resistor", "1t1r" */
const char *xb_mos_model_name(xb_mos_model m);        /* "level1", "ekv" */
xb_status xb_cell_type_parse(const char *s, xb_cell_type *out);
/* XB_ERR_ARG naming the parameter unless the cell is usable: finite parameters, beta > 0, lambda >= 0, a
 * positive gate overdrive v_gate_v > v_t_v (else every transistor is off) and, for EKV, n >= 1 and U_T > 0. */
xb_status xb_cell_validate(const xb_cell *c);

/* Transistor regimes, as xbar_spice.py counts them: forward (V(d) >= V(s)) 0..2, reverse (swapped) 3..5.  EKV has
 * no sharp regimes; it is counted by the same rules with vov = (V_g - V_s - V_t) / n. */
enum { XB_MOS_CUTOFF = 0, XB_MOS_TRIODE, XB_MOS_SAT, XB_MOS_REV_CUTOFF, XB_MOS_REV_TRIODE, XB_MOS_REV_SAT,
       XB_MOS_REGIMES };

/* The NMOS alone: drain current (drain -> source, A) for gate, drain and source voltages, its derivatives in
 * the drain and source voltages (S) and the regime.  Any output pointer but i may be NULL. */
void xb_nmos_iv(const xb_cell *c, double vg, double vd, double vs, double *i, double *di_dvd, double *di_dvs,
                int *regime);

/* One 1T-1R cell between row voltage vr and column voltage vc: the current from row to column (A), its
 * derivatives in vr and vc (S), the internal (drain) node's voltage vd and the transistor's regime.
 * vd_guess (may be NULL) warm-starts the internal solve.  Any output but i may be NULL.  Exact to a few ulps
 * of the node voltages: bisection-safeguarded Newton on the monotone internal equation. */
void xb_cell_1t1r_current(const xb_cell *c, double g, double vr, double vc, const double *vd_guess, double *i,
                          double *di_dvr, double *di_dvc, double *vd, int *regime);

/* The secant conductances of n cells read at v_read with the column at 0 V: out[k] = I(g[k], v_read, 0) / v_read
 * (out may be g).  With 1-bit input planes and no parasitics every driven cell sees exactly that, so the tile
 * reads as a linear one with these conductances (exact); with parasitics it is the linearization at the nominal
 * read (docs/solver.md measures how far it is from the Newton solve).  Resistor cells: out = g.  v_read > 0. */
void xb_cell_secant(const xb_cell *c, double v_read, int64_t n, const double *g, double *out);

/* The transistor's on-conductance at vds = 0 with the source at 0 V, g0 (beta (v_gate - v_t) for level 1); the
 * cell's small-signal conductance, g in series with it: g g0 / (g + g0); and its inverse, the memristor
 * conductance that gives the small-signal conductance t < g0: t g0 / (g0 - t).  Resistor cells: g itself. */
double xb_cell_g0(const xb_cell *c);
double xb_cell_small_signal(const xb_cell *c, double g);
double xb_cell_memristor_for(const xb_cell *c, double t);

/* ---- the exact non-linear tile solve ------------------------------------------------------------- */
typedef struct xb_cell_opts {
    int max_iter;           /* Newton iterations per input before it is an error; 0: 100 */
    double tol_rel;         /* converged when the largest node update <= tol_rel * max(max |V|, 1e-3) V, or the
                               error it leaves (rho / (1 - rho) times it, rho < 1/2 the contraction of the last two
                               undamped updates) is; 0: 1e-12 (the tolerance of xbar_spice.py's cross-check) */
    double chord_rel;       /* keep the last factorized Jacobian (a chord step: one solve, no factorization)
                               while the previous update was at most chord_rel * max(max |V|, 1e-3) V and each
                               chord update shrinks at least 4x (else refactor and redo the step); the answer
                               meets the same tolerance.  0: 0.1; < 0: a fresh Jacobian every iteration */
} xb_cell_opts;

typedef struct xb_cell_stats {
    double time_s;                    /* wall time of the whole call */
    int unknowns;                     /* nodes solved for (row and column nodes not fixed by ideal ends) */
    int iter_max;                     /* most Newton iterations any input needed */
    double iter_mean;                 /* mean over the batch */
    double fact_mean;                 /* Jacobian factorizations per input (mean) */
    int64_t regimes[XB_MOS_REGIMES];  /* cells in each regime at the solution, whole batch */
} xb_cell_stats;

/* Output currents i (batch, cols) of a tile of cells `cell` with conductances g (rows, cols) for inputs
 * v (batch, rows), circuit c (zero resistances are the ideal limits of xb_solve.h).  Resistor cells go
 * through the exact linear solver; 1T-1R cells through damped Newton on the row and column nodes (sparse
 * LU by KLU, one factorization per iteration; inputs run in parallel with OpenMP).  Without parasitics the
 * per-cell currents are summed exactly.  Errors: bad shapes, conductances or cell parameters
 * (XB_ERR_ARG/XB_ERR_SHAPE); no convergence within opts->max_iter iterations, naming the input and the last
 * update (XB_ERR_NUMERIC) -- never a silent result.  opts and st may be NULL. */
xb_status xb_xbar_currents_cell(const xb_circuit *c, const xb_cell *cell, int rows, int cols, const double *g,
                                int batch, const double *v, double *i, const xb_cell_opts *opts,
                                xb_cell_stats *st);

#ifdef __cplusplus
}
#endif
#endif
