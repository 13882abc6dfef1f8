/*
 * tiercached's pinned clients (issue 9): WATCH, SELECT, blocking commands,
 * SUBSCRIBE and MONITOR on a Redis connection of the client's own. Real
 * redis-server (tests/redis_fixture.h), real tiercached processes on unix
 * sockets in private temp dirs, hiredis and raw sockets as clients. Every process is stopped by pid in the suite's fini,
 * and dies with the test process (PDEATHSIG) if a test crashes.
 */
#include "crit.h" /* Criterion, or the TSan build's shim */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_fixture.h"

#include "harness.h"

TestSuite(pinned, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers -------------------------------------------------------------- */

/* Element i of an array reply is the string `want`. */
static void expect_elem(const redisReply *r, size_t i, const char *want)
{
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "type %d (%s)", r->type,
                 r->str ? r->str : "");
    cr_assert_gt(r->elements, i);
    cr_assert_str_eq(r->element[i]->str ? r->element[i]->str : "(nil)", want);
}

/* A direct connection to the test's Redis (L2), in database `db`. */
static redisContext *redis_direct(int db)
{
    redisContext *c = tcr_connect_unix(redis.sock, 5);
    cr_assert(c, "cannot reach redis-server");
    if (db) {
        redisReply *r = cmd(c, "SELECT %d", db);
        freeReplyObject(r);
    }
    return c;
}

/* ---- blocking commands ---------------------------------------------------- */

typedef struct blocked {
    tcd_proc *t;
    char key[32];
    redisReply *reply;
} blocked;

static void *blpop_main(void *arg)
{
    blocked *b = arg;
    redisContext *c = tcr_connect_unix(b->t->sock, 60);
    if (c) {
        b->reply = redisCommand(c, "BLPOP %s 0", b->key);
        redisFree(c);
    }
    return NULL;
}

/* With one worker, a BLPOP held by a worker would stall every L1 miss and
 * forwarded command; each waits on its own connection instead. */
Test(pinned, blocking_commands_wait_without_stalling_others)
{
    tcd_proc *t = start_daemon("--workers", "1", NULL);
    blocked b[3];
    pthread_t th[3];
    redisContext *c = connect_to(t);
    for (int i = 0; i < 3; i++) {
        memset(&b[i], 0, sizeof(b[i]));
        b[i].t = t;
        snprintf(b[i].key, sizeof(b[i].key), "q%d", i);
        cr_assert_eq(pthread_create(&th[i], NULL, blpop_main, &b[i]), 0);
    }
    /* All three are waiting in Redis (CLIENT LIST there shows blpop). */
    for (int tries = 0;; tries++) {
        redisContext *d = redis_direct(0);
        redisReply *r = cmd(d, "INFO clients");
        const char *p = strstr(r->str, "blocked_clients:");
        int n = p ? atoi(p + 16) : 0;
        freeReplyObject(r);
        redisFree(d);
        if (n == 3)
            break;
        cr_assert_lt(tries, DEADLINE_MS / 10, "BLPOPs never reached Redis");
        tcr_sleep_ms(10);
    }
    /* Everyone else is served meanwhile (the 5 s client timeout fails
     * these if the worker is held). */
    for (int i = 0; i < 20; i++) {
        expect_status(c, "OK", "SET other%d v", i);
        expect_status(c, "v", "GET other%d", i);
        expect_int(c, 1, "INCR counter%d", i);
    }
    for (int i = 0; i < 3; i++)
        expect_int(c, 1, "RPUSH q%d item%d", i, i);
    for (int i = 0; i < 3; i++) {
        char want[16];
        pthread_join(th[i], NULL);
        cr_assert_not_null(b[i].reply, "BLPOP %d got no reply", i);
        snprintf(want, sizeof(want), "item%d", i);
        expect_elem(b[i].reply, 0, b[i].key);
        expect_elem(b[i].reply, 1, want);
        freeReplyObject(b[i].reply);
    }
    cr_assert_geq(info_field(t, "tiercached_pinned_total"), 3);
    redisFree(c);
}

Test(pinned, blocking_timeout_answers_the_nil_array_redis_sends)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t, "*3\r\n$5\r\nBLPOP\r\n$5\r\nempty\r\n"
                          "$4\r\n0.05\r\n", "\r\n");
}

/* ---- SELECT ---------------------------------------------------------------- */

