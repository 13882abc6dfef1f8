/*
 * tiercached answers as redis-server does (issue 9's remaining
 * differences): the very bytes of a raw session through the daemon and
 * against the suite's redis-server directly, compared. Real redis-server
 * (tests/redis_fixture.h), real tiercached processes on unix sockets in
 * private temp dirs, stopped by pid in the suite's fini.
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

#include "harness.h"

TestSuite(as_redis, .init = setup, .fini = teardown, .timeout = 120);

#define END "PING end\r\n"
#define END_REPLY "$3\r\nend\r\n"

/* Redis sends a nil array (*-1), not a nil bulk ($-1), for these: a
 * client that tells them apart (hiredis 1.x, RESP-exact proxies) sees the
 * difference. Top level and inside EXEC's reply. */
Test(as_redis, nil_arrays_are_sent_as_redis_sends_them)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "LPOP nolist 2\r\nRPOP nolist 2\r\n"
                       "XREAD COUNT 1 STREAMS nostream 0\r\n"
                       "LMPOP 1 nolist LEFT\r\nZMPOP 1 nozset MIN\r\n"
                       "GEOADD g 13.361389 38.115556 palermo\r\n"
                       "GEOPOS g palermo nowhere\r\nGET nokey\r\n"
                       "MULTI\r\nLPOP nolist 2\r\nGET nokey\r\nEXEC\r\n"
                       "DEL g\r\n" END,
                       END_REPLY);
}

/* Unknown subcommands and wrong arities of the CLIENT family answer
 * Redis's own texts; the subcommands tiercached does not answer itself
 * reach Redis. */
Test(as_redis, client_subcommand_errors_are_redis_texts)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "CLIENT xyz\r\nCLIENT GETNAME extra\r\n"
                       "CLIENT SETNAME\r\nCLIENT ID extra\r\n"
                       "CLIENT SETNAME a b\r\nCLIENT NO-EVICT maybe\r\n"
                       "CLIENT KILL ID\r\nCLIENT UNPAUSE\r\n"
                       "CLIENT GETREDIR\r\nCLIENT CACHING yes\r\n"
                       "CLIENT\r\n" END,
                       END_REPLY);
}

/* CLIENT REPLY OFF / SKIP / ON: replies suppressed exactly where Redis
 * suppresses them, on an ordinary (unpinned) client and on a pinned one. */
Test(as_redis, client_reply_off_skip_on)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "CLIENT REPLY OFF\r\nSET r1 1\r\nGET r1\r\n"
                       "INCR r1\r\nCLIENT REPLY ON\r\nGET r1\r\n"
                       "CLIENT REPLY SKIP\r\nGET r1\r\nGET r1\r\n"
                       "CLIENT REPLY SKIP\r\nCLIENT REPLY SKIP\r\n"
                       "PING a\r\nPING b\r\nCLIENT REPLY bogus\r\n"
                       "CLIENT REPLY OFF\r\nNOSUCHCMD\r\n"
                       "CLIENT REPLY ON\r\n"
                       "WATCH r1\r\nCLIENT REPLY OFF\r\nINCR r1\r\n"
                       "CLIENT REPLY ON\r\nGET r1\r\nUNWATCH\r\n"
                       "DEL r1\r\n" END,
                       END_REPLY);
}

/* RESET: out of MULTI, WATCH, SELECT, CLIENT REPLY OFF, pub/sub and
 * MONITOR, the name cleared, +RESET; then an ordinary connection again. */
Test(as_redis, reset_drops_every_connection_state)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "SET rk 0\r\nCLIENT SETNAME n1\r\nMULTI\r\n"
                       "INCR rk\r\nRESET\r\nCLIENT GETNAME\r\nEXEC\r\n"
                       "GET rk\r\nSELECT 3\r\nSET in3 x\r\nRESET\r\n"
                       "GET in3\r\nWATCH rk\r\nRESET\r\nMULTI\r\n"
                       "EXEC\r\nCLIENT REPLY OFF\r\nRESET\r\n"
                       "SUBSCRIBE ch\r\nRESET\r\nGET rk\r\n"
                       "PSUBSCRIBE p*\r\nPING\r\nRESET\r\n"
                       "MONITOR\r\nRESET\r\nINCR rk\r\n"
                       "RESET extra\r\nDEL rk\r\n" END,
                       END_REPLY);
}

