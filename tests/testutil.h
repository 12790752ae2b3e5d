/* testutil.h -- shared helpers for the cmocka test binaries: tolerance checks that print the first
 * mismatches side by side, temp paths, and the repository paths tests need. */
#ifndef XB_TESTUTIL_H
#define XB_TESTUTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xbar.h"

/* max |got - want| / max(|want|_inf, floor); prints the worst element and the first few values. */
static inline double xbt_max_rel(const char *what, const float *got, const double *want, int64_t n,
                                 double floor_) {
    double maxw = floor_, maxd = 0;
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) if (fabs(want[i]) > maxw) maxw = fabs(want[i]);
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= maxd)) { maxd = d; worst = i; }  /* NaN-safe: NaN becomes the worst */
    }
    double rel = maxd / maxw;
    if (getenv("XBT_VERBOSE") || !(rel < 1e-2))
        fprintf(stderr, "  %-28s n=%lld max|diff|=%.3e rel=%.3e worst[%lld] got %.9g want %.9g\n", what,
                (long long)n, maxd, rel, (long long)worst, got[worst], want[worst]);
    return rel;
}

#define XBT_CHECK_REL(what, got, want, n, tol)                                                      \
    do {                                                                                            \
        double rel_ = xbt_max_rel(what, got, want, n, 1e-30);                                      \
        if (!(rel_ <= (tol))) fail_msg("%s: relative error %.3e > %.1e", what, rel_, (double)(tol)); \
    } while (0)

/* The call returned `want`, and the last error names `path` and contains `what`. */
static inline void xbt_assert_error(xb_status got, xb_status want, const char *path, const char *what) {
    const char *msg = xb_last_error();
    if (got != want || !strstr(msg, path) || !strstr(msg, what))
        fail_msg("status %s (want %s), message \"%s\" should name %s and contain \"%s\"", xb_status_str(got),
                 xb_status_str(want), msg, path, what);
    if (getenv("XBT_VERBOSE")) fprintf(stderr, "  ok: %s\n", msg);
}

/* A fresh temporary directory for a test (removed by the OS's tmp cleaning; tests keep it small). */
static inline const char *xbt_tmpdir(void) {
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/xbar-test-XXXXXX");
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(1); }
    }
    return dir;
}

static inline char *xbt_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", xbt_tmpdir(), name);
    return buf;
}

static inline void xbt_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) { perror(path); exit(1); }
    fclose(f);
}

/* sample mean and variance (n - 1) of n doubles */
static inline void xbt_moments(const double *x, int64_t n, double *mean, double *var) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int64_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *var = s2 / (n - 1);
}

/* Under AddressSanitizer (make asan sets XB_SANITIZE=1) the larger cases shrink. */
static inline int xbt_sanitized(void) {
    const char *e = getenv("XB_SANITIZE");
    return e && strcmp(e, "1") == 0;
}

/* n random 3x32x32 images with random labels of 10 classes (free with xb_dataset_free). */
static inline xb_dataset xbt_synthetic_cifar(int n) {
    xb_dataset d;
    memset(&d, 0, sizeof d);
    d.n = n; d.c = 3; d.h = 32; d.w = 32; d.classes = 10;
    d.images = malloc((size_t)n * 3 * 32 * 32);
    d.labels = malloc((size_t)n * sizeof(int32_t));
    xb_rng r;
    xb_rng_seed(&r, 99, "test");
    for (int64_t i = 0; i < (int64_t)n * 3 * 32 * 32; i++) d.images[i] = (uint8_t)xb_rng_below(&r, 256);
    for (int i = 0; i < n; i++) d.labels[i] = (int32_t)xb_rng_below(&r, 10);
    for (int c = 0; c < 3; c++) { d.mean[c] = 0.5f; d.std[c] = 0.25f; }
    snprintf(d.path, sizeof d.path, "synthetic");
    return d;
}

/* CIFAR-10 location for tests (XBAR_DATA or ../shared/data/cifar10); NULL if absent. */
static inline const char *xbt_cifar_dir(void) {
    static char buf[600];
    if (xb_data_find(NULL, buf, sizeof buf) != XB_OK) return NULL;
    return buf;
}
#endif
