/* test_qat.c -- quantization-aware training in the model: 16-bit QAT equals the float engine to the
 * quantization step, the weight-quantizing operator's gradients (fast path and straight-through
 * derivative), PACT's alpha gradient, bit-exact resume with quantizers, the [quantize] configs
 * (rewrite, per-layer overrides, first/last bits, errors with file:line) and the export's codes. */
#include "testutil.h"
#include "xb_xbar.h"

/* a small CNN in the model grammar: conv, batchnorm, relu, pool, linear */
static const char small_cfg[] = "[net]\nname = small\ninput = 3x8x8\nclasses = 4\n"
                                "[conv2d c1]\nout_channels = 6\nkernel = 3\npadding = 1\n"
                                "[batchnorm b1]\n[relu r1]\n[maxpool p1]\nkernel = 2\n"
                                "[conv2d c2]\nout_channels = 8\nkernel = 3\npadding = 1\n[relu r2]\n"
                                "[gap g]\n[linear fc]\nout_features = 4\n";

typedef struct qm_ { xb_model *m; xb_qop *q; xb_qw_spec *specs; char *text; } qm_;

/* the model of cfg quantized by qtext (may be NULL) and flags, with the operator installed */
static xb_status qm_load_(const char *cfg, const char *qtext, const xb_quant_flags *fl, uint64_t seed, qm_ *z) {
    memset(z, 0, sizeof *z);
    int any, wany;
    xb_status st = xb_quant_rewrite(cfg, "small.cfg", qtext, "q.cfg", fl, &z->text, &any);
    if (st) return st;
    if ((st = xb_model_load_text(z->text, strlen(z->text), "small.cfg", seed, &z->m))) return st;
    z->specs = calloc((size_t)xb_model_n_mapped(z->m), sizeof *z->specs);
    if ((st = xb_quant_specs(z->text, "small.cfg", z->m, z->specs, &wany))) return st;
    if (wany) {
        if ((st = xb_qop_init(z->m, z->specs, 5, &z->q))) return st;
        xb_mm_op op = xb_qop_op(z->q, NULL);
        xb_model_set_op(z->m, &op);
    }
    return XB_OK;
}

static void qm_free_(qm_ *z) {
    xb_qop_free(z->q);
    xb_model_free(z->m);
    free(z->specs);
    free(z->text);
}

static xb_quant_flags flags_(int wb, int ab) {
    xb_quant_flags f = {wb, ab, NULL, NULL, NULL, -1, -1};
    return f;
}

/* forward + backward of a batch: logits and all gradients */
static void step_(xb_model *m, int n, const float *x, const int32_t *lab, float *logits, float *grads) {
    xb_model_train_mode(m, 1);
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    assert_int_equal(xb_model_forward(m, n, x, logits, NULL), XB_OK);
    assert_int_equal(xb_model_backward(m, n, lab, 0.0f, NULL, NULL), XB_OK);
    memcpy(grads, xb_model_grads(m), sizeof(float) * (size_t)xb_model_n_trainable(m));
}

/* 16-bit weights and activations (a clip above every activation) give the float model's logits and
 * gradients to the quantization step; 4 bits do not (the comparison can fail). */
static void test_qat16_equals_float(void **state) {
    (void)state;
    const int n = 16;
    float x[16 * 3 * 64], lf[16 * 4], lq[16 * 4];
    int32_t lab[16];
    xb_rng r;
    xb_rng_seed(&r, 2, "x");
    for (int i = 0; i < n * 3 * 64; i++) x[i] = (float)xb_rng_normal(&r);
    for (int i = 0; i < n; i++) lab[i] = (int32_t)xb_rng_below(&r, 4);
    xb_model *mf;
    assert_int_equal(xb_model_load_text(small_cfg, sizeof small_cfg - 1, "small.cfg", 3, &mf), XB_OK);
    const int64_t np = xb_model_n_trainable(mf);
    float *gf = malloc(sizeof(float) * np), *gq = malloc(sizeof(float) * np);
    step_(mf, n, x, lab, lf, gf);
    for (int bits = 16; bits >= 4; bits -= 12) {
        static const char q16[] = "[quantize]\nact_clip = 16\n";
        qm_ z;
        xb_quant_flags fl = flags_(bits, bits);
        assert_int_equal(qm_load_(small_cfg, q16, &fl, 3, &z), XB_OK);
        assert_int_equal(xb_model_n_trainable(z.m), np); /* no trainable parameter added (fixed clip) */
        step_(z.m, n, x, lab, lq, gq);
        double el = 0, eg = 0, rl = 0, rg = 0;
        for (int i = 0; i < n * 4; i++) { el = fmax(el, fabs(lq[i] - lf[i])); rl = fmax(rl, fabs(lf[i])); }
        for (int64_t i = 0; i < np; i++) { eg = fmax(eg, fabs(gq[i] - gf[i])); rg = fmax(rg, fabs(gf[i])); }
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  %d bits: logits %.2e, gradients %.2e\n", bits, el / rl, eg / rg);
        if (bits == 16) {
            /* weights: 2^-15 relative per channel; activations: 16 / 65535 absolute, far below the values */
            if (!(el / rl < 5e-4 && eg / rg < 5e-4)) fail_msg("16-bit QAT vs float: logits %.2e, grads %.2e", el / rl, eg / rg);
        } else if (!(el / rl > 1e-2)) {
            fail_msg("4-bit QAT is as close to float as 16-bit (%.2e): the quantizers did not run", el / rl);
        }
        qm_free_(&z);
    }
    free(gf); free(gq);
    xb_model_free(mf);
}

