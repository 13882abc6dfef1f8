/* The L1 store on its own: round trips, generations, invalidation, bounds,
 * SIEVE eviction, expiry, value lifetime, glob matching, and a concurrent
 * stress for the sanitizers. No Redis involved. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#include "crit.h"

#include "glob.h"
#include "l1.h"

#define HOUR_NS (3600ULL * 1000000000ULL)

/* Fill `key` with the generation current right now: a fill that cannot be
 * stale, so only the budget decides. */
static int put(tc__l1 *l1, const void *key, size_t klen, const void *val,
               size_t vlen)
{
    uint64_t h = tc__hash(key, klen);
    return tc__l1_fill(l1, h, key, klen, val, vlen, tc__now_ns() + HOUR_NS,
                       tc__l1_gen(l1, h), 0, NULL);
}

static int put_s(tc__l1 *l1, const char *key, const char *val)
{
    return put(l1, key, strlen(key), val, strlen(val));
}

static tc_value *get(tc__l1 *l1, const void *key, size_t klen)
{
    return tc__l1_get(l1, tc__hash(key, klen), key, klen, tc__now_ns());
}

static int has(tc__l1 *l1, const void *key, size_t klen)
{
    tc_value *v = get(l1, key, klen);
    tc_value_release(v);
    return v != NULL;
}

static int has_s(tc__l1 *l1, const char *key)
{
    return has(l1, key, strlen(key));
}

static tc_stats stats(tc__l1 *l1)
{
    tc_stats st;
    memset(&st, 0, sizeof(st));
    tc__l1_stats(l1, &st);
    return st;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static tc__l1 *must_l1(size_t bytes, size_t entries, unsigned shards)
{
    tc__l1 *l1 = tc__l1_create(bytes, entries, shards);
    cr_assert_not_null(l1, "tc__l1_create(%zu, %zu, %u)", bytes, entries,
                       shards);
    return l1;
}

/* ------------------------------------------------------------------ */
/* Create                                                              */
/* ------------------------------------------------------------------ */

Test(l1, create_rejects_non_power_of_two_shards)
{
    static const unsigned bad[] = {0, 3, 5, 6, 12, 100, 1000, 1023};
    static const unsigned good[] = {1, 2, 4, 64, 1024};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_null(tc__l1_create(1 << 20, 1000, bad[i]), "%u shards",
                       bad[i]);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        tc__l1 *l1 = tc__l1_create(1 << 20, 1000, good[i]);
        cr_assert_not_null(l1, "%u shards", good[i]);
        tc__l1_destroy(l1);
    }
    tc__l1_destroy(NULL); /* documented no-op */
}

/* ------------------------------------------------------------------ */
/* Round trips                                                         */
/* ------------------------------------------------------------------ */

Test(l1, fill_get_round_trip_binary_keys)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 4);
    /* Keys that differ only after a NUL, and one that is a C-string prefix
     * of the others: all distinct. */
    const char k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'}, k3[] = {'a'};
    const char v1[] = {0, 1, 2, 0, (char)0xff}, v2[] = {'x', 0}, v3[] = {0};
    tc_value *v;

    cr_assert_eq(put(l1, k1, sizeof(k1), v1, sizeof(v1)), TC__FILL_INSERTED);
    cr_assert_eq(put(l1, k2, sizeof(k2), v2, sizeof(v2)), TC__FILL_INSERTED);
    cr_assert_eq(put(l1, k3, sizeof(k3), v3, sizeof(v3)), TC__FILL_INSERTED);

    v = get(l1, k1, sizeof(k1));
    cr_assert_not_null(v);
    cr_assert_eq(tc_value_len(v), sizeof(v1));
    cr_assert_arr_eq(tc_value_data(v), v1, sizeof(v1));
    tc_value_release(v);
    v = get(l1, k2, sizeof(k2));
    cr_assert_not_null(v);
    cr_assert_eq(tc_value_len(v), sizeof(v2));
    cr_assert_arr_eq(tc_value_data(v), v2, sizeof(v2));
    tc_value_release(v);
    v = get(l1, k3, sizeof(k3));
    cr_assert_not_null(v);
    cr_assert_eq(tc_value_len(v), sizeof(v3));
    cr_assert_arr_eq(tc_value_data(v), v3, sizeof(v3));
    tc_value_release(v);

    /* A key never filled, and the C-string view of k1 ("a" plus NUL). */
    cr_assert_null(get(l1, "a\0", 2));
    cr_assert_null(get(l1, "zz", 2));
    cr_assert_eq(stats(l1).l1_entries, 3);
    tc__l1_destroy(l1);
}

Test(l1, empty_value_round_trips)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 1);
    tc_value *v;
    cr_assert_eq(put(l1, "k", 1, "", 0), TC__FILL_INSERTED);
    v = get(l1, "k", 1);
    cr_assert_not_null(v, "an empty value is a value, not a miss");
    cr_assert_eq(tc_value_len(v), 0);
    tc_value_release(v);
    tc__l1_destroy(l1);
}

Test(l1, fill_hands_out_reference_when_asked)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 2);
    uint64_t h = tc__hash("k", 1);
    tc_value *ref = NULL;
    cr_assert_eq(tc__l1_fill(l1, h, "k", 1, "val", 3, tc__now_ns() + HOUR_NS,
                             tc__l1_gen(l1, h), 0, &ref),
                 TC__FILL_INSERTED);
    cr_assert_not_null(ref);
    cr_assert_eq(tc_value_len(ref), 3);
    cr_assert_arr_eq(tc_value_data(ref), "val", 3);
    tc__l1_destroy(l1);
    /* Our reference outlives the store. */
    cr_assert_arr_eq(tc_value_data(ref), "val", 3);
    tc_value_release(ref);
}

Test(l1, replace_existing_key)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 4);
    tc_value *v;
    tc_stats st;
    cr_assert_eq(put_s(l1, "k", "first-value"), TC__FILL_INSERTED);
    cr_assert_eq(put_s(l1, "k", "v2"), TC__FILL_INSERTED);
    v = get(l1, "k", 1);
    cr_assert_not_null(v);
    cr_assert_eq(tc_value_len(v), 2);
    cr_assert_arr_eq(tc_value_data(v), "v2", 2);
    tc_value_release(v);
    /* One entry, charged for the new value only. */
    st = stats(l1);
    cr_assert_eq(st.l1_entries, 1);
    cr_assert_eq(st.l1_bytes, TC__L1_OVERHEAD + 1 + 2);
    cr_assert_eq(st.l1_evictions, 0);
    tc__l1_destroy(l1);
}

