/* The L2 pool on Redis Cluster: routing by slot (see l2_cluster.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "error.h"
#include "l2_cluster.h"
#include "log.h"
#include "parse.h"
#include "slot.h"

typedef struct node_pool {
    tc__node_addr addr;
    tc__config cfg; /* a shallow copy of the cache's, naming this node */
    tc__l2 *l2;
} node_pool;

struct tc__l2c {
    const tc__config *cfg; /* borrowed */
    tc__cluster *cl;       /* cfg->cluster */
    pthread_mutex_t mu;
    node_pool *nodes[TC__CLUSTER_MAX_NODES]; /* mu; grow-only */
    unsigned nnodes;                         /* mu */
};

tc_result tc__l2c_create(const tc__config *cfg, tc__l2c **out)
{
    tc__l2c *x = calloc(1, sizeof(*x));
    tc_result r;
    if (!x)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    x->cfg = cfg;
    x->cl = cfg->cluster;
    pthread_mutex_init(&x->mu, NULL);
    r = tc__cluster_refresh(x->cl, cfg, 1);
    if (r == TC_AUTH || r == TC_NO_MEMORY) {
        tc__l2c_destroy(x);
        return r;
    }
    if (r != TC_OK)
        tc__log(&cfg->log, TC_LOG_WARN, "L2 down at start (%s); retrying",
                tc_errmsg());
    *out = x;
    return TC_OK;
}

void tc__l2c_destroy(tc__l2c *x)
{
    if (!x)
        return;
    for (unsigned i = 0; i < x->nnodes; i++) {
        tc__l2_destroy(x->nodes[i]->l2);
        free(x->nodes[i]);
    }
    pthread_mutex_destroy(&x->mu);
    free(x);
}

/* The pool of node `a`, made on first use. NULL with *why on failure. */
static tc__l2 *pool_for(tc__l2c *x, const tc__node_addr *a, tc_result *why)
{
    node_pool *np = NULL;
    pthread_mutex_lock(&x->mu);
    for (unsigned i = 0; i < x->nnodes && !np; i++)
        if (x->nodes[i]->addr.port == a->port &&
            !strcmp(x->nodes[i]->addr.host, a->host))
            np = x->nodes[i];
    pthread_mutex_unlock(&x->mu);
    if (np)
        return np->l2;
    if (!(np = calloc(1, sizeof(*np)))) {
        *why = tc__fail(TC_NO_MEMORY, "out of memory");
        return NULL;
    }
    np->addr = *a;
    np->cfg = *x->cfg;
    np->cfg.host = np->addr.host;
    np->cfg.port = a->port;
    np->cfg.unix_path = NULL;
    np->cfg.cluster = NULL; /* a plain pool to this one node */
    np->cfg.ncluster_seeds = 0;
    /* Connects (within the connect timeout) outside the mutex; a node
     * that is down gives a pool with its breaker open. */
    if ((*why = tc__l2_create(&np->cfg, &np->l2)) != TC_OK) {
        free(np);
        return NULL;
    }
    pthread_mutex_lock(&x->mu);
    for (unsigned i = 0; i < x->nnodes; i++)
        if (x->nodes[i]->addr.port == a->port &&
            !strcmp(x->nodes[i]->addr.host, a->host)) {
            /* Another thread made it meanwhile: use that one. */
            tc__l2 *won = x->nodes[i]->l2;
            pthread_mutex_unlock(&x->mu);
            tc__l2_destroy(np->l2);
            free(np);
            return won;
        }
    if (x->nnodes == TC__CLUSTER_MAX_NODES) {
        pthread_mutex_unlock(&x->mu);
        tc__l2_destroy(np->l2);
        free(np);
        *why = tc__fail(TC_L2_UNAVAILABLE, "Redis Cluster: too many nodes");
        return NULL;
    }
    x->nodes[x->nnodes++] = np;
    pthread_mutex_unlock(&x->mu);
    return np->l2;
}

static size_t arg_len(const tc__cmd *c, int i)
{
    return c->argvlen ? c->argvlen[i] : strlen(c->argv[i]);
}

