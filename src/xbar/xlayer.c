/* xlayer.c -- crossbar-backed layers: programming every tile of every mapped layer (OpenMP over
 * tiles and seeds) and the forward product that replaces the layer's GEMM through the model's hook.
 *
 * Units.  Inside a layer, signals are in "code units": a read current divided by v_read * g_unit, so
 * that an ideal cell of code c driven by a full-scale input contributes c.  A layer output is
 *     y_j = x_max * sum_t coef_t * sum_p omega_p * sign_pass * ADC(signal_{t,p,j})
 * with coef_t = s/qmax * 2^(b t) (* the drift compensation), omega_p the weight of input plane p and
 * x_max the input range (map.c has the codes; docs/hardware.md the whole chain).
 *
 * Two paths.
 *   fast (no ADC): every stage is linear, so each layer is one float matrix W_eff (rows_out x k) in
 *     weight units, assembled from all its tiles (E from the solver, differential subtraction or
 *     reference column, slices recombined).  DAC quantization is applied to the inputs, read noise as
 *     an additive Gaussian per output with the variance the per-cell noise implies
 *     (var y_j = sum_i x_i^2 sum_cells coef^2 sigma_cell^2; exact in distribution for independent cell
 *     noise, first order in the wire resistance), shared reference-column noise drawn once per tile.
 *   tiled (ADC): per row tile, per slice, per input pass (sign) and plane: signal = D x (+ noise),
 *     ADC, shift-add, digital accumulation over row tiles.  All column tiles of a row tile run in one
 *     GEMM (each output element is still its own ADC conversion).
 * Columns are processed in chunks of a fixed width per layer (OpenMP over chunks, single-threaded
 * BLAS inside), so results do not depend on the thread count. */
#include "xb_xbar.h"

#include <cblas.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define XL_STATS_COLS 1024          /* columns per call compared against the float product */
#define XL_CHUNK_FLOATS (1 << 19)   /* target size of one chunk buffer */
#define XL_CAL_SAMPLES (1 << 21)    /* values kept for a calibration percentile */

enum { NT_PAIR = 0, NT_REFCOL, NT_DIGITAL };

typedef struct xlayer {
    int li, group, groups, param, digital;
    int rows_out, k;
    xb_map_geom g;
    int ntype, tiled, noise;
    double s, comp, gain, coef[XB_MAX_SLICES];
    /* fast path (weight units) */
    float *weff, *vnoise, *vref;
    /* tiled path (code units), slices stacked: row t*rows_out + j of D is slice t of output j.
     * D = P (column ADC) or P - N (difference ADC); Nm (slices*nN x k) the N side for column ADCs;
     * VP / VN the read-noise variances of the P (and, for difference ADCs, pair N) and N sides. */
    float *D, *Nm, *VP, *VN;
    int nN;                       /* rows of Nm / VN per slice: rows_out (pair), ct (reference column), 0 */
    double ncode[XB_MAX_SLICES];  /* digital reference in code units */
    double x_max, fs;             /* input range (activation units); ADC full scale (code units) */
    int x_set, fs_set;
    int ch;                       /* chunk width (columns) */
    uint64_t calls;
    xb_xlayer_stats st;
} xlayer;

struct xb_xnet {
    xb_hw hw;
    xb_model *m;
    int n_xl, n_mapped;
    xlayer *xl;
    int *first_xl;                /* per mapped layer: its group-0 xlayer */
    xb_solve_plan *plan;
    int parasitic, nthreads, attached, calibrating, programmed, foldable, folded;
    float *wsave;                 /* float weights of the mapped layers while folded */
    int planes, in_bits, need_x, need_fs, need_gain;
    size_t tbuf_floats;
    float *tbuf, *refbuf, *cal;
    size_t ws_bytes, arr_doubles;
    uint64_t seed;
};