Test(pinned, select_reaches_another_database_and_never_its_l1)
{
    tcd_proc *t = start_daemon("--l1-ttl-ms", "600000", NULL);
    redisContext *c0 = connect_to(t), *c2 = connect_to(t), *d;
    expect_status(c0, "OK", "SET k zero");
    await_l1_hit(t, c0, "k", "zero"); /* in L1 now */
    expect_status(c0, "OK", "SELECT 0"); /* the cache's own: no pin */
    expect_status(c2, "OK", "SELECT 2");
    expect_nil(c2, "GET k"); /* db 2 has no k, whatever L1 holds */
    expect_status(c2, "OK", "SET k two");
    expect_status(c2, "two", "GET k");
    expect_int(c2, 1, "DBSIZE");
    expect_status(c0, "zero", "GET k");
    expect_status(c2, "-ERR DB index is out of range", "SELECT 99");
    expect_status(c2, "OK", "SELECT 0");
    expect_status(c2, "zero", "GET k");
    d = redis_direct(2);
    expect_status(d, "two", "GET k");
    redisFree(d);
    redisFree(c0);
    redisFree(c2);
}

/* ---- WATCH ---------------------------------------------------------------- */

Test(pinned, watch_aborts_exec_when_the_key_changed)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *a = connect_to(t), *b = connect_to(t);
    redisReply *r;
    expect_status(a, "OK", "SET w 1");
    expect_status(a, "OK", "WATCH w");
    expect_status(b, "OK", "SET w 2");
    expect_status(a, "OK", "MULTI");
    expect_status(a, "QUEUED", "SET w mine");
    r = cmd(a, "EXEC");
    cr_assert_eq(r->type, REDIS_REPLY_NIL, "EXEC ran despite the WATCH");
    freeReplyObject(r);
    expect_status(a, "2", "GET w");
    /* Unchanged: it runs. */
    expect_status(a, "OK", "WATCH w");
    expect_status(a, "2", "GET w");
    expect_status(a, "OK", "MULTI");
    expect_status(a, "QUEUED", "SET w mine");
    r = cmd(a, "EXEC");
    expect_elem(r, 0, "OK");
    freeReplyObject(r);
    expect_status(b, "mine", "GET w");
    expect_status(a, "OK", "UNWATCH");
    /* DISCARD ends the WATCH, as in Redis: a later transaction runs. */
    expect_status(a, "OK", "WATCH w");
    expect_status(a, "OK", "MULTI");
    expect_status(a, "OK", "DISCARD");
    expect_status(b, "OK", "SET w changed");
    expect_status(a, "OK", "MULTI");
    expect_status(a, "QUEUED", "SET w after-discard");
    r = cmd(a, "EXEC");
    expect_elem(r, 0, "OK");
    freeReplyObject(r);
    expect_status(b, "after-discard", "GET w");
    redisFree(a);
    redisFree(b);
}

/* --redis-url .../2: the daemon's own database is 2; its clients start
 * there (SELECT 2 needs no connection of their own), and L1 serves it. */
Test(pinned, daemon_on_database_2)
{
    char url[600];
    tcd_proc *t;
    redisContext *c, *d;
    snprintf(url, sizeof(url), "%s?db=2", redis.unix_url);
    t = start_daemon("--redis-url", url, NULL);
    c = connect_to(t);
    expect_status(c, "OK", "SET in2 v");
    await_l1_hit(t, c, "in2", "v");
    expect_status(c, "OK", "SELECT 2");
    cr_assert_eq(info_field(t, "tiercached_pinned_total"), 0);
    d = redis_direct(2);
    expect_status(d, "v", "GET in2");
    redisFree(d);
    d = redis_direct(0);
    expect_nil(d, "GET in2");
    redisFree(d);
    redisFree(c);
}

#define LONG_L1 "--l1-ttl-ms", "600000", "--default-ttl", "900"

/* A write through a pinned connection in the cache's database keeps every
 * L1 coherent: strict, so B must serve the new value at once. */
