/* pe.c -- a zero-skipping digital accelerator (Cnvlutin-like, Albericio et al., ISCA 2016) whose cycles follow the
 * non-zero inputs of each layer: the cost model the sparsity attacks (methods.md item 8) are measured on.
 *
 * The array: `units` units, each multiplying one input neuron per lane by `filters_per_unit` filters per cycle
 * in each of its `lanes` lanes; every unit sees the same inputs, so a pass serves units x filters_per_unit
 * outputs.  Input channel c of a window feeds lane c mod lanes (Cnvlutin's slicing of the depth).  Skipping
 * zeros, a window takes the most non-zero inputs any lane holds (at least one cycle); without skipping, the most
 * inputs any lane holds.  A layer: cycles = ceil(outputs / (units x filters_per_unit)) x sum over windows.
 * Energy: the MACs performed x mac_energy_j, the buffer bits moved (non-zero inputs with their offsets when
 * skipping, every input otherwise, and the outputs) x [energy] buffer_energy_j_per_bit, and static_power_w over
 * the cycles.  The counting runs as the model's mapped-matmul operator around the float product
 * (include/xb_energy.h; docs/energy.md). */
#include "energy/opwrap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double vectors, inputs, nonzero, cycles, cycles_dense, macs, macs_dense, outputs;
    int k, rows_out;
} pe_acc_;

struct xb_pe_probe {
    en_opwrap w;       /* the model, its mapped layers' names, the operator this one replaced */
    xb_energy_cfg cfg;
    int *cin_g;        /* per mapped layer: input channels per group (the lanes' unit); k for linear layers */
    pe_acc_ *acc;
};

static xb_status pe_forward_(void *ctx, const xb_mm_call *c, const float *x, float *y) {
    xb_pe_probe *p = ctx;
    xb_mm_float_forward(c, x, y);
    if (c->layer < 0 || c->layer >= p->w.n_mapped || c->ncols <= 0) return XB_OK;
    const xb_energy_cfg *e = &p->cfg;
    const int lanes = e->pe_lanes, ncols = c->ncols, k = c->k;
    const int cin = p->cin_g[c->layer] > 0 ? p->cin_g[c->layer] : k;
    const int khw = k % cin == 0 ? k / cin : 1;
    const double passes = ceil((double)c->rows_out / ((double)e->pe_units * e->pe_filters_per_unit));
    /* the most inputs one lane holds per window: channels ceil(cin / lanes) of khw rows each */
    const double dense_per = (double)((cin + lanes - 1) / lanes) * khw;
    double nz = 0, cyc = 0;
    const int B = 256; /* columns per block: lanes x B counters per thread */
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : nz, cyc)
#endif
    for (int c0 = 0; c0 < ncols; c0 += B) {
        const int nb = ncols - c0 < B ? ncols - c0 : B;
        int *cnt = xb_calloc((size_t)lanes * B * sizeof(int));
        for (int i = 0; i < k; i++) {
            int *cl = cnt + (size_t)((i / khw) % lanes) * B;
            const float *xr = x + (size_t)i * ncols + c0;
            for (int q = 0; q < nb; q++) cl[q] += xr[q] != 0.0f;
        }
        for (int q = 0; q < nb; q++) {
            int mx = 0, sum = 0;
            for (int l = 0; l < lanes; l++) {
                sum += cnt[(size_t)l * B + q];
                mx = cnt[(size_t)l * B + q] > mx ? cnt[(size_t)l * B + q] : mx;
            }
            nz += sum;
            cyc += mx > 0 ? mx : 1;
        }
        xb_free(cnt);
    }
    pe_acc_ *a = &p->acc[c->layer];
    a->k = k;
    a->rows_out = c->rows_out;
    a->vectors += ncols;
    a->inputs += (double)k * ncols;
    a->nonzero += nz;
    a->cycles += passes * cyc;
    a->cycles_dense += passes * dense_per * ncols;
    a->macs += nz * c->rows_out;
    a->macs_dense += (double)k * ncols * c->rows_out;
    a->outputs += (double)c->rows_out * ncols;
    return XB_OK;
}

