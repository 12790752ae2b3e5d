/* xprune.c -- crossbar-aware structured pruning (methods.md 5A: XCS and XRS).  The groups are the segments of
 * a mapped layer's weight matrix (outputs x inputs) that fall inside one tile of a hardware config: XCS a column
 * segment (one output's weights in one row tile), XRS a row segment (one input's weights in one column tile).
 * Group lasso lambda sum_g ||w_g||_2 joins the loss (its gradient added after every backward); a hard cut
 * zeroes each layer's weakest segments (by RMS) and keeps them zero (re-zeroed after every step); the report
 * counts the crossbars the packed layers need ([mapping] pack, xnet.c).  docs/pruning.md. */
#include "xbar.h"
#include "xb_xbar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct xlay_ {
    int mapped, ro, k, R, C, wc, rt, ct, arrays, cpw; /* geometry of the layer on the config's tiles */
    int n_seg;                    /* rt x ro (XCS) or ct x k (XRS) */
    uint8_t *cut;                 /* per segment: zeroed and held at zero */
} xlay_;

struct xb_xprune {
    int kind;                     /* XB_XP_XCS, XB_XP_XRS */
    double lambda;
    int n;
    xlay_ *l;
    int cut;                      /* a hard cut has been made */
};

const char *const xb_xprune_names[3] = {"none", "xcs", "xrs"};

/* segment s of layer L: its weights as (row start, rows, column j or input i) */
#define FOR_SEG(L, s, body)                                                                                    \
    do {                                                                                                       \
        if (kind == XB_XP_XCS) {                                                                               \
            const int r_ = (s) / (L)->ro, j_ = (s) % (L)->ro, i0_ = r_ * (L)->R;                               \
            const int m_ = (L)->k - i0_ < (L)->R ? (L)->k - i0_ : (L)->R;                                      \
            for (int t_ = 0; t_ < m_; t_++) { const size_t e_ = (size_t)j_ * (L)->k + i0_ + t_; body; }       \
        } else {                                                                                               \
            const int c_ = (s) / (L)->k, i_ = (s) % (L)->k, j0_ = c_ * (L)->wc;                                \
            const int m_ = (L)->ro - j0_ < (L)->wc ? (L)->ro - j0_ : (L)->wc;                                  \
            for (int t_ = 0; t_ < m_; t_++) { const size_t e_ = (size_t)(j0_ + t_) * (L)->k + i_; body; }     \
        }                                                                                                      \
    } while (0)

static float *wp_(xb_model *m, int mapped) {
    int param;
    xb_model_mapped_info(m, mapped, NULL, &param, NULL, NULL);
    return xb_model_params(m) + xb_model_param(m, param)->offset;
}

xb_status xb_xprune_init(const xb_model *m, const xb_hw *hw, int kind, double lambda, xb_xprune **out) {
    if ((kind != XB_XP_XCS && kind != XB_XP_XRS) || !(lambda >= 0))
        return xb_errorf(XB_ERR_ARG, "crossbar-aware pruning: kind %d, lambda %g. HINT: xcs or xrs, lambda >= 0", kind,
                         lambda);
    xb_xprune *p = calloc(1, sizeof *p);
    if (!p) return xb_errorf(XB_ERR_NOMEM, "no memory for crossbar-aware pruning");
    p->kind = kind;
    p->lambda = lambda;
    const int nm = xb_model_n_mapped(m);
    p->l = calloc((size_t)nm + 1, sizeof *p->l);
    xb_status st = p->l ? XB_OK : xb_errorf(XB_ERR_NOMEM, "no memory for crossbar-aware pruning");
    for (int i = 0; i < nm && !st; i++) {
        const char *name;
        int param, ro, k;
        xb_model_mapped_info(m, i, &name, &param, &ro, &k);
        int digital = xb_hw_layer_digital(hw, name, i, nm);
        if (digital || xb_model_param(m, param)->shape[0] != ro) continue; /* not on crossbars; grouped */
        xb_map_geom g;
        if ((st = xb_map_geom_init(hw, ro, k, &g))) break;
        xlay_ *L = &p->l[p->n++];
        *L = (xlay_){i, ro, k, g.R, g.C, g.wcols, g.rt, g.ct, g.arrays, g.cells_per_weight, 0, NULL};
        L->n_seg = kind == XB_XP_XCS ? g.rt * ro : g.ct * k;
        L->cut = calloc((size_t)L->n_seg + 1, 1);
        if (!L->cut) st = xb_errorf(XB_ERR_NOMEM, "no memory for crossbar-aware pruning");
    }
    if (!st && !p->n)
        st = xb_errorf(XB_ERR_ARG, "crossbar-aware pruning: no layer of model '%s' is mapped by %s (all digital or "
                       "grouped). HINT: check [tile] map_first, map_last and digital_layers", xb_model_name(m),
                       hw->path[0] ? hw->path : "the hw config");
    if (st) { xb_xprune_free(p); return st; }
    *out = p;
    return XB_OK;
}

