/* test_data.c -- CIFAR loaders and the batcher: fake CIFAR-10/100 directories made in a temp dir (valid
 * and corrupt), data-directory discovery and its message, the real dataset when it is present (counts,
 * class balance, channel means), exact normalization, and augmentation: determinism, draw order,
 * agreement with a naive pad-crop-flip reference, and the rates of every crop offset and of flips. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define REC10 3073
#define REC100 3074
#define PIX 3072
#define PER_FILE 10000

static const float c10_mean[3] = {0.4914f, 0.4822f, 0.4465f}, c10_std[3] = {0.2470f, 0.2435f, 0.2616f};
static const float c100_mean[3] = {0.5071f, 0.4865f, 0.4409f}, c100_std[3] = {0.2673f, 0.2564f, 0.2762f};

/* ------------------------------------------------------------------------------------------------ */
/* Fake datasets                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

static uint8_t pixel_of(int64_t record, int j) { return (uint8_t)(record * 7 + j * 13 + (j >> 8)); }

static char *make_dir(char *buf, size_t n, const char *name) {
    xbt_path(buf, n, name);
    mkdir(buf, 0755);
    return buf;
}

/* A full-size CIFAR-10 file (10000 records): label (r + salt) % 10, pixels pixel_of(r + salt*PER_FILE). */
static void write_cifar10_file(const char *dir, const char *name, int salt) {
    uint8_t *buf = malloc((size_t)PER_FILE * REC10);
    for (int64_t r = 0; r < PER_FILE; r++) {
        uint8_t *p = buf + r * REC10;
        p[0] = (uint8_t)((r + salt) % 10);
        for (int j = 0; j < PIX; j++) p[1 + j] = pixel_of(r + (int64_t)salt * PER_FILE, j);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    xbt_write_file(path, buf, (size_t)PER_FILE * REC10);
    free(buf);
}

static void write_cifar10_dir(const char *dir) {
    char name[64];
    for (int i = 1; i <= 5; i++) {
        snprintf(name, sizeof name, "data_batch_%d.bin", i);
        write_cifar10_file(dir, name, i);
    }
    write_cifar10_file(dir, "test_batch.bin", 0);
}

static void remove_cifar10_dir(const char *dir) {
    static const char *const names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                        "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    char path[600];
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Overwrites bytes of an existing file. */
static void patch_file(const char *path, int64_t off, const void *data, size_t n) {
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, n, off), (ssize_t)n);
    close(fd);
}

/* ------------------------------------------------------------------------------------------------ */
/* Loading                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

static void test_cifar10_fake(void **state) {
    (void)state;
    char dir[512];
    make_dir(dir, sizeof dir, "c10");
    write_cifar10_dir(dir);

    xb_dataset d;
    assert_int_equal(xb_cifar10_load(dir, XB_SPLIT_TEST, &d), XB_OK);
    assert_int_equal(d.n, 10000);
    assert_int_equal(d.c, 3);
    assert_int_equal(d.h, 32);
    assert_int_equal(d.w, 32);
    assert_int_equal(d.classes, 10);
    assert_string_equal(d.path, dir);
    for (int ch = 0; ch < 3; ch++) {
        assert_true(d.mean[ch] == c10_mean[ch]);
        assert_true(d.std[ch] == c10_std[ch]);
    }
    for (int64_t r = 0; r < d.n; r++) assert_int_equal(d.labels[r], r % 10);
    static const int64_t probe[] = {0, 1, 4321, 9999};
    for (size_t k = 0; k < 4; k++)
        for (int j = 0; j < PIX; j++) assert_int_equal(d.images[probe[k] * PIX + j], pixel_of(probe[k], j));
    xb_dataset_free(&d);
    assert_null(d.images);

    /* training split: the five files in order */
    assert_int_equal(xb_cifar_load(dir, XB_SPLIT_TRAIN, &d), XB_OK);
    assert_int_equal(d.n, 50000);
    assert_int_equal(d.classes, 10);
    for (int f = 0; f < 5; f++)
        for (int64_t r = 0; r < PER_FILE; r += 997) {
            int64_t i = f * PER_FILE + r;
            assert_int_equal(d.labels[i], (r + f + 1) % 10);
            assert_int_equal(d.images[i * PIX + 1234], pixel_of(r + (int64_t)(f + 1) * PER_FILE, 1234));
        }
    xb_dataset_free(&d);
    xb_dataset_free(&d); /* harmless twice */
    remove_cifar10_dir(dir);
}

