/* bench_solver.c -- per-tile time of the crossbar solver's effective-matrix extraction, and the
 * decoupled model's error against the exact solver per regime.  Driven by bench/bench_solver.py.
 *
 *   bench_solver time   SIZES [MIN_SECONDS]   one tile at a time (plan reused), each size validated
 *                                             against CHOLMOD first (or the r=1e-9 limit), then timed
 *   bench_solver tiles  SIZE NTILES           NTILES tiles through xb_xbar_effective_tiles (all threads)
 *   bench_solver approx SIZES                 decoupled vs exact over the regimes of docs/solver.md
 *   bench_solver dirs   SIZES [MIN_SECONDS]   forward vs backward read (xb_solve_plan_effective_dir), one
 *                                             square plan and workspace, the two interleaved per repeat
 * SIZES: comma-separated n for n x n tiles.  Output: one CSV line per measurement (header first).
 * G is uniform in [g_min, g_max] (seeded), V uniform in [0, 0.3] V, as xbar_spice.py makes them. */
#include "xb_solve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double *random_g(int n, int m, double gmin, double gmax, uint64_t seed) {
    xb_rng r;
    xb_rng_seed(&r, seed, "device");
    double *g = xb_malloc((size_t)n * m * sizeof(double));
    for (size_t k = 0; k < (size_t)n * m; k++) g[k] = gmin + (gmax - gmin) * xb_rng_uniform(&r);
    return g;
}

static double max_rel(const double *a, const double *b, size_t n) {
    double d = 0, s = 1e-300;
    for (size_t k = 0; k < n; k++) {
        double x = fabs(a[k] - b[k]);
        if (!(x <= d)) d = x;
        if (fabs(b[k]) > s) s = fabs(b[k]);
    }
    return d / s;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what) {
    fprintf(stderr, "bench_solver: %s: %s\n", what, xb_last_error());
    exit(1);
}

/* min and median seconds per call over >= 3 calls and >= min_s seconds (after one warm-up call) */
static void time_method(xb_solve_method meth, const xb_circuit *c, int n, const double *g, double *e, double min_s,
                        int max_reps, double *t_min, double *t_med, int *reps, double *flops) {
    xb_solve_plan *p;
    if (xb_solve_plan_init(n, n, meth, &p)) die("plan");
    void *w = xb_malloc(xb_solve_plan_workspace(p) + 64);
    xb_solve_stats st;
    if (xb_solve_plan_effective(p, c, g, e, w, &st)) die("solve");
    double *ts = xb_malloc(sizeof(double) * (size_t)max_reps), t0 = xb_time_s();
    int k = 0;
    while (k < max_reps && (k < 3 || xb_time_s() - t0 < min_s)) {
        double a = xb_time_s();
        if (xb_solve_plan_effective(p, c, g, e, w, &st)) die("solve");
        ts[k++] = xb_time_s() - a;
    }
    qsort(ts, (size_t)k, sizeof(double), cmp_d);
    *t_min = ts[0];
    *t_med = ts[k / 2];
    *reps = k;
    *flops = st.flops;
    xb_free(ts);
    xb_free(w);
    xb_solve_plan_free(p);
}

static int parse_sizes(const char *s, int *out, int max) {
    int n = 0;
    for (const char *q = s; *q && n < max;) {
        out[n++] = atoi(q);
        const char *comma = strchr(q, ',');
        if (!comma) break;
        q = comma + 1;
    }
    return n;
}

