/*
 * model.c -- the model graph: built from a .cfg (docs/model-cfg.md), shapes inferred, parameters in
 * one flat block (gradients in the same layout), activations planned once per batch size, then
 * forward and backward over the nodes in file order.  Layer arithmetic lives in the k_*.c kernels;
 * this file only wires them.  Not here: optimizers (optim.c), training loops (train.c), I/O of
 * weights (weights.c).
 */
#include "model_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------ */
/* Layer types                                                                                       */
/* ------------------------------------------------------------------------------------------------ */

const char *const xb_ltype_names[L_COUNT] = {"conv2d", "linear", "batchnorm", "relu", "maxpool", "avgpool",
                                             "gap", "flatten", "dropout", "add", "shortcut", "quant"};

/* ------------------------------------------------------------------------------------------------ */
/* Building                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

static int add_param(xb_model *m, const char *prefix, const char *suffix, int ndim, const int64_t *shape,
                     int trainable, int decay, int is_int64) {
    m->params = realloc(m->params, (size_t)(m->n_params + 1) * sizeof *m->params);
    XB_ASSERT(m->params);
    xb_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s.%s", prefix, suffix);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < XB_MAX_DIMS; i++) p->shape[i] = i < ndim ? shape[i] : 1;
    for (int i = 0; i < ndim; i++) p->numel *= shape[i];
    p->trainable = trainable;
    p->decay = decay;
    p->is_int64 = is_int64;
    if (trainable) { p->offset = m->n_train; m->n_train += p->numel; }
    else { p->offset = m->n_buf; m->n_buf += p->numel; }
    return m->n_params++;
}

static int find_node(const xb_model *m, int upto, const char *name) {
    for (int i = 0; i < upto; i++)
        if (!strcmp(m->nodes[i].name, name)) return i;
    return -2;
}

static void trim(char *s) {
    char *a = s;
    while (*a == ' ' || *a == '\t') a++;
    memmove(s, a, strlen(a) + 1);
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
}

/* Resolves an input name to a node index (-1 = image) or reports an error. */
static xb_status resolve_input(const xb_ini *ini, const xb_model *m, int self, const char *nm, int line,
                               int *out) {
    if (!strcmp(nm, "image") || !strcmp(nm, "input")) { *out = -1; return XB_OK; }
    int j = find_node(m, self, nm);
    if (j < 0)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: input '%s' of [%s %s] is not a layer defined above it. "
                         "HINT: layers may only use layers defined earlier in the file (or 'image')",
                         ini->path, line, nm, xb_ltype_names[m->nodes[self].type], m->nodes[self].name);
    *out = j;
    return XB_OK;
}


#define TRY(x) do { xb_status st_ = (x); if (st_ != XB_OK) return st_; } while (0)

static xb_status parse_shape3(const xb_ini *ini, int line, const char *v, int *c, int *h, int *w) {
    char tail;
    if (sscanf(v, "%dx%dx%d%c", c, h, w, &tail) != 3 || *c < 1 || *h < 1 || *w < 1 || *c > 65536 ||
        *h > 65536 || *w > 65536)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: input = '%s' is not a shape CxHxW. HINT: e.g. input = 3x32x32",
                         ini->path, line, v);
    return XB_OK;
}

/* [quant NAME]: mode, bits, clip (a number, or "calibrated"), momentum (calibrated clip) */
static xb_status build_quant(xb_model *m, const xb_ini *ini, xb_ini_section *s, node *nd) {
    char mode[32], clip[64];
    int kind;
    TRY(xb_ini_str(ini, s, "mode", 0, "uniform", xb_qa_names, mode, sizeof mode, &kind));
    nd->qa_kind = kind;
    long bits;
    TRY(xb_ini_int(ini, s, "bits", kind != XB_QA_TERNARY, 2, kind == XB_QA_SIGNED ? 2 : 1, 16, &bits));
    nd->qa_bits = (int)bits;
    const char *cdef = kind == XB_QA_DOREFA ? "1" : kind == XB_QA_PACT ? "6" : "calibrated";
    int line = s->line;
    const char *cv = xb_ini_raw(s, "clip", &line);
    snprintf(clip, sizeof clip, "%s", cv ? cv : cdef);
    nd->qa_calibrated = !strcmp(clip, "calibrated");
    if (nd->qa_calibrated && (kind == XB_QA_PACT || kind == XB_QA_DOREFA))
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: [quant %s] mode = %s cannot take clip = calibrated. HINT: pact "
                         "learns its clip from the number given (its initial value); dorefa clips at 1", ini->path,
                         line, s->name, xb_qa_names[kind]);
    if (!nd->qa_calibrated) {
        char *e;
        double c = strtod(clip, &e);
        if (e == clip || *e || !(c > 0) || c > 1e30)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [quant %s] clip = '%s' is not a positive number or 'calibrated'. "
                             "HINT: e.g. clip = 6, or clip = calibrated", ini->path, line, s->name, clip);
        if (kind == XB_QA_DOREFA && c != 1.0)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [quant %s] mode = dorefa clips at 1, not %s. HINT: remove the "
                             "clip key, or use mode = uniform", ini->path, line, s->name, clip);
        nd->qa_clip = (float)c;
    }
    double mom;
    TRY(xb_ini_double(ini, s, "momentum", 0, 0.01, 1e-6, 1.0, &mom));
    nd->qa_momentum = (float)mom;
    const int64_t one = 1;
    if (kind == XB_QA_PACT) nd->p_alpha = add_param(m, nd->name, "alpha", 1, &one, 1, 1, 0);
    if (nd->qa_calibrated) nd->p_clip = add_param(m, nd->name, "clip", 1, &one, 0, 0, 0);
    if (nd->p_alpha >= 0) m->params[nd->p_alpha].optional = 1;
    if (nd->p_clip >= 0) m->params[nd->p_clip].optional = 1;
    return XB_OK;
}

