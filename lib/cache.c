/*
 * The public facade: argument checks, the read and write paths across L1, L2
 * and the bus. Holds no lock of its own: L1 shards, the L2 pool, the bus and
 * single-flight each guard their own state.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "cache.h"
#include "config.h"
#include "error.h"
#include "flight.h"
#include "l1.h"
#include "l2.h"
#include "msg.h"

struct tc_cache {
    tc__config cfg;  /* immutable after create */
    tc__l1 *l1;      /* NULL when disabled */
    tc__l2 *l2;      /* NULL when disabled */
    tc__bus *bus;    /* NULL when disabled or coherence NONE */
    tc__flights *flights;
    char id[TC__ORIGIN_MAX + 1];
    atomic_uint_fast64_t l2_hits, l2_misses, loader_calls, l1_bypassed;
    tc__fill_hook_fn fill_hook; /* tests only; set before use */
    void *fill_hook_arg;
};

/* A prefixed L2 key: on the stack when small. */
typedef struct pkey {
    char *p;
    size_t len;
    char small[256];
} pkey;

static tc_result pkey_make(const tc_cache *c, const void *key, size_t klen,
                           pkey *k)
{
    size_t n = c->cfg.prefix_len + klen;
    k->p = n <= sizeof(k->small) ? k->small : malloc(n);
    if (!k->p)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    memcpy(k->p, c->cfg.prefix, c->cfg.prefix_len);
    memcpy(k->p + c->cfg.prefix_len, key, klen);
    k->len = n;
    return TC_OK;
}

static void pkey_free(pkey *k)
{
    if (k->p != k->small)
        free(k->p);
}

static tc_result check_key(const tc_cache *c, const void *key, size_t klen)
{
    if (!c)
        return tc__fail(TC_BAD_ARGUMENT, "NULL cache");
    if (!key || klen == 0)
        return tc__fail(TC_BAD_ARGUMENT, "key must be non-empty");
    if (klen > c->cfg.max_key)
        return tc__fail(TC_TOO_LARGE, "key of %zu bytes exceeds max_key_bytes %zu",
                        klen, c->cfg.max_key);
    return TC_OK;
}

static tc_result check_value(const tc_cache *c, const void *val, size_t vlen)
{
    if (!val && vlen)
        return tc__fail(TC_BAD_ARGUMENT, "NULL value with non-zero length");
    if (vlen > c->cfg.max_value)
        return tc__fail(TC_TOO_LARGE,
                        "value of %zu bytes exceeds max_value_bytes %zu", vlen,
                        c->cfg.max_value);
    return TC_OK;
}

/* May L1 answer reads at `now`? Without a bus, always; with one, only
 * while it has proved itself alive within the lease. */
static inline int l1_servable(tc_cache *c, uint64_t now)
{
    return !c->bus || tc__bus_l1_ok(c->bus, now);
}

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t l1_deadline(uint64_t l1_ttl_ms)
{
    return tc__now_ns() + l1_ttl_ms * 1000000ULL;
}

/* ------------------------------------------------------------------ */
/* Create / destroy                                                    */
/* ------------------------------------------------------------------ */

static void make_id(char *id)
{
    unsigned char r[8];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        uint64_t t = tc__now_ns() ^ ((uint64_t)getpid() << 32);
        memcpy(r, &t, sizeof(r));
    }
    for (int i = 0; i < 8; i++)
        sprintf(id + 2 * i, "%02x", r[i]);
}

tc_result tc_cache_create(const tc_options *opts, tc_cache **out)
{
    tc_cache *c;
    tc_result r;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if ((r = tc__config_resolve(opts, &c->cfg)) != TC_OK) {
        free(c);
        return r;
    }
    make_id(c->id);
    if (!c->cfg.enabled) {
        *out = c;
        return TC_OK;
    }
    c->l1 = tc__l1_create(c->cfg.l1_max_bytes, c->cfg.l1_max_entries,
                          c->cfg.l1_shards);
    c->flights = tc__flights_create(c->cfg.l1_shards);
    if (!c->l1 || !c->flights) {
        tc_cache_destroy(c);
        return tc__fail(TC_NO_MEMORY, "out of memory creating L1");
    }
    if ((r = tc__l2_create(&c->cfg, &c->l2)) != TC_OK) {
        tc_cache_destroy(c);
        return r;
    }
    if (c->cfg.coherence != TC_COHERENCE_NONE &&
        (r = tc__bus_create(&c->cfg, c->l1, c->id, &c->bus)) != TC_OK) {
        tc_cache_destroy(c);
        return r;
    }
    if (c->bus && !tc__l2_breaker_open(c->l2)) {
        /* Redis answered: give the bus its first proof of liveness, so L1
         * serves from the first call. Bounded; a slow bus only means reads
         * go to L2 until it is up. */
        uint64_t until = tc__now_ns() + (uint64_t)(c->cfg.connect_timeout_ms +
                                                   c->cfg.command_timeout_ms) *
                                            1000000ULL;
        struct timespec ms = {0, 1000000L};
        while (!tc__bus_l1_ok(c->bus, tc__now_ns()) && tc__now_ns() < until)
            nanosleep(&ms, NULL);
    }
    *out = c;
    return TC_OK;
}

