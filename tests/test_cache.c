/* Core behaviour against a real redis-server: round trips, TTLs, bounds,
 * multi-get, sizes, read-your-writes in one process. */
#include <pthread.h>

#include "cache.h"
#include "common.h"

REDIS_SUITE(cache);

Test(cache, binary_round_trip)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    const char key[] = {'k', 0, 'e', '\n', 'y', (char)0xff};
    const char val[] = {0, 1, 2, 0, 'v', (char)0x80, 0};
    tc_value *v = NULL;
    o.key_prefix = "app:";
    c = must_create(&o);

    cr_assert_eq(tc_set(c, key, sizeof(key), val, sizeof(val), 0), TC_OK,
                 "%s", tc_errmsg());
    /* Served from L1 in the writer. */
    cr_assert_eq(tc_peek(c, key, sizeof(key), &v), TC_OK);
    cr_assert_eq(tc_value_len(v), sizeof(val));
    cr_assert_arr_eq(tc_value_data(v), val, sizeof(val));
    tc_value_release(v);

    tc_cache_destroy(c);

    /* A fresh instance (empty L1) reads it back from L2. */
    c = must_create(&o);
    cr_assert_eq(tc_peek(c, key, sizeof(key), &v), TC_NOT_FOUND);
    cr_assert_eq(tc_get(c, key, sizeof(key), &v), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_value_len(v), sizeof(val));
    cr_assert_arr_eq(tc_value_data(v), val, sizeof(val));
    tc_value_release(v);
    tc_cache_destroy(c);
}

static int applied_one(void *p)
{
    tc_stats st;
    tc_cache_stats(p, &st);
    return st.inval_applied >= 1;
}

/* L2 and the bus over a unix socket, with a database number. */
Test(cache, unix_socket_with_db)
{
    tc_options o = test_opts(&srv);
    tc_cache *a, *b;
    char url[512], *s;
    snprintf(url, sizeof(url), "%s?db=3", srv.unix_url);
    o.url = url;
    a = must_create(&o);
    b = must_create(&o);
    cr_assert_eq(set_str(a, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    /* a's invalidation of "k" must not race with b's fill below (b would
     * rightly refuse the fill): let b apply it first. */
    cr_assert(tcr_wait(applied_one, b, 10000), "b never applied a's write");
    s = get_str(b, "k", NULL);
    cr_assert_str_eq(s, "v1");
    free(s);
    cr_assert(l1_holds(b, "k", "v1"));
    cr_assert_eq(set_str(a, "k", "v2", 0), TC_OK);
    for (int i = 0; i < 5000 && l1_holds(b, "k", "v1"); i++)
        tcr_sleep_ms(1);
    cr_assert(!l1_holds(b, "k", "v1"), "no invalidation over the unix socket");
    s = tcr_cmd(&srv, NULL, "EVAL",
                "redis.call('SELECT', 3) return redis.call('GET', 'k')", "0",
                NULL);
    cr_assert_str_eq(s, "v2", "value not in db 3");
    free(s);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

Test(cache, prefix_applies_to_l2_keys)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    char *raw;
    o.key_prefix = "svc:";
    c = must_create(&o);
    cr_assert_eq(set_str(c, "user:1", "alice", 0), TC_OK);
    raw = tcr_cmd(&srv, NULL, "GET", "svc:user:1", NULL);
    cr_assert_str_eq(raw, "alice");
    free(raw);
    raw = tcr_cmd(&srv, NULL, "EXISTS", "user:1", NULL);
    cr_assert_str_eq(raw, "0");
    free(raw);
    tc_cache_destroy(c);
}

Test(cache, get_missing_and_delete)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_result r;
    char *s;
    s = get_str(c, "nope", &r);
    cr_assert_null(s);
    cr_assert_eq(r, TC_NOT_FOUND);
    cr_assert_eq(set_str(c, "k", "v", 0), TC_OK);
    cr_assert_eq(tc_del(c, "k", 1), TC_OK);
    cr_assert(l1_holds(c, "k", NULL));
    s = get_str(c, "k", &r);
    cr_assert_eq(r, TC_NOT_FOUND);
    free(s);
    /* Deleting what is absent is fine. */
    cr_assert_eq(tc_del(c, "k", 1), TC_OK);
    tc_cache_destroy(c);
}

Test(cache, l2_ttl_expires)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    char *raw;
    long pttl;
    cr_assert_eq(set_str(c, "short", "v", 300), TC_OK);
    raw = tcr_cmd(&srv, NULL, "PTTL", "short", NULL);
    pttl = atol(raw);
    free(raw);
    cr_assert(pttl > 0 && pttl <= 300, "PTTL %ld", pttl);
    tcr_sleep_ms(450);
    raw = tcr_cmd(&srv, NULL, "EXISTS", "short", NULL);
    cr_assert_str_eq(raw, "0", "L2 entry outlived its TTL");
    free(raw);
    tc_cache_destroy(c);
}

