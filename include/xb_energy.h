/*
 * xb_energy.h -- energy, latency and area of a network on the crossbar hardware it is mapped to.
 *
 * Two halves.  Counts (src/xbar/xenergy.c): what the hardware does for a set of images -- per mapped layer the
 * input vectors (MVMs), row-tile reads, DAC row drives, ADC conversions, column samples, shift-adds, partial-sum
 * additions, buffer traffic, and the crossbar arrays' energy from the circuit, t_read * sum over reads of
 * V^T A V with A the input admittance of the programmed arrays (xb_solve.h: exact with parasitics, matching
 * ngspice's source power; diag(row sums of G) without).  Counted from the actual inputs of forwards run while
 * the probe is on (xb_xnet_energy_probe), or nominal: every input bit on with probability [energy]
 * input_density.  Costs (src/energy/energy.c): the counts times the per-operation figures of the config's
 * [energy] and [arch] sections, plus the layers that stay digital, into a report with per-layer components that
 * sum to each layer's energy_j, latency, area, TOPS, TOPS/W, TOPS/mm^2, frames/s and EDP.  docs/energy.md has
 * the model, its equations and the source of every default.
 *
 *     xb_xnet *xn;  xb_xnet_init(&hw, m, &xn);
 *     xb_xnet_keep_power(xn, 1);              // before programming: keep each row tile's admittance
 *     xb_xnet_program(xn, seed);  (calibrate if the config needs it)
 *     xb_xnet_energy_probe(xn, 1, 1);         // count every forward from now on, exactly
 *     ... forwards of N images through the attached network ...
 *     xb_energy_report r;  xb_energy_report_make(xn, m, N, &r);   // N = 0: nominal, per image
 *     xb_energy_report_print(&r, stdout, 1);  xb_energy_report_free(&r);
 */
#ifndef XB_ENERGY_H
#define XB_ENERGY_H

#include "xb_xbar.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What one mapped layer's tiles did (groups and packed blocks summed). */
typedef struct xb_energy_counts {
    char name[128];
    int mapped;                 /* 0: the layer is kept digital (only macs and vectors are set) */
    double vectors;             /* input vectors (matrix-vector products) */
    double reads;               /* row-tile reads: vector x row tile x input pass x input plane, performed */
    double reads_skipped;       /* reads of all-zero planes that [arch] zero_skip left out */
    double latency_reads;       /* sum over vectors of the most reads any one row tile did (row tiles run in parallel) */
    double dac_drives;          /* row drives: the rows of every performed read */
    double adc_conversions;     /* ADC conversions (one per converted signal per read) */
    double columns_sensed;      /* column samples (sample-and-hold / integrator) */
    double shift_adds;          /* ADC results shifted and added over slices and planes */
    double accumulations;       /* additions of partial sums over row tiles and input passes */
    double buffer_bits;         /* activation buffer traffic: inputs read and outputs written */
    double array_energy_j;      /* the arrays' energy from the circuit: t_read sum V^T A V */
    double macs;                /* multiply-accumulates (digital layers, and the TOPS figures) */
    int64_t arrays, adcs, drivers, samplers; /* hardware: arrays, ADCs, row drivers, column samplers */
    int rows, cols;             /* one array */
    int adc_bits, dac_bits, planes, slices;
} xb_energy_counts;

/* Programming keeps, per row tile, the summed input admittance of its arrays (the power model).  Call after
 * xb_xnet_init, before xb_xnet_program; on = 0 frees it.  With a [circuit] solver other than exact the
 * admittance is still solved exactly (an extra solve per array). */
xb_status xb_xnet_keep_power(xb_xnet *xn, int on);
/* on = 1: resets the counts and counts every forward from now on (calibration forwards excepted).
 * sample_stride >= 1: the array energy's quadratic forms are summed over one input vector in sample_stride
 * of each layer, picked by a hash of the vector's number (numbered across calls, so the sample does not depend
 * on batch sizes, and does not alias with the image width as every stride-th would) and scaled up; 1 is exact.  The integer counts are always exact.  on = 0 stops counting (the counts stay). */
xb_status xb_xnet_energy_probe(xb_xnet *xn, int on, int sample_stride);
/* Per mapped layer (in model order): the counts gathered by the probe (measured = 1), or nominal ones for
 * one image (measured = 0; needs xb_xnet_keep_power before programming for the array energy, else it is
 * 0).  XB_ERR_STATE when measured counts are asked for and the probe never ran. */
xb_status xb_xnet_energy_counts(const xb_xnet *xn, int measured, int i, xb_energy_counts *out);

/* The config the network was built with; 1 when programming keeps the admittances. */
const xb_hw *xb_xnet_hw(const xb_xnet *xn);
int xb_xnet_power_kept(const xb_xnet *xn);
/* 1 while the probe counts (xb_xnet_energy_probe). */
int xb_xnet_probing(const xb_xnet *xn);

/* The costed report. */
typedef struct xb_energy_layer {
    char name[128];
    char kind[16];              /* "crossbar", "digital" (a conv/linear kept digital) or an element op's type */
    double energy_j;            /* per image: the sum of the components below */
    double array_energy_j, dac_energy_j, adc_energy_j, sense_energy_j, shift_add_energy_j,
        accumulate_energy_j, buffer_energy_j, digital_energy_j;
    double latency_s;           /* per image */
    double area_m2, array_area_m2, adc_area_m2, dac_area_m2, periphery_area_m2;
    double macs;                /* per image */
    xb_energy_counts counts;    /* per image */
} xb_energy_layer;

