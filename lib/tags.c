/*
 * Tags: tc_set_tagged() records a key under tags, and
 * tc_invalidate_tags() deletes every key recorded under a tag, in L2 and
 * in every instance's L1.
 *
 * Design: a set per tag in Redis, "__tiercache:<stem>:tag:<tag>" (the
 * stem: the channel without its "__tiercache:"; as the bus's own keys),
 * holding logical keys. A tagged write is one script, in the write's own
 * transaction, that adds the key to each tag's set (stretching the set's
 * TTL to cover the key's) and only then SETs: a tag that cannot be
 * recorded stores nothing. Reads pay nothing: no tag is looked at when a
 * key is read.
 *
 * Invalidation moves the tag's set, atomically, into a draining set
 * ("...:tagdrain:<tag>"; writes tagged from then on start a new set), then
 * empties it in batches: each batch deletes its keys, removes them from
 * the draining set, stamps them and publishes one invalidation, in one
 * transaction (tc__mdel), so strict mode and the read-through guard hold
 * per batch. No SCAN: the cost is the number of keys under the tag. A
 * failed call leaves what it did not reach in the draining set, where the
 * next invalidation of the tag picks it up.
 *
 * A set may name keys that were since rewritten without the tag, deleted
 * or expired: invalidating the tag deletes such a key anyway (one spurious
 * deletion, never a stale read).
 *
 * Redis Cluster: a tag's set and draining set live in the tag's own slot
 * ("...:tag:{<slot tag>}<tag>", the slot of the tag's name: tc__own_key),
 * its keys anywhere, so no script can hold both. A tagged write records
 * the key in each tag's set first (one script per tag, on the set's
 * master; a failure stores nothing), then writes the key (its own MULTI
 * with its stamps and invalidation on its master: tc__set), then records
 * it again. The first record means a written key is always named by a
 * set (the current one, or a draining one that the invalidation which
 * drained it deletes anyway); the second covers an invalidation that
 * drained the set and deleted the key between the first record and the
 * write, which would otherwise leave the key written and named by no set.
 * A batch of a draining set is deleted split by slot (tc__mdel: one MULTI
 * per slot) and only then removed from the draining set, so a failure
 * leaves it there for the next call: not atomic across slots.
 *
 * Nothing shared: every call works on its own arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

enum { TAG_BATCH = 1000, TAGS_MAX = 64 };

/* KEYS: key, tag sets. ARGV: value, px ('' = none), logical key. */
static const char tagged_set_script[] =
    "for i = 2, #KEYS do "
    "  local k = KEYS[i] "
    "  local existed = redis.call('EXISTS', k) == 1 "
    "  redis.call('SADD', k, ARGV[3]) "
    "  if ARGV[2] == '' then "
    "    redis.call('PERSIST', k) "
    "  else "
    "    local t = redis.call('PTTL', k) "
    "    if not existed or (t >= 0 and t < tonumber(ARGV[2])) then "
    "      redis.call('PEXPIRE', k, ARGV[2]) "
    "    end "
    "  end "
    "end "
    "if ARGV[2] == '' then return redis.call('SET', KEYS[1], ARGV[1]) end "
    "return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])";

/* Redis Cluster: the first half of tagged_set_script, for one tag.
 * KEYS: tag set. ARGV: px ('' = none), logical key. */
static const char tag_add_script[] =
    "local k = KEYS[1] "
    "local existed = redis.call('EXISTS', k) == 1 "
    "redis.call('SADD', k, ARGV[2]) "
    "if ARGV[1] == '' then "
    "  redis.call('PERSIST', k) "
    "else "
    "  local t = redis.call('PTTL', k) "
    "  if not existed or (t >= 0 and t < tonumber(ARGV[1])) then "
    "    redis.call('PEXPIRE', k, ARGV[1]) "
    "  end "
    "end "
    "return 1";

/* KEYS: tag set, draining set. Moves the one into the other, keeping the
 * longer TTL (none if either has none); returns the draining set's size. */
static const char tag_drain_script[] =
    "local t = redis.call('PTTL', KEYS[1]) "
    "if t == -2 then return redis.call('SCARD', KEYS[2]) end "
    "local d = redis.call('PTTL', KEYS[2]) "
    "redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1]) "
    "redis.call('DEL', KEYS[1]) "
    "if t >= 0 and d ~= -1 then "
    "  redis.call('PEXPIRE', KEYS[2], math.max(t, d)) "
    "end "
    "return redis.call('SCARD', KEYS[2])";

