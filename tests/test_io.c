/* test_io.c -- .npy and safetensors: bit-exact round trips of every dtype and rank, byte-level
 * compatibility with numpy and the Python safetensors writer (files built by hand here), and every
 * malformed-input case returning the right status with a message that names the file. */
#include "testutil.h"

#include <errno.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------------------------------ */
/* Helpers                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

/* a string literal's bytes, without the terminating NUL */
#define WRITE_LIT(path, lit) xbt_write_file(path, lit, sizeof lit - 1)

static const xb_dtype all_dtypes[] = {XB_F32, XB_F64, XB_I64, XB_U8, XB_I32};

/* Shapes of every rank 0..4, including empty tensors. */
static const struct { int ndim; int64_t shape[4]; } shapes[] = {
    {0, {0}},      {1, {7}},         {1, {0}},          {2, {3, 5}},     {2, {1, 1}},
    {3, {2, 3, 4}}, {3, {2, 0, 3}}, {4, {2, 1, 3, 2}}, {4, {3, 2, 2, 5}},
};
#define N_SHAPES (int)(sizeof shapes / sizeof *shapes)

static uint64_t fill_state = 0x9e3779b97f4a7c15ULL;

/* Random bytes: for floats this includes NaNs with payloads, infinities, -0 and denormals, which must
 * all survive a round trip bit for bit. */
static xb_tensor random_tensor(xb_dtype dt, int ndim, const int64_t *shape) {
    xb_tensor t = xb_tensor_alloc(dt, ndim, shape);
    uint8_t *p = t.data;
    for (size_t i = 0; i < xb_tensor_nbytes(&t); i++) {
        fill_state ^= fill_state << 13; fill_state ^= fill_state >> 7; fill_state ^= fill_state << 17;
        p[i] = (uint8_t)(fill_state >> 24);
    }
    return t;
}

static void assert_same_tensor(const xb_tensor *a, const xb_tensor *b) {
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->ndim, b->ndim);
    for (int i = 0; i < XB_MAX_DIMS; i++) assert_int_equal(a->shape[i], b->shape[i]);
    assert_int_equal(xb_tensor_nbytes(a), xb_tensor_nbytes(b));
    if (xb_tensor_nbytes(a)) assert_memory_equal(a->data, b->data, xb_tensor_nbytes(a));
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* ------------------------------------------------------------------------------------------------ */
/* .npy                                                                                              */
/* ------------------------------------------------------------------------------------------------ */

static void test_npy_roundtrip_all(void **state) {
    (void)state;
    char path[512], tmp[600];
    xbt_path(path, sizeof path, "rt.npy");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    for (size_t d = 0; d < sizeof all_dtypes / sizeof *all_dtypes; d++)
        for (int s = 0; s < N_SHAPES; s++) {
            xb_tensor t = random_tensor(all_dtypes[d], shapes[s].ndim, shapes[s].shape), u;
            assert_int_equal(xb_npy_save(path, &t), XB_OK);
            assert_false(file_exists(tmp));
            assert_int_equal(xb_npy_load(path, &u), XB_OK);
            assert_int_equal(u.owner, 1);
            assert_same_tensor(&t, &u);
            /* the file is exactly header + data and the header is 64-byte aligned, as numpy writes */
            struct stat sb;
            assert_int_equal(stat(path, &sb), 0);
            assert_int_equal(((size_t)sb.st_size - xb_tensor_nbytes(&t)) % 64, 0);
            xb_tensor_free(&t);
            xb_tensor_free(&u);
        }
}

/* Headers numpy 1.24 writes (np.save), taken from real files: preamble "\x93NUMPY\x01\x00" + header
 * length 118 (0x76), then this dict, space padded, '\n'. */
static void check_numpy_header(const char *path, const char *dict) {
    uint8_t buf[4096];
    size_t n = read_file(path, buf, sizeof buf);
    assert_true(n >= 128);
    assert_memory_equal(buf, "\x93NUMPY\x01\x00\x76\x00", 10);
    size_t dl = strlen(dict);
    assert_memory_equal(buf + 10, dict, dl);
    for (size_t i = 10 + dl; i < 127; i++) assert_int_equal(buf[i], ' ');
    assert_int_equal(buf[127], '\n');
}

