/* model_access.c -- a model's accessors: parameters, shapes, nodes and their types, inputs and outputs,
 * the mapped layers, the activation quantizers' settings, the operator slot and the freeze mask.  Split
 * from model.c (building, planning, forward). */
#include "model_internal.h"

#include <math.h>
#include <string.h>

int xb_model_n_params(const xb_model *m) { return m->n_params; }
const xb_param *xb_model_param(const xb_model *m, int i) { XB_ASSERT(i >= 0 && i < m->n_params); return &m->params[i]; }
const xb_param *xb_model_find_param(const xb_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}
float *xb_model_params(xb_model *m) { return m->pv; }
float *xb_model_grads(xb_model *m) { return m->gv; }
float *xb_model_buffers(xb_model *m) { return m->bv; }
const uint8_t *xb_model_decay_mask(const xb_model *m) { return m->decay_mask; }
int64_t xb_model_n_trainable(const xb_model *m) { return m->n_train; }
int64_t xb_model_n_buffer(const xb_model *m) { return m->n_buf; }
int xb_model_classes(const xb_model *m) { return m->classes; }
void xb_model_input_shape(const xb_model *m, int *c, int *h, int *w) { *c = m->in_c; *h = m->in_h; *w = m->in_w; }
const char *xb_model_name(const xb_model *m) { return m->name; }
void xb_model_train_mode(xb_model *m, int training) { m->training = training; }
void xb_model_bn_cumulative(xb_model *m, int on) { m->bn_cumulative = on; }
void xb_model_reset_bn_stats(xb_model *m) {
    for (int i = 0; i < m->n_nodes; i++) {
        const node *nd = &m->nodes[i];
        if (nd->type != L_BN) continue;
        float *rm = m->bv + m->params[nd->p_rm].offset, *rv = m->bv + m->params[nd->p_rv].offset;
        for (int j = 0; j < nd->c; j++) { rm[j] = 0.0f; rv[j] = 1.0f; }
        m->bv[m->params[nd->p_nbt].offset] = 0.0f;
    }
}
void xb_model_set_op(xb_model *m, const xb_mm_op *op) {
    m->has_op = op != NULL;
    if (op) m->op = *op;
    else memset(&m->op, 0, sizeof m->op);
}
const xb_mm_op *xb_model_op(const xb_model *m) { return m->has_op ? &m->op : NULL; }
void xb_model_keep_graph(xb_model *m, int on) { m->keep_graph = on; }
int xb_model_n_nodes(const xb_model *m) { return m->n_nodes; }

xb_status xb_model_freeze_mask(const xb_model *m, const char *which, uint8_t *frozen) {
    int bn_only = strcmp(which, "bn") == 0;
    if (!bn_only && strcmp(which, "all") != 0)
        return xb_errorf(XB_ERR_ARG, "trainable parameters '%s': unknown. HINT: all or bn", which);
    memset(frozen, bn_only, (size_t)m->n_train);
    int found = 0;
    for (int i = 0; bn_only && i < m->n_nodes; i++) {
        const node *nd = &m->nodes[i];
        if (nd->type != L_BN) continue;
        for (int q = 0; q < 2; q++) {
            const xb_param *p = &m->params[q ? nd->p_b : nd->p_w];
            memset(frozen + p->offset, 0, (size_t)p->numel);
            found = 1;
        }
    }
    if (bn_only && !found)
        return xb_errorf(XB_ERR_ARG, "model '%s' has no batchnorm layer to train. HINT: --trainable all", m->name);
    return XB_OK;
}
const char *xb_model_node_name(const xb_model *m, int i) { XB_ASSERT(i >= 0 && i < m->n_nodes); return m->nodes[i].name; }
void xb_model_node_shape(const xb_model *m, int i, int *c, int *h, int *w) {
    XB_ASSERT(i >= 0 && i < m->n_nodes);
    *c = m->nodes[i].c; *h = m->nodes[i].h; *w = m->nodes[i].w;
}
const float *xb_model_node_output(const xb_model *m, int i) {
    XB_ASSERT(i >= 0 && i < m->n_nodes);
    const node *nd = &m->nodes[i];
    if (nd->fuse_relu >= 0 && m->nodes[nd->fuse_relu].relu_fused) return NULL;
    return nd->y;
}
int xb_model_n_mapped(const xb_model *m) { return m->n_mapped; }
int xb_model_feeding_quant(const xb_model *m, int i, int averages) {
    XB_ASSERT(i >= 0 && i < m->n_nodes);
    for (int a = m->nodes[i].in[0]; a >= 0; a = m->nodes[a].in[0]) {
        const ltype t = m->nodes[a].type;
        if (t == L_QUANT) return a;
        if (t != L_MAXPOOL && t != L_FLATTEN && t != L_DROPOUT && !(averages && (t == L_AVGPOOL || t == L_GAP)))
            return -1;
    }
    return -1;
}

