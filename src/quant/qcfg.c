/* qcfg.c -- quantization configs: [quantize] sections (in a model .cfg or a --quant-config file) and the
 * flags of `xbar train` resolved into a quantized model's config text ([quant] layers after relus, one
 * [quantize LAYER.weight] per mapped layer), the weight specs read back from it, the export of quantized weights
 * with their codes and scales, and the precision table of `xbar info`.  docs/quantization.md. */
#include "xbar.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TRY(x) do { xb_status st_ = (x); if (st_ != XB_OK) return st_; } while (0)

const char *const xb_qw_names_cfg_[] = {"none", "uniform", "binary", "ternary", "ternary-sym", "ternary-asym",
                                        "dorefa", NULL};
static const char *const scale_names_[] = {"tensor", "channel", NULL};
static const char *const act_names_[] = {"uniform", "pact", "dorefa", "ternary", NULL};

/* ---- text ---------------------------------------------------------------------------------------- */

typedef struct sbuf_ { char *s; size_t n, cap; } sbuf_;

static void sb_printf_(sbuf_ *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf_(sbuf_ *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        XB_ASSERT(k >= 0);
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *s = realloc(b->s, cap);
        XB_ASSERT(s);
        b->s = s;
        b->cap = cap;
    }
}

xb_status xb_model_text(const char *name_or_path, char **out, char *path, size_t path_n) {
    size_t len = strlen(name_or_path);
    int is_file = strchr(name_or_path, '/') || (len > 4 && !strcmp(name_or_path + len - 4, ".cfg"));
    if (!is_file) {
        const char *t = xb_zoo_cfg(name_or_path);
        if (!t) return xb_errorf(XB_ERR_ARG, "model '%s' is neither a zoo model nor a .cfg file. HINT: `xbar info` "
                                 "lists the zoo; a file needs a .cfg suffix or a '/'", name_or_path);
        *out = strdup(t);
        snprintf(path, path_n, "zoo:%s.cfg", name_or_path);
        return *out ? XB_OK : xb_errorf(XB_ERR_NOMEM, "no memory for a model's text");
    }
    FILE *f = fopen(name_or_path, "rb");
    if (!f) return xb_errorf(XB_ERR_IO, "%s: cannot open: %s. HINT: check the path", name_or_path, strerror(errno));
    sbuf_ b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        sb_printf_(&b, "%.*s", (int)got, chunk);
        if (b.n > (64u << 20)) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad || b.n > (64u << 20)) {
        free(b.s);
        return xb_errorf(XB_ERR_IO, "%s: cannot read it (or it is over 64 MiB). HINT: a model .cfg is a small text "
                         "file", name_or_path);
    }
    if (!b.s) sb_printf_(&b, "%s", "");
    *out = b.s;
    snprintf(path, path_n, "%s", name_or_path);
    return XB_OK;
}

/* ---- resolving ----------------------------------------------------------------------------------- */

/* an activation quantizer: bits 0 = none; set: given by a [quantize RELU] section (overrides the defaults) */
typedef struct act_ { int set, kind, bits; char clip[64]; } act_;

/* the weight keys of a [quantize] section over the spec it starts from */
static xb_status weight_keys_(const xb_ini *ini, xb_ini_section *s, xb_qw_spec *w) {
    char buf[32];
    int idx;
    int line;
    if (xb_ini_raw(s, "weight", &line)) {
        TRY(xb_ini_str(ini, s, "weight", 0, "none", xb_qw_names_cfg_, buf, sizeof buf, &idx));
        w->kind = (xb_qw_kind)idx;
    }
    long bits;
    TRY(xb_ini_int(ini, s, "weight_bits", 0, w->bits, 1, 16, &bits));
    w->bits = (int)bits;
    TRY(xb_ini_str(ini, s, "weight_scale", 0, scale_names_[w->per_channel], scale_names_, buf, sizeof buf, &idx));
    w->per_channel = idx;
    TRY(xb_ini_bool(ini, s, "stochastic", 0, w->stochastic, &w->stochastic));
    TRY(xb_ini_double(ini, s, "delta", 0, w->delta, 1e-6, 1.999, &w->delta));
    return XB_OK;
}

