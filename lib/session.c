/*
 * Sessions: a Redis connection of the caller's own (tc_session_*), for
 * what a shared pool connection cannot carry: WATCH, SELECT, blocking
 * commands, pub/sub, MONITOR. Commands are prepared as tc_command()
 * prepares them (command.c: key prefix, key specs), and writes in the
 * cache's database keep every L1 coherent:
 *   - outside WATCH: the write, its stamps and its invalidation in one
 *     MULTI/EXEC on the session's connection (as tc_command on the pool);
 *   - between WATCH and EXEC: the write, its stamps and its invalidation
 *     in one script (watched.c: MULTI/EXEC would end the caller's WATCH);
 *     a command Redis refuses in scripts, too long for one: the write
 *     alone, its invalidation right after, on the pool;
 *   - after a blocking command, or for a command the table lacks: the
 *     write alone, its invalidation right after, on the pool;
 *   - a transaction (tc_session_multi): one MULTI/EXEC on the session, so
 *     that the WATCH holds; the invalidation is published in that EXEC,
 *     hence only when the transaction ran.
 * After SELECT of another database nothing is invalidated: L1 holds the
 * cache's database only, and keys of another one are other keys.
 *
 * On Redis Cluster a session's connection goes to one master. Until it
 * holds state there (WATCH in force, a state-changing command such as
 * CLIENT TRACKING, or anything sent with tc_session_send: pub/sub,
 * MONITOR), plain commands and transactions run
 * as tc_command / tc_command_multi run them (routed by slot, split across
 * slots), and a command that needs the connection (WATCH, a blocking
 * command) moves it to the master of its keys' slot first. Once it holds
 * state, a command needing keys of a slot another master serves gets
 * Redis Cluster's CROSSSLOT error, nothing sent.
 *
 * Thread safety: one thread at a time; tc_session_interrupt() from any.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "cache.h"
#include "clock.h"
#include "command.h"
#include "conn.h"
#include "cluster.h"

struct tc_session {
    tc_cache *c;
    tc__conn *conn;
    atomic_int fd;  /* the connection's socket, for poll and interrupt (any
                       thread; it changes only while the owner runs a
                       command that blocks nowhere) */
    int db;         /* selected database */
    int watching;   /* WATCH in force (until EXEC, DISCARD, UNWATCH) */
    int broken;     /* a failed exchange: replies are out of step */
    int streaming;  /* tc_session_send was used: the connection holds
                       subscriptions (cluster placement) */
    int conn_state; /* a state-changing command other than WATCH ran
                       (CLIENT TRACKING ...): cluster placement */
    tc__node_addr node; /* Redis Cluster: the master connected to */
};

/* The master the session's connection is on (Redis Cluster), else NULL:
 * where its writes publish (tc__txn_exec_on()). */
static const tc__node_addr *on_node(const tc_session *s)
{
    return s->c->cfg.cluster ? &s->node : NULL;
}

static int cache_db(const tc_cache *c)
{
    return c->cfg.db > 0 ? c->cfg.db : 0;
}

static int arg_is(const tc__prepared *p, int i, const char *word)
{
    return i < p->argc && p->argvlen[i] == strlen(word) &&
           !strncasecmp(p->argv[i], word, p->argvlen[i]);
}

static tc_result broken(tc_session *s, tc_result r)
{
    s->broken = 1;
    return r;
}

static tc_result conn_failed(tc_session *s)
{
    const char *msg = NULL;
    tc_result r = tc__conn_error(s->conn, &msg);
    return broken(s, tc__fail(r, "Redis: %s", msg ? msg : "failed"));
}

tc_result tc_session_open(tc_cache *c, tc_session **out)
{
    const tc__cmdtab *t;
    tc_session *s;
    tc_result r;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    *out = NULL;
    if ((r = tc__command_start(c, &t)) != TC_OK)
        return r == TC_PROTOCOL ? tc__fail(r, "COMMAND failed") : r;
    if (!(s = calloc(1, sizeof(*s))))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    s->c = c;
    s->db = cache_db(c);
    if (c->cfg.cluster &&
        (r = tc__cluster_addr(c->cfg.cluster, &c->cfg, 0, &s->node)) !=
            TC_OK) {
        free(s);
        return r;
    }
    if (!(s->conn = tc__l2_connect_slot(c->l2, &c->cfg, 0, &r))) {
        free(s);
        return r;
    }
    atomic_store(&s->fd, tc__conn_fd(s->conn));
    *out = s;
    return TC_OK;
}

