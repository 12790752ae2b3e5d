/* xnet_internal.h -- the crossbar network's types, shared by the files of src/xbar/ that build,
 * program and run it (xnet.c: construction and programming; xforward.c: the forward product and the
 * mapped-matmul operator).  Private to src/xbar/. */
#ifndef XB_XNET_INTERNAL_H
#define XB_XNET_INTERNAL_H
#include "xb_xbar.h"

#include <cblas.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define XL_STATS_COLS 1024          /* columns per call compared against the float product */
#define XL_CHUNK_FLOATS (1 << 19)   /* target size of one chunk buffer */
#define XL_CAL_SAMPLES (1 << 21)    /* values kept for a calibration percentile */

enum { NT_PAIR = 0, NT_REFCOL, NT_DIGITAL };

typedef struct xl_energy xl_energy_t;   /* the energy model's per-layer state (xenergy.c) */

typedef struct xlayer {
    int li, group, groups, param, digital;
    int sid;                      /* its random streams' index: the group, or the block */
    int planes, in_bits;          /* input planes per read and the input code's bits (per-layer precision) */
    int rows_out, k;
    xb_map_geom g;
    int ntype, tiled, noise;
    double s, comp, gain, coef[XB_MAX_SLICES];
    /* fast path (weight units) */
    float *weff, *vnoise, *vref;
    float *weff_bwd;              /* the backward (column-driven) read's effective weights, when it differs */
    double *gstate;               /* on-chip training: every array's conductances, tile-major (xl_tile_offset) */
    double *dist;                 /* on-chip training, refresh by distortion: E ./ G of the last solve (fwd, bwd) */
    double *gref;                 /* on-chip training with refresh_steps > 0: the conductances of the last solve */
    /* tiled path (code units), slices stacked: row t*rows_out + j of D is slice t of output j.
     * D = P (column ADC) or P - N (difference ADC); Nm (slices*nN x k) the N side for column ADCs;
     * VP / VN the read-noise variances of the P (and, for difference ADCs, pair N) and N sides. */
    float *D, *Nm, *VP, *VN;
    int nN;                       /* rows of Nm / VN per slice: rows_out (pair), ct (reference column), 0 */
    double ncode[XB_MAX_SLICES];  /* digital reference in code units */
    double x_max, fs;             /* input range (activation units); ADC full scale (code units) */
    int x_set, fs_set;
    int ch;                       /* chunk width (columns) */
    uint64_t whash;               /* hash of the float weights the tiles were programmed from */
    uint8_t *smask;               /* tiled path: the ADC's straight-through mask of the last forward (rt x ro x cols) */
    size_t smask_cap;
    int smask_cols;
    uint64_t smask_pass;          /* the model's forward it belongs to */
    uint64_t calls;
    xb_xlayer_stats st;
    /* drift_compensation = column: per output its factor (applied after the ADCs, and in weff / vnoise),
     * and the per-row-tile reference reads (all-ones input) at t0 and at t they come from (rt x rows_out) */
    float *dcomp;
    double *dref0, *dref1;
    /* [mapping] scale = column: per output its clip scale (srow) and its digital factor srow / s (rowf); the
     * per-output factor dcomp then carries rowf (times the drift compensation's, if any) */
    float *srow, *rowf;
    /* Blocks.  The tiles hold W[out_idx[p]][in_idx[q]] of the layer's full_ro x full_k matrix (NULL: the
     * identity), everything row-indexed inside (weff, masks, factors) in that order; the operator gathers
     * the block's inputs and adds its outputs back (xop.c).  [mapping] rearrange reorders out_idx at every
     * programming, starting from base_out (the block's outputs as built; NULL: 0..rows_out-1); [mapping]
     * pack splits a layer into blocks: the live column segments of each row tile (columns) or the live
     * row segments of each column tile (rows), packed into fewer tiles.  wsrc: the block's weights in its
     * order; wout (block 0): a layer-sized matrix for the effective weights in the layer's order. */
    int *out_idx, *in_idx, *base_out;
    int full_ro, full_k, block, nblocks;
    float *wsrc, *wout;
    xl_energy_t *en;              /* energy model: admittances and the probe's counts (NULL: never asked for) */
} xlayer;

