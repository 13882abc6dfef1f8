/*
 * tiercache: a coherent two-tier cache for horizontally scaled backends.
 *
 * Each process gets an in-memory L1 (sharded hash table) in front of a shared
 * Redis L2. Writes through the library change L2 and publish an invalidation
 * on a Redis pub/sub channel in one atomic server-side step; a helper thread in
 * every process applies invalidations to its L1.
 *
 * Anything not declared in this header is not part of the API.
 *
 * Thread safety: a tc_cache handle is meant to be shared. Every function that
 * takes a tc_cache may be called from any number of threads at once, except
 * tc_cache_destroy(), which the caller must not race with any other call on
 * the same handle. tc_value handles may be read and released from any thread.
 */
#ifndef TIERCACHE_H
#define TIERCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TC_BUILDING_LIBRARY) && defined(__GNUC__)
#define TC_EXTERN __attribute__((visibility("default")))
#else
#define TC_EXTERN
#endif

#define TC_VERSION_MAJOR 0
#define TC_VERSION_MINOR 1
#define TC_VERSION_PATCH 0

/* ------------------------------------------------------------------------ */
/* Results                                                                   */
/* ------------------------------------------------------------------------ */

/** Result of every fallible call. Numbers are fixed and never renumbered. */
typedef enum tc_result {
    TC_OK = 0,
    TC_NOT_FOUND = 1,      /* key is in neither tier */
    TC_TIMEOUT = 2,        /* Redis did not answer within the command timeout */
    TC_L2_UNAVAILABLE = 3, /* Redis is down or the circuit breaker is open */
    TC_TOO_LARGE = 4,      /* key or value exceeds the configured maximum */
    TC_BAD_ARGUMENT = 5,   /* NULL where not allowed, malformed option or URL */
    TC_NO_MEMORY = 6,      /* allocation failed; nothing was changed */
    TC_AUTH = 7,           /* Redis refused the credentials */
    TC_PROTOCOL = 8,       /* Redis answered something unexpected */
    TC_LOADER = 9,         /* the get_or_load loader reported a failure */
    TC_DISABLED = 10,      /* caching is disabled (CACHE_ENABLED=false) */
    TC_NOT_STORED = 11,    /* TC_SET_NX / TC_SET_XX condition not met */
    TC_COMPRESSED = 12,    /* the L2 value is compressed and this cache has
                              compression off (compress_min_bytes 0) */
    TC_CORRUPT = 13,       /* a compressed L2 value does not decode */
    TC_LOADER_TIMEOUT = 14, /* the loader did not return within the hard
                               timeout (tc_get_or_load_ex) */
    TC_STALE = 15          /* success with a fail-safe copy: *out is set,
                              but the loader or Redis failed and the value
                              may be out of date (tc_get_or_load_ex) */
} tc_result;

/** Static English text for a result; never NULL, never to be freed. */
TC_EXTERN const char *tc_strerror(tc_result r);

/**
 * Detail of the last failure reported to the calling thread by any tiercache
 * call (for example the Redis error text). Thread-local: valid until the next
 * tiercache call on the same thread. Never contains a password. Never NULL.
 */
TC_EXTERN const char *tc_errmsg(void);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum tc_log_level {
    TC_LOG_DEBUG = 0,
    TC_LOG_INFO = 1,
    TC_LOG_WARN = 2,
    TC_LOG_ERROR = 3
} tc_log_level;

/**
 * Log callback. Called from any thread, including the bus thread, without
 * library locks held; `msg` is borrowed for the duration of the call.
 */
typedef void (*tc_log_fn)(void *userdata, tc_log_level level, const char *msg);

/** How writes are made visible to other instances. */
typedef enum tc_coherence {
    TC_COHERENCE_ASYNC = 0,  /* default: write+publish atomically, return */
    TC_COHERENCE_STRICT = 1, /* also wait until every live instance applied */
    TC_COHERENCE_NONE = 2    /* no bus: single process, or L1 TTL is enough */
} tc_coherence;

/** Tri-state for boolean options, so that zero means "default". */
enum { TC_DEFAULT = 0, TC_YES = 1, TC_NO = 2 };

/** TTL value meaning "no expiry in L2". */
#define TC_TTL_NONE UINT64_MAX
/** Largest finite TTL in options: ten years, in ms. */
#define TC_TTL_MAX_MS 315360000000ULL
/** Largest timeout, backoff or lease in options: one hour, in ms. */
#define TC_TIMEOUT_MAX_MS 3600000U
/** tc_options.idle_after_ms: never go idle (heartbeat all the time). */
#define TC_IDLE_NEVER 0xffffffffU

/**
 * Options for tc_cache_create(). Zero-initialise, then set what you need:
 * every zero field takes the environment's value if present, else the
 * default given here. Strings are borrowed during tc_cache_create() only.
 *
 * Environment: REDIS_URL, REDIS_HOST, REDIS_PORT, REDIS_PASSWORD,
 * REDIS_USERNAME, REDIS_DB, CACHE_KEY_PREFIX, CACHE_DEFAULT_TTL (seconds),
 * CACHE_ENABLED (true/false/1/0/yes/no/on/off), TC_COHERENCE
 * (async/strict/none), TC_COMPRESS_MIN_BYTES. Explicit fields win over `url`, which wins over the
 * environment; within it REDIS_HOST/PORT/... win over REDIS_URL. A variable
 * is only read when it would supply a field still unset, so a malformed
 * value that an explicit field overrides is no error. REDIS_PORT may also
 * be the docker-link form "tcp://host:port" that Kubernetes injects for a
 * Service named redis: its port counts as REDIS_PORT, its host is used only
 * when nothing else names one, and a REDIS_URL wins over it entirely. Set
 * `ignore_env` to TC_YES to ignore the environment.
 *
 * Limits: every timeout and the lease are at most TC_TIMEOUT_MAX_MS (one
 * hour), so that sums of them never wrap 32 bits; a finite TTL is at most
 * TC_TTL_MAX_MS (ten years; TC_TTL_NONE is no expiry). Larger values make
 * tc_cache_create() fail with TC_BAD_ARGUMENT and say which in tc_errmsg().
 *
 * Room to grow: the struct ends with `reserved_`, which must stay zero
 * (zero-initialising the struct does it). A later version turns reserved
 * words into new fields whose zero means "default", without changing the
 * struct's size or any offset: a program built against this header keeps
 * working with a later library, and a program built against a later header
 * that sets a new field gets TC_BAD_ARGUMENT from an older library instead of
 * having the setting silently ignored; that is why non-zero reserved words
 * are rejected. Chosen over a leading size/version member because that would
 * have to be set by every caller, and `tc_options o = {0}` would no longer be
 * a valid start.
 */