/* A RESET leaves no connection of its own behind: the client reads L1
 * again, and a later WATCH pins it anew. */
Test(as_redis, reset_unpins_the_client)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    expect_status(c, "OK", "SELECT 5");
    cr_assert_eq(info_field(t, "tiercached_pinned"), 1);
    expect_status(c, "RESET", "RESET");
    for (int i = 0; i < DEADLINE_MS / 10 &&
                    info_field(t, "tiercached_pinned") != 0; i++)
        tcr_sleep_ms(10);
    cr_assert_eq(info_field(t, "tiercached_pinned"), 0);
    expect_status(c, "OK", "SET after-reset v");
    await_l1_hit(t, c, "after-reset", "v"); /* a RESET client reads L1 */
    expect_status(c, "OK", "WATCH after-reset");
    cr_assert_eq(info_field(t, "tiercached_pinned"), 1);
    redisFree(c);
}

/* RESET deauthenticates, as in Redis with a password. */
Test(as_redis, reset_needs_auth_again)
{
    tcd_proc *t = start_daemon("--requirepass", "pw", NULL);
    redisContext *c = connect_to(t);
    expect_status(c, "OK", "AUTH pw");
    expect_status(c, "OK", "SET k v");
    expect_status(c, "RESET", "RESET");
    expect_status(c, "NOAUTH Authentication required.", "GET k");
    expect_status(c, "OK", "AUTH pw");
    expect_status(c, "v", "GET k");
    redisFree(c);
}

/* In pub/sub mode (RESP2), MULTI, EXEC, DISCARD and WATCH get Redis's own
 * refusal; once unsubscribed from everything, MULTI works again. */
Test(as_redis, transactions_in_pubsub_mode)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "SUBSCRIBE a\r\nMULTI\r\nSET x 1\r\nEXEC\r\n"
                       "DISCARD\r\nWATCH x\r\nUNWATCH\r\n"
                       "UNSUBSCRIBE\r\nMULTI\r\nINCR tx\r\nEXEC\r\n"
                       "DEL tx\r\n" END,
                       END_REPLY);
}

/* CLIENT TRACKING / CACHING run on the client's own connection: the same
 * replies as Redis, and the state lives until RESET. */
Test(as_redis, client_tracking_and_caching)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "CLIENT TRACKING on OPTIN\r\nCLIENT CACHING yes\r\n"
                       "GET tr\r\nCLIENT CACHING no\r\n"
                       "CLIENT TRACKING off\r\nCLIENT CACHING yes\r\n"
                       "CLIENT TRACKING on BCAST PREFIX a\r\n"
                       "CLIENT TRACKING bogus\r\nRESET\r\n"
                       "CLIENT CACHING yes\r\n" END,
                       END_REPLY);
}

/* ---- shared subscriptions (daemon/pubsub.h) -------------------------------- */

/* One pub/sub session on `path` (the daemon or redis-server): A and B
 * subscribe, messages are published on redis-server directly, then A
 * pings, unsubscribes with and without arguments and leaves pub/sub mode,
 * and B unsubscribes. What A and B read, concatenated, in `out`.
 * (UNSUBSCRIBE without arguments answers for one channel only here: with
 * several, redis-server answers in its hash table's order, which a seed
 * picked at its start decides.) */
