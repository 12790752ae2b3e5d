/* test_hw.c -- the crossbar core below the network level: hardware configs (every preset, a file with
 * every key, print/re-parse round trip, JSON, each kind of bad config rejected with file:line and a
 * HINT), quantizers against their reference formulas, the percentile, the Gaussian draws, device
 * models (variation mean/variance, drift exact, stuck-at counts within binomial bounds, independent
 * streams) and the mapping (geometry of awkward tiles, codes that recombine to the quantized weight,
 * target conductances). */
#include "testutil.h"
#include "xb_xbar.h"

#include <cJSON.h>
#include <dirent.h>

static xb_status parse_(const char *text, xb_hw *hw) { return xb_hw_parse_string(text, strlen(text), "t.cfg", hw); }

/* ---- configs ------------------------------------------------------------------------------------ */

static void test_presets_load(void **state) {
    (void)state;
    DIR *d = opendir("configs/hw");
    if (!d) { skip(); return; }
    int n = 0, ideal = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t L = strlen(e->d_name);
        if (L < 5 || strcmp(e->d_name + L - 4, ".cfg")) continue;
        char path[600];
        snprintf(path, sizeof path, "configs/hw/%s", e->d_name);
        xb_hw hw;
        if (xb_hw_load(path, &hw) != XB_OK) fail_msg("%s: %s", path, xb_last_error());
        if (!hw.name[0] || !hw.source[0]) fail_msg("%s: a preset names itself and cites its source ([meta])", path);
        if (!strcmp(e->d_name, "ideal.cfg")) { ideal = 1; assert_true(xb_hw_is_ideal(&hw)); }
        else assert_false(xb_hw_is_ideal(&hw));
        n++;
    }
    closedir(d);
    assert_true(ideal);
    assert_true(n >= 5);
}

static const char full_cfg[] =
    "[meta]\nname = everything\nsource = a test\n"
    "[tile]\nrows = 32\ncols = 48\nmap_first = false\nmap_last = true\ndigital_layers = fc1, fc2\n"
    "[mapping]\nscheme = offset\nlayout = interleaved\nreference = digital\nweight_bits = 8\nbits_per_cell = 2\n"
    "r_on_ohm = 100e3\nr_off_ohm = 1e6\nw_clip = percentile\nw_clip_percentile = 99.5\n"
    "[input]\ndac_bits = 2\nbit_serial = true\ninput_bits = 8\nv_read_v = 0.25\nsigned_inputs = split\n"
    "input_range = fixed\ninput_full_scale = 3.5\ninput_percentile = 99\n"
    "[output]\nadc_bits = 6\nadc_signal = column\nadc_range = fixed\nadc_full_scale_a = 2e-5\nadc_percentile = 99.9\n"
    "calibration_images = 64\ngain_calibration = per_layer\n"
    "[circuit]\nr_wire_ohm = 2.5\nr_driver_ohm = 100\nr_sense_ohm = 50\nsolver = decoupled\n"
    "[device]\nvariation = gaussian\nvariation_sigma = 1e-7\nvariation_mode = absolute\nvariation_clip = range\n"
    "read_noise_sigma = 0.01\nread_noise_mode = relative\nstuck_at_gmin_rate = 0.01\nstuck_at_gmax_rate = 0.02\n"
    "drift_nu = 0.05\ndrift_nu_sigma = 0.01\ndrift_t_s = 3600\ndrift_t0_s = 10\ndrift_compensation = true\n";

