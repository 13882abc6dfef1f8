/*
 * One connection to Redis over TCP (IPv4 or IPv6), a unix socket, or TLS:
 * hiredis's command formatter and reply reader over socket I/O of our own.
 *
 * Why not hiredis's redisContext: hiredis 0.14 has no TLS, and it writes
 * with write(2), which raises SIGPIPE in the host process when Redis has
 * closed the connection. Here every write is send(MSG_NOSIGNAL) (plain) or
 * goes through tls.c's BIO that does the same, so no SIGPIPE ever reaches
 * the application, whatever its signal disposition.
 *
 * Thread safety: a tc__conn is not thread-safe; one thread at a time uses
 * it (the L2 pool: the thread holding the slot mutex). Replies handed out
 * are the caller's, freed with freeReplyObject().
 *
 * The socket is always non-blocking. The blocking calls (tc__conn_open,
 * tc__conn_get_reply, tc__conn_command) poll with their deadline; an event
 * loop can instead drive the step calls (tc__conn_flush_step,
 * tc__conn_read_step, tc__conn_next_reply) when tc__conn_fd() is ready.
 */
#ifndef TC_CONN_H
#define TC_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "tls.h"

typedef struct tc__conn tc__conn;

/** Where and how to connect; strings and `tls` are borrowed for the call
 *  to tc__conn_open(), except `tls`, which must outlive the connection. */
typedef struct tc__conn_opts {
    const char *host;          /* name or IPv4/IPv6 literal; or NULL: */
    const char *unix_path;     /* a unix socket instead */
    int port;
    uint32_t connect_timeout_ms; /* connect + TLS handshake; 0 = no limit */
    uint32_t command_timeout_ms; /* each tc__conn_get_reply; 0 = no limit */
    const tc__tls *tls;        /* NULL: plain; else TLS with this context */
    const char *server_name;   /* TLS: name to verify and send as SNI;
                                  NULL: `host` */
} tc__conn_opts;

/** The options `cfg` describes (pointers into `cfg`, which must outlive
 *  their use). */
void tc__conn_opts_of(const tc__config *cfg, tc__conn_opts *o);

/**
 * Connect (every address of the host in turn, within one connect timeout),
 * set TCP_NODELAY and keepalive on TCP, and complete the TLS handshake with
 * certificate and name verification. On success `*out` is the caller's,
 * freed by tc__conn_free(). Failures: TC_TIMEOUT, TC_L2_UNAVAILABLE,
 * TC_AUTH (a certificate refused by either side), TC_NO_MEMORY; detail in
 * tc_errmsg().
 */
tc_result tc__conn_open(const tc__conn_opts *o, tc__conn **out);
/** Close and free. No I/O, so it cannot block or fail. NULL is a no-op. */
void tc__conn_free(tc__conn *c);

/** Queue one command (argv borrowed for the call; argvlen NULL means
 *  strlen), formatted straight into the output buffer. No I/O.
 *  TC_NO_MEMORY on failure. */
tc_result tc__conn_append(tc__conn *c, int argc, const char **argv,
                          const size_t *argvlen);

/**
 * Send what is queued and read the next reply, within the command timeout
 * (one deadline for the whole call). On TC_OK `*reply` is the caller's
 * (error replies included). On failure the connection is broken for good
 * (drop it): TC_TIMEOUT, TC_L2_UNAVAILABLE (closed, reset...), TC_AUTH
 * (the server refused our client certificate), TC_PROTOCOL (a reply
 * hiredis cannot parse), TC_NO_MEMORY; detail in tc_errmsg().
 */
tc_result tc__conn_get_reply(tc__conn *c, redisReply **reply);

/** Queue one command already in the protocol's format (`cmd` borrowed for
 *  the call). No I/O. TC_NO_MEMORY on failure. */
tc_result tc__conn_append_raw(tc__conn *c, const char *cmd, size_t len);

/** 1 while queued output has not all been sent. */
int tc__conn_has_output(const tc__conn *c);

/** tc__conn_append + tc__conn_get_reply. */
tc_result tc__conn_command(tc__conn *c, int argc, const char **argv,
                           const size_t *argvlen, redisReply **reply);

/** Change the command timeout of later tc__conn_get_reply() calls (0: no
 *  limit, for commands that block by design). */
void tc__conn_set_command_timeout(tc__conn *c, uint32_t ms);

/** 1 when an idle connection cannot be trusted: the server closed it,
 *  reset it, or sent something nobody asked for. Never blocks. */
int tc__conn_stale(tc__conn *c);

/* ---- Non-blocking use (an event loop on tc__conn_fd()) ---------------- */

/** The socket, for poll/epoll/libev. Owned by the connection. */
int tc__conn_fd(const tc__conn *c);
/** Write queued output: 1 when all is sent, else TC__IO_WANT_READ or
 *  TC__IO_WANT_WRITE (wait for that, call again) or TC__IO_ERROR. */
int tc__conn_flush_step(tc__conn *c);
/** Read what the socket has into the reply reader: 1 when it read until it
 *  would block, or (plain sockets) got less than it asked for, which drains
 *  the socket without a recv that only says EAGAIN (TC__IO_WANT_READ/WRITE
 *  is then the direction to wait for, stored in `*want`), or TC__IO_ERROR
 *  (includes the end of the stream). */
int tc__conn_read_step(tc__conn *c, int *want);
/** The next complete reply already read, without I/O: 1 and `*reply`
 *  (the caller's), 0 when none is complete yet, TC__IO_ERROR when the
 *  stream cannot be parsed. */
int tc__conn_next_reply(tc__conn *c, redisReply **reply);
/** After TC__IO_ERROR from a step: its result class and message (owned by
 *  the connection, valid until its next call). */
tc_result tc__conn_error(const tc__conn *c, const char **msg);

#endif