struct xb_xnet {
    xb_hw hw;
    xb_model *m;
    int n_xl, n_mapped;
    double *wscale;               /* per mapped layer, > 0: its clip scale, fixed (xb_xnet_set_weight_scales) */
    xlayer *xl;
    int *first_xl;                /* per mapped layer: its group-0 xlayer */
    xb_solve_plan *plan;
    xb_solve_plan *plan_bwd;      /* the backward read's plan (cols x rows); == plan for square tiles */
    int bwd_read;                 /* the backward read differs from the forward's transpose: solve it too */
    int onchip;                   /* on-chip training: the conductances are kept as the state (xonchip.c) */
    int distort_next;             /* the next programming applies the held distortion ratios instead of solving */
    int stats_on;
    uint64_t cur_pass;            /* the model's forward being run (xb_mm_call.pass), for the masks */                 /* per-layer statistics (the callbacks' path); 0 lets linear layers run fused */
    xb_solve_plan *plan_dec, *plan_dec_bwd; /* on-chip refresh by the decoupled approximation */
    int parasitic, nthreads, attached, calibrating, programmed, foldable, folded;
    float *wsave;                 /* float weights of the mapped layers while folded */
    int planes, in_bits, need_x, need_fs, need_gain;  /* planes, in_bits: the config's (layers may differ) */
    xb_hw *lhw;                   /* per mapped layer: the config with its precisions, or NULL (all alike) */
    size_t tbuf_floats;
    float *tbuf, *refbuf, *cal;
    size_t ws_bytes, arr_doubles;
    uint64_t seed;
    int keep_ranges;              /* programming keeps calibrated ranges and gains that are set */
    xb_xnet_backward bwd;         /* what the backward reads (xb_xnet_set_backward) */
    uint64_t stale;               /* forwards refused because the weights changed since programming */
    int vec, bm;                  /* input_scaling = vector; bound_management = iterative */
    int power;                    /* programming keeps the row tiles' input admittances (xb_xnet_keep_power) */
    xb_solve_plan *plan_pow;      /* their exact plan when [circuit] solver is not exact */
};

/* The per-thread chunk buffer (floats): the path's own buffers (fast: xq, x2, var, var_ref, z; tiled: Xp,
 * Xp2, sig, sigN, var, colsum, z, int64 acc, double reference), then the per-column input scales (input_scaling = vector), then on
 * the tiled path bound management's: gathered inputs, re-read sig and sigN, their column sums, per-column
 * divisors, indices, clip counts and flags (xl_tbuf_bmex_), and the first read's clip counts and flags. */
static inline size_t xl_tbuf_base_(const xb_xnet *xn, const xlayer *l) {
    size_t ch = (size_t)l->ch, P = (size_t)l->planes, S = (size_t)l->g.slices;
    size_t ro = (size_t)l->rows_out, R = (size_t)l->g.R, N = (size_t)(l->nN > l->rows_out ? l->nN : l->rows_out);
    if (!l->tiled) return 2 * (size_t)l->k * ch + ro * ch + (size_t)l->g.ct * ch + ch;
    /* Xp, Xp2, sig, sigN, var, colsum, z; then, 8-byte aligned, the shift-add's int64 acc and double reference */
    return 2 * R * P * ch + S * ro * P * ch + 2 * S * N * P * ch + 2 * P * ch + 2 * ro * ch + 2 * ch + 2;
}
static inline size_t xl_tbuf_bmex_(const xb_xnet *xn, const xlayer *l) {
    size_t ch = (size_t)l->ch, P = (size_t)l->planes, S = (size_t)l->g.slices;
    size_t ro = (size_t)l->rows_out, R = (size_t)l->g.R, N = (size_t)(l->nN > l->rows_out ? l->nN : l->rows_out);
    return R * ch + S * ro * P * ch + S * N * P * ch + P * ch + 4 * ch;
}
static inline size_t xl_tbuf_(const xb_xnet *xn, const xlayer *l) {
    /* fast path with read noise: the fused product's packed weights and variances (xforward.c) */
    size_t pack = !l->tiled && l->noise ? ((size_t)(l->rows_out + 7) / 8 * 16 + 256) * (size_t)l->k : 0;
    return xl_tbuf_base_(xn, l) + (xn->vec ? (size_t)l->ch : 0) + pack +
           (xn->bm && l->tiled ? xl_tbuf_bmex_(xn, l) + 2 * (size_t)l->ch : 0);
}

static inline void gemm_(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *Cm,
                         int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, Cm, ldc);
}

/* Calibration samples of |value| (xcal.c).  The n values of one call are numbered in a fixed order (column
 * chunk, then the chunk's own order), whatever the thread count.  With stride = ceil(n / XL_CAL_SAMPLES) (1
 * when they all fit) the values numbered stride-1, 2 stride-1, ... are kept: a chunk whose values start at
 * number g0 writes its samples from buf + g0 / stride on.  maxabs is the exact maximum of all values. */
