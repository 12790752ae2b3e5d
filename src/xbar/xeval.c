/* xeval.c -- Monte-Carlo evaluation of a network on crossbar hardware: the float accuracy and K device
 * seeds (program, calibrate, evaluate) in one run, per-layer statistics, text and JSON reports.
 * Seeds are programmed together (one OpenMP loop over seeds x tiles) in groups that fit in memory,
 * then evaluated one after the other (each forward is itself parallel). */
#include "xb_xbar.h"
#include "xb_energy.h"

#include <math.h>
#include <string.h>
#include <time.h>

#define XE_GROUP_BYTES ((size_t)1 << 30) /* programmed state of the seeds programmed together */
#define XE_STATS_IMAGES 64                /* images through the hook (layer statistics) before folding */

size_t xb_xnet_state_bytes_(const xb_xnet *xn); /* xlayer.c */

/* CPU seconds of the whole process (all threads): robust where other jobs share the cores */
static double cpu_s_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

xb_xeval_opts xb_xeval_opts_default(void) {
    xb_xeval_opts o;
    memset(&o, 0, sizeof o);
    o.seeds = 1;
    o.seed = 1;
    o.batch = 256;
    o.progress = 1;
    o.software = 1;
    return o;
}

void xb_xeval_result_free(xb_xeval_result *r) {
    if (r->energy) xb_energy_report_free(r->energy);
    xb_free(r->energy);
    r->energy = NULL;
    xb_free(r->accuracy);
    xb_free(r->loss);
    xb_free(r->layers);
    memset(r, 0, sizeof *r);
}

/* Accuracy and loss on the first n images: of the float network (xn NULL), or of the crossbar network
 * xn through its hook; a foldable network runs its first batch through the hook (per-layer statistics,
 * and the energy probe's counts) and the rest folded into the model's weights (float speed).  *hooked: the
 * images that went through the hook. */
static xb_status eval_loop_(xb_model *m, xb_xnet *xn, const xb_dataset *d, int64_t n, int batch, int progress,
                            const char *label, double *acc, double *loss, int64_t *hooked) {
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    xb_status st = xb_model_set_batch(m, batch);
    if (st) return st;
    xb_model_train_mode(m, 0);
    float *x = xb_malloc((size_t)batch * c * h * w * sizeof(float));
    int64_t *idx = xb_malloc((size_t)batch * sizeof(int64_t));
    int32_t *lab = xb_malloc((size_t)batch * sizeof(int32_t));
    xb_progress pb;
    xb_progress_start(&pb, label, n, progress);
    int64_t correct = 0;
    double lsum = 0;
    /* a foldable network: the first XE_STATS_IMAGES through the hook (statistics), the rest folded */
    const int fold = xn && xb_xnet_foldable(xn);
    *hooked = 0;
    for (int64_t s = 0, nb; s < n && !st; s += nb) {
        nb = n - s < batch ? n - s : batch;
        if (fold && s == 0 && nb > XE_STATS_IMAGES) nb = XE_STATS_IMAGES;
        for (int i = 0; i < nb; i++) idx[i] = s + i;
        xb_dataset_batch(d, idx, (int)nb, 0, 0, NULL, x, lab);
        if (xn && s == 0) xb_xnet_attach(xn);
        if (fold && s > 0 && s <= XE_STATS_IMAGES) {
            st = xb_xnet_fold(xn, 1);
            if (!st && xb_xnet_probing(xn)) st = xb_xnet_energy_probe(xn, 0, 1); /* folded: nothing to observe */
        }
        if (xn && !(fold && s > 0)) *hooked += nb;
        if (!st) st = xb_model_forward(m, (int)nb, x, NULL, NULL);
        int cor = 0;
        lsum += xb_model_loss(m, (int)nb, lab, 0.0f, &cor) * (double)nb;
        correct += cor;
        char extra[64];
        snprintf(extra, sizeof extra, "acc %.2f%%", 100.0 * (double)correct / (double)(s + nb));
        xb_progress_update(&pb, s + nb, extra);
    }
    if (xn) {
        xb_xnet_fold(xn, 0);
        xb_xnet_detach(xn);
    }
    *acc = (double)correct / (double)n;
    *loss = lsum / (double)n;
    char extra[64];
    snprintf(extra, sizeof extra, "acc %.2f%%", 100.0 * *acc);
    xb_progress_end(&pb, extra);
    xb_free(x); xb_free(idx); xb_free(lab);
    return st;
}

