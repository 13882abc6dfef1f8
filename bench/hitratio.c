/*
 * Section 5: hit ratio of the L1 eviction policy against plain LRU.
 *
 * The policy side is the real L1 store (tc__l1_create with one shard, a byte
 * budget too large to matter, and max_entries = capacity), driven through
 * tc__l1_get / tc__l1_gen / tc__l1_fill exactly as the cache drives it on a
 * miss. The LRU (lru.c) has the same capacity in entries.
 *
 * Traces (seeded, so every run replays the same requests):
 *   zipf08, zipf10: Zipf(alpha) over the key space, ranks shuffled onto keys.
 *   scan: Zipf 1.0, and in the middle half of the trace every other request
 *         is the next key of a one-time scan over keys outside the key space
 *         (a batch job walking a table while normal traffic goes on).
 * The hit ratio counts every request, scan requests included (they miss in
 * both policies).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "l1.h"
#include "lru.h"

typedef struct trace {
    uint64_t *k;
    size_t n;
} trace;

static double *zipf_cdf(size_t n, double alpha)
{
    double *cdf = malloc(n * sizeof *cdf);
    if (!cdf)
        return NULL;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)(i + 1), alpha);
        cdf[i] = sum;
    }
    for (size_t i = 0; i < n; i++)
        cdf[i] /= sum;
    return cdf;
}

static size_t zipf_draw(const double *cdf, size_t n, bench_rng *r)
{
    double u = rng_unit(r);
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* `scan`: interleave a one-time scan over the middle half. */
static int make_trace(trace *t, size_t keys, size_t len, double alpha,
                      int scan, uint64_t seed)
{
    bench_rng r;
    rng_seed(&r, seed);
    double *cdf = zipf_cdf(keys, alpha);
    uint32_t *perm = rng_perm(&r, keys);
    t->k = malloc(len * sizeof *t->k);
    t->n = len;
    if (!cdf || !perm || !t->k) {
        free(cdf);
        free(perm);
        free(t->k);
        t->k = NULL;
        return -1;
    }
    uint64_t next_scan = keys;
    for (size_t i = 0; i < len; i++) {
        int in_scan = scan && i >= len / 4 && i < len - len / 4 && (i & 1);
        t->k[i] = in_scan ? next_scan++ : perm[zipf_draw(cdf, keys, &r)];
    }
    free(cdf);
    free(perm);
    return 0;
}

static double run_policy(const trace *t, size_t cap, size_t *refused)
{
    tc__l1 *l1 = tc__l1_create((size_t)1 << 40, cap, 1);
    if (!l1)
        return NAN;
    size_t hits = 0;
    for (size_t i = 0; i < t->n; i++) {
        uint64_t key = t->k[i];
        uint64_t h = tc__hash(&key, sizeof key);
        struct tc_value *v = tc__l1_get(l1, h, &key, sizeof key, tc__now_ns());
        if (v) {
            hits++;
            tc_value_release(v);
        } else if (tc__l1_fill(l1, h, &key, sizeof key, &key, sizeof key,
                               UINT64_MAX, tc__l1_gen(l1, h), 0, NULL) !=
                   TC__FILL_INSERTED) {
            (*refused)++;
        }
    }
    tc__l1_destroy(l1);
    return (double)hits / (double)t->n;
}

static double run_lru(const trace *t, size_t cap)
{
    lru *l = lru_create(cap);
    if (!l)
        return NAN;
    size_t hits = 0;
    for (size_t i = 0; i < t->n; i++)
        hits += (size_t)lru_access(l, t->k[i]);
    lru_destroy(l);
    return (double)hits / (double)t->n;
}

void bench_hitratio(const bench_cfg *cfg)
{
    const size_t keys = 100000;
    const size_t len = cfg->quick ? 200000 : 1000000;
    static const struct {
        const char *name, *json;
        double alpha;
        int scan;
    } traces[] = {
        {"zipf 0.8", "zipf08", 0.8, 0},
        {"zipf 1.0", "zipf10", 1.0, 0},
        {"zipf 1.0 + one-time scan", "scan", 1.0, 1},
    };
    static const struct {
        const char *json;
        unsigned permille;
    } caps[] = {{"1pct", 10}, {"10pct", 100}};

    printf("\n5. hit ratio, L1 policy (one shard) against LRU, same capacity "
           "in entries,\n   %zu keys, %zu requests per trace, seed %llu\n",
           keys, len, (unsigned long long)cfg->seed);
    printf("   %-26s %14s %9s %9s %8s\n", "trace", "capacity", "L1 policy",
           "LRU", "ratio");
    fflush(stdout);
    size_t refused = 0;
    for (size_t ti = 0; ti < sizeof traces / sizeof traces[0]; ti++) {
        trace t = {NULL, 0};
        if (make_trace(&t, keys, len, traces[ti].alpha, traces[ti].scan,
                       cfg->seed + ti) != 0) {
            fprintf(stderr, "tc-bench: out of memory for traces\n");
            bench_fail();
            return;
        }
        for (size_t ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
            size_t cap = keys * caps[ci].permille / 1000;
            double pol = run_policy(&t, cap, &refused);
            double l = run_lru(&t, cap);
            char capbuf[32];
            snprintf(capbuf, sizeof capbuf, "%u%% (%zu)",
                     caps[ci].permille / 10, cap);
            printf("   %-26s %14s %8.2f%% %8.2f%% %7.3fx\n", traces[ti].name,
                   capbuf, 100 * pol, 100 * l, pol / l);
            char key[96];
            snprintf(key, sizeof key, "hit_ratio_policy_%s_%s",
                     traces[ti].json, caps[ci].json);
            res_num(key, pol);
            snprintf(key, sizeof key, "hit_ratio_lru_%s_%s", traces[ti].json,
                     caps[ci].json);
            res_num(key, l);
        }
        free(t.k);
    }
    if (refused)
        printf("   note: the L1 refused %zu fills\n", refused);
    fflush(stdout);
}