/* an activation clip: "calibrated" or a positive number, as the [quant] layer takes it; where: "FILE:LINE:
 * act_clip" or "--act-clip" */
static xb_status clip_ok_(const char *c, const char *where) {
    if (!strcmp(c, "calibrated")) return XB_OK;
    char *e;
    double v = strtod(c, &e);
    if (e == c || *e || !(v > 0) || v > 1e30 || strlen(c) >= 64)
        return xb_errorf(XB_ERR_CONFIG, "%s = '%.40s' is not a positive number or 'calibrated'. HINT: e.g. 6 (the "
                         "activations' largest value), or calibrated (a running maximum)", where, c);
    return XB_OK;
}

static xb_status act_keys_(const xb_ini *ini, xb_ini_section *s, act_ *a) {
    char buf[32];
    int idx, line;
    if (xb_ini_raw(s, "act", &line)) {
        TRY(xb_ini_str(ini, s, "act", 0, "uniform", act_names_, buf, sizeof buf, &idx));
        a->kind = idx;
    }
    long bits;
    TRY(xb_ini_int(ini, s, "act_bits", 0, a->bits, 0, 16, &bits));
    a->bits = (int)bits;
    const char *c = xb_ini_raw(s, "act_clip", &line);
    if (c) {
        char where[600];
        snprintf(where, sizeof where, "%s:%d: act_clip", ini->path, line);
        TRY(clip_ok_(c, where));
        snprintf(a->clip, sizeof a->clip, "%s", c);
    }
    return XB_OK;
}

static int find_sec_(const xb_ini *ini, const char *type, const char *name) {
    for (int i = 0; i < ini->n; i++)
        if (!strcmp(ini->sec[i].type, type) && !strcmp(ini->sec[i].name, name)) return i;
    return -1;
}

static int is_mapped_(const char *type) { return !strcmp(type, "conv2d") || !strcmp(type, "linear"); }

/* the [quantize ...] sections of one parsed text: defaults into *w / *a / first / last, overrides recorded
 * per model section index (ow: weights of mapped layers, oa: activations after relus) */
static xb_status read_sections_(xb_ini *q, const xb_ini *model, xb_qw_spec *w, act_ *a, int *first, int *last,
                                xb_qw_spec *ow, int *has_ow, act_ *oa) {
    for (int i = 0; i < q->n; i++) {
        xb_ini_section *s = &q->sec[i];
        if (strcmp(s->type, "quantize") != 0) {
            if (q == model) { /* the model's own sections: their keys are the model loader's to check */
                for (int k = 0; k < s->n; k++) s->kv[k].used = 1;
                continue;
            }
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [%s%s%s] does not belong in a quantization config. HINT: it "
                             "takes [quantize] and [quantize LAYER] sections", q->path, s->line, s->type,
                             s->name[0] ? " " : "", s->name);
        }
        if (!s->name[0]) {
            TRY(weight_keys_(q, s, w));
            TRY(act_keys_(q, s, a));
            long v;
            TRY(xb_ini_int(q, s, "first_bits", 0, *first, -1, 16, &v));
            *first = (int)v;
            TRY(xb_ini_int(q, s, "last_bits", 0, *last, -1, 16, &v));
            *last = (int)v;
            continue;
        }
        /* NAME.weight: a conv2d or linear layer's weights; NAME.output: the output of relu NAME */
        int j = -1, wt = 0;
        const size_t ln = strlen(s->name);
        if (ln > 7 && !strcmp(s->name + ln - 7, ".weight")) wt = 1;
        else if (!(ln > 7 && !strcmp(s->name + ln - 7, ".output")))
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [quantize %s] names neither a layer's weights nor its output. "
                             "HINT: [quantize LAYER.weight] (a conv2d or linear layer) or [quantize RELU.output]",
                             q->path, s->line, s->name);
        for (int k = 1; k < model->n && j < 0; k++)
            if (strlen(model->sec[k].name) == ln - 7 && !strncmp(model->sec[k].name, s->name, ln - 7) &&
                strcmp(model->sec[k].type, "quantize") != 0)
                j = k;
        if (j < 0 || (wt && !is_mapped_(model->sec[j].type)) || (!wt && strcmp(model->sec[j].type, "relu") != 0))
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [quantize %s]: the model has no %s layer '%.*s'. HINT: `xbar info "
                             "--model MODEL` lists the layers", q->path, s->line, s->name,
                             wt ? "conv2d or linear" : "relu", (int)(ln - 7), s->name);
        if (wt) {
            if (!has_ow[j]) { ow[j] = *w; has_ow[j] = 1; }
            TRY(weight_keys_(q, s, &ow[j]));
        } else {
            if (!oa[j].set) { oa[j] = *a; oa[j].set = 1; }
            TRY(act_keys_(q, s, &oa[j]));
        }
    }
    return xb_ini_check_unused(q);
}

