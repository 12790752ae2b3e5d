/* tensor.c -- contiguous tensors: sizes, allocation, shape strings. */
#include "xbar.h"

#include <string.h>

static const size_t dtype_sizes[] = {4, 8, 8, 1, 4};
static const char *const dtype_names[] = {"float32", "float64", "int64", "uint8", "int32"};
_Static_assert(sizeof dtype_sizes / sizeof *dtype_sizes == XB_DTYPE_COUNT, "dtype table");
_Static_assert(sizeof dtype_names / sizeof *dtype_names == XB_DTYPE_COUNT, "dtype table");

size_t xb_dtype_size(xb_dtype t) { XB_ASSERT((unsigned)t < XB_DTYPE_COUNT); return dtype_sizes[t]; }
const char *xb_dtype_name(xb_dtype t) { return (unsigned)t < XB_DTYPE_COUNT ? dtype_names[t] : "?"; }

int64_t xb_tensor_numel(const xb_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t xb_tensor_nbytes(const xb_tensor *t) { return (size_t)xb_tensor_numel(t) * xb_dtype_size(t->dtype); }

xb_tensor xb_tensor_alloc(xb_dtype dtype, int ndim, const int64_t *shape) {
    XB_ASSERT(ndim >= 0 && ndim <= XB_MAX_DIMS);
    xb_tensor t = {.dtype = dtype, .ndim = ndim, .owner = 1};
    for (int i = 0; i < XB_MAX_DIMS; i++) t.shape[i] = i < ndim ? shape[i] : 1;
    for (int i = 0; i < ndim; i++) XB_ASSERT(shape[i] >= 0);
    t.data = xb_calloc(xb_tensor_nbytes(&t));
    return t;
}

void xb_tensor_free(xb_tensor *t) {
    if (t->owner) xb_free(t->data);
    t->data = NULL;
    t->owner = 0;
}

int xb_tensor_same_shape(const xb_tensor *a, const xb_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *xb_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    if (ndim == 0) { snprintf(buf, n, "()"); return buf; }
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? "x%lld" : "%lld", (long long)shape[i]);
    return buf;
}
