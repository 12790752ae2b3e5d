/* test_xtrain.c -- the crossbar as a differentiable operator: the ideal crossbar equals the float layer
 * in forward, backward (dX and dW) and after updates (lenet5, resnet20, several batch sizes); a
 * changed weight never runs silently on old tiles; the DAC's straight-through mask; training only the
 * batchnorm affine leaves every other parameter bit for bit. */
#include "testutil.h"
#include "xb_xbar.h"


static xb_hw hw_(const char *text) {
    xb_hw h;
    if (xb_hw_parse_string(text, strlen(text), "test.cfg", &h) != XB_OK) fail_msg("config: %s", xb_last_error());
    return h;
}


static const char ideal_text[] = "[tile]\nrows = 64\ncols = 64\n[circuit]\nsolver = none\n";

/* ||a - b|| / ||b|| over n floats */
static double rel_norm_(const float *a, const float *b, int64_t n) {
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

/* worst relative norm error over the parameter tensors of gradients or parameters */
static double worst_param_(const xb_model *m, const float *a, const float *b, const char **which) {
    double w = 0;
    for (int i = 0; i < xb_model_n_params(m); i++) {
        const xb_param *p = xb_model_param(m, i);
        if (!p->trainable) continue;
        double e = rel_norm_(a + p->offset, b + p->offset, p->numel);
        if (e > w) { w = e; *which = p->name; }
    }
    return w;
}

/* One forward + backward (training mode) of the float model and of the same model through the ideal
 * crossbar (hardware backward): logits, every gradient and the input gradient agree to float rounding. */
static void ideal_step_(const char *model, int n, double tol) {
    xb_model *m;
    assert_int_equal(xb_model_load(model, 7, &m), XB_OK);
    const int nx = n * 3 * 32 * 32, cl = xb_model_classes(m);
    const int64_t np = xb_model_n_trainable(m);
    float *x = malloc(sizeof(float) * nx), *dx[2], *g[2], *lg[2], *dl = malloc(sizeof(float) * n * cl);
    for (int q = 0; q < 2; q++) {
        dx[q] = malloc(sizeof(float) * nx);
        g[q] = malloc(sizeof(float) * np);
        lg[q] = malloc(sizeof(float) * n * cl);
    }
    int32_t *lab = malloc(sizeof(int32_t) * n);
    xb_rng r;
    xb_rng_seed(&r, 3, "x");
    for (int i = 0; i < nx; i++) x[i] = (float)xb_rng_normal(&r);
    for (int i = 0; i < n; i++) lab[i] = (int32_t)xb_rng_below(&r, (uint64_t)cl);
    float *buf = malloc(sizeof(float) * (xb_model_n_buffer(m) + 1));
    memcpy(buf, xb_model_buffers(m), sizeof(float) * xb_model_n_buffer(m));
    xb_hw hw = hw_(ideal_text);
    xb_xnet *xn;
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    for (int q = 0; q < 2; q++) {
        memcpy(xb_model_buffers(m), buf, sizeof(float) * xb_model_n_buffer(m));
        if (q == 1) {
            assert_int_equal(xb_xnet_init(&hw, m, &xn), XB_OK);
            assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
            xb_xnet_attach(xn);
        }
        xb_model_train_mode(m, 1);
        assert_int_equal(xb_model_forward(m, n, x, lg[q], NULL), XB_OK);
        assert_int_equal(xb_model_loss_grad(m, n, lab, 0.0f, NULL, NULL, dl), XB_OK);
        xb_model_zero_grad(m);
        assert_int_equal(xb_model_backward_from(m, n, dl, 1, dx[q]), XB_OK);
        memcpy(g[q], xb_model_grads(m), sizeof(float) * np);
    }
    const char *which = "";
    double el = rel_norm_(lg[1], lg[0], (int64_t)n * cl), ex = rel_norm_(dx[1], dx[0], nx);
    double eg = worst_param_(m, g[1], g[0], &which);
    if (getenv("XBT_VERBOSE"))
        fprintf(stderr, "  %s batch %d: logits %.2e, dx %.2e, worst gradient %.2e (%s)\n", model, n, el, ex, eg, which);
    if (!(el < tol && ex < tol && eg < tol))
        fail_msg("%s batch %d: ideal crossbar vs float: logits %.2e, dx %.2e, gradient %.2e (%s) > %.0e", model, n, el,
                 ex, eg, which, tol);
    xb_xnet_free(xn);
    for (int q = 0; q < 2; q++) { free(dx[q]); free(g[q]); free(lg[q]); }
    free(x); free(dl); free(lab); free(buf);
    xb_model_free(m);
}

static void test_ideal_forward_backward(void **state) {
    (void)state;
    ideal_step_("lenet5", 1, 1e-5);
    ideal_step_("lenet5", 16, 1e-5);
    ideal_step_("resnet20", 2, 1e-4);
    if (!xbt_sanitized()) ideal_step_("resnet20", 24, 1e-4);
}

/* Training: xbar train --hw ideal --hw-mode aware gives the float run's weights to float rounding. */
static void ideal_train_(const char *model, int batch, int steps, double tol, double tol_tensor) {
    xb_dataset d = xbt_synthetic_cifar(batch * steps);
    xb_train_opts o = xb_train_opts_default();
    o.batch = batch;
    o.steps = steps;
    o.epochs = 0;
    o.progress = 0;
    o.lr = 0.05;
    xb_model *mf, *mh;
    assert_int_equal(xb_model_load(model, 5, &mf), XB_OK);
    assert_int_equal(xb_model_load(model, 5, &mh), XB_OK);
    xb_train_result rf, rh;
    assert_int_equal(xb_train(mf, &d, NULL, &o, &rf), XB_OK);
    xb_hw hw = hw_(ideal_text);
    xb_xtrain_opts xo = xb_xtrain_opts_default();
    if (xb_xtrain(mh, &hw, &d, NULL, &o, &xo, &rh, NULL) != XB_OK) fail_msg("xtrain: %s", xb_last_error());
    assert_int_equal(rh.steps_done, steps);
    const char *which = "";
    double e = worst_param_(mf, xb_model_params(mh), xb_model_params(mf), &which);
    double eb = rel_norm_(xb_model_buffers(mh), xb_model_buffers(mf), xb_model_n_buffer(mf));
    double ea = rel_norm_(xb_model_params(mh), xb_model_params(mf), xb_model_n_trainable(mf));
    if (getenv("XBT_VERBOSE"))
        fprintf(stderr, "  %s batch %d, %d steps: all weights %.2e, worst tensor %.2e (%s), buffers %.2e\n", model, batch,
                steps, ea, e, which, eb);
    /* a tensor that starts at zero (batchnorm beta) holds only the steps' updates, whose sums cancel: its
     * own relative error may exceed the whole vector's by orders of magnitude */
    if (!(ea < tol && eb < tol && e < tol_tensor))
        fail_msg("%s: weights after %d steps through the ideal crossbar differ from float by %.2e (worst tensor %.2e, "
                 "%s), buffers %.2e", model, steps, ea, e, which, eb);
    xb_model_free(mf);
    xb_model_free(mh);
    xb_dataset_free(&d);
}

static void test_ideal_training(void **state) {
    (void)state;
    ideal_train_("lenet5", 8, 4, 1e-5, 1e-4);
    ideal_train_("resnet20", xbt_sanitized() ? 4 : 16, 3, 2e-5, 5e-3);
}

/* Changing a weight after programming: the crossbar refuses the forward (XB_ERR_STATE naming the
 * layer) instead of computing with the old tiles; programming again makes it run and changes it. */
static void test_stale_weights(void **state) {
    (void)state;
    xb_model *m;
    assert_int_equal(xb_model_load("lenet5", 2, &m), XB_OK);
    xb_hw hw = hw_(ideal_text);
    xb_xnet *xn;
    assert_int_equal(xb_xnet_init(&hw, m, &xn), XB_OK);
    /* calls in the wrong order are errors that say what to do, not aborts */
    float x1[3 * 32 * 32] = {0};
    assert_int_equal(xb_model_forward(m, 1, x1, NULL, NULL), XB_ERR_STATE);
    assert_non_null(strstr(xb_last_error(), "xb_model_set_batch"));
    assert_int_equal(xb_xnet_calibrate(xn, 1, x1), XB_ERR_STATE);
    assert_int_equal(xb_xnet_fold(xn, 1), XB_ERR_STATE);
    xb_xnet_attach(xn);
    assert_int_equal(xb_model_set_batch(m, 1), XB_OK);
    assert_int_equal(xb_model_forward(m, 1, x1, NULL, NULL), XB_ERR_STATE); /* not programmed */
    assert_non_null(strstr(xb_last_error(), "xb_xnet_program"));
    xb_xnet_detach(xn);
    assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
    xb_xnet_attach(xn);
    const int n = 2;
    float x[2 * 3 * 32 * 32], y1[20], y2[20];
    xb_rng r;
    xb_rng_seed(&r, 1, "x");
    for (int i = 0; i < n * 3 * 32 * 32; i++) x[i] = (float)xb_rng_normal(&r);
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    xb_model_train_mode(m, 0);
    assert_int_equal(xb_model_forward(m, n, x, y1, NULL), XB_OK);
    assert_true(xb_xnet_current(xn, 1));
    const xb_param *p = xb_model_find_param(m, "conv2.weight");
    xb_model_params(m)[p->offset + 3] += 0.5f;
    assert_false(xb_xnet_current(xn, 1));
    assert_int_equal(xb_model_forward(m, n, x, y2, NULL), XB_ERR_STATE);
    assert_non_null(strstr(xb_last_error(), "conv2"));
    assert_true(xb_xnet_stale_refusals(xn) == 1);
    assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
    assert_int_equal(xb_model_forward(m, n, x, y2, NULL), XB_OK);
    assert_true(memcmp(y1, y2, sizeof y1) != 0);
    xb_xnet_free(xn);
    xb_model_free(m);
}

/* The DAC's straight-through gradient: zero exactly where |x| exceeded the input range, W_eff^T dy
 * elsewhere; the weight gradient uses the quantized input the tiles saw. */
static void test_dac_ste(void **state) {
    (void)state;
    static const char cfg[] = "[net]\nname = one\ninput = 1x1x6\nclasses = 3\n[flatten f]\n[linear fc]\n"
                              "out_features = 3\nbias = false\n";
    char path[512];
    xbt_write_file(xbt_path(path, sizeof path, "one.cfg"), cfg, sizeof cfg - 1);
    xb_model *m;
    assert_int_equal(xb_model_load(path, 1, &m), XB_OK);
    xb_hw hw = hw_("[tile]\nrows = 8\ncols = 8\nmap_first = 1\nmap_last = 1\n[circuit]\nsolver = none\n"
                   "[input]\ndac_bits = 3\ninput_range = fixed\ninput_full_scale = 1.0\n");
    xb_xnet *xn;
    assert_int_equal(xb_xnet_init(&hw, m, &xn), XB_OK);
    assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
    xb_mm_op op = xb_xnet_op(xn);
    const float *w = xb_model_params(m) + xb_model_find_param(m, "fc.weight")->offset;
    float x[6] = {0.3f, -1.5f, 0.99f, 2.0f, -0.2f, 0.0f}, dy[3] = {1.0f, -2.0f, 0.5f}, dx[6], dw[18] = {0};
    xb_mm_call c = {0, 0, 3, 6, 1, w, 1, 1};
    assert_int_equal(op.backward_input(op.ctx, &c, x, dy, dx), XB_OK);
    const float *we = xb_xnet_effective_weights(xn, 0, 0);
    for (int i = 0; i < 6; i++) {
        double want = fabsf(x[i]) > 1.0f ? 0.0 : (double)we[i] * dy[0] + (double)we[6 + i] * dy[1] + (double)we[12 + i] * dy[2];
        if (fabs(dx[i] - want) > 1e-6) fail_msg("dx[%d] = %g, want %g", i, dx[i], want);
    }
    assert_int_equal(op.backward_weight(op.ctx, &c, x, dy, dw), XB_OK);
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 6; i++) {
            float q = fminf(rintf(fabsf(x[i]) * 7) / 7, 1.0f);
            double want = (double)dy[j] * copysignf(q, x[i]);
            if (fabs(dw[j * 6 + i] - want) > 1e-6) fail_msg("dw[%d][%d] = %g, want %g", j, i, dw[j * 6 + i], want);
        }
    xb_xnet_free(xn);

    /* input_scaling = vector: each column's own max |x| is its DAC's range, so nothing clips (dx unmasked),
     * and the forward and the weight gradient read the same quantized columns, written out here */
    hw = hw_("[tile]\nrows = 8\ncols = 8\nmap_first = 1\nmap_last = 1\n[circuit]\nsolver = none\n"
             "[input]\ndac_bits = 3\ninput_scaling = vector\n");
    assert_int_equal(xb_xnet_init(&hw, m, &xn), XB_OK);
    assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
    op = xb_xnet_op(xn);
    we = xb_xnet_effective_weights(xn, 0, 0);
    /* two columns (6 x 2, row-major): column 0 spans 2.0, column 1 spans 0.35 */
    float x2[12] = {0.3f, 0.1f, -1.5f, -0.35f, 0.99f, 0.2f, 2.0f, 0.05f, -0.2f, -0.12f, 0.0f, 0.3f};
    float dy2[6] = {1.0f, 0.5f, -2.0f, 0.25f, 0.5f, -1.0f}, dx2[12], dw2[18] = {0}, y2[6], xq[12];
    xb_mm_call c2 = {0, 0, 3, 6, 2, w, 1, 1};
    for (int col = 0; col < 2; col++) {
        float mx = 0;
        for (int i = 0; i < 6; i++) mx = fmaxf(mx, fabsf(x2[i * 2 + col]));
        const float st = mx / 7.0f;
        for (int i = 0; i < 6; i++) xq[i * 2 + col] = copysignf(rintf(fabsf(x2[i * 2 + col]) / st) * st, x2[i * 2 + col]);
    }
    assert_int_equal(op.forward(op.ctx, &c2, x2, y2), XB_OK);
    assert_int_equal(op.backward_input(op.ctx, &c2, x2, dy2, dx2), XB_OK);
    assert_int_equal(op.backward_weight(op.ctx, &c2, x2, dy2, dw2), XB_OK);
    for (int j = 0; j < 3; j++)
        for (int col = 0; col < 2; col++) {
            double want = 0;
            for (int i = 0; i < 6; i++) want += (double)we[j * 6 + i] * xq[i * 2 + col];
            if (fabs(y2[j * 2 + col] - want) > 1e-5) fail_msg("vector scaling: y[%d][%d] = %g, want %g", j, col, y2[j * 2 + col], want);
        }
    for (int i = 0; i < 6; i++)
        for (int col = 0; col < 2; col++) {
            double want = 0;
            for (int j = 0; j < 3; j++) want += (double)we[j * 6 + i] * dy2[j * 2 + col];
            if (fabs(dx2[i * 2 + col] - want) > 1e-5) fail_msg("vector scaling: dx[%d][%d] = %g, want %g", i, col, dx2[i * 2 + col], want);
        }
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 6; i++) {
            double want = (double)dy2[j * 2] * xq[i * 2] + (double)dy2[j * 2 + 1] * xq[i * 2 + 1];
            if (fabs(dw2[j * 6 + i] - want) > 1e-6) fail_msg("vector scaling: dw[%d][%d] = %g, want %g", j, i, dw2[j * 6 + i], want);
        }
    xb_xnet_free(xn);
    xb_model_free(m);
}

