/* schedule.c -- pruning while training (methods.md 10A, 10B): when a step is due at an epoch's start, score
 * the channels of every prunable group (score.c), keep the strongest per group (layer scope) or by one
 * ranking of per-group-normalized scores (global scope, with per-group floors), and hand the keep lists to
 * the caller's surgery (surgery.c).  Counts the forward MACs every epoch trained with, so that a run
 * reports its training compute against the unpruned model's.  [R: the plan (geometric steps to the target,
 * floors, normalization) is methods.md's reconstruction; each is an option.]  docs/pruning.md. */
#include "xbar.h"
#include "core/io_util.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct step_ { int64_t epoch; int removed, kept; int64_t macs; } step_;

struct xb_pruner {
    xb_prune_opts o;
    xb_prune_groups gs;
    int *ch0;                     /* each group's channels at the start */
    char (*gname)[96];            /* each group's first convolution */
    int64_t macs0, params0;
    int steps_done, done;
    int64_t last_epoch;           /* epoch start of the last step planned (-1: none) */
    step_ *hist;
    int n_hist;
    double *emacs;                /* per epoch trained: forward MACs per image */
    int64_t *eimg;                /* per epoch: images */
    int n_ep;
};

xb_prune_opts xb_prune_opts_default(void) {
    xb_prune_opts o = {XB_PS_L1, 0.5, 1, 1, 4, 0, 0, 0.1, 0, 0, XB_PN_MEAN, 512, 1e-2, 1};
    return o;
}

static int prunable_(const xb_pruner *p) {
    int n = 0;
    for (int k = 0; k < p->gs.n; k++) n += !p->gs.g[k].frozen;
    return n;
}

xb_status xb_pruner_init(const xb_model *m, const xb_prune_opts *o, xb_pruner **out) {
    if (!(o->target >= 0 && o->target <= 0.99) || o->start < 0 || o->every < 1 || o->steps < 1 || o->steps > 1000 ||
        !(o->step >= 0 && o->step < 1) || !(o->flops >= 0 && o->flops <= 1) || !(o->min_keep >= 0 && o->min_keep <= 1) ||
        o->samples < 1 || !(o->eps >= 0))
        return xb_errorf(XB_ERR_ARG, "pruning: target %g, start %d, every %d, steps %d, step %g, flops %g, min keep %g, "
                         "samples %lld, eps %g. HINT: target 0..0.99, start >= 0, every >= 1, steps 1..1000, step "
                         "0..<1, flops 0..1, min keep 0..1, samples >= 1, eps >= 0", o->target, o->start, o->every,
                         o->steps, o->step, o->flops, o->min_keep, (long long)o->samples, o->eps);
    xb_pruner *p = calloc(1, sizeof *p);
    if (!p) return xb_errorf(XB_ERR_NOMEM, "no memory for the pruning state");
    p->o = *o;
    p->last_epoch = -1;
    xb_status st = xb_prune_groups_find(m, o->residual_skip, &p->gs);
    if (!st) {
        p->ch0 = malloc(sizeof(int) * (size_t)(p->gs.n + 1));
        p->gname = malloc(sizeof *p->gname * (size_t)(p->gs.n + 1));
        if (!p->ch0 || !p->gname) st = xb_errorf(XB_ERR_NOMEM, "no memory for the pruning state");
    }
    for (int k = 0; k < p->gs.n && !st; k++) {
        const char *nm;
        xb_model_mapped_info(m, p->gs.g[k].conv[0], &nm, NULL, NULL, NULL);
        p->ch0[k] = p->gs.g[k].channels;
        snprintf(p->gname[k], sizeof p->gname[k], "%s", nm);
    }
    if (!st && !prunable_(p))
        st = xb_errorf(XB_ERR_ARG, "model '%s' has no convolution whose output channels can be pruned (%d groups, all "
                       "frozen: option-A shortcuts, grouped convolutions%s). HINT: docs/pruning.md lists what "
                       "surgery can cut", xb_model_name(m), p->gs.n, o->residual_skip ? ", residual sums with --prune-residual skip" : "");
    p->macs0 = xb_model_macs(m);
    p->params0 = xb_model_n_trainable(m);
    if (st) { xb_pruner_free(p); return st; }
    *out = p;
    return XB_OK;
}

