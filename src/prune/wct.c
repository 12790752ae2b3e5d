/* wct.c -- weight-constrained training (methods.md 5A, mitigation 2): every mapped layer's weights held
 * inside [-c, c], c its percentile of |W| when the constraint starts, by a clip after every step or a
 * squared hinge penalty on |w| above c.  Trainer hooks, not an edit of the model.  docs/pruning.md. */
#include "xbar.h"
#include "xb_xbar.h"
#include "core/io_util.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct xb_wct {
    int n;                        /* mapped layers */
    double *c;                    /* their bounds */
    double *s0;                   /* their max |w| when the constraint started (the mapping scale to keep) */
    double penalty;
    double percentile;
};

static const float *wp_(const xb_model *m, int i, int64_t *n) {
    int param;
    xb_model_mapped_info(m, i, NULL, &param, NULL, NULL);
    const xb_param *p = xb_model_param(m, param);
    *n = p->numel;
    return xb_model_params((xb_model *)m) + p->offset;
}

xb_status xb_wct_init(const xb_model *m, double percentile, double penalty, xb_wct **out) {
    if (!(percentile > 0 && percentile <= 100) || !(penalty >= 0))
        return xb_errorf(XB_ERR_ARG, "weight-constrained training: percentile %g, penalty %g. HINT: percentile in (0, "
                         "100], penalty >= 0", percentile, penalty);
    xb_wct *w = calloc(1, sizeof *w);
    if (!w) return xb_errorf(XB_ERR_NOMEM, "no memory for weight-constrained training");
    w->n = xb_model_n_mapped(m);
    w->penalty = penalty;
    w->percentile = percentile;
    w->c = calloc((size_t)w->n + 1, sizeof(double));
    w->s0 = calloc((size_t)w->n + 1, sizeof(double));
    if (!w->c || !w->s0) { xb_wct_free(w); return xb_errorf(XB_ERR_NOMEM, "no memory for weight-constrained training"); }
    for (int i = 0; i < w->n; i++) {
        int64_t n;
        const float *v = wp_(m, i, &n);
        float *t = malloc(sizeof(float) * (size_t)(n + 1));
        if (!t) { xb_wct_free(w); return xb_errorf(XB_ERR_NOMEM, "no memory for weight-constrained training"); }
        memcpy(t, v, sizeof(float) * (size_t)n);
        w->c[i] = xb_percentile_abs(t, n, percentile);
        w->s0[i] = xb_percentile_abs(t, n, 100);
        free(t);
    }
    *out = w;
    return XB_OK;
}

xb_status xb_wct_init_bounds(const xb_model *m, const double *bounds, xb_wct **out) {
    xb_status st = xb_wct_init(m, 100, 0, out);   /* s0 and the layer list; then the given bounds */
    if (st) return st;
    for (int i = 0; i < (*out)->n; i++) {
        if (!(bounds[i] >= 0)) {
            xb_wct_free(*out);
            *out = NULL;
            return xb_errorf(XB_ERR_ARG, "weight constraint: bound %g of mapped layer %d. HINT: bounds are >= 0", bounds[i], i);
        }
        (*out)->c[i] = bounds[i];
    }
    (*out)->percentile = 0;   /* saved as 0: the bounds were given (NEAT's cut-offs), not a percentile */
    return XB_OK;
}

void xb_wct_free(xb_wct *w) {
    if (!w) return;
    free(w->c);
    free(w->s0);
    free(w);
}

double xb_wct_bound(const xb_wct *w, int mapped) { return mapped >= 0 && mapped < w->n ? w->c[mapped] : 0; }

void xb_wct_grad(const xb_wct *w, xb_model *m) {
    if (!(w->penalty > 0)) return;
    for (int i = 0; i < w->n; i++) {
        int param;
        xb_model_mapped_info(m, i, NULL, &param, NULL, NULL);
        const xb_param *p = xb_model_param(m, param);
        const float *v = xb_model_params(m) + p->offset;
        float *g = xb_model_grads(m) + p->offset;
        const float c = (float)w->c[i], k = (float)(2 * w->penalty);
        for (int64_t j = 0; j < p->numel; j++) {
            const float a = fabsf(v[j]) - c;
            if (a > 0) g[j] += copysignf(k * a, v[j]);
        }
    }
}

