/*
 * solve.c -- the exact crossbar circuit solver: the effective matrix E (I = V E) of a tile with wire,
 * driver and sense resistance (circuit and equations: include/xb_solve.h, docs/solver.md).
 *
 * Method (XB_SOLVE_EXACT).  Take the tile's network without the driver and sense resistors: it has no
 * path to ground, so its nodal matrix is a Laplacian.  Kron-reduce it (Schur complement) onto its
 * n + m "ports" -- row nodes (i,0) and column nodes (n-1,j) -- by geometric nested dissection:
 *   - the grid of cells is cut recursively in half (across its longer side) down to leaves of at most
 *     SV_LEAF x SV_LEAF cells;
 *   - a domain owns its cells, the row wire segment left of each cell and the column segment above
 *     each, so neighbours share the nodes along their common edge (a vertex separator); its ports
 *     are those shared nodes plus the global ports, and every other node is eliminated as soon as it
 *     stops being a port;
 *   - a leaf assembles its cells and wires into a dense front [eliminated | ports]; a merge adds its
 *     two children's port matrices (summed on the shared nodes).  Eliminating the first q front nodes
 *     leaves the parent's port matrix (a Laplacian again).
 * Small fronts are eliminated by a scalar loop in the GTH style (each pivot is the sum of the node's
 * remaining conductances, never a difference, so no digits are lost to cancellation even with tiny
 * wire resistances); large fronts by LAPACK dpotrf + dtrsm + dsyrk with the diagonal re-derived from
 * the row sums first.  Off-diagonal updates only ever add same-signed terms (M-matrix algebra).  The
 * n + m port system with the driver and sense conductances is then solved densely (ports()), which
 * is also where r_driver = 0 and r_sense = 0 become simple eliminations.  r_wire = 0 skips the
 * reduction: every row and column is one node and the port matrix is G itself.
 * Cost: O((rows + cols)^3) dense BLAS-3 work in the top fronts, O(rows * cols) elsewhere.  Subtrees
 * below the top levels run in parallel (OpenMP), each with its own part of the workspace.
 *
 * XB_SOLVE_CHOLMOD is the plain reference: CHOLMOD's supernodal Cholesky of the whole 2*rows*cols
 * nodal matrix (the matrix xbar_spice.py's nodal() builds), then min(rows, cols) solves.
 *
 * What this file is not: a general circuit simulator.  Non-linear cells, 1T1R and read noise are
 * corrections layered on top of E elsewhere.
 */
#include "xb_solve.h"

#include <cblas.h>
#include <cholmod.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* LAPACK (OpenBLAS provides it); trailing size_t: the Fortran hidden length of the character args */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda,
             double *b, const int *ldb, int *info, size_t uplo_len);

#ifndef SV_LEAF
#define SV_LEAF 4        /* leaves have at most SV_LEAF x SV_LEAF cells */
#endif
#ifndef SV_BLAS_MIN
#define SV_BLAS_MIN 64   /* fronts of at least this many nodes go to LAPACK/BLAS */
#endif
#define SV_BLAS_MT_MIN 768  /* ... and from this size on BLAS may use several threads */

/* ------------------------------------------------------------------------------------------------ */
/* Names, defaults, validation                                                                       */
/* ------------------------------------------------------------------------------------------------ */

static const char *const method_names[] = {"exact", "cholmod", "decoupled"};
_Static_assert(sizeof method_names / sizeof *method_names == XB_SOLVE_METHOD_COUNT, "method table");

const char *xb_solve_method_name(xb_solve_method m) {
    return (unsigned)m < XB_SOLVE_METHOD_COUNT ? method_names[m] : "?";
}

xb_status xb_solve_method_parse(const char *s, xb_solve_method *out) {
    for (int i = 0; i < XB_SOLVE_METHOD_COUNT; i++)
        if (s && !strcmp(s, method_names[i])) { *out = (xb_solve_method)i; return XB_OK; }
    return xb_errorf(XB_ERR_ARG, "solver: unknown method '%s'. HINT: use exact, cholmod or decoupled",
                     s ? s : "(null)");
}

xb_circuit xb_circuit_default(void) {
    return (xb_circuit){.r_wire_ohm = 2.5, .r_driver_ohm = 100.0, .r_sense_ohm = 100.0};
}

xb_status xb_circuit_validate(const xb_circuit *c) {
    XB_ASSERT(c);
    const double r[3] = {c->r_wire_ohm, c->r_driver_ohm, c->r_sense_ohm};
    const char *const name[3] = {"r_wire", "r_driver", "r_sense"};
    for (int k = 0; k < 3; k++)
        if (!isfinite(r[k]) || r[k] < 0)
            return xb_errorf(XB_ERR_ARG, "solver: %s = %g ohm is %s. HINT: resistances are finite and >= 0 "
                             "ohm (0 means ideal: no wire drop, ideal source, virtual ground)", name[k], r[k],
                             isfinite(r[k]) ? "negative" : "not finite");
    return XB_OK;
}

/* Checks G and returns its largest entry through gmax. */
static xb_status check_g(int rows, int cols, const double *g, double *gmax) {
    double mx = 0;
    for (int64_t k = 0; k < (int64_t)rows * cols; k++) {
        double v = g[k];
        if (!isfinite(v) || v < 0)
            return xb_errorf(XB_ERR_ARG, "solver: G[%lld,%lld] = %g S is %s. HINT: conductances are finite "
                             "and >= 0 siemens (map signed weights to two columns or an offset column)",
                             (long long)(k / cols), (long long)(k % cols), v,
                             isfinite(v) ? "negative" : "not finite");
        if (v > mx) mx = v;
    }
    *gmax = mx;
    return XB_OK;
}

