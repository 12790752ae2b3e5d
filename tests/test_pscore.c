/* test_pscore.c -- the pruning scores against plain references: filter L1 and mean activation by loops, the
 * Taylor score's gradient through a second model cut at the relu (its input gradient), LRP-epsilon against a
 * loop implementation of the rules on a conv-batchnorm-relu-maxpool-conv-relu-gap-linear network; LRP's
 * conservation on a network without biases; the schedule's plans (geometric steps to the target, the strongest
 * channels kept, floors, the global ranking, the MAC budget, nothing twice at one epoch). */
#include "testutil.h"
#include "xb_xbar.h"

static const char lrp_cfg[] = "[net]\nname = l\ninput = 2x6x6\nclasses = 5\n"
                              "[conv2d c1]\nout_channels = 4\nkernel = 3\npadding = 1\nbias = %s\n[batchnorm b1]\n"
                              "[relu r1]\n[maxpool p1]\nkernel = 2\n"
                              "[conv2d c2]\nout_channels = 3\nkernel = 3\npadding = 1\nbias = %s\n[relu r2]\n[gap g]\n"
                              "[linear fc]\nout_features = 5\n";
static const char lrp_nobn_cfg[] = "[net]\nname = l\ninput = 2x6x6\nclasses = 5\n"
                                   "[conv2d c1]\nout_channels = 4\nkernel = 3\npadding = 1\nbias = false\n"
                                   "[relu r1]\n[maxpool p1]\nkernel = 2\n"
                                   "[conv2d c2]\nout_channels = 3\nkernel = 3\npadding = 1\nbias = false\n[relu r2]\n"
                                   "[gap g]\n[linear fc]\nout_features = 5\n";

static const float *par_(xb_model *m, const char *name) {
    const xb_param *p = xb_model_find_param(m, name);
    if (!p) fail_msg("no parameter %s", name);
    return (p->trainable ? xb_model_params(m) : xb_model_buffers(m)) + p->offset;
}

static int node_(const xb_model *m, const char *name) {
    for (int i = 0; i < xb_model_n_nodes(m); i++)
        if (!strcmp(xb_model_node_name(m, i), name)) return i;
    fail_msg("no node %s", name);
    return -1;
}

/* random batchnorm statistics and affine, so that folding matters */
static void randomize_bn_(xb_model *m, uint64_t seed) {
    xb_rng r;
    xb_rng_seed(&r, seed, "bn");
    for (int i = 0; i < xb_model_n_params(m); i++) {
        const xb_param *q = xb_model_param(m, i);
        if (q->ndim != 1 || q->is_int64) continue;
        const int bn_aff = q->trainable && (strstr(q->name, "b1.") == q->name || strstr(q->name, "b2.") == q->name);
        if (q->trainable && !bn_aff) continue;
        float *v = (q->trainable ? xb_model_params(m) : xb_model_buffers(m)) + q->offset;
        for (int64_t j = 0; j < q->numel; j++)
            v[j] = strstr(q->name, "var") ? (float)(0.5 + xb_rng_uniform(&r))
                 : strstr(q->name, "weight") ? (float)(0.5 + xb_rng_uniform(&r)) : (float)(0.3 * xb_rng_normal(&r));
    }
}

static double sgn_(double z) { return z > 0 ? 1 : z < 0 ? -1 : 0; }
static double div_(double r, double z, double eps) { return z == 0 ? 0 : r / (z + eps * sgn_(z)); }

/* LRP-epsilon of one image of lrp_cfg by the rules, written out: relevance at the input (2x6x6), at r1 (4x6x6)
 * and at r2 (3x3x3) */
