/*
 * tiercached's pipelined forwarding (issue 9's throughput target): GET
 * misses, SETs and forwarded commands go to Redis from the event loop over
 * the library's asynchronous connections. What can break: reply order when
 * a client mixes L1 hits, misses, pipelined writes and worker commands in
 * one pipeline; requests in flight when Redis dies (each answered once,
 * with an error); a client that leaves with replies in flight (the
 * sanitizer scan at teardown catches a use after free). Real redis-server,
 * real tiercached processes (harness.h).
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
#include "pipelined.h"

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 120);

typedef struct pipelined_at_least {
    tcd_proc *t;
    long long want;
} pipelined_at_least;

static int pipelined_reached(void *arg)
{
    pipelined_at_least *p = arg;
    /* Redis may be hung here: not the tiercache section (harness.h). */
    return info_field_in(p->t, "tiercached", "tiercached_commands_pipelined") >=
           p->want;
}

Test(pipeline, replies_in_order_across_hits_misses_writes_and_workers)
{
    enum { ROUNDS = 60, MAX = ROUNDS * 15 + 8 };
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    want *ws = calloc(MAX, sizeof(*ws));
    long long before;
    int n = 0;
    redisReply *r;
    cr_assert_not_null(c);
    /* A key in L1 (set, then read through the daemon), a list. */
    r = cmd(c, "SET hot h");
    freeReplyObject(r);
    r = cmd(c, "GET hot");
    freeReplyObject(r);
    r = cmd(c, "RPUSH lst x");
    freeReplyObject(r);
    before = info_field(t, "tiercached_commands_pipelined");

    /* One pipeline: every kind of request, each round depending on the
     * one before (a GET after a SET of the same key must see it). */
    for (int i = 0; i < ROUNDS; i++) {
        redisAppendCommand(c, "GET hot"); /* L1 hit, or after a write */
        WANT(REDIS_REPLY_STRING, "h");
        redisAppendCommand(c, "SET k%d v%d", i % 7, i); /* pipelined write */
        WANT(REDIS_REPLY_STATUS, "OK");
        redisAppendCommand(c, "GET k%d", i % 7); /* must see that SET */
        WANT(REDIS_REPLY_STRING, "v%d", i);
        redisAppendCommand(c, "GET miss:%d", i); /* L1 miss, absent */
        WANT(REDIS_REPLY_NIL, "-");
        redisAppendCommand(c, "INCR ctr"); /* forwarded write */
        WANT(REDIS_REPLY_INTEGER, "%d", i + 1);
        redisAppendCommand(c, "GET ctr"); /* forwarded write's key */
        WANT(REDIS_REPLY_STRING, "%d", i + 1);
        redisAppendCommand(c, "HSET hh f%d %d", i, i); /* forwarded write */
        WANT(REDIS_REPLY_INTEGER, "1");
        redisAppendCommand(c, "HLEN hh"); /* forwarded read */
        WANT(REDIS_REPLY_INTEGER, "%d", i + 1);
        redisAppendCommand(c, "GET lst"); /* Redis's own error */
        WANT(REDIS_REPLY_ERROR, "WRONGTYPE");
        redisAppendCommand(c, "SET nx%d a NX", i); /* a worker's */
        WANT(REDIS_REPLY_STATUS, "OK");
        redisAppendCommand(c, "GET nx%d", i); /* after the worker */
        WANT(REDIS_REPLY_STRING, "a");
        redisAppendCommand(c, "SET xx%d a", i); /* pipelined, then ... */
        WANT(REDIS_REPLY_STATUS, "OK");
        redisAppendCommand(c, "SET xx%d b XX", i); /* ... a worker's that */
        WANT(REDIS_REPLY_STATUS, "OK");           /* needs it done */
        redisAppendCommand(c, "GET xx%d", i);
        WANT(REDIS_REPLY_STRING, "b");
        redisAppendCommand(c, "ECHO e%d", i); /* answered on the loop */
        WANT(REDIS_REPLY_STRING, "e%d", i);
    }
    expect_replies(c, ws, 0, n);
    /* The path this checks was taken. */
    cr_assert_geq(info_field(t, "tiercached_commands_pipelined"),
                  before + ROUNDS * 5, "commands were not pipelined");
    free(ws);
    redisFree(c);
}

