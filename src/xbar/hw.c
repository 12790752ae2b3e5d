/* hw.c -- hardware configs (--hw FILE.cfg): strict parsing into xb_hw, cross-field validation and
 * printing of the resolved config.  The reference of every key is docs/hardware.md; keep the two in
 * step (the table there follows the order of the getters below). */
#include "xb_xbar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const scheme_names[] = {"differential", "offset", NULL};
static const char *const layout_names[] = {"separate", "interleaved", NULL};
static const char *const ref_names[] = {"column", "digital", NULL};
static const char *const wclip_names[] = {"max", "percentile", NULL};
static const char *const scale_names[] = {"layer", "column", NULL};
static const char *const signed_names[] = {"split", "bipolar", NULL};
static const char *const in_range_names[] = {"calibrated", "fixed", NULL};
static const char *const adc_range_names[] = {"calibrated", "fixed", "worst_case", NULL};
static const char *const adc_signal_names[] = {"difference", "column", NULL};
static const char *const var_names[] = {"none", "gaussian", "lognormal", NULL};
static const char *const mode_names[] = {"relative", "absolute", NULL};
static const char *const gclip_names[] = {"zero", "range", NULL};
static const char *const gain_names[] = {"none", "per_layer", NULL};
static const char *const solver_names[] = {"exact", "cholmod", "decoupled", "none", NULL}; /* xb_solve_method's */
static const char *const upd_model_names[] = {"linear", "txsim", "softbounds", NULL};
static const char *const rounding_names[] = {"nearest", "stochastic", NULL};
static const char *const pair_names[] = {"split", "sign", NULL};
static const char *const slice_names[] = {"msb", "lsb", NULL};
static const char *const refresh_names[] = {"exact", "decoupled", "distortion", NULL};
static const char *const inscale_names[] = {"layer", "vector", NULL};
static const char *const bm_names[] = {"none", "iterative", NULL};
static const char *const dcomp_names[] = {"none", "global", "column", NULL};
static const char *const rearrange_names[] = {"none", "round-robin", "sorted", NULL};
static const char *const pack_names[] = {"none", "columns", "rows", NULL};
/* drift_compensation also takes the boolean spellings of the configs written before it had three values */
static const char *const dcomp_spellings[] = {"none", "global", "column", "false", "true", "0", "1", "no", "yes", NULL};
static const int dcomp_of_spelling[] = {0, 1, 2, 0, 1, 0, 1, 0, 1};

_Static_assert(XB_SCHEME_COUNT == 2 && XB_LAYOUT_COUNT == 2 && XB_REF_COUNT == 2 && XB_WCLIP_COUNT == 2 &&
               XB_SIGNED_COUNT == 2 && XB_RANGE_COUNT == 3 && XB_ADC_SIGNAL_COUNT == 2 && XB_VAR_COUNT == 3 &&
               XB_NOISE_MODE_COUNT == 2 && XB_GCLIP_COUNT == 2 && XB_SOLVER_COUNT == 4 &&
               XB_UPDATE_MODEL_COUNT == 3 && XB_PULSE_ROUNDING_COUNT == 2 && XB_PAIR_UPDATE_COUNT == 2 &&
               XB_SLICE_UPDATE_COUNT == 2 && XB_REFRESH_SOLVER_COUNT == 3 && XB_INSCALE_COUNT == 2 &&
               XB_BM_COUNT == 2 && XB_DRIFTCOMP_COUNT == 3,
               "name tables follow the enums");
_Static_assert(XB_SOLVE_METHOD_COUNT == 3 && (int)XB_SOLVER_EXACT == (int)XB_SOLVE_EXACT &&
               (int)XB_SOLVER_CHOLMOD == (int)XB_SOLVE_CHOLMOD && (int)XB_SOLVER_DECOUPLED == (int)XB_SOLVE_DECOUPLED &&
               (int)XB_SOLVER_NONE == (int)XB_SOLVE_METHOD_COUNT,
               "xb_solver_kind is xb_solve_method plus none: a new solver method needs a config name here");

const char *xb_scheme_name(xb_scheme s) { return (unsigned)s < XB_SCHEME_COUNT ? scheme_names[s] : "?"; }
const char *xb_solver_kind_name(xb_solver_kind s) { return (unsigned)s < XB_SOLVER_COUNT ? solver_names[s] : "?"; }
const char *xb_update_model_name(xb_update_model m) {
    return (unsigned)m < XB_UPDATE_MODEL_COUNT ? upd_model_names[m] : "?";
}

xb_hw xb_hw_default(void) {
    xb_hw h;
    memset(&h, 0, sizeof h);
    snprintf(h.name, sizeof h.name, "default");
    h.rows = h.cols = 64;
    h.map_first = h.map_last = 1;
    h.scheme = XB_SCHEME_DIFFERENTIAL;
    h.layout = XB_LAYOUT_SEPARATE;
    h.reference = XB_REF_COLUMN;
    h.g_min_s = 1e-6;
    h.g_max_s = 1e-5;
    h.w_clip = XB_WCLIP_MAX;
    h.w_clip_percentile = 100;
    h.v_read_v = 0.2;
    h.signed_inputs = XB_SIGNED_SPLIT;
    {   /* field by field: a struct assignment would copy the temporary's padding, and configs compare bytewise */
        const xb_cell c = xb_cell_1t1r_default();
        h.cell.type = XB_CELL_RESISTOR;
        h.cell.v_gate_v = c.v_gate_v;
        h.cell.beta_a_per_v2 = c.beta_a_per_v2;
        h.cell.v_t_v = c.v_t_v;
        h.cell.lambda_per_v = c.lambda_per_v;
        h.cell.model = c.model;
        h.cell.ekv_n = c.ekv_n;
        h.cell.ekv_ut_v = c.ekv_ut_v;
    }
    h.cell_compensate = 1;
    h.input_range = XB_RANGE_CALIBRATED;
    h.input_percentile = 100;
    h.adc_signal = XB_ADC_DIFFERENCE;
    h.adc_range = XB_RANGE_CALIBRATED;
    h.adc_percentile = 100;
    h.calibration_images = 128;
    h.bound_management_max_steps = 3;
    h.solver = XB_SOLVER_EXACT;
    h.variation_mode = XB_NOISE_RELATIVE;
    h.read_noise_mode = XB_NOISE_RELATIVE;
    h.drift_t_s = h.drift_t0_s = 1;
    h.update.model = XB_UPDATE_LINEAR; /* the rest 0: continuous, split pairs, msb slice, solve every step */
    h.update.write_noise_sigma = 0.01;
    h.energy = xb_energy_cfg_default();
    return h;
}

int xb_hw_is_ideal(const xb_hw *h) {
    int parasitic = h->solver != XB_SOLVER_NONE &&
                    (h->circuit.r_wire_ohm > 0 || h->circuit.r_driver_ohm > 0 || h->circuit.r_sense_ohm > 0);
    return !parasitic && h->cell.type == XB_CELL_RESISTOR && h->weight_bits == 0 && h->levels == 0 && h->dac_bits == 0 && h->adc_bits == 0 &&
           (h->variation == XB_VAR_NONE || h->variation_sigma == 0) && h->read_noise_sigma == 0 &&
           h->stuck_at_gmin_rate == 0 && h->stuck_at_gmax_rate == 0 && h->drift_nu == 0 && h->drift_nu_sigma == 0;
}

