/* map.c -- weights to conductances (methods.md S1): the clip scale, integer codes per bit slice,
 * the placement of a weight's cells in physical arrays, and the target conductances of a tile.
 *
 * Codes.  With clip scale s and u = w/s clipped to [-1, 1] (|w|/s to [0, 1] for the differential pair):
 *   differential, continuous     code(+ or -) = |u|                       qmax = 1,        kmax = 1
 *   differential, L levels       code = rint(|u| (L-1))                  qmax = L-1,      kmax = L-1
 *   differential, B bits / b     q = rint(|u| (2^B-1)), slices q_t       qmax = 2^B-1,    kmax = 2^b-1
 *   offset, continuous           code = u + 1, reference 1                qmax = 1,        kmax = 2
 *   offset, L levels             code = rint(u Q) + Q, Q = floor((L-1)/2), reference Q
 *   offset, B bits / b           q = rint(u Q) + 2^(B-1), Q = 2^(B-1)-1, reference 2^(B-1), sliced
 * where a slice t holds bits [b t, b t + b) of q (q = sum_t 2^(b t) q_t).  A cell with code c has the
 * target conductance G = g_min + g_unit c, g_unit = (g_max - g_min)/kmax.  The weight is recovered as
 *   w = s/qmax * sum_t 2^(b t) (code+_t - code-_t)        (differential)
 *   w = s/qmax * sum_t 2^(b t) (code_t  - ref_t)          (offset)
 * which is what xlayer.c computes from the read currents.  Rounding is to nearest, ties to even (rint).
 *
 * Placement.  A weight has n_sign x slices cells.  layout = separate: each (sign, slice) has its own
 * array of R x C cells at the same position (so a logical tile of R x wcols weights uses n_sign*slices
 * arrays; wcols = C, or C-1 with a reference column, which is the array's last column).  layout =
 * interleaved: the cells of output jj sit in adjacent columns jj*g .. jj*g+g-1 (g = n_sign*slices,
 * order: sign-major then slice) of one array, the reference columns (one per slice) at the right end.
 * Rows are never shared: row i of a row tile is input i.  Unused cells (partial tiles) sit at g_min. */
#include "xb_xbar.h"

#include <math.h>
#include <string.h>

xb_status xb_map_geom_init(const xb_hw *hw, int rows_out, int k, xb_map_geom *g) {
    if (rows_out < 1 || k < 1)
        return xb_errorf(XB_ERR_SHAPE, "crossbar mapping: weight block of %d x %d; both sides must be >= 1", rows_out, k);
    memset(g, 0, sizeof *g);
    g->rows_out = rows_out;
    g->k = k;
    g->R = hw->rows;
    g->C = hw->cols;
    g->n_sign = hw->scheme == XB_SCHEME_DIFFERENTIAL ? 2 : 1;
    const double dg = hw->g_max_s - hw->g_min_s;
    if (hw->weight_bits == 0) {
        g->slices = 1;
        g->slice_bits = 0;
        if (hw->levels == 0) {
            g->qmax = 1;
            g->kmax = hw->scheme == XB_SCHEME_DIFFERENTIAL ? 1 : 2;
            g->ref_code[0] = 1;
        } else {
            g->kmax = hw->levels - 1;
            g->qmax = hw->scheme == XB_SCHEME_DIFFERENTIAL ? hw->levels - 1 : (hw->levels - 1) / 2;
            g->ref_code[0] = g->qmax;
        }
    } else {
        int B = hw->weight_bits, b = hw->bits_per_cell < B ? hw->bits_per_cell : B;
        g->slices = B / b;
        g->slice_bits = b;
        g->kmax = (double)((1L << b) - 1);
        if (hw->scheme == XB_SCHEME_DIFFERENTIAL) {
            g->qmax = (double)((1L << B) - 1);
        } else {
            g->qmax = (double)((1L << (B - 1)) - 1);
            long r = 1L << (B - 1);
            for (int t = 0; t < g->slices; t++) g->ref_code[t] = (double)((r >> (b * t)) & ((1L << b) - 1));
        }
    }
    if (hw->scheme == XB_SCHEME_DIFFERENTIAL)
        for (int t = 0; t < g->slices; t++) g->ref_code[t] = 0;
    g->g_unit_s = dg / g->kmax;
    g->cells_per_weight = g->n_sign * g->slices;
    int refc = hw->scheme == XB_SCHEME_OFFSET && hw->reference == XB_REF_COLUMN;
    if (hw->layout == XB_LAYOUT_SEPARATE) {
        g->ref_cols = refc;
        g->wcols = g->C - refc;
        g->arrays = g->cells_per_weight;
    } else {
        g->ref_cols = refc ? g->slices : 0;
        g->wcols = (g->C - g->ref_cols) / g->cells_per_weight;
        g->arrays = 1;
    }
    if (g->wcols < 1)
        return xb_errorf(XB_ERR_CONFIG, "crossbar mapping: a %d-column array cannot hold one weight column (%d cells per "
                         "weight, %d reference columns). HINT: use wider tiles or layout = separate", g->C,
                         g->cells_per_weight, g->ref_cols);
    g->rt = (k + g->R - 1) / g->R;
    g->ct = (rows_out + g->wcols - 1) / g->wcols;
    g->tiles = (int64_t)g->rt * g->ct;
    g->arrays_total = g->tiles * g->arrays;
    g->cells_used = (int64_t)rows_out * k * g->cells_per_weight;
    g->cells_alloc = g->arrays_total * g->R * g->C;
    return XB_OK;
}

