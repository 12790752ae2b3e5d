/* fuzz_npy.c -- libFuzzer harness for xb_npy_load: the input is written as a .npy file and loaded.
 * Invariants beyond "no crash, no leak, no UB": a failure names the file with a HINT; a success gives a
 * well-formed tensor whose size matches the file, and that saves and reloads bit-exactly. */
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_dir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char in[300], out[300];
    fuzz_path(in, sizeof in, "in.npy");
    fuzz_path(out, sizeof out, "out.npy");
    fuzz_write(in, data, size);
    xb_tensor t;
    xb_status st = xb_npy_load(in, &t);
    if (st != XB_OK) {
        fuzz_check_error(st, in);
        FUZZ_CHECK(t.data == NULL, "failed load left data");
        return 0;
    }
    fuzz_check_tensor(&t);
    FUZZ_CHECK(xb_tensor_nbytes(&t) <= size, "%zu bytes of data from a %zu-byte file", xb_tensor_nbytes(&t), size);
    FUZZ_CHECK(size >= 10 && memcmp(data, "\x93NUMPY", 6) == 0, "accepted a file without the magic");
    /* the data is the tail of the file */
    if (xb_tensor_nbytes(&t))
        FUZZ_CHECK(memcmp(t.data, data + size - xb_tensor_nbytes(&t), xb_tensor_nbytes(&t)) == 0, "data differs");
    st = xb_npy_save(out, &t);
    FUZZ_CHECK(st == XB_OK, "save failed: %s", xb_last_error());
    xb_tensor u;
    st = xb_npy_load(out, &u);
    FUZZ_CHECK(st == XB_OK, "reload failed: %s", xb_last_error());
    FUZZ_CHECK(fuzz_same_tensor(&t, &u), "round trip differs");
    xb_tensor_free(&t);
    xb_tensor_free(&u);
    return 0;
}
