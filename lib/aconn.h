/*
 * An asynchronous Redis connection on a libev loop: a tc__conn (plain TCP,
 * unix socket or TLS; it never raises SIGPIPE) driven by I/O watchers, with
 * a FIFO of reply callbacks. The bus's subscriber and command connections
 * are made of these (bus.c), so the bus reaches every Redis the L2 pool
 * reaches, TLS included.
 *
 * Why not hiredis's redisAsyncContext: hiredis 0.14 has no TLS and writes
 * with write(2).
 *
 * Replies are matched to commands in order. A connection that has sent a
 * subscribing command (tc__aconn_subscribef) also receives pushes
 * (messages, subscribe confirmations): those, and any reply for which no
 * callback is waiting, go to the connection's push handler.
 *
 * Thread safety: none; every call, and every callback, on the loop's
 * thread. Replies passed to callbacks are borrowed for the call.
 */
#ifndef TC_ACONN_H
#define TC_ACONN_H

#include <ev.h>
#include <hiredis/hiredis.h>

#include "conn.h"

typedef struct tc__aconn tc__aconn;

/** A reply (borrowed for the call) to a command sent with `priv`. */
typedef void (*tc__aconn_reply_fn)(tc__aconn *a, redisReply *r, void *priv);
/** The connection failed (closed, reset, unparsable); `why` is borrowed for
 *  the call. Called at most once; no callback of `a` runs after it. The
 *  owner then frees `a` (it may do so within this callback). */
typedef void (*tc__aconn_error_fn)(tc__aconn *a, const char *why, void *data);

/** What an asynchronous connection reports to its owner. */
typedef struct tc__aconn_events {
    tc__aconn_error_fn on_error;
    tc__aconn_reply_fn on_push; /* may be NULL: pushes are dropped */
    void *data;                 /* passed to both */
} tc__aconn_events;

/**
 * Connect (blocking, within o->connect_timeout_ms: TCP or unix connect and
 * the TLS handshake) and start watching on `loop`. `ev` is copied. On
 * success `*out` is the caller's, freed by tc__aconn_free(). Failures as
 * tc__conn_open(), detail in tc_errmsg().
 */
tc_result tc__aconn_open(struct ev_loop *loop, const tc__conn_opts *o,
                         const tc__aconn_events *ev, tc__aconn **out);

/** Stop, close, drop pending callbacks without calling them, and free.
 *  Safe from within any of `a`'s own callbacks (the free then happens when
 *  the callback returns). NULL is a no-op. */
void tc__aconn_free(tc__aconn *a);

/** Queue a command (hiredis format: %s, %b) whose reply goes to cb(a, r,
 *  priv); cb may be NULL (reply dropped). Sent when the socket is writable.
 *  -1 on out of memory or a bad format (the connection is unchanged). */
int tc__aconn_commandf(tc__aconn *a, tc__aconn_reply_fn cb, void *priv,
                       const char *fmt, ...);
/** The same with an argument vector (argvlen NULL: strlen). */
int tc__aconn_command_argv(tc__aconn *a, tc__aconn_reply_fn cb, void *priv,
                           int argc, const char **argv,
                           const size_t *argvlen);
/** Send what is queued now, without waiting for the loop to report the
 *  socket writable (a queued command otherwise goes out at the next loop
 *  iteration's writability event); what does not fit waits for that event
 *  as before. A failure is reported through on_error (at most once, as
 *  always; the owner may free `a` there). */
void tc__aconn_flush(tc__aconn *a);
/** Within a reply callback: the reply is the callback's from now on (free
 *  it with freeReplyObject()), not freed when the callback returns. */
void tc__aconn_keep_reply(tc__aconn *a);
/** Queue a subscribing command (SUBSCRIBE...): its replies, and every
 *  message after it, go to the push handler. */
int tc__aconn_subscribef(tc__aconn *a, const char *fmt, ...);

#endif
