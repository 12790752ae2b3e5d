/*
 * solve_approx.c -- the decoupled approximate model of the crossbar circuit (XB_SOLVE_DECOUPLED):
 * O(rows * cols) ladder sweeps plus one dense (rows + cols)-node solve, instead of the exact solver's
 * nested dissection.  Error against the exact solver per regime: docs/solver.md.
 *
 * Two stages.
 *  1. Wires, with ideal drivers and sense: every row and every column is solved as its own 1-D
 *     resistor ladder.  The lines a ladder crosses enter as shunts in "common mode": when a column is
 *     raised, its neighbours are raised alike (they carry the same input's currents), so the current a
 *     column loses into row k through cell (k,j) is G[k,j] * phi[k,j] * v, where phi[k,j] is how
 *     firmly row k is pinned to its driver at node j (row k's voltage profile for a 1 V source with
 *     its cells grounded).  Column ladders with those shunts give each cell's column-side Thevenin
 *     resistance zc and the fraction t of a current injected at (i,j) that reaches the column's end;
 *     row ladders with shunts y = 1 / (1/G + zc) give the node voltages u of a driven row:
 *         Gw[i,j] = y[i,j] * u[i,j] * t[i,j]      (the cell's wire-attenuated conductance).
 *  2. Driver and sense resistances, exactly: with ideal wires each row and each column is one node,
 *     so the circuit of Gw with r_driver and r_sense is a dense (rows + cols)-node system, solved by
 *     xb_xbar_lumped (every sneak path through the drivers and sense resistors included).
 * Exact when r_wire = 0 (stage 1 is the identity) and for a single cell.  What is left out: the
 * differential part of the line-to-line coupling through the wires (lines seen as loads in common
 * mode, not as sources).
 *
 * What this file is not: an iterative solver converging to the exact answer.
 */
#include "xb_solve.h"

#include <math.h>
#include <string.h>

/* series conductance; 0 and inf behave as open and short (1/0 = inf, 1/inf = 0) */
static inline double ser(double a, double b) { return 1 / (1 / a + 1 / b); }
/* a / (a + b) with a possibly infinite */
static inline double frac(double a, double b) { return isinf(a) ? 1 : a / (a + b); }

/* nl parallel ladders of len nodes, vectorised over the lines.  Node k of line j is at [k * step + j]
 * (step may be negative: node 0 is the end with the ideal source or ground).  Shunts y to ground,
 * wire conductance gw between consecutive nodes, node 0 tied to the end (ideal).  Optional outputs:
 *   u  -- node voltages for a 1 V source at the end;
 *   zt -- Thevenin resistance at each node, its own shunt excluded;
 *   t  -- fraction of a current injected at a node (own shunt excluded) that reaches the end.
 * a, b: scratch of len * nl (node-major, contiguous). */
static void ladders(int len, int nl, const double *y, long step, double gw, double *u, double *zt, double *t,
                    double *a, double *b) {
#define Y(k) (y + (long)(k) * step)
    /* a[k]: admittance of the end side up to and including k (the end itself is a short) */
    for (int j = 0; j < nl; j++) a[j] = INFINITY;
    for (int k = 1; k < len; k++) {
        const double *yk = Y(k), *ap = a + (size_t)(k - 1) * nl;
        double *ak = a + (size_t)k * nl;
        for (int j = 0; j < nl; j++) ak[j] = yk[j] + ser(gw, ap[j]);
    }
    /* b[k]: admittance of the far side from k on, including k */
    {
        const double *yl = Y(len - 1);
        double *bl = b + (size_t)(len - 1) * nl;
        for (int j = 0; j < nl; j++) bl[j] = yl[j];
    }
    for (int k = len - 2; k >= 0; k--) {
        const double *yk = Y(k), *bn = b + (size_t)(k + 1) * nl;
        double *bk = b + (size_t)k * nl;
        for (int j = 0; j < nl; j++) bk[j] = yk[j] + ser(gw, bn[j]);
    }
    if (u) {
        double *u0 = u;
        for (int j = 0; j < nl; j++) u0[j] = 1;
        for (int k = 1; k < len; k++) {
            const double *bk = b + (size_t)k * nl;
            double *uk = u + (long)k * step, *up = u + (long)(k - 1) * step;
            for (int j = 0; j < nl; j++) uk[j] = up[j] * frac(gw, bk[j]);
        }
    }
    if (zt || t) {
        /* toward(k) = k > 0 ? ser(gw, a[k-1]) : inf;  away(k) = k < len-1 ? ser(gw, b[k+1]) : 0 */
        for (int k = 0; k < len; k++) {
            const double *ap = k > 0 ? a + (size_t)(k - 1) * nl : NULL, *bn = k < len - 1 ? b + (size_t)(k + 1) * nl : NULL;
            double *zk = zt ? zt + (long)k * step : NULL, *tk = t ? t + (long)k * step : NULL;
            for (int j = 0; j < nl; j++) {
                double to = ap ? ser(gw, ap[j]) : INFINITY, aw = bn ? ser(gw, bn[j]) : 0;
                if (zk) zk[j] = 1 / (to + aw);
                if (tk) tk[j] = frac(to, aw);
            }
        }
        if (t) {
            /* times the fraction that continues toward the end at every node passed on the way */
            double *c = b;   /* reuse: running product per line */
            for (int j = 0; j < nl; j++) c[j] = 1;
            for (int k = 1; k < len; k++) {
                const double *ap = a + (size_t)(k - 1) * nl, *ykm = Y(k - 1);
                const double *app = k > 1 ? a + (size_t)(k - 2) * nl : NULL;
                double *tk = t + (long)k * step;
                for (int j = 0; j < nl; j++) {
                    double to = app ? ser(gw, app[j]) : INFINITY;   /* toward(k-1) */
                    c[j] *= frac(to, ykm[j]);
                    tk[j] *= c[j];
                }
                (void)ap;
            }
        }
    }
#undef Y
}