/* ------------------------------------------------------------------ */
/* Generations                                                         */
/* ------------------------------------------------------------------ */

Test(l1, stale_fill_is_refused)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 4);
    uint64_t h = tc__hash("k", 1);
    uint64_t g0, g1;
    cr_assert_eq(put_s(l1, "k", "old"), TC__FILL_INSERTED);
    g0 = tc__l1_gen(l1, h); /* a reader starts an L2 fetch */
    g1 = tc__l1_invalidate_key(l1, h, "k", 1);
    cr_assert_neq(g1, g0);
    cr_assert_eq(g1, tc__l1_gen(l1, h), "invalidate returns the new gen");
    cr_assert_null(get(l1, "k", 1), "invalidate_key drops the entry");

    /* The reader's (possibly old) value arrives after the invalidation. */
    cr_assert_eq(tc__l1_fill(l1, h, "k", 1, "old", 3, tc__now_ns() + HOUR_NS,
                             g0, 0, NULL),
                 TC__FILL_STALE);
    cr_assert_null(get(l1, "k", 1));
    cr_assert_eq(stats(l1).fills_skipped, 1);
    cr_assert_eq(stats(l1).l1_entries, 0);

    /* The writer's fill carries the new generation and is accepted. */
    cr_assert_eq(tc__l1_fill(l1, h, "k", 1, "new", 3, tc__now_ns() + HOUR_NS,
                             g1, 0, NULL),
                 TC__FILL_INSERTED);
    cr_assert(has_s(l1, "k"));
    tc__l1_destroy(l1);
}

Test(l1, invalidate_absent_key_still_bumps)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 4);
    uint64_t h = tc__hash("k", 1);
    uint64_t g0 = tc__l1_gen(l1, h);
    tc__l1_invalidate_key(l1, h, "k", 1);
    cr_assert_eq(tc__l1_fill(l1, h, "k", 1, "v", 1, tc__now_ns() + HOUR_NS,
                             g0, 0, NULL),
                 TC__FILL_STALE);
    cr_assert_null(get(l1, "k", 1));
    tc__l1_destroy(l1);
}

Test(l1, fill_bump_makes_older_generation_stale)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 4);
    uint64_t h = tc__hash("k", 1);
    uint64_t g = tc__l1_gen(l1, h); /* read by writer and reader alike */
    tc_value *v;
    cr_assert_eq(tc__l1_fill(l1, h, "k", 1, "new", 3, tc__now_ns() + HOUR_NS,
                             g, TC__FILL_BUMP, NULL),
                 TC__FILL_INSERTED);
    cr_assert_neq(tc__l1_gen(l1, h), g);
    /* A reader that fetched before the write must not overwrite it. */
    cr_assert_eq(tc__l1_fill(l1, h, "k", 1, "old", 3, tc__now_ns() + HOUR_NS,
                             g, 0, NULL),
                 TC__FILL_STALE);
    v = get(l1, "k", 1);
    cr_assert_not_null(v);
    cr_assert_arr_eq(tc_value_data(v), "new", 3);
    tc_value_release(v);
    tc__l1_destroy(l1);
}

Test(l1, fill_without_bump_keeps_generation)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 4);
    uint64_t h = tc__hash("k", 1);
    uint64_t g = tc__l1_gen(l1, h);
    cr_assert_eq(put_s(l1, "k", "a"), TC__FILL_INSERTED);
    cr_assert_eq(tc__l1_gen(l1, h), g);
    /* Two readers with the same generation: both fills are accepted. */
    cr_assert_eq(tc__l1_fill(l1, h, "k", 1, "b", 1, tc__now_ns() + HOUR_NS,
                             g, 0, NULL),
                 TC__FILL_INSERTED);
    tc__l1_destroy(l1);
}

/* ------------------------------------------------------------------ */
/* Prefix, glob and whole-store invalidation                           */
/* ------------------------------------------------------------------ */

static const struct {
    const char *k;
    size_t len;
} mixed_keys[] = {
    {"user:1", 6},  {"user:22", 7}, {"user:", 5},    {"user:\0z", 7},
    {"use", 3},     {"userx", 5},   {"users:1", 7},  {"order:1", 7},
    {"User:1", 6},  {"xuser:1", 7}, {"\0user:1", 7},
};
#define NMIXED (sizeof(mixed_keys) / sizeof(mixed_keys[0]))

static tc__l1 *mixed_store(void)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 8);
    for (size_t i = 0; i < NMIXED; i++)
        cr_assert_eq(put(l1, mixed_keys[i].k, mixed_keys[i].len, "v", 1),
                     TC__FILL_INSERTED);
    return l1;
}

Test(l1, invalidate_prefix_drops_exactly_matching)
{
    tc__l1 *l1 = mixed_store();
    /* Expected survivors: everything not starting with "user:". */
    static const int gone[NMIXED] = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(tc__l1_invalidate_prefix(l1, "user:", 5), 4);
    for (size_t i = 0; i < NMIXED; i++)
        cr_assert_eq(has(l1, mixed_keys[i].k, mixed_keys[i].len), !gone[i],
                     "key #%zu", i);
    cr_assert_eq(stats(l1).l1_entries, NMIXED - 4);
    tc__l1_destroy(l1);
}

Test(l1, invalidate_prefix_binary)
{
    tc__l1 *l1 = mixed_store();
    /* A prefix holding a NUL matches byte for byte. */
    cr_assert_eq(tc__l1_invalidate_prefix(l1, "\0user", 5), 1);
    cr_assert_not(has(l1, "\0user:1", 7));
    cr_assert(has(l1, "user:1", 6));
    cr_assert_eq(stats(l1).l1_entries, NMIXED - 1);
    tc__l1_destroy(l1);
}

/* By design a prefix/pattern invalidation bumps every generation slot of
 * every shard (which keys it hits is not known in advance), so an
 * in-flight fill of an unrelated key is refused too: a spurious miss, never
 * a stale value. */
Test(l1, invalidate_prefix_bumps_every_generation)
{
    tc__l1 *l1 = mixed_store();
    uint64_t h = tc__hash("order:9", 7);
    uint64_t g = tc__l1_gen(l1, h);
    tc__l1_invalidate_prefix(l1, "user:", 5);
    cr_assert_eq(tc__l1_fill(l1, h, "order:9", 7, "v", 1,
                             tc__now_ns() + HOUR_NS, g, 0, NULL),
                 TC__FILL_STALE);
    cr_assert_not(has_s(l1, "order:9"));
    tc__l1_destroy(l1);
}

