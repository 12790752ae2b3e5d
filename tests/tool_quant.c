/*
 * tool_quant.c -- the C half of tests/ref_quant.py: applies one quantizer of include/xb_quant.h to an array
 * read from a .npy file and writes what PyTorch must agree with, as .npy files in a directory.
 *
 *   tool_quant weight --kind NAME --bits B [--per-channel] [--delta D] [--stochastic SEED COUNTER]
 *                     --in W.npy --out DIR
 *       W: float32 (rows, k).  Writes DIR/wq.npy, code.npy, ste.npy (rows, k) and scale.npy (float32:
 *       (rows, scales per row) per channel, else (scales per row)).
 *   tool_quant act --kind NAME --bits B --clip C --in X.npy --dy DY.npy --out DIR
 *       X, DY: float32, any shape.  Writes DIR/y.npy, dx.npy (float32, X's shape), mask.npy (uint8),
 *       grid.npy (float32: step, lo, hi) and stats.npy (float64: clipped count, d alpha).
 *
 * NAME: a weight kind (none uniform binary ternary ternary-sym ternary-asym dorefa) or an activation kind
 * (uniform pact dorefa ternary signed).  Exit 1 with the library's message on an error, 2 on bad usage.
 */
#include "xbar.h"

#include <stdlib.h>
#include <string.h>

static void die(const char *what) {
    fprintf(stderr, "tool_quant: %s: %s\n", what, xb_last_error());
    exit(1);
}

static int usage(const char *why) {
    fprintf(stderr, "tool_quant: %s\nusage: tool_quant weight --kind NAME --bits B [--per-channel] [--delta D] "
                    "[--stochastic SEED COUNTER] --in W.npy --out DIR\n"
                    "       tool_quant act --kind NAME --bits B --clip C --in X.npy --dy DY.npy --out DIR\n", why);
    return 2;
}

static int lookup(const char *name, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

static void save(const char *dir, const char *name, xb_dtype dt, int ndim, const int64_t *shape, void *data) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    xb_tensor t = {.dtype = dt, .ndim = ndim, .shape = {1, 1, 1, 1}, .data = data};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    if (xb_npy_save(path, &t)) die(path);
}

static xb_tensor load_f32(const char *path) {
    xb_tensor t;
    if (xb_npy_load(path, &t)) die(path);
    if (t.dtype != XB_F32) {
        fprintf(stderr, "tool_quant: %s: float32 wanted, not %s\n", path, xb_dtype_name(t.dtype));
        exit(1);
    }
    return t;
}

static int weight(const char *kind, int bits, int per_channel, double delta, int stochastic, uint64_t seed,
                  uint64_t counter, const char *in, const char *out) {
    int k = lookup(kind, xb_qw_names, XB_QW_COUNT);
    if (k < 0) return usage("unknown weight kind");
    xb_qw_spec s = {.kind = (xb_qw_kind)k, .bits = bits, .per_channel = per_channel, .stochastic = stochastic,
                    .delta = delta};
    if (xb_qw_check(&s, "tool_quant")) die("spec");
    xb_tensor w = load_f32(in);
    if (w.ndim != 2) return usage("the weights must be 2-D (rows, k)");
    const int rows = (int)w.shape[0], cols = (int)w.shape[1], spr = xb_qw_scales_per_row(&s);
    const int64_t n = (int64_t)rows * cols, ns = (int64_t)(per_channel ? rows : 1) * spr;
    float *wq = xb_malloc(n * sizeof(float) + 1), *code = xb_malloc(n * sizeof(float) + 1);
    float *ste = xb_malloc(n * sizeof(float) + 1), *scale = xb_malloc(ns * sizeof(float) + 1);
    if (xb_qw_apply(&s, rows, cols, w.data, wq, code, scale, ste, seed, counter)) die("xb_qw_apply");
    save(out, "wq.npy", XB_F32, 2, w.shape, wq);
    save(out, "code.npy", XB_F32, 2, w.shape, code);
    save(out, "ste.npy", XB_F32, 2, w.shape, ste);
    int64_t sshape[2] = {per_channel ? rows : spr, spr};
    save(out, "scale.npy", XB_F32, per_channel ? 2 : 1, sshape, scale);
    xb_free(wq); xb_free(code); xb_free(ste); xb_free(scale);
    xb_tensor_free(&w);
    return 0;
}

static int act(const char *kind, int bits, float clip, const char *in, const char *dyp, const char *out) {
    int k = lookup(kind, xb_qa_names, XB_QA_COUNT);
    if (k < 0) return usage("unknown activation kind");
    if (bits < (k == XB_QA_SIGNED ? 2 : 1) && k != XB_QA_TERNARY) return usage("--bits out of range");
    if (!(clip > 0)) return usage("--clip must be > 0");
    xb_tensor x = load_f32(in), dy = load_f32(dyp);
    const int64_t n = xb_tensor_numel(&x);
    if (xb_tensor_numel(&dy) != n) return usage("--dy must have --in's size");
    float step, lo, hi;
    xb_qa_grid((xb_qa_kind)k, bits, clip, &step, &lo, &hi);
    float *y = xb_malloc(n * sizeof(float) + 1), *dx = xb_malloc(n * sizeof(float) + 1);
    uint8_t *mask = xb_malloc(n + 1);
    double stats[2];
    stats[0] = (double)xb_qa_forward(n, x.data, step, lo, hi, y, mask);
    stats[1] = xb_qa_backward(n, mask, dy.data, dx);
    save(out, "y.npy", XB_F32, x.ndim, x.shape, y);
    save(out, "dx.npy", XB_F32, x.ndim, x.shape, dx);
    save(out, "mask.npy", XB_U8, x.ndim, x.shape, mask);
    float grid[3] = {step, lo, hi};
    int64_t three = 3, two = 2;
    save(out, "grid.npy", XB_F32, 1, &three, grid);
    save(out, "stats.npy", XB_F64, 1, &two, stats);
    xb_free(y); xb_free(dx); xb_free(mask);
    xb_tensor_free(&x);
    xb_tensor_free(&dy);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage("a mode is required (weight or act)");
    const char *mode = argv[1], *kind = NULL, *in = NULL, *out = NULL, *dy = NULL;
    int bits = 0, per_channel = 0, stochastic = 0;
    double delta = 0.7, clip = 0;
    uint64_t seed = 0, counter = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--per-channel")) { per_channel = 1; continue; }
        if (!strcmp(a, "--stochastic")) {
            if (i + 2 >= argc) return usage("--stochastic needs SEED COUNTER");
            stochastic = 1;
            seed = strtoull(argv[i + 1], NULL, 10);
            counter = strtoull(argv[i + 2], NULL, 10);
            i += 2;
            continue;
        }
        if (i + 1 >= argc) return usage("a flag needs a value");
        const char *v = argv[++i];
        if (!strcmp(a, "--kind")) kind = v;
        else if (!strcmp(a, "--bits")) bits = atoi(v);
        else if (!strcmp(a, "--delta")) delta = atof(v);
        else if (!strcmp(a, "--clip")) clip = atof(v);
        else if (!strcmp(a, "--in")) in = v;
        else if (!strcmp(a, "--dy")) dy = v;
        else if (!strcmp(a, "--out")) out = v;
        else return usage("unknown flag");
    }
    if (!kind || !in || !out) return usage("--kind, --in and --out are required");
    if (!strcmp(mode, "weight")) return weight(kind, bits, per_channel, delta, stochastic, seed, counter, in, out);
    if (!strcmp(mode, "act")) return dy ? act(kind, bits, (float)clip, in, dy, out) : usage("--dy is required");
    return usage("the mode is weight or act");
}
