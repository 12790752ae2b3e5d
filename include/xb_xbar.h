/*
 * xb_xbar.h -- the crossbar core: hardware configs, weight-to-conductance mapping, device
 * non-idealities, DAC/ADC quantizers, crossbar-backed layers and Monte-Carlo evaluation.  The circuit
 * solver under it is xb_solve.h; the config reference (every key, unit, default and range, the data
 * flow and the figures) is docs/hardware.md; costs are in docs/crossbar-eval.md.
 *
 * Worked example (evaluate trained weights on 3 device samples of a realistic ReRAM config):
 *
 *     xb_hw hw;  xb_model *m;  xb_dataset test;
 *     if (xb_hw_load("configs/hw/reram-64-mild.cfg", &hw) != XB_OK) { puts(xb_last_error()); exit(1); }
 *     xb_model_load("resnet20", 1, &m);  xb_model_load_weights(m, "weights.safetensors");
 *     xb_cifar_load("../shared/data/cifar10", XB_SPLIT_TEST, &test);
 *     xb_xeval_opts o = xb_xeval_opts_default();  o.seeds = 3;
 *     xb_xeval_result r;
 *     if (xb_xeval_run(m, &hw, &test, NULL, &o, &r) == XB_OK) xb_xeval_print(&r, &hw, stdout, 0);
 *     xb_xeval_result_free(&r);
 *
 * Lower level (one programmed network driving the model's matrix-product hook):
 *
 *     xb_xnet *xn;  xb_xnet_init(&hw, m, &xn);       // tiles, geometry, solver plan
 *     xb_xnet_program(xn, seed);                       // weights -> conductances -> effective weights
 *     xb_xnet_attach(xn);                              // every mapped conv/linear now runs on tiles
 *     xb_xnet_calibrate(xn, ncal, images);             // only if the config has calibrated ranges
 *     xb_model_forward(m, n, x, logits, NULL);         // crossbar forward; backward stays float (STE)
 *     xb_xnet_detach(xn);  xb_xnet_free(xn);
 *
 * The pipeline of one mapped layer (W: rows_out x k weights, X: k x ncols inputs, Y = W X):
 *   program (once per device seed):  W -> clip scale s -> integer codes (levels / bit slices, sign by
 *     differential pair or offset + reference) -> target conductances per physical array (rows x cols
 *     cells) -> programming variation, drift, stuck-at faults -> effective matrix E of each array
 *     (circuit solver, double) -> per slice the "signal" matrices in code units (E / g_unit);
 *   forward (every MVM):  x -> input range x_max -> DAC (or bit-serial planes) -> V = v_read * code ->
 *     per row tile, per slice, per input plane: signal = V E (+ read noise) -> ADC -> shift-add over
 *     slices and planes -> digital accumulation over row tiles -> rescale to weight x input units.
 *   Without ADC and read noise every stage is linear, so all tiles of a layer fold into one float
 *   "effective weight" matrix and a layer costs one SGEMM (the fast path).
 *
 * Gradients: the hook replaces forward products only; the model's backward uses the float weights,
 * i.e. a straight-through estimate of the hardware's gradient.  The quantizers below are explicit
 * functions with documented straight-through gradients for training and attacks through hardware.
 *
 * Randomness: stream "device" (programming variation, faults, drift spread) forked per seed value,
 * layer, tile and array; stream "read" (read noise) forked per layer, forward call and column chunk.
 * Results therefore do not depend on the thread count or on the order tiles are programmed in.
 * On-chip updates (xb_device_update) draw from the stream the caller passes, forked per element index.
 */
#ifndef XB_XBAR_H
#define XB_XBAR_H

#include "xbar.h"
#include "xb_cell.h"
#include "xb_solve.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------ */
/* Hardware config (src/xbar/hw.c).  SI units in the names; docs/hardware.md is the reference.        */
/* ------------------------------------------------------------------------------------------------ */

#define XB_HW_MAX_DIM 4096       /* largest tile side accepted */
#define XB_HW_MAX_DIGITAL 32     /* layers listed in [tile] digital_layers */

typedef enum xb_scheme { XB_SCHEME_DIFFERENTIAL = 0, XB_SCHEME_OFFSET, XB_SCHEME_COUNT } xb_scheme;
typedef enum xb_layout { XB_LAYOUT_SEPARATE = 0, XB_LAYOUT_INTERLEAVED, XB_LAYOUT_COUNT } xb_layout;
typedef enum xb_reference { XB_REF_COLUMN = 0, XB_REF_DIGITAL, XB_REF_COUNT } xb_reference;
typedef enum xb_wclip { XB_WCLIP_MAX = 0, XB_WCLIP_PERCENTILE, XB_WCLIP_COUNT } xb_wclip;
typedef enum xb_signed_in { XB_SIGNED_SPLIT = 0, XB_SIGNED_BIPOLAR, XB_SIGNED_COUNT } xb_signed_in;
typedef enum xb_range { XB_RANGE_CALIBRATED = 0, XB_RANGE_FIXED, XB_RANGE_WORST_CASE, XB_RANGE_COUNT } xb_range;
typedef enum xb_adc_signal { XB_ADC_DIFFERENCE = 0, XB_ADC_COLUMN, XB_ADC_SIGNAL_COUNT } xb_adc_signal;
typedef enum xb_variation { XB_VAR_NONE = 0, XB_VAR_GAUSSIAN, XB_VAR_LOGNORMAL, XB_VAR_COUNT } xb_variation;
typedef enum xb_noise_mode { XB_NOISE_RELATIVE = 0, XB_NOISE_ABSOLUTE, XB_NOISE_MODE_COUNT } xb_noise_mode;
typedef enum xb_gclip { XB_GCLIP_ZERO = 0, XB_GCLIP_RANGE, XB_GCLIP_COUNT } xb_gclip;
typedef enum xb_in_scaling { XB_INSCALE_LAYER = 0, XB_INSCALE_VECTOR, XB_INSCALE_COUNT } xb_in_scaling;
typedef enum xb_bound_mgmt { XB_BM_NONE = 0, XB_BM_ITERATIVE, XB_BM_COUNT } xb_bound_mgmt;
typedef enum xb_drift_comp { XB_DRIFTCOMP_NONE = 0, XB_DRIFTCOMP_GLOBAL, XB_DRIFTCOMP_COLUMN,
                             XB_DRIFTCOMP_COUNT } xb_drift_comp;
