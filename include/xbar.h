/*
 * xbar.h -- the public API of xbar: tensors, errors, RNG streams, file formats (.npy, safetensors),
 * datasets, layer kernels, model graphs, training and evaluation.  The crossbar core is in xb_xbar.h.
 *
 * Worked example (train a zoo model for one epoch and evaluate it):
 *
 *     xb_model *m; xb_dataset train, test;
 *     if (xb_model_load_zoo("resnet20", &m) != XB_OK) { fprintf(stderr, "%s\n", xb_last_error()); exit(1); }
 *     xb_cifar_load("../shared/data/cifar10", XB_SPLIT_TRAIN, &train);    // 50000 x 3x32x32 uint8
 *     xb_cifar_load("../shared/data/cifar10", XB_SPLIT_TEST, &test);
 *     xb_train_opts o = xb_train_opts_default();  o.epochs = 1;
 *     xb_train(m, &train, &test, &o, NULL);                               // progress bar on stderr
 *     xb_eval_result r;  xb_evaluate(m, &test, 0, 128, &r);              // r.accuracy
 *     xb_model_free(m);
 *
 * Conventions
 *  - Every function that can fail because of its input returns xb_status; XB_OK is 0.  On failure the
 *    message (file, place, what is wrong, HINT: the fix) is in xb_last_error() (thread-local).
 *  - Programmer errors (broken invariants, impossible shapes passed by library code) stop the program
 *    through XB_ASSERT, which is never compiled out.
 *  - Activations inside the engine are float32 in channel-major "CNHW" layout: shape (C, N, H, W), so
 *    a convolution is one GEMM  Y(Cout, N*Ho*Wo) = W(Cout, K) x col(K, N*Ho*Wo)  and batchnorm works on
 *    contiguous channel planes.  A linear layer's activations are (F, N).  Inputs and outputs at the
 *    API boundary (datasets, .npy, logits) are PyTorch's NCHW / (N, classes).
 *  - Parameters keep PyTorch's names, shapes and layouts (conv weight (Cout, Cin/groups, kh, kw),
 *    linear weight (out, in)), so state_dicts move both ways through safetensors.
 *  - Memory: objects are made by the _init, _load and _alloc functions and released by the matching _free.  Kernels do
 *    not allocate; those that need scratch take a workspace sized by a *_workspace() query.
 */
#ifndef XBAR_H
#define XBAR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XB_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------------ */
/* Status and errors                                                                                 */
/* ------------------------------------------------------------------------------------------------ */

typedef enum xb_status {
    XB_OK = 0,
    XB_ERR_IO,          /* a file could not be opened, read or written */
    XB_ERR_FORMAT,      /* a file's contents are malformed (truncated, corrupt, wrong dtype...) */
    XB_ERR_CONFIG,      /* a .cfg file is invalid (unknown key, bad value, missing key) */
    XB_ERR_SHAPE,       /* shapes do not fit together */
    XB_ERR_ARG,         /* a bad argument or option value */
    XB_ERR_NOMEM,       /* out of memory */
    XB_ERR_NUMERIC,     /* non-finite values (NaN loss, singular circuit) */
    XB_ERR_UNSUPPORTED, /* valid request that this build cannot do */
    XB_ERR_STATE,       /* calls in the wrong order or on stale state (weights changed since programming) */
    XB_STATUS_COUNT
} xb_status;

const char *xb_status_str(xb_status s);
/* Records a formatted message as the thread's last error and returns st.  Messages name the file and
 * the place, say what is wrong and end with "HINT: ..." where a fix can be suggested. */
