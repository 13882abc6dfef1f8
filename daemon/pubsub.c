/*
 * Shared subscriptions (pubsub.h).
 *
 * Every channel or pattern a local client subscribes to has one `ps_name`,
 * whose upstream state moves IDLE -> SUBSCRIBING -> ACTIVE ->
 * UNSUBSCRIBING -> IDLE. At most one upstream command for a name is in
 * flight; when its confirmation comes, the name is set to what its local
 * subscribers want (any left: subscribed; none: not). A client's SUBSCRIBE
 * of a name that is not ACTIVE waits (a `ps_wait` on its reply slot) until
 * the name's next upstream confirmation: `confirms` counts them, and the
 * wait records the count it saw. A confirmation that may predate the
 * client's SUBSCRIBE (its name ACTIVE, or SUBSCRIBING on a command sent
 * before) does not date it: then the wait also waits for the pong of a
 * PING sent after it came (its `barrier`). Its subscriptions become `live`
 * (receive messages) when its confirmation is made: a message that came
 * upstream before was sent by Redis before that confirmation or pong, so
 * before the client's SUBSCRIBE reached Redis, if not before it was sent;
 * redis-server would not send it either.
 * Leaving is the mirror image: UNSUBSCRIBE, PUNSUBSCRIBE or RESET sends a
 * PING upstream, and the subscriptions it names stop counting at once but
 * go only when that PING's pong comes back, with the reply: a message that
 * Redis had sent before the client left (a PUBLISH that had returned
 * before the client sent UNSUBSCRIBE) still reaches the client, before
 * the confirmation, as redis-server delivers it.
 *
 * Upstream order is what the lease proof of every library behind us rests
 * on (lib/relay.c): a client's subscriptions and PINGs all go through one
 * upstream connection (`ps_up`: the default one, or on Redis Cluster the
 * one to the node the client named with TC.RELAY), whose pushes are
 * handled on the loop in the order they arrived and copied to each client
 * in that order; a client whose copy cannot be kept (over --max-output,
 * out of memory) is closed, never skipped. Each upstream connection has
 * its own names, waits, pings, watchdog and generation: its failure closes
 * only the clients bound to it.
 */
#include "pubsub.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define uthash_nonfatal_oom(obj) (ps_hash_oom = 1)
static int ps_hash_oom; /* loop thread only: the last uthash add failed */
#include <uthash.h>

#include "client.h"
#include "cmd_impl.h"
#include "dispatch.h"
#include "log.h"

/* Bytes of pushes handed to the loop and not yet handled, past which the
 * thread stops reading Redis (which then applies its own output limit):
 * --max-output, what the daemon holds for any one client. */
#define PS_MAX_QUEUED(ps) ((ps)->srv->cfg->max_output)
/* Pushes read before they are handed to the loop (fewer when their bytes
 * reach PS_MAX_QUEUED first). */
#define PS_BATCH 256
/* While anything is subscribed, the shared connection is PINGed every
 * PS_WATCH_S; a PING unanswered for PS_HUNG_S means a hung or silently
 * dead connection: it is dropped as a failed one is. */
#define PS_WATCH_S 1.0
#define PS_HUNG_S 3.0

enum { PS_CHANNEL = 0, PS_PATTERN = 1 };
enum { ST_IDLE, ST_SUBSCRIBING, ST_ACTIVE, ST_UNSUBSCRIBING };
enum { EV_MSG, EV_CONF, EV_UNCONF, EV_PONG, EV_LOST };

typedef struct ps_sub ps_sub;
typedef struct ps_ping ps_ping;
typedef struct ps_wait ps_wait;

typedef struct ps_name {
    UT_hash_handle hh;   /* ps->names, key: kind byte + name */
    int state;           /* ST_* */
    unsigned confirms;   /* upstream subscribe confirmations so far */
    unsigned nlocal;     /* local subscriptions (live or not) */
    unsigned waiting;    /* ps_wait items that point here */
    ps_sub *subs;        /* local subscriptions (nnext/nprev) */
    size_t klen;
    char key[];          /* kind byte, then the name */
} ps_name;

struct ps_sub {
    UT_hash_handle hh;   /* client's subs, key: the ps_name pointer */
    ps_name *name;
    tcd_client *cl;
    ps_sub *nprev, *nnext;
    int live;
    ps_ping *leaving;    /* the client left it (UNSUBSCRIBE, RESET): it no
                            longer counts, but what Redis sent before this
                            PING's pong still reaches the client, which
                            drops it (leave_sub) */
    ps_sub *lprev, *lnext; /* leaving->left */
};

struct ps_wait {
    struct ps_wait *prev, *next; /* ps->waits */
    tcd_client *cl;
    tcd_job *slot;
    ps_name **live;      /* names active upstream already: live once the
                            slot is complete (nlive of them, each counted
                            in its `waiting`) */
    ps_ping *barrier;    /* a PING sent after the SUBSCRIBE came, whose
                            pong it waits for too, or NULL (do_subscribe) */
    size_t nlive, n;
    struct {
        ps_name *name;
        unsigned seen;
    } item[];
};

struct ps_ping {
    struct ps_ping *next;
    ev_tstamp sent;  /* loop time it was queued */
    tcd_client *cl; /* NULL once the client is gone */
    tcd_job *slot;
    ps_sub *left;    /* the client's subscriptions it drops (lnext) */
    ps_wait *wait;   /* the SUBSCRIBE it is the barrier of, or NULL */
};

typedef struct ps_up ps_up;

/* Per client (tcd_client.ps). */
struct tcd_psclient {
    ps_up *up;           /* the upstream connection it is bound to: NULL
                            until its first subscription, PING or
                            TC.RELAY */
    ps_sub *subs;        /* hash; iteration is subscription order */
    unsigned nchan, npat;
    unsigned nwaits, npings;
    int held;            /* we set the client's pin_hold (hold_if_pending) */
};

/* Loop -> thread. */
typedef struct ps_op {
    struct ps_op *next;
    uint64_t gen;
    int argc;
    char *argv[2];
    size_t argl[2];
} ps_op;

/* Thread -> loop. */
typedef struct ps_ev {
    struct ps_ev *next;
    int type, kind;
    uint64_t gen;
    char *name;
    size_t nlen;
    tcd_buf frame; /* EV_MSG: as Redis sent it */
} ps_ev;

/* One upstream subscriber connection: the default one (host NULL: where
 * tc_session_open() connects), or on Redis Cluster one per node that a
 * local client named with TC.RELAY. Each has its own names, waits, pings,
 * thread and generation, so that its order and its failure concern only
 * the clients bound to it. */