static int max_threads_(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static int thread_id_(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------------------------------------ */
/* Construction                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

static int pow2_floor_(int64_t v) {
    int p = 1;
    while ((int64_t)p * 2 <= v) p *= 2;
    return p;
}

/* floats of the per-thread chunk buffer a layer needs */
static size_t layer_tbuf_(const xb_xnet *xn, const xlayer *l) {
    size_t ch = (size_t)l->ch, P = (size_t)xn->planes, S = (size_t)l->g.slices;
    size_t ro = (size_t)l->rows_out, R = (size_t)l->g.R, N = (size_t)(l->nN > l->rows_out ? l->nN : l->rows_out);
    /* xq, x2, var, var_ref, z */
    if (!l->tiled) return 2 * (size_t)l->k * ch + ro * ch + (size_t)l->g.ct * ch + ch;
    /* Xp, Xp2, sig, sigN, var, acc, colsum, z */
    return 2 * R * P * ch + S * ro * P * ch + 2 * S * N * P * ch + ro * ch + 2 * P * ch;
}

xb_status xb_xnet_init(const xb_hw *hw, xb_model *m, xb_xnet **out) {
    *out = NULL;
    xb_status st = xb_hw_validate(hw);
    if (st) return st;
    int nm = xb_model_n_mapped(m);
    for (int d = 0; d < hw->n_digital; d++) {
        int found = 0;
        for (int i = 0; i < nm && !found; i++) {
            const char *name;
            xb_model_mapped_info(m, i, &name, NULL, NULL, NULL);
            found = strcmp(name, hw->digital[d]) == 0;
        }
        if (!found) {
            char list[1024] = "";
            size_t u = 0;
            for (int i = 0; i < nm && u < sizeof list - 1; i++) {
                const char *name;
                xb_model_mapped_info(m, i, &name, NULL, NULL, NULL);
                u += (size_t)snprintf(list + u, sizeof list - u, "%s%s", i ? ", " : "", name);
            }
            return xb_errorf(XB_ERR_CONFIG, "%s: [tile] digital_layers names '%s', which is not a conv/linear layer of "
                             "model '%s'. HINT: the mapped layers are: %s", hw->path[0] ? hw->path : "hw config",
                             hw->digital[d], xb_model_name(m), list);
        }
    }
    xb_xnet *xn = xb_calloc(sizeof *xn);
    xn->hw = *hw;
    xn->m = m;
    xn->n_mapped = nm;
    xn->first_xl = xb_calloc((size_t)(nm + 1) * sizeof(int));
    xn->planes = hw->bit_serial ? (hw->input_bits + hw->dac_bits - 1) / hw->dac_bits : 1;
    xn->in_bits = hw->bit_serial ? hw->input_bits : hw->dac_bits;
    int quant_in = hw->dac_bits > 0, adc = hw->adc_bits > 0;
    xn->need_x = (quant_in || adc) && hw->input_range == XB_RANGE_CALIBRATED;
    xn->need_fs = adc && hw->adc_range == XB_RANGE_CALIBRATED;
    xn->need_gain = hw->gain_calibration;
    xn->parasitic = hw->solver != XB_SOLVER_NONE &&
                    (hw->circuit.r_wire_ohm > 0 || hw->circuit.r_driver_ohm > 0 || hw->circuit.r_sense_ohm > 0);
    /* count xlayers (one per mapped layer and convolution group) */
    int total = 0;
    for (int i = 0; i < nm; i++) {
        int p, ro, k;
        xb_model_mapped_info(m, i, NULL, &p, &ro, &k);
        xn->first_xl[i] = total;
        total += (int)(xb_model_param(m, p)->shape[0] / ro);
    }
    xn->first_xl[nm] = total;
    xn->n_xl = total;
    xn->xl = xb_calloc((size_t)total * sizeof(xlayer));
    size_t tb = 0, arr = 0;
    int ro_max = 1;
    for (int i = 0; i < nm; i++) {
        const char *name;
        int p, ro, k;
        xb_model_mapped_info(m, i, &name, &p, &ro, &k);
        int groups = (int)(xb_model_param(m, p)->shape[0] / ro);
        int digital = (!hw->map_first && i == 0) || (!hw->map_last && i == nm - 1);
        for (int d = 0; d < hw->n_digital; d++) digital |= strcmp(name, hw->digital[d]) == 0;
        for (int gi = 0; gi < groups; gi++) {
            xlayer *l = &xn->xl[xn->first_xl[i] + gi];
            l->li = i;
            l->group = gi;
            l->groups = groups;
            l->param = p;
            l->digital = digital;
            l->rows_out = ro;
            l->k = k;
            snprintf(l->st.name, sizeof l->st.name, "%s", name);
            l->st.rows_out = ro;
            l->st.k = k;
            l->st.groups = groups;
            l->st.mapped = !digital;
            if (ro > ro_max) ro_max = ro;
            if (digital) continue;
            if ((st = xb_map_geom_init(hw, ro, k, &l->g))) goto fail;
            const xb_map_geom *g = &l->g;
            l->ntype = hw->scheme == XB_SCHEME_DIFFERENTIAL ? NT_PAIR
                     : hw->reference == XB_REF_COLUMN ? NT_REFCOL : NT_DIGITAL;
            l->tiled = adc;
            l->noise = hw->read_noise_sigma > 0;
            l->nN = l->ntype == NT_PAIR ? ro : l->ntype == NT_REFCOL ? g->ct : 0;
            size_t wk = (size_t)ro * k;
            if (!l->tiled) {
                l->weff = xb_calloc(wk * sizeof(float));
                if (l->noise) {
                    l->vnoise = xb_calloc(wk * sizeof(float));
                    if (l->ntype == NT_REFCOL) l->vref = xb_calloc((size_t)g->ct * k * sizeof(float));
                }
            } else {
                size_t S = (size_t)g->slices, nk = (size_t)l->nN * k;
                l->D = xb_calloc(S * wk * sizeof(float));
                if (hw->adc_signal == XB_ADC_COLUMN && l->nN) l->Nm = xb_calloc(S * nk * sizeof(float));
                if (l->noise) {
                    l->VP = xb_calloc(S * wk * sizeof(float));
                    if (l->nN && (hw->adc_signal == XB_ADC_COLUMN || l->ntype == NT_REFCOL))
                        l->VN = xb_calloc(S * nk * sizeof(float));
                }
            }
            int64_t widest = l->tiled ? (int64_t)g->slices * (ro > l->nN ? ro : l->nN) : (ro > k ? ro : k);
            if (g->R > widest) widest = g->R;
            if (k > widest) widest = k;
            int64_t ch = pow2_floor_(XL_CHUNK_FLOATS / (widest * (l->tiled ? xn->planes : 1)));
            l->ch = (int)(ch < 16 ? 16 : ch > 4096 ? 4096 : ch);
            size_t need = layer_tbuf_(xn, l);
            if (need > tb) tb = need;
            size_t a = (size_t)g->arrays * g->R * g->C;
            if (a > arr) arr = a;
            l->st.tiles = g->tiles;
            l->st.arrays = g->arrays_total;
            l->st.cells_used = g->cells_used;
            l->st.cells_alloc = g->cells_alloc;
        }
    }
    xn->foldable = !adc && !quant_in && hw->read_noise_sigma == 0;
    xn->nthreads = max_threads_();
    xn->tbuf_floats = tb;
    if (tb) xn->tbuf = xb_malloc((size_t)xn->nthreads * tb * sizeof(float));
    xn->refbuf = xb_malloc((size_t)ro_max * XL_STATS_COLS * sizeof(float));
    xn->arr_doubles = arr;
    if (xn->need_x || xn->need_fs) xn->cal = xb_malloc((size_t)XL_CAL_SAMPLES * sizeof(float));
    if (xn->parasitic && arr) {
        static const xb_solve_method meth[] = {XB_SOLVE_EXACT, XB_SOLVE_DECOUPLED, XB_SOLVE_CHOLMOD};
        if ((st = xb_solve_plan_init(hw->rows, hw->cols, meth[hw->solver], &xn->plan))) goto fail;
        xn->ws_bytes = xb_solve_plan_workspace(xn->plan);
    }
    *out = xn;
    return XB_OK;
fail:
    xb_xnet_free(xn);
    return st;
}

void xb_xnet_free(xb_xnet *xn) {
    if (!xn) return;
    if (xn->folded) xb_xnet_fold(xn, 0);
    if (xn->attached) xb_xnet_detach(xn);
    for (int i = 0; i < xn->n_xl; i++) {
        xlayer *l = &xn->xl[i];
        xb_free(l->weff); xb_free(l->vnoise); xb_free(l->vref);
        xb_free(l->D); xb_free(l->Nm); xb_free(l->VP); xb_free(l->VN);
    }
    if (xn->plan) xb_solve_plan_free(xn->plan);
    xb_free(xn->wsave);
    xb_free(xn->xl); xb_free(xn->first_xl); xb_free(xn->tbuf); xb_free(xn->refbuf); xb_free(xn->cal);
    xb_free(xn);
}

/* bytes of programmed state (for grouping Monte-Carlo seeds) */
size_t xb_xnet_state_bytes_(const xb_xnet *xn);
size_t xb_xnet_state_bytes_(const xb_xnet *xn) {
    size_t b = sizeof *xn + xn->tbuf_floats * (size_t)xn->nthreads * sizeof(float);
    for (int i = 0; i < xn->n_xl; i++) {
        const xlayer *l = &xn->xl[i];
        if (l->digital) continue;
        size_t wk = (size_t)l->rows_out * l->k * sizeof(float);
        if (!l->tiled) b += wk * (l->noise ? 2 : 1);
        else b += (size_t)l->g.slices * wk * (1 + (l->noise ? 1 : 0) + (l->Nm ? 1 : 0) + (l->VN ? 1 : 0));
    }
    return b;
}

/* ------------------------------------------------------------------------------------------------ */
/* Programming                                                                                       */
/* ------------------------------------------------------------------------------------------------ */

static double cell_var_(const xb_hw *hw, double g, double gu) {
    double sd = hw->read_noise_mode == XB_NOISE_RELATIVE ? hw->read_noise_sigma * g : hw->read_noise_sigma;
    return (sd / gu) * (sd / gu);
}

/* Per-layer set-up before its tiles are programmed: clip scale, coefficients, ranges, stats. */
static void layer_begin_(xb_xnet *xn, xlayer *l) {
    const xb_hw *hw = &xn->hw;
    xb_xlayer_stats keep = l->st;
    memset(&l->st, 0, sizeof l->st);
    memcpy(l->st.name, keep.name, sizeof keep.name);
    l->st.mapped = keep.mapped; l->st.rows_out = keep.rows_out; l->st.k = keep.k; l->st.groups = keep.groups;
    l->st.tiles = keep.tiles; l->st.arrays = keep.arrays; l->st.cells_used = keep.cells_used;
    l->st.cells_alloc = keep.cells_alloc;
    l->calls = 0;
    if (l->digital) return;
    const float *w = xb_model_params(xn->m) + xb_model_param(xn->m, l->param)->offset +
                     (size_t)l->group * l->rows_out * l->k;
    l->s = xb_map_scale(hw, (int64_t)l->rows_out * l->k, w);
    l->comp = hw->drift_compensation ? 1.0 / xb_drift_factor(hw->drift_nu, hw->drift_t_s, hw->drift_t0_s) : 1.0;
    l->gain = 1;
    l->st.gain = 1;
    for (int t = 0; t < l->g.slices; t++) {
        l->coef[t] = l->s / l->g.qmax * l->comp * ldexp(1.0, l->g.slice_bits * t);
        l->ncode[t] = hw->g_min_s / l->g.g_unit_s + l->g.ref_code[t];
    }
    l->st.w_scale = l->s;
    /* ranges: fixed and worst-case now, calibrated ones by xb_xnet_calibrate */
    l->x_set = hw->input_range == XB_RANGE_FIXED;
    l->x_max = l->x_set ? hw->input_full_scale : 0;
    l->fs_set = 1;
    l->fs = 0;
    if (hw->adc_bits > 0) {
        const double gu = l->g.g_unit_s;
        if (hw->adc_range == XB_RANGE_FIXED) l->fs = hw->adc_full_scale_a / (hw->v_read_v * gu);
        else if (hw->adc_range == XB_RANGE_WORST_CASE)
            l->fs = hw->adc_signal == XB_ADC_DIFFERENCE ? l->g.R * l->g.kmax : l->g.R * hw->g_max_s / gu;
        else l->fs_set = 0;
    }
    l->st.input_full_scale = l->x_max;
    l->st.adc_full_scale_a = l->fs * hw->v_read_v * l->g.g_unit_s;
}

/* One logical tile: targets -> devices -> effective matrices -> the layer's matrices. */
static xb_status program_tile_(xb_xnet *xn, xlayer *l, int r, int c, double *gt, double *e, void *ws,
                               xb_device_counts *cnt) {
    const xb_hw *hw = &xn->hw;
    const xb_map_geom *g = &l->g;
    const int R = g->R, C = g->C, S = g->slices, k = l->k;
    const int64_t RC = (int64_t)R * C;
    const float *w = xb_model_params(xn->m) + xb_model_param(xn->m, l->param)->offset +
                     (size_t)l->group * l->rows_out * l->k;
    xb_map_tile_targets(hw, g, w, l->s, r, c, gt);
    xb_rng base, lr, tr, ar;
    xb_rng_seed(&base, xn->seed, "device");
    xb_rng_fork(&base, (uint64_t)l->li * 65536u + (uint64_t)l->group, &lr);
    xb_rng_fork(&lr, (uint64_t)r * (uint64_t)g->ct + (uint64_t)c, &tr);
    for (int a = 0; a < g->arrays; a++) {
        xb_rng_fork(&tr, (uint64_t)a, &ar);
        xb_device_program(hw, RC, gt + a * RC, &ar, cnt);
        if (xn->parasitic) {
            xb_status st = xb_solve_plan_effective(xn->plan, &hw->circuit, gt + a * RC, e + a * RC, ws, NULL);
            if (st) {
                char why[768];
                snprintf(why, sizeof why, "%s", xb_last_error());
                return xb_errorf(st, "layer %s, tile (%d, %d), array %d: %s", l->st.name, r, c, a, why);
            }
        } else {
            memcpy(e + a * RC, gt + a * RC, (size_t)RC * sizeof(double));
        }
    }
    const double gu = g->g_unit_s;
    const int i0 = r * R, m = k - i0 < R ? k - i0 : R;
    const int j0 = c * g->wcols, nj = l->rows_out - j0 < g->wcols ? l->rows_out - j0 : g->wcols;
    const int diffadc = hw->adc_signal == XB_ADC_DIFFERENCE;
    int ra[XB_MAX_SLICES], rp[XB_MAX_SLICES];
    if (l->ntype == NT_REFCOL)
        for (int t = 0; t < S; t++) xb_map_ref(g, t, &ra[t], &rp[t]);
    /* reference columns: one row of Nm / VN per column tile */
    if (l->ntype == NT_REFCOL) {
        for (int i = 0; i < m; i++) {
            double vr = 0;
            for (int t = 0; t < S; t++) {
                int64_t idx = ra[t] * RC + (int64_t)i * C + rp[t];
                double n = e[idx] / gu, v = l->noise ? cell_var_(hw, gt[idx], gu) : 0;
                vr += l->coef[t] * l->coef[t] * v;
                if (l->tiled) {
                    size_t o = ((size_t)t * l->nN + c) * k + i0 + i;
                    if (l->Nm) l->Nm[o] = (float)n;
                    if (l->VN) l->VN[o] = (float)v;
                }
            }
            if (!l->tiled && l->vref) l->vref[(size_t)c * k + i0 + i] = (float)vr;
        }
    }
    for (int jj = 0; jj < nj; jj++) {
        const int j = j0 + jj;
        int pa[XB_MAX_SLICES], pp[XB_MAX_SLICES], na[XB_MAX_SLICES], np[XB_MAX_SLICES];
        for (int t = 0; t < S; t++) {
            xb_map_cell(g, 0, t, jj, &pa[t], &pp[t]);
            if (l->ntype == NT_PAIR) xb_map_cell(g, 1, t, jj, &na[t], &np[t]);
        }
        for (int i = 0; i < m; i++) {
            double wsum = 0, vsum = 0;
            for (int t = 0; t < S; t++) {
                int64_t ip = pa[t] * RC + (int64_t)i * C + pp[t];
                double P = e[ip] / gu, vp = l->noise ? cell_var_(hw, gt[ip], gu) : 0, N, vn = 0;
                if (l->ntype == NT_PAIR) {
                    int64_t in = na[t] * RC + (int64_t)i * C + np[t];
                    N = e[in] / gu;
                    vn = l->noise ? cell_var_(hw, gt[in], gu) : 0;
                } else if (l->ntype == NT_REFCOL) {
                    N = e[ra[t] * RC + (int64_t)i * C + rp[t]] / gu;
                } else {
                    N = l->ncode[t];
                }
                wsum += l->coef[t] * (P - N);
                vsum += l->coef[t] * l->coef[t] * (vp + vn);
                if (l->tiled) {
                    size_t o = ((size_t)t * l->rows_out + j) * k + i0 + i;
                    l->D[o] = (float)(diffadc ? P - N : P);
                    if (l->VP) l->VP[o] = (float)(diffadc ? vp + vn : vp);
                    if (l->ntype == NT_PAIR) { /* nN == rows_out */
                        if (l->Nm) l->Nm[o] = (float)N;
                        if (l->VN) l->VN[o] = (float)vn;
                    }
                }
            }
            if (!l->tiled) {
                l->weff[(size_t)j * k + i0 + i] = (float)wsum;
                if (l->vnoise) l->vnoise[(size_t)j * k + i0 + i] = (float)vsum;
            }
        }
    }
    return XB_OK;
}

typedef struct work_ { int net, xl, r, c; } work_;

xb_status xb_xnet_program_many(xb_xnet *const *xns, const uint64_t *seeds, int n) {
    XB_ASSERT(n >= 1);
    int64_t nw = 0;
    size_t arr = 0, wsb = 0;
    for (int q = 0; q < n; q++) {
        xb_xnet *xn = xns[q];
        XB_ASSERT(!xn->folded && "unfold (xb_xnet_fold(xn, 0)) before programming: it reads the float weights");
        xn->seed = seeds[q];
        xn->programmed = 0;
        for (int i = 0; i < xn->n_xl; i++) {
            layer_begin_(xn, &xn->xl[i]);
            if (!xn->xl[i].digital) nw += xn->xl[i].g.tiles;
        }
        if (xn->arr_doubles > arr) arr = xn->arr_doubles;
        if (xn->ws_bytes > wsb) wsb = xn->ws_bytes;
    }
    work_ *wl = xb_malloc((size_t)(nw + 1) * sizeof(work_));
    int64_t u = 0;
    for (int q = 0; q < n; q++)
        for (int i = 0; i < xns[q]->n_xl; i++) {
            const xlayer *l = &xns[q]->xl[i];
            if (l->digital) continue;
            for (int r = 0; r < l->g.rt; r++)
                for (int c = 0; c < l->g.ct; c++) wl[u++] = (work_){q, i, r, c};
        }
    xb_status err = XB_OK;
    char msg[1024] = "";
#pragma omp parallel
    {
        double *gt = xb_malloc((arr + 1) * sizeof(double)), *e = xb_malloc((arr + 1) * sizeof(double));
        void *ws = wsb ? xb_malloc(wsb) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < nw; it++) {
            if (err) continue;
            xb_xnet *xn = xns[wl[it].net];
            xlayer *l = &xn->xl[wl[it].xl];
            xb_device_counts cnt = {0};
            double ts = xb_time_s();
            xb_status st = program_tile_(xn, l, wl[it].r, wl[it].c, gt, e, ws, &cnt);
            double dt = xb_time_s() - ts;
#pragma omp critical(xb_xnet_program)
            {
                if (st && !err) {
                    err = st;
                    snprintf(msg, sizeof msg, "%s", xb_last_error());
                }
                l->st.stuck_gmin += cnt.stuck_gmin;
                l->st.stuck_gmax += cnt.stuck_gmax;
                l->st.g_clipped += cnt.clipped;
                l->st.program_s += dt;
            }
        }
        xb_free(gt);
        xb_free(e);
        xb_free(ws);
    }
    xb_free(wl);
    if (err) return xb_errorf(err, "%s", msg);
    for (int q = 0; q < n; q++) xns[q]->programmed = 1;
    return XB_OK;
}

xb_status xb_xnet_program(xb_xnet *xn, uint64_t seed) { return xb_xnet_program_many(&xn, &seed, 1); }

/* ------------------------------------------------------------------------------------------------ */
/* Forward                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

/* in-place quantizer with clip count (serial: callers parallelise over chunks) */
static int64_t quant_(int64_t n, float *v, float step, float lo, float hi) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) {
        float q = rintf(v[i] / step);
        c += (q < lo) | (q > hi);
        q = q < lo ? lo : q > hi ? hi : q;
        v[i] = q * step;
    }
    return c;
}

