/* cmd_solve.c -- `xbar solve`: a crossbar tile's output currents (and effective matrix) from its
 * conductances, input voltages and wire/driver/sense resistances.  The circuit: include/xb_solve.h.
 * --backward reads the tile transposed (columns driven, rows sensed): E is then Eb (cols, rows) and
 * V is (batch, cols).  --cell 1t1r solves a tile of 1T-1R cells by Newton's method (include/xb_cell.h): only
 * the output currents, since such a tile has no effective matrix. */
#include "cli.h"
#include "xb_cell.h"
#include "xb_solve.h"

#include <stdlib.h>
#include <string.h>

/* Loads a float64 (or float32, widened) array of 1 or 2 dimensions as a double matrix. */
static xb_status load_matrix(const char *flag, const char *path, xb_tensor *t, int64_t *r, int64_t *c) {
    xb_status st = xb_npy_load(path, t);
    if (st) return st;
    if (t->ndim < 1 || t->ndim > 2 || (t->dtype != XB_F64 && t->dtype != XB_F32)) {
        char buf[64];
        xb_shape_str(t->ndim, t->shape, buf, sizeof buf);
        st = xb_errorf(XB_ERR_FORMAT, "%s: --%s holds a %s array of shape (%s); expected a float64 matrix. "
                       "HINT: save it with numpy: np.save(path, a.astype(np.float64))", path, flag,
                       xb_dtype_name(t->dtype), buf);
        xb_tensor_free(t);
        return st;
    }
    if (t->dtype == XB_F32) {
        int64_t n = xb_tensor_numel(t);
        xb_tensor d = xb_tensor_alloc(XB_F64, t->ndim, t->shape);
        for (int64_t k = 0; k < n; k++) ((double *)d.data)[k] = ((const float *)t->data)[k];
        xb_tensor_free(t);
        *t = d;
    }
    *r = t->ndim == 2 ? t->shape[0] : 1;
    *c = t->ndim == 2 ? t->shape[1] : t->shape[0];
    return XB_OK;
}