static void test_cifar10_corrupt(void **state) {
    (void)state;
    char dir[512], path[600];
    make_dir(dir, sizeof dir, "c10bad");
    /* data_batch_1.bin, test_batch.bin and data_batch_3.bin (which gets patched) are real files; the other
     * training files are hard links to data_batch_1.bin */
    write_cifar10_file(dir, "data_batch_1.bin", 1);
    write_cifar10_file(dir, "data_batch_3.bin", 3);
    write_cifar10_file(dir, "test_batch.bin", 0);
    char src[600];
    snprintf(src, sizeof src, "%s/data_batch_1.bin", dir);
    for (int i = 2; i <= 5; i += i == 2 ? 2 : 1) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
        assert_int_equal(link(src, path), 0);
    }
    xb_dataset d;
    assert_int_equal(xb_cifar10_load(dir, XB_SPLIT_TRAIN, &d), XB_OK);
    xb_dataset_free(&d);

    /* label 11 in record 4321 of data_batch_3.bin */
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    uint8_t eleven = 11, ok = 1;
    patch_file(path, 4321LL * REC10, &eleven, 1);
    xbt_assert_error(xb_cifar10_load(dir, XB_SPLIT_TRAIN, &d), XB_ERR_FORMAT, path, "record 4321");
    assert_true(strstr(xb_last_error(), "label 11 is out of range 0..9") != NULL);
    assert_null(d.images); /* nothing kept, nothing leaked */
    /* the test split is unaffected */
    assert_int_equal(xb_cifar10_load(dir, XB_SPLIT_TEST, &d), XB_OK);
    xb_dataset_free(&d);
    patch_file(path, 4321LL * REC10, &ok, 1);

    /* label 10 (one past the last class) in the last record of the test file */
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    uint8_t bad = 10;
    patch_file(path, 9999LL * REC10, &bad, 1);
    xbt_assert_error(xb_cifar10_load(dir, XB_SPLIT_TEST, &d), XB_ERR_FORMAT, path, "record 9999");

    /* one byte short, one byte long */
    assert_int_equal(truncate(path, (off_t)PER_FILE * REC10 - 1), 0);
    xbt_assert_error(xb_cifar10_load(dir, XB_SPLIT_TEST, &d), XB_ERR_FORMAT, path, "expected 30730000");
    assert_int_equal(truncate(path, (off_t)PER_FILE * REC10 + 1), 0);
    xbt_assert_error(xb_cifar10_load(dir, XB_SPLIT_TEST, &d), XB_ERR_FORMAT, path, "expected 30730000");
    /* a whole number of records but not 10000 of them */
    assert_int_equal(truncate(path, (off_t)5000 * REC10), 0);
    xbt_assert_error(xb_cifar_load(dir, XB_SPLIT_TEST, &d), XB_ERR_FORMAT, path, "size 15365000 bytes");

    /* a missing training file */
    snprintf(path, sizeof path, "%s/data_batch_4.bin", dir);
    unlink(path);
    xbt_assert_error(xb_cifar10_load(dir, XB_SPLIT_TRAIN, &d), XB_ERR_IO, path, "No such file");
    remove_cifar10_dir(dir);
}

/* CIFAR-100: records of coarse label, fine label, pixels. */
static void write_cifar100(const char *path, int n, int extra_bytes) {
    size_t size = (size_t)n * REC100 + (size_t)extra_bytes;
    uint8_t *buf = calloc(1, size + 1);
    for (int r = 0; r < n; r++) {
        uint8_t *p = buf + (size_t)r * REC100;
        p[0] = (uint8_t)(r * 3 % 20);
        p[1] = (uint8_t)((r * 37 + 11) % 100);
        for (int j = 0; j < PIX; j++) p[2 + j] = pixel_of(r, j);
    }
    xbt_write_file(path, buf, size);
    free(buf);
}

