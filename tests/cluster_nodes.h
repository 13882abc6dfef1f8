/* Helpers on the nodes of a test cluster (cluster_fixture.h) that need
 * nothing of the library: roles, failover and migration steps, error
 * counters. Shared by the cluster suites (through cluster_common.h) and
 * the daemon's cluster suites (tests/daemon), instead of a copy in each.
 * Everything is static inline, test-only, and runs on the test's thread;
 * nothing here owns the servers it is given. */
#ifndef TC_TESTS_CLUSTER_NODES_H
#define TC_TESTS_CLUSTER_NODES_H

#include "crit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_fixture.h"

/* 1 if node `s` says role:master (INFO replication). */
static inline int is_master(const tcr_server *s)
{
    char *info = tcr_cmd(s, NULL, "INFO", "replication", NULL);
    int m = info && strstr(info, "role:master");
    free(info);
    return m;
}

/* A key "<stem>..." on each of cluster `t`'s three masters: keys[i] on
 * masters[i] (`masters` may be NULL); asserts there are three. */
static inline void keys_on_masters(tcr_cluster *t, const char *stem,
                                   char keys[3][64], tcr_server *masters[3])
{
    int n = 0;
    for (int i = 0; i < TCR_CLUSTER_NODES && n < 3; i++)
        if (is_master(&t->node[i])) {
            if (masters)
                masters[n] = &t->node[i];
            cr_assert_eq(tcr_cluster_key_on(t, &t->node[i], stem, keys[n], 64),
                         0);
            n++;
        }
    cr_assert_eq(n, 3, "not three masters");
}

/* A master of cluster `t` other than `m`, or NULL. */
static inline tcr_server *another_master(tcr_cluster *t, const tcr_server *m)
{
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        if (&t->node[i] != m && is_master(&t->node[i]))
            return &t->node[i];
    return NULL;
}

/* A predicate for AWAIT(): `replica` has become a master and cluster `t`
 * says cluster_state:ok. */
typedef struct promoted {
    tcr_cluster *t;
    tcr_server *replica;
} promoted;

static inline int replica_promoted(void *p)
{
    promoted *pr = p;
    return is_master(pr->replica) && tcr_cluster_ok(pr->t);
}

/* MIGRATE `key` from `a` to `b` (same slot, KEYS form); asserts OK. */
static inline void migrate(const tcr_server *a, const tcr_server *b,
                           const char *key)
{
    char port[16], *r;
    snprintf(port, sizeof(port), "%d", b->port);
    r = tcr_cmd(a, NULL, "MIGRATE", "127.0.0.1", port, "", "0", "5000",
                "KEYS", key, NULL);
    cr_assert(r && !strcmp(r, "OK"), "MIGRATE %s: %s", key, r);
    free(r);
}

/* How many `kind` errors ("MOVED", "ASK") node `s` has answered (INFO
 * errorstats), 0 if none or unknown. */
static inline long long errorstat_count(const char *kind, const tcr_server *s)
{
    char field[64], *info = tcr_cmd(s, NULL, "INFO", "errorstats", NULL);
    const char *p;
    long long n;
    snprintf(field, sizeof(field), "errorstat_%s:count=", kind);
    p = info ? strstr(info, field) : NULL;
    n = p ? atoll(p + strlen(field)) : 0;
    free(info);
    return n;
}

#endif
