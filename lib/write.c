/*
 * Writes: tc_set_ex and tc_mdel. Each drops this instance's own copy
 * first, changes L2, replaces the keys' stamps (stamps.c) and publishes the
 * invalidation in one transaction (publish.c), then updates L1 only if no
 * other write or invalidation of the key raced with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "compress.h"
#include "stamps.h"
#include "slot.h"

/* A conditional set (NX/XX) publishes only when it stored: one script, so
 * the condition, the write, the stamp and the message are one step.
 * KEYS: key, stamps. ARGV: value, px ('' = none), NX|XX, channel ('' = no
 * bus), message, stamp field, stamp. */
static const char cond_set_script[] =
    "local r "
    "if ARGV[2] == '' then r = redis.call('SET', KEYS[1], ARGV[1], ARGV[3]) "
    "else r = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], ARGV[3]) end "
    "if not r then return 0 end "
    "redis.call('HSET', KEYS[2], ARGV[6], ARGV[7]) "
    "if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end "
    "return 1";

tc_result tc__set_begin(tc_cache *c, const void *key, size_t klen,
                        const void *val, size_t vlen, const tc_set_opts *o,
                        const tc__set_cmd_fn set_cmd, void *set_ud,
                        int no_message, tc__set_op *op)
{
    static const tc_set_opts defaults;
    tc_result r;
    uint64_t l2_ttl;
    size_t flen, slen, pxlen = 0;
    const char **argv = op->argv;
    size_t *argl = op->argl;
    int argc = 0;
    const void *keys[1] = {key};
    const void *sv;  /* the value as stored in L2 (compress.c) */
    size_t svlen;

    memset(op, 0, sizeof(*op));
    if (!o)
        o = &defaults;
    if ((r = tc__check_key(c, key, klen)) != TC_OK ||
        (r = tc__check_value(c, val, vlen)) != TC_OK)
        return r;
    if ((o->flags & TC_SET_NX) && (o->flags & TC_SET_XX))
        return tc__fail(TC_BAD_ARGUMENT, "NX and XX together");
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    op->key = key, op->klen = klen, op->val = val, op->vlen = vlen;
    op->cond = (o->flags & (TC_SET_NX | TC_SET_XX)) != 0;
    if (op->cond && set_cmd)
        return tc__fail(TC_BAD_ARGUMENT, "tags with NX or XX");
    l2_ttl = o->l2_ttl_ms ? o->l2_ttl_ms : c->cfg.default_ttl_ms;
    op->l1_ttl = o->l1_ttl_ms ? o->l1_ttl_ms : c->cfg.l1_ttl_ms;
    if (l2_ttl != TC_TTL_NONE && op->l1_ttl > l2_ttl)
        op->l1_ttl = l2_ttl;
    if (l2_ttl != TC_TTL_NONE)
        pxlen = (size_t)snprintf(op->px, sizeof(op->px), "%llu",
                                 (unsigned long long)l2_ttl);
    op->h = tc__hash(key, klen);
    flen = tc__stamp_field(op->h, op->field);
    slen = tc__stamp_new(c, op->stamp);
    if ((r = tc__z_encode(c, val, vlen, &sv, &svlen, &op->zbuf)) != TC_OK)
        return r;
    if ((r = tc__pkey_make(c, key, klen, &op->k)) != TC_OK) {
        free(op->zbuf);
        return r;
    }
    /* On a cluster the stamps hash of the key's slot (stamps.h). */
    if ((r = tc__stamps_key(c, op->k.p, op->k.len, &op->sk)) != TC_OK) {
        tc__pkey_free(&op->k);
        free(op->zbuf);
        return r;
    }
    if (no_message && !op->cond && !tc__write_is_strict(c, o->flags)) {
        memset(&op->t, 0, sizeof(op->t)); /* the caller publishes */
        op->l1_later = 1;                 /* and drops the copy */
    } else if ((r = tc__txn_begin(c, &op->t, TC__MSG_KEY, 1, keys, &klen,
                                  tc__write_is_strict(c, o->flags))) !=
               TC_OK) {
        tc__pkey_free(&op->k);
        tc__pkey_free(&op->sk);
        free(op->zbuf);
        return r;
    }
    if (op->cond) {
        argv[argc] = "EVAL", argl[argc++] = 4;
        argv[argc] = cond_set_script, argl[argc++] = sizeof(cond_set_script) - 1;
        argv[argc] = "2", argl[argc++] = 1;
        argv[argc] = op->k.p, argl[argc++] = op->k.len;
        argv[argc] = op->sk.p, argl[argc++] = op->sk.len;
        argv[argc] = sv ? sv : "", argl[argc++] = svlen;
        argv[argc] = op->px, argl[argc++] = pxlen;
        argv[argc] = o->flags & TC_SET_NX ? "NX" : "XX", argl[argc++] = 2;
        argv[argc] = op->t.msg ? c->cfg.channel : "";
        argl[argc++] = op->t.msg ? strlen(c->cfg.channel) : 0;
        argv[argc] = op->t.msg ? op->t.msg : "", argl[argc++] = op->t.msglen;
        argv[argc] = op->field, argl[argc++] = flen;
        argv[argc] = op->stamp, argl[argc++] = slen;
        op->cmds[op->ncmd++] = (tc__cmd){argc, argv, argl};
    } else if (set_cmd) {
        if ((r = set_cmd(set_ud, &op->k, sv ? sv : "", svlen, op->px, pxlen,
                         &op->cmds[op->ncmd++], &op->set_mem)) != TC_OK) {
            tc__txn_end(c, &op->t, NULL, 0);
            tc__pkey_free(&op->k);
            tc__pkey_free(&op->sk);
            free(op->zbuf);
            return r;
        }
    } else {
        argv[argc] = "SET", argl[argc++] = 3;
        argv[argc] = op->k.p, argl[argc++] = op->k.len;
        argv[argc] = sv ? sv : "", argl[argc++] = svlen;
        if (pxlen) {
            argv[argc] = "PX", argl[argc++] = 2;
            argv[argc] = op->px, argl[argc++] = pxlen;
        }
        op->cmds[op->ncmd++] = (tc__cmd){argc, argv, argl};
    }
    if (!op->cond) {
        argv[argc] = "HSET", argl[argc] = 4;
        argv[argc + 1] = op->sk.p, argl[argc + 1] = op->sk.len;
        argv[argc + 2] = op->field, argl[argc + 2] = flen;
        argv[argc + 3] = op->stamp, argl[argc + 3] = slen;
        op->cmds[op->ncmd++] = (tc__cmd){4, argv + argc, argl + argc};
    }

    /* Drop our own copy first; the returned generation guards the fill. */
    if (!op->l1_later)
        op->gen = tc__l1_invalidate_key(c->l1, op->h, key, klen);
    op->t0 = tc__now_ns(); /* the L2 TTL starts no earlier */
    return TC_OK;
}

