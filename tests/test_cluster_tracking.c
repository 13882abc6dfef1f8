/* Redis Cluster: server-assisted invalidation (tracking = TC_YES; README,
 * "Redis Cluster"). Every node's subscriber of a bus (masters and
 * replicas) is the redirect target of CLIENT TRACKING on REDIRECT <its id>
 * BCAST PREFIX <prefix> on its own node, and hears __redis__:invalidate
 * there: a plain Redis client writing straight to any master invalidates
 * L1, every node tracks (so a promoted replica already does), and a node
 * that refuses tracking keeps L1 from being served. One real local
 * cluster of three masters and three replicas per case
 * (cluster_fixture.h). */
#include <pthread.h>
#include <stdlib.h>

#include "common.h"
#include "cluster_fixture.h"
#include "cluster_common.h"

OWN_CLUSTER_SUITE(cluster_tracking);

#define PREFIX "t:"

static tc_options opts(void)
{
    tc_options o = cluster_opts(&cl, TC_COHERENCE_ASYNC);
    o.tracking = TC_YES;
    o.key_prefix = PREFIX;
    o.default_ttl_ms = 600000;
    o.l1_ttl_ms = 600000;
    return o;
}

static int servable(void *p)
{
    return tc__cache_l1_servable(p);
}

/* The value of field `name` ("flags=", "id=", ...) on CLIENT LIST line
 * `line`, into buf. */
static void field(const char *line, const char *name, char *buf, size_t len)
{
    const char *f = strstr(line, name);
    buf[0] = '\0';
    if (f && (f == line || f[-1] == ' '))
        snprintf(buf, len, "%.*s", (int)strcspn(f + strlen(name), " \n"),
                 f + strlen(name));
}

/* How many of `s`'s clients have CLIENT TRACKING on (flag 't') in BCAST
 * mode (flag 'B'), redirected to a subscribed client (flag 'P') of the
 * same node. */
static int tracking_clients(const tcr_server *s)
{
    char *list = tcr_cmd(s, NULL, "CLIENT", "LIST", NULL);
    char subs[4096] = " ";
    int n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (char *line = list; line && *line;) {
            char *end = strchr(line, '\n');
            char flags[32], id[32], redir[40];
            field(line, "flags=", flags, sizeof(flags));
            field(line, "id=", id, sizeof(id));
            field(line, "redir=", redir, sizeof(redir));
            if (pass == 0 && strchr(flags, 'P') &&
                strlen(subs) + strlen(id) + 2 < sizeof(subs)) {
                strcat(subs, id);
                strcat(subs, " ");
            } else if (pass == 1 && strchr(flags, 't') &&
                       strchr(flags, 'B')) {
                char needle[44];
                snprintf(needle, sizeof(needle), " %s ", redir);
                n += strstr(subs, needle) != NULL;
            }
            line = end ? end + 1 : NULL;
        }
    free(list);
    return n;
}

/* A plain client on each master writes a prefixed key of that master:
 * an instance with tracking drops its L1 copy of each. */
Test(cluster_tracking, plain_writes_on_every_master_invalidate_l1)
{
    tc_options o = opts();
    tc_cache *b = must_create(&o);
    char keys[3][32];
    tcr_server *m[3];
    int nm = 0;
    for (int i = 0; i < TCR_CLUSTER_NODES && nm < 3; i++)
        if (is_master(&cl.node[i]))
            m[nm++] = &cl.node[i];
    cr_assert_eq(nm, 3, "%d masters", nm);
    AWAIT(servable, b, "tracking bus never ready on the cluster");
    for (int i = 0; i < 3; i++) {
        char *raw;
        cr_assert_eq(tcr_cluster_key_on(&cl, m[i], PREFIX "k", keys[i],
                                        sizeof(keys[i])),
                     0);
        raw = tcr_cmd(m[i], NULL, "SET", keys[i], "v1", NULL);
        cr_assert(raw && !strcmp(raw, "OK"), "SET on its master: %s", raw);
        free(raw);
        warm(b, keys[i] + strlen(PREFIX), "v1");
    }
    /* Every node tracks, replicas too (so a promoted replica already
     * does): one BCAST tracking client, redirected to this bus's
     * subscriber there. */
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        cr_assert_eq(tracking_clients(&cl.node[i]), 1,
                     "node %d (port %d) has %d tracking clients redirected "
                     "to a subscriber",
                     i, cl.node[i].port, tracking_clients(&cl.node[i]));
    for (int i = 0; i < 3; i++) {
        holds_arg a = {b, keys[i] + strlen(PREFIX), "v1"};
        char *raw = tcr_cmd(m[i], NULL, "SET", keys[i], "v2", NULL);
        cr_assert(raw && !strcmp(raw, "OK"), "SET on its master: %s", raw);
        free(raw);
        AWAIT(l1_drops, &a, "%s=v1 (on port %d) never invalidated", keys[i],
              m[i]->port);
    }
    for (int i = 0; i < 3; i++) {
        char *s = get_str(b, keys[i] + strlen(PREFIX), NULL);
        cr_assert(s && !strcmp(s, "v2"), "%s reads %s", keys[i],
                  s ? s : "(nothing)");
        free(s);
    }
    tc_cache_destroy(b);
}

