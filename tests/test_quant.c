/* test_quant.c -- the quantization-aware training quantizers (include/xb_quant.h): every weight kind,
 * per matrix and per row, against xb_qw_apply_ref and the scales' definitions (random matrices with a
 * zero row, exact half-step ties rounding to even), hand-computed cases of each kind, stochastic rounding
 * (unbiased, on the two neighbouring grid points, reproducible per (seed, counter), independent of the
 * thread count), the spec checks' messages, non-finite weights, and the activation quantizers' grids,
 * masks and PACT's alpha gradient against a scalar reference. */
#include "testutil.h"

#include <float.h>

static const xb_qw_spec spec0 = {.kind = XB_QW_NONE, .bits = 0, .per_channel = 0, .stochastic = 0, .delta = 0.7};

static xb_qw_spec spec_(xb_qw_kind kind, int bits, int per_channel) {
    xb_qw_spec s = spec0;
    s.kind = kind;
    s.bits = bits;
    s.per_channel = per_channel;
    return s;
}

static void fill_normal(float *w, int64_t n, double sd, uint64_t seed) {
    xb_rng r;
    xb_rng_seed(&r, seed, "test");
    for (int64_t i = 0; i < n; i++) w[i] = (float)(sd * xb_rng_normal(&r));
}

static int is_int_(float c) { return c == rintf(c); }

/* The scales of one group of n weights by their definitions (header's table), in double. */
static void want_scales(const xb_qw_spec *s, int64_t n, const float *w, double *sc) {
    double sabs = 0, mx = 0, sp = 0, np = 0, sn = 0, nn = 0;
    for (int64_t j = 0; j < n; j++) {
        sabs += fabs(w[j]);
        mx = fmax(mx, fabs(w[j]));
        if (w[j] > 0) { sp += w[j]; np++; }
        if (w[j] < 0) { sn -= w[j]; nn++; }
    }
    double mean = n ? sabs / n : 0, D = s->delta * mean;
    switch (s->kind) {
    case XB_QW_UNIFORM: sc[0] = mx > 0 ? mx / ((1 << (s->bits - 1)) - 1) : 1; break;
    case XB_QW_BINARY: sc[0] = mean; break;
    case XB_QW_DOREFA: sc[0] = 1.0 / ((1 << s->bits) - 1); break;
    case XB_QW_TERNARY_SYM: {
        double t = 0, c = 0;
        for (int64_t j = 0; j < n; j++) if (fabs(w[j]) > D) { t += fabs(w[j]); c++; }
        sc[0] = c ? t / c : 0;
        break;
    }
    case XB_QW_TERNARY_ASYM: {
        double Dp = np ? s->delta * sp / np : 0, Dm = nn ? s->delta * sn / nn : 0, ta = 0, ca = 0, tb = 0, cb = 0;
        for (int64_t j = 0; j < n; j++) {
            if (w[j] > Dp) { tb += w[j]; cb++; }
            if (w[j] < -Dm) { ta -= w[j]; ca++; }
        }
        sc[0] = ca ? ta / ca : 0;
        sc[1] = cb ? tb / cb : 0;
        break;
    }
    default: break;
    }
}

/* max|tanh(w)| over a group (1 when 0): DOREFA's normalization */
static double tanh_max(int64_t n, const float *w) {
    double M = 0;
    for (int64_t j = 0; j < n; j++) M = fmax(M, fabs(tanh(w[j])));
    return M > 0 ? M : 1;
}

/* xb_qw_apply on a (rows, k) matrix against the reference, the scales' definitions, the codes' ranges and
 * value = scale x code.  Returns the number of DOREFA codes one step off the reference at a near-tie:
 * t (2^b - 1) in float32 (tanhf, then the division and the product) is off the double one by up to about
 * 2^-21 (2^b - 1), so that a code may round the other way within that distance of a half step (a few in
 * a thousand at 16 bits).  Every other difference fails, and so do more flips than such ties explain. */