static xb_status check_size(int rows, int cols) {
    if (rows < 1 || cols < 1 || (int64_t)rows * cols > (INT32_MAX / 4))
        return xb_errorf(XB_ERR_SHAPE, "solver: tile %d x %d is not supported. HINT: rows and cols are >= 1 "
                         "and rows*cols < 5e8 (split big matrices into tiles)", rows, cols);
    return XB_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* The plan: a post-ordered tree of domains with their fronts                                        */
/* ------------------------------------------------------------------------------------------------ */

typedef struct sv_node {
    int i0, i1, j0, j1;   /* cells [i0,i1) x [j0,j1) */
    int left, right;      /* children (indices into the post-ordered node array), -1 for a leaf */
    int q, p;             /* eliminated front nodes, ports; front size q + p */
    int blas;             /* eliminate with LAPACK/BLAS (else the scalar GTH loop) */
    int nst;              /* stamps: element conductances added to the front */
    size_t ports, map_l, map_r, st_a, st_b, st_g; /* offsets into the plan's int pool */
    int first;            /* first node of this subtree in post-order (the subtree is first..self) */
    int sub;              /* parallel subtree this node belongs to, -1: a top node (run serially) */
    size_t s_off;         /* workspace offset (doubles) of this node's port matrix (p x p, lower) */
} sv_node;

/* A parallel subtree: nodes first..last in post-order, with its own front, scratch and stack. */
typedef struct sv_sub { int first, last; size_t front, scr, stack; } sv_sub;

typedef struct sv_cholmod {
    cholmod_common cc;
    cholmod_sparse *a;    /* lower triangle pattern (values filled per call) */
    cholmod_factor *l;    /* symbolic factor */
} sv_cholmod;

struct xb_solve_plan {
    int rows, cols;
    xb_solve_method method;
    int nnode;
    sv_node *node;
    int *pool;
    size_t npool, cap_pool;
    int nsub;
    sv_sub *sub;
    size_t front, scr, ports, work_bytes;   /* offsets (doubles) of the top-level front, scratch, ports() */
    double flops;
    sv_cholmod *chol;
};

typedef struct builder {
    xb_solve_plan *p;
    int cap_node;
    int *pos;             /* global node id -> front index (scratch) */
} builder;

static size_t pool_add(xb_solve_plan *p, size_t n) {
    if (p->npool + n > p->cap_pool) {
        size_t cap = p->cap_pool ? p->cap_pool : 1024;
        while (cap < p->npool + n) cap *= 2;
        int *np_ = realloc(p->pool, cap * sizeof(int));
        XB_ASSERT(np_);
        p->pool = np_;
        p->cap_pool = cap;
    }
    size_t off = p->npool;
    p->npool += n;
    return off;
}

/* Domain [i0,i1) x [j0,j1) holds its cells, the row wire segment to the left of each of its cells and
 * the column wire segment above each (so it also touches row nodes (i,j0-1) and column nodes
 * (i0-1,j), which it shares with its left and upper neighbours).  Its ports are the nodes it shares
 * with other domains, plus the global ports (row nodes (i,0), column nodes (rows-1,j)). */
static int is_port(int rows, int cols, int id, int i0, int i1, int j0, int j1) {
    int nm = rows * cols;
    (void)i0; (void)i1;
    if (id < nm) {                       /* row node u(i,j) */
        int j = id % cols;
        return j == 0 || j == j0 - 1 || (j == j1 - 1 && j1 < cols);
    }
    int i = (id - nm) / cols;            /* column node v(i,j) */
    return i == i1 - 1 || i == i0 - 1;
}

static double front_flops(double q, double p) { return q * q * q / 3 + q * q * p + q * p * p; }

static int new_node(builder *b) {
    xb_solve_plan *p = b->p;
    if (p->nnode == b->cap_node) {
        b->cap_node = b->cap_node ? 2 * b->cap_node : 64;
        sv_node *nn = realloc(p->node, (size_t)b->cap_node * sizeof(sv_node));
        XB_ASSERT(nn);
        p->node = nn;
    }
    memset(&p->node[p->nnode], 0, sizeof(sv_node));
    return p->nnode++;
}

/* Sets the front order [elim..., ports...] from a candidate id list and fills b->pos. */
static void finish_front(builder *b, int t, const int *ids, int nids) {
    xb_solve_plan *p = b->p;
    sv_node *nd = &p->node[t];
    int q = 0, np_ = 0;
    for (int k = 0; k < nids; k++) {
        if (is_port(p->rows, p->cols, ids[k], nd->i0, nd->i1, nd->j0, nd->j1)) np_++;
        else q++;
    }
    nd->q = q;
    nd->p = np_;
    size_t off = pool_add(p, (size_t)np_);
    nd = &p->node[t];
    int *ports = p->pool + off;
    int e = 0, o = 0;
    for (int k = 0; k < nids; k++) {
        if (is_port(p->rows, p->cols, ids[k], nd->i0, nd->i1, nd->j0, nd->j1)) ports[o++] = ids[k];
        else b->pos[ids[k]] = e++;
    }
    /* ports in increasing id order (the candidate lists are unions of sorted lists) */
    for (int k = 1; k < np_; k++) {
        int v = ports[k], l = k - 1;
        while (l >= 0 && ports[l] > v) { ports[l + 1] = ports[l]; l--; }
        ports[l + 1] = v;
    }
    for (int k = 0; k < np_; k++) b->pos[ports[k]] = q + k;
    nd->ports = off;
    int f = q + np_;
    nd->blas = f >= SV_BLAS_MIN;
    p->flops += front_flops(q, np_);
}

static void add_stamp(xb_solve_plan *p, int t, int *cnt, int a, int b, int gidx) {
    sv_node *nd = &p->node[t];
    int *sa = p->pool + nd->st_a, *sb = p->pool + nd->st_b, *sg = p->pool + nd->st_g;
    if (a < b) { int x = a; a = b; b = x; }
    sa[*cnt] = a; sb[*cnt] = b; sg[*cnt] = gidx;
    (*cnt)++;
}

static int build(builder *b, int i0, int i1, int j0, int j1) {
    xb_solve_plan *p = b->p;
    const int cols = p->cols, nm = p->rows * cols;
    int h = i1 - i0, w = j1 - j0;
    int left = -1, right = -1;
    if (h > SV_LEAF || w > SV_LEAF) {
        if (w >= h) {
            int jc = j0 + w / 2;
            left = build(b, i0, i1, j0, jc);
            right = build(b, i0, i1, jc, j1);
        } else {
            int ic = i0 + h / 2;
            left = build(b, i0, ic, j0, j1);
            right = build(b, ic, i1, j0, j1);
        }
    }
    int t = new_node(b);
    sv_node *nd = &p->node[t];
    nd->i0 = i0; nd->i1 = i1; nd->j0 = j0; nd->j1 = j1;
    nd->left = left; nd->right = right;
    const int ja = j0 > 0 ? j0 - 1 : 0, ia = i0 > 0 ? i0 - 1 : 0;
    if (left < 0) {
        /* leaf: its nodes (in id order) and stamps for its cells and wire segments */
        int nids = h * (j1 - ja) + (i1 - ia) * w, k = 0;
        int *ids = malloc((size_t)nids * sizeof(int));
        XB_ASSERT(ids);
        for (int i = i0; i < i1; i++) for (int j = ja; j < j1; j++) ids[k++] = i * cols + j;
        for (int i = ia; i < i1; i++) for (int j = j0; j < j1; j++) ids[k++] = nm + i * cols + j;
        XB_ASSERT(k == nids);
        finish_front(b, t, ids, nids);
        free(ids);
        int nst = h * w + h * (j1 - (j0 > 1 ? j0 : 1)) + (i1 - (i0 > 1 ? i0 : 1)) * w;
        size_t o = pool_add(p, 3 * (size_t)nst);
        nd = &p->node[t];
        nd->nst = nst; nd->st_a = o; nd->st_b = o + nst; nd->st_g = o + 2 * (size_t)nst;
        int c = 0;
        for (int i = i0; i < i1; i++)
            for (int j = j0; j < j1; j++) {
                int u = i * cols + j, v = nm + u;
                add_stamp(p, t, &c, b->pos[u], b->pos[v], u);
                if (j > 0) add_stamp(p, t, &c, b->pos[u - 1], b->pos[u], -1);
                if (i > 0) add_stamp(p, t, &c, b->pos[v - cols], b->pos[v], -1);
            }
        XB_ASSERT(c == nst);
        nd->first = t;
    } else {
        /* merge: the union of the children's ports (they share the nodes along the cut) */
        const sv_node *L = &p->node[left], *R = &p->node[right];
        int nl = L->p, nr = R->p, nids = 0;
        const int *pl = p->pool + L->ports, *pr = p->pool + R->ports;
        int *ids = malloc((size_t)(nl + nr) * sizeof(int));
        XB_ASSERT(ids);
        for (int x = 0, y = 0; x < nl || y < nr;) {
            if (y == nr || (x < nl && pl[x] < pr[y])) ids[nids++] = pl[x++];
            else if (x == nl || pr[y] < pl[x]) ids[nids++] = pr[y++];
            else { ids[nids++] = pl[x++]; y++; }
        }
        finish_front(b, t, ids, nids);
        free(ids);
        size_t ml = pool_add(p, (size_t)nl), mr = pool_add(p, (size_t)nr);
        nd = &p->node[t];
        L = &p->node[left]; R = &p->node[right];
        nd->map_l = ml; nd->map_r = mr;
        for (int k = 0; k < nl; k++) p->pool[ml + k] = b->pos[p->pool[L->ports + k]];
        for (int k = 0; k < nr; k++) p->pool[mr + k] = b->pos[p->pool[R->ports + k]];
        nd->nst = 0;
        nd->first = L->first;
    }
    return t;
}

/* Workspace layout.  Subtrees below depth `depth` run in parallel, each with its own front, scratch
 * and stack (a post-order stack: a merge pops its two children and pushes itself where the left one
 * was); the few top nodes above them run serially, each with its own port matrix slot. */
static void mark_subtrees(xb_solve_plan *p, int t, int depth, int max_depth) {
    sv_node *nd = &p->node[t];
    if (depth == max_depth || nd->left < 0) {
        sv_sub *s = &p->sub[p->nsub];
        s->first = nd->first;
        s->last = t;
        for (int k = nd->first; k <= t; k++) p->node[k].sub = p->nsub;
        p->nsub++;
        return;
    }
    nd->sub = -1;
    mark_subtrees(p, nd->left, depth + 1, max_depth);
    mark_subtrees(p, nd->right, depth + 1, max_depth);
}

static void layout(xb_solve_plan *p) {
    const int64_t cells = (int64_t)p->rows * p->cols;
    int depth = 0;   /* 2^depth parallel subtrees of at least ~1000 cells each, at most 8 */
    while (depth < 3 && (cells >> (depth + 1)) >= 1024) depth++;
    p->sub = calloc((size_t)1 << depth, sizeof(sv_sub));
    XB_ASSERT(p->sub);
    p->nsub = 0;
    mark_subtrees(p, p->nnode - 1, 0, depth);
    size_t off = 0, top_front = 0, top_scr = 0;
    for (int k = 0; k < p->nsub; k++) {
        sv_sub *s = &p->sub[k];
        size_t fr = 0, sc = 0, top = 0, peak = 0;
        for (int t = s->first; t <= s->last; t++) {
            sv_node *nd = &p->node[t];
            size_t f = (size_t)(nd->q + nd->p);
            if (f * f > fr) fr = f * f;
            if (f > sc) sc = f;
            if (nd->left >= 0) top = p->node[nd->left].s_off;
            nd->s_off = top;
            top += (size_t)nd->p * nd->p;
            if (top > peak) peak = top;
        }
        s->front = off;
        s->scr = off + fr;
        s->stack = s->scr + sc;
        for (int t = s->first; t <= s->last; t++) p->node[t].s_off += s->stack;
        off = (s->stack + peak + 7) & ~(size_t)7;
    }
    for (int t = 0; t < p->nnode; t++) {
        sv_node *nd = &p->node[t];
        if (nd->sub >= 0) continue;
        size_t f = (size_t)(nd->q + nd->p);
        if (f * f > top_front) top_front = f * f;
        if (f > top_scr) top_scr = f;
        nd->s_off = off;
        off = (off + (size_t)nd->p * nd->p + 7) & ~(size_t)7;
    }
    p->front = off;
    p->scr = off + top_front;
    p->ports = (p->scr + top_scr + 7) & ~(size_t)7;
}

static xb_status cholmod_plan(xb_solve_plan *p);

/* doubles of ports() scratch, including the (n+m)^2 port matrix built for ideal wires */
static size_t ports_workspace(int n, int m) {
    const size_t np_ = (size_t)n + m;
    return (size_t)n * n + 2 * (size_t)n * m + (size_t)m * m + 2 * np_ + np_ * np_;
}


xb_status xb_solve_plan_init(int rows, int cols, xb_solve_method method, xb_solve_plan **out) {
    XB_ASSERT(out);
    *out = NULL;
    xb_status st = check_size(rows, cols);
    if (st) return st;
    if ((unsigned)method >= XB_SOLVE_METHOD_COUNT)
        return xb_errorf(XB_ERR_ARG, "xb_solve_plan_init: method %d is not a solver method. HINT: use "
                         "XB_SOLVE_EXACT, XB_SOLVE_CHOLMOD or XB_SOLVE_DECOUPLED", (int)method);
    xb_solve_plan *p = calloc(1, sizeof *p);
    XB_ASSERT(p);
    p->rows = rows; p->cols = cols; p->method = method;
    int n = rows, m = cols, np_ = n + m;
    if (method == XB_SOLVE_EXACT) {
        builder b = {.p = p};
        b.pos = malloc(2 * (size_t)n * m * sizeof(int));
        XB_ASSERT(b.pos);
        build(&b, 0, n, 0, m);
        free(b.pos);
        XB_ASSERT(p->node[p->nnode - 1].p == np_);
        layout(p);
        /* ports(): P (n x n), Z and Y (n x m), Q (m x m), x (n), row sums (n + m); r_wire = 0 builds
         * the port matrix itself (np x np) */
        size_t port_n = ports_workspace(n, m);
        p->flops += front_flops(n, m) + 2.0 * n * n * m + (double)m * m * m / 3 + 2.0 * m * m * n;
        p->work_bytes = (p->ports + port_n + 8) * sizeof(double);
    } else if (method == XB_SOLVE_CHOLMOD) {
        st = cholmod_plan(p);
        if (st) { xb_solve_plan_free(p); return st; }
    } else {
        p->work_bytes = xb_decoupled_workspace(rows, cols) * sizeof(double);
        p->flops = 150.0 * n * m + 3.0 * m * m * n + (double)m * m * m / 3 + 3.0 * n * n * m + (double)n * n * n / 3;
    }
    if (p->work_bytes > ((size_t)1 << 40)) {
        double gb = (double)p->work_bytes / 1e9;
        xb_solve_plan_free(p);
        return xb_errorf(XB_ERR_NOMEM, "xb_solve_plan_init: a %d x %d tile needs %.1f GB of workspace. "
                         "HINT: split the matrix into smaller tiles", rows, cols, gb);
    }
    *out = p;
    return XB_OK;
}

void xb_solve_plan_free(xb_solve_plan *p) {
    if (!p) return;
    if (p->chol) {
        cholmod_free_factor(&p->chol->l, &p->chol->cc);
        cholmod_free_sparse(&p->chol->a, &p->chol->cc);
        cholmod_finish(&p->chol->cc);
        free(p->chol);
    }
    free(p->node);
    free(p->sub);
    free(p->pool);
    free(p);
}

size_t xb_solve_plan_workspace(const xb_solve_plan *p) { XB_ASSERT(p); return p->work_bytes; }

void xb_solve_plan_size(const xb_solve_plan *p, int *rows, int *cols) {
    XB_ASSERT(p && rows && cols);
    *rows = p->rows;
    *cols = p->cols;
}

/* ------------------------------------------------------------------------------------------------ */
/* Numeric phase of the exact method                                                                 */
/* ------------------------------------------------------------------------------------------------ */

/* d[k] = -(sum of the off-diagonal entries of row k) of the symmetric f x f matrix stored in the lower
 * triangle of a (column-major, leading dimension lda). */
static void row_sums(const double *a, int f, int lda, double *d) {
    for (int k = 0; k < f; k++) d[k] = 0;
    for (int c = 0; c < f; c++) {
        const double *col = a + (size_t)c * lda;
        double s = 0;
        for (int r = c + 1; r < f; r++) { s -= col[r]; d[r] -= col[r]; }
        d[c] += s;
    }
}

/* Eliminates the first q of the f front nodes (Laplacian, off-diagonals in the lower triangle).
 * pivmin: smallest LAPACK pivot relative to its row's conductance sum (the GTH loop has no
 * cancellation to report). */
static xb_status eliminate(double *F, int f, int q, int blas, double *d, double *pivmin, int t) {
    if (q == 0) return XB_OK;
    if (!blas) {
        for (int k = 0; k < q; k++) {
            double *ck = F + (size_t)k * f;
            double p4[4] = {0, 0, 0, 0}, piv;   /* four partial sums: a vectorisable reduction */
            int r0 = k + 1;
            for (; r0 + 4 <= f; r0 += 4)
                for (int v = 0; v < 4; v++) p4[v] -= ck[r0 + v];
            for (; r0 < f; r0++) p4[0] -= ck[r0];
            piv = (p4[0] + p4[1]) + (p4[2] + p4[3]);
            if (!(piv > 0))
                return xb_errorf(XB_ERR_NUMERIC, "solver: node %d of front %d has no conductance left "
                                 "(floating node). HINT: this is a bug for valid input; please report the "
                                 "tile that triggered it", k, t);
            double inv = 1 / piv;
            for (int l = k + 1; l < f; l++) {
                double a = ck[l];
                if (a == 0) continue;
                a *= inv;
                double *cl = F + (size_t)l * f;
                for (int r = l + 1; r < f; r++) cl[r] -= a * ck[r];
            }
        }
        return XB_OK;
    }
    row_sums(F, f, f, d);
    for (int k = 0; k < f; k++) F[(size_t)k * f + k] = d[k];
    int info = 0;
    dpotrf_("L", &q, F, &f, &info, 1);
    if (info != 0)
        return xb_errorf(XB_ERR_NUMERIC, "solver: the front %d (%d nodes) is not positive definite (LAPACK "
                         "dpotrf info %d). HINT: the circuit is singular or too ill-conditioned in double "
                         "precision; check for extreme resistance ratios", t, q, info);
    for (int k = 0; k < q; k++) {
        double l = F[(size_t)k * f + k], r = l * l / d[k];
        if (r < *pivmin) *pivmin = r;
    }
    int p = f - q;
    if (p > 0) {
        cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, p, q, 1.0, F, f, F + q, f);
        cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, p, q, -1.0, F + q, f, 1.0, F + (size_t)q * f + q, f);
    }
    return XB_OK;
}

