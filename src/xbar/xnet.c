/* xnet.c -- the crossbar network: tiles and geometry of every mapped layer, programming them (OpenMP
 * over tiles and seeds).  Settings, folding and statistics are in xnet_access.c; the products through the
 * tiles in xforward.c, the mapped-matmul operator in xop.c.
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
#include "xnet_internal.h"

/* ------------------------------------------------------------------------------------------------ */
/* Construction                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

static int pow2_floor_(int64_t v) {
    int p = 1;
    while ((int64_t)p * 2 <= v) p *= 2;
    return p;
}

xb_status xb_xnet_init(const xb_hw *hw, xb_model *m, xb_xnet **out) { return xb_xnet_init_ex(hw, m, NULL, out); }

/* the config of a layer with its precision: weight bits (slices: bits_per_cell, or the largest divisor of
 * the weight bits below it) and input bits */
static xb_status layer_hw_(const xb_hw *hw, const xb_layer_precision *p, const char *name, xb_hw *out) {
    *out = *hw;
    if (p->weight_bits < 0 || p->weight_bits > 16 || p->input_bits < 0 || p->input_bits > 16)
        return xb_errorf(XB_ERR_ARG, "crossbar layer %s: precision %d weight bits, %d input bits. HINT: 0..16 each (0: "
                         "the config's)", name, p->weight_bits, p->input_bits);
    if (p->weight_bits && hw->weight_bits) {
        int b = hw->bits_per_cell < p->weight_bits ? hw->bits_per_cell : p->weight_bits;
        while (p->weight_bits % b) b--;
        out->weight_bits = p->weight_bits;
        out->bits_per_cell = b;
        if (hw->scheme == XB_SCHEME_OFFSET && p->weight_bits < 2)
            return xb_errorf(XB_ERR_ARG, "crossbar layer %s: 1 weight bit cannot hold a sign in the offset scheme. HINT: "
                             "2 bits or more (a b-bit signed weight needs b offset bits)", name);
    }
    if (p->input_bits && hw->dac_bits > 0) {
        if (hw->bit_serial) out->input_bits = p->input_bits;
        else out->dac_bits = p->input_bits < hw->dac_bits ? p->input_bits : hw->dac_bits;
    }
    return XB_OK;
}

