#include "client.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "commands.h"
#include "dispatch.h"
#include "log.h"
#include "pin.h"
#include "pubsub.h"

#define READ_CHUNK (16 * 1024)
#define MAX_QUEUED 1024 /* replies waiting per client before pausing */

void tcd_client_free(tcd_client *cl)
{
    tcd_job *j = cl->head;
    while (j) {
        tcd_job *n = j->next;
        tcd_req_free(j->req);
        tcd_multi_batch_free(j->batch, j->nbatch);
        tcd_txn_local_free(j->txn_local);
        tcd_buf_free(&j->out);
        free(j);
        j = n;
    }
    tcd_multi_reset(cl);
    tcd_buf_free(&cl->in);
    tcd_buf_free(&cl->out);
    free(cl->name);
    free(cl);
}

void tcd_client_close(tcd_client *cl, const char *why)
{
    tcd_server *srv = cl->srv;
    if (cl->dead)
        return;
    tcd_debug("client %llu closed: %s", (unsigned long long)cl->id, why);
    ev_io_stop(srv->loop, &cl->rio);
    ev_io_stop(srv->loop, &cl->wio);
    if (cl->pin) {
        tcd_pin_release(cl->pin);
        cl->pin = NULL;
    }
    tcd_pubsub_client_gone(cl);
    if (cl->touched) { /* replies to flush: there are none now */
        tcd_client **pp = &srv->touched;
        while (*pp != cl)
            pp = &(*pp)->touched_next;
        *pp = cl->touched_next;
        cl->touched = 0;
    }
    close(cl->fd);
    cl->fd = -1;
    cl->dead = 1;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        srv->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    cl->prev = cl->next = NULL;
    atomic_fetch_sub_explicit(&srv->counters.connected, 1,
                              memory_order_relaxed);
    if (cl->inflight == 0 && cl->ainflight == 0)
        tcd_client_free(cl); /* else the last returning job frees it */
}

void tcd_client_set_reading(tcd_client *cl, int on)
{
    if (on && !cl->reading && !cl->closing && !cl->dead)
        ev_io_start(cl->srv->loop, &cl->rio);
    else if (!on && cl->reading)
        ev_io_stop(cl->srv->loop, &cl->rio);
    else
        return;
    cl->reading = on;
}

static size_t req_bytes(const tcd_req *r)
{
    size_t n = sizeof(*r);
    if (!r)
        return 0;
    for (int i = 0; i < r->argc; i++)
        n += r->argl[i] + 1 + sizeof(r->argv[i]) + sizeof(r->argl[i]);
    return n;
}

void tcd_client_charge(tcd_client *cl, tcd_job *j)
{
    j->charged = j->done ? tcd_buf_pending(&j->out) : req_bytes(j->req);
    cl->held += j->charged;
    if (j->done)
        cl->held_replies += j->charged;
}

void tcd_client_uncharge(tcd_client *cl, tcd_job *j)
{
    cl->held -= j->charged;
    if (j->done)
        cl->held_replies -= j->charged;
    j->charged = 0;
}

size_t tcd_client_reply_bytes(const tcd_client *cl)
{
    return tcd_buf_pending(&cl->out) + cl->held_replies;
}

/* Everything a client makes us hold counts against --max-output: unsent
 * output, finished replies waiting for an earlier one, and requests not
 * yet run. Past it, nothing more of the client is parsed, so at most one
 * request and one reply beyond the bound are ever held. */
int tcd_client_backpressured(const tcd_client *cl)
{
    return tcd_buf_pending(&cl->out) + cl->held > cl->srv->cfg->max_output ||
           cl->queued >= MAX_QUEUED || cl->pin_hold;
}

void tcd_client_flush(tcd_client *cl)
{
    while (cl->head && cl->head->done) {
        tcd_job *j = cl->head;
        cl->head = j->next;
        if (!cl->head)
            cl->tail = NULL;
        cl->queued--;
        tcd_client_uncharge(cl, j);
        if (j->out.oom)
            cl->out.oom = 1;
        else if (tcd_buf_pending(&j->out) && !j->quiet)
            tcd_buf_add(&cl->out, j->out.p + j->out.off,
                        tcd_buf_pending(&j->out));
        if (j->close_after)
            cl->closing = 1;
        tcd_req_free(j->req);
        tcd_multi_batch_free(j->batch, j->nbatch);
        tcd_txn_local_free(j->txn_local);
        tcd_buf_free(&j->out);
        free(j);
    }
}