xb_status xb_pe_probe_attach(xb_model *m, const xb_energy_cfg *cfg, xb_pe_probe **out) {
    XB_ASSERT(m && cfg && out);
    *out = NULL;
    xb_pe_probe *p = xb_calloc(sizeof *p);
    p->cfg = *cfg;
    const int nm = xb_model_n_mapped(m) > 0 ? xb_model_n_mapped(m) : 1;
    p->cin_g = xb_calloc((size_t)nm * sizeof(int));
    p->acc = xb_calloc((size_t)nm * sizeof(pe_acc_));
    for (int n = 0; n < xb_model_n_nodes(m); n++) {
        const int li = xb_model_node_mapped(m, n);
        if (li < 0) continue;
        int in0, in1, c, h, w;
        xb_model_node_inputs(m, n, &in0, &in1);
        if (in0 >= 0) xb_model_node_shape(m, in0, &c, &h, &w);
        else xb_model_input_shape(m, &c, &h, &w);
        const int g = xb_model_node_groups(m, n);
        /* a linear layer's features are each a channel of one pixel (k = c h w) */
        p->cin_g[li] = strcmp(xb_model_node_type(m, n), "conv2d") ? c * h * w : c / (g > 0 ? g : 1);
    }
    en_opwrap_install(&p->w, m, p, pe_forward_);
    *out = p;
    return XB_OK;
}

void xb_pe_probe_detach(xb_pe_probe *p) {
    if (!p) return;
    en_opwrap_remove(&p->w);
    xb_free(p->cin_g);
    xb_free(p->acc);
    xb_free(p);
}

xb_status xb_pe_report_make(const xb_pe_probe *p, int64_t images, xb_pe_report *r) {
    XB_ASSERT(p && r);
    memset(r, 0, sizeof *r);
    if (images <= 0)
        return xb_errorf(XB_ERR_ARG, "the PE model counts from images: images = %lld. HINT: run forwards of at least one "
                         "image with the probe attached", (long long)images);
    const xb_energy_cfg *e = &p->cfg;
    r->images = images;
    r->layers = xb_calloc((size_t)(p->w.n_mapped > 0 ? p->w.n_mapped : 1) * sizeof(xb_pe_layer));
    const double s = 1.0 / (double)images, tc = 1.0 / e->pe_clock_hz, eb = e->buffer_energy_j_per_bit;
    double nz = 0, in = 0;
    for (int i = 0; i < p->w.n_mapped; i++) {
        const pe_acc_ *a = &p->acc[i];
        xb_pe_layer *L = &r->layers[r->n_layers++];
        snprintf(L->name, sizeof L->name, "%s", p->w.names[i]);
        L->vectors = a->vectors * s;
        L->inputs = a->inputs * s;
        L->nonzero = a->nonzero * s;
        L->density = a->inputs > 0 ? a->nonzero / a->inputs : 0;
        const double cyc = (e->pe_skip_zeros ? a->cycles : a->cycles_dense) * s;
        const double macs = (e->pe_skip_zeros ? a->macs : a->macs_dense) * s;
        const double bits = (e->pe_skip_zeros ? a->nonzero * (e->word_bits + e->pe_offset_bits) : a->inputs * e->word_bits) * s +
                            a->outputs * s * e->word_bits;
        L->cycles = cyc;
        L->cycles_dense = a->cycles_dense * s;
        L->macs = macs;
        L->macs_dense = a->macs_dense * s;
        L->mac_energy_j = macs * e->pe_mac_energy_j;
        L->buffer_energy_j = bits * eb;
        L->static_energy_j = cyc * tc * e->pe_static_power_w;
        L->energy_j = L->mac_energy_j + L->buffer_energy_j + L->static_energy_j;
        L->energy_dense_j = L->macs_dense * e->pe_mac_energy_j +
                            (a->inputs + a->outputs) * s * e->word_bits * eb + L->cycles_dense * tc * e->pe_static_power_w;
        L->latency_s = cyc * tc;
        L->latency_dense_s = L->cycles_dense * tc;
        r->energy_j += L->energy_j;
        r->energy_dense_j += L->energy_dense_j;
        r->latency_s += L->latency_s;
        r->latency_dense_s += L->latency_dense_s;
        r->cycles += L->cycles;
        r->macs += L->macs;
        r->macs_dense += L->macs_dense;
        nz += a->nonzero;
        in += a->inputs;
    }
    r->density = in > 0 ? nz / in : 0;
    r->edp_js = r->energy_j * r->latency_s;
    r->edp_dense_js = r->energy_dense_j * r->latency_dense_s;
    return XB_OK;
}

