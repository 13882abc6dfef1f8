/* get_or_load: concurrent misses call the loader once and share its result;
 * loader failures reach every waiter and cache nothing. */
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

#define NTHREADS 16

REDIS_SUITE(single_flight);

typedef struct shared {
    tc_cache *c;
    atomic_int loads;     /* loader invocations */
    atomic_int loading, most_loading; /* loads running now, and at most */
    atomic_int waited_out; /* loads that gave up waiting for the others */
    tc_result loader_result;
    tc_result results[NTHREADS];
    char *values[NTHREADS];
} shared;

/* Every thread has looked in L1 and missed (each call counts one L1 miss,
 * or one bypass while the bus is not yet proven). */
static int all_missed_l1(void *p)
{
    tc_stats st;
    tc_cache_stats(((shared *)p)->c, &st);
    return st.l1_misses + st.l1_bypassed >= NTHREADS;
}

/* Holds the load open until every thread has missed L1, so that without
 * single-flight every one of them would go on to load, all at once. */
static tc_result slow_loader(void *ud, const void *key, size_t klen,
                             void **val, size_t *vlen)
{
    shared *s = ud;
    int now, most;
    (void)key, (void)klen;
    atomic_fetch_add(&s->loads, 1);
    now = atomic_fetch_add(&s->loading, 1) + 1;
    most = atomic_load(&s->most_loading);
    while (now > most &&
           !atomic_compare_exchange_weak(&s->most_loading, &most, now)) {
    }
    if (!tcr_wait(all_missed_l1, s, AWAIT_MS))
        atomic_fetch_add(&s->waited_out, 1);
    atomic_fetch_sub(&s->loading, 1);
    if (s->loader_result != TC_OK)
        return s->loader_result;
    *val = strdup("loaded-value");
    *vlen = strlen("loaded-value");
    return TC_OK;
}

typedef struct targ {
    shared *s;
    int i;
} targ;

static void *worker(void *p)
{
    targ *t = p;
    tc_value *v = NULL;
    t->s->results[t->i] =
        tc_get_or_load(t->s->c, "user:1", 6, slow_loader, t->s, 5000, &v);
    if (v) {
        t->s->values[t->i] = strndup(tc_value_data(v), tc_value_len(v));
        tc_value_release(v);
    }
    return NULL;
}