Test(l1, invalidate_glob_drops_exactly_matching)
{
    tc__l1 *l1 = mixed_store();
    /* "user:?" : one byte after the colon ("user:\0z" has two). */
    cr_assert_eq(tc__l1_invalidate_glob(l1, "user:?", 6), 1);
    cr_assert_not(has_s(l1, "user:1"));
    cr_assert(has_s(l1, "user:22"));
    cr_assert(has(l1, "user:\0z", 7));
    cr_assert_eq(stats(l1).l1_entries, NMIXED - 1);

    /* "*ser:*": every key containing "ser:" (user:22, user:, user:\0z,
     * User:1, xuser:1, \0user:1), but not users:1. */
    cr_assert_eq(tc__l1_invalidate_glob(l1, "*ser:*", 6), 6);
    for (size_t i = 0; i < NMIXED; i++) {
        int matched = memmem(mixed_keys[i].k, mixed_keys[i].len, "ser:", 4) !=
                      NULL;
        cr_assert_eq(has(l1, mixed_keys[i].k, mixed_keys[i].len), !matched,
                     "key #%zu", i);
    }
    tc__l1_destroy(l1);
}

Test(l1, invalidate_glob_bumps_generations)
{
    tc__l1 *l1 = mixed_store();
    uint64_t h = tc__hash("zzz", 3);
    uint64_t g = tc__l1_gen(l1, h);
    cr_assert_eq(tc__l1_invalidate_glob(l1, "nomatch*", 8), 0);
    cr_assert_eq(tc__l1_fill(l1, h, "zzz", 3, "v", 1, tc__now_ns() + HOUR_NS,
                             g, 0, NULL),
                 TC__FILL_STALE);
    cr_assert_eq(stats(l1).l1_entries, NMIXED);
    tc__l1_destroy(l1);
}

Test(l1, clear_drops_everything_and_bumps)
{
    tc__l1 *l1 = mixed_store();
    uint64_t h = tc__hash("user:1", 6);
    uint64_t g = tc__l1_gen(l1, h);
    tc_stats st;
    cr_assert_eq(tc__l1_clear(l1), NMIXED);
    for (size_t i = 0; i < NMIXED; i++)
        cr_assert_not(has(l1, mixed_keys[i].k, mixed_keys[i].len));
    st = stats(l1);
    cr_assert_eq(st.l1_entries, 0);
    cr_assert_eq(st.l1_bytes, 0);
    cr_assert_eq(tc__l1_fill(l1, h, "user:1", 6, "v", 1,
                             tc__now_ns() + HOUR_NS, g, 0, NULL),
                 TC__FILL_STALE);
    cr_assert_eq(tc__l1_clear(l1), 0);
    tc__l1_destroy(l1);
}

/* ------------------------------------------------------------------ */
/* Bounds                                                              */
/* ------------------------------------------------------------------ */

/* Sum of charges of the entries reachable through get, over keys k0..kn-1;
 * *count receives how many were found. */
static uint64_t reachable_bytes(tc__l1 *l1, int n, uint64_t *count)
{
    uint64_t bytes = 0;
    *count = 0;
    for (int i = 0; i < n; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "k%d", i);
        tc_value *v = get(l1, key, (size_t)kl);
        if (v) {
            bytes += TC__L1_OVERHEAD + (size_t)kl + tc_value_len(v);
            (*count)++;
            tc_value_release(v);
        }
    }
    return bytes;
}

Test(l1, byte_and_entry_bounds_hold_after_every_insert)
{
    const size_t max_bytes = 64 << 10, max_entries = 256;
    tc__l1 *l1 = must_l1(max_bytes, max_entries, 8);
    static char val[1500];
    unsigned seed = 12345;
    uint64_t n;
    tc_stats st;
    memset(val, 'v', sizeof(val));
    for (int i = 0; i < 6000; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "k%d", rand_r(&seed) % 2000);
        size_t vl = (size_t)(rand_r(&seed) % 1400);
        if (i % 97 == 0)
            vl = 0;
        cr_assert_eq(put(l1, key, (size_t)kl, val, vl), TC__FILL_INSERTED);
        st = stats(l1);
        cr_assert_leq(st.l1_bytes, max_bytes, "insert %d: %llu bytes", i,
                      (unsigned long long)st.l1_bytes);
        cr_assert_leq(st.l1_entries, max_entries, "insert %d: %llu entries",
                      i, (unsigned long long)st.l1_entries);
    }
    st = stats(l1);
    cr_assert_gt(st.l1_evictions, 0, "the budget never forced an eviction");
    /* The counters describe exactly what is reachable. */
    cr_assert_eq(reachable_bytes(l1, 2000, &n), st.l1_bytes);
    cr_assert_eq(n, st.l1_entries);
    tc__l1_destroy(l1);
}

Test(l1, entry_bound_with_tiny_values)
{
    tc__l1 *l1 = must_l1(1 << 30, 64, 4); /* 16 entries per shard */
    tc_stats st;
    for (int i = 0; i < 5000; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(put(l1, key, (size_t)kl, "", 0), TC__FILL_INSERTED);
        cr_assert_leq(stats(l1).l1_entries, 64, "insert %d", i);
    }
    st = stats(l1);
    cr_assert_eq(st.l1_evictions, 5000 - st.l1_entries);
    tc__l1_destroy(l1);
}

Test(l1, entry_too_large_for_shard_is_nofit)
{
    /* 4 KiB over 4 shards: 1 KiB per shard. */
    tc__l1 *l1 = must_l1(4096, 100, 4);
    static char val[2048];
    size_t fits = 1024 - TC__L1_OVERHEAD - 1; /* key "k" */
    tc_stats st;
    memset(val, 'x', sizeof(val));
    cr_assert_eq(put(l1, "k", 1, val, fits + 1), TC__FILL_NOFIT);
    cr_assert_null(get(l1, "k", 1));
    st = stats(l1);
    cr_assert_eq(st.l1_entries, 0);
    cr_assert_eq(st.l1_bytes, 0);
    cr_assert_eq(put(l1, "k", 1, val, 2048), TC__FILL_NOFIT);
    /* Exactly one shard's budget fits. */
    cr_assert_eq(put(l1, "k", 1, val, fits), TC__FILL_INSERTED);
    cr_assert_eq(stats(l1).l1_bytes, 1024);
    tc__l1_destroy(l1);
}