/* The ADC's straight-through gradient: each row tile's partial sum passes the gradient only where none of
 * its conversions saturated; the mask is computed here from the partial sums and the ADC's full scale. */
static void test_adc_ste(void **state) {
    (void)state;
    static const char cfg[] = "[net]\nname = lin12\ninput = 1x1x12\nclasses = 5\n[flatten f]\n[linear fc]\n"
                              "out_features = 5\nbias = false\n";
    char path[512];
    xbt_write_file(xbt_path(path, sizeof path, "lin12.cfg"), cfg, sizeof cfg - 1);
    xb_model *m;
    assert_int_equal(xb_model_load(path, 8, &m), XB_OK);
    const double fs_a = 6e-7; /* a low full scale, so that some partial sums saturate */
    char text[600];
    snprintf(text, sizeof text, "[tile]\nrows = 8\ncols = 16\nmap_first = 1\nmap_last = 1\n[circuit]\nsolver = none\n"
             "[input]\ninput_range = fixed\ninput_full_scale = 2.0\nv_read_v = 0.2\n[output]\nadc_bits = 12\n"
             "adc_range = fixed\nadc_full_scale_a = %g\n", fs_a);
    xb_hw hw = hw_(text);
    xb_xnet *xn;
    assert_int_equal(xb_xnet_init(&hw, m, &xn), XB_OK);
    assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
    xb_mm_op op = xb_xnet_op(xn);
    const float *w = xb_model_params(m) + xb_model_find_param(m, "fc.weight")->offset;
    const float *we = xb_xnet_effective_weights(xn, 0, 0);
    enum { K = 12, J = 5, NC = 40 };
    float x[K * NC], y[J * NC], dy[J * NC], dx[K * NC], dw[J * K] = {0};
    xb_rng r;
    xb_rng_seed(&r, 12, "x");
    for (int i = 0; i < K * NC; i++) x[i] = (float)(1.5 * xb_rng_normal(&r));
    for (int i = 0; i < J * NC; i++) dy[i] = (float)xb_rng_normal(&r);
    xb_mm_call c = {0, 0, J, K, NC, w, 1, 7};
    assert_int_equal(op.forward(op.ctx, &c, x, y), XB_OK);
    assert_int_equal(op.backward_input(op.ctx, &c, x, dy, dx), XB_OK);
    assert_int_equal(op.backward_weight(op.ctx, &c, x, dy, dw), XB_OK);
    /* threshold of a partial sum in weight x input units: full scale (code units) x_max s / qmax; signed
     * inputs run in two passes (the non-negative inputs, then the magnitudes of the negative ones), each
     * row tile's partial sum of a pass its own conversion */
    xb_map_geom g;
    assert_int_equal(xb_map_geom_init(&hw, J, K, &g), XB_OK);
    const double T = fs_a / (hw.v_read_v * g.g_unit_s) * 2.0 * xb_map_scale(&hw, J * K, w) / g.qmax;
    static int sat[2][2][J][NC], amb[2][2][J][NC];
    int nsat = 0, nok = 0;
    for (int t = 0; t < 2; t++)
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < J; j++)
                for (int col = 0; col < NC; col++) {
                    double ps = 0;
                    for (int i = 8 * t; i < (t ? K : 8); i++)
                        if ((x[i * NC + col] < 0) == pass) ps += (double)we[j * K + i] * fabsf(x[i * NC + col]);
                    sat[t][pass][j][col] = fabs(ps) >= T;
                    amb[t][pass][j][col] = fabs(fabs(ps) - T) < 0.01 * T;
                    nsat += sat[t][pass][j][col] && !amb[t][pass][j][col];
                    nok += !sat[t][pass][j][col] && !amb[t][pass][j][col];
                }
    if (getenv("XBT_VERBOSE")) fprintf(stderr, "  ADC STE: %d saturated conversions, %d not\n", nsat, nok);
    assert_true(nsat > 10 && nok > 10);
    int checked = 0;
    for (int i = 0; i < K; i++)
        for (int col = 0; col < NC; col++) {
            const int t = i >= 8, pass = x[i * NC + col] < 0;
            double want = 0;
            int skip = 0;
            for (int j = 0; j < J; j++) {
                skip |= amb[t][pass][j][col];
                if (!sat[t][pass][j][col]) want += (double)we[j * K + i] * dy[j * NC + col];
            }
            if (skip) continue;
            checked++;
            if (fabs(dx[i * NC + col] - want) > 1e-5 * (1 + fabs(want)))
                fail_msg("dx[%d][%d] = %g, want %g", i, col, dx[i * NC + col], want);
        }
    for (int j = 0; j < J; j++)
        for (int i = 0; i < K; i++) {
            const int t = i >= 8;
            double want = 0;
            int skip = 0;
            for (int col = 0; col < NC; col++) {
                const int pass = x[i * NC + col] < 0;
                skip |= amb[t][pass][j][col];
                if (!sat[t][pass][j][col]) want += (double)dy[j * NC + col] * x[i * NC + col];
            }
            if (!skip && fabs(dw[j * K + i] - want) > 1e-4 * (1 + fabs(want)))
                fail_msg("dw[%d][%d] = %g, want %g", j, i, dw[j * K + i], want);
        }
    assert_true(checked > K * NC / 2);
    /* a backward of another forward is refused */
    c.pass = 8;
    assert_int_equal(op.backward_input(op.ctx, &c, x, dy, dx), XB_ERR_STATE);
    xb_xnet_free(xn);
    xb_model_free(m);
}

