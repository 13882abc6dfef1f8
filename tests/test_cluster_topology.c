/* Redis Cluster: invalidations keep reaching every instance when writes
 * move to a node the buses did not subscribe on as a master (README,
 * "Redis Cluster", "What the lease proves on a cluster"): a replica
 * promoted by a manual CLUSTER FAILOVER, whose demoted master stays up
 * and keeps answering tokens; a master that had no slot when the buses
 * connected and receives one through a migration (ASK, then SETSLOT
 * NODE); and a node that joins after they connected.
 *
 * Each case holds the CLUSTER INFO watch (tc__cache_hold_cluster_watch():
 * the epoch growth of a failover or a SETSLOT NODE resets the bus within
 * lease / 2), so what is tested is what the subscriptions and the CLUSTER
 * NODES poll alone guarantee, with no race against that watch. Before
 * every node had a subscription these cases served the old value for as
 * long as the watch was held. A real local cluster of three masters and
 * three replicas per case (cluster_fixture.h), plus the nodes a case
 * adds. */
#include <pthread.h>
#include <stdlib.h>

#include "common.h"
#include "cluster_fixture.h"
#include "cluster_common.h"

OWN_CLUSTER_SUITE(cluster_topology);

static tc_options opts(tc_coherence coherence)
{
    tc_options o = cluster_opts(&cl, coherence);
    o.default_ttl_ms = 600000;
    o.l1_ttl_ms = 600000;
    return o;
}

/* Two leases after a write returned, reader `b` (reading all along)
 * answers `want`. */
static void serves_after_lease(tc_cache *b, const char *key, const char *want,
                               unsigned lease_ms, const char *what)
{
    char *v;
    past ps = {b, key, tcr_now_ms() + 2.0 * lease_ms};
    AWAIT(lease_passed, &ps, "time stood still");
    v = get_str(b, key, NULL);
    cr_assert(v && !strcmp(v, want),
              "the reader serves %s two leases after %s was written %s",
              v ? v : "(nothing)", want, what);
    free(v);
}

/* ---- A manual failover -------------------------------------------------- */

/* Writer w and reader b; b holds `key` = v1 in L1; `key`'s master m (not
 * the state keys' master, where the heartbeat runs: a failover there
 * refuses the heartbeat and resets the bus by itself) hands over to its
 * replica with CLUSTER FAILOVER. m stays up and keeps answering b's
 * tokens. A write of v2 through w then runs on the promoted replica and
 * publishes on its channel: b must hear it there. Strict: the write
 * returns on b's acknowledgement and b never serves v1 after it. Async:
 * not beyond the lease. */
