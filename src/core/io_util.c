/* io_util.c -- helpers shared by the file-format readers (npy.c, safetensors.c). */
#include "core/io_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

size_t xb_pread_full(int fd, void *buf, size_t n, int64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

const char *xb_excerpt(const char *s, size_t len, size_t max, char *buf, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < len && i < max && o + 5 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
    }
    if (len > max && o + 4 < n) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o < n ? o : n - 1] = 0;
    return buf;
}