static void test_cifar100_fake(void **state) {
    (void)state;
    char dir[512], path[600];
    make_dir(dir, sizeof dir, "c100");
    snprintf(path, sizeof path, "%s/train.bin", dir);
    write_cifar100(path, 7, 0);
    snprintf(path, sizeof path, "%s/test.bin", dir);
    write_cifar100(path, 3, 0);

    xb_dataset d;
    assert_int_equal(xb_cifar_load(dir, XB_SPLIT_TRAIN, &d), XB_OK); /* picks CIFAR-100 */
    assert_int_equal(d.n, 7);
    assert_int_equal(d.classes, 100);
    for (int r = 0; r < 7; r++) {
        assert_int_equal(d.labels[r], (r * 37 + 11) % 100); /* the fine label */
        for (int j = 0; j < PIX; j += 101) assert_int_equal(d.images[r * PIX + j], pixel_of(r, j));
    }
    for (int ch = 0; ch < 3; ch++) {
        assert_true(d.mean[ch] == c100_mean[ch]);
        assert_true(d.std[ch] == c100_std[ch]);
    }
    xb_dataset_free(&d);
    assert_int_equal(xb_cifar100_load(dir, XB_SPLIT_TEST, &d), XB_OK);
    assert_int_equal(d.n, 3);
    xb_dataset_free(&d);

    /* corrupt: partial record, empty file, fine label 100, coarse label 20 */
    snprintf(path, sizeof path, "%s/test.bin", dir);
    write_cifar100(path, 3, 100);
    xbt_assert_error(xb_cifar100_load(dir, XB_SPLIT_TEST, &d), XB_ERR_FORMAT, path, "not a whole");
    write_cifar100(path, 0, 0);
    xbt_assert_error(xb_cifar100_load(dir, XB_SPLIT_TEST, &d), XB_ERR_FORMAT, path, "non-zero");
    write_cifar100(path, 3, 0);
    uint8_t v = 100;
    patch_file(path, 2LL * REC100 + 1, &v, 1);
    xbt_assert_error(xb_cifar_load(dir, XB_SPLIT_TEST, &d), XB_ERR_FORMAT, path, "record 2");
    assert_true(strstr(xb_last_error(), "fine label 100 is out of range 0..99") != NULL);
    write_cifar100(path, 3, 0);
    v = 20;
    patch_file(path, 1LL * REC100, &v, 1);
    xbt_assert_error(xb_cifar_load(dir, XB_SPLIT_TEST, &d), XB_ERR_FORMAT, path, "coarse label 20");
    assert_null(d.images);
}