int xb_hw_needs_calibration(const xb_hw *h) {
    return ((h->dac_bits > 0 || h->adc_bits > 0) && h->input_range == XB_RANGE_CALIBRATED &&
            h->input_scaling == XB_INSCALE_LAYER) ||
           (h->adc_bits > 0 && h->adc_range == XB_RANGE_CALIBRATED) || h->gain_calibration;
}

/* ------------------------------------------------------------------------------------------------ */
/* Validation                                                                                        */
/* ------------------------------------------------------------------------------------------------ */

#define BAD(...) return xb_errorf(XB_ERR_CONFIG, __VA_ARGS__)

/* [update]: ranges (for configs built in code) and the keys that only one model reads. */
static xb_status validate_update_(const xb_hw *h, const char *p) {
    const xb_update_cfg *u = &h->update;
    const double range = h->g_max_s - h->g_min_s;
    if ((unsigned)u->model >= XB_UPDATE_MODEL_COUNT || (unsigned)u->pulse_rounding >= XB_PULSE_ROUNDING_COUNT ||
        (unsigned)u->pair_update >= XB_PAIR_UPDATE_COUNT || (unsigned)u->slice_update >= XB_SLICE_UPDATE_COUNT ||
        (unsigned)u->refresh_solver >= XB_REFRESH_SOLVER_COUNT)
        BAD("%s: [update] an enum field is out of range. HINT: set it from the names in docs/hardware.md", p);
    if (!(u->dg_min_s >= 0 && u->dg_min_s < range))
        BAD("%s: [update] dg_min_s = %g S must be >= 0 and below the device range g_max_s - g_min_s = %g S. HINT: "
            "0 means continuous updates; a pulse is typically 1/100 .. 1/1000 of the range", p, u->dg_min_s, range);
    if (!(u->nonlinearity >= 0 && u->nonlinearity <= 10) || !(u->write_noise >= 0 && u->write_noise <= 1e3) ||
        !(u->write_noise_sigma >= 0 && u->write_noise_sigma <= 10) || !(u->write_noise_ctoc >= 0 &&
        u->write_noise_ctoc <= 10) || !(u->up_down > -1 && u->up_down < 1) || u->refresh_steps < 0)
        BAD("%s: [update] out of range: nonlinearity %g (0..10), write_noise %g (0..1000), write_noise_sigma %g "
            "(0..10), write_noise_ctoc %g (0..10), up_down %g (-1..1 exclusive), refresh_steps %d (>= 0)", p,
            u->nonlinearity, u->write_noise, u->write_noise_sigma, u->write_noise_ctoc, u->up_down, u->refresh_steps);
    if (u->model != XB_UPDATE_TXSIM && (u->nonlinearity > 0 || u->write_noise > 0))
        BAD("%s: [update] nonlinearity = %g / write_noise = %g with model = %s; only the txsim model reads them. "
            "HINT: set model = txsim, or drop them", p, u->nonlinearity, u->write_noise, upd_model_names[u->model]);
    if (u->model != XB_UPDATE_SOFTBOUNDS && (u->up_down != 0 || u->write_noise_ctoc > 0))
        BAD("%s: [update] up_down = %g / write_noise_ctoc = %g with model = %s; only the softbounds model reads "
            "them. HINT: set model = softbounds, or drop them", p, u->up_down, u->write_noise_ctoc,
            upd_model_names[u->model]);
    if (u->write_noise > 0 && u->write_noise_sigma == 0)
        BAD("%s: [update] write_noise = %g with write_noise_sigma = 0 adds no noise. HINT: the noise std is "
            "write_noise x write_noise_sigma x sqrt(|dG| (g_max - g_min)); give write_noise_sigma > 0", p,
            u->write_noise);
    if (u->pulse_rounding == XB_PULSE_STOCHASTIC && u->dg_min_s == 0)
        BAD("%s: [update] pulse_rounding = stochastic needs pulses (dg_min_s > 0). HINT: give dg_min_s, the "
            "conductance step of one pulse", p);
    if (u->model == XB_UPDATE_SOFTBOUNDS) {
        if (u->write_noise_ctoc > 0 && u->dg_min_s == 0)
            BAD("%s: [update] write_noise_ctoc is per pulse and needs dg_min_s > 0 (continuous soft bounds have no "
                "pulses). HINT: give dg_min_s", p);
        if (2 * u->dg_min_s * (1 + fabs(u->up_down)) > range)
            BAD("%s: [update] softbounds: a pulse of 2 dg_min_s (1 + |up_down|) = %g S exceeds the range %g S and "
                "would jump past the bound. HINT: dg_min_s is the step at the range centre; choose it well below "
                "(g_max_s - g_min_s)/2", p, 2 * u->dg_min_s * (1 + fabs(u->up_down)), range);
    }
    if (h->solver == XB_SOLVER_NONE && (u->refresh_steps > 0 || u->refresh_solver != XB_REFRESH_EXACT))
        BAD("%s: [update] refresh_steps = %d / refresh_solver = %s with [circuit] solver = none: there is no circuit "
            "solve to refresh (E = G). HINT: drop them, or choose a [circuit] solver", p, u->refresh_steps,
            refresh_names[u->refresh_solver]);
    if (u->refresh_solver == XB_REFRESH_DISTORTION && u->refresh_steps < 2)
        BAD("%s: [update] refresh_solver = distortion holds E/G between solves, but refresh_steps = %d solves "
            "every step. HINT: give refresh_steps = L >= 2 (TxSim's I-FCM period), or refresh_solver = exact", p,
            u->refresh_steps);
    return XB_OK;
}

