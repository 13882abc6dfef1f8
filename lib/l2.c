/* L2 client: connection pool, timeouts, circuit breaker, reconnects. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "error.h"
#include "backoff.h"
#include "clock.h"
#include "handshake.h"
#include "sentinel.h"
#include "signals.h"
#include "l2.h"
#include "l2_cluster.h"

typedef struct slot {
    pthread_mutex_t mu;
    tc__conn *ctx;     /* NULL = not connected; slot mutex */
    unsigned epoch;    /* breaker epoch ctx was made in; slot mutex */
    uint64_t sgen;     /* sentinel generation ctx was made in; slot mutex */
    uint64_t last_used_ns; /* end of the last good exchange; slot mutex */
} __attribute__((aligned(64))) slot;

struct tc__l2 {
    const tc__config *cfg; /* borrowed from the cache, immutable */
    slot *slots;
    unsigned nslots;

    atomic_int breaker_open;
    atomic_uint epoch; /* bumped when the breaker closes: connections made
                          before an outage are not trusted after it */
    atomic_uint consecutive_failures;

    atomic_uint_fast64_t errors, timeouts, reconnects, round_trips, opens;

    /* Reconnect thread. */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping; /* mu */

    tc__l2c *cluster; /* Redis Cluster: a pool per node (l2_cluster.h);
                         then nothing above but cfg is used */
};

/* Run one command during connection setup; 0 when the reply is not an
 * error. On an error reply, *err_reply gets its text. */
static int setup_cmd(tc__conn *c, tc_result *why, char *err_reply,
                     size_t errlen, int argc, const char *const *argv)
{
    redisReply *r = NULL;
    tc_result rc = tc__conn_command(c, argc, (const char **)argv, NULL, &r);
    if (rc != TC_OK) {
        *why = rc;
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err_reply, errlen, "%.*s", (int)r->len, r->str);
        freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

/* The first word of a ROLE reply ("master", "slave", ...), for messages. */
static const char *role_word(const redisReply *r)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements &&
        r->element[0]->type == REDIS_REPLY_STRING)
        return r->element[0]->str;
    return r->type == REDIS_REPLY_ERROR ? r->str : "?";
}

tc__conn *tc__l2_connect(const tc__config *cfg, tc_result *why)
{
    tc__conn *c = NULL;
    tc__conn_opts o;
    char where[300], err[200] = "", mhost[256];
    tc__setup_cmds setup;
    int mport = 0;
    /* Read before asking the sentinels: a report of a non-master below
     * then never bumps past a newer generation. */
    uint64_t sgen = cfg->sentinel ? tc__sentinel_generation(cfg->sentinel) : 0;

    /* TCP (keepalive, NODELAY), unix or TLS, within the connect timeout;
     * each later reply within the command timeout. */
    tc__conn_opts_of(cfg, &o);
    if (cfg->sentinel) {
        /* Whoever the sentinels name as the master now. */
        if ((*why = tc__sentinel_resolve(cfg->sentinel, mhost, sizeof(mhost),
                                         &mport)) != TC_OK)
            return NULL;
        o.host = mhost;
        o.port = mport;
        snprintf(where, sizeof(where), "%s:%d (master %s)", mhost, mport,
                 cfg->master_name);
    } else {
        tc__config_where(cfg, where, sizeof(where));
    }
    if ((*why = tc__conn_open(&o, &c)) != TC_OK)
        return NULL;
    tc__setup_cmds_make(cfg, &setup);
    for (int i = 0; i < setup.n; i++) {
        const tc__setup_cmd *sc = &setup.cmd[i];
        int is_auth = strcmp(sc->argv[0], "AUTH") == 0;
        if (setup_cmd(c, why, err, sizeof(err), sc->argc, sc->argv) == 0)
            continue;
        if (err[0]) {
            /* The server's words never include the password. */
            if (is_auth)
                *why = tc__fail(TC_AUTH, "AUTH to %s%s%s refused: %s", where,
                                cfg->username ? " as " : "",
                                cfg->username ? cfg->username : "", err);
            else if (strncmp(err, "NOAUTH", 6) == 0)
                *why = tc__fail(TC_AUTH, "%s needs a password: %s", where, err);
            else
                *why = tc__fail(TC_BAD_ARGUMENT, "SELECT %d on %s: %s",
                                cfg->db, where, err);
        }
        tc__conn_free(c);
        return NULL;
    }
    if (cfg->sentinel) {
        /* The sentinels may lag a failover: only a master will do. ROLE
         * also detects a server that needs AUTH, as PING does below. */
        redisReply *r = NULL;
        const char *role[1] = {"ROLE"};
        if ((*why = tc__conn_command(c, 1, role, NULL, &r)) != TC_OK) {
            tc__conn_free(c);
            return NULL;
        }
        if (!tc__sentinel_role_is_master(r)) {
            if (r->type == REDIS_REPLY_ERROR &&
                strncmp(r->str, "NOAUTH", 6) == 0)
                *why = tc__fail(TC_AUTH, "%s needs a password: %.*s", where,
                                (int)r->len, r->str);
            else
                *why = tc__fail(TC_L2_UNAVAILABLE,
                                "%s, named by the sentinels, is not the "
                                "master (ROLE %s): failover under way?",
                                where, role_word(r));
            if (*why != TC_AUTH)
                tc__sentinel_lost_master(cfg->sentinel, sgen);
            freeReplyObject(r);
            tc__conn_free(c);
            return NULL;
        }
        freeReplyObject(r);
        return c;
    }
    if (!cfg->password && !cfg->db) {
        /* Detect a server that needs AUTH now, with a clear error. */
        if (setup_cmd(c, why, err, sizeof(err), 1, (const char *[]){"PING"})) {
            if (err[0])
                *why = strncmp(err, "NOAUTH", 6) == 0
                           ? tc__fail(TC_AUTH, "%s needs a password: %s",
                                      where, err)
                           : tc__fail(TC_PROTOCOL, "PING on %s: %s", where, err);
            tc__conn_free(c);
            return NULL;
        }
    }
    return c;
}

