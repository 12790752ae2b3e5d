/*
 * test_kernels.c -- every fast layer kernel (src/nn/k_*.c) against its double-precision reference
 * (src/nn/ref.c) on awkward shapes, plus hand-computed values (running stats, loss), maxpool ties,
 * layout round trips, descriptor errors and thread-count independence of the non-BLAS kernels.
 * Gradients are checked by finite differences in test_grad.c.
 */
#include "testutil.h"
#include "nn/ref.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define FWD_TOL 1e-5

/* ---- helpers ----------------------------------------------------------------------------------- */

static float *rnd(int64_t n, xb_rng *r, double scale) {
    float *p = xb_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = (float)((2.0 * xb_rng_uniform(r) - 1.0) * scale);
    return p;
}

static double *dbl(const float *x, int64_t n) {
    double *p = xb_malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = x[i];
    return p;
}

/* a == b element by element (so -0 equals +0: writing a sum can give -0 where adding it to +0 gives +0) */
static void assert_same_values(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] == b[i])) fail_msg("element %lld: %.9g != %.9g", (long long)i, (double)a[i], (double)b[i]);
}

static double *dzeros(int64_t n) { return xb_calloc(sizeof(double) * (size_t)(n > 0 ? n : 1)); }
static float *fzeros(int64_t n) { return xb_calloc(sizeof(float) * (size_t)(n > 0 ? n : 1)); }

static void set_threads(int t) {
#ifdef _OPENMP
    omp_set_num_threads(t);
#else
    (void)t;
#endif
}

/* ---- convolution ------------------------------------------------------------------------------- */

typedef struct conv_case { int cin, cout, kh, kw, sh, sw, ph, pw, groups, h, w, n, bias; } conv_case;

static const conv_case conv_cases[] = {
    /* cin cout kh kw sh sw ph pw  g   h   w  n bias */
    {3, 16, 3, 3, 1, 1, 1, 1, 1, 9, 7, 1, 1},      /* first layer, odd non-square input */
    {4, 6, 3, 3, 2, 2, 1, 1, 1, 9, 9, 7, 0},       /* stride 2, odd size, batch 7 */
    {4, 8, 3, 3, 2, 1, 0, 2, 2, 11, 6, 2, 1},      /* mixed stride and padding, groups 2 */
    {8, 8, 3, 3, 1, 1, 1, 1, 8, 7, 5, 3, 1},       /* depthwise */
    {8, 12, 1, 1, 1, 1, 0, 0, 4, 5, 6, 3, 1},      /* pointwise, groups 4 (no im2col) */
    {6, 5, 1, 1, 1, 1, 0, 0, 1, 4, 7, 2, 0},       /* pointwise, groups 1 */
    {6, 4, 1, 1, 2, 2, 0, 0, 1, 7, 8, 2, 1},       /* 1x1 stride 2 (projection shortcut) */
    {3, 4, 5, 5, 1, 1, 2, 2, 1, 8, 9, 2, 1},       /* 5x5 pad 2 */
    {2, 3, 5, 3, 3, 2, 2, 0, 1, 10, 7, 1, 1},      /* non-square kernel, stride 3 */
    {4, 4, 2, 2, 2, 2, 0, 0, 2, 6, 6, 7, 0},       /* even kernel */
    {16, 8, 3, 3, 1, 1, 1, 1, 1, 32, 32, 3, 1},    /* several column chunks, split mid image */
    /* implicit-GEMM path (stride 1, wo == w, 16 | positions per image) */
    {5, 16, 3, 3, 1, 1, 1, 1, 1, 8, 8, 3, 1},      /* vectors span two rows, 5 input channels */
    {4, 12, 3, 3, 1, 1, 1, 1, 1, 4, 4, 2, 0},      /* vectors span four rows */
    {6, 10, 3, 3, 1, 1, 1, 1, 2, 6, 16, 3, 1},     /* groups, cout/g = 5 (edge rows), wide rows */
    {8, 8, 3, 3, 1, 1, 1, 1, 8, 4, 8, 7, 1},       /* depthwise */
    {3, 4, 5, 5, 1, 1, 2, 2, 1, 6, 8, 1, 1},       /* 5x5 */
    {3, 9, 3, 1, 1, 1, 0, 0, 1, 10, 8, 2, 1},      /* 3x1, no vertical padding (ho = h-2) */
    {2, 3, 3, 3, 1, 1, 2, 1, 1, 6, 8, 3, 0},       /* vertical padding 2 (ho = h+2) */
    {16, 32, 3, 3, 1, 1, 1, 1, 1, 16, 16, 5, 1},   /* odd tile count: last tile has one vector */
    /* implicit GEMM over phase planes (stride s, wo == ceil(w/s)) */
    {16, 32, 3, 3, 2, 2, 1, 1, 1, 8, 16, 3, 1},    /* resnet downsampling shape */
    {5, 8, 3, 3, 2, 2, 1, 1, 1, 7, 8, 2, 1},       /* odd height: padded phase planes */
    {6, 10, 1, 1, 2, 2, 0, 0, 2, 8, 8, 3, 1},      /* 1x1 stride 2 projection, groups */
    {3, 4, 5, 5, 2, 2, 2, 2, 1, 8, 8, 2, 0},       /* 5x5 stride 2 */
    {4, 6, 3, 3, 3, 3, 1, 1, 1, 12, 12, 1, 1},     /* stride 3 */
    /* implicit GEMM with several row blocks and the packed dW GEMM (>= 64 rows) */
    {70, 67, 3, 3, 1, 1, 1, 1, 1, 8, 8, 5, 1},     /* edge rows, K = 630 (partial block), last tile 2 vectors */
    {66, 72, 3, 3, 2, 2, 1, 1, 1, 8, 8, 3, 0},     /* stride 2: backward-data over phase planes */
    {128, 128, 3, 3, 1, 1, 1, 1, 2, 4, 4, 3, 1},   /* groups 2 (64 rows each), one vector per image */
    /* explicit path with enough rows for the packed dW GEMM (positions not a multiple of 16) */
    {64, 70, 3, 3, 1, 1, 1, 1, 1, 2, 2, 5, 1},     /* 2x2 maps (vgg's last stage), 20 positions */
    {96, 80, 1, 1, 1, 1, 0, 0, 1, 5, 6, 3, 1},     /* pointwise, K = 96 */
    {100, 72, 3, 3, 2, 2, 0, 0, 1, 9, 9, 2, 0},    /* stride 2 without padding */
    /* tiny maps (h*w divides 16, stride 1, same size): im2col/col2im as lane permutations */
    {3, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3, 1},       /* 1x1 map: only the centre tap */
    {6, 4, 3, 3, 1, 1, 1, 1, 2, 2, 4, 3, 1},       /* 2x4 map, groups 2, 24 positions (tail vector) */
    {5, 7, 5, 5, 1, 1, 2, 2, 1, 2, 2, 7, 0},       /* 5x5 kernel, pad 2 on 2x2 */
    {4, 6, 3, 1, 1, 1, 1, 0, 1, 4, 2, 5, 1},       /* 3x1 kernel on 4x2 */
    {512, 16, 3, 3, 1, 1, 1, 1, 1, 2, 2, 200, 1},  /* K = 4608: three column chunks (192, 192, 16 rows) */
};

