/* test_model.c -- model graphs from .cfg (zoo and bad files), weights round trips, the matmul hook,
 * optimizers and schedules against their formulas, determinism and bit-exact resume of training. */
#include "testutil.h"

#include <cblas.h>

static const char *write_cfg(const char *name, const char *text) {
    static char path[512];
    xbt_path(path, sizeof path, name);
    xbt_write_file(path, text, strlen(text));
    return path;
}

static void test_zoo_loads(void **state) {
    (void)state;
    /* parameter counts of the PyTorch twins (tools/torch_zoo.py; docs/zoo.md) */
    struct { const char *name; int64_t params; } z[] = {
        {"resnet20", 269722}, {"mlp", 1707274}, {"lenet5", 62006}, {"resnet18", 11173962},
    };
    for (size_t i = 0; i < sizeof z / sizeof *z; i++) {
        xb_model *m;
        assert_int_equal(xb_model_load(z[i].name, 1, &m), XB_OK);
        assert_int_equal(xb_model_n_trainable(m), z[i].params);
        assert_int_equal(xb_model_classes(m), 10);
        xb_model_free(m);
    }
    for (const char *const *n = xb_zoo_names(); *n; n++) {
        xb_model *m;
        if (xb_model_load(*n, 1, &m) != XB_OK) fail_msg("zoo model %s: %s", *n, xb_last_error());
        xb_model_free(m);
    }
    xb_model *m;
    assert_int_equal(xb_model_load("resnet21", 1, &m), XB_ERR_ARG);
    assert_non_null(strstr(xb_last_error(), "resnet20"));
}

static void test_resnet20_names(void **state) {
    (void)state;
    xb_model *m;
    assert_int_equal(xb_model_load("resnet20", 1, &m), XB_OK);
    const char *names[] = {"conv1.weight", "bn1.weight", "bn1.running_var", "bn1.num_batches_tracked",
                           "layer1.0.conv1.weight", "layer2.0.conv1.weight", "layer3.2.bn2.bias", "linear.weight",
                           "linear.bias"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!xb_model_find_param(m, names[i])) fail_msg("resnet20 lacks %s", names[i]);
    const xb_param *p = xb_model_find_param(m, "layer2.0.conv1.weight");
    assert_int_equal(p->shape[0], 32); assert_int_equal(p->shape[1], 16);
    assert_int_equal(p->shape[2], 3); assert_int_equal(p->shape[3], 3);
    assert_null(xb_model_find_param(m, "layer2.0.shortcut.weight"));
    /* 20 weighted layers: 19 conv + 1 linear */
    assert_int_equal(xb_model_n_mapped(m), 20);
    xb_model_free(m);
}

static void expect_cfg_error(const char *text, const char *needle) {
    const char *path = write_cfg("bad.cfg", text);
    xb_model *m = NULL;
    xb_status s = xb_model_load(path, 1, &m);
    if (s == XB_OK) fail_msg("accepted a bad config (wanted '%s')", needle);
    assert_null(m);
    if (!strstr(xb_last_error(), needle) || !strstr(xb_last_error(), "bad.cfg"))
        fail_msg("message '%s' lacks '%s' or the file name", xb_last_error(), needle);
}

static void test_bad_configs(void **state) {
    (void)state;
    const char *net = "[net]\ninput = 3x8x8\nclasses = 4\n";
    char buf[1024];
    expect_cfg_error("[conv2d c]\nout_channels=4\nkernel=3\n", "[net]");
    snprintf(buf, sizeof buf, "%s[conv2d c]\nout_channels = 4\nkernel = 3\nstide = 2\n[gap g]\n", net);
    expect_cfg_error(buf, "stide");
    snprintf(buf, sizeof buf, "%s[conv3d c]\nout_channels = 4\n", net);
    expect_cfg_error(buf, "conv3d");
    snprintf(buf, sizeof buf, "%s[conv2d c]\nout_channels = 4\nkernel = 9\n[gap g]\n", net);
    expect_cfg_error(buf, "does not fit");
    snprintf(buf, sizeof buf, "%s[flatten f]\n[linear fc]\nout_features = 5\n", net);
    expect_cfg_error(buf, "class scores");
    snprintf(buf, sizeof buf, "%s[conv2d c]\nout_channels = 4\nkernel = 3\n[linear fc]\nout_features = 4\n", net);
    expect_cfg_error(buf, "flatten");
    snprintf(buf, sizeof buf, "%s[conv2d c]\nout_channels = 4\nkernel = 3\ninput = nowhere\n[gap g]\n", net);
    expect_cfg_error(buf, "nowhere");
    snprintf(buf, sizeof buf, "%s[conv2d c]\nout_channels = 4\nkernel = 1\n[conv2d d]\nout_channels = 4\nkernel = 3\n"
             "[add a]\ninputs = c, d\n[gap g]\n", net);
    expect_cfg_error(buf, "sums shapes");
    snprintf(buf, sizeof buf, "%s[conv2d c]\nout_channels = -4\nkernel = 3\n[gap g]\n", net);
    expect_cfg_error(buf, "out_channels");
    snprintf(buf, sizeof buf, "%s[relu r]\n[relu r]\n", net);
    expect_cfg_error(buf, "already used");
    snprintf(buf, sizeof buf, "%s[relu]\n", net);
    expect_cfg_error(buf, "no name");
    xb_model *m;
    assert_int_equal(xb_model_load("/nonexistent/model.cfg", 1, &m), XB_ERR_IO);
}

