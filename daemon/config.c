#include "config.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <strings.h>
#include <unistd.h>

#include "parse.h"

enum kind { K_STR, K_SECRET, K_FILE, K_UINT, K_PORT, K_SIZE, K_MODE, K_FLAG,
            K_LEVEL, K_COH,
            K_TTL_S, K_MS64 };

typedef struct opt {
    const char *flag;  /* without "--" */
    const char *env;   /* NULL: the library reads its own variable */
    enum kind kind;
    size_t off;        /* offset in tcd_config */
    const char *arg, *help;
} opt;

#define F(field) offsetof(tcd_config, field)

static const opt opts[] = {
    {"socket", "TIERCACHED_SOCKET", K_STR, F(socket_path), "PATH",
     "unix socket to listen on (default $XDG_RUNTIME_DIR/tiercached/"
     "tiercached.sock, else /run/tiercached/ for root, else "
     "/tmp/tiercached-UID/, each created 0700; \"\" = none)"},
    {"socket-mode", "TIERCACHED_SOCKET_MODE", K_MODE, F(socket_mode), "MODE",
     "permissions of the socket file, octal (default 0600)"},
    {"port", "TIERCACHED_PORT", K_PORT, F(port), "N",
     "also listen on 127.0.0.1:N (default 0 = off)"},
    {"http-port", "TIERCACHED_HTTP_PORT", K_PORT, F(http_port), "N",
     "serve GET /metrics and /health on 127.0.0.1:N (default off)"},
    {"requirepass", "TIERCACHED_REQUIREPASS", K_SECRET, F(password), "PASS",
     "clients must AUTH with this password (hidden from the process title; "
     "prefer the environment or --requirepass-file)"},
    {"requirepass-file", "TIERCACHED_REQUIREPASS_FILE", K_FILE, F(password),
     "PATH", "read the password clients must AUTH with from this file"},
    {"workers", "TIERCACHED_WORKERS", K_UINT, F(workers), "N",
     "threads for L1 misses and writes (default 2 x cores, at least 4)"},
    {"max-clients", "TIERCACHED_MAX_CLIENTS", K_UINT, F(max_clients), "N",
     "connections accepted at once (default 10000)"},
    {"max-args", "TIERCACHED_MAX_ARGS", K_SIZE, F(limits.max_args), "N",
     "arguments in one command (default 65536)"},
    {"max-bulk", "TIERCACHED_MAX_BULK", K_SIZE, F(limits.max_bulk), "BYTES",
     "bytes in one argument (default 16 MiB + 1 KiB)"},
    {"max-request", "TIERCACHED_MAX_REQUEST", K_SIZE, F(limits.max_request),
     "BYTES", "bytes in one request = per-client input bound (default 64 MiB)"},
    {"max-output", "TIERCACHED_MAX_OUTPUT", K_SIZE, F(max_output), "BYTES",
     "bytes a client may have pending (unsent replies, queued requests) "
     "before its further commands wait (default 4 MiB)"},
    {"max-reply", "TIERCACHED_MAX_REPLY", K_SIZE, F(max_reply), "BYTES",
     "largest reply of one command, e.g. MGET (default 64 MiB)"},
    {"max-keys", "TIERCACHED_MAX_KEYS", K_SIZE, F(max_keys), "N",
     "keys in one MGET, EXISTS or DEL (default 16384)"},
    {"max-pinned", "TIERCACHED_MAX_PINNED", K_UINT, F(max_pinned), "N",
     "clients holding a Redis connection (and a thread) of their own: WATCH, "
     "SELECT, blocking commands, SUBSCRIBE, MONITOR (default 512)"},
    {"no-shared-pubsub", "TIERCACHED_NO_SHARED_PUBSUB", K_FLAG,
     F(no_shared_pubsub), NULL,
     "give each SUBSCRIBE/PSUBSCRIBE client a Redis connection of its own "
     "instead of sharing one per daemon"},
    {"read-timeout", "TIERCACHED_READ_TIMEOUT_MS", K_UINT, F(read_timeout_ms),
     "MS", "close a client stalled in the middle of a request (default 10000)"},
    {"log-level", "TIERCACHED_LOG_LEVEL", K_LEVEL, F(log_level), "LEVEL",
     "debug, info, warn or error (default info)"},
    {"redis-url", NULL, K_SECRET, F(opts.url), "URL",
     "L2: redis://[user:pass@]host[:port][/db], unix:///path or "
     "redis-sentinel://h1:p1,h2:p2/master [REDIS_URL]"},
    {"redis-host", NULL, K_STR, F(opts.host), "HOST", "[REDIS_HOST]"},
    {"redis-port", NULL, K_PORT, F(opts.port), "N", "[REDIS_PORT]"},
    {"redis-socket", NULL, K_STR, F(opts.unix_path), "PATH",
     "L2 over a unix socket"},
    {"redis-username", NULL, K_STR, F(opts.username), "USER",
     "[REDIS_USERNAME]"},
    {"redis-password", NULL, K_SECRET, F(opts.password), "PASS",
     "[REDIS_PASSWORD]"},
    {"redis-password-file", NULL, K_FILE, F(opts.password), "PATH",
     "read the Redis password from this file"},
    {"redis-db", NULL, K_UINT, F(opts.db), "N", "[REDIS_DB]"},
    {"key-prefix", NULL, K_STR, F(opts.key_prefix), "PREFIX",
     "prepended to every L2 key [CACHE_KEY_PREFIX]"},
    {"default-ttl", NULL, K_TTL_S, F(opts.default_ttl_ms), "SECONDS",
     "L2 TTL of SET without EX/PX (default 900) [CACHE_DEFAULT_TTL]"},
    {"l1-ttl-ms", NULL, K_MS64, F(opts.l1_ttl_ms), "MS", "L1 TTL"},
    {"l1-max-bytes", NULL, K_SIZE, F(opts.l1_max_bytes), "BYTES",
     "L1 memory bound (default 64 MiB)"},
    {"l1-max-entries", NULL, K_SIZE, F(opts.l1_max_entries), "N",
     "L1 entry bound (default 1000000)"},
    {"max-value-bytes", NULL, K_SIZE, F(opts.max_value_bytes), "BYTES",
     "largest value (default 16 MiB)"},
    {"compress-min-bytes", NULL, K_SIZE, F(opts.compress_min_bytes), "BYTES",
     "zstd-compress values of at least this size in L2 (default off; every "
     "reader needs it) [TC_COMPRESS_MIN_BYTES]"},
    {"pool-size", NULL, K_UINT, F(opts.pool_size), "N",
     "L2 connections (default: --workers)"},
    {"connect-timeout-ms", NULL, K_UINT, F(opts.connect_timeout_ms), "MS", ""},
    {"command-timeout-ms", NULL, K_UINT, F(opts.command_timeout_ms), "MS", ""},
    {"coherence", NULL, K_COH, F(opts.coherence), "MODE",
     "async, strict or none [TC_COHERENCE]"},
    {"tracking", "TIERCACHED_TRACKING", K_FLAG, F(opts.tracking), NULL,
     "invalidate L1 on writes by plain Redis clients (CLIENT TRACKING BCAST)"},
    {"channel", NULL, K_STR, F(opts.channel), "NAME",
     "invalidation channel (default __tiercache:invalidate)"},
    {"lease-ms", NULL, K_UINT, F(opts.lease_ms), "MS",
     "L1 is served only this long after the bus was last seen alive"},
    {"idle-after-ms", NULL, K_UINT, F(opts.idle_after_ms), "MS",
     "stop the lease heartbeat after this long without an L1 read"},
    {"check", NULL, K_FLAG, F(check), NULL,
     "validate the configuration, PING L2, print the result and exit"},
    {"help", NULL, K_FLAG, F(help), NULL, "show this help"},
    {"version", NULL, K_FLAG, F(version), NULL, "print the version"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

void tcd_config_usage(FILE *out)
{
    fprintf(out,
            "usage: tiercached [options]\n"
            "A Redis-protocol front for tiercache: a coherent in-process L1\n"
            "in front of a shared Redis L2. Runs in the foreground, logs to\n"
            "stderr; SIGTERM/SIGINT stop it cleanly.\n\noptions:\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", opts[i].flag,
                 opts[i].arg ? " " : "", opts[i].arg ? opts[i].arg : "");
        fprintf(out, "  %-30s %s%s%s%s\n", left, opts[i].help,
                opts[i].env ? " [" : "", opts[i].env ? opts[i].env : "",
                opts[i].env ? "]" : "");
    }
    fprintf(out,
            "\nenvironment read by the library for every option left unset:\n"
            "  REDIS_URL REDIS_HOST REDIS_PORT REDIS_PASSWORD REDIS_USERNAME\n"
            "  REDIS_DB CACHE_KEY_PREFIX CACHE_DEFAULT_TTL CACHE_ENABLED\n"
            "  TC_COHERENCE\n");
}

/* A number in [lo, hi] by the library's strict parser (lib/parse.h): digits
 * only, no sign, space or overflow. */
static int parse_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return s ? tc__parse_u64(s, strlen(s), lo, hi, out) : -1;
}

