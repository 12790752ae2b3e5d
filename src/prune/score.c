/* score.c -- what pruning removes together and how much each channel matters.  Channel groups follow the
 * graph (a residual sum joins its producers' channels into one group); scores per channel: filter L1 norm,
 * mean activation, random (methods.md 10A), feature relevance by LRP-epsilon (10B) and first-order Taylor.
 * LRP is the model's own backward with every mapped layer's output gradient damped by |z| / (|z| + eps):
 * an operator that wraps the installed one, so it runs through whatever the model multiplies with.
 * docs/pruning.md. */
#include "xbar.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const xb_prune_score_names[XB_PS_COUNT] = {"l1", "mean-act", "random", "frs", "taylor"};

const char *xb_group_frozen_name(xb_group_frozen f) {
    static const char *const n[] = {"prunable", "read by an option-A shortcut", "grouped convolution",
                                    "joined by a residual sum", "the image's"};
    return f >= 0 && f <= XB_GROUP_IMAGE ? n[f] : "?";
}

/* ---- groups ------------------------------------------------------------------------------------------ */

static int find_(int *par, int s) {
    while (par[s] != s) s = par[s] = par[par[s]];
    return s;
}

static int push_(int **a, int *n, int v) {
    int *t = realloc(*a, sizeof(int) * (size_t)(*n + 1));
    if (!t) return 0;
    t[(*n)++] = v;
    *a = t;
    return 1;
}

void xb_prune_groups_free(xb_prune_groups *gs) {
    if (!gs) return;
    for (int k = 0; k < gs->n; k++) { free(gs->g[k].conv); free(gs->g[k].cons); free(gs->g[k].obs); }
    free(gs->g);
    gs->g = NULL;
    gs->n = 0;
}

