/*
 * cell.c -- the 1T-1R cell: SPICE level-1 NMOS (symmetric, channel-length modulation in both regions, no
 * body effect) in series with a memristor, reduced to a two-terminal element by solving its internal node
 * exactly (equations: include/xb_cell.h).
 */
#include "xb_cell.h"

#include <math.h>
#include <string.h>

static const char *const type_names[XB_CELL_TYPE_COUNT] = {"resistor", "1t1r"};

xb_cell xb_cell_resistor(void) { return (xb_cell){.type = XB_CELL_RESISTOR}; }

xb_cell xb_cell_1t1r_default(void) {
    return (xb_cell){.type = XB_CELL_1T1R, .model = XB_MOS_LEVEL1, .v_gate_v = 0.7, .beta_a_per_v2 = 2e-4,
                     .v_t_v = 0.4, .lambda_per_v = 0.05, .ekv_n = 1.3, .ekv_ut_v = 0.025852};
}

const char *xb_mos_model_name(xb_mos_model m) {
    return m == XB_MOS_LEVEL1 ? "level1" : m == XB_MOS_EKV ? "ekv" : "?";
}

const char *xb_cell_type_name(xb_cell_type t) {
    return (unsigned)t < XB_CELL_TYPE_COUNT ? type_names[t] : "?";
}

xb_status xb_cell_type_parse(const char *s, xb_cell_type *out) {
    for (int k = 0; k < XB_CELL_TYPE_COUNT; k++)
        if (s && !strcmp(s, type_names[k])) { *out = (xb_cell_type)k; return XB_OK; }
    return xb_errorf(XB_ERR_ARG, "cell type '%s' is not known. HINT: use resistor or 1t1r", s ? s : "(null)");
}

xb_status xb_cell_validate(const xb_cell *c) {
    XB_ASSERT(c);
    if ((unsigned)c->type >= XB_CELL_TYPE_COUNT)
        return xb_errorf(XB_ERR_ARG, "cell: type %d is not a cell type. HINT: XB_CELL_RESISTOR or XB_CELL_1T1R",
                         (int)c->type);
    if (c->type == XB_CELL_RESISTOR) return XB_OK;
    if ((unsigned)c->model >= XB_MOS_MODEL_COUNT)
        return xb_errorf(XB_ERR_ARG, "cell: transistor model %d is not known. HINT: XB_MOS_LEVEL1 or XB_MOS_EKV",
                         (int)c->model);
    const struct { const char *name; double v; } p[] = {
        {"v_gate_v", c->v_gate_v}, {"beta_a_per_v2", c->beta_a_per_v2}, {"v_t_v", c->v_t_v},
        {"lambda_per_v", c->lambda_per_v}, {"ekv_n", c->ekv_n}, {"ekv_ut_v", c->ekv_ut_v}};
    for (int k = 0; k < (c->model == XB_MOS_EKV ? 6 : 4); k++)
        if (!isfinite(p[k].v))
            return xb_errorf(XB_ERR_ARG, "cell: %s = %g is not finite. HINT: give a finite number", p[k].name,
                             p[k].v);
    if (!(c->beta_a_per_v2 > 0))
        return xb_errorf(XB_ERR_ARG, "cell: beta_a_per_v2 = %g A/V^2 must be > 0. HINT: the transistor's KP * W/L, "
                         "e.g. 2e-4", c->beta_a_per_v2);
    if (c->lambda_per_v < 0)
        return xb_errorf(XB_ERR_ARG, "cell: lambda_per_v = %g 1/V must be >= 0. HINT: 0 turns channel-length "
                         "modulation off", c->lambda_per_v);
    if (c->model == XB_MOS_EKV && (!(c->ekv_n >= 1) || !(c->ekv_ut_v > 0)))
        return xb_errorf(XB_ERR_ARG, "cell: EKV needs ekv_n >= 1 and ekv_ut_v > 0, got %g and %g V. HINT: n ~ 1.2-1.5, "
                         "U_T = kT/q = 0.025852 V at 300 K", c->ekv_n, c->ekv_ut_v);
    if (!(c->v_gate_v > c->v_t_v))
        return xb_errorf(XB_ERR_ARG, "cell: the gate overdrive v_gate_v - v_t_v = %g - %g = %g V is not positive: "
                         "every transistor would be off. HINT: raise v_gate_v above v_t_v", c->v_gate_v, c->v_t_v,
                         c->v_gate_v - c->v_t_v);
    return XB_OK;
}

