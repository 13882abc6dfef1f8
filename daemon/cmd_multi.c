/*
 * Transactions: MULTI ... EXEC queued per client, as Redis queues them, and
 * run by tc_command_multi() on one Redis connection in one MULTI/EXEC with
 * one invalidation of every key written. Queue-time errors (unknown
 * command, wrong arity, unknown subcommand, NOAUTH) answer the command and
 * make EXEC answer EXECABORT, with Redis's texts (tc_command_check()).
 *
 * Connection commands queued inside MULTI run at EXEC, in their place, as
 * in Redis: those tiercached answers itself (CLIENT SETNAME GETNAME ID
 * SETINFO REPLY, HELLO, AUTH; SELECT of the database the client is in and
 * UNWATCH on a client with no connection of its own) are answered on the
 * loop when EXEC comes, and their replies put among Redis's; a SELECT of
 * another database (or CLIENT TRACKING ...) first gives the client its own
 * Redis connection (pin.h), whose session runs the SELECT inside the
 * transaction, so that the commands after it run in that database, and
 * the client stays there. On a client with a connection of its own a
 * WATCH may abort the transaction: there the daemon's own commands run
 * only once Redis ran it (tcd_multi_finish, on the loop, the client's
 * input held until then).
 *
 * Threads: the queue is client state (loop thread); EXEC hands it to its
 * job (cl->exec_batch, taken by dispatch when it defers the EXEC), which a
 * worker runs (tcd_multi_run).
 */
#include "cmd_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

static size_t req_size(const tcd_req *r)
{
    size_t n = sizeof(*r) + (size_t)r->argc * (sizeof(char *) + sizeof(size_t));
    for (int i = 0; i < r->argc; i++)
        n += r->argl[i] + 1;
    return n;
}

void tcd_multi_reset(tcd_client *cl)
{
    for (size_t i = 0; i < cl->mq_n; i++)
        tcd_req_free(cl->mq[i]);
    free(cl->mq);
    cl->mq = NULL;
    cl->mq_n = cl->mq_cap = cl->mq_bytes = 0;
    cl->multi = cl->multi_dirty = 0;
}

void tcd_multi_batch_free(tcd_req **batch, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tcd_req_free(batch[i]);
    free(batch);
}

int tcd_cmd_multi(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)r;
    if (cl->multi) {
        tcd_reply_error(out, "ERR MULTI calls can not be nested");
        return TCD_DONE;
    }
    cl->multi = 1;
    tcd_reply_status(out, "OK");
    return TCD_DONE;
}

/* DISCARD, and an EXEC that does not run, end the client's WATCH in
 * Redis: a pinned client's connection is told so (UNWATCH) before `reply`
 * (static RESP) is sent; any other client has nothing watched. */
static int unwatched(tcd_client *cl, const char *reply, tcd_buf *out)
{
    if (cl->pin) {
        cl->unwatch_reply = reply;
        return TCD_DEFER;
    }
    tcd_buf_add(out, reply, strlen(reply));
    return TCD_DONE;
}

int tcd_cmd_discard(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)r;
    if (!cl->multi) {
        tcd_reply_error(out, "ERR DISCARD without MULTI");
        return TCD_DONE;
    }
    tcd_multi_reset(cl);
    return unwatched(cl, "+OK\r\n", out);
}

void tcd_txn_local_free(tcd_txn_local *l)
{
    if (!l)
        return;
    for (size_t i = 0; l->rep && i < l->n; i++)
        tcd_buf_free(&l->rep[i]);
    for (size_t i = 0; l->req && i < l->n; i++)
        tcd_req_free(l->req[i]);
    free(l->rep);
    free(l->req);
    free(l->here);
    free(l);
}

/* SELECT's database, when its argument is one Redis would take. */
static int select_db(const tcd_req *q, long long *db)
{
    return q->argc == 2 && tcd_arg_ll(q, 1, db) == 0 && *db >= INT_MIN &&
           *db <= INT_MAX;
}

/* Does the queued command need the client's own Redis connection? */
static int needs_pin(tcd_client *cl, const tcd_req *q)
{
    long long db;
    if (tcd_arg_is(q, 0, "select"))
        return select_db(q, &db) && db != tc_cache_db(cl->srv->cache);
    return tcd_arg_is(q, 0, "client") && tcd_client_pins(q);
}

/* Is the queued command answered here rather than by Redis? */
static int runs_here(const tcd_client *cl, const tcd_req *q)
{
    if (tcd_arg_is(q, 0, "client"))
        return tcd_client_local(q);
    if (tcd_arg_is(q, 0, "hello") || tcd_arg_is(q, 0, "auth"))
        return 1;
    /* With a connection of its own, Redis answers SELECT and UNWATCH
     * there; without one, the client is in the cache's database (SELECT
     * of another one pinned it: needs_pin) and watches nothing. */
    return !cl->pin &&
           (tcd_arg_is(q, 0, "select") || tcd_arg_is(q, 0, "unwatch"));
}