void xb_pruner_free(xb_pruner *p) {
    if (!p) return;
    xb_prune_groups_free(&p->gs);
    free(p->ch0); free(p->gname); free(p->hist); free(p->emacs); free(p->eimg);
    free(p);
}

xb_status xb_pruner_rebind(xb_pruner *p, const xb_model *pruned) {
    xb_prune_groups gs;
    xb_status st = xb_prune_groups_find(pruned, p->o.residual_skip, &gs);
    if (st) return st;
    if (gs.n != p->gs.n) {
        xb_prune_groups_free(&gs);
        return xb_errorf(XB_ERR_STATE, "the pruned model has %d channel groups, the pruning state %d. HINT: resume with "
                         "the model the run was started with", gs.n, p->gs.n);
    }
    xb_prune_groups_free(&p->gs);
    p->gs = gs;
    return XB_OK;
}

typedef struct cand_ { double s; int g, c; } cand_;
static int cand_cmp_(const void *a, const void *b) {
    const cand_ *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    if (x->g != y->g) return x->g - y->g;
    return x->c - y->c;
}

static int floor_(const xb_pruner *p, int k) {
    int f = (int)ceil(p->o.min_keep * p->ch0[k] - 1e-9);
    return f < 1 ? 1 : f;
}

/* channels to keep after step number `k` (1-based) out of c0, end t */
static int want_(const xb_pruner *p, int c0, int cur, int t, int k) {
    int w;
    if (p->o.step > 0) {
        int r = (int)lround(p->o.step * cur);
        w = cur - (r < 1 ? 1 : r);
    } else {
        w = k >= p->o.steps ? t : (int)lround(c0 * pow(1 - p->o.target, (double)k / p->o.steps));
    }
    if (w < t) w = t;
    return w > cur ? cur : w;
}