static xb_status dense_chol(double *a, int n, const char *what) {
    int info = 0;
    if (n == 0) return XB_OK;
    dpotrf_("L", &n, a, &n, &info, 1);
    if (info != 0)
        return xb_errorf(XB_ERR_NUMERIC, "solver: the %s port matrix is not positive definite (LAPACK dpotrf "
                         "info %d). HINT: the circuit is singular or too ill-conditioned in double precision; "
                         "check for extreme resistance ratios", what, info);
    return XB_OK;
}

/* The port system.  S (np x np, lower, off-diagonals only) is the Laplacian of the tile reduced onto
 * ports [row (i,0) for i < n, column (n-1,j) for j < m]; add the driver conductance gd to the source
 * and the sense conductance gs to ground (infinite: ideal) and solve for E (row-major n x m):
 *   [P B; B' Q0] [x_d; x_s] = [gd V; 0],  P = S_dd + gd, Q0 = S_ss + gs,  I = gs x_s = V E.
 * With Y = gd P^-1 B and Qh = Q0 - B' P^-1 B:  E = -gs Y Qh^-1.  Every diagonal is formed as shunt +
 * sum of the off-diagonal magnitudes (the shunt of Qh tracked exactly: gs + sum_i -B_ij x_i with
 * x = gd P^-1 1), so no diagonal is the small difference of large numbers. */