static void test_npy_writes_numpy_bytes(void **state) {
    (void)state;
    char path[512];
    xbt_path(path, sizeof path, "np.npy");
    /* np.save(p, np.array([[1.5, -2.25, 3.0], [0.0, 1e-3, 7.0]], np.float32)) */
    float v[6] = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, 7.0f};
    xb_tensor t = {.dtype = XB_F32, .ndim = 2, .shape = {2, 3, 1, 1}, .data = v};
    assert_int_equal(xb_npy_save(path, &t), XB_OK);
    check_numpy_header(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    uint8_t buf[256];
    assert_int_equal(read_file(path, buf, sizeof buf), 128 + sizeof v);
    assert_memory_equal(buf + 128, v, sizeof v);

    double s = 2.385;
    t = (xb_tensor){.dtype = XB_F64, .ndim = 0, .shape = {1, 1, 1, 1}, .data = &s};
    assert_int_equal(xb_npy_save(path, &t), XB_OK);
    check_numpy_header(path, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }");

    uint8_t b[5] = {0, 1, 254, 255, 7};
    t = (xb_tensor){.dtype = XB_U8, .ndim = 1, .shape = {5, 1, 1, 1}, .data = b};
    assert_int_equal(xb_npy_save(path, &t), XB_OK);
    check_numpy_header(path, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }");

    int64_t q[24] = {0};
    t = (xb_tensor){.dtype = XB_I64, .ndim = 4, .shape = {1, 2, 3, 4}, .data = q};
    assert_int_equal(xb_npy_save(path, &t), XB_OK);
    check_numpy_header(path, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2, 3, 4), }");

    int32_t w[7] = {-7, 1, 2, 3, 4, 5, INT32_MIN};
    t = (xb_tensor){.dtype = XB_I32, .ndim = 1, .shape = {7, 1, 1, 1}, .data = w};
    assert_int_equal(xb_npy_save(path, &t), XB_OK);
    check_numpy_header(path, "{'descr': '<i4', 'fortran_order': False, 'shape': (7,), }");
}

/* Builds a .npy file: magic, version (major), header length in 2 or 4 bytes, header text as given
 * (no padding added), then `data` bytes of payload (a counting pattern) and `extra` more. */
static void write_npy(const char *path, int major, int minor, const char *header, size_t data, size_t extra) {
    size_t hl = strlen(header), pre = major == 1 ? 10 : 12;
    size_t n = pre + hl + data + extra;
    uint8_t *buf = calloc(1, n + 1);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (uint8_t)major;
    buf[7] = (uint8_t)minor;
    for (size_t i = 0; i < pre - 8; i++) buf[8 + i] = (uint8_t)(hl >> (8 * i));
    memcpy(buf + pre, header, hl);
    for (size_t i = 0; i < data + extra; i++) buf[pre + hl + i] = (uint8_t)(i * 7 + 1);
    xbt_write_file(path, buf, n);
    free(buf);
}

static void test_npy_reads_header_variants(void **state) {
    (void)state;
    char path[512];
    xbt_path(path, sizeof path, "var.npy");
    static const struct { int major; const char *header; xb_dtype dt; int ndim; int64_t shape[4]; } cases[] = {
        /* version 2.0 and 3.0 (4-byte header length) */
        {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }        \n", XB_F32, 2, {2, 3}},
        {3, "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }\n", XB_I64, 1, {4}},
        /* old numpy: 16-byte alignment, no trailing ", }" */
        {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 1)}   \n", XB_F64, 2, {3, 1}},
        /* keys in another order, double quotes, no spaces, Python 2 longs, trailing comma in a tuple */
        {1, "{\"shape\":(2L,3L,),\"fortran_order\":False,\"descr\":\"<i4\"}\n", XB_I32, 2, {2, 3}},
        /* '<u1' and '|u1' are the same dtype; a 0-d array; 4 dims */
        {1, "{'descr': '<u1', 'fortran_order': False, 'shape': (), }\n", XB_U8, 0, {0}},
        {1, "{'descr': '|u1', 'fortran_order': False, 'shape': ( 1 , 2 , 3 , 2 ) , }\n", XB_U8, 4, {1, 2, 3, 2}},
        /* an empty array */
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }\n", XB_F32, 2, {0, 5}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int64_t numel = 1;
        for (int i = 0; i < cases[c].ndim; i++) numel *= cases[c].shape[i];
        size_t nb = (size_t)numel * xb_dtype_size(cases[c].dt);
        write_npy(path, cases[c].major, 0, cases[c].header, nb, 0);
        xb_tensor t;
        xb_status st = xb_npy_load(path, &t);
        if (st != XB_OK) fail_msg("case %zu: %s", c, xb_last_error());
        assert_int_equal(t.dtype, cases[c].dt);
        assert_int_equal(t.ndim, cases[c].ndim);
        for (int i = 0; i < XB_MAX_DIMS; i++)
            assert_int_equal(t.shape[i], i < cases[c].ndim ? cases[c].shape[i] : 1);
        for (size_t i = 0; i < nb; i++) assert_int_equal(((uint8_t *)t.data)[i], (uint8_t)(i * 7 + 1));
        xb_tensor_free(&t);
    }
    /* a known float32 value read through a numpy-layout file */
    float f[2] = {2.385f, -0.0f};
    write_npy(path, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 0, 0);
    FILE *fp = fopen(path, "ab");
    assert_int_equal(fwrite(f, sizeof f, 1, fp), 1);
    fclose(fp);
    xb_tensor t;
    assert_int_equal(xb_npy_load(path, &t), XB_OK);
    assert_true(((float *)t.data)[0] == 2.385f);
    assert_true(signbit(((float *)t.data)[1]));
    xb_tensor_free(&t);
}