/* --trainable bn: every parameter but batchnorm gamma and beta stays bit for bit; those move. */
static void test_trainable_bn(void **state) {
    (void)state;
    xb_dataset d = xbt_synthetic_cifar(32);
    xb_model *m;
    assert_int_equal(xb_model_load("vgg8", 3, &m), XB_OK);
    const int64_t np = xb_model_n_trainable(m);
    float *p0 = malloc(sizeof(float) * np);
    memcpy(p0, xb_model_params(m), sizeof(float) * np);
    uint8_t *fz = malloc((size_t)np);
    assert_int_equal(xb_model_freeze_mask(m, "bn", fz), XB_OK);
    assert_int_equal(xb_model_freeze_mask(m, "convs", fz), XB_ERR_ARG);
    assert_int_equal(xb_model_freeze_mask(m, "bn", fz), XB_OK);
    xb_train_opts o = xb_train_opts_default();
    o.batch = 16; o.steps = 2; o.epochs = 0; o.progress = 0; o.frozen = fz;
    xb_hw hw = hw_("[tile]\nrows = 64\ncols = 64\n[device]\nvariation = gaussian\nvariation_sigma = 0.1\n");
    xb_xtrain_opts xo = xb_xtrain_opts_default();
    xb_train_result res;
    if (xb_xtrain(m, &hw, &d, NULL, &o, &xo, &res, NULL) != XB_OK) fail_msg("xtrain: %s", xb_last_error());
    int64_t moved = 0, frozen_moved = 0;
    for (int64_t i = 0; i < np; i++) {
        int changed = memcmp(&p0[i], &xb_model_params(m)[i], sizeof(float)) != 0;
        if (fz[i]) frozen_moved += changed;
        else moved += changed;
    }
    assert_int_equal(frozen_moved, 0);
    assert_true(moved > 0);
    free(p0); free(fz);
    xb_model_free(m);
    xb_dataset_free(&d);
}

