/*
 * Test fixture: a real local Redis Cluster of three masters and three
 * replicas (issue 10). Each node is a redis-server of redis_fixture.h
 * (free port, private temp dir, dies with the test process, stopped by its
 * pid) started with cluster-enabled and a short cluster-node-timeout; the
 * cluster is made as `redis-cli --cluster create ... --cluster-replicas 1`
 * makes it (its slot ranges, config epochs, MEET, REPLICATE), but with
 * each step awaited on its condition instead of redis-cli's one-second
 * sleeps, and start returns once every node says cluster_state:ok and
 * agrees on who serves every slot, and every replica is in sync (no
 * diskless-sync delay, redis_fixture.c). About 2 s on a calm machine,
 * against 6 s with redis-cli and Redis's default delay: the floor is
 * Redis's own, a master turns cluster_state:ok no sooner than 2 s after
 * it started (CLUSTER_WRITABLE_DELAY in its cluster.c).
 * The TLS variant runs the same cluster over TLS only (client, cluster bus
 * and replication), with the certificates of redis_fixture.h.
 *
 * Shared clusters. Starting a cluster takes seconds; most cases only read
 * and write keys of their own. Such a case takes the cluster of its whole
 * test executable with tcr_cluster_shared(): meson runs the executable
 * under tcr-cluster-run (tests/cluster_run.c, `test(..., cluster_run,
 * args : [exe, ...])` in tests/meson.build), which starts one cluster (and
 * a TLS one with --tls) before the first case, names it in the
 * environment, and stops every node by its pid after the last case,
 * however the cases ended. Run by hand without it (`--filter` one case),
 * tcr_cluster_shared() starts a cluster of the case's own instead, so
 * every case still runs alone. A case on the shared cluster must leave it
 * as it found it, for the cases after it:
 *   - keys, hash tags, tags and channels under names no other case of the
 *     file uses (a stem such as "route:" or "{user42}"); a check that
 *     counts keys, connections, subscribers or commands on a node counts
 *     its own only (a stem in the pattern, a difference, a channel of its
 *     own with tc_options.channel);
 *   - no FLUSHALL / FLUSHDB, no CONFIG SET, no CLUSTER SETSLOT / FAILOVER /
 *     RESET, no DEBUG CLUSTERLINK, no reshard, no killed or paused node:
 *     a case doing any of these takes its own tcr_cluster_start().
 * Cases of one executable run one after another (Criterion --jobs=1).
 */
#ifndef TC_CLUSTER_FIXTURE_H
#define TC_CLUSTER_FIXTURE_H

#include "redis_fixture.h"

#define TCR_CLUSTER_NODES 6
#define TCR_CLUSTER_NODE_TIMEOUT_MS 1000

typedef struct tcr_cluster {
    tcr_server node[TCR_CLUSTER_NODES];
    char url[600]; /* redis-cluster://127.0.0.1:p0,127.0.0.1:p1,... */
    int shared;    /* 1: attached by tcr_cluster_shared(), not ours */
} tcr_cluster;

/* The environment variables tcr-cluster-run sets: the path of the file
 * describing its plain cluster, and its TLS one. */
#define TCR_SHARED_CLUSTER_ENV "TCR_SHARED_CLUSTER"
#define TCR_SHARED_CLUSTER_TLS_ENV "TCR_SHARED_CLUSTER_TLS"

/** Start six nodes, create the cluster and wait (up to `timeout_ms`) until
 *  it is ready (above). 0, or -1 after stopping what started (the reason
 *  on stderr). */
int tcr_cluster_start(tcr_cluster *t, int timeout_ms);
/** tcr_cluster_start() with every node TLS-only (--port 0, tls-port; one
 *  CA, node 0's: t->node[0].ca_file; certificates naming 127.0.0.1),
 *  tls-cluster and tls-replication on; url is rediss-cluster://. */
int tcr_cluster_start_tls(tcr_cluster *t, int timeout_ms);
/** Stop every node by its pid and remove the dirs; a shared cluster
 *  (tcr_cluster_shared) is only forgotten: its nodes run on. Idempotent. */
void tcr_cluster_stop(tcr_cluster *t);

/** The test executable's shared cluster (above) into *t: the one named by
 *  $TCR_SHARED_CLUSTER, once it is ready (tcr_cluster_ok within
 *  `timeout_ms`: a broken one is a clear failure, not a later odd one);
 *  without that variable, a cluster of the caller's own started as
 *  tcr_cluster_start() does. 0, or -1 (the reason on stderr). Release
 *  with tcr_cluster_stop() either way. Not thread-safe (test set-up). */
int tcr_cluster_shared(tcr_cluster *t, int timeout_ms);
/** The same for the TLS cluster ($TCR_SHARED_CLUSTER_TLS, or
 *  tcr_cluster_start_tls()). */
int tcr_cluster_shared_tls(tcr_cluster *t, int timeout_ms);
/** Write `t` (a started cluster, borrowed) to `path` for
 *  tcr_cluster_shared() in the processes of the same build. 0 or -1.
 *  For tcr-cluster-run. */
int tcr_cluster_save(const tcr_cluster *t, const char *path);

/** The live node serving `key`'s slot as master, according to the first
 *  live node that answers CLUSTER SLOTS; NULL when none knows. */
tcr_server *tcr_cluster_master_of(tcr_cluster *t, const char *key);
/** The slot of `key` (CLUSTER KEYSLOT on a live node), or -1. */
int tcr_cluster_keyslot(tcr_cluster *t, const char *key);
/** The node listening on `port`, or NULL. */
tcr_server *tcr_cluster_node(tcr_cluster *t, int port);
/** A live replica of `master` (CLUSTER REPLICAS), or NULL. */
tcr_server *tcr_cluster_replica_of(tcr_cluster *t, const tcr_server *m);
/** A key named "<stem><n>" for the smallest n whose master is `m`
 *  (into buf). 0, or -1 when none in 100,000 tries. */
int tcr_cluster_key_on(tcr_cluster *t, const tcr_server *m, const char *stem,
                       char *buf, size_t len);
/** Wait (up to `timeout_ms`) until replica `rep` has processed what master
 *  `m` had written when this was called (offsets, as
 *  tcr_replica_caught_up()). 1 when it has. */
int tcr_cluster_replica_caught_up(const tcr_server *m, const tcr_server *rep,
                                  int timeout_ms);
/** 1 when every live node says cluster_state:ok and they all name the
 *  same master for every slot (a predicate for tcr_wait()). */
int tcr_cluster_ok(void *t);
/** Start `s` as one more cluster node (plain TCP; stopped by the caller
 *  with tcr_stop()), CLUSTER MEET it from node 0, and wait (up to
 *  `timeout_ms`) until every live node lists it, knows every other and
 *  says cluster_state:ok: a master that serves no slot. 0, or -1 after
 *  stopping it (the reason on stderr). */
int tcr_cluster_add_node(tcr_cluster *t, tcr_server *s, int timeout_ms);
/** A live node's CLUSTER MYID into buf (41 bytes). 0 or -1. */
int tcr_cluster_id(const tcr_server *s, char *buf);

#endif