/* "__tiercache:<channel stem>:<kind>:<tag>", on Redis Cluster
 * "...:<kind>:{<slot tag>}<tag>" (tc__own_key: the slot of the tag's
 * name, the same for the set and its draining set), malloc'd and
 * NUL-terminated. */
static char *tag_key(const tc_cache *c, const char *kind, const char *tag)
{
    const char *stem = tc__channel_stem(c->cfg.channel);
    size_t n = strlen(stem) + strlen(kind) + 16;
    char *base = malloc(n), *s = NULL;
    tc__pkey k;
    if (!base)
        return NULL;
    snprintf(base, n, "__tiercache:%s:%s:", stem, kind);
    if (tc__own_key(c, base, strlen(base), tag, strlen(tag), 1, &k) ==
        TC_OK) {
        if ((s = malloc(k.len + 1))) {
            memcpy(s, k.p, k.len);
            s[k.len] = '\0';
        }
        tc__pkey_free(&k);
    }
    free(base);
    return s;
}

static tc_result check_tags(const tc_cache *c, size_t ntags,
                            const char *const *tags)
{
    if (!ntags || !tags)
        return tc__fail(TC_BAD_ARGUMENT, "no tags");
    if (ntags > TAGS_MAX)
        return tc__fail(TC_BAD_ARGUMENT, "more than %d tags", TAGS_MAX);
    for (size_t i = 0; i < ntags; i++) {
        size_t n = tags[i] ? strlen(tags[i]) : 0;
        if (n == 0)
            return tc__fail(TC_BAD_ARGUMENT, "empty or NULL tag");
        if (n > c->cfg.max_key)
            return tc__fail(TC_TOO_LARGE, "tag of %zu bytes (max_key_bytes "
                                          "%zu)", n, c->cfg.max_key);
    }
    return TC_OK;
}

typedef struct tagged {
    const tc_cache *c;
    size_t ntags;
    const char *const *tags;
    const void *key;
    size_t klen;
} tagged;

/* The script that records the tags, then SETs (tc__set_cmd_fn). */
static tc_result tagged_set_cmd(void *ud, const tc__pkey *k, const void *val,
                                size_t vlen, const char *px, size_t pxlen,
                                tc__cmd *cmd, void **mem)
{
    tagged *tg = ud;
    size_t n = tg->ntags, argc = 7 + n;
    /* One block: argv, argl, the numkeys text, the tag set names. */
    struct {
        const char **argv;
        size_t *argl;
    } a;
    char *block, *nk, *names;
    const char *stem = tc__channel_stem(tg->c->cfg.channel);
    size_t names_len = 0;
    for (size_t i = 0; i < n; i++)
        names_len += strlen(stem) + strlen(tg->tags[i]) + 20;
    block = malloc(argc * (sizeof(char *) + sizeof(size_t)) + 16 + names_len);
    if (!block)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    a.argv = (const char **)(void *)block;
    a.argl = (size_t *)(void *)(block + argc * sizeof(char *));
    nk = block + argc * (sizeof(char *) + sizeof(size_t));
    names = nk + 16;
    snprintf(nk, 16, "%zu", n + 1);
    a.argv[0] = "EVAL", a.argl[0] = 4;
    a.argv[1] = tagged_set_script, a.argl[1] = sizeof(tagged_set_script) - 1;
    a.argv[2] = nk, a.argl[2] = strlen(nk);
    a.argv[3] = k->p, a.argl[3] = k->len;
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(names, names_len, "__tiercache:%s:tag:%s", stem,
                         tg->tags[i]);
        a.argv[4 + i] = names, a.argl[4 + i] = (size_t)w;
        names += w + 1;
        names_len -= (size_t)w + 1;
    }
    a.argv[4 + n] = val, a.argl[4 + n] = vlen;
    a.argv[5 + n] = px, a.argl[5 + n] = pxlen;
    a.argv[6 + n] = tg->key, a.argl[6 + n] = tg->klen;
    *cmd = (tc__cmd){(int)argc, a.argv, a.argl};
    *mem = block;
    return TC_OK;
}

/* Redis Cluster: record `key` in each tag's set, one script per tag
 * (pipelined by master); TTL as the tagged write's (`px`, "" = none). */
