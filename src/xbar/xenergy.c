/* xenergy.c -- what the tiles do, for the energy model (include/xb_energy.h): the summed input admittance of
 * every row tile's arrays, kept at programming (the power model), and the probe that counts the reads, drives,
 * conversions and the quadratic forms V^T A V of the inputs each layer actually sees.  The costs are
 * src/energy/energy.c's; docs/energy.md the model. */
#include "xnet_internal.h"
#include "xb_energy.h"
#include "core/quant.h"

struct xl_energy {
    double *apow;                 /* per tile (r * ct + c): R x R, its arrays' input admittances summed */
    double *sigma;                /* per row tile: R x R, sum over the sampled reads of V V^T (V^2) */
    int probe, stride;
    int64_t vectors, reads, skipped, lat_reads, drives, rt_passes, seen, sampled;
};

static xl_energy_t *en_get_(xlayer *l) {
    if (!l->en) l->en = xb_calloc(sizeof *l->en);
    return l->en;
}

void xl_energy_free(xlayer *l) {
    if (!l->en) return;
    xb_free(l->en->apow);
    xb_free(l->en->sigma);
    xb_free(l->en);
    l->en = NULL;
}

xb_status xb_xnet_keep_power(xb_xnet *xn, int on) {
    XB_ASSERT(xn);
    for (int i = 0; i < xn->n_xl; i++) {
        xlayer *l = &xn->xl[i];
        if (l->digital) continue;
        if (!on) {
            if (l->en) { xb_free(l->en->apow); l->en->apow = NULL; }
            continue;
        }
        xl_energy_t *en = en_get_(l);
        if (!en->apow) en->apow = xb_calloc((size_t)l->g.tiles * l->g.R * l->g.R * sizeof(double));
    }
    xn->power = on;
    if (on && xn->parasitic && xn->hw.solver != XB_SOLVER_EXACT && !xn->plan_pow) {
        xb_status st = xb_solve_plan_init(xn->hw.rows, xn->hw.cols, XB_SOLVE_EXACT, &xn->plan_pow);
        if (st) return st;
        size_t w = xb_solve_plan_workspace(xn->plan_pow);
        if (w > xn->ws_bytes) xn->ws_bytes = w;
    }
    xn->programmed = 0; /* the admittances come with the next programming */
    return XB_OK;
}

/* At programming (xl_tile_build): the forward reads e of tile (r, c) from its conductances gt, and with the power
 * model on, the tile's summed input admittance in the same solve (exact plans) or one more (other solvers). */
xb_status xl_energy_tile_solve(xb_xnet *xn, xlayer *l, int r, int c, const double *gt, double *e, void *ws,
                               const xb_solve_plan *plan, int *solved) {
    const xb_map_geom *g = &l->g;
    const int R = g->R, C = g->C;
    const int64_t RC = (int64_t)R * C, RR = (int64_t)R * R;
    *solved = 0;
    if (!xn->power || !l->en || !l->en->apow || plan != xn->plan) return XB_OK;
    double *slot = l->en->apow + ((int64_t)r * g->ct + c) * RR;
    memset(slot, 0, (size_t)RR * sizeof(double));
    if (!xn->parasitic) { /* A = diag(sum_j G[i,j]) */
        for (int a = 0; a < g->arrays; a++)
            for (int i = 0; i < R; i++) {
                double s = 0;
                for (int j = 0; j < C; j++) s += gt[a * RC + (int64_t)i * C + j];
                slot[(int64_t)i * R + i] += s;
            }
        return XB_OK;
    }
    const xb_solve_plan *pp = xn->plan_pow ? xn->plan_pow : plan;
    double *am = xb_malloc((size_t)RR * sizeof(double));
    xb_status st = XB_OK;
    for (int a = 0; a < g->arrays && !st; a++) {
        st = xb_solve_plan_admittance(pp, &xn->hw.circuit, gt + a * RC, pp == plan ? e + a * RC : NULL, am, ws, NULL);
        for (int64_t q = 0; !st && q < RR; q++) slot[q] += am[q];
    }
    xb_free(am);
    *solved = pp == plan;
    return st;
}