static void check_conv_case(const conv_case *c) {
    xb_conv2d_desc d;
    assert_int_equal(xb_conv2d_desc_init(&d, c->cin, c->cout, c->kh, c->kw, c->sh, c->sw, c->ph, c->pw,
                                         c->groups, c->h, c->w), XB_OK);
    xb_rng r;
    xb_rng_seed(&r, 1234, "test");
    int n = c->n, K = xb_conv2d_k(&d);
    int64_t nx = (int64_t)c->cin * n * c->h * c->w, ny = (int64_t)c->cout * n * d.ho * d.wo;
    int64_t nw = (int64_t)c->cout * K;
    float *x = rnd(nx, &r, 2.385), *w = rnd(nw, &r, 0.731), *b = c->bias ? rnd(c->cout, &r, 0.5) : NULL;
    float *y = fzeros(ny), *ws = xb_malloc(sizeof(float) * (xb_conv2d_workspace(&d, n) + 1));
    double *xd = dbl(x, nx), *wd = dbl(w, nw), *bd = b ? dbl(b, c->cout) : NULL, *yd = dzeros(ny);
    xb_conv2d_forward(&d, n, x, w, b, y, ws);
    xb_conv2d_forward_ref(&d, n, xd, wd, bd, yd);
    char name[160];
    snprintf(name, sizeof name, "conv fwd %dx%d %dx%d k%dx%d s%d,%d p%d,%d g%d n%d", c->cin, c->cout,
             c->h, c->w, c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, c->groups, n);
    XBT_CHECK_REL(name, y, yd, ny, FWD_TOL);
    /* the fused ReLU (last store of each path): the same bits as the convolution then xb_relu_forward */
    float *yr = fzeros(ny), *yf = rnd(ny, &r, 1.0);
    xb_relu_forward(ny, y, yr);
    xb_conv2d_relu_forward(&d, n, x, w, b, yf, ws, 1);
    assert_memory_equal(yr, yf, sizeof(float) * (size_t)ny);
    xb_free(yr); xb_free(yf);

    /* backward against the reference backward, accumulating onto non-zero gradients */
    float *dy = rnd(ny, &r, 1.17), *dx = rnd(nx, &r, 0.3), *dw = rnd(nw, &r, 0.3), *db = rnd(c->cout, &r, 0.3);
    double *dyd = dbl(dy, ny), *dxd = dbl(dx, nx), *dwd = dbl(dw, nw), *dbd = dbl(db, c->cout);
    xb_conv2d_backward(&d, n, x, w, dy, dx, dw, db, ws);
    xb_conv2d_backward_ref(&d, n, xd, wd, dyd, dxd, dwd, dbd);
    snprintf(name, sizeof name, "conv bwd dx case %dx%d g%d", c->cin, c->cout, c->groups);
    XBT_CHECK_REL(name, dx, dxd, nx, FWD_TOL);
    snprintf(name, sizeof name, "conv bwd dw case %dx%d g%d", c->cin, c->cout, c->groups);
    XBT_CHECK_REL(name, dw, dwd, nw, FWD_TOL);
    snprintf(name, sizeof name, "conv bwd db case %dx%d g%d", c->cin, c->cout, c->groups);
    XBT_CHECK_REL(name, db, dbd, c->cout, FWD_TOL);

    /* NULL gradients are skipped: only dx */
    float *dx2 = fzeros(nx);
    double *dxd2 = dzeros(nx);
    xb_conv2d_backward(&d, n, x, w, dy, dx2, NULL, NULL, ws);
    xb_conv2d_backward_ref(&d, n, xd, wd, dyd, dxd2, NULL, NULL);
    XBT_CHECK_REL("conv bwd dx only", dx2, dxd2, nx, FWD_TOL);
    /* dx written (dx_acc = 0) over garbage: the values of adding onto zeros */
    float *dx3 = rnd(nx, &r, 5.0);
    xb_conv2d_backward_ex(&d, n, x, w, dy, dx3, 0, NULL, NULL, ws);
    assert_same_values(dx3, dx2, nx);
    xb_free(dx3);

    xb_free(x); xb_free(w); xb_free(b); xb_free(y); xb_free(ws); xb_free(xd); xb_free(wd); xb_free(bd);
    xb_free(yd); xb_free(dy); xb_free(dx); xb_free(dw); xb_free(db); xb_free(dyd); xb_free(dxd);
    xb_free(dwd); xb_free(dbd); xb_free(dx2); xb_free(dxd2);
}

static void test_conv_vs_ref(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) check_conv_case(&conv_cases[i]);
}

/* rms relative error ||got - want|| / ||want|| */
static double rms_rel(const float *got, const double *want, int64_t n) {
    double se = 0, sw = 0;
    for (int64_t i = 0; i < n; i++) {
        se += (got[i] - want[i]) * (got[i] - want[i]);
        sw += want[i] * want[i];
    }
    return sqrt(se / (sw > 0 ? sw : 1e-300));
}

/* Accuracy over a long reduction (vgg8's 8x8 layers: K = 256*9 = 2304 in both directions).  Measured
 * rms relative errors, u = 2^-24: K-blocked implicit kernel 3.0u, cblas_sgemm (-DXB_CONV_NO_SIMD) 4.8u,
 * one register accumulator over all of K 13.6u -- the last flips ReLU masks downstream often enough to
 * fail tests/ref_torch.py (vgg8 sgd, gradients after 1 step).  Bound: 6u. */
static void test_conv_long_k_accuracy(void **state) {
    (void)state;
    const int cin = 256, cout = 256, n = 2, hw = 8;
    xb_conv2d_desc d;
    assert_int_equal(xb_conv2d_desc_init(&d, cin, cout, 3, 3, 1, 1, 1, 1, 1, hw, hw), XB_OK);
    xb_rng r;
    xb_rng_seed(&r, 99, "test");
    int64_t nx = (int64_t)cin * n * hw * hw, ny = (int64_t)cout * n * hw * hw, nw = (int64_t)cout * cin * 9;
    float *x = rnd(nx, &r, 1.0), *w = rnd(nw, &r, 0.02), *dy = rnd(ny, &r, 1.0);
    float *y = fzeros(ny), *dx = fzeros(nx), *ws = xb_malloc(sizeof(float) * (xb_conv2d_workspace(&d, n) + 1));
    double *xd = dbl(x, nx), *wd = dbl(w, nw), *dyd = dbl(dy, ny), *yd = dzeros(ny), *dxd = dzeros(nx);
    xb_conv2d_forward(&d, n, x, w, NULL, y, ws);
    xb_conv2d_backward(&d, n, x, w, dy, dx, NULL, NULL, ws);
    xb_conv2d_forward_ref(&d, n, xd, wd, NULL, yd);
    xb_conv2d_backward_ref(&d, n, xd, wd, dyd, dxd, NULL, NULL);
    const double u = 1.0 / (1 << 24), ey = rms_rel(y, yd, ny), edx = rms_rel(dx, dxd, nx);
    if (!(ey <= 6 * u)) fail_msg("conv fwd K=2304: rms relative error %.2e > 6u = %.2e", ey, 6 * u);
    if (!(edx <= 6 * u)) fail_msg("conv bwd dx K=2304: rms relative error %.2e > 6u = %.2e", edx, 6 * u);
    xb_free(x); xb_free(w); xb_free(dy); xb_free(y); xb_free(dx); xb_free(ws);
    xb_free(xd); xb_free(wd); xb_free(dyd); xb_free(yd); xb_free(dxd);
}

