/* train_hooks.c -- `xbar train`'s trainer hooks: activation-density counts and bit changes, pruning steps
 * at epoch starts, weight-constrained training, crossbar-aware pruning; and the set-up of each from the
 * flags.  The surgery itself runs in cmd_train.c between two calls of the trainer. */
#include "train.h"
#include "xb_neat.h"
#include "xb_xbar.h"

#include <stdlib.h>
#include <string.h>

/* --ad-precision: the relus' non-zeros after every step, the epoch's bit changes before the next epoch's
 * first step; the state is saved with every report, which comes just before every checkpoint, so that a
 * checkpoint and OUT/ad-state.json always agree */
static xb_status train_ad_step(void *ctx, xb_model *m, int64_t step) {
    reporter_ *rp = ctx;
    (void)step;
    xb_ad_count(rp->ad, m);
    return XB_OK;
}

xb_status train_ad_epoch(void *ctx, xb_model *m, int64_t epoch) {
    reporter_ *rp = ctx;
    if (epoch <= xb_ad_epochs(rp->ad)) return XB_OK;
    int changed;
    xb_status st = xb_ad_epoch_end(rp->ad, m, &changed);
    if (!st) st = xb_ad_save(rp->ad, m, rp->ad_path);
    if (!st && changed && rp->progress)
        fprintf(stderr, "xbar train: activation density settled in %d layer%s after epoch %lld: fewer bits from "
                        "now on (OUT/ad-state.json)\n", changed, changed > 1 ? "s" : "", (long long)epoch);
    if (!st && rp->prune) { /* activation-density pruning at the same plateaus: stop here for the surgery */
        char *cur = NULL;
        st = xb_quant_current_text(rp->text, rp->path, m, rp->q, &cur);
        if (!st) st = xb_ad_prune_plan(rp->ad, m, cur, rp->keep, rp->n_keep, &rp->cut);
        free(cur);
        if (!st) st = xb_ad_save(rp->ad, m, rp->ad_path);
        if (!st && rp->cut) return xb_errorf(XB_ERR_STATE, "activation-density pruning after epoch %lld", (long long)epoch);
    }
    return st;
}

/* --prune: a step due at this epoch's start stops the trainer for the surgery (its checkpoint just written) */
static xb_status train_prune_epoch(void *ctx, xb_model *m, int64_t epoch) {
    reporter_ *rp = ctx;
    xb_status st = xb_pruner_epoch(rp->pr, m, rp->train, rp->batch, epoch, rp->keep, rp->n_keep, &rp->cut);
    if (!st) st = xb_pruner_save(rp->pr, rp->pr_path);
    if (!st && rp->cut) return xb_errorf(XB_ERR_STATE, "pruning at the start of epoch %lld", (long long)epoch + 1);
    return st;
}

xb_status train_after_backward(void *ctx, xb_model *m, int64_t step) {
    reporter_ *rp = ctx;
    xb_status st = rp->ad ? train_ad_step(ctx, m, step) : XB_OK;
    if (rp->wct) xb_wct_grad(rp->wct, m);
    if (rp->xp) {
        if (rp->xp_resume) xb_xprune_mask_from_zeros(rp->xp, m);
        rp->xp_resume = 0;
        xb_xprune_grad(rp->xp, m);
        xb_xprune_apply(rp->xp, m); /* the cut segments' gradients: zero */
    }
    return st;
}

xb_status train_after_update(void *ctx, xb_model *m, int64_t step) {
    reporter_ *rp = ctx;
    if (rp->wct && (rp->wct_every <= 1 || (step + 1) % rp->wct_every == 0)) xb_wct_clip(rp->wct, m);
    if (rp->xp) xb_xprune_apply(rp->xp, m);
    return XB_OK;
}

/* --xprune: the segments of the tiles of --xprune-hw; on --resume the cut ones are the all-zero ones of the
 * checkpoint (read at the first step, when the trainer has loaded it) */
