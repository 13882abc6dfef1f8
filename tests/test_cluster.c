/* Redis Cluster (issue 10): a redis-cluster:// URL routes the library's L2
 * commands by slot, follows MOVED and ASK through resharding and slot
 * migrations, splits multi-key calls by slot, carries invalidations
 * between instances subscribed on different nodes, and recovers from a
 * master killed with kill -9 without a new handle and without a stale L1.
 * A real local cluster of three masters and three replicas
 * (cluster_fixture.h): the cases that only read and write keys of their
 * own share one (.init = shared_cluster; meson runs this file under
 * tcr-cluster-run), every case that kills, moves or cuts something starts
 * its own (.init = own_cluster). */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "cluster_fixture.h"
#include "cluster_common.h"

static tcr_cluster cl;

/* A case's cluster: the shared one, which the case leaves as it found it
 * (cluster_fixture.h, "Shared clusters"), or its own. */
static void shared_cluster(void)
{
    cr_assert_eq(tcr_cluster_shared(&cl, 60000), 0, "no cluster");
}

static void own_cluster(void)
{
    cr_assert_eq(tcr_cluster_start(&cl, 60000), 0, "cluster did not start");
}

static void cl_teardown(void)
{
    tcr_cluster_stop(&cl);
}

/* Every case names its cluster with .init (above). */
TestSuite(cluster, .fini = cl_teardown);

static tc_options cl_opts(tc_coherence coherence)
{
    return cluster_opts(&cl, coherence);
}

/* GET through `redis-cli -c` (which follows MOVED itself) on node `s`. */
static char *cli_get(const tcr_server *s, const char *key)
{
    char cmd[512], buf[256];
    FILE *f;
    size_t n;
    snprintf(cmd, sizeof(cmd), "redis-cli -c -p %d GET '%s'", s->port, key);
    if (!(f = popen(cmd, "r")))
        return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    pclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return strdup(buf);
}

/* ---- Routing ------------------------------------------------------------ */

Test(cluster, keys_on_every_master_match_redis_cli, .init = shared_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_NONE);
    tc_cache *w = must_create(&o), *r = must_create(&o);
    int on[TCR_CLUSTER_NODES] = {0};
    for (int i = 0; i < 30; i++) {
        char k[32], v[32], *got;
        tcr_server *m;
        snprintf(k, sizeof(k), "route:%d", i);
        snprintf(v, sizeof(v), "value-%d", i);
        cr_assert_eq(set_str(w, k, v, 0), TC_OK, "%s", tc_errmsg());
        m = tcr_cluster_master_of(&cl, k);
        cr_assert_not_null(m);
        on[m - cl.node]++;
        /* On the slot's master itself, and as redis-cli -c sees it from
         * another node. */
        got = tcr_cmd(m, NULL, "GET", k, NULL);
        cr_assert(got && !strcmp(got, v), "%s not on its master", k);
        free(got);
        got = cli_get(&cl.node[(m - cl.node + 1) % TCR_CLUSTER_NODES], k);
        cr_assert(got && !strcmp(got, v), "redis-cli -c: %s", got);
        free(got);
        got = get_str(r, k, NULL); /* another instance: from L2 */
        cr_assert(got && !strcmp(got, v));
        free(got);
    }
    {
        int masters = 0;
        for (int i = 0; i < TCR_CLUSTER_NODES; i++)
            masters += on[i] > 0;
        cr_assert_eq(masters, 3, "30 keys did not reach all three masters");
    }
    tc_cache_destroy(w);
    tc_cache_destroy(r);
}

Test(cluster, hash_tags_keep_keys_and_their_stamps_on_one_slot,
     .init = shared_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_NONE);
    tc_cache *c;
    const char *ks[2] = {"{user42}:name", "{user42}:mail"};
    const void *keys[2] = {ks[0], ks[1]};
    size_t kl[2] = {strlen(ks[0]), strlen(ks[1])};
    int slot = tcr_cluster_keyslot(&cl, "user42");
    tcr_server *m = tcr_cluster_master_of(&cl, ks[0]);
    uint64_t deleted = 0;
    char *found, *p;
    /* A channel of its own: on the shared cluster, the stamps hashes
     * below are this case's only ("__tiercache:<stem>:stamps{<slot>}"). */
    o.channel = "__tiercache:hashtags";
    c = must_create(&o);
    cr_assert_eq(tcr_cluster_keyslot(&cl, ks[1]), slot);
    cr_assert_eq(set_str(c, ks[0], "a", 0), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(set_str(c, ks[1], "b", 0), TC_OK, "%s", tc_errmsg());
    /* The write's stamps hash is on the key's master, in the key's slot. */
    found = tcr_cmd(m, NULL, "KEYS", "__tiercache:hashtags:stamps*", NULL);
    cr_assert(found && *found, "no stamps hash on the key's master");
    for (p = strtok(found, "\n"); p; p = strtok(NULL, "\n"))
        cr_assert_eq(tcr_cluster_keyslot(&cl, p), slot, "%s: other slot", p);
    free(found);
    /* One slot: one MULTI deletes both. */
    cr_assert_eq(tc_mdel(c, 2, keys, kl, &deleted), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(deleted, 2);
    found = tcr_cmd(m, NULL, "EXISTS", ks[0], ks[1], NULL);
    cr_assert_str_eq(found, "0");
    free(found);
    tc_cache_destroy(c);
}

Test(cluster, mget_and_mdel_across_slots, .init = shared_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_NONE);
    tc_cache *c = must_create(&o), *r = must_create(&o);
    enum { N = 24 };
    char names[N][16];
    const void *keys[N];
    size_t kl[N];
    tc_value *out[N];
    tc_result res[N];
    uint64_t deleted = 0;
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "m:%d", i);
        keys[i] = names[i], kl[i] = strlen(names[i]);
        if (i < N - 2) /* two absent keys */
            cr_assert_eq(set_str(c, names[i], names[i], 0), TC_OK, "%s",
                         tc_errmsg());
    }
    cr_assert_eq(tc_mget(r, N, keys, kl, out, res), TC_OK, "%s", tc_errmsg());
    for (int i = 0; i < N; i++) {
        if (i < N - 2) {
            cr_assert_eq(res[i], TC_OK);
            cr_assert_eq(tc_value_len(out[i]), kl[i]);
            cr_assert(!memcmp(tc_value_data(out[i]), names[i], kl[i]));
            tc_value_release(out[i]);
        } else {
            cr_assert_eq(res[i], TC_NOT_FOUND);
        }
    }
    cr_assert_eq(tc_mdel(c, N, keys, kl, &deleted), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(deleted, N - 2);
    for (int i = 0; i < N; i++) {
        tcr_server *m = tcr_cluster_master_of(&cl, names[i]);
        char *e = tcr_cmd(m, NULL, "EXISTS", names[i], NULL);
        cr_assert_str_eq(e, "0", "%s still on its master", names[i]);
        free(e);
    }
    tc_cache_destroy(c);
    tc_cache_destroy(r);
}

Test(cluster, prefix_invalidation_scans_every_master, .init = shared_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_NONE);
    tc_cache *c = must_create(&o);
    for (int i = 0; i < 30; i++) {
        char k[32];
        snprintf(k, sizeof(k), "pfx:%d", i);
        cr_assert_eq(set_str(c, k, "v", 0), TC_OK, "%s", tc_errmsg());
    }
    cr_assert_eq(set_str(c, "other", "v", 0), TC_OK);
    {
        double t0 = tcr_now_ms();
        cr_assert_eq(tc_invalidate_prefix(c, "pfx:", 4), TC_OK, "%s",
                     tc_errmsg());
        fprintf(stderr,
                "cluster: tc_invalidate_prefix on 3 masters: %.1f ms\n",
                tcr_now_ms() - t0);
    }
    /* On the masters (their replicas follow asynchronously). */
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication", NULL);
        char *n = NULL;
        if (info && strstr(info, "role:master")) {
            n = tcr_cmd(&cl.node[i], NULL, "KEYS", "pfx:*", NULL);
            cr_assert(n && !*n, "master %d still holds %s", i, n);
        }
        free(n);
        free(info);
    }
    {
        char *v = get_str(c, "other", NULL);
        cr_assert(v && !strcmp(v, "v"));
        free(v);
    }
    tc_cache_destroy(c);
}

