/*
 * tc_async_* (issue 9's pipelined forwarding): the guarantees of the
 * blocking calls hold when the round trip is pipelined on a libev loop.
 * The fill race is made deterministic with the fill hook (testhooks.c).
 */
#include "crit.h" /* Criterion, or the TSan build's shim */
#include <ev.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "common.h"

REDIS_SUITE(async);

typedef struct got {
    int calls;
    tc_result r;
    char val[64];
    tc_reply *reply;
} got;

static void on_get(void *ud, tc_result r, tc_value *v, const tc_reply *err)
{
    got *g = ud;
    (void)err;
    g->calls++;
    g->r = r;
    value_into(g->val, sizeof(g->val), v);
}

static void on_reply(void *ud, tc_result r, tc_reply *rep)
{
    got *g = ud;
    g->calls++;
    g->r = r;
    g->reply = rep;
}

/* Run the loop until `g` was answered (AWAIT's deadline). */
static int answered(void *p)
{
    void **a = p;
    ev_run(a[0], EVRUN_NOWAIT);
    return ((got *)a[1])->calls > 0;
}

#define RUN_UNTIL_ANSWERED(loop, g)                                         \
    do {                                                                    \
        void *arg_[2] = {(loop), (g)};                                      \
        AWAIT(answered, arg_, "no answer");                                 \
    } while (0)

typedef struct count_arg {
    tc_cache *c;
    uint64_t applied;
} count_arg;

static int applied_at_least(void *p)
{
    count_arg *a = p;
    tc_stats st;
    tc_cache_stats(a->c, &st);
    return st.inval_applied >= a->applied;
}

static int received_at_least(void *p)
{
    count_arg *a = p;
    tc_stats st;
    tc_cache_stats(a->c, &st);
    return st.inval_received >= a->applied;
}

/* In the window between b's L2 reply and its L1 fill, a writes "new" and
 * b applies the invalidation (on its bus thread). */
typedef struct window {
    tc_cache *a, *b;
    int hit;
} window;

static void write_in_window(void *arg, const void *key, size_t klen)
{
    window *w = arg;
    tc_stats st;
    count_arg cond;
    if (klen != 1 || memcmp(key, "k", 1) != 0 || w->hit++)
        return;
    tc_cache_stats(w->b, &st);
    cr_assert_eq(set_str(w->a, "k", "new", 0), TC_OK);
    cond = (count_arg){w->b, st.inval_applied + 1};
    AWAIT(applied_at_least, &cond, "b never applied the invalidation");
}

