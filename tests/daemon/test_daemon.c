/*
 * tiercached end to end: real redis-server (tests/redis_fixture.h), real
 * tiercached processes on unix sockets in private temp dirs, hiredis and raw
 * sockets as clients. Every process is stopped by pid in the suite's fini,
 * and dies with the test process (PDEATHSIG) if a test crashes.
 */
#include "crit.h" /* Criterion, or the TSan build's shim */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <poll.h>
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

TestSuite(daemon, .init = setup, .fini = teardown, .timeout = 120);

/* ---- commands ----------------------------------------------------------- */

Test(daemon, commands_behave_like_redis)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    redisReply *r;
    cr_assert_not_null(c);

    expect_status(c, "PONG", "PING");
    expect_status(c, "hi", "PING hi");
    expect_status(c, "x y", "ECHO %s", "x y");
    expect_status(c, "OK", "SELECT 0");
    expect_status(c, "ERR DB index is out of range", "SELECT -1");
    /* SELECT 1 works too (test_pinned.c), on a connection of its own. */
    expect_status(c, "OK", "SET k1 v1");
    expect_status(c, "v1", "GET k1");
    expect_status(c, "v1", "GET k1"); /* an L1 hit this time */
    expect_nil(c, "GET missing");
    expect_nil(c, "SET k1 other NX");
    expect_status(c, "v1", "GET k1");
    expect_status(c, "OK", "SET k1 v2 XX PX 100000");
    expect_nil(c, "SET absent v XX");
    expect_status(c, "v2", "GET k1");
    r = cmd(c, "PTTL k1");
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
    cr_assert(r->integer > 0 && r->integer <= 100000, "%lld", r->integer);
    freeReplyObject(r);
    expect_status(c, "OK", "SET k2 v EX 100");
    r = cmd(c, "TTL k2");
    cr_assert(r->integer > 0 && r->integer <= 100, "%lld", r->integer);
    freeReplyObject(r);
    expect_int(c, -2, "TTL missing");
    expect_int(c, 2, "EXISTS k1 k2 missing");
    r = cmd(c, "MGET k1 missing k2");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 3);
    cr_assert_str_eq(r->element[0]->str, "v2");
    cr_assert_eq(r->element[1]->type, REDIS_REPLY_NIL);
    cr_assert_str_eq(r->element[2]->str, "v");
    freeReplyObject(r);
    expect_int(c, 2, "DEL k1 k2 missing");
    expect_nil(c, "GET k1");

    /* Binary-safe keys and values. */
    r = cmd(c, "SET %b %b", "a\0b", (size_t)3, "\r\n\0", (size_t)3);
    freeReplyObject(r);
    r = cmd(c, "GET %b", "a\0b", (size_t)3);
    cr_assert_eq(r->len, 3);
    cr_assert(memcmp(r->str, "\r\n\0", 3) == 0);
    freeReplyObject(r);

    expect_status(c, "ERR syntax error", "SET k v NX XX");
    expect_status(c, "ERR invalid expire time in 'set' command", "SET k v EX 0");
    expect_status(c, "ERR value is not an integer or out of range",
                  "SET k v EX x");
    expect_status(c, "ERR wrong number of arguments for 'get' command", "GET");
    expect_status(c, "ERR unknown command 'FOO', with args beginning with: "
                     "'bar' 'baz' ", "FOO bar baz");
    expect_status(c, "OK", "FLUSHALL"); /* forwarded (issue 9) */
    expect_nil(c, "GET k1");
    expect_status(c, "NOPROTO sorry, this protocol version is not supported",
                  "HELLO 3");
    r = cmd(c, "HELLO 2");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 14);
    cr_assert_str_eq(r->element[4]->str, "proto");
    cr_assert_eq(r->element[5]->integer, 2);
    freeReplyObject(r);
    expect_nil(c, "CLIENT GETNAME");
    expect_status(c, "OK", "CLIENT SETNAME worker-1");
    expect_status(c, "worker-1", "CLIENT GETNAME");
    r = cmd(c, "COMMAND COUNT");
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
    cr_assert_gt(r->integer, 10);
    freeReplyObject(r);
    r = cmd(c, "COMMAND DOCS get");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 2);
    freeReplyObject(r);
    r = cmd(c, "INFO");
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert_not_null(strstr(r->str, "# Tiercache\r\n"));
    cr_assert_not_null(strstr(r->str, "loading:0\r\n"));
    cr_assert_not_null(strstr(r->str, "l1_hits:"));
    /* Read-through resilience counters (no loader here: all zero). */
    cr_assert_not_null(strstr(r->str, "stale_served:0\r\n"));
    cr_assert_not_null(strstr(r->str, "lock_waits:0\r\n"));
    freeReplyObject(r);
    expect_status(c, "OK", "SET p:1 a");
    expect_status(c, "OK", "SET p:2 b");
    expect_status(c, "OK", "TC.INVALIDATE PREFIX p:");
    expect_nil(c, "GET p:1");
    expect_status(c, "OK", "SET q:1 a");
    expect_status(c, "OK", "TC.INVALIDATE PATTERN q:*");
    expect_nil(c, "GET q:1");
    expect_status(c, "OK", "TC.INVALIDATE ALL");
    expect_status(c, "OK", "QUIT");
    redisFree(c);
    cr_assert_eq(stop_daemon(t), 0, "clean exit on SIGTERM");
    cr_assert_neq(access(t->sock, F_OK), 0, "socket file removed on exit");
}

Test(daemon, socket_mode_is_0600)
{
    tcd_proc *t = start_daemon(NULL);
    struct stat st;
    cr_assert_eq(stat(t->sock, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
}

Test(daemon, auth_when_password_configured)
{
    tcd_proc *t = start_daemon("--requirepass", "s3cret", NULL);
    redisContext *c = connect_to(t);
    cr_assert_not_null(c);
    expect_status(c, "NOAUTH Authentication required.", "GET k");
    expect_status(c, "WRONGPASS invalid username-password pair or user is "
                     "disabled.", "AUTH nope");
    expect_status(c, "OK", "AUTH s3cret");
    expect_status(c, "OK", "SET k v");
    expect_status(c, "v", "GET k");
    redisFree(c);
    c = connect_to(t);
    expect_status(c, "OK", "AUTH default s3cret");
    expect_status(c, "PONG", "PING");
    redisFree(c);
}

Test(daemon, pipelined_replies_stay_in_order)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    enum { N = 3000 };
    cr_assert_not_null(c);
    expect_status(c, "OK", "SET hot hotvalue");
    expect_status(c, "hotvalue", "GET hot");
    /* Interleave loop-answered (L1 hits, PING) and worker-answered (SET,
     * misses) commands: replies must come back exactly in request order. */
    for (int i = 0; i < N; i++) {
        switch (i % 4) {
        case 0: redisAppendCommand(c, "SET key:%d val:%d", i, i); break;
        case 1: redisAppendCommand(c, "GET hot"); break;
        case 2: redisAppendCommand(c, "GET key:%d", i - 2); break;
        default: redisAppendCommand(c, "ECHO %d", i); break;
        }
    }
    for (int i = 0; i < N; i++) {
        redisReply *r;
        char want[32];
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK, "%s", c->errstr);
        switch (i % 4) {
        case 0: snprintf(want, sizeof(want), "OK"); break;
        case 1: snprintf(want, sizeof(want), "hotvalue"); break;
        case 2: snprintf(want, sizeof(want), "val:%d", i - 2); break;
        default: snprintf(want, sizeof(want), "%d", i); break;
        }
        cr_assert_str_eq(r->str, want, "reply %d", i);
        freeReplyObject(r);
    }
    redisFree(c);
}