static xb_status build_node(xb_model *m, const xb_ini *ini, xb_ini_section *s, int idx) {
    node *nd = &m->nodes[idx];
    int b;
    nd->p_w = nd->p_b = nd->p_rm = nd->p_rv = nd->p_nbt = nd->p_alpha = nd->p_clip = -1;
    nd->mapped = -1;
    /* inputs */
    if (nd->type == L_ADD) {
        int line;
        const char *v = xb_ini_raw(s, "inputs", &line);
        if (!v)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [add %s] needs 'inputs = a, b'. HINT: name the two layers "
                             "whose outputs are summed", ini->path, s->line, s->name);
        char buf[256];
        snprintf(buf, sizeof buf, "%s", v);
        char *comma = strchr(buf, ',');
        if (!comma || strchr(comma + 1, ','))
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [add %s] inputs = '%s' must name exactly two layers. "
                             "HINT: inputs = layer1.0.bn2, layer1.0.shortcut", ini->path, line, s->name, v);
        *comma = 0;
        char *a = buf, *c = comma + 1;
        trim(a); trim(c);
        TRY(resolve_input(ini, m, idx, a, line, &nd->in[0]));
        TRY(resolve_input(ini, m, idx, c, line, &nd->in[1]));
        nd->n_in = 2;
    } else {
        int line;
        const char *v = xb_ini_raw(s, "input", &line);
        nd->n_in = 1;
        if (v) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            trim(buf);
            TRY(resolve_input(ini, m, idx, buf, line, &nd->in[0]));
        } else {
            nd->in[0] = idx - 1; /* previous layer, or the image (-1) for the first */
        }
    }
    int c, h, w;
    in_shape(m, nd->in[0], &c, &h, &w);
    nd->c = c; nd->h = h; nd->w = w;
    switch (nd->type) {
    case L_CONV: {
        long oc, k, st, pad, g;
        TRY(xb_ini_int(ini, s, "out_channels", 1, 0, 1, 65536, &oc));
        TRY(xb_ini_int(ini, s, "kernel", 1, 0, 1, 64, &k));
        TRY(xb_ini_int(ini, s, "stride", 0, 1, 1, 64, &st));
        TRY(xb_ini_int(ini, s, "padding", 0, 0, 0, 64, &pad));
        TRY(xb_ini_int(ini, s, "groups", 0, 1, 1, 65536, &g));
        TRY(xb_ini_bool(ini, s, "bias", 0, 1, &b));
        if (xb_conv2d_desc_init(&nd->conv, c, (int)oc, (int)k, (int)k, (int)st, (int)st, (int)pad, (int)pad,
                                (int)g, h, w) != XB_OK)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [conv2d %s] does not fit its input %dx%dx%d: %s",
                             ini->path, s->line, s->name, c, h, w, xb_last_error());
        int64_t ws[4] = {oc, c / g, k, k};
        nd->p_w = add_param(m, nd->name, "weight", 4, ws, 1, 1, 0);
        if (b) nd->p_b = add_param(m, nd->name, "bias", 1, &ws[0], 1, 0, 0);
        nd->c = (int)oc; nd->h = nd->conv.ho; nd->w = nd->conv.wo;
        nd->macs = (int64_t)oc * nd->h * nd->w * xb_conv2d_k(&nd->conv);
        break;
    }
    case L_LINEAR: {
        long of;
        TRY(xb_ini_int(ini, s, "out_features", 1, 0, 1, 1 << 24, &of));
        TRY(xb_ini_bool(ini, s, "bias", 0, 1, &b));
        if (h != 1 || w != 1)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [linear %s] gets a %dx%dx%d map, not features. HINT: put a "
                             "[flatten] or [gap] layer before it", ini->path, s->line, s->name, c, h, w);
        int64_t ws[2] = {of, c};
        nd->p_w = add_param(m, nd->name, "weight", 2, ws, 1, 1, 0);
        if (b) nd->p_b = add_param(m, nd->name, "bias", 1, &ws[0], 1, 0, 0);
        nd->c = (int)of;
        nd->macs = (int64_t)of * c;
        break;
    }
    case L_BN: {
        double eps, mom;
        TRY(xb_ini_double(ini, s, "eps", 0, 1e-5, 1e-12, 1.0, &eps));
        TRY(xb_ini_double(ini, s, "momentum", 0, 0.1, 0.0, 1.0, &mom));
        nd->eps = (float)eps; nd->momentum = (float)mom;
        int64_t cs[1] = {c};
        nd->p_w = add_param(m, nd->name, "weight", 1, cs, 1, 0, 0);
        nd->p_b = add_param(m, nd->name, "bias", 1, cs, 1, 0, 0);
        nd->p_rm = add_param(m, nd->name, "running_mean", 1, cs, 0, 0, 0);
        nd->p_rv = add_param(m, nd->name, "running_var", 1, cs, 0, 0, 0);
        nd->p_nbt = add_param(m, nd->name, "num_batches_tracked", 0, cs, 0, 0, 1);
        break;
    }
    case L_RELU: case L_FLATTEN: case L_GAP: break;
    case L_MAXPOOL: case L_AVGPOOL: {
        long k, st, pad;
        TRY(xb_ini_int(ini, s, "kernel", 1, 0, 1, 64, &k));
        TRY(xb_ini_int(ini, s, "stride", 0, k, 1, 64, &st));
        TRY(xb_ini_int(ini, s, "padding", 0, 0, 0, 32, &pad));
        if (xb_pool_desc_init(&nd->pool, (int)k, (int)st, (int)pad, h, w) != XB_OK)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [%s %s] does not fit its input %dx%dx%d: %s", ini->path,
                             s->line, xb_ltype_names[nd->type], s->name, c, h, w, xb_last_error());
        nd->h = nd->pool.ho; nd->w = nd->pool.wo;
        break;
    }
    case L_DROPOUT: {
        double p;
        TRY(xb_ini_double(ini, s, "p", 0, 0.5, 0.0, 0.999, &p));
        nd->p_drop = (float)p;
        break;
    }
    case L_ADD: {
        int c2, h2, w2;
        in_shape(m, nd->in[1], &c2, &h2, &w2);
        if (c2 != c || h2 != h || w2 != w)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [add %s] sums shapes %dx%dx%d and %dx%dx%d. HINT: both inputs "
                             "need the same shape; use a [shortcut] or a 1x1 [conv2d] to match them", ini->path,
                             s->line, s->name, c, h, w, c2, h2, w2);
        break;
    }
    case L_SHORTCUT: {
        long oc, st;
        TRY(xb_ini_int(ini, s, "out_channels", 0, c, 1, 65536, &oc));
        TRY(xb_ini_int(ini, s, "stride", 0, 1, 1, 64, &st));
        if (oc < c)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: [shortcut %s] out_channels %ld < its input's %d channels. "
                             "HINT: an option-A shortcut only pads channels", ini->path, s->line, s->name, oc, c);
        nd->sc_stride = (int)st;
        nd->sc_pad_lo = (int)(oc - c) / 2;
        nd->c = (int)oc;
        nd->h = (h + (int)st - 1) / (int)st;
        nd->w = (w + (int)st - 1) / (int)st;
        break;
    }
    case L_QUANT: TRY(build_quant(m, ini, s, nd)); break;
    case L_COUNT: XB_ASSERT(0);
    }
    if (nd->type == L_FLATTEN || nd->type == L_GAP) {
        nd->c = nd->type == L_FLATTEN ? c * h * w : c;
        nd->h = nd->w = 1;
    }
    return XB_OK;
}