void tc__set_drop_l1(tc_cache *c, tc__set_op *op)
{
    if (!op->l1_later)
        return;
    op->l1_later = 0;
    op->gen = tc__l1_invalidate_key(c->l1, op->h, op->key, op->klen);
}

/* tc__set_finish with the SET's own reply `sr` (borrowed; read only when
 * `r` is TC_OK) apart from the EXEC reply `exec` (taken; may be NULL
 * without a strict wait to end). */
static tc_result set_done(tc_cache *c, tc__set_op *op, tc_result r,
                          const redisReply *sr, redisReply *exec)
{
    int stored = 0;
    tc__pkey_free(&op->k);
    tc__pkey_free(&op->sk);
    free(op->set_mem);
    free(op->zbuf);
    op->set_mem = op->zbuf = NULL;
    if (r == TC_OK) {
        if (sr->type == REDIS_REPLY_ERROR)
            r = tc__fail(TC_PROTOCOL, "SET: %.*s", (int)sr->len, sr->str);
        else if (op->cond ? sr->type == REDIS_REPLY_INTEGER && sr->integer == 0
                          : sr->type == REDIS_REPLY_NIL)
            r = tc__fail(TC_NOT_STORED, "NX/XX condition not met");
        else
            stored = 1;
        if (stored && op->cond && c->bus)
            tc__bus_count_published(c->bus);
    }
    /* Strict: wait only when something was published. */
    tc__txn_end(c, &op->t, exec, r == TC_OK && stored);
    if (exec)
        freeReplyObject(exec);
    if (r == TC_OK) {
        /* Another write or invalidation of this key while ours was in flight
         * leaves the order in L2 unknown here: keep no copy then. Nor when
         * the value did not fit: a reader may have filled the old one. */
        if (tc__l1_fill_ttl(c, op->h, op->key, op->klen, op->val, op->vlen,
                            op->t0, op->l1_ttl, op->gen, TC__FILL_BUMP,
                            NULL) != TC__FILL_INSERTED)
            tc__l1_invalidate_key(c->l1, op->h, op->key, op->klen);
    } else if (r != TC_NOT_STORED) {
        /* The write may or may not have happened: hold no copy, and make
         * in-flight fills of the old value fail. */
        tc__l1_invalidate_key(c->l1, op->h, op->key, op->klen);
    }
    return r;
}

