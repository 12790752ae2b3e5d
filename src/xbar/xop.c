/* xop.c -- the crossbar network as the model's mapped-matmul operator: forward through the tiles,
 * backward to the inputs through the programmed effective weights (or the float ones) with the DAC's
 * straight-through mask, backward to the weights with the input the tiles saw; every call refuses
 * weights that changed since programming.  A layer held in blocks (rearranged outputs, packed segments)
 * runs block by block: each block's inputs gathered, its outputs and gradients added back in the
 * layer's order (the rearrangement and the packing undone digitally). */
#include "xnet_internal.h"
#include "core/quant.h"

/* ---- the mapped-matmul operator -------------------------------------------------------------------- */

/* The xlayer of a call (a layer held in blocks: its first block), checked against the network: programmed,
 * same shape, and programmed from the weights the model holds now (a crossbar never silently computes
 * with weights that have changed). */
static xb_status layer_of_(xb_xnet *xn, const xb_mm_call *c, xlayer **out) {
    const int blocks = c->layer >= 0 && c->layer < xn->n_mapped && xn->xl[xn->first_xl[c->layer]].nblocks > 1;
    if (c->layer < 0 || c->layer >= xn->n_mapped || c->group < 0 ||
        xn->first_xl[c->layer] + c->group >= xn->first_xl[c->layer + 1] || (blocks && c->group))
        return xb_errorf(XB_ERR_ARG, "crossbar network: mapped layer %d, group %d does not exist (the network has %d "
                         "mapped layers). HINT: build the network (xb_xnet_init) for this model", c->layer, c->group,
                         xn->n_mapped);
    xlayer *l = &xn->xl[xn->first_xl[c->layer] + c->group];
    if (l->full_ro != c->rows_out || l->full_k != c->k)
        return xb_errorf(XB_ERR_SHAPE, "crossbar layer %s: a %dx%d product, but its tiles hold %dx%d. HINT: build the "
                         "network (xb_xnet_init) for this model", l->st.name, c->rows_out, c->k, l->full_ro, l->full_k);
    *out = l;
    if (l->digital) return XB_OK;
    if (!xn->programmed)
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: the tiles are not programmed. HINT: call xb_xnet_program "
                         "before the forward", l->st.name);
    for (int b = 1; b < l->nblocks; b++) /* every block programmed from the same weights */
        XB_ASSERT(l[b].whash == l->whash);
    if (xb_xnet_hash_(c->w, (int64_t)c->rows_out * c->k) != l->whash) {
        xn->stale++;
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: the weights changed after the tiles were programmed, so "
                         "the crossbar would compute with the old ones. HINT: program again (xb_xnet_program) after "
                         "changing weights, or train through xb_xtrain, which reprograms after every update",
                         l->st.name);
    }
    return XB_OK;
}

/* the call of block l: its shape and float weights */
static xb_mm_call block_call_(const xlayer *l, const xb_mm_call *c) {
    xb_mm_call b = *c;
    b.rows_out = l->rows_out;
    b.k = l->k;
    b.w = l->wsrc;
    return b;
}

static xb_status op_forward_(void *ctx, const xb_mm_call *c, const float *x, float *y) {
    xb_xnet *xn = ctx;
    xlayer *l = NULL;
    xb_status st = layer_of_(xn, c, &l);
    if (st) return st;
    if (l->digital) {
        xb_mm_float_forward(c, x, y);
        return XB_OK;
    }
    xn->cur_pass = c->pass;
    if (!xl_blocked(l)) return xl_layer_forward(xn, l, c->ncols, c->w, x, y);
    memset(y, 0, (size_t)c->rows_out * c->ncols * sizeof(float));
    for (int b = 0; b < l->nblocks && !st; b++) {
        xlayer *lb = l + b;
        float *xb = xb_try_malloc(((size_t)lb->k + lb->rows_out) * c->ncols * sizeof(float)), *yb;
        if (!xb) return xb_errorf(XB_ERR_NOMEM, "crossbar layer %s: no memory for block %d", l->st.name, b);
        yb = xb + (size_t)lb->k * c->ncols;
        xl_gather_rows(lb->in_idx, lb->k, c->ncols, x, xb);
        st = xl_layer_forward(xn, lb, c->ncols, lb->wsrc, xb, yb);
        if (!st) xl_scatter_add_rows(lb->out_idx, lb->rows_out, c->ncols, yb, y);
        xb_free(xb);
    }
    return st;
}

/* The ADC mask of this call's forward (tiled layers, hardware backward), or NULL; XB_ERR_STATE when the
 * layer's last forward was another one. */
