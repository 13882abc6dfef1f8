/* A Redis connection: TCP, unix socket or TLS; hiredis reader/formatter. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "error.h"

struct tc__conn {
    int fd;                /* owned, O_NONBLOCK */
    tc__tls_session *tls;  /* owned; NULL on a plain connection */
    redisReader *reader;   /* owned */
    char *out;             /* queued output [out_pos, out_len), owned */
    size_t out_len, out_pos, out_cap;
    uint32_t command_timeout_ms;
    tc_result err_class;   /* after TC__IO_ERROR */
    char err[240];
    char where[300];       /* "host:port", "unix:path", for messages */
};

/* Keepalive as hiredis sets it: probe after 15 s idle, every 5 s, 3 times. */
enum { KEEPALIVE_IDLE_S = 15 };

void tc__conn_opts_of(const tc__config *cfg, tc__conn_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->host = cfg->host;
    o->unix_path = cfg->unix_path;
    o->port = cfg->port;
    o->connect_timeout_ms = cfg->connect_timeout_ms;
    o->command_timeout_ms = cfg->command_timeout_ms;
    o->tls = cfg->tls ? cfg->tls_ctx : NULL;
    o->server_name = cfg->tls_server_name;
}

static int conn_fail(tc__conn *c, tc_result cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int conn_fail(tc__conn *c, tc_result cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    c->err_class = cls;
    return TC__IO_ERROR;
}

/* The failed TLS step's detail, moved onto the connection. */
static int tls_fail(tc__conn *c)
{
    const char *msg;
    tc_result cls = tc__tls_error(c->tls, &msg);
    return conn_fail(c, cls, "%s", msg);
}

tc_result tc__conn_error(const tc__conn *c, const char **msg)
{
    *msg = c->err;
    return c->err_class;
}

/* Record the connection's error in tc_errmsg(), naming the server. */
static tc_result report(const tc__conn *c)
{
    return tc__fail(c->err_class, "Redis at %s: %s", c->where, c->err);
}

/* Wait for `events` on fd until `deadline` (tc__now_ns; 0 = none).
 * 1 ready, 0 timed out, -1 error (errno). */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int ms = -1, rc;
        if (deadline) {
            uint64_t now = tc__now_ns();
            if (now >= deadline)
                return 0;
            /* Round up: never spin on a sub-millisecond remainder. */
            ms = (int)((deadline - now + 999999) / 1000000);
        }
        rc = poll(&p, 1, ms);
        if (rc > 0)
            return 1;
        if (rc == 0) {
            if (deadline && tc__now_ns() >= deadline)
                return 0;
            continue;
        }
        if (errno != EINTR)
            return -1;
    }
}

static short events_of(int want)
{
    return want == TC__IO_WANT_WRITE ? POLLOUT : POLLIN;
}

/* ---- Transport steps: plain or TLS ------------------------------------- */

