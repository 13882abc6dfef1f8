/*
 * Eager refresh: a hit on a key whose L2 entry has lived past a chosen
 * fraction of its TTL reloads it in the background, so a hot key is
 * replaced before it expires instead of expiring into a miss. One refresh
 * per key and instance at a time (known.c's claim). The reload is stored
 * like a load (stamps.c), but replacing the entry: only if no write or
 * delete of the key happened since the refresh read the stamps, and in L1
 * under the generation read before that. Other instances' L1 copies of
 * the replaced value are not invalidated (no write replaced it; they keep
 * it for at most their L1 TTL).
 *
 * Across instances (only with tc_load_options.coordinate): the refresh
 * first takes the key's load lock (stampede.c, the same lock a coordinated
 * miss takes). An instance that finds it held skips this refresh, keeps
 * serving, and tries again on a hit at least RETRY_MS later; the holder
 * then re-reads the key with the lock held and loads only if the entry is
 * still due, so an entry another instance refreshed meanwhile is adopted
 * (its new expiry recorded), not loaded again. A crashed or stuck holder's
 * lock expires after lock_ms, so it delays the next refresh by at most
 * that (plus one RETRY_MS).
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"

/* After finding the lock held: the earliest next attempt (the cap of a
 * coordinated miss's poll, stampede.c). */
#define RETRY_MS 50

/* One refresh: owned by the pool until refresh_run() runs, then by it; it
 * holds the key's refresh claim (known.c) and ends it. */
typedef struct refresh_job {
    tc_cache *c;
    uint64_t h;
    tc__loader ld;
    uint64_t ttl_ms, neg_ttl_ms;
    unsigned pct;
    uint32_t lock_ms; /* 0: not coordinated */
    size_t klen;
    char key[];
} refresh_job;

/* The lead before expiry at which an entry of full TTL `ttl_ms` is due. */
static uint64_t lead_ns(uint64_t ttl_ms, unsigned pct)
{
    return tc__ms_to_ns(ttl_ms) / 100 * (100 - pct);
}

/* With the lock held: re-read the key; 1 when it is still due for a
 * refresh (its stamps, read before the GET, in *st), 0 when it is gone or
 * was refreshed (or written) by someone else meanwhile, which is then
 * recorded as what this instance knows. */
static int still_due(refresh_job *j, uint64_t gen, tc__stamps *st)
{
    tc_cache *c = j->c;
    tc__l2_read rd;
    tc__known_info prev;
    tc_value *v = NULL;
    uint64_t full;
    memset(&rd, 0, sizeof(rd));
    if (tc__read_l2(c, j->h, j->key, j->klen, gen, &rd, &v) != TC_OK)
        return 0; /* absent (a miss loads it) or L2 failing */
    full = rd.pttl > 0 ? (uint64_t)rd.pttl : 0;
    if (tc__known_get(c->known, j->h, j->key, j->klen, &prev)) {
        if (prev.value && prev.ttl_ms >= full)
            full = prev.ttl_ms;
        tc_value_release(prev.value);
    }
    if (rd.pttl > 0 &&
        tc__ms_to_ns((uint64_t)rd.pttl) <= lead_ns(full, j->pct)) {
        *st = rd.stamps;
        tc_value_release(v);
        return 1;
    }
    if (rd.pttl > 0)
        tc__known_put(c->known, j->h, j->key, j->klen, v, gen, &rd.stamps,
                      rd.t0_ns,
                      tc__sat_add(rd.t0_ns, tc__ms_to_ns((uint64_t)rd.pttl)),
                      full);
    tc_value_release(v);
    return 0;
}

