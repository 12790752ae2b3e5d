/*
 * tool_refstep.c -- the C half of tests/ref_torch.py: runs a model on a given batch and writes what
 * PyTorch must agree with.
 *
 *   tool_refstep --model NAME --weights W.safetensors --input X.npy --labels Y.npy
 *                [--optimizer sgd|adam] [--steps K] [--lr LR] [--momentum M] [--weight-decay WD]
 *                [--label-smoothing E] [--threads T] [--plan-batch P] [--eval] --out OUT.safetensors
 *
 * Train mode: "logits" (N x classes) and "loss" (1) of the first forward, "grad.<param>" of the first
 * backward, "loss.<k>" for each of K steps (forward + backward + update on the same batch) and
 * "param.<name>" for every parameter and buffer after the K steps.  --eval: only "logits" in eval mode.
 */
#include "xbar.h"
#include "nn/nn_internal.h"

#include <stdlib.h>
#include <string.h>

static void die(const char *what) {
    fprintf(stderr, "tool_refstep: %s: %s\n", what, xb_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    const char *model = NULL, *weights = NULL, *input = NULL, *labels = NULL, *out = NULL, *optn = "sgd";
    int steps = 3, eval = 0, threads = 1, plan = 0;
    double lr = 0.1, mom = 0.9, wd = 0, ls = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--eval")) { eval = 1; continue; }
        if (!v) { fprintf(stderr, "tool_refstep: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--weights")) weights = v;
        else if (!strcmp(a, "--input")) input = v;
        else if (!strcmp(a, "--labels")) labels = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--optimizer")) optn = v;
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--lr")) lr = atof(v);
        else if (!strcmp(a, "--momentum")) mom = atof(v);
        else if (!strcmp(a, "--weight-decay")) wd = atof(v);
        else if (!strcmp(a, "--label-smoothing")) ls = atof(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v) > 0 ? atoi(v) : 1;
        else if (!strcmp(a, "--plan-batch")) plan = atoi(v);
        else { fprintf(stderr, "tool_refstep: unknown flag %s\n", a); return 2; }
    }
    if (!model || !weights || !input || !out || (!eval && !labels)) {
        fprintf(stderr, "tool_refstep: --model --weights --input --out (and --labels) are required\n");
        return 2;
    }
    xb_set_threads(threads);
    xb_model *m;
    if (xb_model_load(model, 1, &m)) die(model);
    if (xb_model_load_weights(m, weights)) die(weights);
    xb_tensor x, y = {0};
    if (xb_npy_load(input, &x)) die(input);
    int n = (int)x.shape[0], k = xb_model_classes(m);
    if (!eval) {
        if (xb_npy_load(labels, &y)) die(labels);
        if (y.dtype != XB_I64 || y.shape[0] != n) { fprintf(stderr, "tool_refstep: labels must be int64 (N)\n"); return 1; }
    }
    int32_t *lab = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n && !eval; i++) lab[i] = (int32_t)((int64_t *)y.data)[i];
    if (xb_model_set_batch(m, plan > n ? plan : n)) die("set_batch");
    float *logits = malloc((size_t)n * k * sizeof(float));
    xb_safetensors st;
    xb_st_init(&st);
    int64_t lshape[2] = {n, k};
    xb_tensor tl = {.dtype = XB_F32, .ndim = 2, .shape = {lshape[0], lshape[1], 1, 1}, .data = logits};
    if (eval) {
        xb_model_train_mode(m, 0);
        if (xb_model_forward(m, n, x.data, logits, NULL)) die("forward");
        xb_st_add(&st, "logits", tl);
        if (xb_st_save(out, &st)) die(out);
        return 0;
    }
    xb_optim o;
    if (xb_optim_init(&o, !strcmp(optn, "adam") ? XB_OPT_ADAM : XB_OPT_SGD, xb_model_n_trainable(m))) die("optim");
    o.momentum = mom;
    o.weight_decay = wd;
    xb_model_train_mode(m, 1);
    int64_t nt = xb_model_n_trainable(m);
    float *grad0 = malloc((size_t)nt * sizeof(float));
    double *losses = malloc((size_t)(steps + 1) * sizeof(double)), loss0 = 0;
    for (int s = 0; s < (steps > 0 ? steps : 1); s++) {
        if (xb_model_forward(m, n, x.data, s == 0 ? logits : NULL, NULL)) die("forward");
        if (xb_model_backward(m, n, lab, (float)ls, &losses[s], NULL)) die("backward");
        if (s == 0) { loss0 = losses[0]; memcpy(grad0, xb_model_grads(m), (size_t)nt * sizeof(float)); }
        if (steps > 0) xb_optim_step(&o, xb_model_params(m), xb_model_grads(m), NULL, lr);
    }
    xb_st_add(&st, "logits", tl);
    xb_tensor t1 = {.dtype = XB_F64, .ndim = 1, .shape = {1, 1, 1, 1}, .data = &loss0};
    xb_st_add(&st, "loss", t1);
    char name[200];
    for (int s = 0; s < steps; s++) {
        snprintf(name, sizeof name, "loss.%d", s);
        xb_tensor t = {.dtype = XB_F64, .ndim = 1, .shape = {1, 1, 1, 1}, .data = &losses[s]};
        xb_st_add(&st, name, t);
    }
    for (int i = 0; i < xb_model_n_params(m); i++) {
        const xb_param *p = xb_model_param(m, i);
        if (!p->trainable) continue;
        xb_tensor t = {.dtype = XB_F32, .ndim = p->ndim, .data = grad0 + p->offset};
        memcpy(t.shape, p->shape, sizeof t.shape);
        snprintf(name, sizeof name, "grad.%s", p->name);
        xb_st_add(&st, name, t);
    }
    /* parameters and buffers after the steps, under "param." names */
    xb_safetensors ps;
    xb_st_init(&ps);
    int64_t *scratch = calloc((size_t)xb_model_n_params(m) + 1, sizeof(int64_t));
    xb_model_add_to_st(m, &ps, scratch);
    for (int i = 0; i < ps.n; i++) {
        snprintf(name, sizeof name, "param.%s", ps.e[i].name);
        xb_st_add(&st, name, ps.e[i].t);
    }
    if (xb_st_save(out, &st)) die(out);
    return 0;
}