static void write_spec_(sbuf_ *b, const char *name, const xb_qw_spec *w) {
    sb_printf_(b, "\n[quantize %s.weight]\nweight = %s\n", name, xb_qw_names_cfg_[w->kind]);
    if (w->kind == XB_QW_NONE) return;
    if (w->kind == XB_QW_UNIFORM || w->kind == XB_QW_DOREFA) sb_printf_(b, "weight_bits = %d\n", w->bits);
    if (w->kind != XB_QW_TERNARY)
        sb_printf_(b, "weight_scale = %s\n", scale_names_[w->per_channel]);
    if (w->stochastic) sb_printf_(b, "stochastic = true\n");
    if (w->kind >= XB_QW_TERNARY && w->kind <= XB_QW_TERNARY_ASYM) sb_printf_(b, "delta = %.9g\n", w->delta);
}

xb_status xb_quant_rewrite(const char *model_text, const char *model_path, const char *qtext, const char *qpath,
                           const xb_quant_flags *fl, char **out, int *any) {
    xb_ini mi, qi;
    TRY(xb_ini_parse_string(model_text, strlen(model_text), model_path, &mi));
    memset(&qi, 0, sizeof qi);
    xb_status st = XB_OK;
    if (qtext && (st = xb_ini_parse_string(qtext, strlen(qtext), qpath, &qi))) { xb_ini_free(&mi); return st; }
    const int ns = mi.n;
    xb_qw_spec w = {XB_QW_NONE, 8, 1, 0, 0.7}, *ow = calloc((size_t)ns + 1, sizeof *ow);
    int *has_ow = calloc((size_t)ns + 1, sizeof *has_ow), first = -1, last = -1;
    act_ a = {0, XB_QA_UNIFORM, 0, ""}, *oa = calloc((size_t)ns + 1, sizeof *oa);
    sbuf_ b = {0};
    if (!ow || !has_ow || !oa) { st = xb_errorf(XB_ERR_NOMEM, "no memory for a quantization config"); goto done; }
    /* the model's own [quantize] sections, then the file's, then the flags */
    if ((st = read_sections_(&mi, &mi, &w, &a, &first, &last, ow, has_ow, oa))) goto done;
    if (qtext && (st = read_sections_(&qi, &mi, &w, &a, &first, &last, ow, has_ow, oa))) goto done;
    if (fl) {
        if (fl->quant) {
            int k = -1;
            for (int i = 0; xb_qw_names_cfg_[i]; i++)
                if (!strcmp(xb_qw_names_cfg_[i], fl->quant)) k = i;
            if (k < 0) { st = xb_errorf(XB_ERR_ARG, "--quant %s: unknown. HINT: uniform, binary, ternary, ternary-sym, "
                                        "ternary-asym or dorefa", fl->quant); goto done; }
            w.kind = (xb_qw_kind)k;
        }
        if (fl->weight_bits) {
            w.bits = fl->weight_bits;
            if (w.kind == XB_QW_NONE) w.kind = XB_QW_UNIFORM;
        }
        if (fl->act) {
            int k = -1;
            for (int i = 0; act_names_[i]; i++)
                if (!strcmp(act_names_[i], fl->act)) k = i;
            if (k < 0) { st = xb_errorf(XB_ERR_ARG, "--act %s: unknown. HINT: uniform, pact, dorefa or ternary",
                                        fl->act); goto done; }
            a.kind = k;
        } else if (fl->quant && !strcmp(fl->quant, "dorefa")) {
            a.kind = XB_QA_DOREFA; /* DoReFa's activations: clipped to [0, 1] */
        }
        if (fl->act_clip) {
            if ((st = clip_ok_(fl->act_clip, "--act-clip"))) goto done;
            snprintf(a.clip, sizeof a.clip, "%s", fl->act_clip);
        }
        if (fl->act_bits) a.bits = fl->act_bits;
        if (fl->act && !a.bits) a.bits = a.kind == XB_QA_TERNARY ? 2 : 8;
        if (fl->first_bits >= 0) first = fl->first_bits;
        if (fl->last_bits >= 0) last = fl->last_bits;
    }
    /* the resolved text: every section but [quantize], a [quant] after each quantized relu */
    int first_m = -1, last_m = -1;
    for (int i = 1; i < ns; i++)
        if (is_mapped_(mi.sec[i].type)) { if (first_m < 0) first_m = i; last_m = i; }
    *any = 0;
    for (int i = 0; i < ns; i++) {
        xb_ini_section *s = &mi.sec[i];
        if (!strcmp(s->type, "quantize")) continue;
        sb_printf_(&b, "%s[%s%s%s]\n", i ? "\n" : "", s->type, s->name[0] ? " " : "", s->name);
        for (int k = 0; k < s->n; k++) sb_printf_(&b, "%s = %s\n", s->kv[k].key, s->kv[k].val);
        if (!strcmp(s->type, "quant")) *any = 1; /* a model quantized before */
        if (strcmp(s->type, "relu") != 0) continue;
        act_ q = oa[i].set ? oa[i] : a;
        if (q.bits <= 0) continue;
        char qname[160];
        snprintf(qname, sizeof qname, "%s_q", s->name);
        if (find_sec_(&mi, "quant", qname) >= 0) continue; /* already quantized */
        const char *clip = q.clip[0] ? q.clip : "calibrated";
        if (q.kind == XB_QA_DOREFA) clip = "1";
        if (q.kind == XB_QA_PACT && !strcmp(clip, "calibrated")) clip = "6";
        sb_printf_(&b, "\n[quant %s]\nmode = %s\n", qname, act_names_[q.kind]);
        if (q.kind != XB_QA_TERNARY) sb_printf_(&b, "bits = %d\n", q.bits);
        sb_printf_(&b, "clip = %s\n", clip);
        *any = 1;
    }
    for (int i = 1; i < ns; i++) {
        if (!is_mapped_(mi.sec[i].type)) continue;
        xb_qw_spec s = has_ow[i] ? ow[i] : w;
        if (!has_ow[i] && ((i == first_m && first >= 0) || (i == last_m && last >= 0))) {
            const int fb = i == first_m && first >= 0 ? first : last;
            s.kind = fb == 0 ? XB_QW_NONE : XB_QW_UNIFORM;
            s.bits = fb;
            s.stochastic = 0;
        }
        char where[700];
        snprintf(where, sizeof where, "%s:%d: [quantize %s.weight]", has_ow[i] && qtext ? qpath : model_path,
                 mi.sec[i].line, mi.sec[i].name);
        if ((st = xb_qw_check(&s, where))) goto done;
        if (s.kind != XB_QW_NONE) *any = 1;
        write_spec_(&b, mi.sec[i].name, &s);
    }
    *out = b.s;
    b.s = NULL;
done:
    free(b.s); free(ow); free(has_ow); free(oa);
    xb_ini_free(&mi);
    if (qtext) xb_ini_free(&qi);
    return st;
}

