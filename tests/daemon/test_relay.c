/*
 * Library instances subscribing through one tiercached (bus_relay=,
 * lib/relay.c; daemon/pubsub.c): coherence through the relay in async and
 * strict mode, the relay's upstream connection killed, a subscriber of the
 * relay that never reads, the relay killed. Real redis-server (the
 * harness's `redis`), a real tiercached, several tc_cache handles in this
 * process, each with its own bus thread and subscriber connection.
 */
#include "crit.h" /* Criterion, or the TSan build's shim */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_fixture.h"
#include "tiercache.h"

#include "harness.h"

TestSuite(relay, .init = setup, .fini = teardown, .timeout = 180);

#define N 3

/* A raw connection to the daemon (raw_connect() without its timeout). */
static int connect_unix(const char *path)
{
    struct sockaddr_un a;
    size_t n = strlen(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(fd >= 0 && n < sizeof(a.sun_path));
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path, n);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* A cache on the suite's Redis whose bus subscribes through `t`. */
static tc_cache *relayed(const tcd_proc *t, tc_coherence mode)
{
    static char url[1024];
    tc_options o;
    tc_cache *c = NULL;
    tc_result r;
    snprintf(url, sizeof(url), "%s?bus_relay=unix://%s", redis.url, t->sock);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.ignore_env = TC_YES;
    o.coherence = mode;
    o.idle_after_ms = TC_IDLE_NEVER;
    o.connect_timeout_ms = 2000;
    o.command_timeout_ms = 2000;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 200;
    r = tc_cache_create(&o, &c);
    cr_assert_eq(r, TC_OK, "tc_cache_create: %s (%s)", tc_strerror(r),
                 tc_errmsg());
    return c;
}

static int bus_up(void *arg)
{
    tc_health h;
    tc_cache_health(arg, &h);
    return h.bus_up;
}

static int bus_down(void *arg)
{
    return !bus_up(arg);
}

/* Would a read of `key` be answered from L1 with `want`? */
static int serves(tc_cache *c, const char *key, const char *want)
{
    tc_value *v = NULL;
    int ok;
    if (tc_peek(c, key, strlen(key), &v) != TC_OK)
        return 0;
    ok = tc_value_len(v) == strlen(want) &&
         !memcmp(tc_value_data(v), want, strlen(want));
    tc_value_release(v);
    return ok;
}

typedef struct kv {
    tc_cache *c;
    const char *key, *val;
} kv;

/* Read until L1 serves key = val (a read fills L1 once the bus is up). */
static int read_then_served(void *arg)
{
    kv *a = arg;
    tc_value *v = NULL;
    if (tc_get(a->c, a->key, strlen(a->key), &v) == TC_OK)
        tc_value_release(v);
    return serves(a->c, a->key, a->val);
}

static int not_served(void *arg)
{
    kv *a = arg;
    return !serves(a->c, a->key, a->val);
}

static void warm(tc_cache *c, const char *key, const char *val)
{
    kv a = {c, key, val};
    cr_assert(tcr_wait(read_then_served, &a, DEADLINE_MS),
              "%s=%s never served from L1", key, val);
}

static char *get(tc_cache *c, const char *key)
{
    tc_value *v = NULL;
    char *s;
    if (tc_get(c, key, strlen(key), &v) != TC_OK)
        return NULL;
    s = strndup(tc_value_data(v), tc_value_len(v));
    tc_value_release(v);
    return s;
}

static void set(tc_cache *c, const char *key, const char *val)
{
    tc_result r = tc_set(c, key, strlen(key), val, strlen(val), 0);
    cr_assert_eq(r, TC_OK, "tc_set: %s", tc_strerror(r));
}

/* Subscriber connections Redis counts on the default channel. */
static long long numsub(void)
{
    redisContext *d = redisConnectUnix(redis.sock);
    redisReply *r = redisCommand(d, "PUBSUB NUMSUB __tiercache:invalidate");
    long long n = r->element[1]->integer;
    freeReplyObject(r);
    redisFree(d);
    return n;
}

static void start_all(tcd_proc *t, tc_coherence mode, tc_cache **c)
{
    for (int i = 0; i < N; i++)
        c[i] = relayed(t, mode);
    for (int i = 0; i < N; i++)
        cr_assert(tcr_wait(bus_up, c[i], DEADLINE_MS), "bus %d never up", i);
}

/* A write by one instance invalidates the others' L1 through the relay;
 * Redis carries two subscribers on the channel (the daemon's own bus and
 * its shared connection), not one per instance. */
static void coherent_through_relay(tc_coherence mode)
{
    tcd_proc *t = start_daemon(NULL);
    tc_cache *c[N];
    start_all(t, mode, c);
    cr_assert_eq(numsub(), 2, "Redis counts %lld subscribers", numsub());
    set(c[0], "rk", "v1");
    for (int i = 1; i < N; i++)
        warm(c[i], "rk", "v1");
    set(c[0], "rk", "v2");
    for (int i = 1; i < N; i++) {
        kv a = {c[i], "rk", "v1"};
        char *s;
        if (mode == TC_COHERENCE_STRICT) { /* at once */
            s = get(c[i], "rk");
            cr_assert_str_eq(s, "v2", "instance %d read a stale value", i);
            free(s);
        } else {
            cr_assert(tcr_wait(not_served, &a, DEADLINE_MS),
                      "instance %d's L1 never dropped rk=v1", i);
        }
        warm(c[i], "rk", "v2");
    }
    for (int i = 0; i < N; i++)
        tc_cache_destroy(c[i]);
}

Test(relay, async_writes_invalidate_through_the_relay)
{
    coherent_through_relay(TC_COHERENCE_ASYNC);
}

Test(relay, strict_writes_invalidate_through_the_relay)
{
    coherent_through_relay(TC_COHERENCE_STRICT);
}

/* CLIENT KILL of the relay's upstream connection: every relayed instance
 * loses its subscriber, flushes L1 and recovers; coherence holds again. */
Test(relay, upstream_killed_flushes_and_recovers)
{
    tcd_proc *t = start_daemon(NULL);
    tc_cache *c[N];
    redisContext *d = redisConnectUnix(redis.sock);
    redisReply *r;
    tc_stats before, after;
    start_all(t, TC_COHERENCE_ASYNC, c);
    set(c[0], "uk", "v1");
    warm(c[1], "uk", "v1");
    tc_cache_stats(c[1], &before);
    r = redisCommand(d, "CLIENT LIST");
    cr_assert(r && r->str && strstr(r->str, "name=tiercached-pubsub"),
              "no upstream connection named tiercached-pubsub");
    freeReplyObject(r);
    {
        /* Its id, from its CLIENT LIST line. */
        char *line, *id;
        long long cid = -1;
        r = redisCommand(d, "CLIENT LIST");
        line = strstr(r->str, "name=tiercached-pubsub");
        while (line > r->str && line[-1] != '\n')
            line--;
        id = strstr(line, "id=");
        cid = strtoll(id + 3, NULL, 10);
        freeReplyObject(r);
        r = redisCommand(d, "CLIENT KILL ID %lld", cid);
        cr_assert_eq(r->integer, 1, "CLIENT KILL ID %lld", cid);
        freeReplyObject(r);
    }
    {
        kv a = {c[1], "uk", "v1"};
        cr_assert(tcr_wait(not_served, &a, DEADLINE_MS),
                  "L1 still serves after the upstream connection died");
    }
    for (int i = 0; i < N; i++)
        cr_assert(tcr_wait(bus_up, c[i], DEADLINE_MS), "bus %d never back",
                  i);
    tc_cache_stats(c[1], &after);
    cr_assert_gt(after.bus_flushes, before.bus_flushes, "L1 not flushed");
    cr_assert_gt(info_field(t, "tiercached_pubsub_upstream_lost"), 0);
    warm(c[1], "uk", "v1");
    set(c[0], "uk", "v2");
    {
        kv a = {c[1], "uk", "v1"};
        cr_assert(tcr_wait(not_served, &a, DEADLINE_MS),
                  "no invalidation after recovery");
    }
    for (int i = 0; i < N; i++)
        tc_cache_destroy(c[i]);
    redisFree(d);
}

/* A local subscriber of the relay that never reads is closed at
 * --max-output; relayed instances keep receiving invalidations. */
Test(relay, subscriber_that_never_reads_is_cut_off)
{
    enum { VALUE = 64 * 1024 };
    tcd_proc *t = start_daemon("--max-output", "262144", NULL);
    tc_cache *c[N];
    redisContext *d = redisConnectUnix(redis.sock);
    const char sub[] = "*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nflood\r\n";
    char *big = malloc(VALUE + 1), buf[256];
    int small = 4096, fd;
    ssize_t n;
    start_all(t, TC_COHERENCE_ASYNC, c);
    fd = connect_unix(t->sock);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    cr_assert_eq(send(fd, sub, sizeof(sub) - 1, 0), (ssize_t)sizeof(sub) - 1);
    n = recv(fd, buf, sizeof(buf), 0); /* its confirmation */
    cr_assert_gt(n, 0);
    memset(big, 'x', VALUE);
    big[VALUE] = '\0';
    for (int i = 0; i < 64 && info_field(t, "tiercached_pubsub_slow_closed") ==
                                  0; i++)
        freeReplyObject(redisCommand(d, "PUBLISH flood %s", big));
    cr_assert_gt(info_field(t, "tiercached_pubsub_slow_closed"), 0,
                 "the subscriber that never reads was not closed");
    set(c[0], "sk", "v1");
    warm(c[1], "sk", "v1");
    set(c[0], "sk", "v2");
    {
        kv a = {c[1], "sk", "v1"};
        cr_assert(tcr_wait(not_served, &a, DEADLINE_MS),
                  "relayed instance stopped receiving");
    }
    close(fd);
    free(big);
    for (int i = 0; i < N; i++)
        tc_cache_destroy(c[i]);
    redisFree(d);
}

/* The relay killed: relayed instances stop serving L1 within the lease
 * (their heartbeat tokens no longer come back). */
Test(relay, relay_killed_stops_l1)
{
    tcd_proc *t = start_daemon(NULL);
    tc_cache *c[N];
    start_all(t, TC_COHERENCE_ASYNC, c);
    set(c[0], "dk", "v1");
    warm(c[1], "dk", "v1");
    cr_assert_eq(kill(t->pid, SIGKILL), 0);
    cr_assert(tcr_wait(bus_down, c[1], DEADLINE_MS), "bus still up");
    {
        kv a = {c[1], "dk", "v1"};
        cr_assert(tcr_wait(not_served, &a, DEADLINE_MS),
                  "L1 still served without the relay");
    }
    waitpid(t->pid, NULL, 0);
    t->pid = 0;
    for (int i = 0; i < N; i++)
        tc_cache_destroy(c[i]);
}

/* Redis hung (SIGSTOP: its connections stay open): the daemon's shared
 * connection stops answering its PINGs, and its subscribers are closed
 * instead of waiting on it forever; after SIGCONT they subscribe again. */
Test(relay, hung_redis_closes_shared_subscribers)
{
    tcd_proc *t = start_daemon(NULL);
    const char sub[] = "*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nhang\r\n";
    char buf[256];
    ssize_t n;
    int fd = connect_unix(t->sock);
    struct timeval tv = {DEADLINE_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(send(fd, sub, sizeof(sub) - 1, 0), (ssize_t)sizeof(sub) - 1);
    n = recv(fd, buf, sizeof(buf), 0); /* its confirmation */
    cr_assert_gt(n, 0);
    tcr_pause(&redis);
    n = recv(fd, buf, sizeof(buf), 0);
    tcr_resume(&redis);
    cr_assert_eq(n, 0, "the subscriber was not closed (recv: %zd, %s)", n,
                 n < 0 ? strerror(errno) : "data");
    close(fd);
    cr_assert_gt(info_field(t, "tiercached_pubsub_upstream_lost"), 0);
    {
        redisContext *c = connect_to(t);
        redisReply *r = cmd(c, "SUBSCRIBE hang");
        cr_assert_eq(r->element[2]->integer, 1);
        freeReplyObject(r);
        redisFree(c);
    }
}