/* L1 entries expire at the L1 TTL while L2 still has the key. */
Test(cache, l1_ttl_expires_before_l2)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_set_opts so = {60000, 150, 0};
    tc_stats st;
    char *s;
    o.coherence = TC_COHERENCE_NONE;
    c = must_create(&o);
    cr_assert_eq(tc_set_ex(c, "k", 1, "v1", 2, &so), TC_OK);
    cr_assert(l1_holds(c, "k", "v1"));
    tcr_sleep_ms(200 + 20);
    /* Gone from L1 ... */
    cr_assert(l1_holds(c, "k", NULL), "L1 served past its TTL");
    tc_cache_stats(c, &st);
    cr_assert_geq(st.l1_expirations, 1);
    /* ... still in L2. */
    s = get_str(c, "k", NULL);
    cr_assert_str_eq(s, "v1");
    free(s);
    tc_cache_destroy(c);
}

/* An L1 fill from L2 never outlives the L2 entry's remaining TTL. */
Test(cache, l1_fill_clamped_to_l2_ttl)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    char *raw;
    o.coherence = TC_COHERENCE_NONE;
    o.l1_ttl_ms = 60000;
    c = must_create(&o);
    raw = tcr_cmd(&srv, NULL, "SET", "k", "v", "PX", "200", NULL);
    free(raw);
    raw = get_str(c, "k", NULL);
    cr_assert_str_eq(raw, "v");
    free(raw);
    cr_assert(l1_holds(c, "k", "v"));
    tcr_sleep_ms(260);
    cr_assert(l1_holds(c, "k", NULL), "L1 outlived the L2 TTL");
    tc_cache_destroy(c);
}

Test(cache, l1_byte_bound_holds_under_heavy_insertion)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_stats st;
    char key[32], val[200];
    const size_t cap = 256 * 1024;
    o.coherence = TC_COHERENCE_NONE;
    o.l1_max_bytes = cap;
    o.l1_shards = 4;
    c = must_create(&o);
    memset(val, 'x', sizeof(val));
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof(key), "key:%d", i);
        cr_assert_eq(tc_set(c, key, (size_t)n, val, 50 + (size_t)(i % 150),
                            0), TC_OK);
        if (i % 97 == 0) {
            tc_cache_stats(c, &st);
            cr_assert_leq(st.l1_bytes, cap, "L1 at %llu bytes > %zu",
                          (unsigned long long)st.l1_bytes, cap);
        }
    }
    tc_cache_stats(c, &st);
    cr_assert_leq(st.l1_bytes, cap);
    cr_assert_gt(st.l1_evictions, 0);
    cr_assert_gt(st.l1_entries, 100);
    tc_cache_destroy(c);
}

Test(cache, l1_entry_bound_holds)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_stats st;
    char key[32];
    o.coherence = TC_COHERENCE_NONE;
    o.l1_max_entries = 64;
    o.l1_shards = 2;
    c = must_create(&o);
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(tc_set(c, key, (size_t)n, "v", 1, 0), TC_OK);
    }
    tc_cache_stats(c, &st);
    cr_assert_leq(st.l1_entries, 64);
    tc_cache_destroy(c);
}