/* im2col against its definition; col2im is its adjoint: <col2im(c), x> == <c, im2col(x)>. */
static void test_im2col_col2im(void **state) {
    (void)state;
    xb_conv2d_desc d;
    assert_int_equal(xb_conv2d_desc_init(&d, 6, 4, 3, 2, 2, 1, 1, 2, 2, 7, 5), XB_OK);
    int n = 3, K = xb_conv2d_k(&d), cing = 3;
    int64_t nx = 6LL * n * 7 * 5, ncol = (int64_t)K * n * d.ho * d.wo;
    xb_rng r;
    xb_rng_seed(&r, 7, "test");
    float *x = rnd(nx, &r, 1.5), *col = fzeros(ncol), *c2 = rnd(ncol, &r, 1.0), *dx = fzeros(nx);
    for (int g = 0; g < 2; g++) {
        xb_im2col(&d, n, g, x, col);
        double *want = dzeros(ncol);
        int64_t np = (int64_t)n * d.ho * d.wo;
        for (int c = 0; c < cing; c++)
            for (int ki = 0; ki < 3; ki++)
                for (int kj = 0; kj < 2; kj++)
                    for (int i = 0; i < n; i++)
                        for (int oh = 0; oh < d.ho; oh++)
                            for (int ow = 0; ow < d.wo; ow++) {
                                int ih = oh * 2 - 1 + ki, iw = ow - 2 + kj;
                                double v = (ih < 0 || ih >= 7 || iw < 0 || iw >= 5) ? 0.0
                                    : x[(((int64_t)(g * cing + c) * n + i) * 7 + ih) * 5 + iw];
                                want[((c * 3 + ki) * 2 + kj) * np + ((int64_t)i * d.ho + oh) * d.wo + ow] = v;
                            }
        XBT_CHECK_REL("im2col", col, want, ncol, 0.0);
        memset(dx, 0, sizeof(float) * (size_t)nx);
        xb_col2im(&d, n, g, c2, dx);
        double lhs = 0, rhs = 0;
        for (int64_t i = 0; i < nx; i++) lhs += (double)dx[i] * x[i];
        for (int64_t i = 0; i < ncol; i++) rhs += (double)c2[i] * col[i];
        assert_true(fabs(lhs - rhs) <= 1e-5 * (fabs(rhs) + 1));
        /* other group's channels untouched */
        for (int c = 0; c < cing; c++)
            for (int64_t i = 0; i < (int64_t)n * 35; i++)
                assert_true(dx[((int64_t)((1 - g) * cing + c) * n) * 35 + i] == 0.0f);
        xb_free(want);
    }
    xb_free(x); xb_free(col); xb_free(c2); xb_free(dx);
}

static void test_conv_desc_errors(void **state) {
    (void)state;
    xb_conv2d_desc d;
    assert_int_equal(xb_conv2d_desc_init(&d, 6, 4, 3, 3, 1, 1, 1, 1, 4, 8, 8), XB_ERR_SHAPE);
    assert_non_null(strstr(xb_last_error(), "HINT"));
    assert_int_equal(xb_conv2d_desc_init(&d, 3, 4, 5, 5, 1, 1, 0, 0, 1, 4, 8), XB_ERR_SHAPE);
    assert_non_null(strstr(xb_last_error(), "HINT"));
    assert_int_equal(xb_conv2d_desc_init(&d, 3, 4, 3, 3, 0, 1, 0, 0, 1, 4, 8), XB_ERR_SHAPE);
    assert_int_equal(xb_conv2d_desc_init(&d, 3, 4, 3, 3, 1, 1, -1, 0, 1, 4, 8), XB_ERR_SHAPE);
    assert_int_equal(xb_conv2d_desc_init(&d, 3, 4, 3, 3, 2, 2, 1, 1, 1, 32, 31), XB_OK);
    assert_int_equal(d.ho, 16);
    assert_int_equal(d.wo, 16);
    assert_int_equal(xb_conv2d_k(&d), 27);
    xb_pool_desc p;
    assert_int_equal(xb_pool_desc_init(&p, 3, 2, 2, 8, 8), XB_ERR_SHAPE); /* pad > k/2 */
    assert_non_null(strstr(xb_last_error(), "HINT"));
    assert_int_equal(xb_pool_desc_init(&p, 5, 1, 0, 4, 8), XB_ERR_SHAPE);
    assert_int_equal(xb_pool_desc_init(&p, 3, 2, 1, 7, 8), XB_OK);
    assert_int_equal(p.ho, 4);
    assert_int_equal(p.wo, 4);
}

/* ---- linear -------------------------------------------------------------------------------------- */

static void test_linear_vs_ref(void **state) {
    (void)state;
    const int shapes[][3] = {{7, 3, 1}, {64, 10, 7}, {33, 17, 5}};
    for (int s = 0; s < 3; s++) {
        int k = shapes[s][0], f = shapes[s][1], n = shapes[s][2];
        xb_rng r;
        xb_rng_seed(&r, 11 + s, "test");
        float *x = rnd((int64_t)k * n, &r, 2.0), *w = rnd((int64_t)f * k, &r, 0.5), *b = rnd(f, &r, 0.3);
        float *y = fzeros((int64_t)f * n);
        double *xd = dbl(x, (int64_t)k * n), *wd = dbl(w, (int64_t)f * k), *bd = dbl(b, f);
        double *yd = dzeros((int64_t)f * n);
        for (int withb = 0; withb < 2; withb++) {
            xb_linear_forward(k, f, n, x, w, withb ? b : NULL, y);
            xb_linear_forward_ref(k, f, n, xd, wd, withb ? bd : NULL, yd);
            XBT_CHECK_REL("linear fwd", y, yd, (int64_t)f * n, FWD_TOL);
        }
        xb_free(x); xb_free(w); xb_free(b); xb_free(y); xb_free(xd); xb_free(wd); xb_free(bd); xb_free(yd);
    }
}

/* ---- batchnorm ----------------------------------------------------------------------------------- */

