/* test_update.c -- the conductance update model for on-chip training (src/xbar/update.c, [update] in
 * docs/hardware.md): the linear model exactly (clamps and counts, pulses, stochastic rounding), TxSim's
 * deterministic formula exactly and its write noise's mean and variance within bounds computed from the
 * sample size, soft bounds pulse by pulse (centre step, saturation, asymmetry, cycle-to-cycle noise),
 * the per-cell changes of differential pairs and bit slices, bit reproducibility under any split of
 * the array, and the [update] config: round trip, JSON, errors naming the line. */
#include "testutil.h"
#include "xb_xbar.h"

#include <cJSON.h>

static xb_status parse_(const char *text, xb_hw *hw) { return xb_hw_parse_string(text, strlen(text), "t.cfg", hw); }

static double range_(const xb_hw *hw) { return hw->g_max_s - hw->g_min_s; }

/* ---- linear --------------------------------------------------------------------------------------- */

static void test_linear(void **state) {
    (void)state;
    xb_hw hw = xb_hw_default(); /* 1 uS .. 10 uS, linear, continuous */
    assert_true(xb_update_is_ideal(&hw));
    const double lo = hw.g_min_s, hi = hw.g_max_s;
    double g[9] = {2e-6, 5e-6, 9.5e-6, 1.5e-6, 3e-6, 4e-6, 4e-6, 2e-5, 0.5e-6};
    const double dg[9] = {1e-6, -2e-6, 1e-6, -1e-6, 0, NAN, INFINITY, -1e-7, -1e-7};
    xb_rng r;
    xb_rng_seed(&r, 1, "update");
    xb_update_counts c = {0};
    xb_device_update(&hw, 9, g, dg, &r, &c);
    assert_true(g[0] == 2e-6 + 1e-6);
    assert_true(g[1] == 5e-6 - 2e-6);
    assert_true(g[2] == hi);             /* 10.5 uS clamped */
    assert_true(g[3] == lo);             /* 0.5 uS clamped */
    assert_true(g[4] == 3e-6);           /* no request: untouched */
    assert_true(g[5] == 4e-6 && g[6] == 4e-6); /* non-finite requests: skipped */
    assert_true(g[7] == hi - 1e-7);      /* started above the range: moved to g_max first, not left there */
    assert_true(g[8] == lo);             /* started below, pushed further down: at g_min */
    assert_int_equal(c.updates, 6);
    assert_int_equal(c.pulses, 0);
    assert_int_equal(c.clamped_gmin, 2);
    assert_int_equal(c.clamped_gmax, 1);
    assert_int_equal(c.skipped, 2);
    xb_device_update(&hw, 0, g, dg, &r, &c); /* nothing */
    assert_int_equal(c.updates, 6);

    /* pulses of 0.1 uS, nearest: 0.34 uS -> 3 pulses, -0.26 uS -> 3, 0.04 uS -> none */
    hw.update.dg_min_s = 1e-7;
    assert_false(xb_update_is_ideal(&hw));
    double h[3] = {5e-6, 5e-6, 5e-6};
    const double dh[3] = {3.4e-7, -2.6e-7, 0.4e-7};
    memset(&c, 0, sizeof c);
    xb_device_update(&hw, 3, h, dh, &r, &c);
    assert_true(h[0] == 5e-6 + 3 * 1e-7);
    assert_true(h[1] == 5e-6 - 3 * 1e-7);
    assert_true(h[2] == 5e-6);
    assert_int_equal(c.updates, 3);
    assert_int_equal(c.pulses, 6);

    /* stochastic rounding: 2.3 pulses -> 2 or 3 with mean 2.3, variance 0.3 x 0.7 */
    hw.update.pulse_rounding = XB_PULSE_STOCHASTIC;
    enum { N = 100000 };
    double *x = malloc(N * sizeof(double)), *d = malloc(N * sizeof(double));
    for (int i = 0; i < N; i++) { x[i] = 5e-6; d[i] = 2.3e-7; }
    memset(&c, 0, sizeof c);
    xb_device_update(&hw, N, x, d, &r, &c);
    int64_t three = 0;
    for (int i = 0; i < N; i++) {
        double np = rint((x[i] - 5e-6) / 1e-7);
        assert_true(np == 2 || np == 3);
        three += np == 3;
    }
    assert_int_equal(c.pulses, 2 * (int64_t)N + three);
    double mean = (double)c.pulses / N, se = sqrt(0.21 / N);
    if (fabs(mean - 2.3) > 5 * se) fail_msg("stochastic rounding: mean %.5f pulses, want 2.3 +- %.5f", mean, 5 * se);
    if (getenv("XBT_VERBOSE")) fprintf(stderr, "  stochastic rounding: mean %.5f pulses (2.3 +- %.5f)\n", mean, 5 * se);
    free(x);
    free(d);
}

