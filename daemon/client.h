/*
 * A client connection: its socket, input and output buffers, and
 * back-pressure (when to stop reading it and when to read again).
 *
 * Threads: loop thread only. A tcd_client is owned by the server's client
 * list until closed; once closed (`dead`) it is freed by whichever comes
 * last, the close or the return of its last job from a worker.
 */
#ifndef TCD_CLIENT_H
#define TCD_CLIENT_H

#include "server.h"

/** Take a freshly accepted descriptor (owned from now on) and start
 *  reading it. Logs and closes `fd` on allocation failure. */
void tcd_client_accept(tcd_server *srv, int fd);
/** Stop watching and close the socket; frees the client at once unless a
 *  job of it is still at a worker. Idempotent. */
void tcd_client_close(tcd_client *cl, const char *why);
/** Free a closed client with no job in flight. */
void tcd_client_free(tcd_client *cl);
/** Start (on = 1) or stop reading; never restarts a closing client. */
void tcd_client_set_reading(tcd_client *cl, int on);
/** Move finished replies at the head of the reply order into `out`. */
void tcd_client_flush(tcd_client *cl);
/** Send what is pending, resume reading when drained enough. Returns -1
 *  when the client was closed (and maybe freed): the caller must not touch
 *  it again. */
int tcd_client_write(tcd_client *cl);
/** Count a slot's bytes in the client's `held`: its request while not
 *  done, its reply once done. Uncharge before changing either. */
void tcd_client_charge(tcd_client *cl, tcd_job *j);
void tcd_client_uncharge(tcd_client *cl, tcd_job *j);
/** Reply bytes the client holds: unsent output plus finished replies
 *  still waiting for an earlier one. */
size_t tcd_client_reply_bytes(const tcd_client *cl);
/** 1 when the client holds so much that no further request of it may be
 *  parsed until its output drains. */
int tcd_client_backpressured(const tcd_client *cl);

#endif
