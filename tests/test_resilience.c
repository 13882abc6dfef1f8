/* Read-through resilience (tc_get_or_load_ex): fail-safe answers and what
 * drops them, loader timeouts, eager refresh (also coordinated across
 * instances, and past a dead lock holder), negative caching, loader
 * TTLs, and the load lock across instances, against real redis-servers
 * that are killed or stopped where the case says so. */
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

REDIS_SUITE(resilience);

/* The lock key of `key` under the default channel and no key prefix. */
#define LOCK_KEY(key) "__tiercache:invalidate:lock:" key

/* A loader whose behaviour the test sets: the value it returns (NULL:
 * fail with TC_LOADER), TC_NOT_FOUND, a TTL to choose, and a gate it
 * waits on before returning, until the test opens it. */
typedef struct ctl {
    atomic_int calls, returned;
    atomic_int gate_closed;
    const char *value;     /* NULL: fail */
    int not_found;
    uint64_t choose_ttl;   /* non-zero: set ttl->ttl_ms */
    int (*wait_for)(void *); /* if set: wait for it before returning */
    void *wait_arg;
} ctl;

static int gate_open(void *p)
{
    return !atomic_load(&((ctl *)p)->gate_closed);
}

static tc_result loader(void *ud, const void *key, size_t klen, void **val,
                        size_t *vlen, tc_load_ttl *ttl)
{
    ctl *l = ud;
    tc_result r = TC_OK;
    (void)key, (void)klen;
    atomic_fetch_add(&l->calls, 1);
    tcr_wait(gate_open, l, AWAIT_MS * 2);
    if (l->wait_for)
        tcr_wait(l->wait_for, l->wait_arg, AWAIT_MS);
    if (l->not_found)
        r = TC_NOT_FOUND;
    else if (!l->value)
        r = TC_LOADER;
    else {
        *val = strdup(l->value);
        *vlen = strlen(l->value);
        if (l->choose_ttl)
            ttl->ttl_ms = l->choose_ttl;
    }
    atomic_fetch_add(&l->returned, 1);
    return r;
}

/* One call; the value as a string (or NULL) in *s, which the caller
 * frees. */
static tc_result load(tc_cache *c, const char *key, ctl *l,
                      const tc_load_options *o, char **s)
{
    tc_value *v = NULL;
    tc_result r = tc_get_or_load_ex(c, key, strlen(key), loader, l, o, &v);
    *s = NULL;
    if (v) {
        *s = strndup(tc_value_data(v), tc_value_len(v));
        tc_value_release(v);
    }
    return r;
}

static void expect_load(tc_cache *c, const char *key, ctl *l,
                        const tc_load_options *o, tc_result want,
                        const char *want_val)
{
    char *s;
    tc_result r = load(c, key, l, o, &s);
    cr_assert_eq(r, want, "%s: %s (%s), wanted %s", key, tc_strerror(r),
                 tc_errmsg(), tc_strerror(want));
    if (want_val)
        cr_assert(s && strcmp(s, want_val) == 0, "%s: got %s, wanted %s",
                  key, s ? s : "(null)", want_val);
    else
        cr_assert_null(s);
    free(s);
}

typedef struct key_arg {
    tcr_server *s;
    tc_cache *c;
    const char *key;
} key_arg;

/* The key is gone from L2 and L1 would not answer it. */
static int expired_everywhere(void *p)
{
    key_arg *a = p;
    char *raw = tcr_cmd(a->s, NULL, "EXISTS", a->key, NULL);
    int gone = raw && strcmp(raw, "0") == 0;
    free(raw);
    return gone && l1_serves(a->c, a->key, NULL);
}

static int background_idle(void *p)
{
    return tc__cache_background_busy(p) == 0;
}

static uint64_t stat_of(tc_cache *c, size_t off)
{
    tc_stats st;
    tc_cache_stats(c, &st);
    return *(uint64_t *)((char *)&st + off);
}
#define STAT(c, field) stat_of((c), offsetof(tc_stats, field))

/* ---- fail-safe ----------------------------------------------------------- */