typedef struct npy_bad {
    const char *name;
    int major, minor;
    const char *header;
    size_t data, extra;
    xb_status want;
    const char *what;
} npy_bad;

#define HDR(d, s) "{'descr': '" d "', 'fortran_order': False, 'shape': " s ", }\n"

static const npy_bad npy_bad_cases[] = {
    {"version 4.0", 4, 0, HDR("<f4", "(2,)"), 8, 0, XB_ERR_FORMAT, "version 4.0"},
    {"version 1.1", 1, 1, HDR("<f4", "(2,)"), 8, 0, XB_ERR_FORMAT, "version 1.1"},
    {"fortran order", 1, 0, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n", 16, 0, XB_ERR_FORMAT,
     "fortran_order"},
    {"big-endian f4", 1, 0, HDR(">f4", "(2,)"), 8, 0, XB_ERR_FORMAT, "big-endian"},
    {"big-endian i8", 1, 0, HDR(">i8", "(2,)"), 16, 0, XB_ERR_FORMAT, "big-endian"},
    {"object", 1, 0, HDR("|O", "(2,)"), 16, 0, XB_ERR_FORMAT, "object"},
    {"complex", 1, 0, HDR("<c8", "(2,)"), 16, 0, XB_ERR_FORMAT, "'<c8' is not supported"},
    {"float16", 1, 0, HDR("<f2", "(2,)"), 4, 0, XB_ERR_FORMAT, "'<f2' is not supported"},
    {"bool", 1, 0, HDR("|b1", "(2,)"), 2, 0, XB_ERR_FORMAT, "'|b1' is not supported"},
    {"unicode", 1, 0, HDR("<U4", "(2,)"), 32, 0, XB_ERR_FORMAT, "not supported"},
    {"uint16", 1, 0, HDR("<u2", "(2,)"), 4, 0, XB_ERR_FORMAT, "not supported"},
    {"'|' on f4", 1, 0, HDR("|f4", "(2,)"), 8, 0, XB_ERR_FORMAT, "byte order"},
    {"structured", 1, 0, "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }\n",
     16, 0, XB_ERR_FORMAT, "structured"},
    {"5 dims", 1, 0, HDR("<f4", "(1, 1, 1, 1, 2)"), 8, 0, XB_ERR_FORMAT, "5 dimensions"},
    {"missing shape", 1, 0, "{'descr': '<f4', 'fortran_order': False, }\n", 4, 0, XB_ERR_FORMAT,
     "missing key 'shape'"},
    {"missing descr", 1, 0, "{'fortran_order': False, 'shape': (1,), }\n", 4, 0, XB_ERR_FORMAT,
     "missing key 'descr'"},
    {"extra key", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1, }\n", 4, 0,
     XB_ERR_FORMAT, "unknown key"},
    {"duplicate key", 1, 0, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", 4, 0,
     XB_ERR_FORMAT, "duplicate key"},
    {"unterminated dict", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)    \n", 4, 0,
     XB_ERR_FORMAT, "expected ',' or '}'"},
    {"unterminated string", 1, 0, "{'descr': '<f4}\n", 4, 0, XB_ERR_FORMAT, "unterminated string"},
    {"no dict", 1, 0, "descr = <f4\n", 4, 0, XB_ERR_FORMAT, "does not start with '{'"},
    {"empty header", 1, 0, "", 4, 0, XB_ERR_FORMAT, "does not start with '{'"},
    {"list shape", 1, 0, HDR("<f4", "[2, 3]"), 24, 0, XB_ERR_FORMAT, "must be a tuple"},
    {"(3) not a tuple", 1, 0, HDR("<f4", "(3)"), 12, 0, XB_ERR_FORMAT, "not a tuple"},
    {"missing comma", 1, 0, HDR("<f4", "(3 4)"), 48, 0, XB_ERR_FORMAT, "expected ',' or ')'"},
    {"negative dim", 1, 0, HDR("<f4", "(-2, 3)"), 0, 0, XB_ERR_FORMAT, "negative"},
    {"float dim", 1, 0, HDR("<f4", "(2.5,)"), 8, 0, XB_ERR_FORMAT, "malformed dict"},
    {"lowercase false", 1, 0, "{'descr': '<f4', 'fortran_order': false, 'shape': (1,), }\n", 4, 0, XB_ERR_FORMAT,
     "True or False"},
    {"Falsey", 1, 0, "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (1,), }\n", 4, 0, XB_ERR_FORMAT,
     "True or False"},
    {"text after dict", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } x\n", 4, 0,
     XB_ERR_FORMAT, "after the closing"},
    {"NUL in header", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", 4, 0, XB_ERR_FORMAT,
     "after the closing"}, /* patched below: a NUL byte replaces the '\n' */
    {"truncated data", 1, 0, HDR("<f8", "(3, 4)"), 95, 0, XB_ERR_FORMAT, "truncated"},
    {"no data", 1, 0, HDR("<i4", "(1,)"), 0, 0, XB_ERR_FORMAT, "truncated"},
    {"trailing garbage", 1, 0, HDR("<f4", "(3,)"), 12, 5, XB_ERR_FORMAT, "trailing garbage"},
    {"data for empty", 1, 0, HDR("<f4", "(0,)"), 0, 1, XB_ERR_FORMAT, "trailing garbage"},
    {"element count overflow", 1, 0, HDR("<f4", "(4611686018427387904, 4)"), 16, 0, XB_ERR_FORMAT, "64 bits"},
    {"byte count overflow", 1, 0, HDR("<f8", "(2305843009213693952,)"), 16, 0, XB_ERR_FORMAT, "64 bits"},
    {"dim > int64", 1, 0, HDR("<f4", "(99999999999999999999,)"), 16, 0, XB_ERR_FORMAT, "64 bits"},
    /* a terabyte-sized shape in a tiny file: must be rejected before anything is allocated */
    {"huge shape", 1, 0, HDR("<f8", "(1000000000, 1000)"), 64, 0, XB_ERR_FORMAT, "truncated"},
};

