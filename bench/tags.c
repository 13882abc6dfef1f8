/*
 * Tags (issue 11): what a tag costs a read, a write, and invalidating a tag
 * with 100,000 keys (10,000 with --quick).
 *
 *   tag_read_overhead_ns   L1 hit on tagged keys minus on untagged keys,
 *                          interleaved, median of 5 (tags are resolved at
 *                          write and invalidation time: expect ~0)
 *   tag_write_p50_us       tc_set_tagged (2 tags) p50, interleaved with
 *   untagged_write_p50_us  tc_set p50
 *   tag_invalidate_100k_ms tc_invalidate_tags over the tag's keys, median
 *                          of 3 (keys stored by a raw pipeline first)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { READ_KEYS = 1000, READ_ROUNDS = 200, WRITES = 2000 };

static const char *const two_tags[] = {"bench", "bench2"};

/* ns per tc_get hit over keys of class `cls`. */
static double hit_ns(tc_cache *c, char cls)
{
    char key[BENCH_KEY_LEN + 1];
    uint64_t t0 = bench_now_ns();
    unsigned acc = 0;
    for (int r = 0; r < READ_ROUNDS; r++)
        for (size_t i = 0; i < READ_KEYS; i++) {
            tc_value *v = NULL;
            bench_key(key, cls, i);
            if (tc_get(c, key, BENCH_KEY_LEN, &v) == TC_OK) {
                acc += (unsigned)tc_value_len(v);
                tc_value_release(v);
            }
        }
    atomic_fetch_add_explicit(&bench_sink, acc, memory_order_relaxed);
    return (double)(bench_now_ns() - t0) / (READ_ROUNDS * (double)READ_KEYS);
}

static int read_overhead(tc_cache *c)
{
    char key[BENCH_KEY_LEN + 1], val[64];
    double tagged[5], plain[5];
    for (size_t i = 0; i < READ_KEYS; i++) {
        bench_value(val, sizeof(val), i);
        bench_key(key, 'u', i);
        if (tc_set(c, key, BENCH_KEY_LEN, val, sizeof(val), 0) != TC_OK)
            return -1;
        bench_key(key, 't', i);
        if (tc_set_tagged(c, key, BENCH_KEY_LEN, val, sizeof(val), NULL, 2,
                          two_tags) != TC_OK)
            return -1;
    }
    for (int rep = 0; rep < 5; rep++) {
        plain[rep] = hit_ns(c, 'u');
        tagged[rep] = hit_ns(c, 't');
    }
    double p = bench_median(plain, 5), t = bench_median(tagged, 5);
    printf("  L1 hit, tagged vs untagged keys   %8.1f ns  %8.1f ns\n", t, p);
    res_num("tag_read_hit_ns", t);
    res_num("untagged_read_hit_ns", p);
    res_num("tag_read_overhead_ns", t - p);
    return 0;
}

static int write_cost(tc_cache *c)
{
    samples tagged = {0}, plain = {0};
    char key[BENCH_KEY_LEN + 1], val[64];
    int err = 0;
    for (size_t i = 0; i < WRITES && !err; i++) {
        uint64_t t0;
        bench_value(val, sizeof(val), i);
        bench_key(key, 'w', i);
        t0 = bench_now_ns();
        err |= tc_set(c, key, BENCH_KEY_LEN, val, sizeof(val), 0) != TC_OK;
        samples_add(&plain, (double)(bench_now_ns() - t0));
        bench_key(key, 'x', i);
        t0 = bench_now_ns();
        err |= tc_set_tagged(c, key, BENCH_KEY_LEN, val, sizeof(val), NULL,
                             2, two_tags) != TC_OK;
        samples_add(&tagged, (double)(bench_now_ns() - t0));
    }
    if (!err) {
        double t = samples_pct(&tagged, 50) / 1e3,
               p = samples_pct(&plain, 50) / 1e3;
        printf("  write p50, 2 tags vs none         %8.1f us  %8.1f us\n", t,
               p);
        res_num("tag_write_p50_us", t);
        res_num("untagged_write_p50_us", p);
    }
    samples_free(&tagged);
    samples_free(&plain);
    return err ? -1 : 0;
}

/* The tag set's name, as the library made it for a probe key. */
static int find_tag_set(redisContext *rc, char *out, size_t len)
{
    redisReply *r = redisCommand(rc, "KEYS __tiercache:*:tag:bulk");
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1;
    if (ok)
        snprintf(out, len, "%s", r->element[0]->str);
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

/* n keys of class 'g' under tag "bulk", stored by a raw pipeline. */
static int fill_tag(const bench_cfg *cfg, redisContext *rc, const char *set,
                    size_t n)
{
    char key[BENCH_KEY_LEN + 1], val[64];
    for (size_t b = 0; b < n; b += 1000) {
        size_t m = n - b < 1000 ? n - b : 1000;
        for (size_t j = 0; j < m; j++) {
            bench_key(key, 'g', b + j);
            bench_value(val, sizeof(val), b + j);
            redisAppendCommand(rc, "SET %s%s %b PX 600000", BENCH_PREFIX, key,
                               val, sizeof(val));
            redisAppendCommand(rc, "SADD %s %s", set, key);
        }
        for (size_t j = 0; j < 2 * m; j++) {
            redisReply *r = NULL;
            if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r ||
                r->type == REDIS_REPLY_ERROR) {
                if (r)
                    freeReplyObject(r);
                return -1;
            }
            freeReplyObject(r);
        }
    }
    (void)cfg;
    return 0;
}

static int invalidate_cost(const bench_cfg *cfg, tc_cache *c)
{
    size_t n = cfg->quick ? 10000 : 100000;
    int reps = cfg->quick ? 1 : 3;
    double ms[3];
    char set[512];
    const char *bulk[] = {"bulk"};
    redisContext *rc = bench_redis_connect(cfg);
    uint64_t deleted = 0;
    int err = !rc;
    if (!err)
        err = tc_set_tagged(c, "probe", 5, "v", 1, NULL, 1, bulk) != TC_OK ||
              find_tag_set(rc, set, sizeof(set)) != 0;
    for (int rep = 0; rep < reps && !err; rep++) {
        uint64_t t0;
        err = fill_tag(cfg, rc, set, n) != 0;
        if (err)
            break;
        t0 = bench_now_ns();
        err = tc_invalidate_tags(c, 1, bulk, &deleted) != TC_OK ||
              deleted < n;
        ms[rep] = (double)(bench_now_ns() - t0) / 1e6;
    }
    if (rc)
        redisFree(rc);
    if (err) {
        fprintf(stderr, "tc-bench: tag invalidation: %s\n", tc_errmsg());
        return -1;
    }
    double m = bench_median(ms, (size_t)reps);
    printf("  invalidate a tag of %zu keys     %8.1f ms (%.2f us per key)\n",
           n, m, m * 1e3 / (double)n);
    res_num(cfg->quick ? "tag_invalidate_10k_ms" : "tag_invalidate_100k_ms",
            m);
    return 0;
}

void bench_tags(const bench_cfg *cfg)
{
    tc_options o;
    tc_cache *c;
    printf("\n== tags: read, write and invalidation cost ==\n");
    bench_cache_options(cfg, &o);
    c = bench_cache_create(&o);
    if (!c || read_overhead(c) != 0 || write_cost(c) != 0 ||
        invalidate_cost(cfg, c) != 0) {
        fprintf(stderr, "tc-bench: tags section failed: %s\n", tc_errmsg());
        bench_fail();
    }
    if (c)
        tc_cache_destroy(c);
}