static void test_data_find(void **state) {
    (void)state;
    char dir[512], got[512], path[600];
    const char *env0 = getenv("XBAR_DATA");
    char *env_saved = env0 ? strdup(env0) : NULL;

    /* an explicit directory that does not exist: error, with how to get CIFAR-10 */
    xbt_path(dir, sizeof dir, "nowhere");
    xb_status st = xb_data_find(dir, got, sizeof got);
    xbt_assert_error(st, XB_ERR_IO, dir, "no such directory");
    const char *msg = xb_last_error();
    assert_non_null(strstr(msg, "cifar-10-binary.tar.gz"));
    assert_non_null(strstr(msg, "University of Toronto"));
    assert_non_null(strstr(msg, "--data DIR"));
    assert_non_null(strstr(msg, "XBAR_DATA"));
    assert_int_equal(got[0], 0);

    /* exists but holds no CIFAR file; a file instead of a directory */
    make_dir(dir, sizeof dir, "emptydata");
    xbt_assert_error(xb_data_find(dir, got, sizeof got), XB_ERR_IO, dir, "holds none of");
    snprintf(path, sizeof path, "%s/readme.txt", dir);
    xbt_write_file(path, "x", 1);
    xbt_assert_error(xb_data_find(path, got, sizeof got), XB_ERR_IO, path, "not a directory");

    /* a directory with CIFAR-100 files; the extracted-tarball subdirectory is found inside its parent */
    char c100[512];
    make_dir(c100, sizeof c100, "find100");
    snprintf(path, sizeof path, "%s/test.bin", c100);
    write_cifar100(path, 1, 0);
    assert_int_equal(xb_data_find(c100, got, sizeof got), XB_OK);
    assert_string_equal(got, c100);
    char parent[512], sub[560];
    make_dir(parent, sizeof parent, "parent");
    snprintf(sub, sizeof sub, "%s/cifar-100-binary", parent);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/train.bin", sub);
    write_cifar100(path, 2, 0);
    assert_int_equal(xb_data_find(parent, got, sizeof got), XB_OK);
    assert_string_equal(got, sub);
    xb_dataset d;
    assert_int_equal(xb_cifar_load(parent, XB_SPLIT_TRAIN, &d), XB_OK);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.path, sub);
    xb_dataset_free(&d);

    /* a too-small output buffer */
    char tiny[8];
    xbt_assert_error(xb_data_find(c100, tiny, sizeof tiny), XB_ERR_ARG, c100, "too long");

    /* XBAR_DATA is used when no directory is given, and an explicit directory wins over it */
    setenv("XBAR_DATA", c100, 1);
    assert_int_equal(xb_data_find(NULL, got, sizeof got), XB_OK);
    assert_string_equal(got, c100);
    assert_int_equal(xb_data_find("", got, sizeof got), XB_OK);
    assert_string_equal(got, c100);
    assert_int_equal(xb_data_find(sub, got, sizeof got), XB_OK);
    assert_string_equal(got, sub);
    setenv("XBAR_DATA", dir, 1); /* the empty directory */
    xbt_assert_error(xb_data_find(NULL, got, sizeof got), XB_ERR_IO, dir, "$XBAR_DATA");

    /* neither: ../shared/data/cifar10 relative to the current directory */
    unsetenv("XBAR_DATA");
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char work[512], shared[560];
    make_dir(work, sizeof work, "work");
    make_dir(shared, sizeof shared, "shared");
    snprintf(shared, sizeof shared, "%s/shared/data", xbt_tmpdir());
    mkdir(shared, 0755);
    snprintf(shared, sizeof shared, "%s/shared/data/cifar10", xbt_tmpdir());
    mkdir(shared, 0755);
    assert_int_equal(chdir(work), 0);
    st = xb_data_find(NULL, got, sizeof got);
    xbt_assert_error(st, XB_ERR_IO, "../shared/data/cifar10", "XBAR_DATA is not set");
    assert_non_null(strstr(xb_last_error(), "cifar-10-binary.tar.gz"));
    snprintf(path, sizeof path, "%s/test_batch.bin", shared);
    xbt_write_file(path, "", 0);
    assert_int_equal(xb_data_find(NULL, got, sizeof got), XB_OK);
    assert_string_equal(got, "../shared/data/cifar10");
    assert_int_equal(chdir(cwd), 0);

    if (env_saved) setenv("XBAR_DATA", env_saved, 1);
    free(env_saved);
}