struct ps_up {
    tcd_server *srv;
    char *host;           /* owned; NULL: the default connection */
    int port;
    /* Loop only. */
    ps_name *names;
    ps_wait *waits;
    ps_ping *ping_head, *ping_tail;
    uint64_t gen;         /* the upstream connection's generation */
    int broken;           /* an upstream command could not be queued */
    int dropping;         /* on_lost: nothing goes upstream */
    ev_async async;
    ev_timer watch;       /* the hung-connection check */
    /* Shared, under mu. */
    pthread_mutex_t mu;
    ps_op *ops, *ops_tail;
    ps_ev *evs, *evs_tail;
    int stop;
    size_t queued;        /* bytes of evs */
    uint64_t reset_to;    /* the loop started over: drop the connection,
                             go on with this generation */
    /* Thread only. */
    tc_session *sess;
    uint64_t tgen;
    const char *hold;     /* test hook (hand_over): the channel, or NULL */
    int holding;
    ps_ev *held, *held_tail;
    size_t held_bytes;
    int wake[2];
    pthread_t th;
    int started;
};

/* At most this many upstream connections (nodes named with TC.RELAY, and
 * the default one): a cluster has at most 128 nodes (lib/cluster.h). */
#define PS_MAX_UPS 130

struct tcd_pubsub {
    ps_up *up[PS_MAX_UPS]; /* [0]: the default; loop only */
    size_t nups;
};

static int is(const tcd_req *r, const char *word)
{
    return tcd_arg_is(r, 0, word);
}

/* ---- the thread ---------------------------------------------------------- */

static void ps_wakeup(ps_up *ps)
{
    ssize_t n = write(ps->wake[1], "x", 1); /* full pipe: already woken */
    (void)n;
}

/* Append the chain head..tail to the list *first..*last. */
static void chain(ps_ev **first, ps_ev **last, ps_ev *head, ps_ev *tail)
{
    if (*last)
        (*last)->next = head;
    else
        *first = head;
    *last = tail;
}

static void post(ps_up *ps, ps_ev *head, ps_ev *tail, size_t bytes)
{
    if (!head)
        return;
    pthread_mutex_lock(&ps->mu);
    chain(&ps->evs, &ps->evs_tail, head, tail);
    ps->queued += bytes;
    pthread_mutex_unlock(&ps->mu);
    ev_async_send(ps->srv->loop, &ps->async);
}

static void ev_free(ps_ev *e)
{
    free(e->name);
    tcd_buf_free(&e->frame);
    free(e);
}

/* Events for the loop, in the order they were read. With the test hook
 * TIERCACHED_TEST_HOLD_PUSHES=<channel> set, a message on that channel
 * starts holding them back and the next one hands them all over: a suite
 * uses it to have the loop see a client's command before a push that
 * Redis had sent earlier (test_as_redis.c). Unset, it is post(). */
static void hand_over(ps_up *ps, ps_ev *head, ps_ev *tail, size_t bytes)
{
    if (!ps->hold) {
        post(ps, head, tail, bytes);
        return;
    }
    for (ps_ev *e = head; e; e = e->next)
        if (e->type == EV_MSG && e->kind == PS_CHANNEL &&
            e->nlen == strlen(ps->hold) && !memcmp(e->name, ps->hold, e->nlen))
            ps->holding = !ps->holding;
    if (head) {
        chain(&ps->held, &ps->held_tail, head, tail);
        ps->held_bytes += bytes;
    }
    if (ps->holding)
        return;
    post(ps, ps->held, ps->held_tail, ps->held_bytes);
    ps->held = ps->held_tail = NULL;
    ps->held_bytes = 0;
}

static void lost(ps_up *ps, const char *why)
{
    ps_ev *e = calloc(1, sizeof(*e));
    ps->holding = 0; /* what was held goes first */
    hand_over(ps, NULL, NULL, 0);
    if (ps->host)
        tcd_warn("shared pub/sub on node %s:%d: %s: closing its subscribers",
                 ps->host, ps->port, why);
    else
        tcd_warn("shared pub/sub: %s: closing every subscriber", why);
    tc_session_close(ps->sess);
    ps->sess = NULL;
    ps->tgen++;
    if (!e)
        return; /* the next failure tells the loop (no new gen without it) */
    e->type = EV_LOST;
    e->gen = ps->tgen;
    post(ps, e, e, 0);
}

static int str_is(const tc_reply *r, const char *s)
{
    size_t n = strlen(s);
    return r && tc_reply_len(r) == n && tc_reply_str(r) &&
           !strncasecmp(tc_reply_str(r), s, n);
}

/* What Redis pushed, as an event for the loop; NULL for nothing. */
static ps_ev *classify(ps_up *ps, const tc_reply *rep, int *fatal)
{
    ps_ev *e;
    const tc_reply *a = tc_reply_element(rep, 0), *b = tc_reply_element(rep, 1);
    int type = -1, kind = PS_CHANNEL;
    if (tc_reply_type(rep) == TC_REPLY_ERROR) {
        tcd_warn("shared pub/sub: Redis refused: %s", tc_reply_str(rep));
        *fatal = 1;
        return NULL;
    }
    if (tc_reply_type(rep) == TC_REPLY_STATUS && str_is(rep, "pong"))
        type = EV_PONG;
    else if (str_is(a, "pong"))
        type = EV_PONG;
    else if (str_is(a, "message") && tc_reply_elements(rep) == 3)
        type = EV_MSG;
    else if (str_is(a, "pmessage") && tc_reply_elements(rep) == 4)
        type = EV_MSG, kind = PS_PATTERN;
    else if (str_is(a, "subscribe"))
        type = EV_CONF;
    else if (str_is(a, "psubscribe"))
        type = EV_CONF, kind = PS_PATTERN;
    else if (str_is(a, "unsubscribe"))
        type = EV_UNCONF;
    else if (str_is(a, "punsubscribe"))
        type = EV_UNCONF, kind = PS_PATTERN;
    if (type < 0)
        return NULL;
    if (type != EV_PONG && (!b || !tc_reply_str(b)))
        return NULL;
    if (!(e = calloc(1, sizeof(*e))))
        goto oom;
    e->type = type;
    e->kind = kind;
    e->gen = ps->tgen;
    if (type != EV_PONG) {
        e->nlen = tc_reply_len(b);
        if (!(e->name = malloc(e->nlen + 1)))
            goto oom;
        memcpy(e->name, tc_reply_str(b), e->nlen);
        e->name[e->nlen] = '\0';
    }
    if (type == EV_MSG) {
        tcd_reply_redis(&e->frame, rep);
        if (e->frame.oom)
            goto oom;
    }
    return e;
oom:
    if (e)
        ev_free(e);
    *fatal = 1; /* a message lost: nobody may go on as if it came */
    return NULL;
}