xb_status train_xprune_setup(xf_flag *f, int n, const xb_train_opts *o, xb_model *m, const char *hwpath, reporter_ *rp) {
    const char *kind = xf_get(f, n, "xprune")->s, *xh = xf_get(f, n, "xprune-hw")->s;
    if (!kind) return XB_OK;
    const int k = !strcmp(kind, "xcs") ? XB_XP_XCS : !strcmp(kind, "xrs") ? XB_XP_XRS : 0;
    if (!k) return xb_errorf(XB_ERR_ARG, "--xprune %s: unknown. HINT: xcs (column segments) or xrs (row segments)", kind);
    if (!xh) return xb_errorf(XB_ERR_ARG, "--xprune needs --xprune-hw HW.cfg: the tiles whose segments it prunes");
    if (rp->pr || rp->ad || hwpath)
        return xb_errorf(XB_ERR_ARG, "--xprune: not with --prune, --ad-precision or --hw (prune channels first, then "
                         "segments in a second run from its weights)");
    xb_hw h;
    xb_status st = xb_hw_load(xh, &h);
    if (!st) st = xb_xprune_init(m, &h, k, xf_get(f, n, "xprune-lasso")->d, &rp->xp);
    rp->xp_resume = o->resume != NULL; /* the checkpoint's weights are not loaded yet */
    rp->xp_start = (int)xf_get(f, n, "xprune-start")->i;
    rp->xp_target = xf_get(f, n, "xprune-target")->d;
    return st;
}

/* A weight constraint's start: on --resume its bounds from the wct.json beside the checkpoint, else the first
 * clip now; it is written to OUT/wct.json with the first report. */
static xb_status wct_start_(const xb_train_opts *o, xb_model *m, const char *out, reporter_ *rp) {
    xb_status st = XB_OK;
    if (o->resume) {
        char path[1100];
        const char *sl = strrchr(o->resume, '/');
        snprintf(path, sizeof path, "%.*swct.json", sl ? (int)(sl - o->resume + 1) : 0, o->resume);
        st = xb_wct_load(rp->wct, m, path);
    } else {
        xb_wct_clip(rp->wct, m);
    }
    snprintf(rp->wct_path, sizeof rp->wct_path, "%s/wct.json", out);
    return st;
}

/* --wct-percentile: the bounds from the weights the run starts with (written to OUT/wct.json with the first
 * report), or on --resume from wct.json beside the checkpoint; the clip holds from the first step */
xb_status train_wct_setup(xf_flag *f, int n, const xb_train_opts *o, xb_model *m, const char *out, reporter_ *rp) {
    const double pct = xf_get(f, n, "wct-percentile")->d, pen = xf_get(f, n, "wct-penalty")->d;
    if (pct <= 0) {
        if (pen > 0) return xb_errorf(XB_ERR_ARG, "--wct-penalty needs --wct-percentile (the bound it penalizes beyond)");
        return XB_OK;
    }
    xb_status st = xb_wct_init(m, pct, pen, &rp->wct);
    return st ? st : wct_start_(o, m, out, rp);
}

/* --neat-hw: NEAT's clip-and-retrain (docs/neat.md).  The bounds are the layers' weight cut-offs at their gate
 * voltages on that 1T-1R config, the mapping scales the run's starting max |w| (both in OUT/wct.json, for xbar
 * eval --w-scales); the clip at the start and after every --neat-every-th step.  On --resume both come from the
 * wct.json beside the checkpoint. */
xb_status train_neat_setup(xf_flag *f, int n, const xb_train_opts *o, xb_model *m, const char *out, reporter_ *rp) {
    const char *path = xf_get(f, n, "neat-hw")->s;
    if (!path) {
        if (xf_get(f, n, "neat-every")->set || xf_get(f, n, "neat-tolerance")->set)
            return xb_errorf(XB_ERR_ARG, "--neat-every and --neat-tolerance need --neat-hw HW.cfg (the 1T-1R config "
                             "whose cut-offs the weights are clipped to)");
        return XB_OK;
    }
    if (rp->wct) return xb_errorf(XB_ERR_ARG, "--neat-hw: not with --wct-percentile (both clip the weights; give one)");
    xb_hw h;
    xb_status st = xb_hw_load(path, &h);
    const int nm = xb_model_n_mapped(m);
    xb_neat_layer *L = calloc((size_t)nm + 1, sizeof *L);
    double *b = calloc((size_t)nm + 1, sizeof *b);
    if (!L || !b) st = xb_errorf(XB_ERR_NOMEM, "out of memory");
    if (!st) st = xb_neat_layers(&h, m, xf_get(f, n, "neat-tolerance")->d, &h.cell.v_gate_v, 1, 100, L);
    for (int i = 0; !st && i < nm; i++) b[i] = L[i].digital ? 1e30 : L[i].w_cut;
    if (!st) st = xb_wct_init_bounds(m, b, &rp->wct);
    free(L);
    free(b);
    rp->wct_every = xf_get(f, n, "neat-every")->i;
    return st ? st : wct_start_(o, m, out, rp);
}