/* Strings the configuration owns (secrets copied out of argv or read from
 * files), freed by tcd_config_free(). Returns `s`, or NULL when full. */
static char *keep(tcd_config *c, char *s)
{
    size_t n = sizeof(c->owned) / sizeof(c->owned[0]);
    if (!s)
        return NULL;
    if (c->nowned >= n) {
        free(s);
        return NULL;
    }
    c->owned[c->nowned++] = s;
    return s;
}

/* The first line of `path`, without its newline; NULL after writing why. */
static char *read_secret(const char *path, FILE *err)
{
    char buf[1024];
    size_t n;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "tiercached: cannot read %s: %s\n", path,
                strerror(errno));
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0]) {
        fprintf(err, "tiercached: %s is empty\n", path);
        return NULL;
    }
    return strdup(buf);
}

/* Overwrite a secret in argv so that /proc/<pid>/cmdline (ps, any local
 * user) no longer shows it, as redis-server does. A URL keeps its shape:
 * only the password between "user:" and '@' goes, and a sentinel_password=
 * query value. */
static void hide_in_argv(const opt *o, char *val)
{
    char *from = val, *to = val + strlen(val);
    if (o->off == F(opts.url)) {
        char *auth = strstr(val, "://"), *at, *colon;
        char *sp = strstr(val, "sentinel_password=");
        if (sp) { /* redis-sentinel://...?sentinel_password=SECRET[&...] */
            sp += strlen("sentinel_password=");
            for (; *sp && *sp != '&'; sp++)
                *sp = '*';
        }
        if (!auth)
            return;
        auth += 3;
        at = strchr(auth, '@');
        if (!at)
            return; /* no credentials */
        colon = memchr(auth, ':', (size_t)(at - auth));
        from = colon ? colon + 1 : auth;
        to = at;
    }
    for (char *p = from; p < to; p++)
        *p = '*';
}