static void gemm_(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *Cm, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, Cm, ldc);
}

/* sig[i] += sqrt(max(var[i], 0)) * N(0,1), row by row (z: n floats of scratch) */
static void noise_add_(int64_t n, const float *var, float *sig, float *z, int zn, xb_rng *rng) {
    for (int64_t i0 = 0; i0 < n; i0 += zn) {
        int b = (int)(n - i0 < zn ? n - i0 : zn);
        xb_normal_fill(rng, b, z);
        for (int i = 0; i < b; i++) {
            float v = var[i0 + i];
            sig[i0 + i] += sqrtf(v > 0 ? v : 0) * z[i];
        }
    }
}

/* Calibration samples of |value|: a chunk keeps every stride-th value in its own slot of the buffer
 * (so the sample does not depend on the thread count), and the exact maximum. */
typedef struct cal_ { float *buf; int64_t n, cap, stride, cnt; float maxabs; } cal_;
static void cal_add_(cal_ *c, const float *v, int64_t n) {
    float m[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) {
            float a = fabsf(v[i + j]);
            m[j] = a > m[j] ? a : m[j];
        }
    float mx = c->maxabs;
    for (; i < n; i++) mx = fabsf(v[i]) > mx ? fabsf(v[i]) : mx;
    for (int j = 0; j < 16; j++) mx = m[j] > mx ? m[j] : mx;
    c->maxabs = mx;
    /* every stride-th value, counting on from the previous call: positions with (cnt + i + 1) % stride == 0 */
    for (i = c->stride - 1 - c->cnt; i < n && c->n < c->cap; i += c->stride) c->buf[c->n++] = fabsf(v[i]);
    c->cnt = (c->cnt + n) % c->stride;
}

