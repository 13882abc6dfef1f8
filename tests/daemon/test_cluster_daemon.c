/*
 * tiercached on Redis Cluster (issues 9 and 10): plain Redis clients
 * (hiredis, redis-cli, redis-py's non-cluster client) through tiercached
 * in front of a real local cluster of three masters and three replicas
 * (cluster_fixture.h) see one Redis: keys on every master, multi-key
 * commands across slots split and merged, SCAN over every master exactly
 * once, DBSIZE summed, a transaction in one slot, Redis Cluster's CROSSSLOT
 * error for the rest, two daemons kept coherent (strict ones also with
 * the reader's relay stopped), a master killed and a reshard under way.
 */
#include "crit.h" /* Criterion, or the TSan build's shim */
#include <fcntl.h>
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
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cluster_fixture.h"

#include "harness.h"
#include "cluster_nodes.h"

static tcr_cluster cl;

/* The harness starts every daemon on redis.url. */
static void daemons_on_cl(void)
{
    memset(&redis, 0, sizeof(redis));
    cr_assert_lt(strlen(cl.url), sizeof(redis.url));
    memcpy(redis.url, cl.url, strlen(cl.url) + 1);
}

/* A case's cluster: the shared one, which the case leaves as it found it
 * (cluster_fixture.h, "Shared clusters"; meson runs this file under
 * tcr-cluster-run), or its own for a case that kills a node, reshards,
 * flushes or counts every key. */
static void shared_cluster(void)
{
    setup_process();
    cr_assert_eq(tcr_cluster_shared(&cl, 60000), 0, "no cluster");
    daemons_on_cl();
}

static void own_cluster(void)
{
    setup_process();
    cr_assert_eq(tcr_cluster_start(&cl, 60000), 0, "cluster did not start");
    daemons_on_cl();
}

static void cl_teardown(void)
{
    teardown(); /* the daemons (and `redis`, which is not running) */
    tcr_cluster_stop(&cl);
}

/* Every case names its cluster with .init (above). */
TestSuite(cluster_daemon, .fini = cl_teardown, .timeout = 240);

static tcd_proc *start(void)
{
    return start_daemon("--command-timeout-ms", "10000", NULL);
}

static redisContext *conn(const tcd_proc *t)
{
    redisContext *c = connect_to(t);
    cr_assert_not_null(c, "cannot connect to tiercached");
    return c;
}

/* The reply to a command, as text: a string, status or error ("-..."),
 * an integer, "(nil)"; the caller frees it. */
static char *text(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    char *s = NULL;
    va_start(ap, fmt);
    r = vcmd(c, fmt, ap);
    va_end(ap);
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        s = strdup(r->str);
        break;
    case REDIS_REPLY_ERROR:
        if (asprintf(&s, "-%s", r->str) < 0)
            s = NULL;
        break;
    case REDIS_REPLY_INTEGER:
        if (asprintf(&s, "%lld", r->integer) < 0)
            s = NULL;
        break;
    case REDIS_REPLY_NIL:
        s = strdup("(nil)");
        break;
    default:
        s = strdup("(array)");
    }
    freeReplyObject(r);
    return s;
}

