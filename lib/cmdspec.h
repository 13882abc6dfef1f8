/*
 * Command specifications: which arguments of a Redis command are keys, and
 * which of those it writes, learnt from Redis's own `COMMAND` reply (Redis 7
 * key specifications: begin_search + find_keys + RO/RW/OW/RM flags; the
 * legacy first/last/step and the `write` flag on older servers), never from
 * a hand-kept list of commands.
 *
 * A table is built once from one `COMMAND` reply and is immutable after:
 * any number of threads may read it at once. The cache owns one (command.c
 * fetches it on first use and publishes it with an atomic pointer).
 */
#ifndef TC_CMDSPEC_H
#define TC_CMDSPEC_H

#include <stddef.h>

#include <hiredis/hiredis.h>

typedef struct tc__cmdtab tc__cmdtab;

/** What a command does to the keyspace, for invalidation. */
typedef enum tc__cmd_effect {
    TC__EFFECT_READ = 0, /* writes no key: straight to Redis */
    TC__EFFECT_KEYS = 1, /* writes exactly the keys marked `written` */
    TC__EFFECT_ALL = 2   /* may write keys nobody can name: invalidate all */
} tc__cmd_effect;

/** Refusals: commands that change the state of the connection they run on,
 *  which a shared pool connection must never carry. */
typedef enum tc__cmd_class {
    TC__CLASS_PLAIN = 0,
    TC__CLASS_CONNECTION = 1, /* SELECT AUTH HELLO MULTI WATCH SUBSCRIBE ... */
    TC__CLASS_BLOCKING = 2    /* flag `blocking`: may wait for data */
} tc__cmd_class;

/** The key arguments of one call. Caller-owned; free with
 *  tc__keys_free(). */
typedef struct tc__keys {
    tc__cmd_effect effect;
    tc__cmd_class cls;
    const char *why_all;  /* static: why the effect is ALL (for tests) */
    size_t n;
    int *pos;             /* argument index of each key */
    unsigned char *written;
    int known;            /* 0: the command is not in the table */
    int noscript;         /* Redis refuses it inside a script */
} tc__keys;

/** Build a table from a `COMMAND` reply. NULL when out of memory or the
 *  reply is not an array (detail in tc_errmsg()). */
tc__cmdtab *tc__cmdtab_build(const redisReply *command_reply);
void tc__cmdtab_free(tc__cmdtab *t);

/**
 * The keys of argv[0..argc) and what the command writes. Never fails for a
 * command the table lacks (known = 0, effect ALL: it may be a module's
 * write). A write spec Redis marks `unknown` or INCOMPLETE, a `write`
 * command with no key spec at all (FLUSHDB, FLUSHALL, SWAPDB), and a
 * script runner (@scripting, movablekeys, not readonly: EVAL, EVALSHA,
 * FCALL) that declares no key make the effect ALL. Returns 0, or -1 when
 * out of memory.
 */
int tc__cmdtab_keys(const tc__cmdtab *t, int argc, const char *const *argv,
                    const size_t *argvlen, tc__keys *out);
void tc__keys_free(tc__keys *k);

/**
 * The checks Redis makes when it queues a command inside MULTI: 0 when it
 * would queue it; 1 unknown command; 2 wrong arity or unknown subcommand,
 * with Redis's error text (no leading '-') in `err` (`errlen` bytes).
 */
int tc__cmdtab_check(const tc__cmdtab *t, int argc, const char *const *argv,
                     const size_t *argvlen, char *err, size_t errlen);

#endif