/* [circuit] solver: the methods of xb_solve.h with their values (a kind below XB_SOLVER_NONE is an
 * xb_solve_method as it stands), plus none (E = G, nothing solved).  hw.c asserts that they stay in step. */
typedef enum xb_solver_kind { XB_SOLVER_EXACT = XB_SOLVE_EXACT, XB_SOLVER_CHOLMOD = XB_SOLVE_CHOLMOD,
                              XB_SOLVER_DECOUPLED = XB_SOLVE_DECOUPLED, XB_SOLVER_NONE = XB_SOLVE_METHOD_COUNT,
                              XB_SOLVER_COUNT } xb_solver_kind;

/* [update]: how requested conductance changes are written during on-chip training (methods.md item 6,
 * TxSim; src/xbar/update.c).  The defaults are the ideal linear update.  Only training uses it: it has
 * no effect on inference or on xb_hw_is_ideal. */
typedef enum xb_update_model { XB_UPDATE_LINEAR = 0, XB_UPDATE_TXSIM, XB_UPDATE_SOFTBOUNDS,
                               XB_UPDATE_MODEL_COUNT } xb_update_model;
typedef enum xb_pulse_rounding { XB_PULSE_NEAREST = 0, XB_PULSE_STOCHASTIC, XB_PULSE_ROUNDING_COUNT } xb_pulse_rounding;
typedef enum xb_pair_update { XB_PAIR_SPLIT = 0, XB_PAIR_SIGN, XB_PAIR_UPDATE_COUNT } xb_pair_update;
typedef enum xb_slice_update { XB_SLICE_MSB = 0, XB_SLICE_LSB, XB_SLICE_UPDATE_COUNT } xb_slice_update;
typedef enum xb_refresh_solver { XB_REFRESH_EXACT = 0, XB_REFRESH_DECOUPLED, XB_REFRESH_DISTORTION,
                                 XB_REFRESH_SOLVER_COUNT } xb_refresh_solver;

typedef struct xb_update_cfg {
    xb_update_model model;          /* linear, txsim (non-linear + write noise) or softbounds (pulsed) */
    xb_pulse_rounding pulse_rounding; /* requested change -> whole pulses of dg_min_s: nearest or stochastic */
    double dg_min_s;                /* conductance step of one pulse (softbounds: at the range centre); 0: continuous */
    double nonlinearity;            /* txsim v >= 0 */
    double write_noise;             /* txsim gamma >= 0 */
    double write_noise_sigma;       /* txsim sigma0: noise std = gamma sigma0 sqrt(|dG| (g_max - g_min)) */
    double up_down;                 /* softbounds asymmetry: up step dg_min (1 + up_down), down dg_min (1 - up_down) */
    double write_noise_ctoc;        /* softbounds cycle-to-cycle noise, relative std of every pulse's step */
    xb_pair_update pair_update;     /* signed change -> differential pair: split over G+/G-, or by sign */
    xb_slice_update slice_update;   /* bit-sliced weights: the slice that receives the change */
    int refresh_steps;              /* I-FCM period L: effective matrices re-solved every L steps; 0: every step */
    xb_refresh_solver refresh_solver; /* how the training loop rebuilds effective matrices (stored only) */
} xb_update_cfg;

/* [arch] and [energy]: what the hardware is built of and what each operation costs (src/energy/ecfg.c; the
 * energy model is include/xb_energy.h; docs/energy.md gives every key's source).  Only the energy report
 * reads them: they change no accuracy figure. */
typedef struct xb_energy_cfg {
    /* [arch] */
    double feature_size_m;          /* technology node F */
    double cell_area_f2;            /* one crossbar cell, in F^2 */
    int adc_share_cols;             /* columns multiplexed onto one ADC (converted one after another) */
    int pipeline;                   /* 1: layers pipelined (frames/s from the slowest layer); 0: layer by layer */
    int zero_skip;                  /* 1: a read whose input plane is all zero on a row tile is skipped */
    int word_bits;                  /* bits of an activation word in the buffers */
    double digital_ops_per_s;       /* throughput of the digital unit (batchnorm, pooling, digital layers) */
    /* [energy] */
    double read_time_s;             /* one crossbar read (the input pulse) */
    double adc_energy_j, adc_area_m2, adc_time_s; /* one conversion / one ADC at adc_ref_bits */
    int adc_ref_bits;
    double adc_energy_per_bit;      /* factor per bit above (below: divided by) adc_ref_bits, energy and time */
    double adc_area_per_bit;        /* the same for area */
    double dac_energy_j, dac_area_m2; /* one row drive / one driver with a 1-bit DAC */
    double dac_per_bit;             /* factor per further DAC bit (energy and area) */
    double sense_energy_j, sense_area_m2; /* sample-and-hold / integrator per column read */
    double shift_add_energy_j, shift_add_area_m2; /* per shift-add of one ADC result; area per array */
    double accumulate_energy_j;     /* per addition of a row tile's partial sum (and of a negative-input pass) */
    double buffer_energy_j_per_bit; /* activation buffer access per bit */
    double digital_mac_energy_j;    /* a multiply-accumulate of a layer kept digital */
    double digital_op_energy_j;     /* one element operation of batchnorm, relu, pooling, add */
    double input_density;           /* without data: probability that an input bit (or DAC level) is on */
    /* [pe]: the zero-skipping digital accelerator (Cnvlutin-like; src/energy/pe.c), keys without the pe_ prefix */
    int pe_units, pe_filters_per_unit, pe_lanes; /* units x filters per unit outputs per pass; input lanes */
    double pe_clock_hz, pe_mac_energy_j, pe_static_power_w;
    int pe_offset_bits;             /* index bits stored with each non-zero input when skipping */
    int pe_skip_zeros;              /* 0: the dense baseline (DaDianNao-like) */
    /* [tim]: the count-based ternary arrays (TiM-DNN-like; src/energy/tim.c), keys without the tim_ prefix */
    int tim_rows_per_access, tim_adc_bits, tim_tile_cols, tim_tiles;
    double tim_access_time_s, tim_cell_energy_j, tim_adc_energy_j, tim_tile_area_m2; /* adc: at 5 bits */
    double tim_count_nonlinearity, tim_cell_sigma;
} xb_energy_cfg;

