/* cmd_neat.c -- `xbar neat`: NEAT's analysis of a network on 1T-1R crossbars (include/xb_neat.h, docs/neat.md):
 * the cut-off conductance per gate voltage, each layer's weight cut-off and share of weights in the linear range,
 * the heterogeneous gate voltages (written as a config with --write-hw), and one-shot clipping (--clip-out). */
#include "cli.h"
#include "xb_neat.h"
#include "xb_prune.h"

#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>

#define MAX_VG 64

static int parse_grid_(const char *s, double *v, int *n) {
    *n = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        char *end;
        if (*n == MAX_VG) return -1;
        v[*n] = strtod(t, &end);
        if (end == t || *end) return -1;
        (*n)++;
    }
    return *n > 0 ? 0 : -1;
}

int cmd_neat(int argc, char **argv) {
    xf_flag f[] = {
        {"model", XF_STR, NULL, NULL, "zoo name or model .cfg file", 1},
        {"weights", XF_STR, NULL, NULL, "weights .safetensors (default: the model's random initialization)"},
        {"hw", XF_STR, NULL, NULL, "hardware config with [cell] type = 1t1r (e.g. configs/hw/neat-1t1r-64.cfg)", 1},
        {"tolerance", XF_DOUBLE, "0.025", "0..1", "the tolerance metric's threshold (NEAT: 2.5%)"},
        {"v-gates", XF_STR, "0.6,0.7,0.75,0.8,0.85,0.9,1.0,1.1,1.2,1.3", NULL, "gate voltages (V, increasing): the "
         "cut-off table and the choices of the heterogeneous rule"},
        {"percentile", XF_DOUBLE, "99", "0..100", "heterogeneous rule: the percentile of |w| a layer's gate voltage must "
         "keep in the linear range"},
        {"write-hw", XF_STR, NULL, NULL, "write the config with the heterogeneous gate voltages (v_gate_layers) here"},
        {"clip-out", XF_STR, NULL, NULL, "one-shot clipping: write DIR/weights.safetensors (each layer clipped to its "
         "weight cut-off at the config's gate voltage) and DIR/wct.json (the pre-clip mapping scales for xbar eval "
         "--w-scales)"},
        {"w-scales", XF_STR, NULL, NULL, "the mapping scales of a constrained run (its wct.json, as xbar eval "
         "--w-scales): the cut-offs and shares are then those of the weights mapped with them"},
        {"json", XF_BOOL, NULL, NULL, "print one JSON object"},
    };
    const int n = sizeof f / sizeof *f;
    int rc = xf_parse("neat", "NEAT's analysis of a network on 1T-1R crossbars", f, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    double vg[MAX_VG];
    int nv;
    if (parse_grid_(xf_get(f, n, "v-gates")->s, vg, &nv)) {
        fprintf(stderr, "xbar neat: error: --v-gates '%s' is not a list of up to %d voltages\nHINT: e.g. --v-gates "
                        "0.7,0.8,0.9,1.0\n", xf_get(f, n, "v-gates")->s, MAX_VG);
        return 2;
    }
    const double tol = xf_get(f, n, "tolerance")->d, pct = xf_get(f, n, "percentile")->d;
    const int json = (int)xf_get(f, n, "json")->i;
    const char *wp = xf_get(f, n, "weights")->s, *whw = xf_get(f, n, "write-hw")->s, *clip = xf_get(f, n, "clip-out")->s;
    xb_hw hw;
    xb_model *m = NULL;
    xb_neat_layer *L = NULL;
    double *gc = NULL, *bounds = NULL, *scales = NULL;
    xb_wct *w = NULL;
    int ret = 1;
    if (xb_hw_load(xf_get(f, n, "hw")->s, &hw) || xb_model_load(xf_get(f, n, "model")->s, 1, &m) ||
        (wp && xb_model_load_weights(m, wp)))
        goto done;
    const int nm = xb_model_n_mapped(m);
    L = calloc((size_t)nm + 1, sizeof *L);
    gc = calloc((size_t)nv, sizeof *gc);
    bounds = calloc((size_t)nm + 1, sizeof *bounds);
    if (!L || !gc || !bounds) { xb_errorf(XB_ERR_NOMEM, "out of memory"); goto done; }
    const char *wsp = xf_get(f, n, "w-scales")->s;
    if (wsp) {
        if (clip) { xb_errorf(XB_ERR_ARG, "--clip-out clips with the weights' own scales: not with --w-scales"); goto done; }
        scales = calloc((size_t)nm + 1, sizeof *scales);
        if (!scales || xb_wct_scales_load(wsp, m, scales)) goto done;
    }
    if (xb_neat_layers_scaled(&hw, m, tol, vg, nv, pct, scales, L)) goto done;
    int none[MAX_VG];
    for (int k = 0; k < nv; k++) {
        xb_cell c = hw.cell;
        c.v_gate_v = vg[k];
        none[k] = xb_cell_g_cut(&c, hw.v_read_v, tol, hw.g_min_s, hw.g_max_s, &gc[k]);
    }
    if (json) {
        printf("{\"hw\":\"%s\",\"tolerance\":%.9g,\"v_read_v\":%.9g,\"g_min_s\":%.9g,\"g_max_s\":%.9g,\"percentile\":%.9g,"
               "\"g_cut\":[", hw.path, tol, hw.v_read_v, hw.g_min_s, hw.g_max_s, pct);
        for (int k = 0; k < nv; k++)
            printf("%s{\"v_gate_v\":%.9g,\"g_cut_s\":%.9g,\"no_cut\":%s}", k ? "," : "", vg[k], gc[k], none[k] ? "true" : "false");
        printf("],\"layers\":[");
        for (int i = 0; i < nm; i++)
            printf("%s{\"layer\":\"%s\",\"digital\":%s,\"v_gate_v\":%.9g,\"g_cut_s\":%.9g,\"scale\":%.9g,\"w_cut\":%.9g,"
                   "\"linear_share\":%.9g,\"w_percentile\":%.9g,\"v_gate_hetero\":%.9g,\"hetero_covered\":%s}",
                   i ? "," : "", L[i].name, L[i].digital ? "true" : "false", L[i].v_gate_v, L[i].g_cut_s, L[i].scale,
                   L[i].w_cut, L[i].linear_share, L[i].w_pct, L[i].v_gate_hetero, L[i].hetero_covered ? "true" : "false");
        printf("]}\n");
    } else {
        printf("NEAT on %s: tolerance %.3g%%, read at %.3g V, G in [%.4g, %.4g] S\ncut-off conductance per gate voltage:\n",
               hw.path, 100 * tol, hw.v_read_v, hw.g_min_s, hw.g_max_s);
        for (int k = 0; k < nv; k++)
            printf("  V_g %5.2f V: G_cut %.4g S%s (%.0f%% of the range)\n", vg[k], gc[k], none[k] ? " (no cut-off)" : "",
                   100 * (gc[k] - hw.g_min_s) / (hw.g_max_s - hw.g_min_s));
        printf("%-24s %6s %10s %8s %8s %9s %10s\n", "layer", "V_g", "G_cut(S)", "W_cut/s", "linear", "p|w|/s", "hetero V_g");
        for (int i = 0; i < nm; i++)
            printf("%-24s %6.2f %10.4g %8.3f %7.1f%% %9.3f %9.2f%s%s\n", L[i].name, L[i].v_gate_v, L[i].g_cut_s,
                   L[i].w_cut / L[i].scale, 100 * L[i].linear_share, L[i].w_pct / L[i].scale, L[i].v_gate_hetero,
                   L[i].hetero_covered ? "" : "!", L[i].digital ? " (digital)" : "");
        printf("(p|w|/s: the %g-th percentile of |w| over the mapping scale; '!': no grid voltage covers it)\n", pct);
    }
    if (whw) {
        xb_hw h = hw;
        h.n_vgate = 0;
        for (int i = 0; i < nm; i++) {
            if (L[i].digital) continue;
            if (h.n_vgate == XB_HW_MAX_DIGITAL) {
                xb_errorf(XB_ERR_UNSUPPORTED, "--write-hw: more than %d mapped layers. HINT: v_gate_layers holds %d "
                          "entries; write the config by hand", XB_HW_MAX_DIGITAL, XB_HW_MAX_DIGITAL);
                goto done;
            }
            snprintf(h.vgate_layer[h.n_vgate], sizeof h.vgate_layer[0], "%s", L[i].name);
            h.vgate_v[h.n_vgate++] = L[i].v_gate_hetero;
        }
        FILE *o = fopen(whw, "w");
        if (!o) { xb_errorf(XB_ERR_IO, "%s: cannot write. HINT: check the directory", whw); goto done; }
        fprintf(o, "# NEAT's heterogeneous gate voltages (xbar neat --percentile %g --tolerance %g) on %s\n", pct, tol, hw.path);
        xb_hw_print(&h, o, 0);
        if (fclose(o)) { xb_errorf(XB_ERR_IO, "%s: write failed", whw); goto done; }
        if (!json) printf("wrote %s\n", whw);
    }
    if (clip) {
        char path[1100];
        if (mkdir(clip, 0777) && errno != EEXIST) { xb_errorf(XB_ERR_IO, "%s: cannot create the directory", clip); goto done; }
        for (int i = 0; i < nm; i++) bounds[i] = L[i].digital ? 1e30 : L[i].w_cut;
        if (xb_wct_init_bounds(m, bounds, &w)) goto done;
        const int64_t c = xb_wct_clip(w, m);
        snprintf(path, sizeof path, "%s/weights.safetensors", clip);
        if (xb_model_save_weights(m, path)) goto done;
        snprintf(path, sizeof path, "%s/wct.json", clip);
        if (xb_wct_save(w, m, path)) goto done;
        if (!json) printf("clipped %lld weights; wrote %s/weights.safetensors and %s/wct.json (evaluate with --w-scales "
                          "%s/wct.json)\n", (long long)c, clip, clip, clip);
    }
    ret = 0;
done:
    if (ret) cli_fail("neat");
    xb_wct_free(w);
    free(L);
    free(gc);
    free(bounds);
    free(scales);
    xb_model_free(m);
    return ret;
}
