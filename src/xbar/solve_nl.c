/*
 * solve_nl.c -- the exact solve of a crossbar tile with non-linear (1T-1R) cells: damped Newton's method on
 * the nodal equations of the row and column nodes (cell model and circuit: include/xb_cell.h; method and
 * measurements: docs/solver.md, "Non-linear cells").
 *
 * Unknowns.  The row node (i,j) and column node (i,j) of every cell, as in the linear solver; with ideal
 * wires (r_wire = 0) each row and each column is one node.  An ideal driver (r_driver = 0) fixes the row's
 * driven node at its input, a virtual ground (r_sense = 0) fixes the column's bottom node at 0 V; fixed
 * nodes are not unknowns.  Each cell's internal drain node is eliminated exactly inside the cell model
 * (xb_cell_1t1r_current), so a cell is a two-terminal element I(V_r, V_c) whose Jacobian block
 * [dI/dV_r, dI/dV_c; -dI/dV_r, -dI/dV_c] is not symmetric (the gate is fixed, so the current depends on
 * V_c, not only on V_r - V_c).  The Jacobian is column diagonally dominant with a positive diagonal.
 *
 * Newton.  Start from the linear circuit with each transistor replaced by its on-conductance at vds = 0,
 * beta (v_gate - v_t), in series with G.  Each iteration solves J dx = -F with KLU (sparse LU for circuit
 * matrices: the pattern is analysed once per call, each iteration refactors the numbers), caps the update at
 * 0.2 V and halves it until the residual, scaled to volts by the node conductances, decreases -- the
 * damping of xbar_spice.py's cross-check.  Converged when the largest update is at most
 * tol_rel * max(max |V|, 1e-3) V, or when the error it leaves, estimated from the contraction rho < 1/2 of two
 * successive undamped updates as rho / (1 - rho) |dx|, is (that last update is applied); an error after max_iter
 * iterations.
 * Inputs are independent: they run in parallel (OpenMP), each thread with its own KLU numeric objects.
 */
#include "xb_cell.h"

#include <klu.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct nl_sys {
    int n, m, lump, N, nnz;
    int nr, nc;            /* raw row nodes, raw column nodes (n*m each, or n and m with ideal wires) */
    int *rid, *cid;        /* raw node -> unknown, -1 when fixed */
    double gw, gd, gs;     /* siemens; INFINITY marks an ideal element (0 ohm) */
    int *Ap, *Ai;          /* CSC pattern of the Jacobian */
    double *Alin;          /* the linear elements' part of it */
    int *pos;              /* per cell: positions of (R,R), (R,C), (C,R), (C,C) in Ax, -1 if absent */
    double *wt;            /* residual weights: 1 / diagonal of the initial-guess matrix */
    klu_symbolic *sym;
    klu_common cc;
} nl_sys;

static int rnode(const nl_sys *s, int i, int j) { return s->lump ? i : i * s->m + j; }
static int cnode(const nl_sys *s, int i, int j) { return s->lump ? j : i * s->m + j; }

typedef struct trip { int r, c; } trip;

static int trip_cmp(const void *a, const void *b) {
    const trip *x = a, *y = b;
    if (x->c != y->c) return x->c < y->c ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

static int find_pos(const nl_sys *s, int r, int c) {
    if (r < 0 || c < 0) return -1;
    int lo = s->Ap[c], hi = s->Ap[c + 1] - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (s->Ai[mid] == r) return mid;
        if (s->Ai[mid] < r) lo = mid + 1; else hi = mid - 1;
    }
    XB_ASSERT(0 && "pattern entry missing");
    return -1;
}

/* A conductance g between unknowns a and b (either may be -1: fixed) into the linear part. */
static void stamp(nl_sys *s, int a, int b, double g) {
    if (a >= 0) s->Alin[find_pos(s, a, a)] += g;
    if (b >= 0) s->Alin[find_pos(s, b, b)] += g;
    if (a >= 0 && b >= 0) { s->Alin[find_pos(s, a, b)] -= g; s->Alin[find_pos(s, b, a)] -= g; }
}

