/*
 * test_grad.c -- finite-difference checks of every backward kernel.
 *
 * For an op y = f(theta) (theta = all its differentiable inputs and parameters, packed), the loss
 * L = sum(y * r) with a fixed random r makes dL/dtheta the vector-Jacobian product the float
 * backward computes with dy = r.  Every element of dL/dtheta is estimated by central differences
 * in DOUBLE on the double-precision reference forward (src/nn/ref.c), and compared with the float
 * backward: max|analytic - fd| / max|fd| <= 1e-3 for each packed part (x, w, b, ...).
 * Kinks are avoided by construction: ReLU inputs are kept away from 0 and max-pool inputs are
 * distinct values spaced far more than the step.
 */
#include "testutil.h"
#include "nn/ref.h"

#define GRAD_TOL 1e-3
#define FD_STEP 1e-5

typedef void (*fwd_fn)(const void *ctx, const double *theta, double *y);

/* ---- harness --------------------------------------------------------------------------------- */

static float *rnd(int64_t n, xb_rng *r, double scale) {
    float *p = xb_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = (float)((2.0 * xb_rng_uniform(r) - 1.0) * scale);
    return p;
}

static double loss_at(fwd_fn f, const void *ctx, const double *theta, const double *r, int64_t ny,
                      double *y) {
    f(ctx, theta, y);
    double s = 0;
    for (int64_t i = 0; i < ny; i++) s += y[i] * r[i];
    return s;
}

/* g (nth) = central-difference gradient of sum(f(theta) * r). */
static void fd_grad(fwd_fn f, const void *ctx, const float *theta_f, int64_t nth, const float *r_f,
                    int64_t ny, double *g) {
    double *theta = xb_malloc(sizeof(double) * (size_t)nth), *r = xb_malloc(sizeof(double) * (size_t)ny);
    double *y = xb_malloc(sizeof(double) * (size_t)ny);
    for (int64_t i = 0; i < nth; i++) theta[i] = theta_f[i];
    for (int64_t i = 0; i < ny; i++) r[i] = r_f[i];
    for (int64_t i = 0; i < nth; i++) {
        double t = theta[i], h = FD_STEP * fmax(1.0, fabs(t));
        theta[i] = t + h;
        double lp = loss_at(f, ctx, theta, r, ny, y);
        theta[i] = t - h;
        double lm = loss_at(f, ctx, theta, r, ny, y);
        theta[i] = t;
        g[i] = (lp - lm) / (2 * h);
    }
    xb_free(theta); xb_free(r); xb_free(y);
}

/* Checks analytic gradient parts against fd, each with its own scale. */
typedef struct part { const char *name; int64_t off, n; } part;

static void check_parts(const char *op, const float *an, const double *fd, const part *parts, int np) {
    char name[128];
    for (int i = 0; i < np; i++) {
        snprintf(name, sizeof name, "%s d%s", op, parts[i].name);
        XBT_CHECK_REL(name, an + parts[i].off, fd + parts[i].off, parts[i].n, GRAD_TOL);
    }
}

/* ---- convolution ----------------------------------------------------------------------------- */

typedef struct conv_ctx { xb_conv2d_desc d; int n, bias; int64_t nx, nw; } conv_ctx;

static void conv_fwd(const void *c_, const double *th, double *y) {
    const conv_ctx *c = c_;
    xb_conv2d_forward_ref(&c->d, c->n, th, th + c->nx, c->bias ? th + c->nx + c->nw : NULL, y);
}

static void check_conv(int cin, int cout, int kh, int kw, int sh, int sw, int ph, int pw, int groups,
                       int h, int w, int n, int bias) {
    conv_ctx c;
    assert_int_equal(xb_conv2d_desc_init(&c.d, cin, cout, kh, kw, sh, sw, ph, pw, groups, h, w), XB_OK);
    c.n = n; c.bias = bias;
    c.nx = (int64_t)cin * n * h * w;
    c.nw = (int64_t)cout * xb_conv2d_k(&c.d);
    int64_t nb = bias ? cout : 0, nth = c.nx + c.nw + nb, ny = (int64_t)cout * n * c.d.ho * c.d.wo;
    xb_rng r;
    xb_rng_seed(&r, 100 + (uint64_t)(cin * 31 + cout * 7 + groups), "grad");
    float *th = rnd(nth, &r, 1.3), *rr = rnd(ny, &r, 1.0), *an = xb_calloc(sizeof(float) * (size_t)nth);
    float *ws = xb_malloc(sizeof(float) * (xb_conv2d_workspace(&c.d, n) + 1));
    double *fd = xb_malloc(sizeof(double) * (size_t)nth);
    xb_conv2d_backward(&c.d, n, th, th + c.nx, rr, an, an + c.nx, bias ? an + c.nx + c.nw : NULL, ws);
    fd_grad(conv_fwd, &c, th, nth, rr, ny, fd);
    part parts[3] = {{"x", 0, c.nx}, {"w", c.nx, c.nw}, {"b", c.nx + c.nw, nb}};
    check_parts("conv", an, fd, parts, bias ? 3 : 2);
    xb_free(th); xb_free(rr); xb_free(an); xb_free(ws); xb_free(fd);
}