Test(resilience, fail_safe_serves_stale_when_loader_fails)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "v1"};
    tc_load_options lo = {.ttl_ms = 150, .fail_safe_max_stale_ms = 600000};
    tc_load_options off = {.ttl_ms = 150};
    key_arg ka = {&srv, c, "fs"};

    expect_load(c, "fs", &l, &lo, TC_OK, "v1");
    AWAIT(expired_everywhere, &ka, "fs never expired");
    l.value = NULL; /* the database fails from now on */
    expect_load(c, "fs", &l, &lo, TC_STALE, "v1");
    cr_assert_eq(STAT(c, stale_served), 1);
    /* Without fail-safe the failure is the answer. */
    expect_load(c, "fs", &l, &off, TC_LOADER, NULL);
    cr_assert_eq(atomic_load(&l.calls), 3);
    tc_cache_destroy(c);
}

Test(resilience, fail_safe_respects_max_staleness)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "v1"};
    tc_load_options lo = {.ttl_ms = 100, .fail_safe_max_stale_ms = 8000};
    key_arg ka = {&srv, c, "ms"};
    double loaded;

    expect_load(c, "ms", &l, &lo, TC_OK, "v1");
    loaded = tcr_now_ms();
    AWAIT(expired_everywhere, &ka, "ms never expired");
    l.value = NULL;
    expect_load(c, "ms", &l, &lo, TC_STALE, "v1");
    /* Once the copy is older than the maximum, it is never served. */
    tcr_sleep_until_ms(loaded + 8000 + 50);
    expect_load(c, "ms", &l, &lo, TC_LOADER, NULL);
    tc_cache_destroy(c);
}

static int not_served_from_l1(void *p)
{
    key_arg *a = p;
    return l1_serves(a->c, a->key, NULL);
}

Test(resilience, fail_safe_while_redis_is_down_then_dropped_by_the_flush)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "v1"};
    tc_load_options lo = {.ttl_ms = 600000, .fail_safe_max_stale_ms = 600000};
    key_arg ka = {&srv, c, "down"};
    uint64_t gen0 = tc__cache_bus_generation(c);

    expect_load(c, "down", &l, &lo, TC_OK, "v1");
    tcr_kill(&srv);
    /* With the bus gone, L1 stops answering within a lease. */
    AWAIT(not_served_from_l1, &ka, "L1 kept serving with Redis dead");
    /* A working loader still answers fresh, as without options. */
    l.value = "v2";
    expect_load(c, "down", &l, &lo, TC_OK, "v2");
    /* Redis and the database down: the last known value, flagged. */
    l.value = NULL;
    expect_load(c, "down", &l, &lo, TC_STALE, "v2");

    /* Back up: the bus flushes L1 (invalidations may have been missed),
     * and that drops the fail-safe copy too. */
    cr_assert_eq(tcr_restart(&srv), 0);
    {
        uint64_t g;
        double until = tcr_now_ms() + AWAIT_MS;
        while ((g = tc__cache_bus_generation(c)) == gen0 &&
               tcr_now_ms() < until)
            tcr_sleep_ms(5);
        cr_assert_neq(g, gen0, "the bus never came back");
    }
    expect_load(c, "down", &l, &lo, TC_LOADER, NULL);
    tc_cache_destroy(c);
}

Test(resilience, fail_safe_never_after_invalidation_from_another_instance)
{
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    ctl l = {.value = "v1"};
    tc_load_options lo = {.ttl_ms = 600000, .fail_safe_max_stale_ms = 600000};
    holds_arg h = {a, "inv", "v1"};

    expect_load(a, "inv", &l, &lo, TC_OK, "v1");
    cr_assert(l1_holds(a, "inv", "v1"));
    cr_assert_eq(tc_del(b, "inv", 3), TC_OK);
    AWAIT(l1_drops, &h, "the invalidation never reached a");
    /* Redis hung: a cannot read the stamps, so only the invalidation it
     * applied can tell it that its copy is out of date. */
    tcr_pause(&srv);
    AWAIT(tcr_stopped, &srv, "redis-server never stopped");
    l.value = NULL;
    expect_load(a, "inv", &l, &lo, TC_LOADER, NULL);
    tcr_resume(&srv);
    tc_cache_destroy(b);
    tc_cache_destroy(a);
}

