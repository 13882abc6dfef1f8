/*
 * The single-core floor: a flat open-addressing table (linear probing, one
 * 16-byte slot per bucket holding the full hash and an entry pointer, key
 * bytes next to the value, load at most 1/2), built once and then only read.
 * It does the least work a hash lookup can: hash, one probe, compare, read.
 * No locks, no reference counts, no expiry: nothing a shared cache needs,
 * which is why it is the floor and not a competitor.
 *
 * Thread safety: oa_put() is single-threaded; once the table is built,
 * any number of threads may call oa_get() (nothing is written by a read).
 */
#ifndef TC_BENCH_OA_H
#define TC_BENCH_OA_H

#include <stddef.h>
#include <stdint.h>

typedef struct oa_tab oa_tab;

/* A table for up to `n` keys. NULL on allocation failure. */
oa_tab *oa_create(size_t n);
/* Copies key and value (replaces an existing key). 0, or -1 when full or
 * out of memory. */
int oa_put(oa_tab *t, const void *key, size_t klen, const void *val,
           size_t vlen);
/* The value bytes of `key` (borrowed from the table), or NULL. */
const char *oa_get(const oa_tab *t, const void *key, size_t klen);
void oa_destroy(oa_tab *t);

#endif