/* small conv net that uses every layer type */
static const char *small_cfg =
    "[net]\ninput = 3x8x8\nclasses = 4\ninit = kaiming_normal\n"
    "[conv2d c1]\nout_channels = 8\nkernel = 3\npadding = 1\nbias = false\n"
    "[batchnorm b1]\n[relu r1]\n"
    "[conv2d c2]\nout_channels = 8\nkernel = 3\npadding = 1\ngroups = 2\n"
    "[batchnorm b2]\n[add a1]\ninputs = b2, r1\n[relu r2]\n"
    "[shortcut s1]\nout_channels = 16\nstride = 2\n"
    "[conv2d c3]\nout_channels = 16\nkernel = 3\nstride = 2\npadding = 1\ninput = r2\n"
    "[add a2]\ninputs = c3, s1\n[maxpool p1]\nkernel = 2\n[avgpool p2]\nkernel = 2\ninput = a2\n"
    "[add a3]\ninputs = p1, p2\n[dropout d]\np = 0.25\n[flatten f]\n"
    "[linear fc1]\nout_features = 12\n[batchnorm b3]\n[relu r3]\n[linear fc2]\nout_features = 4\n";

static void fake_data(xb_dataset *d, int n, int c, int h, int w, int classes, uint64_t seed) {
    memset(d, 0, sizeof *d);
    d->n = n; d->c = c; d->h = h; d->w = w; d->classes = classes;
    d->images = malloc((size_t)n * c * h * w);
    d->labels = malloc((size_t)n * sizeof(int32_t));
    xb_rng r;
    xb_rng_seed(&r, seed, "test");
    for (int i = 0; i < n; i++) {
        int lab = (int)xb_rng_below(&r, (uint64_t)classes);
        d->labels[i] = lab;
        for (int j = 0; j < c * h * w; j++) /* a class-dependent brightness pattern plus noise */
            d->images[(size_t)i * c * h * w + j] = (uint8_t)(((j % classes) == lab ? 160 : 60) + xb_rng_below(&r, 60));
    }
    for (int k = 0; k < 3; k++) { d->mean[k] = 0.4f; d->std[k] = 0.25f; }
    snprintf(d->path, sizeof d->path, "fake");
}

static void test_weights_roundtrip(void **state) {
    (void)state;
    const char *cfg = write_cfg("small.cfg", small_cfg);
    xb_model *a, *b;
    assert_int_equal(xb_model_load(cfg, 1, &a), XB_OK);
    assert_int_equal(xb_model_load(cfg, 2, &b), XB_OK);
    xb_model_buffers(a)[0] = 0.125f; /* a non-trivial buffer value */
    char path[512];
    xbt_path(path, sizeof path, "small.safetensors");
    assert_int_equal(xb_model_save_weights(a, path), XB_OK);
    assert_int_equal(xb_model_load_weights(b, path), XB_OK);
    assert_memory_equal(xb_model_params(a), xb_model_params(b), (size_t)xb_model_n_trainable(a) * sizeof(float));
    assert_memory_equal(xb_model_buffers(a), xb_model_buffers(b), (size_t)xb_model_n_buffer(a) * sizeof(float));
    /* all or nothing: a NaN in the file's last parameter leaves every parameter and buffer as it was */
    xb_safetensors st;
    assert_int_equal(xb_st_load(path, &st), XB_OK);
    const xb_param *lastw = NULL;
    for (int i = 0; i < xb_model_n_params(a); i++)
        if (xb_model_param(a, i)->trainable) lastw = xb_model_param(a, i);
    xb_tensor *tw = (xb_tensor *)xb_st_get(&st, lastw->name);
    ((float *)tw->data)[0] = NAN;
    char bad[512];
    xbt_path(bad, sizeof bad, "small-nan.safetensors");
    assert_int_equal(xb_st_save(bad, &st), XB_OK);
    xb_st_free(&st);
    xb_model *c;
    assert_int_equal(xb_model_load(cfg, 3, &c), XB_OK);
    float *pc = malloc(sizeof(float) * xb_model_n_trainable(c)), *bc = malloc(sizeof(float) * (xb_model_n_buffer(c) + 1));
    memcpy(pc, xb_model_params(c), sizeof(float) * xb_model_n_trainable(c));
    memcpy(bc, xb_model_buffers(c), sizeof(float) * xb_model_n_buffer(c));
    assert_int_equal(xb_model_load_weights(c, bad), XB_ERR_NUMERIC);
    assert_memory_equal(pc, xb_model_params(c), sizeof(float) * xb_model_n_trainable(c));
    assert_memory_equal(bc, xb_model_buffers(c), sizeof(float) * xb_model_n_buffer(c));
    free(pc); free(bc);
    xb_model_free(c);
    xb_model *r20;
    assert_int_equal(xb_model_load("resnet20", 1, &r20), XB_OK);
    assert_int_not_equal(xb_model_load_weights(r20, path), XB_OK);
    assert_non_null(strstr(xb_last_error(), path));
    xb_model_free(a); xb_model_free(b); xb_model_free(r20);
}