void tc_cache_destroy(tc_cache *c)
{
    if (!c)
        return;
    if (c->bus && !tc__l2_breaker_open(c->l2)) {
        /* Leave the members set now, so strict writers stop counting us. */
        const char *a[3] = {"ZREM", tc__bus_members_key(c->bus), c->id};
        tc__cmd cmd = {3, a, NULL};
        redisReply *rep;
        if (tc__l2_run(c->l2, 1, &cmd, &rep, 0) == TC_OK)
            freeReplyObject(rep);
    }
    tc__bus_destroy(c->bus);
    tc__l2_destroy(c->l2);
    tc__flights_destroy(c->flights);
    tc__l1_destroy(c->l1);
    tc__config_free(&c->cfg);
    free(c);
}

const char *tc_cache_instance_id(const tc_cache *c)
{
    return c ? c->id : "";
}

/* ------------------------------------------------------------------ */
/* Reads                                                               */
/* ------------------------------------------------------------------ */

/* Interpret a GET + PTTL reply pair and fill L1 (guarded by `gen`). */
static tc_result take_l2_value(tc_cache *c, uint64_t h, const void *key,
                               size_t klen, uint64_t gen, redisReply *val,
                               redisReply *ttl, tc_value **out)
{
    uint64_t l1_ttl = c->cfg.l1_ttl_ms;
    if (val->type == REDIS_REPLY_NIL) {
        atomic_fetch_add_explicit(&c->l2_misses, 1, memory_order_relaxed);
        return TC_NOT_FOUND;
    }
    if (val->type != REDIS_REPLY_STRING) {
        if (val->type == REDIS_REPLY_ERROR)
            return tc__fail(TC_PROTOCOL, "GET: %.*s", (int)val->len, val->str);
        return tc__fail(TC_PROTOCOL, "GET: not a string value");
    }
    atomic_fetch_add_explicit(&c->l2_hits, 1, memory_order_relaxed);
    if (c->fill_hook)
        c->fill_hook(c->fill_hook_arg, key, klen);
    /* L1 never outlives the L2 entry. */
    if (ttl->type == REDIS_REPLY_INTEGER && ttl->integer >= 0 &&
        (uint64_t)ttl->integer < l1_ttl)
        l1_ttl = (uint64_t)ttl->integer;
    *out = NULL;
    if (ttl->type == REDIS_REPLY_INTEGER && ttl->integer != -2 && l1_ttl > 0)
        tc__l1_fill(c->l1, h, key, klen, val->str, val->len,
                    l1_deadline(l1_ttl), gen, 0, out);
    if (!*out && !(*out = tc__value_new(val->str, val->len)))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    return TC_OK;
}

static tc_result get_l2(tc_cache *c, uint64_t h, const void *key, size_t klen,
                        tc_value **out)
{
    pkey k;
    redisReply *rep[2];
    tc_result r;
    /* Read the generation before asking L2: an invalidation applied after
     * this point makes the fill below refuse the (possibly old) value. */
    uint64_t gen = tc__l1_gen(c->l1, h);
    if ((r = pkey_make(c, key, klen, &k)) != TC_OK)
        return r;
    {
        const char *a1[2] = {"GET", k.p}, *a2[2] = {"PTTL", k.p};
        size_t l1[2] = {3, k.len}, l2[2] = {4, k.len};
        tc__cmd cmds[2] = {{2, a1, l1}, {2, a2, l2}};
        r = tc__l2_run(c->l2, 2, cmds, rep, TC__L2_IDEMPOTENT);
    }
    pkey_free(&k);
    if (r != TC_OK)
        return r;
    r = take_l2_value(c, h, key, klen, gen, rep[0], rep[1], out);
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    return r;
}

/* L1 lookup when servable; counts reads that had to bypass it. One clock
 * read serves the lease check and the entry's expiry. */
static tc_value *l1_lookup(tc_cache *c, uint64_t h, const void *key,
                           size_t klen)
{
    uint64_t now = tc__now_ns();
    if (!l1_servable(c, now)) {
        atomic_fetch_add_explicit(&c->l1_bypassed, 1, memory_order_relaxed);
        return NULL;
    }
    return tc__l1_get(c->l1, h, key, klen, now);
}

/* Checks shared by the single-key reads; TC_OK means: go and look. */
static tc_result begin_read(tc_cache *c, const void *key, size_t klen,
                            tc_value **out)
{
    tc_result r;
    if ((r = check_key(c, key, klen)) != TC_OK)
        return r;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    *out = NULL;
    return c->cfg.enabled ? TC_OK : TC_NOT_FOUND;
}

