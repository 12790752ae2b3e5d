/*
 * xb_prune.h -- pruning: channel surgery (src/prune/surgery.c).  Included by xbar.h.  docs/pruning.md.
 */
#ifndef XB_PRUNE_H
#define XB_PRUNE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Channel surgery.  keep[i] (NULL: all) lists, ascending, the output channels that mapped layer i (a
 * convolution with groups = 1) keeps, n_keep[i] of them.  text/path: the model's config text.  *out is
 * the physically smaller model: pruned convolutions have fewer out_channels, the layers after them
 * (batchnorm, the next convolution's or linear layer's inputs through pooling, flatten and gap) follow;
 * its parameters and buffers are the kept elements of m's.  *out_text (may be NULL) is its config text;
 * *param_map / *buffer_map (may be NULL; malloc'd) give for each of its trainable / buffer elements the
 * index of the element of m it came from, to carry optimizer moments and other per-parameter state.
 * Channels that meet in a residual sum must be kept alike (XB_ERR_ARG otherwise); an option-A shortcut
 * reads full channel sets only (XB_ERR_UNSUPPORTED). */
xb_status xb_model_prune(const xb_model *m, const char *text, const char *path, const int *const *keep,
                         const int *n_keep, xb_model **out, char **out_text, int64_t **param_map, int64_t **buffer_map);

/* ---- channel groups (src/prune/score.c) -------------------------------------------------------------
 * A group is a set of output channels that pruning removes together: one convolution's, or, where
 * residual sums join several producers, all of theirs (a ResNet stage's stream).  A group is frozen
 * (not prunable) when an option-A shortcut or the image reads its channels, when a grouped convolution
 * produces or reads them, or, with residual_skip, when a residual sum joins it. */
typedef enum xb_group_frozen { XB_GROUP_PRUNABLE = 0, XB_GROUP_SHORTCUT, XB_GROUP_GROUPED, XB_GROUP_RESIDUAL,
                               XB_GROUP_IMAGE } xb_group_frozen;
typedef struct xb_prune_group {
    int n_conv, *conv;          /* the mapped convolutions that produce the channels */
    int n_cons, *cons;          /* the mapped layers that read them (through pooling, flatten, ...) */
    int n_obs, *obs;            /* the relu nodes whose outputs are these channels (activation scores) */
    int channels;
    xb_group_frozen frozen;
    int64_t macs;               /* MACs per image of the producers and the readers together */
} xb_prune_group;
typedef struct xb_prune_groups { int n; xb_prune_group *g; } xb_prune_groups;
xb_status xb_prune_groups_find(const xb_model *m, int residual_skip, xb_prune_groups *out);
void xb_prune_groups_free(xb_prune_groups *gs);
const char *xb_group_frozen_name(xb_group_frozen f);

/* ---- channel scores --------------------------------------------------------------------------------
 * l1:       sum of |w| over each producer's filter (methods.md 10A; Li et al. 2017)
 * mean-act: mean of the channel's relu outputs over the images and positions (10A)
 * random:   uniform in [0,1), from (seed, round)
 * frs:      feature relevance (10B): LRP-epsilon relevance from the true-class logit, summed over the
 *           channel's positions, averaged over the images (xb_lrp)
 * taylor:   first-order Taylor (Molchanov et al. 2017): |mean over positions of a dL_i/da| per image i,
 *           averaged over the images (L_i: the image's cross-entropy against its label)
 * The data scores run the first `samples` images of d, unaugmented, in eval mode; the model comes back in
 * training mode.  A group observed by several relus sums their scores. */
typedef enum xb_prune_score { XB_PS_L1 = 0, XB_PS_MEANACT, XB_PS_RANDOM, XB_PS_FRS, XB_PS_TAYLOR, XB_PS_COUNT } xb_prune_score;
extern const char *const xb_prune_score_names[XB_PS_COUNT];
typedef struct xb_score_opts {
    xb_prune_score kind;
    const xb_dataset *data;     /* mean-act, frs, taylor */
    int64_t samples;
    int batch;                  /* at most the model's batch capacity when it has one */
    double eps;                 /* frs: LRP's epsilon */
    uint64_t seed, round;       /* random */
} xb_score_opts;
/* scores[k] (channels of group k, malloc'd by the caller) for every group, frozen ones too */
xb_status xb_prune_scores(xb_model *m, const xb_prune_groups *gs, const xb_score_opts *o, double **scores);

/* LRP-epsilon (Bach et al. 2015) of n images x (NCHW) from the logits of classes labels: every mapped
 * layer with its batchnorm folded propagates R_in = a (W^T (R_out / (z + eps sign z))), relus pass the
 * relevance, max pooling to the winner, average pooling, residual sums and flatten in proportion to their
 * inputs (LRP-0).  It is the backward of the model seeded with the one-hot of each label, every mapped
 * layer's output gradient multiplied by |z| / (|z| + eps) (z: the pre-activation after bias and
 * batchnorm); so afterwards xb_model_node_grad(i) times node i's output is the relevance at node i, and
 * dx (may be NULL; n x c x h x w) times x is the relevance of the input pixels.  Eval mode, graph kept;
 * the model's operator, if any, is wrapped for the call and restored. */
xb_status xb_lrp(xb_model *m, int n, const float *x, const int32_t *labels, double eps, float *dx);

/* ---- pruning while training (src/prune/schedule.c) ----------------------------------------------------
 * A schedule of channel cuts at epoch starts (methods.md 10A, 10B): at the start of epoch `start` (after
 * `start` epochs) and every `every` epochs after it, score every prunable group's channels and keep the
 * strongest, until `target` of the prunable channels are gone (in `steps` steps of a geometric plan, or
 * `step` of the remaining ones per step), each group keeping at least min_keep of its channels and one.
 * Scope layer: every group alone to the same fraction (10A); global: one ranking of the scores normalized
 * per group (10B).  flops > 0: no step once the forward MACs are at most flops x the start's, and a global
 * step stops where its estimate reaches that.  The caller does the surgery (xb_model_prune) with the plan's
 * keep lists and rebinds.  The state (history, training MACs) saves to JSON for resuming. */
typedef enum xb_prune_norm { XB_PN_MEAN = 0, XB_PN_L2, XB_PN_NONE } xb_prune_norm;
typedef struct xb_prune_opts {
    xb_prune_score score;
    double target;              /* fraction of the prunable channels removed in the end, 0..0.99 */
    int start, every, steps;
    double step;                /* > 0: fraction of the remaining channels per step (then steps is a cap) */
    double flops;               /* > 0: the forward-MAC budget as a fraction of the start's */
    double min_keep;            /* per group, of its starting channels */
    int global;                 /* 0: per group (layer); 1: global ranking */
    int residual_skip;          /* 1: channels joined by residual sums stay (else pruned alike) */
    xb_prune_norm norm;         /* global ranking: each group's scores over its mean |score|, L2 norm, or as is */
    int64_t samples;            /* images for the data scores */
    double eps;                 /* LRP epsilon */
    uint64_t seed;
} xb_prune_opts;
xb_prune_opts xb_prune_opts_default(void); /* l1, 0.5, start 1, every 1, 4 steps, min_keep 0.1, 512 samples, eps 1e-2 */
typedef struct xb_pruner xb_pruner;
xb_status xb_pruner_init(const xb_model *m, const xb_prune_opts *o, xb_pruner **out);
void xb_pruner_free(xb_pruner *p);
/* At the start of epoch `epoch` (completed epochs): *cut = 1 and keep / n_keep (per mapped layer, NULL:
 * unchanged; malloc'd lists) when a step is due and removes something.  d, batch: the data scores' images. */
xb_status xb_pruner_epoch(xb_pruner *p, xb_model *m, const xb_dataset *d, int batch, int64_t epoch, int **keep,
                          int *n_keep, int *cut);
/* After surgery: the pruned model's groups (same layers, fewer channels). */
xb_status xb_pruner_rebind(xb_pruner *p, const xb_model *pruned);
/* After every epoch `epoch` (1-based) trained on `images` images with model m: training MACs. */
void xb_pruner_epoch_done(xb_pruner *p, const xb_model *m, int64_t epoch, int64_t images);
xb_status xb_pruner_save(const xb_pruner *p, const char *path);
xb_status xb_pruner_load(xb_pruner *p, const char *path);
/* The summary: text (json 0) or one JSON object. */
void xb_pruner_print(const xb_pruner *p, const xb_model *m, FILE *f, int json);

/* ---- weight-constrained training (src/prune/wct.c; methods.md 5A, mitigation 2) ------------------------
 * Every mapped layer's weights kept inside [-c, c], c the layer's `percentile`-th percentile of |W| when the
 * constraint starts, so that the same mapping scale puts more cells at low conductance: clip = after every
 * step the weights are clipped to it; penalty = lambda sum (|w| - c)_+^2 joins the loss (its gradient added
 * after every backward) and nothing is clipped.  [R: the mechanics are methods.md's reconstruction.] */
typedef struct xb_wct xb_wct;
xb_status xb_wct_init(const xb_model *m, double percentile, double penalty, xb_wct **out);
/* the same with given bounds, one per mapped layer (NEAT's weight cut-offs, include/xb_neat.h); clip only */
xb_status xb_wct_init_bounds(const xb_model *m, const double *bounds, xb_wct **out);
void xb_wct_free(xb_wct *w);
/* the penalty's gradient into the model's gradients (nothing with penalty 0) */
void xb_wct_grad(const xb_wct *w, xb_model *m);
/* the clip (nothing with a penalty); returns the elements clipped */
int64_t xb_wct_clip(const xb_wct *w, xb_model *m);
/* the bounds, one per mapped layer, to JSON (a resumed run keeps the first one's) and back */
xb_status xb_wct_save(const xb_wct *w, const xb_model *m, const char *path);
xb_status xb_wct_load(xb_wct *w, const xb_model *m, const char *path);
double xb_wct_bound(const xb_wct *w, int mapped);
/* from a run's wct.json, each mapped layer's max |w| when the constraint started (xb_xeval_opts.w_scales:
 * map the constrained weights with the scale of the unconstrained ones, so they use the lower part of the
 * same conductance range); scales has one entry per mapped layer */
xb_status xb_wct_scales_load(const char *path, const xb_model *m, double *scales);

/* ---- crossbar-aware structured pruning (src/prune/xprune.c; methods.md 5A) -----------------------------
 * Groups: the segments of every mapped layer's matrix (outputs x inputs) inside one tile of a hardware config
 * (its rows, columns and cells per weight; digital and grouped layers skipped): XCS one output's weights in
 * one row tile (a column segment), XRS one input's weights in one column tile (a row segment).  Group lasso
 * lambda sum_g ||w_g||_2; a hard cut zeroes each layer's `target` fraction of segments with the smallest RMS
 * and holds them at zero.  The layers then map packed ([mapping] pack = columns for XCS, rows for XRS). */
#define XB_XP_XCS 1
#define XB_XP_XRS 2
extern const char *const xb_xprune_names[3];
typedef struct xb_xprune xb_xprune;
struct xb_hw;
xb_status xb_xprune_init(const xb_model *m, const struct xb_hw *hw, int kind, double lambda, xb_xprune **out);
void xb_xprune_free(xb_xprune *p);
/* the penalty lambda sum_g ||w_g|| (segments not cut) and its gradient added into the model's gradients */
double xb_xprune_lasso(const xb_xprune *p, xb_model *m);
void xb_xprune_grad(const xb_xprune *p, xb_model *m);
/* the hard cut; then xb_xprune_apply after every step holds the cut segments (weights and gradients) at zero */
xb_status xb_xprune_cut(xb_xprune *p, xb_model *m, double target);
void xb_xprune_apply(const xb_xprune *p, xb_model *m);
/* a resumed run: the cut segments are the all-zero ones */
void xb_xprune_mask_from_zeros(xb_xprune *p, xb_model *m);
int xb_xprune_has_cut(const xb_xprune *p);
/* segments cut, crossbars dense and packed, compression, utilization: text or one JSON object */
void xb_xprune_print(const xb_xprune *p, xb_model *m, FILE *f, int json);

#ifdef __cplusplus
}
#endif
#endif /* XB_PRUNE_H */
