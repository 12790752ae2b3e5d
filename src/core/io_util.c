/* io_util.c -- helpers shared by the file-format readers and writers (npy.c, safetensors.c). */
#include "core/io_util.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
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

xb_status xb_write_atomic(const char *path, int n, const void *const *bufs, const size_t *lens) {
    size_t plen = strlen(path);
    char *tmp = xb_malloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        xb_status st = xb_errorf(XB_ERR_IO, "%s: cannot create %s: %s. HINT: check that the directory exists "
                                 "and is writable", path, tmp, strerror(errno));
        xb_free(tmp);
        return st;
    }
    int ok = 1;
    for (int i = 0; i < n && ok; i++) ok = lens[i] == 0 || fwrite(bufs[i], 1, lens[i], f) == lens[i];
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (fclose(f) != 0 && ok) { ok = 0; err = errno; }
    if (ok && rename(tmp, path) != 0) { ok = 0; err = errno; }
    xb_status st = XB_OK;
    if (!ok) {
        unlink(tmp);
        st = xb_errorf(XB_ERR_IO, "%s: write failed: %s. HINT: check free disk space and permissions", path,
                       strerror(err));
    } else {
        /* make the rename itself durable (dirname may modify its argument: give it the temp copy) */
        memcpy(tmp, path, plen + 1);
        int dfd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) { (void)fsync(dfd); close(dfd); }
    }
    xb_free(tmp);
    return st;
}

xb_status xb_json_load(const char *path, const char *what, const char *hint, cJSON **root) {
    *root = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return xb_errorf(XB_ERR_IO, "%s: cannot open the %s: %s. HINT: %s", path, what, strerror(errno), hint);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *t = realloc(buf, cap * 2);
        if (!t) { free(buf); buf = NULL; break; }
        buf = t;
        cap *= 2;
    }
    const int err = ferror(f);
    fclose(f);
    if (!buf) return xb_errorf(XB_ERR_NOMEM, "%s: no memory to read the %s", path, what);
    if (err) { free(buf); return xb_errorf(XB_ERR_IO, "%s: read error in the %s", path, what); }
    buf[n] = 0;
    *root = cJSON_ParseWithLength(buf, n);
    free(buf);
    if (!*root) return xb_errorf(XB_ERR_FORMAT, "%s: the %s is not JSON. HINT: %s", path, what, hint);
    return XB_OK;
}

xb_status xb_json_save(const char *path, const cJSON *root, const char *what) {
    char *txt = cJSON_Print(root);
    if (!txt) return xb_errorf(XB_ERR_NOMEM, "no memory to write the %s", what);
    const void *bufs[1] = {txt};
    size_t lens[1] = {strlen(txt)};
    xb_status st = xb_write_atomic(path, 1, bufs, lens);
    free(txt);
    return st;
}
