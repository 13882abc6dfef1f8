/*
 * The per-process rate limiter that decides while Redis is down
 * (ratelimit.c). A fixed-size table: 1024 sets of 4 limits, a limit
 * identified by a 64-bit hash of its key and algorithm, so memory never
 * grows whatever keys arrive; a full set evicts its least recently used
 * limit (which then starts afresh: a hostile key stream can make the local
 * limiter forget, never make it grow).
 *
 * Sliding limits use the two-window weighted counter (the previous window's
 * count scaled by how much of it still overlaps the sliding window, rounded
 * up); fixed limits one counter. Windows start at a limit's first request.
 *
 * Ownership and locking: the table is owned by its tc_cache and freed at
 * destroy; each set is guarded by one of 64 striped mutexes (set % 64),
 * held only for one decision. The eviction counter is atomic.
 */
#ifndef TC_RATELOCAL_H
#define TC_RATELOCAL_H

#include <stdint.h>

#include "tiercache.h"

typedef struct tc__ratelocal tc__ratelocal;

/** A new, empty table, or NULL when out of memory. */
tc__ratelocal *tc__ratelocal_create(void);
void tc__ratelocal_destroy(tc__ratelocal *t);

/** Decide one request of the limit `id` at `now_ms` (a monotonic clock);
 *  fills `out` (fallback = 1). Thread-safe. */
void tc__ratelocal_decide(tc__ratelocal *t, uint64_t id, uint64_t limit,
                          uint64_t window_ms, tc_rate_algo algo,
                          uint64_t now_ms, tc_rate_result *out);

/** Limits evicted to make room for others so far. Thread-safe. */
uint64_t tc__ratelocal_evictions(tc__ratelocal *t);

#endif