xb_status xb_prune_groups_find(const xb_model *m, int residual_skip, xb_prune_groups *out) {
    const int nn = xb_model_n_nodes(m);
    /* channel spaces: 0 the image, then one per convolution or shortcut; sp[i]: node i's (-1: none) */
    int *sp = malloc(sizeof(int) * (size_t)(nn + 1)), *par = malloc(sizeof(int) * (size_t)(nn + 2));
    int *frz = calloc((size_t)nn + 2, sizeof(int)), *joined = calloc((size_t)nn + 2, sizeof(int));
    int *gid = malloc(sizeof(int) * (size_t)(nn + 2));
    memset(out, 0, sizeof *out);
    xb_status st = sp && par && frz && joined && gid ? XB_OK : xb_errorf(XB_ERR_NOMEM, "no memory for channel groups");
    int ns = 1;
    if (!st) { par[0] = 0; frz[0] = XB_GROUP_IMAGE; }
    for (int i = 0; i < nn && !st; i++) {
        const char *t = xb_model_node_type(m, i);
        int a, b;
        xb_model_node_inputs(m, i, &a, &b);
        const int in = a < 0 ? 0 : sp[a];
        if (!strcmp(t, "conv2d") || !strcmp(t, "shortcut")) {
            sp[i] = ns;
            par[ns] = ns;
            frz[ns] = 0;
            ns++;
            if (!strcmp(t, "shortcut")) {
                frz[sp[i]] = XB_GROUP_SHORTCUT;
                if (in >= 0 && !frz[find_(par, in)]) frz[find_(par, in)] = XB_GROUP_SHORTCUT;
            } else if (xb_model_node_groups(m, i) > 1) {
                frz[sp[i]] = XB_GROUP_GROUPED;
                if (in >= 0 && !frz[find_(par, in)]) frz[find_(par, in)] = XB_GROUP_GROUPED;
            }
        } else if (!strcmp(t, "linear")) {
            sp[i] = -1;
        } else if (!strcmp(t, "add")) {
            const int ra = find_(par, in), rb = find_(par, b < 0 ? 0 : sp[b]);
            if (ra != rb) {
                par[rb] = ra;
                if (!frz[ra]) frz[ra] = frz[rb];
            }
            joined[ra] = 1;
            sp[i] = ra;
        } else { /* batchnorm, relu, quant, dropout, pooling, gap, flatten: channel for channel */
            sp[i] = in;
        }
    }
    /* one group per root that a convolution produces */
    for (int s = 0; s < ns && !st; s++) gid[s] = -1;
    for (int i = 0; i < nn && !st; i++) {
        if (strcmp(xb_model_node_type(m, i), "conv2d") != 0) continue;
        const int r = find_(par, sp[i]);
        if (gid[r] < 0) {
            xb_prune_group *g = realloc(out->g, sizeof *g * (size_t)(out->n + 1));
            if (!g) { st = xb_errorf(XB_ERR_NOMEM, "no memory for channel groups"); break; }
            out->g = g;
            memset(&g[out->n], 0, sizeof *g);
            int c, h, w;
            xb_model_node_shape(m, i, &c, &h, &w);
            g[out->n].channels = c;
            g[out->n].frozen = (xb_group_frozen)frz[r];
            if (!frz[r] && residual_skip && joined[r]) g[out->n].frozen = XB_GROUP_RESIDUAL;
            gid[r] = out->n++;
        }
        xb_prune_group *g = &out->g[gid[r]];
        if (!push_(&g->conv, &g->n_conv, xb_model_node_mapped(m, i))) st = xb_errorf(XB_ERR_NOMEM, "no memory");
        g->macs += xb_model_node_macs(m, i);
    }
    for (int i = 0; i < nn && !st; i++) { /* readers and observers */
        int a, b;
        xb_model_node_inputs(m, i, &a, &b);
        const char *t = xb_model_node_type(m, i);
        const int mp = xb_model_node_mapped(m, i);
        if (mp >= 0 && a >= 0 && sp[a] >= 0 && gid[find_(par, sp[a])] >= 0) {
            xb_prune_group *g = &out->g[gid[find_(par, sp[a])]];
            if (!push_(&g->cons, &g->n_cons, mp)) st = xb_errorf(XB_ERR_NOMEM, "no memory");
            g->macs += xb_model_node_macs(m, i);
        }
        if (!strcmp(t, "relu") && sp[i] >= 0 && gid[find_(par, sp[i])] >= 0) {
            xb_prune_group *g = &out->g[gid[find_(par, sp[i])]];
            if (!push_(&g->obs, &g->n_obs, i)) st = xb_errorf(XB_ERR_NOMEM, "no memory");
        }
    }
    free(sp); free(par); free(frz); free(joined); free(gid);
    if (st) xb_prune_groups_free(out);
    return st;
}

/* ---- LRP: the damping operator ----------------------------------------------------------------------- */

typedef struct lrp_ {
    xb_mm_op prev;
    int has_prev;
    double eps;
    float **scale, **shift;       /* per mapped layer, per output channel: z = scale y + shift */
} lrp_;

/* y = the installed operator's product (or W x) */
static xb_status lrp_fwd_(const lrp_ *L, const xb_mm_call *c, const float *x, float *y) {
    if (L->has_prev && L->prev.linear_weights) {
        const float *fw = NULL, *bw = NULL;
        xb_status st = L->prev.linear_weights(L->prev.ctx, c, &fw, &bw);
        if (st) return st;
        if (fw) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->rows_out, c->ncols, c->k, 1.0f, fw, c->k, x,
                        c->ncols, 0.0f, y, c->ncols);
            return XB_OK;
        }
    }
    if (L->has_prev && L->prev.forward) return L->prev.forward(L->prev.ctx, c, x, y);
    xb_mm_float_forward(c, x, y);
    return XB_OK;
}

static xb_status lrp_forward_(void *ctx, const xb_mm_call *c, const float *x, float *y) {
    return lrp_fwd_(ctx, c, x, y);
}