xb_status xb_xnet_energy_probe(xb_xnet *xn, int on, int sample_stride) {
    XB_ASSERT(xn);
    if (on && sample_stride < 1)
        return xb_errorf(XB_ERR_ARG, "xb_xnet_energy_probe: sample_stride = %d. HINT: 1 (every input vector) or more",
                         sample_stride);
    for (int i = 0; i < xn->n_xl; i++) {
        xlayer *l = &xn->xl[i];
        if (l->digital) continue;
        xl_energy_t *en = en_get_(l);
        en->probe = on;
        if (!on) continue;
        en->stride = sample_stride;
        en->vectors = en->reads = en->skipped = en->lat_reads = en->drives = en->rt_passes = en->seen = en->sampled = 0;
        if (!en->sigma) en->sigma = xb_malloc((size_t)l->g.rt * l->g.R * l->g.R * sizeof(double));
        memset(en->sigma, 0, (size_t)l->g.rt * l->g.R * l->g.R * sizeof(double));
    }
    return XB_OK;
}

/* The DAC code of input v in pass `pass` (split: its positive, then its negative part; bipolar: |v|), as the
 * forward (xforward.c, rt_read_) computes it. */
static inline unsigned in_code_(float v, float cm, int pass, int split, float top) {
    const float a = split ? (pass ? (v < 0 ? -v : 0) : (v > 0 ? v : 0)) : fabsf(v);
    const float q = xq_clamp(xq_round(a, xq_dac_step(cm, top)), 0, top);
    return q > 0 ? (unsigned)q : 0u; /* NaN: 0 */
}
/* The value one input plane drives, in units of v_read: the DAC's plane p (bipolar: signed) or, without a DAC,
 * the input (split: the pass's part) over its range. */
static inline float in_level_(float v, float cm, int pass, int p, int split, int dac, int d, float top, float dmax) {
    if (!dac) return split ? (pass ? (v < 0 ? -v : 0) : (v > 0 ? v : 0)) / cm : v / cm;
    const float lv = (float)((in_code_(v, cm, pass, split, top) >> (d * p)) & ((1u << d) - 1)) / dmax;
    return (!split && v < 0) ? -lv : lv;
}

/* input_scaling = vector: every column's own range, max_i |x_ic| (1 for an all-zero column), read row by row */
static float *col_ranges_(int k, int ncols, const float *x) {
    float *cm = xb_calloc((size_t)ncols * sizeof(float));
    for (int i = 0; i < k; i++)
        for (int c = 0; c < ncols; c++) {
            const float a = fabsf(x[(size_t)i * ncols + c]);
            cm[c] = a > cm[c] ? a : cm[c];
        }
    for (int c = 0; c < ncols; c++)
        if (!(cm[c] > 0)) cm[c] = 1.0f;
    return cm;
}

#define XE_SIGMA_COLS 256 /* sampled vectors per dsyrk */

/* Whether input vector v (numbered across calls) enters the quadratic forms: one in `stride` on average, picked
 * by a hash of v rather than every stride-th, which would alias with the image width (every 64th vector of a
 * 32-wide feature map is always its left edge). */
static int sampled_(int64_t v, int stride) {
    if (stride <= 1) return 1;
    uint64_t z = (uint64_t)v + 0x9e3779b97f4a7c15ull; /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z % (uint64_t)stride == 0;
}