Test(resilience, fail_safe_dropped_when_redis_shows_a_write_it_missed)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "v1"};
    tc_load_options lo = {.ttl_ms = 150, .fail_safe_max_stale_ms = 600000};
    key_arg ka = {&srv, c, "miss"};
    char *raw;

    expect_load(c, "miss", &l, &lo, TC_OK, "v1");
    AWAIT(expired_everywhere, &ka, "miss never expired");
    /* A write elsewhere whose invalidation this instance never received:
     * all it left is the stamp every library write replaces. */
    raw = tcr_cmd(&srv, NULL, "HSET", "__tiercache:invalidate:stamps",
                  "all", "someone-else:1", NULL);
    free(raw);
    l.value = NULL;
    expect_load(c, "miss", &l, &lo, TC_LOADER, NULL);
    tc_cache_destroy(c);
}

/* ---- timeouts ------------------------------------------------------------ */

/* A background completion filled L1 too: it holds the value, unless the
 * bus was reset meanwhile (a reconnect flushes L1 and refuses fills that
 * started before it: correct, and not what is under test). */
static int filled_l1(tc_cache *c, const char *key, const char *val,
                     uint64_t resets0)
{
    return l1_holds(c, key, val) || tc__cache_bus_resets(c) != resets0;
}

static int l2_has(void *p)
{
    holds_arg *a = p; /* c unused: key and value in L2 */
    char *raw = tcr_cmd(&srv, NULL, "GET", a->key, NULL);
    int ok = raw && strcmp(raw, a->val) == 0;
    free(raw);
    return ok;
}

Test(resilience, hard_timeout_returns_while_loader_hangs_then_fills)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "late"};
    tc_load_options lo = {.hard_timeout_ms = 200};
    holds_arg h = {c, "hang", "late"};

    uint64_t resets0 = tc__cache_bus_resets(c);
    atomic_store(&l.gate_closed, 1);
    expect_load(c, "hang", &l, &lo, TC_LOADER_TIMEOUT, NULL);
    cr_assert_eq(STAT(c, loader_timeouts), 1);
    /* A second caller joins the same load and times out as well. */
    expect_load(c, "hang", &l, &lo, TC_LOADER_TIMEOUT, NULL);
    cr_assert_eq(atomic_load(&l.calls), 1);
    atomic_store(&l.gate_closed, 0);
    AWAIT(l2_has, &h, "the background load never filled L2");
    AWAIT(background_idle, c, "background work never ended");
    cr_assert(filled_l1(c, "hang", "late", resets0), "L1 was not filled");
    warm(c, "hang", "late");
    cr_assert_eq(atomic_load(&l.calls), 1);
    tc_cache_destroy(c);
}

Test(resilience, soft_timeout_serves_fail_safe_and_background_fills)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "v1"};
    tc_load_options lo = {.ttl_ms = 150, .fail_safe_max_stale_ms = 600000,
                          .soft_timeout_ms = 100};
    key_arg ka = {&srv, c, "soft"};
    holds_arg h = {c, "soft", "v2"};

    expect_load(c, "soft", &l, &lo, TC_OK, "v1");
    AWAIT(expired_everywhere, &ka, "soft never expired");
    uint64_t resets0 = tc__cache_bus_resets(c);
    l.value = "v2";
    l.choose_ttl = 600000;
    atomic_store(&l.gate_closed, 1);
    expect_load(c, "soft", &l, &lo, TC_STALE, "v1");
    cr_assert_eq(STAT(c, loader_timeouts), 1);
    atomic_store(&l.gate_closed, 0);
    AWAIT(l2_has, &h, "the background load never filled L2");
    AWAIT(background_idle, c, "background work never ended");
    cr_assert(filled_l1(c, "soft", "v2", resets0), "L1 was not filled");
    lo.ttl_ms = 600000;
    expect_load(c, "soft", &l, &lo, TC_OK, "v2");
    cr_assert_eq(atomic_load(&l.calls), 2);
    tc_cache_destroy(c);
}

static unsigned base_handles;
static int handle_freed(void *p)
{
    (void)p;
    return tc__cache_live_handles() == base_handles;
}

Test(resilience, destroy_does_not_wait_for_a_hung_loader)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    ctl l = {.value = "never"};
    tc_load_options lo = {.hard_timeout_ms = 100};
    base_handles = tc__cache_live_handles();
    c = must_create(&o);
    atomic_store(&l.gate_closed, 1);
    expect_load(c, "stuck", &l, &lo, TC_LOADER_TIMEOUT, NULL);
    tc_cache_destroy(c); /* returns with the loader still blocked */
    cr_assert_eq(atomic_load(&l.returned), 0);
    /* The background thread keeps what it needs alive ... */
    cr_assert_eq(tc__cache_live_handles(), base_handles + 1);
    atomic_store(&l.gate_closed, 0);
    /* ... and frees it once its loader returns. */
    AWAIT(handle_freed, NULL, "the handle was never freed");
    cr_assert_eq(atomic_load(&l.returned), 1);
}

