/*
 * solve_approx.c -- the decoupled approximate model of the crossbar circuit (XB_SOLVE_DECOUPLED):
 * O(rows * cols * iters) instead of the exact solver's O((rows + cols)^3).  Error against the exact
 * solver per regime: docs/solver.md.
 *
 * Every row and every column is solved as its own 1-D resistor ladder.  Seen from cell (i,j), the
 * rest of the circuit is two Thevenin resistances: zr[i,j] into row i at node (i,j) and zc[i,j] into
 * column j at node (i,j), each excluding the cell itself.  A column ladder has, at each node k, a shunt
 * to ground made of cell (k,j) in series with zr[k,j] (the other rows' drivers are sources at 0 V when
 * input i is applied alone); a row ladder has cell (i,l) in series with zc[i,l].  One sweep solves all
 * column ladders (giving zc and the fraction t[i,j] of a current injected at (i,j) that reaches the
 * sense resistor), then all row ladders (giving zr and the node voltages u[i,j] for a unit input):
 *
 *     E[i,j] = y[i,j] * u[i,j] * t[i,j],   y = 1 / (1/G[i,j] + zc[i,j])   (current through the cell).
 *
 * What is left out: current that a column pushes through a sneak path into another row and from
 * there into a *different* column (the lines are loads, not sources, for each other).  The model is
 * exact for one row or one column, and with r_wire = 0 and an ideal driver or sense side it reduces to
 * the exact closed forms.  Each ladder is solved by the two-sided admittance recurrences below, O(len).
 *
 * What this file is not: an iterative solver converging to the exact answer (more sweeps converge to
 * the decoupled fixed point, not to the circuit).
 */
#include "xb_solve.h"

#include <math.h>
#include <string.h>

/* series conductance; 0 and inf behave as open and short (1/0 = inf, 1/inf = 0) */
static inline double ser(double a, double b) { return 1 / (1 / a + 1 / b); }
/* a / (a + b) with a possibly infinite */
static inline double frac(double a, double b) { return isinf(a) ? 1 : a / (a + b); }

size_t xb_decoupled_workspace(int rows, int cols) {
    size_t l = (size_t)(rows > cols ? rows : cols);
    return 3 * (size_t)rows * cols + 4 * l + 8;
}

/* Column j's ladder: shunts s[k] (k = 0..n-1, top to bottom), wire gw, sense gs at the bottom node.
 * out: zc[k*m] = Thevenin resistance at node k without s[k]; t[k*m] = fraction of a current injected
 * at node k that leaves through the sense resistor.  A, D: scratch of n. */
static void column_ladder(int n, int m, const double *s, double gw, double gs, double *zc, double *t,
                          double *A, double *D) {
    A[0] = s[0];
    for (int k = 1; k < n; k++) A[k] = s[k] + ser(gw, A[k - 1]);
    D[n - 1] = s[n - 1] + gs;
    for (int k = n - 2; k >= 0; k--) D[k] = s[k] + ser(gw, D[k + 1]);
    double T = 1;   /* product over k' > k of the fraction that continues downward at k' */
    for (int k = n - 1; k >= 0; k--) {
        double up = k > 0 ? ser(gw, A[k - 1]) : 0;
        double down = k < n - 1 ? ser(gw, D[k + 1]) : gs;
        zc[(size_t)k * m] = 1 / (up + down);
        t[(size_t)k * m] = frac(down, up) * T;
        T *= frac(down, s[k]);
    }
}

/* Row i's ladder: shunts y[l] (l = 0..m-1, left to right), driver gd at node 0, wire gw.
 * out: zr[l] = Thevenin resistance at node l without y[l]; u[l] = node voltage for a 1 V source. */
static void row_ladder(int m, const double *y, double gw, double gd, double *zr, double *u, double *Lf,
                       double *Rt) {
    Lf[0] = gd + y[0];
    for (int l = 1; l < m; l++) Lf[l] = y[l] + ser(gw, Lf[l - 1]);
    Rt[m - 1] = y[m - 1];
    for (int l = m - 2; l >= 0; l--) Rt[l] = y[l] + ser(gw, Rt[l + 1]);
    for (int l = 0; l < m; l++) {
        double left = l > 0 ? ser(gw, Lf[l - 1]) : gd;
        double right = l < m - 1 ? ser(gw, Rt[l + 1]) : 0;
        zr[l] = 1 / (left + right);
    }
    u[0] = frac(gd, Rt[0]);
    for (int l = 1; l < m; l++) u[l] = u[l - 1] * frac(gw, Rt[l]);
}

xb_status xb_decoupled_effective(const xb_circuit *c, int rows, int cols, const double *g, double *e,
                                 int iters, double *work) {
    XB_ASSERT(c && g && e && work);
    xb_status st = xb_circuit_validate(c);
    if (st) return st;
    if (rows < 1 || cols < 1)
        return xb_errorf(XB_ERR_SHAPE, "solver: tile %d x %d is empty. HINT: rows and cols are >= 1", rows, cols);
    if (iters < 1)
        return xb_errorf(XB_ERR_ARG, "solver: the decoupled model needs iters >= 1 (got %d). HINT: "
                         "XB_DECOUPLED_ITERS (%d) is the default", iters, XB_DECOUPLED_ITERS);
    const int n = rows, m = cols;
    const size_t nm = (size_t)n * m;
    for (size_t k = 0; k < nm; k++)
        if (!isfinite(g[k]) || g[k] < 0)
            return xb_errorf(XB_ERR_ARG, "solver: G[%zu,%zu] = %g S is %s. HINT: conductances are finite and "
                             ">= 0 siemens", k / m, k % m, g[k], isfinite(g[k]) ? "negative" : "not finite");
    const double gw = 1 / c->r_wire_ohm, gd = 1 / c->r_driver_ohm, gs = 1 / c->r_sense_ohm;
    const int len = n > m ? n : m;
    double *zr = work, *zc = zr + nm, *t = zc + nm;
    double *s = t + nm, *A = s + len, *D = A + len, *u = D + len;
    for (size_t k = 0; k < nm; k++) zr[k] = 0;
    for (int it = 0; it < iters; it++) {
        for (int j = 0; j < m; j++) {
            for (int k = 0; k < n; k++) s[k] = ser(g[(size_t)k * m + j], 1 / zr[(size_t)k * m + j]);
            column_ladder(n, m, s, gw, gs, zc + j, t + j, A, D);
        }
        for (int i = 0; i < n; i++) {
            const double *gi = g + (size_t)i * m, *zci = zc + (size_t)i * m;
            for (int l = 0; l < m; l++) s[l] = ser(gi[l], 1 / zci[l]);
            row_ladder(m, s, gw, gd, zr + (size_t)i * m, u, A, D);
            if (it == iters - 1) {
                const double *ti = t + (size_t)i * m;
                double *ei = e + (size_t)i * m;
                for (int l = 0; l < m; l++) ei[l] = s[l] * u[l] * ti[l];
            }
        }
    }
    for (size_t k = 0; k < nm; k++)
        if (!isfinite(e[k]))
            return xb_errorf(XB_ERR_NUMERIC, "solver: decoupled model entry [%zu,%zu] is %g. HINT: check for "
                             "extreme resistance or conductance ratios", k / m, k % m, e[k]);
    return XB_OK;
}