xb_status xb_errorf(xb_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *xb_last_error(void);
void xb_clear_error(void);

/* Programmer errors: never compiled out. */
void xb_abort(const char *file, int line, const char *expr) __attribute__((noreturn));
#define XB_ASSERT(cond) do { if (!(cond)) xb_abort(__FILE__, __LINE__, #cond); } while (0)

/* Allocation that aborts with a message on failure (for sizes the library itself decides; sizes read
 * from files are validated against the file first).  Memory is 64-byte aligned; free with xb_free. */
void *xb_malloc(size_t n);
void *xb_calloc(size_t n);
/* The same, returning NULL on failure (for sizes that follow from the caller's input). */
void *xb_try_malloc(size_t n);
void xb_free(void *p);

/* ------------------------------------------------------------------------------------------------ */
/* Tensors: contiguous, row-major (last index fastest), at most XB_MAX_DIMS dimensions.              */
/* ------------------------------------------------------------------------------------------------ */

#define XB_MAX_DIMS 4

typedef enum xb_dtype { XB_F32 = 0, XB_F64, XB_I64, XB_U8, XB_I32, XB_DTYPE_COUNT } xb_dtype;

typedef struct xb_tensor {
    xb_dtype dtype;
    int ndim;                      /* 0 (scalar) .. XB_MAX_DIMS */
    int64_t shape[XB_MAX_DIMS];    /* unused dims are 1 */
    void *data;
    int owner;                     /* 1: data freed by xb_tensor_free */
} xb_tensor;

size_t xb_dtype_size(xb_dtype t);
const char *xb_dtype_name(xb_dtype t);
int64_t xb_tensor_numel(const xb_tensor *t);
size_t xb_tensor_nbytes(const xb_tensor *t);
/* Allocates a zeroed owned tensor. */
xb_tensor xb_tensor_alloc(xb_dtype dtype, int ndim, const int64_t *shape);
void xb_tensor_free(xb_tensor *t);
int xb_tensor_same_shape(const xb_tensor *a, const xb_tensor *b);
/* "3x32x32" style, into buf; returns buf. */
char *xb_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* ------------------------------------------------------------------------------------------------ */
/* Random numbers: xoshiro256** streams derived from (seed, stream name).  Each effect draws from its */
/* own named stream, so switching one effect on does not change the numbers of another.              */
/* ------------------------------------------------------------------------------------------------ */

typedef struct xb_rng { uint64_t s[4]; double spare; int has_spare; } xb_rng;

/* Stream names in use: "init", "shuffle", "augment", "dropout", "device", "read", "attack", "qw". */
void xb_rng_seed(xb_rng *r, uint64_t seed, const char *stream);
/* A sub-stream (e.g. one per thread, per tile or per Monte-Carlo seed): deterministic in (r, index). */
void xb_rng_fork(const xb_rng *r, uint64_t index, xb_rng *out);
uint64_t xb_rng_u64(xb_rng *r);
double xb_rng_uniform(xb_rng *r);             /* [0, 1) with 53 random bits */
uint64_t xb_rng_below(xb_rng *r, uint64_t n); /* uniform in [0, n), unbiased */
double xb_rng_normal(xb_rng *r);              /* standard normal */

/* ------------------------------------------------------------------------------------------------ */
/* Threads                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

/* Sets the thread count for OpenMP regions and BLAS (n >= 1). */
void xb_set_threads(int n);
int xb_get_threads(void);
double xb_time_s(void); /* monotonic seconds */

/* ------------------------------------------------------------------------------------------------ */
/* Files: .npy and safetensors                                                                       */
/* ------------------------------------------------------------------------------------------------ */

/* .npy: float32, float64, int64 (and uint8, int32), C order, version 1.0/2.0/3.0.  Fortran order,
 * object arrays, big-endian data and more than XB_MAX_DIMS dims are rejected with a message. */
xb_status xb_npy_load(const char *path, xb_tensor *out);
xb_status xb_npy_save(const char *path, const xb_tensor *t);

/* safetensors: a name -> tensor map with optional string metadata. */
typedef struct xb_st_entry { char *name; xb_tensor t; } xb_st_entry;
typedef struct xb_safetensors {
    int n;
    xb_st_entry *e;
    int n_meta;
    char **meta_key, **meta_val;
} xb_safetensors;

/* Reads a whole file (F32, F64, I64, I32, U8 accepted; others such as BF16 or F16 rejected with a
 * message naming the tensor). */
xb_status xb_st_load(const char *path, xb_safetensors *out);
/* Writes atomically: path.tmp then rename. Tensors are written in the order given. */
xb_status xb_st_save(const char *path, const xb_safetensors *st);
const xb_tensor *xb_st_get(const xb_safetensors *st, const char *name);
const char *xb_st_meta(const xb_safetensors *st, const char *key);
/* Building a map to save: entries keep pointers to the caller's data unless copied. */
void xb_st_init(xb_safetensors *st);
void xb_st_add(xb_safetensors *st, const char *name, xb_tensor t); /* t is borrowed (owner=0) */
void xb_st_add_meta(xb_safetensors *st, const char *key, const char *val);
void xb_st_free(xb_safetensors *st);

/* ------------------------------------------------------------------------------------------------ */
/* Datasets                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

typedef enum xb_split { XB_SPLIT_TRAIN = 0, XB_SPLIT_TEST, XB_SPLIT_COUNT } xb_split;

typedef struct xb_dataset {
    int64_t n;                /* images */
    int c, h, w;              /* 3, 32, 32 */
    int classes;              /* 10 or 100 */
    uint8_t *images;          /* (n, c, h, w) raw bytes */
    int32_t *labels;          /* (n) */
    float mean[3], std[3];    /* per-channel normalization applied by the batcher, in [0,1] units */
    char path[512];
} xb_dataset;

/* Finds the data directory: dir if given, else $XBAR_DATA, else ../shared/data/cifar10; on failure
 * the message says how to get CIFAR-10. out receives the directory used. */
xb_status xb_data_find(const char *dir, char *out, size_t n);
/* CIFAR-10 binary (data_batch_1..5.bin / test_batch.bin), checking file sizes and label ranges. */
xb_status xb_cifar10_load(const char *dir, xb_split split, xb_dataset *out);
/* CIFAR-100 binary (train.bin / test.bin, coarse+fine label bytes; fine labels are used). */
xb_status xb_cifar100_load(const char *dir, xb_split split, xb_dataset *out);
/* Either: CIFAR-100 if dir holds train.bin/test.bin, else CIFAR-10. */
xb_status xb_cifar_load(const char *dir, xb_split split, xb_dataset *out);
void xb_dataset_free(xb_dataset *d);

/* Writes a batch in NCHW float32: x[(i*c + ch)*h*w + ...] = (img/255 - mean[ch]) / std[ch] of images
 * idx[0..n-1]; with augment, each image gets a random crop (4-pixel zero padding) and a horizontal
 * flip with probability 1/2 from rng; with cutout > 0, then an N x N square (N = cutout) around a
 * uniformly drawn centre, clipped at the border, is set to 0 (DeVries & Taylor 2017).  rng may be NULL
 * only when both are off.  labels may be NULL. */
void xb_dataset_batch(const xb_dataset *d, const int64_t *idx, int n, int augment, int cutout, xb_rng *rng,
                      float *x, int32_t *labels);

#ifdef __cplusplus
}
#endif

#include "xb_nn.h"
#include "xb_quant.h"
#include "xb_prune.h"

#endif /* XBAR_H */
