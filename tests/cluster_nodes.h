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

/* Starts moving slot `slot` (a number, as text) from `a` to `b`: CLUSTER
 * SETSLOT IMPORTING on `b`, MIGRATING on `a`; no key moves yet. */
static inline void begin_slot_move(const tcr_server *a, const tcr_server *b,
                                   const char *slot)
{
    char ida[41], idb[41];
    cr_assert_eq(tcr_cluster_id(a, ida), 0);
    cr_assert_eq(tcr_cluster_id(b, idb), 0);
    free(tcr_cmd(b, NULL, "CLUSTER", "SETSLOT", slot, "IMPORTING", ida, NULL));
    free(tcr_cmd(a, NULL, "CLUSTER", "SETSLOT", slot, "MIGRATING", idb, NULL));
}

/* MIGRATEs the keys of slot `slot` still on `a` (up to 100) to `b`: those
 * whose name holds `match`, or all of them (`match` NULL). */
static inline void migrate_slot_keys(const tcr_server *a, const tcr_server *b,
                                     const char *slot, const char *match)
{
    char *keys = tcr_cmd(a, NULL, "CLUSTER", "GETKEYSINSLOT", slot, "100",
                         NULL),
         *p, *save = NULL;
    cr_assert_not_null(keys);
    for (p = strtok_r(keys, "\n", &save); p; p = strtok_r(NULL, "\n", &save))
        if (!match || strstr(p, match))
            migrate(a, b, p);
    free(keys);
}

/* Ends a slot's move: CLUSTER SETSLOT `slot` NODE `to` on `to`, then on
 * `from` (if not NULL), then on every node of cluster `t`. */
static inline void give_slot(tcr_cluster *t, const tcr_server *from,
                             const tcr_server *to, const char *slot)
{
    char id[41];
    cr_assert_eq(tcr_cluster_id(to, id), 0);
    free(tcr_cmd(to, NULL, "CLUSTER", "SETSLOT", slot, "NODE", id, NULL));
    if (from)
        free(tcr_cmd(from, NULL, "CLUSTER", "SETSLOT", slot, "NODE", id,
                     NULL));
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        free(tcr_cmd(&t->node[i], NULL, "CLUSTER", "SETSLOT", slot, "NODE",
                     id, NULL));
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