/* The backward read: with r_driver != r_sense the operator's input gradient goes through the effective
 * weights of the column-driven circuit, assembled here independently from the mapping's targets and
 * the solver's backward read of each array; with r_driver == r_sense they are the forward's. */
static void test_backward_read(void **state) {
    (void)state;
    static const char cfg[] = "[net]\nname = lin\ninput = 1x1x12\nclasses = 5\n[flatten f]\n[linear fc]\n"
                              "out_features = 5\nbias = false\n";
    char path[512];
    xbt_write_file(xbt_path(path, sizeof path, "lin.cfg"), cfg, sizeof cfg - 1);
    for (int same = 0; same < 2; same++) {
        xb_model *m;
        assert_int_equal(xb_model_load(path, 3, &m), XB_OK);
        char text[512];
        snprintf(text, sizeof text, "[tile]\nrows = 16\ncols = 16\nmap_first = 1\nmap_last = 1\n[mapping]\n"
                 "r_on_ohm = 2e3\nr_off_ohm = 2e4\n[circuit]\nr_wire_ohm = 5\nr_driver_ohm = %s\n"
                 "r_sense_ohm = 300\nsolver = exact\n", same ? "300" : "40");
        xb_hw hw = hw_(text);
        xb_xnet *xn;
        assert_int_equal(xb_xnet_init(&hw, m, &xn), XB_OK);
        assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
        const float *w = xb_model_params(m) + xb_model_find_param(m, "fc.weight")->offset;
        const float *wf = xb_xnet_effective_weights(xn, 0, 0), *wb = xb_xnet_effective_weights_bwd(xn, 0, 0);
        if (same) {
            assert_ptr_equal(wf, wb);
        } else {
            xb_map_geom g;
            assert_int_equal(xb_map_geom_init(&hw, 5, 12, &g), XB_OK);
            double s = xb_map_scale(&hw, 60, w);
            const int64_t RC = (int64_t)g.R * g.C;
            double *gt = malloc(sizeof(double) * g.arrays * RC), *eb = malloc(sizeof(double) * g.arrays * RC);
            xb_map_tile_targets(&hw, &g, w, s, NULL, 0, 0, gt);
            for (int a = 0; a < g.arrays; a++)
                assert_int_equal(xb_xbar_effective_backward(XB_SOLVE_EXACT, &hw.circuit, g.R, g.C, gt + a * RC,
                                                            eb + a * RC, NULL), XB_OK);
            double err = 0, ref = 0, dfb = 0;
            for (int j = 0; j < 5; j++) {
                int pa, pc, na, nc;
                xb_map_cell(&g, 0, 0, j, &pa, &pc);
                xb_map_cell(&g, 1, 0, j, &na, &nc);
                for (int i = 0; i < 12; i++) {
                    double want = s / g.qmax * (eb[pa * RC + (int64_t)pc * g.R + i] - eb[na * RC + (int64_t)nc * g.R + i]) /
                                  g.g_unit_s;
                    err = fmax(err, fabs(wb[j * 12 + i] - want));
                    ref = fmax(ref, fabs(want));
                    dfb = fmax(dfb, fabs(wb[j * 12 + i] - wf[j * 12 + i]));
                }
            }
            if (getenv("XBT_VERBOSE")) fprintf(stderr, "  backward weights: error %.2e of %.2e; forward differs by %.2e\n",
                                               err, ref, dfb);
            if (!(err < 1e-6 * ref)) fail_msg("backward effective weights off by %g (scale %g)", err, ref);
            if (!(dfb > 1e-3 * ref)) fail_msg("the backward read should differ from the forward here (%g)", dfb);
            free(gt); free(eb);
        }
        /* the operator's input gradient reads them */
        xb_mm_op op = xb_xnet_op(xn);
        float x[12], dy[5] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f}, dx[12];
        for (int i = 0; i < 12; i++) x[i] = 0.1f * (float)i;
        xb_mm_call c = {0, 0, 5, 12, 1, w, 1, 1};
        assert_int_equal(op.backward_input(op.ctx, &c, x, dy, dx), XB_OK);
        for (int i = 0; i < 12; i++) {
            double want = 0;
            for (int j = 0; j < 5; j++) want += (double)wb[j * 12 + i] * dy[j];
            if (fabs(dx[i] - want) > 1e-5 * (1 + fabs(want))) fail_msg("dx[%d] = %g, want %g", i, dx[i], want);
        }
        xb_xnet_free(xn);
        xb_model_free(m);
    }
}

