/* The invalidation bus between two instances on one redis-server: async
 * propagation, hand-published and malformed messages, the fill race, lost
 * invalidations (killed connections, restarts, SIGSTOP), tracking mode and
 * strict mode. */
#include <pthread.h>
#include <stdatomic.h>

#include "cache.h"
#include "common.h"

REDIS_SUITE(bus);

static void expect_dropped(tc_cache *b, const char *key, const char *old)
{
    holds_arg a = {b, key, old};
    AWAIT(l1_drops, &a, "%s=%s never invalidated", key, old);
}

static int own_skipped(void *p)
{
    tc_stats st;
    tc_cache_stats(p, &st);
    return st.inval_own_skipped >= 1;
}

Test(bus, write_in_one_instance_invalidates_the_other)
{
    tc_options o = test_opts(&srv);
    tc_cache *a, *b;
    tc_stats st;
    char *s;
    o.key_prefix = "app:";
    a = must_create(&o);
    b = must_create(&o);
    cr_assert_eq(set_str(a, "k", "v1", 0), TC_OK);
    warm(b, "k", "v1");
    cr_assert_eq(set_str(a, "k", "v2", 0), TC_OK);
    expect_dropped(b, "k", "v1");
    s = get_str(b, "k", NULL);
    cr_assert_str_eq(s, "v2");
    free(s);
    /* The writer keeps its own fresh copy: its own message is skipped. */
    cr_assert(l1_holds(a, "k", "v2"));
    tc_cache_stats(a, &st);
    cr_assert_geq(st.inval_published, 2);
    /* Its own messages come back through its bus, when they do. */
    AWAIT(own_skipped, a, "the writer's own message was never skipped");
    tc_cache_stats(b, &st);
    cr_assert_geq(st.inval_applied, 1);
    {
        uint64_t lagged = 0;
        for (int i = 0; i < 24; i++)
            lagged += st.lag_us_hist[i];
        cr_assert_geq(lagged, 1, "propagation lag not recorded");
    }

    /* Deletes, multi-deletes, prefix, pattern and all propagate too. */
    cr_assert_eq(set_str(a, "d1", "x", 0), TC_OK);
    cr_assert_eq(set_str(a, "d2", "y", 0), TC_OK);
    warm(b, "d1", "x");
    warm(b, "d2", "y");
    {
        const void *keys[2] = {"d1", "d2"};
        size_t kl[2] = {2, 2};
        uint64_t n = 0;
        cr_assert_eq(tc_mdel(a, 2, keys, kl, &n), TC_OK);
        cr_assert_eq(n, 2);
    }
    expect_dropped(b, "d1", "x");
    expect_dropped(b, "d2", "y");

    /* A prefix drops only its keys. A bus reconnect (a lease lapsed on a
     * loaded machine) rightly flushes all of L1: such a round proves
     * nothing, so it is run again. */
    for (int round = 0;; round++) {
        tc_stats st0, st1;
        int kept;
        cr_assert_eq(set_str(a, "user:1", "u1", 0), TC_OK);
        cr_assert_eq(set_str(a, "user:2", "u2", 0), TC_OK);
        cr_assert_eq(set_str(a, "org:1", "o1", 0), TC_OK);
        warm(b, "user:1", "u1");
        warm(b, "org:1", "o1");
        tc_cache_stats(b, &st0);
        cr_assert_eq(tc_invalidate_prefix(a, "user:", 5), TC_OK);
        expect_dropped(b, "user:1", "u1");
        kept = l1_holds(b, "org:1", "o1");
        tc_cache_stats(b, &st1);
        if (st1.bus_flushes == st0.bus_flushes) {
            cr_assert(kept, "prefix dropped too much");
            break;
        }
        cr_assert_lt(round, 20, "the bus of b never stayed up for a round");
    }
    cr_assert_eq(tc_invalidate_pattern(a, "org:*"), TC_OK);
    expect_dropped(b, "org:1", "o1");
    cr_assert_eq(set_str(a, "z", "zz", 0), TC_OK);
    warm(b, "z", "zz");
    cr_assert_eq(tc_invalidate_all(a), TC_OK);
    expect_dropped(b, "z", "zz");
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* Any process can invalidate by hand: redis-cli PUBLISH with the text
 * format from the README. */
Test(bus, hand_published_messages_apply)
{
    tc_options o = test_opts(&srv);
    tc_cache *b;
    char *raw;
    o.key_prefix = "svc:";
    o.coherence = TC_COHERENCE_ASYNC;
    b = must_create(&o);
    raw = tcr_cmd(&srv, NULL, "MSET", "svc:user:1", "a", "svc:user:2", "b",
                  "svc:team:1", "c", "svc:@odd", "d", NULL);
    free(raw);
    warm(b, "user:1", "a");
    warm(b, "user:2", "b");
    warm(b, "team:1", "c");
    warm(b, "@odd", "d");

    raw = tcr_cmd(&srv, NULL, "PUBLISH", "svc:__tiercache:invalidate",
                  "v1 key user:1", NULL);
    cr_assert_str_eq(raw, "1"); /* one subscriber: b */
    free(raw);
    expect_dropped(b, "user:1", "a");
    cr_assert(l1_holds(b, "user:2", "b"));

    raw = tcr_cmd(&srv, NULL, "PUBLISH", "svc:__tiercache:invalidate",
                  "v1 pattern us?r:*", NULL);
    free(raw);
    expect_dropped(b, "user:2", "b");
    cr_assert(l1_holds(b, "team:1", "c"));

    raw = tcr_cmd(&srv, NULL, "PUBLISH", "svc:__tiercache:invalidate",
                  "v1 key @- @odd", NULL);
    free(raw);
    expect_dropped(b, "@odd", "d");

    raw = tcr_cmd(&srv, NULL, "PUBLISH", "svc:__tiercache:invalidate", "v1 all",
                  NULL);
    free(raw);
    expect_dropped(b, "team:1", "c");
    tc_cache_destroy(b);
}

typedef struct count_arg {
    tc_cache *c;
    uint64_t applied, malformed; /* at least these many */
} count_arg;

static int applied_at_least(void *p)
{
    count_arg *a = p;
    tc_stats st;
    tc_cache_stats(a->c, &st);
    return st.inval_applied >= a->applied &&
           st.inval_malformed >= a->malformed;
}

Test(bus, malformed_messages_are_counted_and_dropped)
{
    tc_options o = test_opts(&srv);
    tc_cache *b = must_create(&o);
    const char *bad[] = {"", "hello", "v2 key k", "v1 nope k", "v1 key",
                         "v1 keys 9:ab", "v1 key @x k", "\xff\x00garbage"};
    char *raw;
    count_arg cond = {b, 1, 8};
    raw = tcr_cmd(&srv, NULL, "SET", "k", "v", NULL);
    free(raw);
    warm(b, "k", "v");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        raw = tcr_cmd(&srv, NULL, "PUBLISH", "__tiercache:invalidate", bad[i], NULL);
        free(raw);
    }
    /* The bus is still alive and applies the next good message. */
    raw = tcr_cmd(&srv, NULL, "PUBLISH", "__tiercache:invalidate", "v1 key k", NULL);
    free(raw);
    AWAIT(applied_at_least, &cond, "bus did not count 8 malformed then apply 1");
    expect_dropped(b, "k", "v");
    {
        tc_stats st;
        tc_cache_stats(b, &st);
        cr_assert_eq(st.inval_malformed, 8);
    }
    tc_cache_destroy(b);
}