static void record_success(tc__l2 *l2)
{
    if (atomic_load_explicit(&l2->consecutive_failures, memory_order_relaxed))
        atomic_store_explicit(&l2->consecutive_failures, 0,
                              memory_order_relaxed);
}

static void open_breaker(tc__l2 *l2)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&l2->breaker_open, &expected, 1)) {
        atomic_fetch_add(&l2->opens, 1);
        tc__log(&l2->cfg->log, TC_LOG_WARN,
                "L2 circuit breaker open: failing fast until Redis answers");
        pthread_mutex_lock(&l2->mu);
        pthread_cond_signal(&l2->cv);
        pthread_mutex_unlock(&l2->mu);
    }
}

static void record_failure(tc__l2 *l2, tc_result r)
{
    atomic_fetch_add(&l2->errors, 1);
    if (r == TC_TIMEOUT)
        atomic_fetch_add(&l2->timeouts, 1);
    if (atomic_fetch_add(&l2->consecutive_failures, 1) + 1 >=
        l2->cfg->breaker_threshold)
        open_breaker(l2);
}

static _Thread_local unsigned my_slot_hint;
static atomic_uint next_hint;

static slot *acquire(tc__l2 *l2)
{
    unsigned n = l2->nslots, start;
    if (!my_slot_hint)
        my_slot_hint = atomic_fetch_add(&next_hint, 1) + 1;
    start = my_slot_hint % n;
    for (unsigned i = 0; i < n; i++) {
        slot *s = &l2->slots[(start + i) % n];
        if (pthread_mutex_trylock(&s->mu) == 0)
            return s;
    }
    pthread_mutex_lock(&l2->slots[start].mu);
    return &l2->slots[start];
}

/* Has the server closed (or written unasked to) this idle connection? */
static int conn_stale(tc__conn *c)
{
    return tc__conn_stale(c);
}

/* Does any reply (or an element of an EXEC reply) say that the server is
 * not a writable master? */
static int demoted(redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const redisReply *r = replies[i];
        if (r->type == REDIS_REPLY_ERROR &&
            tc__sentinel_error_means_demoted(r->str, r->len))
            return 1;
        if (r->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j < r->elements; j++)
                if (r->element[j]->type == REDIS_REPLY_ERROR &&
                    tc__sentinel_error_means_demoted(r->element[j]->str,
                                                     r->element[j]->len))
                    return 1;
    }
    return 0;
}

/* One exchange on the slot's connection (slot mutex held). *reused tells
 * whether the connection predates this call. */