typedef struct tc_options {
    /* Where L2 lives: "redis://[user:pass@]host[:port][/db]" (rediss://
     * for TLS) or
     * "unix:///path/to.sock[?db=N]". Explicit host/port/unix_path/db/
     * username/password fields below win over the URL's parts.
     * Or Redis Sentinel: "redis-sentinel://[user:pass@]h1[:p1],h2[:p2],...
     * /master-name[/db][?sentinel_username=U&sentinel_password=P]"
     * (sentinel port 26379 by default; user:pass are the master's): every
     * connection asks the sentinels for the master and follows failovers
     * (README, "Sentinel"). Also accepted in REDIS_URL. */
    const char *url;
    const char *host;          /* default "127.0.0.1" */
    int port;                  /* default 6379 */
    const char *unix_path;     /* unix socket instead of TCP */
    const char *username;      /* ACL user (Redis 6+); needs password */
    const char *password;      /* AUTH password; never logged */
    int db;                    /* SELECT db; 0 = default db 0 (-1 forces 0) */

    const char *key_prefix;    /* prepended to every L2 key and the channel */
    uint64_t default_ttl_ms;   /* L2 TTL when a call passes 0; default
                                  900 s; at most TC_TTL_MAX_MS, or
                                  TC_TTL_NONE */
    uint64_t l1_ttl_ms;        /* L1 TTL when a call passes 0; default
                                  default_ttl_ms / 10, at most 60 s; never
                                  longer than the entry's L2 TTL; at most
                                  TC_TTL_MAX_MS, or TC_TTL_NONE */

    size_t l1_max_bytes;       /* L1 bound on keys+values+overhead; 64 MiB */
    size_t l1_max_entries;     /* L1 bound on entries; 1,000,000 */
    unsigned l1_shards;        /* power of two; default 16 x cores, <= 1024 */
    size_t max_key_bytes;      /* default 1 KiB; larger keys: TC_TOO_LARGE */
    size_t max_value_bytes;    /* default 16 MiB; larger: TC_TOO_LARGE */

    unsigned pool_size;        /* sync L2 connections; default 2 x cores */
    /* Each of these four and lease_ms: at most TC_TIMEOUT_MAX_MS. */
    uint32_t connect_timeout_ms; /* default 1000 */
    uint32_t command_timeout_ms; /* default 500 */
    uint32_t reconnect_min_ms;   /* backoff start; default 50 */
    uint32_t reconnect_max_ms;   /* backoff cap; default 2000 */
    unsigned breaker_threshold;  /* consecutive L2 failures that open the
                                    circuit breaker; default 3 */

    int enabled;               /* TC_NO: no L1, no L2 (see README) */
    int ignore_env;            /* TC_YES: do not read the environment */

    tc_coherence coherence;    /* default TC_COHERENCE_ASYNC */
    const char *channel;       /* default "__tiercache:invalidate"
                                  (prefixed) */
    uint32_t lease_ms;         /* L1 is served only this long after the bus
                                  last proved itself alive; also the strict
                                  mode bound; default 100 */
    uint32_t clock_margin_pct; /* allowed clock rate difference between
                                  instances, percent; default 5 */
    int tracking;              /* TC_YES: server-assisted invalidation of
                                  writes by other Redis clients (BCAST over
                                  the key prefix); needs a non-empty
                                  key_prefix, else TC_BAD_ARGUMENT (an empty
                                  prefix would track every key, the
                                  library's own ones included) */

    tc_log_fn log;             /* optional; default: no logging */
    void *log_userdata;

    /* TLS (six of the eight reserved words on LP64). Certificates and
     * the host name are verified unless tls_insecure is TC_YES. Each
     * string defaults to its environment variable: REDIS_TLS_CA_FILE,
     * REDIS_TLS_CA_DIR, REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE,
     * REDIS_TLS_SERVER_NAME. */
    int tls;                   /* TC_YES/TC_NO; default: on for a rediss://
                                  URL, else REDIS_TLS (true/false) */
    int tls_insecure;          /* TC_YES: no certificate or name check
                                  (tests only); env REDIS_TLS_INSECURE */
    const char *tls_ca_file;   /* PEM CA bundle; with neither file nor dir,
                                  the system's trust store */
    const char *tls_ca_dir;    /* directory of hashed CA certificates */
    const char *tls_cert_file; /* client certificate chain (PEM), for
                                  servers with tls-auth-clients */
    const char *tls_key_file;  /* its private key (PEM) */
    const char *tls_server_name; /* name to verify and send as SNI;
                                    default: the host */

    /* Compression (one of the two reserved words): values of at least
     * this many bytes are stored zstd-compressed in L2 when that saves
     * bytes; readers need it set too (else TC_COMPRESSED). 0 = env
     * TC_COMPRESS_MIN_BYTES, else off. At most 512 MiB. L1 keeps values
     * decompressed; tc_command() passes values as Redis holds them. */
    size_t compress_min_bytes;
    /* Idle bus (one half of the last reserved word): an instance that has
     * not read L1 for this long stops its lease heartbeat and leaves the
     * strict-mode members set (README, "Idle instances"); its next read
     * goes to L2 and wakes the bus, and L1 serves again one round trip
     * later. Default 5000 (env TC_IDLE_AFTER_MS); TC_IDLE_NEVER keeps the
     * heartbeat running. */
    uint32_t idle_after_ms;
    uint32_t reserved_[1];     /* must be zero; room for later fields */
} tc_options;

/**
 * Fill `opts` from a URL (see tc_options.url; rediss:// also sets `tls` to
 * TC_YES). Strings in `opts` point into
 * `storage`, which the caller provides (at least strlen(url)+1 bytes) and must
 * keep alive while `opts` is used. A redis-sentinel:// URL is checked and
 * copied whole into `storage`, and `opts->url` points at the copy (the
 * sentinels have no fields of their own). Returns TC_BAD_ARGUMENT with a
 * detail in tc_errmsg() for a malformed URL; `opts` is then unchanged.
 * Thread-safe: touches only its arguments.
 */
TC_EXTERN tc_result tc_options_parse_url(tc_options *opts, const char *url,
                                         char *storage, size_t storage_len);

/* ------------------------------------------------------------------------ */
/* Cache handle                                                              */
/* ------------------------------------------------------------------------ */

/** Opaque cache handle. Thread-safe, see the top of this file. */
typedef struct tc_cache tc_cache;