/* Batchnorm running statistics of the programmed network xn recomputed through it on the first
 * o->adapt_bn images of o->adapt_data (the plain mean over the batches, torch's update_bn). */
static xb_status adapt_bn_(xb_model *m, xb_xnet *xn, const xb_xeval_opts *o) {
    xb_xnet_attach(xn);
    xb_rng rng;
    xb_rng_seed(&rng, o->seed, "adapt-bn");
    xb_status st = xb_update_bn_n(m, o->adapt_data, o->adapt_bn, o->batch, o->progress, &rng);
    xb_xnet_detach(xn);
    return st;
}

static void stats_add_(xb_xlayer_stats *a, const xb_xlayer_stats *s, int first) {
    if (first) { *a = *s; return; }
    a->stuck_gmin += s->stuck_gmin; a->stuck_gmax += s->stuck_gmax; a->g_clipped += s->g_clipped;
    a->adc_conversions += s->adc_conversions; a->adc_clipped += s->adc_clipped;
    a->dac_conversions += s->dac_conversions; a->dac_clipped += s->dac_clipped;
    a->adc_reruns += s->adc_reruns;
    a->err_sq += s->err_sq; a->ref_sq += s->ref_sq;
    a->program_s += s->program_s; a->forward_s += s->forward_s;
    a->input_full_scale += s->input_full_scale; a->adc_full_scale_a += s->adc_full_scale_a;
    a->gain += s->gain;
    a->fallback_input += s->fallback_input; a->fallback_adc += s->fallback_adc; a->fallback_gain += s->fallback_gain;
}

