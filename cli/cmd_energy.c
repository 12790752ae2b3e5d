/* cmd_energy.c -- `xbar energy`: energy, latency and area per image of a network on the hardware of a config
 * (include/xb_energy.h, docs/energy.md).  Without --data the counts are nominal ([energy] input_density); with
 * --data they come from the first --limit test images run through the programmed crossbars.  --pe and --tim
 * cost two other accelerators instead: a zero-skipping digital PE array and count-based ternary arrays. */
#include "cli.h"
#include "xb_energy.h"

#include <stdlib.h>
#include <string.h>

/* Calibrates (when the config needs it) on the first training images (the test images when there is no training
 * split), then runs `limit` test images through the attached network with the probe on. */
static xb_status measure_(xb_xnet *xn, xb_model *m, const xb_hw *hw, const char *dir, int64_t limit, int batch,
                          int stride, int progress, int64_t *images) {
    xb_dataset test, train;
    xb_status st = xb_cifar_load(dir, XB_SPLIT_TEST, &test);
    if (st) return st;
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    const int64_t n = limit > 0 && limit < test.n ? limit : test.n;
    float *x = xb_malloc((size_t)batch * c * h * w * sizeof(float));
    int64_t *idx = xb_malloc((size_t)batch * sizeof(int64_t));
    if (xb_xnet_needs_calibration(xn)) {
        const int have_train = xb_cifar_load(dir, XB_SPLIT_TRAIN, &train) == XB_OK;
        const xb_dataset *cd = have_train ? &train : &test;
        int ncal = hw->calibration_images < cd->n ? hw->calibration_images : (int)cd->n;
        float *xc = xb_malloc((size_t)ncal * c * h * w * sizeof(float));
        int64_t *ci = xb_malloc((size_t)ncal * sizeof(int64_t));
        for (int i = 0; i < ncal; i++) ci[i] = i;
        xb_dataset_batch(cd, ci, ncal, 0, 0, NULL, xc, NULL);
        st = xb_xnet_calibrate(xn, ncal, xc);
        xb_free(xc);
        xb_free(ci);
        if (have_train) xb_dataset_free(&train);
    }
    if (!st) st = xb_model_set_batch(m, batch);
    if (!st) st = xb_xnet_energy_probe(xn, 1, stride);
    xb_model_train_mode(m, 0);
    xb_xnet_attach(xn);
    xb_progress pb;
    xb_progress_start(&pb, "energy ", n, progress);
    for (int64_t s = 0, nb; s < n && !st; s += nb) {
        nb = n - s < batch ? n - s : batch;
        for (int i = 0; i < nb; i++) idx[i] = s + i;
        xb_dataset_batch(&test, idx, (int)nb, 0, 0, NULL, x, NULL);
        st = xb_model_forward(m, (int)nb, x, NULL, NULL);
        xb_progress_update(&pb, s + nb, NULL);
    }
    xb_progress_end(&pb, NULL);
    xb_xnet_detach(xn);
    xb_xnet_energy_probe(xn, 0, 1);
    xb_free(x);
    xb_free(idx);
    xb_dataset_free(&test);
    *images = n;
    return st;
}

/* --pe / --tim: the model with the zero-skipping accelerator's or the ternary arrays' operator over the first --limit
 * test images (the TiM arrays' outputs are the network's: its accuracy comes with the report). */