xb_status xb_pruner_epoch(xb_pruner *p, xb_model *m, const xb_dataset *d, int batch, int64_t epoch, int **keep,
                          int *n_keep, int *cut) {
    const int nm = xb_model_n_mapped(m), G = p->gs.n;
    *cut = 0;
    for (int i = 0; i < nm; i++) { keep[i] = NULL; n_keep[i] = 0; }
    const int cap = p->o.step > 0 ? 1000 : p->o.steps;
    if (p->done || epoch < p->o.start || (epoch - p->o.start) % p->o.every || epoch == p->last_epoch ||
        p->steps_done >= cap)
        return XB_OK;
    p->last_epoch = epoch;
    const double budget = p->o.flops > 0 ? p->o.flops * (double)p->macs0 : 0;
    if (budget > 0 && (double)xb_model_macs(m) <= budget) { p->done = 1; return XB_OK; }
    /* how many each group keeps (layer) or all together (global) */
    int *want = malloc(sizeof(int) * (size_t)(G + 1));
    double **s = calloc((size_t)G + 1, sizeof *s);
    cand_ *cd = NULL;
    xb_status st = want && s ? XB_OK : xb_errorf(XB_ERR_NOMEM, "no memory for the pruning plan");
    for (int k = 0; k < G && !st; k++)
        if (!(s[k] = calloc((size_t)p->gs.g[k].channels + 1, sizeof(double)))) st = xb_errorf(XB_ERR_NOMEM, "no memory");
    const int step_no = p->steps_done + 1;
    int remove_total = 0, cur_total = 0, t_total = 0, c0_total = 0;
    for (int k = 0; k < G && !st; k++) {
        const xb_prune_group *g = &p->gs.g[k];
        want[k] = g->channels;
        if (g->frozen) continue;
        int t = (int)lround((1 - p->o.target) * p->ch0[k]);
        if (t < floor_(p, k)) t = floor_(p, k);
        want[k] = want_(p, p->ch0[k], g->channels, t, step_no);
        cur_total += g->channels;
        t_total += t;
        c0_total += p->ch0[k];
    }
    if (!st && p->o.global) {
        const int wt = want_(p, c0_total, cur_total, t_total, step_no);
        remove_total = cur_total - wt;
    }
    int any = 0;
    if (!st) {
        for (int k = 0; k < G; k++) any |= !p->gs.g[k].frozen && want[k] < p->gs.g[k].channels;
        if (p->o.global) any = remove_total > 0;
    }
    if (!st && !any) { p->done = 1; goto out; }
    xb_score_opts so = {p->o.score, d, p->o.samples, batch, p->o.eps, p->o.seed, (uint64_t)p->steps_done};
    if (!st) st = xb_prune_scores(m, &p->gs, &so, s);
    if (!st && p->o.global) { /* one ranking of normalized scores; floors; the MAC budget */
        cd = malloc(sizeof *cd * (size_t)(cur_total + 1));
        if (!cd) st = xb_errorf(XB_ERR_NOMEM, "no memory for the pruning plan");
        int nc = 0;
        for (int k = 0; k < G && !st; k++) {
            const xb_prune_group *g = &p->gs.g[k];
            if (g->frozen) continue;
            double z = 0;
            for (int c = 0; c < g->channels; c++) z += p->o.norm == XB_PN_L2 ? s[k][c] * s[k][c] : fabs(s[k][c]);
            z = p->o.norm == XB_PN_L2 ? sqrt(z) : z / g->channels;
            if (p->o.norm == XB_PN_NONE || !(z > 0)) z = 1;
            for (int c = 0; c < g->channels; c++) cd[nc++] = (cand_){s[k][c] / z, k, c};
        }
        if (!st) {
            qsort(cd, (size_t)nc, sizeof *cd, cand_cmp_);
            for (int k = 0; k < G; k++) want[k] = p->gs.g[k].channels;
            double est = (double)xb_model_macs(m);
            for (int i = 0, r = 0; i < nc && r < remove_total; i++) {
                const int k = cd[i].g;
                if (want[k] <= floor_(p, k)) continue;
                if (budget > 0 && est <= budget) break;
                est -= (double)p->gs.g[k].macs / p->gs.g[k].channels;
                want[k]--;
                s[k][cd[i].c] = INFINITY; /* marks it removed below */
                r++;
            }
        }
    }
    int removed = 0, kept = 0;
    for (int k = 0; k < G && !st; k++) { /* the want[k] strongest of each group, ascending */
        const xb_prune_group *g = &p->gs.g[k];
        if (g->frozen) continue;
        kept += want[k];
        if (want[k] >= g->channels) continue;
        removed += g->channels - want[k];
        int *ord = malloc(sizeof(int) * (size_t)g->channels);
        if (!ord) { st = xb_errorf(XB_ERR_NOMEM, "no memory"); break; }
        int n = 0;
        if (p->o.global) { /* the ones not marked removed */
            for (int c = 0; c < g->channels; c++)
                if (s[k][c] != INFINITY) ord[n++] = c;
        } else {
            for (int c = 0; c < g->channels; c++) ord[c] = c;
            for (int i = 1; i < g->channels; i++) /* by score descending, ties by index */
                for (int j = i; j > 0 && (s[k][ord[j]] > s[k][ord[j - 1]] ||
                                          (s[k][ord[j]] == s[k][ord[j - 1]] && ord[j] < ord[j - 1])); j--) {
                    int t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t;
                }
            n = want[k];
            for (int i = 1; i < n; i++)
                for (int j = i; j > 0 && ord[j - 1] > ord[j]; j--) { int t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t; }
        }
        for (int q = 0; q < g->n_conv && !st; q++) {
            const int mp = g->conv[q];
            keep[mp] = malloc(sizeof(int) * (size_t)(n + 1));
            if (!keep[mp]) { st = xb_errorf(XB_ERR_NOMEM, "no memory"); break; }
            memcpy(keep[mp], ord, sizeof(int) * (size_t)n);
            n_keep[mp] = n;
        }
        free(ord);
    }
    if (!st && removed) {
        step_ *h = realloc(p->hist, sizeof *h * (size_t)(p->n_hist + 1));
        if (!h) st = xb_errorf(XB_ERR_NOMEM, "no memory");
        else {
            p->hist = h;
            h[p->n_hist++] = (step_){epoch, removed, kept, 0};
            p->steps_done++;
            *cut = 1;
        }
    } else if (!st) {
        p->done = 1;
    }
out:
    if (st || !*cut)
        for (int i = 0; i < nm; i++) { free(keep[i]); keep[i] = NULL; n_keep[i] = 0; }
    for (int k = 0; k < G && s; k++) free(s[k]);
    free(s); free(want); free(cd);
    return st;
}

