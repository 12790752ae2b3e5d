/* energy.c -- the costs: a network's counts (src/xbar/xenergy.c) times the per-operation figures of the
 * config's [energy] and [arch] sections, and the layers that stay digital, into per-layer and total energy,
 * latency and area (include/xb_energy.h; docs/energy.md has every equation). */
#include "xb_energy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double xb_energy_adc_j(const xb_energy_cfg *e, int bits) {
    return bits > 0 ? e->adc_energy_j * pow(e->adc_energy_per_bit, bits - e->adc_ref_bits) : 0;
}
double xb_energy_adc_s(const xb_energy_cfg *e, int bits) {
    return bits > 0 ? e->adc_time_s * (double)bits / e->adc_ref_bits : 0; /* a SAR ADC: one cycle per bit */
}
double xb_energy_adc_m2(const xb_energy_cfg *e, int bits) {
    return bits > 0 ? e->adc_area_m2 * pow(e->adc_area_per_bit, bits - e->adc_ref_bits) : 0;
}
static double dac_factor_(const xb_energy_cfg *e, int bits) { return bits > 0 ? pow(e->dac_per_bit, bits - 1) : 0; }

static void warn_(xb_energy_report *r, const char *msg) {
    for (int i = 0; i < r->n_warnings; i++)
        if (!strcmp(r->warnings[i], msg)) return;
    if (r->n_warnings < 4) snprintf(r->warnings[r->n_warnings++], sizeof r->warnings[0], "%s", msg);
}

/* Element operations of a node that is not a conv/linear, per image. */
static double element_ops_(const xb_model *m, int n) {
    const char *t = xb_model_node_type(m, n);
    int c, h, w, in0, in1;
    xb_model_node_shape(m, n, &c, &h, &w);
    const double out = (double)c * h * w;
    xb_model_node_inputs(m, n, &in0, &in1);
    double in = out;
    if (in0 >= 0) {
        xb_model_node_shape(m, in0, &c, &h, &w);
        in = (double)c * h * w;
    }
    if (!strcmp(t, "batchnorm")) return 2 * out;                              /* scale and shift */
    if (!strcmp(t, "maxpool") || !strcmp(t, "avgpool") || !strcmp(t, "gap")) return in; /* every input once */
    if (!strcmp(t, "relu") || !strcmp(t, "add") || !strcmp(t, "quant") || !strcmp(t, "shortcut")) return out;
    return 0;                                                                  /* flatten, dropout: free */
}

static void sum_components_(xb_energy_layer *L) {
    L->energy_j = L->array_energy_j + L->dac_energy_j + L->adc_energy_j + L->sense_energy_j + L->shift_add_energy_j +
                  L->accumulate_energy_j + L->buffer_energy_j + L->digital_energy_j;
    L->area_m2 = L->array_area_m2 + L->adc_area_m2 + L->dac_area_m2 + L->periphery_area_m2;
}

/* A mapped layer's costs from its per-image counts. */
static void cost_mapped_(const xb_hw *hw, const xb_energy_counts *k, xb_energy_layer *L, xb_energy_report *r) {
    const xb_energy_cfg *e = &hw->energy;
    snprintf(L->name, sizeof L->name, "%s", k->name);
    L->counts = *k;
    L->macs = k->macs;
    const double buf = k->buffer_bits * e->buffer_energy_j_per_bit;
    if (!k->mapped) {
        snprintf(L->kind, sizeof L->kind, "digital");
        L->digital_energy_j = k->macs * e->digital_mac_energy_j;
        L->latency_s = k->macs / e->digital_ops_per_s;
        sum_components_(L);
        return;
    }
    snprintf(L->kind, sizeof L->kind, "crossbar");
    L->array_energy_j = k->array_energy_j;
    L->dac_energy_j = k->dac_drives * e->dac_energy_j * dac_factor_(e, k->dac_bits);
    L->adc_energy_j = k->adc_conversions * xb_energy_adc_j(e, k->adc_bits);
    L->sense_energy_j = k->columns_sensed * e->sense_energy_j;
    L->shift_add_energy_j = k->shift_adds * e->shift_add_energy_j;
    L->accumulate_energy_j = k->accumulations * e->accumulate_energy_j;
    L->buffer_energy_j = buf;
    /* reads overlap with the conversions of the previous read (sample and hold): a read takes the longer of the
     * pulse and its ADCs' turn through the columns they share */
    const int share = e->adc_share_cols < k->cols ? e->adc_share_cols : k->cols;
    const double t_conv = share * xb_energy_adc_s(e, k->adc_bits);
    L->latency_s = k->latency_reads * (t_conv > e->read_time_s ? t_conv : e->read_time_s);
    const double f2 = e->feature_size_m * e->feature_size_m;
    L->array_area_m2 = (double)k->arrays * k->rows * k->cols * e->cell_area_f2 * f2;
    L->adc_area_m2 = (double)k->adcs * xb_energy_adc_m2(e, k->adc_bits);
    L->dac_area_m2 = (double)k->drivers * e->dac_area_m2 * dac_factor_(e, k->dac_bits);
    L->periphery_area_m2 = (double)k->samplers * e->sense_area_m2 + (double)k->arrays * e->shift_add_area_m2;
    sum_components_(L);
    if (k->adc_bits == 0) warn_(r, "the config has no ADC ([output] adc_bits = 0): no conversion energy, area or time counted");
    if (k->dac_bits == 0) warn_(r, "the config has no DAC ([input] dac_bits = 0): analog inputs, no DAC energy or area counted");
}