static ssize_t raw_read(tc__conn *c, void *buf, size_t len)
{
    ssize_t n;
    if (c->tls) {
        n = tc__tls_read(c->tls, buf, len);
        return n == TC__IO_ERROR ? tls_fail(c) : n;
    }
    do
        n = recv(c->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return TC__IO_WANT_READ;
    return conn_fail(c, TC_L2_UNAVAILABLE, "%s", strerror(errno));
}

static ssize_t raw_write(tc__conn *c, const void *buf, size_t len)
{
    ssize_t n;
    if (c->tls) {
        n = tc__tls_write(c->tls, buf, len);
        return n == TC__IO_ERROR ? tls_fail(c) : n;
    }
    do /* MSG_NOSIGNAL: a closed peer gives EPIPE, never SIGPIPE. */
        n = send(c->fd, buf, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return TC__IO_WANT_WRITE;
    return conn_fail(c, TC_L2_UNAVAILABLE, "%s",
                     errno == EPIPE || errno == ECONNRESET
                         ? "connection closed by the server"
                         : strerror(errno));
}

int tc__conn_fd(const tc__conn *c)
{
    return c->fd;
}

int tc__conn_flush_step(tc__conn *c)
{
    while (c->out_pos < c->out_len) {
        ssize_t n = raw_write(c, c->out + c->out_pos, c->out_len - c->out_pos);
        if (n < 0)
            return (int)n;
        c->out_pos += (size_t)n;
    }
    c->out_pos = c->out_len = 0;
    return 1;
}

int tc__conn_read_step(tc__conn *c, int *want)
{
    char buf[16384];
    *want = TC__IO_WANT_READ;
    for (;;) {
        ssize_t n = raw_read(c, buf, sizeof(buf));
        if (n == 0)
            return conn_fail(c, TC_L2_UNAVAILABLE,
                             "connection closed by the server");
        if (n < 0) {
            if (n == TC__IO_ERROR)
                return TC__IO_ERROR;
            *want = (int)n;
            return 1;
        }
        if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
            return conn_fail(c, TC_NO_MEMORY, "out of memory reading a reply");
        /* A short read drained a plain socket: the recv that would only
         * say EAGAIN is skipped (the loop's level-triggered watcher reports
         * what comes later). TLS may hold decrypted bytes: read on. */
        if (!c->tls && (size_t)n < sizeof(buf))
            return 1;
    }
}

int tc__conn_next_reply(tc__conn *c, redisReply **reply)
{
    void *r = NULL;
    if (redisReaderGetReply(c->reader, &r) != REDIS_OK)
        return conn_fail(c, TC_PROTOCOL, "unreadable reply: %s",
                         c->reader->errstr);
    *reply = r;
    return r != NULL;
}

/* ---- Blocking use ------------------------------------------------------ */

/* Room for `len` more bytes of output. */
static tc_result out_reserve(tc__conn *c, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        char *nb;
        while (cap < c->out_len + len)
            cap *= 2;
        if (!(nb = realloc(c->out, cap)))
            return tc__fail(TC_NO_MEMORY, "out of memory queueing a command");
        c->out = nb;
        c->out_cap = cap;
    }
    return TC_OK;
}

tc_result tc__conn_append_raw(tc__conn *c, const char *cmd, size_t len)
{
    tc_result r = out_reserve(c, len);
    if (r != TC_OK)
        return r;
    memcpy(c->out + c->out_len, cmd, len);
    c->out_len += len;
    return TC_OK;
}

int tc__conn_has_output(const tc__conn *c)
{
    return c->out_pos < c->out_len;
}

/* Decimal digits of `v`. */
static size_t ndigits(size_t v)
{
    size_t n = 1;
    while (v >= 10)
        v /= 10, n++;
    return n;
}

/* `v` in decimal at `p` (`n` = ndigits(v) bytes). */
static void put_dec(char *p, size_t n, size_t v)
{
    while (n--) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Formatted in place in the output buffer (RESP, as
 * redisFormatCommandArgv formats it): no allocation and no printf per
 * command, which the pipelined paths pay for every request. */
tc_result tc__conn_append(tc__conn *c, int argc, const char **argv,
                          const size_t *argvlen)
{
    size_t need, nd = ndigits((size_t)argc), at;
    char *p;
    tc_result r;
    if (argc < 0)
        return tc__fail(TC_BAD_ARGUMENT, "negative argument count");
    need = 1 + nd + 2;
    for (int i = 0; i < argc; i++) {
        size_t l = argvlen ? argvlen[i] : strlen(argv[i]);
        need += 1 + ndigits(l) + 2 + l + 2;
    }
    if ((r = out_reserve(c, need)) != TC_OK)
        return r;
    p = c->out;
    at = c->out_len;
    p[at++] = '*';
    put_dec(p + at, nd, (size_t)argc);
    at += nd;
    p[at++] = '\r', p[at++] = '\n';
    for (int i = 0; i < argc; i++) {
        size_t l = argvlen ? argvlen[i] : strlen(argv[i]), d = ndigits(l);
        p[at++] = '$';
        put_dec(p + at, d, l);
        at += d;
        p[at++] = '\r', p[at++] = '\n';
        if (l)
            memcpy(p + at, argv[i], l);
        at += l;
        p[at++] = '\r', p[at++] = '\n';
    }
    c->out_len = at;
    return TC_OK;
}

/* The server may have said why before closing on us (a protocol error, a
 * too-large bulk, a TLS alert refusing our client certificate): collect
 * what is already there, without waiting. */
static void add_last_words(tc__conn *c)
{
    char saved[sizeof(c->err)];
    tc_result cls = c->err_class;
    redisReply *r = NULL;
    int want;
    memcpy(saved, c->err, sizeof(saved));
    if (tc__conn_read_step(c, &want) == TC__IO_ERROR &&
        c->err_class == TC_AUTH)
        return; /* a TLS alert: the server refused our certificate */
    if (tc__conn_next_reply(c, &r) == 1 && r->type == REDIS_REPLY_ERROR)
        snprintf(c->err, sizeof(c->err), "%s (the server said: %.*s)", saved,
                 (int)(r->len > 120 ? 120 : r->len), r->str);
    else
        memcpy(c->err, saved, sizeof(saved));
    c->err_class = cls;
    if (r)
        freeReplyObject(r);
}

tc_result tc__conn_get_reply(tc__conn *c, redisReply **reply)
{
    uint64_t deadline = c->command_timeout_ms
                            ? tc__deadline_ms(c->command_timeout_ms)
                            : 0;
    int rc, want;

    *reply = NULL;
    while ((rc = tc__conn_flush_step(c)) != 1) {
        if (rc == TC__IO_ERROR) {
            add_last_words(c);
            return report(c);
        }
        if ((rc = wait_fd(c->fd, events_of(rc), deadline)) <= 0)
            goto waited;
    }
    if (!c->tls) {
        /* Plain socket: the reply is rarely there right after the send, so
         * wait first, then read once (poll + recv, no recv that would
         * only say EAGAIN); TLS may hold decrypted bytes poll cannot see,
         * so it reads first, below. */
        char buf[16384];
        for (;;) {
            ssize_t n;
            if ((rc = tc__conn_next_reply(c, reply)) != 0)
                return rc == 1 ? TC_OK : report(c);
            if ((rc = wait_fd(c->fd, POLLIN, deadline)) <= 0)
                goto waited;
            n = raw_read(c, buf, sizeof(buf));
            if (n == 0) {
                conn_fail(c, TC_L2_UNAVAILABLE,
                          "connection closed by the server");
                return report(c);
            }
            if (n == TC__IO_ERROR)
                return report(c);
            if (n > 0 &&
                redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
                conn_fail(c, TC_NO_MEMORY, "out of memory reading a reply");
                return report(c);
            }
        }
    }
    for (;;) {
        if ((rc = tc__conn_next_reply(c, reply)) != 0)
            return rc == 1 ? TC_OK : report(c);
        if (tc__conn_read_step(c, &want) == TC__IO_ERROR)
            return report(c);
        /* A reply may now be complete: only wait when none is. */
        if ((rc = tc__conn_next_reply(c, reply)) != 0)
            return rc == 1 ? TC_OK : report(c);
        if ((rc = wait_fd(c->fd, events_of(want), deadline)) <= 0)
            goto waited;
    }
waited:
    if (rc == 0)
        conn_fail(c, TC_TIMEOUT, "no answer within %u ms",
                  (unsigned)c->command_timeout_ms);
    else
        conn_fail(c, TC_L2_UNAVAILABLE, "poll: %s", strerror(errno));
    return report(c);
}

tc_result tc__conn_command(tc__conn *c, int argc, const char **argv,
                           const size_t *argvlen, redisReply **reply)
{
    tc_result r = tc__conn_append(c, argc, argv, argvlen);
    return r == TC_OK ? tc__conn_get_reply(c, reply) : r;
}

int tc__conn_stale(tc__conn *c)
{
    char b;
    ssize_t n;
    int want;
    redisReply *r = NULL;

    if (c->out_len || c->reader->pos < c->reader->len)
        return 1; /* left out of step by an earlier call */
    n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return c->tls && tc__tls_pending(c->tls);
    if (n <= 0 || !c->tls)
        return 1; /* closed, reset, or plain data nobody asked for */
    /* TLS records arrived: they may be session tickets or a key update
     * rather than data. Let the session take them; only application data
     * or an end means out of step. */
    if (tc__conn_read_step(c, &want) == TC__IO_ERROR)
        return 1;
    if (tc__conn_next_reply(c, &r) != 0) {
        if (r)
            freeReplyObject(r);
        return 1;
    }
    return c->reader->pos < c->reader->len;
}

/* ---- Connect ----------------------------------------------------------- */

static void set_tcp_options(int fd)
{
    int one = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_IDLE_S / 3,
        cnt = 3;
    /* Best effort: a socket without them still works. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Non-blocking connect of a new socket to `sa`, waiting until `deadline`.
 * The fd, or -1 with errno (ETIMEDOUT on the deadline). */
static int connect_one(int family, const struct sockaddr *sa, socklen_t len,
                       uint64_t deadline)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc, soerr = 0, saved;
    socklen_t sl = sizeof(soerr);

    if (fd < 0)
        return -1;
    do
        rc = connect(fd, sa, len);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EAGAIN)
        goto fail;
    rc = wait_fd(fd, POLLOUT, deadline);
    if (rc == 0) {
        errno = ETIMEDOUT;
        goto fail;
    }
    if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        goto fail;
    if (soerr) {
        errno = soerr;
        goto fail;
    }
    return fd;
fail:
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* The socket part of tc__conn_open: c->fd, or a result with detail. */
static tc_result open_socket(tc__conn *c, const tc__conn_opts *o,
                             uint64_t deadline)
{
    if (o->unix_path) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        if (strlen(o->unix_path) >= sizeof(sa.sun_path))
            return tc__fail(TC_BAD_ARGUMENT, "unix socket path too long: %s",
                            o->unix_path);
        memcpy(sa.sun_path, o->unix_path, strlen(o->unix_path) + 1);
        c->fd = connect_one(AF_UNIX, (struct sockaddr *)&sa, sizeof(sa),
                            deadline);
        if (c->fd < 0)
            return errno == ETIMEDOUT
                       ? tc__fail(TC_TIMEOUT, "connect to %s timed out",
                                  c->where)
                       : tc__fail(TC_L2_UNAVAILABLE, "connect to %s: %s",
                                  c->where, strerror(errno));
        return TC_OK;
    }
    {
        struct addrinfo hints, *res = NULL, *ai;
        char port[16];
        int rc, last = ECONNREFUSED;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof(port), "%d", o->port);
        rc = getaddrinfo(o->host, port, &hints, &res);
        if (rc)
            return tc__fail(TC_L2_UNAVAILABLE, "cannot resolve %s: %s",
                            o->host, gai_strerror(rc));
        for (ai = res; ai; ai = ai->ai_next) {
            c->fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen,
                                deadline);
            if (c->fd >= 0)
                break;
            last = errno;
            if (last == ETIMEDOUT)
                break; /* the deadline is for all addresses together */
        }
        freeaddrinfo(res);
        if (c->fd < 0)
            return last == ETIMEDOUT
                       ? tc__fail(TC_TIMEOUT, "connect to %s timed out",
                                  c->where)
                       : tc__fail(TC_L2_UNAVAILABLE, "connect to %s: %s",
                                  c->where, strerror(last));
        set_tcp_options(c->fd);
        return TC_OK;
    }
}

