/*
 * xb_model.h -- INI configs, model graphs, optimizers, training, evaluation, checkpoints.
 * Included by xbar.h.  The .cfg grammar of models is in docs/model-cfg.md.
 */
#ifndef XB_MODEL_H
#define XB_MODEL_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---- strict INI parser (src/cfg/ini.c) -----------------------------------------------------------
 * Grammar: '#' or ';' starts a comment (whole line, or after whitespace); "[type]" or "[type name]"
 * opens a section; "key = value" lines belong to the last section.  Keys are case-sensitive.
 * Typed getters validate ranges and mark keys used; xb_ini_check_unused() reports the first key that
 * no getter asked for ("file:line: unknown key 'x' in section [conv2d c1]. HINT: ...").          */
typedef struct xb_ini_kv { char *key, *val; int line, used; } xb_ini_kv;
typedef struct xb_ini_section {
    char *type, *name;  /* name is "" when absent */
    int line, n;
    xb_ini_kv *kv;
} xb_ini_section;
typedef struct xb_ini { char path[512]; int n; xb_ini_section *sec; } xb_ini;

xb_status xb_ini_parse_file(const char *path, xb_ini *out);
/* text need not be NUL-terminated beyond len; path is used in messages only */
xb_status xb_ini_parse_string(const char *text, size_t len, const char *path, xb_ini *out);
void xb_ini_free(xb_ini *ini);
/* Raw lookup (marks the key used); NULL when absent. */
const char *xb_ini_raw(xb_ini_section *s, const char *key, int *line);
/* Getters: when the key is absent, required ? error : *out = def.  Values out of [lo, hi] or of the
 * wrong type are errors naming file, line, key, the value and the allowed range. */
xb_status xb_ini_int(const xb_ini *ini, xb_ini_section *s, const char *key, int required, long def,
                     long lo, long hi, long *out);
xb_status xb_ini_double(const xb_ini *ini, xb_ini_section *s, const char *key, int required, double def,
                        double lo, double hi, double *out);
xb_status xb_ini_bool(const xb_ini *ini, xb_ini_section *s, const char *key, int required, int def,
                      int *out);
/* string value copied into out (size n); choices, if not NULL, is a NULL-terminated list of allowed
 * values and *index receives the match */
xb_status xb_ini_str(const xb_ini *ini, xb_ini_section *s, const char *key, int required,
                     const char *def, const char *const *choices, char *out, size_t n, int *index);
xb_status xb_ini_check_unused(const xb_ini *ini);

/* ---- models ------------------------------------------------------------------------------------- */
typedef struct xb_model xb_model;

/* One named tensor of the state_dict. */
typedef struct xb_param {
    char name[128];      /* PyTorch name, e.g. "layer1.0.conv1.weight" */
    int ndim;
    int64_t shape[XB_MAX_DIMS];
    int64_t numel;
    int64_t offset;      /* into xb_model_params() (trainable) or xb_model_buffers() (buffers) */
    int trainable;       /* 0: buffer (running_mean, running_var, num_batches_tracked) */
    int decay;           /* weight decay applies (weights; not biases or batchnorm affine) */
    int is_int64;        /* num_batches_tracked: stored as a float counter, written as int64 */
    int optional;        /* may be absent from a weights file, keeping its start value: an activation
                            quantizer's alpha or clip (so a float model's weights load into its quantized twin) */
} xb_param;

/* Loads a model from a .cfg file, or from the built-in zoo when name_or_path has no ".cfg" suffix
 * and no '/' (mlp, lenet5, vgg8, vgg11, vgg16, resnet20, resnet18).  Parameters are initialised from
 * the "init" stream of seed. */
xb_status xb_model_load(const char *name_or_path, uint64_t seed, xb_model **out);
/* The same from a config's text (len bytes); path names it in messages, and its file part names the model. */
xb_status xb_model_load_text(const char *text, size_t len, const char *path, uint64_t seed, xb_model **out);
void xb_model_free(xb_model *m);
/* Names of the zoo models, NULL-terminated. */
const char *const *xb_zoo_names(void);
/* The text of a zoo config, or NULL. */
const char *xb_zoo_cfg(const char *name);

int xb_model_n_params(const xb_model *m);
const xb_param *xb_model_param(const xb_model *m, int i);
const xb_param *xb_model_find_param(const xb_model *m, const char *name);
float *xb_model_params(xb_model *m);   /* all trainable parameters, one block */
float *xb_model_grads(xb_model *m);    /* same layout as params */
float *xb_model_buffers(xb_model *m);
int64_t xb_model_n_trainable(const xb_model *m);
int64_t xb_model_n_buffer(const xb_model *m);
int xb_model_classes(const xb_model *m);
void xb_model_input_shape(const xb_model *m, int *c, int *h, int *w);
const char *xb_model_name(const xb_model *m);

