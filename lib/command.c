/*
 * Any Redis command, L1 kept coherent: tc_command, tc_command_multi,
 * tc_command_check and the tc_reply accessors.
 *
 * Which arguments are keys and which of them a command writes come from
 * Redis's `COMMAND` reply (cmdspec.c), fetched on first use and kept for the
 * cache's life. A write runs in one MULTI with the stamps of the keys it
 * writes (stamps.c) and their invalidation (publish.c), strict-waiting as
 * library writes do; a read goes straight to L2. The key prefix is applied
 * to every key argument the specs name, reads included, so tc_get() and
 * tc_command("INCR") see the same L2 key; replies are never rewritten (KEYS
 * and SCAN return prefixed names).
 *
 * Thread safety: every call here may run on any number of threads; the
 * command table is immutable once published (c->cmdtab, atomic pointer,
 * freed by tc_cache_destroy()).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cache.h"
#include "cmdspec.h"
#include "command.h"
#include "stamps.h"
#include "cluster.h"
#include "slot.h"

/* ---- the command table --------------------------------------------------- */

const tc__cmdtab *tc__command_table(tc_cache *c)
{
    tc__cmdtab *t = atomic_load(&c->cmdtab), *expect = NULL;
    const char *argv[1] = {"COMMAND"};
    tc__cmd cmd = {1, argv, NULL};
    redisReply *rep;
    if (t)
        return t;
    if (tc__l2_run(c->l2, 1, &cmd, &rep, TC__L2_IDEMPOTENT) != TC_OK)
        return NULL;
    if (rep->type == REDIS_REPLY_ERROR) {
        tc__fail(TC_PROTOCOL, "COMMAND: %.*s", (int)rep->len, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    t = tc__cmdtab_build(rep);
    freeReplyObject(rep);
    if (!t)
        return NULL;
    if (!atomic_compare_exchange_strong(&c->cmdtab, &expect, t)) {
        tc__cmdtab_free(t); /* another thread published first */
        return expect;
    }
    return t;
}

/* ---- one tc__prepared command ------------------------------------------------ */


void tc__prepared_free(tc__prepared *p)
{
    for (size_t i = 0; i < p->npk; i++)
        tc__pkey_free(&p->pk[i]);
    free(p->pk);
    free(p->argv);
    free(p->argvlen);
    tc__keys_free(&p->keys);
    memset(p, 0, sizeof(*p));
}

tc_result tc__prepare(tc_cache *c, const tc__cmdtab *t, int argc,
                      const char *const *argv, const size_t *argvlen,
                      int allow_connection, tc__prepared *p)
{
    tc_result r;
    memset(p, 0, sizeof(*p));
    if (argc < 1 || !argv || !argvlen)
        return tc__fail(TC_BAD_ARGUMENT, "empty command");
    for (int i = 0; i < argc; i++)
        if (!argv[i] && argvlen[i])
            return tc__fail(TC_BAD_ARGUMENT, "NULL argument %d", i);
    if (tc__cmdtab_keys(t, argc, argv, argvlen, &p->keys) != 0)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    if (p->keys.cls == TC__CLASS_CONNECTION && !allow_connection) {
        tc__keys_free(&p->keys);
        return tc__fail(TC_BAD_ARGUMENT,
                        "%.*s changes the state of its connection; run it on "
                        "a connection of your own",
                        (int)(argvlen[0] > 64 ? 64 : argvlen[0]), argv[0]);
    }
    p->argc = argc;
    p->argv = malloc((size_t)argc * sizeof(*p->argv));
    p->argvlen = malloc((size_t)argc * sizeof(*p->argvlen));
    p->pk = calloc(p->keys.n ? p->keys.n : 1, sizeof(*p->pk));
    if (!p->argv || !p->argvlen || !p->pk) {
        tc__prepared_free(p);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    for (int i = 0; i < argc; i++)
        p->argv[i] = argv[i] ? argv[i] : "", p->argvlen[i] = argvlen[i];
    if (c->cfg.prefix_len) {
        for (size_t i = 0; i < p->keys.n; i++) {
            int at = p->keys.pos[i];
            if ((r = tc__pkey_make(c, argv[at], argvlen[at], &p->pk[i])) !=
                TC_OK) {
                tc__prepared_free(p);
                return r;
            }
            p->npk++;
            p->argv[at] = p->pk[i].p, p->argvlen[at] = p->pk[i].len;
        }
    }
    return TC_OK;
}

/* ---- invalidation of what a write touched -------------------------------- */


void tc__written_free(tc__written *w)
{
    if (w->sk.p)
        tc__pkey_free(&w->sk);
    free(w->keys);
    free(w->lens);
    free(w->hset);
    free(w->hsetl);
    free(w->fields);
}

tc_result tc__collect(tc_cache *c, size_t n, const tc__prepared *ps,
                         const char *const *const *argvs,
                         const size_t *const *argvlens, tc__written *w)
{
    size_t total = 0, slen;
    memset(w, 0, sizeof(*w));
    for (size_t i = 0; i < n; i++) {
        if (ps[i].keys.effect == TC__EFFECT_ALL)
            w->all = 1;
        total += ps[i].keys.n;
    }
    w->slot = tc__prepared_slots(n, ps);
    slen = tc__stamp_new(c, w->stamp);
    w->keys = malloc((total ? total : 1) * sizeof(*w->keys));
    w->lens = malloc((total ? total : 1) * sizeof(*w->lens));
    w->hset = malloc((2 * total + 4) * sizeof(*w->hset));
    w->hsetl = malloc((2 * total + 4) * sizeof(*w->hsetl));
    w->fields = malloc((total ? total : 1) * sizeof(*w->fields));
    if (!w->keys || !w->lens || !w->hset || !w->hsetl || !w->fields) {
        tc__written_free(w);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    w->hset[0] = "HSET", w->hsetl[0] = 4;
    w->hset[1] = c->stamps_key, w->hsetl[1] = strlen(c->stamps_key);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < ps[i].keys.n; j++) {
            int at = ps[i].keys.pos[j];
            if (!ps[i].keys.written[j])
                continue;
            if (c->cfg.cluster && w->slot >= 0 && !w->sk.p) {
                /* The stamps hash of the keys' one slot (stamps.h). */
                if (tc__stamps_key(c, ps[i].argv[at], ps[i].argvlen[at],
                                   &w->sk) != TC_OK) {
                    w->sk.p = NULL;
                    tc__written_free(w);
                    return tc__fail(TC_NO_MEMORY, "out of memory");
                }
                w->hset[1] = w->sk.p, w->hsetl[1] = w->sk.len;
            }
            w->keys[w->n] = argvs[i][at], w->lens[w->n] = argvlens[i][at];
            w->hset[2 + 2 * w->n] = w->fields[w->n];
            w->hsetl[2 + 2 * w->n] = tc__stamp_field(
                tc__hash(argvs[i][at], argvlens[i][at]), w->fields[w->n]);
            w->hset[3 + 2 * w->n] = w->stamp, w->hsetl[3 + 2 * w->n] = slen;
            w->n++;
        }
    if (w->all) {
        w->hset[2] = "all", w->hsetl[2] = 3;
        w->hset[3] = w->stamp, w->hsetl[3] = slen;
    }
    return TC_OK;
}

static void drop_local(tc_cache *c, const tc__written *w)
{
    if (w->all) {
        tc__l1_clear(c->l1);
        return;
    }
    for (size_t i = 0; i < w->n; i++)
        tc__l1_invalidate_key(c->l1, tc__hash(w->keys[i], w->lens[i]),
                              w->keys[i], w->lens[i]);
}

int tc__prepared_slot(const tc__prepared *p)
{
    int slot = -1;
    for (size_t i = 0; i < p->keys.n; i++) {
        int at = p->keys.pos[i];
        int s = (int)tc__slot_of(p->argv[at], p->argvlen[at]);
        if (slot >= 0 && s != slot)
            return -2;
        slot = s;
    }
    return slot;
}

int tc__prepared_slots(size_t n, const tc__prepared *ps)
{
    int slot = -1;
    for (size_t i = 0; i < n; i++) {
        int s = tc__prepared_slot(&ps[i]);
        if (s == -2 || (s >= 0 && slot >= 0 && s != slot))
            return -2;
        if (s >= 0)
            slot = s;
    }
    return slot;
}

tc_result tc__invalidate_everything(tc_cache *c)
{
    tc_result r, r2;
    tc__l1_clear(c->l1);
    r = tc__stamps_bump_all(c);
    r2 = tc_invalidate_all(c);
    return r != TC_OK ? r : r2;
}

redisReply *tc__error_reply(const char *text)
{
    redisReply *e = calloc(1, sizeof(*e));
    size_t n = strlen(text);
    if (!e || !(e->str = malloc(n + 1))) {
        free(e);
        return NULL;
    }
    memcpy(e->str, text, n + 1);
    e->len = n;
    e->type = REDIS_REPLY_ERROR;
    return e;
}

tc_result tc__write_begin(tc_cache *c, size_t n, const tc__prepared *ps,
                         const tc__written *w, tc__write_op *op)
{
    tc_result r;
    memset(op, 0, sizeof(*op));
    if (!(op->cmds = malloc((n + 1) * sizeof(*op->cmds))))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++)
        op->cmds[op->ncmd++] = (tc__cmd){ps[i].argc, ps[i].argv, ps[i].argvlen};
    if (w->all || w->n)
        op->cmds[op->ncmd++] =
            (tc__cmd){w->all ? 4 : (int)(2 + 2 * w->n), w->hset, w->hsetl};
    r = w->all ? tc__txn_begin(c, &op->t, TC__MSG_ALL, 0, NULL, NULL,
                               tc__write_is_strict(c, 0))
               : tc__txn_begin(c, &op->t,
                               w->n == 1 ? TC__MSG_KEY : TC__MSG_KEYS, w->n,
                               w->keys, w->lens, tc__write_is_strict(c, 0));
    if (r != TC_OK) {
        free(op->cmds);
        op->cmds = NULL;
        return r;
    }
    drop_local(c, w);
    return TC_OK;
}

tc_result tc__write_finish(tc_cache *c, int own_conn, size_t n,
                           const tc__written *w, tc__write_op *op,
                           tc_result r, redisReply **exec)
{
    tc__txn_end(c, &op->t, *exec, r == TC_OK);
    drop_local(c, w); /* fills that raced with the write */
    free(op->cmds);
    op->cmds = NULL;
    if (r == TC_PROTOCOL && own_conn &&
        !strcmp(tc_errmsg(), "EXEC: transaction aborted")) {
        /* The caller's WATCH aborted it: nothing ran, nothing was
         * published; the answer is EXEC's nil. */
        *exec = NULL;
        r = TC_OK;
    } else if (r == TC_OK) {
        for (size_t i = n; i < (*exec)->elements; i++) {
            freeReplyObject((*exec)->element[i]);
            (*exec)->element[i] = NULL;
        }
        (*exec)->elements = n;
    } else if (r == TC_PROTOCOL && !strncmp(tc_errmsg(), "EXEC: ", 6) &&
               strcmp(tc_errmsg(), "EXEC: transaction aborted")) {
        /* Redis refused the transaction (EXECABORT): its answer is the
         * reply; nothing was written or published. */
        if (!(*exec = tc__error_reply(tc_errmsg() + 6)))
            return tc__fail(TC_NO_MEMORY, "out of memory");
        r = TC_OK;
    }
    return r;
}

/* MULTI, the `n` commands, their stamps and invalidation, EXEC. On TC_OK
 * *exec is the EXEC reply cut to the `n` commands' replies, or the error
 * Redis answered EXEC with (EXECABORT). */
tc_result tc__run_write(tc_cache *c, tc__conn *conn,
                        const tc__node_addr *node, size_t n,
                        const tc__prepared *ps, const tc__written *w,
                        redisReply **exec)
{
    tc__write_op op;
    tc_result r;
    *exec = NULL;
    if (c->cfg.cluster && w->all) {
        /* No MULTI can hold a stamp for every slot: the caller ran the
         * write (tc_command), then everything is invalidated. */
        if (n)
            return tc__fail(TC_BAD_ARGUMENT, "Redis Cluster: a write of "
                                             "keys nobody can name in a "
                                             "transaction");
        return tc__invalidate_everything(c);
    }
    if (c->cfg.cluster && w->slot == -2) {
        if (!(*exec = tc__error_reply(TC__CROSSSLOT)))
            return tc__fail(TC_NO_MEMORY, "out of memory");
        return TC_OK;
    }
    if ((r = tc__write_begin(c, n, ps, w, &op)) != TC_OK)
        return r;
    r = !conn && c->cfg.cluster
            ? tc__txn_exec_slot(c, w->slot, &op.t, op.ncmd, op.cmds, 0, exec)
            : tc__txn_exec_on(c, conn, node, &op.t, op.ncmd, op.cmds, 0,
                              exec);
    return tc__write_finish(c, conn != NULL, n, w, &op, r, exec);
}

/* A command that may block for data: on a connection of its own, with no
 * command timeout (it would otherwise time out and count against the
 * breaker). The caller's thread waits as long as Redis does. */
static tc_result run_blocking(tc_cache *c, int slot, const tc__prepared *p,
                              redisReply **out)
{
    tc_result why = TC_OK;
    tc__conn *conn;
    if (tc__l2_breaker_open(c->l2))
        return tc__fail(TC_L2_UNAVAILABLE, "circuit breaker open");
    if (!(conn = tc__l2_connect_slot(c->l2, &c->cfg, slot, &why)))
        return why;
    tc__conn_set_command_timeout(conn, 0);
    why = tc__conn_command(conn, p->argc, (const char **)p->argv, p->argvlen,
                           out);
    tc__conn_free(conn);
    return why;
}

/* ---- public calls -------------------------------------------------------- */

tc_result tc__command_start(tc_cache *c, const tc__cmdtab **t)
{
    if (!c)
        return tc__fail(TC_BAD_ARGUMENT, "NULL cache");
    if (!c->cfg.enabled)
        return tc__fail(TC_DISABLED, "caching is disabled");
    if (!(*t = tc__command_table(c)))
        return tc_errmsg()[0] ? TC_L2_UNAVAILABLE : TC_PROTOCOL;
    return TC_OK;
}

/* One prepared command, L1 kept coherent; on a cluster sent to the
 * master of its keys' slot (the caller handled keys of several slots). */
static tc_result command_prepared(tc_cache *c, tc__prepared *p,
                                  const char *const *argv,
                                  const size_t *argvlen, redisReply **out)
{
    int slot = c->cfg.cluster ? tc__prepared_slot(p) : -1;
    redisReply *rep = NULL;
    tc_result r;
    *out = NULL;
    if (p->keys.effect == TC__EFFECT_READ || !p->keys.known ||
        p->keys.cls == TC__CLASS_BLOCKING ||
        (c->cfg.cluster && p->keys.effect == TC__EFFECT_ALL)) {
        tc__cmd cmd = {p->argc, p->argv, p->argvlen};
        r = p->keys.cls == TC__CLASS_BLOCKING
                ? run_blocking(c, slot, p, &rep)
                : tc__l2_run_slot(c->l2, slot, 1, &cmd, &rep, 0);
        if (r == TC_OK && rep->type != REDIS_REPLY_ERROR &&
            p->keys.effect != TC__EFFECT_READ) {
            /* A command that must block cannot run inside MULTI (it would
             * not block), and one Redis did not list at start (a module
             * loaded later) cannot be analysed: invalidate after it. The
             * values L1 holds are strings, which blocking commands
             * (lists, sorted sets, streams) never write. On a cluster no
             * MULTI holds every slot's stamp: a write of keys nobody can
             * name is invalidated everywhere after it too. */
            tc__written w;
            redisReply *e = NULL;
            if (tc__collect(c, 1, p, &argv, &argvlen, &w) == TC_OK) {
                if (!p->keys.known)
                    w.all = 1;
                if (tc__run_write(c, NULL, NULL, 0, NULL, &w, &e) == TC_OK)
                    freeReplyObject(e);
                tc__written_free(&w);
            }
        }
    } else {
        tc__written w;
        if ((r = tc__collect(c, 1, p, &argv, &argvlen, &w)) == TC_OK) {
            redisReply *exec = NULL;
            r = tc__run_write(c, NULL, NULL, 1, p, &w, &exec);
            if (r == TC_OK && exec->type == REDIS_REPLY_ARRAY) {
                rep = exec->element[0];
                exec->element[0] = NULL;
                freeReplyObject(exec);
            } else {
                rep = exec;
            }
            tc__written_free(&w);
        }
    }
    if (r == TC_OK)
        *out = rep;
    return r;
}

tc_result tc__command_run(tc_cache *c, const tc__cmdtab *t, int argc,
                          const char *const *argv, const size_t *argvlen,
                          redisReply **out)
{
    tc__prepared p;
    tc_result r;
    *out = NULL;
    if ((r = tc__prepare(c, t, argc, argv, argvlen, 0, &p)) != TC_OK)
        return r;
    if (!c->cfg.cluster ||
        !tc__cluster_command(c, t, &p, argc, argv, argvlen, out, &r))
        r = command_prepared(c, &p, argv, argvlen, out);
    tc__prepared_free(&p);
    return r;
}

tc_result tc_command(tc_cache *c, int argc, const char *const *argv,
                     const size_t *argvlen, tc_reply **out)
{
    const tc__cmdtab *t = NULL;
    redisReply *rep = NULL;
    tc_result r;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    *out = NULL;
    if ((r = tc__command_start(c, &t)) != TC_OK)
        return r == TC_PROTOCOL ? tc__fail(r, "COMMAND failed") : r;
    if ((r = tc__command_run(c, t, argc, argv, argvlen, &rep)) == TC_OK)
        *out = (tc_reply *)rep;
    return r;
}

tc_result tc_command_multi(tc_cache *c, size_t n, const int *argcs,
                           const char *const *const *argvs,
                           const size_t *const *argvlens, tc_reply **out)
{
    const tc__cmdtab *t = NULL;
    tc__prepared *ps;
    tc__written w;
    redisReply *exec = NULL;
    tc_result r;
    size_t made = 0;
    if (!out)
        return tc__fail(TC_BAD_ARGUMENT, "NULL out");
    *out = NULL;
    if (!n || !argcs || !argvs || !argvlens)
        return tc__fail(TC_BAD_ARGUMENT, "empty transaction");
    if ((r = tc__command_start(c, &t)) != TC_OK)
        return r == TC_PROTOCOL ? tc__fail(r, "COMMAND failed") : r;
    if (!(ps = calloc(n, sizeof(*ps))))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    for (; made < n; made++)
        if ((r = tc__prepare(c, t, argcs[made], argvs[made], argvlens[made], 0,
                            &ps[made])) != TC_OK)
            goto out;
    /* Inside MULTI nothing blocks, and a command Redis does not know
     * aborts the whole transaction: no special cases. */
    if ((r = tc__collect(c, n, ps, argvs, argvlens, &w)) != TC_OK)
        goto out;
    if (c->cfg.cluster && w.slot == -2) {
        /* As a cluster answers EXEC when the queued commands name keys of
         * several slots (there: EXECABORT after a MOVED at queueing). */
        tc__written_free(&w);
        if (!(*out = (tc_reply *)tc__error_reply(TC__CROSSSLOT)))
            r = tc__fail(TC_NO_MEMORY, "out of memory");
        goto out;
    }
    if ((!w.all && !w.n) || (c->cfg.cluster && w.all)) {
        tc__cmd *cmds = malloc((n + 2) * sizeof(*cmds));
        redisReply **reps = malloc((n + 2) * sizeof(*reps));
        const char *multi[1] = {"MULTI"}, *execv[1] = {"EXEC"};
        if (!cmds || !reps) {
            r = tc__fail(TC_NO_MEMORY, "out of memory");
        } else {
            cmds[0] = (tc__cmd){1, multi, NULL};
            for (size_t i = 0; i < n; i++)
                cmds[i + 1] = (tc__cmd){ps[i].argc, ps[i].argv, ps[i].argvlen};
            cmds[n + 1] = (tc__cmd){1, execv, NULL};
            r = tc__l2_run_slot(c->l2, c->cfg.cluster ? w.slot : -1, n + 2,
                                cmds, reps, 0);
            if (r == TC_OK) {
                for (size_t i = 0; i <= n; i++)
                    freeReplyObject(reps[i]);
                exec = reps[n + 1];
                /* A cluster: keys nobody can name, written in the slot's
                 * master, invalidated everywhere after EXEC. */
                if (w.all && exec->type == REDIS_REPLY_ARRAY)
                    (void)tc__invalidate_everything(c);
            }
        }
        free(cmds);
        free(reps);
    } else {
        r = tc__run_write(c, NULL, NULL, n, ps, &w, &exec);
    }
    tc__written_free(&w);
    if (r == TC_OK)
        *out = (tc_reply *)exec;
out:
    for (size_t i = 0; i < made; i++)
        tc__prepared_free(&ps[i]);
    free(ps);
    return r;
}

tc_result tc_command_check(tc_cache *c, int argc, const char *const *argv,
                           const size_t *argvlen)
{
    const tc__cmdtab *t = NULL;
    char err[300];
    tc_result r;
    if (argc < 1 || !argv || !argvlen)
        return tc__fail(TC_BAD_ARGUMENT, "empty command");
    if ((r = tc__command_start(c, &t)) != TC_OK)
        return r == TC_PROTOCOL ? tc__fail(r, "COMMAND failed") : r;
    switch (tc__cmdtab_check(t, argc, argv, argvlen, err, sizeof(err))) {
    case 0:
        return TC_OK;
    case 1:
        return tc__fail(TC_NOT_FOUND, "unknown command");
    default:
        return tc__fail(TC_BAD_ARGUMENT, "%s", err);
    }
}

int tc_command_is_blocking(tc_cache *c, int argc, const char *const *argv,
                           const size_t *argvlen)
{
    const tc__cmdtab *t = NULL;
    tc__keys k;
    int blocking;
    if (argc < 1 || !argv || !argvlen || tc__command_start(c, &t) != TC_OK)
        return 0;
    if (tc__cmdtab_keys(t, argc, argv, argvlen, &k) != 0)
        return 0;
    blocking = k.cls == TC__CLASS_BLOCKING;
    tc__keys_free(&k);
    return blocking;
}

/* ---- replies ------------------------------------------------------------- */

#define R(x) ((const redisReply *)(const void *)(x))

tc_reply_kind tc_reply_type(const tc_reply *r)
{
    switch (r ? R(r)->type : REDIS_REPLY_NIL) {
    case REDIS_REPLY_STRING:
        return TC_REPLY_STRING;
    case REDIS_REPLY_ARRAY:
        return TC_REPLY_ARRAY;
    case REDIS_REPLY_INTEGER:
        return TC_REPLY_INTEGER;
    case REDIS_REPLY_STATUS:
        return TC_REPLY_STATUS;
    case REDIS_REPLY_ERROR:
        return TC_REPLY_ERROR;
    default:
        return TC_REPLY_NIL;
    }
}

const char *tc_reply_str(const tc_reply *r)
{
    if (!r)
        return NULL;
    switch (R(r)->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        return R(r)->str;
    default:
        return NULL;
    }
}

size_t tc_reply_len(const tc_reply *r)
{
    return tc_reply_str(r) ? R(r)->len : 0;
}

int tc_reply_is_nil_array(const tc_reply *r)
{
    return r && R(r)->type == REDIS_REPLY_NIL && R(r)->integer == 1;
}

long long tc_reply_integer(const tc_reply *r)
{
    return r && R(r)->type == REDIS_REPLY_INTEGER ? R(r)->integer : 0;
}

size_t tc_reply_elements(const tc_reply *r)
{
    return r && R(r)->type == REDIS_REPLY_ARRAY ? R(r)->elements : 0;
}

const tc_reply *tc_reply_element(const tc_reply *r, size_t i)
{
    if (!r || R(r)->type != REDIS_REPLY_ARRAY || i >= R(r)->elements)
        return NULL;
    return (const tc_reply *)(const void *)R(r)->element[i];
}

void tc_reply_free(tc_reply *r)
{
    if (r)
        freeReplyObject((redisReply *)(void *)r);
}

void tc__cmdtab_release(tc_cache *c)
{
    tc__cmdtab_free(atomic_load(&c->cmdtab));
    atomic_store(&c->cmdtab, NULL);
}