/* The fill race, made deterministic: b's reader got "old" from L2 and is
 * held before its L1 insert while a writes "new" and b applies the
 * invalidation. The held fill must then be refused. */
typedef struct race {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in_window, release;
    tc_cache *b;
    tc_result r;
    char *got;
} race;

static void hold_fill(void *arg, const void *key, size_t klen)
{
    race *x = arg;
    if (klen != 1 || memcmp(key, "k", 1) != 0)
        return;
    pthread_mutex_lock(&x->mu);
    x->in_window = 1;
    pthread_cond_broadcast(&x->cv);
    while (!x->release)
        pthread_cond_wait(&x->cv, &x->mu);
    pthread_mutex_unlock(&x->mu);
}

static void *reader(void *p)
{
    race *x = p;
    x->got = get_str(x->b, "k", &x->r);
    return NULL;
}

static int in_window(void *p)
{
    race *x = p;
    int w;
    pthread_mutex_lock(&x->mu);
    w = x->in_window;
    pthread_mutex_unlock(&x->mu);
    return w;
}

Test(bus, fill_race_old_value_never_enters_l1)
{
    tc_options o = test_opts(&srv);
    tc_cache *a, *b;
    race x;
    pthread_t t;
    tc_stats st0;
    count_arg cond;
    a = must_create(&o);
    b = must_create(&o);
    memset(&x, 0, sizeof(x));
    pthread_mutex_init(&x.mu, NULL);
    pthread_cond_init(&x.cv, NULL);
    x.b = b;
    cr_assert_eq(set_str(a, "k", "old", 0), TC_OK);
    tc__cache_set_fill_hook(b, hold_fill, &x);
    tc_cache_stats(b, &st0);

    pthread_create(&t, NULL, reader, &x);
    AWAIT(in_window, &x, "reader never reached the fill");
    cr_assert_eq(set_str(a, "k", "new", 0), TC_OK);
    cond = (count_arg){b, st0.inval_applied + 1, 0};
    AWAIT(applied_at_least, &cond, "b never applied the invalidation");
    pthread_mutex_lock(&x.mu);
    x.release = 1;
    pthread_cond_broadcast(&x.cv);
    pthread_mutex_unlock(&x.mu);
    pthread_join(t, NULL);

    /* The read began before the write, so "old" is a fair answer to it ... */
    cr_assert_eq(x.r, TC_OK);
    cr_assert_str_eq(x.got, "old");
    free(x.got);
    /* ... but "old" must not have been cached after the invalidation. */
    expect_stale_fill_skipped(b, "k", "old", "new", &st0);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

typedef struct gen_arg {
    tc_cache *c;
    uint64_t past;
} gen_arg;

static int reproved(void *p)
{
    gen_arg *g = p;
    return tc__cache_bus_generation(g->c) > g->past &&
           tc__cache_l1_servable(g->c);
}

/* Killing the subscriber connection loses whatever was published while it
 * was down: b must flush L1 on resubscribe. */
Test(bus, killed_pubsub_connection_flushes_l1_on_resubscribe)
{
    tc_options o = test_opts(&srv);
    tc_cache *a, *b;
    gen_arg g;
    tc_stats st;
    char *raw, *s;
    o.coherence = TC_COHERENCE_ASYNC;
    a = must_create(&o);
    b = must_create(&o);
    cr_assert_eq(set_str(a, "k", "v1", 0), TC_OK);
    warm(b, "k", "v1");
    g = (gen_arg){b, tc__cache_bus_generation(b)};

    raw = tcr_cmd(&srv, NULL, "CLIENT", "KILL", "TYPE", "pubsub", NULL);
    cr_assert(raw && atoi(raw) >= 2, "killed %s pubsub clients", raw);
    free(raw);
    /* Written behind the bus's back (no tiercache publish reaches b). */
    raw = tcr_cmd(&srv, NULL, "SET", "k", "v2", NULL);
    free(raw);

    AWAIT(reproved, &g, "bus never came back");
    cr_assert(!l1_holds(b, "k", "v1"), "L1 survived a lost subscription");
    s = get_str(b, "k", NULL);
    cr_assert_str_eq(s, "v2");
    free(s);
    tc_cache_stats(b, &st);
    cr_assert_geq(st.bus_flushes, 1);
    cr_assert_geq(st.bus_reconnects, 1);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

typedef struct read_arg {
    tc_cache *c;
    const char *key;
    char *got; /* the value of the read that succeeded (caller frees) */
} read_arg;

static int read_succeeds(void *p)
{
    read_arg *a = p;
    tc_result r;
    free(a->got);
    a->got = get_str(a->c, a->key, &r);
    return r == TC_OK;
}

Test(bus, redis_restart_flushes_l1)
{
    tc_options o = test_opts(&srv);
    tc_cache *b;
    gen_arg g;
    read_arg rd;
    char *raw;
    b = must_create(&o);
    raw = tcr_cmd(&srv, NULL, "SET", "k", "v1", NULL);
    free(raw);
    warm(b, "k", "v1");
    g = (gen_arg){b, tc__cache_bus_generation(b)};
    cr_assert_eq(tcr_restart(&srv), 0);
    raw = tcr_cmd(&srv, NULL, "SET", "k", "v2", NULL);
    free(raw);
    AWAIT(reproved, &g, "bus never came back");
    cr_assert(!l1_holds(b, "k", "v1"), "L1 survived the restart");
    /* The pool may need the breaker's reconnect first: await a read. */
    rd = (read_arg){b, "k", NULL};
    AWAIT(read_succeeds, &rd, "no read succeeded after the restart");
    cr_assert_str_eq(rd.got, "v2");
    free(rd.got);
    tc_cache_destroy(b);
}

static int servable(void *p)
{
    return tc__cache_l1_servable(p);
}

/* A hung server (SIGSTOP) keeps connections open but answers nothing: the
 * lease lapses and L1 stops being served by itself. Every proof of liveness
 * b holds was sent before the server stopped, and a proof lets L1 be served
 * for at most one lease from its sending; so one lease after the stop took
 * effect, L1 must not be served, however late this thread gets to look
 * (a loaded machine only makes it look later). */
Test(bus, hung_server_stops_l1_within_the_lease)
{
    enum { LEASE_MS = 100 };
    tc_options o = test_opts(&srv);
    tc_cache *b;
    double stopped_at;
    o.lease_ms = LEASE_MS;
    b = must_create(&o);
    {
        char *raw = tcr_cmd(&srv, NULL, "SET", "k", "v1", NULL);
        free(raw);
    }
    warm(b, "k", "v1");
    tcr_pause(&srv);
    AWAIT(tcr_stopped, &srv, "redis-server never stopped");
    stopped_at = tcr_now_ms();
    tcr_sleep_until_ms(stopped_at + LEASE_MS + 1);
    cr_assert(!tc__cache_l1_servable(b), "L1 servable a lease after the hang");
    cr_assert(!l1_serves(b, "k", "v1"), "L1 served a lease after the hang");
    cr_assert(l1_holds(b, "k", "v1"), "a pause alone need not flush L1");
    tcr_resume(&srv);
    AWAIT(servable, b, "bus never proved itself again");
    tc_cache_destroy(b);
}

/* Server-assisted tracking: a write by a client that knows nothing of
 * tiercache still invalidates L1. */
Test(bus, tracking_mode_sees_plain_redis_writes)
{
    tc_options o = test_opts(&srv);
    tc_cache *b;
    char *raw, *s;
    o.key_prefix = "t:";
    o.tracking = TC_YES;
    b = must_create(&o);
    AWAIT(servable, b, "tracking bus never ready");
    raw = tcr_cmd(&srv, NULL, "SET", "t:k", "v1", NULL);
    free(raw);
    warm(b, "k", "v1");
    raw = tcr_cmd(&srv, NULL, "SET", "t:k", "v2", NULL);
    free(raw);
    expect_dropped(b, "k", "v1");
    s = get_str(b, "k", NULL);
    cr_assert_str_eq(s, "v2");
    free(s);
    warm(b, "k", "v2");
    raw = tcr_cmd(&srv, NULL, "DEL", "t:k", NULL);
    free(raw);
    expect_dropped(b, "k", "v2");

    /* Keys outside the prefix are not tracked and not touched: neither the
     * unprefixed Redis key "k" nor "u:k" (which a blind strip of two bytes
     * would map onto b's "k") reaches b. Redis delivers invalidations in
     * order, so once the later write to t:fence has been applied, anything
     * the outside writes caused has been applied too. */
    {
        tc_stats st0, st;
        raw = tcr_cmd(&srv, NULL, "MSET", "t:k", "v3", "t:fence", "f", NULL);
        free(raw);
        warm(b, "k", "v3");
        warm(b, "fence", "f");
        tc_cache_stats(b, &st0);
        raw = tcr_cmd(&srv, NULL, "SET", "k", "outside", NULL);
        free(raw);
        raw = tcr_cmd(&srv, NULL, "SET", "u:k", "outside", NULL);
        free(raw);
        raw = tcr_cmd(&srv, NULL, "SET", "t:fence", "g", NULL);
        free(raw);
        expect_dropped(b, "fence", "f");
        tc_cache_stats(b, &st);
        /* A bus reconnect (a stall of the bus thread on a loaded machine)
         * empties L1 by design; only without one must k still be there.
         * The count of invalidations below holds either way. */
        if (st.bus_flushes == st0.bus_flushes)
            cr_assert(l1_holds(b, "k", "v3"),
                      "a write outside the prefix touched b's L1");
        cr_assert_eq(st.inval_received - st0.inval_received, 1,
                     "%llu invalidations for one tracked write: keys outside "
                     "the prefix are tracked",
                     (unsigned long long)(st.inval_received -
                                          st0.inval_received));
    }
    tc_cache_destroy(b);
}

/* Tracking survives a reconnect: the redirect is re-established before L1
 * is served again. */
Test(bus, tracking_reestablished_after_bus_reconnect)
{
    tc_options o = test_opts(&srv);
    tc_cache *b;
    gen_arg g;
    char *raw;
    o.key_prefix = "t:";
    o.tracking = TC_YES;
    b = must_create(&o);
    g = (gen_arg){b, tc__cache_bus_generation(b)};
    raw = tcr_cmd(&srv, NULL, "CLIENT", "KILL", "TYPE", "pubsub", NULL);
    cr_assert(raw && atoi(raw) >= 1, "killed %s pubsub clients", raw);
    free(raw);
    AWAIT(reproved, &g, "bus never came back");
    raw = tcr_cmd(&srv, NULL, "SET", "t:k", "v1", NULL);
    free(raw);
    warm(b, "k", "v1");
    raw = tcr_cmd(&srv, NULL, "SET", "t:k", "v2", NULL);
    free(raw);
    expect_dropped(b, "k", "v1");
    tc_cache_destroy(b);
}

/* Strict mode: when the write returns, no other live instance serves the
 * old value, checked at once, without waiting. The lease is far longer
 * than any scheduling stall of a live instance's bus thread (TSan, a loaded
 * machine), so a write that ends by its lease rather than by every ack can
 * only mean a lost acknowledgement; acks make it cost no time. */
Test(bus, strict_write_returns_after_every_instance_applied)
{
    tc_options o = test_opts(&srv);
    tc_cache *a, *b, *c2;
    tc_stats st;
    char val[16];
    o.coherence = TC_COHERENCE_STRICT;
    o.lease_ms = 5000;
    a = must_create(&o);
    b = must_create(&o);
    c2 = must_create(&o);
    {
        /* A channel's first lease is one of unknown membership. */
        members_arg ma = {&srv, NULL, o.lease_ms};
        AWAIT(members_trusted, &ma, "the members set was never trusted");
    }
    for (int i = 0; i < 50; i++) {
        char old[16];
        snprintf(old, sizeof(old), "v%d", i);
        snprintf(val, sizeof(val), "v%d", i + 1);
        if (i == 0)
            cr_assert_eq(set_str(a, "k", old, 0), TC_OK);
        warm(b, "k", old);
        warm(c2, "k", old);
        cr_assert_eq(set_str(a, "k", val, 0), TC_OK);
        cr_assert(!l1_serves(b, "k", old), "b served %s after strict write",
                  old);
        cr_assert(!l1_serves(c2, "k", old), "c2 served %s after strict write",
                  old);
        tc_cache_stats(a, &st);
        cr_assert_eq(st.strict_lease_expiries, 0,
                     "write %d ended by the lease, not by the acks", i);
    }
    tc_cache_stats(a, &st);
    cr_assert_geq(st.strict_waits, 50);
    cr_assert_eq(st.strict_lease_expiries, 0, "all instances were alive");

    /* Instances that have gone away do not slow writes down. */
    tc_cache_destroy(b);
    tc_cache_destroy(c2);
    cr_assert_eq(set_str(a, "k", "after", 0), TC_OK);
    tc_cache_stats(a, &st);
    cr_assert_eq(st.strict_lease_expiries, 0);
    tc_cache_destroy(a);
}

/* ------------------------------------------------------------------ */
/* Idle instances (lease.c, "Idle")                                    */
/* ------------------------------------------------------------------ */

static long long resets_before;

static int bus_was_reset(void *p)
{
    return (long long)tc__cache_bus_resets(p) > resets_before;
}

static int subscribed_again(void *p)
{
    char *s = tcr_cmd(p, NULL, "CLIENT", "LIST", "TYPE", "pubsub", NULL);
    int yes = s && strstr(s, "id=") != NULL;
    free(s);
    return yes;
}

/* Health reports an idle bus as up: idle is not down. */
static int health_bus_up(void *p)
{
    tc_health h;
    return tc_cache_health(p, &h) == TC_OK && h.bus_up;
}

static int heartbeats_resumed(void *p)
{
    /* Each heartbeat is one EVAL; the keepalive every 2 s cannot make 3
     * within the awaited time on its own without the heartbeat. */
    return command_calls(p, "eval") >= 3;
}

/* An instance that reads nothing stops its lease heartbeat (the cost of an
 * idle fleet is the keepalive), and the first read heartbeats again. */
Test(bus, an_idle_instance_stops_heartbeating)
{
    tc_options o = test_opts(&srv);
    tc_cache *b;
    idle_arg ia;
    char *raw;
    long long evals;
    o.idle_after_ms = 300;
    b = must_create(&o);
    ia = (idle_arg){&srv, b};
    AWAIT(member_idle, &ia, "the instance never went idle");
    raw = tcr_cmd(&srv, NULL, "CONFIG", "RESETSTAT", NULL);
    free(raw);
    /* Absence cannot be awaited: count over one second (40 heartbeats at
     * lease_ms 100 when not idle; a keepalive every 2 s when idle). */
    tcr_sleep_until_ms(tcr_now_ms() + 1000);
    evals = command_calls(&srv, "eval");
    cr_assert_leq(evals, 1, "%lld EVALs in 1 s from an idle instance", evals);
    AWAIT(health_bus_up, b, "health reported an idle bus as down");
    cr_assert(member_idle(&ia), "health counted as an L1 read");
    /* A read (servable() counts as one) wakes it: L1 serves again, and
     * heartbeats resume. */
    AWAIT(servable, b, "the idle instance never served L1 again");
    cr_assert(!member_idle(&ia));
    raw = tcr_cmd(&srv, NULL, "CONFIG", "RESETSTAT", NULL);
    free(raw);
    AWAIT(heartbeats_resumed, &srv, "heartbeats did not resume");
    tc_cache_destroy(b);
}

/* An idle instance's connections still answer for themselves: a hung
 * server, or a killed connection, is noticed and the bus reconnects (and
 * flushes L1) without any read. */
Test(bus, an_idle_instance_notices_a_hung_or_killed_connection)
{
    tc_options o = test_opts(&srv);
    tc_cache *b;
    idle_arg ia;
    char *raw;
    o.idle_after_ms = 300;
    b = must_create(&o);
    ia = (idle_arg){&srv, b};
    AWAIT(member_idle, &ia, "the instance never went idle");
    resets_before = (long long)tc__cache_bus_resets(b);
    tcr_pause(&srv);
    AWAIT(tcr_stopped, &srv, "redis-server never stopped");
    AWAIT(bus_was_reset, b, "an idle bus never noticed a hung server");
    tcr_resume(&srv);
    AWAIT(subscribed_again, &srv, "the idle bus never resubscribed");

    resets_before = (long long)tc__cache_bus_resets(b);
    raw = tcr_cmd(&srv, NULL, "CLIENT", "KILL", "TYPE", "pubsub", NULL);
    cr_assert(raw && atoi(raw) >= 1, "killed %s pubsub clients", raw);
    free(raw);
    AWAIT(bus_was_reset, b, "an idle bus never noticed a killed connection");
    AWAIT(servable, b, "bus never proved itself again");
    tc_cache_destroy(b);
}
