/* ecfg.c -- the [arch] and [energy] sections of a hardware config: one table of keys (section, name, type,
 * default, range) drives the defaults, the strict parse, the checks and both printings.  The defaults are
 * ISAAC's 32 nm components (Shafiee et al., ISCA 2016, its Table 6 as Accelergy's library derives per-operation
 * figures from it), the ADC's scaling per bit from the same library's Saberi et al. (2011) table, and
 * Horowitz (ISSCC 2014) for digital arithmetic; docs/energy.md has each source. */
#include "xb_xbar.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_D, K_I, K_B } ktype_;
typedef struct {
    const char *sec, *key;
    ktype_ t;
    size_t off;
    double def, lo, hi;
} ekey_;

#define D_(s, k, d, lo, hi) {s, #k, K_D, offsetof(xb_energy_cfg, k), d, lo, hi}
#define I_(s, k, d, lo, hi) {s, #k, K_I, offsetof(xb_energy_cfg, k), d, lo, hi}
#define B_(s, k, d) {s, #k, K_B, offsetof(xb_energy_cfg, k), d, 0, 1}
/* [pe] and [tim]: the key is the field without its section's prefix */
#define SD_(s, k, d, lo, hi) {#s, #k, K_D, offsetof(xb_energy_cfg, s##_##k), d, lo, hi}
#define SI_(s, k, d, lo, hi) {#s, #k, K_I, offsetof(xb_energy_cfg, s##_##k), d, lo, hi}
#define SB_(s, k, d) {#s, #k, K_B, offsetof(xb_energy_cfg, s##_##k), d, 0, 1}

static const ekey_ keys_[] = {
    D_("arch", feature_size_m, 32e-9, 1e-10, 1e-5),
    D_("arch", cell_area_f2, 4, 1, 1e4),
    I_("arch", adc_share_cols, 8, 1, 4096),
    B_("arch", pipeline, 0),
    B_("arch", zero_skip, 0),
    I_("arch", word_bits, 16, 1, 64),
    D_("arch", digital_ops_per_s, 3.072e11, 1, 1e18),
    D_("energy", read_time_s, 100e-9, 1e-12, 1),
    D_("energy", adc_energy_j, 1.67e-12, 0, 1e-6),
    D_("energy", adc_area_m2, 1200e-12, 0, 1e-3),
    D_("energy", adc_time_s, 1.0 / 1.2e9, 0, 1),
    I_("energy", adc_ref_bits, 8, 1, 16),
    D_("energy", adc_energy_per_bit, 1.2, 1, 4),
    D_("energy", adc_area_per_bit, 1.4, 1, 4),
    D_("energy", dac_energy_j, 0.41667e-12, 0, 1e-6),
    D_("energy", dac_area_m2, 0.166e-12, 0, 1e-3),
    D_("energy", dac_per_bit, 2, 1, 4),
    D_("energy", sense_energy_j, 9.77e-16, 0, 1e-6),
    D_("energy", sense_area_m2, 0.039e-12, 0, 1e-3),
    D_("energy", shift_add_energy_j, 0.021e-12, 0, 1e-6),
    D_("energy", shift_add_area_m2, 60e-12, 0, 1e-3),
    D_("energy", accumulate_energy_j, 0.021e-12, 0, 1e-6),
    D_("energy", buffer_energy_j_per_bit, 0.0799e-12, 0, 1e-6),
    D_("energy", digital_mac_energy_j, 4.6e-12, 0, 1e-6),
    D_("energy", digital_op_energy_j, 0.9e-12, 0, 1e-6),
    D_("energy", input_density, 0.5, 0, 1),
    SI_(pe, units, 16, 1, 4096),
    SI_(pe, filters_per_unit, 16, 1, 4096),
    SI_(pe, lanes, 16, 1, 256),
    SD_(pe, clock_hz, 1e9, 1e3, 1e12),
    SD_(pe, mac_energy_j, 1.7e-12, 0, 1e-6),
    SD_(pe, static_power_w, 0, 0, 1e3),
    SI_(pe, offset_bits, 4, 0, 32),
    SB_(pe, skip_zeros, 1),
    SI_(tim, rows_per_access, 16, 1, 4096),
    SI_(tim, adc_bits, 5, 1, 16),
    SI_(tim, tile_cols, 256, 1, 65536),
    SI_(tim, tiles, 32, 1, 1 << 20),
    SD_(tim, access_time_s, 2.2996e-9, 1e-12, 1),
    SD_(tim, cell_energy_j, 8.0416e-15, 0, 1e-6),
    SD_(tim, adc_energy_j, 6.2e-14, 0, 1e-6),
    SD_(tim, tile_area_m2, 6.125e-8, 0, 1),
    SD_(tim, count_nonlinearity, 0, 0, 1),
    SD_(tim, cell_sigma, 0, 0, 1),
};
#define NKEYS_ ((int)(sizeof keys_ / sizeof *keys_))