static int is_cmd(const tc__cmd *c, const char *name)
{
    size_t n = strlen(name);
    return c->argc > 0 && arg_len(c, 0) == n &&
           !strncasecmp(c->argv[0], name, n);
}

/* Commands of the library's that name no key in argv[1]. */
static int keyless(const tc__cmd *c)
{
    static const char *const names[] = {
        "MULTI", "EXEC", "DISCARD", "PING", "PUBLISH", "ASKING", "INFO",
        "TIME", "SCAN", "SCRIPT", "FLUSHDB", "FLUSHALL", "DBSIZE", "CLUSTER",
        "COMMAND", "ROLE", "CLIENT", "ECHO", "CONFIG", "MEMORY", "LATENCY",
        "SLOWLOG", "FUNCTION", "RANDOMKEY"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (is_cmd(c, names[i]))
            return 1;
    return c->argc < 2;
}

/* The slot of a command's keys: -1 for none, -2 when they span slots. */
static int cmd_slot(const tc__cmd *c)
{
    int first = 1, last = 1, step = 1, slot = -1;
    if (keyless(c))
        return -1;
    if (is_cmd(c, "EVAL") || is_cmd(c, "EVALSHA") || is_cmd(c, "EVAL_RO") ||
        is_cmd(c, "EVALSHA_RO") || is_cmd(c, "FCALL") ||
        is_cmd(c, "FCALL_RO")) {
        uint64_t nk;
        if (c->argc < 3 ||
            tc__parse_u64(c->argv[2], arg_len(c, 2), 0, (uint64_t)c->argc, &nk))
            return -1;
        if (!nk)
            return -1;
        first = 3, last = 3 + (int)nk - 1;
    } else if (is_cmd(c, "DEL") || is_cmd(c, "UNLINK") ||
               is_cmd(c, "EXISTS") || is_cmd(c, "MGET") ||
               is_cmd(c, "TOUCH")) {
        last = c->argc - 1;
    } else if (is_cmd(c, "MSET") || is_cmd(c, "MSETNX")) {
        last = c->argc - 1, step = 2;
    }
    for (int i = first; i <= last && i < c->argc; i += step) {
        int s = (int)tc__slot_of(c->argv[i], arg_len(c, i));
        if (slot >= 0 && s != slot)
            return -2;
        slot = s;
    }
    return slot;
}

/* A write's invalidation goes on the channel of the node that runs it
 * (tc__cluster_node_channel_dup(), cluster.h): subscribers hear it over their
 * own connection to that node. Every argument that IS the configuration's
 * channel string (the same pointer: publish.c and write.c pass
 * cfg->channel itself, never a copy, and no user key or value can be that
 * pointer) is replaced in a copy of the batch, per attempt, so a write
 * sent again after MOVED or ASK publishes on its new node's channel. */
typedef struct on_node {
    tc__cmd *cmds;
    const char **argv;
    size_t *argl;
    char *chan;
} on_node;

static void on_node_free(on_node *o)
{
    free(o->cmds);
    free(o->argv);
    free(o->argl);
    free(o->chan);
    memset(o, 0, sizeof(*o));
}

/* *use: `cmds` itself when none names the channel, else the copy in `o`
 * (freed with on_node_free(), also after a failure). */
static tc_result for_node(tc__l2c *x, const tc__node_addr *a, size_t n,
                          const tc__cmd *cmds, on_node *o,
                          const tc__cmd **use)
{
    const char *ch = x->cfg->channel;
    size_t nargs = 0, at = 0;
    int found = 0;
    on_node_free(o);
    *use = cmds;
    for (size_t i = 0; i < n; i++) {
        nargs += (size_t)cmds[i].argc;
        for (int j = 0; j < cmds[i].argc && !found; j++)
            found = cmds[i].argv[j] == ch;
    }
    if (!found)
        return TC_OK;
    o->cmds = malloc(n * sizeof(*o->cmds));
    o->argv = malloc(nargs * sizeof(*o->argv));
    o->argl = malloc(nargs * sizeof(*o->argl));
    o->chan = tc__cluster_node_channel_dup(ch, a);
    if (!o->cmds || !o->argv || !o->argl || !o->chan) {
        on_node_free(o);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        o->cmds[i] = (tc__cmd){cmds[i].argc, o->argv + at, o->argl + at};
        for (int j = 0; j < cmds[i].argc; j++, at++) {
            int is = cmds[i].argv[j] == ch;
            o->argv[at] = is ? o->chan : cmds[i].argv[j];
            o->argl[at] = is ? strlen(o->chan) : arg_len(&cmds[i], j);
        }
    }
    *use = o->cmds;
    return TC_OK;
}

enum { REDIR_NONE, REDIR_MOVED, REDIR_ASK, REDIR_TRYAGAIN, REDIR_DOWN };

/* What an error reply asks of us. */
static int redirect_of(const redisReply *r, unsigned *slot, tc__node_addr *to)
{
    int ask;
    if (!r || r->type != REDIS_REPLY_ERROR)
        return REDIR_NONE;
    if (tc__cluster_parse_redirect(r->str, r->len, &ask, slot, to))
        return ask ? REDIR_ASK : REDIR_MOVED;
    if (!strncmp(r->str, "TRYAGAIN", 8))
        return REDIR_TRYAGAIN;
    if (!strncmp(r->str, "CLUSTERDOWN", 11))
        return REDIR_DOWN;
    return REDIR_NONE;
}

static void free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        freeReplyObject(r[i]);
        r[i] = NULL;
    }
}