void xb_map_cell(const xb_map_geom *g, int sign, int slice, int jj, int *array, int *col) {
    if (g->arrays > 1) {
        *array = sign * g->slices + slice;
        *col = jj;
    } else {
        *array = 0;
        *col = jj * g->cells_per_weight + sign * g->slices + slice;
    }
}

void xb_map_ref(const xb_map_geom *g, int slice, int *array, int *col) {
    XB_ASSERT(g->ref_cols > 0);
    if (g->arrays > 1) {
        *array = slice; /* offset: one sign, so array index = slice */
        *col = g->C - 1;
    } else {
        *array = 0;
        *col = g->C - g->ref_cols + slice;
    }
}

double xb_map_scale(const xb_hw *hw, int64_t n, const float *w) {
    double s = 0;
    if (hw->w_clip == XB_WCLIP_MAX || hw->w_clip_percentile >= 100) {
        for (int64_t i = 0; i < n; i++) if (fabsf(w[i]) > s) s = fabsf(w[i]);
    } else {
        float *v = xb_malloc((size_t)n * sizeof(float));
        memcpy(v, w, (size_t)n * sizeof(float));
        s = xb_percentile_abs(v, n, hw->w_clip_percentile);
        xb_free(v);
    }
    return s > 0 ? s : 1.0;
}

void xb_map_codes(const xb_hw *hw, const xb_map_geom *g, double w, double s, double *code) {
    const int S = g->slices, b = g->slice_bits;
    for (int i = 0; i < g->cells_per_weight; i++) code[i] = 0;
    double u = w / s;
    if (u > 1) u = 1;
    if (u < -1) u = -1;
    if (hw->scheme == XB_SCHEME_DIFFERENTIAL) {
        int side = u < 0 ? 1 : 0;
        double a = fabs(u);
        if (hw->weight_bits == 0) {
            code[side * S] = hw->levels == 0 ? a : rint(a * g->qmax);
        } else {
            long q = (long)rint(a * g->qmax);
            for (int t = 0; t < S; t++) code[side * S + t] = (double)((q >> (b * t)) & ((1L << b) - 1));
        }
    } else {
        if (hw->weight_bits == 0) {
            code[0] = hw->levels == 0 ? u + 1 : rint(u * g->qmax) + g->qmax;
        } else {
            long q = (long)rint(u * g->qmax) + (1L << (hw->weight_bits - 1));
            for (int t = 0; t < S; t++) code[t] = (double)((q >> (b * t)) & ((1L << b) - 1));
        }
    }
}

void xb_map_tile_targets(const xb_hw *hw, const xb_map_geom *g, const float *w, double s, const float *s_rows, int r,
                         int c, double *gt) {
    const int R = g->R, C = g->C, S = g->slices;
    const int64_t RC = (int64_t)R * C;
    const double gmin = hw->g_min_s, gu = g->g_unit_s;
    for (int64_t i = 0; i < RC * g->arrays; i++) gt[i] = gmin;
    if (g->ref_cols)
        for (int t = 0; t < S; t++) {
            int a, p;
            xb_map_ref(g, t, &a, &p);
            for (int i = 0; i < R; i++) gt[a * RC + (int64_t)i * C + p] = gmin + gu * g->ref_code[t];
        }
    const int i0 = r * R, m = g->k - i0 < R ? g->k - i0 : R;
    const int j0 = c * g->wcols, nj = g->rows_out - j0 < g->wcols ? g->rows_out - j0 : g->wcols;
    double code[2 * XB_MAX_SLICES];
    for (int jj = 0; jj < nj; jj++) {
        int cell_a[2 * XB_MAX_SLICES], cell_p[2 * XB_MAX_SLICES];
        for (int sg = 0; sg < g->n_sign; sg++)
            for (int t = 0; t < S; t++) xb_map_cell(g, sg, t, jj, &cell_a[sg * S + t], &cell_p[sg * S + t]);
        const float *wr = w + (size_t)(j0 + jj) * g->k + i0;
        const double sj = s_rows ? (double)s_rows[j0 + jj] : s;
        for (int i = 0; i < m; i++) {
            xb_map_codes(hw, g, wr[i], sj, code);
            for (int q = 0; q < g->cells_per_weight; q++)
                gt[cell_a[q] * RC + (int64_t)i * C + cell_p[q]] = gmin + gu * code[q];
        }
    }
}
