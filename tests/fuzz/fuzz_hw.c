/* fuzz_hw.c -- libFuzzer harness for the hardware config parser (xb_hw_parse_string, src/xbar/hw.c, and its
 * [arch] [energy] [pe] [tim] sections, src/energy/ecfg.c).  The input is the config text.  A config that parses
 * must validate (parse validates), print in both forms, and parse back from its INI print to the same energy
 * settings; a refused one must fail with a message that names the file. */
#include "fuzz_util.h"
#include "xb_xbar.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    xb_hw h;
    xb_status st = xb_hw_parse_string((const char *)data, size, "fuzz.cfg", &h);
    if (st != XB_OK) {
        FUZZ_CHECK(st > XB_OK && st < XB_STATUS_COUNT, "status %d", (int)st);
        FUZZ_CHECK(strstr(xb_last_error(), "fuzz.cfg") != NULL, "message does not name the file: %s", xb_last_error());
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    FUZZ_CHECK(f != NULL, "open_memstream");
    xb_hw_print(&h, f, 1);
    fclose(f);
    free(buf);
    f = open_memstream(&buf, &len);
    FUZZ_CHECK(f != NULL, "open_memstream");
    xb_hw_print(&h, f, 0);
    fclose(f);
    xb_hw back;
    st = xb_hw_parse_string(buf, len, "fuzz.cfg", &back);
    FUZZ_CHECK(st == XB_OK, "the printed config does not parse: %s", xb_last_error());
    FUZZ_CHECK(memcmp(&back.energy, &h.energy, sizeof h.energy) == 0, "the energy settings do not round-trip");
    free(buf);
    return 0;
}