/* ------------------------------------------------------------------ */
/* SIEVE                                                               */
/* ------------------------------------------------------------------ */

static void key_of(char *buf, size_t len, const char *tag, int i)
{
    snprintf(buf, len, "%s%d", tag, i);
}

Test(l1, sieve_evicts_oldest_unvisited_first)
{
    enum { N = 8 };
    tc__l1 *l1 = must_l1(1 << 30, N, 1);
    char key[32];
    for (int i = 0; i < N; i++) {
        key_of(key, sizeof(key), "k", i);
        cr_assert_eq(put_s(l1, key, "v"), TC__FILL_INSERTED);
    }
    cr_assert_eq(put_s(l1, "new", "v"), TC__FILL_INSERTED);
    cr_assert_not(has_s(l1, "k0"), "the oldest unvisited entry goes first");
    for (int i = 1; i < N; i++) {
        key_of(key, sizeof(key), "k", i);
        cr_assert(has_s(l1, key), "%s", key);
    }
    cr_assert_eq(stats(l1).l1_evictions, 1);
    tc__l1_destroy(l1);
}

Test(l1, sieve_visited_entry_gets_a_reprieve)
{
    enum { N = 8 };
    tc__l1 *l1 = must_l1(1 << 30, N, 1);
    char key[32];
    tc_value *v;
    for (int i = 0; i < N; i++) {
        key_of(key, sizeof(key), "k", i);
        cr_assert_eq(put_s(l1, key, "v"), TC__FILL_INSERTED);
    }
    v = get(l1, "k0", 2); /* sets k0's visited bit */
    cr_assert_not_null(v);
    tc_value_release(v);
    cr_assert_eq(put_s(l1, "new", "v"), TC__FILL_INSERTED);
    cr_assert_not(has_s(l1, "k1"), "k1, the oldest unvisited, survived");
    cr_assert(has_s(l1, "k0"), "the visited k0 was evicted");
    tc__l1_destroy(l1);
}

Test(l1, sieve_hot_keys_survive_a_scan)
{
    enum { N = 64, HOT = 8, SCAN = 10 * N };
    tc__l1 *l1 = must_l1(1 << 30, N, 1);
    char key[32];
    int cold_left = 0;
    tc_stats st;
    for (int i = 0; i < HOT; i++) {
        key_of(key, sizeof(key), "hot", i);
        cr_assert_eq(put_s(l1, key, "h"), TC__FILL_INSERTED);
    }
    for (int i = 0; i < SCAN; i++) {
        /* The application keeps reading its hot keys while a one-time
         * scan streams through: every hot read must hit. */
        for (int j = 0; j < HOT; j++) {
            key_of(key, sizeof(key), "hot", j);
            cr_assert(has_s(l1, key), "hot key %s lost after %d scan keys",
                      key, i);
        }
        key_of(key, sizeof(key), "scan", i);
        cr_assert_eq(put_s(l1, key, "c"), TC__FILL_INSERTED);
    }
    for (int j = 0; j < HOT; j++) {
        key_of(key, sizeof(key), "hot", j);
        cr_assert(has_s(l1, key), "hot key %s lost at the end", key);
    }
    for (int i = 0; i < SCAN; i++) {
        key_of(key, sizeof(key), "scan", i);
        cold_left += has_s(l1, key);
    }
    /* Exactly the newest N - HOT scan keys remain; the other 90% left. */
    cr_assert_eq(cold_left, N - HOT);
    for (int i = SCAN - (N - HOT); i < SCAN; i++) {
        key_of(key, sizeof(key), "scan", i);
        cr_assert(has_s(l1, key), "%s", key);
    }
    st = stats(l1);
    cr_assert_eq(st.l1_entries, N);
    cr_assert_eq(st.l1_evictions, HOT + SCAN - N);
    tc__l1_destroy(l1);
}

/* ------------------------------------------------------------------ */
/* Expiry                                                              */
/* ------------------------------------------------------------------ */

Test(l1, expired_entries_are_never_returned)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 4);
    uint64_t h = tc__hash("short", 5), h2 = tc__hash("long", 4);
    tc_stats st;
    cr_assert_eq(tc__l1_fill(l1, h, "short", 5, "v", 1,
                             tc__now_ns() + 40 * 1000000ULL,
                             tc__l1_gen(l1, h), 0, NULL),
                 TC__FILL_INSERTED);
    cr_assert_eq(tc__l1_fill(l1, h2, "long", 4, "v", 1,
                             tc__now_ns() + HOUR_NS, tc__l1_gen(l1, h2), 0,
                             NULL),
                 TC__FILL_INSERTED);
    sleep_ms(60); /* past the 40 ms TTL: expiry is what is under test */
    cr_assert_null(get(l1, "short", 5), "an expired entry was returned");
    cr_assert(has_s(l1, "long"), "an unexpired entry was dropped");
    st = stats(l1);
    cr_assert_eq(st.l1_expirations, 1);
    cr_assert_eq(st.l1_entries, 1, "the expired entry was not removed");
    cr_assert_eq(st.l1_bytes, TC__L1_OVERHEAD + 4 + 1);
    tc__l1_destroy(l1);
}

/* Deadlines are CLOCK_MONOTONIC (tc__now_ns()). Right after the thread
 * was idle, CLOCK_MONOTONIC_COARSE can lag CLOCK_MONOTONIC by more than
 * its reported resolution (tickless kernels), so an expiry check on the
 * coarse clock plus one resolution can serve an entry past its deadline.
 * The short sleeps create that condition (every tc_get after a blocking
 * L2 call meets it); they synchronise nothing. */
Test(l1, entry_past_its_deadline_is_never_served_after_idle)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 1);
    uint64_t h = tc__hash("k", 1);
    int served = 0;
    for (int i = 0; i < 100; i++) {
        tc_value *v;
        sleep_ms(1);
        cr_assert_eq(tc__l1_fill(l1, h, "k", 1, "v", 1, tc__now_ns() - 1,
                                 tc__l1_gen(l1, h), 0, NULL),
                     TC__FILL_INSERTED);
        v = get(l1, "k", 1);
        if (v) {
            served++;
            tc_value_release(v);
            tc__l1_invalidate_key(l1, h, "k", 1);
        }
    }
    tc__l1_destroy(l1);
    cr_assert_eq(served, 0, "%d of 100 entries served after their deadline",
                 served);
}

/* ------------------------------------------------------------------ */
/* Value lifetime                                                      */
/* ------------------------------------------------------------------ */

