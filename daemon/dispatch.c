#include "dispatch.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "cmd_impl.h"
#include "log.h"
#include "pin.h"
#include "pipeline.h"
#include "pubsub.h"
#include "workers.h"

static tcd_job *new_slot(tcd_client *cl)
{
    tcd_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->client = cl;
    j->srv = cl->srv;
    return j;
}

static void append_slot(tcd_client *cl, tcd_job *j)
{
    tcd_client_charge(cl, j);
    if (cl->tail)
        cl->tail->next = j;
    else
        cl->head = j;
    cl->tail = j;
    cl->queued++;
}

void tcd_dispatch_append_slot(tcd_client *cl, tcd_job *j)
{
    append_slot(cl, j);
}

void tcd_dispatch_run(tcd_job *job)
{
    if (job->batch)
        tcd_multi_run(job->srv, job->batch, job->nbatch, job->txn_local,
                      &job->out);
    else
        job->cmd->work(job->srv, job->req, &job->out);
}

/* A browser's request to the RESP port: "POST / HTTP/1.1" or a "Host:"
 * header line read as an inline command. Any web page can make a local
 * browser send one (cross-protocol scripting), so, as redis-server does,
 * the connection is dropped before anything in it runs. */
static int is_http(const tcd_req *req)
{
    return (req->argl[0] == 4 && !strncasecmp(req->argv[0], "post", 4)) ||
           (req->argl[0] == 5 && !strncasecmp(req->argv[0], "host:", 5));
}

static void refuse_http(tcd_client *cl)
{
    static tcd_log_limit http_attacks;
    tcd_log_limited(&http_attacks, 60000, TC_LOG_WARN,
                    "possible security attack: client %llu sent an HTTP "
                    "request (POST or Host:) to the Redis port; connection "
                    "dropped", (unsigned long long)cl->id);
    TCD_COUNT(cl->srv, protocol_errors, 1);
    cl->closing = 1;
    tcd_buf_consume(&cl->in, tcd_buf_pending(&cl->in)); /* nor the rest */
    tcd_client_set_reading(cl, 0);
}

/* ---- pinned clients (pin.h) --------------------------------------------- */

enum { ROUTE_NONE = 0, ROUTE_PIN = 1, ROUTE_ANSWERED = 2 };

static int is(const tcd_req *r, const char *word)
{
    return r->argl[0] == strlen(word) && !strcasecmp(r->argv[0], word);
}

/* A command that may wait for data. XREAD and XREADGROUP only with BLOCK
 * (Redis flags them blocking either way). */
static int blocks(tcd_server *srv, const tcd_req *r)
{
    if (is(r, "xread") || is(r, "xreadgroup")) {
        for (int i = 1; i < r->argc; i++) {
            if (r->argl[i] == 7 && !strcasecmp(r->argv[i], "streams"))
                return 0;
            if (r->argl[i] == 5 && !strcasecmp(r->argv[i], "block"))
                return 1;
        }
        return 0;
    }
    return tc_command_is_blocking(srv->cache, r->argc,
                                  (const char *const *)r->argv, r->argl);
}

int tcd_dispatch_pin(tcd_client *cl, const tcd_req *why, tcd_buf *out)
{
    tcd_server *srv = cl->srv;
    if (cl->was_pinned || !(cl->pin = tcd_pin_start(cl))) {
        TCD_COUNT(srv, pinned_refused, 1);
        tcd_reply_errorf(out, "ERR tiercached: %.32s needs a Redis "
                              "connection of its own, and --max-pinned "
                              "(%u) clients hold one already",
                         why->argv[0], srv->cfg->max_pinned);
        return -1;
    }
    cl->was_pinned = 1;
    tcd_debug("client %llu pinned by %.32s", (unsigned long long)cl->id,
              why->argv[0]);
    return 0;
}

