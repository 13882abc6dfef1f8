/*
 * Any Redis command on Redis Cluster (command.h, tc__cluster_command):
 * what tc_command does so that a plain Redis client in front of it
 * (tiercached's) sees one Redis, in the spirit of redis-cluster-proxy.
 *
 *   - keys of one slot: not here; command.c sends the command (and a
 *     write's stamps and invalidation, in its MULTI) to that slot's master;
 *   - keys of several slots: MGET, MSET, DEL, UNLINK, EXISTS, TOUCH split
 *     by slot, each part run by tc__command_run (a write part: one MULTI
 *     with its invalidation on its master), one slot after the other, the
 *     replies merged: atomic per slot only, and a failure stops at that
 *     slot (the slots before it stay written). Anything else: Redis
 *     Cluster's own CROSSSLOT error, nothing sent;
 *   - the whole keyspace: DBSIZE (the sum), KEYS (every master's keys),
 *     SCAN (the cursor names the master: node cursor x 128 + its index in
 *     the masters sorted by address), RANDOMKEY (the first master, from a
 *     random one, that has a key), FLUSHDB / FLUSHALL (on every master,
 *     then every copy everywhere invalidated: not atomic).
 *
 * Thread safety: as tc_command: any number of threads at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache.h"
#include "cluster.h"
#include "command.h"
#include "parse.h"
#include "slot.h"

/* SCAN cursors: the master's index in the low bits. */
#define NODE_BITS 7
#if (1 << NODE_BITS) < TC__CLUSTER_MAX_NODES
#error "NODE_BITS too small for TC__CLUSTER_MAX_NODES"
#endif

static int is(const tc__prepared *p, const char *name)
{
    size_t n = strlen(name);
    return p->argvlen[0] == n && !strncasecmp(p->argv[0], name, n);
}

static redisReply *new_reply(int type)
{
    redisReply *r = calloc(1, sizeof(*r));
    if (r)
        r->type = type;
    return r;
}

static redisReply *new_array(size_t n)
{
    redisReply *r = new_reply(REDIS_REPLY_ARRAY);
    if (r && n && !(r->element = calloc(n, sizeof(*r->element)))) {
        free(r);
        return NULL;
    }
    if (r)
        r->elements = n;
    return r;
}

static redisReply *new_string(int type, const char *s, size_t n)
{
    redisReply *r = new_reply(type);
    if (r && !(r->str = malloc(n + 1))) {
        free(r);
        return NULL;
    }
    if (r) {
        memcpy(r->str, s, n);
        r->str[n] = '\0';
        r->len = n;
    }
    return r;
}

static tc_result reply_or_oom(redisReply *rep, redisReply **out)
{
    if (!(*out = rep))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    return TC_OK;
}

/* ---- keys of several slots ----------------------------------------------- */

/* Split `p` (keys of several slots) into one command per slot, in the
 * order each slot first appears, run them, merge the replies. */
static tc_result split(tc_cache *c, const tc__cmdtab *t, const tc__prepared *p,
                       const char *const *argv, const size_t *argvlen,
                       redisReply **out)
{
    int mset = is(p, "MSET"), mget = is(p, "MGET");
    int per = mset ? 2 : 1; /* arguments per key */
    size_t nk = p->keys.n;
    int *slot = malloc(nk * sizeof(*slot));
    size_t *group = malloc(nk * sizeof(*group)); /* key -> its group */
    size_t *at = malloc(nk * sizeof(*at));       /* key -> place in it */
    int *gslot = malloc(nk * sizeof(*gslot));
    const char **sv = malloc((nk * (size_t)per + 1) * sizeof(*sv));
    size_t *sl = malloc((nk * (size_t)per + 1) * sizeof(*sl));
    redisReply **parts = calloc(nk, sizeof(*parts));
    redisReply *merged = NULL;
    size_t ng = 0;
    long long sum = 0;
    tc_result r = TC_OK;

    if (!slot || !group || !at || !gslot || !sv || !sl || !parts) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nk; i++) {
        int pos = p->keys.pos[i];
        size_t g = 0;
        slot[i] = (int)tc__slot_of(p->argv[pos], p->argvlen[pos]);
        while (g < ng && gslot[g] != slot[i])
            g++;
        if (g == ng)
            gslot[ng++] = slot[i];
        group[i] = g;
    }
    /* Each group: the command name, then its keys (and MSET's values) as
     * the caller wrote them; tc__command_run prefixes them again. */
    for (size_t g = 0; g < ng && r == TC_OK; g++) {
        int argc = 1;
        sv[0] = argv[0], sl[0] = argvlen[0];
        for (size_t i = 0; i < nk; i++) {
            int pos = p->keys.pos[i];
            if (group[i] != g)
                continue;
            at[i] = (size_t)(argc - 1) / (size_t)per;
            for (int k = 0; k < per; k++)
                sv[argc] = argv[pos + k], sl[argc++] = argvlen[pos + k];
        }
        r = tc__command_run(c, t, argc, sv, sl, &parts[g]);
        if (r == TC_OK && parts[g]->type == REDIS_REPLY_ERROR) {
            /* Redis's answer for this slot (WRONGTYPE, OOM ...) is the
             * answer; the slots before it ran. */
            merged = parts[g];
            parts[g] = NULL;
            goto out;
        }
    }
    if (r != TC_OK)
        goto out;
    if (mget) {
        if (!(merged = new_array(nk))) {
            r = tc__fail(TC_NO_MEMORY, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < nk; i++) {
            redisReply *part = parts[group[i]];
            if (part->type != REDIS_REPLY_ARRAY || at[i] >= part->elements) {
                freeReplyObject(merged);
                merged = NULL;
                r = tc__fail(TC_PROTOCOL, "MGET: unexpected reply");
                goto out;
            }
            merged->element[i] = part->element[at[i]];
            part->element[at[i]] = NULL;
        }
    } else if (mset) {
        merged = parts[0];
        parts[0] = NULL;
    } else {
        for (size_t g = 0; g < ng; g++)
            sum += parts[g]->type == REDIS_REPLY_INTEGER ? parts[g]->integer
                                                         : 0;
        if ((merged = new_reply(REDIS_REPLY_INTEGER)))
            merged->integer = sum;
        else
            r = tc__fail(TC_NO_MEMORY, "out of memory");
    }
out:
    if (parts)
        for (size_t g = 0; g < ng; g++)
            freeReplyObject(parts[g]);
    free(slot);
    free(group);
    free(at);
    free(gslot);
    free(sv);
    free(sl);
    free(parts);
    if (r == TC_OK)
        *out = merged;
    return r;
}