xb_status xb_energy_report_make(const xb_xnet *xn, const xb_model *m, int64_t images, xb_energy_report *r) {
    XB_ASSERT(xn && m && r && images >= 0);
    memset(r, 0, sizeof *r);
    const int nn = xb_model_n_nodes(m), nm = xb_model_n_mapped(m);
    snprintf(r->model, sizeof r->model, "%s", xb_model_name(m));
    r->measured = images > 0;
    r->images = images;
    r->layers = xb_calloc((size_t)(nn > 0 ? nn : 1) * sizeof(xb_energy_layer));
    /* the network's config: xb_xnet keeps its own copy; the per-layer precisions are in the counts */
    const xb_hw *hw = xb_xnet_hw(xn);
    snprintf(r->hw, sizeof r->hw, "%.127s", hw->name[0] ? hw->name : hw->path);
    int have_power = 1;
    for (int n = 0; n < nn; n++) {
        xb_energy_layer *L = &r->layers[r->n_layers];
        const int mi = xb_model_node_mapped(m, n);
        if (mi >= 0) {
            XB_ASSERT(mi < nm);
            xb_energy_counts k;
            xb_status st = xb_xnet_energy_counts(xn, r->measured, mi, &k);
            if (st) { xb_energy_report_free(r); return st; }
            const double s = r->measured ? 1.0 / (double)images : 1.0;
            k.vectors *= s; k.reads *= s; k.reads_skipped *= s; k.latency_reads *= s; k.dac_drives *= s;
            k.adc_conversions *= s; k.columns_sensed *= s; k.shift_adds *= s; k.accumulations *= s;
            k.buffer_bits *= s; k.array_energy_j *= s;
            k.macs = (double)xb_model_node_macs(m, n);
            if (k.mapped && k.reads > 0 && k.array_energy_j == 0 && !xb_xnet_power_kept(xn)) have_power = 0;
            cost_mapped_(hw, &k, L, r);
        } else {
            const double ops = element_ops_(m, n);
            if (ops == 0) continue;
            snprintf(L->name, sizeof L->name, "%s", xb_model_node_name(m, n));
            snprintf(L->kind, sizeof L->kind, "%s", xb_model_node_type(m, n));
            L->digital_energy_j = ops * hw->energy.digital_op_energy_j;
            L->latency_s = ops / hw->energy.digital_ops_per_s;
            sum_components_(L);
        }
        r->n_layers++;
    }
    if (!have_power)
        warn_(r, "the arrays' energy is 0: programming did not keep the admittances (call xb_xnet_keep_power first)");
    double lat_max = 0;
    for (int i = 0; i < r->n_layers; i++) {
        const xb_energy_layer *L = &r->layers[i];
        r->total_energy_j += L->energy_j;
        r->array_energy_j += L->array_energy_j; r->dac_energy_j += L->dac_energy_j; r->adc_energy_j += L->adc_energy_j;
        r->sense_energy_j += L->sense_energy_j; r->shift_add_energy_j += L->shift_add_energy_j;
        r->accumulate_energy_j += L->accumulate_energy_j; r->buffer_energy_j += L->buffer_energy_j;
        r->digital_energy_j += L->digital_energy_j;
        r->latency_s += L->latency_s;
        r->area_m2 += L->area_m2;
        r->array_area_m2 += L->array_area_m2; r->adc_area_m2 += L->adc_area_m2; r->dac_area_m2 += L->dac_area_m2;
        r->periphery_area_m2 += L->periphery_area_m2;
        r->macs += L->macs;
        lat_max = L->latency_s > lat_max ? L->latency_s : lat_max;
    }
    const double period = hw->energy.pipeline ? lat_max : r->latency_s;
    r->frames_per_s = period > 0 ? 1 / period : 0;
    r->tops = 2 * r->macs * r->frames_per_s / 1e12;
    r->tops_per_w = r->total_energy_j > 0 ? 2 * r->macs / r->total_energy_j / 1e12 : 0;
    r->tops_per_mm2 = r->area_m2 > 0 ? r->tops / (r->area_m2 * 1e6) : 0;
    r->edp_js = r->total_energy_j * r->latency_s;
    return XB_OK;
}