/* ---- txsim ---------------------------------------------------------------------------------------- */

static void test_txsim_deterministic(void **state) {
    (void)state;
    xb_hw hw = xb_hw_default();
    hw.update.model = XB_UPDATE_TXSIM;
    const double lo = hw.g_min_s, hi = hw.g_max_s, R = range_(&hw);
    const double vs[] = {0, 0.1, 0.5, 1, 2};
    const double g0[] = {1e-6, 3e-6, 5.5e-6, 8e-6, 9.9e-6};
    const double d0[] = {4e-8, -4e-8, 3e-7, -3e-7};
    xb_rng r;
    xb_rng_seed(&r, 2, "update");
    for (size_t a = 0; a < sizeof vs / sizeof *vs; a++) {
        hw.update.nonlinearity = vs[a];
        for (size_t b = 0; b < sizeof g0 / sizeof *g0; b++)
            for (size_t k = 0; k < sizeof d0 / sizeof *d0; k++) {
                double G = g0[b], dG = d0[k], g = G;
                double f = dG > 0 ? 1 - vs[a] * (G - lo) / R : 1 - vs[a] * (hi - G) / R;
                double want = G + dG * (f > 0 ? f : 0);
                want = want < lo ? lo : want > hi ? hi : want;
                xb_update_counts c = {0};
                xb_device_update(&hw, 1, &g, &dG, &r, &c);
                if (g != want) fail_msg("v %g G %g dG %g: %.17g, want %.17g", vs[a], G, dG, g, want);
            }
    }
    /* by hand: v = 0.5, G at a quarter of the range, +0.2 uS -> 0.2 (1 - 0.125) = 0.175 uS */
    hw.update.nonlinearity = 0.5;
    double g = lo + 0.25 * R, dG = 2e-7;
    xb_update_counts c = {0};
    xb_device_update(&hw, 1, &g, &dG, &r, &c);
    assert_true(fabs(g - (lo + 0.25 * R + 1.75e-7)) < 1e-20);
    /* depression at the same point: factor 1 - 0.5 x 0.75 = 0.625 */
    g = lo + 0.25 * R;
    dG = -2e-7;
    xb_device_update(&hw, 1, &g, &dG, &r, &c);
    assert_true(fabs(g - (lo + 0.25 * R - 1.25e-7)) < 1e-20);
    /* clamping both ways, counted */
    double gg[2] = {9.9e-6, 1.05e-6}, dd[2] = {5e-7, -5e-7};
    hw.update.nonlinearity = 0;
    memset(&c, 0, sizeof c);
    xb_device_update(&hw, 2, gg, dd, &r, &c);
    assert_true(gg[0] == hi && gg[1] == lo);
    assert_int_equal(c.clamped_gmax, 1);
    assert_int_equal(c.clamped_gmin, 1);
}

