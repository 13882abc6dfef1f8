#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "log.h"
#include "workers.h"

#define READ_CHUNK (16 * 1024)
#define MAX_QUEUED 1024       /* replies waiting per client before pausing */
#define ACCEPT_BATCH 64

static int try_write(tcd_client *cl);
static void process_input(tcd_client *cl);

/* ---- client lifetime ---------------------------------------------------- */

static void free_client(tcd_client *cl)
{
    tcd_job *j = cl->head;
    while (j) {
        tcd_job *n = j->next;
        tcd_req_free(j->req);
        tcd_buf_free(&j->out);
        free(j);
        j = n;
    }
    tcd_buf_free(&cl->in);
    tcd_buf_free(&cl->out);
    free(cl->name);
    free(cl);
}

static void close_client(tcd_client *cl, const char *why)
{
    tcd_server *srv = cl->srv;
    if (cl->dead)
        return;
    tcd_debug("client %llu closed: %s", (unsigned long long)cl->id, why);
    ev_io_stop(srv->loop, &cl->rio);
    ev_io_stop(srv->loop, &cl->wio);
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
    if (cl->inflight == 0)
        free_client(cl); /* else the last returning job frees it */
}

static void set_reading(tcd_client *cl, int on)
{
    if (on && !cl->reading && !cl->closing && !cl->dead)
        ev_io_start(cl->srv->loop, &cl->rio);
    else if (!on && cl->reading)
        ev_io_stop(cl->srv->loop, &cl->rio);
    else
        return;
    cl->reading = on;
}

static int backpressured(const tcd_client *cl)
{
    return tcd_buf_pending(&cl->out) > cl->srv->cfg->max_output ||
           cl->queued >= MAX_QUEUED;
}

/* Move finished replies at the head of the order list into `out`. */
static void flush_slots(tcd_client *cl)
{
    while (cl->head && cl->head->done) {
        tcd_job *j = cl->head;
        cl->head = j->next;
        if (!cl->head)
            cl->tail = NULL;
        cl->queued--;
        if (j->out.oom)
            cl->out.oom = 1;
        else if (tcd_buf_pending(&j->out))
            tcd_buf_add(&cl->out, j->out.p + j->out.off,
                        tcd_buf_pending(&j->out));
        if (j->close_after)
            cl->closing = 1;
        tcd_req_free(j->req);
        tcd_buf_free(&j->out);
        free(j);
    }
}

/* Send what is pending. Returns -1 when the client was closed (and maybe
 * freed): the caller must not touch it again. */
static int try_write(tcd_client *cl)
{
    tcd_server *srv = cl->srv;
    if (cl->out.oom) {
        close_client(cl, "out of memory for replies");
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
        close_client(cl, "write failed");
        return -1;
    }
    if (ev_is_active(&cl->wio))
        ev_io_stop(srv->loop, &cl->wio);
    if (cl->closing && !cl->head) {
        close_client(cl, "closed after reply");
        return -1;
    }
    if (!cl->closing && !cl->reading &&
        tcd_buf_pending(&cl->out) < srv->cfg->max_output / 2 &&
        cl->queued < MAX_QUEUED / 2) {
        set_reading(cl, 1);
        /* Requests read before the pause may already be complete. */
        if (tcd_buf_pending(&cl->in) > 0) {
            process_input(cl);
            flush_slots(cl);
            return try_write(cl);
        }
    }
    return 0;
}

/* ---- dispatch ----------------------------------------------------------- */

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
    if (cl->tail)
        cl->tail->next = j;
    else
        cl->head = j;
    cl->tail = j;
    cl->queued++;
}

static void run_job(tcd_job *job)
{
    job->cmd->work(job->srv, job->req, &job->out);
}

