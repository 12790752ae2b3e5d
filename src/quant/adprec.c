/* adprec.c -- activation-density (AD) mixed precision during training (Vasquez et al. 2021, arXiv
 * 2101.04354; methods.md item 1).  Every relu followed by an activation quantizer is a tracked unit: its
 * AD is the fraction of non-zero outputs over an epoch's training forwards; once it has settled (|AD(e) -
 * AD(e-1)| < tol for `window` epochs in a row) the unit's bits become max(min_bits, ceil(AD x bits)): the
 * quantizer after the relu and the weights of the conv/linear layer that produced the relu's input.  The
 * plateau counter starts again after every reduction.  [R: the rule's details (ceil, from the current
 * bits, tol, window, min_bits) are methods.md's reconstruction; each is an option.]  The report weighs
 * every mapped layer's MACs by its weight and input bits against 16 x 16. */
#include "xbar.h"
#include "core/io_util.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct unit_ {
    int relu, quant, mapped;      /* nodes; mapped: index among the mapped layers, -1 none */
    int bits, stable;
    int bits0;                    /* the bits at the start (--ad-rule start re-derives from them) */
    int plateau;                  /* its AD settled at the last epoch's end */
    int mapped_conv;              /* the convolution that produced the relu's input, or -1 (pruning) */
    int no_prune;                 /* its channels cannot be cut alone (they reach a residual sum) */
    int cuts;                     /* channel cuts so far */
    int64_t nnz, total;           /* this epoch's counts */
    double *ad;                   /* per completed epoch */
    int *bits_hist;               /* bits in force during each completed epoch */
} unit_;

struct xb_ad {
    xb_ad_opts o;
    xb_qop *q;
    int n;
    unit_ *u;
    int epochs, cap;
    int changes;                  /* bit reductions so far */
    double *wmacs;                /* per completed epoch: sum MAC b_w b_a over the mapped layers */
    double macs16;                /* the same at 16 x 16 bits, of the model at the start (before any pruning) */
    double macs0;                 /* MACs per image at the start */
    int64_t params0;              /* trainable parameters at the start */
    int prunes;                   /* channel surgeries so far */
};

xb_ad_opts xb_ad_opts_default(void) {
    xb_ad_opts o = {0.01, 2, 2, 0, 0};
    return o;
}

/* the mapped layer whose output reaches node i through batchnorm, add (first input), dropout or pooling */
static int producer_(const xb_model *m, int i) {
    while (i >= 0) {
        if (xb_model_node_mapped(m, i) >= 0) return xb_model_node_mapped(m, i);
        const char *t = xb_model_node_type(m, i);
        if (strcmp(t, "batchnorm") && strcmp(t, "add") && strcmp(t, "dropout") && strcmp(t, "maxpool") &&
            strcmp(t, "avgpool") && strcmp(t, "relu") && strcmp(t, "quant"))
            return -1;
        int a, b;
        xb_model_node_inputs(m, i, &a, &b);
        i = a;
    }
    return -1;
}

/* the bits of the activation quantizer that feeds node i's input (through pooling, flatten, gap, dropout);
 * 16 when there is none */
static int input_bits_(const xb_model *m, int i) {
    int kind, bits;
    float clip;
    const int q = xb_model_feeding_quant(m, i, 1);
    if (q < 0 || !xb_model_node_quant(m, q, &kind, &bits, &clip)) return 16;
    return kind == XB_QA_TERNARY ? 2 : bits;
}

/* the node of mapped layer p */
static int first_node_(const xb_model *m, int p) {
    for (int i = 0; i < xb_model_n_nodes(m); i++)
        if (xb_model_node_mapped(m, i) == p) return i;
    return 0;
}

static double weighted_macs_(const xb_ad *a, const xb_model *m, double *m16) {
    double s = 0, s16 = 0;
    for (int i = 0; i < xb_model_n_nodes(m); i++) {
        const int p = xb_model_node_mapped(m, i);
        if (p < 0) continue;
        const xb_qw_spec *sp = a->q ? xb_qop_spec(a->q, p) : NULL;
        const int bw = !sp || sp->kind == XB_QW_NONE ? 16 : xb_qw_bits(sp);
        const double mac = (double)xb_model_node_macs(m, i);
        s += mac * bw * input_bits_(m, i);
        s16 += mac * 256;
    }
    if (m16) *m16 = s16;
    return s;
}

