/*
 * train.c -- the training loop (shuffle, augment, forward, backward, schedule, optimizer step), the
 * per-epoch evaluation, stochastic weight averaging, and checkpoints that make --resume continue bit
 * for bit: the checkpoint holds the parameters and buffers, the optimizer moments, the epoch's
 * permutation and position, the random streams, the step counter and the SWA average.
 */
#include "nn_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

xb_train_opts xb_train_opts_default(void) {
    xb_train_opts o;
    memset(&o, 0, sizeof o);
    o.epochs = 1;
    o.batch = 128;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    o.optimizer = XB_OPT_SGD;
    o.schedule = XB_SCHED_COSINE;
    o.decay_all = 1;
    o.augment = 1;
    o.seed = 1;
    o.threads = 1;
    o.progress = 1;
    return o;
}

/* The images and labels of d fit the model's input and outputs. */
static xb_status data_fits(const xb_model *m, const xb_dataset *d) {
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    if (d->c != c || d->h != h || d->w != w)
        return xb_errorf(XB_ERR_SHAPE, "%s: images are %dx%dx%d but model '%s' takes %dx%dx%d", d->path, d->c, d->h,
                         d->w, xb_model_name(m), c, h, w);
    if (d->classes > xb_model_classes(m))
        return xb_errorf(XB_ERR_SHAPE, "%s: %d classes but model '%s' has %d outputs. HINT: use a model with "
                         "classes = %d", d->path, d->classes, xb_model_name(m), xb_model_classes(m), d->classes);
    return XB_OK;
}

xb_status xb_evaluate(xb_model *m, const xb_dataset *d, int64_t limit, int batch, int progress,
                      xb_eval_result *r) {
    memset(r, 0, sizeof *r);
    xb_status st = data_fits(m, d);
    if (st) return st;
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    int64_t n = limit > 0 && limit < d->n ? limit : d->n;
    if ((st = xb_model_set_batch(m, batch))) return st;
    xb_model_train_mode(m, 0);
    float *x = xb_malloc((size_t)batch * c * h * w * sizeof(float));
    int64_t *idx = xb_malloc((size_t)batch * sizeof(int64_t));
    int32_t *lab = xb_malloc((size_t)batch * sizeof(int32_t));
    xb_progress pb;
    xb_progress_start(&pb, "eval ", n, progress);
    double t0 = xb_time_s(), loss_sum = 0;
    for (int64_t s = 0; s < n; s += batch) {
        int nb = (int)(n - s < batch ? n - s : batch);
        for (int i = 0; i < nb; i++) idx[i] = s + i;
        xb_dataset_batch(d, idx, nb, 0, 0, NULL, x, lab);
        if ((st = xb_model_forward(m, nb, x, NULL, NULL))) {
            xb_progress_end(&pb, "failed");
            xb_free(x); xb_free(idx); xb_free(lab);
            return st;
        }
        int correct = 0;
        loss_sum += xb_model_loss(m, nb, lab, 0.0f, &correct) * nb;
        r->correct += correct;
        char extra[64];
        snprintf(extra, sizeof extra, "acc %.2f%%", 100.0 * (double)r->correct / (double)(s + nb));
        xb_progress_update(&pb, s + nb, extra);
    }
    r->n = n;
    r->loss = loss_sum / (double)n;
    r->accuracy = (double)r->correct / (double)n;
    r->seconds = xb_time_s() - t0;
    char extra[64];
    snprintf(extra, sizeof extra, "acc %.2f%%", 100.0 * r->accuracy);
    xb_progress_end(&pb, extra);
    xb_free(x); xb_free(idx); xb_free(lab);
    return XB_OK;
}

xb_status xb_update_bn(xb_model *m, const xb_dataset *d, int batch, int progress, xb_rng *rng) {
    return xb_update_bn_n(m, d, 0, batch, progress, rng);
}

