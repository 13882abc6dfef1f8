/*
 * Read-through: L1, then L2, then the caller's loader, whose value is
 * stored in L2 only if no write or delete of the key happened since the
 * leader's L2 miss (stamps.c), and in L1 under the generation read before
 * the miss. Concurrent misses of one key in this process share one load
 * (flight.c), but never across an invalidation.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "stamps.h"

/* Store a loaded value in L2 (guarded by the stamps read with the miss),
 * then in L1 guarded by `gen`, only when the L2 store happened. */
static void store_loaded(tc_cache *c, uint64_t h, const void *key, size_t klen,
                         uint64_t gen, const tc__stamps *stamps,
                         const void *val, size_t vlen, uint64_t ttl_ms,
                         tc_value **out)
{
    tc__pkey k;
    uint64_t l2_ttl = ttl_ms ? ttl_ms : c->cfg.default_ttl_ms;
    uint64_t l1_ttl = c->cfg.l1_ttl_ms, t0;
    if (vlen > c->cfg.max_value || tc__pkey_make(c, key, klen, &k) != TC_OK)
        return;
    if (l2_ttl != TC_TTL_NONE && l1_ttl > l2_ttl)
        l1_ttl = l2_ttl;
    t0 = tc__now_ns();
    if (tc__stamps_store(c, k.p, k.len, val, vlen, l2_ttl, stamps) == 1)
        tc__l1_fill_ttl(c, h, key, klen, val, vlen, t0, l1_ttl, gen, 0, out);
    tc__pkey_free(&k);
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

/* The leader's work: L2, then the loader. On TC_OK *v is a reference. */
static tc_result lead(tc_cache *c, uint64_t h, const void *key, size_t klen,
                      uint64_t gen, tc_loader_fn loader, void *ud,
                      uint64_t ttl_ms, tc_value **v)
{
    tc__stamps stamps;
    void *val = NULL;
    size_t vlen = 0;
    int l2_ok;
    tc_result r = tc__read_l2(c, h, key, klen, gen, &stamps, v);
    if (r == TC_OK || (r != TC_NOT_FOUND && r != TC_L2_UNAVAILABLE &&
                       r != TC_TIMEOUT && r != TC_PROTOCOL))
        return r;
    l2_ok = r == TC_NOT_FOUND;
    r = run_loader(c, loader, ud, key, klen, &val, &vlen);
    if (c->load_hook)
        c->load_hook(c->load_hook_arg, key, klen);
    if (r == TC_OK) {
        /* Graceful fallback: with L2 down the value is still served, but
         * not cached anywhere (no invalidation could reach it). */
        if (l2_ok)
            store_loaded(c, h, key, klen, gen, &stamps, val ? val : "", vlen,
                         ttl_ms, v);
        if (!*v && !(*v = tc__value_new(val, vlen)))
            r = tc__fail(TC_NO_MEMORY, "out of memory");
    }
    free(val);
    return r;
}

tc_result tc_get_or_load(tc_cache *c, const void *key, size_t klen,
                         tc_loader_fn loader, void *ud, uint64_t ttl_ms,
                         tc_value **out)
{
    tc_result r;
    uint64_t h, gen;
    tc__flight *f;
    tc_value *v = NULL;
    int role;

    if ((r = tc__check_key(c, key, klen)) != TC_OK)
        return r;
    if (!out || !loader)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out or loader");
    *out = NULL;
    if (!c->cfg.enabled) {
        void *val;
        size_t vlen;
        if ((r = run_loader(c, loader, ud, key, klen, &val, &vlen)) != TC_OK)
            return r;
        *out = tc__value_new(val, vlen);
        free(val);
        return *out ? TC_OK : tc__fail(TC_NO_MEMORY, "out of memory");
    }
    h = tc__hash(key, klen);
    if ((*out = tc__l1_lookup(c, h, key, klen)))
        return TC_OK;

    /* Read before joining: the flight we may join must have started at
     * this generation, i.e. after every invalidation we have applied. */
    gen = tc__l1_gen(c->l1, h);
    role = tc__flight_join(c->flights, h, key, klen, gen, &f);
    if (role < 0)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if (role == 0)
        return tc__flight_wait(c->flights, f, out);
    r = lead(c, h, key, klen, gen, loader, ud, ttl_ms, &v);
    tc__flight_finish(c->flights, f, r, v);
    *out = r == TC_OK ? v : NULL;
    if (r != TC_OK)
        tc_value_release(v);
    return r;
}