/* N requests on each of `CLIENTS` connections while Redis is stopped, so
 * that many are in flight on the daemon's Redis connections; then Redis
 * dies. Every request gets exactly one reply (some error), in order, and
 * the connections stay usable. */
Test(pipeline, redis_killed_with_a_deep_pipeline_answers_each_request_once)
{
    enum { CLIENTS = 6, N = 300 };
    tcd_proc *t = start_daemon("--command-timeout-ms", "20000", NULL);
    pipelined_at_least p = {.t = t};
    redisContext *cs[CLIENTS];
    redisReply *r;
    r = NULL;
    for (int k = 0; k < CLIENTS; k++) {
        cs[k] = connect_to(t);
        cr_assert_not_null(cs[k]);
        /* The lanes connect before Redis stops. */
        r = cmd(cs[k], "GET warm:%d", k);
        freeReplyObject(r);
    }
    p.want = info_field(t, "tiercached_commands_pipelined") + CLIENTS * 32;
    tcr_pause(&redis);
    for (int k = 0; k < CLIENTS; k++) {
        for (int i = 0; i < N; i++) {
            switch (i % 3) {
            case 0: redisAppendCommand(cs[k], "GET dk:%d:%d", k, i); break;
            case 1: redisAppendCommand(cs[k], "SET dk:%d:%d v", k, i); break;
            default: redisAppendCommand(cs[k], "INCR dc:%d", k); break;
            }
        }
        redisAppendCommand(cs[k], "ECHO end:%d", k);
        /* Send it all now (the replies are read below). */
        send_all(cs[k]);
    }
    cr_assert(tcr_wait(pipelined_reached, &p, DEADLINE_MS),
              "the requests were not pipelined");
    tcr_kill(&redis);
    tcr_resume(&redis); /* (a killed process: no-op) */
    for (int k = 0; k < CLIENTS; k++) {
        int errors = 0;
        for (int i = 0; i < N; i++) {
            void *rep = NULL;
            cr_assert_eq(redisGetReply(cs[k], &rep), REDIS_OK,
                         "client %d lost reply %d: %s", k, i, cs[k]->errstr);
            r = rep;
            errors += r->type == REDIS_REPLY_ERROR;
            /* An answer that does not match the request would show here:
             * GET nil/error, SET OK/error, INCR integer/error. */
            if (r->type != REDIS_REPLY_ERROR) {
                int ok = i % 3 == 0 ? r->type == REDIS_REPLY_NIL
                       : i % 3 == 1 ? r->type == REDIS_REPLY_STATUS
                                    : r->type == REDIS_REPLY_INTEGER;
                cr_assert(ok, "client %d reply %d: type %d", k, i, r->type);
            }
            freeReplyObject(r);
        }
        cr_assert_gt(errors, 0, "client %d: Redis died, yet no error", k);
        /* The next reply is the ECHO's: nothing answered twice. */
        r = NULL;
        cr_assert_eq(redisGetReply(cs[k], (void **)&r), REDIS_OK);
        cr_assert_eq(r->type, REDIS_REPLY_STRING);
        cr_assert(!strncmp(r->str, "end:", 4), "client %d: '%s' after the "
                  "last reply", k, r->str);
        freeReplyObject(r);
    }
    cr_assert_eq(tcr_restart(&redis), 0, "redis-server did not restart");
    for (int k = 0; k < CLIENTS; k++) {
        r = cmd(cs[k], "ECHO after");
        cr_assert_eq(r->type, REDIS_REPLY_STRING);
        freeReplyObject(r);
        redisFree(cs[k]);
    }
}

/* A client that disconnects with pipelined requests in flight: the
 * daemon answers into nothing, frees the client once they are back, and
 * serves everyone else (ASan's report, if any, fails the teardown). */
