/* test_energy.c -- the energy model (include/xb_energy.h): the probe's counts (reads, row drives, ADC
 * conversions, column samples, shift-adds, partial-sum additions, zero-skipped reads, latency reads) against
 * hand counts on a small layer with three row tiles, bit-serial inputs, bit slices, split signed inputs and zero
 * planes; the arrays' energy against sum t V_i^2 G_ij without parasitics and sum t V^T A V with them (A from the
 * solver, itself checked against ngspice in ref_solver.py), computed here from the mapping's conductances;
 * nominal counts; counts independent of thread count and batch composition; the report's components summing
 * to each layer's energy and its JSON keys; [arch]/[energy] parse errors with file:line and the printed config
 * parsing back to the same values. */
#include "testutil.h"
#include "xb_energy.h"

#include <cJSON.h>

static const char lin_cfg[] = "[net]\nname = lin\ninput = 20x1x1\nclasses = 5\n[flatten f]\n[linear fc]\n"
                              "out_features = 5\nbias = false\n";

/* 3-bit inputs in 1-bit planes, 4-bit weights in 2-bit slices, 8x8 arrays: k = 20 makes row tiles of 8, 8, 4 */
static const char hw_base[] = "[tile]\nrows = 8\ncols = 8\n[mapping]\nweight_bits = 4\nbits_per_cell = 2\n"
                              "g_min_s = 1e-6\ng_max_s = 1e-5\n[input]\ndac_bits = 1\nbit_serial = true\ninput_bits = 3\n"
                              "v_read_v = 0.25\ninput_range = fixed\ninput_full_scale = 1\n[output]\nadc_bits = 6\n"
                              "adc_range = fixed\nadc_full_scale_a = 1e-4\n";

static xb_hw hw_(const char *extra) {
    char text[2048];
    snprintf(text, sizeof text, "%s%s", hw_base, extra);
    xb_hw h;
    if (xb_hw_parse_string(text, strlen(text), "test.cfg", &h) != XB_OK) fail_msg("config: %s", xb_last_error());
    return h;
}

static xb_model *lin_(void) {
    char path[512];
    xbt_path(path, sizeof path, "lin.cfg");
    xbt_write_file(path, lin_cfg, strlen(lin_cfg));
    xb_model *m;
    if (xb_model_load(path, 3, &m) != XB_OK) fail_msg("model: %s", xb_last_error());
    return m;
}

/* n input vectors of 20 values in sevenths (codes -7..7), with whole zero row tiles and zero planes in some */
static float *inputs_(int n) {
    float *x = malloc((size_t)n * 20 * sizeof(float));
    xb_rng r;
    xb_rng_seed(&r, 11, "test");
    for (int v = 0; v < n; v++)
        for (int i = 0; i < 20; i++) {
            int code = (int)(xb_rng_u64(&r) % 15) - 7;
            if (v % 3 == 1 && i >= 8 && i < 16) code = 0;          /* row tile 1 all zero */
            if (v % 4 == 2) code = code < 0 ? -4 : 4;             /* only plane 2 on */
            if (v % 5 == 3 && code < 0) code = -code;             /* no negative pass */
            x[(size_t)v * 20 + i] = (float)code / 7.0f;
        }
    return x;
}

typedef struct { double reads, skipped, lat, drives, rtp, earr; } hand_;

/* Hand counts of n vectors x (n x 20, NCHW of 20x1x1) through row tiles of 8 rows; gsum[r][i] (may be NULL):
 * row i of row tile r's conductance sum over its arrays (ideal wires), or A[r] (R x R) with parasitics. */
static hand_ hand_counts_(int n, const float *x, int skip, const double *asum, double t, double vr) {
    hand_ h = {0};
    for (int v = 0; v < n; v++) {
        double latmax = 0;
        for (int r = 0; r < 3; r++) {
            const int i0 = 8 * r, m = r < 2 ? 8 : 4;
            int neg = 0;
            for (int i = 0; i < m; i++) neg |= x[(size_t)v * 20 + i0 + i] < 0;
            h.rtp += 1 + neg;
            double rr = 0;
            for (int pass = 0; pass <= neg; pass++)
                for (int p = 0; p < 3; p++) {
                    double V[8] = {0};
                    int nz = 0;
                    for (int i = 0; i < m; i++) {
                        double a = x[(size_t)v * 20 + i0 + i];
                        a = pass ? (a < 0 ? -a : 0) : (a > 0 ? a : 0);
                        int code = (int)rint(a * 7);
                        V[i] = vr * ((code >> p) & 1);
                        nz |= V[i] != 0;
                    }
                    if (!skip || nz) { rr++; h.drives += m; } else h.skipped++;
                    if (asum)
                        for (int i = 0; i < 8; i++)
                            for (int j = 0; j < 8; j++) h.earr += t * V[i] * asum[(size_t)r * 64 + i * 8 + j] * V[j];
                }
            h.reads += rr;
            latmax = rr > latmax ? rr : latmax;
        }
        h.lat += latmax;
    }
    return h;
}

