/* io_util.h -- small helpers the file-format readers share (not public API). */
#ifndef XB_IO_UTIL_H
#define XB_IO_UTIL_H
#include <stddef.h>
#include <stdint.h>

#include "xbar.h"

/* Reads up to n bytes at offset off, retrying short reads and EINTR; returns the bytes read
 * (fewer than n only at end of file or on an error). */
size_t xb_pread_full(int fd, void *buf, size_t n, int64_t off);
/* A printable excerpt of s for messages: at most max characters, non-printables as \xNN, "..." when
 * cut; written into buf (size n), which is returned. */
const char *xb_excerpt(const char *s, size_t len, size_t max, char *buf, size_t n);
/* Writes the concatenation of n parts (bufs[i], lens[i] bytes; a part of length 0 may be NULL) to
 * path atomically and durably: into path.tmp, fsync, rename over path, fsync of the directory. A
 * reader sees the old file or the whole new one, never a torn one; on failure path.tmp is removed
 * and path is left as it was. */
xb_status xb_write_atomic(const char *path, int n, const void *const *bufs, const size_t *lens);
/* A run's JSON state file (ad-state.json, prune-state.json, wct.json): the whole of path parsed into *root
 * (cJSON_Delete it).  A missing file is XB_ERR_IO naming `what` and hint; a file that is not JSON,
 * XB_ERR_FORMAT. */
struct cJSON;
xb_status xb_json_load(const char *path, const char *what, const char *hint, struct cJSON **root);
/* root printed and written with xb_write_atomic (root is not freed). */
xb_status xb_json_save(const char *path, const struct cJSON *root, const char *what);
#endif