/* ---- eager refresh ------------------------------------------------------- */

typedef struct hitter {
    tc_cache *c;
    ctl *l;
    const tc_load_options *lo;
    atomic_int *bad;
} hitter;

static void *hit_loop(void *p)
{
    hitter *t = p;
    for (int i = 0; i < 100; i++) {
        char *s;
        tc_result r = load(t->c, "hot", t->l, t->lo, &s);
        if (r != TC_OK || !s || strcmp(s, "v1") != 0)
            atomic_fetch_add(t->bad, 1);
        free(s);
    }
    return NULL;
}

static int loader_called_twice(void *p)
{
    return atomic_load(&((ctl *)p)->calls) == 2;
}

Test(resilience, eager_refresh_loads_once_in_background)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "v1"};
    tc_load_options lo = {.ttl_ms = 6000, .eager_refresh_pct = 50};
    holds_arg h = {c, "hot", "v2"};
    atomic_int bad = 0;
    pthread_t th[8];
    hitter t = {c, &l, &lo, &bad};
    double loaded;
    char *raw;

    expect_load(c, "hot", &l, &lo, TC_OK, "v1");
    loaded = tcr_now_ms();
    /* Before the threshold: hits do not refresh. */
    expect_load(c, "hot", &l, &lo, TC_OK, "v1");
    cr_assert_eq(STAT(c, eager_refreshes), 0);
    /* Past half the TTL, many concurrent hits start one refresh, which is
     * held open until they are all done. */
    tcr_sleep_until_ms(loaded + 3100);
    l.value = "v2";
    atomic_store(&l.gate_closed, 1);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, hit_loop, &t), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&bad), 0, "a hit during the refresh missed");
    cr_assert_eq(STAT(c, eager_refreshes), 1);
    /* The one refresh reaches its loader (on a pool thread) and no other
     * load starts while it is held. */
    AWAIT(loader_called_twice, &l, "the refresh never called the loader");
    atomic_store(&l.gate_closed, 0);
    AWAIT(l2_has, &h, "the refresh never replaced the value in L2");
    AWAIT(background_idle, c, "background work never ended");
    /* A full TTL again, and this instance serves the new value. */
    raw = tcr_cmd(&srv, NULL, "PTTL", "hot", NULL);
    cr_assert(atol(raw) > 3100, "PTTL after the refresh: %s", raw);
    free(raw);
    warm(c, "hot", "v2");
    cr_assert_eq(atomic_load(&l.calls), 2);
    tc_cache_destroy(c);
}

/* ---- eager refresh across instances ------------------------------------ */

#define NREF 3

/* NREF instances on one redis-server sharing one loader. */
typedef struct fleet {
    tc_cache *c[NREF];
    ctl l;
    tc_load_options lo;
} fleet;

/* A hit on every instance: TC_OK with whatever value (after a refresh,
 * an instance may answer its L1 copy of the earlier one for a while). */
static void fleet_hit_all(fleet *f, const char *key)
{
    for (int i = 0; i < NREF; i++) {
        char *s;
        tc_result r = load(f->c[i], key, &f->l, &f->lo, &s);
        cr_assert_eq(r, TC_OK, "%s: %s (%s)", key, tc_strerror(r),
                     tc_errmsg());
        free(s);
    }
}

static size_t fleet_busy(fleet *f)
{
    size_t n = 0;
    for (int i = 0; i < NREF; i++)
        n += tc__cache_background_busy(f->c[i]);
    return n;
}

static int fleet_idle(void *p)
{
    return fleet_busy(p) == 0;
}

typedef struct calls_arg {
    ctl *l;
    int n;
} calls_arg;

static int calls_reach(void *p)
{
    calls_arg *a = p;
    return atomic_load(&a->l->calls) >= a->n;
}

/* The coordinated winner is in its loader and the others' attempts are
 * over (they found the lock). */