/* Nested dissection of the grid of cells [i0,i1) x [j0,j1): appends the unknowns of the region's cells to
 * perm, eliminations first and separators last.  A cut across the cell column jc has the row nodes (i,jc) as
 * its separator (they carry the row wires across), which leaves column jc's column nodes as a third, chain
 * part; a cut across the cell row ic has the column nodes (ic,j), which leaves row ic's row nodes. */
static void nd_order(const nl_sys *s, int i0, int i1, int j0, int j1, int *perm, int *np_) {
    const int h = i1 - i0, w = j1 - j0;
    if (h <= 0 || w <= 0) return;
    if (h * w <= 16) {
        for (int i = i0; i < i1; i++)
            for (int j = j0; j < j1; j++) {
                const int r = s->rid[rnode(s, i, j)], c = s->cid[cnode(s, i, j)];
                if (r >= 0) perm[(*np_)++] = r;
                if (c >= 0) perm[(*np_)++] = c;
            }
        return;
    }
    if (w >= h) {
        const int jc = j0 + w / 2;
        nd_order(s, i0, i1, j0, jc, perm, np_);
        nd_order(s, i0, i1, jc + 1, j1, perm, np_);
        for (int i = i0; i < i1; i++) { const int c = s->cid[cnode(s, i, jc)]; if (c >= 0) perm[(*np_)++] = c; }
        for (int i = i0; i < i1; i++) { const int r = s->rid[rnode(s, i, jc)]; if (r >= 0) perm[(*np_)++] = r; }
    } else {
        const int ic = i0 + h / 2;
        nd_order(s, i0, ic, j0, j1, perm, np_);
        nd_order(s, ic + 1, i1, j0, j1, perm, np_);
        for (int j = j0; j < j1; j++) { const int r = s->rid[rnode(s, ic, j)]; if (r >= 0) perm[(*np_)++] = r; }
        for (int j = j0; j < j1; j++) { const int c = s->cid[cnode(s, ic, j)]; if (c >= 0) perm[(*np_)++] = c; }
    }
}

static void sys_free(nl_sys *s) {
    if (s->sym) klu_free_symbolic(&s->sym, &s->cc);
    free(s->rid); free(s->cid); free(s->Ap); free(s->Ai); free(s->Alin); free(s->pos); free(s->wt);
}

static xb_status sys_init(nl_sys *s, const xb_circuit *c, const xb_cell *cell, int n, int m, const double *g) {
    memset(s, 0, sizeof *s);
    s->n = n; s->m = m;
    s->lump = !(c->r_wire_ohm > 0);
    s->gw = s->lump ? INFINITY : 1 / c->r_wire_ohm;
    s->gd = c->r_driver_ohm > 0 ? 1 / c->r_driver_ohm : INFINITY;
    s->gs = c->r_sense_ohm > 0 ? 1 / c->r_sense_ohm : INFINITY;
    s->nr = s->lump ? n : n * m;
    s->nc = s->lump ? m : n * m;
    s->rid = malloc((size_t)s->nr * sizeof(int));
    s->cid = malloc((size_t)s->nc * sizeof(int));
    s->pos = malloc(4 * (size_t)n * m * sizeof(int));
    if (!s->rid || !s->cid || !s->pos) return xb_errorf(XB_ERR_NOMEM, "solver (1t1r): out of memory");
    for (int k = 0; k < s->nr; k++) s->rid[k] = 0;
    for (int k = 0; k < s->nc; k++) s->cid[k] = 0;
    if (isinf(s->gd)) for (int i = 0; i < n; i++) s->rid[rnode(s, i, 0)] = -1;
    if (isinf(s->gs)) for (int j = 0; j < m; j++) s->cid[cnode(s, n - 1, j)] = -1;
    int N = 0;
    for (int k = 0; k < s->nr; k++) if (s->rid[k] == 0) s->rid[k] = N++;
    for (int k = 0; k < s->nc; k++) if (s->cid[k] == 0) s->cid[k] = N++;
    s->N = N;
    if (N == 0) return XB_OK;
    /* the pattern: every unknown's diagonal, both directions of every wire and cell between unknowns */
    size_t cap = (size_t)N + 4 * (size_t)n * m + 4 * (size_t)n * m, nt = 0;
    trip *t = malloc(cap * sizeof *t);
    if (!t) return xb_errorf(XB_ERR_NOMEM, "solver (1t1r): out of memory");
#define PAIR(a, b) do { if ((a) >= 0 && (b) >= 0) { t[nt++] = (trip){a, b}; t[nt++] = (trip){b, a}; } } while (0)
    for (int k = 0; k < N; k++) t[nt++] = (trip){k, k};
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            PAIR(s->rid[rnode(s, i, j)], s->cid[cnode(s, i, j)]);
            if (!s->lump && j > 0) PAIR(s->rid[rnode(s, i, j - 1)], s->rid[rnode(s, i, j)]);
            if (!s->lump && i > 0) PAIR(s->cid[cnode(s, i - 1, j)], s->cid[cnode(s, i, j)]);
        }