static int check_apply(const xb_qw_spec *s, int rows, int k, const float *w, const char *what) {
    const int64_t n = (int64_t)rows * k;
    const int spr = xb_qw_scales_per_row(s), groups = s->per_channel ? rows : 1;
    const int64_t gn = s->per_channel ? k : n;
    float *wq = malloc(n * sizeof(float)), *code = malloc(n * sizeof(float)), *ste = malloc(n * sizeof(float));
    float *wq2 = malloc(n * sizeof(float)), *scale = malloc((rows * 2 + 2) * sizeof(float));
    double *ref = malloc(n * sizeof(double)), *rste = malloc(n * sizeof(double));
    xb_status st = xb_qw_apply(s, rows, k, w, wq, code, scale, ste, 1, 0);
    if (st) fail_msg("%s: %s", what, xb_last_error());
    xb_qw_apply_ref(s, rows, k, w, ref, rste);
    /* the optional outputs off: the same values */
    assert_int_equal(xb_qw_apply(s, rows, k, w, wq2, NULL, NULL, NULL, 1, 0), XB_OK);
    if (memcmp(wq, wq2, n * sizeof(float))) fail_msg("%s: values differ without code/scale/ste", what);
    int flips = 0, near = 0;
    const double Q = s->kind == XB_QW_UNIFORM ? (1 << (s->bits - 1)) - 1 : (1 << s->bits) - 1;
    for (int g = 0; g < groups; g++) {
        const float *wg = w + g * gn;
        double sc[2] = {0, 0};
        want_scales(s, gn, wg, sc);
        for (int i = 0; i < spr; i++) {
            double got = scale[g * spr + i];
            if (!(fabs(got - sc[i]) <= 1e-6 * fabs(sc[i])))
                fail_msg("%s: group %d scale %d = %.9g, want %.9g", what, g, i, got, sc[i]);
        }
        const double M = tanh_max(gn, wg);
        for (int64_t j = 0; j < gn; j++) {
            const int64_t i = g * gn + j;
            const float c = code[i];
            /* codes: integers in range, and the value is the scale times the code */
            int ok = 1;
            float want_v = 0;
            switch (s->kind) {
            case XB_QW_NONE: ok = c == w[i]; want_v = w[i]; break;
            case XB_QW_UNIFORM: ok = is_int_(c) && fabsf(c) <= Q; want_v = c * scale[g * spr]; break;
            case XB_QW_BINARY: ok = c == 1 || c == -1; want_v = c * scale[g * spr]; break;
            case XB_QW_TERNARY: ok = c == 1 || c == -1 || c == 0; want_v = c; break;
            case XB_QW_TERNARY_SYM: ok = c == 1 || c == -1 || c == 0; want_v = c * scale[g * spr]; break;
            case XB_QW_TERNARY_ASYM:
                ok = c == 1 || c == -1 || c == 0;
                want_v = c > 0 ? scale[g * 2 + 1] : c < 0 ? -scale[g * 2] : 0.0f;
                break;
            case XB_QW_DOREFA:
                ok = is_int_(c) && fabsf(c) <= Q && is_int_((c + (float)Q) / 2);
                want_v = c * scale[g * spr];
                break;
            default: break;
            }
            if (!ok) fail_msg("%s: element %lld: code %g is not a code of %s", what, (long long)i, c,
                              xb_qw_names[s->kind]);
            if (wq[i] != want_v) fail_msg("%s: element %lld: value %.9g is not scale x code %.9g", what, (long long)i,
                                          wq[i], want_v);
            /* values: the reference's to float rounding; DOREFA may round a near-tie the other way */
            double d = fabs(wq[i] - ref[i]), v = (tanh(w[i]) / (2 * M) + 0.5) * Q;
            const int near_tie = s->kind == XB_QW_DOREFA && fabs(v - floor(v) - 0.5) < 0x1p-21 * Q + 1e-6;
            near += near_tie;
            if (!(d <= 2e-6 * fabs(ref[i]))) {
                if (near_tie && fabs(d - 2 / Q) < 0.01 * (2 / Q) + 2e-7) flips++; /* one code: 2 / Q */
                else fail_msg("%s: element %lld (w %.9g): %.9g, reference %.9g", what, (long long)i, w[i], wq[i],
                              ref[i]);
            }
            if (!(fabs(ste[i] - rste[i]) <= 1e-5 * fmax(1, fabs(rste[i]))))
                fail_msg("%s: element %lld (w %.9g): ste %.9g, reference %.9g", what, (long long)i, w[i], ste[i],
                         rste[i]);
        }
    }
    if (flips > near) fail_msg("%s: %d near-tie flips of %d near-ties", what, flips, near);
    free(wq); free(code); free(ste); free(wq2); free(scale); free(ref); free(rste);
    return flips;
}

/* ---- specs --------------------------------------------------------------------------------------- */

static void test_names_and_sizes(void **state) {
    (void)state;
    const char *qw[] = {"none", "uniform", "binary", "ternary", "ternary-sym", "ternary-asym", "dorefa"};
    for (int i = 0; i < XB_QW_COUNT; i++) assert_string_equal(xb_qw_names[i], qw[i]);
    const char *qa[] = {"uniform", "pact", "dorefa", "ternary", "signed"};
    for (int i = 0; i < XB_QA_COUNT; i++) assert_string_equal(xb_qa_names[i], qa[i]);
    const int spr[] = {0, 1, 1, 0, 1, 2, 1}, bits[] = {32, 6, 1, 2, 2, 2, 6};
    for (int i = 0; i < XB_QW_COUNT; i++) {
        xb_qw_spec s = spec_((xb_qw_kind)i, 6, 0);
        assert_int_equal(xb_qw_scales_per_row(&s), spr[i]);
        assert_int_equal(xb_qw_bits(&s), bits[i]);
    }
}