#define EXPECT(c, want, ...)                                                   \
    do {                                                                       \
        char *got_ = text(c, __VA_ARGS__);                                     \
        cr_assert(got_ && !strcmp(got_, want), "%s: want '%s', got '%s'",      \
                  #__VA_ARGS__, want, got_ ? got_ : "(null)");                 \
        free(got_);                                                            \
    } while (0)

/* A command's output (stdout, trimmed); the caller frees it. */
static char *run(const char *fmt, ...)
{
    char cmdline[2048], *buf = malloc(1 << 20);
    va_list ap;
    FILE *f;
    size_t n;
    va_start(ap, fmt);
    vsnprintf(cmdline, sizeof(cmdline), fmt, ap);
    va_end(ap);
    cr_assert_not_null(buf);
    f = popen(cmdline, "r");
    cr_assert_not_null(f, "%s", cmdline);
    n = fread(buf, 1, (1 << 20) - 1, f);
    pclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return buf;
}

/* ---- Routing ------------------------------------------------------------ */

Test(cluster_daemon, redis_cli_keys_on_every_master, .init = shared_cluster)
{
    tcd_proc *d = start();
    char k[3][64];
    keys_on_masters(&cl, "cli:", k, NULL);
    for (int i = 0; i < 3; i++) {
        char *out;
        out = run("redis-cli -s '%s' SET '%s' v%d", d->sock, k[i], i);
        cr_assert_str_eq(out, "OK");
        free(out);
        /* Forwarded (not served by L1): routed by the key specs. */
        out = run("redis-cli -s '%s' HSET 'h%s' f %d", d->sock, k[i], i);
        cr_assert_str_eq(out, "1", "HSET %s", k[i]);
        free(out);
        out = run("redis-cli -s '%s' APPEND '%s' x", d->sock, k[i]);
        cr_assert_str_eq(out, "3", "APPEND %s", k[i]);
        free(out);
        /* As the cluster itself has it. */
        out = run("redis-cli -c -p %d GET '%s'", cl.node[0].port, k[i]);
        cr_assert(!strncmp(out, "v", 1) && out[2] == 'x', "%s: %s", k[i],
                  out);
        free(out);
        out = run("redis-cli -s '%s' GET '%s'", d->sock, k[i]);
        cr_assert(!strncmp(out, "v", 1) && out[2] == 'x', "%s: %s", k[i],
                  out);
        free(out);
    }
    {
        char *out = run("redis-cli -s '%s' PING", d->sock);
        cr_assert_str_eq(out, "PONG");
        free(out);
        out = run("redis-cli -s '%s' ECHO hi", d->sock);
        cr_assert_str_eq(out, "hi");
        free(out);
        /* INFO: the master of slot 0's, then tiercache's sections. */
        out = run("redis-cli -s '%s' INFO | grep -c "
                  "'^redis_version:\\|^cluster_enabled:1\\|^# Tiercached'",
                  d->sock);
        cr_assert_str_eq(out, "3", "INFO lacks Redis's or tiercache's lines");
        free(out);
    }
}

Test(cluster_daemon, multi_key_commands_across_slots, .init = shared_cluster)
{
    tcd_proc *d = start();
    redisContext *c = conn(d);
    char k[3][64];
    redisReply *r;
    keys_on_masters(&cl, "mk:", k, NULL);
    EXPECT(c, "OK", "MSET %s 1 %s 2 %s 3", k[0], k[1], k[2]);
    r = cmd(c, "MGET %s nosuch %s %s", k[0], k[1], k[2]);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 4);
    cr_assert_str_eq(r->element[0]->str, "1");
    cr_assert_eq(r->element[1]->type, REDIS_REPLY_NIL);
    cr_assert_str_eq(r->element[2]->str, "2");
    cr_assert_str_eq(r->element[3]->str, "3");
    freeReplyObject(r);
    EXPECT(c, "4", "EXISTS %s %s %s %s nosuch", k[0], k[1], k[2], k[0]);
    EXPECT(c, "3", "TOUCH %s %s %s", k[0], k[1], k[2]);
    EXPECT(c, "2", "DEL %s %s nosuch", k[0], k[1]);
    EXPECT(c, "1", "UNLINK %s %s", k[1], k[2]);
    EXPECT(c, "0", "EXISTS %s %s %s", k[0], k[1], k[2]);
    /* The rest of the multi-key commands: Redis Cluster's own error. */
    EXPECT(c, "-CROSSSLOT Keys in request don't hash to the same slot",
           "SUNIONSTORE %s %s %s", k[0], k[1], k[2]);
    EXPECT(c, "-CROSSSLOT Keys in request don't hash to the same slot",
           "RENAME %s %s", k[0], k[1]);
    /* Redis's own arity error, not a split past the last argument. */
    EXPECT(c, "-ERR wrong number of arguments for 'mset' command",
           "MSET %s 1 %s", k[0], k[1]);
    /* Keys sharing a hash tag are one slot: as on one Redis. */
    EXPECT(c, "OK", "MSET {u}a 1 {u}b 2");
    EXPECT(c, "0", "SUNIONSTORE {u}s {u}x {u}y");
    redisFree(c);
}

/* On a cluster of its own: DBSIZE through the daemon is compared with the
 * masters' own, which an earlier case's key expiring in between would
 * change. */