/* ---- Redirections ------------------------------------------------------- */

/* Run redis-cli with argv (NULL-terminated); its exit status. */
static int run_cli(const char *const *argv)
{
    pid_t pid = fork();
    int st;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp("redis-cli", (char *const *)argv);
        _exit(127);
    }
    while (waitpid(pid, &st, 0) < 0) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct reshard {
    pthread_t th;
    char from[41], to[41], addr[32];
    int status;
    atomic_int done;
} reshard;

static void *reshard_main(void *p)
{
    reshard *rs = p;
    const char *argv[] = {"redis-cli", "--cluster", "reshard", rs->addr,
                          "--cluster-from", rs->from, "--cluster-to", rs->to,
                          "--cluster-slots", "2000", "--cluster-yes",
                          "--cluster-pipeline", "5", NULL};
    rs->status = run_cli(argv);
    atomic_store(&rs->done, 1);
    return NULL;
}

Test(cluster, reads_and_writes_work_through_a_reshard, .init = own_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_NONE);
    tc_cache *c;
    /* MIGRATE blocks the source node while it moves keys: on a loaded
     * machine that can take longer than the suite's 500 ms. What is under
     * test here is the redirections, not the timeout. */
    o.command_timeout_ms = 10000;
    c = must_create(&o);
    tcr_server *a = tcr_cluster_master_of(&cl, "rs:0"), *b = NULL;
    reshard rs;
    int rounds = 0, moved_keys = 0;
    memset(&rs, 0, sizeof(rs));
    for (int i = 0; i < TCR_CLUSTER_NODES && !b; i++) {
        char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication", NULL);
        if (&cl.node[i] != a && info && strstr(info, "role:master"))
            b = &cl.node[i];
        free(info);
    }
    cr_assert_not_null(b);
    /* Keys on a, many of which move to b. */
    for (int i = 0; i < 200; i++) {
        char k[32];
        snprintf(k, sizeof(k), "rs:%d", i);
        cr_assert_eq(set_str(c, k, "0", 0), TC_OK, "%s", tc_errmsg());
    }
    cr_assert_eq(tcr_cluster_id(a, rs.from), 0);
    cr_assert_eq(tcr_cluster_id(b, rs.to), 0);
    snprintf(rs.addr, sizeof(rs.addr), "127.0.0.1:%d", a->port);
    cr_assert_eq(pthread_create(&rs.th, NULL, reshard_main, &rs), 0);
    /* While slots move (and once more after): every write and read
     * succeeds and reads back what was written. */
    do {
        int last = atomic_load(&rs.done);
        for (int i = 0; i < 200; i++) {
            char k[32], v[32], *got;
            tc_result r;
            snprintf(k, sizeof(k), "rs:%d", i);
            snprintf(v, sizeof(v), "%d", rounds + 1);
            r = set_str(c, k, v, 0);
            cr_assert_eq(r, TC_OK, "set %s in round %d: %s (%s)", k, rounds,
                         tc_strerror(r), tc_errmsg());
            got = get_str(c, k, &r);
            cr_assert(got && !strcmp(got, v), "get %s: %s (%s)", k,
                      tc_strerror(r), tc_errmsg());
            free(got);
        }
        rounds++;
        if (last)
            break;
    } while (1);
    pthread_join(rs.th, NULL);
    cr_assert_eq(rs.status, 0, "redis-cli --cluster reshard failed");
    for (int i = 0; i < 200; i++) {
        char k[32];
        snprintf(k, sizeof(k), "rs:%d", i);
        moved_keys += tcr_cluster_master_of(&cl, k) == b;
    }
    cr_assert_gt(moved_keys, 0, "the reshard moved none of the keys");
    fprintf(stderr,
            "cluster: reshard: %d rounds of 200 writes and reads, %d keys "
            "moved\n",
            rounds, moved_keys);
    tc_cache_destroy(c);
}

Test(cluster, ask_during_a_slot_migration_then_moved, .init = own_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_NONE);
    tc_cache *w = must_create(&o), *r2;
    const char *k = "{mig}:a", *k2 = "{mig}:b";
    tcr_server *a = tcr_cluster_master_of(&cl, k), *b = NULL;
    char slot[16], *got;
    int s = tcr_cluster_keyslot(&cl, k);
    for (int i = 0; i < TCR_CLUSTER_NODES && !b; i++) {
        char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication", NULL);
        if (&cl.node[i] != a && info && strstr(info, "role:master"))
            b = &cl.node[i];
        free(info);
    }
    cr_assert_not_null(b);
    snprintf(slot, sizeof(slot), "%d", s);
    cr_assert_eq(set_str(w, k, "old-a", 0), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(set_str(w, k2, "old-b", 0), TC_OK, "%s", tc_errmsg());
    begin_slot_move(a, b, slot);
    /* Move k and the slot's stamps hash (what a write of k touches); k2
     * stays on a. */
    migrate(a, b, k);
    migrate_slot_keys(a, b, slot, "stamps");

    /* A new instance reads k through ASK, and k2 still from a. */
    r2 = must_create(&o);
    got = get_str(r2, k, NULL);
    cr_assert(got && !strcmp(got, "old-a"), "k through ASK: %s", got);
    free(got);
    got = get_str(r2, k2, NULL);
    cr_assert(got && !strcmp(got, "old-b"));
    free(got);
    /* A write of k: ASKING + the MULTI on b. */
    cr_assert_eq(set_str(w, k, "new-a", 0), TC_OK, "%s", tc_errmsg());
    got = tcr_cmd(b, NULL, "ASKING", NULL);
    free(got);
    /* Finish: b owns the slot; everyone learns it by MOVED. */
    migrate(a, b, k2);
    give_slot(&cl, a, b, slot);
    got = tcr_cmd(b, NULL, "GET", k, NULL);
    cr_assert(got && !strcmp(got, "new-a"), "k on b: %s", got);
    free(got);
    cr_assert_eq(set_str(w, k2, "new-b", 0), TC_OK, "%s", tc_errmsg());
    got = tcr_cmd(b, NULL, "GET", k2, NULL);
    cr_assert(got && !strcmp(got, "new-b"), "k2 on b: %s", got);
    free(got);
    tc_cache_destroy(r2); /* its L1 holds old-a: no bus in this test */
    r2 = must_create(&o);
    got = get_str(r2, k, NULL);
    cr_assert(got && !strcmp(got, "new-a"));
    free(got);
    tc_cache_destroy(w);
    tc_cache_destroy(r2);
}

/* ---- The bus ------------------------------------------------------------ */

static int received_one(void *p)
{
    tc_stats st;
    tc_cache_stats(p, &st);
    return st.inval_received > 0;
}