static xb_status ports(int n, int m, const double *S, int dd_diag, double gd, double gs, double *e, double *w,
                       double *pivmin) {
    const int np_ = n + m;
    const int gd_inf = isinf(gd), gs_inf = isinf(gs);
    double *P = w, *Z = P + (size_t)n * n, *Y = Z + (size_t)n * m, *Q = Y + (size_t)n * m;
    double *x = Q + (size_t)m * m, *rs = x + n;
    xb_status st;
    row_sums(S, np_, np_, rs);
    if (gd_inf && gs_inf) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) e[(size_t)i * m + j] = -S[(size_t)i * np_ + n + j];
        return XB_OK;
    }
    if (gd_inf) {
        /* ideal sources: x_d = V;  Q0 x_s = -B' V;  E = -gs B Q0^-1 */
        for (int c = 0; c < m; c++) {
            for (int r = c + 1; r < m; r++) Q[(size_t)c * m + r] = S[(size_t)(n + c) * np_ + n + r];
            Q[(size_t)c * m + c] = rs[n + c] + gs;
        }
        if ((st = dense_chol(Q, m, "sense"))) return st;
        for (int j = 0; j < m; j++) { double r = Q[(size_t)j * m + j]; r = r * r / (rs[n + j] + gs); if (r < *pivmin) *pivmin = r; }
        for (int i = 0; i < n; i++)   /* X (m x n) = B', column-major == E's row-major layout */
            for (int j = 0; j < m; j++) e[(size_t)i * m + j] = S[(size_t)i * np_ + n + j];
        int info = 0;
        dpotrs_("L", &m, &n, Q, &m, e, &m, &info, 1);
        XB_ASSERT(info == 0);
        for (size_t k = 0; k < (size_t)n * m; k++) e[k] *= -gs;
        return XB_OK;
    }
    if (dd_diag) {
        /* ideal wires: the row nodes are not joined to each other, P is diagonal */
        for (int i = 0; i < n; i++) {
            const double pii = rs[i] + gd, sq = sqrt(pii);
            x[i] = gd / pii;
            for (int j = 0; j < m; j++) {
                const double bij = S[(size_t)i * np_ + n + j];
                Z[(size_t)j * n + i] = bij / sq;
                Y[(size_t)j * n + i] = gd * bij / pii;
            }
        }
    } else {
        for (int c = 0; c < n; c++) {
            for (int r = c + 1; r < n; r++) P[(size_t)c * n + r] = S[(size_t)c * np_ + r];
            P[(size_t)c * n + c] = rs[c] + gd;
        }
        if ((st = dense_chol(P, n, "driver"))) return st;
        for (int i = 0; i < n; i++) { double r = P[(size_t)i * n + i]; r = r * r / (rs[i] + gd); if (r < *pivmin) *pivmin = r; }
        for (int i = 0; i < n; i++)      /* Z (n x m) = B */
            for (int j = 0; j < m; j++) Z[(size_t)j * n + i] = S[(size_t)i * np_ + n + j];
        cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n, m, 1.0, P, n, Z, n);
        memcpy(Y, Z, (size_t)n * m * sizeof(double));
        cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, m, gd, P, n, Y, n);
    }
    if (gs_inf) {    /* virtual ground: x_s = 0, I = -B' x_d, E = -gd P^-1 B = -Y */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) e[(size_t)i * m + j] = -Y[(size_t)j * n + i];
        return XB_OK;
    }
    if (!dd_diag) {
        for (int i = 0; i < n; i++) x[i] = gd;
        cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, n, P, n, x, 1);
        cblas_dtrsv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, n, P, n, x, 1);
    }
    for (int c = 0; c < m; c++)
        for (int r = c + 1; r < m; r++) Q[(size_t)c * m + r] = S[(size_t)(n + c) * np_ + n + r];
    cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, m, n, -1.0, Z, n, 1.0, Q, m);   /* Q0 - B'P^-1B */
    double *sh = rs;   /* reuse: shunt of each sense node after eliminating the drivers */
    for (int j = 0; j < m; j++) {
        double s = gs;
        for (int i = 0; i < n; i++) s -= S[(size_t)i * np_ + n + j] * x[i];
        sh[j] = s;
    }
    /* diagonal = shunt + sum of |off-diagonal| (dsyrk left the diagonal meaningless) */
    for (int j = 0; j < m; j++) Q[(size_t)j * m + j] = sh[j];
    for (int c = 0; c < m; c++)
        for (int r = c + 1; r < m; r++) {
            double v = Q[(size_t)c * m + r];
            Q[(size_t)c * m + c] -= v;
            Q[(size_t)r * m + r] -= v;
        }
    double *qdiag = Z;   /* Z no longer needed: keep Qh's diagonal for the pivot ratio */
    for (int j = 0; j < m; j++) qdiag[j] = Q[(size_t)j * m + j];
    if ((st = dense_chol(Q, m, "sense"))) return st;
    for (int j = 0; j < m; j++) { double r = Q[(size_t)j * m + j]; r = r * r / qdiag[j]; if (r < *pivmin) *pivmin = r; }
    for (int i = 0; i < n; i++)      /* X (m x n) = Y', column-major == E's row-major layout */
        for (int j = 0; j < m; j++) e[(size_t)i * m + j] = Y[(size_t)j * n + i];
    int info = 0;
    dpotrs_("L", &m, &n, Q, &m, e, &m, &info, 1);
    XB_ASSERT(info == 0);
    for (size_t k = 0; k < (size_t)n * m; k++) e[k] *= -gs;
    return XB_OK;
}

