/*
 * tiercached configuration: command-line flags, each with an environment
 * variable. Library settings (REDIS_URL, CACHE_DEFAULT_TTL, TC_COHERENCE ...)
 * use the library's own variables, which tc_cache_create() reads for every
 * field a flag left at zero; flags win over the environment.
 * Secrets given in argv (--requirepass, --redis-password, a password in
 * --redis-url) are copied and overwritten in argv, so that other local
 * users do not read them in /proc/<pid>/cmdline; --requirepass-file and
 * --redis-password-file read them from a file instead.
 * Not thread-safe; parsed once in main() and read-only afterwards.
 */
#ifndef TCD_CONFIG_H
#define TCD_CONFIG_H

#include <stdio.h>

#include "proto.h"
#include "tiercache.h"

typedef struct tcd_config {
    const char *socket_path;   /* "" = no unix socket; NULL = the default
                                  in a private directory (rundir.h) */
    unsigned socket_mode;      /* default 0600 */
    int port;                  /* loopback TCP port, 0 = off */
    int http_port;             /* loopback metrics port, 0 = off */
    const char *password;      /* clients must AUTH when set */
    unsigned workers;          /* threads running L2 calls */
    unsigned max_clients;
    unsigned read_timeout_ms;  /* a partial request older than this: error */
    size_t max_output;         /* bytes a client may make us hold (unsent
                                  replies, requests not yet run) before its
                                  further commands wait */
    size_t max_reply;          /* largest reply of one command */
    size_t max_keys;           /* keys in one multi-key command */
    unsigned max_pinned;       /* clients with a Redis connection of their
                                  own (WATCH, SELECT, BLPOP, SUBSCRIBE...) */
    int no_shared_pubsub;      /* --no-shared-pubsub: every subscriber
                                  pinned (pin.h), as before pubsub.h */
    tcd_limits limits;
    tc_log_level log_level;
    int check;                 /* --check */
    int help, version;
    tc_options opts;           /* strings borrowed from argv / environ,
                                  secrets owned (below) */
    char *owned[8];            /* secrets copied from argv or read from
                                  files; freed by tcd_config_free() */
    size_t nowned;
} tcd_config;

/** Defaults, then environment, then argv. Returns 0, or -1 after writing
 *  the problem to `err`. */
int tcd_config_parse(tcd_config *c, int argc, char **argv, FILE *err);
void tcd_config_usage(FILE *out);
/** Free what tcd_config_parse() allocated (secrets). */
void tcd_config_free(tcd_config *c);

#endif
