/*
 * weights.c -- a model's parameters and buffers <-> safetensors with PyTorch's names, shapes and
 * dtypes.  Loading is strict: every tensor of the model must be present with its exact shape (except an
 * activation quantizer's alpha or clip, which keep their start values, so that a float model's weights
 * load into its quantized twin), and a tensor the model does not have is an error (names beginning with
 * "__" are checkpoint state and are skipped).  num_batches_tracked is int64 in files and a float counter in memory.
 */
#include "nn_internal.h"

#include <string.h>

static void shape_of(const xb_param *p, char *buf, size_t n) { xb_shape_str(p->ndim, p->shape, buf, n); }

static xb_status copy_weights_(xb_model *m, const xb_safetensors *st, const char *path) {
    int np = xb_model_n_params(m);
    for (int i = 0; i < st->n; i++) {
        const char *nm = st->e[i].name;
        if (!strncmp(nm, "__", 2)) continue;
        if (!xb_model_find_param(m, nm))
            return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s' is not a parameter of model '%s'. HINT: the weights "
                             "belong to another model; check --model (xbar info --model ... lists the names)",
                             path, nm, xb_model_name(m));
    }
    for (int i = 0; i < np; i++) {
        const xb_param *p = xb_model_param(m, i);
        const xb_tensor *t = xb_st_get(st, p->name);
        char want[64], got[64];
        shape_of(p, want, sizeof want);
        if (!t && p->optional) continue; /* an activation quantizer's alpha or clip: its start value stays */
        if (!t)
            return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s' (%s) is missing. HINT: the file must hold every "
                             "parameter and buffer of model '%s' under PyTorch's state_dict names",
                             path, p->name, want, xb_model_name(m));
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            xb_shape_str(t->ndim, t->shape, got, sizeof got);
            return xb_errorf(XB_ERR_SHAPE, "%s: tensor '%s' has shape %s but model '%s' needs %s. HINT: the "
                             "weights belong to a different architecture or width", path, p->name, got,
                             xb_model_name(m), want);
        }
        float *dst = (p->trainable ? xb_model_params(m) : xb_model_buffers(m)) + p->offset;
        int64_t n = p->numel;
        switch (t->dtype) {
        case XB_F32: memcpy(dst, t->data, (size_t)n * sizeof(float)); break;
        case XB_F64: for (int64_t j = 0; j < n; j++) dst[j] = (float)((const double *)t->data)[j]; break;
        case XB_I64:
            if (!p->is_int64)
                return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s' is int64 but must be floating point", path, p->name);
            for (int64_t j = 0; j < n; j++) dst[j] = (float)((const int64_t *)t->data)[j];
            break;
        default:
            return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s' has dtype %s. HINT: save float32 weights (and int64 "
                             "num_batches_tracked)", path, p->name, xb_dtype_name(t->dtype));
        }
        if (!p->is_int64)
            for (int64_t j = 0; j < n; j++)
                if (!(dst[j] - dst[j] == 0))
                    return xb_errorf(XB_ERR_NUMERIC, "%s: tensor '%s' holds a non-finite value at element %lld. "
                                     "HINT: the weights are corrupt or training diverged", path, p->name,
                                     (long long)j);
    }
    return XB_OK;
}

/* All or nothing: a file that fails half-way (a missing tensor, a wrong shape or dtype, a NaN) leaves the
 * model's parameters and buffers exactly as they were. */
xb_status xb_model_weights_from_st(xb_model *m, const xb_safetensors *st, const char *path) {
    const int64_t np = xb_model_n_trainable(m), nb = xb_model_n_buffer(m);
    float *keep = xb_try_malloc((size_t)(np + nb + 1) * sizeof(float));
    if (!keep) return xb_errorf(XB_ERR_NOMEM, "%s: no memory to load the weights safely", path);
    memcpy(keep, xb_model_params(m), (size_t)np * sizeof(float));
    memcpy(keep + np, xb_model_buffers(m), (size_t)nb * sizeof(float));
    xb_status s = copy_weights_(m, st, path);
    if (s) {
        memcpy(xb_model_params(m), keep, (size_t)np * sizeof(float));
        memcpy(xb_model_buffers(m), keep + np, (size_t)nb * sizeof(float));
    }
    xb_free(keep);
    return s;
}

xb_status xb_model_load_weights(xb_model *m, const char *path) {
    xb_safetensors st;
    xb_status s = xb_st_load(path, &st);
    if (s != XB_OK) return s;
    s = xb_model_weights_from_st(m, &st, path);
    xb_st_free(&st);
    return s;
}

void xb_model_add_to_st(xb_model *m, xb_safetensors *st, int64_t *i64_scratch) {
    int k = 0;
    for (int i = 0; i < xb_model_n_params(m); i++) {
        const xb_param *p = xb_model_param(m, i);
        float *src = (p->trainable ? xb_model_params(m) : xb_model_buffers(m)) + p->offset;
        xb_tensor t = {.dtype = XB_F32, .ndim = p->ndim, .data = src};
        for (int d = 0; d < XB_MAX_DIMS; d++) t.shape[d] = p->shape[d];
        if (p->is_int64) {
            i64_scratch[k] = (int64_t)src[0];
            t.dtype = XB_I64;
            t.data = &i64_scratch[k++];
        }
        xb_st_add(st, p->name, t);
    }
}

xb_status xb_model_save_weights(const xb_model *mc, const char *path) {
    xb_model *m = (xb_model *)mc; /* only read */
    xb_safetensors st;
    xb_st_init(&st);
    int64_t *scratch = xb_calloc((size_t)xb_model_n_params(m) * sizeof(int64_t) + 8);
    xb_model_add_to_st(m, &st, scratch);
    xb_st_add_meta(&st, "format", "pt");
    xb_st_add_meta(&st, "xbar_model", xb_model_name(m));
    xb_status s = xb_st_save(path, &st);
    xb_st_free(&st);
    xb_free(scratch);
    return s;
}
