/*
 * Read-through: L1, then L2, then the caller's loader, whose value is
 * stored in L2 only if no write or delete of the key happened since the
 * leader's L2 miss (stamps.c), and in L1 under the generation read before
 * the miss. Concurrent misses of one key in this process share one load
 * (flight.c), but never across an invalidation.
 *
 * tc_get_or_load_ex() adds, each off unless asked for: a cached "not
 * found" (negative.c), loader TTLs, fail-safe answers from the last-known
 * store (known.c), soft and hard timeouts (the load then runs on a
 * background thread, background.c, and the callers wait for its flight
 * with a deadline), eager refresh (refresh.c) and a load lock across
 * instances (stampede.c).
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "stamps.h"

/* tc_load_options, checked and with defaults applied. */
typedef struct lopts {
    uint64_t ttl_ms, stale_ms, neg_ttl_ms;
    uint32_t soft_ms, hard_ms, pct, lock_ms;
    int coordinate;
    int keep; /* record in the last-known store */
} lopts;

#define DEFAULT_LOCK_MS 5000

static tc_result resolve(const tc_cache *c, const tc_load_options *o,
                         lopts *lo)
{
    memset(lo, 0, sizeof(*lo));
    lo->ttl_ms = c->cfg.default_ttl_ms;
    if (!o)
        return TC_OK;
    for (size_t i = 0; i < sizeof(o->reserved_) / sizeof(o->reserved_[0]); i++)
        if (o->reserved_[i])
            return tc__fail(TC_BAD_ARGUMENT, "tc_load_options.reserved_ must "
                                             "be zero");
    if (o->reserved_u32_)
        return tc__fail(TC_BAD_ARGUMENT, "tc_load_options.reserved_u32_ must "
                                         "be zero");
    if (o->ttl_ms && o->ttl_ms != TC_TTL_NONE && o->ttl_ms > TC_TTL_MAX_MS)
        return tc__fail(TC_BAD_ARGUMENT, "ttl_ms above TC_TTL_MAX_MS");
    if (o->fail_safe_max_stale_ms > TC_TTL_MAX_MS ||
        o->negative_ttl_ms > TC_TTL_MAX_MS)
        return tc__fail(TC_BAD_ARGUMENT, "fail_safe_max_stale_ms or "
                                         "negative_ttl_ms above "
                                         "TC_TTL_MAX_MS");
    if (o->soft_timeout_ms > TC_TIMEOUT_MAX_MS ||
        o->hard_timeout_ms > TC_TIMEOUT_MAX_MS ||
        o->lock_ms > TC_TIMEOUT_MAX_MS)
        return tc__fail(TC_BAD_ARGUMENT, "a timeout or lock_ms above "
                                         "TC_TIMEOUT_MAX_MS");
    if (o->hard_timeout_ms && o->soft_timeout_ms > o->hard_timeout_ms)
        return tc__fail(TC_BAD_ARGUMENT, "soft_timeout_ms above "
                                         "hard_timeout_ms");
    if (o->eager_refresh_pct > 99)
        return tc__fail(TC_BAD_ARGUMENT, "eager_refresh_pct above 99");
    if (o->coordinate != TC_DEFAULT && o->coordinate != TC_YES &&
        o->coordinate != TC_NO)
        return tc__fail(TC_BAD_ARGUMENT, "coordinate: TC_YES or TC_NO");
    if (o->ttl_ms)
        lo->ttl_ms = o->ttl_ms;
    lo->stale_ms = o->fail_safe_max_stale_ms;
    lo->neg_ttl_ms = o->negative_ttl_ms;
    lo->soft_ms = o->soft_timeout_ms;
    lo->hard_ms = o->hard_timeout_ms;
    lo->pct = o->eager_refresh_pct;
    lo->coordinate = o->coordinate == TC_YES;
    lo->lock_ms = o->lock_ms ? o->lock_ms : DEFAULT_LOCK_MS;
    lo->keep = lo->stale_ms || lo->pct || lo->neg_ttl_ms;
    return TC_OK;
}

uint64_t tc__l1_ttl_for(const tc_cache *c, uint64_t l2_ttl)
{
    uint64_t l1_ttl = c->cfg.l1_ttl_ms;
    if (l2_ttl != TC_TTL_NONE && l1_ttl > l2_ttl)
        l1_ttl = l2_ttl;
    return l1_ttl;
}