void xb_pruner_epoch_done(xb_pruner *p, const xb_model *m, int64_t epoch, int64_t images) {
    if (epoch < 1 || epoch > 1000000) return;
    if (epoch > p->n_ep) {
        double *e = realloc(p->emacs, sizeof(double) * (size_t)epoch);
        int64_t *i = realloc(p->eimg, sizeof(int64_t) * (size_t)epoch);
        if (e) p->emacs = e;
        if (i) p->eimg = i;
        if (!e || !i) return;
        for (int64_t k = p->n_ep; k < epoch; k++) { p->emacs[k] = 0; p->eimg[k] = 0; }
        p->n_ep = (int)epoch;
    }
    p->emacs[epoch - 1] = (double)xb_model_macs(m);
    p->eimg[epoch - 1] = images;
    if (p->n_hist && p->hist[p->n_hist - 1].macs == 0) p->hist[p->n_hist - 1].macs = xb_model_macs(m);
}

xb_status xb_pruner_save(const xb_pruner *p, const char *path) {
    cJSON *root = cJSON_CreateObject(), *gr = cJSON_AddArrayToObject(root, "groups"), *hi = cJSON_AddArrayToObject(root, "steps");
    cJSON_AddNumberToObject(root, "steps_done", p->steps_done);
    cJSON_AddNumberToObject(root, "done", p->done);
    cJSON_AddNumberToObject(root, "last_epoch", (double)p->last_epoch);
    cJSON_AddNumberToObject(root, "macs0", (double)p->macs0);
    cJSON_AddNumberToObject(root, "params0", (double)p->params0);
    for (int k = 0; k < p->gs.n; k++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "layer", p->gname[k]);
        cJSON_AddNumberToObject(o, "channels0", p->ch0[k]);
        cJSON_AddItemToArray(gr, o);
    }
    for (int i = 0; i < p->n_hist; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "epoch", (double)p->hist[i].epoch);
        cJSON_AddNumberToObject(o, "removed", p->hist[i].removed);
        cJSON_AddNumberToObject(o, "kept", p->hist[i].kept);
        cJSON_AddNumberToObject(o, "macs", (double)p->hist[i].macs);
        cJSON_AddItemToArray(hi, o);
    }
    cJSON *em = cJSON_AddArrayToObject(root, "epoch_macs"), *ei = cJSON_AddArrayToObject(root, "epoch_images");
    for (int e = 0; e < p->n_ep; e++) {
        cJSON_AddItemToArray(em, cJSON_CreateNumber(p->emacs[e]));
        cJSON_AddItemToArray(ei, cJSON_CreateNumber((double)p->eimg[e]));
    }
    xb_status st = xb_json_save(path, root, "pruning state");
    cJSON_Delete(root);
    return st;
}

static double num_(const cJSON *o, const char *k, double lo, double hi, int *bad) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi)) { *bad = 1; return lo; }
    return v->valuedouble;
}