/* Run one request. Takes ownership of `req`. */
static void dispatch(tcd_client *cl, tcd_req *req)
{
    tcd_server *srv = cl->srv;
    const tcd_cmd *cmd = tcd_cmd_lookup(req->argv[0], req->argl[0]);
    tcd_job *slot = NULL;
    tcd_buf *out = &cl->out;
    int rc = TCD_DONE;
    const char *pw = srv->cfg->password;

    TCD_COUNT(srv, commands, 1);
    if (cl->head) { /* replies are pending ahead of this one: queue it */
        slot = new_slot(cl);
        if (!slot) {
            tcd_req_free(req);
            cl->out.oom = 1;
            cl->closing = 1;
            return;
        }
        slot->done = 1;
        out = &slot->out;
    }
    if (!cmd) {
        TCD_COUNT(srv, commands_rejected, 1);
        tcd_cmd_reply_unknown(req, out);
    } else if (pw && *pw && !cl->authed && !(cmd->flags & TCD_CMD_NOAUTH)) {
        TCD_COUNT(srv, commands_rejected, 1);
        tcd_reply_error(out, "NOAUTH Authentication required.");
    } else if (!tcd_cmd_check_arity(cmd, req, out)) {
        TCD_COUNT(srv, commands_rejected, 1);
    } else if (cmd->loop && !(cmd->work && (cl->inflight || cl->wait_head))) {
        /* With an earlier command of this client still at a worker, anything
         * that touches the cache waits its turn: a GET after a SET in the
         * same pipeline must see the SET. */
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
        append_slot(cl, slot);
        TCD_COUNT(srv, commands_deferred, 1);
        if (cl->inflight == 0) {
            cl->inflight = 1;
            tcd_workers_submit(srv->workers, slot);
        } else {
            slot->qnext = NULL;
            if (cl->wait_tail)
                cl->wait_tail->qnext = slot;
            else
                cl->wait_head = slot;
            cl->wait_tail = slot;
        }
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

/* Protocol error: answer it in order, then close. */
static void protocol_error(tcd_client *cl, const char *err)
{
    tcd_server *srv = cl->srv;
    char text[160];
    TCD_COUNT(srv, protocol_errors, 1);
    tcd_info("client %llu: %s; closing", (unsigned long long)cl->id, err);
    snprintf(text, sizeof(text), "ERR %s", err);
    if (cl->head) {
        tcd_job *slot = new_slot(cl);
        if (slot) {
            slot->done = 1;
            slot->close_after = 1;
            tcd_reply_error(&slot->out, text);
            append_slot(cl, slot);
        }
    } else {
        tcd_reply_error(&cl->out, text);
    }
    cl->closing = 1;
    set_reading(cl, 0);
}

static void process_input(tcd_client *cl)
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
        if (backpressured(cl)) {
            set_reading(cl, 0);
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
        if (rc == TCD_PARSE_ERR) {
            protocol_error(cl, err);
            return;
        }
        tcd_buf_consume(&cl->in, used);
        if (req)
            dispatch(cl, req);
    }
    cl->partial_since = 0;
    if (cl->closing)
        set_reading(cl, 0);
}

/* ---- I/O callbacks ----------------------------------------------------- */

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
        set_reading(cl, 0);
        return;
    }
    if (room < READ_CHUNK)
        room = READ_CHUNK;
    p = tcd_buf_space(&cl->in, room);
    if (!p) {
        close_client(cl, "out of memory for input");
        return;
    }
    n = recv(cl->fd, p, room, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        close_client(cl, "read failed");
        return;
    }
    if (n == 0) {
        /* Peer finished sending: answer what it sent, then close. */
        set_reading(cl, 0);
        cl->closing = 1;
        cl->partial_since = 0;
        if (!cl->head && tcd_buf_pending(&cl->out) == 0) {
            close_client(cl, "end of input");
            return;
        }
        try_write(cl);
        return;
    }
    cl->in.len += (size_t)n;
    TCD_COUNT(srv, net_input_bytes, (unsigned long long)n);
    process_input(cl);
    flush_slots(cl);
    try_write(cl);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    try_write(w->data);
}