typedef struct xb_hw {
    /* [meta] */
    char name[128];             /* preset name */
    char source[512];           /* where the parameter values come from */
    char path[512];             /* file it was read from ("" for defaults) */
    /* [tile] */
    int rows, cols;             /* cells per physical crossbar array (1..XB_HW_MAX_DIM) */
    int map_first, map_last;   /* 0: keep the first / last mapped layer digital (float) */
    int n_digital;              /* further layers kept digital, by name */
    char digital[XB_HW_MAX_DIGITAL][128];
    /* [mapping] */
    xb_scheme scheme;
    xb_layout layout;           /* the cells of one weight (signs x slices): separate arrays or adjacent columns */
    xb_reference reference;     /* offset scheme: physical reference column per array, or ideal digital */
    int weight_bits;            /* 0: unlimited; else integer magnitude bits (differential) or total bits (offset) */
    int bits_per_cell;          /* bit slicing: bits held by one cell (0 when weight_bits is 0) */
    int levels;                 /* weight_bits == 0: conductance levels per cell (0: continuous) */
    double g_min_s, g_max_s;    /* device range; from r_off_ohm / r_on_ohm when those are given */
    xb_wclip w_clip;
    double w_clip_percentile;   /* of |W| per layer, (0, 100] */
    int column_scale;           /* scale = column: each output (column) its own clip scale s_j = max|W_j| (or its
                                   w_clip_percentile), undone by a digital factor s_j / max s after the read;
                                   0 (scale = layer): one s per layer */
    int rearrange;              /* crossbar column rearrangement (methods.md 5A): the order of a layer's outputs
                                   over its column tiles, undone digitally after the read; 0 none, 1 round-robin
                                   (by total column conductance, dealt over the tiles: each tile a mix of high
                                   and low), 2 sorted (by conductance, tile after tile) */
    int pack;                   /* crossbar packing of structured-sparse layers (methods.md 5A): 0 none; 1 columns
                                   (XCS: per row tile, the outputs whose segment in it is not all zero, packed
                                   into fewer column tiles); 2 rows (XRS: per column tile, the inputs whose segment
                                   is not all zero, packed into fewer row tiles); from the weights at mapping */
    /* [input] */
    int dac_bits;               /* bits per DAC pass; 0: ideal analog inputs */
    int bit_serial;             /* 1: input_bits streamed in passes of dac_bits bits, shift-add after the ADC */
    int input_bits;             /* total input precision when bit_serial */
    double v_read_v;            /* full-scale read voltage */
    xb_signed_in signed_inputs; /* negative inputs: split into +/- passes, or bipolar voltages */
    xb_range input_range;       /* calibrated (percentile of |x|) or fixed */
    double input_full_scale;    /* fixed: the input value mapped to v_read (activation units) */
    double input_percentile;
    xb_in_scaling input_scaling; /* layer: one x_max per layer; vector: each input vector (column of X) scaled
                                    by its own max |x| to full scale, the output scaled back digitally */
    /* [output] */
    int adc_bits;               /* 0: no ADC */
    xb_adc_signal adc_signal;   /* digitize the analog difference (signed ADC) or each column (unsigned) */
    xb_range adc_range;
    double adc_full_scale_a;    /* fixed: full-scale current in amperes */
    double adc_percentile;      /* calibrated: percentile of |signal| per layer */
    int calibration_images;     /* images used to calibrate input and ADC ranges (and gains) */
    int gain_calibration;       /* 1: a digital gain per layer, least squares against the float product */
    xb_bound_mgmt bound_management; /* iterative: an input vector whose ADC saturates on a row tile is read again
                                       with its input halved (up to bound_management_max_steps times) */
    int bound_management_max_steps;
    /* [circuit] */
    xb_circuit circuit;
    xb_solver_kind solver;
    /* [cell] (include/xb_cell.h): resistor, or a memristor in series with an access NMOS (1t1r); a 1t1r array is
       read with 1-bit input planes (every driven row at 0 or v_read_v), so each cell is its secant conductance
       I_cell(G, v_read_v, 0) / v_read_v -- exact without parasitics, a linearization at the nominal read with them */
    xb_cell cell;
    int cell_compensate;                    /* 1t1r: weights map linearly onto the cells' small-signal conductances
                                               (the memristor programmed through the transistor's on-resistance,
                                               xb_cell_memristor_for); 0: onto the memristor conductances */
    int n_vgate;                            /* per-layer gate voltages (v_gate_layers = name:volts, ...) */
    char vgate_layer[XB_HW_MAX_DIGITAL][128];
    double vgate_v[XB_HW_MAX_DIGITAL];
    /* [device] */
    xb_variation variation;
    double variation_sigma;     /* relative: fraction; absolute: siemens */
    xb_noise_mode variation_mode;
    xb_gclip variation_clip;    /* programmed conductances are kept >= 0, or inside [g_min, g_max] */
    double read_noise_sigma;    /* per MVM; relative: fraction of G; absolute: siemens */
    xb_noise_mode read_noise_mode;
    double stuck_at_gmin_rate, stuck_at_gmax_rate;
    double drift_nu, drift_nu_sigma, drift_t_s, drift_t0_s;
    xb_drift_comp drift_compensation; /* global: outputs rescaled by (t/t0)^nu; column: per output by the ratio of
                                         its reference reads (all-ones input) at t0 and at t */
    /* [update] */
    xb_update_cfg update;
    /* [arch], [energy] */
    xb_energy_cfg energy;
} xb_hw;

/* The ideal crossbar: 64x64 tiles, differential, continuous conductances 1 uS..10 uS, no DAC/ADC,
 * no parasitics, no noise.  Reproduces the float network to rounding. */
xb_hw xb_hw_default(void);
/* Strict parse: unknown sections or keys, values out of range or of the wrong type are XB_ERR_CONFIG
 * naming file:line with a HINT; then xb_hw_validate. */
xb_status xb_hw_load(const char *path, xb_hw *out);
xb_status xb_hw_parse_string(const char *text, size_t len, const char *path, xb_hw *out);
/* Cross-field constraints (g_min < g_max, slicing, levels, ADC/DAC combinations ...). */
/* 1 when mapped layer i (of n_mapped, named name) stays digital on hw: the first or last layer without
 * map_first / map_last, or one of digital_layers. */