/* The operator's weight gradient is (dy x^T) .* ste: DoReFa (ste != 1, the fast path's weight_grad_scale)
 * and uniform (ste = 1); the forward uses exactly the quantized weights. */
static void test_qop_gradients(void **state) {
    (void)state;
    static const char lin[] = "[net]\ninput = 1x1x5\nclasses = 3\n[flatten f]\n[linear fc]\nout_features = 3\n"
                              "bias = false\n";
    for (int kind = 0; kind < 2; kind++) {
        qm_ z;
        xb_quant_flags fl = {kind ? 3 : 4, 0, kind ? "dorefa" : "uniform", NULL, NULL, -1, -1};
        assert_int_equal(qm_load_(lin, NULL, &fl, 1, &z), XB_OK);
        xb_model *m = z.m;
        const xb_param *p = xb_model_find_param(m, "fc.weight");
        float *w = xb_model_params(m) + p->offset;
        const int n = 4;
        float x[4 * 5], lg[4 * 3], dl[4 * 3], wq[15], ste[15];
        int32_t lab[4] = {0, 2, 1, 2};
        xb_rng r;
        xb_rng_seed(&r, 9, "x");
        for (int i = 0; i < 15; i++) w[i] = (float)(1.5 * xb_rng_normal(&r));
        for (int i = 0; i < n * 5; i++) x[i] = (float)xb_rng_normal(&r);
        assert_int_equal(xb_qw_apply(&z.specs[0], 3, 5, w, wq, NULL, NULL, ste, 0, 0), XB_OK);
        int ones = 1;
        for (int i = 0; i < 15; i++) ones &= ste[i] == 1.0f;
        assert_int_equal(ones, kind == 0); /* DoReFa's derivative is not 1 */
        xb_model_train_mode(m, 1);
        assert_int_equal(xb_model_set_batch(m, n), XB_OK);
        assert_int_equal(xb_model_forward(m, n, x, lg, NULL), XB_OK);
        for (int j = 0; j < n; j++)
            for (int o = 0; o < 3; o++) {
                double y = 0;
                for (int i = 0; i < 5; i++) y += (double)wq[o * 5 + i] * x[j * 5 + i];
                if (fabs(lg[j * 3 + o] - y) > 1e-5) fail_msg("kind %d: logit %g, want %g", kind, lg[j * 3 + o], y);
            }
        assert_int_equal(xb_model_loss_grad(m, n, lab, 0.0f, NULL, NULL, dl), XB_OK);
        xb_model_zero_grad(m);
        assert_int_equal(xb_model_backward_from(m, n, dl, 1, NULL), XB_OK);
        const float *g = xb_model_grads(m) + p->offset;
        for (int o = 0; o < 3; o++)
            for (int i = 0; i < 5; i++) {
                double want = 0;
                for (int j = 0; j < n; j++) want += (double)dl[j * 3 + o] * x[j * 5 + i];
                want *= ste[o * 5 + i];
                if (fabs(g[o * 5 + i] - want) > 1e-5) fail_msg("kind %d: dW[%d][%d] = %g, want %g", kind, o, i, g[o * 5 + i], want);
            }
        qm_free_(&z);
    }
}

/* The operator's two paths agree: the fast path (the model's fused kernels with the quantized weights and
 * weight_grad_scale) and the callbacks (im2col products, the derivative applied in backward_weight), on
 * a CNN with DoReFa weights (derivative != 1) and binary weights, logits and every gradient. */
