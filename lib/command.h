/*
 * Any Redis command through the cache (command.c): tc_command,
 * tc_command_multi, tc_command_check and tc_reply. The command table
 * (cmdspec.h) hangs off the cache handle; this is how the facade frees it.
 */
#ifndef TC_COMMAND_H
#define TC_COMMAND_H

#include "cache.h"
#include "cmdspec.h"
#include "tiercache.h"

/** Free the cache's command table, if fetched. tc_cache_destroy() only. */
void tc__cmdtab_release(tc_cache *c);

/* Shared with the session (session.c): one command made ready to send,
 * and the keys a batch of them writes. Any thread. */
/* A caller's command with its key arguments prefixed, and what it writes. */
typedef struct tc__prepared {
    tc__keys keys;
    int argc;
    const char **argv;  /* owned array; strings borrowed or in pk */
    size_t *argvlen;    /* owned */
    tc__pkey *pk;       /* owned, keys.n entries */
    size_t npk;
} tc__prepared;

/* The written keys (as the caller named them, unprefixed) of `n` prepared
 * commands; ALL when any of them writes what cannot be named. */
typedef struct tc__written {
    int all;
    size_t n;
    const void **keys;
    size_t *lens;
    const char **hset;  /* HSET stamps <field> <stamp> ... */
    size_t *hsetl;
    char (*fields)[8];
    char stamp[TC__STAMP_MAX];
    int slot;           /* Redis Cluster: the slot of every key of the
                           commands (-1: none; -2: they span slots) */
    tc__pkey sk;        /* on a cluster, that slot's stamps hash */
} tc__written;

/** The cache's checks and its command table (fetched on first use). */
tc_result tc__command_start(tc_cache *c, const tc__cmdtab **t);
const tc__cmdtab *tc__command_table(tc_cache *c);
/** Prefix the key arguments and find what the command writes. Commands
 *  that change their connection's state are refused unless
 *  `allow_connection` (a session, whose connection is the caller's). */
tc_result tc__prepare(tc_cache *c, const tc__cmdtab *t, int argc,
                      const char *const *argv, const size_t *argvlen,
                      int allow_connection, tc__prepared *p);
void tc__prepared_free(tc__prepared *p);
/** The cluster slot of the keys of `p` (prefixed, as sent): -1 when it
 *  names none, -2 when they span slots (Redis Cluster's CROSSSLOT). The
 *  one routing rule of tc_command, tc_command_multi, sessions and their
 *  async twins. Pure. */
int tc__prepared_slot(const tc__prepared *p);
/** The slot of `n` prepared commands together, as tc__prepared_slot(). */
int tc__prepared_slots(size_t n, const tc__prepared *ps);
/** Redis Cluster's own error text for keys of different slots. */
#define TC__CROSSSLOT "CROSSSLOT Keys in request don't hash to the same slot"
/** An error reply object carrying `text`, as hiredis builds one (NULL when
 *  out of memory). The caller frees it with freeReplyObject(). */
redisReply *tc__error_reply(const char *text);
/** Drop every copy everywhere after a write whose keys cannot be named
 *  (FLUSHDB on every master, a command COMMAND did not list): L1 here,
 *  every stamp (on a cluster, every slot's), then an ALL message. */
tc_result tc__invalidate_everything(tc_cache *c);

/** tc_command() after its checks: prepare (prefix, key specs), route
 *  and run one command; *out as tc_command()'s (a redisReply). */
tc_result tc__command_run(tc_cache *c, const tc__cmdtab *t, int argc,
                          const char *const *argv, const size_t *argvlen,
                          redisReply **out);

/**
 * Redis Cluster (command_cluster.c): what tc_command does beyond sending a
 * command to the master of its keys' slot. Keys of several slots: MGET,
 * MSET, DEL, UNLINK, EXISTS and TOUCH are split by slot (each part run as
 * tc_command runs it, atomic per slot only) and their replies merged; any
 * other command gets Redis Cluster's CROSSSLOT error. Whole-keyspace
 * commands (DBSIZE, KEYS, SCAN, FLUSHDB, FLUSHALL, RANDOMKEY) run on every
 * master. Returns 1 when it handled `p` (*r and *out as tc__command_run),
 * 0 when the caller sends it to its slot's master. `p` is `argv` prepared.
 */
int tc__cluster_command(tc_cache *c, const tc__cmdtab *t,
                        const tc__prepared *p, int argc,
                        const char *const *argv, const size_t *argvlen,
                        redisReply **out, tc_result *r);

/** What `n` prepared commands write (keys as the caller named them). */
tc_result tc__collect(tc_cache *c, size_t n, const tc__prepared *ps,
                      const char *const *const *argvs,
                      const size_t *const *argvlens, tc__written *w);
void tc__written_free(tc__written *w);
/** tc__run_write() in two halves (async.c sends the commands itself):
 *  begin registers the transaction and drops this instance's copies of
 *  the written keys; the caller runs MULTI, op->cmds (the `n` commands
 *  and the stamps), PUBLISH, EXEC (tc__txn_build(), tc__txn_take_exec()),
 *  then always calls finish with the outcome and the EXEC reply (*exec,
 *  NULL unless TC_OK), which ends the transaction, drops copies filled in
 *  the meantime and answers as tc__run_write(). `ps` and `w` are
 *  borrowed until finish. */
typedef struct tc__write_op {
    tc__txn t;
    tc__cmd *cmds; /* owned */
    size_t ncmd;
} tc__write_op;
tc_result tc__write_begin(tc_cache *c, size_t n, const tc__prepared *ps,
                          const tc__written *w, tc__write_op *op);
tc_result tc__write_finish(tc_cache *c, int own_conn, size_t n,
                           const tc__written *w, tc__write_op *op,
                           tc_result r, redisReply **exec);
/** MULTI, the `n` commands, their stamps and invalidation, EXEC, on
 *  `conn` (the caller's own; NULL: the pool). On TC_OK *exec is the EXEC
 *  reply cut to the `n` replies, Redis's error (EXECABORT), or NULL when
 *  the caller's WATCH aborted the transaction (only with `conn`). */
tc_result tc__run_write(tc_cache *c, tc__conn *conn,
                        const struct tc__node_addr *node, size_t n,
                        const tc__prepared *ps, const tc__written *w,
                        redisReply **exec);

/* watched.c: a write on a connection that WATCHes keys, in one script
 * with its stamps and invalidation (strict: and the count). */
/** 1 when `p` (a write, `w` its written keys) can run in that script. */
int tc__watched_write_fits(const tc__prepared *p, const tc__written *w);
/** Run it on `conn` (the caller's, WATCHing; on Redis Cluster `node`
 *  names its master, whose channel the invalidation goes on, and a strict
 *  count runs after it; NULL elsewhere). On TC_OK *out is the command's
 *  reply as Redis gave it (caller frees); else the connection is out of
 *  step. */
tc_result tc__watched_write(tc_cache *c, tc__conn *conn,
                            const struct tc__node_addr *node,
                            const tc__prepared *p, const tc__written *w,
                            redisReply **out);

#endif