/* An operator that records its calls and computes the float default: the model must hand it every
 * mapped layer and group with the right shapes and weights, and reproduce the native kernels in forward
 * and backward (parameters and input). */
typedef struct rec_op_ { xb_model *m; int fwd, bin, bwt, bad; int fail_layer; } rec_op_;
static void rec_check_(rec_op_ *r, const xb_mm_call *c) {
    int p, ro, k;
    xb_model_mapped_info(r->m, c->layer, NULL, &p, &ro, &k);
    const float *w = xb_model_params(r->m) + xb_model_param(r->m, p)->offset + (size_t)c->group * ro * k;
    int groups = (int)(xb_model_param(r->m, p)->shape[0] / ro);
    if (c->rows_out != ro || c->k != k || c->w != w || c->group < 0 || c->group >= groups) r->bad++;
}
static xb_status rec_fwd_(void *ctx, const xb_mm_call *c, const float *x, float *y) {
    rec_op_ *r = ctx;
    rec_check_(r, c);
    r->fwd++;
    if (c->layer == r->fail_layer) return xb_errorf(XB_ERR_NUMERIC, "injected failure");
    xb_mm_float_forward(c, x, y);
    return XB_OK;
}
static xb_status rec_bin_(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dx) {
    rec_op_ *r = ctx;
    rec_check_(r, c);
    r->bin++;
    xb_mm_float_backward_input(c, dy, dx);
    return XB_OK;
}
static xb_status rec_bwt_(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dw) {
    rec_op_ *r = ctx;
    rec_check_(r, c);
    r->bwt++;
    xb_mm_float_backward_weight(c, x, dy, dw);
    return XB_OK;
}

/* forward + backward (training mode, dropout from a fixed stream): logits, gradients, input gradient */
static void fwd_bwd_(xb_model *m, int n, const float *x, const int32_t *lab, float *logits, float *grads, float *dx) {
    xb_rng r;
    xb_rng_seed(&r, 5, "dropout");
    xb_model_train_mode(m, 1);
    assert_int_equal(xb_model_forward(m, n, x, logits, &r), XB_OK);
    float dl[64];
    double loss;
    assert_int_equal(xb_model_loss_grad(m, n, lab, 0.0f, &loss, NULL, dl), XB_OK);
    xb_model_zero_grad(m);
    assert_int_equal(xb_model_backward_from(m, n, dl, 1, dx), XB_OK);
    memcpy(grads, xb_model_grads(m), (size_t)xb_model_n_trainable(m) * sizeof(float));
}

