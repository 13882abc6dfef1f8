/*
 * The library and signals: it never raises SIGPIPE in its caller's process
 * and never takes a signal meant for the application.
 *
 * Every connection to Redis, the L2 pool's and the bus's, writes through
 * lib/conn.c, with send(MSG_NOSIGNAL) (and a TLS BIO that does the same):
 * no SIGPIPE is ever raised. As a second line, the library's own threads
 * (bus, L2 reconnect) start with every signal blocked, so no signal meant
 * for the application is ever delivered to them.
 * Callable from any thread.
 */
#ifndef TC_SIGNALS_H
#define TC_SIGNALS_H

#include <pthread.h>

/** pthread_create() with every signal blocked in the new thread. */
int tc__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
