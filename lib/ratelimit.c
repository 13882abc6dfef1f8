/*
 * Rate limiting: one script per check, atomic on Redis and timed by Redis's
 * clock, so every instance counts against the same limit. While Redis is
 * down the per-process limiter (ratelocal.c) decides and says so.
 *
 * Sliding (exact): a sorted set per limit, one member per allowed request
 * scored by its time; old members are trimmed, the rest counted, and a
 * request is added only when it is allowed. Fixed: INCR with PEXPIRE on
 * the first request of a window.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "ratelocal.h"

/* KEYS: the limit's sorted set. ARGV: limit, window ms, unique member.
 * Returns {allowed, remaining, reset ms}. TIME makes the script
 * non-deterministic: replicate its effects (default since Redis 5). */
static const char sliding_script[] =
    "if redis.replicate_commands then redis.replicate_commands() end "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local limit, w = tonumber(ARGV[1]), tonumber(ARGV[2]) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - w) "
    "local n = redis.call('ZCARD', KEYS[1]) "
    "local ok = 0 "
    "if n < limit then "
    "  redis.call('ZADD', KEYS[1], now, ARGV[3]) "
    "  redis.call('PEXPIRE', KEYS[1], w) "
    "  n = n + 1 ok = 1 "
    "end "
    "local reset = 0 "
    "local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES') "
    "if first[2] then reset = tonumber(first[2]) + w - now end "
    "if reset < 0 then reset = 0 end "
    "return {ok, limit - n, reset}";

/* KEYS: the limit's counter. ARGV: limit, window ms. A denied request is
 * not counted; a counter without a TTL (left by hand) gets one. */
static const char fixed_script[] =
    "local limit, w = tonumber(ARGV[1]), tonumber(ARGV[2]) "
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "local ok = 0 "
    "if n < limit then "
    "  n = redis.call('INCR', KEYS[1]) ok = 1 "
    "  if n == 1 then redis.call('PEXPIRE', KEYS[1], w) end "
    "end "
    "local ttl = redis.call('PTTL', KEYS[1]) "
    "if ttl < 0 then redis.call('PEXPIRE', KEYS[1], w) ttl = w end "
    "if n > limit then n = limit end "
    "return {ok, limit - n, ttl}";

static tc__ratelocal *local_table(tc_cache *c)
{
    tc__ratelocal *t = atomic_load(&c->ratelocal), *expect = NULL;
    if (t)
        return t;
    if (!(t = tc__ratelocal_create()))
        return NULL;
    if (!atomic_compare_exchange_strong(&c->ratelocal, &expect, t)) {
        tc__ratelocal_destroy(t); /* another thread made it first */
        t = expect;
    }
    return t;
}

static tc_result decide_locally(tc_cache *c, const void *key, size_t klen,
                                uint64_t limit, uint64_t window_ms,
                                tc_rate_algo algo, tc_rate_result *out)
{
    tc__ratelocal *t = local_table(c);
    uint64_t id = tc__hash(key, klen) ^ (algo == TC_RATE_FIXED
                                             ? 0x9e3779b97f4a7c15ULL
                                             : 0);
    if (!t)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    tc__ratelocal_decide(t, id, limit, window_ms, algo,
                         tc__now_ns() / 1000000, out);
    atomic_fetch_add_explicit(&c->rate_fallbacks, 1, memory_order_relaxed);
    return TC_OK;
}

/* Read {allowed, remaining, reset} from the script's reply. */
static tc_result take_reply(const redisReply *rep, tc_rate_result *out)
{
    if (rep->type == REDIS_REPLY_ERROR)
        return tc__fail(TC_PROTOCOL, "rate limit: %.*s", (int)rep->len,
                        rep->str);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return tc__fail(TC_PROTOCOL, "rate limit: unexpected reply");
    for (size_t i = 0; i < 3; i++)
        if (rep->element[i]->type != REDIS_REPLY_INTEGER ||
            rep->element[i]->integer < 0)
            return tc__fail(TC_PROTOCOL, "rate limit: unexpected reply");
    out->allowed = rep->element[0]->integer == 1;
    out->remaining = (uint64_t)rep->element[1]->integer;
    out->reset_ms = (uint64_t)rep->element[2]->integer;
    return TC_OK;
}

tc_result tc_rate_limit_ex(tc_cache *c, const void *key, size_t klen,
                           uint64_t limit, uint64_t window_ms,
                           tc_rate_algo algo, tc_rate_result *out)
{
    static const char ns_sliding[] = "__tiercache:rl:";
    static const char ns_fixed[] = "__tiercache:rlf:";
    const char *ns = algo == TC_RATE_FIXED ? ns_fixed : ns_sliding;
    size_t nslen = strlen(ns), pklen;
    char lim[24], win[24], member[TC__STAMP_MAX], *pk;
    redisReply *rep;
    tc_result r;

    if ((r = tc__check_key(c, key, klen)) != TC_OK)
        return r;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    memset(out, 0, sizeof(*out));
    if (algo != TC_RATE_SLIDING && algo != TC_RATE_FIXED)
        return tc__fail(TC_BAD_ARGUMENT, "unknown rate limit algorithm %d",
                        (int)algo);
    if (limit < 1 || limit > TC_RATE_LIMIT_MAX)
        return tc__fail(TC_BAD_ARGUMENT, "limit must be 1..%u",
                        TC_RATE_LIMIT_MAX);
    if (window_ms < 1 || window_ms > TC_TTL_MAX_MS)
        return tc__fail(TC_BAD_ARGUMENT, "window_ms must be 1..%llu",
                        (unsigned long long)TC_TTL_MAX_MS);
    if (!c->l2)
        return decide_locally(c, key, klen, limit, window_ms, algo, out);

    pklen = c->cfg.prefix_len + nslen + klen;
    if (!(pk = malloc(pklen)))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    memcpy(pk, c->cfg.prefix, c->cfg.prefix_len);
    memcpy(pk + c->cfg.prefix_len, ns, nslen);
    memcpy(pk + c->cfg.prefix_len + nslen, key, klen);
    {
        const char *script = algo == TC_RATE_FIXED ? fixed_script
                                                   : sliding_script;
        const char *a[7] = {"EVAL", script, "1", pk, lim, win, member};
        size_t l[7] = {4, strlen(script), 1, pklen,
                       (size_t)snprintf(lim, sizeof(lim), "%llu",
                                        (unsigned long long)limit),
                       (size_t)snprintf(win, sizeof(win), "%llu",
                                        (unsigned long long)window_ms),
                       0};
        tc__cmd cmd = {algo == TC_RATE_FIXED ? 6 : 7, a, l};
        l[6] = tc__stamp_new(c, member); /* "<instance>:<n>": unique */
        r = tc__l2_run(c->l2, 1, &cmd, &rep, 0);
    }
    free(pk);
    if (r == TC_L2_UNAVAILABLE || r == TC_TIMEOUT)
        return decide_locally(c, key, klen, limit, window_ms, algo, out);
    if (r != TC_OK)
        return r;
    r = take_reply(rep, out);
    freeReplyObject(rep);
    return r;
}

tc_result tc_rate_limit(tc_cache *c, const void *key, size_t klen,
                        uint64_t limit, uint64_t window_ms,
                        tc_rate_result *out)
{
    return tc_rate_limit_ex(c, key, klen, limit, window_ms, TC_RATE_SLIDING,
                            out);
}