xb_status xb_hw_validate(const xb_hw *h) {
    const char *p = h->path[0] ? h->path : "hardware config";
    if (h->cell.type == XB_CELL_1T1R) {
        for (int k = -1; k < h->n_vgate; k++) {
            xb_cell c = h->cell;
            if (k >= 0) c.v_gate_v = h->vgate_v[k];
            if (xb_cell_validate(&c)) {
                char why[600];
                snprintf(why, sizeof why, "%s", xb_last_error());
                BAD("%s: [cell]%s%s: %s", p, k >= 0 ? " v_gate_layers, layer " : "", k >= 0 ? h->vgate_layer[k] : "", why);
            }
        }
        if (h->dac_bits != 1 || h->signed_inputs != XB_SIGNED_SPLIT)
            BAD("%s: [cell] type = 1t1r reads its arrays with 1-bit input planes (every driven row at 0 or v_read_v, "
                "where a 1T-1R tile is linear in its inputs), but [input] has dac_bits = %d, signed_inputs = %s. HINT: "
                "set dac_bits = 1 (bit_serial = true and input_bits for more input precision) and signed_inputs = split; "
                "multi-level DACs and analog inputs are not supported for 1t1r yet (docs/hardware.md)", p, h->dac_bits,
                signed_names[h->signed_inputs]);
    }
    if (h->rows < 1 || h->rows > XB_HW_MAX_DIM || h->cols < 1 || h->cols > XB_HW_MAX_DIM)
        BAD("%s: tile of %d x %d cells; each side must be 1..%d. HINT: set [tile] rows and cols, e.g. 64", p, h->rows,
            h->cols, XB_HW_MAX_DIM);
    if (!(h->g_min_s >= 0) || !(h->g_max_s > h->g_min_s) || !isfinite(h->g_max_s))
        BAD("%s: [mapping] needs 0 <= g_min_s < g_max_s, got g_min_s = %g S, g_max_s = %g S. HINT: g_max_s = 1/r_on_ohm "
            "(low-resistance state), g_min_s = 1/r_off_ohm (high-resistance state)", p, h->g_min_s, h->g_max_s);
    if (h->weight_bits < 0 || h->weight_bits > 16)
        BAD("%s: [mapping] weight_bits = %d; allowed 0 (unlimited) .. 16", p, h->weight_bits);
    if (h->weight_bits == 0) {
        if (h->bits_per_cell != 0)
            BAD("%s: [mapping] bits_per_cell = %d needs weight_bits > 0. HINT: give weight_bits (the total weight "
                "precision) too, or use levels = N for unsliced cells with N conductance levels", p, h->bits_per_cell);
        if (h->levels == 1 || h->levels < 0)
            BAD("%s: [mapping] levels = %d; a cell needs at least 2 levels. HINT: leave levels out for continuous "
                "conductances", p, h->levels);
        if (h->scheme == XB_SCHEME_OFFSET && h->levels == 2)
            BAD("%s: [mapping] the offset scheme with 2 levels cannot represent both signs. HINT: use levels >= 3, "
                "or scheme = differential", p);
    } else {
        if (h->levels != 0)
            BAD("%s: [mapping] levels = %d together with weight_bits = %d. HINT: with weight_bits the levels per cell "
                "are 2^bits_per_cell; drop levels", p, h->levels, h->weight_bits);
        if (h->bits_per_cell < 1 || h->bits_per_cell > 16)
            BAD("%s: [mapping] weight_bits = %d needs bits_per_cell in 1..16 (got %d). HINT: bits_per_cell = "
                "weight_bits puts each weight in one cell", p, h->weight_bits, h->bits_per_cell);
        if (h->bits_per_cell < h->weight_bits && h->weight_bits % h->bits_per_cell != 0)
            BAD("%s: [mapping] bits_per_cell = %d neither divides nor covers weight_bits = %d. HINT: choose "
                "bits_per_cell among the divisors of weight_bits, or >= weight_bits", p, h->bits_per_cell,
                h->weight_bits);
        int bc = h->bits_per_cell < h->weight_bits ? h->bits_per_cell : h->weight_bits;
        if (h->weight_bits / bc > XB_MAX_SLICES)
            BAD("%s: [mapping] %d slices per weight; at most %d. HINT: raise bits_per_cell", p, h->weight_bits / bc,
                XB_MAX_SLICES);
        if (h->scheme == XB_SCHEME_OFFSET && h->weight_bits < 2)
            BAD("%s: [mapping] the offset scheme needs weight_bits >= 2 (one bit is the sign). HINT: use "
                "scheme = differential for 1-bit magnitudes", p);
    }
    if (!(h->w_clip_percentile > 0 && h->w_clip_percentile <= 100))
        BAD("%s: [mapping] w_clip_percentile = %g; allowed (0, 100]", p, h->w_clip_percentile);
    if (h->dac_bits < 0 || h->dac_bits > 16) BAD("%s: [input] dac_bits = %d; allowed 0..16", p, h->dac_bits);
    if (h->bit_serial) {
        if (h->dac_bits < 1)
            BAD("%s: [input] bit_serial = true needs dac_bits >= 1 (bits per pass). HINT: dac_bits = 1 streams one "
                "bit per pass", p);
        if (h->input_bits < h->dac_bits || h->input_bits > 16)
            BAD("%s: [input] bit_serial = true needs input_bits in dac_bits..16 (got %d with dac_bits = %d). HINT: "
                "input_bits is the total input precision, e.g. 8", p, h->input_bits, h->dac_bits);
    } else if (h->input_bits != 0 && h->input_bits != h->dac_bits) {
        BAD("%s: [input] input_bits = %d without bit_serial = true. HINT: set bit_serial = true to stream %d-bit "
            "inputs through %d-bit DACs, or drop input_bits", p, h->input_bits, h->input_bits, h->dac_bits);
    }
    if (!(h->v_read_v > 0)) BAD("%s: [input] v_read_v = %g must be > 0", p, h->v_read_v);
    if (h->input_range == XB_RANGE_FIXED && !(h->input_full_scale > 0))
        BAD("%s: [input] input_range = fixed needs input_full_scale > 0 (the input mapped to v_read_v). HINT: or "
            "use input_range = calibrated", p);
    if (!(h->input_percentile > 0 && h->input_percentile <= 100))
        BAD("%s: [input] input_percentile = %g; allowed (0, 100]", p, h->input_percentile);
    if ((unsigned)h->input_scaling >= XB_INSCALE_COUNT || (unsigned)h->bound_management >= XB_BM_COUNT ||
        (unsigned)h->drift_compensation >= XB_DRIFTCOMP_COUNT)
        BAD("%s: input_scaling, bound_management or drift_compensation is out of range. HINT: set them from the names "
            "in docs/hardware.md", p);
    if (h->input_scaling == XB_INSCALE_VECTOR && h->input_range == XB_RANGE_FIXED)
        BAD("%s: [input] input_range = fixed with input_scaling = vector: every input vector is scaled by its own "
            "maximum, so a fixed range would be ignored. HINT: drop input_range/input_full_scale, or use "
            "input_scaling = layer", p);
    if (h->input_scaling == XB_INSCALE_VECTOR && h->input_percentile != 100)
        BAD("%s: [input] input_percentile = %g with input_scaling = vector: each input vector is scaled by its "
            "maximum (nothing is calibrated), so the percentile would be ignored. HINT: drop input_percentile, or "
            "use input_scaling = layer", p, h->input_percentile);
    if (h->adc_bits < 0 || h->adc_bits > 16) BAD("%s: [output] adc_bits = %d; allowed 0..16", p, h->adc_bits);
    if (h->bound_management_max_steps < 1 || h->bound_management_max_steps > 20)
        BAD("%s: [output] bound_management_max_steps = %d; allowed 1..20", p, h->bound_management_max_steps);
    if (h->bound_management == XB_BM_ITERATIVE && h->adc_bits == 0)
        BAD("%s: [output] bound_management = iterative needs an ADC (adc_bits > 0): it re-reads the input vectors "
            "whose ADC saturates. HINT: give adc_bits, or drop bound_management", p);
    if (h->bound_management == XB_BM_NONE && h->bound_management_max_steps != 3)
        BAD("%s: [output] bound_management_max_steps = %d with bound_management = none would be ignored. HINT: set "
            "bound_management = iterative, or drop bound_management_max_steps", p, h->bound_management_max_steps);
    if (h->adc_bits > 0) {
        if (h->adc_signal == XB_ADC_DIFFERENCE && h->adc_bits < 2)
            BAD("%s: [output] a signed ADC (adc_signal = difference) needs adc_bits >= 2. HINT: or digitize each "
                "column with adc_signal = column", p);
        if (h->adc_signal == XB_ADC_COLUMN && h->signed_inputs == XB_SIGNED_BIPOLAR)
            BAD("%s: [output] adc_signal = column digitizes column currents with a unipolar ADC, but bipolar "
                "inputs make them negative. HINT: set [input] signed_inputs = split", p);
        if (h->adc_range == XB_RANGE_FIXED && !(h->adc_full_scale_a > 0))
            BAD("%s: [output] adc_range = fixed needs adc_full_scale_a > 0 (amperes). HINT: or use adc_range = "
                "calibrated / worst_case", p);
    }
    if (!(h->adc_percentile > 0 && h->adc_percentile <= 100))
        BAD("%s: [output] adc_percentile = %g; allowed (0, 100]", p, h->adc_percentile);
    if (h->calibration_images < 1) BAD("%s: [output] calibration_images must be >= 1", p);
    if (xb_circuit_validate(&h->circuit) != XB_OK) return XB_ERR_CONFIG;
    if (h->solver == XB_SOLVER_NONE &&
        (h->circuit.r_wire_ohm > 0 || h->circuit.r_driver_ohm > 0 || h->circuit.r_sense_ohm > 0))
        BAD("%s: [circuit] solver = none but resistances are set (r_wire_ohm %g, r_driver_ohm %g, r_sense_ohm %g); "
            "they would be ignored. HINT: choose solver = exact or decoupled, or set the resistances to 0", p,
            h->circuit.r_wire_ohm, h->circuit.r_driver_ohm, h->circuit.r_sense_ohm);
    if (h->solver == XB_SOLVER_CHOLMOD &&
        !(h->circuit.r_wire_ohm > 0 && h->circuit.r_driver_ohm > 0 && h->circuit.r_sense_ohm > 0))
        BAD("%s: [circuit] solver = cholmod needs every resistance > 0. HINT: use solver = exact", p);
    if (h->variation == XB_VAR_LOGNORMAL && h->variation_mode == XB_NOISE_ABSOLUTE)
        BAD("%s: [device] variation = lognormal is relative by nature (G' = G exp(sigma N)). HINT: use "
            "variation_mode = relative, or variation = gaussian for an absolute spread in siemens", p);
    if (h->variation_sigma < 0 || h->read_noise_sigma < 0) BAD("%s: [device] sigmas must be >= 0", p);
    if (h->variation == XB_VAR_NONE && h->variation_sigma > 0)
        BAD("%s: [device] variation_sigma = %g with variation = none. HINT: set variation = gaussian or lognormal",
            p, h->variation_sigma);
    if (!(h->stuck_at_gmin_rate >= 0 && h->stuck_at_gmax_rate >= 0 &&
          h->stuck_at_gmin_rate + h->stuck_at_gmax_rate <= 1))
        BAD("%s: [device] stuck_at_gmin_rate + stuck_at_gmax_rate = %g; each must be >= 0 and the sum <= 1", p,
            h->stuck_at_gmin_rate + h->stuck_at_gmax_rate);
    if (!(h->drift_t0_s > 0) || !(h->drift_t_s >= h->drift_t0_s))
        BAD("%s: [device] needs 0 < drift_t0_s <= drift_t_s (got t0 = %g s, t = %g s). HINT: t0 is the time of "
            "programming-verify, t the time of inference", p, h->drift_t0_s, h->drift_t_s);
    if (h->drift_nu < 0 || h->drift_nu_sigma < 0) BAD("%s: [device] drift_nu and drift_nu_sigma must be >= 0", p);
    if (validate_update_(h, p) != XB_OK) return XB_ERR_CONFIG;
    if (xb_energy_cfg_validate(&h->energy, p) != XB_OK) return XB_ERR_CONFIG;
    /* geometry of the widest tile: a weight's cells and the reference columns must fit in one array */
    int slices = 1;
    if (h->weight_bits > 0) {
        int bc = h->bits_per_cell < h->weight_bits ? h->bits_per_cell : h->weight_bits;
        slices = h->weight_bits / bc;
    }
    int nsign = h->scheme == XB_SCHEME_DIFFERENTIAL ? 2 : 1;
    int refc = h->scheme == XB_SCHEME_OFFSET && h->reference == XB_REF_COLUMN;
    int need = h->layout == XB_LAYOUT_INTERLEAVED ? nsign * slices + (refc ? slices : 0) : 1 + refc;
    if (h->cols < need)
        BAD("%s: [tile] cols = %d cannot hold one weight column (needs %d: %s%s). HINT: use wider tiles or "
            "layout = separate", p, h->cols, need, h->layout == XB_LAYOUT_INTERLEAVED ? "signs x slices" : "1",
            refc ? " plus reference columns" : "");
    return XB_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Parsing                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

static const char *const sections[] = {"meta", "tile", "mapping", "input", "output", "circuit", "cell", "device",
                                       "update", "arch", "energy", "pe", "tim", NULL};
static const char *const cell_names[] = {"resistor", "1t1r", NULL};
static const char *const mos_model_names[] = {"level1", "ekv", NULL};

static xb_ini_section *sec_(xb_ini *ini, const char *type) {
    for (int i = 0; i < ini->n; i++)
        if (strcmp(ini->sec[i].type, type) == 0) return &ini->sec[i];
    return NULL;
}

#define TRY(x) do { xb_status st_ = (x); if (st_ != XB_OK) return st_; } while (0)

static xb_status get_enum_(xb_ini *ini, xb_ini_section *s, const char *key, const char *const *names, int def,
                           int *out) {
    char buf[64];
    int idx = -1;
    TRY(xb_ini_str(ini, s, key, 0, names[def], names, buf, sizeof buf, &idx));
    *out = idx;
    return XB_OK;
}

static xb_status get_int_(xb_ini *ini, xb_ini_section *s, const char *key, long def, long lo, long hi, int *out) {
    long v;
    TRY(xb_ini_int(ini, s, key, 0, def, lo, hi, &v));
    *out = (int)v;
    return XB_OK;
}

/* [cell]: the type, the transistor (defaults: xb_cell_1t1r_default) and per-layer gate voltages. */
static xb_status parse_cell_(xb_ini *ini, xb_ini_section *s, xb_hw *h) {
    const char *path = ini->path;
    const xb_cell d = xb_cell_1t1r_default();
    int e;
    TRY(get_enum_(ini, s, "type", cell_names, XB_CELL_RESISTOR, &e));
    h->cell.type = (xb_cell_type)e;
    static const char *const mos_keys[] = {"v_gate_v", "beta_a_per_v2", "v_t_v", "lambda_per_v", "v_gate_layers",
                                           "compensate", "model", "ekv_n", "ekv_ut_v"};
    if (h->cell.type == XB_CELL_RESISTOR && s)
        for (int k = 0; k < 9; k++) {
            int line = 0;
            if (xb_ini_raw(s, mos_keys[k], &line))
                BAD("%s:%d: [cell] %s applies to type = 1t1r only. HINT: set type = 1t1r, or drop the key", path, line,
                    mos_keys[k]);
        }
    TRY(xb_ini_double(ini, s, "v_gate_v", 0, d.v_gate_v, -100, 100, &h->cell.v_gate_v));
    TRY(xb_ini_double(ini, s, "beta_a_per_v2", 0, d.beta_a_per_v2, 0, 1e6, &h->cell.beta_a_per_v2));
    TRY(xb_ini_double(ini, s, "v_t_v", 0, d.v_t_v, -100, 100, &h->cell.v_t_v));
    TRY(xb_ini_double(ini, s, "lambda_per_v", 0, d.lambda_per_v, 0, 100, &h->cell.lambda_per_v));
    TRY(xb_ini_bool(ini, s, "compensate", 0, 1, &h->cell_compensate));
    TRY(get_enum_(ini, s, "model", mos_model_names, XB_MOS_LEVEL1, &e));
    h->cell.model = (xb_mos_model)e;
    if (h->cell.model != XB_MOS_EKV && s)
        for (int k = 7; k < 9; k++) {
            int line = 0;
            if (xb_ini_raw(s, mos_keys[k], &line))
                BAD("%s:%d: [cell] %s applies to model = ekv only. HINT: set model = ekv, or drop the key", path, line,
                    mos_keys[k]);
        }
    TRY(xb_ini_double(ini, s, "ekv_n", 0, d.ekv_n, 1, 10, &h->cell.ekv_n));
    TRY(xb_ini_double(ini, s, "ekv_ut_v", 0, d.ekv_ut_v, 1e-6, 1, &h->cell.ekv_ut_v));
    char buf[4096];
    TRY(xb_ini_str(ini, s, "v_gate_layers", 0, "", NULL, buf, sizeof buf, NULL));
    h->n_vgate = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        char *colon = strrchr(tok, ':'), *end = NULL;
        if (h->n_vgate == XB_HW_MAX_DIGITAL)
            BAD("%s: [cell] v_gate_layers lists more than %d layers. HINT: set the common v_gate_v and list the others",
                path, XB_HW_MAX_DIGITAL);
        if (!colon || colon == tok)
            BAD("%s: [cell] v_gate_layers entry '%.60s' is not name:volts. HINT: e.g. v_gate_layers = layer1.0.conv1:0.8, "
                "fc:1.0", path, tok);
        *colon = 0;
        const double v = strtod(colon + 1, &end);
        if (end == colon + 1 || *end || !isfinite(v))
            BAD("%s: [cell] v_gate_layers: '%.60s' for layer %.60s is not a number of volts. HINT: e.g. %s:0.8", path,
                colon + 1, tok, tok);
        if (strlen(tok) >= sizeof h->vgate_layer[0]) BAD("%s: [cell] v_gate_layers: name '%.40s...' is too long", path, tok);
        for (int k = 0; k < h->n_vgate; k++)
            if (!strcmp(h->vgate_layer[k], tok)) BAD("%s: [cell] v_gate_layers names %s twice. HINT: keep one", path, tok);
        snprintf(h->vgate_layer[h->n_vgate], sizeof h->vgate_layer[0], "%s", tok);
        h->vgate_v[h->n_vgate++] = v;
    }
    return XB_OK;
}