Test(cluster, invalidation_reaches_an_instance_subscribed_on_another_node,
     .init = shared_cluster)
{
    bus_log bl = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    tc_options o = cl_opts(TC_COHERENCE_ASYNC), ob;
    tc_cache *w = must_create(&o), *b;
    tcr_server *sub, *km = NULL;
    char key[32], *v;
    tc_stats st;
    ob = o;
    ob.log = on_bus_log;
    ob.log_userdata = &bl;
    b = must_create(&ob);
    AWAIT(bus_up, b, "reader's bus never came up");
    sub = tcr_cluster_node(&cl, bus_log_sub_port(&bl));
    cr_assert_not_null(sub, "no 'subscribing on' log line");
    /* A key whose master is not the reader's subscription node. */
    for (int i = 0; i < TCR_CLUSTER_NODES && !km; i++)
        if (&cl.node[i] != sub) {
            char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication",
                                 NULL);
            if (info && strstr(info, "role:master"))
                km = &cl.node[i];
            free(info);
        }
    cr_assert_not_null(km);
    cr_assert_eq(tcr_cluster_key_on(&cl, km, "inv:", key, sizeof(key)), 0);
    cr_assert_eq(set_str(w, key, "v1", 0), TC_OK, "%s", tc_errmsg());
    /* The reader's copy must come after v1's own invalidation, which would
     * drop it. */
    AWAIT(received_one, b, "v1's invalidation never reached the reader");
    v = get_str(b, key, NULL);
    cr_assert(v && !strcmp(v, "v1"));
    free(v);
    tc_cache_stats(b, &st);
    cr_assert_gt(st.l1_entries, 0, "the reader holds no L1 copy (bypassed %llu, flushes %llu, reconnects %llu, skipped %llu)", (unsigned long long)st.l1_bypassed, (unsigned long long)st.bus_flushes, (unsigned long long)st.bus_reconnects, (unsigned long long)st.fills_skipped);
    cr_assert_eq(set_str(w, key, "v2", 0), TC_OK, "%s", tc_errmsg());
    {
        reads_as ra = {b, key, "v2"};
        AWAIT(reads, &ra, "reader on port %d still serves v1 (key on %d)",
              sub->port, km->port);
    }
    tc_cache_stats(b, &st);
    cr_assert_gt(st.inval_applied, 0, "v2 came without an invalidation");
    tc_cache_destroy(w);
    tc_cache_destroy(b);
}

/* The README's hole (Redis Cluster, "What the lease does not prove"): the
 * cluster-bus links between the key's master and the reader's other nodes
 * are dropped (DEBUG CLUSTERLINK KILL) just before a write, so its PUBLISH
 * never crosses to them, while every node stays up and no node is flagged
 * failed. The reader's lease must still not let it serve the old value
 * once a lease has passed since the write returned: the invalidation has
 * to reach it over a path the lease proves (a subscription on the key's
 * master itself, bus.c). Without it the reader kept serving "v1" for good. */

/* How the lost-link cases write v2: a plain tc_set, or an EXEC on a
 * session that WATCHes the key (its own connection to the key's master,
 * not the pool). */
typedef tc_result (*v2_writer)(tc_cache *w, const char *key);

static tc_result write_plain(tc_cache *w, const char *key)
{
    return set_str(w, key, "v2", 0);
}

/* A session on `w` that WATCHes `key` (*s, caller closes), or NULL. */
static tc_session *watching(tc_cache *w, const char *key)
{
    tc_session *s = NULL;
    tc_reply *rep = NULL;
    const char *watch[2] = {"WATCH", key};
    const size_t watchl[2] = {5, strlen(key)};
    if (tc_session_open(w, &s) != TC_OK)
        return NULL;
    if (tc_session_command(s, 2, watch, watchl, &rep) != TC_OK) {
        tc_session_close(s);
        s = NULL;
    }
    tc_reply_free(rep);
    return s;
}

static tc_result write_watched(tc_cache *w, const char *key)
{
    tc_session *s = watching(w, key);
    tc_reply *rep = NULL;
    tc_result r;
    const char *set[3] = {"SET", key, "v2"};
    const size_t setl[3] = {3, strlen(key), 2};
    const char *const *argvs[1] = {set};
    const size_t *const argvlens[1] = {setl};
    int argcs[1] = {3};
    if (!s)
        return TC_L2_UNAVAILABLE;
    r = tc_session_multi(s, 1, argcs, argvs, argvlens, &rep);
    if (r == TC_OK && tc_reply_type(rep) != TC_REPLY_ARRAY)
        r = TC_PROTOCOL; /* the EXEC did not run */
    tc_reply_free(rep);
    tc_session_close(s);
    return r;
}

/* A write made while WATCHing, outside MULTI: one script with its
 * invalidation on the session's connection (watched.c). */
static tc_result write_while_watching(tc_cache *w, const char *key)
{
    tc_session *s = watching(w, key);
    tc_reply *rep = NULL;
    tc_result r;
    const char *set[3] = {"SET", key, "v2"};
    const size_t setl[3] = {3, strlen(key), 2};
    if (!s)
        return TC_L2_UNAVAILABLE;
    r = tc_session_command(s, 3, set, setl, &rep);
    if (r == TC_OK && tc_reply_type(rep) != TC_REPLY_STATUS)
        r = TC_PROTOCOL; /* not Redis's +OK */
    tc_reply_free(rep);
    tc_session_close(s);
    return r;
}

static void lost_link_case(v2_writer write_v2)
{
    bus_log bl = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    tc_options o = cl_opts(TC_COHERENCE_ASYNC), ob;
    tc_cache *w, *b;
    tcr_server *km = NULL;
    char key[32], *v;
    int sp, cp;
    tc_stats st;
    o.default_ttl_ms = 600000;
    o.l1_ttl_ms = 600000;
    o.lease_ms = 100;
    w = must_create(&o);
    ob = o;
    ob.log = on_bus_log;
    ob.log_userdata = &bl;
    b = must_create(&ob);
    AWAIT(bus_up, b, "reader's bus never came up");
    pthread_mutex_lock(&bl.mu);
    sp = bl.sub_port, cp = bl.cmd_port;
    pthread_mutex_unlock(&bl.mu);
    /* A key on a master that is neither the reader's subscription node
     * nor its heartbeat node. */
    for (int i = 0; i < TCR_CLUSTER_NODES && !km; i++)
        if (cl.node[i].port != sp && cl.node[i].port != cp) {
            char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication",
                                 NULL);
            if (info && strstr(info, "role:master"))
                km = &cl.node[i];
            free(info);
        }
    cr_assert_not_null(km);
    cr_assert_eq(tcr_cluster_key_on(&cl, km, "lost:", key, sizeof(key)), 0);
    cr_assert_eq(set_str(w, key, "v1", 0), TC_OK, "%s", tc_errmsg());
    AWAIT(received_one, b, "v1's invalidation never reached the reader");
    {
        reads_as ra = {b, key, "v1"};
        AWAIT(reads, &ra, "the reader never read v1");
    }
    v = get_str(b, key, NULL);
    free(v);
    tc_cache_stats(b, &st);
    cr_assert_gt(st.l1_entries, 0, "the reader holds no L1 copy");
    /* Drop the key's master's cluster-bus links to every other node. */
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char id[48], *r;
        if (&cl.node[i] == km)
            continue;
        cr_assert_eq(tcr_cluster_id(&cl.node[i], id), 0);
        r = tcr_cmd(km, NULL, "DEBUG", "CLUSTERLINK", "KILL", "all", id,
                    NULL);
        cr_assert(r && !strcmp(r, "OK"), "DEBUG CLUSTERLINK: %s", r);
        free(r);
    }
    cr_assert_eq(write_v2(w, key), TC_OK, "%s", tc_errmsg());
    {
        /* Two leases after the write returned (the reader keeps reading,
         * so its bus does not go idle), the old copy must be gone. */
        past ps = {b, key, tcr_now_ms() + 2.0 * o.lease_ms};
        AWAIT(lease_passed, &ps, "time stood still");
    }
    v = get_str(b, key, NULL);
    cr_assert(v && !strcmp(v, "v2"),
              "the reader serves %s a lease after v2 was written (its "
              "invalidation was lost on the cluster bus)",
              v ? v : "(nothing)");
    free(v);
    tc_cache_destroy(w);
    tc_cache_destroy(b);
}

Test(cluster, an_invalidation_lost_on_the_cluster_bus_is_not_served_past_the_lease,
     .init = own_cluster)
{
    lost_link_case(write_plain);
}

/* A session's EXEC under WATCH runs on the session's own connection to the
 * key's master: it must publish on that master's channel too, not on the
 * plain channel that crosses the cluster bus. */
Test(cluster, a_watched_exec_publishes_on_its_masters_channel,
     .init = own_cluster)
{
    lost_link_case(write_watched);
}

Test(cluster, a_write_while_watching_publishes_on_its_masters_channel,
     .init = own_cluster)
{
    lost_link_case(write_while_watching);
}

/* Strict mode on a cluster: the member count is a second step on the
 * members' master after the write (publish.c). A reader's copy is gone
 * when the write returns, and the writer returned on the reader's
 * acknowledgement, not by waiting out its lease (3 s here): the count
 * found the reader. On a cluster of its own: the members set must hold
 * no instance of an earlier case, whose lease the write would wait out. */
