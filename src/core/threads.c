/* threads.c -- one thread count for OpenMP regions and OpenBLAS; a monotonic clock. */
#include "xbar.h"

#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int n); /* from OpenBLAS (cblas.h declares it too) */

static int n_threads = 1;

void xb_set_threads(int n) {
    XB_ASSERT(n >= 1);
    n_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int xb_get_threads(void) { return n_threads; }

double xb_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