/**
 * Create a cache. `opts` may be NULL (all defaults plus the environment) and
 * is copied. Redis being down is not an error: the cache starts degraded and
 * reconnects in the background (with Sentinel: no sentinel answering is the
 * same). Returns TC_AUTH when Redis refuses the credentials and
 * TC_BAD_ARGUMENT for malformed options (with Sentinel: also when every
 * sentinel that answered knows no master by that name). On success *out is
 * the caller's, to be freed with tc_cache_destroy().
 */
TC_EXTERN tc_result tc_cache_create(const tc_options *opts, tc_cache **out);

/** Stop the bus thread, close connections, free everything. NULL is a no-op.
 *  tc_value handles obtained earlier stay valid until released. Does not
 *  wait for loaders running in the background (tc_get_or_load_ex timeouts
 *  and eager refreshes): what they need is freed when the last of them
 *  returns, and their results are discarded; queued ones never run. */
TC_EXTERN void tc_cache_destroy(tc_cache *c);

/* ------------------------------------------------------------------------ */
/* Values                                                                    */
/* ------------------------------------------------------------------------ */

/**
 * An immutable, reference-counted value handed out by the cache. Never a
 * pointer into a shard: it stays valid until released, whatever other
 * threads do to the cache. Thread-safe to read and release.
 */
typedef struct tc_value tc_value;

TC_EXTERN const void *tc_value_data(const tc_value *v); /* borrowed */
TC_EXTERN size_t tc_value_len(const tc_value *v);
/** Drop the caller's reference. NULL is a no-op. */
TC_EXTERN void tc_value_release(tc_value *v);

/* ------------------------------------------------------------------------ */
/* Operations. Keys and values are binary-safe byte strings (borrowed).      */
/* ------------------------------------------------------------------------ */

/**
 * Look a key up in L1, then L2 (an L2 hit fills L1). On TC_OK *out is a new
 * reference for the caller to release. TC_NOT_FOUND when absent. While Redis
 * is down, a read L1 cannot answer returns TC_L2_UNAVAILABLE or TC_TIMEOUT,
 * never a silent "not found". (With a bus, L1 itself stops answering within
 * one lease of losing Redis, since invalidations could be lost; with
 * TC_COHERENCE_NONE its hits keep answering.)
 */
TC_EXTERN tc_result tc_get(tc_cache *c, const void *key, size_t klen,
                           tc_value **out);

/**
 * Store a value in L2 (TTL `ttl_ms`, 0 = default, TC_TTL_NONE = no expiry)
 * and publish its invalidation atomically, then update the caller's L1.
 * L1 keeps it for the default L1 TTL, never longer than `ttl_ms`.
 * Returns TC_OK only once L2 has the value; any other result means the write
 * may not have happened (L1 then holds no copy of the key).
 */
TC_EXTERN tc_result tc_set(tc_cache *c, const void *key, size_t klen,
                           const void *val, size_t vlen, uint64_t ttl_ms);

/** Flags for tc_set_ex(). */
enum {
    TC_SET_NX = 1 << 0,     /* only if the key is absent in L2 */
    TC_SET_XX = 1 << 1,     /* only if the key is present in L2 */
    TC_SET_STRICT = 1 << 2, /* this write in strict mode */
    TC_SET_ASYNC = 1 << 3   /* this write in async mode */
};

/** Per-write parameters for tc_set_ex(); zero-initialise. */
typedef struct tc_set_opts {
    uint64_t l2_ttl_ms; /* 0 = default, TC_TTL_NONE = no expiry */
    uint64_t l1_ttl_ms; /* 0 = default; always clamped to the L2 TTL */
    int flags;          /* TC_SET_* */
} tc_set_opts;

/** tc_set() with options (`o` may be NULL). TC_NOT_STORED when an NX/XX
 *  condition was not met (nothing changed, nothing published). */
TC_EXTERN tc_result tc_set_ex(tc_cache *c, const void *key, size_t klen,
                              const void *val, size_t vlen,
                              const tc_set_opts *o);

/** Delete a key from L2 and every instance's L1. TC_OK also when absent. */
TC_EXTERN tc_result tc_del(tc_cache *c, const void *key, size_t klen);

/** Delete `n` keys in one atomic step and one invalidation message.
 *  `deleted` (may be NULL) receives how many existed in L2. */
TC_EXTERN tc_result tc_mdel(tc_cache *c, size_t n, const void *const *keys,
                            const size_t *klens, uint64_t *deleted);

/**
 * L1 only: never talks to Redis. TC_OK with a reference in *out, or
 * TC_NOT_FOUND when L1 has no servable copy (absent, expired, or the bus has
 * not proved itself alive within the lease). For event loops that must not
 * block: answer hits at once, hand misses to a worker calling tc_get().
 * A hit counts in l1_hits; a miss (or a bypass) is not counted here, but by
 * the tc_get() or tc_mget() that follows it, so each read counts once.
 */
TC_EXTERN tc_result tc_peek(tc_cache *c, const void *key, size_t klen,
                            tc_value **out);

/**
 * tc_peek() of `n` keys, all or nothing: TC_OK with a reference in each
 * out[i] when L1 can serve every key (counted as `n` hits), else
 * TC_NOT_FOUND with every out[i] NULL and nothing counted (the tc_mget() the
 * caller sends the read to counts each key once). Failures as tc_peek().
 */
TC_EXTERN tc_result tc_mpeek(tc_cache *c, size_t n, const void *const *keys,
                             const size_t *klens, tc_value **out);

/** Remaining L2 TTL in ms: *ttl_ms = -1 for no expiry; TC_NOT_FOUND if the
 *  key is absent. */
TC_EXTERN tc_result tc_pttl(tc_cache *c, const void *key, size_t klen,
                            int64_t *ttl_ms);

/**
 * Multi-get: L1 first, then every L1 miss in one pipelined L2 round trip.
 * `out[i]` receives a reference (release each) or NULL, and `res[i]` the
 * per-key result. Returns TC_OK when every key was answered (found or not),
 * else the first failure (the per-key results say which).
 */
TC_EXTERN tc_result tc_mget(tc_cache *c, size_t n, const void *const *keys,
                            const size_t *klens, tc_value **out,
                            tc_result *res);

/**
 * Loader for tc_get_or_load(). Produce the value for `key` and store a buffer
 * allocated with malloc() in *val (the library takes ownership and frees it)
 * and its length in *vlen. Return TC_OK, TC_NOT_FOUND, or any failure; a
 * failure is handed to every waiter and nothing is cached.
 */
typedef tc_result (*tc_loader_fn)(void *userdata, const void *key,
                                  size_t klen, void **val, size_t *vlen);

