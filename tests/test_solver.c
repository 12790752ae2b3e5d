/* test_solver.c -- the crossbar circuit solver (include/xb_solve.h): closed forms, an independent dense
 * nodal solve, the CHOLMOD reference, reciprocity, scaling, limits, bad input, plans shared between
 * threads, and the decoupled model's error bound.  The ngspice comparison is tests/ref_solver.py. */
#include "testutil.h"
#include "xb_solve.h"

/* Documented bound (docs/solver.md): the decoupled model's max error relative to max|E| on the
 * default ("mild") 32 x 32 regime. */
#define DECOUPLED_MILD_32_BOUND 1.5e-2
/* The decoupled model is not exactly reciprocal (rows and columns enter its ladders differently, the
 * driven line's ladder with the crossing lines as common-mode shunts): its Eb and E^T with r_driver ==
 * r_sense differ by up to this, relative to max E (test_backward_reciprocity: measured 1.8e-2, at
 * 64 x 64; it is exact, so reciprocal, with ideal wires). */
#define DECOUPLED_RECIPROCITY 5e-2

static double *random_g(int n, int m, double gmin, double gmax, uint64_t seed) {
    xb_rng r;
    xb_rng_seed(&r, seed, "device");
    double *g = xb_malloc((size_t)n * m * sizeof(double));
    for (int k = 0; k < n * m; k++) g[k] = gmin + (gmax - gmin) * xb_rng_uniform(&r);
    return g;
}

/* max |a - b| / max |b| */
static double max_rel(const double *a, const double *b, size_t n) {
    double d = 0, s = 1e-300;
    for (size_t k = 0; k < n; k++) {
        double x = fabs(a[k] - b[k]);
        if (!(x <= d)) d = x;
        if (fabs(b[k]) > s) s = fabs(b[k]);
    }
    return d / s;
}

static void effective(xb_solve_method meth, xb_circuit c, int n, int m, const double *g, double *e) {
    xb_status st = xb_xbar_effective_method(meth, &c, n, m, g, e, NULL);
    if (st) fail_msg("%s %dx%d: %s", xb_solve_method_name(meth), n, m, xb_last_error());
}

/* Independent reference: the full 2nm nodal system (finite resistances), dense Gaussian elimination
 * in long double, one solve per input.  Row node (i,j) = i*m + j, column node = n*m + i*m + j. */
static void dense_reference(xb_circuit c, int n, int m, const double *g, double *e) {
    const int nm = n * m, N = 2 * nm;
    const long double gw = 1.0L / c.r_wire_ohm, gd = 1.0L / c.r_driver_ohm, gs = 1.0L / c.r_sense_ohm;
    long double *A = calloc((size_t)N * N, sizeof(long double)), *M = calloc((size_t)N * N, sizeof(long double));
    long double *b = calloc((size_t)N, sizeof(long double));
#define LINK(a, c_, y) do { A[(a) * N + (a)] += (y); A[(c_) * N + (c_)] += (y); A[(a) * N + (c_)] -= (y); A[(c_) * N + (a)] -= (y); } while (0)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            int u = i * m + j, v = nm + u;
            LINK(u, v, (long double)g[u]);
            if (j > 0) LINK(u - 1, u, gw);
            if (i > 0) LINK(v - m, v, gw);
        }
    for (int i = 0; i < n; i++) A[(i * m) * N + i * m] += gd;
    for (int j = 0; j < m; j++) A[(nm + (n - 1) * m + j) * N + nm + (n - 1) * m + j] += gs;
#undef LINK
    for (int in = 0; in < n; in++) {
        memcpy(M, A, (size_t)N * N * sizeof(long double));
        for (int k = 0; k < N; k++) b[k] = 0;
        b[in * m] = gd;
        for (int k = 0; k < N; k++) {            /* SPD: no pivoting needed */
            for (int r = k + 1; r < N; r++) {
                long double f = M[r * N + k] / M[k * N + k];
                if (f == 0) continue;
                for (int cc = k; cc < N; cc++) M[r * N + cc] -= f * M[k * N + cc];
                b[r] -= f * b[k];
            }
        }
        for (int k = N - 1; k >= 0; k--) {
            long double s = b[k];
            for (int cc = k + 1; cc < N; cc++) s -= M[k * N + cc] * b[cc];
            b[k] = s / M[k * N + k];
        }
        for (int j = 0; j < m; j++) e[in * m + j] = (double)(gs * b[nm + (n - 1) * m + j]);
    }
    free(A); free(M); free(b);
}

/* Direct nodal solve of the circuit for given inputs, in either read direction, written out node by
 * node (no effective matrix, no relabelling of the grid): the 2nm nodal matrix in double, dense
 * Gaussian elimination (SPD: no pivoting), one factorization for nrhs inputs.  Finite resistances.
 *   FORWARD:  source v[b][i] -> r_driver -> row node (i,0); out[b][j] = current through r_sense from
 *             column node (n-1,j) to ground.  v (nrhs, n), out (nrhs, m).
 *   BACKWARD: source v[b][j] -> r_driver -> column node (n-1,j); out[b][i] = current through r_sense
 *             from row node (i,0) to ground.  v (nrhs, m), out (nrhs, n).
 * Row node (i,j) = i*m + j, column node = n*m + i*m + j. */