xb_status xb_quant_current_text(const char *text, const char *path, const xb_model *m, xb_qop *q, char **out) {
    xb_ini ini;
    TRY(xb_ini_parse_string(text, strlen(text), path, &ini));
    sbuf_ b = {0};
    for (int i = 0; i < ini.n; i++) {
        xb_ini_section *s = &ini.sec[i];
        if (!strcmp(s->type, "quantize")) continue;
        int node = -1;
        for (int k = 0; k < xb_model_n_nodes(m) && !strcmp(s->type, "quant"); k++)
            if (!strcmp(xb_model_node_name(m, k), s->name)) node = k;
        sb_printf_(&b, "%s[%s%s%s]\n", i ? "\n" : "", s->type, s->name[0] ? " " : "", s->name);
        for (int k = 0; k < s->n; k++) {
            int kind, bits;
            float clip;
            if (node >= 0 && !strcmp(s->kv[k].key, "bits") && xb_model_node_quant(m, node, &kind, &bits, &clip))
                sb_printf_(&b, "bits = %d\n", bits);
            else
                sb_printf_(&b, "%s = %s\n", s->kv[k].key, s->kv[k].val);
        }
    }
    for (int i = 0; i < xb_model_n_mapped(m); i++) {
        const char *name;
        xb_model_mapped_info(m, i, &name, NULL, NULL, NULL);
        const xb_qw_spec none = {XB_QW_NONE, 8, 1, 0, 0.7};
        write_spec_(&b, name, q ? xb_qop_spec(q, i) : &none);
    }
    xb_ini_free(&ini);
    *out = b.s;
    return XB_OK;
}

