/* Asynchronous Redis connections on a libev loop (see aconn.h). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aconn.h"
#include "error.h"
#include "tls.h"

typedef struct pending {
    tc__aconn_reply_fn cb;
    void *priv;
} pending;

struct tc__aconn {
    struct ev_loop *loop;
    ev_io rio, wio;
    tc__conn *conn;         /* owned */
    tc__aconn_events ev;
    pending *q;             /* ring of callbacks awaiting replies */
    size_t qhead, qlen, qcap;
    int subscribed;         /* a subscribing command was sent */
    int in_callback;        /* depth of our own callbacks on the stack */
    int dead;               /* freed or failed: no more callbacks */
    int free_requested;     /* tc__aconn_free() called within a callback */
    int kept;               /* the reply being delivered was kept */
};

static int push_shaped(const redisReply *r)
{
    static const char *const kinds[] = {"message",     "pmessage",
                                        "subscribe",   "psubscribe",
                                        "unsubscribe", "punsubscribe"};
    const redisReply *k;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return 0;
    k = r->element[0];
    if (k->type != REDIS_REPLY_STRING)
        return 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strlen(kinds[i]) == k->len && !strncasecmp(k->str, kinds[i], k->len))
            return 1;
    return 0;
}

static void really_free(tc__aconn *a)
{
    ev_io_stop(a->loop, &a->rio);
    ev_io_stop(a->loop, &a->wio);
    tc__conn_free(a->conn);
    free(a->q);
    free(a);
}

void tc__aconn_free(tc__aconn *a)
{
    if (!a)
        return;
    a->dead = 1;
    if (a->in_callback) {
        /* Our caller is one of a's callbacks: finish when it returns. */
        a->free_requested = 1;
        ev_io_stop(a->loop, &a->rio);
        ev_io_stop(a->loop, &a->wio);
        return;
    }
    really_free(a);
}

/* Report the connection's failure once. */
static void fail(tc__aconn *a)
{
    const char *why = "closed";
    if (a->dead)
        return;
    tc__conn_error(a->conn, &why);
    a->dead = 1;
    ev_io_stop(a->loop, &a->rio);
    ev_io_stop(a->loop, &a->wio);
    a->in_callback++;
    a->ev.on_error(a, why, a->ev.data);
    a->in_callback--;
}

/* Hand out one reply; then free it unless its callback kept it. */
static void deliver(tc__aconn *a, redisReply *r)
{
    tc__aconn_reply_fn cb = NULL;
    void *priv = NULL;
    if (a->qlen && !(a->subscribed && push_shaped(r))) {
        pending *p = &a->q[a->qhead];
        cb = p->cb;
        priv = p->priv;
        a->qhead = (a->qhead + 1) % a->qcap;
        a->qlen--;
    } else {
        cb = a->ev.on_push;
        priv = a->ev.data;
    }
    a->kept = 0;
    if (cb) {
        a->in_callback++;
        cb(a, r, priv);
        a->in_callback--;
    }
    if (!a->kept)
        freeReplyObject(r);
    a->kept = 0;
}

void tc__aconn_keep_reply(tc__aconn *a)
{
    a->kept = 1;
}

/* Write what is queued, read what has come, hand out complete replies. */
static void service(tc__aconn *a)
{
    int want = 0, rc, need_write = 0;
    if (tc__conn_has_output(a->conn)) {
        rc = tc__conn_flush_step(a->conn);
        if (rc == TC__IO_ERROR) {
            fail(a);
            return;
        }
        need_write = rc == TC__IO_WANT_WRITE;
    }
    if (tc__conn_read_step(a->conn, &want) == TC__IO_ERROR) {
        /* Replies read before the end of the stream still count (the
         * server may have said why it closed). */
        redisReply *r;
        while (!a->dead && tc__conn_next_reply(a->conn, &r) == 1) {
            deliver(a, r);
        }
        fail(a);
        return;
    }
    need_write |= want == TC__IO_WANT_WRITE;
    if (need_write)
        ev_io_start(a->loop, &a->wio);
    else
        ev_io_stop(a->loop, &a->wio);
    while (!a->dead) {
        redisReply *r;
        rc = tc__conn_next_reply(a->conn, &r);
        if (rc == 0)
            break;
        if (rc == TC__IO_ERROR) {
            fail(a);
            break;
        }
        deliver(a, r);
    }
}