static tc_result exchange(tc__l2 *l2, slot *s, size_t n, const tc__cmd *cmds,
                          redisReply **replies, int *reused)
{
    tc_result r = TC_OK;
    size_t got = 0;
    uint64_t now = tc__now_ns();
    tc__sentinel *sen = l2->cfg->sentinel;
    uint64_t sgen = sen ? tc__sentinel_generation(sen) : 0;
    if (s->ctx && (s->epoch != atomic_load(&l2->epoch) || s->sgen != sgen ||
                   (now - s->last_used_ns > 1000000ULL && conn_stale(s->ctx)))) {
        /* From before an outage or a failover, or closed by the server
         * while idle (a restart, CLIENT KILL, timeout): reconnect before
         * sending. */
        tc__conn_free(s->ctx);
        s->ctx = NULL;
    }
    *reused = s->ctx != NULL;
    if (!s->ctx) {
        s->epoch = atomic_load(&l2->epoch);
        s->sgen = sgen; /* read before the connect: never newer than it */
        s->ctx = tc__l2_connect(l2->cfg, &r);
        if (!s->ctx)
            return r;
    }
    for (size_t i = 0; i < n && r == TC_OK; i++)
        r = tc__conn_append(s->ctx, cmds[i].argc, cmds[i].argv,
                            cmds[i].argvlen);
    for (; got < n; got++) {
        redisReply *rep = NULL;
        if (r != TC_OK || (r = tc__conn_get_reply(s->ctx, &rep)) != TC_OK) {
            /* The reply stream is out of step: drop the connection. */
            tc__conn_free(s->ctx);
            s->ctx = NULL;
            for (size_t i = 0; i < got; i++)
                freeReplyObject(replies[i]);
            return r;
        }
        replies[got] = rep;
    }
    if (sen && demoted(replies, n)) {
        /* A failover demoted our server (or it is loading): no write in
         * this exchange was taken, and its reads came from a replica.
         * Drop the connection and make every connection made before it,
         * in the pool and the bus, go too. */
        for (size_t i = 0; i < n; i++)
            freeReplyObject(replies[i]);
        tc__conn_free(s->ctx);
        s->ctx = NULL;
        tc__sentinel_lost_master(sen, s->sgen);
        return tc__fail(TC_L2_UNAVAILABLE,
                        "Redis master '%s' was demoted or is loading "
                        "(READONLY/LOADING): asking the sentinels again",
                        l2->cfg->master_name);
    }
    s->last_used_ns = tc__now_ns();
    return TC_OK;
}

tc_result tc__l2_run(tc__l2 *l2, size_t n, const tc__cmd *cmds,
                     redisReply **replies, int flags)
{
    slot *s;
    tc_result r;
    int reused = 0;
    int ignore = flags & TC__L2_IGNORE_BREAKER;

    if (l2->cluster)
        return tc__l2c_run(l2->cluster, n, cmds, replies, flags);
    if (!ignore && atomic_load_explicit(&l2->breaker_open, memory_order_acquire))
        return tc__fail(TC_L2_UNAVAILABLE,
                        "Redis unavailable (circuit breaker open)");
    s = acquire(l2);
    /* The breaker may have opened while we waited for the slot. */
    if (!ignore && atomic_load_explicit(&l2->breaker_open, memory_order_acquire)) {
        pthread_mutex_unlock(&s->mu);
        return tc__fail(TC_L2_UNAVAILABLE,
                        "Redis unavailable (circuit breaker open)");
    }
    r = exchange(l2, s, n, cmds, replies, &reused);
    /* A connection that died under us (not a timeout) is retried once on a
     * fresh one when running the commands twice is harmless. */
    if (r == TC_L2_UNAVAILABLE && reused && (flags & TC__L2_IDEMPOTENT))
        r = exchange(l2, s, n, cmds, replies, &reused);
    pthread_mutex_unlock(&s->mu);
    if (r == TC_OK) {
        atomic_fetch_add_explicit(&l2->round_trips, 1, memory_order_relaxed);
        record_success(l2);
    } else if (r != TC_AUTH) {
        record_failure(l2, r);
    }
    return r;
}

tc_result tc__l2_run_at(tc__l2 *l2, const struct tc__node_addr *a, size_t n,
                        const tc__cmd *cmds, redisReply **replies, int flags)
{
    if (!l2->cluster)
        return tc__fail(TC_BAD_ARGUMENT, "not a Redis Cluster");
    return tc__l2c_run_at(l2->cluster, a, n, cmds, replies, flags);
}

tc_result tc__l2_run_slot(tc__l2 *l2, int slot, size_t n, const tc__cmd *cmds,
                          redisReply **replies, int flags)
{
    if (!l2->cluster)
        return tc__l2_run(l2, n, cmds, replies, flags);
    return tc__l2c_run_slot(l2->cluster, slot, n, cmds, replies, flags);
}

tc__conn *tc__l2_connect_slot(tc__l2 *l2, const tc__config *cfg, int slot,
                              tc_result *why)
{
    if (!l2->cluster)
        return tc__l2_connect(cfg, why);
    return tc__l2c_connect_slot(l2->cluster, slot, why);
}

int tc__l2_breaker_open(const tc__l2 *l2)
{
    if (l2->cluster)
        return tc__l2c_breaker_open(l2->cluster);
    return atomic_load_explicit(&l2->breaker_open, memory_order_acquire);
}