const char *xb_model_node_type(const xb_model *m, int i) {
    XB_ASSERT(i >= 0 && i < m->n_nodes);
    return xb_ltype_names[m->nodes[i].type];
}
void xb_model_node_inputs(const xb_model *m, int i, int *in0, int *in1) {
    XB_ASSERT(i >= 0 && i < m->n_nodes);
    *in0 = m->nodes[i].in[0];
    *in1 = m->nodes[i].n_in > 1 ? m->nodes[i].in[1] : -2;
}
int xb_model_node_mapped(const xb_model *m, int i) { XB_ASSERT(i >= 0 && i < m->n_nodes); return m->nodes[i].mapped; }
int xb_model_last_batch(const xb_model *m) { return m->n_cur; }
int64_t xb_model_node_macs(const xb_model *m, int i) { XB_ASSERT(i >= 0 && i < m->n_nodes); return m->nodes[i].macs; }
xb_status xb_model_set_quant_bits(xb_model *m, int i, int bits) {
    if (i < 0 || i >= m->n_nodes || m->nodes[i].type != L_QUANT || m->nodes[i].qa_kind == XB_QA_TERNARY)
        return xb_errorf(XB_ERR_ARG, "node %d of model '%s' is not an activation quantizer with bits", i, m->name);
    const int lo = m->nodes[i].qa_kind == XB_QA_SIGNED ? 2 : 1;
    if (bits < lo || bits > 16)
        return xb_errorf(XB_ERR_ARG, "[quant %s]: %d bits is out of range %d..16", m->nodes[i].name, bits, lo);
    m->nodes[i].qa_bits = bits;
    return XB_OK;
}
int xb_model_node_quant(const xb_model *m, int i, int *kind, int *bits, float *clip) {
    XB_ASSERT(i >= 0 && i < m->n_nodes);
    const node *nd = &m->nodes[i];
    if (nd->type != L_QUANT) return 0;
    *kind = nd->qa_kind;
    *bits = nd->qa_bits;
    *clip = nd->p_alpha >= 0 ? m->pv[m->params[nd->p_alpha].offset]
          : nd->p_clip >= 0 ? m->bv[m->params[nd->p_clip].offset] : nd->qa_clip;
    return 1;
}

void xb_model_mapped_info(const xb_model *m, int i, const char **name, int *param, int *rows_out, int *k) {
    XB_ASSERT(i >= 0 && i < m->n_mapped);
    const node *nd = &m->nodes[m->mapped_nodes[i]];
    if (name) *name = nd->name;
    if (param) *param = nd->p_w;
    const xb_param *w = &m->params[nd->p_w];
    if (rows_out) *rows_out = (int)(w->shape[0] / (nd->type == L_CONV ? nd->conv.groups : 1));
    if (k) *k = (int)(w->numel / w->shape[0]);
}



const float *xb_model_node_grad(const xb_model *m, int i) {
    XB_ASSERT(i >= 0 && i < m->n_nodes);
    const node *nd = &m->nodes[i];
    if (!nd->dy_live || (nd->fuse_relu >= 0 && m->nodes[nd->fuse_relu].relu_fused)) return NULL;
    return nd->dy;
}
int xb_model_batch_capacity(const xb_model *m) { return m->nmax; }
int xb_model_node_groups(const xb_model *m, int i) {
    XB_ASSERT(i >= 0 && i < m->n_nodes);
    return m->nodes[i].type == L_CONV ? m->nodes[i].conv.groups : 1;
}
int xb_model_bn_affine(const xb_model *m, int i, float *scale, float *shift) {
    XB_ASSERT(i >= 0 && i < m->n_nodes);
    const node *nd = &m->nodes[i];
    if (nd->type != L_BN) return 0;
    const float *rm = m->bv + m->params[nd->p_rm].offset, *rv = m->bv + m->params[nd->p_rv].offset;
    const float *g = pp(m, nd->p_w), *b = pp(m, nd->p_b);
    for (int c = 0; c < nd->c; c++) {
        const float a = (g ? g[c] : 1.0f) / sqrtf(rv[c] + nd->eps);
        scale[c] = a;
        shift[c] = (b ? b[c] : 0.0f) - a * rm[c];
    }
    return 1;
}