/* Merges the chunks' samples (slot ci at buf + ci*slot, n[ci] values) and takes the percentile. */
static double cal_merge_(float *buf, int64_t slot, int64_t nch, const int64_t *n, const float *mx, double p) {
    float m = 0;
    int64_t u = 0;
    for (int64_t ci = 0; ci < nch; ci++) {
        if (mx[ci] > m) m = mx[ci];
        memmove(buf + u, buf + ci * slot, (size_t)n[ci] * sizeof(float));
        u += n[ci];
    }
    if (p >= 100 || u == 0) return m;
    return xb_percentile_abs(buf, u, p);
}

/* Input range x_max of a layer from this call's inputs (k x ncols). */
static void calibrate_input_(xb_xnet *xn, xlayer *l, int64_t n, const float *x) {
    cal_ c = {xn->cal, 0, XL_CAL_SAMPLES, n / XL_CAL_SAMPLES + 1, 0, 0};
    cal_add_(&c, x, n);
    double v = xn->hw.input_percentile >= 100 ? c.maxabs : xb_percentile_abs(c.buf, c.n, xn->hw.input_percentile);
    l->x_max = v > 0 ? v : 1.0;
    l->x_set = 1;
    l->st.input_full_scale = l->x_max;
}

/* fast path, chunk [c0, c0+nc): DAC on inputs, one GEMM, read noise */
static void fast_chunk_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, int64_t c0, int nc,
                        float *buf, xb_rng *rng, int64_t *dac_clip) {
    const xb_hw *hw = &xn->hw;
    const int k = l->k, ro = l->rows_out, ct = l->g.ct;
    float *xq = buf, *x2 = xq + (size_t)k * nc, *var = x2 + (size_t)k * nc, *varr = var + (size_t)ro * nc;
    float *z = varr + (size_t)ct * nc;
    const float *B = x + c0;
    int ldb = ncols;
    if (hw->dac_bits > 0) {
        const float top = (float)((1L << xn->in_bits) - 1), step = (float)l->x_max / top;
        int64_t clip = 0;
        for (int i = 0; i < k; i++) {
            const float *xr = x + (size_t)i * ncols + c0;
            float *qr = xq + (size_t)i * nc;
            for (int c = 0; c < nc; c++) {
                float q = rintf(fabsf(xr[c]) / step);
                clip += q > top;
                q = q > top ? top : q;
                qr[c] = copysignf(q * step, xr[c]);
            }
        }
        *dac_clip += clip;
        B = xq;
        ldb = nc;
    }
    gemm_(ro, nc, k, l->weff, k, B, ldb, y + c0, ncols);
    if (!l->noise) return;
    for (int i = 0; i < k; i++)
        for (int c = 0; c < nc; c++) {
            float v = B[(size_t)i * ldb + c];
            x2[(size_t)i * nc + c] = v * v;
        }
    gemm_(ro, nc, k, l->vnoise, k, x2, nc, var, nc);
    for (int j = 0; j < ro; j++) noise_add_(nc, var + (size_t)j * nc, y + (size_t)j * ncols + c0, z, nc, rng);
    if (l->vref) { /* reference-column noise is shared by the outputs of a column tile */
        gemm_(ct, nc, k, l->vref, k, x2, nc, varr, nc);
        const int wc = l->g.wcols;
        for (int cc = 0; cc < ct; cc++) {
            float *vr = varr + (size_t)cc * nc;
            xb_normal_fill(rng, nc, z);
            for (int c = 0; c < nc; c++) vr[c] = sqrtf(vr[c] > 0 ? vr[c] : 0) * z[c];
            int jend = (cc + 1) * wc < ro ? (cc + 1) * wc : ro;
            for (int j = cc * wc; j < jend; j++) {
                float *yr = y + (size_t)j * ncols + c0;
                for (int c = 0; c < nc; c++) yr[c] -= vr[c];
            }
        }
    }
}