/* One forward call of layer l (inputs k x ncols): every read it makes, and the quadratic forms of the sample. */
void xl_energy_observe(xb_xnet *xn, xlayer *l, int ncols, const float *x) {
    xl_energy_t *en = l->en;
    if (!en || !en->probe || xn->calibrating || ncols <= 0) return;
    const xb_hw *hw = &xn->hw;
    const int k = l->k, R = l->g.R, rt = l->g.rt, P = l->planes, d = hw->dac_bits, dac = d > 0;
    const int split = hw->signed_inputs == XB_SIGNED_SPLIT, skip = hw->energy.zero_skip, vec = xn->vec;
    const float top = dac ? (float)((1L << l->in_bits) - 1) : 1.0f, dmax = dac ? (float)((1L << d) - 1) : 1.0f;
    const unsigned dmask = dac ? (1u << d) - 1 : 0;
    float xm = (float)l->x_max;
    if (!l->x_set || !(xm > 0)) { /* no range of its own (no DAC, nothing calibrated): the call's largest |x| */
        xm = 0;
        for (int64_t q = 0; q < (int64_t)k * ncols; q++) xm = fabsf(x[q]) > xm ? fabsf(x[q]) : xm;
        if (!(xm > 0)) xm = 1.0f;
    }
    /* per (row tile, pass, vector) the OR of the input codes (a plane is read when one of its bits is set) and
     * whether a split second pass runs (any negative input), gathered row by row so that the reads of x are
     * contiguous; then each vector's reads from them */
    float *cmv = vec ? col_ranges_(k, ncols, x) : NULL;
    const size_t plane = (size_t)ncols;
    unsigned *any = xb_calloc((size_t)rt * 2 * plane * sizeof(unsigned));
    unsigned char *neg = xb_calloc((size_t)rt * plane);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int r = 0; r < rt; r++) {
        const int i0 = r * R, m = k - i0 < R ? k - i0 : R;
        unsigned *a0 = any + (size_t)r * 2 * plane, *a1 = a0 + plane;
        unsigned char *ng = neg + (size_t)r * plane;
        for (int i = 0; i < m; i++) {
            const float *xr = x + (size_t)(i0 + i) * ncols;
            if (!dac) {
                for (int c = 0; c < ncols; c++) {
                    a0[c] |= split ? xr[c] > 0 : xr[c] != 0;
                    a1[c] |= xr[c] < 0;
                    ng[c] |= split && xr[c] < 0;
                }
            } else if (!split) {
                for (int c = 0; c < ncols; c++) a0[c] |= in_code_(xr[c], vec ? cmv[c] : xm, 0, 0, top);
            } else {
                for (int c = 0; c < ncols; c++) {
                    const float v = xr[c], cm = vec ? cmv[c] : xm;
                    a0[c] |= in_code_(v, cm, 0, 1, top);
                    a1[c] |= in_code_(v, cm, 1, 1, top);
                    ng[c] |= v < 0;
                }
            }
        }
    }
    int64_t reads = 0, skipped = 0, lat = 0, drives = 0, rtp = 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(+ : reads, skipped, lat, drives, rtp)
#endif
    for (int c = 0; c < ncols; c++) {
        int64_t latmax = 0;
        for (int r = 0; r < rt; r++) {
            const int m = k - r * R < R ? k - r * R : R;
            const int npass = 1 + neg[(size_t)r * plane + c];
            rtp += npass;
            int64_t rr = 0;
            for (int pass = 0; pass < npass; pass++) {
                const unsigned a = any[((size_t)r * 2 + pass) * plane + c];
                for (int p = 0; p < P; p++) {
                    const int nz = !skip || (dac ? ((a >> (d * p)) & dmask) != 0 : a != 0);
                    if (nz) { rr++; drives += m; } else skipped++;
                }
            }
            reads += rr;
            latmax = rr > latmax ? rr : latmax;
        }
        lat += latmax;
    }
    xb_free(any);
    xb_free(neg);
    en->vectors += ncols; en->reads += reads; en->skipped += skipped; en->lat_reads += lat; en->drives += drives;
    en->rt_passes += rtp;
    /* the quadratic forms: one vector in `stride` (sampled_, numbered across calls); per row tile the voltages of
     * the sampled vectors' non-zero reads as the rows of V (reads x m), sum V^T V by dsyrk, XE_SIGMA_COLS vectors at a time */
    const double vr = hw->v_read_v;
    const int per = (1 + split) * P;
    double *vm = xb_malloc((size_t)R * XE_SIGMA_COLS * per * sizeof(double));
    int *cols = xb_malloc(XE_SIGMA_COLS * sizeof(int));
    float *cms = xb_malloc(XE_SIGMA_COLS * sizeof(float));
    unsigned *code = xb_malloc((size_t)R * 2 * sizeof(unsigned));
    float *val = xb_malloc((size_t)R * 2 * sizeof(float));
    float *xt = xb_malloc((size_t)k * XE_SIGMA_COLS * sizeof(float));
    for (int c0 = 0; c0 < ncols;) {
        int nsel = 0;
        for (; c0 < ncols && nsel < XE_SIGMA_COLS; c0++)
            if (sampled_(en->seen + c0, en->stride)) cols[nsel++] = c0;
        if (!nsel) break;
        en->sampled += nsel;
        for (int q = 0; q < nsel; q++) cms[q] = vec ? cmv[cols[q]] : xm;
        for (int i = 0; i < k; i++) /* the sampled vectors, each contiguous */
            for (int q = 0; q < nsel; q++) xt[(size_t)q * k + i] = x[(size_t)i * ncols + cols[q]];
        for (int r = 0; r < rt; r++) {
            const int i0 = r * R, m = k - i0 < R ? k - i0 : R;
            int nc = 0; /* columns of V filled */
            for (int q = 0; q < nsel; q++) {
                unsigned anyq[2] = {0, 0};
                for (int i = 0; i < m; i++) {
                    const float v = xt[(size_t)q * k + i0 + i];
                    for (int pass = 0; pass < 1 + split; pass++) {
                        if (dac) {
                            code[2 * i + pass] = in_code_(v, cms[q], pass, split, top);
                            anyq[pass] |= code[2 * i + pass];
                            val[2 * i + pass] = (!split && v < 0) ? -1.0f : 1.0f; /* the sign of a bipolar input */
                        } else {
                            val[2 * i + pass] = in_level_(v, cms[q], pass, 0, split, 0, 0, 1, 1);
                            anyq[pass] |= val[2 * i + pass] != 0;
                        }
                    }
                }
                for (int pass = 0; pass < 1 + split; pass++)
                    for (int p = 0; p < P; p++) {
                        if (!(dac ? (anyq[pass] >> (d * p)) & dmask : anyq[pass])) continue; /* draws nothing */
                        for (int i = 0; i < m; i++)
                            vm[(size_t)nc * m + i] =
                                dac ? vr * val[2 * i + pass] * (double)((code[2 * i + pass] >> (d * p)) & dmask) / dmax
                                    : vr * val[2 * i + pass];
                        nc++;
                    }
            }
            if (nc) cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, m, nc, 1.0, vm, m, 1.0,
                                en->sigma + (size_t)r * R * R, R);
        }
    }
    xb_free(cms);
    xb_free(cmv);
    xb_free(xt);
    xb_free(code);
    xb_free(val);
    xb_free(vm);
    xb_free(cols);
    en->seen += ncols;
}

