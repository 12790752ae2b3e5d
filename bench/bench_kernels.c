/*
 * bench_kernels.c -- times the convolution kernels (and the batchnorm/ReLU that follow them) at
 * resnet20's layer shapes for CIFAR-10, batch 128, and reports ms, GFLOP/s and the fraction of the
 * machine's peak measured in the same run: the larger of one large cblas_sgemm and a register-only
 * AVX-512 FMA loop (Debian's OpenBLAS 0.3.21 runs its Haswell kernels on Sapphire Rapids unless
 * OPENBLAS_CORETYPE=SkylakeX is set, so its SGEMM is not the peak there).  Each shape is first validated
 * against the double reference at batch 2.  Not part of `make test`.
 *
 * Build (from the repository root):
 *   cc -std=c11 -D_GNU_SOURCE -O3 -march=native -fopenmp -Iinclude -Isrc \
 *      -I/usr/include/x86_64-linux-gnu/openblas-openmp bench/bench_kernels.c src/nn/k_*.c src/nn/ref.c \
 *      src/core/status.c src/core/tensor.c src/core/rng.c src/core/threads.c \
 *      -L/usr/lib/x86_64-linux-gnu/openblas-openmp -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp \
 *      -lopenblas -lm -o build/bench_kernels
 * Usage: build/bench_kernels [threads=1] [batch=128] [min_seconds_per_kernel=0.3] [resnet20|vgg11]
 * Output: a table, then one CSV line per kernel: csv,name,ms,gflops,frac_peak
 */
#include "xbar.h"

#include <cblas.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct layer { const char *name; int cin, cout, k, s, p, h, count; } layer;

/* resnet20 (He et al. 2016, option-A shortcuts): count = how many convs of that shape per forward */
static const layer resnet20_layers[] = {
    {"conv1 3->16 32x32", 3, 16, 3, 1, 1, 32, 1},
    {"l1 16->16 32x32", 16, 16, 3, 1, 1, 32, 6},
    {"l2.0 16->32 s2", 16, 32, 3, 2, 1, 32, 1},
    {"l2 32->32 16x16", 32, 32, 3, 1, 1, 16, 5},
    {"l3.0 32->64 s2", 32, 64, 3, 2, 1, 16, 1},
    {"l3 64->64 8x8", 64, 64, 3, 1, 1, 8, 5},
    {NULL, 0, 0, 0, 0, 0, 0, 0},
};

/* vgg11 (CIFAR variant with batchnorm): features.0 ... features.25 */
static const layer vgg11_layers[] = {
    {"f0 3->64 32x32", 3, 64, 3, 1, 1, 32, 1},
    {"f4 64->128 16x16", 64, 128, 3, 1, 1, 16, 1},
    {"f8 128->256 8x8", 128, 256, 3, 1, 1, 8, 1},
    {"f11 256->256 8x8", 256, 256, 3, 1, 1, 8, 1},
    {"f15 256->512 4x4", 256, 512, 3, 1, 1, 4, 1},
    {"f18 512->512 4x4", 512, 512, 3, 1, 1, 4, 1},
    {"f22 512->512 2x2", 512, 512, 3, 1, 1, 2, 2},
    {NULL, 0, 0, 0, 0, 0, 0, 0},
};

static float *rnd(int64_t n, xb_rng *r) {
    float *p = xb_malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(2.0 * xb_rng_uniform(r) - 1.0);
    return p;
}

typedef void (*bench_fn)(void *ctx);

/* With one thread, time is this thread's CPU time (robust to other processes sharing the machine);
 * with more, wall-clock time.  Warm up once, then repeat until min_s has passed; best of 3 rounds. */
static int use_cpu_clock;

static double now_s(void) {
    if (!use_cpu_clock) return xb_time_s();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double time_it(bench_fn f, void *ctx, double min_s) {
    f(ctx);
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        int reps = 0;
        double t0 = now_s(), t;
        do {
            f(ctx);
            reps++;
            t = now_s() - t0;
        } while (t < min_s / 3 || reps < 2);
        if (t / reps < best) best = t / reps;
    }
    return best;
}