Test(pipeline, client_gone_with_replies_in_flight)
{
    enum { N = 400 };
    tcd_proc *t = start_daemon(NULL);
    pipelined_at_least p = {.t = t};
    redisContext *c = connect_to(t), *other;
    redisReply *r;
    cr_assert_not_null(c);
    r = cmd(c, "GET warm");
    freeReplyObject(r);
    p.want = info_field(t, "tiercached_commands_pipelined") + 32;
    tcr_pause(&redis);
    for (int i = 0; i < N; i++) {
        if (i % 2)
            redisAppendCommand(c, "SET gone:%d v", i);
        else
            redisAppendCommand(c, "GET gone:%d", i);
    }
    send_all(c);
    cr_assert(tcr_wait(pipelined_reached, &p, DEADLINE_MS),
              "the requests were not pipelined");
    redisFree(c); /* gone, replies in flight */
    tcr_resume(&redis);
    other = connect_to(t);
    cr_assert_not_null(other);
    r = cmd(other, "SET after v");
    cr_assert_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = cmd(other, "GET after");
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert_str_eq(r->str, "v");
    freeReplyObject(r);
    redisFree(other);
    cr_assert_eq(stop_daemon(t), 0, "tiercached did not exit cleanly");
}

/* EXEC of a plain transaction goes over the pipelined connections (no
 * worker hop): the replies keep their order around it, its writes
 * invalidate L1 (a key read into L1 before is read fresh after), and
 * Redis's answers stand: a transaction of reads, a queue-time error
 * (EXECABORT, answered here), a run-time error inside EXEC. */
/* One transaction (the commands one by one); 1 once an EXEC went on the
 * pipeline (a worker runs them until the command table is read). */
typedef struct warm_tx {
    tcd_proc *t;
    redisContext *c;
} warm_tx;

static int exec_pipelined(void *arg)
{
    warm_tx *w = arg;
    pipelined_at_least p = {w->t, 1};
    freeReplyObject(cmd(w->c, "MULTI"));
    freeReplyObject(cmd(w->c, "INCR tx1:warm"));
    freeReplyObject(cmd(w->c, "EXEC"));
    return pipelined_reached(&p);
}

/* A transaction sent in one write is answered in one send, as Redis
 * answers it: MULTI's +OK and the QUEUEDs wait for EXEC's answer instead
 * of waking the client once before it. Redis is paused while EXEC is on
 * its way, so "before" is seen without a race: nothing may reach the
 * client until Redis answers, then all of it at once. */