/* z is recomputed from x rather than kept from the forward: LRP runs only at pruning steps, on a few hundred
 * images, and keeping every layer's output for the backward would cost a whole activation copy */
static xb_status lrp_backward_input_(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dx) {
    lrp_ *L = ctx;
    const size_t len = (size_t)c->rows_out * (size_t)c->ncols;
    float *y = malloc(sizeof(float) * (len + 1)), *d = malloc(sizeof(float) * (len + 1));
    if (!y || !d) { free(y); free(d); return xb_errorf(XB_ERR_NOMEM, "no memory for LRP"); }
    xb_status st = lrp_fwd_(L, c, x, y);
    const float *a = L->scale[c->layer] + (size_t)c->group * c->rows_out,
                *b = L->shift[c->layer] + (size_t)c->group * c->rows_out;
    for (int o = 0; o < c->rows_out && !st; o++)
        for (int j = 0; j < c->ncols; j++) {
            const size_t q = (size_t)o * c->ncols + j;
            const double z = fabs((double)a[o] * y[q] + b[o]);
            d[q] = z + L->eps > 0 ? (float)(dy[q] * (z / (z + L->eps))) : 0.0f;
        }
    free(y);
    if (!st) {
        const float *fw = NULL, *bw = NULL;
        if (L->has_prev && L->prev.linear_weights) st = L->prev.linear_weights(L->prev.ctx, c, &fw, &bw);
        if (!st && bw) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->k, c->ncols, c->rows_out, 1.0f, bw, c->k, d,
                        c->ncols, 0.0f, dx, c->ncols);
        } else if (!st && L->has_prev && L->prev.backward_input) {
            st = L->prev.backward_input(L->prev.ctx, c, x, d, dx);
        } else if (!st) {
            xb_mm_float_backward_input(c, d, dx);
        }
    }
    free(d);
    return st;
}

/* z = scale y + shift of every mapped layer: its bias, and the batchnorm that alone reads it */
static xb_status lrp_affine_(const xb_model *m, lrp_ *L) {
    const int nn = xb_model_n_nodes(m), nm = xb_model_n_mapped(m);
    L->scale = calloc((size_t)nm + 1, sizeof *L->scale);
    L->shift = calloc((size_t)nm + 1, sizeof *L->shift);
    if (!L->scale || !L->shift) return xb_errorf(XB_ERR_NOMEM, "no memory for LRP");
    for (int i = 0; i < nn; i++) {
        const int p = xb_model_node_mapped(m, i);
        if (p < 0) continue;
        int c, h, w, readers = 0, bn = -1;
        xb_model_node_shape(m, i, &c, &h, &w);
        L->scale[p] = malloc(sizeof(float) * (size_t)c);
        L->shift[p] = malloc(sizeof(float) * (size_t)c);
        if (!L->scale[p] || !L->shift[p]) return xb_errorf(XB_ERR_NOMEM, "no memory for LRP");
        const char *name;
        xb_model_mapped_info(m, p, &name, NULL, NULL, NULL);
        char bn_name[160];
        snprintf(bn_name, sizeof bn_name, "%s.bias", name);
        const xb_param *bp = xb_model_find_param(m, bn_name);
        const float *bias = bp ? xb_model_params((xb_model *)m) + bp->offset : NULL;
        for (int j = i + 1; j < nn; j++) {
            int a, b;
            xb_model_node_inputs(m, j, &a, &b);
            if (a == i || b == i) { readers++; bn = j; }
        }
        if (readers != 1 || !xb_model_bn_affine(m, bn, L->scale[p], L->shift[p]))
            for (int o = 0; o < c; o++) { L->scale[p][o] = 1.0f; L->shift[p][o] = 0.0f; }
        for (int o = 0; o < c && bias; o++) L->shift[p][o] += L->scale[p][o] * bias[o];
    }
    return XB_OK;
}