static void test_check_errors(void **state) {
    (void)state;
    const char *where = "model.cfg:12";
    xb_qw_spec s = spec_(XB_QW_UNIFORM, 0, 0);
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "HINT");
    s.bits = 33;
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "HINT");
    assert_non_null(strstr(xb_last_error(), "33"));
    s.bits = 1;
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "binary");
    s = spec_(XB_QW_BINARY, 1, 0);
    s.stochastic = 1;
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "HINT");
    assert_non_null(strstr(xb_last_error(), "stochastic"));
    s = spec_(XB_QW_TERNARY_SYM, 2, 1);
    s.stochastic = 1;
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "HINT");
    s.stochastic = 0;
    s.delta = 2;
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "delta");
    s.delta = 0;
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "HINT");
    s.delta = NAN;
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "HINT");
    s = spec_(XB_QW_DOREFA, 0, 0);
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "HINT");
    s.bits = 17;
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "HINT");
    s = spec_((xb_qw_kind)99, 4, 0);
    xbt_assert_error(xb_qw_check(&s, where), XB_ERR_ARG, where, "HINT");
    /* what is valid */
    const xb_qw_spec ok[] = {spec_(XB_QW_NONE, 0, 0),       spec_(XB_QW_UNIFORM, 2, 0), spec_(XB_QW_UNIFORM, 16, 1),
                             spec_(XB_QW_BINARY, 0, 1),     spec_(XB_QW_TERNARY, 0, 0), spec_(XB_QW_TERNARY_ASYM, 0, 1),
                             spec_(XB_QW_DOREFA, 1, 0),     spec_(XB_QW_DOREFA, 16, 1)};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (xb_qw_check(&ok[i], where)) fail_msg("spec %zu: %s", i, xb_last_error());
    s = spec_(XB_QW_UNIFORM, 8, 0);
    s.stochastic = 1;
    assert_int_equal(xb_qw_check(&s, where), XB_OK);
    s.kind = XB_QW_DOREFA;
    assert_int_equal(xb_qw_check(&s, where), XB_OK);
    /* xb_qw_apply checks its spec and arguments too, and does not abort */
    float w[4] = {1, 2, 3, 4}, wq[4];
    s = spec_(XB_QW_UNIFORM, 1, 0);
    xbt_assert_error(xb_qw_apply(&s, 2, 2, w, wq, NULL, NULL, NULL, 0, 0), XB_ERR_ARG, "xb_qw_apply", "HINT");
    s.bits = 4;
    xbt_assert_error(xb_qw_apply(&s, -1, 2, w, wq, NULL, NULL, NULL, 0, 0), XB_ERR_ARG, "xb_qw_apply", "HINT");
    xbt_assert_error(xb_qw_apply(&s, 2, 2, w, w, NULL, NULL, NULL, 0, 0), XB_ERR_ARG, "xb_qw_apply", "HINT");
    xbt_assert_error(xb_qw_apply(NULL, 2, 2, w, wq, NULL, NULL, NULL, 0, 0), XB_ERR_ARG, "xb_qw_apply", "HINT");
}

static void test_nonfinite(void **state) {
    (void)state;
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int kind = 0; kind < XB_QW_COUNT; kind++)
        for (int pc = 0; pc < 2; pc++)
            for (int b = 0; b < 3; b++) {
                float w[12], wq[12], sc[8];
                fill_normal(w, 12, 1, 7);
                w[7] = bad[b]; /* row 1, column 3 */
                xb_qw_spec s = spec_((xb_qw_kind)kind, 4, pc);
                xbt_assert_error(xb_qw_apply(&s, 3, 4, w, wq, NULL, sc, NULL, 0, 0), XB_ERR_NUMERIC, "[1, 3]",
                                 "HINT");
            }
}

/* ---- weights against the reference ----------------------------------------------------------------- */

static void test_apply_vs_ref(void **state) {
    (void)state;
    enum { R = 12, K = 37 };
    float w[R * K];
    fill_normal(w, R * K, 0.7, 11);       /* some |w| > 1: the hard-tanh ste is 0 there */
    memset(w + 3 * K, 0, K * sizeof(float)); /* a zero row */
    w[5 * K] = 0;                           /* zeros elsewhere: binary's sign(0) = +1, dorefa's tie */
    w[5 * K + 1] = -0.0f;
    int total_flips = 0, cases = 0;
    const int ubits[] = {2, 3, 4, 8, 16}, dbits[] = {1, 2, 3, 4, 8, 16};
    for (int pc = 0; pc < 2; pc++) {
        for (int kind = 0; kind < XB_QW_COUNT; kind++) {
            const int *bl = kind == XB_QW_UNIFORM ? ubits : kind == XB_QW_DOREFA ? dbits : ubits;
            int nb = kind == XB_QW_UNIFORM ? 5 : kind == XB_QW_DOREFA ? 6 : 1;
            for (int b = 0; b < nb; b++) {
                char what[96];
                xb_qw_spec s = spec_((xb_qw_kind)kind, bl[b], pc);
                snprintf(what, sizeof what, "%s %d bits %s", xb_qw_names[kind], bl[b], pc ? "per row" : "per matrix");
                total_flips += check_apply(&s, R, K, w, what);
                if (kind >= XB_QW_TERNARY && kind <= XB_QW_TERNARY_ASYM) { /* another delta */
                    s.delta = 0.3;
                    total_flips += check_apply(&s, R, K, w, what);
                }
                cases++;
            }
        }
    }
    if (total_flips > 12) fail_msg("%d dorefa codes at near-ties differ from the double reference", total_flips);
    if (getenv("XBT_VERBOSE")) fprintf(stderr, "  %d cases, %d near-tie flips\n", cases, total_flips);
    /* a matrix above the threading threshold: the same as the reference and as on one thread */
    const int R2 = xbt_sanitized() ? 40 : 128, K2 = 600;
    float *big = malloc((size_t)R2 * K2 * sizeof(float));
    fill_normal(big, (int64_t)R2 * K2, 0.05, 12);
    memset(big + 7 * K2, 0, K2 * sizeof(float));
    for (int pc = 0; pc < 2; pc++) {
        xb_qw_spec s = spec_(XB_QW_UNIFORM, 8, pc);
        check_apply(&s, R2, K2, big, "uniform 8 bits, large");
        s = spec_(XB_QW_TERNARY_ASYM, 2, pc);
        check_apply(&s, R2, K2, big, "ternary-asym, large");
        s = spec_(XB_QW_DOREFA, 4, pc);
        total_flips = check_apply(&s, R2, K2, big, "dorefa 4 bits, large");
        if (total_flips > 3) fail_msg("%d dorefa near-tie flips on the large matrix", total_flips);
        s = spec_(XB_QW_DOREFA, 16, pc);
        check_apply(&s, R2, K2, big, "dorefa 16 bits, large");
    }
    free(big);
}

