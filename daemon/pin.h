/*
 * Pinned clients: a client that needs a Redis connection of its own (WATCH,
 * SELECT of another database, a blocking command, SUBSCRIBE, MONITOR) gets
 * one (a tc_session) and a thread that runs its commands on it, so that a
 * BLPOP waits there and never holds a worker. Its jobs take the same path
 * as a worker's (dispatch.c: one at a time, in order; back through the done
 * queue). In pub/sub and MONITOR mode the thread also reads what Redis
 * pushes and hands each message to the loop as a "push" job.
 *
 * Threads: tcd_pin_* run on the loop thread; the pin's thread owns the
 * session. A tcd_pin is freed by whoever drops the last reference: the
 * loop (tcd_pin_release), the thread (on exit), each push in flight.
 */
#ifndef TCD_PIN_H
#define TCD_PIN_H

#include "server.h"

typedef struct tcd_pin tcd_pin;

/** Pin `cl`: start its thread (the connection opens on its first job).
 *  NULL when --max-pinned clients are pinned already or a thread cannot
 *  start (the caller answers an error). */
tcd_pin *tcd_pin_start(tcd_client *cl);
/** Hand the client's next job to its thread (one at a time). */
void tcd_pin_submit(tcd_pin *p, tcd_job *job);
/** The client is gone: stop the thread (a blocking command in progress is
 *  interrupted; any other finishes), and drop the loop's reference. */
void tcd_pin_release(tcd_pin *p);
/** The client finished sending: a blocking command of it in progress
 *  (BLPOP k 0) would wait for nobody, so it ends now, as in Redis. */
void tcd_pin_hangup(tcd_pin *p);
/** A push job came back to the loop: hand it to its client if still there
 *  (in order: before every reply not yet made) and return the client, or
 *  free it and return NULL. */
tcd_client *tcd_pin_deliver(tcd_server *srv, tcd_job *push);
/** The client's output drained: let its thread read pushes again. */
void tcd_pin_drained(tcd_client *cl);
/** Shutdown: wait until every pin thread has exited (after the clients
 *  were released). */
void tcd_pin_wait_all(tcd_server *srv);
/** What a pin thread tells the loop with a finished job (job->pin_note). */
enum {
    TCD_PIN_NOTE_UNPIN = 1,      /* RESET: the connection is gone; unpin */
    TCD_PIN_NOTE_STREAM_END = 2, /* out of pub/sub mode: MULTI is ours */
    TCD_PIN_NOTE_MULTI = 4,      /* ... and this MULTI started one here */
    TCD_PIN_NOTE_HELD = 8        /* the client's input was held for this
                                    job (MULTI in pub/sub mode) */
};
/** A job of a pinned client came back with a note: apply it (loop
 *  thread), and parse the client's input again if it was held for it. */
void tcd_pin_noted(tcd_client *cl, tcd_job *job);
/** Whether a job of a pinned client runs on its thread (1) or a worker
 *  (0: INFO, TC.INVALIDATE, the daemon's own commands). */
int tcd_pin_runs(const tcd_job *job);

#endif
