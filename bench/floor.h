/*
 * The physical floor of an L1 hit: a sharded uthash table behind one
 * pthread mutex per shard, doing the same work as tc_get() on a hit and
 * nothing else: hash the key, pick the shard, lock, find, take a reference,
 * unlock; the caller reads the value and drops the reference.
 */
#ifndef TC_BENCH_FLOOR_H
#define TC_BENCH_FLOOR_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

typedef struct floor_ent {
    UT_hash_handle hh;
    atomic_uint refs;
    uint32_t klen, vlen;
    char data[]; /* key bytes, then value bytes */
} floor_ent;

typedef struct floor_tab floor_tab;

/* `shards` is a power of two. NULL on allocation failure. */
floor_tab *floor_create(unsigned shards);
/* Copies key and value. 0 on success, -1 on allocation failure. */
int floor_put(floor_tab *t, const void *key, size_t klen, const void *val,
              size_t vlen);
/* A new reference or NULL. */
floor_ent *floor_get(floor_tab *t, const void *key, size_t klen);

static inline const char *floor_value(const floor_ent *e)
{
    return e->data + e->klen;
}

static inline void floor_release(floor_ent *e)
{
    atomic_fetch_sub_explicit(&e->refs, 1, memory_order_release);
}

void floor_destroy(floor_tab *t);

#endif