#undef PAIR
    qsort(t, nt, sizeof *t, trip_cmp);
    size_t u = 0;
    for (size_t k = 0; k < nt; k++)
        if (u == 0 || t[k].r != t[u - 1].r || t[k].c != t[u - 1].c) t[u++] = t[k];
    s->nnz = (int)u;
    s->Ap = calloc((size_t)N + 1, sizeof(int));
    s->Ai = malloc(u * sizeof(int));
    s->Alin = calloc(u, sizeof(double));
    s->wt = malloc((size_t)N * sizeof(double));
    if (!s->Ap || !s->Ai || !s->Alin || !s->wt) { free(t); return xb_errorf(XB_ERR_NOMEM, "solver (1t1r): out of memory"); }
    for (size_t k = 0; k < u; k++) { s->Ai[k] = t[k].r; s->Ap[t[k].c + 1]++; }
    for (int k = 0; k < N; k++) s->Ap[k + 1] += s->Ap[k];
    free(t);
    /* the linear elements */
    for (int i = 0; i < n; i++) {
        if (!isinf(s->gd)) stamp(s, s->rid[rnode(s, i, 0)], -1, s->gd);
        for (int j = 0; !s->lump && j < m; j++) {
            if (j > 0) stamp(s, s->rid[rnode(s, i, j - 1)], s->rid[rnode(s, i, j)], s->gw);
            if (i > 0) stamp(s, s->cid[cnode(s, i - 1, j)], s->cid[cnode(s, i, j)], s->gw);
        }
    }
    if (!isinf(s->gs)) for (int j = 0; j < m; j++) stamp(s, s->cid[cnode(s, n - 1, j)], -1, s->gs);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            const int r = s->rid[rnode(s, i, j)], cn = s->cid[cnode(s, i, j)];
            int *p = s->pos + 4 * ((size_t)i * m + j);
            p[0] = find_pos(s, r, r); p[1] = find_pos(s, r, cn); p[2] = find_pos(s, cn, r); p[3] = find_pos(s, cn, cn);
        }
    /* residual weights from the initial-guess matrix's diagonal */
    double g0 = xb_cell_g0(cell);
    for (int k = 0; k < N; k++) s->wt[k] = s->Alin[find_pos(s, k, k)];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            const double gc = g[(size_t)i * m + j] * g0 / (g[(size_t)i * m + j] + g0);
            const int r = s->rid[rnode(s, i, j)], cn = s->cid[cnode(s, i, j)];
            if (r >= 0) s->wt[r] += gc;
            if (cn >= 0) s->wt[cn] += gc;
        }
    for (int k = 0; k < N; k++) s->wt[k] = s->wt[k] > 0 ? 1 / s->wt[k] : 1;
    klu_defaults(&s->cc);
    s->cc.btf = 0;   /* the nodal matrix is irreducible */
    if (s->lump) {
        s->sym = klu_analyze(N, s->Ap, s->Ai, &s->cc);   /* (rows + cols) nodes, a dense bipartite graph */
    } else {
        int *perm = malloc((size_t)N * sizeof(int)), np_ = 0;
        if (!perm) return xb_errorf(XB_ERR_NOMEM, "solver (1t1r): out of memory");
        nd_order(s, 0, n, 0, m, perm, &np_);
        XB_ASSERT(np_ == N);
        s->sym = klu_analyze_given(N, s->Ap, s->Ai, perm, perm, &s->cc);
        free(perm);
    }
    if (!s->sym) return xb_errorf(XB_ERR_NOMEM, "solver (1t1r): KLU could not analyse the %d-node system (status %d)",
                                  N, s->cc.status);
    return XB_OK;
}