Test(cluster_daemon, scan_covers_every_master_once_and_dbsize_sums,
     .init = own_cluster)
{
    tcd_proc *d = start();
    redisContext *c = conn(d);
    enum { N = 300 };
    unsigned char seen[N] = {0};
    long long direct = 0;
    char cursor[64] = "0", *out;
    int on[TCR_CLUSTER_NODES] = {0}, masters_hit = 0;
    for (int i = 0; i < N; i++) {
        tcr_server *m;
        char k[32];
        snprintf(k, sizeof(k), "scan:%d", i);
        EXPECT(c, "OK", "SET %s x", k);
        m = tcr_cluster_master_of(&cl, k);
        cr_assert_not_null(m);
        on[m - cl.node]++;
    }
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        masters_hit += on[i] > 0;
    cr_assert_eq(masters_hit, 3, "the keys are not on all three masters");
    /* SCAN through tiercached: every key exactly once. */
    do {
        redisReply *r = cmd(c, "SCAN %s MATCH scan:* COUNT 50", cursor);
        cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "SCAN: %s",
                     r->type == REDIS_REPLY_ERROR ? r->str : "?");
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            int n = atoi(r->element[1]->element[i]->str + 5);
            cr_assert(n >= 0 && n < N);
            cr_assert_eq(seen[n], 0, "scan:%d returned twice", n);
            seen[n] = 1;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "scan:%d never returned", i);
    /* redis-cli --scan (its own cursor loop) agrees. */
    out = run("redis-cli -s '%s' --scan --pattern 'scan:*' | wc -l", d->sock);
    cr_assert_eq(atoi(out), N, "redis-cli --scan: %s", out);
    free(out);
    out = run("redis-cli -s '%s' KEYS 'scan:*' | wc -l", d->sock);
    cr_assert_eq(atoi(out), N, "KEYS: %s", out);
    free(out);
    /* DBSIZE: the sum of the masters'. */
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        if (is_master(&cl.node[i])) {
            char *n = tcr_cmd(&cl.node[i], NULL, "DBSIZE", NULL);
            direct += n ? atoll(n) : 0;
            free(n);
        }
    {
        redisReply *r = cmd(c, "DBSIZE");
        cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
        cr_assert_eq(r->integer, direct, "DBSIZE %lld, masters %lld",
                     r->integer, direct);
        cr_assert_geq(r->integer, N);
        freeReplyObject(r);
    }
    out = text(c, "RANDOMKEY");
    cr_assert(out && strcmp(out, "(nil)") && out[0] != '-', "%s", out);
    free(out);
    redisFree(c);
}

Test(cluster_daemon, transactions_in_one_slot_crossslot_at_exec,
     .init = shared_cluster)
{
    tcd_proc *d = start();
    redisContext *c = conn(d);
    redisReply *r;
    char k[3][64];
    keys_on_masters(&cl, "tx:", k, NULL);
    EXPECT(c, "OK", "MULTI");
    EXPECT(c, "QUEUED", "SET {acct}a 10");
    EXPECT(c, "QUEUED", "INCRBY {acct}a 5");
    EXPECT(c, "QUEUED", "GET {acct}a");
    r = cmd(c, "EXEC");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "EXEC: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "?");
    cr_assert_eq(r->elements, 3);
    cr_assert_eq(r->element[1]->integer, 15);
    cr_assert_str_eq(r->element[2]->str, "15");
    freeReplyObject(r);
    EXPECT(c, "15", "GET {acct}a");
    /* Across slots: the error comes at EXEC, nothing ran. */
    EXPECT(c, "OK", "MULTI");
    EXPECT(c, "QUEUED", "SET %s 1", k[0]);
    EXPECT(c, "QUEUED", "SET %s 1", k[1]);
    EXPECT(c, "-CROSSSLOT Keys in request don't hash to the same slot",
           "EXEC");
    EXPECT(c, "0", "EXISTS %s %s", k[0], k[1]);
    redisFree(c);
}