/* On-chip training with an ideal device (linear, continuous, potentiation by sign) writes the
 * optimizer's step into the conductances exactly, within what a pair can hold: after one SGD step from
 * a fresh programming, every mapped weight read back is the float run's clamped to the layer's clip
 * scale [-s, s] (a pair at g_max cannot grow), every other parameter is the float run's. */
static void test_onchip_ideal(void **state) {
    (void)state;
    xb_dataset d = xbt_synthetic_cifar(32);
    xb_train_opts o = xb_train_opts_default();
    o.batch = 16; o.steps = 1; o.epochs = 0; o.progress = 0; o.lr = 0.05; o.momentum = 0;
    xb_model *mf, *mh;
    assert_int_equal(xb_model_load("lenet5", 5, &mf), XB_OK);
    assert_int_equal(xb_model_load("lenet5", 5, &mh), XB_OK);
    const int64_t np = xb_model_n_trainable(mf);
    float *w0 = malloc(sizeof(float) * np), *want = malloc(sizeof(float) * np);
    memcpy(w0, xb_model_params(mf), sizeof(float) * np);
    xb_train_result r;
    assert_int_equal(xb_train(mf, &d, NULL, &o, &r), XB_OK);
    memcpy(want, xb_model_params(mf), sizeof(float) * np);
    xb_hw hw = hw_("[tile]\nrows = 64\ncols = 64\nmap_first = 1\nmap_last = 1\n[circuit]\nsolver = none\n"
                   "[update]\npair_update = sign\n");
    int64_t clamped = 0;
    for (int i = 0; i < xb_model_n_mapped(mf); i++) {
        int p;
        xb_model_mapped_info(mf, i, NULL, &p, NULL, NULL);
        const xb_param *pr = xb_model_param(mf, p);
        double s = 0;
        for (int64_t q = 0; q < pr->numel; q++) s = fmax(s, fabs(w0[pr->offset + q]));
        for (int64_t q = 0; q < pr->numel; q++) {
            float *v = &want[pr->offset + q];
            if (fabs(*v) > s) { *v = (float)copysign(s, *v); clamped++; }
        }
    }
    xb_xtrain_opts xo = xb_xtrain_opts_default();
    xo.mode = XB_HWMODE_ONCHIP;
    xb_xtrain_stats xs;
    if (xb_xtrain(mh, &hw, &d, NULL, &o, &xo, &r, &xs) != XB_OK) fail_msg("onchip: %s", xb_last_error());
    const char *which = "";
    double e = worst_param_(mf, xb_model_params(mh), want, &which);
    if (getenv("XBT_VERBOSE"))
        fprintf(stderr, "  onchip ideal: weights %.2e (%s), %lld cell writes, %lld at g_max (%lld clamped in the test)\n",
                e, which, (long long)xs.updates.updates, (long long)xs.updates.clamped_gmax, (long long)clamped);
    if (!(e < 1e-5)) fail_msg("on-chip training with an ideal device differs from float by %.2e (%s)", e, which);
    assert_int_equal(xs.programs, 1);
    assert_int_equal(xs.solves, 1);
    assert_true(xs.updates.updates > 0 && xs.updates.clamped_gmin == 0 && xs.updates.clamped_gmax == clamped);
    free(w0); free(want);
    xb_model_free(mf);
    xb_model_free(mh);
    xb_dataset_free(&d);
}

