/*
 * tc-bench: a throwaway local Redis Cluster of three masters and no
 * replicas, for the cluster fleet rows (fleet_cluster.c). Each node is a
 * redis-server on a free port (and a free cluster bus port) in a private
 * temp dir, killed with the bench if it dies (PR_SET_PDEATHSIG); the
 * cluster is made with `redis-cli --cluster create ... --cluster-yes`.
 * The bench never uses tests/ code: this is its own small starter.
 */
#ifndef TC_BENCH_CLUSTER_H
#define TC_BENCH_CLUSTER_H

#include <sys/types.h>

#define BENCH_CLUSTER_MASTERS 3

typedef struct bench_cluster {
    char dir[64];                      /* private temp dir, "" when none */
    pid_t pid[BENCH_CLUSTER_MASTERS];  /* 0 when not running */
    int port[BENCH_CLUSTER_MASTERS];
    /* slot -> index of the master serving it (from CLUSTER SLOTS). */
    unsigned char owner[16384];
} bench_cluster;

/* Start the nodes, create the cluster and wait (up to 20 s) until every
 * node says cluster_state:ok. 0, or -1 after stopping what started (the
 * reason on stderr). `t` is the caller's; stop it with bench_cluster_stop().
 * Not thread-safe: one caller at a time per `t`. */
int bench_cluster_start(bench_cluster *t);
/* Stop every node by its pid (SIGTERM, then wait) and remove the dir.
 * Idempotent; safe on a zeroed or half-started `t`. */
void bench_cluster_stop(bench_cluster *t);
/* The hash slot of `key` (CRC16 of its hash tag or whole name, as Redis
 * Cluster computes it). Pure. */
int bench_cluster_slot(const char *key, size_t len);

#endif