static tc_result handshake(tc__conn *c, const tc__conn_opts *o,
                           uint64_t deadline)
{
    tc_result r = TC_OK;
    const char *name = o->server_name ? o->server_name : o->host;
    int rc;

    if (!name) /* a unix socket: nothing to verify against */
        return tc__fail(TC_BAD_ARGUMENT,
                        "TLS over a unix socket needs tls_server_name");
    c->tls = tc__tls_session_new(o->tls, c->fd, name, &r);
    if (!c->tls)
        return r;
    while ((rc = tc__tls_handshake(c->tls)) != 1) {
        if (rc == TC__IO_ERROR) {
            tls_fail(c);
            return report(c);
        }
        rc = wait_fd(c->fd, events_of(rc), deadline);
        if (rc == 0)
            return tc__fail(TC_TIMEOUT, "TLS handshake with %s timed out",
                            c->where);
        if (rc < 0)
            return tc__fail(TC_L2_UNAVAILABLE, "poll: %s", strerror(errno));
    }
    return TC_OK;
}


/* hiredis 0.14 builds a nil array (*-1) and a nil bulk ($-1) alike, as
 * REDIS_REPLY_NIL. A nil made for an array is marked (integer = 1, a field
 * a nil never uses and freeReplyObject ignores), so that a reply can be
 * sent on exactly as Redis sent it (tc_reply_is_nil_array()). */