int xb_hw_layer_digital(const xb_hw *hw, const char *name, int i, int n_mapped);
/* The cell of the layer named name: [cell] with the layer's v_gate_layers entry, if any. */
xb_cell xb_hw_layer_cell(const xb_hw *hw, const char *name);
xb_status xb_hw_validate(const xb_hw *hw);
/* The fully resolved config: INI text (loadable again) or one JSON object. */
void xb_hw_print(const xb_hw *hw, FILE *f, int json);
/* 1 when nothing non-ideal is switched on (the float network is reproduced). */
int xb_hw_is_ideal(const xb_hw *hw);
/* 1 when something is calibrated from data (DAC/ADC with input_range or adc_range = calibrated, or
 * gain_calibration). */
int xb_hw_needs_calibration(const xb_hw *hw);
/* [arch] / [energy] / [pe] / [tim] (src/energy/ecfg.c): defaults (ISAAC's 32 nm components, docs/energy.md),
 * parsing of the four sections (any may be NULL), validation, printing (INI sections, or JSON members "arch",
 * "energy", "pe" and "tim" without the enclosing braces). */
xb_energy_cfg xb_energy_cfg_default(void);
xb_status xb_energy_cfg_parse(xb_ini *ini, xb_ini_section *arch, xb_ini_section *energy, xb_ini_section *pe,
                              xb_ini_section *tim, xb_energy_cfg *out);
xb_status xb_energy_cfg_validate(const xb_energy_cfg *e, const char *path);
void xb_energy_cfg_print(const xb_energy_cfg *e, FILE *f, int json);
/* Names of the enum values as written in configs. */
const char *xb_scheme_name(xb_scheme s);
const char *xb_solver_kind_name(xb_solver_kind s);

/* ------------------------------------------------------------------------------------------------ */
/* Quantizers (src/xbar/periph.c).  Rounding is to nearest, ties to even (IEEE rint), everywhere.     */
/*                                                                                                    */
/* Straight-through gradients (what training/attacks use): d out / d in = 1 where the input lies      */
/* inside the representable range [lo_code*step, hi_code*step] (rounding passes gradients unchanged)  */
/* and 0 where it was clipped; xb_quant_ste_grad applies exactly that.                               */
/* ------------------------------------------------------------------------------------------------ */

/* step * clamp(rint(x / step), lo_code, hi_code).  *clipped (may be NULL) += 1 when clamped. */
double xb_quant_uniform_ref(double x, double step, double lo_code, double hi_code, int *clipped);
/* Vector version into y (may alias x); returns the number of clipped elements. */
int64_t xb_quant_uniform(int64_t n, const float *x, float step, float lo_code, float hi_code, float *y);
/* dx[i] += dy[i] where lo_code*step <= x[i] <= hi_code*step (clipped straight-through estimator). */
void xb_quant_ste_grad(int64_t n, const float *x, float step, float lo_code, float hi_code, const float *dy,
                       float *dx);
/* DAC: input in [0, full_scale] -> code/(2^bits - 1) * full_scale, code in [0, 2^bits - 1]. */
double xb_quant_dac_ref(double x, int bits, double full_scale, int *clipped);
/* ADC of a current: unsigned: code = clamp(rint(i/fs * (2^b-1)), 0, 2^b-1); signed (b >= 2):
 * code = clamp(rint(i/fs * (2^(b-1)-1)), -(2^(b-1)-1), 2^(b-1)-1).  Returns code * fs/(max code). */
double xb_quant_adc_ref(double i, int bits, double full_scale, int is_signed, int *clipped);
/* Finite conductance levels: u in [0,1] -> rint(u (L-1)) / (L-1), clamped to [0,1]. */
double xb_quant_levels_ref(double u, int levels);
/* n standard normal floats (ziggurat; exact in distribution, about one rng draw each): the scalar
 * reference generator (the tiled path's shared reference-column noise draws from it). */
void xb_normal_fill(xb_rng *r, int64_t n, float *z);
/* The read-noise generator: the same ziggurat over 8 xoshiro256** lanes, two normals per 64-bit draw,
 * vectorized with AVX-512 (1.6 ns per normal against 2.3 ns); exact in distribution, another sequence.  init forks the
 * lanes from r and advances r by one draw. */
typedef struct xb_normal8 { uint64_t s[4][8]; xb_rng slow; } xb_normal8;
void xb_normal8_init(xb_normal8 *g, xb_rng *r);
void xb_normal8_fill(xb_normal8 *g, int64_t n, float *z);
/* sig[i] += sqrt(max(var[i], 0)) z_i with z_i from g (the draw of one output's read noise). */
void xb_normal8_add(xb_normal8 *g, int64_t n, const float *var, float *sig);
/* The p-th percentile (0 < p <= 100, nearest rank: the ceil(p/100 n)-th smallest) of |v|; p = 100 is
 * the maximum.  v is reordered. */
double xb_percentile_abs(float *v, int64_t n, double p);

/* ------------------------------------------------------------------------------------------------ */
/* Devices (src/xbar/device.c)                                                                        */
/* ------------------------------------------------------------------------------------------------ */

typedef struct xb_device_counts {
    int64_t cells, stuck_gmin, stuck_gmax, clipped; /* clipped: variation pushed G out of its bounds */
} xb_device_counts;

/* G(t) / G(t0) = (t/t0)^-nu */
double xb_drift_factor(double nu, double t_s, double t0_s);
/* In place on n target conductances g: programming variation, then drift, then stuck-at faults, each
 * from its own fork of rng (0: variation, 1: faults, 2: drift spread), so switching one effect on does
 * not change the numbers of the others.  Stuck cells sit exactly at g_min / g_max and do not drift. */
void xb_device_program(const xb_hw *hw, int64_t n, double *g, const xb_rng *rng, xb_device_counts *cnt);

/* ------------------------------------------------------------------------------------------------ */
/* Mapping (src/xbar/map.c): how one weight block is cut into tiles and cells                         */
/* ------------------------------------------------------------------------------------------------ */

#define XB_MAX_SLICES 16

