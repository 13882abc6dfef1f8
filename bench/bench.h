/*
 * tc-bench: shared pieces of the benchmark (issue 4). Each section lives in
 * its own file: latency.c (get latency and thread scaling), coherence.c
 * (cross-process invalidation and write modes), memory.c (bytes per entry),
 * hitratio.c (eviction policy against LRU), report.c (table, targets, JSON,
 * plot), anchors.c (the L1 against a flat table and liburcu's lock-free
 * table, and reader stalls). oa.c, lfht.c and lru.c are the baselines.
 *
 * Every section records its figures in one flat registry of named numbers
 * (res_num) which the table, the target check and --json all read.
 */
#ifndef TC_BENCH_H
#define TC_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "tiercache.h"

/* Every key the bench writes to Redis starts with this (the caches use it as
 * key_prefix, the raw hiredis baselines spell it out). */
#define BENCH_PREFIX "tcb:"
#define BENCH_PREFIX_LEN 4
/* Keys are 16 bytes, as in the memory target: "bs:0000000001234". */
#define BENCH_KEY_LEN 16
/* L1 and floor latencies are timed over batches of this many gets. */
#define BENCH_BATCH 64

typedef struct bench_cfg {
    int quick;            /* --quick: smoke mode, a few seconds */
    int use_unix;         /* --unix: talk to Redis over TC_BENCH_UNIX */
    unsigned threads;     /* --threads N: extra scaling point (0: none) */
    size_t keys;          /* key space of the latency and memory sections */
    size_t trials;        /* coherence trials per measurement */
    uint64_t seed;        /* PRNG seed of every key order and trace */
    const char *json_path;
    const char *plot_path;
    const char *only;     /* --only LIST: comma-separated section names */

    char url[600];        /* what the caches connect to */
    char raw_host[256];   /* what the raw hiredis baselines connect to */
    int raw_port;
    char raw_unix[512];
    char username[128];
    char password[256];
    int db;
    char transport[600]; /* human-readable, for the header */
} bench_cfg;

/* ---- time ---------------------------------------------------------------- */

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_us(unsigned us);
/* Human-readable duration with unit ("87 ns", "26.3 us", "1.20 ms"). */
const char *bench_fmt_ns(char *buf, size_t len, double ns);

/* ---- samples and percentiles -------------------------------------------- */

typedef struct samples {
    double *v;     /* ns */
    size_t n, cap;
    int sorted;
} samples;

void samples_add(samples *s, double ns);
/* pct in [0, 100]; nearest-rank; NAN when empty. Sorts in place. */
double samples_pct(samples *s, double pct);
/** Median of v[0..n) (n > 0); sorts v in place. */
double bench_median(double *v, size_t n);
double samples_sum(const samples *s);
void samples_free(samples *s);

/* ---- results registry ---------------------------------------------------- */

void res_num(const char *key, double v);
void res_str(const char *key, const char *v);
double res_get(const char *key); /* NAN when not recorded */
/* Write every recorded figure as one flat JSON object. 0 on success. */
int res_write_json(const char *path);
void res_free(void);

/* ---- deterministic PRNG (xoshiro256**) ------------------------------------ */

typedef struct bench_rng {
    uint64_t s[4];
} bench_rng;

void rng_seed(bench_rng *r, uint64_t seed);
uint64_t rng_next(bench_rng *r);
double rng_unit(bench_rng *r); /* [0, 1) */
/* A random permutation of 0..n-1 (malloc'd, caller frees); NULL on OOM. */
uint32_t *rng_perm(bench_rng *r, size_t n);

/* A Zipf(1.0) access order of `len` indices over 0..n-1, ranks shuffled
 * onto keys (malloc'd, caller frees); NULL on OOM. */
uint32_t *bench_zipf_order(bench_rng *r, size_t n, size_t len);

/* ---- keys, values, Redis ------------------------------------------------- */

/* Key number i of class `cls` (one letter) without the prefix; writes
 * exactly BENCH_KEY_LEN bytes plus a NUL. */
void bench_key(char out[BENCH_KEY_LEN + 1], char cls, size_t i);
/* Deterministic value bytes for key i: the index then filler. */
void bench_value(char *out, size_t vlen, size_t i);

/* Connect the raw hiredis baseline the way the caches connect (TCP or unix,
 * AUTH, SELECT). NULL on failure, with a message on stderr. */
redisContext *bench_redis_connect(const bench_cfg *cfg);

/* Store n keys of class `cls` with values of vlen bytes in L2 so that a cache
 * built with bench_cache_options() finds them. Pipelined raw SETs, checked
 * through tc_get; falls back to tc_set if the library's L2 layout differs.
 * 0 on success. */
int bench_l2_fill(const bench_cfg *cfg, char cls, size_t n, size_t vlen);
/* Delete what bench_l2_fill stored (pipelined DEL). */
void bench_l2_drop(const bench_cfg *cfg, char cls, size_t n);

