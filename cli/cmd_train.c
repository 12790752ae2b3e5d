/* cmd_train.c -- `xbar train`: flags -> xb_train_opts, data, model, xb_train (or xb_xtrain through the
 * crossbars of --hw), a line or JSON per epoch, a result line/JSON. */
#include "cli.h"
#include "train.h"
#include "xb_xbar.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


/* After every epoch: a line on stderr (with the progress bar) and a JSON line on stdout (--json). */
static void report_(void *ctx, const xb_epoch_report *r) {
    reporter_ *rp = ctx;
    if (rp->ad && !rp->ad_save) rp->ad_save = xb_ad_save(rp->ad, rp->m, rp->ad_path);
    if (rp->wct && !rp->wct_saved) {
        rp->wct_save = xb_wct_save(rp->wct, rp->m, rp->wct_path);
        rp->wct_saved = 1;
    }
    if (rp->pr && !rp->pr_save) {
        if (r->epoch_done) xb_pruner_epoch_done(rp->pr, rp->m, r->epoch, rp->train->n);
        rp->pr_save = xb_pruner_save(rp->pr, rp->pr_path);
    }
    if (rp->progress && r->test_acc >= 0) {
        char sw[64] = "";
        if (r->swa_test_acc >= 0) snprintf(sw, sizeof sw, ", SWA of %lld: %.2f%%", (long long)r->swa_n, 100 * r->swa_test_acc);
        fprintf(stderr, "epoch %lld/%lld: train loss %.4f acc %.2f%%, test acc %.2f%%%s (%lld images%s%s), %.1f s\n",
                (long long)r->epoch, (long long)r->epochs, r->train_loss, 100 * r->train_acc, 100 * r->test_acc, sw,
                (long long)r->test_images, rp->hw ? ", on " : "", rp->hw ? rp->hw : "", r->seconds);
    }
    if (!rp->json) return;
    char a[32] = "null", sw[64] = "", hw[700] = "";
    if (r->test_acc >= 0) snprintf(a, sizeof a, "%.6f", r->test_acc);
    if (r->swa_test_acc >= 0) snprintf(sw, sizeof sw, ",\"swa_test_acc\":%.6f", r->swa_test_acc);
    if (rp->hw) snprintf(hw, sizeof hw, ",\"hw\":\"%s\",\"hw_mode\":\"%s\"", rp->hw, rp->mode);
    printf("{\"epoch\":%lld,\"step\":%lld,\"train_loss\":%.6f,\"train_acc\":%.6f,\"test_acc\":%s%s,"
           "\"seconds\":%.3f%s}\n", (long long)r->epoch, (long long)r->step, r->train_loss, r->train_acc, a, sw,
           r->seconds, hw);
    fflush(stdout);
}

/* Quantization: the model's text with the flags' and --quant-config's quantization (src/quant/qcfg.c), the
 * model loaded from it, and the weight-quantizing operator installed when some layer's weights are quantized. */
typedef struct cli_quant_ {
    char *text;
    char path[600];               /* where the text came from (messages) */
    const char *origin;           /* the --model given */
    int any, ad_on;
    xb_qw_spec *specs;
    xb_qop *q;
} cli_quant_;

static xb_status cli_quant_load_(xf_flag *f, int n, const char *model, uint64_t seed, int need_text, xb_model **m,
                                 cli_quant_ *z) {
    memset(z, 0, sizeof *z);
    z->origin = model;
    const int ad = (int)xf_get(f, n, "ad-precision")->i;
    xb_quant_flags fl = {(int)xf_get(f, n, "weight-bits")->i, (int)xf_get(f, n, "act-bits")->i,
                         xf_get(f, n, "quant")->s, xf_get(f, n, "act")->s, xf_get(f, n, "act-clip")->s,
                         (int)xf_get(f, n, "first-bits")->i, (int)xf_get(f, n, "last-bits")->i};
    const char *qpath = xf_get(f, n, "quant-config")->s;
    if (ad && !fl.weight_bits && !fl.quant && !qpath) fl.weight_bits = 16; /* the paper's start */
    if (ad && !fl.act_bits && !qpath) fl.act_bits = 16;
    const int asked = fl.weight_bits || fl.act_bits || fl.quant || fl.act || fl.act_clip || fl.first_bits >= 0 || fl.last_bits >= 0 || qpath;
    char *text = NULL, *qtext = NULL, qp[600];
    const char *resume = xf_get(f, n, "resume")->s;
    xb_status st = resume ? xb_checkpoint_model_text(resume, &text) : XB_OK;
    if (st) return st;
    if (text) snprintf(z->path, sizeof z->path, "%s", resume); /* a pruned run: the model it has become */
    else if ((st = xb_model_text(model, &text, z->path, sizeof z->path))) return st;
    if (!asked && !strstr(text, "[quantize")) { /* no quantization: the plain model (its text for surgery) */
        if (!need_text) {
            free(text);
            return xb_model_load(model, seed, m);
        }
        z->text = text;
        return xb_model_load_text(text, strlen(text), z->path, seed, m);
    }
    if (qpath && (st = xb_model_text(qpath, &qtext, qp, sizeof qp))) { free(text); return st; }
    z->ad_on = ad;
    st = xb_quant_rewrite(text, z->path, qtext, qpath, &fl, &z->text, &z->any);
    free(text); free(qtext);
    if (st) return st;
    if ((st = xb_model_load_text(z->text, strlen(z->text), z->path, seed, m))) return st;
    int wany = 0;
    z->specs = calloc((size_t)xb_model_n_mapped(*m) + 1, sizeof *z->specs);
    if (!z->specs) st = xb_errorf(XB_ERR_NOMEM, "no memory for the quantization specs");
    if (!st) st = xb_quant_specs(z->text, z->path, *m, z->specs, &wany);
    if (!st && wany && !(st = xb_qop_init(*m, z->specs, seed, &z->q))) {
        xb_mm_op op = xb_qop_op(z->q, NULL);
        xb_model_set_op(*m, &op);
    }
    if (st) { xb_model_free(*m); *m = NULL; }
    return st;
}

