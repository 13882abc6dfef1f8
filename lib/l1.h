/*
 * L1 store: the in-process tier. A fixed array of shards, each a uthash table
 * with its own mutex, byte/entry budget and SIEVE eviction hand.
 *
 * Ownership and locking: everything inside a shard (its table, hand, counters
 * and generation slots) is read and written only with that shard's mutex
 * held. Entries are reference counted (struct tc_value): the table holds one
 * reference; tc__l1_get() hands out another. Entries are unlinked under the
 * shard lock and released outside it, so a reader's value is never freed
 * underneath it.
 *
 * Generations: each shard keeps TC__GEN_SLOTS counters, indexed by key hash.
 * Any invalidation bumps the slot of the key (or every slot, for prefix,
 * pattern and whole-cache invalidations). A fill carries the generation read
 * before its L2 request and is refused if the slot moved meanwhile: an old
 * value fetched before an invalidation is never inserted after it.
 */
#ifndef TC_L1_H
#define TC_L1_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

#include "clock.h"
#include "tiercache.h"

#define TC__GEN_SLOTS 64

/* A value: also the L1 entry. Key bytes then value bytes in data[]. A value
 * not in a table (a standalone copy) has hh.keylen == 0. The header is kept
 * at 72 bytes so that a 16 B key + 64 B value entry fits a 160-byte malloc
 * chunk. */
struct tc_value {
    UT_hash_handle hh;     /* owned by the shard table while linked */
    uint64_t meta;         /* shard lock: expiry in ms since the store's
                              epoch, rounded down (<< 1) | SIEVE visited bit */
    atomic_uint refs;
    uint32_t vlen;
    char data[];
};

/* Bytes charged to the L1 budget for an entry beyond its key and value:
 * header, allocator rounding and its share of the bucket array. */
#define TC__L1_OVERHEAD (offsetof(struct tc_value, data) + 24)

typedef struct tc__l1 tc__l1;

/** `max_bytes`/`max_entries` are split evenly over `shards` (a power of two).
 *  Returns NULL on allocation failure. */
tc__l1 *tc__l1_create(size_t max_bytes, size_t max_entries, unsigned shards);
/** Unlinks and releases every entry; values still referenced elsewhere live
 *  on until released. NULL is a no-op. */
void tc__l1_destroy(tc__l1 *l1);

/** Seeded 64-bit hash used for shard, bucket and generation slot. */
uint64_t tc__hash(const void *key, size_t len);

/** Standalone value holding a copy of `val`; NULL on allocation failure. */
struct tc_value *tc__value_new(const void *val, size_t vlen);

/** Lookup at time `now_ns` (tc__now_ns()): a new reference, or NULL when
 *  absent or expired (an expired entry is removed). */
struct tc_value *tc__l1_get(tc__l1 *l1, uint64_t h, const void *key,
                            size_t klen, uint64_t now_ns);

/** The generation a later tc__l1_fill() for this key must match. */
uint64_t tc__l1_gen(tc__l1 *l1, uint64_t h);

/** Results of tc__l1_fill(). */
enum { TC__FILL_INSERTED = 0, TC__FILL_STALE = 1, TC__FILL_NOFIT = 2,
       TC__FILL_NOMEM = 3 };

/** tc__l1_fill() flag: bump the key's generation after inserting, so that
 *  readers that fetched from L2 before this write cannot fill over it. */
#define TC__FILL_BUMP 1

/**
 * Insert (or replace) key -> val expiring at `expires_ns` (tc__now_ns() clock),
 * only if the key's generation still equals `gen`; evicts to stay within the
 * budget first. Copies key and value. When `ref` is not NULL and the entry
 * was inserted, *ref receives a new reference to it.
 */
int tc__l1_fill(tc__l1 *l1, uint64_t h, const void *key, size_t klen,
                const void *val, size_t vlen, uint64_t expires_ns,
                uint64_t gen, int flags, struct tc_value **ref);

/** Drop the key and bump its generation; returns the new generation, which a
 *  writer passes to tc__l1_fill() once its L2 write succeeded. */
uint64_t tc__l1_invalidate_key(tc__l1 *l1, uint64_t h, const void *key,
                               size_t klen);
/** Drop matching keys and bump every generation; return how many dropped. */
size_t tc__l1_invalidate_prefix(tc__l1 *l1, const void *prefix, size_t plen);
size_t tc__l1_invalidate_glob(tc__l1 *l1, const char *glob, size_t glen);
size_t tc__l1_clear(tc__l1 *l1);

/** Add this store's counters to `out` (l1_* and fills_skipped fields). */
void tc__l1_stats(tc__l1 *l1, tc_stats *out);


#endif