tc_result tc_get(tc_cache *c, const void *key, size_t klen, tc_value **out)
{
    tc_result r;
    uint64_t h;
    if ((r = begin_read(c, key, klen, out)) != TC_OK)
        return r;
    h = tc__hash(key, klen);
    if ((*out = l1_lookup(c, h, key, klen)))
        return TC_OK;
    return get_l2(c, h, key, klen, out);
}

tc_result tc_peek(tc_cache *c, const void *key, size_t klen, tc_value **out)
{
    tc_result r;
    if ((r = begin_read(c, key, klen, out)) != TC_OK)
        return r;
    *out = l1_lookup(c, tc__hash(key, klen), key, klen);
    return *out ? TC_OK : TC_NOT_FOUND;
}

tc_result tc_mget(tc_cache *c, size_t n, const void *const *keys,
                  const size_t *klens, tc_value **out, tc_result *res)
{
    size_t nmiss = 0, j = 0;
    size_t *miss = NULL;
    uint64_t *gens = NULL, *hs = NULL;
    pkey *pk = NULL;
    tc__cmd *cmds = NULL;
    const char **argv = NULL;
    size_t *argl = NULL;
    redisReply **rep = NULL;
    tc_result r = TC_OK, first = TC_OK;

    if (!c || (n && (!keys || !klens || !out || !res)))
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        res[i] = check_key(c, keys[i], klens[i]);
        if (res[i] != TC_OK && first == TC_OK)
            first = res[i];
    }
    if (first != TC_OK || n == 0)
        return first;
    if (!c->cfg.enabled) {
        for (size_t i = 0; i < n; i++)
            res[i] = TC_NOT_FOUND;
        return TC_OK;
    }
    miss = malloc(n * sizeof(*miss));
    hs = malloc(n * sizeof(*hs));
    if (!miss || !hs) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        hs[i] = tc__hash(keys[i], klens[i]);
        if ((out[i] = l1_lookup(c, hs[i], keys[i], klens[i])))
            res[i] = TC_OK;
        else
            miss[nmiss++] = i;
    }
    if (!nmiss)
        goto done;
    gens = malloc(nmiss * sizeof(*gens));
    pk = malloc(nmiss * sizeof(*pk));
    cmds = malloc(2 * nmiss * sizeof(*cmds));
    argv = malloc(4 * nmiss * sizeof(*argv));
    argl = malloc(4 * nmiss * sizeof(*argl));
    rep = malloc(2 * nmiss * sizeof(*rep));
    if (!gens || !pk || !cmds || !argv || !argl || !rep) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto done;
    }
    for (j = 0; j < nmiss; j++) {
        size_t i = miss[j];
        gens[j] = tc__l1_gen(c->l1, hs[i]);
        if ((r = pkey_make(c, keys[i], klens[i], &pk[j])) != TC_OK)
            goto done;
        argv[4 * j] = "GET", argl[4 * j] = 3;
        argv[4 * j + 1] = pk[j].p, argl[4 * j + 1] = pk[j].len;
        argv[4 * j + 2] = "PTTL", argl[4 * j + 2] = 4;
        argv[4 * j + 3] = pk[j].p, argl[4 * j + 3] = pk[j].len;
        cmds[2 * j] = (tc__cmd){2, argv + 4 * j, argl + 4 * j};
        cmds[2 * j + 1] = (tc__cmd){2, argv + 4 * j + 2, argl + 4 * j + 2};
    }
    r = tc__l2_run(c->l2, 2 * nmiss, cmds, rep, TC__L2_IDEMPOTENT);
    for (size_t m = 0; m < nmiss; m++) {
        size_t i = miss[m];
        if (r != TC_OK) {
            res[i] = r;
            continue;
        }
        res[i] = take_l2_value(c, hs[i], keys[i], klens[i], gens[m],
                               rep[2 * m], rep[2 * m + 1], &out[i]);
        freeReplyObject(rep[2 * m]);
        freeReplyObject(rep[2 * m + 1]);
        if (res[i] != TC_OK && res[i] != TC_NOT_FOUND && first == TC_OK)
            first = res[i];
    }
    if (r != TC_OK)
        first = r;
    r = first;
done:
    if (pk)
        for (size_t m = 0; m < j; m++)
            pkey_free(&pk[m]);
    free(miss);
    free(hs);
    free(gens);
    free(pk);
    free(cmds);
    free(argv);
    free(argl);
    free(rep);
    return r;
}

/* ------------------------------------------------------------------ */
/* Writes                                                              */
/* ------------------------------------------------------------------ */

/* Whether a write waits for acknowledgements. */
static int write_is_strict(const tc_cache *c, int flags)
{
    if (!c->bus)
        return 0;
    if (flags & TC_SET_STRICT)
        return 1;
    if (flags & TC_SET_ASYNC)
        return 0;
    return c->cfg.coherence == TC_COHERENCE_STRICT;
}

