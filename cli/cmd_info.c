/* cmd_info.c -- `xbar info`: a model's layer table (shapes, parameters, MACs), or the zoo list. */
#include "cli.h"

#include <stdlib.h>

int cmd_info(int argc, char **argv) {
    xf_flag f[] = {
        {"model", XF_STR, NULL, NULL, "zoo name or model .cfg file (without it: list the zoo)"},
        {"json", XF_BOOL, NULL, NULL, "print one JSON object"},
    };
    int n = sizeof f / sizeof *f;
    int rc = xf_parse("info", "a model's layer table: shapes, parameters, MACs", f, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    const char *model = f[0].s;
    if (!model) {
        const char *const *names = xb_zoo_names();
        if (f[1].i) printf("{\"zoo\":[");
        else printf("zoo models (xbar info --model NAME):\n");
        for (int i = 0; names[i]; i++) {
            xb_model *m;
            if (xb_model_load(names[i], 1, &m) != XB_OK) return cli_fail("info");
            if (f[1].i)
                printf("%s{\"name\":\"%s\",\"params\":%lld,\"macs\":%lld}", i ? "," : "", names[i],
                       (long long)xb_model_n_trainable(m), (long long)xb_model_macs(m));
            else
                printf("  %-10s %10lld parameters %8.2f M MACs/image\n", names[i], (long long)xb_model_n_trainable(m),
                       (double)xb_model_macs(m) / 1e6);
            xb_model_free(m);
        }
        if (f[1].i) printf("]}\n");
        return 0;
    }
    xb_model *m;
    if (xb_model_load(model, 1, &m) != XB_OK) return cli_fail("info");
    /* a quantized model (docs/quantization.md): each layer's precision after the layer table */
    char *text = NULL, path[600];
    xb_qw_spec *specs = calloc((size_t)xb_model_n_mapped(m) + 1, sizeof *specs);
    int any = 0, quant = 0, kind, bits;
    float clip;
    for (int i = 0; i < xb_model_n_nodes(m); i++) quant |= xb_model_node_quant(m, i, &kind, &bits, &clip);
    xb_status st = specs ? xb_model_text(model, &text, path, sizeof path) : XB_ERR_NOMEM;
    if (!st) st = xb_quant_specs(text, path, m, specs, &any);
    free(text);
    if (st) { free(specs); xb_model_free(m); return cli_fail("info"); }
    if (f[1].i && (any || quant)) { /* one object: the layer table and the precisions */
        printf("{\"model\":");
        xb_model_print_info(m, stdout, 1);
        printf(",\"precision\":");
        xb_quant_print(m, specs, stdout, 1);
        printf("}\n");
    } else {
        xb_model_print_info(m, stdout, (int)f[1].i);
        if (any || quant) xb_quant_print(m, specs, stdout, 0);
    }
    free(specs);
    xb_model_free(m);
    return 0;
}