xb_status train_epoch_begin(void *ctx, xb_model *m, int64_t epoch) {
    reporter_ *rp = ctx;
    xb_status st = rp->ad ? train_ad_epoch(ctx, m, epoch) : XB_OK;
    if (!st && rp->pr) st = train_prune_epoch(ctx, m, epoch);
    if (!st && rp->xp && epoch == rp->xp_start) {
        st = xb_xprune_cut(rp->xp, m, rp->xp_target);
        rp->xp_resume = 0;
        if (!st && rp->progress)
            fprintf(stderr, "xbar train: crossbar-aware pruning: %.0f%% of every layer's segments cut at the start of "
                            "epoch %lld\n", 100 * rp->xp_target, (long long)epoch + 1);
    }
    return st;
}

/* --prune: the schedule from the flags, its state resumed from prune-state.json beside the checkpoint */
xb_status train_pruner_setup(xf_flag *f, int n, const char *kind, const xb_train_opts *o, xb_model *m,
                             const xb_dataset *train, const char *out, const char *hwpath, reporter_ *rp) {
    xb_prune_opts po = xb_prune_opts_default();
    int k = 0;
    while (k < XB_PS_COUNT && strcmp(kind, xb_prune_score_names[k]) != 0) k++;
    if (k == XB_PS_COUNT)
        return xb_errorf(XB_ERR_ARG, "--prune %s: unknown score. HINT: l1, mean-act, random, frs or taylor", kind);
    if (rp->ad || hwpath || o->frozen)
        return xb_errorf(XB_ERR_ARG, "--prune changes the model while it trains: not with --ad-precision, --hw or "
                         "--trainable bn");
    po.score = (xb_prune_score)k;
    po.target = xf_get(f, n, "prune-target")->d;
    po.start = (int)xf_get(f, n, "prune-start")->i;
    po.every = (int)xf_get(f, n, "prune-every")->i;
    po.steps = (int)xf_get(f, n, "prune-steps")->i;
    po.step = xf_get(f, n, "prune-step")->d;
    po.flops = xf_get(f, n, "prune-flops")->d;
    po.min_keep = xf_get(f, n, "prune-min")->d;
    const int scope = (int)xf_get(f, n, "prune-scope")->i;
    po.global = scope == 0 ? po.score == XB_PS_FRS || po.score == XB_PS_TAYLOR : scope == 2;
    po.norm = (xb_prune_norm)xf_get(f, n, "prune-norm")->i;
    po.residual_skip = (int)xf_get(f, n, "prune-residual")->i;
    po.samples = xf_get(f, n, "prune-samples")->i;
    po.eps = xf_get(f, n, "prune-eps")->d;
    po.seed = o->seed;
    rp->train = train;
    rp->batch = o->batch;
    rp->keep = calloc((size_t)xb_model_n_mapped(m) + 1, sizeof *rp->keep);
    rp->n_keep = calloc((size_t)xb_model_n_mapped(m) + 1, sizeof *rp->n_keep);
    if (!rp->keep || !rp->n_keep) return xb_errorf(XB_ERR_NOMEM, "no memory for the pruning plan");
    snprintf(rp->pr_path, sizeof rp->pr_path, "%s/prune-state.json", out);
    xb_status st = xb_pruner_init(m, &po, &rp->pr);
    if (!st && o->resume) {
        char in[1100];
        const char *sl = strrchr(o->resume, '/');
        snprintf(in, sizeof in, "%.*sprune-state.json", sl ? (int)(sl - o->resume + 1) : 0, o->resume);
        st = xb_pruner_load(rp->pr, in);
    }
    return st;
}