static int one_refresh_running(void *p)
{
    fleet *f = p;
    return atomic_load(&f->l.calls) >= 2 && fleet_busy(f) == 1;
}

/* All instances but one (the winner, whose own refresh made the entry
 * fresh for it) started a refresh attempt since the counts in `base`, and
 * all attempts ended. Each call hits every instance. */
typedef struct retried_arg {
    fleet *f;
    uint64_t base[NREF];
} retried_arg;

static int all_retried(void *p)
{
    retried_arg *a = p;
    int n = 0;
    fleet_hit_all(a->f, "hot");
    if (!fleet_idle(a->f))
        return 0;
    for (int i = 0; i < NREF; i++)
        n += STAT(a->f->c[i], eager_refreshes) > a->base[i];
    return n >= NREF - 1;
}

/* The first refresh is stored: the winner's is done and L2 holds it. */
static int refreshed(void *p)
{
    fleet *f = p;
    holds_arg h = {f->c[0], "hot", "v2"};
    return fleet_idle(f) && l2_has(&h);
}

/* NREF instances all see "hot" past its refresh point at once, while the
 * first refresh to reach the loader is held; then every instance keeps
 * hitting until each has made another attempt after the first refresh
 * was stored. Returns the loader calls made by refreshes. */
static int refresh_window(int coordinate)
{
    tc_options o = test_opts(&srv);
    fleet f;
    retried_arg ra;
    calls_arg ca;
    double loaded;
    int calls;

    memset(&f, 0, sizeof(f));
    f.l.value = "v1";
    f.lo.ttl_ms = 8000;
    f.lo.eager_refresh_pct = 50;
    f.lo.coordinate = coordinate;
    f.lo.lock_ms = 60000; /* far longer than the test: no expiry */
    for (int i = 0; i < NREF; i++)
        f.c[i] = must_create(&o);
    /* One load; the others read it from L2. */
    fleet_hit_all(&f, "hot");
    loaded = tcr_now_ms();
    cr_assert_eq(atomic_load(&f.l.calls), 1);
    tcr_sleep_until_ms(loaded + 4100);
    /* Past half the TTL: every instance's hit wants a refresh. */
    f.l.value = "v2";
    atomic_store(&f.l.gate_closed, 1);
    fleet_hit_all(&f, "hot");
    if (coordinate == TC_YES) {
        AWAIT(one_refresh_running, &f, "not exactly one refresh ran");
    } else {
        ca = (calls_arg){&f.l, 1 + NREF};
        AWAIT(calls_reach, &ca, "every instance should refresh");
    }
    atomic_store(&f.l.gate_closed, 0);
    AWAIT(refreshed, &f, "no refresh replaced the value in L2");
    calls = atomic_load(&f.l.calls);
    if (coordinate == TC_YES) {
        /* The losers try again now that the lock is free: they must find
         * the entry refreshed and not load it again. */
        ra.f = &f;
        for (int i = 0; i < NREF; i++)
            ra.base[i] = STAT(f.c[i], eager_refreshes);
        AWAIT(all_retried, &ra, "the losers never tried again");
        cr_assert_eq(atomic_load(&f.l.calls), calls,
                     "a retry loaded an entry that was already refreshed");
    }
    for (int i = 0; i < NREF; i++)
        tc_cache_destroy(f.c[i]);
    return calls - 1;
}

Test(resilience, eager_refresh_coordinated_loads_once_across_instances)
{
    int calls = refresh_window(TC_YES);
    cr_assert_eq(calls, 1, "%d refresh loads for one window", calls);
}

Test(resilience, eager_refresh_uncoordinated_loads_once_per_instance)
{
    int calls = refresh_window(TC_NO);
    cr_assert_eq(calls, NREF, "%d refresh loads for one window", calls);
}

/* Instance `c` hits `key` (any value) until its refresh has called its
 * loader `l` once. */
typedef struct refresher {
    tc_cache *c;
    ctl *l;
    const tc_load_options *lo;
    const char *key;
} refresher;

static int refresh_loaded(void *p)
{
    refresher *r = p;
    char *s;
    tc_result res = load(r->c, r->key, r->l, r->lo, &s);
    free(s);
    return res == TC_OK && atomic_load(&r->l->calls) >= 1 &&
           tc__cache_background_busy(r->c) == 0;
}

