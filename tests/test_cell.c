/* test_cell.c -- 1T-1R cells (include/xb_cell.h): the level-1 NMOS against its formulas (values, continuity at
 * the triode/saturation boundary, derivatives by differences, symmetry), the series cell's internal node,
 * and the Newton tile solve against an independent dense Newton of the full three-node circuit, against the
 * per-cell sum without parasitics, against the linear solver with the transistor fully on, in the ideal
 * limits, across thread counts, and on bad input.  The ngspice comparison is tests/ref_solver.py. */
#include "testutil.h"
#include "xb_cell.h"
#include "xb_neat.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static double urand(uint64_t *s) {   /* splitmix64 in [0,1) */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), 1e-300); }

static void test_mos_formulas(void **state) {
    (void)state;
    const xb_cell c = {.type = XB_CELL_1T1R, .v_gate_v = 0.9, .beta_a_per_v2 = 3e-4, .v_t_v = 0.4, .lambda_per_v = 0.1};
    double i, dd, ds;
    int r;
    /* triode: vgs 0.9, vds 0.2, vov 0.5 */
    xb_nmos_iv(&c, 0.9, 0.2, 0.0, &i, &dd, &ds, &r);
    assert_int_equal(r, XB_MOS_TRIODE);
    assert_true(rel(i, 3e-4 * (0.5 - 0.1) * 0.2 * 1.02) < 1e-14);
    /* saturation: vds 0.7 */
    xb_nmos_iv(&c, 0.9, 0.7, 0.0, &i, &dd, &ds, &r);
    assert_int_equal(r, XB_MOS_SAT);
    assert_true(rel(i, 0.5 * 3e-4 * 0.25 * 1.07) < 1e-14);
    /* cutoff: the source at 0.6 V leaves vgs 0.3 < vt */
    xb_nmos_iv(&c, 0.9, 0.8, 0.6, &i, &dd, &ds, &r);
    assert_int_equal(r, XB_MOS_CUTOFF);
    assert_true(i == 0 && dd == 0 && ds == 0);
    /* reverse: drain below source swaps them, I = -f(vg - vd, vs - vd) */
    double f;
    xb_nmos_iv(&c, 0.9, 0.1, 0.3, &i, NULL, NULL, &r);
    xb_nmos_iv(&c, 0.9, 0.3, 0.1, &f, NULL, NULL, NULL);   /* the same device with its terminals swapped */
    assert_int_equal(r, XB_MOS_REV_TRIODE);
    const double vov = 0.9 - 0.1 - 0.4, vds = 0.2;
    assert_true(rel(i, -3e-4 * (vov - vds / 2) * vds * (1 + 0.1 * vds)) < 1e-14);
    assert_true(rel(-i, f) < 1e-15);
    /* continuity of I and both derivatives across vds = vov (forward and reverse) */
    for (int rev = 0; rev < 2; rev++) {
        const double vs = 0.05, vb = vs + (0.9 - vs - 0.4), e = 1e-12;
        double i1, d1, s1, i2, d2, s2;
        if (!rev) {
            xb_nmos_iv(&c, 0.9, vb - e, vs, &i1, &d1, &s1, NULL);
            xb_nmos_iv(&c, 0.9, vb + e, vs, &i2, &d2, &s2, NULL);
        } else {   /* the drain side low: boundary at vs_eff... swap terminals */
            xb_nmos_iv(&c, 0.9, vs, vb - e, &i1, &d1, &s1, NULL);
            xb_nmos_iv(&c, 0.9, vs, vb + e, &i2, &d2, &s2, NULL);
        }
        assert_true(rel(i1, i2) < 1e-9);
        assert_true(rel(d1, d2) < 1e-9);
        assert_true(rel(s1, s2) < 1e-9);
    }
    /* derivatives by central differences at random points in every regime */
    uint64_t seed = 7;
    int seen[XB_MOS_REGIMES] = {0};
    for (int t = 0; t < 4000; t++) {
        const double vg = 0.5 + urand(&seed), vd = 1.2 * urand(&seed), vs = 1.2 * urand(&seed), h = 1e-7;
        double a, b, ip, im;
        xb_nmos_iv(&c, vg, vd, vs, &i, &dd, &ds, &r);
        /* skip points within h of a regime boundary, where one-sided pieces meet (C1 only) */
        int rp, rm;
        xb_nmos_iv(&c, vg, vd + h, vs, &ip, NULL, NULL, &rp);
        xb_nmos_iv(&c, vg, vd - h, vs, &im, NULL, NULL, &rm);
        if (rp != r || rm != r) continue;
        a = (ip - im) / (2 * h);
        xb_nmos_iv(&c, vg, vd, vs + h, &ip, NULL, NULL, &rp);
        xb_nmos_iv(&c, vg, vd, vs - h, &im, NULL, NULL, &rm);
        if (rp != r || rm != r) continue;
        b = (ip - im) / (2 * h);
        seen[r]++;
        const double scale = c.beta_a_per_v2;   /* derivatives are O(beta); compare absolutely on that scale */
        if (fabs(a - dd) > 1e-6 * scale || fabs(b - ds) > 1e-6 * scale)
            fail_msg("regime %d at vg %g vd %g vs %g: dI/dvd %g vs %g, dI/dvs %g vs %g", r, vg, vd, vs, dd, a, ds, b);
    }
    for (int k = 0; k < XB_MOS_REGIMES; k++)
        if (seen[k] < 50) fail_msg("regime %d sampled only %d times", k, seen[k]);
}

