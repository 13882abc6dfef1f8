/*
 * The concurrent anchor: liburcu's lock-free resizable hash table (cds_lfht,
 * Debian liburcu-dev) with the urcu-memb flavour, the way its documentation
 * has readers use it: a read-side critical section around lookup and the
 * read of the value. Nodes hold the key bytes next to the value.
 *
 * Thread safety: every thread that calls lfht_get() must first call
 * lfht_thread_online() (urcu-memb readers are registered) and
 * lfht_thread_offline() before it exits. lfht_put() is for the building
 * thread, before readers start.
 */
#ifndef TC_BENCH_LFHT_H
#define TC_BENCH_LFHT_H

#include <stddef.h>

typedef struct lfht_tab lfht_tab;

/* A table sized for `n` keys (no resize while the bench reads). */
lfht_tab *lfht_create(size_t n);
/* Copies key and value. 0, or -1 on allocation failure. */
int lfht_put(lfht_tab *t, const void *key, size_t klen, const void *val,
             size_t vlen);
/* Looks `key` up and returns the first value byte (what the bench reads),
 * or -1 when absent. */
int lfht_get(lfht_tab *t, const void *key, size_t klen);
void lfht_thread_online(void);
void lfht_thread_offline(void);
void lfht_destroy(lfht_tab *t);

#endif