static void init_params(xb_model *m, int kaiming, uint64_t seed) {
    xb_rng rng;
    xb_rng_seed(&rng, seed, "init");
    for (int i = 0; i < m->n_params; i++) {
        xb_param *p = &m->params[i];
        float *v = p->trainable ? m->pv + p->offset : m->bv + p->offset;
        const char *suffix = strrchr(p->name, '.') + 1;
        /* which node? fan_in = numel(weight)/out */
        if (!strcmp(suffix, "running_var")) { for (int64_t j = 0; j < p->numel; j++) v[j] = 1.0f; continue; }
        if (!strcmp(suffix, "running_mean") || !strcmp(suffix, "num_batches_tracked")) continue;
        /* an activation quantizer: PACT's alpha starts at the configured clip, a calibrated clip at 0 (unset) */
        int q = -1;
        for (int k = 0; k < m->n_nodes; k++)
            if (m->nodes[k].type == L_QUANT && (m->nodes[k].p_alpha == i || m->nodes[k].p_clip == i)) q = k;
        if (q >= 0) { v[0] = m->nodes[q].p_alpha == i ? m->nodes[q].qa_clip : 0.0f; continue; }
        int is_bn = 0;
        for (int k = 0; k < m->n_nodes; k++)
            if ((m->nodes[k].p_w == i || m->nodes[k].p_b == i) && m->nodes[k].type == L_BN) is_bn = 1;
        if (is_bn) {
            float val = !strcmp(suffix, "weight") ? 1.0f : 0.0f;
            for (int64_t j = 0; j < p->numel; j++) v[j] = val;
            continue;
        }
        /* conv/linear: fan_in from the weight of the same layer */
        int64_t fan_in = 1;
        for (int k = 0; k < m->n_nodes; k++) {
            const node *nd = &m->nodes[k];
            if (nd->p_w == i || nd->p_b == i) {
                const xb_param *w = &m->params[nd->p_w];
                fan_in = w->numel / w->shape[0];
            }
        }
        double bound = 1.0 / sqrt((double)fan_in);
        if (!strcmp(suffix, "weight") && kaiming) {
            double sd = sqrt(2.0 / (double)fan_in);
            for (int64_t j = 0; j < p->numel; j++) v[j] = (float)(sd * xb_rng_normal(&rng));
        } else {
            for (int64_t j = 0; j < p->numel; j++) v[j] = (float)(bound * (2.0 * xb_rng_uniform(&rng) - 1.0));
        }
    }
}