/* v = 0, gamma > 0: the change is dG + gamma sigma0 sqrt(|dG| R) N(0,1), unbiased with known variance */
static void test_txsim_noise_moments(void **state) {
    (void)state;
    enum { N = 200000 };
    xb_hw hw = xb_hw_default();
    hw.update.model = XB_UPDATE_TXSIM;
    hw.update.write_noise = 5;
    hw.update.write_noise_sigma = 0.01;
    const double R = range_(&hw), g0 = 5.5e-6;
    double *g = malloc(N * sizeof(double)), *d = malloc(N * sizeof(double)), mean, var;
    const double dgs[] = {1e-7, -1e-7, 2e-8};
    xb_rng r;
    xb_rng_seed(&r, 3, "update");
    for (size_t q = 0; q < sizeof dgs / sizeof *dgs; q++) {
        for (int i = 0; i < N; i++) { g[i] = g0; d[i] = dgs[q]; }
        xb_rng rq;
        xb_rng_fork(&r, q, &rq);
        xb_update_counts c = {0};
        xb_device_update(&hw, N, g, d, &rq, &c);
        assert_int_equal(c.clamped_gmin + c.clamped_gmax, 0); /* the bounds are > 90 sigma away */
        for (int i = 0; i < N; i++) g[i] -= g0;
        xbt_moments(g, N, &mean, &var);
        const double want_var = pow(5 * 0.01, 2) * fabs(dgs[q]) * R;
        /* mean: 5 standard errors sqrt(var/N); sample variance of a normal: sd = var sqrt(2/(N-1)) */
        const double mean_tol = 5 * sqrt(want_var / N), var_tol = 5 * want_var * sqrt(2.0 / (N - 1));
        if (fabs(mean - dgs[q]) > mean_tol || fabs(var - want_var) > var_tol)
            fail_msg("dG %g: mean %.6g (want %.6g +- %.3g), var %.6g (want %.6g +- %.3g)", dgs[q], mean, dgs[q],
                     mean_tol, var, want_var, var_tol);
        if (getenv("XBT_VERBOSE"))
            fprintf(stderr, "  txsim dG %g: mean %.6g (want %.6g +- %.3g), var %.6g (want %.6g +- %.3g)\n", dgs[q],
                    mean, dgs[q], mean_tol, var, want_var, var_tol);
    }
    /* clamping: 5 nS below g_max, +2 nS with noise sd = 0.05 sqrt(2 nS R) = 6.7 nS ends above g_max
     * with probability P(z > 3 nS / sd) = 0.327 */
    for (int i = 0; i < N; i++) { g[i] = hw.g_max_s - 5e-9; d[i] = 2e-9; }
    xb_update_counts c = {0};
    xb_device_update(&hw, N, g, d, &r, &c);
    int64_t at = 0;
    for (int i = 0; i < N; i++) {
        assert_true(g[i] >= hw.g_min_s && g[i] <= hw.g_max_s);
        at += g[i] == hw.g_max_s;
    }
    assert_int_equal(at, c.clamped_gmax);
    const double sd = 0.05 * sqrt(2e-9 * R), p = 0.5 * erfc((3e-9 / sd) / sqrt(2.0));
    if (fabs(c.clamped_gmax - p * N) > 5 * sqrt(N * p * (1 - p)))
        fail_msg("clamped at g_max: %lld, want %.0f", (long long)c.clamped_gmax, p * N);
    if (getenv("XBT_VERBOSE")) fprintf(stderr, "  txsim clamped at g_max: %lld of %d (want %.0f)\n",
                                       (long long)c.clamped_gmax, N, p * N);
    free(g);
    free(d);
}

/* ---- soft bounds ---------------------------------------------------------------------------------- */

