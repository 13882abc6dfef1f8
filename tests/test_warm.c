/* Warming: many keys in pipelined batches, one invalidation message per
 * batch, readable at once from another instance; a loader over a key list;
 * progress reported per batch. */
#include "common.h"

REDIS_SUITE(warm);

#define NKEYS 10000

typedef struct prog {
    int calls;
    size_t last, total;
    int monotonic;
} prog;

static void on_progress(void *ud, size_t done, size_t total)
{
    prog *p = ud;
    if (done <= p->last)
        p->monotonic = 0;
    p->calls++;
    p->last = done;
    p->total = total;
}

typedef struct kv {
    char (*k)[16], (*v)[24];
    const void **kp, **vp;
    size_t *kl, *vl;
} kv;

static kv make_kv(size_t n, const char *tag)
{
    kv d;
    d.k = malloc(n * sizeof(*d.k));
    d.v = malloc(n * sizeof(*d.v));
    d.kp = malloc(n * sizeof(*d.kp));
    d.vp = malloc(n * sizeof(*d.vp));
    d.kl = malloc(n * sizeof(*d.kl));
    d.vl = malloc(n * sizeof(*d.vl));
    for (size_t i = 0; i < n; i++) {
        d.kl[i] = (size_t)snprintf(d.k[i], sizeof(d.k[i]), "w:%zu", i);
        d.vl[i] = (size_t)snprintf(d.v[i], sizeof(d.v[i]), "%s-%zu", tag, i);
        d.kp[i] = d.k[i], d.vp[i] = d.v[i];
    }
    return d;
}

static void free_kv(kv *d)
{
    free(d->k), free(d->v), free(d->kp), free(d->vp), free(d->kl),
        free(d->vl);
}

