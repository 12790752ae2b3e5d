/* test_sparsemap.c -- mapping sparse layers (methods.md 5A).  Column rearrangement ([mapping] rearrange): on an
 * ideal crossbar it changes nothing; on a parasitic one (fast path, and the tiled path with ADCs and the hardware
 * backward) the rearranged layer equals the same layer with its weight rows permuted beforehand, outputs, input
 * gradients and weight gradients put back in the original order; the orders are the documented ones; the share of
 * cells below mid-conductance counts what it says; on-chip training refuses it.  Packing ([mapping] pack): a
 * layer with dropped column (row) segments, packed, equals on an ideal crossbar the float product, and on a
 * parasitic one with ADCs the sum of its blocks run as separate layers (outputs and both gradients); it takes
 * fewer tiles; weights that leave a dropped segment are refused at programming.  Crossbar-aware pruning (XCS,
 * XRS) and fixed weight scales (weight-constrained training's mapping). */
#include "testutil.h"
#include "xb_xbar.h"

static xb_hw hw_(const char *text) {
    xb_hw h;
    if (xb_hw_parse_string(text, strlen(text), "test.cfg", &h) != XB_OK) fail_msg("config: %s", xb_last_error());
    return h;
}

/* one linear layer, 20 inputs, 40 outputs: three column tiles of 16 and two row tiles */
static const char lin_cfg[] = "[net]\nname = lin\ninput = 1x1x20\nclasses = 40\n[flatten f]\n[linear fc]\n"
                              "out_features = 40\nbias = false\n";

static xb_model *lin_(const float *w) {
    xb_model *m;
    assert_int_equal(xb_model_load_text(lin_cfg, sizeof lin_cfg - 1, "lin.cfg", 1, &m), XB_OK);
    if (w) memcpy(xb_model_params(m), w, sizeof(float) * 800);
    return m;
}

static xb_xnet *xnet_(const xb_hw *hw, xb_model *m, int n, const float *x) {
    xb_xnet *xn;
    if (xb_xnet_init(hw, m, &xn) != XB_OK) fail_msg("xnet init: %s", xb_last_error());
    if (xb_xnet_program(xn, 5) != XB_OK) fail_msg("program: %s", xb_last_error());
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    if (xb_xnet_needs_calibration(xn) && xb_xnet_calibrate(xn, n, x) != XB_OK) fail_msg("calibrate: %s", xb_last_error());
    return xn;
}

/* logits, input gradient and weight gradient of dl through the crossbar */
static void run_(xb_xnet *xn, xb_model *m, int n, const float *x, const float *dl, float *y, float *dx, float *dw) {
    xb_xnet_attach(xn);
    xb_model_train_mode(m, 0);
    xb_model_keep_graph(m, 1);
    if (xb_model_forward(m, n, x, y, NULL) != XB_OK) fail_msg("forward: %s", xb_last_error());
    xb_model_zero_grad(m);
    if (xb_model_backward_from(m, n, dl, 1, dx) != XB_OK) fail_msg("backward: %s", xb_last_error());
    memcpy(dw, xb_model_grads(m), sizeof(float) * 800);
    xb_xnet_detach(xn);
}

static double rel_(const float *a, const float *b, int64_t n) {
    double d = 0, mx = 1e-30;
    for (int64_t i = 0; i < n; i++) { d = fmax(d, fabs(a[i] - b[i])); mx = fmax(mx, fabs(b[i])); }
    return d / mx;
}

