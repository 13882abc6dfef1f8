/*
 * Redis Cluster topology (issue 10): which master serves which slot.
 *
 * Built from a redis-cluster:// URL's seed nodes; filled by CLUSTER SLOTS
 * asked of the known masters, then the seeds, in turn; patched by the
 * MOVED redirections the pool meets (l2_cluster.c) and refreshed in full
 * when a node fails or answers CLUSTERDOWN. Only masters are kept in the
 * map: tiercache reads and writes on masters only (a replica's copy may
 * lag the invalidations). The bus asks here where to connect (bus.c):
 * every node CLUSTER NODES lists, replicas included, since any of them
 * may run writes after a failover or a migration.
 *
 * Thread safety: every function may be called from any thread at once;
 * the map is under the object's mutex, a refresh runs under a second
 * mutex (one at a time; callers that arrive during one wait for it and
 * then use its result). A refresh blocks for at most (connect + command
 * timeout) per node asked.
 */
#ifndef TC_CLUSTER_H
#define TC_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define TC__CLUSTER_MAX_SEEDS 16
#define TC__CLUSTER_MAX_NODES 128
#define TC__CLUSTER_HOST_MAX 256

typedef struct tc__cluster tc__cluster;

/** A node's address. */
typedef struct tc__node_addr {
    char host[TC__CLUSTER_HOST_MAX];
    int port;
} tc__node_addr;

/** From cfg's cluster seeds (copied). No I/O. TC_NO_MEMORY on failure;
 *  *out is the configuration's, freed with tc__cluster_free(). */
tc_result tc__cluster_create(const tc__config *cfg, tc__cluster **out);
/** NULL is a no-op. */
void tc__cluster_free(tc__cluster *cl);

/**
 * Ask CLUSTER SLOTS of the known masters, then of the seeds, until one
 * answers, and replace the map with its answer. `cfg` (borrowed for the
 * call) gives credentials, TLS and timeouts. Skipped (TC_OK) when a
 * refresh finished less than 20 ms ago or while the caller waited for
 * one, unless `force`. Failures (TC_L2_UNAVAILABLE, TC_TIMEOUT, TC_AUTH,
 * TC_PROTOCOL) with detail in tc_errmsg() naming the nodes tried.
 */
tc_result tc__cluster_refresh(tc__cluster *cl, const tc__config *cfg,
                              int force);

/** The master serving `slot`, into *out: TC_OK, or TC_L2_UNAVAILABLE when
 *  no master is known to serve it (a refresh first when the map was never
 *  filled). */
tc_result tc__cluster_addr(tc__cluster *cl, const tc__config *cfg,
                           unsigned slot, tc__node_addr *out);

/** A MOVED redirection: `slot` is served by host:port now. */
void tc__cluster_moved(tc__cluster *cl, unsigned slot, const char *host,
                       int port);

/** Up to `max` distinct masters of the map, into `out`; their number
 *  (a refresh first when the map was never filled). */
size_t tc__cluster_masters(tc__cluster *cl, const tc__config *cfg,
                           tc__node_addr *out, size_t max);

/** Where the bus connects (bus.c): `cmd` (heartbeats, and the
 *  subscription for acknowledgements and heartbeat tokens) to the master
 *  of `state_key`'s slot, where its state keys live; and every node that
 *  master's CLUSTER NODES lists (tc__cluster_parse_nodes(): replicas and
 *  masters without slots too, `cmd` included) into `nodes` (up to `max`;
 *  their number in *n): the bus subscribes to each one's own invalidation
 *  channel there (tc__cluster_node_channel_dup()), so a replica promoted
 *  by a failover, or a master a slot migrates to, already has proven
 *  subscribers. A refresh first (unless one ran in the last 20 ms); the
 *  CLUSTER NODES is asked (blocking) of `cmd` after it. TC_OK, the
 *  refresh's failure, or the CLUSTER NODES failure (TC_PROTOCOL also
 *  when it lists more than `max` nodes). */
tc_result tc__cluster_bus_nodes(tc__cluster *cl, const tc__config *cfg,
                                const char *state_key, tc__node_addr *cmd,
                                tc__node_addr *nodes, size_t max,
                                size_t *n);

/** Parse a CLUSTER NODES reply (`text`, `len` bytes, borrowed) asked of
 *  `asked`: every node listed, masters and replicas, except those
 *  flagged fail (the cluster agreed it is down: a replica took its
 *  slots), noaddr or handshake, into `out` (up to `max`), the asked
 *  node's host standing in for a node that does not know its own
 *  address. Their number, or -1 when the text is malformed, lists no
 *  node or more than `max`. Any thread. */
int tc__cluster_parse_nodes(const char *text, size_t len,
                            const tc__node_addr *asked, tc__node_addr *out,
                            size_t max);

/** The invalidation channel of master `node`: "<channel>@<host>:<port>",
 *  in a new NUL-terminated string, malloc'd: the caller owns it and frees
 *  it with free(); NULL when out of memory. `channel` and `node` are
 *  borrowed for the call. A write that runs on `node` publishes there
 *  (l2_cluster.c picks it per attempt, after MOVED and ASK), and every
 *  instance subscribes to it on `node` itself (bus.c): the message
 *  reaches each subscriber over its own connection to `node`, in order
 *  with the tokens that prove that connection, never over the cluster
 *  bus. Any thread. */
char *tc__cluster_node_channel_dup(const char *channel,
                                   const tc__node_addr *node);

/**
 * The bus's watch for failed nodes (bus.c): a classic PUBLISH reaches the
 * subscribers of other nodes over the cluster bus, so a master that dies
 * right after a write may take its invalidation with it while the
 * subscriptions of instances on other nodes stay up. The bus sends
 * CLUSTER INFO on its heartbeat connection when this says it is due
 * (every lease_ms / 2) and hands the reply here: 1 means drop L1 (reset
 * the bus) because a node is suspected or marked failed (slots in PFAIL
 * or FAIL, from none before) or a failover or slot move happened
 * (cluster_current_epoch grew). So L1 is not served past about
 * cluster-node-timeout + lease_ms / 2 after a master's death. Writes
 * moving to another node need no reset for coherence (the bus subscribes
 * on every node, and its CLUSTER NODES poll covers nodes that join:
 * lease.c, "Redis Cluster"); the epoch reset stays as a second line.
 * The CLUSTER NODES poll is sent with it, when this says it is due.
 */
int tc__cluster_watch_due(tc__cluster *cl, uint64_t now_ns,
                          uint64_t every_ns);
int tc__cluster_watch(tc__cluster *cl, const char *info, size_t len);

/** Parse "MOVED <slot> <host>:<port>" or "ASK ..." (error reply text):
 *  1 and the parts, else 0. `*ask` tells which. */
int tc__cluster_parse_redirect(const char *s, size_t len, int *ask,
                               unsigned *slot, tc__node_addr *to);

#endif
