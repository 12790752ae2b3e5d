/* quant.h -- the one uniform quantizer.  Every converter of the crossbar pipeline uses it (periph.c's
 * public xb_quant_uniform, the DACs of the forward's fast and tiled paths in xforward.c, the DAC the
 * backward takes the weight gradient on in xop.c, the ADCs in xforward.c), and so do the
 * quantization-aware training quantizers of src/quant/.
 * In float32: the code is rint(x / step), ties to even, then clamped to [lo, hi]; the applied value is
 * code * step.  A DAC of k bits over a range r has step = r / (2^k - 1) (r and the step in float32)
 * and quantizes |x| to [0, 2^k - 1], the sign kept.  periph.c's *_ref functions are its double twins.
 * Private to the library (src/). */
#ifndef XB_QUANT_H
#define XB_QUANT_H
#include <math.h>

/* the unclamped code: rint(x / step).  x / step, not x * (1 / step), so that codes match the formula */
static inline float xq_round(float x, float step) { return rintf(x / step); }

/* the code clamped to [lo, hi] (a NaN stays NaN) */
static inline float xq_clamp(float c, float lo, float hi) { return c < lo ? lo : c > hi ? hi : c; }

/* a DAC's step: its range over its top code */
static inline float xq_dac_step(float range, float top) { return range / top; }

#endif
