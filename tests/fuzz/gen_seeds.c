/* gen_seeds.c -- writes small valid inputs for the fuzz harnesses into DIR/{npy,safetensors,cifar}:
 * every .npy dtype and rank (plus version 2.0/3.0 and old-style headers), safetensors maps with
 * metadata, every dtype and empty/0-d tensors, and a few CIFAR-10/100 records behind each mode byte of
 * fuzz_cifar.  Usage: gen_seeds DIR  (the directories must exist). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xbar.h"

static void die(void) {
    fprintf(stderr, "gen_seeds: %s\n", xb_last_error());
    exit(1);
}

static void write_raw(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) { perror(path); exit(1); }
    fclose(f);
}

static xb_tensor pattern_tensor(xb_dtype dt, int ndim, const int64_t *shape, int salt) {
    xb_tensor t = xb_tensor_alloc(dt, ndim, shape);
    uint8_t *p = t.data;
    for (size_t i = 0; i < xb_tensor_nbytes(&t); i++) p[i] = (uint8_t)(i * 31 + (size_t)salt * 7);
    return t;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: gen_seeds DIR\n"); return 2; }
    const char *dir = argv[1];
    char path[1024];
    static const struct { int ndim; int64_t shape[4]; } shapes[] = {
        {0, {0}}, {1, {3}}, {2, {2, 3}}, {3, {1, 2, 2}}, {4, {1, 1, 2, 2}}, {2, {0, 4}},
    };
    int ns = (int)(sizeof shapes / sizeof *shapes);
    /* .npy */
    for (int d = 0; d < XB_DTYPE_COUNT; d++)
        for (int s = 0; s < ns; s++) {
            xb_tensor t = pattern_tensor((xb_dtype)d, shapes[s].ndim, shapes[s].shape, s);
            snprintf(path, sizeof path, "%s/npy/%s-%d.npy", dir, xb_dtype_name((xb_dtype)d), s);
            if (xb_npy_save(path, &t) != XB_OK) die();
            xb_tensor_free(&t);
        }
    /* other header versions and styles numpy (or Python 2) has written */
    static const struct { int major; const char *dict; const char *data; size_t n; } variants[] = {
        {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }      \n", "\0\0\x80\x3f\0\0\0\x40", 8},
        {3, "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }\n", "\1\2\3\4\5\6\7\x08", 8},
        {1, "{\"shape\":(2L,),\"fortran_order\":False,\"descr\":\"|u1\"}\n", "\7\x09", 2},
    };
    for (int i = 0; i < 3; i++) {
        uint8_t b[256];
        size_t hl = strlen(variants[i].dict), pre = variants[i].major == 1 ? 10 : 12;
        memcpy(b, "\x93NUMPY", 6);
        b[6] = (uint8_t)variants[i].major;
        b[7] = 0;
        for (size_t k = 0; k < pre - 8; k++) b[8 + k] = (uint8_t)(hl >> (8 * k));
        memcpy(b + pre, variants[i].dict, hl);
        memcpy(b + pre + hl, variants[i].data, variants[i].n);
        snprintf(path, sizeof path, "%s/npy/variant-%d.npy", dir, i);
        write_raw(path, b, pre + hl + variants[i].n);
    }
    /* safetensors */
    for (int k = 0; k < 4; k++) {
        xb_safetensors st;
        xb_st_init(&st);
        xb_tensor ts[16];
        int nt = 0;
        for (int d = 0; d < XB_DTYPE_COUNT; d++)
            for (int s = 0; s < ns; s++) {
                if ((d + s) % 4 != k) continue;
                char name[64];
                snprintf(name, sizeof name, "layer%d.%s", s, d % 2 ? "weight" : "bias");
                if (xb_st_get(&st, name)) continue;
                ts[nt] = pattern_tensor((xb_dtype)d, shapes[s].ndim, shapes[s].shape, d);
                xb_st_add(&st, name, ts[nt++]);
            }
        if (k % 2 == 0) xb_st_add_meta(&st, "format", "pt");
        if (k == 2) xb_st_add_meta(&st, "model", "resnet20");
        snprintf(path, sizeof path, "%s/safetensors/seed-%d.safetensors", dir, k);
        if (xb_st_save(path, &st) != XB_OK) die();
        xb_st_free(&st);
        for (int i = 0; i < nt; i++) xb_tensor_free(&ts[i]);
    }
    /* cifar: mode byte, then records */
    static uint8_t buf[1 + 3 * 3074];
    for (int mode = 0; mode < 8; mode++) {
        int rec = mode <= 4 ? 3074 : 3073, nrec = 1 + mode % 3;
        buf[0] = (uint8_t)mode;
        for (int r = 0; r < nrec; r++) {
            uint8_t *p = buf + 1 + r * rec;
            if (rec == 3074) { p[0] = (uint8_t)(3 + r); p[1] = (uint8_t)(42 + r); }
            else p[0] = (uint8_t)(7 - r);
            for (int j = 0; j < 3072; j++) p[rec - 3072 + j] = (uint8_t)(j * 13 + r);
        }
        snprintf(path, sizeof path, "%s/cifar/mode-%d.bin", dir, mode);
        write_raw(path, buf, 1 + (size_t)nrec * rec);
    }
    return 0;
}
