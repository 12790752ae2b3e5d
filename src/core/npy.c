/* npy.c -- NumPy .npy files: read and write contiguous C-order arrays of float32, float64, int64, int32
 * and uint8, format versions 1.0, 2.0 and 3.0 (https://numpy.org/doc/stable/reference/generated/
 * numpy.lib.format.html).
 *
 * What it deliberately is not: no Fortran order, no big-endian data, no structured, string or object
 * dtypes, no .npz archives, no memory mapping.  The header is a Python dict literal; it is parsed by a
 * small strict recursive-descent reader (exactly the keys 'descr', 'fortran_order', 'shape'), never
 * evaluated.  Every size read from the file is checked against the file's real size before anything
 * is allocated from it, and the data must fill the rest of the file exactly (no truncation, no
 * trailing bytes).  Writing reproduces numpy's own header byte for byte (version 1.0, 64-byte aligned,
 * with numpy's spare room for the growth axis) and is atomic and durable (xb_write_atomic: path.tmp,
 * fsync, rename, fsync of the directory).
 */
#include "xbar.h"
#include "core/io_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .npy code assumes a little-endian host");

#define NPY_MAGIC_LEN 6
static const char npy_magic[NPY_MAGIC_LEN] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
/* Real headers of the dtypes we read are under 200 bytes; numpy itself refuses more than 10000 unless
 * told otherwise.  Anything above this is not a file we wrote or numpy wrote for these dtypes. */
#define NPY_MAX_HEADER (1u << 20)
#define NPY_ALIGN 64               /* numpy's ARRAY_ALIGN */
#define NPY_GROWTH_AXIS_DIGITS 21  /* numpy's GROWTH_AXIS_MAX_DIGITS */

#define NPY_HINT_RESAVE "HINT: re-create the file with numpy: np.save(path, np.ascontiguousarray(a, dtype=np.float32))"

/* ------------------------------------------------------------------------------------------------ */
/* Small file helpers                                                                                */
/* ------------------------------------------------------------------------------------------------ */

/* Reads exactly n bytes at offset off; returns the number read (less than n at end of file or on
 * error, with errno set in the latter case). */

/* ------------------------------------------------------------------------------------------------ */
/* Header dict parser                                                                                */
/* ------------------------------------------------------------------------------------------------ */

typedef struct npy_header {
    xb_dtype dtype;
    int ndim;
    int64_t shape[XB_MAX_DIMS];
} npy_header;

typedef struct npy_parser {
    const char *path;   /* for messages */
    const char *text;   /* the header dict text */
    size_t len;
    size_t pos;
} npy_parser;

