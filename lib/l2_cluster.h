/*
 * The L2 pool on Redis Cluster (issue 10): a pool per master (l2.c's own
 * pool, one per node, each with its breaker and reconnect thread), and
 * the routing of the library's commands by slot (slot.h), following MOVED
 * and ASK redirections with the topology in cluster.h.
 *
 * Routing: a batch holding MULTI is one transaction and must name keys of
 * one slot only (else TC_BAD_ARGUMENT: a library bug, never sent); it runs
 * on that slot's master, and is sent again whole after a redirection,
 * which Redis answers before anything in it ran (EXECABORT). Any other
 * batch is split by node, one pipelined round trip per node, and only the
 * commands that met a redirection are sent again. A keyless command
 * (PUBLISH, PING, INFO) goes to the master of slot 0.
 *
 * Bounded: at most TC__CLUSTER_TRIES sends per command, then
 * TC_L2_UNAVAILABLE naming the slot and the last redirection. A transport
 * failure is never resent here (the node pool already retries idempotent
 * batches once): it refreshes the topology and fails fast, so the next
 * call reaches the new master after a failover.
 *
 * Thread safety: as l2.h: any number of threads at once. The node list is
 * grow-only under a mutex; each node's pool is thread-safe.
 */
#ifndef TC_L2_CLUSTER_H
#define TC_L2_CLUSTER_H

#include "cluster.h"
#include "l2.h"

#define TC__CLUSTER_TRIES 10

typedef struct tc__l2c tc__l2c;

/** Learn the topology (a failure other than TC_AUTH is only logged: the
 *  cluster may come up later). `cfg` is borrowed and must outlive the
 *  object. */
tc_result tc__l2c_create(const tc__config *cfg, tc__l2c **out);
void tc__l2c_destroy(tc__l2c *x);

/** tc__l2_run() routed by slot (above). */
tc_result tc__l2c_run(tc__l2c *x, size_t n, const tc__cmd *cmds,
                      redisReply **replies, int flags);

/** All `n` commands whole on the master of `slot` (-1: slot 0's),
 *  following redirections, whatever keys they name: for commands whose
 *  keys the caller found from Redis's key specs (tc_command). */
tc_result tc__l2c_run_slot(tc__l2c *x, int slot, size_t n,
                           const tc__cmd *cmds, redisReply **replies,
                           int flags);

/** A connection of the caller's own (tc__l2_connect()) to the master of
 *  `slot` (-1: slot 0's) as the map has it now: for blocking commands and
 *  sessions. NULL with *why on failure. */
tc__conn *tc__l2c_connect_slot(tc__l2c *x, int slot, tc_result *why);

/** tc__l2_run() on one node's pool, without routing or redirections
 *  (SCAN on each master). */
tc_result tc__l2c_run_at(tc__l2c *x, const tc__node_addr *a, size_t n,
                         const tc__cmd *cmds, redisReply **replies, int flags);

/** 1 when every known node's breaker is open. */
int tc__l2c_breaker_open(tc__l2c *x);
/** Sum of the node pools' counters. */
void tc__l2c_stats(tc__l2c *x, tc_stats *out);

#endif