void xb_xprune_free(xb_xprune *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) free(p->l[i].cut);
    free(p->l);
    free(p);
}

double xb_xprune_lasso(const xb_xprune *p, xb_model *m) {
    const int kind = p->kind;
    double sum = 0;
    for (int i = 0; i < p->n; i++) {
        const xlay_ *L = &p->l[i];
        const float *w = wp_(m, L->mapped);
        for (int s = 0; s < L->n_seg; s++) {
            double q = 0;
            FOR_SEG(L, s, q += (double)w[e_] * w[e_]);
            sum += sqrt(q);
        }
    }
    return p->lambda * sum;
}

void xb_xprune_grad(const xb_xprune *p, xb_model *m) {
    if (!(p->lambda > 0)) return;
    const int kind = p->kind;
    float *gall = xb_model_grads(m), *pall = xb_model_params(m);
    for (int i = 0; i < p->n; i++) {
        const xlay_ *L = &p->l[i];
        const float *w = wp_(m, L->mapped);
        float *g = gall + (w - pall);
        for (int s = 0; s < L->n_seg; s++) {
            if (L->cut[s]) continue;
            double q = 0;
            FOR_SEG(L, s, q += (double)w[e_] * w[e_]);
            if (!(q > 0)) continue; /* the subgradient at 0: 0 */
            const float f = (float)(p->lambda / sqrt(q));
            FOR_SEG(L, s, g[e_] += f * w[e_]);
        }
    }
}

typedef struct sn_ { double v; int s; } sn_;
static int sn_cmp_(const void *a, const void *b) {
    const sn_ *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->s - y->s;
}

xb_status xb_xprune_cut(xb_xprune *p, xb_model *m, double target) {
    if (!(target >= 0 && target < 1))
        return xb_errorf(XB_ERR_ARG, "crossbar-aware pruning: target %g. HINT: a fraction of the segments in [0, 1)",
                         target);
    const int kind = p->kind;
    for (int i = 0; i < p->n; i++) {
        xlay_ *L = &p->l[i];
        float *w = wp_(m, L->mapped);
        sn_ *v = malloc(sizeof *v * (size_t)(L->n_seg + 1));
        if (!v) return xb_errorf(XB_ERR_NOMEM, "no memory for crossbar-aware pruning");
        for (int s = 0; s < L->n_seg; s++) {
            double q = 0;
            int n = 0;
            FOR_SEG(L, s, (q += (double)w[e_] * w[e_], n++));
            v[s] = (sn_){sqrt(q / n), s}; /* RMS: the last tile's shorter segments compare fairly */
        }
        qsort(v, (size_t)L->n_seg, sizeof *v, sn_cmp_);
        const int ncut = (int)floor(target * L->n_seg + 1e-9);
        for (int a = 0; a < L->n_seg; a++) L->cut[a] = 0;
        for (int a = 0; a < ncut; a++) L->cut[v[a].s] = 1;
        free(v);
    }
    p->cut = 1;
    xb_xprune_apply(p, m);
    return XB_OK;
}

void xb_xprune_mask_from_zeros(xb_xprune *p, xb_model *m) {
    const int kind = p->kind;
    for (int i = 0; i < p->n; i++) {
        xlay_ *L = &p->l[i];
        const float *w = wp_(m, L->mapped);
        for (int s = 0; s < L->n_seg; s++) {
            int zero = 1;
            FOR_SEG(L, s, zero &= w[e_] == 0);
            L->cut[s] = (uint8_t)zero;
        }
    }
    p->cut = 1;
}