static void pubsub_session(const char *path, char *out, size_t cap)
{
    static char buf[16384];
    redisContext *pub = redisConnectUnix(redis.sock);
    int a = raw_connect(path), b = raw_connect(path);
    const char a1[] = "SUBSCRIBE c1 c2\r\nPSUBSCRIBE p*\r\nSUBSCRIBE\r\n"
                      "PING sync\r\n";
    const char b1[] = "SUBSCRIBE c1\r\nPING b\r\n";
    const char a2[] = "PING\r\nGET x\r\nNOSUCH\r\nGET\r\nUNSUBSCRIBE c1 zz\r\n"
                      "PING x\r\nSUBSCRIBE c1 c1\r\nSSUBSCRIBE\r\n"
                      "PING a b\r\nEXEC\r\nCLIENT ID\r\nconfig get x\r\n"
                      "UNSUBSCRIBE c2\r\n"
                      "UNSUBSCRIBE\r\nUNSUBSCRIBE\r\n"
                      "PUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\n" END;
    const char b2[] = "UNSUBSCRIBE c1\r\n" END;
    cr_assert(pub && !pub->err);
    out[0] = '\0';
    cr_assert_eq(send(a, a1, sizeof(a1) - 1, 0), (ssize_t)sizeof(a1) - 1);
    read_until(a, buf, sizeof(buf), "$4\r\nsync\r\n");
    strncat(out, buf, cap - strlen(out) - 1);
    cr_assert_eq(send(b, b1, sizeof(b1) - 1, 0), (ssize_t)sizeof(b1) - 1);
    read_until(b, buf, sizeof(buf), "$1\r\nb\r\n");
    strncat(out, "|B|", cap - strlen(out) - 1);
    strncat(out, buf, cap - strlen(out) - 1);
    freeReplyObject(cmd(pub, "PUBLISH c1 hello"));
    freeReplyObject(cmd(pub, "PUBLISH p1 %b", "x\r\ny", (size_t)4));
    freeReplyObject(cmd(pub, "PUBLISH c2 two"));
    freeReplyObject(cmd(pub, "PUBLISH nobody x"));
    cr_assert_eq(send(a, a2, sizeof(a2) - 1, 0), (ssize_t)sizeof(a2) - 1);
    read_until(a, buf, sizeof(buf), END_REPLY);
    strncat(out, "|A|", cap - strlen(out) - 1);
    strncat(out, buf, cap - strlen(out) - 1);
    cr_assert_eq(send(b, b2, sizeof(b2) - 1, 0), (ssize_t)sizeof(b2) - 1);
    read_until(b, buf, sizeof(buf), END_REPLY);
    strncat(out, "|B|", cap - strlen(out) - 1);
    strncat(out, buf, cap - strlen(out) - 1);
    close(a);
    close(b);
    redisFree(pub);
}

/* Two clients of one daemon share its upstream subscription: each gets the
 * very bytes redis-server sends it (confirmations with its own count,
 * message and pmessage frames, PING in pub/sub mode, refusals, UNSUBSCRIBE
 * with and without arguments), and Redis sees one subscriber. */
Test(as_redis, shared_subscribers_get_redis_bytes)
{
    static char via[32768], direct[32768], ea[65536], eb[65536];
    tcd_proc *t = start_daemon(NULL);
    pubsub_session(t->sock, via, sizeof(via));
    pubsub_session(redis.sock, direct, sizeof(direct));
    cr_assert(strstr(direct, "pmessage"), "redis-server: %s",
              escaped(direct, eb, sizeof(eb)));
    if (strcmp(via, direct) != 0) {
        size_t i = 0;
        while (via[i] && via[i] == direct[i])
            i++;
        i = i > 100 ? i - 100 : 0;
        cr_assert_fail("differ from byte %zu:\ntiercached: %s\n"
                       "redis-server: %s", i, escaped(via + i, ea, 600),
                       escaped(direct + i, eb, 600));
    }
}

/* Wait until daemon `t` has counted `n` more commands than `before` (an
 * INFO it answered earlier), the INFO that reads the count included: it
 * has taken what a client sent. */
static void await_commands(tcd_proc *t, long long before, long long n)
{
    int i;
    for (i = 0; i < DEADLINE_MS / 10 &&
                info_field_in(t, "tiercached", "tiercached_commands") <
                    before + n;
         i++)
        tcr_sleep_ms(10);
    cr_assert_lt(i, DEADLINE_MS / 10, "the daemon never took the commands");
}

/* A daemon started with the test hook TIERCACHED_TEST_HOLD_PUSHES=<h>-hold
 * (daemon/pubsub.c): it holds the pushes it reads from one "<h>-hold"
 * message to the next. */
static tcd_proc *start_holding_daemon(const char *h)
{
    char name[64];
    snprintf(name, sizeof(name), "%s-hold", h);
    cr_assert_eq(setenv("TIERCACHED_TEST_HOLD_PUSHES", name, 1), 0);
    return start_daemon(NULL);
}