static void lrp_plain_(xb_model *m, const float *x, int label, double eps, int bn, double *rx, double *r1, double *r2) {
    const float *w1 = par_(m, "c1.weight"), *w2 = par_(m, "c2.weight"), *w3 = par_(m, "fc.weight");
    const float *bb1 = xb_model_find_param(m, "c1.bias") ? par_(m, "c1.bias") : NULL;
    const float *bb2 = xb_model_find_param(m, "c2.bias") ? par_(m, "c2.bias") : NULL, *b3 = par_(m, "fc.bias");
    double s[4], t[4];
    for (int c = 0; c < 4; c++) {
        s[c] = 1;
        t[c] = 0;
        if (bn) {
            s[c] = par_(m, "b1.weight")[c] / sqrt((double)par_(m, "b1.running_var")[c] + 1e-5);
            t[c] = par_(m, "b1.bias")[c] - s[c] * par_(m, "b1.running_mean")[c];
        }
    }
    double z1[4][6][6], a1p[4][3][3], z2[3][3][3], g[3], z3[5];
    int am[4][3][3];
    for (int o = 0; o < 4; o++)
        for (int y = 0; y < 6; y++)
            for (int xx = 0; xx < 6; xx++) {
                double acc = bb1 ? bb1[o] : 0;
                for (int i = 0; i < 2; i++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            const int iy = y + ky - 1, ix = xx + kx - 1;
                            if (iy >= 0 && iy < 6 && ix >= 0 && ix < 6)
                                acc += (double)w1[((o * 2 + i) * 3 + ky) * 3 + kx] * x[(i * 6 + iy) * 6 + ix];
                        }
                z1[o][y][xx] = s[o] * acc + t[o];
            }
    for (int o = 0; o < 4; o++)
        for (int y = 0; y < 3; y++)
            for (int xx = 0; xx < 3; xx++) {
                double best = -1e300;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        const double v = fmax(z1[o][2 * y + dy][2 * xx + dx], 0);
                        if (v > best) { best = v; am[o][y][xx] = (2 * y + dy) * 6 + 2 * xx + dx; }
                    }
                a1p[o][y][xx] = best;
            }
    for (int o = 0; o < 3; o++) {
        g[o] = 0;
        for (int y = 0; y < 3; y++)
            for (int xx = 0; xx < 3; xx++) {
                double acc = bb2 ? bb2[o] : 0;
                for (int i = 0; i < 4; i++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            const int iy = y + ky - 1, ix = xx + kx - 1;
                            if (iy >= 0 && iy < 3 && ix >= 0 && ix < 3)
                                acc += (double)w2[((o * 4 + i) * 3 + ky) * 3 + kx] * a1p[i][iy][ix];
                        }
                z2[o][y][xx] = acc;
                g[o] += fmax(acc, 0) / 9;
            }
    }
    for (int j = 0; j < 5; j++) {
        z3[j] = b3[j];
        for (int i = 0; i < 3; i++) z3[j] += (double)w3[j * 3 + i] * g[i];
    }
    /* backwards */
    double rg[3], ra1p[4][3][3] = {{{0}}};
    const double q3 = div_(z3[label], z3[label], eps);
    for (int i = 0; i < 3; i++) rg[i] = g[i] * w3[label * 3 + i] * q3;
    for (int o = 0; o < 3; o++)
        for (int p = 0; p < 9; p++) {
            const double a = fmax(z2[o][p / 3][p % 3], 0);
            r2[o * 9 + p] = g[o] > 0 ? a / 9 / g[o] * rg[o] : 0;
        }
    double acc1[4][3][3] = {{{0}}};
    for (int o = 0; o < 3; o++)
        for (int y = 0; y < 3; y++)
            for (int xx = 0; xx < 3; xx++) {
                const double q = div_(r2[o * 9 + y * 3 + xx], z2[o][y][xx], eps);
                for (int i = 0; i < 4; i++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            const int iy = y + ky - 1, ix = xx + kx - 1;
                            if (iy >= 0 && iy < 3 && ix >= 0 && ix < 3)
                                acc1[i][iy][ix] += (double)w2[((o * 4 + i) * 3 + ky) * 3 + kx] * q;
                        }
            }
    for (int i = 0; i < 4 * 36; i++) r1[i] = 0;
    for (int i = 0; i < 4; i++)
        for (int y = 0; y < 3; y++)
            for (int xx = 0; xx < 3; xx++) {
                ra1p[i][y][xx] = a1p[i][y][xx] * acc1[i][y][xx];
                r1[i * 36 + am[i][y][xx]] += ra1p[i][y][xx];
            }
    double accx[2][6][6] = {{{0}}};
    for (int o = 0; o < 4; o++)
        for (int y = 0; y < 6; y++)
            for (int xx = 0; xx < 6; xx++) {
                const double q = div_(r1[o * 36 + y * 6 + xx], z1[o][y][xx], eps);
                for (int i = 0; i < 2; i++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            const int iy = y + ky - 1, ix = xx + kx - 1;
                            if (iy >= 0 && iy < 6 && ix >= 0 && ix < 6)
                                accx[i][iy][ix] += s[o] * (double)w1[((o * 2 + i) * 3 + ky) * 3 + kx] * q;
                        }
            }
    for (int i = 0; i < 72; i++) rx[i] = x[i] * accx[i / 36][(i % 36) / 6][i % 6];
}

