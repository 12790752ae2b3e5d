/* xtrain.c -- training through the crossbars, as hooks around the trainer's loop (train.c, unchanged
 * underneath) with the crossbar network as the model's operator.  aware: programmed from the current
 * weights after every update (a new device sample per step, per epoch or never; the circuit solved at
 * every refresh_steps-th programming, I-FCM in between), calibrated ranges set at each epoch's start.
 * onchip: programmed once, then every update written into the conductances (xonchip.c). */
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
    static const char *const names[] = {"aware", "onchip"};
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
    int onchip, started, save_err, solved;
    char save_msg[512];
    const xb_hw *hw;
    float *w_old;             /* onchip: the parameters before the optimizer step */
    xb_xtrain_stats st;
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
    const double t0 = xb_time_s();
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
    t->st.calibrate_s += xb_time_s() - t0;
    return st;
}

/* aware: tiles from the current weights for `step` (unless they hold them already), calibrated when the
 * epoch has no ranges yet; the circuit is solved at every refresh_steps-th step (every step when 0, and
 * at the first programming of the call), the held distortion ratios used in between */
static xb_status program_(xt_ *t, xb_model *m, int64_t step) {
    /* the tiles already hold these weights with this sample (frozen weights: --trainable bn) */
    if (xb_xnet_current(t->xn, sample_seed_(t, step)) && (t->calibrated || !xb_xnet_needs_calibration(t->xn)))
        return XB_OK;
    const double t0 = xb_time_s();
    const int L = t->hw->update.refresh_steps;
    const int solve = L == 0 || step % L == 0 || !t->solved;
    xb_status st = solve ? xb_xnet_program(t->xn, sample_seed_(t, step))
                         : xb_xnet_program_distorted(t->xn, sample_seed_(t, step));
    t->solved |= solve && !st;
    t->st.program_s += xb_time_s() - t0;
    t->st.programs++;
    if (solve) t->st.solves++;
    else t->st.distortion_refreshes++;
    if (!st && !t->calibrated && xb_xnet_needs_calibration(t->xn)) st = calibrate_(t, m);
    return st;
}

static xb_status epoch_begin_(void *ctx, xb_model *m, int64_t epoch) {
    xt_ *t = ctx;
    t->epoch = epoch;
    if (!t->onchip) { /* onchip: the ranges set at the start stay, as the hardware's would */
        t->calibrated = 0;
        xb_xnet_clear_ranges(t->xn);
    }
    return t->user && t->user->epoch_begin ? t->user->epoch_begin(t->user->ctx, m, epoch) : XB_OK;
}

static int refresh_how_(const xt_ *t, int64_t step) {
    const xb_update_cfg *u = &t->hw->update;
    const int due = u->refresh_steps == 0 || (step + 1) % u->refresh_steps == 0;
    return due ? 1 : u->refresh_solver == XB_REFRESH_DISTORTION ? 0 : -1;
}

/* onchip: programmed once (or the saved state loaded and the last step's refresh redone), then only
 * calibrated per epoch */
static xb_status onchip_before_(xt_ *t, xb_model *m, int64_t step) {
    xb_status st = XB_OK;
    if (!t->started) {
        const double t0 = xb_time_s();
        st = xb_xnet_program(t->xn, t->xo->device_seed);
        t->st.program_s += xb_time_s() - t0;
        t->st.programs++;
        if (!st && t->xo->state_in) {
            st = xb_xnet_onchip_load(t->xn, t->xo->state_in);
            if (!st && step > 0) st = xb_xnet_onchip_refresh(t->xn, refresh_how_(t, step - 1));
            t->calibrated = 1; /* the state carries the ranges set at the start */
        }
        t->started = !st;
    }
    if (!st && xb_xnet_needs_calibration(t->xn) && !t->calibrated) st = calibrate_(t, m);
    return st;
}

static xb_status before_forward_(void *ctx, xb_model *m, int64_t step, int64_t epoch) {
    xt_ *t = ctx;
    t->epoch = epoch;
    if (t->onchip) {
        xb_status st = onchip_before_(t, m, step);
        if (!st && t->user && t->user->before_forward) st = t->user->before_forward(t->user->ctx, m, step, epoch);
        return st;
    }
    /* the tiles hold the sample of this step from the last update, except on the first step of a call */
    const int need_cal = xb_xnet_needs_calibration(t->xn) && !t->calibrated;
    xb_status st = xb_xnet_current(t->xn, sample_seed_(t, step)) && !need_cal ? XB_OK : program_(t, m, step);
    if (!st && t->user && t->user->before_forward) st = t->user->before_forward(t->user->ctx, m, step, epoch);
    return st;
}