/* the thread count changes nothing, deterministic or stochastic */
static void test_threads_identical(void **state) {
    (void)state;
    const int R = xbt_sanitized() ? 120 : 256, K = 576; /* above the 65536 threshold */
    const int64_t n = (int64_t)R * K;
    float *w = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    float *sa = malloc(R * 2 * sizeof(float)), *sb = malloc(R * 2 * sizeof(float));
    fill_normal(w, n, 0.1, 13);
    int saved = xb_get_threads();
    for (int kind = 1; kind < XB_QW_COUNT; kind++)
        for (int pc = 0; pc < 2; pc++)
            for (int st = 0; st < 2; st++) {
                if (st && kind != XB_QW_UNIFORM && kind != XB_QW_DOREFA) continue;
                xb_qw_spec s = spec_((xb_qw_kind)kind, 4, pc);
                s.stochastic = st;
                xb_set_threads(1);
                assert_int_equal(xb_qw_apply(&s, R, K, w, a, NULL, sa, NULL, 5, 9), XB_OK);
                xb_set_threads(2);
                assert_int_equal(xb_qw_apply(&s, R, K, w, b, NULL, sb, NULL, 5, 9), XB_OK);
                int ns = xb_qw_scales_per_row(&s) * (pc ? R : 1);
                if (memcmp(a, b, n * sizeof(float)) || memcmp(sa, sb, ns * sizeof(float)))
                    fail_msg("%s per_channel %d stochastic %d: 1 and 2 threads differ", xb_qw_names[kind], pc, st);
            }
    xb_set_threads(saved);
    free(w); free(a); free(b); free(sa); free(sb);
}

/* ties: values exactly at half steps round to the even code, per matrix and per row */
static void test_ties_to_even(void **state) {
    (void)state;
    for (int bits = 2; bits <= 8; bits++) {
        const int Q = (1 << (bits - 1)) - 1, K = 2 * Q + 1;
        const float step = 0x1p-5f;
        float w[2 * 255], wq[2 * 255], code[2 * 255], sc[2];
        double ref[2 * 255];
        for (int r = 0; r < 2; r++) {
            for (int c = -Q; c < Q; c++) w[r * K + c + Q] = (r ? -1 : 1) * (c + 0.5f) * step; /* every half step */
            w[r * K + 2 * Q] = Q * step;                                                   /* the max: s = step */
        }
        for (int pc = 0; pc < 2; pc++) {
            xb_qw_spec s = spec_(XB_QW_UNIFORM, bits, pc);
            assert_int_equal(xb_qw_apply(&s, 2, K, w, wq, code, sc, NULL, 0, 0), XB_OK);
            xb_qw_apply_ref(&s, 2, K, w, ref, NULL);
            assert_true(sc[0] == step && (!pc || sc[1] == step));
            float wq2[2 * 255]; /* the path without codes */
            assert_int_equal(xb_qw_apply(&s, 2, K, w, wq2, NULL, NULL, NULL, 0, 0), XB_OK);
            assert_memory_equal(wq, wq2, 2 * K * sizeof(float));
            for (int i = 0; i < 2 * K; i++) {
                double v = w[i] / step, lo = floor(v);
                double even = v == lo ? v : fmod(lo, 2) == 0 ? lo : lo + 1;
                if (code[i] != even || wq[i] != even * step || ref[i] != even * step)
                    fail_msg("%d bits: w/s = %g: code %g, value %g, reference %g; want the even code %g", bits, v,
                             code[i], wq[i], ref[i], even);
            }
        }
    }
}

/* ---- hand-computed cases ------------------------------------------------------------------------- */

static void expect_(const char *what, int n, const float *got, const double *want) {
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-6 * fmax(1, fabs(want[i]))))
            fail_msg("%s[%d] = %.9g, want %.9g", what, i, got[i], want[i]);
}