void tc__l2_stats(const tc__l2 *l2, tc_stats *out)
{
    if (l2->cluster) {
        tc__l2c_stats(l2->cluster, out);
        return;
    }
    out->l2_errors += atomic_load(&l2->errors);
    out->l2_timeouts += atomic_load(&l2->timeouts);
    out->l2_reconnects += atomic_load(&l2->reconnects);
    out->l2_round_trips += atomic_load(&l2->round_trips);
    out->breaker_opens += atomic_load(&l2->opens);
}

/* Wait on cv until `deadline_ns` (tc__now_ns()) or stop. mu held. */
static void wait_until(tc__l2 *l2, uint64_t deadline_ns)
{
    tc__cond_wait_until(&l2->cv, &l2->mu, deadline_ns);
}

/* Reconnect thread: sleeps until the breaker opens, then probes Redis with
 * capped exponential backoff and full jitter until a PING succeeds. */
static void *reconnect_main(void *arg)
{
    tc__l2 *l2 = arg;
    tc__backoff backoff;

    tc__backoff_init(&backoff, l2->cfg->reconnect_min_ms,
                     l2->cfg->reconnect_max_ms);
    pthread_mutex_lock(&l2->mu);
    while (!l2->stopping) {
        if (!atomic_load(&l2->breaker_open)) {
            tc__backoff_reset(&backoff);
            pthread_cond_wait(&l2->cv, &l2->mu);
            continue;
        }
        wait_until(l2, tc__deadline_ms(tc__backoff_next(&backoff)));
        if (l2->stopping)
            break;
        pthread_mutex_unlock(&l2->mu);
        {
            tc_result why;
            tc__conn *c = tc__l2_connect(l2->cfg, &why);
            if (c) {
                tc__conn_free(c);
                atomic_store(&l2->consecutive_failures, 0);
                atomic_fetch_add(&l2->epoch, 1);
                atomic_store(&l2->breaker_open, 0);
                atomic_fetch_add(&l2->reconnects, 1);
                tc__log(&l2->cfg->log, TC_LOG_INFO,
                        "L2 reachable again: circuit breaker closed");
            }
        }
        pthread_mutex_lock(&l2->mu);
    }
    pthread_mutex_unlock(&l2->mu);
    return NULL;
}

tc_result tc__l2_create(const tc__config *cfg, tc__l2 **out)
{
    tc__l2 *l2 = calloc(1, sizeof(*l2));
    tc_result r = TC_OK;
    tc__conn *first;

    if (!l2)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    l2->cfg = cfg;
    if (cfg->cluster) {
        if ((r = tc__l2c_create(cfg, &l2->cluster)) != TC_OK) {
            free(l2);
            return r;
        }
        *out = l2;
        return TC_OK;
    }
    l2->nslots = cfg->pool_size;
    if (posix_memalign((void **)&l2->slots, 64, sizeof(slot) * l2->nslots)) {
        free(l2);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    memset(l2->slots, 0, sizeof(slot) * l2->nslots);
    for (unsigned i = 0; i < l2->nslots; i++)
        pthread_mutex_init(&l2->slots[i].mu, NULL);
    pthread_mutex_init(&l2->mu, NULL);
    tc__cond_init(&l2->cv);

    first = tc__l2_connect(cfg, &r);
    if (first) {
        l2->slots[0].ctx = first;
    } else if (r == TC_AUTH || r == TC_BAD_ARGUMENT || r == TC_NO_MEMORY) {
        tc__l2_destroy(l2);
        return r;
    } else {
        tc__log(&cfg->log, TC_LOG_WARN, "L2 down at start (%s); retrying",
                tc_errmsg());
        atomic_store(&l2->breaker_open, 1);
        atomic_fetch_add(&l2->opens, 1);
    }
    if (tc__thread_create(&l2->thread, reconnect_main, l2) != 0) {
        tc__l2_destroy(l2);
        return tc__fail(TC_NO_MEMORY, "cannot start reconnect thread");
    }
    l2->thread_started = 1;
    *out = l2;
    return TC_OK;
}

void tc__l2_destroy(tc__l2 *l2)
{
    if (!l2)
        return;
    if (l2->cluster) {
        tc__l2c_destroy(l2->cluster);
        free(l2);
        return;
    }
    if (l2->thread_started) {
        pthread_mutex_lock(&l2->mu);
        l2->stopping = 1;
        pthread_cond_broadcast(&l2->cv);
        pthread_mutex_unlock(&l2->mu);
        pthread_join(l2->thread, NULL);
    }
    for (unsigned i = 0; i < l2->nslots; i++) {
        if (l2->slots[i].ctx)
            tc__conn_free(l2->slots[i].ctx);
        pthread_mutex_destroy(&l2->slots[i].mu);
    }
    pthread_mutex_destroy(&l2->mu);
    pthread_cond_destroy(&l2->cv);
    free(l2->slots);
    free(l2);
}
