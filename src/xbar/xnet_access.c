/* xnet_access.c -- the crossbar network's small settings and accessors: the weights a layer is programmed
 * from and their hash (the stale-weights check), ranges kept or cleared, the backward's weights, statistics
 * on or off, fixed weight scales, attaching to the model, folding the effective weights into it, and the
 * per-layer statistics.  Split from xnet.c (construction and programming). */
#include "xnet_internal.h"

uint64_t xb_xnet_hash_(const float *w, int64_t n) {
    uint64_t h = 1469598103934665603ull;
    const uint32_t *u = (const uint32_t *)(const void *)w;
    for (int64_t i = 0; i < n; i++) h = (h ^ u[i]) * 1099511628211ull;
    return h;
}

float *xb_xnet_wptr_(const xb_xnet *xn, const xlayer *l) {
    return xb_model_params(xn->m) + xb_model_param(xn->m, l->param)->offset + (size_t)l->group * l->full_ro * l->full_k;
}

const float *xl_wsrc_(const xb_xnet *xn, const xlayer *l) { return l->wsrc ? l->wsrc : xb_xnet_wptr_(xn, l); }

void xb_xnet_keep_ranges(xb_xnet *xn, int on) { xn->keep_ranges = on; }
void xb_xnet_clear_ranges(xb_xnet *xn) {
    for (int i = 0; i < xn->n_xl; i++) {
        xlayer *l = &xn->xl[i];
        if (xn->need_x) l->x_set = 0;
        if (xn->need_fs) l->fs_set = 0;
        l->gain = 1;
        l->st.fallback_input = l->st.fallback_adc = l->st.fallback_gain = 0;
    }
}
void xb_xnet_set_backward(xb_xnet *xn, xb_xnet_backward b) { xn->bwd = b; }
void xb_xnet_set_statistics(xb_xnet *xn, int on) { xn->stats_on = on; }
uint64_t xb_xnet_stale_refusals(const xb_xnet *xn) { return xn->stale; }
int xb_xnet_current(const xb_xnet *xn, uint64_t seed) {
    if (!xn->programmed || xn->seed != seed) return 0;
    for (int i = 0; i < xn->n_xl; i++) {
        const xlayer *l = &xn->xl[i];
        if (!l->digital && xb_xnet_hash_(xb_xnet_wptr_(xn, l), (int64_t)l->full_ro * l->full_k) != l->whash) return 0;
    }
    return 1;
}

xb_status xb_xnet_set_weight_scales(xb_xnet *xn, const double *scales) {
    if (scales && xn->hw.column_scale)
        return xb_errorf(XB_ERR_UNSUPPORTED, "%s: fixed per-layer weight scales with [mapping] scale = column (one "
                         "scale per output). HINT: scale = layer", xn->hw.path[0] ? xn->hw.path : "hw config");
    for (int i = 0; scales && i < xn->n_mapped; i++)
        if (!(scales[i] >= 0) || !isfinite(scales[i]))
            return xb_errorf(XB_ERR_ARG, "weight scale of mapped layer %d is %g. HINT: > 0, or 0 for the config's rule",
                             i, scales[i]);
    xb_free(xn->wscale);
    xn->wscale = NULL;
    if (!scales) return XB_OK;
    xn->wscale = xb_malloc(sizeof(double) * (size_t)(xn->n_mapped + 1));
    memcpy(xn->wscale, scales, sizeof(double) * (size_t)xn->n_mapped);
    return XB_OK;
}

void xb_xnet_attach(xb_xnet *xn) {
    if (xn->folded) xb_xnet_fold(xn, 0);
    xb_xnet_install_op_(xn);
    xn->attached = 1;
}
void xb_xnet_detach(xb_xnet *xn) { xb_model_set_op(xn->m, NULL); xn->attached = 0; }
int xb_xnet_needs_calibration(const xb_xnet *xn) { return xn->need_x || xn->need_fs || xn->need_gain; }
int xb_xnet_foldable(const xb_xnet *xn) { return xn->foldable; }