tc_result tc__run_loader(tc_cache *c, const tc__loader *ld, const void *key,
                         size_t klen, void **val, size_t *vlen,
                         tc_load_ttl *ttl)
{
    tc_result r;
    *val = NULL;
    *vlen = 0;
    atomic_fetch_add(&c->loader_calls, 1);
    tc__fail(TC_OK, "%s", "");
    r = ld->ex ? ld->ex(ld->ud, key, klen, val, vlen, ttl)
               : ld->plain(ld->ud, key, klen, val, vlen);
    if (r == TC_OK && !*val && *vlen)
        r = tc__fail(TC_LOADER, "loader returned NULL with a length");
    else if (r != TC_OK && r != TC_NOT_FOUND && !tc_errmsg()[0])
        tc__fail(r, "loader failed: %s", tc_strerror(r));
    if (r == TC_STALE) /* never a loader's to give */
        r = tc__fail(TC_LOADER, "loader returned TC_STALE");
    if (r != TC_OK) {
        free(*val);
        *val = NULL;
    }
    if (!ttl->ttl_ms)
        ttl->ttl_ms = c->cfg.default_ttl_ms;
    if (!ld->ex) /* tc_get_or_load(): its TTL as given */
        return r;
    if (ttl->ttl_ms != TC_TTL_NONE && ttl->ttl_ms > TC_TTL_MAX_MS)
        ttl->ttl_ms = TC_TTL_MAX_MS;
    if (ttl->negative_ttl_ms > TC_TTL_MAX_MS)
        ttl->negative_ttl_ms = TC_TTL_MAX_MS;
    return r;
}

/* Expiry on the tc__now_ns() clock of an entry with PTTL `pttl` read at
 * `t0` (-1: never). */
static uint64_t expiry_of(uint64_t t0, int64_t pttl)
{
    return pttl < 0 ? UINT64_MAX : tc__sat_add(t0, tc__ms_to_ns((uint64_t)pttl));
}

/* Store a loaded value in L2 (guarded by the stamps read with the miss),
 * then in L1 guarded by `gen`, only when the L2 store happened. 1 stored. */
static int store_loaded(tc_cache *c, uint64_t h, const void *key, size_t klen,
                        uint64_t gen, const tc__stamps *stamps,
                        const void *val, size_t vlen, uint64_t l2_ttl,
                        tc_value **out)
{
    tc__pkey k;
    uint64_t t0;
    int stored;
    if (vlen > c->cfg.max_value || tc__pkey_make(c, key, klen, &k) != TC_OK)
        return 0;
    t0 = tc__now_ns();
    stored = tc__stamps_store(c, k.p, k.len, val, vlen, l2_ttl, stamps) == 1;
    if (stored)
        tc__l1_fill_ttl(c, h, key, klen, val, vlen, t0,
                        tc__l1_ttl_for(c, l2_ttl), gen, 0, out);
    tc__pkey_free(&k);
    return stored;
}

/* Store a loader's "not found" for `neg_ttl` ms (guarded like a value). */
static int store_negative(tc_cache *c, const void *key, size_t klen,
                          const tc__stamps *stamps, uint64_t neg_ttl)
{
    tc__pkey k;
    int stored;
    if (tc__pkey_make(c, key, klen, &k) != TC_OK)
        return 0;
    stored = tc__stamps_store_mode(c, k.p, k.len, "", 0, neg_ttl, stamps,
                                   TC__STORE_NEG) == 1;
    tc__pkey_free(&k);
    return stored;
}

/* Remember a negative in the last-known store, never past L1's TTL. */
static void keep_negative(tc_cache *c, uint64_t h, const void *key,
                          size_t klen, uint64_t gen, const tc__stamps *st,
                          uint64_t t0, uint64_t neg_ms)
{
    uint64_t l1 = tc__l1_ttl_for(c, neg_ms);
    tc__known_put(c->known, h, key, klen, NULL, gen, st, t0,
                  tc__sat_add(t0, tc__ms_to_ns(l1)), 0);
}

/* The leader's work: L2 (and the lock), then the loader. On TC_OK *v is a
 * reference. Runs on the caller's thread or a background one. */