static void test_qop_paths(void **state) {
    (void)state;
    static const char *const qs[] = {"[quantize]\nweight = dorefa\nweight_bits = 3\nact_bits = 4\n",
                                     "[quantize]\nweight = binary\nact = pact\nact_bits = 3\n"};
    const int n = 8;
    float x[8 * 3 * 64], l1[8 * 4], l2[8 * 4];
    int32_t lab[8];
    xb_rng r;
    xb_rng_seed(&r, 4, "x");
    for (int i = 0; i < n * 3 * 64; i++) x[i] = (float)xb_rng_normal(&r);
    for (int i = 0; i < n; i++) lab[i] = (int32_t)xb_rng_below(&r, 4);
    for (int k = 0; k < 2; k++) {
        qm_ z;
        assert_int_equal(qm_load_(small_cfg, qs[k], NULL, 3, &z), XB_OK);
        const int64_t np = xb_model_n_trainable(z.m);
        float *w = xb_model_params(z.m), *g1 = malloc(sizeof(float) * np), *g2 = malloc(sizeof(float) * np);
        for (int64_t i = 0; i < np; i++) w[i] *= 12.0f; /* some weights beyond 1: binary's derivative is 0 there */
        step_(z.m, n, x, lab, l1, g1);
        xb_mm_op op = *xb_model_op(z.m);
        op.linear_weights = NULL; /* the callbacks only */
        op.weight_grad_scale = NULL;
        xb_model_set_op(z.m, &op);
        step_(z.m, n, x, lab, l2, g2);
        double el = 0, eg = 0, rg = 0;
        for (int i = 0; i < n * 4; i++) el = fmax(el, fabs(l1[i] - l2[i]));
        for (int64_t i = 0; i < np; i++) { eg = fmax(eg, fabs(g1[i] - g2[i])); rg = fmax(rg, fabs(g1[i])); }
        int zeros = 0;
        const xb_param *pc = xb_model_find_param(z.m, "c2.weight");
        for (int64_t i = 0; i < pc->numel; i++) zeros += g1[pc->offset + i] == 0.0f;
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  case %d: logits %.2e, gradients %.2e, zero dW %d\n", k, el, eg / rg, zeros);
        if (!(el < 1e-4 && eg / rg < 1e-5)) fail_msg("case %d: fast path vs callbacks: logits %.2e, gradients %.2e", k, el, eg / rg);
        if (k == 1 && !zeros) fail_msg("binary weights beyond 1 kept their gradient");
        free(g1); free(g2);
        qm_free_(&z);
    }
}

/* PACT: the gradient passes below alpha; d alpha is the sum of the quantizer's output gradient where the
 * input was clipped at the top. */
static void test_pact_alpha(void **state) {
    (void)state;
    static const char cfg[] = "[net]\ninput = 1x1x4\nclasses = 3\n[flatten f]\n[linear a]\nout_features = 6\n"
                              "[relu r]\n[quant q]\nmode = pact\nbits = 2\nclip = 0.5\n[linear b]\nout_features = 3\n"
                              "bias = false\n";
    xb_model *m;
    assert_int_equal(xb_model_load_text(cfg, sizeof cfg - 1, "pact.cfg", 4, &m), XB_OK);
    const xb_param *pa = xb_model_find_param(m, "q.alpha");
    assert_non_null(pa);
    assert_true(pa->trainable && xb_model_params(m)[pa->offset] == 0.5f);
    const int n = 8;
    float x[8 * 4], lg[8 * 3], dl[8 * 3], dx[8 * 4];
    int32_t lab[8];
    xb_rng r;
    xb_rng_seed(&r, 5, "x");
    for (int i = 0; i < n * 4; i++) x[i] = (float)(2 * xb_rng_normal(&r));
    for (int i = 0; i < n; i++) lab[i] = (int32_t)xb_rng_below(&r, 3);
    xb_model_train_mode(m, 1);
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    assert_int_equal(xb_model_forward(m, n, x, lg, NULL), XB_OK);
    assert_int_equal(xb_model_loss_grad(m, n, lab, 0.0f, NULL, NULL, dl), XB_OK);
    xb_model_zero_grad(m);
    assert_int_equal(xb_model_backward_from(m, n, dl, 1, dx), XB_OK);
    /* the relu's output (6, n) and b's weights give the quantizer's output gradient */
    int ir = -1, iq = -1;
    for (int i = 0; i < xb_model_n_nodes(m); i++) {
        if (!strcmp(xb_model_node_name(m, i), "r")) ir = i;
        if (!strcmp(xb_model_node_name(m, i), "q")) iq = i;
    }
    const float *xr = xb_model_node_output(m, ir), *yq = xb_model_node_output(m, iq);
    const float *wb = xb_model_params(m) + xb_model_find_param(m, "b.weight")->offset;
    double dal = 0;
    int clipped = 0, inside = 0;
    const float step = 0.5f / 3;
    for (int c = 0; c < 6; c++)
        for (int j = 0; j < n; j++) {
            double g = 0;
            for (int o = 0; o < 3; o++) g += (double)wb[o * 6 + c] * dl[j * 3 + o];
            const float v = xr[c * n + j], code = rintf(v / step);
            const float want = fminf(code, 3.0f) * step;
            if (fabsf(yq[c * n + j] - want) > 1e-7f) fail_msg("q(%g) = %g, want %g", v, yq[c * n + j], want);
            if (code > 3) { dal += g; clipped++; } else inside++;
        }
    assert_true(clipped > 3 && inside > 3);
    const double got = xb_model_grads(m)[pa->offset];
    if (fabs(got - dal) > 1e-5 * (1 + fabs(dal))) fail_msg("d alpha = %g, want %g", got, dal);
    xb_model_free(m);
}

