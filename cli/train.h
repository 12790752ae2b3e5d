/* train.h -- `xbar train`'s shared state (cmd_train.c) and its trainer hooks (train_hooks.c): activation
 * density, pruning while training, weight-constrained training, crossbar-aware pruning. */
#ifndef XB_CLI_TRAIN_H
#define XB_CLI_TRAIN_H
#include "cli.h"

typedef struct reporter_ {
    int json, progress;
    const char *hw, *mode;
    xb_ad *ad;
    xb_model *m;
    char ad_path[1100];
    xb_status ad_save;
    int prune;                    /* --ad-prune */
    const char *text, *path;      /* the model's resolved config text (current bits come from the model) */
    xb_qop *q;
    int **keep, *n_keep, cut;     /* a surgery planned at an epoch's start: the trainer stops for it */
    xb_pruner *pr;                /* --prune */
    char pr_path[1100];
    xb_status pr_save;
    const xb_dataset *train;      /* the data scores' images */
    int batch;
    xb_wct *wct;                  /* --wct-percentile, or --neat-hw's cut-offs */
    int64_t wct_every;            /* clip after every wct_every-th step (0 or 1: every step) */
    xb_xprune *xp;                /* --xprune */
    int xp_start, xp_resume;      /* xp_resume: the mask comes from the checkpoint's zeros, once it is loaded */
    double xp_target;
    char wct_path[1100];          /* written with the first report (the trainer has made --out by then) */
    xb_status wct_save;
    int wct_saved;
} reporter_;

/* trainer hooks (ctx: the reporter_) */
xb_status train_ad_epoch(void *ctx, xb_model *m, int64_t epoch);
xb_status train_epoch_begin(void *ctx, xb_model *m, int64_t epoch);
xb_status train_after_backward(void *ctx, xb_model *m, int64_t step);
xb_status train_after_update(void *ctx, xb_model *m, int64_t step);
/* the technique's state from the flags (and, on --resume, from the files beside the checkpoint) */
xb_status train_pruner_setup(xf_flag *f, int n, const char *kind, const xb_train_opts *o, xb_model *m,
                             const xb_dataset *train, const char *out, const char *hwpath, reporter_ *rp);
xb_status train_wct_setup(xf_flag *f, int n, const xb_train_opts *o, xb_model *m, const char *out, reporter_ *rp);
xb_status train_neat_setup(xf_flag *f, int n, const xb_train_opts *o, xb_model *m, const char *out, reporter_ *rp);
xb_status train_xprune_setup(xf_flag *f, int n, const xb_train_opts *o, xb_model *m, const char *hwpath, reporter_ *rp);
#endif