/* ---- bad input -------------------------------------------------------------- */

/* Read until EOF (the server closed) or the receive timeout. Returns the
 * bytes, *closed = 1 on EOF. */
static size_t read_all(int fd, char *buf, size_t cap, int *closed)
{
    size_t n = 0;
    *closed = 0;
    for (;;) {
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k == 0) {
            *closed = 1;
            break;
        }
        if (k < 0) {
            if (errno == ECONNRESET)
                *closed = 1;
            break;
        }
        n += (size_t)k;
        if (n >= cap - 1)
            break;
    }
    buf[n] = '\0';
    return n;
}

static void expect_protocol_error(const tcd_proc *t, const char *in, size_t n,
                                  const char *want)
{
    char buf[4096];
    int closed;
    int fd = raw_connect(t->sock);
    size_t sent = 0;
    /* The server may stop reading (and close) before all of it is sent. */
    while (sent < n) {
        ssize_t k = send(fd, in + sent, n - sent, MSG_NOSIGNAL);
        if (k <= 0)
            break;
        sent += (size_t)k;
    }
    read_all(fd, buf, sizeof(buf), &closed);
    close(fd);
    cr_assert(closed, "connection not closed after %s", want);
    cr_assert_not_null(strstr(buf, want), "got '%s', want '%s'", buf, want);
}

Test(daemon, malformed_input_closes_only_that_connection)
{
    tcd_proc *t = start_daemon("--max-bulk", "1048576", "--max-args", "1000",
                               NULL);
    redisContext *bystander = connect_to(t);
    static char garbage[70000];
    cr_assert_not_null(bystander);
    expect_status(bystander, "OK", "SET k v");

    expect_protocol_error(t, "*abc\r\n", 6,
                          "-ERR Protocol error: invalid multibulk length");
    expect_protocol_error(t, "*1\r\n:1\r\n", 8,
                          "-ERR Protocol error: expected '$', got ':'");
    /* Absurd sizes: refused from the header, before any data arrives. */
    expect_protocol_error(t, "*2000000000\r\n", 13,
                          "-ERR Protocol error: invalid multibulk length");
    expect_protocol_error(t, "*1\r\n$9223372036854775807\r\n", 26,
                          "-ERR Protocol error: invalid bulk length");
    expect_protocol_error(t, "PING \"unterminated\r\n", 20,
                          "-ERR Protocol error: unbalanced quotes");
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (char)(0x80 | (i * 37));
    expect_protocol_error(t, garbage, sizeof(garbage),
                          "-ERR Protocol error: too big inline request");
    /* Requests before the bad one are still answered, in order. */
    expect_protocol_error(t, "PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n", 25,
                          "+PONG\r\n+PONG\r\n-ERR Protocol error");

    expect_status(bystander, "v", "GET k");
    expect_status(bystander, "PONG", "PING");
    redisFree(bystander);
}

/* An argument over --max-bulk gets one error naming the limit and the
 * flag; the rest of the request is skipped and the connection kept. */
Test(daemon, oversized_argument_is_refused_and_skipped)
{
    enum { BIG = 1048577 + 4096 };
    tcd_proc *t = start_daemon("--max-bulk", "1048576", NULL);
    redisContext *c = connect_to(t);
    char *v = malloc(BIG);
    redisReply *r;
    cr_assert_not_null(c);
    memset(v, 'q', BIG);
    r = cmd(c, "SET huge %b", v, (size_t)BIG);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert_str_eq(r->str, "ERR Protocol error: invalid bulk length: "
                     "1052673 bytes is over the --max-bulk limit of 1048576");
    freeReplyObject(r);
    /* Same connection, next command. */
    expect_status(c, "PONG", "PING");
    expect_nil(c, "GET huge");
    cr_assert_eq(info_field_in(t, "tiercached", "tiercached_requests_too_big"), 1);
    cr_assert_eq(info_field_in(t, "tiercached", "tiercached_protocol_errors"), 0);
    redisFree(c);
    free(v);
}

Test(daemon, stalled_half_request_times_out)
{
    tcd_proc *t = start_daemon("--read-timeout", "300", NULL);
    redisContext *bystander = connect_to(t);
    char buf[256];
    int closed;
    int fd = raw_connect(t->sock);
    const char half[] = "*2\r\n$3\r\nGET\r\n$10\r\nabc";
    cr_assert_eq(send(fd, half, sizeof(half) - 1, 0),
                 (ssize_t)sizeof(half) - 1);
    expect_status(bystander, "PONG", "PING");
    read_all(fd, buf, sizeof(buf), &closed);
    close(fd);
    cr_assert(closed);
    cr_assert_not_null(strstr(buf, "-ERR Protocol error: timeout"), "%s", buf);
    expect_status(bystander, "PONG", "PING");
    redisFree(bystander);
}

Test(daemon, thousand_concurrent_connections)
{
    enum { N = 1100 };
    tcd_proc *t = start_daemon(NULL);
    redisContext **cs = calloc(N, sizeof(*cs));
    redisReply *r;
    cr_assert_not_null(cs);
    for (int i = 0; i < N; i++) {
        cs[i] = connect_to(t);
        cr_assert_not_null(cs[i], "connection %d", i);
    }
    /* All open at once; each sends a request before anyone reads. */
    for (int i = 0; i < N; i++)
        redisAppendCommand(cs[i], "SET c:%d %d", i % 50, i % 50);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(redisGetReply(cs[i], (void **)&r), REDIS_OK,
                     "client %d: %s", i, cs[i]->errstr);
        cr_assert_str_eq(r->str, "OK");
        freeReplyObject(r);
    }
    for (int i = 0; i < N; i++)
        redisAppendCommand(cs[i], "GET c:%d", i % 50);
    for (int i = 0; i < N; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%d", i % 50);
        cr_assert_eq(redisGetReply(cs[i], (void **)&r), REDIS_OK);
        cr_assert_str_eq(r->str, want);
        freeReplyObject(r);
    }
    r = cmd(cs[0], "INFO tiercached");
    cr_assert_not_null(strstr(r->str, "tiercached_connected:1100"), "%s",
                       r->str);
    freeReplyObject(r);
    for (int i = 0; i < N; i++)
        redisFree(cs[i]);
    free(cs);
}

/* ---- coherence between instances ------------------------------------------- */

typedef struct get_is {
    tcd_proc *t;
    const char *key, *want;
} get_is;

static int get_equals(void *arg)
{
    get_is *g = arg;
    redisContext *c = connect_to(g->t);
    redisReply *r;
    int ok;
    if (!c)
        return 0;
    r = redisCommand(c, "GET %s", g->key);
    ok = r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, g->want);
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* L1 TTLs of ten minutes: only an invalidation can change what B serves. */
#define LONG_L1 "--l1-ttl-ms", "600000", "--default-ttl", "900"

