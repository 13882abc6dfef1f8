/*
 * The cache handle: create and destroy, argument checks and prefixed keys
 * shared by the calls in read.c, write.c, loader.c and invalidate.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cache.h"
#include "command.h"
#include "ratelocal.h"
#include "slot.h"

tc_result tc__pkey_make(const tc_cache *c, const void *key, size_t klen,
                        tc__pkey *k)
{
    size_t n = c->cfg.prefix_len + klen;
    k->p = n <= sizeof(k->small) ? k->small : malloc(n);
    if (!k->p)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    memcpy(k->p, c->cfg.prefix, c->cfg.prefix_len);
    memcpy(k->p + c->cfg.prefix_len, key, klen);
    k->len = n;
    return TC_OK;
}

tc_result tc__own_key(const tc_cache *c, const char *base, size_t blen,
                      const char *pk, size_t pklen, int with_pk, tc__pkey *out)
{
    char tag[TC__SLOT_TAG_MAX + 2] = "";
    size_t tl = 0, n;
    if (c->cfg.cluster)
        tl = (size_t)snprintf(tag, sizeof(tag), "{%s}",
                              tc__slot_tag(tc__slot_of(pk, pklen)));
    n = blen + tl + (with_pk ? pklen : 0);
    out->p = n <= sizeof(out->small) ? out->small : malloc(n + 1);
    if (!out->p)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    memcpy(out->p, base, blen);
    memcpy(out->p + blen, tag, tl);
    if (with_pk)
        memcpy(out->p + blen + tl, pk, pklen);
    out->len = n;
    return TC_OK;
}

void tc__pkey_free(tc__pkey *k)
{
    if (k->p != k->small)
        free(k->p);
}

tc_result tc__key_error(const tc_cache *c, const void *key, size_t klen)
{
    if (!c)
        return tc__fail(TC_BAD_ARGUMENT, "NULL cache");
    if (!key || klen == 0)
        return tc__fail(TC_BAD_ARGUMENT, "key must be non-empty");
    if (klen > c->cfg.max_key)
        return tc__fail(TC_TOO_LARGE, "key of %zu bytes exceeds max_key_bytes %zu",
                        klen, c->cfg.max_key);
    return TC_OK; /* not reached: tc__check_key() found a fault */
}

tc_result tc__check_value(const tc_cache *c, const void *val, size_t vlen)
{
    if (!val && vlen)
        return tc__fail(TC_BAD_ARGUMENT, "NULL value with non-zero length");
    if (vlen > c->cfg.max_value)
        return tc__fail(TC_TOO_LARGE,
                        "value of %zu bytes exceeds max_value_bytes %zu", vlen,
                        c->cfg.max_value);
    return TC_OK;
}

int tc__l1_fill_ttl(tc_cache *c, uint64_t h, const void *key, size_t klen,
                    const void *val, size_t vlen, uint64_t t0_ns,
                    uint64_t l1_ttl_ms, uint64_t gen, int flags, tc_value **ref)
{
    int rc = tc__l1_fill(c->l1, h, key, klen, val, vlen,
                         tc__sat_add(t0_ns, tc__ms_to_ns(l1_ttl_ms)), gen,
                         flags, ref);
    if (rc == TC__FILL_NOFIT)
        atomic_fetch_add_explicit(&c->l1_too_large, 1, memory_order_relaxed);
    return rc;
}

int tc__cache_l1_servable(tc_cache *c)
{
    return c->l1 && tc__l1_servable(c, tc__now_ns());
}

/* ------------------------------------------------------------------ */
/* Create / destroy                                                    */
/* ------------------------------------------------------------------ */

/* Handles created and not yet freed (tests: a handle kept alive by a
 * background loader after destroy). */
static atomic_uint live_handles;

unsigned tc__cache_live_handles(void)
{
    return atomic_load(&live_handles);
}

static void make_id(char *id)
{
    unsigned char r[8];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        uint64_t t = tc__now_ns() ^ ((uint64_t)getpid() << 32);
        memcpy(r, &t, sizeof(r));
    }
    for (int i = 0; i < 8; i++)
        sprintf(id + 2 * i, "%02x", r[i]);
}

/* Redis answered at create: give the bus its first proof of liveness, so
 * L1 serves from the first call. Bounded; a slow bus only means reads go
 * to L2 until it is up. */