/* Prints the layer table (name, type, output shape, parameters, MACs) to f; json != 0 prints one JSON
 * object instead. */
void xb_model_print_info(const xb_model *m, FILE *f, int json);
int64_t xb_model_macs(const xb_model *m); /* per image, forward */

/* Weights as safetensors with PyTorch names.  Load checks every name, shape and dtype, and that no
 * tensor is missing or left over; messages name the file and the tensor. */
xb_status xb_model_load_weights(xb_model *m, const char *path);
xb_status xb_model_save_weights(const xb_model *m, const char *path);
xb_status xb_model_weights_from_st(xb_model *m, const xb_safetensors *st, const char *path);

/* Mode and batch.  Activation memory is planned by xb_model_set_batch (max batch); forward and
 * backward then allocate nothing. */
void xb_model_train_mode(xb_model *m, int training);
/* Batchnorm running statistics: reset to mean 0, variance 1, num_batches_tracked 0; and the cumulative
 * mode, in which each training-mode forward adds its batch statistics with weight 1/k (k-th batch since
 * the reset), so the running statistics are the plain mean over the batches (torch's momentum=None,
 * used by torch.optim.swa_utils.update_bn).  Off: the layers' own momentum. */
void xb_model_reset_bn_stats(xb_model *m);
void xb_model_bn_cumulative(xb_model *m, int on);
xb_status xb_model_set_batch(xb_model *m, int max_batch);
/* x: NCHW float32 (n, c, h, w); logits_out (n, classes) row-major (may be NULL); returns XB_OK.
 * dropout draws from rng (may be NULL in eval mode). */
xb_status xb_model_forward(xb_model *m, int n, const float *x, float *logits_out, xb_rng *rng);
/* ---- mapped-matmul operators --------------------------------------------------------------------
 * Every conv2d and linear layer is a matrix product Y (rows_out, ncols) = W (rows_out, k) X (k, ncols)
 * (X: the im2col matrix of one convolution group, or the (k, n) features of a linear layer; Y without
 * the bias).  An operator replaces that product in forward and backward: a crossbar, a fake quantizer,
 * a pruning mask or noise injection is an operator, not an edit of the model.  With no operator set
 * the model runs its own fused kernels (the fast path).  Every callback returns a status; a failure
 * stops the forward or backward and is returned by it.  NULL callbacks take the float default. */
typedef struct xb_mm_call {
    int layer, group;          /* mapped layer (index among the conv/linear layers), convolution group */
    int rows_out, k, ncols;
    const float *w;            /* the layer's float weights of this group, (rows_out, k) row-major */
    int training;              /* the model's mode */
    uint64_t pass;             /* forwards of the model so far, this one included */
} xb_mm_call;
typedef struct xb_mm_op {
    void *ctx;
    /* y (rows_out, ncols) = the operator's product of x (k, ncols).  Default: W x (SGEMM). */
    xb_status (*forward)(void *ctx, const xb_mm_call *c, const float *x, float *y);
    /* dx (k, ncols) = the gradient with respect to x of sum(dy . y), given the forward's x (written, not
     * added).  Default: W^T dy. */
    xb_status (*backward_input)(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dx);
    /* dw (rows_out, k) += the gradient with respect to W.  Default: dy x^T. */
    xb_status (*backward_weight)(void *ctx, const xb_mm_call *c, const float *x, const float *dy, float *dw);
    /* Called by the trainer after every optimizer step (the weights changed).  May be NULL. */
    xb_status (*after_update)(void *ctx, xb_model *m);
    /* Optional fast path: when the operator is, for this call, a fixed linear map, *fwd = the (rows_out,
     * k) weights it multiplies by and *bwd = those whose transpose its input gradient uses (the weight
     * gradient is then dy x^T); the model runs its own fused kernels with them instead of calling the
     * three callbacks (convolutions of one group and linear layers).  *fwd = NULL: use the callbacks. */
    xb_status (*linear_weights)(void *ctx, const xb_mm_call *c, const float **fwd, const float **bwd);
    /* Optional, with linear_weights: *scale = (rows_out, k) factors the fast path's weight gradient is
     * multiplied by, element by element, before it is added (a weight quantizer's straight-through
     * derivative); *scale = NULL: 1. */
    xb_status (*weight_grad_scale)(void *ctx, const xb_mm_call *c, const float **scale);
} xb_mm_op;
/* Installs op (copied; NULL removes it and restores the native kernels). */
void xb_model_set_op(xb_model *m, const xb_mm_op *op);
/* The installed operator, or NULL. */
const xb_mm_op *xb_model_op(const xb_model *m);
/* The float default product, for operators that wrap it: y = w x, dx = w^T dy, dw += dy x^T. */
void xb_mm_float_forward(const xb_mm_call *c, const float *x, float *y);
void xb_mm_float_backward_input(const xb_mm_call *c, const float *dy, float *dx);
void xb_mm_float_backward_weight(const xb_mm_call *c, const float *x, const float *dy, float *dw);

