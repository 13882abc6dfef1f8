/* The connection layer against real redis-servers: TLS (verification, client
 * certificates, AUTH, timeouts), plain TCP, IPv6 and unix sockets through
 * the same code, and no SIGPIPE when Redis closes on a writer. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "conn.h"
#include "error.h"
#include "l2.h"
#include "redis_fixture.h"
#include "tls.h"

static tcr_server srv;

static void teardown(void)
{
    tcr_stop(&srv);
}

TestSuite(tls, .fini = teardown);

static void start_tls(const char *conf)
{
    cr_assert_eq(tcr_start_tls(&srv, conf), 0, "TLS redis-server did not start");
}

/* A client context; NULL arguments are left out. */
static tc__tls *context(const char *ca_file, const char *ca_dir,
                        const char *cert, const char *key, int insecure)
{
    tc__tls_opts o = {ca_file, ca_dir, cert, key, insecure};
    tc__tls *t = NULL;
    tc_result r = tc__tls_create(&o, &t);
    cr_assert_eq(r, TC_OK, "tc__tls_create: %s", tc_errmsg());
    return t;
}

static tc_result open_on(const char *host, int port, const tc__tls *t,
                         const char *server_name, tc__conn **out)
{
    tc__conn_opts o;
    memset(&o, 0, sizeof(o));
    o.host = host;
    o.port = port;
    o.connect_timeout_ms = 5000;
    o.command_timeout_ms = 5000;
    o.tls = t;
    o.server_name = server_name;
    *out = NULL;
    return tc__conn_open(&o, out);
}

static tc__conn *must_open(const char *host, const tc__tls *t,
                           const char *server_name)
{
    tc__conn *c = NULL;
    tc_result r = open_on(host, srv.port, t, server_name, &c);
    cr_assert_eq(r, TC_OK, "open %s: %s (%s)", host, tc_strerror(r),
                 tc_errmsg());
    return c;
}

/* One command; the reply rendered as a malloc'd string ("(nil)", integers
 * in decimal, errors as "ERR:..."), or NULL with *res on failure. */
static char *cmd(tc__conn *c, tc_result *res, int argc, const char **argv)
{
    redisReply *r = NULL;
    char *out = NULL;
    tc_result rc = tc__conn_command(c, argc, argv, NULL, &r);
    if (res)
        *res = rc;
    if (rc != TC_OK)
        return NULL;
    switch (r->type) {
    case REDIS_REPLY_NIL:
        out = strdup("(nil)");
        break;
    case REDIS_REPLY_INTEGER:
        if (asprintf(&out, "%lld", r->integer) < 0)
            out = NULL;
        break;
    case REDIS_REPLY_ERROR:
        if (asprintf(&out, "ERR:%.*s", (int)r->len, r->str) < 0)
            out = NULL;
        break;
    default:
        out = strndup(r->str ? r->str : "", r->len);
    }
    freeReplyObject(r);
    return out;
}

#define CMD(c, res, ...)                                                     \
    cmd((c), (res), (int)(sizeof((const char *[]){__VA_ARGS__}) /            \
                          sizeof(const char *)),                             \
        (const char *[]){__VA_ARGS__})

static void assert_round_trip(tc__conn *c)
{
    tc_result r;
    char *s = CMD(c, &r, "SET", "tls:k", "hello over the wire");
    cr_assert_str_eq(s ? s : tc_errmsg(), "OK");
    free(s);
    s = CMD(c, &r, "GET", "tls:k");
    cr_assert_str_eq(s ? s : tc_errmsg(), "hello over the wire");
    free(s);
}

static void assert_refused(tc_result r, const char *mention)
{
    cr_assert_neq(r, TC_OK, "connection accepted");
    cr_assert(strstr(tc_errmsg(), mention) != NULL,
              "detail \"%s\" does not mention \"%s\"", tc_errmsg(), mention);
}

