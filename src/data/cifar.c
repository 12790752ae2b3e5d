/* cifar.c -- CIFAR-10 and CIFAR-100 in their binary distributions, and the batcher that turns images
 * into normalized (optionally augmented) NCHW float batches.
 *
 *   CIFAR-10  (cifar-10-binary.tar.gz):  data_batch_1..5.bin, test_batch.bin; 10000 records per file of
 *             3073 bytes: label (0..9), 1024 red, 1024 green, 1024 blue bytes (rows of 32).
 *   CIFAR-100 (cifar-100-binary.tar.gz): train.bin (50000), test.bin (10000); records of 3074 bytes:
 *             coarse label (0..19), fine label (0..99), 3072 pixel bytes.  The fine label is used.
 *
 * Loading checks every file's size (CIFAR-10 files must be exactly 10000 records; CIFAR-100 files a
 * whole number of records) and every label byte, and names file and record on failure.  The batcher
 * mirrors torchvision's  RandomCrop(32, padding=4) -> RandomHorizontalFlip() -> ToTensor() ->
 * Normalize(mean, std): padding is 0 in raw pixel space, then (v/255 - mean)/std in float32, so a
 * padded pixel becomes -mean/std.  Cutout (DeVries & Taylor 2017, optional) then sets an N x N square
 * of the normalised image to 0, i.e. to the channel mean: rows cy - N/2 .. cy - N/2 + N - 1 (integer
 * division) and the same for columns, clipped at the border, around a centre drawn uniformly over the
 * whole image, as the authors' code does (identical to it for even N).  Random draws per image, in this
 * order: crop top (0..8), crop left (0..8), flip (0/1), then with cutout the centre row (0..h-1) and
 * column (0..w-1), all from the caller's rng and made serially, so batches are deterministic for any
 * thread count.
 *
 * What it deliberately is not: no Python-pickle CIFAR, no other datasets, no colour jitter, mixup or
 * other augmentations, no prefetch thread (the batcher is cheap: a table lookup per pixel).
 */
#include "xbar.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CIFAR_C 3
#define CIFAR_HW 32
#define CIFAR_PIX (CIFAR_C * CIFAR_HW * CIFAR_HW) /* 3072 */
#define CIFAR10_REC (1 + CIFAR_PIX)               /* 3073 */
#define CIFAR100_REC (2 + CIFAR_PIX)              /* 3074 */
#define CIFAR10_PER_FILE 10000
#define CIFAR_PAD 4          /* RandomCrop padding */
#define CIFAR_CHUNK 256      /* images whose random draws are made before a parallel pass */
#define CIFAR_READ_RECS 1024 /* records per read while loading */

#define CIFAR_DEFAULT_DIR "../shared/data/cifar10"
#define CIFAR_HINT_GET                                                                                    \
    "HINT: download cifar-10-binary.tar.gz (the \"CIFAR-10 binary version\") from the CIFAR page of the " \
    "University of Toronto, https://www.cs.toronto.edu/~kriz/cifar.html, extract it with "               \
    "'tar xzf cifar-10-binary.tar.gz' (it creates cifar-10-batches-bin/), then pass --data DIR or set "  \
    "XBAR_DATA=DIR to that directory"
#define CIFAR_HINT_CORRUPT                                                                                \
    "HINT: the file is corrupt or not the binary version of CIFAR; re-extract cifar-10-binary.tar.gz "    \
    "(or cifar-100-binary.tar.gz) from https://www.cs.toronto.edu/~kriz/cifar.html"

static const float cifar10_mean[3] = {0.4914f, 0.4822f, 0.4465f};
static const float cifar10_std[3] = {0.2470f, 0.2435f, 0.2616f};
static const float cifar100_mean[3] = {0.5071f, 0.4865f, 0.4409f};
static const float cifar100_std[3] = {0.2673f, 0.2564f, 0.2762f};

/* ------------------------------------------------------------------------------------------------ */
/* Finding the data                                                                                  */
/* ------------------------------------------------------------------------------------------------ */