static void test_mm_operator(void **state) {
    (void)state;
    const char *cfg = write_cfg("small.cfg", small_cfg);
    xb_model *m;
    assert_int_equal(xb_model_load(cfg, 3, &m), XB_OK);
    const int n = 5, nx = n * 3 * 64;
    const int64_t np = xb_model_n_trainable(m);
    float *x = malloc(sizeof(float) * nx), *dx1 = malloc(sizeof(float) * nx), *dx2 = malloc(sizeof(float) * nx);
    float *g1 = malloc(sizeof(float) * np), *g2 = malloc(sizeof(float) * np), l1[20], l2[20];
    int32_t lab[5] = {0, 3, 1, 2, 3};
    xb_rng r;
    xb_rng_seed(&r, 9, "x");
    for (int i = 0; i < nx; i++) x[i] = (float)xb_rng_normal(&r);
    assert_int_equal(xb_model_set_batch(m, 8), XB_OK);
    float *keep = malloc(sizeof(float) * (xb_model_n_buffer(m) + 1));
    memcpy(keep, xb_model_buffers(m), sizeof(float) * xb_model_n_buffer(m));
    fwd_bwd_(m, n, x, lab, l1, g1, dx1);
    memcpy(xb_model_buffers(m), keep, sizeof(float) * xb_model_n_buffer(m)); /* same running stats again */
    rec_op_ rec = {m, 0, 0, 0, 0, -1};
    xb_mm_op op = {&rec, rec_fwd_, rec_bin_, rec_bwt_, NULL};
    xb_model_set_op(m, &op);
    assert_non_null(xb_model_op(m));
    fwd_bwd_(m, n, x, lab, l2, g2, dx2);
    assert_int_equal(rec.bad, 0);
    assert_int_equal(rec.fwd, 1 + 2 + 1 + 2); /* c1, c2 (2 groups), c3, fc1, fc2 */
    assert_int_equal(rec.bwt, 6);
    assert_int_equal(rec.bin, 6);            /* c1's input gradient is the image's, asked for here */
    double *ref = malloc(sizeof(double) * (np > nx ? np : nx));
    for (int i = 0; i < n * 4; i++) ref[i] = l1[i];
    XBT_CHECK_REL("operator logits", l2, ref, n * 4, 1e-5);
    for (int64_t i = 0; i < np; i++) ref[i] = g1[i];
    XBT_CHECK_REL("operator gradients", g2, ref, np, 1e-5);
    for (int i = 0; i < nx; i++) ref[i] = dx1[i];
    XBT_CHECK_REL("operator input gradient", dx2, ref, nx, 1e-5);
    /* a failing operator: the forward returns its status and names the layer */
    rec.fail_layer = 2;
    xb_model_train_mode(m, 0);
    assert_int_equal(xb_model_forward(m, n, x, l2, NULL), XB_ERR_NUMERIC);
    assert_non_null(strstr(xb_last_error(), "c3"));
    assert_non_null(strstr(xb_last_error(), "injected failure"));
    xb_model_set_op(m, NULL);
    assert_null(xb_model_op(m));
    /* labels out of range and a backward of another batch size are errors, not aborts */
    assert_int_equal(xb_model_forward(m, n, x, l2, NULL), XB_OK);
    int32_t badlab[5] = {0, 1, 4, 0, 0};
    assert_int_equal(xb_model_loss_grad(m, n, badlab, 0.0f, NULL, NULL, NULL), XB_ERR_ARG);
    assert_int_equal(xb_model_backward(m, n, badlab, 0.0f, NULL, NULL), XB_ERR_ARG);
    assert_int_equal(xb_model_loss_grad(m, n - 1, lab, 0.0f, NULL, NULL, NULL), XB_ERR_ARG);
    free(x); free(dx1); free(dx2); free(g1); free(g2); free(ref); free(keep);
    xb_model_free(m);
}

/* Eval mode: the network is piecewise linear in its input and in each weight (batchnorm is an affine
 * of its running statistics), so the gradient of F = sum(c . logits) equals a central difference
 * taken in double away from the kinks.  The running statistics stay untouched. */
static double eval_f_(xb_model *m, int n, const float *x, const float *cw) {
    float lg[40];
    assert_int_equal(xb_model_forward(m, n, x, lg, NULL), XB_OK);
    double f = 0;
    for (int i = 0; i < n * 4; i++) f += (double)cw[i] * lg[i];
    return f;
}