/* A redis-py (plain redis.Redis, not its cluster client) session. */
Test(cluster_daemon, redis_py_plain_client, .init = shared_cluster)
{
    tcd_proc *d = start();
    char k[3][64], script[4096], *out;
    FILE *f;
    keys_on_masters(&cl, "py:", k, NULL);
    snprintf(script, sizeof(script), "%s/t.py", d->dir);
    f = fopen(script, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "import redis, sys\n"
            "r = redis.Redis(unix_socket_path=sys.argv[1], "
            "decode_responses=True)\n"
            "ks = sys.argv[2:]\n"
            "assert r.ping()\n"
            "assert r.mset({k: 'v-' + k for k in ks})\n"
            "assert r.mget(ks) == ['v-' + k for k in ks], r.mget(ks)\n"
            "for i in range(60): r.set('pyk:%%d' %% i, i)\n"
            "got = list(r.scan_iter(match='pyk:*', count=7))\n"
            "assert sorted(got) == sorted('pyk:%%d' %% i for i in "
            "range(60)), got\n"
            "assert len(got) == len(set(got))\n"
            "p = r.pipeline(transaction=True)\n"
            "p.set('{t}x', 1).incr('{t}x').get('{t}x')\n"
            "assert p.execute() == [True, 2, '2']\n"
            "p = r.pipeline(transaction=False)\n"
            "for k in ks: p.incr('n' + k)\n"
            "assert p.execute() == [1, 1, 1]\n"
            "try:\n"
            "    p = r.pipeline(transaction=True)\n"
            "    p.set(ks[0], 1).set(ks[1], 1).execute()\n"
            "    raise SystemExit('cross-slot transaction ran')\n"
            "except redis.ResponseError as e:\n"
            "    assert 'CROSSSLOT' in str(e), e\n"
            "assert r.delete(*ks) == 3\n"
            "assert r.dbsize() >= 60\n"
            "print('ok')\n");
    fclose(f);
    out = run("/usr/bin/python3 '%s' '%s' '%s' '%s' '%s' 2>&1", script,
              d->sock, k[0], k[1], k[2]);
    cr_assert_str_eq(out, "ok", "redis-py: %s", out);
    free(out);
}

/* ---- Coherence ---------------------------------------------------------- */

typedef struct reads {
    const tcd_proc *d;
    const char *key, *want;
} reads;

