/*
 * k_loss.c -- softmax cross-entropy (PyTorch nn.CrossEntropyLoss, reduction='mean',
 * label_smoothing=eps) over logits (k, n) in the engine's (classes, batch) layout.
 *   loss_j = (1-eps) * (-log p_{j,y_j}) + eps * mean_c(-log p_{j,c})
 *   dloss/dz_{c,j} = (p_{c,j} - (1-eps)[c == y_j] - eps/k) / n
 * Computed per sample in double with a max-shifted log-sum-exp.  Not here: class weights,
 * ignore_index, probability targets.
 */
#include "xbar.h"

#include <math.h>

double xb_softmax_ce(int k, int n, const float *logits, const int32_t *labels, float eps,
                     float *dlogits, int *correct) {
    double total = 0.0;
    int hits = 0;
    for (int j = 0; j < n; j++) {
        int y = labels[j];
        XB_ASSERT(y >= 0 && y < k);
        double mx = -INFINITY;
        int am = 0;
        for (int c = 0; c < k; c++) {
            double v = logits[(int64_t)c * n + j];
            if (v > mx) { mx = v; am = c; }
        }
        hits += am == y;
        double se = 0.0, sz = 0.0;
        for (int c = 0; c < k; c++) {
            double v = logits[(int64_t)c * n + j];
            se += exp(v - mx);
            sz += v;
        }
        double lse = mx + log(se);
        double zy = logits[(int64_t)y * n + j];
        total += (1.0 - eps) * (lse - zy) + (double)eps * (lse - sz / k);
        if (dlogits) {
            for (int c = 0; c < k; c++) {
                double p = exp((double)logits[(int64_t)c * n + j] - lse);
                double t = (double)eps / k + (c == y ? 1.0 - eps : 0.0);
                dlogits[(int64_t)c * n + j] = (float)((p - t) / n);
            }
        }
    }
    if (correct) *correct = hits;
    return total / n;
}