/* xb_lrp against lrp_plain_: relevance of the input pixels and at both relus, n images */
static void lrp_check_(xb_model *m, int bn, double eps, int n) {
    xb_rng r;
    xb_rng_seed(&r, 8, "x");
    float *x = malloc(sizeof(float) * 72 * (size_t)n), *dx = malloc(sizeof(float) * 72 * (size_t)n);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < 72 * n; i++) x[i] = (float)xb_rng_normal(&r);
    for (int i = 0; i < n; i++) lab[i] = (int32_t)xb_rng_below(&r, 5);
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    if (xb_lrp(m, n, x, lab, eps, dx) != XB_OK) fail_msg("xb_lrp: %s", xb_last_error());
    const int nr1 = node_(m, "r1"), nr2 = node_(m, "r2");
    const float *a1 = xb_model_node_output(m, nr1), *g1 = xb_model_node_grad(m, nr1);
    const float *a2 = xb_model_node_output(m, nr2), *g2 = xb_model_node_grad(m, nr2);
    assert_non_null(g1);
    assert_non_null(g2);
    double e = 0, mx = 0;
    for (int j = 0; j < n; j++) {
        double rx[72], r1[144], r2[27];
        lrp_plain_(m, x + 72 * j, lab[j], eps, bn, rx, r1, r2);
        for (int i = 0; i < 72; i++) { e = fmax(e, fabs(rx[i] - (double)x[72 * j + i] * dx[72 * j + i])); mx = fmax(mx, fabs(rx[i])); }
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 36; p++) {
                const size_t q = ((size_t)c * n + j) * 36 + p;
                e = fmax(e, fabs(r1[c * 36 + p] - (double)a1[q] * g1[q]));
            }
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 9; p++) {
                const size_t q = ((size_t)c * n + j) * 9 + p;
                e = fmax(e, fabs(r2[c * 9 + p] - (double)a2[q] * g2[q]));
            }
    }
    if (getenv("XBT_VERBOSE")) fprintf(stderr, "  LRP eps %g: max error %.2e of %.2e\n", eps, e, mx);
    if (!(e < 1e-4 * mx)) fail_msg("LRP (eps %g) against the plain rules: max error %.3e, scale %.3e", eps, e, mx);
    free(x); free(dx); free(lab);
}

static xb_model *lrp_model_(int bias) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg, lrp_cfg, bias ? "true" : "false", bias ? "true" : "false");
    xb_model *m;
    assert_int_equal(xb_model_load_text(cfg, strlen(cfg), "l.cfg", 3, &m), XB_OK);
    randomize_bn_(m, 5);
    return m;
}

static void test_lrp_reference(void **state) {
    (void)state;
    xb_model *m = lrp_model_(1);
    lrp_check_(m, 1, 0.0, 4);
    lrp_check_(m, 1, 0.1, 4);
    lrp_check_(m, 1, 2.0, 4);
    xb_model_free(m);
    /* errors: a label out of range, a negative epsilon */
    m = lrp_model_(1);
    float x[72] = {0}, dx[72];
    int32_t bad = 7;
    assert_int_equal(xb_model_set_batch(m, 1), XB_OK);
    xbt_assert_error(xb_lrp(m, 1, x, &bad, 0.1, dx), XB_ERR_ARG, "LRP", "label 7");
    int32_t ok = 1;
    xbt_assert_error(xb_lrp(m, 1, x, &ok, -1, dx), XB_ERR_ARG, "LRP", "epsilon");
    xb_model_free(m);
}

/* without biases (and batchnorm shifts) and with epsilon 0, relevance is conserved: the input's, r1's and r2's
 * relevance each sum to the true-class logit; a positive epsilon absorbs some */