static tc_result lead(tc_cache *c, uint64_t h, const void *key, size_t klen,
                      uint64_t gen, const tc__loader *ld, const lopts *o,
                      tc_value **v)
{
    tc__l2_read rd;
    tc__pkey pk = {0};
    char tok[TC__STAMP_MAX];
    void *val = NULL;
    size_t vlen = 0;
    int l2_ok, locked = 0;
    tc_load_ttl ttl = {o->ttl_ms, o->neg_ttl_ms};
    uint64_t t0;
    tc_result r;

    memset(&rd, 0, sizeof(rd));
    rd.ask_negative = o->neg_ttl_ms > 0;
    r = tc__read_l2(c, h, key, klen, gen, &rd, v);
    if (r == TC_NOT_FOUND && rd.negative)
        goto negative_hit;
    if (r == TC_OK)
        goto hit;
    if (r != TC_NOT_FOUND && r != TC_L2_UNAVAILABLE && r != TC_TIMEOUT &&
        r != TC_PROTOCOL)
        return r;
    l2_ok = r == TC_NOT_FOUND;

    /* Across instances: one of them loads, the others wait for its value
     * in L2. Each attempt at the lock is followed by a read, so a value
     * stored just before we took the lock is found, not loaded again. */
    if (l2_ok && o->coordinate &&
        tc__pkey_make(c, key, klen, &pk) == TC_OK) {
        for (unsigned n = 0;; n++) {
            int got = tc__lock_try(c, pk.p, pk.len, o->lock_ms, tok);
            if (got < 0)
                break; /* load anyway; the store is still guarded */
            r = tc__read_l2(c, h, key, klen, gen, &rd, v);
            if (r != TC_NOT_FOUND || rd.negative) {
                if (got == 1)
                    tc__lock_release(c, pk.p, pk.len, tok);
                tc__pkey_free(&pk);
                if (r == TC_OK)
                    goto hit;
                if (r == TC_NOT_FOUND)
                    goto negative_hit;
                l2_ok = 0;
                goto load;
            }
            if (got == 1) {
                locked = 1;
                break;
            }
            if (n == 0)
                atomic_fetch_add_explicit(&c->lock_waits, 1,
                                          memory_order_relaxed);
            tc__lock_pause(n);
        }
        if (!locked)
            tc__pkey_free(&pk);
    }

load:
    r = tc__run_loader(c, ld, key, klen, &val, &vlen, &ttl);
    if (c->load_hook)
        c->load_hook(c->load_hook_arg, key, klen);
    if (tc__bg_stopping(c->bg)) {
        /* The cache was destroyed while this background load ran. */
        l2_ok = 0;
    }
    t0 = tc__now_ns();
    if (r == TC_OK) {
        /* Graceful fallback: with L2 down the value is still served, but
         * not cached anywhere (no invalidation could reach it). */
        int stored = l2_ok && store_loaded(c, h, key, klen, gen, &rd.stamps,
                                           val ? val : "", vlen, ttl.ttl_ms,
                                           v);
        if (!*v && !(*v = tc__value_new(val, vlen)))
            r = tc__fail(TC_NO_MEMORY, "out of memory");
        if (r == TC_OK && o->keep && (stored || !l2_ok)) {
            /* With L2 down the copy's stamps are unknown: it can serve a
             * fail-safe answer only while Redis stays unreachable. */
            tc__stamps none = {.ok = 0};
            tc__known_put(c->known, h, key, klen, *v, gen,
                          stored ? &rd.stamps : &none, t0,
                          ttl.ttl_ms == TC_TTL_NONE
                              ? UINT64_MAX
                              : tc__sat_add(t0, tc__ms_to_ns(ttl.ttl_ms)),
                          ttl.ttl_ms == TC_TTL_NONE ? 0 : ttl.ttl_ms);
        }
    } else if (r == TC_NOT_FOUND) {
        /* The loader says it is gone: no fail-safe copy may outlive that. */
        tc__known_drop(c->known, h, key, klen);
        if (l2_ok && ttl.negative_ttl_ms &&
            store_negative(c, key, klen, &rd.stamps, ttl.negative_ttl_ms))
            keep_negative(c, h, key, klen, gen, &rd.stamps, t0,
                          ttl.negative_ttl_ms);
    }
    if (locked) {
        tc__lock_release(c, pk.p, pk.len, tok);
        tc__pkey_free(&pk);
    }
    free(val);
    return r;

hit:
    if (o->keep) {
        /* The entry's full TTL, for eager refresh: what this instance
         * stored it with, if that can still be it; else what is left of it
         * now (another instance, or a loader, may have chosen any TTL):
         * a refresh that comes late, never one that comes at every hit. */
        tc__known_info prev;
        uint64_t full = rd.pttl > 0 ? (uint64_t)rd.pttl : 0;
        if (tc__known_get(c->known, h, key, klen, &prev)) {
            if (prev.value && prev.ttl_ms >= full)
                full = prev.ttl_ms;
            tc_value_release(prev.value);
        }
        tc__known_put(c->known, h, key, klen, *v, gen, &rd.stamps, rd.t0_ns,
                      expiry_of(rd.t0_ns, rd.pttl), full);
        if (o->pct)
            tc__refresh_maybe(c, h, key, klen, gen, o->pct, ld, o->ttl_ms,
                              o->neg_ttl_ms, o->coordinate ? o->lock_ms : 0);
    }
    return TC_OK;

negative_hit:
    atomic_fetch_add_explicit(&c->negative_hits, 1, memory_order_relaxed);
    if (rd.neg_pttl > 0)
        keep_negative(c, h, key, klen, gen, &rd.stamps, rd.t0_ns,
                      (uint64_t)rd.neg_pttl);
    return TC_NOT_FOUND;
}