Test(warm, ten_thousand_keys_then_another_instance_reads_them)
{
    tc_options o = test_opts(&srv);
    tc_cache *a, *b;
    kv d = make_kv(NKEYS, "val");
    prog p = {0, 0, 0, 1};
    tc_stats st;
    tc_value **out = calloc(NKEYS, sizeof(*out));
    tc_result *res = calloc(NKEYS, sizeof(*res));
    o.key_prefix = "app:";
    o.command_timeout_ms = 10000; /* 10k keys on a loaded machine */
    a = must_create(&o);
    b = must_create(&o);
    cr_assert_eq(tc_set_many(a, NKEYS, d.kp, d.kl, d.vp, d.vl, 0, 500,
                             on_progress, &p),
                 TC_OK, "%s", tc_errmsg());
    cr_assert_eq(p.calls, NKEYS / 500, "one progress call per batch");
    cr_assert_eq(p.last, NKEYS);
    cr_assert_eq(p.total, NKEYS);
    cr_assert(p.monotonic);
    tc_cache_stats(a, &st);
    cr_assert_eq(st.inval_published, NKEYS / 500,
                 "%llu messages for %d batches",
                 (unsigned long long)st.inval_published, NKEYS / 500);
    cr_assert_eq(tc_mget(b, NKEYS, d.kp, d.kl, out, res), TC_OK);
    for (size_t i = 0; i < NKEYS; i++) {
        cr_assert_eq(res[i], TC_OK, "key %zu: %s", i, tc_strerror(res[i]));
        cr_assert_eq(tc_value_len(out[i]), d.vl[i]);
        cr_assert_eq(memcmp(tc_value_data(out[i]), d.v[i], d.vl[i]), 0);
        tc_value_release(out[i]);
    }
    /* With the default TTL, under the prefix. */
    {
        char *ttl = tcr_cmd(&srv, NULL, "PTTL", "app:w:9999", NULL);
        cr_assert(atoll(ttl) > 0, "PTTL %s", ttl);
        free(ttl);
    }
    free(out), free(res);
    free_kv(&d);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* Another instance's stale L1 copy goes with the batch's one message. */
static void stale_copy_dropped(int coherence)
{
    tc_options o = test_opts(&srv);
    tc_cache *a, *b;
    kv d = make_kv(100, "new");
    tc_stats st;
    holds_arg h;
    char *s;
    o.coherence = coherence;
    a = must_create(&o);
    b = must_create(&o);
    cr_assert_eq(set_str(b, "w:42", "old", 0), TC_OK);
    warm(b, "w:42", "old");
    cr_assert_eq(tc_set_many(a, 100, d.kp, d.kl, d.vp, d.vl, 0, 0, NULL, NULL),
                 TC_OK);
    tc_cache_stats(a, &st);
    cr_assert_eq(st.inval_published, 1, "one message for one batch");
    if (coherence == TC_COHERENCE_STRICT) {
        /* Strict: gone before tc_set_many returned. */
        cr_assert(!l1_serves(b, "w:42", "old"), "strict: stale copy served");
        cr_assert_eq(st.strict_waits, 1, "one strict wait per batch");
    }
    h = (holds_arg){b, "w:42", "old"};
    AWAIT(l1_drops, &h, "the batch message never dropped the stale copy");
    s = get_str(b, "w:42", NULL);
    cr_assert_str_eq(s, "new-42");
    free(s);
    free_kv(&d);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

Test(warm, stale_copy_in_another_instance_dropped_by_the_batch_message)
{
    stale_copy_dropped(TC_COHERENCE_ASYNC);
}

Test(warm, strict_mode_waits_once_per_batch)
{
    stale_copy_dropped(TC_COHERENCE_STRICT);
}

typedef struct loader_arg {
    int calls;
    int fail_at; /* -1: never */
} loader_arg;

/* Values for "w:<i>": none for multiples of 10; fails at fail_at. */
static tc_result load(void *ud, const void *key, size_t klen, void **val,
                      size_t *vlen)
{
    loader_arg *a = ud;
    char buf[32];
    int i;
    memcpy(buf, key, klen);
    buf[klen] = '\0';
    i = atoi(buf + 2);
    a->calls++;
    if (i == a->fail_at)
        return TC_LOADER;
    if (i % 10 == 0)
        return TC_NOT_FOUND;
    *vlen = (size_t)snprintf(buf, sizeof(buf), "db-%d", i);
    *val = strdup(buf);
    return TC_OK;
}

Test(warm, loader_over_a_key_list_with_progress)
{
    tc_options o = test_opts(&srv);
    tc_cache *a, *b;
    kv d = make_kv(1000, "unused");
    loader_arg la = {0, -1};
    prog p = {0, 0, 0, 1};
    tc_result r;
    char *s;
    a = must_create(&o);
    b = must_create(&o);
    cr_assert_eq(tc_warm(a, 1000, d.kp, d.kl, load, &la, 60000, 100,
                         on_progress, &p),
                 TC_OK, "%s", tc_errmsg());
    cr_assert_eq(la.calls, 1000);
    cr_assert_eq(p.calls, 10);
    cr_assert_eq(p.last, 1000);
    s = get_str(b, "w:7", &r);
    cr_assert_eq(r, TC_OK);
    cr_assert_str_eq(s, "db-7");
    free(s);
    get_str(b, "w:70", &r);
    cr_assert_eq(r, TC_NOT_FOUND, "a key the loader did not find is absent");

    /* A failure stops warming: earlier batches stay, progress says so. */
    tcr_cmd(&srv, NULL, "FLUSHALL", NULL);
    la = (loader_arg){0, 555};
    p = (prog){0, 0, 0, 1};
    cr_assert_eq(tc_warm(a, 1000, d.kp, d.kl, load, &la, 0, 100, on_progress,
                         &p),
                 TC_LOADER);
    cr_assert_eq(p.last, 500, "progress %zu", p.last);
    s = get_str(b, "w:499", &r);
    cr_assert_eq(r, TC_OK);
    free(s);
    get_str(b, "w:501", &r);
    cr_assert_eq(r, TC_NOT_FOUND);
    free_kv(&d);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

Test(warm, redis_down_and_bad_arguments)
{
    tc_options o = test_opts(&srv);
    tc_cache *a;
    kv d = make_kv(10, "v");
    prog p = {0, 0, 0, 1};
    tc_result r;
    size_t big = 2 * 1024 * 1024;
    o.max_value_bytes = 1024 * 1024;
    a = must_create(&o);
    /* A too-large value anywhere: nothing is sent. */
    d.vl[9] = big;
    d.vp[9] = calloc(1, big);
    cr_assert_eq(tc_set_many(a, 10, d.kp, d.kl, d.vp, d.vl, 0, 0, on_progress,
                             &p),
                 TC_TOO_LARGE);
    cr_assert_eq(p.calls, 0);
    get_str(a, "w:0", &r);
    cr_assert_eq(r, TC_NOT_FOUND, "a batch was sent before the check");
    free((void *)d.vp[9]);
    d.vp[9] = d.v[9], d.vl[9] = 3;
    cr_assert_eq(tc_set_many(a, 10, d.kp, d.kl, d.vp, d.vl, 0, 200000, NULL,
                             NULL),
                 TC_BAD_ARGUMENT);

    tcr_kill(&srv);
    r = tc_set_many(a, 10, d.kp, d.kl, d.vp, d.vl, 0, 0, on_progress, &p);
    cr_assert(r == TC_L2_UNAVAILABLE || r == TC_TIMEOUT, "%s", tc_strerror(r));
    cr_assert_eq(p.calls, 0, "progress reported for a batch that failed");
    cr_assert(l1_holds(a, "w:1", NULL));
    free_kv(&d);
    tc_cache_destroy(a);
}