/* sum_ij A_ij S_ij for symmetric A (full) and S (lower triangle, row-major: row i holds j <= i). */
static double trace_prod_(const double *a, const double *s, int R) {
    double t = 0;
    for (int i = 0; i < R; i++) {
        t += a[(size_t)i * R + i] * s[(size_t)i * R + i];
        for (int j = 0; j < i; j++) t += 2 * a[(size_t)i * R + j] * s[(size_t)i * R + j];
    }
    return t;
}

/* Row tile r's admittance summed over its column tiles into out (R x R). */
static void row_tile_admittance_(const xlayer *l, int r, double *out) {
    const int64_t RR = (int64_t)l->g.R * l->g.R;
    memset(out, 0, (size_t)RR * sizeof(double));
    for (int c = 0; c < l->g.ct; c++) {
        const double *a = l->en->apow + ((int64_t)r * l->g.ct + c) * RR;
        for (int64_t q = 0; q < RR; q++) out[q] += a[q];
    }
}

/* Output vectors per image of mapped layer li (its node's output pixels; 1 for linear layers). */
static double vectors_per_image_(const xb_model *m, int li) {
    for (int n = 0; n < xb_model_n_nodes(m); n++)
        if (xb_model_node_mapped(m, n) == li) {
            int c, h, w;
            xb_model_node_shape(m, n, &c, &h, &w);
            return (double)h * w;
        }
    return 1;
}

