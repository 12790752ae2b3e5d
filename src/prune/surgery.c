/* surgery.c -- channel surgery: a model with fewer output channels in some convolutions, physically smaller,
 * and its parameters, buffers and any per-parameter state (optimizer moments) carried over by index maps.
 * One implementation for every pruning technique (activation-density pruning, filter pruning, relevance
 * pruning).  The kept channels of each node follow the graph: a convolution keeps what it is told;
 * batchnorm, relu, quant, pooling and dropout keep their input's; flatten expands channels to features;
 * a linear layer's inputs follow its input's features.  Channels that meet in a residual sum must be kept
 * alike in every producer (consistent pruning); option-A shortcuts carry full channel sets only, so a
 * stage's outer channels are left alone where such a shortcut reads them.  docs/pruning.md. */
#include "xbar.h"

#include <stdlib.h>
#include <string.h>

#define TRY(x) do { xb_status st_ = (x); if (st_ != XB_OK) return st_; } while (0)

typedef struct chans_ { int n, all; int *idx; } chans_;   /* kept original indices, ascending */

static void set_all_(chans_ *c, int n) {
    c->n = n;
    c->all = 1;
    c->idx = malloc(sizeof(int) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) c->idx[i] = i;
}

static void copy_(chans_ *d, const chans_ *s) {
    d->n = s->n;
    d->all = s->all;
    d->idx = malloc(sizeof(int) * (size_t)(s->n + 1));
    memcpy(d->idx, s->idx, sizeof(int) * (size_t)s->n);
}

static int same_(const chans_ *a, const chans_ *b) {
    return a->n == b->n && !memcmp(a->idx, b->idx, sizeof(int) * (size_t)a->n);
}

/* the kept channels (features) of every node's output */
static xb_status propagate_(const xb_model *m, const int *const *keep, const int *n_keep, chans_ *ch, chans_ *img) {
    int c0, h0, w0;
    xb_model_input_shape(m, &c0, &h0, &w0);
    set_all_(img, c0);
    for (int i = 0; i < xb_model_n_nodes(m); i++) {
        const char *t = xb_model_node_type(m, i), *name = xb_model_node_name(m, i);
        int a, b, c, h, w;
        xb_model_node_inputs(m, i, &a, &b);
        xb_model_node_shape(m, i, &c, &h, &w);
        const chans_ *in = a < 0 ? img : &ch[a];
        const int mp = xb_model_node_mapped(m, i);
        if (!strcmp(t, "conv2d")) {
            if (mp >= 0 && keep[mp]) { /* grouped convolutions were refused by the caller */
                ch[i].n = n_keep[mp];
                ch[i].all = n_keep[mp] == c;
                ch[i].idx = malloc(sizeof(int) * (size_t)(n_keep[mp] + 1));
                memcpy(ch[i].idx, keep[mp], sizeof(int) * (size_t)n_keep[mp]);
            } else {
                set_all_(&ch[i], c);
            }
        } else if (!strcmp(t, "linear")) {
            if (mp >= 0 && keep[mp])
                return xb_errorf(XB_ERR_ARG, "layer %s is linear: only convolutions' output channels are pruned. HINT: "
                                 "keep its outputs (NULL)", name);
            set_all_(&ch[i], c);
        } else if (!strcmp(t, "flatten")) {
            int ci, hi, wi;
            if (a < 0) xb_model_input_shape(m, &ci, &hi, &wi);
            else xb_model_node_shape(m, a, &ci, &hi, &wi);
            const int hw = hi * wi;
            ch[i].n = in->n * hw;
            ch[i].all = in->all;
            ch[i].idx = malloc(sizeof(int) * (size_t)(ch[i].n + 1));
            for (int k = 0; k < in->n; k++)
                for (int p = 0; p < hw; p++) ch[i].idx[k * hw + p] = in->idx[k] * hw + p;
        } else if (!strcmp(t, "add")) {
            const chans_ *in2 = b < 0 ? img : &ch[b];
            if (!same_(in, in2))
                return xb_errorf(XB_ERR_ARG, "residual sum %s adds channel sets that differ after pruning (%d and %d "
                                 "kept). HINT: prune every producer of a residual path alike, or leave the block's "
                                 "outer channels alone", name, in->n, in2->n);
            copy_(&ch[i], in);
        } else if (!strcmp(t, "shortcut")) {
            if (!in->all)
                return xb_errorf(XB_ERR_UNSUPPORTED, "option-A shortcut %s reads pruned channels; it pads whole channel "
                                 "sets only. HINT: leave the outer channels of the stage it reads alone", name);
            set_all_(&ch[i], c);
        } else { /* batchnorm, relu, quant, pooling, gap, dropout: channel for channel */
            copy_(&ch[i], in);
        }
        if (ch[i].n < 1)
            return xb_errorf(XB_ERR_ARG, "layer %s would keep no channel. HINT: keep at least one", name);
    }
    return XB_OK;
}