static int energy_digital_(xf_flag *f, int n, const xb_hw *hw, int tim) {
    xb_model *m;
    if (xb_model_load(xf_get(f, n, "model")->s, 1, &m) != XB_OK) return cli_fail("energy");
    const char *wp = xf_get(f, n, "weights")->s;
    char dir[600];
    xb_dataset test;
    int have_test = 0, ret = 1;
    xb_pe_probe *pp = NULL;
    xb_tim_probe *tp = NULL;
    float *x = NULL;
    int64_t *idx = NULL;
    int32_t *lab = NULL;
    if (wp && xb_model_load_weights(m, wp) != XB_OK) goto done;
    if (xb_data_find(xf_get(f, n, "data")->s, dir, sizeof dir) != XB_OK) goto done;
    if (xb_cifar_load(dir, XB_SPLIT_TEST, &test) != XB_OK) goto done;
    have_test = 1;
    const int batch = (int)xf_get(f, n, "batch")->i;
    const int64_t limit = xf_get(f, n, "limit")->i, nimg = limit < test.n ? limit : test.n;
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    x = xb_malloc((size_t)batch * c * h * w * sizeof(float));
    idx = xb_malloc((size_t)batch * sizeof(int64_t));
    lab = xb_malloc((size_t)batch * sizeof(int32_t));
    if (xb_model_set_batch(m, batch)) goto done;
    if (tim ? xb_tim_probe_attach(m, &hw->energy, (uint64_t)xf_get(f, n, "seed")->i, &tp)
            : xb_pe_probe_attach(m, &hw->energy, &pp))
        goto done;
    xb_model_train_mode(m, 0);
    xb_progress pb;
    xb_progress_start(&pb, "energy ", nimg, !xf_get(f, n, "quiet")->i);
    xb_status st = XB_OK;
    int64_t correct = 0;
    for (int64_t s = 0, nb; s < nimg && !st; s += nb) {
        nb = nimg - s < batch ? nimg - s : batch;
        for (int i = 0; i < nb; i++) idx[i] = s + i;
        xb_dataset_batch(&test, idx, (int)nb, 0, 0, NULL, x, lab);
        st = xb_model_forward(m, (int)nb, x, NULL, NULL);
        int ok = 0;
        if (!st) xb_model_loss(m, (int)nb, lab, 0, &ok);
        correct += ok;
        xb_progress_update(&pb, s + nb, NULL);
    }
    xb_progress_end(&pb, NULL);
    if (st) goto done;
    const int json = (int)xf_get(f, n, "json")->i;
    if (tim) {
        xb_tim_report r;
        if (xb_tim_report_make(tp, nimg, &r)) goto done;
        xb_tim_report_print(&r, &hw->energy, (double)correct / (double)nimg, stdout, json);
        xb_tim_report_free(&r);
    } else {
        xb_pe_report r;
        if (xb_pe_report_make(pp, nimg, &r)) goto done;
        xb_pe_report_print(&r, &hw->energy, stdout, json);
        xb_pe_report_free(&r);
    }
    if (json) fputc('\n', stdout);
    ret = 0;
done:
    if (ret) cli_fail("energy");
    xb_pe_probe_detach(pp);
    xb_tim_probe_detach(tp);
    xb_free(x);
    xb_free(idx);
    xb_free(lab);
    if (have_test) xb_dataset_free(&test);
    xb_model_free(m);
    return ret;
}

/* The crossbar report of one model (weights may be NULL: its random initialization), nominal or counted from the
 * test images of dir. */