Test(l1, values_outlive_invalidation_clear_and_destroy)
{
    tc__l1 *l1 = must_l1(1 << 20, 1000, 4);
    tc_value *a, *b, *c, *d, *d2;
    cr_assert_eq(put_s(l1, "a", "value-a"), TC__FILL_INSERTED);
    cr_assert_eq(put_s(l1, "p:b", "value-b"), TC__FILL_INSERTED);
    cr_assert_eq(put_s(l1, "g:c", "value-c"), TC__FILL_INSERTED);
    cr_assert_eq(put_s(l1, "d", "value-d"), TC__FILL_INSERTED);
    a = get(l1, "a", 1);
    b = get(l1, "p:b", 3);
    c = get(l1, "g:c", 3);
    d = get(l1, "d", 1);
    d2 = get(l1, "d", 1);
    cr_assert(a && b && c && d && d2);

    tc__l1_invalidate_key(l1, tc__hash("a", 1), "a", 1);
    tc__l1_invalidate_prefix(l1, "p:", 2);
    tc__l1_invalidate_glob(l1, "g:*", 3);
    cr_assert_eq(stats(l1).l1_entries, 1);
    cr_assert_arr_eq(tc_value_data(a), "value-a", 7);
    cr_assert_arr_eq(tc_value_data(b), "value-b", 7);
    cr_assert_arr_eq(tc_value_data(c), "value-c", 7);
    tc_value_release(a);
    tc_value_release(b);
    tc_value_release(c);

    tc__l1_clear(l1);
    cr_assert_arr_eq(tc_value_data(d), "value-d", 7);
    tc_value_release(d);
    /* Another reference to the same entry is still good. */
    cr_assert_arr_eq(tc_value_data(d2), "value-d", 7);

    cr_assert_eq(put_s(l1, "e", "value-e"), TC__FILL_INSERTED);
    a = get(l1, "e", 1);
    cr_assert_not_null(a);
    tc__l1_destroy(l1);
    cr_assert_eq(tc_value_len(a), 7);
    cr_assert_arr_eq(tc_value_data(a), "value-e", 7);
    cr_assert_arr_eq(tc_value_data(d2), "value-d", 7);
    tc_value_release(a);
    tc_value_release(d2);
    tc_value_release(NULL); /* documented no-op */
}

Test(l1, values_outlive_replacement_and_eviction)
{
    tc__l1 *l1 = must_l1(1 << 20, 2, 1);
    tc_value *v;
    cr_assert_eq(put_s(l1, "k", "one"), TC__FILL_INSERTED);
    v = get(l1, "k", 1);
    cr_assert_not_null(v);
    cr_assert_eq(put_s(l1, "k", "two"), TC__FILL_INSERTED); /* replace */
    cr_assert_eq(put_s(l1, "x", "x"), TC__FILL_INSERTED);
    cr_assert_eq(put_s(l1, "y", "y"), TC__FILL_INSERTED); /* evicts */
    cr_assert_arr_eq(tc_value_data(v), "one", 3);
    tc_value_release(v);
    tc__l1_destroy(l1);
}

Test(l1, standalone_value_copies)
{
    char buf[4] = {'a', 0, 'b', 'c'};
    tc_value *v = tc__value_new(buf, sizeof(buf));
    cr_assert_not_null(v);
    buf[0] = 'z';
    cr_assert_eq(tc_value_len(v), 4);
    cr_assert_arr_eq(tc_value_data(v), ((char[]){'a', 0, 'b', 'c'}), 4);
    tc_value_release(v);
}

/* Small copies come from per-thread pools and return to the pool of the
 * thread that releases them (value.c). A pooled buffer must never be handed
 * out while still held, and a value passed to another thread must stay
 * intact until that thread releases it. Value i has i % 300 bytes, byte j
 * being (i + j) % 251. */
enum { XT_VALUES = 20000, XT_HELD = 40, XT_QUEUE = 64, XT_MINE = 8 };

typedef struct xt_item {
    tc_value *v;
    unsigned i;
} xt_item;

typedef struct xt_shared {
    pthread_mutex_t mu;
    xt_item q[XT_QUEUE];
    int n;
    atomic_int done, bad;
} xt_shared;

static tc_value *xt_make(unsigned i)
{
    unsigned char buf[300];
    size_t len = i % sizeof(buf);
    for (size_t j = 0; j < len; j++)
        buf[j] = (unsigned char)((i + j) % 251);
    return tc__value_new(buf, len);
}

static void xt_check(xt_shared *x, const xt_item *it)
{
    const unsigned char *d = tc_value_data(it->v);
    int ok = tc_value_len(it->v) == it->i % 300;
    for (size_t j = 0; ok && j < tc_value_len(it->v); j++)
        ok = d[j] == (it->i + j) % 251;
    if (!ok)
        atomic_fetch_add(&x->bad, 1);
}

/* Keeps XT_HELD values at a time; hands every other one to the consumer. */
static void *xt_producer(void *p)
{
    xt_shared *x = p;
    xt_item held[XT_HELD] = {{0}};
    for (unsigned i = 0; i < XT_VALUES; i++) {
        xt_item *slot = &held[i % XT_HELD], out = *slot;
        if (out.v)
            xt_check(x, &out);
        *slot = (xt_item){xt_make(i), i};
        if (!slot->v)
            atomic_fetch_add(&x->bad, 1);
        if (!out.v)
            continue;
        if (i % 2) {
            tc_value_release(out.v);
            continue;
        }
        for (;;) {
            pthread_mutex_lock(&x->mu);
            if (x->n < XT_QUEUE) {
                x->q[x->n++] = out;
                pthread_mutex_unlock(&x->mu);
                break;
            }
            pthread_mutex_unlock(&x->mu);
            sched_yield();
        }
    }
    for (int k = 0; k < XT_HELD; k++) {
        if (held[k].v)
            xt_check(x, &held[k]);
        tc_value_release(held[k].v);
    }
    atomic_store(&x->done, 1);
    return NULL;
}

/* Checks and releases what it is handed (into its own pool), making values
 * of its own from that pool meanwhile. */