/* the pruned model's text: the model's sections with the pruned convolutions' out_channels */
static xb_status text_(const char *text, const char *path, const xb_model *m, const int *n_keep, const int *const *keep,
                       char **out) {
    xb_ini ini;
    TRY(xb_ini_parse_string(text, strlen(text), path, &ini));
    size_t cap = strlen(text) * 2 + 1024, n = 0;
    char *s = malloc(cap);
    xb_status st = s ? XB_OK : xb_errorf(XB_ERR_NOMEM, "no memory for the pruned model's text");
    for (int i = 0; i < ini.n && !st; i++) {
        const xb_ini_section *sec = &ini.sec[i];
        int mp = -1;
        for (int k = 0; k < xb_model_n_mapped(m) && !strcmp(sec->type, "conv2d"); k++) {
            const char *nm;
            xb_model_mapped_info(m, k, &nm, NULL, NULL, NULL);
            if (!strcmp(nm, sec->name)) mp = k;
        }
        size_t need = 64 + strlen(sec->type) + strlen(sec->name);
        for (int k = 0; k < sec->n; k++) need += strlen(sec->kv[k].key) + strlen(sec->kv[k].val) + 8;
        if (n + need >= cap) {
            cap = (n + need) * 2;
            char *t = realloc(s, cap);
            if (!t) { st = xb_errorf(XB_ERR_NOMEM, "no memory for the pruned model's text"); break; }
            s = t;
        }
        n += (size_t)snprintf(s + n, cap - n, "%s[%s%s%s]\n", i ? "\n" : "", sec->type, sec->name[0] ? " " : "",
                              sec->name);
        for (int k = 0; k < sec->n; k++) {
            if (mp >= 0 && keep[mp] && !strcmp(sec->kv[k].key, "out_channels"))
                n += (size_t)snprintf(s + n, cap - n, "out_channels = %d\n", n_keep[mp]);
            else
                n += (size_t)snprintf(s + n, cap - n, "%s = %s\n", sec->kv[k].key, sec->kv[k].val);
        }
    }
    xb_ini_free(&ini);
    if (st) { free(s); return st; }
    *out = s;
    return XB_OK;
}

/* which old element each new element of parameter (or buffer) p comes from */
/* kind 0: unchanged; 1: per channel of `out`; 2: a weight (out, in, ...) over `out` (NULL: all) and `in` */
static void map_param_(const xb_param *np, const xb_param *op, const chans_ *out, const chans_ *in, int kind,
                       int64_t *map) {
    if (kind == 0 || np->ndim == 0) { /* unchanged */
        for (int64_t j = 0; j < np->numel; j++) map[np->offset + j] = op->offset + j;
        return;
    }
    if (np->ndim == 1) { /* per channel: bias, batchnorm */
        const chans_ *c = kind == 1 ? out : in;
        for (int64_t j = 0; j < np->numel; j++) map[np->offset + j] = op->offset + c->idx[j];
        return;
    }
    /* weights (out, in, rest...) */
    const int64_t rest = np->numel / (np->shape[0] * np->shape[1]), oin = op->shape[1];
    for (int64_t o = 0; o < np->shape[0]; o++)
        for (int64_t i = 0; i < np->shape[1]; i++)
            for (int64_t r = 0; r < rest; r++) {
                const int64_t oo = out ? out->idx[o] : o, ii = in->idx[i];
                map[np->offset + (o * np->shape[1] + i) * rest + r] = op->offset + (oo * oin + ii) * rest + r;
            }
}

