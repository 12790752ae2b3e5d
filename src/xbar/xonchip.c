/* xonchip.c -- on-chip training state (TxSim, methods.md item 6): every cell's conductance is kept
 * after programming and becomes the state.  A weight change is written into the cells through the
 * device update model (update.c: non-linearity, write noise, pulses, clamping, pair and slice
 * policies), the weights are read back from the conductances, and the effective matrices are rebuilt
 * from the state: by a circuit solve, or between solves by the distortion ratio E ./ G of the last one
 * (I-FCM), or held. */
#include "xnet_internal.h"

static int64_t layer_cells_(const xlayer *l) { return xl_tile_offset(l, l->g.rt, 0); }

static int xb_xnet_any_gref_(const xb_xnet *xn) {
    for (int i = 0; i < xn->n_xl; i++)
        if (xn->xl[i].gref) return 1;
    return 0;
}

xb_status xb_xnet_onchip_init(xb_xnet *xn) {
    if (xn->programmed)
        return xb_errorf(XB_ERR_STATE, "on-chip training: the state must be set up before the first programming. "
                         "HINT: call xb_xnet_onchip_init right after xb_xnet_init");
    if (xn->hw.drift_compensation == XB_DRIFTCOMP_COLUMN)
        return xb_errorf(XB_ERR_UNSUPPORTED, "%s: on-chip training with drift_compensation = column: the per-column "
                         "reference reads are taken at programming only. HINT: use none or global",
                         xn->hw.path[0] ? xn->hw.path : "hw config");
    if (xn->hw.column_scale || xn->lhw)
        return xb_errorf(XB_ERR_UNSUPPORTED, "%s: on-chip training with [mapping] scale = column or per-layer "
                         "precisions: the conductances are the state, with one scale per layer. HINT: scale = layer",
                         xn->hw.path[0] ? xn->hw.path : "hw config");
    if (xn->hw.rearrange || xn->hw.pack)
        return xb_errorf(XB_ERR_UNSUPPORTED, "%s: on-chip training with [mapping] rearrange or pack: the conductances "
                         "are the state, in the weights' own order and tiles. HINT: rearrange = none, pack = none",
                         xn->hw.path[0] ? xn->hw.path : "hw config");
    const int dist = xn->parasitic && xn->hw.update.refresh_solver == XB_REFRESH_DISTORTION;
    for (int i = 0; i < xn->n_xl; i++) {
        xlayer *l = &xn->xl[i];
        if (l->digital) continue;
        const int64_t n = layer_cells_(l);
        l->gstate = xb_try_malloc((size_t)n * sizeof(double));
        if (dist) l->dist = xb_try_malloc((size_t)n * (xn->bwd_read ? 2 : 1) * sizeof(double));
        const int held = xn->parasitic && xn->hw.update.refresh_steps > 0;
        if (held) l->gref = xb_try_malloc((size_t)n * sizeof(double));
        if (!l->gstate || (dist && !l->dist) || (held && !l->gref))
            return xb_errorf(XB_ERR_NOMEM, "on-chip training: no memory for the conductances of layer %s (%lld cells)",
                             l->st.name, (long long)n);
    }
    if (xn->parasitic && xn->hw.update.refresh_solver == XB_REFRESH_DECOUPLED) {
        xb_status st = xb_solve_plan_init(xn->hw.rows, xn->hw.cols, XB_SOLVE_DECOUPLED, &xn->plan_dec);
        if (!st && xn->bwd_read) {
            if (xn->hw.rows == xn->hw.cols) xn->plan_dec_bwd = xn->plan_dec;
            else st = xb_solve_plan_init(xn->hw.cols, xn->hw.rows, XB_SOLVE_DECOUPLED, &xn->plan_dec_bwd);
        }
        if (st) return st;
        size_t w = xb_solve_plan_workspace_dir(xn->plan_dec, XB_READ_FORWARD);
        if (xn->plan_dec_bwd) {
            size_t wb = xb_solve_plan_workspace_dir(xn->plan_dec_bwd, XB_READ_BACKWARD);
            if (wb > w) w = wb;
        }
        if (w > xn->ws_bytes) xn->ws_bytes = w;
    }
    xn->onchip = 1;
    return XB_OK;
}

