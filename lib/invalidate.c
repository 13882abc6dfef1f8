/*
 * Invalidation by prefix, by pattern and of everything: L1 first, L2 by
 * SCAN + UNLINK in batches (never KEYS, never one long blocking command),
 * then the message, then L1 again (fills that raced with the deletion).
 * The global stamp is replaced before the scan, so a read-through store
 * that loaded before the invalidation cannot land after the scan passed.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cluster.h"
#include "stamps.h"

/* Escape glob metacharacters of [s, s+n) into `out` (2n bytes). */
static size_t glob_escape(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\", s[i]) && s[i])
            out[o++] = '\\';
        out[o++] = s[i];
    }
    return o;
}

/* Redis Cluster: one UNLINK per key (a batch spans slots), pipelined by
 * node. */
static tc_result unlink_each(tc_cache *c, const redisReply *keys)
{
    size_t n = keys->elements;
    const char **ua = malloc(2 * n * sizeof(*ua));
    size_t *ul = malloc(2 * n * sizeof(*ul));
    tc__cmd *cmds = malloc(n * sizeof(*cmds));
    redisReply **rep = malloc(n * sizeof(*rep));
    tc_result r = TC_NO_MEMORY;
    if (ua && ul && cmds && rep) {
        for (size_t i = 0; i < n; i++) {
            ua[2 * i] = "UNLINK", ul[2 * i] = 6;
            ua[2 * i + 1] = keys->element[i]->str;
            ul[2 * i + 1] = keys->element[i]->len;
            cmds[i] = (tc__cmd){2, ua + 2 * i, ul + 2 * i};
        }
        if ((r = tc__l2_run(c->l2, n, cmds, rep, 0)) == TC_OK)
            for (size_t i = 0; i < n; i++)
                freeReplyObject(rep[i]);
    } else {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
    }
    free(ua);
    free(ul);
    free(cmds);
    free(rep);
    return r;
}

/* UNLINK the keys of one SCAN batch. */
static tc_result unlink_batch(tc_cache *c, const redisReply *keys)
{
    const char **ua;
    size_t *ul;
    redisReply *ur;
    tc__cmd cmd;
    tc_result r;
    if (!keys->elements)
        return TC_OK;
    if (c->cfg.cluster)
        return unlink_each(c, keys);
    ua = malloc((keys->elements + 1) * sizeof(*ua));
    ul = malloc((keys->elements + 1) * sizeof(*ul));
    if (!ua || !ul) {
        free(ua);
        free(ul);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    ua[0] = "UNLINK", ul[0] = 6;
    for (size_t i = 0; i < keys->elements; i++)
        ua[i + 1] = keys->element[i]->str, ul[i + 1] = keys->element[i]->len;
    cmd = (tc__cmd){(int)keys->elements + 1, ua, ul};
    r = tc__l2_run(c->l2, 1, &cmd, &ur, 0);
    free(ua);
    free(ul);
    if (r == TC_OK)
        freeReplyObject(ur);
    return r;
}

/* SCAN the keyspace for `match` and UNLINK what it finds, batch by batch;
 * on a cluster, the keyspace of master `node` (NULL: not a cluster). */
static tc_result scan_unlink_on(tc_cache *c, const tc__node_addr *node,
                                const char *match, size_t mlen)
{
    char cursor[32] = "0";
    tc_result r;
    do {
        redisReply *rep;
        const char *a[6] = {"SCAN", cursor, "MATCH", match, "COUNT", "1000"};
        size_t l[6] = {4, strlen(cursor), 5, mlen, 5, 4};
        tc__cmd cmd = {6, a, l};
        r = node ? tc__l2_run_at(c->l2, node, 1, &cmd, &rep,
                                 TC__L2_IDEMPOTENT)
                 : tc__l2_run(c->l2, 1, &cmd, &rep, TC__L2_IDEMPOTENT);
        if (r != TC_OK)
            return r;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY ||
            rep->element[0]->len >= sizeof(cursor)) {
            freeReplyObject(rep);
            return tc__fail(TC_PROTOCOL, "SCAN: unexpected reply");
        }
        memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
        cursor[rep->element[0]->len] = '\0';
        r = unlink_batch(c, rep->element[1]);
        freeReplyObject(rep);
        if (r != TC_OK)
            return r;
    } while (strcmp(cursor, "0") != 0);
    return TC_OK;
}