static int cifar_is_file_(const char *dir, const char *name) {
    char p[1024];
    struct stat sb;
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, name) >= sizeof p) return 0;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* 1 if dir holds any CIFAR-10 or CIFAR-100 binary file. */
static int cifar_has_data_(const char *dir) {
    return cifar_is_file_(dir, "data_batch_1.bin") || cifar_is_file_(dir, "test_batch.bin") ||
           cifar_is_file_(dir, "train.bin") || cifar_is_file_(dir, "test.bin");
}

/* Tries dir, then the directories the tarballs extract to inside it.  NULL: found (copied to out);
 * else why not. */
static const char *cifar_try_dir_(const char *dir, char *out, size_t n, int *too_long) {
    static const char *const subdirs[] = {"", "cifar-10-batches-bin", "cifar-100-binary"};
    struct stat sb;
    *too_long = 0;
    if (stat(dir, &sb) != 0) return errno == ENOENT ? "no such directory" : "cannot access it";
    if (!S_ISDIR(sb.st_mode)) return "not a directory";
    for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++) {
        char cand[1024];
        int len = subdirs[i][0] ? snprintf(cand, sizeof cand, "%s/%s", dir, subdirs[i])
                                : snprintf(cand, sizeof cand, "%s", dir);
        if ((size_t)len >= sizeof cand || !cifar_has_data_(cand)) continue;
        if ((size_t)len >= n) { *too_long = 1; return "the path is too long"; }
        memcpy(out, cand, (size_t)len + 1);
        return NULL;
    }
    return "it holds none of data_batch_1.bin, test_batch.bin (CIFAR-10) or train.bin, test.bin (CIFAR-100)";
}

xb_status xb_data_find(const char *dir, char *out, size_t n) {
    XB_ASSERT(out && n > 0);
    const char *env = getenv("XBAR_DATA");
    const char *cand, *from;
    if (dir && dir[0]) { cand = dir; from = "the directory given"; }
    else if (env && env[0]) { cand = env; from = "$XBAR_DATA"; }
    else { cand = CIFAR_DEFAULT_DIR; from = "the default, relative to the current directory, as no data directory "
                                           "was given and XBAR_DATA is not set"; }
    int too_long;
    const char *why = cifar_try_dir_(cand, out, n, &too_long);
    if (!why) return XB_OK;
    out[0] = 0;
    if (too_long)
        return xb_errorf(XB_ERR_ARG, "%s: the data directory path is too long (%zu bytes at most). HINT: use a "
                         "shorter path", cand, n - 1);
    return xb_errorf(XB_ERR_IO, "%s: no CIFAR data here (%s; tried %s). %s", cand, why, from, CIFAR_HINT_GET);
}

/* ------------------------------------------------------------------------------------------------ */
/* Loading                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

typedef struct cifar_file {
    char path[1024];
    int64_t records;
} cifar_file;

/* Checks that path is a regular file of a whole number of records (exactly `expect` when > 0). */
static xb_status cifar_check_size_(cifar_file *f, int rec, int64_t expect, const char *dataset) {
    struct stat sb;
    if (stat(f->path, &sb) != 0)
        return xb_errorf(XB_ERR_IO, "%s: cannot open: %s. HINT: the %s directory is incomplete; extract the "
                         "whole archive again", f->path, strerror(errno), dataset);
    if (!S_ISREG(sb.st_mode))
        return xb_errorf(XB_ERR_IO, "%s: not a regular file. %s", f->path, CIFAR_HINT_CORRUPT);
    int64_t size = (int64_t)sb.st_size;
    if (expect > 0 && size != expect * rec)
        return xb_errorf(XB_ERR_FORMAT, "%s: size %" PRId64 " bytes, expected %" PRId64 " (%" PRId64 " records of %d "
                         "bytes: 1 label byte + 3072 pixel bytes). %s", f->path, size, expect * rec, expect, rec,
                         CIFAR_HINT_CORRUPT);
    if (size == 0 || size % rec != 0)
        return xb_errorf(XB_ERR_FORMAT, "%s: size %" PRId64 " bytes is not a whole, non-zero number of %d-byte "
                         "records (%" PRId64 " records and %" PRId64 " bytes left over). %s", f->path, size, rec,
                         size / rec, size % rec, CIFAR_HINT_CORRUPT);
    f->records = size / rec;
    return XB_OK;
}