static void test_batchnorm_vs_ref(void **state) {
    (void)state;
    const int64_t ms[] = {1 * 5 * 7, 7 * 3 * 3, 2, 1000};
    for (int s = 0; s < 4; s++) {
        int c = 5;
        int64_t m = ms[s];
        xb_rng r;
        xb_rng_seed(&r, 21 + s, "test");
        float *x = rnd(c * m, &r, 3.0), *g = rnd(c, &r, 1.5), *b = rnd(c, &r, 0.5), *y = fzeros(c * m);
        for (int64_t i = 0; i < c * m; i++) x[i] += 4.25f; /* non-zero mean */
        float sm[5], si[5];
        double *xd = dbl(x, c * m), *gd = dbl(g, c), *bd = dbl(b, c), *yd = dzeros(c * m);
        xb_batchnorm_forward(c, m, x, g, b, NULL, NULL, 0.1f, 1e-5f, 1, y, sm, si);
        xb_batchnorm_forward_ref(c, m, xd, gd, bd, 1e-5, yd);
        XBT_CHECK_REL("bn train fwd", y, yd, c * m, FWD_TOL);
        /* eval with running statistics */
        float rm[5], rv[5];
        double rmd[5], rvd[5];
        for (int i = 0; i < c; i++) {
            rm[i] = (float)(0.3 * i - 0.4); rv[i] = (float)(0.5 + 0.7 * i);
            rmd[i] = rm[i]; rvd[i] = rv[i];
        }
        xb_batchnorm_forward(c, m, x, g, b, rm, rv, 0.1f, 1e-5f, 0, y, NULL, NULL);
        xb_batchnorm_eval_ref(c, m, xd, gd, bd, rmd, rvd, 1e-5, yd);
        XBT_CHECK_REL("bn eval fwd", y, yd, c * m, FWD_TOL);
        for (int i = 0; i < c; i++) assert_true(rm[i] == (float)(0.3 * i - 0.4)); /* eval: no update */
        /* affine=False */
        xb_batchnorm_forward(c, m, x, NULL, NULL, NULL, NULL, 0.1f, 1e-5f, 1, y, NULL, NULL);
        xb_batchnorm_forward_ref(c, m, xd, NULL, NULL, 1e-5, yd);
        XBT_CHECK_REL("bn no-affine fwd", y, yd, c * m, FWD_TOL);
        xb_free(x); xb_free(g); xb_free(b); xb_free(y); xb_free(xd); xb_free(gd); xb_free(bd); xb_free(yd);
    }
}

/* Running stats by hand: x = {1, 2, 3, 5}: mean 2.75, biased var 2.1875, unbiased 8.75/3. */
static void test_batchnorm_running_stats(void **state) {
    (void)state;
    float x[4] = {1, 2, 3, 5}, y[4], rm = 0.5f, rv = 2.0f, sm, si;
    float gm = 1.0f, bt = 0.0f;
    xb_batchnorm_forward(1, 4, x, &gm, &bt, &rm, &rv, 0.1f, 1e-5f, 1, y, &sm, &si);
    assert_float_equal(rm, 0.725, 1e-7);
    assert_float_equal(rv, 2.0916666666666667, 2e-7);
    assert_float_equal(sm, 2.75, 1e-7);
    assert_float_equal(si, 1.0 / sqrt(2.1875 + 1e-5), 1e-7);
    assert_float_equal(y[3], (5 - 2.75) / sqrt(2.1875 + 1e-5), 1e-6);
}

/* ---- pooling ------------------------------------------------------------------------------------- */

static void test_pool_vs_ref(void **state) {
    (void)state;
    const int cases[][5] = {/* k s p h w */ {2, 2, 0, 8, 8}, {3, 2, 1, 7, 9}, {3, 1, 1, 5, 4},
                            {2, 1, 0, 5, 6}, {5, 3, 2, 11, 8}, {3, 3, 0, 10, 10}};
    for (int t = 0; t < 6; t++) {
        xb_pool_desc d;
        assert_int_equal(xb_pool_desc_init(&d, cases[t][0], cases[t][1], cases[t][2], cases[t][3], cases[t][4]),
                         XB_OK);
        int c = 3, n = 4;
        int64_t nx = (int64_t)c * n * d.h * d.w, ny = (int64_t)c * n * d.ho * d.wo;
        xb_rng r;
        xb_rng_seed(&r, 31 + t, "test");
        float *x = rnd(nx, &r, 2.0), *y = fzeros(ny);
        for (int64_t i = 0; i < nx; i++) x[i] -= 3.0f; /* all negative: padding must act as -inf */
        int32_t *am = xb_malloc(sizeof(int32_t) * (size_t)ny);
        double *xd = dbl(x, nx), *yd = dzeros(ny);
        xb_maxpool_forward(&d, c, n, x, y, am);
        xb_maxpool_forward_ref(&d, c, n, xd, yd);
        XBT_CHECK_REL("maxpool fwd", y, yd, ny, 0.0);
        for (int64_t i = 0; i < ny; i++) assert_true(x[(i / (d.ho * d.wo)) * d.h * d.w + am[i]] == y[i]);
        xb_avgpool_forward(&d, c, n, x, y);
        xb_avgpool_forward_ref(&d, c, n, xd, yd);
        XBT_CHECK_REL("avgpool fwd", y, yd, ny, FWD_TOL);
        xb_free(x); xb_free(y); xb_free(am); xb_free(xd); xb_free(yd);
    }
}

/* Ties go to the first maximum in row-major window order, as in PyTorch. */
static void test_maxpool_ties(void **state) {
    (void)state;
    xb_pool_desc d;
    float x[16], y[9];
    int32_t am[9];
    for (int i = 0; i < 16; i++) x[i] = 1.5f;
    assert_int_equal(xb_pool_desc_init(&d, 2, 2, 0, 4, 4), XB_OK);
    xb_maxpool_forward(&d, 1, 1, x, y, am);
    const int32_t want[4] = {0, 2, 8, 10};
    for (int i = 0; i < 4; i++) assert_int_equal(am[i], want[i]);
    /* padded 3x3 stride 2: first valid element of each window */
    assert_int_equal(xb_pool_desc_init(&d, 3, 2, 1, 4, 4), XB_OK);
    xb_maxpool_forward(&d, 1, 1, x, y, am);
    const int32_t want2[4] = {0, 1, 4, 5};
    for (int i = 0; i < 4; i++) assert_int_equal(am[i], want2[i]);
    /* a later, larger value wins; an equal later one does not */
    x[5] = 2.0f; x[6] = 2.0f;
    assert_int_equal(xb_pool_desc_init(&d, 2, 1, 0, 4, 4), XB_OK);
    xb_maxpool_forward(&d, 1, 1, x, y, am);
    assert_int_equal(am[1], 5);  /* window rows 0-1, cols 1-2 holds x[5] and x[6] */
    assert_int_equal(am[2], 6);
    assert_true(y[1] == 2.0f);
    /* all -inf: value -inf, index of the first element */
    for (int i = 0; i < 16; i++) x[i] = -INFINITY;
    xb_maxpool_forward(&d, 1, 1, x, y, am);
    assert_true(isinf(y[4]) && y[4] < 0);
    assert_int_equal(am[4], 5);
}