static void test_eval_backward(void **state) {
    (void)state;
    const char *cfg = write_cfg("small.cfg", small_cfg);
    xb_model *m;
    assert_int_equal(xb_model_load(cfg, 4, &m), XB_OK);
    const int n = 3, nx = n * 3 * 64;
    xb_rng r;
    xb_rng_seed(&r, 11, "x");
    float *x = malloc(sizeof(float) * nx), *dx = malloc(sizeof(float) * nx), cw[12];
    for (int i = 0; i < nx; i++) x[i] = (float)xb_rng_normal(&r);
    for (int i = 0; i < 12; i++) cw[i] = (float)xb_rng_normal(&r);
    float *bv = xb_model_buffers(m);
    for (int64_t i = 0; i < xb_model_n_buffer(m); i++) bv[i] = 0.5f + 0.25f * (float)(i % 5); /* non-trivial stats */
    float *keep = malloc(sizeof(float) * xb_model_n_buffer(m));
    memcpy(keep, bv, sizeof(float) * xb_model_n_buffer(m));
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    xb_model_train_mode(m, 0);
    /* the folded inference path cannot be differentiated: an error that says what to do */
    float lg[12];
    assert_int_equal(xb_model_forward(m, n, x, lg, NULL), XB_OK);
    assert_int_equal(xb_model_backward_from(m, n, cw, 1, dx), XB_ERR_STATE);
    assert_non_null(strstr(xb_last_error(), "xb_model_keep_graph"));
    xb_model_keep_graph(m, 1);
    assert_int_equal(xb_model_forward(m, n, x, lg, NULL), XB_OK);
    xb_model_zero_grad(m);
    assert_int_equal(xb_model_backward_from(m, n, cw, 1, dx), XB_OK);
    assert_memory_equal(keep, bv, sizeof(float) * xb_model_n_buffer(m));
    const double h = 1e-3;
    double maxerr = 0, maxg = 0;
    for (int t = 0; t < 40; t++) {
        int i = (int)xb_rng_below(&r, (uint64_t)nx);
        float x0 = x[i];
        x[i] = (float)(x0 + h); double fp = eval_f_(m, n, x, cw);
        x[i] = (float)(x0 - h); double fm = eval_f_(m, n, x, cw);
        x[i] = x0;
        double fd = (fp - fm) / (2 * h);
        maxerr = fmax(maxerr, fabs(fd - dx[i]));
        maxg = fmax(maxg, fabs(fd));
    }
    if (!(maxerr <= 2e-3 * maxg)) fail_msg("input gradient vs central difference: %g (scale %g)", maxerr, maxg);
    /* parameters: a conv weight, a batchnorm gamma and beta, a linear weight */
    const char *names[] = {"c2.weight", "b1.weight", "b2.bias", "fc1.weight"};
    float *pv = xb_model_params(m), *gv = xb_model_grads(m);
    for (int q = 0; q < 4; q++) {
        const xb_param *pr = xb_model_find_param(m, names[q]);
        assert_non_null(pr);
        int64_t i = pr->offset + 1;
        float p0 = pv[i];
        pv[i] = (float)(p0 + h); double fp = eval_f_(m, n, x, cw);
        pv[i] = (float)(p0 - h); double fm = eval_f_(m, n, x, cw);
        pv[i] = p0;
        double fd = (fp - fm) / (2 * h);
        if (!(fabs(fd - gv[i]) <= 2e-3 * fmax(1.0, fabs(fd)))) fail_msg("%s: gradient %g, central difference %g", names[q], gv[i], fd);
    }
    free(x); free(dx); free(keep);
    xb_model_free(m);
}

static void test_optimizers(void **state) {
    (void)state;
    xb_optim o;
    float p[2] = {1.5f, -2.0f}, g[2] = {0.25f, 0.5f};
    assert_int_equal(xb_optim_init(&o, XB_OPT_SGD, 2), XB_OK);
    o.momentum = 0.9; o.weight_decay = 0.1;
    xb_optim_step(&o, p, g, NULL, 0.5);   /* b = g + wd p = 0.4, -> p = 1.5 - 0.2 */
    assert_float_equal(p[0], 1.3f, 1e-6);
    xb_optim_step(&o, p, g, NULL, 0.5);   /* d = 0.25 + 0.13 = 0.38; b = 0.36 + 0.38 = 0.74 */
    assert_float_equal(p[0], 1.3f - 0.37f, 1e-6);
    xb_optim_free(&o);
    float pn[1] = {1.5f}, gn[1] = {0.25f};
    assert_int_equal(xb_optim_init(&o, XB_OPT_SGD, 1), XB_OK);
    o.momentum = 0.9; o.weight_decay = 0.1; o.nesterov = 1;
    xb_optim_step(&o, pn, gn, NULL, 0.5); /* d = 0.4, b = 0.4, update d + mu b = 0.76 */
    assert_float_equal(pn[0], 1.5f - 0.38f, 1e-6);
    xb_optim_free(&o);
    float q[1] = {1.0f}, h[1] = {0.5f};
    assert_int_equal(xb_optim_init(&o, XB_OPT_ADAM, 1), XB_OK);
    xb_optim_step(&o, q, h, NULL, 0.01);  /* first Adam step moves by lr * sign(g) (up to eps) */
    assert_float_equal(q[0], 0.99f, 1e-6);
    xb_optim_free(&o);
    float w1[1] = {2.0f}, z[1] = {0.0f};
    assert_int_equal(xb_optim_init(&o, XB_OPT_ADAMW, 1), XB_OK);
    o.weight_decay = 0.1;
    xb_optim_step(&o, w1, z, NULL, 0.5); /* decoupled: w *= 1 - lr wd; zero grad moves nothing else */
    assert_float_equal(w1[0], 2.0f * 0.95f, 1e-6);
    xb_optim_free(&o);
}

