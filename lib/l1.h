/*
 * L1 store: the in-process tier. A fixed array of shards; each holds a flat
 * open-addressing index (one word per slot: entry pointer plus a few hash
 * tag bits), a SIEVE queue, a byte/entry budget and generation slots.
 *
 * Reads take no lock and write no shared cache line on a hit: a reader
 * walks the index inside an epoch section (epoch.h), so an entry it finds
 * is not freed until the section ends, and leaves with its own copy of the
 * value (small values) or a new reference (large ones). The only write a
 * hit may make is the entry's SIEVE visited bit, and only when it is clear.
 * Hit and miss counts go to per-thread stripes.
 *
 * Ownership and locking: each shard's mutex serialises its writers (fill,
 * invalidation, eviction, index growth); it is held for bounded work only
 * (a few microseconds), and readers never take it. Entries are immutable
 * once published, except the visited bit (atomic). The index is published
 * with release stores and read with acquire loads. Unlinked entries and
 * replaced index arrays are retired: freed (the table's reference dropped)
 * only after a grace period, outside the lock. Entries are reference
 * counted (struct tc_value): the table holds one reference; values handed
 * out are the caller's to release with tc_value_release().
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

/* Not used by the L1 any more: flight.c's table gets uthash through
 * flight.h -> l1.h, after its own HASH_NONFATAL_OOM settings. */
#include <uthash.h>

#include "clock.h"
#include "tiercache.h"

#define TC__GEN_SLOTS 64

/* A value: also the L1 entry. Key bytes then value bytes in data[]. A value
 * not in a table (a standalone copy, value.c) has klen == 0, and in `meta`
 * its pool size class + 1, or 0 when malloc'd. The 36-byte header lets a
 * 16 B key + 64 B value entry fit a 128-byte malloc chunk. */
struct tc_value {
    struct tc_value *prev, *next; /* shard lock: SIEVE queue while linked;
                                     next chains retired entries */
    atomic_uint_fast64_t meta;    /* expiry, ns after the store's epoch,
                                     rounded down to even | visited bit */
    atomic_uint refs;
    uint32_t vlen;
    uint32_t klen;
    char data[];
};

/* Bytes charged to the L1 budget for an entry beyond its key and value:
 * header, allocator header and rounding, and its share of the index (one
 * 8-byte slot at a load between 1/4 and 3/4). */
#define TC__L1_OVERHEAD (offsetof(struct tc_value, data) + 28)

/* Values up to this size are copied out on a hit (no shared write); larger
 * ones are handed out by reference (a copy would cost more than the
 * reference count's cache line). */
#define TC__L1_COPY_MAX 256

typedef struct tc__l1 tc__l1;

/** `max_bytes`/`max_entries` are split evenly over `shards` (a power of two).
 *  Returns NULL on allocation failure. */
tc__l1 *tc__l1_create(size_t max_bytes, size_t max_entries, unsigned shards);
/** Unlinks and releases every entry; values still referenced elsewhere live
 *  on until released. No other call may run concurrently. NULL is a no-op. */
void tc__l1_destroy(tc__l1 *l1);

/** 64-bit hash used for shard, index slot, tag and generation slot, and for
 *  the stamps field (stamps.c), which every process must compute alike: its
 *  keys are fixed, not seeded per process, so colliding keys can be chosen. */
uint64_t tc__hash(const void *key, size_t len);

/** Standalone value holding a copy of `val`, released with
 *  tc_value_release() by any thread (value.c: small ones come from a
 *  per-thread pool); NULL on allocation failure. */
struct tc_value *tc__value_new(const void *val, size_t vlen);

/** Lookup at time `now_ns` (tc__now_ns()): a value the caller releases, or
 *  NULL when absent or expired (an expired entry is removed). Lock-free;
 *  any thread. */
struct tc_value *tc__l1_get(tc__l1 *l1, uint64_t h, const void *key,
                            size_t klen, uint64_t now_ns);
/** tc__l1_get counting only what `counting` says (TC__L1_COUNT_*): a
 *  lookup that a later one of the same read will count (tc_peek, whose
 *  miss tc_get counts) counts less. */
enum { TC__L1_COUNT_HIT = 1, TC__L1_COUNT_MISS = 2 };
struct tc_value *tc__l1_get_ex(tc__l1 *l1, uint64_t h, const void *key,
                               size_t klen, uint64_t now_ns, int counting);
/** Count `n` hits (lookups made with counting off that turned out to be
 *  served). Any thread. */
void tc__l1_count_hits(tc__l1 *l1, size_t n);

/** tc__l1_get_ex() at tc__now_ns(), read here once the index slot is on
 *  its way (so its cache miss overlaps the clock read), if that time is
 *  before `until` (a lease deadline; UINT64_MAX: none); else NULL and
 *  *lapsed = 1 (nothing counted). Lock-free; any thread. */
struct tc_value *tc__l1_get_until(tc__l1 *l1, uint64_t h, const void *key,
                                  size_t klen, uint64_t until, int counting,
                                  int *lapsed);

/** Start loading what a write of hash `h` will touch first: `stage` 0 its
 *  index slot and generation, 1 (after 0 had time) the entry the slot
 *  points to. Changes nothing; a batch of writes calls it for every key
 *  first, so their cache misses overlap. Any thread. */
void tc__l1_prefetch(tc__l1 *l1, uint64_t h, int stage);

/** The generation a later tc__l1_fill() for this key must match.
 *  Lock-free; any thread. */
uint64_t tc__l1_gen(tc__l1 *l1, uint64_t h);

/** Results of tc__l1_fill(). */
enum { TC__FILL_INSERTED = 0, TC__FILL_STALE = 1, TC__FILL_NOFIT = 2,
       TC__FILL_NOMEM = 3 };

/** tc__l1_fill() flag: bump the key's generation after inserting, so that
 *  readers that fetched from L2 before this write cannot fill over it. */
#define TC__FILL_BUMP 1

/**
 * Insert (or replace) key -> val (klen > 0) expiring at `expires_ns` (tc__now_ns() clock),
 * only if the key's generation still equals `gen`; evicts to stay within the
 * budget first (bounded work per eviction). Copies key and value. When `ref`
 * is not NULL and the entry was inserted, *ref receives a new reference to
 * it. Any thread.
 */
int tc__l1_fill(tc__l1 *l1, uint64_t h, const void *key, size_t klen,
                const void *val, size_t vlen, uint64_t expires_ns,
                uint64_t gen, int flags, struct tc_value **ref);

/** Drop the key and bump its generation; returns the new generation, which a
 *  writer passes to tc__l1_fill() once its L2 write succeeded. */
uint64_t tc__l1_invalidate_key(tc__l1 *l1, uint64_t h, const void *key,
                               size_t klen);
/** Bump every generation, then drop matching keys; return how many dropped.
 *  The scan takes each shard's lock for a bounded chunk at a time; readers
 *  never wait on it. */
size_t tc__l1_invalidate_prefix(tc__l1 *l1, const void *prefix, size_t plen);
size_t tc__l1_invalidate_glob(tc__l1 *l1, const char *glob, size_t glen);
size_t tc__l1_clear(tc__l1 *l1);

/** Add this store's counters to `out` (l1_* and fills_skipped fields). */
void tc__l1_stats(tc__l1 *l1, tc_stats *out);


#endif