static void test_grad_conv(void **state) {
    (void)state;
    /*          cin cout kh kw sh sw ph pw g  h  w  n bias */
    check_conv(3, 4, 3, 3, 1, 1, 1, 1, 1, 5, 6, 2, 1);
    check_conv(4, 6, 3, 3, 2, 2, 1, 1, 2, 7, 7, 2, 1);
    check_conv(4, 4, 3, 3, 1, 2, 2, 0, 4, 6, 7, 1, 0);  /* depthwise, mixed stride/padding */
    check_conv(4, 8, 1, 1, 1, 1, 0, 0, 2, 4, 5, 3, 1);  /* pointwise grouped */
    check_conv(6, 4, 1, 1, 2, 2, 0, 0, 1, 5, 5, 2, 0);  /* 1x1 stride 2 */
    check_conv(2, 3, 5, 5, 2, 1, 2, 2, 1, 7, 6, 2, 1);  /* 5x5 */
    /* implicit-GEMM path (stride 1, wo == w, 16 | positions per image) */
    check_conv(3, 5, 3, 3, 1, 1, 1, 1, 1, 4, 4, 2, 1);
    check_conv(4, 6, 3, 3, 1, 1, 1, 1, 2, 2, 8, 3, 1);
    check_conv(2, 9, 3, 1, 1, 1, 2, 0, 1, 4, 4, 1, 0);  /* ho = h+2 */
    check_conv(4, 4, 3, 3, 1, 1, 1, 1, 4, 8, 8, 1, 1);  /* depthwise */
    check_conv(3, 8, 3, 3, 2, 2, 1, 1, 1, 8, 8, 2, 1);  /* stride 2 over phase planes */
    check_conv(2, 3, 3, 3, 2, 2, 1, 1, 1, 7, 8, 1, 1);  /* odd height */
    check_conv(4, 4, 1, 1, 2, 2, 0, 0, 2, 8, 8, 1, 0);  /* 1x1 stride 2, groups */
}

/* ---- linear ---------------------------------------------------------------------------------- */

typedef struct lin_ctx { int k, f, n; } lin_ctx;

static void lin_fwd(const void *c_, const double *th, double *y) {
    const lin_ctx *c = c_;
    xb_linear_forward_ref(c->k, c->f, c->n, th, th + (int64_t)c->k * c->n,
                          th + (int64_t)c->k * c->n + (int64_t)c->f * c->k, y);
}

static void test_grad_linear(void **state) {
    (void)state;
    lin_ctx c = {13, 5, 4};
    int64_t nx = c.k * c.n, nw = c.f * c.k, nth = nx + nw + c.f, ny = c.f * c.n;
    xb_rng r;
    xb_rng_seed(&r, 200, "grad");
    float *th = rnd(nth, &r, 1.1), *rr = rnd(ny, &r, 1.0), *an = xb_calloc(sizeof(float) * (size_t)nth);
    double *fd = xb_malloc(sizeof(double) * (size_t)nth);
    xb_linear_backward(c.k, c.f, c.n, th, th + nx, rr, an, an + nx, an + nx + nw);
    fd_grad(lin_fwd, &c, th, nth, rr, ny, fd);
    part parts[3] = {{"x", 0, nx}, {"w", nx, nw}, {"b", nx + nw, c.f}};
    check_parts("linear", an, fd, parts, 3);
    xb_free(th); xb_free(rr); xb_free(an); xb_free(fd);
}

/* ---- batchnorm (training mode) ----------------------------------------------------------------- */

typedef struct bn_ctx { int c; int64_t m; } bn_ctx;