xb_status xb_update_bn_n(xb_model *m, const xb_dataset *d, int64_t limit, int batch, int progress, xb_rng *rng) {
    xb_status st = data_fits(m, d);
    if (st) return st;
    if ((st = xb_model_set_batch(m, batch))) return st;
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    float *x = xb_malloc((size_t)batch * c * h * w * sizeof(float));
    int64_t *idx = xb_malloc((size_t)batch * sizeof(int64_t));
    int32_t *lab = xb_malloc((size_t)batch * sizeof(int32_t));
    xb_model_reset_bn_stats(m);
    xb_model_bn_cumulative(m, 1);
    xb_model_train_mode(m, 1);
    xb_progress pb;
    const int64_t total = limit > 0 && limit < d->n ? limit : d->n;
    xb_progress_start(&pb, "bn stats", total, progress);
    for (int64_t s = 0; s < total && !st; s += batch) {
        int nb = (int)(total - s < batch ? total - s : batch);
        for (int i = 0; i < nb; i++) idx[i] = s + i;
        xb_dataset_batch(d, idx, nb, 0, 0, NULL, x, lab);
        st = xb_model_forward(m, nb, x, NULL, rng);
        xb_progress_update(&pb, s + nb, "");
    }
    xb_progress_end(&pb, "");
    xb_model_bn_cumulative(m, 0);
    xb_model_train_mode(m, 0);
    xb_free(x); xb_free(idx); xb_free(lab);
    return st;
}

/* ---- checkpoints -------------------------------------------------------------------------------- */

typedef struct train_state {
    int64_t epoch, pos, step;
    double elapsed0;          /* wall seconds the run had taken before this process (from --resume) */
    double t_start;           /* this process's start of training (xb_time_s) */
    int64_t *perm;
    xb_rng rng_shuffle, rng_aug, rng_drop;
    float *swa;               /* SWA: running mean of the weights at the ends of the SWA epochs */
    int64_t swa_n;            /* snapshots in it */
} train_state;

static void rng_pack(const xb_rng *r, int64_t out[6]) {
    memcpy(out, r->s, 4 * sizeof(uint64_t));
    memcpy(&out[4], &r->spare, sizeof(double));
    out[5] = r->has_spare;
}
static void rng_unpack(const int64_t in[6], xb_rng *r) {
    memcpy(r->s, in, 4 * sizeof(uint64_t));
    memcpy(&r->spare, &in[4], sizeof(double));
    r->has_spare = (int)in[5];
}

static const char *const opt_names[] = {"sgd", "adam", "adamw"};

static xb_status save_checkpoint(xb_model *m, const xb_optim *o, const train_state *ts, const xb_train_opts *opt,
                                 int64_t n_train, const char *path) {
    xb_safetensors st;
    xb_st_init(&st);
    int64_t *scratch = xb_calloc((size_t)xb_model_n_params(m) * sizeof(int64_t) + 8);
    xb_model_add_to_st(m, &st, scratch);
    int64_t n = xb_model_n_trainable(m);
    xb_tensor tm = {.dtype = XB_F32, .ndim = 1, .shape = {n, 1, 1, 1}, .data = o->m};
    xb_st_add(&st, "__optim.m", tm);
    if (o->v) { tm.data = o->v; xb_st_add(&st, "__optim.v", tm); }
    xb_tensor tp = {.dtype = XB_I64, .ndim = 1, .shape = {n_train, 1, 1, 1}, .data = ts->perm};
    xb_st_add(&st, "__perm", tp);
    int64_t r[3][6];
    rng_pack(&ts->rng_shuffle, r[0]); rng_pack(&ts->rng_aug, r[1]); rng_pack(&ts->rng_drop, r[2]);
    xb_tensor tr = {.dtype = XB_I64, .ndim = 2, .shape = {3, 6, 1, 1}, .data = r};
    xb_st_add(&st, "__rng", tr);
    if (ts->swa_n) {
        xb_tensor ta = {.dtype = XB_F32, .ndim = 1, .shape = {n, 1, 1, 1}, .data = ts->swa};
        xb_st_add(&st, "__swa", ta);
    }
    char buf[10][32];
    snprintf(buf[8], 32, "%lld", (long long)ts->swa_n);
    snprintf(buf[9], 32, "%.17g", opt->swa_lr);
    snprintf(buf[7], 32, "%d", opt->cutout);
    snprintf(buf[6], 32, "%.3f", ts->elapsed0 + xb_time_s() - ts->t_start);
    snprintf(buf[0], 32, "%lld", (long long)ts->epoch);
    snprintf(buf[1], 32, "%lld", (long long)ts->pos);
    snprintf(buf[2], 32, "%lld", (long long)ts->step);
    snprintf(buf[3], 32, "%lld", (long long)o->step);
    snprintf(buf[4], 32, "%d", opt->batch);
    snprintf(buf[5], 32, "%d", opt->epochs);
    xb_st_add_meta(&st, "xbar_checkpoint", "1");
    xb_st_add_meta(&st, "xbar_model", xb_model_name(m));
    xb_st_add_meta(&st, "epoch", buf[0]);
    xb_st_add_meta(&st, "pos", buf[1]);
    xb_st_add_meta(&st, "step", buf[2]);
    xb_st_add_meta(&st, "optim_step", buf[3]);
    xb_st_add_meta(&st, "batch", buf[4]);
    xb_st_add_meta(&st, "epochs", buf[5]);
    xb_st_add_meta(&st, "optimizer", opt_names[o->kind]);
    xb_st_add_meta(&st, "elapsed_s", buf[6]);
    xb_st_add_meta(&st, "cutout", buf[7]);
    xb_st_add_meta(&st, "swa_n", buf[8]);
    if (opt->swa_epochs) xb_st_add_meta(&st, "swa_lr", buf[9]);
    if (opt->model_cfg) xb_st_add_meta(&st, "model_cfg", opt->model_cfg);
    xb_status s = xb_st_save(path, &st);
    xb_st_free(&st);
    xb_free(scratch);
    return s;
}

