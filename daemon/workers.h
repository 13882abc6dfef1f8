/*
 * Worker pool: threads that run the blocking library calls (L1 misses,
 * writes, INFO) so that the event loop never waits on Redis. Jobs go in
 * through a locked FIFO; finished jobs come back through a second locked
 * list plus an ev_async wake-up of the loop (the libuv uv_async_send
 * pattern). Thread-safe except create/destroy.
 */
#ifndef TCD_WORKERS_H
#define TCD_WORKERS_H

#include <ev.h>

#include "server.h"

typedef void (*tcd_work_run)(tcd_job *job);

/** Start `n` threads running `run` on each job, then queueing it for the
 *  loop and signalling `async` (borrowed, must outlive the pool). Returns
 *  NULL on failure. */
tcd_workers *tcd_workers_create(unsigned n, tcd_work_run run,
                                struct ev_loop *loop, ev_async *async);
/** Queue a job (ownership passes to the pool until it comes back). */
void tcd_workers_submit(tcd_workers *w, tcd_job *job);
/** Queue a job finished elsewhere (a pinned client's thread, pin.h) for
 *  the loop, as a worker does. Any thread. */
void tcd_workers_complete(tcd_workers *w, tcd_job *job);
/** Finished jobs in completion order, linked by qnext; caller owns them. */
tcd_job *tcd_workers_take_done(tcd_workers *w);
/** Jobs queued and not yet started. */
unsigned tcd_workers_backlog(tcd_workers *w);
/** Run every queued job and join the threads. Collect what they finished
 *  with tcd_workers_take_done() afterwards, then destroy. */
void tcd_workers_drain(tcd_workers *w);
/** Free a drained pool. NULL is a no-op. */
void tcd_workers_destroy(tcd_workers *w);

#endif