static void bn_fwd(const void *c_, const double *th, double *y) {
    const bn_ctx *c = c_;
    int64_t nx = c->c * c->m;
    xb_batchnorm_forward_ref(c->c, c->m, th, th + nx, th + nx + c->c, 1e-5, y);
}

static void test_grad_batchnorm(void **state) {
    (void)state;
    const int64_t ms[] = {2 * 3 * 4, 3, 50};
    for (int t = 0; t < 3; t++) {
        bn_ctx c = {4, ms[t]};
        int64_t nx = c.c * c.m, nth = nx + 2 * c.c;
        xb_rng r;
        xb_rng_seed(&r, 300 + (uint64_t)t, "grad");
        float *th = rnd(nth, &r, 1.7), *rr = rnd(nx, &r, 1.0), *an = xb_calloc(sizeof(float) * (size_t)nth);
        for (int64_t i = 0; i < nx; i++) th[i] += 0.75f;
        float *y = xb_malloc(sizeof(float) * (size_t)nx), sm[4], si[4];
        double *fd = xb_malloc(sizeof(double) * (size_t)nth);
        xb_batchnorm_forward(c.c, c.m, th, th + nx, th + nx + c.c, NULL, NULL, 0.1f, 1e-5f, 1, y, sm, si);
        xb_batchnorm_backward(c.c, c.m, th, th + nx, sm, si, rr, an, an + nx, an + nx + c.c);
        fd_grad(bn_fwd, &c, th, nth, rr, nx, fd);
        part parts[3] = {{"x", 0, nx}, {"gamma", nx, c.c}, {"beta", nx + c.c, c.c}};
        check_parts("batchnorm", an, fd, parts, 3);
        xb_free(th); xb_free(rr); xb_free(an); xb_free(y); xb_free(fd);
    }
}

/* ---- elementwise ----------------------------------------------------------------------------- */

static void relu_fwd(const void *c_, const double *th, double *y) {
    int64_t n = *(const int64_t *)c_;
    for (int64_t i = 0; i < n; i++) y[i] = th[i] > 0 ? th[i] : 0;
}

static void test_grad_relu(void **state) {
    (void)state;
    int64_t n = 300;
    xb_rng r;
    xb_rng_seed(&r, 400, "grad");
    float *x = rnd(n, &r, 2.0), *rr = rnd(n, &r, 1.0), *y = xb_malloc(sizeof(float) * n);
    float *an = xb_calloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) x[i] += x[i] >= 0 ? 0.01f : -0.01f; /* away from the kink */
    double *fd = xb_malloc(sizeof(double) * n);
    xb_relu_forward(n, x, y);
    xb_relu_backward(n, y, rr, an);
    fd_grad(relu_fwd, &n, x, n, rr, n, fd);
    part p = {"x", 0, n};
    check_parts("relu", an, fd, &p, 1);
    xb_free(x); xb_free(rr); xb_free(y); xb_free(an); xb_free(fd);
}

/* add: y = a + b; the graph passes dy to both inputs (there is no add backward kernel) */
static void add_fwd(const void *c_, const double *th, double *y) {
    int64_t n = *(const int64_t *)c_;
    for (int64_t i = 0; i < n; i++) y[i] = th[i] + th[n + i];
}

static void test_grad_add(void **state) {
    (void)state;
    int64_t n = 100;
    xb_rng r;
    xb_rng_seed(&r, 450, "grad");
    float *th = rnd(2 * n, &r, 2.0), *rr = rnd(n, &r, 1.0), *an = xb_malloc(sizeof(float) * 2 * n);
    double *fd = xb_malloc(sizeof(double) * 2 * n);
    float *y = xb_malloc(sizeof(float) * n);
    xb_add_forward(n, th, th + n, y);
    for (int64_t i = 0; i < n; i++) assert_true(y[i] == th[i] + th[n + i]);
    memcpy(an, rr, sizeof(float) * n);
    memcpy(an + n, rr, sizeof(float) * n);
    fd_grad(add_fwd, &n, th, 2 * n, rr, n, fd);
    part parts[2] = {{"a", 0, n}, {"b", n, n}};
    check_parts("add", an, fd, parts, 2);
    xb_free(th); xb_free(rr); xb_free(an); xb_free(fd); xb_free(y);
}

typedef struct drop_ctx { int64_t n; double p; const uint8_t *mask; } drop_ctx;