static void *xt_consumer(void *p)
{
    xt_shared *x = p;
    xt_item mine[XT_MINE] = {{0}};
    unsigned i = 7;
    for (;;) {
        xt_item got = {NULL, 0};
        int done = atomic_load(&x->done);
        pthread_mutex_lock(&x->mu);
        if (x->n)
            got = x->q[--x->n];
        pthread_mutex_unlock(&x->mu);
        if (!got.v) {
            if (done)
                break;
            sched_yield();
            continue;
        }
        xt_check(x, &got);
        tc_value_release(got.v);
        i += 13;
        if (mine[i % XT_MINE].v)
            xt_check(x, &mine[i % XT_MINE]);
        tc_value_release(mine[i % XT_MINE].v);
        mine[i % XT_MINE] = (xt_item){xt_make(i), i};
    }
    for (int k = 0; k < XT_MINE; k++) {
        if (mine[k].v)
            xt_check(x, &mine[k]);
        tc_value_release(mine[k].v);
    }
    return NULL;
}

Test(l1, values_released_on_other_threads_stay_intact)
{
    xt_shared x = {.n = 0};
    pthread_t prod, cons;
    pthread_mutex_init(&x.mu, NULL);
    cr_assert_eq(pthread_create(&prod, NULL, xt_producer, &x), 0);
    cr_assert_eq(pthread_create(&cons, NULL, xt_consumer, &x), 0);
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    pthread_mutex_destroy(&x.mu);
    cr_assert_eq(atomic_load(&x.bad), 0, "%d values corrupt or missing",
                 atomic_load(&x.bad));
}

/* ------------------------------------------------------------------ */
/* Glob                                                                */
/* ------------------------------------------------------------------ */

static int gm(const char *pat, const char *s)
{
    return tc__glob_match(pat, strlen(pat), s, strlen(s));
}

Test(glob, star)
{
    cr_assert(gm("*", ""));
    cr_assert(gm("*", "anything"));
    cr_assert(gm("user:*", "user:"));
    cr_assert(gm("user:*", "user:42"));
    cr_assert_not(gm("user:*", "user"));
    cr_assert_not(gm("user:*", "xuser:1"));
    cr_assert(gm("*:42", "user:42"));
    cr_assert_not(gm("*:42", "user:421"));
    cr_assert(gm("a*b*c", "axxbyyc"));
    cr_assert(gm("a*b*c", "abc"));
    cr_assert_not(gm("a*b*c", "acb"));
    cr_assert(gm("a**b", "ab"));
    cr_assert(gm("*a", "bbba"));
    cr_assert_not(gm("*a", "bbbab"));
}

Test(glob, question_mark)
{
    cr_assert(gm("?", "x"));
    cr_assert_not(gm("?", ""));
    cr_assert_not(gm("?", "xy"));
    cr_assert(gm("user:??", "user:42"));
    cr_assert_not(gm("user:??", "user:4"));
    cr_assert(gm("*?", "a"));
    cr_assert_not(gm("*?", ""));
}

Test(glob, classes)
{
    cr_assert(gm("[abc]", "a"));
    cr_assert(gm("[abc]", "c"));
    cr_assert_not(gm("[abc]", "d"));
    cr_assert_not(gm("[abc]", ""));
    cr_assert(gm("k[abc]x", "kbx"));
    cr_assert_not(gm("k[abc]x", "kbbx"));
    /* negation */
    cr_assert(gm("[^a]", "b"));
    cr_assert_not(gm("[^a]", "a"));
    cr_assert_not(gm("[^a]", ""));
    cr_assert(gm("x[^abc]", "xd"));
    cr_assert_not(gm("x[^abc]", "xb"));
    /* ranges, either way round as in Redis */
    cr_assert(gm("[a-c]", "a"));
    cr_assert(gm("[a-c]", "b"));
    cr_assert(gm("[a-c]", "c"));
    cr_assert_not(gm("[a-c]", "d"));
    cr_assert_not(gm("[a-c]", "-"));
    cr_assert(gm("[c-a]", "b"));
    cr_assert(gm("[0-9][0-9]", "42"));
    cr_assert(gm("[^0-9]", "x"));
    cr_assert_not(gm("[^0-9]", "5"));
    /* a '-' that ends the set is literal */
    cr_assert(gm("[a-]", "-"));
    cr_assert(gm("[a-]", "a"));
    cr_assert_not(gm("[a-]", "b"));
}

Test(glob, escapes)
{
    cr_assert(gm("\\*", "*"));
    cr_assert_not(gm("\\*", "x"));
    cr_assert_not(gm("\\*", ""));
    cr_assert(gm("a\\?b", "a?b"));
    cr_assert_not(gm("a\\?b", "axb"));
    cr_assert(gm("\\[x]", "[x]"));
    cr_assert_not(gm("\\[x]", "x"));
    cr_assert(gm("[\\]]", "]"));
    cr_assert(gm("[\\-]", "-"));
    cr_assert(gm("\\\\", "\\"));
    /* A trailing backslash stands for itself. */
    cr_assert(gm("a\\", "a\\"));
    cr_assert_not(gm("a\\", "a"));
    cr_assert(gm("user:\\*:*", "user:*:1"));
    cr_assert_not(gm("user:\\*:*", "user:x:1"));
}

Test(glob, unclosed_bracket)
{
    /* As in Redis: an unclosed set runs to the end of the pattern. */
    cr_assert(gm("[ab", "a"));
    cr_assert(gm("[ab", "b"));
    cr_assert_not(gm("[ab", "c"));
    cr_assert_not(gm("[ab", "ab"));
    cr_assert_not(gm("x[", "x"));
    cr_assert_not(gm("x[", "xa")); /* an empty unclosed set matches nothing */
    cr_assert_not(gm("[", "a"));
}

Test(glob, empty_pattern_and_string)
{
    cr_assert(tc__glob_match("", 0, "", 0));
    cr_assert_not(tc__glob_match("", 0, "a", 1));
    cr_assert_not(tc__glob_match("a", 1, "", 0));
    cr_assert(tc__glob_match("**", 2, "", 0));
}

Test(glob, binary_strings)
{
    const char s[] = {'k', 0, 'x', (char)0xff};
    cr_assert(tc__glob_match("k*", 2, s, sizeof(s)));
    cr_assert(tc__glob_match("k?x?", 4, s, sizeof(s)));
    cr_assert(tc__glob_match("k\0x*", 4, s, sizeof(s)));
    cr_assert_not(tc__glob_match("k\0y*", 4, s, sizeof(s)));
    cr_assert(tc__glob_match("*\xff", 2, s, sizeof(s)));
    cr_assert(tc__glob_match("k[\0]*", 5, s, sizeof(s)));
    cr_assert_not(tc__glob_match("k[^\0]*", 6, s, sizeof(s)));
    /* The pattern length is honoured: bytes after it are not pattern. */
    cr_assert_not(tc__glob_match("k", 1, s, sizeof(s)));
    cr_assert(tc__glob_match("k*ZZZ", 2, s, sizeof(s)));
}

