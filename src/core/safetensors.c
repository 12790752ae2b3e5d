/* safetensors.c -- the safetensors format (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets"}, ...,
 * "__metadata__": {string: string}}, then the data section.  Reads F32, F64, I64, I32 and U8 tensors;
 * writes any xb_tensor.
 *
 * Loading validates like the reference implementation: the header length against the file, the JSON,
 * every dtype, shape and offset pair, the offsets against shape * dtype size, and that the tensors
 * tile the data section exactly (no overlap, no gap, no trailing bytes), before allocating any tensor.
 * Saving writes tensors in the caller's order, pads the JSON with spaces so the data section starts
 * 8-byte aligned (as the Python writer does), and is atomic: path.tmp, fsync, rename.
 *
 * What it deliberately is not: no memory mapping, no lazy loading, no F16/BF16 conversion.
 */
#include "xbar.h"
#include "core/io_util.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the safetensors code assumes a little-endian host");

/* The reference implementation's limit on the JSON header. */
#define ST_MAX_HEADER 100000000u
/* Offsets and dims are JSON numbers (doubles): integers are exact up to 2^53. */
#define ST_MAX_INT 9007199254740992.0

static const char *const st_dtype_names[XB_DTYPE_COUNT] = {
    [XB_F32] = "F32", [XB_F64] = "F64", [XB_I64] = "I64", [XB_U8] = "U8", [XB_I32] = "I32",
};
/* dtypes of the format that xbar does not read (named in messages as "not supported", not "unknown") */
static const char *const st_other_dtypes[] = {
    "BOOL", "U16", "I8", "I16", "U32", "U64", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
    "F6_E3M2", "F4", "C64", "E4M3", "E5M2",
};

#define ST_HINT_REWRITE "HINT: re-create the file, e.g. safetensors.torch.save_file(state_dict, path)"

/* ------------------------------------------------------------------------------------------------ */
/* Small helpers                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

static void *st_realloc_(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "xbar: out of memory allocating %zu bytes.\nHINT: free memory on this machine.\n", n);
        exit(3);
    }
    return q;
}

static char *st_strdup_(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = st_realloc_(NULL, n);
    memcpy(d, s, n);
    return d;
}


/* A JSON number that is an exact non-negative integer <= 2^53. */
static int st_get_uint_(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0.0) || v > ST_MAX_INT || v != floor(v)) return 0;
    *out = (int64_t)v;
    return 1;
}

/* ------------------------------------------------------------------------------------------------ */
/* Map building                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

void xb_st_init(xb_safetensors *st) { memset(st, 0, sizeof *st); }

void xb_st_add(xb_safetensors *st, const char *name, xb_tensor t) {
    XB_ASSERT(st && name);
    XB_ASSERT((unsigned)t.dtype < XB_DTYPE_COUNT && t.ndim >= 0 && t.ndim <= XB_MAX_DIMS);
    st->e = st_realloc_(st->e, (size_t)(st->n + 1) * sizeof *st->e);
    t.owner = 0;
    st->e[st->n].name = st_strdup_(name);
    st->e[st->n].t = t;
    st->n++;
}

void xb_st_add_meta(xb_safetensors *st, const char *key, const char *val) {
    XB_ASSERT(st && key && val);
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_key[i], key) == 0) {
            free(st->meta_val[i]);
            st->meta_val[i] = st_strdup_(val);
            return;
        }
    st->meta_key = st_realloc_(st->meta_key, (size_t)(st->n_meta + 1) * sizeof *st->meta_key);
    st->meta_val = st_realloc_(st->meta_val, (size_t)(st->n_meta + 1) * sizeof *st->meta_val);
    st->meta_key[st->n_meta] = st_strdup_(key);
    st->meta_val[st->n_meta] = st_strdup_(val);
    st->n_meta++;
}

void xb_st_free(xb_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) {
        free(st->e[i].name);
        xb_tensor_free(&st->e[i].t);
    }
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_key[i]);
        free(st->meta_val[i]);
    }
    free(st->e);
    free(st->meta_key);
    free(st->meta_val);
    memset(st, 0, sizeof *st);
}

const xb_tensor *xb_st_get(const xb_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->e[i].name, name) == 0) return &st->e[i].t;
    return NULL;
}

const char *xb_st_meta(const xb_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_key[i], key) == 0) return st->meta_val[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ */
/* Load                                                                                              */
/* ------------------------------------------------------------------------------------------------ */