static void nodal_direct(xb_circuit c, int n, int m, const double *g, xb_read_dir dir, int nrhs, const double *v,
                         double *out) {
    const int nm = n * m, N = 2 * nm, bwd = dir == XB_READ_BACKWARD;
    const int nin = bwd ? m : n, nout = bwd ? n : m;
    const double gw = 1 / c.r_wire_ohm, gd = 1 / c.r_driver_ohm, gs = 1 / c.r_sense_ohm;
    double *A = calloc((size_t)N * N, sizeof(double)), *x = calloc((size_t)N, sizeof(double));
    int *drive = calloc((size_t)nin, sizeof(int)), *sense = calloc((size_t)nout, sizeof(int));
    for (int i = 0; i < n; i++) (bwd ? sense : drive)[i] = i * m;                  /* left end of row i */
    for (int j = 0; j < m; j++) (bwd ? drive : sense)[j] = nm + (n - 1) * m + j;   /* bottom of column j */
#define LINK(a, c_, y) do { A[(size_t)(a) * N + (a)] += (y); A[(size_t)(c_) * N + (c_)] += (y); \
                            A[(size_t)(a) * N + (c_)] -= (y); A[(size_t)(c_) * N + (a)] -= (y); } while (0)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            int u = i * m + j, w = nm + u;
            LINK(u, w, g[u]);
            if (j > 0) LINK(u - 1, u, gw);
            if (i > 0) LINK(w - m, w, gw);
        }
#undef LINK
    for (int k = 0; k < nin; k++) A[(size_t)drive[k] * N + drive[k]] += gd;
    for (int k = 0; k < nout; k++) A[(size_t)sense[k] * N + sense[k]] += gs;
    for (int k = 0; k < N; k++)            /* LU in place: multipliers below the diagonal */
        for (int r = k + 1; r < N; r++) {
            double f = A[(size_t)r * N + k] / A[(size_t)k * N + k];
            A[(size_t)r * N + k] = f;
            if (f != 0)
                for (int cc = k + 1; cc < N; cc++) A[(size_t)r * N + cc] -= f * A[(size_t)k * N + cc];
        }
    for (int b = 0; b < nrhs; b++) {
        memset(x, 0, (size_t)N * sizeof(double));
        for (int k = 0; k < nin; k++) x[drive[k]] = gd * v[(size_t)b * nin + k];
        for (int r = 1; r < N; r++)
            for (int k = 0; k < r; k++) x[r] -= A[(size_t)r * N + k] * x[k];
        for (int r = N - 1; r >= 0; r--) {
            for (int cc = r + 1; cc < N; cc++) x[r] -= A[(size_t)r * N + cc] * x[cc];
            x[r] /= A[(size_t)r * N + r];
        }
        for (int k = 0; k < nout; k++) out[(size_t)b * nout + k] = gs * x[sense[k]];
    }
    free(A); free(x); free(drive); free(sense);
}

/* ---- closed forms -------------------------------------------------------------------------------- */

static void test_one_cell(void **state) {
    (void)state;
    const double g = 2.385e-5;
    const double rs[][3] = {{2.5, 100, 100}, {0, 0, 0}, {7, 0, 150}, {7, 230, 0}, {0, 1e4, 3e3}};
    for (size_t k = 0; k < sizeof rs / sizeof *rs; k++) {
        xb_circuit c = {rs[k][0], rs[k][1], rs[k][2]};
        double e;
        effective(XB_SOLVE_EXACT, c, 1, 1, &g, &e);
        double want = 1 / (c.r_driver_ohm + 1 / g + c.r_sense_ohm);   /* the wire plays no part */
        assert_true(fabs(e - want) <= 1e-14 * want);
        effective(XB_SOLVE_DECOUPLED, c, 1, 1, &g, &e);
        assert_true(fabs(e - want) <= 1e-14 * want);
    }
}

static void test_ideal_is_g(void **state) {
    (void)state;
    const int n = 13, m = 21;
    double *g = random_g(n, m, 1e-6, 1e-4, 3), *e = xb_malloc(sizeof(double) * n * m);
    xb_circuit c = {0, 0, 0};
    effective(XB_SOLVE_EXACT, c, n, m, g, e);
    assert_memory_equal(e, g, sizeof(double) * n * m);     /* bit for bit */
    xb_free(g); xb_free(e);
}

/* r_wire = 0 with one ideal side: each row (column) is one node, closed forms. */
static void test_ideal_wires_closed_forms(void **state) {
    (void)state;
    const int n = 9, m = 14;
    double *g = random_g(n, m, 1e-6, 1e-4, 4), *e = xb_malloc(sizeof(double) * n * m);
    xb_circuit c = {0, 0, 150};          /* ideal drivers: E_ij = G_ij gs / (gs + colsum_j) */
    effective(XB_SOLVE_EXACT, c, n, m, g, e);
    for (int j = 0; j < m; j++) {
        double cs = 0, gs = 1 / c.r_sense_ohm;
        for (int i = 0; i < n; i++) cs += g[i * m + j];
        for (int i = 0; i < n; i++) assert_true(fabs(e[i * m + j] - g[i * m + j] * gs / (gs + cs)) <= 1e-13 * g[i * m + j]);
    }
    c = (xb_circuit){0, 220, 0};         /* virtual ground: E_ij = G_ij gd / (gd + rowsum_i) */
    effective(XB_SOLVE_EXACT, c, n, m, g, e);
    for (int i = 0; i < n; i++) {
        double rsum = 0, gd = 1 / c.r_driver_ohm;
        for (int j = 0; j < m; j++) rsum += g[i * m + j];
        for (int j = 0; j < m; j++) assert_true(fabs(e[i * m + j] - g[i * m + j] * gd / (gd + rsum)) <= 1e-13 * g[i * m + j]);
    }
    xb_free(g); xb_free(e);
}

