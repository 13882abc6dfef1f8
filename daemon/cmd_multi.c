/*
 * Transactions: MULTI ... EXEC queued per client, as Redis queues them, and
 * run by tc_command_multi() on one Redis connection in one MULTI/EXEC with
 * one invalidation of every key written. Queue-time errors (unknown
 * command, wrong arity, unknown subcommand, NOAUTH) answer the command and
 * make EXEC answer EXECABORT, with Redis's texts (tc_command_check()).
 *
 * Threads: the queue is client state (loop thread); EXEC hands it to its
 * job (cl->exec_batch, taken by dispatch when it defers the EXEC), which a
 * worker runs (tcd_multi_run).
 */
#include "cmd_impl.h"

#include <stdlib.h>
#include <string.h>

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

int tcd_cmd_exec(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)r;
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
    cl->exec_batch = cl->mq;
    cl->exec_n = cl->mq_n;
    cl->mq = NULL;
    cl->mq_n = 0;
    tcd_multi_reset(cl);
    return TCD_DEFER;
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
    a->argcs = malloc(n * sizeof(*a->argcs));
    a->argvs = malloc(n * sizeof(*a->argvs));
    a->lens = malloc(n * sizeof(*a->lens));
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

void tcd_multi_run(tcd_server *srv, tcd_req **batch, size_t n, tcd_buf *out)
{
    tcd_multi_args a;
    tc_reply *rep = NULL;
    tc_result rc;
    if (tcd_multi_args_make(batch, n, &a) != 0) {
        tcd_reply_error(out, "ERR out of memory");
        return;
    }
    rc = tc_command_multi(srv->cache, n, a.argcs, a.argvs, a.lens, &rep);
    tcd_forward_reply(out, rc, rep);
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