Test(async, fill_racing_an_invalidation_is_not_kept)
{
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    window w = {a, b, 0};
    got g = {0};
    tc_stats st0;
    cr_assert_eq(set_str(a, "k", "old", 0), TC_OK);
    cr_assert_eq(tc_async_open(b, loop, 2, &as), TC_OK);
    tc__cache_set_fill_hook(b, write_in_window, &w);
    tc_cache_stats(b, &st0);
    cr_assert_eq(tc_async_get(as, 0, "k", 1, on_get, &g), TC_OK);
    RUN_UNTIL_ANSWERED(loop, &g);
    cr_assert_eq(g.calls, 1);
    /* The read began before the write: "old" is a fair answer to it ... */
    cr_assert_eq(g.r, TC_OK);
    cr_assert_str_eq(g.val, "old");
    /* ... but it must not have entered L1 after the invalidation. */
    expect_stale_fill_skipped(b, "k", "old", "new", &st0);
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* A pipelined write (tc_async_set, tc_async_command) invalidates the
 * other instance's copy, and its own fill follows the write. */
Test(async, pipelined_writes_invalidate_other_instances)
{
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    got g = {0};
    holds_arg h = {b, "k", "v1"};
    const char *incr[2] = {"INCR", "n"};
    size_t incrl[2] = {4, 1};
    char *s;
    cr_assert_eq(tc_command_check(a, 2, incr, incrl), TC_OK); /* the table */
    cr_assert_eq(set_str(a, "k", "v1", 0), TC_OK);
    cr_assert_eq(set_str(a, "n", "1", 0), TC_OK);
    warm(b, "k", "v1");
    warm(b, "n", "1");
    cr_assert_eq(tc_async_open(a, loop, 1, &as), TC_OK);

    cr_assert_eq(tc_async_set(as, 7, "k", 1, "v2", 2, NULL, on_reply, &g),
                 TC_OK);
    RUN_UNTIL_ANSWERED(loop, &g);
    cr_assert_eq(g.r, TC_OK);
    cr_assert(l1_holds(a, "k", "v2"), "the writer keeps what it wrote");
    AWAIT(l1_drops, &h, "b kept k=v1 after a pipelined SET");

    memset(&g, 0, sizeof(g));
    cr_assert_eq(tc_async_command(as, 7, 2, incr, incrl, on_reply, &g), TC_OK);
    RUN_UNTIL_ANSWERED(loop, &g);
    cr_assert_eq(g.r, TC_OK);
    cr_assert_eq(tc_reply_type(g.reply), TC_REPLY_INTEGER);
    cr_assert_eq(tc_reply_integer(g.reply), 2);
    tc_reply_free(g.reply);
    h = (holds_arg){b, "n", "1"};
    AWAIT(l1_drops, &h, "b kept n=1 after a pipelined INCR");
    s = get_str(b, "n", NULL);
    cr_assert_str_eq(s, "2");
    free(s);
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* SETs submitted in one loop iteration go as one transaction (group
 * commit) with one message naming every key: every other instance drops
 * every key, and each SET gets its own answer. */
Test(async, grouped_sets_each_answered_and_each_invalidated)
{
    enum { N = 12 };
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    got g[N];
    char key[N][8], val[N][8];
    tc_stats st0, st;
    count_arg cond;
    memset(g, 0, sizeof(g));
    tc_cache_stats(b, &st0);
    for (int i = 0; i < N; i++) {
        snprintf(key[i], sizeof(key[i]), "g%d", i);
        snprintf(val[i], sizeof(val[i]), "old%d", i);
        cr_assert_eq(set_str(a, key[i], val[i], 0), TC_OK);
    }
    /* Those N messages are in before counting. */
    cond = (count_arg){b, st0.inval_received + N};
    AWAIT(received_at_least, &cond, "b did not receive the first SETs");
    for (int i = 0; i < N; i++)
        warm(b, key[i], val[i]);
    cr_assert_eq(tc_async_open(a, loop, 1, &as), TC_OK);
    tc_cache_stats(b, &st0);
    for (int i = 0; i < N; i++) {
        snprintf(val[i], sizeof(val[i]), "new%d", i);
        cr_assert_eq(tc_async_set(as, 0, key[i], strlen(key[i]), val[i],
                                  strlen(val[i]), NULL, on_reply, &g[i]),
                     TC_OK);
    }
    RUN_UNTIL_ANSWERED(loop, &g[N - 1]);
    cond = (count_arg){b, st0.inval_applied + 1};
    AWAIT(applied_at_least, &cond, "b applied nothing");
    for (int i = 0; i < N; i++) {
        holds_arg h = {b, key[i], NULL};
        char *s, old[8];
        cr_assert_eq(g[i].calls, 1, "SET %d answered %d times", i,
                     g[i].calls);
        cr_assert_eq(g[i].r, TC_OK);
        snprintf(old, sizeof(old), "old%d", i);
        h.val = old;
        AWAIT(l1_drops, &h, "b kept %s=%s", key[i], old);
        s = get_str(b, key[i], NULL);
        cr_assert_str_eq(s, val[i]);
        free(s);
    }
    /* One transaction, one message. */
    tc_cache_stats(b, &st);
    cr_assert_eq(st.inval_received - st0.inval_received, 1,
                 "%llu messages for one group of SETs",
                 (unsigned long long)(st.inval_received - st0.inval_received));
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* Every SET of a group replaces its own key's stamp (stamps.h), though
 * the group carries them in one HSET: the stamps are what refuses a load,
 * a refresh or a fail-safe copy that raced the write. */
Test(async, grouped_sets_each_replace_their_stamp)
{
    enum { N = 12 };
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    got g[N];
    char key[N][8], field[N][8], *before[N];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < N; i++) {
        snprintf(key[i], sizeof(key[i]), "s%d", i);
        tc__stamp_field(tc__hash(key[i], strlen(key[i])), field[i]);
        cr_assert_eq(set_str(a, key[i], "old", 0), TC_OK);
    }
    for (int i = 0; i < N; i++) {
        before[i] = tcr_cmd(&srv, NULL, "HGET",
                            "__tiercache:invalidate:stamps", field[i], NULL);
        cr_assert(before[i] && strcmp(before[i], "(nil)") != 0,
                  "no stamp for %s", key[i]);
    }
    cr_assert_eq(tc_async_open(a, loop, 1, &as), TC_OK);
    for (int i = 0; i < N; i++) /* one loop iteration: one group */
        cr_assert_eq(tc_async_set(as, 0, key[i], strlen(key[i]), "new", 3,
                                  NULL, on_reply, &g[i]),
                     TC_OK);
    RUN_UNTIL_ANSWERED(loop, &g[N - 1]);
    for (int i = 0; i < N; i++) {
        char *after = tcr_cmd(&srv, NULL, "HGET",
                              "__tiercache:invalidate:stamps", field[i], NULL);
        cr_assert_eq(g[i].calls, 1);
        cr_assert_eq(g[i].r, TC_OK);
        cr_assert(after && strcmp(after, before[i]) != 0,
                  "the SET of %s left its stamp at %s", key[i], before[i]);
        free(after);
        free(before[i]);
    }
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(a);
}

/* A group of SETs without a TTL costs Redis one MSET (not one SET each),
 * with the same outcome as the SETs one after another: every SET
 * answered, the last write of a key the one kept, other instances'
 * copies dropped. */
Test(async, a_group_without_ttls_is_one_mset)
{
    enum { N = 8 };
    static const tc_set_opts forever = {TC_TTL_NONE, 0, 0};
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    got g[N + 1];
    char key[N][8], val[N][8];
    long long msets;
    char *s;
    memset(g, 0, sizeof(g));
    for (int i = 0; i < N; i++) {
        snprintf(key[i], sizeof(key[i]), "m%d", i);
        snprintf(val[i], sizeof(val[i]), "old%d", i);
        cr_assert_eq(set_str(a, key[i], val[i], 0), TC_OK);
        warm(b, key[i], val[i]);
    }
    cr_assert_eq(tc_async_open(a, loop, 1, &as), TC_OK);
    free(tcr_cmd(&srv, NULL, "CONFIG", "RESETSTAT", NULL));
    for (int i = 0; i < N; i++) {
        snprintf(val[i], sizeof(val[i]), "new%d", i);
        cr_assert_eq(tc_async_set(as, 0, key[i], strlen(key[i]), val[i],
                                  strlen(val[i]), &forever, on_reply, &g[i]),
                     TC_OK);
    }
    /* m0 again, last: its second value is the one kept. */
    cr_assert_eq(tc_async_set(as, 0, "m0", 2, "last", 4, &forever, on_reply,
                              &g[N]),
                 TC_OK);
    RUN_UNTIL_ANSWERED(loop, &g[N]);
    /* (Not "no SET at all": the instances' own housekeeping may SET.) */
    msets = command_calls(&srv, "mset");
    cr_assert_eq(msets, 1, "%lld MSETs for one group", msets);
    for (int i = 0; i <= N; i++) {
        cr_assert_eq(g[i].calls, 1, "SET %d answered %d times", i,
                     g[i].calls);
        cr_assert_eq(g[i].r, TC_OK);
    }
    s = tcr_cmd(&srv, NULL, "GET", "m0", NULL);
    cr_assert_str_eq(s, "last");
    free(s);
    s = tcr_cmd(&srv, NULL, "PTTL", "m0", NULL);
    cr_assert_str_eq(s, "-1");
    free(s);
    for (int i = 0; i < N; i++) {
        char old[8];
        holds_arg h = {b, key[i], old};
        snprintf(old, sizeof(old), "old%d", i);
        AWAIT(l1_drops, &h, "b kept %s=%s", key[i], old);
        s = get_str(b, key[i], NULL);
        cr_assert_str_eq(s, i ? val[i] : "last");
        free(s);
    }
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* A group where some SETs have a TTL goes as the SETs themselves, in
 * order: the key written first with a TTL and then without keeps none. */
Test(async, a_group_with_ttls_keeps_each_sets_order_and_ttl)
{
    static const tc_set_opts forever = {TC_TTL_NONE, 0, 0},
                             minute = {60000, 0, 0};
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    got g[3];
    char *s;
    memset(g, 0, sizeof(g));
    cr_assert_eq(tc_async_open(a, loop, 1, &as), TC_OK);
    cr_assert_eq(tc_async_set(as, 0, "t1", 2, "ttl", 3, &minute, on_reply,
                              &g[0]),
                 TC_OK);
    cr_assert_eq(tc_async_set(as, 0, "t1", 2, "none", 4, &forever, on_reply,
                              &g[1]),
                 TC_OK);
    cr_assert_eq(tc_async_set(as, 0, "t2", 2, "ttl", 3, &minute, on_reply,
                              &g[2]),
                 TC_OK);
    RUN_UNTIL_ANSWERED(loop, &g[2]);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(g[i].r, TC_OK);
    s = tcr_cmd(&srv, NULL, "GET", "t1", NULL);
    cr_assert_str_eq(s, "none");
    free(s);
    s = tcr_cmd(&srv, NULL, "PTTL", "t1", NULL);
    cr_assert_str_eq(s, "-1");
    free(s);
    s = tcr_cmd(&srv, NULL, "PTTL", "t2", NULL);
    cr_assert(atoll(s) > 0 && atoll(s) <= 60000, "t2's PTTL %s", s);
    free(s);
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(a);
}

/* What must wait is refused at submission, and nothing is sent. */
Test(async, strict_and_blocking_are_refused)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    got g = {0};
    const char *blpop[3] = {"BLPOP", "l", "1"};
    size_t blpopl[3] = {5, 1, 1};
    tc_set_opts so = {0, 0, TC_SET_STRICT};
    o.coherence = TC_COHERENCE_ASYNC;
    c = must_create(&o);
    cr_assert_eq(tc_command_check(c, 3, blpop, blpopl), TC_OK);
    cr_assert_eq(tc_async_open(c, loop, 1, &as), TC_OK);
    cr_assert_eq(tc_async_command(as, 0, 3, blpop, blpopl, on_reply, &g),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_async_set(as, 0, "k", 1, "v", 1, &so, on_reply, &g),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_async_pending(as), 0);
    ev_run(loop, EVRUN_NOWAIT);
    cr_assert_eq(g.calls, 0);
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(c);
}

/* Loop wake-ups a request costs: what the loop's callbacks submit is
 * written before the loop polls again, so the only wake-up is Redis's
 * reply (not first one for "the socket is writable", nor for a timer
 * that sends a group commit). Counted in loop iterations, not time; the
 * command timeout (its housekeeping timer) is off so that nothing else
 * wakes the loop, and a watchdog ends a hung wait. */
static void watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static unsigned iterations_to_answer(struct ev_loop *loop, got *g)
{
    unsigned it0 = ev_iteration(loop);
    ev_timer dog;
    ev_timer_init(&dog, watchdog, 30., 0.);
    ev_timer_start(loop, &dog);
    while (g->calls == 0 && ev_is_active(&dog))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &dog);
    cr_assert_eq(g->calls, 1, "no answer");
    return ev_iteration(loop) - it0;
}

Test(async, a_request_costs_one_loop_wakeup)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    got g = {0};
    const char *incr[2] = {"INCR", "wake:n"}, *get[2] = {"GET", "wake:n"};
    size_t incrl[2] = {4, 6}, getl[2] = {3, 6};
    o.command_timeout_ms = 0;
    c = must_create(&o);
    cr_assert_eq(tc_command_check(c, 2, incr, incrl), TC_OK); /* the table */
    cr_assert_eq(tc_async_open(c, loop, 1, &as), TC_OK);
    /* The lane's connection and its set-up first. */
    cr_assert_eq(tc_async_command(as, 0, 2, get, getl, on_reply, &g), TC_OK);
    cr_assert_geq(iterations_to_answer(loop, &g), 1);
    tc_reply_free(g.reply);

    memset(&g, 0, sizeof(g)); /* a read */
    cr_assert_eq(tc_async_command(as, 0, 2, get, getl, on_reply, &g), TC_OK);
    cr_assert_eq(iterations_to_answer(loop, &g), 1);
    tc_reply_free(g.reply);

    memset(&g, 0, sizeof(g)); /* a write: its MULTI ... EXEC */
    cr_assert_eq(tc_async_command(as, 0, 2, incr, incrl, on_reply, &g), TC_OK);
    cr_assert_eq(iterations_to_answer(loop, &g), 1);
    cr_assert_eq(g.r, TC_OK);
    cr_assert_eq(tc_reply_integer(g.reply), 1);
    tc_reply_free(g.reply);

    memset(&g, 0, sizeof(g)); /* a SET's group commit */
    cr_assert_eq(tc_async_set(as, 0, "wake:k", 6, "v", 1, NULL, on_reply, &g),
                 TC_OK);
    cr_assert_eq(iterations_to_answer(loop, &g), 1);
    cr_assert_eq(g.r, TC_OK);

    memset(&g, 0, sizeof(g)); /* an L1 miss */
    cr_assert_eq(tc_async_get(as, 0, "wake:n", 6, on_get, &g), TC_OK);
    cr_assert_eq(iterations_to_answer(loop, &g), 1);
    cr_assert_eq(g.r, TC_OK);
    cr_assert_str_eq(g.val, "1");
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(c);
}