/* A single row is a ladder: cell j in series with its sense resistor is a shunt y_j; solve the
 * tridiagonal system by hand (Thomas algorithm). */
static void test_single_row_ladder(void **state) {
    (void)state;
    const int m = 37;
    double *g = random_g(1, m, 1e-6, 1e-4, 5), e[37], u[37], a[37], b[37], cc[37], d[37];
    xb_circuit c = {3.5, 120, 80};
    const double gw = 1 / c.r_wire_ohm, gd = 1 / c.r_driver_ohm, gs = 1 / c.r_sense_ohm;
    double y[37];
    for (int j = 0; j < m; j++) y[j] = 1 / (1 / g[j] + 1 / gs);
    for (int j = 0; j < m; j++) {
        a[j] = j > 0 ? -gw : 0;
        cc[j] = j < m - 1 ? -gw : 0;
        b[j] = y[j] + (j > 0 ? gw : 0) + (j < m - 1 ? gw : 0) + (j == 0 ? gd : 0);
        d[j] = j == 0 ? gd : 0;           /* 1 V source */
    }
    for (int j = 1; j < m; j++) { double w = a[j] / b[j - 1]; b[j] -= w * cc[j - 1]; d[j] -= w * d[j - 1]; }
    u[m - 1] = d[m - 1] / b[m - 1];
    for (int j = m - 2; j >= 0; j--) u[j] = (d[j] - cc[j] * u[j + 1]) / b[j];
    for (xb_solve_method meth = XB_SOLVE_EXACT; meth <= XB_SOLVE_CHOLMOD; meth++) {
        effective(meth, c, 1, m, g, e);
        for (int j = 0; j < m; j++) assert_true(fabs(e[j] - y[j] * u[j]) <= 1e-12 * y[j] * u[j]);
    }
    xb_free(g);
}

/* ---- against independent solvers --------------------------------------------------------------- */

