/* xblock.c -- layers held in blocks (methods.md 5A): a block's tiles hold a sub-matrix of its layer,
 * W[out_idx][in_idx].  Column rearrangement orders a block's outputs over its column tiles; packing splits a
 * structured-sparse layer into the live segments of its row tiles (columns) or column tiles (rows).  The
 * gather and add-back of rows the operator runs (xop.c), the blocks' effective weights back in the layer's
 * order, and the check that packed-away weights are still zero.  docs/pruning.md. */
#include "xnet_internal.h"

void xl_gather_rows(const int *idx, int n, int ncols, const float *in, float *out) {
    for (int p = 0; p < n; p++)
        memcpy(out + (size_t)p * ncols, in + (size_t)(idx ? idx[p] : p) * ncols, sizeof(float) * (size_t)ncols);
}

void xl_scatter_add_rows(const int *idx, int n, int ncols, const float *in, float *out) {
    for (int p = 0; p < n; p++) {
        float *o = out + (size_t)(idx ? idx[p] : p) * ncols;
        const float *v = in + (size_t)p * ncols;
        for (int c = 0; c < ncols; c++) o[c] += v[c];
    }
}

/* Column rearrangement (methods.md 5A [R]): the block's outputs ranked by the total target conductance of
 * their cells, then dealt over its column tiles in turn (round-robin: each tile a mix, its strongest output
 * in its first column) or laid out in rank order (sorted: the strongest tile first); a partial last tile
 * takes fewer.  out_idx, wsrc and the per-output scales follow. */
void xl_rearrange(const xb_hw *hw, xlayer *l) {
    const xb_map_geom *g = &l->g;
    const int ro = l->rows_out, k = l->k;
    double *cs = xb_malloc(sizeof(double) * (size_t)ro), code[2 * XB_MAX_SLICES];
    int *ord = xb_malloc(sizeof(int) * (size_t)ro), *perm = xb_malloc(sizeof(int) * (size_t)ro);
    int *fill = xb_calloc(sizeof(int) * (size_t)g->ct + 1), *oi = xb_malloc(sizeof(int) * (size_t)ro);
    float *tw = xb_malloc(sizeof(float) * (size_t)ro * k + 1);
    for (int j = 0; j < ro; j++) {
        double s = 0;
        const double sj = l->srow ? l->srow[j] : l->s;
        for (int i = 0; i < k; i++) {
            xb_map_codes(hw, g, l->wsrc[(size_t)j * k + i], sj, code);
            for (int q = 0; q < g->cells_per_weight; q++) s += code[q];
        }
        cs[j] = s;
        ord[j] = j;
    }
    for (int i = 1; i < ro; i++) /* descending, ties by position (insertion sort: stable, deterministic) */
        for (int j = i; j > 0 && cs[ord[j]] > cs[ord[j - 1]]; j--) { int t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t; }
    if (hw->rearrange == 2) {
        for (int p = 0; p < ro; p++) perm[p] = ord[p];
    } else {
        int t = 0;
        for (int r = 0; r < ro; r++) {
            for (;;) { /* the next tile with room */
                const int cap = ro - t * g->wcols < g->wcols ? ro - t * g->wcols : g->wcols;
                if (fill[t] < cap) break;
                t = (t + 1) % g->ct;
            }
            perm[t * g->wcols + fill[t]++] = ord[r];
            t = (t + 1) % g->ct;
        }
    }
    memcpy(oi, l->out_idx, sizeof(int) * (size_t)ro);
    memcpy(tw, l->wsrc, sizeof(float) * (size_t)ro * k);
    for (int p = 0; p < ro; p++) {
        l->out_idx[p] = oi[perm[p]];
        memcpy(l->wsrc + (size_t)p * k, tw + (size_t)perm[p] * k, sizeof(float) * (size_t)k);
    }
    for (int a = 0; l->srow && a < 2; a++) {
        float *v = a ? l->rowf : l->srow;
        memcpy(tw, v, sizeof(float) * (size_t)ro);
        for (int p = 0; p < ro; p++) v[p] = tw[perm[p]];
    }
    xb_free(cs); xb_free(ord); xb_free(perm); xb_free(fill); xb_free(oi); xb_free(tw);
}

/* [mapping] pack: the blocks of a layer's matrix w (ro x k) in tiles of R rows and wc weight columns.
 * columns (XCS): per row tile, the outputs whose segment in it is not all zero, packed; rows (XRS): per
 * column tile, the inputs whose segment in it is not all zero, packed.  Empty segments get no tile. */
