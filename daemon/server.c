#include "server.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "client.h"
#include "dispatch.h"
#include "listen.h"
#include "pin.h"
#include "pubsub.h"
#include "pipeline.h"
#include "log.h"
#include "workers.h"

/* Close clients stalled in the middle of a request. */
static void on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    tcd_server *srv = w->data;
    ev_tstamp now = ev_now(loop);
    double limit = srv->cfg->read_timeout_ms / 1000.0;
    tcd_client *cl = srv->clients;
    (void)revents;
    while (cl) {
        tcd_client *next = cl->next;
        if (cl->partial_since > 0 && !cl->closing &&
            now - cl->partial_since > limit) {
            TCD_COUNT(srv, read_timeouts, 1);
            cl->partial_since = 0;
            tcd_dispatch_protocol_error(
                cl, "Protocol error: timeout reading the request");
            tcd_client_flush(cl);
            tcd_client_write(cl);
        }
        cl = next;
    }
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    tcd_server *srv = w->data;
    (void)revents;
    tcd_info("signal %d: shutting down", w->signum);
    srv->stopping = 1;
    ev_break(loop, EVBREAK_ALL);
}

int tcd_server_init(tcd_server *srv, struct ev_loop *loop,
                    const tcd_config *cfg, tc_cache *cache)
{
    memset(srv, 0, sizeof(*srv));
    pthread_mutex_init(&srv->pins_mu, NULL);
    pthread_cond_init(&srv->pins_cv, NULL);
    srv->loop = loop;
    srv->cfg = cfg;
    srv->cache = cache;
    srv->unix_fd = srv->tcp_fd = -1;
    srv->started_at = (uint64_t)time(NULL);
    srv->proto = tcd_proto_create();
    if (!srv->proto) {
        tcd_error("out of memory");
        return -1;
    }
    ev_async_init(&srv->done_async, tcd_dispatch_done);
    srv->done_async.data = srv;
    ev_async_start(loop, &srv->done_async);
    ev_signal_init(&srv->sigterm, on_signal, SIGTERM);
    ev_signal_init(&srv->sigint, on_signal, SIGINT);
    ev_timer_init(&srv->sweep, on_sweep, 1., 1.);
    srv->workers = tcd_workers_create(cfg->workers, tcd_dispatch_run, loop,
                                      &srv->done_async);
    if (!srv->workers)
        goto fail;
    tcd_pipeline_open(srv);
    if (tcd_pubsub_init(srv) != 0)
        goto fail;
    ev_prepare_init(&srv->flush_prep, tcd_dispatch_prepare);
    srv->flush_prep.data = srv;
    ev_prepare_start(loop, &srv->flush_prep);
    ev_unref(loop); /* housekeeping does not keep the loop alive */
    if (tcd_listen_start(srv) != 0)
        goto fail;
    {
        double iv = cfg->read_timeout_ms / 4000.0;
        iv = iv < 0.01 ? 0.01 : iv > 1.0 ? 1.0 : iv;
        ev_timer_set(&srv->sweep, iv, iv);
        srv->sweep.data = srv;
        ev_timer_start(loop, &srv->sweep);
        ev_unref(loop); /* housekeeping does not keep the loop alive */
    }
    srv->sigterm.data = srv->sigint.data = srv;
    ev_signal_start(loop, &srv->sigterm);
    ev_signal_start(loop, &srv->sigint);
    return 0;

fail:
    tcd_server_shutdown(srv);
    return -1;
}

unsigned tcd_server_clients(const tcd_server *srv)
{
    unsigned n = 0;
    for (const tcd_client *c = srv->clients; c; c = c->next)
        n++;
    return n;
}

void tcd_server_shutdown(tcd_server *srv)
{
    struct ev_loop *loop = srv->loop;
    srv->stopping = 1;
    tcd_listen_stop(srv);
    if (ev_is_active(&srv->sweep)) {
        ev_ref(loop);
        ev_timer_stop(loop, &srv->sweep);
    }
    ev_signal_stop(loop, &srv->sigterm);
    ev_signal_stop(loop, &srv->sigint);
    /* Pipelined commands are answered (or failed by the library's
     * timeout) first; nothing new is read meanwhile. Worker jobs waiting
     * behind them are submitted as they come back. */
    for (tcd_client *cl = srv->clients; cl; cl = cl->next) {
        cl->closing = 1;
        tcd_client_set_reading(cl, 0);
    }
    tcd_pipeline_close(srv);
    if (ev_is_active(&srv->flush_prep)) {
        ev_ref(loop);
        ev_prepare_stop(loop, &srv->flush_prep);
    }
    /* Commands already at the workers (writes among them) run to
     * completion; those of the same clients still waiting behind them are
     * answered with an error (tcd_dispatch_next), never dropped. */
    /* Pinned clients' threads: a blocking command is interrupted, any
     * other finishes (within the command timeout); their jobs come back
     * through the workers' done queue, so they go before the pool. */
    for (tcd_client *cl = srv->clients; cl; cl = cl->next) {
        if (cl->pin) {
            tcd_pin_release(cl->pin);
            cl->pin = NULL;
        }
    }
    tcd_pin_wait_all(srv);
    if (srv->workers) {
        tcd_workers_drain(srv->workers);
        srv->workers_gone = 1;
        tcd_dispatch_done(loop, &srv->done_async, 0);
        tcd_workers_destroy(srv->workers);
        srv->workers = NULL;
    }
    ev_async_stop(loop, &srv->done_async);
    while (srv->clients) {
        tcd_client *cl = srv->clients;
        tcd_dispatch_next(cl); /* answers commands held back, if any */
        tcd_client_flush(cl);
        if (tcd_buf_pending(&cl->out) > 0 && !cl->out.oom) {
            /* One non-blocking attempt to deliver the last replies. */
            ssize_t n = send(cl->fd, cl->out.p + cl->out.off,
                             tcd_buf_pending(&cl->out),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)n;
        }
        tcd_client_close(cl, "server shutting down");
    }
    tcd_pubsub_shutdown(srv);
    tcd_proto_free(srv->proto);
    srv->proto = NULL;
}