/* Run a command answered here, at its place in the transaction. */
static void run_here(tcd_client *cl, tcd_req *q, tcd_buf *out)
{
    long long db;
    if (tcd_arg_is(q, 0, "client"))
        tcd_cmd_client(cl, q, out);
    else if (tcd_arg_is(q, 0, "hello"))
        tcd_cmd_hello(cl, q, out);
    else if (tcd_arg_is(q, 0, "auth"))
        tcd_cmd_auth(cl, q, out);
    else if (tcd_arg_is(q, 0, "unwatch"))
        tcd_reply_status(out, "OK");
    else if (!select_db(q, &db))
        tcd_reply_error(out, "ERR value is not an integer or out of range");
    else
        tcd_reply_status(out, "OK"); /* the database it is in */
}

/* Split the queue between Redis (cl->exec_batch) and the commands run
 * here (cl->exec_local, or `out` when none is left for Redis). */
static int exec_split(tcd_client *cl, tcd_buf *out)
{
    size_t n = cl->mq_n, nr = 0, nl = 0;
    tcd_txn_local *loc = NULL;
    tcd_req **rq;
    for (size_t i = 0; i < n && !cl->pin; i++)
        if (needs_pin(cl, cl->mq[i])) {
            if (tcd_dispatch_pin(cl, cl->mq[i], out) != 0) {
                tcd_multi_reset(cl);
                return TCD_DONE;
            }
            break;
        }
    for (size_t i = 0; i < n; i++)
        nl += (size_t)runs_here(cl, cl->mq[i]);
    if (nl == 0) {
        cl->exec_batch = cl->mq;
        cl->exec_n = cl->mq_n;
        cl->mq = NULL;
        cl->mq_n = 0;
        tcd_multi_reset(cl);
        return TCD_DEFER;
    }
    loc = calloc(1, sizeof(*loc));
    rq = malloc((n - nl + 1) * sizeof(*rq));
    if (loc) {
        loc->n = n;
        loc->rep = calloc(n, sizeof(*loc->rep));
        loc->here = calloc(n, 1);
        loc->req = calloc(n, sizeof(*loc->req));
        loc->deferred = cl->pin != NULL;
    }
    if (!loc || !rq || !loc->rep || !loc->here || !loc->req) {
        tcd_txn_local_free(loc);
        free(rq);
        tcd_multi_reset(cl);
        tcd_reply_error(out, "ERR out of memory");
        return TCD_DONE;
    }
    for (size_t i = 0; i < n; i++) {
        tcd_req *q = cl->mq[i];
        cl->mq[i] = NULL;
        if (runs_here(cl, q) && loc->deferred) {
            loc->here[i] = 1;
            loc->req[i] = q; /* run by tcd_multi_finish() */
        } else if (runs_here(cl, q)) {
            loc->here[i] = 1;
            run_here(cl, q, &loc->rep[i]);
            tcd_req_free(q);
        } else {
            rq[nr++] = q;
        }
    }
    tcd_multi_reset(cl); /* frees the emptied queue */
    if (nr == 0 && !cl->pin) { /* nothing for Redis: answered now */
        tcd_reply_array(out, (long long)n);
        for (size_t i = 0; i < n; i++)
            tcd_buf_add(out, loc->rep[i].p + loc->rep[i].off,
                        tcd_buf_pending(&loc->rep[i]));
        tcd_txn_local_free(loc);
        free(rq);
        return TCD_DONE;
    }
    /* With a connection of its own, even an EXEC of no Redis command goes
     * there: a WATCH may abort it, and then what the daemon answers itself
     * must not run either, nor the client's next commands before it. */
    if (loc->deferred)
        cl->pin_hold = 1;
    cl->exec_batch = rq;
    cl->exec_n = nr;
    cl->exec_local = loc;
    return TCD_DEFER;
}

int tcd_cmd_exec(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    if (!cl->multi) {
        tcd_reply_error(out, "ERR EXEC without MULTI");
        return TCD_DONE;
    }
    if (cl->multi_dirty) {
        tcd_multi_reset(cl);
        return unwatched(cl, "-EXECABORT Transaction discarded because of "
                             "previous errors.\r\n", out);
    }
    if (cl->mq_n == 0) {
        tcd_multi_reset(cl);
        return unwatched(cl, "*0\r\n", out);
    }
    (void)r;
    return exec_split(cl, out);
}

void tcd_cmd_exec_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    (void)srv;
    (void)r;
    tcd_reply_error(out, "ERR EXEC without MULTI"); /* no batch: unreachable */
}