void xb_pe_report_free(xb_pe_report *r) {
    if (!r) return;
    xb_free(r->layers);
    r->layers = NULL;
    r->n_layers = 0;
}

void xb_pe_report_print(const xb_pe_report *r, const xb_energy_cfg *e, FILE *f, int json) {
    if (json) {
        fprintf(f, "{\"accelerator\":\"zero-skip PE array\",\"units\":%d,\"filters_per_unit\":%d,\"lanes\":%d,"
                   "\"clock_hz\":%.9g,\"skip_zeros\":%s,\"images\":%lld,\"density\":%.9g,\"total_energy_j\":%.9g,"
                   "\"latency_s\":%.9g,\"cycles\":%.9g,\"macs\":%.9g,\"edp_js\":%.9g,\"dense\":{\"energy_j\":%.9g,"
                   "\"latency_s\":%.9g,\"macs\":%.9g,\"edp_js\":%.9g},\"layers\":[",
                e->pe_units, e->pe_filters_per_unit, e->pe_lanes, e->pe_clock_hz, e->pe_skip_zeros ? "true" : "false",
                (long long)r->images, r->density, r->energy_j, r->latency_s, r->cycles, r->macs, r->edp_js,
                r->energy_dense_j, r->latency_dense_s, r->macs_dense, r->edp_dense_js);
        for (int i = 0; i < r->n_layers; i++) {
            const xb_pe_layer *L = &r->layers[i];
            fprintf(f, "%s{\"name\":\"%s\",\"vectors\":%.9g,\"inputs\":%.9g,\"nonzero\":%.9g,\"density\":%.9g,"
                       "\"cycles\":%.9g,\"cycles_dense\":%.9g,\"macs\":%.9g,\"energy_j\":%.9g,\"mac_energy_j\":%.9g,"
                       "\"buffer_energy_j\":%.9g,\"static_energy_j\":%.9g,\"energy_dense_j\":%.9g,\"latency_s\":%.9g,"
                       "\"latency_dense_s\":%.9g}",
                    i ? "," : "", L->name, L->vectors, L->inputs, L->nonzero, L->density, L->cycles, L->cycles_dense,
                    L->macs, L->energy_j, L->mac_energy_j, L->buffer_energy_j, L->static_energy_j, L->energy_dense_j,
                    L->latency_s, L->latency_dense_s);
        }
        fprintf(f, "]}");
        return;
    }
    fprintf(f, "zero-skip PE array (%d units x %d filters x %d lanes at %.4g GHz), per image over %lld images%s\n",
            e->pe_units, e->pe_filters_per_unit, e->pe_lanes, e->pe_clock_hz / 1e9, (long long)r->images,
            e->pe_skip_zeros ? "" : " (zeros not skipped)");
    fprintf(f, "%-22s %8s %12s %12s %11s %11s\n", "layer", "density", "cycles", "dense cycles", "energy nJ", "latency us");
    for (int i = 0; i < r->n_layers; i++) {
        const xb_pe_layer *L = &r->layers[i];
        fprintf(f, "%-22s %7.2f%% %12.0f %12.0f %11.3f %11.3f\n", L->name, 100 * L->density, L->cycles, L->cycles_dense,
                L->energy_j * 1e9, L->latency_s * 1e6);
    }
    fprintf(f, "total: input density %.2f%%, %.4g uJ, %.4g us, EDP %.4g J s; without skipping %.4g uJ, %.4g us, EDP %.4g J s "
               "(latency x%.3f, EDP x%.3f)\n",
            100 * r->density, r->energy_j * 1e6, r->latency_s * 1e6, r->edp_js, r->energy_dense_j * 1e6,
            r->latency_dense_s * 1e6, r->edp_dense_js, r->latency_s > 0 ? r->latency_dense_s / r->latency_s : 0,
            r->edp_js > 0 ? r->edp_dense_js / r->edp_js : 0);
}