Test(glob, hostile_pattern_finishes)
{
    /* Exponential backtracking would never finish here (the meson
     * timeout catches it); no timing is asserted. */
    enum { LEN = 200000 };
    char *s = malloc(LEN + 2);
    cr_assert_not_null(s);
    memset(s, 'a', LEN);
    cr_assert_not(tc__glob_match("a*a*a*a*a*a*a*a*b", 17, s, LEN));
    s[LEN] = 'b';
    s[LEN + 1] = '\0';
    cr_assert(tc__glob_match("a*a*a*a*a*a*a*a*b", 17, s, LEN + 1));
    cr_assert_not(gm("*a*a*a*a*a*a*a*a*a*c*", s));
    s[LEN] = '\0';
    cr_assert_not(gm("a*a*a*a*a*a*a*a*b", s));
    free(s);
}

/* ------------------------------------------------------------------ */
/* Concurrency (mostly for ASan/TSan)                                  */
/* ------------------------------------------------------------------ */

#ifdef TC_SANITIZED /* each operation costs 5-15 times more */
enum { CONC_THREADS = 4, CONC_OPS = 8000, CONC_KEYS = 64 };
#else
enum { CONC_THREADS = 4, CONC_OPS = 25000, CONC_KEYS = 64 };
#endif
#define CONC_MAX_BYTES 4096
#define CONC_MAX_ENTRIES 48

typedef struct conc_arg {
    tc__l1 *l1;
    unsigned seed;
    atomic_int *corrupt;
} conc_arg;

static void *conc_worker(void *p)
{
    conc_arg *a = p;
    char val[200];
    for (int i = 0; i < CONC_OPS; i++) {
        unsigned r = (unsigned)rand_r(&a->seed);
        int ki = (int)(r % CONC_KEYS);
        char key[16];
        int kl = snprintf(key, sizeof(key), "k%d", ki);
        uint64_t h = tc__hash(key, (size_t)kl);
        unsigned op = (r >> 8) % 100;
        if (op < 45) {
            tc_value *v = tc__l1_get(a->l1, h, key, (size_t)kl, tc__now_ns());
            if (v) {
                /* Every value of key i is made of byte 'A'+i%26. */
                const char *d = tc_value_data(v);
                for (size_t j = 0; j < tc_value_len(v); j++)
                    if (d[j] != (char)('A' + ki % 26))
                        atomic_fetch_add(a->corrupt, 1);
                tc_value_release(v);
            }
        } else if (op < 85) {
            size_t vl = (r >> 16) % sizeof(val);
            uint64_t g = tc__l1_gen(a->l1, h);
            tc_value *ref = NULL;
            memset(val, 'A' + ki % 26, vl);
            if (tc__l1_fill(a->l1, h, key, (size_t)kl, val, vl,
                            tc__now_ns() + HOUR_NS, g,
                            (r & 1) ? TC__FILL_BUMP : 0,
                            (r & 2) ? &ref : NULL) == TC__FILL_INSERTED &&
                ref)
                tc_value_release(ref);
        } else if (op < 97) {
            tc__l1_invalidate_key(a->l1, h, key, (size_t)kl);
        } else if (op < 99) {
            char pfx[4];
            int pl = snprintf(pfx, sizeof(pfx), "k%d", ki % 10);
            tc__l1_invalidate_prefix(a->l1, pfx, (size_t)pl);
        } else {
            tc__l1_invalidate_glob(a->l1, "k?", 2);
        }
        if (i % 1000 == 0) {
            tc_stats st;
            memset(&st, 0, sizeof(st));
            tc__l1_stats(a->l1, &st);
            if (st.l1_bytes > CONC_MAX_BYTES ||
                st.l1_entries > CONC_MAX_ENTRIES)
                atomic_fetch_add(a->corrupt, 1000000);
        }
    }
    return NULL;
}

Test(l1, concurrent_mixed_operations_stay_consistent)
{
    tc__l1 *l1 = must_l1(CONC_MAX_BYTES, CONC_MAX_ENTRIES, 4);
    pthread_t th[CONC_THREADS];
    conc_arg args[CONC_THREADS];
    atomic_int corrupt = 0;
    uint64_t n, bytes;
    tc_stats st;
    for (int i = 0; i < CONC_THREADS; i++) {
        args[i] = (conc_arg){l1, 1000u + (unsigned)i, &corrupt};
        cr_assert_eq(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
    }
    for (int i = 0; i < CONC_THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&corrupt), 0,
                 "corrupt values or bound violations: %d",
                 atomic_load(&corrupt));
    st = stats(l1);
    cr_assert_leq(st.l1_bytes, CONC_MAX_BYTES);
    cr_assert_leq(st.l1_entries, CONC_MAX_ENTRIES);
    cr_assert_gt(st.l1_hits, 0, "the stress never hit: not a stress");
    bytes = reachable_bytes(l1, CONC_KEYS, &n);
    cr_assert_eq(n, st.l1_entries, "counted %llu entries, %llu reachable",
                 (unsigned long long)st.l1_entries, (unsigned long long)n);
    cr_assert_eq(bytes, st.l1_bytes);
    tc__l1_destroy(l1);
}

/* ------------------------------------------------------------------ */
/* Lock-free reads: growth, large values, bounded work, scans, fork    */
/* ------------------------------------------------------------------ */

enum { GROW_KEYS = 20000 };

typedef struct grow_arg {
    tc__l1 *l1;
    atomic_int published; /* keys k0..k(published-1) are in */
    atomic_int done;
    atomic_int false_misses;
    atomic_long reads;
} grow_arg;

static void *grow_reader(void *p)
{
    grow_arg *a = p;
    unsigned seed = 7;
    while (!atomic_load(&a->done)) {
        int n = atomic_load(&a->published);
        char key[32];
        int kl;
        if (n == 0)
            continue;
        kl = snprintf(key, sizeof(key), "k%d", rand_r(&seed) % n);
        if (!has(a->l1, key, (size_t)kl))
            atomic_fetch_add(&a->false_misses, 1);
        atomic_fetch_add(&a->reads, 1);
    }
    return NULL;
}

/* One shard grows from 16 slots to 32k while a reader looks up keys known
 * to be in: the incremental migration never hides one. */