static void test_lrp_conservation(void **state) {
    (void)state;
    xb_model *m;
    assert_int_equal(xb_model_load_text(lrp_nobn_cfg, sizeof lrp_nobn_cfg - 1, "l.cfg", 3, &m), XB_OK);
    float *b3 = xb_model_params(m) + xb_model_find_param(m, "fc.bias")->offset;
    for (int j = 0; j < 5; j++) b3[j] = 0;
    const int n = 3;
    xb_rng r;
    xb_rng_seed(&r, 9, "x");
    float x[72 * 3], dx[72 * 3], logits[15];
    int32_t lab[3] = {0, 3, 4};
    for (int i = 0; i < 72 * n; i++) x[i] = (float)fabs(xb_rng_normal(&r));
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    xb_model_train_mode(m, 0);
    assert_int_equal(xb_model_forward(m, n, x, logits, NULL), XB_OK);
    for (int pass = 0; pass < 2; pass++) {
        const double eps = pass ? 0.5 : 0.0;
        assert_int_equal(xb_lrp(m, n, x, lab, eps, dx), XB_OK);
        const int nodes[2] = {node_(m, "r1"), node_(m, "r2")};
        for (int j = 0; j < n; j++) {
            const double zc = logits[j * 5 + lab[j]];
            double sx = 0, sr[2] = {0, 0};
            for (int i = 0; i < 72; i++) sx += (double)x[72 * j + i] * dx[72 * j + i];
            for (int k = 0; k < 2; k++) {
                int c, h, w;
                xb_model_node_shape(m, nodes[k], &c, &h, &w);
                const float *a = xb_model_node_output(m, nodes[k]), *g = xb_model_node_grad(m, nodes[k]);
                for (int ch = 0; ch < c; ch++)
                    for (int p = 0; p < h * w; p++) sr[k] += (double)a[((size_t)ch * n + j) * h * w + p] * g[((size_t)ch * n + j) * h * w + p];
            }
            if (!pass) {
                if (!(fabs(sx - zc) < 1e-4 * fabs(zc) && fabs(sr[0] - zc) < 1e-4 * fabs(zc) && fabs(sr[1] - zc) < 1e-4 * fabs(zc)))
                    fail_msg("image %d: logit %.6g, relevance input %.6g, r1 %.6g, r2 %.6g", j, zc, sx, sr[0], sr[1]);
            } else if (!(fabs(sx) < fabs(zc) && fabs(sr[1]) < fabs(zc))) {
                fail_msg("image %d, eps 0.5: relevance %.6g, %.6g not below the logit's %.6g", j, sx, sr[1], zc);
            }
        }
    }
    xb_model_free(m);
}

static const char vgg_cfg[] = "[net]\nname = v\ninput = 3x16x16\nclasses = 5\n"
                              "[conv2d c1]\nout_channels = 8\nkernel = 3\npadding = 1\n[batchnorm b1]\n[relu r1]\n"
                              "[conv2d c2]\nout_channels = 12\nkernel = 3\npadding = 1\nbias = true\n[batchnorm b2]\n"
                              "[relu r2]\n[maxpool p2]\nkernel = 2\n"
                              "[conv2d c3]\nout_channels = 6\nkernel = 3\npadding = 1\n[relu r3]\n[maxpool p3]\nkernel = 2\n"
                              "[flatten f]\n[linear fc1]\nout_features = 7\n[relu r4]\n[linear fc2]\nout_features = 5\n";
/* vgg_cfg from r1 on: input gradients of this model are the full model's gradients at r1 */
static const char tail_cfg[] = "[net]\nname = t\ninput = 8x16x16\nclasses = 5\n"
                               "[conv2d c2]\nout_channels = 12\nkernel = 3\npadding = 1\nbias = true\n[batchnorm b2]\n"
                               "[relu r2]\n[maxpool p2]\nkernel = 2\n"
                               "[conv2d c3]\nout_channels = 6\nkernel = 3\npadding = 1\n[relu r3]\n[maxpool p3]\nkernel = 2\n"
                               "[flatten f]\n[linear fc1]\nout_features = 7\n[relu r4]\n[linear fc2]\nout_features = 5\n";

