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
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"

/* One refresh: owned by the pool until refresh_run() runs, then by it; it
 * holds the key's refresh claim (known.c) and ends it. */
typedef struct refresh_job {
    tc_cache *c;
    uint64_t h;
    tc__loader ld;
    uint64_t ttl_ms, neg_ttl_ms;
    size_t klen;
    char key[];
} refresh_job;

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

    if (cancelled || tc__stamps_read(c, j->h, j->key, j->klen, &st) != TC_OK)
        goto out;
    if (tc__run_loader(c, &j->ld, j->key, j->klen, &val, &vlen, &ttl) !=
            TC_OK ||
        tc__bg_stopping(c->bg) || vlen > c->cfg.max_value ||
        tc__pkey_make(c, j->key, j->klen, &k) != TC_OK)
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
    tc__pkey_free(&k);
out:
    free(val);
    tc__known_end_refresh(c->known, j->h, j->key, j->klen);
    free(j);
}

void tc__refresh_maybe(tc_cache *c, uint64_t h, const void *key, size_t klen,
                       uint64_t gen, unsigned pct, const tc__loader *ld,
                       uint64_t ttl_ms, uint64_t neg_ttl_ms)
{
    tc__known_info ki;
    uint64_t lead_ns, at;
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
    lead_ns = tc__ms_to_ns(ki.ttl_ms) / 100 * (100 - pct);
    at = ki.expires_ns > lead_ns ? ki.expires_ns - lead_ns : 0;
    if (tc__now_ns() < at ||
        !tc__known_claim_refresh(c->known, h, key, klen, gen))
        return;
    if (!(j = malloc(sizeof(*j) + klen))) {
        tc__known_end_refresh(c->known, h, key, klen);
        return;
    }
    *j = (refresh_job){c, h, *ld, ttl_ms, neg_ttl_ms, klen};
    memcpy(j->key, key, klen);
    if (tc__bg_submit(c->bg, refresh_run, j) != 0) {
        tc__known_end_refresh(c->known, h, key, klen);
        free(j);
        return;
    }
    atomic_fetch_add_explicit(&c->eager_refreshes, 1, memory_order_relaxed);
}
