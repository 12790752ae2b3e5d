/*
 * k_linear.c -- fully connected layer (PyTorch nn.Linear) on (features, batch) activations:
 *     y (f, n) = W (f, k) x (k, n) + b (f)
 * backward:  dW += dy x^T,  dx += W^T dy,  db += sum_n dy  (all accumulate, see xb_nn.h).
 * One SGEMM each; the bias is written first and the GEMM accumulates onto it.
 */
#include "xbar.h"

#include <cblas.h>

void xb_linear_forward(int k, int f, int n, const float *x, const float *w, const float *b, float *y) {
    float beta = 0.0f;
    if (b) {
        for (int o = 0; o < f; o++)
            for (int j = 0; j < n; j++) y[(int64_t)o * n + j] = b[o];
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, f, n, k, 1.0f, w, k, x, n, beta, y, n);
}

void xb_linear_backward(int k, int f, int n, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *db) {
    if (dw) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, f, k, n, 1.0f, dy, n, x, n, 1.0f, dw, k);
    if (dx) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, f, 1.0f, w, k, dy, n, 1.0f, dx, n);
    if (db) {
        for (int o = 0; o < f; o++) {
            double s = 0;
            for (int j = 0; j < n; j++) s += dy[(int64_t)o * n + j];
            db[o] += (float)s;
        }
    }
}