Test(cluster, strict_write_waits_for_the_counted_reader_across_nodes,
     .init = own_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_STRICT);
    tc_cache *w, *b;
    char key[32], *v;
    tc_stats st;
    uint64_t expiries;
    tcr_server *km = NULL;
    o.lease_ms = 3000;
    w = must_create(&o);
    b = must_create(&o);
    AWAIT(bus_up, w, "writer's bus never came up");
    AWAIT(bus_up, b, "reader's bus never came up");
    for (int i = 0; i < TCR_CLUSTER_NODES && !km; i++) {
        char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication", NULL);
        if (info && strstr(info, "role:master"))
            km = &cl.node[i];
        free(info);
    }
    cr_assert_not_null(km);
    cr_assert_eq(tcr_cluster_key_on(&cl, km, "strict:", key, sizeof(key)), 0);
    /* The fleet's first lease: the count answers "unknown" (lease.c), so
     * this one may wait it out. */
    cr_assert_eq(set_str(w, key, "v1", 0), TC_OK, "%s", tc_errmsg());
    {
        reads_as ra = {b, key, "v1"};
        AWAIT(reads, &ra, "the reader never read v1");
    }
    free(get_str(b, key, NULL));
    tc_cache_stats(b, &st);
    cr_assert_gt(st.l1_entries, 0, "the reader holds no L1 copy");
    tc_cache_stats(w, &st);
    expiries = st.strict_lease_expiries;
    cr_assert_eq(set_str(w, key, "v2", 0), TC_OK, "%s", tc_errmsg());
    v = get_str(b, key, NULL);
    cr_assert(v && !strcmp(v, "v2"), "the reader served %s after a strict "
              "write returned", v ? v : "(nothing)");
    free(v);
    tc_cache_stats(w, &st);
    cr_assert_eq(st.strict_lease_expiries, expiries,
                 "the strict write waited out its lease: no one was counted "
                 "or acknowledged");
    tc_cache_destroy(w);
    tc_cache_destroy(b);
}

/* The channel is picked per attempt: a write that meets ASK during a slot
 * migration runs on the importing node, and must publish on that node's
 * channel, where the reader hears it over its own subscription. The
 * importing node's cluster-bus links are cut first, so a message published
 * there on the source node's channel (heard only on the source node) would
 * never arrive, and the reader would keep serving its old copy. */
Test(cluster, a_write_redirected_by_ask_publishes_on_the_node_that_ran_it,
     .init = own_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_ASYNC);
    tc_cache *w, *x;
    const char *k = "{askpub}:a";
    tcr_server *a, *b = NULL;
    char slot[16], *v;
    tc_stats st;
    int s;
    o.default_ttl_ms = 600000;
    o.l1_ttl_ms = 600000;
    o.lease_ms = 100;
    w = must_create(&o);
    x = must_create(&o);
    AWAIT(bus_up, x, "reader's bus never came up");
    a = tcr_cluster_master_of(&cl, k);
    s = tcr_cluster_keyslot(&cl, k);
    cr_assert_not_null(a);
    for (int i = 0; i < TCR_CLUSTER_NODES && !b; i++) {
        char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication", NULL);
        if (&cl.node[i] != a && info && strstr(info, "role:master"))
            b = &cl.node[i];
        free(info);
    }
    cr_assert_not_null(b);
    cr_assert_eq(set_str(w, k, "v1", 0), TC_OK, "%s", tc_errmsg());
    AWAIT(received_one, x, "v1's invalidation never reached the reader");
    {
        reads_as ra = {x, k, "v1"};
        AWAIT(reads, &ra, "the reader never read v1");
    }
    free(get_str(x, k, NULL));
    tc_cache_stats(x, &st);
    cr_assert_gt(st.l1_entries, 0, "the reader holds no L1 copy");
    /* Migrate the slot's keys (k and its stamps hash) from a to b. */
    snprintf(slot, sizeof(slot), "%d", s);
    begin_slot_move(a, b, slot);
    migrate_slot_keys(a, b, slot, NULL);
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char id[48], *r;
        if (&cl.node[i] == b)
            continue;
        cr_assert_eq(tcr_cluster_id(&cl.node[i], id), 0);
        r = tcr_cmd(b, NULL, "DEBUG", "CLUSTERLINK", "KILL", "all", id,
                    NULL);
        cr_assert(r && !strcmp(r, "OK"), "DEBUG CLUSTERLINK: %s", r);
        free(r);
    }
    /* MULTI on a answers ASK; sent again with ASKING on b. */
    cr_assert_eq(set_str(w, k, "v2", 0), TC_OK, "%s", tc_errmsg());
    v = tcr_cmd(b, NULL, "ASKING", NULL);
    free(v);
    {
        past ps = {x, k, tcr_now_ms() + 2.0 * o.lease_ms};
        AWAIT(lease_passed, &ps, "time stood still");
    }
    v = get_str(x, k, NULL);
    cr_assert(v && !strcmp(v, "v2"),
              "the reader serves %s a lease after v2 was written through "
              "ASK", v ? v : "(nothing)");
    free(v);
    tc_cache_destroy(w);
    tc_cache_destroy(x);
}

/* The bus's shape on a cluster (lib/lease.c, "Redis Cluster"): on every
 * master, one subscriber of this instance to that master's own channel,
 * and a token through it per heartbeat. The rates are printed (a figure
 * for README, not an assertion). */
static long long cmdstat_calls(tcr_server *s, const char *cmd)
{
    char *info = tcr_cmd(s, NULL, "INFO", "commandstats", NULL), key[64];
    const char *p;
    long long n = 0;
    snprintf(key, sizeof(key), "cmdstat_%s:calls=", cmd);
    if (info && (p = strstr(info, key)))
        n = atoll(p + strlen(key));
    free(info);
    return n;
}


/* Its own cluster: it counts subscribers and commands on the masters. */
Test(cluster, the_bus_subscribes_on_every_master_and_proves_each,
     .init = own_cluster)
{
    /* Every node, replicas included (lib/lease.c, "Redis Cluster"): a
     * replica promoted by a failover already has a proven subscriber. */
    tc_options o = cl_opts(TC_COHERENCE_ASYNC);
    tc_cache *x = must_create(&o);
    tcr_server *m[TCR_CLUSTER_NODES];
    long long ping0[TCR_CLUSTER_NODES], eval0[TCR_CLUSTER_NODES],
        clus0[TCR_CLUSTER_NODES];
    int nm = 0, nmasters = 0;
    double t0, t1;
    AWAIT(bus_up, x, "the bus never came up");
    cr_assert_eq(set_str(x, "shape", "v", 0), TC_OK, "%s", tc_errmsg());
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication", NULL);
        nmasters += info && strstr(info, "role:master");
        m[nm++] = &cl.node[i];
        free(info);
    }
    cr_assert_eq(nmasters, 3);
    for (int i = 0; i < nm; i++) {
        char ch[128], *r;
        snprintf(ch, sizeof(ch), "__tiercache:invalidate@127.0.0.1:%d",
                 m[i]->port);
        r = tcr_cmd(m[i], NULL, "PUBSUB", "NUMSUB", ch, NULL);
        cr_assert(r && strstr(r, "\n1"), "PUBSUB NUMSUB %s on %d: %s", ch,
                  m[i]->port, r);
        free(r);
        ping0[i] = cmdstat_calls(m[i], "ping");
        eval0[i] = cmdstat_calls(m[i], "eval");
        clus0[i] = cmdstat_calls(m[i], "cluster|nodes") +
                   cmdstat_calls(m[i], "cluster|info");
    }
    t0 = tcr_now_ms();
    {
        past rf = {x, "shape", t0 + 1000};
        AWAIT(lease_passed, &rf, "time stood still");
    }
    t1 = tcr_now_ms();
    for (int i = 0; i < nm; i++) {
        long long pings = cmdstat_calls(m[i], "ping") - ping0[i];
        long long evals = cmdstat_calls(m[i], "eval") - eval0[i];
        long long clus = cmdstat_calls(m[i], "cluster|nodes") +
                         cmdstat_calls(m[i], "cluster|info") - clus0[i];
        fprintf(stderr,
                "cluster: bus of one reading instance (lease %u ms): node "
                "%d (%s) got %.0f PING/s, %.0f EVAL/s, %.0f CLUSTER "
                "INFO+NODES/s\n",
                o.lease_ms ? o.lease_ms : 100, m[i]->port,
                evals ? "state keys' master" : "other node",
                pings * 1000.0 / (t1 - t0), evals * 1000.0 / (t1 - t0),
                clus * 1000.0 / (t1 - t0));
        /* Each node is proven: the heartbeat's master by its script, the
         * others by PING tokens. */
        cr_assert_gt(pings + evals, 0, "no token through node %d",
                     m[i]->port);
    }
    tc_cache_destroy(x);
}