xb_status xb_ad_init(xb_model *m, xb_qop *q, const xb_ad_opts *o, xb_ad **out) {
    if (o->tol < 0 || o->window < 1 || o->min_bits < 1 || o->min_bits > 16 || o->max_cuts < 0)
        return xb_errorf(XB_ERR_ARG, "activation-density precision: tol %g, window %d, min bits %d. HINT: tol >= 0, "
                         "window >= 1, min bits 1..16", o->tol, o->window, o->min_bits);
    xb_ad *a = calloc(1, sizeof *a);
    if (!a) return xb_errorf(XB_ERR_NOMEM, "no memory for the activation-density state");
    a->o = *o;
    a->q = q;
    const int nn = xb_model_n_nodes(m);
    a->u = calloc((size_t)nn + 1, sizeof *a->u);
    if (!a->u) { free(a); return xb_errorf(XB_ERR_NOMEM, "no memory for the activation-density state"); }
    for (int i = 0; i < nn; i++) {
        int kind, bits, r, b;
        float clip;
        if (!xb_model_node_quant(m, i, &kind, &bits, &clip) || kind == XB_QA_TERNARY) continue;
        xb_model_node_inputs(m, i, &r, &b);
        if (r < 0 || strcmp(xb_model_node_type(m, r), "relu") != 0) continue;
        unit_ *u = &a->u[a->n++];
        u->relu = r;
        u->quant = i;
        u->mapped = producer_(m, r);
        u->mapped_conv = u->mapped >= 0 && !strcmp(xb_model_node_type(m, first_node_(m, u->mapped)), "conv2d")
                             ? u->mapped : -1;
        u->bits = bits;
        u->bits0 = bits;
        if (u->mapped >= 0 && q) {
            const xb_qw_spec *sp = xb_qop_spec(q, u->mapped);
            if (sp->kind != XB_QW_UNIFORM && sp->kind != XB_QW_DOREFA) u->mapped = -1; /* no bits to change */
        }
    }
    double m16;
    weighted_macs_(a, m, &m16);
    a->macs16 = m16;
    a->macs0 = m16 / 256;
    a->params0 = xb_model_n_trainable(m);
    if (!a->n) {
        xb_ad_free(a);
        return xb_errorf(XB_ERR_ARG, "activation-density precision needs activation quantizers after relus. HINT: "
                         "add --act-bits 16 (the paper starts every layer at 16 bits)");
    }
    *out = a;
    return XB_OK;
}

void xb_ad_free(xb_ad *a) {
    if (!a) return;
    for (int i = 0; i < a->n; i++) { free(a->u[i].ad); free(a->u[i].bits_hist); }
    free(a->u);
    free(a->wmacs);
    free(a);
}

int xb_ad_epochs(const xb_ad *a) { return a->epochs; }
int xb_ad_changes(const xb_ad *a) { return a->changes; }

void xb_ad_count(xb_ad *a, xb_model *m) {
    const int n = xb_model_last_batch(m);
    for (int k = 0; k < a->n; k++) {
        unit_ *u = &a->u[k];
        const float *y = xb_model_node_output(m, u->relu);
        int c, h, w;
        xb_model_node_shape(m, u->relu, &c, &h, &w);
        const int64_t len = (int64_t)c * n * h * w;
        int64_t nz = 0;
#pragma omp simd reduction(+ : nz)
        for (int64_t j = 0; j < len; j++) nz += y[j] != 0.0f;
        u->nnz += nz;
        u->total += len;
    }
}

static xb_status grow_(xb_ad *a) {
    if (a->epochs < a->cap) return XB_OK;
    const int cap = a->cap ? 2 * a->cap : 16;
    for (int k = 0; k < a->n; k++) {
        double *d = realloc(a->u[k].ad, sizeof(double) * (size_t)cap);
        if (d) a->u[k].ad = d;
        int *b = realloc(a->u[k].bits_hist, sizeof(int) * (size_t)cap);
        if (b) a->u[k].bits_hist = b;
        if (!d || !b) return xb_errorf(XB_ERR_NOMEM, "no memory for the activation-density history");
    }
    double *w = realloc(a->wmacs, sizeof(double) * (size_t)cap);
    if (!w) return xb_errorf(XB_ERR_NOMEM, "no memory for the activation-density history");
    a->wmacs = w;
    a->cap = cap;
    return XB_OK;
}