/* Per-thread state. */
typedef struct nl_work {
    double *base;          /* the one allocation below (x/xn and F/Fn swap during the line search) */
    double *x, *dx, *F, *Fn, *xn, *Ax, *vrow, *vcol, *vd, *ci, *ca, *cs;
    int *reg;
    int64_t nfact;         /* Jacobian factorizations */
    int use_tmp;           /* this input pivoted afresh into tmp */
    klu_numeric *num, *tmp;
    klu_common cc;
} nl_work;

static xb_status work_init(nl_work *w, const nl_sys *s) {
    memset(w, 0, sizeof *w);
    const size_t N = (size_t)(s->N ? s->N : 1), nm = (size_t)s->n * s->m;
    double *b = malloc((5 * N + (size_t)(s->nnz ? s->nnz : 1) + (size_t)s->nr + (size_t)s->nc + 4 * nm) * sizeof(double));
    w->reg = malloc(nm * sizeof(int));
    if (!b || !w->reg) { free(b); free(w->reg); return xb_errorf(XB_ERR_NOMEM, "solver (1t1r): out of memory"); }
    w->base = w->x = b; w->dx = w->x + N; w->F = w->dx + N; w->Fn = w->F + N; w->xn = w->Fn + N; w->Ax = w->xn + N;
    w->vrow = w->Ax + (s->nnz ? s->nnz : 1); w->vcol = w->vrow + s->nr; w->vd = w->vcol + s->nc;
    w->ci = w->vd + nm; w->ca = w->ci + nm; w->cs = w->ca + nm;
    w->cc = s->cc;
    return XB_OK;
}

static void work_free(nl_work *w) {
    if (w->num) klu_free_numeric(&w->num, &w->cc);
    if (w->tmp) klu_free_numeric(&w->tmp, &w->cc);
    free(w->base);
    free(w->reg);
}

/* Node voltages from x and the fixed ends; then every cell (current, derivatives) and the residual F. */
static void eval(const nl_sys *s, const xb_cell *cell, const double *g, const double *v, const double *x,
                 nl_work *w, double *F) {
    const int n = s->n, m = s->m;
    for (int k = 0; k < s->nr; k++) w->vrow[k] = s->rid[k] >= 0 ? x[s->rid[k]] : v[s->lump ? k : k / m];
    for (int k = 0; k < s->nc; k++) w->vcol[k] = s->cid[k] >= 0 ? x[s->cid[k]] : 0;
    for (int k = 0; k < s->N; k++) F[k] = 0;
    for (int i = 0; i < n; i++) {
        const int a = s->rid[rnode(s, i, 0)];
        if (a >= 0 && !isinf(s->gd)) F[a] += s->gd * (w->vrow[rnode(s, i, 0)] - v[i]);
        for (int j = 0; !s->lump && j < m; j++) {
            if (j > 0) {
                const int p = rnode(s, i, j - 1), q = rnode(s, i, j);
                const double cur = s->gw * (w->vrow[p] - w->vrow[q]);
                if (s->rid[p] >= 0) F[s->rid[p]] += cur;
                if (s->rid[q] >= 0) F[s->rid[q]] -= cur;
            }
            if (i > 0) {
                const int p = cnode(s, i - 1, j), q = cnode(s, i, j);
                const double cur = s->gw * (w->vcol[p] - w->vcol[q]);
                if (s->cid[p] >= 0) F[s->cid[p]] += cur;
                if (s->cid[q] >= 0) F[s->cid[q]] -= cur;
            }
        }
    }
    if (!isinf(s->gs))
        for (int j = 0; j < m; j++) F[s->cid[cnode(s, n - 1, j)]] += s->gs * w->vcol[cnode(s, n - 1, j)];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            const size_t k = (size_t)i * m + j;
            const int pr = rnode(s, i, j), pc = cnode(s, i, j);
            xb_cell_1t1r_current(cell, g[k], w->vrow[pr], w->vcol[pc], &w->vd[k], &w->ci[k], &w->ca[k], &w->cs[k],
                                 &w->vd[k], &w->reg[k]);
            if (s->rid[pr] >= 0) F[s->rid[pr]] += w->ci[k];
            if (s->cid[pc] >= 0) F[s->cid[pc]] -= w->ci[k];
        }
}

