/*
 * xb_quant.h -- quantization-aware training: the weight and activation quantizers, with their
 * straight-through gradients.  Included by xbar.h.  docs/quantization.md has the formulas.
 *
 * A weight quantizer acts on one mapped layer's (rows, k) matrix (rows = output channels, PyTorch's
 * weight layout flattened); it is applied by the quantizing mapped-matmul operator (xb_qop_*), so the
 * model's float weights stay the master copy that the optimizer updates.  An activation quantizer is a
 * layer of the model graph ([quant NAME] in a model .cfg, docs/model-cfg.md).
 *
 * Every quantizer rounds to nearest, ties to even (rintf, float32), through src/core/quant.h, the one
 * uniform quantizer the crossbar pipeline also uses.  Straight-through gradients: d out / d in is
 * declared per element by *_ste (weights) or the mask (activations); rounding passes gradients
 * unchanged.
 */
#ifndef XB_QUANT_H_PUBLIC
#define XB_QUANT_H_PUBLIC

#ifdef __cplusplus
extern "C" {
#endif

/* ---- weights ------------------------------------------------------------------------------------
 * kind              values                                   scale (per row r, or one per matrix)
 * NONE              w                                        -
 * UNIFORM (b bits)  s c, c = clamp(rint(w / s), -Q, Q),      s = max|w| / Q, Q = 2^(b-1) - 1
 *                   b in 2..16                               (s = 1 when max|w| = 0)
 * BINARY            s c, c = +1 (w >= 0) or -1               s = mean|w|  (XNOR-Net)
 * TERNARY           c in {-1, 0, 1}: c = sign(w) where       - (unweighted; values are the codes)
 *                   |w| > D, D = delta mean|w|
 * TERNARY_SYM       s c, c as TERNARY                        s = mean of |w| over |w| > D  (TWN)
 * TERNARY_ASYM      b for c = 1, -a for c = -1, 0:           D+ = delta mean(w | w > 0),
 *                   c = 1 where w > D+, -1 where w < -D-     D- = delta mean(-w | w < 0),
 *                                                            b = mean(w | w > D+), a = mean(-w | w < -D-)
 * DOREFA (b bits)   s c, c = 2 rint(t (2^b - 1)) - (2^b - 1),  t = tanh(w) / (2 max|tanh(w)|) + 1/2,
 *                   b in 1..16                               s = 1 / (2^b - 1); max over the matrix
 *                                                            (per row with per_channel)
 * Straight-through derivative d wq / d w (ste): UNIFORM 1; BINARY, the TERNARY kinds 1 where |w| <= 1,
 * else 0 (hard tanh); DOREFA (1 - tanh(w)^2) / max|tanh(w)| (the max held constant).  An empty
 * selection (a row with no weight above D) gives scale 0 for that side.  stochastic: UNIFORM and DOREFA
 * round by floor(v + u), u uniform in [0, 1) drawn from the stream (seed, counter), so that a resumed
 * run draws the same numbers; the other kinds refuse it. */
typedef enum xb_qw_kind {
    XB_QW_NONE = 0, XB_QW_UNIFORM, XB_QW_BINARY, XB_QW_TERNARY, XB_QW_TERNARY_SYM, XB_QW_TERNARY_ASYM,
    XB_QW_DOREFA, XB_QW_COUNT
} xb_qw_kind;
/* names as written in configs and flags: none uniform binary ternary ternary-sym ternary-asym dorefa */
extern const char *const xb_qw_names[XB_QW_COUNT];

typedef struct xb_qw_spec {
    xb_qw_kind kind;
    int bits;                 /* UNIFORM 2..16, DOREFA 1..16; the others ignore it (1 or 2 bits) */
    int per_channel;          /* 1: one scale (and threshold) per output row; 0: one per matrix */
    int stochastic;           /* stochastic rounding (UNIFORM, DOREFA) */
    double delta;             /* ternary threshold factor (TWN: 0.7) */
} xb_qw_spec;

/* Checks a spec: XB_ERR_ARG with a message naming what is wrong (bits out of range, stochastic on a
 * kind without it, delta not in (0, 2)).  where: a place for the message, such as "file.cfg:12". */
xb_status xb_qw_check(const xb_qw_spec *s, const char *where);
/* Number of scales per row (0 NONE or TERNARY, 2 TERNARY_ASYM (a then b), 1 otherwise). */
int xb_qw_scales_per_row(const xb_qw_spec *s);
/* Bits of a code: UNIFORM/DOREFA bits, BINARY 1, ternary 2 (1.58), NONE 32. */
int xb_qw_bits(const xb_qw_spec *s);
/* Quantizes w (rows, k) into wq (may not alias w).  code (may be NULL): the integer codes as floats;
 * scale (may be NULL): rows x xb_qw_scales_per_row (per_channel) or that many for the matrix;
 * ste (may be NULL): the straight-through derivative per element.  seed/counter: the stochastic
 * rounding stream (ignored otherwise).  Never fails on finite input; a non-finite weight: XB_ERR_NUMERIC. */
xb_status xb_qw_apply(const xb_qw_spec *s, int rows, int k, const float *w, float *wq, float *code, float *scale,
                      float *ste, uint64_t seed, uint64_t counter);
/* The plain reference of one matrix, in double, straight from the table above (tests hold
 * xb_qw_apply to it).  Deterministic rounding only. */
void xb_qw_apply_ref(const xb_qw_spec *s, int rows, int k, const float *w, double *wq, double *ste);

/* ---- activations --------------------------------------------------------------------------------
 * An activation quantizer [quant NAME] maps x to  s clamp(rint(x / s), lo, hi)  with
 *   UNIFORM (b bits, unsigned, after a ReLU): lo = 0, hi = 2^b - 1, s = clip / hi; clip fixed, or
 *           calibrated (a running maximum of |x| in training, as PyTorch's moving-average observer)
 *   PACT:   as UNIFORM with clip = alpha, a trainable parameter NAME.alpha (Choi et al. 2018)
 *   DOREFA: as UNIFORM with clip = 1
 *   TERNARY: lo = -1, hi = 1, s = clip  (signed {-clip, 0, clip}, threshold clip / 2)
 *   SIGNED (b bits): lo = -(2^(b-1) - 1), hi = -lo, s = clip / hi  (for inputs that are not after a ReLU)
 * Straight-through mask (PyTorch's fake_quantize): the gradient passes where lo <= rint(x / s) <= hi
 * and is 0 elsewhere.  PACT: d y / d alpha = 1 where rint(x / s) > hi (clipped at the top), else 0. */
typedef enum xb_qa_kind {
    XB_QA_UNIFORM = 0, XB_QA_PACT, XB_QA_DOREFA, XB_QA_TERNARY, XB_QA_SIGNED, XB_QA_COUNT
} xb_qa_kind;
extern const char *const xb_qa_names[XB_QA_COUNT]; /* uniform pact dorefa ternary signed */

/* step, lo and hi codes of an activation quantizer of `bits` bits with clip value `clip` */
void xb_qa_grid(xb_qa_kind kind, int bits, float clip, float *step, float *lo, float *hi);
/* y = quantized x (y may alias x); mask (may be NULL) = 1 where the gradient passes, 2 where it was
 * clipped at the top, 0 where clipped at the bottom.  Returns the number clipped. */
int64_t xb_qa_forward(int64_t n, const float *x, float step, float lo, float hi, float *y, uint8_t *mask);
/* dx = dy where mask == 1, else 0 (dx may alias dy); returns sum of dy where mask == 2 (PACT's d alpha) */
double xb_qa_backward(int64_t n, const uint8_t *mask, const float *dy, float *dx);

/* ---- the weight-quantizing operator (src/quant/qop.c) --------------------------------------------
 * specs: one per mapped layer (xb_model_n_mapped), checked.  The operator quantizes a layer's float
 * weights when they change (a hash), runs the product with them (through `inner`, e.g. a crossbar,
 * which then sees the quantized weights as the call's w) and multiplies the weight gradient by the
 * straight-through derivative.  seed: the stochastic rounding stream. */
typedef struct xb_qop xb_qop;
xb_status xb_qop_init(xb_model *m, const xb_qw_spec *specs, uint64_t seed, xb_qop **out);
void xb_qop_free(xb_qop *q);
/* the operator to install with xb_model_set_op; inner (may be NULL) is wrapped */
xb_mm_op xb_qop_op(xb_qop *q, const xb_mm_op *inner);
/* changes mapped layer i's bits (UNIFORM, DOREFA); the next product quantizes again */
xb_status xb_qop_set_bits(xb_qop *q, int i, int bits);
/* mapped layer i's spec */
const xb_qw_spec *xb_qop_spec(const xb_qop *q, int i);
/* mapped layer i's quantized weights (the weight tensor's layout), codes and scales, for the current
 * float weights (any may be NULL) */
xb_status xb_qop_layer(xb_qop *q, int i, const float **wq, const float **code, const float **scale);

/* ---- quantization configs (src/quant/qcfg.c; docs/quantization.md) -------------------------------
 * A model .cfg or a --quant-config file may hold [quantize] (defaults), [quantize LAYER.weight] (one
 * conv2d or linear layer's weights) and [quantize RELU.output] (the output of one relu) sections:
 *   weight = none|uniform|binary|ternary|ternary-sym|ternary-asym|dorefa, weight_bits, weight_scale =
 *   channel|tensor, stochastic, delta; first_bits, last_bits (defaults only: the first and last mapped
 *   layers' weights as uniform of that many bits; 0: float);
 *   act = uniform|pact|dorefa|ternary, act_bits, act_clip (a number or calibrated): an activation
 *   quantizer [quant RELU_q] after every relu (or that one), feeding what followed the relu. */
typedef struct xb_quant_flags {
    int weight_bits, act_bits;        /* 0: not given */
    const char *quant;                /* --quant: uniform|binary|ternary|ternary-sym|ternary-asym|dorefa, or NULL */
    const char *act;                  /* activation mode, or NULL */
    const char *act_clip;             /* a number or "calibrated", or NULL */
    int first_bits, last_bits;        /* -1: not given */
} xb_quant_flags;
/* Rewrites a model's config text with the quantization of the config file qtext (may be NULL) and the
 * flags (which override the file's [quantize] defaults): [quant] layers inserted, and one resolved
 * [quantize LAYER.weight] section per mapped layer; *out (malloc'd) is the text of the quantized model.  Errors
 * name the file and line (unknown keys, bits out of range, a NAME that is neither a mapped layer nor a
 * relu, a quantizer a layer cannot take).  *any = 0 when nothing is quantized (then *out is a copy). */
xb_status xb_quant_rewrite(const char *model_text, const char *model_path, const char *qtext, const char *qpath,
                           const xb_quant_flags *fl, char **out, int *any);
/* The weight specs of a quantized model's config text: one per mapped layer of m (none where the text
 * has no [quantize LAYER.weight] for it).  *any = 1 when some layer's weights are quantized. */
xb_status xb_quant_specs(const char *text, const char *path, const xb_model *m, xb_qw_spec *specs, int *any);
/* A resolved text again with the bits now in force (activation quantizers' bits from m, weights' from q,
 * which may be NULL), e.g. after activation-density precision changed them. */
xb_status xb_quant_current_text(const char *text, const char *path, const xb_model *m, xb_qop *q, char **out);
/* The text of a model .cfg (a file) or of a zoo model (a name); malloc'd into *out. */
xb_status xb_model_text(const char *name_or_path, char **out, char *path, size_t path_n);
/* Writes q's quantized weights of m into path (safetensors under PyTorch's names: loads into xbar and
 * PyTorch alike; the other tensors as they are) and their integer codes and scales into codes_path
 * (NAME.weight_code as int32, NAME.weight_scale as float32). */
xb_status xb_quant_export(xb_qop *q, xb_model *m, const char *path, const char *codes_path);
/* 1 when node i of m is an activation quantizer: its kind (xb_qa_kind), bits and clip (the fixed one,
 * PACT's current alpha, the calibrated value; 0 when not calibrated yet) */
int xb_model_node_quant(const xb_model *m, int i, int *kind, int *bits, float *clip);
/* The activation quantizer whose output reaches node i's input unchanged in value (through max pooling,
 * flatten, dropout, and with averages != 0 also average pooling and gap, whose values leave the grid but
 * keep its precision), or -1. */
int xb_model_feeding_quant(const xb_model *m, int i, int averages);
/* Prints each layer's precision (weights of mapped layers, activation quantizers) to f. */
void xb_quant_print(const xb_model *m, const xb_qw_spec *specs, FILE *f, int json);

/* ---- activation-density mixed precision (src/quant/adprec.c; docs/quantization.md) -----------------
 * Vasquez et al. 2021 (arXiv 2101.04354; methods.md item 1).  Every relu followed by an activation
 * quantizer is tracked: its activation density AD (the fraction of non-zero outputs over an epoch's
 * training forwards); when it has settled (|AD(e) - AD(e-1)| < tol for `window` epochs in a row) its
 * bits become max(min_bits, ceil(AD x bits)): the quantizer after the relu and the weights (uniform or
 * dorefa, at least 2 bits) of the conv/linear layer that produced it.  Start from 16 bits. */
typedef struct xb_ad_opts {
    double tol;
    int window, min_bits;
    int max_cuts;             /* pruning: channel cuts per layer at most (0: one at every plateau) */
    int from_start;           /* 1: bits = ceil(AD x the starting bits) at each plateau; 0: x the current bits */
} xb_ad_opts;
xb_ad_opts xb_ad_opts_default(void);      /* tol 0.01, window 2, min_bits 2, max_cuts 0 */
typedef struct xb_ad xb_ad;
/* q: the model's weight-quantizing operator (may be NULL: activations only) */
xb_status xb_ad_init(xb_model *m, xb_qop *q, const xb_ad_opts *o, xb_ad **out);
void xb_ad_free(xb_ad *a);
/* completed epochs it has seen */
int xb_ad_epochs(const xb_ad *a);
/* bit reductions it has made (this process) */
int xb_ad_changes(const xb_ad *a);
/* after every training forward (the trainer's after_backward hook): the tracked relus' non-zeros */
void xb_ad_count(xb_ad *a, xb_model *m);
/* at an epoch's end: its AD per relu, the plateau checks and the bit changes (*changed: how many) */
xb_status xb_ad_epoch_end(xb_ad *a, xb_model *m, int *changed);
/* the state (history, bits, the open epoch's counts) to and from a JSON file, for --resume */
xb_status xb_ad_save(const xb_ad *a, const xb_model *m, const char *path);
xb_status xb_ad_load(xb_ad *a, xb_model *m, const char *path);
/* Activation-density pruning (Foldy-Porto et al. 2020, arXiv 2002.02949): for every relu whose AD settled at
 * the last epoch's end, the convolution that produced it keeps ceil(AD x channels) output channels, the
 * strongest by L1 norm, where channel surgery can cut them alone (not a residual block's outer channels).
 * keep / n_keep: one entry per mapped layer (NULL: unchanged; malloc'd), for xb_model_prune; *any = 0:
 * nothing to cut.  text: the model's current config text. */
xb_status xb_ad_prune_plan(xb_ad *a, const xb_model *m, const char *text, int **keep, int *n_keep, int *any);
/* after surgery: the new model's weight-quantizing operator */
void xb_ad_rebind(xb_ad *a, xb_qop *q);
/* per relu its AD per epoch and bits; MACs weighted by weight x input bits against 16 x 16; the training
 * compute so far (the same summed over the completed epochs) against a 16-bit run's */
void xb_ad_print(const xb_ad *a, const xb_model *m, FILE *f, int json);

#ifdef __cplusplus
}
#endif
#endif /* XB_QUANT_H_PUBLIC */
