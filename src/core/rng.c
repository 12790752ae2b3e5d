/* rng.c -- xoshiro256** random streams, seeded from (seed, stream name) through splitmix64.
 * Not cryptographic.  Each stream is independent of the others for practical purposes. */
#include "xbar.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; s && *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

static void seed_state(xb_rng *r, uint64_t x) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = 0;
    r->spare = 0;
}

void xb_rng_seed(xb_rng *r, uint64_t seed, const char *stream) {
    uint64_t x = seed;
    uint64_t a = splitmix64(&x);
    seed_state(r, a ^ fnv1a(stream));
}

void xb_rng_fork(const xb_rng *r, uint64_t index, xb_rng *out) {
    uint64_t x = r->s[0] ^ (r->s[1] << 1) ^ (r->s[2] << 2) ^ r->s[3];
    uint64_t y = index;
    seed_state(out, splitmix64(&x) ^ splitmix64(&y));
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t xb_rng_u64(xb_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}

double xb_rng_uniform(xb_rng *r) { return (double)(xb_rng_u64(r) >> 11) * 0x1.0p-53; }

uint64_t xb_rng_below(xb_rng *r, uint64_t n) {
    XB_ASSERT(n > 0);
    uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* reject the partial top bucket */
    uint64_t x;
    do x = xb_rng_u64(r); while (x >= lim);
    return x % n;
}

double xb_rng_normal(xb_rng *r) {
    if (r->has_spare) { r->has_spare = 0; return r->spare; }
    double u, v, s;
    do { /* Marsaglia polar method */
        u = 2.0 * xb_rng_uniform(r) - 1.0;
        v = 2.0 * xb_rng_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = sqrt(-2.0 * log(s) / s);
    r->spare = v * f;
    r->has_spare = 1;
    return u * f;
}
