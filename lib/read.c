/*
 * Reads: L1 when it may be served, else L2 (GET with PTTL in one round
 * trip, so L1 never outlives the L2 entry), filling L1 under the key's
 * generation so an old value fetched before an invalidation never enters L1
 * after it.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "compress.h"
#include "stamps.h"

/* Interpret a GET + PTTL reply pair and fill L1 (guarded by `gen`); `t0`
 * is when the request was sent: the PTTL counts from no earlier. */
tc_result tc__take_l2_value(tc_cache *c, uint64_t h, const void *key,
                               size_t klen, uint64_t gen, uint64_t t0,
                               redisReply *val, redisReply *ttl,
                               tc_value **out)
{
    uint64_t l1_ttl = c->cfg.l1_ttl_ms;
    const void *v;
    size_t vlen;
    void *zbuf;
    tc_result r;
    *out = NULL;
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
    /* L1 keeps the value as the caller gave it. */
    if ((r = tc__z_decode(c, val->str, val->len, &v, &vlen, &zbuf)) != TC_OK)
        return r;
    if (c->fill_hook)
        c->fill_hook(c->fill_hook_arg, key, klen);
    /* L1 never outlives the L2 entry. */
    if (ttl->type == REDIS_REPLY_INTEGER && ttl->integer >= 0 &&
        (uint64_t)ttl->integer < l1_ttl)
        l1_ttl = (uint64_t)ttl->integer;
    if (ttl->type == REDIS_REPLY_INTEGER && ttl->integer != -2 && l1_ttl > 0)
        tc__l1_fill_ttl(c, h, key, klen, v, vlen, t0, l1_ttl, gen, 0, out);
    if (!*out && !(*out = tc__value_new(v, vlen)))
        r = tc__fail(TC_NO_MEMORY, "out of memory");
    free(zbuf);
    return r;
}

tc_result tc__read_l2(tc_cache *c, uint64_t h, const void *key, size_t klen,
                      uint64_t gen, tc__l2_read *rd, tc_value **out)
{
    tc__pkey k, nk, sk;
    redisReply *rep[5];
    tc_result r;
    char field[8];
    size_t flen = tc__stamp_field(h, field), n, first;
    int neg = rd && rd->ask_negative;
    uint64_t t0 = tc__now_ns();
    if ((r = tc__pkey_make(c, key, klen, &k)) != TC_OK)
        return r;
    if ((r = tc__stamps_key(c, k.p, k.len, &sk)) != TC_OK) {
        tc__pkey_free(&k);
        return r;
    }
    if (neg && (r = tc__neg_key(c, k.p, k.len, &nk)) != TC_OK) {
        tc__pkey_free(&k);
        tc__pkey_free(&sk);
        return r;
    }
    {
        /* The stamps first: a write between them and the GET can only make
         * the stamps older than the value (a refused store, a fail-safe copy
         * dropped for nothing), never newer. */
        const char *a3[4] = {"HMGET", sk.p, field, "all"};
        const char *a1[2] = {"GET", k.p}, *a2[2] = {"PTTL", k.p};
        const char *a4[2] = {"GET", neg ? nk.p : ""};
        const char *a5[2] = {"PTTL", neg ? nk.p : ""};
        size_t l3[4] = {5, sk.len, flen, 3};
        size_t l1[2] = {3, k.len}, l2[2] = {4, k.len};
        size_t l4[2] = {3, neg ? nk.len : 0}, l5[2] = {4, neg ? nk.len : 0};
        tc__cmd cmds[5] = {{4, a3, l3}, {2, a1, l1}, {2, a2, l2},
                           {2, a4, l4}, {2, a5, l5}};
        n = neg ? 5 : 3;
        first = rd ? 0 : 1; /* without `rd`: GET and PTTL only */
        r = tc__l2_run(c->l2, n - first, cmds + first, rep + first,
                       TC__L2_IDEMPOTENT);
    }
    tc__pkey_free(&k);
    tc__pkey_free(&sk);
    if (neg)
        tc__pkey_free(&nk);
    if (r != TC_OK)
        return r;
    if (rd) {
        tc__stamps *st = &rd->stamps;
        rd->negative = 0;
        memcpy(st->field, field, flen + 1);
        st->field_len = flen;
        tc__stamps_take(rep[0], st);
        rd->pttl = rep[2]->type == REDIS_REPLY_INTEGER ? rep[2]->integer : -2;
        rd->t0_ns = t0;
        if (neg) {
            rd->negative = rep[1]->type == REDIS_REPLY_NIL &&
                           tc__neg_valid(rep[3], st);
            rd->neg_pttl =
                rep[4]->type == REDIS_REPLY_INTEGER ? rep[4]->integer : -2;
        }
    }
    r = tc__take_l2_value(c, h, key, klen, gen, t0, rep[1], rep[2], out);
    for (size_t i = first; i < n; i++)
        freeReplyObject(rep[i]);
    return r;
}