static void check_undone_(const char *label, const char *text, double tol) {
    const int n = 6;
    xb_rng r;
    xb_rng_seed(&r, 3, "w");
    float w[800], wp[800], x[120], dl[240];
    for (int i = 0; i < 800; i++) w[i] = (float)(xb_rng_normal(&r) * (i % 40 < 12 ? 0.2 : 1.0)); /* uneven columns */
    for (int i = 0; i < 120; i++) x[i] = (float)fabs(xb_rng_normal(&r));
    for (int i = 0; i < 240; i++) dl[i] = (float)xb_rng_normal(&r);
    char t[1024];
    snprintf(t, sizeof t, "%s[mapping]\nrearrange = round-robin\n", text);
    xb_hw ha = hw_(t), hb = hw_(text);
    xb_model *ma = lin_(w);
    xb_xnet *xa = xnet_(&ha, ma, n, x);
    const int *perm = xb_xnet_layer_perm(xa, 0, 0);
    assert_non_null(perm);
    for (int p = 0; p < 40; p++) memcpy(wp + p * 20, w + perm[p] * 20, sizeof(float) * 20);
    xb_model *mb = lin_(wp);
    xb_xnet *xb = xnet_(&hb, mb, n, x);
    assert_null(xb_xnet_layer_perm(xb, 0, 0));
    /* the permuted model's gradient seed: its logits are the rearranged ones' in tile order */
    float dlb[240], ya[240], yb[240], dxa[120], dxb[120], dwa[800], dwb[800], yu[240], dwu[800];
    for (int j = 0; j < n; j++)
        for (int p = 0; p < 40; p++) dlb[j * 40 + p] = dl[j * 40 + perm[p]];
    run_(xa, ma, n, x, dl, ya, dxa, dwa);
    run_(xb, mb, n, x, dlb, yb, dxb, dwb);
    for (int j = 0; j < n; j++)
        for (int p = 0; p < 40; p++) yu[j * 40 + perm[p]] = yb[j * 40 + p];
    for (int p = 0; p < 40; p++) memcpy(dwu + perm[p] * 20, dwb + p * 20, sizeof(float) * 20);
    double ey = rel_(ya, yu, 240), ex = rel_(dxa, dxb, 120), ew = rel_(dwa, dwu, 800);
    /* and it did move the columns: without it the parasitic outputs differ */
    xb_model *mc = lin_(w);
    xb_xnet *xc = xnet_(&hb, mc, n, x);
    float yc[240], dxc[120], dwc[800];
    run_(xc, mc, n, x, dl, yc, dxc, dwc);
    const double moved = rel_(ya, yc, 240);
    xb_xnet_free(xc);
    xb_model_free(mc);
    if (getenv("XBT_VERBOSE"))
        fprintf(stderr, "  %s: outputs %.2e, dx %.2e, dW %.2e; rearranged vs not %.2e\n", label, ey, ex, ew, moved);
    if (!(moved > 1e-5)) fail_msg("%s: rearranging changed the parasitic outputs by only %.3e", label, moved);
    if (!(ey <= tol && ex <= tol && ew <= tol))
        fail_msg("rearranged vs permuted beforehand: outputs %.3e, input gradient %.3e, weight gradient %.3e", ey, ex, ew);
    /* the effective weights come back in the layer's order */
    const float *ea = xb_xnet_effective_weights(xa, 0, 0), *eb = xb_xnet_effective_weights(xb, 0, 0);
    for (int p = 0; p < 40; p++) assert_memory_equal(ea + perm[p] * 20, eb + p * 20, sizeof(float) * 20);
    xb_xnet_free(xa); xb_xnet_free(xb);
    xb_model_free(ma); xb_model_free(mb);
}

static const char parasitic[] = "[tile]\nrows = 16\ncols = 16\n[circuit]\nr_wire_ohm = 5\nr_driver_ohm = 1000\n"
                                "r_sense_ohm = 1000\nsolver = exact\n";

static void test_undone_exactly(void **state) {
    (void)state;
    check_undone_("parasitic", parasitic, 1e-6);
    /* the tiled path: ADCs per column, their straight-through masks in the backward */
    char t[1024];
    snprintf(t, sizeof t, "%s[input]\ndac_bits = 6\n[output]\nadc_bits = 6\n", parasitic);
    check_undone_("parasitic, 6-bit DAC and ADC", t, 1e-6);
    /* with read noise: the same draws in the tiles' order */
    snprintf(t, sizeof t, "%s[device]\nread_noise_sigma = 1e-6\n", parasitic);
    check_undone_("parasitic, read noise", t, 1e-6);
}