static xb_status meta_int(const xb_safetensors *st, const char *path, const char *key, int64_t *out) {
    const char *v = xb_st_meta(st, key);
    char *end;
    if (!v || !*v) return xb_errorf(XB_ERR_FORMAT, "%s: checkpoint metadata '%s' is missing. HINT: --resume takes "
                                    "a checkpoint.safetensors written by xbar train", path, key);
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || x < 0)
        return xb_errorf(XB_ERR_FORMAT, "%s: checkpoint metadata '%s' = '%s' is not a count", path, key, v);
    *out = x;
    return XB_OK;
}

static xb_status load_checkpoint(xb_model *m, xb_optim *o, train_state *ts, const xb_train_opts *opt,
                                 int64_t n_train, const char *path) {
    xb_safetensors st;
    xb_status s = xb_st_load(path, &st);
    if (s) return s;
#define FAIL(...) do { s = xb_errorf(__VA_ARGS__); goto out; } while (0)
    if (!xb_st_meta(&st, "xbar_checkpoint"))
        FAIL(XB_ERR_FORMAT, "%s: not an xbar checkpoint (no 'xbar_checkpoint' metadata). HINT: pass the "
             "checkpoint.safetensors from the --out directory of xbar train, not the weights file", path);
    if ((s = xb_model_weights_from_st(m, &st, path))) goto out;
    int64_t v[6];
    const char *keys[6] = {"epoch", "pos", "step", "optim_step", "batch", "epochs"};
    for (int i = 0; i < 6; i++)
        if ((s = meta_int(&st, path, keys[i], &v[i]))) goto out;
    const char *on = xb_st_meta(&st, "optimizer");
    if (!on || strcmp(on, opt_names[o->kind]) != 0)
        FAIL(XB_ERR_ARG, "%s: the checkpoint was trained with --optimizer %s, not %s. HINT: resume with the same "
             "optimizer", path, on ? on : "?", opt_names[o->kind]);
    if (v[4] != opt->batch || v[5] != opt->epochs)
        FAIL(XB_ERR_ARG, "%s: the checkpoint was made with --batch %lld --epochs %lld, this run has --batch %d "
             "--epochs %d. HINT: resume with the same values so the schedule continues unchanged",
             path, (long long)v[4], (long long)v[5], opt->batch, opt->epochs);
    int64_t cut = 0; /* absent in checkpoints from before --cutout: 0 */
    if (xb_st_meta(&st, "cutout") && (s = meta_int(&st, path, "cutout", &cut))) goto out;
    if (cut != opt->cutout)
        FAIL(XB_ERR_ARG, "%s: the checkpoint was made with --cutout %lld, this run has --cutout %d. HINT: resume "
             "with the same --cutout (it changes the random stream)", path, (long long)cut, opt->cutout);
    /* SWA: a run whose schedule has ended can be extended by SWA epochs; once SWA steps were taken, they
     * continue at the same rate */
    int64_t spe = (n_train + opt->batch - 1) / opt->batch, swa_n = 0;
    if (xb_st_meta(&st, "swa_n") && (s = meta_int(&st, path, "swa_n", &swa_n))) goto out;
    if (v[2] > (int64_t)opt->epochs * spe) {
        const char *sl = xb_st_meta(&st, "swa_lr");
        char *end = NULL;
        double lr = sl ? strtod(sl, &end) : -1;
        if (!sl || *end || !(lr > 0))
            FAIL(XB_ERR_FORMAT, "%s: the checkpoint is past its %lld scheduled epochs but has no valid 'swa_lr' "
                 "metadata", path, (long long)opt->epochs);
        if (!opt->swa_epochs || lr != opt->swa_lr)
            FAIL(XB_ERR_ARG, "%s: the checkpoint is in its SWA epochs at --swa-lr %g; this run has --swa-epochs %d "
                 "--swa-lr %g. HINT: resume with the same --swa-lr and --swa-epochs of at least %lld", path, lr,
                 opt->swa_epochs, opt->swa_lr, (long long)(v[0] - opt->epochs));
    }
    const xb_tensor *ta = xb_st_get(&st, "__swa");
    if (swa_n && (!ta || ta->dtype != XB_F32 || xb_tensor_numel(ta) != xb_model_n_trainable(m)))
        FAIL(XB_ERR_FORMAT, "%s: the SWA average __swa is missing or has the wrong size", path);
    const xb_tensor *tm = xb_st_get(&st, "__optim.m"), *tv = xb_st_get(&st, "__optim.v");
    const xb_tensor *tp = xb_st_get(&st, "__perm"), *tr = xb_st_get(&st, "__rng");
    int64_t n = xb_model_n_trainable(m);
    if (!tm || tm->dtype != XB_F32 || xb_tensor_numel(tm) != n || (o->v && (!tv || tv->dtype != XB_F32 ||
        xb_tensor_numel(tv) != n)))
        FAIL(XB_ERR_FORMAT, "%s: optimizer state __optim.m/__optim.v is missing or has the wrong size", path);
    if (!tp || tp->dtype != XB_I64 || xb_tensor_numel(tp) != n_train)
        FAIL(XB_ERR_FORMAT, "%s: the data order __perm is missing or is for %lld images, not %lld. HINT: resume "
             "with the same training data and --train-limit", path, tp ? (long long)xb_tensor_numel(tp) : 0LL,
             (long long)n_train);
    if (!tr || tr->dtype != XB_I64 || xb_tensor_numel(tr) != 18)
        FAIL(XB_ERR_FORMAT, "%s: random-stream state __rng is missing or malformed", path);
    for (int64_t i = 0; i < n_train; i++) {
        int64_t p = ((const int64_t *)tp->data)[i];
        if (p < 0 || p >= n_train) FAIL(XB_ERR_FORMAT, "%s: __perm[%lld] = %lld is out of range", path, (long long)i, (long long)p);
        ts->perm[i] = p;
    }
    if (v[1] > n_train) FAIL(XB_ERR_FORMAT, "%s: position %lld is past the %lld images", path, (long long)v[1], (long long)n_train);
    memcpy(o->m, tm->data, (size_t)n * sizeof(float));
    if (o->v) memcpy(o->v, tv->data, (size_t)n * sizeof(float));
    const int64_t *r = tr->data;
    rng_unpack(r, &ts->rng_shuffle); rng_unpack(r + 6, &ts->rng_aug); rng_unpack(r + 12, &ts->rng_drop);
    ts->epoch = v[0]; ts->pos = v[1]; ts->step = v[2];
    ts->swa_n = swa_n;
    if (swa_n) memcpy(ts->swa, ta->data, (size_t)n * sizeof(float));
    o->step = v[3];
    const char *el = xb_st_meta(&st, "elapsed_s"); /* absent in older checkpoints: 0 */
    if (el) {
        char *end;
        double e = strtod(el, &end);
        if (*end || !(e >= 0) || e > 1e12)
            FAIL(XB_ERR_FORMAT, "%s: checkpoint metadata 'elapsed_s' = '%s' is not a duration in seconds", path, el);
        ts->elapsed0 = e;
    }
    s = XB_OK;
out:
    xb_st_free(&st);
    return s;
#undef FAIL
}

