/*
 * xb_solve.h -- the crossbar circuit solver: the exact effective matrix of a programmed tile with wire,
 * driver and sense resistance, and a fast approximate model beside it.  See docs/solver.md.
 *
 * The circuit (all resistances in ohms, conductances in siemens, voltages in volts; the same circuit as
 * ../shared/tools/xbar_spice.py):
 *   - row i (0..rows-1) is driven at its left end: source V[i] -> r_driver -> row node (i,0);
 *   - a row wire segment r_wire joins row nodes (i,j-1) and (i,j);
 *   - cell (i,j) is a conductance G[i,j] >= 0 between row node (i,j) and column node (i,j);
 *   - a column wire segment r_wire joins column nodes (i-1,j) and (i,j);
 *   - column j leaves at the bottom: column node (rows-1,j) -> r_sense -> ground.
 *   The output I[j] is the current into ground through column j's sense resistor.
 * The circuit is linear, so I = V E for a fixed rows x cols matrix E (the "effective matrix"): solve
 * once per programming, then every product through the tile is a GEMM.  With r_wire = r_driver =
 * r_sense = 0, E == G.  Zero resistances are legitimate limits (ideal wires collapse each row and
 * column to one node; r_driver = 0 is an ideal source; r_sense = 0 a virtual ground).
 *
 * Worked example (one tile, then a batch of inputs through it):
 *
 *     xb_circuit c = xb_circuit_default();                 // 2.5 ohm wires, 100 ohm driver and sense
 *     double *e = malloc(sizeof(double) * rows * cols);
 *     if (xb_xbar_effective(&c, rows, cols, g, e, NULL) != XB_OK) { puts(xb_last_error()); exit(1); }
 *     xb_xbar_apply(rows, cols, e, batch, v, i);           // i (batch, cols) = v (batch, rows) e
 *
 * Many tiles of one size: make one plan (symbolic analysis, read-only afterwards, shareable between
 * threads) and give each thread its own workspace:
 *
 *     xb_solve_plan *p;  xb_solve_plan_init(rows, cols, XB_SOLVE_EXACT, &p);
 *     #pragma omp parallel
 *     { void *w = malloc(xb_solve_plan_workspace(p));
 *       #pragma omp for
 *       for (int t = 0; t < ntiles; t++) xb_solve_plan_effective(p, &c, g[t], e[t], w, NULL);
 *       free(w); }
 *     xb_solve_plan_free(p);
 *
 * Layouts: G and E are (rows, cols) row-major; V is (batch, rows); I is (batch, cols).
 *
 * The backward (transposed) read, used by training: the same grid of cells and wire segments, but
 * column j is driven at its bottom end (column node (rows-1,j), where the forward sense resistor sits)
 * by a source through r_driver, and row i is sensed at its left end (row node (i,0)) through r_sense
 * into a virtual ground.  I_row (batch, rows) = V_col (batch, cols) Eb with Eb (cols, rows).  It is
 * solved as the forward read of the reversed, transposed tile G'[a][b] = G[rows-1-b][cols-1-a]
 * (cols x rows), whose E' read backwards (Eb[j][i] = E'[cols-1-j][rows-1-i]) is Eb.  Reciprocity:
 * Eb == E^T exactly when r_driver == r_sense, not otherwise.  docs/solver.md section 9.
 * Errors: bad shapes, negative or non-finite resistances or conductances return XB_ERR_ARG or
 * XB_ERR_SHAPE; a factorization that is not positive definite or a non-finite result returns
 * XB_ERR_NUMERIC.  The message (xb_last_error) names the place, the value and a HINT.  Nothing is
 * ever clamped or skipped silently.
 */
#ifndef XB_SOLVE_H
#define XB_SOLVE_H

#include "xbar.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xb_circuit {
    double r_wire_ohm;   /* one row or column wire segment between adjacent cells; 0: ideal wires */
    double r_driver_ohm; /* source -> row node (i,0); 0: ideal voltage source */
    double r_sense_ohm;  /* column node (rows-1,j) -> ground; 0: virtual ground */
} xb_circuit;