/* ---- the whole keyspace -------------------------------------------------- */

static int addr_cmp(const void *a, const void *b)
{
    const tc__node_addr *x = a, *y = b;
    int d = strcmp(x->host, y->host);
    return d ? d : (x->port > y->port) - (x->port < y->port);
}

/* The masters, sorted by address (a SCAN cursor names one by index). */
static size_t masters(tc_cache *c, tc__node_addr *m)
{
    size_t n = tc__cluster_masters(c->cfg.cluster, &c->cfg, m,
                                   TC__CLUSTER_MAX_NODES);
    qsort(m, n, sizeof(*m), addr_cmp);
    if (!n)
        tc__fail(TC_L2_UNAVAILABLE, "Redis Cluster: no master known");
    return n;
}

static tc_result run_at(tc_cache *c, const tc__node_addr *a, int argc,
                        const char **argv, const size_t *argvlen,
                        redisReply **rep)
{
    tc__cmd cmd = {argc, argv, argvlen};
    return tc__l2_run_at(c->l2, a, 1, &cmd, rep, 0);
}

/* SCAN <cursor> [MATCH ...] [COUNT ...] [TYPE ...] over every master. */
static tc_result scan(tc_cache *c, const tc__prepared *p,
                      const tc__node_addr *m, size_t n, redisReply **out)
{
    uint64_t cur, node_cur;
    size_t idx;
    char cbuf[32];
    const char **av;
    size_t *al;
    redisReply *rep = NULL;
    tc_result r;
    if (p->argc < 2 ||
        tc__parse_u64(p->argv[1], p->argvlen[1], 0, UINT64_MAX, &cur) != 0 ||
        (idx = (size_t)(cur & ((1u << NODE_BITS) - 1))) >= n)
        return reply_or_oom(
            new_string(REDIS_REPLY_ERROR, "ERR invalid cursor", 18), out);
    node_cur = cur >> NODE_BITS;
    av = malloc((size_t)p->argc * sizeof(*av));
    al = malloc((size_t)p->argc * sizeof(*al));
    if (!av || !al) {
        free(av);
        free(al);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    memcpy(av, p->argv, (size_t)p->argc * sizeof(*av));
    memcpy(al, p->argvlen, (size_t)p->argc * sizeof(*al));
    av[1] = cbuf;
    al[1] = (size_t)snprintf(cbuf, sizeof(cbuf), "%llu",
                             (unsigned long long)node_cur);
    r = run_at(c, &m[idx], p->argc, av, al, &rep);
    free(av);
    free(al);
    if (r != TC_OK)
        return r;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING) {
        uint64_t next;
        redisReply *s;
        if (tc__parse_u64(rep->element[0]->str, rep->element[0]->len, 0,
                          UINT64_MAX >> NODE_BITS, &next) != 0) {
            freeReplyObject(rep);
            return tc__fail(TC_PROTOCOL, "SCAN: cursor too large to encode");
        }
        if (next == 0) /* this master is done: the next one from 0 */
            next = idx + 1 < n ? (uint64_t)(idx + 1) : 0;
        else
            next = next << NODE_BITS | idx;
        snprintf(cbuf, sizeof(cbuf), "%llu", (unsigned long long)next);
        if (!(s = new_string(REDIS_REPLY_STRING, cbuf, strlen(cbuf)))) {
            freeReplyObject(rep);
            return tc__fail(TC_NO_MEMORY, "out of memory");
        }
        freeReplyObject(rep->element[0]);
        rep->element[0] = s;
    }
    *out = rep;
    return TC_OK;
}