static void test_hand_cases(void **state) {
    (void)state;
    float wq[16], code[16], sc[4], ste[16];
    /* UNIFORM 3 bits (Q = 3): max 0.75, s = 0.25; -1.5 -> -2 and 0.5 -> 0 (ties to even) */
    {
        const float w[6] = {0.75f, -0.375f, 0.125f, 0.3125f, 0, -0.75f};
        xb_qw_spec s = spec_(XB_QW_UNIFORM, 3, 0);
        assert_int_equal(xb_qw_apply(&s, 1, 6, w, wq, code, sc, ste, 0, 0), XB_OK);
        expect_("uniform code", 6, code, (double[]){3, -2, 0, 1, 0, -3});
        expect_("uniform value", 6, wq, (double[]){0.75, -0.5, 0, 0.25, 0, -0.75});
        expect_("uniform ste", 6, ste, (double[]){1, 1, 1, 1, 1, 1});
        assert_true(sc[0] == 0.25f);
        /* all zero: s = 1, codes 0 */
        const float z[3] = {0, 0, 0};
        assert_int_equal(xb_qw_apply(&s, 1, 3, z, wq, code, sc, NULL, 0, 0), XB_OK);
        assert_true(sc[0] == 1 && code[0] == 0 && wq[2] == 0);
    }
    /* BINARY: s = mean|w| = 0.8; sign(0) = sign(-0) = +1; ste 0 where |w| > 1 */
    {
        const float w[5] = {0, -0.0f, 0.5f, -1.5f, 2};
        xb_qw_spec s = spec_(XB_QW_BINARY, 1, 0);
        assert_int_equal(xb_qw_apply(&s, 1, 5, w, wq, code, sc, ste, 0, 0), XB_OK);
        expect_("binary code", 5, code, (double[]){1, 1, 1, -1, 1});
        expect_("binary value", 5, wq, (double[]){0.8, 0.8, 0.8, -0.8, 0.8});
        expect_("binary ste", 5, ste, (double[]){1, 1, 1, 0, 0});
        expect_("binary scale", 1, sc, (double[]){0.8});
    }
    /* TWN on 1x6: mean|w| = 4.125 / 6 = 0.6875, D = 0.48125; selected 1.5 -0.75 0.5 -1: s = 3.75 / 4 */
    {
        const float w[6] = {1.5f, -0.75f, 0.25f, -0.125f, 0.5f, -1.0f};
        xb_qw_spec s = spec_(XB_QW_TERNARY_SYM, 2, 0);
        assert_int_equal(xb_qw_apply(&s, 1, 6, w, wq, code, sc, ste, 0, 0), XB_OK);
        expect_("twn code", 6, code, (double[]){1, -1, 0, 0, 1, -1});
        expect_("twn value", 6, wq, (double[]){0.9375, -0.9375, 0, 0, 0.9375, -0.9375});
        expect_("twn ste", 6, ste, (double[]){0, 1, 1, 1, 1, 1});
        expect_("twn scale", 1, sc, (double[]){0.9375});
        s.kind = XB_QW_TERNARY; /* unweighted: the codes */
        assert_int_equal(xb_qw_apply(&s, 1, 6, w, wq, code, sc, ste, 0, 0), XB_OK);
        expect_("ternary value", 6, wq, (double[]){1, -1, 0, 0, 1, -1});
        s.kind = XB_QW_TERNARY_SYM;
        s.delta = 1.5; /* D = 1.03125: only 1.5 is selected */
        assert_int_equal(xb_qw_apply(&s, 1, 6, w, wq, code, sc, ste, 0, 0), XB_OK);
        expect_("twn delta 1.5", 6, wq, (double[]){1.5, 0, 0, 0, 0, 0});
    }
    /* a weight exactly at the threshold is not selected (|w| > D): mean|w| = 2, delta 1/2, D = 1 */
    {
        const float w[4] = {1, -1, 1, 5};
        xb_qw_spec s = spec_(XB_QW_TERNARY_SYM, 2, 0);
        s.delta = 0.5;
        assert_int_equal(xb_qw_apply(&s, 1, 4, w, wq, code, sc, NULL, 0, 0), XB_OK);
        expect_("twn at D", 4, wq, (double[]){0, 0, 0, 5});
        s.kind = XB_QW_TERNARY;
        assert_int_equal(xb_qw_apply(&s, 1, 4, w, wq, code, sc, NULL, 0, 0), XB_OK);
        expect_("ternary at D", 4, wq, (double[]){0, 0, 0, 1});
        const float w2[4] = {1, 3, -2, -6}; /* mean(w | w > 0) = 2: D+ = 1; mean(-w | w < 0) = 4: D- = 2 */
        s.kind = XB_QW_TERNARY_ASYM;
        assert_int_equal(xb_qw_apply(&s, 1, 4, w2, wq, code, sc, NULL, 0, 0), XB_OK);
        expect_("asym at D", 4, wq, (double[]){0, 3, 0, -6});
    }
    /* TERNARY_ASYM, two rows: row 0 positives 2 1 .5 .1 (mean .9, D+ = .63): b = 1.5; negatives .25 1 3
     * (mean 4.25/3, D- = .991667): a = 2.  Row 1: no negative weight: a = 0, D- = 0, nothing at -1. */
    {
        const float w[16] = {2, 1, 0.5f, -0.25f, -1, -3, 0, 0.1f, /* row 1 */ 1, 2, 3, 0, 0, 0.5f, 0, 0.25f};
        xb_qw_spec s = spec_(XB_QW_TERNARY_ASYM, 2, 1);
        assert_int_equal(xb_qw_apply(&s, 2, 8, w, wq, code, sc, ste, 0, 0), XB_OK);
        /* row 1: positives 1 2 3 .5 .25 (mean 1.35, D+ = .945): 1 2 3 selected, b = 2 */
        expect_("asym code", 16, code, (double[]){1, 1, 0, 0, -1, -1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0});
        expect_("asym value", 16, wq, (double[]){1.5, 1.5, 0, 0, -2, -2, 0, 0, 2, 2, 2, 0, 0, 0, 0, 0});
        expect_("asym scales (a, b per row)", 4, sc, (double[]){2, 1.5, 0, 2});
        expect_("asym ste", 8, ste, (double[]){0, 1, 1, 1, 1, 0, 1, 1});
        s.per_channel = 0; /* one pair for the matrix: positives mean 10.35/9 = 1.15, D+ = .805 -> 2 1 1 2 3 */
        assert_int_equal(xb_qw_apply(&s, 2, 8, w, wq, code, sc, NULL, 0, 0), XB_OK);
        expect_("asym matrix scales", 2, sc, (double[]){2, 9.0 / 5});
    }
    /* DOREFA 1 bit: t = tanh(w) / (2 tanh(.5)) + 1/2: w = .5 -> t = 1 -> +1; -.2 -> t = .286 -> -1;
     * 0 -> t = 1/2 -> code 0 (tie to even) -> -1.  ste = (1 - tanh^2) / tanh(.5) */
    {
        const float w[3] = {0.5f, -0.2f, 0};
        xb_qw_spec s = spec_(XB_QW_DOREFA, 1, 0);
        assert_int_equal(xb_qw_apply(&s, 1, 3, w, wq, code, sc, ste, 0, 0), XB_OK);
        expect_("dorefa1 code", 3, code, (double[]){1, -1, -1});
        expect_("dorefa1 value", 3, wq, (double[]){1, -1, -1});
        const double M = tanh(0.5);
        expect_("dorefa1 ste", 3, ste, (double[]){(1 - M * M) / M, (1 - tanh(0.2) * tanh(0.2)) / M, 1 / M});
        expect_("dorefa1 scale", 1, sc, (double[]){1});
    }
    /* DOREFA 2 bits (Q = 3): w = .5 -> 3 -> c 3 -> 1; -.5 -> -1; .1: t Q = 1.82 -> 2 -> 1/3; 0: 1.5 -> 2
     * (tie to even) -> 1/3; -.05: 1.34 -> 1 -> -1/3 */
    {
        const float w[5] = {0.5f, -0.5f, 0.1f, 0, -0.05f};
        xb_qw_spec s = spec_(XB_QW_DOREFA, 2, 0);
        assert_int_equal(xb_qw_apply(&s, 1, 5, w, wq, code, sc, NULL, 0, 0), XB_OK);
        expect_("dorefa2 code", 5, code, (double[]){3, -3, 1, 1, -1});
        expect_("dorefa2 value", 5, wq, (double[]){1, -1, 1.0 / 3, 1.0 / 3, -1.0 / 3});
        expect_("dorefa2 scale", 1, sc, (double[]){1.0 / 3});
        /* all zero: max|tanh| taken as 1: t = 1/2 everywhere, ste 1 */
        const float z[2] = {0, 0};
        assert_int_equal(xb_qw_apply(&s, 1, 2, z, wq, code, sc, ste, 0, 0), XB_OK);
        expect_("dorefa2 zero", 2, wq, (double[]){1.0 / 3, 1.0 / 3});
        expect_("dorefa2 zero ste", 2, ste, (double[]){1, 1});
    }
    /* zero rows per channel: binary and twn give scale 0 and value 0, asym both scales 0 */
    {
        const float z[4] = {0, 0, 0, 0};
        const xb_qw_kind kinds[3] = {XB_QW_BINARY, XB_QW_TERNARY_SYM, XB_QW_TERNARY_ASYM};
        for (int i = 0; i < 3; i++) {
            xb_qw_spec s = spec_(kinds[i], 2, 1);
            sc[0] = sc[1] = sc[2] = sc[3] = -1;
            assert_int_equal(xb_qw_apply(&s, 2, 2, z, wq, code, sc, NULL, 0, 0), XB_OK);
            for (int j = 0; j < 4; j++) assert_true(wq[j] == 0);
            for (int j = 0; j < 2 * xb_qw_scales_per_row(&s); j++) assert_true(sc[j] == 0);
        }
    }
    /* NONE: the weights unchanged, ste 1 */
    {
        const float w[3] = {0.3f, -7, 1e-3f};
        xb_qw_spec s = spec_(XB_QW_NONE, 0, 0);
        assert_int_equal(xb_qw_apply(&s, 1, 3, w, wq, code, NULL, ste, 0, 0), XB_OK);
        assert_memory_equal(w, wq, sizeof w);
        assert_true(ste[0] == 1 && ste[1] == 1 && ste[2] == 1);
    }
}

