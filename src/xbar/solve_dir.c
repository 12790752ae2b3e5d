/*
 * solve_dir.c -- the backward (transposed, column-driven) read of a crossbar tile, through the
 * forward solvers of solve.c and solve_approx.c (circuit: include/xb_solve.h, docs/solver.md s. 9).
 *
 * The backward circuit drives column j at its bottom end (column node (rows-1,j)) through r_driver and
 * senses row i at its left end (row node (i,0)) through r_sense.  Relabel it: the tile's columns become
 * the rows of a new (cols x rows) grid, read from the bottom up, and its rows the new columns, read from
 * right to left:
 *     new row a = old column cols-1-a,   new column b = old row rows-1-b,
 *     G'[a][b] = G[rows-1-b][cols-1-a].
 * Check the ends: new row a is driven at its left end b = 0, i.e. old row rows-1 -- the bottom of old
 * column cols-1-a, where the backward source sits; new column b is sensed at its bottom a = cols-1,
 * i.e. old column 0 -- the left end of old row rows-1-b, where the backward sense sits.  Row wire
 * segments of the new grid join (a,b-1)-(a,b): old column nodes (rows-b,j)-(rows-1-b,j), a column
 * segment; likewise the new column segments are old row segments; every cell keeps its conductance
 * between the same two nodes.  So it is the same network with the same r_driver and r_sense, and
 *     Eb[j][i] = E'[cols-1-j][rows-1-i].
 * In flat row-major terms both maps are reversals: G' is reverse(G^T) and Eb is reverse(E'), so E' is
 * written into eb and reversed in place.  The transposed copy of G lives in the caller's workspace
 * (plans are shared between threads; no allocation per call).
 */
#include "xb_solve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* room for G' at the start of the workspace, rounded so the forward solver's part stays 64-aligned */
static size_t gt_bytes(int rows, int cols) {
    return ((size_t)rows * cols * sizeof(double) + 63) & ~(size_t)63;
}

size_t xb_solve_plan_workspace_dir(const xb_solve_plan *p, xb_read_dir dir) {
    XB_ASSERT(p);
    int r, c;
    xb_solve_plan_size(p, &r, &c);
    switch (dir) {
    case XB_READ_FORWARD: return xb_solve_plan_workspace(p);
    case XB_READ_BACKWARD: return gt_bytes(r, c) + xb_solve_plan_workspace(p);
    default: return 0;
    }
}

/* gt (pr, pc) = reverse(g^T) for the tile g (rows = pc, cols = pr), checking g on the way so that a bad
 * entry is named where the caller put it (the forward solver would name it in G' coordinates). */
static xb_status transpose_reverse(int pr, int pc, const double *g, double *gt) {
    const int rows = pc, cols = pr;
    const size_t last = (size_t)rows * cols - 1;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            const double v = g[(size_t)i * cols + j];
            if (!isfinite(v) || v < 0)
                return xb_errorf(XB_ERR_ARG, "solver (backward read): G[%d,%d] = %g S is %s. HINT: conductances "
                                 "are finite and >= 0 siemens (map signed weights to two columns or an offset "
                                 "column)", i, j, v, isfinite(v) ? "negative" : "not finite");
            gt[last - ((size_t)j * rows + i)] = v;   /* G'[cols-1-j][rows-1-i] = G[i][j] */
        }
    return XB_OK;
}

static void reverse(double *e, size_t n) {
    for (size_t a = 0, b = n - 1; a < b; a++, b--) {
        double t = e[a];
        e[a] = e[b];
        e[b] = t;
    }
}

xb_status xb_solve_plan_effective_dir(const xb_solve_plan *p, const xb_circuit *c, xb_read_dir dir,
                                      const double *g, double *e, void *work, xb_solve_stats *st) {
    XB_ASSERT(p && c && g && e);
    if (dir == XB_READ_FORWARD) return xb_solve_plan_effective(p, c, g, e, work, st);
    if (dir != XB_READ_BACKWARD)
        return xb_errorf(XB_ERR_ARG, "xb_solve_plan_effective_dir: read direction %d is not one. HINT: use "
                         "XB_READ_FORWARD or XB_READ_BACKWARD", (int)dir);
    XB_ASSERT(work);
    int pr, pc;
    xb_solve_plan_size(p, &pr, &pc);
    const double t0 = xb_time_s();
    double *gt = (double *)work;
    void *w = (char *)work + gt_bytes(pr, pc);
    xb_status s = transpose_reverse(pr, pc, g, gt);
    if (!s) s = xb_solve_plan_effective(p, c, gt, e, w, st);
    if (s == XB_ERR_NUMERIC) {   /* its place is in the relabelled tile's coordinates: say so */
        char msg[400];
        snprintf(msg, sizeof msg, "%s", xb_last_error());
        return xb_errorf(s, "backward read of a %d x %d tile, solved as the reversed transposed %d x %d tile: %s",
                         pc, pr, pr, pc, msg);
    }
    if (s) return s;
    reverse(e, (size_t)pr * pc);
    if (st) st->time_s = xb_time_s() - t0;
    return XB_OK;
}

xb_status xb_xbar_effective_backward(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                                     const double *g, double *eb, xb_solve_stats *st) {
    xb_solve_plan *p;
    xb_status s = xb_solve_plan_init(cols, rows, method, &p);
    if (s) return s;
    const size_t bytes = xb_solve_plan_workspace_dir(p, XB_READ_BACKWARD);
    void *w = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!w) {
        xb_solve_plan_free(p);
        return xb_errorf(XB_ERR_NOMEM, "solver: out of memory for a %d x %d tile's backward workspace (%zu "
                         "bytes). HINT: use smaller tiles", rows, cols, bytes);
    }
    s = xb_solve_plan_effective_dir(p, c, XB_READ_BACKWARD, g, eb, w, st);
    free(w);
    xb_solve_plan_free(p);
    return s;
}

xb_status xb_xbar_currents_backward(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                                    const double *g, int batch, const double *v, double *i,
                                    double *eb_out, xb_solve_stats *st) {
    XB_ASSERT(batch >= 0 && (batch == 0 || (v && i)));
    if (rows < 1 || cols < 1)   /* before the V scan below indexes by cols */
        return xb_errorf(XB_ERR_SHAPE, "solver: tile %d x %d is not supported. HINT: rows and cols are >= 1",
                         rows, cols);
    for (int64_t k = 0; k < (int64_t)batch * cols; k++)
        if (!isfinite(v[k]))
            return xb_errorf(XB_ERR_ARG, "solver (backward read): V[%lld,%lld] = %g V is not finite. HINT: the "
                             "column voltages are finite numbers", (long long)(k / cols), (long long)(k % cols), v[k]);
    double *eb = eb_out ? eb_out : malloc((size_t)rows * cols * sizeof(double));
    if (!eb) return xb_errorf(XB_ERR_NOMEM, "solver: out of memory for a %d x %d effective matrix", cols, rows);
    xb_status s = xb_xbar_effective_backward(method, c, rows, cols, g, eb, st);
    if (!s) xb_xbar_apply(cols, rows, eb, batch, v, i);   /* i (batch, rows) = v (batch, cols) eb (cols, rows) */
    if (!eb_out) free(eb);
    return s;
}