/* A negative this instance may answer from memory: recorded under the
 * current generation, not expired, and L1 servable (the bus proven). */
static int known_negative(tc_cache *c, uint64_t h, const void *key,
                          size_t klen, uint64_t gen)
{
    tc__known_info ki;
    int yes;
    if (!tc__known_get(c->known, h, key, klen, &ki))
        return 0;
    yes = !ki.value && ki.gen == gen && tc__now_ns() < ki.expires_ns &&
          tc__cache_l1_servable(c);
    tc_value_release(ki.value);
    return yes;
}

/* The fail-safe copy of `key`, if one may be served: obtained at most
 * stale_ms ago, no invalidation of the key applied since (generation),
 * and, when Redis answers a stamps read now, no write or delete of the
 * key since it was obtained. A new reference or NULL. */
static tc_value *fail_safe(tc_cache *c, uint64_t h, const void *key,
                           size_t klen, const lopts *o)
{
    tc__known_info ki;
    tc__stamps now;
    if (!o->stale_ms || !tc__known_get(c->known, h, key, klen, &ki))
        return NULL;
    if (!ki.value || ki.gen != tc__l1_gen(c->l1, h) ||
        tc__now_ns() - ki.known_ns > tc__ms_to_ns(o->stale_ms))
        goto no;
    if (tc__stamps_read(c, h, key, klen, &now) == TC_OK &&
        !tc__stamps_same(&ki.stamps, &now)) {
        tc__known_drop(c->known, h, key, klen); /* a write is known */
        goto no;
    }
    atomic_fetch_add_explicit(&c->stale_served, 1, memory_order_relaxed);
    return ki.value;
no:
    tc_value_release(ki.value);
    return NULL;
}

/* A load run by the background pool for a timed leader: owned by the pool
 * until load_job_run() runs, then by it; it holds the leader's reference
 * to the flight and finishes it. */
typedef struct load_job {
    tc_cache *c;
    uint64_t h, gen;
    tc__loader ld;
    lopts o;
    tc__flight *f;
    size_t klen;
    char key[];
} load_job;

static void load_job_run(void *p, int cancelled)
{
    load_job *j = p;
    tc_value *v = NULL;
    tc_result r = cancelled
                      ? tc__fail(TC_LOADER_TIMEOUT, "cache destroyed")
                      : lead(j->c, j->h, j->key, j->klen, j->gen, &j->ld,
                             &j->o, &v);
    tc__flight_finish(j->c->flights, j->f, r, v);
    tc_value_release(v);
    free(j);
}

/* What a caller answers once the flight's result `r` (value `v`) is in. */
static tc_result conclude(tc_cache *c, uint64_t h, const void *key,
                          size_t klen, const lopts *o, tc_result r,
                          tc_value *v, tc_value **out)
{
    if (r == TC_OK) {
        *out = v;
        return TC_OK;
    }
    tc_value_release(v);
    if (r != TC_NOT_FOUND && (*out = fail_safe(c, h, key, klen, o)))
        return TC_STALE;
    return r;
}

/* Wait for a flight someone else runs, within the call's timeouts. Drops
 * our reference to it in every case. */