/* On-chip training resumes bit for bit from a checkpoint and the conductance state written beside it
 * (write noise, non-linearity, read noise, parasitics with I-FCM distortion refreshes); and the device
 * model makes the weights differ from the float run's. */
static void onchip_resume_(const char *refresh) {
    xb_dataset d = xbt_synthetic_cifar(32);
    char text[1024];
    snprintf(text, sizeof text, "[tile]\nrows = 32\ncols = 32\n[mapping]\nr_on_ohm = 100e3\nr_off_ohm = 1e6\n"
             "[device]\nread_noise_sigma = 0.05\n[circuit]\nr_wire_ohm = 5\nr_driver_ohm = 500\n"
             "r_sense_ohm = 1000\nsolver = exact\n[update]\nmodel = txsim\nnonlinearity = 0.2\n"
             "write_noise = 2\nwrite_noise_sigma = 0.01\nrefresh_steps = 3\nrefresh_solver = %s\n", refresh);
    xb_hw hw = hw_(text);
    xb_xtrain_opts xo = xb_xtrain_opts_default();
    xo.mode = XB_HWMODE_ONCHIP;
    char da[512], db[512], sa[600], sb[600], ck[600];
    snprintf(da, sizeof da, "%s/oc-a-%s", xbt_tmpdir(), refresh);
    snprintf(db, sizeof db, "%s/oc-b-%s", xbt_tmpdir(), refresh);
    snprintf(sa, sizeof sa, "%s/device-state.safetensors", da);
    snprintf(sb, sizeof sb, "%s/device-state.safetensors", db);
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", db);
    xb_train_opts o = xb_train_opts_default();
    o.batch = 8; o.epochs = 2; o.progress = 0; o.lr = 0.05; o.momentum = 0; o.schedule = XB_SCHED_CONST;
    xb_model *ma, *mb, *mf;
    assert_int_equal(xb_model_load("lenet5", 6, &ma), XB_OK);
    assert_int_equal(xb_model_load("lenet5", 6, &mb), XB_OK);
    assert_int_equal(xb_model_load("lenet5", 6, &mf), XB_OK);
    xb_train_result r;
    xb_xtrain_stats xs;
    o.out_dir = da;
    xo.state_out = sa;
    if (xb_xtrain(ma, &hw, &d, NULL, &o, &xo, &r, &xs) != XB_OK) fail_msg("onchip A: %s", xb_last_error());
    assert_int_equal(xs.solves, 2);                /* after steps 3 and 6 of 8 (and the programming's own) */
    assert_int_equal(xs.distortion_refreshes, strcmp(refresh, "distortion") ? 0 : 6);
    assert_int_equal(xs.holds, strcmp(refresh, "distortion") ? 6 : 0);
    o.out_dir = db;
    xo.state_out = sb;
    o.steps = 4; /* the first epoch, then stop */
    if (xb_xtrain(mb, &hw, &d, NULL, &o, &xo, &r, NULL) != XB_OK) fail_msg("onchip B1: %s", xb_last_error());
    xb_model_free(mb);
    assert_int_equal(xb_model_load("lenet5", 6, &mb), XB_OK);
    o.steps = 0;
    o.resume = ck;
    assert_int_equal(xb_xtrain(mb, &hw, &d, NULL, &o, &xo, &r, NULL), XB_ERR_ARG); /* no state: refused */
    xo.state_in = sb;
    if (xb_xtrain(mb, &hw, &d, NULL, &o, &xo, &r, NULL) != XB_OK) fail_msg("onchip B2: %s", xb_last_error());
    assert_memory_equal(xb_model_params(ma), xb_model_params(mb), (size_t)xb_model_n_trainable(ma) * sizeof(float));
    xb_safetensors a, b;
    assert_int_equal(xb_st_load(sa, &a), XB_OK);
    assert_int_equal(xb_st_load(sb, &b), XB_OK);
    assert_int_equal(a.n, b.n);
    for (int i = 0; i < a.n; i++)
        assert_memory_equal(a.e[i].t.data, b.e[i].t.data, xb_tensor_nbytes(&a.e[i].t));
    xb_st_free(&a);
    xb_st_free(&b);
    /* the float run from the same start differs: the device model is not ideal */
    o.resume = NULL;
    o.out_dir = NULL;
    assert_int_equal(xb_train(mf, &d, NULL, &o, &r), XB_OK);
    const char *which = "";
    assert_true(worst_param_(mf, xb_model_params(ma), xb_model_params(mf), &which) > 1e-3);
    xb_model_free(ma); xb_model_free(mb); xb_model_free(mf);
    xb_dataset_free(&d);
}