/* DBSIZE, KEYS, RANDOMKEY, FLUSHDB, FLUSHALL on every master. */
static tc_result every_master(tc_cache *c, const tc__prepared *p,
                              const tc__node_addr *m, size_t n,
                              redisReply **out)
{
    int keys = is(p, "KEYS"), dbsize = is(p, "DBSIZE");
    int random = is(p, "RANDOMKEY");
    int flush = is(p, "FLUSHDB") || is(p, "FLUSHALL");
    redisReply **reps = calloc(n, sizeof(*reps)), *res = NULL;
    size_t start = random ? (size_t)(tc__now_ns() / 1000) % n : 0, total = 0;
    tc_result r = TC_OK;
    if (!reps)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if (flush)
        tc__l1_clear(c->l1);
    for (size_t k = 0; k < n && r == TC_OK; k++) {
        size_t i = (start + k) % n;
        r = run_at(c, &m[i], p->argc, (const char **)p->argv, p->argvlen,
                   &reps[i]);
        if (r != TC_OK)
            break;
        if (reps[i]->type == REDIS_REPLY_ERROR) {
            res = reps[i]; /* Redis's answer (a syntax error ...) */
            reps[i] = NULL;
            break;
        }
        if (random && reps[i]->type == REDIS_REPLY_STRING) {
            res = reps[i];
            reps[i] = NULL;
            break;
        }
        if (keys && reps[i]->type == REDIS_REPLY_ARRAY)
            total += reps[i]->elements;
        if (dbsize && reps[i]->type == REDIS_REPLY_INTEGER)
            total += (size_t)reps[i]->integer;
    }
    /* A flush that reached some master: everything everywhere goes, even
     * when another master failed. */
    if (flush) {
        tc_result ir = tc__invalidate_everything(c);
        if (r == TC_OK && ir != TC_OK)
            r = ir;
    }
    if (r == TC_OK && !res) {
        if (keys && (res = new_array(total))) {
            size_t at = 0;
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; reps[i] && j < reps[i]->elements; j++) {
                    res->element[at++] = reps[i]->element[j];
                    reps[i]->element[j] = NULL;
                }
        } else if (dbsize && (res = new_reply(REDIS_REPLY_INTEGER))) {
            res->integer = (long long)total;
        } else if (random) {
            res = new_reply(REDIS_REPLY_NIL);
        } else if (flush) {
            res = new_string(REDIS_REPLY_STATUS, "OK", 2);
        }
        if (!res)
            r = tc__fail(TC_NO_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        freeReplyObject(reps[i]);
    free(reps);
    if (r != TC_OK) {
        freeReplyObject(res);
        return r;
    }
    *out = res;
    return TC_OK;
}

static tc_result whole_keyspace(tc_cache *c, const tc__prepared *p,
                                redisReply **out)
{
    tc__node_addr *m = malloc(TC__CLUSTER_MAX_NODES * sizeof(*m));
    size_t n;
    tc_result r;
    if (!m)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if (!(n = masters(c, m)))
        r = TC_L2_UNAVAILABLE;
    else
        r = is(p, "SCAN") ? scan(c, p, m, n, out)
                          : every_master(c, p, m, n, out);
    free(m);
    return r;
}

int tc__cluster_command(tc_cache *c, const tc__cmdtab *t,
                        const tc__prepared *p, int argc,
                        const char *const *argv, const size_t *argvlen,
                        redisReply **out, tc_result *r)
{
    int slot = tc__prepared_slot(p);
    char err[300];
    *out = NULL;
    if ((slot == -2 || p->keys.n == 0) &&
        tc__cmdtab_check(t, argc, argv, argvlen, err, sizeof(err)) == 2) {
        /* Redis's arity error, before any split reads past the end. */
        *r = reply_or_oom(new_string(REDIS_REPLY_ERROR, err, strlen(err)),
                          out);
        return 1;
    }
    if (slot == -2 && is(p, "MSET") && argc % 2 == 0) {
        /* A key without its value: Redis's own answer (msetCommand). */
        static const char arity[] =
            "ERR wrong number of arguments for 'mset' command";
        *r = reply_or_oom(new_string(REDIS_REPLY_ERROR, arity,
                                     sizeof(arity) - 1),
                          out);
        return 1;
    }
    if (slot == -2) {
        if (is(p, "MGET") || is(p, "MSET") || is(p, "DEL") ||
            is(p, "UNLINK") || is(p, "EXISTS") || is(p, "TOUCH"))
            *r = split(c, t, p, argv, argvlen, out);
        else
            *r = reply_or_oom(new_string(REDIS_REPLY_ERROR, TC__CROSSSLOT,
                                         strlen(TC__CROSSSLOT)),
                              out);
        return 1;
    }
    if (p->keys.n == 0 &&
        (is(p, "DBSIZE") || is(p, "KEYS") || is(p, "SCAN") ||
         is(p, "RANDOMKEY") || is(p, "FLUSHDB") || is(p, "FLUSHALL"))) {
        *r = whole_keyspace(c, p, out);
        return 1;
    }
    return 0;
}