xb_status xb_ad_epoch_end(xb_ad *a, xb_model *m, int *changed) {
    xb_status st = grow_(a);
    if (st) return st;
    const int e = a->epochs;
    a->wmacs[e] = weighted_macs_(a, m, NULL);
    *changed = 0;
    for (int k = 0; k < a->n; k++) {
        unit_ *u = &a->u[k];
        const double ad = u->total ? (double)u->nnz / (double)u->total : 0.0;
        u->ad[e] = ad;
        u->bits_hist[e] = u->bits;
        u->nnz = u->total = 0;
        u->stable = e > 0 && fabs(ad - u->ad[e - 1]) < a->o.tol ? u->stable + 1 : 0;
        u->plateau = u->stable >= a->o.window;
        if (u->stable < a->o.window || u->bits <= a->o.min_bits) continue;
        int nb = (int)ceil(ad * (a->o.from_start ? u->bits0 : u->bits) - 1e-9);
        if (nb < a->o.min_bits) nb = a->o.min_bits;
        if (nb >= u->bits) continue;
        if ((st = xb_model_set_quant_bits(m, u->quant, nb))) return st;
        if (u->mapped >= 0 && (st = xb_qop_set_bits(a->q, u->mapped, nb < 2 ? 2 : nb))) return st;
        u->bits = nb;
        u->stable = 0;
        (*changed)++;
        a->changes++;
    }
    a->epochs = e + 1;
    return XB_OK;
}

xb_status xb_ad_save(const xb_ad *a, const xb_model *m, const char *path) {
    cJSON *root = cJSON_CreateObject(), *units = cJSON_AddArrayToObject(root, "units");
    cJSON_AddNumberToObject(root, "epochs", a->epochs);
    cJSON_AddNumberToObject(root, "prunes", a->prunes);
    cJSON_AddNumberToObject(root, "macs16", a->macs16);
    cJSON_AddNumberToObject(root, "macs0", a->macs0);
    cJSON_AddNumberToObject(root, "params0", (double)a->params0);
    cJSON_AddItemToObject(root, "weighted_macs", cJSON_CreateDoubleArray(a->wmacs ? a->wmacs : (double[]){0}, a->epochs));
    for (int k = 0; k < a->n; k++) {
        const unit_ *u = &a->u[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "relu", xb_model_node_name(m, u->relu));
        cJSON_AddNumberToObject(o, "bits", u->bits);
        cJSON_AddNumberToObject(o, "stable", u->stable);
        cJSON_AddNumberToObject(o, "plateau", u->plateau);
        cJSON_AddNumberToObject(o, "no_prune", u->no_prune);
        cJSON_AddNumberToObject(o, "cuts", u->cuts);
        cJSON_AddNumberToObject(o, "bits0", u->bits0);
        cJSON_AddNumberToObject(o, "nnz", (double)u->nnz);
        cJSON_AddNumberToObject(o, "total", (double)u->total);
        cJSON_AddItemToObject(o, "ad", cJSON_CreateDoubleArray(u->ad ? u->ad : (double[]){0}, a->epochs));
        cJSON_AddItemToObject(o, "bits_hist", cJSON_CreateIntArray(u->bits_hist ? u->bits_hist : (int[]){0}, a->epochs));
        cJSON_AddItemToArray(units, o);
    }
    xb_status st = xb_json_save(path, root, "activation-density state");
    cJSON_Delete(root);
    return st;
}

