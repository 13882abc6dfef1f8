/* Stats (counters gathered from every part) and health (a PING). */
#include <string.h>

#include "cache.h"
#include "ratelocal.h"

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
    out->l1_too_large = atomic_load(&c->l1_too_large);
    out->rate_fallbacks = atomic_load(&c->rate_fallbacks);
    out->values_compressed = atomic_load(&c->values_compressed);
    out->values_decompressed = atomic_load(&c->values_decompressed);
    out->rate_local_evictions =
        tc__ratelocal_evictions(atomic_load(&c->ratelocal));
    out->stale_served = atomic_load(&c->stale_served);
    out->loader_timeouts = atomic_load(&c->loader_timeouts);
    out->eager_refreshes = atomic_load(&c->eager_refreshes);
    out->negative_hits = atomic_load(&c->negative_hits);
    out->lock_waits = atomic_load(&c->lock_waits);
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
    out->bus_up = c->bus && tc__bus_up(c->bus, tc__now_ns());
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