void tcd_config_free(tcd_config *c)
{
    for (size_t i = 0; i < c->nowned; i++) {
        free(c->owned[i]);
        c->owned[i] = NULL;
    }
    c->nowned = 0;
}

static int set_opt(tcd_config *c, const opt *o, const char *val, FILE *err,
                   const char *src)
{
    char *field = (char *)c + o->off;
    uint64_t v = 0;
    int b = 1;
    switch (o->kind) {
    case K_STR:
        *(const char **)(void *)field = val;
        return 0;
    case K_SECRET: { /* a copy: the argv original is overwritten */
        char *copy = keep(c, val ? strdup(val) : NULL);
        if (!copy)
            break;
        *(const char **)(void *)field = copy;
        return 0;
    }
    case K_FILE: {
        char *secret = keep(c, val ? read_secret(val, err) : NULL);
        if (!secret)
            return -1;
        *(const char **)(void *)field = secret;
        return 0;
    }
    case K_FLAG:
        if (!val || tc__parse_bool(val, strlen(val), &b) == 0) {
            if (o->off == F(opts.tracking))
                *(int *)(void *)field = b ? TC_YES : TC_NO;
            else
                *(int *)(void *)field = b;
            return 0;
        }
        break;
    case K_UINT:
        if (parse_num(val, 0, INT_MAX, &v) == 0) {
            if (o->off == F(opts.db))
                *(int *)(void *)field = v == 0 ? -1 : (int)v;
            else
                *(unsigned *)(void *)field = (unsigned)v;
            return 0;
        }
        break;
    case K_PORT:
        if (parse_num(val, 0, 65535, &v) == 0) {
            *(int *)(void *)field = (int)v;
            return 0;
        }
        break;
    case K_MODE:
        if (val && tc__parse_octal(val, strlen(val), 0777, &v) == 0) {
            *(unsigned *)(void *)field = (unsigned)v;
            return 0;
        }
        break;
    case K_SIZE:
        if (parse_num(val, 1, SIZE_MAX / 4, &v) == 0) {
            *(size_t *)(void *)field = (size_t)v;
            return 0;
        }
        break;
    case K_TTL_S:
        if (parse_num(val, 1, TC_TTL_MAX_MS / 1000, &v) == 0) {
            *(uint64_t *)(void *)field = v * 1000; /* no wrap: bounded */
            return 0;
        }
        break;
    case K_MS64:
        if (parse_num(val, 0, UINT64_MAX, &v) == 0) {
            *(uint64_t *)(void *)field = v;
            return 0;
        }
        break;
    case K_LEVEL: {
        static const char *names[] = {"debug", "info", "warn", "error"};
        for (int i = 0; i < 4; i++)
            if (val && !strcasecmp(val, names[i])) {
                *(tc_log_level *)(void *)field = (tc_log_level)i;
                return 0;
            }
        break;
    }
    case K_COH:
        if (val && !strcasecmp(val, "async")) {
            *(tc_coherence *)(void *)field = TC_COHERENCE_ASYNC;
            return 0;
        }
        if (val && !strcasecmp(val, "strict")) {
            *(tc_coherence *)(void *)field = TC_COHERENCE_STRICT;
            return 0;
        }
        if (val && !strcasecmp(val, "none")) {
            *(tc_coherence *)(void *)field = TC_COHERENCE_NONE;
            return 0;
        }
        break;
    }
    fprintf(err, "tiercached: invalid value '%s' for %s%s\n", val ? val : "",
            src, o->flag);
    return -1;
}

