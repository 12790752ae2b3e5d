/* tim.c -- a count-based ternary in-memory array (TiM-DNN, Jain et al., TVLSI 2020; methods.md item 11) as the
 * model's mapped-matmul operator: the accuracy of a ternary network on it, and its energy and throughput per
 * access, from one run.
 *
 * A layer whose weights are ternary ({-a_j, 0, b_j} per output j) and whose inputs are ternary ({-s, 0, s} in each
 * call) runs on the arrays; any other conv/linear layer, and a grouped convolution, stays digital (float).  Per vector, each block of L =
 * rows_per_access rows is one access: every column counts the cells whose product is +1 and those whose product is
 * -1, each count read by an ADC of adc_bits bits that saturates at 2^bits - 1; with symmetric weights (a = b)
 * one access gives n (products +1) and k (products -1) and the output adds a (n - k); with asymmetric weights the
 * two weight signs are read in two accesses and the output adds b (n+ - k+) - a (n- - k-).  Options [R]: a cell's
 * unit current varies (a normal factor 1 + cell_sigma z per cell, drawn once per seed), and the bit line's
 * response bends, count c read as c (1 - count_nonlinearity c / (2 L)), before the ADC rounds.  The layer's
 * output is s times the sum over blocks.  include/xb_energy.h; docs/energy.md. */
#include "energy/opwrap.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int state;          /* 0: not seen yet, 1: on the arrays, 2: digital (weights, or first inputs, not ternary) */
    int inputs_real;    /* digital because its first inputs were not ternary (e.g. the image) */
    int rows, k;        /* the weight matrix (one group) */
    int asym;           /* some output has a != b */
    float *wp, *wn;     /* (rows, k) cells of weight sign +1 / -1, times their unit-current factor */
    float *a, *b;       /* per output: |negative value|, positive value */
    const float *wsrc;  /* the weights the cells were made from */
    double vectors, accesses, conversions, saturated, macs, cells;
} tim_layer_;

struct xb_tim_probe {
    en_opwrap w;        /* the model, its mapped layers' names, the operator this one replaced */
    xb_energy_cfg cfg;
    uint64_t seed;
    tim_layer_ *l;
};

/* weights (rows, k) ternary per output row: values in {-a, 0, b}; fills a, b (0 where a sign is absent) */
static int ternary_(const float *w, int rows, int k, float *a, float *b, int *asym) {
    *asym = 0;
    for (int j = 0; j < rows; j++) {
        float pa = 0, pb = 0;
        for (int i = 0; i < k; i++) {
            const float v = w[(size_t)j * k + i];
            if (v > 0) {
                if (pb == 0) pb = v;
                else if (v != pb) return 0;
            } else if (v < 0) {
                if (pa == 0) pa = -v;
                else if (-v != pa) return 0;
            } else if (v != 0) {
                return 0; /* NaN */
            }
        }
        a[j] = pa;
        b[j] = pb;
        if (pa > 0 && pb > 0 && pa != pb) *asym = 1;
    }
    return 1;
}

static xb_status build_(xb_tim_probe *p, tim_layer_ *L, const xb_mm_call *c) {
    L->rows = c->rows_out;
    L->k = c->k;
    L->wsrc = c->w;
    L->a = xb_malloc((size_t)c->rows_out * sizeof(float));
    L->b = xb_malloc((size_t)c->rows_out * sizeof(float));
    if (!ternary_(c->w, c->rows_out, c->k, L->a, L->b, &L->asym)) {
        L->state = 2;
        return XB_OK;
    }
    const size_t nw = (size_t)c->rows_out * c->k;
    L->wp = xb_calloc(nw * sizeof(float));
    L->wn = xb_calloc(nw * sizeof(float));
    xb_rng r;
    char stream[64];
    snprintf(stream, sizeof stream, "tim-cells-%d", c->layer);
    xb_rng_seed(&r, p->seed, stream);
    const double sg = p->cfg.tim_cell_sigma;
    for (size_t q = 0; q < nw; q++) {
        double u = 1;
        if (sg > 0) {
            u = 1 + sg * xb_rng_normal(&r);
            if (u < 0) u = 0;
        }
        if (c->w[q] > 0) L->wp[q] = (float)u;
        else if (c->w[q] < 0) L->wn[q] = (float)u;
    }
    L->state = 1;
    return XB_OK;
}

/* the ADC's reading of a (possibly fractional) count: the bit line's bend, rounding, saturation */
static inline float adc_(float cnt, float beta, int L, float top, double *sat) {
    float v = beta > 0 ? cnt * (1 - beta * cnt / (2.0f * (float)L)) : cnt;
    float q = rintf(v);
    if (q > top) { *sat += 1; q = top; }
    return q < 0 ? 0 : q;
}

