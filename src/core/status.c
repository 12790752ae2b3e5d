/* status.c -- error messages (thread-local last error), assertions and checked allocation. */
#include "xbar.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[] = {
    "ok", "I/O error", "format error", "config error", "shape error", "bad argument",
    "out of memory", "numeric error", "unsupported", "wrong state",
};
_Static_assert(sizeof status_names / sizeof *status_names == XB_STATUS_COUNT, "status table");

static _Thread_local char last_error[2048];

const char *xb_status_str(xb_status s) {
    return (unsigned)s < XB_STATUS_COUNT ? status_names[s] : "unknown status";
}

xb_status xb_errorf(xb_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

const char *xb_last_error(void) { return last_error[0] ? last_error : "no error recorded"; }
void xb_clear_error(void) { last_error[0] = 0; }

void xb_abort(const char *file, int line, const char *expr) {
    fprintf(stderr, "xbar: internal error at %s:%d: assertion '%s' failed.\n"
                    "HINT: this is a bug in xbar, not in your input; please report it with the command "
                    "that triggered it.\n", file, line, expr);
    fflush(stderr);
    abort();
}

void *xb_try_malloc(size_t n) {
    void *p = NULL;
    if (n == 0) n = 1;
    size_t rounded = (n + 63) & ~(size_t)63;
    if (rounded < n || posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void *xb_malloc(size_t n) {
    void *p = xb_try_malloc(n);
    if (!p) {
        fprintf(stderr, "xbar: out of memory allocating %zu bytes.\n"
                        "HINT: use a smaller --batch or model, or free memory on this machine.\n", n);
        exit(3);
    }
    return p;
}

void *xb_calloc(size_t n) {
    void *p = xb_malloc(n);
    memset(p, 0, n);
    return p;
}

void xb_free(void *p) { free(p); }