static void test_vs_dense_reference(void **state) {
    (void)state;
    const int shapes[][2] = {{1, 1}, {1, 5}, {5, 1}, {2, 3}, {3, 2}, {4, 4}, {5, 7}, {7, 5}, {6, 6}, {9, 4}};
    const double regimes[][3] = {{2.5, 100, 100}, {0.01, 100, 100}, {10, 50, 50}, {1, 1e4, 1e3}, {5, 1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t r = 0; r < sizeof regimes / sizeof *regimes; r++) {
            int n = shapes[s][0], m = shapes[s][1];
            xb_circuit c = {regimes[r][0], regimes[r][1], regimes[r][2]};
            double *g = random_g(n, m, 1e-6, r == 2 ? 1e-3 : 1e-4, 10 + s), *e = xb_malloc(8 * n * m),
                   *want = xb_malloc(8 * n * m);
            dense_reference(c, n, m, g, want);
            effective(XB_SOLVE_EXACT, c, n, m, g, e);
            double err = max_rel(e, want, (size_t)n * m);
            if (!(err < 1e-12)) fail_msg("%dx%d regime %zu: exact vs dense reference %.3e", n, m, r, err);
            /* plain Cholesky of the nodal matrix loses ~log10(r_G / r_wire) digits to cancellation */
            effective(XB_SOLVE_CHOLMOD, c, n, m, g, e);
            err = max_rel(e, want, (size_t)n * m);
            if (!(err < 1e-9)) fail_msg("%dx%d regime %zu: cholmod vs dense reference %.3e", n, m, r, err);
            xb_free(g); xb_free(e); xb_free(want);
        }
}

/* Larger and non-square tiles (both tree directions, BLAS fronts) against CHOLMOD (whose own error
 * reaches ~1e-11 with 0.01 ohm wires, see test_vs_dense_reference). */
static void test_vs_cholmod(void **state) {
    (void)state;
    const int shapes[][2] = {{3, 17}, {17, 3}, {64, 5}, {5, 64}, {33, 47}, {47, 33}, {64, 64}, {96, 40}};
    const double regimes[][3] = {{2.5, 100, 100}, {0.01, 100, 100}, {10, 100, 100}, {1, 1e4, 1e3}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t r = 0; r < sizeof regimes / sizeof *regimes; r++) {
            int n = shapes[s][0], m = shapes[s][1];
            xb_circuit c = {regimes[r][0], regimes[r][1], regimes[r][2]};
            double *g = random_g(n, m, 1e-6, r == 2 ? 1e-3 : 1e-4, 20 + s), *e = xb_malloc(8 * n * m),
                   *want = xb_malloc(8 * n * m);
            effective(XB_SOLVE_CHOLMOD, c, n, m, g, want);
            effective(XB_SOLVE_EXACT, c, n, m, g, e);
            double err = max_rel(e, want, (size_t)n * m);
            if (!(err < 1e-9)) fail_msg("%dx%d regime %zu: exact vs cholmod %.3e", n, m, r, err);
            xb_free(g); xb_free(e); xb_free(want);
        }
}

/* ---- properties ----------------------------------------------------------------------------------- */

/* Reciprocity: swap the roles of rows and columns (and of driver and sense); the transposed, rotated
 * tile G'[a][b] = G[n-1-b][m-1-a] has E'[a][b] = E[n-1-b][m-1-a]. */
static void test_reciprocity(void **state) {
    (void)state;
    const int n = 23, m = 41;
    xb_circuit c = {4, 150, 60}, ct = {4, 60, 150};
    double *g = random_g(n, m, 1e-6, 2e-4, 7), *gt = xb_malloc(8 * n * m), *e = xb_malloc(8 * n * m),
           *et = xb_malloc(8 * n * m), *back = xb_malloc(8 * n * m);
    for (int a = 0; a < m; a++)
        for (int b = 0; b < n; b++) gt[a * n + b] = g[(n - 1 - b) * m + (m - 1 - a)];
    effective(XB_SOLVE_EXACT, c, n, m, g, e);
    effective(XB_SOLVE_EXACT, ct, m, n, gt, et);
    for (int a = 0; a < m; a++)
        for (int b = 0; b < n; b++) back[(n - 1 - b) * m + (m - 1 - a)] = et[a * n + b];
    double err = max_rel(back, e, (size_t)n * m);
    if (!(err < 1e-12)) fail_msg("reciprocity: %.3e", err);
    xb_free(g); xb_free(gt); xb_free(e); xb_free(et); xb_free(back);
}

/* E >= 0 (the nodal matrix is an M-matrix); a column's current is at most gs times the largest input,
 * so every column sum of E is <= 1/r_sense; E == 0 for G == 0.  Linearity, against the circuit itself:
 * the currents V E equal a direct nodal solve of the circuit for the same V (nodal_direct, no effective
 * matrix), and the direct solves superpose (a V1 + b V2 gives a I1 + b I2); the same for the backward
 * read. */
static void test_bounds_and_linearity(void **state) {
    (void)state;
    const int n = 30, m = 20;
    xb_circuit c = {6, 40, 70};
    double *g = random_g(n, m, 1e-6, 1e-3, 8), *e = xb_malloc(8 * n * m);
    effective(XB_SOLVE_EXACT, c, n, m, g, e);
    for (int j = 0; j < m; j++) {
        double s = 0;
        for (int i = 0; i < n; i++) { assert_true(e[i * m + j] >= 0); s += e[i * m + j]; }
        assert_true(s <= 1 / c.r_sense_ohm);
    }
    for (int k = 0; k < n * m; k++) g[k] = 0;
    effective(XB_SOLVE_EXACT, c, n, m, g, e);
    for (int k = 0; k < n * m; k++) assert_true(e[k] == 0);
    xb_free(g); xb_free(e);

    const int rn = 6, rm = 5, batch = 3;   /* small enough for the dense direct solve */
    const double a = 2.5, b = -1.25;
    double *gs = random_g(rn, rm, 1e-6, 1e-3, 8);
    for (xb_read_dir dir = XB_READ_FORWARD; dir <= XB_READ_BACKWARD; dir++) {
        const int nin = dir ? rm : rn, nout = dir ? rn : rm;
        double *v1 = random_g(batch, nin, -0.3, 0.3, 9), *v2 = random_g(batch, nin, -0.3, 0.3, 10),
               *vs = xb_malloc(8 * batch * nin), *i1 = xb_malloc(8 * batch * nout), *i2 = xb_malloc(8 * batch * nout),
               *is = xb_malloc(8 * batch * nout), *ie = xb_malloc(8 * batch * nout);
        for (int k = 0; k < batch * nin; k++) vs[k] = a * v1[k] + b * v2[k];
        assert_int_equal(dir ? xb_xbar_currents_backward(XB_SOLVE_EXACT, &c, rn, rm, gs, batch, v1, ie, NULL, NULL)
                             : xb_xbar_currents(XB_SOLVE_EXACT, &c, rn, rm, gs, batch, v1, ie, NULL, NULL), XB_OK);
        nodal_direct(c, rn, rm, gs, dir, batch, v1, i1);
        nodal_direct(c, rn, rm, gs, dir, batch, v2, i2);
        nodal_direct(c, rn, rm, gs, dir, batch, vs, is);
        double err = max_rel(ie, i1, (size_t)batch * nout);
        if (!(err < 1e-12)) fail_msg("%s: V E vs direct nodal solve %.3e", dir ? "backward" : "forward", err);
        double e1 = err;
        for (int k = 0; k < batch * nout; k++) i2[k] = a * i1[k] + b * i2[k];
        err = max_rel(i2, is, (size_t)batch * nout);
        if (!(err < 1e-12)) fail_msg("%s: superposition of direct solves %.3e", dir ? "backward" : "forward", err);
        print_message("%s 6x5: V E vs direct nodal solve %.1e, superposition %.1e\n", dir ? "backward" : "forward", e1, err);
        xb_free(v1); xb_free(v2); xb_free(vs); xb_free(i1); xb_free(i2); xb_free(is); xb_free(ie);
    }
    xb_free(gs);
}

/* Scaling every conductance by a and every resistance by 1/a scales E by a. */
static void test_scale_invariance(void **state) {
    (void)state;
    const int n = 19, m = 26;
    double *g = random_g(n, m, 1e-6, 1e-4, 11), *g2 = xb_malloc(8 * n * m), *e = xb_malloc(8 * n * m),
           *e2 = xb_malloc(8 * n * m);
    xb_circuit c = {2.5, 100, 100};
    effective(XB_SOLVE_EXACT, c, n, m, g, e);
    const double as[] = {1e-9, 3.7e4, 1e12};
    for (size_t k = 0; k < 3; k++) {
        double a = as[k];
        for (int x = 0; x < n * m; x++) g2[x] = a * g[x];
        xb_circuit c2 = {c.r_wire_ohm / a, c.r_driver_ohm / a, c.r_sense_ohm / a};
        effective(XB_SOLVE_EXACT, c2, n, m, g2, e2);
        for (int x = 0; x < n * m; x++) e2[x] /= a;
        assert_true(max_rel(e2, e, (size_t)n * m) < 1e-12);
    }
    xb_free(g); xb_free(g2); xb_free(e); xb_free(e2);
}

/* The ideal limits are continuous: r = 0 agrees with r = 1e-9 ohm for every combination of ideal
 * elements and shape; tiny wire resistances keep their digits (no subtraction of nearly equal
 * numbers). */
static void test_limits_continuous(void **state) {
    (void)state;
    const int shapes[][2] = {{40, 24}, {1, 1}, {1, 6}, {6, 1}, {2, 3}, {9, 70}};
    const double base[3] = {2.5, 100, 100};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int n = shapes[s][0], m = shapes[s][1];
        double *g = random_g(n, m, 1e-6, 1e-4, 12 + s), *e0 = xb_malloc(8 * n * m), *e1 = xb_malloc(8 * n * m);
        for (int mask = 1; mask < 8; mask++) {   /* every non-empty set of ideal elements */
            double r0[3], r1[3];
            for (int k = 0; k < 3; k++) {
                r0[k] = mask >> k & 1 ? 0 : base[k];
                r1[k] = mask >> k & 1 ? 1e-9 : base[k];
            }
            effective(XB_SOLVE_EXACT, (xb_circuit){r0[0], r0[1], r0[2]}, n, m, g, e0);
            effective(XB_SOLVE_EXACT, (xb_circuit){r1[0], r1[1], r1[2]}, n, m, g, e1);
            double err = max_rel(e1, e0, (size_t)n * m);
            if (!(err < 1e-9)) fail_msg("%dx%d ideal set %d: r=1e-9 vs r=0 differ by %.3e", n, m, mask, err);
            if (mask & 1) {   /* ideal wires: the decoupled model is exact */
                effective(XB_SOLVE_DECOUPLED, (xb_circuit){r0[0], r0[1], r0[2]}, n, m, g, e1);
                err = max_rel(e1, e0, (size_t)n * m);
                if (!(err < 1e-13)) fail_msg("%dx%d ideal set %d: decoupled vs exact %.3e", n, m, mask, err);
            }
        }
        xb_free(g); xb_free(e0); xb_free(e1);
    }
}

