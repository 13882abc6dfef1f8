/*
 * Test fixture: a real local Redis Cluster of three masters and three
 * replicas (issue 10). Each node is a redis-server of redis_fixture.h
 * (free port, private temp dir, dies with the test process, stopped by its
 * pid) started with cluster-enabled and a short cluster-node-timeout; the
 * cluster is made by `redis-cli --cluster create ... --cluster-replicas 1
 * --cluster-yes`, and start returns once every node says cluster_state:ok
 * and agrees on who serves every slot, and every replica is in sync.
 * The TLS variant runs the same cluster over TLS only (client, cluster bus
 * and replication), with the certificates of redis_fixture.h.
 */
#ifndef TC_CLUSTER_FIXTURE_H
#define TC_CLUSTER_FIXTURE_H

#include "redis_fixture.h"

#define TCR_CLUSTER_NODES 6
#define TCR_CLUSTER_NODE_TIMEOUT_MS 1000

typedef struct tcr_cluster {
    tcr_server node[TCR_CLUSTER_NODES];
    char url[600]; /* redis-cluster://127.0.0.1:p0,127.0.0.1:p1,... */
} tcr_cluster;

/** Start six nodes, create the cluster and wait (up to `timeout_ms`) until
 *  it is ready (above). 0, or -1 after stopping what started (the reason
 *  on stderr). */
int tcr_cluster_start(tcr_cluster *t, int timeout_ms);
/** tcr_cluster_start() with every node TLS-only (--port 0, tls-port; one
 *  CA, node 0's: t->node[0].ca_file; certificates naming 127.0.0.1),
 *  tls-cluster and tls-replication on; url is rediss-cluster://. */
int tcr_cluster_start_tls(tcr_cluster *t, int timeout_ms);
/** Stop every node by its pid and remove the dirs. Idempotent. */
void tcr_cluster_stop(tcr_cluster *t);

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