static void two_instances(const char *coherence)
{
    tcd_proc *a = start_daemon("--coherence", coherence, LONG_L1, NULL);
    tcd_proc *b = start_daemon("--coherence", coherence, LONG_L1, NULL);
    redisContext *ca = connect_to(a), *cb = connect_to(b);
    get_is g = {b, "shared", "v2"};
    expect_status(ca, "OK", "SET shared v1");
    expect_status(cb, "v1", "GET shared"); /* fills B's L1 */
    await_l1_hit(b, cb, "shared", "v1");
    expect_status(ca, "OK", "SET shared v2");
    if (!strcmp(coherence, "strict")) {
        /* Strict: once SET returned, no instance serves the old value. */
        expect_status(cb, "v2", "GET shared");
    } else {
        cr_assert(tcr_wait(get_equals, &g, DEADLINE_MS),
                  "B still serves the old value");
    }
    cr_assert_gt(info_field(b, "inval_applied"), 0);
    expect_int(ca, 1, "DEL shared");
    if (!strcmp(coherence, "strict"))
        expect_nil(cb, "GET shared");
    redisFree(ca);
    redisFree(cb);
}

Test(daemon, set_through_one_invalidates_other_async)
{
    two_instances("async");
}

Test(daemon, set_through_one_invalidates_other_strict)
{
    two_instances("strict");
}

Test(daemon, plain_redis_write_invalidates_with_tracking)
{
    /* Tracking needs a key prefix (BCAST over "" would report every key). */
    tcd_proc *a = start_daemon("--tracking", "--key-prefix", "t:", LONG_L1,
                               NULL);
    tcd_proc *b = start_daemon("--tracking", "--key-prefix", "t:", LONG_L1,
                               NULL);
    redisContext *ca = connect_to(a), *cb = connect_to(b);
    get_is ga = {a, "tracked", "from-redis-cli"};
    get_is gb = {b, "tracked", "from-redis-cli"};
    char *out;
    expect_status(ca, "OK", "SET tracked old");
    expect_status(ca, "old", "GET tracked");
    expect_status(cb, "old", "GET tracked");
    expect_status(cb, "old", "GET tracked");
    /* A write that bypasses tiercache entirely. */
    out = tcr_cmd(&redis, NULL, "SET", "t:tracked", "from-redis-cli", NULL);
    cr_assert_not_null(out);
    free(out);
    cr_assert(tcr_wait(get_equals, &ga, DEADLINE_MS), "A kept the old value");
    cr_assert(tcr_wait(get_equals, &gb, DEADLINE_MS), "B kept the old value");
    redisFree(ca);
    redisFree(cb);
}

/* ---- L2 failure ------------------------------------------------------------- */

typedef struct load {
    tcd_proc *t;
    atomic_int stop;
    atomic_long ok, errors;
} load;

static void *load_main(void *arg)
{
    load *l = arg;
    redisContext *c = connect_to(l->t);
    long i = 0;
    if (!c)
        return NULL;
    while (!atomic_load(&l->stop)) {
        redisReply *r = redisCommand(c, i % 2 ? "GET load:%ld" : "SET load:%ld x",
                                     i % 100);
        if (!r) { /* the daemon must never drop us */
            atomic_fetch_add(&l->errors, 1000000);
            break;
        }
        if (r->type == REDIS_REPLY_ERROR)
            atomic_fetch_add(&l->errors, 1);
        else
            atomic_fetch_add(&l->ok, 1);
        freeReplyObject(r);
        i++;
    }
    redisFree(c);
    return NULL;
}

static int l2_writes_work(void *arg)
{
    redisContext *c = connect_to(arg);
    redisReply *r;
    int ok;
    if (!c)
        return 0;
    r = redisCommand(c, "SET probe yes");
    ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

static int l2_writes_fail(void *arg)
{
    redisContext *c = connect_to(arg);
    redisReply *r;
    int failed;
    if (!c)
        return 0;
    r = redisCommand(c, "SET probe yes");
    failed = r && r->type == REDIS_REPLY_ERROR;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return failed;
}

static int has_progress(void *arg)
{
    load *l = arg;
    return atomic_load(&l->ok) > 100;
}

Test(daemon, redis_killed_and_restarted_under_load)
{
    tcd_proc *t = start_daemon("--http", NULL);
    load l = {.t = t};
    pthread_t th[4];
    long ok_before;
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, load_main, &l);
    cr_assert(tcr_wait(has_progress, &l, DEADLINE_MS));
    tcr_kill(&redis);
    cr_assert(tcr_wait(l2_writes_fail, t, DEADLINE_MS),
              "writes should fail while Redis is down");
    cr_assert_eq(tcr_restart(&redis), 0);
    cr_assert(tcr_wait(l2_writes_work, t, DEADLINE_MS),
              "writes did not recover after Redis came back");
    ok_before = atomic_load(&l.ok);
    atomic_store(&l.ok, 0);
    cr_assert(tcr_wait(has_progress, &l, DEADLINE_MS), "load did not resume");
    atomic_store(&l.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert_lt(atomic_load(&l.errors), 1000000,
                 "a client connection was dropped (ok before: %ld)", ok_before);
    cr_assert_eq(kill(t->pid, 0), 0, "daemon still running");
}

/* ---- HTTP and --check -------------------------------------------------------- */

static int http_get(int port, const char *path, char *buf, size_t cap)
{
    struct sockaddr_in a;
    char req[128];
    int fd = socket(AF_INET, SOCK_STREAM, 0), closed, status = -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) > 0) {
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        read_all(fd, buf, cap, &closed);
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
            status = -1;
    }
    close(fd);
    return status;
}

static int health_is_503(void *arg)
{
    char buf[2048];
    return http_get(((tcd_proc *)arg)->http_port, "/health", buf,
                    sizeof(buf)) == 503;
}

static int health_is_200(void *arg)
{
    char buf[2048];
    return http_get(((tcd_proc *)arg)->http_port, "/health", buf,
                    sizeof(buf)) == 200;
}

Test(daemon, metrics_and_health)
{
    tcd_proc *t = start_daemon("--http", NULL);
    static char buf[65536];
    cr_assert(tcr_wait(health_is_200, t, DEADLINE_MS));
    cr_assert_eq(http_get(t->http_port, "/metrics", buf, sizeof(buf)), 200);
    cr_assert_not_null(strstr(buf, "# TYPE tiercache_l1_hits_total counter"));
    cr_assert_not_null(strstr(buf, "tiercached_connected "));
    cr_assert_eq(http_get(t->http_port, "/nope", buf, sizeof(buf)), 404);
    tcr_kill(&redis);
    cr_assert(tcr_wait(health_is_503, t, DEADLINE_MS));
    cr_assert_eq(tcr_restart(&redis), 0);
    cr_assert(tcr_wait(health_is_200, t, DEADLINE_MS));
}

static int run_check(const char *url)
{
    char cmdline[600];
    snprintf(cmdline, sizeof(cmdline),
             "'%s' --check --redis-url '%s' --log-level error >/dev/null 2>&1",
             daemon_path(), url);
    return system(cmdline);
}

