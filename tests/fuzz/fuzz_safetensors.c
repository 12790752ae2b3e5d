/* fuzz_safetensors.c -- libFuzzer harness for xb_st_load: the input is written as a .safetensors file
 * and loaded.  Invariants: a failure names the file with a HINT and leaves an empty map; a success gives
 * unique names, well-formed tensors that fit in the file, and a map that saves and reloads identically
 * (names, order, tensors, metadata). */
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_dir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char in[300], out[300];
    fuzz_path(in, sizeof in, "in.safetensors");
    fuzz_path(out, sizeof out, "out.safetensors");
    fuzz_write(in, data, size);
    xb_safetensors st;
    xb_status rc = xb_st_load(in, &st);
    if (rc != XB_OK) {
        fuzz_check_error(rc, in);
        FUZZ_CHECK(st.n == 0 && st.e == NULL && st.n_meta == 0, "failed load left entries");
        return 0;
    }
    size_t total = 0;
    for (int i = 0; i < st.n; i++) {
        fuzz_check_tensor(&st.e[i].t);
        total += xb_tensor_nbytes(&st.e[i].t);
        FUZZ_CHECK(xb_st_get(&st, st.e[i].name) == &st.e[i].t, "duplicate or unreachable name '%s'", st.e[i].name);
    }
    FUZZ_CHECK(total + 8 <= size, "%zu data bytes from a %zu-byte file", total, size);
    for (int i = 0; i < st.n_meta; i++)
        FUZZ_CHECK(xb_st_meta(&st, st.meta_key[i]) == st.meta_val[i], "duplicate metadata key");
    rc = xb_st_save(out, &st);
    FUZZ_CHECK(rc == XB_OK, "save failed: %s", xb_last_error());
    xb_safetensors again;
    rc = xb_st_load(out, &again);
    FUZZ_CHECK(rc == XB_OK, "reload failed: %s", xb_last_error());
    FUZZ_CHECK(again.n == st.n && again.n_meta == st.n_meta, "counts differ");
    for (int i = 0; i < st.n; i++) {
        FUZZ_CHECK(strcmp(again.e[i].name, st.e[i].name) == 0, "order differs at %d", i);
        FUZZ_CHECK(fuzz_same_tensor(&again.e[i].t, &st.e[i].t), "tensor '%s' differs", st.e[i].name);
    }
    for (int i = 0; i < st.n_meta; i++) {
        const char *v = xb_st_meta(&again, st.meta_key[i]);
        FUZZ_CHECK(v && strcmp(v, st.meta_val[i]) == 0, "metadata '%s' differs", st.meta_key[i]);
    }
    xb_st_free(&again);
    xb_st_free(&st);
    return 0;
}