/* Hand the loop what has arrived, PS_BATCH at a time. */
static void read_pushes(ps_up *ps)
{
    for (;;) {
        ps_ev *head = NULL, *tail = NULL;
        size_t bytes = 0;
        int n = 0, fatal = 0, more = 1;
        while (n < PS_BATCH && bytes < PS_MAX_QUEUED(ps)) {
            tc_reply *rep = NULL;
            tc_result rc = tc_session_read(ps->sess, 0, &rep);
            ps_ev *e;
            if (rc == TC_TIMEOUT) {
                more = 0;
                break;
            }
            if (rc != TC_OK) {
                hand_over(ps, head, tail, bytes);
                lost(ps, "the upstream connection failed");
                return;
            }
            e = classify(ps, rep, &fatal);
            tc_reply_free(rep);
            if (fatal) {
                hand_over(ps, head, tail, bytes);
                lost(ps, "a push could not be handled");
                return;
            }
            if (!e)
                continue;
            bytes += tcd_buf_pending(&e->frame) + e->nlen + sizeof(*e);
            chain(&head, &tail, e, e);
            n++;
        }
        hand_over(ps, head, tail, bytes);
        if (!more)
            return;
        pthread_mutex_lock(&ps->mu);
        more = ps->queued < PS_MAX_QUEUED(ps);
        pthread_mutex_unlock(&ps->mu);
        if (!more)
            return;
    }
}

/* Named, so that CLIENT LIST on Redis tells it from the rest. */
static tc_result name_upstream(ps_up *ps)
{
    const char *argv[3] = {"CLIENT", "SETNAME", "tiercached-pubsub"};
    size_t argl[3] = {6, 7, 17};
    tc_reply *rep = NULL;
    tc_result rc = tc_session_command(ps->sess, 3, argv, argl, &rep);
    tc_reply_free(rep);
    return rc;
}

static void run_ops(ps_up *ps, ps_op *op)
{
    int named = 1;
    while (op) {
        ps_op *next = op->next;
        if (op->gen == ps->tgen) {
            tc_result rc = TC_OK;
            if (!ps->sess &&
                ((named = 0),
                 (rc = ps->host ? tc_session_open_node(ps->srv->cache,
                                                       ps->host, ps->port,
                                                       &ps->sess)
                                : tc_session_open(ps->srv->cache,
                                                  &ps->sess)) != TC_OK)) {
                char why[300];
                snprintf(why, sizeof(why), "cannot connect to Redis: %s",
                         tc_errmsg());
                lost(ps, why);
            } else if (!named++ && name_upstream(ps) != TC_OK) {
                lost(ps, "the upstream connection failed");
            } else if (tc_session_send(ps->sess, op->argc,
                                       (const char *const *)op->argv,
                                       op->argl) != TC_OK) {
                lost(ps, "the upstream connection failed");
            }
        }
        free(op->argv[0]);
        free(op->argv[1]);
        free(op);
        op = next;
    }
}

static void *ps_main(void *arg)
{
    ps_up *ps = arg;
    for (;;) {
        struct pollfd pfd[2];
        ps_op *ops;
        int stop, n = 1, room;
        char buf[64];
        pthread_mutex_lock(&ps->mu);
        ops = ps->ops;
        ps->ops = ps->ops_tail = NULL;
        stop = ps->stop;
        room = ps->queued < PS_MAX_QUEUED(ps);
        if (ps->reset_to > ps->tgen) {
            tc_session_close(ps->sess);
            ps->sess = NULL;
            ps->tgen = ps->reset_to;
        }
        pthread_mutex_unlock(&ps->mu);
        if (stop) {
            while (ops) {
                ps_op *next = ops->next;
                free(ops->argv[0]);
                free(ops->argv[1]);
                free(ops);
                ops = next;
            }
            break;
        }
        run_ops(ps, ops);
        if (ps->sess && room)
            read_pushes(ps);
        pfd[0] = (struct pollfd){ps->wake[0], POLLIN, 0};
        if (ps->sess && room)
            pfd[n++] = (struct pollfd){tc_session_fd(ps->sess), POLLIN, 0};
        if (poll(pfd, (nfds_t)n, room ? -1 : 10) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents)
            while (read(ps->wake[0], buf, sizeof(buf)) > 0)
                ;
    }
    tc_session_close(ps->sess);
    ps->sess = NULL;
    while (ps->held) {
        ps_ev *e = ps->held;
        ps->held = e->next;
        ev_free(e);
    }
    return NULL;
}

/* ---- the loop: upstream commands ------------------------------------------ */

static void send_op(ps_up *ps, const char *cmd, const ps_name *n)
{
    ps_op *op = calloc(1, sizeof(*op));
    if (!op)
        goto oom;
    op->gen = ps->gen;
    op->argc = n ? 2 : 1;
    op->argl[0] = strlen(cmd);
    if (!(op->argv[0] = strdup(cmd)))
        goto oom;
    if (n) {
        op->argl[1] = n->klen - 1;
        if (!(op->argv[1] = malloc(n->klen)))
            goto oom;
        memcpy(op->argv[1], n->key + 1, n->klen - 1);
        op->argv[1][n->klen - 1] = '\0';
    }
    pthread_mutex_lock(&ps->mu);
    if (ps->ops_tail)
        ps->ops_tail->next = op;
    else
        ps->ops = op;
    ps->ops_tail = op;
    pthread_mutex_unlock(&ps->mu);
    ps_wakeup(ps);
    return;
oom:
    if (op) {
        free(op->argv[0]);
        free(op);
    }
    /* A command that never goes out would leave a client waiting, or a
     * name subscribed nobody wants: start over, as on a lost connection
     * (check_broken). */
    tcd_error("shared pub/sub: out of memory");
    ps->broken = 1;
}

static void want_subscribed(ps_up *ps, ps_name *n)
{
    int pat = n->key[0] == PS_PATTERN;
    if (ps->dropping)
        return;
    if (n->state == ST_IDLE && n->nlocal > 0) {
        n->state = ST_SUBSCRIBING;
        send_op(ps, pat ? "PSUBSCRIBE" : "SUBSCRIBE", n);
    } else if (n->state == ST_ACTIVE && n->nlocal == 0) {
        n->state = ST_UNSUBSCRIBING;
        send_op(ps, pat ? "PUNSUBSCRIBE" : "UNSUBSCRIBE", n);
    }
}

static void maybe_free_name(ps_up *ps, ps_name *n)
{
    if (n->state == ST_IDLE && !n->nlocal && !n->waiting) {
        HASH_DEL(ps->names, n);
        free(n);
    }
}