Test(daemon, check_flag_reports_l2_reachability)
{
    char dead[64];
    cr_assert_eq(run_check(redis.url), 0);
    snprintf(dead, sizeof(dead), "redis://127.0.0.1:%d", tcr_free_port());
    cr_assert_neq(run_check(dead), 0);
    cr_assert_neq(run_check("bogus://x"), 0);
}

/* ---- ordering at the end of a connection, slow readers ------------------- */

Test(daemon, quit_after_pipelined_writes_answers_all_then_closes)
{
    tcd_proc *t = start_daemon(NULL);
    const char req[] = "SET q1 a\r\nSET q2 b\r\nGET q1\r\nQUIT\r\nPING\r\n";
    char buf[512];
    int closed;
    int fd = raw_connect(t->sock);
    cr_assert_eq(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    read_all(fd, buf, sizeof(buf), &closed);
    close(fd);
    cr_assert(closed);
    /* Nothing after QUIT is answered. */
    cr_assert_str_eq(buf, "+OK\r\n+OK\r\n$1\r\na\r\n+OK\r\n");
}

Test(daemon, client_that_never_reads_does_not_stall_others)
{
    tcd_proc *t = start_daemon("--max-output", "65536", NULL);
    redisContext *c = connect_to(t);
    static char big[8192];
    static char reqs[64 * 1024];
    int fd = raw_connect(t->sock);
    size_t n = 0;
    memset(big, 'x', sizeof(big) - 1);
    expect_status(c, "OK", "SET big %s", big);
    expect_status(c, big, "GET big");
    while (n + 16 < sizeof(reqs))
        n += (size_t)snprintf(reqs + n, sizeof(reqs) - n, "GET big\r\n");
    /* Send ~7000 GETs (56 MB of replies) and never read: the daemon stops
     * reading this client once 64 KiB of replies wait, so our sends block;
     * use a non-blocking socket and send what fits. */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int round = 0; round < 50; round++) {
        if (send(fd, reqs, n, MSG_NOSIGNAL) < 0)
            break;
    }
    expect_status(c, "PONG", "PING");
    expect_status(c, big, "GET big");
    close(fd);
    expect_status(c, "PONG", "PING");
    redisFree(c);
}

/* ---- memory bounds (issue 9) -------------------------------------------- */

typedef struct grow_watch {
    tcd_proc *t;
    long base_kb, limit_kb;
} grow_watch;

/* Done waiting when the daemon paused the client for its unsent replies,
 * or when its memory already grew past the limit (the failure). */
static int paused_or_grown(void *arg)
{
    grow_watch *g = arg;
    return rss_kb(g->t->pid) - g->base_kb > g->limit_kb ||
           info_field_in(g->t, "tiercached", "tiercached_output_pauses") > 0;
}

Test(daemon, client_that_never_reads_cannot_grow_memory)
{
    enum { VALUE = 256 * 1024, GETS = 2000 };
    const char *asan = getenv("ASAN_OPTIONS");
    char *saved = asan ? strdup(asan) : NULL, opts[512];
    tcd_proc *t;
    redisContext *c;
    char *big = malloc(VALUE + 1);
    char *reqs = malloc(16 + GETS * 16);
    /* In an ASan build freed replies would sit in its quarantine (256 MB)
     * and count as RSS: keep it small for this daemon. */
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
    grow_watch g = {.t = t, .limit_kb = 64 * 1024};
    size_t n = 0, sent = 0;
    long grown;
    int fd;
    cr_assert_not_null(c);
    memset(big, 'x', VALUE);
    big[VALUE] = '\0';
    expect_status(c, "OK", "SET big %s", big);
    expect_status(c, big, "GET big");
    g.base_kb = rss_kb(t->pid);
    cr_assert_gt(g.base_kb, 0);
    /* A miss first, so that every GET after it waits for a worker; then
     * 2,000 GETs of 256 KiB (500 MB of replies), never read. */
    n += (size_t)sprintf(reqs + n, "GET nokey\r\n");
    for (int i = 0; i < GETS; i++)
        n += (size_t)sprintf(reqs + n, "GET big\r\n");
    fd = raw_connect(t->sock);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (sent < n) {
        ssize_t k = send(fd, reqs + sent, n - sent, MSG_NOSIGNAL);
        if (k <= 0)
            break; /* the daemon stopped reading us: fine */
        sent += (size_t)k;
    }
    cr_assert(tcr_wait(paused_or_grown, &g, DEADLINE_MS),
              "the daemon neither paused the client nor grew");
    /* Others are served meanwhile. */
    expect_status(c, "PONG", "PING");
    expect_status(c, big, "GET big");
    expect_nil(c, "GET other-miss");
    grown = rss_kb(t->pid) - g.base_kb;
    cr_assert_lt(grown, 32 * 1024, "RSS grew by %ld kB for one client that "
                 "never reads (bound: 1 MiB of pending replies)", grown);
    close(fd);
    expect_status(c, "PONG", "PING");
    redisFree(c);
    free(big);
    free(reqs);
}

static redisReply *argv_cmd(redisContext *c, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    cr_assert_not_null(r, "%s: %s", argv[0], c->errstr);
    return r;
}

Test(daemon, multi_key_commands_are_bounded)
{
    enum { VALUE = 256 * 1024 };
    tcd_proc *t = start_daemon("--max-keys", "100", "--max-reply", "1048576",
                               NULL);
    redisContext *c = connect_to(t);
    const char *argv[102];
    char *big = malloc(VALUE + 1);
    redisReply *r;
    cr_assert_not_null(c);
    memset(big, 'y', VALUE);
    big[VALUE] = '\0';
    expect_status(c, "OK", "SET big %s", big);
    expect_status(c, big, "GET big");
    argv[0] = "MGET";
    for (int i = 1; i < 102; i++)
        argv[i] = "big";
    /* 3 x 256 KiB fits in 1 MiB. */
    r = argv_cmd(c, 4, argv);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 3);
    freeReplyObject(r);
    /* 8 x 256 KiB (all L1 hits, answered on the loop) does not. */
    r = argv_cmd(c, 9, argv);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert_not_null(strstr(r->str, "--max-reply"), "%s", r->str);
    freeReplyObject(r);
    /* 40 keys go to a worker: the same limit. */
    r = argv_cmd(c, 41, argv);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert_not_null(strstr(r->str, "--max-reply"), "%s", r->str);
    freeReplyObject(r);
    /* 101 keys: over --max-keys, for every multi-key command. */
    r = argv_cmd(c, 102, argv);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert_not_null(strstr(r->str, "--max-keys"), "%s", r->str);
    freeReplyObject(r);
    argv[0] = "EXISTS";
    r = argv_cmd(c, 102, argv);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert_not_null(strstr(r->str, "--max-keys"), "%s", r->str);
    freeReplyObject(r);
    r = argv_cmd(c, 101, argv);
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
    cr_assert_eq(r->integer, 100);
    freeReplyObject(r);
    redisFree(c);
    free(big);
}

/* ---- shutdown (issue 9) --------------------------------------------------- */

typedef struct deferred_at_least {
    tcd_proc *t;
    long long want;
    int infos;
} deferred_at_least;