/* Hot keys that are read between insertions survive a stream of cold ones. */
Test(cache, eviction_keeps_hot_keys)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    char key[32];
    int hot_kept = 0;
    o.coherence = TC_COHERENCE_NONE;
    o.l1_max_entries = 200;
    o.l1_shards = 1;
    c = must_create(&o);
    for (int i = 0; i < 20; i++) {
        int n = snprintf(key, sizeof(key), "hot%d", i);
        cr_assert_eq(tc_set(c, key, (size_t)n, "h", 1, 0), TC_OK);
    }
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(key, sizeof(key), "cold%d", i);
        cr_assert_eq(tc_set(c, key, (size_t)n, "c", 1, 0), TC_OK);
        if (i % 20 == 0)
            for (int h = 0; h < 20; h++) {
                tc_value *v;
                n = snprintf(key, sizeof(key), "hot%d", h);
                if (tc_peek(c, key, (size_t)n, &v) == TC_OK)
                    tc_value_release(v);
            }
    }
    for (int h = 0; h < 20; h++) {
        char k2[32];
        snprintf(k2, sizeof(k2), "hot%d", h);
        hot_kept += l1_holds(c, k2, "h");
    }
    cr_assert_geq(hot_kept, 18, "only %d of 20 hot keys kept", hot_kept);
    tc_cache_destroy(c);
}

Test(cache, mget_one_round_trip_for_all_misses)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_stats before, after;
    const char *keys[6] = {"l1a", "l1b", "l2a", "l2b", "missa", "missb"};
    size_t klens[6];
    tc_value *out[6];
    tc_result res[6];
    char *raw;
    o.coherence = TC_COHERENCE_NONE;
    c = must_create(&o);
    for (int i = 0; i < 6; i++)
        klens[i] = strlen(keys[i]);
    cr_assert_eq(set_str(c, "l1a", "A", 0), TC_OK);
    cr_assert_eq(set_str(c, "l1b", "B", 0), TC_OK);
    raw = tcr_cmd(&srv, NULL, "MSET", "l2a", "C", "l2b", "D", NULL);
    free(raw);

    tc_cache_stats(c, &before);
    cr_assert_eq(tc_mget(c, 6, (const void *const *)keys, klens, out, res),
                 TC_OK, "%s", tc_errmsg());
    tc_cache_stats(c, &after);
    cr_assert_eq(after.l2_round_trips - before.l2_round_trips, 1,
                 "misses took %llu round trips",
                 (unsigned long long)(after.l2_round_trips -
                                      before.l2_round_trips));
    cr_assert_eq(after.l1_hits - before.l1_hits, 2);
    cr_assert_eq(after.l2_hits - before.l2_hits, 2);
    cr_assert_eq(after.l2_misses - before.l2_misses, 2);
    const char *want[6] = {"A", "B", "C", "D", NULL, NULL};
    for (int i = 0; i < 6; i++) {
        if (want[i]) {
            cr_assert_eq(res[i], TC_OK, "key %s", keys[i]);
            cr_assert_eq(tc_value_len(out[i]), 1);
            cr_assert_eq(memcmp(tc_value_data(out[i]), want[i], 1), 0);
            tc_value_release(out[i]);
        } else {
            cr_assert_eq(res[i], TC_NOT_FOUND, "key %s", keys[i]);
            cr_assert_null(out[i]);
        }
    }
    /* The L2 hits were filled into L1: now zero round trips. */
    tc_cache_stats(c, &before);
    cr_assert_eq(tc_mget(c, 4, (const void *const *)keys, klens, out, res),
                 TC_OK);
    tc_cache_stats(c, &after);
    cr_assert_eq(after.l2_round_trips, before.l2_round_trips);
    for (int i = 0; i < 4; i++)
        tc_value_release(out[i]);
    tc_cache_destroy(c);
}