Test(tls, verified_connection_round_trips)
{
    tc__tls *t;
    tc__conn *c;
    start_tls(NULL);
    t = context(srv.ca_file, NULL, NULL, NULL, 0);
    /* By IP (checked against the IP SAN) and by DNS name (SAN + SNI). */
    c = must_open("127.0.0.1", t, NULL);
    assert_round_trip(c);
    tc__conn_free(c);
    c = must_open("localhost", t, NULL);
    assert_round_trip(c);
    tc__conn_free(c);
    tc__tls_free(t);
}

Test(tls, ca_directory_verifies)
{
    tc__tls *t;
    tc__conn *c;
    start_tls(NULL);
    t = context(NULL, srv.ca_dir, NULL, NULL, 0);
    c = must_open("127.0.0.1", t, NULL);
    assert_round_trip(c);
    tc__conn_free(c);
    tc__tls_free(t);
}

Test(tls, pipelined_large_values_round_trip)
{
    tc__tls *t;
    tc__conn *c;
    size_t big = 3u << 20; /* several TLS records and socket buffers */
    char *v = malloc(big);
    redisReply *rep[3] = {NULL, NULL, NULL};
    start_tls(NULL);
    t = context(srv.ca_file, NULL, NULL, NULL, 0);
    c = must_open("127.0.0.1", t, NULL);
    for (size_t i = 0; i < big; i++)
        v[i] = (char)('a' + i % 23);
    cr_assert_eq(tc__conn_append(c, 3, (const char *[]){"SET", "big", v},
                                 (size_t[]){3, 3, big}),
                 TC_OK);
    cr_assert_eq(tc__conn_append(c, 2, (const char *[]){"GET", "big"}, NULL),
                 TC_OK);
    cr_assert_eq(tc__conn_append(c, 2, (const char *[]){"STRLEN", "big"},
                                 NULL),
                 TC_OK);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tc__conn_get_reply(c, &rep[i]), TC_OK, "reply %d: %s", i,
                     tc_errmsg());
    cr_assert_eq(rep[0]->type, REDIS_REPLY_STATUS);
    cr_assert_eq(rep[1]->len, big);
    cr_assert_eq(memcmp(rep[1]->str, v, big), 0);
    cr_assert_eq(rep[2]->integer, (long long)big);
    for (int i = 0; i < 3; i++)
        freeReplyObject(rep[i]);
    tc__conn_free(c);
    tc__tls_free(t);
    free(v);
}

Test(tls, wrong_ca_is_refused)
{
    tc__tls *t;
    tc__conn *c;
    tc_result r;
    start_tls(NULL);
    t = context(srv.other_ca_file, NULL, NULL, NULL, 0);
    r = open_on("127.0.0.1", srv.port, t, NULL, &c);
    cr_assert_null(c);
    cr_assert_eq(r, TC_AUTH, "%s", tc_strerror(r));
    assert_refused(r, "certificate verification failed");
    cr_assert(strstr(tc_errmsg(), "127.0.0.1") != NULL, "%s", tc_errmsg());
    tc__tls_free(t);
}

Test(tls, wrong_host_name_is_refused)
{
    tc__tls *t;
    tc__conn *c;
    tc_result r;
    start_tls(NULL);
    t = context(srv.ca_file, NULL, NULL, NULL, 0);
    r = open_on("127.0.0.1", srv.port, t, "redis.example.com", &c);
    cr_assert_null(c);
    cr_assert_eq(r, TC_AUTH, "%s", tc_strerror(r));
    assert_refused(r, "not valid for host name 'redis.example.com'");
    tc__tls_free(t);
}

Test(tls, insecure_skips_verification_only_when_asked)
{
    tc__tls *t;
    tc__conn *c;
    start_tls(NULL);
    t = context(srv.other_ca_file, NULL, NULL, NULL, 1);
    c = must_open("127.0.0.1", t, "redis.example.com");
    assert_round_trip(c);
    tc__conn_free(c);
    tc__tls_free(t);
}

Test(tls, plain_client_on_tls_port_fails_clearly)
{
    tc__conn *c;
    tc_result r;
    char *s;
    start_tls(NULL);
    /* Redis closes on the plain-text command: an error, not a hang. */
    c = must_open("127.0.0.1", NULL, NULL);
    s = CMD(c, &r, "PING");
    cr_assert_null(s, "PING answered in plain text: %s", s);
    cr_assert_eq(r, TC_L2_UNAVAILABLE, "%s: %s", tc_strerror(r), tc_errmsg());
    tc__conn_free(c);
}