static int reads_value(void *p)
{
    reads *rd = p;
    redisContext *c = connect_to(rd->d);
    redisReply *r;
    int ok;
    if (!c)
        return 0;
    r = redisCommand(c, "GET %s", rd->key);
    ok = r && ((!rd->want && r->type == REDIS_REPLY_NIL) ||
               (rd->want && r->type == REDIS_REPLY_STRING &&
                !strcmp(r->str, rd->want)));
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* On a cluster of its own: it ends with FLUSHDB. */
Test(cluster_daemon, two_daemons_stay_coherent, .init = own_cluster)
{
    tcd_proc *a = start(), *b = start();
    redisContext *ca = conn(a), *cb = conn(b);
    char k[3][64];
    keys_on_masters(&cl, "co:", k, NULL);
    for (int i = 0; i < 3; i++) {
        reads rd = {b, k[i], NULL};
        EXPECT(ca, "OK", "SET %s v1", k[i]);
        EXPECT(cb, "v1", "GET %s", k[i]); /* b's L1 holds v1 now */
        EXPECT(cb, "v1", "GET %s", k[i]);
        /* A forwarded write (APPEND: not L1's) via a ... */
        EXPECT(ca, "3", "APPEND %s +", k[i]);
        rd.want = "v1+";
        cr_assert(tcr_wait(reads_value, &rd, DEADLINE_MS),
                  "b kept serving v1 of %s after a's APPEND", k[i]);
        /* ... a multi-key write across slots ... */
        EXPECT(ca, "OK", "MSET %s v2 %s v2 %s v2", k[0], k[1], k[2]);
        rd.want = "v2";
        cr_assert(tcr_wait(reads_value, &rd, DEADLINE_MS),
                  "b kept serving the old %s after a's MSET", k[i]);
        EXPECT(cb, "v2", "GET %s", k[i]);
    }
    /* ... and FLUSHDB on every master: b drops everything. */
    EXPECT(ca, "OK", "FLUSHDB");
    for (int i = 0; i < 3; i++) {
        reads rd = {b, k[i], NULL};
        cr_assert(tcr_wait(reads_value, &rd, DEADLINE_MS),
                  "b still serves %s after FLUSHDB", k[i]);
    }
    redisFree(ca);
    redisFree(cb);
}

/* A GET through `d` that answers `want` from d's L1 (its l1_hits grew):
 * d holds the value and its lease is proven. Only the test reads via d. */
static int l1_serves(void *p)
{
    reads *rd = p;
    tcd_proc *d = (tcd_proc *)rd->d;
    long long before = info_field(d, "l1_hits");
    return reads_value(rd) && info_field(d, "l1_hits") > before;
}

/* Strict coherence through tiercached on a cluster: once a's reply to a
 * write is back, the other daemons answer the new value at once, whichever
 * master holds the key (the write's invalidation on that master's own
 * channel, the member count on the members' master after it). No waiting
 * here: a stale read is a failure. Four daemons, all strict with a lease
 * of 3 s: the writer a, c subscribing directly, and b subscribing through
 * the relay r (bus_relay=, one upstream connection per node).
 *
 * First the ack path, with every bus alive: a's writes (SET, a forwarded
 * APPEND, an MSET across slots) return once b and c acknowledged, and
 * neither serves the old value after. Here the invalidation usually beats
 * the next GET even if a returned too early, so this part alone does not
 * catch a writer that skips the wait.
 *
 * Then the lease path, which does, every time: b's L1 holds a value on
 * every master under a proven lease, and r is stopped (SIGSTOP, awaited):
 * b receives no invalidation, acknowledgement request or token any more,
 * but keeps serving L1 for up to its lease. a's strict write counts b,
 * gets no acknowledgement and returns only once its lease has passed, by
 * when b's has lapsed too: b must answer the new value (from L2). A writer
 * that returned without that wait would be answered the old value from
 * b's L1, whose lease has seconds left. r is resumed before the case ends
 * (and by the fixture, by pid, if the case fails first). On a cluster of
 * its own: the members set holds no daemon of an earlier case, whose lease
 * every write would wait out. */
Test(cluster_daemon, strict_daemons_never_serve_a_replied_write_stale,
     .init = own_cluster)
{
#define STRICT "--command-timeout-ms", "10000", "--coherence", "strict", \
               "--lease-ms", "3000"
    tcd_proc *a = start_daemon(STRICT, NULL), *c = start_daemon(STRICT, NULL);
    tcd_proc *r = start_daemon(STRICT, NULL), *b;
    char url[sizeof(redis.url)], k[3][64];
    redisContext *ca, *cb, *cc;
    int st;
    /* b alone on the relay: its URL is the cluster's plus bus_relay=. */
    memcpy(url, redis.url, sizeof(url));
    cr_assert_lt((size_t)snprintf(redis.url, sizeof(redis.url),
                                  "%s?bus_relay=unix://%s", url, r->sock),
                 sizeof(redis.url));
    b = start_daemon(STRICT, NULL);
    memcpy(redis.url, url, sizeof(url));
#undef STRICT
    ca = conn(a), cb = conn(b), cc = conn(c);
    keys_on_masters(&cl, "st:", k, NULL);
    /* The ack path. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 3; i++) {
            char v[16], w[32];
            snprintf(v, sizeof(v), "v%d", round);
            snprintf(w, sizeof(w), "v%d+", round);
            EXPECT(ca, "OK", "SET %s %s", k[i], v);
            EXPECT(cb, v, "GET %s", k[i]);
            EXPECT(cc, v, "GET %s", k[i]);
            EXPECT(cb, v, "GET %s", k[i]); /* from L1, once proven */
            EXPECT(cc, v, "GET %s", k[i]);
            EXPECT(ca, "3", "APPEND %s +", k[i]); /* forwarded */
            EXPECT(cb, w, "GET %s", k[i]);
            EXPECT(cc, w, "GET %s", k[i]);
        }
        EXPECT(ca, "OK", "MSET %s m %s m %s m", k[0], k[1], k[2]);
        for (int i = 0; i < 3; i++) {
            EXPECT(cb, "m", "GET %s", k[i]);
            EXPECT(cc, "m", "GET %s", k[i]);
        }
    }
    /* The lease path: b's L1 serves "old" on every master, proven ... */
    for (int i = 0; i < 3; i++) {
        reads rd = {b, k[i], "old"};
        EXPECT(ca, "OK", "SET %s old", k[i]);
        cr_assert(tcr_wait(l1_serves, &rd, DEADLINE_MS),
                  "b's L1 never served %s", k[i]);
    }
    /* ... r stops ... */
    cr_assert_eq(kill(r->pid, SIGSTOP), 0);
    cr_assert_eq(waitpid(r->pid, &st, WUNTRACED), r->pid);
    cr_assert(WIFSTOPPED(st), "the relay did not stop: 0x%x", st);
    /* ... and every replied write is still read at once. */
    for (int i = 0; i < 3; i++) {
        EXPECT(ca, "OK", "SET %s new", k[i]);
        EXPECT(cb, "new", "GET %s", k[i]);
        EXPECT(cc, "new", "GET %s", k[i]);
    }
    cr_assert_eq(kill(r->pid, SIGCONT), 0);
    redisFree(ca);
    redisFree(cb);
    redisFree(cc);
}