xb_status xb_checkpoint_prune(const char *path, xb_model *pruned, const int64_t *param_map, const char *model_text) {
    xb_safetensors in, out;
    xb_status s = xb_st_load(path, &in);
    if (s) return s;
    xb_st_init(&out);
    const int64_t n = xb_model_n_trainable(pruned);
    int64_t *scratch = xb_calloc((size_t)xb_model_n_params(pruned) * sizeof(int64_t) + 8);
    float *moved[3] = {NULL, NULL, NULL};
    static const char *const per_param[3] = {"__optim.m", "__optim.v", "__swa"};
    xb_model_add_to_st(pruned, &out, scratch);
    for (int k = 0; k < 3 && !s; k++) { /* per-parameter state: the kept elements, through the map */
        const xb_tensor *t = xb_st_get(&in, per_param[k]);
        if (!t) continue;
        if (t->dtype != XB_F32)
            s = xb_errorf(XB_ERR_FORMAT, "%s: %s is not float32", path, per_param[k]);
        moved[k] = s ? NULL : xb_try_malloc((size_t)(n + 1) * sizeof(float));
        if (!s && !moved[k]) s = xb_errorf(XB_ERR_NOMEM, "%s: no memory for the pruned optimizer state", path);
        for (int64_t j = 0; !s && j < n; j++) {
            if (param_map[j] < 0 || param_map[j] >= xb_tensor_numel(t)) {
                s = xb_errorf(XB_ERR_FORMAT, "%s: %s has %lld elements; the map asks for element %lld. HINT: prune "
                              "the checkpoint of the model the map was made from", path, per_param[k],
                              (long long)xb_tensor_numel(t), (long long)param_map[j]);
                break;
            }
            moved[k][j] = ((const float *)t->data)[param_map[j]];
        }
        if (!s) {
            xb_tensor tm = {.dtype = XB_F32, .ndim = 1, .shape = {n, 1, 1, 1}, .data = moved[k]};
            xb_st_add(&out, per_param[k], tm);
        }
    }
    for (int k = 0; k < 2 && !s; k++) { /* the data order and the random streams, as they are */
        const xb_tensor *t = xb_st_get(&in, k ? "__rng" : "__perm");
        if (!t) s = xb_errorf(XB_ERR_FORMAT, "%s: not an xbar checkpoint (no %s)", path, k ? "__rng" : "__perm");
        else {
            xb_tensor tt = *t;
            tt.owner = 0; /* borrowed: `in` frees it */
            xb_st_add(&out, k ? "__rng" : "__perm", tt);
        }
    }
    for (int i = 0; i < in.n_meta && !s; i++)
        if (strcmp(in.meta_key[i], "model_cfg") != 0) xb_st_add_meta(&out, in.meta_key[i], in.meta_val[i]);
    if (!s && model_text) xb_st_add_meta(&out, "model_cfg", model_text);
    if (!s) s = xb_st_save(path, &out);
    for (int k = 0; k < 3; k++) xb_free(moved[k]);
    xb_free(scratch);
    xb_st_free(&out);
    xb_st_free(&in);
    return s;
}