/* A tc__config for `srv` from a rediss:// URL, and the options. */
static tc__config config_for(const char *cert, const char *key,
                             const char *password)
{
    tc_options o;
    tc__config cfg;
    tc_result r;
    memset(&o, 0, sizeof(o));
    o.url = srv.url;
    o.ignore_env = TC_YES;
    o.connect_timeout_ms = 5000;
    o.command_timeout_ms = 5000;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 200;
    o.pool_size = 2;
    o.tls_ca_file = srv.ca_file;
    o.tls_cert_file = cert;
    o.tls_key_file = key;
    o.password = password;
    r = tc__config_resolve(&o, &cfg);
    cr_assert_eq(r, TC_OK, "%s", tc_errmsg());
    cr_assert_eq(cfg.tls, 1, "rediss:// did not turn TLS on");
    cr_assert_not_null(cfg.tls_ctx);
    return cfg;
}

Test(tls, client_certificate_required)
{
    tc__config with, without;
    tc__conn *c;
    tc_result r;
    start_tls("tls-auth-clients yes\n");
    with = config_for(srv.client_cert, srv.client_key, NULL);
    c = tc__l2_connect(&with, &r);
    cr_assert_not_null(c, "with a certificate: %s", tc_errmsg());
    assert_round_trip(c);
    tc__conn_free(c);

    without = config_for(NULL, NULL, NULL);
    c = tc__l2_connect(&without, &r);
    cr_assert_null(c, "the server accepted a client without a certificate");
    cr_assert_eq(r, TC_AUTH, "%s: %s", tc_strerror(r), tc_errmsg());
    assert_refused(r, "requires a client certificate");
    tc__config_free(&with);
    tc__config_free(&without);
}

Test(tls, client_key_must_match_certificate)
{
    tc__tls_opts o = {NULL, NULL, NULL, NULL, 0};
    tc__tls *t = NULL;
    char wrong_key[400];
    start_tls(NULL);
    snprintf(wrong_key, sizeof(wrong_key), "%s/ca.key", srv.dir);
    o.ca_file = srv.ca_file;
    o.cert_file = srv.client_cert;
    o.key_file = wrong_key;
    cr_assert_eq(tc__tls_create(&o, &t), TC_BAD_ARGUMENT);
    cr_assert_null(t);
    assert_refused(TC_BAD_ARGUMENT, "mismatch");
    o.key_file = NULL;
    cr_assert_eq(tc__tls_create(&o, &t), TC_BAD_ARGUMENT);
    o.ca_file = "/nonexistent/ca.pem";
    o.cert_file = NULL;
    cr_assert_eq(tc__tls_create(&o, &t), TC_BAD_ARGUMENT);
    assert_refused(TC_BAD_ARGUMENT, "/nonexistent/ca.pem");
}

Test(tls, auth_over_tls)
{
    tc__config good, bad;
    tc__conn *c;
    tc_result r;
    start_tls("requirepass s3cret-tls\n");
    good = config_for(NULL, NULL, "s3cret-tls");
    c = tc__l2_connect(&good, &r);
    cr_assert_not_null(c, "%s", tc_errmsg());
    assert_round_trip(c);
    tc__conn_free(c);
    bad = config_for(NULL, NULL, "wrong-password");
    c = tc__l2_connect(&bad, &r);
    cr_assert_null(c);
    cr_assert_eq(r, TC_AUTH, "%s", tc_strerror(r));
    assert_refused(r, "AUTH");
    cr_assert(strstr(tc_errmsg(), "wrong-password") == NULL,
              "password leaked: %s", tc_errmsg());
    tc__config_free(&good);
    tc__config_free(&bad);
}

static int killed_all(void *arg)
{
    char *s = tcr_cmd(arg, NULL, "CLIENT", "KILL", "TYPE", "normal", NULL);
    int n = s ? atoi(s) : 0;
    free(s);
    return n > 0;
}