xb_status xb_xeval_run(xb_model *m, const xb_hw *hw, const xb_dataset *test, const xb_dataset *calib,
                       const xb_xeval_opts *o, xb_xeval_result *r) {
    memset(r, 0, sizeof *r);
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    if (test->c != c || test->h != h || test->w != w)
        return xb_errorf(XB_ERR_SHAPE, "%s: images are %dx%dx%d but model '%s' takes %dx%dx%d", test->path, test->c,
                         test->h, test->w, xb_model_name(m), c, h, w);
    if (test->classes > xb_model_classes(m))
        return xb_errorf(XB_ERR_SHAPE, "%s: %d classes but model '%s' has %d outputs", test->path, test->classes,
                         xb_model_name(m), xb_model_classes(m));
    if (o->seeds < 1 || o->batch < 1) return xb_errorf(XB_ERR_ARG, "xeval: seeds and batch must be >= 1");
    const int K = o->seeds;
    const int64_t n = o->limit > 0 && o->limit < test->n ? o->limit : test->n;
    snprintf(r->model, sizeof r->model, "%s", xb_model_name(m));
    r->images = n;
    r->seeds = K;
    r->sw_accuracy = -1;
    r->accuracy = xb_calloc((size_t)K * sizeof(double));
    r->loss = xb_calloc((size_t)K * sizeof(double));
    xb_status st = XB_OK;
    const xb_mm_op *had = xb_model_op(m);
    xb_mm_op saved;
    if (had) saved = *had;
    xb_model_set_op(m, NULL);
    if (o->software) {
        /* warm-up (untimed): thread pools, first touch of the activations */
        double a_, l_;
        int64_t h_;
        if ((st = eval_loop_(m, NULL, test, n < o->batch ? n : o->batch, o->batch, 0, "", &a_, &l_, &h_))) goto out;
        double t0 = xb_time_s(), c0 = cpu_s_();
        if ((st = eval_loop_(m, NULL, test, n, o->batch, o->progress, "float   ", &r->sw_accuracy, &r->sw_loss, &h_)))
            goto out;
        r->sw_seconds = xb_time_s() - t0;
        r->sw_cpu_s = cpu_s_() - c0;
    }
    {
        xb_xnet *first;
        if ((st = xb_xnet_init_ex(hw, m, o->precisions, &first))) goto out;
        if (o->energy > 0 && (st = xb_xnet_keep_power(first, 1))) { xb_xnet_free(first); goto out; }
        if (o->w_scales && (st = xb_xnet_set_weight_scales(first, o->w_scales))) { xb_xnet_free(first); goto out; }
        size_t bytes = xb_xnet_state_bytes_(first);
        int G = (int)(XE_GROUP_BYTES / (bytes ? bytes : 1));
        if (G < 1) G = 1;
        if (G > K) G = K;
        xb_xnet **xns = xb_calloc((size_t)G * sizeof(xb_xnet *));
        uint64_t *seeds = xb_malloc((size_t)G * sizeof(uint64_t));
        xns[0] = first;
        for (int q = 1; q < G && !st; q++) {
            st = xb_xnet_init_ex(hw, m, o->precisions, &xns[q]);
            if (!st && o->w_scales) st = xb_xnet_set_weight_scales(xns[q], o->w_scales);
        }
        r->n_layers = xb_xnet_n_layers(first);
        r->layers = xb_calloc((size_t)(r->n_layers + 1) * sizeof(xb_xlayer_stats));
        /* calibration images */
        int ncal = o->calibration_images > 0 ? o->calibration_images : hw->calibration_images;
        const xb_dataset *cd = calib ? calib : test;
        if (ncal > cd->n) ncal = (int)cd->n;
        float *xc = NULL;
        if (!st && xb_xnet_needs_calibration(first)) {
            xc = xb_malloc((size_t)ncal * c * h * w * sizeof(float));
            int64_t *idx = xb_malloc((size_t)ncal * sizeof(int64_t));
            for (int i = 0; i < ncal; i++) idx[i] = i;
            xb_dataset_batch(cd, idx, ncal, 0, 0, NULL, xc, NULL);
            xb_free(idx);
        }
        float *bn_keep = NULL;
        if (!st && o->adapt_bn > 0) {
            if (!o->adapt_data) st = xb_errorf(XB_ERR_ARG, "batchnorm adaptation needs images (adapt_data)");
            else {
                bn_keep = xb_malloc(((size_t)xb_model_n_buffer(m) + 1) * sizeof(float));
                memcpy(bn_keep, xb_model_buffers(m), (size_t)xb_model_n_buffer(m) * sizeof(float));
            }
        }
        for (int s0 = 0; s0 < K && !st; s0 += G) {
            int g = K - s0 < G ? K - s0 : G;
            for (int q = 0; q < g; q++) seeds[q] = o->seed + (uint64_t)(s0 + q);
            double t0 = xb_time_s(), c0 = cpu_s_();
            if ((st = xb_xnet_program_many(xns, seeds, g))) break;
            r->program_s += xb_time_s() - t0;
            r->program_cpu_s += cpu_s_() - c0;
            for (int q = 0; q < g && !st; q++) {
                if (xc) {
                    t0 = xb_time_s();
                    c0 = cpu_s_();
                    if ((st = xb_xnet_calibrate(xns[q], ncal, xc))) break;
                    r->calibrate_s += xb_time_s() - t0;
                    r->calibrate_cpu_s += cpu_s_() - c0;
                }
                if (o->adapt_bn > 0 && (st = adapt_bn_(m, xns[q], o))) break;
                char label[32];
                snprintf(label, sizeof label, "hw %d/%d  ", s0 + q + 1, K);
                t0 = xb_time_s();
                c0 = cpu_s_();
                const int probe = o->energy > 0 && s0 + q == 0;
                if (probe && (st = xb_xnet_energy_probe(xns[q], 1, o->energy))) break;
                int64_t hooked = 0;
                st = eval_loop_(m, xns[q], test, n, o->batch, o->progress, label, &r->accuracy[s0 + q],
                                &r->loss[s0 + q], &hooked);
                if (probe && !st) { /* counted from the images that went through the hook (all, unless folded) */
                    xb_xnet_energy_probe(xns[q], 0, 1);
                    r->energy = xb_calloc(sizeof *r->energy);
                    st = xb_energy_report_make(xns[q], m, hooked, r->energy);
                }
                r->eval_s += xb_time_s() - t0;
                r->eval_cpu_s += cpu_s_() - c0;
                if (bn_keep) memcpy(xb_model_buffers(m), bn_keep, (size_t)xb_model_n_buffer(m) * sizeof(float));
                for (int i = 0; i < r->n_layers; i++) {
                    xb_xlayer_stats s;
                    xb_xnet_layer_stats(xns[q], i, &s);
                    stats_add_(&r->layers[i], &s, s0 + q == 0);
                }
            }
        }
        xb_free(xc);
        xb_free(bn_keep);
        for (int q = 0; q < G; q++) xb_xnet_free(xns[q]);
        xb_free(xns);
        xb_free(seeds);
    }
    if (!st) {
        double s = 0, s2 = 0;
        for (int q = 0; q < K; q++) s += r->accuracy[q];
        r->acc_mean = s / K;
        for (int q = 0; q < K; q++) s2 += (r->accuracy[q] - r->acc_mean) * (r->accuracy[q] - r->acc_mean);
        r->acc_std = K > 1 ? sqrt(s2 / (K - 1)) : 0;
    }
out:
    xb_model_set_op(m, had ? &saved : NULL);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", xb_last_error());
        xb_xeval_result_free(r);
        return xb_errorf(st, "%s", msg);
    }
    return XB_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Reports                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