xb_cell xb_hw_layer_cell(const xb_hw *hw, const char *name) {
    xb_cell c = hw->cell;
    for (int k = 0; name && k < hw->n_vgate; k++)
        if (!strcmp(hw->vgate_layer[k], name)) c.v_gate_v = hw->vgate_v[k];
    return c;
}

static xb_status parse_update_(xb_ini *ini, xb_ini_section *s, xb_update_cfg *u) {
    int e;
    TRY(get_enum_(ini, s, "model", upd_model_names, XB_UPDATE_LINEAR, &e)); u->model = (xb_update_model)e;
    TRY(xb_ini_double(ini, s, "dg_min_s", 0, 0, 0, 1e3, &u->dg_min_s));
    TRY(get_enum_(ini, s, "pulse_rounding", rounding_names, XB_PULSE_NEAREST, &e));
    u->pulse_rounding = (xb_pulse_rounding)e;
    TRY(xb_ini_double(ini, s, "nonlinearity", 0, 0, 0, 10, &u->nonlinearity));
    TRY(xb_ini_double(ini, s, "write_noise", 0, 0, 0, 1e3, &u->write_noise));
    TRY(xb_ini_double(ini, s, "write_noise_sigma", 0, 0.01, 0, 10, &u->write_noise_sigma));
    TRY(xb_ini_double(ini, s, "up_down", 0, 0, -0.999, 0.999, &u->up_down));
    TRY(xb_ini_double(ini, s, "write_noise_ctoc", 0, 0, 0, 10, &u->write_noise_ctoc));
    TRY(get_enum_(ini, s, "pair_update", pair_names, XB_PAIR_SPLIT, &e)); u->pair_update = (xb_pair_update)e;
    TRY(get_enum_(ini, s, "slice_update", slice_names, XB_SLICE_MSB, &e)); u->slice_update = (xb_slice_update)e;
    TRY(get_int_(ini, s, "refresh_steps", 0, 0, 1000000000, &u->refresh_steps));
    TRY(get_enum_(ini, s, "refresh_solver", refresh_names, XB_REFRESH_EXACT, &e));
    u->refresh_solver = (xb_refresh_solver)e;
    return XB_OK;
}