/*
 * Run `n` write commands and the invalidation `msg` in one MULTI/EXEC, so
 * the change and its publication happen together or not at all. For a
 * strict write, also count, in the same transaction, the instances that may
 * be serving L1 (members whose server-clock lease has not passed), and wait
 * for their acknowledgements or for the lease. On TC_OK *exec holds the EXEC reply's
 * first `n` results (caller frees it).
 */
static tc_result write_publish(tc_cache *c, size_t n, const tc__cmd *writes,
                               tc__msg_kind kind, size_t nk,
                               const void *const *keys, const size_t *klens,
                               int strict, redisReply **exec)
{
    tc__strict_wait *w = NULL;
    uint64_t seq = 0;
    char *msg = NULL;
    size_t msglen = 0, ncmd = 0;
    tc__cmd cmds[8];
    redisReply *rep[8];
    tc_result r;
    const char *multi[1] = {"MULTI"}, *execv[1] = {"EXEC"};
    const char *pub[3], *numsub[4];
    size_t publ[3], numsubl[4];

    if (n > 4)
        return tc__fail(TC_BAD_ARGUMENT, "internal: too many commands");
    if (strict && !(seq = tc__bus_strict_begin(c->bus, &w)))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    cmds[ncmd++] = (tc__cmd){1, multi, NULL};
    for (size_t i = 0; i < n; i++)
        cmds[ncmd++] = writes[i];
    if (c->bus) {
        msg = tc__msg_encode(kind, c->id, seq, realtime_us(), nk, keys, klens,
                             &msglen);
        if (!msg) {
            if (w)
                tc__bus_strict_wait(c->bus, w, NULL, 0);
            return tc__fail(TC_NO_MEMORY, "out of memory");
        }
        pub[0] = "PUBLISH", publ[0] = 7;
        pub[1] = c->cfg.channel, publ[1] = strlen(c->cfg.channel);
        pub[2] = msg, publ[2] = msglen;
        cmds[ncmd++] = (tc__cmd){3, pub, publ};
        if (strict) {
            numsub[0] = "EVAL", numsubl[0] = 4;
            numsub[1] = tc__bus_count_script();
            numsubl[1] = strlen(numsub[1]);
            numsub[2] = "1", numsubl[2] = 1;
            numsub[3] = tc__bus_members_key(c->bus);
            numsubl[3] = strlen(numsub[3]);
            cmds[ncmd++] = (tc__cmd){4, numsub, numsubl};
        }
    }
    cmds[ncmd++] = (tc__cmd){1, execv, NULL};
    r = tc__l2_run(c->l2, ncmd, cmds, rep, 0);
    free(msg);
    if (r == TC_OK) {
        redisReply *e = rep[ncmd - 1];
        for (size_t i = 0; i + 1 < ncmd; i++)
            freeReplyObject(rep[i]);
        if (e->type != REDIS_REPLY_ARRAY || e->elements != ncmd - 2) {
            r = e->type == REDIS_REPLY_ERROR
                    ? tc__fail(TC_PROTOCOL, "EXEC: %.*s", (int)e->len, e->str)
                    : tc__fail(TC_PROTOCOL, "EXEC: transaction aborted");
            freeReplyObject(e);
        } else {
            *exec = e;
            if (c->bus)
                tc__bus_count_published(c->bus);
        }
    }
    if (w) {
        const redisReply *members = NULL;
        uint64_t deadline = 0;
        if (r == TC_OK) {
            redisReply *ids = (*exec)->element[n + 1];
            /* An unexpected reply (members NULL) waits out the lease, which
             * is always safe: past it, every instance that did not
             * acknowledge has stopped serving L1 by itself (its last proof
             * of liveness predates the publication, and its lease is
             * shorter than ours). */
            members = ids->type == REDIS_REPLY_ARRAY ? ids : NULL;
            deadline = tc__now_ns() + (uint64_t)c->cfg.lease_ms * 1000000ULL;
        }
        tc__bus_strict_wait(c->bus, w, members, deadline);
    }
    return r;
}