static void lrp_free_(const xb_model *m, lrp_ *L) {
    for (int p = 0; p < xb_model_n_mapped(m) && L->scale; p++) { free(L->scale[p]); free(L->shift[p]); }
    free(L->scale);
    free(L->shift);
}

xb_status xb_lrp(xb_model *m, int n, const float *x, const int32_t *labels, double eps, float *dx) {
    if (!(eps >= 0) || n < 1)
        return xb_errorf(XB_ERR_ARG, "LRP: epsilon %g, %d images. HINT: epsilon >= 0, at least one image", eps, n);
    const int cl = xb_model_classes(m);
    for (int j = 0; j < n; j++)
        if (labels[j] < 0 || labels[j] >= cl)
            return xb_errorf(XB_ERR_ARG, "LRP: label %d of image %d is outside 0..%d", labels[j], j, cl - 1);
    lrp_ L = {0};
    L.eps = eps;
    const xb_mm_op *cur = xb_model_op(m);
    if (cur) { L.prev = *cur; L.has_prev = 1; }
    xb_status st = lrp_affine_(m, &L);
    float *dl = calloc((size_t)n * cl + 1, sizeof(float));
    if (!st && !dl) st = xb_errorf(XB_ERR_NOMEM, "no memory for LRP");
    if (!st) {
        xb_mm_op op = {&L, lrp_forward_, lrp_backward_input_, NULL, NULL, NULL, NULL};
        if (L.has_prev) op.backward_weight = L.prev.backward_weight;
        xb_model_keep_graph(m, 1);
        xb_model_train_mode(m, 0);
        xb_model_set_op(m, &op);
        st = xb_model_forward(m, n, x, NULL, NULL);
        for (int j = 0; j < n && !st; j++) dl[(size_t)j * cl + labels[j]] = 1.0f;
        if (!st) st = xb_model_backward_from(m, n, dl, 0, dx);
        xb_model_set_op(m, L.has_prev ? &L.prev : NULL);
    }
    free(dl);
    lrp_free_(m, &L);
    return st;
}

/* ---- scores ---------------------------------------------------------------------------------------------- */

static void l1_(const xb_model *m, const xb_prune_group *g, double *s) {
    for (int k = 0; k < g->n_conv; k++) {
        int param, ro, kk;
        xb_model_mapped_info(m, g->conv[k], NULL, &param, &ro, &kk);
        const float *w = xb_model_params((xb_model *)m) + xb_model_param(m, param)->offset;
        for (int o = 0; o < ro && o < g->channels; o++) {
            double a = 0;
            for (int j = 0; j < kk; j++) a += fabs((double)w[(size_t)o * kk + j]);
            s[o] += a;
        }
    }
}

/* adds one batch's activation statistic of every group's observers into s */
static void accumulate_(const xb_model *m, const xb_prune_groups *gs, xb_prune_score kind, int n, double **s) {
    for (int k = 0; k < gs->n; k++) {
        const xb_prune_group *g = &gs->g[k];
        for (int q = 0; q < g->n_obs; q++) {
            const float *a = xb_model_node_output(m, g->obs[q]), *d = xb_model_node_grad(m, g->obs[q]);
            int c, h, w;
            xb_model_node_shape(m, g->obs[q], &c, &h, &w);
            const int hw = h * w;
            for (int ch = 0; ch < c && ch < g->channels; ch++)
                for (int i = 0; i < n; i++) {
                    const float *ap = a + ((size_t)ch * n + i) * hw, *dp = d ? d + ((size_t)ch * n + i) * hw : NULL;
                    double t = 0;
                    if (kind == XB_PS_MEANACT) {
                        for (int p = 0; p < hw; p++) t += ap[p];
                        t /= hw;
                    } else if (dp) {
                        for (int p = 0; p < hw; p++) t += (double)ap[p] * dp[p];
                        if (kind == XB_PS_TAYLOR) t = fabs(t / hw);
                    }
                    s[k][ch] += t;
                }
        }
    }
}