xb_status xb_xnet_init_ex(const xb_hw *hw, xb_model *m, const xb_layer_precision *prec, xb_xnet **out) {
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
    xn->stats_on = 1;
    xn->first_xl = xb_calloc((size_t)(nm + 1) * sizeof(int));
    xn->planes = hw->bit_serial ? (hw->input_bits + hw->dac_bits - 1) / hw->dac_bits : 1;
    xn->in_bits = hw->bit_serial ? hw->input_bits : hw->dac_bits;
    if (prec) {
        xn->lhw = xb_calloc((size_t)(nm + 1) * sizeof *xn->lhw);
        for (int i = 0; i < nm; i++) {
            const char *name;
            xb_model_mapped_info(m, i, &name, NULL, NULL, NULL);
            if ((st = layer_hw_(hw, &prec[i], name, &xn->lhw[i]))) {
                xb_free(xn->lhw);
                xb_free(xn->first_xl);
                xb_free(xn);
                return st;
            }
        }
    }
    if (hw->cell.type != XB_CELL_RESISTOR && hw->cell_compensate) {
        /* 1T-1R cells programmed through the transistor: each layer's weights map onto the range of small-signal
         * conductances its cells reach at its gate voltage (the memristor range in series with beta (v_g - v_t)) */
        if (!xn->lhw) {
            xn->lhw = xb_calloc((size_t)(nm + 1) * sizeof *xn->lhw);
            for (int i = 0; i < nm; i++) xn->lhw[i] = *hw;
        }
        for (int i = 0; i < nm; i++) {
            const char *name;
            xb_model_mapped_info(m, i, &name, NULL, NULL, NULL);
            const xb_cell cell = xb_hw_layer_cell(hw, name);
            xn->lhw[i].g_min_s = xb_cell_small_signal(&cell, hw->g_min_s);
            xn->lhw[i].g_max_s = xb_cell_small_signal(&cell, hw->g_max_s);
        }
    }
    xn->vec = hw->input_scaling == XB_INSCALE_VECTOR;
    xn->bm = hw->bound_management == XB_BM_ITERATIVE && hw->adc_bits > 0;
    int quant_in = hw->dac_bits > 0, adc = hw->adc_bits > 0;
    xn->need_x = (quant_in || adc) && hw->input_range == XB_RANGE_CALIBRATED && !xn->vec;
    xn->need_fs = adc && hw->adc_range == XB_RANGE_CALIBRATED;
    xn->need_gain = hw->gain_calibration;
    xn->parasitic = hw->solver != XB_SOLVER_NONE &&
                    (hw->circuit.r_wire_ohm > 0 || hw->circuit.r_driver_ohm > 0 || hw->circuit.r_sense_ohm > 0);
    /* count xlayers: one per mapped layer and convolution group, or a packed layer's blocks */
    int total = 0;
    blk_ **blks = xb_calloc((size_t)(nm + 1) * sizeof *blks);
    int *nblk = xb_calloc((size_t)(nm + 1) * sizeof(int));
    for (int i = 0; i < nm; i++) {
        const char *name;
        int p, ro, k;
        xb_model_mapped_info(m, i, &name, &p, &ro, &k);
        xn->first_xl[i] = total;
        const int groups = (int)(xb_model_param(m, p)->shape[0] / ro);
        int digital = xb_hw_layer_digital(hw, name, i, nm);
        if (hw->pack && groups == 1 && !digital) {
            xb_map_geom g0;
            if ((st = xb_map_geom_init(xn->lhw ? &xn->lhw[i] : hw, ro, k, &g0))) goto fail_count;
            blks[i] = xb_calloc(sizeof(blk_) * (size_t)(g0.rt + g0.ct + 1));
            nblk[i] = xl_pack_blocks(xb_model_params(m) + xb_model_param(m, p)->offset, ro, k, g0.R, g0.wcols, hw->pack,
                                   blks[i]);
            if (!nblk[i]) {
                st = xb_errorf(XB_ERR_ARG, "crossbar layer %s: every weight is zero, so [mapping] pack leaves it no "
                               "tile. HINT: load the trained weights before mapping", name);
                goto fail_count;
            }
            total += nblk[i];
        } else {
            total += groups;
        }
    }
    xn->first_xl[nm] = total;
    xn->n_xl = total;
    xn->xl = xb_calloc((size_t)total * sizeof(xlayer));
    size_t tb = 0, arr = 0;
    int ro_max = 1;
    for (int i = 0; i < nm; i++) {
        const char *name;
        int p, fro, fk;
        xb_model_mapped_info(m, i, &name, &p, &fro, &fk);
        int groups = (int)(xb_model_param(m, p)->shape[0] / fro);
        int digital = xb_hw_layer_digital(hw, name, i, nm);
        const int nx = nblk[i] ? nblk[i] : groups;
        for (int gi = 0; gi < nx; gi++) {
            xlayer *l = &xn->xl[xn->first_xl[i] + gi];
            l->li = i;
            const xb_hw *lh = xn->lhw ? &xn->lhw[i] : hw;
            l->planes = lh->bit_serial ? (lh->input_bits + lh->dac_bits - 1) / lh->dac_bits : 1;
            l->in_bits = lh->bit_serial ? lh->input_bits : lh->dac_bits;
            l->group = nblk[i] ? 0 : gi;
            l->sid = gi;
            l->block = nblk[i] ? gi : 0;
            l->nblocks = nblk[i] ? nblk[i] : 1;
            l->groups = groups;
            l->param = p;
            l->digital = digital;
            l->full_ro = fro;
            l->full_k = fk;
            int ro = fro, k = fk;
            if (nblk[i]) { /* a packed block: its outputs and inputs, its weights gathered at programming */
                blk_ *b = &blks[i][gi];
                ro = b->no;
                k = b->ni;
                l->base_out = b->out;
                l->in_idx = b->in;
                b->out = b->in = NULL;
                l->out_idx = xb_malloc(sizeof(int) * (size_t)ro);
                l->wsrc = xb_calloc((size_t)ro * k * sizeof(float));
                if (gi == 0) l->wout = xb_calloc((size_t)fro * fk * sizeof(float));
            } else if (hw->rearrange && !digital) {
                l->out_idx = xb_malloc(sizeof(int) * (size_t)ro);
                l->wsrc = xb_calloc((size_t)ro * k * sizeof(float));
                l->wout = xb_calloc((size_t)ro * k * sizeof(float));
            }
            l->rows_out = ro;
            l->k = k;
            snprintf(l->st.name, sizeof l->st.name, "%s", name);
            l->st.rows_out = fro;
            l->st.k = fk;
            l->st.groups = groups;
            l->st.mapped = !digital;
            if (ro > ro_max) ro_max = ro;
            if (digital) continue;
            if ((st = xb_map_geom_init(xl_hw_(xn, l), ro, k, &l->g))) goto fail;
            const xb_map_geom *g = &l->g;
            l->ntype = hw->scheme == XB_SCHEME_DIFFERENTIAL ? NT_PAIR
                     : hw->reference == XB_REF_COLUMN ? NT_REFCOL : NT_DIGITAL;
            l->tiled = adc;
            l->noise = hw->read_noise_sigma > 0;
            l->nN = l->ntype == NT_PAIR ? ro : l->ntype == NT_REFCOL ? g->ct : 0;
            size_t wk = (size_t)ro * k;
            l->weff = xb_calloc(wk * sizeof(float)); /* the backward reads it on every path */
            if (hw->drift_compensation == XB_DRIFTCOMP_COLUMN) {
                l->dref0 = xb_calloc((size_t)g->rt * ro * sizeof(double));
                l->dref1 = xb_calloc((size_t)g->rt * ro * sizeof(double));
            }
            if (hw->column_scale) {
                l->srow = xb_calloc((size_t)ro * sizeof(float));
                l->rowf = xb_calloc((size_t)ro * sizeof(float));
            }
            if (hw->drift_compensation == XB_DRIFTCOMP_COLUMN || hw->column_scale)
                l->dcomp = xb_calloc((size_t)ro * sizeof(float));
            if (!l->tiled) {
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
            int64_t ch = pow2_floor_(XL_CHUNK_FLOATS / (widest * (l->tiled ? l->planes : 1)));
            l->ch = (int)(ch < 16 ? 16 : ch > 4096 ? 4096 : ch);
            size_t need = xl_tbuf_(xn, l);
            if (need > tb) tb = need;
            size_t a = (size_t)g->arrays * g->R * g->C;
            if (a > arr) arr = a;
            l->st.weight_bits = xl_hw_(xn, l)->weight_bits;
            l->st.slices = g->slices;
            l->st.input_bits = hw->dac_bits > 0 ? l->in_bits : 0;
            l->st.planes = l->planes;
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
        /* parasitic: the solver is not none, so the kind is the solve method itself */
        if ((st = xb_solve_plan_init(hw->rows, hw->cols, (xb_solve_method)hw->solver, &xn->plan))) goto fail;
        xn->ws_bytes = xb_solve_plan_workspace(xn->plan);
        /* The backward read (columns driven through r_driver, rows sensed through r_sense) is the forward
         * one transposed when r_driver == r_sense, by reciprocity, for the exact solvers; else solve it. */
        xn->bwd_read = hw->circuit.r_driver_ohm != hw->circuit.r_sense_ohm || hw->solver == XB_SOLVER_DECOUPLED;
        if (xn->bwd_read) {
            if (hw->rows == hw->cols) xn->plan_bwd = xn->plan;
            else if ((st = xb_solve_plan_init(hw->cols, hw->rows, (xb_solve_method)hw->solver, &xn->plan_bwd))) goto fail;
            size_t wb = xb_solve_plan_workspace_dir(xn->plan_bwd, XB_READ_BACKWARD);
            if (wb > xn->ws_bytes) xn->ws_bytes = wb;
            for (int i = 0; i < xn->n_xl; i++)
                if (!xn->xl[i].digital)
                    xn->xl[i].weff_bwd = xb_calloc((size_t)xn->xl[i].rows_out * xn->xl[i].k * sizeof(float));
        }
    }
    for (int i = 0; i < nm; i++) xb_free(blks[i]); /* their index lists now belong to the blocks */
    xb_free(blks);
    xb_free(nblk);
    *out = xn;
    return XB_OK;
fail:
    for (int i = 0; i < nm; i++)
        for (int b = 0; b < nblk[i]; b++) { xb_free(blks[i][b].out); xb_free(blks[i][b].in); }
    for (int i = 0; i < nm; i++) xb_free(blks[i]);
    xb_free(blks);
    xb_free(nblk);
    xb_xnet_free(xn);
    return st;
fail_count: /* before the xlayers exist */
    for (int i = 0; i < nm; i++)
        for (int b = 0; b < nblk[i]; b++) { xb_free(blks[i][b].out); xb_free(blks[i][b].in); }
    for (int i = 0; i < nm; i++) xb_free(blks[i]);
    xb_free(blks);
    xb_free(nblk);
    xb_free(xn->lhw);
    xb_free(xn->first_xl);
    xb_free(xn);
    return st;
}

void xb_xnet_free(xb_xnet *xn) {
    if (!xn) return;
    xb_free(xn->wscale);
    if (xn->folded) xb_xnet_fold(xn, 0);
    if (xn->attached) xb_xnet_detach(xn);
    for (int i = 0; i < xn->n_xl; i++) {
        xlayer *l = &xn->xl[i];
        xb_free(l->weff); xb_free(l->vnoise); xb_free(l->vref); xb_free(l->weff_bwd); xb_free(l->smask); xb_free(l->gstate); xb_free(l->dist); xb_free(l->gref);
        xb_free(l->D); xb_free(l->Nm); xb_free(l->VP); xb_free(l->VN);
        xb_free(l->dcomp); xb_free(l->dref0); xb_free(l->dref1); xb_free(l->srow); xb_free(l->rowf);
        xb_free(l->out_idx); xb_free(l->in_idx); xb_free(l->base_out); xb_free(l->wsrc); xb_free(l->wout);
        xl_energy_free(l);
    }
    xb_free(xn->lhw);
    if (xn->plan_bwd && xn->plan_bwd != xn->plan) xb_solve_plan_free(xn->plan_bwd);
    if (xn->plan_dec_bwd && xn->plan_dec_bwd != xn->plan_dec) xb_solve_plan_free(xn->plan_dec_bwd);
    if (xn->plan_dec) xb_solve_plan_free(xn->plan_dec);
    if (xn->plan_pow) xb_solve_plan_free(xn->plan_pow);
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
    l->st.weight_bits = keep.weight_bits; l->st.slices = keep.slices;
    l->st.input_bits = keep.input_bits; l->st.planes = keep.planes;
    l->st.cells_alloc = keep.cells_alloc;
    l->calls = 0;
    if (l->digital) return;
    const float *wf = xb_xnet_wptr_(xn, l); /* the layer's (its group's) whole matrix */
    if (l->wsrc) { /* a block, or a rearranged layer: its outputs as built, its weights gathered */
        for (int p = 0; p < l->rows_out; p++) {
            const int j = l->base_out ? l->base_out[p] : p;
            l->out_idx[p] = j;
            for (int q = 0; q < l->k; q++)
                l->wsrc[(size_t)p * l->k + q] = wf[(size_t)j * l->full_k + (l->in_idx ? l->in_idx[q] : q)];
        }
    }
    /* calibrated ranges and gains kept across programming (xb_xnet_keep_ranges) */
    const int keep_x = xn->keep_ranges && l->x_set, keep_fs = xn->keep_ranges && l->fs_set;
    const double kx = l->x_max, kfs = l->fs, kg = xn->keep_ranges ? l->gain : 1;
    const int64_t kfx = keep.fallback_input, kffs = keep.fallback_adc, kfg = keep.fallback_gain;
    l->s = xb_map_scale(hw, (int64_t)l->full_ro * l->full_k, wf); /* the layer's, for each of its blocks */
    if (xn->wscale && xn->wscale[l->li] > 0) l->s = xn->wscale[l->li]; /* fixed (xb_xnet_set_weight_scales) */
    if (l->srow) { /* scale = column: each output its own clip scale (of its whole row), the layer's s their largest */
        double smax = 0;
        for (int j = 0; j < l->full_ro; j++) {
            const double sj = xb_map_scale(hw, l->full_k, wf + (size_t)j * l->full_k);
            smax = sj > smax ? sj : smax;
        }
        for (int p = 0; p < l->rows_out; p++)
            l->srow[p] = (float)xb_map_scale(hw, l->full_k, wf + (size_t)(l->out_idx ? l->out_idx[p] : p) * l->full_k);
        l->s = smax;
        for (int p = 0; p < l->rows_out; p++) l->rowf[p] = (float)(l->srow[p] / smax);
    }
    if (hw->rearrange && l->out_idx) xl_rearrange(hw, l); /* the outputs' order over the tiles */
    { /* the weights' cells below mid-conductance (methods.md 5A: the share the mitigations raise) */
        double code[2 * XB_MAX_SLICES];
        int64_t low = 0;
        for (int j = 0; j < l->rows_out; j++) {
            const double sj = l->srow ? l->srow[j] : l->s;
            const float *wr = xl_wsrc_(xn, l) + (size_t)j * l->k;
            for (int i = 0; i < l->k; i++) {
                xb_map_codes(hw, &l->g, wr[i], sj, code);
                for (int q = 0; q < l->g.cells_per_weight; q++) low += code[q] < 0.5 * l->g.kmax;
            }
        }
        l->st.cells_low = low;
    }
    l->comp = hw->drift_compensation == XB_DRIFTCOMP_GLOBAL
                  ? 1.0 / xb_drift_factor(hw->drift_nu, hw->drift_t_s, hw->drift_t0_s) : 1.0;
    l->gain = kg > 0 ? kg : 1;
    l->st.gain = l->gain;
    for (int t = 0; t < l->g.slices; t++) {
        l->coef[t] = l->s / l->g.qmax * l->comp * ldexp(1.0, l->g.slice_bits * t) * l->gain;
        l->ncode[t] = hw->g_min_s / l->g.g_unit_s + l->g.ref_code[t];
    }
    l->st.w_scale = l->s;
    /* ranges: fixed and worst-case now, calibrated ones by xb_xnet_calibrate */
    l->x_set = hw->input_range == XB_RANGE_FIXED || xn->vec; /* vector: set per call from the inputs */
    l->x_max = hw->input_range == XB_RANGE_FIXED ? hw->input_full_scale : 0;
    l->fs_set = 1;
    l->fs = 0;
    if (hw->adc_bits > 0) {
        const double gu = l->g.g_unit_s;
        if (hw->adc_range == XB_RANGE_FIXED) l->fs = hw->adc_full_scale_a / (hw->v_read_v * gu);
        else if (hw->adc_range == XB_RANGE_WORST_CASE)
            l->fs = hw->adc_signal == XB_ADC_DIFFERENCE ? l->g.R * l->g.kmax : l->g.R * hw->g_max_s / gu;
        else l->fs_set = 0;
    }
    if (keep_x) { l->x_set = 1; l->x_max = kx; l->st.fallback_input = kfx; }
    if (keep_fs && hw->adc_bits > 0 && hw->adc_range == XB_RANGE_CALIBRATED) {
        l->fs_set = 1; l->fs = kfs; l->st.fallback_adc = kffs;
    }
    if (xn->keep_ranges) l->st.fallback_gain = kfg;
    l->st.input_full_scale = l->x_max;
    l->st.adc_full_scale_a = l->fs * hw->v_read_v * l->g.g_unit_s;
}

/* 1T-1R cells: the conductances g of n cells as the arrays read them with 1-bit input planes, their secant
 * conductances at v_read (out may be g).  With [cell] compensate, g is the cell's small-signal conductance the
 * mapping aimed at, and the memristor behind it is xb_cell_memristor_for(g) (a sample that variation pushed to or
 * beyond the transistor's own on-conductance is held just below it). */
void xl_cell_read(const xb_xnet *xn, const xlayer *l, int64_t n, const double *g, double *out) {
    const xb_cell cell = xb_hw_layer_cell(&xn->hw, l->st.name);
    if (xn->hw.cell_compensate) {
        const double g0 = xb_cell_g0(&cell), top = 0.999 * g0;
        for (int64_t k = 0; k < n; k++) out[k] = xb_cell_memristor_for(&cell, g[k] < top ? g[k] : top);
        g = out;
    }
    xb_cell_secant(&cell, xn->hw.v_read_v, n, g, out);
}

/* One logical tile: targets -> devices -> effective matrices -> the layer's matrices. */
static xb_status tile_reads_(xb_xnet *xn, xlayer *l, int r, int c, const double *gt, double *e, void *ws, int solve,
                             const xb_solve_plan *plan, const xb_solve_plan *plan_bwd, const double *e0);
static xb_status assemble_tile_(xb_xnet *xn, xlayer *l, int r, int c, const double *gt, const double *e,
                                const double *e0);

/* The weights (weight units) tile (r, c) of layer l contributes, combined from per-cell values src
 * (per array: src[i * C + col] when !transposed, src[col * R + i] when transposed -- the backward read's
 * layout) as the forward's W_eff is: pair difference, reference column or digital reference, slices
 * with their coefficients times `scale`.  Into out (rows_out x k, the layer's layout). */
void xl_assemble_w(const xlayer *l, int r, int c, const double *src, int transposed, double scale, float *out) {
    const xb_map_geom *g = &l->g;
    const int R = g->R, C = g->C, S = g->slices, k = l->k;
    const int64_t RC = (int64_t)R * C, si = transposed ? 1 : C, sc = transposed ? R : 1;
    const double gu = g->g_unit_s;
    const int i0 = r * R, m = k - i0 < R ? k - i0 : R;
    const int j0 = c * g->wcols, nj = l->rows_out - j0 < g->wcols ? l->rows_out - j0 : g->wcols;
    int ra[XB_MAX_SLICES], rp[XB_MAX_SLICES], pa[XB_MAX_SLICES], pc[XB_MAX_SLICES], na[XB_MAX_SLICES],
        nc[XB_MAX_SLICES];
    if (l->ntype == NT_REFCOL)
        for (int t = 0; t < S; t++) xb_map_ref(g, t, &ra[t], &rp[t]);
    for (int jj = 0; jj < nj; jj++) {
        for (int t = 0; t < S; t++) {
            xb_map_cell(g, 0, t, jj, &pa[t], &pc[t]);
            if (l->ntype == NT_PAIR) xb_map_cell(g, 1, t, jj, &na[t], &nc[t]);
        }
        for (int i = 0; i < m; i++) {
            double wsum = 0;
            for (int t = 0; t < S; t++) {
                double P = src[pa[t] * RC + i * si + (int64_t)pc[t] * sc] / gu, N;
                if (l->ntype == NT_PAIR) N = src[na[t] * RC + i * si + (int64_t)nc[t] * sc] / gu;
                else if (l->ntype == NT_REFCOL) N = src[ra[t] * RC + i * si + (int64_t)rp[t] * sc] / gu;
                else N = l->ncode[t];
                wsum += l->coef[t] * (P - N);
            }
            out[(size_t)(j0 + jj) * k + i0 + i] = (float)(scale * wsum);
        }
    }
}

static xb_status solve_err_(const xlayer *l, xb_status st, int r, int c, int a, const char *what) {
    char why[768];
    snprintf(why, sizeof why, "%s", xb_last_error());
    return xb_errorf(st, "layer %s, tile (%d, %d), array %d%s: %s", l->st.name, r, c, a, what, why);
}

/* Targets of tile (r, c) from the current weights, then the devices (variation, drift, faults).  With
 * drift_compensation = column (l->dref0), also the same devices at t0 into gt0 (variation and faults come
 * from their own forks of the array's stream, so switching drift off leaves them as they are) and their
 * reads into e0, for the column reference reads of assemble_tile_. */
static xb_status tile_devices_(xb_xnet *xn, xlayer *l, int r, int c, double *gt, double *gt0, double *e0, void *ws,
                               xb_device_counts *cnt) {
    const xb_hw *hw = &xn->hw;
    const xb_map_geom *g = &l->g;
    const int64_t RC = (int64_t)g->R * g->C;
    xb_map_tile_targets(xl_hw_(xn, l), g, xl_wsrc_(xn, l), l->s, l->srow, r, c, gt);
    xb_rng base, lr, tr, ar;
    xb_rng_seed(&base, xn->seed, "device");
    xb_rng_fork(&base, (uint64_t)l->li * 65536u + (uint64_t)l->sid, &lr); /* sid: the group, or the block */
    xb_rng_fork(&lr, (uint64_t)r * (uint64_t)g->ct + (uint64_t)c, &tr);
    xb_hw hw0;
    if (l->dref0) {
        hw0 = *hw;
        hw0.drift_nu = hw0.drift_nu_sigma = 0;
    }
    for (int a = 0; a < g->arrays; a++) {
        xb_rng_fork(&tr, (uint64_t)a, &ar);
        if (l->dref0) {
            xb_device_counts c0 = {0};
            memcpy(gt0 + a * RC, gt + a * RC, (size_t)RC * sizeof(double));
            xb_device_program(&hw0, RC, gt0 + a * RC, &ar, &c0);
            if (hw->cell.type != XB_CELL_RESISTOR) xl_cell_read(xn, l, RC, gt0 + a * RC, gt0 + a * RC);
            xb_status st = xn->parasitic
                               ? xb_solve_plan_effective(xn->plan, &hw->circuit, gt0 + a * RC, e0 + a * RC, ws, NULL)
                               : XB_OK;
            if (!xn->parasitic) memcpy(e0 + a * RC, gt0 + a * RC, (size_t)RC * sizeof(double));
            if (st) return solve_err_(l, st, r, c, a, " (drift reference at t0)");
        }
        xb_device_program(hw, RC, gt + a * RC, &ar, cnt);
    }
    return XB_OK;
}


/* The effective matrices of tile (r, c) from its conductances gt: each array's forward read into e and,
 * when the backward read differs, its backward read into e + arrays*R*C (both with `plan`/`plan_bwd`;
 * solve = 0: the caller filled both already), then the layer's matrices from them (e0: the t0 reads for
 * drift_compensation = column, or NULL). */
xb_status xl_tile_build(xb_xnet *xn, xlayer *l, int r, int c, const double *gt, double *e, void *ws, int solve,
                        const xb_solve_plan *plan, const xb_solve_plan *plan_bwd, const double *e0) {
    const xb_map_geom *g = &l->g;
    const int64_t RC = (int64_t)g->R * g->C;
    double *gr = NULL;   /* 1T-1R cells: the arrays read as their secant conductances (include/xb_cell.h) */
    if (solve && xn->hw.cell.type != XB_CELL_RESISTOR) {
        gr = xb_malloc((size_t)(g->arrays * RC) * sizeof(double));
        xl_cell_read(xn, l, g->arrays * RC, gt, gr);
        gt = gr;
    }
    xb_status bs = tile_reads_(xn, l, r, c, gt, e, ws, solve, plan, plan_bwd, e0);
    xb_free(gr);
    return bs;
}

static xb_status tile_reads_(xb_xnet *xn, xlayer *l, int r, int c, const double *gt, double *e, void *ws, int solve,
                             const xb_solve_plan *plan, const xb_solve_plan *plan_bwd, const double *e0) {
    const xb_map_geom *g = &l->g;
    const int64_t RC = (int64_t)g->R * g->C;
    int solved = 0;
    if (solve) {
        xb_status st = xl_energy_tile_solve(xn, l, r, c, gt, e, ws, plan, &solved);
        if (st) return solve_err_(l, st, r, c, 0, " (input admittance)");
    }
    for (int a = 0; solve && a < g->arrays; a++) {
        xb_status st = XB_OK;
        if (!solved) { /* (the energy model's solve gave the forward reads too) */
            if (xn->parasitic) st = xb_solve_plan_effective(plan, &xn->hw.circuit, gt + a * RC, e + a * RC, ws, NULL);
            else memcpy(e + a * RC, gt + a * RC, (size_t)RC * sizeof(double));
        }
        if (st) return solve_err_(l, st, r, c, a, "");
        if (xn->bwd_read &&
            (st = xb_solve_plan_effective_dir(plan_bwd, &xn->hw.circuit, XB_READ_BACKWARD, gt + a * RC,
                                              e + (g->arrays + a) * RC, ws, NULL)))
            return solve_err_(l, st, r, c, a, ", backward read");
    }
    if (xn->bwd_read) xl_assemble_w(l, r, c, e + g->arrays * RC, 1, 1.0, l->weff_bwd);
    return assemble_tile_(xn, l, r, c, gt, e, l->dref0 ? e0 : NULL);
}

/* The layer's matrices (W_eff, and for the tiled path the per-slice signal and noise matrices) from
 * tile (r, c)'s conductances gt and forward reads e. */
static xb_status assemble_tile_(xb_xnet *xn, xlayer *l, int r, int c, const double *gt, const double *e,
                                const double *e0) {
    const xb_hw *hw = &xn->hw;
    const xb_map_geom *g = &l->g;
    const int R = g->R, C = g->C, S = g->slices, k = l->k;
    const int64_t RC = (int64_t)R * C;
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
        if (l->dref0 && e0) {
            /* reference reads of output j's columns on this row tile: every driven row at full scale, each
             * physical column read by itself (its G+ and G- columns, or its column and the tile's reference
             * column), the slices weighted as the shift-add weighs them */
            double r0 = 0, r1 = 0;
            for (int t = 0; t < S; t++) {
                const double wt = ldexp(1.0, g->slice_bits * t);
                for (int i = 0; i < m; i++) {
                    int64_t ip = pa[t] * RC + (int64_t)i * C + pp[t], in = -1;
                    if (l->ntype == NT_PAIR) in = na[t] * RC + (int64_t)i * C + np[t];
                    else if (l->ntype == NT_REFCOL) in = ra[t] * RC + (int64_t)i * C + rp[t];
                    r0 += wt * (e0[ip] + (in >= 0 ? e0[in] : 0));
                    r1 += wt * (e[ip] + (in >= 0 ? e[in] : 0));
                }
            }
            l->dref0[(size_t)r * l->rows_out + j] = r0;
            l->dref1[(size_t)r * l->rows_out + j] = r1;
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
            l->weff[(size_t)j * k + i0 + i] = (float)wsum;
            if (!l->tiled) {
                if (l->vnoise) l->vnoise[(size_t)j * k + i0 + i] = (float)vsum;
            }
        }
    }
    return XB_OK;
}

/* The per-output digital factor: drift_compensation = column makes it the ratio of output j's reference reads
 * at t0 and at t (summed over the row tiles), scale = column multiplies in srow_j / s; it scales row j of the
 * effective weights (what the fast path and the backward read)
 * and of the read-noise variances by its square; the tiled path applies it after the ADCs (xforward.c). */
static void column_drift_comp_(xlayer *l) {
    const int ro = l->rows_out, k = l->k;
    for (int j = 0; j < ro; j++) {
        double s0 = 0, s1 = 0, f = 1.0;
        for (int r = 0; l->dref0 && r < l->g.rt; r++) {
            s0 += l->dref0[(size_t)r * ro + j];
            s1 += l->dref1[(size_t)r * ro + j];
        }
        if (l->dref0) f = s1 > 0 && s0 > 0 && isfinite(s0 / s1) ? s0 / s1 : 1.0;
        if (l->rowf) f *= l->rowf[j]; /* scale = column: the output's own scale, digitally */
        l->dcomp[j] = (float)f;
        for (int i = 0; i < k; i++) l->weff[(size_t)j * k + i] = (float)(f * l->weff[(size_t)j * k + i]);
        if (l->weff_bwd) /* the digital factor scales the output, so the backward read's gradient too */
            for (int i = 0; i < k; i++) l->weff_bwd[(size_t)j * k + i] = (float)(f * l->weff_bwd[(size_t)j * k + i]);
        if (l->vnoise)
            for (int i = 0; i < k; i++) l->vnoise[(size_t)j * k + i] = (float)(f * f * l->vnoise[(size_t)j * k + i]);
    }
}

typedef struct work_ { int net, xl, r, c; } work_;

xb_status xb_xnet_program_many(xb_xnet *const *xns, const uint64_t *seeds, int n) {
    if (n < 1) return xb_errorf(XB_ERR_ARG, "xb_xnet_program_many: %d networks; give at least one", n);
    int64_t nw = 0;
    size_t arr = 0, wsb = 0;
    int dcol = 0;
    for (int q = 0; q < n; q++) {
        xb_xnet *xn = xns[q];
        dcol |= xn->hw.drift_compensation == XB_DRIFTCOMP_COLUMN;
        if (xn->folded)
            return xb_errorf(XB_ERR_STATE, "crossbar network: programming while folded would read the effective weights "
                             "as float ones. HINT: unfold first (xb_xnet_fold(xn, 0))");
        xn->seed = seeds[q];
        xn->programmed = 0;
        for (int i = 0; i < xn->n_xl; i++) {
            xb_status sp = xn->hw.pack && xn->xl[i].base_out && xn->xl[i].block == 0 ? xl_pack_check(xn, i) : XB_OK;
            if (sp) return sp;
        }
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
        double *gt = xb_malloc((arr + 1) * sizeof(double)), *e = xb_malloc((2 * arr + 1) * sizeof(double));
        double *gt0 = NULL, *e0 = NULL;
        if (dcol) {
            gt0 = xb_malloc((arr + 1) * sizeof(double));
            e0 = xb_malloc((arr + 1) * sizeof(double));
        }
        void *ws = wsb ? xb_malloc(wsb) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < nw; it++) {
            if (err) continue;
            xb_xnet *xn = xns[wl[it].net];
            xlayer *l = &xn->xl[wl[it].xl];
            xb_device_counts cnt = {0};
            double ts = xb_time_s();
            xb_status st = tile_devices_(xn, l, wl[it].r, wl[it].c, gt, gt0, e0, ws, &cnt);
            if (!st && l->gstate) { /* on-chip training: the programmed conductances are the state from now on */
                const size_t nb = (size_t)l->g.arrays * l->g.R * l->g.C * sizeof(double);
                memcpy(l->gstate + xl_tile_offset(l, wl[it].r, wl[it].c), gt, nb);
                if (l->gref) memcpy(l->gref + xl_tile_offset(l, wl[it].r, wl[it].c), gt, nb);
            }
            const int64_t off = xl_tile_offset(l, wl[it].r, wl[it].c);
            const int solve = !xn->distort_next || !l->dist;
            if (!st && !solve) xl_distort(xn, l, off, gt, e); /* I-FCM: the last solve's ratios on the new conductances */
            if (!st) st = xl_tile_build(xn, l, wl[it].r, wl[it].c, gt, e, ws, solve, xn->plan, xn->plan_bwd, e0);
            if (!st && solve && l->dist) xl_keep_distortion(xn, l, off, e, gt);
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
        xb_free(gt0);
        xb_free(e0);
        xb_free(ws);
    }
    xb_free(wl);
    if (err) return xb_errorf(err, "%s", msg);
    for (int q = 0; q < n; q++) {
        for (int i = 0; i < xns[q]->n_xl; i++) {
            xlayer *l = &xns[q]->xl[i];
            if (!l->digital) l->whash = xb_xnet_hash_(xb_xnet_wptr_(xns[q], l), (int64_t)l->full_ro * l->full_k);
            if (l->dcomp) column_drift_comp_(l);
        }
        xns[q]->programmed = 1;
    }
    return XB_OK;
}

xb_status xb_xnet_program(xb_xnet *xn, uint64_t seed) { return xb_xnet_program_many(&xn, &seed, 1); }

xb_status xb_xnet_keep_distortion(xb_xnet *xn) {
    if (!xn->parasitic) return XB_OK; /* E == G: nothing to hold */
    for (int i = 0; i < xn->n_xl; i++) {
        xlayer *l = &xn->xl[i];
        if (l->digital || l->dist) continue;
        l->dist = xb_try_malloc((size_t)xl_tile_offset(l, l->g.rt, 0) * (xn->bwd_read ? 2 : 1) * sizeof(double));
        if (!l->dist)
            return xb_errorf(XB_ERR_NOMEM, "no memory for the distortion ratios of layer %s", l->st.name);
    }
    return XB_OK;
}

xb_status xb_xnet_program_distorted(xb_xnet *xn, uint64_t seed) {
    for (int i = 0; i < xn->n_xl; i++)
        if (!xn->xl[i].digital && xn->parasitic && !xn->xl[i].dist)
            return xb_errorf(XB_ERR_STATE, "crossbar network: no distortion ratios held. HINT: xb_xnet_keep_distortion "
                             "and a programming that solves the circuit first");
    xn->distort_next = 1;
    xb_status st = xb_xnet_program(xn, seed);
    xn->distort_next = 0;
    return st;
}

