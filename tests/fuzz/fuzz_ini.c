/* fuzz_ini.c -- libFuzzer harness for the INI parser (xb_ini_parse_string, src/cfg/ini.c).  The input is
 * the config text (not NUL-terminated: the parser gets the exact length).  On success every key is read
 * through every getter (int, double, bool, string with and without choices, raw), absent keys are looked
 * up as required and optional, then unused-key checking runs and everything is freed. */
#include <float.h>
#include <limits.h>

#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    return 0;
}

static void check_msg_(xb_status st) {
    if (st == XB_OK) return;
    FUZZ_CHECK(st > XB_OK && st < XB_STATUS_COUNT, "status %d", (int)st);
    FUZZ_CHECK(strstr(xb_last_error(), "fuzz.cfg") != NULL, "message does not name the file: %s", xb_last_error());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    xb_ini ini;
    xb_status st = xb_ini_parse_string((const char *)data, size, "fuzz.cfg", &ini);
    check_msg_(st);
    if (st != XB_OK) return 0;
    static const char *const choices[] = {"relu", "true", "torch", "0", NULL};
    for (int i = 0; i < ini.n; i++) {
        xb_ini_section *s = &ini.sec[i];
        FUZZ_CHECK(s->type && s->name, "section %d without type or name", i);
        for (int j = 0; j < s->n; j++) {
            const char *key = s->kv[j].key;
            long l;
            double dv;
            int b, idx, line;
            char buf[64];
            check_msg_(xb_ini_int(&ini, s, key, 1, 0, LONG_MIN, LONG_MAX, &l));
            check_msg_(xb_ini_int(&ini, s, key, 0, 3, -5, 5, &l));
            check_msg_(xb_ini_double(&ini, s, key, 1, 0, -DBL_MAX, DBL_MAX, &dv));
            check_msg_(xb_ini_double(&ini, s, key, 0, 0.5, 0, 1, &dv));
            check_msg_(xb_ini_bool(&ini, s, key, 1, 0, &b));
            check_msg_(xb_ini_str(&ini, s, key, 1, NULL, NULL, buf, sizeof buf, &idx));
            check_msg_(xb_ini_str(&ini, s, key, 0, "relu", choices, buf, sizeof buf, &idx));
            const char *raw = xb_ini_raw(s, key, &line);
            FUZZ_CHECK(raw != NULL, "key '%s' not found by xb_ini_raw", key);
        }
        long l;
        char buf[16];
        int idx;
        check_msg_(xb_ini_int(&ini, s, "fuzz_absent_key", 1, 0, 0, 1, &l));
        check_msg_(xb_ini_int(&ini, s, "fuzz_absent_key", 0, 1, 0, 1, &l));
        check_msg_(xb_ini_str(&ini, s, "fuzz_absent_key", 0, "torch", choices, buf, sizeof buf, &idx));
    }
    FUZZ_CHECK(xb_ini_check_unused(&ini) == XB_OK, "every key was read but check_unused failed: %s", xb_last_error());
    xb_ini_free(&ini);
    return 0;
}
