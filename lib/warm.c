/*
 * Warming: many keys stored in pipelined batches. Each batch is one
 * MULTI (its SETs, one stamp update, one invalidation message carrying all
 * its keys: publish.c), so another instance drops its stale copies once per
 * batch, and strict mode waits once per batch as tc_set() does per key.
 * tc_warm() fills batches from a loader over a key list.
 *
 * On Redis Cluster a batch is split by slot (tc__keys_by_slot()): one
 * MULTI per slot on its master, with that slot's stamps hash and its own
 * invalidation, one slot after the other. Atomic per slot only; a failure
 * stops there, the slots before it written and invalidated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "compress.h"
#include "stamps.h"

#define DEFAULT_BATCH 500
#define MAX_BATCH 100000

/* Store keys[0..m) in one transaction. The caller checked the arguments. */
static tc_result set_batch(tc_cache *c, size_t m, const void *const *keys,
                           const size_t *klens, const void *const *vals,
                           const size_t *vlens, const char *px, size_t pxlen,
                           int strict)
{
    tc__pkey *pk = malloc(m * sizeof(*pk));
    const char **argv = malloc(5 * m * sizeof(*argv));
    size_t *argl = malloc(5 * m * sizeof(*argl));
    const char **sargv = malloc((2 * m + 2) * sizeof(*sargv));
    size_t *sargl = malloc((2 * m + 2) * sizeof(*sargl));
    tc__cmd *cmds = malloc((m + 1) * sizeof(*cmds));
    char(*fields)[8] = malloc(m * sizeof(*fields));
    void **zbuf = calloc(m, sizeof(*zbuf)); /* compressed forms, owned */
    tc__pkey sk = {NULL, 0, ""};
    char stamp[TC__STAMP_MAX];
    size_t made = 0, slen;
    redisReply *exec = NULL;
    tc_result r = TC_OK;
    tc__txn t;

    if (!pk || !argv || !argl || !sargv || !sargl || !cmds || !fields ||
        !zbuf) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    slen = tc__stamp_new(c, stamp);
    sargv[0] = "HSET", sargl[0] = 4;
    for (; made < m; made++) {
        uint64_t h = tc__hash(keys[made], klens[made]);
        const char **a = argv + 5 * made;
        size_t *l = argl + 5 * made;
        int argc = 0;
        const void *sv;
        size_t svlen;
        if ((r = tc__pkey_make(c, keys[made], klens[made], &pk[made])) !=
            TC_OK)
            goto out;
        /* All keys share one slot here (on a cluster): its stamps hash. */
        if ((!made && (r = tc__stamps_key(c, pk[0].p, pk[0].len, &sk)) !=
                          TC_OK) ||
            (r = tc__z_encode(c, vals[made], vlens[made], &sv, &svlen,
                              &zbuf[made])) != TC_OK) {
            tc__pkey_free(&pk[made]);
            goto out;
        }
        sargv[1] = sk.p, sargl[1] = sk.len;
        a[argc] = "SET", l[argc++] = 3;
        a[argc] = pk[made].p, l[argc++] = pk[made].len;
        a[argc] = sv ? sv : "", l[argc++] = svlen;
        if (pxlen) {
            a[argc] = "PX", l[argc++] = 2;
            a[argc] = px, l[argc++] = pxlen;
        }
        cmds[made] = (tc__cmd){argc, a, l};
        sargv[2 * made + 2] = fields[made];
        sargl[2 * made + 2] = tc__stamp_field(h, fields[made]);
        sargv[2 * made + 3] = stamp, sargl[2 * made + 3] = slen;
        /* This instance's copies go first (they would be stale). */
        tc__l1_invalidate_key(c->l1, h, keys[made], klens[made]);
    }
    cmds[m] = (tc__cmd){(int)(2 * m + 2), sargv, sargl};
    if ((r = tc__txn_begin(c, &t, m == 1 ? TC__MSG_KEY : TC__MSG_KEYS, m,
                           keys, klens, strict)) != TC_OK)
        goto out;
    r = tc__txn_exec(c, &t, m + 1, cmds, 0, &exec);
    if (r == TC_OK) {
        for (size_t i = 0; i < m; i++) {
            const redisReply *e = exec->element[i];
            if (e->type == REDIS_REPLY_ERROR) {
                r = tc__fail(TC_PROTOCOL, "SET: %.*s", (int)e->len, e->str);
                break;
            }
        }
    }
    tc__txn_end(c, &t, exec, exec != NULL);
    if (exec)
        freeReplyObject(exec);
    /* Fills that fetched an old value during the batch must not land. */
    for (size_t i = 0; i < m; i++)
        tc__l1_invalidate_key(c->l1, tc__hash(keys[i], klens[i]), keys[i],
                              klens[i]);
out:
    for (size_t i = 0; i < made; i++) {
        tc__pkey_free(&pk[i]);
        free(zbuf[i]);
    }
    if (sk.p)
        tc__pkey_free(&sk);
    free(zbuf);
    free(pk);
    free(argv);
    free(argl);
    free(sargv);
    free(sargl);
    free(cmds);
    free(fields);
    return r;
}

/* set_batch() for keys[0..m), on Redis Cluster one per slot of the keys
 * (in ascending slot order), stopping at the first failure. */