static xb_train_opts opts_(void) {
    xb_train_opts o = xb_train_opts_default();
    o.epochs = 2; o.batch = 16; o.lr = 0.05; o.threads = 1; o.progress = 0; o.augment = 1; o.eval_limit = 0;
    return o;
}

static void train_(const char *qtext, const xb_quant_flags *fl, xb_train_opts *o, float **p, int64_t *np, float **b,
                   int64_t *nb) {
    xb_dataset tr = xbt_synthetic_cifar(112);
    tr.h = tr.w = 8; /* the first 8x8x3 bytes of each image: the synthetic data is random anyway */
    char cfg[sizeof small_cfg + 8];
    snprintf(cfg, sizeof cfg, "%s", small_cfg);
    memcpy(strstr(cfg, "classes = 4"), "classes =10", 11);          /* the synthetic data's 10 classes */
    memcpy(strstr(cfg, "out_features = 4"), "out_features =10", 16);
    qm_ z;
    assert_int_equal(qm_load_(cfg, qtext, fl, 7, &z), XB_OK);
    xb_train_result r;
    if (xb_train(z.m, &tr, NULL, o, &r) != XB_OK) fail_msg("train: %s", xb_last_error());
    *np = xb_model_n_trainable(z.m);
    *nb = xb_model_n_buffer(z.m);
    *p = malloc(sizeof(float) * (size_t)*np);
    *b = malloc(sizeof(float) * (size_t)*nb + 4);
    memcpy(*p, xb_model_params(z.m), sizeof(float) * (size_t)*np);
    memcpy(*b, xb_model_buffers(z.m), sizeof(float) * (size_t)*nb);
    qm_free_(&z);
    xb_dataset_free(&tr);
}

/* Training with quantizers (weights 3-bit stochastic, PACT activations; uniform calibrated ones) stopped
 * in the second epoch and resumed from its checkpoint gives the uninterrupted run's bits. */
static void test_qat_resume(void **state) {
    (void)state;
    static const char *const qs[] = {"[quantize]\nweight = uniform\nweight_bits = 3\nstochastic = true\n"
                                     "act = pact\nact_bits = 3\n",
                                     "[quantize]\nweight = ternary-asym\nact_bits = 4\n"};
    for (int k = 0; k < 2; k++) {
        char out[512], ck[600];
        snprintf(out, sizeof out, "%s/qat-run%d", xbt_tmpdir(), k);
        float *p1, *b1, *p2, *b2;
        int64_t np, nb;
        xb_train_opts o = opts_();
        train_(qs[k], NULL, &o, &p1, &np, &b1, &nb);
        o.out_dir = out; o.steps = 10;
        train_(qs[k], NULL, &o, &p2, &np, &b2, &nb);
        assert_memory_not_equal(p1, p2, (size_t)np * sizeof(float));
        free(p2); free(b2);
        snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out);
        o.steps = 0; o.resume = ck;
        train_(qs[k], NULL, &o, &p2, &np, &b2, &nb);
        assert_memory_equal(p1, p2, (size_t)np * sizeof(float));
        assert_memory_equal(b1, b2, (size_t)nb * sizeof(float));
        free(p1); free(b1); free(p2); free(b2);
    }
}

/* The rewrite: [quant] layers after relus, per-layer overrides, first/last bits, and a resolved text that
 * rewrites to itself. */
static void test_rewrite(void **state) {
    (void)state;
    static const char q[] = "[quantize]\nweight = binary\nact_bits = 4\nfirst_bits = 8\nlast_bits = 0\n"
                            "[quantize c2.weight]\nweight = ternary-sym\ndelta = 0.5\n"
                            "[quantize r2.output]\nact = pact\nact_bits = 3\nact_clip = 2\n";
    char *t1, *t2;
    int any;
    assert_int_equal(xb_quant_rewrite(small_cfg, "small.cfg", q, "q.cfg", NULL, &t1, &any), XB_OK);
    assert_true(any);
    assert_non_null(strstr(t1, "[quant r1_q]\nmode = uniform\nbits = 4\nclip = calibrated\n"));
    assert_non_null(strstr(t1, "[quant r2_q]\nmode = pact\nbits = 3\nclip = 2\n"));
    assert_int_equal(xb_quant_rewrite(t1, "model.cfg", NULL, NULL, NULL, &t2, &any), XB_OK);
    assert_string_equal(t1, t2);
    xb_model *m;
    assert_int_equal(xb_model_load_text(t1, strlen(t1), "model.cfg", 1, &m), XB_OK);
    xb_qw_spec s[3];
    assert_int_equal(xb_quant_specs(t1, "model.cfg", m, s, &any), XB_OK);
    assert_int_equal(s[0].kind, XB_QW_UNIFORM);     /* first_bits */
    assert_int_equal(s[0].bits, 8);
    assert_int_equal(s[1].kind, XB_QW_TERNARY_SYM); /* the override */
    assert_true(s[1].delta == 0.5);
    assert_int_equal(s[2].kind, XB_QW_NONE);        /* last_bits = 0: float */
    /* flags override the file's defaults */
    xb_quant_flags fl = {5, 0, "uniform", NULL, NULL, -1, -1};
    free(t2);
    assert_int_equal(xb_quant_rewrite(small_cfg, "small.cfg", q, "q.cfg", &fl, &t2, &any), XB_OK);
    xb_qw_spec s2[3];
    assert_int_equal(xb_quant_specs(t2, "model.cfg", m, s2, &any), XB_OK);
    assert_int_equal(s2[0].bits, 8);
    assert_int_equal(s2[1].kind, XB_QW_TERNARY_SYM);
    free(t1); free(t2);
    xb_model_free(m);
}