typedef struct cal_ { float *buf; int64_t n, cap, stride, cnt; float maxabs; } cal_;
/* The sampler of values [g0, g0 + n) of a call of `total` values; base holds XL_CAL_SAMPLES floats. */
cal_ xl_cal_at(float *base, int64_t total, int64_t g0, int64_t n);
void xl_cal_add(cal_ *c, const float *v, int64_t n);
/* Samples kept of a call of `total` values. */
int64_t xl_cal_kept(int64_t total);
/* ADC full scale of a layer from the samples of its calibration pass (base[0..nkept), maximum mx). */
void xl_calibrate_adc(xb_xnet *xn, xlayer *l, float *base, int64_t nkept, float mx);
/* Input range x_max of a layer from this call's inputs (k x ncols). */
void xl_calibrate_input(xb_xnet *xn, xlayer *l, int64_t n, const float *x);
/* Digital gain of a layer from the calibration call's output y against the float product. */
void xl_calibrate_gain(xb_xnet *xn, xlayer *l, int ncols, const float *w, const float *x, float *y);
/* The forward of one mapped layer through its tiles (xforward.c). */
xb_status xl_layer_forward(xb_xnet *xn, xlayer *l, int ncols, const float *w, const float *x, float *y);

/* Offset of tile (r, c) in a layer's per-cell state (arrays * R * C doubles per tile). */
static inline int64_t xl_tile_offset(const xlayer *l, int r, int c) {
    return ((int64_t)r * l->g.ct + c) * l->g.arrays * l->g.R * l->g.C;
}
void xl_assemble_w(const xlayer *l, int r, int c, const double *src, int transposed, double scale, float *out);
/* Energy model (xenergy.c): the tile's forward reads (*solved = 1) and its admittance in one solve when the power
 * model is on; the probe's observation of one forward call; freeing the layer's state. */
xb_status xl_energy_tile_solve(xb_xnet *xn, xlayer *l, int r, int c, const double *gt, double *e, void *ws,
                               const xb_solve_plan *plan, int *solved);
void xl_energy_observe(xb_xnet *xn, xlayer *l, int ncols, const float *x);
void xl_energy_free(xlayer *l);
xb_status xl_tile_build(xb_xnet *xn, xlayer *l, int r, int c, const double *gt, double *e, void *ws, int solve,
                        const xb_solve_plan *plan, const xb_solve_plan *plan_bwd, const double *e0);

/* On-chip training (xonchip.c): the distortion ratios E ./ g of tile offset off from a fresh solve e
 * (forward reads, then backward reads) of its conductances g (cells at 0 S keep ratio 1). */
void xl_keep_distortion(const xb_xnet *xn, xlayer *l, int64_t off, const double *e, const double *g);
/* e (forward reads, then backward reads) of tile offset off from conductances g and the held ratios */
void xl_distort(const xb_xnet *xn, const xlayer *l, int64_t off, const double *g, double *e);

/* FNV-1a over the bytes of n floats: the identity of the weights a layer was programmed from. */
uint64_t xb_xnet_hash_(const float *w, int64_t n);
/* The float weights of xlayer l (rows_out x k). */
float *xb_xnet_wptr_(const xb_xnet *xn, const xlayer *l);
/* the weights the tiles hold, in the block's order (wsrc for blocks) */
const float *xl_wsrc_(const xb_xnet *xn, const xlayer *l);
static inline int xl_blocked(const xlayer *l) { return l->out_idx != NULL || l->in_idx != NULL; }
/* rows (ncols wide) gathered by idx (NULL: the first n) into out, and added back: out[idx[p]] += in[p] */
void xl_gather_rows(const int *idx, int n, int ncols, const float *in, float *out);
void xl_scatter_add_rows(const int *idx, int n, int ncols, const float *in, float *out);
/* xblock.c: [mapping] rearrange of block l's outputs (out_idx, wsrc and the per-output scales follow) */
void xl_rearrange(const xb_hw *hw, xlayer *l);
/* [mapping] pack (mode 1 columns, 2 rows): the blocks of w (ro x k) on tiles of R rows and wc weight columns
 * into b (room for rt + ct); their count */
typedef struct blk_ { int no, ni, *out, *in; } blk_;
int xl_pack_blocks(const float *w, int ro, int k, int R, int wc, int mode, blk_ *b);
/* every non-zero weight of the packed layer whose first block is xl[x] lies in one of its blocks */
xb_status xl_pack_check(const xb_xnet *xn, int x);
/* the effective weights of the layer (group) whose first xlayer is xl[i], in its order (bwd: the backward
 * read's), into w */
void xl_layer_weff(const xb_xnet *xn, int i, int bwd, float *w);
/* The im2col workspace etc. come from the model; the forward and the operator live in xforward.c. */
void xb_xnet_install_op_(xb_xnet *xn);

static inline int max_threads_(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static inline int thread_id_(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* the config a layer is mapped with: the network's, or its own copy with per-layer precisions */
void xl_cell_read(const xb_xnet *xn, const xlayer *l, int64_t n, const double *g, double *out);
static inline const xb_hw *xl_hw_(const xb_xnet *xn, const xlayer *l) { return xn->lhw ? &xn->lhw[l->li] : &xn->hw; }

#endif
