/* xtrain.c -- training through the crossbars: the crossbar network as the model's operator, programmed
 * from the current weights before every step (a new device sample per step, per epoch or never), its
 * calibrated ranges set at each epoch's start, the trainer's loop (train.c) unchanged underneath. */
#include "xb_xbar.h"

#include <string.h>

xb_xtrain_opts xb_xtrain_opts_default(void) {
    xb_xtrain_opts o;
    memset(&o, 0, sizeof o);
    o.mode = XB_HWMODE_AWARE;
    o.resample = XB_RESAMPLE_STEP;
    o.backward = XB_XBWD_HARDWARE;
    o.device_seed = 1000000000ull; /* far from the evaluation's seeds 1, 2, ... */
    return o;
}

const char *xb_hw_mode_name(xb_hw_mode m) {
    static const char *const names[] = {"aware"};
    return (unsigned)m < XB_HWMODE_COUNT ? names[m] : "?";
}
const char *xb_resample_name(xb_resample r) {
    static const char *const names[] = {"step", "epoch", "never"};
    return (unsigned)r < XB_RESAMPLE_COUNT ? names[r] : "?";
}

typedef struct xt_ {
    xb_xnet *xn;
    const xb_xtrain_opts *xo;
    const xb_train_hooks *user;
    const xb_dataset *train;
    int batch, ncal;
    int64_t epoch;            /* the epoch being trained */
    int calibrated;
} xt_;

static uint64_t sample_seed_(const xt_ *t, int64_t step) {
    switch (t->xo->resample) {
    case XB_RESAMPLE_STEP: return t->xo->device_seed + (uint64_t)step;
    case XB_RESAMPLE_EPOCH: return t->xo->device_seed + (uint64_t)t->epoch;
    default: return t->xo->device_seed;
    }
}

/* Calibrated ranges from the first ncal training images, unaugmented, on the current weights. */
static xb_status calibrate_(xt_ *t, xb_model *m) {
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    const int n = t->ncal;
    float *x = xb_try_malloc((size_t)n * c * h * w * sizeof(float));
    int64_t *idx = xb_try_malloc((size_t)n * sizeof(int64_t));
    int32_t *lab = xb_try_malloc((size_t)n * sizeof(int32_t));
    xb_status st = XB_OK;
    if (!x || !idx || !lab) st = xb_errorf(XB_ERR_NOMEM, "no memory for %d calibration images. HINT: lower "
                                           "calibration_images", n);
    if (!st) {
        for (int i = 0; i < n; i++) idx[i] = i;
        xb_dataset_batch(t->train, idx, n, 0, 0, NULL, x, lab);
        st = xb_xnet_calibrate(t->xn, n, x);
    }
    xb_free(x); xb_free(idx); xb_free(lab);
    if (!st) st = xb_model_set_batch(m, t->batch); /* calibration planned the model for its own batch */
    if (!st) {
        xb_model_train_mode(m, 1);
        t->calibrated = 1;
    }
    return st;
}

/* Tiles from the current weights for `step`; calibration first when the epoch has none yet. */
static xb_status program_(xt_ *t, xb_model *m, int64_t step) {
    xb_status st = xb_xnet_program(t->xn, sample_seed_(t, step));
    if (!st && !t->calibrated && xb_xnet_needs_calibration(t->xn)) st = calibrate_(t, m);
    return st;
}

static xb_status epoch_begin_(void *ctx, xb_model *m, int64_t epoch) {
    xt_ *t = ctx;
    t->epoch = epoch;
    t->calibrated = 0;
    xb_xnet_clear_ranges(t->xn);
    return t->user && t->user->epoch_begin ? t->user->epoch_begin(t->user->ctx, m, epoch) : XB_OK;
}

static xb_status before_forward_(void *ctx, xb_model *m, int64_t step, int64_t epoch) {
    xt_ *t = ctx;
    t->epoch = epoch;
    /* the tiles hold the sample of this step from the last update, except on the first step of a call */
    const int need_cal = xb_xnet_needs_calibration(t->xn) && !t->calibrated;
    xb_status st = xb_xnet_current(t->xn, sample_seed_(t, step)) && !need_cal ? XB_OK : program_(t, m, step);
    if (!st && t->user && t->user->before_forward) st = t->user->before_forward(t->user->ctx, m, step, epoch);
    return st;
}

static xb_status after_backward_(void *ctx, xb_model *m, int64_t step) {
    xt_ *t = ctx;
    return t->user && t->user->after_backward ? t->user->after_backward(t->user->ctx, m, step) : XB_OK;
}

/* the weights changed: program the tiles for the next step (and for the epoch's test evaluation) */
static xb_status after_update_(void *ctx, xb_model *m, int64_t step) {
    xt_ *t = ctx;
    xb_status st = program_(t, m, step + 1);
    if (!st && t->user && t->user->after_update) st = t->user->after_update(t->user->ctx, m, step);
    return st;
}

static void report_(void *ctx, const xb_epoch_report *r) {
    xt_ *t = ctx;
    if (t->user && t->user->report) t->user->report(t->user->ctx, r);
}

xb_status xb_xtrain(xb_model *m, const xb_hw *hw, const xb_dataset *train, const xb_dataset *test,
                    const xb_train_opts *o, const xb_xtrain_opts *xo, xb_train_result *res) {
    if ((unsigned)xo->mode >= XB_HWMODE_COUNT || (unsigned)xo->resample >= XB_RESAMPLE_COUNT ||
        (unsigned)xo->backward >= XB_XBWD_COUNT)
        return xb_errorf(XB_ERR_ARG, "training through crossbars: mode %d, resample %d or backward %d is out of range",
                         (int)xo->mode, (int)xo->resample, (int)xo->backward);
    xt_ t;
    memset(&t, 0, sizeof t);
    t.xo = xo;
    t.user = o->hooks;
    t.train = train;
    t.batch = o->batch;
    t.ncal = xo->calibration_images > 0 ? xo->calibration_images : hw->calibration_images;
    if (t.ncal > train->n) t.ncal = (int)train->n;
    xb_set_threads(o->threads > 0 ? o->threads : 1); /* the network sizes its buffers per thread */
    xb_status st = xb_xnet_init(hw, m, &t.xn);
    if (st) return st;
    xb_xnet_keep_ranges(t.xn, 1);
    xb_xnet_set_backward(t.xn, xo->backward);
    xb_xnet_attach(t.xn);
    xb_train_hooks hk = {&t, epoch_begin_, before_forward_, after_backward_, after_update_, report_};
    xb_train_opts oo = *o;
    oo.hooks = &hk;
    st = xb_train(m, train, test, &oo, res);
    xb_xnet_free(t.xn); /* detaches */
    return st;
}
