#include "pipeline.h"

#include "client.h"
#include "cmd_impl.h"
#include "dispatch.h"
#include "log.h"

void tcd_pipeline_open(tcd_server *srv)
{
    unsigned lanes = srv->cfg->workers ? srv->cfg->workers : 1;
    if (tc_async_open(srv->cache, srv->loop, lanes, &srv->async) != TC_OK) {
        tcd_info("no pipelined forwarding (%s): every deferred command "
                 "runs on a worker", tc_errmsg());
        srv->async = NULL;
    }
}

/* The job's reply is complete: it joins the client's reply order. */
static void finished(tcd_job *j)
{
    tcd_client *cl = j->client;
    size_t size = tcd_buf_pending(&j->out);
    tcd_client_uncharge(cl, j); /* its request ... */
    j->done = 1;
    tcd_client_charge(cl, j);   /* ... is now its reply */
    cl->ainflight--;
    if (j->pipelined_write) {
        j->pipelined_write = 0;
        cl->awrites--;
    }
    cl->reply_est = size > cl->reply_est / 2 ? size : cl->reply_est / 2;
    if (cl->dead) {
        if (cl->inflight == 0 && cl->ainflight == 0)
            tcd_client_free(cl);
        return;
    }
    tcd_dispatch_next(cl); /* more may fit now, or a worker job waits */
    tcd_dispatch_touch(cl);
}

int tcd_pipeline_room(const tcd_client *cl)
{
    size_t max = cl->srv->cfg->max_output;
    /* Until a reply was seen, 16 KiB each. */
    size_t est = cl->reply_est ? cl->reply_est : 16384;
    if (cl->ainflight == 0)
        return 1;
    if (cl->ainflight >= TCD_PIPELINE_DEPTH)
        return 0;
    return tcd_client_reply_bytes(cl) + (cl->ainflight + 1) * (est + 1) <=
           max;
}

static void on_get(void *ud, tc_result r, tc_value *v, const tc_reply *err)
{
    tcd_job *j = ud;
    if (r == TC_OK)
        tcd_reply_value(&j->out, v);
    else if (r == TC_NOT_FOUND)
        tcd_reply_nil(&j->out);
    else if (err)
        tcd_reply_redis(&j->out, err); /* WRONGTYPE: Redis's own answer */
    else
        tcd_reply_tc_error(&j->out, r);
    finished(j);
}

static void on_set(void *ud, tc_result r, tc_reply *rep)
{
    tcd_job *j = ud;
    (void)rep;
    if (r == TC_OK)
        tcd_reply_status(&j->out, "OK");
    else if (r == TC_NOT_STORED)
        tcd_reply_nil(&j->out);
    else
        tcd_reply_tc_error(&j->out, r);
    finished(j);
}

static void on_command(void *ud, tc_result r, tc_reply *rep)
{
    tcd_job *j = ud;
    tcd_forward_reply(&j->out, r, rep);
    finished(j);
}

int tcd_pipeline_try(tcd_client *cl, tcd_job *j)
{
    tcd_server *srv = cl->srv;
    tc_async *a = srv->async;
    const tcd_req *r = j->req;
    unsigned lane = (unsigned)cl->id;
    tc_result rc;
    if (!a || cl->was_pinned || j->unwatch_reply || j->txn_local)
        return TCD_PIPELINE_NO;
    if (j->batch) {
        /* EXEC of a transaction: on the lane, no worker hop. */
        tcd_multi_args m;
        if (tcd_multi_args_make(j->batch, j->nbatch, &m) != 0)
            return TCD_PIPELINE_NO;
        rc = tc_async_multi(a, lane, j->nbatch, m.argcs, m.argvs, m.lens,
                            on_command, j);
        tcd_multi_args_free(&m);
        if (rc != TC_OK) {
            tcd_debug("pipeline declined EXEC: %s", tc_errmsg());
            return TCD_PIPELINE_NO;
        }
        TCD_COUNT(srv, commands_pipelined, 1);
        j->pipelined_write = 1; /* it may write: later GETs wait for it */
        cl->awrites++;
        return TCD_PIPELINE_SENT;
    }
    if (!r)
        return TCD_PIPELINE_NO;
    if (j->cmd->work == tcd_cmd_get_work) {
        tc_value *v = NULL;
        /* With none of the client's writes in flight, L1 answers as the
         * loop handler would have (a read of it may be in flight). */
        if (cl->awrites == 0 &&
            tc_peek(srv->cache, r->argv[1], r->argl[1], &v) == TC_OK) {
            tcd_reply_value(&j->out, v);
            TCD_COUNT(srv, commands_in_loop, 1);
            return TCD_PIPELINE_ANSWERED;
        }
        rc = tc_async_get(a, lane, r->argv[1], r->argl[1], on_get, j);
    } else if (j->cmd->work == tcd_cmd_set_work) {
        tc_set_opts o;
        /* NX/XX run as one script on a worker; syntax errors and options
         * tc_set_ex() does not take go to Redis there too. */
        if (tcd_set_parse(r, &o, NULL) != 0 ||
            (o.flags & (TC_SET_NX | TC_SET_XX)))
            return TCD_PIPELINE_NO;
        rc = tc_async_set(a, lane, r->argv[1], r->argl[1], r->argv[2],
                          r->argl[2], &o, on_set, j);
    } else if (j->cmd == &tcd_cmd_forward) {
        rc = tc_async_command(a, lane, r->argc, (const char *const *)r->argv,
                              r->argl, on_command, j);
    } else {
        return TCD_PIPELINE_NO;
    }
    if (rc != TC_OK) {
        tcd_debug("pipeline declined %.32s: %s", r->argv[0], tc_errmsg());
        return TCD_PIPELINE_NO; /* the worker's blocking call gives the answer */
    }
    TCD_COUNT(srv, commands_pipelined, 1);
    if (j->cmd->work != tcd_cmd_get_work) {
        j->pipelined_write = 1;
        cl->awrites++;
    }
    return TCD_PIPELINE_SENT;
}

void tcd_pipeline_close(tcd_server *srv)
{
    tc_async *a = srv->async;
    ev_tstamp until;
    if (!a)
        return;
    /* Answered within the command timeout, or failed by the library. */
    until = ev_time() + (srv->cfg->opts.command_timeout_ms ? srv->cfg->opts.command_timeout_ms
                                                   : 10000) / 1000.0 + 5.0;
    while (tc_async_pending(a) > 0 && ev_time() < until)
        ev_run(srv->loop, EVRUN_ONCE);
    srv->async = NULL;
    tc_async_close(a); /* whatever is left is answered with an error */
    tcd_dispatch_flush_touched(srv);
}