/* Where keyless commands go: the master of slot 0. */
static tc_result addr_of(tc__l2c *x, int slot, tc__node_addr *a)
{
    return tc__cluster_addr(x->cl, x->cfg, slot >= 0 ? (unsigned)slot : 0, a);
}

/* A transport failure: the node may be gone (a failover): learn the
 * topology again so the next call goes to its successor. */
static tc_result failed(tc__l2c *x, tc_result r)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", tc_errmsg());
    (void)tc__cluster_refresh(x->cl, x->cfg, 0);
    return tc__fail(r, "%s", msg);
}

/* Run all `n` commands on the master of `slot`, whole, following
 * redirections: for one command or one transaction. */
static tc_result run_group(tc__l2c *x, int slot, size_t n, const tc__cmd *cmds,
                           redisReply **replies, int flags)
{
    tc__node_addr a, ask_to;
    int asking = 0;
    char last[160] = "";
    tc__cmd *with = NULL;
    redisReply **wr = NULL;
    tc_result r = TC_OK;
    on_node on = {0};

    for (int attempt = 0; attempt < TC__CLUSTER_TRIES; attempt++) {
        tc__l2 *pool;
        const tc__cmd *use;
        int kind = REDIR_NONE;
        unsigned rslot = 0;
        tc__node_addr to;
        if (asking)
            a = ask_to;
        else if ((r = addr_of(x, slot, &a)) != TC_OK)
            return failed(x, r);
        if (!(pool = pool_for(x, &a, &r)) ||
            (r = for_node(x, &a, n, cmds, &on, &use)) != TC_OK) {
            free(with);
            free(wr);
            on_node_free(&on);
            return r;
        }
        if (asking) {
            /* ASKING holds for the next command, or for a whole
             * MULTI...EXEC. */
            static const char *asking_argv[1] = {"ASKING"};
            if (!with) {
                with = malloc((n + 1) * sizeof(*with));
                wr = malloc((n + 1) * sizeof(*wr));
                if (!with || !wr) {
                    free(with);
                    free(wr);
                    on_node_free(&on);
                    return tc__fail(TC_NO_MEMORY, "out of memory");
                }
            }
            with[0] = (tc__cmd){1, asking_argv, NULL};
            memcpy(with + 1, use, n * sizeof(*use));
            r = tc__l2_run(pool, n + 1, with, wr, flags);
            if (r == TC_OK) {
                freeReplyObject(wr[0]);
                memcpy(replies, wr + 1, n * sizeof(*replies));
            }
        } else {
            r = tc__l2_run(pool, n, use, replies, flags);
        }
        asking = 0;
        if (r != TC_OK) {
            free(with);
            free(wr);
            on_node_free(&on);
            return failed(x, r);
        }
        for (size_t i = 0; i < n && kind == REDIR_NONE; i++)
            if ((kind = redirect_of(replies[i], &rslot, &to)) != REDIR_NONE)
                snprintf(last, sizeof(last), "%.*s",
                         (int)replies[i]->len, replies[i]->str);
        if (kind == REDIR_NONE) {
            free(with);
            free(wr);
            on_node_free(&on);
            return TC_OK;
        }
        free_replies(replies, n);
        if (kind == REDIR_MOVED) {
            tc__cluster_moved(x->cl, rslot, to.host, to.port);
        } else if (kind == REDIR_ASK) {
            ask_to = to, asking = 1;
        } else if (kind == REDIR_TRYAGAIN) {
            /* The slot is migrating and the keys are split between the two
             * nodes: wait for the migration, 1 ms doubling up to 64. */
            struct timespec ts = {0, (1L << (attempt < 6 ? attempt : 6)) *
                                         1000000L};
            nanosleep(&ts, NULL);
        } else {
            free(with);
            free(wr);
            on_node_free(&on);
            (void)tc__cluster_refresh(x->cl, x->cfg, 0);
            return tc__fail(TC_L2_UNAVAILABLE, "Redis Cluster: %s", last);
        }
    }
    free(with);
    free(wr);
    on_node_free(&on);
    return tc__fail(TC_L2_UNAVAILABLE,
                    "Redis Cluster: slot %d still redirected after %d tries "
                    "(last: %s)",
                    slot, TC__CLUSTER_TRIES, last);
}