/* One client subscribes (`sub`, ending with PING sync), a message is
 * published on "<h>-c" or a channel its pattern matches (PUBLISH answers
 * 1: the daemon's upstream subscriber has it), then the client sends
 * `leave`. Through the test hook TIERCACHED_TEST_HOLD_PUSHES
 * (daemon/pubsub.c), the daemon holds its pushes from the first
 * "<h>-hold" message to the next one, and the case publishes that one
 * only once the daemon has counted `leave`: the daemon sees the client
 * leave before it sees the message, every time. What the client reads
 * until its PING end is answered must be `want`, what redis-server sends:
 * a message published before the client left reaches it, before the
 * confirmation. The second "<h>-hold" message is taken out first: it was
 * published while the client's `leave` was on its way (its reply not
 * read), so it may come before the confirmation (through the daemon, when
 * the PING it sends upstream for `leave` reaches Redis after it) or after
 * it (from redis-server), or, after RESET, not at all. */
static void leave_after_a_publish(const char *h, const char *sub,
                                  const char *publish, const char *leave,
                                  const char *want)
{
    static char buf[4096], ea[8192], eb[8192];
    char hold2[64], *at;
    redisContext *pub = redisConnectUnix(redis.sock);
    tcd_proc *t;
    long long before;
    int a;
    cr_assert(pub && !pub->err);
    t = start_holding_daemon(h);
    a = raw_connect(t->sock);
    cr_assert_eq(send(a, sub, strlen(sub), 0), (ssize_t)strlen(sub));
    read_until(a, buf, sizeof(buf), "$4\r\nsync\r\n");
    cr_assert(strstr(buf, "$4\r\nsync\r\n"), "subscribed: %s",
              escaped(buf, ea, sizeof(ea)));
    expect_int(pub, 1, "PUBLISH %s-hold 1", h); /* held from here */
    expect_int(pub, 1, "PUBLISH %s two", publish);
    before = info_field_in(t, "tiercached", "tiercached_commands");
    cr_assert_eq(send(a, leave, strlen(leave), 0), (ssize_t)strlen(leave));
    await_commands(t, before, 2); /* `leave` and the INFO */
    expect_int(pub, 1, "PUBLISH %s-hold 2", h); /* handed over */
    cr_assert_eq(send(a, "PING end\r\n", 10, 0), 10);
    read_until(a, buf, sizeof(buf), "$3\r\nend\r\n");
    close(a);
    redisFree(pub);
    snprintf(hold2, sizeof(hold2),
             "*3\r\n$7\r\nmessage\r\n$7\r\n%s-hold\r\n$1\r\n2\r\n", h);
    if ((at = strstr(buf, hold2)))
        memmove(at, at + strlen(hold2), strlen(at + strlen(hold2)) + 1);
    cr_assert_str_eq(buf, want, "\ntiercached:   %s\nredis-server: %s",
                     escaped(buf, ea, sizeof(ea)),
                     escaped(want, eb, sizeof(eb)));
}

#define HOLD1(h) "*3\r\n$7\r\nmessage\r\n$7\r\n" h "-hold\r\n$1\r\n1\r\n"
#define END_PUBSUB "*2\r\n$4\r\npong\r\n$3\r\nend\r\n"

Test(as_redis, unsubscribe_gets_what_was_published_before_it)
{
    leave_after_a_publish("ua", "SUBSCRIBE ua-hold ua-c\r\nPING sync\r\n",
                          "ua-c", "UNSUBSCRIBE ua-c\r\n",
                          HOLD1("ua")
                          "*3\r\n$7\r\nmessage\r\n$4\r\nua-c\r\n$3\r\ntwo\r\n"
                          "*3\r\n$11\r\nunsubscribe\r\n$4\r\nua-c\r\n:1\r\n"
                          END_PUBSUB);
}

Test(as_redis, punsubscribe_gets_what_was_published_before_it)
{
    leave_after_a_publish("ub", "SUBSCRIBE ub-hold\r\nPSUBSCRIBE ub-p*\r\n"
                                "PING sync\r\n",
                          "ub-pc", "PUNSUBSCRIBE\r\n",
                          HOLD1("ub")
                          "*4\r\n$8\r\npmessage\r\n$5\r\nub-p*\r\n"
                          "$5\r\nub-pc\r\n$3\r\ntwo\r\n"
                          "*3\r\n$12\r\npunsubscribe\r\n$5\r\nub-p*\r\n:1\r\n"
                          END_PUBSUB);
}