typedef struct xb_map_geom {
    int rows_out, k;           /* weight block: rows_out outputs x k inputs (the crossbar rows) */
    int R, C;                  /* physical array */
    int n_sign;                /* 2 differential, 1 offset */
    int slices;                /* cells per weight and sign (bit slices) */
    int slice_bits;            /* bits per slice (weight_bits > 0) */
    int cells_per_weight;      /* n_sign * slices */
    int ref_cols;              /* reference columns per array (offset + reference = column) */
    int wcols;                 /* weight columns (outputs) per logical tile */
    int arrays;                /* physical arrays per logical tile */
    int rt, ct;                /* row tiles ceil(k/R), column tiles ceil(rows_out/wcols) */
    int64_t tiles, arrays_total, cells_used, cells_alloc;
    double qmax;               /* integer weight range: w = s * code / qmax */
    double kmax;               /* codes per cell: G = g_min + g_unit * code, code in [0, kmax] */
    double g_unit_s;           /* siemens per code step */
    double ref_code[XB_MAX_SLICES]; /* offset: code of the reference (weight 0) per slice */
} xb_map_geom;

xb_status xb_map_geom_init(const xb_hw *hw, int rows_out, int k, xb_map_geom *g);
/* Where cell (sign 0:+ 1:-, slice t) of output jj (0..wcols-1) of a tile lives: array and column. */
void xb_map_cell(const xb_map_geom *g, int sign, int slice, int jj, int *array, int *col);
/* The reference column of slice t. */
void xb_map_ref(const xb_map_geom *g, int slice, int *array, int *col);
/* Weight clip scale s of a block (max |w| or the configured percentile; 1 if all zero). */
double xb_map_scale(const xb_hw *hw, int64_t n, const float *w);
/* Integer codes per slice of one weight: code[sign*slices + t] (differential: the unused sign is 0;
 * offset: sign 0 only).  Continuous mappings give fractional codes. */
void xb_map_codes(const xb_hw *hw, const xb_map_geom *g, double w, double s, double *code);
/* Target conductances of logical tile (r, c) of block W (rows_out x k, row-major): arrays * R * C
 * doubles, array-major; unused cells at g_min, reference columns at their reference code. */
/* s_rows (may be NULL): per output row its own clip scale instead of s (scale = column) */
void xb_map_tile_targets(const xb_hw *hw, const xb_map_geom *g, const float *w, double s, const float *s_rows, int r, int c,
                         double *gt);

/* ------------------------------------------------------------------------------------------------ */
/* On-chip update (src/xbar/update.c): writing conductance changes during training (TxSim, item 6)    */
/*                                                                                                    */
/* The training loop keeps the conductances as its state.  Per step it turns each weight's change    */
/* into per-cell conductance changes (xb_update_weight_cells) and writes them with the device model  */
/* of hw->update (xb_device_update).  docs/hardware.md ([update]) has the formulas and their sources. */
/* Both functions are reentrant (no globals, no allocation) and never abort on their inputs.         */
/* ------------------------------------------------------------------------------------------------ */

typedef struct xb_update_counts {
    int64_t updates;           /* elements with a finite, non-zero requested change */
    int64_t pulses;            /* pulses applied (dg_min_s > 0 only; 0 for continuous updates) */
    int64_t clamped_gmin;      /* elements left at g_min by the clamp (an update or a start below the range) */
    int64_t clamped_gmax;      /* elements left at g_max by the clamp */
    int64_t skipped;           /* elements with a non-finite dg or g, left unchanged */
} xb_update_counts;

/* Largest number of pulses one element receives in one call (larger requests are cut to it and the
 * cut is not counted separately; a full-range sweep takes (g_max - g_min)/dg_min_s pulses). */
#define XB_UPDATE_MAX_PULSES 1000000

/* 1 when hw->update writes every requested change exactly (linear, continuous). */
int xb_update_is_ideal(const xb_hw *hw);
/* Applies the requested changes dg[i] (siemens) to the conductances g[i] in place under hw->update:
 *   linear      G <- clamp(G + dG_q)
 *   txsim       G <- clamp(G + dG_q f(G) + gamma sigma0 sqrt(|dG_q| (g_max - g_min)) N(0,1)),
 *               f = 1 - v (G - g_min)/(g_max - g_min) potentiating, 1 - v (g_max - G)/(g_max - g_min)
 *               depressing (kept >= 0)
 *   softbounds  n pulses, each G <- clamp(G + step), step up = dg_min (1 + up_down) 2 (g_max - G)/range,
 *               down = -dg_min (1 - up_down) 2 (G - g_min)/range, times (1 + ctoc N(0,1)) per pulse
 * where dG_q = dG, or sign(dG) n dg_min_s with n = round(|dG|/dg_min_s) pulses (nearest or stochastic),
 * and clamp is to [g_min, g_max].  A g[i] outside the range is first moved to the nearest bound.
 * Elements with dg[i] == 0 are untouched.  Randomness: element i draws only from xb_rng_fork(rng, i),
 * so every element's result depends on (rng, i, g[i], dg[i]) alone: bit-reproducible and independent
 * of the thread count.  cnt (required) is added to, not reset. */
void xb_device_update(const xb_hw *hw, int64_t n, double *g, const double *dg, const xb_rng *rng,
                      xb_update_counts *cnt);
/* The same for elements i0 .. i0+n-1 of a larger array whose element i0 is g[0]: element i0+j draws
 * from xb_rng_fork(rng, i0 + j).  Any split of an array into pieces (e.g. per OpenMP thread), each
 * called with its offset, gives the bits of one xb_device_update call over the whole array. */
void xb_device_update_at(const xb_hw *hw, int64_t i0, int64_t n, double *g, const double *dg, const xb_rng *rng,
                         xb_update_counts *cnt);
/* The per-cell conductance changes (siemens) for a change dw_code of one weight in integer-code units
 * (w = s code / qmax, map.c), into dg_cells[sign*slices + t] (the layout of xb_map_codes;
 * cells_per_weight entries, the ones not written to are 0).  The receiving slice t (slice_update:
 * msb = slices - 1, lsb = 0) has significance 2^(slice_bits t), so its cells change by
 * dc = dw_code / 2^(slice_bits t) codes, g_unit_s dc siemens:
 *   differential, split:  G+ += g_unit dc/2, G- -= g_unit dc/2
 *   differential, sign:   dc > 0: G+ += g_unit dc;  dc < 0: G- += g_unit |dc|  (potentiation only)
 *   offset:               the cell gets g_unit dc (its reference column is never written).
 * A non-finite dw_code gives all zeros. */
void xb_update_weight_cells(const xb_hw *hw, const xb_map_geom *geom, double dw_code, double *dg_cells);
/* Names of the enum values as written in configs. */
const char *xb_update_model_name(xb_update_model m);