/* ---- the step API ---------------------------------------------------------------------------------
 * A training step is  zero_grad -> forward -> loss_grad -> backward_from -> optimizer step;
 * xb_model_backward() does the middle part for a labelled batch. */
void xb_model_zero_grad(xb_model *m);
/* Softmax cross-entropy of the last forward (n images) against labels (0..classes-1): the mean loss,
 * the number of correct predictions (either may be NULL) and, if dlogits != NULL, the gradient of the
 * mean loss, (n, classes) row-major.  Labels out of range: XB_ERR_ARG; a non-finite loss: XB_ERR_NUMERIC. */
xb_status xb_model_loss_grad(xb_model *m, int n, const int32_t *labels, float label_smoothing, double *loss,
                             int *correct, float *dlogits);
/* Backward of the last forward from given dlogits (n, classes) row-major.  params != 0 adds the
 * parameter gradients into xb_model_grads(); dx != NULL receives the gradient with respect to the
 * model's input, (n, c, h, w) NCHW (xb_dataset_input_grad takes it through the normalization to the
 * image).  Training mode, or eval mode, where batchnorm is the per-channel affine of its running
 * statistics (left untouched).  An eval-mode forward that folded batchnorm into its convolution (the
 * inference fast path) cannot be differentiated: XB_ERR_STATE; call xb_model_keep_graph(m, 1) first. */
xb_status xb_model_backward_from(xb_model *m, int n, const float *dlogits, int params, float *dx);
/* 1: eval-mode forwards keep every layer's output (no conv+batchnorm folding), so that they can be
 * differentiated; 0 (default): the inference fast path. */
void xb_model_keep_graph(xb_model *m, int on);
/* zero_grad + loss_grad + backward_from(params = 1) in one call: the loss in *loss and the correct
 * predictions in *correct (either may be NULL). */
xb_status xb_model_backward(xb_model *m, int n, const int32_t *labels, float label_smoothing,
                            double *loss, int *correct);
/* Loss and accuracy of the current forward without backward */
double xb_model_loss(xb_model *m, int n, const int32_t *labels, float label_smoothing, int *correct);
/* (classes, n) logits of the last forward, CNHW layout */
const float *xb_model_logits(const xb_model *m);
/* Nodes (layers) in graph order: count, name, output shape per image (c, h, w), and the output of the
 * last forward, (c, n, h, w) CNHW.  A batchnorm or add whose relu was fused into it has no output of
 * its own there (NULL); the relu's holds it. */
int xb_model_n_nodes(const xb_model *m);
const char *xb_model_node_name(const xb_model *m, int i);
/* node i's layer type as written in a .cfg ("conv2d", "relu", "quant", ...), its inputs (in0, in1: node
 * indices, -1 the image; in1 = -2 for one input), its index among the mapped layers (-1: not mapped) and
 * its multiply-accumulates per image (conv2d, linear; else 0) */
const char *xb_model_node_type(const xb_model *m, int i);
void xb_model_node_inputs(const xb_model *m, int i, int *in0, int *in1);
int xb_model_node_mapped(const xb_model *m, int i);
int64_t xb_model_node_macs(const xb_model *m, int i);
/* the number of images of the last forward */
int xb_model_last_batch(const xb_model *m);
/* Sets the bits of activation quantizer node i ([quant], not ternary): XB_ERR_ARG when it is not one or the
 * bits are out of its range. */
xb_status xb_model_set_quant_bits(xb_model *m, int i, int bits);
void xb_model_node_shape(const xb_model *m, int i, int *c, int *h, int *w);
const float *xb_model_node_output(const xb_model *m, int i);
/* The gradient with respect to node i's output from the last backward, (c, n, h, w) CNHW, or NULL when the
 * backward gave it none (a batchnorm or add whose relu was fused into it: the relu's holds it). */
