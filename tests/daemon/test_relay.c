/*
 * Library instances subscribing through one tiercached (bus_relay=,
 * lib/relay.c; daemon/pubsub.c): coherence through the relay in async and
 * strict mode, the relay's upstream connection killed, a subscriber of the
 * relay that never reads, the relay killed, a relay behind --requirepass
 * (the password in bus_relay=, and a wrong one); and on a real Redis
 * Cluster (cluster_fixture.h), instances subscribing on every master
 * through one relay, which holds one upstream subscriber connection per
 * node, one of them killed. Real redis-server (the harness's `redis`), a
 * real tiercached, several tc_cache handles in this process, each with
 * its own bus thread and subscriber connections.
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
#include <pthread.h>

#include "cluster_fixture.h"
#include "common.h"

#include "harness.h"
#include "cluster_suite.h"
#include "cluster_nodes.h"

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

/* A cache on the suite's Redis (or cluster: redis.url) whose bus
 * subscribes through `t`, with `cred` ("" or ":password@") for it. */
static tc_cache *relayed_as(const tcd_proc *t, tc_coherence mode,
                            const char *cred, tc_log_fn log, void *ud)
{
    static char url[1024];
    tc_options o;
    snprintf(url, sizeof(url), "%s?bus_relay=unix://%s%s", redis.url, cred,
             t->sock);
    o = url_opts(url);
    o.coherence = mode;
    o.idle_after_ms = TC_IDLE_NEVER;
    o.log = log;
    o.log_userdata = ud;
    return must_create(&o);
}

