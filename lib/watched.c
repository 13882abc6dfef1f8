/*
 * A write on a connection that WATCHes keys, atomic with its invalidation.
 *
 * Our usual wrapper, MULTI + the write + stamps + PUBLISH + EXEC, cannot
 * carry it: EXEC would end the caller's WATCH. A script can: it runs the
 * command with redis.pcall(), then, only when the command did not fail,
 * writes the stamps and PUBLISHes the invalidation (and, in strict mode,
 * counts the instances to wait for, with the lease count script of
 * lease.c) in the same atomic step. WATCH semantics are unchanged: a write
 * inside a script dirties watched keys, the caller's own included, exactly
 * as the plain command does. The reply is the pcall's, so errors keep
 * Redis's texts; a nil array (LPOP k n, LMPOP, ZMPOP), which Lua cannot
 * tell from a nil bulk, is restored for the commands that answer one.
 *
 * Thread safety: as tc_session_*: one thread per connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache.h"
#include "cluster.h"
#include "command.h"

/* ARGV: n, the command's n arguments, h, the stamps' HSET's h arguments,
 * channel (empty: no bus), message, then for strict mode the count
 * script's lease and instance id (KEYS: its members, clock, epoch keys). */
static const char script_head[] =
    "local n = tonumber(ARGV[1]) "
    "local r = redis.pcall(unpack(ARGV, 2, n + 1)) "
    "if type(r) == 'table' and r.err then return {r} end "
    "local i = n + 2 "
    "local h = tonumber(ARGV[i]) "
    "if h > 0 then redis.call(unpack(ARGV, i + 1, i + h)) end "
    "i = i + h + 1 "
    "if ARGV[i] ~= '' then redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end "
    "if #KEYS == 0 then return {r, 1} end "
    "local count = function(KEYS, ARGV) ";
static const char script_tail[] =
    " end "
    "return {r, 1, count(KEYS, {ARGV[i + 2], ARGV[i + 3]})}";

/* unpack() is bounded by Lua's C stack (LUAI_MAXCSTACK, 8000). */
#define MAX_SCRIPT_ARGS 7000

int tc__watched_write_fits(const tc__prepared *p, const tc__written *w)
{
    return !p->keys.noscript && p->keys.cls == TC__CLASS_PLAIN &&
           (size_t)p->argc + 2 * w->n + 16 < MAX_SCRIPT_ARGS;
}

static int is(const tc__prepared *p, const char *word)
{
    return p->argvlen[0] == strlen(word) &&
           !strncasecmp(p->argv[0], word, p->argvlen[0]);
}

/* Commands whose "nothing" is a nil array, which Lua returned as a nil
 * bulk. */
static int answers_nil_array(const tc__prepared *p)
{
    return ((is(p, "lpop") || is(p, "rpop")) && p->argc == 3) ||
           is(p, "lmpop") || is(p, "zmpop");
}

static char *make_script(size_t *len)
{
    const char *count = tc__bus_count_script();
    size_t n = sizeof(script_head) - 1 + strlen(count) +
               sizeof(script_tail) - 1;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    snprintf(s, n + 1, "%s%s%s", script_head, count, script_tail);
    *len = n;
    return s;
}