static double wnorm(const nl_sys *s, const double *F) {
    double a = 0;
    for (int k = 0; k < s->N; k++) { const double r = s->wt[k] * F[k]; a += r * r; }
    return sqrt(a);
}

/* The output currents into ground, from the node voltages and cell currents of the last eval. */
static void outputs(const nl_sys *s, const nl_work *w, double *out) {
    const int n = s->n, m = s->m;
    if (!isinf(s->gs)) {
        for (int j = 0; j < m; j++) out[j] = s->gs * w->vcol[cnode(s, n - 1, j)];
        return;
    }
    for (int j = 0; j < m; j++) {   /* virtual ground: what flows into the fixed bottom node */
        double a = 0;
        if (s->lump) for (int i = 0; i < n; i++) a += w->ci[(size_t)i * m + j];
        else {
            a = w->ci[(size_t)(n - 1) * m + j];
            if (n > 1) a += s->gw * w->vcol[cnode(s, n - 2, j)];
        }
        out[j] = a;
    }
}

/* The linear initial guess: each cell as G in series with beta (v_gate - v_t). */
static xb_status initial_guess(const nl_sys *s, const xb_cell *cell, const double *g, const double *v, nl_work *w,
                               klu_numeric **num0) {
    const int n = s->n, m = s->m;
    const double g0 = xb_cell_g0(cell);
    if (!*num0) {
        memcpy(w->Ax, s->Alin, (size_t)s->nnz * sizeof(double));
        for (size_t k = 0; k < (size_t)n * m; k++) {
            const double gc = g[k] * g0 / (g[k] + g0);
            const int *p = s->pos + 4 * k;
            if (p[0] >= 0) w->Ax[p[0]] += gc;
            if (p[1] >= 0) w->Ax[p[1]] -= gc;
            if (p[2] >= 0) w->Ax[p[2]] -= gc;
            if (p[3] >= 0) w->Ax[p[3]] += gc;
        }
        *num0 = klu_factor(s->Ap, s->Ai, w->Ax, s->sym, &w->cc);
        if (*num0) w->num = klu_factor(s->Ap, s->Ai, w->Ax, s->sym, &w->cc);   /* the Jacobians' pivot order */
        if (!*num0 || !w->num) return xb_errorf(XB_ERR_NUMERIC, "solver (1t1r): the initial linear circuit is singular (KLU "
                                     "status %d). HINT: check for a row or column cut off from every source", w->cc.status);
    }
    double *b = w->x;   /* right-hand side: the drivers, and fixed row nodes through wires and cells */
    for (int k = 0; k < s->N; k++) b[k] = 0;
    for (int i = 0; i < n; i++) {
        if (!isinf(s->gd)) { b[s->rid[rnode(s, i, 0)]] += s->gd * v[i]; continue; }
        if (s->lump) {   /* an ideal driver on a one-node row: every cell of it feeds its column */
            for (int j = 0; j < m; j++) {
                const int cn = s->cid[cnode(s, i, j)];
                if (cn >= 0) b[cn] += g[(size_t)i * m + j] * g0 / (g[(size_t)i * m + j] + g0) * v[i];
            }
            continue;
        }
        const int cn = s->cid[cnode(s, i, 0)];   /* the fixed node (i,0): its cell and its wire to (i,1) */
        if (cn >= 0) b[cn] += g[(size_t)i * m] * g0 / (g[(size_t)i * m] + g0) * v[i];
        if (m > 1) b[s->rid[rnode(s, i, 1)]] += s->gw * v[i];
    }
    if (!klu_solve(s->sym, *num0, s->N, 1, b, &w->cc))
        return xb_errorf(XB_ERR_NUMERIC, "solver (1t1r): KLU solve failed (status %d)", w->cc.status);
    return XB_OK;
}