/* Every row tile's arrays' input admittance summed (8 x 8 per row tile) from the mapping's target conductances
 * (no device effects: they are the programmed ones), by the solver or, without parasitics, diag(row sums). */
static void admittances_(const xb_hw *hw, xb_model *m, double *asum) {
    const xb_param *p = xb_model_find_param(m, "fc.weight");
    const float *w = xb_model_params(m) + p->offset;
    xb_map_geom g;
    assert_int_equal(xb_map_geom_init(hw, 5, 20, &g), XB_OK);
    assert_int_equal(g.rt, 3);
    assert_int_equal(g.ct, 1);
    const double s = xb_map_scale(hw, 100, w);
    const int64_t RC = 64;
    double *gt = malloc((size_t)g.arrays * RC * sizeof(double)), a[64];
    memset(asum, 0, 3 * 64 * sizeof(double));
    const int parasitic = hw->circuit.r_wire_ohm > 0 || hw->circuit.r_driver_ohm > 0 || hw->circuit.r_sense_ohm > 0;
    for (int r = 0; r < 3; r++) {
        xb_map_tile_targets(hw, &g, w, s, NULL, r, 0, gt);
        for (int q = 0; q < g.arrays; q++) {
            if (parasitic) {
                assert_int_equal(xb_xbar_admittance(&hw->circuit, 8, 8, gt + q * RC, a), XB_OK);
            } else {
                memset(a, 0, sizeof a);
                for (int i = 0; i < 8; i++)
                    for (int j = 0; j < 8; j++) a[i * 8 + i] += gt[q * RC + i * 8 + j];
            }
            for (int k = 0; k < 64; k++) asum[r * 64 + k] += a[k];
        }
    }
    free(gt);
}

static xb_energy_counts run_probe_s_(const xb_hw *hw, xb_model *m, int n, const float *x, int batch, int threads,
                                     int stride) {
    const int had = xb_get_threads();
    xb_set_threads(threads);
    xb_xnet *xn;
    assert_int_equal(xb_xnet_init(hw, m, &xn), XB_OK);
    assert_int_equal(xb_xnet_keep_power(xn, 1), XB_OK);
    assert_int_equal(xb_xnet_program(xn, 5), XB_OK);
    assert_int_equal(xb_xnet_energy_probe(xn, 1, stride), XB_OK);
    assert_int_equal(xb_model_set_batch(m, batch), XB_OK);
    xb_model_train_mode(m, 0);
    xb_xnet_attach(xn);
    for (int s = 0; s < n; s += batch) {
        int nb = n - s < batch ? n - s : batch;
        assert_int_equal(xb_model_forward(m, nb, x + (size_t)s * 20, NULL, NULL), XB_OK);
    }
    xb_xnet_detach(xn);
    xb_energy_counts c;
    assert_int_equal(xb_xnet_energy_counts(xn, 1, 0, &c), XB_OK);
    xb_xnet_free(xn);
    xb_set_threads(had);
    return c;
}

static xb_energy_counts run_probe_(const xb_hw *hw, xb_model *m, int n, const float *x, int batch, int threads) {
    return run_probe_s_(hw, m, n, x, batch, threads, 1);
}

static void check_counts_(const xb_energy_counts *c, const hand_ *h, int n) {
    /* per read: 2 slices x 5 outputs converted (difference ADC), 2 signs x 2 slices x 5 columns sensed */
    assert_true(c->vectors == n);
    assert_true(c->reads == h->reads);
    assert_true(c->reads_skipped == h->skipped);
    assert_true(c->latency_reads == h->lat);
    assert_true(c->dac_drives == h->drives);
    assert_true(c->adc_conversions == 10 * h->reads);
    assert_true(c->columns_sensed == 20 * h->reads);
    assert_true(c->shift_adds == 10 * h->reads);
    assert_true(c->accumulations == 5 * (h->rtp - n));
    assert_true(c->buffer_bits == (double)n * (20 + 5) * 16);
    assert_int_equal(c->arrays, 3 * 4);
    assert_int_equal(c->adcs, 3 * 4 * 1); /* 8 columns, 8 per ADC */
    assert_int_equal(c->drivers, 3 * 4 * 8);
}