static void test_cell_internal_node(void **state) {
    (void)state;
    const xb_cell c = {.type = XB_CELL_1T1R, .v_gate_v = 0.7, .beta_a_per_v2 = 2e-4, .v_t_v = 0.4, .lambda_per_v = 0.05};
    uint64_t seed = 11;
    int regimes[XB_MOS_REGIMES] = {0};
    for (int t = 0; t < 3000; t++) {
        const double g = pow(10, -6 + 3 * urand(&seed)), vr = 0.6 * urand(&seed), vc = 0.6 * urand(&seed) * urand(&seed);
        double i, a, s, vd, im;
        int r;
        xb_cell_1t1r_current(&c, g, vr, vc, NULL, &i, &a, &s, &vd, &r);
        regimes[r]++;
        xb_nmos_iv(&c, c.v_gate_v, vd, vc, &im, NULL, NULL, NULL);
        /* both sides of the internal equation carry the same current */
        /* (to the internal solve's stopping tolerance, a few ulps of the node voltages) */
        if (fabs(g * (vr - vd) - im) > 16 * 2.3e-16 * fmax(vr, vc) * (g + c.beta_a_per_v2))
            fail_msg("g %g vr %g vc %g: memristor %g A, transistor %g A", g, vr, vc, g * (vr - vd), im);
        assert_true(vd >= fmin(vr, vc) && vd <= fmax(vr, vc));
        /* derivatives by differences (the cell is C1; keep clear of the kinks by checking both sides agree) */
        const double h = 1e-7;
        double ip, in, jp, jn;
        xb_cell_1t1r_current(&c, g, vr + h, vc, NULL, &ip, NULL, NULL, NULL, NULL);
        xb_cell_1t1r_current(&c, g, vr - h, vc, NULL, &in, NULL, NULL, NULL, NULL);
        xb_cell_1t1r_current(&c, g, vr, vc + h, NULL, &jp, NULL, NULL, NULL, NULL);
        xb_cell_1t1r_current(&c, g, vr, vc - h, NULL, &jn, NULL, NULL, NULL, NULL);
        const double fa = (ip - in) / (2 * h), fs = (jp - jn) / (2 * h), tol = 1e-5 * g + 1e-12;
        if (fabs(fa - a) > tol || fabs(fs - s) > tol)
            fail_msg("g %g vr %g vc %g (regime %d): dI/dvr %g vs %g, dI/dvc %g vs %g", g, vr, vc, r, a, fa, s, fs);
        /* a warm start lands on the same answer */
        double i2, guess = 0.5 * (vr + vc);
        xb_cell_1t1r_current(&c, g, vr, vc, &guess, &i2, NULL, NULL, NULL, NULL);
        assert_true(fabs(i2 - i) <= 16 * 2.3e-16 * fmax(vr, vc) * (g + c.beta_a_per_v2));
    }
    assert_true(regimes[XB_MOS_TRIODE] > 100 && regimes[XB_MOS_SAT] > 100 && regimes[XB_MOS_REV_TRIODE] > 100);
    /* no memristor current with G = 0, and none with vr == vc */
    double i, a, s;
    xb_cell_1t1r_current(&c, 0, 0.5, 0.0, NULL, &i, &a, &s, NULL, NULL);
    assert_true(i == 0 && a == 0 && s == 0);
    xb_cell_1t1r_current(&c, 1e-5, 0.2, 0.2, NULL, &i, NULL, NULL, NULL, NULL);
    assert_true(i == 0);
}