static void npy_skip_ws_(npy_parser *p) {
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int npy_peek_(const npy_parser *p) { return p->pos < p->len ? (unsigned char)p->text[p->pos] : -1; }

/* Error at the parser's current position, quoting the header. */
static xb_status npy_syntax_(const npy_parser *p, const char *what) {
    char ex[512];
    return xb_errorf(XB_ERR_FORMAT, "%s: header: malformed dict at character %zu: %s (header: %s). %s",
                     p->path, p->pos, what, xb_excerpt(p->text, p->len, 100, ex, sizeof ex), NPY_HINT_RESAVE);
}

/* A Python string literal in single or double quotes without escapes, copied into out (size n). */
static xb_status npy_parse_str_(npy_parser *p, char *out, size_t n) {
    int q = npy_peek_(p);
    if (q != '\'' && q != '"') return npy_syntax_(p, "expected a quoted string");
    size_t start = ++p->pos;
    while (p->pos < p->len && p->text[p->pos] != (char)q) {
        if (p->text[p->pos] == '\\') return npy_syntax_(p, "escape sequences are not supported in strings");
        if (p->text[p->pos] == '\n') return npy_syntax_(p, "unterminated string");
        p->pos++;
    }
    if (p->pos >= p->len) return npy_syntax_(p, "unterminated string");
    size_t k = p->pos - start;
    p->pos++; /* closing quote */
    if (k + 1 > n) return npy_syntax_(p, "string too long");
    memcpy(out, p->text + start, k);
    out[k] = 0;
    return XB_OK;
}

/* Maps a numpy dtype descriptor to an xb_dtype; a clear message for the ones we refuse. */
static xb_status npy_parse_descr_(npy_parser *p, xb_dtype *out) {
    if (npy_peek_(p) == '[')
        return xb_errorf(XB_ERR_FORMAT, "%s: header: 'descr' is a structured dtype (a list of fields), "
                         "which xbar does not read. HINT: save each field as its own plain array", p->path);
    char d[64];
    xb_status st = npy_parse_str_(p, d, sizeof d);
    if (st != XB_OK) return st;
    static const struct { const char *kind; xb_dtype dt; } kinds[] = {
        {"f4", XB_F32}, {"f8", XB_F64}, {"i8", XB_I64}, {"i4", XB_I32}, {"u1", XB_U8},
    };
    char order = d[0];
    const char *kind = d[0] ? d + 1 : d;
    if (strchr("<>|=", order) == NULL || order == 0) { order = '='; kind = d; } /* e.g. 'f4' */
    if (strcmp(kind, "O") == 0 || strcmp(kind, "O8") == 0 || strcmp(kind, "O4") == 0)
        return xb_errorf(XB_ERR_FORMAT, "%s: header: dtype '%s' is an object array (pickled Python "
                         "objects), which xbar never reads. HINT: convert it to a numeric array first, e.g. "
                         "np.save(path, np.asarray(a, dtype=np.float32))", p->path, d);
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        if (strcmp(kind, kinds[i].kind) != 0) continue;
        int one_byte = kinds[i].dt == XB_U8;
        if (order == '>' && !one_byte)
            return xb_errorf(XB_ERR_FORMAT, "%s: header: dtype '%s' is big-endian; xbar reads little-endian "
                             "data only. HINT: convert with a.astype(a.dtype.newbyteorder('<')) before "
                             "np.save", p->path, d);
        if (order == '|' && !one_byte)
            return xb_errorf(XB_ERR_FORMAT, "%s: header: dtype '%s' has byte order '|' (not applicable), "
                             "which is only valid for 1-byte types. %s", p->path, d, NPY_HINT_RESAVE);
        *out = kinds[i].dt;
        return XB_OK;
    }
    return xb_errorf(XB_ERR_FORMAT, "%s: header: dtype '%s' is not supported (xbar reads '<f4', '<f8', "
                     "'<i8', '<i4' and '|u1'). HINT: convert with a.astype(np.float32) (or np.int64) "
                     "before np.save", p->path, d);
}