/* After RESET the client is out of pub/sub mode: PING answers a bulk. */
Test(as_redis, reset_gets_what_was_published_before_it)
{
    leave_after_a_publish("uc", "SUBSCRIBE uc-hold uc-c\r\nPING sync\r\n",
                          "uc-c", "RESET\r\n",
                          HOLD1("uc")
                          "*3\r\n$7\r\nmessage\r\n$4\r\nuc-c\r\n$3\r\ntwo\r\n"
                          "+RESET\r\n$3\r\nend\r\n");
}

/* Client b, in pub/sub mode, sends `later` (a SUBSCRIBE of "ud-c", which
 * client a holds, and a PING end) after a message on "ud-c" was published
 * (PUBLISH answered 1); before that message, with `a_first`, client a
 * subscribed to "ud-x" (Redis counts it: its confirmation comes before the
 * message). redis-server never sends b a message published before its
 * SUBSCRIBE; neither may the daemon, although the channel's upstream
 * subscription is active and the message is read after b's SUBSCRIBE:
 * the daemon takes the clients' commands while what Redis sends is held
 * (see leave_after_a_publish), every time. b must read `want`. */
static void join_after_a_publish(int a_first, const char *later,
                                 const char *want)
{
    static char buf[4096], ea[8192], eb[8192];
    const char a1[] = "SUBSCRIBE ud-hold ud-c\r\nPING sync\r\n";
    const char b1[] = "SUBSCRIBE ud-b\r\nPING sync\r\n";
    redisContext *pub = redisConnectUnix(redis.sock);
    tcd_proc *t = start_holding_daemon("ud");
    int a = raw_connect(t->sock), b = raw_connect(t->sock), n = 1;
    long long before;
    cr_assert(pub && !pub->err);
    cr_assert_eq(send(a, a1, sizeof(a1) - 1, 0), (ssize_t)sizeof(a1) - 1);
    read_until(a, buf, sizeof(buf), "$4\r\nsync\r\n");
    cr_assert_eq(send(b, b1, sizeof(b1) - 1, 0), (ssize_t)sizeof(b1) - 1);
    read_until(b, buf, sizeof(buf), "$4\r\nsync\r\n");
    cr_assert(strstr(buf, "$4\r\nsync\r\n"), "b: %s",
              escaped(buf, ea, sizeof(ea)));
    expect_int(pub, 1, "PUBLISH ud-hold 1"); /* held from here */
    if (a_first) {
        int i = 0;
        redisReply *r;
        cr_assert_eq(send(a, "SUBSCRIBE ud-x\r\n", 16, 0), 16);
        for (;; i++) { /* the daemon's SUBSCRIBE reached Redis */
            r = cmd(pub, "PUBSUB NUMSUB ud-x");
            if (r->element[1]->integer == 1 || i == DEADLINE_MS / 10)
                break;
            freeReplyObject(r);
            tcr_sleep_ms(10);
        }
        cr_assert_eq(r->element[1]->integer, 1, "ud-x never subscribed");
        freeReplyObject(r);
    }
    expect_int(pub, 1, "PUBLISH ud-c early");
    before = info_field_in(t, "tiercached", "tiercached_commands");
    cr_assert_eq(send(b, later, strlen(later), 0), (ssize_t)strlen(later));
    for (const char *p = later; (p = strstr(p, "\r\n")); p += 2)
        n++; /* its commands and the INFO */
    await_commands(t, before, n);
    expect_int(pub, 1, "PUBLISH ud-hold 2"); /* handed over */
    read_until(b, buf, sizeof(buf), "$3\r\nend\r\n");
    close(a);
    close(b);
    redisFree(pub);
    cr_assert_str_eq(buf, want, "\ntiercached:   %s\nredis-server: %s",
                     escaped(buf, ea, sizeof(ea)),
                     escaped(want, eb, sizeof(eb)));
}

#define UD_JOINED                                                             \
    "*3\r\n$9\r\nsubscribe\r\n$4\r\nud-c\r\n:2\r\n"                           \
    "*2\r\n$4\r\npong\r\n$3\r\nend\r\n"

/* Client a's SUBSCRIBE, confirmed upstream before the message was
 * published, comes back before it: that must not make b's live. */