static void test_softbounds(void **state) {
    (void)state;
    xb_hw hw = xb_hw_default();
    hw.update.model = XB_UPDATE_SOFTBOUNDS;
    hw.update.dg_min_s = 1e-7;
    assert_int_equal(xb_hw_validate(&hw), XB_OK);
    const double lo = hw.g_min_s, hi = hw.g_max_s, R = range_(&hw), a = 2 * 1e-7 / R;
    xb_rng r;
    xb_rng_seed(&r, 4, "update");
    /* 3.4 pulses -> 3, from g_min: the distance to g_max shrinks by (1 - a) per pulse */
    double g = lo, dG = 3.4e-7, want = lo;
    for (int k = 0; k < 3; k++) want += a * (hi - want);
    xb_update_counts c = {0};
    xb_device_update(&hw, 1, &g, &dG, &r, &c);
    assert_int_equal(c.pulses, 3);
    if (fabs(g - want) > 1e-12 * R || fabs((hi - g) - pow(1 - a, 3) * R) > 1e-12 * R)
        fail_msg("3 pulses up from g_min: %.17g, want %.17g", g, want);
    /* depression from g_max: the distance to g_min shrinks */
    g = hi;
    dG = -2.6e-7;
    want = hi;
    for (int k = 0; k < 3; k++) want -= a * (want - lo);
    xb_device_update(&hw, 1, &g, &dG, &r, &c);
    assert_true(fabs(g - want) < 1e-12 * R);
    /* at the centre one pulse is exactly dg_min_s (aihwkit's dw_min at w = 0) */
    const double mid = 0.5 * (lo + hi);
    g = mid;
    dG = 1e-7;
    xb_device_update(&hw, 1, &g, &dG, &r, &c);
    assert_true(fabs((g - mid) - 1e-7) < 1e-12 * 1e-7 + 1e-21);
    /* saturation: 1000 pulses from the centre approach g_max but never reach it */
    g = mid;
    dG = 1e-4;
    memset(&c, 0, sizeof c);
    xb_device_update(&hw, 1, &g, &dG, &r, &c);
    assert_int_equal(c.pulses, 1000);
    assert_true(g < hi && hi - g < 1e-9 * R && fabs((hi - g) - pow(1 - a, 1000) * (hi - mid)) < 1e-12 * R);
    assert_int_equal(c.clamped_gmax, 0);
    /* asymmetry: up_down = 0.2 -> up steps 1.2 dg_min, down steps 0.8 dg_min at the centre */
    hw.update.up_down = 0.2;
    double gg[2] = {mid, mid}, dd[2] = {1e-7, -1e-7};
    xb_device_update(&hw, 2, gg, dd, &r, &c);
    assert_true(fabs((gg[0] - mid) - 1.2e-7) < 1e-19 && fabs((mid - gg[1]) - 0.8e-7) < 1e-19);
    /* equal numbers of up and down pulses drift toward the point where the steps balance:
     * 1.2 (hi - G) = 0.8 (G - lo) -> G = lo + 0.6 R */
    g = mid;
    for (int k = 0; k < 4000; k++) {
        double s = k % 2 ? -1e-7 : 1e-7;
        xb_device_update(&hw, 1, &g, &s, &r, &c);
    }
    assert_true(fabs(g - (lo + 0.6 * R)) < 0.02 * R);
    /* continuous (dg_min_s = 0): the n -> infinity limit, bound - (bound - G) exp(-2 (1 + up_down) |dG| / R) */
    hw.update.dg_min_s = 0;
    g = mid;
    dG = 1e-6;
    xb_device_update(&hw, 1, &g, &dG, &r, &c);
    assert_true(fabs(g - (hi - (hi - mid) * exp(-2 * 1.2 * 1e-6 / R))) < 1e-12 * R);
    /* cycle-to-cycle noise: one pulse from the centre is dg_min (1 + ctoc N): mean and variance */
    hw.update.dg_min_s = 1e-7;
    hw.update.up_down = 0;
    hw.update.write_noise_ctoc = 0.3;
    enum { N = 200000 };
    double *x = malloc(N * sizeof(double)), *d = malloc(N * sizeof(double)), mean, var;
    for (int i = 0; i < N; i++) { x[i] = mid; d[i] = 1e-7; }
    xb_device_update(&hw, N, x, d, &r, &c);
    for (int i = 0; i < N; i++) x[i] -= mid;
    xbt_moments(x, N, &mean, &var);
    const double wv = pow(0.3e-7, 2);
    if (fabs(mean - 1e-7) > 5 * sqrt(wv / N) || fabs(var - wv) > 5 * wv * sqrt(2.0 / (N - 1)))
        fail_msg("ctoc: mean %.6g (want 1e-7), var %.6g (want %.6g)", mean, var, wv);
    if (getenv("XBT_VERBOSE")) fprintf(stderr, "  softbounds ctoc: mean %.6g (1e-7), var %.6g (%.6g)\n", mean, var, wv);
    free(x);
    free(d);
}