/* Assembles node t's front from its stamps and its children's port matrices, eliminates, and stores
 * its own port matrix at its s_off.  F: front scratch, d: row-sum scratch. */
static xb_status run_node(const xb_solve_plan *p, int t, const double *g, double sig, double gw, double *w,
                          double *F, double *d, double *pivmin) {
    const sv_node *nd = &p->node[t];
    const int f = nd->q + nd->p;
    for (int cc = 0; cc < f; cc++) memset(F + (size_t)cc * f + cc, 0, (size_t)(f - cc) * sizeof(double));
    if (nd->left >= 0) {
        for (int side = 0; side < 2; side++) {
            const sv_node *ch = &p->node[side ? nd->right : nd->left];
            const int pc = ch->p;
            const int *map = p->pool + (side ? nd->map_r : nd->map_l);
            const double *Sc = w + ch->s_off;
            for (int cc = 0; cc < pc; cc++) {
                const double *col = Sc + (size_t)cc * pc;
                const int B = map[cc];
                for (int rr = cc + 1; rr < pc; rr++) {   /* to the lower triangle, branch-free */
                    const int A = map[rr], lo = A < B ? A : B, hi = A ^ B ^ lo;
                    F[(size_t)lo * f + hi] += col[rr];
                }
            }
        }
    }
    const int *sa = p->pool + nd->st_a, *sb = p->pool + nd->st_b, *sg = p->pool + nd->st_g;
    for (int k = 0; k < nd->nst; k++) F[(size_t)sb[k] * f + sa[k]] -= sg[k] >= 0 ? g[sg[k]] / sig : gw;
    xb_status st = eliminate(F, f, nd->q, nd->blas, d, pivmin, t);
    if (st) return st;
    double *out = w + nd->s_off;
    const int pp = nd->p, q = nd->q;
    for (int cc = 0; cc < pp; cc++) {
        const double *src = F + (size_t)(q + cc) * f + q;
        double *dst = out + (size_t)cc * pp;
        dst[cc] = 0;
        memcpy(dst + cc + 1, src + cc + 1, (size_t)(pp - cc - 1) * sizeof(double));
    }
    return XB_OK;
}

/* Ideal wires: row i is one node, column j is one node, joined by G[i][j]; the port matrix is built
 * in the last (n+m)^2 doubles of the ports() workspace pw. */
static const double *lumped_ports(int n, int m, const double *g, double sig, double *pw) {
    const int np_ = n + m;
    double *Sr = pw + (size_t)n * n + 2 * (size_t)n * m + (size_t)m * m + 2 * (size_t)np_;
    memset(Sr, 0, (size_t)np_ * np_ * sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) Sr[(size_t)i * np_ + n + j] = -g[(size_t)i * m + j] / sig;
    return Sr;
}

static double scale_of(double gmax) { return gmax > 0 ? ldexp(1.0, ilogb(gmax)) : 1; }

size_t xb_xbar_lumped_workspace(int rows, int cols) { return ports_workspace(rows, cols); }

xb_status xb_xbar_lumped(const xb_circuit *c, int rows, int cols, const double *g, double *e, double *work) {
    XB_ASSERT(c && g && e && work);
    double gmax = 0, pivmin = 1;
    xb_status st = check_size(rows, cols);
    if (st || (st = xb_circuit_validate(c)) || (st = check_g(rows, cols, g, &gmax))) return st;
    const double sig = scale_of(gmax);
    const double gd = c->r_driver_ohm > 0 ? 1 / (c->r_driver_ohm * sig) : INFINITY;
    const double gs = c->r_sense_ohm > 0 ? 1 / (c->r_sense_ohm * sig) : INFINITY;
    const double *S = lumped_ports(rows, cols, g, sig, work);
    if ((st = ports(rows, cols, S, 1, gd, gs, e, work, &pivmin))) return st;
    for (size_t k = 0; k < (size_t)rows * cols; k++) e[k] *= sig;
    return XB_OK;
}

