/* progress.c -- a progress bar on stderr: redrawn in place on a terminal (at most 10 times a second),
 * one line per 10% otherwise (logs, CI).  Shows percent, count, rate, ETA and the caller's text. */
#include "xbar.h"

#include <string.h>
#include <unistd.h>

static void fmt_time(double s, char *buf, size_t n) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "--:--"); return; }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

void xb_progress_start(xb_progress *p, const char *label, int64_t total, int enabled) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total > 0 ? total : 1;
    p->enabled = enabled;
    p->t0 = xb_time_s();
    p->last = -1;
}

static void draw(xb_progress *p, const char *extra, int final) {
    double el = xb_time_s() - p->t0;
    double frac = (double)p->done / (double)p->total;
    char eta[16], elapsed[16];
    fmt_time(p->done > 0 ? el * (1.0 / frac - 1.0) : -1, eta, sizeof eta);
    fmt_time(el, elapsed, sizeof elapsed);
    int tty = isatty(2);
    if (tty) {
        char bar[26];
        int fill = (int)(frac * 24);
        for (int i = 0; i < 24; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[24] = 0;
        fprintf(stderr, "\r%s [%s] %3d%% %lld/%lld %s %s %s\033[K", p->label, bar, (int)(100 * frac),
                (long long)p->done, (long long)p->total, extra ? extra : "", final ? elapsed : "ETA",
                final ? "" : eta);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s %3d%% %lld/%lld %s %s %s\n", p->label, (int)(100 * frac), (long long)p->done,
                (long long)p->total, extra ? extra : "", final ? "elapsed" : "ETA", final ? elapsed : eta);
    }
    fflush(stderr);
}

void xb_progress_update(xb_progress *p, int64_t done, const char *extra) {
    if (!p->enabled) return;
    int64_t prev = p->done;
    p->done = done;
    double now = xb_time_s();
    if (isatty(2)) {
        if (now - p->last < 0.1) return;
    } else if ((prev * 10) / p->total == (done * 10) / p->total) {
        return;
    }
    p->last = now;
    draw(p, extra, 0);
}

void xb_progress_end(xb_progress *p, const char *extra) {
    if (!p->enabled) return;
    p->done = p->total;
    draw(p, extra, 1);
}
