/*
 * bench_readnoise.c -- what read noise costs on the fast path: the same crossbar network through the
 * matmul hook with and without read noise (and the float network), interleaved in one process,
 * median of the repeats.  The noisy config is the one given (default configs/hw/reram-64-readnoise.cfg);
 * the noiseless twin is the same config with read_noise_sigma = 0, forced through the hook (a
 * foldable network would otherwise run at float speed in `xbar eval`).  Random weights and inputs:
 * the cost does not depend on the values.  Not part of `make test`.
 *
 * Build (from the repository root, after `make`):
 *   cc -std=c11 -D_GNU_SOURCE -O3 -march=native -fopenmp -Iinclude -Isrc \
 *      -I/usr/include/x86_64-linux-gnu/openblas-openmp bench/bench_readnoise.c build/libxbar.a \
 *      -L/usr/lib/x86_64-linux-gnu/openblas-openmp -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp \
 *      -lopenblas -lcjson -lcholmod -lm -o build/bench_readnoise
 * Usage: OMP_WAIT_POLICY=passive build/bench_readnoise [cfg] [model=resnet20] [batch=128] [repeats=7] [threads=1]
 * Output: per repeat the three times, then the medians and the ratios noisy/noiseless, noisy/float,
 * noiseless/float, and one CSV line: csv,model,batch,float_s,noiseless_s,noisy_s,noisy_vs_noiseless
 */
#include "xb_xbar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmpd_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median_(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmpd_);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static void die_(const char *what) {
    fprintf(stderr, "bench_readnoise: %s: %s\n", what, xb_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    const char *cfg = argc > 1 ? argv[1] : "configs/hw/reram-64-readnoise.cfg";
    const char *model = argc > 2 ? argv[2] : "resnet20";
    const int batch = argc > 3 ? atoi(argv[3]) : 128, reps = argc > 4 ? atoi(argv[4]) : 7;
    const int threads = argc > 5 ? atoi(argv[5]) : 1;
    xb_set_threads(threads);
    xb_hw hn, h0;
    if (xb_hw_load(cfg, &hn) != XB_OK) die_(cfg);
    if (!(hn.read_noise_sigma > 0)) { fprintf(stderr, "bench_readnoise: %s has no read noise\n", cfg); return 1; }
    h0 = hn;
    h0.read_noise_sigma = 0;
    xb_model *m;
    if (xb_model_load(model, 1, &m) != XB_OK) die_(model);
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    size_t len = (size_t)batch * c * h * w;
    float *x = malloc(len * sizeof(float)), *y = malloc((size_t)batch * xb_model_classes(m) * sizeof(float));
    xb_rng r;
    xb_rng_seed(&r, 7, "bench");
    for (size_t i = 0; i < len; i++) x[i] = (float)xb_rng_normal(&r);
    xb_xnet *xn, *x0;
    if (xb_xnet_init(&hn, m, &xn) != XB_OK || xb_xnet_program(xn, 1) != XB_OK) die_("noisy network");
    if (xb_xnet_init(&h0, m, &x0) != XB_OK || xb_xnet_program(x0, 1) != XB_OK) die_("noiseless network");
    if (xb_xnet_needs_calibration(xn) && xb_xnet_calibrate(xn, batch, x) != XB_OK) die_("calibrate");
    if (xb_xnet_needs_calibration(x0) && xb_xnet_calibrate(x0, batch, x) != XB_OK) die_("calibrate");
    if (xb_model_set_batch(m, batch) != XB_OK) die_("batch");
    xb_model_train_mode(m, 0);
    double *tf = malloc((size_t)reps * sizeof(double)), *t0 = malloc((size_t)reps * sizeof(double));
    double *tn = malloc((size_t)reps * sizeof(double));
    for (int it = -1; it < reps; it++) { /* it = -1: untimed warm-up */
        double a = xb_time_s();
        xb_model_set_op(m, NULL);
        if (xb_model_forward(m, batch, x, y, NULL) != XB_OK) die_("float forward");
        double b = xb_time_s();
        xb_xnet_attach(x0);
        if (xb_model_forward(m, batch, x, y, NULL) != XB_OK) die_("noiseless forward");
        xb_xnet_detach(x0);
        double cc = xb_time_s();
        xb_xnet_attach(xn);
        if (xb_model_forward(m, batch, x, y, NULL) != XB_OK) die_("noisy forward");
        xb_xnet_detach(xn);
        double d = xb_time_s();
        if (it < 0) continue;
        tf[it] = b - a; t0[it] = cc - b; tn[it] = d - cc;
        printf("repeat %d: float %.4f s, noiseless hook %.4f s, noisy hook %.4f s (%.3fx)\n", it, tf[it], t0[it],
               tn[it], tn[it] / t0[it]);
    }
    double *q = malloc((size_t)reps * sizeof(double));
    for (int i = 0; i < reps; i++) q[i] = tn[i] / t0[i];
    double mq = median_(q, reps), mf = median_(tf, reps), m0 = median_(t0, reps), mn = median_(tn, reps);
    printf("%s, %s, batch %d, %d threads, medians of %d: float %.4f s, noiseless %.4f s, noisy %.4f s\n", cfg, model,
           batch, threads, reps, mf, m0, mn);
    printf("noisy / noiseless %.3f (median of the per-repeat ratios), noisy / float %.3f, noiseless / float %.3f\n",
           mq, mn / mf, m0 / mf);
    printf("csv,%s,%d,%.5f,%.5f,%.5f,%.4f\n", model, batch, mf, m0, mn, mq);
    xb_xnet_free(xn);
    xb_xnet_free(x0);
    xb_model_free(m);
    free(x); free(y); free(tf); free(t0); free(tn); free(q);
    return 0;
}