static xb_status adc_mask_(const xb_xnet *xn, const xlayer *l, const xb_mm_call *c, const uint8_t **mask) {
    *mask = NULL;
    if (l->digital || !l->tiled || xn->bwd == XB_XBWD_FLOAT) return XB_OK;
    if (!l->smask || l->smask_pass != c->pass || l->smask_cols != c->ncols)
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: the backward is not of this layer's last forward (its ADC "
                         "mask belongs to another call). HINT: backward right after the forward it differentiates",
                         l->st.name);
    *mask = l->smask;
    return XB_OK;
}

/* dy with input pass `bit`'s ADC mask of row tile r applied (zero where a conversion saturated) into dym */
static void masked_dy_(const xlayer *l, const uint8_t *mask, int r, uint8_t bit, int ncols, const float *dy,
                       float *dym) {
    const int64_t n = (int64_t)l->rows_out * ncols;
    const uint8_t *mk = mask + (size_t)r * n;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dym[i] = mk[i] & bit ? 0.0f : dy[i];
}

/* 1 when some product of the call ran two input passes (split signed inputs) */
static int two_passes_(const xlayer *l, const uint8_t *mask, int ncols) {
    const int64_t n = (int64_t)l->g.rt * l->rows_out * ncols;
    for (int64_t i = 0; i < n; i++)
        if (mask[i] & 2) return 1;
    return 0;
}

/* The input as the DAC delivers it (k x ncols, in activation units): |x| rounded to the DAC's grid
 * and clipped at the range (sign kept), as the forward's pipeline reads it; with no DAC, x itself.  The
 * range is the layer's x_max, or with input_scaling = vector each column's max |x| (so nothing clips).
 * buf holds k x ncols + ncols floats. */
static const float *dac_input_(const xb_xnet *xn, const xlayer *l, int k, int ncols, const float *x, float *buf) {
    if (xn->hw.dac_bits <= 0) return x;
    const float top = (float)((1L << l->in_bits) - 1);
    const int64_t n = (int64_t)k * ncols;
    if (xn->vec) {
        float *st = buf + n;
        for (int c = 0; c < ncols; c++) st[c] = 0;
        for (int i = 0; i < k; i++)
            for (int c = 0; c < ncols; c++) st[c] = fmaxf(st[c], fabsf(x[(size_t)i * ncols + c]));
        for (int c = 0; c < ncols; c++) st[c] = xq_dac_step(st[c] > 0 ? st[c] : 1.0f, top);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < k; i++)
            for (int c = 0; c < ncols; c++) {
                const size_t q = (size_t)i * ncols + c;
                buf[q] = copysignf(xq_clamp(xq_round(fabsf(x[q]), st[c]), 0, top) * st[c], x[q]);
            }
        return buf;
    }
    const float step = xq_dac_step((float)l->x_max, top);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) buf[i] = copysignf(xq_clamp(xq_round(fabsf(x[i]), step), 0, top) * step, x[i]);
    return buf;
}

/* Straight-through mask of the DAC: the gradient passes where the input was inside the DAC's range
 * [-x_max, x_max] and is zero where it was clipped. */
static void dac_mask_(const xb_xnet *xn, const xlayer *l, int64_t n, const float *x, float *dx) {
    if (xn->hw.dac_bits <= 0 || xn->vec) return; /* per-vector scaling: every input inside its range */
    const float xm = (float)l->x_max;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) > xm) dx[i] = 0;
}

/* dx = M^T dy through the weights the backward reads: the effective weights of the programmed tiles'
 * backward (column-driven) read, which are the forward's when r_driver == r_sense (reciprocity), or the
 * float ones; then the DAC's clip mask. */