/* ---- an independent reference: dense Newton on the full circuit with the drain nodes kept ---------- */

/* Gaussian elimination with partial pivoting, a (N x N row-major) overwritten, b -> solution. */
static void dense_solve(int N, double *a, double *b) {
    for (int k = 0; k < N; k++) {
        int p = k;
        for (int r = k + 1; r < N; r++) if (fabs(a[(size_t)r * N + k]) > fabs(a[(size_t)p * N + k])) p = r;
        if (p != k) {
            for (int c = 0; c < N; c++) { double t = a[(size_t)k * N + c]; a[(size_t)k * N + c] = a[(size_t)p * N + c]; a[(size_t)p * N + c] = t; }
            double t = b[k]; b[k] = b[p]; b[p] = t;
        }
        for (int r = k + 1; r < N; r++) {
            const double f = a[(size_t)r * N + k] / a[(size_t)k * N + k];
            if (f == 0) continue;
            for (int c = k; c < N; c++) a[(size_t)r * N + c] -= f * a[(size_t)k * N + c];
            b[r] -= f * b[k];
        }
    }
    for (int k = N - 1; k >= 0; k--) {
        double s = b[k];
        for (int c = k + 1; c < N; c++) s -= a[(size_t)k * N + c] * b[c];
        b[k] = s / a[(size_t)k * N + k];
    }
}

/* Row node (i,j) = i*m+j, drain node nm + i*m+j, column node 2nm + i*m+j; every resistance finite. */
static void dense_newton(const xb_circuit *cc, const xb_cell *c, int n, int m, const double *g, const double *v,
                         double *out) {
    const int nm = n * m, N = 3 * nm;
    const double gw = 1 / cc->r_wire_ohm, gd = 1 / cc->r_driver_ohm, gs = 1 / cc->r_sense_ohm;
    double *x = calloc(N, sizeof(double)), *F = calloc(N, sizeof(double)), *J = calloc((size_t)N * N, sizeof(double));
    for (int k = 0; k < nm; k++) { x[k] = v[k / m]; x[nm + k] = 0.5 * v[k / m]; }
    for (int it = 0; it < 200; it++) {
        memset(F, 0, N * sizeof(double));
        memset(J, 0, (size_t)N * N * sizeof(double));
#define LINK(a, b, gg) do { double cur = (gg) * (x[a] - x[b]); F[a] += cur; F[b] -= cur; \
        J[(size_t)(a) * N + (a)] += (gg); J[(size_t)(b) * N + (b)] += (gg); J[(size_t)(a) * N + (b)] -= (gg); \
        J[(size_t)(b) * N + (a)] -= (gg); } while (0)
        for (int i = 0; i < n; i++) {
            F[i * m] += gd * (x[i * m] - v[i]);
            J[(size_t)(i * m) * N + i * m] += gd;
            for (int j = 0; j < m; j++) {
                const int r = i * m + j, d = nm + r, cn = 2 * nm + r;
                if (j > 0) LINK(r - 1, r, gw);
                if (i > 0) LINK(cn - m, cn, gw);
                LINK(r, d, g[r]);
                double im, dd, ds;
                xb_nmos_iv(c, c->v_gate_v, x[d], x[cn], &im, &dd, &ds, NULL);
                F[d] += im; F[cn] -= im;
                J[(size_t)d * N + d] += dd; J[(size_t)d * N + cn] += ds;
                J[(size_t)cn * N + d] -= dd; J[(size_t)cn * N + cn] -= ds;
            }
        }
        for (int j = 0; j < m; j++) {
            const int cn = 2 * nm + (n - 1) * m + j;
            F[cn] += gs * x[cn];
            J[(size_t)cn * N + cn] += gs;
        }
#undef LINK
        for (int k = 0; k < N; k++) F[k] = -F[k];
        dense_solve(N, J, F);
        double step = 0;
        for (int k = 0; k < N; k++) step = fmax(step, fabs(F[k]));
        const double alpha = step > 0.1 ? 0.1 / step : 1;
        for (int k = 0; k < N; k++) x[k] += alpha * F[k];
        if (step < 1e-15) break;
    }
    for (int j = 0; j < m; j++) out[j] = gs * x[2 * nm + (n - 1) * m + j];
    free(x); free(F); free(J);
}