/* ---- stochastic rounding ------------------------------------------------------------------------- */

static void test_stochastic(void **state) {
    (void)state;
    enum { R = 6, K = 40, N = 2000 };
    float w[R * K], wq[R * K], code[R * K], sc[R], wq2[R * K];
    fill_normal(w, R * K, 0.5, 21);
    w[3] = 0; /* an exact grid point: always itself */
    for (int kind = 0; kind < 2; kind++)
        for (int pc = 0; pc < 2; pc++) {
            xb_qw_spec s = spec_(kind ? XB_QW_DOREFA : XB_QW_UNIFORM, kind ? 3 : 4, pc);
            s.stochastic = 1;
            const double Q = 7; /* uniform 4 bits: 2^3 - 1; dorefa 3 bits: 2^3 - 1 */
            static double sum[R * K], vgrid[R * K];
            int up[R * K] = {0};
            memset(sum, 0, sizeof sum);
            /* v: the value on the integer grid (scales from a first call: they do not depend on the draws) */
            assert_int_equal(xb_qw_apply(&s, R, K, w, wq, code, sc, NULL, 77, 0), XB_OK);
            for (int r = 0; r < R; r++) {
                const double M = tanh_max(pc ? K : R * K, pc ? w + r * K : w);
                for (int j = 0; j < K; j++) {
                    const int i = r * K + j;
                    vgrid[i] = kind ? (tanh(w[i]) / (2 * M) + 0.5) * Q : w[i] / (double)sc[pc ? r : 0];
                }
            }
            for (int c = 0; c < N; c++) {
                assert_int_equal(xb_qw_apply(&s, R, K, w, wq, code, sc, NULL, 77, (uint64_t)c), XB_OK);
                for (int r = 0; r < R; r++) {
                    for (int j = 0; j < K; j++) {
                        const int i = r * K + j;
                        /* codes floor(v) or floor(v) + 1 */
                        double v = vgrid[i];
                        double cg = kind ? (code[i] + Q) / 2 : code[i];
                        double lo = floor(v);
                        if (!(cg == lo || cg == lo + 1) || (v == lo && cg != lo))
                            fail_msg("%s: w %.9g (v %.9g): code %g is not a neighbouring grid point",
                                     xb_qw_names[s.kind], w[i], v, code[i]);
                        if (wq[i] != code[i] * sc[pc ? r : 0]) fail_msg("value is not scale x code");
                        up[i] += cg != lo;
                        sum[i] += wq[i];
                    }
                }
            }
            /* unbiased: the mean value is the unrounded one, within 5.5 sigma of a Bernoulli mean */
            for (int r = 0; r < R; r++) {
                for (int j = 0; j < K; j++) {
                    const int i = r * K + j;
                    double st = kind ? 2 / Q : sc[pc ? r : 0];
                    double v = vgrid[i], want = kind ? 2 * v / Q - 1 : w[i];
                    double p = v - floor(v), sd = st * sqrt(p * (1 - p) / N);
                    double got = sum[i] / N;
                    if (!(fabs(got - want) <= 5.5 * sd + 1e-6 * st))
                        fail_msg("%s per_channel %d: w %.9g: mean %.9g, want %.9g (sd %.3g, %d up)",
                                 xb_qw_names[s.kind], pc, w[i], got, want, sd, up[i]);
                }
            }
            /* reproducible per (seed, counter); another counter or seed draws differently */
            assert_int_equal(xb_qw_apply(&s, R, K, w, wq, NULL, NULL, NULL, 77, 5), XB_OK);
            assert_int_equal(xb_qw_apply(&s, R, K, w, wq2, NULL, NULL, NULL, 77, 5), XB_OK);
            assert_memory_equal(wq, wq2, sizeof wq);
            assert_int_equal(xb_qw_apply(&s, R, K, w, wq2, NULL, NULL, NULL, 77, 6), XB_OK);
            assert_true(memcmp(wq, wq2, sizeof wq) != 0);
            assert_int_equal(xb_qw_apply(&s, R, K, w, wq2, NULL, NULL, NULL, 78, 5), XB_OK);
            assert_true(memcmp(wq, wq2, sizeof wq) != 0);
        }
}