/**
 * Read-through: L1, then L2, then `loader`, whose value is stored in both
 * tiers (L2 with `ttl_ms`, only if the key is still absent there). Concurrent
 * misses on the same key in this process call the loader once and all share
 * its result. While L2 is down the loader still answers (graceful fallback).
 * The same as tc_get_or_load_ex() with NULL options (and this TTL).
 */
TC_EXTERN tc_result tc_get_or_load(tc_cache *c, const void *key, size_t klen,
                                   tc_loader_fn loader, void *userdata,
                                   uint64_t ttl_ms, tc_value **out);

/** TTLs a tc_loader_ex_fn may choose (in/out). */
typedef struct tc_load_ttl {
    uint64_t ttl_ms;          /* L2 TTL of the value returned; on entry the
                                 call's (tc_load_options.ttl_ms or the
                                 default); TC_TTL_NONE: no expiry */
    uint64_t negative_ttl_ms; /* how long a TC_NOT_FOUND is cached; on
                                 entry tc_load_options.negative_ttl_ms;
                                 0: not cached */
} tc_load_ttl;

/**
 * Loader for tc_get_or_load_ex(): as tc_loader_fn, and it may change the
 * TTLs in `*ttl` (adaptive TTL; a "not found" cached by setting
 * negative_ttl_ms). TTLs above TC_TTL_MAX_MS are clamped to it
 * (ttl_ms may be TC_TTL_NONE). Called on the caller's thread, or on one of
 * the cache's background threads (timeouts, eager refresh): it must be
 * thread-safe, and `userdata` must stay valid until the loader has
 * returned, which may be after tc_cache_destroy() returned (destroy does
 * not wait for a loader running in the background).
 */
typedef tc_result (*tc_loader_ex_fn)(void *userdata, const void *key,
                                     size_t klen, void **val, size_t *vlen,
                                     tc_load_ttl *ttl);

/**
 * Per-call read-through settings for tc_get_or_load_ex(). Zero-initialise:
 * every zero field means "off" (or the default), so {0} behaves exactly as
 * tc_get_or_load(). `reserved_` must stay zero (else TC_BAD_ARGUMENT).
 * Times are at most TC_TIMEOUT_MAX_MS, TTLs and staleness at most
 * TC_TTL_MAX_MS. Plain data; the caller's, read during the call only.
 */
typedef struct tc_load_options {
    uint64_t ttl_ms;          /* L2 TTL of a loaded value; 0 = default */
    /* Fail-safe: when the loader fails, returns nothing within the soft
     * timeout, or Redis fails with it, answer TC_STALE with the last value
     * this instance obtained for the key (from L2 or the loader) at most
     * this long ago, unless an invalidation of the key reached this
     * instance since, or Redis, when it answers, shows a write or delete
     * of the key since (README "Fail-safe" says what it weakens). 0 = off. */
    uint64_t fail_safe_max_stale_ms;
    /* Negative caching: a loader's TC_NOT_FOUND is cached (L2 marker, this
     * instance's last-known store) for this long; later calls return
     * TC_NOT_FOUND without calling the loader until it expires or any
     * write, delete or invalidation of the key. 0 = off. */
    uint64_t negative_ttl_ms;
    /* Soft timeout: after this long, answer with the fail-safe copy
     * (TC_STALE) if there is one, while the load goes on in the background
     * and fills L1 and L2 when it completes. 0 = none. */
    uint32_t soft_timeout_ms;
    /* Hard timeout: after this long, give up with TC_LOADER_TIMEOUT (the
     * load goes on in the background as above). 0 = none. At least
     * soft_timeout_ms when both are set. */
    uint32_t hard_timeout_ms;
    /* Eager refresh: a hit after this percent (1..99) of the entry's L2
     * TTL has passed starts one background reload of the key (one at a
     * time per key and instance), stored only if no write happened since.
     * With `coordinate` also one across instances: the refresh takes the
     * key's lock below; an instance that finds it held skips the refresh
     * and keeps serving. 0 = off. */
    uint32_t eager_refresh_pct;
    /* Stampede control across instances (TC_YES): a miss first takes a
     * lock in Redis (SET NX PX lock_ms); the instance that gets it loads,
     * the others poll L2 for its value (2 ms doubling to 50 ms) and take
     * the lock themselves once it is released or has expired, so a
     * crashed holder delays them by at most lock_ms. An eager refresh
     * takes the same lock (README "Eager refresh"). */
    int coordinate;
    uint32_t lock_ms;         /* the lock's lease; default 5000 */
    uint32_t reserved_u32_;   /* must be zero */
    uint64_t reserved_[4];    /* must be zero; room for later settings */
} tc_load_options;

/**
 * tc_get_or_load() with per-call options (`o` may be NULL: all off) and a
 * loader that may choose its TTLs. Returns TC_OK with *out set; TC_STALE
 * with *out set to a fail-safe copy; TC_NOT_FOUND (possibly cached, see
 * negative_ttl_ms); TC_LOADER_TIMEOUT; or the loader's or Redis's failure.
 * *out is the caller's to release on TC_OK and TC_STALE, else NULL.
 * `key` is borrowed for the call (copied for background work); `userdata`
 * see tc_loader_ex_fn. Background work runs on at most 8 threads owned by
 * the cache; beyond 1024 queued jobs a timed load runs on the caller's
 * thread without its timeouts, and an eager refresh is skipped.
 */
TC_EXTERN tc_result tc_get_or_load_ex(tc_cache *c, const void *key,
                                      size_t klen, tc_loader_ex_fn loader,
                                      void *userdata,
                                      const tc_load_options *o,
                                      tc_value **out);

/* ------------------------------------------------------------------------ */
/* Warming (README, "Warming")                                               */
/* ------------------------------------------------------------------------ */

/** Progress of tc_set_many()/tc_warm(): called on the calling thread after
 *  each batch, with `done` of `total` keys handled so far. */
typedef void (*tc_progress_fn)(void *userdata, size_t done, size_t total);

/**
 * Store `n` keys (keys/klens, vals/vlens: borrowed) in L2 with `ttl_ms`
 * (0 = default, TC_TTL_NONE = none), `batch` keys per round trip (0 = 500,
 * at most 100,000): each batch is one MULTI with one invalidation message
 * carrying all its keys, and in strict mode waits once for every live
 * instance's acknowledgement. The caller's own L1 drops its copies (reads
 * fill it later, so warming does not evict what is hot). Every key and
 * value is checked before anything is sent. On a failure the batches
 * already reported through `progress` (may be NULL) are stored; the failing
 * batch may or may not be. On Redis Cluster a batch is one MULTI per slot
 * of its keys (atomic per slot; a failure leaves the slots before it
 * written): README, "Redis Cluster". Thread-safe.
 */