/* The value of `key` as the cluster itself has it (redis-cli -c). */
static void cluster_has(const char *key, const char *want)
{
    char *out = run("redis-cli -c -p %d GET '%s'", cl.node[0].port, key);
    cr_assert_str_eq(out, want, "%s on the cluster", key);
    free(out);
}

Test(cluster_daemon, setmany_and_tags_across_masters, .init = shared_cluster)
{
    tcd_proc *a = start(), *b = start();
    redisContext *ca = conn(a), *cb = conn(b);
    char k[3][64];
    keys_on_masters(&cl, "tc:", k, NULL);
    for (int i = 0; i < 3; i++) {
        EXPECT(ca, "OK", "SET %s v1", k[i]);
        EXPECT(cb, "v1", "GET %s", k[i]); /* b's L1 holds v1 now */
    }
    /* One batch over three masters: one MULTI per slot. */
    EXPECT(ca, "3", "TC.SETMANY 0 %s v2 %s v2 %s v2", k[0], k[1], k[2]);
    for (int i = 0; i < 3; i++) {
        reads rd = {b, k[i], "v2"};
        cluster_has(k[i], "v2");
        cr_assert(tcr_wait(reads_value, &rd, DEADLINE_MS),
                  "b kept serving v1 of %s after TC.SETMANY", k[i]);
    }
    /* Tagged keys on every master; the tag's set on one of them. */
    for (int i = 0; i < 3; i++) {
        reads rd = {b, k[i], "v3"};
        EXPECT(ca, "OK", "TC.SET %s v3 TAGS grp", k[i]);
        cr_assert(tcr_wait(reads_value, &rd, DEADLINE_MS),
                  "b kept serving v2 of %s after TC.SET", k[i]);
    }
    EXPECT(ca, "OK", "SET untagged keep");
    EXPECT(ca, "3", "TC.INVALIDATE TAGS grp");
    for (int i = 0; i < 3; i++) {
        reads rd = {b, k[i], NULL};
        cluster_has(k[i], "");
        cr_assert(tcr_wait(reads_value, &rd, DEADLINE_MS),
                  "b still serves %s after TC.INVALIDATE TAGS", k[i]);
    }
    EXPECT(cb, "keep", "GET untagged");
    redisFree(ca);
    redisFree(cb);
}

/* ---- Pinned clients: WATCH, blocking commands, pub/sub ------------------- */