static void test_vs_dense_newton(void **state) {
    (void)state;
    struct { int n, m; double rw, rd, rs, vg, vmax, gmax; } cases[] = {
        {4, 5, 2.5, 100, 100, 0.7, 0.5, 1e-4},      /* mixed triode and saturation */
        {5, 3, 10, 30, 300, 0.5, 0.5, 5e-4},        /* low gate: mostly saturated; severe wires */
        {3, 6, 1, 1e3, 10, 1.3, 0.5, 1e-4},         /* high gate: triode only; a weak driver */
        {6, 4, 5, 50, 5e4, 0.6, 0.5, 1e-4},         /* large sense: columns rise, cells reverse or cut off */
        {1, 7, 20, 10, 10, 0.8, 0.4, 1e-3},
        {7, 1, 20, 10, 10, 0.8, 0.4, 1e-3},
    };
    uint64_t seed = 3;
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        const int n = cases[t].n, m = cases[t].m, B = 3;
        const xb_circuit cc = {cases[t].rw, cases[t].rd, cases[t].rs};
        xb_cell c = xb_cell_1t1r_default();
        c.v_gate_v = cases[t].vg;
        double g[64], v[3 * 8], got[3 * 8], want[8];
        for (int k = 0; k < n * m; k++) g[k] = 1e-6 + (cases[t].gmax - 1e-6) * urand(&seed);
        for (int k = 0; k < B * n; k++) v[k] = cases[t].vmax * urand(&seed);
        xb_cell_stats st;
        if (xb_xbar_currents_cell(&cc, &c, n, m, g, B, v, got, NULL, &st)) fail_msg("%s", xb_last_error());
        for (int b = 0; b < B; b++) {
            dense_newton(&cc, &c, n, m, g, v + b * n, want);
            double mx = 0, d = 0;
            for (int j = 0; j < m; j++) { mx = fmax(mx, fabs(want[j])); d = fmax(d, fabs(got[b * m + j] - want[j])); }
            /* the solve stops at node updates of 1e-12 of the largest input voltage; the sense nodes sit 100-1000x
             * lower, so the outputs are good to ~1e-9 of themselves (measured: up to 3e-10) */
            if (!(d <= 2e-9 * mx)) fail_msg("case %zu input %d: max error %.3e relative to %.3e", t, b, d / mx, mx);
        }
        assert_true(st.iter_max >= 1 && st.iter_max <= 30);
        int64_t cells = 0;
        for (int k = 0; k < XB_MOS_REGIMES; k++) cells += st.regimes[k];
        assert_int_equal(cells, (int64_t)B * n * m);
        if (t == 1) assert_true(st.regimes[XB_MOS_SAT] > 0);
        if (t == 2) assert_true(st.regimes[XB_MOS_SAT] == 0 && st.regimes[XB_MOS_TRIODE] > 0);
    }
}

/* Without parasitics every cell sees its row's input and 0 V: the output is the per-cell sum, exactly; with
 * 1-bit inputs (0 or V_read) that is linear in the bits. */