int64_t xb_wct_clip(const xb_wct *w, xb_model *m) {
    if (w->penalty > 0) return 0;
    int64_t clipped = 0;
    for (int i = 0; i < w->n; i++) {
        int param;
        xb_model_mapped_info(m, i, NULL, &param, NULL, NULL);
        const xb_param *p = xb_model_param(m, param);
        float *v = xb_model_params(m) + p->offset;
        const float c = (float)w->c[i];
        for (int64_t j = 0; j < p->numel; j++)
            if (fabsf(v[j]) > c) { v[j] = copysignf(c, v[j]); clipped++; }
    }
    return clipped;
}

xb_status xb_wct_save(const xb_wct *w, const xb_model *m, const char *path) {
    cJSON *root = cJSON_CreateObject(), *ls = cJSON_AddArrayToObject(root, "layers");
    cJSON_AddNumberToObject(root, "percentile", w->percentile);
    cJSON_AddNumberToObject(root, "penalty", w->penalty);
    for (int i = 0; i < w->n; i++) {
        const char *nm;
        xb_model_mapped_info(m, i, &nm, NULL, NULL, NULL);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "layer", nm);
        char num[40]; /* all 17 digits: cJSON's own printing round-trips only to a tolerance, a resume needs the bits */
        snprintf(num, sizeof num, "%.17g", w->c[i]);
        cJSON_AddItemToObject(o, "bound", cJSON_CreateRaw(num));
        snprintf(num, sizeof num, "%.17g", w->s0[i]);
        cJSON_AddItemToObject(o, "scale0", cJSON_CreateRaw(num));
        cJSON_AddItemToArray(ls, o);
    }
    xb_status st = xb_json_save(path, root, "weight-constraint bounds");
    cJSON_Delete(root);
    return st;
}

xb_status xb_wct_load(xb_wct *w, const xb_model *m, const char *path) {
    cJSON *root;
    xb_status lst = xb_json_load(path, "weight-constraint bounds",
                                 "resume with the --out of the run that wrote it (wct.json beside the checkpoint)", &root);
    if (lst) return lst;
    const cJSON *ls = root ? cJSON_GetObjectItem(root, "layers") : NULL;
    int bad = !cJSON_IsArray(ls) || cJSON_GetArraySize(ls) != w->n;
    for (int i = 0; i < w->n && !bad; i++) {
        const char *nm;
        xb_model_mapped_info(m, i, &nm, NULL, NULL, NULL);
        const cJSON *o = cJSON_GetArrayItem(ls, i), *l = cJSON_GetObjectItem(o, "layer"), *b = cJSON_GetObjectItem(o, "bound");
        const cJSON *s0 = cJSON_GetObjectItem(o, "scale0");
        if (!cJSON_IsString(l) || strcmp(l->valuestring, nm) != 0 || !cJSON_IsNumber(b) || !(b->valuedouble >= 0) ||
            !cJSON_IsNumber(s0) || !(s0->valuedouble >= 0))
            bad = 1;
        else { w->c[i] = b->valuedouble; w->s0[i] = s0->valuedouble; }
    }
    cJSON_Delete(root);
    if (bad) return xb_errorf(XB_ERR_FORMAT, "%s: not the weight-constraint bounds of this model (%d mapped layers). HINT: "
                              "resume with the same model", path, w->n);
    return XB_OK;
}

xb_status xb_wct_scales_load(const char *path, const xb_model *m, double *scales) {
    xb_wct *w;
    xb_status st = xb_wct_init(m, 100, 0, &w); /* the layer list; the values come from the file */
    if (st) return st;
    st = xb_wct_load(w, m, path);
    for (int i = 0; !st && i < w->n; i++) scales[i] = w->s0[i];
    xb_wct_free(w);
    return st;
}