static double ratio_(double a, double b) { return b > 0 ? a / b : 0; }

/* The calibrations of layer s that fell back to 1: what, and the fix. */
typedef struct fallback_ { const char *key, *what, *used, *hint; } fallback_;
static const fallback_ fallbacks_[3] = {
    {"input_range", "input range x_max came out 0 (all-zero inputs on the calibration images)", "x_max = 1",
     "check the calibration images and the layers before it, or set [input] input_range = fixed"},
    {"adc_full_scale", "ADC full scale came out 0 (no signal before the ADCs)", "1 code unit",
     "check the calibration images, or set [output] adc_range = fixed or worst_case"},
    {"gain", "gain was not finite and positive (a hardware output that is zero or not positively correlated with the "
     "float product)", "gain 1", "check the layer's ranges and clip rates, or set gain_calibration = none"},
};
static int64_t fallback_n_(const xb_xlayer_stats *s, int q) {
    return q == 0 ? s->fallback_input : q == 1 ? s->fallback_adc : s->fallback_gain;
}

int xb_xeval_print_warnings(const xb_xeval_result *r, FILE *f, int json) {
    int nw = 0;
    for (int i = 0; i < r->n_layers; i++)
        for (int q = 0; q < 3; q++) {
            const xb_xlayer_stats *s = &r->layers[i];
            int64_t c = fallback_n_(s, q);
            if (!c) continue;
            fprintf(f, json ? "%s\"layer %s: calibrated %s in %lld calibration%s over %d seed%s; %s was used. HINT: %s\"" :
                              "%swarning: layer %s: calibrated %s in %lld calibration%s over %d seed%s; %s was used. "
                              "HINT: %s\n",
                    json && nw ? "," : "", s->name, fallbacks_[q].what, (long long)c, c == 1 ? "" : "s", r->seeds,
                    r->seeds == 1 ? "" : "s", fallbacks_[q].used, fallbacks_[q].hint);
            nw++;
        }
    return nw;
}

