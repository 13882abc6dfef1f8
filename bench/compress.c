/*
 * Section 6: what opt-in compression (tc_options.compress_min_bytes) gives
 * and costs: for JSON-like values of 1 KiB, 64 KiB and 1 MiB, the ratio of
 * the value to what L2 stores, and the time to encode and decode it, taken
 * through the library's own framing (lib/compress.c, zstd level 3) on one
 * thread. Then one L2 round trip of the 64 KiB value, compressed and not,
 * through tc_set/tc_get from another instance (the saving on the wire
 * against the CPU spent).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cache.h"
#include "compress.h"

/* Records as an API returns them: ids, names, flags, numbers; fields repeat
 * and values vary, as in real JSON. Deterministic. */
static char *json_like(size_t n, uint64_t seed)
{
    char *s = malloc(n + 1);
    bench_rng r;
    size_t off = 0;
    static const char *const tags[] = {"admin", "editor", "viewer", "guest"};
    rng_seed(&r, seed);
    if (!s)
        return NULL;
    while (off < n) {
        char rec[256];
        uint64_t x = rng_next(&r);
        int k = snprintf(rec, sizeof(rec),
                         "{\"id\":%llu,\"email\":\"user%llu@example.com\","
                         "\"role\":\"%s\",\"active\":%s,\"score\":%.2f,"
                         "\"created\":\"2026-%02u-%02uT%02u:%02u:00Z\"},",
                         (unsigned long long)(x % 1000000),
                         (unsigned long long)(x >> 20) % 100000,
                         tags[x >> 62], (x >> 40) & 1 ? "true" : "false",
                         rng_unit(&r) * 100, (unsigned)(x >> 8) % 12 + 1,
                         (unsigned)(x >> 12) % 28 + 1,
                         (unsigned)(x >> 16) % 24, (unsigned)(x >> 24) % 60);
        size_t take = (size_t)k < n - off ? (size_t)k : n - off;
        memcpy(s + off, rec, take);
        off += take;
    }
    s[n] = '\0';
    return s;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void one_size(tc_cache *c, const char *tag, size_t n, size_t iters)
{
    char *val = json_like(n, 42 + n);
    double *enc = malloc(iters * sizeof(*enc)), *dec =
                                                    malloc(iters * sizeof(*dec));
    size_t stored = 0;
    char key[64];
    if (!val || !enc || !dec) {
        bench_fail();
        goto out;
    }
    for (size_t i = 0; i < iters; i++) {
        const void *z, *d;
        size_t zlen, dlen;
        void *zown, *down;
        uint64_t t0 = bench_now_ns(), t1, t2;
        if (tc__z_encode(c, val, n, &z, &zlen, &zown) != TC_OK) {
            bench_fail();
            goto out;
        }
        t1 = bench_now_ns();
        if (tc__z_decode(c, z, zlen, &d, &dlen, &down) != TC_OK ||
            dlen != n || memcmp(d, val, n)) {
            fprintf(stderr, "compress: round trip failed at %s\n", tag);
            bench_fail();
            free(zown);
            goto out;
        }
        t2 = bench_now_ns();
        enc[i] = (double)(t1 - t0) / 1000;
        dec[i] = (double)(t2 - t1) / 1000;
        stored = zlen;
        free(zown);
        free(down);
    }
    {
        double ratio = (double)n / (double)stored;
        double e = median(enc, iters), d = median(dec, iters);
        printf("  %-6s %9zu B -> %8zu B  ratio %5.2fx  compress %9.1f us"
               "  decompress %8.1f us  (%.0f / %.0f MB/s)\n",
               tag, n, stored, ratio, e, d, (double)n / e, (double)n / d);
        snprintf(key, sizeof(key), "zstd_ratio_%s", tag);
        res_num(key, round(ratio * 100) / 100);
        snprintf(key, sizeof(key), "zstd_compress_us_%s", tag);
        res_num(key, round(e * 10) / 10);
        snprintf(key, sizeof(key), "zstd_decompress_us_%s", tag);
        res_num(key, round(d * 10) / 10);
    }
out:
    free(val);
    free(enc);
    free(dec);
}

/* Median tc_set + cold tc_get (another instance, L1 dropped each time) of
 * a 64 KiB value, with compression at `min` (0: off). */
static double l2_round_trip_us(const bench_cfg *cfg, size_t min, size_t iters)
{
    tc_options o;
    tc_cache *a, *b;
    char *val = json_like(65536, 7);
    double *t = malloc(iters * sizeof(*t)), res = NAN;
    bench_cache_options(cfg, &o);
    o.coherence = TC_COHERENCE_NONE;
    o.compress_min_bytes = min;
    a = bench_cache_create(&o);
    b = bench_cache_create(&o);
    if (!a || !b || !val || !t) {
        bench_fail();
        goto out;
    }
    for (size_t i = 0; i < iters; i++) {
        tc_value *v = NULL;
        uint64_t t0 = bench_now_ns();
        if (tc_set(a, "zb:64k", 6, val, 65536, 60000) != TC_OK ||
            tc_invalidate_all(b) != TC_OK)
            break;
        t0 = bench_now_ns();
        if (tc_get(b, "zb:64k", 6, &v) != TC_OK)
            break;
        t[i] = (double)(bench_now_ns() - t0) / 1000;
        tc_value_release(v);
        if (i + 1 == iters)
            res = median(t, iters);
    }
    if (isnan(res)) {
        fprintf(stderr, "compress: L2 round trip failed: %s\n", tc_errmsg());
        bench_fail();
    }
    tc_del(a, "zb:64k", 6);
out:
    tc_cache_destroy(a);
    tc_cache_destroy(b);
    free(val);
    free(t);
    return res;
}

void bench_compress(const bench_cfg *cfg)
{
    tc_options o;
    tc_cache *c;
    double off, on;
    size_t q = cfg->quick ? 10 : 1;
    printf("\n6. compression (zstd level 3, JSON-like values, one thread, "
           "median)\n");
    bench_cache_options(cfg, &o);
    o.coherence = TC_COHERENCE_NONE;
    o.compress_min_bytes = 1;
    o.max_value_bytes = 2u << 20;
    if (!(c = bench_cache_create(&o))) {
        bench_fail();
        return;
    }
    one_size(c, "1k", 1024, 2000 / q);
    one_size(c, "64k", 65536, 300 / q);
    one_size(c, "1m", 1u << 20, 30 / q + 3);
    tc_cache_destroy(c);
    /* tc_invalidate_all on b is needed for a cold read; it costs b a round
     * trip that is not timed. */
    off = l2_round_trip_us(cfg, 0, 200 / q);
    on = l2_round_trip_us(cfg, 1024, 200 / q);
    printf("  tc_get of a 64 KiB value from L2 (cold L1): %.1f us plain, "
           "%.1f us compressed\n", off, on);
    res_num("zstd_l2_get_us_64k_plain", round(off * 10) / 10);
    res_num("zstd_l2_get_us_64k", round(on * 10) / 10);
}