/* ideal devices and wires: the order of the columns cannot matter */
static void test_ideal_unchanged(void **state) {
    (void)state;
    xb_model *m;
    assert_int_equal(xb_model_load("lenet5", 4, &m), XB_OK);
    const int n = 5;
    float *x = malloc(sizeof(float) * n * 3 * 32 * 32), y0[50], y1[50], ys[50];
    xb_rng r;
    xb_rng_seed(&r, 1, "x");
    for (int i = 0; i < n * 3 * 32 * 32; i++) x[i] = (float)xb_rng_normal(&r);
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    xb_model_train_mode(m, 0);
    assert_int_equal(xb_model_forward(m, n, x, ys, NULL), XB_OK);
    for (int q = 0; q < 2; q++) {
        xb_hw h = hw_(q ? "[tile]\nrows = 16\ncols = 16\n[mapping]\nrearrange = round-robin\n"
                        : "[tile]\nrows = 16\ncols = 16\n[mapping]\nrearrange = sorted\n");
        xb_xnet *xn = xnet_(&h, m, n, x);
        xb_xnet_attach(xn);
        assert_int_equal(xb_model_forward(m, n, x, q ? y1 : y0, NULL), XB_OK);
        xb_xnet_detach(xn);
        xb_xnet_free(xn);
    }
    if (!(rel_(y0, ys, 50) < 1e-5 && rel_(y1, ys, 50) < 1e-5))
        fail_msg("ideal crossbar, rearranged: %.3e (sorted), %.3e (round-robin) from the float logits", rel_(y0, ys, 50),
                 rel_(y1, ys, 50));
    free(x);
    xb_model_free(m);
}

/* the orders: outputs ranked by their cells' total conductance (here sum |w|, continuous differential cells);
 * round-robin deals them over the 3 column tiles (16, 16, 8 columns), sorted lays them out in rank order */
static void test_orders_and_low_share(void **state) {
    (void)state;
    xb_rng r;
    xb_rng_seed(&r, 7, "w");
    float w[800], x[20];
    for (int i = 0; i < 800; i++) w[i] = (float)(xb_rng_normal(&r) * (1 + (i / 20) % 7));
    for (int i = 0; i < 20; i++) x[i] = 1;
    double cs[40];
    int rank[40];
    for (int j = 0; j < 40; j++) {
        cs[j] = 0;
        for (int i = 0; i < 20; i++) cs[j] += fabs(w[j * 20 + i]);
        rank[j] = j;
    }
    for (int i = 1; i < 40; i++)
        for (int j = i; j > 0 && cs[rank[j]] > cs[rank[j - 1]]; j--) { int t = rank[j]; rank[j] = rank[j - 1]; rank[j - 1] = t; }
    xb_model *m = lin_(w);
    for (int q = 0; q < 2; q++) {
        xb_hw h = hw_(q ? "[tile]\nrows = 16\ncols = 16\n[mapping]\nrearrange = sorted\n"
                        : "[tile]\nrows = 16\ncols = 16\n[mapping]\nrearrange = round-robin\n");
        xb_xnet *xn = xnet_(&h, m, 1, x);
        const int *perm = xb_xnet_layer_perm(xn, 0, 0);
        if (q) {
            for (int p = 0; p < 40; p++) assert_int_equal(perm[p], rank[p]);
        } else { /* ranks 0,1,2 head the three tiles; rank 3 is tile 0's second; ranks 24.. fill tiles 0 and 1 */
            int pos[40];
            for (int p = 0; p < 40; p++) pos[perm[p]] = p;
            for (int k = 0; k < 24; k++) assert_int_equal(pos[rank[k]], (k % 3) * 16 + k / 3);
            for (int k = 24; k < 40; k++) assert_int_equal(pos[rank[k]], ((k - 24) % 2) * 16 + 8 + (k - 24) / 2);
        }
        /* cells below mid-conductance: every weight's unused sign cell, and the used one where |w| < s/2 */
        xb_xlayer_stats s;
        xb_xnet_layer_stats(xn, 0, &s);
        double mx = 0;
        for (int i = 0; i < 800; i++) mx = fmax(mx, fabs(w[i]));
        int64_t low = 800;
        for (int i = 0; i < 800; i++) low += fabs(w[i]) / mx < 0.5;
        assert_int_equal(s.cells_low, low);
        assert_int_equal(s.cells_used, 1600);
        xb_xnet_free(xn);
    }
    /* an unknown order, and on-chip training, are refused */
    xb_hw hb;
    const char bad[] = "[mapping]\nrearrange = shuffle\n";
    xbt_assert_error(xb_hw_parse_string(bad, sizeof bad - 1, "bad.cfg", &hb), XB_ERR_CONFIG, "bad.cfg", "rearrange");
    xb_hw h = hw_("[tile]\nrows = 16\ncols = 16\n[mapping]\nrearrange = round-robin\n");
    xb_xnet *xn;
    assert_int_equal(xb_xnet_init(&h, m, &xn), XB_OK);
    xbt_assert_error(xb_xnet_onchip_init(xn), XB_ERR_UNSUPPORTED, "rearrange", "on-chip");
    xb_xnet_free(xn);
    xb_model_free(m);
}