static tc_result record_tags(tc_cache *c, const void *key, size_t klen,
                             const char *px, size_t ntags,
                             const char *const *tags)
{
    char **names = calloc(ntags, sizeof(*names));
    const char **argv = malloc(6 * ntags * sizeof(*argv));
    size_t *argl = malloc(6 * ntags * sizeof(*argl));
    tc__cmd *cmds = calloc(ntags, sizeof(*cmds));
    redisReply **rep = calloc(ntags, sizeof(*rep));
    tc_result r = TC_OK;
    if (!names || !argv || !argl || !cmds || !rep) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ntags; i++) {
        const char **a = argv + 6 * i;
        size_t *l = argl + 6 * i;
        if (!(names[i] = tag_key(c, "tag", tags[i]))) {
            r = tc__fail(TC_NO_MEMORY, "out of memory");
            goto out;
        }
        a[0] = "EVAL", l[0] = 4;
        a[1] = tag_add_script, l[1] = sizeof(tag_add_script) - 1;
        a[2] = "1", l[2] = 1;
        a[3] = names[i], l[3] = strlen(names[i]);
        a[4] = px, l[4] = strlen(px);
        a[5] = key, l[5] = klen;
        cmds[i] = (tc__cmd){6, a, l};
    }
    if ((r = tc__l2_run(c->l2, ntags, cmds, rep, 0)) != TC_OK)
        goto out;
    for (size_t i = 0; i < ntags && r == TC_OK; i++)
        if (rep[i]->type == REDIS_REPLY_ERROR)
            r = tc__fail(TC_PROTOCOL, "recording tag \"%s\": %.*s", tags[i],
                         (int)rep[i]->len, rep[i]->str);
    for (size_t i = 0; i < ntags; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
out:
    for (size_t i = 0; names && i < ntags; i++)
        free(names[i]);
    free(names);
    free(argv);
    free(argl);
    free(cmds);
    free(rep);
    return r;
}

/* Redis Cluster: record, write, record again (the file's comment). */
static tc_result set_tagged_cluster(tc_cache *c, const void *key,
                                    size_t klen, const void *val, size_t vlen,
                                    const tc_set_opts *o, size_t ntags,
                                    const char *const *tags)
{
    static const tc_set_opts defaults;
    char px[24] = "";
    uint64_t ttl;
    tc_result r;
    if (!o)
        o = &defaults;
    if (o->flags & (TC_SET_NX | TC_SET_XX))
        return tc__fail(TC_BAD_ARGUMENT, "tags with NX or XX");
    if ((r = tc__check_key(c, key, klen)) != TC_OK ||
        (r = tc__check_value(c, val, vlen)) != TC_OK)
        return r;
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    ttl = o->l2_ttl_ms ? o->l2_ttl_ms : c->cfg.default_ttl_ms;
    if (ttl != TC_TTL_NONE)
        snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl);
    if ((r = record_tags(c, key, klen, px, ntags, tags)) != TC_OK)
        return r;
    if (c->tag_hook)
        c->tag_hook(c->tag_hook_arg, key, klen);
    if ((r = tc__set(c, key, klen, val, vlen, o, NULL, NULL)) != TC_OK)
        return r;
    return record_tags(c, key, klen, px, ntags, tags);
}

tc_result tc_set_tagged(tc_cache *c, const void *key, size_t klen,
                        const void *val, size_t vlen, const tc_set_opts *o,
                        size_t ntags, const char *const *tags)
{
    tagged tg = {c, ntags, tags, key, klen};
    tc_result r;
    if (!c)
        return tc__fail(TC_BAD_ARGUMENT, "NULL cache");
    if ((r = check_tags(c, ntags, tags)) != TC_OK)
        return r;
    if (c->cfg.cluster) /* tag sets and keys in different slots */
        return set_tagged_cluster(c, key, klen, val, vlen, o, ntags, tags);
    return tc__set(c, key, klen, val, vlen, o, tagged_set_cmd, &tg);
}

