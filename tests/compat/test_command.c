/* tc_command / tc_command_multi against a real redis-server: replies as
 * Redis gives them, the keys each family writes invalidated in every
 * instance's L1 (from Redis's own key specs), the key prefix applied. */
#include "cmdspec.h"
#include "common.h"

REDIS_SUITE(command);

/* Run a command given as NUL-terminated strings; NULL-terminated list. */
static tc_result cmdv(tc_cache *c, tc_reply **out, const char *const *argv)
{
    size_t lens[32];
    int argc = 0;
    for (; argv[argc]; argc++)
        lens[argc] = strlen(argv[argc]);
    return tc_command(c, argc, argv, lens, out);
}
#define CMD(c, out, ...) cmdv((c), (out), (const char *const[]){__VA_ARGS__, NULL})

static long long cmd_int(tc_cache *c, const char *const *argv)
{
    tc_reply *r = NULL;
    long long v;
    cr_assert_eq(cmdv(c, &r, argv), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_reply_type(r), TC_REPLY_INTEGER, "%s: type %d %s", argv[0],
                 tc_reply_type(r), tc_reply_str(r) ? tc_reply_str(r) : "");
    v = tc_reply_integer(r);
    tc_reply_free(r);
    return v;
}
#define CMD_INT(c, ...) cmd_int((c), (const char *const[]){__VA_ARGS__, NULL})

Test(command, families_reply_as_redis)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_reply *r = NULL;
    char *raw;
    o.key_prefix = "app:";
    c = must_create(&o);

    cr_assert_eq(CMD_INT(c, "INCR", "hits"), 1);
    cr_assert_eq(CMD_INT(c, "INCRBY", "hits", "4"), 5);
    cr_assert_eq(CMD_INT(c, "EXPIRE", "hits", "60"), 1);
    cr_assert_gt(CMD_INT(c, "TTL", "hits"), 0);
    /* The prefix went to the key argument: Redis holds app:hits. */
    raw = tcr_cmd(&srv, NULL, "GET", "app:hits", NULL);
    cr_assert_str_eq(raw, "5");
    free(raw);
    /* ... and tc_get names the same L2 key. */
    raw = get_str(c, "hits", NULL);
    cr_assert_str_eq(raw, "5");
    free(raw);

    cr_assert_eq(CMD_INT(c, "HSET", "h", "f1", "a", "f2", "b"), 2);
    cr_assert_eq(CMD(c, &r, "HGETALL", "h"), TC_OK);
    cr_assert_eq(tc_reply_type(r), TC_REPLY_ARRAY);
    cr_assert_eq(tc_reply_elements(r), 4);
    cr_assert_str_eq(tc_reply_str(tc_reply_element(r, 0)), "f1");
    tc_reply_free(r);

    /* An error reply is a reply, with Redis's text. */
    cr_assert_eq(CMD(c, &r, "INCR", "h"), TC_OK);
    cr_assert_eq(tc_reply_type(r), TC_REPLY_ERROR);
    cr_assert_str_eq(tc_reply_str(r), "WRONGTYPE Operation against a key "
                                      "holding the wrong kind of value");
    tc_reply_free(r);
    cr_assert_eq(CMD(c, &r, "NOSUCHCMD", "x"), TC_OK);
    cr_assert_eq(tc_reply_type(r), TC_REPLY_ERROR);
    cr_assert(!strncmp(tc_reply_str(r), "ERR unknown command", 19), "%s",
              tc_reply_str(r));
    tc_reply_free(r);

    /* Connection state is refused, not silently applied to a pool slot. */
    cr_assert_eq(CMD(c, &r, "SELECT", "2"), TC_BAD_ARGUMENT);
    cr_assert_null(r);
    tc_cache_destroy(c);
}

/* A nil array (*-1) is told from a nil bulk ($-1), at the top and inside a
 * transaction's reply, so that a proxy can send each on as Redis sent it. */
