/*
 * Stampede control across instances: a short load lock per key in Redis,
 * "__tiercache:<channel>:lock:<key>" = a unique token, SET NX PX lock_ms.
 * The holder loads, stores and releases it (compare-and-delete, so a
 * holder whose lease ran out never frees a successor's lock); the others
 * poll L2 (loader.c). Redis expires the lock of a crashed holder after
 * lock_ms. Stateless helpers; thread-safe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"

static const char release_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) end return 0";

/* The lock key of `pk` (same layout as the negative marker's). */
static tc_result lock_key(const tc_cache *c, const char *pk, size_t pklen,
                          tc__pkey *out)
{
    size_t n = c->lock_prefix_len + pklen;
    out->p = n <= sizeof(out->small) ? out->small : malloc(n);
    if (!out->p)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    memcpy(out->p, c->lock_prefix, c->lock_prefix_len);
    memcpy(out->p + c->lock_prefix_len, pk, pklen);
    out->len = n;
    return TC_OK;
}

int tc__lock_try(tc_cache *c, const char *pk, size_t pklen, uint32_t lock_ms,
                 char *tok)
{
    tc__pkey lk;
    char px[16];
    size_t toklen = tc__stamp_new(c, tok), pxlen;
    redisReply *rep;
    tc_result r;
    int got;
    if (lock_key(c, pk, pklen, &lk) != TC_OK)
        return -1;
    pxlen = (size_t)snprintf(px, sizeof(px), "%u", lock_ms);
    {
        const char *a[6] = {"SET", lk.p, tok, "NX", "PX", px};
        size_t l[6] = {3, lk.len, toklen, 2, 2, pxlen};
        tc__cmd cmd = {6, a, l};
        r = tc__l2_run(c->l2, 1, &cmd, &rep, 0);
    }
    tc__pkey_free(&lk);
    if (r != TC_OK)
        return -1;
    got = rep->type == REDIS_REPLY_STATUS ? 1
          : rep->type == REDIS_REPLY_NIL  ? 0
                                          : -1;
    freeReplyObject(rep);
    return got;
}

void tc__lock_release(tc_cache *c, const char *pk, size_t pklen,
                      const char *tok)
{
    tc__pkey lk;
    redisReply *rep;
    if (lock_key(c, pk, pklen, &lk) != TC_OK)
        return;
    {
        const char *a[5] = {"EVAL", release_script, "1", lk.p, tok};
        size_t l[5] = {4, sizeof(release_script) - 1, 1, lk.len, strlen(tok)};
        tc__cmd cmd = {5, a, l};
        if (tc__l2_run(c->l2, 1, &cmd, &rep, 0) == TC_OK)
            freeReplyObject(rep);
    }
    tc__pkey_free(&lk);
}

void tc__lock_pause(unsigned n)
{
    unsigned ms = n >= 5 ? 50 : 2u << n;
    struct timespec ts = {0, (long)(ms > 50 ? 50 : ms) * 1000000L};
    nanosleep(&ts, NULL);
}