xb_status xb_checkpoint_model_text(const char *path, char **text) {
    xb_safetensors st;
    *text = NULL;
    xb_status s = xb_st_load(path, &st);
    if (s) return s;
    const char *t = xb_st_meta(&st, "model_cfg");
    if (t && !(*text = strdup(t))) s = xb_errorf(XB_ERR_NOMEM, "%s: no memory for the model text", path);
    xb_st_free(&st);
    return s;
}

static void shuffle(int64_t *perm, int64_t n, xb_rng *r) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)xb_rng_below(r, (uint64_t)i + 1);
        int64_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
}

/* mkdir -p: the output directory and any missing parents (`--out runs/demo` in a fresh clone). */
static xb_status ensure_dir(const char *dir) {
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return xb_errorf(XB_ERR_ARG, "--out '%s': %s. HINT: pass a directory path of 1 to %zu characters", dir,
                         n ? "path too long" : "empty path", sizeof path - 1);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != 0) continue;
        if (path[i - 1] == '/') continue; /* "a//b", trailing "/" */
        char c = path[i];
        path[i] = 0;
        struct stat st;
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return xb_errorf(XB_ERR_IO, "%s: cannot create the output directory (at %s: %s). HINT: pick a writable --out",
                             dir, path, strerror(errno));
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            return xb_errorf(XB_ERR_IO, "%s: cannot create the output directory (%s is not a directory). "
                             "HINT: pick another --out", dir, path);
        path[i] = c;
    }
    return XB_OK;
}