/* Is host:port a node of the cluster: a master of the map, or a node
 * CLUSTER NODES (asked of a master) lists, replicas included, by its
 * "ip:port@cport" field? Checked before anything, credentials included,
 * is sent to it. */
static int is_node(tc_cache *c, const char *host, int port)
{
    tc__node_addr *m = malloc(TC__CLUSTER_MAX_NODES * sizeof(*m));
    size_t n = m ? tc__cluster_masters(c->cfg.cluster, &c->cfg, m,
                                       TC__CLUSTER_MAX_NODES)
                 : 0;
    const char *a[2] = {"CLUSTER", "NODES"};
    tc__cmd cmd = {2, a, NULL};
    redisReply *rep = NULL;
    char want[TC__CLUSTER_HOST_MAX + 16];
    int found = 0;
    for (size_t i = 0; i < n && !found; i++)
        found = m[i].port == port && !strcmp(m[i].host, host);
    free(m);
    if (found)
        return 1;
    if (tc__l2_run_slot(c->l2, -1, 1, &cmd, &rep, TC__L2_IDEMPOTENT) !=
        TC_OK)
        return 0;
    snprintf(want, sizeof(want), "%s:%d@", host, port);
    if (rep->type == REDIS_REPLY_STRING)
        for (const char *l = rep->str; l && *l && !found;) {
            const char *sp = strchr(l, ' '), *nl = strchr(l, '\n');
            found = sp && (!nl || sp < nl) &&
                    !strncmp(sp + 1, want, strlen(want));
            l = nl ? nl + 1 : NULL;
        }
    freeReplyObject(rep);
    return found;
}

tc_result tc_session_open_node(tc_cache *c, const char *host, int port,
                               tc_session **out)
{
    const tc__cmdtab *t;
    tc__config cfg;
    tc_session *s;
    tc_result r;
    if (!c || !host || !out || port < 1 || port > 65535 ||
        strlen(host) >= TC__CLUSTER_HOST_MAX)
        return tc__fail(TC_BAD_ARGUMENT, "bad argument");
    *out = NULL;
    if (!c->cfg.cluster)
        return tc__fail(TC_BAD_ARGUMENT, "not on Redis Cluster");
    if ((r = tc__command_start(c, &t)) != TC_OK)
        return r == TC_PROTOCOL ? tc__fail(r, "COMMAND failed") : r;
    if (!is_node(c, host, port))
        return tc__fail(TC_BAD_ARGUMENT, "%s:%d is not a node of the cluster",
                        host, port);
    if (!(s = calloc(1, sizeof(*s))))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    s->c = c;
    s->db = 0;
    s->conn_state = 1; /* stays on its node: never placed elsewhere */
    snprintf(s->node.host, sizeof(s->node.host), "%s", host);
    s->node.port = port;
    cfg = c->cfg; /* naming the node, as l2_cluster.c's own */
    cfg.host = s->node.host;
    cfg.port = port;
    cfg.unix_path = NULL;
    cfg.cluster = NULL;
    cfg.ncluster_seeds = 0;
    if (!(s->conn = tc__l2_connect(&cfg, &r))) {
        free(s);
        return r;
    }
    atomic_store(&s->fd, tc__conn_fd(s->conn));
    *out = s;
    return TC_OK;
}

void tc_session_close(tc_session *s)
{
    if (!s)
        return;
    tc__conn_free(s->conn);
    free(s);
}

int tc_session_fd(const tc_session *s)
{
    return s ? atomic_load(&((tc_session *)s)->fd) : -1;
}

void tc_session_interrupt(tc_session *s)
{
    int fd = s ? atomic_load(&s->fd) : -1;
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR); /* a blocked poll/recv wakes up */
}

/* Redis Cluster: the session's state lives on its connection's master. */
static int holds_state(const tc_session *s)
{
    return s->watching || s->streaming || s->conn_state;
}

/* Redis Cluster: make the connection the master of `slot` (-1: any
 * will do). 1 when it is (or need not be), 0 when the session holds state
 * on another master (the caller answers CROSSSLOT), or a failure. */