const float *xb_model_node_grad(const xb_model *m, int i);
/* The largest batch the model's activations are planned for (xb_model_set_batch; 0: none yet). */
int xb_model_batch_capacity(const xb_model *m);
/* The groups of convolution node i (1 for any other node). */
int xb_model_node_groups(const xb_model *m, int i);
/* Batchnorm node i in eval mode as y = scale x + shift per channel (its running statistics and affine):
 * returns 1 and fills scale and shift (c each); 0 when node i is not a batchnorm. */
int xb_model_bn_affine(const xb_model *m, int i, float *scale, float *shift);
/* frozen (xb_model_n_trainable bytes) = 1 for the trainable elements that `which` leaves untouched:
 * "all" freezes nothing, "bn" everything but the batchnorm layers' gamma and beta.  XB_ERR_ARG for
 * another word, or for "bn" on a model without batchnorm. */
xb_status xb_model_freeze_mask(const xb_model *m, const char *which, uint8_t *frozen);

/* Mapped layers (conv2d and linear, in graph order) */
int xb_model_n_mapped(const xb_model *m);
/* name, weight param index and matrix size (rows_out = out channels, k = unrolled inputs) */
void xb_model_mapped_info(const xb_model *m, int i, const char **name, int *param, int *rows_out, int *k);

/* ---- optimizers and schedules (PyTorch semantics) ----------------------------------------------- */
typedef enum xb_optim_kind { XB_OPT_SGD = 0, XB_OPT_ADAM, XB_OPT_ADAMW, XB_OPT_COUNT } xb_optim_kind;
typedef enum xb_sched_kind { XB_SCHED_CONST = 0, XB_SCHED_COSINE, XB_SCHED_STEP, XB_SCHED_ONECYCLE,
                             XB_SCHED_COUNT } xb_sched_kind;
typedef struct xb_optim {
    xb_optim_kind kind;
    double lr, momentum, weight_decay, beta1, beta2, eps;
    int nesterov;
    int64_t n, step;           /* parameters, steps taken */
    float *m, *v;              /* moment buffers, same layout as params (v unused by SGD) */
} xb_optim;
xb_status xb_optim_init(xb_optim *o, xb_optim_kind kind, int64_t n);
void xb_optim_free(xb_optim *o);
/* One update of params from grads with learning rate lr; weight decay applies where decay_mask[i]
 * (NULL: everywhere, as torch does when one param group holds everything). */
void xb_optim_step(xb_optim *o, float *params, const float *grads, const uint8_t *decay_mask, double lr);
/* The same, leaving the elements with frozen[i] != 0 (and their moments) exactly as they are. */
void xb_optim_step_masked(xb_optim *o, float *params, const float *grads, const uint8_t *decay_mask,
                          const uint8_t *frozen, double lr);
double xb_schedule_lr(xb_sched_kind k, double base_lr, int64_t step, int64_t total_steps,
                      int64_t steps_per_epoch);

/* ---- training and evaluation -------------------------------------------------------------------- */
/* What the trainer reports at the end of every epoch (or of a run stopped by --steps). */
typedef struct xb_epoch_report {
    int64_t epoch, epochs;    /* completed epochs of the run (resumed parts included), planned epochs */
    int64_t step;             /* optimizer steps of the run */
    int epoch_done;           /* 0: the run stopped inside the epoch (--steps) */
    double train_loss, train_acc, images_per_s;
    double test_acc;          /* -1: not evaluated */
    int64_t test_images;
    double swa_test_acc;      /* -1: none */
    int64_t swa_n;
    double seconds;           /* of the whole run */
} xb_epoch_report;

/* Trainer hooks (any may be NULL).  A hook that returns an error stops training with that status.
 * Per step:  before_forward -> forward -> backward -> after_backward (the gradients may be edited) ->
 * optimizer step -> the model operator's after_update -> after_update.  epoch_begin runs before an
 * epoch's first step (also when a run resumes at an epoch boundary); report after every epoch. */
typedef struct xb_train_hooks {
    void *ctx;
    xb_status (*epoch_begin)(void *ctx, xb_model *m, int64_t epoch);
    xb_status (*before_forward)(void *ctx, xb_model *m, int64_t step, int64_t epoch);
    xb_status (*after_backward)(void *ctx, xb_model *m, int64_t step);
    xb_status (*after_update)(void *ctx, xb_model *m, int64_t step);
    void (*report)(void *ctx, const xb_epoch_report *r);
} xb_train_hooks;