static xb_status after_backward_(void *ctx, xb_model *m, int64_t step) {
    xt_ *t = ctx;
    if (t->onchip) memcpy(t->w_old, xb_model_params(m), (size_t)xb_model_n_trainable(m) * sizeof(float));
    return t->user && t->user->after_backward ? t->user->after_backward(t->user->ctx, m, step) : XB_OK;
}

/* the weights changed: program the tiles for the next step (and for the epoch's test evaluation) */
/* onchip: the step's weight changes into the conductances, then the matrices as [update] says */
static xb_status onchip_after_(xt_ *t, int64_t step) {
    double t0 = xb_time_s();
    xb_status st = xb_xnet_onchip_update(t->xn, t->w_old, (uint64_t)step, &t->st.updates);
    t->st.update_s += xb_time_s() - t0;
    if (st) return st;
    const int how = refresh_how_(t, step);
    t0 = xb_time_s();
    st = xb_xnet_onchip_refresh(t->xn, how);
    t->st.refresh_s += xb_time_s() - t0;
    if (how == 1) t->st.solves++;
    else if (how == 0) t->st.distortion_refreshes++;
    else t->st.holds++;
    return st;
}

static xb_status after_update_(void *ctx, xb_model *m, int64_t step) {
    xt_ *t = ctx;
    xb_status st = t->onchip ? onchip_after_(t, step) : program_(t, m, step + 1);
    if (!st && t->user && t->user->after_update) st = t->user->after_update(t->user->ctx, m, step);
    return st;
}

static void report_(void *ctx, const xb_epoch_report *r) {
    xt_ *t = ctx;
    /* the state goes beside the checkpoint the trainer writes next; a failure is kept for xb_xtrain */
    if (t->onchip && t->started && t->xo->state_out && !t->save_err) {
        if (xb_xnet_onchip_save(t->xn, t->xo->state_out)) {
            t->save_err = 1;
            snprintf(t->save_msg, sizeof t->save_msg, "%s", xb_last_error());
        }
    }
    if (t->user && t->user->report) t->user->report(t->user->ctx, r);
}

xb_status xb_xtrain(xb_model *m, const xb_hw *hw, const xb_dataset *train, const xb_dataset *test,
                    const xb_train_opts *o, const xb_xtrain_opts *xo, xb_train_result *res, xb_xtrain_stats *stats) {
    if ((unsigned)xo->mode >= XB_HWMODE_COUNT || (unsigned)xo->resample >= XB_RESAMPLE_COUNT ||
        (unsigned)xo->backward >= XB_XBWD_COUNT)
        return xb_errorf(XB_ERR_ARG, "training through crossbars: mode %d, resample %d or backward %d is out of range",
                         (int)xo->mode, (int)xo->resample, (int)xo->backward);
    xt_ t;
    memset(&t, 0, sizeof t);
    t.xo = xo;
    t.user = o->hooks;
    t.train = train;
    t.hw = hw;
    t.onchip = xo->mode == XB_HWMODE_ONCHIP;
    t.batch = o->batch;
    t.ncal = xo->calibration_images > 0 ? xo->calibration_images : hw->calibration_images;
    if (t.ncal > train->n) t.ncal = (int)train->n;
    xb_set_threads(o->threads > 0 ? o->threads : 1); /* the network sizes its buffers per thread */
    xb_status st = xb_xnet_init(hw, m, &t.xn);
    if (st) return st;
    if (t.onchip) {
        if (o->resume && !xo->state_in)
            st = xb_errorf(XB_ERR_ARG, "on-chip training resumes from its conductance state too. HINT: pass the "
                           "device-state.safetensors written beside the checkpoint");
        if (!st) st = xb_xnet_onchip_init(t.xn);
        if (!st) {
            t.w_old = xb_try_malloc(((size_t)xb_model_n_trainable(m) + 1) * sizeof(float));
            if (!t.w_old) st = xb_errorf(XB_ERR_NOMEM, "on-chip training: no memory for a copy of the weights");
        }
        if (st) {
            xb_xnet_free(t.xn);
            return st;
        }
    }
    if (!t.onchip && hw->update.refresh_steps > 0 && (st = xb_xnet_keep_distortion(t.xn))) {
        xb_xnet_free(t.xn);
        return st;
    }
    xb_xnet_keep_ranges(t.xn, 1);
    xb_xnet_set_backward(t.xn, xo->backward);
    xb_xnet_set_statistics(t.xn, 0);
    xb_xnet_attach(t.xn);
    xb_train_hooks hk = {&t, epoch_begin_, before_forward_, after_backward_, after_update_, report_};
    xb_train_opts oo = *o;
    oo.hooks = &hk;
    st = xb_train(m, train, test, &oo, res);
    if (!st && t.save_err) st = xb_errorf(XB_ERR_IO, "on-chip state: %s", t.save_msg);
    if (stats) *stats = t.st;
    xb_xnet_free(t.xn); /* detaches */
    xb_free(t.w_old);
    return st;
}