xb_status xb_pruner_load(xb_pruner *p, const char *path) {
    cJSON *root;
    xb_status lst = xb_json_load(path, "pruning state",
                                 "resume with the --out of the run that wrote it (prune-state.json beside the checkpoint)", &root);
    if (lst) return lst;
    int bad = !root;
    const cJSON *gr = root ? cJSON_GetObjectItem(root, "groups") : NULL, *hi = root ? cJSON_GetObjectItem(root, "steps") : NULL;
    const cJSON *em = root ? cJSON_GetObjectItem(root, "epoch_macs") : NULL, *ei = root ? cJSON_GetObjectItem(root, "epoch_images") : NULL;
    if (!cJSON_IsArray(gr) || cJSON_GetArraySize(gr) != p->gs.n || !cJSON_IsArray(hi) || !cJSON_IsArray(em) ||
        !cJSON_IsArray(ei) || cJSON_GetArraySize(em) != cJSON_GetArraySize(ei) || cJSON_GetArraySize(em) > 1000000)
        bad = 1;
    for (int k = 0; k < p->gs.n && !bad; k++) {
        const cJSON *o = cJSON_GetArrayItem(gr, k), *l = cJSON_GetObjectItem(o, "layer");
        if (!cJSON_IsString(l) || strcmp(l->valuestring, p->gname[k]) != 0) bad = 1;
        else p->ch0[k] = (int)num_(o, "channels0", 1, 1 << 24, &bad);
    }
    if (!bad) {
        p->steps_done = (int)num_(root, "steps_done", 0, 1000, &bad);
        p->done = (int)num_(root, "done", 0, 1, &bad);
        p->last_epoch = (int64_t)num_(root, "last_epoch", -1, 1e9, &bad);
        p->macs0 = (int64_t)num_(root, "macs0", 0, 1e18, &bad);
        p->params0 = (int64_t)num_(root, "params0", 0, 1e15, &bad);
    }
    const int nh = bad ? 0 : cJSON_GetArraySize(hi), ne = bad ? 0 : cJSON_GetArraySize(em);
    step_ *h = nh ? calloc((size_t)nh, sizeof *h) : NULL;
    double *e = ne ? calloc((size_t)ne, sizeof(double)) : NULL;
    int64_t *im = ne ? calloc((size_t)ne, sizeof(int64_t)) : NULL;
    if ((nh && !h) || (ne && (!e || !im))) bad = 2;
    for (int i = 0; i < nh && !bad; i++) {
        const cJSON *o = cJSON_GetArrayItem(hi, i);
        h[i] = (step_){(int64_t)num_(o, "epoch", 0, 1e9, &bad), (int)num_(o, "removed", 0, 1 << 30, &bad),
                       (int)num_(o, "kept", 0, 1 << 30, &bad), (int64_t)num_(o, "macs", 0, 1e18, &bad)};
    }
    for (int i = 0; i < ne && !bad; i++) {
        const cJSON *a = cJSON_GetArrayItem(em, i), *b = cJSON_GetArrayItem(ei, i);
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b)) bad = 1;
        else { e[i] = a->valuedouble; im[i] = (int64_t)b->valuedouble; }
    }
    cJSON_Delete(root);
    if (bad) {
        free(h); free(e); free(im);
        return bad == 2 ? xb_errorf(XB_ERR_NOMEM, "no memory to read %s", path)
                        : xb_errorf(XB_ERR_FORMAT, "%s: not the pruning state of this model (%d channel groups, first "
                                    "%s). HINT: resume with the same model and --prune flags", path, p->gs.n,
                                    p->gs.n ? p->gname[0] : "-");
    }
    free(p->hist); free(p->emacs); free(p->eimg);
    p->hist = h; p->n_hist = nh;
    p->emacs = e; p->eimg = im; p->n_ep = ne;
    return XB_OK;
}