typedef struct chunk_stats_ { int64_t adc_conv, adc_clip, dac_conv, dac_clip; } chunk_stats_;

/* tiled (ADC) path, chunk [c0, c0+nc).  cal != NULL: collect |signals| before the ADC, no output. */
static void tiled_chunk_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, int64_t c0, int nc,
                         float *buf, xb_rng *rng, chunk_stats_ *cs, cal_ *cal) {
    const xb_hw *hw = &xn->hw;
    const xb_map_geom *g = &l->g;
    const int k = l->k, ro = l->rows_out, R = g->R, S = g->slices, P = xn->planes, PN = P * nc, nN = l->nN;
    const int N = nN > ro ? nN : ro, SR = S * ro, SN = S * nN, wc = g->wcols;
    float *Xp = buf, *X2 = Xp + (size_t)R * PN, *sig = X2 + (size_t)R * PN, *sigN = sig + (size_t)SR * PN;
    float *var = sigN + (size_t)S * N * PN, *acc = var + (size_t)S * N * PN, *csum = acc + (size_t)ro * nc;
    float *z = csum + PN;
    const int diffadc = hw->adc_signal == XB_ADC_DIFFERENCE;
    const int dac = hw->dac_bits > 0, d = hw->dac_bits;
    const float top = dac ? (float)((1L << xn->in_bits) - 1) : 1.0f, dmax = dac ? (float)((1L << d) - 1) : 1.0f;
    const unsigned dmask = dac ? (1u << d) - 1 : 0;
    const float xm = (float)l->x_max;
    float omega[32];
    for (int p = 0; p < P; p++) omega[p] = dac ? (float)(ldexp(1.0, d * p) * dmax / top) : 1.0f;
    const float atop = diffadc ? (float)((1L << (hw->adc_bits - 1)) - 1) : (float)((1L << hw->adc_bits) - 1);
    const float astep = (float)(l->fs / atop), alo = diffadc ? -atop : 0.0f;
    if (!cal) memset(acc, 0, (size_t)ro * nc * sizeof(float));
    for (int r = 0; r < g->rt; r++) {
        const int i0 = r * R, m = k - i0 < R ? k - i0 : R;
        int npass = 1;
        if (hw->signed_inputs == XB_SIGNED_SPLIT)
            for (int i = 0; i < m && npass == 1; i++) {
                const float *xr = x + (size_t)(i0 + i) * ncols + c0;
                for (int c = 0; c < nc; c++) if (xr[c] < 0) { npass = 2; break; }
            }
        for (int pass = 0; pass < npass; pass++) {
            /* DAC: input planes Xp (m x P*nc), plane p in columns p*nc .. p*nc+nc-1 */
            const int split = hw->signed_inputs == XB_SIGNED_SPLIT;
            const float inv_dmax = 1.0f / dmax;
            int64_t dclip = 0;
            for (int i = 0; i < m; i++) {
                const float *xr = x + (size_t)(i0 + i) * ncols + c0;
                float *row = Xp + (size_t)i * PN;
                if (!dac) {
                    for (int c = 0; c < nc; c++) {
                        float v = xr[c] / xm;
                        row[c] = !split ? v : pass ? (v < 0 ? v : 0) * -1.0f : (v > 0 ? v : 0);
                    }
                    continue;
                }
                /* signed code (sign x magnitude) in csum as scratch, then one vector loop per plane */
                for (int c = 0; c < nc; c++) {
                    float v = xr[c] / xm;
                    float a = split ? (pass ? (v < 0 ? -v : 0) : (v > 0 ? v : 0)) : fabsf(v);
                    float q = rintf(a * top);
                    dclip += q > top;
                    q = q > top ? top : q;
                    csum[c] = (!split && v < 0) ? -q : q;
                }
                for (int p = 0; p < P; p++) {
                    float *rp = row + (size_t)p * nc;
                    const int sh = d * p;
                    for (int c = 0; c < nc; c++) {
                        float q = csum[c];
                        unsigned code = (unsigned)fabsf(q);
                        float dg = (float)((code >> sh) & dmask) * inv_dmax;
                        rp[c] = q < 0 ? -dg : dg;
                    }
                }
            }
            cs->dac_clip += dclip;
            if (dac) cs->dac_conv += (int64_t)m * nc;
            if (l->noise)
                for (int64_t i = 0; i < (int64_t)m * PN; i++) X2[i] = Xp[i] * Xp[i];
            if (!diffadc && l->ntype == NT_DIGITAL) {
                for (int c = 0; c < PN; c++) csum[c] = 0;
                for (int i = 0; i < m; i++)
                    for (int c = 0; c < PN; c++) csum[c] += Xp[(size_t)i * PN + c];
            }
            /* every slice of every output in one GEMM */
            gemm_(SR, PN, m, l->D + i0, k, Xp, PN, sig, PN);
            if (l->noise) {
                gemm_(SR, PN, m, l->VP + i0, k, X2, PN, var, PN);
                noise_add_((int64_t)SR * PN, var, sig, z, PN, rng);
            }
            if (diffadc) {
                if (l->VN) { /* shared reference-column noise: one draw per (slice, column tile, column) */
                    gemm_(SN, PN, m, l->VN + i0, k, X2, PN, var, PN);
                    for (int q = 0; q < SN; q++) {
                        float *vr = var + (size_t)q * PN;
                        xb_normal_fill(rng, PN, z);
                        for (int c = 0; c < PN; c++) vr[c] = sqrtf(vr[c] > 0 ? vr[c] : 0) * z[c];
                        int t = q / nN, cc = q % nN, jend = (cc + 1) * wc < ro ? (cc + 1) * wc : ro;
                        for (int j = cc * wc; j < jend; j++) {
                            float *sr = sig + ((size_t)t * ro + j) * PN;
                            for (int c = 0; c < PN; c++) sr[c] -= vr[c];
                        }
                    }
                }
                if (cal) { cal_add_(cal, sig, (int64_t)SR * PN); continue; }
                cs->adc_conv += (int64_t)SR * PN;
                cs->adc_clip += quant_((int64_t)SR * PN, sig, astep, alo, atop);
            } else {
                if (nN) {
                    gemm_(SN, PN, m, l->Nm + i0, k, Xp, PN, sigN, PN);
                    if (l->noise) {
                        gemm_(SN, PN, m, l->VN + i0, k, X2, PN, var, PN);
                        noise_add_((int64_t)SN * PN, var, sigN, z, PN, rng);
                    }
                }
                if (cal) {
                    cal_add_(cal, sig, (int64_t)SR * PN);
                    if (nN) cal_add_(cal, sigN, (int64_t)SN * PN);
                    continue;
                }
                cs->adc_conv += (int64_t)(SR + SN) * PN;
                cs->adc_clip += quant_((int64_t)SR * PN, sig, astep, alo, atop);
                if (nN) cs->adc_clip += quant_((int64_t)SN * PN, sigN, astep, alo, atop);
                /* digital subtraction of the N side: per output, per column tile, or the digital reference */
                for (int t = 0; t < S; t++)
                    for (int j = 0; j < ro; j++) {
                        float *sr = sig + ((size_t)t * ro + j) * PN;
                        if (l->ntype == NT_DIGITAL) {
                            const float nc_ = (float)l->ncode[t];
                            for (int c = 0; c < PN; c++) sr[c] -= nc_ * csum[c];
                        } else {
                            const float *nr = sigN + ((size_t)t * nN + (l->ntype == NT_PAIR ? j : j / wc)) * PN;
                            for (int c = 0; c < PN; c++) sr[c] -= nr[c];
                        }
                    }
            }
            /* shift-add over slices and planes, accumulation over row tiles and passes */
            const float ps = pass ? -1.0f : 1.0f;
            for (int t = 0; t < S; t++)
                for (int j = 0; j < ro; j++) {
                    float *ar = acc + (size_t)j * nc;
                    const float *sr = sig + ((size_t)t * ro + j) * PN;
                    for (int p = 0; p < P; p++) {
                        const float f = ps * (float)l->coef[t] * omega[p];
                        const float *sp = sr + (size_t)p * nc;
                        for (int c = 0; c < nc; c++) ar[c] += f * sp[c];
                    }
                }
        }
    }
    if (cal) return;
    for (int j = 0; j < ro; j++) {
        float *yr = y + (size_t)j * ncols + c0;
        const float *ar = acc + (size_t)j * nc;
        for (int c = 0; c < nc; c++) yr[c] = xm * ar[c];
    }
}