Test(pinned, watched_exec_through_one_invalidates_the_other_strict)
{
    tcd_proc *a = start_daemon("--coherence", "strict", LONG_L1, NULL);
    tcd_proc *b = start_daemon("--coherence", "strict", LONG_L1, NULL);
    redisContext *ca = connect_to(a), *cb = connect_to(b);
    redisReply *r;
    expect_status(ca, "OK", "SET shared v1");
    expect_status(cb, "v1", "GET shared"); /* fills B's L1 */
    await_l1_hit(b, cb, "shared", "v1");
    expect_status(ca, "OK", "WATCH shared");
    expect_status(ca, "OK", "MULTI");
    expect_status(ca, "QUEUED", "SET shared v2");
    r = cmd(ca, "EXEC");
    expect_elem(r, 0, "OK");
    freeReplyObject(r);
    expect_status(cb, "v2", "GET shared");
    /* A plain write on the pinned connection too (outside MULTI). */
    expect_status(ca, "OK", "SET shared v3");
    expect_status(cb, "v3", "GET shared");
    /* And between WATCH and EXEC (the write may not end the WATCH). */
    expect_status(ca, "OK", "WATCH shared");
    expect_int(ca, 1, "APPEND other x");
    expect_status(ca, "OK", "SET shared v4");
    expect_status(cb, "v4", "GET shared");
    expect_status(ca, "OK", "MULTI");
    expect_status(ca, "QUEUED", "SET shared v5");
    r = cmd(ca, "EXEC");
    cr_assert_eq(r->type, REDIS_REPLY_NIL, "our own SET changed the key");
    freeReplyObject(r);
    expect_status(cb, "v4", "GET shared");
    redisFree(ca);
    redisFree(cb);
}

/* ---- pub/sub, MONITOR ------------------------------------------------------ */

Test(pinned, subscribe_works_as_against_redis)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *s = connect_to(t), *p = connect_to(t);
    redisReply *r;
    r = cmd(s, "SUBSCRIBE news");
    expect_elem(r, 0, "subscribe");
    expect_elem(r, 1, "news");
    cr_assert_eq(r->element[2]->integer, 1);
    freeReplyObject(r);
    r = cmd(s, "PSUBSCRIBE n*");
    expect_elem(r, 0, "psubscribe");
    cr_assert_eq(r->element[2]->integer, 2);
    freeReplyObject(r);
    expect_int(p, 2, "PUBLISH news hello");
    cr_assert_eq(redisGetReply(s, (void **)&r), REDIS_OK);
    expect_elem(r, 0, "message");
    expect_elem(r, 2, "hello");
    freeReplyObject(r);
    cr_assert_eq(redisGetReply(s, (void **)&r), REDIS_OK);
    expect_elem(r, 0, "pmessage");
    expect_elem(r, 3, "hello");
    freeReplyObject(r);
    /* Only the commands Redis allows in this mode. */
    r = cmd(s, "GET k");
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert(strstr(r->str, "only (P|S)SUBSCRIBE"), "%s", r->str);
    freeReplyObject(r);
    r = cmd(s, "PING");
    expect_elem(r, 0, "pong");
    freeReplyObject(r);
    r = cmd(s, "UNSUBSCRIBE");
    expect_elem(r, 0, "unsubscribe");
    cr_assert_eq(r->element[2]->integer, 1);
    freeReplyObject(r);
    r = cmd(s, "PUNSUBSCRIBE");
    expect_elem(r, 0, "punsubscribe");
    cr_assert_eq(r->element[2]->integer, 0);
    freeReplyObject(r);
    /* Out of pub/sub mode: an ordinary connection again. */
    expect_status(s, "OK", "SET k v");
    expect_status(s, "v", "GET k");
    expect_status(s, "PONG", "PING");
    redisFree(s);
    redisFree(p);
}

/* A pipelined pub/sub session gets the very bytes Redis sends, in order:
 * confirmations, PING's pong, Redis's refusal of GET, and, once out of
 * pub/sub mode, an ordinary reply. */
Test(pinned, pipelined_pubsub_bytes_are_redis_bytes)
{
    /* Pinned (not shared, daemon/pubsub.h): Redis answers UNSUBSCRIBE
     * without arguments in its own hash order. */
    tcd_proc *t = start_daemon("--no-shared-pubsub", NULL);
    expect_redis_bytes(t, "SUBSCRIBE a b\r\nPING\r\nPSUBSCRIBE c*\r\n"
                          "GET x\r\nUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\n"
                          "PING done\r\n", "$4\r\ndone\r\n");
}

/* Seed 001's subscriber listens on "cache:invalidate" for its own JSON; the
 * bus must never speak there. */