static double get_(const xb_energy_cfg *e, const ekey_ *k) {
    const char *p = (const char *)e + k->off;
    return k->t == K_D ? *(const double *)(const void *)p : (double)*(const int *)(const void *)p;
}
static void set_(xb_energy_cfg *e, const ekey_ *k, double v) {
    char *p = (char *)e + k->off;
    if (k->t == K_D) *(double *)(void *)p = v;
    else *(int *)(void *)p = (int)v;
}

xb_energy_cfg xb_energy_cfg_default(void) {
    xb_energy_cfg e;
    memset(&e, 0, sizeof e);
    for (int i = 0; i < NKEYS_; i++) set_(&e, &keys_[i], keys_[i].def);
    return e;
}

xb_status xb_energy_cfg_parse(xb_ini *ini, xb_ini_section *arch, xb_ini_section *energy, xb_ini_section *pe,
                              xb_ini_section *tim, xb_energy_cfg *out) {
    for (int i = 0; i < NKEYS_; i++) {
        const ekey_ *k = &keys_[i];
        xb_ini_section *s = !strcmp(k->sec, "arch") ? arch : !strcmp(k->sec, "energy") ? energy
                            : !strcmp(k->sec, "pe") ? pe : tim;
        if (!s) continue;
        double v = get_(out, k);
        xb_status st = XB_OK;
        if (k->t == K_D) {
            st = xb_ini_double(ini, s, k->key, 0, v, k->lo, k->hi, &v);
        } else if (k->t == K_I) {
            long l;
            st = xb_ini_int(ini, s, k->key, 0, (long)v, (long)k->lo, (long)k->hi, &l);
            v = (double)l;
        } else {
            int b;
            st = xb_ini_bool(ini, s, k->key, 0, (int)v, &b);
            v = b;
        }
        if (st) return st;
        set_(out, k, v);
    }
    return XB_OK;
}

xb_status xb_energy_cfg_validate(const xb_energy_cfg *e, const char *path) {
    for (int i = 0; i < NKEYS_; i++) {
        const ekey_ *k = &keys_[i];
        const double v = get_(e, k);
        if (!(v >= k->lo && v <= k->hi))
            return xb_errorf(XB_ERR_CONFIG, "%s: [%s] %s = %g is outside %g .. %g. HINT: docs/energy.md gives each key's "
                             "unit and default", path, k->sec, k->key, v, k->lo, k->hi);
    }
    return XB_OK;
}

void xb_energy_cfg_print(const xb_energy_cfg *e, FILE *f, int json) {
    const char *cur = "";
    for (int i = 0; i < NKEYS_; i++) {
        const ekey_ *k = &keys_[i];
        const double v = get_(e, k);
        if (strcmp(cur, k->sec)) {
            if (json) fprintf(f, "%s\"%s\":{", cur[0] ? "}," : "", k->sec);
            else fprintf(f, "\n[%s]\n", k->sec);
            cur = k->sec;
        } else if (json) {
            fputc(',', f);
        }
        if (json) fprintf(f, "\"%s\":", k->key);
        else fprintf(f, "%s = ", k->key);
        if (k->t == K_B) fprintf(f, "%s", v != 0 ? "true" : "false");
        else if (k->t == K_I) fprintf(f, "%d", (int)v);
        else { /* the shortest of %.9g and %.17g that reads back to the same double */
            char b[40];
            snprintf(b, sizeof b, "%.9g", v);
            if (strtod(b, NULL) != v) snprintf(b, sizeof b, "%.17g", v);
            fputs(b, f);
        }
        if (!json) fputc('\n', f);
    }
    if (json) fputc('}', f);
}