/* ------------------------------------------------------------------------------------------------ */
/* Crossbar network (src/xbar/xlayer.c): programmed tiles of every mapped layer behind the hook       */
/* ------------------------------------------------------------------------------------------------ */

typedef struct xb_xlayer_stats {
    char name[128];
    int mapped;                /* 0: kept digital */
    int rows_out, k, groups;
    int64_t tiles, arrays, cells_used, cells_alloc;
    int64_t cells_low;         /* of cells_used, those whose target conductance is below mid-range (g_min+g_max)/2 */
    int weight_bits, slices;   /* the layer's weight bits (0: analog levels) and bit slices per sign */
    int input_bits, planes;    /* its input code's bits (0: no DAC) and input planes per read */
    double w_scale;            /* clip scale s (weight units) */
    double input_full_scale;   /* x_max (activation units; 0 when unused) */
    double adc_full_scale_a;   /* amperes (0: no ADC) */
    double gain;               /* digital output gain (1 unless gain_calibration) */
    /* calibrated values in force that fell back to 1 instead of coming from data (the layer runs, but on a
     * range or gain nothing measured; xb_xeval_print reports them): 1 per convolution group (summed over
     * groups here, over seeds in xb_xeval_result) whose input range x_max came out 0 or not finite (all-zero
     * inputs), whose ADC full scale came out 0 or not finite (all-zero signals), whose gain came out not
     * finite or <= 0 (a hardware output that is zero or not positively correlated with the float one) */
    int64_t fallback_input, fallback_adc, fallback_gain;
    int64_t stuck_gmin, stuck_gmax, g_clipped;
    int64_t adc_conversions, adc_clipped;
    int64_t dac_conversions, dac_clipped;
    int64_t adc_reruns;        /* bound management: input vectors read again on a row tile (each halving counts) */
    double err_sq, ref_sq;     /* sum (y_hw - y_float)^2 and sum y_float^2 over the sampled outputs */
    double program_s, forward_s;
} xb_xlayer_stats;

typedef struct xb_xnet xb_xnet;

/* Tiles and geometry for every mapped layer of m (per convolution group), the solver plan and the
 * workspaces.  Layer names in hw->digital must exist in the model. */
xb_status xb_xnet_init(const xb_hw *hw, xb_model *m, xb_xnet **out);
/* Per mapped layer precisions (a quantized model's, xb_quant_layer_precisions): weight_bits replaces the
 * config's [mapping] weight_bits for the layer (its slices follow: bits_per_cell, or the largest divisor
 * of weight_bits below it), input_bits the [input] input_bits (bit-serial: its planes) or the DAC's levels;
 * 0 keeps the config's. */
typedef struct xb_layer_precision { int weight_bits, input_bits; } xb_layer_precision;
/* A quantized model's precisions in the crossbar's terms (src/xbar/xquant.c): per mapped layer the weight
 * bits that hold its quantizer's codes exactly (a b-bit uniform weight: b - 1 in a differential pair, b in
 * the offset scheme; binary and ternary 1 or 2; 0 for float and asymmetric ternary weights) and the bits of
 * the activation quantizer feeding it (average pooling and gap make values off any grid: 0 there).
 * specs: xb_quant_specs's (may be NULL).  Returns 1 when some layer has one. */
int xb_hw_quant_precisions(const xb_hw *hw, const xb_model *m, const xb_qw_spec *specs, xb_layer_precision *prec);
/* xb_xnet_init with per-layer precisions (prec: xb_model_n_mapped entries, or NULL) */
xb_status xb_xnet_init_ex(const xb_hw *hw, xb_model *m, const xb_layer_precision *prec, xb_xnet **out);
void xb_xnet_free(xb_xnet *xn);
/* Programs every tile from the model's current weights with device seed `seed` (OpenMP over tiles).
 * Resets statistics and calibration.  XB_ERR_NUMERIC if a circuit solve fails. */
xb_status xb_xnet_program(xb_xnet *xn, uint64_t seed);
/* I-FCM for programming (TxSim's interpolated fast crossbar model): xb_xnet_keep_distortion makes every
 * programming that solves the circuit also keep each cell's distortion ratio E ./ G (forward and
 * backward reads); xb_xnet_program_distorted then programs (targets, devices) without solving, its
 * effective matrices the held ratios times the new conductances.  No-ops without parasitics. */
xb_status xb_xnet_keep_distortion(xb_xnet *xn);
xb_status xb_xnet_program_distorted(xb_xnet *xn, uint64_t seed);
/* Programs several networks (one per seed) in one parallel loop over (seed, tile). */
xb_status xb_xnet_program_many(xb_xnet *const *xns, const uint64_t *seeds, int n);
/* Installs / removes the matmul hook on the model. */
void xb_xnet_attach(xb_xnet *xn);
void xb_xnet_detach(xb_xnet *xn);
/* Folded mode, for inference at float speed: when every mapped layer is a fixed linear map (no DAC,
 * no ADC, no read noise; parasitics, levels, slicing, variation, faults and drift are fine), on = 1
 * writes the programmed effective weights into the model's parameters (keeping the float ones) and
 * detaches the hook, so the model's own conv/linear kernels run the crossbar network; on = 0 puts
 * the float weights back.  No per-layer statistics are gathered while folded.  XB_ERR_UNSUPPORTED
 * when the config has per-MVM stages.  Unfold before programming again or saving weights. */
int xb_xnet_foldable(const xb_xnet *xn);
xb_status xb_xnet_fold(xb_xnet *xn, int on);
/* 1 if the config has calibrated input or ADC ranges that xb_xnet_calibrate must set. */
int xb_xnet_needs_calibration(const xb_xnet *xn);
/* One forward of n NCHW images (attached or not; attaches for the call) in calibration mode: each
 * layer sets its input range and ADC full scale from these images, in layer order, so later layers
 * calibrate on hardware outputs.  Then resets statistics.  Plans the model for batch n (call
 * xb_model_set_batch again before other batches); again after every xb_xnet_program. */
xb_status xb_xnet_calibrate(xb_xnet *xn, int n, const float *x);
void xb_xnet_reset_stats(xb_xnet *xn);
/* Fixed clip scales (weight units), one per mapped layer: > 0 maps that layer's weights with s = this instead
 * of the config's w_clip rule from the weights (e.g. the scale its weights had before weight-constrained
 * training, so that a narrower weight range uses the lower part of the same conductance range; weights
 * beyond it clip); 0: the rule.  NULL clears them.  Takes effect at the next programming.  [mapping]
 * scale = column refuses them (XB_ERR_UNSUPPORTED). */