static void test_hand_counts_and_ideal_energy(void **state) {
    (void)state;
    xb_model *m = lin_();
    const int n = 24;
    float *x = inputs_(n);
    for (int skip = 0; skip < 2; skip++) {
        xb_hw hw = hw_(skip ? "[arch]\nzero_skip = true\n[circuit]\nsolver = none\n" : "[circuit]\nsolver = none\n");
        double asum[3 * 64];
        admittances_(&hw, m, asum);
        hand_ h = hand_counts_(n, x, skip, asum, hw.energy.read_time_s, hw.v_read_v);
        xb_energy_counts c = run_probe_(&hw, m, n, x, 8, 1);
        check_counts_(&c, &h, n);
        if (skip) assert_true(h.skipped > 0);
        if (!(fabs(c.array_energy_j - h.earr) <= 1e-12 * h.earr))
            fail_msg("ideal array energy %.12g J, sum t V_i^2 G_ij = %.12g J", c.array_energy_j, h.earr);
    }
    free(x);
    xb_model_free(m);
}

/* The offset scheme with a reference column per array and column ADCs, ADCs shared by 4 columns: per read 2 slices
 * x (5 outputs + 1 reference column) conversions and samples, 2 x 5 shift-adds; 3 row tiles x 2 slice arrays of
 * two ADCs each; the arrays' energy from the mapping's conductances, the reference columns' included. */
static void test_offset_counts(void **state) {
    (void)state;
    xb_model *m = lin_();
    const int n = 24;
    float *x = inputs_(n);
    static const char text[] =
        "[tile]\nrows = 8\ncols = 8\n[mapping]\nscheme = offset\nreference = column\nweight_bits = 4\n"
        "bits_per_cell = 2\ng_min_s = 1e-6\ng_max_s = 1e-5\n[input]\ndac_bits = 1\nbit_serial = true\ninput_bits = 3\n"
        "v_read_v = 0.25\ninput_range = fixed\ninput_full_scale = 1\n[output]\nadc_bits = 6\nadc_signal = column\n"
        "adc_range = fixed\nadc_full_scale_a = 1e-4\n[arch]\nadc_share_cols = 4\n[circuit]\nsolver = none\n";
    xb_hw hw;
    if (xb_hw_parse_string(text, strlen(text), "test.cfg", &hw) != XB_OK) fail_msg("config: %s", xb_last_error());
    double asum[3 * 64];
    admittances_(&hw, m, asum);
    hand_ h = hand_counts_(n, x, 0, asum, hw.energy.read_time_s, hw.v_read_v);
    xb_energy_counts c = run_probe_(&hw, m, n, x, 8, 1);
    assert_true(c.reads == h.reads && c.dac_drives == h.drives && c.latency_reads == h.lat);
    assert_true(c.adc_conversions == 12 * h.reads);
    assert_true(c.columns_sensed == 12 * h.reads);
    assert_true(c.shift_adds == 10 * h.reads);
    assert_true(c.accumulations == 5 * (h.rtp - n));
    assert_int_equal(c.arrays, 3 * 2);
    assert_int_equal(c.adcs, 3 * 2 * 2);
    if (!(fabs(c.array_energy_j - h.earr) <= 1e-12 * h.earr))
        fail_msg("offset array energy %.12g J, sum t V_i^2 G_ij = %.12g J", c.array_energy_j, h.earr);
    free(x);
    xb_model_free(m);
}

static void test_parasitic_energy(void **state) {
    (void)state;
    xb_model *m = lin_();
    const int n = 12;
    float *x = inputs_(n);
    const char *solvers[] = {"exact", "decoupled"}; /* the admittance is exact either way */
    for (int q = 0; q < 2; q++) {
        char extra[256];
        snprintf(extra, sizeof extra, "[circuit]\nr_wire_ohm = 5\nr_driver_ohm = 2000\nr_sense_ohm = 500\nsolver = %s\n",
                 solvers[q]);
        xb_hw hw = hw_(extra);
        double asum[3 * 64];
        admittances_(&hw, m, asum);
        hand_ h = hand_counts_(n, x, 0, asum, hw.energy.read_time_s, hw.v_read_v);
        xb_energy_counts c = run_probe_(&hw, m, n, x, 12, 1);
        check_counts_(&c, &h, n);
        if (!(fabs(c.array_energy_j - h.earr) <= 1e-10 * h.earr))
            fail_msg("%s: parasitic array energy %.12g J, sum t V^T A V = %.12g J", solvers[q], c.array_energy_j, h.earr);
        /* the parasitics take power of their own: less than the ideal cells would draw */
        xb_hw hi = hw_("[circuit]\nsolver = none\n");
        admittances_(&hi, m, asum);
        hand_ hh = hand_counts_(n, x, 0, asum, hi.energy.read_time_s, hi.v_read_v);
        assert_true(c.array_energy_j < hh.earr);
    }
    free(x);
    xb_model_free(m);
}