/* lin's weights with column segments dropped (XCS: in row tile 0 outputs 3..20, in row tile 1 outputs 0..9
 * and 30..39) or row segments dropped (XRS: in column tile 0 inputs 2..11, in tile 2 all but inputs 0..3);
 * every block keeps a weight of the layer's largest magnitude, so that each block's own clip scale is the
 * layer's */
static void sparse_w_(int mode, float *w) {
    xb_rng r;
    xb_rng_seed(&r, 11, "w");
    for (int i = 0; i < 800; i++) w[i] = (float)(0.5 * xb_rng_normal(&r));
    for (int i = 0; i < 800; i++) w[i] = fmaxf(-2.5f, fminf(2.5f, w[i]));
    for (int j = 0; j < 40; j++)
        for (int i = 0; i < 20; i++) {
            int drop;
            if (mode == 1) drop = (i < 16 && j >= 3 && j <= 20) || (i >= 16 && (j <= 9 || j >= 30));
            else drop = (j < 16 && i >= 2 && i <= 11) || (j >= 32 && i >= 4);
            if (drop) w[j * 20 + i] = 0;
        }
    /* the largest magnitude, 3, in each block */
    if (mode == 1) { w[0 * 20 + 0] = 3; w[25 * 20 + 0] = -3; w[12 * 20 + 17] = 3; }
    else { w[0 * 20 + 0] = 3; w[20 * 20 + 5] = -3; w[35 * 20 + 1] = 3; }
}