static int deferred_reached(void *arg)
{
    deferred_at_least *d = arg;
    d->infos++; /* INFO itself runs on a worker and is counted */
    return info_field_in(d->t, "tiercached", "tiercached_commands_deferred") >=
           d->want + d->infos;
}

Test(daemon, shutdown_answers_every_accepted_command)
{
    enum { N = 20 };
    /* Redis hangs: the first SET stays at a worker while SIGTERM comes. */
    tcd_proc *t = start_daemon("--command-timeout-ms", "10000", NULL);
    deferred_at_least d = {.t = t, .want = N};
    char req[N * 32], buf[4096];
    size_t n = 0;
    int fd, closed, replies = 0, ok = 0, st;
    for (int i = 0; i < N; i++)
        n += (size_t)sprintf(req + n, "SET sd:%d v\r\n", i);
    tcr_pause(&redis);
    fd = raw_connect(t->sock);
    cr_assert_eq(send(fd, req, n, 0), (ssize_t)n);
    cr_assert(tcr_wait(deferred_reached, &d, DEADLINE_MS),
              "the daemon did not accept the %d SETs", N);
    kill(t->pid, SIGTERM);
    tcr_resume(&redis);
    read_all(fd, buf, sizeof(buf), &closed);
    close(fd);
    cr_assert(closed, "connection not closed at shutdown");
    for (char *p = buf; (p = strstr(p, "\r\n")) != NULL; p += 2) {
        replies++;
        ok += !strncmp(p - 3, "+OK", 3);
    }
    cr_assert_eq(replies, N, "%d replies to %d accepted commands: '%s'",
                 replies, N, buf);
    st = wait_exit(t);
    cr_assert_eq(st, 0, "exit status 0x%x", st);
    /* Every +OK is in Redis. */
    for (int i = 0, seen = 0; i < N && seen < ok; i++) {
        char key[16], *v;
        snprintf(key, sizeof(key), "sd:%d", i);
        v = tcr_cmd(&redis, NULL, "GET", key, NULL);
        cr_assert_not_null(v);
        seen += !strcmp(v, "v");
        free(v);
    }
    cr_assert_gt(ok, 0, "not even the SET at the worker ran: '%s'", buf);
}

/* ---- the default socket (issue 9) ------------------------------------------ */

/* tiercached without --socket, XDG_RUNTIME_DIR=`xdg`, its log in
 * `xdg`/tcd.log. Returns the pid. */