Test(pinned, application_channel_cache_invalidate_hears_only_the_app)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *s = connect_to(t), *w = connect_to(t);
    redisReply *r = cmd(s, "SUBSCRIBE cache:invalidate");
    freeReplyObject(r);
    expect_status(w, "OK", "SET user:1 x");
    expect_int(w, 1, "DEL user:1");
    expect_status(w, "OK", "TC.INVALIDATE ALL");
    expect_int(w, 1, "PUBLISH cache:invalidate {\"pattern\":\"user:*\"}");
    cr_assert_eq(redisGetReply(s, (void **)&r), REDIS_OK);
    expect_elem(r, 0, "message");
    expect_elem(r, 2, "{\"pattern\":\"user:*\"}");
    freeReplyObject(r);
    redisFree(s);
    redisFree(w);
}

Test(pinned, monitor_streams_what_redis_runs)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *m = connect_to(t), *c = connect_to(t);
    redisReply *r;
    int seen = 0;
    expect_status(m, "OK", "MONITOR");
    expect_status(c, "OK", "SET monitored-key 1");
    for (int i = 0; i < 10000 && !seen; i++) {
        cr_assert_eq(redisGetReply(m, (void **)&r), REDIS_OK, "%s",
                     m->errstr);
        cr_assert_eq(r->type, REDIS_REPLY_STATUS);
        seen = strstr(r->str, "\"monitored-key\"") != NULL;
        freeReplyObject(r);
    }
    cr_assert(seen, "MONITOR never showed the SET");
    redisFree(m);
    redisFree(c);
}

/* A subscriber that never reads: its messages stop being read from Redis
 * once --max-output of them wait, so the daemon does not grow. */
Test(pinned, subscriber_that_never_reads_cannot_grow_memory)
{
    /* 100 MB published: far above either bound if nothing held it back.
     * ASan's allocator keeps what it frees in per-size caches, so RSS
     * there runs tens of MB above the pending bytes: a looser bound. */
    enum { VALUE = 256 * 1024, MESSAGES = 400 };
    const char *asan = getenv("ASAN_OPTIONS");
    int under_asan = asan != NULL; /* ./dev sets it for the ASan build */
    char *saved = asan ? strdup(asan) : NULL, opts[512];
    const char sub[] = "*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nflood\r\n";
    char *big = malloc(VALUE + 1);
    int small = 4096, fd;
    long base, grown;
    tcd_proc *t;
    redisContext *c, *d;
    /* ASan's quarantine would count freed messages as RSS. */
    snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=1", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    t = start_daemon("--max-output", "1048576", NULL);
    if (saved)
        setenv("ASAN_OPTIONS", saved, 1);
    else
        unsetenv("ASAN_OPTIONS");
    free(saved);
    c = connect_to(t);
    d = redis_direct(0);
    memset(big, 'x', VALUE);
    big[VALUE] = '\0';
    expect_status(c, "PONG", "PING");
    base = rss_kb(t->pid);
    fd = raw_connect(t->sock);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    cr_assert_eq(send(fd, sub, sizeof(sub) - 1, 0), (ssize_t)sizeof(sub) - 1);
    for (int tries = 0;; tries++) { /* subscribed in Redis */
        redisReply *r = cmd(d, "PUBSUB NUMSUB flood");
        long long n = r->elements == 2 ? r->element[1]->integer : 0;
        freeReplyObject(r);
        if (n == 1)
            break;
        cr_assert_lt(tries, DEADLINE_MS / 10, "never subscribed");
        tcr_sleep_ms(10);
    }
    for (int i = 0; i < MESSAGES; i++) /* never read */
        freeReplyObject(cmd(d, "PUBLISH flood %s", big));
    expect_status(c, "PONG", "PING"); /* others are served meanwhile */
    grown = rss_kb(t->pid) - base;
    cr_assert_lt(grown, (under_asan ? 64 : 32) * 1024, "RSS grew by %ld kB for a subscriber that "
                 "never reads (bound: 1 MiB of pending messages)", grown);
    close(fd);
    expect_status(c, "PONG", "PING");
    redisFree(c);
    redisFree(d);
    free(big);
}

/* ---- bounds ---------------------------------------------------------------- */

typedef struct pinned_is {
    tcd_proc *t;
    long long want;
} pinned_is;

static int pinned_now(void *arg)
{
    pinned_is *p = arg;
    return info_field(p->t, "tiercached_pinned") == p->want;
}

