/* nn_internal.h -- functions shared inside src/nn/ that are not part of the public API. */
#ifndef XB_NN_INTERNAL_H
#define XB_NN_INTERNAL_H
#include "xbar.h"

/* per-element weight-decay flags (1 for conv/linear weights), same layout as the parameters */
const uint8_t *xb_model_decay_mask(const xb_model *m);
/* adds every parameter and buffer to st (borrowed); int64 counters are copied into i64_scratch,
 * which must hold xb_model_n_params(m) values */
void xb_model_add_to_st(xb_model *m, xb_safetensors *st, int64_t *i64_scratch);
#endif