TC_EXTERN tc_result tc_set_many(tc_cache *c, size_t n,
                                const void *const *keys, const size_t *klens,
                                const void *const *vals, const size_t *vlens,
                                uint64_t ttl_ms, size_t batch,
                                tc_progress_fn progress, void *userdata);

/**
 * Warm from a key list: call `loader` (as for tc_get_or_load(); it returns
 * a malloc'd value the library frees) for each key, and store the values
 * found in batches as tc_set_many() does. TC_NOT_FOUND from the loader
 * skips the key; any other failure stops warming and is returned (earlier
 * batches stay stored). `progress` counts keys handled, stored or skipped.
 * The loader runs on the calling thread. Thread-safe.
 */
TC_EXTERN tc_result tc_warm(tc_cache *c, size_t n, const void *const *keys,
                            const size_t *klens, tc_loader_fn loader,
                            void *loader_userdata, uint64_t ttl_ms,
                            size_t batch, tc_progress_fn progress,
                            void *userdata);

/* ------------------------------------------------------------------------ */
/* Any Redis command, L1 kept coherent                                       */
/* ------------------------------------------------------------------------ */

/** A Redis reply, opaque. Caller-owned when returned by tc_command() or
 *  tc_command_multi() (free with tc_reply_free()); the elements of an array
 *  are borrowed from it. Immutable: readable from any thread. */
typedef struct tc_reply tc_reply;

/** What a reply is. Numbers are fixed. */
typedef enum tc_reply_kind {
    TC_REPLY_STRING = 1,  /* bulk string: tc_reply_str/len */
    TC_REPLY_ARRAY = 2,   /* tc_reply_elements/element */
    TC_REPLY_INTEGER = 3, /* tc_reply_integer */
    TC_REPLY_NIL = 4,
    TC_REPLY_STATUS = 5,  /* "+OK": tc_reply_str/len */
    TC_REPLY_ERROR = 6    /* "-ERR ...": tc_reply_str/len, code included */
} tc_reply_kind;

/**
 * Run any Redis command (argv[0] is its name; arguments binary-safe,
 * borrowed) and keep every instance's L1 coherent with what it wrote.
 *
 * Which arguments are keys and which of them the command writes come from
 * Redis's own `COMMAND` key specifications, read once on first use. A
 * command that writes runs in one MULTI with its keys' invalidation (and in
 * strict mode waits as tc_set() does); a read goes straight to Redis. A
 * write whose keys cannot be named invalidates every L1: FLUSHDB, FLUSHALL,
 * SWAPDB (write commands without keys), SORT (Redis marks its STORE key
 * spec "unknown"), MIGRATE and other INCOMPLETE specs, EVAL/EVALSHA/FCALL
 * declaring no key (with keys, the declared ones are invalidated: a script
 * must declare the keys it writes), commands `COMMAND` did not list (module
 * commands loaded later; invalidated after they ran). Blocking commands
 * (flag `blocking`: BLPOP, XREAD, WAIT, ...) run on a connection of their
 * own without the command timeout, their keys invalidated after they ran.
 *
 * The key prefix is applied to every key argument, reads included, so
 * tc_get(k) and tc_command("INCR", k) name the same L2 key; replies are
 * returned as Redis gave them (KEYS and SCAN list prefixed names, and their
 * patterns are not prefixed).
 *
 * Commands that change their connection's state (SELECT, AUTH, HELLO, QUIT,
 * RESET, MULTI, EXEC, DISCARD, WATCH, UNWATCH, (P|S)SUBSCRIBE and their
 * UNSUBSCRIBE, MONITOR, SYNC, PSYNC, REPLCONF, READONLY, READWRITE, CLIENT
 * SETNAME/SETINFO/REPLY/TRACKING/CACHING/NO-EVICT/NO-TOUCH) are refused
 * with TC_BAD_ARGUMENT: the library's connections are shared (run them on
 * a tc_session, below).
 *
 * Returns TC_OK whenever Redis answered, an error reply included
 * (*out is then a TC_REPLY_ERROR with Redis's text); TC_L2_UNAVAILABLE or
 * TC_TIMEOUT when it did not (a write may or may not have happened, and
 * this instance's L1 then holds no copy of its keys).
 */
TC_EXTERN tc_result tc_command(tc_cache *c, int argc, const char *const *argv,
                               const size_t *argvlen, tc_reply **out);

/**
 * A transaction: the `n` commands (argcs[i], argvs[i], argvlens[i]) in one
 * MULTI/EXEC on one connection, with one invalidation of every key any of
 * them writes, published in the same EXEC. *out is what Redis answered
 * EXEC: an array of the `n` replies, or an error (EXECABORT when Redis
 * refused a command while queueing it; nothing ran then). Same rules as
 * tc_command() otherwise; nothing blocks inside a transaction.
 */
TC_EXTERN tc_result tc_command_multi(tc_cache *c, size_t n, const int *argcs,
                                     const char *const *const *argvs,
                                     const size_t *const *argvlens,
                                     tc_reply **out);

/**
 * The checks Redis makes when it queues a command inside MULTI, from the
 * same `COMMAND` table: TC_OK when it would queue it, TC_NOT_FOUND for an
 * unknown command, TC_BAD_ARGUMENT for a wrong number of arguments or an
 * unknown subcommand, with Redis's exact error text in tc_errmsg().
 */
TC_EXTERN tc_result tc_command_check(tc_cache *c, int argc,
                                     const char *const *argv,
                                     const size_t *argvlen);

TC_EXTERN tc_reply_kind tc_reply_type(const tc_reply *r); /* NULL: NIL */
/** Bytes of a string, status or error (borrowed; NUL-terminated), else
 *  NULL. */
TC_EXTERN const char *tc_reply_str(const tc_reply *r);
TC_EXTERN size_t tc_reply_len(const tc_reply *r);
TC_EXTERN long long tc_reply_integer(const tc_reply *r);
/** 1 when a TC_REPLY_NIL came as Redis's nil array (`*-1`: EXEC that a
 *  WATCH aborted, a blocking command's timeout, LPOP key count on a missing
 *  key, ...), 0 for a nil bulk (`$-1`) or any other reply. */
TC_EXTERN int tc_reply_is_nil_array(const tc_reply *r);
TC_EXTERN size_t tc_reply_elements(const tc_reply *r);
/** Element i of an array (borrowed from `r`), or NULL. */
TC_EXTERN const tc_reply *tc_reply_element(const tc_reply *r, size_t i);
/** Free a reply returned by tc_command*(). NULL is a no-op. */
TC_EXTERN void tc_reply_free(tc_reply *r);