static xb_status build_model(xb_model *m, xb_ini *ini, uint64_t seed) {
    if (ini->n == 0 || strcmp(ini->sec[0].type, "net") != 0)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: the first section must be [net]. HINT: start the file with "
                         "[net] input = 3x32x32 classes = 10 (see docs/model-cfg.md)", ini->path,
                         ini->n ? ini->sec[0].line : 1);
    xb_ini_section *net = &ini->sec[0];
    int line;
    const char *v = xb_ini_raw(net, "input", &line);
    if (!v) return xb_errorf(XB_ERR_CONFIG, "%s:%d: [net] needs 'input = CxHxW'. HINT: input = 3x32x32",
                             ini->path, net->line);
    TRY(parse_shape3(ini, line, v, &m->in_c, &m->in_h, &m->in_w));
    long classes;
    TRY(xb_ini_int(ini, net, "classes", 1, 0, 1, 1 << 20, &classes));
    m->classes = (int)classes;
    char name[64];
    TRY(xb_ini_str(ini, net, "name", 0, "", NULL, name, sizeof name, NULL));
    if (name[0]) snprintf(m->name, sizeof m->name, "%s", name);
    static const char *const inits[] = {"torch", "kaiming_normal", NULL};
    int init_kind = 0;
    char ibuf[32];
    TRY(xb_ini_str(ini, net, "init", 0, "torch", inits, ibuf, sizeof ibuf, &init_kind));
    if (ini->n < 2)
        return xb_errorf(XB_ERR_CONFIG, "%s: the model has no layers. HINT: add layer sections after [net]",
                         ini->path);
    /* [quantize ...] sections describe weight quantization (src/quant/qcfg.c reads them), not layers */
    m->n_nodes = 0;
    for (int j = 1; j < ini->n; j++) {
        const int q = !strcmp(ini->sec[j].type, "quantize");
        m->n_nodes += !q;
        for (int k = 0; q && k < ini->sec[j].n; k++) ini->sec[j].kv[k].used = 1;
    }
    if (m->n_nodes < 1)
        return xb_errorf(XB_ERR_CONFIG, "%s: the model has no layers. HINT: add layer sections after [net]",
                         ini->path);
    m->nodes = xb_calloc((size_t)m->n_nodes * sizeof *m->nodes);
    for (int i = 0, j = 1; i < m->n_nodes; i++, j++) {
        while (!strcmp(ini->sec[j].type, "quantize")) j++;
        xb_ini_section *s = &ini->sec[j];
        node *nd = &m->nodes[i];
        int t = -1;
        for (int k = 0; k < L_COUNT; k++)
            if (!strcmp(s->type, xb_ltype_names[k])) t = k;
        if (t < 0)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: unknown layer type [%s]. HINT: known types are conv2d, linear, "
                             "batchnorm, relu, maxpool, avgpool, gap, flatten, dropout, add, shortcut, quant",
                             ini->path, s->line, s->type);
        if (!s->name[0])
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: section [%s] has no name. HINT: write [%s NAME]; NAME is the "
                             "state_dict prefix of its parameters", ini->path, s->line, s->type, s->type);
        if (strlen(s->name) >= sizeof nd->name)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: layer name '%.40s...' is too long (max %zu)", ini->path,
                             s->line, s->name, sizeof nd->name - 1);
        if (find_node(m, i, s->name) >= 0)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: layer name '%s' is used twice. HINT: names must be unique",
                             ini->path, s->line, s->name);
        nd->type = (ltype)t;
        snprintf(nd->name, sizeof nd->name, "%s", s->name);
        nd->line = s->line;
        TRY(build_node(m, ini, s, i));
    }
    TRY(xb_ini_check_unused(ini));
    const node *last = &m->nodes[m->n_nodes - 1];
    if (last->h != 1 || last->w != 1 || last->c != m->classes)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: the last layer [%s %s] gives %dx%dx%d, not the %d class scores "
                         "of [net] classes. HINT: end the model with a [linear] of out_features = %d",
                         ini->path, last->line, xb_ltype_names[last->type], last->name, last->c, last->h, last->w,
                         m->classes, m->classes);
    /* batchnorms that are their convolution's only consumer fold into it at inference */
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].fold_bn = -1;
    for (int i = 0; i < m->n_nodes; i++) {
        node *bn = &m->nodes[i];
        if (bn->type != L_BN || bn->in[0] < 0 || m->nodes[bn->in[0]].type != L_CONV) continue;
        int users = 0;
        for (int k = 0; k < m->n_nodes; k++)
            for (int j = 0; j < m->nodes[k].n_in; j++) users += m->nodes[k].in[j] == bn->in[0];
        if (users == 1) m->nodes[bn->in[0]].fold_bn = i;
    }
    /* batchnorms and adds whose only consumer is a relu run with it in one pass each way */
    for (int i = 0; i < m->n_nodes; i++) {
        node *pr = &m->nodes[i];
        pr->fuse_relu = -1;
        if (pr->type != L_BN && pr->type != L_ADD) continue;
        int users = 0, user = -1;
        for (int k = 0; k < m->n_nodes; k++)
            for (int j = 0; j < m->nodes[k].n_in; j++)
                if (m->nodes[k].in[j] == i) {
                    users++;
                    user = k;
                }
        if (users == 1 && m->nodes[user].type == L_RELU) pr->fuse_relu = user;
    }
    /* mapped layers */
    m->mapped_nodes = xb_calloc((size_t)m->n_nodes * sizeof(int));
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].type == L_CONV || m->nodes[i].type == L_LINEAR) {
            m->nodes[i].mapped = m->n_mapped;
            m->mapped_nodes[m->n_mapped++] = i;
        }
    m->pv = xb_calloc((size_t)(m->n_train + 1) * sizeof(float));
    m->gv = xb_calloc((size_t)(m->n_train + 1) * sizeof(float));
    m->bv = xb_calloc((size_t)(m->n_buf + 1) * sizeof(float));
    m->decay_mask = xb_calloc((size_t)m->n_train + 1);
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable && m->params[i].decay)
            memset(m->decay_mask + m->params[i].offset, 1, (size_t)m->params[i].numel);
    init_params(m, init_kind == 1, seed);
    return XB_OK;
}

