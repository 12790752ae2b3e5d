/* test_ini.c -- the strict INI parser (src/cfg/ini.c): a good file with every lexical feature, each
 * malformed input (XB_ERR_CONFIG naming file:line), the typed getters' parsing, ranges and defaults,
 * unused-key detection, long lines, and random bytes that must never crash the parser. */
#include "testutil.h"

#include <dirent.h>
#include <limits.h>

/* Parses text (length strlen) as "t.cfg". */
static xb_status parse_(const char *text, xb_ini *ini) { return xb_ini_parse_string(text, strlen(text), "t.cfg", ini); }

static xb_ini_section *find_sec_(xb_ini *ini, const char *type, const char *name) {
    for (int i = 0; i < ini->n; i++)
        if (strcmp(ini->sec[i].type, type) == 0 && strcmp(ini->sec[i].name, name) == 0) return &ini->sec[i];
    return NULL;
}

/* The last error contains every one of the NULL-terminated strings. */
static void expect_msg_(const char *what, ...) {
    va_list ap;
    va_start(ap, what);
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL)
        if (!strstr(xb_last_error(), needle)) {
            va_end(ap);
            fail_msg("%s: message lacks '%s': %s", what, needle, xb_last_error());
        }
    va_end(ap);
}

/* ---- a good file ------------------------------------------------------------------------------- */

static const char good_cfg[] =
    "\xEF\xBB\xBF# a comment line\n"
    "; another comment\n"
    "\n"
    "[net]\r\n"
    "name    = resnet20   # trailing comment\r\n"
    "input\t=\t3x32x32\t; tab comment\n"
    "classes=10\n"
    "init = kaiming_normal\n"
    "   \t  \n"
    "  [conv2d   layer1.0.conv1]   # header comment\n"
    "out_channels = 16\n"
    "kernel = 3\n"
    "stride = -2\n"
    "bias = false\n"
    "lr = 1.5e-3\n"
    "tag = a#b;c\n"      /* '#' and ';' not after a blank belong to the value */
    "inputs = a, b = c\n" /* '=' inside a value */
    "[relu]\n"
    "[add layer1.0.add]\n"
    "inputs = x, y"; /* no final newline */

static void test_good_file(void **state) {
    (void)state;
    xb_ini ini;
    assert_int_equal(parse_(good_cfg, &ini), XB_OK);
    assert_string_equal(ini.path, "t.cfg");
    assert_int_equal(ini.n, 4);
    xb_ini_section *net = &ini.sec[0], *c = &ini.sec[1];
    assert_string_equal(net->type, "net");
    assert_string_equal(net->name, "");
    assert_int_equal(net->line, 4);
    assert_int_equal(net->n, 4);
    assert_string_equal(c->type, "conv2d");
    assert_string_equal(c->name, "layer1.0.conv1");
    assert_int_equal(c->line, 10);
    assert_string_equal(ini.sec[2].type, "relu");
    assert_int_equal(ini.sec[2].n, 0);
    assert_ptr_equal(find_sec_(&ini, "add", "layer1.0.add"), &ini.sec[3]);

    char buf[64];
    int idx = -7, line = 0;
    static const char *const inits[] = {"torch", "kaiming_normal", NULL};
    assert_int_equal(xb_ini_str(&ini, net, "name", 0, NULL, NULL, buf, sizeof buf, &idx), XB_OK);
    assert_string_equal(buf, "resnet20");
    assert_int_equal(idx, -1);
    assert_int_equal(xb_ini_str(&ini, net, "input", 1, NULL, NULL, buf, sizeof buf, NULL), XB_OK);
    assert_string_equal(buf, "3x32x32");
    long l = 0;
    assert_int_equal(xb_ini_int(&ini, net, "classes", 1, 0, 1, 100000, &l), XB_OK);
    assert_int_equal(l, 10);
    assert_int_equal(xb_ini_str(&ini, net, "init", 0, "torch", inits, buf, sizeof buf, &idx), XB_OK);
    assert_string_equal(buf, "kaiming_normal");
    assert_int_equal(idx, 1);

    assert_int_equal(xb_ini_int(&ini, c, "out_channels", 1, 0, 1, 65536, &l), XB_OK);
    assert_int_equal(l, 16);
    assert_int_equal(xb_ini_int(&ini, c, "kernel", 1, 0, 1, 11, &l), XB_OK);
    assert_int_equal(l, 3);
    assert_int_equal(xb_ini_int(&ini, c, "stride", 0, 1, -5, 5, &l), XB_OK);
    assert_int_equal(l, -2);
    int b = -1;
    assert_int_equal(xb_ini_bool(&ini, c, "bias", 0, 1, &b), XB_OK);
    assert_int_equal(b, 0);
    double d = 0;
    assert_int_equal(xb_ini_double(&ini, c, "lr", 1, 0, 0, 1, &d), XB_OK);
    assert_true(d == 1.5e-3);
    assert_string_equal(xb_ini_raw(c, "tag", &line), "a#b;c");
    assert_int_equal(line, 16);
    assert_string_equal(xb_ini_raw(c, "inputs", NULL), "a, b = c");
    assert_null(xb_ini_raw(c, "nothing", NULL));

    /* one key still unread: [add].inputs */
    assert_int_equal(xb_ini_check_unused(&ini), XB_ERR_CONFIG);
    expect_msg_("unused", "t.cfg:20:", "unknown key 'inputs'", "[add layer1.0.add]", "(line 20)", "HINT:", NULL);
    assert_string_equal(xb_ini_raw(&ini.sec[3], "inputs", NULL), "x, y");
    assert_int_equal(xb_ini_check_unused(&ini), XB_OK);
    xb_ini_free(&ini);
    assert_int_equal(ini.n, 0);
    assert_null(ini.sec);
}