typedef struct xb_energy_report {
    char model[128], hw[128];
    int measured;               /* 1: from the inputs of `images` images; 0: nominal */
    int64_t images;
    int n_layers;
    xb_energy_layer *layers;
    double total_energy_j, latency_s, area_m2, macs; /* per image */
    double array_energy_j, dac_energy_j, adc_energy_j, sense_energy_j, shift_add_energy_j, accumulate_energy_j,
        buffer_energy_j, digital_energy_j;
    double array_area_m2, adc_area_m2, dac_area_m2, periphery_area_m2;
    double frames_per_s, tops, tops_per_w, tops_per_mm2, edp_js;
    int n_warnings;
    char warnings[4][256];
} xb_energy_report;

/* images > 0: the probe's counts divided by images; images == 0: nominal counts of one image. */
xb_status xb_energy_report_make(const xb_xnet *xn, const xb_model *m, int64_t images, xb_energy_report *r);
void xb_energy_report_free(xb_energy_report *r);
/* A table (text), or one JSON object: total_energy_j, latency_s, area_m2, ..., layers [{name, energy_j,
 * array_energy_j, adc_energy_j, dac_energy_j, ...}], warnings. */
void xb_energy_report_print(const xb_energy_report *r, FILE *f, int json);
/* One CSV line per layer (header first): name, kind and every energy component, latency and area. */
void xb_energy_report_csv(const xb_energy_report *r, FILE *f);
/* The cost of one ADC conversion, its time and one ADC's area at `bits` (the [energy] scaling rules). */
double xb_energy_adc_j(const xb_energy_cfg *e, int bits);
double xb_energy_adc_s(const xb_energy_cfg *e, int bits);
double xb_energy_adc_m2(const xb_energy_cfg *e, int bits);

/* ---- a zero-skipping digital accelerator (src/energy/pe.c) --------------------------------------------------
 * A Cnvlutin-like array of [pe] units x filters_per_unit multipliers per lane and `lanes` input lanes whose
 * cycles follow the non-zero inputs of every conv/linear layer (methods.md item 8, the sparsity attacks' cost
 * model).  The probe is the model's mapped-matmul operator around the float product: attach it, run forwards,
 * make the report (per image), detach it.  Counts do not depend on batches or threads. */
typedef struct xb_pe_probe xb_pe_probe;
typedef struct xb_pe_layer {
    char name[128];
    double vectors, inputs, nonzero, density;  /* per image: windows, input elements fed, the non-zero ones */
    double cycles, cycles_dense;               /* with the config's skip_zeros, and never skipping */
    double macs, macs_dense;                   /* MACs performed, and all of them */
    double energy_j, mac_energy_j, buffer_energy_j, static_energy_j, energy_dense_j;
    double latency_s, latency_dense_s;
} xb_pe_layer;
typedef struct xb_pe_report {
    int64_t images;
    int n_layers;
    xb_pe_layer *layers;
    double density, energy_j, latency_s, cycles, macs, edp_js;   /* per image */
    double energy_dense_j, latency_dense_s, macs_dense, edp_dense_js;
} xb_pe_report;
/* Installs the counting operator on m (a previous operator is put back by detach). */
xb_status xb_pe_probe_attach(xb_model *m, const xb_energy_cfg *cfg, xb_pe_probe **out);
void xb_pe_probe_detach(xb_pe_probe *p);
/* The counts of the forwards so far over `images` images (> 0). */
xb_status xb_pe_report_make(const xb_pe_probe *p, int64_t images, xb_pe_report *r);
void xb_pe_report_free(xb_pe_report *r);
void xb_pe_report_print(const xb_pe_report *r, const xb_energy_cfg *e, FILE *f, int json);

/* ---- count-based ternary arrays (TiM-DNN-like; src/energy/tim.c) ----------------------------------------------
 * The model's mapped-matmul operator: layers with ternary weights and ternary inputs run on arrays that read two
 * counts per column per access of [tim] rows_per_access rows through adc_bits-bit ADCs (saturating, with optional
 * count non-linearity and cell variation drawn from `seed`); other layers stay digital, as does a layer whose
 * first inputs are not ternary (inputs that stop being ternary later are an error).  The forwards' outputs
 * are the hardware's (accuracy), and the report gives energy, latency and TOPS/W per image. */
typedef struct xb_tim_probe xb_tim_probe;
typedef struct xb_tim_layer {
    char name[128];
    int on_arrays, asymmetric;
    int inputs_real;            /* digital: ternary weights, but its first inputs were not ternary (the image) */
    double vectors, accesses, conversions, saturation_rate, macs, energy_j, latency_s; /* per image */
} xb_tim_layer;
typedef struct xb_tim_report {
    int64_t images;
    int n_layers;
    xb_tim_layer *layers;
    double energy_j, latency_s, macs, tops, tops_per_w;            /* per image, the whole network */
    double macs_arrays, energy_arrays_j, latency_arrays_s, accesses, tops_arrays, tops_per_w_arrays;
    double peak_tops, peak_power_w, area_m2;                       /* the configured chip */
} xb_tim_report;
xb_status xb_tim_probe_attach(xb_model *m, const xb_energy_cfg *cfg, uint64_t seed, xb_tim_probe **out);
void xb_tim_probe_detach(xb_tim_probe *p);
xb_status xb_tim_report_make(const xb_tim_probe *p, int64_t images, xb_tim_report *r);
void xb_tim_report_free(xb_tim_report *r);
/* accuracy: printed with the report (pass a negative value when none was measured) */
void xb_tim_report_print(const xb_tim_report *r, const xb_energy_cfg *e, double accuracy, FILE *f, int json);

#ifdef __cplusplus
}
#endif

#endif /* XB_ENERGY_H */