void xl_distort(const xb_xnet *xn, const xlayer *l, int64_t off, const double *g, double *e) {
    const int64_t n = (int64_t)l->g.arrays * l->g.R * l->g.C, RC = (int64_t)l->g.R * l->g.C;
    const double *d = l->dist + off * (xn->bwd_read ? 2 : 1);
    for (int64_t i = 0; i < n; i++) e[i] = d[i] * g[i];
    if (!xn->bwd_read) return;
    const int R = l->g.R, C = l->g.C;
    for (int a = 0; a < l->g.arrays; a++)
        for (int i = 0; i < R; i++)
            for (int c = 0; c < C; c++) e[n + a * RC + (int64_t)c * R + i] = d[n + a * RC + (int64_t)c * R + i] * g[a * RC + (int64_t)i * C + c];
}

void xl_keep_distortion(const xb_xnet *xn, xlayer *l, int64_t off, const double *e, const double *g) {
    const int64_t n = (int64_t)l->g.arrays * l->g.R * l->g.C, RC = (int64_t)l->g.R * l->g.C;
    double *d = l->dist + off * (xn->bwd_read ? 2 : 1);
    for (int64_t i = 0; i < n; i++) d[i] = g[i] > 0 ? e[i] / g[i] : 1.0;
    if (!xn->bwd_read) return;
    const int R = l->g.R, C = l->g.C;
    for (int a = 0; a < l->g.arrays; a++)
        for (int i = 0; i < R; i++)
            for (int c = 0; c < C; c++) {
                const double gv = g[a * RC + (int64_t)i * C + c];
                const int64_t q = n + a * RC + (int64_t)c * R + i;
                d[q] = gv > 0 ? e[q] / gv : 1.0;
            }
}

typedef struct otile_ { int xl, r, c; } otile_;

static xb_status refresh_(xb_xnet *xn, int solve, int from_ref);

xb_status xb_xnet_onchip_refresh(xb_xnet *xn, int solve) { return refresh_(xn, solve, 0); }

/* solve from_ref: the matrices of the last solve rebuilt from its conductances (gref), the state kept */
static xb_status refresh_(xb_xnet *xn, int solve, int from_ref) {
    if (!xn->onchip || !xn->programmed)
        return xb_errorf(XB_ERR_STATE, "on-chip training: no conductance state yet. HINT: xb_xnet_onchip_init, then "
                         "xb_xnet_program");
    const int dist = xn->parasitic && xn->hw.update.refresh_solver == XB_REFRESH_DISTORTION;
    if (solve < 0) goto rehash; /* held: the tiles keep their matrices and stand for the new weights */
    if (!solve && !dist) solve = 1;
    const int dec = xn->plan_dec != NULL;
    int64_t nt = 0;
    size_t arr = 0;
    for (int i = 0; i < xn->n_xl; i++)
        if (!xn->xl[i].digital) {
            nt += xn->xl[i].g.tiles;
            size_t a = (size_t)xn->xl[i].g.arrays * xn->xl[i].g.R * xn->xl[i].g.C;
            if (a > arr) arr = a;
        }
    otile_ *wl = xb_malloc((size_t)(nt + 1) * sizeof(otile_));
    int64_t u = 0;
    for (int i = 0; i < xn->n_xl; i++) {
        const xlayer *l = &xn->xl[i];
        if (l->digital) continue;
        for (int r = 0; r < l->g.rt; r++)
            for (int c = 0; c < l->g.ct; c++) wl[u++] = (otile_){i, r, c};
    }
    xb_status err = XB_OK;
    char msg[1024] = "";
#pragma omp parallel num_threads(xn->nthreads)
    {
        double *e = xb_malloc((2 * arr + 1) * sizeof(double));
        void *ws = xn->ws_bytes ? xb_malloc(xn->ws_bytes) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < nt; it++) {
            if (err) continue;
            xlayer *l = &xn->xl[wl[it].xl];
            const int64_t off = xl_tile_offset(l, wl[it].r, wl[it].c);
            if (!solve) xl_distort(xn, l, off, l->gstate + off, e);
            const double *gs = from_ref ? l->gref + off : l->gstate + off;
            xb_status st = xl_tile_build(xn, l, wl[it].r, wl[it].c, gs, e, ws, solve,
                                         dec ? xn->plan_dec : xn->plan, dec ? xn->plan_dec_bwd : xn->plan_bwd, NULL);
            if (!st && solve && dist) xl_keep_distortion(xn, l, off, e, gs);
            if (!st && solve && l->gref && !from_ref)
                memcpy(l->gref + off, l->gstate + off, (size_t)l->g.arrays * l->g.R * l->g.C * sizeof(double));
            if (st) {
#pragma omp critical(xb_onchip_refresh)
                if (!err) {
                    err = st;
                    snprintf(msg, sizeof msg, "%s", xb_last_error());
                }
            }
        }
        xb_free(e);
        xb_free(ws);
    }
    xb_free(wl);
    if (err) return xb_errorf(err, "on-chip refresh: %s", msg);