static xb_status bwd_input_(xb_xnet *xn, xlayer *l, const xb_mm_call *c, const float *x, const float *dy, float *dx) {
    xb_status st;
    const uint8_t *mask;
    if ((st = adc_mask_(xn, l, c, &mask))) return st;
    const float *wb = l->weff_bwd ? l->weff_bwd : l->weff;
    if (l->digital || xn->bwd == XB_XBWD_FLOAT) {
        xb_mm_float_backward_input(c, dy, dx);
    } else if (!mask) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->k, c->ncols, c->rows_out, 1.0f, wb, c->k, dy,
                    c->ncols, 0.0f, dx, c->ncols);
    } else { /* per row tile: its rows of dx through its partial sums' unsaturated conversions, per input pass */
        const int two = two_passes_(l, mask, c->ncols);
        const size_t nt = (size_t)l->g.R * c->ncols;
        float *dym = xb_try_malloc(((size_t)c->rows_out * c->ncols + (two ? nt : 0)) * sizeof(float));
        if (!dym) return xb_errorf(XB_ERR_NOMEM, "crossbar layer %s: no memory for the masked gradient", l->st.name);
        float *tmp = dym + (size_t)c->rows_out * c->ncols;
        for (int r = 0; r < l->g.rt; r++) {
            const int i0 = r * l->g.R, m = c->k - i0 < l->g.R ? c->k - i0 : l->g.R;
            float *dxr = dx + (size_t)i0 * c->ncols;
            masked_dy_(l, mask, r, 1, c->ncols, dy, dym);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, c->ncols, c->rows_out, 1.0f, wb + i0, c->k, dym,
                        c->ncols, 0.0f, dxr, c->ncols);
            if (!two) continue;
            masked_dy_(l, mask, r, 2, c->ncols, dy, dym); /* negative inputs went through the second pass */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, c->ncols, c->rows_out, 1.0f, wb + i0, c->k, dym,
                        c->ncols, 0.0f, tmp, c->ncols);
            const float *xr = x + (size_t)i0 * c->ncols;
            for (int64_t q = 0; q < (int64_t)m * c->ncols; q++)
                if (xr[q] < 0) dxr[q] = tmp[q];
        }
        xb_free(dym);
    }
    if (!l->digital) dac_mask_(xn, l, (int64_t)c->k * c->ncols, x, dx);
    return XB_OK;
}

/* a layer held in blocks: each block's rows of dy and x gathered, its dx added back into the layer's rows */
static xb_status op_backward_input_(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dx) {
    xb_xnet *xn = ctx;
    xlayer *l = NULL;
    xb_status st = layer_of_(xn, c, &l);
    if (st) return st;
    if (l->digital || !xl_blocked(l)) return bwd_input_(xn, l, c, x, dy, dx);
    if (xn->bwd == XB_XBWD_FLOAT) { /* the float weights, then each block's DAC mask on the inputs it reads */
        xb_mm_float_backward_input(c, dy, dx);
        if (xn->hw.dac_bits <= 0 || xn->vec) return XB_OK;
        for (int b = 0; b < l->nblocks; b++)
            for (int q = 0; q < l[b].k; q++) {
                const size_t r = (size_t)(l[b].in_idx ? l[b].in_idx[q] : q) * c->ncols;
                for (int j = 0; j < c->ncols; j++)
                    if (fabsf(x[r + j]) > (float)l[b].x_max) dx[r + j] = 0;
            }
        return XB_OK;
    }
    memset(dx, 0, (size_t)c->k * c->ncols * sizeof(float));
    for (int b = 0; b < l->nblocks && !st; b++) {
        xlayer *lb = l + b;
        const size_t nx = (size_t)lb->k * c->ncols, ny = (size_t)lb->rows_out * c->ncols;
        float *xb = xb_try_malloc((2 * nx + ny) * sizeof(float));
        if (!xb) return xb_errorf(XB_ERR_NOMEM, "crossbar layer %s: no memory for block %d's gradient", l->st.name, b);
        float *dxb = xb + nx, *dyb = dxb + nx;
        xl_gather_rows(lb->in_idx, lb->k, c->ncols, x, xb);
        xl_gather_rows(lb->out_idx, lb->rows_out, c->ncols, dy, dyb);
        const xb_mm_call cb = block_call_(lb, c);
        st = bwd_input_(xn, lb, &cb, xb, dyb, dxb);
        if (!st) xl_scatter_add_rows(lb->in_idx, lb->k, c->ncols, dxb, dx);
        xb_free(xb);
    }
    return st;
}

