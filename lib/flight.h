/*
 * Single-flight for get_or_load: concurrent misses on one key in this process
 * elect one leader that loads; the others wait for its result.
 *
 * Ownership and locking: the table (sharded by key hash) and each flight's
 * `done`, `result`, `value` and `refs` are protected by its shard mutex. A
 * flight is freed by whoever drops its last reference.
 */
#ifndef TC_FLIGHT_H
#define TC_FLIGHT_H

#include "clock.h"
#include "l1.h"

typedef struct tc__flights tc__flights;
typedef struct tc__flight tc__flight;

tc__flights *tc__flights_create(unsigned nshards);
void tc__flights_destroy(tc__flights *fl);

/** Join the flight for `key` if one started at L1 generation `gen` (read
 *  by the caller before joining), else start one: a caller never joins a
 *  flight that started before an invalidation it has seen. Returns 1 when
 *  the caller leads (must call tc__flight_finish()), 0 when it follows
 *  (must call tc__flight_wait()), -1 when out of memory. */
int tc__flight_join(tc__flights *fl, uint64_t h, const void *key, size_t klen,
                    uint64_t gen, tc__flight **f);
/** Leader: publish the result. `v` (may be NULL) is borrowed: followers get
 *  their own references. Drops the leader's reference. */
void tc__flight_finish(tc__flights *fl, tc__flight *f, tc_result r,
                       struct tc_value *v);
/** Follower: wait for the leader's result; on TC_OK *out is a new
 *  reference. Drops the follower's reference. */
tc_result tc__flight_wait(tc__flights *fl, tc__flight *f,
                          struct tc_value **out);
/** Follower with a deadline (tc__now_ns() clock; UINT64_MAX: none): 1
 *  with *res and *out as tc__flight_wait() (reference dropped), or 0 when
 *  the deadline passed first: the reference is kept (wait again, or
 *  tc__flight_leave()). */
int tc__flight_wait_until(tc__flights *fl, tc__flight *f, uint64_t deadline,
                          tc_result *res, struct tc_value **out);
/** One more reference (a leader that hands its load to a background job
 *  and waits for it like a follower). */
void tc__flight_ref(tc__flights *fl, tc__flight *f);
/** Drop a reference without waiting. */
void tc__flight_leave(tc__flights *fl, tc__flight *f);

#endif