int tcd_client_write(tcd_client *cl)
{
    tcd_server *srv = cl->srv;
    if (cl->out.oom) {
        tcd_client_close(cl, "out of memory for replies");
        return -1;
    }
    while (tcd_buf_pending(&cl->out) > 0) {
        ssize_t n = send(cl->fd, cl->out.p + cl->out.off,
                         tcd_buf_pending(&cl->out), MSG_NOSIGNAL);
        if (n > 0) {
            TCD_COUNT(srv, net_output_bytes, (unsigned long long)n);
            tcd_buf_consume(&cl->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!ev_is_active(&cl->wio))
                ev_io_start(srv->loop, &cl->wio);
            return 0;
        }
        tcd_client_close(cl, "write failed");
        return -1;
    }
    if (ev_is_active(&cl->wio))
        ev_io_stop(srv->loop, &cl->wio);
    if (cl->closing && !cl->head) {
        tcd_client_close(cl, "closed after reply");
        return -1;
    }
    if (tcd_buf_pending(&cl->out) + cl->held_replies <
        srv->cfg->max_output / 2)
        tcd_pin_drained(cl); /* its thread may read pushes again */
    if (cl->wait_head && !cl->inflight) {
        /* Its next command was held while its replies were over the
         * bound; they were sent, so run it now. */
        tcd_dispatch_next(cl);
    }
    if (!cl->closing && !cl->reading && !cl->pin_hold &&
        tcd_buf_pending(&cl->out) + cl->held < srv->cfg->max_output / 2 &&
        cl->queued < MAX_QUEUED / 2) {
        tcd_client_set_reading(cl, 1);
        /* Requests read before the pause may already be complete. */
        if (tcd_buf_pending(&cl->in) > 0) {
            tcd_dispatch_input(cl);
            tcd_client_flush(cl);
            return tcd_client_write(cl);
        }
    }
    return 0;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    tcd_client *cl = w->data;
    tcd_server *srv = cl->srv;
    size_t room = cl->in.cap - cl->in.len;
    char *p;
    ssize_t n;
    (void)loop;
    (void)revents;
    if (cl->closing) {
        tcd_client_set_reading(cl, 0);
        return;
    }
    if (room < READ_CHUNK)
        room = READ_CHUNK;
    p = tcd_buf_space(&cl->in, room);
    if (!p) {
        tcd_client_close(cl, "out of memory for input");
        return;
    }
    n = recv(cl->fd, p, room, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        tcd_client_close(cl, "read failed");
        return;
    }
    if (n == 0) {
        /* Peer finished sending: answer what it sent, then close. */
        if (cl->pin)
            tcd_pin_hangup(cl->pin);
        tcd_client_set_reading(cl, 0);
        cl->closing = 1;
        cl->partial_since = 0;
        if (!cl->head && tcd_buf_pending(&cl->out) == 0) {
            tcd_client_close(cl, "end of input");
            return;
        }
        tcd_client_write(cl);
        return;
    }
    cl->in.len += (size_t)n;
    TCD_COUNT(srv, net_input_bytes, (unsigned long long)n);
    tcd_dispatch_input(cl);
    tcd_dispatch_send(cl);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    tcd_client_write(w->data);
}

void tcd_client_accept(tcd_server *srv, int fd)
{
    tcd_client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        tcd_error("out of memory accepting a client");
        close(fd);
        return;
    }
    cl->srv = srv;
    cl->fd = fd;
    cl->id = ++srv->next_client_id;
    ev_io_init(&cl->rio, on_read, fd, EV_READ);
    ev_io_init(&cl->wio, on_write, fd, EV_WRITE);
    cl->rio.data = cl;
    cl->wio.data = cl;
    cl->next = srv->clients;
    if (srv->clients)
        srv->clients->prev = cl;
    srv->clients = cl;
    TCD_COUNT(srv, connections_received, 1);
    TCD_COUNT(srv, connected, 1);
    tcd_client_set_reading(cl, 1);
    tcd_debug("client %llu connected", (unsigned long long)cl->id);
}