Test(tls, l2_pool_over_tls_survives_client_kill)
{
    tc__config cfg;
    tc__l2 *l2 = NULL;
    redisReply *rep[2] = {NULL, NULL};
    tc__cmd cmds[2] = {
        {3, (const char *[]){"SET", "pk", "pv"}, (size_t[]){3, 2, 2}},
        {2, (const char *[]){"GET", "pk"}, (size_t[]){3, 2}}};
    tc_stats st;
    start_tls(NULL);
    cfg = config_for(NULL, NULL, NULL);
    cr_assert_eq(tc__l2_create(&cfg, &l2), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc__l2_run(l2, 2, cmds, rep, 0), TC_OK, "%s", tc_errmsg());
    cr_assert_str_eq(rep[1]->str, "pv");
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    /* The server drops every connection: the pool notices and reconnects
     * (an idle TLS connection that only received session tickets is not
     * mistaken for a dead one; a killed one is). */
    cr_assert(tcr_wait(killed_all, &srv, 10000));
    cr_assert_eq(tc__l2_run(l2, 1, &cmds[1], rep, TC__L2_IDEMPOTENT), TC_OK,
                 "%s", tc_errmsg());
    cr_assert_str_eq(rep[0]->str, "pv");
    freeReplyObject(rep[0]);
    memset(&st, 0, sizeof(st));
    tc__l2_stats(l2, &st);
    cr_assert_eq(st.l2_errors, 0, "a killed idle connection was used");
    tc__l2_destroy(l2);
    tc__config_free(&cfg);
}

static int stale(void *c)
{
    return tc__conn_stale(c);
}

Test(tls, idle_connection_health)
{
    tc__tls *t;
    tc__conn *c;
    char *s;
    start_tls(NULL);
    t = context(srv.ca_file, NULL, NULL, NULL, 0);
    c = must_open("127.0.0.1", t, NULL);
    s = CMD(c, NULL, "PING");
    cr_assert_str_eq(s ? s : tc_errmsg(), "PONG");
    free(s);
    cr_assert_eq(tc__conn_stale(c), 0, "a healthy idle connection is stale");
    cr_assert(tcr_wait(killed_all, &srv, 10000));
    cr_assert(tcr_wait(stale, c, 10000), "a killed connection looks healthy");
    tc__conn_free(c);
    tc__tls_free(t);
}

Test(tls, command_and_handshake_timeouts)
{
    tc__tls *t;
    tc__conn *c;
    tc__conn_opts o;
    tc_result r;
    start_tls(NULL);
    t = context(srv.ca_file, NULL, NULL, NULL, 0);
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.port = srv.port;
    o.connect_timeout_ms = 300;
    o.command_timeout_ms = 300;
    o.tls = t;
    cr_assert_eq(tc__conn_open(&o, &c), TC_OK, "%s", tc_errmsg());
    tcr_pause(&srv);
    cr_assert_null(CMD(c, &r, "PING"));
    cr_assert_eq(r, TC_TIMEOUT, "%s: %s", tc_strerror(r), tc_errmsg());
    tc__conn_free(c);
    /* The kernel accepts the TCP connection; the handshake never ends. */
    r = tc__conn_open(&o, &c);
    cr_assert_eq(r, TC_TIMEOUT, "%s: %s", tc_strerror(r), tc_errmsg());
    assert_refused(r, "handshake");
    tcr_resume(&srv);
    tc__tls_free(t);
}