static void test_invariance(void **state) {
    (void)state;
    xb_model *m = lin_();
    const int n = 24;
    float *x = inputs_(n);
    xb_hw hw = hw_("[arch]\nzero_skip = true\n[circuit]\nr_wire_ohm = 2.5\nr_driver_ohm = 1000\nr_sense_ohm = 1000\n");
    xb_energy_counts a = run_probe_(&hw, m, n, x, 24, 1);
    xb_energy_counts b = run_probe_(&hw, m, n, x, 5, 2);
    assert_true(a.reads == b.reads && a.dac_drives == b.dac_drives && a.adc_conversions == b.adc_conversions &&
                a.latency_reads == b.latency_reads && a.accumulations == b.accumulations && a.reads_skipped == b.reads_skipped);
    if (!(fabs(a.array_energy_j - b.array_energy_j) <= 1e-12 * a.array_energy_j))
        fail_msg("array energy %.15g (one batch, 1 thread) vs %.15g (batches of 5, 2 threads)", a.array_energy_j,
                 b.array_energy_j);
    /* a sampled V^T A V (one vector in 3): the same sample whatever the batches, the counts still exact */
    xb_energy_counts c = run_probe_s_(&hw, m, n, x, 24, 1, 3), d = run_probe_s_(&hw, m, n, x, 7, 2, 3);
    assert_true(c.reads == a.reads && c.adc_conversions == a.adc_conversions && c.latency_reads == a.latency_reads);
    if (!(fabs(c.array_energy_j - d.array_energy_j) <= 1e-12 * c.array_energy_j) ||
        !(fabs(c.array_energy_j - a.array_energy_j) <= 0.5 * a.array_energy_j) || c.array_energy_j == a.array_energy_j)
        fail_msg("sampled array energy %.15g (one batch) vs %.15g (batches of 7), exact %.15g", c.array_energy_j,
                 d.array_energy_j, a.array_energy_j);
    free(x);
    xb_model_free(m);
}