void xb_energy_report_free(xb_energy_report *r) {
    if (!r) return;
    xb_free(r->layers);
    r->layers = NULL;
    r->n_layers = 0;
}

#define COMPONENTS_(X) X(array) X(dac) X(adc) X(sense) X(shift_add) X(accumulate) X(buffer) X(digital)

static void json_layer_(const xb_energy_layer *L, FILE *f) {
    const xb_energy_counts *k = &L->counts;
    fprintf(f, "{\"name\":\"%s\",\"kind\":\"%s\",\"energy_j\":%.9g", L->name, L->kind, L->energy_j);
#define X(c) fprintf(f, ",\"" #c "_energy_j\":%.9g", L->c##_energy_j);
    COMPONENTS_(X)
#undef X
    fprintf(f, ",\"latency_s\":%.9g,\"area_m2\":%.9g,\"array_area_m2\":%.9g,\"adc_area_m2\":%.9g,\"dac_area_m2\":%.9g,"
               "\"periphery_area_m2\":%.9g,\"macs\":%.9g",
            L->latency_s, L->area_m2, L->array_area_m2, L->adc_area_m2, L->dac_area_m2, L->periphery_area_m2, L->macs);
    if (!strcmp(L->kind, "crossbar"))
        fprintf(f, ",\"counts\":{\"vectors\":%.9g,\"reads\":%.9g,\"reads_skipped\":%.9g,\"latency_reads\":%.9g,"
                   "\"dac_drives\":%.9g,\"adc_conversions\":%.9g,\"columns_sensed\":%.9g,\"shift_adds\":%.9g,"
                   "\"accumulations\":%.9g,\"buffer_bits\":%.9g,\"arrays\":%lld,\"adcs\":%lld,\"rows\":%d,\"cols\":%d,"
                   "\"adc_bits\":%d,\"dac_bits\":%d,\"planes\":%d,\"slices\":%d}",
                k->vectors, k->reads, k->reads_skipped, k->latency_reads, k->dac_drives, k->adc_conversions,
                k->columns_sensed, k->shift_adds, k->accumulations, k->buffer_bits, (long long)k->arrays,
                (long long)k->adcs, k->rows, k->cols, k->adc_bits, k->dac_bits, k->planes, k->slices);
    fputc('}', f);
}

