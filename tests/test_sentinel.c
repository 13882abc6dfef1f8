/* Redis Sentinel (issue 10): discovery through a redis-sentinel:// URL,
 * clear errors, and kill -9 of the master under load: writes fail fast or
 * succeed, none reported done is lost once the failover is known, the
 * handle recovers by itself, and L1 never serves a value from before the
 * failover. Real redis-server and redis-sentinel processes (fixture). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "sentinel.h"

static tcr_sentinels topo;

static void topo_setup(void)
{
    cr_assert_eq(tcr_sentinels_start(&topo, "mymaster", 60000), 0,
                 "sentinel topology did not start");
}

static void topo_teardown(void)
{
    tcr_sentinels_stop(&topo);
}

TestSuite(sentinel, .init = topo_setup, .fini = topo_teardown);

static tc_options sentinel_opts(const char *url)
{
    tc_options o = url_opts(url);
    o.connect_timeout_ms = 500;
    o.command_timeout_ms = 300;
    o.breaker_threshold = 1;
    return o;
}

/* ---- Discovery and errors ------------------------------------------- */

Test(sentinel, discovers_the_master_from_the_url)
{
    tc_options o = sentinel_opts(topo.url);
    tc_cache *c = must_create(&o);
    char *s;
    tc_result r;
    cr_assert_eq(set_str(c, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    s = tcr_cmd(&topo.master, NULL, "GET", "k", NULL);
    cr_assert(s && strcmp(s, "v1") == 0, "the write is not on the master");
    free(s);
    s = get_str(c, "k", &r);
    cr_assert(s && strcmp(s, "v1") == 0);
    free(s);
    tc_cache_destroy(c);
}

Test(sentinel, url_through_tc_options_parse_url_and_redis_url)
{
    tc_options o;
    char storage[700];
    tc_cache *c;
    char *s;
    memset(&o, 0, sizeof(o));
    cr_assert_eq(tc_options_parse_url(&o, topo.url, storage, sizeof(storage)),
                 TC_OK, "%s", tc_errmsg());
    o.ignore_env = TC_YES;
    c = must_create(&o);
    cr_assert_eq(set_str(c, "a", "1", 0), TC_OK, "%s", tc_errmsg());
    tc_cache_destroy(c);

    /* REDIS_URL, as tiercached and the README's example read it. */
    memset(&o, 0, sizeof(o));
    setenv("REDIS_URL", topo.url, 1);
    c = must_create(&o);
    unsetenv("REDIS_URL");
    cr_assert_eq(set_str(c, "b", "2", 0), TC_OK, "%s", tc_errmsg());
    s = tcr_cmd(&topo.master, NULL, "GET", "b", NULL);
    cr_assert(s && strcmp(s, "2") == 0);
    free(s);
    tc_cache_destroy(c);
}

Test(sentinel, url_parsing)
{
    tc__config cfg;
    tc_options o;
    memset(&o, 0, sizeof(o));
    o.ignore_env = TC_YES;
    o.url = "redis-sentinel://u:p%40ss@h1,[::1]:26380,h3:1/my%2Dm/3"
            "?sentinel_password=sp&sentinel_username=su";
    cr_assert_eq(tc__config_resolve(&o, &cfg), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(cfg.nsentinels, 3);
    cr_assert_str_eq(cfg.sentinel_hosts[0], "h1");
    cr_assert_eq(cfg.sentinel_ports[0], 26379);
    cr_assert_str_eq(cfg.sentinel_hosts[1], "::1");
    cr_assert_eq(cfg.sentinel_ports[1], 26380);
    cr_assert_eq(cfg.sentinel_ports[2], 1);
    cr_assert_str_eq(cfg.master_name, "my-m");
    cr_assert_str_eq(cfg.username, "u");
    cr_assert_str_eq(cfg.password, "p@ss");
    cr_assert_str_eq(cfg.sentinel_username, "su");
    cr_assert_str_eq(cfg.sentinel_password, "sp");
    cr_assert_eq(cfg.db, 3);
    cr_assert_null(cfg.host);
    cr_assert_not_null(cfg.sentinel);
    tc__config_free(&cfg);

    {
        static const char *const bad[] = {
            "redis-sentinel://h1,h2",           /* no master name */
            "redis-sentinel://h1,h2/",          /* empty master name */
            "redis-sentinel://h1,,h2/m",        /* empty sentinel */
            "redis-sentinel://h1:0/m",          /* bad port */
            "redis-sentinel:///m",              /* no sentinel */
            "redis-sentinel://h1/m?foo=1",      /* unknown parameter */
            "redis-sentinel://h1/m/x",          /* bad db */
            "redis-sentinel://h1/a%20b",        /* space in master name */
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            o.url = bad[i];
            cr_assert_eq(tc__config_resolve(&o, &cfg), TC_BAD_ARGUMENT,
                         "accepted %s", bad[i]);
        }
    }
}

Test(sentinel, wrong_master_name_is_a_clear_error)
{
    char url[700];
    tc_options o;
    tc_cache *c = NULL;
    tc_result r;
    snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d/"
             "nosuchmaster", topo.sentinel[0].port, topo.sentinel[1].port);
    o = sentinel_opts(url);
    r = tc_cache_create(&o, &c);
    cr_assert_eq(r, TC_BAD_ARGUMENT, "create: %s (%s)", tc_strerror(r),
                 tc_errmsg());
    cr_assert_null(c);
    cr_assert(strstr(tc_errmsg(), "no sentinel knows a master named "
                                  "'nosuchmaster'"),
              "unclear message: %s", tc_errmsg());
}

typedef struct logbuf {
    pthread_mutex_t mu;
    char text[4096];
} logbuf;

static void log_to_buf(void *ud, tc_log_level lvl, const char *msg)
{
    logbuf *b = ud;
    size_t n;
    (void)lvl;
    pthread_mutex_lock(&b->mu);
    n = strlen(b->text);
    snprintf(b->text + n, sizeof(b->text) - n, "%s\n", msg);
    pthread_mutex_unlock(&b->mu);
}

Test(sentinel, all_sentinels_down_is_a_clear_outage)
{
    char url[700];
    tc_options o;
    tc_cache *c;
    tc_result r;
    tc_health h;
    logbuf lb = {PTHREAD_MUTEX_INITIALIZER, ""};
    int p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = topo.sentinel[i].port;
        tcr_kill(&topo.sentinel[i]);
    }
    snprintf(url, sizeof(url),
             "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/"
             "mymaster", p[0], p[1], p[2]);
    o = sentinel_opts(url);
    o.log = log_to_buf;
    o.log_userdata = &lb;
    /* Like Redis down at create: not an error, the cache starts degraded. */
    c = must_create(&o);
    pthread_mutex_lock(&lb.mu);
    cr_assert(strstr(lb.text, "no sentinel answered for master 'mymaster'"),
              "unclear log: %s", lb.text);
    pthread_mutex_unlock(&lb.mu);
    r = set_str(c, "k", "v", 0);
    cr_assert(is_outage(r), "write with no sentinel: %s", tc_strerror(r));
    get_str(c, "k", &r);
    cr_assert(is_outage(r), "read with no sentinel: %s", tc_strerror(r));
    cr_assert_neq(tc_cache_health(c, &h), TC_OK);
    cr_assert(strstr(tc_errmsg(), "sentinel"), "health: %s", tc_errmsg());
    cr_assert_eq(h.l2_up, 0);
    tc_cache_destroy(c);
}

/* ---- Sentinels over TLS ---------------------------------------------- */

static int servable(void *c)
{
    return tc__cache_l1_servable(c);
}

/* A TLS-only deployment (every server and sentinel with port 0 and a
 * tls-port, tls-replication on): with `tls` on, the sentinels are asked
 * over TLS with the same CA, and the master they name is reached over TLS
 * by the pool and the bus (L1 serves). The wrong CA is refused with a
 * clear error naming the sentinels. Before: the sentinels were asked in
 * plain TCP, which a TLS-only sentinel never answers. */
Test(sentinel, sentinels_over_tls)
{
    tcr_sentinels t;
    tc_options o;
    tc_cache *c;
    tc_result r;
    char *s;
    cr_assert_eq(tcr_sentinels_start_tls(&t, "tlsmaster", 60000), 0,
                 "TLS sentinel topology did not start");
    o = sentinel_opts(t.url);
    o.tls = TC_YES;
    o.tls_ca_file = t.master.ca_file;
    c = must_create(&o);
    cr_assert_eq(set_str(c, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    s = tcr_cmd(&t.master, NULL, "GET", "k", NULL);
    cr_assert(s && strcmp(s, "v1") == 0, "the write is not on the master");
    free(s);
    AWAIT(servable, c, "the bus never came up over TLS");
    warm(c, "k", "v1");
    tc_cache_destroy(c);

    /* Every sentinel answered the handshake with a certificate we cannot
     * verify: a definite refusal at create, naming them. */
    o.tls_ca_file = t.master.other_ca_file;
    c = NULL;
    r = tc_cache_create(&o, &c);
    cr_assert_neq(r, TC_OK, "created through sentinels of an unknown CA");
    cr_assert_null(c);
    cr_assert(strstr(tc_errmsg(), "sentinels") &&
                  strstr(tc_errmsg(), "certificate verification failed"),
              "unclear error: %s", tc_errmsg());
    tcr_sentinels_stop(&t);
}

/* ---- Failover -------------------------------------------------------- */

static int replica_promoted(void *p)
{
    (void)p;
    return tcr_sentinels_agree(&topo, &topo.replica);
}

typedef struct prober {
    tc_cache *c;
    int i;                  /* next key number */
    int ok_after_kill;      /* writes that returned TC_OK */
    int outages, others;
    tc_result other;
    char ok_keys[64][16];   /* the first 64 of them, checked at the end */
} prober;

/* One write of a fresh key; 1 when it returned TC_OK. */
static int write_one(void *p)
{
    prober *w = p;
    char key[16], val[16];
    tc_result r;
    snprintf(key, sizeof(key), "w%d", w->i);
    snprintf(val, sizeof(val), "%d", w->i);
    w->i++;
    r = set_str(w->c, key, val, 0);
    if (r == TC_OK) {
        if (w->ok_after_kill < 64)
            memcpy(w->ok_keys[w->ok_after_kill], key, sizeof(key));
        w->ok_after_kill++;
    } else if (is_outage(r)) {
        w->outages++;
    } else {
        w->others++;
        w->other = r;
    }
    return r == TC_OK && w->ok_after_kill >= 20;
}

Test(sentinel, kill_master_writes_resume_and_l1_is_flushed)
{
    tc_options o = sentinel_opts(topo.url);
    tc_cache *a = must_create(&o);
    prober w;
    tc_stats st0, st;
    char *s;
    tc_result r;
    double t_kill;

    cr_assert_eq(set_str(a, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(a, "k", "v1");
    /* The replica has it (the test only changes it there after). */
    cr_assert(tcr_replica_caught_up(&topo, 30000),
              "the replica did not catch up");
    tc_cache_stats(a, &st0);

    t_kill = tcr_now_ms();
    tcr_kill(&topo.master);
    memset(&w, 0, sizeof(w));
    w.c = a;
    /* Writes fail fast (breaker) or succeed; until 20 have succeeded on
     * the new master, found through the sentinels by the same handle. */
    cr_assert(tcr_wait(write_one, &w, 120000),
              "writes did not resume: %d ok, %d outages, %d others (%s)",
              w.ok_after_kill, w.outages, w.others, tc_errmsg());
    fprintf(stderr, "kill -9 master: 20 writes done on the new master "
            "%.0f ms after the kill (%d writes failed fast meanwhile, down-"
            "after-milliseconds 1000)\n", tcr_now_ms() - t_kill, w.outages);
    cr_assert_eq(w.others, 0, "a write failed with %s, not an outage",
                 tc_strerror(w.other));
    cr_assert(tcr_wait(replica_promoted, NULL, 60000),
              "sentinels never agreed on the replica");
    /* No write reported done after the kill is missing on the new master:
     * the only master that acknowledged them. */
    for (int i = 0; i < w.ok_after_kill && i < 64; i++) {
        s = tcr_cmd(&topo.replica, NULL, "GET", w.ok_keys[i], NULL);
        cr_assert(s && strcmp(s, w.ok_keys[i] + 1) == 0,
                  "write %s reported done but lost (%s)", w.ok_keys[i], s);
        free(s);
    }
    /* Another client changes k on the new master without publishing: the
     * invalidation a's bus would have missed. a must not serve v1. */
    s = tcr_cmd(&topo.replica, NULL, "SET", "k", "v2", NULL);
    free(s);
    AWAIT(servable, a, "the bus never proved itself on the new master");
    cr_assert(!l1_holds(a, "k", "v1"), "L1 kept v1 across the failover");
    s = get_str(a, "k", &r);
    cr_assert(s && strcmp(s, "v2") == 0, "read %s after failover", s);
    free(s);
    tc_cache_stats(a, &st);
    cr_assert_gt(st.bus_flushes, st0.bus_flushes);
    cr_assert_gt(st.bus_reconnects, st0.bus_reconnects);
    tc_cache_destroy(a);
}

/* A manual failover leaves the old master alive and demotes it: the
 * pool's open connections then get READONLY, and the bus's heartbeat too.
 * Both must move to the new master by themselves. */
static int old_master_demoted(void *p)
{
    char *role = tcr_cmd(&topo.master, NULL, "ROLE", NULL);
    int ok = role && strncmp(role, "slave", 5) == 0;
    (void)p;
    free(role);
    return ok && replica_promoted(NULL);
}

typedef struct moved_arg {
    tc_cache *c;
    uint64_t flushes0;
} moved_arg;

/* The bus flushed L1 (re-subscribed) since flushes0 and serves L1. */
static int moved_and_servable(void *p)
{
    moved_arg *m = p;
    tc_stats st;
    tc_cache_stats(m->c, &st);
    return st.bus_flushes > m->flushes0 && tc__cache_l1_servable(m->c);
}

Test(sentinel, demoted_master_answering_readonly_is_left)
{
    tc_options o = sentinel_opts(topo.url);
    tc_cache *a = must_create(&o);
    prober w;
    tc_stats st0;
    char *s;
    cr_assert_eq(set_str(a, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(a, "k", "v1");
    tc_cache_stats(a, &st0);
    s = tcr_cmd(&topo.sentinel[0], NULL, "SENTINEL", "FAILOVER", "mymaster",
                NULL);
    cr_assert(s && strcmp(s, "OK") == 0, "SENTINEL FAILOVER: %s", s);
    free(s);
    cr_assert(tcr_wait(old_master_demoted, NULL, 60000),
              "the old master was never demoted");
    /* From here the old master refuses writes: every write reported done
     * is on the new one. */
    memset(&w, 0, sizeof(w));
    w.c = a;
    cr_assert(tcr_wait(write_one, &w, 60000),
              "writes did not resume: %d ok, %d outages, %d others (%s)",
              w.ok_after_kill, w.outages, w.others, tc_errmsg());
    cr_assert_eq(w.others, 0, "a write failed with %s, not an outage",
                 tc_strerror(w.other));
    for (int i = 0; i < w.ok_after_kill && i < 64; i++) {
        s = tcr_cmd(&topo.replica, NULL, "GET", w.ok_keys[i], NULL);
        cr_assert(s && strcmp(s, w.ok_keys[i] + 1) == 0,
                  "write %s reported done but not on the new master (%s)",
                  w.ok_keys[i], s);
        free(s);
    }
    /* The bus left the demoted master too: it re-subscribed (flushing L1)
     * and proves itself on the new one. */
    {
        moved_arg m = {a, st0.bus_flushes};
        AWAIT(moved_and_servable, &m,
              "the bus never re-subscribed and proved itself");
    }
    cr_assert(!l1_holds(a, "k", "v1"), "L1 kept v1 across the failover");
    s = tcr_cmd(&topo.replica, NULL, "SET", "k", "v2", NULL);
    free(s);
    s = get_str(a, "k", NULL);
    cr_assert(s && strcmp(s, "v2") == 0, "read %s after failover", s);
    free(s);
    tc_cache_destroy(a);
}

/* ---- The master epoch that fences strict writers after a promotion --- */

#define MEMBERS "__tiercache:invalidate:members"
#define CLOCK "__tiercache:invalidate:clock"
#define EPOCH "__tiercache:invalidate:epoch"

static char *count_on(const tcr_server *s, const char *lease)
{
    return tcr_cmd(s, NULL, "EVAL", tc__bus_count_script(), "3", MEMBERS,
                   CLOCK, EPOCH, lease, NULL);
}

static char *replid_of(const tcr_server *s)
{
    char *info = tcr_cmd(s, NULL, "INFO", "replication", NULL);
    char *p = info ? strstr(info, "master_replid:") : NULL, *out = NULL;
    if (p) {
        p += strlen("master_replid:");
        out = strndup(p, strcspn(p, "\r\n"));
    }
    free(info);
    return out;
}

Test(sentinel, count_script_fences_a_members_set_from_another_master)
{
    char *rid = replid_of(&topo.master), *s, ep[128];
    cr_assert_not_null(rid);
    free(tcr_cmd(&topo.master, NULL, "ZADD", MEMBERS, "1e15", "someone",
                 NULL));
    /* A clock key as a heartbeat leaves it ("<now> 0": the set was not
     * rebuilt recently), or the count answers "unknown" for another
     * reason (lease.c). */
    free(tcr_cmd(&topo.master, NULL, "EVAL",
                 "local t = redis.call('TIME') "
                 "return redis.call('SET', KEYS[1], t[1] * 1000 .. ' 0')",
                 "1", CLOCK, NULL));
    /* No epoch yet: the members are the answer. */
    s = count_on(&topo.master, "1000");
    cr_assert(s && strcmp(s, "someone") == 0, "no epoch: %s", s);
    free(s);
    /* Copied from a master with another replication id: fenced. */
    free(tcr_cmd(&topo.master, NULL, "SET", EPOCH, "0123abcd 0", NULL));
    s = count_on(&topo.master, "1000");
    cr_assert(s && strcmp(s, "0") == 0, "other master's epoch: %s", s);
    free(s);
    /* This master, but since a moment ago: fenced for one lease. */
    s = tcr_cmd(&topo.master, NULL, "TIME", NULL);
    snprintf(ep, sizeof(ep), "%s %lld", rid, atoll(s) * 1000);
    free(s);
    free(tcr_cmd(&topo.master, NULL, "SET", EPOCH, ep, NULL));
    s = count_on(&topo.master, "60000");
    cr_assert(s && strcmp(s, "0") == 0, "within the lease: %s", s);
    free(s);
    s = count_on(&topo.master, "1");
    cr_assert(s && strcmp(s, "someone") == 0, "after the lease: %s", s);
    free(s);
    free(rid);
}

typedef struct epoch_arg {
    const char *rid;
} epoch_arg;

/* The epoch key names this master with a non-zero "since". */
static int epoch_moved(void *p)
{
    epoch_arg *e = p;
    char *s = tcr_cmd(&topo.master, NULL, "GET", EPOCH, NULL);
    size_t n = strlen(e->rid);
    int ok = s && strncmp(s, e->rid, n) == 0 && s[n] == ' ' &&
             atoll(s + n + 1) > 0;
    free(s);
    return ok;
}

Test(sentinel, heartbeat_takes_over_an_epoch_from_another_master)
{
    tc_options o = sentinel_opts(topo.url);
    epoch_arg e;
    tc_cache *c;
    char *s, *rid = replid_of(&topo.master);
    cr_assert_not_null(rid);
    e.rid = rid;
    /* As a replica promoted by a failover has it: the old master's epoch
     * and a member the old master counted, long dead here. */
    free(tcr_cmd(&topo.master, NULL, "SET", EPOCH, "0123abcd 0", NULL));
    free(tcr_cmd(&topo.master, NULL, "ZADD", MEMBERS, "1", "gone", NULL));
    o.coherence = TC_COHERENCE_STRICT;
    c = must_create(&o);
    AWAIT(epoch_moved, &e, "the heartbeat never took the epoch over");
    /* Members were re-scored rather than pruned: "gone" is counted for a
     * lease, as it may still serve L1 from the old master's proofs. */
    s = tcr_cmd(&topo.master, NULL, "ZSCORE", MEMBERS, "gone", NULL);
    cr_assert(s && atoll(s) > 1, "gone was not re-scored: %s", s);
    free(s);
    tc_cache_destroy(c);
    free(rid);
}

/* The fence end to end. The master hangs (SIGSTOP: connections stay
 * open), so b keeps serving its L1 for its long lease; the replica's copy
 * of the members set lacks b (as if b's heartbeats had not replicated);
 * the sentinels promote the replica and a writes there in strict mode.
 * Only the epoch fence stands between that write returning and b still
 * serving the old value: the members a counts on the new master do not
 * include b. */
static int async_write_works(void *p)
{
    tc_set_opts so = {0, 0, TC_SET_ASYNC};
    return tc_set_ex(p, "probe", 5, "1", 1, &so) == TC_OK;
}

Test(sentinel, strict_write_on_promoted_replica_outlasts_old_leases)
{
    tc_options o = sentinel_opts(topo.url);
    tc_cache *a, *b;
    tc_stats st0, st;
    char *s;
    o.coherence = TC_COHERENCE_STRICT;
    o.lease_ms = 20000; /* b serves for ~19 s after its last proof */
    a = must_create(&o);
    b = must_create(&o);
    cr_assert_eq(set_str(a, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(b, "k", "v1");
    cr_assert(tcr_replica_caught_up(&topo, 30000),
              "the replica did not catch up");
    tcr_pause(&topo.master);
    AWAIT(tcr_stopped, &topo.master, "the master never stopped");
    s = tcr_cmd(&topo.replica, NULL, "CONFIG", "SET", "replica-read-only",
                "no", NULL);
    free(s);
    s = tcr_cmd(&topo.replica, NULL, "ZREM", MEMBERS,
                tc_cache_instance_id(b), NULL);
    if (!s || strcmp(s, "1") != 0) {
        char *m = tcr_cmd(&topo.replica, NULL, "ZRANGE", MEMBERS, "0", "-1",
                          "WITHSCORES", NULL);
        char *e = tcr_cmd(&topo.replica, NULL, "GET", EPOCH, NULL);
        cr_assert_fail("b (%s) a (%s) was not in the replica's set: %s; set "
                       "%s; epoch %s", tc_cache_instance_id(b),
                       tc_cache_instance_id(a), s, m, e);
    }
    free(s);
    tc_cache_stats(a, &st0);
    /* a's pool finds the new master; its bus follows and proves itself
     * there, so a's own acknowledgement is not what holds the write. */
    cr_assert(tcr_wait(async_write_works, a, 120000),
              "writes never resumed on the new master (%s)", tc_errmsg());
    {
        moved_arg m = {a, st0.bus_flushes};
        AWAIT(moved_and_servable, &m, "a's bus never moved");
    }
    cr_assert(l1_serves(b, "k", "v1"),
              "setup: b stopped serving v1 before the write (its lease "
              "ran out: the failover took longer than 19 s?)");
    tc_cache_stats(a, &st0);
    cr_assert_eq(set_str(a, "k", "v2", 0), TC_OK, "%s", tc_errmsg());
    /* The write returned: b must not serve v1, whatever its lease says. */
    cr_assert(!l1_serves(b, "k", "v1"),
              "b served v1 after a strict write of v2 returned");
    tc_cache_stats(a, &st);
    cr_assert_gt(st.strict_lease_expiries, st0.strict_lease_expiries,
                 "the write did not wait out its lease");
    tcr_kill(&topo.master);
    tc_cache_destroy(b);
    tc_cache_destroy(a);
}

/* ---- Strict mode across the failover -------------------------------- */

typedef struct strict_run {
    tc_cache *writer;
    atomic_int stop, killed;
    atomic_int last_ok;        /* highest value a write returned TC_OK for */
    atomic_int last_ok_post;   /* ... among writes started after the kill */
    atomic_int ok_post, outages, others;
} strict_run;

static void *strict_writer(void *p)
{
    strict_run *x = p;
    char val[16];
    for (int i = 1; !atomic_load(&x->stop); i++) {
        int post = atomic_load(&x->killed);
        tc_result r;
        snprintf(val, sizeof(val), "%d", i);
        r = set_str(x->writer, "k", val, 0);
        if (r == TC_OK) {
            atomic_store(&x->last_ok, i);
            if (post) {
                atomic_store(&x->last_ok_post, i);
                atomic_fetch_add(&x->ok_post, 1);
            }
        } else if (is_outage(r)) {
            atomic_fetch_add(&x->outages, 1);
            tcr_sleep_ms(5); /* pacing only: the breaker fails fast */
        } else {
            atomic_fetch_add(&x->others, 1);
        }
    }
    return NULL;
}

Test(sentinel, strict_zero_stale_reads_across_failover)
{
    tc_options o = sentinel_opts(topo.url);
    tc_cache *a, *b;
    strict_run x;
    pthread_t t;
    long reads = 0, stale = 0, stale_lost = 0, l1_reads = 0, fails = 0;
    int worst_floor = 0, worst_got = 0;
    char *s;
    tc_stats st;

    o.coherence = TC_COHERENCE_STRICT;
    a = must_create(&o);
    b = must_create(&o);
    memset(&x, 0, sizeof(x));
    x.writer = a;
    AWAIT(servable, b, "b never served L1");
    pthread_create(&t, NULL, strict_writer, &x);
    for (int phase = 0; phase < 2; phase++) {
        /* Phase 0: before the kill, until writes are flowing; phase 1:
         * after it, until 50 strict writes succeeded on the new master. */
        double until = tcr_now_ms() + 120000;
        while (tcr_now_ms() < until) {
            int floor = atomic_load(&x.last_ok);
            int floor_post = atomic_load(&x.last_ok_post);
            int killed = atomic_load(&x.killed);
            tc_value *v = NULL;
            tc_result r;
            int from_l1 = tc_peek(b, "k", 1, &v) == TC_OK;
            if (!from_l1)
                r = tc_get(b, "k", 1, &v);
            else
                r = TC_OK;
            reads++;
            l1_reads += from_l1;
            if (r == TC_OK) {
                char buf[16];
                size_t n = tc_value_len(v) < 15 ? tc_value_len(v) : 15;
                int got;
                memcpy(buf, tc_value_data(v), n);
                buf[n] = '\0';
                got = atoi(buf);
                /* Before the kill every acknowledged write counts; after
                 * it, a write the dead master acknowledged may have been
                 * lost by Redis's asynchronous replication (counted
                 * apart), but none acknowledged by the new master. */
                if (got < (killed ? floor_post : floor)) {
                    stale++;
                    worst_floor = killed ? floor_post : floor;
                    worst_got = got;
                } else if (got < floor) {
                    stale_lost++;
                }
                tc_value_release(v);
            } else if (r != TC_NOT_FOUND) {
                fails++;
                tcr_sleep_ms(1); /* pacing only: the breaker fails fast */
            }
            if (phase == 0 && floor >= 30)
                break;
            if (phase == 1 && atomic_load(&x.ok_post) >= 50)
                break;
        }
        if (phase == 0) {
            cr_assert_geq(atomic_load(&x.last_ok), 30, "writes never flowed");
            /* Writes paused and the replica caught up: a write started
             * from here blocks until the kill fails it, so every write
             * counted as after the kill is one the new master took. */
            s = tcr_cmd(&topo.master, NULL, "CLIENT", "PAUSE", "60000",
                        "WRITE", NULL);
            cr_assert(s && strcmp(s, "OK") == 0, "CLIENT PAUSE: %s", s);
            free(s);
            cr_assert(tcr_replica_caught_up(&topo, 30000),
                      "the replica did not catch up");
            atomic_store(&x.killed, 1);
            tcr_kill(&topo.master);
        }
    }
    atomic_store(&x.stop, 1);
    pthread_join(t, NULL);
    fprintf(stderr, "strict failover: %ld reads (%ld from L1, %ld failed), "
                "%ld stale, %ld older than a write the dead master "
                "acknowledged; writes after the kill: %d ok, %d outages, "
                "%d other\n",
                reads, l1_reads, fails, stale, stale_lost,
                atomic_load(&x.ok_post), atomic_load(&x.outages),
                atomic_load(&x.others));
    cr_assert_geq(atomic_load(&x.ok_post), 50,
                  "strict writes did not resume after the failover");
    cr_assert_eq(stale, 0, "%ld stale reads (read %d after %d was done)",
                 stale, worst_got, worst_floor);
    cr_assert_eq(atomic_load(&x.others), 0,
                 "a write failed with something other than an outage");
    /* The last write reported done is on the new master (or a later one
     * that failed after Redis applied it). */
    s = tcr_cmd(&topo.replica, NULL, "GET", "k", NULL);
    cr_assert(s && atoi(s) >= atomic_load(&x.last_ok_post),
              "new master has %s, last write done %d", s,
              atomic_load(&x.last_ok_post));
    free(s);
    tc_cache_stats(b, &st);
    cr_assert_geq(st.bus_reconnects, 1, "b's bus never moved");
    tc_cache_destroy(b);
    tc_cache_destroy(a);
}