/* ---- Failover ----------------------------------------------------------- */

Test(cluster, master_killed_replica_promoted_no_new_handle_no_stale_l1,
     .init = own_cluster)
{
    bus_log bl = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    tc_options o = cl_opts(TC_COHERENCE_ASYNC), ox;
    tc_cache *y = must_create(&o), *x;
    tcr_server *m, *rep, *om = NULL;
    char key[32], other[32], *v;
    promoted pr;
    int outages = 0, wrote = 0;
    double killed_at, wrote_at = 0;
    ox = o;
    ox.log = on_bus_log;
    ox.log_userdata = &bl;
    x = must_create(&ox);
    AWAIT(bus_up, x, "x's bus never came up");
    /* Kill the master x subscribes on. `key` lives there, `other` on
     * another master. */
    m = tcr_cluster_node(&cl, bus_log_sub_port(&bl));
    cr_assert_not_null(m);
    rep = tcr_cluster_replica_of(&cl, m);
    cr_assert_not_null(rep, "the master has no replica");
    cr_assert_eq(tcr_cluster_key_on(&cl, m, "fo:", key, sizeof(key)), 0);
    for (int i = 0; i < TCR_CLUSTER_NODES && !om; i++) {
        char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication", NULL);
        if (&cl.node[i] != m && info && strstr(info, "role:master"))
            om = &cl.node[i];
        free(info);
    }
    cr_assert_not_null(om);
    cr_assert_eq(tcr_cluster_key_on(&cl, om, "fo-other:", other,
                                    sizeof(other)), 0);
    cr_assert_eq(set_str(y, key, "v1", 0), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(set_str(y, other, "o1", 0), TC_OK, "%s", tc_errmsg());
    cr_assert(tcr_cluster_replica_caught_up(m, rep, AWAIT_MS));
    /* x's L1 copies come after their own invalidations. */
    AWAIT(received_one, x, "no invalidation reached x");
    {
        reads_as a1 = {x, key, "v1"}, a2 = {x, other, "o1"};
        AWAIT(reads, &a1, "x never read v1");
        AWAIT(reads, &a2, "x never read o1");
    }

    tcr_kill(m);
    killed_at = tcr_now_ms();
    /* Written on a live master while x's subscription is gone (x cannot
     * subscribe again before the promotion: the topology still names the
     * dead master): x misses this invalidation. Once the cluster marks
     * the master failed, every slot answers CLUSTERDOWN until the
     * promotion (cluster-require-full-coverage, Redis's default). */
    {
        tc_result r;
        while ((r = set_str(y, other, "o2", 0)) != TC_OK)
            cr_assert(is_outage(r), "%s (%s)", tc_strerror(r), tc_errmsg());
    }
    pr.t = &cl, pr.replica = rep;
    /* Until the replica is promoted and y's write of `key` went through,
     * every call fails fast or succeeds. */
    {
        double until = tcr_now_ms() + AWAIT_MS;
        while (tcr_now_ms() < until && !(wrote && replica_promoted(&pr))) {
            tc_result r;
            if (!wrote) {
                r = set_str(y, key, "v2", 0);
                cr_assert(r == TC_OK || is_outage(r), "set: %s (%s)",
                          tc_strerror(r), tc_errmsg());
                wrote = r == TC_OK;
                outages += r != TC_OK;
                if (wrote)
                    wrote_at = tcr_now_ms();
            }
            v = get_str(x, key, &r);
            cr_assert(r == TC_OK || is_outage(r), "get: %s (%s)",
                      tc_strerror(r), tc_errmsg());
            free(v);
            v = get_str(y, other, &r);
            cr_assert(r == TC_OK || is_outage(r), "get: %s (%s)",
                      tc_strerror(r), tc_errmsg());
            free(v);
            tcr_sleep_ms(5); /* pacing, not synchronisation */
        }
    }
    cr_assert(wrote, "y's write never went through after the failover");
    fprintf(stderr,
            "cluster: failover: the write of a key of the killed master "
            "succeeded %.0f ms after the kill; %d tries failed fast before\n",
            wrote_at - killed_at, outages);
    /* x's bus is back on a live node: the reset dropped L1, so neither
     * the missed invalidation nor the dead master's key leaves a stale
     * copy. Same handles throughout. */
    AWAIT(bus_up, x, "x's bus never came back");
    v = get_str(x, other, NULL);
    cr_assert(v && !strcmp(v, "o2"), "x served %s after its bus came back", v);
    free(v);
    v = get_str(x, key, NULL);
    cr_assert(v && !strcmp(v, "v2"), "x served %s after its bus came back", v);
    free(v);
    cr_assert_eq(set_str(y, key, "v3", 0), TC_OK, "%s", tc_errmsg());
    {
        reads_as ra = {x, key, "v3"};
        AWAIT(reads, &ra, "x never saw v3");
    }
    v = tcr_cmd(rep, NULL, "GET", key, NULL);
    cr_assert(v && !strcmp(v, "v3"), "v3 not on the promoted replica");
    free(v);
    tc_cache_destroy(x);
    tc_cache_destroy(y);
}

static int flushed_since(void *p)
{
    tc_stats st;
    uint64_t *before = p;
    tc_cache_stats((tc_cache *)(uintptr_t)before[1], &st);
    return st.bus_flushes > before[0];
}

/* A master that is neither x's subscription node nor its heartbeat node
 * dies: x's connections stay up, yet an invalidation that master
 * published just before may never have crossed the cluster bus. x must
 * stop serving L1 (its bus resets on the node failure, cluster.h). With
 * cluster-require-full-coverage no, so that the other nodes keep
 * answering (with Redis's default they answer CLUSTERDOWN, which resets
 * the bus through its refused heartbeat anyway). */
Test(cluster, a_master_dying_elsewhere_drops_l1, .init = own_cluster)
{
    bus_log bl = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    tc_options o = cl_opts(TC_COHERENCE_ASYNC);
    tc_cache *x;
    tcr_server *m = NULL;
    tc_stats st;
    uint64_t before[2];
    o.log = on_bus_log;
    o.log_userdata = &bl;
    x = must_create(&o);
    AWAIT(bus_up, x, "x's bus never came up");
    pthread_mutex_lock(&bl.mu);
    for (int i = 0; i < TCR_CLUSTER_NODES && !m; i++) {
        char *info;
        if (cl.node[i].port == bl.sub_port || cl.node[i].port == bl.cmd_port)
            continue;
        info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication", NULL);
        if (info && strstr(info, "role:master"))
            m = &cl.node[i];
        free(info);
    }
    pthread_mutex_unlock(&bl.mu);
    cr_assert_not_null(m, "no master apart from x's bus nodes");
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        free(tcr_cmd(&cl.node[i], NULL, "CONFIG", "SET",
                     "cluster-require-full-coverage", "no", NULL));
    tc_cache_stats(x, &st);
    before[0] = st.bus_flushes;
    before[1] = (uint64_t)(uintptr_t)x;
    tcr_kill(m);
    AWAIT(flushed_since, before,
          "x kept serving L1 after a master died (its bus never reset)");
    /* And it comes back by itself once a replica took over. */
    AWAIT(bus_up, x, "x's bus never came back");
    tc_cache_destroy(x);
}

/* ---- Any command (tc_command) -------------------------------------------- */

/* tc_command's reply as text ("-..." for an error, "(nil)", an integer,
 * "(array)"); the caller frees it. */
static char *command_text(tc_cache *c, int argc, const char *const *argv)
{
    size_t lens[16];
    tc_reply *rep = NULL;
    tc_result r;
    char *s = NULL;
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    r = tc_command(c, argc, argv, lens, &rep);
    cr_assert_eq(r, TC_OK, "%s: %s (%s)", argv[0], tc_strerror(r),
                 tc_errmsg());
    switch (tc_reply_type(rep)) {
    case TC_REPLY_ERROR:
        if (asprintf(&s, "-%s", tc_reply_str(rep)) < 0)
            s = NULL;
        break;
    case TC_REPLY_INTEGER:
        if (asprintf(&s, "%lld", tc_reply_integer(rep)) < 0)
            s = NULL;
        break;
    case TC_REPLY_STRING:
    case TC_REPLY_STATUS:
        s = strdup(tc_reply_str(rep));
        break;
    case TC_REPLY_ARRAY:
        s = strdup("(array)");
        break;
    default:
        s = strdup("(nil)");
    }
    tc_reply_free(rep);
    return s;
}

#define CMD_IS(c, want, ...)                                                   \
    do {                                                                       \
        const char *const argv_[] = {__VA_ARGS__};                             \
        char *got_ = command_text(                                             \
            c, (int)(sizeof(argv_) / sizeof(argv_[0])), argv_);                \
        cr_assert(got_ && !strcmp(got_, want), "%s: want '%s', got '%s'",      \
                  argv_[0], want, got_);                                       \
        free(got_);                                                            \
    } while (0)

Test(cluster, tc_command_routes_by_key_specs_and_invalidates_other_instances,
     .init = shared_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_ASYNC);
    tc_cache *w, *r;
    char a[32], b[32];
    tcr_server *ma;
    o.key_prefix = "app:"; /* the slots are the prefixed keys' */
    w = must_create(&o);
    r = must_create(&o);
    AWAIT(bus_up, r, "r's bus never came up");
    ma = tcr_cluster_master_of(&cl, "app:cmd:0");
    cr_assert_not_null(ma);
    snprintf(a, sizeof(a), "cmd:0");
    for (int i = 1;; i++) { /* b on another master than a */
        char pk[40];
        snprintf(b, sizeof(b), "cmd:%d", i);
        snprintf(pk, sizeof(pk), "app:%s", b);
        if (tcr_cluster_master_of(&cl, pk) != ma)
            break;
    }
    /* BITOP's keys start at argv[2]: routed by the key specs. */
    CMD_IS(w, "OK", "SET", "{bt}x", "ab");
    CMD_IS(w, "2", "BITOP", "OR", "{bt}d", "{bt}x");
    CMD_IS(w, "ab", "GET", "{bt}d");
    /* r holds a copy; w's forwarded write reaches it. */
    cr_assert_eq(set_str(w, a, "v1", 0), TC_OK, "%s", tc_errmsg());
    warm(r, a, "v1");
    CMD_IS(w, "3", "APPEND", a, "+");
    {
        holds_arg h = {r, a, "v1"};
        AWAIT(l1_drops, &h, "r kept v1 after w's APPEND");
    }
    /* Across slots: split and merged, or CROSSSLOT. */
    CMD_IS(w, "OK", "MSET", a, "1", b, "2");
    CMD_IS(w, "(array)", "MGET", a, b);
    CMD_IS(w, "2", "EXISTS", a, b);
    CMD_IS(w, "-CROSSSLOT Keys in request don't hash to the same slot",
           "RENAME", a, b);
    CMD_IS(w, "2", "DEL", a, b);
    {
        char *v = tcr_cmd(ma, NULL, "EXISTS", "app:cmd:0", NULL);
        cr_assert(v && !strcmp(v, "0"), "%s", v);
        free(v);
    }
    tc_cache_destroy(w);
    tc_cache_destroy(r);
}