void xb_xeval_print(const xb_xeval_result *r, const xb_hw *hw, FILE *f, int json) {
    const int K = r->seeds;
    double per_seed = (r->program_s + r->calibrate_s + r->eval_s) / (K ? K : 1);
    if (json) {
        fprintf(f, "{\"model\":\"%s\",\"images\":%lld,\"seeds\":%d,\"hw\":", r->model, (long long)r->images, K);
        xb_hw_print(hw, f, 1);
        if (r->sw_accuracy >= 0)
            fprintf(f, ",\"software\":{\"accuracy\":%.6f,\"loss\":%.6f,\"seconds\":%.3f,\"cpu_s\":%.3f}",
                    r->sw_accuracy, r->sw_loss, r->sw_seconds, r->sw_cpu_s);
        else
            fprintf(f, ",\"software\":null");
        fprintf(f, ",\"hardware\":{\"accuracy_mean\":%.6f,\"accuracy_std\":%.6f,\"accuracy\":[", r->acc_mean, r->acc_std);
        for (int q = 0; q < K; q++) fprintf(f, "%s%.6f", q ? "," : "", r->accuracy[q]);
        fprintf(f, "],\"loss\":[");
        for (int q = 0; q < K; q++) fprintf(f, "%s%.6f", q ? "," : "", r->loss[q]);
        fprintf(f, "],\"program_s\":%.3f,\"calibrate_s\":%.3f,\"eval_s\":%.3f,\"seconds_per_seed\":%.3f,"
                   "\"program_cpu_s\":%.3f,\"calibrate_cpu_s\":%.3f,\"eval_cpu_s\":%.3f", r->program_s, r->calibrate_s,
                r->eval_s, per_seed, r->program_cpu_s, r->calibrate_cpu_s, r->eval_cpu_s);
        if (r->sw_accuracy >= 0 && r->sw_seconds > 0) {
            double cpu_seed = (r->program_cpu_s + r->calibrate_cpu_s + r->eval_cpu_s) / (K ? K : 1);
            fprintf(f, ",\"cost_vs_software\":%.3f,\"cpu_cost_vs_software\":%.3f", per_seed / r->sw_seconds,
                    r->sw_cpu_s > 0 ? cpu_seed / r->sw_cpu_s : 0);
        }
        fprintf(f, "},\"layers\":[");
        for (int i = 0; i < r->n_layers; i++) {
            const xb_xlayer_stats *s = &r->layers[i];
            fprintf(f, "%s{\"name\":\"%s\",\"mapped\":%s,\"rows_out\":%d,\"k\":%d,\"groups\":%d", i ? "," : "", s->name,
                    s->mapped ? "true" : "false", s->rows_out, s->k, s->groups);
            if (s->mapped)
                fprintf(f, ",\"tiles\":%lld,\"arrays\":%lld,\"cells_used\":%lld,\"cells_allocated\":%lld,"
                           "\"utilization\":%.6f,\"w_scale\":%.6g,\"input_full_scale\":%.6g,\"adc_full_scale_a\":%.6g,"
                           "\"stuck_gmin\":%.1f,\"stuck_gmax\":%.1f,\"g_clipped\":%.1f,\"adc_conversions\":%lld,"
                           "\"adc_clip_rate\":%.6g,\"dac_clip_rate\":%.6g,\"rel_error\":%.6g,\"program_s\":%.3f,"
                           "\"forward_s\":%.3f,\"gain\":%.6g,\"weight_bits\":%d,\"slices\":%d,\"input_bits\":%d,"
                           "\"planes\":%d,\"low_conductance_share\":%.6f",
                        (long long)s->tiles, (long long)s->arrays, (long long)s->cells_used, (long long)s->cells_alloc,
                        ratio_((double)s->cells_used, (double)s->cells_alloc), s->w_scale, s->input_full_scale / K,
                        s->adc_full_scale_a / K, (double)s->stuck_gmin / K, (double)s->stuck_gmax / K,
                        (double)s->g_clipped / K, (long long)s->adc_conversions,
                        ratio_((double)s->adc_clipped, (double)s->adc_conversions),
                        ratio_((double)s->dac_clipped, (double)s->dac_conversions), sqrt(ratio_(s->err_sq, s->ref_sq)),
                        s->program_s, s->forward_s, s->gain / K, s->weight_bits, s->slices, s->input_bits, s->planes,
                        ratio_((double)s->cells_low, (double)s->cells_used));
            if (s->mapped)
                fprintf(f, ",\"calibration_fallbacks\":{\"%s\":%lld,\"%s\":%lld,\"%s\":%lld}", fallbacks_[0].key,
                        (long long)s->fallback_input, fallbacks_[1].key, (long long)s->fallback_adc, fallbacks_[2].key,
                        (long long)s->fallback_gain);
            fprintf(f, "}");
        }
        fprintf(f, "],\"warnings\":[");
        xb_xeval_print_warnings(r, f, 1);
        fprintf(f, "]");
        if (r->energy) {
            fprintf(f, ",\"energy\":");
            xb_energy_report_print(r->energy, f, 1);
        }
        fprintf(f, "}\n");
        return;
    }
    fprintf(f, "model %s on hardware '%s'%s%s: %lld test images, %d device seed%s\n", r->model,
            hw->name[0] ? hw->name : "unnamed", hw->path[0] ? " from " : "", hw->path, (long long)r->images, K,
            K == 1 ? "" : "s");
    if (r->sw_accuracy >= 0)
        fprintf(f, "software accuracy  %.2f%%  (%.1f s)\n", 100 * r->sw_accuracy, r->sw_seconds);
    fprintf(f, "crossbar accuracy  %.2f%% +- %.2f%% (sample std over %d seed%s:", 100 * r->acc_mean, 100 * r->acc_std,
            K, K == 1 ? "" : "s");
    for (int q = 0; q < K && q < 12; q++) fprintf(f, " %.2f", 100 * r->accuracy[q]);
    fprintf(f, "%s)\n", K > 12 ? " ..." : "");
    fprintf(f, "time: program %.1f s, calibrate %.1f s, evaluate %.1f s; %.1f s per seed", r->program_s,
            r->calibrate_s, r->eval_s, per_seed);
    if (r->sw_accuracy >= 0 && r->sw_seconds > 0) {
        double cpu_seed = (r->program_cpu_s + r->calibrate_cpu_s + r->eval_cpu_s) / (K ? K : 1);
        fprintf(f, " = %.2fx the float evaluation (CPU time %.2fx)", per_seed / r->sw_seconds,
                r->sw_cpu_s > 0 ? cpu_seed / r->sw_cpu_s : 0);
    }
    fprintf(f, "\n\n%-22s %9s %6s %7s %6s %9s %9s %9s %10s %10s %7s\n", "layer", "matrix", "tiles", "arrays", "util",
            "adc_clip", "dac_clip", "rel_err", "x_max", "adc_fs_A", "gain");
    for (int i = 0; i < r->n_layers; i++) {
        const xb_xlayer_stats *s = &r->layers[i];
        char mat[32];
        snprintf(mat, sizeof mat, "%dx%d", s->rows_out, s->k);
        if (!s->mapped) {
            fprintf(f, "%-22s %9s %s\n", s->name, mat, "  digital (float)");
            continue;
        }
        fprintf(f, "%-22s %9s %6lld %7lld %5.1f%% %8.4f%% %8.4f%% %9.3e %10.4g %10.4g %7.4f\n", s->name, mat,
                (long long)s->tiles, (long long)s->arrays, 100 * ratio_((double)s->cells_used, (double)s->cells_alloc),
                100 * ratio_((double)s->adc_clipped, (double)s->adc_conversions),
                100 * ratio_((double)s->dac_clipped, (double)s->dac_conversions), sqrt(ratio_(s->err_sq, s->ref_sq)),
                s->input_full_scale / K, s->adc_full_scale_a / K, s->gain / K);
    }
    xb_xeval_print_warnings(r, f, 0);
    if (r->energy) {
        fputc('\n', f);
        xb_energy_report_print(r->energy, f, 0);
    }
}
