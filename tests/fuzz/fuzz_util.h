/* fuzz_util.h -- shared bits of the libFuzzer harnesses: a private temp directory (tmpfs when there is
 * one) that holds the input written as a file (xbar's loaders take paths), and invariant checks that
 * turn a wrong-but-not-crashing result into a crash libFuzzer records. */
#ifndef XB_FUZZ_UTIL_H
#define XB_FUZZ_UTIL_H
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xbar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                             \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                        \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static char fuzz_dir_[256];

static inline void fuzz_cleanup_(void) {
    char cmd[300];
    if (!fuzz_dir_[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", fuzz_dir_);
}

/* The harness's temp directory, made on first use (in /dev/shm when it exists: no disk traffic). */
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_[0]) {
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "/dev/shm/xbar-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir_)) {
            snprintf(fuzz_dir_, sizeof fuzz_dir_, "/tmp/xbar-fuzz-XXXXXX");
            if (!mkdtemp(fuzz_dir_)) { perror("mkdtemp"); abort(); }
        }
        atexit(fuzz_cleanup_);
    }
    return fuzz_dir_;
}

static inline char *fuzz_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", fuzz_dir(), name);
    return buf;
}

/* Replaces the file at path with data. */
static inline void fuzz_write(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) { perror(path); abort(); }
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(fd, (const char *)data + done, n - done);
        if (k <= 0) { perror(path); abort(); }
        done += (size_t)k;
    }
    close(fd);
}

/* A failure must be reported with a message that names the file and suggests a fix. */
static inline void fuzz_check_error(xb_status st, const char *path) {
    const char *msg = xb_last_error();
    FUZZ_CHECK(st > XB_OK && st < XB_STATUS_COUNT, "status %d", (int)st);
    FUZZ_CHECK(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
    FUZZ_CHECK(strstr(msg, "HINT:") != NULL, "message has no HINT: %s", msg);
}

static inline int fuzz_same_tensor(const xb_tensor *a, const xb_tensor *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int i = 0; i < XB_MAX_DIMS; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    size_t n = xb_tensor_nbytes(a);
    return n == 0 || memcmp(a->data, b->data, n) == 0;
}

/* Loaded tensors are well formed: rank 0..4, unused dims 1, non-negative dims, owned data. */
static inline void fuzz_check_tensor(const xb_tensor *t) {
    FUZZ_CHECK((unsigned)t->dtype < XB_DTYPE_COUNT, "dtype %d", (int)t->dtype);
    FUZZ_CHECK(t->ndim >= 0 && t->ndim <= XB_MAX_DIMS, "ndim %d", t->ndim);
    for (int i = 0; i < XB_MAX_DIMS; i++)
        FUZZ_CHECK(i < t->ndim ? t->shape[i] >= 0 : t->shape[i] == 1, "shape[%d] = %lld", i,
                   (long long)t->shape[i]);
    FUZZ_CHECK(t->owner == 1 && t->data != NULL, "owner %d data %p", t->owner, t->data);
}
#endif