/* The grid reduced to its n + m ports (row nodes (i,0), column nodes (n-1,j)), in conductances scaled by
 * 1/sig: *S (np x np, lower triangle column-major) in work. */
static xb_status exact_top(const xb_solve_plan *p, const double *g, double sig, double gw, void *work,
                           const double **Sout, double *pivmin) {
    const int n = p->rows, m = p->cols;
    double *w = (double *)work, *pw = w + p->ports;
    const double *S;
    xb_status st = XB_OK;
    *pivmin = 1;
    if (isinf(gw)) {
        S = lumped_ports(n, m, g, sig, pw);
    } else {
        /* the parallel subtrees (BLAS runs single-threaded inside the parallel region) */
        int bad = -1;
        xb_status bad_st = XB_OK;
        char msg[400] = "";
        double pm = 1;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) reduction(min : pm) if (p->nsub > 1 && omp_get_max_threads() > 1)
#endif
        for (int k = 0; k < p->nsub; k++) {
            const sv_sub *sb = &p->sub[k];
            for (int t = sb->first; t <= sb->last; t++) {
                xb_status ts = run_node(p, t, g, sig, gw, w, w + sb->front, w + sb->scr, &pm);
                if (ts) {
#ifdef _OPENMP
#pragma omp critical(xb_solve_subtree)
#endif
                    if (bad < 0) { bad = k; bad_st = ts; snprintf(msg, sizeof msg, "%s", xb_last_error()); }
                    break;
                }
            }
        }
        if (bad >= 0) return xb_errorf(bad_st, "%s", msg);
        *pivmin = pm;
        /* the top nodes, serially (multi-threaded BLAS only for big fronts) */
        for (int t = 0; t < p->nnode && !st; t++) {
            if (p->node[t].sub >= 0) continue;
            const int f = p->node[t].q + p->node[t].p;
#ifdef _OPENMP
            const int nth = omp_get_max_threads(), one = f < SV_BLAS_MT_MIN && nth > 1;
            if (one) omp_set_num_threads(1);
#endif
            st = run_node(p, t, g, sig, gw, w, w + p->front, w + p->scr, pivmin);
#ifdef _OPENMP
            if (one) omp_set_num_threads(nth);
#endif
        }
        if (st) return st;
        S = w + p->node[p->nnode - 1].s_off;
    }
    *Sout = S;
    return XB_OK;
}

/* The input (driving-point) admittance of the port system, a (n x n, row-major, scaled units): with
 * K = S + diag(0, gs) (the grid and the sense resistors), T = K_dd - K_ds K_ss^-1 K_sd is what the row
 * nodes see; behind the drivers A = gd (T + gd)^-1 T (A = T for ideal sources; T = S_dd for a virtual
 * ground).  T's off-diagonals come from one syrk; its diagonal is formed as shunt + sum of the
 * off-diagonal magnitudes, the shunt T 1 = -gs B K_ss^-1 1 (the Laplacian's zero row sums), so no
 * diagonal is the small difference of large numbers.  w: the ports() scratch (m^2 + nm + n^2 + np). */
static xb_status admittance(int n, int m, const double *S, double gd, double gs, double *a, double *w) {
    const int np_ = n + m, gs_inf = isinf(gs);
    double *Q = w, *Z = Q + (size_t)m * m, *T = Z + (size_t)n * m, *rs = T + (size_t)n * n;
    xb_status st;
    row_sums(S, np_, np_, rs);
    for (int c = 0; c < n; c++)           /* T = S_dd (lower, column-major) */
        for (int r = c + 1; r < n; r++) T[(size_t)c * n + r] = S[(size_t)c * np_ + r];
    if (gs_inf) {
        for (int i = 0; i < n; i++) T[(size_t)i * n + i] = rs[i];
    } else {
        for (int c = 0; c < m; c++) {
            for (int r = c + 1; r < m; r++) Q[(size_t)c * m + r] = S[(size_t)(n + c) * np_ + n + r];
            Q[(size_t)c * m + c] = rs[n + c] + gs;
        }
        if ((st = dense_chol(Q, m, "sense"))) return st;
        for (int i = 0; i < n; i++)       /* Z (m x n, column-major) = B' */
            for (int j = 0; j < m; j++) Z[(size_t)i * m + j] = S[(size_t)i * np_ + n + j];
        double *y = rs + np_;             /* K_ss^-1 1 (m), then the shunts (n) */
        for (int j = 0; j < m; j++) y[j] = 1;
        int one = 1, info = 0;
        dpotrs_("L", &m, &one, Q, &m, y, &m, &info, 1);
        XB_ASSERT(info == 0);
        double *sh = y + m;
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < m; j++) s -= Z[(size_t)i * m + j] * y[j];
            sh[i] = gs * s;
        }
        cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, m, n, 1.0, Q, m, Z, m);
        cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, n, m, -1.0, Z, m, 1.0, T, n);
        for (int i = 0; i < n; i++) T[(size_t)i * n + i] = sh[i];
        for (int c = 0; c < n; c++)
            for (int r = c + 1; r < n; r++) {
                const double v = T[(size_t)c * n + r];
                T[(size_t)c * n + c] -= v;
                T[(size_t)r * n + r] -= v;
            }
    }
    for (int c = 0; c < n; c++)           /* full symmetric T */
        for (int r = c + 1; r < n; r++) T[(size_t)r * n + c] = T[(size_t)c * n + r];
    if (isinf(gd)) {
        memcpy(a, T, (size_t)n * n * sizeof(double));
        return XB_OK;
    }
    memcpy(a, T, (size_t)n * n * sizeof(double));   /* a = chol(T + gd), then A = gd (T + gd)^-1 T */
    for (int i = 0; i < n; i++) a[(size_t)i * n + i] += gd;
    if ((st = dense_chol(a, n, "driver"))) return st;
    int info = 0;
    dpotrs_("L", &n, &n, a, &n, T, &n, &info, 1);
    XB_ASSERT(info == 0);
    for (int c = 0; c < n; c++)           /* symmetric in exact arithmetic: the mean of the two halves */
        for (int r = c; r < n; r++) {
            const double v = 0.5 * gd * (T[(size_t)c * n + r] + T[(size_t)r * n + c]);
            a[(size_t)c * n + r] = v;
            a[(size_t)r * n + c] = v;
        }
    return XB_OK;
}

