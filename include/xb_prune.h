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

#ifdef __cplusplus
}
#endif
#endif /* XB_PRUNE_H */