/* ---- pairs and slices ----------------------------------------------------------------------------- */

/* The weight-code change the cells carry: sum_t 2^(b t) (dc+_t - dc-_t) (offset: dc_t). */
static double recombine_(const xb_map_geom *g, const double *dg) {
    double s = 0;
    for (int t = 0; t < g->slices; t++) {
        double d = g->n_sign == 2 ? dg[t] - dg[g->slices + t] : dg[t];
        s += ldexp(1.0, g->slice_bits * t) * d / g->g_unit_s;
    }
    return s;
}

static void test_weight_cells(void **state) {
    (void)state;
    xb_hw hw = xb_hw_default();
    xb_map_geom g;
    double dg[2 * XB_MAX_SLICES];
    /* continuous differential: g_unit = R, one cell per sign */
    assert_int_equal(xb_map_geom_init(&hw, 4, 4, &g), XB_OK);
    const double R = range_(&hw);
    assert_true(g.g_unit_s == R);
    xb_update_weight_cells(&hw, &g, 0.25, dg);
    assert_true(dg[0] == 0.25 * R / 2 && dg[1] == -0.25 * R / 2);
    hw.update.pair_update = XB_PAIR_SIGN;
    xb_update_weight_cells(&hw, &g, 0.25, dg);
    assert_true(dg[0] == 0.25 * R && dg[1] == 0);
    xb_update_weight_cells(&hw, &g, -0.25, dg);
    assert_true(dg[0] == 0 && dg[1] == 0.25 * R); /* G- potentiated */

    /* 8-bit weights in four 2-bit slices: g_unit = R/3, slice t weighs 4^t */
    hw.weight_bits = 8;
    hw.bits_per_cell = 2;
    hw.update.pair_update = XB_PAIR_SPLIT;
    assert_int_equal(xb_map_geom_init(&hw, 4, 4, &g), XB_OK);
    const double gu = g.g_unit_s;
    xb_update_weight_cells(&hw, &g, 6, dg); /* msb: 6/64 codes of slice 3, split */
    for (int q = 0; q < 8; q++) {
        double want = q == 3 ? gu * (6.0 / 64) / 2 : q == 7 ? -gu * (6.0 / 64) / 2 : 0;
        if (fabs(dg[q] - want) > 1e-22) fail_msg("msb split cell %d: %g, want %g", q, dg[q], want);
    }
    hw.update.slice_update = XB_SLICE_LSB;
    hw.update.pair_update = XB_PAIR_SIGN;
    xb_update_weight_cells(&hw, &g, -6, dg); /* lsb: 6 codes of slice 0 on G- */
    for (int q = 0; q < 8; q++) assert_true(dg[q] == (q == 4 ? gu * 6 : 0));
    assert_true(fabs(recombine_(&g, dg) + 6) < 1e-12);

    /* offset, 8 bits in two 4-bit slices: the weight cell gets it all */
    hw.scheme = XB_SCHEME_OFFSET;
    hw.bits_per_cell = 4;
    hw.update.slice_update = XB_SLICE_MSB;
    assert_int_equal(xb_map_geom_init(&hw, 4, 4, &g), XB_OK);
    xb_update_weight_cells(&hw, &g, 8, dg);
    assert_true(dg[0] == 0 && fabs(dg[1] - g.g_unit_s * 0.5) < 1e-22);

    /* every scheme / slicing / pair / slice choice carries exactly the requested weight change */
    struct { xb_scheme sc; int bits, bpc, levels; } c[] = {
        {XB_SCHEME_DIFFERENTIAL, 0, 0, 0}, {XB_SCHEME_DIFFERENTIAL, 0, 0, 7}, {XB_SCHEME_DIFFERENTIAL, 8, 2, 0},
        {XB_SCHEME_DIFFERENTIAL, 8, 1, 0}, {XB_SCHEME_OFFSET, 0, 0, 0},       {XB_SCHEME_OFFSET, 9, 3, 0},
    };
    for (size_t q = 0; q < sizeof c / sizeof *c; q++)
        for (int pu = 0; pu < XB_PAIR_UPDATE_COUNT; pu++)
            for (int su = 0; su < XB_SLICE_UPDATE_COUNT; su++) {
                hw.scheme = c[q].sc;
                hw.weight_bits = c[q].bits;
                hw.bits_per_cell = c[q].bpc;
                hw.levels = c[q].levels;
                hw.update.pair_update = (xb_pair_update)pu;
                hw.update.slice_update = (xb_slice_update)su;
                assert_int_equal(xb_map_geom_init(&hw, 4, 4, &g), XB_OK);
                for (double dw = -3.5; dw <= 3.5; dw += 0.7) {
                    xb_update_weight_cells(&hw, &g, dw, dg);
                    if (fabs(recombine_(&g, dg) - dw) > 1e-12 * (1 + fabs(dw)))
                        fail_msg("case %zu pair %d slice %d: %g carried as %g", q, pu, su, dw, recombine_(&g, dg));
                }
            }
    /* non-finite requests write nothing */
    xb_update_weight_cells(&hw, &g, NAN, dg);
    for (int q = 0; q < g.cells_per_weight; q++) assert_true(dg[q] == 0);
}

