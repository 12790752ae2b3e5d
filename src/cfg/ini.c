/* ini.c -- the strict INI parser behind model (.cfg) and hardware configs; contract in xb_model.h.
 *
 * Grammar (one line at a time, '\n' or "\r\n" line ends, an optional UTF-8 BOM at the start):
 *   - blank lines and lines whose first non-blank character is '#' or ';' are comments;
 *   - a '#' or ';' that follows a space or tab starts a comment that runs to the end of the line;
 *   - "[type]" or "[type name]" opens a section (type: letters, digits, '_'; name: dot-separated
 *     parts of letters, digits, '_', '-'; names are unique in the file);
 *   - "key = value" belongs to the last section; a key appears at most once per section.
 * The parser only builds the section/key table.  Meaning (which keys a section type takes, their
 * ranges, defaults) lives in the callers, which read values through the typed getters below; every
 * getter marks its key used and xb_ini_check_unused() turns a key nobody read into an error.
 *
 * What it deliberately is not: no quoting, no escapes, no line continuation, no interpolation, no
 * include files, no case folding.  Every malformed input -- NUL bytes, control characters, bytes that
 * are not UTF-8, unterminated headers, keys outside a section, duplicates -- is an XB_ERR_CONFIG
 * whose message starts with "file:line:" and ends with a HINT.  The parser is fuzzed: it must never
 * read out of bounds, whatever the bytes.
 */
#include "xbar.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define INI_MAX_BYTES ((size_t)64 << 20) /* a config larger than this is not a config */
#define INI_SHOW 60                      /* characters of a value or name quoted in messages */

/* ------------------------------------------------------------------------------------------------ */
/* Small helpers                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

static int is_blank_(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
static int is_alnum_(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static char *strndup_(const char *s, size_t n) {
    char *p = xb_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* Arrays grow by doubling; the capacity is implied by the count: 0, 4, 8, 16, ... */
static void *grow_(void *p, int n, size_t elem) {
    if (n > 0 && (n < 4 || (n & (n - 1)) != 0)) return p; /* still room */
    size_t cap = n == 0 ? 4 : (size_t)n * 2;
    void *q = xb_malloc(cap * elem);
    if (n > 0) memcpy(q, p, (size_t)n * elem);
    xb_free(p);
    return q;
}

/* A possibly long string shortened for a message: at most INI_SHOW bytes, then "...". Cuts only at a
 * UTF-8 character boundary. */
static const char *shorten_(const char *s, size_t len, char *buf, size_t n) {
    if (len < n && len <= INI_SHOW) {
        memcpy(buf, s, len);
        buf[len] = 0;
        return buf;
    }
    size_t k = INI_SHOW < n - 4 ? INI_SHOW : n - 4;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    memcpy(buf, s, k);
    memcpy(buf + k, "...", 4);
    return buf;
}
static const char *short_(const char *s, char *buf, size_t n) { return shorten_(s, strlen(s), buf, n); }

/* "conv2d conv1" or "net" (shortened), the way the section is written in the file. */
static const char *sec_label_(const xb_ini_section *s, char *buf, size_t n) {
    char a[INI_SHOW + 8], b[INI_SHOW + 8];
    if (s->name[0])
        snprintf(buf, n, "%s %s", short_(s->type, a, sizeof a), short_(s->name, b, sizeof b));
    else
        snprintf(buf, n, "%s", short_(s->type, a, sizeof a));
    return buf;
}

static const char *ini_path_(const xb_ini *ini) { return ini && ini->path[0] ? ini->path : "<config>"; }

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid (overlong, surrogate,
 * beyond U+10FFFF, truncated). */
static size_t utf8_len_(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return len;
}

/* A section type: a letter then letters, digits, '_'. */
static int valid_type_(const char *s, size_t n) {
    if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum_(s[i]) && s[i] != '_') return 0;
    return 1;
}

/* A key: letters, digits, '_', '.', '-', starting with a letter or '_'. */
static int valid_key_(const char *s, size_t n) {
    if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_')) return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum_(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-') return 0;
    return 1;
}

/* A section name: non-empty dot-separated parts of letters, digits, '_', '-' ("layer1.0.conv1"). */
static int valid_name_(const char *s, size_t n) {
    if (n == 0) return 0;
    size_t part = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (part == 0) return 0;
            part = 0;
        } else if (is_alnum_(s[i]) || s[i] == '_' || s[i] == '-') {
            part++;
        } else {
            return 0;
        }
    }
    return part > 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Parsing                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