xb_status xb_quant_specs(const char *text, const char *path, const xb_model *m, xb_qw_spec *specs, int *any) {
    xb_ini ini;
    TRY(xb_ini_parse_string(text, strlen(text), path, &ini));
    const int nm = xb_model_n_mapped(m);
    const xb_qw_spec none = {XB_QW_NONE, 8, 1, 0, 0.7};
    for (int i = 0; i < nm; i++) specs[i] = none;
    *any = 0;
    xb_status st = XB_OK;
    for (int i = 0; i < ini.n && !st; i++) {
        xb_ini_section *s = &ini.sec[i];
        if (strcmp(s->type, "quantize") != 0) {
            for (int k = 0; k < s->n; k++) s->kv[k].used = 1; /* the model's keys: checked by the model loader */
            continue;
        }
        int j = -1;
        const size_t ln = strlen(s->name);
        for (int k = 0; k < nm && j < 0 && ln > 7 && !strcmp(s->name + ln - 7, ".weight"); k++) {
            const char *name;
            xb_model_mapped_info(m, k, &name, NULL, NULL, NULL);
            if (strlen(name) == ln - 7 && !strncmp(name, s->name, ln - 7)) j = k;
        }
        if (j < 0) {
            st = xb_errorf(XB_ERR_CONFIG, "%s:%d: [quantize%s%s] is not resolved to a conv2d or linear layer. HINT: "
                           "a resolved model names LAYER.weight of its conv2d and linear layers (xb_quant_rewrite)", path, s->line, s->name[0] ? " " : "",
                           s->name);
            break;
        }
        if ((st = weight_keys_(&ini, s, &specs[j]))) break;
        char where[600];
        snprintf(where, sizeof where, "%s:%d: [quantize %s]", path, s->line, s->name);
        if ((st = xb_qw_check(&specs[j], where))) break;
        *any |= specs[j].kind != XB_QW_NONE;
    }
    if (!st) st = xb_ini_check_unused(&ini);
    xb_ini_free(&ini);
    return st;
}

/* ---- export and report --------------------------------------------------------------------------- */