static xb_status tim_forward_(void *ctx, const xb_mm_call *c, const float *x, float *y) {
    xb_tim_probe *p = ctx;
    if (c->layer < 0 || c->layer >= p->w.n_mapped || c->ncols <= 0) {
        xb_mm_float_forward(c, x, y);
        return XB_OK;
    }
    tim_layer_ *L = &p->l[c->layer];
    if (L->state == 0) {
        xb_status st = build_(p, L, c);
        if (st) return st;
    } else if (L->state == 1 && (L->wsrc != c->w || L->rows != c->rows_out || L->k != c->k)) {
        return xb_errorf(XB_ERR_STATE, "TiM arrays of layer %s: the weights changed since they were written. HINT: "
                         "attach a new probe after changing the weights", p->w.names[c->layer]);
    }
    if (L->state == 2) {
        xb_mm_float_forward(c, x, y);
        return XB_OK;
    }
    const int k = c->k, rows = c->rows_out, ncols = c->ncols;
    /* the inputs: ternary, one magnitude s per call; a layer whose first inputs are not (the image) stays digital */
    float s = 0, s2 = 0;
    for (int64_t q = 0; q < (int64_t)k * ncols && !s2; q++) {
        const float v = fabsf(x[q]);
        if (v == 0 || v == s) continue;
        if (s == 0) s = v;
        else s2 = v;
    }
    if (s2 != 0 && L->vectors == 0) {
        L->state = 2;
        L->inputs_real = 1;
        xb_mm_float_forward(c, x, y);
        return XB_OK;
    }
    if (s2 != 0)
        return xb_errorf(XB_ERR_ARG, "TiM layer %s: its inputs are not ternary (|x| takes %g and %g), though they were "
                         "before. HINT: the layer's inputs must come from a ternary activation quantizer (xbar train "
                         "--act ternary)", p->w.names[c->layer], (double)s, (double)s2);
    const xb_energy_cfg *e = &p->cfg;
    const int Lr = e->tim_rows_per_access, nb = (k + Lr - 1) / Lr;
    const float top = (float)((1L << e->tim_adc_bits) - 1), beta = (float)e->tim_count_nonlinearity;
    float *xp = xb_calloc((size_t)k * ncols * sizeof(float)), *xn = xb_calloc((size_t)k * ncols * sizeof(float));
    int neg = 0;
    for (int64_t q = 0; q < (int64_t)k * ncols; q++) {
        xp[q] = x[q] > 0;
        xn[q] = x[q] < 0;
        neg |= x[q] < 0;
    }
    /* per block the four products: P+ = Wp Xp, P- = Wp Xn, N+ = Wn Xp, N- = Wn Xn */
    const size_t ny = (size_t)rows * ncols;
    float *pp = xb_malloc(ny * sizeof(float)), *pn = xb_malloc(ny * sizeof(float));
    float *np_ = xb_malloc(ny * sizeof(float)), *nn = xb_malloc(ny * sizeof(float));
    memset(y, 0, ny * sizeof(float));
    double sat = 0;
    for (int r = 0; r < nb; r++) {
        const int i0 = r * Lr, m = k - i0 < Lr ? k - i0 : Lr;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, ncols, m, 1.0f, L->wp + i0, k, xp + (size_t)i0 * ncols,
                    ncols, 0.0f, pp, ncols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, ncols, m, 1.0f, L->wn + i0, k, xp + (size_t)i0 * ncols,
                    ncols, 0.0f, np_, ncols);
        if (neg) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, ncols, m, 1.0f, L->wp + i0, k,
                        xn + (size_t)i0 * ncols, ncols, 0.0f, pn, ncols);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, ncols, m, 1.0f, L->wn + i0, k,
                        xn + (size_t)i0 * ncols, ncols, 0.0f, nn, ncols);
        }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(+ : sat)
#endif
        for (int j = 0; j < rows; j++) {
            const float a = L->a[j], b = L->b[j];
            for (int q = 0; q < ncols; q++) {
                const size_t o = (size_t)j * ncols + q;
                const float c_pp = pp[o], c_np = np_[o], c_pn = neg ? pn[o] : 0, c_nn = neg ? nn[o] : 0;
                if (!L->asym) { /* one access: n = products +1, k = products -1, both times a (= b) */
                    const float w = a > 0 ? a : b;
                    y[o] += w * (adc_(c_pp + c_nn, beta, Lr, top, &sat) - adc_(c_pn + c_np, beta, Lr, top, &sat));
                } else {        /* two accesses, one per weight sign */
                    y[o] += b * (adc_(c_pp, beta, Lr, top, &sat) - adc_(c_pn, beta, Lr, top, &sat)) -
                            a * (adc_(c_np, beta, Lr, top, &sat) - adc_(c_nn, beta, Lr, top, &sat));
                }
            }
        }
    }
    for (size_t o = 0; o < ny; o++) y[o] *= s;
    const double ct = ceil((double)rows / e->tim_tile_cols), acc_per = L->asym ? 2 : 1;
    L->vectors += ncols;
    L->accesses += (double)ncols * nb * ct * acc_per;
    L->conversions += (double)ncols * nb * rows * 2 * acc_per;
    L->cells += (double)ncols * k * rows * acc_per; /* cells read: every row of every block, the columns used */
    L->saturated += sat;
    L->macs += (double)ncols * k * rows;
    xb_free(xp); xb_free(xn); xb_free(pp); xb_free(pn); xb_free(np_); xb_free(nn);
    return XB_OK;
}