static pid_t spawn_default_socket(const char *xdg)
{
    pid_t parent = getpid();
    const char *bin = daemon_path(); /* no Criterion calls in the child */
    pid_t pid = fork();
    if (pid == 0) {
        char log[300];
        int fd;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        snprintf(log, sizeof(log), "%s/tcd.log", xdg);
        fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        setenv("XDG_RUNTIME_DIR", xdg, 1);
        execl(bin, bin, "--redis-url", redis.url,
              "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    cr_assert_gt(pid, 0);
    return pid;
}

static int exited(void *arg)
{
    tcd_proc *t = arg;
    int st;
    if (waitpid(t->pid, &st, WNOHANG) != t->pid)
        return 0;
    t->pid = 0;
    t->http_port = st; /* the status, for the caller */
    return 1;
}

Test(daemon, default_socket_is_in_a_private_directory)
{
    tcd_proc *t = &procs[nprocs++];
    tcd_proc bad = {0};
    char tmpl[] = "/tmp/tcd-test.XXXXXX", dir[300], log[300];
    struct stat st;
    FILE *f;
    cr_assert_not_null(mkdtemp(tmpl));
    snprintf(t->dir, sizeof(t->dir), "%s", tmpl);
    snprintf(t->sock, sizeof(t->sock), "%s/tiercached/tiercached.sock", tmpl);
    snprintf(dir, sizeof(dir), "%s/tiercached", tmpl);
    /* Without --socket: created in a 0700 directory of our own. */
    t->pid = spawn_default_socket(tmpl);
    cr_assert(tcr_wait(answers_ping, t, DEADLINE_MS),
              "no daemon on %s", t->sock);
    cr_assert_eq(lstat(dir, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0700, "mode %o", st.st_mode & 0777);
    cr_assert_eq(st.st_uid, geteuid());
    cr_assert_eq(stop_daemon(t), 0);

    /* A directory others can write to is refused, not used. */
    cr_assert_eq(chmod(dir, 0777), 0);
    bad.pid = spawn_default_socket(tmpl);
    cr_assert(tcr_wait(exited, &bad, DEADLINE_MS),
              "tiercached started with a world-writable socket directory");
    cr_assert(WIFEXITED(bad.http_port) && WEXITSTATUS(bad.http_port) != 0,
              "status 0x%x", bad.http_port);
    cr_assert_neq(access(t->sock, F_OK), 0, "socket created anyway");
    snprintf(log, sizeof(log), "%s/tcd.log", tmpl);
    f = fopen(log, "r");
    cr_assert_not_null(f);
    {
        char text[4096];
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = '\0';
        cr_assert_not_null(strstr(text, "refusing"), "log: %s", text);
    }
    fclose(f);
    /* Owned by another user: refused too (needs root to set up). */
    if (geteuid() == 0) {
        cr_assert_eq(chmod(dir, 0700), 0);
        cr_assert_eq(chown(dir, 65534, 65534), 0);
        bad.pid = spawn_default_socket(tmpl);
        cr_assert(tcr_wait(exited, &bad, DEADLINE_MS),
                  "tiercached used a directory owned by another user");
        cr_assert(WIFEXITED(bad.http_port) && WEXITSTATUS(bad.http_port) != 0);
    }
}

/* ---- one client cannot stall the others (issue 9) ------------------------ */

Test(daemon, hostile_exists_costs_one_round_trip_and_stalls_nobody)
{
    enum { KEYS = 65535, HOSTILE = 4 };
    /* Each EXISTS is 1.3 MB to Redis: on a loaded machine its round trip
     * may exceed the default 500 ms L2 timeout, a correct error reply but
     * not what this test is about. */
    tcd_proc *t = start_daemon("--workers", "2", "--max-keys", "65536",
                               "--command-timeout-ms", "10000", NULL);
    redisContext *c = connect_to(t), *victim;
    const char **argv = malloc((KEYS + 1) * sizeof(*argv));
    char (*keys)[16] = malloc((size_t)KEYS * 16);
    char *req = malloc((size_t)KEYS * 24 + 64), *v;
    size_t n = 0;
    int fds[HOSTILE];
    long long rt0, rt1;
    redisReply *r;
    cr_assert_not_null(c);
    argv[0] = "EXISTS";
    for (int i = 0; i < KEYS; i++) {
        snprintf(keys[i], sizeof(keys[i]), "absent:%05d", i);
        argv[i + 1] = keys[i];
    }
    /* One EXISTS of 1,000 absent keys: L2 round trips, not 1,000. */
    rt0 = info_field_in(t, "tiercache", "l2_round_trips");
    r = argv_cmd(c, 1001, argv);
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "%s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    rt1 = info_field_in(t, "tiercache", "l2_round_trips");
    cr_assert_leq(rt1 - rt0, 3, "%lld round trips for one EXISTS",
                  rt1 - rt0);

    /* Four connections each send EXISTS with 65,535 absent keys... */
    n += (size_t)sprintf(req, "*%d\r\n$6\r\nEXISTS\r\n", KEYS + 1);
    for (int i = 0; i < KEYS; i++)
        n += (size_t)sprintf(req + n, "$12\r\n%s\r\n", keys[i]);
    for (int i = 0; i < HOSTILE; i++) {
        size_t sent = 0;
        fds[i] = raw_connect(t->sock);
        while (sent < n) {
            ssize_t k = send(fds[i], req + sent, n - sent, MSG_NOSIGNAL);
            cr_assert_gt(k, 0);
            sent += (size_t)k;
        }
    }
    /* ... while another client's GET misses L1 and must still be answered,
     * within a generous deadline (it waited for every EXISTS before). */
    v = tcr_cmd(&redis, NULL, "SET", "victim", "served", NULL);
    free(v);
    victim = connect_to(t);
    cr_assert_not_null(victim);
    {
        struct timeval tv = {DEADLINE_MS / 1000, 0};
        redisSetTimeout(victim, tv);
    }
    expect_status(victim, "served", "GET victim");
    for (int i = 0; i < HOSTILE; i++) {
        /* Read the reply before closing: like redis-server, the daemon may
         * drop a client's pending replies once it sees EOF. */
        char buf[64];
        size_t got = 0;
        while (got < 4) {
            ssize_t k = recv(fds[i], buf + got, sizeof(buf) - 1 - got, 0);
            cr_assert_neq(k, 0, "hostile %d: connection closed unanswered",
                          i);
            cr_assert_gt(k, 0, "hostile %d: no answer within %d s: %s", i,
                         DEADLINE_MS / 1000, strerror(errno));
            got += (size_t)k;
        }
        buf[got] = '\0';
        cr_assert_str_eq(buf, ":0\r\n", "hostile %d: '%s'", i, buf);
        close(fds[i]);
    }
    redisFree(victim);
    redisFree(c);
    free(argv);
    free(keys);
    free(req);
}

/* ---- security (issue 9) ----------------------------------------------------- */

static size_t read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return n;
}

/* How many times `needle` occurs in the daemon's log. */
static int log_count(const tcd_proc *t, const char *needle)
{
    static char buf[1 << 20];
    char path[200];
    int count = 0;
    snprintf(path, sizeof(path), "%s/tcd.log", t->dir);
    read_file(path, buf, sizeof(buf));
    for (const char *p = buf; (p = strstr(p, needle)) != NULL; p++)
        count++;
    return count;
}

static void expect_cmdline_clean(const tcd_proc *t)
{
    char path[64], buf[4096];
    size_t n;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)t->pid);
    n = read_file(path, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    cr_assert_null(strstr(buf, "s3cret"), "secret visible: %s", buf);
    cr_assert_not_null(strstr(buf, "--requirepass"), "%s", buf);
}

Test(daemon, secrets_are_not_in_the_process_title)
{
    char url[200], file[200];
    tcd_proc *t;
    redisContext *c;
    FILE *f;
    char *v = tcr_cmd(&redis, NULL, "CONFIG", "SET", "requirepass",
                      "l2-s3cret", NULL);
    cr_assert_str_eq(v, "OK");
    free(v);
    snprintf(url, sizeof(url), "redis://:l2-s3cret@127.0.0.1:%d", redis.port);
    /* On the command line: usable, but overwritten in argv. */
    t = start_daemon("--redis-url", url, "--requirepass", "cl-s3cret", NULL);
    expect_cmdline_clean(t);
    c = connect_to(t);
    expect_status(c, "OK", "AUTH cl-s3cret");
    expect_status(c, "OK", "SET k v");
    expect_status(c, "v", "GET k");
    redisFree(c);
    /* From a file. */
    snprintf(file, sizeof(file), "%s/pass", t->dir);
    f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("file-s3cret\n", f);
    fclose(f);
    t = start_daemon("--redis-url", url, "--requirepass-file", file, NULL);
    c = connect_to(t);
    expect_status(c, "NOAUTH Authentication required.", "GET k");
    expect_status(c, "OK", "AUTH file-s3cret");
    expect_status(c, "v", "GET k");
    redisFree(c);
    /* From the environment (inherited by the daemon). */
    setenv("TIERCACHED_REQUIREPASS", "env-s3cret", 1);
    t = start_daemon("--redis-url", url, NULL);
    unsetenv("TIERCACHED_REQUIREPASS");
    c = connect_to(t);
    expect_status(c, "OK", "AUTH env-s3cret");
    expect_status(c, "v", "GET k");
    redisFree(c);
    v = tcr_cmd(&redis, "l2-s3cret", "CONFIG", "SET", "requirepass", "",
                NULL);
    free(v);
}

Test(daemon, failed_auth_logging_is_rate_limited)
{
    enum { N = 2000 };
    tcd_proc *t = start_daemon("--requirepass", "right", NULL);
    redisContext *c = connect_to(t);
    redisReply *r;
    cr_assert_not_null(c);
    for (int i = 0; i < N; i++)
        redisAppendCommand(c, "AUTH wrong");
    for (int i = 0; i < N; i++) {
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        cr_assert_eq(r->type, REDIS_REPLY_ERROR);
        freeReplyObject(r);
    }
    expect_status(c, "OK", "AUTH right");
    redisFree(c);
    /* One line a second at most, however fast the failures come. */
    cr_assert_geq(log_count(t, "AUTH failed"), 1);
    cr_assert_lt(log_count(t, "AUTH failed"), 60, "%d lines",
                 log_count(t, "AUTH failed"));
}

Test(daemon, http_request_to_the_resp_port_is_dropped)
{
    int port = tcr_free_port();
    char portarg[16], cmdline[512], *v;
    tcd_proc *t;
    redisContext *c;
    int rc;
    snprintf(portarg, sizeof(portarg), "%d", port);
    t = start_daemon("--port", portarg, "--log-level", "warn", NULL);
    /* What a web page can make a local browser send. */
    snprintf(cmdline, sizeof(cmdline),
             "bash -c \"curl -s -m 5 -X POST --data-binary "
             "\\$'\\r\\nSET pwned 1\\r\\n' http://127.0.0.1:%d/\" "
             ">/dev/null 2>&1", port);
    for (int i = 0; i < 3; i++) {
        rc = system(cmdline);
        /* 52: empty reply from server (the connection was closed). */
        cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 52, "curl: 0x%x", rc);
    }
    v = tcr_cmd(&redis, NULL, "EXISTS", "pwned", NULL);
    cr_assert_str_eq(v, "0", "the smuggled command ran");
    free(v);
    c = connect_to(t);
    expect_nil(c, "GET pwned");
    redisFree(c);
    cr_assert_eq(log_count(t, "possible security attack"), 1,
                 "logged %d times", log_count(t, "possible security attack"));
}

/* ---- INFO (issue 9) ---------------------------------------------------------- */