extern const char *const xb_zoo_names_[];
extern const char *const xb_zoo_texts_[];

const char *const *xb_zoo_names(void) { return xb_zoo_names_; }

const char *xb_zoo_cfg(const char *name) {
    for (int i = 0; xb_zoo_names_[i]; i++)
        if (!strcmp(xb_zoo_names_[i], name)) return xb_zoo_texts_[i];
    return NULL;
}

static xb_status load_ini_(xb_ini *ini_, const char *name_or_path, uint64_t seed, xb_model **out);

xb_status xb_model_load(const char *name_or_path, uint64_t seed, xb_model **out) {
    *out = NULL;
    xb_ini ini;
    xb_status st;
    size_t len = strlen(name_or_path);
    int is_file = strchr(name_or_path, '/') || (len > 4 && !strcmp(name_or_path + len - 4, ".cfg"));
    if (is_file) {
        st = xb_ini_parse_file(name_or_path, &ini);
    } else {
        const char *text = xb_zoo_cfg(name_or_path);
        if (!text) {
            char names[256] = "";
            for (int i = 0; xb_zoo_names_[i]; i++) {
                strncat(names, i ? ", " : "", sizeof names - strlen(names) - 1);
                strncat(names, xb_zoo_names_[i], sizeof names - strlen(names) - 1);
            }
            return xb_errorf(XB_ERR_ARG, "model '%s' is neither a zoo model nor a .cfg file. HINT: zoo models are %s; "
                             "a file needs a .cfg suffix or a '/'", name_or_path, names);
        }
        char path[128];
        snprintf(path, sizeof path, "zoo:%s.cfg", name_or_path);
        st = xb_ini_parse_string(text, strlen(text), path, &ini);
    }
    if (st != XB_OK) return st;
    return load_ini_(&ini, name_or_path, seed, out);
}

xb_status xb_model_load_text(const char *text, size_t len, const char *path, uint64_t seed, xb_model **out) {
    xb_ini ini;
    xb_status st = xb_ini_parse_string(text, len, path, &ini);
    if (st != XB_OK) return st;
    return load_ini_(&ini, path, seed, out);
}

/* builds the model of a parsed config (freed here) named after the file part of name_or_path */
static xb_status load_ini_(xb_ini *ini_, const char *name_or_path, uint64_t seed, xb_model **out) {
    xb_ini ini = *ini_;
    xb_status st;
    xb_model *m = xb_calloc(sizeof *m);
    const char *pe = getenv("XBAR_PROFILE");
    m->profile = pe && *pe && strcmp(pe, "0") != 0 ? (strcmp(pe, "2") == 0 ? 2 : 1) : 0;
    const char *base = strrchr(name_or_path, '/');
    snprintf(m->name, sizeof m->name, "%s", base ? base + 1 : name_or_path);
    st = build_model(m, &ini, seed);
    xb_ini_free(&ini);
    if (st != XB_OK) { xb_model_free(m); return st; }
    *out = m;
    return XB_OK;
}

static void free_runtime(xb_model *m) {
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        xb_free(nd->y); xb_free(nd->dy); xb_free(nd->save_mean); xb_free(nd->save_invstd);
        xb_free(nd->argmax); xb_free(nd->mask); xb_free(nd->wfold);
        nd->y = nd->dy = nd->save_mean = nd->save_invstd = NULL;
        nd->argmax = NULL; nd->mask = NULL; nd->wfold = NULL;
    }
    xb_free(m->xin); xb_free(m->dxin); xb_free(m->ws); xb_free(m->gtmp);
    m->xin = m->dxin = m->ws = m->gtmp = NULL;
    m->nmax = 0;
}


void xb_model_free(xb_model *m) {
    if (!m) return;
    if (m->profile) xb_model_print_profile(m);
    if (m->nodes) free_runtime(m);
    xb_free(m->nodes); free(m->params); xb_free(m->pv); xb_free(m->gv); xb_free(m->bv);
    xb_free(m->decay_mask); xb_free(m->mapped_nodes);
    xb_free(m);
}

/* ------------------------------------------------------------------------------------------------ */
/* Planning                                                                                          */
/* ------------------------------------------------------------------------------------------------ */


