/* model_info.c -- what a model reports about itself: the layer table (xbar info), MACs, and the
 * XBAR_PROFILE timings printed when the model is freed.  The graph itself is model.c. */
#include "model_internal.h"

#include <string.h>

void xb_model_print_profile(const xb_model *m) {
    double tot = 0;
    for (int d = 0; d < 2; d++)
        for (int t = 0; t < L_COUNT; t++) tot += m->prof[d][t];
    if (tot <= 0) return;
    fprintf(stderr, "xbar profile (%s): seconds per layer type, forward / backward\n", m->name);
    for (int t = 0; t < L_COUNT; t++)
        if (m->prof[0][t] + m->prof[1][t] > 0)
            fprintf(stderr, "  %-10s %8.3f %8.3f  %5.1f%%\n", xb_ltype_names[t], m->prof[0][t], m->prof[1][t],
                    100 * (m->prof[0][t] + m->prof[1][t]) / tot);
    if (m->profile < 2) return;
    fprintf(stderr, "xbar profile (%s): seconds per node, forward / backward (a fused relu counts in its producer)\n",
            m->name);
    for (int i = 0; i < m->n_nodes; i++) {
        const node *nd = &m->nodes[i];
        if (nd->prof[0] + nd->prof[1] > 0)
            fprintf(stderr, "  %-22s %-10s %8.3f %8.3f  %5.1f%%\n", nd->name, xb_ltype_names[nd->type], nd->prof[0],
                    nd->prof[1], 100 * (nd->prof[0] + nd->prof[1]) / tot);
    }
}

int64_t xb_model_macs(const xb_model *m) {
    int64_t s = 0;
    for (int i = 0; i < m->n_nodes; i++) s += m->nodes[i].macs;
    return s;
}

void xb_model_print_info(const xb_model *m, FILE *f, int json) {
    int64_t total = 0;
    if (json) {
        fprintf(f, "{\"model\":\"%s\",\"input\":[%d,%d,%d],\"classes\":%d,\"layers\":[", m->name, m->in_c,
                m->in_h, m->in_w, m->classes);
    } else {
        fprintf(f, "model %s: input %dx%dx%d, %d classes\n", m->name, m->in_c, m->in_h, m->in_w, m->classes);
        fprintf(f, "%-22s %-10s %-18s %-14s %10s %14s\n", "layer", "type", "input", "output", "params", "MACs");
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const node *nd = &m->nodes[i];
        int64_t np = 0;
        int ps[5] = {nd->p_w, nd->p_b, -1, -1, -1};
        for (int k = 0; k < 2; k++)
            if (ps[k] >= 0) np += m->params[ps[k]].numel;
        total += np;
        char in[200];
        if (nd->n_in == 2) snprintf(in, sizeof in, "%s+%s", nd->in[0] < 0 ? "image" : m->nodes[nd->in[0]].name,
                                    nd->in[1] < 0 ? "image" : m->nodes[nd->in[1]].name);
        else snprintf(in, sizeof in, "%s", nd->in[0] < 0 ? "image" : m->nodes[nd->in[0]].name);
        if (json)
            fprintf(f, "%s{\"name\":\"%s\",\"type\":\"%s\",\"input\":\"%s\",\"output\":[%d,%d,%d],\"params\":%lld,"
                       "\"macs\":%lld}", i ? "," : "", nd->name, xb_ltype_names[nd->type], in, nd->c, nd->h, nd->w,
                    (long long)np, (long long)nd->macs);
        else {
            char shp[32];
            snprintf(shp, sizeof shp, "%dx%dx%d", nd->c, nd->h, nd->w);
            if (strlen(in) > 18) { in[15] = '.'; in[16] = '.'; in[17] = 0; }
            fprintf(f, "%-22s %-10s %-18s %-14s %10lld %14lld\n", nd->name, xb_ltype_names[nd->type], in, shp,
                    (long long)np, (long long)nd->macs);
        }
    }
    if (json)
        fprintf(f, "],\"params\":%lld,\"buffers\":%lld,\"macs\":%lld}\n", (long long)total, (long long)m->n_buf,
                (long long)xb_model_macs(m));
    else
        fprintf(f, "total: %lld trainable parameters, %lld buffer values, %lld MACs per image (%.2f M)\n",
                (long long)total, (long long)m->n_buf, (long long)xb_model_macs(m), (double)xb_model_macs(m) / 1e6);
}
