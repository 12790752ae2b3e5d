/* fuzz_quant.c -- libFuzzer harness for quantization configs (xb_quant_rewrite, src/quant/qcfg.c): the input
 * is a --quant-config text applied to a small residual CNN.  A failure must name one of the two files; a
 * success must give a model text that loads (xb_model_load_text), whose weight specs read back
 * (xb_quant_specs) and pass xb_qw_check, and that rewrites to itself (the resolved form is a fixed point). */
#include "fuzz_util.h"

static const char model_[] =
    "[net]\ninput = 3x8x8\nclasses = 4\n"
    "[conv2d c1]\nout_channels = 4\nkernel = 3\npadding = 1\n[batchnorm b1]\n[relu r1]\n"
    "[conv2d c2]\nout_channels = 4\nkernel = 3\npadding = 1\n[batchnorm b2]\n[add a]\ninputs = b2, r1\n[relu r2]\n"
    "[maxpool p]\nkernel = 2\n[flatten f]\n[linear fc]\nout_features = 4\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *q = malloc(size + 1);
    if (!q) return 0;
    memcpy(q, data, size);
    q[size] = 0; /* the CLI reads files into NUL-terminated text; an embedded NUL ends it early */
    char *out = NULL;
    int any = 0;
    xb_status st = xb_quant_rewrite(model_, "model.cfg", q, "fuzz.cfg", NULL, &out, &any);
    if (st != XB_OK) {
        FUZZ_CHECK(st > XB_OK && st < XB_STATUS_COUNT, "status %d", (int)st);
        FUZZ_CHECK(strstr(xb_last_error(), "fuzz.cfg") || strstr(xb_last_error(), "model.cfg"),
                   "message names neither file: %s", xb_last_error());
        FUZZ_CHECK(out == NULL, "output left behind on failure");
        free(q);
        return 0;
    }
    xb_model *m = NULL;
    st = xb_model_load_text(out, strlen(out), "model.cfg", 1, &m);
    FUZZ_CHECK(st == XB_OK, "the resolved model does not load: %s\n%s", xb_last_error(), out);
    xb_qw_spec specs[3];
    int wany = 0;
    st = xb_quant_specs(out, "model.cfg", m, specs, &wany);
    FUZZ_CHECK(st == XB_OK, "the resolved specs do not read back: %s", xb_last_error());
    for (int i = 0; i < xb_model_n_mapped(m); i++)
        FUZZ_CHECK(xb_qw_check(&specs[i], "model.cfg") == XB_OK, "spec %d: %s", i, xb_last_error());
    char *again = NULL;
    int any2 = 0;
    st = xb_quant_rewrite(out, "model.cfg", NULL, NULL, NULL, &again, &any2);
    FUZZ_CHECK(st == XB_OK && !strcmp(out, again) && any == any2, "the resolved text is not a fixed point");
    free(again);
    xb_model_free(m);
    free(out);
    free(q);
    return 0;
}