static void expect_error_(const char *q, const xb_quant_flags *fl, xb_status want, const char *place, const char *what) {
    char *t = NULL;
    int any;
    xb_status st = xb_quant_rewrite(small_cfg, "small.cfg", q, "q.cfg", fl, &t, &any);
    free(t);
    xbt_assert_error(st, want, place, what);
    if (!strstr(xb_last_error(), "HINT")) fail_msg("no HINT in \"%s\"", xb_last_error());
}

static void test_config_errors(void **state) {
    (void)state;
    expect_error_("[quantize]\nweight_bits = 0\n", NULL, XB_ERR_CONFIG, "q.cfg:2", "weight_bits");
    expect_error_("[quantize]\nweight_bits = 33\n", NULL, XB_ERR_CONFIG, "q.cfg:2", "weight_bits");
    expect_error_("\n[quantize]\nweight = uniform\nweight_bits = 1\n", NULL, XB_ERR_ARG, "small.cfg", "2..16");
    expect_error_("[quantize c9.weight]\nweight_bits = 4\n", NULL, XB_ERR_CONFIG, "q.cfg:1", "c9");
    expect_error_("[quantize p1.weight]\nweight = ternary\n", NULL, XB_ERR_CONFIG, "q.cfg:1", "conv2d or linear");
    expect_error_("[quantize c1.output]\nact_bits = 4\n", NULL, XB_ERR_CONFIG, "q.cfg:1", "relu");
    expect_error_("[quantize c1]\nweight_bits = 4\n", NULL, XB_ERR_CONFIG, "q.cfg:1", "LAYER.weight");
    expect_error_("[quantize]\nact_bits = 17\n", NULL, XB_ERR_CONFIG, "q.cfg:2", "act_bits");
    expect_error_("[quantize]\nwieght = binary\n", NULL, XB_ERR_CONFIG, "q.cfg:2", "wieght");
    expect_error_("[quantize]\nweight = quaternary\n", NULL, XB_ERR_CONFIG, "q.cfg:2", "quaternary");
    expect_error_("[conv2d x]\n", NULL, XB_ERR_CONFIG, "q.cfg:1", "quantization config");
    expect_error_("[quantize]\nact_bits = 4\nact_clip = calibrate\n", NULL, XB_ERR_CONFIG, "q.cfg:3", "act_clip");
    xb_quant_flags fl = {0, 0, "quaternary", NULL, NULL, -1, -1};
    expect_error_(NULL, &fl, XB_ERR_ARG, "--quant", "quaternary");
    /* a [quant] layer in a model file */
    static const char bad[] = "[net]\ninput = 1x1x4\nclasses = 4\n[relu r]\n[quant q]\nmode = dorefa\nbits = 2\nclip = 2\n"
                              "[flatten f]\n[linear l]\nout_features = 4\n";
    xb_model *m;
    xbt_assert_error(xb_model_load_text(bad, sizeof bad - 1, "m.cfg", 1, &m), XB_ERR_CONFIG, "m.cfg:8", "dorefa");
    static const char bad2[] = "[net]\ninput = 1x1x4\nclasses = 4\n[relu r]\n[quant q]\nbits = 0\n"
                               "[flatten f]\n[linear l]\nout_features = 4\n";
    xbt_assert_error(xb_model_load_text(bad2, sizeof bad2 - 1, "m.cfg", 1, &m), XB_ERR_CONFIG, "m.cfg:6", "bits");
}