/* ---- bad input ------------------------------------------------------------------------------------ */

static void expect_error(xb_status got, xb_status want, const char *needle) {
    if (got != want) fail_msg("status %s, want %s (%s)", xb_status_str(got), xb_status_str(want), xb_last_error());
    if (!strstr(xb_last_error(), needle)) fail_msg("message '%s' lacks '%s'", xb_last_error(), needle);
    if (!strstr(xb_last_error(), "HINT")) fail_msg("message '%s' has no HINT", xb_last_error());
}

static void test_bad_input(void **state) {
    (void)state;
    double g[6] = {1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 6e-5}, e[6];
    xb_circuit c = xb_circuit_default();
    g[5] = -1e-6;
    expect_error(xb_xbar_effective(&c, 2, 3, g, e, NULL), XB_ERR_ARG, "G[1,2]");
    g[5] = NAN;
    expect_error(xb_xbar_effective(&c, 2, 3, g, e, NULL), XB_ERR_ARG, "not finite");
    g[5] = INFINITY;
    expect_error(xb_xbar_effective_method(XB_SOLVE_DECOUPLED, &c, 2, 3, g, e, NULL), XB_ERR_ARG, "G[1,2]");
    g[5] = 6e-5;
    c.r_wire_ohm = -1;
    expect_error(xb_xbar_effective(&c, 2, 3, g, e, NULL), XB_ERR_ARG, "r_wire");
    c = xb_circuit_default();
    c.r_sense_ohm = INFINITY;
    expect_error(xb_xbar_effective(&c, 2, 3, g, e, NULL), XB_ERR_ARG, "r_sense");
    c = xb_circuit_default();
    c.r_driver_ohm = NAN;
    expect_error(xb_xbar_effective(&c, 2, 3, g, e, NULL), XB_ERR_ARG, "r_driver");
    c = xb_circuit_default();
    expect_error(xb_xbar_effective(&c, 0, 3, g, e, NULL), XB_ERR_SHAPE, "0 x 3");
    expect_error(xb_xbar_effective(&c, 2, -1, g, e, NULL), XB_ERR_SHAPE, "2 x -1");
    c.r_wire_ohm = 0;
    expect_error(xb_xbar_effective_method(XB_SOLVE_CHOLMOD, &c, 2, 3, g, e, NULL), XB_ERR_UNSUPPORTED, "exact");
    xb_solve_method m;
    expect_error(xb_solve_method_parse("spice", &m), XB_ERR_ARG, "spice");
    assert_int_equal(xb_solve_method_parse("decoupled", &m), XB_OK);
    assert_int_equal(m, XB_SOLVE_DECOUPLED);
    double v[2] = {0.1, NAN}, i[3];
    c = xb_circuit_default();
    expect_error(xb_xbar_currents(XB_SOLVE_EXACT, &c, 2, 3, g, 1, v, i, NULL, NULL), XB_ERR_ARG, "V[0,1]");
}

/* Overflowing values are reported, never returned: conductances near DBL_MAX with tiny resistances. */
static void test_non_finite_result_reported(void **state) {
    (void)state;
    double g[4] = {1e308, 1.5e308, 1.7e308, 1e308}, e[4];
    xb_circuit c = {1e-300, 1e-300, 1e-300};
    xb_status st = xb_xbar_effective(&c, 2, 2, g, e, NULL);
    if (st == XB_OK)
        for (int k = 0; k < 4; k++) assert_true(isfinite(e[k]));
    else
        assert_int_equal(st, XB_ERR_NUMERIC);
}