Test(command, nil_array_and_nil_bulk_are_told_apart)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_reply *r = NULL;
    const char *a1[] = {"LPOP", "nolist", "2"}, *a2[] = {"GET", "nokey"};
    const char *const *argvs[] = {a1, a2};
    const size_t l1[] = {4, 6, 1}, l2[] = {3, 5}, *lens[] = {l1, l2};
    const int argcs[] = {3, 2};
    cr_assert_eq(CMD(c, &r, "LPOP", "nolist", "2"), TC_OK);
    cr_assert_eq(tc_reply_type(r), TC_REPLY_NIL);
    cr_assert_eq(tc_reply_is_nil_array(r), 1);
    tc_reply_free(r);
    cr_assert_eq(CMD(c, &r, "GET", "nokey"), TC_OK);
    cr_assert_eq(tc_reply_type(r), TC_REPLY_NIL);
    cr_assert_eq(tc_reply_is_nil_array(r), 0);
    tc_reply_free(r);
    cr_assert_eq(tc_command_multi(c, 2, argcs, argvs, lens, &r), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(tc_reply_elements(r), 2);
    cr_assert_eq(tc_reply_is_nil_array(tc_reply_element(r, 0)), 1);
    cr_assert_eq(tc_reply_type(tc_reply_element(r, 1)), TC_REPLY_NIL);
    cr_assert_eq(tc_reply_is_nil_array(tc_reply_element(r, 1)), 0);
    cr_assert_eq(tc_reply_is_nil_array(r), 0);
    tc_reply_free(r);
    cr_assert_eq(tc_reply_is_nil_array(NULL), 0);
    tc_cache_destroy(c);
}

static int gone_from_l1(void *p)
{
    void **a = p;
    tc_value *v = NULL;
    if (tc_peek(a[0], a[1], strlen(a[1]), &v) == TC_OK) {
        tc_value_release(v);
        return 0;
    }
    return 1;
}

/* One write per family via `a` drops `b`'s L1 copy of the key it wrote. */
static void family_invalidates(tc_coherence mode)
{
    static const char *const writes[][6] = {
        {"APPEND", "k", "x"},        {"INCR", "k"},
        {"SETRANGE", "k", "0", "z"}, {"GETDEL", "k"},
        {"EXPIRE", "k", "100"},      {"RENAME", "src", "k"},
        {"UNLINK", "k"},             {"MSET", "o", "1", "k", "2"},
        {"EVAL", "redis.call('SET', KEYS[1], 'e') return 1", "1", "k"},
        {"FLUSHDB"},                 {"SORT", "l", "STORE", "k"},
        {"COPY", "src", "k", "REPLACE"},
    };
    tc_options o = test_opts(&srv);
    tc_cache *a, *b;
    o.coherence = mode;
    o.lease_ms = 2000;
    a = must_create(&o);
    b = must_create(&o);
    for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
        void *arg[2] = {b, "k"};
        tc_reply *r = NULL;
        tc_value *v = NULL;
        char *raw = tcr_cmd(&srv, NULL, "SET", "k", "10", NULL);
        free(raw);
        raw = tcr_cmd(&srv, NULL, "SET", "src", "s", NULL);
        free(raw);
        raw = tcr_cmd(&srv, NULL, "RPUSH", "l", "3", NULL);
        free(raw);
        tc__l1_clear(b->l1);
        /* b reads k from L2 into its L1. */
        cr_assert_eq(tc_get(b, "k", 1, &v), TC_OK, "%s", tc_errmsg());
        tc_value_release(v);
        cr_assert_eq(tc_peek(b, "k", 1, &v), TC_OK, "b has no L1 copy");
        tc_value_release(v);
        {
            int argc = 0;
            size_t lens[6];
            while (argc < 6 && writes[i][argc])
                lens[argc] = strlen(writes[i][argc]), argc++;
            cr_assert_eq(tc_command(a, argc, writes[i], lens, &r), TC_OK,
                         "%s: %s", writes[i][0], tc_errmsg());
        }
        cr_assert_neq(tc_reply_type(r), TC_REPLY_ERROR, "%s: %s",
                      writes[i][0], tc_reply_str(r));
        tc_reply_free(r);
        if (mode == TC_COHERENCE_STRICT)
            cr_assert(gone_from_l1(arg), "%s: strict write returned while b "
                                         "still serves its copy",
                      writes[i][0]);
        else
            cr_assert(tcr_wait(gone_from_l1, arg, 10000),
                      "%s never invalidated b", writes[i][0]);
    }
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