/* Reads the records of one file into images/labels (room for f->records), checking the label bytes:
 * byte 0 < classes[0], and for CIFAR-100 byte 1 < classes[1] (the label used is the last label byte). */
static xb_status cifar_read_file_(const cifar_file *f, int rec, int n_label, const int *classes,
                                  uint8_t *images, int32_t *labels) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return xb_errorf(XB_ERR_IO, "%s: cannot open: %s. HINT: check the file's permissions", f->path,
                         strerror(errno));
    xb_status st = XB_OK;
    int64_t chunk = f->records < CIFAR_READ_RECS ? f->records : CIFAR_READ_RECS;
    uint8_t *buf = xb_malloc((size_t)chunk * (size_t)rec);
    static const char *const label_names[2][2] = {{"label", ""}, {"coarse label", "fine label"}};
    for (int64_t r0 = 0; r0 < f->records && st == XB_OK; r0 += CIFAR_READ_RECS) {
        int64_t m = f->records - r0 < CIFAR_READ_RECS ? f->records - r0 : CIFAR_READ_RECS;
        size_t want = (size_t)m * (size_t)rec, got = 0;
        errno = 0;
        while (got < want) {
            ssize_t k = pread(fd, buf + got, want - got, (off_t)(r0 * rec + (int64_t)got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            got += (size_t)k;
        }
        if (got != want) {
            st = xb_errorf(XB_ERR_IO, "%s: read error at record %" PRId64 ": %s. HINT: check the file (it may have "
                           "changed while being read)", f->path, r0 + (int64_t)(got / (size_t)rec),
                           got < want && errno ? strerror(errno) : "unexpected end of file");
            break;
        }
        for (int64_t i = 0; i < m; i++) {
            const uint8_t *p = buf + i * rec;
            for (int l = 0; l < n_label; l++)
                if (p[l] >= classes[l]) {
                    st = xb_errorf(XB_ERR_FORMAT, "%s: record %" PRId64 " (byte offset %" PRId64 "): %s %d is out "
                                   "of range 0..%d. %s", f->path, r0 + i, (r0 + i) * rec,
                                   label_names[n_label - 1][l], p[l], classes[l] - 1, CIFAR_HINT_CORRUPT);
                    break;
                }
            if (st != XB_OK) break;
            labels[r0 + i] = p[n_label - 1];
            memcpy(images + (r0 + i) * CIFAR_PIX, p + n_label, CIFAR_PIX);
        }
    }
    xb_free(buf);
    close(fd);
    return st;
}

/* Loads the listed files (sizes already checked) into out. */
static xb_status cifar_load_files_(cifar_file *files, int nf, int rec, int n_label, const int *classes,
                                   const char *root, xb_dataset *out) {
    int64_t n = 0;
    for (int i = 0; i < nf; i++) n += files[i].records;
    out->images = xb_malloc((size_t)n * CIFAR_PIX);
    out->labels = xb_malloc((size_t)n * sizeof *out->labels);
    out->n = n;
    out->c = CIFAR_C;
    out->h = out->w = CIFAR_HW;
    out->classes = classes[n_label - 1];
    snprintf(out->path, sizeof out->path, "%s", root);
    int64_t at = 0;
    for (int i = 0; i < nf; i++) {
        xb_status st = cifar_read_file_(&files[i], rec, n_label, classes, out->images + at * CIFAR_PIX,
                                        out->labels + at);
        if (st != XB_OK) { xb_dataset_free(out); return st; }
        at += files[i].records;
    }
    return XB_OK;
}

xb_status xb_cifar10_load(const char *dir, xb_split split, xb_dataset *out) {
    XB_ASSERT(out && (unsigned)split < XB_SPLIT_COUNT);
    memset(out, 0, sizeof *out);
    char root[512];
    xb_status st = xb_data_find(dir, root, sizeof root);
    if (st != XB_OK) return st;
    cifar_file files[5];
    int nf = split == XB_SPLIT_TRAIN ? 5 : 1;
    for (int i = 0; i < nf; i++) {
        if (split == XB_SPLIT_TRAIN) snprintf(files[i].path, sizeof files[i].path, "%s/data_batch_%d.bin", root, i + 1);
        else snprintf(files[i].path, sizeof files[i].path, "%s/test_batch.bin", root);
        if ((st = cifar_check_size_(&files[i], CIFAR10_REC, CIFAR10_PER_FILE, "CIFAR-10")) != XB_OK) return st;
    }
    static const int classes[1] = {10};
    if ((st = cifar_load_files_(files, nf, CIFAR10_REC, 1, classes, root, out)) != XB_OK) return st;
    memcpy(out->mean, cifar10_mean, sizeof out->mean);
    memcpy(out->std, cifar10_std, sizeof out->std);
    return XB_OK;
}

xb_status xb_cifar100_load(const char *dir, xb_split split, xb_dataset *out) {
    XB_ASSERT(out && (unsigned)split < XB_SPLIT_COUNT);
    memset(out, 0, sizeof *out);
    char root[512];
    xb_status st = xb_data_find(dir, root, sizeof root);
    if (st != XB_OK) return st;
    cifar_file f;
    snprintf(f.path, sizeof f.path, "%s/%s", root, split == XB_SPLIT_TRAIN ? "train.bin" : "test.bin");
    if ((st = cifar_check_size_(&f, CIFAR100_REC, 0, "CIFAR-100")) != XB_OK) return st;
    static const int classes[2] = {20, 100};
    if ((st = cifar_load_files_(&f, 1, CIFAR100_REC, 2, classes, root, out)) != XB_OK) return st;
    memcpy(out->mean, cifar100_mean, sizeof out->mean);
    memcpy(out->std, cifar100_std, sizeof out->std);
    return XB_OK;
}

xb_status xb_cifar_load(const char *dir, xb_split split, xb_dataset *out) {
    XB_ASSERT(out);
    memset(out, 0, sizeof *out);
    char root[512];
    xb_status st = xb_data_find(dir, root, sizeof root);
    if (st != XB_OK) return st;
    if (cifar_is_file_(root, "train.bin") || cifar_is_file_(root, "test.bin"))
        return xb_cifar100_load(root, split, out);
    return xb_cifar10_load(root, split, out);
}

void xb_dataset_free(xb_dataset *d) {
    if (!d) return;
    xb_free(d->images);
    xb_free(d->labels);
    memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------------------------------------------ */
/* Batches                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

typedef struct cifar_aug { int dy, dx, flip, cy, cx; } cifar_aug; /* cy < 0: no cutout */

static void cifar_fill_(float *o, int n, float v) {
    for (int i = 0; i < n; i++) o[i] = v;
}

/* One image (c, h, w) bytes -> (c, h, w) floats through the per-channel table, cropped at (dy, dx) from
 * the image zero-padded by CIFAR_PAD, then mirrored when a.flip.  Output (y, x) reads padded pixel
 * (y + dy, flip ? w-1-x+dx : x+dx), i.e. source pixel (y + dy - PAD, ... - PAD). */
static void cifar_image_(const uint8_t *img, int c, int h, int w, const float (*lut)[256], cifar_aug a,
                         int cutout, float *out) {
    for (int ch = 0; ch < c; ch++) {
        const float *L = lut[ch];
        const uint8_t *plane = img + (size_t)ch * h * w;    // (h, w)
        float *o = out + (size_t)ch * h * w;                // (h, w)
        if (a.dy == CIFAR_PAD && a.dx == CIFAR_PAD && !a.flip) {
            for (int j = 0; j < h * w; j++) o[j] = L[plane[j]];
            continue;
        }
        const float zero = L[0];
        int sh = a.dx - CIFAR_PAD; /* horizontal shift into the source */
        for (int y = 0; y < h; y++) {
            float *orow = o + (size_t)y * w;
            int sy = y + a.dy - CIFAR_PAD;
            if (sy < 0 || sy >= h) { cifar_fill_(orow, w, zero); continue; }
            const uint8_t *srow = plane + (size_t)sy * w;
            if (!a.flip) { /* sx = x + sh */
                int x0 = sh < 0 ? -sh : 0, x1 = sh > 0 ? w - sh : w;
                cifar_fill_(orow, x0, zero);
                for (int x = x0; x < x1; x++) orow[x] = L[srow[x + sh]];
                cifar_fill_(orow + x1, w - x1, zero);
            } else { /* sx = w - 1 - x + sh */
                int x0 = sh > 0 ? sh : 0, x1 = sh < 0 ? w + sh : w;
                cifar_fill_(orow, x0, zero);
                for (int x = x0; x < x1; x++) orow[x] = L[srow[w - 1 - x + sh]];
                cifar_fill_(orow + x1, w - x1, zero);
            }
        }
    }
    if (a.cy >= 0) { /* cutout: the square [cy - N/2, cy - N/2 + N) x [cx - N/2, ...), clipped */
        int y0 = a.cy - cutout / 2, x0 = a.cx - cutout / 2, y1 = y0 + cutout, x1 = x0 + cutout;
        if (y0 < 0) y0 = 0;
        if (x0 < 0) x0 = 0;
        if (y1 > h) y1 = h;
        if (x1 > w) x1 = w;
        for (int ch = 0; ch < c; ch++)
            for (int y = y0; y < y1; y++) cifar_fill_(out + ((size_t)ch * h + y) * w + x0, x1 - x0, 0.0f);
    }
}

void xb_dataset_batch(const xb_dataset *d, const int64_t *idx, int n, int augment, int cutout, xb_rng *rng,
                      float *x, int32_t *labels) {
    XB_ASSERT(d && n >= 0 && (n == 0 || (idx && x)));
    XB_ASSERT(d->c >= 1 && d->c <= 3 && d->h > 0 && d->w > 0 && d->images);
    XB_ASSERT(cutout >= 0);
    XB_ASSERT(!(augment || cutout) || rng);
    /* float32 exactly as torchvision: ToTensor (v / 255) then Normalize ((x - mean) / std) */
    float lut[3][256];
    for (int ch = 0; ch < d->c; ch++) {
        XB_ASSERT(d->std[ch] > 0);
        for (int v = 0; v < 256; v++) lut[ch][v] = ((float)v / 255.0f - d->mean[ch]) / d->std[ch];
    }
    const int c = d->c, h = d->h, w = d->w;
    const size_t img = (size_t)c * h * w;
    cifar_aug aug[CIFAR_CHUNK];
    for (int i0 = 0; i0 < n; i0 += CIFAR_CHUNK) {
        int m = n - i0 < CIFAR_CHUNK ? n - i0 : CIFAR_CHUNK;
        for (int i = 0; i < m; i++) { /* serial: the draws' order is fixed whatever the thread count */
            int64_t k = idx[i0 + i];
            XB_ASSERT(k >= 0 && k < d->n);
            if (labels) labels[i0 + i] = d->labels[k];
            aug[i] = (cifar_aug){CIFAR_PAD, CIFAR_PAD, 0, -1, -1};
            if (augment) {
                aug[i].dy = (int)xb_rng_below(rng, 2 * CIFAR_PAD + 1);
                aug[i].dx = (int)xb_rng_below(rng, 2 * CIFAR_PAD + 1);
                aug[i].flip = (int)xb_rng_below(rng, 2);
            }
            if (cutout) {
                aug[i].cy = (int)xb_rng_below(rng, (uint64_t)h);
                aug[i].cx = (int)xb_rng_below(rng, (uint64_t)w);
            }
        }
#pragma omp parallel for schedule(static) if (m >= 32)
        for (int i = 0; i < m; i++)
            cifar_image_(d->images + (size_t)idx[i0 + i] * img, c, h, w, (const float(*)[256])lut, aug[i],
                         cutout, x + (size_t)(i0 + i) * img);
    }
}
