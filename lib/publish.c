/*
 * One write and its invalidation, atomically: MULTI, the write commands,
 * PUBLISH, EXEC, so the change and its publication happen together or not
 * at all. A strict write also counts the instances that may be serving L1
 * (count script, lease.c), and then waits for their acknowledgements or
 * for its lease. On one Redis the count is in the same transaction.
 *
 * On Redis Cluster the transaction runs on the key's master and cannot
 * name the members set, which lives in another slot: the count is a
 * second step, sent to the members' master after EXEC returned (T_e
 * below; the count runs at T_c > T_e). Why no instance X escapes it:
 *   - the lease fallback needs no count at all: X serves L1 at t only on
 *     a proof whose token through the key's master A was sent at s with
 *     t < s + lease (lease.c; margin for clock rates). If that token ran
 *     on A after the EXEC, its pong came after the invalidation on the
 *     same connection: X applied it first. If not, s < T_e and the proof
 *     lapses before T_e + lease, which is before the writer's deadline
 *     (taken after the count returned). So a writer that waits out its
 *     lease is safe whoever was counted, and a lost or late
 *     acknowledgement (acks travel over the members' master, tokens and
 *     invalidations never cross the cluster bus) only makes it wait;
 *   - an instance the count did not list (its last heartbeat script ran
 *     more than two leases before T_c, or after it): a proof from a
 *     heartbeat that ran before T_c - 2 leases lapsed before T_c - lease.
 *     A heartbeat that ran after T_c: on a cluster the bus sends the
 *     token's PINGs through the other nodes only once the heartbeat
 *     script's reply came back (lease.c), so they ran on A after T_c >
 *     T_e, and its pong proves X applied the invalidation before that
 *     proof serves anything. An instance that registers after the count
 *     is the same case: its fills from L2 are served only under a proof
 *     whose tokens ran after its registration;
 *   - an instance the count listed is waited for until it acknowledges
 *     (it applied the message) or until the lease (above).
 * The members' master failing over is the epoch fence of one Redis (the
 * count answers 0: wait out the lease); the key's master dying breaks
 * every link to it, so no proof through it is renewed.
 * Assumed: the node that runs the write is one every bus subscribes on.
 * Every bus subscribes on every node CLUSTER NODES lists, replicas and
 * masters without slots included, and stops its lease while its poll
 * lists a node it does not subscribe on (lease.c, "Redis Cluster"); what
 * remains is a node that runs writes before the state keys' master lists
 * it (gossip delay): the writer then waits out its lease, and another
 * instance's lease covers the write only up to that delay.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "cluster.h"

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

int tc__write_is_strict(const tc_cache *c, int flags)
{
    if (!c->bus)
        return 0;
    if (flags & TC_SET_STRICT)
        return 1;
    if (flags & TC_SET_ASYNC)
        return 0;
    return c->cfg.coherence == TC_COHERENCE_STRICT;
}

tc_result tc__txn_begin(tc_cache *c, tc__txn *t, tc__msg_kind kind, size_t nk,
                        const void *const *keys, const size_t *klens,
                        int strict)
{
    memset(t, 0, sizeof(*t));
    t->strict = strict && c->bus;
    if (t->strict && !(t->seq = tc__bus_strict_begin(c->bus, &t->w)))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if (c->bus) {
        t->msg = tc__msg_encode(kind, c->id, t->seq, realtime_us(), nk, keys,
                                klens, &t->msglen);
        if (!t->msg) {
            tc__txn_end(c, t, NULL, 0);
            return tc__fail(TC_NO_MEMORY, "out of memory");
        }
    }
    return TC_OK;
}

/* `n` commands pipelined on `conn` (a caller's own), `n` replies back. A
 * failure leaves the connection out of step: the caller drops it. */
static tc_result run_on(tc__conn *conn, size_t n, const tc__cmd *cmds,
                        redisReply **rep)
{
    tc_result r = TC_OK;
    size_t got = 0;
    for (size_t i = 0; i < n && r == TC_OK; i++)
        r = tc__conn_append(conn, cmds[i].argc, cmds[i].argv,
                            cmds[i].argvlen);
    for (; r == TC_OK && got < n; got++)
        r = tc__conn_get_reply(conn, &rep[got]);
    if (r != TC_OK)
        for (size_t i = 0; i + 1 < got; i++)
            freeReplyObject(rep[i]);
    return r;
}

