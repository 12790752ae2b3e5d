/*
 * optim.c -- SGD (momentum, Nesterov), Adam and AdamW with PyTorch's exact update order, and the
 * learning-rate schedules.  One flat loop over the parameter block (same layout as the gradients).
 *   SGD (torch.optim.SGD, dampening 0):  g += wd*p;  b = mu*b + g (b = g at the first step);
 *        p -= lr * (nesterov ? g + mu*b : b)
 *   Adam: g += wd*p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *        p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 *   AdamW: p *= 1 - lr*wd, then Adam without the wd term.
 */
#include "xbar.h"

#include <math.h>
#include <string.h>

xb_status xb_optim_init(xb_optim *o, xb_optim_kind kind, int64_t n) {
    memset(o, 0, sizeof *o);
    if ((unsigned)kind >= XB_OPT_COUNT) return xb_errorf(XB_ERR_ARG, "unknown optimizer %d", (int)kind);
    o->kind = kind;
    o->n = n;
    o->lr = kind == XB_OPT_SGD ? 0.1 : 1e-3;
    o->momentum = 0.9;
    o->beta1 = 0.9; o->beta2 = 0.999; o->eps = 1e-8;
    o->m = xb_calloc((size_t)(n + 1) * sizeof(float));
    if (kind != XB_OPT_SGD) o->v = xb_calloc((size_t)(n + 1) * sizeof(float));
    return XB_OK;
}

void xb_optim_free(xb_optim *o) {
    xb_free(o->m); xb_free(o->v);
    o->m = o->v = NULL;
}

void xb_optim_step(xb_optim *o, float *p, const float *g, const uint8_t *decay_mask, double lr) {
    xb_optim_step_masked(o, p, g, decay_mask, NULL, lr);
}

void xb_optim_step_masked(xb_optim *o, float *p, const float *g, const uint8_t *decay_mask, const uint8_t *frozen,
                          double lr) {
    const int64_t n = o->n;
    const float wd = (float)o->weight_decay, flr = (float)lr;
    o->step++;
    if (o->kind == XB_OPT_SGD) {
        const float mu = (float)o->momentum;
        const int first = o->step == 1;
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            if (frozen && frozen[i]) continue;
            float gi = g[i];
            if (wd != 0 && (!decay_mask || decay_mask[i])) gi += wd * p[i];
            if (mu != 0) {
                float b = first ? gi : mu * o->m[i] + gi;
                o->m[i] = b;
                gi = o->nesterov ? gi + mu * b : b;
            }
            p[i] -= flr * gi;
        }
        return;
    }
    const double b1 = o->beta1, b2 = o->beta2;
    const double bc1 = 1.0 - pow(b1, (double)o->step), bc2 = 1.0 - pow(b2, (double)o->step);
    const float step_size = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2), eps = (float)o->eps;
    const float fb1 = (float)b1, fb2 = (float)b2;
    const int adamw = o->kind == XB_OPT_ADAMW;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        if (frozen && frozen[i]) continue;
        float gi = g[i];
        int dec = wd != 0 && (!decay_mask || decay_mask[i]);
        if (adamw) { if (dec) p[i] *= 1.0f - flr * wd; }
        else if (dec) gi += wd * p[i];
        float mi = fb1 * o->m[i] + (1.0f - fb1) * gi;
        float vi = fb2 * o->v[i] + (1.0f - fb2) * gi * gi;
        o->m[i] = mi; o->v[i] = vi;
        p[i] -= step_size * mi / (sqrtf(vi) / sqrt_bc2 + eps);
    }
}

double xb_schedule_lr(xb_sched_kind k, double base, int64_t step, int64_t total, int64_t per_epoch) {
    if (total < 1) total = 1;
    if (step > total) step = total;
    const double pi = 3.14159265358979323846;
    switch (k) {
    case XB_SCHED_CONST: return base;
    case XB_SCHED_COSINE: return 0.5 * base * (1.0 + cos(pi * (double)step / (double)total));
    case XB_SCHED_STEP: { /* x0.1 at 50% and 75% of the epochs (He et al.'s 100/150 of 200) */
        if (per_epoch < 1) per_epoch = 1;
        int64_t epochs = (total + per_epoch - 1) / per_epoch, e = step / per_epoch;
        double lr = base;
        if (e >= epochs / 2) lr *= 0.1;
        if (e >= (epochs * 3) / 4) lr *= 0.1;
        return lr;
    }
    case XB_SCHED_ONECYCLE: { /* torch OneCycleLR: pct_start 0.3, div 25, final_div 1e4, cosine */
        double up = 0.3 * (double)total - 1.0, s = (double)step;
        double lo = base / 25.0, fin = lo / 1e4;
        if (s <= up) return lo + (base - lo) * 0.5 * (1.0 - cos(pi * s / (up > 0 ? up : 1)));
        double down = (double)total - 1.0 - up, t = (s - up) / (down > 0 ? down : 1);
        if (t > 1) t = 1;
        return fin + (base - fin) * 0.5 * (1.0 + cos(pi * t));
    }
    case XB_SCHED_COUNT: break;
    }
    XB_ASSERT(0);
    return base;
}