/* dW += dy xq^T with xq the input the tiles saw (after the DAC). */
static xb_status bwd_weight_(xb_xnet *xn, xlayer *l, const xb_mm_call *c, const float *x, const float *dy, float *dw) {
    xb_status st;
    const int64_t n = (int64_t)c->k * c->ncols;
    float *buf = NULL;
    if (!l->digital && xn->hw.dac_bits > 0 && xn->bwd != XB_XBWD_FLOAT) {
        buf = xb_try_malloc(((size_t)n + (size_t)c->ncols) * sizeof(float));
        if (!buf) return xb_errorf(XB_ERR_NOMEM, "crossbar layer %s: no memory for the backward's %lld inputs",
                                   l->st.name, (long long)n);
        x = dac_input_(xn, l, c->k, c->ncols, x, buf);
    }
    const uint8_t *mask;
    if ((st = adc_mask_(xn, l, c, &mask))) {
        xb_free(buf);
        return st;
    }
    if (!mask) {
        xb_mm_float_backward_weight(c, x, dy, dw);
    } else { /* per row tile and input pass: dW[:, its rows] += (mask_r,pass . dy) x_r,pass^T */
        const int two = two_passes_(l, mask, c->ncols);
        const size_t nt = (size_t)l->g.R * c->ncols;
        float *dym = xb_try_malloc(((size_t)c->rows_out * c->ncols + (two ? nt : 0)) * sizeof(float));
        if (!dym) {
            xb_free(buf);
            return xb_errorf(XB_ERR_NOMEM, "crossbar layer %s: no memory for the masked gradient", l->st.name);
        }
        float *xs = dym + (size_t)c->rows_out * c->ncols;
        for (int r = 0; r < l->g.rt; r++) {
            const int i0 = r * l->g.R, m = c->k - i0 < l->g.R ? c->k - i0 : l->g.R;
            const float *xr = x + (size_t)i0 * c->ncols;
            for (int pass = 0; pass < 1 + two; pass++) {
                const float *xp = xr;
                if (two) { /* this pass's part of the inputs: the non-negative ones, then the negative ones */
                    for (int64_t q = 0; q < (int64_t)m * c->ncols; q++)
                        xs[q] = (xr[q] < 0) == pass ? xr[q] : 0.0f;
                    xp = xs;
                }
                masked_dy_(l, mask, r, (uint8_t)(1u << pass), c->ncols, dy, dym);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->rows_out, m, c->ncols, 1.0f, dym, c->ncols,
                            xp, c->ncols, 1.0f, dw + i0, c->k);
            }
        }
        xb_free(dym);
    }
    xb_free(buf);
    return XB_OK;
}

/* a layer held in blocks: each block's dW (its weights only: the dropped segments are not in the tiles)
 * added into the layer's */
static xb_status op_backward_weight_(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dw) {
    xb_xnet *xn = ctx;
    xlayer *l = NULL;
    xb_status st = layer_of_(xn, c, &l);
    if (st) return st;
    if (l->digital || !xl_blocked(l)) return bwd_weight_(xn, l, c, x, dy, dw);
    for (int b = 0; b < l->nblocks && !st; b++) {
        xlayer *lb = l + b;
        const size_t nx = (size_t)lb->k * c->ncols, ny = (size_t)lb->rows_out * c->ncols, nw = (size_t)lb->rows_out * lb->k;
        float *xb = xb_try_malloc((nx + ny + nw) * sizeof(float));
        if (!xb) return xb_errorf(XB_ERR_NOMEM, "crossbar layer %s: no memory for block %d's gradient", l->st.name, b);
        float *dyb = xb + nx, *dwb = dyb + ny;
        xl_gather_rows(lb->in_idx, lb->k, c->ncols, x, xb);
        xl_gather_rows(lb->out_idx, lb->rows_out, c->ncols, dy, dyb);
        memset(dwb, 0, nw * sizeof(float));
        const xb_mm_call cb = block_call_(lb, c);
        st = bwd_weight_(xn, lb, &cb, xb, dyb, dwb);
        for (int p = 0; !st && p < lb->rows_out; p++) {
            float *row = dw + (size_t)(lb->out_idx ? lb->out_idx[p] : p) * c->k;
            for (int q = 0; q < lb->k; q++) row[lb->in_idx ? lb->in_idx[q] : q] += dwb[(size_t)p * lb->k + q];
        }
        xb_free(xb);
    }
    return st;
}

/* A layer whose product is a fixed linear map (no DAC, no ADC, no read noise: the fast path's one GEMM)
 * hands the model its effective weights, and the model's fused kernels run them; only when statistics
 * are off (training), since the per-layer error statistics come from the callbacks' path. */
static xb_status op_linear_weights_(void *ctx, const xb_mm_call *c, const float **fwd, const float **bwd) {
    xb_xnet *xn = ctx;
    *fwd = *bwd = NULL;
    xlayer *l = NULL;
    xb_status st = layer_of_(xn, c, &l);
    if (st) return st;
    if (l->digital) {
        *fwd = *bwd = c->w;
        return XB_OK;
    }
    if (xn->stats_on || xn->calibrating || l->tiled || l->noise || xn->hw.dac_bits > 0 || xl_blocked(l)) return XB_OK;
    *fwd = l->weff;
    *bwd = xn->bwd == XB_XBWD_FLOAT ? c->w : l->weff_bwd ? l->weff_bwd : l->weff;
    return XB_OK;
}

xb_mm_op xb_xnet_op(xb_xnet *xn) {
    xb_mm_op op = {xn, op_forward_, op_backward_input_, op_backward_weight_, NULL, op_linear_weights_};
    return op;
}

void xb_xnet_install_op_(xb_xnet *xn) {
    xb_mm_op op = xb_xnet_op(xn);
    xb_model_set_op(xn->m, &op);
}