Test(pinned, pinned_connections_are_bounded_and_released)
{
    tcd_proc *t = start_daemon("--max-pinned", "1", NULL);
    redisContext *a = connect_to(t), *b = connect_to(t);
    pinned_is none = {t, 0}, one = {t, 1};
    int fd;
    const char req[] = "*3\r\n$5\r\nBLPOP\r\n$5\r\nnever\r\n$1\r\n0\r\n";
    expect_status(a, "OK", "WATCH x");
    expect_status(b, "-ERR tiercached: WATCH needs a Redis connection", "WATCH x");
    expect_status(b, "OK", "SET unpinned fine"); /* the client stays usable */
    cr_assert_eq(info_field(t, "tiercached_pinned_refused"), 1);
    redisFree(a); /* its connection and thread go */
    cr_assert(tcr_wait(pinned_now, &none, DEADLINE_MS), "never released");
    expect_status(b, "OK", "WATCH x");
    expect_status(b, "OK", "UNWATCH");
    redisFree(b);
    cr_assert(tcr_wait(pinned_now, &none, DEADLINE_MS), "never released");
    /* A client that goes away in the middle of BLPOP k 0 frees them too. */
    fd = raw_connect(t->sock);
    cr_assert_eq(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    cr_assert(tcr_wait(pinned_now, &one, DEADLINE_MS), "BLPOP not pinned");
    close(fd);
    cr_assert(tcr_wait(pinned_now, &none, DEADLINE_MS),
              "BLPOP never released");
}

/* ---- INFO ----------------------------------------------------------------- */

/* A GET that misses L1 was counted twice (the event loop's peek and the
 * worker's get). */
Test(pinned, an_l1_miss_counts_once)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    long long before, after;
    expect_status(c, "OK", "SET counted v");
    before = info_field(t, "l1_misses");
    expect_nil(c, "GET never-set-key");
    after = info_field(t, "l1_misses");
    cr_assert_eq(after - before, 1, "l1_misses went from %lld to %lld",
                 before, after);
    /* An MGET of a key in L1 and one not: one hit, one miss. */
    await_l1_hit(t, c, "counted", "v"); /* now from L1 */
    before = info_field(t, "l1_hits");
    after = info_field(t, "l1_misses");
    freeReplyObject(cmd(c, "MGET counted never-set-key"));
    cr_assert_eq(info_field(t, "l1_hits") - before, 1, "MGET's hit counted "
                 "%lld times", info_field(t, "l1_hits") - before);
    cr_assert_eq(info_field(t, "l1_misses") - after, 1);
    redisFree(c);
}

/* MONITOR, then writes on that pinned connection: Redis refuses them in
 * MONITOR mode (its own text comes through); after RESET the client's
 * writes reach Redis with their invalidation, so the other daemon never
 * serves its old copy (strict: at once). */
Test(pinned, writes_after_monitor_keep_every_l1_coherent)
{
    tcd_proc *a = start_daemon("--coherence", "strict", LONG_L1, NULL);
    tcd_proc *b = start_daemon("--coherence", "strict", LONG_L1, NULL);
    redisContext *ca = connect_to(a), *cb = connect_to(b);
    static const char in[] = "MONITOR\r\nSET mon v2\r\nRESET\r\n"
                             "SET mon v3\r\nINCR monc\r\nPING done\r\n";
    static char buf[1 << 16];
    int fd;
    expect_status(ca, "OK", "SET mon v1");
    expect_status(ca, "OK", "SET monc 1");
    expect_status(cb, "v1", "GET mon"); /* B's L1 holds both */
    await_l1_hit(b, cb, "monc", "1");
    await_l1_hit(b, cb, "mon", "v1");
    fd = raw_connect(a->sock);
    cr_assert_eq(send(fd, in, sizeof(in) - 1, 0), (ssize_t)sizeof(in) - 1);
    read_until(fd, buf, sizeof(buf), "$4\r\ndone\r\n");
    close(fd);
    cr_assert(strstr(buf, "-ERR Replica can't interact with the keyspace"),
              "%s", buf);
    cr_assert(strstr(buf, "+RESET\r\n+OK\r\n:2\r\n$4\r\ndone\r\n"), "%s", buf);
    expect_status(cb, "v3", "GET mon");
    expect_status(cb, "2", "GET monc");
    redisFree(ca);
    redisFree(cb);
}