size_t xb_decoupled_workspace(int rows, int cols) {
    size_t nm = (size_t)rows * cols;
    return 6 * nm + xb_xbar_lumped_workspace(rows, cols) + 16;
}

xb_status xb_decoupled_effective(const xb_circuit *c, int rows, int cols, const double *g, double *e, double *work) {
    XB_ASSERT(c && g && e && work);
    xb_status st = xb_circuit_validate(c);
    if (st) return st;
    if (rows < 1 || cols < 1)
        return xb_errorf(XB_ERR_SHAPE, "solver: tile %d x %d is empty. HINT: rows and cols are >= 1", rows, cols);
    const int n = rows, m = cols;
    const size_t nm = (size_t)n * m;
    for (size_t k = 0; k < nm; k++)
        if (!isfinite(g[k]) || g[k] < 0)
            return xb_errorf(XB_ERR_ARG, "solver: G[%zu,%zu] = %g S is %s. HINT: conductances are finite and "
                             ">= 0 siemens", k / m, k % m, g[k], isfinite(g[k]) ? "negative" : "not finite");
    const double gw = 1 / c->r_wire_ohm;   /* inf for ideal wires */
    double *gt = work, *x = gt + nm, *y = x + nm, *z = y + nm, *a = z + nm, *b = a + nm, *lw = b + nm;
    /* stage 1, rows as ladders need the transpose (node-major, rows contiguous) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) gt[(size_t)j * n + i] = g[(size_t)i * m + j];
    /* phi (m x n, transposed): row k's voltage at node j for 1 V at its driver, cells grounded */
    ladders(m, n, gt, n, gw, x, NULL, NULL, a, b);
    for (size_t k = 0; k < nm; k++) x[k] *= gt[k];                 /* column shunts G * phi (transposed) */
    /* column ladders, node 0 at the bottom (the sense end): node k of column j at [(n-1-k)*m + j] */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) y[(size_t)i * m + j] = x[(size_t)j * n + i];
    ladders(n, m, y + (size_t)(n - 1) * m, -(long)m, gw, NULL, z + (size_t)(n - 1) * m, x + (size_t)(n - 1) * m, a, b);
    /* z = zc (n x m), x = t (n x m); cell in series with its column: y = 1/(1/G + zc), transposed */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) y[(size_t)j * n + i] = ser(g[(size_t)i * m + j], 1 / z[(size_t)i * m + j]);
    ladders(m, n, y, n, gw, z, NULL, NULL, a, b);                  /* z = u (m x n, transposed) */
    double *gwire = a;                                             /* Gw = y u t (n x m) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++)
            gwire[(size_t)i * m + j] = y[(size_t)j * n + i] * z[(size_t)j * n + i] * x[(size_t)i * m + j];
    /* stage 2: drivers and sense resistors, exactly, on the lumped circuit of Gw */
    st = xb_xbar_lumped(c, n, m, gwire, e, lw);
    if (st) return st;
    for (size_t k = 0; k < nm; k++)
        if (!isfinite(e[k]))
            return xb_errorf(XB_ERR_NUMERIC, "solver: decoupled model entry [%zu,%zu] is %g. HINT: check for "
                             "extreme resistance or conductance ratios", k / m, k % m, e[k]);
    return XB_OK;
}