/** 1 when Redis flags the command `blocking` (BLPOP, BZPOPMIN, BLMOVE,
 *  XREAD, XREADGROUP, WAIT, ...): it may wait for data. 0 otherwise, or
 *  when the command table cannot be read. Any thread. */
TC_EXTERN int tc_command_is_blocking(tc_cache *c, int argc,
                                     const char *const *argv,
                                     const size_t *argvlen);

/* ------------------------------------------------------------------------ */
/* Asynchronous, pipelined calls on an event loop                            */
/* ------------------------------------------------------------------------ */

/**
 * Reads and writes sent without waiting, over pipelined Redis connections
 * driven by the caller's libev loop, with the guarantees of their blocking
 * twins: tc_async_get() fills L1 only if no invalidation of the key was
 * applied since the read was sent; tc_async_set() and tc_async_command()
 * publish a write's invalidation in the write's own MULTI/EXEC. Requests
 * on one `lane` (any number; taken modulo the lanes opened) share one
 * connection: Redis runs them, and their callbacks run, in the order they
 * were submitted. What must wait (strict writes, blocking commands,
 * commands Redis's COMMAND did not list, connection-state commands) is
 * refused: run it with the blocking call.
 *
 * A submission returns TC_OK and its callback runs exactly once, later,
 * on the loop's thread (never within the submitting call); or it fails
 * and nothing was sent (the callback never runs): TC_BAD_ARGUMENT (use the
 * blocking call), TC_L2_UNAVAILABLE (no connection now; reconnects are
 * tried at most every 200 ms and never while the L2 breaker is open),
 * TC_TOO_LARGE, TC_NO_MEMORY. A connection that fails, or leaves its
 * oldest request unanswered past the command timeout, answers every
 * request on it with TC_L2_UNAVAILABLE or TC_TIMEOUT, in order (a write
 * may or may not have happened; L1 then holds no copy of its keys).
 * tc_errmsg() holds the detail during a failing callback.
 *
 * A (re)connect blocks the submitting call up to the connect timeout.
 * Not with sentinels (tc_async_open() refuses).
 *
 * On Redis Cluster a lane is a connection per master, each request sent
 * to the master of its keys' slot: the order above holds for the
 * requests of one lane and one slot (a slot's requests follow those in
 * flight onto the same connection even while the slot moves); callbacks
 * of different masters' requests come in the order their masters answer.
 * Refused there (use the blocking call): keys of several slots or of
 * none, NX/XX. A request answered with MOVED, ASK, TRYAGAIN or
 * CLUSTERDOWN (a write's MULTI is then refused whole) runs again through
 * its blocking twin, from the callback's place in the lane's order, which
 * blocks the loop for that call; so does a read whose connection failed
 * or timed out (a write that may have run is answered with the failure).
 *
 * Thread safety: a tc_async, its calls and its callbacks belong to the
 * loop's thread. The cache must outlive it.
 */
typedef struct tc_async tc_async;

/** A write's or command's outcome. r as the blocking call's; `reply`
 *  (caller's, tc_reply_free(); NULL unless r is TC_OK) is Redis's reply to
 *  the command (tc_async_command), NULL for tc_async_set. */
typedef void (*tc_async_fn)(void *userdata, tc_result r, tc_reply *reply);
/** A read's outcome: r and `v` (caller's reference) as tc_get()'s. When
 *  Redis answered the GET with an error (WRONGTYPE), r is TC_PROTOCOL and
 *  `error` (borrowed for the call) is that reply; else NULL. */
typedef void (*tc_async_get_fn)(void *userdata, tc_result r, tc_value *v,
                                const tc_reply *error);

/** Open `lanes` lanes on `ev_loop` (a libev `struct ev_loop *`, borrowed;
 *  it must outlive the handle). Connections are made on first use. *out
 *  is the caller's, freed with tc_async_close(). */
TC_EXTERN tc_result tc_async_open(tc_cache *c, void *ev_loop, unsigned lanes,
                                  tc_async **out);
/** Answer every request still in flight with TC_L2_UNAVAILABLE (their
 *  callbacks run now), close the connections and free. Not from within
 *  one of its callbacks. NULL is a no-op. */
TC_EXTERN void tc_async_close(tc_async *a);
/** Requests submitted whose callbacks have not run yet. */
TC_EXTERN size_t tc_async_pending(const tc_async *a);
/** tc_get() without its L1 lookup (the caller has looked): GET and PTTL
 *  from Redis, L1 filled as tc_get() fills it. `key` is copied. */
TC_EXTERN tc_result tc_async_get(tc_async *a, unsigned lane, const void *key,
                                 size_t klen, tc_async_get_fn cb,
                                 void *userdata);
/** tc_set_ex() (key and value copied); strict writes refused. The SETs
 *  without NX/XX submitted on a lane within one loop iteration are sent
 *  as one MULTI/EXEC with one invalidation message naming every key. */
TC_EXTERN tc_result tc_async_set(tc_async *a, unsigned lane, const void *key,
                                 size_t klen, const void *val, size_t vlen,
                                 const tc_set_opts *o, tc_async_fn cb,
                                 void *userdata);
/** tc_command() (arguments copied); see above for what is refused, and
 *  also COMMAND, XINFO, FUNCTION, MODULE, MEMORY, CLUSTER, LATENCY and
 *  SLOWLOG, whose replies may nest deeper than the reply reader takes
 *  (which would fail the connection and every request on it). The
 *  command table must have been read already (by any tc_command*() or
 *  tc_command_check() call), since reading it blocks. */
TC_EXTERN tc_result tc_async_command(tc_async *a, unsigned lane, int argc,
                                     const char *const *argv,
                                     const size_t *argvlen, tc_async_fn cb,
                                     void *userdata);

/** tc_command_multi() (arguments copied): the `n` commands in one
 *  MULTI/EXEC with one invalidation of every key written, published in
 *  the same EXEC; `reply` is what Redis answered EXEC. Refused as
 *  tc_async_command() refuses, except that blocking commands are taken
 *  (nothing blocks inside MULTI); also a command COMMAND did not list. */
TC_EXTERN tc_result tc_async_multi(tc_async *a, unsigned lane, size_t n,
                                   const int *argcs,
                                   const char *const *const *argvs,
                                   const size_t *const *argvlens,
                                   tc_async_fn cb, void *userdata);

/* ------------------------------------------------------------------------ */
/* Sessions: a Redis connection of the caller's own                          */
/* ------------------------------------------------------------------------ */