/* The vectorised 2x2 stride-2 path against the scalar rule (ties: first in row-major order; NaN:
 * the last NaN wins), with many ties, NaNs and -inf, and rows that end mid-vector. */
static void test_maxpool2x2_rule(void **state) {
    (void)state;
    const int shapes[][2] = {{2, 2}, {4, 6}, {8, 40}, {6, 70}, {32, 32}};
    const float vals[6] = {-1.0f, 0.0f, 1.0f, 2.0f, NAN, -INFINITY};
    xb_rng r;
    xb_rng_seed(&r, 77, "test");
    for (int t = 0; t < 5; t++) {
        const int h = shapes[t][0], w = shapes[t][1], ho = h / 2, wo = w / 2, planes = 3;
        xb_pool_desc d;
        assert_int_equal(xb_pool_desc_init(&d, 2, 2, 0, h, w), XB_OK);
        float *x = fzeros((int64_t)planes * h * w), *y = fzeros((int64_t)planes * ho * wo);
        int32_t *am = xb_malloc(sizeof(int32_t) * (size_t)(planes * ho * wo));
        for (int64_t i = 0; i < (int64_t)planes * h * w; i++) x[i] = vals[xb_rng_u64(&r) % 6];
        xb_maxpool_forward(&d, planes, 1, x, y, am);
        for (int pl = 0; pl < planes; pl++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++) {
                    const float *xp = x + (int64_t)pl * h * w;
                    float best = -INFINITY;
                    int bi = 2 * oh * w + 2 * ow;
                    for (int ih = 2 * oh; ih < 2 * oh + 2; ih++)
                        for (int iw = 2 * ow; iw < 2 * ow + 2; iw++)
                            if (xp[ih * w + iw] > best || isnan(xp[ih * w + iw])) {
                                best = xp[ih * w + iw];
                                bi = ih * w + iw;
                            }
                    const int64_t o = ((int64_t)pl * ho + oh) * wo + ow;
                    assert_int_equal(am[o], bi);
                    assert_true(isnan(best) ? isnan(y[o]) : y[o] == best);
                }
        xb_free(x); xb_free(y); xb_free(am);
    }
}

static void test_gap(void **state) {
    (void)state;
    xb_rng r;
    xb_rng_seed(&r, 41, "test");
    int c = 5, n = 3, hw = 49;
    float *x = rnd((int64_t)c * n * hw, &r, 2.0), y[15];
    double *xd = dbl(x, (int64_t)c * n * hw), yd[15];
    xb_gap_forward(c, n, hw, x, y);
    xb_gap_forward_ref(c, n, hw, xd, yd);
    XBT_CHECK_REL("gap fwd", y, yd, c * n, FWD_TOL);
    xb_free(x); xb_free(xd);
}

/* ---- elementwise --------------------------------------------------------------------------------- */

static void test_elementwise(void **state) {
    (void)state;
    float x[6] = {-1.5f, 0.0f, 2.25f, -0.0f, 3.0f, NAN}, y[6], a[6], dx[6] = {1, 1, 1, 1, 1, 1};
    float dy[6] = {10, 20, 30, 40, 50, 60};
    xb_relu_forward(6, x, y);
    assert_true(y[0] == 0.0f && y[1] == 0.0f && y[2] == 2.25f && y[4] == 3.0f && isnan(y[5]));
    xb_relu_backward(5, y, dy, dx);
    assert_true(dx[0] == 1 && dx[1] == 1 && dx[2] == 31 && dx[3] == 1 && dx[4] == 51);
    xb_add_forward(5, x, dy, a);
    assert_true(a[0] == 8.5f && a[2] == 32.25f);
    /* dropout: rate close to p, kept values scaled by 1/(1-p), mask reproducible from the rng */
    int64_t n = 100000;
    float *xs = xb_malloc(sizeof(float) * n), *ys = xb_malloc(sizeof(float) * n), *g = fzeros(n);
    uint8_t *mask = xb_malloc((size_t)n), *mask2 = xb_malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) xs[i] = 1.25f;
    xb_rng r, r2;
    xb_rng_seed(&r, 5, "dropout");
    r2 = r;
    xb_dropout_forward(n, 0.3f, &r, xs, mask, ys);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        kept += mask[i];
        assert_true(mask[i] ? ys[i] == 1.25f * (float)(1.0 / 0.7) : ys[i] == 0.0f);
    }
    assert_true(fabs((double)kept / n - 0.7) < 0.01);
    xb_dropout_forward(n, 0.3f, &r2, xs, mask2, ys);
    assert_memory_equal(mask, mask2, (size_t)n);
    xb_dropout_backward(n, 0.3f, mask, xs, g);
    for (int64_t i = 0; i < n; i++) assert_true(g[i] == (mask[i] ? 1.25f * (float)(1.0 / 0.7) : 0.0f));
    xb_dropout_forward(n, 0.0f, &r, xs, mask, ys);
    assert_memory_equal(xs, ys, sizeof(float) * n);
    xb_free(xs); xb_free(ys); xb_free(g); xb_free(mask); xb_free(mask2);
}

/* ---- layout -------------------------------------------------------------------------------------- */

static void test_layout_round_trips(void **state) {
    (void)state;
    int c = 5, n = 3, hw = 12;
    int64_t tot = (int64_t)c * n * hw;
    xb_rng r;
    xb_rng_seed(&r, 51, "test");
    float *x = rnd(tot, &r, 1.0), *a = fzeros(tot), *b = fzeros(tot);
    xb_nchw_to_cnhw(n, c, hw, x, a); /* x read as (n, c, hw) */
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int j = 0; j < hw; j++)
                assert_true(a[((int64_t)ch * n + i) * hw + j] == x[((int64_t)i * c + ch) * hw + j]);
    xb_cnhw_to_nchw(c, n, hw, a, b);
    assert_memory_equal(x, b, sizeof(float) * tot);
    /* flatten: column i of y is sample i in PyTorch's (c, h, w) order, i.e. NCHW row i */
    float *nchw = fzeros(tot);
    xb_flatten_forward(c, n, hw, a, b);
    double *xd = dbl(a, tot), *yd = dzeros(tot);
    xb_flatten_forward_ref(c, n, hw, xd, yd);
    XBT_CHECK_REL("flatten", b, yd, tot, 0.0);
    for (int i = 0; i < n; i++)
        for (int f = 0; f < c * hw; f++) assert_true(b[(int64_t)f * n + i] == x[(int64_t)i * c * hw + f]);
    memset(nchw, 0, sizeof(float) * tot);
    xb_flatten_backward(c, n, hw, b, nchw);
    assert_memory_equal(nchw, a, sizeof(float) * tot);
    xb_free(x); xb_free(a); xb_free(b); xb_free(nchw); xb_free(xd); xb_free(yd);
}

