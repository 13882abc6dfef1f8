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
    /* No bus: L1 is served without waiting for a proof of liveness. */
    o.coherence = TC_COHERENCE_NONE;
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
    warm(b, "k", "v1");
    cr_assert_eq(set_str(a, "k", "v2", 0), TC_OK);
    {
        holds_arg h = {b, "k", "v1"};
        AWAIT(l1_drops, &h, "no invalidation over the unix socket");
    }
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

/* Set `key` with an L2 TTL of `ttl_ms` and read its PTTL back. A stall
 * longer than the TTL between the two (a loaded machine) finds the key
 * already gone, which shows nothing either way: that try is repeated. */
typedef struct ttl_arg {
    tc_cache *c;
    const char *key;
    long ttl_ms, pttl;
    double set_at; /* tcr_now_ms() when the write returned */
} ttl_arg;

static int set_then_pttl(void *p)
{
    ttl_arg *a = p;
    char *raw;
    cr_assert_eq(set_str(a->c, a->key, "v", (uint64_t)a->ttl_ms), TC_OK);
    a->set_at = tcr_now_ms();
    raw = tcr_cmd(&srv, NULL, "PTTL", a->key, NULL);
    cr_assert_not_null(raw);
    a->pttl = atol(raw);
    free(raw);
    return a->pttl != -2;
}

Test(cache, l2_ttl_expires)
{
    tc_options o = test_opts(&srv);
    ttl_arg a = {NULL, "short", 300, 0, 0};
    char *raw;
    a.c = must_create(&o);
    AWAIT(set_then_pttl, &a, "the key never lived to be read back");
    cr_assert(a.pttl > 0 && a.pttl <= a.ttl_ms, "PTTL %ld", a.pttl);
    /* The TTL, counted from after the write returned, and a little for the
     * server clock's millisecond resolution. */
    tcr_sleep_until_ms(a.set_at + (double)a.ttl_ms + 5);
    raw = tcr_cmd(&srv, NULL, "EXISTS", "short", NULL);
    cr_assert_str_eq(raw, "0", "L2 entry outlived its TTL");
    free(raw);
    tc_cache_destroy(a.c);
}

/* L1 entries expire at the L1 TTL while L2 still has the key. */
typedef struct l1_ttl_arg {
    tc_cache *c;
    tc_set_opts so;
    double set_at; /* tcr_now_ms() when the write returned */
} l1_ttl_arg;

/* Write, then see the entry in L1; a stall past the L1 TTL in between
 * shows nothing, and that try is repeated. */
static int set_then_held(void *p)
{
    l1_ttl_arg *a = p;
    cr_assert_eq(tc_set_ex(a->c, "k", 1, "v1", 2, &a->so), TC_OK);
    a->set_at = tcr_now_ms();
    return l1_holds(a->c, "k", "v1");
}

Test(cache, l1_ttl_expires_before_l2)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    l1_ttl_arg a = {NULL, {60000, 150, 0}, 0};
    tc_stats st;
    char *s;
    o.coherence = TC_COHERENCE_NONE;
    c = a.c = must_create(&o);
    AWAIT(set_then_held, &a, "the write never showed in L1");
    /* The entry's deadline was set before the write returned. */
    tcr_sleep_until_ms(a.set_at + (double)a.so.l1_ttl_ms + 1);
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
typedef struct fill_arg {
    tc_cache *c;
    double read_at; /* tcr_now_ms() when the read returned */
} fill_arg;

/* Set k in L2 behind the cache's back with a 200 ms TTL and read it
 * through the cache into L1. A stall past the TTL before the read finds
 * nothing to fill, and that try is repeated. */
static int l2_set_then_filled(void *p)
{
    fill_arg *a = p;
    tc_result r;
    char *raw = tcr_cmd(&srv, NULL, "SET", "k", "v", "PX", "200", NULL);
    free(raw);
    raw = get_str(a->c, "k", &r);
    a->read_at = tcr_now_ms();
    cr_assert(r == TC_OK || r == TC_NOT_FOUND, "%s", tc_strerror(r));
    cr_assert(!raw || strcmp(raw, "v") == 0, "read %s", raw);
    free(raw);
    return r == TC_OK && l1_holds(a->c, "k", "v");
}

