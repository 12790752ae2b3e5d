/*
 * backward.c -- the step API (zero_grad, loss and its gradient, backward from given dlogits to the
 * parameters and/or the input) and the backward pass over the nodes in reverse, with the mapped
 * layers' products through the model's operator when one is installed.  Batchnorm differentiates in
 * training mode (batch statistics) and in eval mode (the affine of the running statistics).
 */
#include "model_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* gradient buffer of producer `idx` for a kernel that can either write or add into it: *acc = 0 on
 * the first contribution in this backward pass (the kernel writes every element: no memset, no read
 * of zeros), 1 after it; NULL for the image unless its gradient is wanted */
static float *grad_out(xb_model *m, int idx, int *acc) {
    *acc = 1;
    if (idx < 0) {
        if (!m->want_dx) return NULL;
        if (!m->dxin_live) {
            m->dxin_live = 1;
            *acc = 0;
        }
        return m->dxin;
    }
    node *p = &m->nodes[idx];
    if (!p->dy_live) {
        p->dy_live = 1;
        *acc = 0;
    }
    return p->dy;
}

/* the same for a kernel that only adds: zeroed on first use */
static float *grad_of(xb_model *m, int idx, int n) {
    int acc;
    float *g = grad_out(m, idx, &acc);
    if (g && !acc) {
        size_t sz = idx < 0 ? (size_t)m->in_c * n * m->in_h * m->in_w : node_size(&m->nodes[idx], n);
        memset(g, 0, sz * sizeof(float));
    }
    return g;
}

/* ---- mapped products through the operator --------------------------------------------------------- */

void xb_mm_float_backward_input(const xb_mm_call *c, const float *dy, float *dx) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->k, c->ncols, c->rows_out, 1.0f, c->w, c->k, dy,
                c->ncols, 0.0f, dx, c->ncols);
}

void xb_mm_float_backward_weight(const xb_mm_call *c, const float *x, const float *dy, float *dw) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->rows_out, c->k, c->ncols, 1.0f, dy, c->ncols, x,
                c->ncols, 1.0f, dw, c->k);
}

static xb_status op_backward(xb_model *m, const xb_mm_call *c, const float *x, const float *dy, float *dx,
                             float *dw) {
    xb_status st = XB_OK;
    if (dw) {
        if (m->op.backward_weight) st = m->op.backward_weight(m->op.ctx, c, x, dy, dw);
        else xb_mm_float_backward_weight(c, x, dy, dw);
    }
    if (!st && dx) {
        if (m->op.backward_input) st = m->op.backward_input(m->op.ctx, c, x, dy, dx);
        else xb_mm_float_backward_input(c, dy, dx);
    }
    return st;
}

static void bias_grad(int cout, int64_t cols, const float *dy, float *db) {
    if (!db) return;
    for (int o = 0; o < cout; o++) {
        double s = 0;
        for (int64_t j = 0; j < cols; j++) s += dy[o * cols + j];
        db[o] += (float)s;
    }
}

/* conv through the operator: per group, im2col of the input again, the operator's backward, col2im */
static xb_status conv_backward_op(xb_model *m, node *nd, int n, const float *x, float *dx, int acc, int params) {
    const xb_conv2d_desc *d = &nd->conv;
    const int g = d->groups, cog = d->cout / g, K = xb_conv2d_k(d);
    const int64_t cols = (int64_t)n * d->ho * d->wo;
    float *xcol = m->ws, *dcol = m->ws + (size_t)K * cols;
    if (dx && !acc) memset(dx, 0, (size_t)d->cin * n * d->h * d->w * sizeof(float));
    if (params) bias_grad(d->cout, cols, nd->dy, gp(m, nd->p_b));
    for (int gi = 0; gi < g; gi++) {
        xb_im2col(d, n, gi, x, xcol);
        xb_mm_call c = xb_node_mm_call(m, nd, gi, (int)cols);
        float *dw = params ? gp(m, nd->p_w) + (size_t)gi * cog * K : NULL;
        xb_status st = op_backward(m, &c, xcol, nd->dy + (size_t)gi * cog * cols, dx ? dcol : NULL, dw);
        if (st) return st;
        if (dx) xb_col2im(d, n, gi, dcol, dx);
    }
    return XB_OK;
}