tc_result tc__watched_write(tc_cache *c, tc__conn *conn,
                            const tc__node_addr *node, const tc__prepared *p,
                            const tc__written *w, redisReply **out)
{
    tc__write_op op;
    tc_result r;
    redisReply *rep = NULL, *none = NULL;
    const char **argv = NULL;
    size_t *argl = NULL, slen = 0, k = 0, nh;
    char *script = NULL, *chan = NULL, nbuf[24], hbuf[24], lease[24];
    int strict, published;
    *out = NULL;
    if ((r = tc__write_begin(c, 1, p, w, &op)) != TC_OK)
        return r;
    /* On Redis Cluster the members set lives in another slot: the count
     * runs after the write instead (tc__txn_end(), publish.c). */
    strict = op.t.strict && !node;
    nh = op.ncmd > 1 ? (size_t)op.cmds[1].argc : 0;
    script = make_script(&slen);
    argv = malloc(((size_t)p->argc + nh + 16) * sizeof(*argv));
    argl = malloc(((size_t)p->argc + nh + 16) * sizeof(*argl));
    if (node) /* the master's own channel (tc__txn_exec_on()) */
        chan = tc__cluster_node_channel_dup(c->cfg.channel, node);
    if (!script || !argv || !argl || (node && !chan)) {
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto done;
    }
    argv[k] = "EVAL", argl[k++] = 4;
    argv[k] = script, argl[k++] = slen;
    argv[k] = strict ? "3" : "0", argl[k++] = 1;
    if (strict) {
        argv[k] = tc__bus_members_key(c->bus), argl[k] = strlen(argv[k]), k++;
        argv[k] = tc__bus_clock_key(c->bus), argl[k] = strlen(argv[k]), k++;
        argv[k] = tc__bus_epoch_key(c->bus), argl[k] = strlen(argv[k]), k++;
    }
    argl[k] = (size_t)snprintf(nbuf, sizeof(nbuf), "%d", p->argc);
    argv[k++] = nbuf;
    for (int i = 0; i < p->argc; i++)
        argv[k] = p->argv[i], argl[k++] = p->argvlen[i];
    argl[k] = (size_t)snprintf(hbuf, sizeof(hbuf), "%zu", nh);
    argv[k++] = hbuf;
    for (size_t i = 0; i < nh; i++) {
        argv[k] = op.cmds[1].argv[i];
        argl[k++] = op.cmds[1].argvlen ? op.cmds[1].argvlen[i]
                                       : strlen(op.cmds[1].argv[i]);
    }
    if (op.t.msg) {
        argv[k] = chan ? chan : c->cfg.channel, argl[k] = strlen(argv[k]),
        k++;
        argv[k] = op.t.msg, argl[k++] = op.t.msglen;
    } else {
        argv[k] = "", argl[k++] = 0;
        argv[k] = "", argl[k++] = 0;
    }
    if (strict) {
        argl[k] = (size_t)snprintf(lease, sizeof(lease), "%u",
                                   c->cfg.lease_ms);
        argv[k++] = lease;
        argv[k] = c->id, argl[k] = strlen(c->id), k++;
    }
    r = tc__conn_command(conn, (int)k, argv, argl, &rep);
done:
    published = r == TC_OK && rep->type == REDIS_REPLY_ARRAY &&
                rep->elements >= 2;
    if (published) {
        if (c->bus && op.t.msg)
            tc__bus_count_published(c->bus);
        /* [reply, 1, members]: what tc__txn_end() reads, last */
        r = tc__write_finish(c, 1, 1, w, &op, TC_OK, &rep);
    } else {
        tc_result why = r;
        /* Nothing published: the command failed (its error is the
         * reply), or the script did. */
        tc__fail(TC_PROTOCOL, "watched write: not published");
        (void)tc__write_finish(c, 1, 1, w, &op, TC_PROTOCOL, &none);
        freeReplyObject(none);
        r = why;
    }
    free(script);
    free(chan);
    free(argv);
    free(argl);
    if (r != TC_OK) {
        freeReplyObject(rep);
        return r;
    }
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1) {
        redisReply *e = rep->element[0];
        rep->element[0] = NULL;
        freeReplyObject(rep);
        rep = e;
        if (rep->type == REDIS_REPLY_NIL && answers_nil_array(p))
            rep->integer = 1; /* tc_reply_is_nil_array() */
    } else {
        /* The script failed (not the command: pcall caught that), maybe
         * after the command wrote: invalidated after it, then. */
        redisReply *e = NULL;
        if (tc__run_write(c, NULL, NULL, 0, NULL, w, &e) == TC_OK)
            freeReplyObject(e);
    }
    *out = rep;
    return TC_OK;
}