/* ---- Batches and tags across slots -------------------------------------- */

enum { NSPREAD = 30 };

typedef struct spread {
    char name[NSPREAD][32];
    const void *key[NSPREAD];
    size_t len[NSPREAD];
} spread;

/* NSPREAD keys "<stem><i>", checked to reach all three masters. */
static void spread_keys(spread *sp, const char *stem)
{
    int on[TCR_CLUSTER_NODES] = {0}, masters = 0;
    for (int i = 0; i < NSPREAD; i++) {
        tcr_server *m;
        snprintf(sp->name[i], sizeof(sp->name[i]), "%s%d", stem, i);
        sp->key[i] = sp->name[i], sp->len[i] = strlen(sp->name[i]);
        m = tcr_cluster_master_of(&cl, sp->name[i]);
        cr_assert_not_null(m);
        on[m - cl.node]++;
    }
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        masters += on[i] > 0;
    cr_assert_eq(masters, 3, "%d keys did not reach all three masters",
                 NSPREAD);
}

/* `key` holds `want` on its own master (NULL: absent there). */
static void on_its_master(const char *key, const char *want)
{
    tcr_server *m = tcr_cluster_master_of(&cl, key);
    char *got;
    cr_assert_not_null(m);
    got = tcr_cmd(m, NULL, want ? "GET" : "EXISTS", key, NULL);
    cr_assert(got && !strcmp(got, want ? want : "0"),
              "%s on port %d: '%s', want '%s'", key, m->port, got,
              want ? want : "absent");
    free(got);
}

typedef struct received_arg {
    tc_cache *c;
    uint64_t n;
} received_arg;

static uint64_t received(tc_cache *c)
{
    tc_stats st;
    tc_cache_stats(c, &st);
    return st.inval_received;
}

static int received_at_least(void *p)
{
    received_arg *a = p;
    return received(a->c) >= a->n;
}

/* r has received the invalidations of `n` writes made since it had
 * received `base`: a copy it fills now cannot be dropped by one of them
 * arriving late (over the cluster bus). */
static void writes_received(tc_cache *r, uint64_t base, uint64_t n)
{
    received_arg a = {r, base + n};
    AWAIT(received_at_least, &a, "r received %llu of %llu invalidations",
          (unsigned long long)(received(r) - base), (unsigned long long)n);
}

/* Every key written "old" through w, and held in r's L1. */
static void old_copies(tc_cache *w, tc_cache *r, const spread *sp)
{
    uint64_t base = received(r);
    for (int i = 0; i < NSPREAD; i++)
        cr_assert_eq(set_str(w, sp->name[i], "old", 0), TC_OK, "%s",
                     tc_errmsg());
    writes_received(r, base, NSPREAD);
    for (int i = 0; i < NSPREAD; i++)
        warm(r, sp->name[i], "old");
}

/* r drops its "old" copy of every key and then reads `want` (NULL: not
 * found) from L2. */
static void others_see(tc_cache *r, const spread *sp, const char *want)
{
    for (int i = 0; i < NSPREAD; i++) {
        holds_arg h = {r, sp->name[i], "old"};
        tc_result res;
        char *v;
        AWAIT(l1_drops, &h, "r kept its copy of %s", sp->name[i]);
        v = get_str(r, sp->name[i], &res);
        if (want)
            cr_assert(v && !strcmp(v, want), "r reads %s=%s", sp->name[i], v);
        else
            cr_assert_eq(res, TC_NOT_FOUND, "r reads %s=%s", sp->name[i], v);
        free(v);
    }
}

Test(cluster, set_many_splits_batches_by_slot_and_invalidates_every_master,
     .init = shared_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_ASYNC);
    tc_cache *w = must_create(&o), *r = must_create(&o);
    const void *vals[NSPREAD];
    size_t vl[NSPREAD];
    spread sp;
    spread_keys(&sp, "many:");
    AWAIT(bus_up, r, "r's bus never came up");
    old_copies(w, r, &sp);
    for (int i = 0; i < NSPREAD; i++)
        vals[i] = "new", vl[i] = 3;
    /* Batches of 7: each spans slots of several masters. */
    cr_assert_eq(tc_set_many(w, NSPREAD, sp.key, sp.len, vals, vl, 0, 7, NULL,
                             NULL),
                 TC_OK, "%s", tc_errmsg());
    for (int i = 0; i < NSPREAD; i++)
        on_its_master(sp.name[i], "new");
    others_see(r, &sp, "new");
    tc_cache_destroy(w);
    tc_cache_destroy(r);
}