static void test_full_config(void **state) {
    (void)state;
    xb_hw h;
    if (parse_(full_cfg, &h) != XB_OK) fail_msg("%s", xb_last_error());
    assert_string_equal(h.name, "everything");
    assert_int_equal(h.rows, 32);
    assert_int_equal(h.cols, 48);
    assert_false(h.map_first);
    assert_int_equal(h.n_digital, 2);
    assert_string_equal(h.digital[1], "fc2");
    assert_int_equal(h.scheme, XB_SCHEME_OFFSET);
    assert_int_equal(h.layout, XB_LAYOUT_INTERLEAVED);
    assert_int_equal(h.reference, XB_REF_DIGITAL);
    assert_int_equal(h.weight_bits, 8);
    assert_int_equal(h.bits_per_cell, 2);
    assert_true(fabs(h.g_max_s - 1e-5) < 1e-20 && fabs(h.g_min_s - 1e-6) < 1e-20);
    assert_int_equal(h.w_clip, XB_WCLIP_PERCENTILE);
    assert_int_equal(h.dac_bits, 2);
    assert_true(h.bit_serial);
    assert_int_equal(h.input_bits, 8);
    assert_true(h.v_read_v == 0.25 && h.input_full_scale == 3.5);
    assert_int_equal(h.adc_signal, XB_ADC_COLUMN);
    assert_int_equal(h.adc_range, XB_RANGE_FIXED);
    assert_true(h.adc_full_scale_a == 2e-5);
    assert_int_equal(h.calibration_images, 64);
    assert_true(h.circuit.r_wire_ohm == 2.5 && h.circuit.r_driver_ohm == 100 && h.circuit.r_sense_ohm == 50);
    assert_int_equal(h.solver, XB_SOLVER_DECOUPLED);
    /* the config's solver kinds are the solver's methods (same values, same names), plus none */
    for (int k = 0; k < XB_SOLVE_METHOD_COUNT; k++)
        assert_string_equal(xb_solver_kind_name((xb_solver_kind)k), xb_solve_method_name((xb_solve_method)k));
    assert_string_equal(xb_solver_kind_name(XB_SOLVER_NONE), "none");
    const char *kinds[] = {"exact", "decoupled", "cholmod", "none"};
    for (int k = 0; k < 4; k++) {
        char text[160];
        xb_hw hk;
        const char *r = k == 3 ? "0" : "1";
        snprintf(text, sizeof text, "[circuit]\nr_wire_ohm = %s\nr_driver_ohm = %s\nr_sense_ohm = %s\nsolver = %s\n", r,
                 r, r, kinds[k]);
        if (parse_(text, &hk) != XB_OK) fail_msg("solver = %s: %s", kinds[k], xb_last_error());
        assert_string_equal(xb_solver_kind_name(hk.solver), kinds[k]);
        if (k < 3) assert_string_equal(xb_solve_method_name((xb_solve_method)hk.solver), kinds[k]);
    }
    assert_int_equal(h.variation, XB_VAR_GAUSSIAN);
    assert_int_equal(h.variation_mode, XB_NOISE_ABSOLUTE);
    assert_int_equal(h.variation_clip, XB_GCLIP_RANGE);
    assert_true(h.stuck_at_gmax_rate == 0.02 && h.drift_t_s == 3600 && h.drift_compensation);
    assert_true(h.gain_calibration);
    assert_true(xb_hw_needs_calibration(&h)); /* the gains */

    /* the printed config parses back to the same struct */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    xb_hw_print(&h, f, 0);
    fclose(f);
    xb_hw h2;
    if (parse_(buf, &h2) != XB_OK) fail_msg("re-parse: %s\n%s", xb_last_error(), buf);
    free(buf);
    snprintf(h2.path, sizeof h2.path, "%s", h.path);
    assert_memory_equal(&h, &h2, sizeof h);

    /* JSON is valid and carries the values */
    f = open_memstream(&buf, &len);
    xb_hw_print(&h, f, 1);
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    if (!j) fail_msg("invalid JSON: %s", buf);
    free(buf);
    cJSON *dev = cJSON_GetObjectItem(j, "device");
    assert_non_null(dev);
    assert_true(cJSON_GetObjectItem(dev, "drift_t_s")->valuedouble == 3600);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "mapping"), "scheme")->valuestring, "offset");
    cJSON_Delete(j);
}

static void test_defaults_are_ideal(void **state) {
    (void)state;
    xb_hw h;
    assert_int_equal(parse_("# nothing\n", &h), XB_OK);
    assert_true(xb_hw_is_ideal(&h));
    xb_hw d = xb_hw_default();
    assert_int_equal(xb_hw_validate(&d), XB_OK);
    assert_true(xb_hw_is_ideal(&d));
    assert_int_equal(h.rows, 64);
    assert_int_equal(h.levels, 0);
    /* resistances set but all zero: still ideal */
    assert_int_equal(parse_("[circuit]\nr_wire_ohm = 0\nsolver = exact\n", &h), XB_OK);
    assert_true(xb_hw_is_ideal(&h));
}

typedef struct bad_ { const char *text, *needle1, *needle2; } bad_;