/* ---- the loop ----------------------------------------------------------------------------------- */

/* One step: hooks around forward, backward and the optimizer (the model's operator hears of the update
 * before the after_update hook). */
static xb_status train_step(xb_model *m, xb_optim *opt, const xb_train_hooks *hk, const xb_train_opts *o,
                            const uint8_t *mask, int nb, const float *x, const int32_t *lab, double lr,
                            train_state *ts, double *loss, int *correct) {
    xb_status s;
    if (hk && hk->before_forward && (s = hk->before_forward(hk->ctx, m, ts->step, ts->epoch))) return s;
    if ((s = xb_model_forward(m, nb, x, NULL, &ts->rng_drop))) return s;
    if ((s = xb_model_backward(m, nb, lab, (float)o->label_smoothing, loss, correct))) return s;
    if (hk && hk->after_backward && (s = hk->after_backward(hk->ctx, m, ts->step))) return s;
    xb_optim_step_masked(opt, xb_model_params(m), xb_model_grads(m), mask, o->frozen, lr);
    const xb_mm_op *op = xb_model_op(m);
    if (op && op->after_update && (s = op->after_update(op->ctx, m))) return s;
    if (hk && hk->after_update && (s = hk->after_update(hk->ctx, m, ts->step))) return s;
    return XB_OK;
}

/* The SWA weights: the average in place of the weights, batchnorm statistics from a pass over the
 * training images (its own random stream, so the run's streams are untouched), a test evaluation and
 * swa-weights.safetensors; then the run's weights and buffers are put back. */
static xb_status swa_eval(xb_model *m, const train_state *ts, const xb_dataset *train, const xb_dataset *test,
                          const xb_train_opts *o, const char *path, double *acc) {
    int64_t n = xb_model_n_trainable(m), nb = xb_model_n_buffer(m);
    float *keep_p = xb_malloc((size_t)n * sizeof(float)), *keep_b = xb_malloc((size_t)(nb ? nb : 1) * sizeof(float));
    memcpy(keep_p, xb_model_params(m), (size_t)n * sizeof(float));
    memcpy(keep_b, xb_model_buffers(m), (size_t)nb * sizeof(float));
    memcpy(xb_model_params(m), ts->swa, (size_t)n * sizeof(float));
    xb_rng rng;
    xb_rng_seed(&rng, o->seed, "swa-bn");
    xb_status s = xb_update_bn(m, train, o->batch, o->progress, &rng);
    *acc = -1;
    if (!s && test) {
        xb_eval_result er;
        if (!(s = xb_evaluate(m, test, o->eval_limit, o->batch, o->progress, &er))) *acc = er.accuracy;
    }
    if (!s && path) s = xb_model_save_weights(m, path);
    memcpy(xb_model_params(m), keep_p, (size_t)n * sizeof(float));
    memcpy(xb_model_buffers(m), keep_b, (size_t)nb * sizeof(float));
    xb_free(keep_p); xb_free(keep_b);
    return s;
}