Test(pipeline, a_transaction_is_answered_in_one_send)
{
    static const char req[] = "*1\r\n$5\r\nMULTI\r\n"
                              "*2\r\n$4\r\nINCR\r\n$5\r\ntx1:n\r\n"
                              "*1\r\n$4\r\nEXEC\r\n";
    static const char want[] = "+OK\r\n+QUEUED\r\n*1\r\n:1\r\n";
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    warm_tx w = {t, c};
    pipelined_at_least p = {t, 0};
    char buf[256];
    ssize_t got;
    cr_assert_not_null(c);
    cr_assert(tcr_wait(exec_pipelined, &w, DEADLINE_MS),
              "EXEC never went on the pipeline");
    p.want = info_field_in(t, "tiercached", "tiercached_commands_pipelined") + 1;
    tcr_pause(&redis);
    cr_assert_eq(write(c->fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    /* Once EXEC is pipelined, whatever was sent with it has been sent. */
    cr_assert(tcr_wait(pipelined_reached, &p, DEADLINE_MS),
              "EXEC was not pipelined");
    got = recv(c->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    cr_assert(got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
              "%zd bytes sent before EXEC's answer", got);
    tcr_resume(&redis);
    got = recv(c->fd, buf, sizeof(buf) - 1, 0); /* blocks for the send */
    cr_assert_gt(got, 0, "recv: %s", strerror(errno));
    buf[got] = '\0';
    cr_assert_str_eq(buf, want, "the send held %zd bytes", got);
    redisFree(c);
    stop_daemon(t);
}

Test(pipeline, transactions_run_on_the_pipeline)
{
    tcd_proc *t = start_daemon(NULL);
    redisContext *c = connect_to(t);
    enum { MAX = 64 };
    want ws[MAX];
    long long before;
    int n = 0;
    redisReply *r;
    cr_assert_not_null(c);
    r = cmd(c, "SET tx:k 1");
    freeReplyObject(r);
    r = cmd(c, "GET tx:k"); /* now in L1 */
    freeReplyObject(r);
    before = info_field(t, "tiercached_commands_pipelined");

    redisAppendCommand(c, "MULTI");
    WANT(REDIS_REPLY_STATUS, "OK");
    redisAppendCommand(c, "INCR tx:k");
    WANT(REDIS_REPLY_STATUS, "QUEUED");
    redisAppendCommand(c, "HSET tx:h f v");
    WANT(REDIS_REPLY_STATUS, "QUEUED");
    redisAppendCommand(c, "EXEC"); /* [2, 1]: checked below */
    WANT(REDIS_REPLY_ARRAY, "-");
    redisAppendCommand(c, "GET tx:k"); /* not L1's 1 */
    WANT(REDIS_REPLY_STRING, "2");
    redisAppendCommand(c, "MULTI");
    WANT(REDIS_REPLY_STATUS, "OK");
    redisAppendCommand(c, "GET tx:k");
    WANT(REDIS_REPLY_STATUS, "QUEUED");
    redisAppendCommand(c, "EXEC"); /* ["2"] */
    WANT(REDIS_REPLY_ARRAY, "-");
    redisAppendCommand(c, "MULTI");
    WANT(REDIS_REPLY_STATUS, "OK");
    redisAppendCommand(c, "SET tx:s x");
    WANT(REDIS_REPLY_STATUS, "QUEUED");
    redisAppendCommand(c, "INCR tx:s");
    WANT(REDIS_REPLY_STATUS, "QUEUED");
    redisAppendCommand(c, "EXEC"); /* [OK, ERR not an integer] */
    WANT(REDIS_REPLY_ARRAY, "-");
    redisAppendCommand(c, "MULTI");
    WANT(REDIS_REPLY_STATUS, "OK");
    redisAppendCommand(c, "INCR tx:k");
    WANT(REDIS_REPLY_STATUS, "QUEUED");
    redisAppendCommand(c, "INCR");
    WANT(REDIS_REPLY_ERROR, "ERR wrong number of arguments");
    redisAppendCommand(c, "EXEC");
    WANT(REDIS_REPLY_ERROR, "EXECABORT");
    redisAppendCommand(c, "GET tx:s");
    WANT(REDIS_REPLY_STRING, "x");
    redisAppendCommand(c, "GET tx:k"); /* the aborted INCR did not run */
    WANT(REDIS_REPLY_STRING, "2");
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        cr_assert_eq(redisGetReply(c, (void **)&rep), REDIS_OK, "reply %d: %s",
                     i, c->errstr);
        if (ws[i].type == REDIS_REPLY_ARRAY) {
            cr_assert_eq(rep->type, REDIS_REPLY_ARRAY, "reply %d", i);
            if (i == 3) {
                cr_assert_eq(rep->elements, 2);
                cr_assert_eq(rep->element[0]->integer, 2);
                cr_assert_eq(rep->element[1]->integer, 1);
            } else if (i == 7) {
                cr_assert_eq(rep->elements, 1);
                cr_assert_str_eq(rep->element[0]->str, "2");
            } else {
                cr_assert_eq(rep->elements, 2);
                cr_assert_str_eq(rep->element[0]->str, "OK");
                cr_assert_eq(rep->element[1]->type, REDIS_REPLY_ERROR);
            }
        } else {
            expect_reply(rep, &ws[i], i);
        }
        freeReplyObject(rep);
    }
    /* The three EXECs that ran went over the pipeline. */
    cr_assert_geq(info_field(t, "tiercached_commands_pipelined"), before + 3,
                  "EXEC was not pipelined");
    redisFree(c);
}