void xb_energy_report_print(const xb_energy_report *r, FILE *f, int json) {
    if (json) {
        fprintf(f, "{\"model\":\"%s\",\"hw\":\"%s\",\"measured\":%s,\"images\":%lld,\"total_energy_j\":%.9g,"
                   "\"latency_s\":%.9g,\"area_m2\":%.9g,\"macs\":%.9g,\"frames_per_s\":%.9g,\"tops\":%.9g,"
                   "\"tops_per_w\":%.9g,\"tops_per_mm2\":%.9g,\"edp_js\":%.9g,\"breakdown\":{",
                r->model, r->hw, r->measured ? "true" : "false", (long long)r->images, r->total_energy_j, r->latency_s,
                r->area_m2, r->macs, r->frames_per_s, r->tops, r->tops_per_w, r->tops_per_mm2, r->edp_js);
        const char *sep = "";
#define X(c) fprintf(f, "%s\"" #c "_energy_j\":%.9g", sep, r->c##_energy_j); sep = ",";
        COMPONENTS_(X)
#undef X
        fprintf(f, "},\"area_breakdown\":{\"array_area_m2\":%.9g,\"adc_area_m2\":%.9g,\"dac_area_m2\":%.9g,"
                   "\"periphery_area_m2\":%.9g},\"layers\":[",
                r->array_area_m2, r->adc_area_m2, r->dac_area_m2, r->periphery_area_m2);
        for (int i = 0; i < r->n_layers; i++) {
            if (i) fputc(',', f);
            json_layer_(&r->layers[i], f);
        }
        fprintf(f, "],\"warnings\":[");
        for (int i = 0; i < r->n_warnings; i++) fprintf(f, "%s\"%s\"", i ? "," : "", r->warnings[i]);
        fprintf(f, "]}");
        return;
    }
    fprintf(f, "energy of %s on %s, per image (%s)\n", r->model, r->hw,
            r->measured ? "counted from the inputs" : "nominal: [energy] input_density");
    fprintf(f, "%-22s %-9s %11s %6s %6s %6s %6s %11s %10s\n", "layer", "kind", "energy nJ", "array", "adc", "dac",
            "other", "latency us", "area mm2");
    for (int i = 0; i < r->n_layers; i++) {
        const xb_energy_layer *L = &r->layers[i];
        const double e = L->energy_j > 0 ? L->energy_j : 1;
        if (!strcmp(L->kind, "crossbar") || !strcmp(L->kind, "digital"))
            fprintf(f, "%-22s %-9s %11.4f %5.1f%% %5.1f%% %5.1f%% %5.1f%% %11.4f %10.5f\n", L->name, L->kind,
                    L->energy_j * 1e9, 100 * L->array_energy_j / e, 100 * L->adc_energy_j / e, 100 * L->dac_energy_j / e,
                    100 * (L->energy_j - L->array_energy_j - L->adc_energy_j - L->dac_energy_j) / e, L->latency_s * 1e6,
                    L->area_m2 * 1e6);
    }
    double el = 0;
    for (int i = 0; i < r->n_layers; i++)
        if (strcmp(r->layers[i].kind, "crossbar") && strcmp(r->layers[i].kind, "digital")) el += r->layers[i].energy_j;
    fprintf(f, "%-22s %-9s %11.4f\n", "(element ops)", "digital", el * 1e9);
    fprintf(f, "total: %.4f uJ per image  (arrays %.1f%%, ADC %.1f%%, DAC %.1f%%, sense %.1f%%, shift-add %.1f%%, "
               "accumulate %.1f%%, buffer %.1f%%, digital %.1f%%)\n",
            r->total_energy_j * 1e6, 100 * r->array_energy_j / r->total_energy_j, 100 * r->adc_energy_j / r->total_energy_j,
            100 * r->dac_energy_j / r->total_energy_j, 100 * r->sense_energy_j / r->total_energy_j,
            100 * r->shift_add_energy_j / r->total_energy_j, 100 * r->accumulate_energy_j / r->total_energy_j,
            100 * r->buffer_energy_j / r->total_energy_j, 100 * r->digital_energy_j / r->total_energy_j);
    fprintf(f, "latency %.4g us, %.4g frames/s, area %.4g mm2, %.4g TOPS, %.4g TOPS/W, %.4g TOPS/mm2, EDP %.4g J s\n",
            r->latency_s * 1e6, r->frames_per_s, r->area_m2 * 1e6, r->tops, r->tops_per_w, r->tops_per_mm2, r->edp_js);
    for (int i = 0; i < r->n_warnings; i++) fprintf(f, "warning: %s\n", r->warnings[i]);
}

void xb_energy_report_csv(const xb_energy_report *r, FILE *f) {
    fprintf(f, "name,kind,energy_j");
#define X(c) fprintf(f, "," #c "_energy_j");
    COMPONENTS_(X)
#undef X
    fprintf(f, ",latency_s,area_m2,macs\n");
    for (int i = 0; i < r->n_layers; i++) {
        const xb_energy_layer *L = &r->layers[i];
        fprintf(f, "%s,%s,%.9g", L->name, L->kind, L->energy_j);
#define X(c) fprintf(f, ",%.9g", L->c##_energy_j);
        COMPONENTS_(X)
#undef X
        fprintf(f, ",%.9g,%.9g,%.9g\n", L->latency_s, L->area_m2, L->macs);
    }
}