int tcd_multi_queue(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    tc_result rc;
    size_t sz = req_size(r);
    const char *pw = cl->srv->cfg->password;
    if (pw && *pw && !cl->authed) {
        tcd_reply_error(out, "NOAUTH Authentication required.");
        goto dirty;
    }
    rc = tc_command_check(cl->srv->cache, r->argc,
                          (const char *const *)r->argv, r->argl);
    if (rc == TC_NOT_FOUND) {
        tcd_cmd_reply_unknown(r, out);
        goto dirty;
    }
    if (rc == TC_BAD_ARGUMENT) {
        tcd_reply_error(out, tc_errmsg());
        goto dirty;
    }
    if (rc != TC_OK) {
        tcd_reply_tc_error(out, rc);
        goto dirty;
    }
    if (cl->mq_bytes + sz > cl->srv->cfg->max_output) {
        tcd_reply_errorf(out, "ERR tiercached: a transaction's queued commands "
                              "exceed the --max-output limit of %zu bytes",
                         cl->srv->cfg->max_output);
        goto dirty;
    }
    if (cl->mq_n == cl->mq_cap) {
        size_t cap = cl->mq_cap ? 2 * cl->mq_cap : 16;
        tcd_req **q = realloc(cl->mq, cap * sizeof(*q));
        if (!q) {
            tcd_reply_error(out, "ERR out of memory");
            goto dirty;
        }
        cl->mq = q;
        cl->mq_cap = cap;
    }
    cl->mq[cl->mq_n++] = r;
    cl->mq_bytes += sz;
    tcd_reply_status(out, "QUEUED");
    return 1;
dirty:
    cl->multi_dirty = 1;
    tcd_req_free(r);
    return 1;
}

int tcd_multi_args_make(tcd_req **batch, size_t n, tcd_multi_args *a)
{
    size_t m = n ? n : 1; /* EXEC of only commands run here: none */
    a->argcs = malloc(m * sizeof(*a->argcs));
    a->argvs = malloc(m * sizeof(*a->argvs));
    a->lens = malloc(m * sizeof(*a->lens));
    if (!a->argcs || !a->argvs || !a->lens) {
        tcd_multi_args_free(a);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        a->argcs[i] = batch[i]->argc;
        a->argvs[i] = (const char *const *)batch[i]->argv;
        a->lens[i] = batch[i]->argl;
    }
    return 0;
}

void tcd_multi_args_free(tcd_multi_args *a)
{
    free(a->argcs);
    free(a->argvs);
    free(a->lens);
    a->argcs = NULL;
    a->argvs = NULL;
    a->lens = NULL;
}

void tcd_multi_reply(tcd_buf *out, tc_result rc, tc_reply *rep,
                     tcd_txn_local *local)
{
    size_t k = 0;
    if (!local || rc != TC_OK || tc_reply_type(rep) != TC_REPLY_ARRAY ||
        tc_reply_is_nil_array(rep)) {
        tcd_forward_reply(out, rc, rep); /* not run: nil, an error */
        return;
    }
    if (local->deferred) { /* the loop finishes it (tcd_multi_finish) */
        for (size_t i = 0; i < local->n; i++)
            if (!local->here[i] && k < tc_reply_elements(rep))
                tcd_reply_redis(&local->rep[i], tc_reply_element(rep, k++));
        local->ran = 1;
        tc_reply_free(rep);
        return;
    }
    tcd_reply_array(out, (long long)local->n);
    for (size_t i = 0; i < local->n; i++) {
        if (local->here[i])
            tcd_buf_add(out, local->rep[i].p + local->rep[i].off,
                        tcd_buf_pending(&local->rep[i]));
        else if (k < tc_reply_elements(rep))
            tcd_reply_redis(out, tc_reply_element(rep, k++));
        else
            tcd_reply_nil(out); /* not reached: one reply per command */
    }
    tc_reply_free(rep);
}

void tcd_multi_finish(tcd_client *cl, tcd_job *j)
{
    tcd_txn_local *l = j->txn_local;
    if (!l || !l->deferred)
        return;
    l->deferred = 0;
    cl->pin_hold = 0; /* the client's next write resumes its input */
    if (!l->ran || cl->dead)
        return; /* not run (nil, an error): j->out holds the answer */
    for (size_t i = 0; i < l->n; i++)
        if (l->here[i])
            run_here(cl, l->req[i], &l->rep[i]);
    tcd_reply_array(&j->out, (long long)l->n);
    for (size_t i = 0; i < l->n; i++)
        tcd_buf_add(&j->out, l->rep[i].p + l->rep[i].off,
                    tcd_buf_pending(&l->rep[i]));
}

void tcd_multi_run(tcd_server *srv, tcd_req **batch, size_t n,
                   tcd_txn_local *local, tcd_buf *out)
{
    tcd_multi_args a;
    tc_reply *rep = NULL;
    tc_result rc;
    if (tcd_multi_args_make(batch, n, &a) != 0) {
        tcd_reply_error(out, "ERR out of memory");
        return;
    }
    rc = tc_command_multi(srv->cache, n, a.argcs, a.argvs, a.lens, &rep);
    tcd_multi_reply(out, rc, rep, local);
    tcd_multi_args_free(&a);
}

int tcd_cmd_watch(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)r;
    if (cl->multi) { /* as Redis: an error that does not fail the EXEC */
        tcd_reply_error(out, "ERR WATCH inside MULTI is not allowed");
        return TCD_DONE;
    }
    return TCD_DEFER; /* tc_command refuses it, saying why */
}
