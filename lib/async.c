/*
 * Asynchronous, pipelined reads and writes on the caller's libev loop
 * (tc_async_*, tiercache.h): the same read and write paths as tc_get,
 * tc_set_ex and tc_command (read.c, write.c, command.c, publish.c), with
 * the round trip sent on an aconn (aconn.h) instead of waited for.
 *
 * What each request keeps from its blocking twin:
 *   get      GET + PTTL; the L1 generation is read before sending, and the
 *            fill (tc__take_l2_value) is refused if any invalidation of the
 *            key was applied since.
 *   set      tc__set_begin / tc__set_finish around the same MULTI (SET,
 *            stamp, PUBLISH, EXEC): the invalidation is published in the
 *            write's transaction; L1 is filled only if nothing raced.
 *            The plain SETs a lane gets within one loop iteration share
 *            one such MULTI (group commit, up to BATCH_MAX): their SETs
 *            (one MSET when none has a TTL), one HSET of all their
 *            stamps, one PUBLISH naming every key, EXEC; each SET's reply
 *            is its own element of EXEC's (or MSET's). Anything else submitted
 *            on the lane sends the group first, so order holds; the
 *            prepare watcher below sends it at the end of the iteration
 *            otherwise (a timer due at once is the fallback).
 *   command  tc__prepare, then a read as it is, or tc__write_begin /
 *            tc__write_finish around the same MULTI as tc__run_write.
 *   multi    as tc_command_multi: the commands in one MULTI with every
 *            written key's stamps and invalidation (tc__write_begin /
 *            finish), or a plain MULTI ... EXEC when none writes a key.
 * Strict writes (they wait for acknowledgements), blocking commands,
 * commands COMMAND did not list, connection-state commands, and caches
 * behind sentinels are refused at submission: the caller runs them with
 * the blocking call.
 *
 * Redis Cluster: each lane is up to NODES_MAX entries, one per master,
 * each a connection of its own; a request goes to the master of its
 * keys' slot (tc__prepared_slots(), the sync path's rule; the slot map of
 * cluster.c), or after its slot's requests still in flight (slot_use), so
 * requests naming one key keep their order while the slot moves. A
 * write's PUBLISH names that master's channel (on_lane_channel()), and a
 * group commit holds one slot's SETs (one MULTI cannot span slots). Keys
 * of several slots or none, NX/XX, and writes of keys nobody can name are
 * refused: the blocking call splits or fans them out. A reply of MOVED,
 * ASK, TRYAGAIN or CLUSTERDOWN in a request (in a MULTI: the queued
 * command's, and EXEC is EXECABORT, nothing ran) hands it to its blocking
 * twin (op_sync()), which follows the redirection as l2_cluster.c does;
 * so does a lost connection for its reads and for the SETs not sent.
 *
 * Writes: what the loop's callbacks submit in one iteration is written
 * by an ev_prepare watcher of the lowest priority just before the loop
 * polls, one write per lane, with no wakeup for writability in between
 * (the aconn's own writability watcher stays the fallback).
 *
 * Requests of one lane go over one connection, so Redis runs them in
 * submission order, and their callbacks run in that order. A connection
 * that fails (or leaves its oldest request unanswered past the command
 * timeout) answers every request still on it with the failure, in order,
 * and is replaced on a later submission.
 *
 * Threads: everything on the loop's thread (the aconn's rule).
 */
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aconn.h"
#include "cache.h"
#include "cluster.h"
#include "command.h"
#include "handshake.h"
#include "slot.h"

/* A lane that failed is not reconnected before this (ms). */
#define RETRY_MS 200
/* Plain SETs of one lane within one loop iteration share a transaction
 * (group commit), at most this many. */
#define BATCH_MAX 64
/* SET requests kept for reuse per tc_async, and the largest key+value
 * buffer kept with one: a SET allocated nothing else per request, and
 * its write state (tc__set_op, over 1 KiB) was a large-bin malloc that
 * consolidated the fast bins on every call. */
#define SPARE_MAX 1024
#define SPARE_KV_MAX 4096
/* Redis Cluster: the masters one lane may have a connection to. */
#define NODES_MAX 16
#define NSLOTS 16384

enum { OP_GET, OP_SET, OP_READ, OP_WRITE };

typedef struct lane lane;

typedef struct op {
    struct op *next;
    tc_async *a;
    lane *l;
    int kind;
    uint64_t sent_ns;
    void *ud;
    tc_async_fn cb;          /* SET, READ, WRITE */
    tc_async_get_fn gcb;     /* GET */
    /* GET */
    uint64_t h, gen;
    redisReply *val;         /* the GET reply, kept until PTTL's */
    char *key;               /* owned copy (GET: the key; SET: key+value) */
    size_t klen;
    size_t kvcap;            /* SET: the size of `key` */
    /* SET */
    tc__set_op *set;         /* owned */
    const redisReply *sreply; /* a grouped SET's reply (on_batch's) */
    /* READ, WRITE */
    tc__prepared *ps;        /* owned, nps of them */
    size_t nps;
    int multi;               /* a transaction: the answer is EXEC's */
    tc__written w;
    tc__write_op wop;
    size_t ncmd;             /* commands of the transaction (EXEC's check) */
    unsigned batch_n;        /* first op of a group commit: its size, */
    unsigned batch_h;        /* its stamp HSETs, */
    int batch_mset;          /* and 1 when its SETs went as one MSET */
    /* Redis Cluster */
    int slot;                /* the slot its keys name (-1: not counted) */
    int redir;               /* a reply asked for another node (MOVED,
                                ASK, TRYAGAIN, CLUSTERDOWN): it goes to
                                the blocking path (op_sync) */
    tc_set_opts sopts;       /* SET: its options, for op_sync */
    int *argcs;              /* READ, WRITE: the copied commands, for */
    const char *const **vs;  /* op_sync (vs, ls point into `key`) */
    const size_t **ls;
} op;

struct lane {
    tc_async *a;
    tc__aconn *ac;           /* NULL: not connected */
    uint64_t retry_at;       /* tc__now_ns(): no connect before */
    op *head, *tail;         /* sent, awaiting their last reply */
    op *bhead, *btail;       /* SETs waiting for the group commit */
    unsigned bn;
    /* Redis Cluster: the master this lane's connection goes to */
    int used;                /* this entry names a master */
    unsigned group;          /* its tc_async lane number */
    tc__node_addr node;
    char *chan;              /* that master's invalidation channel (owned) */
    int bslot;               /* the slot of the SETs waiting to be grouped */
};

/* Redis Cluster: per lane number and slot, the requests in flight and the
 * master's entry they went to. A request of a slot with requests in
 * flight follows them on the same connection, whatever the slot map says
 * meanwhile: requests naming one key are answered in submission order
 * even while their slot moves (the later ones meet the same MOVED and
 * take the blocking path after the earlier ones). */