tc_result tc_set_ex(tc_cache *c, const void *key, size_t klen, const void *val,
                    size_t vlen, const tc_set_opts *o)
{
    static const tc_set_opts defaults;
    tc_result r;
    uint64_t h, gen, l2_ttl, l1_ttl;
    pkey k;
    char px[24];
    const char *argv[6];
    size_t argl[6];
    int argc = 0;
    tc__cmd set;
    redisReply *exec = NULL;
    const void *keys[1] = {key};

    if (!o)
        o = &defaults;
    if ((r = check_key(c, key, klen)) != TC_OK ||
        (r = check_value(c, val, vlen)) != TC_OK)
        return r;
    if ((o->flags & TC_SET_NX) && (o->flags & TC_SET_XX))
        return tc__fail(TC_BAD_ARGUMENT, "NX and XX together");
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    l2_ttl = o->l2_ttl_ms ? o->l2_ttl_ms : c->cfg.default_ttl_ms;
    l1_ttl = o->l1_ttl_ms ? o->l1_ttl_ms : c->cfg.l1_ttl_ms;
    if (l2_ttl != TC_TTL_NONE && l1_ttl > l2_ttl)
        l1_ttl = l2_ttl;
    if ((r = pkey_make(c, key, klen, &k)) != TC_OK)
        return r;

    argv[argc] = "SET", argl[argc++] = 3;
    argv[argc] = k.p, argl[argc++] = k.len;
    argv[argc] = val ? val : "", argl[argc++] = vlen;
    if (l2_ttl != TC_TTL_NONE) {
        argv[argc] = "PX", argl[argc++] = 2;
        argl[argc] = (size_t)snprintf(px, sizeof(px), "%llu",
                                      (unsigned long long)l2_ttl);
        argv[argc++] = px;
    }
    if (o->flags & (TC_SET_NX | TC_SET_XX))
        argv[argc] = o->flags & TC_SET_NX ? "NX" : "XX", argl[argc++] = 2;
    set = (tc__cmd){argc, argv, argl};

    /* Drop our own copy first; the returned generation guards the fill. */
    h = tc__hash(key, klen);
    gen = tc__l1_invalidate_key(c->l1, h, key, klen);
    r = write_publish(c, 1, &set, TC__MSG_KEY, 1, keys, &klen,
                      write_is_strict(c, o->flags), &exec);
    pkey_free(&k);
    if (r == TC_OK) {
        redisReply *sr = exec->element[0];
        if (sr->type == REDIS_REPLY_NIL)
            r = tc__fail(TC_NOT_STORED, "NX/XX condition not met");
        else if (sr->type == REDIS_REPLY_ERROR)
            r = tc__fail(TC_PROTOCOL, "SET: %.*s", (int)sr->len, sr->str);
        freeReplyObject(exec);
    }
    if (r == TC_OK) {
        /* Another write or invalidation of this key while ours was in flight
         * leaves the order in L2 unknown here: keep no copy then. Nor when
         * the value did not fit: a reader may have filled the old one. */
        if (tc__l1_fill(c->l1, h, key, klen, val, vlen, l1_deadline(l1_ttl),
                        gen, TC__FILL_BUMP, NULL) != TC__FILL_INSERTED)
            tc__l1_invalidate_key(c->l1, h, key, klen);
    } else {
        /* The write may or may not have happened: hold no copy, and make
         * in-flight fills of the old value fail. */
        tc__l1_invalidate_key(c->l1, h, key, klen);
    }
    return r;
}

tc_result tc_set(tc_cache *c, const void *key, size_t klen, const void *val,
                 size_t vlen, uint64_t ttl_ms)
{
    tc_set_opts o = {ttl_ms, 0, 0};
    return tc_set_ex(c, key, klen, val, vlen, &o);
}

tc_result tc_mdel(tc_cache *c, size_t n, const void *const *keys,
                  const size_t *klens, uint64_t *deleted)
{
    tc_result r;
    pkey *pk;
    const char **argv;
    size_t *argl, made = 0;
    redisReply *exec = NULL;
    tc__cmd del;

    if (!c || !n || !keys || !klens)
        return tc__fail(TC_BAD_ARGUMENT, "NULL or empty argument");
    for (size_t i = 0; i < n; i++)
        if ((r = check_key(c, keys[i], klens[i])) != TC_OK)
            return r;
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    pk = malloc(n * sizeof(*pk));
    argv = malloc((n + 1) * sizeof(*argv));
    argl = malloc((n + 1) * sizeof(*argl));
    if (!pk || !argv || !argl) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    argv[0] = "DEL", argl[0] = 3;
    for (; made < n; made++) {
        if ((r = pkey_make(c, keys[made], klens[made], &pk[made])) != TC_OK)
            goto out;
        argv[made + 1] = pk[made].p, argl[made + 1] = pk[made].len;
        tc__l1_invalidate_key(c->l1, tc__hash(keys[made], klens[made]),
                              keys[made], klens[made]);
    }
    del = (tc__cmd){(int)n + 1, argv, argl};
    r = write_publish(c, 1, &del, n == 1 ? TC__MSG_KEY : TC__MSG_KEYS, n, keys,
                      klens, write_is_strict(c, 0), &exec);
    if (r == TC_OK) {
        if (deleted && exec->element[0]->type == REDIS_REPLY_INTEGER)
            *deleted = (uint64_t)exec->element[0]->integer;
        freeReplyObject(exec);
    }
    /* Fills that fetched the old value during the DEL must not land. */
    for (size_t i = 0; i < n; i++)
        tc__l1_invalidate_key(c->l1, tc__hash(keys[i], klens[i]), keys[i],
                              klens[i]);
out:
    for (size_t i = 0; i < made; i++)
        pkey_free(&pk[i]);
    free(pk);
    free(argv);
    free(argl);
    return r;
}