typedef struct st_info {
    const char *name;          /* points into the cJSON tree */
    xb_dtype dtype;
    int ndim;
    int64_t shape[XB_MAX_DIMS];
    int64_t begin, end;        /* in the data section */
} st_info;

static int st_cmp_name_(const void *a, const void *b) {
    return strcmp(((const st_info *const *)a)[0]->name, ((const st_info *const *)b)[0]->name);
}

static int st_cmp_offset_(const void *a, const void *b) {
    const st_info *x = *(const st_info *const *)a, *y = *(const st_info *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static xb_status st_parse_dtype_(const char *path, const char *name, const cJSON *j, xb_dtype *out) {
    if (!cJSON_IsString(j))
        return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is missing or not a string. %s", path, name,
                         ST_HINT_REWRITE);
    for (int d = 0; d < XB_DTYPE_COUNT; d++)
        if (strcmp(j->valuestring, st_dtype_names[d]) == 0) { *out = (xb_dtype)d; return XB_OK; }
    for (size_t i = 0; i < sizeof st_other_dtypes / sizeof *st_other_dtypes; i++)
        if (strcmp(j->valuestring, st_other_dtypes[i]) == 0)
            return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': dtype %s is not supported (xbar reads F32, F64, "
                             "I64, I32 and U8). HINT: convert before saving, e.g. {k: v.float() for k, v in "
                             "state_dict.items()}", path, name, j->valuestring);
    char ex[128];
    return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\". %s", path, name,
                     xb_excerpt(j->valuestring, strlen(j->valuestring), 60, ex, sizeof ex), ST_HINT_REWRITE);
}

/* Validates one tensor entry of the header and fills info (no allocation). */
static xb_status st_parse_entry_(const char *path, const cJSON *j, int64_t data_len, st_info *info) {
    const char *name = info->name;
    if (!cJSON_IsObject(j))
        return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': the entry is not a JSON object. %s", path, name,
                         ST_HINT_REWRITE);
    xb_status st = st_parse_dtype_(path, name, cJSON_GetObjectItemCaseSensitive(j, "dtype"), &info->dtype);
    if (st != XB_OK) return st;

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    if (!cJSON_IsArray(shape))
        return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': \"shape\" is missing or not an array. %s", path, name,
                         ST_HINT_REWRITE);
    int nd = cJSON_GetArraySize(shape);
    if (nd > XB_MAX_DIMS)
        return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': %d dimensions; xbar handles at most %d. HINT: "
                         "reshape it before saving", path, name, nd, XB_MAX_DIMS);
    info->ndim = nd;
    int64_t numel = 1, nbytes;
    int k = 0;
    for (const cJSON *d = shape->child; d; d = d->next, k++) {
        if (!st_get_uint_(d, &info->shape[k]))
            return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': \"shape\"[%d] is not a non-negative integer. %s",
                             path, name, k, ST_HINT_REWRITE);
        if (__builtin_mul_overflow(numel, info->shape[k], &numel))
            return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': the shape's element count overflows. %s", path,
                             name, ST_HINT_REWRITE);
    }
    for (; k < XB_MAX_DIMS; k++) info->shape[k] = 1;
    if (__builtin_mul_overflow(numel, (int64_t)xb_dtype_size(info->dtype), &nbytes))
        return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': the shape's byte size overflows. %s", path, name,
                         ST_HINT_REWRITE);

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !st_get_uint_(off->child, &info->begin) ||
        !st_get_uint_(off->child->next, &info->end))
        return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] with "
                         "non-negative integers. %s", path, name, ST_HINT_REWRITE);
    if (info->end < info->begin || info->end > data_len)
        return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] are not "
                         "inside the data section of %" PRId64 " bytes. HINT: the file is truncated or corrupt; "
                         "re-create it", path, name, info->begin, info->end, data_len);
    if (info->end - info->begin != nbytes) {
        char sh[128];
        return xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] hold %" PRId64
                         " bytes but shape %s of %s needs %" PRId64 ". %s", path, name, info->begin, info->end,
                         info->end - info->begin, xb_shape_str(info->ndim, info->shape, sh, sizeof sh),
                         st_dtype_names[info->dtype], nbytes, ST_HINT_REWRITE);
    }
    return XB_OK;
}

