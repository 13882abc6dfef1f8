/*
 * Dispatch: turn a client's input into requests, run each where its command
 * says (the loop or a worker), and keep the replies in request order. One
 * job of a client is at a worker at a time, so that its commands take
 * effect in the order it sent them (a GET after a SET in one pipeline sees
 * the SET).
 *
 * Threads: loop thread only, except tcd_dispatch_run (worker threads).
 */
#ifndef TCD_DISPATCH_H
#define TCD_DISPATCH_H

#include "server.h"

/** Give the client a Redis connection of its own (pin.h) because of
 *  `why` (borrowed): 0, or -1 with the refusal (--max-pinned reached)
 *  written to `out`. */
int tcd_dispatch_pin(tcd_client *cl, const tcd_req *why, tcd_buf *out);
/** Parse and dispatch the complete requests in the client's input, until
 *  it is empty, incomplete, or back-pressure pauses the client. */
void tcd_dispatch_input(tcd_client *cl);
/** Answer a protocol error in order, then close once it is sent. `err` is
 *  the text after "ERR ". */
void tcd_dispatch_protocol_error(tcd_client *cl, const char *err);
/** ev_async callback: collect jobs the workers finished, hand each client
 *  its next job, and send the replies that are now in order. */
void tcd_dispatch_done(struct ev_loop *loop, ev_async *w, int revents);
/** Submit the client's waiting jobs in order: pipelined ones (pipeline.h)
 *  at once, then a worker job once none of the client's is pipelined, and
 *  nothing while one is at a worker or its unsent replies are over
 *  --max-output (then it waits until they drain: tcd_client_write calls
 *  this again). */
void tcd_dispatch_next(tcd_client *cl);
/** Put the client on the list of those with replies to send. */
void tcd_dispatch_touch(tcd_client *cl);
/** Move the client's finished replies to its output and send them, unless
 *  a later command of its is pipelined to Redis and they are small: then
 *  they leave with its answer, in one send (finished() touches the
 *  client). Loop thread. */
void tcd_dispatch_send(tcd_client *cl);
/** Send the touched clients' finished replies (tcd_dispatch_send). */
void tcd_dispatch_flush_touched(tcd_server *srv);
/** ev_prepare callback (data: the server): tcd_dispatch_flush_touched
 *  once per loop iteration, after the pipeline's replies were read. */
void tcd_dispatch_prepare(struct ev_loop *loop, ev_prepare *w, int revents);
/** Put a slot (a finished reply, or one finished later: done = 0, no
 *  request) at the end of the client's reply order. */
void tcd_dispatch_append_slot(tcd_client *cl, tcd_job *j);
/** The worker pool's job runner. Runs on a worker thread. */
void tcd_dispatch_run(tcd_job *job);

#endif