/* The Jacobian at the last eval, factorized.  The thread's w->num holds the pivot order of the initial-guess
 * matrix (the same for every thread and input, so the answer does not depend on how inputs are spread over
 * threads); it is refactorized with the new numbers.  Should that be badly conditioned, this input pivots
 * afresh into w->tmp and keeps that order for its remaining iterations. */
static xb_status factor_jacobian(const nl_sys *s, nl_work *w, int b, int it) {
    memcpy(w->Ax, s->Alin, (size_t)s->nnz * sizeof(double));
    for (size_t k = 0; k < (size_t)s->n * s->m; k++) {
        const int *p = s->pos + 4 * k;
        if (p[0] >= 0) w->Ax[p[0]] += w->ca[k];
        if (p[1] >= 0) w->Ax[p[1]] += w->cs[k];
        if (p[2] >= 0) w->Ax[p[2]] -= w->ca[k];
        if (p[3] >= 0) w->Ax[p[3]] -= w->cs[k];
    }
    w->nfact++;
    klu_numeric *num = w->use_tmp ? w->tmp : w->num;
    if (klu_refactor(s->Ap, s->Ai, w->Ax, s->sym, num, &w->cc) && klu_rcond(s->sym, num, &w->cc) &&
        w->cc.rcond > 1e-14)
        return XB_OK;
    if (w->tmp) klu_free_numeric(&w->tmp, &w->cc);
    w->use_tmp = 0;
    w->tmp = klu_factor(s->Ap, s->Ai, w->Ax, s->sym, &w->cc);
    if (!w->tmp)
        return xb_errorf(XB_ERR_NUMERIC, "solver (1t1r): the Jacobian is singular at input %d, Newton iteration %d "
                         "(KLU status %d). HINT: a node lost every path to a source; check the cell parameters", b,
                         it, w->cc.status);
    w->use_tmp = 1;
    return XB_OK;
}