/* Forward orientation (vds >= 0): current and its derivatives in vgs and vds; regime 0..2. */
static int mos_fwd(const xb_cell *c, double vgs, double vds, double *f, double *fg, double *fd) {
    const double beta = c->beta_a_per_v2, lam = c->lambda_per_v, vov = vgs - c->v_t_v, clm = 1 + lam * vds;
    if (vov <= 0) { *f = *fg = *fd = 0; return XB_MOS_CUTOFF; }
    if (vds < vov) {
        *f = beta * (vov - 0.5 * vds) * vds * clm;
        *fg = beta * vds * clm;
        *fd = beta * ((vov - vds) * clm + lam * (vov - 0.5 * vds) * vds);
        return XB_MOS_TRIODE;
    }
    *f = 0.5 * beta * vov * vov * clm;
    *fg = beta * vov * clm;
    *fd = 0.5 * beta * vov * vov * lam;
    return XB_MOS_SAT;
}

/* ln(1 + e^x) and its derivative 1 / (1 + e^-x), without overflow */
static void softplus_(double x, double *l, double *sg) {
    if (x > 0) {
        const double e = exp(-x);
        *l = x + log1p(e);
        *sg = 1 / (1 + e);
    } else {
        const double e = exp(x);
        *l = log1p(e);
        *sg = e / (1 + e);
    }
}

/* EKV with the bulk at the source node vs (the column): i, dI/dvd, dI/dvs (include/xb_cell.h); the regime by
 * level 1's rules with vov = V_P. */
static int ekv_(const xb_cell *c, double vg, double vd, double vs, double *i, double *dd, double *ds) {
    const double n = c->ekv_n, ut = c->ekv_ut_v, sc = 1 / (2 * ut), K = 2 * n * c->beta_a_per_v2 * ut * ut;
    const double vp = (vg - vs - c->v_t_v) / n, vds = vd - vs;
    double lf, sf, lr, sr;
    softplus_(sc * vp, &lf, &sf);
    softplus_(sc * (vp - vds), &lr, &sr);
    const double i0 = K * (lf * lf - lr * lr);
    const double di0_dd = 2 * K * lr * sr * sc;                                    /* x_r falls with vd */
    const double di0_ds = -2 * K * lf * sf * sc / n - 2 * K * lr * sr * sc * (1 - 1 / n);
    const double lam = c->lambda_per_v, m = 1 + lam * fabs(vds), sgn = vds > 0 ? 1 : vds < 0 ? -1 : 0;
    *i = i0 * m;
    *dd = di0_dd * m + i0 * lam * sgn;
    *ds = di0_ds * m - i0 * lam * sgn;
    const double a = fabs(vds), vov = vds >= 0 ? vp : (vg - vd - c->v_t_v) / n;
    const int r = vov <= 0 ? XB_MOS_CUTOFF : a < vov ? XB_MOS_TRIODE : XB_MOS_SAT;
    return vds >= 0 ? r : r + XB_MOS_REV_CUTOFF;
}

/* i, dI/dvd, dI/dvs of the symmetric device; returns the regime. */
static int mos(const xb_cell *c, double vg, double vd, double vs, double *i, double *dd, double *ds) {
    if (c->model == XB_MOS_EKV) return ekv_(c, vg, vd, vs, i, dd, ds);
    double f, fg, fd;
    if (vd >= vs) {
        int r = mos_fwd(c, vg - vs, vd - vs, &f, &fg, &fd);
        *i = f; *dd = fd; *ds = -fg - fd;
        return r;
    }
    int r = mos_fwd(c, vg - vd, vs - vd, &f, &fg, &fd);   /* I = -f(vg - vd, vs - vd) */
    *i = -f; *dd = fg + fd; *ds = -fd;
    return r + XB_MOS_REV_CUTOFF;
}

void xb_nmos_iv(const xb_cell *c, double vg, double vd, double vs, double *i, double *di_dvd, double *di_dvs,
                int *regime) {
    XB_ASSERT(c && i);
    double dd, ds;
    int r = mos(c, vg, vd, vs, i, &dd, &ds);
    if (di_dvd) *di_dvd = dd;
    if (di_dvs) *di_dvs = ds;
    if (regime) *regime = r;
}