Test(command, every_family_invalidates_async) { family_invalidates(TC_COHERENCE_ASYNC); }
Test(command, every_family_invalidates_strict) { family_invalidates(TC_COHERENCE_STRICT); }

Test(command, transaction_applies_all_and_invalidates_once)
{
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o);
    const char *c1[] = {"SET", "a", "1"}, *c2[] = {"INCR", "b"},
               *c3[] = {"GET", "a"}, *bad[] = {"GET"};
    const char *const *argvs[3] = {c1, c2, c3};
    size_t l1[] = {3, 1, 1}, l2[] = {4, 1}, l3[] = {3, 1}, lb[] = {3};
    const size_t *lens[3] = {l1, l2, l3};
    int argcs[3] = {3, 2, 2};
    tc_reply *r = NULL;
    tc_stats st;
    uint64_t before;
    char *raw;

    tc_cache_stats(a, &st);
    before = st.inval_published;
    cr_assert_eq(tc_command_multi(a, 3, argcs, argvs, lens, &r), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(tc_reply_type(r), TC_REPLY_ARRAY);
    cr_assert_eq(tc_reply_elements(r), 3);
    cr_assert_str_eq(tc_reply_str(tc_reply_element(r, 0)), "OK");
    cr_assert_eq(tc_reply_integer(tc_reply_element(r, 1)), 1);
    cr_assert_str_eq(tc_reply_str(tc_reply_element(r, 2)), "1");
    tc_reply_free(r);
    tc_cache_stats(a, &st);
    cr_assert_eq(st.inval_published, before + 1, "one message per EXEC");
    raw = tcr_cmd(&srv, NULL, "GET", "b", NULL);
    cr_assert_str_eq(raw, "1");
    free(raw);

    /* A command Redis refuses while queueing aborts the whole transaction,
     * as Redis says. */
    argvs[1] = bad, lens[1] = lb, argcs[1] = 1;
    cr_assert_eq(tc_command_multi(a, 3, argcs, argvs, lens, &r), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(tc_reply_type(r), TC_REPLY_ERROR);
    cr_assert_str_eq(tc_reply_str(r), "EXECABORT Transaction discarded "
                                      "because of previous errors.");
    tc_reply_free(r);
    raw = tcr_cmd(&srv, NULL, "GET", "b", NULL);
    cr_assert_str_eq(raw, "1");
    free(raw);

    /* The queueing checks themselves, for a proxy that answers QUEUED. */
    cr_assert_eq(tc_command_check(a, 1, bad, lb), TC_BAD_ARGUMENT);
    cr_assert_str_eq(tc_errmsg(),
                     "ERR wrong number of arguments for 'get' command");
    cr_assert_eq(tc_command_check(a, 2, c2, l2), TC_OK);
    {
        const char *u[] = {"NOPE"}, *s[] = {"OBJECT", "NOPE", "k"};
        size_t ul[] = {4}, sl[] = {6, 4, 1};
        cr_assert_eq(tc_command_check(a, 1, u, ul), TC_NOT_FOUND);
        cr_assert_eq(tc_command_check(a, 3, s, sl), TC_BAD_ARGUMENT);
        cr_assert_str_eq(tc_errmsg(),
                         "ERR unknown subcommand 'NOPE'. Try OBJECT HELP.");
    }
    tc_cache_destroy(a);
}

/* A blocking command waits as long as Redis does, past the command
 * timeout (300 ms here), without failing or opening the breaker. */
Test(command, blocking_runs_past_the_command_timeout)
{
    tc_options o = test_opts(&srv);
    tc_cache *a = must_create(&o);
    tc_reply *r = NULL;
    tc_stats st;
    cr_assert_eq(CMD(a, &r, "BLPOP", "empty", "0.6"), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(tc_reply_type(r), TC_REPLY_NIL);
    tc_reply_free(r);
    cr_assert_eq(CMD_INT(a, "RPUSH", "q", "x"), 1);
    cr_assert_eq(CMD(a, &r, "BLPOP", "q", "1"), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_reply_elements(r), 2);
    cr_assert_str_eq(tc_reply_str(tc_reply_element(r, 1)), "x");
    tc_reply_free(r);
    tc_cache_stats(a, &st);
    cr_assert_eq(st.breaker_opens, 0);
    tc_cache_destroy(a);
}

/* Which keys, and whether written, straight from Redis's key specs. */
Test(command, key_specs)
{
    redisContext *ctx = redisConnect("127.0.0.1", srv.port);
    redisReply *rep = redisCommand(ctx, "COMMAND");
    tc__cmdtab *t = tc__cmdtab_build(rep);
    tc__keys k;
    static const struct {
        const char *argv[8];
        tc__cmd_effect effect;
        const char *written; /* argument positions written, as digits */
    } cases[] = {
        {{"GET", "k"}, TC__EFFECT_READ, ""},
        {{"set", "k", "v"}, TC__EFFECT_KEYS, "1"},
        {{"RENAME", "a", "b"}, TC__EFFECT_KEYS, "12"},
        {{"ZUNIONSTORE", "d", "2", "x", "y"}, TC__EFFECT_KEYS, "1"},
        {{"LMOVE", "a", "b", "LEFT", "RIGHT"}, TC__EFFECT_KEYS, "12"},
        {{"XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"},
         TC__EFFECT_READ, ""},
        {{"OBJECT", "ENCODING", "k"}, TC__EFFECT_READ, ""},
        {{"EVAL", "return 1", "0"}, TC__EFFECT_ALL, ""},
        {{"EVAL", "return 1", "2", "a", "b"}, TC__EFFECT_KEYS, "34"},
        {{"FCALL", "f", "1", "a"}, TC__EFFECT_KEYS, "3"},
        {{"EVAL_RO", "return 1", "1", "a"}, TC__EFFECT_READ, ""},
        {{"FLUSHDB"}, TC__EFFECT_ALL, ""},
        {{"SWAPDB", "0", "1"}, TC__EFFECT_ALL, ""},
        {{"SORT", "l"}, TC__EFFECT_ALL, ""},
        {{"MSET", "a", "1", "b", "2"}, TC__EFFECT_KEYS, "13"},
        {{"GET"}, TC__EFFECT_READ, ""},
    };
    cr_assert_not_null(t);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t lens[8];
        int argc = 0;
        char got[16] = "";
        size_t gl = 0;
        for (; argc < 8 && cases[i].argv[argc]; argc++)
            lens[argc] = strlen(cases[i].argv[argc]);
        cr_assert_eq(tc__cmdtab_keys(t, argc, cases[i].argv, lens, &k), 0);
        for (size_t j = 0; j < k.n; j++)
            if (k.written[j])
                got[gl++] = (char)('0' + k.pos[j]);
        got[gl] = '\0';
        cr_expect_eq(k.effect, cases[i].effect, "%s: effect %d", cases[i].argv[0],
                     k.effect);
        if (cases[i].effect != TC__EFFECT_ALL)
            cr_expect_str_eq(got, cases[i].written, "%s", cases[i].argv[0]);
        tc__keys_free(&k);
    }
    tc__cmdtab_free(t);
    freeReplyObject(rep);
    redisFree(ctx);
}

/* A command of 65,535 keys: each found once, in order, with its flag (the
 * walk finds repeats in O(1) past a few keys; tiercached's EXISTS of
 * 65,535 keys took a CPU-second when it searched them linearly). */
Test(command, key_specs_many_keys)
{
    enum { KEYS = 65535 };
    redisContext *ctx = redisConnect("127.0.0.1", srv.port);
    redisReply *rep = redisCommand(ctx, "COMMAND");
    tc__cmdtab *t = tc__cmdtab_build(rep);
    const char **argv = malloc((KEYS + 1) * sizeof(*argv));
    size_t *lens = malloc((KEYS + 1) * sizeof(*lens));
    static const char *const names[] = {"EXISTS", "DEL"};
    tc__keys k;
    cr_assert_not_null(t);
    cr_assert(argv && lens);
    for (int i = 1; i <= KEYS; i++) {
        argv[i] = "k";
        lens[i] = 1;
    }
    for (int c = 0; c < 2; c++) {
        argv[0] = names[c];
        lens[0] = strlen(names[c]);
        cr_assert_eq(tc__cmdtab_keys(t, KEYS + 1, argv, lens, &k), 0);
        cr_assert_eq(k.n, (size_t)KEYS, "%s: %zu keys", names[c], k.n);
        cr_assert_eq(k.effect, c ? TC__EFFECT_KEYS : TC__EFFECT_READ);
        for (int i = 0; i < KEYS; i++) {
            cr_assert_eq(k.pos[i], i + 1, "%s: key %d at %d", names[c], i,
                         k.pos[i]);
            cr_assert_eq(k.written[i], c, "%s: key %d", names[c], i);
        }
        tc__keys_free(&k);
    }
    free(argv);
    free(lens);
    tc__cmdtab_free(t);
    freeReplyObject(rep);
    redisFree(ctx);
}

/* ---- writes on a session that WATCHes keys ------------------------------ */

typedef struct {
    tc_cache *b;  /* another instance, holding "wk" in L1 */
    int calls;
    int fresh;    /* b stopped serving its copy while the writer was held */
    char *l2;     /* what Redis held then */
} held_write;

/* Holds the writer right after Redis answered its write: by then the
 * invalidation must be on its way (atomic with the write), so b drops its
 * copy while the writer is still held. */
static void hold_writer(void *arg, const void *cmd, size_t len)
{
    held_write *h = arg;
    void *gone[2] = {h->b, "wk"};
    (void)cmd;
    (void)len;
    h->calls++;
    free(h->l2);
    h->l2 = tcr_cmd(&srv, NULL, "GET", "wk", NULL);
    h->fresh = tcr_wait(gone_from_l1, gone, 3000);
}

static void watched_write_atomic(const char *const *write, const char *want)
{
    tc_options o = test_opts(&srv);
    tc_session *s = NULL;
    tc_reply *r = NULL;
    tc_value *v = NULL;
    held_write h = {0};
    const char *watch[2] = {"WATCH", "wk"};
    size_t wl[2] = {5, 2}, lens[8];
    int argc = 0;
    o.coherence = TC_COHERENCE_STRICT;
    o.lease_ms = 2000;
    tc_cache *a = must_create(&o);
    h.b = must_create(&o);
    free(tcr_cmd(&srv, NULL, "SET", "wk", "old", NULL));
    cr_assert_eq(tc_get(h.b, "wk", 2, &v), TC_OK, "%s", tc_errmsg());
    tc_value_release(v);
    cr_assert_eq(tc_peek(h.b, "wk", 2, &v), TC_OK, "b has no L1 copy");
    tc_value_release(v);
    tc__cache_set_session_write_hook(a, hold_writer, &h);
    cr_assert_eq(tc_session_open(a, &s), TC_OK, "%s", tc_errmsg());
    cr_assert_eq(tc_session_command(s, 2, watch, wl, &r), TC_OK);
    tc_reply_free(r);
    while (write[argc])
        lens[argc] = strlen(write[argc]), argc++;
    cr_assert_eq(tc_session_command(s, argc, write, lens, &r), TC_OK, "%s",
                 tc_errmsg());
    tc_reply_free(r);
    cr_assert_eq(h.calls, 1);
    cr_assert_str_eq(h.l2, want, "the write had reached Redis");
    cr_assert(h.fresh, "%s: while the writer was held after its write, b "
                       "served the old value from L1 (Redis: %s)",
              write[0], h.l2);
    tc_session_close(s);
    free(h.l2);
    tc_cache_destroy(a);
    tc_cache_destroy(h.b);
}

/* A write between WATCH and EXEC cannot ride in our MULTI (EXEC would end
 * the WATCH): its invalidation is still atomic with it, strict included. */
Test(command, watched_write_is_invalidated_atomically)
{
    watched_write_atomic((const char *const[]){"SET", "wk", "new", NULL},
                         "new");
}

Test(command, watched_write_is_invalidated_atomically_append)
{
    watched_write_atomic((const char *const[]){"APPEND", "wk", "er", NULL},
                         "older");
}