tc_result tc_del(tc_cache *c, const void *key, size_t klen)
{
    const void *keys[1] = {key};
    return tc_mdel(c, 1, keys, &klen, NULL);
}

tc_result tc_pttl(tc_cache *c, const void *key, size_t klen, int64_t *ttl_ms)
{
    tc_result r;
    pkey k;
    redisReply *rep;
    if ((r = check_key(c, key, klen)) != TC_OK)
        return r;
    if (!ttl_ms)
        return tc__fail(TC_BAD_ARGUMENT, "NULL ttl_ms");
    if (!c->cfg.enabled)
        return TC_NOT_FOUND;
    if ((r = pkey_make(c, key, klen, &k)) != TC_OK)
        return r;
    {
        const char *a[2] = {"PTTL", k.p};
        size_t l[2] = {4, k.len};
        tc__cmd cmd = {2, a, l};
        r = tc__l2_run(c->l2, 1, &cmd, &rep, TC__L2_IDEMPOTENT);
    }
    pkey_free(&k);
    if (r != TC_OK)
        return r;
    if (rep->type != REDIS_REPLY_INTEGER)
        r = tc__fail(TC_PROTOCOL, "PTTL: unexpected reply");
    else if (rep->integer == -2)
        r = TC_NOT_FOUND;
    else
        *ttl_ms = rep->integer;
    freeReplyObject(rep);
    return r;
}

/* ------------------------------------------------------------------ */
/* Read-through                                                        */
/* ------------------------------------------------------------------ */

/* Store a loaded value in L2 only if the key is still absent there (a
 * concurrent writer's newer value wins), then in L1 guarded by `gen`. */
static void store_loaded(tc_cache *c, uint64_t h, const void *key, size_t klen,
                         uint64_t gen, const void *val, size_t vlen,
                         uint64_t ttl_ms, tc_value **out)
{
    pkey k;
    char px[24];
    redisReply *rep;
    uint64_t l2_ttl = ttl_ms ? ttl_ms : c->cfg.default_ttl_ms;
    uint64_t l1_ttl = c->cfg.l1_ttl_ms;
    const char *argv[6];
    size_t argl[6];
    int argc = 0;
    if (vlen > c->cfg.max_value || pkey_make(c, key, klen, &k) != TC_OK)
        return;
    if (l2_ttl != TC_TTL_NONE && l1_ttl > l2_ttl)
        l1_ttl = l2_ttl;
    argv[argc] = "SET", argl[argc++] = 3;
    argv[argc] = k.p, argl[argc++] = k.len;
    argv[argc] = val, argl[argc++] = vlen;
    if (l2_ttl != TC_TTL_NONE) {
        argv[argc] = "PX", argl[argc++] = 2;
        argl[argc] = (size_t)snprintf(px, sizeof(px), "%llu",
                                      (unsigned long long)l2_ttl);
        argv[argc++] = px;
    }
    argv[argc] = "NX", argl[argc++] = 2;
    {
        tc__cmd cmd = {argc, argv, argl};
        if (tc__l2_run(c->l2, 1, &cmd, &rep, 0) == TC_OK) {
            if (rep->type == REDIS_REPLY_STATUS)
                tc__l1_fill(c->l1, h, key, klen, val, vlen,
                            l1_deadline(l1_ttl), gen, 0, out);
            freeReplyObject(rep);
        }
    }
    pkey_free(&k);
}

/* Call the user's loader once, counting it and checking what it returned.
 * On TC_OK *val (malloc'd, may be NULL when *vlen is 0) is the caller's. */
static tc_result run_loader(tc_cache *c, tc_loader_fn loader, void *ud,
                            const void *key, size_t klen, void **val,
                            size_t *vlen)
{
    tc_result r;
    *val = NULL;
    *vlen = 0;
    atomic_fetch_add(&c->loader_calls, 1);
    tc__fail(TC_OK, "%s", "");
    r = loader(ud, key, klen, val, vlen);
    if (r == TC_OK && !*val && *vlen)
        r = tc__fail(TC_LOADER, "loader returned NULL with a length");
    else if (r != TC_OK && r != TC_NOT_FOUND && !tc_errmsg()[0])
        tc__fail(r, "loader failed: %s", tc_strerror(r));
    if (r != TC_OK) {
        free(*val);
        *val = NULL;
    }
    return r;
}