Test(daemon, info_does_not_cost_a_round_trip_each_time)
{
    enum { N = 50 };
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    long long r0, r1;
    redisReply *r;
    cr_assert_not_null(c);
    r0 = info_field_in(t, "tiercache", "l2_round_trips");
    for (int i = 0; i < N; i++) {
        r = cmd(c, "INFO tiercache");
        cr_assert_not_null(strstr(r->str, "l2_up:1"), "%s", r->str);
        freeReplyObject(r);
    }
    r1 = info_field_in(t, "tiercache", "l2_round_trips");
    /* One PING a second at most, not one per INFO. */
    cr_assert_lt(r1 - r0, 10, "%lld L2 round trips for %d INFOs", r1 - r0,
                 N);
    redisFree(c);
}

/* INFO's own sections never wait for a hung Redis, and INFOs that come
 * while one worker's health PING is out answer with the last snapshot
 * instead of queueing behind it (they used to: INFO of both sections went
 * to Redis, and every INFO waited for the probe's lock). The daemon's
 * command timeout is long, so that only Redis coming back unblocks a call
 * that does wait for it. */
Test(daemon, info_of_its_own_sections_never_waits_for_a_hung_redis)
{
    enum { N = 3 };
    tcd_proc *t = start_daemon("--command-timeout-ms", "60000", "--workers",
                               "4", NULL);
    redisContext *cs[N];
    double t0;
    redisReply *r;
    int answered = 0, done, rc;
    /* A first probe, while Redis answers. */
    cr_assert_neq(info_field_in(t, "tiercache", "l2_up"), -1);
    t0 = tcr_now_ms();
    tcr_pause(&redis);
    cr_assert(tcr_wait(tcr_stopped, &redis, DEADLINE_MS));
    /* The snapshot is at most a second old: once it is older, one of these
     * INFOs probes (and waits for Redis); the others must not. */
    tcr_sleep_until_ms(t0 + 1100);
    for (int i = 0; i < N; i++) {
        cs[i] = connect_to(t);
        cr_assert_not_null(cs[i]);
        redisAppendCommand(cs[i], i ? "INFO tiercache tiercached"
                                    : "INFO tiercache");
        done = 0;
        do
            rc = redisBufferWrite(cs[i], &done);
        while (rc == REDIS_OK && !done);
        cr_assert_eq(rc, REDIS_OK);
    }
    /* Redis stays hung until N - 1 of them have answered (whichever they
     * are: one of them may be the probe, waiting for Redis). */
    for (int got[N] = {0}; answered < N - 1;) {
        struct pollfd pf[N];
        for (int i = 0; i < N; i++)
            pf[i] = (struct pollfd){got[i] ? -1 : cs[i]->fd, POLLIN, 0};
        if (poll(pf, N, 20000) <= 0)
            break; /* none within 20 s: fails below */
        for (int i = 0; i < N; i++) {
            void *rep = NULL;
            if (!(pf[i].revents & POLLIN))
                continue;
            cr_assert_eq(redisGetReply(cs[i], &rep), REDIS_OK);
            r = rep;
            cr_assert_eq(r->type, REDIS_REPLY_STRING);
            cr_assert_not_null(strstr(r->str, "health_age_ms:"));
            got[i] = 1;
            answered++;
            freeReplyObject(r);
        }
    }
    cr_assert(tcr_stopped(&redis), "Redis was resumed meanwhile");
    tcr_resume(&redis);
    cr_assert_geq(answered, N - 1, "%d of %d INFOs answered while Redis hung",
                  answered, N);
    for (int i = 0; i < N; i++)
        redisFree(cs[i]);
}

/* ---- SET without a TTL, PING (issue 9) -------------------------------------- */

Test(daemon, set_without_ttl_keeps_the_key_like_redis)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    char *v;
    cr_assert_not_null(c);
    expect_status(c, "OK", "SET forever v");
    expect_int(c, -1, "TTL forever");
    v = tcr_cmd(&redis, NULL, "PTTL", "forever", NULL);
    cr_assert_str_eq(v, "-1", "Redis has a TTL on it: %s", v);
    free(v);
    /* EX still applies. */
    expect_status(c, "OK", "SET brief v EX 100");
    v = tcr_cmd(&redis, NULL, "TTL", "brief", NULL);
    cr_assert(atoi(v) > 0 && atoi(v) <= 100, "%s", v);
    free(v);
    redisFree(c);
}

static int ping_fails(void *arg)
{
    redisContext *c = connect_to(arg);
    redisReply *r;
    int failed;
    if (!c)
        return 0;
    r = redisCommand(c, "PING");
    failed = r && r->type == REDIS_REPLY_ERROR;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return failed;
}

Test(daemon, ping_tells_the_truth_about_redis)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    cr_assert_not_null(c);
    expect_status(c, "PONG", "PING");
    expect_status(c, "hi", "PING hi");
    tcr_kill(&redis);
    cr_assert(tcr_wait(ping_fails, t, DEADLINE_MS),
              "PING still answers PONG with Redis down");
    cr_assert_eq(tcr_restart(&redis), 0);
    redisFree(c);
    c = connect_to(t);
    expect_status(c, "PONG", "PING");
    redisFree(c);
}

static void expect_error_prefix(redisContext *c, const char *prefix,
                                const char *command)
{
    redisReply *r = redisCommand(c, command);
    cr_assert_not_null(r);
    cr_assert(r->type == REDIS_REPLY_ERROR &&
                  strncmp(r->str, prefix, strlen(prefix)) == 0,
              "%s: type %d (%s), want %s...", command, r->type,
              r->str ? r->str : "", prefix);
    freeReplyObject(r);
}

/* Tags through the daemon (issue 11, seed 002): TC.SET ... TAGS records
 * them, TC.INVALIDATE TAGS deletes every key under them, in Redis and in
 * another daemon's L1 (strict: at once). */
Test(daemon, tags_set_and_invalidate_across_daemons)
{
    tcd_proc *a = start_daemon("--coherence", "strict", LONG_L1, NULL);
    tcd_proc *b = start_daemon("--coherence", "strict", LONG_L1, NULL);
    redisContext *ca = connect_to(a), *cb = connect_to(b);
    char *v;
    expect_status(ca, "OK", "TC.SET runs:1 r PX 60000 TAGS user runs");
    expect_status(ca, "OK", "TC.SET profile:1 p TAGS user");
    expect_status(ca, "OK", "TC.SET feed:1 f EX 60 TAGS social");
    expect_status(cb, "r", "GET runs:1"); /* fills B's L1 */
    expect_status(cb, "p", "GET profile:1");
    v = tcr_cmd(&redis, NULL, "PTTL", "runs:1", NULL);
    cr_assert(atoll(v) > 0 && atoll(v) <= 60000, "%s", v);
    free(v);
    expect_int(ca, 1, "TC.INVALIDATE TAGS runs");
    expect_nil(cb, "GET runs:1");
    expect_status(cb, "p", "GET profile:1");
    expect_int(ca, 2, "TC.INVALIDATE TAGS user social");
    expect_nil(cb, "GET profile:1");
    expect_nil(cb, "GET feed:1");
    expect_error_prefix(ca, "ERR wrong number", "TC.SET k v TAGS");
    expect_error_prefix(ca, "ERR syntax error", "TC.SET k v EX 10");
    expect_error_prefix(ca, "ERR invalid expire", "TC.SET k v EX 0 TAGS t");
    redisFree(ca);
    redisFree(cb);
}