static xb_status crossbar_report_(xf_flag *f, int n, const xb_hw *hw, const char *model, const char *wp,
                                  const char *dir, xb_energy_report *r) {
    xb_model *m;
    xb_status st = xb_model_load(model, 1, &m);
    if (st) return st;
    xb_xnet *xn = NULL;
    int64_t images = 0;
    int pany = 0;
    const int own = !xf_get(f, n, "config-precision")->i;
    xb_layer_precision *prec = xb_calloc(((size_t)xb_model_n_mapped(m) + 1) * sizeof *prec);
    if (wp) st = xb_model_load_weights(m, wp);
    /* a quantized model (docs/quantization.md): each layer at its own weight and input bits (slices, planes) */
    if (!st) st = cli_model_precisions(model, m, hw, prec, &pany);
    if (!st && pany && own && !xf_get(f, n, "quiet")->i) {
        fprintf(stderr, "xbar energy: %s is quantized: each layer at its own precision (weight bits / input bits; 0: the "
                        "config's):", model);
        for (int i = 0; i < xb_model_n_mapped(m); i++) fprintf(stderr, " %d/%d", prec[i].weight_bits, prec[i].input_bits);
        fprintf(stderr, "\n");
    }
    if (!st) st = xb_xnet_init_ex(hw, m, pany && own ? prec : NULL, &xn);
    if (!st) st = xb_xnet_keep_power(xn, 1);
    if (!st) st = xb_xnet_program(xn, (uint64_t)xf_get(f, n, "seed")->i);
    if (!st && dir)
        st = measure_(xn, m, hw, dir, xf_get(f, n, "limit")->i, (int)xf_get(f, n, "batch")->i,
                      (int)xf_get(f, n, "stride")->i, !xf_get(f, n, "quiet")->i, &images);
    if (!st) st = xb_energy_report_make(xn, m, images, r);
    if (!st && !wp)
        fprintf(stderr, "xbar energy: note: %s has no --weights; the conductances follow its random initialization\n",
                model);
    xb_free(prec);
    xb_xnet_free(xn);
    xb_model_free(m);
    return st;
}