/* The real CIFAR-10 (skipped when absent): counts, class balance, label range, channel means. */
static void test_cifar10_real(void **state) {
    (void)state;
    const char *dir = xbt_cifar_dir();
    if (!dir) {
        fprintf(stderr, "  CIFAR-10 not found (%s); skipping\n", xb_last_error());
        skip();
    }
    static const struct { xb_split split; int64_t n; } splits[] = {{XB_SPLIT_TEST, 10000}, {XB_SPLIT_TRAIN, 50000}};
    for (int s = 0; s < 2; s++) {
        xb_dataset d;
        double t0 = xb_time_s();
        assert_int_equal(xb_cifar_load(dir, splits[s].split, &d), XB_OK);
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  loaded %lld images in %.2f s\n", (long long)d.n, xb_time_s() - t0);
        assert_int_equal(d.n, splits[s].n);
        assert_int_equal(d.classes, 10);
        int64_t count[10] = {0};
        for (int64_t i = 0; i < d.n; i++) {
            assert_true(d.labels[i] >= 0 && d.labels[i] < 10);
            count[d.labels[i]]++;
        }
        for (int k = 0; k < 10; k++) assert_int_equal(count[k], splits[s].n / 10);
        /* per-channel means of the pixels, in [0, 1] units: the README gives (0.490, 0.481, 0.445) */
        static const double want[3] = {0.490, 0.481, 0.445};
        for (int ch = 0; ch < 3; ch++) {
            double sum = 0;
            for (int64_t i = 0; i < d.n; i++) {
                const uint8_t *p = d.images + i * PIX + ch * 1024;
                uint32_t acc = 0;
                for (int j = 0; j < 1024; j++) acc += p[j];
                sum += acc;
            }
            double mean = sum / (double)d.n / 1024 / 255;
            if (fabs(mean - want[ch]) > 0.01) fail_msg("channel %d mean %.4f, want %.3f", ch, mean, want[ch]);
        }
        /* the splits are shuffled: the first 100 images already hold every class */
        int seen = 0;
        for (int i = 0; i < 100; i++) seen |= 1 << d.labels[i];
        assert_int_equal(seen, 0x3ff);
        xb_dataset_free(&d);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Batches                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

/* A small in-memory dataset: n images with the given pixel function. */
static xb_dataset mem_dataset(int64_t n, uint8_t (*pix)(int64_t, int, int, int)) {
    xb_dataset d = {.n = n, .c = 3, .h = 32, .w = 32, .classes = 10};
    d.images = xb_malloc((size_t)n * PIX);
    d.labels = xb_malloc((size_t)n * sizeof *d.labels);
    for (int64_t i = 0; i < n; i++) {
        d.labels[i] = (int32_t)((i * 3 + 1) % 10);
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) d.images[i * PIX + ch * 1024 + y * 32 + x] = pix(i, ch, y, x);
    }
    memcpy(d.mean, c10_mean, sizeof d.mean);
    memcpy(d.std, c10_std, sizeof d.std);
    return d;
}

static uint8_t pix_hash(int64_t i, int ch, int y, int x) {
    uint64_t h = (uint64_t)(i * 1000003 + ch * 7919 + y * 131 + x) * 0x9e3779b97f4a7c15ULL;
    return (uint8_t)(h >> 56);
}

/* Each pixel says where it is: R = 1 + x, G = 1 + y, B = 100 + image index (all non-zero, so the zero
 * padding is recognisable). */
static uint8_t pix_coord(int64_t i, int ch, int y, int x) {
    return (uint8_t)(ch == 0 ? 1 + x : ch == 1 ? 1 + y : 100 + i);
}

static float norm_ref(uint8_t v, int ch) { return ((float)v / 255.0f - c10_mean[ch]) / c10_std[ch]; }

static void test_batch_normalization(void **state) {
    (void)state;
    xb_dataset d = mem_dataset(5, pix_hash);
    d.images[3 * PIX + 1 * 1024 + 5 * 32 + 7] = 200; /* image 3, green, y 5, x 7 */
    d.images[3 * PIX + 0] = 0;
    d.images[3 * PIX + 2 * 1024 + 1023] = 255;
    int64_t idx[2] = {3, 0};
    float x[2 * PIX];
    int32_t lab[2];
    xb_dataset_batch(&d, idx, 2, 0, 0, NULL, x, lab);
    /* torchvision: ToTensor gives 200/255 in float32, Normalize (x - 0.4822) / 0.2435 in float32 */
    float want = (200.0f / 255.0f - 0.4822f) / 0.2435f;
    assert_true(x[1 * 1024 + 5 * 32 + 7] == want);
    assert_true(fabs(x[1 * 1024 + 5 * 32 + 7] - (200.0 / 255 - 0.4822) / 0.2435) < 1e-6);
    assert_true(fabs(x[1 * 1024 + 5 * 32 + 7] - 1.2407135) < 2e-6); /* (200/255 - 0.4822) / 0.2435 */
    assert_true(x[0] == (0.0f - 0.4914f) / 0.2470f);
    assert_true(x[2 * 1024 + 1023] == (1.0f - 0.4465f) / 0.2616f);
    /* without augmentation every element is the plain normalized pixel, in NCHW order */
    for (int b = 0; b < 2; b++)
        for (int ch = 0; ch < 3; ch++)
            for (int j = 0; j < 1024; j++)
                assert_true(x[b * PIX + ch * 1024 + j] == norm_ref(d.images[idx[b] * PIX + ch * 1024 + j], ch));
    assert_int_equal(lab[0], d.labels[3]);
    assert_int_equal(lab[1], d.labels[0]);
    /* labels may be NULL; augment = 0 ignores the rng and does not advance it */
    xb_rng r, r0;
    xb_rng_seed(&r, 5, "augment");
    r0 = r;
    float y[2 * PIX];
    xb_dataset_batch(&d, idx, 2, 0, 0, &r, y, NULL);
    assert_memory_equal(x, y, sizeof x);
    assert_memory_equal(r.s, r0.s, sizeof r.s);
    xb_dataset_free(&d);
}

/* Naive reference: zero-pad to 40x40 (raw pixels), crop at (dy, dx), mirror, normalize. */
static void reference_aug(const xb_dataset *d, int64_t i, int dy, int dx, int flip, float *out) {
    static uint8_t pad[3][40][40];
    memset(pad, 0, sizeof pad);
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) pad[ch][y + 4][x + 4] = d->images[i * PIX + ch * 1024 + y * 32 + x];
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) {
                int cx = flip ? 31 - x : x;
                out[ch * 1024 + y * 32 + x] = norm_ref(pad[ch][y + dy][cx + dx], ch);
            }
}