Test(cluster_daemon, watch_and_blocking_pin_to_the_keys_master,
     .init = shared_cluster)
{
    tcd_proc *d = start();
    redisContext *c = conn(d), *o = conn(d);
    redisReply *r;
    char k[3][64];
    keys_on_masters(&cl, "pin:", k, NULL);
    /* WATCH on k[2]'s master; a transaction there runs, and a write by
     * another client aborts it as on one Redis. */
    EXPECT(c, "OK", "SET %s 1", k[2]);
    EXPECT(c, "OK", "WATCH %s", k[2]);
    EXPECT(c, "OK", "MULTI");
    EXPECT(c, "QUEUED", "INCR %s", k[2]);
    r = cmd(c, "EXEC");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "EXEC: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "?");
    cr_assert_eq(r->element[0]->integer, 2);
    freeReplyObject(r);
    EXPECT(c, "OK", "WATCH %s", k[2]);
    EXPECT(o, "OK", "SET %s 7", k[2]);
    EXPECT(c, "OK", "MULTI");
    EXPECT(c, "QUEUED", "INCR %s", k[2]);
    r = cmd(c, "EXEC");
    cr_assert_eq(r->type, REDIS_REPLY_NIL, "EXEC ran despite the WATCH");
    freeReplyObject(r);
    EXPECT(c, "7", "GET %s", k[2]);
    /* WATCH of keys on two masters: Redis Cluster's error. */
    EXPECT(c, "OK", "WATCH %s", k[0]);
    EXPECT(c, "-CROSSSLOT Keys in request don't hash to the same slot",
           "WATCH %s", k[1]);
    EXPECT(c, "OK", "UNWATCH");
    /* A blocking pop on another master's key, fed by another client. */
    EXPECT(o, "1", "RPUSH %s x", k[1]);
    r = cmd(c, "BLPOP %s 5", k[1]);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "BLPOP: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "?");
    cr_assert_str_eq(r->element[1]->str, "x");
    freeReplyObject(r);
    /* Plain commands on the pinned client still reach every master. */
    EXPECT(c, "OK", "MSET %s a %s b %s c", k[0], k[1], k[2]);
    EXPECT(c, "3", "EXISTS %s %s %s", k[0], k[1], k[2]);
    redisFree(c);
    redisFree(o);
}

Test(cluster_daemon, subscribe_gets_publish_from_any_master,
     .init = shared_cluster)
{
    tcd_proc *d = start();
    redisContext *s = conn(d), *p = conn(d);
    redisReply *r;
    r = cmd(s, "SUBSCRIBE news");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    /* Wait until the subscription counts (PUBSUB NUMSUB through p). */
    for (int i = 0; i < 1000; i++) {
        long long n = 0;
        r = cmd(p, "PUBLISH news hello");
        n = r->integer;
        freeReplyObject(r);
        if (n >= 1)
            break;
        tcr_sleep_ms(10);
    }
    cr_assert_eq(redisGetReply(s, (void **)&r), REDIS_OK);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_str_eq(r->element[2]->str, "hello");
    freeReplyObject(r);
    redisFree(s);
    redisFree(p);
}

/* ---- Faults ------------------------------------------------------------- */

typedef struct writes_ok {
    const tcd_proc *d;
    const char *key;
} writes_ok;

static int write_reads_back(void *p)
{
    writes_ok *w = p;
    redisContext *c = connect_to(w->d);
    redisReply *r;
    int ok;
    if (!c)
        return 0;
    r = redisCommand(c, "SET %s after", w->key);
    ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    /* A forwarded write (routed by the key specs) and a read. */
    r = ok ? redisCommand(c, "APPEND %s !", w->key) : NULL;
    ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 6;
    if (r)
        freeReplyObject(r);
    r = ok ? redisCommand(c, "GET %s", w->key) : NULL;
    ok = r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, "after!");
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