static tc_cache *relayed(const tcd_proc *t, tc_coherence mode)
{
    return relayed_as(t, mode, "", NULL, NULL);
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

static int not_served(void *arg)
{
    kv *a = arg;
    return !serves(a->c, a->key, a->val);
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

/* --- A relay behind --requirepass ---------------------------------------- */

/* tiercached --requirepass, its password in bus_relay= (unix://:pw@/path):
 * the bus AUTHs to the relay, and writes invalidate through it. */
Test(relay, requirepass_with_the_password_in_bus_relay)
{
    tcd_proc *t = start_daemon("--requirepass", "s3cret", NULL);
    tc_cache *c[2];
    for (int i = 0; i < 2; i++)
        c[i] = relayed_as(t, TC_COHERENCE_ASYNC, ":s3cret@", NULL, NULL);
    for (int i = 0; i < 2; i++)
        cr_assert(tcr_wait(bus_up, c[i], DEADLINE_MS), "bus %d never up", i);
    set(c[0], "pk", "v1");
    warm(c[1], "pk", "v1");
    set(c[0], "pk", "v2");
    {
        kv a = {c[1], "pk", "v1"};
        cr_assert(tcr_wait(not_served, &a, DEADLINE_MS),
                  "no invalidation through the relay");
    }
    for (int i = 0; i < 2; i++)
        tc_cache_destroy(c[i]);
}

typedef struct logbook {
    pthread_mutex_t mu;
    char text[16384];
    size_t len;
} logbook;

static void log_to_book(void *ud, tc_log_level level, const char *msg)
{
    logbook *b = ud;
    (void)level;
    pthread_mutex_lock(&b->mu);
    b->len += (size_t)snprintf(b->text + b->len, sizeof(b->text) - b->len,
                               "%s\n", msg);
    if (b->len >= sizeof(b->text))
        b->len = sizeof(b->text) - 1;
    pthread_mutex_unlock(&b->mu);
}

static int book_has(logbook *b, const char *what)
{
    int has;
    pthread_mutex_lock(&b->mu);
    has = strstr(b->text, what) != NULL;
    pthread_mutex_unlock(&b->mu);
    return has;
}

static int book_says_wrongpass(void *arg)
{
    return book_has(arg, "bus relay (tiercached) refused the set-up: "
                         "WRONGPASS");
}

/* A wrong password in bus_relay=: the bus never comes up, says why in the
 * log (never the password), and L1 is never served, reads going to L2. */
Test(relay, wrong_relay_password_fails_clearly_and_serves_no_l1)
{
    tcd_proc *t = start_daemon("--requirepass", "s3cret", NULL);
    logbook book = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};
    tc_cache *c = relayed_as(t, TC_COHERENCE_ASYNC, ":wr0ngpw@",
                             log_to_book, &book);
    tc_stats st;
    cr_assert(tcr_wait(book_says_wrongpass, &book, DEADLINE_MS),
              "no clear error in the log: %s", book.text);
    set(c, "wk", "v1");
    for (int i = 0; i < 3; i++) {
        char *v = get(c, "wk");
        cr_assert_str_eq(v, "v1");
        free(v);
    }
    cr_assert_not(serves(c, "wk", "v1"), "L1 served without a bus");
    cr_assert_not(bus_up(c), "bus up with a wrong password");
    tc_cache_stats(c, &st);
    cr_assert_eq(st.l1_hits, 0, "L1 served %llu reads blind",
                 (unsigned long long)st.l1_hits);
    tc_cache_destroy(c);
    cr_assert_not(book_has(&book, "wr0ngpw"), "the password was logged");
}

/* --- On Redis Cluster ------------------------------------------------------ */

/* The harness starts every daemon on the cluster; relayed() too. */
DAEMON_CLUSTER_SUITE(relay_cluster, 240);

/* The ids of node `n`'s connections named tiercached-pubsub (up to 8);
 * their number. */
static int upstream_ids(const tcr_server *n, long long *ids)
{
    redisContext *d = tcr_connect_unix(n->sock, 5);
    redisReply *r;
    int k = 0;
    cr_assert_not_null(d);
    r = redisCommand(d, "CLIENT LIST");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    for (char *l = r->str; l && *l && k < 8;) {
        char *nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        if (strstr(l, " name=tiercached-pubsub "))
            ids[k++] = strtoll(strstr(l, "id=") + 3, NULL, 10);
        l = nl ? nl + 1 : NULL;
    }
    freeReplyObject(r);
    redisFree(d);
    return k;
}

/* A write of `key` by `w` drops `r`'s L1 copy. */
static void invalidates(tc_cache *w, tc_cache *r, const char *key)
{
    kv a = {r, key, "v1"};
    set(w, key, "v1");
    warm(r, key, "v1");
    set(w, key, "v2");
    cr_assert(tcr_wait(not_served, &a, DEADLINE_MS),
              "%s=v1 still served after the other instance's write", key);
}

/* A client of relay `t` naming a replica (TC.RELAY) is served from the
 * relay's one upstream connection to that replica (the buses opened it:
 * they subscribe on every node); one naming an address that is no node
 * of the cluster is closed (nothing is sent there). */
static void serves_a_replica_and_refuses_a_stranger(const tcd_proc *t)
{
    tcr_server *rep = NULL;
    long long ids[8];
    redisContext *d;
    redisReply *r;
    char port[16];
    for (int i = 0; i < TCR_CLUSTER_NODES && !rep; i++)
        if (!is_master(&cl.node[i]))
            rep = &cl.node[i];
    cr_assert_not_null(rep);
    cr_assert_eq(upstream_ids(rep, ids), 1);
    d = connect_to(t);
    snprintf(port, sizeof(port), "%d", rep->port);
    r = cmd(d, "TC.RELAY 127.0.0.1 %s", port);
    cr_assert_eq(r->type, REDIS_REPLY_STATUS, "%s", r->str);
    freeReplyObject(r);
    r = cmd(d, "SUBSCRIBE onreplica");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    cr_assert_eq(upstream_ids(rep, ids), 1,
                 "not one upstream subscriber on the replica");
    redisFree(d);
    d = connect_to(t);
    r = cmd(d, "TC.RELAY 127.0.0.1 1");
    cr_assert_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = redisCommand(d, "SUBSCRIBE nowhere");
    cr_assert(r == NULL, "a stranger was subscribed on");
    redisFree(d);
}

/* Two instances through one relay see each other's writes of keys on
 * every master; the relay holds one upstream subscriber connection per
 * node its instances subscribe on (every node, replicas too), however
 * many instances subscribe there, and also serves a client naming a
 * replica with TC.RELAY, but no stranger (one cluster start-up for all
 * three). */
Test(relay_cluster, instances_through_one_relay_see_writes_on_every_master)
{
    tcd_proc *t = start_daemon("--command-timeout-ms", "10000", NULL);
    tc_cache *c[2];
    char keys[3][64];
    tcr_server *m[3];
    int n = 3;
    keys_on_masters(&cl, "rck", keys, m);
    for (int i = 0; i < 2; i++)
        c[i] = relayed(t, TC_COHERENCE_ASYNC);
    for (int i = 0; i < 2; i++)
        cr_assert(tcr_wait(bus_up, c[i], DEADLINE_MS), "bus %d never up", i);
    for (int k = 0; k < n; k++) {
        invalidates(c[0], c[1], keys[k]);
        invalidates(c[1], c[0], keys[k]);
    }
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        long long ids[8];
        int k = upstream_ids(&cl.node[i], ids);
        cr_assert_eq(k, 1, "node %d: %d upstream subscriber connections",
                     cl.node[i].port, k);
    }
    for (int i = 0; i < 2; i++)
        tc_cache_destroy(c[i]);
    serves_a_replica_and_refuses_a_stranger(t);
}