static xb_status npy_parse_bool_(npy_parser *p, int *out) {
    if (p->len - p->pos >= 4 && memcmp(p->text + p->pos, "True", 4) == 0) { p->pos += 4; *out = 1; }
    else if (p->len - p->pos >= 5 && memcmp(p->text + p->pos, "False", 5) == 0) { p->pos += 5; *out = 0; }
    else return npy_syntax_(p, "expected True or False");
    int c = npy_peek_(p);
    if (c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return npy_syntax_(p, "expected True or False");
    return XB_OK;
}

/* A shape tuple: "()", "(5,)", "(2, 3)", "(2, 3,)"; Python 2's "3L" longs are accepted. */
static xb_status npy_parse_shape_(npy_parser *p, npy_header *h) {
    if (npy_peek_(p) != '(') return npy_syntax_(p, "'shape' must be a tuple such as (2, 3)");
    p->pos++;
    int n = 0, trailing_comma = 0;
    for (;;) {
        npy_skip_ws_(p);
        int c = npy_peek_(p);
        if (c == ')') { p->pos++; break; }
        if (n > 0 && !trailing_comma) return npy_syntax_(p, "expected ',' or ')' in 'shape'");
        if (c == '-')
            return xb_errorf(XB_ERR_FORMAT, "%s: header: 'shape' has a negative dimension. %s", p->path,
                             NPY_HINT_RESAVE);
        if (c < '0' || c > '9') return npy_syntax_(p, "expected a non-negative integer in 'shape'");
        int64_t v = 0;
        while ((c = npy_peek_(p)) >= '0' && c <= '9') {
            if (v > (INT64_MAX - (c - '0')) / 10)
                return xb_errorf(XB_ERR_FORMAT, "%s: header: dimension %d of 'shape' does not fit in 64 bits. "
                                 "HINT: the file is corrupt; re-create it", p->path, n);
            v = v * 10 + (c - '0');
            p->pos++;
        }
        if (npy_peek_(p) == 'L') p->pos++;
        if (n < XB_MAX_DIMS) h->shape[n] = v;
        n++;
        npy_skip_ws_(p);
        trailing_comma = 0;
        if (npy_peek_(p) == ',') { p->pos++; trailing_comma = 1; }
    }
    if (n == 1 && !trailing_comma)
        return npy_syntax_(p, "'shape' (n) without a comma is not a tuple; a 1-d shape is written (n,)");
    if (n > XB_MAX_DIMS)
        return xb_errorf(XB_ERR_FORMAT, "%s: header: the array has %d dimensions; xbar handles at most %d. "
                         "HINT: reshape it to %d or fewer dimensions before np.save", p->path, n, XB_MAX_DIMS,
                         XB_MAX_DIMS);
    h->ndim = n;
    for (int i = n; i < XB_MAX_DIMS; i++) h->shape[i] = 1;
    return XB_OK;
}

static xb_status npy_parse_header_(const char *path, const char *text, size_t len, npy_header *h) {
    npy_parser p = {.path = path, .text = text, .len = len, .pos = 0};
    int have_descr = 0, have_order = 0, have_shape = 0;
    xb_status st;
    npy_skip_ws_(&p);
    if (npy_peek_(&p) != '{') return npy_syntax_(&p, "the header does not start with '{'");
    p.pos++;
    for (;;) {
        npy_skip_ws_(&p);
        if (npy_peek_(&p) == '}') { p.pos++; break; }
        char key[32];
        size_t key_pos = p.pos;
        if ((st = npy_parse_str_(&p, key, sizeof key)) != XB_OK) return st;
        int *seen = strcmp(key, "descr") == 0 ? &have_descr
                  : strcmp(key, "fortran_order") == 0 ? &have_order
                  : strcmp(key, "shape") == 0 ? &have_shape : NULL;
        if (!seen) {
            p.pos = key_pos;
            return npy_syntax_(&p, "unknown key (a .npy header has exactly 'descr', 'fortran_order', 'shape')");
        }
        if (*seen) { p.pos = key_pos; return npy_syntax_(&p, "duplicate key"); }
        *seen = 1;
        npy_skip_ws_(&p);
        if (npy_peek_(&p) != ':') return npy_syntax_(&p, "expected ':' after the key");
        p.pos++;
        npy_skip_ws_(&p);
        if (seen == &have_descr) {
            if ((st = npy_parse_descr_(&p, &h->dtype)) != XB_OK) return st;
        } else if (seen == &have_order) {
            int fortran = 0;
            if ((st = npy_parse_bool_(&p, &fortran)) != XB_OK) return st;
            if (fortran)
                return xb_errorf(XB_ERR_FORMAT, "%s: header: 'fortran_order' is True; xbar reads C-order "
                                 "(row-major) arrays only. HINT: save np.ascontiguousarray(a) instead of a",
                                 path);
        } else {
            if ((st = npy_parse_shape_(&p, h)) != XB_OK) return st;
        }
        npy_skip_ws_(&p);
        if (npy_peek_(&p) == ',') { p.pos++; continue; }
        if (npy_peek_(&p) == '}') { p.pos++; break; }
        return npy_syntax_(&p, "expected ',' or '}'");
    }
    npy_skip_ws_(&p);
    if (p.pos != p.len) return npy_syntax_(&p, "unexpected text after the closing '}'");
    if (!have_descr || !have_order || !have_shape)
        return npy_syntax_(&p, !have_descr ? "missing key 'descr'" : !have_order ? "missing key 'fortran_order'"
                                                                                : "missing key 'shape'");
    return XB_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Load                                                                                              */
/* ------------------------------------------------------------------------------------------------ */

xb_status xb_npy_load(const char *path, xb_tensor *out) {
    XB_ASSERT(path && out);
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return xb_errorf(XB_ERR_IO, "%s: cannot open: %s. HINT: check the path and its permissions", path,
                         strerror(errno));
    xb_status st = XB_OK;
    char *text = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = xb_errorf(XB_ERR_IO, "%s: cannot stat: %s. HINT: check the path", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = xb_errorf(XB_ERR_IO, "%s: not a regular file. HINT: pass the path of a .npy file", path);
        goto done;
    }
    int64_t fsize = (int64_t)sb.st_size;

    /* preamble: magic, version, header length (2 bytes in 1.0, 4 bytes in 2.0 and 3.0) */
    unsigned char pre[12];
    size_t got = xb_pread_full(fd, pre, fsize < 12 ? (size_t)fsize : 12, 0);
    if ((int64_t)got != (fsize < 12 ? fsize : 12)) {
        st = xb_errorf(XB_ERR_IO, "%s: read error: %s. HINT: check the file", path, strerror(errno));
        goto done;
    }
    if (got < NPY_MAGIC_LEN || memcmp(pre, npy_magic, NPY_MAGIC_LEN) != 0) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: preamble: not a .npy file (it does not start with \"\\x93NUMPY\"). "
                       "HINT: write it with numpy.save or xbar", path);
        goto done;
    }
    if (got < 8) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: preamble: file ends after %zu bytes, inside the preamble. "
                       "HINT: the file is truncated; re-create it", path, got);
        goto done;
    }
    int major = pre[6], minor = pre[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: preamble: format version %d.%d is not supported (xbar reads 1.0, "
                       "2.0 and 3.0). HINT: re-save with numpy.save", path, major, minor);
        goto done;
    }
    size_t pre_len = major == 1 ? 10 : 12;
    if (got < pre_len) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: preamble: file ends after %zu bytes, inside the preamble. "
                       "HINT: the file is truncated; re-create it", path, got);
        goto done;
    }
    uint64_t hlen = major == 1 ? (uint64_t)pre[8] | (uint64_t)pre[9] << 8
                               : (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
                                     (uint64_t)pre[11] << 24;
    if (hlen > (uint64_t)(fsize - (int64_t)pre_len)) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: preamble: header length %" PRIu64 " runs past the end of the file "
                       "(%" PRId64 " bytes). HINT: the file is truncated or not a .npy file", path, hlen, fsize);
        goto done;
    }
    if (hlen > NPY_MAX_HEADER) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: preamble: header length %" PRIu64 " is implausibly large (limit %u). "
                       "HINT: the file is corrupt or holds a dtype xbar does not read", path, hlen,
                       NPY_MAX_HEADER);
        goto done;
    }
    text = xb_malloc(hlen + 1);
    if (xb_pread_full(fd, text, hlen, (int64_t)pre_len) != hlen) {
        st = xb_errorf(XB_ERR_IO, "%s: header: read error: %s. HINT: check the file", path, strerror(errno));
        goto done;
    }
    text[hlen] = 0;
    npy_header h = {0};
    if ((st = npy_parse_header_(path, text, hlen, &h)) != XB_OK) goto done;

    /* data: exactly numel * itemsize bytes after the header, computed without overflow */
    int64_t numel = 1, nbytes;
    for (int i = 0; i < h.ndim; i++) {
        if (__builtin_mul_overflow(numel, h.shape[i], &numel)) {
            char sh[128];
            st = xb_errorf(XB_ERR_FORMAT, "%s: header: shape %s has more elements than fit in 64 bits. "
                           "HINT: the file is corrupt; re-create it", path, xb_shape_str(h.ndim, h.shape, sh, sizeof sh));
            goto done;
        }
    }
    if (__builtin_mul_overflow(numel, (int64_t)xb_dtype_size(h.dtype), &nbytes)) {
        char sh[128];
        st = xb_errorf(XB_ERR_FORMAT, "%s: header: shape %s of %s needs more bytes than fit in 64 bits. "
                       "HINT: the file is corrupt; re-create it", path, xb_shape_str(h.ndim, h.shape, sh, sizeof sh),
                       xb_dtype_name(h.dtype));
        goto done;
    }
    int64_t data_off = (int64_t)pre_len + (int64_t)hlen, avail = fsize - data_off;
    if (nbytes != avail) {
        char sh[128];
        xb_shape_str(h.ndim, h.shape, sh, sizeof sh);
        if (avail < nbytes)
            st = xb_errorf(XB_ERR_FORMAT, "%s: data: the header's shape %s of %s needs %" PRId64 " bytes but "
                           "only %" PRId64 " follow the header. HINT: the file is truncated; re-create it",
                           path, sh, xb_dtype_name(h.dtype), nbytes, avail);
        else
            st = xb_errorf(XB_ERR_FORMAT, "%s: data: %" PRId64 " unexpected bytes after the %" PRId64 " bytes of "
                           "the %s %s array (trailing garbage). HINT: the file is corrupt or was appended "
                           "to; re-create it", path, avail - nbytes, nbytes, sh, xb_dtype_name(h.dtype));
        goto done;
    }
    xb_tensor t = {.dtype = h.dtype, .ndim = h.ndim, .owner = 1};
    memcpy(t.shape, h.shape, sizeof t.shape);
    t.data = xb_malloc((size_t)nbytes);
    if (xb_pread_full(fd, t.data, (size_t)nbytes, data_off) != (size_t)nbytes) {
        st = xb_errorf(XB_ERR_IO, "%s: data: read error or file shrank while reading: %s. HINT: check the file",
                       path, strerror(errno));
        xb_tensor_free(&t);
        goto done;
    }
    *out = t;