/* ---- activations --------------------------------------------------------------------------------- */

static void test_qa_grids(void **state) {
    (void)state;
    float st, lo, hi;
    xb_qa_grid(XB_QA_UNIFORM, 4, 3.0f, &st, &lo, &hi);
    assert_true(lo == 0 && hi == 15 && st == 3.0f / 15);
    xb_qa_grid(XB_QA_PACT, 2, 1.5f, &st, &lo, &hi);
    assert_true(lo == 0 && hi == 3 && st == 0.5f);
    xb_qa_grid(XB_QA_DOREFA, 3, 7.0f, &st, &lo, &hi); /* clips at 1 whatever the clip */
    assert_true(lo == 0 && hi == 7 && st == 1.0f / 7);
    xb_qa_grid(XB_QA_TERNARY, 0, 0.8f, &st, &lo, &hi);
    assert_true(lo == -1 && hi == 1 && st == 0.8f);
    xb_qa_grid(XB_QA_SIGNED, 4, 2.0f, &st, &lo, &hi);
    assert_true(lo == -7 && hi == 7 && st == 2.0f / 7);
    xb_qa_grid(XB_QA_SIGNED, 2, 2.0f, &st, &lo, &hi);
    assert_true(lo == -1 && hi == 1 && st == 2.0f);
    xb_qa_grid(XB_QA_UNIFORM, 1, 2.0f, &st, &lo, &hi);
    assert_true(lo == 0 && hi == 1 && st == 2.0f);
}

/* forward and backward of every kind against a scalar reference in double.  The clips make the steps
 * powers of two (but DOREFA's 1/7), so that the half steps written are exact ties. */
static void test_qa_forward_backward(void **state) {
    (void)state;
    const int n = 5000;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *y2 = malloc(n * sizeof(float));
    float *dy = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
    uint8_t *mask = malloc(n);
    xb_rng r;
    xb_rng_seed(&r, 31, "test");
    const int bits[XB_QA_COUNT] = {4, 3, 3, 0, 5};
    const float clips[XB_QA_COUNT] = {1.875f, 1.75f, 1.0f, 0.5f, 3.75f}; /* steps 1/8, 1/4, 1/7, 1/2, 1/4 */
    for (int kind = 0; kind < XB_QA_COUNT; kind++) {
        float step, lo, hi;
        xb_qa_grid((xb_qa_kind)kind, bits[kind], clips[kind], &step, &lo, &hi);
        int e;
        const int pow2 = frexpf(step, &e) == 0.5f;
        assert_true(pow2 == (kind != XB_QA_DOREFA));
        for (int i = 0; i < n; i++) {
            double u = xb_rng_uniform(&r);
            if (pow2 && i % 4 == 0) x[i] = ((float)xb_rng_below(&r, (uint64_t)(hi - lo + 5)) + lo - 2.5f) * step;
            else x[i] = (float)((3 * u - 1.5) * (kind == XB_QA_DOREFA ? 1 : clips[kind]));
            dy[i] = (float)(xb_rng_uniform(&r) - 0.3);
        }
        x[1] = NAN; x[2] = INFINITY; x[3] = -INFINITY; x[5] = -0.0f;
        int64_t clipped = xb_qa_forward(n, x, step, lo, hi, y, mask);
        int64_t want_clipped = 0;
        double dal = 0;
        int n2 = 0, n0 = 0, ties = 0;
        for (int i = 0; i < n; i++) {
            double v = (double)x[i] / step, c = rint(v);
            int m = c > hi ? 2 : c >= lo ? 1 : 0; /* NaN: 0 */
            double want = (c < lo ? lo : c > hi ? hi : c) * step;
            want_clipped += m != 1;
            n2 += m == 2;
            n0 += m == 0;
            ties += v - floor(v) == 0.5;
            if (mask[i] != m) fail_msg("%s: x %.9g: mask %d, want %d", xb_qa_names[kind], x[i], mask[i], m);
            if (isnan(x[i]) ? !isnan(y[i]) : !(fabs(y[i] - want) <= 1e-6 * fabs(want)))
                fail_msg("%s: x %.9g: y %.9g, want %.9g", xb_qa_names[kind], x[i], y[i], want);
            if (m == 2) dal += dy[i];
        }
        assert_int_equal(clipped, want_clipped);
        assert_true(n2 > 10 && n0 > 10 && (!pow2 || ties > 100)); /* the data reach both sides, and ties */
        assert_true(mask[1] == 0 && isnan(y[1]) && mask[2] == 2 && y[2] == hi * step && mask[3] == 0 &&
                    y[3] == lo * step && mask[5] == 1 && y[5] == 0);
        /* y may alias x; mask may be NULL: the same values and count */
        memcpy(y2, x, n * sizeof(float));
        assert_true(xb_qa_forward(n, y2, step, lo, hi, y2, NULL) == clipped);
        for (int i = 0; i < n; i++)
            if (!(y2[i] == y[i] || (isnan(y2[i]) && isnan(y[i])))) fail_msg("in place differs at %d", i);
        /* backward: dy where the mask is 1; d alpha = sum of dy clipped at the top */
        double got = xb_qa_backward(n, mask, dy, dx);
        if (!(fabs(got - dal) <= 1e-12 * fmax(1, fabs(dal)))) fail_msg("d alpha %.17g, want %.17g", got, dal);
        for (int i = 0; i < n; i++)
            if (dx[i] != (mask[i] == 1 ? dy[i] : 0.0f))
                fail_msg("dx[%d] = %g (mask %d, dy %g)", i, dx[i], mask[i], dy[i]);
        memcpy(y2, dy, n * sizeof(float));
        assert_true(xb_qa_backward(n, mask, y2, y2) == got); /* in place */
        assert_memory_equal(y2, dx, n * sizeof(float));
    }
    /* explicit ties, step 1/4, codes -3..3: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, 3.5 -> 4 (clipped) */
    float step, lo, hi, t[5] = {0.125f, 0.375f, 0.625f, -0.125f, 0.875f}, ty[5];
    uint8_t tm[5];
    xb_qa_grid(XB_QA_SIGNED, 3, 0.75f, &step, &lo, &hi);
    assert_true(step == 0.25f && lo == -3 && hi == 3);
    assert_int_equal(xb_qa_forward(5, t, step, lo, hi, ty, tm), 1);
    assert_true(ty[0] == 0 && ty[1] == 0.5f && ty[2] == 0.5f && ty[3] == 0 && ty[4] == 0.75f);
    assert_true(tm[0] == 1 && tm[1] == 1 && tm[2] == 1 && tm[3] == 1 && tm[4] == 2);
    free(x); free(y); free(y2); free(dy); free(dx); free(mask);
}