/* 2.5 ohm wire segments, 100 ohm driver and sense (the defaults of xbar_spice.py). */
xb_circuit xb_circuit_default(void);
/* XB_ERR_ARG with a message unless every resistance is finite and >= 0. */
xb_status xb_circuit_validate(const xb_circuit *c);

typedef enum xb_solve_method {
    XB_SOLVE_EXACT = 0, /* exact: nested-dissection Schur complements on the grid, dense BLAS fronts */
    XB_SOLVE_CHOLMOD,   /* exact reference: CHOLMOD sparse Cholesky of the whole nodal matrix,
                           min(rows, cols) solves; needs every resistance > 0 */
    XB_SOLVE_DECOUPLED, /* approximate: wire drops from 1-D row and column ladders (O(rows*cols)), then
                           the driver and sense resistances exactly on the lumped (rows+cols)-node
                           circuit; exact for r_wire = 0 */
    XB_SOLVE_METHOD_COUNT
} xb_solve_method;

const char *xb_solve_method_name(xb_solve_method m);   /* "exact", "cholmod", "decoupled" */
/* XB_ERR_ARG with the list of names if s names no method. */
xb_status xb_solve_method_parse(const char *s, xb_solve_method *out);

typedef struct xb_solve_stats {
    xb_solve_method method;
    double time_s;      /* wall time of the numeric phase (not the plan) */
    double flops;       /* floating-point operations of the numeric phase (CHOLMOD: its estimate) */
    double pivot_min;   /* EXACT: smallest LAPACK pivot (large fronts, port system) relative to its
                           row's conductance sum: ~10^-k means up to k digits lost to cancellation
                           (the scalar GTH loop of the small fronts never cancels); 1 otherwise */
} xb_solve_stats;

/* The decoupled model by itself; work holds xb_decoupled_workspace(rows, cols) doubles. */
size_t xb_decoupled_workspace(int rows, int cols);
xb_status xb_decoupled_effective(const xb_circuit *c, int rows, int cols, const double *g, double *e,
                                 double *work);

/* Exact effective matrix of the circuit with ideal wires (c->r_wire_ohm is ignored): every row and
 * every column is one node, a dense (rows + cols)-node solve.  work: xb_xbar_lumped_workspace doubles. */
size_t xb_xbar_lumped_workspace(int rows, int cols);
xb_status xb_xbar_lumped(const xb_circuit *c, int rows, int cols, const double *g, double *e, double *work);

/* ---- plans: symbolic analysis for one tile size, reused for every tile of that size ------------- */

typedef struct xb_solve_plan xb_solve_plan;

/* rows, cols >= 1.  XB_ERR_SHAPE for bad sizes, XB_ERR_NOMEM if the workspace would not fit. */
xb_status xb_solve_plan_init(int rows, int cols, xb_solve_method method, xb_solve_plan **out);
void xb_solve_plan_free(xb_solve_plan *p);
/* Bytes of scratch one xb_solve_plan_effective call needs (64-byte aligned is best). */
size_t xb_solve_plan_workspace(const xb_solve_plan *p);
/* e (rows, cols) = effective matrix of g (rows, cols).  The plan is only read (many threads may share
 * it); work is this call's own scratch of xb_solve_plan_workspace(p) bytes.  st may be NULL. */
xb_status xb_solve_plan_effective(const xb_solve_plan *p, const xb_circuit *c, const double *g,
                                  double *e, void *work, xb_solve_stats *st);

/* ---- power: the input (driving-point) admittance ---------------------------------------------- */

/* The currents the row sources deliver are I_src = A V for a symmetric, positive semi-definite rows x rows
 * matrix A (siemens, row-major), so one read of inputs V draws P = V^T A V watts from its sources: the power
 * of the cells, the wires, the drivers and the sense resistors together, what ngspice reports as the
 * sources' power.  Without parasitics A = diag(sum_j G[i,j]).  Exact plans only (XB_ERR_UNSUPPORTED for the
 * others); e (may be NULL) receives the effective matrix of the same solve, at no extra cost for the grid.
 * work: xb_solve_plan_workspace(p) bytes.  docs/energy.md has the derivation. */