/* The internal node: h(vd) = g (vr - vd) - I_mos(vd, vc) = 0.  h is strictly decreasing (dI/dvd >= 0 in
 * both orientations) and changes sign between vc and vr, so the root is unique and bracketed; Newton steps
 * that leave the bracket are replaced by bisection, and the bracket shrinks every step. */
void xb_cell_1t1r_current(const xb_cell *c, double g, double vr, double vc, const double *vd_guess, double *i,
                          double *di_dvr, double *di_dvc, double *vd, int *regime) {
    XB_ASSERT(c && i);
    const double vg = c->v_gate_v;
    double lo = vr < vc ? vr : vc, hi = vr < vc ? vc : vr, x, im = 0, dd = 0, ds = 0;
    int reg = XB_MOS_CUTOFF;
    if (!(g > 0)) {   /* no memristor current: the drain follows the column, the cell carries nothing */
        x = vc;
        reg = mos(c, vg, x, vc, &im, &dd, &ds);
        *i = 0;
        if (di_dvr) *di_dvr = 0;
        if (di_dvc) *di_dvc = 0;
        if (vd) *vd = x;
        if (regime) *regime = reg;
        return;
    }
    if (vd_guess && *vd_guess >= lo && *vd_guess <= hi) {
        x = *vd_guess;
    } else {   /* the linear estimate with the transistor at its vds = 0 conductance */
        mos(c, vg, vc, vc, &im, &dd, &ds);
        x = (g * vr + dd * vc) / (g + dd);
        if (!(x >= lo && x <= hi)) x = 0.5 * (lo + hi);
    }
    const double tol = 4 * 2.220446049250313e-16 * (fabs(lo) > fabs(hi) ? fabs(lo) : fabs(hi));
    for (int it = 0; it < 200; it++) {
        reg = mos(c, vg, x, vc, &im, &dd, &ds);
        const double h = g * (vr - x) - im;
        if (h == 0) break;
        if (h > 0) lo = x; else hi = x;     /* h decreasing: the root is above x when h > 0 */
        double xn = x + h / (g + dd);
        if (!(xn > lo && xn < hi)) xn = 0.5 * (lo + hi);
        const double step = fabs(xn - x);
        x = xn;
        if (step <= tol || hi - lo <= tol) {
            reg = mos(c, vg, x, vc, &im, &dd, &ds);
            break;
        }
    }
    /* The two sides agree at the root; take the one less sensitive to the last ulps of x (the memristor's
     * g (vr - x) loses digits when the transistor takes nearly all the voltage, and the other way round).
     * The derivatives by the implicit function theorem: dvd/dvr = g / (g + dd), dvd/dvc = -ds / (g + dd). */
    *i = g <= dd ? g * (vr - x) : im;
    if (di_dvr) *di_dvr = g * dd / (g + dd);
    if (di_dvc) *di_dvc = g * ds / (g + dd);
    if (vd) *vd = x;
    if (regime) *regime = reg;
}

void xb_cell_secant(const xb_cell *c, double v_read, int64_t n, const double *g, double *out) {
    XB_ASSERT(c && v_read > 0 && (n == 0 || (g && out)));
    if (c->type == XB_CELL_RESISTOR) {
        if (out != g) memcpy(out, g, (size_t)n * sizeof(double));
        return;
    }
    for (int64_t k = 0; k < n; k++) {
        double i;
        xb_cell_1t1r_current(c, g[k], v_read, 0, NULL, &i, NULL, NULL, NULL, NULL);
        out[k] = i / v_read;
    }
}

double xb_cell_g0(const xb_cell *c) {
    double i, dd, ds;
    mos(c, c->v_gate_v, 0, 0, &i, &dd, &ds);   /* dI/dvd at vds = 0, source at 0 V: beta (v_gate - v_t) for level 1 */
    return dd;
}

double xb_cell_small_signal(const xb_cell *c, double g) {
    if (c->type == XB_CELL_RESISTOR) return g;
    const double g0 = xb_cell_g0(c);
    return g * g0 / (g + g0);
}

double xb_cell_memristor_for(const xb_cell *c, double t) {
    if (c->type == XB_CELL_RESISTOR) return t;
    const double g0 = xb_cell_g0(c);
    return t * g0 / (g0 - t);
}