/* The export: quantized weights under the model's names (loadable), and codes x scales equal to them. */
static void test_export(void **state) {
    (void)state;
    qm_ z;
    xb_quant_flags fl = {4, 4, NULL, NULL, NULL, -1, -1};
    assert_int_equal(qm_load_(small_cfg, NULL, &fl, 2, &z), XB_OK);
    char pw[512], pc[512];
    xbt_path(pw, sizeof pw, "qw.safetensors");
    xbt_path(pc, sizeof pc, "qc.safetensors");
    assert_int_equal(xb_quant_export(z.q, z.m, pw, pc), XB_OK);
    xb_model *m2;
    assert_int_equal(xb_model_load_text(z.text, strlen(z.text), "model.cfg", 9, &m2), XB_OK);
    assert_int_equal(xb_model_load_weights(m2, pw), XB_OK);
    xb_safetensors st;
    assert_int_equal(xb_st_load(pc, &st), XB_OK);
    for (int i = 0; i < xb_model_n_mapped(m2); i++) {
        const char *name;
        int param, ro, k;
        xb_model_mapped_info(m2, i, &name, &param, &ro, &k);
        char nc[200], ns[200];
        snprintf(nc, sizeof nc, "%s.weight_code", name);
        snprintf(ns, sizeof ns, "%s.weight_scale", name);
        const xb_tensor *tc = xb_st_get(&st, nc), *ts = xb_st_get(&st, ns);
        assert_non_null(tc);
        assert_non_null(ts);
        assert_int_equal(tc->dtype, XB_I32);
        const float *w = xb_model_params(m2) + xb_model_param(m2, param)->offset;
        const float *master = xb_model_params(z.m) + xb_model_param(z.m, param)->offset;
        int differs = 0;
        for (int r = 0; r < ro; r++)
            for (int j = 0; j < k; j++) {
                const int32_t c = ((const int32_t *)tc->data)[r * k + j];
                const float s = ((const float *)ts->data)[r];
                if (c < -7 || c > 7 || w[r * k + j] != (float)c * s) fail_msg("%s[%d][%d]: %g != %d x %g", name, r, j, w[r * k + j], c, s);
                differs |= w[r * k + j] != master[r * k + j];
            }
        assert_true(differs); /* the file holds the quantized weights, not the master copy */
    }
    xb_st_free(&st);
    xb_model_free(m2);
    qm_free_(&z);
    /* a float model's weights load into its quantized twin: the quantizers' alpha and clip keep their start */
    static const char qp[] = "[quantize]\nweight = uniform\nweight_bits = 4\nact = pact\nact_bits = 4\nact_clip = 2.5\n"
                             "[quantize r2.output]\nact = uniform\nact_bits = 4\nact_clip = calibrated\n";
    xb_model *fm;
    assert_int_equal(xb_model_load_text(small_cfg, sizeof small_cfg - 1, "small.cfg", 4, &fm), XB_OK);
    char pf[512];
    xbt_path(pf, sizeof pf, "float.safetensors");
    assert_int_equal(xb_model_save_weights(fm, pf), XB_OK);
    assert_int_equal(qm_load_(small_cfg, qp, NULL, 2, &z), XB_OK);
    assert_int_equal(xb_model_load_weights(z.m, pf), XB_OK);
    const xb_param *c1 = xb_model_find_param(z.m, "c1.weight"), *al = xb_model_find_param(z.m, "r1_q.alpha");
    assert_non_null(al);
    assert_memory_equal(xb_model_params(z.m) + c1->offset, xb_model_params(fm) + c1->offset, sizeof(float) * c1->numel);
    assert_true(xb_model_params(z.m)[al->offset] == 2.5f);
    assert_non_null(xb_model_find_param(z.m, "r2_q.clip"));
    /* but a layer's own tensor may not be missing */
    xb_safetensors part;
    assert_int_equal(xb_st_load(pf, &part), XB_OK);
    part.e[0].name[0] = 'X';
    char pp2[512];
    xbt_path(pp2, sizeof pp2, "part.safetensors");
    assert_int_equal(xb_st_save(pp2, &part), XB_OK);
    xb_st_free(&part);
    assert_int_not_equal(xb_model_load_weights(z.m, pp2), XB_OK);
    xb_model_free(fm);
    qm_free_(&z);
}

/* The model quantized by the config q, exported (weights files named after tag) and loaded back from its
 * text and weights; x: n random inputs drawn with seed, ls: the loaded model's software logits. */
static xb_model *exported_(const char *q, const char *tag, uint64_t seed, int n, qm_ *z, float *x, float *ls) {
    if (qm_load_(small_cfg, q, NULL, 6, z) != XB_OK) fail_msg("quantize: %s", xb_last_error());
    char pw[512], pc[512], nw[64], nc[64];
    snprintf(nw, sizeof nw, "%s.safetensors", tag);
    snprintf(nc, sizeof nc, "%s-codes.safetensors", tag);
    xbt_path(pw, sizeof pw, nw);
    xbt_path(pc, sizeof pc, nc);
    assert_int_equal(xb_quant_export(z->q, z->m, pw, pc), XB_OK);
    xb_model *m;
    assert_int_equal(xb_model_load_text(z->text, strlen(z->text), "model.cfg", 1, &m), XB_OK);
    assert_int_equal(xb_model_load_weights(m, pw), XB_OK);
    xb_rng r;
    xb_rng_seed(&r, seed, "x");
    for (int i = 0; i < n * 3 * 64; i++) x[i] = (float)xb_rng_normal(&r);
    assert_int_equal(xb_model_set_batch(m, n), XB_OK);
    xb_model_train_mode(m, 0);
    assert_int_equal(xb_model_forward(m, n, x, ls, NULL), XB_OK);
    return m;
}