/* --cell 1t1r: output currents by Newton's method; the linear-only outputs are refused. */
static int solve_cell(xf_flag *f, int nf) {
    static const char *const linear_only[] = {"effective", "admittance", "power", "backward"};
    for (int k = 0; k < 4; k++)
        if (xf_get(f, nf, linear_only[k])->set) {
            fprintf(stderr, "xbar solve: error: --%s is not defined for --cell 1t1r: a tile of 1T-1R cells is not "
                            "linear, so it has no effective matrix or input admittance\nHINT: give --v V.npy --out "
                            "I.npy for the output currents of given inputs\n", linear_only[k]);
            return 2;
        }
    if (xf_get(f, nf, "method")->set && xf_get(f, nf, "method")->i != XB_SOLVE_EXACT) {
        fprintf(stderr, "xbar solve: error: --cell 1t1r is solved exactly (Newton's method) only\nHINT: drop --method\n");
        return 2;
    }
    const char *gpath = xf_get(f, nf, "g")->s, *vpath = xf_get(f, nf, "v")->s, *opath = xf_get(f, nf, "out")->s;
    if (!vpath || !opath) {
        fprintf(stderr, "xbar solve: error: --cell 1t1r needs --v and --out\nHINT: give --v V.npy --out I.npy\n");
        return 2;
    }
    xb_cell cell = xb_cell_1t1r_default();
    cell.model = (xb_mos_model)xf_get(f, nf, "mos")->i;
    if (cell.model != XB_MOS_EKV && (xf_get(f, nf, "ekv-n")->set || xf_get(f, nf, "ekv-ut-v")->set)) {
        fprintf(stderr, "xbar solve: error: --ekv-n and --ekv-ut-v apply to --mos ekv only\nHINT: add --mos ekv\n");
        return 2;
    }
    double *par[6] = {&cell.v_gate_v, &cell.beta_a_per_v2, &cell.v_t_v, &cell.lambda_per_v, &cell.ekv_n, &cell.ekv_ut_v};
    static const char *const names[6] = {"v-gate-v", "beta-a-per-v2", "v-t-v", "lambda-per-v", "ekv-n", "ekv-ut-v"};
    for (int k = 0; k < 6; k++)
        if (xf_get(f, nf, names[k])->set) *par[k] = xf_get(f, nf, names[k])->d;
    xb_circuit c = {.r_wire_ohm = xf_get(f, nf, "r-wire")->d, .r_driver_ohm = xf_get(f, nf, "r-driver")->d,
                    .r_sense_ohm = xf_get(f, nf, "r-sense")->d};
    xb_cell_opts o = {.max_iter = (int)xf_get(f, nf, "newton-iters")->i, .tol_rel = xf_get(f, nf, "newton-tol")->d,
                      .chord_rel = xf_get(f, nf, "newton-chord")->d};
    xb_tensor g = {0}, v = {0}, i = {0};
    int64_t rows, cols, batch, vrows;
    xb_cell_stats st;
    int ret = 1;
    if (load_matrix("g", gpath, &g, &rows, &cols) || load_matrix("v", vpath, &v, &batch, &vrows)) goto fail;
    if (g.ndim != 2) {
        xb_errorf(XB_ERR_SHAPE, "%s: --g must be a (rows, cols) matrix, got 1 dimension. HINT: reshape it, e.g. "
                  "g.reshape(1, -1) for one row", gpath);
        goto fail;
    }
    if (vrows != rows) {
        xb_errorf(XB_ERR_SHAPE, "%s: V has %lld entries per input but G has %lld rows. HINT: V is (batch, rows) with "
                  "one voltage per crossbar row", vpath, (long long)vrows, (long long)rows);
        goto fail;
    }
    if (rows > INT32_MAX || cols > INT32_MAX || batch > INT32_MAX) {
        xb_errorf(XB_ERR_SHAPE, "%s: G or V is too large", gpath);
        goto fail;
    }
    {
        int64_t is[2] = {batch, cols};
        i = v.ndim == 2 ? xb_tensor_alloc(XB_F64, 2, is) : xb_tensor_alloc(XB_F64, 1, is + 1);
    }
    if (xf_get(f, nf, "linearize-at")->set) {   /* the network path's linearization, for comparison */
        const double vr = xf_get(f, nf, "linearize-at")->d;
        if (!(vr > 0)) {
            xb_errorf(XB_ERR_ARG, "--linearize-at %g: the read voltage must be > 0. HINT: e.g. --linearize-at 0.5", vr);
            goto fail;
        }
        if (xb_cell_validate(&cell)) goto fail;
        const double t1 = xb_time_s();
        xb_cell_secant(&cell, vr, rows * cols, g.data, g.data);
        if (xb_xbar_currents(XB_SOLVE_EXACT, &c, (int)rows, (int)cols, g.data, (int)batch, v.data, i.data, NULL, NULL) ||
            xb_npy_save(opath, &i))
            goto fail;
        printf("solve: %lld x %lld tile of 1t1r cells linearized at %g V (secant conductances, exact linear circuit), "
               "%lld inputs, %.3f ms; wrote %s\n", (long long)rows, (long long)cols, vr, (long long)batch,
               (xb_time_s() - t1) * 1e3, opath);
        ret = 0;
        goto fail;
    }
    if (xb_xbar_currents_cell(&c, &cell, (int)rows, (int)cols, g.data, (int)batch, v.data, i.data, &o, &st) ||
        xb_npy_save(opath, &i))
        goto fail;
    if (xf_get(f, nf, "json")->i) {
        printf("{\"rows\":%lld,\"cols\":%lld,\"batch\":%lld,\"cell\":\"1t1r\",\"v_gate_v\":%.17g,"
               "\"beta_a_per_v2\":%.17g,\"v_t_v\":%.17g,\"lambda_per_v\":%.17g,\"r_wire\":%.17g,\"r_driver\":%.17g,"
               "\"r_sense\":%.17g,\"unknowns\":%d,\"newton_iterations_max\":%d,\"newton_iterations_mean\":%.3f,\"factorizations_mean\":%.3f,"
               "\"solve_ms\":%.4f,\"cells_by_regime\":{", (long long)rows, (long long)cols, (long long)batch,
               cell.v_gate_v, cell.beta_a_per_v2, cell.v_t_v, cell.lambda_per_v, c.r_wire_ohm, c.r_driver_ohm,
               c.r_sense_ohm, st.unknowns, st.iter_max, st.iter_mean, st.fact_mean, st.time_s * 1e3);
        static const char *const reg[XB_MOS_REGIMES] = {"cutoff", "triode", "saturation", "reverse_cutoff",
                                                        "reverse_triode", "reverse_saturation"};
        for (int k = 0; k < XB_MOS_REGIMES; k++) printf("%s\"%s\":%lld", k ? "," : "", reg[k], (long long)st.regimes[k]);
        printf("}}\n");
    } else {
        printf("solve: %lld x %lld tile of 1t1r cells (gate %g V), %lld inputs, %.3f ms, Newton iterations <= %d "
               "(mean %.2f, %.2f factorizations); %lld triode, %lld saturated, %lld reverse-biased cells; wrote %s\n", (long long)rows,
               (long long)cols, cell.v_gate_v, (long long)batch, st.time_s * 1e3, st.iter_max, st.iter_mean,
               st.fact_mean, (long long)st.regimes[XB_MOS_TRIODE], (long long)st.regimes[XB_MOS_SAT],
               (long long)(st.regimes[XB_MOS_REV_CUTOFF] + st.regimes[XB_MOS_REV_TRIODE] + st.regimes[XB_MOS_REV_SAT]),
               opath);
    }
    ret = 0;
fail:
    if (ret) cli_fail("solve");
    xb_tensor_free(&g);
    xb_tensor_free(&v);
    xb_tensor_free(&i);
    return ret;
}