Test(tls, rediss_url_and_environment)
{
    tc_options o;
    char storage[256];
    tc__config cfg;
    tc__l2 *l2 = NULL;
    redisReply *rep = NULL;
    tc__cmd ping = {1, (const char *[]){"PING"}, (size_t[]){4}};
    start_tls(NULL);
    memset(&o, 0, sizeof(o));
    cr_assert_eq(tc_options_parse_url(&o, srv.url, storage, sizeof(storage)),
                 TC_OK, "%s", tc_errmsg());
    cr_assert_eq(o.tls, TC_YES);
    cr_assert_eq(o.port, srv.port);

    /* REDIS_URL + REDIS_TLS_CA_FILE alone reach a verified server. */
    setenv("REDIS_URL", srv.url, 1);
    setenv("REDIS_TLS_CA_FILE", srv.ca_file, 1);
    memset(&o, 0, sizeof(o));
    cr_assert_eq(tc__config_resolve(&o, &cfg), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(cfg.tls, 1);
    cr_assert_eq(tc__l2_create(&cfg, &l2), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc__l2_run(l2, 1, &ping, &rep, 0), TC_OK, "%s", tc_errmsg());
    cr_assert_str_eq(rep->str, "PONG");
    freeReplyObject(rep);
    tc__l2_destroy(l2);
    tc__config_free(&cfg);

    setenv("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem", 1);
    cr_assert_eq(tc__config_resolve(&o, &cfg), TC_BAD_ARGUMENT);
    assert_refused(TC_BAD_ARGUMENT, "CA file /nonexistent/ca.pem");
    /* TLS explicitly off wins over the URL's scheme. */
    o.tls = TC_NO;
    cr_assert_eq(tc__config_resolve(&o, &cfg), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(cfg.tls, 0);
    cr_assert_null(cfg.tls_ctx);
    tc__config_free(&cfg);
    unsetenv("REDIS_URL");
    unsetenv("REDIS_TLS_CA_FILE");
}

/* The step calls an event loop would make: pipelined commands driven by
 * poll() on the fd, no blocking call. */
Test(tls, event_loop_steps)
{
    enum { N = 200 };
    tc__tls *t;
    tc__conn *c;
    int got = 0, flushed = 0, want = TC__IO_WANT_WRITE;
    start_tls(NULL);
    t = context(srv.ca_file, NULL, NULL, NULL, 0);
    c = must_open("127.0.0.1", t, NULL);
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        cr_assert_eq(tc__conn_append(c, 2, (const char *[]){"ECHO", v}, NULL),
                     TC_OK);
    }
    while (got < N) {
        struct pollfd p = {tc__conn_fd(c),
                           want == TC__IO_WANT_WRITE ? POLLOUT : POLLIN, 0};
        redisReply *r = NULL;
        int rc;
        cr_assert_eq(poll(&p, 1, 10000), 1, "no progress in 10 s");
        if (!flushed) {
            rc = tc__conn_flush_step(c);
            cr_assert_neq(rc, TC__IO_ERROR);
            flushed = rc == 1;
            want = flushed ? TC__IO_WANT_READ : rc;
            if (!flushed)
                continue;
        }
        cr_assert_eq(tc__conn_read_step(c, &want), 1);
        while ((rc = tc__conn_next_reply(c, &r)) == 1) {
            char v[16];
            snprintf(v, sizeof(v), "%d", got++);
            cr_assert_str_eq(r->str, v);
            freeReplyObject(r);
        }
        cr_assert_eq(rc, 0);
    }
    tc__conn_free(c);
    tc__tls_free(t);
}

/* ---- The same layer on plain TCP, IPv6 and unix sockets ---------------- */

Test(tls, plain_tcp_and_unix)
{
    tc__conn *c;
    tc__conn_opts o;
    cr_assert_eq(tcr_start(&srv, NULL), 0);
    c = must_open("127.0.0.1", NULL, NULL);
    assert_round_trip(c);
    tc__conn_free(c);
    c = must_open("localhost", NULL, NULL); /* may try ::1 first */
    assert_round_trip(c);
    tc__conn_free(c);
    memset(&o, 0, sizeof(o));
    o.unix_path = srv.sock;
    o.connect_timeout_ms = o.command_timeout_ms = 5000;
    cr_assert_eq(tc__conn_open(&o, &c), TC_OK, "%s", tc_errmsg());
    assert_round_trip(c);
    tc__conn_free(c);
}

/* 1 when this host has an IPv6 loopback to listen on. */
static int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;
    struct sockaddr_in6 a;
    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

Test(tls, ipv6_plain_and_tls)
{
    tc__tls *t;
    tc__conn *c;
    tc_result r;
    if (!have_ipv6_loopback()) {
        /* Nothing listens on ::1 here: a clear failure, not a hang. */
        r = open_on("::1", 6379, NULL, NULL, &c);
        cr_assert_eq(r, TC_L2_UNAVAILABLE, "%s", tc_strerror(r));
        assert_refused(r, "[::1]:6379");
        return;
    }
    cr_assert_eq(tcr_start(&srv, "bind 127.0.0.1 ::1\n"), 0);
    c = must_open("::1", NULL, NULL);
    assert_round_trip(c);
    tc__conn_free(c);
    tcr_stop(&srv);
    /* TLS over IPv6, verified against the certificate's IP ::1. */
    start_tls("bind 127.0.0.1 ::1\n");
    t = context(srv.ca_file, NULL, NULL, NULL, 0);
    c = must_open("::1", t, NULL);
    assert_round_trip(c);
    tc__conn_free(c);
    tc__tls_free(t);
}

Test(tls, connection_refused_and_timeout_results)
{
    tc__conn *c;
    int port = tcr_free_port();
    tc_result r = open_on("127.0.0.1", port, NULL, NULL, &c);
    cr_assert_eq(r, TC_L2_UNAVAILABLE, "%s", tc_strerror(r));
    assert_refused(r, "refused");
}

/* ---- SIGPIPE ----------------------------------------------------------- */

enum { BIG = 8u << 20 };

/* In a child with SIGPIPE's default action (death): write a value larger
 * than the server accepts, so it closes the connection while we are still
 * writing, then keep writing on the dead connection. Exit 0 when every call
 * returned an error and the process is still alive. */
static int sigpipe_child(const tc__tls *t)
{
    sigset_t none;
    tc__conn *c = NULL;
    char *v = malloc(BIG);
    int failed = 0;
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (!v || open_on("127.0.0.1", srv.port, t, NULL, &c) != TC_OK)
        return 10;
    memset(v, 'x', BIG);
    for (int i = 0; i < 5; i++) {
        redisReply *r = NULL;
        tc_result rc = tc__conn_command(
            c, 3, (const char *[]){"SET", "big", v}, (size_t[]){3, 3, BIG},
            &r);
        if (rc != TC_OK) {
            fprintf(stderr, "write %d: %s: %s\n", i, tc_strerror(rc),
                    tc_errmsg());
            failed++;
        } else if (r->type != REDIS_REPLY_ERROR) {
            return 11; /* the server took a value above its limit */
        }
        if (r)
            freeReplyObject(r);
    }
    tc__conn_free(c);
    free(v);
    return failed ? 0 : 12;
}

/* The same through the public API: tc_set of a value the server refuses. */
static int sigpipe_cache_child(void)
{
    sigset_t none;
    tc_options o = test_opts(&srv);
    tc_cache *c = NULL;
    char *v = malloc(BIG);
    int failed = 0;
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    o.command_timeout_ms = 5000;
    if (!v || tc_cache_create(&o, &c) != TC_OK)
        return 10;
    memset(v, 'x', BIG);
    for (int i = 0; i < 3; i++) {
        tc_result rc = tc_set(c, "big", 3, v, BIG, 0);
        if (rc == TC_OK)
            return 11;
        fprintf(stderr, "tc_set %d: %s: %s\n", i, tc_strerror(rc),
                tc_errmsg());
        failed++;
    }
    tc_cache_destroy(c);
    free(v);
    return failed ? 0 : 12;
}

static void assert_survives(const tc__tls *t, int via_cache)
{
    pid_t pid;
    int st = 0;
    char *s = tcr_cmd(&srv, NULL, "CONFIG", "SET", "proto-max-bulk-len",
                      "1048576", NULL);
    cr_assert_str_eq(s ? s : "(no reply)", "OK");
    free(s);
    fflush(NULL);
    pid = fork();
    if (pid == 0) /* no Criterion call in the child: it would report too */
        _exit(via_cache ? sigpipe_cache_child() : sigpipe_child(t));
    cr_assert_geq(pid, 0);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(!(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE),
              "the writer was killed by SIGPIPE");
    cr_assert(WIFEXITED(st), "the writer died of signal %d", WTERMSIG(st));
    cr_assert_eq(WEXITSTATUS(st), 0, "writer failed (code %d)",
                 WEXITSTATUS(st));
}

Test(tls, no_sigpipe_when_redis_closes_on_a_plain_writer)
{
    cr_assert_eq(tcr_start(&srv, NULL), 0);
    assert_survives(NULL, 0);
}

Test(tls, no_sigpipe_through_the_cache_api)
{
    cr_assert_eq(tcr_start(&srv, NULL), 0);
    assert_survives(NULL, 1);
}

Test(tls, no_sigpipe_when_redis_closes_on_a_tls_writer)
{
    tc__tls *t;
    start_tls(NULL);
    t = context(srv.ca_file, NULL, NULL, NULL, 0);
    assert_survives(t, 0);
    tc__tls_free(t);
}

/* ------------------------------------------------------------------ */
/* The bus over TLS: L1 is served and kept coherent                    */
/* ------------------------------------------------------------------ */

static tc_cache *tls_cache(tc_coherence mode)
{
    tc_options o;
    tc_cache *c = NULL;
    tc_result r;
    memset(&o, 0, sizeof(o));
    o.url = srv.url;
    o.ignore_env = TC_YES;
    o.connect_timeout_ms = 5000;
    o.command_timeout_ms = 5000;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 200;
    o.tls_ca_file = srv.ca_file;
    o.tls_cert_file = srv.client_cert;
    o.tls_key_file = srv.client_key;
    o.coherence = mode;
    o.lease_ms = 2000;
    r = tc_cache_create(&o, &c);
    cr_assert_eq(r, TC_OK, "%s", tc_errmsg());
    return c;
}

static int l1_servable(void *c)
{
    return tc__cache_l1_servable(c);
}

/* A TLS-only Redis that also requires client certificates: both
 * instances' buses come up (L1 is served), a strict write through one is
 * never served stale by the other, and an async write reaches it. */
Test(tls, bus_over_tls_serves_l1_and_keeps_it_coherent)
{
    tc_cache *a, *b;
    members_arg ma = {&srv, NULL, 2000};
    tc_set_opts async = {0, 0, TC_SET_ASYNC};
    holds_arg drop;
    start_tls("tls-auth-clients yes\n");
    a = tls_cache(TC_COHERENCE_STRICT);
    b = tls_cache(TC_COHERENCE_STRICT);
    AWAIT(l1_servable, a, "a's bus never came up over TLS");
    AWAIT(l1_servable, b, "b's bus never came up over TLS");
    AWAIT(members_trusted, &ma, "the members set was never trusted");
    cr_assert_eq(set_str(a, "k", "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(b, "k", "v1");
    cr_assert_eq(set_str(a, "k", "v2", 0), TC_OK, "%s", tc_errmsg());
    cr_assert(!l1_serves(b, "k", "v1"), "b served v1 after a strict write");
    warm(b, "k", "v2");
    cr_assert_eq(tc_set_ex(a, "k", 1, "v3", 2, &async), TC_OK, "%s",
                 tc_errmsg());
    drop = (holds_arg){b, "k", "v2"};
    AWAIT(l1_drops, &drop, "the async invalidation never reached b");
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

static uint64_t generation_before;

static int bus_came_back(void *c)
{
    return tc__cache_bus_generation(c) > generation_before &&
           tc__cache_l1_servable(c);
}

/* The server drops every connection, the bus's included: the bus
 * reconnects over TLS by itself and serves L1 again. */
Test(tls, bus_over_tls_reconnects_after_a_kill)
{
    tc_cache *a;
    start_tls(NULL);
    a = tls_cache(TC_COHERENCE_ASYNC);
    AWAIT(l1_servable, a, "the bus never came up over TLS");
    generation_before = tc__cache_bus_generation(a);
    cr_assert(tcr_wait(killed_all, &srv, AWAIT_MS));
    AWAIT(bus_came_back, a, "the bus did not come back after CLIENT KILL");
    cr_assert_eq(set_str(a, "k", "v", 0), TC_OK, "%s", tc_errmsg());
    warm(a, "k", "v");
    tc_cache_destroy(a);
}