void xb_pruner_print(const xb_pruner *p, const xb_model *m, FILE *f, int json) {
    double tr = 0, tr0 = 0;
    for (int e = 0; e < p->n_ep; e++) { tr += p->emacs[e] * (double)p->eimg[e]; tr0 += (double)p->macs0 * (double)p->eimg[e]; }
    int c0 = 0, c = 0;
    for (int k = 0; k < p->gs.n; k++)
        if (!p->gs.g[k].frozen) { c0 += p->ch0[k]; c += p->gs.g[k].channels; }
    const double macs = (double)xb_model_macs(m);
    const int64_t params = xb_model_n_trainable(m);
    /* training MACs: forward + backward (input and weight gradients) ~ 3 x forward */
    if (json) {
        fprintf(f, "{\"score\":\"%s\",\"scope\":\"%s\",\"steps\":%d,\"channels\":%d,\"channels_start\":%d,"
                   "\"pruned_fraction\":%.6f,\"macs\":%.0f,\"macs_start\":%lld,\"flops_reduction\":%.6f,"
                   "\"params\":%lld,\"params_start\":%lld,\"compression\":%.6f,\"train_macs\":%.6g,"
                   "\"train_macs_unpruned\":%.6g,\"train_macs_saved\":%.6f,\"history\":[",
                xb_prune_score_names[p->o.score], p->o.global ? "global" : "layer", p->steps_done, c, c0,
                c0 ? 1.0 - (double)c / c0 : 0.0, macs, (long long)p->macs0, p->macs0 ? 1.0 - macs / (double)p->macs0 : 0.0,
                (long long)params, (long long)p->params0, params ? (double)p->params0 / (double)params : 0.0, 3 * tr,
                3 * tr0, tr0 > 0 ? 1.0 - tr / tr0 : 0.0);
        for (int i = 0; i < p->n_hist; i++)
            fprintf(f, "%s{\"epoch\":%lld,\"removed\":%d,\"kept\":%d,\"macs\":%lld}", i ? "," : "",
                    (long long)p->hist[i].epoch, p->hist[i].removed, p->hist[i].kept, (long long)p->hist[i].macs);
        fprintf(f, "],\"layers\":[");
        for (int k = 0; k < p->gs.n; k++)
            fprintf(f, "%s{\"layer\":\"%s\",\"convs\":%d,\"channels\":%d,\"channels_start\":%d,\"frozen\":\"%s\"}",
                    k ? "," : "", p->gname[k], p->gs.g[k].n_conv, p->gs.g[k].channels, p->ch0[k],
                    p->gs.g[k].frozen ? xb_group_frozen_name(p->gs.g[k].frozen) : "");
        fprintf(f, "]}");
        return;
    }
    fprintf(f, "pruning (%s, %s scope), %d steps: %d of %d prunable channels left (%.1f%% pruned); %.4g MACs per image "
               "of %.4g (%.1f%% fewer); %lld parameters of %lld (%.2fx fewer); training MACs %.4g against %.4g unpruned "
               "(%.1f%% saved)\n", xb_prune_score_names[p->o.score], p->o.global ? "global" : "layer", p->steps_done,
            c, c0, c0 ? 100.0 * (1.0 - (double)c / c0) : 0.0, macs, (double)p->macs0,
            p->macs0 ? 100.0 * (1 - macs / (double)p->macs0) : 0.0, (long long)params, (long long)p->params0,
            params ? (double)p->params0 / (double)params : 0.0, 3 * tr, 3 * tr0, tr0 > 0 ? 100.0 * (1 - tr / tr0) : 0.0);
    fprintf(f, "  %-22s %6s %9s  %s\n", "group (first layer)", "convs", "channels", "");
    for (int k = 0; k < p->gs.n; k++)
        fprintf(f, "  %-22s %6d %4d/%-4d  %s\n", p->gname[k], p->gs.g[k].n_conv, p->gs.g[k].channels, p->ch0[k],
                p->gs.g[k].frozen ? xb_group_frozen_name(p->gs.g[k].frozen) : "");
}