static tc_result warm_loader(void *ud, const void *key, size_t klen,
                             void **val, size_t *vlen)
{
    (void)ud;
    if (!(*val = malloc(klen + 5)))
        return TC_NO_MEMORY;
    memcpy(*val, "warm-", 5);
    memcpy((char *)*val + 5, key, klen);
    *vlen = klen + 5;
    return TC_OK;
}

Test(cluster, warm_splits_batches_by_slot_and_invalidates_every_master,
     .init = shared_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_ASYNC);
    tc_cache *w = must_create(&o), *r = must_create(&o);
    spread sp;
    spread_keys(&sp, "warm:");
    AWAIT(bus_up, r, "r's bus never came up");
    old_copies(w, r, &sp);
    cr_assert_eq(tc_warm(w, NSPREAD, sp.key, sp.len, warm_loader, NULL, 0,
                         0, NULL, NULL),
                 TC_OK, "%s", tc_errmsg());
    for (int i = 0; i < NSPREAD; i++) {
        char want[48];
        holds_arg h = {r, sp.name[i], "old"};
        char *v;
        snprintf(want, sizeof(want), "warm-%s", sp.name[i]);
        on_its_master(sp.name[i], want);
        AWAIT(l1_drops, &h, "r kept its copy of %s", sp.name[i]);
        v = get_str(r, sp.name[i], NULL);
        cr_assert(v && !strcmp(v, want), "r reads %s=%s", sp.name[i], v);
        free(v);
    }
    tc_cache_destroy(w);
    tc_cache_destroy(r);
}

/* The masters holding a tag set ("__tiercache:*:tag:*<tag>"). */
static int masters_with_tag_set(const char *tag)
{
    char pat[64];
    int n = 0;
    snprintf(pat, sizeof(pat), "__tiercache:*:tag:*%s", tag);
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char *info = tcr_cmd(&cl.node[i], NULL, "INFO", "replication", NULL);
        if (info && strstr(info, "role:master")) {
            char *k = tcr_cmd(&cl.node[i], NULL, "KEYS", pat, NULL);
            n += k && *k;
            free(k);
        }
        free(info);
    }
    return n;
}