static void test_shortcut_pad(void **state) {
    (void)state;
    int cin = 3, cout = 7, lo = 2, s = 2, n = 2, h = 5, w = 6, ho = 3, wo = 3;
    int64_t nx = (int64_t)cin * n * h * w, ny = (int64_t)cout * n * ho * wo;
    float *x = fzeros(nx), *y = fzeros(nx > ny ? nx : ny);
    for (int64_t i = 0; i < nx; i++) x[i] = (float)(i + 1);
    xb_shortcut_pad_forward(cin, cout, lo, s, n, h, w, x, y);
    for (int co = 0; co < cout; co++)
        for (int i = 0; i < n; i++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++) {
                    float v = y[(((int64_t)co * n + i) * ho + oh) * wo + ow];
                    int ch = co - lo;
                    float want = (ch < 0 || ch >= cin) ? 0.0f : x[(((int64_t)ch * n + i) * h + 2 * oh) * w + 2 * ow];
                    assert_true(v == want);
                }
    double *xd = dbl(x, nx), *yd = dzeros(ny);
    xb_shortcut_pad_forward_ref(cin, cout, lo, s, n, h, w, xd, yd);
    XBT_CHECK_REL("shortcut pad", y, yd, ny, 0.0);
    /* backward: the adjoint, dx += at the strided positions of the middle channels; written (dx_acc =
     * 0) over garbage it gives the same values as added onto zeros */
    float *dy = fzeros(ny), *dx = fzeros(nx), *dx0 = fzeros(nx);
    for (int64_t i = 0; i < ny; i++) dy[i] = (float)(i % 11) - 5.0f;
    for (int64_t i = 0; i < nx; i++) dx[i] = 100.0f;
    xb_shortcut_pad_backward(cin, cout, lo, s, n, h, w, dy, dx);
    for (int ch = 0; ch < cin; ch++)
        for (int i = 0; i < n; i++)
            for (int r = 0; r < h; r++)
                for (int q = 0; q < w; q++) {
                    float want = 100.0f;
                    if (r % s == 0 && q % s == 0) want += dy[(((int64_t)(ch + lo) * n + i) * ho + r / s) * wo + q / s];
                    assert_true(dx[(((int64_t)ch * n + i) * h + r) * w + q] == want);
                }
    xb_shortcut_pad_backward(cin, cout, lo, s, n, h, w, dy, dx0);
    for (int64_t i = 0; i < nx; i++) dx[i] = -7.0f;
    xb_shortcut_pad_backward_ex(cin, cout, lo, s, n, h, w, dy, dx, 0);
    assert_same_values(dx, dx0, nx);
    /* stride 1: identity on the middle channels */
    xb_shortcut_pad_forward(cin, cin, 0, 1, n, h, w, x, y);
    assert_memory_equal(x, y, sizeof(float) * nx);
    xb_free(x); xb_free(y); xb_free(xd); xb_free(yd); xb_free(dy); xb_free(dx); xb_free(dx0);
}

/* ---- loss ---------------------------------------------------------------------------------------- */

static void test_softmax_ce(void **state) {
    (void)state;
    /* by hand: logits (1, -0.5, 2.25), label 2 */
    float z[3] = {1.0f, -0.5f, 2.25f}, dz[3];
    int32_t lab = 2;
    int correct = -1;
    double l = xb_softmax_ce(3, 1, z, &lab, 0.0f, dz, &correct);
    assert_float_equal(l, 0.30042502856216435, 1e-12);
    assert_int_equal(correct, 1);
    l = xb_softmax_ce(3, 1, z, &lab, 0.1f, dz, NULL);
    assert_float_equal(l, 0.4337583618954977, 1e-8); /* eps = 0.1f is not exactly 0.1 */
    double s = 0;
    for (int c = 0; c < 3; c++) s += dz[c];
    assert_true(fabs(s) < 1e-7); /* gradient rows sum to zero */

    int k = 10, n = 7;
    xb_rng r;
    xb_rng_seed(&r, 61, "test");
    float *lg = rnd((int64_t)k * n, &r, 4.0);
    int32_t labels[7];
    for (int j = 0; j < n; j++) labels[j] = (int32_t)xb_rng_below(&r, (uint64_t)k);
    double *lgd = dbl(lg, (int64_t)k * n);
    for (int e = 0; e < 2; e++) {
        float eps = e ? 0.2f : 0.0f;
        double got = xb_softmax_ce(k, n, lg, labels, eps, NULL, &correct);
        double want = xb_softmax_ce_ref(k, n, lgd, labels, eps);
        assert_true(fabs(got - want) <= 1e-12 * fabs(want));
        int hits = 0;
        for (int j = 0; j < n; j++) {
            int am = 0;
            for (int c = 1; c < k; c++) if (lg[c * n + j] > lg[am * n + j]) am = c;
            hits += am == labels[j];
        }
        assert_int_equal(correct, hits);
    }
    xb_free(lg); xb_free(lgd);
}

/* ---- thread-count independence of the non-BLAS kernels ------------------------------------------- */

static void run_nonblas(int threads, float *out, const float *x, const float *dy) {
    set_threads(threads);
    xb_conv2d_desc d;
    XB_ASSERT(xb_conv2d_desc_init(&d, 16, 8, 3, 3, 2, 2, 1, 1, 2, 12, 10) == XB_OK);
    int n = 3, c = 16;
    int64_t hw = 120, nx = (int64_t)c * n * hw, ncol = (int64_t)xb_conv2d_k(&d) * n * d.ho * d.wo;
    float *o = out;
    xb_im2col(&d, n, 1, x, o); o += ncol;
    memset(o, 0, sizeof(float) * nx);
    xb_col2im(&d, n, 1, dy, o); o += nx;
    float sm[16], si[16], rm[16] = {0}, rv[16] = {0};
    xb_batchnorm_forward(c, n * hw, x, NULL, NULL, rm, rv, 0.1f, 1e-5f, 1, o, sm, si); o += nx;
    memcpy(o, rm, sizeof rm); o += 16;
    memcpy(o, rv, sizeof rv); o += 16;
    float dg[16] = {0}, dbt[16] = {0};
    memset(o, 0, sizeof(float) * nx);
    xb_batchnorm_backward(c, n * hw, x, NULL, sm, si, dy, o, dg, dbt); o += nx;
    memcpy(o, dg, sizeof dg); o += 16;
    memcpy(o, dbt, sizeof dbt); o += 16;
    xb_pool_desc p;
    XB_ASSERT(xb_pool_desc_init(&p, 3, 2, 1, 12, 10) == XB_OK);
    int32_t am[16 * 3 * 6 * 5];
    int64_t np = (int64_t)c * n * p.ho * p.wo;
    xb_maxpool_forward(&p, c, n, x, o, am); o += np;
    memset(o, 0, sizeof(float) * nx);
    xb_maxpool_backward(&p, c, n, am, dy, o); o += nx;
    xb_avgpool_forward(&p, c, n, x, o); o += np;
    memset(o, 0, sizeof(float) * nx);
    xb_avgpool_backward(&p, c, n, dy, o); o += nx;
    xb_gap_forward(c, n, (int)hw, x, o); o += c * n;
    xb_relu_forward(nx, x, o); o += nx;
    xb_flatten_forward(c, n, (int)hw, x, o); o += nx;
    xb_nchw_to_cnhw(n, c, (int)hw, x, o); o += nx;
    xb_shortcut_pad_forward(c / 2, c, 4, 2, n, 12, 10, x, o); o += (int64_t)c * n * 30;
#ifdef __AVX512F__
    /* with AVX-512 every conv path runs on xbar's own GEMM kernels, not BLAS: also thread-count
     * independent (stride 1 implicit, stride 2 over phase planes, explicit im2col) */
    const int shapes[3][6] = {/* cout k s p h w */ {8, 3, 1, 1, 8, 8}, {12, 3, 2, 1, 8, 8}, {6, 3, 1, 0, 12, 10}};
    for (int i = 0; i < 3; i++) {
        xb_conv2d_desc cd;
        const int *sh = shapes[i];
        XB_ASSERT(xb_conv2d_desc_init(&cd, c, sh[0], sh[1], sh[1], sh[2], sh[2], sh[3], sh[3], 1, sh[4], sh[5]) == XB_OK);
        float *ws = xb_malloc(sizeof(float) * (xb_conv2d_workspace(&cd, n) + 1));
        int64_t nyo = (int64_t)sh[0] * n * cd.ho * cd.wo, nw = (int64_t)sh[0] * xb_conv2d_k(&cd);
        int64_t nxi = (int64_t)c * n * sh[4] * sh[5];
        xb_conv2d_forward(&cd, n, x, dy, dy + 1, o, ws); o += nyo;
        memset(o, 0, sizeof(float) * (size_t)(nxi + nw + sh[0]));
        xb_conv2d_backward(&cd, n, x, dy, dy + 7, o, o + nxi, o + nxi + nw, ws); o += nxi + nw + sh[0];
        xb_free(ws);
    }
#endif
}