/* Raw byte from a normalized value (the table is strictly increasing). */
static int raw_of(float v, int ch) {
    for (int b = 0; b < 256; b++)
        if (norm_ref((uint8_t)b, ch) == v) return b;
    return -1;
}

static void test_batch_augment_rates(void **state) {
    (void)state;
    enum { N = 9000, NIMG = 50, BATCH = 300 };
    xb_dataset d = mem_dataset(NIMG, pix_coord);
    xb_rng rng;
    xb_rng_seed(&rng, 20240601, "augment");
    int64_t idx[BATCH];
    static float x[BATCH * PIX];
    float ref[PIX];
    int cnt_dy[9] = {0}, cnt_dx[9] = {0}, flips = 0, changed = 0;
    for (int done = 0; done < N; done += BATCH) {
        for (int b = 0; b < BATCH; b++) idx[b] = (done + b) * 7 % NIMG;
        xb_dataset_batch(&d, idx, BATCH, 1, 0, &rng, x, NULL);
        for (int b = 0; b < BATCH; b++) {
            const float *o = x + (size_t)b * PIX;
            /* the centre pixel always comes from the image: decode the crop and flip from it */
            int r16 = raw_of(o[16 * 32 + 16], 0), r17 = raw_of(o[16 * 32 + 17], 0), g = raw_of(o[1024 + 16 * 32 + 16], 1);
            assert_true(r16 > 0 && r17 > 0 && g > 0);
            int flip = r17 < r16;
            int dx = (r16 - 1) - (flip ? 15 : 16) + 4, dy = (g - 1) - 16 + 4;
            assert_true(dx >= 0 && dx <= 8 && dy >= 0 && dy <= 8);
            /* and the whole image must be the naive pad-crop-flip of the source */
            reference_aug(&d, idx[b], dy, dx, flip, ref);
            assert_memory_equal(o, ref, sizeof ref);
            cnt_dy[dy]++;
            cnt_dx[dx]++;
            flips += flip;
            changed += dx != 4 || dy != 4 || flip;
        }
    }
    /* each of the 9 offsets with probability 1/9, flips with 1/2: within 5 standard deviations */
    double sd9 = sqrt(N * (1.0 / 9) * (8.0 / 9)), sd2 = sqrt(N * 0.25);
    for (int k = 0; k < 9; k++) {
        if (fabs(cnt_dy[k] - N / 9.0) > 5 * sd9) fail_msg("crop top %d drawn %d times of %d", k, cnt_dy[k], N);
        if (fabs(cnt_dx[k] - N / 9.0) > 5 * sd9) fail_msg("crop left %d drawn %d times of %d", k, cnt_dx[k], N);
    }
    if (fabs(flips - N / 2.0) > 5 * sd2) fail_msg("%d flips in %d images", flips, N);
    assert_true(changed > N * 0.9); /* identity happens with probability 1/162 */
    xb_dataset_free(&d);
}