xb_status xb_tim_probe_attach(xb_model *m, const xb_energy_cfg *cfg, uint64_t seed, xb_tim_probe **out) {
    XB_ASSERT(m && cfg && out);
    *out = NULL;
    xb_tim_probe *p = xb_calloc(sizeof *p);
    p->cfg = *cfg;
    p->seed = seed;
    p->l = xb_calloc((size_t)(xb_model_n_mapped(m) > 0 ? xb_model_n_mapped(m) : 1) * sizeof(tim_layer_));
    for (int n = 0; n < xb_model_n_nodes(m); n++) {
        const int li = xb_model_node_mapped(m, n);
        if (li >= 0 && xb_model_node_groups(m, n) > 1) p->l[li].state = 2; /* grouped convolutions stay digital [R] */
    }
    en_opwrap_install(&p->w, m, p, tim_forward_);
    *out = p;
    return XB_OK;
}

void xb_tim_probe_detach(xb_tim_probe *p) {
    if (!p) return;
    for (int i = 0; i < p->w.n_mapped; i++) {
        xb_free(p->l[i].wp); xb_free(p->l[i].wn); xb_free(p->l[i].a); xb_free(p->l[i].b);
    }
    xb_free(p->l);
    en_opwrap_remove(&p->w);
    xb_free(p);
}

/* one count's conversion at adc_bits: adc_energy_j at 5 bits, scaled per bit as [energy] scales its ADC */
static double tim_adc_j_(const xb_energy_cfg *e) {
    return e->tim_adc_energy_j * pow(e->adc_energy_per_bit, e->tim_adc_bits - 5);
}

xb_status xb_tim_report_make(const xb_tim_probe *p, int64_t images, xb_tim_report *r) {
    XB_ASSERT(p && r);
    memset(r, 0, sizeof *r);
    if (images <= 0)
        return xb_errorf(XB_ERR_ARG, "the TiM model counts from images: images = %lld. HINT: run forwards of at least "
                         "one image with the probe attached", (long long)images);
    const xb_energy_cfg *e = &p->cfg;
    const double s = 1.0 / (double)images;
    r->images = images;
    r->layers = xb_calloc((size_t)(p->w.n_mapped > 0 ? p->w.n_mapped : 1) * sizeof(xb_tim_layer));
    for (int n = 0; n < xb_model_n_nodes(p->w.m); n++) {
        const int li = xb_model_node_mapped(p->w.m, n);
        if (li < 0) continue;
        const tim_layer_ *L = &p->l[li];
        xb_tim_layer *o = &r->layers[r->n_layers++];
        snprintf(o->name, sizeof o->name, "%s", p->w.names[li]);
        o->on_arrays = L->state == 1;
        o->inputs_real = L->inputs_real;
        o->asymmetric = L->asym;
        if (o->on_arrays) {
            o->vectors = L->vectors * s;
            o->accesses = L->accesses * s;
            o->conversions = L->conversions * s;
            o->saturation_rate = L->conversions > 0 ? L->saturated / L->conversions : 0;
            o->macs = L->macs * s;
            /* the cells each access reads, and one conversion per count */
            o->energy_j = L->cells * s * e->tim_cell_energy_j + o->conversions * tim_adc_j_(e);
            o->latency_s = o->accesses * e->tim_access_time_s / e->tim_tiles;
        } else {
            o->macs = (double)xb_model_node_macs(p->w.m, n);
            o->energy_j = o->macs * e->digital_mac_energy_j;
            o->latency_s = o->macs / e->digital_ops_per_s;
        }
        r->energy_j += o->energy_j;
        r->latency_s += o->latency_s;
        r->macs += o->macs;
        if (o->on_arrays) {
            r->macs_arrays += o->macs;
            r->energy_arrays_j += o->energy_j;
            r->latency_arrays_s += o->latency_s;
            r->accesses += o->accesses;
        }
    }
    r->tops = r->latency_s > 0 ? 2 * r->macs / r->latency_s / 1e12 : 0;
    r->tops_per_w = r->energy_j > 0 ? 2 * r->macs / r->energy_j / 1e12 : 0;
    r->tops_arrays = r->latency_arrays_s > 0 ? 2 * r->macs_arrays / r->latency_arrays_s / 1e12 : 0;
    r->tops_per_w_arrays = r->energy_arrays_j > 0 ? 2 * r->macs_arrays / r->energy_arrays_j / 1e12 : 0;
    r->peak_tops = 2.0 * e->tim_rows_per_access * e->tim_tile_cols * e->tim_tiles / e->tim_access_time_s / 1e12;
    r->peak_power_w = e->tim_tiles *
                      ((double)e->tim_rows_per_access * e->tim_tile_cols * e->tim_cell_energy_j +
                       2.0 * e->tim_tile_cols * tim_adc_j_(e)) / e->tim_access_time_s;
    r->area_m2 = e->tim_tiles * e->tim_tile_area_m2;
    return XB_OK;
}

