/*
 * The library and signals: it never raises SIGPIPE in its caller's process
 * and never takes a signal meant for the application.
 *
 * The L2 pool writes through lib/conn.c, with send(MSG_NOSIGNAL) (and a
 * TLS BIO that does the same): no SIGPIPE there. The bus still writes
 * through hiredis 0.14's async layer, with write(2), which raises SIGPIPE
 * on a connection Redis has closed; SIGPIPE from write(2) goes to the
 * writing thread, so the library's own threads (bus, L2 reconnect) start
 * with every signal blocked: there it stays pending, harmlessly.
 * Callable from any thread.
 */
#ifndef TC_SIGNALS_H
#define TC_SIGNALS_H

#include <pthread.h>

/** pthread_create() with every signal blocked in the new thread. */
int tc__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