/* A quantized model on an ideal crossbar whose weight bits match (b - 1 magnitude bits per differential
 * pair for b-bit weights with one scale per layer; no DAC or ADC) equals the quantized software model to
 * float rounding: the mapper takes the trained codes and scale exactly.  One bit fewer does not. */
static void test_crossbar_exact(void **state) {
    (void)state;
    static const char q[] = "[quantize]\nweight = uniform\nweight_bits = 4\nweight_scale = tensor\nact_bits = 4\n"
                            "act_clip = 3\n";
    qm_ z;
    const int n = 8;
    float x[8 * 3 * 64], ls[8 * 4], lh[8 * 4];
    xb_model *m = exported_(q, "xq", 8, n, &z, x, ls);
    /* non-trivial batchnorm statistics, and the software logits again with them */
    float *bv = xb_model_buffers(m);
    for (int i = 0; i < xb_model_n_params(m); i++) {
        const xb_param *p = xb_model_param(m, i);
        if (p->trainable || p->numel < 2) continue;
        for (int64_t j = 0; j < p->numel; j++) bv[p->offset + j] = strstr(p->name, "var") ? 1.5f : 0.1f;
    }
    assert_int_equal(xb_model_forward(m, n, x, ls, NULL), XB_OK);
    for (int bits = 3; bits >= 2; bits--) {
        char text[256];
        snprintf(text, sizeof text, "[tile]\nrows = 16\ncols = 16\nmap_first = 1\nmap_last = 1\n[mapping]\nweight_bits = %d\nbits_per_cell = %d\n"
                 "[circuit]\nsolver = none\n", bits, bits);
        xb_hw hw;
        assert_int_equal(xb_hw_parse_string(text, strlen(text), "hw.cfg", &hw), XB_OK);
        xb_xnet *xn;
        assert_int_equal(xb_xnet_init(&hw, m, &xn), XB_OK);
        assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
        xb_xnet_attach(xn);
        assert_int_equal(xb_model_forward(m, n, x, lh, NULL), XB_OK);
        xb_model_set_op(m, NULL);
        xb_xnet_free(xn);
        double e = 0, rr = 0;
        for (int i = 0; i < n * 4; i++) { e = fmax(e, fabs(lh[i] - ls[i])); rr = fmax(rr, fabs(ls[i])); }
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  crossbar weight_bits %d: logits %.2e\n", bits, e / rr);
        if (bits == 3 && !(e / rr < 1e-5)) fail_msg("matching crossbar vs quantized model: %.2e", e / rr);
        if (bits == 2 && !(e / rr > 1e-3)) fail_msg("a 2-bit crossbar reproduces 4-bit weights (%.2e)", e / rr);
    }
    xb_model_free(m);
    qm_free_(&z);
}

/* Per-layer precisions: first and last layers at 8 bits, the middle at 4, one scale per layer.  Mapped each at
 * its own weight bits (xb_hw_quant_precisions) on an ideal crossbar the network equals the software model;
 * at the config's one weight width it does not.  With a bit-serial 1-bit DAC the 4-bit activations take 4
 * input planes, not the config's 8. */
