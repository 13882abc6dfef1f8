/*
 * Background loads: a small bounded pool of threads owned by the cache,
 * for loads that outlive their caller (a soft or hard timeout) and eager
 * refreshes. Threads start lazily, at most TC__BG_THREADS, with every
 * signal blocked; at most TC__BG_QUEUE jobs wait.
 *
 * Lifetime: a loader that never returns must not hang tc_cache_destroy(),
 * so pool threads are detached and each holds a reference to the cache
 * (tc__cache_unref()): destroy stops the pool (queued jobs are cancelled,
 * idle threads leave and it waits for that) without waiting for running
 * jobs, and the cache is freed by whoever drops the last reference: the
 * destroying thread when no loader is running. A job that finds the pool
 * stopped after its loader returned discards the result.
 *
 * Ownership and locking: the queue, the counters and `stopping` are
 * guarded by the pool mutex; a job is owned by the pool until its function
 * runs, then by that function.
 */
#ifndef TC_BACKGROUND_H
#define TC_BACKGROUND_H

#include <stddef.h>

#define TC__BG_THREADS 8
#define TC__BG_QUEUE 1024

struct tc_cache;
typedef struct tc__bg tc__bg;

/** A job: `fn(arg, cancelled)` runs exactly once, on a pool thread with
 *  cancelled == 0, or from tc__bg_stop() with cancelled == 1 if it never
 *  started. It owns `arg`. */
typedef void (*tc__bg_fn)(void *arg, int cancelled);

tc__bg *tc__bg_create(struct tc_cache *c);
/** Queue a job, starting a thread if none is idle and fewer than
 *  TC__BG_THREADS run. 0 queued; -1 refused (stopping, queue full, no
 *  thread could start, out of memory): the job was not taken. Any thread. */
int tc__bg_submit(tc__bg *b, tc__bg_fn fn, void *arg);
/** No new jobs; cancel queued ones; wait for idle threads to leave (and
 *  drop their references). Does not wait for running jobs. Called once,
 *  by tc_cache_destroy(). */
void tc__bg_stop(tc__bg *b);
/** 1 once tc__bg_stop() ran. Any thread. */
int tc__bg_stopping(tc__bg *b);
/** Jobs queued or running (tests). Any thread. */
size_t tc__bg_busy(tc__bg *b);
/** Free the pool: only when no thread of it is left (the cache's last
 *  reference). NULL is a no-op. */
void tc__bg_free(tc__bg *b);

#endif
