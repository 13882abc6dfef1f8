/*
 * The README's guarantees, against the holes an independent review found
 * (issue 8). Each case names the behaviour it protects and failed on the
 * code before its fix: real redis-servers, the public API, and test hooks
 * only to hold a thread at a chosen point.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common.h"

REDIS_SUITE(guarantees);

/* Every case here is about what is served, not about timeouts: give Redis
 * time to answer on a loaded machine under a sanitizer. */
static tc_options g_opts(const tcr_server *s)
{
    tc_options o = test_opts(s);
    o.command_timeout_ms = 5000;
    return o;
}

static int servable(void *p)
{
    return tc__cache_l1_servable(p);
}

/* ------------------------------------------------------------------ */
/* 1. Nothing filled before the bus's first proof is served after it.  */
/* ------------------------------------------------------------------ */

Test(guarantees, first_subscription_flushes_what_was_filled_before_it)
{
    tc_options o = g_opts(&srv);
    tc_cache *a, *b;
    char *s;
    /* b's user may read and write keys but not use pub/sub: its bus is
     * refused, while its L2 pool works and fills L1. */
    s = tcr_cmd(&srv, NULL, "ACL", "SETUSER", "nochan", "on", ">pw", "~*",
                "resetchannels", "+@all", NULL);
    cr_assert_str_eq(s, "OK");
    free(s);
    o.coherence = TC_COHERENCE_STRICT;
    a = must_create(&o);
    cr_assert_eq(set_str(a, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    o.username = "nochan";
    o.password = "pw";
    b = must_create(&o);
    cr_assert(!tc__cache_l1_servable(b), "a refused bus cannot be proven");
    s = get_str(b, "k", NULL);
    cr_assert_str_eq(s, "v1");
    free(s);
    /* A strict write b cannot see: b is no member, a does not wait. */
    cr_assert_eq(set_str(a, "k", "v2", 0), TC_OK, "%s", tc_errmsg());
    /* The bus is allowed in; once it proves itself, b must not serve the
     * v1 it filled while it was blind. */
    s = tcr_cmd(&srv, NULL, "ACL", "SETUSER", "nochan", "allchannels", NULL);
    cr_assert_str_eq(s, "OK");
    free(s);
    cr_assert(tcr_wait(servable, b, 20000), "b's bus never came up");
    s = get_str(b, "k", NULL);
    cr_assert_str_eq(s, "v2", "b served a value filled before its bus was up");
    free(s);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* ------------------------------------------------------------------ */
/* Read-through races: a "database" the loaders read, and a loader      */
/* that can act at the exact point of the race.                         */
/* ------------------------------------------------------------------ */

typedef struct db {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char value[16];     /* the database row */
    int entered;        /* the blocking loader has read the row */
    int release;        /* let it return */
    tc_cache *other;    /* the instance that changes the row */
    int action;         /* what `other` does inside the loader */
} db;

enum { ACT_NONE, ACT_DEL, ACT_PREFIX, ACT_SET };

static tc_result load_row(db *d, void **val, size_t *vlen, char *read)
{
    pthread_mutex_lock(&d->mu);
    snprintf(read, 16, "%s", d->value);
    pthread_mutex_unlock(&d->mu);
    *vlen = strlen(read);
    *val = malloc(*vlen);
    memcpy(*val, read, *vlen);
    return TC_OK;
}

/* Reads the row, then waits until released. */
static tc_result blocking_loader(void *ud, const void *key, size_t klen,
                                 void **val, size_t *vlen)
{
    db *d = ud;
    char read[16];
    (void)key, (void)klen;
    load_row(d, val, vlen, read);
    pthread_mutex_lock(&d->mu);
    d->entered = 1;
    pthread_cond_broadcast(&d->cv);
    while (!d->release)
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
    return TC_OK;
}

/* Reads the row; then, before returning (so before the store), another
 * instance updates the row and invalidates the key. */
static tc_result racing_loader(void *ud, const void *key, size_t klen,
                               void **val, size_t *vlen)
{
    db *d = ud;
    char read[16];
    load_row(d, val, vlen, read);
    pthread_mutex_lock(&d->mu);
    snprintf(d->value, sizeof(d->value), "v2");
    pthread_mutex_unlock(&d->mu);
    switch (d->action) {
    case ACT_DEL:
        cr_assert_eq(tc_del(d->other, key, klen), TC_OK);
        break;
    case ACT_PREFIX:
        cr_assert_eq(tc_invalidate_prefix(d->other, key, 1), TC_OK);
        break;
    case ACT_SET:
        /* A write whose L2 copy is gone again by the time the loader
         * stores (a short TTL, an eviction). */
        cr_assert_eq(tc_set(d->other, key, klen, "v2", 2, 1), TC_OK);
        for (int i = 0; tc_pttl(d->other, key, klen, &(int64_t){0}) == TC_OK;
             i++) {
            cr_assert_lt(i, 30000, "a 1 ms TTL never expired");
            tcr_sleep_ms(1);
        }
        break;
    }
    return TC_OK;
}

static void db_init(db *d, const char *row)
{
    memset(d, 0, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    snprintf(d->value, sizeof(d->value), "%s", row);
}

typedef struct loader_call {
    tc_cache *c;
    db *d;
    tc_loader_fn fn;
    char got[16];
    tc_result r;
    int done;
    pthread_mutex_t mu;
} loader_call;

static void call_init(loader_call *lc, tc_cache *c, db *d)
{
    memset(lc, 0, sizeof(*lc));
    lc->c = c;
    lc->d = d;
    lc->fn = blocking_loader;
    pthread_mutex_init(&lc->mu, NULL);
}

static void *call_loader(void *p)
{
    loader_call *lc = p;
    tc_value *v = NULL;
    tc_result r = tc_get_or_load(lc->c, "k", 1, lc->fn, lc->d, 0, &v);
    pthread_mutex_lock(&lc->mu);
    lc->r = r;
    if (r == TC_OK)
        snprintf(lc->got, sizeof(lc->got), "%.*s", (int)tc_value_len(v),
                 (const char *)tc_value_data(v));
    lc->done = 1;
    pthread_mutex_unlock(&lc->mu);
    tc_value_release(v);
    return NULL;
}

static int call_done(void *p)
{
    loader_call *lc = p;
    int done;
    pthread_mutex_lock(&lc->mu);
    done = lc->done;
    pthread_mutex_unlock(&lc->mu);
    return done;
}

static int loader_entered(void *p)
{
    db *d = p;
    int e;
    pthread_mutex_lock(&d->mu);
    e = d->entered;
    pthread_mutex_unlock(&d->mu);
    return e;
}

/* 2. A caller that starts after an invalidation never joins a flight that
 *    started before it. */
Test(guarantees, flight_started_before_a_strict_write_is_not_joined)
{
    tc_options o = g_opts(&srv);
    tc_cache *a, *b;
    db d;
    loader_call first, second;
    pthread_t t1, t2;

    o.coherence = TC_COHERENCE_STRICT;
    a = must_create(&o);
    b = must_create(&o);
    cr_assert(tcr_wait(servable, b, 10000));
    db_init(&d, "v1");
    call_init(&first, b, &d);
    call_init(&second, b, &d);
    pthread_create(&t1, NULL, call_loader, &first);
    cr_assert(tcr_wait(loader_entered, &d, 10000));
    /* The leader has read v1 from the database. The row changes and a
     * strict write of v2 returns: b has applied its invalidation. */
    pthread_mutex_lock(&d.mu);
    snprintf(d.value, sizeof(d.value), "v2");
    pthread_mutex_unlock(&d.mu);
    cr_assert_eq(set_str(a, "k", "v2", 0), TC_OK, "%s", tc_errmsg());
    /* A read that starts now must see v2, not wait for the old flight. */
    pthread_create(&t2, NULL, call_loader, &second);
    tcr_wait(call_done, &second, 5000); /* joined the old flight: stuck */
    pthread_mutex_lock(&d.mu);
    d.release = 1;
    pthread_cond_broadcast(&d.cv);
    pthread_mutex_unlock(&d.mu);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(second.r, TC_OK);
    cr_assert_str_eq(second.got, "v2",
                     "a read after a strict write got the old flight's value");
    cr_assert_str_eq(first.got, "v1"); /* it overlapped the write: fine */
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* 3. A loader's old value never lands in L2 after a concurrent change. */
static void old_value_never_stored(int action)
{
    tc_options o = g_opts(&srv);
    tc_cache *a, *b;
    tc_value *v = NULL;
    db d;
    char *s;
    o.key_prefix = "rt:";
    a = must_create(&o);
    b = must_create(&o);
    db_init(&d, "v1");
    d.other = a;
    d.action = action;
    cr_assert_eq(tc_get_or_load(b, "k", 1, racing_loader, &d, 60000, &v),
                 TC_OK, "%s", tc_errmsg());
    tc_value_release(v);
    s = tcr_cmd(&srv, NULL, "GET", "rt:k", NULL);
    cr_assert(strcmp(s, "v1") != 0,
              "the loader's pre-change value was stored in L2 for everyone");
    free(s);
    /* Nor does any instance serve it now. */
    s = get_str(a, "k", NULL);
    cr_assert(!s || strcmp(s, "v1") != 0);
    free(s);
    s = get_str(b, "k", NULL);
    cr_assert(!s || strcmp(s, "v1") != 0);
    free(s);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

Test(guarantees, read_through_store_loses_to_a_concurrent_delete)
{
    old_value_never_stored(ACT_DEL);
}

Test(guarantees, read_through_store_loses_to_a_concurrent_prefix_invalidation)
{
    old_value_never_stored(ACT_PREFIX);
}

Test(guarantees, read_through_store_loses_to_a_concurrent_write_since_expired)
{
    old_value_never_stored(ACT_SET);
}

/* ------------------------------------------------------------------ */
/* 4. SIGPIPE never reaches the application.                           */
/* ------------------------------------------------------------------ */

Test(guarantees, writes_to_a_closed_connection_never_raise_sigpipe)
{
    pid_t pid;
    int status;
    char *s = tcr_cmd(&srv, NULL, "CONFIG", "SET", "proto-max-bulk-len",
                      "1048576", NULL);
    cr_assert_str_eq(s, "OK");
    free(s);
    pid = fork();
    if (pid == 0) { /* no Criterion call in here: it reports to the runner */
        /* The application's own choice: SIGPIPE kills, and is unblocked. */
        tc_options o = g_opts(&srv);
        tc_cache *c;
        size_t n = 4u << 20;
        char *big = calloc(1, n);
        sigset_t none;
        signal(SIGPIPE, SIG_DFL);
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        /* A unix socket: once Redis has closed it, the next write fails
         * with EPIPE at once (TCP would mostly see a reset first). */
        o.url = srv.unix_url;
        o.coherence = TC_COHERENCE_NONE;
        o.breaker_threshold = 1000;
        if (!big || tc_cache_create(&o, &c) != TC_OK)
            _exit(3);
        /* Redis reads the bulk header, refuses a value above
         * proto-max-bulk-len and closes the connection while we are still
         * writing the rest: the write fails with EPIPE. */
        for (int i = 0; i < 10; i++)
            if (tc_set(c, "big", 3, big, n, 0) == TC_OK)
                _exit(4);
        tc_cache_destroy(c);
        free(big);
        _exit(0);
    }
    cr_assert_neq(pid, -1);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(!WIFSIGNALED(status), "the process died of signal %d",
              WTERMSIG(status));
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child exit %d", WEXITSTATUS(status));
}

/* ------------------------------------------------------------------ */
/* 6. Lifetime of membership and of the bus's connections.             */
/* ------------------------------------------------------------------ */

static int member_gone(void *p)
{
    char *s = tcr_cmd(&srv, NULL, "ZSCORE",
                      "__tiercache:invalidate:members", (char *)p, NULL);
    int gone = s && strcmp(s, "(nil)") == 0;
    free(s);
    return gone;
}

Test(guarantees, an_async_fleet_prunes_crashed_members)
{
    tc_options o = g_opts(&srv);
    tc_cache *c;
    char *s;
    /* A member that crashed a minute ago (server-clock score in the
     * past), in a fleet that never writes in strict mode. */
    s = tcr_cmd(&srv, NULL, "EVAL",
                "local t = redis.call('TIME') "
                "return redis.call('ZADD', KEYS[1], t[1] * 1000 - 60000, "
                "'crashed0000000000')",
                "1", "__tiercache:invalidate:members", NULL);
    cr_assert_str_eq(s, "1");
    free(s);
    c = must_create(&o);
    cr_assert(tcr_wait(member_gone, "crashed0000000000", 10000),
              "a crashed instance stayed in the members set");
    cr_assert(!member_gone((void *)tc_cache_instance_id(c)),
              "the live instance must be a member");
    tc_cache_destroy(c);
}

Test(guarantees, a_destroyed_instance_is_no_longer_waited_for)
{
    tc_options o = g_opts(&srv);
    tc_cache *a, *b;
    char id[64];
    o.coherence = TC_COHERENCE_STRICT;
    o.lease_ms = 40; /* heartbeats every 10 ms: a re-add is likely */
    a = must_create(&o);
    b = must_create(&o);
    cr_assert(tcr_wait(servable, a, 10000));
    snprintf(id, sizeof(id), "%s", tc_cache_instance_id(a));
    tc_cache_destroy(a);
    /* Strict writers wait for exactly the ids in the members set: a gone
     * instance must be out of it when destroy returns, and stay out (its
     * heartbeat, stopped first, must not re-add it). Whether b's own
     * writes then wait is b's own lease's business, not tested here. */
    cr_assert(member_gone(id), "destroy left the members set too late");
    for (int i = 0; i < 20; i++)
        cr_assert_eq(set_str(b, "k", "v", 0), TC_OK);
    cr_assert(member_gone(id), "a heartbeat re-added the destroyed instance");
    tc_cache_destroy(b);
}

/* Log lines of one cache, for checking what the bus did. */
typedef struct logbuf {
    pthread_mutex_t mu;
    int refused, lost;
} logbuf;

static void count_log(void *ud, tc_log_level lvl, const char *msg)
{
    logbuf *lb = ud;
    (void)lvl;
    pthread_mutex_lock(&lb->mu);
    if (strstr(msg, "refused"))
        lb->refused++;
    if (strstr(msg, "connection lost"))
        lb->lost++;
    pthread_mutex_unlock(&lb->mu);
}

static int failed_thrice(void *p)
{
    logbuf *lb = p;
    int n;
    pthread_mutex_lock(&lb->mu);
    n = lb->refused + lb->lost;
    pthread_mutex_unlock(&lb->mu);
    return n >= 3;
}

Test(guarantees, a_refused_bus_setup_is_one_failure_not_two)
{
    tc_options o = g_opts(&srv);
    tc_cache *c;
    logbuf lb = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    char *s = tcr_cmd(&srv, NULL, "ACL", "SETUSER", "noclient", "on", ">pw",
                      "~*", "allchannels", "+@all", "-client", NULL);
    cr_assert_str_eq(s, "OK");
    free(s);
    o.username = "noclient";
    o.password = "pw";
    o.tracking = TC_YES;
    o.key_prefix = "t:";
    o.log = count_log;
    o.log_userdata = &lb;
    c = must_create(&o);
    cr_assert(tcr_wait(failed_thrice, &lb, 20000), "setup never refused");
    tc_cache_destroy(c);
    cr_assert_geq(lb.refused, 1, "the refusal was not reported");
    /* Each refusal drops the connections once; the dropped contexts' own
     * disconnect callbacks must not count as a second failure (which
     * doubled the backoff and logged a lost connection). */
    cr_assert_eq(lb.lost, 0, "%d spurious 'connection lost' after %d refusals",
                 lb.lost, lb.refused);
}

/* ------------------------------------------------------------------ */
/* 7. Arithmetic and edge cases.                                       */
/* ------------------------------------------------------------------ */

Test(guarantees, no_expiry_in_both_tiers_keeps_the_l1_copy)
{
    tc_options o = g_opts(&srv);
    tc_cache *c;
    o.coherence = TC_COHERENCE_NONE; /* no lease to lapse under load */
    c = must_create(&o);
    tc_set_opts so = {TC_TTL_NONE, TC_TTL_NONE, 0};
    tc_value *v = NULL;
    cr_assert_eq(tc_set_ex(c, "k", 1, "v", 1, &so), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_peek(c, "k", 1, &v), TC_OK,
                 "TC_TTL_NONE expired the L1 copy at once");
    tc_value_release(v);
    tc_cache_destroy(c);
}

Test(guarantees, a_value_too_large_for_l1_is_served_and_counted)
{
    tc_options o = g_opts(&srv);
    tc_cache *c;
    tc_stats st;
    tc_value *v = NULL;
    size_t n = 100 * 1024;
    char *big = calloc(1, n);
    o.l1_max_bytes = 1u << 20;
    o.l1_shards = 16; /* 64 KiB per shard: the value cannot fit */
    c = must_create(&o);
    cr_assert_eq(tc_set(c, "big", 3, big, n, 0), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_get(c, "big", 3, &v), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_value_len(v), n);
    tc_value_release(v);
    tc_cache_stats(c, &st);
    cr_assert_geq(st.l1_too_large, 2, "the writer's and the reader's fills "
                                      "were refused silently");
    cr_assert_eq(st.l1_entries, 0);
    tc_cache_destroy(c);
    free(big);
}

/* The L1 copy of a value read from L2 expires no later than the L2 entry,
 * however long the reply took: its deadline counts from the request. */
static void wait_l2_expired(void *arg, const void *key, size_t klen)
{
    (void)arg, (void)key, (void)klen;
    for (int i = 0;; i++) {
        char *s = tcr_cmd(&srv, NULL, "PTTL", "k", NULL);
        int gone = s && strcmp(s, "-2") == 0;
        free(s);
        if (gone)
            return;
        cr_assert_lt(i, 30000, "k never expired in L2");
        tcr_sleep_ms(1);
    }
}

Test(guarantees, l1_never_outlives_l2_however_late_the_reply)
{
    tc_options o = g_opts(&srv);
    tc_cache *c;
    char *s;
    o.coherence = TC_COHERENCE_NONE;
    c = must_create(&o);
    s = tcr_cmd(&srv, NULL, "SET", "k", "v", "PX", "300", NULL);
    free(s);
    /* Hold the reader between the L2 reply (PTTL about 300) and its L1
     * fill until the L2 entry has expired: a slow reply, a preempted
     * thread. */
    tc__cache_set_fill_hook(c, wait_l2_expired, NULL);
    s = get_str(c, "k", NULL);
    cr_assert_str_eq(s, "v");
    free(s);
    tc__cache_set_fill_hook(c, NULL, NULL);
    cr_assert(!l1_serves(c, "k", "v"),
              "L1 serves a value whose L2 entry has already expired");
    tc_cache_destroy(c);
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

/* Next message on a raw subscriber, as a malloc'd payload. */
static char *next_message(redisContext *sub)
{
    redisReply *r = NULL;
    char *s;
    cr_assert_eq(redisGetReply(sub, (void **)&r), REDIS_OK);
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    s = strndup(r->element[2]->str, r->element[2]->len);
    freeReplyObject(r);
    return s;
}

Test(guarantees, a_failed_nx_publishes_nothing_and_does_not_wait)
{
    tc_options o = g_opts(&srv);
    tc_cache *c;
    tc_set_opts nx = {0, 0, TC_SET_NX | TC_SET_STRICT};
    tc_stats st;
    redisContext *sub = redisConnect("127.0.0.1", srv.port);
    redisReply *r;
    char *m, *s;
    cr_assert(sub && !sub->err);
    r = redisCommand(sub, "SUBSCRIBE __tiercache:invalidate");
    freeReplyObject(r);
    c = must_create(&o);
    cr_assert(tcr_wait(servable, c, 10000));
    cr_assert_eq(set_str(c, "k", "v1", 0), TC_OK);
    /* A member that never acknowledges: a strict write that publishes
     * waits a full lease for it. */
    s = tcr_cmd(&srv, NULL, "EVAL",
                "local t = redis.call('TIME') "
                "return redis.call('ZADD', KEYS[1], t[1] * 1000 + 3600000, "
                "'silent0000000000')",
                "1", "__tiercache:invalidate:members", NULL);
    free(s);
    cr_assert_eq(tc_set_ex(c, "k", 1, "v2", 2, &nx), TC_NOT_STORED);
    tc_cache_stats(c, &st);
    cr_assert_eq(st.strict_lease_expiries, 0,
                 "a strict NX that stored nothing waited for acks");
    cr_assert_eq(set_str(c, "k2", "x", 0), TC_OK);
    m = next_message(sub);
    cr_assert(ends_with(m, " k"), "%s", m);
    free(m);
    m = next_message(sub);
    cr_assert(ends_with(m, " k2"), "a failed NX published: %s", m);
    free(m);
    s = tcr_cmd(&srv, NULL, "GET", "k", NULL);
    cr_assert_str_eq(s, "v1");
    free(s);
    redisFree(sub);
    tc_cache_destroy(c);
}

#ifdef TC_SANITIZED
/* set by tests/meson.build */
#elif defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TC_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TC_SANITIZED 1
#endif
#endif

Test(guarantees, mget_out_of_memory_answers_every_key)
{
#ifdef TC_SANITIZED
    cr_skip_test("address-space limits do not apply under sanitizers");
#else
    tc_options o = g_opts(&srv);
    tc_cache *c;
    size_t n = 4u << 20;
    const void **keys = malloc(n * sizeof(*keys));
    size_t *klens = malloc(n * sizeof(*klens));
    tc_value **out = malloc(n * sizeof(*out));
    tc_result *res = malloc(n * sizeof(*res));
    struct rlimit lim;
    FILE *f;
    unsigned long vsz = 0;
    tc_result r;
    cr_assert(keys && klens && out && res);
    o.coherence = TC_COHERENCE_NONE;
    c = must_create(&o);
    for (size_t i = 0; i < n; i++)
        keys[i] = "k", klens[i] = 1, res[i] = TC_OK;
    /* No more address space than we have now plus a little: tc_mget's
     * own arrays (tens of MiB for 4M keys) cannot be allocated. */
    f = fopen("/proc/self/statm", "r");
    cr_assert(f && fscanf(f, "%lu", &vsz) == 1);
    fclose(f);
    lim.rlim_cur = lim.rlim_max =
        (rlim_t)vsz * (rlim_t)sysconf(_SC_PAGESIZE) + (16u << 20);
    cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);
    r = tc_mget(c, n, keys, klens, out, res);
    cr_assert_eq(r, TC_NO_MEMORY, "%s", tc_strerror(r));
    for (size_t i = 0; i < n; i++)
        if (res[i] == TC_OK)
            cr_assert(out[i] != NULL,
                      "key %zu reported TC_OK with no value", i);
#endif
}

/* ------------------------------------------------------------------ */
/* 5. Clocks: a wall-clock step on the Redis host prunes no live member */
/* ------------------------------------------------------------------ */

/* The Redis server's wall clock (TIME) scores the members. A step of the
 * host's clock by +30 s is, to the scripts, the same as every stored time
 * being 30 s older: the state below is the one right after such a step,
 * for a peer whose heartbeat ran just before it. (Stepping the real clock
 * would step the whole test machine; libfaketime does not load into
 * redis-server 7.0.) */
Test(guarantees, a_forward_clock_step_on_the_redis_host_prunes_no_member)
{
    tc_options o = g_opts(&srv);
    tc_cache *a;
    tc_stats st;
    char *s;
    o.coherence = TC_COHERENCE_STRICT;
    a = must_create(&o);
    cr_assert(tcr_wait(servable, a, 10000));
    s = tcr_cmd(&srv, NULL, "EVAL",
                "local t = redis.call('TIME') "
                "local then_ = t[1] * 1000 - 30000 "
                "redis.call('SET', KEYS[2], then_) "
                "return redis.call('ZADD', KEYS[1], then_ + 100, "
                "'peer000000000000')",
                "2", "__tiercache:invalidate:members",
                "__tiercache:invalidate:clock", NULL);
    cr_assert_str_eq(s, "1");
    free(s);
    /* The peer never acknowledges: a strict write must wait out the lease
     * for it rather than take it for dead. */
    cr_assert_eq(set_str(a, "k", "v", 0), TC_OK, "%s", tc_errmsg());
    tc_cache_stats(a, &st);
    cr_assert_eq(st.strict_lease_expiries, 1,
                 "the strict write did not wait for a member that a clock "
                 "step made look expired");
    tc_cache_destroy(a);
}

/* FLUSHDB also deletes the members set, so the count that runs after it in
 * the same transaction lists no instance: a strict writer must then wait
 * out the lease (others may still serve the old values from L1 until it
 * has passed), not take the empty list for "all acknowledged". */
Test(guarantees, a_strict_flushdb_waits_out_the_lease)
{
    tc_options o = g_opts(&srv);
    const char *argv[] = {"FLUSHDB"};
    size_t argl[] = {7};
    tc_reply *rep = NULL;
    tc_cache *a;
    tc_stats st;
    members_arg ma = {&srv, NULL, 0};
    o.coherence = TC_COHERENCE_STRICT;
    a = must_create(&o);
    cr_assert(tcr_wait(servable, a, 10000));
    /* Not the channel's first lease, when every strict write waits. */
    AWAIT(members_trusted, &ma, "the members set was never trusted");
    cr_assert_eq(tc_command(a, 1, argv, argl, &rep), TC_OK, "%s",
                 tc_errmsg());
    tc_reply_free(rep);
    tc_cache_stats(a, &st);
    cr_assert_eq(st.strict_waits, 1);
    cr_assert_eq(st.strict_lease_expiries, 1,
                 "the strict FLUSHDB took an empty members list for all "
                 "acknowledged");
    tc_cache_destroy(a);
}

/* ------------------------------------------------------------------ */
/* A lost members set is not trusted until every old lease has passed   */
/* ------------------------------------------------------------------ */

/* Holds a bus thread at its next message until released. */
typedef struct bus_hold {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int held, released;
} bus_hold;

static void hold_bus(void *p)
{
    bus_hold *h = p;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 120; /* never hang the suite, whatever happens */
    pthread_mutex_lock(&h->mu);
    if (!h->released) {
        h->held = 1;
        pthread_cond_broadcast(&h->cv);
        while (!h->released &&
               pthread_cond_timedwait(&h->cv, &h->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&h->mu);
}

static int bus_held(void *p)
{
    bus_hold *h = p;
    int held;
    pthread_mutex_lock(&h->mu);
    held = h->held;
    pthread_mutex_unlock(&h->mu);
    return held;
}

static int member_back(void *p)
{
    return !member_gone(p);
}

/* FLUSHALL (or an eviction, or a failover to a replica) takes the members
 * set away. Writers that heartbeat again are listed at once; a reader
 * whose heartbeat comes later still holds a lease proven before the loss
 * and still serves its L1. Here that reader's bus thread is held, so its
 * heartbeat cannot come: a strict write in that window must not return on
 * its own acknowledgement alone while the reader still serves the old
 * value; it waits out the lease. */
Test(guarantees, a_lost_members_set_is_not_trusted_until_old_leases_pass)
{
    tc_options o = g_opts(&srv);
    members_arg ma = {&srv, NULL, 5000};
    tc__bus_hook hook;
    bus_hold hold = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
                     0};
    tc_cache *reader, *writer;
    tc_stats st;
    char *s;
    o.coherence = TC_COHERENCE_STRICT;
    o.lease_ms = 5000; /* a heartbeat every 1.25 s */
    reader = must_create(&o);
    writer = must_create(&o);
    cr_assert(tcr_wait(servable, reader, AWAIT_MS));
    cr_assert(tcr_wait(servable, writer, AWAIT_MS));
    AWAIT(members_trusted, &ma, "the members set was never trusted");
    cr_assert_eq(set_str(writer, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(reader, "k", "v1");

    hook.fn = hold_bus;
    hook.arg = &hold;
    tc__cache_set_bus_hook(reader, &hook);
    AWAIT(bus_held, &hold, "the reader's bus thread never got a message");
    s = tcr_cmd(&srv, NULL, "FLUSHALL", NULL);
    cr_assert_str_eq(s, "OK");
    free(s);
    AWAIT(member_back, (void *)tc_cache_instance_id(writer),
          "the writer never heartbeated again");
    cr_assert(!member_back((void *)tc_cache_instance_id(reader)));

    cr_assert_eq(set_str(writer, "k", "v2", 0), TC_OK, "%s", tc_errmsg());
    cr_assert(!l1_serves(reader, "k", "v1"),
              "the reader still served v1 after a strict write of v2");
    tc_cache_stats(writer, &st);
    cr_assert_eq(st.strict_lease_expiries, 1,
                 "the write took a rebuilt members set for complete");

    pthread_mutex_lock(&hold.mu);
    hold.released = 1;
    pthread_cond_broadcast(&hold.cv);
    pthread_mutex_unlock(&hold.mu);
    tc__cache_set_bus_hook(reader, NULL);
    tc_cache_destroy(reader);
    tc_cache_destroy(writer);
}

/* ------------------------------------------------------------------ */
/* An idle instance serves nothing it has not re-proved                 */
/* ------------------------------------------------------------------ */

/* The reader goes idle (no L1 read for idle_after_ms: lease.c, "Idle"),
 * then a write arrives that its bus thread is held from applying: no read
 * may be served the old value from L1 (the first one wakes the bus, which
 * cannot answer while held), and once released and re-proved it serves the
 * new one. Strict: the writer does not wait for the idle reader (it left
 * the count), which is what makes waking safe only through a heartbeat. */
static void idle_reader_serves_nothing_stale(int strict)
{
    tc_options o = g_opts(&srv);
    members_arg ma = {&srv, NULL, 100};
    tc__bus_hook hook;
    bus_hold hold = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
                     0};
    tc_cache *reader, *writer;
    idle_arg ia;
    tc_stats st;
    char *s;
    o.coherence = strict ? TC_COHERENCE_STRICT : TC_COHERENCE_ASYNC;
    o.idle_after_ms = 300;
    reader = must_create(&o);
    writer = must_create(&o);
    if (strict)
        AWAIT(members_trusted, &ma, "the members set was never trusted");
    cr_assert_eq(set_str(writer, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(reader, "k", "v1");
    ia = (idle_arg){&srv, reader};
    AWAIT(member_idle, &ia, "the reader never went idle");
    tc_cache_stats(writer, &st);
    {
        uint64_t expiries = st.strict_lease_expiries;
        hook.fn = hold_bus;
        hook.arg = &hold;
        tc__cache_set_bus_hook(reader, &hook);
        cr_assert_eq(set_str(writer, "k", "v2", 0), TC_OK, "%s",
                     tc_errmsg());
        tc_cache_stats(writer, &st);
        cr_assert_eq(st.strict_lease_expiries, expiries,
                     "the strict write waited for an idle instance");
    }
    AWAIT(bus_held, &hold, "the reader's bus thread never got a message");
    cr_assert(!l1_serves(reader, "k", "v1"),
              "an idle reader served v1 from L1 after a write of v2");
    s = get_str(reader, "k", NULL);
    cr_assert_str_eq(s, "v2");
    free(s);

    pthread_mutex_lock(&hold.mu);
    hold.released = 1;
    pthread_cond_broadcast(&hold.cv);
    pthread_mutex_unlock(&hold.mu);
    tc__cache_set_bus_hook(reader, NULL);
    AWAIT(servable, reader, "the reader never served L1 again");
    cr_assert(!l1_serves(reader, "k", "v1"), "v1 served after waking");
    warm(reader, "k", "v2");
    tc_cache_destroy(reader);
    tc_cache_destroy(writer);
}

Test(guarantees, an_idle_async_reader_serves_nothing_stale)
{
    idle_reader_serves_nothing_stale(0);
}

Test(guarantees, an_idle_strict_reader_is_not_waited_for_nor_stale)
{
    idle_reader_serves_nothing_stale(1);
}