static tc_result place(tc_session *s, int slot, int *ok)
{
    tc__node_addr a;
    tc__conn *conn;
    tc_result r;
    *ok = 1;
    if (!s->c->cfg.cluster || slot < 0)
        return TC_OK;
    if ((r = tc__cluster_addr(s->c->cfg.cluster, &s->c->cfg, (unsigned)slot,
                              &a)) != TC_OK)
        return r;
    if (a.port == s->node.port && !strcmp(a.host, s->node.host))
        return TC_OK;
    if (holds_state(s)) {
        *ok = 0;
        return TC_OK;
    }
    if (!(conn = tc__l2_connect_slot(s->c->l2, &s->c->cfg, slot, &r)))
        return r;
    atomic_store(&s->fd, tc__conn_fd(conn));
    tc__conn_free(s->conn);
    s->conn = conn;
    s->node = a;
    return TC_OK;
}

static tc_result crossslot(redisReply **out)
{
    if (!(*out = tc__error_reply(TC__CROSSSLOT)))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    return TC_OK;
}

/* Invalidate what `p` wrote, after it ran (on the pool). */
static void invalidate_after(tc_session *s, const tc__prepared *p,
                             const char *const *argv, const size_t *argvlen)
{
    tc__written w;
    redisReply *e = NULL;
    if (tc__collect(s->c, 1, p, &argv, &argvlen, &w) != TC_OK)
        return;
    if (!p->keys.known)
        w.all = 1;
    if ((w.all || w.n) &&
        tc__run_write(s->c, NULL, NULL, 0, NULL, &w, &e) == TC_OK)
        freeReplyObject(e);
    tc__written_free(&w);
}

/* What a reply to a state-changing command did to the session. */
static void track(tc_session *s, const tc__prepared *p, const redisReply *r)
{
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok)
        return;
    if (arg_is(p, 0, "SELECT") && p->argc == 2)
        s->db = atoi(p->argv[1]);
    else if (arg_is(p, 0, "WATCH"))
        s->watching = 1;
    else if (arg_is(p, 0, "UNWATCH") || arg_is(p, 0, "DISCARD"))
        s->watching = 0;
    else if (arg_is(p, 0, "RESET"))
        s->db = 0, s->watching = 0;
}

/* Tests only (testhooks.c): a write made while WATCHing was answered. */
static void session_write_hook(tc_session *s, const tc__prepared *p)
{
    if (s->c->session_write_hook)
        s->c->session_write_hook(s->c->session_write_hook_arg, p->argv[0],
                                 p->argvlen[0]);
}