static void on_done(struct ev_loop *loop, ev_async *w, int revents)
{
    tcd_server *srv = w->data;
    tcd_job *j = tcd_workers_take_done(srv->workers);
    (void)loop;
    (void)revents;
    while (j) {
        tcd_job *next = j->qnext;
        tcd_client *cl = j->client;
        j->done = 1;
        cl->inflight--;
        if (!cl->dead && cl->wait_head) { /* this client's next command */
            tcd_job *n = cl->wait_head;
            cl->wait_head = n->qnext;
            if (!cl->wait_head)
                cl->wait_tail = NULL;
            cl->inflight = 1;
            tcd_workers_submit(srv->workers, n);
        }
        if (cl->dead) {
            if (cl->inflight == 0)
                free_client(cl);
        } else if (!cl->touched) {
            cl->touched = 1;
            cl->touched_next = srv->touched;
            srv->touched = cl;
        }
        j = next;
    }
    while (srv->touched) {
        tcd_client *cl = srv->touched;
        srv->touched = cl->touched_next;
        cl->touched = 0;
        flush_slots(cl);
        try_write(cl);
    }
}

static void client_init(tcd_server *srv, int fd)
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
    set_reading(cl, 1);
    tcd_debug("client %llu connected", (unsigned long long)cl->id);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    tcd_server *srv = w->data;
    int is_tcp = w == &srv->tcp_io;
    (void)revents;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment rather
                 * than spin on a listener that stays readable. */
                tcd_warn("accept: %s; pausing accepts for 100 ms",
                         strerror(errno));
                ev_io_stop(loop, &srv->unix_io);
                ev_io_stop(loop, &srv->tcp_io);
                ev_timer_start(loop, &srv->accept_retry);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK &&
                       errno != EINTR && errno != ECONNABORTED) {
                tcd_warn("accept: %s", strerror(errno));
            }
            return;
        }
        if (TCD_READ(srv, connected) >= srv->cfg->max_clients) {
            static const char msg[] = "-ERR max number of clients reached\r\n";
            TCD_COUNT(srv, connections_rejected, 1);
            if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL) < 0) {
                /* it is being refused anyway */
            }
            close(fd);
            continue;
        }
        if (is_tcp) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        client_init(srv, fd);
    }
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    tcd_server *srv = w->data;
    (void)revents;
    if (srv->stopping)
        return;
    if (srv->unix_fd >= 0)
        ev_io_start(loop, &srv->unix_io);
    if (srv->tcp_fd >= 0)
        ev_io_start(loop, &srv->tcp_io);
}

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
            protocol_error(cl, "Protocol error: timeout reading the request");
            flush_slots(cl);
            try_write(cl);
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

/* ---- listeners ---------------------------------------------------------- */