Test(cluster_daemon, master_killed_fails_fast_then_recovers,
     .init = own_cluster)
{
    tcd_proc *d = start_daemon("--command-timeout-ms", "500", NULL);
    redisContext *c = conn(d);
    tcr_server *m, *rep;
    char key[64], other[64];
    promoted pr;
    writes_ok w = {d, key};
    int outages = 0;
    double until;
    m = tcr_cluster_master_of(&cl, "kill:0");
    cr_assert_not_null(m);
    snprintf(key, sizeof(key), "kill:0");
    cr_assert_eq(tcr_cluster_key_on(&cl, m, "kill-x:", other, sizeof(other)),
                 0);
    rep = tcr_cluster_replica_of(&cl, m);
    cr_assert_not_null(rep, "the master has no replica");
    EXPECT(c, "OK", "SET %s before", key);
    cr_assert(tcr_cluster_replica_caught_up(m, rep, DEADLINE_MS));
    tcr_kill(m);
    /* Until the replica is promoted: every request answers (an error or
     * the value), none hangs past the command timeout's order. */
    pr.t = &cl, pr.replica = rep;
    until = tcr_now_ms() + 60000;
    while (tcr_now_ms() < until && !replica_promoted(&pr)) {
        redisReply *r = cmd(c, "GET %s", key);
        cr_assert(r->type == REDIS_REPLY_ERROR ||
                      (r->type == REDIS_REPLY_STRING &&
                       !strcmp(r->str, "before")),
                  "GET during the failover: type %d", r->type);
        outages += r->type == REDIS_REPLY_ERROR;
        freeReplyObject(r);
        r = cmd(c, "INCR %s", other);
        cr_assert(r->type == REDIS_REPLY_ERROR ||
                      r->type == REDIS_REPLY_INTEGER,
                  "INCR during the failover: type %d", r->type);
        freeReplyObject(r);
        tcr_sleep_ms(20);
    }
    cr_assert(replica_promoted(&pr), "the replica was never promoted");
    /* The same daemon, no restart: writes and reads reach the new
     * master. */
    cr_assert(tcr_wait(write_reads_back, &w, 30000),
              "no write through tiercached after the promotion");
    fprintf(stderr, "daemon-cluster: master killed: %d failed GETs before "
                    "the promotion\n", outages);
    redisFree(c);
}

typedef struct reshard {
    pthread_t th;
    char from[41], to[41], addr[32];
    int status;
    atomic_int done;
} reshard;

static void *reshard_main(void *p)
{
    reshard *rs = p;
    char cmdline[512];
    snprintf(cmdline, sizeof(cmdline),
             "redis-cli --cluster reshard %s --cluster-from %s --cluster-to "
             "%s --cluster-slots 2000 --cluster-yes --cluster-pipeline 5 "
             ">/dev/null 2>&1",
             rs->addr, rs->from, rs->to);
    rs->status = system(cmdline);
    atomic_store(&rs->done, 1);
    return NULL;
}

Test(cluster_daemon, reads_and_writes_through_a_reshard, .init = own_cluster)
{
    tcd_proc *d = start();
    redisContext *c = conn(d);
    tcr_server *a = tcr_cluster_master_of(&cl, "rs:0"),
               *b = another_master(&cl, a);
    reshard rs;
    int rounds = 0, moved = 0;
    memset(&rs, 0, sizeof(rs));
    cr_assert_not_null(b);
    for (int i = 0; i < 200; i++)
        EXPECT(c, "OK", "SET rs:%d 0", i);
    cr_assert_eq(tcr_cluster_id(a, rs.from), 0);
    cr_assert_eq(tcr_cluster_id(b, rs.to), 0);
    snprintf(rs.addr, sizeof(rs.addr), "127.0.0.1:%d", a->port);
    cr_assert_eq(pthread_create(&rs.th, NULL, reshard_main, &rs), 0);
    do {
        int last = atomic_load(&rs.done);
        for (int i = 0; i < 200; i++) {
            char v[16];
            snprintf(v, sizeof(v), "%d", rounds + 1);
            /* A forwarded write (SET with GET: not tc_set's) and a read. */
            {
                redisReply *r = cmd(c, "SET rs:%d %s GET", i, v);
                cr_assert(r->type == REDIS_REPLY_STRING,
                          "SET rs:%d GET in round %d: %s", i, rounds,
                          r->type == REDIS_REPLY_ERROR ? r->str : "?");
                freeReplyObject(r);
            }
            EXPECT(c, v, "GET rs:%d", i);
        }
        rounds++;
        if (last)
            break;
    } while (1);
    pthread_join(rs.th, NULL);
    cr_assert_eq(rs.status, 0, "redis-cli --cluster reshard failed");
    for (int i = 0; i < 200; i++) {
        char k[32];
        snprintf(k, sizeof(k), "rs:%d", i);
        moved += tcr_cluster_master_of(&cl, k) == b;
    }
    cr_assert_gt(moved, 0, "the reshard moved none of the keys");
    {
        redisReply *r = cmd(c, "DBSIZE");
        cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
        cr_assert_geq(r->integer, 200);
        freeReplyObject(r);
    }
    fprintf(stderr, "daemon-cluster: reshard: %d rounds of 200 writes and "
                    "reads, %d keys moved\n", rounds, moved);
    redisFree(c);
}