Test(cache, oversized_key_and_value_change_nothing)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    char big[2048];
    char *raw;
    tc_value *v;
    o.max_key_bytes = 64;
    o.max_value_bytes = 1024;
    c = must_create(&o);
    memset(big, 'k', sizeof(big));
    cr_assert_eq(set_str(c, "k", "old", 0), TC_OK);
    cr_assert_eq(tc_set(c, big, 65, "v", 1, 0), TC_TOO_LARGE);
    cr_assert(strstr(tc_errmsg(), "max_key_bytes") != NULL, "%s", tc_errmsg());
    cr_assert_eq(tc_set(c, "k", 1, big, 1025, 0), TC_TOO_LARGE);
    cr_assert_eq(tc_get(c, big, 65, &v), TC_TOO_LARGE);
    cr_assert_eq(tc_del(c, big, 65), TC_TOO_LARGE);
    /* The old value is intact in both tiers. */
    cr_assert(l1_holds(c, "k", "old"));
    raw = tcr_cmd(&srv, NULL, "GET", "k", NULL);
    cr_assert_str_eq(raw, "old");
    free(raw);
    raw = tcr_cmd(&srv, NULL, "EVAL", "return #redis.call('KEYS', 'k*')", "0",
                  NULL);
    cr_assert_str_eq(raw, "1", "an oversized write reached L2");
    free(raw);
    /* Exactly at the limits is fine. */
    cr_assert_eq(tc_set(c, big, 64, big, 1024, 0), TC_OK);
    tc_cache_destroy(c);
}

Test(cache, bad_arguments)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_value *v;
    tc_set_opts so = {0, 0, TC_SET_NX | TC_SET_XX};
    cr_assert_eq(tc_get(NULL, "k", 1, &v), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_get(c, NULL, 1, &v), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_get(c, "k", 0, &v), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_get(c, "k", 1, NULL), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_set(c, "k", 1, NULL, 3, 0), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_set_ex(c, "k", 1, "v", 1, &so), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_get_or_load(c, "k", 1, NULL, NULL, 0, &v), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_invalidate_pattern(c, ""), TC_BAD_ARGUMENT);
    cr_assert_str_neq(tc_strerror(TC_BAD_ARGUMENT), "");
    cr_assert_str_eq(tc_strerror((tc_result)999), "unknown result code");
    tc_cache_destroy(NULL);
    tc_value_release(NULL);
    tc_cache_destroy(c);
}

Test(cache, set_nx_xx)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_set_opts nx = {0, 0, TC_SET_NX}, xx = {0, 0, TC_SET_XX};
    char *s;
    cr_assert_eq(tc_set_ex(c, "k", 1, "a", 1, &xx), TC_NOT_STORED);
    cr_assert_eq(tc_set_ex(c, "k", 1, "a", 1, &nx), TC_OK);
    cr_assert_eq(tc_set_ex(c, "k", 1, "b", 1, &nx), TC_NOT_STORED);
    s = get_str(c, "k", NULL);
    cr_assert_str_eq(s, "a");
    free(s);
    cr_assert_eq(tc_set_ex(c, "k", 1, "c", 1, &xx), TC_OK);
    s = get_str(c, "k", NULL);
    cr_assert_str_eq(s, "c");
    free(s);
    tc_cache_destroy(c);
}

Test(cache, pttl)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    int64_t ttl = 0;
    tc_set_opts forever = {TC_TTL_NONE, 0, 0};
    cr_assert_eq(tc_pttl(c, "none", 4, &ttl), TC_NOT_FOUND);
    cr_assert_eq(set_str(c, "k", "v", 5000), TC_OK);
    cr_assert_eq(tc_pttl(c, "k", 1, &ttl), TC_OK);
    cr_assert(ttl > 0 && ttl <= 5000);
    cr_assert_eq(tc_set_ex(c, "p", 1, "v", 1, &forever), TC_OK);
    cr_assert_eq(tc_pttl(c, "p", 1, &ttl), TC_OK);
    cr_assert_eq(ttl, -1);
    tc_cache_destroy(c);
}

Test(cache, disabled_cache_is_pass_through)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_value *v;
    o.enabled = TC_NO;
    c = must_create(&o);
    cr_assert_eq(tc_set(c, "k", 1, "v", 1, 0), TC_DISABLED);
    cr_assert_eq(tc_get(c, "k", 1, &v), TC_NOT_FOUND);
    tc_cache_destroy(c);
    {
        char *raw = tcr_cmd(&srv, NULL, "DBSIZE", NULL);
        cr_assert_str_eq(raw, "0");
        free(raw);
    }
}

/* Two writer threads racing on one key: whatever order L2 ends in, the
 * writers' L1 must agree with L2 afterwards (no stale copy kept). */