/* `b` sees `key` past its refresh point while the lock is held by someone
 * who will never release it (token `holder`): it skips the refresh while
 * that lock lives, and refreshes once its lease ran out. */
static void refresh_after_dead_holder(tc_cache *b, const char *key,
                                      const char *holder)
{
    ctl lb = {.value = "from-b"};
    tc_load_options lo = {.ttl_ms = 10000, .eager_refresh_pct = 50,
                          .coordinate = TC_YES, .lock_ms = 3000};
    refresher r = {b, &lb, &lo, key};
    holds_arg h = {b, key, "from-b"};
    char lock[128], *cur;
    int calls;

    snprintf(lock, sizeof(lock), "__tiercache:invalidate:lock:%s", key);
    /* A hit past the refresh point: skipped while the dead holder's lock
     * lives. */
    {
        char *s;
        cr_assert_eq(load(b, key, &lb, &lo, &s), TC_OK);
        free(s);
    }
    AWAIT(background_idle, b, "the refresh attempt never ended");
    calls = atomic_load(&lb.calls);
    cur = tcr_cmd(&srv, NULL, "GET", lock, NULL);
    cr_assert(calls == 0 || !cur || strcmp(cur, holder) != 0,
              "refreshed under another instance's live lock");
    free(cur);
    /* Then the lease runs out and the next hit refreshes. */
    AWAIT(refresh_loaded, &r, "never refreshed after the lease");
    AWAIT(l2_has, &h, "the refresh never stored its value");
    cr_assert_eq(atomic_load(&lb.calls), 1);
}

/* What is the lock's token now (malloc'd; "(nil)" when free)? */
static char *lock_token(const char *key)
{
    char lock[128];
    snprintf(lock, sizeof(lock), "__tiercache:invalidate:lock:%s", key);
    return tcr_cmd(&srv, NULL, "GET", lock, NULL);
}

Test(resilience, eager_refresh_waits_at_most_a_crashed_holders_lease)
{
    tc_options o = test_opts(&srv);
    tc_cache *b = must_create(&o);
    ctl l = {.value = "v1"};
    tc_load_options lo = {.ttl_ms = 10000, .eager_refresh_pct = 50,
                          .coordinate = TC_YES, .lock_ms = 3000};
    double loaded;
    char *raw;

    expect_load(b, "crashed", &l, &lo, TC_OK, "v1");
    loaded = tcr_now_ms();
    tcr_sleep_until_ms(loaded + 5100);
    /* A holder that crashed right after taking the refresh lock. */
    raw = tcr_cmd(&srv, NULL, "SET", LOCK_KEY("crashed"), "dead:1", "PX",
                  "3000", NULL);
    free(raw);
    refresh_after_dead_holder(b, "crashed", "dead:1");
    tc_cache_destroy(b);
}

static int in_loader(void *p)
{
    return atomic_load(&((ctl *)p)->calls) == 2;
}

Test(resilience, eager_refresh_waits_at_most_a_stuck_holders_lease)
{
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    ctl la = {.value = "v1"};
    tc_load_options lo = {.ttl_ms = 10000, .eager_refresh_pct = 50,
                          .coordinate = TC_YES, .lock_ms = 3000};
    double loaded;
    char *tok;

    expect_load(a, "stuck", &la, &lo, TC_OK, "v1");
    loaded = tcr_now_ms();
    {
        ctl none = {.value = "unused"};
        expect_load(b, "stuck", &none, &lo, TC_OK, "v1"); /* from L2 */
        cr_assert_eq(atomic_load(&none.calls), 0);
    }
    tcr_sleep_until_ms(loaded + 5100);
    /* a's refresh takes the lock and its loader never returns (until the
     * end of the test). */
    la.value = "from-a";
    atomic_store(&la.gate_closed, 1);
    expect_load(a, "stuck", &la, &lo, TC_OK, "v1");
    AWAIT(in_loader, &la, "a's refresh never reached its loader");
    tok = lock_token("stuck");
    cr_assert(strcmp(tok, "(nil)") != 0, "a's refresh holds no lock");
    refresh_after_dead_holder(b, "stuck", tok);
    free(tok);
    atomic_store(&la.gate_closed, 0);
    AWAIT(background_idle, a, "a's refresh never ended");
    tc_cache_destroy(b);
    tc_cache_destroy(a);
}

/* ---- negative caching and loader TTLs ----------------------------------- */