void xb_tim_report_free(xb_tim_report *r) {
    if (!r) return;
    xb_free(r->layers);
    r->layers = NULL;
    r->n_layers = 0;
}

void xb_tim_report_print(const xb_tim_report *r, const xb_energy_cfg *e, double accuracy, FILE *f, int json) {
    if (json) {
        fprintf(f, "{\"accelerator\":\"TiM ternary arrays\",\"rows_per_access\":%d,\"adc_bits\":%d,\"tiles\":%d,"
                   "\"images\":%lld,\"accuracy\":%.6f,\"total_energy_j\":%.9g,\"latency_s\":%.9g,\"macs\":%.9g,"
                   "\"tops\":%.9g,\"tops_per_w\":%.9g,\"arrays\":{\"macs\":%.9g,\"energy_j\":%.9g,\"latency_s\":%.9g,"
                   "\"accesses\":%.9g,\"tops\":%.9g,\"tops_per_w\":%.9g},\"peak_tops\":%.9g,\"peak_power_w\":%.9g,"
                   "\"area_m2\":%.9g,\"layers\":[",
                e->tim_rows_per_access, e->tim_adc_bits, e->tim_tiles, (long long)r->images, accuracy, r->energy_j,
                r->latency_s, r->macs, r->tops, r->tops_per_w, r->macs_arrays, r->energy_arrays_j, r->latency_arrays_s,
                r->accesses, r->tops_arrays, r->tops_per_w_arrays, r->peak_tops, r->peak_power_w, r->area_m2);
        for (int i = 0; i < r->n_layers; i++) {
            const xb_tim_layer *L = &r->layers[i];
            fprintf(f, "%s{\"name\":\"%s\",\"on_arrays\":%s,\"inputs_not_ternary\":%s,\"asymmetric\":%s,\"vectors\":%.9g,\"accesses\":%.9g,"
                       "\"conversions\":%.9g,\"saturation_rate\":%.9g,\"macs\":%.9g,\"energy_j\":%.9g,\"latency_s\":%.9g}",
                    i ? "," : "", L->name, L->on_arrays ? "true" : "false", L->inputs_real ? "true" : "false",
                    L->asymmetric ? "true" : "false", L->vectors,
                    L->accesses, L->conversions, L->saturation_rate, L->macs, L->energy_j, L->latency_s);
        }
        fprintf(f, "]}");
        return;
    }
    fprintf(f, "TiM ternary arrays: L = %d rows per access, %d-bit ADCs, %d tiles of %d columns; %lld images, accuracy "
               "%.2f%%\n", e->tim_rows_per_access, e->tim_adc_bits, e->tim_tiles, e->tim_tile_cols, (long long)r->images,
            100 * accuracy);
    fprintf(f, "%-22s %-8s %12s %11s %11s %11s\n", "layer", "where", "accesses", "saturated", "energy nJ", "latency us");
    for (int i = 0; i < r->n_layers; i++) {
        const xb_tim_layer *L = &r->layers[i];
        fprintf(f, "%-22s %-8s %12.0f %10.3f%% %11.3f %11.4f\n", L->name,
                L->on_arrays ? (L->asymmetric ? "arrays*" : "arrays") : L->inputs_real ? "digital+" : "digital",
                L->accesses, 100 * L->saturation_rate, L->energy_j * 1e9, L->latency_s * 1e6);
    }
    fprintf(f, "total: %.4g uJ, %.4g us per image, %.4g TOPS, %.4g TOPS/W; the arrays alone %.4g TOPS, %.4g TOPS/W; peak "
               "%.4g TOPS at %.4g W, %.4g mm2%s\n",
            r->energy_j * 1e6, r->latency_s * 1e6, r->tops, r->tops_per_w, r->tops_arrays, r->tops_per_w_arrays,
            r->peak_tops, r->peak_power_w, r->area_m2 * 1e6, "\n(* asymmetric weights: two accesses; + ternary weights, "
            "inputs not ternary)");
}