static void cmd_time(int ns, const int *sizes, double min_s) {
    xb_circuit c = xb_circuit_default();
    printf("mode,size,method,ms_min,ms_median,reps,gflops_at_min,check\n");
    for (int s = 0; s < ns; s++) {
        int n = sizes[s];
        double *g = random_g(n, n, 1e-6, 1e-4, 100 + n), *e = xb_malloc(8 * (size_t)n * n),
               *ref = xb_malloc(8 * (size_t)n * n);
        /* validate before timing */
        if (xb_xbar_effective(&c, n, n, g, e, NULL)) die("exact");
        double check;
        if (n <= 256) {
            if (xb_xbar_effective_method(XB_SOLVE_CHOLMOD, &c, n, n, g, ref, NULL)) die("cholmod");
            check = max_rel(e, ref, (size_t)n * n);
        } else {   /* too slow for CHOLMOD's n solves: check continuity against r_wire = 2.5 + 1e-9 */
            xb_circuit c2 = c;
            c2.r_wire_ohm += 1e-9;
            if (xb_xbar_effective(&c2, n, n, g, ref, NULL)) die("exact");
            check = max_rel(e, ref, (size_t)n * n);
        }
        if (!(check < 1e-8)) { fprintf(stderr, "bench_solver: %dx%d check failed: %.3e\n", n, n, check); exit(1); }
        const xb_solve_method ms[] = {XB_SOLVE_EXACT, XB_SOLVE_DECOUPLED, XB_SOLVE_CHOLMOD};
        for (int k = 0; k < 3; k++) {
            if (ms[k] == XB_SOLVE_CHOLMOD && n > 256) continue;
            double tmin, tmed, fl;
            int reps;
            double budget = ms[k] == XB_SOLVE_CHOLMOD ? min_s / 4 : min_s;
            time_method(ms[k], &c, n, g, e, budget, 1000, &tmin, &tmed, &reps, &fl);
            printf("time,%d,%s,%.4f,%.4f,%d,%.2f,%.1e\n", n, xb_solve_method_name(ms[k]), tmin * 1e3, tmed * 1e3, reps,
                   fl / tmin * 1e-9, check);
            fflush(stdout);
        }
        xb_free(g); xb_free(e); xb_free(ref);
    }
}

static void cmd_tiles(int n, int ntiles) {
    xb_circuit c = xb_circuit_default();
    double **g = xb_malloc(sizeof(double *) * (size_t)ntiles), **e = xb_malloc(sizeof(double *) * (size_t)ntiles);
    for (int t = 0; t < ntiles; t++) { g[t] = random_g(n, n, 1e-6, 1e-4, 1000 + t); e[t] = xb_malloc(8 * (size_t)n * n); }
    printf("mode,size,tiles,threads,seconds,ms_per_tile\n");
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double a = xb_time_s();
        if (xb_xbar_effective_tiles(XB_SOLVE_EXACT, &c, n, n, ntiles, (const double *const *)g, e)) die("tiles");
        double d = xb_time_s() - a;
        if (d < best) best = d;
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("tiles,%d,%d,%d,%.4f,%.4f\n", n, ntiles, threads, best, best / ntiles * 1e3);
    for (int t = 0; t < ntiles; t++) { xb_free(g[t]); xb_free(e[t]); }
    xb_free(g); xb_free(e);
}

/* Forward and backward read of the same n x n tile through one plan, alternating, so that both see
 * the same machine load; min and median per direction (exact and decoupled). */
static void cmd_dirs(int ns, const int *sizes, double min_s) {
    xb_circuit c = xb_circuit_default();
    printf("mode,size,method,fwd_ms_min,bwd_ms_min,fwd_ms_median,bwd_ms_median,reps\n");
    for (int s = 0; s < ns; s++) {
        const int n = sizes[s];
        double *g = random_g(n, n, 1e-6, 1e-4, 100 + n), *e = xb_malloc(8 * (size_t)n * n);
        for (xb_solve_method meth = XB_SOLVE_EXACT; meth <= XB_SOLVE_DECOUPLED; meth += 2) {
            xb_solve_plan *p;
            if (xb_solve_plan_init(n, n, meth, &p)) die("plan");
            void *w = xb_malloc(xb_solve_plan_workspace_dir(p, XB_READ_BACKWARD));
            enum { MAXR = 2000 };
            double *ts[2] = {xb_malloc(8 * MAXR), xb_malloc(8 * MAXR)}, t0 = xb_time_s();
            int k = 0;
            for (int d = 0; d < 2; d++)   /* warm-up */
                if (xb_solve_plan_effective_dir(p, &c, (xb_read_dir)d, g, e, w, NULL)) die("solve");
            while (k < MAXR && (k < 5 || xb_time_s() - t0 < min_s)) {
                for (int d = 0; d < 2; d++) {
                    double a = xb_time_s();
                    if (xb_solve_plan_effective_dir(p, &c, (xb_read_dir)d, g, e, w, NULL)) die("solve");
                    ts[d][k] = xb_time_s() - a;
                }
                k++;
            }
            for (int d = 0; d < 2; d++) qsort(ts[d], (size_t)k, sizeof(double), cmp_d);
            printf("dirs,%d,%s,%.4f,%.4f,%.4f,%.4f,%d\n", n, xb_solve_method_name(meth), ts[0][0] * 1e3,
                   ts[1][0] * 1e3, ts[0][k / 2] * 1e3, ts[1][k / 2] * 1e3, k);
            fflush(stdout);
            xb_free(ts[0]); xb_free(ts[1]); xb_free(w);
            xb_solve_plan_free(p);
        }
        xb_free(g); xb_free(e);
    }
}

