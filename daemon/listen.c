#include "listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "log.h"

#define ACCEPT_BATCH 64

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
        tcd_client_accept(srv, fd);
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

static int open_unix(tcd_server *srv)
{
    const char *path = srv->cfg->socket_path;
    struct sockaddr_un a;
    struct stat st;
    mode_t old;
    int fd;
    if (!path || !path[0])
        return -1;
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

int tcd_listen_start(tcd_server *srv)
{
    struct ev_loop *loop = srv->loop;
    ev_io_init(&srv->unix_io, on_accept, -1, EV_READ);
    ev_io_init(&srv->tcp_io, on_accept, -1, EV_READ);
    ev_timer_init(&srv->accept_retry, on_accept_retry, 0.1, 0.);
    srv->accept_retry.data = srv;
    if (srv->cfg->socket_path && srv->cfg->socket_path[0] &&
        open_unix(srv) != 0)
        return -1;
    if (srv->cfg->port && open_tcp(srv) != 0)
        return -1;
    ev_io_set(&srv->unix_io, srv->unix_fd, EV_READ);
    ev_io_set(&srv->tcp_io, srv->tcp_fd, EV_READ);
    srv->unix_io.data = srv->tcp_io.data = srv;
    if (srv->unix_fd >= 0)
        ev_io_start(loop, &srv->unix_io);
    if (srv->tcp_fd >= 0)
        ev_io_start(loop, &srv->tcp_io);
    return 0;
}

void tcd_listen_stop(tcd_server *srv)
{
    struct ev_loop *loop = srv->loop;
    if (ev_is_active(&srv->unix_io))
        ev_io_stop(loop, &srv->unix_io);
    if (ev_is_active(&srv->tcp_io))
        ev_io_stop(loop, &srv->tcp_io);
    ev_timer_stop(loop, &srv->accept_retry);
    if (srv->unix_fd >= 0) {
        close(srv->unix_fd);
        unlink(srv->cfg->socket_path);
        srv->unix_fd = -1;
    }
    if (srv->tcp_fd >= 0) {
        close(srv->tcp_fd);
        srv->tcp_fd = -1;
    }
}
