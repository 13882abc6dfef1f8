/* Small helpers the Redis Cluster suites share (test_cluster.c,
 * test_cluster_topology.c, test_cluster_tracking.c, test_async_cluster.c):
 * their suite fixture, options, AWAIT() predicates on a tc_cache and a log
 * callback that finds a bus's nodes; with cluster_nodes.h (what needs no
 * tc_cache). One copy here instead of one per suite. Everything is static
 * inline, test-only, and runs on the test's thread. */
#ifndef TC_TESTS_CLUSTER_COMMON_H
#define TC_TESTS_CLUSTER_COMMON_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cluster_fixture.h"
#include "cluster_nodes.h"

/* Declares `static tcr_cluster cl` and the Criterion suite `suite` whose
 * every case starts a cluster of its own in `cl` (.init) and stops it
 * (.fini): for suites that change their cluster's topology or nodes. */
#define OWN_CLUSTER_SUITE(suite)                                            \
    static tcr_cluster cl;                                                  \
    static void cl_setup(void)                                              \
    {                                                                       \
        cr_assert_eq(tcr_cluster_start(&cl, 60000), 0,                      \
                     "cluster did not start");                              \
    }                                                                       \
    static void cl_teardown(void)                                           \
    {                                                                       \
        tcr_cluster_stop(&cl);                                              \
    }                                                                       \
    TestSuite(suite, .init = cl_setup, .fini = cl_teardown)

/* Options for a cache on cluster `t` with `coherence` and 500 ms connect
 * and command timeouts; the caller sets the rest. */
static inline tc_options cluster_opts(const tcr_cluster *t,
                                      tc_coherence coherence)
{
    tc_options o = url_opts(t->url);
    o.coherence = coherence;
    o.connect_timeout_ms = 500;
    o.command_timeout_ms = 500;
    return o;
}

/* A predicate for AWAIT(): `key` read through `c` is `want`. Borrows all. */
typedef struct reads_as {
    tc_cache *c;
    const char *key, *want;
} reads_as;

static inline int reads(void *p)
{
    reads_as *ra = p;
    char *v = get_str(ra->c, ra->key, NULL);
    int ok = v && !strcmp(v, ra->want);
    free(v);
    return ok;
}

/* A predicate for AWAIT(): the tc_cache `p`'s bus is up (L1 servable). */
static inline int bus_up(void *p)
{
    return tc__l1_servable(p, tc__now_ns());
}

/* The nodes a bus subscribes and heartbeats on, from its log line
 * ("bus: subscribing on host:port ... heartbeats on host:port"). Set
 * `on_bus_log` as tc_options.log with a bus_log as its user data;
 * initialise with {PTHREAD_MUTEX_INITIALIZER, 0, 0}. The fields are
 * written under `mu` from the library's threads. */
typedef struct bus_log {
    pthread_mutex_t mu;
    int sub_port, cmd_port;
} bus_log;

static inline void on_bus_log(void *ud, tc_log_level lvl, const char *msg)
{
    bus_log *bl = ud;
    const char *p = strstr(msg, "bus: subscribing on ");
    (void)lvl;
    if (p && (p = strchr(p + 20, ':'))) {
        const char *h = strstr(p, "heartbeats on ");
        pthread_mutex_lock(&bl->mu);
        bl->sub_port = atoi(p + 1);
        if (h && (h = strchr(h + 14, ':')))
            bl->cmd_port = atoi(h + 1);
        pthread_mutex_unlock(&bl->mu);
    }
}

/* What `bl` has seen so far: the subscription node's port, the heartbeat
 * node's (0: none yet). */
static inline int bus_log_sub_port(bus_log *bl)
{
    int p;
    pthread_mutex_lock(&bl->mu);
    p = bl->sub_port;
    pthread_mutex_unlock(&bl->mu);
    return p;
}

static inline int bus_log_cmd_port(bus_log *bl)
{
    int p;
    pthread_mutex_lock(&bl->mu);
    p = bl->cmd_port;
    pthread_mutex_unlock(&bl->mu);
    return p;
}

/* A master of cluster `t` other than the node the bus behind `bl`
 * heartbeats on, with its replica in *rep: a failover there does not
 * refuse the heartbeat. Asserts the log line was seen and both exist. */
static inline tcr_server *master_off_heartbeat(tcr_cluster *t, bus_log *bl,
                                               tcr_server **rep)
{
    int cmd_port = bus_log_cmd_port(bl);
    tcr_server *m;
    cr_assert_gt(cmd_port, 0, "no 'heartbeats on' log line");
    m = another_master(t, tcr_cluster_node(t, cmd_port));
    cr_assert_not_null(m);
    *rep = tcr_cluster_replica_of(t, m);
    cr_assert_not_null(*rep, "the master has no replica");
    return m;
}

/* CLUSTER FAILOVER on replica `rep` of cluster `t`, awaited until `rep`
 * is a master and the cluster says ok (AWAIT_MS at most). */
static inline void manual_failover(tcr_cluster *t, tcr_server *rep)
{
    char *r = tcr_cmd(rep, NULL, "CLUSTER", "FAILOVER", NULL);
    promoted pr = {t, rep};
    cr_assert(r && !strcmp(r, "OK"), "CLUSTER FAILOVER: %s", r);
    free(r);
    AWAIT(replica_promoted, &pr, "the replica was never promoted");
}

/* A predicate for AWAIT(): keep reading `key` on `c` (so its bus never
 * goes idle) until tcr_now_ms() reaches `until`. */
typedef struct past {
    tc_cache *c;
    const char *key;
    double until;
} past;

static inline int lease_passed(void *p)
{
    past *ps = p;
    free(get_str(ps->c, ps->key, NULL));
    return tcr_now_ms() >= ps->until;
}

#endif