static xb_status st_parse_meta_(const char *path, const cJSON *j, xb_safetensors *out) {
    if (cJSON_IsNull(j)) return XB_OK;
    if (!cJSON_IsObject(j))
        return xb_errorf(XB_ERR_FORMAT, "%s: \"__metadata__\" is not an object of strings. %s", path,
                         ST_HINT_REWRITE);
    for (const cJSON *m = j->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return xb_errorf(XB_ERR_FORMAT, "%s: \"__metadata__\": the value of '%s' is not a string. HINT: "
                             "metadata values must be strings (str(value) in Python)", path, m->string);
        if (xb_st_meta(out, m->string))
            return xb_errorf(XB_ERR_FORMAT, "%s: \"__metadata__\": duplicate key '%s'. %s", path, m->string,
                             ST_HINT_REWRITE);
        xb_st_add_meta(out, m->string, m->valuestring);
    }
    return XB_OK;
}

/* Parses the JSON header and checks every entry against the data section; no tensor is allocated. */
static xb_status st_parse_header_(const char *path, cJSON *root, int64_t data_len, xb_safetensors *out,
                                  st_info **infos_out, int *n_out) {
    if (!cJSON_IsObject(root))
        return xb_errorf(XB_ERR_FORMAT, "%s: header: the JSON is not an object. %s", path, ST_HINT_REWRITE);
    int n = 0, n_meta = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) n_meta++;
        else n++;
    }
    if (n_meta > 1)
        return xb_errorf(XB_ERR_FORMAT, "%s: header: \"__metadata__\" appears %d times. %s", path, n_meta,
                         ST_HINT_REWRITE);
    st_info *infos = st_realloc_(NULL, (size_t)n * sizeof *infos);
    st_info **order = st_realloc_(NULL, (size_t)n * sizeof *order);
    xb_status st = XB_OK;
    int k = 0;
    for (const cJSON *c = root->child; c && st == XB_OK; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) { st = st_parse_meta_(path, c, out); continue; }
        memset(&infos[k], 0, sizeof infos[k]);
        infos[k].name = c->string;
        order[k] = &infos[k];
        st = st_parse_entry_(path, c, data_len, &infos[k]);
        k++;
    }
    if (st != XB_OK) goto fail;

    /* duplicate names */
    qsort(order, (size_t)n, sizeof *order, st_cmp_name_);
    for (int i = 1; i < n; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            st = xb_errorf(XB_ERR_FORMAT, "%s: header: tensor '%s' appears more than once. %s", path,
                           order[i]->name, ST_HINT_REWRITE);
            goto fail;
        }
    /* the tensors must tile [0, data_len) in offset order */
    qsort(order, (size_t)n, sizeof *order, st_cmp_offset_);
    int64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const st_info *t = order[i];
        if (t->begin < pos) {
            st = xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] overlap those "
                           "of tensor '%s' (which end at %" PRId64 "). HINT: the file is corrupt; re-create it",
                           path, t->name, t->begin, t->end, order[i - 1]->name, pos);
            goto fail;
        }
        if (t->begin > pos) {
            st = xb_errorf(XB_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] leave bytes %"
                           PRId64 "..%" PRId64 " of the data section unused; safetensors requires the tensors to "
                           "cover it without gaps. HINT: the file is corrupt; re-create it", path, t->name,
                           t->begin, t->end, pos, t->begin - 1);
            goto fail;
        }
        pos = t->end;
    }
    if (pos != data_len) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: data: %" PRId64 " bytes after the last tensor (which ends at %" PRId64
                       ") belong to no tensor (trailing garbage). HINT: the file is corrupt or was appended to; "
                       "re-create it", path, data_len - pos, pos);
        goto fail;
    }
    free(order);
    *infos_out = infos;
    *n_out = n;
    return XB_OK;
fail:
    free(order);
    free(infos);
    return st;
}