/* e (may be NULL) the effective matrix, a (may be NULL) the input admittance. */
static xb_status exact_solve(const xb_solve_plan *p, const xb_circuit *c, const double *g, double *e, double *a,
                             void *work, double gmax, double *pivmin) {
    const int n = p->rows, m = p->cols, np_ = n + m;
    /* conductances are scaled by 1/sig (a power of two: exact) to keep every product in range */
    const double sig = scale_of(gmax);
    const double gw = c->r_wire_ohm > 0 ? 1 / (c->r_wire_ohm * sig) : INFINITY;
    const double gd = c->r_driver_ohm > 0 ? 1 / (c->r_driver_ohm * sig) : INFINITY;
    const double gs = c->r_sense_ohm > 0 ? 1 / (c->r_sense_ohm * sig) : INFINITY;
    double *pw = (double *)work + p->ports;
    const double *S;
    xb_status st = exact_top(p, g, sig, gw, work, &S, pivmin);
    if (st) return st;
#ifdef _OPENMP
    const int nth = omp_get_max_threads(), one = np_ < SV_BLAS_MT_MIN && nth > 1;
    if (one) omp_set_num_threads(1);
#endif
    if (e) st = ports(n, m, S, isinf(gw), gd, gs, e, pw, pivmin);
    if (!st && a) st = admittance(n, m, S, gd, gs, a, pw);
#ifdef _OPENMP
    if (one) omp_set_num_threads(nth);
#endif
    if (st) return st;
    const char *what[2] = {"effective matrix", "input admittance"};
    double *out[2] = {e, a};
    const int64_t len[2] = {(int64_t)n * m, (int64_t)n * n}, ld[2] = {m, n};
    for (int o = 0; o < 2; o++) {
        if (!out[o]) continue;
        for (int64_t k = 0; k < len[o]; k++) {
            out[o][k] *= sig;
            if (!isfinite(out[o][k]))
                return xb_errorf(XB_ERR_NUMERIC, "solver: %s entry [%lld,%lld] is %g. HINT: the circuit is too "
                                 "ill-conditioned in double precision; check for extreme resistance or "
                                 "conductance ratios", what[o], (long long)(k / ld[o]), (long long)(k % ld[o]),
                                 out[o][k]);
        }
    }
    return XB_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* CHOLMOD reference                                                                                 */
/* ------------------------------------------------------------------------------------------------ */

/* Node numbering of xbar_spice.py's nodal(): row node (i,j) = i*m + j, column node = n*m + i*m + j. */
static xb_status cholmod_plan(xb_solve_plan *p) {
    const int n = p->rows, m = p->cols, nm = n * m, N = 2 * nm;
    sv_cholmod *ch = calloc(1, sizeof *ch);
    XB_ASSERT(ch);
    p->chol = ch;
    cholmod_start(&ch->cc);
    ch->cc.print = 0;
    size_t nnz = (size_t)N + (size_t)n * (m - 1) + (size_t)nm + (size_t)(n - 1) * m;
    ch->a = cholmod_allocate_sparse(N, N, nnz, 1, 1, -1, CHOLMOD_PATTERN, &ch->cc);
    if (!ch->a) return xb_errorf(XB_ERR_NOMEM, "solver: CHOLMOD could not allocate the %d-node matrix", N);
    int *ap = ch->a->p, *ai = ch->a->i;
    size_t k = 0;
    for (int x = 0; x < N; x++) {
        ap[x] = (int)k;
        ai[k++] = x;
        if (x < nm) {
            if (x % m < m - 1) ai[k++] = x + 1;
            ai[k++] = x + nm;
        } else if ((x - nm) / m < n - 1) {
            ai[k++] = x + m;
        }
    }
    ap[N] = (int)k;
    XB_ASSERT(k == nnz);
    ch->l = cholmod_analyze(ch->a, &ch->cc);
    if (!ch->l || ch->cc.status < CHOLMOD_OK)
        return xb_errorf(XB_ERR_NOMEM, "solver: CHOLMOD analysis failed (status %d)", ch->cc.status);
    p->flops = ch->cc.fl + 4.0 * ch->cc.lnz * (n < m ? n : m);
    p->work_bytes = 0;
    return XB_OK;
}

static xb_status cholmod_effective(const xb_solve_plan *p, const xb_circuit *c, const double *g, double *e) {
    const int n = p->rows, m = p->cols, nm = n * m, N = 2 * nm;
    if (!(c->r_wire_ohm > 0 && c->r_driver_ohm > 0 && c->r_sense_ohm > 0))
        return xb_errorf(XB_ERR_UNSUPPORTED, "solver: method cholmod needs r_wire, r_driver and r_sense > 0 "
                         "(got %g, %g, %g ohm). HINT: use method exact, which handles the ideal limits",
                         c->r_wire_ohm, c->r_driver_ohm, c->r_sense_ohm);
    const double gw = 1 / c->r_wire_ohm, gd = 1 / c->r_driver_ohm, gs = 1 / c->r_sense_ohm;
    cholmod_common cc;
    cholmod_start(&cc);
    cc.print = 0;
    xb_status st = XB_OK;
    cholmod_sparse *A = cholmod_copy_sparse(p->chol->a, &cc);
    cholmod_factor *L = cholmod_copy_factor(p->chol->l, &cc);
    cholmod_dense *B = NULL, *X = NULL;
    if (!A || !L) { st = xb_errorf(XB_ERR_NOMEM, "solver: CHOLMOD out of memory"); goto done; }
    cholmod_sparse_xtype(CHOLMOD_REAL, A, &cc);
    {
        double *ax = A->x;
        size_t k = 0;
        for (int x = 0; x < N; x++) {
            if (x < nm) {
                int i = x / m, j = x % m;
                double gij = g[x];
                ax[k++] = gij + (j > 0 ? gw : 0) + (j < m - 1 ? gw : 0) + (j == 0 ? gd : 0);
                if (j < m - 1) ax[k++] = -gw;
                ax[k++] = -gij;
                (void)i;
            } else {
                int i = (x - nm) / m, j = (x - nm) % m;
                ax[k++] = g[x - nm] + (i > 0 ? gw : 0) + (i < n - 1 ? gw : 0) + (i == n - 1 ? gs : 0);
                if (i < n - 1) ax[k++] = -gw;
                (void)j;
            }
        }
    }
    cholmod_factorize(A, L, &cc);
    if (cc.status == CHOLMOD_NOT_POSDEF || L->minor < (size_t)N) {
        st = xb_errorf(XB_ERR_NUMERIC, "solver: CHOLMOD: the nodal matrix is not positive definite (column %zu). "
                       "HINT: the circuit is singular or too ill-conditioned", L->minor);
        goto done;
    }
    if (cc.status < CHOLMOD_OK) { st = xb_errorf(XB_ERR_NOMEM, "solver: CHOLMOD factorization failed (status %d)", cc.status); goto done; }
    int k = n <= m ? n : m;
    B = cholmod_zeros(N, k, CHOLMOD_REAL, &cc);
    if (!B) { st = xb_errorf(XB_ERR_NOMEM, "solver: CHOLMOD out of memory"); goto done; }
    double *bx = B->x;
    if (n <= m) for (int i = 0; i < n; i++) bx[(size_t)i * N + i * m] = gd;           /* input i */
    else for (int j = 0; j < m; j++) bx[(size_t)j * N + nm + (n - 1) * m + j] = gs;   /* adjoint of output j */
    X = cholmod_solve(CHOLMOD_A, L, B, &cc);
    if (!X) { st = xb_errorf(XB_ERR_NOMEM, "solver: CHOLMOD solve failed (status %d)", cc.status); goto done; }
    const double *xx = X->x;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++)
            e[(size_t)i * m + j] = n <= m ? gs * xx[(size_t)i * N + nm + (n - 1) * m + j]
                                          : gd * xx[(size_t)j * N + i * m];
done:
    cholmod_free_dense(&X, &cc);
    cholmod_free_dense(&B, &cc);
    cholmod_free_factor(&L, &cc);
    cholmod_free_sparse(&A, &cc);
    cholmod_finish(&cc);
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* Entry points                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

xb_status xb_solve_plan_effective(const xb_solve_plan *p, const xb_circuit *c, const double *g,
                                  double *e, void *work, xb_solve_stats *st) {
    XB_ASSERT(p && c && g && e);
    XB_ASSERT(work || p->work_bytes == 0);
    double t0 = xb_time_s(), gmax = 0, pivmin = 1;
    xb_status s = xb_circuit_validate(c);
    if (s) return s;
    if ((s = check_g(p->rows, p->cols, g, &gmax))) return s;
    switch (p->method) {
    case XB_SOLVE_EXACT: s = exact_solve(p, c, g, e, NULL, work, gmax, &pivmin); break;
    case XB_SOLVE_CHOLMOD: s = cholmod_effective(p, c, g, e); break;
    case XB_SOLVE_DECOUPLED:
        s = xb_decoupled_effective(c, p->rows, p->cols, g, e, (double *)work);
        break;
    default: XB_ASSERT(!"bad method");
    }
    if (st) {
        st->method = p->method;
        st->time_s = xb_time_s() - t0;
        st->flops = p->flops;
        st->pivot_min = pivmin;
    }
    return s;
}

xb_status xb_solve_plan_admittance(const xb_solve_plan *p, const xb_circuit *c, const double *g, double *e,
                                   double *a, void *work, xb_solve_stats *st) {
    XB_ASSERT(p && c && g && a);
    double t0 = xb_time_s(), gmax = 0, pivmin = 1;
    if (p->method != XB_SOLVE_EXACT)
        return xb_errorf(XB_ERR_UNSUPPORTED, "solver: the input admittance needs an exact plan, not %s. HINT: make "
                         "the plan with XB_SOLVE_EXACT", xb_solve_method_name(p->method));
    xb_status s = xb_circuit_validate(c);
    if (s || (s = check_g(p->rows, p->cols, g, &gmax))) return s;
    s = exact_solve(p, c, g, e, a, work, gmax, &pivmin);
    if (st) {
        st->method = p->method;
        st->time_s = xb_time_s() - t0;
        st->flops = p->flops;
        st->pivot_min = pivmin;
    }
    return s;
}

xb_status xb_xbar_admittance(const xb_circuit *c, int rows, int cols, const double *g, double *a) {
    xb_solve_plan *p;
    xb_status s = xb_solve_plan_init(rows, cols, XB_SOLVE_EXACT, &p);
    if (s) return s;
    void *w = aligned_alloc(64, (p->work_bytes + 63) & ~(size_t)63);
    if (!w) {
        xb_solve_plan_free(p);
        return xb_errorf(XB_ERR_NOMEM, "solver: out of memory for a %d x %d tile's workspace", rows, cols);
    }
    s = xb_solve_plan_admittance(p, c, g, NULL, a, w, NULL);
    free(w);
    xb_solve_plan_free(p);
    return s;
}

double xb_xbar_power(int rows, const double *a, const double *v) {
    double p = 0;
    for (int i = 0; i < rows; i++) {
        double s = 0;
        for (int k = 0; k < rows; k++) s += a[(size_t)i * rows + k] * v[k];
        p += v[i] * s;
    }
    return p;
}

xb_status xb_xbar_effective_method(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                                   const double *g, double *e, xb_solve_stats *st) {
    xb_solve_plan *p;
    xb_status s = xb_solve_plan_init(rows, cols, method, &p);
    if (s) return s;
    void *w = NULL;
    if (p->work_bytes && !(w = aligned_alloc(64, (p->work_bytes + 63) & ~(size_t)63))) {
        xb_solve_plan_free(p);
        return xb_errorf(XB_ERR_NOMEM, "solver: out of memory for a %d x %d tile's workspace (%zu bytes). "
                         "HINT: use smaller tiles", rows, cols, p->work_bytes);
    }
    s = xb_solve_plan_effective(p, c, g, e, w, st);
    free(w);
    xb_solve_plan_free(p);
    return s;
}

xb_status xb_xbar_effective(const xb_circuit *c, int rows, int cols, const double *g, double *e,
                            xb_solve_stats *st) {
    return xb_xbar_effective_method(XB_SOLVE_EXACT, c, rows, cols, g, e, st);
}

xb_status xb_xbar_effective_tiles(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                                  int ntiles, const double *const *g, double *const *e) {
    XB_ASSERT(ntiles >= 0 && (ntiles == 0 || (g && e)));
    xb_solve_plan *p;
    xb_status s = xb_solve_plan_init(rows, cols, method, &p);
    if (s) return s;
    int bad = -1;
    xb_status bad_st = XB_OK;
    char msg[512] = "";
#pragma omp parallel
    {
        void *w = p->work_bytes ? aligned_alloc(64, (p->work_bytes + 63) & ~(size_t)63) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntiles; t++) {
            xb_status ts = w || !p->work_bytes ? xb_solve_plan_effective(p, c, g[t], e[t], w, NULL)
                                              : xb_errorf(XB_ERR_NOMEM, "solver: out of memory for a workspace");
            if (ts) {
#pragma omp critical(xb_solve_tiles)
                if (bad < 0 || t < bad) {
                    bad = t;
                    bad_st = ts;
                    snprintf(msg, sizeof msg, "%s", xb_last_error());
                }
            }
        }
        free(w);
    }
    xb_solve_plan_free(p);
    if (bad >= 0) return xb_errorf(bad_st, "tile %d: %s", bad, msg);
    return XB_OK;
}