typedef struct xb_train_opts {
    int epochs;               /* 0: as many as --steps needs */
    int64_t steps;            /* stop after this many optimizer steps (0: no limit) */
    int batch;
    double lr, momentum, weight_decay, label_smoothing;
    int nesterov;             /* Nesterov momentum (SGD) */
    xb_optim_kind optimizer;
    xb_sched_kind schedule;
    int decay_all;            /* 1: weight decay on every parameter (torch default); 0: weights only */
    int augment;              /* random crop (4-pixel padding) and horizontal flip */
    int cutout;               /* side of the cutout square (0: none; DeVries & Taylor 2017) */
    int swa_epochs;           /* stochastic weight averaging (Izmailov et al. 2018): this many epochs at the
                                 constant rate swa_lr after the `epochs` of the schedule, the weights
                                 averaged at the end of each (0: none) */
    double swa_lr;
    uint64_t seed;
    int threads;
    int64_t eval_limit;       /* test images evaluated each epoch (0: all) */
    const char *out_dir;      /* weights.safetensors and checkpoint.safetensors go here (NULL: none) */
    const char *resume;       /* checkpoint to continue from */
    int progress;             /* progress bar on stderr (the library prints nothing else: results go to
                                 hooks->report and the result struct) */
    const xb_train_hooks *hooks;
    const uint8_t *frozen;    /* per trainable element: 1 = never updated (bit for bit), NULL: none */
    const char *model_cfg;    /* written into every checkpoint as the metadata "model_cfg" (a run whose model
                                 changed shape, e.g. by channel surgery; xb_checkpoint_model_text), or NULL */
} xb_train_opts;
xb_train_opts xb_train_opts_default(void);

#define XB_WARMUP_STEPS 2
typedef struct xb_train_result {
    int epochs_done;          /* epochs completed by this call */
    int64_t epochs_total;     /* epochs completed by the whole run, resumed parts included */
    int64_t steps_done;       /* optimizer steps of the whole run */
    double seconds;           /* this call's wall time */
    double seconds_total;     /* the whole run's wall time (the per-epoch JSON lines' "seconds") */
    double train_loss, train_acc, test_acc, images_per_s;
    double steady_images_per_s; /* the same without this call's first XB_WARMUP_STEPS steps (their page
                                   faults and cold caches), as bench/torch_bench.py times PyTorch;
                                   images_per_s when the call ran no more steps than that */
    int64_t swa_n;            /* weight snapshots in the SWA average (0: no SWA yet) */
    double swa_test_acc;      /* test accuracy of the SWA weights after their batchnorm pass (-1: none) */
} xb_train_result;
xb_status xb_train(xb_model *m, const xb_dataset *train, const xb_dataset *test, const xb_train_opts *o,
                   xb_train_result *res);

/* Channel surgery of a training run (xb_model_prune, include/xb_prune.h): rewrites the checkpoint at path
 * for the pruned model: its parameters and buffers, the optimizer moments and the SWA average through
 * param_map, the data order, random streams and schedule position as they were, and model_text (may be
 * NULL) as the metadata "model_cfg", which xb_checkpoint_model_text reads back (*text NULL: none), so
 * that a resumed run builds the pruned model. */
xb_status xb_checkpoint_prune(const char *path, xb_model *pruned, const int64_t *param_map, const char *model_text);
xb_status xb_checkpoint_model_text(const char *path, char **text);

/* Recomputes the batchnorm running statistics of the current weights as the plain mean over one pass of
 * d's images in order, unaugmented, in training mode (torch.optim.swa_utils.update_bn over such a
 * loader); dropout, if any, draws from rng.  Leaves the model in eval mode. */
xb_status xb_update_bn(xb_model *m, const xb_dataset *d, int batch, int progress, xb_rng *rng);
/* The same over the first `limit` images of d (0: all). */
xb_status xb_update_bn_n(xb_model *m, const xb_dataset *d, int64_t limit, int batch, int progress, xb_rng *rng);
typedef struct xb_eval_result { int64_t n, correct; double loss, accuracy, seconds; } xb_eval_result;
/* Evaluates the first `limit` images (0: all) in eval mode. */
xb_status xb_evaluate(xb_model *m, const xb_dataset *d, int64_t limit, int batch, int progress,
                      xb_eval_result *r);

/* ---- progress bar ------------------------------------------------------------------------------- */
typedef struct xb_progress { const char *label; int64_t total, done; double t0, last; int enabled; } xb_progress;
void xb_progress_start(xb_progress *p, const char *label, int64_t total, int enabled);
/* extra: short text such as "loss 1.23 acc 45.6%" */
void xb_progress_update(xb_progress *p, int64_t done, const char *extra);
void xb_progress_end(xb_progress *p, const char *extra);

#ifdef __cplusplus
}
#endif
#endif /* XB_MODEL_H */