static xb_status parse_(xb_ini *ini, xb_hw *h) {
    const char *path = ini->path;
    for (int i = 0; i < ini->n; i++) {
        xb_ini_section *s = &ini->sec[i];
        int known = 0;
        for (int k = 0; sections[k]; k++) known |= strcmp(s->type, sections[k]) == 0;
        if (!known)
            BAD("%s:%d: unknown section [%s]. HINT: a hardware config has the sections [meta] [tile] [mapping] "
                "[input] [output] [circuit] [device] [update] [arch] [energy] [pe] [tim] (docs/hardware.md)", path, s->line, s->type);
        if (s->name[0])
            BAD("%s:%d: section [%s %s] takes no name. HINT: write [%s]", path, s->line, s->type, s->name, s->type);
        for (int j = 0; j < i; j++)
            if (strcmp(ini->sec[j].type, s->type) == 0)
                BAD("%s:%d: section [%s] appears twice (first at line %d). HINT: merge the two", path, s->line,
                    s->type, ini->sec[j].line);
    }
    xb_ini_section *s;
    int e;
    char buf[4096];

    s = sec_(ini, "meta");
    TRY(xb_ini_str(ini, s, "name", 0, "", NULL, h->name, sizeof h->name, NULL));
    TRY(xb_ini_str(ini, s, "source", 0, "", NULL, h->source, sizeof h->source, NULL));

    s = sec_(ini, "tile");
    TRY(get_int_(ini, s, "rows", 64, 1, XB_HW_MAX_DIM, &h->rows));
    TRY(get_int_(ini, s, "cols", 64, 1, XB_HW_MAX_DIM, &h->cols));
    TRY(xb_ini_bool(ini, s, "map_first", 0, 1, &h->map_first));
    TRY(xb_ini_bool(ini, s, "map_last", 0, 1, &h->map_last));
    TRY(xb_ini_str(ini, s, "digital_layers", 0, "", NULL, buf, sizeof buf, NULL));
    h->n_digital = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        if (h->n_digital == XB_HW_MAX_DIGITAL)
            BAD("%s: [tile] digital_layers lists more than %d layers. HINT: use map_first/map_last or fewer names",
                path, XB_HW_MAX_DIGITAL);
        if (strlen(tok) >= sizeof h->digital[0]) BAD("%s: [tile] digital_layers: name '%.40s...' is too long", path, tok);
        snprintf(h->digital[h->n_digital++], sizeof h->digital[0], "%s", tok);
    }

    s = sec_(ini, "mapping");
    TRY(get_enum_(ini, s, "scheme", scheme_names, XB_SCHEME_DIFFERENTIAL, &e)); h->scheme = (xb_scheme)e;
    TRY(get_enum_(ini, s, "layout", layout_names, XB_LAYOUT_SEPARATE, &e)); h->layout = (xb_layout)e;
    TRY(get_enum_(ini, s, "reference", ref_names, XB_REF_COLUMN, &e)); h->reference = (xb_reference)e;
    TRY(get_int_(ini, s, "weight_bits", 0, 0, 16, &h->weight_bits));
    /* absent: one cell per weight (bits_per_cell = weight_bits), continuous conductances (levels) */
    TRY(get_int_(ini, s, "bits_per_cell", 0, 1, 16, &h->bits_per_cell));
    if (h->weight_bits > 0 && h->bits_per_cell == 0) h->bits_per_cell = h->weight_bits;
    TRY(get_int_(ini, s, "levels", 0, 2, 65536, &h->levels));
    int lg = 0, lr = 0, sline = s ? s->line : 0;
    double gmin = -1, gmax = -1, ron = -1, roff = -1;
    if (s) {
        int have_gmin = xb_ini_raw(s, "g_min_s", &lg) != NULL, have_gmax = xb_ini_raw(s, "g_max_s", &lg) != NULL;
        int have_ron = xb_ini_raw(s, "r_on_ohm", &lr) != NULL, have_roff = xb_ini_raw(s, "r_off_ohm", &lr) != NULL;
        if ((have_gmin || have_gmax) && (have_ron || have_roff))
            BAD("%s:%d: [mapping] gives both g_min_s/g_max_s and r_on_ohm/r_off_ohm. HINT: give exactly one pair", path,
                lr > lg ? lr : lg);
        if (have_gmin != have_gmax || have_ron != have_roff)
            BAD("%s:%d: [mapping] gives only half of a pair (%s). HINT: give both g_min_s and g_max_s, or both "
                "r_on_ohm and r_off_ohm", path, sline, have_gmin || have_gmax ? "g_min_s/g_max_s" : "r_on_ohm/r_off_ohm");
        if (have_gmin) {
            TRY(xb_ini_double(ini, s, "g_min_s", 1, 0, 0, 1e3, &gmin));
            TRY(xb_ini_double(ini, s, "g_max_s", 1, 0, 0, 1e3, &gmax));
            h->g_min_s = gmin;
            h->g_max_s = gmax;
        }
        if (have_ron) {
            TRY(xb_ini_double(ini, s, "r_on_ohm", 1, 0, 1e-3, 1e15, &ron));
            TRY(xb_ini_double(ini, s, "r_off_ohm", 1, 0, 1e-3, 1e15, &roff));
            if (!(roff > ron))
                BAD("%s:%d: [mapping] r_off_ohm = %g must exceed r_on_ohm = %g. HINT: r_on is the low-resistance "
                    "state", path, lr, roff, ron);
            h->g_max_s = 1.0 / ron;
            h->g_min_s = 1.0 / roff;
        }
    }
    TRY(get_enum_(ini, s, "w_clip", wclip_names, XB_WCLIP_MAX, &e)); h->w_clip = (xb_wclip)e;
    TRY(get_enum_(ini, s, "scale", scale_names, 0, &e)); h->column_scale = e;
    TRY(get_enum_(ini, s, "rearrange", rearrange_names, 0, &e)); h->rearrange = e;
    TRY(get_enum_(ini, s, "pack", pack_names, 0, &e)); h->pack = e;
    TRY(xb_ini_double(ini, s, "w_clip_percentile", 0, h->w_clip == XB_WCLIP_MAX ? 100 : 99.9, 1e-9, 100,
                      &h->w_clip_percentile));

    s = sec_(ini, "input");
    TRY(get_int_(ini, s, "dac_bits", 0, 0, 16, &h->dac_bits));
    TRY(xb_ini_bool(ini, s, "bit_serial", 0, 0, &h->bit_serial));
    TRY(get_int_(ini, s, "input_bits", 0, 0, 16, &h->input_bits));
    TRY(xb_ini_double(ini, s, "v_read_v", 0, 0.2, 1e-6, 100, &h->v_read_v));
    TRY(get_enum_(ini, s, "signed_inputs", signed_names, XB_SIGNED_SPLIT, &e)); h->signed_inputs = (xb_signed_in)e;
    TRY(get_enum_(ini, s, "input_range", in_range_names, XB_RANGE_CALIBRATED, &e)); h->input_range = (xb_range)e;
    TRY(xb_ini_double(ini, s, "input_full_scale", 0, 0, 0, 1e30, &h->input_full_scale));
    TRY(xb_ini_double(ini, s, "input_percentile", 0, 100, 1e-9, 100, &h->input_percentile));
    TRY(get_enum_(ini, s, "input_scaling", inscale_names, XB_INSCALE_LAYER, &e)); h->input_scaling = (xb_in_scaling)e;

    s = sec_(ini, "output");
    TRY(get_int_(ini, s, "adc_bits", 0, 0, 16, &h->adc_bits));
    TRY(get_enum_(ini, s, "adc_signal", adc_signal_names, XB_ADC_DIFFERENCE, &e)); h->adc_signal = (xb_adc_signal)e;
    TRY(get_enum_(ini, s, "adc_range", adc_range_names, XB_RANGE_CALIBRATED, &e)); h->adc_range = (xb_range)e;
    TRY(xb_ini_double(ini, s, "adc_full_scale_a", 0, 0, 0, 1e3, &h->adc_full_scale_a));
    TRY(xb_ini_double(ini, s, "adc_percentile", 0, 100, 1e-9, 100, &h->adc_percentile));
    TRY(get_int_(ini, s, "calibration_images", 128, 1, 100000, &h->calibration_images));
    TRY(get_enum_(ini, s, "gain_calibration", gain_names, 0, &h->gain_calibration));
    TRY(get_enum_(ini, s, "bound_management", bm_names, XB_BM_NONE, &e)); h->bound_management = (xb_bound_mgmt)e;
    TRY(get_int_(ini, s, "bound_management_max_steps", 3, 1, 20, &h->bound_management_max_steps));

    s = sec_(ini, "circuit");
    TRY(xb_ini_double(ini, s, "r_wire_ohm", 0, 0, 0, 1e9, &h->circuit.r_wire_ohm));
    TRY(xb_ini_double(ini, s, "r_driver_ohm", 0, 0, 0, 1e12, &h->circuit.r_driver_ohm));
    TRY(xb_ini_double(ini, s, "r_sense_ohm", 0, 0, 0, 1e12, &h->circuit.r_sense_ohm));
    TRY(get_enum_(ini, s, "solver", solver_names, XB_SOLVER_EXACT, &e)); h->solver = (xb_solver_kind)e;

    TRY(parse_cell_(ini, sec_(ini, "cell"), h));

    s = sec_(ini, "device");
    TRY(get_enum_(ini, s, "variation", var_names, XB_VAR_NONE, &e)); h->variation = (xb_variation)e;
    TRY(xb_ini_double(ini, s, "variation_sigma", 0, 0, 0, 1e3, &h->variation_sigma));
    TRY(get_enum_(ini, s, "variation_mode", mode_names, XB_NOISE_RELATIVE, &e)); h->variation_mode = (xb_noise_mode)e;
    TRY(get_enum_(ini, s, "variation_clip", gclip_names, XB_GCLIP_ZERO, &e)); h->variation_clip = (xb_gclip)e;
    TRY(xb_ini_double(ini, s, "read_noise_sigma", 0, 0, 0, 1e3, &h->read_noise_sigma));
    TRY(get_enum_(ini, s, "read_noise_mode", mode_names, XB_NOISE_RELATIVE, &e)); h->read_noise_mode = (xb_noise_mode)e;
    TRY(xb_ini_double(ini, s, "stuck_at_gmin_rate", 0, 0, 0, 1, &h->stuck_at_gmin_rate));
    TRY(xb_ini_double(ini, s, "stuck_at_gmax_rate", 0, 0, 0, 1, &h->stuck_at_gmax_rate));
    TRY(xb_ini_double(ini, s, "drift_nu", 0, 0, 0, 10, &h->drift_nu));
    TRY(xb_ini_double(ini, s, "drift_nu_sigma", 0, 0, 0, 10, &h->drift_nu_sigma));
    TRY(xb_ini_double(ini, s, "drift_t_s", 0, 1, 1e-12, 1e12, &h->drift_t_s));
    TRY(xb_ini_double(ini, s, "drift_t0_s", 0, 1, 1e-12, 1e12, &h->drift_t0_s));
    TRY(get_enum_(ini, s, "drift_compensation", dcomp_spellings, 0, &e));
    h->drift_compensation = (xb_drift_comp)dcomp_of_spelling[e];

    TRY(parse_update_(ini, sec_(ini, "update"), &h->update));
    TRY(xb_energy_cfg_parse(ini, sec_(ini, "arch"), sec_(ini, "energy"), sec_(ini, "pe"), sec_(ini, "tim"), &h->energy));

    /* unknown keys: our own message (the INI module's hint points at the model docs) */
    for (int i = 0; i < ini->n; i++)
        for (int j = 0; j < ini->sec[i].n; j++)
            if (!ini->sec[i].kv[j].used)
                BAD("%s:%d: unknown key '%s' in section [%s]. HINT: check the spelling; docs/hardware.md lists the "
                    "keys of each section", path, ini->sec[i].kv[j].line, ini->sec[i].kv[j].key, ini->sec[i].type);
    return XB_OK;
}