int xl_pack_blocks(const float *w, int ro, int k, int R, int wc, int mode, blk_ *b) {
    int nb = 0;
    if (mode == 1) {
        for (int i0 = 0; i0 < k; i0 += R) {
            const int m = k - i0 < R ? k - i0 : R;
            int *out = xb_malloc(sizeof(int) * (size_t)ro), no = 0;
            for (int j = 0; j < ro; j++) {
                int live = 0;
                for (int i = 0; i < m && !live; i++) live = w[(size_t)j * k + i0 + i] != 0;
                if (live) out[no++] = j;
            }
            if (!no) { xb_free(out); continue; }
            int *in = xb_malloc(sizeof(int) * (size_t)m);
            for (int i = 0; i < m; i++) in[i] = i0 + i;
            b[nb++] = (blk_){no, m, out, in};
        }
    } else {
        for (int j0 = 0; j0 < ro; j0 += wc) {
            const int nj = ro - j0 < wc ? ro - j0 : wc;
            int *in = xb_malloc(sizeof(int) * (size_t)k), ni = 0;
            for (int i = 0; i < k; i++) {
                int live = 0;
                for (int j = 0; j < nj && !live; j++) live = w[(size_t)(j0 + j) * k + i] != 0;
                if (live) in[ni++] = i;
            }
            if (!ni) { xb_free(in); continue; }
            int *out = xb_malloc(sizeof(int) * (size_t)nj);
            for (int j = 0; j < nj; j++) out[j] = j0 + j;
            b[nb++] = (blk_){nj, ni, out, in};
        }
    }
    return nb;
}

/* [mapping] pack: every non-zero weight of the layer whose first block is xl[x] lies in one of its blocks
 * (the segments dropped at mapping are still zero) */
xb_status xl_pack_check(const xb_xnet *xn, int x) {
    const xlayer *l = &xn->xl[x];
    const float *w = xb_xnet_wptr_(xn, l);
    uint8_t *cov = xb_calloc((size_t)l->full_ro * l->full_k + 1);
    for (int b = 0; b < l->nblocks; b++)
        for (int p = 0; p < l[b].rows_out; p++)
            for (int q = 0; q < l[b].k; q++)
                cov[(size_t)l[b].base_out[p] * l->full_k + l[b].in_idx[q]] = 1;
    int64_t bad = -1;
    for (int64_t i = 0; i < (int64_t)l->full_ro * l->full_k && bad < 0; i++)
        if (w[i] != 0 && !cov[i]) bad = i;
    xb_free(cov);
    if (bad >= 0)
        return xb_errorf(XB_ERR_STATE, "crossbar layer %s: weight (%lld, %lld) is no longer zero, but its segment was "
                         "dropped when the layer was packed ([mapping] pack). HINT: build the network again "
                         "(xb_xnet_init) for these weights", l->st.name, (long long)(bad / l->full_k),
                         (long long)(bad % l->full_k));
    return XB_OK;
}

/* block b's effective weights (internal order) added into the layer's matrix w (full_ro x full_k) */
static void scatter_block_(const xlayer *b, const float *src, float *w) {
    for (int p = 0; p < b->rows_out; p++) {
        float *row = w + (size_t)(b->out_idx ? b->out_idx[p] : p) * b->full_k;
        const float *v = src + (size_t)p * b->k;
        for (int q = 0; q < b->k; q++) row[b->in_idx ? b->in_idx[q] : q] += v[q];
    }
}

/* the effective weights of the layer (group) whose first xlayer is xl[i], in the layer's order, into w */
void xl_layer_weff(const xb_xnet *xn, int i, int bwd, float *w) {
    const xlayer *l = &xn->xl[i];
    if (!xl_blocked(l)) {
        memcpy(w, bwd && l->weff_bwd ? l->weff_bwd : l->weff, (size_t)l->rows_out * l->k * sizeof(float));
        return;
    }
    memset(w, 0, (size_t)l->full_ro * l->full_k * sizeof(float));
    for (int b = 0; b < l->nblocks; b++) {
        const xlayer *lb = &xn->xl[i + b];
        scatter_block_(lb, bwd && lb->weff_bwd ? lb->weff_bwd : lb->weff, w);
    }
}

/* the layer's effective weights in its order: its own matrix, or assembled into block 0's wout */
static const float *effective_(const xb_xnet *xn, int i, int g, int bwd) {
    XB_ASSERT(i >= 0 && i < xn->n_mapped && g >= 0 && xn->first_xl[i] + g < xn->first_xl[i + 1]);
    const int x = xn->first_xl[i] + g;
    const xlayer *l = &xn->xl[x];
    if (l->digital) return NULL;
    if (!xl_blocked(l)) return bwd && l->weff_bwd ? l->weff_bwd : l->weff;
    XB_ASSERT(g == 0 || l->nblocks == 1);
    xl_layer_weff(xn, x, bwd, l->wout);
    return l->wout;
}

const float *xb_xnet_effective_weights(const xb_xnet *xn, int i, int g) { return effective_(xn, i, g, 0); }
const float *xb_xnet_effective_weights_bwd(const xb_xnet *xn, int i, int g) { return effective_(xn, i, g, 1); }

const int *xb_xnet_layer_perm(const xb_xnet *xn, int i, int g) {
    XB_ASSERT(i >= 0 && i < xn->n_mapped && g >= 0 && xn->first_xl[i] + g < xn->first_xl[i + 1]);
    return xn->xl[xn->first_xl[i] + g].out_idx;
}
