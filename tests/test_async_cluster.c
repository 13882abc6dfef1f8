/*
 * tc_async_* on Redis Cluster (issue 10): requests routed by slot to a
 * connection per master, each write's invalidation published in its MULTI
 * on the channel of the master that runs it, and a request that meets
 * MOVED (its slot moved by CLUSTER SETSLOT) answered by the blocking path,
 * correctly and in submission order; a lane's lost connection hands its
 * reads to the blocking path and answers its write with the failure, never
 * sending it twice; requests meeting ASK during a slot migration answered
 * in order. A real local cluster of three masters
 * and three replicas per test (cluster_fixture.h).
 */
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "common.h"
#include "cluster_fixture.h"
#include "cluster_common.h"

OWN_CLUSTER_SUITE(async_cluster);

static tc_options cl_opts(void)
{
    tc_options o = url_opts(cl.url);
    o.coherence = TC_COHERENCE_ASYNC;
    o.connect_timeout_ms = 1000;
    o.command_timeout_ms = 5000;
    return o;
}

/* One request's answer, and where it came in the order of answers. */
typedef struct got {
    int calls, seq;
    tc_result r;
    char val[64];
} got;

static int answers; /* answers so far, in the test */

static void on_get(void *ud, tc_result r, tc_value *v, const tc_reply *err)
{
    got *g = ud;
    (void)err;
    g->calls++;
    g->seq = answers++;
    g->r = r;
    value_into(g->val, sizeof(g->val), v);
}

static void on_reply(void *ud, tc_result r, tc_reply *rep)
{
    got *g = ud;
    g->calls++;
    g->seq = answers++;
    g->r = r;
    if (rep && tc_reply_type(rep) == TC_REPLY_INTEGER)
        snprintf(g->val, sizeof(g->val), "%lld", tc_reply_integer(rep));
    else if (rep && tc_reply_str(rep))
        snprintf(g->val, sizeof(g->val), "%s", tc_reply_str(rep));
    tc_reply_free(rep);
}

typedef struct loop_wait {
    struct ev_loop *loop;
    tc_async *as;
} loop_wait;

/* Run the loop until nothing is in flight (AWAIT's deadline). */
static int drained(void *p)
{
    loop_wait *w = p;
    ev_run(w->loop, EVRUN_NOWAIT);
    return tc_async_pending(w->as) == 0;
}

static void run_until_drained(struct ev_loop *loop, tc_async *as)
{
    loop_wait w = {loop, as};
    AWAIT(drained, &w, "requests still in flight");
}

/* The other masters than `m`: the first one found. */
#define NKEYS 30