static void test_nominal(void **state) {
    (void)state;
    xb_model *m = lin_();
    xb_hw hw = hw_("[energy]\ninput_density = 1\n[circuit]\nr_wire_ohm = 2.5\nr_driver_ohm = 1000\nr_sense_ohm = 1000\n");
    double asum[3 * 64];
    admittances_(&hw, m, asum);
    xb_xnet *xn;
    assert_int_equal(xb_xnet_init(&hw, m, &xn), XB_OK);
    assert_int_equal(xb_xnet_keep_power(xn, 1), XB_OK);
    assert_int_equal(xb_xnet_program(xn, 5), XB_OK);
    xb_energy_counts c;
    assert_int_equal(xb_xnet_energy_counts(xn, 1, 0, &c), XB_ERR_STATE); /* no probe ran */
    assert_int_equal(xb_xnet_energy_counts(xn, 0, 0, &c), XB_OK);
    /* one vector per image, 3 row tiles x 3 planes, every input bit on */
    assert_true(c.vectors == 1 && c.reads == 9 && c.dac_drives == 3 * 20 && c.adc_conversions == 90);
    double e = 0;
    for (int r = 0; r < 3; r++) {
        const int mr = r < 2 ? 8 : 4;
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < mr; j++) e += 3 * hw.energy.read_time_s * hw.v_read_v * hw.v_read_v * asum[r * 64 + i * 8 + j];
    }
    if (!(fabs(c.array_energy_j - e) <= 1e-12 * e)) fail_msg("nominal array energy %.12g, expected %.12g", c.array_energy_j, e);
    /* the report: components sum to each layer's energy, totals to the layers', JSON carries the keys */
    xb_energy_report r;
    assert_int_equal(xb_energy_report_make(xn, m, 0, &r), XB_OK);
    double tot = 0;
    for (int i = 0; i < r.n_layers; i++) {
        const xb_energy_layer *L = &r.layers[i];
        double s = L->array_energy_j + L->dac_energy_j + L->adc_energy_j + L->sense_energy_j + L->shift_add_energy_j +
                   L->accumulate_energy_j + L->buffer_energy_j + L->digital_energy_j;
        assert_true(fabs(s - L->energy_j) <= 1e-15 * L->energy_j);
        tot += L->energy_j;
    }
    assert_true(fabs(tot - r.total_energy_j) <= 1e-12 * tot);
    const xb_energy_layer *L = &r.layers[0];
    assert_string_equal(L->kind, "crossbar");
    assert_true(fabs(L->adc_energy_j - 90 * xb_energy_adc_j(&hw.energy, 6)) <= 1e-18);
    assert_true(fabs(xb_energy_adc_j(&hw.energy, 6) - 1.67e-12 / (1.2 * 1.2)) <= 1e-24);
    assert_true(fabs(L->dac_energy_j - 60 * hw.energy.dac_energy_j) <= 1e-24);
    /* latency: 3 reads per vector (row tiles in parallel), each max(100 ns, 8 columns x 6/8 x 0.833 ns) */
    assert_true(fabs(L->latency_s - 3 * 100e-9) <= 1e-18);
    char path[512];
    xbt_path(path, sizeof path, "energy.json");
    FILE *f = fopen(path, "w");
    xb_energy_report_print(&r, f, 1);
    fclose(f);
    f = fopen(path, "r");
    char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    const char *keys[] = {"total_energy_j", "latency_s", "area_m2", "tops_per_w", "layers"};
    for (int k = 0; k < 5; k++) assert_non_null(cJSON_GetObjectItem(j, keys[k]));
    cJSON *l0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), 0);
    const char *lk[] = {"name", "energy_j", "array_energy_j", "adc_energy_j", "dac_energy_j"};
    for (int k = 0; k < 5; k++) assert_non_null(cJSON_GetObjectItem(l0, lk[k]));
    cJSON_Delete(j);
    xb_energy_report_free(&r);
    xb_xnet_free(xn);
    xb_model_free(m);
}

