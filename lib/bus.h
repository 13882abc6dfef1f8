/*
 * Invalidation bus: one helper thread per cache running a libev loop with two
 * asynchronous connections to Redis (aconn.c: plain, unix socket or TLS):
 *   sub: SUBSCRIBE <channel> <channel>:ack:<id> <channel>:pong:<id>
 *        [__redis__:invalidate]
 *   cmd: publishes acknowledgements, sends the heartbeat (lease.c); in
 *        tracking mode it carries CLIENT TRACKING on REDIRECT <sub id> BCAST
 *        PREFIX <p>.
 * On Redis Cluster both are on the master of the bus's state keys, sub
 * hears that master's own invalidation channel (<channel>@<host>:<port>)
 * besides <channel>, and one more subscriber per other master hears that
 * master's channel there (lease.c, "Redis Cluster"). In tracking mode
 * every other node's subscriber also runs CLIENT TRACKING on REDIRECT
 * <its own id> BCAST PREFIX <p> there, then subscribes to
 * __redis__:invalidate too (tracking.c).
 * The files: bus.c (thread, connections), lease.c (when L1 may be served),
 * apply.c (where invalidations are applied), tracking.c, strict.c; the
 * shared state is in bus_internal.h.
 *
 * Ownership: the loop, both connections and the lease state belong to the
 * bus thread alone. Other threads touch: `l1_ok_until` (atomic), the
 * counters (atomics), the strict waiter registry (its mutex), and the stop
 * flag (`qmu` + ev_async wake-up).
 */
#ifndef TC_BUS_H
#define TC_BUS_H

#include <stdatomic.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "l1.h"

typedef struct tc__bus tc__bus;

/** Start the bus thread for `cfg` (borrowed, outlives the bus), applying
 *  invalidations to `l1` (borrowed). `id` is this instance's id. */
tc_result tc__bus_create(const tc__config *cfg, tc__l1 *l1, const char *id,
                         tc__bus **out);
/** Stop the thread, close connections, wake strict waiters. NULL no-op. */
void tc__bus_destroy(tc__bus *bus);

/** 1 when L1 may be served at `now_ns` (tc__now_ns()): the bus proved
 *  itself alive within the lease. One atomic load. */
int tc__bus_l1_ok(tc__bus *bus, uint64_t now_ns);
/** The deadline tc__bus_l1_ok() compares with: L1 may be served while
 *  tc__now_ns() is before it (0: not now). One atomic load. */
uint64_t tc__bus_l1_ok_until(tc__bus *bus);
/** 1 when the bus is up at `now_ns`: L1 servable, or idle (lease.c) with
 *  its last keepalive answered. For health; not a read. Any thread. */
int tc__bus_up(tc__bus *bus, uint64_t now_ns);
/** tc__bus_l1_ok_until() for a read that wants L1: also tells the bus an
 *  L1 read happened (keeps the heartbeat going, or wakes an idle bus so L1
 *  serves again soon). One relaxed atomic load besides, and a store at
 *  most once per lease/4. Any thread. */
uint64_t tc__bus_l1_read_until(tc__bus *bus);

/* Strict writes: register before publishing, then wait. */
typedef struct tc__strict_wait tc__strict_wait;
/** Register a waiter; returns its seq (never 0) or 0 when out of memory. */
uint64_t tc__bus_strict_begin(tc__bus *bus, tc__strict_wait **w);
/** Wait until every instance id in `members` (an array reply of the count
 *  script, borrowed; NULL: unknown, wait for the deadline) acknowledged, or
 *  until `deadline_ns` (tc__now_ns() clock; 0 for a failed write: no wait). Acks from instances not in
 *  `members` count for nothing. Unregisters and frees the waiter. Returns 1
 *  when all acknowledged, 0 otherwise. */
int tc__bus_strict_wait(tc__bus *bus, tc__strict_wait *w,
                        const redisReply *members, uint64_t deadline_ns);

/** Count one published invalidation (writers publish through L2). */
void tc__bus_count_published(tc__bus *bus);

/** Add bus counters to `out`. */
void tc__bus_stats(tc__bus *bus, tc_stats *out);

/** Key of the members sorted set, and a script (1 key: that set) that
 *  prunes expired members and returns the ids of those that may be serving
 *  L1. Strict writers run it in the MULTI that publishes. */
const char *tc__bus_members_key(const tc__bus *bus);
/** Key of the last server TIME any script saw (lease.c: clock steps). */
const char *tc__bus_clock_key(const tc__bus *bus);
/** Key of the master epoch ("<replid> <since ms>", lease.c): strict
 *  writers on a master promoted by a failover wait out their lease. */
const char *tc__bus_epoch_key(const tc__bus *bus);
/** The count script: KEYS members, clock, epoch; ARGV lease ms. Returns
 *  the member ids, or 0 when the writer must wait out its lease. */
const char *tc__bus_count_script(void);


/* Test-only hooks (tests/): not part of the API. */
/** Number of times the bus (re)subscribed and proved itself alive. */
uint64_t tc__bus_generation(tc__bus *bus);
/** Times the bus dropped its connections to retry, and connection
 *  attempts: one reset per failed attempt, never two. */
uint64_t tc__bus_resets(tc__bus *bus);
uint64_t tc__bus_connects(tc__bus *bus);
/** Called on the bus thread for every message that arrives on the
 *  subscription, before it is handled; a hook that blocks holds the whole
 *  bus thread there (no heartbeats, no invalidations applied). NULL
 *  removes it. `h` is borrowed until it is replaced. Any thread. */
typedef struct tc__bus_hook {
    void (*fn)(void *arg);
    void *arg;
} tc__bus_hook;
void tc__bus_set_message_hook(tc__bus *bus, const tc__bus_hook *h);
/** Redis Cluster: while `hold` is non-zero, the CLUSTER INFO watch
 *  (cluster.h: a failed node or a grown epoch resets the bus) is asked
 *  but its verdict ignored, so that a test sees what the subscriptions
 *  and the CLUSTER NODES poll alone guarantee. Any thread. */
void tc__bus_hold_cluster_watch(tc__bus *bus, int hold);

#endif