/* Hardware-aware training resumes bit for bit at an epoch boundary: every device sample follows from the
 * step number, calibrated ranges from the epoch's start (variation, faults, read noise, a DAC and an
 * ADC with calibrated ranges). */
static void test_aware_resume(void **state) {
    (void)state;
    xb_dataset d = xbt_synthetic_cifar(32);
    xb_hw hw = hw_("[tile]\nrows = 32\ncols = 32\n[device]\nvariation = gaussian\nvariation_sigma = 0.1\n"
                   "stuck_at_gmin_rate = 0.01\nread_noise_sigma = 0.05\n[input]\ndac_bits = 6\n[output]\nadc_bits = 8\n"
                   "calibration_images = 8\n[circuit]\nsolver = none\n");
    xb_xtrain_opts xo = xb_xtrain_opts_default();
    char da[512], db[512], ck[600];
    snprintf(da, sizeof da, "%s/aw-a", xbt_tmpdir());
    snprintf(db, sizeof db, "%s/aw-b", xbt_tmpdir());
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", db);
    xb_train_opts o = xb_train_opts_default();
    o.batch = 8; o.epochs = 2; o.progress = 0; o.lr = 0.02;
    xb_model *ma, *mb;
    assert_int_equal(xb_model_load("lenet5", 9, &ma), XB_OK);
    assert_int_equal(xb_model_load("lenet5", 9, &mb), XB_OK);
    xb_train_result r;
    o.out_dir = da;
    if (xb_xtrain(ma, &hw, &d, NULL, &o, &xo, &r, NULL) != XB_OK) fail_msg("aware A: %s", xb_last_error());
    o.out_dir = db;
    o.steps = 4;
    if (xb_xtrain(mb, &hw, &d, NULL, &o, &xo, &r, NULL) != XB_OK) fail_msg("aware B1: %s", xb_last_error());
    xb_model_free(mb);
    assert_int_equal(xb_model_load("lenet5", 9, &mb), XB_OK);
    o.steps = 0;
    o.resume = ck;
    if (xb_xtrain(mb, &hw, &d, NULL, &o, &xo, &r, NULL) != XB_OK) fail_msg("aware B2: %s", xb_last_error());
    assert_memory_equal(xb_model_params(ma), xb_model_params(mb), (size_t)xb_model_n_trainable(ma) * sizeof(float));
    assert_memory_equal(xb_model_buffers(ma), xb_model_buffers(mb), (size_t)xb_model_n_buffer(ma) * sizeof(float));
    xb_model_free(ma);
    xb_model_free(mb);
    xb_dataset_free(&d);
}

