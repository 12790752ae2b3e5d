/* flags.c -- table-driven flag parsing with typed values, ranges, defaults and generated usage. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static const char *const type_names[] = {"STR", "INT", "NUM", "", "CHOICE"};

xf_flag *xf_get(xf_flag *flags, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(flags[i].name, name)) return &flags[i];
    XB_ASSERT(!"unknown flag name in xf_get");
    return NULL;
}

void xf_usage(FILE *f, const char *cmd, const char *summary, const xf_flag *flags, int n) {
    fprintf(f, "usage: xbar %s [flags]\n  %s\n\nflags:\n", cmd, summary);
    for (int i = 0; i < n; i++) {
        const xf_flag *x = &flags[i];
        char left[64];
        snprintf(left, sizeof left, "--%s %s", x->name, x->type == XF_CHOICE ? x->range : type_names[x->type]);
        fprintf(f, "  %-30s %s", left, x->help);
        if (x->required) fprintf(f, " (required)");
        else if (x->def) fprintf(f, " (default %s)", x->def);
        if ((x->type == XF_INT || x->type == XF_DOUBLE) && x->range) fprintf(f, " [range %s]", x->range);
        fputc('\n', f);
    }
    fprintf(f, "  %-30s %s\n", "--help", "print this help");
}

static int parse_range(const char *range, double *lo, double *hi) {
    *lo = -INFINITY; *hi = INFINITY;
    if (!range) return 0;
    const char *dots = strstr(range, "..");
    if (!dots) return 0;
    if (dots != range) *lo = strtod(range, NULL);
    if (dots[2]) *hi = strtod(dots + 2, NULL);
    return 1;
}

static int set_value(const char *cmd, xf_flag *x, const char *v) {
    char *end;
    double lo, hi;
    parse_range(x->range, &lo, &hi);
    x->s = v;
    switch (x->type) {
    case XF_STR:
        if (!*v) { fprintf(stderr, "xbar %s: error: --%s needs a non-empty value\n", cmd, x->name); return 2; }
        return 0;
    case XF_BOOL: x->i = 1; return 0;
    case XF_INT: {
        errno = 0;
        long long l = strtoll(v, &end, 10);
        if (errno || end == v || *end) {
            fprintf(stderr, "xbar %s: error: --%s expects an integer, got '%s'\n", cmd, x->name, v);
            return 2;
        }
        if ((double)l < lo || (double)l > hi) {
            fprintf(stderr, "xbar %s: error: --%s %s is out of range %s\n", cmd, x->name, v, x->range);
            return 2;
        }
        x->i = (long)l;
        return 0;
    }
    case XF_DOUBLE: {
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(d)) {
            fprintf(stderr, "xbar %s: error: --%s expects a number, got '%s'\n", cmd, x->name, v);
            return 2;
        }
        if (d < lo || d > hi) {
            fprintf(stderr, "xbar %s: error: --%s %s is out of range %s\n", cmd, x->name, v, x->range);
            return 2;
        }
        x->d = d;
        return 0;
    }
    case XF_CHOICE: {
        size_t len = strlen(v);
        long idx = 0;
        for (const char *p = x->range; p && *p; idx++) {
            const char *bar = strchr(p, '|');
            size_t l = bar ? (size_t)(bar - p) : strlen(p);
            if (l == len && !strncmp(p, v, l)) { x->i = idx; return 0; }
            p = bar ? bar + 1 : p + l;
        }
        fprintf(stderr, "xbar %s: error: --%s '%s' is not one of %s\n", cmd, x->name, v, x->range);
        return 2;
    }
    }
    return 2;
}

int xf_parse(const char *cmd, const char *summary, xf_flag *flags, int n, int argc, char **argv) {
    for (int i = 0; i < n; i++) {
        flags[i].set = 0;
        flags[i].s = NULL; flags[i].i = 0; flags[i].d = 0;
        if (flags[i].def && flags[i].type != XF_BOOL) XB_ASSERT(set_value(cmd, &flags[i], flags[i].def) == 0);
    }
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { xf_usage(stdout, cmd, summary, flags, n); return 1; }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "xbar %s: error: unexpected argument '%s'\nHINT: flags start with --; see 'xbar %s --help'\n",
                    cmd, arg, cmd);
            return 2;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        xf_flag *x = NULL;
        for (int i = 0; i < n; i++)
            if (strlen(flags[i].name) == len && !strncmp(flags[i].name, name, len)) x = &flags[i];
        if (!x) {
            fprintf(stderr, "xbar %s: error: unknown flag '--%.*s'\nHINT: see 'xbar %s --help' for the flags\n",
                    cmd, (int)len, name, cmd);
            return 2;
        }
        if (x->set) {
            fprintf(stderr, "xbar %s: error: --%s given twice\n", cmd, x->name);
            return 2;
        }
        const char *v;
        if (x->type == XF_BOOL) {
            if (eq) { fprintf(stderr, "xbar %s: error: --%s takes no value\n", cmd, x->name); return 2; }
            v = "1";
        } else if (eq) {
            v = eq + 1;
        } else {
            if (a + 1 >= argc) { fprintf(stderr, "xbar %s: error: --%s needs a value\n", cmd, x->name); return 2; }
            v = argv[++a];
        }
        int rc = set_value(cmd, x, v);
        if (rc) return rc;
        x->set = 1;
    }
    for (int i = 0; i < n; i++)
        if (flags[i].required && !flags[i].set) {
            fprintf(stderr, "xbar %s: error: --%s is required\nHINT: see 'xbar %s --help'\n", cmd, flags[i].name, cmd);
            return 2;
        }
    return 0;
}

int cli_fail(const char *cmd) {
    fprintf(stderr, "xbar %s: error: %s\n", cmd, xb_last_error());
    return 1;
}

int cli_default_threads(void) {
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

int cli_model_precisions(const char *model, const xb_model *m, const xb_hw *hw, xb_layer_precision *prec, int *any) {
    xb_qw_spec *specs = calloc((size_t)xb_model_n_mapped(m) + 1, sizeof *specs);
    char *text = NULL, path[600];
    int wany = 0;
    *any = 0;
    if (!specs) return xb_errorf(XB_ERR_NOMEM, "out of memory for the layers' precisions");
    xb_status st = xb_model_text(model, &text, path, sizeof path);
    if (!st) st = xb_quant_specs(text, path, m, specs, &wany);
    if (!st) *any = xb_hw_quant_precisions(hw, m, wany ? specs : NULL, prec);
    free(text);
    free(specs);
    return st;
}
