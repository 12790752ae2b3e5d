/* qop.c -- the weight-quantizing mapped-matmul operator.  Every mapped layer's product runs with its
 * weights quantized by its xb_qw_spec (include/xb_quant.h); the model's float weights stay the master copy
 * the optimizer updates, and the weight gradient is the quantized product's, times the quantizer's
 * straight-through derivative.  Where that derivative is 1 everywhere and nothing is wrapped, the
 * operator hands the model the quantized weights (linear_weights) and the model's fused kernels run. */
#include "xbar.h"

#include <stdlib.h>
#include <string.h>

typedef struct qlayer_ {
    xb_qw_spec spec;
    int rows, k, groups;          /* the weight matrix of the whole layer: rows = all output channels */
    float *wq, *ste, *code, *scale;
    int valid;                    /* wq, code, scale, ste hold the quantization of the weights hashed whash */
    uint64_t whash;
    int ste_one;                  /* ste == 1 everywhere */
} qlayer_;

struct xb_qop {
    xb_model *m;
    int n;
    qlayer_ *l;
    uint64_t seed;
    xb_mm_op inner;
    int has_inner;
    float *tmp;                   /* a weight gradient before the straight-through derivative */
    size_t tmp_n;
};

static uint64_t hash_(const float *w, int64_t n) {
    uint64_t h = 1469598103934665603ULL;
    const uint32_t *u = (const uint32_t *)(const void *)w;
    for (int64_t i = 0; i < n; i++) h = (h ^ u[i]) * 1099511628211ULL;
    return h;
}

xb_status xb_qop_init(xb_model *m, const xb_qw_spec *specs, uint64_t seed, xb_qop **out) {
    const int n = xb_model_n_mapped(m);
    for (int i = 0; i < n; i++) {
        const char *name;
        xb_model_mapped_info(m, i, &name, NULL, NULL, NULL);
        xb_status st = xb_qw_check(&specs[i], name);
        if (st) return st;
    }
    xb_qop *q = calloc(1, sizeof *q);
    if (!q) return xb_errorf(XB_ERR_NOMEM, "no memory for the quantizing operator");
    q->m = m;
    q->n = n;
    q->seed = seed;
    q->l = calloc((size_t)n + 1, sizeof *q->l);
    if (!q->l) { free(q); return xb_errorf(XB_ERR_NOMEM, "no memory for the quantizing operator"); }
    for (int i = 0; i < n; i++) {
        qlayer_ *l = &q->l[i];
        int param, ro, k;
        xb_model_mapped_info(m, i, NULL, &param, &ro, &k);
        const xb_param *p = xb_model_param(m, param);
        l->spec = specs[i];
        l->rows = (int)p->shape[0];
        l->k = k;
        l->groups = l->rows / ro;
        const size_t nw = (size_t)p->numel, ns = (size_t)l->rows * 2 + 2;
        l->wq = xb_try_malloc(nw * sizeof(float));
        l->ste = xb_try_malloc(nw * sizeof(float));
        l->code = xb_try_malloc(nw * sizeof(float));
        l->scale = xb_try_malloc(ns * sizeof(float));
        if (!l->wq || !l->ste || !l->code || !l->scale) { xb_qop_free(q); return xb_errorf(XB_ERR_NOMEM, "no memory for the quantized weights"); }
        if (nw > q->tmp_n) q->tmp_n = nw;
        l->valid = 0;
    }
    q->tmp = xb_try_malloc((q->tmp_n + 1) * sizeof(float));
    if (!q->tmp) { xb_qop_free(q); return xb_errorf(XB_ERR_NOMEM, "no memory for the quantizing operator"); }
    *out = q;
    return XB_OK;
}

void xb_qop_free(xb_qop *q) {
    if (!q) return;
    for (int i = 0; q->l && i < q->n; i++) {
        xb_free(q->l[i].wq); xb_free(q->l[i].ste); xb_free(q->l[i].code); xb_free(q->l[i].scale);
    }
    free(q->l);
    xb_free(q->tmp);
    free(q);
}

/* Quantizes mapped layer i from the model's current float weights unless they are the ones quantized
 * last (same hash).  Stochastic rounding draws from (seed, the weights' hash): a resumed run, whose
 * weights are restored bit for bit, draws the same numbers. */
static xb_status refresh_(xb_qop *q, int i) {
    qlayer_ *l = &q->l[i];
    int param;
    xb_model_mapped_info(q->m, i, NULL, &param, NULL, NULL);
    const xb_param *p = xb_model_param(q->m, param);
    const float *w = xb_model_params(q->m) + p->offset;
    const uint64_t h = hash_(w, p->numel);
    if (l->valid && h == l->whash) return XB_OK;
    xb_status st = xb_qw_apply(&l->spec, l->rows, l->k, w, l->wq, l->code, l->scale, l->ste, q->seed ^ (uint64_t)i, h);
    if (st) return st;
    int one = 1;
    for (int64_t j = 0; j < p->numel && one; j++) one = l->ste[j] == 1.0f;
    l->ste_one = one;
    l->whash = h;
    l->valid = 1;
    return XB_OK;
}