xb_status xb_ad_load(xb_ad *a, xb_model *m, const char *path) {
    cJSON *root;
    xb_status lst = xb_json_load(path, "activation-density state",
                                 "resume with the --out of the run that wrote it (ad-state.json beside the checkpoint)", &root);
    if (lst) return lst;
    xb_status st = XB_OK;
    const cJSON *units = root ? cJSON_GetObjectItem(root, "units") : NULL;
    const cJSON *ep = root ? cJSON_GetObjectItem(root, "epochs") : NULL;
    if (!cJSON_IsArray(units) || cJSON_GetArraySize(units) != a->n || !cJSON_IsNumber(ep) || ep->valuedouble < 0 ||
        ep->valuedouble > 1e6) {
        cJSON_Delete(root);
        return xb_errorf(XB_ERR_FORMAT, "%s: not the activation-density state of this model (%d tracked relus). HINT: "
                         "resume with the same model and quantization flags", path, a->n);
    }
    const int epochs = (int)ep->valuedouble;
    const cJSON *pr = cJSON_GetObjectItem(root, "prunes"), *m16 = cJSON_GetObjectItem(root, "macs16"),
                *m0 = cJSON_GetObjectItem(root, "macs0"), *p0 = cJSON_GetObjectItem(root, "params0");
    if (cJSON_IsNumber(pr)) a->prunes = pr->valueint;
    if (cJSON_IsNumber(m16)) a->macs16 = m16->valuedouble; /* the model at the start, before any pruning */
    if (cJSON_IsNumber(m0)) a->macs0 = m0->valuedouble;
    if (cJSON_IsNumber(p0)) a->params0 = (int64_t)p0->valuedouble;
    while (a->cap < epochs && !st) { a->epochs = a->cap; st = grow_(a); }
    const cJSON *wm = cJSON_GetObjectItem(root, "weighted_macs");
    for (int e = 0; e < epochs && !st; e++) a->wmacs[e] = cJSON_GetArrayItem(wm, e) ? cJSON_GetArrayItem(wm, e)->valuedouble : 0;
    for (int k = 0; k < a->n && !st; k++) {
        unit_ *u = &a->u[k];
        const cJSON *o = cJSON_GetArrayItem(units, k), *nm = cJSON_GetObjectItem(o, "relu");
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, xb_model_node_name(m, u->relu)) != 0) {
            st = xb_errorf(XB_ERR_FORMAT, "%s: unit %d is not relu %s. HINT: resume with the same model", path, k,
                           xb_model_node_name(m, u->relu));
            break;
        }
        u->bits = cJSON_GetObjectItem(o, "bits")->valueint;
        u->stable = cJSON_GetObjectItem(o, "stable")->valueint;
        const cJSON *pl = cJSON_GetObjectItem(o, "plateau"), *np = cJSON_GetObjectItem(o, "no_prune");
        u->plateau = cJSON_IsNumber(pl) ? pl->valueint : 0;
        u->no_prune = cJSON_IsNumber(np) ? np->valueint : 0;
        const cJSON *cu = cJSON_GetObjectItem(o, "cuts"), *b0 = cJSON_GetObjectItem(o, "bits0");
        u->cuts = cJSON_IsNumber(cu) ? cu->valueint : 0;
        if (cJSON_IsNumber(b0) && b0->valueint >= 1 && b0->valueint <= 16) u->bits0 = b0->valueint;
        u->nnz = (int64_t)cJSON_GetObjectItem(o, "nnz")->valuedouble;
        u->total = (int64_t)cJSON_GetObjectItem(o, "total")->valuedouble;
        const cJSON *ad = cJSON_GetObjectItem(o, "ad"), *bh = cJSON_GetObjectItem(o, "bits_hist");
        for (int e = 0; e < epochs; e++) {
            u->ad[e] = cJSON_GetArrayItem(ad, e) ? cJSON_GetArrayItem(ad, e)->valuedouble : 0;
            u->bits_hist[e] = cJSON_GetArrayItem(bh, e) ? cJSON_GetArrayItem(bh, e)->valueint : 0;
        }
        if ((st = xb_model_set_quant_bits(m, u->quant, u->bits))) break;
        if (u->mapped >= 0 && (st = xb_qop_set_bits(a->q, u->mapped, u->bits < 2 ? 2 : u->bits))) break;
    }
    a->epochs = epochs;
    cJSON_Delete(root);
    return st;
}

void xb_ad_print(const xb_ad *a, const xb_model *m, FILE *f, int json) {
    double mnow, now = weighted_macs_(a, m, &mnow), train = 0;
    const double m16 = a->macs16;
    mnow /= 256;
    for (int e = 0; e < a->epochs; e++) train += a->wmacs[e];
    const double train16 = m16 * (a->epochs ? a->epochs : 1);
    if (json) {
        fprintf(f, "{\"weighted_macs\":%.6g,\"weighted_macs_16bit\":%.6g,\"mac_reduction\":%.4f,"
                   "\"training_compute_ratio\":%.4f,\"macs\":%.6g,\"macs_start\":%.6g,\"params\":%lld,"
                   "\"params_start\":%lld,\"surgeries\":%d,\"layers\":[", now, m16, m16 / now,
                a->epochs ? train / train16 : 1.0, mnow, a->macs0, (long long)xb_model_n_trainable(m),
                (long long)a->params0, a->prunes);
        for (int k = 0; k < a->n; k++) {
            const unit_ *u = &a->u[k];
            const char *mn = "";
            if (u->mapped >= 0) xb_model_mapped_info(m, u->mapped, &mn, NULL, NULL, NULL);
            fprintf(f, "%s{\"relu\":\"%s\",\"layer\":\"%s\",\"bits\":%d,\"ad\":[", k ? "," : "",
                    xb_model_node_name(m, u->relu), mn, u->bits);
            for (int e = 0; e < a->epochs; e++) fprintf(f, "%s%.5f", e ? "," : "", u->ad[e]);
            fprintf(f, "],\"bits_per_epoch\":[");
            for (int e = 0; e < a->epochs; e++) fprintf(f, "%s%d", e ? "," : "", u->bits_hist[e]);
            fprintf(f, "]}");
        }
        fprintf(f, "]}");
        return;
    }
    fprintf(f, "activation-density precision after %d epochs: MACs x bits %.3g against %.3g at 16 bits (%.2fx "
               "fewer); training compute %.2f of the 16-bit run's\n", a->epochs, now, m16, m16 / now,
            a->epochs ? train / train16 : 1.0);
    if (a->prunes)
        fprintf(f, "activation-density pruning, %d surgeries: %lld parameters of %lld (%.2fx fewer), %.3g MACs per "
                   "image of %.3g (%.2fx fewer)\n", a->prunes, (long long)xb_model_n_trainable(m),
                (long long)a->params0, (double)a->params0 / (double)xb_model_n_trainable(m), mnow, a->macs0,
                a->macs0 / mnow);
    fprintf(f, "  %-22s %-20s %5s  %s\n", "relu", "layer", "bits", "AD per epoch");
    for (int k = 0; k < a->n; k++) {
        const unit_ *u = &a->u[k];
        const char *mn = "-";
        if (u->mapped >= 0) xb_model_mapped_info(m, u->mapped, &mn, NULL, NULL, NULL);
        fprintf(f, "  %-22s %-20s %5d ", xb_model_node_name(m, u->relu), mn, u->bits);
        for (int e = 0; e < a->epochs; e++) fprintf(f, " %.3f", u->ad[e]);
        fprintf(f, "\n");
    }
}