static void test_crlf_only_and_empty(void **state) {
    (void)state;
    xb_ini ini;
    const char *t = "[a]\r\nk = v\r\n\r\n[b x]\r\nq=1\r\n";
    assert_int_equal(parse_(t, &ini), XB_OK);
    assert_int_equal(ini.n, 2);
    assert_string_equal(ini.sec[0].kv[0].val, "v");
    assert_int_equal(ini.sec[1].line, 4);
    assert_int_equal(ini.sec[1].kv[0].line, 5);
    xb_ini_free(&ini);
    assert_int_equal(xb_ini_parse_string("", 0, "e.cfg", &ini), XB_OK);
    assert_int_equal(ini.n, 0);
    xb_ini_free(&ini);
    assert_int_equal(xb_ini_parse_string(NULL, 0, NULL, &ini), XB_OK);
    xb_ini_free(&ini);
    /* len shorter than the string: only the first line is seen */
    assert_int_equal(xb_ini_parse_string("[a]\nk = v\n", 4, "p.cfg", &ini), XB_OK);
    assert_int_equal(ini.n, 1);
    assert_int_equal(ini.sec[0].n, 0);
    xb_ini_free(&ini);
}

/* Many sections and keys (array growth). */
static void test_many(void **state) {
    (void)state;
    size_t cap = 1 << 20, n = 0;
    char *t = malloc(cap);
    for (int i = 0; i < 300; i++) {
        n += (size_t)snprintf(t + n, cap - n, "[layer l%d]\n", i);
        for (int j = 0; j < 37; j++) n += (size_t)snprintf(t + n, cap - n, "k%d = %d\n", j, i * j);
    }
    xb_ini ini;
    assert_int_equal(xb_ini_parse_string(t, n, "m.cfg", &ini), XB_OK);
    assert_int_equal(ini.n, 300);
    long v = 0;
    assert_int_equal(xb_ini_int(&ini, &ini.sec[299], "k36", 1, 0, 0, 100000, &v), XB_OK);
    assert_int_equal(v, 299 * 36);
    assert_int_equal(ini.sec[299].kv[36].line, 300 * 38);
    xb_ini_free(&ini);
    free(t);
}

/* ---- malformed files --------------------------------------------------------------------------- */

typedef struct bad_case { const char *text; size_t len; int line; const char *needle; } bad_case;