tc_result tc__txn_exec(tc_cache *c, tc__txn *t, size_t n, const tc__cmd *writes,
                       int inline_publish, redisReply **exec)
{
    return tc__txn_exec_on(c, NULL, NULL, t, n, writes, inline_publish, exec);
}

tc_result tc__txn_build(tc_cache *c, tc__txn *t, size_t n,
                        const tc__cmd *writes, int inline_publish,
                        tc__txn_cmds *out)
{
    size_t ncmd = 0;
    tc__cmd *cmds = malloc((n + 4) * sizeof(*cmds));
    memset(out, 0, sizeof(*out));
    if (!cmds)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    out->multi[0] = "MULTI";
    out->execv[0] = "EXEC";
    cmds[ncmd++] = (tc__cmd){1, out->multi, NULL};
    for (size_t i = 0; i < n; i++)
        cmds[ncmd++] = writes[i];
    if (t->msg && !inline_publish) {
        out->pub[0] = "PUBLISH", out->publ[0] = 7;
        out->pub[1] = c->cfg.channel, out->publ[1] = strlen(c->cfg.channel);
        out->pub[2] = t->msg, out->publ[2] = t->msglen;
        cmds[ncmd++] = (tc__cmd){3, out->pub, out->publ};
    }
    if (t->strict && !c->cfg.cluster) {
        const char **count = out->count;
        size_t *countl = out->countl;
        count[0] = "EVAL", countl[0] = 4;
        count[1] = tc__bus_count_script(), countl[1] = strlen(count[1]);
        count[2] = "3", countl[2] = 1;
        count[3] = tc__bus_members_key(c->bus), countl[3] = strlen(count[3]);
        count[4] = tc__bus_clock_key(c->bus), countl[4] = strlen(count[4]);
        count[5] = tc__bus_epoch_key(c->bus), countl[5] = strlen(count[5]);
        countl[6] = (size_t)snprintf(out->lease, sizeof(out->lease), "%u",
                                     c->cfg.lease_ms);
        count[6] = out->lease;
        count[7] = c->id, countl[7] = strlen(c->id);
        cmds[ncmd++] = (tc__cmd){8, count, countl};
    }
    cmds[ncmd++] = (tc__cmd){1, out->execv, NULL};
    out->cmds = cmds;
    out->n = ncmd;
    return TC_OK;
}

void tc__txn_cmds_free(tc__txn_cmds *tc)
{
    free(tc->cmds);
    tc->cmds = NULL;
    tc->n = 0;
}

tc_result tc__txn_take_exec(tc_cache *c, size_t ncmd, int inline_publish,
                            redisReply *e, redisReply **exec)
{
    *exec = NULL;
    if (e->type != REDIS_REPLY_ARRAY || e->elements != ncmd - 2) {
        tc_result r =
            e->type == REDIS_REPLY_ERROR
                ? tc__fail(TC_PROTOCOL, "EXEC: %.*s", (int)e->len, e->str)
                : tc__fail(TC_PROTOCOL, "EXEC: transaction aborted");
        freeReplyObject(e);
        return r;
    }
    *exec = e;
    if (c->bus && !inline_publish)
        tc__bus_count_published(c->bus);
    return TC_OK;
}

/* tc__txn_exec_on() and tc__txn_exec_slot(): on `conn`, or on the pool
 * routed by `slot` (-2: by the commands' own keys, l2_cluster.c). */