static void test_thread_independence(void **state) {
    (void)state;
    int64_t nx = 16 * 3 * 120, big = 60 * nx;
    xb_rng r;
    xb_rng_seed(&r, 71, "test");
    float *x = rnd(nx, &r, 2.0), *dy = rnd(big, &r, 1.0), *o1 = fzeros(big), *o2 = fzeros(big);
    run_nonblas(1, o1, x, dy);
    run_nonblas(2, o2, x, dy);
    set_threads(1);
    assert_memory_equal(o1, o2, sizeof(float) * big);
    xb_free(x); xb_free(dy); xb_free(o1); xb_free(o2);
}

#define XBT_CHECK_CLOSE_F(what, got, want, n, tol)                                                  \
    do {                                                                                            \
        double *w_ = dbl(want, n);                                                                  \
        XBT_CHECK_REL(what, got, w_, n, tol);                                                       \
        xb_free(w_);                                                                                \
    } while (0)

/* The fused batchnorm+ReLU equals batchnorm then ReLU (training and eval; backward onto non-zero dx). */
static void test_batchnorm_relu_fused(void **state) {
    (void)state;
    const int c = 5;
    const int64_t m = 1000 + 7; /* a tail after the vector loop */
    xb_rng r;
    xb_rng_seed(&r, 5, "test");
    float *x = rnd(c * m, &r, 2.0), *g = rnd(c, &r, 1.0), *b = rnd(c, &r, 1.0), *dy = rnd(c * m, &r, 1.0);
    for (int training = 0; training <= 1; training++) {
        float rm1[5] = {0.1f, -0.2f, 0.3f, 0, 0}, rv1[5] = {1, 2, 0.5f, 1, 1}, rm2[5], rv2[5];
        memcpy(rm2, rm1, sizeof rm1);
        memcpy(rv2, rv1, sizeof rv1);
        float sm1[5], si1[5], sm2[5], si2[5];
        float *t = fzeros(c * m), *y1 = fzeros(c * m), *y2 = fzeros(c * m);
        xb_batchnorm_forward(c, m, x, g, b, rm1, rv1, 0.1f, 1e-5f, training, t, sm1, si1);
        xb_relu_forward(c * m, t, y1);
        xb_batchnorm_relu_forward(c, m, x, g, b, rm2, rv2, 0.1f, 1e-5f, training, y2, sm2, si2);
        assert_memory_equal(y1, y2, sizeof(float) * (size_t)(c * m));
        assert_memory_equal(rm1, rm2, sizeof rm1);
        assert_memory_equal(rv1, rv2, sizeof rv1);
        if (training) {
            float *dt = fzeros(c * m), *dx1 = rnd(c * m, &r, 0.5), *dx2 = fzeros(c * m);
            memcpy(dx2, dx1, sizeof(float) * (size_t)(c * m));
            float dg1[5] = {0}, db1[5] = {0}, dg2[5] = {0}, db2[5] = {0};
            xb_relu_backward(c * m, y1, dy, dt);
            xb_batchnorm_backward(c, m, x, g, sm1, si1, dt, dx1, dg1, db1);
            xb_batchnorm_relu_backward(c, m, x, g, sm2, si2, y2, dy, dx2, dg2, db2);
            XBT_CHECK_CLOSE_F("bn+relu dx", dx2, dx1, c * m, 1e-6);
            XBT_CHECK_CLOSE_F("bn+relu dgamma", dg2, dg1, c, 1e-6);
            XBT_CHECK_CLOSE_F("bn+relu dbeta", db2, db1, c, 1e-6);
            /* dx written (dx_acc = 0) over garbage: the values of adding onto zeros, both variants */
            for (int fused = 0; fused <= 1; fused++) {
                float *dz = fzeros(c * m), *dw_ = rnd(c * m, &r, 9.0), dgz[5] = {0}, dbz[5] = {0};
                xb_batchnorm_backward_ex(c, m, x, g, sm2, si2, fused ? y2 : NULL, fused ? dy : dt, dz, 1, dgz, dbz);
                xb_batchnorm_backward_ex(c, m, x, g, sm2, si2, fused ? y2 : NULL, fused ? dy : dt, dw_, 0, NULL, NULL);
                assert_same_values(dw_, dz, c * m);
                xb_free(dz); xb_free(dw_);
            }
            xb_free(dt); xb_free(dx1); xb_free(dx2);
        }
        xb_free(t); xb_free(y1); xb_free(y2);
    }
    xb_free(x); xb_free(g); xb_free(b); xb_free(dy);
}