/* CLIENT KILL of the relay's upstream connection on one master: the local
 * subscribers bound to it are closed, each instance's bus resets (L1
 * flushed) and comes back, and writes on that master invalidate again. */
Test(relay_cluster, a_node_connection_killed_closes_and_recovers)
{
    tcd_proc *t = start_daemon("--command-timeout-ms", "10000", NULL);
    tc_cache *c[2];
    char keys[3][64];
    tcr_server *m[3];
    long long ids[8];
    tc_stats before, after;
    redisContext *d;
    redisReply *r;
    keys_on_masters(&cl, "rck", keys, m);
    for (int i = 0; i < 2; i++)
        c[i] = relayed(t, TC_COHERENCE_ASYNC);
    for (int i = 0; i < 2; i++)
        cr_assert(tcr_wait(bus_up, c[i], DEADLINE_MS), "bus %d never up", i);
    set(c[0], keys[1], "v1");
    warm(c[1], keys[1], "v1");
    tc_cache_stats(c[1], &before);
    cr_assert_eq(upstream_ids(m[1], ids), 1);
    d = tcr_connect_unix(m[1]->sock, 5);
    r = redisCommand(d, "CLIENT KILL ID %lld", ids[0]);
    cr_assert(r && r->integer == 1, "CLIENT KILL ID %lld", ids[0]);
    freeReplyObject(r);
    redisFree(d);
    {
        kv a = {c[1], keys[1], "v1"};
        cr_assert(tcr_wait(not_served, &a, DEADLINE_MS),
                  "L1 still serves after the node connection died");
    }
    for (int i = 0; i < 2; i++)
        cr_assert(tcr_wait(bus_up, c[i], DEADLINE_MS), "bus %d never back",
                  i);
    tc_cache_stats(c[1], &after);
    cr_assert_gt(after.bus_flushes, before.bus_flushes, "L1 not flushed");
    cr_assert_gt(info_field(t, "tiercached_pubsub_upstream_lost"), 0);
    invalidates(c[0], c[1], keys[1]);
    cr_assert_eq(upstream_ids(m[1], ids), 1, "no single new upstream");
    for (int i = 0; i < 2; i++)
        tc_cache_destroy(c[i]);
}