xb_status xb_prune_scores(xb_model *m, const xb_prune_groups *gs, const xb_score_opts *o, double **scores) {
    if (o->kind < 0 || o->kind >= XB_PS_COUNT) return xb_errorf(XB_ERR_ARG, "unknown pruning score %d", (int)o->kind);
    for (int k = 0; k < gs->n; k++) memset(scores[k], 0, sizeof(double) * (size_t)gs->g[k].channels);
    if (o->kind == XB_PS_L1) {
        for (int k = 0; k < gs->n; k++) l1_(m, &gs->g[k], scores[k]);
        return XB_OK;
    }
    if (o->kind == XB_PS_RANDOM) {
        xb_rng r;
        xb_rng_seed(&r, o->seed + 0x9E3779B97F4A7C15ull * (o->round + 1), "prune-random");
        for (int k = 0; k < gs->n; k++)
            for (int c = 0; c < gs->g[k].channels; c++) scores[k][c] = xb_rng_uniform(&r);
        return XB_OK;
    }
    const xb_dataset *d = o->data;
    if (!d || d->n < 1 || o->samples < 1)
        return xb_errorf(XB_ERR_ARG, "the %s score needs images. HINT: give the training set and samples >= 1",
                         xb_prune_score_names[o->kind]);
    for (int k = 0; k < gs->n; k++)
        if (!gs->g[k].frozen && gs->g[k].n_obs == 0) {
            const char *nm;
            xb_model_mapped_info(m, gs->g[k].conv[0], &nm, NULL, NULL, NULL);
            return xb_errorf(XB_ERR_UNSUPPORTED, "the %s score reads a channel's relu output; layer %s has no relu "
                             "after it. HINT: use --prune l1 or random", xb_prune_score_names[o->kind], nm);
        }
    const int64_t total = o->samples < d->n ? o->samples : d->n;
    int b = o->batch > 0 ? o->batch : 128;
    const int cap = xb_model_batch_capacity(m);
    if (cap > 0 && b > cap) b = cap;
    xb_status st = cap > 0 ? XB_OK : xb_model_set_batch(m, b);
    const int cl = xb_model_classes(m);
    float *x = malloc(sizeof(float) * (size_t)b * d->c * d->h * d->w + 1), *dl = malloc(sizeof(float) * (size_t)b * cl + 1);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)b + 1);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)b + 1);
    if (!st && (!x || !dl || !lab || !idx)) st = xb_errorf(XB_ERR_NOMEM, "no memory for pruning scores");
    for (int64_t s0 = 0; s0 < total && !st; s0 += b) {
        const int n = (int)(total - s0 < b ? total - s0 : b);
        for (int i = 0; i < n; i++) idx[i] = s0 + i;
        xb_dataset_batch(d, idx, n, 0, 0, NULL, x, lab);
        if (o->kind == XB_PS_FRS) {
            st = xb_lrp(m, n, x, lab, o->eps, NULL);
        } else {
            xb_model_keep_graph(m, 1);
            xb_model_train_mode(m, 0);
            st = xb_model_forward(m, n, x, NULL, NULL);
            if (!st && o->kind == XB_PS_TAYLOR) {
                st = xb_model_loss_grad(m, n, lab, 0.0f, NULL, NULL, dl);
                for (int j = 0; j < n * cl; j++) dl[j] *= (float)n; /* each image's own loss, not the batch's mean */
                if (!st) st = xb_model_backward_from(m, n, dl, 0, NULL);
            }
        }
        if (!st) accumulate_(m, gs, o->kind, n, scores);
    }
    for (int k = 0; k < gs->n && !st; k++)
        for (int c = 0; c < gs->g[k].channels; c++) scores[k][c] /= (double)total;
    xb_model_keep_graph(m, 0);
    xb_model_train_mode(m, 1);
    free(x); free(dl); free(lab); free(idx);
    return st;
}