tc_result tc__set_finish(tc_cache *c, tc__set_op *op, tc_result r,
                         redisReply *exec)
{
    return set_done(c, op, r, r == TC_OK ? exec->element[0] : NULL, exec);
}

tc_result tc__set_finish_reply(tc_cache *c, tc__set_op *op, tc_result r,
                               const redisReply *set_reply)
{
    return set_done(c, op, r, set_reply, NULL);
}

tc_result tc__set(tc_cache *c, const void *key, size_t klen, const void *val,
                  size_t vlen, const tc_set_opts *o, const tc__set_cmd_fn set_cmd,
                  void *set_ud)
{
    tc__set_op op;
    redisReply *exec = NULL;
    tc_result r = tc__set_begin(c, key, klen, val, vlen, o, set_cmd, set_ud,
                                0, &op);
    if (r != TC_OK)
        return r;
    r = tc__txn_exec(c, &op.t, op.ncmd, op.cmds, op.cond, &exec);
    return tc__set_finish(c, &op, r, exec);
}

tc_result tc_set_ex(tc_cache *c, const void *key, size_t klen, const void *val,
                    size_t vlen, const tc_set_opts *o)
{
    return tc__set(c, key, klen, val, vlen, o, NULL, NULL);
}

tc_result tc_set(tc_cache *c, const void *key, size_t klen, const void *val,
                 size_t vlen, uint64_t ttl_ms)
{
    tc_set_opts o = {ttl_ms, 0, 0};
    return tc_set_ex(c, key, klen, val, vlen, &o);
}

tc_result tc_mdel(tc_cache *c, size_t n, const void *const *keys,
                  const size_t *klens, uint64_t *deleted)
{
    return tc__mdel(c, n, keys, klens, NULL, deleted);
}

typedef struct slot_ix {
    unsigned slot;
    size_t i;
} slot_ix;

static int by_slot(const void *a, const void *b)
{
    const slot_ix *x = a, *y = b;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

tc_result tc__keys_by_slot(const tc_cache *c, size_t n,
                           const void *const *keys, const size_t *klens,
                           size_t *order, size_t *starts, size_t *ngroups)
{
    slot_ix *s = malloc((n ? n : 1) * sizeof(*s));
    size_t g = 0;
    if (!s)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        tc__pkey k;
        tc_result r = tc__pkey_make(c, keys[i], klens[i], &k);
        if (r != TC_OK) {
            free(s);
            return r;
        }
        s[i] = (slot_ix){tc__slot_of(k.p, k.len), i};
        tc__pkey_free(&k);
    }
    qsort(s, n, sizeof(*s), by_slot);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || s[i].slot != s[i - 1].slot)
            starts[g++] = i;
        order[i] = s[i].i;
    }
    starts[g] = n;
    *ngroups = g;
    free(s);
    return TC_OK;
}

/* Redis Cluster: one tc__mdel() per slot of the keys (each its own MULTI
 * on its master, with its own invalidation). Every slot is tried; the
 * first failure is returned. *deleted sums the slots that answered. */
static tc_result mdel_by_slot(tc_cache *c, size_t n, const void *const *keys,
                              const size_t *klens, uint64_t *deleted)
{
    size_t *order = malloc(n * sizeof(*order));
    size_t *starts = malloc((n + 1) * sizeof(*starts));
    const void **sub = malloc(n * sizeof(*sub));
    size_t *subl = malloc(n * sizeof(*subl)), ngroups = 0;
    tc_result r = TC_OK;
    uint64_t total = 0;
    if (!order || !starts || !sub || !subl) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    if ((r = tc__keys_by_slot(c, n, keys, klens, order, starts, &ngroups)) !=
        TC_OK)
        goto out;
    for (size_t g = 0; g < ngroups; g++) {
        size_t m = 0;
        uint64_t d = 0;
        tc_result ri;
        for (size_t j = starts[g]; j < starts[g + 1]; j++)
            sub[m] = keys[order[j]], subl[m++] = klens[order[j]];
        ri = tc__mdel(c, m, sub, subl, NULL, &d);
        if (ri == TC_OK)
            total += d;
        else if (r == TC_OK)
            r = ri;
    }
    if (deleted)
        *deleted = total;
out:
    free(order);
    free(starts);
    free(sub);
    free(subl);
    return r;
}