int cmd_energy(int argc, char **argv) {
    xf_flag f[] = {
        {"model", XF_STR, NULL, NULL, "zoo name or model .cfg file", 1},
        {"hw", XF_STR, NULL, NULL, "hardware config (configs/hw/*.cfg; [arch] and [energy]: docs/energy.md); "
                                   "required but with --pe"},
        {"weights", XF_STR, NULL, NULL, "weights .safetensors (the conductances follow them; default: the model's "
                                        "random initialization)"},
        {"data", XF_STR, NULL, NULL, "count from the first --limit test images of this CIFAR directory (default: "
                                     "nominal counts, every input bit on with probability [energy] input_density)"},
        {"limit", XF_INT, "256", "1..", "--data: test images"},
        {"batch", XF_INT, "128", "1..65536", "--data: batch size"},
        {"stride", XF_INT, "1", "1..1000000", "--data: one input vector in STRIDE (hashed) of a layer enters the arrays' "
                                              "V^T A V (scaled up; 1 is exact); the other counts are always exact"},
        {"seed", XF_INT, "1", "0..", "device seed of the programmed conductances"},
        {"threads", XF_INT, NULL, "1..1024", "threads (default: all cores)"},
        {"json", XF_BOOL, NULL, NULL, "print one JSON object"},
        {"csv", XF_STR, NULL, NULL, "also write one CSV line per layer to this file"},
        {"quiet", XF_BOOL, NULL, NULL, "no progress bar"},
        {"pe", XF_BOOL, NULL, NULL, "the zero-skipping digital accelerator (Cnvlutin-like) of the config's [pe] "
                                    "section (defaults without --hw) instead of the crossbars; needs --data"},
        {"tim", XF_BOOL, NULL, NULL, "count-based ternary arrays (TiM-DNN-like) of the config's [tim] section (defaults "
                                     "without --hw): the ternary layers run on them, accuracy and TOPS/W from one run; "
                                     "needs --data"},
        {"config-precision", XF_BOOL, NULL, NULL, "with a quantized model: map every layer with the config's weight and "
                                                  "input bits, not the model's per-layer precisions"},
        {"twin", XF_STR, NULL, NULL, "a second model (e.g. the 16-bit twin of a quantized one) on the same hardware and "
                                     "images: both reports and the ratios of energy and latency"},
        {"twin-weights", XF_STR, NULL, NULL, "--twin's weights"},
    };
    const int n = sizeof f / sizeof *f;
    int rc = xf_parse("energy", "energy, latency and area per image on the hardware of a config", f, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    xf_flag *th = xf_get(f, n, "threads");
    xb_set_threads(th->set ? (int)th->i : cli_default_threads());
    const char *data = xf_get(f, n, "data")->s;
    if (!data && (xf_get(f, n, "limit")->set || xf_get(f, n, "stride")->set || xf_get(f, n, "batch")->set)) {
        fprintf(stderr, "xbar energy: error: --limit, --stride and --batch count from images and need --data\n"
                        "HINT: add --data ../shared/data/cifar10, or drop them for the nominal counts\n");
        return 2;
    }
    const char *hwp = xf_get(f, n, "hw")->s;
    const int pe = (int)xf_get(f, n, "pe")->i, tim = (int)xf_get(f, n, "tim")->i;
    if (pe && tim) {
        fprintf(stderr, "xbar energy: error: --pe and --tim are two different accelerators\nHINT: give one of them\n");
        return 2;
    }
    if (!hwp && !pe && !tim) {
        fprintf(stderr, "xbar energy: error: --hw is required\n"
                        "HINT: add --hw configs/hw/isaac-like.cfg (or another preset), or --pe --data DIR for the "
                        "zero-skipping digital accelerator\n");
        return 2;
    }
    if ((pe || tim) && !data) {
        fprintf(stderr, "xbar energy: error: %s counts from real images and needs --data\n", pe ? "--pe" : "--tim");
        fprintf(stderr, "HINT: add --data ../shared/data/cifar10 [--limit N]\n");
        return 2;
    }
    xb_hw hw = xb_hw_default();
    if (hwp && xb_hw_load(hwp, &hw) != XB_OK) return cli_fail("energy");
    if (pe || tim) return energy_digital_(f, n, &hw, tim);
    const char *twin = xf_get(f, n, "twin")->s;
    if (!twin && xf_get(f, n, "twin-weights")->s) {
        fprintf(stderr, "xbar energy: error: --twin-weights without --twin\nHINT: add --twin MODEL (e.g. the 16-bit "
                        "model.cfg)\n");
        return 2;
    }
    char dir[600];
    if (data && xb_data_find(data, dir, sizeof dir) != XB_OK) return cli_fail("energy");
    const int json = (int)xf_get(f, n, "json")->i;
    xb_energy_report r, r2;
    if (crossbar_report_(f, n, &hw, xf_get(f, n, "model")->s, xf_get(f, n, "weights")->s, data ? dir : NULL, &r))
        return cli_fail("energy");
    int ret = 0;
    const char *csv = xf_get(f, n, "csv")->s;
    if (csv) {
        FILE *cf = fopen(csv, "w");
        if (cf) {
            xb_energy_report_csv(&r, cf);
            fclose(cf);
        } else {
            xb_errorf(XB_ERR_IO, "%s: cannot write the CSV. HINT: check the directory exists and is writable", csv);
            ret = 1;
        }
    }
    if (!ret && twin) {
        if (crossbar_report_(f, n, &hw, twin, xf_get(f, n, "twin-weights")->s, data ? dir : NULL, &r2)) {
            ret = 1;
        } else {
            const double er = r.total_energy_j > 0 ? r2.total_energy_j / r.total_energy_j : 0;
            const double lr = r.latency_s > 0 ? r2.latency_s / r.latency_s : 0;
            if (json) {
                printf("{\"report\":");
                xb_energy_report_print(&r, stdout, 1);
                printf(",\"twin\":");
                xb_energy_report_print(&r2, stdout, 1);
                printf(",\"twin_energy_ratio\":%.9g,\"twin_latency_ratio\":%.9g}\n", er, lr);
            } else {
                xb_energy_report_print(&r, stdout, 0);
                printf("\nthe twin, %s:\n", twin);
                xb_energy_report_print(&r2, stdout, 0);
                printf("\nagainst the twin: %.3fx less energy per image, %.3fx less latency\n", er, lr);
            }
            xb_energy_report_free(&r2);
        }
    } else if (!ret) {
        xb_energy_report_print(&r, stdout, json);
        if (json) fputc('\n', stdout);
    }
    xb_energy_report_free(&r);
    return ret ? cli_fail("energy") : 0;
}