/* L1 norm of each output filter of mapped layer p (rows of its weight) */
static void filter_l1_(const xb_model *m, int p, double *l1, int *rows) {
    int param, ro, k;
    xb_model_mapped_info(m, p, NULL, &param, &ro, &k);
    const float *w = xb_model_params((xb_model *)m) + xb_model_param(m, param)->offset;
    for (int o = 0; o < ro; o++) {
        double s = 0;
        for (int j = 0; j < k; j++) s += fabs((double)w[(size_t)o * k + j]);
        l1[o] = s;
    }
    *rows = ro;
}

xb_status xb_ad_prune_plan(xb_ad *a, const xb_model *m, const char *text, int **keep, int *n_keep, int *any) {
    const int nm = xb_model_n_mapped(m);
    *any = 0;
    for (int i = 0; i < nm; i++) { keep[i] = NULL; n_keep[i] = 0; }
    for (int k = 0; k < a->n; k++) {
        unit_ *u = &a->u[k];
        if (!u->plateau || u->mapped_conv < 0 || u->no_prune || a->epochs < 1) continue;
        if (a->o.max_cuts > 0 && u->cuts >= a->o.max_cuts) continue;
        const int p = u->mapped_conv;
        int rows, ro, param, kk;
        xb_model_mapped_info(m, p, NULL, &param, &ro, &kk);
        double *l1 = malloc(sizeof(double) * (size_t)(ro + 1));
        if (!l1) return xb_errorf(XB_ERR_NOMEM, "no memory for the pruning plan");
        filter_l1_(m, p, l1, &rows);
        int nk = (int)ceil(u->ad[a->epochs - 1] * rows - 1e-9);
        if (nk < 1) nk = 1;
        if (nk >= rows) { free(l1); continue; }
        /* the nk strongest filters by L1, in ascending channel order */
        int *order = malloc(sizeof(int) * (size_t)rows), *kp = malloc(sizeof(int) * (size_t)nk);
        for (int o = 0; o < rows; o++) order[o] = o;
        for (int i = 1; i < rows; i++) /* by L1 descending, ties by index */
            for (int j = i; j > 0 && (l1[order[j]] > l1[order[j - 1]] ||
                                      (l1[order[j]] == l1[order[j - 1]] && order[j] < order[j - 1])); j--) {
                int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
            }
        for (int i = 0; i < nk; i++) kp[i] = order[i];
        for (int i = 1; i < nk; i++)
            for (int j = i; j > 0 && kp[j - 1] > kp[j]; j--) { int t = kp[j]; kp[j] = kp[j - 1]; kp[j - 1] = t; }
        free(order);
        free(l1);
        /* only what surgery can do alone (a block's outer channels are shared with a residual sum) */
        xb_model *trial = NULL;
        keep[p] = kp;
        n_keep[p] = nk;
        xb_status st = xb_model_prune(m, text, "prune-trial", (const int *const *)keep, n_keep, &trial, NULL, NULL, NULL);
        xb_model_free(trial);
        if (st) {
            free(kp);
            keep[p] = NULL;
            n_keep[p] = 0;
            u->no_prune = 1;
            xb_clear_error();
            continue;
        }
        u->stable = 0; /* a new plateau must form before the next cut */
        u->cuts++;
        *any = 1;
    }
    if (*any) a->prunes++;
    return XB_OK;
}

void xb_ad_rebind(xb_ad *a, xb_qop *q) { a->q = q; }