xb_status xb_model_prune(const xb_model *m, const char *text, const char *path, const int *const *keep,
                         const int *n_keep, xb_model **out, char **out_text, int64_t **param_map, int64_t **buffer_map) {
    const int nn = xb_model_n_nodes(m), nmp = xb_model_n_mapped(m);
    for (int k = 0; k < nmp; k++) {
        if (!keep[k]) continue;
        const char *name;
        int param, ro, kk;
        xb_model_mapped_info(m, k, &name, &param, &ro, &kk);
        const xb_param *w = xb_model_param(m, param);
        if (w->shape[0] != ro)
            return xb_errorf(XB_ERR_UNSUPPORTED, "layer %s is a grouped convolution: its channels are not pruned. "
                             "HINT: keep its outputs (NULL)", name);
        for (int j = 0; j < n_keep[k]; j++)
            if (keep[k][j] < 0 || keep[k][j] >= ro || (j && keep[k][j] <= keep[k][j - 1]))
                return xb_errorf(XB_ERR_ARG, "layer %s: kept channel list is not ascending in 0..%d (entry %d = %d)",
                                 name, ro - 1, j, keep[k][j]);
    }
    chans_ *ch = calloc((size_t)nn + 1, sizeof *ch), img = {0, 0, NULL};
    if (!ch) return xb_errorf(XB_ERR_NOMEM, "no memory for channel surgery");
    char *nt = NULL;
    xb_model *nmod = NULL;
    int64_t *pm = NULL, *bm = NULL;
    xb_status st = propagate_(m, keep, n_keep, ch, &img);
    if (!st) st = text_(text, path, m, n_keep, keep, &nt);
    if (!st) st = xb_model_load_text(nt, strlen(nt), path, 1, &nmod);
    if (!st) {
        pm = malloc(sizeof(int64_t) * (size_t)(xb_model_n_trainable(nmod) + 1));
        bm = malloc(sizeof(int64_t) * (size_t)(xb_model_n_buffer(nmod) + 1));
        if (!pm || !bm) st = xb_errorf(XB_ERR_NOMEM, "no memory for channel surgery");
    }
    for (int i = 0; i < nn && !st; i++) {
        const char *t = xb_model_node_type(m, i), *name = xb_model_node_name(m, i);
        int a, b;
        xb_model_node_inputs(m, i, &a, &b);
        const chans_ *in = a < 0 ? &img : &ch[a];
        for (int p = 0; p < xb_model_n_params(nmod); p++) {
            const xb_param *np = xb_model_param(nmod, p);
            const size_t ln = strlen(name);
            if (strncmp(np->name, name, ln) || np->name[ln] != '.' || strchr(np->name + ln + 1, '.')) continue;
            const xb_param *op = xb_model_find_param(m, np->name);
            XB_ASSERT(op && op->trainable == np->trainable);
            int64_t *map = np->trainable ? pm : bm;
            const char *suf = np->name + ln + 1;
            if (!strcmp(t, "conv2d") || !strcmp(t, "linear")) {
                if (!strcmp(suf, "weight")) map_param_(np, op, &ch[i], in, 2, map);
                else map_param_(np, op, &ch[i], in, 1, map); /* bias */
            } else if (!strcmp(t, "batchnorm") && strcmp(suf, "num_batches_tracked") != 0) {
                map_param_(np, op, &ch[i], in, 1, map);
            } else {
                map_param_(np, op, NULL, in, 0, map);
            }
        }
    }
    if (!st) { /* the values */
        const float *ov = xb_model_params((xb_model *)m), *ob = xb_model_buffers((xb_model *)m);
        float *nv = xb_model_params(nmod), *nb = xb_model_buffers(nmod);
        for (int64_t j = 0; j < xb_model_n_trainable(nmod); j++) nv[j] = ov[pm[j]];
        for (int64_t j = 0; j < xb_model_n_buffer(nmod); j++) nb[j] = ob[bm[j]];
    }
    for (int i = 0; i < nn; i++) free(ch[i].idx);
    free(ch);
    free(img.idx);
    if (st) {
        xb_model_free(nmod);
        free(nt); free(pm); free(bm);
        return st;
    }
    *out = nmod;
    if (out_text) *out_text = nt; else free(nt);
    if (param_map) *param_map = pm; else free(pm);
    if (buffer_map) *buffer_map = bm; else free(bm);
    return XB_OK;
}
