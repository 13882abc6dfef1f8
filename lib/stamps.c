/* Stamps: the L2-side guard of read-through stores (see stamps.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "compress.h"
#include "stamps.h"

/* KEYS: key, stamps. ARGV: value, px ('' = none), field, key stamp ('' =
 * absent), all stamp ('' = absent). 1 stored, 0 refused. */
static const char store_script[] =
    "local s = redis.call('HMGET', KEYS[2], ARGV[3], 'all') "
    "if (s[1] or '') ~= ARGV[4] or (s[2] or '') ~= ARGV[5] then return 0 end "
    "local r "
    "if ARGV[2] == '' then r = redis.call('SET', KEYS[1], ARGV[1], 'NX') "
    "else r = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') end "
    "if r then return 1 end "
    "return 0";

size_t tc__stamp_field(uint64_t h, char *buf)
{
    /* Bits 40.. of the hash: independent of the L1 shard and slot bits. */
    return (size_t)snprintf(buf, 8, "b%u",
                            (unsigned)((h >> 40) % TC__STAMP_BUCKETS));
}

size_t tc__stamp_new(tc_cache *c, char *buf)
{
    unsigned long long n = atomic_fetch_add(&c->stamp_seq, 1) + 1;
    return (size_t)snprintf(buf, TC__STAMP_MAX, "%s:%llu", c->id, n);
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
    char px[24] = "";
    size_t pxlen = 0;
    redisReply *rep;
    int stored;
    void *zbuf;
    if (!s->ok)
        return 0;
    if (tc__z_encode(c, val, vlen, &val, &vlen, &zbuf) != TC_OK)
        return -1;
    if (l2_ttl_ms != TC_TTL_NONE)
        pxlen = (size_t)snprintf(px, sizeof(px), "%llu",
                                 (unsigned long long)l2_ttl_ms);
    {
        const char *a[10] = {"EVAL", store_script, "2", pk, c->stamps_key,
                             val, px, s->field, s->key, s->all};
        size_t l[10] = {4, sizeof(store_script) - 1, 1, pklen,
                        strlen(c->stamps_key), vlen, pxlen, s->field_len,
                        strlen(s->key), strlen(s->all)};
        tc__cmd cmd = {10, a, l};
        tc_result r = tc__l2_run(c->l2, 1, &cmd, &rep, 0);
        free(zbuf);
        if (r != TC_OK)
            return -1;
    }
    stored = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    if (rep->type == REDIS_REPLY_ERROR)
        tc__fail(TC_PROTOCOL, "read-through store: %.*s", (int)rep->len,
                 rep->str);
    freeReplyObject(rep);
    return stored;
}

int tc__stamps_bump_all(tc_cache *c)
{
    char stamp[TC__STAMP_MAX];
    size_t slen = tc__stamp_new(c, stamp);
    redisReply *rep;
    const char *a[4] = {"HSET", c->stamps_key, "all", stamp};
    size_t l[4] = {4, strlen(c->stamps_key), 3, slen};
    tc__cmd cmd = {4, a, l};
    tc_result r = tc__l2_run(c->l2, 1, &cmd, &rep, 0);
    if (r != TC_OK)
        return r;
    if (rep->type == REDIS_REPLY_ERROR)
        r = tc__fail(TC_PROTOCOL, "HSET stamps: %.*s", (int)rep->len, rep->str);
    freeReplyObject(rep);
    return r;
}