void xb_xprune_apply(const xb_xprune *p, xb_model *m) {
    if (!p->cut) return;
    const int kind = p->kind;
    float *gall = xb_model_grads(m), *pall = xb_model_params(m);
    for (int i = 0; i < p->n; i++) {
        const xlay_ *L = &p->l[i];
        float *w = wp_(m, L->mapped), *g = gall + (w - pall);
        for (int s = 0; s < L->n_seg; s++)
            if (L->cut[s]) FOR_SEG(L, s, (w[e_] = 0, g[e_] = 0));
    }
}

int xb_xprune_has_cut(const xb_xprune *p) { return p->cut; }

/* tiles of layer L dense and packed (the live segments of each row tile, XCS, or column tile, XRS), and the
 * weight cells of the packed layer */
static void tiles_(const xb_xprune *p, const xlay_ *L, const float *w, int64_t *dense, int64_t *packed, int64_t *cells) {
    const int kind = p->kind;
    *dense = (int64_t)L->rt * L->ct;
    *packed = 0;
    *cells = 0;
    const int outer = kind == XB_XP_XCS ? L->rt : L->ct, inner = kind == XB_XP_XCS ? L->ro : L->k;
    for (int o = 0; o < outer; o++) {
        int live = 0, len = 0;
        for (int t = 0; t < inner; t++) {
            const int s = o * inner + t;
            int nz = 0, n = 0;
            FOR_SEG(L, s, (nz |= w[e_] != 0, n++));
            if (nz) { live++; len = n; }
        }
        *packed += (live + (kind == XB_XP_XCS ? L->wc : L->R) - 1) / (kind == XB_XP_XCS ? L->wc : L->R);
        *cells += (int64_t)live * len;
    }
}

void xb_xprune_print(const xb_xprune *p, xb_model *m, FILE *f, int json) {
    int64_t td = 0, tp = 0, cells = 0, seg = 0, segcut = 0, alloc = 0;
    const char *k = xb_xprune_names[p->kind];
    if (json) fprintf(f, "{\"kind\":\"%s\",\"lambda\":%.6g,\"layers\":[", k, p->lambda);
    else fprintf(f, "crossbar-aware pruning (%s, group lasso %g): per layer, segments cut and crossbars dense -> packed\n",
                 k, p->lambda);
    for (int i = 0; i < p->n; i++) {
        const xlay_ *L = &p->l[i];
        const char *name;
        xb_model_mapped_info(m, L->mapped, &name, NULL, NULL, NULL);
        int64_t d, pk, c, nc = 0;
        tiles_(p, L, wp_(m, L->mapped), &d, &pk, &c);
        for (int s = 0; s < L->n_seg; s++) nc += L->cut[s];
        const int64_t cap = (int64_t)L->R * L->C; /* cells of one array */
        td += d * L->arrays; tp += pk * L->arrays; cells += c * L->cpw; seg += L->n_seg; segcut += nc;
        alloc += pk * L->arrays * cap;
        if (json)
            fprintf(f, "%s{\"layer\":\"%s\",\"segments\":%d,\"cut\":%lld,\"crossbars_dense\":%lld,\"crossbars_packed\":%lld,"
                       "\"utilization\":%.6f}", i ? "," : "", name, L->n_seg, (long long)nc, (long long)(d * L->arrays),
                    (long long)(pk * L->arrays), pk ? (double)c * L->cpw / ((double)pk * L->arrays * cap) : 0.0);
        else
            fprintf(f, "  %-22s %6lld of %6d segments cut, crossbars %5lld -> %5lld, utilization %5.1f%%\n", name,
                    (long long)nc, L->n_seg, (long long)(d * L->arrays), (long long)(pk * L->arrays),
                    pk ? 100.0 * (double)c * L->cpw / ((double)pk * L->arrays * cap) : 0.0);
    }
    if (json)
        fprintf(f, "],\"segments\":%lld,\"segments_cut\":%lld,\"crossbars_dense\":%lld,\"crossbars_packed\":%lld,"
                   "\"compression\":%.6f,\"utilization\":%.6f}", (long long)seg, (long long)segcut, (long long)td,
                (long long)tp, tp ? (double)td / (double)tp : 0.0, alloc ? (double)cells / (double)alloc : 0.0);
    else
        fprintf(f, "  total: %lld of %lld segments cut; crossbars %lld -> %lld (compression %.2fx), utilization %.1f%%\n",
                (long long)segcut, (long long)seg, (long long)td, (long long)tp, tp ? (double)td / (double)tp : 0.0,
                alloc ? 100.0 * (double)cells / (double)alloc : 0.0);
}