/* Options every cache in the bench starts from: url from the command line
 * and environment, ignore_env, key prefix, long L1 TTL, errors logged to
 * stderr. */
void bench_cache_options(const bench_cfg *cfg, tc_options *o);
/* Create a cache and wait (up to 5 s) until its bus is up when coherence is
 * not TC_COHERENCE_NONE. NULL on failure, with a message on stderr. */
tc_cache *bench_cache_create(const tc_options *o);

/* Resident set size of this process in bytes (/proc/self/statm). */
size_t bench_rss_bytes(void);

/* A section could not produce its figures: tc-bench exits non-zero. */
void bench_fail(void);
int bench_failures(void);

/* Sink that keeps the compiler from dropping reads of value bytes. */
extern _Atomic unsigned bench_sink;

/* ---- sections ------------------------------------------------------------ */

void bench_memory(const bench_cfg *cfg);
void bench_latency(const bench_cfg *cfg);
void bench_scaling_section(const bench_cfg *cfg);
void bench_coherence(const bench_cfg *cfg);
void bench_hitratio(const bench_cfg *cfg);
void bench_anchors(const bench_cfg *cfg);
void bench_tags(const bench_cfg *cfg);
void bench_fleet(const bench_cfg *cfg);
/* Redis's own CPU seconds (user + sys) and commands processed, from INFO
 * on `rc`: 0, or -1 (both 0) when INFO failed. */
int bench_redis_usage(redisContext *rc, double *cpu_s, double *cmds);
/* A thread that reads and discards whatever arrives on the subscriber
 * connections added to it, counting the bytes, until stopped (fleet.c,
 * fleet_cluster.c, relay.c). Made as {.ep = epoll_create1(...)}; the
 * caller owns the fds it adds. */
typedef struct bench_drain {
    int ep;              /* the epoll set, or -1 */
    atomic_int stop;
    atomic_llong bytes;  /* read so far */
    pthread_t th;
    int started;
} bench_drain;
/* Make `fd` non-blocking and drain it: 0, or -1 with errno. */
int bench_drain_add(bench_drain *d, int fd);
/* Start the thread: 0, or -1. */
int bench_drain_start(bench_drain *d);
/* Stop the thread if it started and close the epoll set. */
void bench_drain_stop(bench_drain *d);
/* Fleet cost with instances behind relays (relay.c). */
void bench_relay(const bench_cfg *cfg);
/* A tiercached relay the bench started (relay.c, shared with
 * fleet_cluster.c's relay rows). */
typedef struct bench_relay_proc {
    pid_t pid;     /* 0 when not running */
    char sock[108];
} bench_relay_proc;
/* The tiercached binary: $TIERCACHED, else the one built with the bench;
 * NULL when neither. Thread-safe. */
const char *bench_tiercached_path(void);
/* `n` relays the bench started, their sockets in a temp dir of their own. */
typedef struct bench_relays {
    int n;
    char dir[64];
    bench_relay_proc r[]; /* r[i].sock: <dir>/r<i>.sock */
} bench_relays;
/* Start `n` relays against `url` (a redis:// or redis-cluster:// URL,
 * --coherence none) and wait (up to 5 s each) until each accepts. The
 * caller's, for bench_relays_stop(); NULL after saying why on stderr,
 * with nothing left running. */
bench_relays *bench_relays_start(const char *url, int n);
/* Stop the relays that run, remove their dir and free. NULL: no-op. */
void bench_relays_stop(bench_relays *rs);
/* A connected AF_UNIX stream socket to `path` (blocking, CLOEXEC), or -1.
 * The caller owns the fd. */
int bench_unix_connect(const char *path);
/* CPU seconds (user + sys) of process `pid` (/proc), 0 when unknown. */
double bench_proc_cpu_s(pid_t pid);
/* On a blocking connection to a relay: TC.RELAY <node> <port> (when `node`
 * is not NULL), then SUBSCRIBE <chan>; reads both replies. 0, or -1. */
int bench_relay_subscribe(int fd, const char *node, int port,
                          const char *chan);
/* Fleet cost on a throwaway 3-master Redis Cluster it starts, classic
 * and sharded pub/sub (fleet_cluster.c, cluster.c). */
void bench_fleet_cluster(const bench_cfg *cfg);
/* The same cluster's fleet behind real tiercached relays (fleet_cluster.c,
 * with relay.c's helpers). */
void bench_relay_cluster(const bench_cfg *cfg);
void bench_compress(const bench_cfg *cfg);
void bench_stampede(const bench_cfg *cfg); /* stampede.c (issue 11) */

/* ---- report -------------------------------------------------------------- */

void report_header(const bench_cfg *cfg);
/* Print the target table; returns how many targets were missed. */
int report_targets(const bench_cfg *cfg);
int report_plot(const bench_cfg *cfg, const char *path);

#endif