tc_result tc_get_or_load(tc_cache *c, const void *key, size_t klen,
                         tc_loader_fn loader, void *ud, uint64_t ttl_ms,
                         tc_value **out)
{
    tc_result r;
    uint64_t h, gen = 0;
    tc__flight *f;
    tc_value *v = NULL;
    void *val = NULL;
    size_t vlen = 0;
    int role;

    if ((r = check_key(c, key, klen)) != TC_OK)
        return r;
    if (!out || !loader)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out or loader");
    *out = NULL;
    if (!c->cfg.enabled) {
        if ((r = run_loader(c, loader, ud, key, klen, &val, &vlen)) != TC_OK)
            return r;
        *out = tc__value_new(val, vlen);
        free(val);
        return *out ? TC_OK : tc__fail(TC_NO_MEMORY, "out of memory");
    }
    h = tc__hash(key, klen);
    if ((*out = l1_lookup(c, h, key, klen)))
        return TC_OK;

    role = tc__flight_join(c->flights, h, key, klen, &f);
    if (role < 0)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if (role == 0)
        return tc__flight_wait(c->flights, f, out);

    /* Leader. */
    gen = tc__l1_gen(c->l1, h);
    r = get_l2(c, h, key, klen, &v);
    if (r != TC_OK && r != TC_NOT_FOUND && r != TC_L2_UNAVAILABLE &&
        r != TC_TIMEOUT && r != TC_PROTOCOL)
        goto finish;
    if (r != TC_OK) {
        int l2_ok = r == TC_NOT_FOUND;
        r = run_loader(c, loader, ud, key, klen, &val, &vlen);
        if (r == TC_OK) {
            /* Graceful fallback: with L2 down the value is still served,
             * but not cached anywhere (no invalidation could reach it). */
            if (l2_ok)
                store_loaded(c, h, key, klen, gen, val ? val : "", vlen,
                             ttl_ms, &v);
            if (!v && !(v = tc__value_new(val, vlen)))
                r = tc__fail(TC_NO_MEMORY, "out of memory");
        }
        free(val);
    }
finish:
    tc__flight_finish(c->flights, f, r, v);
    *out = r == TC_OK ? v : NULL;
    if (r != TC_OK)
        tc_value_release(v);
    return r;
}

/* ------------------------------------------------------------------ */
/* Pattern invalidation                                                */
/* ------------------------------------------------------------------ */

/* Escape glob metacharacters of [s, s+n) into `out` (2n bytes). */
static size_t glob_escape(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\", s[i]) && s[i])
            out[o++] = '\\';
        out[o++] = s[i];
    }
    return o;
}

/* SCAN the keyspace for `match` and UNLINK what it finds, batch by batch:
 * never KEYS, never one long blocking command. */
static tc_result scan_unlink(tc_cache *c, const char *match, size_t mlen)
{
    char cursor[32] = "0";
    tc_result r;
    do {
        redisReply *rep, *keys;
        const char *a[6] = {"SCAN", cursor, "MATCH", match, "COUNT", "1000"};
        size_t l[6] = {4, strlen(cursor), 5, mlen, 5, 4};
        tc__cmd cmd = {6, a, l};
        if ((r = tc__l2_run(c->l2, 1, &cmd, &rep, TC__L2_IDEMPOTENT)) != TC_OK)
            return r;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY ||
            rep->element[0]->len >= sizeof(cursor)) {
            freeReplyObject(rep);
            return tc__fail(TC_PROTOCOL, "SCAN: unexpected reply");
        }
        memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
        cursor[rep->element[0]->len] = '\0';
        keys = rep->element[1];
        if (keys->elements) {
            const char **ua = malloc((keys->elements + 1) * sizeof(*ua));
            size_t *ul = malloc((keys->elements + 1) * sizeof(*ul));
            redisReply *ur;
            if (!ua || !ul) {
                free(ua);
                free(ul);
                freeReplyObject(rep);
                return tc__fail(TC_NO_MEMORY, "out of memory");
            }
            ua[0] = "UNLINK", ul[0] = 6;
            for (size_t i = 0; i < keys->elements; i++)
                ua[i + 1] = keys->element[i]->str,
                        ul[i + 1] = keys->element[i]->len;
            cmd = (tc__cmd){(int)keys->elements + 1, ua, ul};
            r = tc__l2_run(c->l2, 1, &cmd, &ur, 0);
            free(ua);
            free(ul);
            if (r == TC_OK)
                freeReplyObject(ur);
        }
        freeReplyObject(rep);
        if (r != TC_OK)
            return r;
    } while (strcmp(cursor, "0") != 0);
    return TC_OK;
}

/* Shared by prefix and pattern invalidation: L1 first, L2 by SCAN, then
 * the message, then L1 again (fills that raced with the deletion). */