/* Does the request need, or go over, the client's own Redis connection?
 * WATCH, SELECT of a database other than the cache's, (P|S)SUBSCRIBE,
 * MONITOR and blocking commands pin the client; once pinned, every command
 * that Redis answers goes over its connection, in order (L1 is not used:
 * the client may be in another database). The daemon's own commands
 * (MULTI EXEC DISCARD QUIT AUTH HELLO ECHO CLIENT INFO TC.INVALIDATE) stay
 * here, except in pub/sub or MONITOR mode, where Redis answers them. */
static int route(tcd_client *cl, const tcd_cmd *cmd, tcd_req *req,
                 tcd_buf *out)
{
    tcd_server *srv = cl->srv;
    int want = 0, stream = 0;
    if (is(req, "watch")) {
        want = 1;
    } else if (cmd && (cmd->flags & TCD_CMD_TXN)) {
        /* MULTI EXEC DISCARD QUIT RESET: here, but in pub/sub or MONITOR
         * mode Redis answers MULTI EXEC DISCARD (pin.c), and nothing more
         * is parsed until the pin says whether MULTI began one here. */
        if (!cl->pin_streaming || !(is(req, "multi") || is(req, "exec") ||
                                    is(req, "discard")))
            return ROUTE_NONE;
        cl->pin_hold = is(req, "multi");
        return ROUTE_PIN;
    } else if (cmd && cmd->loop == tcd_cmd_client && tcd_client_pins(req)) {
        want = 1; /* CLIENT TRACKING, CACHING, NO-EVICT, NO-TOUCH */
    } else if (is(req, "unwatch") && !cl->pin) {
        tcd_reply_status(out, "OK"); /* nothing is watched */
        return ROUTE_ANSWERED;
    } else if (is(req, "select") && !cl->pin) {
        long long db;
        if (req->argc != 2 || tcd_arg_ll(req, 1, &db) != 0 || db < 0 ||
            db > INT_MAX)
            return ROUTE_NONE; /* the local SELECT answers the error */
        if (db == tc_cache_db(srv->cache)) {
            tcd_reply_status(out, "OK");
            return ROUTE_ANSWERED;
        }
        want = 1;
    } else if (is(req, "subscribe") || is(req, "psubscribe") ||
               is(req, "ssubscribe") || is(req, "monitor")) {
        want = stream = 1;
    } else if (!cmd && !cl->pin && !cl->was_pinned && blocks(srv, req)) {
        /* (the daemon's own table has no blocking command) */
        want = 1;
    }
    if (want && !cl->pin && tcd_dispatch_pin(cl, req, out) != 0)
        return ROUTE_ANSWERED;
    if (stream)
        cl->pin_streaming = 1;
    if (cmd && cmd->loop == tcd_cmd_client && !tcd_client_local(req))
        return ROUTE_PIN; /* Redis answers (CLIENT LIST, KILL, ...) */
    if (!cl->pin)
        return ROUTE_NONE;
    if (cl->pin_streaming || !cmd || want || is(req, "select"))
        return ROUTE_PIN;
    if (cmd->work && strcmp(cmd->name, "info") != 0 &&
        strcmp(cmd->name, "tc.invalidate") != 0)
        return ROUTE_PIN;
    return ROUTE_NONE;
}