xb_status xb_train(xb_model *m, const xb_dataset *train, const xb_dataset *test, const xb_train_opts *o,
                   xb_train_result *res) {
    xb_train_result r;
    memset(&r, 0, sizeof r);
    r.swa_test_acc = -1;
    xb_status s = data_fits(m, train);
    if (s) return s;
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    if (o->batch < 1) return xb_errorf(XB_ERR_ARG, "batch size must be at least 1");
    if (o->swa_epochs < 0 || (o->swa_epochs && !(o->swa_lr > 0)))
        return xb_errorf(XB_ERR_ARG, "SWA needs --swa-epochs >= 1 and --swa-lr > 0 (got %d and %g)", o->swa_epochs,
                         o->swa_lr);
    if (o->swa_epochs && o->epochs <= 0)
        return xb_errorf(XB_ERR_ARG, "--swa-epochs follows the scheduled epochs. HINT: give --epochs");
    int64_t spe = (train->n + o->batch - 1) / o->batch;
    int epochs = o->epochs;
    if (epochs <= 0) {
        if (o->steps <= 0) return xb_errorf(XB_ERR_ARG, "give --epochs or --steps");
        epochs = (int)((o->steps + spe - 1) / spe);
    }
    int64_t total = (int64_t)epochs * spe;        /* the schedule's steps; then SWA at a constant rate */
    int all_epochs = epochs + o->swa_epochs;
    int64_t stop = (int64_t)all_epochs * spe;
    if (o->steps > 0 && o->steps < stop) stop = o->steps;
    xb_set_threads(o->threads > 0 ? o->threads : 1);
    if ((s = xb_model_set_batch(m, o->batch))) return s;
    xb_optim opt;
    if ((s = xb_optim_init(&opt, o->optimizer, xb_model_n_trainable(m)))) return s;
    opt.momentum = o->momentum;
    opt.nesterov = o->nesterov;
    opt.weight_decay = o->weight_decay;
    train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.perm = xb_malloc((size_t)train->n * sizeof(int64_t));
    ts.swa = xb_malloc((size_t)xb_model_n_trainable(m) * sizeof(float));
    xb_rng_seed(&ts.rng_shuffle, o->seed, "shuffle");
    xb_rng_seed(&ts.rng_aug, o->seed, "augment");
    xb_rng_seed(&ts.rng_drop, o->seed, "dropout");
    xb_train_opts oo = *o;
    oo.epochs = epochs;
    if (o->resume && (s = load_checkpoint(m, &opt, &ts, &oo, train->n, o->resume))) goto done;
    char wpath[1100], cpath[1100], spath[1100];
    if (o->out_dir) {
        if ((s = ensure_dir(o->out_dir))) goto done;
        snprintf(wpath, sizeof wpath, "%s/weights.safetensors", o->out_dir);
        snprintf(cpath, sizeof cpath, "%s/checkpoint.safetensors", o->out_dir);
        snprintf(spath, sizeof spath, "%s/swa-weights.safetensors", o->out_dir);
    }
    const uint8_t *mask = o->decay_all ? NULL : xb_model_decay_mask(m);
    float *x = xb_malloc((size_t)o->batch * c * h * w * sizeof(float));
    int32_t *lab = xb_malloc((size_t)o->batch * sizeof(int32_t));
    double t_start = xb_time_s(), t_train = 0;
    ts.t_start = t_start;
    int64_t imgs = 0, run_steps = 0, warm_imgs = 0;
    double warm_t = -1; /* training seconds when this call's first XB_WARMUP_STEPS steps were done */
    const xb_train_hooks *hk = o->hooks;
    while (ts.epoch < all_epochs && ts.step < stop) {
        if (ts.pos == 0) shuffle(ts.perm, train->n, &ts.rng_shuffle);
        if (ts.pos == 0 && hk && hk->epoch_begin && (s = hk->epoch_begin(hk->ctx, m, ts.epoch))) goto done_loop;
        char label[32];
        snprintf(label, sizeof label, "epoch %lld/%d", (long long)ts.epoch + 1, all_epochs);
        xb_progress pb;
        int64_t ep_steps = spe - (ts.pos + o->batch - 1) / o->batch;
        if (stop - ts.step < ep_steps) ep_steps = stop - ts.step;
        xb_progress_start(&pb, label, ep_steps, o->progress);
        double loss_sum = 0, t0 = xb_time_s();
        int64_t seen = 0, correct_sum = 0, k = 0;
        xb_model_train_mode(m, 1);
        while (ts.pos < train->n && ts.step < stop) {
            int nb = (int)(train->n - ts.pos < o->batch ? train->n - ts.pos : o->batch);
            xb_dataset_batch(train, ts.perm + ts.pos, nb, o->augment, o->cutout, &ts.rng_aug, x, lab);
            double loss = 0;
            int correct = 0;
            const double lr = ts.step < total ? xb_schedule_lr(o->schedule, o->lr, ts.step, total, spe) : o->swa_lr;
            if ((s = train_step(m, &opt, hk, o, mask, nb, x, lab, lr, &ts, &loss, &correct))) {
                char why[1536];
                snprintf(why, sizeof why, "%s", xb_last_error());
                xb_errorf(s, "epoch %lld, step %lld: %s", (long long)ts.epoch + 1, (long long)ts.step + 1, why);
                xb_progress_end(&pb, "failed");
                goto done_loop;
            }
            ts.pos += nb;
            ts.step++;
            k++;
            seen += nb;
            imgs += nb;
            if (++run_steps == XB_WARMUP_STEPS) {
                warm_t = t_train + (xb_time_s() - t0);
                warm_imgs = imgs;
            }
            correct_sum += correct;
            loss_sum += loss * nb;
            char extra[96];
            double el = xb_time_s() - t0;
            snprintf(extra, sizeof extra, "loss %.4f acc %.2f%% %.0f img/s lr %.4g", loss_sum / (double)seen,
                     100.0 * (double)correct_sum / (double)seen, (double)seen / (el > 0 ? el : 1e-9), lr);
            xb_progress_update(&pb, k, extra);
        }
        double el = xb_time_s() - t0;
        t_train += el;
        r.train_loss = loss_sum / (double)(seen ? seen : 1);
        r.train_acc = (double)correct_sum / (double)(seen ? seen : 1);
        char extra[96];
        snprintf(extra, sizeof extra, "loss %.4f acc %.2f%% %.0f img/s", r.train_loss, 100.0 * r.train_acc,
                 (double)seen / (el > 0 ? el : 1e-9));
        xb_progress_end(&pb, extra);
        int epoch_done = ts.pos >= train->n;
        if (epoch_done) { ts.epoch++; ts.pos = 0; r.epochs_done++; }
        double acc = -1, swa_acc = -1;
        if (epoch_done && ts.epoch > epochs) { /* an SWA epoch: its end weights join the average */
            float *wv = xb_model_params(m);
            int64_t n = xb_model_n_trainable(m);
            if (ts.swa_n == 0) memcpy(ts.swa, wv, (size_t)n * sizeof(float));
            else for (int64_t i = 0; i < n; i++) ts.swa[i] += (wv[i] - ts.swa[i]) / (float)(ts.swa_n + 1);
            ts.swa_n++;
            if ((test || o->out_dir) &&
                (s = swa_eval(m, &ts, train, test, o, o->out_dir ? spath : NULL, &swa_acc))) goto done_loop;
            r.swa_test_acc = swa_acc;
        }
        int64_t tn = 0;
        if (epoch_done && test) {
            xb_eval_result er;
            if ((s = xb_evaluate(m, test, o->eval_limit, o->batch, o->progress, &er))) goto done_loop;
            acc = er.accuracy;
            r.test_acc = acc;
            tn = er.n;
        }
        if (hk && hk->report) {
            xb_epoch_report rep = {ts.epoch, all_epochs, ts.step, epoch_done, r.train_loss, r.train_acc,
                                   (double)seen / (el > 0 ? el : 1e-9), acc, tn, swa_acc, ts.swa_n,
                                   ts.elapsed0 + xb_time_s() - t_start};
            hk->report(hk->ctx, &rep);
        }
        if (o->out_dir) {
            if ((s = xb_model_save_weights(m, wpath))) goto done_loop;
            if ((s = save_checkpoint(m, &opt, &ts, &oo, train->n, cpath))) goto done_loop;
        }
    }
    s = XB_OK;
done_loop:
    xb_free(x);
    xb_free(lab);
    r.steps_done = ts.step;
    r.epochs_total = ts.epoch;
    r.swa_n = ts.swa_n;
    r.seconds = xb_time_s() - t_start;
    r.seconds_total = ts.elapsed0 + r.seconds;
    r.images_per_s = t_train > 0 ? (double)imgs / t_train : 0;
    r.steady_images_per_s = warm_t >= 0 && imgs > warm_imgs && t_train > warm_t
                                ? (double)(imgs - warm_imgs) / (t_train - warm_t) : r.images_per_s;
done:
    xb_optim_free(&opt);
    xb_free(ts.perm);
    xb_free(ts.swa);
    if (res) *res = r;
    return s;
}