static xb_status linear_backward_op(xb_model *m, node *nd, int n, const float *x, float *dx, int c0, int params) {
    xb_mm_call c = xb_node_mm_call(m, nd, 0, n);
    if (params) bias_grad(nd->c, n, nd->dy, gp(m, nd->p_b));
    float *tmp = dx ? m->ws : NULL; /* the operator writes dx; the graph adds it */
    xb_status st = op_backward(m, &c, x, nd->dy, tmp, params ? gp(m, nd->p_w) : NULL);
    if (!st && dx)
        for (int64_t i = 0; i < (int64_t)c0 * n; i++) dx[i] += tmp[i];
    return st;
}

/* ---- the step API ----------------------------------------------------------------------------------- */

void xb_model_zero_grad(xb_model *m) { memset(m->gv, 0, (size_t)m->n_train * sizeof(float)); }

double xb_model_loss(xb_model *m, int n, const int32_t *labels, float label_smoothing, int *correct) {
    return xb_softmax_ce(m->classes, n, xb_model_logits(m), labels, label_smoothing, NULL, correct);
}

static xb_status check_labels(const xb_model *m, int n, const int32_t *labels) {
    for (int j = 0; j < n; j++)
        if (labels[j] < 0 || labels[j] >= m->classes)
            return xb_errorf(XB_ERR_ARG, "label %d of image %d is outside 0..%d (model '%s' has %d classes). HINT: "
                             "check the dataset's labels against the model's classes", (int)labels[j], j,
                             m->classes - 1, m->name, m->classes);
    return XB_OK;
}

static xb_status check_batch(const xb_model *m, int n) {
    if (m->n_cur < 1)
        return xb_errorf(XB_ERR_STATE, "model '%s': no forward to differentiate. HINT: call xb_model_forward first",
                         m->name);
    if (n != m->n_cur)
        return xb_errorf(XB_ERR_ARG, "model '%s': a batch of %d images, but the last forward had %d. HINT: pass the "
                         "forward's batch size", m->name, n, m->n_cur);
    return XB_OK;
}

/* loss of the last forward into the last node's dy (internal (classes, n) layout) */
static xb_status loss_into(xb_model *m, int n, const int32_t *labels, float ls, double *loss, int *correct,
                           float *dl) {
    xb_status st = check_batch(m, n);
    if (!st) st = check_labels(m, n, labels);
    if (st) return st;
    double l = xb_softmax_ce(m->classes, n, m->nodes[m->n_nodes - 1].y, labels, ls, dl, correct);
    if (loss) *loss = l;
    if (!isfinite(l))
        return xb_errorf(XB_ERR_NUMERIC, "the loss is %g (not finite). HINT: lower --lr, check the input data, or "
                         "use --schedule cosine with a warm start", l);
    return XB_OK;
}

xb_status xb_model_loss_grad(xb_model *m, int n, const int32_t *labels, float label_smoothing, double *loss,
                             int *correct, float *dlogits) {
    node *last = &m->nodes[m->n_nodes - 1];
    xb_status st = loss_into(m, n, labels, label_smoothing, loss, correct, dlogits ? last->dy : NULL);
    if (st || !dlogits) return st;
    for (int j = 0; j < n; j++)
        for (int k = 0; k < m->classes; k++) dlogits[(size_t)j * m->classes + k] = last->dy[(size_t)k * n + j];
    return XB_OK;
}

static xb_status backward_nodes(xb_model *m, int n, int params);

xb_status xb_model_backward_from(xb_model *m, int n, const float *dlogits, int params, float *dx) {
    xb_status st = check_batch(m, n);
    if (st) return st;
    if (!m->training && m->folded_fwd)
        return xb_errorf(XB_ERR_STATE, "model '%s': the eval-mode forward folded batchnorm into its convolutions "
                         "(the inference fast path) and cannot be differentiated. HINT: call xb_model_keep_graph(m, 1) "
                         "before the forward", m->name);
    node *last = &m->nodes[m->n_nodes - 1];
    for (int j = 0; j < n; j++)
        for (int k = 0; k < m->classes; k++) last->dy[(size_t)k * n + j] = dlogits[(size_t)j * m->classes + k];
    m->want_dx = dx != NULL;
    st = backward_nodes(m, n, params);
    m->want_dx = 0;
    if (st || !dx) return st;
    if (!m->dxin_live) memset(m->dxin, 0, (size_t)m->in_c * n * m->in_h * m->in_w * sizeof(float));
    /* CNHW -> NCHW */
    const int64_t hw = (int64_t)m->in_h * m->in_w;
    for (int c = 0; c < m->in_c; c++)
        for (int j = 0; j < n; j++)
            memcpy(dx + ((size_t)j * m->in_c + c) * hw, m->dxin + ((size_t)c * n + j) * hw, (size_t)hw * sizeof(float));
    return XB_OK;
}