/**
 * A Redis connection owned by one caller, for what needs one: WATCH,
 * SELECT of another database, blocking commands (no command timeout),
 * pub/sub and MONITOR. Commands run on it as tc_command() would run them
 * (key prefix, and every write in the cache's own database invalidates
 * every instance's L1: in the same MULTI/EXEC as the write; between a
 * WATCH and its EXEC, in one script with the write, which leaves the WATCH
 * as the plain command would; after blocking commands, for commands Redis
 * refuses in scripts and for writes of over ~3,000 keys, right after it), and the
 * commands tc_command() refuses (SELECT, WATCH, SUBSCRIBE, ...) run on it
 * as on Redis. While SELECT has chosen another database, nothing is
 * invalidated: L1 holds the cache's database only.
 *
 * Thread safety: a tc_session is not thread-safe; one thread at a time
 * uses it. tc_session_fd() and tc_session_interrupt() may be called from
 * another thread while one uses it (the caller keeps the session alive).
 */
typedef struct tc_session tc_session;

/** Connect (AUTH, SELECT of the cache's database). *out is the caller's,
 *  closed with tc_session_close(). TC_L2_UNAVAILABLE, TC_TIMEOUT, TC_AUTH,
 *  TC_NO_MEMORY on failure. */
TC_EXTERN tc_result tc_session_open(tc_cache *c, tc_session **out);
/** On Redis Cluster, a session on node `host`:`port` (borrowed), a master
 *  or a replica the cluster lists (CLUSTER NODES), which it never leaves:
 *  a command for another node's slots is refused (CROSSSLOT), as once a
 *  tc_session holds state. For what only that node can give, such as its
 *  own pub/sub stream (tiercached's shared subscriptions per node). As
 *  tc_session_open() otherwise; TC_BAD_ARGUMENT when the cache is not on
 *  a cluster or `host`:`port` is not one of its nodes. */
TC_EXTERN tc_result tc_session_open_node(tc_cache *c, const char *host,
                                         int port, tc_session **out);
/** Close and free. NULL is a no-op. */
TC_EXTERN void tc_session_close(tc_session *s);
/** Run one command and read its reply, waiting as long as Redis takes.
 *  *out (caller's, tc_reply_free()) is Redis's reply, errors included;
 *  after a failure (TC_L2_UNAVAILABLE, ...) the session is broken: close
 *  it. */
TC_EXTERN tc_result tc_session_command(tc_session *s, int argc,
                                       const char *const *argv,
                                       const size_t *argvlen, tc_reply **out);
/** The `n` commands (n may be 0) in one MULTI/EXEC on the session, so
 *  that its WATCH holds; with their invalidation published in the same
 *  EXEC (of what may run in the cache's database: a SELECT among them
 *  moves the rest, and the session, as in Redis). *out is EXEC's reply:
 *  the replies, an error (EXECABORT), or NULL (nil) when a watched key
 *  changed. */
TC_EXTERN tc_result tc_session_multi(tc_session *s, size_t n,
                                     const int *argcs,
                                     const char *const *const *argvs,
                                     const size_t *const *argvlens,
                                     tc_reply **out);
/** Send a command without reading its reply (pub/sub mode, MONITOR: the
 *  replies come as messages, read with tc_session_read()). */
TC_EXTERN tc_result tc_session_send(tc_session *s, int argc,
                                    const char *const *argv,
                                    const size_t *argvlen);
/** The next message from Redis: waits up to `timeout_ms` (0: only what has
 *  arrived; -1: no limit). TC_TIMEOUT when none came (the session is still
 *  good); other failures break it. *out as tc_session_command(). */
TC_EXTERN tc_result tc_session_read(tc_session *s, int timeout_ms,
                                    tc_reply **out);
/** The session's socket (readable when a message may be waiting), for
 *  poll(). */
TC_EXTERN int tc_session_fd(const tc_session *s);
/** Make a call blocked on the session (a BLPOP with no timeout) return
 *  with TC_L2_UNAVAILABLE; the session is then broken. Any thread. */
TC_EXTERN void tc_session_interrupt(tc_session *s);

/* ------------------------------------------------------------------------ */
/* Invalidation by pattern (see README for the message format)               */
/* ------------------------------------------------------------------------ */

/** Delete every L2 key starting with `prefix` (SCAN, batched) and drop them
 *  from every instance's L1. */
TC_EXTERN tc_result tc_invalidate_prefix(tc_cache *c, const void *prefix,
                                         size_t plen);
/** Same for a Redis glob pattern (`user:*`). */
TC_EXTERN tc_result tc_invalidate_pattern(tc_cache *c, const char *glob);
/** Drop every instance's whole L1 (L2 is left as it is). */
TC_EXTERN tc_result tc_invalidate_all(tc_cache *c);

/* ------------------------------------------------------------------------ */
/* Tags                                                                      */
/* ------------------------------------------------------------------------ */

/**
 * tc_set_ex(), also recording the key under each of `ntags` tags
 * (NUL-terminated, non-empty, at most max_key_bytes each, at most 64),
 * atomically with the write: a tag that cannot be recorded stores nothing.
 * Not with TC_SET_NX/TC_SET_XX (TC_BAD_ARGUMENT). Reading a tagged key
 * costs nothing more. On Redis Cluster not atomic: the tags are recorded
 * before the write and again after it (a failure of the second returns it
 * with the key written); README, "Redis Cluster". Thread-safe; arguments
 * are borrowed for the call.
 */
TC_EXTERN tc_result tc_set_tagged(tc_cache *c, const void *key, size_t klen,
                                  const void *val, size_t vlen,
                                  const tc_set_opts *o, size_t ntags,
                                  const char *const *tags);

/**
 * Delete every key recorded under any of `ntags` tags from L2 and from
 * every instance's L1, in batches of 1,000 keys: each batch is one atomic
 * step with one invalidation message (strict mode waits per batch as
 * tc_mdel() does; on Redis Cluster one step per slot of the batch's keys).
 * Keys tagged while this runs may or may not be deleted.
 * `deleted` (may be NULL) receives how many existed in L2. After a
 * failure, what was not reached is picked up by the next call for the
 * tag. Thread-safe; arguments are borrowed for the call.
 */
TC_EXTERN tc_result tc_invalidate_tags(tc_cache *c, size_t ntags,
                                       const char *const *tags,
                                       uint64_t *deleted);
/* Rate limiting (README, "Rate limiting")                                   */
/* ------------------------------------------------------------------------ */