/* Checks shared by the single-key reads; TC_OK means: go and look. */
static tc_result begin_read(tc_cache *c, const void *key, size_t klen,
                            tc_value **out)
{
    tc_result r;
    if ((r = tc__check_key(c, key, klen)) != TC_OK)
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
    if ((*out = tc__l1_lookup(c, h, key, klen)))
        return TC_OK;
    /* The generation is read before asking L2: an invalidation applied
     * after this point makes the fill refuse the (possibly old) value. */
    return tc__read_l2(c, h, key, klen, tc__l1_gen(c->l1, h), NULL, out);
}

tc_result tc_peek(tc_cache *c, const void *key, size_t klen, tc_value **out)
{
    tc_result r;
    if ((r = begin_read(c, key, klen, out)) != TC_OK)
        return r;
    *out = tc__l1_lookup_peek(c, tc__hash(key, klen), key, klen,
                              TC__L1_COUNT_HIT);
    return *out ? TC_OK : TC_NOT_FOUND;
}

tc_result tc_mpeek(tc_cache *c, size_t n, const void *const *keys,
                   const size_t *klens, tc_value **out)
{
    tc_result r;
    size_t i;
    if (!out || (n && (!keys || !klens)))
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    for (i = 0; i < n; i++) {
        if ((r = begin_read(c, keys[i], klens[i], &out[i])) != TC_OK)
            break;
        /* Nothing counted yet: a miss sends the whole read to tc_mget,
         * which counts every key once. */
        if (!(out[i] = tc__l1_lookup_peek(c, tc__hash(keys[i], klens[i]),
                                          keys[i], klens[i], 0))) {
            r = TC_NOT_FOUND;
            break;
        }
    }
    if (i == n) {
        tc__l1_count_hits(c->l1, n);
        return TC_OK;
    }
    while (i--)
        tc_value_release(out[i]);
    for (i = 0; i < n; i++)
        out[i] = NULL;
    return r;
}

/* The L2 half of tc_mget: every miss in one pipelined round trip. Sets
 * res[] of every miss, whatever happens. */