typedef struct race_arg {
    tc_cache *c;
    int id;
} race_arg;

static void *race_writer(void *p)
{
    race_arg *a = p;
    char val[16];
    for (int i = 0; i < 300; i++) {
        int n = snprintf(val, sizeof(val), "w%d-%d", a->id, i);
        tc_set(a->c, "race", 4, val, (size_t)n, 0);
    }
    return NULL;
}

Test(cache, concurrent_writers_leave_l1_consistent_with_l2)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    pthread_t t[4];
    race_arg a[4];
    tc_value *v;
    char *raw;
    o.coherence = TC_COHERENCE_NONE;
    c = must_create(&o);
    for (int i = 0; i < 4; i++) {
        a[i] = (race_arg){c, i};
        pthread_create(&t[i], NULL, race_writer, &a[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    raw = tcr_cmd(&srv, NULL, "GET", "race", NULL);
    if (tc_peek(c, "race", 4, &v) == TC_OK) {
        cr_assert_eq(tc_value_len(v), strlen(raw));
        cr_assert_eq(memcmp(tc_value_data(v), raw, strlen(raw)), 0,
                     "L1 kept a value L2 no longer has");
        tc_value_release(v);
    }
    free(raw);
    tc_cache_destroy(c);
}

/* A value handed out stays valid after the entry is replaced and evicted
 * and the cache is destroyed. */
Test(cache, values_outlive_entries)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_value *v;
    cr_assert_eq(set_str(c, "k", "first", 0), TC_OK);
    cr_assert_eq(tc_get(c, "k", 1, &v), TC_OK);
    cr_assert_eq(set_str(c, "k", "second", 0), TC_OK);
    cr_assert_eq(tc_invalidate_all(c), TC_OK);
    tc_cache_destroy(c);
    cr_assert_eq(tc_value_len(v), 5);
    cr_assert_eq(memcmp(tc_value_data(v), "first", 5), 0);
    tc_value_release(v);
}

Test(cache, health_reports_latency)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_health h;
    cr_assert_eq(tc_cache_health(c, &h), TC_OK);
    cr_assert_eq(h.l2_up, 1);
    cr_assert_eq(h.breaker_open, 0);
    tc_cache_destroy(c);
}

Test(cache, invalidate_prefix_and_pattern_delete_l2_keys_with_scan)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    char key[32], *raw;
    o.key_prefix = "p:";
    c = must_create(&o);
    for (int i = 0; i < 2500; i++) {
        int n = snprintf(key, sizeof(key), "user:%d", i);
        cr_assert_eq(tc_set(c, key, (size_t)n, "v", 1, 0), TC_OK);
    }
    cr_assert_eq(set_str(c, "org:1", "o", 0), TC_OK);
    cr_assert_eq(set_str(c, "u*ser", "star", 0), TC_OK);
    raw = tcr_cmd(&srv, NULL, "SET", "other:user:1", "x", NULL);
    free(raw);
    cr_assert_eq(tc_invalidate_prefix(c, "user:", 5), TC_OK, "%s", tc_errmsg());
    raw = tcr_cmd(&srv, NULL, "EVAL", "return #redis.call('KEYS', '*:*')", "0",
                  NULL);
    /* p:org:1, p:u*ser, other:user:1, and the bus's members, clock and
     * stamps keys. */
    cr_assert_str_eq(raw, "6");
    free(raw);
    cr_assert(l1_holds(c, "user:7", NULL));
    cr_assert(l1_holds(c, "org:1", "o"));
    /* A prefix with glob characters is taken literally. */
    cr_assert_eq(tc_invalidate_prefix(c, "u*", 2), TC_OK);
    raw = tcr_cmd(&srv, NULL, "EXISTS", "p:u*ser", NULL);
    cr_assert_str_eq(raw, "0");
    free(raw);
    cr_assert_eq(tc_invalidate_pattern(c, "o?g:*"), TC_OK);
    raw = tcr_cmd(&srv, NULL, "EVAL", "return #redis.call('KEYS', 'p:*')", "0",
                  NULL);
    cr_assert_str_eq(raw, "0");
    free(raw);
    cr_assert(l1_holds(c, "org:1", NULL));
    tc_cache_destroy(c);
}