/* the model's text as it is now: with its quantizers' current bits, or as loaded (a float model) */
static xb_status cli_model_text_(const cli_quant_ *z, const xb_model *m, char **out) {
    if (z->any) return xb_quant_current_text(z->text, z->path, m, z->q, out);
    *out = strdup(z->text);
    return *out ? XB_OK : xb_errorf(XB_ERR_NOMEM, "no memory for the model's text");
}

/* OUT/model.cfg (the quantized or pruned model), and with quantized weights OUT/weights.safetensors holding them (the
 * master float weights stay in the checkpoint) and OUT/quant-codes.safetensors their integer codes and scales */
static xb_status cli_quant_save_(cli_quant_ *z, xb_model *m, const char *out, int progress) {
    char p[1100], pc[1100];
    snprintf(p, sizeof p, "%s/model.cfg", out);
    FILE *fo = fopen(p, "wb");
    if (!fo) return xb_errorf(XB_ERR_IO, "%s: cannot write: %s. HINT: check --out", p, strerror(errno));
    char *cur = NULL;
    xb_status st0 = cli_model_text_(z, m, &cur);
    if (st0) { fclose(fo); return st0; }
    fprintf(fo, "# the %s model of `xbar train` (docs/%s.md), from %s\n", z->any ? "quantized" : "pruned",
            z->any ? "quantization" : "pruning", z->origin);
    int bad = fputs(cur, fo) < 0;
    free(cur);
    bad |= fclose(fo) != 0;
    if (bad) return xb_errorf(XB_ERR_IO, "%s: write failed", p);
    if (z->q) {
        snprintf(p, sizeof p, "%s/weights.safetensors", out);
        snprintf(pc, sizeof pc, "%s/quant-codes.safetensors", out);
        xb_status st = xb_quant_export(z->q, m, p, pc);
        if (st) return st;
    }
    if (progress && !z->any) fprintf(stderr, "xbar train: the pruned model is %s/model.cfg\n", out);
    if (progress && z->any) {
        fprintf(stderr, "xbar train: the quantized model is %s/model.cfg%s\n", out,
                z->q ? "; its weights (quantized) weights.safetensors, codes and scales quant-codes.safetensors" : "");
        xb_quant_print(m, z->specs, stderr, 0);
    }
    return XB_OK;
}

/* The surgery of --prune and --ad-prune: the smaller model from the plan, the checkpoint rewritten for it
 * (parameters, optimizer state, the model's text), its weight-quantizing operator, and the AD or pruning
 * state bound to it. */
static xb_status prune_run_(reporter_ *rp, xb_model **m, cli_quant_ *z, const char *ck, int progress, uint64_t seed) {
    char *cur = NULL, *pt = NULL;
    xb_model *p = NULL;
    int64_t *pm = NULL;
    xb_status st = cli_model_text_(z, *m, &cur);
    if (!st) st = xb_model_prune(*m, cur, z->path, (const int *const *)rp->keep, rp->n_keep, &p, &pt, &pm, NULL);
    if (!st) st = xb_checkpoint_prune(ck, p, pm, pt);
    xb_qw_spec *specs = NULL;
    xb_qop *q = NULL;
    int wany = 0;
    if (!st) {
        specs = calloc((size_t)xb_model_n_mapped(p) + 1, sizeof *specs);
        st = specs ? xb_quant_specs(pt, z->path, p, specs, &wany) : xb_errorf(XB_ERR_NOMEM, "no memory");
    }
    if (!st && wany && !(st = xb_qop_init(p, specs, seed, &q))) {
        xb_mm_op op = xb_qop_op(q, NULL);
        xb_model_set_op(p, &op);
    }
    if (!st && rp->pr) st = xb_pruner_rebind(rp->pr, p);
    if (!st && progress)
        fprintf(stderr, "xbar train: %spruning: %lld parameters -> %lld, %lld MACs per image -> %lld\n",
                rp->pr ? "" : "activation-density ", (long long)xb_model_n_trainable(*m),
                (long long)xb_model_n_trainable(p), (long long)xb_model_macs(*m), (long long)xb_model_macs(p));
    for (int i = 0; i < xb_model_n_mapped(*m); i++) { free(rp->keep[i]); rp->keep[i] = NULL; rp->n_keep[i] = 0; }
    free(cur); free(pm);
    if (st) { xb_model_free(p); free(pt); free(specs); xb_qop_free(q); return st; }
    xb_qop_free(z->q);
    free(z->specs);
    free(z->text);
    xb_model_free(*m);
    *m = p;
    z->q = q;
    z->specs = specs;
    z->text = pt;
    rp->text = pt;
    rp->q = q;
    rp->m = p;
    if (rp->ad) xb_ad_rebind(rp->ad, q);
    return XB_OK;
}