/* Counts the log lines of a refused tracking set-up. */
typedef struct refusals {
    pthread_mutex_t mu;
    int n;
} refusals;

static void on_log(void *ud, tc_log_level lvl, const char *msg)
{
    refusals *r = ud;
    (void)lvl;
    if (strstr(msg, "CLIENT ID refused") ||
        strstr(msg, "CLIENT TRACKING refused")) {
        pthread_mutex_lock(&r->mu);
        r->n++;
        pthread_mutex_unlock(&r->mu);
    }
}

static int refused_twice(void *p)
{
    refusals *r = p;
    int n;
    pthread_mutex_lock(&r->mu);
    n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n >= 2;
}

/* One node (a replica) refuses the ACL user CLIENT: the instance keeps
 * trying, and serves nothing from L1 meanwhile. */
Test(cluster_tracking, refused_on_one_replica_serves_no_l1)
{
    refusals rf = {PTHREAD_MUTEX_INITIALIZER, 0};
    tc_options o = opts();
    tc_cache *b;
    tcr_server *rep = NULL;
    char key[32], *raw, *s;
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        const char *client = "+client";
        if (!rep && !is_master(&cl.node[i])) {
            rep = &cl.node[i];
            client = "-client";
        }
        raw = tcr_cmd(&cl.node[i], NULL, "ACL", "SETUSER", "tc", "on",
                      ">pw", "~*", "&*", "+@all", client, NULL);
        cr_assert(raw && !strcmp(raw, "OK"), "ACL SETUSER: %s", raw);
        free(raw);
    }
    cr_assert(rep, "no replica");
    o.username = "tc";
    o.password = "pw";
    o.log = on_log;
    o.log_userdata = &rf;
    b = must_create(&o);
    AWAIT(refused_twice, &rf, "the replica on port %d never refused",
          rep->port);
    cr_assert_eq(tcr_cluster_key_on(&cl, tcr_cluster_master_of(&cl, "t:k"),
                                    PREFIX "k", key, sizeof(key)),
                 0);
    raw = tcr_cmd(tcr_cluster_master_of(&cl, key), NULL, "SET", key, "v1",
                  NULL);
    free(raw);
    for (int i = 0; i < 3; i++) {
        s = get_str(b, key + strlen(PREFIX), NULL);
        cr_assert(s && !strcmp(s, "v1"), "reads %s from L2",
                  s ? s : "(nothing)");
        free(s);
        cr_assert(!l1_serves(b, key + strlen(PREFIX), "v1"),
                  "L1 served with tracking refused on port %d", rep->port);
    }
    cr_assert(!tc__cache_l1_servable(b), "L1 servable");
    tc_cache_destroy(b);
}

/* A master other than the state keys' hands over to its replica (CLUSTER
 * FAILOVER; the CLUSTER INFO watch held, so the bus is not reset by the
 * epoch change): a plain write on the promoted replica invalidates L1,
 * since the replica tracked from the start. */
Test(cluster_tracking, a_promoted_replica_already_tracks)
{
    bus_log bl = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    tc_options o = opts();
    tc_cache *b;
    tcr_server *m = NULL, *rep;
    char key[32], *raw;
    holds_arg a;
    o.log = on_bus_log;
    o.log_userdata = &bl;
    b = must_create(&o);
    tc__cache_hold_cluster_watch(b, 1);
    AWAIT(servable, b, "tracking bus never ready on the cluster");
    m = master_off_heartbeat(&cl, &bl, &rep);
    cr_assert_eq(tcr_cluster_key_on(&cl, m, PREFIX "fo", key, sizeof(key)),
                 0);
    raw = tcr_cmd(m, NULL, "SET", key, "v1", NULL);
    free(raw);
    warm(b, key + strlen(PREFIX), "v1");

    manual_failover(&cl, rep);
    cr_assert(tcr_cluster_master_of(&cl, key) == rep);
    /* The failover itself may have left b's copy alone or not; put v1
     * back in L1 so that only the write below can drop it. */
    warm(b, key + strlen(PREFIX), "v1");
    raw = tcr_cmd(rep, NULL, "SET", key, "v2", NULL);
    cr_assert(raw && !strcmp(raw, "OK"), "SET on the promoted replica: %s",
              raw);
    free(raw);
    a = (holds_arg){b, key + strlen(PREFIX), "v1"};
    AWAIT(l1_drops, &a, "%s=v1 never invalidated after the write on the "
                        "promoted replica (port %d)",
          key, rep->port);
    tc_cache_destroy(b);
}