/* Builds the config from a parsed file (defaults, then its keys), validates it, frees ini. */
static xb_status from_ini_(xb_ini *ini, const char *path, xb_hw *out) {
    xb_hw h = xb_hw_default();
    h.name[0] = 0;
    snprintf(h.path, sizeof h.path, "%s", path);
    xb_status st = parse_(ini, &h);
    xb_ini_free(ini);
    if (!st) st = xb_hw_validate(&h);
    if (!st) *out = h;
    return st;
}

xb_status xb_hw_parse_string(const char *text, size_t len, const char *path, xb_hw *out) {
    xb_ini ini;
    xb_status st = xb_ini_parse_string(text, len, path, &ini);
    return st ? st : from_ini_(&ini, path, out);
}

xb_status xb_hw_load(const char *path, xb_hw *out) {
    xb_ini ini;
    xb_status st = xb_ini_parse_file(path, &ini);
    return st ? st : from_ini_(&ini, path, out);
}

/* ------------------------------------------------------------------------------------------------ */
/* Printing                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

static void json_str_(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void print_update_(const xb_update_cfg *u, FILE *f, int json) {
    const char *fmt = json ? "\"update\":{\"model\":\"%s\",\"dg_min_s\":%.9g,\"pulse_rounding\":\"%s\","
                             "\"nonlinearity\":%.9g,\"write_noise\":%.9g,\"write_noise_sigma\":%.9g,\"up_down\":%.9g,"
                             "\"write_noise_ctoc\":%.9g,\"pair_update\":\"%s\",\"slice_update\":\"%s\","
                             "\"refresh_steps\":%d,\"refresh_solver\":\"%s\"}"
                           : "\n[update]\nmodel = %s\ndg_min_s = %.9g\npulse_rounding = %s\nnonlinearity = %.9g\n"
                             "write_noise = %.9g\nwrite_noise_sigma = %.9g\nup_down = %.9g\nwrite_noise_ctoc = %.9g\n"
                             "pair_update = %s\nslice_update = %s\nrefresh_steps = %d\nrefresh_solver = %s\n";
    fprintf(f, fmt, upd_model_names[u->model], u->dg_min_s, rounding_names[u->pulse_rounding], u->nonlinearity,
            u->write_noise, u->write_noise_sigma, u->up_down, u->write_noise_ctoc, pair_names[u->pair_update],
            slice_names[u->slice_update], u->refresh_steps, refresh_names[u->refresh_solver]);
}

void xb_hw_print(const xb_hw *h, FILE *f, int json) {
    char dl[XB_HW_MAX_DIGITAL * 130] = "";
    size_t u = 0;
    for (int i = 0; i < h->n_digital && u < sizeof dl; i++)
        u += (size_t)snprintf(dl + u, sizeof dl - u, "%s%s", i ? "," : "", h->digital[i]);
    char lv[32] = "null";
    if (h->levels) snprintf(lv, sizeof lv, "%d", h->levels);
    if (json) {
        fprintf(f, "{\"meta\":{\"name\":");
        json_str_(f, h->name);
        fprintf(f, ",\"source\":");
        json_str_(f, h->source);
        fprintf(f, ",\"path\":");
        json_str_(f, h->path);
        fprintf(f, "},\"tile\":{\"rows\":%d,\"cols\":%d,\"map_first\":%s,\"map_last\":%s,\"digital_layers\":", h->rows,
                h->cols, h->map_first ? "true" : "false", h->map_last ? "true" : "false");
        json_str_(f, dl);
        fprintf(f, "},\"mapping\":{\"scheme\":\"%s\",\"layout\":\"%s\",\"reference\":\"%s\",\"weight_bits\":%d,"
                   "\"bits_per_cell\":%d,\"levels\":%s,\"g_min_s\":%.9g,\"g_max_s\":%.9g,\"w_clip\":\"%s\","
                   "\"w_clip_percentile\":%.9g,\"scale\":\"%s\",\"rearrange\":\"%s\",\"pack\":\"%s\"},",
                scheme_names[h->scheme], layout_names[h->layout], ref_names[h->reference], h->weight_bits,
                h->bits_per_cell, lv, h->g_min_s, h->g_max_s, wclip_names[h->w_clip], h->w_clip_percentile,
                scale_names[h->column_scale], rearrange_names[h->rearrange], pack_names[h->pack]);
        fprintf(f, "\"input\":{\"dac_bits\":%d,\"bit_serial\":%s,\"input_bits\":%d,\"v_read_v\":%.9g,"
                   "\"signed_inputs\":\"%s\",\"input_range\":\"%s\",\"input_full_scale\":%.9g,\"input_percentile\":%.9g,"
                   "\"input_scaling\":\"%s\"},",
                h->dac_bits, h->bit_serial ? "true" : "false", h->input_bits, h->v_read_v,
                signed_names[h->signed_inputs], in_range_names[h->input_range], h->input_full_scale,
                h->input_percentile, inscale_names[h->input_scaling]);
        fprintf(f, "\"output\":{\"adc_bits\":%d,\"adc_signal\":\"%s\",\"adc_range\":\"%s\",\"adc_full_scale_a\":%.9g,"
                   "\"adc_percentile\":%.9g,\"calibration_images\":%d,\"gain_calibration\":\"%s\","
                   "\"bound_management\":\"%s\",\"bound_management_max_steps\":%d},",
                h->adc_bits, adc_signal_names[h->adc_signal], adc_range_names[h->adc_range], h->adc_full_scale_a,
                h->adc_percentile, h->calibration_images, gain_names[h->gain_calibration],
                bm_names[h->bound_management], h->bound_management_max_steps);
        fprintf(f, "\"circuit\":{\"r_wire_ohm\":%.9g,\"r_driver_ohm\":%.9g,\"r_sense_ohm\":%.9g,\"solver\":\"%s\"},",
                h->circuit.r_wire_ohm, h->circuit.r_driver_ohm, h->circuit.r_sense_ohm, solver_names[h->solver]);
        fprintf(f, "\"cell\":{\"type\":\"%s\"", cell_names[h->cell.type]);
        if (h->cell.type == XB_CELL_1T1R) {
            fprintf(f, ",\"v_gate_v\":%.9g,\"beta_a_per_v2\":%.9g,\"v_t_v\":%.9g,\"lambda_per_v\":%.9g,\"compensate\":%s,"
                       "\"model\":\"%s\",\"ekv_n\":%.9g,\"ekv_ut_v\":%.9g,\"v_gate_layers\":{", h->cell.v_gate_v,
                    h->cell.beta_a_per_v2, h->cell.v_t_v, h->cell.lambda_per_v, h->cell_compensate ? "true" : "false",
                    mos_model_names[h->cell.model], h->cell.ekv_n, h->cell.ekv_ut_v);
            for (int k = 0; k < h->n_vgate; k++) {
                fprintf(f, "%s", k ? "," : "");
                json_str_(f, h->vgate_layer[k]);
                fprintf(f, ":%.9g", h->vgate_v[k]);
            }
            fputc('}', f);
        }
        fprintf(f, "},");
        fprintf(f, "\"device\":{\"variation\":\"%s\",\"variation_sigma\":%.9g,\"variation_mode\":\"%s\","
                   "\"variation_clip\":\"%s\",\"read_noise_sigma\":%.9g,\"read_noise_mode\":\"%s\","
                   "\"stuck_at_gmin_rate\":%.9g,\"stuck_at_gmax_rate\":%.9g,\"drift_nu\":%.9g,\"drift_nu_sigma\":%.9g,"
                   "\"drift_t_s\":%.9g,\"drift_t0_s\":%.9g,\"drift_compensation\":\"%s\"},",
                var_names[h->variation], h->variation_sigma, mode_names[h->variation_mode],
                gclip_names[h->variation_clip], h->read_noise_sigma, mode_names[h->read_noise_mode],
                h->stuck_at_gmin_rate, h->stuck_at_gmax_rate, h->drift_nu, h->drift_nu_sigma, h->drift_t_s,
                h->drift_t0_s, dcomp_names[h->drift_compensation]);
        print_update_(&h->update, f, 1);
        fputc(',', f);
        xb_energy_cfg_print(&h->energy, f, 1);
        fprintf(f, ",\"ideal\":%s}", xb_hw_is_ideal(h) ? "true" : "false");
        return;
    }
    fprintf(f, "# resolved hardware config%s%s\n[meta]\n", h->path[0] ? " from " : "", h->path);
    /* a value that begins with a comment character ("name =#1" parses to "#1") is written against the '=',
     * where it does not start a comment */
    if (h->name[0]) fprintf(f, "name =%s%s\n", strchr("#;", h->name[0]) ? "" : " ", h->name);
    if (h->source[0]) fprintf(f, "source =%s%s\n", strchr("#;", h->source[0]) ? "" : " ", h->source);
    fprintf(f, "\n[tile]\nrows = %d\ncols = %d\nmap_first = %s\nmap_last = %s\n", h->rows, h->cols,
            h->map_first ? "true" : "false", h->map_last ? "true" : "false");
    if (dl[0]) fprintf(f, "digital_layers = %s\n", dl);
    fprintf(f, "\n[mapping]\nscheme = %s\nlayout = %s\nreference = %s\nweight_bits = %d\n",
            scheme_names[h->scheme], layout_names[h->layout], ref_names[h->reference], h->weight_bits);
    if (h->weight_bits) fprintf(f, "bits_per_cell = %d\n", h->bits_per_cell);
    if (h->levels) fprintf(f, "levels = %d\n", h->levels);
    fprintf(f, "g_min_s = %.9g\ng_max_s = %.9g\nw_clip = %s\nw_clip_percentile = %.9g\nscale = %s\nrearrange = %s\n"
               "pack = %s\n", h->g_min_s, h->g_max_s, wclip_names[h->w_clip], h->w_clip_percentile,
            scale_names[h->column_scale], rearrange_names[h->rearrange], pack_names[h->pack]);
    fprintf(f, "\n[input]\ndac_bits = %d\nbit_serial = %s\ninput_bits = %d\nv_read_v = %.9g\nsigned_inputs = %s\n"
               "input_range = %s\ninput_full_scale = %.9g\ninput_percentile = %.9g\ninput_scaling = %s\n",
            h->dac_bits, h->bit_serial ? "true" : "false", h->input_bits, h->v_read_v, signed_names[h->signed_inputs],
            in_range_names[h->input_range], h->input_full_scale, h->input_percentile, inscale_names[h->input_scaling]);
    fprintf(f, "\n[output]\nadc_bits = %d\nadc_signal = %s\nadc_range = %s\nadc_full_scale_a = %.9g\n"
               "adc_percentile = %.9g\ncalibration_images = %d\ngain_calibration = %s\nbound_management = %s\n"
               "bound_management_max_steps = %d\n",
            h->adc_bits, adc_signal_names[h->adc_signal], adc_range_names[h->adc_range], h->adc_full_scale_a,
            h->adc_percentile, h->calibration_images, gain_names[h->gain_calibration], bm_names[h->bound_management],
            h->bound_management_max_steps);
    fprintf(f, "\n[circuit]\nr_wire_ohm = %.9g\nr_driver_ohm = %.9g\nr_sense_ohm = %.9g\nsolver = %s\n",
            h->circuit.r_wire_ohm, h->circuit.r_driver_ohm, h->circuit.r_sense_ohm, solver_names[h->solver]);
    fprintf(f, "\n[cell]\ntype = %s\n", cell_names[h->cell.type]);
    if (h->cell.type == XB_CELL_1T1R) {
        fprintf(f, "v_gate_v = %.17g\nbeta_a_per_v2 = %.17g\nv_t_v = %.17g\nlambda_per_v = %.17g\ncompensate = %s\n",
                h->cell.v_gate_v, h->cell.beta_a_per_v2, h->cell.v_t_v, h->cell.lambda_per_v,
                h->cell_compensate ? "true" : "false");
        if (h->cell.model == XB_MOS_EKV)
            fprintf(f, "model = ekv\nekv_n = %.17g\nekv_ut_v = %.17g\n", h->cell.ekv_n, h->cell.ekv_ut_v);
        if (h->n_vgate) {
            fprintf(f, "v_gate_layers =");
            for (int k = 0; k < h->n_vgate; k++) fprintf(f, "%s %s:%.17g", k ? "," : "", h->vgate_layer[k], h->vgate_v[k]);
            fputc('\n', f);
        }
    }
    fprintf(f, "\n[device]\nvariation = %s\nvariation_sigma = %.9g\nvariation_mode = %s\nvariation_clip = %s\n"
               "read_noise_sigma = %.9g\nread_noise_mode = %s\nstuck_at_gmin_rate = %.9g\nstuck_at_gmax_rate = %.9g\n"
               "drift_nu = %.9g\ndrift_nu_sigma = %.9g\ndrift_t_s = %.9g\ndrift_t0_s = %.9g\ndrift_compensation = %s\n",
            var_names[h->variation], h->variation_sigma, mode_names[h->variation_mode], gclip_names[h->variation_clip],
            h->read_noise_sigma, mode_names[h->read_noise_mode], h->stuck_at_gmin_rate, h->stuck_at_gmax_rate,
            h->drift_nu, h->drift_nu_sigma, h->drift_t_s, h->drift_t0_s, dcomp_names[h->drift_compensation]);
    print_update_(&h->update, f, 0);
    xb_energy_cfg_print(&h->energy, f, 0);
}

int xb_hw_layer_digital(const xb_hw *hw, const char *name, int i, int n_mapped) {
    int digital = (!hw->map_first && i == 0) || (!hw->map_last && i == n_mapped - 1);
    for (int d = 0; d < hw->n_digital; d++) digital |= strcmp(name, hw->digital[d]) == 0;
    return digital;
}