/* Adds xlayer l's counts to o: measured (the probe's) or nominal (one image). */
static void add_counts_(const xb_xnet *xn, const xlayer *l, int measured, double vpi, xb_energy_counts *o) {
    const xb_hw *hw = &xn->hw;
    const xb_energy_cfg *ec = &hw->energy;
    const xb_map_geom *g = &l->g;
    const int R = g->R, C = g->C, S = g->slices, ro = l->rows_out, P = l->planes, k = l->k;
    const int ntype = g->n_sign == 2 ? NT_PAIR : (hw->reference == XB_REF_COLUMN ? NT_REFCOL : NT_DIGITAL);
    const int nN = ntype == NT_PAIR ? ro : ntype == NT_REFCOL ? g->ct : 0;
    const double conv_per_read = hw->adc_bits > 0 ? (double)S * (ro + (hw->adc_signal == XB_ADC_COLUMN ? nN : 0)) : 0;
    const double sensed_per_read = (double)S * ro * g->n_sign + (ntype == NT_REFCOL ? (double)S * g->ct : 0);
    const double sa_per_read = (double)S * ro;
    const double tr = ec->read_time_s;
    double *asum = l->en && l->en->apow ? xb_malloc((size_t)R * R * sizeof(double)) : NULL;
    double vectors, reads, skipped = 0, lat, drives, rtp, earr = 0;
    if (measured) {
        const xl_energy_t *en = l->en;
        vectors = (double)en->vectors; reads = (double)en->reads; skipped = (double)en->skipped;
        lat = (double)en->lat_reads; drives = (double)en->drives; rtp = (double)en->rt_passes;
        if (asum && en->sampled > 0) {
            for (int r = 0; r < g->rt; r++) {
                row_tile_admittance_(l, r, asum);
                earr += trace_prod_(asum, en->sigma + (size_t)r * R * R, R);
            }
            earr *= tr * (double)en->vectors / (double)en->sampled;
        }
    } else {
        /* every input bit (or DAC level) on with probability p, independently; one pass (split inputs add a second
         * pass only where inputs are negative: measured counts have it) */
        const double p = ec->input_density, v2 = hw->v_read_v * hw->v_read_v;
        vectors = vpi; reads = drives = lat = 0; rtp = vpi * g->rt;
        double latmax = 0;
        for (int r = 0; r < g->rt; r++) {
            const int m = k - r * R < R ? k - r * R : R;
            const double pz = ec->zero_skip ? pow(1 - p, m) : 0; /* a plane with every row off is skipped */
            const double rr = P * (1 - pz);
            reads += vpi * rr; skipped += vpi * P * pz; drives += vpi * rr * m;
            latmax = rr > latmax ? rr : latmax;
            if (asum) {
                row_tile_admittance_(l, r, asum);
                double all = 0, diag = 0;
                for (int i = 0; i < m; i++) {
                    diag += asum[(size_t)i * R + i];
                    for (int j = 0; j < m; j++) all += asum[(size_t)i * R + j];
                }
                earr += vpi * P * tr * v2 * (p * p * all + (p - p * p) * diag);
            }
        }
        lat = vpi * latmax;
    }
    xb_free(asum);
    o->vectors += vectors;
    o->reads += reads;
    o->reads_skipped += skipped;
    o->latency_reads += lat;
    o->dac_drives += drives;
    o->adc_conversions += reads * conv_per_read;
    o->columns_sensed += reads * sensed_per_read;
    o->shift_adds += reads * sa_per_read;
    o->accumulations += (rtp - vectors) * ro;
    o->buffer_bits += vectors * (double)(k + ro) * ec->word_bits;
    o->array_energy_j += earr;
    o->arrays += g->arrays_total;
    o->adcs += hw->adc_bits > 0 ? g->arrays_total * (int64_t)((C + ec->adc_share_cols - 1) / ec->adc_share_cols) : 0;
    o->drivers += g->arrays_total * (int64_t)R;
    o->samplers += g->arrays_total * (int64_t)C;
    o->rows = R;
    o->cols = C;
    o->adc_bits = hw->adc_bits;
    o->dac_bits = hw->dac_bits;
    o->planes = P;
    o->slices = S;
}

xb_status xb_xnet_energy_counts(const xb_xnet *xn, int measured, int i, xb_energy_counts *out) {
    XB_ASSERT(xn && out && i >= 0 && i < xn->n_mapped);
    memset(out, 0, sizeof *out);
    const xlayer *l0 = &xn->xl[xn->first_xl[i]];
    snprintf(out->name, sizeof out->name, "%s", l0->st.name);
    out->mapped = !l0->digital;
    const double vpi = vectors_per_image_(xn->m, i);
    if (l0->digital) {
        out->vectors = measured ? 0 : vpi;
        return XB_OK;
    }
    if (measured && (!l0->en || !l0->en->stride))
        return xb_errorf(XB_ERR_STATE, "energy counts of layer %s: the probe never ran. HINT: call "
                         "xb_xnet_energy_probe(xn, 1, stride) before the forwards", out->name);
    for (int q = xn->first_xl[i]; q < xn->first_xl[i + 1]; q++) add_counts_(xn, &xn->xl[q], measured, vpi, out);
    return XB_OK;
}

const xb_hw *xb_xnet_hw(const xb_xnet *xn) { return &xn->hw; }
int xb_xnet_power_kept(const xb_xnet *xn) { return xn->power; }
int xb_xnet_probing(const xb_xnet *xn) {
    for (int i = 0; i < xn->n_xl; i++)
        if (xn->xl[i].en && xn->xl[i].en->probe) return 1;
    return 0;
}