static ps_name *find_name(ps_up *ps, int kind, const char *s, size_t len,
                          int create)
{
    char stack[256], *key = len + 1 <= sizeof(stack) ? stack : malloc(len + 1);
    ps_name *n = NULL;
    if (!key)
        return NULL;
    key[0] = (char)kind;
    memcpy(key + 1, s, len);
    HASH_FIND(hh, ps->names, key, len + 1, n);
    if (!n && create && (n = calloc(1, sizeof(*n) + len + 1))) {
        n->klen = len + 1;
        memcpy(n->key, key, len + 1);
        HASH_ADD(hh, ps->names, key[0], n->klen, n);
        if (ps_hash_oom) {
            ps_hash_oom = 0;
            free(n);
            n = NULL;
        }
    }
    if (key != stack)
        free(key);
    return n;
}

static void on_lost(ps_up *ps, uint64_t gen);

/* An upstream command could not be queued: start over, as on a lost
 * connection, with a generation the thread moves to as well. */
static void check_broken(ps_up *ps)
{
    if (!ps->broken)
        return;
    ps->broken = 0;
    on_lost(ps, ps->gen + 1);
    pthread_mutex_lock(&ps->mu);
    ps->reset_to = ps->gen;
    pthread_mutex_unlock(&ps->mu);
    ps_wakeup(ps);
}

/* ---- the loop: a client's side -------------------------------------------- */

static unsigned count(const struct tcd_psclient *c)
{
    return c->nchan + c->npat;
}

static struct tcd_psclient *psc_of(tcd_client *cl)
{
    if (!cl->ps)
        cl->ps = calloc(1, sizeof(*cl->ps));
    return cl->ps;
}

static ps_sub *find_sub(struct tcd_psclient *c, ps_name *n)
{
    ps_sub *s = NULL;
    HASH_FIND_PTR(c->subs, &n, s);
    return s;
}

/* The client's count of channels or patterns, by `d`. */
static void recount(struct tcd_psclient *c, const ps_sub *s, int d)
{
    if (s->name->key[0] == PS_PATTERN)
        c->npat += (unsigned)d;
    else
        c->nchan += (unsigned)d;
}

/* `s` no longer counts for the client; it goes when `p`'s pong comes
 * (drop_left): until then it receives what Redis sent before the PING. */
static void leave_sub(struct tcd_psclient *c, ps_sub *s, ps_ping *p)
{
    recount(c, s, -1);
    s->leaving = p;
    s->lprev = NULL;
    s->lnext = p->left;
    if (p->left)
        p->left->lprev = s;
    p->left = s;
}

/* `s` is no longer leaving (dropped, or subscribed again). */
static void unleave(ps_sub *s)
{
    if (s->lprev)
        s->lprev->lnext = s->lnext;
    else
        s->leaving->left = s->lnext;
    if (s->lnext)
        s->lnext->lprev = s->lprev;
    s->leaving = NULL;
}

static void drop_sub(ps_up *ps, tcd_client *cl, ps_sub *s)
{
    struct tcd_psclient *c = cl->ps;
    ps_name *n = s->name;
    HASH_DEL(c->subs, s);
    if (s->nprev)
        s->nprev->nnext = s->nnext;
    else
        n->subs = s->nnext;
    if (s->nnext)
        s->nnext->nprev = s->nprev;
    if (s->leaving)
        unleave(s);
    else
        recount(c, s, -1);
    n->nlocal--;
    free(s);
    want_subscribed(ps, n);
    maybe_free_name(ps, n);
}

/* `p`'s pong came, or it never went out: the subscriptions the client
 * left on it go. */
static void drop_left(ps_up *ps, tcd_client *cl, ps_ping *p)
{
    while (p->left)
        drop_sub(ps, cl, p->left);
}

/* Add the client's subscription to `n`: 1 when it is new, 2 when the
 * client had left it and its pong has not come yet (it stays, as it was),
 * 0 when the client has it, -1 out of memory. */
static int add_sub(tcd_client *cl, ps_name *n)
{
    struct tcd_psclient *c = cl->ps;
    ps_sub *s = find_sub(c, n);
    if (s && s->leaving) {
        unleave(s);
        recount(c, s, 1);
        return 2;
    }
    if (s)
        return 0;
    if (!(s = calloc(1, sizeof(*s))))
        return -1;
    s->name = n;
    s->cl = cl;
    HASH_ADD_PTR(c->subs, name, s);
    if (ps_hash_oom) {
        ps_hash_oom = 0;
        free(s);
        return -1;
    }
    s->nnext = n->subs;
    if (n->subs)
        n->subs->nprev = s;
    n->subs = s;
    n->nlocal++;
    recount(c, s, 1);
    return 1;
}

/* A reply slot that becomes finished later (its bytes are in it). */
static tcd_job *pending_slot(tcd_client *cl, tcd_job *slot, const tcd_buf *b)
{
    if (!slot && !(slot = calloc(1, sizeof(*slot))))
        return NULL;
    slot->client = cl;
    slot->srv = cl->srv;
    if (tcd_buf_pending(b))
        tcd_buf_add(&slot->out, b->p + b->off, tcd_buf_pending(b));
    slot->done = 0;
    tcd_dispatch_append_slot(cl, slot);
    return slot;
}

/* A reply made now: in `slot`, or in the client's output without one. */
static void reply_now(tcd_client *cl, tcd_job *slot, const tcd_buf *b)
{
    if (slot) {
        tcd_buf_add(&slot->out, b->p + b->off, tcd_buf_pending(b));
        tcd_dispatch_append_slot(cl, slot);
    } else {
        tcd_buf_add(&cl->out, b->p + b->off, tcd_buf_pending(b));
    }
}

/* Out of pub/sub mode with confirmations or pongs still to come: what the
 * client sends next may pin it (MONITOR, WATCH), and a pinned client's
 * replies are placed before its first unfinished one, so nothing more is
 * parsed until ours are made. */
static void hold_if_pending(tcd_client *cl)
{
    struct tcd_psclient *c = cl->ps;
    if (c && !count(c) && (c->nwaits || c->npings) && !cl->pin_hold) {
        cl->pin_hold = 1;
        c->held = 1;
    }
}

static void finish_slot(tcd_client *cl, tcd_job *slot)
{
    struct tcd_psclient *c = cl->ps;
    tcd_client_uncharge(cl, slot);
    slot->done = 1;
    tcd_client_charge(cl, slot);
    if (c->held && !c->nwaits && !c->npings) {
        c->held = 0;
        cl->pin_hold = 0; /* tcd_client_write parses its input again */
    }
    tcd_dispatch_touch(cl);
}

static void wait_free(ps_up *ps, ps_wait *w)
{
    for (size_t i = 0; i < w->n; i++) {
        w->item[i].name->waiting--;
        maybe_free_name(ps, w->item[i].name);
    }
    for (size_t i = 0; i < w->nlive; i++) {
        w->live[i]->waiting--;
        maybe_free_name(ps, w->live[i]);
    }
    free(w->live);
    free(w);
}