static void test_npy_bad_inputs(void **state) {
    (void)state;
    char path[512];
    for (size_t c = 0; c < sizeof npy_bad_cases / sizeof *npy_bad_cases; c++) {
        const npy_bad *b = &npy_bad_cases[c];
        char name[64];
        snprintf(name, sizeof name, "bad%zu.npy", c);
        xbt_path(path, sizeof path, name);
        write_npy(path, b->major, b->minor, b->header, b->data, b->extra);
        if (strcmp(b->name, "NUL in header") == 0) {
            FILE *f = fopen(path, "r+b");
            fseek(f, 10 + (long)strlen(b->header) - 1, SEEK_SET);
            fputc(0, f);
            fclose(f);
        }
        xb_tensor t = {.data = (void *)1};
        xb_status st = xb_npy_load(path, &t);
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  [%s]", b->name);
        xbt_assert_error(st, b->want, path, b->what);
        assert_null(t.data); /* out is cleared on failure */
    }
}

static void test_npy_bad_preamble(void **state) {
    (void)state;
    char path[512];
    xb_tensor t;
    xbt_path(path, sizeof path, "pre.npy");
    WRITE_LIT(path, "");
    xbt_assert_error(xb_npy_load(path, &t), XB_ERR_FORMAT, path, "not a .npy file");
    WRITE_LIT(path, "PK\x03\x04 this is a zip");
    xbt_assert_error(xb_npy_load(path, &t), XB_ERR_FORMAT, path, "not a .npy file");
    WRITE_LIT(path, "\x93NUMPY\x01");
    xbt_assert_error(xb_npy_load(path, &t), XB_ERR_FORMAT, path, "truncated");
    WRITE_LIT(path, "\x93NUMPY\x01\x00\x10");
    xbt_assert_error(xb_npy_load(path, &t), XB_ERR_FORMAT, path, "truncated");
    WRITE_LIT(path, "\x93NUMPY\x02\x00\x10\x00\x00");
    xbt_assert_error(xb_npy_load(path, &t), XB_ERR_FORMAT, path, "truncated");
    /* header length beyond the end of the file, 2- and 4-byte forms */
    WRITE_LIT(path, "\x93NUMPY\x01\x00\xff\xff{}");
    xbt_assert_error(xb_npy_load(path, &t), XB_ERR_FORMAT, path, "runs past the end");
    WRITE_LIT(path, "\x93NUMPY\x02\x00\xff\xff\xff\xff{}");
    xbt_assert_error(xb_npy_load(path, &t), XB_ERR_FORMAT, path, "runs past the end");
    /* a 2 MiB header inside a (sparse) file that is large enough: refused before it is read */
    WRITE_LIT(path, "\x93NUMPY\x02\x00\x00\x00\x20\x00{");
    assert_int_equal(truncate(path, 4 << 20), 0);
    xbt_assert_error(xb_npy_load(path, &t), XB_ERR_FORMAT, path, "implausibly large");
    unlink(path);
    /* not a file, no file */
    xbt_assert_error(xb_npy_load(xbt_tmpdir(), &t), XB_ERR_IO, xbt_tmpdir(), "not a regular file");
    xbt_path(path, sizeof path, "does-not-exist.npy");
    xbt_assert_error(xb_npy_load(path, &t), XB_ERR_IO, path, "No such file");
}