xb_status xb_xnet_fold(xb_xnet *xn, int on) {
    if (!on) {
        if (!xn->folded) return XB_OK;
        int64_t u = 0;
        for (int i = 0; i < xn->n_xl; i++) {
            const xlayer *l = &xn->xl[i];
            if (l->digital || l->block) continue; /* a layer's blocks: its whole matrix once */
            size_t wk = (size_t)l->full_ro * l->full_k;
            memcpy(xb_xnet_wptr_(xn, l), xn->wsave + u, wk * sizeof(float));
            u += (int64_t)wk;
        }
        xn->folded = 0;
        return XB_OK;
    }
    if (!xn->foldable)
        return xb_errorf(XB_ERR_UNSUPPORTED, "crossbar network: cannot fold into the model's weights, the config has "
                         "a DAC, an ADC or read noise (per-MVM stages). HINT: run it through the hook (xb_xnet_attach)");
    if (!xn->programmed)
        return xb_errorf(XB_ERR_STATE, "crossbar network: folding before programming. HINT: call xb_xnet_program first");
    if (xn->folded) return XB_OK;
    int64_t total = 0;
    for (int i = 0; i < xn->n_xl; i++)
        if (!xn->xl[i].digital && !xn->xl[i].block) total += (int64_t)xn->xl[i].full_ro * xn->xl[i].full_k;
    if (!xn->wsave) xn->wsave = xb_malloc((size_t)(total + 1) * sizeof(float));
    if (xn->attached) xb_xnet_detach(xn);
    int64_t u = 0;
    for (int i = 0; i < xn->n_xl; i++) {
        const xlayer *l = &xn->xl[i];
        if (l->digital || l->block) continue;
        size_t wk = (size_t)l->full_ro * l->full_k;
        float *w = xb_xnet_wptr_(xn, l);
        memcpy(xn->wsave + u, w, wk * sizeof(float));
        xl_layer_weff(xn, i, 0, w);
        u += (int64_t)wk;
    }
    xn->folded = 1;
    return XB_OK;
}

void xb_xnet_reset_stats(xb_xnet *xn) {
    for (int i = 0; i < xn->n_xl; i++) {
        xb_xlayer_stats *s = &xn->xl[i].st;
        s->adc_conversions = s->adc_clipped = s->dac_conversions = s->dac_clipped = s->adc_reruns = 0;
        s->err_sq = s->ref_sq = 0;
        s->forward_s = 0;
    }
}


int xb_xnet_n_layers(const xb_xnet *xn) { return xn->n_mapped; }

void xb_xnet_layer_stats(const xb_xnet *xn, int i, xb_xlayer_stats *out) {
    XB_ASSERT(i >= 0 && i < xn->n_mapped);
    *out = xn->xl[xn->first_xl[i]].st;
    for (int q = xn->first_xl[i] + 1; q < xn->first_xl[i + 1]; q++) {
        const xb_xlayer_stats *s = &xn->xl[q].st;
        out->tiles += s->tiles; out->arrays += s->arrays; out->cells_used += s->cells_used;
        out->cells_low += s->cells_low;
        out->cells_alloc += s->cells_alloc; out->stuck_gmin += s->stuck_gmin; out->stuck_gmax += s->stuck_gmax;
        out->g_clipped += s->g_clipped; out->adc_conversions += s->adc_conversions;
        out->adc_clipped += s->adc_clipped; out->dac_conversions += s->dac_conversions;
        out->dac_clipped += s->dac_clipped; out->err_sq += s->err_sq; out->ref_sq += s->ref_sq;
        out->adc_reruns += s->adc_reruns;
        out->program_s += s->program_s; out->forward_s += s->forward_s;
        out->fallback_input += s->fallback_input; out->fallback_adc += s->fallback_adc;
        out->fallback_gain += s->fallback_gain;
        if (s->w_scale > out->w_scale) out->w_scale = s->w_scale;
        if (s->input_full_scale > out->input_full_scale) out->input_full_scale = s->input_full_scale;
        if (s->adc_full_scale_a > out->adc_full_scale_a) out->adc_full_scale_a = s->adc_full_scale_a;
    }
}