/* Independent commands: one pipelined round trip per node, then each
 * command that met a redirection again on its own. */
static tc_result run_split(tc__l2c *x, size_t n, const tc__cmd *cmds,
                           const int *slots, redisReply **replies, int flags)
{
    tc__node_addr *addr = malloc(n * sizeof(*addr));
    unsigned char *done = calloc(n, 1);
    size_t *idx = malloc(n * sizeof(*idx));
    tc__cmd *sub = malloc(n * sizeof(*sub));
    redisReply **subr = malloc(n * sizeof(*subr));
    tc_result r = TC_OK;

    if (!addr || !done || !idx || !sub || !subr) {
        free(addr);
        addr = NULL; /* nothing in replies to free */
        r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    for (size_t i = 0; i < n; i++) {
        if ((r = addr_of(x, slots[i], &addr[i])) != TC_OK) {
            r = failed(x, r);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        size_t m = 0;
        tc__l2 *pool;
        if (done[i])
            continue;
        for (size_t j = i; j < n; j++)
            if (!done[j] && addr[j].port == addr[i].port &&
                !strcmp(addr[j].host, addr[i].host)) {
                idx[m] = j, sub[m++] = cmds[j];
                done[j] = 1;
            }
        if (!(pool = pool_for(x, &addr[i], &r)))
            goto out;
        {
            on_node on = {0};
            const tc__cmd *use;
            if ((r = for_node(x, &addr[i], m, sub, &on, &use)) == TC_OK)
                r = tc__l2_run(pool, m, use, subr, flags);
            on_node_free(&on);
            if (r == TC_NO_MEMORY)
                goto out;
        }
        if (r != TC_OK) {
            r = failed(x, r);
            goto out;
        }
        for (size_t k = 0; k < m; k++)
            replies[idx[k]] = subr[k];
    }
    for (size_t i = 0; i < n; i++) {
        unsigned s;
        tc__node_addr to;
        if (redirect_of(replies[i], &s, &to) == REDIR_NONE)
            continue;
        if (redirect_of(replies[i], &s, &to) == REDIR_MOVED)
            tc__cluster_moved(x->cl, s, to.host, to.port);
        freeReplyObject(replies[i]);
        replies[i] = NULL;
        /* In order, so that a stamps read stays before its GET. */
        if ((r = run_group(x, slots[i], 1, &cmds[i], &replies[i], flags)) !=
            TC_OK) {
            replies[i] = NULL;
            goto out;
        }
    }
out:
    if (r != TC_OK && addr)
        for (size_t i = 0; i < n; i++)
            if (replies[i]) {
                freeReplyObject(replies[i]);
                replies[i] = NULL;
            }
    free(addr);
    free(done);
    free(idx);
    free(sub);
    free(subr);
    return r;
}

tc_result tc__l2c_run(tc__l2c *x, size_t n, const tc__cmd *cmds,
                      redisReply **replies, int flags)
{
    int *slots, txn = 0, one = -1, same = 1;
    tc_result r;
    if (n == 0)
        return TC_OK;
    if (!(slots = malloc(n * sizeof(*slots))))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        slots[i] = cmd_slot(&cmds[i]);
        txn |= is_cmd(&cmds[i], "MULTI");
        if (slots[i] == -2) {
            free(slots);
            return tc__fail(TC_BAD_ARGUMENT,
                            "Redis Cluster: %.*s names keys of different "
                            "slots",
                            (int)arg_len(&cmds[i], 0), cmds[i].argv[0]);
        }
        if (slots[i] >= 0) {
            if (one >= 0 && slots[i] != one)
                same = 0;
            one = slots[i];
        }
    }
    if (txn && !same) {
        free(slots);
        return tc__fail(TC_BAD_ARGUMENT,
                        "Redis Cluster: a transaction names keys of "
                        "different slots");
    }
    r = txn || n == 1 ? run_group(x, one, n, cmds, replies, flags)
                      : run_split(x, n, cmds, slots, replies, flags);
    free(slots);
    return r;
}

tc_result tc__l2c_run_slot(tc__l2c *x, int slot, size_t n,
                           const tc__cmd *cmds, redisReply **replies,
                           int flags)
{
    return n ? run_group(x, slot, n, cmds, replies, flags) : TC_OK;
}

tc__conn *tc__l2c_connect_slot(tc__l2c *x, int slot, tc_result *why)
{
    tc__node_addr a;
    tc__config cfg = *x->cfg; /* naming the node, as pool_for's */
    tc__conn *conn;
    if ((*why = addr_of(x, slot, &a)) != TC_OK) {
        *why = failed(x, *why);
        return NULL;
    }
    cfg.host = a.host;
    cfg.port = a.port;
    cfg.unix_path = NULL;
    cfg.cluster = NULL;
    cfg.ncluster_seeds = 0;
    if (!(conn = tc__l2_connect(&cfg, why)))
        *why = failed(x, *why);
    return conn;
}

tc_result tc__l2c_run_at(tc__l2c *x, const tc__node_addr *a, size_t n,
                         const tc__cmd *cmds, redisReply **replies, int flags)
{
    tc_result r;
    on_node on = {0};
    const tc__cmd *use;
    tc__l2 *pool = pool_for(x, a, &r);
    if (!pool)
        return r;
    if ((r = for_node(x, a, n, cmds, &on, &use)) != TC_OK)
        return r;
    r = tc__l2_run(pool, n, use, replies, flags);
    on_node_free(&on);
    return r != TC_OK ? failed(x, r) : TC_OK;
}

int tc__l2c_breaker_open(tc__l2c *x)
{
    int all = 1;
    pthread_mutex_lock(&x->mu);
    if (!x->nnodes)
        all = 0;
    for (unsigned i = 0; i < x->nnodes && all; i++)
        all = tc__l2_breaker_open(x->nodes[i]->l2);
    pthread_mutex_unlock(&x->mu);
    return all;
}

void tc__l2c_stats(tc__l2c *x, tc_stats *out)
{
    pthread_mutex_lock(&x->mu);
    for (unsigned i = 0; i < x->nnodes; i++)
        tc__l2_stats(x->nodes[i]->l2, out);
    pthread_mutex_unlock(&x->mu);
}