tc_result tc_session_command(tc_session *s, int argc, const char *const *argv,
                             const size_t *argvlen, tc_reply **out)
{
    const tc__cmdtab *t;
    tc__prepared p;
    redisReply *rep = NULL;
    tc_result r;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    *out = NULL;
    if (!s || s->broken)
        return tc__fail(TC_L2_UNAVAILABLE, "session broken");
    if ((r = tc__command_start(s->c, &t)) != TC_OK)
        return r == TC_PROTOCOL ? tc__fail(r, "COMMAND failed") : r;
    if (s->c->cfg.cluster) {
        int ok = 1;
        if (!holds_state(s) && argc > 0 &&
            !tc_command_is_blocking(s->c, argc, argv, argvlen)) {
            /* Stateless here: routed (and split) as tc_command does, unless
             * it changes the connection's state. */
            if ((r = tc__prepare(s->c, t, argc, argv, argvlen, 1, &p)) !=
                TC_OK)
                return r;
            if (p.keys.cls != TC__CLASS_CONNECTION) {
                tc__prepared_free(&p);
                r = tc__command_run(s->c, t, argc, argv, argvlen, &rep);
                if (r == TC_OK)
                    *out = (tc_reply *)rep;
                return r;
            }
            tc__prepared_free(&p);
        }
        if ((r = tc__prepare(s->c, t, argc, argv, argvlen, 1, &p)) != TC_OK)
            return r;
        if (tc__prepared_slot(&p) == -2 ||
            (r = place(s, tc__prepared_slot(&p), &ok)) != TC_OK || !ok) {
            tc__prepared_free(&p);
            if (r != TC_OK)
                return r;
            if ((r = crossslot(&rep)) == TC_OK)
                *out = (tc_reply *)rep;
            return r;
        }
    } else if ((r = tc__prepare(s->c, t, argc, argv, argvlen, 1, &p)) !=
               TC_OK) {
        return r;
    }
    /* A blocking command waits as long as Redis does (BLPOP k 0 is not a
     * hang); any other fails on a hung Redis as the pool's do. */
    tc__conn_set_command_timeout(s->conn, p.keys.cls == TC__CLASS_BLOCKING
                                              ? 0
                                              : s->c->cfg.command_timeout_ms);
    if (p.keys.cls == TC__CLASS_CONNECTION || s->db != cache_db(s->c) ||
        p.keys.effect == TC__EFFECT_READ || !p.keys.known ||
        p.keys.cls == TC__CLASS_BLOCKING) {
        r = tc__conn_command(s->conn, p.argc, p.argv, p.argvlen, &rep);
        if (r != TC_OK) {
            broken(s, r);
        } else if (p.keys.cls == TC__CLASS_CONNECTION) {
            track(s, &p, rep);
            if (rep->type != REDIS_REPLY_ERROR && !arg_is(&p, 0, "WATCH") &&
                !arg_is(&p, 0, "UNWATCH") && !arg_is(&p, 0, "RESET"))
                s->conn_state = 1;
            else if (arg_is(&p, 0, "RESET"))
                s->conn_state = 0;
        } else if (rep->type != REDIS_REPLY_ERROR &&
                   p.keys.effect != TC__EFFECT_READ &&
                   s->db == cache_db(s->c)) {
            invalidate_after(s, &p, argv, argvlen);
        }
    } else if (s->watching) {
        tc__written w;
        if ((r = tc__collect(s->c, 1, &p, &argv, &argvlen, &w)) != TC_OK) {
            ;
        } else if (tc__watched_write_fits(&p, &w)) {
            /* in one script with its invalidation (watched.c) */
            if ((r = tc__watched_write(s->c, s->conn, on_node(s), &p, &w,
                                         &rep)) != TC_OK)
                broken(s, r);
            else
                session_write_hook(s, &p);
        } else {
            /* a command Redis refuses in scripts, or one too long for
             * one: invalidated right after it */
            r = tc__conn_command(s->conn, p.argc, p.argv, p.argvlen, &rep);
            if (r != TC_OK) {
                broken(s, r);
            } else if (rep->type != REDIS_REPLY_ERROR) {
                session_write_hook(s, &p);
                invalidate_after(s, &p, argv, argvlen);
            }
        }
        tc__written_free(&w);
    } else {
        tc__written w;
        if ((r = tc__collect(s->c, 1, &p, &argv, &argvlen, &w)) == TC_OK) {
            redisReply *exec = NULL;
            r = tc__run_write(s->c, s->conn, on_node(s), 1, &p, &w, &exec);
            if (r == TC_OK && exec && exec->type == REDIS_REPLY_ARRAY) {
                rep = exec->element[0];
                exec->element[0] = NULL;
                freeReplyObject(exec);
            } else {
                rep = exec;
            }
            if (r != TC_OK)
                broken(s, r);
            tc__written_free(&w);
        }
    }
    tc__prepared_free(&p);
    if (r == TC_OK)
        *out = (tc_reply *)rep;
    return r;
}

/* MULTI, the commands, EXEC, pipelined on the session; EXEC's reply. */
static tc_result plain_multi(tc_session *s, size_t n, const tc__prepared *ps,
                             redisReply **exec)
{
    const char *multi[1] = {"MULTI"}, *execv[1] = {"EXEC"};
    tc_result r = tc__conn_append(s->conn, 1, multi, NULL);
    redisReply *rep = NULL;
    for (size_t i = 0; i < n && r == TC_OK; i++)
        r = tc__conn_append(s->conn, ps[i].argc, ps[i].argv, ps[i].argvlen);
    if (r == TC_OK)
        r = tc__conn_append(s->conn, 1, execv, NULL);
    for (size_t i = 0; i < n + 1 && r == TC_OK; i++) {
        if ((r = tc__conn_get_reply(s->conn, &rep)) == TC_OK)
            freeReplyObject(rep);
    }
    if (r == TC_OK)
        r = tc__conn_get_reply(s->conn, exec);
    return r;
}

/* A SELECT's database, when its argument names one (loosely: a SELECT
 * Redis refuses only makes more invalidated than needed). */
static int select_db(const tc__prepared *p, long long *db)
{
    char buf[24], *end;
    if (!arg_is(p, 0, "SELECT") || p->argc != 2 || !p->argvlen[1] ||
        p->argvlen[1] >= sizeof(buf))
        return 0;
    memcpy(buf, p->argv[1], p->argvlen[1]);
    buf[p->argvlen[1]] = '\0';
    errno = 0;
    *db = strtoll(buf, &end, 10);
    return *end == '\0' && errno == 0;
}

/* The first of the transaction's commands that may run in the cache's
 * database (SELECT inside it moves the rest), or n when none does. */
static size_t first_in_cache_db(const tc_session *s, size_t n,
                                const tc__prepared *ps)
{
    long long db;
    if (s->db == cache_db(s->c))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (select_db(&ps[i], &db) && db == cache_db(s->c))
            return i + 1;
    return n;
}