xb_status xb_model_set_batch(xb_model *m, int max_batch) {
    if (max_batch < 1 || max_batch > (1 << 20))
        return xb_errorf(XB_ERR_ARG, "batch size %d is out of range 1..1048576", max_batch);
    if (max_batch == m->nmax) return XB_OK;
    free_runtime(m);
    m->nmax = max_batch;
    m->xin = xb_malloc((size_t)m->in_c * max_batch * m->in_h * m->in_w * sizeof(float));
    m->dxin = xb_malloc((size_t)m->in_c * max_batch * m->in_h * m->in_w * sizeof(float));
    size_t ws = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        nd->y = xb_malloc(node_size(nd, max_batch) * sizeof(float));
        nd->dy = xb_malloc(node_size(nd, max_batch) * sizeof(float));
        if (nd->type == L_BN) {
            nd->save_mean = xb_malloc((size_t)nd->c * sizeof(float));
            nd->save_invstd = xb_malloc((size_t)nd->c * sizeof(float));
        }
        if (nd->type == L_MAXPOOL) nd->argmax = xb_malloc(node_size(nd, max_batch) * sizeof(int32_t));
        if (nd->type == L_DROPOUT || nd->type == L_QUANT) nd->mask = xb_malloc(node_size(nd, max_batch));
        if (nd->type == L_CONV && nd->fold_bn >= 0)
            nd->wfold = xb_malloc((size_t)(m->params[nd->p_w].numel + nd->c) * sizeof(float));
        if (nd->type == L_CONV) {
            size_t w = xb_conv2d_workspace(&nd->conv, max_batch);
            /* the operator path needs one group's im2col matrix, and its backward that matrix's gradient too */
            size_t col = 2 * (size_t)xb_conv2d_k(&nd->conv) * (size_t)max_batch * nd->conv.ho * nd->conv.wo;
            if (col > w) w = col;
            if (w > ws) ws = w;
        }
        if (nd->type == L_LINEAR) { /* the operator path's input gradient */
            int c0, h0, w0;
            in_shape(m, nd->in[0], &c0, &h0, &w0);
            if ((size_t)c0 * max_batch > ws) ws = (size_t)c0 * max_batch;
        }
    }
    m->ws_floats = ws;
    m->ws = xb_malloc((ws + 1) * sizeof(float));
    int64_t wmax = 0;
    for (int i = 0; i < m->n_mapped; i++) {
        const int64_t k = m->params[m->nodes[m->mapped_nodes[i]].p_w].numel;
        wmax = k > wmax ? k : wmax;
    }
    m->gtmp = xb_malloc(((size_t)wmax + 1) * sizeof(float));
    return XB_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Forward                                                                                           */
/* ------------------------------------------------------------------------------------------------ */


xb_mm_call xb_node_mm_call(const xb_model *m, const node *nd, int g, int ncols) {
    const xb_param *pw = &m->params[nd->p_w];
    int groups = nd->type == L_CONV ? nd->conv.groups : 1;
    int ro = (int)(pw->shape[0] / groups), k = (int)(pw->numel / pw->shape[0]);
    xb_mm_call c = {nd->mapped, g, ro, k, ncols, m->pv + pw->offset + (size_t)g * ro * k, m->training, m->passes};
    return c;
}

void xb_mm_float_forward(const xb_mm_call *c, const float *x, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->rows_out, c->ncols, c->k, 1.0f, c->w, c->k, x,
                c->ncols, 0.0f, y, c->ncols);
}

xb_status xb_node_op_linear(xb_model *m, const node *nd, int n, const float **fwd, const float **bwd) {
    *fwd = NULL;
    if (bwd) *bwd = NULL;
    if (!m->op.linear_weights || (nd->type == L_CONV && nd->conv.groups != 1)) return XB_OK;
    const int64_t cols = nd->type == L_CONV ? (int64_t)n * nd->conv.ho * nd->conv.wo : n;
    xb_mm_call c = xb_node_mm_call(m, nd, 0, (int)(cols > INT32_MAX ? INT32_MAX : cols));
    const float *b_;
    return m->op.linear_weights(m->op.ctx, &c, fwd, bwd ? bwd : &b_);
}

xb_status xb_node_op_grad_scale(xb_model *m, const node *nd, int n, const float **scale) {
    *scale = NULL;
    if (!m->op.weight_grad_scale) return XB_OK;
    const int64_t cols = nd->type == L_CONV ? (int64_t)n * nd->conv.ho * nd->conv.wo : n;
    xb_mm_call c = xb_node_mm_call(m, nd, 0, (int)(cols > INT32_MAX ? INT32_MAX : cols));
    return m->op.weight_grad_scale(m->op.ctx, &c, scale);
}

static xb_status op_forward(xb_model *m, const xb_mm_call *c, const float *x, float *y) {
    if (!m->op.forward) {
        xb_mm_float_forward(c, x, y);
        return XB_OK;
    }
    return m->op.forward(m->op.ctx, c, x, y);
}

static void add_bias(const float *b, int cout, int64_t cols, float *y) {
    if (!b) return;
    for (int o = 0; o < cout; o++)
        for (int64_t j = 0; j < cols; j++) y[o * cols + j] += b[o];
}

/* A convolution through the operator: per group, im2col then the operator's product. */
static xb_status conv_forward_op(xb_model *m, node *nd, int n, const float *x) {
    const xb_conv2d_desc *d = &nd->conv;
    int g = d->groups, cog = d->cout / g;
    int64_t cols = (int64_t)n * d->ho * d->wo;
    if (cols > INT32_MAX) return xb_errorf(XB_ERR_ARG, "layer %s: %lld columns is too many for one product", nd->name,
                                           (long long)cols);
    for (int gi = 0; gi < g; gi++) {
        xb_im2col(d, n, gi, x, m->ws);
        xb_mm_call c = xb_node_mm_call(m, nd, gi, (int)cols);
        xb_status st = op_forward(m, &c, m->ws, nd->y + (size_t)gi * cog * cols);
        if (st) return st;
    }
    add_bias(pp(m, nd->p_b), d->cout, cols, nd->y);
    return XB_OK;
}