xb_status xb_st_load(const char *path, xb_safetensors *out) {
    XB_ASSERT(path && out);
    xb_st_init(out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return xb_errorf(XB_ERR_IO, "%s: cannot open: %s. HINT: check the path and its permissions", path,
                         strerror(errno));
    xb_status st = XB_OK;
    char *text = NULL;
    cJSON *root = NULL;
    st_info *infos = NULL;
    int n = 0;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = xb_errorf(XB_ERR_IO, "%s: not a regular file. HINT: pass the path of a .safetensors file", path);
        goto done;
    }
    int64_t fsize = (int64_t)sb.st_size;
    unsigned char lenb[8];
    if (fsize < 8 || xb_pread_full(fd, lenb, 8, 0) != 8) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: header length: the file has %" PRId64 " bytes, fewer than the 8-byte "
                       "header length. HINT: the file is truncated or not a safetensors file", path, fsize);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | lenb[i];
    if (hlen > (uint64_t)(fsize - 8)) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: header length: %" PRIu64 " runs past the end of the file (%" PRId64
                       " bytes). HINT: the file is truncated or not a safetensors file", path, hlen, fsize);
        goto done;
    }
    if (hlen > ST_MAX_HEADER || hlen < 2) {
        st = xb_errorf(XB_ERR_FORMAT, "%s: header length: %" PRIu64 " is not a plausible JSON header size (2 .. "
                       "%u). HINT: the file is corrupt or not a safetensors file", path, hlen, ST_MAX_HEADER);
        goto done;
    }
    text = st_realloc_(NULL, hlen + 1);
    if (xb_pread_full(fd, text, hlen, 8) != hlen) {
        st = xb_errorf(XB_ERR_IO, "%s: header: read error: %s. HINT: check the file", path, strerror(errno));
        goto done;
    }
    text[hlen] = 0;
    char ex[512];
    if (text[0] != '{') {
        st = xb_errorf(XB_ERR_FORMAT, "%s: header: does not start with '{' (starts \"%s\"). HINT: the file is "
                       "not a safetensors file", path, xb_excerpt(text, hlen, 60, ex, sizeof ex));
        goto done;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + hlen ? (size_t)(end - text) : 0;
        st = xb_errorf(XB_ERR_FORMAT, "%s: header: invalid JSON at byte %zu (near \"%s\"). %s", path, at,
                       xb_excerpt(text + at, hlen - at, 60, ex, sizeof ex), ST_HINT_REWRITE);
        goto done;
    }
    for (const char *p = end; p < text + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            size_t at = (size_t)(p - text);
            st = xb_errorf(XB_ERR_FORMAT, "%s: header: unexpected bytes after the JSON object at byte %zu (\"%s\"); "
                           "only space padding may follow it. %s", path, at,
                           xb_excerpt(p, hlen - at, 60, ex, sizeof ex), ST_HINT_REWRITE);
            goto done;
        }
    int64_t data_off = 8 + (int64_t)hlen, data_len = fsize - data_off;
    if ((st = st_parse_header_(path, root, data_len, out, &infos, &n)) != XB_OK) goto done;

    /* everything is consistent with the file: allocate and read */
    out->e = st_realloc_(NULL, (size_t)n * sizeof *out->e);
    for (int i = 0; i < n; i++) {
        const st_info *in = &infos[i];
        xb_tensor t = {.dtype = in->dtype, .ndim = in->ndim, .owner = 1};
        memcpy(t.shape, in->shape, sizeof t.shape);
        size_t nb = (size_t)(in->end - in->begin);
        t.data = xb_malloc(nb);
        out->e[i].name = st_strdup_(in->name);
        out->e[i].t = t;
        out->n = i + 1;
        if (xb_pread_full(fd, t.data, nb, data_off + in->begin) != nb) {
            st = xb_errorf(XB_ERR_IO, "%s: tensor '%s': read error or the file shrank while reading: %s. HINT: "
                           "check the file", path, in->name, strerror(errno));
            goto done;
        }
    }
done:
    if (st != XB_OK) xb_st_free(out);
    free(infos);
    cJSON_Delete(root);
    free(text);
    close(fd);
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* Save                                                                                              */
/* ------------------------------------------------------------------------------------------------ */

typedef struct st_buf { char *p; size_t n, cap; } st_buf;