typedef struct conv_ctx {
    xb_conv2d_desc d;
    int n;
    float *x, *w, *y, *dy, *dx, *dw, *ws, *gamma, *beta, *sm, *si, *t, *dg, *db, *dx2;
} conv_ctx;

static void run_fwd(void *p) {
    conv_ctx *c = p;
    xb_conv2d_forward(&c->d, c->n, c->x, c->w, NULL, c->y, c->ws);
}
static void run_bwd(void *p) {
    conv_ctx *c = p;
    xb_conv2d_backward(&c->d, c->n, c->x, c->w, c->dy, c->dx, c->dw, NULL, c->ws);
}
static void run_bwd_dw(void *p) {
    conv_ctx *c = p;
    xb_conv2d_backward(&c->d, c->n, c->x, c->w, c->dy, NULL, c->dw, NULL, c->ws);
}
static void run_bn_relu_fwd(void *p) {
    conv_ctx *c = p;
    int64_t m = (int64_t)c->n * c->d.ho * c->d.wo;
    xb_batchnorm_forward(c->d.cout, m, c->y, c->gamma, c->beta, NULL, NULL, 0.1f, 1e-5f, 1, c->dy, c->sm, c->si);
    xb_relu_forward(c->d.cout * m, c->dy, c->dy);
}
static void run_bn_relu_bwd(void *p) {
    conv_ctx *c = p;
    int64_t m = (int64_t)c->n * c->d.ho * c->d.wo;
    memset(c->t, 0, sizeof(float) * (size_t)(c->d.cout * m));
    xb_relu_backward(c->d.cout * m, c->dy, c->y, c->t);
    xb_batchnorm_backward(c->d.cout, m, c->y, c->gamma, c->sm, c->si, c->t, c->dx2, c->dg, c->db);
}

/* The machine's FMA peak: 12 independent chains of AVX-512 FMAs, or with AVX2 of 8-float FMAs
 * (distinct values, so the compiler cannot merge them), no memory traffic.  0 without either. */
typedef struct fma_ctx { float out; } fma_ctx;
static void run_fma(void *p) {
#ifdef __AVX512F__
    __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = _mm512_set1_ps(1.1f), a2 = _mm512_set1_ps(1.2f), a3 = _mm512_set1_ps(1.3f);
    __m512 a4 = _mm512_set1_ps(1.4f), a5 = _mm512_set1_ps(1.5f), a6 = _mm512_set1_ps(1.6f), a7 = _mm512_set1_ps(1.7f);
    __m512 a8 = _mm512_set1_ps(1.8f), a9 = _mm512_set1_ps(1.9f), a10 = _mm512_set1_ps(2.0f), a11 = _mm512_set1_ps(2.1f);
    for (int i = 0; i < 1000000; i++) {
#define F(x) x = _mm512_fmadd_ps(x, m, c);
        F(a0) F(a1) F(a2) F(a3) F(a4) F(a5) F(a6) F(a7) F(a8) F(a9) F(a10) F(a11)
#undef F
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    ((fma_ctx *)p)->out = _mm512_reduce_add_ps(s);
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f), a3 = _mm256_set1_ps(1.3f);
    __m256 a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f), a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f);
    __m256 a8 = _mm256_set1_ps(1.8f), a9 = _mm256_set1_ps(1.9f), a10 = _mm256_set1_ps(2.0f), a11 = _mm256_set1_ps(2.1f);
    for (int i = 0; i < 1000000; i++) {
#define F(x) x = _mm256_fmadd_ps(x, m, c);
        F(a0) F(a1) F(a2) F(a3) F(a4) F(a5) F(a6) F(a7) F(a8) F(a9) F(a10) F(a11)
#undef F
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float t[8];
    _mm256_storeu_ps(t, s);
    ((fma_ctx *)p)->out = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
#else
    ((fma_ctx *)p)->out = 0;
#endif
}
#if defined(__AVX512F__)
#define FMA_FLOP (1e6 * 12 * 32)
#else
#define FMA_FLOP (1e6 * 12 * 16)
#endif