/* ---- plans and threads ---------------------------------------------------------------------------- */

static void test_plan_shared_by_threads(void **state) {
    (void)state;
    const int n = 48, m = 32, nt = 6;
    xb_circuit c = xb_circuit_default();
    double *g[6], *e[6], *want = xb_malloc(8 * n * m);
    for (int t = 0; t < nt; t++) { g[t] = random_g(n, m, 1e-6, 1e-4, 30 + t); e[t] = xb_malloc(8 * n * m); }
    for (xb_solve_method meth = 0; meth < XB_SOLVE_METHOD_COUNT; meth++) {
        assert_int_equal(xb_xbar_effective_tiles(meth, &c, n, m, nt, (const double *const *)g, e), XB_OK);
        for (int t = 0; t < nt; t++) {
            effective(meth, c, n, m, g[t], want);
            assert_memory_equal(e[t], want, 8 * n * m);
        }
    }
    /* a failing tile is named */
    g[4][7] = -1;
    expect_error(xb_xbar_effective_tiles(XB_SOLVE_EXACT, &c, n, m, nt, (const double *const *)g, e), XB_ERR_ARG,
                 "tile 4");
    /* plan reuse with one workspace gives identical answers; stats are filled */
    xb_solve_plan *p;
    assert_int_equal(xb_solve_plan_init(n, m, XB_SOLVE_EXACT, &p), XB_OK);
    void *w = xb_malloc(xb_solve_plan_workspace(p));
    xb_solve_stats st;
    for (int rep = 0; rep < 2; rep++) {
        assert_int_equal(xb_solve_plan_effective(p, &c, g[1], want, w, &st), XB_OK);
        assert_memory_equal(want, e[1], 8 * n * m);
    }
    assert_int_equal(st.method, XB_SOLVE_EXACT);
    assert_true(st.flops > 0 && st.time_s >= 0 && st.pivot_min > 1e-3 && st.pivot_min <= 1);
    xb_free(w);
    xb_solve_plan_free(p);
    for (int t = 0; t < nt; t++) { xb_free(g[t]); xb_free(e[t]); }
    xb_free(want);
}

/* ---- the approximate model ---------------------------------------------------------------------- */

static void test_decoupled_error_bound(void **state) {
    (void)state;
    const int n = 32, m = 32;
    xb_circuit c = xb_circuit_default();
    double *g = random_g(n, m, 1e-6, 1e-4, 40), *e = xb_malloc(8 * n * m), *a = xb_malloc(8 * n * m);
    effective(XB_SOLVE_EXACT, c, n, m, g, e);
    effective(XB_SOLVE_DECOUPLED, c, n, m, g, a);
    double err = max_rel(a, e, (size_t)n * m);
    if (!(err < DECOUPLED_MILD_32_BOUND)) fail_msg("decoupled error %.3e > %.1e", err, DECOUPLED_MILD_32_BOUND);
    /* and it is a real approximation: better than ignoring the parasitics (E = G) */
    assert_true(err < max_rel(g, e, (size_t)n * m) / 10);
    /* exact with ideal wires, whatever the drivers */
    c.r_wire_ohm = 0;
    effective(XB_SOLVE_EXACT, c, n, m, g, e);
    effective(XB_SOLVE_DECOUPLED, c, n, m, g, a);
    assert_true(max_rel(a, e, (size_t)n * m) < 1e-13);
    xb_free(g); xb_free(e); xb_free(a);
}

/* ---- the backward (column-driven) read ------------------------------------------------------------ */

static void effective_bwd(xb_solve_method meth, xb_circuit c, int n, int m, const double *g, double *eb) {
    xb_status st = xb_xbar_effective_backward(meth, &c, n, m, g, eb, NULL);
    if (st) fail_msg("backward %s %dx%d: %s", xb_solve_method_name(meth), n, m, xb_last_error());
}

/* max |Eb - E^T| / max |E| for E (n, m), Eb (m, n) */
static double transpose_err(const double *eb, const double *e, int n, int m) {
    double *et = xb_malloc(8 * (size_t)n * m);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) et[(size_t)j * n + i] = e[(size_t)i * m + j];
    double err = max_rel(eb, et, (size_t)n * m);
    xb_free(et);
    return err;
}

/* Reciprocity: with r_driver == r_sense the backward read is the transposed forward read, Eb == E^T,
 * for every method whose model is reciprocal; with r_driver != r_sense it is not (so the check sees
 * the peripherals swap places). */