void xb_xbar_apply(int rows, int cols, const double *e, int batch, const double *v, double *i) {
    XB_ASSERT(rows >= 1 && cols >= 1 && batch >= 0);
    if (batch == 0) return;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, cols, rows, 1.0, v, rows, e, cols, 0.0, i, cols);
}

xb_status xb_xbar_currents(xb_solve_method method, const xb_circuit *c, int rows, int cols,
                           const double *g, int batch, const double *v, double *i, double *e_out,
                           xb_solve_stats *st) {
    XB_ASSERT(batch >= 0 && (batch == 0 || (v && i)));
    xb_status s = check_size(rows, cols);
    if (s) return s;
    for (int64_t k = 0; k < (int64_t)batch * rows; k++)
        if (!isfinite(v[k]))
            return xb_errorf(XB_ERR_ARG, "solver: V[%lld,%lld] = %g V is not finite. HINT: input voltages are "
                             "finite numbers", (long long)(k / rows), (long long)(k % rows), v[k]);
    double *e = e_out ? e_out : malloc((size_t)rows * cols * sizeof(double));
    if (!e) return xb_errorf(XB_ERR_NOMEM, "solver: out of memory for a %d x %d effective matrix", rows, cols);
    s = xb_xbar_effective_method(method, c, rows, cols, g, e, st);
    if (!s) xb_xbar_apply(rows, cols, e, batch, v, i);
    if (!e_out) free(e);
    return s;
}