static void refresh_run(void *p, int cancelled)
{
    refresh_job *j = p;
    tc_cache *c = j->c;
    tc__stamps st;
    tc__pkey k;
    void *val = NULL;
    size_t vlen = 0;
    uint64_t gen = tc__l1_gen(c->l1, j->h), t0;
    tc_load_ttl ttl = {j->ttl_ms, j->neg_ttl_ms};
    tc_value *v = NULL;
    char tok[TC__STAMP_MAX];
    uint64_t retry_ns = 0;
    int locked = 0;

    k.p = NULL;
    if (cancelled || tc__pkey_make(c, j->key, j->klen, &k) != TC_OK)
        goto out;
    if (j->lock_ms) {
        int got = tc__lock_try(c, k.p, k.len, j->lock_ms, tok);
        if (got == 0)
            retry_ns = tc__sat_add(tc__now_ns(), tc__ms_to_ns(RETRY_MS));
        if (got != 1)
            goto out;
        locked = 1;
        if (!still_due(j, gen, &st))
            goto out;
    } else if (tc__stamps_read(c, j->h, j->key, j->klen, &st) != TC_OK)
        goto out;
    if (tc__run_loader(c, &j->ld, j->key, j->klen, &val, &vlen, &ttl) !=
            TC_OK ||
        tc__bg_stopping(c->bg) || vlen > c->cfg.max_value)
        goto out;
    t0 = tc__now_ns();
    if (tc__stamps_store_mode(c, k.p, k.len, val ? val : "", vlen, ttl.ttl_ms,
                              &st, TC__STORE_OVER) == 1) {
        tc__l1_fill_ttl(c, j->h, j->key, j->klen, val ? val : "", vlen, t0,
                        tc__l1_ttl_for(c, ttl.ttl_ms), gen, 0, &v);
        if (v || (v = tc__value_new(val, vlen)))
            tc__known_put(c->known, j->h, j->key, j->klen, v, gen, &st, t0,
                          ttl.ttl_ms == TC_TTL_NONE
                              ? UINT64_MAX
                              : tc__sat_add(t0, tc__ms_to_ns(ttl.ttl_ms)),
                          ttl.ttl_ms == TC_TTL_NONE ? 0 : ttl.ttl_ms);
        tc_value_release(v);
    }
out:
    if (locked)
        tc__lock_release(c, k.p, k.len, tok);
    if (k.p)
        tc__pkey_free(&k);
    free(val);
    tc__known_end_refresh(c->known, j->h, j->key, j->klen, retry_ns);
    free(j);
}

void tc__refresh_maybe(tc_cache *c, uint64_t h, const void *key, size_t klen,
                       uint64_t gen, unsigned pct, const tc__loader *ld,
                       uint64_t ttl_ms, uint64_t neg_ttl_ms, uint32_t lock_ms)
{
    tc__known_info ki;
    uint64_t lead, at, now;
    refresh_job *j;
    int positive;
    if (!tc__known_get(c->known, h, key, klen, &ki))
        return;
    positive = ki.value != NULL;
    tc_value_release(ki.value);
    if (!positive || ki.gen != gen || ki.expires_ns == UINT64_MAX ||
        !ki.ttl_ms)
        return;
    /* Refresh once less than (100 - pct)% of the full TTL is left. */
    lead = lead_ns(ki.ttl_ms, pct);
    at = ki.expires_ns > lead ? ki.expires_ns - lead : 0;
    now = tc__now_ns();
    if (now < at ||
        !tc__known_claim_refresh(c->known, h, key, klen, gen, now))
        return;
    if (!(j = malloc(sizeof(*j) + klen))) {
        tc__known_end_refresh(c->known, h, key, klen, 0);
        return;
    }
    *j = (refresh_job){c, h, *ld, ttl_ms, neg_ttl_ms, pct, lock_ms, klen};
    memcpy(j->key, key, klen);
    if (tc__bg_submit(c->bg, refresh_run, j) != 0) {
        tc__known_end_refresh(c->known, h, key, klen, 0);
        free(j);
        return;
    }
    atomic_fetch_add_explicit(&c->eager_refreshes, 1, memory_order_relaxed);
}