/** How a limit counts. Numbers are fixed. */
typedef enum tc_rate_algo {
    TC_RATE_SLIDING = 0, /* exact sliding window: at most `limit` requests
                            in any `window_ms`; L2 keeps one sorted-set
                            entry per allowed request (memory ~ limit) */
    TC_RATE_FIXED = 1    /* fixed window starting at the first request:
                            one counter (INCR + PEXPIRE); up to 2 x limit
                            across a window boundary */
} tc_rate_algo;

/** Largest `limit` tc_rate_limit() takes (the sliding log keeps one entry
 *  per allowed request). */
#define TC_RATE_LIMIT_MAX 1000000U

/** Outcome of one rate-limit check; caller-allocated, filled whole by the
 *  library (reserved words zeroed). Plain data. */
typedef struct tc_rate_result {
    int allowed;         /* 1: the request counts and may proceed */
    int fallback;        /* 1: decided by this process's local limiter,
                            because Redis was down (or the cache disabled);
                            the limit then holds per process, not in total */
    uint64_t remaining;  /* requests still allowed now, after this one */
    uint64_t reset_ms;   /* ms until a slot frees up (sliding: the oldest
                            counted request leaves the window; fixed: the
                            window ends); 0 when nothing is counted */
    uint64_t reserved_[2];
} tc_rate_result;

/**
 * Count one request against the limit named `key` (borrowed, binary-safe;
 * stored in L2 as <key_prefix>__tiercache:rl:<key>, or :rlf: for
 * TC_RATE_FIXED) and say whether it is allowed: at most `limit` requests
 * (1..TC_RATE_LIMIT_MAX) per `window_ms` (1..TC_TTL_MAX_MS) across every
 * instance sharing the Redis, decided atomically in one round trip on
 * Redis's clock. A denied request is not counted.
 *
 * While Redis is down (TC_L2_UNAVAILABLE or TC_TIMEOUT from L2) the call
 * still returns TC_OK, decided by a per-process limiter (out->fallback = 1):
 * bounded memory (4096 limits; a stream of new keys evicts the least
 * recently used, which then start afresh), thread-safe. Once Redis answers
 * again it decides again (its own counts, which did not see the outage's
 * requests). Returns TC_BAD_ARGUMENT or TC_TOO_LARGE for bad arguments and
 * TC_PROTOCOL when Redis answered with an error (e.g. the key holds another
 * type). Thread-safe.
 */
TC_EXTERN tc_result tc_rate_limit_ex(tc_cache *c, const void *key,
                                     size_t klen, uint64_t limit,
                                     uint64_t window_ms, tc_rate_algo algo,
                                     tc_rate_result *out);

/** tc_rate_limit_ex() with TC_RATE_SLIDING. */
TC_EXTERN tc_result tc_rate_limit(tc_cache *c, const void *key, size_t klen,
                                  uint64_t limit, uint64_t window_ms,
                                  tc_rate_result *out);

/* ------------------------------------------------------------------------ */
/* Stats and health                                                          */
/* ------------------------------------------------------------------------ */

/**
 * A snapshot of counters since create. Plain data, caller-owned; filled
 * whole by tc_cache_stats(). It ends with `reserved_` (zero in this
 * version) so that later counters take reserved words instead of growing
 * the struct: a program built against this header never has a later
 * library write past its tc_stats. Reserved words, not a size member,
 * because a snapshot is written by the library alone and a caller should
 * not have to prepare one.
 */
typedef struct tc_stats {
    uint64_t l1_hits, l1_misses;
    uint64_t l2_hits, l2_misses;
    uint64_t loader_calls;
    uint64_t l1_entries, l1_bytes;
    uint64_t l1_evictions, l1_expirations;
    uint64_t l2_errors, l2_timeouts, l2_reconnects;
    uint64_t l2_round_trips;     /* request/reply exchanges with Redis */
    uint64_t breaker_opens;      /* times the circuit breaker opened */
    uint64_t fills_skipped;      /* L1 fills refused: value may be stale */
    /* Coherence bus. */
    uint64_t inval_published, inval_received, inval_applied;
    uint64_t inval_malformed, inval_own_skipped;
    uint64_t bus_reconnects, bus_flushes;
    uint64_t strict_waits, strict_lease_expiries;
    uint64_t l1_bypassed;        /* reads that skipped L1: bus not proven */
    uint64_t l1_too_large;       /* values not kept in L1: larger than one
                                    L1 shard's budget (l1_max_bytes /
                                    l1_shards); served from L2 instead */
    /* Propagation lag (origin timestamp to apply), log2 buckets in us:
     * bucket i counts lags in [2^i, 2^(i+1)) us; bucket 0 also holds 0. */
    uint64_t lag_us_hist[24];
    /* Rate limiting (two of the fifteen reserved words). */
    uint64_t rate_fallbacks;     /* tc_rate_limit() calls decided locally */
    uint64_t rate_local_evictions; /* local limits evicted for others */
    /* Compression (two more). */
    uint64_t values_compressed;  /* values stored zstd-compressed */
    uint64_t values_decompressed; /* compressed values read from L2 */
    /* Read-through resilience (tc_get_or_load_ex); five words taken from
     * the reserved ones, so the struct keeps its size. */
    uint64_t stale_served;       /* TC_STALE answers (fail-safe copies) */
    uint64_t loader_timeouts;    /* calls that gave up at a soft or hard
                                    timeout */
    uint64_t eager_refreshes;    /* background refreshes started */
    uint64_t negative_hits;      /* TC_NOT_FOUND answered from a cached
                                    negative */
    uint64_t lock_waits;         /* misses that found another instance's
                                    load lock and waited for its value */
    uint64_t reserved_[6];       /* zero; room for later counters */
} tc_stats;

TC_EXTERN void tc_cache_stats(tc_cache *c, tc_stats *out);

typedef struct tc_health {
    int l2_up;              /* 1 when PING succeeded */
    int breaker_open;       /* 1 while calls fail fast */
    int bus_up;             /* 1 when the bus proved itself within the lease,
                               or is idle (idle_after_ms) with its last
                               keepalive answered */
    uint64_t l2_latency_us; /* PING round trip, when l2_up */
} tc_health;

/** PING L2 (one round trip, bypassing the breaker) and report. Returns the
 *  PING's result; `out` is filled in every case. */
TC_EXTERN tc_result tc_cache_health(tc_cache *c, tc_health *out);

/** This instance's id as carried in invalidation messages (borrowed, lives
 *  as long as the cache). */
TC_EXTERN const char *tc_cache_instance_id(const tc_cache *c);
/** The Redis database the cache uses (the one L1 holds keys of). Any
 *  thread. */
TC_EXTERN int tc_cache_db(const tc_cache *c);

#ifdef __cplusplus
}
#endif
#endif /* TIERCACHE_H */