static void test_scores(void **state) {
    (void)state;
    xb_model *m, *t;
    assert_int_equal(xb_model_load_text(vgg_cfg, sizeof vgg_cfg - 1, "v.cfg", 2, &m), XB_OK);
    assert_int_equal(xb_model_load_text(tail_cfg, sizeof tail_cfg - 1, "t.cfg", 2, &t), XB_OK);
    randomize_bn_(m, 6);
    for (int i = 0; i < xb_model_n_params(t); i++) { /* the tail's weights are the full model's */
        const xb_param *q = xb_model_param(t, i);
        memcpy((float *)par_(t, q->name), par_(m, q->name), sizeof(float) * (size_t)q->numel);
    }
    xb_dataset d = xbt_synthetic_cifar(40);
    d.h = d.w = 16;
    for (int i = 0; i < 40; i++) d.labels[i] %= 5;
    const int n = 40;
    xb_prune_groups gs;
    assert_int_equal(xb_prune_groups_find(m, 0, &gs), XB_OK);
    assert_int_equal(gs.n, 3);
    double *sc[3];
    for (int k = 0; k < 3; k++) sc[k] = calloc((size_t)gs.g[k].channels, sizeof(double));
    /* L1 */
    xb_score_opts o = {XB_PS_L1, &d, n, 16, 0.01, 1, 0};
    assert_int_equal(xb_prune_scores(m, &gs, &o, sc), XB_OK);
    const float *w2 = par_(m, "c2.weight");
    for (int c = 0; c < 12; c++) {
        double a = 0;
        for (int j = 0; j < 8 * 9; j++) a += fabs(w2[c * 72 + j]);
        assert_true(fabs(a - sc[1][c]) < 1e-9 * a);
    }
    /* mean activation and Taylor from one forward (and backward) of all n images */
    float *x = malloc(sizeof(float) * (size_t)n * 3 * 256), *dl = malloc(sizeof(float) * (size_t)n * 5);
    float *xt = malloc(sizeof(float) * (size_t)n * 8 * 256), *dxt = malloc(sizeof(float) * (size_t)n * 8 * 256);
    int32_t lab[40];
    int64_t idx[40];
    for (int i = 0; i < n; i++) idx[i] = i;
    xb_dataset_batch(&d, idx, n, 0, 0, NULL, x, lab);
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    assert_int_equal(xb_model_set_batch(t, n), XB_OK);
    xb_model_train_mode(m, 0);
    xb_model_keep_graph(m, 1);
    assert_int_equal(xb_model_forward(m, n, x, NULL, NULL), XB_OK);
    const int r1 = node_(m, "r1");
    const float *a1 = xb_model_node_output(m, r1);
    double ma[8] = {0};
    for (int c = 0; c < 8; c++)
        for (int j = 0; j < n * 256; j++) ma[c] += a1[(size_t)c * n * 256 + j] / (n * 256.0);
    for (int i = 0; i < n; i++) /* CNHW -> NCHW: the tail's input */
        for (int c = 0; c < 8; c++) memcpy(xt + ((size_t)i * 8 + c) * 256, a1 + ((size_t)c * n + i) * 256, 256 * sizeof(float));
    xb_model_train_mode(t, 0);
    xb_model_keep_graph(t, 1);
    assert_int_equal(xb_model_forward(t, n, xt, NULL, NULL), XB_OK);
    assert_int_equal(xb_model_loss_grad(t, n, lab, 0, NULL, NULL, dl), XB_OK);
    assert_int_equal(xb_model_backward_from(t, n, dl, 0, dxt), XB_OK);
    double ty[8] = {0};
    for (int c = 0; c < 8; c++)
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int p = 0; p < 256; p++) s += (double)xt[((size_t)i * 8 + c) * 256 + p] * dxt[((size_t)i * 8 + c) * 256 + p];
            ty[c] += fabs(s / 256) / n;
        }
    o.kind = XB_PS_MEANACT;
    o.batch = 16; /* three batches, the last one short */
    assert_int_equal(xb_prune_scores(m, &gs, &o, sc), XB_OK);
    for (int c = 0; c < 8; c++)
        if (!(fabs(ma[c] - sc[0][c]) < 1e-5 * fabs(ma[c]) + 1e-12)) fail_msg("mean-act %d: %.8g vs %.8g", c, sc[0][c], ma[c]);
    xb_model_free(t);
    /* Taylor: per image |mean over positions of a dL_i/da| (L_i: that image's loss), in batches of 16 (16, 16, 8) */
    o.kind = XB_PS_TAYLOR;
    assert_int_equal(xb_prune_scores(m, &gs, &o, sc), XB_OK);
    double mx = 0, e = 0;
    for (int c = 0; c < 8; c++) { mx = fmax(mx, n * ty[c]); e = fmax(e, fabs(n * ty[c] - sc[0][c])); }
    if (!(e < 1e-4 * mx)) fail_msg("taylor: max error %.3e of %.3e", e, mx);
    /* random: reproducible for a (seed, round), different for another round, in [0, 1) */
    double *r0 = malloc(sizeof(double) * 12);
    o.kind = XB_PS_RANDOM;
    assert_int_equal(xb_prune_scores(m, &gs, &o, sc), XB_OK);
    memcpy(r0, sc[1], sizeof(double) * 12);
    assert_int_equal(xb_prune_scores(m, &gs, &o, sc), XB_OK);
    assert_memory_equal(r0, sc[1], sizeof(double) * 12);
    o.round = 1;
    assert_int_equal(xb_prune_scores(m, &gs, &o, sc), XB_OK);
    assert_true(memcmp(r0, sc[1], sizeof(double) * 12) != 0);
    for (int c = 0; c < 12; c++) assert_true(sc[1][c] >= 0 && sc[1][c] < 1);
    free(r0);
    /* a data score without images */
    o.kind = XB_PS_FRS;
    o.data = NULL;
    xbt_assert_error(xb_prune_scores(m, &gs, &o, sc), XB_ERR_ARG, "frs", "images");
    for (int k = 0; k < 3; k++) free(sc[k]);
    xb_prune_groups_free(&gs);
    free(x); free(dl); free(xt); free(dxt);
    xb_model_free(m);
    /* FRS: the channel relevance at r1 of the plain LRP, summed over positions, averaged over the images */
    m = lrp_model_(1);
    xb_dataset d2 = xbt_synthetic_cifar(6);
    d2.c = 2;
    d2.h = d2.w = 6;
    for (int i = 0; i < 6; i++) d2.labels[i] %= 5;
    assert_int_equal(xb_prune_groups_find(m, 0, &gs), XB_OK);
    double *s2[2] = {calloc(4, sizeof(double)), calloc(3, sizeof(double))};
    xb_score_opts of = {XB_PS_FRS, &d2, 6, 4, 0.05, 1, 0};
    assert_int_equal(xb_model_set_batch(m, 4), XB_OK);
    assert_int_equal(xb_prune_scores(m, &gs, &of, s2), XB_OK);
    float xs[6 * 72];
    int32_t ls[6];
    int64_t id6[6] = {0, 1, 2, 3, 4, 5};
    xb_dataset_batch(&d2, id6, 6, 0, 0, NULL, xs, ls);
    double ref[4] = {0}, mref = 0;
    for (int j = 0; j < 6; j++) {
        double rx[72], rr1[144], rr2[27];
        lrp_plain_(m, xs + 72 * j, ls[j], 0.05, 1, rx, rr1, rr2);
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 36; p++) ref[c] += rr1[c * 36 + p] / 6;
    }
    for (int c = 0; c < 4; c++) mref = fmax(mref, fabs(ref[c]));
    for (int c = 0; c < 4; c++)
        if (!(fabs(ref[c] - s2[0][c]) < 1e-4 * mref)) fail_msg("frs %d: %.8g vs the rules' %.8g", c, s2[0][c], ref[c]);
    free(s2[0]); free(s2[1]);
    xb_prune_groups_free(&gs);
    xb_model_free(m);
    xb_dataset_free(&d);
    xb_dataset_free(&d2);
}