/* Runs the chunks of one call in parallel; cal != NULL collects calibration samples instead. */
static void run_chunks_(xb_xnet *xn, xlayer *l, int ncols, const float *x, float *y, const xb_rng *rcall,
                        int calib, chunk_stats_ *tot) {
    const int64_t nch = (ncols + l->ch - 1) / l->ch;
    int64_t adc_conv = 0, adc_clip = 0, dac_conv = 0, dac_clip = 0;
    int64_t slot = XL_CAL_SAMPLES / nch, *cn = NULL;
    float *cm = NULL;
    if (calib) {
        XB_ASSERT(slot >= 1);
        cn = xb_calloc((size_t)nch * sizeof(int64_t));
        cm = xb_calloc((size_t)nch * sizeof(float));
    }
    /* values one chunk produces before its ADCs, for the sampling stride */
    const int64_t per_chunk = (int64_t)l->g.rt * 2 * l->g.slices * (l->rows_out + l->nN) * xn->planes * l->ch;
#pragma omp parallel for schedule(dynamic, 1) num_threads(xn->nthreads) reduction(+ : adc_conv, adc_clip, dac_conv, dac_clip)
    for (int64_t ci = 0; ci < nch; ci++) {
        int64_t c0 = ci * l->ch;
        int nc = (int)(ncols - c0 < l->ch ? ncols - c0 : l->ch);
        float *buf = xn->tbuf + (size_t)thread_id_() * xn->tbuf_floats;
        xb_rng rc;
        xb_rng_fork(rcall, (uint64_t)ci, &rc);
        chunk_stats_ cs = {0};
        if (l->tiled) {
            cal_ c = {calib ? xn->cal + ci * slot : NULL, 0, slot, per_chunk / slot + 1, 0, 0};
            tiled_chunk_(xn, l, ncols, x, y, c0, nc, buf, &rc, &cs, calib ? &c : NULL);
            if (calib) { cn[ci] = c.n; cm[ci] = c.maxabs; }
        } else {
            fast_chunk_(xn, l, ncols, x, y, c0, nc, buf, &rc, &cs.dac_clip);
            if (xn->hw.dac_bits > 0) cs.dac_conv = (int64_t)l->k * nc;
        }
        adc_conv += cs.adc_conv; adc_clip += cs.adc_clip; dac_conv += cs.dac_conv; dac_clip += cs.dac_clip;
    }
    if (calib) {
        double v = cal_merge_(xn->cal, slot, nch, cn, cm, xn->hw.adc_percentile);
        l->fs = v > 0 ? v : 1.0;
        l->fs_set = 1;
        l->st.adc_full_scale_a = l->fs * xn->hw.v_read_v * l->g.g_unit_s;
        xb_free(cn);
        xb_free(cm);
    }
    tot->adc_conv = adc_conv; tot->adc_clip = adc_clip; tot->dac_conv = dac_conv; tot->dac_clip = dac_clip;
}