static void test_config(void **state) {
    (void)state;
    const char *bad[][2] = {
        {"[energy]\nadc_energy_jj = 1e-12\n", "test.cfg:2: unknown key 'adc_energy_jj'"},
        {"[energy]\nread_time_s = 0\n", "test.cfg:2"},
        {"[arch]\nadc_share_cols = 0\n", "test.cfg:2"},
        {"[arch]\nzero_skip = maybe\n", "test.cfg:2"},
        {"[energy]\ninput_density = 1.5\n", "test.cfg:2"},
        {"[archh]\n", "test.cfg:1: unknown section [archh]"},
        {"[pe]\nlanes = 0\n", "test.cfg:2"},
        {"[pe]\nunit = 4\n", "test.cfg:2: unknown key 'unit'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        xb_hw h;
        xb_status st = xb_hw_parse_string(bad[i][0], strlen(bad[i][0]), "test.cfg", &h);
        xbt_assert_error(st, XB_ERR_CONFIG, "test.cfg", bad[i][1]);
    }
    /* the printed config parses back to the same [arch] and [energy] */
    xb_hw h = hw_("[arch]\nadc_share_cols = 16\npipeline = true\n[energy]\nadc_energy_j = 3.5e-12\nread_time_s = 1e-8\n");
    char path[512];
    xbt_path(path, sizeof path, "printed.cfg");
    FILE *f = fopen(path, "w");
    xb_hw_print(&h, f, 0);
    fclose(f);
    xb_hw back;
    if (xb_hw_load(path, &back) != XB_OK) fail_msg("printed config: %s", xb_last_error());
    assert_int_equal(back.energy.adc_share_cols, 16);
    assert_int_equal(back.energy.pipeline, 1);
    assert_true(back.energy.adc_energy_j == 3.5e-12 && back.energy.read_time_s == 1e-8);
    assert_memory_equal(&back.energy, &h.energy, sizeof h.energy);
}

/* The zero-skipping PE array: a 3x3 convolution over 5 channels of 3x3 images (one window per image, k = 45)
 * and 7 outputs, lanes 2 (channels 0, 2, 4 on lane 0), units 1 x 3 filters (3 passes); counts by hand, the
 * energy formula, the dense baseline, and the same counts in batches of 1 at 2 threads. */
static void test_pe(void **state) {
    (void)state;
    static const char cfg[] = "[net]\nname = pe\ninput = 5x3x3\nclasses = 7\n[conv2d c]\nout_channels = 7\nkernel = 3\n"
                              "bias = false\n[flatten f]\n";
    char path[512];
    xbt_path(path, sizeof path, "pe.cfg");
    xbt_write_file(path, cfg, strlen(cfg));
    xb_model *m;
    if (xb_model_load(path, 3, &m) != XB_OK) fail_msg("model: %s", xb_last_error());
    xb_hw hw = hw_("[pe]\nunits = 1\nfilters_per_unit = 3\nlanes = 2\nclock_hz = 1e8\nmac_energy_j = 2e-12\n"
                   "static_power_w = 0.5\noffset_bits = 4\n[arch]\nword_bits = 8\n[energy]\nbuffer_energy_j_per_bit = 1e-13\n");
    const int n = 6;
    float *x = malloc((size_t)n * 45 * sizeof(float));
    double nz = 0, cyc = 0;
    for (int v = 0; v < n; v++) {
        int lane[2] = {0, 0};
        for (int i = 0; i < 45; i++) { /* NCHW: channel i / 9 */
            const int on = v == 5 ? 0 : ((i * 7 + v * 3) % (v + 2)) == 0;
            x[(size_t)v * 45 + i] = on ? 0.25f * (float)(1 + i % 3) : 0.0f;
            lane[(i / 9) % 2] += on;
            nz += on;
        }
        const int mx = lane[0] > lane[1] ? lane[0] : lane[1];
        cyc += 3 * (mx > 0 ? mx : 1); /* image 5 is all zero: one cycle per pass */
    }
    for (int run = 0; run < 2; run++) {
        const int batch = run ? 1 : n, had = xb_get_threads();
        xb_set_threads(run ? 2 : 1);
        assert_int_equal(xb_model_set_batch(m, batch), XB_OK);
        xb_model_train_mode(m, 0);
        xb_pe_probe *p;
        assert_int_equal(xb_pe_probe_attach(m, &hw.energy, &p), XB_OK);
        for (int s = 0; s < n; s += batch)
            assert_int_equal(xb_model_forward(m, batch, x + (size_t)s * 45, NULL, NULL), XB_OK);
        xb_pe_report r;
        assert_int_equal(xb_pe_report_make(p, n, &r), XB_OK);
        xb_pe_probe_detach(p);
        xb_set_threads(had);
        assert_null(xb_model_op(m)); /* detach put the native kernels back */
        assert_int_equal(r.n_layers, 1);
        const xb_pe_layer *L = &r.layers[0];
        if (!(fabs(L->nonzero - nz / n) < 1e-12 && fabs(L->cycles - cyc / n) < 1e-12))
            fail_msg("run %d: nonzero %.6f cycles %.6f, by hand %.6f %.6f", run, L->nonzero, L->cycles, nz / n, cyc / n);
        assert_true(L->cycles_dense == 3 * 27 && L->macs == 7 * nz / n && L->macs_dense == 7 * 45);
        const double e = 7 * nz / n * 2e-12 + (nz / n * (8 + 4) + 7 * 8) * 1e-13 + cyc / n * 1e-8 * 0.5;
        const double ed = 7 * 45 * 2e-12 + (45 + 7) * 8 * 1e-13 + 81 * 1e-8 * 0.5;
        if (!(fabs(L->energy_j - e) < 1e-9 * e && fabs(L->energy_dense_j - ed) < 1e-9 * ed &&
              fabs(r.latency_s - cyc / n * 1e-8) < 1e-18 && fabs(r.density - nz / (45.0 * n)) < 1e-12))
            fail_msg("energy %.9g (hand %.9g), dense %.9g (hand %.9g)", L->energy_j, e, L->energy_dense_j, ed);
        xb_pe_report_free(&r);
    }
    free(x);
    xb_model_free(m);
}

/* Reference of the TiM arrays for the lin model (20 inputs, 5 outputs): per vector, output and block of L rows the
 * counts of products +1 and -1 (symmetric: one access) or per weight sign (asymmetric), each through the ADC. */
static double tim_ref_(const float *w, const float *x, int n, int j, int v, int L, int bits, double beta, int asym,
                       double *sat) {
    const double top = (double)((1 << bits) - 1);
    double a = 0, b = 0, s = 0, y = 0;
    for (int i = 0; i < 20; i++) {
        const float wv = w[j * 20 + i];
        if (wv > 0) b = wv;
        if (wv < 0) a = -wv;
        if (x[(size_t)v * 20 + i] != 0) s = fabs(x[(size_t)v * 20 + i]);
    }
    (void)n;
    for (int i0 = 0; i0 < 20; i0 += L) {
        double c[2][2] = {{0, 0}, {0, 0}}; /* [weight sign +,-][product +,-] */
        for (int i = i0; i < i0 + L && i < 20; i++) {
            const int ws = (w[j * 20 + i] > 0) - (w[j * 20 + i] < 0), xs = (x[(size_t)v * 20 + i] > 0) - (x[(size_t)v * 20 + i] < 0);
            if (!ws || !xs) continue;
            c[ws < 0][ws * xs < 0] += 1;
        }
        double rd[4];
        const double raw[4] = {c[0][0] + c[1][0], c[0][1] + c[1][1], c[0][0], c[0][1]};
        const double rawa[4] = {c[0][0], c[0][1], c[1][0], c[1][1]};
        for (int q = 0; q < (asym ? 4 : 2); q++) {
            double cnt = asym ? rawa[q] : raw[q];
            double vv = cnt * (1 - beta * cnt / (2.0 * L));
            double r = rint(vv);
            if (r > top) { r = top; *sat += 1; }
            rd[q] = r;
        }
        if (!asym) y += (a > 0 ? a : b) * (rd[0] - rd[1]);
        else y += b * (rd[0] - rd[1]) + a * (rd[2] - rd[3]); /* a cell of weight -a adds a where its product is +1 */
    }
    return s * y;
}

/* The TiM arrays against the reference: symmetric and asymmetric ternary weights, signed ternary inputs, an ADC that
 * saturates, the count non-linearity; a layer with non-ternary weights stays digital (the float product); non-ternary
 * inputs to a ternary layer are an error; the energy and latency formulas. */
static void test_tim(void **state) {
    (void)state;
    const int n = 9;
    float *x = malloc((size_t)n * 20 * sizeof(float)), *logits = malloc((size_t)n * 5 * sizeof(float));
    for (int v = 0; v < n; v++)
        for (int i = 0; i < 20; i++) {
            const int r = (i * 5 + v * 7) % 9; /* all on in the first vectors, so that 8 rows exceed 3 bits */
            x[(size_t)v * 20 + i] = v < 3 ? 0.5f : (r < 3 ? 0.5f : r < 5 ? -0.5f : 0.0f);
        }
    for (int asym = 0; asym < 2; asym++) {
        xb_model *m = lin_();
        const xb_param *pw = xb_model_find_param(m, "fc.weight");
        float *w = xb_model_params(m) + pw->offset;
        for (int j = 0; j < 5; j++)
            for (int i = 0; i < 20; i++) {
                const int r = (i * 3 + j * 11) % 7;
                w[j * 20 + i] = j == 0 || r < 3 ? 0.25f * (1 + j) : r < 5 ? -(asym ? 0.125f : 0.25f) * (1 + j) : 0.0f;
            }
        xb_hw hw = hw_("[tim]\nrows_per_access = 8\nadc_bits = 3\ncount_nonlinearity = 0.05\ntile_cols = 4\ntiles = 2\n"
                       "access_time_s = 1e-9\ncell_energy_j = 4e-15\nadc_energy_j = 1e-13\n");
        assert_int_equal(xb_model_set_batch(m, n), XB_OK);
        xb_model_train_mode(m, 0);
        xb_tim_probe *p;
        assert_int_equal(xb_tim_probe_attach(m, &hw.energy, 1, &p), XB_OK);
        assert_int_equal(xb_model_forward(m, n, x, logits, NULL), XB_OK);
        double sat = 0, maxerr = 0;
        for (int v = 0; v < n; v++)
            for (int j = 0; j < 5; j++) {
                const double ref = tim_ref_(w, x, n, j, v, 8, 3, 0.05, asym, &sat);
                maxerr = fmax(maxerr, fabs(logits[v * 5 + j] - ref));
            }
        if (!(maxerr < 1e-5)) fail_msg("asym %d: TiM output against the reference: max error %g", asym, maxerr);
        assert_true(sat > 0); /* the 3-bit ADC saturates on the dense vectors */
        xb_tim_report r;
        assert_int_equal(xb_tim_report_make(p, n, &r), XB_OK);
        const xb_tim_layer *L = &r.layers[0];
        assert_true(L->on_arrays && L->asymmetric == asym);
        /* per vector: 3 blocks x 2 column tiles (5 outputs, 4 columns) x (asym ? 2 : 1) accesses */
        const double acc = 3 * 2 * (asym ? 2 : 1), conv = 3 * 5 * 2 * (asym ? 2 : 1);
        assert_true(L->accesses == acc && L->conversions == conv);
        assert_true(fabs(L->saturation_rate - sat / (conv * n)) < 1e-12);
        /* cells: 20 rows x 5 outputs per access set; conversions at 3 bits: 1e-13 x 1.2^(3 - 5) */
        const double e = 20 * 5 * (asym ? 2 : 1) * 4e-15 + conv * 1e-13 * pow(1.2, -2);
        if (!(fabs(L->energy_j - e) < 1e-9 * e && fabs(L->latency_s - acc * 1e-9 / 2) < 1e-20))
            fail_msg("energy %.9g (hand %.9g), latency %.9g", L->energy_j, e, L->latency_s);
        assert_true(fabs(r.peak_tops - 2.0 * 8 * 4 * 2 / 1e-9 / 1e12) < 1e-9);
        const double pk = 2 * (8 * 4 * 4e-15 + 2 * 4 * 1e-13 * pow(1.2, -2)) / 1e-9;
        assert_true(fabs(r.peak_power_w - pk) < 1e-9 * pk);
        xb_tim_report_free(&r);
        /* inputs that stop being ternary */
        x[3] = 0.75f;
        xb_status st = xb_model_forward(m, n, x, logits, NULL);
        xbt_assert_error(st, XB_ERR_ARG, "fc", "not ternary");
        xb_tim_probe_detach(p);
        /* a layer whose first inputs are not ternary stays digital: the float product */
        float *fl = malloc((size_t)n * 5 * sizeof(float));
        assert_int_equal(xb_model_forward(m, n, x, fl, NULL), XB_OK);
        assert_int_equal(xb_tim_probe_attach(m, &hw.energy, 1, &p), XB_OK);
        assert_int_equal(xb_model_forward(m, n, x, logits, NULL), XB_OK);
        assert_memory_equal(fl, logits, (size_t)n * 5 * sizeof(float));
        assert_int_equal(xb_tim_report_make(p, n, &r), XB_OK);
        assert_true(!r.layers[0].on_arrays && r.layers[0].inputs_real);
        xb_tim_report_free(&r);
        xb_tim_probe_detach(p);
        free(fl);
        x[3] = 0.5f;
        /* cell variation: the same cells for the same seed, others for another */
        xb_hw hv = hw_("[tim]\nrows_per_access = 8\ncell_sigma = 0.3\n");
        float *o[3];
        for (int q = 0; q < 3; q++) {
            o[q] = malloc((size_t)n * 5 * sizeof(float));
            assert_int_equal(xb_tim_probe_attach(m, &hv.energy, q == 2 ? 2 : 1, &p), XB_OK);
            assert_int_equal(xb_model_forward(m, n, x, o[q], NULL), XB_OK);
            xb_tim_probe_detach(p);
        }
        assert_memory_equal(o[0], o[1], (size_t)n * 5 * sizeof(float));
        assert_memory_not_equal(o[0], o[2], (size_t)n * 5 * sizeof(float));
        for (int q = 0; q < 3; q++) free(o[q]);
        xb_model_free(m);
    }
    /* weights that are not ternary: the layer stays digital, the float product */
    xb_model *m = lin_();
    float *ref = malloc((size_t)n * 5 * sizeof(float));
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    xb_model_train_mode(m, 0);
    assert_int_equal(xb_model_forward(m, n, x, ref, NULL), XB_OK);
    xb_hw hw = hw_("");
    xb_tim_probe *p;
    assert_int_equal(xb_tim_probe_attach(m, &hw.energy, 1, &p), XB_OK);
    assert_int_equal(xb_model_forward(m, n, x, logits, NULL), XB_OK);
    for (int q = 0; q < n * 5; q++) assert_true(fabsf(logits[q] - ref[q]) <= 1e-5f * (1 + fabsf(ref[q])));
    xb_tim_report r;
    assert_int_equal(xb_tim_report_make(p, n, &r), XB_OK);
    assert_false(r.layers[0].on_arrays);
    xb_tim_report_free(&r);
    xb_tim_probe_detach(p);
    xb_model_free(m);
    free(ref);
    free(x);
    free(logits);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_counts_and_ideal_energy),
        cmocka_unit_test(test_offset_counts),
        cmocka_unit_test(test_parasitic_energy),
        cmocka_unit_test(test_invariance),
        cmocka_unit_test(test_nominal),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_pe),
        cmocka_unit_test(test_tim),
    };
    if (getenv("XBT_FILTER")) cmocka_set_test_filter(getenv("XBT_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