Test(l1, growth_never_hides_an_entry_from_readers)
{
    grow_arg a;
    pthread_t th;
    memset(&a, 0, sizeof(a));
    a.l1 = must_l1((size_t)1 << 30, GROW_KEYS * 2, 1);
    cr_assert_eq(pthread_create(&th, NULL, grow_reader, &a), 0);
    for (int i = 0; i < GROW_KEYS; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "k%d", i);
        if (put(a.l1, key, (size_t)kl, "v", 1) != TC__FILL_INSERTED)
            cr_assert_fail("fill of %s failed", key);
        atomic_store(&a.published, i + 1);
    }
    /* Let the reader see the final state too. */
    while (atomic_load(&a.reads) < 2000)
        sched_yield();
    atomic_store(&a.done, 1);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&a.false_misses), 0,
                 "%d lookups of present keys missed",
                 atomic_load(&a.false_misses));
    cr_assert_eq(stats(a.l1).l1_entries, GROW_KEYS);
    {
        int lost = 0; /* one assertion: per-key ones flood --full-stats */
        for (int i = 0; i < GROW_KEYS; i++) {
            char key[32];
            int kl = snprintf(key, sizeof(key), "k%d", i);
            lost += !has(a.l1, key, (size_t)kl);
        }
        cr_assert_eq(lost, 0, "%d keys lost", lost);
    }
    tc__l1_destroy(a.l1);
}

/* Values above TC__L1_COPY_MAX are handed out by reference: they too
 * outlive replacement, invalidation and the store. */
Test(l1, large_values_outlive_replacement_invalidation_and_destroy)
{
    enum { BIG = TC__L1_COPY_MAX * 4 };
    static char one[BIG], two[BIG];
    tc__l1 *l1 = must_l1(1 << 20, 100, 1);
    tc_value *a, *b, *c;
    memset(one, '1', sizeof(one));
    memset(two, '2', sizeof(two));
    cr_assert_eq(put(l1, "k", 1, one, BIG), TC__FILL_INSERTED);
    a = get(l1, "k", 1);
    cr_assert_not_null(a);
    cr_assert_eq(put(l1, "k", 1, two, BIG), TC__FILL_INSERTED);
    b = get(l1, "k", 1);
    cr_assert_not_null(b);
    tc__l1_invalidate_key(l1, tc__hash("k", 1), "k", 1);
    cr_assert_null(get(l1, "k", 1));
    cr_assert_eq(put(l1, "k", 1, one, BIG), TC__FILL_INSERTED);
    c = get(l1, "k", 1);
    tc__l1_destroy(l1);
    cr_assert_eq(tc_value_len(a), BIG);
    cr_assert_arr_eq(tc_value_data(a), one, BIG);
    cr_assert_arr_eq(tc_value_data(b), two, BIG);
    cr_assert_arr_eq(tc_value_data(c), one, BIG);
    tc_value_release(a);
    tc_value_release(b);
    tc_value_release(c);
}

/* A fill into a full shard whose every entry was read evicts exactly one
 * entry (the hand gives up clearing bits after a bounded number). */
Test(l1, fill_into_fully_visited_shard_evicts_one)
{
    enum { N = 2000 };
    tc__l1 *l1 = must_l1((size_t)1 << 30, N, 1);
    char key[32];
    tc_stats st;
    int missing = 0;
    for (int i = 0; i < N; i++) {
        key_of(key, sizeof(key), "k", i);
        if (put_s(l1, key, "v") != TC__FILL_INSERTED)
            cr_assert_fail("fill of %s failed", key);
    }
    for (int i = 0; i < N; i++) { /* sets every visited bit */
        key_of(key, sizeof(key), "k", i);
        missing += !has_s(l1, key);
    }
    cr_assert_eq(missing, 0);
    cr_assert_eq(put_s(l1, "new", "v"), TC__FILL_INSERTED);
    st = stats(l1);
    cr_assert_eq(st.l1_entries, N);
    cr_assert_eq(st.l1_evictions, 1);
    cr_assert(has_s(l1, "new"));
    tc__l1_destroy(l1);
}

typedef struct scan_arg {
    tc__l1 *l1;
    atomic_int stop;
    atomic_int fills;
} scan_arg;

static void *other_filler(void *p)
{
    scan_arg *a = p;
    for (int i = 0; !atomic_load(&a->stop); i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "o%d", i % 5000);
        int rc = put(a->l1, key, (size_t)kl, "v", 1);
        if (rc == TC__FILL_INSERTED)
            atomic_fetch_add(&a->fills, 1);
        if (i % 7 == 0)
            tc__l1_invalidate_key(a->l1, tc__hash(key, (size_t)kl), key,
                                  (size_t)kl);
    }
    return NULL;
}

/* A prefix scan walks the shard a chunk at a time while other writers
 * replace, add and remove other keys in the same shard: it still drops
 * every matching entry and nothing else. */
Test(l1, chunked_scan_with_concurrent_writers_drops_exactly_matching)
{
    enum { M = 20000 };
    scan_arg a;
    pthread_t th;
    size_t dropped;
    memset(&a, 0, sizeof(a));
    a.l1 = must_l1((size_t)1 << 30, 100000, 2);
    for (int i = 0; i < M; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "p:%d", i);
        if (put(a.l1, key, (size_t)kl, "v", 1) != TC__FILL_INSERTED)
            cr_assert_fail("fill of %s failed", key);
    }
    cr_assert_eq(pthread_create(&th, NULL, other_filler, &a), 0);
    while (atomic_load(&a.fills) < 100)
        sched_yield();
    dropped = tc__l1_invalidate_prefix(a.l1, "p:", 2);
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
    cr_assert_eq(dropped, M);
    {
        int survived = 0;
        for (int i = 0; i < M; i++) {
            char key[32];
            int kl = snprintf(key, sizeof(key), "p:%d", i);
            survived += has(a.l1, key, (size_t)kl);
        }
        cr_assert_eq(survived, 0, "%d matching keys survived", survived);
    }
    {
        uint64_t n = 0, bytes = 0;
        tc_stats st = stats(a.l1);
        for (int i = 0; i < 5000; i++) {
            char key[32];
            int kl = snprintf(key, sizeof(key), "o%d", i);
            tc_value *v = get(a.l1, key, (size_t)kl);
            if (v) {
                n++;
                bytes += TC__L1_OVERHEAD + (size_t)kl + 1;
                tc_value_release(v);
            }
        }
        cr_assert_eq(n, st.l1_entries);
        cr_assert_eq(bytes, st.l1_bytes);
    }
    tc__l1_destroy(a.l1);
}
