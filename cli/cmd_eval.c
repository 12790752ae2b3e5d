/* cmd_eval.c -- `xbar eval` (test accuracy of weights) and `xbar infer` (logits of an .npy batch). */
#include "cli.h"

#include <string.h>

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
    };
    int n = sizeof f / sizeof *f;
    int rc = xf_parse("eval", "test accuracy of trained weights", f, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    xf_flag *th = xf_get(f, n, "threads");
    xb_set_threads(th->set ? (int)th->i : cli_default_threads());
    char dir[600];
    if (xb_data_find(xf_get(f, n, "data")->s, dir, sizeof dir) != XB_OK) return cli_fail("eval");
    xb_model *m;
    if (xb_model_load(xf_get(f, n, "model")->s, 1, &m) != XB_OK) return cli_fail("eval");
    if (xb_model_load_weights(m, xf_get(f, n, "weights")->s) != XB_OK) { xb_model_free(m); return cli_fail("eval"); }
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
    };
    int n = sizeof f / sizeof *f;
    int rc = xf_parse("infer", "logits for an .npy batch of images (eval mode)", f, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    xf_flag *th = xf_get(f, n, "threads");
    xb_set_threads(th->set ? (int)th->i : cli_default_threads());
    const char *in = xf_get(f, n, "input")->s;
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
    xb_status s = xb_model_set_batch(m, batch < N ? batch : (int)N);
    xb_model_train_mode(m, 0);
    for (int64_t i = 0; !s && i < N; i += batch) {
        int nb = (int)(N - i < batch ? N - i : batch);
        s = xb_model_forward(m, nb, (const float *)x.data + i * c * h * w, (float *)y.data + i * k, NULL);
    }
    if (!s) s = xb_npy_save(xf_get(f, n, "out")->s, &y);
    xb_tensor_free(&x);
    xb_tensor_free(&y);
    xb_model_free(m);
    return s ? cli_fail("infer") : 0;
}