/* PACT: d y / d alpha is 1 exactly where x / s rounds above the top code */
static void test_pact_alpha_grad(void **state) {
    (void)state;
    float step, lo, hi;
    xb_qa_grid(XB_QA_PACT, 2, 1.5f, &step, &lo, &hi); /* step .5, codes 0..3, top 1.5 */
    const float x[8] = {-1, 0.2f, 1.5f, 1.7f, 1.75f, 1.76f, 9, 0.8f};
    float y[8], dx[8], dy[8] = {1, 2, 4, 8, 16, 32, 64, 128};
    uint8_t mask[8];
    /* 1.7 / .5 = 3.4 -> 3 (inside); 1.75 -> 3.5 -> 4 (even): above; 1.76 -> 4: above; 9: above */
    assert_int_equal(xb_qa_forward(8, x, step, lo, hi, y, mask), 4);
    const uint8_t want_mask[8] = {0, 1, 1, 1, 2, 2, 2, 1};
    assert_memory_equal(mask, want_mask, 8);
    assert_true(xb_qa_backward(8, mask, dy, dx) == 16 + 32 + 64);
    assert_true(dx[0] == 0 && dx[1] == 2 && dx[3] == 8 && dx[4] == 0 && dx[7] == 128);
    /* large: blocks and threads give the same sum, and the sum is right */
    const int64_t n = xbt_sanitized() ? 70000 : 300001;
    float *xs = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float)), *ys = malloc(n * sizeof(float));
    uint8_t *m = malloc(n);
    xb_rng r;
    xb_rng_seed(&r, 41, "test");
    for (int64_t i = 0; i < n; i++) { xs[i] = (float)(3 * xb_rng_uniform(&r) - 0.5); g[i] = (float)xb_rng_normal(&r); }
    int saved = xb_get_threads();
    xb_set_threads(1);
    int64_t c1 = xb_qa_forward(n, xs, step, lo, hi, ys, m);
    double a1 = xb_qa_backward(n, m, g, ys), want = 0;
    xb_set_threads(2);
    assert_true(xb_qa_forward(n, xs, step, lo, hi, ys, m) == c1);
    double a2 = xb_qa_backward(n, m, g, ys);
    xb_set_threads(saved);
    for (int64_t i = 0; i < n; i++) if (rint((double)xs[i] / step) > hi) want += g[i];
    assert_true(a1 == a2);
    if (!(fabs(a1 - want) <= 1e-9 * fmax(1, fabs(want)))) fail_msg("d alpha %.17g, want %.17g", a1, want);
    free(xs); free(g); free(ys); free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_sizes),   cmocka_unit_test(test_check_errors),
        cmocka_unit_test(test_nonfinite),         cmocka_unit_test(test_apply_vs_ref),
        cmocka_unit_test(test_threads_identical), cmocka_unit_test(test_ties_to_even),
        cmocka_unit_test(test_hand_cases),        cmocka_unit_test(test_stochastic),
        cmocka_unit_test(test_qa_grids),          cmocka_unit_test(test_qa_forward_backward),
        cmocka_unit_test(test_pact_alpha_grad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