static void test_npy_save_errors(void **state) {
    (void)state;
    char path[512], tmp[600];
    float v[3] = {1, 2, 3};
    xb_tensor t = {.dtype = XB_F32, .ndim = 1, .shape = {3, 1, 1, 1}, .data = v};
    xbt_path(path, sizeof path, "no-such-dir/x.npy");
    xbt_assert_error(xb_npy_save(path, &t), XB_ERR_IO, path, "directory");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(file_exists(tmp));

    xbt_path(path, sizeof path, "arg.npy");
    xb_tensor bad = t;
    bad.ndim = 5;
    xbt_assert_error(xb_npy_save(path, &bad), XB_ERR_ARG, path, "invalid tensor");
    bad = t;
    bad.shape[0] = -1;
    xbt_assert_error(xb_npy_save(path, &bad), XB_ERR_ARG, path, "invalid shape");
    bad = t;
    bad.data = NULL;
    xbt_assert_error(xb_npy_save(path, &bad), XB_ERR_ARG, path, "no data");
    assert_false(file_exists(path));

    /* saving over an existing file replaces it whole */
    xb_tensor big = random_tensor(XB_F64, 2, (int64_t[]){50, 40}), u;
    assert_int_equal(xb_npy_save(path, &big), XB_OK);
    assert_int_equal(xb_npy_save(path, &t), XB_OK);
    assert_int_equal(xb_npy_load(path, &u), XB_OK);
    assert_same_tensor(&t, &u);
    xb_tensor_free(&u);
    xb_tensor_free(&big);
}

/* ------------------------------------------------------------------------------------------------ */
/* safetensors                                                                                       */
/* ------------------------------------------------------------------------------------------------ */