xb_status xb_xnet_set_weight_scales(xb_xnet *xn, const double *scales);
/* Per mapped model layer (groups merged), in model order. */
int xb_xnet_n_layers(const xb_xnet *xn);
void xb_xnet_layer_stats(const xb_xnet *xn, int i, xb_xlayer_stats *out);
/* The programmed effective weights of mapped layer i, group g (rows_out x k floats, weight units, in the
 * layer's output order): the linear part of the layer (without DAC, ADC and read noise), or NULL if the
 * layer is digital.  With [mapping] rearrange, a copy valid until the next call for the layer. */
const float *xb_xnet_effective_weights(const xb_xnet *xn, int i, int g);
/* The same for the backward (column-driven) read; the forward's when the two reads agree. */
const float *xb_xnet_effective_weights_bwd(const xb_xnet *xn, int i, int g);
/* [mapping] rearrange: the order of mapped layer i's (group g's) outputs over its column tiles, perm[p] = the
 * output in tile column position p (c * wcols + column) as of the last programming; NULL when not rearranged. */
const int *xb_xnet_layer_perm(const xb_xnet *xn, int i, int g);
/* The network as a mapped-matmul operator (what xb_xnet_attach installs), for callers that wrap it.
 * Forward: the crossbar product of the layer (digital layers: the float product).  Backward to the
 * input: through the programmed effective weights (or the float ones, xb_xnet_set_backward), then the
 * DAC's straight-through mask (zero where |x| > the input range).  Backward to the weights: dy times
 * the input the tiles saw (after the DAC).  On the tiled path (ADC) both backward products apply the
 * ADC's straight-through mask of the call's forward: per row tile, output, column and input pass, the
 * gradient passes only where none of the partial sum's conversions saturated (XB_ERR_STATE when the
 * backward is not of the layer's last forward).  Every call checks that the tiles were programmed from
 * the weights the model holds now: XB_ERR_STATE otherwise (never a silent product with old weights). */
xb_mm_op xb_xnet_op(xb_xnet *xn);
typedef enum xb_xnet_backward {
    XB_XBWD_HARDWARE = 0, /* dx = Eb^T dy with the effective weights Eb of the programmed tiles' backward
                             read (columns driven through r_driver, rows sensed through r_sense; equal to
                             the forward's E when r_driver == r_sense, by reciprocity) */
    XB_XBWD_FLOAT,        /* dx = W^T dy, dW = dy x^T: the float layer's gradient (straight through) */
    XB_XBWD_COUNT
} xb_xnet_backward;
void xb_xnet_set_backward(xb_xnet *xn, xb_xnet_backward b);
/* on = 1 (default): every product goes through the pipeline and gathers the per-layer statistics.
 * on = 0 (training): a layer that is a fixed linear map (no DAC, ADC or read noise) hands the model its
 * effective weights and the model's own fused kernels run it (the operator's linear_weights). */
void xb_xnet_set_statistics(xb_xnet *xn, int on);
/* on = 1: programming keeps the calibrated input ranges, ADC full scales and gains that are set (for
 * training, which reprograms after every update); xb_xnet_clear_ranges forgets them, to be calibrated
 * again after the next programming. */
void xb_xnet_keep_ranges(xb_xnet *xn, int on);
void xb_xnet_clear_ranges(xb_xnet *xn);
/* 1 when the tiles were programmed with device seed `seed` from the weights the model holds now. */
int xb_xnet_current(const xb_xnet *xn, uint64_t seed);
/* Forwards refused because the weights had changed since programming. */
uint64_t xb_xnet_stale_refusals(const xb_xnet *xn);

/* ------------------------------------------------------------------------------------------------ */
/* On-chip training state (src/xbar/xonchip.c, TxSim)                                                 */
/* ------------------------------------------------------------------------------------------------ */

/* Keeps every cell's conductance after the next programming as the network's state (call right after
 * xb_xnet_init).  [update] refresh_solver = distortion also keeps E ./ G of each solve; = decoupled
 * makes the approximate solver's plans. */
xb_status xb_xnet_onchip_init(xb_xnet *xn);
/* Rebuilds every tile's effective matrices (forward and, when it differs, backward read) from the
 * state: solve = 1 by the circuit solver ([circuit] solver, or the decoupled one when refresh_solver =
 * decoupled), solve = 0 by the distortion ratios of the last solve applied to the current conductances
 * (refresh_solver = distortion; otherwise it solves), solve = -1 holds them as they are (I-FCM between
 * solves with refresh_solver = exact or decoupled).  The tiles then stand for the model's current
 * weights (which xb_xnet_onchip_update derived from the state). */
xb_status xb_xnet_onchip_refresh(xb_xnet *xn, int solve);
/* Writes the change of every mapped weight (the model's weights now minus w_old, a copy of the whole
 * parameter block before the optimizer step) into the conductances through the device update model
 * (xb_update_weight_cells, xb_device_update_at; random stream "update" of the device seed, forked per
 * step, layer and cell), then sets the model's mapped weights to what the conductances hold (an ideal
 * read).  The effective matrices are not rebuilt: call xb_xnet_onchip_refresh.  cnt may be NULL. */
xb_status xb_xnet_onchip_update(xb_xnet *xn, const float *w_old, uint64_t step, xb_update_counts *cnt);
/* The state as safetensors, and back: every mapped layer's conductances, those of the last circuit
 * solve (refresh_steps > 0) and its periphery (clip scale, calibrated input range, ADC full scale and
 * gain, the read-noise stream's position), float64.  Load into a network programmed first; the model's
 * mapped weights are derived from the loaded state and the matrices of the last solve rebuilt: redo the
 * last step's refresh (xb_xnet_onchip_refresh) to stand exactly where the saved run stood. */
xb_status xb_xnet_onchip_save(const xb_xnet *xn, const char *path);
xb_status xb_xnet_onchip_load(xb_xnet *xn, const char *path);

/* ------------------------------------------------------------------------------------------------ */
/* Training through the crossbars (src/xbar/xtrain.c)                                                 */
/* ------------------------------------------------------------------------------------------------ */