/* ---- reproducibility ------------------------------------------------------------------------------ */

static void fill_(int n, double *g, double *d, xb_rng *r) {
    for (int i = 0; i < n; i++) {
        g[i] = 1e-6 + 9e-6 * xb_rng_uniform(r);
        d[i] = (xb_rng_uniform(r) - 0.5) * 1e-6;
    }
}

static void test_reproducible(void **state) {
    (void)state;
    enum { N = 10007 };
    static double g0[N], d[N], a[N], b[N];
    xb_rng data;
    xb_rng_seed(&data, 5, "test");
    fill_(N, g0, d, &data);
    xb_hw hws[3];
    for (int m = 0; m < 3; m++) hws[m] = xb_hw_default();
    hws[0].update.model = XB_UPDATE_TXSIM;
    hws[0].update.nonlinearity = 0.3;
    hws[0].update.write_noise = 5;
    hws[0].update.dg_min_s = 3e-8;
    hws[0].update.pulse_rounding = XB_PULSE_STOCHASTIC;
    hws[1].update.model = XB_UPDATE_SOFTBOUNDS;
    hws[1].update.dg_min_s = 2e-8;
    hws[1].update.write_noise_ctoc = 0.3;
    hws[1].update.up_down = -0.1;
    hws[2].update.model = XB_UPDATE_LINEAR;
    hws[2].update.dg_min_s = 5e-8;
    hws[2].update.pulse_rounding = XB_PULSE_STOCHASTIC;
    for (int m = 0; m < 3; m++) {
        assert_int_equal(xb_hw_validate(&hws[m]), XB_OK);
        xb_rng r;
        xb_rng_seed(&r, 6, "update");
        memcpy(a, g0, sizeof a);
        memcpy(b, g0, sizeof b);
        xb_update_counts ca = {0}, cb = {0};
        xb_device_update(&hws[m], N, a, d, &r, &ca);
        /* same rng: same bits */
        xb_device_update(&hws[m], N, b, d, &r, &cb);
        assert_memory_equal(a, b, sizeof a);
        /* uneven pieces with their offsets: the same bits and counts */
        memcpy(b, g0, sizeof b);
        memset(&cb, 0, sizeof cb);
        const int64_t cut[] = {0, 1, 700, 701, 5000, N};
        for (int k = 0; k + 1 < (int)(sizeof cut / sizeof *cut); k++)
            xb_device_update_at(&hws[m], cut[k], cut[k + 1] - cut[k], b + cut[k], d + cut[k], &r, &cb);
        assert_memory_equal(a, b, sizeof a);
        assert_memory_equal(&ca, &cb, sizeof ca);
        /* another stream: other numbers */
        xb_rng r2;
        xb_rng_seed(&r2, 7, "update");
        memcpy(b, g0, sizeof b);
        xb_device_update(&hws[m], N, b, d, &r2, &cb);
        int differ = 0;
        for (int i = 0; i < N; i++) differ += a[i] != b[i];
        assert_true(differ > N / 10);
    }
}