static void test_st_roundtrip_all(void **state) {
    (void)state;
    char path[512], tmp[600];
    xbt_path(path, sizeof path, "rt.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    xb_safetensors st;
    xb_st_init(&st);
    xb_tensor mine[5 * N_SHAPES];
    int k = 0;
    for (size_t d = 0; d < sizeof all_dtypes / sizeof *all_dtypes; d++)
        for (int s = 0; s < N_SHAPES; s++) {
            char name[64];
            /* names in reverse-sorted order, to see that the given order is kept */
            snprintf(name, sizeof name, "z%02d.layer.%s", 99 - k, xb_dtype_name(all_dtypes[d]));
            mine[k] = random_tensor(all_dtypes[d], shapes[s].ndim, shapes[s].shape);
            xb_st_add(&st, name, mine[k]);
            assert_int_equal(st.e[k].t.owner, 0); /* borrowed */
            k++;
        }
    xb_st_add_meta(&st, "format", "pt");
    xb_st_add_meta(&st, "note", "quote \" backslash \\ tab \t newline \n utf-8 \xc3\xa9");
    xb_st_add_meta(&st, "format", "xbar"); /* replaces */
    assert_int_equal(st.n_meta, 2);
    assert_int_equal(xb_st_save(path, &st), XB_OK);
    assert_false(file_exists(tmp));

    xb_safetensors in;
    assert_int_equal(xb_st_load(path, &in), XB_OK);
    assert_int_equal(in.n, k);
    for (int i = 0; i < k; i++) {
        assert_string_equal(in.e[i].name, st.e[i].name); /* file order = given order */
        assert_int_equal(in.e[i].t.owner, 1);
        assert_same_tensor(&in.e[i].t, &mine[i]);
        assert_ptr_equal(xb_st_get(&in, st.e[i].name), &in.e[i].t);
    }
    assert_null(xb_st_get(&in, "missing"));
    assert_string_equal(xb_st_meta(&in, "format"), "xbar");
    assert_string_equal(xb_st_meta(&in, "note"), "quote \" backslash \\ tab \t newline \n utf-8 \xc3\xa9");
    assert_null(xb_st_meta(&in, "missing"));

    /* layout: 8-byte length, JSON padded with spaces to a multiple of 8, then the tensors back to back in
     * the given order */
    static uint8_t buf[1 << 16];
    size_t n = read_file(path, buf, sizeof buf);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    assert_int_equal(hl % 8, 0);
    assert_int_equal(buf[8], '{');
    size_t off = 8 + hl;
    for (int i = 0; i < k; i++) {
        size_t nb = xb_tensor_nbytes(&mine[i]);
        if (nb) assert_memory_equal(buf + off, mine[i].data, nb);
        off += nb;
    }
    assert_int_equal(off, n);
    const char *prev = (const char *)buf + 8;
    for (int i = 0; i < k; i++) {
        char q[80];
        snprintf(q, sizeof q, "\"%s\":{", st.e[i].name);
        const char *at = strstr((const char *)buf + 8, q);
        assert_non_null(at);
        assert_true(at > prev);
        prev = at;
    }
    xb_st_free(&in);
    xb_st_free(&st); /* frees names, not the borrowed data */
    assert_int_equal(st.n, 0);
    assert_null(st.e);
    for (int i = 0; i < k; i++) xb_tensor_free(&mine[i]);
}

static void test_st_empty_and_owned(void **state) {
    (void)state;
    char path[512];
    xbt_path(path, sizeof path, "empty.safetensors");
    xb_safetensors st, in;
    xb_st_init(&st);
    assert_int_equal(xb_st_save(path, &st), XB_OK);
    uint8_t buf[64];
    assert_int_equal(read_file(path, buf, sizeof buf), 16);
    assert_memory_equal(buf, "\x08\0\0\0\0\0\0\0{}      ", 16);
    assert_int_equal(xb_st_load(path, &in), XB_OK);
    assert_int_equal(in.n, 0);
    assert_int_equal(in.n_meta, 0);
    xb_st_free(&in);
    xb_st_free(&in); /* freeing twice is harmless */

    /* an owned tensor handed to xb_st_add stays the caller's: add marks it borrowed */
    xb_tensor t = xb_tensor_alloc(XB_F32, 1, (int64_t[]){4});
    ((float *)t.data)[2] = 2.385f;
    xb_st_add(&st, "w", t);
    assert_int_equal(st.e[0].t.owner, 0);
    assert_int_equal(t.owner, 1);
    xb_st_free(&st);
    assert_true(((float *)t.data)[2] == 2.385f); /* still alive (ASan would catch a free) */
    xb_tensor_free(&t);
}

/* A file as safetensors.torch.save_file({"fc.weight": ..., "fc.bias": ..., "bn.num_batches_tracked":
 * torch.tensor(7)}, p, metadata={"format": "pt"}) writes it: tensors sorted by dtype alignment then
 * name, compact JSON, header padded with spaces to a multiple of 8. */
static void test_st_reads_python_file(void **state) {
    (void)state;
    static const char json[] =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
        "\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
        "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[16,40]}}";
    uint8_t buf[512];
    size_t hl = strlen(json);
    size_t padded = (hl + 7) / 8 * 8;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(padded >> (8 * i));
    memcpy(buf + 8, json, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    uint8_t *data = buf + 8 + padded;
    int64_t nbt = 7;
    float bias[2] = {0.5f, -1.25f}, w[6] = {2.385f, -0.0f, 1e-30f, 3.0e38f, -7.5f, 0.1f};
    memcpy(data, &nbt, 8);
    memcpy(data + 8, bias, 8);
    memcpy(data + 16, w, 24);
    char path[512];
    xbt_path(path, sizeof path, "python.safetensors");
    xbt_write_file(path, buf, 8 + padded + 40);

    xb_safetensors st;
    assert_int_equal(xb_st_load(path, &st), XB_OK);
    assert_int_equal(st.n, 3);
    assert_string_equal(xb_st_meta(&st, "format"), "pt");
    const xb_tensor *t = xb_st_get(&st, "bn.num_batches_tracked");
    assert_non_null(t);
    assert_int_equal(t->dtype, XB_I64);
    assert_int_equal(t->ndim, 0);
    assert_int_equal(*(int64_t *)t->data, 7);
    t = xb_st_get(&st, "fc.weight");
    assert_int_equal(t->dtype, XB_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(t->shape[2], 1);
    assert_memory_equal(t->data, w, sizeof w);
    assert_memory_equal(xb_st_get(&st, "fc.bias")->data, bias, sizeof bias);
    assert_string_equal(st.e[1].name, "fc.bias"); /* file order */

    /* saving the same map in the same order gives the same bytes as the Python writer */
    char path2[512];
    xbt_path(path2, sizeof path2, "python-resaved.safetensors");
    assert_int_equal(xb_st_save(path2, &st), XB_OK);
    uint8_t again[512];
    assert_int_equal(read_file(path2, again, sizeof again), 8 + padded + 40);
    assert_memory_equal(again, buf, 8 + padded + 40);
    xb_st_free(&st);
}

/* Writes 8-byte length + json (+ pad spaces) + data_len bytes. hlen_override replaces the length. */
static void write_st(const char *path, const char *json, size_t data_len, int64_t hlen_override) {
    size_t hl = strlen(json);
    uint8_t *buf = calloc(1, 8 + hl + data_len + 1);
    uint64_t h = hlen_override >= 0 ? (uint64_t)hlen_override : hl;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(h >> (8 * i));
    memcpy(buf + 8, json, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (uint8_t)i;
    xbt_write_file(path, buf, 8 + hl + data_len);
    free(buf);
}

typedef struct st_bad {
    const char *name;
    const char *json;
    size_t data;
    int64_t hlen;  /* -1: the JSON's length */
    xb_status want;
    const char *what;
} st_bad;

#define T(name, dt, shape, a, b) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #a "," #b "]}"

static const st_bad st_bad_cases[] = {
    {"header length past end", "{}", 0, 1000, XB_ERR_FORMAT, "runs past the end"},
    {"header length 2^63", "{}", 0, INT64_MAX, XB_ERR_FORMAT, "runs past the end"},
    {"header length 0", "{}", 0, 0, XB_ERR_FORMAT, "not a plausible"},
    {"not JSON", "{\"a\": nope}", 0, -1, XB_ERR_FORMAT, "invalid JSON"},
    {"truncated JSON", "{\"a\":{\"dtype\":\"F32\"", 0, -1, XB_ERR_FORMAT, "invalid JSON"},
    {"not an object", "[1, 2]  ", 0, -1, XB_ERR_FORMAT, "does not start with '{'"},
    {"text after JSON", "{} x", 0, -1, XB_ERR_FORMAT, "unexpected bytes after"},
    {"two objects", "{}{}", 0, -1, XB_ERR_FORMAT, "unexpected bytes after"},
    {"entry not object", "{\"a\":1}", 0, -1, XB_ERR_FORMAT, "tensor 'a': the entry is not a JSON object"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, XB_ERR_FORMAT,
     "tensor 'a': \"dtype\" is missing"},
    {"BF16", "{" T("layer.w", "BF16", "[2]", 0, 4) "}", 4, -1, XB_ERR_FORMAT,
     "tensor 'layer.w': dtype BF16 is not supported"},
    {"F16", "{" T("h", "F16", "[2]", 0, 4) "}", 4, -1, XB_ERR_FORMAT, "tensor 'h': dtype F16 is not supported"},
    {"BOOL", "{" T("mask", "BOOL", "[4]", 0, 4) "}", 4, -1, XB_ERR_FORMAT, "tensor 'mask': dtype BOOL"},
    {"unknown dtype", "{" T("a", "F33", "[1]", 0, 4) "}", 4, -1, XB_ERR_FORMAT, "unknown dtype \"F33\""},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, -1, XB_ERR_FORMAT, "\"shape\""},
    {"negative dim", "{" T("a", "F32", "[-1]", 0, 0) "}", 0, -1, XB_ERR_FORMAT, "\"shape\"[0] is not a non-negative"},
    {"fractional dim", "{" T("a", "F32", "[1.5]", 0, 4) "}", 4, -1, XB_ERR_FORMAT, "\"shape\"[0]"},
    {"string dim", "{" T("a", "F32", "[1,\"2\"]", 0, 8) "}", 8, -1, XB_ERR_FORMAT, "\"shape\"[1]"},
    {"dim > 2^53", "{" T("a", "U8", "[1e300]", 0, 4) "}", 4, -1, XB_ERR_FORMAT, "\"shape\"[0]"},
    {"5 dims", "{" T("a", "U8", "[1,1,1,1,1]", 0, 1) "}", 1, -1, XB_ERR_FORMAT, "5 dimensions"},
    {"count overflow", "{" T("a", "U8", "[9007199254740992,9007199254740992]", 0, 1) "}", 1, -1, XB_ERR_FORMAT,
     "overflows"},
    {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, -1, XB_ERR_FORMAT, "data_offsets"},
    {"3 offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, -1, XB_ERR_FORMAT,
     "[begin, end]"},
    {"negative offset", "{" T("a", "F32", "[1]", -4, 0) "}", 4, -1, XB_ERR_FORMAT, "[begin, end]"},
    {"reversed offsets", "{" T("a", "F32", "[1]", 4, 0) "}", 4, -1, XB_ERR_FORMAT, "not inside the data section"},
    {"offsets past data", "{" T("a", "F32", "[2]", 0, 8) "}", 4, -1, XB_ERR_FORMAT, "not inside the data section"},
    {"size mismatch", "{" T("a", "F32", "[3]", 0, 8) "}", 8, -1, XB_ERR_FORMAT, "needs 12"},
    {"overlap", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12, -1, XB_ERR_FORMAT,
     "overlap"},
    {"gap", "{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", 12, -1, XB_ERR_FORMAT,
     "unused"},
    {"gap at start", "{" T("a", "F32", "[1]", 4, 8) "}", 8, -1, XB_ERR_FORMAT, "unused"},
    {"trailing data", "{" T("a", "F32", "[1]", 0, 4) "}", 6, -1, XB_ERR_FORMAT, "trailing garbage"},
    {"trailing data, no tensors", "{}", 3, -1, XB_ERR_FORMAT, "trailing garbage"},
    {"duplicate name", "{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8, -1, XB_ERR_FORMAT,
     "tensor 'a' appears more than once"},
    {"metadata not object", "{\"__metadata__\":[1]}", 0, -1, XB_ERR_FORMAT, "\"__metadata__\" is not an object"},
    {"metadata value", "{\"__metadata__\":{\"epoch\":3}}", 0, -1, XB_ERR_FORMAT, "'epoch' is not a string"},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, -1, XB_ERR_FORMAT, "appears 2 times"},
    {"metadata dup key", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, -1, XB_ERR_FORMAT, "duplicate key 'k'"},
};

static void test_st_bad_inputs(void **state) {
    (void)state;
    char path[512];
    for (size_t c = 0; c < sizeof st_bad_cases / sizeof *st_bad_cases; c++) {
        const st_bad *b = &st_bad_cases[c];
        char name[64];
        snprintf(name, sizeof name, "bad%zu.safetensors", c);
        xbt_path(path, sizeof path, name);
        write_st(path, b->json, b->data, b->hlen);
        xb_safetensors st;
        st.n = 99;
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  [%s]", b->name);
        xbt_assert_error(xb_st_load(path, &st), b->want, path, b->what);
        assert_int_equal(st.n, 0); /* cleared, nothing leaked (ASan) */
        assert_null(st.e);
        assert_int_equal(st.n_meta, 0);
    }
    /* short files, no file, not a file */
    xb_safetensors st;
    xbt_path(path, sizeof path, "short.safetensors");
    WRITE_LIT(path, "\x02\0\0\0");
    xbt_assert_error(xb_st_load(path, &st), XB_ERR_FORMAT, path, "fewer than the 8-byte");
    WRITE_LIT(path, "");
    xbt_assert_error(xb_st_load(path, &st), XB_ERR_FORMAT, path, "fewer than the 8-byte");
    /* a 200 MB header in a (sparse) file that holds it: over the format's 100 MB limit */
    WRITE_LIT(path, "\x00\xc2\xeb\x0b\x00\x00\x00\x00{");
    assert_int_equal(truncate(path, 200000100), 0);
    xbt_assert_error(xb_st_load(path, &st), XB_ERR_FORMAT, path, "not a plausible JSON header size");
    unlink(path);
    xbt_path(path, sizeof path, "does-not-exist.safetensors");
    xbt_assert_error(xb_st_load(path, &st), XB_ERR_IO, path, "No such file");
    xbt_assert_error(xb_st_load(xbt_tmpdir(), &st), XB_ERR_IO, xbt_tmpdir(), "not a regular file");
    /* a NUL inside the header is not JSON whitespace */
    xbt_path(path, sizeof path, "nul.safetensors");
    write_st(path, "{}      ", 0, -1);
    FILE *f = fopen(path, "r+b");
    fseek(f, 12, SEEK_SET);
    fputc(0, f);
    fclose(f);
    xbt_assert_error(xb_st_load(path, &st), XB_ERR_FORMAT, path, "unexpected bytes after");
}

static void test_st_save_errors(void **state) {
    (void)state;
    char path[512], tmp[600];
    float v[2] = {1, 2};
    xb_tensor t = {.dtype = XB_F32, .ndim = 1, .shape = {2, 1, 1, 1}, .data = v};
    xb_safetensors st;

    xb_st_init(&st);
    xb_st_add(&st, "a", t);
    xb_st_add(&st, "b", t);
    xbt_path(path, sizeof path, "no-such-dir/x.safetensors");
    xbt_assert_error(xb_st_save(path, &st), XB_ERR_IO, path, "directory");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(file_exists(tmp));

    xbt_path(path, sizeof path, "dup.safetensors");
    xb_st_add(&st, "a", t);
    xbt_assert_error(xb_st_save(path, &st), XB_ERR_ARG, path, "tensor 'a' appears twice");
    assert_false(file_exists(path));
    xb_st_free(&st);

    xb_st_init(&st);
    xb_st_add(&st, "__metadata__", t);
    xbt_assert_error(xb_st_save(path, &st), XB_ERR_ARG, path, "__metadata__");
    xb_st_free(&st);

    xb_st_init(&st);
    xb_tensor nodata = t;
    nodata.data = NULL;
    xb_st_add(&st, "x", nodata);
    xbt_assert_error(xb_st_save(path, &st), XB_ERR_ARG, path, "no data");
    xb_st_free(&st);

    xb_st_init(&st);
    xb_tensor neg = t;
    neg.shape[0] = -3;
    xb_st_add(&st, "x", neg);
    xbt_assert_error(xb_st_save(path, &st), XB_ERR_ARG, path, "invalid shape");
    xb_st_free(&st);
    assert_false(file_exists(path));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_roundtrip_all),
        cmocka_unit_test(test_npy_writes_numpy_bytes),
        cmocka_unit_test(test_npy_reads_header_variants),
        cmocka_unit_test(test_npy_bad_inputs),
        cmocka_unit_test(test_npy_bad_preamble),
        cmocka_unit_test(test_npy_save_errors),
        cmocka_unit_test(test_st_roundtrip_all),
        cmocka_unit_test(test_st_empty_and_owned),
        cmocka_unit_test(test_st_reads_python_file),
        cmocka_unit_test(test_st_bad_inputs),
        cmocka_unit_test(test_st_save_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