static void wait_unlink(ps_up *ps, ps_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        ps->waits = w->next;
    if (w->next)
        w->next->prev = w->prev;
    wait_free(ps, w);
}

/* Is a reply of the client before `slot` (NULL: any) not yet made? */
static int unfinished_ahead(const tcd_client *cl, const tcd_job *slot)
{
    for (const tcd_job *j = cl->head; j && j != slot; j = j->next)
        if (!j->done)
            return 1;
    return 0;
}

/* Complete the waits that are satisfied: every name confirmed upstream
 * since, and no reply of the client ahead still to be made (a message is
 * placed before the client's first unfinished reply, so a subscription
 * goes live only once nothing unfinished precedes its confirmation). One
 * completion may allow another: until none does. */
static void check_waits(ps_up *ps)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        for (ps_wait *w = ps->waits, *next; w; w = next) {
            size_t i;
            next = w->next;
            for (i = 0; i < w->n; i++)
                if (w->item[i].name->confirms == w->item[i].seen)
                    break;
            if (i < w->n || w->barrier || unfinished_ahead(w->cl, w->slot))
                continue;
            for (i = 0; i < w->n; i++) {
                ps_sub *s = find_sub(w->cl->ps, w->item[i].name);
                if (s)
                    s->live = 1;
            }
            for (i = 0; i < w->nlive; i++) {
                ps_sub *s = find_sub(w->cl->ps, w->live[i]);
                if (s)
                    s->live = 1;
            }
            w->cl->ps->nwaits--;
            finish_slot(w->cl, w->slot); /* after the count: may resume */
            wait_unlink(ps, w);
            changed = 1;
            break; /* the list changed: start over */
        }
    }
}

static void add_confirm(tcd_buf *b, const char *what, const char *name,
                        size_t len, long long n)
{
    tcd_reply_array(b, 3);
    tcd_reply_cstr(b, what);
    if (name)
        tcd_reply_bulk(b, name, len);
    else
        tcd_reply_nil(b);
    tcd_reply_int(b, n);
}

static int ping_upstream(ps_up *ps, tcd_client *cl, ps_ping *p,
                         tcd_job *slot, const tcd_buf *b);

/* `w` completes only once the pong of a PING sent now comes back too. */
static void barrier(ps_up *ps, tcd_client *cl, ps_wait *w)
{
    ps_ping *p = calloc(1, sizeof(*p));
    if (!p) {
        cl->out.oom = 1; /* closed: its wait goes with it */
        return;
    }
    p->wait = w;
    w->barrier = p;
    ping_upstream(ps, cl, p, NULL, NULL);
}

static void do_subscribe(ps_up *ps, tcd_client *cl, tcd_req *r,
                         int kind, tcd_job *slot)
{
    struct tcd_psclient *c = psc_of(cl);
    ps_wait *w;
    tcd_buf b = {0};
    size_t nw = 0;
    int late = 0; /* a name whose confirmation may predate this command */
    if (!c || !(w = calloc(1, sizeof(*w) + (size_t)r->argc *
                                               sizeof(w->item[0]))) ||
        !(w->live = calloc((size_t)r->argc, sizeof(*w->live)))) {
        if (c && w)
            free(w);
        cl->out.oom = 1;
        free(slot);
        return;
    }
    for (int i = 1; i < r->argc; i++) {
        ps_name *n = find_name(ps, kind, r->argv[i], r->argl[i], 1);
        int added = n ? add_sub(cl, n) : -1;
        if (added < 0) {
            cl->out.oom = 1;
            if (n)
                maybe_free_name(ps, n);
            break;
        }
        if (added == 1 && n->state == ST_ACTIVE) {
            w->live[w->nlive++] = n; /* live once the slot completes */
            n->waiting++;
            late = 1;
        } else if (added == 1) {
            late |= n->state == ST_SUBSCRIBING; /* sent before this came */
            w->item[nw].name = n;
            w->item[nw].seen = n->confirms;
            n->waiting++;
            nw++;
            want_subscribed(ps, n);
        }
        add_confirm(&b, kind == PS_PATTERN ? "psubscribe" : "subscribe",
                    r->argv[i], r->argl[i], count(c));
    }
    w->n = nw;
    if ((!nw && !w->nlive) || cl->out.oom) {
        wait_free(ps, w); /* not linked */
        reply_now(cl, slot, &b);
        tcd_buf_free(&b);
        return;
    }
    w->cl = cl;
    w->slot = pending_slot(cl, slot, &b);
    tcd_buf_free(&b);
    if (!w->slot) {
        cl->out.oom = 1;
        wait_free(ps, w);
        return;
    }
    w->next = ps->waits;
    if (ps->waits)
        ps->waits->prev = w;
    ps->waits = w;
    c->nwaits++;
    if (late) /* see the head of this file */
        barrier(ps, cl, w);
}

/* Reply `b` (in `slot`, or a slot made here; none when `b` is NULL) once
 * the pong of a PING sent upstream now comes back; `p` (taken) then drops
 * the subscriptions the client left on it and releases its wait. 0, or -1
 * out of memory (they are dropped now). */
static int ping_upstream(ps_up *ps, tcd_client *cl, ps_ping *p,
                         tcd_job *slot, const tcd_buf *b)
{
    p->cl = cl;
    p->sent = ev_now(cl->srv->loop);
    if (b && !(p->slot = pending_slot(cl, slot, b))) {
        drop_left(ps, cl, p);
        free(p);
        cl->out.oom = 1;
        return -1;
    }
    if (ps->ping_tail)
        ps->ping_tail->next = p;
    else
        ps->ping_head = p;
    ps->ping_tail = p;
    cl->ps->npings++;
    send_op(ps, "PING", NULL);
    return 0;
}

static void do_unsubscribe(ps_up *ps, tcd_client *cl, tcd_req *r,
                           int kind, tcd_job *slot)
{
    struct tcd_psclient *c = psc_of(cl);
    const char *what = kind == PS_PATTERN ? "punsubscribe" : "unsubscribe";
    ps_ping *p = calloc(1, sizeof(*p));
    tcd_buf b = {0};
    if (!c || !p) {
        free(p);
        free(slot);
        cl->out.oom = 1;
        return;
    }
    if (r->argc == 1) {
        ps_sub *s, *tmp;
        HASH_ITER(hh, c->subs, s, tmp) {
            if (s->name->key[0] != kind || s->leaving)
                continue;
            leave_sub(c, s, p);
            add_confirm(&b, what, s->name->key + 1, s->name->klen - 1,
                        count(c));
        }
        if (!p->left)
            add_confirm(&b, what, NULL, 0, count(c));
    }
    for (int i = 1; i < r->argc; i++) {
        ps_name *n = find_name(ps, kind, r->argv[i], r->argl[i], 0);
        ps_sub *s = n ? find_sub(c, n) : NULL;
        if (s && !s->leaving)
            leave_sub(c, s, p);
        add_confirm(&b, what, r->argv[i], r->argl[i], count(c));
    }
    if (b.oom) {
        drop_left(ps, cl, p);
        free(p);
        free(slot);
        cl->out.oom = 1;
    } else if (p->left) {
        ping_upstream(ps, cl, p, slot, &b);
    } else {
        free(p); /* nothing left: nothing to wait for */
        reply_now(cl, slot, &b);
    }
    tcd_buf_free(&b);
}