static void test_no_parasitics_is_cell_sum(void **state) {
    (void)state;
    const int n = 9, m = 6, B = 4;
    const xb_circuit cc = {0, 0, 0};
    const xb_cell c = xb_cell_1t1r_default();
    uint64_t seed = 5;
    double g[54], v[36], got[24];
    for (int k = 0; k < n * m; k++) g[k] = 1e-6 + 1e-4 * urand(&seed);
    for (int k = 0; k < B * n; k++) v[k] = k < 2 * n ? 0.5 * urand(&seed) : (urand(&seed) < 0.5 ? 0 : 0.3);
    xb_cell_stats st;
    if (xb_xbar_currents_cell(&cc, &c, n, m, g, B, v, got, NULL, &st)) fail_msg("%s", xb_last_error());
    assert_int_equal(st.unknowns, 0);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < m; j++) {
            double s = 0, lin = 0;
            for (int i = 0; i < n; i++) {
                double ic, i1;
                xb_cell_1t1r_current(&c, g[i * m + j], v[b * n + i], 0, NULL, &ic, NULL, NULL, NULL, NULL);
                xb_cell_1t1r_current(&c, g[i * m + j], 0.3, 0, NULL, &i1, NULL, NULL, NULL, NULL);
                s += ic;
                lin += (v[b * n + i] != 0) * i1;
            }
            assert_true(got[b * m + j] == s);
            if (b >= 2) assert_true(fabs(got[b * m + j] - lin) <= 1e-15 * fabs(lin));
        }
}

/* A huge, strongly driven transistor is a short: the tile is the linear solver's. */
static void test_fully_on_is_linear(void **state) {
    (void)state;
    const int n = 12, m = 10, B = 3;
    const xb_circuit cc = {2.5, 100, 100};
    const xb_cell c = {.type = XB_CELL_1T1R, .v_gate_v = 50, .beta_a_per_v2 = 100, .v_t_v = 0.4, .lambda_per_v = 0};
    uint64_t seed = 9;
    double g[120], v[36], got[30], want[30];
    for (int k = 0; k < n * m; k++) g[k] = 1e-6 + 1e-4 * urand(&seed);
    for (int k = 0; k < B * n; k++) v[k] = 0.3 * urand(&seed);
    if (xb_xbar_currents_cell(&cc, &c, n, m, g, B, v, got, NULL, NULL)) fail_msg("%s", xb_last_error());
    if (xb_xbar_currents(XB_SOLVE_EXACT, &cc, n, m, g, B, v, want, NULL, NULL)) fail_msg("%s", xb_last_error());
    for (int k = 0; k < B * m; k++) assert_true(rel(got[k], want[k]) < 1e-7);
    const xb_cell r = xb_cell_resistor();
    if (xb_xbar_currents_cell(&cc, &r, n, m, g, B, v, got, NULL, NULL)) fail_msg("%s", xb_last_error());
    for (int k = 0; k < B * m; k++) assert_true(got[k] == want[k]);
}

/* Zero resistances are the limits of small ones (each branch of the node bookkeeping).  1e-6 ohm next to
 * 1e4..1e6 ohm cells: much smaller ones make the Newton update's round-off exceed the 1e-12 tolerance. */
static void test_ideal_limits(void **state) {
    (void)state;
    const int n = 6, m = 7, B = 2;
    const xb_cell c = xb_cell_1t1r_default();
    uint64_t seed = 13;
    double g[42], v[12], a[14], b[14];
    for (int k = 0; k < n * m; k++) g[k] = 1e-6 + 1e-4 * urand(&seed);
    for (int k = 0; k < B * n; k++) v[k] = 0.5 * urand(&seed);
    const xb_circuit pairs[][2] = {
        {{0, 100, 100}, {1e-6, 100, 100}}, {{2.5, 0, 100}, {2.5, 1e-6, 100}}, {{2.5, 100, 0}, {2.5, 100, 1e-6}},
        {{2.5, 0, 0}, {2.5, 1e-6, 1e-6}},  {{0, 0, 100}, {1e-6, 1e-6, 100}},  {{0, 100, 0}, {1e-6, 100, 1e-6}},
        {{0, 0, 0}, {1e-6, 1e-6, 1e-6}},
    };
    for (size_t t = 0; t < sizeof pairs / sizeof *pairs; t++) {
        if (xb_xbar_currents_cell(&pairs[t][0], &c, n, m, g, B, v, a, NULL, NULL) ||
            xb_xbar_currents_cell(&pairs[t][1], &c, n, m, g, B, v, b, NULL, NULL))
            fail_msg("%s", xb_last_error());
        for (int k = 0; k < B * m; k++)
            if (!(rel(a[k], b[k]) < 1e-6)) fail_msg("pair %zu output %d: %.9g vs %.9g", t, k, a[k], b[k]);
    }
}