static void test_batch_augment_determinism(void **state) {
    (void)state;
    enum { B = 300 }; /* more than one internal chunk of draws */
    xb_dataset d = mem_dataset(40, pix_hash);
    int64_t idx[B];
    for (int i = 0; i < B; i++) idx[i] = (i * 13 + 5) % 40;
    static float a[B * PIX], b[B * PIX], c[B * PIX];
    int32_t la[B], lb[B];
    xb_rng r1, r2, r3;
    xb_rng_seed(&r1, 7, "augment");
    xb_rng_seed(&r2, 7, "augment");
    xb_rng_seed(&r3, 8, "augment");
    xb_dataset_batch(&d, idx, B, 1, 0, &r1, a, la);
    xb_dataset_batch(&d, idx, B, 1, 0, &r2, b, lb);
    assert_memory_equal(a, b, sizeof a);            /* same seed, same batch */
    assert_memory_equal(la, lb, sizeof la);
    assert_memory_equal(r1.s, r2.s, sizeof r1.s);   /* and the same state afterwards */
    xb_dataset_batch(&d, idx, B, 1, 0, &r3, c, NULL);
    assert_true(memcmp(a, c, sizeof a) != 0);       /* another seed, another batch */
    for (int i = 0; i < B; i++) assert_int_equal(la[i], d.labels[idx[i]]);

    /* the draws are made per image in a fixed order: a batch equals the same images one at a time */
    xb_rng_seed(&r2, 7, "augment");
    for (int i = 0; i < B; i++) {
        xb_dataset_batch(&d, &idx[i], 1, 1, 0, &r2, b + (size_t)i * PIX, NULL);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(r1.s, r2.s, sizeof r1.s);
    /* and with a different thread count (the draws are serial, the pixel work parallel) */
#ifdef _OPENMP
    int threads0 = omp_get_max_threads();
    for (int nt = 1; nt <= 4; nt += 3) {
        omp_set_num_threads(nt);
        xb_rng_seed(&r2, 7, "augment");
        memset(b, 0, sizeof b);
        xb_dataset_batch(&d, idx, B, 1, 0, &r2, b, NULL);
        assert_memory_equal(a, b, sizeof a);
    }
    omp_set_num_threads(threads0);
#endif
    /* an empty batch does nothing */
    xb_rng_seed(&r2, 7, "augment");
    xb_rng r2_0 = r2;
    xb_dataset_batch(&d, idx, 0, 1, 0, &r2, b, NULL);
    assert_memory_equal(r2.s, r2_0.s, sizeof r2.s);
    xb_dataset_free(&d);
}

/* Cutout: after the crop/flip draws come the centre row and column; the N x N square
 * [c - N/2, c - N/2 + N) clipped to the image is 0 and every other pixel is the plain pad-crop-flip.
 * Sizes 1 (one pixel), 8, 16 (the paper's CIFAR-10 size) and 33 (larger than the image, still a
 * clipped square), with and without crop/flip; centres hit every row and column. */
static void test_batch_cutout(void **state) {
    (void)state;
    enum { B = 200, NIMG = 30 };
    xb_dataset d = mem_dataset(NIMG, pix_hash);
    int64_t idx[B];
    for (int i = 0; i < B; i++) idx[i] = (i * 11 + 3) % NIMG;
    static float x[B * PIX];
    float ref[PIX];
    static const int sizes[] = {1, 8, 16, 33};
    for (int aug = 0; aug < 2; aug++)
        for (int si = 0; si < 4; si++) {
            int N = sizes[si];
            int row_seen[32] = {0}, col_seen[32] = {0};
            for (int rep = 0; rep < 10; rep++) {
                xb_rng r, replay;
                xb_rng_seed(&r, 100 + rep, "augment");
                replay = r;
                xb_dataset_batch(&d, idx, B, aug, N, &r, x, NULL);
                for (int b = 0; b < B; b++) {
                    int dy = 4, dx = 4, flip = 0;
                    if (aug) {
                        dy = (int)xb_rng_below(&replay, 9);
                        dx = (int)xb_rng_below(&replay, 9);
                        flip = (int)xb_rng_below(&replay, 2);
                    }
                    int cy = (int)xb_rng_below(&replay, 32), cx = (int)xb_rng_below(&replay, 32);
                    row_seen[cy] = col_seen[cx] = 1;
                    reference_aug(&d, idx[b], dy, dx, flip, ref);
                    int zeros = 0;
                    for (int ch = 0; ch < 3; ch++)
                        for (int y = 0; y < 32; y++)
                            for (int xx = 0; xx < 32; xx++) {
                                int in = y >= cy - N / 2 && y < cy - N / 2 + N && xx >= cx - N / 2 && xx < cx - N / 2 + N;
                                float want = in ? 0.0f : ref[ch * 1024 + y * 32 + xx];
                                float got = x[(size_t)b * PIX + ch * 1024 + y * 32 + xx];
                                if (got != want) fail_msg("cutout %d aug %d image %d: (%d,%d,%d) = %g, want %g", N, aug, b, ch, y, xx, got, want);
                                zeros += in;
                            }
                    int h0 = cy - N / 2 < 0 ? 0 : cy - N / 2, h1 = cy - N / 2 + N > 32 ? 32 : cy - N / 2 + N;
                    int w0 = cx - N / 2 < 0 ? 0 : cx - N / 2, w1 = cx - N / 2 + N > 32 ? 32 : cx - N / 2 + N;
                    assert_int_equal(zeros, 3 * (h1 - h0) * (w1 - w0));
                    assert_true(zeros <= 3 * N * N);
                }
                assert_memory_equal(r.s, replay.s, sizeof r.s); /* exactly these draws, no others */
            }
            for (int k = 0; k < 32; k++) assert_true(row_seen[k] && col_seen[k]);
        }
    xb_dataset_free(&d);
}

/* The batcher on a loaded (fake) dataset gives the loader's normalization constants. */
static void test_batch_loaded(void **state) {
    (void)state;
    char dir[512], path[600];
    make_dir(dir, sizeof dir, "c100b");
    snprintf(path, sizeof path, "%s/test.bin", dir);
    write_cifar100(path, 4, 0);
    xb_dataset d;
    assert_int_equal(xb_cifar_load(dir, XB_SPLIT_TEST, &d), XB_OK);
    int64_t idx[1] = {2};
    float x[PIX];
    int32_t lab;
    xb_dataset_batch(&d, idx, 1, 0, 0, NULL, x, &lab);
    assert_int_equal(lab, (2 * 37 + 11) % 100);
    for (int ch = 0; ch < 3; ch++)
        for (int j = 0; j < 1024; j += 31) {
            uint8_t v = pixel_of(2, ch * 1024 + j);
            assert_true(x[ch * 1024 + j] == ((float)v / 255.0f - c100_mean[ch]) / c100_std[ch]);
        }
    xb_dataset_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cifar10_fake),
        cmocka_unit_test(test_cifar10_corrupt),
        cmocka_unit_test(test_cifar100_fake),
        cmocka_unit_test(test_data_find),
        cmocka_unit_test(test_cifar10_real),
        cmocka_unit_test(test_batch_normalization),
        cmocka_unit_test(test_batch_augment_rates),
        cmocka_unit_test(test_batch_augment_determinism),
        cmocka_unit_test(test_batch_cutout),
        cmocka_unit_test(test_batch_loaded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
