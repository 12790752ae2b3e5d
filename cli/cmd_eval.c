/* cmd_eval.c -- `xbar eval` (test accuracy of weights) and `xbar infer` (logits of an .npy batch), both
 * ideal (float) or, with --hw FILE.cfg, on simulated crossbar hardware (include/xb_xbar.h). */
#include "cli.h"

#include <stdlib.h>
#include "xb_xbar.h"

#include <string.h>

/* --hw-report: the resolved config and how every layer maps onto tiles, without evaluating. */
static int hw_report(xb_model *m, const xb_hw *hw, int json) {
    xb_xnet *xn;
    if (xb_xnet_init(hw, m, &xn) != XB_OK) return cli_fail("eval");
    if (json) {
        printf("{\"model\":\"%s\",\"hw\":", xb_model_name(m));
        xb_hw_print(hw, stdout, 1);
        printf(",\"layers\":[");
    } else {
        xb_hw_print(hw, stdout, 0);
        printf("\n# mapping of model %s\n# %-22s %9s %6s %7s %12s %7s\n", xb_model_name(m), "layer", "matrix", "tiles",
               "arrays", "cells", "util");
    }
    int64_t ta = 0, tc = 0, tu = 0;
    for (int i = 0; i < xb_xnet_n_layers(xn); i++) {
        xb_xlayer_stats s;
        xb_xnet_layer_stats(xn, i, &s);
        double util = s.cells_alloc ? (double)s.cells_used / (double)s.cells_alloc : 0;
        ta += s.arrays; tc += s.cells_alloc; tu += s.cells_used;
        if (json)
            printf("%s{\"name\":\"%s\",\"mapped\":%s,\"rows_out\":%d,\"k\":%d,\"groups\":%d,\"tiles\":%lld,"
                   "\"arrays\":%lld,\"cells_used\":%lld,\"cells_allocated\":%lld,\"utilization\":%.6f}", i ? "," : "",
                   s.name, s.mapped ? "true" : "false", s.rows_out, s.k, s.groups, (long long)s.tiles,
                   (long long)s.arrays, (long long)s.cells_used, (long long)s.cells_alloc, util);
        else {
            char mat[32];
            snprintf(mat, sizeof mat, "%dx%d", s.rows_out, s.k);
            if (s.mapped)
                printf("# %-22s %9s %6lld %7lld %12lld %6.1f%%\n", s.name, mat, (long long)s.tiles, (long long)s.arrays,
                       (long long)s.cells_alloc, 100 * util);
            else
                printf("# %-22s %9s   digital (float)\n", s.name, mat);
        }
    }
    if (json) printf("],\"arrays\":%lld,\"cells_allocated\":%lld,\"utilization\":%.6f}\n", (long long)ta, (long long)tc,
                     tc ? (double)tu / (double)tc : 0);
    else printf("# total: %lld arrays of %dx%d, %lld cells, utilization %.1f%%\n", (long long)ta, hw->rows, hw->cols,
                (long long)tc, tc ? 100.0 * (double)tu / (double)tc : 0);
    xb_xnet_free(xn);
    return 0;
}