Test(cache, l1_fill_clamped_to_l2_ttl)
{
    tc_options o = test_opts(&srv);
    fill_arg a;
    o.coherence = TC_COHERENCE_NONE;
    o.l1_ttl_ms = 60000;
    a.c = must_create(&o);
    AWAIT(l2_set_then_filled, &a, "the L2 value never reached L1");
    /* The fill's deadline was set before the read returned, at most the
     * 200 ms the key had left in L2 (the 60 s L1 TTL, unclamped, would
     * keep it). */
    tcr_sleep_until_ms(a.read_at + 200 + 1);
    cr_assert(l1_holds(a.c, "k", NULL), "L1 outlived the L2 TTL");
    tc_cache_destroy(a.c);
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
    /* The writes went to L1 (an L1 that kept nothing would be "bounded"
     * too): every entry beyond the bound was evicted, none lost otherwise. */
    cr_assert_gt(st.l1_entries, 0, "L1 kept none of the writes");
    cr_assert_eq(st.l1_evictions, 1000 - st.l1_entries,
                 "%llu evictions, %llu entries after 1000 writes",
                 (unsigned long long)st.l1_evictions,
                 (unsigned long long)st.l1_entries);
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

static tc_result count_load(void *ud, const void *key, size_t klen,
                            void **val, size_t *vlen)
{
    ++*(int *)ud;
    *val = malloc(klen + 5);
    memcpy(*val, "from:", 5);
    memcpy((char *)*val + 5, key, klen);
    *vlen = klen + 5;
    return TC_OK;
}

/* README: with caching disabled, gets miss, get_or_load calls the loader
 * (every time: nothing is cached), writes return TC_DISABLED, and Redis is
 * never touched. */
Test(cache, disabled_cache_is_pass_through)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_value *v;
    tc_stats st;
    const char *keys[2] = {"k", "j"};
    size_t klens[2] = {1, 1};
    tc_value *out[2];
    tc_result res[2];
    int loads = 0;
    char *raw;
    o.enabled = TC_NO;
    raw = tcr_cmd(&srv, NULL, "SET", "k", "in-l2", NULL);
    free(raw);
    c = must_create(&o);
    cr_assert_eq(tc_set(c, "k", 1, "v", 1, 0), TC_DISABLED);
    cr_assert_eq(tc_del(c, "k", 1), TC_DISABLED);
    v = (tc_value *)1;
    cr_assert_eq(tc_get(c, "k", 1, &v), TC_NOT_FOUND, "read L2 while disabled");
    cr_assert_null(v);
    cr_assert_eq(tc_mget(c, 2, (const void *const *)keys, klens, out, res),
                 TC_OK);
    cr_assert(res[0] == TC_NOT_FOUND && res[1] == TC_NOT_FOUND);
    cr_assert(out[0] == NULL && out[1] == NULL);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tc_get_or_load(c, "k", 1, count_load, &loads, 0, &v),
                     TC_OK);
        cr_assert(value_is(v, "from:k"), "get_or_load did not pass through");
        cr_assert_eq(loads, i + 1, "the loaded value was cached");
    }
    tc_cache_stats(c, &st);
    cr_assert_eq(st.l1_entries, 0);
    cr_assert_eq(st.l2_round_trips, 0, "a disabled cache talked to Redis");
    tc_cache_destroy(c);
    raw = tcr_cmd(&srv, NULL, "KEYS", "*", NULL);
    cr_assert_str_eq(raw, "k", "Redis changed: %s", raw);
    free(raw);
    raw = tcr_cmd(&srv, NULL, "GET", "k", NULL);
    cr_assert_str_eq(raw, "in-l2");
    free(raw);
}

/* Writer threads racing on one key: whatever order L2 ends in, the
 * writers' L1 must agree with L2 afterwards (no stale copy kept). L1 may
 * also end empty (a writer whose fill lost the race drops the key), which
 * is consistent but checks nothing; so the race is run in rounds until L1
 * ended holding a value 20 times, every one of them compared. */
enum { RACE_THREADS = 4, RACE_WRITES = 100, RACE_ROUNDS = 400,
       RACE_COMPARED = 20 };

typedef struct race_arg {
    tc_cache *c;
    int id, round;
    pthread_barrier_t *start; /* all writers begin together */
} race_arg;

static void *race_writer(void *p)
{
    race_arg *a = p;
    char val[32];
    pthread_barrier_wait(a->start);
    for (int i = 0; i < RACE_WRITES; i++) {
        int n = snprintf(val, sizeof(val), "r%d-w%d-%d", a->round, a->id, i);
        tc_set(a->c, "race", 4, val, (size_t)n, 0);
    }
    return NULL;
}

Test(cache, concurrent_writers_leave_l1_consistent_with_l2)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    int compared = 0, rounds = 0;
    o.coherence = TC_COHERENCE_NONE;
    c = must_create(&o);
    for (; rounds < RACE_ROUNDS && compared < RACE_COMPARED; rounds++) {
        pthread_t t[RACE_THREADS];
        race_arg a[RACE_THREADS];
        pthread_barrier_t start;
        tc_value *v;
        char *raw;
        pthread_barrier_init(&start, NULL, RACE_THREADS);
        for (int i = 0; i < RACE_THREADS; i++) {
            a[i] = (race_arg){c, i, rounds, &start};
            cr_assert_eq(pthread_create(&t[i], NULL, race_writer, &a[i]), 0);
        }
        for (int i = 0; i < RACE_THREADS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
        raw = tcr_cmd(&srv, NULL, "GET", "race", NULL);
        cr_assert_not_null(raw);
        if (tc_peek(c, "race", 4, &v) == TC_OK) {
            compared++;
            cr_assert(tc_value_len(v) == strlen(raw) &&
                          memcmp(tc_value_data(v), raw, strlen(raw)) == 0,
                      "round %d: L1 kept %.*s, L2 has %s", rounds,
                      (int)tc_value_len(v), (const char *)tc_value_data(v),
                      raw);
            tc_value_release(v);
        }
        free(raw);
    }
    cr_assert_eq(compared, RACE_COMPARED,
                 "L1 held the key after only %d of %d races: nothing to "
                 "compare",
                 compared, rounds);
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

/* The reported latency is the PING's round trip: more than nothing, and no
 * more than the whole call took, measured around it (no fixed bound). */
Test(cache, health_reports_latency)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_health h;
    double before, after;
    memset(&h, 0xff, sizeof(h));
    before = tcr_now_ms();
    cr_assert_eq(tc_cache_health(c, &h), TC_OK);
    after = tcr_now_ms();
    cr_assert_eq(h.l2_up, 1);
    cr_assert_eq(h.breaker_open, 0);
    cr_assert_gt(h.l2_latency_us, 0, "no latency reported");
    cr_assert_leq((double)h.l2_latency_us, (after - before) * 1000.0 + 1,
                  "latency %llu us, but the call took %.0f us",
                  (unsigned long long)h.l2_latency_us,
                  (after - before) * 1000.0);
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
    /* p:org:1, p:u*ser, other:user:1, and the bus's members, clock,
     * epoch and stamps keys. */
    cr_assert_str_eq(raw, "7");
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
