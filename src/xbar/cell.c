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
    return (xb_cell){.type = XB_CELL_1T1R, .v_gate_v = 0.7, .beta_a_per_v2 = 2e-4, .v_t_v = 0.4,
                     .lambda_per_v = 0.05};
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
    const struct { const char *name; double v; } p[] = {
        {"v_gate_v", c->v_gate_v}, {"beta_a_per_v2", c->beta_a_per_v2}, {"v_t_v", c->v_t_v},
        {"lambda_per_v", c->lambda_per_v}};
    for (int k = 0; k < 4; k++)
        if (!isfinite(p[k].v))
            return xb_errorf(XB_ERR_ARG, "cell: %s = %g is not finite. HINT: give a finite number", p[k].name,
                             p[k].v);
    if (!(c->beta_a_per_v2 > 0))
        return xb_errorf(XB_ERR_ARG, "cell: beta_a_per_v2 = %g A/V^2 must be > 0. HINT: the transistor's KP * W/L, "
                         "e.g. 2e-4", c->beta_a_per_v2);
    if (c->lambda_per_v < 0)
        return xb_errorf(XB_ERR_ARG, "cell: lambda_per_v = %g 1/V must be >= 0. HINT: 0 turns channel-length "
                         "modulation off", c->lambda_per_v);
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

/* i, dI/dvd, dI/dvs of the symmetric device; returns the regime. */
static int mos(const xb_cell *c, double vg, double vd, double vs, double *i, double *dd, double *ds) {
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

double xb_cell_small_signal(const xb_cell *c, double g) {
    if (c->type == XB_CELL_RESISTOR) return g;
    const double g0 = c->beta_a_per_v2 * (c->v_gate_v - c->v_t_v);
    return g * g0 / (g + g0);
}

double xb_cell_memristor_for(const xb_cell *c, double t) {
    if (c->type == XB_CELL_RESISTOR) return t;
    const double g0 = c->beta_a_per_v2 * (c->v_gate_v - c->v_t_v);
    return t * g0 / (g0 - t);
}