typedef struct slot_use {
    unsigned n : 24;         /* requests in flight (16 M: never reached) */
    unsigned at : 8;         /* the entry they went to (< NODES_MAX) */
} slot_use;

/* flush_batch's arrays, kept rather than allocated per group (several
 * KiB: each malloc of that size consolidated the fast bins). Loop thread;
 * nothing in them outlives one flush_batch. */
typedef struct batch_scratch {
    const void *keys[BATCH_MAX];
    size_t klens[BATCH_MAX];
    tc__cmd writes[2 * BATCH_MAX];  /* the SETs, then the stamp HSETs */
    const char *hv[4 * BATCH_MAX];  /* the HSETs' arguments */
    size_t hl[4 * BATCH_MAX];
    const char *mv[1 + 2 * BATCH_MAX]; /* MSET's */
    size_t ml[1 + 2 * BATCH_MAX];
} batch_scratch;

struct tc_async {
    tc_cache *c;
    struct ev_loop *loop;
    unsigned nlanes;
    unsigned per;            /* entries per lane: 1, or NODES_MAX on a
                                cluster (one per master) */
    lane *lanes;             /* nlanes * per */
    slot_use *slots;         /* cluster: nlanes * NSLOTS; else NULL */
    ev_timer tick;           /* the command timeout */
    ev_prepare send;         /* last before the loop polls: sends the
                                group commits and writes every lane's
                                queued commands in this iteration */
    ev_timer flush;          /* due at once while a group commit waits:
                                the fallback if one is made after `send`
                                ran, so the loop never blocks with SETs
                                unsent */
    int dirty;               /* something was queued since `send` ran */
    size_t pending;
    op *spare;               /* finished SETs for reuse (SPARE_MAX) */
    batch_scratch scratch;
    unsigned nspare;
};

static void op_free(op *o)
{
    tc_async *a = o->a;
    if (o->kind == OP_SET && o->set && a->nspare < SPARE_MAX &&
        o->kvcap <= SPARE_KV_MAX) {
        o->next = a->spare; /* set and key buffer kept: set_op_new */
        a->spare = o;
        a->nspare++;
        return;
    }
    if (o->val)
        freeReplyObject(o->val);
    if (o->kind == OP_READ || o->kind == OP_WRITE) {
        tc__written_free(&o->w);
        for (size_t i = 0; i < o->nps; i++)
            tc__prepared_free(&o->ps[i]);
        free(o->ps);
    }
    free(o->set);
    free(o->key);
    free(o->argcs);
    free(o);
}

/* `o` joins the requests in flight on `l` (counted per slot on a
 * cluster: pick() sends its slot's next requests after it). */
static void op_enter(lane *l, op *o)
{
    tc_async *a = l->a;
    a->pending++;
    if (a->slots && o->slot >= 0) {
        slot_use *u = &a->slots[(size_t)l->group * NSLOTS + (unsigned)o->slot];
        u->n++;
        u->at = (unsigned)(l - &a->lanes[l->group * a->per]) & 0xffu;
    }
}

/* `o` is answered, or taken by op_sync(). */
static void op_leave(tc_async *a, op *o)
{
    a->pending--;
    if (a->slots && o->slot >= 0 && o->l)
        a->slots[(size_t)o->l->group * NSLOTS + (unsigned)o->slot].n--;
}

/* 1 when `r` is Redis Cluster asking for another node, or for later:
 * MOVED (the slot map learns it), ASK, TRYAGAIN, CLUSTERDOWN. */
static int redirected(tc_async *a, const redisReply *r)
{
    int ask;
    unsigned slot;
    tc__node_addr to;
    if (!a->slots || !r || r->type != REDIS_REPLY_ERROR)
        return 0;
    if (tc__cluster_parse_redirect(r->str, r->len, &ask, &slot, &to)) {
        if (!ask)
            tc__cluster_moved(a->c->cfg.cluster, slot, to.host, to.port);
        return 1;
    }
    return !strncmp(r->str, "TRYAGAIN", 8) ||
           !strncmp(r->str, "CLUSTERDOWN", 11);
}

/* A request Redis Cluster sent elsewhere (redirected()), a read whose
 * connection failed, or a SET of a group never sent: run by its blocking
 * twin, which follows MOVED, ASK and TRYAGAIN and publishes on the
 * channel of the master that runs the write (l2_cluster.c), then
 * answered as the async call answers. A redirected write's MULTI was
 * refused whole (EXECABORT: nothing of it ran), so it runs once. Blocks
 * the loop for that call. */
static void op_sync(tc_async *a, op *o)
{
    tc_cache *c = a->c;
    tc_result r;
    op_leave(a, o);
    if (o->kind == OP_GET) {
        tc_value *v = NULL;
        r = tc_get(c, o->key, o->klen, &v);
        o->gcb(o->ud, r, r == TC_OK ? v : NULL, NULL);
    } else if (o->kind == OP_SET) {
        const void *key = o->set->key, *val = o->set->val;
        size_t klen = o->set->klen, vlen = o->set->vlen;
        /* This attempt's end: no copy kept, nothing to wait for. */
        (void)tc__set_finish_reply(
            c, o->set, tc__fail(TC_L2_UNAVAILABLE, "redirected"), NULL);
        r = tc_set_ex(c, key, klen, val, vlen, &o->sopts);
        o->cb(o->ud, r, NULL);
    } else {
        tc_reply *rep = NULL;
        if (o->kind == OP_WRITE) {
            redisReply *none = NULL;
            (void)tc__write_finish(c, 0, o->nps, &o->w, &o->wop,
                                   tc__fail(TC_L2_UNAVAILABLE, "redirected"),
                                   &none);
        }
        r = o->multi ? tc_command_multi(c, o->nps, o->argcs, o->vs, o->ls,
                                        &rep)
                     : tc_command(c, o->argcs[0], o->vs[0], o->ls[0], &rep);
        o->cb(o->ud, r, r == TC_OK ? rep : NULL);
    }
    op_free(o);
}

/* Finish `o` with `r` (and, on TC_OK, the reply `e`, taken): its callback
 * runs; the op is freed. */