static void test_schedules(void **state) {
    (void)state;
    assert_float_equal(xb_schedule_lr(XB_SCHED_COSINE, 0.1, 0, 100, 10), 0.1, 1e-12);
    assert_float_equal(xb_schedule_lr(XB_SCHED_COSINE, 0.1, 50, 100, 10), 0.05, 1e-12);
    assert_float_equal(xb_schedule_lr(XB_SCHED_COSINE, 0.1, 100, 100, 10), 0.0, 1e-12);
    assert_float_equal(xb_schedule_lr(XB_SCHED_STEP, 0.1, 49, 100, 10), 0.1, 1e-12);
    assert_float_equal(xb_schedule_lr(XB_SCHED_STEP, 0.1, 50, 100, 10), 0.01, 1e-12);
    assert_float_equal(xb_schedule_lr(XB_SCHED_STEP, 0.1, 75, 100, 10), 0.001, 1e-12);
    /* torch OneCycleLR(max_lr=0.1, total_steps=100): starts at 0.004, peaks at step 29, ends at 4e-7 */
    assert_float_equal(xb_schedule_lr(XB_SCHED_ONECYCLE, 0.1, 0, 100, 10), 0.004, 1e-12);
    assert_float_equal(xb_schedule_lr(XB_SCHED_ONECYCLE, 0.1, 29, 100, 10), 0.1, 1e-12);
    assert_float_equal(xb_schedule_lr(XB_SCHED_ONECYCLE, 0.1, 99, 100, 10), 4e-7, 1e-15);
}

static xb_train_opts small_opts(void) {
    xb_train_opts o = xb_train_opts_default();
    o.batch = 16; o.epochs = 2; o.lr = 0.05; o.progress = 0; o.threads = 2; o.seed = 7;
    return o;
}

static void train_small(const char *cfg, xb_train_opts *o, float **params, int64_t *n, float **bufs, int64_t *nb,
                        xb_train_result *res) {
    xb_dataset tr, te;
    fake_data(&tr, 100, 3, 8, 8, 4, 1);
    fake_data(&te, 40, 3, 8, 8, 4, 2);
    xb_model *m;
    assert_int_equal(xb_model_load(cfg, o->seed, &m), XB_OK);
    xb_train_result r;
    if (xb_train(m, &tr, &te, o, &r) != XB_OK) fail_msg("train: %s", xb_last_error());
    if (res) *res = r;
    *n = xb_model_n_trainable(m);
    *nb = xb_model_n_buffer(m);
    *params = malloc((size_t)*n * sizeof(float));
    *bufs = malloc((size_t)*nb * sizeof(float));
    memcpy(*params, xb_model_params(m), (size_t)*n * sizeof(float));
    memcpy(*bufs, xb_model_buffers(m), (size_t)*nb * sizeof(float));
    xb_model_free(m);
    xb_dataset_free(&tr); xb_dataset_free(&te);
}

static void test_determinism_and_resume(void **state) {
    (void)state;
    const char *cfg = write_cfg("small.cfg", small_cfg);
    char out1[512], out2[512], ck[600];
    xbt_path(out1, sizeof out1, "run1");
    xbt_path(out2, sizeof out2, "run2");
    float *p1, *p2, *p3, *b1, *b2, *b3;
    int64_t n, nb;
    xb_train_opts o = small_opts();
    xb_train_result r;
    o.out_dir = out1;
    train_small(cfg, &o, &p1, &n, &b1, &nb, &r);       /* 2 epochs of 7 steps, uninterrupted */
    assert_int_equal(r.epochs_done, 2);
    assert_int_equal(r.epochs_total, 2);
    assert_int_equal(r.steps_done, 14);
    assert_true(r.seconds_total == r.seconds);
    o.out_dir = NULL;
    train_small(cfg, &o, &p2, &n, &b2, &nb, NULL);     /* again: same bits */
    assert_memory_equal(p1, p2, (size_t)n * sizeof(float));
    assert_memory_equal(b1, b2, (size_t)nb * sizeof(float));
    o.out_dir = out2; o.steps = 9;                      /* stop in the second epoch ... */
    train_small(cfg, &o, &p3, &n, &b3, &nb, &r);
    assert_memory_not_equal(p1, p3, (size_t)n * sizeof(float));
    assert_int_equal(r.epochs_done, 1);
    assert_int_equal(r.steps_done, 9);
    double first_part = r.seconds_total;
    free(p3); free(b3);
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out2);
    o.steps = 0; o.resume = ck;                         /* ... and resume: identical to uninterrupted */
    train_small(cfg, &o, &p3, &n, &b3, &nb, &r);
    assert_memory_equal(p1, p3, (size_t)n * sizeof(float));
    assert_memory_equal(b1, b3, (size_t)nb * sizeof(float));
    assert_int_equal(r.epochs_done, 1);                 /* the result counts this call and the whole run */
    assert_int_equal(r.epochs_total, 2);
    assert_int_equal(r.steps_done, 14);
    /* the checkpoint's elapsed time, taken when it was written, is added on (the first call ended later) */
    assert_true(r.seconds_total > r.seconds && r.seconds_total <= first_part + r.seconds + 1e-3);
    /* resuming with another batch size is refused with a hint */
    xb_dataset tr;
    fake_data(&tr, 100, 3, 8, 8, 4, 1);
    xb_model *m;
    assert_int_equal(xb_model_load(cfg, 7, &m), XB_OK);
    o.batch = 8;
    assert_int_equal(xb_train(m, &tr, NULL, &o, NULL), XB_ERR_ARG);
    assert_non_null(strstr(xb_last_error(), "--batch"));
    xb_model_free(m);
    xb_dataset_free(&tr);
    free(p1); free(p2); free(p3); free(b1); free(b2); free(b3);
}