Test(async_cluster, gets_sets_and_commands_on_every_master)
{
    tc_options o = cl_opts();
    tc_cache *w = must_create(&o), *r = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    got sets[NKEYS] = {{0}}, incrs[NKEYS] = {{0}}, gets[NKEYS] = {{0}},
        multi = {0}, inval = {0};
    int on[TCR_CLUSTER_NODES] = {0}, masters = 0;
    tc_reply *rep = NULL;
    char *v;
    /* The command table is read by a blocking call, never on the loop. */
    cr_assert_eq(tc_command_check(w, 2, (const char *[]){"GET", "x"},
                                  (const size_t[]){3, 1}),
                 TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_async_open(w, loop, 2, &as), TC_OK, "%s", tc_errmsg());
    for (int i = 0; i < NKEYS; i++) {
        char k[32], c[32], val[32];
        const char *argv[2] = {"INCR", c};
        size_t lens[2] = {4, 0};
        snprintf(k, sizeof(k), "ak:%d", i);
        snprintf(c, sizeof(c), "ac:%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        cr_assert_eq(tc_async_set(as, 0, k, strlen(k), val, strlen(val), NULL,
                                  on_reply, &sets[i]),
                     TC_OK, "%s", tc_errmsg());
        lens[1] = strlen(c);
        cr_assert_eq(tc_async_command(as, 0, 2, argv, lens, on_reply,
                                      &incrs[i]),
                     TC_OK, "%s", tc_errmsg());
        cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &gets[i]),
                     TC_OK, "%s", tc_errmsg());
    }
    {
        /* A transaction of one slot (hash tag). */
        const char *a1[3] = {"SET", "{t}:a", "1"}, *a2[2] = {"INCR", "{t}:b"};
        const char *const *argvs[2] = {a1, a2};
        int argcs[2] = {3, 2};
        size_t l1[3] = {3, 5, 1}, l2[2] = {4, 5};
        const size_t *lens[2] = {l1, l2};
        cr_assert_eq(tc_async_multi(as, 1, 2, argcs, argvs, lens, on_reply,
                                    &multi),
                     TC_OK, "%s", tc_errmsg());
    }
    run_until_drained(loop, as);
    cr_assert_eq(multi.r, TC_OK, "%s", tc_errmsg());
    for (int i = 0; i < NKEYS; i++) {
        char k[32], c[32], val[32];
        tcr_server *m;
        snprintf(k, sizeof(k), "ak:%d", i);
        snprintf(c, sizeof(c), "ac:%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        cr_assert_eq(sets[i].calls, 1);
        cr_assert_eq(sets[i].r, TC_OK, "SET %s", k);
        cr_assert_eq(incrs[i].r, TC_OK, "INCR %s", c);
        cr_assert_str_eq(incrs[i].val, "1");
        cr_assert_eq(gets[i].r, TC_OK, "GET %s", k);
        cr_assert_str_eq(gets[i].val, val);
        /* Each on its own master. */
        m = tcr_cluster_master_of(&cl, k);
        cr_assert_not_null(m);
        on[m - cl.node]++;
        v = tcr_cmd(m, NULL, "GET", k, NULL);
        cr_assert(v && !strcmp(v, val), "%s on its master: %s", k, v);
        free(v);
    }
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        masters += on[i] > 0;
    cr_assert_eq(masters, 3, "the keys did not reach all three masters");
    cr_assert_eq(tc_command(r, 2, (const char *[]){"GET", "{t}:b"},
                            (const size_t[]){3, 5}, &rep),
                 TC_OK);
    cr_assert_str_eq(tc_reply_str(rep), "1");
    tc_reply_free(rep);

    /* A pipelined write's invalidation reaches another instance's L1: on
     * the channel of the key's master, which r hears there. */
    AWAIT(bus_up, r, "r's bus never came up");
    {
        reads_as ra = {r, "ak:0", "v0"};
        cr_assert(reads(&ra));        /* now in r's L1 */
        ra.want = "new";
        cr_assert_eq(tc_async_set(as, 1, "ak:0", 4, "new", 3, NULL, on_reply,
                                  &inval),
                     TC_OK);
        run_until_drained(loop, as);
        cr_assert_eq(inval.r, TC_OK);
        AWAIT(reads, &ra, "r kept serving the old value");
    }
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(w);
    tc_cache_destroy(r);
}