static void op_complete(tc_async *a, op *o, tc_result r, redisReply *e)
{
    tc_cache *c = a->c;
    op_leave(a, o);
    switch (o->kind) {
    case OP_GET: {
        tc_value *v = NULL;
        redisReply *err = NULL;
        if (r == TC_OK && o->val->type == REDIS_REPLY_ERROR) {
            err = o->val;
            r = tc__fail(TC_PROTOCOL, "GET: %.*s", (int)err->len, err->str);
        } else if (r == TC_OK) {
            r = tc__take_l2_value(c, o->h, o->key, o->klen, o->gen,
                                  o->sent_ns, o->val, e, &v);
        } else {
            /* As a failed tc_get: no fill, nothing to undo. */
        }
        if (e)
            freeReplyObject(e);
        o->gcb(o->ud, r, v, (const tc_reply *)(void *)err);
        break;
    }
    case OP_SET: {
        redisReply *exec = NULL;
        if (o->sreply) { /* in a group's EXEC, borrowed from on_batch */
            if (c->bus)
                tc__bus_count_published(c->bus);
            r = tc__set_finish_reply(c, o->set, r, o->sreply);
        } else {
            if (r == TC_OK)
                r = tc__txn_take_exec(c, o->ncmd, o->set->cond, e, &exec);
            r = tc__set_finish(c, o->set, r, exec);
        }
        o->cb(o->ud, r, NULL);
        break;
    }
    case OP_READ:
        o->cb(o->ud, r, (tc_reply *)(void *)e);
        break;
    case OP_WRITE: {
        redisReply *exec = NULL, *rep;
        if (r == TC_OK)
            r = tc__txn_take_exec(c, o->ncmd, 0, e, &exec);
        r = tc__write_finish(c, 0, o->nps, &o->w, &o->wop, r, &exec);
        if (o->multi) {
            /* EXEC's answer, cut to the caller's commands */
            rep = r == TC_OK ? exec : NULL;
            if (r != TC_OK && exec)
                freeReplyObject(exec);
        } else if (r == TC_OK && exec && exec->type == REDIS_REPLY_ARRAY) {
            rep = exec->element[0];
            exec->element[0] = NULL;
            freeReplyObject(exec);
        } else {
            rep = r == TC_OK ? exec : NULL;
            if (r != TC_OK && exec)
                freeReplyObject(exec);
        }
        o->cb(o->ud, r, (tc_reply *)(void *)rep);
        break;
    }
    }
    op_free(o);
}

/* Drop the lane's connection; every request on it fails with `r`, in
 * order. Its callbacks may submit again: they find the lane closed. With
 * `resend` on a cluster, the reads and the SETs not sent yet take the
 * blocking path instead (op_sync()); a write that may have run is
 * answered with the failure, as the blocking path answers it. */
static void lane_fail(lane *l, tc_result r, const char *why, int resend)
{
    tc_async *a = l->a;
    op *o = l->head, *unsent = l->bhead;
    tc__aconn *ac = l->ac;
    /* Both lists are taken before any callback runs: a callback that
     * submits again must find the lane empty and closed, not flush a batch
     * onto the connection freed here. */
    l->head = l->tail = NULL;
    l->bhead = l->btail = NULL;
    l->bn = 0;
    l->ac = NULL;
    l->retry_at = tc__now_ns() + (uint64_t)RETRY_MS * 1000000u;
    tc__aconn_free(ac); /* safe from its own callbacks */
    for (int pass = 0; pass < 2; pass++) {
        while (o) {
            op *next = o->next;
            if (resend && a->slots &&
                (pass == 1 || o->kind == OP_GET || o->kind == OP_READ)) {
                op_sync(a, o);
            } else {
                tc__fail(r, "%s", why);
                op_complete(a, o, r, NULL);
            }
            o = next;
        }
        /* Then the SETs not sent yet (submitted after those): nothing of
         * them reached Redis. */
        o = unsent;
        unsent = NULL;
    }
}

static void on_error(tc__aconn *ac, const char *why, void *data)
{
    lane *l = data;
    char msg[300];
    (void)ac;
    snprintf(msg, sizeof(msg), "Redis connection lost: %s", why);
    lane_fail(l, TC_L2_UNAVAILABLE, msg, 1);
}

static void on_setup(tc__aconn *ac, redisReply *r, void *priv)
{
    lane *l = priv;
    char msg[300];
    if (ac != l->ac || r->type != REDIS_REPLY_ERROR)
        return;
    snprintf(msg, sizeof(msg), "connection set-up: %.*s",
             (int)(r->len > 200 ? 200 : r->len), r->str);
    lane_fail(l, strncmp(r->str, "NOAUTH", 6) && strncmp(r->str, "WRONGPASS", 9)
                     ? TC_PROTOCOL
                     : TC_AUTH,
              msg, 0);
}

/* The lane's connection, made when missing (blocking up to the connect
 * timeout; not retried within RETRY_MS of a failure, nor while the L2
 * pool's breaker is open). */
static tc__aconn *lane_conn(lane *l)
{
    tc_async *a = l->a;
    tc_cache *c = a->c;
    tc__conn_opts o;
    tc__setup_cmds setup;
    tc__aconn_events ev = {on_error, NULL, l};
    tc__config cfg = c->cfg;
    if (l->ac)
        return l->ac;
    if (tc__now_ns() < l->retry_at) {
        tc__fail(TC_L2_UNAVAILABLE, "Redis unavailable (reconnecting)");
        return NULL;
    }
    if (tc__l2_breaker_open(c->l2)) {
        tc__fail(TC_L2_UNAVAILABLE, "Redis unavailable (circuit breaker open)");
        return NULL;
    }
    if (l->used) { /* a cluster's master, as l2_cluster.c's pool_for() */
        cfg.host = l->node.host;
        cfg.port = l->node.port;
        cfg.unix_path = NULL;
        cfg.cluster = NULL;
        cfg.ncluster_seeds = 0;
    }
    tc__conn_opts_of(&cfg, &o);
    if (tc__aconn_open(a->loop, &o, &ev, &l->ac) != TC_OK) {
        l->ac = NULL;
        l->retry_at = tc__now_ns() + (uint64_t)RETRY_MS * 1000000u;
        return NULL;
    }
    tc__setup_cmds_make(&cfg, &setup);
    for (int i = 0; i < setup.n; i++)
        if (tc__aconn_command_argv(l->ac, on_setup, l, setup.cmd[i].argc,
                                   setup.cmd[i].argv,
                                   setup.cmd[i].argvlen) != 0) {
            tc__aconn_free(l->ac);
            l->ac = NULL;
            tc__fail(TC_NO_MEMORY, "out of memory");
            return NULL;
        }
    return l->ac;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    tc_async *a = w->data;
    uint64_t now = tc__now_ns(),
             limit = (uint64_t)a->c->cfg.command_timeout_ms * 1000000u;
    (void)loop, (void)revents;
    for (unsigned i = 0; i < a->nlanes * a->per; i++) {
        lane *l = &a->lanes[i];
        if (l->head && now - l->head->sent_ns > limit) {
            char msg[100];
            snprintf(msg, sizeof(msg), "Redis did not answer within %u ms",
                     a->c->cfg.command_timeout_ms);
            lane_fail(l, TC_TIMEOUT, msg, 1);
        }
    }
}

/* ---- replies ------------------------------------------------------------- */

static void lane_pop(lane *l, op *o)
{
    /* Replies come in order: the op answered is the oldest. */
    l->head = o->next;
    if (!l->head)
        l->tail = NULL;
}