static void drop_fwd(const void *c_, const double *th, double *y) {
    const drop_ctx *c = c_;
    for (int64_t i = 0; i < c->n; i++) y[i] = c->mask[i] ? th[i] / (1 - c->p) : 0;
}

static void test_grad_dropout(void **state) {
    (void)state;
    int64_t n = 400;
    xb_rng r, dr;
    xb_rng_seed(&r, 500, "grad");
    xb_rng_seed(&dr, 501, "dropout");
    float *x = rnd(n, &r, 2.0), *rr = rnd(n, &r, 1.0), *y = xb_malloc(sizeof(float) * n);
    float *an = xb_calloc(sizeof(float) * n);
    uint8_t *mask = xb_malloc((size_t)n);
    double *fd = xb_malloc(sizeof(double) * n);
    xb_dropout_forward(n, 0.35f, &dr, x, mask, y);
    xb_dropout_backward(n, 0.35f, mask, rr, an);
    drop_ctx c = {n, 0.35f, mask};
    fd_grad(drop_fwd, &c, x, n, rr, n, fd);
    part p = {"x", 0, n};
    check_parts("dropout", an, fd, &p, 1);
    xb_free(x); xb_free(rr); xb_free(y); xb_free(an); xb_free(mask); xb_free(fd);
}

/* ---- pooling --------------------------------------------------------------------------------- */

typedef struct pool_ctx { xb_pool_desc d; int c, n; } pool_ctx;

static void maxpool_fwd(const void *c_, const double *th, double *y) {
    const pool_ctx *c = c_;
    xb_maxpool_forward_ref(&c->d, c->c, c->n, th, y);
}

static void avgpool_fwd(const void *c_, const double *th, double *y) {
    const pool_ctx *c = c_;
    xb_avgpool_forward_ref(&c->d, c->c, c->n, th, y);
}

static void test_grad_pools(void **state) {
    (void)state;
    const int cases[][5] = {{2, 2, 0, 6, 6}, {3, 2, 1, 7, 5}, {3, 1, 1, 4, 5}};
    for (int t = 0; t < 3; t++) {
        pool_ctx c = {.c = 3, .n = 2};
        assert_int_equal(xb_pool_desc_init(&c.d, cases[t][0], cases[t][1], cases[t][2], cases[t][3],
                                           cases[t][4]), XB_OK);
        int64_t nx = (int64_t)c.c * c.n * c.d.h * c.d.w, ny = (int64_t)c.c * c.n * c.d.ho * c.d.wo;
        xb_rng r;
        xb_rng_seed(&r, 600 + (uint64_t)t, "grad");
        /* distinct values 0.01 apart, shuffled: no ties within FD_STEP */
        float *x = xb_malloc(sizeof(float) * nx), *rr = rnd(ny, &r, 1.0), *y = xb_malloc(sizeof(float) * ny);
        for (int64_t i = 0; i < nx; i++) x[i] = (float)(0.01 * (double)(i - nx / 2));
        for (int64_t i = nx - 1; i > 0; i--) {
            int64_t j = (int64_t)xb_rng_below(&r, (uint64_t)i + 1);
            float t2 = x[i]; x[i] = x[j]; x[j] = t2;
        }
        int32_t *am = xb_malloc(sizeof(int32_t) * ny);
        float *an = xb_calloc(sizeof(float) * nx);
        double *fd = xb_malloc(sizeof(double) * nx);
        part p = {"x", 0, nx};
        xb_maxpool_forward(&c.d, c.c, c.n, x, y, am);
        xb_maxpool_backward(&c.d, c.c, c.n, am, rr, an);
        fd_grad(maxpool_fwd, &c, x, nx, rr, ny, fd);
        check_parts("maxpool", an, fd, &p, 1);
        memset(an, 0, sizeof(float) * nx);
        xb_avgpool_backward(&c.d, c.c, c.n, rr, an);
        fd_grad(avgpool_fwd, &c, x, nx, rr, ny, fd);
        check_parts("avgpool", an, fd, &p, 1);
        xb_free(x); xb_free(rr); xb_free(y); xb_free(am); xb_free(an); xb_free(fd);
    }
}

typedef struct shape_ctx { int c, n, hw; } shape_ctx;

static void gap_fwd(const void *c_, const double *th, double *y) {
    const shape_ctx *c = c_;
    xb_gap_forward_ref(c->c, c->n, c->hw, th, y);
}

static void flatten_fwd(const void *c_, const double *th, double *y) {
    const shape_ctx *c = c_;
    xb_flatten_forward_ref(c->c, c->n, c->hw, th, y);
}