xb_status xb_model_backward(xb_model *m, int n, const int32_t *labels, float label_smoothing, double *loss,
                            int *correct) {
    node *last = &m->nodes[m->n_nodes - 1];
    xb_status st = loss_into(m, n, labels, label_smoothing, loss, correct, last->dy);
    if (st) return st;
    if (!m->training && m->folded_fwd)
        return xb_errorf(XB_ERR_STATE, "model '%s': the eval-mode forward folded batchnorm into its convolutions "
                         "and cannot be differentiated. HINT: call xb_model_keep_graph(m, 1) before the forward",
                         m->name);
    xb_model_zero_grad(m);
    return backward_nodes(m, n, 1);
}

/* ---- the backward pass -------------------------------------------------------------------------------- */

/* An operator's weight-gradient factors (weight_grad_scale): the fast path's kernels add the layer's weight
 * gradient into m->gtmp (zeroed here), then scaled_grad_end_ adds it times the factors. */
static float *scaled_grad_begin_(xb_model *m, const node *nd, const float *gs) {
    if (!gs) return gp(m, nd->p_w);
    memset(m->gtmp, 0, (size_t)m->params[nd->p_w].numel * sizeof(float));
    return m->gtmp;
}

static void scaled_grad_end_(xb_model *m, const node *nd, const float *gs) {
    float *g = gp(m, nd->p_w);
    const int64_t k = m->params[nd->p_w].numel;
    for (int64_t j = 0; j < k; j++) g[j] += m->gtmp[j] * gs[j];
}

/* From the last node's dy (set by the caller) to every parameter (params != 0) and, when m->want_dx, the
 * input. */