/* 1 when the keys of an mdel span more than one cluster slot. */
static int spans_slots(const tc_cache *c, size_t n, const void *const *keys,
                       const size_t *klens)
{
    int first = -1;
    if (!c->cfg.cluster || n < 2)
        return 0;
    for (size_t i = 0; i < n; i++) {
        tc__pkey k;
        int s;
        if (tc__pkey_make(c, keys[i], klens[i], &k) != TC_OK)
            return 1; /* mdel_by_slot reports it */
        s = (int)tc__slot_of(k.p, k.len);
        tc__pkey_free(&k);
        if (first >= 0 && s != first)
            return 1;
        first = s;
    }
    return 0;
}

tc_result tc__mdel(tc_cache *c, size_t n, const void *const *keys,
                   const size_t *klens, const tc__cmd *extra,
                   uint64_t *deleted)
{
    tc_result r;
    tc__pkey *pk, sk = {NULL, 0, ""};
    const char **argv, **sargv;
    size_t *argl, *sargl, made = 0;
    char (*fields)[8] = NULL, stamp[TC__STAMP_MAX];
    size_t slen;
    redisReply *exec = NULL;
    tc__cmd cmds[3];
    tc__txn t;

    if (!c || !n || !keys || !klens)
        return tc__fail(TC_BAD_ARGUMENT, "NULL or empty argument");
    for (size_t i = 0; i < n; i++)
        if ((r = tc__check_key(c, keys[i], klens[i])) != TC_OK)
            return r;
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    if (spans_slots(c, n, keys, klens)) {
        if (extra)
            return tc__fail(TC_BAD_ARGUMENT,
                            "Redis Cluster: keys of different slots");
        return mdel_by_slot(c, n, keys, klens, deleted);
    }
    pk = malloc(n * sizeof(*pk));
    argv = malloc((n + 1) * sizeof(*argv));
    argl = malloc((n + 1) * sizeof(*argl));
    sargv = malloc((2 * n + 2) * sizeof(*sargv));
    sargl = malloc((2 * n + 2) * sizeof(*sargl));
    fields = malloc(n * sizeof(*fields));
    if (!pk || !argv || !argl || !sargv || !sargl || !fields) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    slen = tc__stamp_new(c, stamp);
    argv[0] = "DEL", argl[0] = 3;
    sargv[0] = "HSET", sargl[0] = 4;
    for (; made < n; made++) {
        uint64_t h = tc__hash(keys[made], klens[made]);
        if ((r = tc__pkey_make(c, keys[made], klens[made], &pk[made])) != TC_OK)
            goto out;
        /* All keys share one slot here: its stamps hash (stamps.h). */
        if (!made && (r = tc__stamps_key(c, pk[0].p, pk[0].len, &sk)) !=
                         TC_OK) {
            tc__pkey_free(&pk[made]);
            goto out;
        }
        sargv[1] = sk.p, sargl[1] = sk.len;
        argv[made + 1] = pk[made].p, argl[made + 1] = pk[made].len;
        sargv[2 * made + 2] = fields[made];
        sargl[2 * made + 2] = tc__stamp_field(h, fields[made]);
        sargv[2 * made + 3] = stamp, sargl[2 * made + 3] = slen;
        tc__l1_invalidate_key(c->l1, h, keys[made], klens[made]);
    }
    cmds[0] = (tc__cmd){(int)n + 1, argv, argl};
    cmds[1] = (tc__cmd){(int)(2 * n + 2), sargv, sargl};
    if ((r = tc__txn_begin(c, &t, n == 1 ? TC__MSG_KEY : TC__MSG_KEYS, n, keys,
                           klens, tc__write_is_strict(c, 0))) != TC_OK)
        goto out;
    if (extra)
        cmds[2] = *extra;
    r = tc__txn_exec(c, &t, extra ? 3 : 2, cmds, 0, &exec);
    tc__txn_end(c, &t, exec, r == TC_OK);
    if (r == TC_OK) {
        if (deleted && exec->element[0]->type == REDIS_REPLY_INTEGER)
            *deleted = (uint64_t)exec->element[0]->integer;
        freeReplyObject(exec);
    }
    /* Fills that fetched the old value during the DEL must not land. */
    for (size_t i = 0; i < n; i++)
        tc__l1_invalidate_key(c->l1, tc__hash(keys[i], klens[i]), keys[i],
                              klens[i]);
out:
    for (size_t i = 0; i < made; i++)
        tc__pkey_free(&pk[i]);
    if (sk.p)
        tc__pkey_free(&sk);
    free(pk);
    free(argv);
    free(argl);
    free(sargv);
    free(sargl);
    free(fields);
    return r;
}

tc_result tc_del(tc_cache *c, const void *key, size_t klen)
{
    const void *keys[1] = {key};
    return tc_mdel(c, 1, keys, &klen, NULL);
}