Test(async_cluster, requests_meeting_moved_answer_correctly_in_order)
{
    tc_options o = cl_opts();
    tc_cache *w = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    tcr_server *a, *b;
    char k[64], other[64], slot[16], *v;
    got g[8] = {{0}};
    long long before;
    cr_assert_eq(tc_command_check(w, 2, (const char *[]){"GET", "x"},
                                  (const size_t[]){3, 1}),
                 TC_OK, "%s", tc_errmsg());
    cr_assert_eq(set_str(w, "warm", "x", 0), TC_OK, "%s", tc_errmsg());
    a = tcr_cluster_master_of(&cl, "warm");
    b = another_master(&cl, a);
    cr_assert(a && b);
    /* A key of a's whose slot holds nothing yet (it moves by SETSLOT
     * alone), and a key of b's. */
    cr_assert_eq(tcr_cluster_key_on(&cl, a, "amoved:", k, sizeof(k)), 0);
    cr_assert_eq(tcr_cluster_key_on(&cl, b, "astay:", other, sizeof(other)),
                 0);
    cr_assert_eq(tc_async_open(w, loop, 1, &as), TC_OK, "%s", tc_errmsg());
    /* w's lanes learn k's slot is a's. */
    cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[0]), TC_OK);
    run_until_drained(loop, as);
    cr_assert_eq(g[0].r, TC_NOT_FOUND);
    memset(g, 0, sizeof(g));
    answers = 0;

    /* The slot moves to b; w does not know. */
    snprintf(slot, sizeof(slot), "%d", tcr_cluster_keyslot(&cl, k));
    give_slot(&cl, a, b, slot);
    before = errorstat_count("MOVED", a);

    /* In flight together: writes and reads of k (all meet MOVED on a),
     * and of a key on another master. */
    {
        const char *app[3] = {"APPEND", k, "+2"}, *strl[2] = {"STRLEN", k};
        size_t appl[3] = {6, strlen(k), 2}, strll[2] = {6, strlen(k)};
        cr_assert_eq(tc_async_set(as, 0, k, strlen(k), "one", 3, NULL,
                                  on_reply, &g[0]),
                     TC_OK);
        cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[1]), TC_OK);
        cr_assert_eq(tc_async_set(as, 0, other, strlen(other), "o", 1, NULL,
                                  on_reply, &g[2]),
                     TC_OK);
        cr_assert_eq(tc_async_command(as, 0, 3, app, appl, on_reply, &g[3]),
                     TC_OK);
        cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[4]), TC_OK);
        cr_assert_eq(tc_async_set(as, 0, k, strlen(k), "two", 3, NULL,
                                  on_reply, &g[5]),
                     TC_OK);
        cr_assert_eq(tc_async_command(as, 0, 2, strl, strll, on_reply, &g[6]),
                     TC_OK);
        cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[7]), TC_OK);
    }
    run_until_drained(loop, as);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(g[i].calls, 1, "request %d: %d answers", i, g[i].calls);
    cr_assert_eq(g[0].r, TC_OK, "SET one");
    cr_assert_eq(g[1].r, TC_OK);
    cr_assert_str_eq(g[1].val, "one");
    cr_assert_eq(g[2].r, TC_OK, "SET of b's key");
    cr_assert_eq(g[3].r, TC_OK);
    cr_assert_str_eq(g[3].val, "5"); /* "one+2": APPEND ran once */
    cr_assert_eq(g[4].r, TC_OK);
    cr_assert_str_eq(g[4].val, "one+2");
    cr_assert_eq(g[5].r, TC_OK);
    cr_assert_eq(g[6].r, TC_OK);
    cr_assert_str_eq(g[6].val, "3");
    cr_assert_eq(g[7].r, TC_OK);
    cr_assert_str_eq(g[7].val, "two");
    /* The requests of k were answered in the order they were made. */
    cr_assert(g[0].seq < g[1].seq && g[1].seq < g[3].seq &&
                  g[3].seq < g[4].seq && g[4].seq < g[5].seq &&
                  g[5].seq < g[6].seq && g[6].seq < g[7].seq,
              "out of order");
    cr_assert_gt(errorstat_count("MOVED", a), before, "a never answered MOVED");
    v = tcr_cmd(b, NULL, "GET", k, NULL);
    cr_assert(v && !strcmp(v, "two"), "%s on b: %s", k, v);
    free(v);

    /* The lanes follow: the next requests of the slot go to b at once. */
    before = errorstat_count("MOVED", a);
    memset(g, 0, sizeof(g));
    cr_assert_eq(tc_async_set(as, 0, k, strlen(k), "three", 5, NULL,
                              on_reply, &g[0]),
                 TC_OK);
    cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[1]), TC_OK);
    run_until_drained(loop, as);
    cr_assert_eq(g[0].r, TC_OK);
    cr_assert_str_eq(g[1].val, "three");
    cr_assert_eq(errorstat_count("MOVED", a), before, "still sent to a");
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(w);
}

static int submitted_and_answered(void *p)
{
    void **arg = p;
    loop_wait *w = arg[0];
    got *g = arg[1];
    const char *k = arg[2];
    if (!g->calls && !g->seq &&
        tc_async_get(w->as, 0, k, strlen(k), on_get, g) == TC_OK)
        g->seq = -1; /* submitted */
    ev_run(w->loop, EVRUN_NOWAIT);
    return g->calls > 0;
}

