/*
 * tiercache: the management command-line tool (health, stats, clear,
 * warm), against a tiercached daemon (Redis protocol: TC.* commands and
 * INFO) or against Redis directly, where the tool is itself a library
 * instance so that its invalidations reach every L1 of the fleet over the
 * bus. Files: cli_main.c (entry, dispatch), cli_args.c (arguments and
 * secrets), cli_target.c (the connection to a daemon or Redis),
 * cli_snap.c (a counter snapshot from either), cli_health.c, cli_stats.c,
 * cli_clear.c, cli_warm.c (one subcommand family each), cli_out.c (output).
 * Single-threaded.
 */
#ifndef TC_CLI_H
#define TC_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "tiercache.h"

/* Exit codes (README "The tiercache tool"). health: 0 healthy, 1 degraded,
 * 2 down. Others: 0 done, 1 failed, 2 target unreachable. */
enum {
    CLI_OK = 0,
    CLI_DEGRADED = 1,
    CLI_FAILED = 1,
    CLI_DOWN = 2,
    CLI_USAGE = 64
};

/* The command line, parsed. Strings are borrowed from argv, except the
 * secrets, which are owned (cli_args_free). */
typedef struct cli_args {
    const char *cmd;          /* health, stats, clear, warm */
    /* Target: a daemon (socket path, or host:port) or Redis directly. */
    const char *daemon;
    char *daemon_password;    /* owned: TIERCACHE_PASSWORD or its file */
    const char *redis_url;    /* NULL: the library's environment */
    char *redis_password;     /* owned: from --redis-password-file */
    const char *channel, *key_prefix;
    int timeout_ms;
    /* stats */
    double interval_s;        /* 0: one snapshot */
    long count;               /* lines with --interval; 0: until stopped */
    /* clear */
    const char *pattern, *prefix;
    const char **tags;        /* owned array (of borrowed strings) */
    size_t ntags;
    int all;
    char **keys;              /* borrowed: the operands after the command */
    size_t nkeys;
    /* warm */
    const char *file, *keys_file;
    uint64_t ttl_ms;
    size_t batch;
    int quiet;                /* no progress lines */
} cli_args;

/** Parse argv into *a. CLI_OK, or CLI_USAGE after printing why (or after
 *  --help, with *a->cmd NULL and exit code 0 in *help_rc). */
int cli_args_parse(int argc, char **argv, cli_args *a, int *help_rc);
void cli_args_free(cli_args *a);
/** The usage text, to `f`. */
void cli_usage(void *f);

/* A connection to the target: exactly one of rc (daemon) and c (Redis
 * directly, through a library instance) is set. */
typedef struct cli_target {
    redisContext *rc;
    tc_cache *c;
    const cli_args *a;
    char where[256];          /* for messages: the socket or the URL */
} cli_target;

/** Connect. CLI_OK, or CLI_DOWN with the reason printed. */
int cli_target_open(const cli_args *a, cli_target *t);
void cli_target_close(cli_target *t);
/** One daemon command (argv binary-safe, lengths given): the reply (free
 *  with freeReplyObject) or NULL when the connection failed (printed). */
redisReply *cli_daemon_cmd(cli_target *t, int argc, const char **argv,
                           const size_t *lens);

/* A snapshot of the counters the tool reports, from either target. */
typedef struct cli_snap {
    double t;                 /* monotonic seconds */
    int has_l1;               /* the daemon's L1 (not in direct mode) */
    uint64_t l1_hits, l1_misses, l1_entries;
    uint64_t l2_hits, l2_misses; /* direct: Redis keyspace_hits/misses */
    uint64_t commands;        /* daemon commands, or Redis's */
    uint64_t inval;           /* invalidations applied (daemon) or received
                                 (this instance, direct) */
    uint64_t lag[24];         /* invalidation lag, log2 us buckets */
    int l2_up, bus_up, healthy;
    char coherence[16];
} cli_snap;

/** Take a snapshot. CLI_OK, or CLI_DOWN with the reason printed. */
int cli_snap_take(cli_target *t, cli_snap *s);

int cli_health(const cli_args *a);
int cli_stats(const cli_args *a);
int cli_clear(const cli_args *a);
int cli_warm(const cli_args *a);

/* Output. */
/** An error line on stderr: "tiercache: <what>". */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** A progress line on stderr unless quiet: "warm: done/total keys (p%)". */
void cli_progress(const cli_args *a, const char *what, size_t done,
                  size_t total);
/** The lag percentile `pct` (0..100) of a histogram (upper bucket bound,
 *  us), or -1 when it is empty. */
long long cli_lag_pct(const uint64_t *hist, double pct);

#endif