xb_status xb_quant_export(xb_qop *q, xb_model *m, const char *path, const char *codes_path) {
    const int nm = xb_model_n_mapped(m);
    float *pv = xb_model_params(m);
    const size_t nt = (size_t)xb_model_n_trainable(m);
    float *keep = xb_try_malloc((nt + 1) * sizeof(float));
    if (!keep) return xb_errorf(XB_ERR_NOMEM, "no memory to export the quantized weights");
    memcpy(keep, pv, nt * sizeof(float));
    xb_safetensors cs;
    xb_st_init(&cs);
    xb_status st = XB_OK;
    float **codes = calloc((size_t)nm + 1, sizeof *codes);
    char (*names)[2][160] = calloc((size_t)nm + 1, sizeof *names);
    if (!codes || !names) st = xb_errorf(XB_ERR_NOMEM, "no memory to export the quantized weights");
    for (int i = 0; i < nm && !st; i++) {
        int param;
        const char *name;
        xb_model_mapped_info(m, i, &name, &param, NULL, NULL);
        const xb_param *p = xb_model_param(m, param);
        const float *wq, *code, *scale;
        if ((st = xb_qop_layer(q, i, &wq, &code, &scale))) break;
        /* the quantizer reads the master weights (keep), the model's block gets the quantized ones */
        memcpy(pv + p->offset, wq, (size_t)p->numel * sizeof(float));
        int32_t *ci = xb_try_malloc((size_t)p->numel * sizeof(int32_t) + 64);
        if (!ci) { st = xb_errorf(XB_ERR_NOMEM, "no memory to export the codes"); break; }
        for (int64_t j = 0; j < p->numel; j++) ci[j] = (int32_t)code[j];
        codes[i] = (float *)(void *)ci;
        xb_tensor tc = {XB_I32, p->ndim, {0}, ci, 0};
        for (int d = 0; d < XB_MAX_DIMS; d++) tc.shape[d] = p->shape[d];
        snprintf(names[i][0], sizeof names[i][0], "%s.weight_code", name);
        xb_st_add(&cs, names[i][0], tc);
        const xb_qw_spec *sp = xb_qop_spec(q, i);
        const int spr = xb_qw_scales_per_row(sp);
        if (!spr) continue; /* float or unweighted ternary: the codes are the values */
        xb_tensor ts = {XB_F32, 2, {sp->per_channel ? p->shape[0] : 1, spr, 1, 1}, (void *)(uintptr_t)scale, 0};
        snprintf(names[i][1], sizeof names[i][1], "%s.weight_scale", name);
        xb_st_add(&cs, names[i][1], ts);
    }
    if (!st) st = xb_model_save_weights(m, path);
    if (!st) st = xb_st_save(codes_path, &cs);
    memcpy(pv, keep, nt * sizeof(float));
    for (int i = 0; codes && i < nm; i++) xb_free(codes[i]);
    free(codes); free(names);
    xb_st_free(&cs);
    xb_free(keep);
    return st;
}

void xb_quant_print(const xb_model *m, const xb_qw_spec *specs, FILE *f, int json) {
    const int nm = xb_model_n_mapped(m);
    if (json) fprintf(f, "{\"weights\":[");
    else fprintf(f, "precision (weights of the mapped layers, then the activation quantizers):\n");
    for (int i = 0; i < nm; i++) {
        const char *name;
        xb_model_mapped_info(m, i, &name, NULL, NULL, NULL);
        const xb_qw_spec *s = &specs[i];
        char what[64];
        if (s->kind == XB_QW_NONE) snprintf(what, sizeof what, "float32");
        else if (s->kind == XB_QW_UNIFORM || s->kind == XB_QW_DOREFA)
            snprintf(what, sizeof what, "%s %d bits", xb_qw_names_cfg_[s->kind], s->bits);
        else snprintf(what, sizeof what, "%s", xb_qw_names_cfg_[s->kind]);
        if (json)
            fprintf(f, "%s{\"name\":\"%s\",\"quant\":\"%s\",\"bits\":%d,\"scale\":\"%s\"}", i ? "," : "", name,
                    xb_qw_names_cfg_[s->kind], xb_qw_bits(s), scale_names_[s->per_channel]);
        else
            fprintf(f, "  %-22s weights %-18s%s\n", name, what,
                    s->kind == XB_QW_NONE || s->kind == XB_QW_TERNARY ? "" : s->per_channel ? " (scale per channel)"
                                                                                          : " (one scale)");
    }
    if (json) fprintf(f, "],\"activations\":[");
    int k = 0;
    for (int i = 0; i < xb_model_n_nodes(m); i++) {
        int kind, bits;
        float clip;
        if (!xb_model_node_quant(m, i, &kind, &bits, &clip)) continue;
        char cl[32];
        if (clip > 0) snprintf(cl, sizeof cl, "%g", clip);
        else snprintf(cl, sizeof cl, "%s", kind == XB_QA_PACT ? "learned" : "calibrated");
        if (json)
            fprintf(f, "%s{\"name\":\"%s\",\"quant\":\"%s\",\"bits\":%d,\"clip\":\"%s\"}", k++ ? "," : "",
                    xb_model_node_name(m, i), xb_qa_names[kind], bits, cl);
        else
            fprintf(f, "  %-22s activations %s %d bits, clip %s\n", xb_model_node_name(m, i), xb_qa_names[kind],
                    bits, cl);
    }
    if (json) fprintf(f, "]}");
}