int tcd_config_parse(tcd_config *c, int argc, char **argv, FILE *err)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(c, 0, sizeof(*c));
    c->socket_path = NULL; /* main() picks a private directory */
    c->socket_mode = 0600;
    c->max_clients = 10000;
    c->read_timeout_ms = 10000;
    c->max_output = 4u << 20;
    c->max_reply = 64u << 20;
    c->max_keys = 16384;
    c->max_pinned = 512;
    c->limits.max_args = 65536;
    c->limits.max_bulk = (16u << 20) + 1024;
    c->limits.max_request = 64u << 20;
    c->limits.max_inline = 64 * 1024;
    c->log_level = TC_LOG_INFO;
    c->workers = (unsigned)(cores > 0 ? 2 * cores : 4);
    if (c->workers < 4)
        c->workers = 4;

    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (!v && opts[i].off == F(password) && opts[i].kind == K_SECRET)
            v = getenv("TIERCACHED_PASSWORD"); /* its earlier name */
        if (v && set_opt(c, &opts[i], v, err, "environment for --") != 0)
            return -1;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a], *eq, *val = NULL;
        size_t nlen;
        const opt *o = NULL;
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(err, "tiercached: unexpected argument '%s' (see --help)\n",
                    arg);
            return -1;
        }
        arg += 2;
        eq = strchr(arg, '=');
        nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        for (size_t i = 0; i < NOPTS; i++)
            if (strlen(opts[i].flag) == nlen &&
                !strncmp(opts[i].flag, arg, nlen))
                o = &opts[i];
        if (!o) {
            fprintf(err, "tiercached: unknown option '%s' (see --help)\n",
                    argv[a]);
            return -1;
        }
        if (eq)
            val = eq + 1;
        else if (o->kind != K_FLAG) {
            if (a + 1 >= argc) {
                fprintf(err, "tiercached: --%s needs a value\n", o->flag);
                return -1;
            }
            val = argv[++a];
        }
        if (set_opt(c, o, val, err, "--") != 0)
            return -1;
        if (o->kind == K_SECRET) /* val points into argv[a] */
            hide_in_argv(o, eq ? argv[a] + (eq + 1 - argv[a]) : argv[a]);
    }
    if (c->socket_path && !c->socket_path[0] && c->port == 0 && !c->check &&
        !c->help &&
        !c->version) {
        fprintf(err, "tiercached: no listener: give --socket or --port\n");
        return -1;
    }
    if (c->socket_path && strlen(c->socket_path) >= 108) {
        fprintf(err, "tiercached: socket path too long (max 107 bytes)\n");
        return -1;
    }
    if (c->workers == 0 || c->workers > 1024 || c->max_clients == 0) {
        fprintf(err, "tiercached: --workers must be 1..1024 and "
                     "--max-clients at least 1\n");
        return -1;
    }
    if (c->limits.max_request < c->limits.max_bulk + 64)
        c->limits.max_request = c->limits.max_bulk + 64;
    if (c->opts.pool_size == 0)
        c->opts.pool_size = c->workers;
    return 0;
}