/* The fused add+ReLU equals add then ReLU, both ways (gradients accumulate onto non-zero buffers). */
static void test_add_relu_fused(void **state) {
    (void)state;
    const int64_t n = 100003;
    xb_rng r;
    xb_rng_seed(&r, 6, "test");
    float *a = rnd(n, &r, 1.0), *b = rnd(n, &r, 1.0), *dy = rnd(n, &r, 1.0);
    float *t = fzeros(n), *y1 = fzeros(n), *y2 = fzeros(n), *dt = fzeros(n);
    float *da1 = rnd(n, &r, 1.0), *db1 = rnd(n, &r, 1.0), *da2 = fzeros(n), *db2 = fzeros(n);
    memcpy(da2, da1, sizeof(float) * (size_t)n);
    memcpy(db2, db1, sizeof(float) * (size_t)n);
    xb_add_forward(n, a, b, t);
    xb_relu_forward(n, t, y1);
    xb_add_relu_forward(n, a, b, y2);
    assert_memory_equal(y1, y2, sizeof(float) * (size_t)n);
    xb_relu_backward(n, y1, dy, dt);
    for (int64_t i = 0; i < n; i++) {
        da1[i] += dt[i];
        db1[i] += dt[i];
    }
    xb_add_relu_backward(n, y2, dy, da2, db2);
    assert_memory_equal(da1, da2, sizeof(float) * (size_t)n);
    assert_memory_equal(db1, db2, sizeof(float) * (size_t)n);
    /* written (acc 0) over garbage or added (acc 1), each side on its own; with and without the ReLU;
     * and a + a (one buffer for both sides) */
    for (int relu = 0; relu <= 1; relu++)
        for (int acc_a = 0; acc_a <= 1; acc_a++)
            for (int acc_b = 0; acc_b <= 1; acc_b++) {
                const float *g = relu ? dt : dy;
                float *pa = rnd(n, &r, 3.0), *pb = rnd(n, &r, 3.0), *wa = fzeros(n), *wb = fzeros(n);
                for (int64_t i = 0; i < n; i++) {
                    wa[i] = acc_a ? pa[i] + g[i] : g[i];
                    wb[i] = acc_b ? pb[i] + g[i] : g[i];
                }
                xb_add_relu_backward_ex(n, relu ? y2 : NULL, dy, pa, acc_a, pb, acc_b);
                assert_same_values(pa, wa, n);
                assert_same_values(pb, wb, n);
                xb_add_relu_backward_ex(n, relu ? y2 : NULL, dy, pa, 0, pa, 1); /* a + a: 2 g */
                for (int64_t i = 0; i < n; i++) wa[i] = g[i] + g[i];
                assert_same_values(pa, wa, n);
                xb_free(pa); xb_free(pb); xb_free(wa); xb_free(wb);
            }
    xb_free(a); xb_free(b); xb_free(dy); xb_free(t); xb_free(y1); xb_free(y2); xb_free(dt);
    xb_free(da1); xb_free(db1); xb_free(da2); xb_free(db2);
}

/* Convolution forward and backward give the same bits for 1, 2 and 3 threads, on every path of the
 * AVX-512 build (implicit, implicit with the packed dW, explicit, pointwise). */
static void conv_run(const conv_case *c, int threads, float *out) {
    set_threads(threads);
    xb_conv2d_desc d;
    XB_ASSERT(xb_conv2d_desc_init(&d, c->cin, c->cout, c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, c->groups,
                                  c->h, c->w) == XB_OK);
    xb_rng r;
    xb_rng_seed(&r, 99, "test");
    int n = c->n;
    int64_t nx = (int64_t)c->cin * n * c->h * c->w, ny = (int64_t)c->cout * n * d.ho * d.wo;
    int64_t nw = (int64_t)c->cout * xb_conv2d_k(&d);
    float *x = rnd(nx, &r, 1.0), *w = rnd(nw, &r, 1.0), *b = rnd(c->cout, &r, 1.0), *dy = rnd(ny, &r, 1.0);
    float *ws = xb_malloc(sizeof(float) * (xb_conv2d_workspace(&d, n) + 1));
    float *y = out, *dx = y + ny, *dw = dx + nx, *db = dw + nw;
    memset(dx, 0, sizeof(float) * (size_t)(nx + nw + c->cout));
    xb_conv2d_forward(&d, n, x, w, b, y, ws);
    xb_conv2d_backward(&d, n, x, w, dy, dx, dw, db, ws);
    xb_free(x); xb_free(w); xb_free(b); xb_free(dy); xb_free(ws);
}

static void test_conv_thread_independence(void **state) {
    (void)state;
    /* with neither AVX-512 nor AVX2 the convolutions run on OpenBLAS's threads, whose sums may differ */
    if (strcmp(xb_conv2d_isa(), "cblas") == 0) skip();
    const conv_case cases[] = {
        {16, 32, 3, 3, 1, 1, 1, 1, 1, 16, 16, 5, 1},  /* implicit */
        {66, 72, 3, 3, 2, 2, 1, 1, 1, 8, 8, 3, 1},    /* implicit, stride 2, packed dW */
        {128, 128, 3, 3, 1, 1, 1, 1, 1, 4, 4, 7, 1},  /* implicit, 16 row blocks, packed dW */
        {64, 70, 3, 3, 1, 1, 1, 1, 1, 2, 2, 9, 1},    /* explicit, packed dW */
        {96, 80, 1, 1, 1, 1, 0, 0, 1, 5, 6, 3, 1},    /* pointwise */
        {4, 6, 3, 3, 3, 3, 1, 1, 1, 12, 12, 2, 1},    /* explicit, few rows */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const conv_case *c = &cases[i];
        xb_conv2d_desc d;
        XB_ASSERT(xb_conv2d_desc_init(&d, c->cin, c->cout, c->kh, c->kw, c->sh, c->sw, c->ph, c->pw,
                                      c->groups, c->h, c->w) == XB_OK);
        int64_t tot = (int64_t)c->cout * c->n * d.ho * d.wo + (int64_t)c->cin * c->n * c->h * c->w +
                      (int64_t)c->cout * xb_conv2d_k(&d) + c->cout;
        float *o1 = fzeros(tot), *o2 = fzeros(tot);
        conv_run(c, 1, o1);
        for (int th = 2; th <= 3; th++) {
            conv_run(c, th, o2);
            assert_memory_equal(o1, o2, sizeof(float) * (size_t)tot);
        }
        xb_free(o1); xb_free(o2);
    }
    set_threads(1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_vs_ref),
        cmocka_unit_test(test_conv_long_k_accuracy),
        cmocka_unit_test(test_im2col_col2im),
        cmocka_unit_test(test_conv_desc_errors),
        cmocka_unit_test(test_linear_vs_ref),
        cmocka_unit_test(test_batchnorm_vs_ref),
        cmocka_unit_test(test_batchnorm_running_stats),
        cmocka_unit_test(test_batchnorm_relu_fused),
        cmocka_unit_test(test_add_relu_fused),
        cmocka_unit_test(test_pool_vs_ref),
        cmocka_unit_test(test_maxpool_ties),
        cmocka_unit_test(test_maxpool2x2_rule),
        cmocka_unit_test(test_gap),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_layout_round_trips),
        cmocka_unit_test(test_shortcut_pad),
        cmocka_unit_test(test_softmax_ce),
        cmocka_unit_test(test_thread_independence),
        cmocka_unit_test(test_conv_thread_independence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