static void do_ping(ps_up *ps, tcd_client *cl, tcd_req *r,
                    tcd_job *slot)
{
    tcd_buf b = {0};
    ps_ping *p = calloc(1, sizeof(*p));
    if (!p) {
        cl->out.oom = 1;
        free(slot);
        return;
    }
    tcd_reply_array(&b, 2);
    tcd_reply_cstr(&b, "pong");
    if (r->argc == 2)
        tcd_reply_bulk(&b, r->argv[1], r->argl[1]);
    else
        tcd_reply_bulk(&b, "", 0);
    ping_upstream(ps, cl, p, slot, &b);
    tcd_buf_free(&b);
}

/* Redis 7's answer to any other command in RESP2 pub/sub mode: its own
 * checks first (unknown command, arity), then the refusal. */
static void refuse(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    char name[64];
    size_t i;
    tc_result rc = tc_command_check(cl->srv->cache, r->argc,
                                    (const char *const *)r->argv, r->argl);
    if (rc == TC_NOT_FOUND) {
        tcd_cmd_reply_unknown(r, out);
        return;
    }
    if (rc == TC_BAD_ARGUMENT) {
        tcd_reply_error(out, tc_errmsg());
        return;
    }
    /* Redis names a subcommand of a container command "client|id". */
    static const char *const containers[] = {
        "acl", "client", "cluster", "command", "config", "function",
        "latency", "memory", "module", "object", "pubsub", "script",
        "slowlog", "xgroup", "xinfo"};
    size_t n = 0;
    for (int a = 0; a < (r->argc > 1 ? 2 : 1); a++) {
        for (i = 0; i < r->argl[a] && n < sizeof(name) - 2; i++)
            name[n++] = (char)((r->argv[a][i] >= 'A' && r->argv[a][i] <= 'Z')
                                   ? r->argv[a][i] - 'A' + 'a'
                                   : r->argv[a][i]);
        name[n] = '\0';
        if (a == 0) {
            size_t c = 0;
            while (c < sizeof(containers) / sizeof(containers[0]) &&
                   strcmp(name, containers[c]))
                c++;
            if (c == sizeof(containers) / sizeof(containers[0]))
                break;
            name[n++] = '|';
        }
    }
    /* Redis refuses EXEC by aborting the transaction with the reason. */
    tcd_reply_errorf(out, "%sCan't execute '%s': only (P|S)SUBSCRIBE / "
                          "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are "
                          "allowed in this context",
                     strcmp(name, "exec") ? "ERR "
                                          : "EXECABORT Transaction discarded "
                                            "because of: ",
                     name);
}

static void arity(tcd_buf *out, const char *cmd)
{
    tcd_reply_errorf(out, "ERR wrong number of arguments for '%s' command",
                     cmd);
}

static void drop_all(ps_up *ps, tcd_client *cl)
{
    ps_sub *s, *tmp;
    if (!cl->ps)
        return;
    HASH_ITER(hh, cl->ps->subs, s, tmp)
        drop_sub(ps, cl, s);
}

/* RESET: the client leaves every subscription, as on UNSUBSCRIBE, behind
 * an empty reply made when the pong comes; RESET's own reply follows it
 * (dispatch gives it a slot: one is pending). */
static void leave_all(ps_up *ps, tcd_client *cl)
{
    ps_ping *p = calloc(1, sizeof(*p));
    tcd_buf none = {0};
    ps_sub *s, *tmp;
    if (!p) {
        drop_all(ps, cl);
        cl->out.oom = 1;
        return;
    }
    HASH_ITER(hh, cl->ps->subs, s, tmp)
        if (!s->leaving)
            leave_sub(cl->ps, s, p);
    ping_upstream(ps, cl, p, NULL, &none);
    check_broken(ps);
}

static ps_up *up_start(tcd_server *srv, const char *host, size_t hlen,
                       int port);

/* The upstream connection the client is bound to, binding it to the
 * default one if it is not yet. NULL when out of memory. */
static ps_up *up_of(tcd_client *cl)
{
    struct tcd_psclient *c = psc_of(cl);
    if (c && !c->up)
        c->up = cl->srv->pubsub->up[0];
    return c ? c->up : NULL;
}

/* TC.RELAY host port: from now on the client's subscriptions and PINGs go
 * through the upstream connection to node host:port of the cluster (lib/
 * relay.c: one per node, shared by every local client naming it), opened
 * on first use; the node is checked then (tc_session_open_node), and a
 * node that is none closes the clients bound to it, with a log line. Only
 * while the client has no subscription, nor a confirmation or pong to
 * come. */
static void do_relay(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    tcd_pubsub *all = cl->srv->pubsub;
    struct tcd_psclient *c = psc_of(cl);
    long long port;
    size_t i;
    if (r->argc != 3) {
        arity(out, "tc.relay");
        return;
    }
    if (tcd_arg_ll(r, 2, &port) != 0 || port < 1 || port > 65535 ||
        r->argl[1] == 0 || r->argl[1] > 255 ||
        memchr(r->argv[1], '\0', r->argl[1])) {
        tcd_reply_error(out, "ERR syntax error: TC.RELAY host port");
        return;
    }
    if (!c) {
        cl->out.oom = 1;
        return;
    }
    if (count(c) || c->nwaits || c->npings) {
        tcd_reply_error(out, "ERR tiercached: TC.RELAY on a connection "
                             "with subscriptions");
        return;
    }
    for (i = 1; i < all->nups; i++)
        if (all->up[i]->port == port &&
            strlen(all->up[i]->host) == r->argl[1] &&
            !memcmp(all->up[i]->host, r->argv[1], r->argl[1]))
            break;
    if (i == all->nups) {
        if (i == PS_MAX_UPS) {
            tcd_reply_error(out, "ERR tiercached: TC.RELAY: too many nodes");
            return;
        }
        if (!(all->up[i] = up_start(cl->srv, r->argv[1], r->argl[1],
                                    (int)port))) {
            cl->out.oom = 1;
            return;
        }
        all->nups++;
    }
    c->up = all->up[i];
    tcd_reply_status(out, "OK");
}

