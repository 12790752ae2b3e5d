/* opwrap.c -- a forward-only counting operator installed on a model and removed again (opwrap.h). */
#include "energy/opwrap.h"

#include <stdio.h>

void en_opwrap_install(en_opwrap *w, xb_model *m, void *ctx,
                       xb_status (*forward)(void *ctx, const xb_mm_call *c, const float *x, float *y)) {
    w->m = m;
    w->n_mapped = xb_model_n_mapped(m);
    w->names = xb_calloc((size_t)(w->n_mapped > 0 ? w->n_mapped : 1) * sizeof *w->names);
    for (int n = 0; n < xb_model_n_nodes(m); n++) {
        const int li = xb_model_node_mapped(m, n);
        if (li >= 0) snprintf(w->names[li], sizeof w->names[li], "%s", xb_model_node_name(m, n));
    }
    const xb_mm_op *prev = xb_model_op(m);
    w->had_prev = prev != NULL;
    if (prev) w->prev = *prev;
    xb_mm_op op = {0};
    op.ctx = ctx;
    op.forward = forward;
    xb_model_set_op(m, &op);
}

void en_opwrap_remove(en_opwrap *w) {
    xb_model_set_op(w->m, w->had_prev ? &w->prev : NULL);
    xb_free(w->names);
    w->names = NULL;
}