static void test_grad_gap_flatten(void **state) {
    (void)state;
    shape_ctx c = {4, 3, 10};
    int64_t nx = c.c * c.n * c.hw;
    xb_rng r;
    xb_rng_seed(&r, 700, "grad");
    float *x = rnd(nx, &r, 2.0), *rr = rnd(nx, &r, 1.0), *an = xb_calloc(sizeof(float) * nx);
    double *fd = xb_malloc(sizeof(double) * nx);
    part p = {"x", 0, nx};
    xb_gap_backward(c.c, c.n, c.hw, rr, an);
    fd_grad(gap_fwd, &c, x, nx, rr, c.c * c.n, fd);
    check_parts("gap", an, fd, &p, 1);
    memset(an, 0, sizeof(float) * nx);
    xb_flatten_backward(c.c, c.n, c.hw, rr, an);
    fd_grad(flatten_fwd, &c, x, nx, rr, nx, fd);
    check_parts("flatten", an, fd, &p, 1);
    xb_free(x); xb_free(rr); xb_free(an); xb_free(fd);
}

typedef struct sc_ctx { int cin, cout, lo, s, n, h, w; } sc_ctx;

static void shortcut_fwd(const void *c_, const double *th, double *y) {
    const sc_ctx *c = c_;
    xb_shortcut_pad_forward_ref(c->cin, c->cout, c->lo, c->s, c->n, c->h, c->w, th, y);
}

static void test_grad_shortcut(void **state) {
    (void)state;
    sc_ctx c = {3, 8, 2, 2, 2, 5, 6};
    int64_t nx = (int64_t)c.cin * c.n * c.h * c.w, ny = (int64_t)c.cout * c.n * 3 * 3;
    xb_rng r;
    xb_rng_seed(&r, 800, "grad");
    float *x = rnd(nx, &r, 2.0), *rr = rnd(ny, &r, 1.0), *an = xb_calloc(sizeof(float) * nx);
    double *fd = xb_malloc(sizeof(double) * nx);
    xb_shortcut_pad_backward(c.cin, c.cout, c.lo, c.s, c.n, c.h, c.w, rr, an);
    fd_grad(shortcut_fwd, &c, x, nx, rr, ny, fd);
    part p = {"x", 0, nx};
    check_parts("shortcut_pad", an, fd, &p, 1);
    xb_free(x); xb_free(rr); xb_free(an); xb_free(fd);
}

/* ---- loss ------------------------------------------------------------------------------------ */

typedef struct ce_ctx { int k, n; const int32_t *labels; double eps; } ce_ctx;

static void ce_fwd(const void *c_, const double *th, double *y) {
    const ce_ctx *c = c_;
    y[0] = xb_softmax_ce_ref(c->k, c->n, th, c->labels, c->eps);
}

static void test_grad_softmax_ce(void **state) {
    (void)state;
    int k = 10, n = 6;
    int32_t labels[6];
    xb_rng r;
    xb_rng_seed(&r, 900, "grad");
    for (int j = 0; j < n; j++) labels[j] = (int32_t)xb_rng_below(&r, (uint64_t)k);
    float *z = rnd((int64_t)k * n, &r, 3.0), one = 1.0f, *an = xb_malloc(sizeof(float) * k * n);
    double *fd = xb_malloc(sizeof(double) * k * n);
    for (int e = 0; e < 2; e++) {
        float eps = e ? 0.1f : 0.0f;
        ce_ctx c = {k, n, labels, eps};
        xb_softmax_ce(k, n, z, labels, eps, an, NULL);
        fd_grad(ce_fwd, &c, z, (int64_t)k * n, &one, 1, fd);
        part p = {"logits", 0, (int64_t)k * n};
        check_parts(e ? "softmax_ce(eps=0.1)" : "softmax_ce", an, fd, &p, 1);
    }
    xb_free(z); xb_free(an); xb_free(fd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_conv),
        cmocka_unit_test(test_grad_linear),
        cmocka_unit_test(test_grad_batchnorm),
        cmocka_unit_test(test_grad_relu),
        cmocka_unit_test(test_grad_add),
        cmocka_unit_test(test_grad_dropout),
        cmocka_unit_test(test_grad_pools),
        cmocka_unit_test(test_grad_gap_flatten),
        cmocka_unit_test(test_grad_shortcut),
        cmocka_unit_test(test_grad_softmax_ce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