void xb_ini_free(xb_ini *ini) {
    if (!ini) return;
    for (int i = 0; i < ini->n; i++) {
        xb_ini_section *s = &ini->sec[i];
        for (int j = 0; j < s->n; j++) {
            xb_free(s->kv[j].key);
            xb_free(s->kv[j].val);
        }
        xb_free(s->kv);
        xb_free(s->type);
        xb_free(s->name);
    }
    xb_free(ini->sec);
    ini->sec = NULL;
    ini->n = 0;
}

/* Checks the raw bytes of one line: no NUL, no control characters but tab and CR, valid UTF-8. */
static xb_status check_bytes_(const char *path, int line, const char *b, size_t n) {
    const unsigned char *u = (const unsigned char *)b;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        if (c == 0)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: NUL byte at column %zu. HINT: the file is binary or "
                             "corrupt; a config is plain UTF-8 text", path, line, i + 1);
        if ((c < 0x20 && c != '\t' && c != '\r' && c != '\f' && c != '\v') || c == 0x7F)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: control character 0x%02x at column %zu. HINT: a config "
                             "is plain text; delete the character", path, line, c, i + 1);
        size_t k = utf8_len_(u + i, n - i);
        if (k == 0)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: byte 0x%02x at column %zu is not UTF-8 text. HINT: save "
                             "the file as UTF-8 (plain ASCII is fine)", path, line, c, i + 1);
        i += k;
    }
    return XB_OK;
}

/* Cuts a comment off [b, e): a '#' or ';' at the start or after a blank.  Returns the new end. */
static const char *strip_comment_(const char *b, const char *e) {
    for (const char *p = b; p < e; p++)
        if ((*p == '#' || *p == ';') && (p == b || *(p - 1) == ' ' || *(p - 1) == '\t')) return p;
    return e;
}

static void trim_(const char **b, const char **e) {
    while (*b < *e && is_blank_(**b)) (*b)++;
    while (*e > *b && is_blank_(*(*e - 1))) (*e)--;
}

static xb_status parse_header_(xb_ini *ini, const char *path, int line, const char *b, const char *e) {
    char sb[INI_SHOW + 8], sb2[INI_SHOW + 8], lb[2 * INI_SHOW + 16];
    const char *close = memchr(b, ']', (size_t)(e - b));
    if (!close)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: section header '%s' has no closing ']'. HINT: write [type] or "
                         "[type name], e.g. [conv2d conv1]", path, line, shorten_(b, (size_t)(e - b), sb, sizeof sb));
    if (close + 1 != e) {
        const char *rb = close + 1, *re = e;
        trim_(&rb, &re);
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: unexpected text '%s' after the section header. HINT: a header "
                         "line holds only [type] or [type name] (and a comment after ' #')", path, line,
                         shorten_(rb, (size_t)(re - rb), sb, sizeof sb));
    }
    const char *tb = b + 1, *te = close;
    trim_(&tb, &te);
    if (tb == te)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: empty section header '[]'. HINT: write [type] or [type name], "
                         "e.g. [conv2d conv1]", path, line);
    const char *t_end = tb;
    while (t_end < te && !is_blank_(*t_end)) t_end++;
    const char *nb = t_end, *ne = te;
    trim_(&nb, &ne);
    const char *n_end = nb;
    while (n_end < ne && !is_blank_(*n_end)) n_end++;
    if (n_end != ne)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: section header '[%s]' has more than a type and a name. HINT: "
                         "write [type] or [type name]; names contain no spaces", path, line,
                         shorten_(tb, (size_t)(te - tb), sb, sizeof sb));
    if (!valid_type_(tb, (size_t)(t_end - tb)))
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: section type '%s' is not valid. HINT: a type is a word of "
                         "letters, digits and '_' such as conv2d or net", path, line,
                         shorten_(tb, (size_t)(t_end - tb), sb, sizeof sb));
    if (nb != ne && !valid_name_(nb, (size_t)(ne - nb)))
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: section name '%s' is not valid. HINT: a name is dot-separated "
                         "parts of letters, digits, '_' and '-', e.g. layer1.0.conv1", path, line,
                         shorten_(nb, (size_t)(ne - nb), sb, sizeof sb));
    if (nb != ne) {
        for (int i = 0; i < ini->n; i++) {
            const xb_ini_section *o = &ini->sec[i];
            if (strlen(o->name) == (size_t)(ne - nb) && memcmp(o->name, nb, (size_t)(ne - nb)) == 0)
                return xb_errorf(XB_ERR_CONFIG, "%s:%d: section name '%s' is already used by [%s] at line %d. "
                                 "HINT: names must be unique in the file; rename one of them", path, line,
                                 short_(o->name, sb2, sizeof sb2), sec_label_(o, lb, sizeof lb), o->line);
        }
    }
    ini->sec = grow_(ini->sec, ini->n, sizeof *ini->sec);
    xb_ini_section *s = &ini->sec[ini->n++];
    memset(s, 0, sizeof *s);
    s->type = strndup_(tb, (size_t)(t_end - tb));
    s->name = strndup_(nb, (size_t)(ne - nb));
    s->line = line;
    return XB_OK;
}