static void test_onchip_resume(void **state) {
    (void)state;
    onchip_resume_("distortion");
    onchip_resume_("exact");
}

/* I-FCM: the held distortion ratios on the same conductances give the solved matrices back; on changed
 * weights they approximate a fresh solve (error reported), and training counts its solves. */
static void test_ifcm(void **state) {
    (void)state;
    xb_model *m;
    assert_int_equal(xb_model_load("lenet5", 2, &m), XB_OK);
    xb_hw hw = hw_("[tile]\nrows = 32\ncols = 32\n[mapping]\nr_on_ohm = 20e3\nr_off_ohm = 200e3\n[circuit]\n"
                   "r_wire_ohm = 5\nr_driver_ohm = 500\nr_sense_ohm = 1000\nsolver = exact\n");
    xb_xnet *xn;
    assert_int_equal(xb_xnet_init(&hw, m, &xn), XB_OK);
    assert_int_equal(xb_xnet_keep_distortion(xn), XB_OK);
    assert_int_equal(xb_xnet_program(xn, 4), XB_OK);
    const int L = 2, n = 120 * 400;
    float *we = malloc(sizeof(float) * n), *wb = malloc(sizeof(float) * n);
    memcpy(we, xb_xnet_effective_weights(xn, L, 0), sizeof(float) * n);
    memcpy(wb, xb_xnet_effective_weights_bwd(xn, L, 0), sizeof(float) * n);
    assert_int_equal(xb_xnet_program_distorted(xn, 4), XB_OK);
    double e0 = rel_norm_(xb_xnet_effective_weights(xn, L, 0), we, n);
    double e0b = rel_norm_(xb_xnet_effective_weights_bwd(xn, L, 0), wb, n);
    if (!(e0 < 1e-6 && e0b < 1e-6)) fail_msg("distortion on the solved conductances: %.2e / %.2e", e0, e0b);
    /* weights changed by up to 20% each: the ratios of the old solve against a fresh one */
    const xb_param *p = xb_model_find_param(m, "fc1.weight");
    for (int64_t i = 0; i < p->numel; i++) xb_model_params(m)[p->offset + i] *= (float)(1 + 0.2 * sin((double)i));
    assert_int_equal(xb_xnet_program_distorted(xn, 4), XB_OK);
    memcpy(we, xb_xnet_effective_weights(xn, L, 0), sizeof(float) * n);
    assert_int_equal(xb_xnet_program(xn, 4), XB_OK);
    double e1 = rel_norm_(we, xb_xnet_effective_weights(xn, L, 0), n);
    if (getenv("XBT_VERBOSE")) fprintf(stderr, "  I-FCM: same conductances %.1e/%.1e, weights changed by up to 20%%: %.2e\n", e0, e0b, e1);
    assert_true(e1 > 1e-6 && e1 < 0.15); /* measured 7.1e-2 with these stressed parasitics (20 kOhm R_on) */
    xb_xnet_free(xn);
    /* aware training with refresh_steps = 3 solves at steps 0 and 3 (and the first programming) */
    xb_dataset d = xbt_synthetic_cifar(48);
    xb_hw hw2 = hw_("[tile]\nrows = 32\ncols = 32\n[circuit]\nr_wire_ohm = 5\nr_driver_ohm = 500\n"
                    "r_sense_ohm = 1000\nsolver = exact\n[update]\nrefresh_steps = 3\nrefresh_solver = distortion\n");
    xb_train_opts o = xb_train_opts_default();
    o.batch = 8; o.steps = 6; o.epochs = 0; o.progress = 0; o.lr = 0.01;
    xb_xtrain_opts xo = xb_xtrain_opts_default();
    xb_xtrain_stats xs;
    xb_train_result r;
    if (xb_xtrain(m, &hw2, &d, NULL, &o, &xo, &r, &xs) != XB_OK) fail_msg("xtrain: %s", xb_last_error());
    assert_int_equal(xs.programs, 7);
    assert_int_equal(xs.solves, 3);             /* the first programming, steps 3 and 6 */
    assert_int_equal(xs.distortion_refreshes, 4);
    free(we); free(wb);
    xb_dataset_free(&d);
    xb_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ideal_forward_backward),
        cmocka_unit_test(test_ideal_training),
        cmocka_unit_test(test_stale_weights),
        cmocka_unit_test(test_dac_ste),
        cmocka_unit_test(test_adc_ste),
        cmocka_unit_test(test_trainable_bn),
        cmocka_unit_test(test_backward_read),
        cmocka_unit_test(test_ifcm),
        cmocka_unit_test(test_onchip_ideal),
        cmocka_unit_test(test_aware_resume),
        cmocka_unit_test(test_onchip_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