/* Inputs are spread over threads; the answer must not depend on how. */
static void test_threads_same_answer(void **state) {
    (void)state;
#ifdef _OPENMP
    const int n = 16, m = 12, B = 7;
    const xb_circuit cc = {5, 100, 100};
    const xb_cell c = xb_cell_1t1r_default();
    uint64_t seed = 17;
    double *g = malloc(n * m * sizeof(double)), *v = malloc(B * n * sizeof(double));
    double *a = malloc(B * m * sizeof(double)), *b = malloc(B * m * sizeof(double));
    for (int k = 0; k < n * m; k++) g[k] = 1e-6 + 1e-4 * urand(&seed);
    for (int k = 0; k < B * n; k++) v[k] = 0.5 * urand(&seed);
    const int nth = omp_get_max_threads();
    omp_set_num_threads(1);
    xb_status s1 = xb_xbar_currents_cell(&cc, &c, n, m, g, B, v, a, NULL, NULL);
    omp_set_num_threads(3);
    xb_status s2 = xb_xbar_currents_cell(&cc, &c, n, m, g, B, v, b, NULL, NULL);
    omp_set_num_threads(nth);
    assert_int_equal(s1, XB_OK);
    assert_int_equal(s2, XB_OK);
    assert_memory_equal(a, b, B * m * sizeof(double));
    free(g); free(v); free(a); free(b);
#endif
}

static void test_bad_input(void **state) {
    (void)state;
    const xb_circuit cc = {2.5, 100, 100};
    double g[6] = {1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 6e-5}, v[4] = {0.2, 0.4, 0.1, 0.3}, i[6];
    xb_cell c = xb_cell_1t1r_default();
    c.v_gate_v = 0.4;
    xbt_assert_error(xb_xbar_currents_cell(&cc, &c, 2, 3, g, 2, v, i, NULL, NULL), XB_ERR_ARG, "v_gate_v", "not positive");
    c = xb_cell_1t1r_default();
    c.beta_a_per_v2 = 0;
    xbt_assert_error(xb_xbar_currents_cell(&cc, &c, 2, 3, g, 2, v, i, NULL, NULL), XB_ERR_ARG, "beta_a_per_v2", "> 0");
    c = xb_cell_1t1r_default();
    c.lambda_per_v = -0.1;
    xbt_assert_error(xb_xbar_currents_cell(&cc, &c, 2, 3, g, 2, v, i, NULL, NULL), XB_ERR_ARG, "lambda_per_v", ">= 0");
    c = xb_cell_1t1r_default();
    c.v_t_v = NAN;
    xbt_assert_error(xb_xbar_currents_cell(&cc, &c, 2, 3, g, 2, v, i, NULL, NULL), XB_ERR_ARG, "v_t_v", "finite");
    c = xb_cell_1t1r_default();
    g[4] = -1e-5;
    xbt_assert_error(xb_xbar_currents_cell(&cc, &c, 2, 3, g, 2, v, i, NULL, NULL), XB_ERR_ARG, "G[1,1]", "negative");
    g[4] = 5e-5;
    v[3] = NAN;
    xbt_assert_error(xb_xbar_currents_cell(&cc, &c, 2, 3, g, 2, v, i, NULL, NULL), XB_ERR_ARG, "V[1,1]", "finite");
    v[3] = 0.3;
    xbt_assert_error(xb_xbar_currents_cell(&cc, &c, 0, 3, g, 2, v, i, NULL, NULL), XB_ERR_SHAPE, "0 x 3", "tile");
    const xb_circuit bad = {-1, 100, 100};
    xbt_assert_error(xb_xbar_currents_cell(&bad, &c, 2, 3, g, 2, v, i, NULL, NULL), XB_ERR_ARG, "r_wire", "");
    /* an iteration cap that is too small is an error naming the input, never a silent answer */
    const xb_cell_opts o = {.max_iter = 1};
    xbt_assert_error(xb_xbar_currents_cell(&cc, &c, 2, 3, g, 2, v, i, &o, NULL), XB_ERR_NUMERIC, "input 0",
                     "did not converge in 1 iterations");
    xb_cell_type t;
    xbt_assert_error(xb_cell_type_parse("2t2r", &t), XB_ERR_ARG, "2t2r", "resistor or 1t1r");
    assert_int_equal(xb_cell_type_parse("1t1r", &t), XB_OK);
    assert_int_equal(t, XB_CELL_1T1R);
}

