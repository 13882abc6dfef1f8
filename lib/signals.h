/*
 * The library and signals: it never raises SIGPIPE in its caller's process
 * and never takes a signal meant for the application.
 *
 * hiredis 0.14 writes with write(2): a write to a connection Redis has
 * closed raises SIGPIPE, whose default action kills the process. SIGPIPE
 * from write(2) is sent to the writing thread, so:
 *   - the library's own threads (bus, L2 reconnect) start with every signal
 *     blocked: a SIGPIPE there stays pending on that thread, harmlessly;
 *   - writes on an application thread run inside a guard that blocks
 *     SIGPIPE, and on leaving consumes a SIGPIPE the guarded code raised
 *     (one already pending before is left alone), as libcurl does.
 * Callable from any thread; the guard is per call, on the calling thread.
 */
#ifndef TC_SIGNALS_H
#define TC_SIGNALS_H

#include <pthread.h>
#include <signal.h>

/** pthread_create() with every signal blocked in the new thread. */
int tc__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);

typedef struct tc__sigpipe_guard {
    sigset_t old;        /* the thread's mask before */
    int was_pending;     /* SIGPIPE pending before we blocked it */
    int was_blocked;     /* SIGPIPE blocked before */
} tc__sigpipe_guard;

/** Block SIGPIPE on this thread until tc__sigpipe_leave(). */
void tc__sigpipe_enter(tc__sigpipe_guard *g);
/** Consume a SIGPIPE raised since enter, restore the thread's mask. */
void tc__sigpipe_leave(tc__sigpipe_guard *g);

#endif
