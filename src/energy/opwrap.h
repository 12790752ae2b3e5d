/* opwrap.h -- what the two counting accelerators (pe.c, tim.c) share: installing a forward-only mapped-matmul
 * operator on a model, keeping the one it replaced and the mapped layers' names, and putting it back. */
#ifndef XB_ENERGY_OPWRAP_H
#define XB_ENERGY_OPWRAP_H
#include "xb_energy.h"

typedef struct en_opwrap {
    xb_model *m;
    int n_mapped;
    char (*names)[128];   /* per mapped layer: its node's name */
    xb_mm_op prev;        /* the operator this one replaced */
    int had_prev;
} en_opwrap;

/* Fills w for m and installs {ctx, forward} as m's operator. */
void en_opwrap_install(en_opwrap *w, xb_model *m, void *ctx,
                       xb_status (*forward)(void *ctx, const xb_mm_call *c, const float *x, float *y));
/* Puts the replaced operator back (or the native kernels) and frees w's names. */
void en_opwrap_remove(en_opwrap *w);
#endif
