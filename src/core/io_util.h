/* io_util.h -- small helpers the file-format readers share (not public API). */
#ifndef XB_IO_UTIL_H
#define XB_IO_UTIL_H
#include <stddef.h>
#include <stdint.h>

/* Reads up to n bytes at offset off, retrying short reads and EINTR; returns the bytes read
 * (fewer than n only at end of file or on an error). */
size_t xb_pread_full(int fd, void *buf, size_t n, int64_t off);
/* A printable excerpt of s for messages: at most max characters, non-printables as \xNN, "..." when
 * cut; written into buf (size n), which is returned. */
const char *xb_excerpt(const char *s, size_t len, size_t max, char *buf, size_t n);
#endif