/* ---- config --------------------------------------------------------------------------------------- */

static void test_config(void **state) {
    (void)state;
    xb_hw h;
    assert_int_equal(parse_("", &h), XB_OK);
    assert_int_equal(h.update.model, XB_UPDATE_LINEAR);
    assert_true(xb_update_is_ideal(&h));
    assert_true(h.update.write_noise_sigma == 0.01 && h.update.refresh_steps == 0);

    static const char *const texts[] = {
        "[update]\nmodel = txsim\nnonlinearity = 0.1\nwrite_noise = 5\nwrite_noise_sigma = 0.02\ndg_min_s = 1e-8\n"
        "pulse_rounding = stochastic\npair_update = sign\nslice_update = lsb\nrefresh_steps = 100\n"
        "refresh_solver = distortion\n[mapping]\nweight_bits = 8\nbits_per_cell = 2\n",
        "[update]\nmodel = softbounds\ndg_min_s = 2e-8\nup_down = -0.25\nwrite_noise_ctoc = 0.3\n"
        "refresh_solver = decoupled\n",
    };
    for (size_t q = 0; q < 2; q++) {
        if (parse_(texts[q], &h) != XB_OK) fail_msg("%s", xb_last_error());
        if (q == 0) {
            assert_int_equal(h.update.model, XB_UPDATE_TXSIM);
            assert_true(h.update.nonlinearity == 0.1 && h.update.write_noise == 5 && h.update.write_noise_sigma == 0.02);
            assert_true(h.update.dg_min_s == 1e-8);
            assert_int_equal(h.update.pulse_rounding, XB_PULSE_STOCHASTIC);
            assert_int_equal(h.update.pair_update, XB_PAIR_SIGN);
            assert_int_equal(h.update.slice_update, XB_SLICE_LSB);
            assert_int_equal(h.update.refresh_steps, 100);
            assert_int_equal(h.update.refresh_solver, XB_REFRESH_DISTORTION);
        } else {
            assert_int_equal(h.update.model, XB_UPDATE_SOFTBOUNDS);
            assert_true(h.update.up_down == -0.25 && h.update.write_noise_ctoc == 0.3);
        }
        /* INI round trip */
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        xb_hw_print(&h, f, 0);
        fclose(f);
        assert_non_null(strstr(buf, "[update]"));
        xb_hw h2;
        if (parse_(buf, &h2) != XB_OK) fail_msg("re-parse: %s\n%s", xb_last_error(), buf);
        free(buf);
        assert_memory_equal(&h.update, &h2.update, sizeof h.update);
        /* JSON */
        f = open_memstream(&buf, &len);
        xb_hw_print(&h, f, 1);
        fclose(f);
        cJSON *j = cJSON_Parse(buf);
        if (!j) fail_msg("invalid JSON: %s", buf);
        free(buf);
        cJSON *u = cJSON_GetObjectItem(j, "update");
        assert_non_null(u);
        assert_string_equal(cJSON_GetObjectItem(u, "model")->valuestring, xb_update_model_name(h.update.model));
        assert_true(cJSON_GetObjectItem(u, "dg_min_s")->valuedouble == h.update.dg_min_s);
        assert_non_null(cJSON_GetObjectItem(j, "ideal"));
        cJSON_Delete(j);
    }

    static const struct { const char *text, *needle1, *needle2; } bad[] = {
        {"[update]\nnonlinearity = -0.1\n", "t.cfg:2", "nonlinearity"},
        {"[update]\nmodel = txsim\nnonlinearity = -0.1\n", "t.cfg:3", "out of range"},
        {"[update]\nmodel = quadratic\n", "t.cfg:2", "linear, txsim, softbounds"},
        {"[update]\nmodle = txsim\n", "t.cfg:2", "unknown key 'modle'"},
        {"[update]\nrefresh_steps = -1\n", "t.cfg:2", "refresh_steps"},
        {"[update]\nrefresh_steps = 2.5\n", "t.cfg:2", "refresh_steps"},
        {"[update]\npair_update = both\n", "t.cfg:2", "split, sign"},
        {"[update]\nup_down = 1\n", "t.cfg:2", "up_down"},
        {"[update]\nnonlinearity = 0.1\n", "model = linear", "HINT"},
        {"[update]\nmodel = txsim\nup_down = 0.1\n", "softbounds", "HINT"},
        {"[update]\nmodel = txsim\nwrite_noise = 3\nwrite_noise_sigma = 0\n", "write_noise_sigma", "HINT"},
        {"[update]\npulse_rounding = stochastic\n", "dg_min_s > 0", "HINT"},
        {"[update]\ndg_min_s = 1e-4\n", "dg_min_s", "HINT"},
        {"[update]\nmodel = softbounds\ndg_min_s = 5e-6\n", "exceeds the range", "HINT"},
        {"[update]\nmodel = softbounds\nwrite_noise_ctoc = 0.1\n", "per pulse", "HINT"},
        {"[update]\nrefresh_solver = distortion\n", "refresh_steps", "HINT"},
        {"[circuit]\nsolver = none\n[update]\nrefresh_steps = 10\n", "solver = none", "HINT"},
        {"[update]\nmodel = txsim\n[update]\nmodel = linear\n", "t.cfg:3", "twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        xb_status st = parse_(bad[i].text, &h);
        if (st != XB_ERR_CONFIG) fail_msg("config %zu (%s) gave status %d, want XB_ERR_CONFIG", i, bad[i].text, st);
        const char *m = xb_last_error();
        if (!strstr(m, bad[i].needle1) || !strstr(m, bad[i].needle2) || !strstr(m, "t.cfg"))
            fail_msg("config %zu: message lacks 't.cfg' / '%s' / '%s': %s", i, bad[i].needle1, bad[i].needle2, m);
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  ok: %s\n", m);
    }

    /* the on-chip TxSim preset */
    if (access("configs/hw/txsim-64-onchip.cfg", R_OK) == 0) {
        if (xb_hw_load("configs/hw/txsim-64-onchip.cfg", &h) != XB_OK) fail_msg("%s", xb_last_error());
        assert_int_equal(h.update.model, XB_UPDATE_TXSIM);
        assert_true(h.rows == 64 && h.cols == 64 && h.dac_bits == 1 && h.bits_per_cell == 2);
        assert_true(fabs(h.g_max_s - 1e-5) < 1e-20 && fabs(h.g_min_s - 1e-6) < 1e-20);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),       cmocka_unit_test(test_txsim_deterministic),
        cmocka_unit_test(test_txsim_noise_moments), cmocka_unit_test(test_softbounds),
        cmocka_unit_test(test_weight_cells), cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