/* tc_async_multi: one MULTI/EXEC answered with EXEC's reply; its writes
 * invalidate the other instance's copy; a transaction Redis refuses
 * while queueing (EXECABORT) runs nothing; one of reads is answered. */
Test(async, multi_is_one_transaction_and_invalidates)
{
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    tc_async *as = NULL;
    got g = {0};
    holds_arg h = {b, "mx:n", "5"};
    const char *incr[2] = {"INCR", "mx:n"}, *hset[4] = {"HSET", "mx:h", "f",
                                                       "v"},
               *bad[1] = {"INCR"}, *get[2] = {"GET", "mx:n"};
    size_t incrl[2] = {4, 4}, hsetl[4] = {4, 4, 1, 1}, badl[1] = {4},
           getl[2] = {3, 4};
    const char *const *argvs[2] = {incr, hset};
    const size_t *lens[2] = {incrl, hsetl};
    int argcs[2] = {2, 4};
    char *s;
    cr_assert_eq(tc_command_check(a, 2, incr, incrl), TC_OK); /* the table */
    cr_assert_eq(set_str(a, "mx:n", "5", 0), TC_OK);
    warm(b, "mx:n", "5");
    cr_assert_eq(tc_async_open(a, loop, 1, &as), TC_OK);

    cr_assert_eq(tc_async_multi(as, 0, 2, argcs, argvs, lens, on_reply, &g),
                 TC_OK);
    RUN_UNTIL_ANSWERED(loop, &g);
    cr_assert_eq(g.r, TC_OK);
    cr_assert_eq(tc_reply_type(g.reply), TC_REPLY_ARRAY);
    cr_assert_eq(tc_reply_elements(g.reply), 2);
    cr_assert_eq(tc_reply_integer(tc_reply_element(g.reply, 0)), 6);
    cr_assert_eq(tc_reply_integer(tc_reply_element(g.reply, 1)), 1);
    tc_reply_free(g.reply);
    AWAIT(l1_drops, &h, "b kept mx:n=5 after a pipelined MULTI");
    s = get_str(b, "mx:n", NULL);
    cr_assert_str_eq(s, "6");
    free(s);

    memset(&g, 0, sizeof(g)); /* refused while queueing: nothing runs */
    argvs[1] = bad, lens[1] = badl, argcs[1] = 1;
    cr_assert_eq(tc_async_multi(as, 0, 2, argcs, argvs, lens, on_reply, &g),
                 TC_OK);
    RUN_UNTIL_ANSWERED(loop, &g);
    cr_assert_eq(g.r, TC_OK);
    cr_assert_eq(tc_reply_type(g.reply), TC_REPLY_ERROR);
    cr_assert(!strncmp(tc_reply_str(g.reply), "EXECABORT", 9));
    tc_reply_free(g.reply);

    memset(&g, 0, sizeof(g)); /* reads only */
    argvs[0] = get, lens[0] = getl, argcs[0] = 2;
    cr_assert_eq(tc_async_multi(as, 0, 1, argcs, argvs, lens, on_reply, &g),
                 TC_OK);
    RUN_UNTIL_ANSWERED(loop, &g);
    cr_assert_eq(g.r, TC_OK);
    cr_assert_eq(tc_reply_elements(g.reply), 1);
    cr_assert_eq(tc_reply_len(tc_reply_element(g.reply, 0)), 1);
    cr_assert(!memcmp(tc_reply_str(tc_reply_element(g.reply, 0)), "6", 1));
    tc_reply_free(g.reply);
    tc_async_close(as);
    ev_loop_destroy(loop);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* A lane whose connection dies fails every request on it, in order, and a
 * callback that submits again finds the lane closed. Here the death comes
 * with a SET still in the lane's unsent group (submitted earlier in the
 * same loop iteration, by a top-priority check watcher): the INCR's
 * callback submitting a GET used to flush that group onto the connection
 * lane_fail had just freed (a NULL dereference in aconn's queue). */
typedef struct dying {
    tc_async *as;
    got incr, set;
    int order;          /* 1: INCR answered first, 2: SET first */
    tc_result again;    /* the GET submitted from the INCR's callback */
    int again_calls;
    int set_submitted;
} dying;

static void on_again(void *ud, tc_result r, tc_reply *rep)
{
    dying *d = ud;
    (void)r;
    d->again_calls++;
    tc_reply_free(rep);
}

static void on_dying_incr(void *ud, tc_result r, tc_reply *rep)
{
    dying *d = ud;
    const char *argv[2] = {"GET", "dying:k"};
    size_t argl[2] = {3, 7};
    d->incr.calls++;
    d->incr.r = r;
    tc_reply_free(rep);
    if (!d->order)
        d->order = 1;
    d->again = tc_async_command(d->as, 0, 2, argv, argl, on_again, d);
}

static void on_dying_set(void *ud, tc_result r, tc_reply *rep)
{
    dying *d = ud;
    d->set.calls++;
    d->set.r = r;
    tc_reply_free(rep);
    if (!d->order)
        d->order = 2;
}

static void submit_set_first(struct ev_loop *loop, ev_check *w, int revents)
{
    dying *d = w->data;
    (void)loop, (void)revents;
    if (d->set_submitted++)
        return;
    cr_assert_eq(tc_async_set(d->as, 0, "dying:s", 7, "v", 1, NULL,
                              on_dying_set, d),
                 TC_OK);
}

Test(async, a_dying_lane_fails_its_unsent_group_once_and_refuses_more)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    struct ev_loop *loop = ev_loop_new(0);
    const char *incr[2] = {"INCR", "dying:n"};
    size_t incrl[2] = {4, 7};
    got warm = {0};
    dying d;
    ev_check chk;
    memset(&d, 0, sizeof(d));
    cr_assert_eq(tc_command_check(c, 2, incr, incrl), TC_OK); /* the table */
    cr_assert_eq(tc_async_open(c, loop, 1, &d.as), TC_OK);
    /* The lane connected and answering. */
    cr_assert_eq(tc_async_command(d.as, 0, 2, incr, incrl, on_reply, &warm),
                 TC_OK);
    RUN_UNTIL_ANSWERED(loop, &warm);
    cr_assert_eq(warm.r, TC_OK);
    tc_reply_free(warm.reply);
    /* An INCR in flight to a hung server, which then dies. */
    tcr_pause(&srv);
    AWAIT(tcr_stopped, &srv, "redis-server never stopped");
    cr_assert_eq(tc_async_command(d.as, 0, 2, incr, incrl, on_dying_incr, &d),
                 TC_OK);
    ev_run(loop, EVRUN_NOWAIT); /* written */
    kill(srv.pid, SIGKILL);     /* still stopped: the INCR never runs */
    tcr_kill(&srv);             /* reaped: the lane's socket reads EOF */
    /* In the iteration that finds the EOF, a SET joins the lane's group
     * before the lane's own watcher runs. */
    ev_check_init(&chk, submit_set_first);
    chk.data = &d;
    ev_set_priority(&chk, EV_MAXPRI);
    ev_check_start(loop, &chk);
    RUN_UNTIL_ANSWERED(loop, &d.set);
    ev_check_stop(loop, &chk);
    cr_assert_eq(d.set_submitted > 0, 1);
    cr_assert_eq(d.incr.calls, 1, "INCR answered %d times", d.incr.calls);
    cr_assert_neq(d.incr.r, TC_OK);
    cr_assert_eq(d.set.calls, 1, "SET answered %d times", d.set.calls);
    cr_assert_neq(d.set.r, TC_OK);
    cr_assert_eq(d.order, 1, "the SET was answered before the INCR");
    /* Submitted from the failing lane's callback: refused at once. */
    cr_assert_neq(d.again, TC_OK);
    cr_assert_eq(d.again_calls, 0);
    tc_async_close(d.as);
    ev_loop_destroy(loop);
    tc_cache_destroy(c);
}