int tcd_pubsub_takes(tcd_client *cl, const tcd_req *req)
{
    ps_up *ps;
    if (!cl->srv->pubsub)
        return 0;
    ps = cl->ps && cl->ps->up ? cl->ps->up : cl->srv->pubsub->up[0];
    if (cl->ps && count(cl->ps) > 0) {
        if (is(req, "quit"))
            return 0;
        if (is(req, "reset")) {
            leave_all(ps, cl);
            hold_if_pending(cl);
            return 0;
        }
        return 1;
    }
    if (cl->pin || cl->was_pinned)
        return 0;
    /* (P)UNSUBSCRIBE outside pub/sub mode: answered as Redis does. */
    return is(req, "subscribe") || is(req, "psubscribe") ||
           is(req, "unsubscribe") || is(req, "punsubscribe") ||
           is(req, "tc.relay");
}

void tcd_pubsub_command(tcd_client *cl, tcd_req *r, tcd_job *slot)
{
    ps_up *ps = up_of(cl);
    tcd_buf *out = slot ? &slot->out : &cl->out;
    int sub = is(r, "subscribe"), psub = is(r, "psubscribe");
    if (!ps) {
        cl->out.oom = 1;
        free(slot);
        return;
    }
    if (is(r, "tc.relay")) {
        do_relay(cl, r, out);
        if (slot)
            tcd_dispatch_append_slot(cl, slot);
        return;
    }
    if ((sub || psub) && r->argc >= 2) {
        do_subscribe(ps, cl, r, psub ? PS_PATTERN : PS_CHANNEL, slot);
        check_broken(ps);
        return;
    }
    if (is(r, "ping") && r->argc <= 2) {
        do_ping(ps, cl, r, slot);
        check_broken(ps);
        return;
    }
    if (is(r, "unsubscribe") || is(r, "punsubscribe")) {
        do_unsubscribe(ps, cl, r, is(r, "unsubscribe") ? PS_CHANNEL
                                                       : PS_PATTERN, slot);
        hold_if_pending(cl);
        check_broken(ps);
        return;
    }
    if (sub || psub || is(r, "ping"))
        arity(out, sub ? "subscribe" : psub ? "psubscribe" : "ping");
    else if ((is(r, "ssubscribe") || is(r, "sunsubscribe")) &&
             tc_command_check(cl->srv->cache, r->argc,
                              (const char *const *)r->argv,
                              r->argl) != TC_BAD_ARGUMENT)
        tcd_reply_errorf(out, "ERR tiercached: %.16s on a connection with "
                              "SUBSCRIBE or PSUBSCRIBE subscriptions is not "
                              "supported; use a connection of its own",
                         r->argv[0]);
    else
        refuse(cl, r, out);
    if (slot)
        tcd_dispatch_append_slot(cl, slot);
    check_broken(ps);
}

void tcd_pubsub_client_gone(tcd_client *cl)
{
    struct tcd_psclient *c = cl->ps;
    ps_up *ps = c ? c->up : NULL;
    if (!c)
        return;
    if (ps) {
        drop_all(ps, cl);
        if (c->nwaits)
            for (ps_wait *w = ps->waits, *next; w; w = next) {
                next = w->next;
                if (w->cl == cl)
                    wait_unlink(ps, w); /* its slot goes with the client */
            }
        if (c->npings)
            for (ps_ping *p = ps->ping_head; p; p = p->next)
                if (p->cl == cl)
                    p->cl = NULL, p->slot = NULL, p->wait = NULL;
    }
    free(c);
    cl->ps = NULL;
}

/* ---- the loop: what Redis pushed ------------------------------------------ */

/* A message, before the client's first reply not yet made; the client is
 * closed when its output would exceed --max-output. */
static void deliver(tcd_client *cl, const tcd_buf *frame)
{
    tcd_server *srv = cl->srv;
    if (cl->dead)
        return;
    tcd_client_flush(cl);
    if (!cl->head) {
        tcd_buf_add(&cl->out, frame->p + frame->off, tcd_buf_pending(frame));
    } else {
        tcd_job *j = calloc(1, sizeof(*j));
        if (!j) {
            cl->out.oom = 1;
        } else {
            j->client = cl;
            j->srv = srv;
            j->done = 1;
            tcd_buf_add(&j->out, frame->p + frame->off,
                        tcd_buf_pending(frame));
            j->next = cl->head;
            cl->head = j;
            cl->queued++;
            tcd_client_charge(cl, j);
        }
    }
    if (cl->out.oom || tcd_client_reply_bytes(cl) > srv->cfg->max_output) {
        static tcd_log_limit slow;
        TCD_COUNT(srv, pubsub_slow_closed, 1);
        tcd_log_limited(&slow, 10000, TC_LOG_WARN,
                        "client %llu: pub/sub messages over --max-output "
                        "(%zu bytes) not read; closed",
                        (unsigned long long)cl->id, srv->cfg->max_output);
        tcd_client_close(cl, "pub/sub output limit");
        return;
    }
    tcd_dispatch_touch(cl);
}

static void on_message(ps_up *ps, ps_ev *e)
{
    ps_name *n = find_name(ps, e->kind, e->name, e->nlen, 0);
    TCD_COUNT(ps->srv, pubsub_messages, 1);
    if (!n)
        return;
    for (ps_sub *s = n->subs, *next; s; s = next) {
        next = s->nnext; /* a client closed here drops `s` only */
        if (s->live) {
            TCD_COUNT(ps->srv, pubsub_deliveries, 1);
            deliver(s->cl, &e->frame);
        }
    }
}

static void on_lost(ps_up *ps, uint64_t gen)
{
    tcd_server *srv = ps->srv;
    if (gen < ps->gen)
        return; /* the loop started over since */
    ps->gen = gen;
    TCD_COUNT(srv, pubsub_upstream_lost, 1);
    ps->dropping = 1;
    for (tcd_client *cl = srv->clients, *next; cl; cl = next) {
        next = cl->next;
        if (cl->ps && cl->ps->up == ps &&
            (count(cl->ps) || cl->ps->nwaits || cl->ps->npings))
            tcd_client_close(cl, "shared pub/sub connection lost");
    }
    /* Nobody is left waiting; what remains is upstream state now gone. */
    while (ps->ping_head) {
        ps_ping *p = ps->ping_head;
        ps->ping_head = p->next;
        free(p);
    }
    ps->ping_tail = NULL;
    {
        ps_name *n, *tmp;
        HASH_ITER(hh, ps->names, n, tmp) {
            HASH_DEL(ps->names, n);
            free(n);
        }
    }
    ps->dropping = 0;
}