void tc__aconn_flush(tc__aconn *a)
{
    int rc;
    if (!a || a->dead || !tc__conn_has_output(a->conn))
        return;
    rc = tc__conn_flush_step(a->conn);
    if (rc == TC__IO_ERROR) {
        a->in_callback++;
        fail(a);
        a->in_callback--;
        if (a->free_requested && !a->in_callback)
            really_free(a);
        return;
    }
    /* All sent: the writability watcher started by queue() goes (started
     * and stopped within one iteration, libev changes nothing in the
     * kernel). Partly sent: it stays, and service() sends the rest. TLS
     * that wants to read first is handled there too. */
    if (rc == 1)
        ev_io_stop(a->loop, &a->wio);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    tc__aconn *a = w->data;
    (void)loop, (void)revents;
    a->in_callback++;
    service(a);
    a->in_callback--;
    if (a->free_requested && !a->in_callback)
        really_free(a);
}

tc_result tc__aconn_open(struct ev_loop *loop, const tc__conn_opts *o,
                         const tc__aconn_events *ev, tc__aconn **out)
{
    tc__aconn *a = calloc(1, sizeof(*a));
    tc_result r;
    if (!a)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if ((r = tc__conn_open(o, &a->conn)) != TC_OK) {
        free(a);
        return r;
    }
    a->loop = loop;
    a->ev = *ev;
    ev_io_init(&a->rio, on_io, tc__conn_fd(a->conn), EV_READ);
    ev_io_init(&a->wio, on_io, tc__conn_fd(a->conn), EV_WRITE);
    a->rio.data = a->wio.data = a;
    ev_io_start(loop, &a->rio);
    *out = a;
    return TC_OK;
}

static int enqueue(tc__aconn *a, tc__aconn_reply_fn cb, void *priv)
{
    if (a->qlen == a->qcap) {
        size_t cap = a->qcap ? 2 * a->qcap : 8;
        pending *q = malloc(cap * sizeof(*q));
        if (!q)
            return -1;
        for (size_t i = 0; i < a->qlen; i++)
            q[i] = a->q[(a->qhead + i) % a->qcap];
        free(a->q);
        a->q = q;
        a->qhead = 0;
        a->qcap = cap;
    }
    a->q[(a->qhead + a->qlen) % a->qcap] = (pending){cb, priv};
    a->qlen++;
    return 0;
}

/* Queue formatted bytes; with `expect`, a callback entry for the reply. */
static int queue(tc__aconn *a, int expect, tc__aconn_reply_fn cb, void *priv,
                 char *cmd, int len)
{
    int rc = -1;
    if (len >= 0 && !a->dead && (!expect || enqueue(a, cb, priv) == 0)) {
        if (tc__conn_append_raw(a->conn, cmd, (size_t)len) == TC_OK) {
            ev_io_start(a->loop, &a->wio);
            rc = 0;
        } else if (expect) {
            a->qlen--; /* take back the entry just added */
        }
    }
    if (len >= 0)
        free(cmd);
    return rc;
}

int tc__aconn_commandf(tc__aconn *a, tc__aconn_reply_fn cb, void *priv,
                       const char *fmt, ...)
{
    char *cmd = NULL;
    int len;
    va_list ap;
    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    return queue(a, 1, cb, priv, cmd, len);
}

int tc__aconn_command_argv(tc__aconn *a, tc__aconn_reply_fn cb, void *priv,
                           int argc, const char **argv,
                           const size_t *argvlen)
{
    /* Formatted straight into the connection's buffer (conn.c). */
    if (a->dead || enqueue(a, cb, priv) != 0)
        return -1;
    if (tc__conn_append(a->conn, argc, argv, argvlen) != TC_OK) {
        a->qlen--; /* take back the entry just added */
        return -1;
    }
    ev_io_start(a->loop, &a->wio);
    return 0;
}

int tc__aconn_subscribef(tc__aconn *a, const char *fmt, ...)
{
    char *cmd = NULL;
    int len;
    va_list ap;
    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (queue(a, 0, NULL, NULL, cmd, len) != 0)
        return -1;
    a->subscribed = 1;
    return 0;
}