/* Digital gain of a layer (calibration): g = <Y_float, Y_hw> / <Y_hw, Y_hw> over the calibration call,
 * the least-squares scalar that maps the hardware output onto the float product; applied to y now (so
 * later layers calibrate on corrected outputs) and to every later product through coef / W_eff. */
static void calibrate_gain_(xb_xnet *xn, xlayer *l, int ncols, const float *w, const float *x, float *y) {
    const int ro = l->rows_out, k = l->k;
    double ry = 0, yy = 0;
    for (int c0 = 0; c0 < ncols; c0 += XL_STATS_COLS) {
        int nc = ncols - c0 < XL_STATS_COLS ? ncols - c0 : XL_STATS_COLS;
        gemm_(ro, nc, k, w, k, x + c0, ncols, xn->refbuf, nc);
        for (int j = 0; j < ro; j++)
            for (int c = 0; c < nc; c++) {
                double rf = xn->refbuf[(size_t)j * nc + c], hv = y[(size_t)j * ncols + c0 + c];
                ry += rf * hv;
                yy += hv * hv;
            }
    }
    double g = yy > 0 ? ry / yy : 1.0;
    if (!(g > 0 && isfinite(g))) g = 1.0; /* a hardware output uncorrelated with the float one: leave it */
    l->gain *= g;
    l->st.gain = l->gain;
    for (int64_t i = 0; i < (int64_t)ro * ncols; i++) y[i] = (float)(g * y[i]);
    if (!l->tiled) {
        for (int64_t i = 0; i < (int64_t)ro * k; i++) l->weff[i] = (float)(g * l->weff[i]);
        if (l->vnoise)
            for (int64_t i = 0; i < (int64_t)ro * k; i++) l->vnoise[i] = (float)(g * g * l->vnoise[i]);
        if (l->vref)
            for (int64_t i = 0; i < (int64_t)l->g.ct * k; i++) l->vref[i] = (float)(g * g * l->vref[i]);
    } else {
        for (int t = 0; t < l->g.slices; t++) l->coef[t] *= g;
    }
}

static void layer_forward_(xb_xnet *xn, xlayer *l, int ncols, const float *w, const float *x, float *y) {
    const xb_hw *hw = &xn->hw;
    const int ro = l->rows_out, k = l->k;
    const double t0 = xb_time_s();
    const int needs_x = hw->dac_bits > 0 || hw->adc_bits > 0;
    if (xn->calibrating && needs_x && hw->input_range == XB_RANGE_CALIBRATED)
        calibrate_input_(xn, l, (int64_t)k * ncols, x);
    XB_ASSERT((!needs_x || l->x_set) && "calibrated input range: call xb_xnet_calibrate after programming");
    xb_rng rbase, rlayer, rcall;
    xb_rng_seed(&rbase, xn->seed, "read");
    xb_rng_fork(&rbase, (uint64_t)l->li * 65536u + (uint64_t)l->group, &rlayer);
    xb_rng_fork(&rlayer, l->calls++, &rcall);
    chunk_stats_ cs = {0};
    if (l->tiled && xn->calibrating && hw->adc_range == XB_RANGE_CALIBRATED)
        run_chunks_(xn, l, ncols, x, y, &rcall, 1, &cs); /* sets the ADC full scale */
    XB_ASSERT(l->fs_set && "calibrated ADC range: call xb_xnet_calibrate after programming");
    if (!l->tiled && hw->dac_bits == 0 && !l->noise) {
        gemm_(ro, ncols, k, l->weff, k, x, ncols, y, ncols);
    } else {
        run_chunks_(xn, l, ncols, x, y, &rcall, 0, &cs);
        l->st.adc_conversions += cs.adc_conv; l->st.adc_clipped += cs.adc_clip;
        l->st.dac_conversions += cs.dac_conv; l->st.dac_clipped += cs.dac_clip;
    }
    if (xn->calibrating && xn->need_gain) calibrate_gain_(xn, l, ncols, w, x, y);
    if (!xn->calibrating) {
        /* relative error against the float product on the first columns */
        int ns = ncols < XL_STATS_COLS ? ncols : XL_STATS_COLS;
        gemm_(ro, ns, k, w, k, x, ncols, xn->refbuf, ns);
        double e2 = 0, r2 = 0;
        for (int j = 0; j < ro; j++)
            for (int c = 0; c < ns; c++) {
                double rf = xn->refbuf[(size_t)j * ns + c], dd = (double)y[(size_t)j * ncols + c] - rf;
                e2 += dd * dd;
                r2 += rf * rf;
            }
        l->st.err_sq += e2;
        l->st.ref_sq += r2;
    }
    l->st.forward_s += xb_time_s() - t0;
}