/* One input: Newton from the linear guess.  Returns its iterations in *iters. */
static xb_status newton(const nl_sys *s, const xb_cell *cell, const xb_cell_opts *o, const double *g, const double *v,
                        int b, nl_work *w, klu_numeric **num0, double *out, int *iters) {
    const int n = s->n, m = s->m;
    double vmax = 0;
    for (int i = 0; i < n; i++) if (fabs(v[i]) > vmax) vmax = fabs(v[i]);
    const double tol = o->tol_rel * (vmax > 1e-3 ? vmax : 1e-3);
    for (size_t k = 0; k < (size_t)n * m; k++) w->vd[k] = NAN;   /* no warm start across inputs */
    *iters = 0;
    w->use_tmp = 0;
    if (s->N > 0) {
        xb_status st = initial_guess(s, cell, g, v, w, num0);
        if (st) return st;
        eval(s, cell, g, v, w->x, w, w->F);
        const double chord = o->chord_rel * (vmax > 1e-3 ? vmax : 1e-3);
        double step = INFINITY, prev = INFINITY;   /* this update's and the last one's largest entry (V) */
        int it, have = 0;                          /* have: w->num holds a Jacobian of this input */
        int prev_full = 0;                         /* the last update was taken whole (not damped) */
        for (it = 1; it <= o->max_iter; it++) {
            int refac = !have || !(prev <= chord);
        again:
            if (refac) {
                xb_status fs = factor_jacobian(s, w, b, it);
                if (fs) return fs;
                have = 1;
            }
            for (int k = 0; k < s->N; k++) w->dx[k] = -w->F[k];
            if (!klu_solve(s->sym, w->use_tmp ? w->tmp : w->num, s->N, 1, w->dx, &w->cc))
                return xb_errorf(XB_ERR_NUMERIC, "solver (1t1r): KLU solve failed (status %d)", w->cc.status);
            step = 0;
            for (int k = 0; k < s->N; k++) if (fabs(w->dx[k]) > step) step = fabs(w->dx[k]);
            if (!isfinite(step))
                return xb_errorf(XB_ERR_NUMERIC, "solver (1t1r): Newton update is not finite at input %d, iteration "
                                 "%d. HINT: check for extreme conductance or resistance ratios", b, it);
            if (!refac && !(step <= 0.25 * prev)) { refac = 1; goto again; }   /* the chord step did not contract */
            /* converged when this update is below the tolerance, or when the error left after it, estimated from
             * the contraction of the last two full updates (rho / (1 - rho) |dx|), is */
            const double rho = prev_full ? step / prev : 1;
            if (step <= tol || (rho < 0.5 && rho / (1 - rho) * step <= tol)) {
                for (int k = 0; k < s->N; k++) w->x[k] += w->dx[k];
                break;
            }
            double alpha = step > 0.2 ? 0.2 / step : 1, f0 = wnorm(s, w->F);
            prev = step;
            prev_full = 0;
            for (;;) {
                for (int k = 0; k < s->N; k++) w->xn[k] = w->x[k] + alpha * w->dx[k];
                eval(s, cell, g, v, w->xn, w, w->Fn);
                if (wnorm(s, w->Fn) < f0 || alpha < 1e-6) break;
                alpha *= 0.5;
            }
            prev_full = alpha == 1;
            double *t = w->x; w->x = w->xn; w->xn = t;
            t = w->F; w->F = w->Fn; w->Fn = t;
        }
        if (it > o->max_iter)
            return xb_errorf(XB_ERR_NUMERIC, "solver (1t1r): Newton did not converge in %d iterations at input %d "
                             "(last update %.3g V, tolerance %.3g V). HINT: raise the iteration cap (--newton-iters) "
                             "or loosen the tolerance (--newton-tol). A resistance many decades below the cells' (say 1e-9 ohm "
                             "next to 1e5-ohm cells) leaves round-off above the tolerance: give 0 for an ideal element",
                             o->max_iter, b, step, tol);
        *iters = it;
        if (!isinf(s->gs)) {
            /* the outputs are the sense nodes' voltages, so no last eval of the cells: their regimes (statistics
             * only) are those of the previous iterate, one update of at most the tolerance away, where a cell that
             * close to a regime boundary would be counted on its other side */
            for (int j = 0; j < m; j++) out[j] = s->gs * w->x[s->cid[cnode(s, n - 1, j)]];
            return XB_OK;
        }
    }
    eval(s, cell, g, v, w->x, w, w->F);
    outputs(s, w, out);
    return XB_OK;
}