static void run_threads(shared *s)
{
    pthread_t th[NTHREADS];
    targ a[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        a[i] = (targ){s, i};
        cr_assert_eq(pthread_create(&th[i], NULL, worker, &a[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&s->waited_out), 0,
                 "not every thread reached its L1 lookup");
}

Test(single_flight, sixteen_threads_one_load)
{
    tc_options o = test_opts(&srv);
    shared s;
    char *raw;
    memset(&s, 0, sizeof(s));
    s.c = must_create(&o);
    s.loader_result = TC_OK;
    run_threads(&s);
    /* Every thread missed L1 before the one load ended, and a late joiner
     * finds the stored value: one load in all. */
    cr_assert_eq(atomic_load(&s.loads), 1, "loader called %d times",
                 atomic_load(&s.loads));
    for (int i = 0; i < NTHREADS; i++) {
        cr_assert_eq(s.results[i], TC_OK, "thread %d: %s", i,
                     tc_strerror(s.results[i]));
        cr_assert_str_eq(s.values[i], "loaded-value");
        free(s.values[i]);
    }
    /* Stored in L2 with the caller's TTL, and in L1. */
    raw = tcr_cmd(&srv, NULL, "GET", "user:1", NULL);
    cr_assert_str_eq(raw, "loaded-value");
    free(raw);
    raw = tcr_cmd(&srv, NULL, "PTTL", "user:1", NULL);
    cr_assert(atol(raw) > 0 && atol(raw) <= 5000, "PTTL %s", raw);
    free(raw);
    cr_assert(l1_holds(s.c, "user:1", "loaded-value"));
    {
        tc_stats st;
        tc_cache_stats(s.c, &st);
        cr_assert_eq(st.loader_calls, 1);
    }
    tc_cache_destroy(s.c);
}

Test(single_flight, loader_error_reaches_every_waiter_and_caches_nothing)
{
    tc_options o = test_opts(&srv);
    shared s;
    char *raw;
    memset(&s, 0, sizeof(s));
    s.c = must_create(&o);
    s.loader_result = TC_LOADER;
    run_threads(&s);
    /* A thread that missed L1 but joined after the failed flight ended
     * leads a flight of its own and loads again (a failure is not cached):
     * correct. What single-flight forbids is two loads at once. */
    cr_assert_eq(atomic_load(&s.most_loading), 1, "%d loads ran at once",
                 atomic_load(&s.most_loading));
    for (int i = 0; i < NTHREADS; i++) {
        cr_assert_eq(s.results[i], TC_LOADER, "thread %d: %s", i,
                     tc_strerror(s.results[i]));
        cr_assert_null(s.values[i]);
    }
    raw = tcr_cmd(&srv, NULL, "EXISTS", "user:1", NULL);
    cr_assert_str_eq(raw, "0", "a failed load was cached in L2");
    free(raw);
    cr_assert(l1_holds(s.c, "user:1", NULL));

    /* The failure is not remembered: the next call loads again. */
    s.loader_result = TC_OK;
    {
        int before = atomic_load(&s.loads);
        tc_value *v;
        cr_assert_eq(tc_get_or_load(s.c, "user:1", 6, slow_loader, &s, 0, &v),
                     TC_OK);
        cr_assert(value_is(v, "loaded-value"));
        cr_assert_eq(atomic_load(&s.loads), before + 1);
    }
    tc_cache_destroy(s.c);
}

Test(single_flight, not_found_from_loader_is_shared_and_not_cached)
{
    tc_options o = test_opts(&srv);
    shared s;
    memset(&s, 0, sizeof(s));
    s.c = must_create(&o);
    char *raw;
    int before;
    s.loader_result = TC_NOT_FOUND;
    run_threads(&s);
    /* As for a failure: late joiners may load again, never at once. */
    cr_assert_eq(atomic_load(&s.most_loading), 1, "%d loads ran at once",
                 atomic_load(&s.most_loading));
    for (int i = 0; i < NTHREADS; i++) {
        cr_assert_eq(s.results[i], TC_NOT_FOUND, "thread %d: %s", i,
                     tc_strerror(s.results[i]));
        cr_assert_null(s.values[i]);
    }
    /* Not cached: nothing in either tier, and the next call loads again. */
    raw = tcr_cmd(&srv, NULL, "EXISTS", "user:1", NULL);
    cr_assert_str_eq(raw, "0", "a not-found load was stored in L2");
    free(raw);
    cr_assert(l1_holds(s.c, "user:1", NULL));
    before = atomic_load(&s.loads);
    {
        tc_value *v = NULL;
        cr_assert_eq(tc_get_or_load(s.c, "user:1", 6, slow_loader, &s, 0, &v),
                     TC_NOT_FOUND);
        cr_assert_null(v);
    }
    cr_assert_eq(atomic_load(&s.loads), before + 1,
                 "the not-found was remembered");
    tc_cache_destroy(s.c);
}

static tc_result never_called(void *ud, const void *key, size_t klen,
                              void **val, size_t *vlen)
{
    (void)key, (void)klen, (void)val, (void)vlen;
    ++*(int *)ud;
    return TC_LOADER;
}

Test(single_flight, l2_hit_does_not_call_loader)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_value *v;
    int calls = 0;
    char *raw = tcr_cmd(&srv, NULL, "SET", "k", "in-l2", NULL);
    free(raw);
    cr_assert_eq(tc_get_or_load(c, "k", 1, never_called, &calls, 0, &v), TC_OK);
    cr_assert_eq(calls, 0);
    cr_assert(value_is(v, "in-l2"));
    tc_cache_destroy(c);
}

/* A writer's newer value in L2 is not overwritten by a slower load. The
 * caller whose read overlapped the write gets what its loader produced (a
 * fair answer to a read that began before the write), and that losing
 * value is cached nowhere: the next read sees the write. */
static tc_result racing_loader(void *ud, const void *key, size_t klen,
                               void **val, size_t *vlen)
{
    tcr_server *s = ud;
    char *raw;
    (void)key, (void)klen;
    raw = tcr_cmd(s, NULL, "SET", "k", "written-meanwhile", NULL);
    free(raw);
    *val = strdup("old-from-db");
    *vlen = 11;
    return TC_OK;
}

Test(single_flight, load_does_not_overwrite_concurrent_write)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_value *v;
    char *raw;
    cr_assert_eq(tc_get_or_load(c, "k", 1, racing_loader, &srv, 0, &v), TC_OK);
    cr_assert(value_is(v, "old-from-db"), "the caller did not get its load");
    raw = tcr_cmd(&srv, NULL, "GET", "k", NULL);
    cr_assert_str_eq(raw, "written-meanwhile");
    free(raw);
    cr_assert(!l1_holds(c, "k", "old-from-db"),
              "L1 kept the load that lost to a write");
    raw = get_str(c, "k", NULL);
    cr_assert_str_eq(raw, "written-meanwhile", "the next read got %s", raw);
    free(raw);
    tc_cache_destroy(c);
}