static void on_get_value(tc__aconn *ac, redisReply *r, void *priv)
{
    op *o = priv;
    o->redir |= redirected(o->a, r);
    o->val = r;
    tc__aconn_keep_reply(ac);
}

/* On a cluster, the replies before a request's last (MULTI's, a queued
 * command's): a redirection there aborts its EXEC. */
static void on_mid(tc__aconn *ac, redisReply *r, void *priv)
{
    op *o = priv;
    (void)ac;
    o->redir |= redirected(o->a, r);
}

static void on_last(tc__aconn *ac, redisReply *r, void *priv)
{
    op *o = priv;
    lane_pop(o->l, o);
    if (o->redir || redirected(o->a, r)) {
        op_sync(o->l->a, o); /* r: freed by the aconn */
        return;
    }
    tc__aconn_keep_reply(ac);
    op_complete(o->l->a, o, TC_OK, r);
}

/* The EXEC of a group commit: each SET is answered with its own element
 * of it, or the MSET's (the group's stamp HSETs and PUBLISH answer last),
 * borrowed while its completion runs. */
static void on_batch(tc__aconn *ac, redisReply *r, void *priv)
{
    op *first = priv, *o, *list = NULL, **tail = &list;
    lane *l = first->l;
    tc_async *a = l->a;
    size_t at = 0;
    unsigned n = first->batch_n;
    int mset = first->batch_mset;
    size_t want = (mset ? 1 : (size_t)n) + first->batch_h + 1;
    for (unsigned i = 0; i < n; i++) {
        o = l->head; /* replies come in order: these are the oldest */
        lane_pop(l, o);
        o->next = NULL;
        *tail = o;
        tail = &o->next;
    }
    if (first->redir || redirected(a, r)) {
        /* Refused whole (a group is one slot's): each SET again, in
         * order, on the blocking path. */
        for (o = list; o;) {
            op *next = o->next;
            op_sync(a, o);
            o = next;
        }
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != want ||
        (mset && r->element[0]->type != REDIS_REPLY_STATUS &&
         r->element[0]->type != REDIS_REPLY_ERROR)) {
        char why[200];
        snprintf(why, sizeof(why), "EXEC: %.*s",
                 r->type == REDIS_REPLY_ERROR ? (int)(r->len > 150 ? 150 : r->len)
                                              : 20,
                 r->type == REDIS_REPLY_ERROR ? r->str : "transaction aborted");
        for (o = list; o;) {
            op *next = o->next;
            op_complete(a, o, tc__fail(TC_PROTOCOL, "%s", why), NULL);
            o = next;
        }
        return;
    }
    tc__aconn_keep_reply(ac);
    for (o = list; o; o = o->next) /* the fills' index lines, together */
        tc__l1_prefetch(a->c->l1, o->set->h, 0);
    for (o = list; o; at++) {
        op *next = o->next;
        o->sreply = r->element[mset ? 0 : at];
        op_complete(a, o, TC_OK, NULL);
        o = next;
    }
    freeReplyObject(r);
}

/* On a cluster, a write's invalidation goes on the channel of the master
 * that runs it (tc__cluster_node_channel(), as l2_cluster.c's for_node()
 * picks it): tc__txn_build() put the configuration's in its PUBLISH. */
static void on_lane_channel(const lane *l, tc__txn_cmds *tx)
{
    if (l->chan && tx->pub[1] == l->a->c->cfg.channel) {
        tx->pub[1] = l->chan;
        tx->publ[1] = strlen(l->chan);
    }
}

static void enqueue_sent(lane *l, op *o, uint64_t now)
{
    o->l = l;
    o->sent_ns = now;
    o->next = NULL;
    if (l->tail)
        l->tail->next = o;
    else
        l->head = o;
    l->tail = o;
}

/* The stamps of a group, in as few HSETs as can carry them: one naming
 * every SET's field and stamp when their stamps hash is the same (always
 * without Redis Cluster, which lanes refuse), else each SET's own. Fills
 * hv/hl (room for 4 per SET) and cmds (room for one per SET); the count. */
static unsigned group_stamps(op *first, unsigned n, const char **hv,
                             size_t *hl, tc__cmd *cmds)
{
    const tc__set_op *s0 = first->set;
    unsigned i = 0, nh = 0;
    int same = 1;
    for (op *p = first; p && i < n; p = p->next, i++)
        same &= p->set->sk.len == s0->sk.len &&
                memcmp(p->set->sk.p, s0->sk.p, s0->sk.len) == 0;
    i = 0;
    for (op *p = first; p && i < n; p = p->next, i++) {
        /* set_begin's HSET: HSET, stamps hash, field, stamp */
        const tc__cmd *h = &p->set->cmds[1];
        if (!same || i == 0) {
            cmds[nh++] = (tc__cmd){2, hv, hl};
            hv[0] = h->argv[0], hl[0] = h->argvlen[0];
            hv[1] = h->argv[1], hl[1] = h->argvlen[1];
            hv += 2, hl += 2;
        }
        hv[0] = h->argv[2], hl[0] = h->argvlen[2];
        hv[1] = h->argv[3], hl[1] = h->argvlen[3];
        hv += 2, hl += 2;
        cmds[nh - 1].argc += 2;
    }
    return nh;
}

/* Send the lane's waiting SETs as one MULTI: their SETs (or one MSET),
 * the HSET of their stamps (group_stamps), one PUBLISH naming every key,
 * EXEC. Each SET's answer is its own element of EXEC's, or MSET's
 * (on_batch). */