static void test_pack(void **state) {
    (void)state;
    const int n = 5;
    xb_rng r;
    xb_rng_seed(&r, 12, "x");
    float x[100], dl[200];
    for (int i = 0; i < 100; i++) x[i] = (float)fabs(xb_rng_normal(&r));
    for (int i = 0; i < 200; i++) dl[i] = (float)xb_rng_normal(&r);
    for (int mode = 1; mode <= 2; mode++) {
        float w[800];
        sparse_w_(mode, w);
        /* ideal: the float product of the sparse weights */
        char t[1024];
        snprintf(t, sizeof t, "[tile]\nrows = 16\ncols = 16\n[mapping]\npack = %s\n", mode == 1 ? "columns" : "rows");
        xb_hw hi = hw_(t);
        xb_model *m = lin_(w);
        float ys[200], y[200], dx[100], dw[800];
        assert_int_equal(xb_model_set_batch(m, n), XB_OK);
        xb_model_train_mode(m, 0);
        assert_int_equal(xb_model_forward(m, n, x, ys, NULL), XB_OK);
        xb_xnet *xn = xnet_(&hi, m, n, x);
        xb_xlayer_stats st;
        xb_xnet_layer_stats(xn, 0, &st);
        /* dense: 2 x 3 tiles; columns: row tile 0 keeps 22 outputs (2 tiles), row tile 1 keeps 20 (2 tiles); rows:
         * column tile 0 keeps 10 inputs, 1 keeps 20, 2 keeps 4 (1 + 2 + 1 tiles) */
        assert_int_equal(st.tiles, 4);
        assert_int_equal(st.rows_out, 40);
        run_(xn, m, n, x, dl, y, dx, dw);
        if (!(rel_(y, ys, 200) < 1e-5)) fail_msg("pack %d, ideal: %.3e from the float product", mode, rel_(y, ys, 200));
        const float *we = xb_xnet_effective_weights(xn, 0, 0);
        if (!(rel_(we, w, 800) < 1e-6)) fail_msg("pack %d, ideal effective weights: %.3e", mode, rel_(we, w, 800));
        xb_xnet_free(xn);
        /* parasitic, ADCs: the blocks as separate layers */
        snprintf(t, sizeof t, "%s[input]\ndac_bits = 6\n[output]\nadc_bits = 6\n[mapping]\npack = %s\n", parasitic,
                 mode == 1 ? "columns" : "rows");
        xb_hw hp = hw_(t);
        xn = xnet_(&hp, m, n, x);
        run_(xn, m, n, x, dl, y, dx, dw);
        float yr[200] = {0}, dxr[100] = {0}, dwr[800] = {0};
        for (int b = 0; b < 3 - (mode == 1); b++) {
            int outs[40], ins[20], no = 0, ni = 0; /* the block's outputs and inputs, as pack builds them */
            if (mode == 1) {
                const int i0 = 16 * b, m_ = b ? 4 : 16;
                for (int i = 0; i < m_; i++) ins[ni++] = i0 + i;
                for (int j = 0; j < 40; j++) {
                    int live = 0;
                    for (int i = 0; i < m_; i++) live |= w[j * 20 + i0 + i] != 0;
                    if (live) outs[no++] = j;
                }
            } else {
                const int j0 = 16 * b, nj = b < 2 ? 16 : 8;
                for (int j = 0; j < nj; j++) outs[no++] = j0 + j;
                for (int i = 0; i < 20; i++) {
                    int live = 0;
                    for (int j = 0; j < nj; j++) live |= w[(j0 + j) * 20 + i] != 0;
                    if (live) ins[ni++] = i;
                }
            }
            char cfg[256];
            snprintf(cfg, sizeof cfg, "[net]\nname = b\ninput = 1x1x%d\nclasses = %d\n[flatten f]\n[linear fc]\n"
                     "out_features = %d\nbias = false\n", ni, no, no);
            xb_model *mb;
            assert_int_equal(xb_model_load_text(cfg, strlen(cfg), "b.cfg", 1, &mb), XB_OK);
            float *wb = xb_model_params(mb), xb[100], dlb[200], yb[200], dxb[100];
            for (int p = 0; p < no; p++)
                for (int q = 0; q < ni; q++) wb[p * ni + q] = w[outs[p] * 20 + ins[q]];
            for (int j = 0; j < n; j++) {
                for (int q = 0; q < ni; q++) xb[j * ni + q] = x[j * 20 + ins[q]];
                for (int p = 0; p < no; p++) dlb[j * no + p] = dl[j * 40 + outs[p]];
            }
            snprintf(t, sizeof t, "%s[input]\ndac_bits = 6\n[output]\nadc_bits = 6\n", parasitic);
            xb_hw hb = hw_(t);
            assert_int_equal(xb_model_set_batch(mb, n), XB_OK);
            xb_xnet *xbn;
            if (xb_xnet_init(&hb, mb, &xbn) != XB_OK) fail_msg("init: %s", xb_last_error());
            assert_int_equal(xb_xnet_program(xbn, 5), XB_OK);
            /* the packed block calibrated its ranges on its own inputs: so does this one */
            assert_int_equal(xb_xnet_calibrate(xbn, n, xb), XB_OK);
            float dwb[800];
            xb_xnet_attach(xbn);
            xb_model_train_mode(mb, 0);
            xb_model_keep_graph(mb, 1);
            assert_int_equal(xb_model_forward(mb, n, xb, yb, NULL), XB_OK);
            xb_model_zero_grad(mb);
            assert_int_equal(xb_model_backward_from(mb, n, dlb, 1, dxb), XB_OK);
            memcpy(dwb, xb_model_grads(mb), sizeof(float) * (size_t)no * ni);
            xb_xnet_detach(xbn);
            for (int j = 0; j < n; j++) {
                for (int p = 0; p < no; p++) yr[j * 40 + outs[p]] += yb[j * no + p];
                for (int q = 0; q < ni; q++) dxr[j * 20 + ins[q]] += dxb[j * ni + q];
            }
            for (int p = 0; p < no; p++)
                for (int q = 0; q < ni; q++) dwr[outs[p] * 20 + ins[q]] += dwb[p * ni + q];
            xb_xnet_free(xbn);
            xb_model_free(mb);
        }
        const double ey = rel_(y, yr, 200), ex = rel_(dx, dxr, 100), ew = rel_(dw, dwr, 800);
        if (getenv("XBT_VERBOSE"))
            fprintf(stderr, "  pack %s, parasitic + ADC: outputs %.2e, dx %.2e, dW %.2e; vs float %.2e\n",
                    mode == 1 ? "columns" : "rows", ey, ex, ew, rel_(y, ys, 200));
        if (!(ey < 1e-5 && ex < 1e-5 && ew < 1e-5))
            fail_msg("pack %d: packed vs its blocks as layers: outputs %.3e, dx %.3e, dW %.3e", mode, ey, ex, ew);
        /* a dropped weight that came back is refused */
        xb_model_params(m)[mode == 1 ? 5 * 20 + 1 : 3 * 20 + 5] = 0.5f;
        xbt_assert_error(xb_xnet_program(xn, 5), XB_ERR_STATE, "fc", "pack");
        xb_xnet_free(xn);
        xb_model_free(m);
    }
}