static void await_bus(tc_cache *c)
{
    uint64_t until = tc__deadline_ms((uint64_t)c->cfg.connect_timeout_ms +
                                     c->cfg.command_timeout_ms);
    struct timespec ms = {0, 1000000L};
    while (!tc__bus_l1_ok(c->bus, tc__now_ns()) && tc__now_ns() < until)
        nanosleep(&ms, NULL);
}

tc_result tc_cache_create(const tc_options *opts, tc_cache **out)
{
    tc_cache *c;
    tc_result r;
    size_t n;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if ((r = tc__config_resolve(opts, &c->cfg)) != TC_OK) {
        free(c);
        return r;
    }
    make_id(c->id);
    atomic_init(&c->refs, 1);
    atomic_fetch_add(&live_handles, 1);
    if (!c->cfg.enabled) {
        *out = c;
        return TC_OK;
    }
    n = strlen(c->cfg.channel) + 32;
    c->stamps_key = malloc(n);
    c->l1 = tc__l1_create(c->cfg.l1_max_bytes, c->cfg.l1_max_entries,
                          c->cfg.l1_shards);
    c->flights = tc__flights_create(c->cfg.l1_shards);
    c->known = tc__known_create(c->cfg.l1_max_entries / 4,
                                c->cfg.l1_max_bytes / 4);
    c->bg = tc__bg_create(c);
    c->neg_prefix = malloc(n);
    c->lock_prefix = malloc(n);
    if (!c->l1 || !c->flights || !c->stamps_key || !c->known || !c->bg ||
        !c->neg_prefix || !c->lock_prefix) {
        tc_cache_destroy(c);
        return tc__fail(TC_NO_MEMORY, "out of memory creating L1");
    }
    {
        const char *stem = tc__channel_stem(c->cfg.channel);
        snprintf(c->stamps_key, n, "__tiercache:%s:stamps", stem);
        c->neg_prefix_len = (size_t)snprintf(c->neg_prefix, n,
                                             "__tiercache:%s:neg:", stem);
        c->lock_prefix_len = (size_t)snprintf(c->lock_prefix, n,
                                              "__tiercache:%s:lock:", stem);
    }
    if ((r = tc__l2_create(&c->cfg, &c->l2)) != TC_OK) {
        tc_cache_destroy(c);
        return r;
    }
    if (c->cfg.coherence != TC_COHERENCE_NONE &&
        (r = tc__bus_create(&c->cfg, c->l1, c->id, &c->bus)) != TC_OK) {
        tc_cache_destroy(c);
        return r;
    }
    if (c->bus && !tc__l2_breaker_open(c->l2))
        await_bus(c);
    *out = c;
    return TC_OK;
}

/* What is left once no background thread can use the handle. */
static void cache_free(tc_cache *c)
{
    atomic_fetch_sub(&live_handles, 1);
    tc__cmdtab_release(c);
    tc__ratelocal_destroy(atomic_load(&c->ratelocal));
    tc__l2_destroy(c->l2);
    tc__flights_destroy(c->flights);
    tc__known_destroy(c->known);
    tc__bg_free(c->bg);
    tc__l1_destroy(c->l1);
    tc__config_free(&c->cfg);
    free(c->stamps_key);
    free(c->neg_prefix);
    free(c->lock_prefix);
    free(c);
}

void tc__cache_ref(tc_cache *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void tc__cache_unref(tc_cache *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        cache_free(c);
}

void tc_cache_destroy(tc_cache *c)
{
    if (!c)
        return;
    /* Background loads still running keep the handle (not the bus) alive
     * until they return; queued ones are cancelled here. */
    tc__bg_stop(c->bg);
    if (c->bus) {
        /* Stop the bus first: its heartbeat would re-add us. Then leave the
         * members set, so strict writers stop waiting for us at once. */
        char *mk = strdup(tc__bus_members_key(c->bus));
        tc__bus_destroy(c->bus);
        c->bus = NULL;
        if (mk && !tc__l2_breaker_open(c->l2)) {
            const char *a[3] = {"ZREM", mk, c->id};
            tc__cmd cmd = {3, a, NULL};
            redisReply *rep;
            if (tc__l2_run(c->l2, 1, &cmd, &rep, 0) == TC_OK)
                freeReplyObject(rep);
        }
        free(mk);
    }
    tc__cache_unref(c);
}

const char *tc_cache_instance_id(const tc_cache *c)
{
    return c ? c->id : "";
}

int tc_cache_db(const tc_cache *c)
{
    return c && c->cfg.db > 0 ? c->cfg.db : 0;
}