typedef struct gemm_ctx { int m, n, k; float *a, *b, *c; } gemm_ctx;
static void run_gemm(void *p) {
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->n, g->k, 1.0f, g->a, g->k, g->b, g->n,
                0.0f, g->c, g->n);
}

/* Forward at batch 2 against the double reference. */
static int validate(const layer *L) {
    xb_conv2d_desc d;
    if (xb_conv2d_desc_init(&d, L->cin, L->cout, L->k, L->k, L->s, L->s, L->p, L->p, 1, L->h, L->h)) return 0;
    int n = 2;
    int64_t nx = (int64_t)L->cin * n * L->h * L->h, nw = (int64_t)L->cout * xb_conv2d_k(&d);
    int64_t ny = (int64_t)L->cout * n * d.ho * d.wo;
    xb_rng r;
    xb_rng_seed(&r, 1, "bench");
    float *x = rnd(nx, &r), *w = rnd(nw, &r), *y = xb_malloc(sizeof(float) * ny);
    float *ws = xb_malloc(sizeof(float) * (xb_conv2d_workspace(&d, n) + 1));
    double *xd = xb_malloc(sizeof(double) * nx), *wd = xb_malloc(sizeof(double) * nw);
    double *yd = xb_malloc(sizeof(double) * ny), maxd = 0, maxw = 0;
    for (int64_t i = 0; i < nx; i++) xd[i] = x[i];
    for (int64_t i = 0; i < nw; i++) wd[i] = w[i];
    xb_conv2d_forward(&d, n, x, w, NULL, y, ws);
    xb_conv2d_forward_ref(&d, n, xd, wd, NULL, yd);
    for (int64_t i = 0; i < ny; i++) {
        maxd = fmax(maxd, fabs(y[i] - yd[i]));
        maxw = fmax(maxw, fabs(yd[i]));
    }
    xb_free(x); xb_free(w); xb_free(y); xb_free(ws); xb_free(xd); xb_free(wd); xb_free(yd);
    return maxd <= 1e-5 * maxw;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1, n = argc > 2 ? atoi(argv[2]) : 128;
    double min_s = argc > 3 ? atof(argv[3]) : 0.3;
    const char *model = argc > 4 ? argv[4] : "resnet20";
    const layer *layers = !strcmp(model, "resnet20") ? resnet20_layers : !strcmp(model, "vgg11") ? vgg11_layers : NULL;
    if (threads < 1 || n < 1 || !(min_s > 0) || !layers) {
        fprintf(stderr, "usage: %s [threads>=1] [batch>=1] [min_seconds>0] [resnet20|vgg11]\n", argv[0]);
        return 2;
    }
    xb_set_threads(threads);
    use_cpu_clock = threads == 1;
    xb_rng r;
    xb_rng_seed(&r, 2, "bench");

    gemm_ctx g = {1024, 1024, 1024, NULL, NULL, NULL};
    g.a = rnd((int64_t)g.m * g.k, &r); g.b = rnd((int64_t)g.k * g.n, &r); g.c = rnd((int64_t)g.m * g.n, &r);
    double tg = time_it(run_gemm, &g, 1.0), sgemm = 2.0 * g.m * g.n * g.k / tg * 1e-9;
    fma_ctx fc;
    double fma_peak = FMA_FLOP / time_it(run_fma, &fc, 0.5) * 1e-9;
    /* "peak" below: the larger of the two (one core's FMA peak; x threads for the OpenMP runs) */
    double peak = fma_peak * threads > sgemm ? fma_peak * threads : sgemm;
    printf("threads %d, batch %d; SGEMM %dx%dx%d (cblas): %.1f GFLOP/s; FMA peak %.1f GFLOP/s/core "
           "(fractions below are of %.1f)\n", threads, n, g.m, g.n, g.k, sgemm, fma_peak, peak);
    xb_free(g.a); xb_free(g.b); xb_free(g.c);

    printf("%-20s %8s %8s %6s | %8s %8s %6s | %8s | %8s %8s | %8s\n", "layer", "fwd ms", "GF/s", "peak",
           "bwd ms", "GF/s", "peak", "dw ms", "bnr f ms", "bnr b ms", "x count");
    double tot_f = 0, tot_b = 0, tot_bn = 0, tot_flop = 0;
    int ok = 1;
    for (size_t i = 0; layers[i].name; i++) {
        const layer *L = &layers[i];
        if (!validate(L)) {
            printf("%s: VALIDATION FAILED\n", L->name);
            ok = 0;
            continue;
        }
        conv_ctx c;
        c.n = n;
        XB_ASSERT(xb_conv2d_desc_init(&c.d, L->cin, L->cout, L->k, L->k, L->s, L->s, L->p, L->p, 1, L->h, L->h) == XB_OK);
        int64_t nx = (int64_t)L->cin * n * L->h * L->h, nw = (int64_t)L->cout * xb_conv2d_k(&c.d);
        int64_t ny = (int64_t)L->cout * n * c.d.ho * c.d.wo;
        c.x = rnd(nx, &r); c.w = rnd(nw, &r); c.y = rnd(ny, &r); c.dy = rnd(ny, &r);
        c.dx = rnd(nx, &r); c.dw = rnd(nw, &r);
        c.ws = xb_malloc(sizeof(float) * (xb_conv2d_workspace(&c.d, n) + 1));
        c.gamma = rnd(L->cout, &r); c.beta = rnd(L->cout, &r); c.sm = rnd(L->cout, &r); c.si = rnd(L->cout, &r);
        c.t = rnd(ny, &r); c.dx2 = rnd(ny, &r); c.dg = rnd(L->cout, &r); c.db = rnd(L->cout, &r);
        double flop = 2.0 * (double)ny * xb_conv2d_k(&c.d);
        double tf = time_it(run_fwd, &c, min_s), tb = time_it(run_bwd, &c, min_s);
        double tdw = time_it(run_bwd_dw, &c, min_s);
        double tbf = time_it(run_bn_relu_fwd, &c, min_s), tbb = time_it(run_bn_relu_bwd, &c, min_s);
        printf("%-20s %8.2f %8.1f %5.0f%% | %8.2f %8.1f %5.0f%% | %8.2f | %8.2f %8.2f | %d\n", L->name, tf * 1e3,
               flop / tf * 1e-9, 100 * flop / tf * 1e-9 / peak, tb * 1e3, 2 * flop / tb * 1e-9,
               100 * 2 * flop / tb * 1e-9 / peak, tdw * 1e3, tbf * 1e3, tbb * 1e3, L->count);
        printf("csv,%s fwd,%.4f,%.2f,%.3f\n", L->name, tf * 1e3, flop / tf * 1e-9, flop / tf * 1e-9 / peak);
        printf("csv,%s bwd,%.4f,%.2f,%.3f\n", L->name, tb * 1e3, 2 * flop / tb * 1e-9, 2 * flop / tb * 1e-9 / peak);
        tot_f += L->count * tf;
        tot_b += L->count * tb;
        tot_bn += L->count * (tbf + tbb);
        tot_flop += L->count * flop;
        xb_free(c.x); xb_free(c.w); xb_free(c.y); xb_free(c.dy); xb_free(c.dx); xb_free(c.dw); xb_free(c.ws);
        xb_free(c.gamma); xb_free(c.beta); xb_free(c.sm); xb_free(c.si);
        xb_free(c.t); xb_free(c.dx2); xb_free(c.dg); xb_free(c.db);
    }
    printf("%s convs per batch of %d: fwd %.1f ms (%.1f GF/s), bwd %.1f ms (%.1f GF/s), bn+relu f+b %.1f ms\n",
           model, n, tot_f * 1e3, tot_flop / tot_f * 1e-9, tot_b * 1e3, 2 * tot_flop / tot_b * 1e-9, tot_bn * 1e3);
    printf("  conv-only bound: inference %.0f img/s, train (fwd+bwd+bn/relu) %.0f img/s\n", n / tot_f,
           n / (tot_f + tot_b + tot_bn));
    return ok ? 0 : 1;
}