static void st_put_(st_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        b->p = st_realloc_(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void st_puts_(st_buf *b, const char *s) { st_put_(b, s, strlen(s)); }

/* A JSON string literal: quotes, backslashes and control bytes escaped, other bytes as they are. */
static void st_put_json_str_(st_buf *b, const char *s) {
    st_put_(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') { esc[0] = '\\'; esc[1] = (char)*c; st_put_(b, esc, 2); }
        else if (*c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *c); st_put_(b, esc, 6); }
        else st_put_(b, (const char *)c, 1);
    }
    st_put_(b, "\"", 1);
}

static int st_cmp_str_(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names non-NULL and unique, not "__metadata__"; tensors well formed. */
static xb_status st_check_(const char *path, const xb_safetensors *st) {
    if (st->n < 0 || st->n_meta < 0 || (st->n > 0 && !st->e))
        return xb_errorf(XB_ERR_ARG, "%s: cannot save: the map is not initialised. HINT: call xb_st_init first",
                         path);
    for (int i = 0; i < st->n; i++) {
        const xb_tensor *t = &st->e[i].t;
        const char *name = st->e[i].name;
        if (!name || strcmp(name, "__metadata__") == 0)
            return xb_errorf(XB_ERR_ARG, "%s: cannot save: tensor %d has %s. HINT: give every tensor a name "
                             "other than \"__metadata__\"", path, i, name ? "the reserved name \"__metadata__\""
                                                                             : "no name");
        if ((unsigned)t->dtype >= XB_DTYPE_COUNT || t->ndim < 0 || t->ndim > XB_MAX_DIMS)
            return xb_errorf(XB_ERR_ARG, "%s: cannot save: tensor '%s' has an invalid dtype or rank. HINT: this "
                             "is a bug in the caller", path, name);
        int64_t numel = 1, nbytes;
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0 || __builtin_mul_overflow(numel, t->shape[d], &numel))
                return xb_errorf(XB_ERR_ARG, "%s: cannot save: tensor '%s' has an invalid shape. HINT: this is a "
                                 "bug in the caller", path, name);
        if (__builtin_mul_overflow(numel, (int64_t)xb_dtype_size(t->dtype), &nbytes) ||
            (nbytes > 0 && !t->data))
            return xb_errorf(XB_ERR_ARG, "%s: cannot save: tensor '%s' has no data or an impossible size. HINT: "
                             "this is a bug in the caller", path, name);
    }
    for (int i = 0; i < st->n_meta; i++)
        if (!st->meta_key[i] || !st->meta_val[i])
            return xb_errorf(XB_ERR_ARG, "%s: cannot save: metadata entry %d is NULL. HINT: use xb_st_add_meta",
                             path, i);
    xb_status res = XB_OK;
    for (int pass = 0; pass < 2 && res == XB_OK; pass++) {
        int n = pass == 0 ? st->n : st->n_meta;
        const char **names = st_realloc_(NULL, (size_t)n * sizeof *names);
        for (int i = 0; i < n; i++) names[i] = pass == 0 ? st->e[i].name : st->meta_key[i];
        qsort(names, (size_t)n, sizeof *names, st_cmp_str_);
        for (int i = 1; i < n; i++)
            if (strcmp(names[i - 1], names[i]) == 0) {
                res = xb_errorf(XB_ERR_ARG, "%s: cannot save: %s '%s' appears twice. HINT: names must be unique",
                                path, pass == 0 ? "tensor" : "metadata key", names[i]);
                break;
            }
        free(names);
    }
    return res;
}

xb_status xb_st_save(const char *path, const xb_safetensors *st) {
    XB_ASSERT(path && st);
    xb_status res = st_check_(path, st);
    if (res != XB_OK) return res;

    st_buf h = {0};
    char num[96];
    st_puts_(&h, "{");
    int first = 1;
    if (st->n_meta > 0) {
        st_puts_(&h, "\"__metadata__\":{");
        for (int i = 0; i < st->n_meta; i++) {
            if (i) st_puts_(&h, ",");
            st_put_json_str_(&h, st->meta_key[i]);
            st_puts_(&h, ":");
            st_put_json_str_(&h, st->meta_val[i]);
        }
        st_puts_(&h, "}");
        first = 0;
    }
    int64_t off = 0;
    for (int i = 0; i < st->n; i++) {
        const xb_tensor *t = &st->e[i].t;
        if (!first) st_puts_(&h, ",");
        first = 0;
        st_put_json_str_(&h, st->e[i].name);
        st_puts_(&h, ":{\"dtype\":\"");
        st_puts_(&h, st_dtype_names[t->dtype]);
        st_puts_(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            st_puts_(&h, num);
        }
        int64_t nb = (int64_t)xb_tensor_nbytes(t);
        snprintf(num, sizeof num, "],\"data_offsets\":[%lld,%lld]}", (long long)off, (long long)(off + nb));
        st_puts_(&h, num);
        off += nb;
    }
    st_puts_(&h, "}");
    while (h.n % 8) st_puts_(&h, " ");   /* the data section starts 8-byte aligned */

    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)h.n >> (8 * i));

    int np = st->n + 2;
    const void **bufs = st_realloc_(NULL, (size_t)np * sizeof *bufs);
    size_t *lens = st_realloc_(NULL, (size_t)np * sizeof *lens);
    bufs[0] = lenb; lens[0] = 8;
    bufs[1] = h.p;  lens[1] = h.n;
    for (int i = 0; i < st->n; i++) {
        bufs[2 + i] = st->e[i].t.data;
        lens[2 + i] = xb_tensor_nbytes(&st->e[i].t);
    }
    res = xb_write_atomic(path, np, bufs, lens);
    free(bufs);
    free(lens);
    free(h.p);
    return res;
}