static void cli_quant_free_(cli_quant_ *z) {
    xb_qop_free(z->q);
    free(z->specs);
    free(z->text);
}

int cmd_train(int argc, char **argv) {
    xf_flag f[] = {
        {"model", XF_STR, "resnet20", NULL, "zoo name (xbar info lists them) or a model .cfg file"},
        {"data", XF_STR, NULL, NULL, "CIFAR-10/100 binary directory (else $XBAR_DATA, else ../shared/data/cifar10)"},
        {"epochs", XF_INT, "1", "1..100000", "epochs"},
        {"steps", XF_INT, "0", "0..", "stop after this many optimizer steps (0: no limit; for benchmarks)"},
        {"batch", XF_INT, "128", "1..65536", "batch size"},
        {"lr", XF_DOUBLE, "0.1", "0..10", "base learning rate"},
        {"optimizer", XF_CHOICE, "sgd", "sgd|adam|adamw", "optimizer (PyTorch semantics)"},
        {"momentum", XF_DOUBLE, "0.9", "0..1", "SGD momentum"},
        {"nesterov", XF_BOOL, NULL, NULL, "Nesterov momentum (SGD)"},
        {"schedule", XF_CHOICE, "cosine", "cosine|step|onecycle|const", "learning-rate schedule over all steps"},
        {"weight-decay", XF_DOUBLE, "5e-4", "0..1", "weight decay (L2 for sgd/adam, decoupled for adamw)"},
        {"decay-weights-only", XF_BOOL, NULL, NULL, "no weight decay on biases and batchnorm (default: all)"},
        {"label-smoothing", XF_DOUBLE, "0", "0..0.999", "label smoothing of the cross-entropy"},
        {"no-augment", XF_BOOL, NULL, NULL, "no random crop and flip"},
        {"cutout", XF_INT, "0", "0..1024", "cutout: zero an NxN square at a random centre of each training image, "
                                          "clipped at the border (0: off; 16 is the paper's CIFAR-10 size)"},
        {"swa-epochs", XF_INT, "0", "0..100000", "stochastic weight averaging (Izmailov et al. 2018): after the "
                                                "--epochs of the schedule, this many epochs at the constant rate "
                                                "--swa-lr, the weights averaged at the end of each; the average, with "
                                                "batchnorm statistics from a pass over the training images, is tested "
                                                "each epoch and written to swa-weights.safetensors (0: off). A "
                                                "finished run takes it on --resume"},
        {"swa-lr", XF_DOUBLE, "0.01", "0..10", "learning rate of the SWA epochs"},
        {"train-limit", XF_INT, "0", "0..", "train on the first N training images only (0: all)"},
        {"eval-limit", XF_INT, "0", "0..", "evaluate on the first N test images each epoch (0: all)"},
        {"threads", XF_INT, NULL, "1..1024", "threads (default: all cores)"},
        {"seed", XF_INT, "1", "0..", "seed of every random stream (init, shuffle, augment, dropout)"},
        {"out", XF_STR, NULL, NULL, "directory for weights.safetensors and checkpoint.safetensors, created with its parents (default runs/MODEL)"},
        {"weights", XF_STR, NULL, NULL, "start from these weights (safetensors, e.g. PyTorch-trained) instead of the "
                                        "random init; batchnorm running statistics too"},
        {"resume", XF_STR, NULL, NULL, "continue bit-exactly from a checkpoint.safetensors"},
        {"hw", XF_STR, NULL, NULL, "train through the crossbars of this hardware .cfg (configs/hw/; docs/training-hw.md)"},
        {"hw-mode", XF_CHOICE, "aware", "aware|onchip", "with --hw: aware = every mapped layer's forward through the "
                                                        "crossbar model of the current weights, backward through the "
                                                        "same hardware, float weights updated and programmed again "
                                                        "after every step; onchip = TxSim's on-chip training: the "
                                                        "conductances are the state, every update is written into them "
                                                        "with the config's [update] device model, the weights are read "
                                                        "back from them, the circuit re-solved every [update] "
                                                        "refresh_steps (use --momentum 0 for plain SGD)"},
        {"hw-state", XF_STR, NULL, NULL, "with --hw-mode onchip and --resume: the conductance state to continue from "
                                         "(default: device-state.safetensors beside the checkpoint)"},
        {"hw-resample", XF_CHOICE, "step", "step|epoch|never", "with --hw: a new device sample (variation, faults, "
                                                              "read noise) every step, every epoch, or one for the run"},
        {"hw-backward", XF_CHOICE, "hardware", "hardware|float", "with --hw: the backward reads the programmed "
                                                                "tiles' backward (column-driven) effective weights, "
                                                                "with the DAC's and the ADC's straight-through masks, "
                                                                "or the float weights"},
        {"device-seed", XF_INT, "1000000000", "0..", "with --hw: device sample i of the run uses seed device-seed + i"},
        {"calibration-images", XF_INT, "0", "0..65536", "with --hw: training images that set calibrated ranges at "
                                                        "each epoch's start (0: the config's calibration_images)"},
        {"trainable", XF_CHOICE, "all", "all|bn", "parameters trained: all, or only batchnorm gamma and beta (the "
                                                "others stay bit for bit as loaded)"},
        {"weight-bits", XF_INT, "0", "0..16", "quantization-aware training: every mapped layer's weights uniform "
                                            "symmetric with this many bits, straight-through gradients (0: float; "
                                            "docs/quantization.md)"},
        {"act-bits", XF_INT, "0", "0..16", "an activation quantizer of this many bits after every relu (0: none)"},
        {"quant", XF_STR, NULL, NULL, "weight quantizer: uniform|binary|ternary|ternary-sym|ternary-asym|dorefa"},
        {"act", XF_STR, NULL, NULL, "activation quantizer: uniform (clip calibrated)|pact (clip learned)|dorefa "
                                    "(clip 1)|ternary"},
        {"act-clip", XF_STR, NULL, NULL, "the activation quantizers' clip: a number (pact: alpha's start), or "
                                         "calibrated (uniform: a running maximum; the default)"},
        {"first-bits", XF_INT, "-1", "-1..16", "the first mapped layer's weights: uniform of this many bits (0: "
                                              "float; -1: as the config says, default as the others)"},
        {"last-bits", XF_INT, "-1", "-1..16", "the last mapped layer's weights, as --first-bits"},
        {"ad-precision", XF_BOOL, NULL, NULL, "activation-density mixed precision (Vasquez et al. 2021): every "
                                              "layer starts at 16 bits (unless --weight-bits/--act-bits say "
                                              "otherwise); when a relu's activation density has settled, its "
                                              "quantizer's and its layer's weights' bits become "
                                              "max(--ad-min-bits, ceil(AD x bits)); state in OUT/ad-state.json"},
        {"ad-prune", XF_BOOL, NULL, NULL, "with --ad-precision: activation-density pruning (Foldy-Porto et al. "
                                          "2020) at the same plateaus: the convolution before the relu keeps "
                                          "ceil(AD x channels) output channels, the strongest by L1 (a residual "
                                          "block's outer channels stay); real surgery of the model, the optimizer "
                                          "state and the checkpoint, so the run and OUT/model.cfg shrink"},
        {"ad-prune-cuts", XF_INT, "0", "0..1000", "--ad-prune: channel cuts per layer at most (0: one at every "
                                                 "plateau, as the paper repeats them)"},
        {"ad-rule", XF_CHOICE, "current", "current|start", "--ad-precision: at a plateau bits = ceil(AD x bits) from "
                                                          "the current bits (repeated plateaus compound) or from the "
                                                          "starting bits (methods.md item 1 leaves it open)"},
        {"ad-tol", XF_DOUBLE, "0.01", "0..1", "--ad-precision: AD has settled when it moved less than this ..."},
        {"ad-window", XF_INT, "2", "1..1000", "--ad-precision: ... for this many epochs in a row"},
        {"ad-min-bits", XF_INT, "2", "1..16", "--ad-precision: the fewest bits"},
        {"quant-config", XF_STR, NULL, NULL, "a file of [quantize], [quantize LAYER.weight] and [quantize RELU.output] sections (per-layer "
                                             "precisions); the flags above override its defaults"},
        {"prune", XF_STR, NULL, NULL, "pruning while training (docs/pruning.md): filters (output channels) scored by "
                                      "l1 (filter L1 norm), mean-act (mean relu output), random, frs (LRP feature "
                                      "relevance from the true-class logit) or taylor (|a dL/da|), the weakest removed "
                                      "by real surgery at epoch starts (model, optimizer state, checkpoint); the run "
                                      "reports training MACs against the unpruned model's; OUT/model.cfg is the "
                                      "pruned model"},
        {"prune-target", XF_DOUBLE, "0.5", "0..0.99", "--prune: fraction of the prunable filters removed in the end"},
        {"prune-start", XF_INT, "1", "0..100000", "--prune: the first step at the start of the epoch after this many"},
        {"prune-every", XF_INT, "1", "1..100000", "--prune: epochs between steps"},
        {"prune-steps", XF_INT, "4", "1..1000", "--prune: steps that reach the target (geometric: each keeps the same "
                                               "fraction)"},
        {"prune-step", XF_DOUBLE, "0", "0..0.99", "--prune: instead, each step removes this fraction of the remaining "
                                                 "filters, until the target"},
        {"prune-flops", XF_DOUBLE, "0", "0..1", "--prune: a forward-MAC budget as a fraction of the unpruned model's: "
                                               "no step once it is met (0: none; the target still bounds the cut)"},
        {"prune-min", XF_DOUBLE, "0.1", "0..1", "--prune: every layer keeps at least this fraction of its filters "
                                               "(and one)"},
        {"prune-scope", XF_CHOICE, "auto", "auto|layer|global", "--prune: every layer to the same fraction (layer; "
                                                               "the default for l1, mean-act, random), or one ranking "
                                                               "of scores normalized per layer (global; the default "
                                                               "for frs, taylor)"},
        {"prune-norm", XF_CHOICE, "mean", "mean|l2|none", "--prune-scope global: each layer's scores over their mean "
                                                         "|score|, their L2 norm, or as they are"},
        {"prune-residual", XF_CHOICE, "consistent", "consistent|skip", "--prune: channels joined by residual sums "
                                                                      "pruned alike in every producer, or left alone"},
        {"prune-samples", XF_INT, "512", "1..1000000", "--prune mean-act|frs|taylor: training images scored (the "
                                                      "first N, unaugmented)"},
        {"prune-eps", XF_DOUBLE, "0.01", "0..1e6", "--prune frs: LRP's epsilon"},
        {"wct-percentile", XF_DOUBLE, "0", "0..100", "weight-constrained training (docs/pruning.md): every mapped "
                                                   "layer's weights held inside [-c, c], c their percentile of |w| at "
                                                   "the run's start, clipped after every step (0: off)"},
        {"wct-penalty", XF_DOUBLE, "0", "0..1e9", "--wct-percentile: instead of the clip, lambda sum (|w| - c)^2 over "
                                                 "the weights beyond c joins the loss"},
        {"neat-hw", XF_STR, NULL, NULL, "NEAT's clip-and-retrain (docs/neat.md): every mapped layer's weights clipped to "
                                        "its weight cut-off on this 1T-1R config (its gate voltages, [cell]) at the start "
                                        "and after every --neat-every-th step; OUT/wct.json keeps the pre-clip mapping "
                                        "scales for xbar eval --w-scales"},
        {"neat-every", XF_INT, "0", "0..", "--neat-hw: steps between clips, the retraining of one round (0: every step)"},
        {"neat-tolerance", XF_DOUBLE, "0.025", "0..1", "--neat-hw: the tolerance metric's threshold"},
        {"xprune", XF_STR, NULL, NULL, "crossbar-aware structured pruning (docs/pruning.md): xcs (column segments: one "
                                       "output's weights in one row tile) or xrs (row segments: one input's weights "
                                       "in one column tile) of the tiles of --xprune-hw; group lasso by "
                                       "--xprune-lasso, a hard cut of --xprune-target of every layer's segments at "
                                       "the start of epoch --xprune-start, held at zero after it"},
        {"xprune-hw", XF_STR, NULL, NULL, "--xprune: the hardware config whose tiles define the segments"},
        {"xprune-target", XF_DOUBLE, "0.5", "0..0.999", "--xprune: fraction of every layer's segments cut (smallest RMS)"},
        {"xprune-lasso", XF_DOUBLE, "0", "0..1e6", "--xprune: group lasso lambda sum ||segment||_2 in the loss"},
        {"xprune-start", XF_INT, "0", "0..100000", "--xprune: the cut at the start of the epoch after this many (0: "
                                                  "before the first step)"},
        {"json", XF_BOOL, NULL, NULL, "print a JSON line per epoch and a JSON result on stdout"},
        {"quiet", XF_BOOL, NULL, NULL, "no progress bar"},
    };
    int n = sizeof f / sizeof *f;
    int rc = xf_parse("train", "train a model on CIFAR-10/100 with augmentation, per-epoch test accuracy and "
                      "checkpoints", f, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    xb_train_opts o = xb_train_opts_default();
    o.epochs = (int)xf_get(f, n, "epochs")->i;
    o.steps = xf_get(f, n, "steps")->i;
    o.batch = (int)xf_get(f, n, "batch")->i;
    o.lr = xf_get(f, n, "lr")->d;
    o.optimizer = (xb_optim_kind)xf_get(f, n, "optimizer")->i;
    o.momentum = xf_get(f, n, "momentum")->d;
    o.schedule = (xb_sched_kind)(int[]){XB_SCHED_COSINE, XB_SCHED_STEP, XB_SCHED_ONECYCLE,
                                        XB_SCHED_CONST}[xf_get(f, n, "schedule")->i];
    o.weight_decay = xf_get(f, n, "weight-decay")->d;
    o.decay_all = !xf_get(f, n, "decay-weights-only")->i;
    o.label_smoothing = xf_get(f, n, "label-smoothing")->d;
    o.augment = !xf_get(f, n, "no-augment")->i;
    o.cutout = (int)xf_get(f, n, "cutout")->i;
    o.swa_epochs = (int)xf_get(f, n, "swa-epochs")->i;
    o.swa_lr = xf_get(f, n, "swa-lr")->d;
    o.eval_limit = xf_get(f, n, "eval-limit")->i;
    xf_flag *th = xf_get(f, n, "threads");
    o.threads = th->set ? (int)th->i : cli_default_threads();
    o.seed = (uint64_t)xf_get(f, n, "seed")->i;
    const int json = (int)xf_get(f, n, "json")->i;
    o.progress = !xf_get(f, n, "quiet")->i;
    o.resume = xf_get(f, n, "resume")->s;
    const char *model = xf_get(f, n, "model")->s;
    char out_default[300];
    const char *out = xf_get(f, n, "out")->s;
    if (!out) {
        const char *b = strrchr(model, '/');
        snprintf(out_default, sizeof out_default, "runs/%s", b ? b + 1 : model);
        char *dot = strstr(out_default, ".cfg");
        if (dot) *dot = 0;
        out = out_default;
    }
    o.out_dir = out;
    const char *init_w = xf_get(f, n, "weights")->s;
    if (init_w && o.resume) {
        fprintf(stderr, "xbar train: error: --weights and --resume exclude each other (a checkpoint carries its own "
                        "weights)\nHINT: drop --weights to continue the run, or --resume to start a new one from them\n");
        return 2;
    }
    o.nesterov = (int)xf_get(f, n, "nesterov")->i;
    if (o.nesterov && o.optimizer != XB_OPT_SGD) {
        fprintf(stderr, "xbar train: error: --nesterov applies to --optimizer sgd only\n");
        return 2;
    }
    char dir[600];
    if (xb_data_find(xf_get(f, n, "data")->s, dir, sizeof dir) != XB_OK) return cli_fail("train");
    xb_dataset train, test;
    if (xb_cifar_load(dir, XB_SPLIT_TRAIN, &train) != XB_OK) return cli_fail("train");
    if (xb_cifar_load(dir, XB_SPLIT_TEST, &test) != XB_OK) { xb_dataset_free(&train); return cli_fail("train"); }
    int64_t lim = xf_get(f, n, "train-limit")->i;
    if (lim > 0 && lim < train.n) train.n = lim;
    xb_model *m;
    cli_quant_ qz;
    const char *prune = xf_get(f, n, "prune")->s;
    if (cli_quant_load_(f, n, model, o.seed, prune != NULL, &m, &qz) != XB_OK) {
        xb_dataset_free(&train); xb_dataset_free(&test); cli_quant_free_(&qz);
        return cli_fail("train");
    }
    if (init_w && xb_model_load_weights(m, init_w) != XB_OK) {
        xb_model_free(m); xb_dataset_free(&train); xb_dataset_free(&test);
        return cli_fail("train");
    }
    if (o.progress) {
        char swa[64] = "";
        if (o.swa_epochs) snprintf(swa, sizeof swa, " + %d SWA epochs at lr %g", o.swa_epochs, o.swa_lr);
        fprintf(stderr, "xbar train: %s on %s (%lld train / %lld test images), %d epochs%s, batch %d, %s lr %g %s, "
                        "%d threads, out %s\n", xb_model_name(m), dir, (long long)train.n, (long long)test.n,
                o.epochs, swa, o.batch, xf_get(f, n, "optimizer")->s, o.lr, xf_get(f, n, "schedule")->s, o.threads,
                out);
    }
    const char *hwpath = xf_get(f, n, "hw")->s, *trainable = xf_get(f, n, "trainable")->s;
    uint8_t *frozen = NULL;
    xb_status s = XB_OK;
    if (strcmp(trainable, "all") != 0) {
        frozen = malloc((size_t)xb_model_n_trainable(m) + 1);
        if (!frozen) s = xb_errorf(XB_ERR_NOMEM, "no memory for the trainable mask");
        if (!s) s = xb_model_freeze_mask(m, trainable, frozen);
        o.frozen = frozen;
    }
    xb_hw hw;
    if (!s && hwpath && qz.q)
        s = xb_errorf(XB_ERR_UNSUPPORTED, "quantization-aware training through the crossbars (--hw with quantized "
                      "weights) is not built yet. HINT: train the quantized model without --hw, then evaluate "
                      "OUT/model.cfg with OUT/weights.safetensors on the crossbars (xbar eval --hw)");
    if (!s && hwpath) s = xb_hw_load(hwpath, &hw);
    reporter_ rep = {json, o.progress, hwpath ? hw.name : NULL, xf_get(f, n, "hw-mode")->s, NULL, m, "", XB_OK};
    xb_train_hooks hk = {&rep, NULL, NULL, NULL, NULL, report_};
    if (!s && qz.ad_on) {
        xb_ad_opts ao = {xf_get(f, n, "ad-tol")->d, (int)xf_get(f, n, "ad-window")->i,
                         (int)xf_get(f, n, "ad-min-bits")->i, (int)xf_get(f, n, "ad-prune-cuts")->i,
                         (int)xf_get(f, n, "ad-rule")->i};
        s = xb_ad_init(m, qz.q, &ao, &rep.ad);
        snprintf(rep.ad_path, sizeof rep.ad_path, "%s/ad-state.json", out);
        if (!s && o.resume) {
            char in[1100];
            const char *sl = strrchr(o.resume, '/');
            snprintf(in, sizeof in, "%.*sad-state.json", sl ? (int)(sl - o.resume + 1) : 0, o.resume);
            s = xb_ad_load(rep.ad, m, in);
        }
        rep.prune = (int)xf_get(f, n, "ad-prune")->i;
        rep.text = qz.text;
        rep.path = qz.path;
        rep.q = qz.q;
        rep.keep = calloc((size_t)xb_model_n_mapped(m) + 1, sizeof *rep.keep);
        rep.n_keep = calloc((size_t)xb_model_n_mapped(m) + 1, sizeof *rep.n_keep);
        if (!s && (!rep.keep || !rep.n_keep)) s = xb_errorf(XB_ERR_NOMEM, "no memory for the pruning plan");
        if (!s && rep.prune && (o.frozen || hwpath))
            s = xb_errorf(XB_ERR_ARG, "--ad-prune changes the model while it trains: not with --trainable bn or --hw");
    } else if (!s && xf_get(f, n, "ad-prune")->i) {
        s = xb_errorf(XB_ERR_ARG, "--ad-prune needs --ad-precision (it prunes at the plateaus of activation density)");
    }
    if (!s && prune) {
        rep.text = qz.text;
        rep.path = qz.path;
        rep.q = qz.q;
        s = train_pruner_setup(f, n, prune, &o, m, &train, out, hwpath, &rep);
    }
    if (!s && (rep.prune || rep.pr) && o.resume && strcmp(qz.path, o.resume) == 0) o.model_cfg = qz.text; /* after a cut */
    hk.epoch_begin = rep.ad || rep.pr ? train_epoch_begin : NULL;
    if (!s) s = train_wct_setup(f, n, &o, m, out, &rep);
    if (!s) s = train_neat_setup(f, n, &o, m, out, &rep);
    if (!s) s = train_xprune_setup(f, n, &o, m, hwpath, &rep);
    if (rep.xp) hk.epoch_begin = train_epoch_begin;
    if (rep.ad || rep.wct || rep.xp) hk.after_backward = train_after_backward;
    if ((rep.wct && !xf_get(f, n, "wct-penalty")->d) || rep.xp) hk.after_update = train_after_update;
    o.hooks = &hk;
    xb_train_result r;
    xb_xtrain_stats xs;
    memset(&xs, 0, sizeof xs);
    char state_out[1100], state_in[1100];
    if (!s && hwpath) {
        xb_xtrain_opts xo = xb_xtrain_opts_default();
        xo.mode = (xb_hw_mode)xf_get(f, n, "hw-mode")->i;
        xo.resample = (xb_resample)xf_get(f, n, "hw-resample")->i;
        xo.backward = (xb_xnet_backward)xf_get(f, n, "hw-backward")->i;
        xo.device_seed = (uint64_t)xf_get(f, n, "device-seed")->i;
        xo.calibration_images = (int)xf_get(f, n, "calibration-images")->i;
        snprintf(state_out, sizeof state_out, "%s/device-state.safetensors", out);
        xo.state_out = state_out;
        if (o.resume) {
            const char *hs = xf_get(f, n, "hw-state")->s, *sl = strrchr(o.resume, '/');
            if (hs) snprintf(state_in, sizeof state_in, "%s", hs);
            else snprintf(state_in, sizeof state_in, "%.*sdevice-state.safetensors", sl ? (int)(sl - o.resume + 1) : 0,
                          o.resume);
            if (xo.mode == XB_HWMODE_ONCHIP) xo.state_in = state_in;
        }
        if (o.progress)
            fprintf(stderr, "xbar train: through the crossbars of %s (%s), mode %s, a device sample per %s, backward "
                            "through the %s weights\n", hw.name, hwpath, xb_hw_mode_name(xo.mode),
                    xb_resample_name(xo.resample), xo.backward == XB_XBWD_FLOAT ? "float" : "effective");
        s = xb_xtrain(m, &hw, &train, &test, &o, &xo, &r, &xs);
    } else if (!s) {
        char ck[1100];
        snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out);
        for (;;) {
            rep.cut = 0;
            s = xb_train(m, &train, &test, &o, &r);
            if (!(s == XB_ERR_STATE && rep.cut)) break;
            /* the trainer stopped at an epoch's start, its checkpoint just written: cut the model there */
            s = prune_run_(&rep, &m, &qz, ck, o.progress, o.seed);
            o.resume = ck;
            o.model_cfg = qz.text; /* later checkpoints carry the model the run has become */
            if (s) break;
        }
    }
    if (!s && rep.ad_save) s = rep.ad_save;
    if (!s && rep.pr_save) s = rep.pr_save;
    if (!s && rep.wct_save) s = rep.wct_save;
    if (!s && rep.ad && r.epochs_total > xb_ad_epochs(rep.ad)) { /* the last epoch's AD (no epoch follows it) */
        const int before = xb_ad_changes(rep.ad);
        rep.prune = 0; /* no cut without training after it: the last plateau lowers bits only */
        s = train_ad_epoch(&rep, m, r.epochs_total);
        if (!s && xb_ad_changes(rep.ad) != before) { /* the model written is the one tested: again, at its bits */
            xb_eval_result er;
            xb_model_train_mode(m, 0);
            s = xb_evaluate(m, &test, o.eval_limit, o.batch, o.progress, &er);
            if (!s) r.test_acc = er.accuracy;
            if (!s && o.progress)
                fprintf(stderr, "xbar train: test accuracy at the final precisions: %.2f%% (%lld images)\n",
                        100 * er.accuracy, (long long)er.n);
        }
    }
    for (int i = 0; qz.q && i < xb_model_n_mapped(m); i++) qz.specs[i] = *xb_qop_spec(qz.q, i); /* bits now */
    if (!s && rep.ad && o.progress) xb_ad_print(rep.ad, m, stderr, 0);
    if (!s && rep.pr && o.progress) xb_pruner_print(rep.pr, m, stderr, 0);
    if (!s && rep.xp && o.progress) xb_xprune_print(rep.xp, m, stderr, 0);
    if (!s && (qz.any || rep.pr)) s = cli_quant_save_(&qz, m, out, o.progress);
    free(frozen);
    xb_dataset_free(&train);
    xb_dataset_free(&test);
    if (s) {
        xb_ad_free(rep.ad);
        xb_pruner_free(rep.pr);
        xb_wct_free(rep.wct);
    xb_xprune_free(rep.xp);
        free(rep.keep); free(rep.n_keep);
        cli_quant_free_(&qz);
        xb_model_free(m);
        return cli_fail("train");
    }
    char tacc[32] = "null", sacc[32] = "null";
    if (r.epochs_done > 0) snprintf(tacc, sizeof tacc, "%.6f", r.test_acc);
    if (r.swa_test_acc >= 0) snprintf(sacc, sizeof sacc, "%.6f", r.swa_test_acc);
    if (json) {
        printf("{\"model\":\"%s\",\"epochs\":%lld,\"steps\":%lld,\"train_loss\":%.6f,\"train_acc\":%.6f,"
               "\"test_acc\":%s,\"seconds\":%.3f,\"run_epochs\":%d,\"run_seconds\":%.3f,"
               "\"train_images_per_s\":%.2f,\"steady_images_per_s\":%.2f,\"weights\":\"%s/weights.safetensors\"",
               model, (long long)r.epochs_total, (long long)r.steps_done, r.train_loss, r.train_acc, tacc,
               r.seconds_total, r.epochs_done, r.seconds, r.images_per_s, r.steady_images_per_s, out);
        if (hwpath) printf(",\"hw\":\"%s\",\"hw_mode\":\"%s\",\"hw_resample\":\"%s\",\"hw_backward\":\"%s\"",
                           hw.name, xf_get(f, n, "hw-mode")->s, xf_get(f, n, "hw-resample")->s,
                           xf_get(f, n, "hw-backward")->s);
        if (hwpath)
            printf(",\"hw_seconds\":{\"program\":%.3f,\"calibrate\":%.3f,\"update\":%.3f,\"refresh\":%.3f},"
                   "\"hw_counts\":{\"programs\":%lld,\"solves\":%lld,\"distortion_refreshes\":%lld,\"holds\":%lld,"
                   "\"cell_updates\":%lld,\"pulses\":%lld,\"clamped_gmin\":%lld,\"clamped_gmax\":%lld}",
                   xs.program_s, xs.calibrate_s, xs.update_s, xs.refresh_s, (long long)xs.programs, (long long)xs.solves,
                   (long long)xs.distortion_refreshes, (long long)xs.holds, (long long)xs.updates.updates,
                   (long long)xs.updates.pulses, (long long)xs.updates.clamped_gmin, (long long)xs.updates.clamped_gmax);
        printf(",\"trainable\":\"%s\"", trainable);
        if (rep.ad) {
            printf(",\"ad_precision\":");
            xb_ad_print(rep.ad, m, stdout, 1);
        }
        if (rep.pr) {
            printf(",\"pruning\":");
            xb_pruner_print(rep.pr, m, stdout, 1);
        }
        if (rep.xp) {
            printf(",\"xprune\":");
            xb_xprune_print(rep.xp, m, stdout, 1);
        }
        if (qz.any) {
            printf(",\"precision\":");
            xb_quant_print(m, qz.specs, stdout, 1);
        }
        if (r.swa_n)
            printf(",\"swa_snapshots\":%lld,\"swa_test_acc\":%s,\"swa_weights\":\"%s/swa-weights.safetensors\"",
                   (long long)r.swa_n, sacc, out);
        printf("}\n");
    } else {
        char acc[48] = "not evaluated (no epoch completed)";
        if (r.epochs_done > 0) snprintf(acc, sizeof acc, "%.2f%%", 100 * r.test_acc);
        printf("trained %s: %lld steps, train loss %.4f, train acc %.2f%%, test acc %s, %.1f s (%.1f img/s); "
               "weights in %s/weights.safetensors\n", model, (long long)r.steps_done, r.train_loss,
               100 * r.train_acc, acc, r.seconds, r.images_per_s, out);
        if (r.swa_n) {
            char sa[48] = "not evaluated in this call";
            if (r.swa_test_acc >= 0) snprintf(sa, sizeof sa, "%.2f%%", 100 * r.swa_test_acc);
            printf("SWA of %lld epochs' weights: test acc %s; weights in %s/swa-weights.safetensors\n",
                   (long long)r.swa_n, sa, out);
        }
    }
    xb_ad_free(rep.ad);
    xb_pruner_free(rep.pr);
    xb_wct_free(rep.wct);
    xb_xprune_free(rep.xp);
    free(rep.keep); free(rep.n_keep);
    cli_quant_free_(&qz);
    xb_model_free(m);
    return 0;
}