int cmd_solve(int argc, char **argv) {
    xf_flag f[] = {
        {"g", XF_STR, NULL, NULL, "conductances G (rows, cols) .npy, float64 siemens", 1},
        {"v", XF_STR, NULL, NULL, "input voltages V (batch, rows) .npy, float64 volts (needs --out)"},
        {"out", XF_STR, NULL, NULL, "write the output currents I (batch, cols) .npy, amperes into ground"},
        {"effective", XF_STR, NULL, NULL, "write the effective matrix E (rows, cols) .npy, I = V E"},
        {"r-wire", XF_DOUBLE, "2.5", "0..", "ohms per row/column wire segment between cells (0: ideal)"},
        {"r-driver", XF_DOUBLE, "100", "0..", "ohms from each source to its row (0: ideal source)"},
        {"r-sense", XF_DOUBLE, "100", "0..", "ohms from each column to ground (0: virtual ground)"},
        {"method", XF_CHOICE, "exact", "exact|cholmod|decoupled",
         "exact (structured Schur), cholmod (sparse Cholesky reference) or decoupled (approximate)"},
        {"backward", XF_BOOL, NULL, NULL, "backward read: drive the columns (V is (batch, cols)), sense the rows "
         "(I is (batch, rows)); --effective writes Eb (cols, rows), I = V Eb"},
        {"admittance", XF_STR, NULL, NULL, "write the input admittance A (rows, rows) .npy: the row sources deliver "
         "I_src = A V (exact method, forward read)"},
        {"power", XF_STR, NULL, NULL, "write the power each input vector draws from the sources, P = V^T A V "
         "(batch,) .npy, watts (needs --v; exact method, forward read)"},
        {"cell", XF_CHOICE, "resistor", "resistor|1t1r", "cell type: a linear conductance, or G in series with a "
         "level-1 NMOS (drain to the memristor, source and bulk at the column node, gate at --v-gate-v)"},
        {"v-gate-v", XF_DOUBLE, NULL, NULL, "1t1r: gate voltage, V (default 0.7)"},
        {"beta-a-per-v2", XF_DOUBLE, NULL, NULL, "1t1r: transistor KP*W/L, A/V^2 (default 2e-4)"},
        {"v-t-v", XF_DOUBLE, NULL, NULL, "1t1r: threshold voltage, V (default 0.4)"},
        {"lambda-per-v", XF_DOUBLE, NULL, NULL, "1t1r: channel-length modulation, 1/V (default 0.05)"},
        {"mos", XF_CHOICE, "level1", "level1|ekv", "1t1r: the transistor's equations: SPICE level 1, or EKV's smooth "
         "interpolation (include/xb_cell.h)"},
        {"ekv-n", XF_DOUBLE, NULL, NULL, "1t1r, --mos ekv: slope factor n >= 1 (default 1.3)"},
        {"ekv-ut-v", XF_DOUBLE, NULL, NULL, "1t1r, --mos ekv: thermal voltage U_T, V (default 0.025852)"},
        {"newton-iters", XF_INT, "100", "1..", "1t1r: Newton iterations per input before it is an error"},
        {"newton-tol", XF_DOUBLE, "1e-12", "0..", "1t1r: converged when the largest node update is at most this "
         "times max(max |V|, 1 mV)"},
        {"linearize-at", XF_DOUBLE, NULL, "0..", "1t1r: instead of Newton, the approximation networks use: each cell as "
         "its secant conductance I(G, V, 0)/V at this read voltage V, then the exact linear circuit (exact without "
         "parasitics for inputs of 0 or V)"},
        {"newton-chord", XF_DOUBLE, "0.1", NULL, "1t1r: reuse the last Jacobian while the previous update was at "
         "most this times max(max |V|, 1 mV) (same tolerance; negative: a fresh Jacobian every iteration)"},
        {"json", XF_BOOL, NULL, NULL, "print one JSON object with shapes and timings"},
    };
    const int nf = sizeof f / sizeof *f;
    const char *summary = "exact crossbar circuit solve: output currents I = V E and the effective matrix E";
    int rc = xf_parse("solve", summary, f, nf, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (xf_get(f, nf, "cell")->i == XB_CELL_1T1R) return solve_cell(f, nf);
    const char *gpath = xf_get(f, nf, "g")->s, *vpath = xf_get(f, nf, "v")->s;
    const char *opath = xf_get(f, nf, "out")->s, *epath = xf_get(f, nf, "effective")->s;
    if (!!vpath != !!opath) {
        fprintf(stderr, "xbar solve: error: --%s needs --%s\nHINT: give both --v V.npy and --out I.npy, or "
                        "neither (with --effective E.npy)\n", vpath ? "v" : "out", vpath ? "out" : "v");
        return 2;
    }
    const char *apath = xf_get(f, nf, "admittance")->s, *ppath = xf_get(f, nf, "power")->s;
    if (ppath && !vpath) {
        fprintf(stderr, "xbar solve: error: --power needs the inputs\nHINT: give --v V.npy --out I.npy with it\n");
        return 2;
    }
    if ((apath || ppath) && (xf_get(f, nf, "backward")->i || xf_get(f, nf, "method")->i != XB_SOLVE_EXACT)) {
        fprintf(stderr, "xbar solve: error: --%s is computed by the exact solver for the forward read\nHINT: drop "
                        "--backward and --method (the default exact method)\n", apath ? "admittance" : "power");
        return 2;
    }
    if (!vpath && !epath && !apath) {
        fprintf(stderr, "xbar solve: error: nothing to write\nHINT: give --v V.npy --out I.npy and/or "
                        "--effective E.npy or --admittance A.npy\n");
        return 2;
    }
    static const char *const mos_flags[] = {"v-gate-v", "beta-a-per-v2", "v-t-v", "lambda-per-v", "mos", "ekv-n",
                                            "ekv-ut-v"};
    for (int k = 0; k < 7; k++)
        if (xf_get(f, nf, mos_flags[k])->set) {
            fprintf(stderr, "xbar solve: error: --%s applies to 1T-1R cells only\nHINT: add --cell 1t1r\n", mos_flags[k]);
            return 2;
        }
    xb_circuit c = {.r_wire_ohm = xf_get(f, nf, "r-wire")->d, .r_driver_ohm = xf_get(f, nf, "r-driver")->d,
                    .r_sense_ohm = xf_get(f, nf, "r-sense")->d};
    xb_solve_method method = (xb_solve_method)xf_get(f, nf, "method")->i;
    int json = (int)xf_get(f, nf, "json")->i, bwd = (int)xf_get(f, nf, "backward")->i;

    xb_tensor g = {0}, v = {0}, e = {0}, i = {0}, a = {0}, pw = {0};
    int64_t rows, cols, batch = 0, vrows = 0, nin, nout;
    xb_solve_stats st = {0};
    double t0 = xb_time_s();
    int ret = 1;
    if (load_matrix("g", gpath, &g, &rows, &cols)) goto fail;
    if (g.ndim != 2) {
        xb_errorf(XB_ERR_SHAPE, "%s: --g must be a (rows, cols) matrix, got 1 dimension. HINT: reshape it, "
                  "e.g. g.reshape(1, -1) for one row", gpath);
        goto fail;
    }
    nin = bwd ? cols : rows;    /* driven lines: rows, or columns for the backward read */
    nout = bwd ? rows : cols;
    if (vpath) {
        if (load_matrix("v", vpath, &v, &batch, &vrows)) goto fail;
        if (vrows != nin) {
            xb_errorf(XB_ERR_SHAPE, "%s: V has %lld entries per input but G has %lld %s. HINT: V is (batch, %s) "
                      "with one voltage per crossbar %s", vpath, (long long)vrows, (long long)nin,
                      bwd ? "columns" : "rows", bwd ? "cols" : "rows", bwd ? "column (--backward)" : "row");
            goto fail;
        }
        if (batch > INT32_MAX) { xb_errorf(XB_ERR_SHAPE, "%s: batch too large", vpath); goto fail; }
    }
    if (rows > INT32_MAX || cols > INT32_MAX) { xb_errorf(XB_ERR_SHAPE, "%s: G is too large", gpath); goto fail; }
    {
        int64_t es[2] = {nin, nout};
        e = xb_tensor_alloc(XB_F64, 2, es);
    }
    if (vpath) {
        int64_t is[2] = {batch, nout};
        i = v.ndim == 2 ? xb_tensor_alloc(XB_F64, 2, is) : xb_tensor_alloc(XB_F64, 1, is + 1);
        xb_status s = bwd ? xb_xbar_currents_backward(method, &c, (int)rows, (int)cols, g.data, (int)batch, v.data,
                                                      i.data, e.data, &st)
                          : xb_xbar_currents(method, &c, (int)rows, (int)cols, g.data, (int)batch, v.data, i.data,
                                             e.data, &st);
        if (s || xb_npy_save(opath, &i)) goto fail;
    } else if (!epath) {
        /* only the admittance asked for */
    } else if (bwd ? xb_xbar_effective_backward(method, &c, (int)rows, (int)cols, g.data, e.data, &st)
                   : xb_xbar_effective_method(method, &c, (int)rows, (int)cols, g.data, e.data, &st)) {
        goto fail;
    }
    if (epath && xb_npy_save(epath, &e)) goto fail;
    if (apath || ppath) {
        int64_t as[2] = {rows, rows};
        a = xb_tensor_alloc(XB_F64, 2, as);
        if (xb_xbar_admittance(&c, (int)rows, (int)cols, g.data, a.data)) goto fail;
        if (apath && xb_npy_save(apath, &a)) goto fail;
    }
    if (ppath) {
        int64_t ps[1] = {batch};
        pw = xb_tensor_alloc(XB_F64, 1, ps);
        for (int64_t b = 0; b < batch; b++)
            ((double *)pw.data)[b] = xb_xbar_power((int)rows, a.data, (const double *)v.data + b * rows);
        if (xb_npy_save(ppath, &pw)) goto fail;
    }
    if (json)
        printf("{\"rows\":%lld,\"cols\":%lld,\"batch\":%lld,\"method\":\"%s\",\"r_wire\":%.17g,\"r_driver\":%.17g,"
               "\"r_sense\":%.17g,\"read\":\"%s\",\"solve_ms\":%.4f,\"total_ms\":%.4f,\"pivot_min\":%.3e}\n",
               (long long)rows, (long long)cols, (long long)batch, xb_solve_method_name(method), c.r_wire_ohm,
               c.r_driver_ohm, c.r_sense_ohm, bwd ? "backward" : "forward", st.time_s * 1e3, (xb_time_s() - t0) * 1e3, st.pivot_min);
    else
        printf("solve: %lld x %lld tile, %s%s, %.3f ms%s%s%s%s\n", (long long)rows, (long long)cols,
               xb_solve_method_name(method), bwd ? ", backward read" : "", st.time_s * 1e3, opath ? "; wrote " : "", opath ? opath : "",
               epath ? "; wrote " : "", epath ? epath : "");
    ret = 0;
fail:
    if (ret) cli_fail("solve");
    xb_tensor_free(&g);
    xb_tensor_free(&v);
    xb_tensor_free(&e);
    xb_tensor_free(&i);
    xb_tensor_free(&a);
    xb_tensor_free(&pw);
    return ret;
}
