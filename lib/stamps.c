/* Stamps: the L2-side guard of read-through stores (see stamps.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "compress.h"
#include "stamps.h"
#include "slot.h"

/* KEYS: key, stamps, negative marker. ARGV: value, px ('' = none), field,
 * key stamp ('' = absent), all stamp ('' = absent), mode: "nx" stores the
 * value if the key is absent (a load), "over" stores it whatever is there
 * (a refresh: the stamps say no write happened since it read them), "neg"
 * stores the marker "<key stamp>\n<all stamp>" if the key is absent (a
 * cached "not found", valid while the stamps stay as they are). 1 stored,
 * 0 refused. */
static const char store_script[] =
    "local s = redis.call('HMGET', KEYS[2], ARGV[3], 'all') "
    "if (s[1] or '') ~= ARGV[4] or (s[2] or '') ~= ARGV[5] then return 0 end "
    "local k, v, nx = KEYS[1], ARGV[1], ARGV[6] ~= 'over' "
    "if ARGV[6] == 'neg' then "
    "  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
    "  k, v, nx = KEYS[3], ARGV[4] .. '\\n' .. ARGV[5], false "
    "end "
    "local a = {'SET', k, v} "
    "if ARGV[2] ~= '' then a[4] = 'PX' a[5] = ARGV[2] end "
    "if nx then a[#a + 1] = 'NX' end "
    "if redis.call(unpack(a)) then return 1 end "
    "return 0";

/* Decimal digits of `v` at `out` (room for 20); their count. Every write
 * formats two of these: snprintf cost more than the rest of the stamp. */
static size_t put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t tc__stamp_field(uint64_t h, char *buf)
{
    /* Bits 40.. of the hash: independent of the L1 shard and slot bits.
     * "b<n>", n < TC__STAMP_BUCKETS (4 digits): fits the 8 bytes. */
    size_t n = 1;
    buf[0] = 'b';
    n += put_u64(buf + 1, (h >> 40) % TC__STAMP_BUCKETS);
    buf[n] = '\0';
    return n;
}

size_t tc__stamp_new(tc_cache *c, char *buf)
{
    unsigned long long s = atomic_fetch_add(&c->stamp_seq, 1) + 1;
    size_t n = strlen(c->id);
    /* "<id>:<counter>": the id is at most TC__ORIGIN_MAX (< 40) bytes. */
    if (n + 1 + 20 + 1 > TC__STAMP_MAX)
        return (size_t)snprintf(buf, TC__STAMP_MAX, "%s:%llu", c->id, s);
    memcpy(buf, c->id, n);
    buf[n++] = ':';
    n += put_u64(buf + n, s);
    buf[n] = '\0';
    return n;
}

static int take_one(const redisReply *r, char *out)
{
    out[0] = '\0';
    if (r->type == REDIS_REPLY_NIL)
        return 1;
    if (r->type != REDIS_REPLY_STRING || r->len >= TC__STAMP_MAX)
        return 0;
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return 1;
}

void tc__stamps_take(const redisReply *r, tc__stamps *out)
{
    out->ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              take_one(r->element[0], out->key) &&
              take_one(r->element[1], out->all);
}

int tc__stamps_store(tc_cache *c, const char *pk, size_t pklen,
                     const void *val, size_t vlen, uint64_t l2_ttl_ms,
                     const tc__stamps *s)
{
    return tc__stamps_store_mode(c, pk, pklen, val, vlen, l2_ttl_ms, s,
                                 TC__STORE_NX);
}

int tc__stamps_store_mode(tc_cache *c, const char *pk, size_t pklen,
                          const void *val, size_t vlen, uint64_t l2_ttl_ms,
                          const tc__stamps *s, int mode)
{
    static const char *const modes[] = {"nx", "over", "neg"};
    char px[24] = "";
    size_t pxlen = 0;
    redisReply *rep;
    tc__pkey nk, sk;
    int stored;
    void *zbuf;
    tc_result r;
    if (!s->ok)
        return 0;
    if (tc__z_encode(c, val, vlen, &val, &vlen, &zbuf) != TC_OK)
        return -1;
    if (l2_ttl_ms != TC_TTL_NONE)
        pxlen = (size_t)snprintf(px, sizeof(px), "%llu",
                                 (unsigned long long)l2_ttl_ms);
    if (tc__neg_key(c, pk, pklen, &nk) != TC_OK) {
        free(zbuf);
        return -1;
    }
    if (tc__stamps_key(c, pk, pklen, &sk) != TC_OK) {
        tc__pkey_free(&nk);
        free(zbuf);
        return -1;
    }
    {
        const char *a[12] = {"EVAL", store_script, "3", pk, sk.p,
                             nk.p, val, px, s->field, s->key, s->all,
                             modes[mode]};
        size_t l[12] = {4, sizeof(store_script) - 1, 1, pklen,
                        sk.len, nk.len, vlen, pxlen,
                        s->field_len, strlen(s->key), strlen(s->all),
                        strlen(modes[mode])};
        tc__cmd cmd = {12, a, l};
        r = tc__l2_run(c->l2, 1, &cmd, &rep, 0);
        free(zbuf);
    }
    tc__pkey_free(&nk);
    tc__pkey_free(&sk);
    if (r != TC_OK)
        return -1;
    stored = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    if (rep->type == REDIS_REPLY_ERROR)
        tc__fail(TC_PROTOCOL, "read-through store: %.*s", (int)rep->len,
                 rep->str);
    freeReplyObject(rep);
    return stored;
}