/* After EXEC ran: the database its last successful SELECT chose. */
static void track_selects(tc_session *s, size_t n, const tc__prepared *ps,
                          const redisReply *exec)
{
    long long db;
    if (!exec || exec->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < n && i < exec->elements; i++)
        if (select_db(&ps[i], &db) &&
            exec->element[i]->type == REDIS_REPLY_STATUS)
            s->db = (int)db;
}

tc_result tc_session_multi(tc_session *s, size_t n, const int *argcs,
                           const char *const *const *argvs,
                           const size_t *const *argvlens, tc_reply **out)
{
    const tc__cmdtab *t;
    tc__prepared *ps;
    redisReply *exec = NULL;
    tc_result r;
    size_t made = 0, from, selects = 0, dbl = 0;
    char dbs[16];
    const char *sel[2] = {"SELECT", dbs};
    size_t sell[2] = {6, 0};
    int reselect = 0;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    *out = NULL;
    if (!s || s->broken)
        return tc__fail(TC_L2_UNAVAILABLE, "session broken");
    if (n && (!argcs || !argvs || !argvlens))
        return tc__fail(TC_BAD_ARGUMENT, "NULL transaction");
    if ((r = tc__command_start(s->c, &t)) != TC_OK)
        return r == TC_PROTOCOL ? tc__fail(r, "COMMAND failed") : r;
    if (s->c->cfg.cluster && !holds_state(s))
        /* No WATCH to keep: on the slot's master from the pool. */
        return tc_command_multi(s->c, n, argcs, argvs, argvlens, out);
    if (!(ps = calloc(n + 1, sizeof(*ps)))) /* + a SELECT, below */
        return tc__fail(TC_NO_MEMORY, "out of memory");
    /* The session's connection is the caller's: SELECT (and the other
     * connection commands) run inside the transaction, as in Redis. */
    for (; made < n; made++)
        if ((r = tc__prepare(s->c, t, argcs[made], argvs[made],
                             argvlens[made], 1, &ps[made])) != TC_OK)
            goto out;
    if (s->c->cfg.cluster) {
        /* WATCH holds on this connection's master: the transaction must
         * be that master's too. */
        int slot = tc__prepared_slots(n, ps), ok = 1;
        if (slot == -2 || (r = place(s, slot, &ok)) != TC_OK || !ok) {
            if (r == TC_OK && (r = crossslot(&exec)) == TC_OK)
                *out = (tc_reply *)exec;
            s->watching = 0; /* as EXECABORT ends it */
            if (r == TC_OK) {
                /* Redis still holds the WATCH: drop it. */
                const char *uw[1] = {"UNWATCH"};
                redisReply *u = NULL;
                if (tc__conn_command(s->conn, 1, uw, NULL, &u) != TC_OK)
                    broken(s, TC_L2_UNAVAILABLE);
                freeReplyObject(u);
            }
            goto out;
        }
    }
    tc__conn_set_command_timeout(s->conn, s->c->cfg.command_timeout_ms);
    from = first_in_cache_db(s, n, ps);
    for (size_t i = 0; i < n; i++)
        selects += arg_is(&ps[i], 0, "SELECT");
    if (from == n) {
        r = plain_multi(s, n, ps, &exec);
    } else {
        tc__written w;
        /* Only what may run in the cache's database is the cache's. */
        if ((r = tc__collect(s->c, n - from, ps + from, argvs + from,
                             argvlens + from, &w)) != TC_OK)
            goto out;
        if (!w.all && !w.n) {
            r = plain_multi(s, n, ps, &exec);
        } else {
            /* The stamps and the strict count live in the cache's
             * database: after a SELECT in the transaction, select it
             * again before them (and the client's after EXEC). */
            if (selects) {
                dbl = (size_t)snprintf(dbs, sizeof(dbs), "%d",
                                       cache_db(s->c));
                ps[n].argc = 2;
                ps[n].argv = sel;
                ps[n].argvlen = sell;
                sell[1] = dbl;
            }
            r = tc__run_write(s->c, s->conn, on_node(s), n + (selects > 0),
                              ps, &w, &exec);
            if (r == TC_OK && exec && exec->type == REDIS_REPLY_ARRAY &&
                exec->elements > n) {
                freeReplyObject(exec->element[n]);
                exec->element[n] = NULL;
                exec->elements = n;
            }
            reselect = selects > 0 && r == TC_OK;
        }
        tc__written_free(&w);
    }
    s->watching = 0; /* EXEC ends every WATCH, whatever it answered */
    if (r == TC_OK) {
        track_selects(s, n, ps, exec);
        if (reselect && exec && exec->type == REDIS_REPLY_ARRAY &&
            s->db != cache_db(s->c)) {
            /* back where Redis left the client */
            redisReply *rep = NULL;
            char back[16];
            const char *bv[2] = {"SELECT", back};
            size_t bl[2] = {6, 0};
            bl[1] = (size_t)snprintf(back, sizeof(back), "%d", s->db);
            r = tc__conn_command(s->conn, 2, bv, bl, &rep);
            if (r == TC_OK && rep->type != REDIS_REPLY_STATUS)
                r = tc__fail(TC_PROTOCOL, "SELECT %d: %.*s", s->db,
                             (int)rep->len, rep->str ? rep->str : "");
            freeReplyObject(rep);
            if (r != TC_OK)
                freeReplyObject(exec);
        }
    }
    if (r != TC_OK)
        broken(s, r);
    else
        *out = (tc_reply *)exec;
out:
    for (size_t i = 0; i < made; i++)
        tc__prepared_free(&ps[i]);
    free(ps);
    return r;
}