static void flush_batch(lane *l)
{
    tc_async *a = l->a;
    tc_cache *c = a->c;
    batch_scratch *b = &a->scratch;
    op *o = l->bhead, *first = o;
    unsigned n = l->bn, i = 0;
    size_t nw;
    tc__txn bt;
    tc__txn_cmds tx;
    uint64_t now = tc__now_ns();
    if (!n)
        return;
    if (!l->ac) { /* (lane_fail takes the batch: not reached) */
        lane_fail(l, TC_L2_UNAVAILABLE, "Redis connection lost", 0);
        return;
    }
    a->dirty = 1;
    l->bhead = l->btail = NULL;
    l->bn = 0;
    /* In the lane's order from now on: a failure below fails them all. */
    for (op *p = o; p;) {
        op *next = p->next;
        p->ncmd = 1 + 2; /* its SET's reply, cut from EXEC's (on_batch) */
        enqueue_sent(l, p, now);
        p = next;
    }
    /* Each key's copy is dropped before the write is sent (its generation
     * guards the fill): all of the group's index lines are asked for
     * first, so their cache misses overlap instead of one per SET. */
    for (int stage = 0; stage < 2; stage++)
        for (op *p = first; p; p = p->next)
            tc__l1_prefetch(c->l1, p->set->h, stage);
    for (op *p = first; p; p = p->next)
        tc__set_drop_l1(c, p->set);
    first->batch_n = n;
    /* Without a TTL in any of them, the SETs go as one MSET (the same
     * writes in the same order, one command for Redis to queue and run
     * instead of n); else each as it is. */
    first->batch_mset = n > 1;
    b->mv[0] = "MSET", b->ml[0] = 4;
    for (op *p = first; p && i < n; p = p->next, i++) {
        const tc__cmd *set = &p->set->cmds[0]; /* SET key value [PX ms] */
        b->keys[i] = p->set->key, b->klens[i] = p->set->klen;
        b->writes[i] = *set;
        first->batch_mset &= set->argc == 3;
        b->mv[1 + 2 * i] = set->argv[1], b->ml[1 + 2 * i] = set->argvlen[1];
        b->mv[2 + 2 * i] = set->argv[2], b->ml[2 + 2 * i] = set->argvlen[2];
    }
    nw = n;
    if (first->batch_mset) {
        b->writes[0] = (tc__cmd){(int)(1 + 2 * n), b->mv, b->ml};
        nw = 1;
    }
    first->batch_h = group_stamps(first, n, b->hv, b->hl, b->writes + nw);
    nw += first->batch_h;
    /* The transaction without the writes (MULTI, PUBLISH, EXEC): the writes
     * go after its MULTI straight from the scratch arrays. */
    if (tc__txn_begin(c, &bt, n == 1 ? TC__MSG_KEY : TC__MSG_KEYS, n, b->keys,
                      b->klens, 0) != TC_OK ||
        tc__txn_build(c, &bt, 0, NULL, 0, &tx) != TC_OK) {
        tc__txn_end(c, &bt, NULL, 0);
        lane_fail(l, TC_NO_MEMORY, "out of memory", 0);
        return;
    }
    on_lane_channel(l, &tx);
    for (size_t k = 0; k < tx.n + nw; k++) {
        int last = k + 1 == tx.n + nw;
        const tc__cmd *cmd = k == 0        ? &tx.cmds[0]
                             : k <= nw     ? &b->writes[k - 1]
                                           : &tx.cmds[k - nw];
        tc__aconn_reply_fn cb = last ? on_batch : a->slots ? on_mid : NULL;
        if (tc__aconn_command_argv(l->ac, cb, cb ? first : NULL, cmd->argc,
                                   cmd->argv,
                                   cmd->argvlen) != 0) {
            tc__txn_cmds_free(&tx);
            tc__txn_end(c, &bt, NULL, 0);
            lane_fail(l, TC_NO_MEMORY, "out of memory", 0);
            return;
        }
    }
    tc__txn_cmds_free(&tx);
    tc__txn_end(c, &bt, NULL, 0); /* not strict: frees the message */
}

static void on_flush(struct ev_loop *loop, ev_timer *w, int revents)
{
    tc_async *a = w->data;
    (void)loop, (void)revents;
    for (unsigned i = 0; i < a->nlanes * a->per; i++)
        if (a->lanes[i].bn)
            flush_batch(&a->lanes[i]);
}

/* Before the loop polls (the lowest priority: after the caller's own
 * prepare watchers, which may submit): the iteration's group commits are
 * sent and every lane's commands written now, one write per lane, rather
 * than after a wakeup that reports the socket writable. A failed write
 * fails the lane as a lost connection does. */
static void on_send(struct ev_loop *loop, ev_prepare *w, int revents)
{
    tc_async *a = w->data;
    (void)revents;
    if (!a->dirty)
        return;
    a->dirty = 0;
    for (unsigned i = 0; i < a->nlanes * a->per; i++) {
        lane *l = &a->lanes[i];
        if (l->bn)
            flush_batch(l);
        if (l->ac)
            tc__aconn_flush(l->ac);
    }
    if (ev_is_active(&a->flush))
        ev_timer_stop(loop, &a->flush);
}

/* ---- submission ------------------------------------------------------------ */

/* The lane entry for `lane_no` and the requests's `slot` (-1 off a
 * cluster): on a cluster the connection to the slot's master, or to where
 * the slot's requests in flight went (slot_use). TC_OK, or
 * TC_L2_UNAVAILABLE when the map names no master for the slot. */