/* eval --hw: software accuracy and K device seeds */
static int eval_hw(xb_model *m, const xb_hw *hw, const char *dir, xf_flag *f, int n) {
    xb_dataset test, train;
    int have_train = 0;
    if (xb_cifar_load(dir, XB_SPLIT_TEST, &test) != XB_OK) return cli_fail("eval");
    xb_xeval_opts o = xb_xeval_opts_default();
    o.seeds = (int)xf_get(f, n, "seeds")->i;
    o.seed = (uint64_t)xf_get(f, n, "seed")->i;
    o.limit = xf_get(f, n, "limit")->i;
    o.batch = (int)xf_get(f, n, "batch")->i;
    o.progress = !xf_get(f, n, "quiet")->i;
    o.software = !xf_get(f, n, "no-software")->i;
    o.calibration_images = (int)xf_get(f, n, "calibrate-limit")->i;
    o.adapt_bn = xf_get(f, n, "adapt-bn")->i;
    o.energy = (int)xf_get(f, n, "energy")->i;
    /* a quantized model (docs/quantization.md): each layer mapped at its own precision */
    xb_layer_precision *prec = calloc((size_t)xb_model_n_mapped(m) + 1, sizeof *prec);
    int pany = 0;
    if (!prec || cli_model_precisions(xf_get(f, n, "model")->s, m, hw, prec, &pany) != XB_OK) {
        free(prec); xb_dataset_free(&test);
        return cli_fail("eval");
    }
    if (!xf_get(f, n, "config-precision")->i && pany) {
        o.precisions = prec;
        if (o.progress) {
            fprintf(stderr, "xbar eval: a quantized model: each layer on the crossbars at its own precision (weight bits"
                            " / input bits; 0: the config's):");
            for (int i = 0; i < xb_model_n_mapped(m); i++) fprintf(stderr, " %d/%d", prec[i].weight_bits, prec[i].input_bits);
            fprintf(stderr, "\n");
        }
    }
    double *wsc = NULL; /* --w-scales: the clip scales of the weights before weight-constrained training */
    const char *wsp = xf_get(f, n, "w-scales")->s;
    if (wsp) {
        wsc = calloc((size_t)xb_model_n_mapped(m) + 1, sizeof *wsc);
        if (!wsc || xb_wct_scales_load(wsp, m, wsc) != XB_OK) {
            free(prec); free(wsc); xb_dataset_free(&test);
            return cli_fail("eval --w-scales");
        }
        o.w_scales = wsc;
    }
    if (o.adapt_bn > 0) { /* batchnorm statistics come from training images, never from the images scored */
        if (xb_cifar_load(dir, XB_SPLIT_TRAIN, &train) != XB_OK) {
            xb_dataset_free(&test);
            free(prec); free(wsc);
            return cli_fail("eval --adapt-bn");
        }
        have_train = 1;
        o.adapt_data = &train;
    } else if (xb_hw_needs_calibration(hw)) {
        /* ranges are calibrated on training images (never on the images being scored) */
        if (xb_cifar_load(dir, XB_SPLIT_TRAIN, &train) == XB_OK) have_train = 1;
        else fprintf(stderr, "xbar eval: note: no training split in %s (%s); calibrating on the first test images\n",
                     dir, xb_last_error());
    }
    xb_xeval_result r;
    xb_status s = xb_xeval_run(m, hw, &test, have_train ? &train : NULL, &o, &r);
    free(prec);
    free(wsc);
    if (have_train) xb_dataset_free(&train);
    xb_dataset_free(&test);
    if (s) return cli_fail("eval");
    xb_xeval_print(&r, hw, stdout, (int)xf_get(f, n, "json")->i);
    fflush(stdout);
    xb_xeval_print_warnings(&r, stderr, 0); /* also where a redirected report would hide them */
    xb_xeval_result_free(&r);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    xf_flag f[] = {
        {"model", XF_STR, NULL, NULL, "zoo name or model .cfg file", 1},
        {"weights", XF_STR, NULL, NULL, "weights .safetensors (PyTorch state_dict names)", 1},
        {"data", XF_STR, NULL, NULL, "CIFAR-10/100 binary directory (else $XBAR_DATA, else ../shared/data/cifar10)"},
        {"limit", XF_INT, "0", "0..", "evaluate the first N test images (0: all)"},
        {"batch", XF_INT, "256", "1..65536", "batch size"},
        {"threads", XF_INT, NULL, "1..1024", "threads (default: all cores)"},
        {"json", XF_BOOL, NULL, NULL, "print one JSON object"},
        {"quiet", XF_BOOL, NULL, NULL, "no progress bar"},
        {"hw", XF_STR, NULL, NULL, "hardware config (configs/hw/*.cfg, docs/hardware.md): evaluate on crossbars"},
        {"seeds", XF_INT, "1", "1..100000", "--hw: device samples (Monte-Carlo seeds); accuracy is mean +- std"},
        {"seed", XF_INT, "1", "0..", "--hw: first device seed (sample i uses seed + i)"},
        {"calibrate-limit", XF_INT, "0", "0..100000",
         "--hw: images that calibrate input/ADC ranges (0: the config's calibration_images)"},
        {"no-software", XF_BOOL, NULL, NULL, "--hw: skip the float evaluation"},
        {"adapt-bn", XF_INT, "0", "0..", "--hw: batchnorm adaptation: before testing each device sample, recompute "
                                        "the batchnorm running statistics through the hardware on the first N "
                                        "training images (0: off)"},
        {"hw-report", XF_BOOL, NULL, NULL, "--hw: print the resolved config and the tile mapping, then stop"},
        {"energy", XF_INT, "64", "0..1000000", "--hw: the energy, latency and area per image of the first device sample "
                                               "too, counted from the test images (a network that runs folded: from its "
                                               "first 64; docs/energy.md); the value is the sample stride of the arrays' "
                                               "V^T A V (1: every input vector, exact; 0: no energy report)"},
        {"config-precision", XF_BOOL, NULL, NULL, "--hw with a quantized model: map every layer with the config's "
                                                  "weight and input bits, not the model's per-layer precisions"},
        {"rearrange", XF_CHOICE, "none", "none|round-robin|sorted", "--hw: the config's [mapping] rearrange, set here "
                                                                   "(crossbar column rearrangement; docs/pruning.md)"},
        {"pack", XF_CHOICE, "none", "none|columns|rows", "--hw: the config's [mapping] pack, set here (structured-sparse "
                                                        "layers packed into fewer tiles; docs/pruning.md)"},
        {"w-scales", XF_STR, NULL, NULL, "--hw: map every layer with the clip scale its weights had before weight-"
                                         "constrained training (the wct.json of that run; docs/pruning.md)"},
    };
    int n = sizeof f / sizeof *f;
    int rc = xf_parse("eval", "test accuracy of trained weights (ideal, or on crossbars with --hw)", f, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    xf_flag *th = xf_get(f, n, "threads");
    xb_set_threads(th->set ? (int)th->i : cli_default_threads());
    const char *hwpath = xf_get(f, n, "hw")->s;
    if (!hwpath && (xf_get(f, n, "seeds")->set || xf_get(f, n, "seed")->set || xf_get(f, n, "calibrate-limit")->set ||
                    xf_get(f, n, "adapt-bn")->i || xf_get(f, n, "no-software")->i || xf_get(f, n, "hw-report")->i ||
                    xf_get(f, n, "energy")->set)) {
        fprintf(stderr, "xbar eval: error: --seeds, --seed, --calibrate-limit, --adapt-bn, --no-software, --hw-report and "
                        "--energy "
                        "need --hw\n"
                        "HINT: add --hw configs/hw/ideal.cfg (or another preset)\n");
        return 2;
    }
    xb_hw hw;
    if (hwpath && xb_hw_load(hwpath, &hw) != XB_OK) return cli_fail("eval");
    if (hwpath && xf_get(f, n, "rearrange")->set) hw.rearrange = (int)xf_get(f, n, "rearrange")->i;
    if (hwpath && xf_get(f, n, "pack")->set) hw.pack = (int)xf_get(f, n, "pack")->i;
    if (!hwpath && (xf_get(f, n, "rearrange")->set || xf_get(f, n, "pack")->set || xf_get(f, n, "w-scales")->s)) {
        fprintf(stderr, "xbar eval: error: --rearrange, --pack and --w-scales need --hw\n");
        return 2;
    }
    xb_model *m;
    if (hwpath && xf_get(f, n, "hw-report")->i) {
        if (xb_model_load(xf_get(f, n, "model")->s, 1, &m) != XB_OK) return cli_fail("eval");
        int ret = hw_report(m, &hw, (int)xf_get(f, n, "json")->i);
        xb_model_free(m);
        return ret;
    }
    char dir[600];
    if (xb_data_find(xf_get(f, n, "data")->s, dir, sizeof dir) != XB_OK) return cli_fail("eval");
    if (xb_model_load(xf_get(f, n, "model")->s, 1, &m) != XB_OK) return cli_fail("eval");
    if (xb_model_load_weights(m, xf_get(f, n, "weights")->s) != XB_OK) { xb_model_free(m); return cli_fail("eval"); }
    if (hwpath) {
        int ret = eval_hw(m, &hw, dir, f, n);
        xb_model_free(m);
        return ret;
    }
    xb_dataset test;
    if (xb_cifar_load(dir, XB_SPLIT_TEST, &test) != XB_OK) { xb_model_free(m); return cli_fail("eval"); }
    xb_eval_result r;
    xb_status s = xb_evaluate(m, &test, xf_get(f, n, "limit")->i, (int)xf_get(f, n, "batch")->i,
                              !xf_get(f, n, "quiet")->i, &r);
    xb_dataset_free(&test);
    xb_model_free(m);
    if (s) return cli_fail("eval");
    if (xf_get(f, n, "json")->i)
        printf("{\"model\":\"%s\",\"images\":%lld,\"correct\":%lld,\"accuracy\":%.6f,\"loss\":%.6f,\"seconds\":%.3f,"
               "\"images_per_s\":%.2f}\n", xf_get(f, n, "model")->s, (long long)r.n, (long long)r.correct,
               r.accuracy, r.loss, r.seconds, (double)r.n / r.seconds);
    else
        printf("accuracy %.2f%% (%lld/%lld), loss %.4f, %.2f s (%.0f img/s)\n", 100 * r.accuracy, (long long)r.correct,
               (long long)r.n, r.loss, r.seconds, (double)r.n / r.seconds);
    return 0;
}

int cmd_infer(int argc, char **argv) {
    xf_flag f[] = {
        {"model", XF_STR, NULL, NULL, "zoo name or model .cfg file", 1},
        {"weights", XF_STR, NULL, NULL, "weights .safetensors", 1},
        {"input", XF_STR, NULL, NULL, "float32 .npy of shape N x C x H x W, used as given (no normalization)", 1},
        {"out", XF_STR, NULL, NULL, "float32 .npy of N x classes logits", 1},
        {"batch", XF_INT, "256", "1..65536", "batch size"},
        {"threads", XF_INT, NULL, "1..1024", "threads (default: all cores)"},
        {"hw", XF_STR, NULL, NULL, "hardware config: logits of the network on crossbars (one device sample)"},
        {"seed", XF_INT, "1", "0..", "--hw: device seed"},
        {"calibrate-limit", XF_INT, "0", "0..100000",
         "--hw: the first N inputs calibrate input/ADC ranges (0: the config's calibration_images)"},
    };
    int n = sizeof f / sizeof *f;
    int rc = xf_parse("infer", "logits for an .npy batch of images (eval mode)", f, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    xf_flag *th = xf_get(f, n, "threads");
    xb_set_threads(th->set ? (int)th->i : cli_default_threads());
    const char *in = xf_get(f, n, "input")->s;
    const char *hwpath = xf_get(f, n, "hw")->s;
    if (!hwpath && (xf_get(f, n, "seed")->set || xf_get(f, n, "calibrate-limit")->set)) {
        fprintf(stderr, "xbar infer: error: --seed and --calibrate-limit need --hw\nHINT: add --hw configs/hw/ideal.cfg\n");
        return 2;
    }
    xb_hw hw;
    if (hwpath && xb_hw_load(hwpath, &hw) != XB_OK) return cli_fail("infer");
    xb_model *m;
    if (xb_model_load(xf_get(f, n, "model")->s, 1, &m) != XB_OK) return cli_fail("infer");
    if (xb_model_load_weights(m, xf_get(f, n, "weights")->s) != XB_OK) { xb_model_free(m); return cli_fail("infer"); }
    xb_tensor x;
    if (xb_npy_load(in, &x) != XB_OK) { xb_model_free(m); return cli_fail("infer"); }
    int c, h, w, k = xb_model_classes(m);
    xb_model_input_shape(m, &c, &h, &w);
    if (x.dtype != XB_F32 || x.ndim != 4 || x.shape[1] != c || x.shape[2] != h || x.shape[3] != w || x.shape[0] < 1) {
        char got[64];
        xb_shape_str(x.ndim, x.shape, got, sizeof got);
        xb_errorf(XB_ERR_SHAPE, "%s: array is %s %s, the model needs float32 N x %d x %d x %d. HINT: save it with "
                  "np.save(path, x.astype(np.float32)) in NCHW order", in, xb_dtype_name(x.dtype), got, c, h, w);
        xb_tensor_free(&x);
        xb_model_free(m);
        return cli_fail("infer");
    }
    int64_t N = x.shape[0];
    int batch = (int)xf_get(f, n, "batch")->i;
    int64_t ys[2] = {N, k};
    xb_tensor y = xb_tensor_alloc(XB_F32, 2, ys);
    xb_xnet *xn = NULL;
    xb_status s = XB_OK;
    if (hwpath) {
        s = xb_xnet_init(&hw, m, &xn);
        if (!s) s = xb_xnet_program(xn, (uint64_t)xf_get(f, n, "seed")->i);
        if (!s && xb_xnet_needs_calibration(xn)) {
            int64_t nc = xf_get(f, n, "calibrate-limit")->i ? xf_get(f, n, "calibrate-limit")->i : hw.calibration_images;
            if (nc > N) nc = N;
            s = xb_xnet_calibrate(xn, (int)nc, (const float *)x.data);
        }
        /* a fixed linear map per layer runs folded into the weights, at float speed */
        if (!s) {
            if (xb_xnet_foldable(xn)) s = xb_xnet_fold(xn, 1);
            else xb_xnet_attach(xn);
        }
    }
    if (!s) s = xb_model_set_batch(m, batch < N ? batch : (int)N);
    xb_model_train_mode(m, 0);
    for (int64_t i = 0; !s && i < N; i += batch) {
        int nb = (int)(N - i < batch ? N - i : batch);
        s = xb_model_forward(m, nb, (const float *)x.data + i * c * h * w, (float *)y.data + i * k, NULL);
    }
    if (!s) s = xb_npy_save(xf_get(f, n, "out")->s, &y);
    xb_xnet_free(xn);
    xb_tensor_free(&x);
    xb_tensor_free(&y);
    xb_model_free(m);
    return s ? cli_fail("infer") : 0;
}