/* xb_update_bn: the running statistics become the plain mean over the pass's batches (torch's
 * momentum=None), so a pass over two halves in two batches gives the mean of the two halves' passes */
static void test_update_bn(void **state) {
    (void)state;
    const char *cfg = write_cfg("small.cfg", small_cfg);
    xb_dataset d;
    fake_data(&d, 64, 3, 8, 8, 4, 3);
    xb_dataset half[2] = {d, d};
    half[0].n = half[1].n = 32;
    half[1].images += (size_t)32 * 3 * 8 * 8;
    half[1].labels += 32;
    xb_model *m;
    assert_int_equal(xb_model_load(cfg, 1, &m), XB_OK);
    int64_t nb = xb_model_n_buffer(m);
    float *bh[2], *bf = malloc((size_t)nb * sizeof(float));
    xb_rng r;
    xb_rng_seed(&r, 3, "bn");          /* the dropout before b3 draws its masks from r, in this order */
    for (int k = 0; k < 2; k++) {
        assert_int_equal(xb_update_bn(m, &half[k], 32, 0, &r), XB_OK);
        bh[k] = malloc((size_t)nb * sizeof(float));
        memcpy(bh[k], xb_model_buffers(m), (size_t)nb * sizeof(float));
    }
    xb_rng_seed(&r, 3, "bn");
    xb_model_buffers(m)[0] = 123.0f;   /* whatever was there is reset */
    assert_int_equal(xb_update_bn(m, &d, 32, 0, &r), XB_OK);
    memcpy(bf, xb_model_buffers(m), (size_t)nb * sizeof(float));
    int checked = 0;
    for (int i = 0; i < xb_model_n_params(m); i++) {
        const xb_param *p = xb_model_param(m, i);
        if (p->trainable) continue;
        for (int64_t j = 0; j < p->numel; j++) {
            float a = bh[0][p->offset + j], b = bh[1][p->offset + j], f = bf[p->offset + j];
            if (p->is_int64) { assert_float_equal(f, 2.0f, 0); assert_float_equal(a, 1.0f, 0); continue; }
            if (fabsf(f - 0.5f * (a + b)) > 1e-5f * (1 + fabsf(f)))
                fail_msg("%s[%lld]: %g, halves %g and %g", p->name, (long long)j, f, a, b);
            checked++;
        }
    }
    assert_int_equal(checked, 2 * (8 + 8 + 12));
    /* the model is left in eval mode: a forward leaves the statistics alone */
    float x[3 * 8 * 8] = {0};
    assert_int_equal(xb_model_forward(m, 1, x, NULL, NULL), XB_OK);
    assert_memory_equal(bf, xb_model_buffers(m), (size_t)nb * sizeof(float));
    free(bh[0]); free(bh[1]); free(bf);
    xb_model_free(m);
    xb_dataset_free(&d);
}