Test(async_cluster, a_lost_connection_resends_its_reads_never_its_writes)
{
    tc_options o = cl_opts();
    tc_cache *w = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    tcr_server *m;
    char k[64], *v;
    got g[4] = {{0}};
    cr_assert_eq(set_str(w, "warm", "x", 0), TC_OK, "%s", tc_errmsg());
    m = tcr_cluster_master_of(&cl, "warm");
    cr_assert_not_null(m);
    cr_assert_eq(tcr_cluster_key_on(&cl, m, "lost:", k, sizeof(k)), 0);
    cr_assert_eq(set_str(w, k, "v", 0), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_async_open(w, loop, 1, &as), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[0]), TC_OK);
    run_until_drained(loop, as); /* the lane's connection to m is up */
    cr_assert_str_eq(g[0].val, "v");
    memset(g, 0, sizeof(g));

    /* Queued, not sent yet (the loop writes them): a read, a write, a
     * read; then m drops every client connection, the lane's included. */
    cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[0]), TC_OK);
    cr_assert_eq(tc_async_set(as, 0, k, strlen(k), "lost", 4, NULL, on_reply,
                              &g[1]),
                 TC_OK);
    cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[2]), TC_OK);
    free(tcr_cmd(m, NULL, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes",
                 NULL));
    run_until_drained(loop, as);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(g[i].calls, 1, "request %d: %d answers", i, g[i].calls);
    /* The reads ran again on the blocking path ... */
    cr_assert_eq(g[0].r, TC_OK, "read 0: %s", tc_strerror(g[0].r));
    cr_assert_str_eq(g[0].val, "v");
    cr_assert_eq(g[2].r, TC_OK, "read 2: %s", tc_strerror(g[2].r));
    cr_assert_str_eq(g[2].val, "v");
    /* ... the write did not: answered with the failure, never applied. */
    cr_assert_eq(g[1].r, TC_L2_UNAVAILABLE, "write: %s",
                 tc_strerror(g[1].r));
    v = tcr_cmd(m, NULL, "GET", k, NULL);
    cr_assert(v && !strcmp(v, "v"), "%s on its master: %s", k, v);
    free(v);
    /* The lane reconnects. */
    {
        loop_wait lw = {loop, as};
        void *arg[3] = {&lw, &g[3], k};
        AWAIT(submitted_and_answered, arg, "the lane never came back");
        cr_assert_eq(g[3].r, TC_OK);
        cr_assert_str_eq(g[3].val, "v");
    }
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(w);
}

Test(async_cluster, requests_meeting_ask_during_a_migration_answer_in_order)
{
    tc_options o = cl_opts();
    tc_cache *w = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    const char *k = "{aska}:a", *k2 = "{aska}:b";
    tcr_server *a = tcr_cluster_master_of(&cl, k), *b = another_master(&cl, a);
    char slot[16], *v;
    got g[5] = {{0}};
    long long before;
    cr_assert(a && b);
    cr_assert_eq(set_str(w, k, "old-a", 0), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(set_str(w, k2, "old-b", 0), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_async_open(w, loop, 1, &as), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_async_get(as, 0, k2, strlen(k2), on_get, &g[0]), TC_OK);
    run_until_drained(loop, as); /* the lane's connection to a is up */
    cr_assert_str_eq(g[0].val, "old-b");
    memset(g, 0, sizeof(g));
    answers = 0;

    /* k and the slot's stamps hash move to b; k2 stays on a. */
    snprintf(slot, sizeof(slot), "%d", tcr_cluster_keyslot(&cl, k));
    begin_slot_move(a, b, slot);
    migrate(a, b, k);
    migrate_slot_keys(a, b, slot, "stamps");
    before = errorstat_count("ASK", a);

    /* k's requests meet ASK on a; k2's are a's. */
    cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[0]), TC_OK);
    cr_assert_eq(tc_async_set(as, 0, k, strlen(k), "new-a", 5, NULL,
                              on_reply, &g[1]),
                 TC_OK);
    cr_assert_eq(tc_async_get(as, 0, k2, strlen(k2), on_get, &g[2]), TC_OK);
    cr_assert_eq(tc_async_get(as, 0, k, strlen(k), on_get, &g[3]), TC_OK);
    run_until_drained(loop, as);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(g[i].calls, 1, "request %d: %d answers", i, g[i].calls);
        cr_assert_eq(g[i].r, TC_OK, "request %d: %s", i, tc_strerror(g[i].r));
        cr_assert_eq(g[i].seq, i, "request %d answered %d-th", i, g[i].seq);
    }
    cr_assert_str_eq(g[0].val, "old-a");
    cr_assert_str_eq(g[2].val, "old-b");
    cr_assert_str_eq(g[3].val, "new-a");
    cr_assert_gt(errorstat_count("ASK", a), before, "a never answered ASK");
    /* Written on b (a sends it there: it does not hold k). */
    v = tcr_cmd(a, NULL, "EXISTS", k, NULL);
    cr_assert(v && !strncmp(v, "ASK", 3), "k on a: %s", v);
    free(v);
    {
        tc_cache *r = must_create(&o); /* an empty L1: from b, by ASK */
        v = get_str(r, k, NULL);
        cr_assert(v && !strcmp(v, "new-a"), "k: %s", v);
        free(v);
        tc_cache_destroy(r);
    }
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(w);
}
