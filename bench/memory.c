/*
 * Section 4: bytes an L1 entry costs beyond its key and value.
 *
 * Runs first, before any other section has grown and freed the heap, so
 * that new entries land on fresh pages and show up in RSS. Two fills:
 *   public: a real cache (coherence none, L2 up) reads 100k keys (16 B keys,
 *           64 B values, preloaded in L2) through tc_mget, which fills L1
 *           exactly as tc_get does. This is the headline figure.
 *   direct: tc__l1_fill() into a bare L1 store, without the cache around it.
 * RSS (/proc/self/statm) is the figure the issue asks for; glibc's
 * mallinfo2() in-use bytes are shown next to it as a cross-check, since RSS
 * moves by whole pages.
 */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "l1.h"

#define MEM_KLEN 16
#define MEM_VLEN 64

typedef struct mem_probe {
    size_t rss;
    size_t heap; /* malloc in-use bytes: arena + mmapped chunks */
} mem_probe;

static mem_probe probe(void)
{
    malloc_trim(0);
    struct mallinfo2 mi = mallinfo2();
    mem_probe p = {bench_rss_bytes(), mi.uordblks + mi.hblkhd};
    return p;
}

/* Fill through the public API. Returns entries added, 0 on failure. */
static size_t fill_public(const bench_cfg *cfg, size_t n, mem_probe *before,
                          mem_probe *after)
{
    tc_options o;
    bench_cache_options(cfg, &o);
    o.coherence = TC_COHERENCE_NONE;
    o.l1_max_entries = n * 2;
    o.l1_max_bytes = n * 1024;
    tc_cache *c = bench_cache_create(&o);
    if (!c)
        return 0;
    char(*keys)[BENCH_KEY_LEN + 1] = malloc(n * sizeof *keys);
    const void *kp[256];
    size_t kl[256];
    tc_value *out[256];
    tc_result res[256];
    size_t added = 0;
    int err = !keys;
    for (size_t i = 0; i < n && !err; i++)
        bench_key(keys[i], 'm', i);
    /* The first batch warms the connection, reply buffers and the first
     * table pages, and is counted on the "before" side. */
    tc_stats s0, s1;
    for (size_t b = 0; b < n && !err; b += 256) {
        size_t m = n - b < 256 ? n - b : 256;
        for (size_t j = 0; j < m; j++) {
            kp[j] = keys[b + j];
            kl[j] = BENCH_KEY_LEN;
        }
        tc_result r = tc_mget(c, m, kp, kl, out, res);
        for (size_t j = 0; j < m; j++) {
            if (res[j] != TC_OK || !out[j] || tc_value_len(out[j]) != MEM_VLEN)
                err = 1;
            tc_value_release(out[j]);
        }
        if (r != TC_OK || err) {
            fprintf(stderr, "tc-bench: tc_mget: %s (%s)\n", tc_strerror(r),
                    tc_errmsg());
            err = 1;
        }
        if (b == 0) {
            tc_cache_stats(c, &s0);
            *before = probe();
        }
    }
    if (!err) {
        *after = probe();
        tc_cache_stats(c, &s1);
        added = (size_t)(s1.l1_entries - s0.l1_entries);
        if (s1.l1_entries < n)
            fprintf(stderr, "tc-bench: warning: L1 kept %llu of %zu entries\n",
                    (unsigned long long)s1.l1_entries, n);
    }
    free(keys);
    tc_cache_destroy(c);
    return added;
}

/* Fill a bare L1 store. Returns entries added, 0 on failure. */
static size_t fill_direct(size_t n, mem_probe *before, mem_probe *after)
{
    char key[BENCH_KEY_LEN + 1], val[MEM_VLEN];
    tc__l1 *l1 = tc__l1_create((size_t)1 << 40, n * 2, 32);
    if (!l1)
        return 0;
    *before = probe();
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        bench_key(key, 'd', i);
        bench_value(val, MEM_VLEN, i);
        uint64_t h = tc__hash(key, MEM_KLEN);
        if (tc__l1_fill(l1, h, key, MEM_KLEN, val, MEM_VLEN, UINT64_MAX,
                        tc__l1_gen(l1, h), 0, NULL) == TC__FILL_INSERTED)
            added++;
    }
    *after = probe();
    tc__l1_destroy(l1);
    return added;
}

static double per_entry(size_t before, size_t after, size_t n)
{
    if (!n || after < before)
        return NAN;
    return (double)(after - before) / (double)n - (MEM_KLEN + MEM_VLEN);
}

void bench_memory(const bench_cfg *cfg)
{
    size_t n = cfg->quick ? 20000 : 100000;
    printf("\n4. memory per L1 entry beyond key (%d B) and value (%d B), "
           "%zu entries\n",
           MEM_KLEN, MEM_VLEN, n);
    printf("   %-46s %12s %14s\n", "", "from RSS", "from malloc");
    fflush(stdout);
    mem_probe b, a;
    if (bench_l2_fill(cfg, 'm', n + 256, MEM_VLEN) == 0) {
        size_t added = fill_public(cfg, n + 256, &b, &a);
        if (!added)
            bench_fail();
        double rss = per_entry(b.rss, a.rss, added),
               heap = per_entry(b.heap, a.heap, added);
        printf("   %-46s %10.0f B %12.0f B\n",
               "cache: tc_mget fills L1 (coherence none)", rss, heap);
        res_num("l1_overhead_bytes", rss);
        res_num("l1_overhead_bytes_malloc", heap);
        res_num("l1_overhead_entries", (double)added);
        bench_l2_drop(cfg, 'm', n + 256);
    } else {
        fprintf(stderr, "tc-bench: memory (public fill) skipped\n");
        bench_fail();
    }
    size_t added = fill_direct(n, &b, &a);
    if (!added)
        bench_fail();
    double rss = per_entry(b.rss, a.rss, added),
           heap = per_entry(b.heap, a.heap, added);
    printf("   %-46s %10.0f B %12.0f B\n", "bare L1 store: tc__l1_fill", rss,
           heap);
    printf("   (the L1 budget charges %zu B per entry: TC__L1_OVERHEAD)\n",
           (size_t)TC__L1_OVERHEAD);
    res_num("l1_overhead_bytes_direct", rss);
    res_num("l1_overhead_bytes_direct_malloc", heap);
    res_num("l1_overhead_bytes_charged", (double)TC__L1_OVERHEAD);
    fflush(stdout);
}