void xb_xnet_matmul(void *ctx, int layer, int group, int rows_out, int k, int ncols, const float *w,
                    const float *x, float *y) {
    xb_xnet *xn = ctx;
    XB_ASSERT(layer >= 0 && layer < xn->n_mapped);
    xlayer *l = &xn->xl[xn->first_xl[layer] + group];
    XB_ASSERT(l->rows_out == rows_out && l->k == k);
    if (l->digital) {
        gemm_(rows_out, ncols, k, w, k, x, ncols, y, ncols);
        return;
    }
    XB_ASSERT(xn->programmed && "xb_xnet_program before the forward");
    layer_forward_(xn, l, ncols, w, x, y);
}

void xb_xnet_attach(xb_xnet *xn) {
    if (xn->folded) xb_xnet_fold(xn, 0);
    xb_model_set_matmul(xn->m, xb_xnet_matmul, xn);
    xn->attached = 1;
}
void xb_xnet_detach(xb_xnet *xn) { xb_model_set_matmul(xn->m, NULL, NULL); xn->attached = 0; }
int xb_xnet_needs_calibration(const xb_xnet *xn) { return xn->need_x || xn->need_fs || xn->need_gain; }
int xb_xnet_foldable(const xb_xnet *xn) { return xn->foldable; }

xb_status xb_xnet_fold(xb_xnet *xn, int on) {
    if (!on) {
        if (!xn->folded) return XB_OK;
        int64_t u = 0;
        for (int i = 0; i < xn->n_xl; i++) {
            const xlayer *l = &xn->xl[i];
            if (l->digital) continue;
            size_t wk = (size_t)l->rows_out * l->k;
            float *w = xb_model_params(xn->m) + xb_model_param(xn->m, l->param)->offset + (size_t)l->group * wk;
            memcpy(w, xn->wsave + u, wk * sizeof(float));
            u += (int64_t)wk;
        }
        xn->folded = 0;
        return XB_OK;
    }
    if (!xn->foldable)
        return xb_errorf(XB_ERR_UNSUPPORTED, "crossbar network: cannot fold into the model's weights, the config has "
                         "a DAC, an ADC or read noise (per-MVM stages). HINT: run it through the hook (xb_xnet_attach)");
    XB_ASSERT(xn->programmed && "xb_xnet_program before folding");
    if (xn->folded) return XB_OK;
    int64_t total = 0;
    for (int i = 0; i < xn->n_xl; i++)
        if (!xn->xl[i].digital) total += (int64_t)xn->xl[i].rows_out * xn->xl[i].k;
    if (!xn->wsave) xn->wsave = xb_malloc((size_t)(total + 1) * sizeof(float));
    if (xn->attached) xb_xnet_detach(xn);
    int64_t u = 0;
    for (int i = 0; i < xn->n_xl; i++) {
        const xlayer *l = &xn->xl[i];
        if (l->digital) continue;
        size_t wk = (size_t)l->rows_out * l->k;
        float *w = xb_model_params(xn->m) + xb_model_param(xn->m, l->param)->offset + (size_t)l->group * wk;
        memcpy(xn->wsave + u, w, wk * sizeof(float));
        memcpy(w, l->weff, wk * sizeof(float));
        u += (int64_t)wk;
    }
    xn->folded = 1;
    return XB_OK;
}

void xb_xnet_reset_stats(xb_xnet *xn) {
    for (int i = 0; i < xn->n_xl; i++) {
        xb_xlayer_stats *s = &xn->xl[i].st;
        s->adc_conversions = s->adc_clipped = s->dac_conversions = s->dac_clipped = 0;
        s->err_sq = s->ref_sq = 0;
        s->forward_s = 0;
    }
}

xb_status xb_xnet_calibrate(xb_xnet *xn, int n, const float *x) {
    XB_ASSERT(xn->programmed && "xb_xnet_program before xb_xnet_calibrate");
    if (n < 1) return xb_errorf(XB_ERR_ARG, "calibration needs at least one image");
    xb_status st = xb_model_set_batch(xn->m, n);
    if (st) return st;
    int was = xn->attached;
    xb_xnet_attach(xn);
    xb_model_train_mode(xn->m, 0);
    xn->calibrating = 1;
    st = xb_model_forward(xn->m, n, x, NULL, NULL);
    xn->calibrating = 0;
    if (!was) xb_xnet_detach(xn);
    xb_xnet_reset_stats(xn);
    return st;
}

int xb_xnet_n_layers(const xb_xnet *xn) { return xn->n_mapped; }

void xb_xnet_layer_stats(const xb_xnet *xn, int i, xb_xlayer_stats *out) {
    XB_ASSERT(i >= 0 && i < xn->n_mapped);
    *out = xn->xl[xn->first_xl[i]].st;
    for (int q = xn->first_xl[i] + 1; q < xn->first_xl[i + 1]; q++) {
        const xb_xlayer_stats *s = &xn->xl[q].st;
        out->tiles += s->tiles; out->arrays += s->arrays; out->cells_used += s->cells_used;
        out->cells_alloc += s->cells_alloc; out->stuck_gmin += s->stuck_gmin; out->stuck_gmax += s->stuck_gmax;
        out->g_clipped += s->g_clipped; out->adc_conversions += s->adc_conversions;
        out->adc_clipped += s->adc_clipped; out->dac_conversions += s->dac_conversions;
        out->dac_clipped += s->dac_clipped; out->err_sq += s->err_sq; out->ref_sq += s->ref_sq;
        out->program_s += s->program_s; out->forward_s += s->forward_s;
        if (s->w_scale > out->w_scale) out->w_scale = s->w_scale;
        if (s->input_full_scale > out->input_full_scale) out->input_full_scale = s->input_full_scale;
        if (s->adc_full_scale_a > out->adc_full_scale_a) out->adc_full_scale_a = s->adc_full_scale_a;
    }
}

const float *xb_xnet_effective_weights(const xb_xnet *xn, int i, int g) {
    XB_ASSERT(i >= 0 && i < xn->n_mapped && g >= 0 && xn->first_xl[i] + g < xn->first_xl[i + 1]);
    const xlayer *l = &xn->xl[xn->first_xl[i] + g];
    return l->digital ? NULL : l->weff;
}