/* ---- TC.RATELIMIT ------------------------------------------------------------ */

/* TC.RATELIMIT's reply: [allowed, remaining, reset_ms, fallback]. */
static void ratelimit_reply(redisContext *c, const char *key, long long out[4])
{
    redisReply *r = cmd(c, "TC.RATELIMIT %s 5 900000", key);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "TC.RATELIMIT: type %d", r->type);
    cr_assert_eq(r->elements, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(r->element[i]->type, REDIS_REPLY_INTEGER);
        out[i] = r->element[i]->integer;
    }
    freeReplyObject(r);
}

static int ratelimit_by_redis(void *p)
{
    redisContext *c = p;
    redisReply *r = redisCommand(c, "TC.RATELIMIT probe 5 900000");
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
             r->element[3]->integer == 0;
    if (r)
        freeReplyObject(r);
    return ok;
}

/* Seed 004's auth limit (5 per 15 min) through two daemons: it holds in
 * total; with Redis down each daemon holds it alone and says so. */
Test(daemon, tc_ratelimit_across_daemons_and_while_redis_is_down)
{
    tcd_proc *a = start_daemon(NULL), *b = start_daemon(NULL);
    redisContext *ca = connect_to(a), *cb = connect_to(b);
    long long rep[4];
    int allowed = 0;
    cr_assert(ca && cb);
    for (int i = 0; i < 10; i++) {
        ratelimit_reply(i % 2 ? cb : ca, "auth:ip1", rep);
        cr_assert_eq(rep[3], 0, "fallback while Redis is up");
        allowed += (int)rep[0];
        if (i == 0)
            cr_assert_eq(rep[1], 4, "remaining after the first");
        if (rep[0] == 0)
            cr_assert(rep[2] > 0 && rep[2] <= 900000, "reset %lld", rep[2]);
    }
    cr_assert_eq(allowed, 5, "the limit did not hold across daemons");
    expect_int(ca, 0, "EXISTS auth:ip1"); /* its own namespace */
    {
        redisReply *r = cmd(ca, "TC.RATELIMIT k 0 1000");
        cr_assert_eq(r->type, REDIS_REPLY_ERROR);
        freeReplyObject(r);
        r = cmd(ca, "TC.RATELIMIT k 5 1000 BOGUS");
        cr_assert_eq(r->type, REDIS_REPLY_ERROR);
        freeReplyObject(r);
        r = cmd(ca, "TC.RATELIMIT k 1 60000 FIXED");
        cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
        cr_assert_eq(r->element[0]->integer, 1);
        freeReplyObject(r);
    }

    tcr_kill(&redis);
    allowed = 0;
    for (int i = 0; i < 8; i++) {
        ratelimit_reply(ca, "auth:ip2", rep);
        cr_assert_eq(rep[3], 1, "not reported as a local decision");
        allowed += (int)rep[0];
    }
    cr_assert_eq(allowed, 5, "the local limit did not hold");
    cr_assert_eq(tcr_restart(&redis), 0);
    cr_assert(tcr_wait(ratelimit_by_redis, ca, DEADLINE_MS),
              "Redis never decided again");
    {
        redisReply *r = cmd(ca, "INFO");
        const char *f = strstr(r->str, "rate_fallbacks:");
        cr_assert_not_null(f, "INFO has no rate_fallbacks");
        cr_assert_geq(atoll(f + strlen("rate_fallbacks:")), 8);
        freeReplyObject(r);
    }
    redisFree(ca);
    redisFree(cb);
}

/* ---- Sentinel (issue 10) ------------------------------------------------- */

static tcr_sentinels topo;

static void topo_fini(void)
{
    tcr_sentinels_stop(&topo);
}

typedef struct set_arg {
    tcd_proc *t;
    int ok;
} set_arg;

/* SET through the daemon answered +OK (a failure is an error reply). */
static int daemon_set_ok(void *p)
{
    set_arg *a = p;
    redisContext *c = connect_to(a->t);
    redisReply *r = c ? redisCommand(c, "SET after failover") : NULL;
    int ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK");
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    a->ok += ok;
    return ok;
}

/* tiercached takes a redis-sentinel:// URL like any other and follows a
 * kill -9 of the master without a restart. */
Test(daemon, follows_a_sentinel_failover, .fini = topo_fini)
{
    tcd_proc *t;
    redisContext *c;
    set_arg a;
    char *s;
    cr_assert_eq(tcr_sentinels_start(&topo, "mymaster", 60000), 0,
                 "sentinel topology did not start");
    /* The later --redis-url wins over start_daemon's own. */
    t = start_daemon("--redis-url", topo.url, NULL);
    c = connect_to(t);
    expect_status(c, "OK", "SET before failover");
    redisFree(c);
    s = tcr_cmd(&topo.master, NULL, "GET", "before", NULL);
    cr_assert(s && !strcmp(s, "failover"), "not on the master: %s", s);
    free(s);
    tcr_kill(&topo.master);
    a.t = t;
    a.ok = 0;
    cr_assert(tcr_wait(daemon_set_ok, &a, 90000),
              "SET through tiercached never succeeded after the failover");
    s = tcr_cmd(&topo.replica, NULL, "GET", "after", NULL);
    cr_assert(s && !strcmp(s, "failover"), "not on the new master: %s", s);
    free(s);
}

/* ---- --compress-min-bytes ---------------------------------------------------- */

/* Values through daemons with compression: smaller in Redis, the same
 * bytes for clients; a daemon without it answers a clear error. */
Test(daemon, compression_is_transparent_between_daemons)
{
    tcd_proc *a = start_daemon("--compress-min-bytes", "256", NULL);
    tcd_proc *b = start_daemon("--compress-min-bytes", "256", NULL);
    tcd_proc *off = start_daemon(NULL);
    redisContext *ca = connect_to(a), *cb = connect_to(b), *co = connect_to(off);
    redisContext *raw = redisConnect("127.0.0.1", redis.port);
    char val[8192];
    redisReply *r;
    size_t n = 0;
    cr_assert(ca && cb && co && raw && !raw->err);
    while (n + 40 < sizeof(val))
        n += (size_t)snprintf(val + n, sizeof(val) - n,
                              "{\"id\":%zu,\"ok\":true,\"tag\":\"x\"},", n);
    r = redisCommand(ca, "SET doc %b", val, n);
    cr_assert_eq(r->type, REDIS_REPLY_STATUS, "%s", r->str);
    freeReplyObject(r);
    r = redisCommand(raw, "STRLEN doc");
    cr_assert_lt(r->integer, (long long)n / 2, "not compressed in Redis");
    freeReplyObject(r);
    r = redisCommand(cb, "GET doc");
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert_eq(r->len, n);
    cr_assert_eq(memcmp(r->str, val, n), 0);
    freeReplyObject(r);
    r = redisCommand(co, "GET doc");
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert_not_null(strstr(r->str, "compress"), "%s", r->str);
    freeReplyObject(r);
    redisFree(ca);
    redisFree(cb);
    redisFree(co);
    redisFree(raw);
}