static xb_status parse_kv_(xb_ini *ini, const char *path, int line, const char *b, const char *e) {
    char sb[INI_SHOW + 8], lb[2 * INI_SHOW + 16];
    const char *eq = memchr(b, '=', (size_t)(e - b));
    if (!eq)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: expected 'key = value' or a [section] header, got '%s'. HINT: "
                         "write key = value, or start a comment with '#'", path, line,
                         shorten_(b, (size_t)(e - b), sb, sizeof sb));
    const char *kb = b, *ke = eq, *vb = eq + 1, *ve = e;
    trim_(&kb, &ke);
    trim_(&vb, &ve);
    if (kb == ke)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: '=' without a key before it. HINT: write key = value", path, line);
    if (!valid_key_(kb, (size_t)(ke - kb)))
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' is not valid. HINT: a key is a word of letters, digits "
                         "and '_' such as out_channels", path, line, shorten_(kb, (size_t)(ke - kb), sb, sizeof sb));
    if (ini->n == 0)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' appears before any [section]. HINT: start the file with "
                         "a section header such as [net]", path, line, shorten_(kb, (size_t)(ke - kb), sb, sizeof sb));
    xb_ini_section *s = &ini->sec[ini->n - 1];
    for (int i = 0; i < s->n; i++) {
        if (strlen(s->kv[i].key) == (size_t)(ke - kb) && memcmp(s->kv[i].key, kb, (size_t)(ke - kb)) == 0)
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' is set twice in section [%s] (first at line %d). "
                             "HINT: keep one of the two lines", path, line, short_(s->kv[i].key, sb, sizeof sb),
                             sec_label_(s, lb, sizeof lb), s->kv[i].line);
    }
    s->kv = grow_(s->kv, s->n, sizeof *s->kv);
    xb_ini_kv *kv = &s->kv[s->n++];
    kv->key = strndup_(kb, (size_t)(ke - kb));
    kv->val = strndup_(vb, (size_t)(ve - vb));
    kv->line = line;
    kv->used = 0;
    return XB_OK;
}

xb_status xb_ini_parse_string(const char *text, size_t len, const char *path, xb_ini *out) {
    XB_ASSERT(out != NULL);
    memset(out, 0, sizeof *out);
    if (!path) path = "<string>";
    snprintf(out->path, sizeof out->path, "%s", path);
    path = out->path;
    if (!text && len > 0) return xb_errorf(XB_ERR_ARG, "%s: no text given (NULL with length %zu)", path, len);
    if (len > INI_MAX_BYTES)
        return xb_errorf(XB_ERR_CONFIG, "%s: %zu bytes is too large for a config (limit %zu MiB). HINT: check "
                         "that this is the right file", path, len, INI_MAX_BYTES >> 20);
    const char *p = text, *end = text + len;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* UTF-8 byte order mark */
    int line = 0;
    xb_status st = XB_OK;
    while (p < end && st == XB_OK) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *b = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        if ((st = check_bytes_(path, line, b, (size_t)(e - b))) != XB_OK) break;
        trim_(&b, &e);
        e = strip_comment_(b, e);
        trim_(&b, &e);
        if (b == e) continue;
        if (*b == '[') st = parse_header_(out, path, line, b, e);
        else st = parse_kv_(out, path, line, b, e);
    }
    if (st != XB_OK) xb_ini_free(out);
    return st;
}

xb_status xb_ini_parse_file(const char *path, xb_ini *out) {
    XB_ASSERT(out != NULL && path != NULL);
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return xb_errorf(XB_ERR_IO, "%s: cannot open: %s. HINT: check the path (zoo models are given by name, "
                         "e.g. --model resnet20)", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = xb_malloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap > INI_MAX_BYTES) break;
            char *nb = xb_malloc(cap * 2);
            memcpy(nb, buf, n);
            xb_free(buf);
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        xb_free(buf);
        return xb_errorf(XB_ERR_IO, "%s: cannot read: %s. HINT: is it a regular file?", path, strerror(err));
    }
    xb_status st = xb_ini_parse_string(buf, n, path, out);
    xb_free(buf);
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* Lookup and typed getters                                                                          */
/* ------------------------------------------------------------------------------------------------ */