Test(as_redis, subscribe_gets_no_message_published_before_it)
{
    join_after_a_publish(1, "SUBSCRIBE ud-c\r\nPING end\r\n", UD_JOINED);
}

/* Behind b's own PING still waiting for its pong: the message would come
 * before the confirmation. */
Test(as_redis, subscribe_behind_a_ping_gets_no_message_published_before_it)
{
    join_after_a_publish(0, "PING x\r\nSUBSCRIBE ud-c\r\nPING end\r\n",
                         "*2\r\n$4\r\npong\r\n$1\r\nx\r\n" UD_JOINED);
}

/* Many local subscribers of one channel: Redis counts one subscriber (the
 * daemon's), and every one of them gets each message. */
Test(as_redis, one_upstream_subscriber_for_many_local_ones)
{
    enum { N = 20 };
    tcd_proc *t = start_daemon(NULL);
    redisContext *s[N], *pub = redisConnectUnix(redis.sock);
    redisReply *r;
    for (int i = 0; i < N; i++) {
        s[i] = connect_to(t);
        r = cmd(s[i], "SUBSCRIBE fan");
        cr_assert_eq(r->element[2]->integer, 1);
        freeReplyObject(r);
    }
    r = cmd(pub, "PUBSUB NUMSUB fan");
    cr_assert_eq(r->element[1]->integer, 1, "Redis counts %lld subscribers",
                 r->element[1]->integer);
    freeReplyObject(r);
    expect_int(pub, 1, "PUBLISH fan hi");
    for (int i = 0; i < N; i++) {
        cr_assert_eq(redisGetReply(s[i], (void **)&r), REDIS_OK);
        cr_assert_str_eq(r->element[2]->str, "hi");
        freeReplyObject(r);
        redisFree(s[i]);
    }
    for (int i = 0; i < DEADLINE_MS / 10; i++) { /* the last one left */
        r = cmd(pub, "PUBSUB NUMSUB fan");
        if (r->element[1]->integer == 0) {
            freeReplyObject(r);
            break;
        }
        freeReplyObject(r);
        tcr_sleep_ms(10);
    }
    r = cmd(pub, "PUBSUB NUMSUB fan");
    cr_assert_eq(r->element[1]->integer, 0, "upstream never unsubscribed");
    freeReplyObject(r);
    redisFree(pub);
}

/* SELECT queued inside MULTI runs at EXEC, as in Redis: the commands after
 * it in the transaction run in that database, and the connection stays
 * there afterwards. Errors (not an integer, out of range) are elements of
 * EXEC's reply; SELECT of the database the connection is in is an OK. */
Test(as_redis, select_inside_multi)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "SET k0 zero\r\nMULTI\r\nSELECT notanumber\r\n"
                       "SELECT 0\r\nGET k0\r\nEXEC\r\n"
                       "MULTI\r\nSELECT 99\r\nGET k0\r\nSELECT 2\r\n"
                       "SET k2 two\r\nGET k2\r\nGET k0\r\nEXEC\r\n"
                       "GET k2\r\nGET k0\r\nMULTI\r\nSELECT 0\r\nGET k2\r\n"
                       "GET k0\r\nEXEC\r\nGET k0\r\nSELECT 2\r\nDEL k2\r\n"
                       "SELECT 0\r\nDEL k0\r\n" END,
                       END_REPLY);
}

/* The connection commands tiercached answers itself (CLIENT SETNAME,
 * GETNAME, AUTH, ...) queue inside MULTI and run, in order, at EXEC. */
Test(as_redis, client_commands_inside_multi)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "MULTI\r\nCLIENT SETNAME txname\r\nCLIENT GETNAME\r\n"
                       "SET a 1\r\nECHO hi\r\nAUTH x\r\nCLIENT GETNAME\r\n"
                       "SELECT 0\r\nINCR a\r\nEXEC\r\nCLIENT GETNAME\r\n"
                       "MULTI\r\nCLIENT SETNAME\r\nSET a 2\r\nEXEC\r\n"
                       "GET a\r\nCLIENT GETNAME\r\nDEL a\r\n" END,
                       END_REPLY);
}