xb_status xb_solve_plan_admittance(const xb_solve_plan *p, const xb_circuit *c, const double *g, double *e,
                                   double *a, void *work, xb_solve_stats *st);
/* One-shot: a (rows, rows) of g (rows, cols). */
xb_status xb_xbar_admittance(const xb_circuit *c, int rows, int cols, const double *g, double *a);
/* V^T A V (watts) for one input vector v (rows). */
double xb_xbar_power(int rows, const double *a, const double *v);

/* ---- the read direction -------------------------------------------------------------------------- */

typedef enum xb_read_dir {
    XB_READ_FORWARD = 0,   /* rows driven, columns sensed: I (batch, cols) = V (batch, rows) E */
    XB_READ_BACKWARD       /* columns driven, rows sensed: I (batch, rows) = V (batch, cols) Eb */
} xb_read_dir;

/* A plan is made for (driven lines, sensed lines): a plan from xb_solve_plan_init(R, C, ...) reads
 * forward a tile g of (R, C) and backward a tile g of (C, R) -- so for the backward read of a
 * (rows, cols) tile, make the plan with xb_solve_plan_init(cols, rows, ...); a square plan does both.
 * Either way e is (R, C).  The shape of the plan: */
void xb_solve_plan_size(const xb_solve_plan *p, int *rows, int *cols);
/* Bytes of scratch one xb_solve_plan_effective_dir call in direction dir needs: for FORWARD
 * xb_solve_plan_workspace(p); BACKWARD adds room for the transposed copy of g (never allocated per
 * call).  0 for a bad dir. */
size_t xb_solve_plan_workspace_dir(const xb_solve_plan *p, xb_read_dir dir);
/* FORWARD: exactly xb_solve_plan_effective.  BACKWARD: for a plan of (R, C), g is the tile's (C, R)
 * conductances and e (R, C) its backward effective matrix Eb, I_row = V_col Eb (the tile's columns
 * are the plan's rows).  work: xb_solve_plan_workspace_dir(p, dir) bytes, this call's own.  Every
 * method works.  Bad G entries are named in the tile's coordinates (G[i,j] of the (C, R) g). */
xb_status xb_solve_plan_effective_dir(const xb_solve_plan *p, const xb_circuit *c, xb_read_dir dir,
                                      const double *g, double *e, void *work, xb_solve_stats *st);

/* ---- one-shot conveniences (allocate a plan and workspace per call) ----------------------------- */

/* Exact effective matrix: e (rows, cols) of g (rows, cols). */
xb_status xb_xbar_effective(const xb_circuit *c, int rows, int cols, const double *g, double *e,
                            xb_solve_stats *st);
xb_status xb_xbar_effective_method(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                                   const double *g, double *e, xb_solve_stats *st);
/* ntiles tiles of one size, solved in parallel (OpenMP over tiles, one workspace per thread):
 * e[t] = effective(g[t]).  On failure returns the first failing tile's status (message names it). */
xb_status xb_xbar_effective_tiles(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                                  int ntiles, const double *const *g, double *const *e);
/* i (batch, cols) = v (batch, rows) e (rows, cols): one DGEMM. */
void xb_xbar_apply(int rows, int cols, const double *e, int batch, const double *v, double *i);
/* Output currents of the circuit: i (batch, cols) for inputs v (batch, rows), through the effective
 * matrix of `method`; e_out (rows, cols) receives it when not NULL. */
xb_status xb_xbar_currents(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                           const double *g, int batch, const double *v, double *i, double *e_out,
                           xb_solve_stats *st);
/* The backward read of a (rows, cols) tile g: eb (cols, rows), I_row = V_col eb (a plan of
 * (cols, rows) and a workspace per call). */
xb_status xb_xbar_effective_backward(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                                     const double *g, double *eb, xb_solve_stats *st);
/* Row currents of the backward read: i (batch, rows) for column inputs v (batch, cols), i = v eb;
 * eb_out (cols, rows) receives eb when not NULL. */
xb_status xb_xbar_currents_backward(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                                    const double *g, int batch, const double *v, double *i,
                                    double *eb_out, xb_solve_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* XB_SOLVE_H */