static xb_status backward_nodes(xb_model *m, int n, int params) {
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].dy_live = 0;
    m->dxin_live = 0;
    m->nodes[m->n_nodes - 1].dy_live = 1;
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        node *nd = &m->nodes[i];
        /* a relu run by its producer: the producer's backward takes the relu's gradient (fr) */
        if (nd->type == L_RELU && nd->relu_fused) continue;
        const node *fr = nd->fuse_relu >= 0 && m->nodes[nd->fuse_relu].relu_fused ? &m->nodes[nd->fuse_relu] : NULL;
        if (fr ? !fr->dy_live : !nd->dy_live) continue; /* output unused (not in a connected graph) */
        const float *a = node_in(m, nd, 0);
        int c0, h0, w0;
        in_shape(m, nd->in[0], &c0, &h0, &w0);
        double t0 = m->profile ? xb_time_s() : 0;
        const int writes = nd->type == L_CONV || nd->type == L_BN || nd->type == L_ADD || nd->type == L_SHORTCUT;
        int acc = 1;
        float *da = writes ? grad_out(m, nd->in[0], &acc) : grad_of(m, nd->in[0], n);
        xb_status st = XB_OK;
        switch (nd->type) {
        case L_CONV: {
            const float *wf = NULL, *wb = NULL;
            if (m->has_op && (st = xb_node_op_linear(m, nd, n, &wf, &wb))) break;
            const float *gs = NULL;
            if (params && wf && (st = xb_node_op_grad_scale(m, nd, n, &gs))) break;
            if (m->has_op && !wf) st = conv_backward_op(m, nd, n, a, da, acc, params);
            else xb_conv2d_backward_ex(&nd->conv, n, a, wf ? wb : pp(m, nd->p_w), nd->dy, da, acc,
                                       params ? scaled_grad_begin_(m, nd, gs) : NULL, params ? gp(m, nd->p_b) : NULL,
                                       m->ws);
            if (gs) scaled_grad_end_(m, nd, gs);
            break;
        }
        case L_LINEAR: {
            const float *wf = NULL, *wb = NULL;
            if (m->has_op && (st = xb_node_op_linear(m, nd, n, &wf, &wb))) break;
            const float *gs = NULL;
            if (params && wf && (st = xb_node_op_grad_scale(m, nd, n, &gs))) break;
            if (m->has_op && !wf) st = linear_backward_op(m, nd, n, a, da, c0, params);
            else xb_linear_backward(c0, nd->c, n, a, wf ? wb : pp(m, nd->p_w), nd->dy, da,
                                    params ? scaled_grad_begin_(m, nd, gs) : NULL, params ? gp(m, nd->p_b) : NULL);
            if (gs) scaled_grad_end_(m, nd, gs);
            break;
        }
        case L_BN: {
            const float *dyb = fr ? fr->dy : nd->dy, *yr = fr ? fr->y : NULL;
            float *dg = params ? gp(m, nd->p_w) : NULL, *db = params ? gp(m, nd->p_b) : NULL;
            const int64_t mm = (int64_t)n * nd->h * nd->w;
            if (m->training)
                xb_batchnorm_backward_ex(nd->c, mm, a, pp(m, nd->p_w), nd->save_mean, nd->save_invstd, yr, dyb, da,
                                         acc, dg, db);
            else
                xb_batchnorm_eval_backward(nd->c, mm, a, pp(m, nd->p_w), bp(m, nd->p_rm), bp(m, nd->p_rv), nd->eps,
                                           yr, dyb, da, acc, dg, db);
            break;
        }
        case L_RELU: if (da) xb_relu_backward((int64_t)node_size(nd, n), nd->y, nd->dy, da); break;
        case L_MAXPOOL: if (da) xb_maxpool_backward(&nd->pool, nd->c, n, nd->argmax, nd->dy, da); break;
        case L_AVGPOOL: if (da) xb_avgpool_backward(&nd->pool, nd->c, n, nd->dy, da); break;
        case L_GAP: if (da) xb_gap_backward(nd->c, n, h0 * w0, nd->dy, da); break;
        case L_FLATTEN: if (da) xb_flatten_backward(c0, n, h0 * w0, nd->dy, da); break;
        case L_DROPOUT:
            if (da) {
                if (m->training && nd->p_drop > 0) xb_dropout_backward((int64_t)node_size(nd, n), nd->p_drop, nd->mask, nd->dy, da);
                else for (size_t j = 0; j < node_size(nd, n); j++) da[j] += nd->dy[j];
            }
            break;
        case L_ADD: {
            int acc_b;
            float *db = grad_out(m, nd->in[1], &acc_b);
            xb_add_relu_backward_ex((int64_t)node_size(nd, n), fr ? fr->y : NULL, fr ? fr->dy : nd->dy, da, acc, db,
                                    acc_b);
            break;
        }
        case L_QUANT: {
            /* straight-through: dy where the code was inside the grid; PACT: d alpha = sum of dy clipped at the top */
            const int64_t len = (int64_t)node_size(nd, n);
            const uint8_t *mk = nd->mask;
            const float *g = nd->dy;
            if (da) {
#pragma omp parallel for simd schedule(static) if (len > 65536)
                for (int64_t j = 0; j < len; j++) da[j] += mk[j] == 1 ? g[j] : 0.0f;
            }
            if (params && nd->p_alpha >= 0) {
                double dal = 0;
                for (int64_t j = 0; j < len; j++) dal += mk[j] == 2 ? (double)g[j] : 0.0;
                gp(m, nd->p_alpha)[0] += (float)dal;
            }
            break;
        }
        case L_SHORTCUT:
            if (da) xb_shortcut_pad_backward_ex(c0, nd->c, nd->sc_pad_lo, nd->sc_stride, n, h0, w0, nd->dy, da, acc);
            break;
        case L_COUNT: XB_ASSERT(0);
        }
        if (st) {
            char why[1536];
            snprintf(why, sizeof why, "%s", xb_last_error());
            return xb_errorf(st, "backward of layer %s: %s", nd->name, why);
        }
        if (m->profile) {
            double dt = xb_time_s() - t0;
            m->prof[1][nd->type] += dt;
            nd->prof[1] += dt;
        }
    }
    return XB_OK;
}
