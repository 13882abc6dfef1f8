/*
 * Configuration: tc_options + URL + environment resolved into one owned,
 * immutable struct. Built once in tc_cache_create(), read-only afterwards,
 * so every thread may read it without a lock.
 */
#ifndef TC_CONFIG_H
#define TC_CONFIG_H

#include "log.h"
#include "tiercache.h"

typedef struct tc__config {
    char *host;          /* owned; NULL when unix_path is set */
    int port;
    char *unix_path;     /* owned or NULL */
    char *username;      /* owned or NULL */
    char *password;      /* owned or NULL; never logged */
    int db;
    char *prefix;        /* owned, never NULL ("" for none) */
    size_t prefix_len;
    char *channel;       /* owned, prefixed channel name */
    uint64_t default_ttl_ms, l1_ttl_ms;
    size_t l1_max_bytes, l1_max_entries;
    unsigned l1_shards;
    size_t max_key, max_value;
    size_t compress_min;   /* 0: compression off (compress.c) */
    unsigned pool_size;
    uint32_t connect_timeout_ms, command_timeout_ms;
    uint32_t reconnect_min_ms, reconnect_max_ms;
    unsigned breaker_threshold;
    int enabled;
    tc_coherence coherence;
    uint32_t lease_ms, clock_margin_pct;
    uint32_t idle_after_ms; /* TC_IDLE_NEVER: never idle (lease.c) */
    int tracking;
    tc__logger log;
    /* TLS (issue 10): rediss://, tc_options.tls*, REDIS_TLS*. */
    int tls;               /* 1: connect with TLS */
    char *tls_ca_file;     /* owned or NULL (NULL + no dir: system store) */
    char *tls_ca_dir;      /* owned or NULL */
    char *tls_cert_file;   /* owned or NULL: client certificate chain */
    char *tls_key_file;    /* owned or NULL: its key; never logged */
    char *tls_server_name; /* owned or NULL: verify and SNI this, not host */
    int tls_insecure;      /* 1: no certificate/name verification */
    struct tc__tls *tls_ctx; /* owned; built from the above iff tls */
    /* Sentinel (issue 10): a redis-sentinel:// URL (options URL or
     * REDIS_URL). With sentinels, host/unix_path are NULL: every connection
     * to L2 asks them for the master (sentinel.h). */
    unsigned nsentinels;         /* 0: host/port/unix_path name L2 */
    char **sentinel_hosts;       /* owned array of nsentinels owned names */
    int *sentinel_ports;         /* owned array of nsentinels */
    char *master_name;           /* owned; NULL without sentinels */
    char *sentinel_username;     /* owned or NULL: AUTH to the sentinels */
    char *sentinel_password;     /* owned or NULL; never logged */
    struct tc__sentinel *sentinel; /* owned, thread-safe; built iff
                                      nsentinels */
    /* Redis Cluster (issue 10): a redis-cluster:// URL. host/port are the
     * first seed; every pool connection goes to the master of its
     * command's slot (cluster.h, l2_cluster.c). */
    unsigned ncluster_seeds;      /* 0: not a cluster */
    char **cluster_hosts;         /* owned array of owned names */
    int *cluster_ports;           /* owned array */
    struct tc__cluster *cluster;  /* owned, thread-safe; built iff
                                     ncluster_seeds */
    /* Bus relay (issue 10, relay.c): ?bus_relay= or TC_BUS_RELAY, the
     * local tiercached
     * the bus subscribes through. Both NULL: subscribe on Redis. */
    char *relay_spec;    /* owned or NULL: a URL's ?bus_relay= */
    char *relay_unix;    /* owned or NULL: its unix socket */
    char *relay_host;    /* owned or NULL: or its loopback TCP address */
    int relay_port;
    char *relay_username; /* owned or NULL: AUTH to the relay */
    char *relay_password; /* owned or NULL; never logged */
} tc__config;

/** Resolve options (may be NULL), their URL and the environment. On failure
 *  returns TC_BAD_ARGUMENT (detail in tc_errmsg()) and `out` holds nothing. */
tc_result tc__config_resolve(const tc_options *o, tc__config *out);
void tc__config_free(tc__config *c);
/** "host:port", "unix:path" or "sentinel master NAME" for messages (no
 *  credentials). */
void tc__config_where(const tc__config *c, char *buf, size_t len);

/** The default channel: in the namespace of tiercache's own keys, so that
 *  it never carries an application's messages (a channel named
 *  "cache:invalidate" is one an application may well use itself). */
#define TC__DEFAULT_CHANNEL "__tiercache:invalidate"
/** The name the bus's state keys derive from: the channel without a
 *  leading "__tiercache:" (the keys add it back): "__tiercache:invalidate"
 *  keeps its state in "__tiercache:invalidate:members", ":clock",
 *  ":stamps". Borrowed from `channel`. */
const char *tc__channel_stem(const char *channel);

#endif