Test(cluster, tags_across_masters_drop_every_tagged_key_everywhere,
     .init = shared_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_ASYNC);
    tc_cache *w = must_create(&o), *r = must_create(&o);
    char tb[16] = "";
    const char *tags[2] = {"ta", tb};
    uint64_t deleted = 0, base;
    tc_stats st0, st;
    spread sp;
    /* A second tag whose set (in the slot of its name) is on another
     * master than the first's. */
    for (int i = 0; !*tb; i++) {
        char t[16];
        snprintf(t, sizeof(t), "tb%d", i);
        if (tcr_cluster_master_of(&cl, t) != tcr_cluster_master_of(&cl, "ta"))
            snprintf(tb, sizeof(tb), "%s", t);
    }
    spread_keys(&sp, "tagged:");
    AWAIT(bus_up, r, "r's bus never came up");
    base = received(r);
    for (int i = 0; i < NSPREAD; i++)
        cr_assert_eq(tc_set_tagged(w, sp.key[i], sp.len[i], "old", 3, NULL,
                                   i % 2 ? 2 : 1, tags),
                     TC_OK, "%s", tc_errmsg());
    cr_assert_eq(set_str(w, "untagged", "keep", 0), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(masters_with_tag_set("ta"), 1);
    cr_assert_eq(masters_with_tag_set(tb), 1);
    writes_received(r, base, NSPREAD + 1);
    for (int i = 0; i < NSPREAD; i++)
        warm(r, sp.name[i], "old");
    warm(r, "untagged", "keep");
    tc_cache_stats(r, &st0);
    /* The second tag names the odd keys only, on every master. */
    cr_assert_eq(tc_invalidate_tags(w, 1, &tags[1], &deleted), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(deleted, NSPREAD / 2);
    for (int i = 0; i < NSPREAD; i++)
        on_its_master(sp.name[i], i % 2 ? NULL : "old");
    cr_assert_eq(masters_with_tag_set(tb), 0, "the drained set remains");
    /* The first names them all (the odd ones: a spurious deletion). */
    cr_assert_eq(tc_invalidate_tags(w, 1, tags, &deleted), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(deleted, NSPREAD / 2);
    for (int i = 0; i < NSPREAD; i++)
        on_its_master(sp.name[i], NULL);
    others_see(r, &sp, NULL);
    /* Unless a bus reset (a starved lease) flushed r's L1 meanwhile. */
    tc_cache_stats(r, &st);
    cr_assert(l1_holds(r, "untagged", "keep") ||
                  st.bus_flushes != st0.bus_flushes,
              "an untagged copy dropped");
    tc_cache_destroy(w);
    tc_cache_destroy(r);
}

/* The tag hook's argument: another instance invalidating the tag. */
typedef struct racer {
    tc_cache *c;
    const char *tag;
    tc_result r;
    uint64_t deleted;
} racer;

static void invalidate_in_window(void *arg, const void *key, size_t klen)
{
    racer *rc = arg;
    (void)key, (void)klen;
    rc->r = tc_invalidate_tags(rc->c, 1, &rc->tag, &rc->deleted);
}

/* An invalidation of the tag that drains its set after the key was
 * recorded but before the write lands deletes nothing (the key is not
 * there yet); the write then lands. The key must still be named by the
 * tag's set, so that the next invalidation deletes it. */
Test(cluster, a_tag_invalidation_racing_a_tagged_write_cannot_orphan_the_key,
     .init = shared_cluster)
{
    tc_options o = cl_opts(TC_COHERENCE_ASYNC);
    tc_cache *w = must_create(&o), *other = must_create(&o);
    const char *tag = "race";
    racer rc = {other, tag, TC_PROTOCOL, 99};
    uint64_t deleted = 0;
    tc__cache_set_tag_hook(w, invalidate_in_window, &rc);
    cr_assert_eq(tc_set_tagged(w, "raced", 5, "v", 1, NULL, 1, &tag), TC_OK,
                 "%s", tc_errmsg());
    tc__cache_set_tag_hook(w, NULL, NULL);
    cr_assert_eq(rc.r, TC_OK, "the racing invalidation: %s",
                 tc_strerror(rc.r));
    cr_assert_eq(rc.deleted, 0, "the key existed before its write");
    on_its_master("raced", "v");
    cr_assert_eq(tc_invalidate_tags(w, 1, &tag, &deleted), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(deleted, 1, "the written key escaped its tag");
    on_its_master("raced", NULL);
    tc_cache_destroy(w);
    tc_cache_destroy(other);
}

/* ---- Options ------------------------------------------------------------ */

Test(cluster, url_parsing_and_tc_options_parse_url, .init = shared_cluster)
{
    tc__config cfg;
    tc_options o;
    char storage[700];
    tc_cache *c;
    memset(&o, 0, sizeof(o));
    o.ignore_env = TC_YES;
    o.coherence = TC_COHERENCE_NONE;
    o.url = "redis-cluster://u:p%40ss@h1,[::1]:7001,h3:7002";
    cr_assert_eq(tc__config_resolve(&o, &cfg), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(cfg.ncluster_seeds, 3);
    cr_assert_str_eq(cfg.cluster_hosts[0], "h1");
    cr_assert_eq(cfg.cluster_ports[0], 6379);
    cr_assert_str_eq(cfg.cluster_hosts[1], "::1");
    cr_assert_eq(cfg.cluster_ports[1], 7001);
    cr_assert_eq(cfg.cluster_ports[2], 7002);
    cr_assert_str_eq(cfg.username, "u");
    cr_assert_str_eq(cfg.password, "p@ss");
    cr_assert_not_null(cfg.cluster);
    cr_assert_eq(cfg.tls, 0);
    tc__config_free(&cfg);
    o.url = "rediss-cluster://h1:7000";
    o.tls_insecure = TC_YES;
    cr_assert_eq(tc__config_resolve(&o, &cfg), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(cfg.tls, 1);
    tc__config_free(&cfg);
    o.tls_insecure = 0;
    {
        static const char *const bad[] = {
            "redis-cluster://",        /* no seed */
            "redis-cluster://h1,/",    /* empty seed */
            "redis-cluster://h1:7000/2", /* a database */
            "redis-cluster://h1:99999",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            o.url = bad[i];
            cr_assert_eq(tc__config_resolve(&o, &cfg), TC_BAD_ARGUMENT,
                         "%s accepted", bad[i]);
        }
    }
    /* The fixture's URL through tc_options_parse_url(), then REDIS_URL. */
    memset(&o, 0, sizeof(o));
    cr_assert_eq(tc_options_parse_url(&o, cl.url, storage, sizeof(storage)),
                 TC_OK, "%s", tc_errmsg());
    o.ignore_env = TC_YES;
    o.coherence = TC_COHERENCE_NONE;
    c = must_create(&o);
    cr_assert_eq(set_str(c, "via-parse-url", "1", 0), TC_OK, "%s",
                 tc_errmsg());
    tc_cache_destroy(c);
    memset(&o, 0, sizeof(o));
    o.coherence = TC_COHERENCE_NONE;
    setenv("REDIS_URL", cl.url, 1);
    c = must_create(&o);
    unsetenv("REDIS_URL");
    cr_assert_eq(set_str(c, "via-env", "1", 0), TC_OK, "%s", tc_errmsg());
    {
        char *v = tcr_cmd(tcr_cluster_master_of(&cl, "via-env"), NULL, "GET",
                          "via-env", NULL);
        cr_assert(v && !strcmp(v, "1"));
        free(v);
    }
    tc_cache_destroy(c);
}

/* ---- TLS ------------------------------------------------------------------ */

/* The same cluster over TLS only: clients, cluster bus and replication
 * (tls-cluster, tls-replication; --port 0). */
static tcr_cluster tcl;

static void shared_tls_cluster(void)
{
    cr_assert_eq(tcr_cluster_shared_tls(&tcl, 60000), 0, "no TLS cluster");
}

static void own_tls_cluster(void)
{
    cr_assert_eq(tcr_cluster_start_tls(&tcl, 60000), 0,
                 "TLS cluster did not start");
}

static void tls_teardown(void)
{
    tcr_cluster_stop(&tcl);
}

/* Every case names its cluster with .init, as in the cluster suite. */
TestSuite(cluster_tls, .fini = tls_teardown);

static tc_options tls_opts(const char *ca_file)
{
    tc_options o = url_opts(tcl.url);
    o.coherence = TC_COHERENCE_NONE;
    o.tls_ca_file = ca_file;
    return o;
}

Test(cluster_tls, keys_on_every_master_over_tls, .init = shared_tls_cluster)
{
    tc_options o = tls_opts(tcl.node[0].ca_file);
    tc_cache *w = must_create(&o), *r = must_create(&o);
    int on[TCR_CLUSTER_NODES] = {0}, masters = 0;
    cr_assert(!strncmp(tcl.url, "rediss-cluster://", 17), "%s", tcl.url);
    for (int i = 0; i < 30; i++) {
        char k[32], v[32], *got;
        tcr_server *m;
        snprintf(k, sizeof(k), "tls-route:%d", i);
        snprintf(v, sizeof(v), "value-%d", i);
        cr_assert_eq(set_str(w, k, v, 0), TC_OK, "%s", tc_errmsg());
        m = tcr_cluster_master_of(&tcl, k);
        cr_assert_not_null(m);
        on[m - tcl.node]++;
        got = tcr_cmd(m, NULL, "GET", k, NULL); /* its unix socket */
        cr_assert(got && !strcmp(got, v), "%s not on its master", k);
        free(got);
        got = get_str(r, k, NULL); /* another instance: from L2 */
        cr_assert(got && !strcmp(got, v), "%s: %s", k, got);
        free(got);
    }
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        masters += on[i] > 0;
    cr_assert_eq(masters, 3, "30 keys did not reach all three masters");
    tc_cache_destroy(w);
    tc_cache_destroy(r);
}

Test(cluster_tls, a_wrong_ca_is_a_clear_error, .init = shared_tls_cluster)
{
    tc_options o = tls_opts(tcl.node[0].other_ca_file);
    tc_cache *c = NULL;
    tc_result r = tc_cache_create(&o, &c);
    if (r == TC_OK) {
        r = set_str(c, "tls-wrong-ca", "v", 0);
        cr_assert_neq(r, TC_OK, "a write verified by the wrong CA succeeded");
    }
    cr_assert(strstr(tc_errmsg(), "certificate verification failed"),
              "%s: %s", tc_strerror(r), tc_errmsg());
    tc_cache_destroy(c);
}

Test(cluster_tls, follows_moved_over_tls, .init = own_tls_cluster)
{
    tc_options o = tls_opts(tcl.node[0].ca_file);
    tc_cache *w = must_create(&o), *r;
    tcr_server *a, *b = NULL;
    char k[64], slot[16], *got;
    long long before;
    cr_assert_eq(set_str(w, "tls-warm", "x", 0), TC_OK, "%s", tc_errmsg());
    a = tcr_cluster_master_of(&tcl, "tls-warm");
    cr_assert_not_null(a);
    /* a key of a's whose slot holds nothing yet: it moves by SETSLOT */
    cr_assert_eq(tcr_cluster_key_on(&tcl, a, "tls-moved:", k, sizeof(k)), 0);
    for (int i = 0; i < TCR_CLUSTER_NODES && !b; i++) {
        char *info = tcr_cmd(&tcl.node[i], NULL, "INFO", "replication", NULL);
        if (&tcl.node[i] != a && info && strstr(info, "role:master"))
            b = &tcl.node[i];
        free(info);
    }
    cr_assert_not_null(b);
    snprintf(slot, sizeof(slot), "%d", tcr_cluster_keyslot(&tcl, k));
    give_slot(&tcl, a, b, slot);
    before = errorstat_count("MOVED", a);
    /* w still routes the slot to a: MOVED, over TLS, to b */
    cr_assert_eq(set_str(w, k, "moved", 0), TC_OK, "%s", tc_errmsg());
    cr_assert_gt(errorstat_count("MOVED", a), before, "a never answered MOVED");
    got = tcr_cmd(b, NULL, "GET", k, NULL);
    cr_assert(got && !strcmp(got, "moved"), "%s on b: %s", k, got);
    free(got);
    r = must_create(&o);
    got = get_str(r, k, NULL);
    cr_assert(got && !strcmp(got, "moved"), "%s: %s", k, got);
    free(got);
    tc_cache_destroy(r);
    tc_cache_destroy(w);
}

/* The bus over TLS: an invalidation published on one node reaches an
 * instance whose L1 holds the key. */
Test(cluster_tls, invalidation_over_tls, .init = shared_tls_cluster)
{
    tc_options o = tls_opts(tcl.node[0].ca_file);
    tc_cache *a, *b;
    char *got;
    o.coherence = TC_COHERENCE_ASYNC;
    a = must_create(&o);
    b = must_create(&o);
    cr_assert(tcr_wait(bus_up, b, 20000), "b's bus never came up");
    cr_assert_eq(set_str(a, "tls-inval", "old", 0), TC_OK, "%s", tc_errmsg());
    got = get_str(b, "tls-inval", NULL);
    cr_assert(got && !strcmp(got, "old"), "%s", got);
    free(got);
    cr_assert_eq(set_str(a, "tls-inval", "new", 0), TC_OK, "%s", tc_errmsg());
    {
        reads_as ra = {b, "tls-inval", "new"};
        cr_assert(tcr_wait(reads, &ra, 20000), "b kept serving the old value");
    }
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}
