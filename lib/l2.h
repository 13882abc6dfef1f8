/*
 * L2 client: a pool of connections to Redis (conn.h: TCP, unix or TLS),
 * with connect and command timeouts, a circuit breaker and a background
 * reconnect thread.
 *
 * Ownership and locking: each pool slot (its tc__conn) is used only by
 * the thread holding that slot's mutex; the mutex is held for exactly one
 * tc__l2_run() exchange. Breaker state and counters are atomics. The
 * reconnect thread owns its probe connection and waits on `mu`/`cv`.
 */
#ifndef TC_L2_H
#define TC_L2_H

#include <hiredis/hiredis.h>

#include "config.h"
#include "conn.h"

typedef struct tc__l2 tc__l2;

/** One command: argc strings with lengths (borrowed for the call). */
typedef struct tc__cmd {
    int argc;
    const char **argv;
    const size_t *argvlen;
} tc__cmd;

/** Create the pool and try one connection. Redis being down is not an error
 *  (the breaker starts open and the reconnect thread probes); refused
 *  credentials are (TC_AUTH), as is a failure to allocate. */
tc_result tc__l2_create(const tc__config *cfg, tc__l2 **out);
void tc__l2_destroy(tc__l2 *l2);

enum {
    TC__L2_IGNORE_BREAKER = 1, /* health checks: try even when open */
    TC__L2_IDEMPOTENT = 2      /* safe to send twice: retried once on a
                                  fresh connection if a reused one died */
};

/**
 * Send `n` commands pipelined on one connection and read their `n` replies
 * (one round trip). On TC_OK `replies[i]` are the caller's to free with
 * freeReplyObject(); error replies are returned as replies, not failures.
 * Fails fast with TC_L2_UNAVAILABLE while the breaker is open; TC_TIMEOUT
 * or TC_L2_UNAVAILABLE when the exchange fails (the connection is dropped
 * and the failure counts towards the breaker). Detail in tc_errmsg().
 */
tc_result tc__l2_run(tc__l2 *l2, size_t n, const tc__cmd *cmds,
                     redisReply **replies, int flags);

/** Redis Cluster (cfg->cluster): tc__l2_run() on the node `a` only, no
 *  routing (SCAN on each master). TC_BAD_ARGUMENT when not a cluster. */
struct tc__node_addr;
tc_result tc__l2_run_at(tc__l2 *l2, const struct tc__node_addr *a, size_t n,
                        const tc__cmd *cmds, redisReply **replies, int flags);

/** tc__l2_run() of commands whose keys the caller has found (command.c,
 *  from Redis's key specs): on a cluster all `n` go whole to the master
 *  of `slot` (-1: any master), following redirections; elsewhere as
 *  tc__l2_run(). */
tc_result tc__l2_run_slot(tc__l2 *l2, int slot, size_t n, const tc__cmd *cmds,
                          redisReply **replies, int flags);

/** tc__l2_connect(cfg), or on a cluster a connection to the master of
 *  `slot` (-1: any master). The caller frees it with tc__conn_free(). */
tc__conn *tc__l2_connect_slot(tc__l2 *l2, const tc__config *cfg, int slot,
                              tc_result *why);

/** 1 while the breaker is open (calls fail fast); on a cluster, while
 *  every node's is. */
int tc__l2_breaker_open(const tc__l2 *l2);

/** Add counters to `out` (l2_errors, l2_timeouts, l2_reconnects,
 *  l2_round_trips, breaker_opens). */
void tc__l2_stats(const tc__l2 *l2, tc_stats *out);

/** Connect (TCP, unix or TLS per `cfg`), AUTH and SELECT with its
 *  timeouts. The connection is the caller's, freed with tc__conn_free().
 *  On failure returns NULL and a result with detail in tc_errmsg()
 *  (TC_AUTH also when either side refused the other's certificate). */
tc__conn *tc__l2_connect(const tc__config *cfg, tc_result *why);

#endif