/* NEAT's analysis: the tolerance metric against a direct evaluation, its growth with G, the cut-off's definition, and
 * the small-signal conductance and its inverse. */
static void test_neat_cut_off(void **state) {
    (void)state;
    xb_cell c = xb_cell_1t1r_default();
    c.beta_a_per_v2 = 2.9e-4;
    c.v_t_v = 0.54;
    const double vmax = 0.5, tol = 0.025;
    /* the metric at one conductance against its definition on a fine grid (the 64-point grid is a lower bound) */
    const double g = 2e-5, g0 = c.beta_a_per_v2 * (c.v_gate_v - c.v_t_v), geff0 = g * g0 / (g + g0);
    double fine = 0;
    for (int k = 1; k <= 4096; k++) {
        const double v = vmax * k / 4096;
        double i;
        xb_cell_1t1r_current(&c, g, v, 0, NULL, &i, NULL, NULL, NULL, NULL);
        fine = fmax(fine, fabs(i / v - geff0) / geff0);
    }
    const double tm = xb_cell_tolerance(&c, g, vmax);
    assert_true(tm <= fine * (1 + 1e-12) && tm > 0.99 * fine);
    /* it grows with G and falls with the gate voltage */
    double prev = 0;
    for (int k = 0; k <= 20; k++) {
        const double t = xb_cell_tolerance(&c, 1e-6 * pow(100, k / 20.0), vmax);
        assert_true(t >= prev);
        prev = t;
    }
    xb_cell hi = c;
    hi.v_gate_v = 1.0;
    assert_true(xb_cell_tolerance(&hi, g, vmax) < tm);
    /* the cut-off: below it the metric is under the tolerance, just above it is not */
    double gc;
    assert_int_equal(xb_cell_g_cut(&c, vmax, tol, 1e-6, 1e-4, &gc), 0);
    assert_true(xb_cell_tolerance(&c, gc, vmax) < tol && xb_cell_tolerance(&c, gc * (1 + 1e-8), vmax) >= tol);
    /* no cut-off in a range that is linear throughout; and none below a range that is not */
    double all;
    assert_int_equal(xb_cell_g_cut(&c, vmax, tol, 1e-7, 0.5 * gc, &all), 1);
    assert_true(all == 0.5 * gc);   /* g_hi */
    double lo;
    assert_int_equal(xb_cell_g_cut(&c, vmax, 1e-9, 1e-5, 1e-4, &lo), 0);
    assert_true(lo == 1e-5);
    /* a resistor has no non-linearity */
    const xb_cell r = xb_cell_resistor();
    assert_true(xb_cell_tolerance(&r, g, vmax) == 0);
    /* small-signal conductance and the memristor behind it */
    for (int k = 0; k < 10; k++) {
        const double gm = 1e-6 * pow(10, k / 3.0), t = xb_cell_small_signal(&c, gm);
        assert_true(t < gm && t < g0);
        assert_true(rel(xb_cell_memristor_for(&c, t), gm) < 1e-12);
        double i;   /* the small-signal conductance is the secant's limit at small read voltages */
        xb_cell_1t1r_current(&c, gm, 1e-7, 0, NULL, &i, NULL, NULL, NULL, NULL);
        assert_true(rel(i / 1e-7, t) < 1e-5);
    }
}

/* EKV: level 1 in its limit (n = 1, U_T -> 0) in both directions, derivatives by differences everywhere (weak to
 * strong inversion, both orientations), C1 continuity where level 1 has its kinks, and the tile against the dense
 * three-node Newton. */