rehash:
    for (int i = 0; i < xn->n_xl; i++) {
        xlayer *l = &xn->xl[i];
        if (!l->digital) l->whash = xb_xnet_hash_(xb_xnet_wptr_(xn, l), (int64_t)l->rows_out * l->k);
    }
    return XB_OK;
}

/* The model's weights of layer l read back from the conductances (an ideal read: no circuit, no
 * drift compensation or gain). */
static void derive_weights_(xb_xnet *xn, xlayer *l) {
    float *w = xb_xnet_wptr_(xn, l);
    const double unscale = 1.0 / (l->comp * l->gain);
    for (int r = 0; r < l->g.rt; r++)
        for (int c = 0; c < l->g.ct; c++) xl_assemble_w(l, r, c, l->gstate + xl_tile_offset(l, r, c), 0, unscale, w);
}

xb_status xb_xnet_onchip_update(xb_xnet *xn, const float *w_old, uint64_t step, xb_update_counts *cnt) {
    if (!xn->onchip || !xn->programmed)
        return xb_errorf(XB_ERR_STATE, "on-chip training: no conductance state yet. HINT: xb_xnet_onchip_init, then "
                         "xb_xnet_program");
    const xb_hw *hw = &xn->hw;
    xb_rng base, rs;
    xb_rng_seed(&base, xn->seed, "update");
    xb_rng_fork(&base, step, &rs);
    for (int q = 0; q < xn->n_xl; q++) {
        xlayer *l = &xn->xl[q];
        if (l->digital) continue;
        const xb_map_geom *g = &l->g;
        const int64_t RC = (int64_t)g->R * g->C, woff = xb_model_param(xn->m, l->param)->offset +
                                                          (int64_t)l->group * l->rows_out * l->k;
        const float *wn = xb_model_params(xn->m) + woff, *wo = w_old + woff;
        const double toc = g->qmax / l->s;
        xb_rng rl;
        xb_rng_fork(&rs, (uint64_t)l->li * 65536u + (uint64_t)l->group, &rl);
        xb_update_counts lc = {0};
        int64_t u0 = 0, u1 = 0, u2 = 0, u3 = 0, u4 = 0;
#pragma omp parallel for schedule(static) num_threads(xn->nthreads) reduction(+ : u0, u1, u2, u3, u4)
        for (int j = 0; j < l->rows_out; j++) {
            xb_update_counts tc = {0};
            double dgc[2 * XB_MAX_SLICES];
            const int c = j / g->wcols, jj = j % g->wcols;
            for (int i = 0; i < l->k; i++) {
                const float dw = wn[(size_t)j * l->k + i] - wo[(size_t)j * l->k + i];
                if (dw == 0) continue;
                xb_update_weight_cells(xl_hw_(xn, l), g, (double)dw * toc, dgc);
                const int r = i / g->R, ii = i % g->R;
                for (int sg = 0; sg < g->n_sign; sg++)
                    for (int t = 0; t < g->slices; t++) {
                        double dg = dgc[sg * g->slices + t];
                        if (dg == 0) continue;
                        int a, col;
                        xb_map_cell(g, sg, t, jj, &a, &col);
                        const int64_t idx = xl_tile_offset(l, r, c) + a * RC + (int64_t)ii * g->C + col;
                        xb_device_update_at(hw, idx, 1, l->gstate + idx, &dg, &rl, &tc);
                    }
            }
            u0 += tc.updates; u1 += tc.pulses; u2 += tc.clamped_gmin; u3 += tc.clamped_gmax; u4 += tc.skipped;
        }
        lc.updates = u0; lc.pulses = u1; lc.clamped_gmin = u2; lc.clamped_gmax = u3; lc.skipped = u4;
        if (cnt) {
            cnt->updates += lc.updates; cnt->pulses += lc.pulses; cnt->clamped_gmin += lc.clamped_gmin;
            cnt->clamped_gmax += lc.clamped_gmax; cnt->skipped += lc.skipped;
        }
        derive_weights_(xn, l);
    }
    return XB_OK;
}

/* ---- the state on disk ------------------------------------------------------------------------------ */

static void state_name_(const xlayer *l, const char *what, char *buf, size_t n) {
    snprintf(buf, n, "%s.g%d.%s", l->st.name, l->group, what);
}