/* Inference: conv followed by its own batchnorm as one convolution with W' = W s and
 * b' = (b - running_mean) s + beta, s = gamma / sqrt(running_var + eps), written straight into the
 * batchnorm's output, or, when a relu alone consumes the batchnorm, with the relu applied in the
 * convolution's last store into the relu's output (bn->folded = 2).  Same result as the two (three)
 * layers up to float rounding. */
static void conv_bn_folded(xb_model *m, node *nd, int n, const float *x) {
    node *bn = &m->nodes[nd->fold_bn];
    const xb_param *pw = &m->params[nd->p_w];
    int64_t per = pw->numel / pw->shape[0];
    const float *w = pp(m, nd->p_w), *b = pp(m, nd->p_b), *g = pp(m, bn->p_w), *beta = pp(m, bn->p_b);
    const float *rm = bp(m, bn->p_rm), *rv = bp(m, bn->p_rv);
    float *wf = nd->wfold, *bf = nd->wfold + pw->numel;
    for (int o = 0; o < nd->c; o++) {
        double sc = (double)g[o] / sqrt((double)rv[o] + (double)bn->eps);
        for (int64_t k = 0; k < per; k++) wf[o * per + k] = (float)(w[o * per + k] * sc);
        bf[o] = (float)(((b ? b[o] : 0.0) - rm[o]) * sc + beta[o]);
    }
    const int relu = bn->fuse_relu >= 0;
    xb_conv2d_relu_forward(&nd->conv, n, x, wf, bf, relu ? m->nodes[bn->fuse_relu].y : bn->y, m->ws, relu);
    bn->folded = 1 + relu;
}

/* An activation quantizer's forward: its clip (fixed, PACT's alpha, or calibrated: in training the
 * running maximum of |x| first takes the batch's and then moves toward it by qa_momentum), the grid, the
 * quantized output and the straight-through mask. */
static xb_status quant_forward(xb_model *m, node *nd, int64_t len, const float *a) {
    float clip = nd->qa_clip;
    if (nd->p_alpha >= 0) {
        clip = pp(m, nd->p_alpha)[0];
        if (!(clip > 0) || !isfinite(clip))
            return xb_errorf(XB_ERR_NUMERIC, "PACT clip alpha = %g is not a positive number. HINT: lower the learning "
                             "rate or the weight decay, or start alpha higher (clip = ... in [quant %s])", clip, nd->name);
    } else if (nd->p_clip >= 0) {
        float *cb = bp(m, nd->p_clip);
        if (m->training) {
            float mx = 0;
#pragma omp simd reduction(max : mx)
            for (int64_t j = 0; j < len; j++) {
                const float v = fabsf(a[j]);
                mx = v > mx ? v : mx; /* a NaN input is skipped here; the quantizer keeps it NaN */
            }
            cb[0] = cb[0] > 0 ? cb[0] + nd->qa_momentum * (mx - cb[0]) : mx;
        }
        clip = cb[0];
        if (!(clip > 0))
            return xb_errorf(XB_ERR_STATE, "calibrated clip of [quant %s] is not set (no training batch has been seen, "
                             "or every input was 0). HINT: train, or load weights that carry %s.clip", nd->name,
                             nd->name);
    }
    float step, lo, hi;
    xb_qa_grid((xb_qa_kind)nd->qa_kind, nd->qa_bits, clip, &step, &lo, &hi);
    xb_qa_forward(len, a, step, lo, hi, nd->y, nd->mask);
    return XB_OK;
}

