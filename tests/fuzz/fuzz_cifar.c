/* fuzz_cifar.c -- libFuzzer harness for the CIFAR loaders and the batcher.  The first input byte picks
 * what the rest becomes (by its low 3 bits):
 *   0-2  CIFAR-100 test.bin        -> xb_cifar_load (must pick CIFAR-100)
 *   3-4  CIFAR-100 train.bin       -> xb_cifar100_load
 *   5-7  CIFAR-10 test_batch.bin, as is (never the exact 30730000 bytes within -max_len, so this
 *        exercises the size check and xb_cifar_load's choice of format; the record reader behind it is
 *        the one CIFAR-100 inputs reach, with 1 label byte instead of 2.  An earlier version padded the
 *        input to the exact size with a sparse file, but every such run reads 30 MB: the corpus filled
 *        with them and throughput fell to ~30 runs/s, for no code that the CIFAR-100 modes miss.)
 * A successful load must give labels in range and images equal to the file's bytes; the batcher then runs
 * with and without augmentation (rng seeded from the input) and must give finite values that all come
 * from the normalization table. */
#include <math.h>

#include "fuzz_util.h"

#define REC10 3073
#define REC100 3074
#define PIX 3072

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_dir();
    return 0;
}

static void remove_all_(void) {
    static const char *const names[] = {"test.bin", "train.bin", "test_batch.bin"};
    char p[300];
    for (int i = 0; i < 3; i++) unlink(fuzz_path(p, sizeof p, names[i]));
}

static void check_batch_(const xb_dataset *d, const uint8_t *data, size_t size) {
    enum { MAXB = 8 };
    static float x[MAXB * PIX];
    int64_t idx[MAXB];
    int32_t lab[MAXB];
    int n = d->n < MAXB ? (int)d->n : MAXB;
    uint64_t seed = 0;
    for (size_t i = 0; i < size && i < 8; i++) seed = seed << 8 | data[i];
    xb_rng rng;
    xb_rng_seed(&rng, seed, "augment");
    for (int i = 0; i < n; i++) idx[i] = (int64_t)xb_rng_below(&rng, (uint64_t)d->n);
    int cutout = size > 8 ? data[8] % 40 : 0; /* 0 (off) or a square of 1..39, clipped */
    for (int aug = 0; aug < 2; aug++) {
        xb_dataset_batch(d, idx, n, aug, aug ? cutout : 0, &rng, x, lab);
        for (int i = 0; i < n; i++) {
            FUZZ_CHECK(lab[i] == d->labels[idx[i]], "label %d", i);
            for (int ch = 0; ch < 3; ch++) {
                float lo = (0.0f - d->mean[ch]) / d->std[ch], hi = (1.0f - d->mean[ch]) / d->std[ch];
                for (int j = 0; j < 1024; j++) {
                    float v = x[(size_t)i * PIX + ch * 1024 + j];
                    FUZZ_CHECK(isfinite(v) && ((v >= lo && v <= hi) || v == 0.0f), "value %g outside [%g, %g]", v, lo, hi);
                    if (!aug)
                        FUZZ_CHECK(v == ((float)d->images[idx[i] * PIX + ch * 1024 + j] / 255.0f - d->mean[ch]) / d->std[ch],
                                   "normalization");
                }
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] & 7;
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    char path[300];
    remove_all_();
    const char *dir = fuzz_dir();
    xb_dataset d;
    xb_status st;
    int rec, nlab, classes;
    if (mode <= 4) {
        fuzz_path(path, sizeof path, mode <= 2 ? "test.bin" : "train.bin");
        fuzz_write(path, body, n);
        st = mode <= 2 ? xb_cifar_load(dir, XB_SPLIT_TEST, &d) : xb_cifar100_load(dir, XB_SPLIT_TRAIN, &d);
        rec = REC100, nlab = 2, classes = 100;
    } else {
        fuzz_path(path, sizeof path, "test_batch.bin");
        fuzz_write(path, body, n);
        st = xb_cifar_load(dir, XB_SPLIT_TEST, &d);
        rec = REC10, nlab = 1, classes = 10;
    }
    if (st != XB_OK) {
        fuzz_check_error(st, path);
        FUZZ_CHECK(d.images == NULL && d.labels == NULL, "failed load left data");
        return 0;
    }
    FUZZ_CHECK(d.classes == classes && d.c == 3 && d.h == 32 && d.w == 32, "geometry");
    FUZZ_CHECK(d.n > 0 && (size_t)d.n * (size_t)rec == n, "%lld records from %zu bytes", (long long)d.n, n);
    for (int64_t i = 0; i < d.n; i++) {
        size_t off = (size_t)i * (size_t)rec;
        FUZZ_CHECK(off + (size_t)rec <= n, "record %lld is beyond the %zu-byte file", (long long)i, n);
        uint8_t l = body[off + (size_t)nlab - 1];
        FUZZ_CHECK(d.labels[i] >= 0 && d.labels[i] < classes && d.labels[i] == l, "label %lld", (long long)i);
        FUZZ_CHECK(memcmp(d.images + (size_t)i * PIX, body + off + (size_t)nlab, PIX) == 0, "image %lld", (long long)i);
    }
    check_batch_(&d, data, size);
    xb_dataset_free(&d);
    return 0;
}