xb_status xb_xnet_onchip_save(const xb_xnet *xn, const char *path) {
    if (!xn->onchip || !xn->programmed)
        return xb_errorf(XB_ERR_STATE, "on-chip training: no conductance state to save");
    xb_safetensors st;
    xb_st_init(&st);
    char (*names)[192] = xb_malloc((size_t)(3 * xn->n_xl + 1) * sizeof *names);
    double *per = xb_malloc((size_t)(7 * xn->n_xl + 1) * sizeof(double));
    for (int i = 0; i < xn->n_xl; i++) {
        const xlayer *l = &xn->xl[i];
        if (l->digital) continue;
        xb_tensor t = {XB_F64, 1, {layer_cells_(l), 1, 1, 1}, l->gstate, 0};
        state_name_(l, "conductances", names[3 * i], sizeof names[0]);
        xb_st_add(&st, names[3 * i], t);
        if (l->gref) { /* the matrices in use come from the last solve's conductances */
            xb_tensor tr = {XB_F64, 1, {layer_cells_(l), 1, 1, 1}, l->gref, 0};
            state_name_(l, "conductances_at_last_solve", names[3 * i + 2], sizeof names[0]);
            xb_st_add(&st, names[3 * i + 2], tr);
        }
        double *p = per + 7 * i; /* what the periphery and the read-noise stream were at this point */
        p[0] = l->s; p[1] = l->x_max; p[2] = l->fs; p[3] = l->gain; p[4] = l->x_set; p[5] = l->fs_set;
        p[6] = (double)l->calls;
        xb_tensor ts = {XB_F64, 1, {7, 1, 1, 1}, p, 0};
        state_name_(l, "periphery", names[3 * i + 1], sizeof names[0]);
        xb_st_add(&st, names[3 * i + 1], ts);
    }
    xb_st_add_meta(&st, "format", "xbar on-chip conductance state (siemens), per mapped layer and group");
    xb_status s = xb_st_save(path, &st);
    xb_st_free(&st);
    xb_free(names);
    xb_free(per);
    return s;
}

xb_status xb_xnet_onchip_load(xb_xnet *xn, const char *path) {
    if (!xn->onchip || !xn->programmed)
        return xb_errorf(XB_ERR_STATE, "on-chip training: program the network before loading a state into it");
    xb_safetensors st;
    xb_status s = xb_st_load(path, &st);
    if (s) return s;
    for (int i = 0; i < xn->n_xl && !s; i++) {
        xlayer *l = &xn->xl[i];
        if (l->digital) continue;
        char name[192], sname[192];
        state_name_(l, "conductances", name, sizeof name);
        state_name_(l, "periphery", sname, sizeof sname);
        const xb_tensor *t = xb_st_get(&st, name), *ts = xb_st_get(&st, sname);
        if (!t || !ts || t->dtype != XB_F64 || ts->dtype != XB_F64 || xb_tensor_numel(t) != layer_cells_(l) ||
            xb_tensor_numel(ts) != 7) {
            s = xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s' is missing or not float64 of %lld values. HINT: the state "
                          "belongs to another model or hardware config", path, name, (long long)layer_cells_(l));
            break;
        }
        memcpy(l->gstate, t->data, (size_t)layer_cells_(l) * sizeof(double));
        if (l->gref) {
            char rname[192];
            state_name_(l, "conductances_at_last_solve", rname, sizeof rname);
            const xb_tensor *tr = xb_st_get(&st, rname);
            if (!tr || tr->dtype != XB_F64 || xb_tensor_numel(tr) != layer_cells_(l)) {
                s = xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s' is missing or not float64 of %lld values. HINT: the state "
                              "was written with another [update] refresh_steps", path, rname, (long long)layer_cells_(l));
                break;
            }
            memcpy(l->gref, tr->data, (size_t)layer_cells_(l) * sizeof(double));
        }
        const double *p = ts->data;
        if (!(p[0] > 0 && p[3] > 0 && p[6] >= 0)) {
            s = xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s' holds an impossible scale, gain or call count", path, sname);
            break;
        }
        for (int q = 0; q < l->g.slices; q++) l->coef[q] *= (p[0] / l->s) * (p[3] / l->gain);
        l->s = p[0]; l->x_max = p[1]; l->fs = p[2]; l->gain = p[3]; l->x_set = p[4] != 0; l->fs_set = p[5] != 0;
        l->calls = (uint64_t)p[6];
        l->st.w_scale = l->s; l->st.input_full_scale = l->x_max; l->st.gain = l->gain;
        l->st.adc_full_scale_a = l->fs * xn->hw.v_read_v * l->g.g_unit_s;
        derive_weights_(xn, l);
    }
    xb_st_free(&st);
    if (s) return s;
    /* the last solve's matrices again (and distortion ratios); the caller then redoes the last refresh */
    return refresh_(xn, 1, xn->xl[0].gref || xb_xnet_any_gref_(xn));
}