typedef struct regime { const char *name; double r_wire, r_driver, r_sense, g_min, g_max; } regime;

static void cmd_approx(int ns, const int *sizes) {
    static const regime rg[] = {
        {"negligible", 0.01, 100, 100, 1e-6, 1e-4},
        {"mild", 2.5, 100, 100, 1e-6, 1e-4},
        {"severe", 10, 100, 100, 1e-6, 1e-3},
        {"wires-only", 2.5, 0, 0, 1e-6, 1e-4},
        {"rram-1k", 5, 1000, 1000, 1e-6, 1e-5},
    };
    const int nr = sizeof rg / sizeof *rg, batch = 64;
    printf("mode,regime,size,ideal_err_I,decoupled_err_I,decoupled_err_E,ms_exact,ms_decoupled\n");
    for (int r = 0; r < nr; r++)
        for (int s = 0; s < ns; s++) {
            int n = sizes[s];
            xb_circuit c = {rg[r].r_wire, rg[r].r_driver, rg[r].r_sense};
            double *g = random_g(n, n, rg[r].g_min, rg[r].g_max, 200 + n), *v = random_g(batch, n, 0, 0.3, 300 + n);
            double *e = xb_malloc(8 * (size_t)n * n), *a = xb_malloc(8 * (size_t)n * n);
            double *ie = xb_malloc(8 * (size_t)batch * n), *ia = xb_malloc(8 * (size_t)batch * n);
            xb_solve_stats se, sa;
            if (xb_xbar_effective_method(XB_SOLVE_EXACT, &c, n, n, g, e, &se)) die("exact");
            if (xb_xbar_effective_method(XB_SOLVE_DECOUPLED, &c, n, n, g, a, &sa)) die("decoupled");
            xb_xbar_apply(n, n, e, batch, v, ie);
            xb_xbar_apply(n, n, a, batch, v, ia);
            double err_i = max_rel(ia, ie, (size_t)batch * n), err_e = max_rel(a, e, (size_t)n * n);
            xb_xbar_apply(n, n, g, batch, v, ia);   /* ideal crossbar: I = V G */
            double ideal = max_rel(ia, ie, (size_t)batch * n);
            printf("approx,%s,%d,%.3e,%.3e,%.3e,%.3f,%.3f\n", rg[r].name, n, ideal, err_i, err_e, se.time_s * 1e3,
                   sa.time_s * 1e3);
            fflush(stdout);
            xb_free(g); xb_free(v); xb_free(e); xb_free(a); xb_free(ie); xb_free(ia);
        }
}

int main(int argc, char **argv) {
    int sizes[16], ns;
    if (argc >= 3 && !strcmp(argv[1], "time")) {
        ns = parse_sizes(argv[2], sizes, 16);
        cmd_time(ns, sizes, argc > 3 ? atof(argv[3]) : 1.0);
    } else if (argc >= 4 && !strcmp(argv[1], "tiles")) {
        cmd_tiles(atoi(argv[2]), atoi(argv[3]));
    } else if (argc >= 3 && !strcmp(argv[1], "dirs")) {
        ns = parse_sizes(argv[2], sizes, 16);
        cmd_dirs(ns, sizes, argc > 3 ? atof(argv[3]) : 1.0);
    } else if (argc >= 3 && !strcmp(argv[1], "approx")) {
        ns = parse_sizes(argv[2], sizes, 16);
        cmd_approx(ns, sizes);
    } else {
        fprintf(stderr, "usage: bench_solver time SIZES [MIN_SECONDS] | tiles SIZE NTILES | approx SIZES | "
                        "dirs SIZES [MIN_SECONDS]\n");
        return 2;
    }
    return 0;
}