static void handle(ps_up *ps, ps_ev *e)
{
    ps_name *n;
    if (e->type == EV_LOST) {
        on_lost(ps, e->gen);
        return;
    }
    if (e->gen != ps->gen)
        return; /* from a connection that is gone */
    switch (e->type) {
    case EV_MSG:
        on_message(ps, e);
        break;
    case EV_CONF:
        if (!(n = find_name(ps, e->kind, e->name, e->nlen, 0)))
            break;
        n->state = ST_ACTIVE;
        n->confirms++;
        check_waits(ps);
        want_subscribed(ps, n);
        break;
    case EV_UNCONF:
        if (!(n = find_name(ps, e->kind, e->name, e->nlen, 0)))
            break;
        n->state = ST_IDLE;
        want_subscribed(ps, n);
        maybe_free_name(ps, n);
        break;
    case EV_PONG: {
        ps_ping *p = ps->ping_head;
        if (!p)
            break;
        ps->ping_head = p->next;
        if (!ps->ping_head)
            ps->ping_tail = NULL;
        if (p->cl) {
            drop_left(ps, p->cl, p);
            p->cl->ps->npings--;
            if (p->wait)
                p->wait->barrier = NULL; /* check_waits, below */
            if (p->slot)
                finish_slot(p->cl, p->slot);
        }
        free(p);
        check_waits(ps); /* a subscription behind this pong */
        break;
    }
    }
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    ps_up *ps = w->data;
    ps_ev *e;
    (void)loop;
    (void)revents;
    int was_full;
    pthread_mutex_lock(&ps->mu);
    e = ps->evs;
    ps->evs = ps->evs_tail = NULL;
    was_full = ps->queued >= PS_MAX_QUEUED(ps);
    ps->queued = 0;
    pthread_mutex_unlock(&ps->mu);
    if (was_full)
        ps_wakeup(ps); /* room again: read Redis again */
    while (e) {
        ps_ev *next = e->next;
        handle(ps, e);
        check_broken(ps);
        ev_free(e);
        e = next;
    }
    tcd_dispatch_flush_touched(ps->srv);
}

static int anyone_subscribed(ps_up *ps)
{
    for (ps_name *n = ps->names; n; n = n->hh.next)
        if (n->nlocal)
            return 1;
    return 0;
}

/* Every PS_WATCH_S: a PING on the shared connection while anything is
 * subscribed, and the connection dropped when the oldest PING went
 * unanswered for PS_HUNG_S (a hung Redis, a connection dead without a
 * reset): its subscribers are closed, so that their libraries stop
 * waiting on it and reconnect. */
static void on_watch(struct ev_loop *loop, ev_timer *w, int revents)
{
    ps_up *ps = w->data;
    ev_tstamp now = ev_now(loop);
    (void)revents;
    if (ps->ping_head && now - ps->ping_head->sent > PS_HUNG_S) {
        tcd_warn("shared pub/sub: no answer from Redis for %.0f s: closing "
                 "every subscriber", now - ps->ping_head->sent);
        ps->broken = 1;
        check_broken(ps);
        tcd_dispatch_flush_touched(ps->srv);
        return;
    }
    if (!ps->ping_head && anyone_subscribed(ps)) {
        ps_ping *p = calloc(1, sizeof(*p));
        if (!p)
            return;
        p->sent = now;
        ps->ping_tail = ps->ping_head = p; /* cl NULL: nobody waits */
        send_op(ps, "PING", NULL);
        check_broken(ps);
    }
}

/* ---- lifetime ------------------------------------------------------------- */

static void up_stop(tcd_server *srv, ps_up *ps)
{
    if (ps->started) {
        pthread_mutex_lock(&ps->mu);
        ps->stop = 1;
        pthread_mutex_unlock(&ps->mu);
        ps_wakeup(ps);
        pthread_join(ps->th, NULL);
    }
    ev_ref(srv->loop);
    ev_async_stop(srv->loop, &ps->async);
    if (ev_is_active(&ps->watch)) {
        ev_ref(srv->loop);
        ev_timer_stop(srv->loop, &ps->watch);
    }
    while (ps->evs) {
        ps_ev *e = ps->evs;
        ps->evs = e->next;
        ev_free(e);
    }
    while (ps->ops) {
        ps_op *op = ps->ops;
        ps->ops = op->next;
        free(op->argv[0]);
        free(op->argv[1]);
        free(op);
    }
    on_lost(ps, ps->gen + 1); /* frees names and pings */
    while (ps->waits)
        wait_unlink(ps, ps->waits);
    close(ps->wake[0]);
    close(ps->wake[1]);
    pthread_mutex_destroy(&ps->mu);
    free(ps->host);
    free(ps);
}

/* An upstream connection's state and thread (the connection opens on its
 * first command); `host` (copied) NULL for the default one. NULL after
 * logging. */
static ps_up *up_start(tcd_server *srv, const char *host, size_t hlen,
                       int port)
{
    ps_up *ps;
    if (!(ps = calloc(1, sizeof(*ps))) || pipe(ps->wake) != 0) {
        free(ps);
        tcd_error("shared pub/sub: out of memory");
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(ps->wake[i], F_SETFL, O_NONBLOCK);
        fcntl(ps->wake[i], F_SETFD, FD_CLOEXEC);
    }
    ps->srv = srv;
    ps->port = port;
    ps->hold = getenv("TIERCACHED_TEST_HOLD_PUSHES");
    pthread_mutex_init(&ps->mu, NULL);
    ev_async_init(&ps->async, on_async);
    ps->async.data = ps;
    ev_async_start(srv->loop, &ps->async);
    ev_unref(srv->loop); /* housekeeping does not keep the loop alive */
    ev_timer_init(&ps->watch, on_watch, PS_WATCH_S, PS_WATCH_S);
    ps->watch.data = ps;
    ev_timer_start(srv->loop, &ps->watch);
    ev_unref(srv->loop);
    if (host && !(ps->host = strndup(host, hlen))) {
        tcd_error("shared pub/sub: out of memory");
        up_stop(srv, ps);
        return NULL;
    }
    if (pthread_create(&ps->th, NULL, ps_main, ps) != 0) {
        tcd_error("shared pub/sub: cannot start its thread");
        up_stop(srv, ps);
        return NULL;
    }
    ps->started = 1;
    return ps;
}

int tcd_pubsub_init(tcd_server *srv)
{
    tcd_pubsub *all;
    if (srv->cfg->no_shared_pubsub)
        return 0;
    if (!(all = calloc(1, sizeof(*all)))) {
        tcd_error("shared pub/sub: out of memory");
        return -1;
    }
    if (!(all->up[0] = up_start(srv, NULL, 0, 0))) {
        free(all);
        return -1;
    }
    all->nups = 1;
    srv->pubsub = all;
    return 0;
}

void tcd_pubsub_shutdown(tcd_server *srv)
{
    tcd_pubsub *all = srv->pubsub;
    if (!all)
        return;
    for (size_t i = 0; i < all->nups; i++)
        up_stop(srv, all->up[i]);
    free(all);
    srv->pubsub = NULL;
}