static void test_backward_reciprocity(void **state) {
    (void)state;
    const int shapes[][2] = {{5, 7}, {16, 9}, {9, 16}, {1, 6}, {6, 1}, {64, 64}};
    double worst[XB_SOLVE_METHOD_COUNT] = {0};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int n = shapes[s][0], m = shapes[s][1];
        double *g = random_g(n, m, 1e-6, 2e-4, 50 + s), *e = xb_malloc(8 * n * m), *eb = xb_malloc(8 * n * m);
        for (xb_solve_method meth = 0; meth < XB_SOLVE_METHOD_COUNT; meth++) {
            xb_circuit c = {3, 80, 80};
            effective(meth, c, n, m, g, e);
            effective_bwd(meth, c, n, m, g, eb);
            double err = transpose_err(eb, e, n, m), tol = meth == XB_SOLVE_DECOUPLED ? DECOUPLED_RECIPROCITY : 1e-12;
            if (!(err < tol)) fail_msg("%dx%d %s: Eb vs E^T %.3e (tolerance %.0e)", n, m, xb_solve_method_name(meth), err, tol);
            if (err > worst[meth]) worst[meth] = err;
            c.r_sense_ohm = 20;
            effective(meth, c, n, m, g, e);
            effective_bwd(meth, c, n, m, g, eb);
            err = transpose_err(eb, e, n, m);
            if (!(err > 1e-3)) fail_msg("%dx%d %s: r_driver != r_sense, yet Eb == E^T (%.3e)", n, m,
                                        xb_solve_method_name(meth), err);
            if (meth == XB_SOLVE_DECOUPLED) {   /* ideal wires: the decoupled model is exact, so reciprocal */
                c = (xb_circuit){0, 80, 80};
                effective(meth, c, n, m, g, e);
                effective_bwd(meth, c, n, m, g, eb);
                err = transpose_err(eb, e, n, m);
                if (!(err < 1e-13)) fail_msg("%dx%d decoupled, ideal wires: Eb vs E^T %.3e", n, m, err);
            }
        }
        xb_free(g); xb_free(e); xb_free(eb);
    }
    print_message("backward reciprocity, max |Eb - E^T| / max E: exact %.1e, cholmod %.1e, decoupled %.1e\n",
                  worst[XB_SOLVE_EXACT], worst[XB_SOLVE_CHOLMOD], worst[XB_SOLVE_DECOUPLED]);
}

/* With r_driver != r_sense: Eb against the column-driven circuit solved directly (nodal_direct with
 * unit inputs on one column at a time: no relabelling of the grid). */
static void test_backward_vs_direct(void **state) {
    (void)state;
    const int shapes[][2] = {{4, 6}, {7, 3}, {1, 5}, {5, 1}, {9, 8}};
    const double regimes[][3] = {{2.5, 150, 60}, {10, 30, 500}, {0.5, 1e3, 1}, {4, 1, 2e3}};
    double worst[XB_SOLVE_METHOD_COUNT] = {0};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t r = 0; r < sizeof regimes / sizeof *regimes; r++) {
            const int n = shapes[s][0], m = shapes[s][1];
            xb_circuit c = {regimes[r][0], regimes[r][1], regimes[r][2]};
            double *g = random_g(n, m, 1e-6, r == 1 ? 1e-3 : 1e-4, 60 + s), *eye = xb_calloc(8 * m * m),
                   *want = xb_malloc(8 * n * m), *eb = xb_malloc(8 * n * m);
            for (int j = 0; j < m; j++) eye[j * m + j] = 1;
            nodal_direct(c, n, m, g, XB_READ_BACKWARD, m, eye, want);   /* row j: column j at 1 V */
            for (xb_solve_method meth = XB_SOLVE_EXACT; meth <= XB_SOLVE_CHOLMOD; meth++) {
                effective_bwd(meth, c, n, m, g, eb);
                double err = max_rel(eb, want, (size_t)n * m);
                if (!(err < 1e-10)) fail_msg("%dx%d regime %zu %s: Eb vs direct %.3e", n, m, r,
                                            xb_solve_method_name(meth), err);
                if (err > worst[meth]) worst[meth] = err;
            }
            effective_bwd(XB_SOLVE_DECOUPLED, c, n, m, g, eb);   /* an approximation: loosely */
            double err = max_rel(eb, want, (size_t)n * m);
            if (!(err < 0.2)) fail_msg("%dx%d regime %zu decoupled: Eb vs direct %.3e", n, m, r, err);
            if (err > worst[XB_SOLVE_DECOUPLED]) worst[XB_SOLVE_DECOUPLED] = err;
            xb_free(g); xb_free(eye); xb_free(want); xb_free(eb);
        }
    print_message("backward vs direct column-driven solve, max rel: exact %.1e, cholmod %.1e, decoupled %.1e\n",
                  worst[XB_SOLVE_EXACT], worst[XB_SOLVE_CHOLMOD], worst[XB_SOLVE_DECOUPLED]);
}

/* All resistances zero: Eb == G^T bit for bit (exact and decoupled; CHOLMOD needs r > 0). */
static void test_backward_ideal(void **state) {
    (void)state;
    const int n = 13, m = 21;
    double *g = random_g(n, m, 1e-6, 1e-4, 70), *gt = xb_malloc(8 * n * m), *eb = xb_malloc(8 * n * m);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) gt[j * n + i] = g[i * m + j];
    xb_circuit c = {0, 0, 0};
    effective_bwd(XB_SOLVE_EXACT, c, n, m, g, eb);
    assert_memory_equal(eb, gt, 8 * n * m);
    effective_bwd(XB_SOLVE_DECOUPLED, c, n, m, g, eb);
    assert_true(max_rel(eb, gt, (size_t)n * m) < 1e-15);
    xb_free(g); xb_free(gt); xb_free(eb);
}

/* Plans: one square plan reads both ways with one workspace of the larger size; a (cols, rows) plan
 * reads a (rows, cols) tile backward; threads share a plan; bad input is named in tile coordinates. */