done:
    xb_free(text);
    close(fd);
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* Save                                                                                              */
/* ------------------------------------------------------------------------------------------------ */

static const char *npy_descr_(xb_dtype t) {
    switch (t) {
    case XB_F32: return "<f4";
    case XB_F64: return "<f8";
    case XB_I64: return "<i8";
    case XB_I32: return "<i4";
    case XB_U8: return "|u1";
    default: return NULL;
    }
}

/* Writes the file with numpy's exact version 1.0 header: "{'descr': ..., 'fortran_order': False,
 * 'shape': (...), }", spare spaces for the first axis to grow to 21 digits, padding to a multiple of
 * 64 bytes, '\n'. */
xb_status xb_npy_save(const char *path, const xb_tensor *t) {
    XB_ASSERT(path && t);
    const char *descr = npy_descr_(t->dtype);
    if (!descr || t->ndim < 0 || t->ndim > XB_MAX_DIMS)
        return xb_errorf(XB_ERR_ARG, "%s: cannot save: invalid tensor (dtype %d, %d dims). HINT: this is a "
                         "bug in the caller", path, (int)t->dtype, t->ndim);
    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0 || __builtin_mul_overflow(numel, t->shape[i], &numel))
            return xb_errorf(XB_ERR_ARG, "%s: cannot save: invalid shape (dimension %d is %lld). HINT: this is "
                             "a bug in the caller", path, i, (long long)t->shape[i]);
    int64_t nbytes64;
    if (__builtin_mul_overflow(numel, (int64_t)xb_dtype_size(t->dtype), &nbytes64))
        return xb_errorf(XB_ERR_ARG, "%s: cannot save: the tensor's size overflows. HINT: this is a bug in "
                         "the caller", path);
    size_t nbytes = (size_t)nbytes64;
    if (nbytes > 0 && !t->data)
        return xb_errorf(XB_ERR_ARG, "%s: cannot save: tensor has no data. HINT: this is a bug in the caller",
                         path);

    char hdr[512], shape[256];
    size_t o = 0;
    if (t->ndim == 0) o = (size_t)snprintf(shape, sizeof shape, "()");
    else {
        o = (size_t)snprintf(shape, sizeof shape, "(");
        for (int i = 0; i < t->ndim; i++)
            o += (size_t)snprintf(shape + o, sizeof shape - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
        snprintf(shape + o, sizeof shape - o, t->ndim == 1 ? ",)" : ")");
    }
    /* preamble (10 bytes) then the dict */
    int hl = snprintf(hdr + 10, sizeof hdr - 10, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, shape);
    size_t len = (size_t)hl;
    if (t->ndim > 0) {
        char d0[32];
        int digits = snprintf(d0, sizeof d0, "%lld", (long long)t->shape[0]);
        for (int i = digits; i < NPY_GROWTH_AXIS_DIGITS; i++) hdr[10 + len++] = ' ';
    }
    size_t pad = NPY_ALIGN - ((10 + len + 1) % NPY_ALIGN);
    XB_ASSERT(10 + len + pad + 1 <= sizeof hdr);
    memset(hdr + 10 + len, ' ', pad);
    len += pad;
    hdr[10 + len++] = '\n';
    memcpy(hdr, npy_magic, NPY_MAGIC_LEN);
    hdr[6] = 1;
    hdr[7] = 0;
    hdr[8] = (char)(len & 0xff);
    hdr[9] = (char)(len >> 8);

    const void *bufs[2] = {hdr, t->data};
    const size_t lens[2] = {10 + len, nbytes};
    return xb_write_atomic(path, 2, bufs, lens);
}