/* Run one request. Takes ownership of `req`. */
static void dispatch(tcd_client *cl, tcd_req *req)
{
    tcd_server *srv = cl->srv;
    const tcd_cmd *cmd = tcd_cmd_lookup(req->argv[0], req->argl[0]);
    tcd_job *slot = NULL;
    tcd_buf *out = &cl->out;
    int rc = TCD_DONE, routed = ROUTE_NONE, quiet, pubsub;
    const char *pw = srv->cfg->password;

    if (is_http(req)) {
        tcd_req_free(req);
        refuse_http(cl);
        return;
    }
    TCD_COUNT(srv, commands, 1);
    quiet = tcd_client_reply_quiet(cl, req);
    /* Before the slot is chosen: a RESET that leaves subscriptions makes
     * a reply of its own pending, ahead of RESET's (pubsub.h). */
    pubsub = !cl->multi && !(pw && *pw && !cl->authed) &&
             tcd_pubsub_takes(cl, req);
    if (cl->head || quiet) { /* replies are pending ahead of this one, or
                                this one is not sent: queue it */
        slot = new_slot(cl);
        if (!slot) {
            tcd_req_free(req);
            cl->out.oom = 1;
            cl->closing = 1;
            return;
        }
        slot->done = 1;
        slot->quiet = quiet;
        out = &slot->out;
    }
    if (pubsub) { /* shared subscriptions */
        TCD_COUNT(srv, commands_in_loop, 1);
        tcd_pubsub_command(cl, req, slot);
        tcd_req_free(req);
        return;
    }
    if (!cl->multi && !(pw && *pw && !cl->authed))
        routed = route(cl, cmd, req, out);
    if (routed == ROUTE_PIN) {
        cmd = &tcd_cmd_forward;
        rc = TCD_DEFER;
    } else if (routed == ROUTE_ANSWERED) {
        rc = TCD_DONE;
    } else if (cl->multi && !(cmd && (cmd->flags & TCD_CMD_TXN))) {
        tcd_multi_queue(cl, req, out); /* takes `req` */
        req = NULL;
    } else if (!cmd) {
        /* Not answered here: Redis answers it (unknown commands too). */
        cmd = &tcd_cmd_forward;
        rc = pw && *pw && !cl->authed ? TCD_DONE : TCD_DEFER;
        if (rc == TCD_DONE) {
            TCD_COUNT(srv, commands_rejected, 1);
            tcd_reply_error(out, "NOAUTH Authentication required.");
        }
    } else if (pw && *pw && !cl->authed && !(cmd->flags & TCD_CMD_NOAUTH)) {
        TCD_COUNT(srv, commands_rejected, 1);
        tcd_reply_error(out, "NOAUTH Authentication required.");
    } else if (!tcd_cmd_check_arity(cmd, req, out) ||
               !tcd_cmd_check_keys(cmd, req, srv->cfg->max_keys, out)) {
        TCD_COUNT(srv, commands_rejected, 1);
    } else if (cmd->loop &&
               ((cmd->flags & TCD_CMD_TXN) ||
                !(cmd->work &&
                  (cl->inflight || cl->ainflight || cl->wait_head)))) {
        /* With an earlier command of this client still at a worker or in
         * the pipeline, anything that touches the cache waits its turn: a
         * GET after a SET in the same pipeline must see the SET. */
        rc = cmd->loop(cl, req, out);
    } else {
        rc = TCD_DEFER;
    }

    if (rc == TCD_DEFER) {
        if (!slot)
            slot = new_slot(cl);
        if (!slot) {
            tcd_req_free(req);
            cl->out.oom = 1;
            cl->closing = 1;
            return;
        }
        slot->done = 0;
        slot->cmd = cmd;
        slot->req = req;
        slot->batch = cl->exec_batch; /* EXEC's transaction, else NULL */
        slot->nbatch = cl->exec_n;
        slot->txn_local = cl->exec_local;
        cl->exec_local = NULL;
        slot->unwatch_reply = cl->unwatch_reply;
        cl->exec_batch = NULL;
        cl->exec_n = 0;
        cl->unwatch_reply = NULL;
        append_slot(cl, slot);
        TCD_COUNT(srv, commands_deferred, 1);
        slot->qnext = NULL;
        if (cl->wait_tail)
            cl->wait_tail->qnext = slot;
        else
            cl->wait_head = slot;
        cl->wait_tail = slot;
        tcd_dispatch_next(cl);
        return;
    }
    TCD_COUNT(srv, commands_in_loop, 1);
    tcd_req_free(req);
    if (slot) {
        slot->close_after = rc == TCD_CLOSE;
        append_slot(cl, slot);
    }
    if (rc == TCD_CLOSE) /* nothing after QUIT is read or answered */
        cl->closing = 1;
}

/* An error reply in request order; close once it is sent if asked. */
static void reply_in_order(tcd_client *cl, const char *err, int close_after)
{
    char text[200];
    snprintf(text, sizeof(text), "ERR %s", err);
    if (cl->head) {
        tcd_job *slot = new_slot(cl);
        if (!slot) {
            cl->out.oom = 1;
            cl->closing = 1;
            return;
        }
        slot->done = 1;
        slot->close_after = close_after;
        tcd_reply_error(&slot->out, text);
        append_slot(cl, slot);
    } else {
        tcd_reply_error(&cl->out, text);
    }
}