Test(resilience, negative_cached_for_its_ttl_across_instances)
{
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    ctl l = {.not_found = 1};
    tc_load_options lo = {.negative_ttl_ms = 4000};
    double stored;
    char *raw;

    expect_load(a, "nf", &l, &lo, TC_NOT_FOUND, NULL);
    stored = tcr_now_ms();
    cr_assert_eq(atomic_load(&l.calls), 1);
    /* Cached: neither this instance nor another calls the loader. */
    expect_load(a, "nf", &l, &lo, TC_NOT_FOUND, NULL);
    expect_load(b, "nf", &l, &lo, TC_NOT_FOUND, NULL);
    cr_assert_eq(atomic_load(&l.calls), 1);
    cr_assert_geq(STAT(a, negative_hits) + STAT(b, negative_hits), 2);
    /* The key itself stays absent for every other reader. */
    raw = tcr_cmd(&srv, NULL, "EXISTS", "nf", NULL);
    cr_assert_str_eq(raw, "0");
    free(raw);
    /* ... and the negative ends with its TTL. */
    tcr_sleep_until_ms(stored + 4000 + 50);
    expect_load(b, "nf", &l, &lo, TC_NOT_FOUND, NULL);
    cr_assert_eq(atomic_load(&l.calls), 2);
    tc_cache_destroy(b);
    tc_cache_destroy(a);
}

static int negative_gone(void *p)
{
    holds_arg *h = p;
    ctl l = {.value = "exists-now"};
    tc_load_options lo = {.negative_ttl_ms = 600000};
    char *s;
    tc_result r = load(h->c, h->key, &l, &lo, &s);
    free(s);
    return r == TC_OK;
}

Test(resilience, negative_dropped_by_a_delete_from_another_instance)
{
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    ctl l = {.not_found = 1};
    tc_load_options lo = {.negative_ttl_ms = 600000};
    holds_arg h = {a, "nd", NULL};

    expect_load(a, "nd", &l, &lo, TC_NOT_FOUND, NULL);
    expect_load(a, "nd", &l, &lo, TC_NOT_FOUND, NULL);
    cr_assert_eq(atomic_load(&l.calls), 1);
    /* The record was created: the application deletes the key to say so,
     * and neither tier may keep answering "not found". */
    cr_assert_eq(tc_del(b, "nd", 2), TC_OK);
    AWAIT(negative_gone, &h, "a kept its negative after the delete");
    tc_cache_destroy(b);
    tc_cache_destroy(a);
}

Test(resilience, loader_chooses_its_ttl)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "v", .choose_ttl = 123456};
    tc_load_options lo = {.ttl_ms = 1000};
    int64_t pttl = 0;

    expect_load(c, "ttl", &l, &lo, TC_OK, "v");
    cr_assert_eq(tc_pttl(c, "ttl", 3, &pttl), TC_OK);
    cr_assert(pttl > 1000 && pttl <= 123456, "PTTL %lld", (long long)pttl);
    tc_cache_destroy(c);
}

/* Room to grow, as tc_options: reserved words end the struct. */
Test(resilience, load_options_end_with_reserved_words)
{
    cr_assert_eq(offsetof(tc_load_options, reserved_) +
                     sizeof(((tc_load_options *)0)->reserved_),
                 sizeof(tc_load_options));
#if defined(__x86_64__) || defined(__aarch64__)
    cr_assert_eq(sizeof(tc_load_options), 80);
#endif
}

Test(resilience, options_are_checked)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "v"};
    tc_load_options bad1 = {.eager_refresh_pct = 100};
    tc_load_options bad2 = {.soft_timeout_ms = 200, .hard_timeout_ms = 100};
    tc_load_options bad3 = {.reserved_ = {1}};
    expect_load(c, "x", &l, &bad1, TC_BAD_ARGUMENT, NULL);
    expect_load(c, "x", &l, &bad2, TC_BAD_ARGUMENT, NULL);
    expect_load(c, "x", &l, &bad3, TC_BAD_ARGUMENT, NULL);
    cr_assert_eq(atomic_load(&l.calls), 0);
    expect_load(c, "x", &l, NULL, TC_OK, "v");
    tc_cache_destroy(c);
}

/* ---- stampede control across instances ---------------------------------- */

#define NINST 3
#define NTH 4