/* the call for the wrapped operator: the same product with this group's quantized weights */
static xb_status call_(xb_qop *q, const xb_mm_call *c, xb_mm_call *c2, qlayer_ **lo) {
    if (c->layer < 0 || c->layer >= q->n)
        return xb_errorf(XB_ERR_ARG, "quantizing operator: mapped layer %d of %d", c->layer, q->n);
    xb_status st = refresh_(q, c->layer);
    if (st) return st;
    qlayer_ *l = &q->l[c->layer];
    *c2 = *c;
    c2->w = l->wq + (size_t)c->group * c->rows_out * c->k;
    *lo = l;
    return XB_OK;
}

static xb_status op_forward_(void *ctx, const xb_mm_call *c, const float *x, float *y) {
    xb_qop *q = ctx;
    xb_mm_call c2 = *c;
    qlayer_ *l = NULL;
    xb_status st = call_(q, c, &c2, &l);
    if (st) return st;
    if (q->has_inner && q->inner.forward) return q->inner.forward(q->inner.ctx, &c2, x, y);
    xb_mm_float_forward(&c2, x, y);
    return XB_OK;
}

static xb_status op_backward_input_(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dx) {
    xb_qop *q = ctx;
    xb_mm_call c2 = *c;
    qlayer_ *l = NULL;
    xb_status st = call_(q, c, &c2, &l);
    if (st) return st;
    if (q->has_inner && q->inner.backward_input) return q->inner.backward_input(q->inner.ctx, &c2, x, dy, dx);
    xb_mm_float_backward_input(&c2, dy, dx);
    return XB_OK;
}

/* dw += (d loss / d wq) .* ste */
static xb_status op_backward_weight_(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dw) {
    xb_qop *q = ctx;
    xb_mm_call c2 = *c;
    qlayer_ *l = NULL;
    xb_status st = call_(q, c, &c2, &l);
    if (st) return st;
    const size_t nw = (size_t)c->rows_out * c->k;
    memset(q->tmp, 0, nw * sizeof(float));
    if (q->has_inner && q->inner.backward_weight) {
        if ((st = q->inner.backward_weight(q->inner.ctx, &c2, x, dy, q->tmp))) return st;
    } else {
        xb_mm_float_backward_weight(&c2, x, dy, q->tmp);
    }
    const float *ste = l->ste + (size_t)c->group * nw;
    for (size_t j = 0; j < nw; j++) dw[j] += q->tmp[j] * ste[j];
    return XB_OK;
}

static xb_status op_after_update_(void *ctx, xb_model *m) {
    xb_qop *q = ctx;
    if (q->has_inner && q->inner.after_update) return q->inner.after_update(q->inner.ctx, m);
    return XB_OK;
}

/* The quantized weights as a fixed linear map when no operator is wrapped (the wrapped one's own fast path
 * would see float weights); weight_grad_scale applies the straight-through derivative. */
static xb_status op_linear_weights_(void *ctx, const xb_mm_call *c, const float **fwd, const float **bwd) {
    xb_qop *q = ctx;
    *fwd = *bwd = NULL;
    if (q->has_inner) return XB_OK;
    xb_mm_call c2 = *c;
    qlayer_ *l = NULL;
    xb_status st = call_(q, c, &c2, &l);
    if (st) return st;
    *fwd = *bwd = c2.w;
    return XB_OK;
}

/* the fast path's weight gradient times the straight-through derivative (NULL where it is 1 everywhere) */
static xb_status op_weight_grad_scale_(void *ctx, const xb_mm_call *c, const float **scale) {
    xb_qop *q = ctx;
    xb_mm_call c2 = *c;
    qlayer_ *l = NULL;
    *scale = NULL;
    xb_status st = call_(q, c, &c2, &l);
    if (st) return st;
    if (!l->ste_one) *scale = l->ste + (size_t)c->group * c->rows_out * c->k;
    return XB_OK;
}

xb_mm_op xb_qop_op(xb_qop *q, const xb_mm_op *inner) {
    q->has_inner = inner != NULL;
    if (inner) q->inner = *inner;
    xb_mm_op op = {q, op_forward_, op_backward_input_, op_backward_weight_, op_after_update_, op_linear_weights_,
                   op_weight_grad_scale_};
    return op;
}

xb_status xb_qop_set_bits(xb_qop *q, int i, int bits) {
    if (i < 0 || i >= q->n) return xb_errorf(XB_ERR_ARG, "quantizing operator: mapped layer %d of %d", i, q->n);
    xb_qw_spec s = q->l[i].spec;
    s.bits = bits;
    xb_status st = xb_qw_check(&s, "xb_qop_set_bits");
    if (st) return st;
    q->l[i].spec = s;
    q->l[i].valid = 0; /* quantize again */
    return XB_OK;
}

const xb_qw_spec *xb_qop_spec(const xb_qop *q, int i) { XB_ASSERT(i >= 0 && i < q->n); return &q->l[i].spec; }

xb_status xb_qop_layer(xb_qop *q, int i, const float **wq, const float **code, const float **scale) {
    if (i < 0 || i >= q->n) return xb_errorf(XB_ERR_ARG, "quantizing operator: mapped layer %d of %d", i, q->n);
    xb_status st = refresh_(q, i);
    if (st) return st;
    if (wq) *wq = q->l[i].wq;
    if (code) *code = q->l[i].code;
    if (scale) *scale = q->l[i].scale;
    return XB_OK;
}