static void test_backward_plans(void **state) {
    (void)state;
    const int n = 24, m = 24, nr = 10, nc = 17, nt = 5;
    xb_circuit c = {2.5, 150, 60};
    double *g = random_g(n, m, 1e-6, 1e-4, 80), *e = xb_malloc(8 * n * m), *want = xb_malloc(8 * n * m);
    xb_solve_plan *p;
    assert_int_equal(xb_solve_plan_init(n, m, XB_SOLVE_EXACT, &p), XB_OK);
    assert_int_equal(xb_solve_plan_workspace_dir(p, XB_READ_FORWARD), xb_solve_plan_workspace(p));
    assert_true(xb_solve_plan_workspace_dir(p, XB_READ_BACKWARD) >= xb_solve_plan_workspace(p) + 8 * n * m);
    void *w = xb_malloc(xb_solve_plan_workspace_dir(p, XB_READ_BACKWARD));
    xb_solve_stats st;
    assert_int_equal(xb_solve_plan_effective_dir(p, &c, XB_READ_FORWARD, g, e, w, &st), XB_OK);
    effective(XB_SOLVE_EXACT, c, n, m, g, want);
    assert_memory_equal(e, want, 8 * n * m);
    assert_int_equal(xb_solve_plan_effective_dir(p, &c, XB_READ_BACKWARD, g, e, w, &st), XB_OK);
    effective_bwd(XB_SOLVE_EXACT, c, n, m, g, want);
    assert_memory_equal(e, want, 8 * n * m);
    assert_true(st.method == XB_SOLVE_EXACT && st.flops > 0 && st.time_s >= 0);
    expect_error(xb_solve_plan_effective_dir(p, &c, (xb_read_dir)7, g, e, w, &st), XB_ERR_ARG, "direction 7");
    assert_int_equal(xb_solve_plan_workspace_dir(p, (xb_read_dir)7), 0);
    xb_free(w);
    xb_solve_plan_free(p);

    /* a non-square tile through a shared (nc, nr) plan, one workspace per thread */
    double *gt[5], *et[5], *ref = xb_malloc(8 * nr * nc);
    for (int t = 0; t < nt; t++) { gt[t] = random_g(nr, nc, 1e-6, 1e-4, 90 + t); et[t] = xb_malloc(8 * nr * nc); }
    assert_int_equal(xb_solve_plan_init(nc, nr, XB_SOLVE_EXACT, &p), XB_OK);
    int pr, pc, bad = 0;
    xb_solve_plan_size(p, &pr, &pc);
    assert_true(pr == nc && pc == nr);
#pragma omp parallel reduction(+ : bad)
    {
        void *tw = xb_malloc(xb_solve_plan_workspace_dir(p, XB_READ_BACKWARD));
#pragma omp for
        for (int t = 0; t < nt; t++) bad += xb_solve_plan_effective_dir(p, &c, XB_READ_BACKWARD, gt[t], et[t], tw, NULL) != XB_OK;
        xb_free(tw);
    }
    assert_int_equal(bad, 0);
    for (int t = 0; t < nt; t++) {
        effective_bwd(XB_SOLVE_EXACT, c, nr, nc, gt[t], ref);
        assert_memory_equal(et[t], ref, 8 * nr * nc);
    }
    xb_solve_plan_free(p);
    /* bad input: G[3,11] of the (10, 17) tile, not its place in the relabelled grid */
    gt[0][3 * nc + 11] = -1e-6;
    expect_error(xb_xbar_effective_backward(XB_SOLVE_EXACT, &c, nr, nc, gt[0], ref, NULL), XB_ERR_ARG, "G[3,11]");
    gt[0][3 * nc + 11] = NAN;
    expect_error(xb_xbar_effective_backward(XB_SOLVE_DECOUPLED, &c, nr, nc, gt[0], ref, NULL), XB_ERR_ARG, "not finite");
    gt[0][3 * nc + 11] = 1e-5;
    c.r_driver_ohm = -5;
    expect_error(xb_xbar_effective_backward(XB_SOLVE_EXACT, &c, nr, nc, gt[0], ref, NULL), XB_ERR_ARG, "r_driver");
    c.r_driver_ohm = 100;
    c.r_wire_ohm = 0;
    expect_error(xb_xbar_effective_backward(XB_SOLVE_CHOLMOD, &c, nr, nc, gt[0], ref, NULL), XB_ERR_UNSUPPORTED, "exact");
    expect_error(xb_xbar_effective_backward(XB_SOLVE_EXACT, &c, 0, nc, gt[0], ref, NULL), XB_ERR_SHAPE, "x 0");
    double v[2 * 17], i[2 * 10];
    for (int k = 0; k < 2 * nc; k++) v[k] = 0.1;
    v[nc + 4] = INFINITY;
    expect_error(xb_xbar_currents_backward(XB_SOLVE_EXACT, &c, nr, nc, gt[0], 2, v, i, NULL, NULL), XB_ERR_ARG, "V[1,4]");
    for (int t = 0; t < nt; t++) { xb_free(gt[t]); xb_free(et[t]); }
    xb_free(g); xb_free(e); xb_free(want); xb_free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_cell),
        cmocka_unit_test(test_ideal_is_g),
        cmocka_unit_test(test_ideal_wires_closed_forms),
        cmocka_unit_test(test_single_row_ladder),
        cmocka_unit_test(test_vs_dense_reference),
        cmocka_unit_test(test_vs_cholmod),
        cmocka_unit_test(test_reciprocity),
        cmocka_unit_test(test_bounds_and_linearity),
        cmocka_unit_test(test_scale_invariance),
        cmocka_unit_test(test_limits_continuous),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_non_finite_result_reported),
        cmocka_unit_test(test_plan_shared_by_threads),
        cmocka_unit_test(test_decoupled_error_bound),
        cmocka_unit_test(test_backward_reciprocity),
        cmocka_unit_test(test_backward_vs_direct),
        cmocka_unit_test(test_backward_ideal),
        cmocka_unit_test(test_backward_plans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