static tc_result set_batch_by_slot(tc_cache *c, size_t m,
                                   const void *const *keys,
                                   const size_t *klens,
                                   const void *const *vals,
                                   const size_t *vlens, const char *px,
                                   size_t pxlen, int strict)
{
    size_t *order, *starts, ngroups = 0;
    const void **sk, **sv;
    size_t *skl, *svl;
    tc_result r;
    if (!c->cfg.cluster)
        return set_batch(c, m, keys, klens, vals, vlens, px, pxlen, strict);
    order = malloc(m * sizeof(*order));
    starts = malloc((m + 1) * sizeof(*starts));
    sk = malloc(m * sizeof(*sk));
    sv = malloc(m * sizeof(*sv));
    skl = malloc(m * sizeof(*skl));
    svl = malloc(m * sizeof(*svl));
    if (!order || !starts || !sk || !sv || !skl || !svl)
        r = tc__fail(TC_NO_MEMORY, "out of memory");
    else
        r = tc__keys_by_slot(c, m, keys, klens, order, starts, &ngroups);
    for (size_t g = 0; r == TC_OK && g < ngroups; g++) {
        size_t k = 0;
        for (size_t j = starts[g]; j < starts[g + 1]; j++, k++) {
            sk[k] = keys[order[j]], skl[k] = klens[order[j]];
            sv[k] = vals[order[j]], svl[k] = vlens[order[j]];
        }
        r = set_batch(c, k, sk, skl, sv, svl, px, pxlen, strict);
    }
    free(order);
    free(starts);
    free(sk);
    free(sv);
    free(skl);
    free(svl);
    return r;
}

/* Shared checks; TC_OK with *px set, or the failure. */
static tc_result begin(tc_cache *c, uint64_t ttl_ms, size_t *batch, char *px,
                       size_t *pxlen)
{
    uint64_t ttl;
    if (!c)
        return tc__fail(TC_BAD_ARGUMENT, "NULL cache");
    if (*batch == 0)
        *batch = DEFAULT_BATCH;
    if (*batch > MAX_BATCH)
        return tc__fail(TC_BAD_ARGUMENT, "batch larger than %d", MAX_BATCH);
    if (ttl_ms != TC_TTL_NONE && ttl_ms > TC_TTL_MAX_MS)
        return tc__fail(TC_BAD_ARGUMENT, "ttl_ms above TC_TTL_MAX_MS");
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    ttl = ttl_ms ? ttl_ms : c->cfg.default_ttl_ms;
    *pxlen = 0;
    if (ttl != TC_TTL_NONE)
        *pxlen = (size_t)snprintf(px, 24, "%llu", (unsigned long long)ttl);
    return TC_OK;
}

tc_result tc_set_many(tc_cache *c, size_t n, const void *const *keys,
                      const size_t *klens, const void *const *vals,
                      const size_t *vlens, uint64_t ttl_ms, size_t batch,
                      tc_progress_fn progress, void *userdata)
{
    char px[24];
    size_t pxlen;
    tc_result r;
    int strict;
    if (n && (!keys || !klens || !vals || !vlens))
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    for (size_t i = 0; c && i < n; i++)
        if ((r = tc__check_key(c, keys[i], klens[i])) != TC_OK ||
            (r = tc__check_value(c, vals[i], vlens[i])) != TC_OK)
            return r;
    if ((r = begin(c, ttl_ms, &batch, px, &pxlen)) != TC_OK)
        return r;
    strict = tc__write_is_strict(c, 0);
    for (size_t i = 0; i < n; i += batch) {
        size_t m = n - i < batch ? n - i : batch;
        if ((r = set_batch_by_slot(c, m, keys + i, klens + i, vals + i,
                                   vlens + i, px, pxlen, strict)) != TC_OK)
            return r;
        if (progress)
            progress(userdata, i + m, n);
    }
    return TC_OK;
}

tc_result tc_warm(tc_cache *c, size_t n, const void *const *keys,
                  const size_t *klens, tc_loader_fn loader, void *loader_ud,
                  uint64_t ttl_ms, size_t batch, tc_progress_fn progress,
                  void *userdata)
{
    char px[24];
    size_t pxlen;
    tc_result r;
    const void **bk = NULL, **bv = NULL;
    size_t *bkl = NULL, *bvl = NULL;
    int strict;

    if (n && (!keys || !klens || !loader))
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    for (size_t i = 0; c && i < n; i++)
        if ((r = tc__check_key(c, keys[i], klens[i])) != TC_OK)
            return r;
    if ((r = begin(c, ttl_ms, &batch, px, &pxlen)) != TC_OK)
        return r;
    strict = tc__write_is_strict(c, 0);
    bk = malloc(batch * sizeof(*bk));
    bv = calloc(batch, sizeof(*bv));
    bkl = malloc(batch * sizeof(*bkl));
    bvl = malloc(batch * sizeof(*bvl));
    if (!bk || !bv || !bkl || !bvl) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n && r == TC_OK;) {
        size_t m = 0, end = n - i < batch ? n - i : batch;
        for (size_t j = 0; j < end; j++) {
            void *v = NULL;
            size_t vl = 0;
            tc_result lr = loader(loader_ud, keys[i + j], klens[i + j], &v,
                                  &vl);
            atomic_fetch_add_explicit(&c->loader_calls, 1,
                                      memory_order_relaxed);
            if (lr == TC_NOT_FOUND) {
                free(v);
                continue; /* nothing to warm for this key */
            }
            if (lr == TC_OK)
                lr = tc__check_value(c, v, vl);
            if (lr != TC_OK) {
                free(v);
                r = lr;
                break;
            }
            bk[m] = keys[i + j], bkl[m] = klens[i + j];
            bv[m] = v, bvl[m++] = vl;
        }
        if (r == TC_OK && m)
            r = set_batch_by_slot(c, m, bk, bkl, bv, bvl, px, pxlen,
                                  strict);
        for (size_t j = 0; j < m; j++) {
            free((void *)bv[j]);
            bv[j] = NULL;
        }
        i += end;
        if (r == TC_OK && progress)
            progress(userdata, i, n);
    }
out:
    free(bk);
    free(bv);
    free(bkl);
    free(bvl);
    return r;
}