typedef struct stampede {
    tc_cache *c[NINST];
    ctl l;
    tc_load_options lo;
    atomic_int bad;
} stampede;

/* The winner's load is held until both other instances found its lock. */
static int others_wait(void *p)
{
    stampede *s = p;
    uint64_t n = 0;
    for (int i = 0; i < NINST; i++)
        n += STAT(s->c[i], lock_waits);
    return n >= NINST - 1;
}

typedef struct sarg {
    stampede *s;
    int i;
} sarg;

static void *stampede_thread(void *p)
{
    sarg *a = p;
    char *v;
    tc_result r = load(a->s->c[a->i % NINST], "herd", &a->s->l, &a->s->lo, &v);
    if (a->s->l.not_found ? r != TC_NOT_FOUND
                          : r != TC_OK || !v || strcmp(v, "one") != 0)
        atomic_fetch_add(&a->s->bad, 1);
    free(v);
    return NULL;
}

/* NINST instances x NTH threads miss "herd" at once; the winner's load is
 * held until the others found its lock. */
static void run_stampede(stampede *s)
{
    tc_options o = test_opts(&srv);
    pthread_t th[NINST * NTH];
    sarg a[NINST * NTH];
    for (int i = 0; i < NINST; i++)
        s->c[i] = must_create(&o);
    s->l.wait_for = others_wait;
    s->l.wait_arg = s;
    s->lo.coordinate = TC_YES;
    s->lo.lock_ms = 60000; /* far longer than the test: no expiry */
    for (int i = 0; i < NINST * NTH; i++) {
        a[i] = (sarg){s, i};
        cr_assert_eq(pthread_create(&th[i], NULL, stampede_thread, &a[i]), 0);
    }
    for (int i = 0; i < NINST * NTH; i++)
        pthread_join(th[i], NULL);
}

/* A "not found" cached by the winner answers the waiting instances too. */
Test(resilience, coordinated_instances_share_a_negative)
{
    stampede s;
    memset(&s, 0, sizeof(s));
    s.l.not_found = 1;
    s.lo.negative_ttl_ms = 600000;
    run_stampede(&s);
    cr_assert_eq(atomic_load(&s.bad), 0, "a caller did not get not-found");
    cr_assert_eq(atomic_load(&s.l.calls), 1, "loader called %d times",
                 atomic_load(&s.l.calls));
    for (int i = 0; i < NINST; i++)
        tc_cache_destroy(s.c[i]);
}

Test(resilience, coordinated_instances_call_the_loader_once)
{
    stampede s;
    memset(&s, 0, sizeof(s));
    s.l.value = "one";
    run_stampede(&s);
    cr_assert_eq(atomic_load(&s.bad), 0, "a caller did not get the value");
    cr_assert_eq(atomic_load(&s.l.calls), 1, "loader called %d times",
                 atomic_load(&s.l.calls));
    {
        char *raw = tcr_cmd(&srv, NULL, "EXISTS", LOCK_KEY("herd"), NULL);
        cr_assert_str_eq(raw, "0", "the lock was not released");
        free(raw);
    }
    for (int i = 0; i < NINST; i++)
        tc_cache_destroy(s.c[i]);
}

Test(resilience, crashed_lock_holder_delays_by_at_most_its_lease)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    ctl l = {.value = "after"};
    tc_load_options lo = {.coordinate = TC_YES, .lock_ms = 1500};
    double t0, took;
    char *raw;

    /* A holder that crashed right after taking the lock. */
    raw = tcr_cmd(&srv, NULL, "SET", LOCK_KEY("orphan"), "dead:1", "PX",
                  "1500", NULL);
    free(raw);
    t0 = tcr_now_ms();
    expect_load(c, "orphan", &l, &lo, TC_OK, "after");
    took = tcr_now_ms() - t0;
    cr_assert_eq(atomic_load(&l.calls), 1);
    cr_assert_eq(STAT(c, lock_waits), 1);
    /* It waited for the lease, and not without bound. (Generous: the
     * bound under test is "a lease, not forever".) */
    cr_assert(took < 1500 + AWAIT_MS, "waited %.0f ms", took);
    raw = tcr_cmd(&srv, NULL, "GET", "orphan", NULL);
    cr_assert_str_eq(raw, "after");
    free(raw);
    tc_cache_destroy(c);
}