/* crossbar-aware pruning: the group-lasso gradient against central differences of the penalty, the cut zeroes
 * every layer's weakest segments (by RMS) and the mask holds them, a resumed mask finds them, and the crossbars
 * the report counts for the packed layers are those the packed network programs */
static void test_xprune(void **state) {
    (void)state;
    xb_rng r;
    xb_rng_seed(&r, 21, "w");
    float w[800];
    for (int i = 0; i < 800; i++) w[i] = (float)(xb_rng_normal(&r) * (1 + (i % 20) / 4));
    for (int kind = XB_XP_XCS; kind <= XB_XP_XRS; kind++) {
        xb_model *m = lin_(w);
        xb_hw h = hw_("[tile]\nrows = 16\ncols = 16\n");
        xb_xprune *p;
        assert_int_equal(xb_xprune_init(m, &h, kind, 0.01, &p), XB_OK);
        xb_model_zero_grad(m);
        xb_xprune_grad(p, m);
        float *v = xb_model_params(m);
        const float *g = xb_model_grads(m);
        for (int e = 0; e < 800; e += 37) {
            const float v0 = v[e], hh = 1e-3f;
            v[e] = v0 + hh;
            const double lp = xb_xprune_lasso(p, m);
            v[e] = v0 - hh;
            const double lm = xb_xprune_lasso(p, m);
            v[e] = v0;
            const double fd = (lp - lm) / (2.0 * hh);
            if (!(fabs(fd - g[e]) < 1e-3 * fmax(fabs(fd), 1e-3))) fail_msg("group lasso gradient %d: %.6g vs %.6g", e, g[e], fd);
        }
        /* the cut: 40% of the segments, the weakest; XCS segments are (row tile, output), XRS (column tile, input) */
        assert_int_equal(xb_xprune_cut(p, m, 0.4), XB_OK);
        const int nseg = kind == XB_XP_XCS ? 2 * 40 : 3 * 20;
        double rms[120];
        int zero[120], nz = 0;
        for (int s = 0; s < nseg; s++) {
            double q = 0, q0 = 0;
            int n = 0, allz = 1;
            for (int e = 0; e < 800; e++) {
                const int j = e / 20, i = e % 20;
                const int in = kind == XB_XP_XCS ? (s / 40 == i / 16 && s % 40 == j) : (s / 20 == j / 16 && s % 20 == i);
                if (!in) continue;
                q += (double)w[e] * w[e];
                n++;
                allz &= v[e] == 0;
                q0 += (double)v[e] * v[e];
            }
            rms[s] = sqrt(q / n);
            zero[s] = allz;
            nz += allz;
            if (!allz) assert_true(q0 > 0);
        }
        assert_int_equal(nz, (int)floor(0.4 * nseg));
        for (int a = 0; a < nseg; a++) /* every cut segment was weaker than every kept one */
            for (int b = 0; b < nseg; b++)
                if (zero[a] && !zero[b]) assert_true(rms[a] <= rms[b]);
        /* a step's update cannot bring them back */
        for (int e = 0; e < 800; e++) v[e] += 0.01f;
        xb_xprune_apply(p, m);
        int nz2 = 0;
        for (int s = 0; s < nseg; s++) {
            int allz = 1;
            for (int e = 0; e < 800; e++) {
                const int j = e / 20, i = e % 20;
                const int in = kind == XB_XP_XCS ? (s / 40 == i / 16 && s % 40 == j) : (s / 20 == j / 16 && s % 20 == i);
                if (in) allz &= v[e] == 0;
            }
            nz2 += allz;
            if (zero[s]) assert_true(allz);
        }
        assert_int_equal(nz2, nz);
        /* a resumed run finds the same mask */
        xb_xprune *p2;
        assert_int_equal(xb_xprune_init(m, &h, kind, 0.01, &p2), XB_OK);
        xb_xprune_mask_from_zeros(p2, m);
        char a[4096], b[4096];
        FILE *fa = fmemopen(a, sizeof a, "w"), *fb = fmemopen(b, sizeof b, "w");
        xb_xprune_print(p, m, fa, 1);
        xb_xprune_print(p2, m, fb, 1);
        fclose(fa);
        fclose(fb);
        assert_string_equal(a, b);
        /* the packed network programs the crossbars the report counts */
        char t[256];
        snprintf(t, sizeof t, "[tile]\nrows = 16\ncols = 16\n[mapping]\npack = %s\n", kind == XB_XP_XCS ? "columns" : "rows");
        xb_hw hp = hw_(t);
        float x[20] = {1};
        xb_xnet *xn = xnet_(&hp, m, 1, x);
        xb_xlayer_stats st;
        xb_xnet_layer_stats(xn, 0, &st);
        const char *q = strstr(a, "\"crossbars_packed\":");
        assert_non_null(q);
        assert_int_equal(atoll(q + strlen("\"crossbars_packed\":")), st.arrays);
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  %s: %s\n", xb_xprune_names[kind], a);
        xb_xnet_free(xn);
        xb_xprune_free(p2);
        xb_xprune_free(p);
        xb_model_free(m);
    }
    xb_model *m = lin_(w);
    xb_hw h = hw_("[tile]\nrows = 16\ncols = 16\n");
    xb_xprune *p;
    xbt_assert_error(xb_xprune_init(m, &h, 3, 0, &p), XB_ERR_ARG, "crossbar-aware", "xcs or xrs");
    assert_int_equal(xb_xprune_init(m, &h, XB_XP_XCS, 0, &p), XB_OK);
    xbt_assert_error(xb_xprune_cut(p, m, 1.0), XB_ERR_ARG, "crossbar-aware", "target");
    xb_xprune_free(p);
    xb_model_free(m);
}