static tc_result mget_l2(tc_cache *c, const void *const *keys,
                         const size_t *klens, const uint64_t *hs,
                         const size_t *miss, size_t nmiss, tc_value **out,
                         tc_result *res)
{
    uint64_t *gens = malloc(nmiss * sizeof(*gens));
    tc__pkey *pk = malloc(nmiss * sizeof(*pk));
    tc__cmd *cmds = malloc(2 * nmiss * sizeof(*cmds));
    const char **argv = malloc(4 * nmiss * sizeof(*argv));
    size_t *argl = malloc(4 * nmiss * sizeof(*argl));
    redisReply **rep = malloc(2 * nmiss * sizeof(*rep));
    size_t made = 0;
    uint64_t t0 = 0;
    tc_result r = TC_OK, first = TC_OK;

    if (!gens || !pk || !cmds || !argv || !argl || !rep)
        r = tc__fail(TC_NO_MEMORY, "out of memory");
    for (; r == TC_OK && made < nmiss; made++) {
        size_t i = miss[made], j = made;
        gens[j] = tc__l1_gen(c->l1, hs[i]);
        if ((r = tc__pkey_make(c, keys[i], klens[i], &pk[j])) != TC_OK)
            break;
        argv[4 * j] = "GET", argl[4 * j] = 3;
        argv[4 * j + 1] = pk[j].p, argl[4 * j + 1] = pk[j].len;
        argv[4 * j + 2] = "PTTL", argl[4 * j + 2] = 4;
        argv[4 * j + 3] = pk[j].p, argl[4 * j + 3] = pk[j].len;
        cmds[2 * j] = (tc__cmd){2, argv + 4 * j, argl + 4 * j};
        cmds[2 * j + 1] = (tc__cmd){2, argv + 4 * j + 2, argl + 4 * j + 2};
    }
    if (r == TC_OK) {
        t0 = tc__now_ns();
        r = tc__l2_run(c->l2, 2 * nmiss, cmds, rep, TC__L2_IDEMPOTENT);
    }
    for (size_t m = 0; m < nmiss; m++) {
        size_t i = miss[m];
        if (r != TC_OK) {
            res[i] = r;
            continue;
        }
        res[i] = tc__take_l2_value(c, hs[i], keys[i], klens[i], gens[m], t0,
                               rep[2 * m], rep[2 * m + 1], &out[i]);
        freeReplyObject(rep[2 * m]);
        freeReplyObject(rep[2 * m + 1]);
        if (res[i] != TC_OK && res[i] != TC_NOT_FOUND && first == TC_OK)
            first = res[i];
    }
    for (size_t m = 0; pk && m < made; m++)
        tc__pkey_free(&pk[m]);
    free(gens);
    free(pk);
    free(cmds);
    free(argv);
    free(argl);
    free(rep);
    return r != TC_OK ? r : first;
}

tc_result tc_mget(tc_cache *c, size_t n, const void *const *keys,
                  const size_t *klens, tc_value **out, tc_result *res)
{
    size_t nmiss = 0, *miss;
    uint64_t *hs;
    tc_result r, first = TC_OK;

    if (!c || (n && (!keys || !klens || !out || !res)))
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        res[i] = tc__check_key(c, keys[i], klens[i]);
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
        free(miss);
        free(hs);
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        for (size_t i = 0; i < n; i++)
            res[i] = r; /* nothing was answered */
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        hs[i] = tc__hash(keys[i], klens[i]);
        if ((out[i] = tc__l1_lookup(c, hs[i], keys[i], klens[i])))
            res[i] = TC_OK;
        else
            miss[nmiss++] = i;
    }
    r = nmiss ? mget_l2(c, keys, klens, hs, miss, nmiss, out, res) : TC_OK;
    free(miss);
    free(hs);
    return r;
}

tc_result tc_pttl(tc_cache *c, const void *key, size_t klen, int64_t *ttl_ms)
{
    tc_result r;
    tc__pkey k;
    redisReply *rep;
    if ((r = tc__check_key(c, key, klen)) != TC_OK)
        return r;
    if (!ttl_ms)
        return tc__fail(TC_BAD_ARGUMENT, "NULL ttl_ms");
    if (!c->cfg.enabled)
        return TC_NOT_FOUND;
    if ((r = tc__pkey_make(c, key, klen, &k)) != TC_OK)
        return r;
    {
        const char *a[2] = {"PTTL", k.p};
        size_t l[2] = {4, k.len};
        tc__cmd cmd = {2, a, l};
        r = tc__l2_run(c->l2, 1, &cmd, &rep, TC__L2_IDEMPOTENT);
    }
    tc__pkey_free(&k);
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