/* the schedule's keep lists, applied by surgery as a run would */
static xb_model *apply_(xb_model *m, char **text, int **keep, int *nk) {
    xb_model *p;
    char *pt;
    if (xb_model_prune(m, *text, "v.cfg", (const int *const *)keep, nk, &p, &pt, NULL, NULL) != XB_OK)
        fail_msg("surgery: %s", xb_last_error());
    for (int i = 0; i < xb_model_n_mapped(m); i++) { free(keep[i]); keep[i] = NULL; }
    xb_model_free(m);
    free(*text);
    *text = pt;
    return p;
}

static int channels_(const xb_model *m, const char *name) {
    int c, h, w;
    xb_model_node_shape(m, node_(m, name), &c, &h, &w);
    return c;
}

static void test_plan(void **state) {
    (void)state;
    xb_model *m;
    char *text = strdup(vgg_cfg);
    assert_int_equal(xb_model_load_text(vgg_cfg, sizeof vgg_cfg - 1, "v.cfg", 2, &m), XB_OK);
    xb_prune_opts o = xb_prune_opts_default();
    o.target = 0.5;
    o.steps = 2;
    o.start = 1;
    o.every = 2;
    xb_pruner *p;
    assert_int_equal(xb_pruner_init(m, &o, &p), XB_OK);
    int *keep[5] = {0}, nk[5] = {0}, cut;
    assert_int_equal(xb_pruner_epoch(p, m, NULL, 16, 0, keep, nk, &cut), XB_OK);
    assert_int_equal(cut, 0); /* before start */
    /* the L1 order of c2's filters: the 8 strongest are kept at step 1 (12 x sqrt(0.5) = 8.49 -> 8) */
    const float *w2 = par_(m, "c2.weight");
    double l1[12];
    for (int c = 0; c < 12; c++) {
        l1[c] = 0;
        for (int j = 0; j < 72; j++) l1[c] += fabs(w2[c * 72 + j]);
    }
    assert_int_equal(xb_pruner_epoch(p, m, NULL, 16, 1, keep, nk, &cut), XB_OK);
    assert_int_equal(cut, 1);
    assert_int_equal(nk[0], 6); /* round(8 x 0.707) */
    assert_int_equal(nk[1], 8);
    assert_int_equal(nk[2], 4);
    assert_null(keep[3]);
    for (int a = 0; a < 8; a++) /* every kept filter is stronger than every removed one */
        for (int c = 0; c < 12; c++) {
            int kept = 0;
            for (int b = 0; b < 8; b++) kept |= keep[1][b] == c;
            if (!kept) assert_true(l1[keep[1][a]] >= l1[c]);
        }
    for (int a = 1; a < 8; a++) assert_true(keep[1][a] > keep[1][a - 1]);
    m = apply_(m, &text, keep, nk);
    assert_int_equal(xb_pruner_rebind(p, m), XB_OK);
    assert_int_equal(xb_pruner_epoch(p, m, NULL, 16, 1, keep, nk, &cut), XB_OK); /* resumed at the same epoch */
    assert_int_equal(cut, 0);
    assert_int_equal(xb_pruner_epoch(p, m, NULL, 16, 2, keep, nk, &cut), XB_OK); /* not a step epoch */
    assert_int_equal(cut, 0);
    /* the state survives a save and load into a fresh pruner of the pruned model */
    char path[600];
    snprintf(path, sizeof path, "%s/prune-state.json", xbt_tmpdir());
    xb_pruner_epoch_done(p, m, 2, 100);
    assert_int_equal(xb_pruner_save(p, path), XB_OK);
    xb_pruner_free(p);
    assert_int_equal(xb_pruner_init(m, &o, &p), XB_OK);
    assert_int_equal(xb_pruner_load(p, path), XB_OK);
    assert_int_equal(xb_pruner_epoch(p, m, NULL, 16, 3, keep, nk, &cut), XB_OK);
    assert_int_equal(cut, 1); /* the last step: the target exactly */
    assert_int_equal(nk[0], 4);
    assert_int_equal(nk[1], 6);
    assert_int_equal(nk[2], 3);
    m = apply_(m, &text, keep, nk);
    assert_int_equal(xb_pruner_rebind(p, m), XB_OK);
    assert_int_equal(xb_pruner_epoch(p, m, NULL, 16, 5, keep, nk, &cut), XB_OK);
    assert_int_equal(cut, 0); /* done */
    xb_pruner_free(p);
    /* a state of another model is refused */
    xb_model *other;
    assert_int_equal(xb_model_load("resnet20", 1, &other), XB_OK);
    assert_int_equal(xb_pruner_init(other, &o, &p), XB_OK);
    xbt_assert_error(xb_pruner_load(p, path), XB_ERR_FORMAT, path, "not the pruning state");
    xb_pruner_free(p);
    xb_model_free(other);
    xb_model_free(m);
    free(text);

    /* global ranking with floors: one step to 80%, every layer keeps at least half */
    text = strdup(vgg_cfg);
    assert_int_equal(xb_model_load_text(vgg_cfg, sizeof vgg_cfg - 1, "v.cfg", 2, &m), XB_OK);
    o = xb_prune_opts_default();
    o.target = 0.8;
    o.steps = 1;
    o.start = 0;
    o.global = 1;
    o.min_keep = 0.5;
    assert_int_equal(xb_pruner_init(m, &o, &p), XB_OK);
    assert_int_equal(xb_pruner_epoch(p, m, NULL, 16, 0, keep, nk, &cut), XB_OK);
    assert_int_equal(cut, 1);
    assert_int_equal(nk[0], 4); /* 26 channels, 5 wanted: every layer stops at its floor */
    assert_int_equal(nk[1], 6);
    assert_int_equal(nk[2], 3);
    for (int i = 0; i < 5; i++) { free(keep[i]); keep[i] = NULL; }
    xb_pruner_free(p);
    /* a MAC budget: the global step stops where its estimate reaches 70% of the start's MACs */
    o.min_keep = 0.1;
    o.flops = 0.7;
    assert_int_equal(xb_pruner_init(m, &o, &p), XB_OK);
    const int64_t macs0 = xb_model_macs(m);
    assert_int_equal(xb_pruner_epoch(p, m, NULL, 16, 0, keep, nk, &cut), XB_OK);
    assert_int_equal(cut, 1);
    m = apply_(m, &text, keep, nk);
    const double ratio = (double)xb_model_macs(m) / (double)macs0;
    if (!(ratio < 0.8 && ratio > 0.4)) fail_msg("MACs after the budgeted step: %.3f of the start's", ratio);
    assert_true(channels_(m, "c1") + channels_(m, "c2") + channels_(m, "c3") > 6); /* well short of 80% */
    xb_pruner_free(p);
    xb_model_free(m);
    free(text);
    /* bad options */
    o = xb_prune_opts_default();
    o.target = 1.5;
    assert_int_equal(xb_model_load_text(vgg_cfg, sizeof vgg_cfg - 1, "v.cfg", 2, &m), XB_OK);
    xbt_assert_error(xb_pruner_init(m, &o, &p), XB_ERR_ARG, "pruning", "target");
    xb_model_free(m);
}