/* fixed weight scales: a scale above max |w| maps the same weights onto the lower part of the conductance range
 * (more cells below mid-conductance; on an ideal crossbar the same product), one below it clips; the scales
 * a weight-constrained run saved are the pre-constraint maxima */
static void test_weight_scales(void **state) {
    (void)state;
    xb_rng r;
    xb_rng_seed(&r, 31, "w");
    float w[800], x[20 * 3], y0[120], y1[120], y2[120];
    for (int i = 0; i < 800; i++) w[i] = (float)xb_rng_normal(&r);
    for (int i = 0; i < 60; i++) x[i] = (float)xb_rng_normal(&r);
    xb_model *m = lin_(w);
    double mx = 0;
    for (int i = 0; i < 800; i++) mx = fmax(mx, fabs(w[i]));
    xb_hw h = hw_("[tile]\nrows = 16\ncols = 16\n");
    int64_t low[3];
    float *ys[3] = {y0, y1, y2};
    const double sc[3] = {0, 2 * mx, 0.5 * mx};
    for (int q = 0; q < 3; q++) {
        xb_xnet *xn;
        assert_int_equal(xb_xnet_init(&h, m, &xn), XB_OK);
        assert_int_equal(xb_xnet_set_weight_scales(xn, &sc[q]), XB_OK);
        assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
        xb_xlayer_stats st;
        xb_xnet_layer_stats(xn, 0, &st);
        low[q] = st.cells_low;
        assert_true(fabs(st.w_scale - (q ? sc[q] : mx)) < 1e-6 * mx);
        assert_int_equal(xb_model_set_batch(m, 3), XB_OK);
        xb_xnet_attach(xn);
        xb_model_train_mode(m, 0);
        assert_int_equal(xb_model_forward(m, 3, x, ys[q], NULL), XB_OK);
        xb_xnet_detach(xn);
        xb_xnet_free(xn);
    }
    assert_true(rel_(y1, y0, 120) < 1e-5);  /* a wider range, the same product */
    assert_true(rel_(y2, y0, 120) > 1e-2);  /* a narrower one clips */
    assert_true(low[1] > low[0] && low[2] < low[0]);
    /* refused: a negative scale, and per-output scales */
    xb_xnet *xn;
    assert_int_equal(xb_xnet_init(&h, m, &xn), XB_OK);
    const double bad = -1;
    xbt_assert_error(xb_xnet_set_weight_scales(xn, &bad), XB_ERR_ARG, "weight scale", "-1");
    xb_xnet_free(xn);
    xb_hw hc = hw_("[tile]\nrows = 16\ncols = 16\n[mapping]\nscale = column\n");
    assert_int_equal(xb_xnet_init(&hc, m, &xn), XB_OK);
    xbt_assert_error(xb_xnet_set_weight_scales(xn, &sc[1]), XB_ERR_UNSUPPORTED, "scale", "column");
    xb_xnet_free(xn);
    /* a weight-constrained run's pre-constraint maxima */
    xb_wct *wc;
    assert_int_equal(xb_wct_init(m, 90, 0, &wc), XB_OK);
    xb_wct_clip(wc, m);
    char path[600];
    snprintf(path, sizeof path, "%s/wct-scales.json", xbt_tmpdir());
    assert_int_equal(xb_wct_save(wc, m, path), XB_OK);
    double s0 = 0;
    assert_int_equal(xb_wct_scales_load(path, m, &s0), XB_OK);
    assert_true(s0 == mx);
    xb_wct_free(wc);
    xb_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_undone_exactly),
        cmocka_unit_test(test_ideal_unchanged),
        cmocka_unit_test(test_orders_and_low_share),
        cmocka_unit_test(test_pack),
        cmocka_unit_test(test_xprune),
        cmocka_unit_test(test_weight_scales),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