static tc_result await_flight(tc_cache *c, uint64_t h, const void *key,
                              size_t klen, const lopts *o, uint64_t start,
                              tc__flight *f, tc_value **out)
{
    tc_result r;
    tc_value *v = NULL;
    if (o->soft_ms) {
        if (tc__flight_wait_until(c->flights, f,
                                  tc__sat_add(start, tc__ms_to_ns(o->soft_ms)),
                                  &r, &v))
            return conclude(c, h, key, klen, o, r, v, out);
        if ((*out = fail_safe(c, h, key, klen, o))) {
            tc__flight_leave(c->flights, f);
            atomic_fetch_add_explicit(&c->loader_timeouts, 1,
                                      memory_order_relaxed);
            return TC_STALE;
        }
    }
    if (tc__flight_wait_until(c->flights, f,
                              o->hard_ms ? tc__sat_add(start, tc__ms_to_ns(
                                                                  o->hard_ms))
                                         : UINT64_MAX,
                              &r, &v))
        return conclude(c, h, key, klen, o, r, v, out);
    tc__flight_leave(c->flights, f);
    atomic_fetch_add_explicit(&c->loader_timeouts, 1, memory_order_relaxed);
    if (!o->soft_ms && (*out = fail_safe(c, h, key, klen, o)))
        return TC_STALE;
    return tc__fail(TC_LOADER_TIMEOUT, "loader did not return within %u ms",
                    o->hard_ms);
}

static tc_result get_or_load(tc_cache *c, const void *key, size_t klen,
                             const tc__loader *ld, const lopts *o,
                             tc_value **out)
{
    tc_result r;
    uint64_t h, gen, start = tc__now_ns();
    tc__flight *f;
    tc_value *v = NULL;
    int role;

    *out = NULL;
    if (!c->cfg.enabled) {
        void *val;
        size_t vlen;
        tc_load_ttl ttl = {o->ttl_ms, o->neg_ttl_ms};
        if ((r = tc__run_loader(c, ld, key, klen, &val, &vlen, &ttl)) != TC_OK)
            return r;
        *out = tc__value_new(val, vlen);
        free(val);
        return *out ? TC_OK : tc__fail(TC_NO_MEMORY, "out of memory");
    }
    h = tc__hash(key, klen);
    if ((*out = tc__l1_lookup(c, h, key, klen))) {
        if (o->pct)
            tc__refresh_maybe(c, h, key, klen, tc__l1_gen(c->l1, h), o->pct,
                              ld, o->ttl_ms, o->neg_ttl_ms,
                              o->coordinate ? o->lock_ms : 0);
        return TC_OK;
    }

    /* Read before joining: the flight we may join must have started at
     * this generation, i.e. after every invalidation we have applied. */
    gen = tc__l1_gen(c->l1, h);
    if (o->neg_ttl_ms && known_negative(c, h, key, klen, gen)) {
        atomic_fetch_add_explicit(&c->negative_hits, 1, memory_order_relaxed);
        return TC_NOT_FOUND;
    }
    role = tc__flight_join(c->flights, h, key, klen, gen, &f);
    if (role < 0)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if (role == 0)
        return await_flight(c, h, key, klen, o, start, f, out);
    if (o->soft_ms || o->hard_ms) {
        /* The load runs in the background; we wait for it like anyone. */
        load_job *j = malloc(sizeof(*j) + klen);
        if (j) {
            *j = (load_job){c, h, gen, *ld, *o, f, klen};
            memcpy(j->key, key, klen);
            tc__flight_ref(c->flights, f);
            if (tc__bg_submit(c->bg, load_job_run, j) == 0)
                return await_flight(c, h, key, klen, o, start, f, out);
            tc__flight_leave(c->flights, f);
            free(j);
        }
        /* No room in the background: load here, without the timeouts. */
    }
    r = lead(c, h, key, klen, gen, ld, o, &v);
    tc__flight_finish(c->flights, f, r, v);
    return conclude(c, h, key, klen, o, r, v, out);
}

tc_result tc_get_or_load(tc_cache *c, const void *key, size_t klen,
                         tc_loader_fn loader, void *ud, uint64_t ttl_ms,
                         tc_value **out)
{
    tc_result r;
    lopts o;
    tc__loader ld = {loader, NULL, ud};
    if ((r = tc__check_key(c, key, klen)) != TC_OK)
        return r;
    if (!out || !loader)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out or loader");
    resolve(c, NULL, &o);
    if (ttl_ms)
        o.ttl_ms = ttl_ms;
    return get_or_load(c, key, klen, &ld, &o, out);
}

tc_result tc_get_or_load_ex(tc_cache *c, const void *key, size_t klen,
                            tc_loader_ex_fn loader, void *ud,
                            const tc_load_options *opts, tc_value **out)
{
    tc_result r;
    lopts o;
    tc__loader ld = {NULL, loader, ud};
    if ((r = tc__check_key(c, key, klen)) != TC_OK)
        return r;
    if (!out || !loader)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out or loader");
    *out = NULL;
    if ((r = resolve(c, opts, &o)) != TC_OK)
        return r;
    return get_or_load(c, key, klen, &ld, &o, out);
}