static int open_unix(tcd_server *srv)
{
    const char *path = srv->cfg->socket_path;
    struct sockaddr_un a;
    struct stat st;
    mode_t old;
    int fd;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        int probe;
        if (!S_ISSOCK(st.st_mode)) {
            tcd_error("%s exists and is not a socket; not touching it", path);
            return -1;
        }
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 &&
            connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
            close(probe);
            tcd_error("%s is in use by a running server", path);
            return -1;
        }
        if (probe >= 0)
            close(probe);
        unlink(path); /* stale socket of a server that died */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tcd_error("socket: %s", strerror(errno));
        return -1;
    }
    /* Never let the socket exist with looser permissions, not even briefly. */
    old = umask(0777 & ~(mode_t)srv->cfg->socket_mode);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        umask(old);
        tcd_error("bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    umask(old);
    if (chmod(path, (mode_t)srv->cfg->socket_mode) != 0 ||
        listen(fd, 1024) != 0) {
        tcd_error("listen %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    srv->unix_fd = fd;
    tcd_info("listening on unix socket %s (mode %04o)", path,
             srv->cfg->socket_mode);
    return 0;
}

static int open_tcp(tcd_server *srv)
{
    struct sockaddr_in a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tcd_error("socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)srv->cfg->port);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(fd, 1024) != 0) {
        tcd_error("listen on 127.0.0.1:%d: %s", srv->cfg->port,
                  strerror(errno));
        close(fd);
        return -1;
    }
    srv->tcp_fd = fd;
    tcd_info("listening on 127.0.0.1:%d", srv->cfg->port);
    return 0;
}

int tcd_server_init(tcd_server *srv, struct ev_loop *loop,
                    const tcd_config *cfg, tc_cache *cache)
{
    memset(srv, 0, sizeof(*srv));
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
    ev_async_init(&srv->done_async, on_done);
    srv->done_async.data = srv;
    ev_async_start(loop, &srv->done_async);
    srv->workers = tcd_workers_create(cfg->workers, run_job, loop,
                                      &srv->done_async);
    if (!srv->workers)
        goto fail;
    if (cfg->socket_path[0] && open_unix(srv) != 0)
        goto fail;
    if (cfg->port && open_tcp(srv) != 0)
        goto fail;

    ev_io_init(&srv->unix_io, on_accept, srv->unix_fd, EV_READ);
    ev_io_init(&srv->tcp_io, on_accept, srv->tcp_fd, EV_READ);
    srv->unix_io.data = srv->tcp_io.data = srv;
    if (srv->unix_fd >= 0)
        ev_io_start(loop, &srv->unix_io);
    if (srv->tcp_fd >= 0)
        ev_io_start(loop, &srv->tcp_io);
    ev_timer_init(&srv->accept_retry, on_accept_retry, 0.1, 0.);
    srv->accept_retry.data = srv;
    {
        double iv = cfg->read_timeout_ms / 4000.0;
        iv = iv < 0.01 ? 0.01 : iv > 1.0 ? 1.0 : iv;
        ev_timer_init(&srv->sweep, on_sweep, iv, iv);
        srv->sweep.data = srv;
        ev_timer_start(loop, &srv->sweep);
        ev_unref(loop); /* housekeeping does not keep the loop alive */
    }
    ev_signal_init(&srv->sigterm, on_signal, SIGTERM);
    ev_signal_init(&srv->sigint, on_signal, SIGINT);
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
    if (ev_is_active(&srv->unix_io))
        ev_io_stop(loop, &srv->unix_io);
    if (ev_is_active(&srv->tcp_io))
        ev_io_stop(loop, &srv->tcp_io);
    ev_timer_stop(loop, &srv->accept_retry);
    if (ev_is_active(&srv->sweep)) {
        ev_ref(loop);
        ev_timer_stop(loop, &srv->sweep);
    }
    ev_signal_stop(loop, &srv->sigterm);
    ev_signal_stop(loop, &srv->sigint);
    if (srv->unix_fd >= 0) {
        close(srv->unix_fd);
        unlink(srv->cfg->socket_path);
        srv->unix_fd = -1;
    }
    if (srv->tcp_fd >= 0) {
        close(srv->tcp_fd);
        srv->tcp_fd = -1;
    }
    /* Requests already accepted (writes among them) run to completion. */
    if (srv->workers) {
        tcd_workers_drain(srv->workers);
        on_done(loop, &srv->done_async, 0);
        tcd_workers_destroy(srv->workers);
        srv->workers = NULL;
    }
    ev_async_stop(loop, &srv->done_async);
    while (srv->clients) {
        tcd_client *cl = srv->clients;
        if (tcd_buf_pending(&cl->out) > 0 && !cl->out.oom) {
            /* One non-blocking attempt to deliver the last replies. */
            ssize_t n = send(cl->fd, cl->out.p + cl->out.off,
                             tcd_buf_pending(&cl->out),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)n;
        }
        close_client(cl, "server shutting down");
    }
    tcd_proto_free(srv->proto);
    srv->proto = NULL;
}