xb_status xb_xbar_currents_cell(const xb_circuit *c, const xb_cell *cell, int rows, int cols, const double *g,
                                int batch, const double *v, double *i, const xb_cell_opts *opts, xb_cell_stats *st) {
    XB_ASSERT(c && cell && g && batch >= 0 && (batch == 0 || (v && i)));
    const double t0 = xb_time_s();
    xb_status s;
    if ((s = xb_cell_validate(cell)) || (s = xb_circuit_validate(c))) return s;
    if (st) memset(st, 0, sizeof *st);
    if (cell->type == XB_CELL_RESISTOR) {
        s = xb_xbar_currents(XB_SOLVE_EXACT, c, rows, cols, g, batch, v, i, NULL, NULL);
        if (st) { st->time_s = xb_time_s() - t0; st->unknowns = 0; }
        return s;
    }
    if (rows < 1 || cols < 1 || (int64_t)rows * cols > (1 << 24))
        return xb_errorf(XB_ERR_SHAPE, "solver (1t1r): tile %d x %d is not supported. HINT: rows and cols are >= 1 "
                         "and rows*cols <= 16M (split big matrices into tiles)", rows, cols);
    for (int64_t k = 0; k < (int64_t)rows * cols; k++)
        if (!isfinite(g[k]) || g[k] < 0)
            return xb_errorf(XB_ERR_ARG, "solver (1t1r): G[%lld,%lld] = %g S is %s. HINT: conductances are finite and "
                             ">= 0 siemens", (long long)(k / cols), (long long)(k % cols), g[k],
                             isfinite(g[k]) ? "negative" : "not finite");
    for (int64_t k = 0; k < (int64_t)batch * rows; k++)
        if (!isfinite(v[k]))
            return xb_errorf(XB_ERR_ARG, "solver (1t1r): V[%lld,%lld] = %g V is not finite. HINT: input voltages are "
                             "finite numbers", (long long)(k / rows), (long long)(k % rows), v[k]);
    xb_cell_opts o = opts ? *opts : (xb_cell_opts){0};
    if (o.max_iter <= 0) o.max_iter = 100;
    if (!(o.tol_rel > 0)) o.tol_rel = 1e-12;
    if (o.chord_rel == 0) o.chord_rel = 0.1;
    else if (o.chord_rel < 0) o.chord_rel = 0;
    nl_sys sys;
    if ((s = sys_init(&sys, c, cell, rows, cols, g))) { sys_free(&sys); return s; }
    int bad = -1, iter_max = 0;
    double iter_sum = 0, fact_sum = 0;
    xb_status bad_st = XB_OK;
    char msg[512] = "";
    int64_t reg[XB_MOS_REGIMES] = {0};
#ifdef _OPENMP
#pragma omp parallel if (batch > 1 && omp_get_max_threads() > 1)
#endif
    {
        nl_work w;
        klu_numeric *num0 = NULL;
        int64_t r6[XB_MOS_REGIMES] = {0};
        int imax = 0;
        double isum = 0;
        xb_status ws = work_init(&w, &sys);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int b = 0; b < batch; b++) {
            if (ws || bad >= 0) continue;
            int it = 0;
            xb_status ts = newton(&sys, cell, &o, g, v + (size_t)b * rows, b, &w, &num0, i + (size_t)b * cols, &it);
            if (ts) {
#ifdef _OPENMP
#pragma omp critical(xb_solve_nl)
#endif
                if (bad < 0 || b < bad) { bad = b; bad_st = ts; snprintf(msg, sizeof msg, "%s", xb_last_error()); }
                continue;
            }
            if (it > imax) imax = it;
            isum += it;
            for (size_t k = 0; k < (size_t)rows * cols; k++) r6[w.reg[k]]++;
        }
        if (ws) {
#ifdef _OPENMP
#pragma omp critical(xb_solve_nl)
#endif
            if (bad < 0) { bad = 0; bad_st = ws; snprintf(msg, sizeof msg, "%s", xb_last_error()); }
        } else {
#ifdef _OPENMP
#pragma omp critical(xb_solve_nl)
#endif
            {
                if (imax > iter_max) iter_max = imax;
                iter_sum += isum;
                fact_sum += (double)w.nfact;
                for (int k = 0; k < XB_MOS_REGIMES; k++) reg[k] += r6[k];
            }
        }
        if (num0) klu_free_numeric(&num0, &w.cc);
        work_free(&w);
    }
    const int N = sys.N;
    sys_free(&sys);
    if (bad >= 0) return xb_errorf(bad_st, "%s", msg);
    if (st) {
        st->time_s = xb_time_s() - t0;
        st->unknowns = N;
        st->iter_max = iter_max;
        st->iter_mean = batch ? iter_sum / batch : 0;
        st->fact_mean = batch ? fact_sum / batch : 0;
        memcpy(st->regimes, reg, sizeof reg);
    }
    return XB_OK;
}