static void test_bad_configs(void **state) {
    (void)state;
    static const bad_ bad[] = {
        {"[circuit]\nr_wire_ohm = -1\n", "t.cfg:2", "r_wire_ohm"},
        {"[circuit]\nr_sense_ohm = -1e3\n", "t.cfg:2", "out of range"},
        {"[mapping]\nlevels = 0\n", "t.cfg:2", "levels"},
        {"[mapping]\nlevels = 1\n", "t.cfg:2", "levels"},
        {"[tile]\nrows = 5000\n", "t.cfg:2", "rows"},
        {"[tile]\ncols = 0\n", "t.cfg:2", "cols"},
        {"[tile]\nrows = 64\nsize = 3\n", "t.cfg:3", "unknown key 'size'"},
        {"[device]\nvariaton = gaussian\n", "t.cfg:2", "unknown key"},
        {"[tiles]\nrows = 4\n", "t.cfg:1", "unknown section"},
        {"[tile]\nrows = 4\n[tile]\ncols = 4\n", "t.cfg:3", "twice"},
        {"[tile x]\nrows = 4\n", "t.cfg:1", "no name"},
        {"[mapping]\ng_min_s = 1e-6\ng_max_s = 1e-5\nr_on_ohm = 1e5\nr_off_ohm = 1e6\n", "t.cfg", "exactly one pair"},
        {"[mapping]\ng_min_s = 1e-6\n", "t.cfg", "half of a pair"},
        {"[mapping]\nr_on_ohm = 1e6\nr_off_ohm = 1e5\n", "t.cfg:3", "r_off_ohm"},
        {"[mapping]\ng_min_s = 1e-5\ng_max_s = 1e-6\n", "g_min_s < g_max_s", "HINT"},
        {"[mapping]\nweight_bits = 8\nbits_per_cell = 3\n", "neither divides nor covers", "HINT"},
        {"[mapping]\nbits_per_cell = 2\n", "needs weight_bits", "HINT"},
        {"[mapping]\nweight_bits = 4\nlevels = 4\n", "levels", "HINT"},
        {"[mapping]\nscheme = offset\nweight_bits = 1\n", "offset", "HINT"},
        {"[mapping]\nscheme = offset\nlevels = 2\n", "offset", "HINT"},
        {"[mapping]\nscheme = sideways\n", "t.cfg:2", "differential, offset"},
        {"[input]\nbit_serial = true\ndac_bits = 1\n", "input_bits", "HINT"},
        {"[input]\nbit_serial = true\ninput_bits = 8\n", "dac_bits", "HINT"},
        {"[input]\ndac_bits = 4\ninput_bits = 8\n", "bit_serial", "HINT"},
        {"[input]\ninput_range = fixed\ndac_bits = 4\n", "input_full_scale", "HINT"},
        {"[input]\nv_read_v = 0\n", "t.cfg:2", "v_read_v"},
        {"[output]\nadc_bits = 8\nadc_range = fixed\n", "adc_full_scale_a", "HINT"},
        {"[output]\nadc_bits = 1\n", "adc_bits >= 2", "HINT"},
        {"[output]\nadc_bits = 8\nadc_signal = column\n[input]\nsigned_inputs = bipolar\n", "bipolar", "HINT"},
        {"[circuit]\nr_wire_ohm = 5\nsolver = none\n", "ignored", "HINT"},
        {"[circuit]\nr_wire_ohm = 5\nsolver = cholmod\n", "cholmod", "HINT"},
        {"[device]\nstuck_at_gmin_rate = 0.6\nstuck_at_gmax_rate = 0.6\n", "sum", "stuck"},
        {"[device]\nstuck_at_gmin_rate = 1.5\n", "t.cfg:2", "out of range"},
        {"[device]\nvariation = lognormal\nvariation_sigma = 0.1\nvariation_mode = absolute\n", "lognormal", "HINT"},
        {"[device]\nvariation_sigma = 0.1\n", "variation = none", "HINT"},
        {"[device]\ndrift_t_s = 1\ndrift_t0_s = 10\n", "drift_t0_s", "HINT"},
        {"[device]\ndrift_nu = abc\n", "t.cfg:2", "finite number"},
        {"[tile]\ncols = 4\n[mapping]\nlayout = interleaved\nweight_bits = 8\nbits_per_cell = 2\n", "cols = 4", "HINT"},
        {"rows = 4\n", "t.cfg:1", "before any"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        xb_hw h;
        xb_status st = parse_(bad[i].text, &h);
        if (st != XB_ERR_CONFIG) fail_msg("config %zu (%s) gave status %d, want XB_ERR_CONFIG", i, bad[i].text, st);
        if (!strstr(xb_last_error(), bad[i].needle1) || !strstr(xb_last_error(), bad[i].needle2))
            fail_msg("config %zu: message lacks '%s' / '%s': %s", i, bad[i].needle1, bad[i].needle2, xb_last_error());
        if (!strstr(xb_last_error(), "t.cfg")) fail_msg("config %zu: message does not name the file: %s", i,
                                                      xb_last_error());
    }
    /* a missing file */
    xb_hw h;
    assert_int_equal(xb_hw_load("/nonexistent/hw.cfg", &h), XB_ERR_IO);
}

/* ---- quantizers ---------------------------------------------------------------------------------- */

static void test_quantizers(void **state) {
    (void)state;
    /* DAC: 2 bits over [0, 3]: codes 0..3, step 1; rint ties to even */
    assert_true(xb_quant_dac_ref(1.4, 2, 3.0, NULL) == 1.0);
    assert_true(xb_quant_dac_ref(1.5, 2, 3.0, NULL) == 2.0);
    assert_true(xb_quant_dac_ref(2.5, 2, 3.0, NULL) == 2.0);
    int clip = 0;
    assert_true(xb_quant_dac_ref(7.0, 2, 3.0, &clip) == 3.0 && clip == 1);
    assert_true(xb_quant_dac_ref(-0.7, 2, 3.0, &clip) == 0.0 && clip == 2);
    /* 8-bit DAC, full scale 1: code/(255) */
    assert_true(fabs(xb_quant_dac_ref(0.5, 8, 1.0, NULL) - 128.0 / 255) < 1e-15);
    /* ADC unsigned 4 bits, fs 15e-6 A: step 1e-6 */
    clip = 0;
    assert_true(fabs(xb_quant_adc_ref(3.2e-6, 4, 15e-6, 0, &clip) - 3e-6) < 1e-18);
    assert_true(fabs(xb_quant_adc_ref(20e-6, 4, 15e-6, 0, &clip) - 15e-6) < 1e-18 && clip == 1);
    assert_true(xb_quant_adc_ref(-1e-6, 4, 15e-6, 0, &clip) == 0 && clip == 2);
    /* ADC signed 4 bits: codes -7..7, step fs/7 */
    clip = 0;
    assert_true(fabs(xb_quant_adc_ref(-3.4, 4, 7.0, 1, &clip) + 3.0) < 1e-15 && clip == 0);
    assert_true(fabs(xb_quant_adc_ref(-9.0, 4, 7.0, 1, &clip) + 7.0) < 1e-15 && clip == 1);
    /* levels */
    assert_true(xb_quant_levels_ref(0.4, 3) == 0.5);
    assert_true(xb_quant_levels_ref(0.24, 3) == 0.0);
    assert_true(xb_quant_levels_ref(1.3, 5) == 1.0);
    assert_true(xb_quant_levels_ref(-0.2, 5) == 0.0);
    /* vector version matches the scalar one, clip counts included */
    xb_rng r;
    xb_rng_seed(&r, 3, "test");
    enum { N = 100003 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = (float)(6 * xb_rng_uniform(&r) - 3);
    int64_t c = xb_quant_uniform(N, x, 0.125f, -15, 15, y);
    int cref = 0;
    for (int i = 0; i < N; i++) {
        double want = xb_quant_uniform_ref(x[i], 0.125, -15, 15, &cref);
        if ((double)y[i] != want) fail_msg("element %d: %g -> %g, want %g", i, x[i], y[i], want);
    }
    assert_int_equal(c, cref);
    assert_true(c > 0);
    /* STE: gradient passes inside the range, not outside */
    float dy[4] = {1, 2, 3, 4}, dx[4] = {0}, xs[4] = {0.1f, 1.9f, 2.1f, -0.05f};
    xb_quant_ste_grad(4, xs, 0.5f, 0, 4, dy, dx);
    assert_true(dx[0] == 1 && dx[1] == 2 && dx[2] == 0 && dx[3] == 0);
    free(x);
    free(y);
}

static int cmpf_(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_percentile(void **state) {
    (void)state;
    xb_rng r;
    xb_rng_seed(&r, 5, "test");
    enum { N = 10007 };
    float *v = malloc(N * sizeof(float)), *s = malloc(N * sizeof(float));
    const double ps[] = {0.01, 1, 50, 99, 99.9, 99.99, 100};
    for (size_t q = 0; q < sizeof ps / sizeof *ps; q++) {
        for (int i = 0; i < N; i++) v[i] = (float)xb_rng_normal(&r);
        for (int i = 0; i < N; i++) s[i] = fabsf(v[i]);
        qsort(s, N, sizeof(float), cmpf_);
        int64_t k = (int64_t)ceil(ps[q] / 100 * N) - 1;
        if (k < 0) k = 0;
        assert_true(xb_percentile_abs(v, N, ps[q]) == s[k]);
    }
    float one[1] = {-2};
    assert_true(xb_percentile_abs(one, 1, 50) == 2);
    free(v);
    free(s);
}

static void test_normal_fill(void **state) {
    (void)state;
    xb_rng r;
    xb_rng_seed(&r, 11, "read");
    enum { N = 4000000 };
    float *z = malloc(N * sizeof(float));
    xb_normal_fill(&r, N, z);
    double s1 = 0, s2 = 0, s4 = 0;
    int64_t tail3 = 0, tail4 = 0;
    for (int i = 0; i < N; i++) {
        double a = z[i];
        s1 += a; s2 += a * a; s4 += a * a * a * a;
        tail3 += fabs(a) > 3;
        tail4 += fabs(a) > 4;
    }
    double mean = s1 / N, var = s2 / N - mean * mean, kurt = s4 / N / (var * var);
    if (fabs(mean) > 5 / sqrt(N) || fabs(var - 1) > 5 * sqrt(2.0 / N) || fabs(kurt - 3) > 0.03)
        fail_msg("mean %g var %g kurtosis %g", mean, var, kurt);
    /* P(|z| > 3) = 2.6998e-3, P(|z| > 4) = 6.334e-5 */
    double e3 = 2.6998e-3 * N, e4 = 6.334e-5 * N;
    if (fabs(tail3 - e3) > 5 * sqrt(e3) || fabs(tail4 - e4) > 5 * sqrt(e4))
        fail_msg("tails: %lld beyond 3 (want %.0f), %lld beyond 4 (want %.0f)", (long long)tail3, e3, (long long)tail4, e4);
    /* same stream, same numbers */
    xb_rng a, b;
    xb_rng_seed(&a, 2, "read");
    b = a;
    float za[64], zb[64];
    xb_normal_fill(&a, 64, za);
    xb_normal_fill(&b, 32, zb);
    xb_normal_fill(&b, 32, zb + 32);
    assert_memory_equal(za, zb, sizeof za);
    free(z);
}

/* ---- devices ------------------------------------------------------------------------------------- */

static void test_variation_moments(void **state) {
    (void)state;
    enum { N = 400000 };
    double *g = malloc(N * sizeof(double)), mean, var;
    const double g0 = 5e-6;
    xb_rng r;
    xb_rng_seed(&r, 1, "device");
    struct { xb_variation v; xb_noise_mode mode; double sigma, want_mean, want_var; } c[] = {
        {XB_VAR_GAUSSIAN, XB_NOISE_RELATIVE, 0.1, g0, (0.1 * g0) * (0.1 * g0)},
        {XB_VAR_GAUSSIAN, XB_NOISE_ABSOLUTE, 2e-7, g0, 2e-7 * 2e-7},
        {XB_VAR_LOGNORMAL, XB_NOISE_RELATIVE, 0.2, g0 * exp(0.02), g0 * g0 * (exp(0.04) - 1) * exp(0.04)},
    };
    for (size_t q = 0; q < sizeof c / sizeof *c; q++) {
        xb_hw hw = xb_hw_default();
        hw.variation = c[q].v;
        hw.variation_mode = c[q].mode;
        hw.variation_sigma = c[q].sigma;
        for (int i = 0; i < N; i++) g[i] = g0;
        xb_device_counts cnt = {0};
        xb_device_program(&hw, N, g, &r, &cnt);
        xbt_moments(g, N, &mean, &var);
        double sd = sqrt(c[q].want_var);
        /* mean within 5 standard errors; variance within 5 of its standard errors (kurtosis <= 4) */
        if (fabs(mean - c[q].want_mean) > 5 * sd / sqrt(N) || fabs(var / c[q].want_var - 1) > 5 * sqrt(3.0 / N))
            fail_msg("case %zu: mean %.6g (want %.6g), var %.6g (want %.6g)", q, mean, c[q].want_mean, var,
                     c[q].want_var);
        assert_int_equal(cnt.cells, N);
        assert_int_equal(cnt.clipped, 0);
    }
    /* clipping: a 100% relative spread at g_min drives about half the cells below g_min (range clip) */
    xb_hw hw = xb_hw_default();
    hw.variation = XB_VAR_GAUSSIAN;
    hw.variation_sigma = 1.0;
    hw.variation_clip = XB_GCLIP_RANGE;
    for (int i = 0; i < N; i++) g[i] = hw.g_min_s;
    xb_device_counts cnt = {0};
    xb_device_program(&hw, N, g, &r, &cnt);
    for (int i = 0; i < N; i++) assert_true(g[i] >= hw.g_min_s && g[i] <= hw.g_max_s);
    /* P(below) = 1/2, P(above g_max = 10 g_min) = P(z > 9) ~ 0 */
    assert_true(fabs(cnt.clipped - N / 2.0) < 5 * sqrt(N / 4.0));
    /* zero clip keeps conductances non-negative */
    hw.variation_clip = XB_GCLIP_ZERO;
    hw.variation_sigma = 2.0;
    for (int i = 0; i < N; i++) g[i] = hw.g_min_s;
    memset(&cnt, 0, sizeof cnt);
    xb_device_program(&hw, N, g, &r, &cnt);
    for (int i = 0; i < N; i++) assert_true(g[i] >= 0);
    double pz = 0.5 * erfc(0.5 / sqrt(2.0)) * N; /* P(1 + 2z < 0) = P(z < -0.5) */
    assert_true(fabs(cnt.clipped - pz) < 5 * sqrt(pz));
    free(g);
}

static void test_stuck_at_counts(void **state) {
    (void)state;
    enum { N = 200000 };
    double *g = malloc(N * sizeof(double));
    xb_hw hw = xb_hw_default();
    hw.stuck_at_gmin_rate = 0.01;
    hw.stuck_at_gmax_rate = 0.003;
    xb_rng r;
    xb_rng_seed(&r, 9, "device");
    for (int rep = 0; rep < 5; rep++) {
        for (int i = 0; i < N; i++) g[i] = 3e-6;
        xb_rng rr;
        xb_rng_fork(&r, (uint64_t)rep, &rr);
        xb_device_counts cnt = {0};
        xb_device_program(&hw, N, g, &rr, &cnt);
        int64_t lo = 0, hi = 0;
        for (int i = 0; i < N; i++) {
            lo += g[i] == hw.g_min_s;
            hi += g[i] == hw.g_max_s;
            assert_true(g[i] == hw.g_min_s || g[i] == hw.g_max_s || g[i] == 3e-6);
        }
        assert_int_equal(lo, cnt.stuck_gmin);
        assert_int_equal(hi, cnt.stuck_gmax);
        /* binomial: within 5 standard deviations */
        double m0 = N * 0.01, m1 = N * 0.003;
        if (fabs(lo - m0) > 5 * sqrt(m0 * 0.99) || fabs(hi - m1) > 5 * sqrt(m1 * 0.997))
            fail_msg("stuck counts %lld / %lld, want %.0f / %.0f", (long long)lo, (long long)hi, m0, m1);
    }
    /* rate 1: every cell */
    hw.stuck_at_gmin_rate = 0;
    hw.stuck_at_gmax_rate = 1;
    for (int i = 0; i < 100; i++) g[i] = 2e-6;
    xb_device_counts cnt = {0};
    xb_device_program(&hw, 100, g, &r, &cnt);
    assert_int_equal(cnt.stuck_gmax, 100);
    free(g);
}

static void test_drift(void **state) {
    (void)state;
    assert_true(xb_drift_factor(0.1, 100, 1) == pow(100.0, -0.1));
    assert_true(xb_drift_factor(0, 100, 1) == 1);
    assert_true(xb_drift_factor(0.3, 1, 1) == 1);
    xb_hw hw = xb_hw_default();
    hw.drift_nu = 0.05;
    hw.drift_t_s = 86400;
    hw.drift_t0_s = 20;
    double g[3] = {1e-6, 4e-6, 1e-5};
    xb_rng r;
    xb_rng_seed(&r, 1, "device");
    xb_device_counts cnt = {0};
    xb_device_program(&hw, 3, g, &r, &cnt);
    double f = pow(86400.0 / 20.0, -0.05);
    assert_true(g[0] == 1e-6 * f && g[1] == 4e-6 * f && g[2] == 1e-5 * f);
    /* spread of nu: log(G/G0) = -nu log(t/t0), nu ~ N(0.05, 0.01) clipped at 0 */
    enum { N = 200000 };
    double *h = malloc(N * sizeof(double)), mean, var;
    hw.drift_nu_sigma = 0.01;
    for (int i = 0; i < N; i++) h[i] = 1;
    xb_device_program(&hw, N, h, &r, &cnt);
    double lt = log(86400.0 / 20.0);
    for (int i = 0; i < N; i++) h[i] = -log(h[i]) / lt;
    xbt_moments(h, N, &mean, &var);
    assert_true(fabs(mean - 0.05) < 5 * 0.01 / sqrt(N));
    assert_true(fabs(var / 1e-4 - 1) < 5 * sqrt(2.0 / N));
    free(h);
}

/* switching faults on does not change the variation numbers of the cells that are not stuck */
static void test_independent_streams(void **state) {
    (void)state;
    enum { N = 5000 };
    double a[N], b[N];
    xb_hw hw = xb_hw_default();
    hw.variation = XB_VAR_GAUSSIAN;
    hw.variation_sigma = 0.1;
    xb_rng r;
    xb_rng_seed(&r, 4, "device");
    for (int i = 0; i < N; i++) a[i] = b[i] = 5e-6;
    xb_device_counts cnt = {0};
    xb_device_program(&hw, N, a, &r, &cnt);
    hw.stuck_at_gmin_rate = 0.1;
    xb_device_program(&hw, N, b, &r, &cnt);
    int same = 0;
    for (int i = 0; i < N; i++) {
        if (b[i] == hw.g_min_s) continue;
        assert_true(a[i] == b[i]);
        same++;
    }
    assert_true(same > N / 2);
}

/* ---- mapping ------------------------------------------------------------------------------------- */

static void test_geometry(void **state) {
    (void)state;
    xb_hw hw = xb_hw_default();
    xb_map_geom g;
    /* lenet conv1: 6 outputs x 75 inputs on 16x16 differential arrays */
    hw.rows = hw.cols = 16;
    assert_int_equal(xb_map_geom_init(&hw, 6, 75, &g), XB_OK);
    assert_int_equal(g.rt, 5);
    assert_int_equal(g.ct, 1);
    assert_int_equal(g.arrays, 2);
    assert_int_equal(g.arrays_total, 10);
    assert_int_equal(g.cells_used, 6 * 75 * 2);
    assert_int_equal(g.cells_alloc, 10 * 256);
    /* 10 outputs x 64 inputs on 7x5 arrays (neither side divides) */
    hw.rows = 7;
    hw.cols = 5;
    assert_int_equal(xb_map_geom_init(&hw, 10, 64, &g), XB_OK);
    assert_int_equal(g.rt, 10);
    assert_int_equal(g.ct, 2);
    assert_int_equal(g.cells_alloc, 10 * 2 * 2 * 35);
    /* interleaved, 8-bit weights in 2-bit cells: 8 cells per weight, 64 columns -> 8 outputs per array */
    hw.rows = hw.cols = 64;
    hw.layout = XB_LAYOUT_INTERLEAVED;
    hw.weight_bits = 8;
    hw.bits_per_cell = 2;
    assert_int_equal(xb_map_geom_init(&hw, 20, 100, &g), XB_OK);
    assert_int_equal(g.slices, 4);
    assert_int_equal(g.cells_per_weight, 8);
    assert_int_equal(g.wcols, 8);
    assert_int_equal(g.ct, 3);
    assert_int_equal(g.rt, 2);
    assert_int_equal(g.arrays, 1);
    assert_true(g.qmax == 255 && g.kmax == 3);
    int a, p;
    xb_map_cell(&g, 1, 2, 5, &a, &p);
    assert_int_equal(a, 0);
    assert_int_equal(p, 5 * 8 + 4 + 2);
    /* offset with reference columns: interleaved has one per slice at the right end */
    hw.scheme = XB_SCHEME_OFFSET;
    hw.reference = XB_REF_COLUMN;
    assert_int_equal(xb_map_geom_init(&hw, 20, 100, &g), XB_OK);
    assert_int_equal(g.ref_cols, 4);
    assert_int_equal(g.wcols, 15);
    xb_map_ref(&g, 3, &a, &p);
    assert_int_equal(p, 63);
    assert_true(g.qmax == 127);
    /* reference code = 128 = 0b10000000 -> slices (low first) 0, 0, 0, 2 */
    assert_true(g.ref_code[0] == 0 && g.ref_code[3] == 2);
    /* separate layout: reference in the last column of each slice array */
    hw.layout = XB_LAYOUT_SEPARATE;
    assert_int_equal(xb_map_geom_init(&hw, 20, 100, &g), XB_OK);
    assert_int_equal(g.arrays, 4);
    assert_int_equal(g.wcols, 63);
    xb_map_ref(&g, 2, &a, &p);
    assert_true(a == 2 && p == 63);
}

/* Codes recombine to the quantized weight, for every scheme and slicing. */
static void test_codes_recombine(void **state) {
    (void)state;
    struct { xb_scheme sc; int bits, bpc, levels; } c[] = {
        {XB_SCHEME_DIFFERENTIAL, 0, 0, 0}, {XB_SCHEME_DIFFERENTIAL, 0, 0, 7},  {XB_SCHEME_DIFFERENTIAL, 8, 2, 0},
        {XB_SCHEME_DIFFERENTIAL, 8, 1, 0}, {XB_SCHEME_DIFFERENTIAL, 6, 6, 0},  {XB_SCHEME_DIFFERENTIAL, 4, 8, 0},
        {XB_SCHEME_OFFSET, 0, 0, 0},       {XB_SCHEME_OFFSET, 0, 0, 9},        {XB_SCHEME_OFFSET, 0, 0, 8},
        {XB_SCHEME_OFFSET, 8, 4, 0},       {XB_SCHEME_OFFSET, 5, 5, 0},        {XB_SCHEME_OFFSET, 9, 3, 0},
    };
    xb_rng r;
    xb_rng_seed(&r, 2, "test");
    for (size_t q = 0; q < sizeof c / sizeof *c; q++) {
        xb_hw hw = xb_hw_default();
        hw.scheme = c[q].sc;
        hw.weight_bits = c[q].bits;
        hw.bits_per_cell = c[q].bpc;
        hw.levels = c[q].levels;
        if (xb_hw_validate(&hw) != XB_OK) fail_msg("case %zu: %s", q, xb_last_error());
        xb_map_geom g;
        assert_int_equal(xb_map_geom_init(&hw, 4, 4, &g), XB_OK);
        const double s = 0.8;
        for (int it = 0; it < 2000; it++) {
            double w = (2 * xb_rng_uniform(&r) - 1) * 1.2; /* some beyond the clip scale */
            double code[2 * XB_MAX_SLICES];
            xb_map_codes(&hw, &g, w, s, code);
            double u = w / s < -1 ? -1 : w / s > 1 ? 1 : w / s, got = 0, want;
            for (int t = 0; t < g.slices; t++) {
                double d = g.n_sign == 2 ? code[t] - code[g.slices + t] : code[t] - g.ref_code[t];
                got += ldexp(1.0, g.slice_bits * t) * d;
                for (int sg = 0; sg < g.n_sign; sg++) {
                    double cc = code[sg * g.slices + t];
                    if (cc < 0 || cc > g.kmax + 1e-12) fail_msg("case %zu: code %g outside [0, %g]", q, cc, g.kmax);
                    if (hw.weight_bits || hw.levels) assert_true(cc == rint(cc));
                }
            }
            got *= s / g.qmax;
            if (!hw.weight_bits && !hw.levels) want = s * u;
            else want = s * rint(u * g.qmax) / g.qmax;
            if (fabs(got - want) > 1e-12) fail_msg("case %zu: w %g -> %g, want %g", q, w, got, want);
        }
    }
}

static void test_tile_targets(void **state) {
    (void)state;
    xb_hw hw = xb_hw_default();
    hw.rows = 4;
    hw.cols = 3;
    hw.scheme = XB_SCHEME_OFFSET;
    hw.reference = XB_REF_COLUMN;
    hw.weight_bits = 4;
    hw.bits_per_cell = 2;
    xb_map_geom g;
    /* 5 outputs x 6 inputs: 2 row tiles x 3 column tiles of 2 weight columns, 2 arrays (slices) each */
    assert_int_equal(xb_map_geom_init(&hw, 5, 6, &g), XB_OK);
    assert_true(g.rt == 2 && g.ct == 3 && g.wcols == 2 && g.arrays == 2);
    float w[30];
    for (int i = 0; i < 30; i++) w[i] = (float)(i - 15) / 15.0f;
    double gt[2 * 12];
    const double gu = g.g_unit_s;
    xb_map_tile_targets(&hw, &g, w, 1.0, NULL, 1, 2, gt); /* rows 4..5, output 4 only */
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 4; i++)
            for (int p = 0; p < 3; p++) {
                double v = gt[a * 12 + i * 3 + p], want = hw.g_min_s;
                if (p == 2) want = hw.g_min_s + gu * g.ref_code[a];
                else if (p == 0 && i < 2) {
                    double code[2 * XB_MAX_SLICES];
                    xb_map_codes(&hw, &g, w[4 * 6 + 4 + i], 1.0, code);
                    want = hw.g_min_s + gu * code[a];
                }
                if (fabs(v - want) > 1e-20) fail_msg("array %d cell (%d,%d): %g, want %g", a, i, p, v, want);
            }
    /* clip scale */
    float ws[5] = {0.1f, -3, 2, 0, 1};
    assert_true(xb_map_scale(&hw, 5, ws) == 3);
    hw.w_clip = XB_WCLIP_PERCENTILE;
    hw.w_clip_percentile = 60; /* |w| sorted 0 .1 1 2 3: the 3rd */
    assert_true(xb_map_scale(&hw, 5, ws) == 1);
    float z[3] = {0, 0, 0};
    assert_true(xb_map_scale(&hw, 3, z) == 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_load),       cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults_are_ideal), cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_quantizers),         cmocka_unit_test(test_percentile),
        cmocka_unit_test(test_normal_fill),        cmocka_unit_test(test_variation_moments),
        cmocka_unit_test(test_stuck_at_counts),    cmocka_unit_test(test_drift),
        cmocka_unit_test(test_independent_streams), cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_codes_recombine),    cmocka_unit_test(test_tile_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