static tc_result pick(tc_async *a, unsigned lane_no, int slot, lane **out)
{
    unsigned g = lane_no % a->nlanes;
    lane *ls = &a->lanes[g * a->per], *idle = NULL;
    tc_cache *c = a->c;
    tc__node_addr at;
    tc_result r;
    const slot_use *u;
    if (!a->slots) {
        *out = ls;
        return TC_OK;
    }
    u = &a->slots[(size_t)g * NSLOTS + (unsigned)slot];
    if (u->n) {
        *out = &ls[u->at];
        return TC_OK;
    }
    if ((r = tc__cluster_addr(c->cfg.cluster, &c->cfg, (unsigned)slot,
                              &at)) != TC_OK)
        return r;
    for (unsigned i = 0; i < a->per; i++) {
        if (ls[i].used && ls[i].node.port == at.port &&
            !strcmp(ls[i].node.host, at.host)) {
            *out = &ls[i];
            return TC_OK;
        }
        /* An unused entry, else one with nothing in flight. */
        if (!ls[i].used ? !idle || idle->used
                        : !idle && !ls[i].head && !ls[i].bn)
            idle = &ls[i];
    }
    if (!idle)
        return tc__fail(TC_L2_UNAVAILABLE, "Redis Cluster: more than %d "
                                           "masters busy on one lane",
                        NODES_MAX);
    /* A new master, or one that serves no slot now: this entry is its. */
    if (idle->ac) {
        tc__aconn_free(idle->ac);
        idle->ac = NULL;
    }
    free(idle->chan);
    idle->chan = NULL;
    if (!(idle->chan = tc__cluster_node_channel_dup(c->cfg.channel, &at))) {
        idle->used = 0;
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    idle->used = 1;
    idle->node = at;
    idle->retry_at = 0;
    *out = idle;
    return TC_OK;
}

/* Send `n` commands for `o`; the last one's reply completes it. On failure
 * the connection is dropped (its requests fail) and -1 returned: the
 * caller still owns `o`. */
static int send_op(lane *l, op *o, size_t n, const tc__cmd *cmds,
                   tc__aconn_reply_fn first)
{
    tc_async *a = l->a;
    for (size_t i = 0; i < n; i++) {
        tc__aconn_reply_fn cb = i + 1 == n ? on_last : i == 0 ? first : NULL;
        if (!cb && a->slots)
            cb = on_mid;
        if (tc__aconn_command_argv(l->ac, cb, cb ? o : NULL, cmds[i].argc,
                                   cmds[i].argv, cmds[i].argvlen) != 0) {
            if (i > 0) /* half a request is on the wire */
                lane_fail(l, TC_NO_MEMORY, "out of memory", 0);
            return -1;
        }
    }
    a->dirty = 1;
    o->l = l;
    o->sent_ns = tc__now_ns();
    if (l->tail)
        l->tail->next = o;
    else
        l->head = o;
    l->tail = o;
    op_enter(l, o);
    return 0;
}

static op *op_new(tc_async *a, int kind, void *ud)
{
    op *o = calloc(1, sizeof(*o));
    if (!o) {
        tc__fail(TC_NO_MEMORY, "out of memory");
        return NULL;
    }
    o->a = a;
    o->kind = kind;
    o->ud = ud;
    o->slot = -1;
    return o;
}

/* A SET request with its write state and room for `kvlen` bytes of key
 * and value in `key`: a spare one when there is (op_free keeps them). */
static op *set_op_new(tc_async *a, void *ud, size_t kvlen)
{
    op *o = a->spare;
    if (o) {
        tc__set_op *set = o->set;
        char *kv = o->key;
        size_t cap = o->kvcap;
        a->spare = o->next;
        a->nspare--;
        memset(o, 0, sizeof(*o));
        o->set = set, o->key = kv, o->kvcap = cap;
        o->a = a, o->kind = OP_SET, o->ud = ud, o->slot = -1;
    } else if (!(o = op_new(a, OP_SET, ud))) {
        return NULL;
    } else if (!(o->set = malloc(sizeof(*o->set)))) {
        free(o);
        tc__fail(TC_NO_MEMORY, "out of memory");
        return NULL;
    }
    if (o->kvcap < kvlen) {
        char *kv = malloc(kvlen);
        if (!kv) {
            o->kvcap = SPARE_KV_MAX + 1; /* not kept: freed whole */
            op_free(o);
            tc__fail(TC_NO_MEMORY, "out of memory");
            return NULL;
        }
        free(o->key);
        o->key = kv;
        o->kvcap = kvlen;
    }
    return o;
}

tc_result tc_async_get(tc_async *a, unsigned lane_no, const void *key,
                       size_t klen, tc_async_get_fn cb, void *userdata)
{
    tc_cache *c;
    lane *l;
    op *o;
    tc__pkey k;
    tc_result r;
    if (!a || !cb)
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    c = a->c;
    if ((r = tc__check_key(c, key, klen)) != TC_OK)
        return r;
    if ((r = tc__pkey_make(c, key, klen, &k)) != TC_OK)
        return r;
    if ((r = pick(a, lane_no, a->slots ? (int)tc__slot_of(k.p, k.len) : -1,
                  &l)) != TC_OK) {
        tc__pkey_free(&k);
        return r;
    }
    flush_batch(l); /* what came before goes first */
    if (!lane_conn(l)) {
        tc__pkey_free(&k);
        return TC_L2_UNAVAILABLE;
    }
    if (!(o = op_new(a, OP_GET, userdata))) {
        tc__pkey_free(&k);
        return TC_NO_MEMORY;
    }
    o->gcb = cb;
    if (!(o->key = malloc(klen))) {
        free(o);
        tc__pkey_free(&k);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    memcpy(o->key, key, klen);
    o->klen = klen;
    o->h = tc__hash(key, klen);
    if (a->slots)
        o->slot = (int)tc__slot_of(k.p, k.len);
    /* As tc_get: a miss counted, the generation read before asking. L1 is
     * not answered from: the caller's own earlier writes may still be on
     * their way, and another reader may have filled the old value. */
    tc_value_release(tc__l1_lookup_peek(c, o->h, key, klen,
                                        TC__L1_COUNT_MISS));
    o->gen = tc__l1_gen(c->l1, o->h);
    {
        const char *a1[2] = {"GET", k.p}, *a2[2] = {"PTTL", k.p};
        size_t l1[2] = {3, k.len}, l2[2] = {4, k.len};
        tc__cmd cmds[2] = {{2, a1, l1}, {2, a2, l2}};
        int rc = send_op(l, o, 2, cmds, on_get_value);
        tc__pkey_free(&k);
        if (rc != 0) {
            op_free(o);
            return tc__fail(TC_NO_MEMORY, "out of memory");
        }
    }
    return TC_OK;
}

tc_result tc_async_set(tc_async *a, unsigned lane_no, const void *key,
                       size_t klen, const void *val, size_t vlen,
                       const tc_set_opts *opts, tc_async_fn cb,
                       void *userdata)
{
    tc_cache *c;
    tc__txn_cmds tx;
    lane *l;
    op *o;
    tc_result r;
    int grouped, slot = -1;
    if (!a || !cb || (!val && vlen))
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    c = a->c;
    if (tc__write_is_strict(c, opts ? opts->flags : 0))
        return tc__fail(TC_BAD_ARGUMENT, "a strict write waits: use "
                                         "tc_set_ex()");
    if (a->slots) {
        /* NX/XX is a script that names the channel itself. */
        tc__pkey k;
        if (opts && (opts->flags & (TC_SET_NX | TC_SET_XX)))
            return tc__fail(TC_BAD_ARGUMENT, "NX or XX on Redis Cluster: "
                                             "use tc_set_ex()");
        if ((r = tc__check_key(c, key, klen)) != TC_OK ||
            (r = tc__pkey_make(c, key, klen, &k)) != TC_OK)
            return r;
        slot = (int)tc__slot_of(k.p, k.len);
        tc__pkey_free(&k);
    }
    if ((r = pick(a, lane_no, slot, &l)) != TC_OK)
        return r;
    if (!lane_conn(l))
        return TC_L2_UNAVAILABLE;
    if (!(o = set_op_new(a, userdata, klen + vlen + 1)))
        return TC_NO_MEMORY;
    o->cb = cb;
    o->slot = slot;
    if (opts)
        o->sopts = *opts;
    memcpy(o->key, key, klen);
    if (vlen)
        memcpy(o->key + klen, val, vlen);
    grouped = c->bus && !(opts && (opts->flags & (TC_SET_NX | TC_SET_XX)));
    if ((r = tc__set_begin(c, o->key, klen, o->key + klen, vlen, opts, NULL,
                           NULL, grouped, o->set)) != TC_OK) {
        op_free(o);
        return r;
    }
    if (grouped) {
        /* Sent with the lane's other SETs when the loop iteration ends.
         * On a cluster a group is one slot's (one MULTI may not name keys
         * of several): a SET of another slot sends the group first. */
        if (l->bn && l->bslot != slot)
            flush_batch(l);
        if (!l->ac) { /* the flush failed the lane */
            tc__set_finish(c, o->set, TC_L2_UNAVAILABLE, NULL);
            op_free(o);
            return tc__fail(TC_L2_UNAVAILABLE, "Redis connection lost");
        }
        l->bslot = slot;
        o->l = l;
        if (l->btail)
            l->btail->next = o;
        else
            l->bhead = o;
        l->btail = o;
        op_enter(l, o);
        a->dirty = 1;
        if (++l->bn >= BATCH_MAX)
            flush_batch(l);
        else if (!ev_is_active(&a->flush))
            ev_timer_start(a->loop, &a->flush);
        return TC_OK;
    }
    flush_batch(l);
    if (!l->ac) { /* the flush failed the lane */
        tc__set_finish(c, o->set, TC_L2_UNAVAILABLE, NULL);
        op_free(o);
        return tc__fail(TC_L2_UNAVAILABLE, "Redis connection lost");
    }
    if ((r = tc__txn_build(c, &o->set->t, o->set->ncmd, o->set->cmds,
                           o->set->cond, &tx)) != TC_OK) {
        /* Nothing was sent: as a failed write (L1 holds no copy). */
        tc__set_finish(c, o->set, r, NULL);
        op_free(o);
        return r;
    }
    on_lane_channel(l, &tx);
    o->ncmd = tx.n;
    if (send_op(l, o, tx.n, tx.cmds, NULL) != 0) {
        tc__txn_cmds_free(&tx);
        tc__set_finish(c, o->set, TC_NO_MEMORY, NULL);
        op_free(o);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    tc__txn_cmds_free(&tx); /* the commands are in the connection's buffer */
    return TC_OK;
}

/* Commands whose replies may nest deeper than hiredis 0.14 reads (7
 * levels: COMMAND DOCS, XINFO STREAM FULL ...). The sync path fails only
 * that call; on a lane the connection, and every request on it, would. */
static int deep_reply(const char *name, size_t len)
{
    static const char *const deep[] = {"command", "xinfo", "function",
                                       "module", "memory", "cluster",
                                       "latency", "slowlog"};
    for (size_t i = 0; i < sizeof(deep) / sizeof(deep[0]); i++)
        if (strlen(deep[i]) == len && !strncasecmp(name, deep[i], len))
            return 1;
    return 0;
}

/* Copies of `n` commands' arguments in one block (the op's, freed with
 * it): *vs and *ls point into it, each argument NUL-terminated. */
static char *copy_cmds(size_t n, const int *argcs,
                       const char *const *const *argvs,
                       const size_t *const *lens, const char *const **vs[],
                       const size_t **ls[])
{
    size_t total = 0, bytes;
    char *blk, *at;
    const char ***cvs;
    size_t **cls;
    const char **cv;
    size_t *cl;
    for (size_t i = 0; i < n; i++)
        total += (size_t)argcs[i];
    bytes = n * (sizeof(*cvs) + sizeof(*cls)) +
            total * (sizeof(*cv) + sizeof(*cl));
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < argcs[i]; k++)
            bytes += lens[i][k] + 1;
    if (!(blk = malloc(bytes)))
        return NULL;
    cvs = (const char ***)(void *)blk;
    cls = (size_t **)(void *)(cvs + n);
    cv = (const char **)(void *)(cls + n);
    cl = (size_t *)(void *)(cv + total);
    at = (char *)(cl + total);
    for (size_t i = 0; i < n; i++) {
        cvs[i] = cv, cls[i] = cl;
        for (int k = 0; k < argcs[i]; k++) {
            if (lens[i][k])
                memcpy(at, argvs[i][k], lens[i][k]);
            at[lens[i][k]] = '\0';
            *cv++ = at, *cl++ = lens[i][k];
            at += lens[i][k] + 1;
        }
    }
    *vs = (const char *const **)cvs;
    *ls = (const size_t **)cls;
    return blk;
}

/* tc_async_command (one command, `multi` 0) and tc_async_multi (`multi`
 * 1: MULTI, the commands, EXEC, answered with EXEC's reply). */
static tc_result submit(tc_async *a, unsigned lane_no, size_t n,
                        const int *argcs, const char *const *const *argvs,
                        const size_t *const *lens, int multi, tc_async_fn cb,
                        void *userdata)
{
    tc_cache *c;
    const tc__cmdtab *t;
    lane *l;
    op *o;
    tc_result r;
    const char *const **vs;
    const size_t **ls;
    int writes = 0;
    if (!a || !cb)
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    c = a->c;
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    /* The table is read at the first blocking call (tiercached: at
     * start), never here on the loop. */
    if (!(t = atomic_load(&c->cmdtab)))
        return tc__fail(TC_BAD_ARGUMENT, "command table not read yet: use "
                                         "tc_command()");
    if (!n || !argcs || !argvs || !lens)
        return tc__fail(TC_BAD_ARGUMENT, "empty command");
    for (size_t i = 0; i < n; i++) {
        if (argcs[i] < 1 || !argvs[i] || !lens[i] || !argvs[i][0])
            return tc__fail(TC_BAD_ARGUMENT, "empty command");
        if (deep_reply(argvs[i][0], lens[i][0]))
            return tc__fail(TC_BAD_ARGUMENT, "a reply hiredis may not read: "
                                             "use tc_command()");
    }
    if (!(o = op_new(a, OP_READ, userdata)))
        return TC_NO_MEMORY;
    o->cb = cb;
    o->multi = multi;
    /* The written keys are used again when Redis answers: copy them all. */
    if (!(o->key = copy_cmds(n, argcs, argvs, lens, &vs, &ls)) ||
        !(o->ps = calloc(n, sizeof(*o->ps)))) {
        op_free(o);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    while (o->nps < n) {
        tc__prepared *p = &o->ps[o->nps];
        if ((r = tc__prepare(c, t, argcs[o->nps], vs[o->nps], ls[o->nps], 0,
                             p)) != TC_OK) {
            op_free(o);
            return r;
        }
        o->nps++; /* the op's to free from here */
        /* Inside MULTI nothing blocks, but it may still write keys
         * COMMAND could not name (the blocking call handles that). */
        if (!p->keys.known || (!multi && p->keys.cls == TC__CLASS_BLOCKING) ||
            (p->keys.effect != TC__EFFECT_READ && tc__write_is_strict(c, 0))) {
            op_free(o);
            return tc__fail(TC_BAD_ARGUMENT, "this command waits: use "
                                             "tc_command()");
        }
        writes |= p->keys.effect != TC__EFFECT_READ;
        if (a->slots && p->keys.effect == TC__EFFECT_ALL) {
            op_free(o);
            return tc__fail(TC_BAD_ARGUMENT, "Redis Cluster: a write of "
                                             "keys nobody can name: use "
                                             "tc_command()");
        }
    }
    if (a->slots) {
        /* Routed by the one slot of its keys; keys of several slots (split
         * by tc_command, or CROSSSLOT) and none (DBSIZE, SCAN ...: every
         * master) take the blocking call. The commands are kept for
         * op_sync(). */
        if ((o->slot = tc__prepared_slots(n, o->ps)) < 0) {
            op_free(o);
            return tc__fail(TC_BAD_ARGUMENT,
                            "Redis Cluster: not the keys of one slot: use "
                            "tc_command()");
        }
        if (!(o->argcs = malloc(n * sizeof(*o->argcs)))) {
            op_free(o);
            return tc__fail(TC_NO_MEMORY, "out of memory");
        }
        memcpy(o->argcs, argcs, n * sizeof(*argcs));
        o->vs = vs, o->ls = ls;
    }
    if ((r = pick(a, lane_no, o->slot, &l)) != TC_OK) {
        op_free(o);
        return r;
    }
    flush_batch(l); /* what came before goes first */
    if (!lane_conn(l)) {
        op_free(o);
        return TC_L2_UNAVAILABLE;
    }
    if (writes) {
        /* Every written key's invalidation in the same MULTI. */
        if ((r = tc__collect(c, n, o->ps, vs, ls, &o->w)) != TC_OK) {
            memset(&o->w, 0, sizeof(o->w));
            op_free(o);
            return r;
        }
        /* A transaction that writes no key: plain, as tc_command_multi()
         * runs it. (A single write command keeps its MULTI, as
         * tc_command() runs it.) */
        if (multi)
            writes = o->w.all || o->w.n;
    }
    if (!writes) {
        /* A read as it is; a transaction of reads as MULTI ... EXEC. */
        tc__cmd *cmds = malloc((n + 2) * sizeof(*cmds));
        static const char *const multiv[1] = {"MULTI"}, *const execv[1] = {
                                                            "EXEC"};
        size_t k = 0;
        int rc;
        if (!cmds) {
            op_free(o);
            return tc__fail(TC_NO_MEMORY, "out of memory");
        }
        if (multi)
            cmds[k++] = (tc__cmd){1, (const char **)multiv, NULL};
        for (size_t i = 0; i < n; i++)
            cmds[k++] = (tc__cmd){o->ps[i].argc, o->ps[i].argv,
                                  o->ps[i].argvlen};
        if (multi)
            cmds[k++] = (tc__cmd){1, (const char **)execv, NULL};
        rc = send_op(l, o, k, cmds, NULL);
        free(cmds);
        if (rc != 0) {
            op_free(o);
            return tc__fail(TC_NO_MEMORY, "out of memory");
        }
        return TC_OK;
    }
    {
        tc__txn_cmds tx;
        o->kind = OP_WRITE;
        if ((r = tc__write_begin(c, n, o->ps, &o->w, &o->wop)) != TC_OK) {
            op_free(o);
            return r;
        }
        if ((r = tc__txn_build(c, &o->wop.t, o->wop.ncmd, o->wop.cmds, 0,
                               &tx)) != TC_OK ||
            (on_lane_channel(l, &tx), o->ncmd = tx.n,
             send_op(l, o, tx.n, tx.cmds, NULL)) != 0) {
            redisReply *none = NULL;
            if (r == TC_OK) {
                tc__txn_cmds_free(&tx);
                r = TC_NO_MEMORY;
            }
            tc__write_finish(c, 0, n, &o->w, &o->wop, r, &none);
            op_free(o);
            return tc__fail(r, "out of memory");
        }
        tc__txn_cmds_free(&tx);
    }
    return TC_OK;
}

tc_result tc_async_command(tc_async *a, unsigned lane_no, int argc,
                           const char *const *argv, const size_t *argvlen,
                           tc_async_fn cb, void *userdata)
{
    return submit(a, lane_no, 1, &argc, &argv, &argvlen, 0, cb, userdata);
}

tc_result tc_async_multi(tc_async *a, unsigned lane_no, size_t n,
                         const int *argcs, const char *const *const *argvs,
                         const size_t *const *argvlens, tc_async_fn cb,
                         void *userdata)
{
    return submit(a, lane_no, n, argcs, argvs, argvlens, 1, cb, userdata);
}

/* ---- lifetime ------------------------------------------------------------ */

tc_result tc_async_open(tc_cache *c, void *ev_loop, unsigned lanes,
                        tc_async **out)
{
    tc_async *a;
    if (!c || !ev_loop || !out || !lanes)
        return tc__fail(TC_BAD_ARGUMENT, "NULL or zero argument");
    *out = NULL;
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    if (c->cfg.sentinel)
        return tc__fail(TC_BAD_ARGUMENT, "not behind sentinels");
    if (!(a = calloc(1, sizeof(*a))))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    /* On a cluster each lane is a connection per master, made on first
     * use (pick()). */
    a->per = c->cfg.cluster ? NODES_MAX : 1;
    if (!(a->lanes = calloc((size_t)lanes * a->per, sizeof(*a->lanes))) ||
        (c->cfg.cluster &&
         !(a->slots = calloc((size_t)lanes * NSLOTS, sizeof(*a->slots))))) {
        free(a->lanes);
        free(a);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    a->c = c;
    a->loop = ev_loop;
    a->nlanes = lanes;
    for (unsigned i = 0; i < lanes * a->per; i++) {
        a->lanes[i].a = a;
        a->lanes[i].group = i / a->per;
    }
    ev_timer_init(&a->flush, on_flush, 0., 0.);
    a->flush.data = a;
    ev_prepare_init(&a->send, on_send);
    ev_set_priority(&a->send, EV_MINPRI);
    a->send.data = a;
    ev_prepare_start(a->loop, &a->send);
    ev_unref(a->loop); /* it does not keep the loop alive */
    if (c->cfg.command_timeout_ms) {
        double iv = c->cfg.command_timeout_ms / 4000.0;
        iv = iv < 0.01 ? 0.01 : iv;
        ev_timer_init(&a->tick, on_tick, iv, iv);
        a->tick.data = a;
        ev_timer_start(a->loop, &a->tick);
        ev_unref(a->loop); /* housekeeping does not keep the loop alive */
    }
    *out = a;
    return TC_OK;
}

size_t tc_async_pending(const tc_async *a)
{
    return a ? a->pending : 0;
}

void tc_async_close(tc_async *a)
{
    if (!a)
        return;
    for (unsigned i = 0; i < a->nlanes * a->per; i++)
        if (a->lanes[i].ac || a->lanes[i].head || a->lanes[i].bhead)
            lane_fail(&a->lanes[i], TC_L2_UNAVAILABLE,
                      "closed before Redis answered", 0);
    if (ev_is_active(&a->tick)) {
        ev_ref(a->loop);
        ev_timer_stop(a->loop, &a->tick);
    }
    ev_timer_stop(a->loop, &a->flush);
    ev_ref(a->loop);
    ev_prepare_stop(a->loop, &a->send);
    while (a->spare) {
        op *o = a->spare;
        a->spare = o->next;
        free(o->set);
        free(o->key);
        free(o);
    }
    for (unsigned i = 0; i < a->nlanes * a->per; i++)
        free(a->lanes[i].chan);
    free(a->lanes);
    free(a->slots);
    free(a);
}