void tcd_dispatch_protocol_error(tcd_client *cl, const char *err)
{
    TCD_COUNT(cl->srv, protocol_errors, 1);
    tcd_info("client %llu: %s; closing", (unsigned long long)cl->id, err);
    reply_in_order(cl, err, 1);
    cl->closing = 1;
    tcd_client_set_reading(cl, 0);
}

void tcd_dispatch_input(tcd_client *cl)
{
    tcd_server *srv = cl->srv;
    const tcd_limits *lim = &srv->cfg->limits;
    tcd_limits pre_auth;
    const char *pw = srv->cfg->password;
    while (!cl->closing && tcd_buf_pending(&cl->in) > 0) {
        size_t used = 0;
        tcd_req *req = NULL;
        const char *err = NULL;
        int rc;
        if (tcd_client_backpressured(cl)) {
            if (cl->reading) /* paused for what it holds: counted once */
                TCD_COUNT(srv, output_pauses, 1);
            tcd_client_set_reading(cl, 0);
            break;
        }
        if (pw && *pw && !cl->authed) {
            /* Like Redis: unauthenticated clients get tiny limits. */
            pre_auth = *lim;
            pre_auth.max_args = 10;
            pre_auth.max_bulk = 16384;
            pre_auth.max_request = 64 * 1024;
            lim = &pre_auth;
        } else {
            lim = &srv->cfg->limits;
        }
        rc = tcd_proto_parse(srv->proto, &cl->scan, lim,
                             cl->in.p + cl->in.off, tcd_buf_pending(&cl->in),
                             &used, &req, &err);
        if (rc == TCD_PARSE_MORE) {
            if (cl->partial_since == 0)
                cl->partial_since = ev_now(srv->loop);
            return;
        }
        if (rc == TCD_PARSE_ERR ||
            (rc == TCD_PARSE_TOO_BIG && lim == &pre_auth)) {
            tcd_dispatch_protocol_error(cl, err);
            return;
        }
        if (rc == TCD_PARSE_TOO_BIG) {
            /* One clear error, and the connection stays: its client does
             * not reconnect and resend the same request (ioredis would). */
            TCD_COUNT(srv, requests_too_big, 1);
            tcd_info("client %llu: %s; skipping the request",
                     (unsigned long long)cl->id, err);
            reply_in_order(cl, err, 0);
        }
        tcd_buf_consume(&cl->in, used);
        if (req)
            dispatch(cl, req);
    }
    if (cl->closing) {
        cl->partial_since = 0;
        tcd_client_set_reading(cl, 0);
    } else if (cl->scan.skip_args || cl->scan.skip_bytes) {
        /* The rest of a refused request is still coming. */
        if (cl->partial_since == 0)
            cl->partial_since = ev_now(srv->loop);
    } else {
        cl->partial_since = 0;
    }
}

/* Shutting down with the pool gone: the client's commands still waiting
 * are answered with an error, in order, never dropped. */
static void refuse_waiting(tcd_client *cl)
{
    while (cl->wait_head) {
        tcd_job *n = cl->wait_head;
        cl->wait_head = n->qnext;
        n->qnext = NULL;
        tcd_client_uncharge(cl, n);
        tcd_reply_error(&n->out, "ERR tiercached is shutting down; the "
                                 "command was not run");
        n->done = 1;
        tcd_client_charge(cl, n);
    }
    cl->wait_tail = NULL;
}

static void pop_waiting(tcd_client *cl)
{
    cl->wait_head = cl->wait_head->qnext;
    if (!cl->wait_head)
        cl->wait_tail = NULL;
}