static tc_result exec_on(tc_cache *c, tc__conn *conn,
                         const tc__node_addr *node, int slot, tc__txn *t,
                         size_t n, const tc__cmd *writes, int inline_publish,
                         redisReply **exec)
{
    tc__txn_cmds tc;
    redisReply **rep;
    tc_result r;
    char *chan = NULL;

    *exec = NULL;
    if ((r = tc__txn_build(c, t, n, writes, inline_publish, &tc)) != TC_OK)
        return r;
    if (node && t->msg && !inline_publish) {
        /* tc__txn_build put cfg.channel in tc.pub[1]: this master's. */
        if (!(chan = tc__cluster_node_channel_dup(c->cfg.channel, node))) {
            tc__txn_cmds_free(&tc);
            return tc__fail(TC_NO_MEMORY, "out of memory");
        }
        tc.pub[1] = chan, tc.publ[1] = strlen(chan);
    }
    if (!(rep = malloc(tc.n * sizeof(*rep)))) {
        free(chan);
        tc__txn_cmds_free(&tc);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    r = conn        ? run_on(conn, tc.n, tc.cmds, rep)
        : slot > -2 ? tc__l2_run_slot(c->l2, slot, tc.n, tc.cmds, rep, 0)
                    : tc__l2_run(c->l2, tc.n, tc.cmds, rep, 0);
    if (r == TC_OK) {
        for (size_t i = 0; i + 1 < tc.n; i++)
            freeReplyObject(rep[i]);
        r = tc__txn_take_exec(c, tc.n, inline_publish, rep[tc.n - 1], exec);
    }
    tc__txn_cmds_free(&tc);
    free(rep);
    free(chan);
    return r;
}

/* Redis Cluster: the count script on the members' master, after the
 * write (header). NULL (wait out the lease) when it fails. */
static redisReply *count_after(tc_cache *c)
{
    const char *argv[8];
    size_t argl[8];
    char lease[16];
    tc__cmd cmd = {8, argv, argl};
    redisReply *r = NULL;
    argv[0] = "EVAL", argl[0] = 4;
    argv[1] = tc__bus_count_script(), argl[1] = strlen(argv[1]);
    argv[2] = "3", argl[2] = 1;
    argv[3] = tc__bus_members_key(c->bus), argl[3] = strlen(argv[3]);
    argv[4] = tc__bus_clock_key(c->bus), argl[4] = strlen(argv[4]);
    argv[5] = tc__bus_epoch_key(c->bus), argl[5] = strlen(argv[5]);
    argl[6] = (size_t)snprintf(lease, sizeof(lease), "%u", c->cfg.lease_ms);
    argv[6] = lease;
    argv[7] = c->id, argl[7] = strlen(c->id);
    if (tc__l2_run(c->l2, 1, &cmd, &r, 0) != TC_OK)
        return NULL;
    return r;
}

tc_result tc__txn_exec_on(tc_cache *c, tc__conn *conn,
                          const tc__node_addr *node, tc__txn *t, size_t n,
                          const tc__cmd *writes, int inline_publish,
                          redisReply **exec)
{
    return exec_on(c, conn, node, -2, t, n, writes, inline_publish, exec);
}

tc_result tc__txn_exec_slot(tc_cache *c, int slot, tc__txn *t, size_t n,
                            const tc__cmd *writes, int inline_publish,
                            redisReply **exec)
{
    return exec_on(c, NULL, NULL, slot, t, n, writes, inline_publish, exec);
}

void tc__txn_end(tc_cache *c, tc__txn *t, const redisReply *exec,
                 int published)
{
    if (t->w) {
        const redisReply *members = NULL;
        redisReply *counted = NULL;
        uint64_t deadline = 0;
        if (published && exec && c->cfg.cluster) {
            counted = count_after(c);
            members = counted && counted->type == REDIS_REPLY_ARRAY ? counted
                                                                    : NULL;
            deadline = tc__deadline_ms(c->cfg.lease_ms);
        } else if (published && exec) {
            const redisReply *ids = exec->element[exec->elements - 1];
            /* An unexpected reply (members NULL) waits out the lease, which
             * is always safe: past it, every instance that did not
             * acknowledge has stopped serving L1 by itself (its last proof
             * of liveness predates the publication, and its lease is
             * shorter than ours). */
            /* Without ourselves in the set, it was lost and is rebuilt
             * only by the next heartbeats: the count script then answers
             * 0 (an idle writer is in the set without being listed). */
            members = ids->type == REDIS_REPLY_ARRAY ? ids : NULL;
            deadline = tc__deadline_ms(c->cfg.lease_ms);
        }
        tc__bus_strict_wait(c->bus, t->w, members, deadline);
        t->w = NULL;
        if (counted)
            freeReplyObject(counted);
    }
    free(t->msg);
    t->msg = NULL;
}