/* SWA: the same bits uninterrupted, extended from a finished run, and resumed inside the SWA epochs */
static void test_swa_resume(void **state) {
    (void)state;
    const char *cfg = write_cfg("small.cfg", small_cfg);
    char out1[512], out2[512], out3[512], ck[600], sw[3][600];
    xbt_path(out1, sizeof out1, "swa1");
    xbt_path(out2, sizeof out2, "swa2");
    xbt_path(out3, sizeof out3, "swa3");
    float *p1, *p2, *p3, *b1, *b2, *b3;
    int64_t n, nb;
    xb_train_result r;
    xb_train_opts o = small_opts();
    o.swa_epochs = 2; o.swa_lr = 0.02; o.out_dir = out1;
    train_small(cfg, &o, &p1, &n, &b1, &nb, &r);       /* 2 scheduled + 2 SWA epochs of 7 steps */
    assert_int_equal(r.epochs_total, 4);
    assert_int_equal(r.steps_done, 28);
    assert_int_equal(r.swa_n, 2);
    assert_true(r.swa_test_acc >= 0 && r.swa_test_acc <= 1);
    o.swa_epochs = 0; o.out_dir = out2;                /* the schedule alone ... */
    train_small(cfg, &o, &p2, &n, &b2, &nb, &r);
    assert_int_equal(r.swa_n, 0);
    assert_true(r.swa_test_acc < 0);
    free(p2); free(b2);
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out2);
    o.swa_epochs = 2; o.resume = ck;                   /* ... extended by SWA on resume */
    train_small(cfg, &o, &p2, &n, &b2, &nb, &r);
    assert_int_equal(r.swa_n, 2);
    assert_memory_equal(p1, p2, (size_t)n * sizeof(float));
    assert_memory_equal(b1, b2, (size_t)nb * sizeof(float));
    o.resume = NULL; o.out_dir = out3; o.steps = 24;   /* stop inside the second SWA epoch ... */
    train_small(cfg, &o, &p3, &n, &b3, &nb, &r);
    assert_int_equal(r.swa_n, 1);
    free(p3); free(b3);
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out3);
    xb_dataset tr;                                     /* (another --swa-lr is refused there) */
    fake_data(&tr, 100, 3, 8, 8, 4, 1);
    xb_model *m;
    assert_int_equal(xb_model_load(cfg, 7, &m), XB_OK);
    o.steps = 0; o.resume = ck; o.swa_lr = 0.03;
    assert_int_equal(xb_train(m, &tr, NULL, &o, NULL), XB_ERR_ARG);
    assert_non_null(strstr(xb_last_error(), "--swa-lr"));
    o.swa_lr = 0.02; o.swa_epochs = 0;
    assert_int_equal(xb_train(m, &tr, NULL, &o, NULL), XB_ERR_ARG);
    assert_non_null(strstr(xb_last_error(), "--swa-epochs"));
    xb_model_free(m);
    xb_dataset_free(&tr);
    o.swa_epochs = 2;                                  /* ... and resume: the same bits */
    train_small(cfg, &o, &p3, &n, &b3, &nb, &r);
    assert_int_equal(r.swa_n, 2);
    assert_memory_equal(p1, p3, (size_t)n * sizeof(float));
    assert_memory_equal(b1, b3, (size_t)nb * sizeof(float));
    /* the three SWA weight files are the same bytes */
    const char *dirs[3] = {out1, out2, out3};
    size_t len[3];
    char *data[3];
    for (int k = 0; k < 3; k++) {
        snprintf(sw[k], sizeof sw[k], "%s/swa-weights.safetensors", dirs[k]);
        FILE *f = fopen(sw[k], "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        len[k] = (size_t)ftell(f);
        rewind(f);
        data[k] = malloc(len[k]);
        assert_int_equal(fread(data[k], 1, len[k], f), len[k]);
        fclose(f);
    }
    for (int k = 1; k < 3; k++) {
        assert_int_equal(len[k], len[0]);
        assert_memory_equal(data[k], data[0], len[0]);
    }
    /* SWA needs a rate and scheduled epochs */
    o.resume = NULL; o.swa_lr = 0;
    assert_int_equal(xb_model_load(cfg, 7, &m), XB_OK);
    fake_data(&tr, 100, 3, 8, 8, 4, 1);
    assert_int_equal(xb_train(m, &tr, NULL, &o, NULL), XB_ERR_ARG);
    o.swa_lr = 0.02; o.epochs = 0; o.steps = 10;
    assert_int_equal(xb_train(m, &tr, NULL, &o, NULL), XB_ERR_ARG);
    assert_non_null(strstr(xb_last_error(), "--epochs"));
    xb_model_free(m);
    xb_dataset_free(&tr);
    for (int k = 0; k < 3; k++) free(data[k]);
    free(p1); free(p2); free(p3); free(b1); free(b2); free(b3);
}

static void test_learns_and_nan(void **state) {
    (void)state;
    const char *cfg = write_cfg("small.cfg", small_cfg);
    xb_dataset tr;
    fake_data(&tr, 200, 3, 8, 8, 4, 5);
    xb_model *m;
    assert_int_equal(xb_model_load(cfg, 1, &m), XB_OK);
    xb_train_opts o = small_opts();
    o.epochs = 4;
    o.augment = 0; /* the toy classes are pixel-position patterns that crops and flips would scramble */
    xb_train_result r;
    assert_int_equal(xb_train(m, &tr, &tr, &o, &r), XB_OK);
    if (r.test_acc < 0.9) fail_msg("a separable toy task reached only %.1f%%", 100 * r.test_acc);
    /* NaN weights -> non-finite loss -> XB_ERR_NUMERIC with a hint, not a crash */
    xb_model_params(m)[0] = NAN;
    o.epochs = 1;
    assert_int_equal(xb_train(m, &tr, NULL, &o, &r), XB_ERR_NUMERIC);
    assert_non_null(strstr(xb_last_error(), "HINT"));
    xb_model_free(m);
    xb_dataset_free(&tr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zoo_loads),        cmocka_unit_test(test_resnet20_names),
        cmocka_unit_test(test_bad_configs),      cmocka_unit_test(test_weights_roundtrip),
        cmocka_unit_test(test_mm_operator),
        cmocka_unit_test(test_eval_backward),      cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_schedules),        cmocka_unit_test(test_determinism_and_resume),
        cmocka_unit_test(test_update_bn),        cmocka_unit_test(test_swa_resume),
        cmocka_unit_test(test_learns_and_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