static void test_bad_files(void **state) {
    (void)state;
    static const char nul_text[] = "[net]\nname = a\0b\n";
    static const bad_case cases[] = {
        {"[net]\nkey\n", 0, 2, "expected 'key = value'"},
        {"name = x\n[net]\n", 0, 1, "before any [section]"},
        {"[net]\n[conv2d c1\nkernel = 3\n", 0, 2, "no closing ']'"},
        {"[net] extra\n", 0, 1, "unexpected text 'extra'"},
        {"[net]\n[]\n", 0, 2, "empty section header"},
        {"[ \t ]\n", 0, 1, "empty section header"},
        {"[conv2d a b]\n", 0, 1, "more than a type and a name"},
        {"[1conv]\n", 0, 1, "section type '1conv'"},
        {"[conv2d a..b]\n", 0, 1, "section name 'a..b'"},
        {"[conv2d .a]\n", 0, 1, "section name '.a'"},
        {"[conv2d a.]\n", 0, 1, "section name 'a.'"},
        {"[conv2d a#b]\n", 0, 1, "section name 'a#b'"},
        {"[conv2d c1]\n[relu c1]\n", 0, 2, "already used by [conv2d c1] at line 1"},
        {"[net]\n= 3\n", 0, 2, "without a key"},
        {"[net]\nout channels = 3\n", 0, 2, "key 'out channels' is not valid"},
        {"[net]\na = 1\nb = 2\r\na = 3\n", 0, 4, "key 'a' is set twice in section [net] (first at line 2)"},
        {"[net]\nname = caf\xe9\n", 0, 2, "not UTF-8"},
        {"[net]\n\xff\xfe\n", 0, 2, "not UTF-8"},
        {"[net]\nname = \xed\xa0\x80\n", 0, 2, "not UTF-8"},     /* surrogate */
        {"[net]\nname = \xc0\xaf\n", 0, 2, "not UTF-8"},         /* overlong */
        {"[net]\nname = \xe2\x82\n", 0, 2, "not UTF-8"},         /* truncated sequence */
        {"[net]\nname = a\x01\n", 0, 2, "control character 0x01"},
        {"[net]\n\x1b[31m\n", 0, 2, "control character 0x1b"},
        {nul_text, sizeof nul_text - 1, 2, "NUL byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        xb_ini ini;
        xb_clear_error();
        size_t len = c->len ? c->len : strlen(c->text);
        xb_status st = xb_ini_parse_string(c->text, len, "models/x.cfg", &ini);
        if (st != XB_ERR_CONFIG) fail_msg("case %zu: status %d (%s)", i, st, xb_last_error());
        char where[64];
        snprintf(where, sizeof where, "models/x.cfg:%d: ", c->line);
        if (strncmp(xb_last_error(), where, strlen(where)) != 0 || !strstr(xb_last_error(), c->needle) ||
            !strstr(xb_last_error(), "HINT: "))
            fail_msg("case %zu: want '%s' ... '%s', got: %s", i, where, c->needle, xb_last_error());
        assert_int_equal(ini.n, 0); /* nothing left to free */
        assert_null(ini.sec);
        xb_ini_free(&ini);          /* and freeing again is harmless */
    }
}

/* ---- getters: types and ranges ----------------------------------------------------------------- */

static const char vals_cfg[] =
    "[conv2d conv1]\n"
    "i_ok = 42\n"
    "i_neg = -7\n"
    "i_plus = +8\n"
    "i_frac = 3.5\n"
    "i_exp = 1e3\n"
    "i_hex = 0x10\n"
    "i_big = 99999999999999999999999\n"
    "i_junk = 12abc\n"
    "i_sign = -\n"
    "i_space = 1 2\n"
    "i_empty =\n"
    "d_ok = -2.5e-1\n"
    "d_int = 7\n"
    "d_inf = inf\n"
    "d_nan = nan\n"
    "d_hex = 0x1p3\n"
    "d_big = 1e999\n"
    "d_junk = 1.0.0\n"
    "d_comma = 1,5\n"
    "b_true = true\n"
    "b_yes = yes\n"
    "b_one = 1\n"
    "b_no = no\n"
    "b_zero = 0\n"
    "b_false = false\n"
    "b_caps = TRUE\n"
    "b_two = 2\n"
    "s_ok = relu\n"
    "s_bad = tanh\n"
    "s_long = abcdefghijklmnop\n";

static void test_int_getter(void **state) {
    (void)state;
    xb_ini ini;
    assert_int_equal(parse_(vals_cfg, &ini), XB_OK);
    xb_ini_section *s = &ini.sec[0];
    long v = 0;
    assert_int_equal(xb_ini_int(&ini, s, "i_ok", 1, 0, 0, 100, &v), XB_OK);
    assert_int_equal(v, 42);
    assert_int_equal(xb_ini_int(&ini, s, "i_neg", 1, 0, -10, 10, &v), XB_OK);
    assert_int_equal(v, -7);
    assert_int_equal(xb_ini_int(&ini, s, "i_plus", 1, 0, 0, 10, &v), XB_OK);
    assert_int_equal(v, 8);
    /* range: message names file:line, key, value and the range */
    assert_int_equal(xb_ini_int(&ini, s, "i_ok", 1, 0, 1, 8, &v), XB_ERR_CONFIG);
    expect_msg_("range", "t.cfg:2:", "'i_ok'", "[conv2d conv1]", "42", "[1, 8]", NULL);
    assert_int_equal(xb_ini_int(&ini, s, "i_neg", 1, 0, 0, 8, &v), XB_ERR_CONFIG);
    expect_msg_("range-neg", "t.cfg:3:", "-7", NULL);
    static const struct { const char *key; int line; } bad[] = {
        {"i_frac", 5}, {"i_exp", 6}, {"i_hex", 7}, {"i_big", 8}, {"i_junk", 9}, {"i_sign", 10}, {"i_space", 11},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = 12345;
        assert_int_equal(xb_ini_int(&ini, s, bad[i].key, 0, 3, LONG_MIN, LONG_MAX, &v), XB_ERR_CONFIG);
        char where[32];
        snprintf(where, sizeof where, "t.cfg:%d:", bad[i].line);
        expect_msg_(bad[i].key, where, bad[i].key, "decimal integer", "HINT:", NULL);
        assert_int_equal(v, 12345); /* untouched on error */
    }
    assert_int_equal(xb_ini_int(&ini, s, "i_empty", 0, 3, 0, 10, &v), XB_ERR_CONFIG);
    expect_msg_("empty", "t.cfg:12:", "'i_empty'", "has no value", NULL);
    assert_int_equal(xb_ini_int(&ini, s, "i_empty", 1, 3, 0, 10, &v), XB_ERR_CONFIG);
    expect_msg_("empty-req", "t.cfg:12:", "has no value", NULL);
    xb_ini_free(&ini);
}

static void test_double_getter(void **state) {
    (void)state;
    xb_ini ini;
    assert_int_equal(parse_(vals_cfg, &ini), XB_OK);
    xb_ini_section *s = &ini.sec[0];
    double d = 0;
    assert_int_equal(xb_ini_double(&ini, s, "d_ok", 1, 0, -1, 1, &d), XB_OK);
    assert_true(d == -0.25);
    assert_int_equal(xb_ini_double(&ini, s, "d_int", 1, 0, 0, 10, &d), XB_OK);
    assert_true(d == 7.0);
    assert_int_equal(xb_ini_double(&ini, s, "d_ok", 1, 0, 0, 1, &d), XB_ERR_CONFIG);
    expect_msg_("range", "t.cfg:13:", "'d_ok'", "-2.5e-1", "out of range", "[0, 1]", NULL);
    static const struct { const char *key; int line; } bad[] = {
        {"d_inf", 15}, {"d_nan", 16}, {"d_hex", 17}, {"d_big", 18}, {"d_junk", 19}, {"d_comma", 20},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        d = 9.5;
        assert_int_equal(xb_ini_double(&ini, s, bad[i].key, 1, 0, -HUGE_VAL, HUGE_VAL, &d), XB_ERR_CONFIG);
        char where[32];
        snprintf(where, sizeof where, "t.cfg:%d:", bad[i].line);
        expect_msg_(bad[i].key, where, bad[i].key, "finite number", NULL);
        assert_true(d == 9.5);
    }
    xb_ini_free(&ini);
}

static void test_bool_str_getters(void **state) {
    (void)state;
    xb_ini ini;
    assert_int_equal(parse_(vals_cfg, &ini), XB_OK);
    xb_ini_section *s = &ini.sec[0];
    static const struct { const char *key; int want; } ok[] = {
        {"b_true", 1}, {"b_yes", 1}, {"b_one", 1}, {"b_no", 0}, {"b_zero", 0}, {"b_false", 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        int b = -1;
        assert_int_equal(xb_ini_bool(&ini, s, ok[i].key, 1, 0, &b), XB_OK);
        assert_int_equal(b, ok[i].want);
    }
    int b = -1;
    assert_int_equal(xb_ini_bool(&ini, s, "b_caps", 1, 0, &b), XB_ERR_CONFIG);
    expect_msg_("caps", "t.cfg:27:", "'b_caps'", "TRUE", "true or false", NULL);
    assert_int_equal(xb_ini_bool(&ini, s, "b_two", 1, 0, &b), XB_ERR_CONFIG);
    expect_msg_("two", "t.cfg:28:", NULL);

    static const char *const acts[] = {"relu", "sigmoid", NULL};
    char out[8];
    int idx = -1;
    assert_int_equal(xb_ini_str(&ini, s, "s_ok", 1, NULL, acts, out, sizeof out, &idx), XB_OK);
    assert_string_equal(out, "relu");
    assert_int_equal(idx, 0);
    assert_int_equal(xb_ini_str(&ini, s, "s_bad", 1, NULL, acts, out, sizeof out, &idx), XB_ERR_CONFIG);
    expect_msg_("choice", "t.cfg:30:", "'tanh'", "relu, sigmoid", NULL);
    assert_int_equal(xb_ini_str(&ini, s, "s_long", 1, NULL, NULL, out, sizeof out, NULL), XB_ERR_CONFIG);
    expect_msg_("long", "t.cfg:31:", "16 characters", "at most 7", NULL);
    char big[17];
    assert_int_equal(xb_ini_str(&ini, s, "s_long", 1, NULL, NULL, big, sizeof big, NULL), XB_OK);
    assert_string_equal(big, "abcdefghijklmnop");
    xb_ini_free(&ini);
}

static void test_defaults_and_missing(void **state) {
    (void)state;
    xb_ini ini;
    assert_int_equal(parse_("[net]\n\n[conv2d c1]\nkernel = 3\n", &ini), XB_OK);
    xb_ini_section *c = &ini.sec[1];
    long l = 0;
    double d = 0;
    int b = -1, idx = -5;
    char buf[32];
    static const char *const modes[] = {"zeros", "reflect", NULL};
    assert_int_equal(xb_ini_int(&ini, c, "stride", 0, 2, 1, 8, &l), XB_OK);
    assert_int_equal(l, 2);
    assert_int_equal(xb_ini_double(&ini, c, "p", 0, 0.25, 0, 1, &d), XB_OK);
    assert_true(d == 0.25);
    assert_int_equal(xb_ini_bool(&ini, c, "bias", 0, 7, &b), XB_OK);
    assert_int_equal(b, 1);
    assert_int_equal(xb_ini_str(&ini, c, "mode", 0, "reflect", modes, buf, sizeof buf, &idx), XB_OK);
    assert_string_equal(buf, "reflect");
    assert_int_equal(idx, 1);
    assert_int_equal(xb_ini_str(&ini, c, "note", 0, NULL, NULL, buf, sizeof buf, &idx), XB_OK);
    assert_string_equal(buf, "");
    assert_int_equal(idx, -1);
    /* missing required key: names the section's line */
    assert_int_equal(xb_ini_int(&ini, c, "out_channels", 1, 0, 1, 10, &l), XB_ERR_CONFIG);
    expect_msg_("missing", "t.cfg:3:", "[conv2d c1]", "needs key 'out_channels'", "HINT:", NULL);
    assert_int_equal(xb_ini_double(&ini, &ini.sec[0], "lr", 1, 0, 0, 1, &d), XB_ERR_CONFIG);
    expect_msg_("missing-net", "t.cfg:1:", "[net]", "'lr'", NULL);
    /* a NULL section (optional section absent) gives defaults, or an error when required */
    assert_int_equal(xb_ini_int(&ini, NULL, "epochs", 0, 5, 0, 10, &l), XB_OK);
    assert_int_equal(l, 5);
    assert_null(xb_ini_raw(NULL, "epochs", NULL));
    assert_int_equal(xb_ini_int(&ini, NULL, "epochs", 1, 5, 0, 10, &l), XB_ERR_CONFIG);
    expect_msg_("nosec", "t.cfg", "'epochs'", NULL);
    /* kernel was never read */
    assert_int_equal(xb_ini_check_unused(&ini), XB_ERR_CONFIG);
    expect_msg_("unused", "t.cfg:4:", "unknown key 'kernel' in section [conv2d c1] (line 4)", "HINT:", NULL);
    xb_ini_free(&ini);
}

static void test_unused_typo(void **state) {
    (void)state;
    xb_ini ini;
    const char *t = "[net]\ninput = 3x32x32\n[conv2d conv1]\nout_channels = 8\nkernel = 3\nstide = 2\n";
    assert_int_equal(xb_ini_parse_string(t, strlen(t), "models/x.cfg", &ini), XB_OK);
    assert_non_null(xb_ini_raw(&ini.sec[0], "input", NULL));
    long l;
    assert_int_equal(xb_ini_int(&ini, &ini.sec[1], "out_channels", 1, 0, 1, 100, &l), XB_OK);
    assert_int_equal(xb_ini_int(&ini, &ini.sec[1], "kernel", 1, 0, 1, 100, &l), XB_OK);
    assert_int_equal(xb_ini_int(&ini, &ini.sec[1], "stride", 0, 1, 1, 100, &l), XB_OK);
    assert_int_equal(l, 1);
    assert_int_equal(xb_ini_check_unused(&ini), XB_ERR_CONFIG);
    expect_msg_("typo", "models/x.cfg:6: unknown key 'stide' in section [conv2d conv1] (line 6)",
                "docs/model-cfg.md", NULL);
    xb_ini_free(&ini);
}

/* ---- robustness -------------------------------------------------------------------------------- */

static void test_long_lines(void **state) {
    (void)state;
    size_t n = 1 << 20;
    char *t = malloc(n + 64);
    int k = snprintf(t, 64, "[net]\nname = ");
    memset(t + k, 'x', n);
    memcpy(t + k + n, "\nk = 1\n", 8);
    xb_ini ini;
    assert_int_equal(xb_ini_parse_string(t, strlen(t), "long.cfg", &ini), XB_OK);
    assert_int_equal(strlen(ini.sec[0].kv[0].val), n);
    assert_int_equal(ini.sec[0].kv[1].line, 3);
    long l;
    assert_int_equal(xb_ini_int(&ini, &ini.sec[0], "name", 1, 0, 0, 1, &l), XB_ERR_CONFIG);
    expect_msg_("long", "long.cfg:2:", "xxx...", NULL);
    assert_true(strlen(xb_last_error()) < 600);
    xb_ini_free(&ini);
    /* a long garbage line without '=' */
    memset(t, 'y', n);
    t[n] = 0;
    assert_int_equal(xb_ini_parse_string(t, n, "long.cfg", &ini), XB_ERR_CONFIG);
    expect_msg_("long-noeq", "long.cfg:1:", "yyy...", NULL);
    /* a long unterminated header */
    t[0] = '[';
    assert_int_equal(xb_ini_parse_string(t, n, "long.cfg", &ini), XB_ERR_CONFIG);
    expect_msg_("long-header", "long.cfg:1:", "no closing", NULL);
    free(t);
}

static uint64_t splitmix_(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Random bytes and random mutations of a good file: only XB_OK or XB_ERR_CONFIG, never a crash; on
 * success every getter and the unused check run too. */
static void test_random_bytes(void **state) {
    (void)state;
    static const char alphabet[] = "[]=#; \t\r\n\0abcxyz019.-_\xff\xc3\xa9\x80";
    uint64_t seed = 12345;
    size_t base_len = strlen(good_cfg);
    for (int it = 0; it < 4000; it++) {
        char buf[512];
        size_t n;
        if (it % 2) {
            n = (size_t)(splitmix_(&seed) % sizeof buf);
            for (size_t i = 0; i < n; i++) {
                uint64_t r = splitmix_(&seed);
                buf[i] = (r & 1) ? (char)(r >> 8) : alphabet[(r >> 8) % (sizeof alphabet - 1)];
            }
        } else {
            n = base_len < sizeof buf ? base_len : sizeof buf;
            memcpy(buf, good_cfg, n);
            int muts = 1 + (int)(splitmix_(&seed) % 4);
            for (int m = 0; m < muts; m++) {
                uint64_t r = splitmix_(&seed);
                buf[r % n] = alphabet[(r >> 20) % (sizeof alphabet - 1)];
            }
        }
        /* exact-size heap copy so ASan sees any read past the end */
        char *heap = malloc(n ? n : 1);
        memcpy(heap, buf, n);
        xb_ini ini;
        xb_status st = xb_ini_parse_string(heap, n, "fuzz.cfg", &ini);
        if (st != XB_OK && st != XB_ERR_CONFIG) fail_msg("iteration %d: status %d", it, st);
        if (st == XB_OK) {
            for (int i = 0; i < ini.n; i++)
                for (int j = 0; j < ini.sec[i].n; j++) {
                    long l;
                    double d;
                    int b;
                    char s[16];
                    const char *key = ini.sec[i].kv[j].key;
                    (void)xb_ini_int(&ini, &ini.sec[i], key, 1, 0, -100, 100, &l);
                    (void)xb_ini_double(&ini, &ini.sec[i], key, 1, 0, -1, 1, &d);
                    (void)xb_ini_bool(&ini, &ini.sec[i], key, 1, 0, &b);
                    (void)xb_ini_str(&ini, &ini.sec[i], key, 1, NULL, NULL, s, sizeof s, NULL);
                }
            assert_int_equal(xb_ini_check_unused(&ini), XB_OK);
        } else {
            assert_true(strncmp(xb_last_error(), "fuzz.cfg", 8) == 0);
        }
        xb_ini_free(&ini);
        free(heap);
    }
}

/* ---- files ------------------------------------------------------------------------------------- */

static void test_files(void **state) {
    (void)state;
    xb_ini ini;
    char path[512];
    assert_int_equal(xb_ini_parse_file("/nonexistent/dir/x.cfg", &ini), XB_ERR_IO);
    expect_msg_("io", "/nonexistent/dir/x.cfg", "HINT:", NULL);
    xb_ini_free(&ini);
    assert_int_equal(xb_ini_parse_file(xbt_tmpdir(), &ini), XB_ERR_IO); /* a directory */
    xb_ini_free(&ini);
    xbt_path(path, sizeof path, "good.cfg");
    xbt_write_file(path, good_cfg, strlen(good_cfg));
    assert_int_equal(xb_ini_parse_file(path, &ini), XB_OK);
    assert_string_equal(ini.path, path);
    assert_int_equal(ini.n, 4);
    xb_ini_free(&ini);
    xbt_path(path, sizeof path, "bad.cfg");
    xbt_write_file(path, "[net]\nk = 1\nk = 2\n", 18);
    assert_int_equal(xb_ini_parse_file(path, &ini), XB_ERR_CONFIG);
    char where[600];
    snprintf(where, sizeof where, "%s:3:", path);
    expect_msg_("file", where, NULL);
}

/* Every zoo config parses (run from the repository root; skipped elsewhere). */
static void test_zoo_configs_parse(void **state) {
    (void)state;
    DIR *d = opendir("configs/models");
    if (!d) skip();
    struct dirent *e;
    int count = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".cfg") != 0) continue;
        char path[600];
        snprintf(path, sizeof path, "configs/models/%s", e->d_name);
        xb_ini ini;
        if (xb_ini_parse_file(path, &ini) != XB_OK) fail_msg("%s", xb_last_error());
        assert_true(ini.n > 1);
        assert_string_equal(ini.sec[0].type, "net");
        xb_ini_free(&ini);
        count++;
    }
    closedir(d);
    if (count == 0) skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_crlf_only_and_empty),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_int_getter),
        cmocka_unit_test(test_double_getter),
        cmocka_unit_test(test_bool_str_getters),
        cmocka_unit_test(test_defaults_and_missing),
        cmocka_unit_test(test_unused_typo),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_zoo_configs_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
