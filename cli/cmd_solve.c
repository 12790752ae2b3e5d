/* cmd_solve.c -- `xbar solve`: a crossbar tile's output currents (and effective matrix) from its
 * conductances, input voltages and wire/driver/sense resistances.  The circuit: include/xb_solve.h.
 * --backward reads the tile transposed (columns driven, rows sensed): E is then Eb (cols, rows) and
 * V is (batch, cols). */
#include "cli.h"
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
        {"json", XF_BOOL, NULL, NULL, "print one JSON object with shapes and timings"},
    };
    const int nf = sizeof f / sizeof *f;
    const char *summary = "exact crossbar circuit solve: output currents I = V E and the effective matrix E";
    int rc = xf_parse("solve", summary, f, nf, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
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