xb_status xb_model_forward(xb_model *m, int n, const float *x, float *logits_out, xb_rng *rng) {
    if (m->nmax < 1)
        return xb_errorf(XB_ERR_STATE, "model '%s': no batch size planned. HINT: call xb_model_set_batch before "
                         "xb_model_forward", m->name);
    if (n < 1 || n > m->nmax)
        return xb_errorf(XB_ERR_ARG, "batch of %d images but the model was planned for at most %d", n, m->nmax);
    m->n_cur = n;
    m->passes++;
    m->folded_fwd = 0;
    int hw = m->in_h * m->in_w;
    xb_nchw_to_cnhw(n, m->in_c, hw, x, m->xin);
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        const float *a = node_in(m, nd, 0);
        int c0, h0, w0;
        in_shape(m, nd->in[0], &c0, &h0, &w0);
        double t0 = m->profile ? xb_time_s() : 0;
        xb_status st = XB_OK;
        const float *wl = NULL; /* an operator's linear weights: the native kernels run with them */
        switch (nd->type) {
        case L_CONV:
            if (m->has_op && (st = xb_node_op_linear(m, nd, n, &wl, NULL))) break;
            if (wl) xb_conv2d_forward(&nd->conv, n, a, wl, pp(m, nd->p_b), nd->y, m->ws);
            else if (m->has_op) st = conv_forward_op(m, nd, n, a);
            else if (!m->training && !m->keep_graph && nd->fold_bn >= 0) {
                conv_bn_folded(m, nd, n, a);
                m->folded_fwd = 1;
            } else xb_conv2d_forward(&nd->conv, n, a, pp(m, nd->p_w), pp(m, nd->p_b), nd->y, m->ws);
            break;
        case L_LINEAR:
            if (m->has_op && (st = xb_node_op_linear(m, nd, n, &wl, NULL))) break;
            if (wl) {
                xb_linear_forward(c0, nd->c, n, a, wl, pp(m, nd->p_b), nd->y);
            } else if (m->has_op) {
                xb_mm_call c = xb_node_mm_call(m, nd, 0, n);
                if (!(st = op_forward(m, &c, a, nd->y))) add_bias(pp(m, nd->p_b), nd->c, n, nd->y);
            } else {
                xb_linear_forward(c0, nd->c, n, a, pp(m, nd->p_w), pp(m, nd->p_b), nd->y);
            }
            break;
        case L_BN:
            if (nd->fuse_relu >= 0) m->nodes[nd->fuse_relu].relu_fused = 0;
            if (nd->folded) { /* its convolution wrote nd->y, or the relu's output */
                if (nd->folded == 2) m->nodes[nd->fuse_relu].relu_fused = 1;
                nd->folded = 0;
                break;
            }
            /* cumulative: the k-th batch since the reset weighs 1/k, as torch's momentum=None does */
            const float bn_mom = m->bn_cumulative ? 1.0f / (bp(m, nd->p_nbt)[0] + 1.0f) : nd->momentum;
            if (nd->fuse_relu >= 0) { /* writes the relu's output; nd->y stays unused */
                node *r = &m->nodes[nd->fuse_relu];
                xb_batchnorm_relu_forward(nd->c, (int64_t)n * nd->h * nd->w, a, pp(m, nd->p_w), pp(m, nd->p_b),
                                          bp(m, nd->p_rm), bp(m, nd->p_rv), bn_mom, nd->eps, m->training,
                                          r->y, nd->save_mean, nd->save_invstd);
                r->relu_fused = 1;
            } else {
                xb_batchnorm_forward(nd->c, (int64_t)n * nd->h * nd->w, a, pp(m, nd->p_w), pp(m, nd->p_b),
                                     bp(m, nd->p_rm), bp(m, nd->p_rv), bn_mom, nd->eps, m->training, nd->y,
                                     nd->save_mean, nd->save_invstd);
            }
            if (m->training) bp(m, nd->p_nbt)[0] += 1.0f;
            break;
        case L_RELU:
            if (!nd->relu_fused) xb_relu_forward((int64_t)node_size(nd, n), a, nd->y);
            break;
        case L_MAXPOOL: xb_maxpool_forward(&nd->pool, nd->c, n, a, nd->y, nd->argmax); break;
        case L_AVGPOOL: xb_avgpool_forward(&nd->pool, nd->c, n, a, nd->y); break;
        case L_GAP: xb_gap_forward(nd->c, n, h0 * w0, a, nd->y); break;
        case L_FLATTEN: xb_flatten_forward(c0, n, h0 * w0, a, nd->y); break;
        case L_DROPOUT:
            if (m->training && nd->p_drop > 0) {
                if (!rng) {
                    st = xb_errorf(XB_ERR_ARG, "dropout in training mode needs a random stream (rng is NULL). HINT: "
                                   "pass an xb_rng to xb_model_forward, or call xb_model_train_mode(m, 0)");
                    break;
                }
                xb_dropout_forward((int64_t)node_size(nd, n), nd->p_drop, rng, a, nd->mask, nd->y);
            } else {
                memcpy(nd->y, a, node_size(nd, n) * sizeof(float));
            }
            break;
        case L_ADD:
            if (nd->fuse_relu >= 0) { /* writes the relu's output; nd->y stays unused */
                node *r = &m->nodes[nd->fuse_relu];
                xb_add_relu_forward((int64_t)node_size(nd, n), a, node_in(m, nd, 1), r->y);
                r->relu_fused = 1;
            } else {
                xb_add_forward((int64_t)node_size(nd, n), a, node_in(m, nd, 1), nd->y);
            }
            break;
        case L_SHORTCUT:
            xb_shortcut_pad_forward(c0, nd->c, nd->sc_pad_lo, nd->sc_stride, n, h0, w0, a, nd->y);
            break;
        case L_QUANT: st = quant_forward(m, nd, (int64_t)node_size(nd, n), a); break;
        case L_COUNT: XB_ASSERT(0);
        }
        if (st) {
            char why[1536];
            snprintf(why, sizeof why, "%s", xb_last_error());
            return xb_errorf(st, "forward of layer %s: %s", nd->name, why);
        }
        if (m->profile) {
            double dt = xb_time_s() - t0;
            m->prof[0][nd->type] += dt;
            nd->prof[0] += dt;
        }
    }
    if (logits_out) {
        const float *lg = m->nodes[m->n_nodes - 1].y; /* (classes, n) */
        for (int j = 0; j < n; j++)
            for (int k = 0; k < m->classes; k++) logits_out[(size_t)j * m->classes + k] = lg[(size_t)k * n + j];
    }
    return XB_OK;
}

const float *xb_model_logits(const xb_model *m) { return m->nodes[m->n_nodes - 1].y; }