static tc_result invalidate_matching(tc_cache *c, tc__msg_kind kind,
                                     const char *arg, size_t alen)
{
    char *match;
    size_t mlen;
    tc_result r;
    redisReply *exec = NULL;
    const void *keys[1] = {arg};

    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    match = malloc(2 * (c->cfg.prefix_len + alen) + 2);
    if (!match)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    mlen = glob_escape(c->cfg.prefix, c->cfg.prefix_len, match);
    if (kind == TC__MSG_PREFIX) {
        mlen += glob_escape(arg, alen, match + mlen);
        match[mlen++] = '*';
        tc__l1_invalidate_prefix(c->l1, arg, alen);
    } else {
        memcpy(match + mlen, arg, alen);
        mlen += alen;
        tc__l1_invalidate_glob(c->l1, arg, alen);
    }
    r = scan_unlink(c, match, mlen);
    free(match);
    if (r == TC_OK) {
        r = write_publish(c, 0, NULL, kind, 1, keys, &alen,
                          write_is_strict(c, 0), &exec);
        if (r == TC_OK)
            freeReplyObject(exec);
    }
    if (kind == TC__MSG_PREFIX)
        tc__l1_invalidate_prefix(c->l1, arg, alen);
    else
        tc__l1_invalidate_glob(c->l1, arg, alen);
    return r;
}

tc_result tc_invalidate_prefix(tc_cache *c, const void *prefix, size_t plen)
{
    if (!c || (!prefix && plen))
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    if (plen == 0)
        return tc__fail(TC_BAD_ARGUMENT,
                        "empty prefix: use tc_invalidate_all()");
    if (plen > c->cfg.max_key)
        return tc__fail(TC_TOO_LARGE, "prefix longer than max_key_bytes");
    return invalidate_matching(c, TC__MSG_PREFIX, prefix, plen);
}

tc_result tc_invalidate_pattern(tc_cache *c, const char *glob)
{
    size_t n;
    if (!c || !glob || !*glob)
        return tc__fail(TC_BAD_ARGUMENT, "NULL or empty pattern");
    n = strlen(glob);
    if (n > c->cfg.max_key)
        return tc__fail(TC_TOO_LARGE, "pattern longer than max_key_bytes");
    return invalidate_matching(c, TC__MSG_PATTERN, glob, n);
}

tc_result tc_invalidate_all(tc_cache *c)
{
    tc_result r = TC_OK;
    redisReply *exec = NULL;
    if (!c)
        return tc__fail(TC_BAD_ARGUMENT, "NULL cache");
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    tc__l1_clear(c->l1);
    if (c->bus) {
        r = write_publish(c, 0, NULL, TC__MSG_ALL, 0, NULL, NULL,
                          write_is_strict(c, 0), &exec);
        if (r == TC_OK)
            freeReplyObject(exec);
    }
    tc__l1_clear(c->l1);
    return r;
}

/* ------------------------------------------------------------------ */
/* Stats, health, test hooks                                           */
/* ------------------------------------------------------------------ */

void tc_cache_stats(tc_cache *c, tc_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    out->l2_hits = atomic_load(&c->l2_hits);
    out->l2_misses = atomic_load(&c->l2_misses);
    out->loader_calls = atomic_load(&c->loader_calls);
    out->l1_bypassed = atomic_load(&c->l1_bypassed);
    if (c->l1)
        tc__l1_stats(c->l1, out);
    if (c->l2)
        tc__l2_stats(c->l2, out);
    if (c->bus)
        tc__bus_stats(c->bus, out);
}

tc_result tc_cache_health(tc_cache *c, tc_health *out)
{
    tc_result r;
    redisReply *rep;
    uint64_t t0;
    const char *a[1] = {"PING"};
    tc__cmd cmd = {1, a, NULL};
    if (!c || !out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    memset(out, 0, sizeof(*out));
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    out->breaker_open = tc__l2_breaker_open(c->l2);
    out->bus_up = c->bus && tc__bus_l1_ok(c->bus, tc__now_ns());
    t0 = tc__now_ns();
    r = tc__l2_run(c->l2, 1, &cmd, &rep,
                   TC__L2_IGNORE_BREAKER | TC__L2_IDEMPOTENT);
    if (r != TC_OK)
        return r;
    out->l2_latency_us = (tc__now_ns() - t0) / 1000;
    out->l2_up = rep->type == REDIS_REPLY_STATUS;
    if (!out->l2_up)
        r = tc__fail(TC_PROTOCOL, "PING: %.*s", (int)rep->len, rep->str);
    freeReplyObject(rep);
    return r;
}

void tc__cache_set_fill_hook(tc_cache *c, tc__fill_hook_fn fn, void *arg)
{
    c->fill_hook_arg = arg;
    c->fill_hook = fn;
}

uint64_t tc__cache_bus_generation(tc_cache *c)
{
    return c->bus ? tc__bus_generation(c->bus) : 0;
}

int tc__cache_l1_servable(tc_cache *c)
{
    return c->l1 && l1_servable(c, tc__now_ns());
}

tc_value *tc__cache_l1_contents(tc_cache *c, const void *key, size_t klen)
{
    return c->l1 ? tc__l1_get(c->l1, tc__hash(key, klen), key, klen,
                              tc__now_ns())
                 : NULL;
}