typedef enum xb_hw_mode {
    XB_HWMODE_AWARE = 0,       /* hardware-aware training: every mapped layer's forward through the crossbar
                                  model of the current weights, backward through the same hardware (or the
                                  float weights), float weights updated and the tiles programmed again */
    XB_HWMODE_ONCHIP,          /* on-chip training as TxSim models it: the conductances are the state, each
                                  update is written into them with [update]'s device model, the weights are
                                  read back from them, the circuit re-solved every [update] refresh_steps */
    XB_HWMODE_COUNT
} xb_hw_mode;
typedef enum xb_resample {
    XB_RESAMPLE_STEP = 0,      /* a new device sample (variation, faults, read-noise stream) every step */
    XB_RESAMPLE_EPOCH,         /* one per epoch */
    XB_RESAMPLE_NEVER,         /* one for the whole run (the device seed itself) */
    XB_RESAMPLE_COUNT
} xb_resample;
typedef struct xb_xtrain_opts {
    xb_hw_mode mode;
    xb_resample resample;
    xb_xnet_backward backward;
    uint64_t device_seed;      /* sample i of the run uses device seed device_seed + i (i = step or epoch) */
    int calibration_images;    /* calibrated ranges: training images they are set from at each epoch's start
                                  (0: the config's calibration_images) */
    const char *state_out;     /* onchip: the conductance state is written here after every epoch (NULL: not) */
    const char *state_in;      /* onchip: resume from this state (with the trainer's --resume checkpoint) */
} xb_xtrain_opts;
/* What training through the crossbars spent and did (filled by xb_xtrain when not NULL). */
typedef struct xb_xtrain_stats {
    double program_s, refresh_s, update_s, calibrate_s; /* wall seconds */
    int64_t programs, solves, distortion_refreshes, holds;
    xb_update_counts updates;  /* onchip: the cell writes */
} xb_xtrain_stats;
xb_xtrain_opts xb_xtrain_opts_default(void);
const char *xb_hw_mode_name(xb_hw_mode m);
const char *xb_resample_name(xb_resample r);
/* xb_train through the crossbars of hw.  aware: the network is programmed from the current weights
 * before the first step and again after every update (with the device sample the resampling policy
 * gives).  onchip: programmed once (device seed), then every update is written into the conductances
 * (xb_xnet_onchip_update), the weights read back from them, and the effective matrices rebuilt as
 * [update] refresh_steps / refresh_solver say (solve every step, or every L steps with the matrices held
 * or distorted in between); the optimizer's step on the mapped weights is the requested change (use
 * --momentum 0 for TxSim's plain SGD).  The per-epoch test accuracy is measured on the hardware of that
 * moment, and o->hooks (if any) are called after the crossbar's own.  Calibrated ranges are set at the start of every epoch from the first
 * calibration images of `train` (unaugmented) and kept while the weights change.  Same seeds, same
 * bits; --resume continues bit for bit at epoch boundaries. */
xb_status xb_xtrain(xb_model *m, const xb_hw *hw, const xb_dataset *train, const xb_dataset *test,
                    const xb_train_opts *o, const xb_xtrain_opts *xo, xb_train_result *res, xb_xtrain_stats *stats);

/* ------------------------------------------------------------------------------------------------ */
/* Monte-Carlo evaluation (src/xbar/xeval.c)                                                          */
/* ------------------------------------------------------------------------------------------------ */

typedef struct xb_xeval_opts {
    int seeds;                 /* device samples K */
    uint64_t seed;             /* first device seed; sample i uses seed + i */
    int64_t limit;             /* test images (0: all) */
    int batch;
    int progress;
    int software;              /* also evaluate the float network in the same run */
    int calibration_images;    /* 0: the config's value */
    int64_t adapt_bn;          /* batchnorm adaptation (the 2023 batchnorm paper): before testing each device
                                  sample, its running statistics are recomputed through the hardware on the
                                  first adapt_bn images of adapt_data (unaugmented); restored afterwards (0: off) */
    const xb_dataset *adapt_data;
    const xb_layer_precision *precisions; /* per mapped layer (a quantized model's), or NULL: the config's */
    const double *w_scales;    /* per mapped layer, > 0: its fixed clip scale (xb_xnet_set_weight_scales), or NULL */
    int energy;                /* >= 1: the energy report (xb_energy.h) of the first device sample, counted from its
                                  test images with this sample stride for the arrays' quadratic forms; 0: none */
} xb_xeval_opts;
xb_xeval_opts xb_xeval_opts_default(void);

typedef struct xb_xeval_result {
    char model[128];
    int64_t images;
    int seeds;
    double sw_accuracy, sw_loss, sw_seconds;   /* sw_accuracy < 0: not measured */
    double *accuracy, *loss;                   /* per seed */
    double acc_mean, acc_std;                  /* sample std (n-1); 0 for one seed */
    double program_s, calibrate_s, eval_s;     /* wall-clock totals over seeds */
    double sw_cpu_s, program_cpu_s, calibrate_cpu_s, eval_cpu_s; /* process CPU time of the same phases */
    int n_layers;
    xb_xlayer_stats *layers;                   /* summed over seeds (divide counts by seeds) */
    struct xb_energy_report *energy;           /* opts.energy: the first sample's energy report (else NULL) */
} xb_xeval_result;

/* Software accuracy (opts->software), then K device seeds: program, calibrate on `calib` (NULL: the
 * first images of `test`), evaluate.  Restores the model's hook on return. */
xb_status xb_xeval_run(xb_model *m, const xb_hw *hw, const xb_dataset *test, const xb_dataset *calib,
                       const xb_xeval_opts *o, xb_xeval_result *r);
void xb_xeval_result_free(xb_xeval_result *r);
/* Human-readable report, or one JSON object holding the resolved config, accuracies, layers (with their
 * "calibration_fallbacks" counts) and "warnings" (strings).  The report ends with its warnings, one line
 * each (xb_xeval_print_warnings). */
void xb_xeval_print(const xb_xeval_result *r, const xb_hw *hw, FILE *f, int json);
/* The warnings of a result: per layer, every kind of calibration that fell back to 1 (xb_xlayer_stats
 * fallback_*), with how often and a HINT; lines "warning: ..." (json: comma-separated JSON strings).  Returns
 * their number.  The library prints nothing by itself: a program that wants them on stderr (say, next to a
 * JSON report on stdout) calls this with stderr. */
int xb_xeval_print_warnings(const xb_xeval_result *r, FILE *f, int json);

#ifdef __cplusplus
}
#endif

#endif /* XB_XBAR_H */