/* weight-constrained training: the bounds are each layer's percentile of |w|, the clip holds them, the penalty's
 * gradient is the derivative of lambda sum (|w| - c)_+^2 (central differences), the bounds survive save/load */
static void test_wct(void **state) {
    (void)state;
    xb_model *m;
    assert_int_equal(xb_model_load_text(vgg_cfg, sizeof vgg_cfg - 1, "v.cfg", 2, &m), XB_OK);
    xb_wct *w;
    assert_int_equal(xb_wct_init(m, 80, 0, &w), XB_OK);
    const int64_t n2 = 12 * 72;
    const float *w2 = par_(m, "c2.weight");
    float *t = malloc(sizeof(float) * (size_t)n2);
    memcpy(t, w2, sizeof(float) * (size_t)n2);
    const double c2 = xb_percentile_abs(t, n2, 80);
    assert_true(xb_wct_bound(w, 1) == c2);
    int64_t above = 0;
    for (int64_t j = 0; j < n2; j++) above += fabsf(w2[j]) > (float)c2;
    const int64_t clipped = xb_wct_clip(w, m);
    assert_true(clipped >= above && above > 0);
    for (int64_t j = 0; j < n2; j++) assert_true(fabsf(w2[j]) <= (float)c2);
    char path[600];
    snprintf(path, sizeof path, "%s/wct.json", xbt_tmpdir());
    assert_int_equal(xb_wct_save(w, m, path), XB_OK);
    xb_wct_free(w);
    /* the penalty: gradient against central differences on a few weights beyond and inside the bound */
    xb_model *m2;
    assert_int_equal(xb_model_load_text(vgg_cfg, sizeof vgg_cfg - 1, "v.cfg", 2, &m2), XB_OK);
    assert_int_equal(xb_wct_init(m2, 50, 0.3, &w), XB_OK);
    assert_int_equal(xb_wct_clip(w, m2), 0); /* a penalty clips nothing */
    xb_model_zero_grad(m2);
    xb_wct_grad(w, m2);
    float *v = xb_model_params(m2) + xb_model_find_param(m2, "c2.weight")->offset;
    const float *g = xb_model_grads(m2) + xb_model_find_param(m2, "c2.weight")->offset;
    const double c = xb_wct_bound(w, 1);
    int checked_out = 0, checked_in = 0;
    for (int64_t j = 0; j < n2 && (checked_out < 5 || checked_in < 5); j++) {
        const double a = fabs(v[j]);
        if (fabs(a - c) < 1e-2) continue;
        const float v0 = v[j], h = 1e-3f;
        double pp, pm;
        v[j] = v0 + h; pp = fmax(fabs(v[j]) - c, 0); pp = 0.3 * pp * pp;
        v[j] = v0 - h; pm = fmax(fabs(v[j]) - c, 0); pm = 0.3 * pm * pm;
        v[j] = v0;
        const double fd = (pp - pm) / (2.0 * h);
        if (!(fabs(fd - g[j]) < 1e-3 * fmax(1, fabs(fd)))) fail_msg("penalty gradient %lld: %.6g vs %.6g", (long long)j, g[j], fd);
        if (a > c) checked_out++; else checked_in++;
    }
    assert_true(checked_out >= 5 && checked_in >= 5);
    /* the saved bounds load for the same model, not for another */
    assert_int_equal(xb_wct_load(w, m, path), XB_OK);
    assert_true(xb_wct_bound(w, 1) == c2);
    xb_wct_free(w);
    xb_model *o;
    assert_int_equal(xb_model_load("lenet5", 1, &o), XB_OK);
    assert_int_equal(xb_wct_init(o, 90, 0, &w), XB_OK);
    xbt_assert_error(xb_wct_load(w, o, path), XB_ERR_FORMAT, path, "not the weight-constraint bounds");
    xb_wct_free(w);
    xbt_assert_error(xb_wct_init(o, 0, 0, &w), XB_ERR_ARG, "weight-constrained", "percentile");
    xb_model_free(o); xb_model_free(m); xb_model_free(m2);
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lrp_reference),
        cmocka_unit_test(test_lrp_conservation),
        cmocka_unit_test(test_scores),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_wct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