void tcd_dispatch_next(tcd_client *cl)
{
    tcd_server *srv = cl->srv;
    tcd_job *n;
    while ((n = cl->wait_head) && !cl->inflight && !cl->dead) {
        if (srv->workers_gone) { /* shutting down: pipeline closed too */
            refuse_waiting(cl);
            return;
        }
        if (tcd_client_reply_bytes(cl) > srv->cfg->max_output) {
            if (!cl->held_back) {
                cl->held_back = 1;
                TCD_COUNT(srv, output_pauses, 1);
            }
            return;
        }
        cl->held_back = 0;
        /* Pipelined: sent now, more may follow. */
        if (!cl->pin && !tcd_pipeline_room(cl))
            return; /* the next reply makes room */
        if (!cl->pin) {
            int how = tcd_pipeline_try(cl, n);
            if (how != TCD_PIPELINE_NO) {
                pop_waiting(cl);
                n->qnext = NULL;
                if (how == TCD_PIPELINE_SENT) {
                    cl->ainflight++;
                } else {
                    tcd_client_uncharge(cl, n); /* its request ... */
                    n->done = 1;
                    tcd_client_charge(cl, n);   /* ... is now its reply */
                    tcd_dispatch_touch(cl);
                }
                continue;
            }
        }
        /* A worker job waits for the client's pipelined requests: its
         * blocking call uses another Redis connection. */
        if (cl->ainflight)
            return;
        if (cl->was_pinned && !cl->pin) { /* shutting down */
            refuse_waiting(cl);
            return;
        }
        pop_waiting(cl);
        cl->inflight = 1;
        if (cl->pin && tcd_pin_runs(n))
            tcd_pin_submit(cl->pin, n);
        else
            tcd_workers_submit(srv->workers, n);
        return;
    }
}

void tcd_dispatch_touch(tcd_client *cl)
{
    tcd_server *srv = cl->srv;
    if (cl->touched || cl->dead)
        return;
    cl->touched = 1;
    cl->touched_next = srv->touched;
    srv->touched = cl;
}

/* Replies ready while a later command of the same client is pipelined to
 * Redis wait for its answer, up to this many bytes, and leave with it in
 * one send, as Redis answers what it read at once: a transaction's +OK
 * and QUEUEDs came one send, and one wakeup of the client, before EXEC's
 * answer. (finished() touches the client when that answer is in.) */
#define HOLD_MAX 16384

void tcd_dispatch_send(tcd_client *cl)
{
    tcd_client_flush(cl);
    if (cl->ainflight && !cl->closing && !cl->out.oom &&
        tcd_buf_pending(&cl->out) < HOLD_MAX)
        return;
    tcd_client_write(cl);
}

void tcd_dispatch_flush_touched(tcd_server *srv)
{
    while (srv->touched) {
        tcd_client *cl = srv->touched;
        srv->touched = cl->touched_next;
        cl->touched = 0;
        tcd_dispatch_send(cl);
    }
}

void tcd_dispatch_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    tcd_dispatch_flush_touched(w->data);
}

void tcd_dispatch_done(struct ev_loop *loop, ev_async *w, int revents)
{
    tcd_server *srv = w->data;
    tcd_job *j = tcd_workers_take_done(srv->workers);
    (void)loop;
    (void)revents;
    while (j) {
        tcd_job *next = j->qnext;
        tcd_client *cl = j->client;
        if (j->pin) { /* a message Redis pushed to a pinned client */
            if ((cl = tcd_pin_deliver(srv, j)))
                tcd_dispatch_touch(cl);
            j = next;
            continue;
        }
        tcd_client_uncharge(cl, j); /* its request ... */
        tcd_multi_finish(cl, j);    /* (a pinned client's EXEC) */
        j->done = 1;
        tcd_client_charge(cl, j);   /* ... is now its reply */
        cl->inflight--;
        if (j->pin_note)
            tcd_pin_noted(cl, j);   /* RESET, MULTI in pub/sub mode */
        tcd_dispatch_next(cl);      /* this client's next command */
        if (cl->dead) {
            if (cl->inflight == 0 && cl->ainflight == 0)
                tcd_client_free(cl);
        } else {
            tcd_dispatch_touch(cl);
        }
        j = next;
    }
    tcd_dispatch_flush_touched(srv);
}