/* Move the tag's set into its draining set; *left: the keys to delete. */
static tc_result start_drain(tc_cache *c, const char *set, const char *drain,
                             long long *left)
{
    const char *argv[5] = {"EVAL", tag_drain_script, "2", set, drain};
    size_t argl[5] = {4, sizeof(tag_drain_script) - 1, 1, strlen(set),
                      strlen(drain)};
    tc__cmd cmd = {5, argv, argl};
    redisReply *rep = NULL;
    tc_result r = tc__l2_run(c->l2, 1, &cmd, &rep, 0);
    if (r != TC_OK)
        return r;
    if (rep->type != REDIS_REPLY_INTEGER)
        r = tc__fail(TC_PROTOCOL, "tag drain: %.*s",
                     rep->type == REDIS_REPLY_ERROR ? (int)rep->len : 0,
                     rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    else
        *left = rep->integer;
    freeReplyObject(rep);
    return r;
}

/* One batch: up to TAG_BATCH keys of the draining set deleted everywhere
 * and removed from it, in one transaction. *done when it was empty. */
static tc_result drain_batch(tc_cache *c, const char *drain, uint64_t *deleted,
                             int *done)
{
    char count[16];
    const char *argv[3] = {"SRANDMEMBER", drain, count};
    size_t argl[3] = {11, strlen(drain), 0};
    tc__cmd cmd = {3, argv, argl};
    redisReply *rep = NULL;
    const void **keys = NULL;
    const char **sargv = NULL;
    size_t *klens = NULL, *sargl = NULL, n, nkeys = 0;
    uint64_t del = 0;
    tc_result r;

    argl[2] = (size_t)snprintf(count, sizeof(count), "%d", TAG_BATCH);
    if ((r = tc__l2_run(c->l2, 1, &cmd, &rep, TC__L2_IDEMPOTENT)) != TC_OK)
        return r;
    if (rep->type != REDIS_REPLY_ARRAY) {
        r = tc__fail(TC_PROTOCOL, "SRANDMEMBER on a tag: %.*s",
                     rep->type == REDIS_REPLY_ERROR ? (int)rep->len : 0,
                     rep->type == REDIS_REPLY_ERROR ? rep->str : "");
        goto out;
    }
    n = rep->elements;
    if (n == 0) {
        *done = 1;
        goto out;
    }
    keys = malloc(n * sizeof(*keys));
    klens = malloc(n * sizeof(*klens));
    sargv = malloc((n + 2) * sizeof(*sargv));
    sargl = malloc((n + 2) * sizeof(*sargl));
    if (!keys || !klens || !sargv || !sargl) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    sargv[0] = "SREM", sargl[0] = 4;
    sargv[1] = drain, sargl[1] = strlen(drain);
    for (size_t i = 0; i < n; i++) {
        const redisReply *m = rep->element[i];
        if (m->type != REDIS_REPLY_STRING)
            continue;
        sargv[2 + i] = m->str, sargl[2 + i] = m->len;
        /* Something that is not a key of ours (written into the set by
         * hand) is only removed. */
        if (m->len > 0 && m->len <= c->cfg.max_key) {
            keys[nkeys] = m->str;
            klens[nkeys++] = m->len;
        }
    }
    {
        tc__cmd srem = {(int)n + 2, sargv, sargl};
        if (nkeys && c->cfg.cluster) {
            /* Keys of many slots: deleted one MULTI per slot, and only
             * then removed from the draining set. */
            redisReply *sr = NULL;
            if ((r = tc__mdel(c, nkeys, keys, klens, NULL, &del)) == TC_OK &&
                (r = tc__l2_run(c->l2, 1, &srem, &sr, 0)) == TC_OK)
                freeReplyObject(sr);
        } else if (nkeys)
            r = tc__mdel(c, nkeys, keys, klens, &srem, &del);
        else {
            redisReply *sr = NULL;
            if ((r = tc__l2_run(c->l2, 1, &srem, &sr, 0)) == TC_OK)
                freeReplyObject(sr);
        }
    }
    *deleted += del;
out:
    free(keys);
    free(klens);
    free(sargv);
    free(sargl);
    freeReplyObject(rep);
    return r;
}

tc_result tc_invalidate_tags(tc_cache *c, size_t ntags,
                             const char *const *tags, uint64_t *deleted)
{
    uint64_t del = 0;
    tc_result r;
    if (!c)
        return tc__fail(TC_BAD_ARGUMENT, "NULL cache");
    if ((r = check_tags(c, ntags, tags)) != TC_OK)
        return r;
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    for (size_t i = 0; i < ntags && r == TC_OK; i++) {
        char *set = tag_key(c, "tag", tags[i]);
        char *drain = tag_key(c, "tagdrain", tags[i]);
        long long left = 0;
        int done = 0;
        if (!set || !drain)
            r = tc__fail(TC_NO_MEMORY, "out of memory");
        else
            r = start_drain(c, set, drain, &left);
        /* The set only shrinks (tagged writes go to the tag's new set), so
         * this ends; a bound guards against anyone refilling it by hand. */
        for (long long b = 0; r == TC_OK && !done &&
                              b <= left / TAG_BATCH + 16;
             b++)
            r = drain_batch(c, drain, &del, &done);
        if (r == TC_OK && !done)
            r = tc__fail(TC_PROTOCOL, "tag \"%s\": its draining set kept "
                                      "refilling", tags[i]);
        free(set);
        free(drain);
    }
    if (deleted)
        *deleted = del;
    return r;
}