static void test_crossbar_precisions(void **state) {
    (void)state;
    static const char q[] = "[quantize]\nweight = uniform\nweight_bits = 4\nweight_scale = tensor\nfirst_bits = 8\n"
                            "last_bits = 8\nact_bits = 4\nact_clip = 3\n";
    qm_ z;
    const int n = 8;
    float x[8 * 3 * 64], ls[8 * 4], lh[8 * 4];
    xb_model *m = exported_(q, "xp", 9, n, &z, x, ls);
    for (int serial = 0; serial < 2; serial++)
        for (int own = 1; own >= 0; own--) {
            char text[400];
            snprintf(text, sizeof text, "[tile]\nrows = 16\ncols = 16\nmap_first = 1\nmap_last = 1\n[mapping]\n"
                     "weight_bits = 7\nbits_per_cell = 7\n%s[circuit]\nsolver = none\n",
                     serial ? "[input]\ndac_bits = 1\nbit_serial = true\ninput_bits = 8\ninput_range = fixed\n"
                              "input_full_scale = 3\n" : "");
            xb_hw hw;
            if (xb_hw_parse_string(text, strlen(text), "hw.cfg", &hw) != XB_OK) fail_msg("%s", xb_last_error());
            xb_layer_precision prec[3];
            assert_int_equal(xb_hw_quant_precisions(&hw, m, z.specs, prec), 1);
            assert_int_equal(prec[0].weight_bits, 7); /* 8-bit weights: 7 magnitude bits in a differential pair */
            assert_int_equal(prec[1].weight_bits, 3);
            assert_int_equal(prec[1].input_bits, 4);
            assert_int_equal(prec[0].input_bits, 0); /* the image */
            xb_xnet *xn;
            assert_int_equal(xb_xnet_init_ex(&hw, m, own ? prec : NULL, &xn), XB_OK);
            assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
            xb_xnet_attach(xn);
            assert_int_equal(xb_model_forward(m, n, x, lh, NULL), XB_OK);
            xb_xlayer_stats st;
            xb_xnet_layer_stats(xn, 1, &st);
            xb_model_set_op(m, NULL);
            xb_xnet_free(xn);
            double e = 0, rr = 0;
            for (int i = 0; i < n * 4; i++) { e = fmax(e, fabs(lh[i] - ls[i])); rr = fmax(rr, fabs(ls[i])); }
            if (getenv("XBT_VERBOSE"))
                fprintf(stderr, "  dac %s, %s precisions: logits %.2e, c2 %d weight bits, %d planes\n",
                        serial ? "1-bit serial" : "none", own ? "per-layer" : "the config's", e / rr, st.weight_bits,
                        st.planes);
            if (!serial && own && !(e / rr < 1e-5)) fail_msg("per-layer precisions: %.2e", e / rr);
            if (!serial && !own && !(e / rr > 1e-3)) fail_msg("the config's 7 bits reproduce 4-bit weights (%.2e)", e / rr);
            /* c2: 3 + sign weight bits in one slice (7 with the config's), and with the 1-bit serial DAC its 4-bit
             * inputs in 4 planes (8 with the config's) */
            assert_int_equal(st.weight_bits, own ? 3 : 7);
            assert_int_equal(st.slices, 1);
            if (serial) {
                assert_int_equal(st.planes, own ? 4 : 8);
                assert_int_equal(st.input_bits, own ? 4 : 8);
            }
        }
    xb_model_free(m);
    qm_free_(&z);
}

/* One scale per output channel (the default): [mapping] scale = column gives each crossbar column its own clip
 * scale and a digital factor, so the per-channel model maps exactly (also with drift_compensation = column
 * and no drift: the two factors multiply); scale = layer does not. */
static void test_crossbar_column_scale(void **state) {
    (void)state;
    static const char q[] = "[quantize]\nweight = uniform\nweight_bits = 4\nact_bits = 4\nact_clip = 3\n";
    qm_ z;
    const int n = 8;
    float x[8 * 3 * 64], ls[8 * 4], lh[8 * 4];
    xb_model *m = exported_(q, "xcs", 10, n, &z, x, ls);
    static const char *const extra[3] = {"scale = column\n", "scale = layer\n",
                                         "scale = column\n[device]\ndrift_compensation = column\n"};
    for (int v = 0; v < 3; v++) {
        char text[400];
        snprintf(text, sizeof text, "[tile]\nrows = 16\ncols = 16\nmap_first = 1\nmap_last = 1\n[circuit]\nsolver = none\n"
                 "[mapping]\nweight_bits = 7\nbits_per_cell = 7\n%s", extra[v]);
        xb_hw hw;
        if (xb_hw_parse_string(text, strlen(text), "hw.cfg", &hw) != XB_OK) fail_msg("%s", xb_last_error());
        xb_layer_precision prec[3];
        xb_hw_quant_precisions(&hw, m, z.specs, prec);
        xb_xnet *xn;
        assert_int_equal(xb_xnet_init_ex(&hw, m, prec, &xn), XB_OK);
        assert_int_equal(xb_xnet_program(xn, 1), XB_OK);
        xb_xnet_attach(xn);
        assert_int_equal(xb_model_forward(m, n, x, lh, NULL), XB_OK);
        xb_model_set_op(m, NULL);
        xb_xnet_free(xn);
        double e = 0, rr = 0;
        for (int i = 0; i < n * 4; i++) { e = fmax(e, fabs(lh[i] - ls[i])); rr = fmax(rr, fabs(ls[i])); }
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  %s: logits %.2e\n", extra[v], e / rr);
        if (v != 1 && !(e / rr < 1e-5)) fail_msg("scale = column (variant %d): %.2e", v, e / rr);
        if (v == 1 && !(e / rr > 1e-3)) fail_msg("scale = layer reproduces per-channel scales (%.2e)", e / rr);
    }
    xb_model_free(m);
    qm_free_(&z);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qat16_equals_float),
        cmocka_unit_test(test_qop_gradients),
        cmocka_unit_test(test_qop_paths),
        cmocka_unit_test(test_pact_alpha),
        cmocka_unit_test(test_qat_resume),
        cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_crossbar_exact),
        cmocka_unit_test(test_crossbar_precisions),
        cmocka_unit_test(test_crossbar_column_scale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
