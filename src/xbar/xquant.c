/* xquant.c -- quantized models on crossbars: each mapped layer's precision from the model's weight
 * quantizers and the activation quantizer that feeds it, in the crossbar's terms (docs/quantization.md).
 * A b-bit uniform weight has codes in [-(2^(b-1) - 1), 2^(b-1) - 1]: a differential pair stores the
 * magnitude in b - 1 bits, the offset scheme the code plus 2^(B-1) in B = b bits.  With one scale per
 * layer the mapper's scale s = max|W| is (2^(b-1) - 1) x the quantizer's, so the crossbar's codes are the
 * trained ones exactly. */
#include "xb_xbar.h"

#include <string.h>

/* the crossbar weight bits that hold a quantizer's codes exactly (0: the config's) */
static int weight_bits_(const xb_qw_spec *s, int differential) {
    switch (s->kind) {
    case XB_QW_UNIFORM: return differential ? s->bits - 1 : s->bits;
    case XB_QW_BINARY: case XB_QW_TERNARY: case XB_QW_TERNARY_SYM: return differential ? 1 : 2;
    case XB_QW_DOREFA: return differential ? s->bits : s->bits + 1; /* odd codes up to 2^b - 1 */
    default: return 0; /* float, or asymmetric ternary (two magnitudes): the config's bits */
    }
}

/* the magnitude bits of the activation quantizer that feeds node i's input on the grid (through max pooling,
 * flatten, dropout), 0 when there is none */
static int input_bits_(const xb_model *m, int i) {
    int kind, bits;
    float clip;
    const int q = xb_model_feeding_quant(m, i, 0);
    if (q < 0 || !xb_model_node_quant(m, q, &kind, &bits, &clip)) return 0;
    return kind == XB_QA_TERNARY ? 1 : kind == XB_QA_SIGNED ? bits - 1 : bits;
}

int xb_hw_quant_precisions(const xb_hw *hw, const xb_model *m, const xb_qw_spec *specs, xb_layer_precision *prec) {
    int any = 0;
    for (int i = 0; i < xb_model_n_nodes(m); i++) {
        const int p = xb_model_node_mapped(m, i);
        if (p < 0) continue;
        prec[p].weight_bits = specs ? weight_bits_(&specs[p], hw->scheme == XB_SCHEME_DIFFERENTIAL) : 0;
        prec[p].input_bits = input_bits_(m, i);
        if (prec[p].weight_bits > 16) prec[p].weight_bits = 16;
        any |= prec[p].weight_bits || prec[p].input_bits;
    }
    return any;
}