static redisReplyObjectFunctions reply_fns;
static void *(*hiredis_nil)(const redisReadTask *);
static pthread_once_t reply_fns_once = PTHREAD_ONCE_INIT;

static void *create_nil(const redisReadTask *task)
{
    redisReply *r = hiredis_nil(task);
    if (r && task->type == REDIS_REPLY_ARRAY)
        r->integer = 1;
    return r;
}

static void reply_fns_init(void)
{
    redisReader *r = redisReaderCreate();
    if (!r)
        return; /* out of memory: the reader is not created either */
    reply_fns = *r->fn;
    hiredis_nil = reply_fns.createNil;
    reply_fns.createNil = create_nil;
    redisReaderFree(r);
}

static redisReader *reader_create(void)
{
    redisReader *r;
    pthread_once(&reply_fns_once, reply_fns_init);
    if (!hiredis_nil || !(r = redisReaderCreate()))
        return NULL;
    r->fn = &reply_fns;
    return r;
}

tc_result tc__conn_open(const tc__conn_opts *o, tc__conn **out)
{
    tc__conn *c = calloc(1, sizeof(*c));
    uint64_t deadline = o->connect_timeout_ms
                            ? tc__deadline_ms(o->connect_timeout_ms)
                            : 0;
    tc_result r;

    if (!c)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    c->fd = -1;
    c->command_timeout_ms = o->command_timeout_ms;
    if (o->unix_path)
        snprintf(c->where, sizeof(c->where), "unix:%s", o->unix_path);
    else if (strchr(o->host, ':'))
        snprintf(c->where, sizeof(c->where), "[%s]:%d", o->host, o->port);
    else
        snprintf(c->where, sizeof(c->where), "%s:%d", o->host, o->port);
    if (!(c->reader = reader_create())) {
        free(c);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    r = open_socket(c, o, deadline);
    if (r == TC_OK && o->tls)
        r = handshake(c, o, deadline);
    if (r != TC_OK) {
        tc__conn_free(c);
        return r;
    }
    *out = c;
    return TC_OK;
}

void tc__conn_free(tc__conn *c)
{
    if (!c)
        return;
    tc__tls_session_free(c->tls);
    if (c->fd >= 0)
        close(c->fd);
    redisReaderFree(c->reader);
    free(c->out);
    free(c);
}

void tc__conn_set_command_timeout(tc__conn *c, uint32_t ms)
{
    c->command_timeout_ms = ms;
}