/* A WATCHing client (its own connection) selects inside MULTI too, and a
 * WATCH that aborts the transaction leaves the connection where it was,
 * and its name: nothing queued ran, the daemon's own commands included. */
Test(as_redis, select_inside_multi_with_watch)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "WATCH w\r\nMULTI\r\nSELECT 3\r\nSET w3 x\r\nEXEC\r\n"
                       "GET w3\r\nDEL w3\r\nSELECT 0\r\nWATCH w\r\nSET w 1\r\n"
                       "MULTI\r\nSELECT 4\r\nSET w4 y\r\nEXEC\r\nGET w4\r\n"
                       "WATCH w\r\nMULTI\r\nCLIENT GETNAME\r\n"
                       "CLIENT SETNAME wn\r\nEXEC\r\nCLIENT GETNAME\r\n"
                       "MULTI\r\nUNWATCH\r\nSELECT 0\r\nEXEC\r\n"
                       "WATCH w\r\nSET w 2\r\nMULTI\r\nSELECT 5\r\n"
                       "CLIENT SETNAME aborted\r\nSET w5 z\r\nEXEC\r\n"
                       "CLIENT GETNAME\r\nGET w5\r\nWATCH w\r\nSET w 3\r\n"
                       "MULTI\r\nCLIENT SETNAME aborted2\r\nEXEC\r\n"
                       "CLIENT GETNAME\r\nDEL w\r\n" END,
                       END_REPLY);
}

/* A transaction that selects the cache's database from another one writes
 * keys that other clients read from L1: they are invalidated with it. */
Test(as_redis, write_after_select_inside_multi_is_invalidated)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *a = connect_to(t), *b = connect_to(t);
    expect_status(a, "OK", "SET sel-k old");
    expect_status(a, "old", "GET sel-k");
    expect_status(a, "old", "GET sel-k"); /* L1 holds it */
    expect_status(b, "OK", "SELECT 3");
    expect_status(b, "OK", "MULTI");
    expect_status(b, "QUEUED", "SELECT 0");
    expect_status(b, "QUEUED", "SET sel-k new");
    freeReplyObject(cmd(b, "EXEC"));
    expect_status(a, "new", "GET sel-k");
    /* and from the cache's database to another one: only what ran in the
     * cache's database is the cache's */
    expect_status(a, "new", "GET sel-k");
    expect_status(b, "OK", "MULTI");
    expect_status(b, "QUEUED", "SET sel-k newer");
    expect_status(b, "QUEUED", "SELECT 5");
    expect_status(b, "QUEUED", "SET sel-k other");
    freeReplyObject(cmd(b, "EXEC"));
    expect_status(a, "newer", "GET sel-k");
    expect_status(b, "other", "GET sel-k");
    expect_int(b, 1, "DEL sel-k");
    /* tiercache's own keys (stamps) stayed in the cache's database */
    expect_int(b, 0, "DBSIZE");
    expect_int(a, 1, "DEL sel-k");
    redisFree(a);
    redisFree(b);
}

/* Writes between WATCH and EXEC run, with their invalidation, in one
 * script: replies and errors are Redis's own, nil arrays stay nil arrays,
 * and a write still dirties the client's own watched keys (the EXEC after
 * it answers nil), while a failed write does not. */
Test(as_redis, writes_while_watching)
{
    tcd_proc *t = start_daemon(NULL);
    expect_redis_bytes(t,
                       "SET wk 1\r\nSET ws str\r\nWATCH wk ws\r\nSET wk 2\r\n"
                       "INCR ws\r\nLPUSH ws a\r\nSET ws x EX -5\r\n"
                       "LPOP wl 2\r\nRPOP wl 2\r\nLMPOP 1 wl LEFT\r\n"
                       "ZMPOP 1 wz MIN\r\nRPUSH wl a b c\r\nLPOP wl 2\r\n"
                       "INCRBYFLOAT wf 1.5\r\nSET wk 3 GET\r\n"
                       "HSET wh f v\r\nHGETALL wh\r\nMULTI\r\nGET wk\r\n"
                       "EXEC\r\nWATCH ws\r\nINCR ws\r\nSET ws y EX -1\r\n"
                       "MULTI\r\nGET ws\r\nEXEC\r\nGET wk\r\n"
                       "DEL wk ws wl wf wh\r\n" END,
                       END_REPLY);
}