static void test_ekv(void **state) {
    (void)state;
    xb_cell e = xb_cell_1t1r_default(), l1 = e;
    e.model = XB_MOS_EKV;
    e.ekv_n = 1;
    e.ekv_ut_v = 1e-4;
    uint64_t seed = 23;
    int n = 0;
    for (int t = 0; t < 4000; t++) {
        const double vg = 0.5 + urand(&seed), vd = 1.2 * urand(&seed), vs = 1.2 * urand(&seed);
        const double lo = fmin(vd, vs), vov = vg - lo - e.v_t_v, a = fabs(vd - vs);
        if (vov < 0.02 || fabs(a - vov) < 0.02) continue;   /* away from level 1's kinks, where EKV rounds them */
        double ie, il, de, dl, se, sl;
        xb_nmos_iv(&e, vg, vd, vs, &ie, &de, &se, NULL);
        xb_nmos_iv(&l1, vg, vd, vs, &il, &dl, &sl, NULL);
        if (fabs(ie - il) > 1e-12 * fabs(il) + 1e-18 || fabs(de - dl) > 1e-9 * e.beta_a_per_v2 ||
            fabs(se - sl) > 1e-9 * e.beta_a_per_v2)
            fail_msg("vg %g vd %g vs %g: EKV %g (%g, %g) vs level 1 %g (%g, %g)", vg, vd, vs, ie, de, se, il, dl, sl);
        n++;
    }
    assert_true(n > 1000);
    /* a realistic EKV: derivatives by differences, subthreshold included, and monotone in the drain voltage */
    e.ekv_n = 1.3;
    e.ekv_ut_v = 0.025852;
    int sub = 0;
    for (int t = 0; t < 4000; t++) {
        const double vg = 0.2 + urand(&seed), vd = 1.2 * urand(&seed), vs = 1.2 * urand(&seed), h = 1e-6;
        double i, dd, ds, ip, im;
        xb_nmos_iv(&e, vg, vd, vs, &i, &dd, &ds, NULL);
        if (fabs(vd - vs) < 2 * h) continue;   /* lambda |vds| is C1 only at vds = 0 */
        sub += vg - fmin(vd, vs) < e.v_t_v;
        xb_nmos_iv(&e, vg, vd + h, vs, &ip, NULL, NULL, NULL);
        xb_nmos_iv(&e, vg, vd - h, vs, &im, NULL, NULL, NULL);
        const double fd = (ip - im) / (2 * h);
        xb_nmos_iv(&e, vg, vd, vs + h, &ip, NULL, NULL, NULL);
        xb_nmos_iv(&e, vg, vd, vs - h, &im, NULL, NULL, NULL);
        const double fs = (ip - im) / (2 * h);
        if (fabs(fd - dd) > 1e-6 * e.beta_a_per_v2 || fabs(fs - ds) > 1e-6 * e.beta_a_per_v2)
            fail_msg("EKV at vg %g vd %g vs %g: dI/dvd %g vs %g, dI/dvs %g vs %g", vg, vd, vs, dd, fd, ds, fs);
        assert_true(dd >= 0);
    }
    assert_true(sub > 100);
    /* the tile: Newton on the row and column nodes against the dense three-node Newton, both with EKV */
    const xb_circuit cc = {5, 100, 300};
    const int rows = 5, cols = 4, B = 2;
    double g[20], v[10], got[8], want[4];
    for (int k = 0; k < rows * cols; k++) g[k] = 1e-6 + 2e-4 * urand(&seed);
    for (int k = 0; k < B * rows; k++) v[k] = 0.5 * urand(&seed);
    e.v_gate_v = 0.6;
    if (xb_xbar_currents_cell(&cc, &e, rows, cols, g, B, v, got, NULL, NULL)) fail_msg("%s", xb_last_error());
    for (int b = 0; b < B; b++) {
        dense_newton(&cc, &e, rows, cols, g, v + b * rows, want);
        for (int j = 0; j < cols; j++)
            if (!(fabs(got[b * cols + j] - want[j]) <= 2e-9 * fabs(want[j]))) fail_msg("EKV tile %d,%d: %.12g vs %.12g", b, j,
                                                                                      got[b * cols + j], want[j]);
    }
    /* bad EKV parameters are refused */
    e.ekv_n = 0.9;
    xbt_assert_error(xb_xbar_currents_cell(&cc, &e, rows, cols, g, B, v, got, NULL, NULL), XB_ERR_ARG, "ekv_n", "HINT");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mos_formulas),
        cmocka_unit_test(test_cell_internal_node),
        cmocka_unit_test(test_vs_dense_newton),
        cmocka_unit_test(test_no_parasitics_is_cell_sum),
        cmocka_unit_test(test_fully_on_is_linear),
        cmocka_unit_test(test_ideal_limits),
        cmocka_unit_test(test_threads_same_answer),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_neat_cut_off),
        cmocka_unit_test(test_ekv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