static void failover_case(tc_coherence coherence)
{
    bus_log bl = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    tc_options o = opts(coherence), ow;
    tc_cache *w, *b;
    tcr_server *m = NULL, *rep;
    char key[32], *v;
    tc_stats st;
    uint64_t expiries;
    o.lease_ms = coherence == TC_COHERENCE_STRICT ? 3000 : 100;
    ow = o;
    ow.log = on_bus_log;
    ow.log_userdata = &bl;
    w = must_create(&ow);
    b = must_create(&o);
    tc__cache_hold_cluster_watch(w, 1);
    tc__cache_hold_cluster_watch(b, 1);
    AWAIT(bus_up, w, "writer's bus never came up");
    AWAIT(bus_up, b, "reader's bus never came up");
    m = master_off_heartbeat(&cl, &bl, &rep);
    cr_assert_eq(tcr_cluster_key_on(&cl, m, "fo:", key, sizeof(key)), 0);
    /* Strict: the fleet's first lease may be waited out (lease.c). */
    cr_assert_eq(set_str(w, key, "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(b, key, "v1");

    manual_failover(&cl, rep);
    cr_assert(tcr_cluster_master_of(&cl, key) == rep);
    cr_assert(!is_master(m) && m->pid > 0, "the old master is not a live "
              "replica");

    tc_cache_stats(w, &st);
    expiries = st.strict_lease_expiries;
    cr_assert_eq(set_str(w, key, "v2", 0), TC_OK, "%s", tc_errmsg());
    if (coherence == TC_COHERENCE_STRICT) {
        v = get_str(b, key, NULL);
        cr_assert(v && !strcmp(v, "v2"),
                  "the reader served %s after a strict write on the "
                  "promoted replica returned",
                  v ? v : "(nothing)");
        free(v);
        tc_cache_stats(w, &st);
        cr_assert_eq(st.strict_lease_expiries, expiries,
                     "the strict write waited out its lease: the reader "
                     "never acknowledged it");
    } else {
        serves_after_lease(b, key, "v2", o.lease_ms,
                           "on the promoted replica");
    }
    tc_cache_destroy(w);
    tc_cache_destroy(b);
}

Test(cluster_topology, strict_after_a_manual_failover_never_serves_the_old_value)
{
    failover_case(TC_COHERENCE_STRICT);
}

Test(cluster_topology, async_after_a_manual_failover_not_beyond_the_lease)
{
    failover_case(TC_COHERENCE_ASYNC);
}

/* ---- A slot migrated onto a new master ---------------------------------- */

/* Start migrating `key`'s slot from its master to `to` (IMPORTING,
 * MIGRATING, every key of the slot moved: `key` and its stamps hash), so
 * that a write of `key` meets ASK and runs on `to`. */
static void start_migration(const char *key, const tcr_server *to,
                            char *slot, size_t slen)
{
    tcr_server *a = tcr_cluster_master_of(&cl, key);
    cr_assert_not_null(a);
    cr_assert_neq(a, to);
    snprintf(slot, slen, "%d", tcr_cluster_keyslot(&cl, key));
    begin_slot_move(a, to, slot);
    migrate_slot_keys(a, to, slot, NULL);
}

/* The final SETSLOT ... NODE, on every node. */
static void finish_migration(const char *slot, const tcr_server *to,
                             tcr_server *extra)
{
    char id[41];
    give_slot(&cl, NULL, to, slot);
    cr_assert_eq(tcr_cluster_id(to, id), 0);
    if (extra && extra != to)
        free(tcr_cmd(extra, NULL, "CLUSTER", "SETSLOT", slot, "NODE", id,
                     NULL));
}

typedef struct reset_since {
    tc_cache *c;
    uint64_t resets;
} reset_since;

static int bus_back_since(void *p)
{
    reset_since *rs = p;
    return tc__cache_bus_resets(rs->c) > rs->resets &&
           tc__l1_servable(rs->c, tc__now_ns());
}

/* n7 joins (a master with no slot) before the buses connect; a slot
 * migrates onto it and a write redirected there by ASK, then one after
 * the final SETSLOT NODE, must reach reader b. Then n8 joins while the
 * buses are connected: b's bus must notice it (CLUSTER NODES poll) and
 * subscribe there before serving L1 again, and a write migrated onto n8
 * must reach b too. */
Test(cluster_topology, writes_migrated_onto_a_new_master_reach_every_reader)
{
    tc_options o = opts(TC_COHERENCE_ASYNC);
    tcr_server n7, n8;
    tc_cache *w, *b;
    const char *k1 = "{topo-a}:k", *k2 = "{topo-b}:k";
    char slot[16];
    reset_since rs;
    memset(&n7, 0, sizeof(n7));
    memset(&n8, 0, sizeof(n8));
    o.lease_ms = 100;
    cr_assert_eq(tcr_cluster_add_node(&cl, &n7, 30000), 0);
    w = must_create(&o);
    b = must_create(&o);
    tc__cache_hold_cluster_watch(w, 1);
    tc__cache_hold_cluster_watch(b, 1);
    AWAIT(bus_up, w, "writer's bus never came up");
    AWAIT(bus_up, b, "reader's bus never came up");

    cr_assert_eq(set_str(w, k1, "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(b, k1, "v1");
    start_migration(k1, &n7, slot, sizeof(slot));
    cr_assert_eq(set_str(w, k1, "v2", 0), TC_OK, "%s", tc_errmsg());
    serves_after_lease(b, k1, "v2", o.lease_ms,
                       "through ASK on a master that had no slot");
    finish_migration(slot, &n7, NULL);
    warm(b, k1, "v2");
    cr_assert_eq(set_str(w, k1, "v3", 0), TC_OK, "%s", tc_errmsg());
    serves_after_lease(b, k1, "v3", o.lease_ms,
                       "on the master the slot moved to");

    rs.c = b;
    rs.resets = tc__cache_bus_resets(b);
    cr_assert_eq(tcr_cluster_add_node(&cl, &n8, 30000), 0);
    AWAIT(bus_back_since, &rs,
          "the reader's bus kept its lease with a node it has no "
          "subscription on");
    cr_assert_eq(set_str(w, k2, "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(b, k2, "v1");
    start_migration(k2, &n8, slot, sizeof(slot));
    cr_assert_eq(set_str(w, k2, "v2", 0), TC_OK, "%s", tc_errmsg());
    serves_after_lease(b, k2, "v2", o.lease_ms,
                       "through ASK on a master that joined after the "
                       "bus connected");
    tc_cache_destroy(w);
    tc_cache_destroy(b);
    tcr_stop(&n8);
    tcr_stop(&n7);
}