int tc__stamps_read(tc_cache *c, uint64_t h, const void *key, size_t klen,
                    tc__stamps *out)
{
    redisReply *rep;
    tc_result r;
    tc__pkey k, sk;
    out->field_len = tc__stamp_field(h, out->field);
    out->ok = 0;
    if ((r = tc__pkey_make(c, key, klen, &k)) != TC_OK)
        return r;
    r = tc__stamps_key(c, k.p, k.len, &sk);
    tc__pkey_free(&k);
    if (r != TC_OK)
        return r;
    {
        const char *a[4] = {"HMGET", sk.p, out->field, "all"};
        size_t l[4] = {5, sk.len, out->field_len, 3};
        tc__cmd cmd = {4, a, l};
        r = tc__l2_run(c->l2, 1, &cmd, &rep, TC__L2_IDEMPOTENT);
    }
    tc__pkey_free(&sk);
    if (r != TC_OK)
        return r;
    tc__stamps_take(rep, out);
    freeReplyObject(rep);
    return TC_OK;
}

int tc__stamps_same(const tc__stamps *a, const tc__stamps *b)
{
    return a->ok && b->ok && strcmp(a->field, b->field) == 0 &&
           strcmp(a->key, b->key) == 0 && strcmp(a->all, b->all) == 0;
}

int tc__stamps_key(const tc_cache *c, const char *pk, size_t pklen,
                         tc__pkey *out)
{
    return tc__own_key(c, c->stamps_key, strlen(c->stamps_key), pk, pklen, 0,
                       out);
}

/* On a cluster the global stamp is a field of every slot's hash: replace
 * it in all TC__SLOTS of them, pipelined by node (l2_cluster.c), one
 * round trip per master. */
static int bump_all_slots(tc_cache *c, const char *stamp, size_t slen)
{
    size_t base = strlen(c->stamps_key), kl = base + TC__SLOT_TAG_MAX + 2;
    char *keys = malloc((size_t)TC__SLOTS * kl);
    const char **argv = malloc((size_t)TC__SLOTS * 4 * sizeof(*argv));
    size_t *argl = malloc((size_t)TC__SLOTS * 4 * sizeof(*argl));
    tc__cmd *cmds = malloc((size_t)TC__SLOTS * sizeof(*cmds));
    redisReply **rep = calloc(TC__SLOTS, sizeof(*rep));
    tc_result r = TC_OK;
    if (!keys || !argv || !argl || !cmds || !rep) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    for (unsigned s = 0; s < TC__SLOTS; s++) {
        char *k = keys + s * kl;
        const char **a = argv + 4 * s;
        size_t *l = argl + 4 * s;
        a[0] = "HSET", l[0] = 4;
        a[1] = k, l[1] = (size_t)snprintf(k, kl, "%s{%s}", c->stamps_key,
                                         tc__slot_tag(s));
        a[2] = "all", l[2] = 3;
        a[3] = stamp, l[3] = slen;
        cmds[s] = (tc__cmd){4, a, l};
    }
    if ((r = tc__l2_run(c->l2, TC__SLOTS, cmds, rep, 0)) != TC_OK)
        goto out;
    for (unsigned s = 0; s < TC__SLOTS; s++) {
        if (r == TC_OK && rep[s]->type == REDIS_REPLY_ERROR)
            r = tc__fail(TC_PROTOCOL, "HSET stamps: %.*s", (int)rep[s]->len,
                         rep[s]->str);
        freeReplyObject(rep[s]);
    }
out:
    free(keys);
    free(argv);
    free(argl);
    free(cmds);
    free(rep);
    return r;
}

int tc__stamps_bump_all(tc_cache *c)
{
    char stamp[TC__STAMP_MAX];
    size_t slen = tc__stamp_new(c, stamp);
    redisReply *rep;
    const char *a[4] = {"HSET", c->stamps_key, "all", stamp};
    size_t l[4] = {4, strlen(c->stamps_key), 3, slen};
    tc__cmd cmd = {4, a, l};
    tc_result r;
    if (c->cfg.cluster)
        return bump_all_slots(c, stamp, slen);
    r = tc__l2_run(c->l2, 1, &cmd, &rep, 0);
    if (r != TC_OK)
        return r;
    if (rep->type == REDIS_REPLY_ERROR)
        r = tc__fail(TC_PROTOCOL, "HSET stamps: %.*s", (int)rep->len, rep->str);
    freeReplyObject(rep);
    return r;
}