/* Every master's keyspace on a cluster (the topology as it is now: a
 * master that joins during the scan is missed, as keys written during a
 * SCAN may be). */
static tc_result scan_unlink(tc_cache *c, const char *match, size_t mlen)
{
    tc__node_addr *m;
    size_t n;
    tc_result r = TC_OK;
    if (!c->cfg.cluster)
        return scan_unlink_on(c, NULL, match, mlen);
    if (!(m = malloc(TC__CLUSTER_MAX_NODES * sizeof(*m))))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    n = tc__cluster_masters(c->cfg.cluster, &c->cfg, m,
                            TC__CLUSTER_MAX_NODES);
    if (!n)
        r = tc__fail(TC_L2_UNAVAILABLE,
                     "Redis Cluster: no master known to scan");
    for (size_t i = 0; i < n && r == TC_OK; i++)
        r = scan_unlink_on(c, &m[i], match, mlen);
    free(m);
    return r;
}

static void drop_l1(tc_cache *c, tc__msg_kind kind, const char *arg,
                    size_t alen)
{
    if (kind == TC__MSG_PREFIX)
        tc__l1_invalidate_prefix(c->l1, arg, alen);
    else
        tc__l1_invalidate_glob(c->l1, arg, alen);
}

/* Publish `kind` with body `arg` in its own transaction (strict: wait). */
static tc_result publish_only(tc_cache *c, tc__msg_kind kind, size_t nk,
                              const void *const *keys, const size_t *klens)
{
    tc__txn t;
    redisReply *exec = NULL;
    tc_result r = tc__txn_begin(c, &t, kind, nk, keys, klens,
                                tc__write_is_strict(c, 0));
    if (r != TC_OK)
        return r;
    r = tc__txn_exec(c, &t, 0, NULL, 0, &exec);
    tc__txn_end(c, &t, exec, r == TC_OK);
    if (exec)
        freeReplyObject(exec);
    return r;
}

static tc_result invalidate_matching(tc_cache *c, tc__msg_kind kind,
                                     const char *arg, size_t alen)
{
    char *match;
    size_t mlen;
    tc_result r;
    const void *keys[1] = {arg};

    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    match = malloc(2 * (c->cfg.prefix_len + alen) + 2);
    if (!match)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    mlen = glob_escape(c->cfg.prefix, c->cfg.prefix_len, match);
    if (kind == TC__MSG_PREFIX) {
        mlen += glob_escape(arg, alen, match + mlen);
        match[mlen++] = '*';
    } else {
        memcpy(match + mlen, arg, alen);
        mlen += alen;
    }
    drop_l1(c, kind, arg, alen);
    r = tc__stamps_bump_all(c);
    if (r == TC_OK)
        r = scan_unlink(c, match, mlen);
    free(match);
    if (r == TC_OK && c->bus)
        r = publish_only(c, kind, 1, keys, &alen);
    drop_l1(c, kind, arg, alen);
    return r;
}

tc_result tc_invalidate_prefix(tc_cache *c, const void *prefix, size_t plen)
{
    if (!c || (!prefix && plen))
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    if (plen == 0)
        return tc__fail(TC_BAD_ARGUMENT,
                        "empty prefix: use tc_invalidate_all()");
    if (plen > c->cfg.max_key)
        return tc__fail(TC_TOO_LARGE, "prefix longer than max_key_bytes");
    return invalidate_matching(c, TC__MSG_PREFIX, prefix, plen);
}

tc_result tc_invalidate_pattern(tc_cache *c, const char *glob)
{
    size_t n;
    if (!c || !glob || !*glob)
        return tc__fail(TC_BAD_ARGUMENT, "NULL or empty pattern");
    n = strlen(glob);
    if (n > c->cfg.max_key)
        return tc__fail(TC_TOO_LARGE, "pattern longer than max_key_bytes");
    return invalidate_matching(c, TC__MSG_PATTERN, glob, n);
}

tc_result tc_invalidate_all(tc_cache *c)
{
    tc_result r = TC_OK;
    if (!c)
        return tc__fail(TC_BAD_ARGUMENT, "NULL cache");
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    tc__l1_clear(c->l1);
    if (c->bus)
        r = publish_only(c, TC__MSG_ALL, 0, NULL, NULL);
    tc__l1_clear(c->l1);
    return r;
}