static xb_ini_kv *find_kv_(xb_ini_section *s, const char *key) {
    if (!s) return NULL;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->kv[i].key, key) == 0) return &s->kv[i];
    return NULL;
}

const char *xb_ini_raw(xb_ini_section *s, const char *key, int *line) {
    xb_ini_kv *kv = find_kv_(s, key);
    if (!kv) return NULL;
    kv->used = 1;
    if (line) *line = kv->line;
    return kv->val;
}

/* Common front of the getters: *kv_out = the key or NULL when absent (then the caller applies the
 * default); errors for a missing required key and for an empty value. */
static xb_status lookup_(const xb_ini *ini, xb_ini_section *s, const char *key, int required, xb_ini_kv **kv_out) {
    char lb[2 * INI_SHOW + 16];
    xb_ini_kv *kv = find_kv_(s, key);
    *kv_out = kv;
    if (!kv) {
        if (!required) return XB_OK;
        if (!s) return xb_errorf(XB_ERR_CONFIG, "%s: a required section is missing (key '%s'). HINT: see the docs "
                                 "for the sections this config needs", ini_path_(ini), key);
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: section [%s] needs key '%s'. HINT: add a line '%s = ...' to it",
                         ini_path_(ini), s->line, sec_label_(s, lb, sizeof lb), key, key);
    }
    kv->used = 1;
    if (kv->val[0] == 0)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' in section [%s] has no value. HINT: %s", ini_path_(ini),
                         kv->line, key, sec_label_(s, lb, sizeof lb),
                         required ? "write a value after '='" : "write a value after '=', or delete the line to "
                                                               "use the default");
    return XB_OK;
}

xb_status xb_ini_int(const xb_ini *ini, xb_ini_section *s, const char *key, int required, long def, long lo,
                     long hi, long *out) {
    char lb[2 * INI_SHOW + 16], vb[INI_SHOW + 8];
    xb_ini_kv *kv;
    xb_status st = lookup_(ini, s, key, required, &kv);
    if (st != XB_OK) return st;
    if (!kv) { *out = def; return XB_OK; }
    const char *v = kv->val;
    size_t i = (v[0] == '-' || v[0] == '+') ? 1 : 0;
    int ok = v[i] != 0;
    for (size_t j = i; v[j]; j++)
        if (v[j] < '0' || v[j] > '9') { ok = 0; break; }
    long x = 0;
    if (ok) {
        errno = 0;
        char *endp = NULL;
        x = strtol(v, &endp, 10);
        if (errno == ERANGE || !endp || *endp) ok = 0;
    }
    if (!ok)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' in section [%s] must be a decimal integer in [%ld, %ld], "
                         "got '%s'. HINT: write digits only, e.g. %s = %ld", ini_path_(ini), kv->line, key,
                         sec_label_(s, lb, sizeof lb), lo, hi, short_(v, vb, sizeof vb), key,
                         def >= lo && def <= hi ? def : lo);
    if (x < lo || x > hi)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' in section [%s] is %ld, out of range. HINT: the allowed "
                         "range is [%ld, %ld]", ini_path_(ini), kv->line, key, sec_label_(s, lb, sizeof lb), x, lo, hi);
    *out = x;
    return XB_OK;
}

xb_status xb_ini_double(const xb_ini *ini, xb_ini_section *s, const char *key, int required, double def,
                        double lo, double hi, double *out) {
    char lb[2 * INI_SHOW + 16], vb[INI_SHOW + 8];
    xb_ini_kv *kv;
    xb_status st = lookup_(ini, s, key, required, &kv);
    if (st != XB_OK) return st;
    if (!kv) { *out = def; return XB_OK; }
    const char *v = kv->val;
    /* strtod also takes hex floats, "inf" and "nan": refuse them, and anything left unconsumed */
    int ok = strpbrk(v, "xXpP") == NULL;
    double x = 0;
    if (ok) {
        errno = 0;
        char *endp = NULL;
        x = strtod(v, &endp);
        if (endp == v || *endp || errno == ERANGE || !isfinite(x)) ok = 0;
    }
    if (!ok)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' in section [%s] must be a finite number in [%g, %g], "
                         "got '%s'. HINT: write a decimal number such as 0.1 or 1e-3", ini_path_(ini), kv->line,
                         key, sec_label_(s, lb, sizeof lb), lo, hi, short_(v, vb, sizeof vb));
    if (x < lo || x > hi)
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' in section [%s] is %s, out of range. HINT: the allowed "
                         "range is [%g, %g]", ini_path_(ini), kv->line, key, sec_label_(s, lb, sizeof lb),
                         short_(v, vb, sizeof vb), lo, hi);
    *out = x;
    return XB_OK;
}