tc_result tc_session_send(tc_session *s, int argc, const char *const *argv,
                          const size_t *argvlen)
{
    const tc__cmdtab *t;
    tc__prepared p;
    tc_result r;
    int rc;
    if (!s || s->broken)
        return tc__fail(TC_L2_UNAVAILABLE, "session broken");
    if ((r = tc__command_start(s->c, &t)) != TC_OK)
        return r == TC_PROTOCOL ? tc__fail(r, "COMMAND failed") : r;
    if ((r = tc__prepare(s->c, t, argc, argv, argvlen, 1, &p)) != TC_OK)
        return r;
    if (s->c->cfg.cluster) {
        int ok = 1, slot = tc__prepared_slot(&p);
        if (slot == -2 || (r = place(s, slot, &ok)) != TC_OK || !ok) {
            tc__prepared_free(&p);
            return r != TC_OK ? r
                              : tc__fail(TC_BAD_ARGUMENT,
                                         "%s", TC__CROSSSLOT);
        }
        s->streaming = 1;
    }
    r = tc__conn_append(s->conn, p.argc, p.argv, p.argvlen);
    tc__prepared_free(&p);
    if (r != TC_OK)
        return broken(s, r);
    while ((rc = tc__conn_flush_step(s->conn)) != 1) {
        struct pollfd pfd = {atomic_load(&s->fd), 0, 0};
        if (rc == TC__IO_ERROR)
            return conn_failed(s);
        pfd.events = rc == TC__IO_WANT_READ ? POLLIN : POLLOUT;
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            return broken(s, tc__fail(TC_L2_UNAVAILABLE, "poll: %s",
                                      strerror(errno)));
    }
    return TC_OK;
}

tc_result tc_session_read(tc_session *s, int timeout_ms, tc_reply **out)
{
    uint64_t deadline =
        timeout_ms > 0 ? tc__now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
    redisReply *rep = NULL;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    *out = NULL;
    if (!s || s->broken)
        return tc__fail(TC_L2_UNAVAILABLE, "session broken");
    for (;;) {
        struct pollfd pfd = {atomic_load(&s->fd), POLLIN, 0};
        int rc = tc__conn_next_reply(s->conn, &rep), want = TC__IO_WANT_READ;
        int wait_ms = -1;
        if (rc == 1) {
            *out = (tc_reply *)rep;
            return TC_OK;
        }
        if (rc < 0)
            return conn_failed(s);
        if (tc__conn_read_step(s->conn, &want) == TC__IO_ERROR)
            return conn_failed(s);
        if ((rc = tc__conn_next_reply(s->conn, &rep)) == 1) {
            *out = (tc_reply *)rep;
            return TC_OK;
        }
        if (rc < 0)
            return conn_failed(s);
        if (timeout_ms == 0)
            return TC_TIMEOUT;
        if (timeout_ms > 0) {
            uint64_t now = tc__now_ns();
            if (now >= deadline)
                return TC_TIMEOUT;
            wait_ms = (int)((deadline - now) / 1000000u) + 1;
        }
        pfd.events = want == TC__IO_WANT_WRITE ? POLLOUT : POLLIN;
        if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR)
            return broken(s, tc__fail(TC_L2_UNAVAILABLE, "poll: %s",
                                      strerror(errno)));
    }
}