xb_status xb_ini_bool(const xb_ini *ini, xb_ini_section *s, const char *key, int required, int def, int *out) {
    static const char *const yes[] = {"true", "1", "yes"}, *const no[] = {"false", "0", "no"};
    char lb[2 * INI_SHOW + 16], vb[INI_SHOW + 8];
    xb_ini_kv *kv;
    xb_status st = lookup_(ini, s, key, required, &kv);
    if (st != XB_OK) return st;
    if (!kv) { *out = def ? 1 : 0; return XB_OK; }
    for (int i = 0; i < 3; i++) {
        if (strcmp(kv->val, yes[i]) == 0) { *out = 1; return XB_OK; }
        if (strcmp(kv->val, no[i]) == 0) { *out = 0; return XB_OK; }
    }
    return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' in section [%s] must be true or false, got '%s'. HINT: write "
                     "true/false (yes/no and 1/0 are accepted too)", ini_path_(ini), kv->line, key,
                     sec_label_(s, lb, sizeof lb), short_(kv->val, vb, sizeof vb));
}

xb_status xb_ini_str(const xb_ini *ini, xb_ini_section *s, const char *key, int required, const char *def,
                     const char *const *choices, char *out, size_t n, int *index) {
    char lb[2 * INI_SHOW + 16], vb[INI_SHOW + 8];
    XB_ASSERT(out != NULL && n > 0);
    xb_ini_kv *kv;
    xb_status st = lookup_(ini, s, key, required, &kv);
    if (st != XB_OK) return st;
    if (!kv && !def) { /* optional, no default: "" and no choice */
        out[0] = 0;
        if (index) *index = -1;
        return XB_OK;
    }
    const char *v = kv ? kv->val : def;
    if (choices) {
        int found = -1;
        for (int i = 0; choices[i]; i++)
            if (strcmp(v, choices[i]) == 0) { found = i; break; }
        if (found < 0) {
            char list[512];
            size_t used = 0;
            list[0] = 0;
            for (int i = 0; choices[i] && used < sizeof list; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", choices[i]);
            if (!kv) /* a default outside the choices is the caller's bug */
                xb_abort(__FILE__, __LINE__, "xb_ini_str: the default is one of the choices");
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: key '%s' in section [%s] is '%s', which is not allowed. HINT: "
                             "choose one of: %s", ini_path_(ini), kv->line, key, sec_label_(s, lb, sizeof lb),
                             short_(v, vb, sizeof vb), list);
        }
        if (index) *index = found;
    } else if (index) {
        *index = -1;
    }
    size_t len = strlen(v);
    if (len >= n) {
        if (!kv) xb_abort(__FILE__, __LINE__, "xb_ini_str: the default fits the output buffer");
        return xb_errorf(XB_ERR_CONFIG, "%s:%d: the value of key '%s' in section [%s] is %zu characters long; "
                         "at most %zu fit. HINT: shorten the value", ini_path_(ini), kv->line, key,
                         sec_label_(s, lb, sizeof lb), len, n - 1);
    }
    memcpy(out, v, len + 1);
    return XB_OK;
}

xb_status xb_ini_check_unused(const xb_ini *ini) {
    char lb[2 * INI_SHOW + 16], kb[INI_SHOW + 8];
    for (int i = 0; i < ini->n; i++) {
        const xb_ini_section *s = &ini->sec[i];
        for (int j = 0; j < s->n; j++) {
            if (s->kv[j].used) continue;
            return xb_errorf(XB_ERR_CONFIG, "%s:%d: unknown key '%s' in section [%s] (line %d). HINT: check the "
                             "spelling; docs/model-cfg.md lists the keys of each section type", ini_path_(ini),
                             s->kv[j].line, short_(s->kv[j].key, kb, sizeof kb), sec_label_(s, lb, sizeof lb),
                             s->kv[j].line);
        }
    }
    return XB_OK;
}
