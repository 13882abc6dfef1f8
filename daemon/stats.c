#include "stats.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static void addf(tcd_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void addf(tcd_buf *b, const char *fmt, ...)
{
    char tmp[512];
    int n;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        tcd_buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n
                                                     : sizeof(tmp) - 1);
}

/* INFO's view of L2 health: one PING a second at most, however often
 * INFO is asked (it was one round trip per INFO), and by one worker at a
 * time: while its PING is out (up to the command timeout when Redis
 * hangs), other INFOs answer with the last snapshot and its age instead of
 * queueing behind it; only the very first INFO waits for a first probe.
 * Shared by the workers that run INFO; health_mu protects the snapshot. */
static pthread_mutex_t health_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t health_cv = PTHREAD_COND_INITIALIZER; /* probed */
static tc_health health_last;  /* health_mu */
static int health_ok;          /* health_mu */
static long long health_at_ms; /* health_mu; 0 = never */
static int health_probing;     /* health_mu; a worker's PING is out */

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int healthy_cached(tcd_server *srv, tc_health *h, long long *age_ms)
{
    long long now = mono_ms();
    int ok;
    pthread_mutex_lock(&health_mu);
    if (!health_probing && (health_at_ms == 0 || now - health_at_ms >= 1000)) {
        tc_health fresh;
        health_probing = 1;
        pthread_mutex_unlock(&health_mu);
        ok = tcd_stats_healthy(srv, &fresh); /* no lock held: may block */
        pthread_mutex_lock(&health_mu);
        health_last = fresh;
        health_ok = ok;
        health_at_ms = mono_ms();
        health_probing = 0;
        pthread_cond_broadcast(&health_cv);
    }
    while (health_at_ms == 0) /* the first probe is still out */
        pthread_cond_wait(&health_cv, &health_mu);
    *h = health_last;
    ok = health_ok;
    now = mono_ms();
    *age_ms = now > health_at_ms ? now - health_at_ms : 0;
    pthread_mutex_unlock(&health_mu);
    return ok;
}

int tcd_stats_healthy(tcd_server *srv, tc_health *h)
{
    tc_result rc;
    memset(h, 0, sizeof(*h));
    rc = tc_cache_health(srv->cache, h);
    return rc == TC_OK && h->l2_up &&
           (h->bus_up || srv->cfg->opts.coherence == TC_COHERENCE_NONE);
}

/* The library's counters, named once for both outputs. */
#define TC_STATS_FIELDS(X)                                                   \
    X(l1_hits, counter, "reads answered from L1")                           \
    X(l1_misses, counter, "reads L1 could not answer")                      \
    X(l2_hits, counter, "L1 misses found in Redis")                         \
    X(l2_misses, counter, "L1 misses absent from Redis")                    \
    X(l1_entries, gauge, "entries in L1")                                   \
    X(l1_bytes, gauge, "bytes charged to L1")                               \
    X(l1_evictions, counter, "L1 entries evicted for space")                \
    X(l1_expirations, counter, "L1 entries expired")                        \
    X(l2_errors, counter, "failed Redis calls")                             \
    X(l2_timeouts, counter, "Redis calls that timed out")                   \
    X(l2_reconnects, counter, "Redis reconnections")                        \
    X(l2_round_trips, counter, "request/reply exchanges with Redis")        \
    X(breaker_opens, counter, "times the circuit breaker opened")           \
    X(fills_skipped, counter, "L1 fills refused as possibly stale")         \
    X(inval_published, counter, "invalidations published")                  \
    X(inval_received, counter, "invalidations received")                    \
    X(inval_applied, counter, "invalidations applied to L1")                \
    X(inval_malformed, counter, "malformed invalidation messages")          \
    X(inval_own_skipped, counter, "own invalidations skipped")              \
    X(bus_reconnects, counter, "bus reconnections")                         \
    X(bus_flushes, counter, "whole-L1 flushes after bus gaps")              \
    X(strict_waits, counter, "strict writes that waited for acks")          \
    X(strict_lease_expiries, counter, "strict writes ended by the lease")   \
    X(l1_bypassed, counter, "reads that skipped L1: bus not proven")        \
    X(rate_fallbacks, counter, "rate limits decided locally: Redis down")   \
    X(rate_local_evictions, counter, "local rate limits evicted")           \
    X(values_compressed, counter, "values stored zstd-compressed")          \
    X(values_decompressed, counter, "compressed values read from Redis")    \
    X(stale_served, counter, "fail-safe (TC_STALE) read-through answers")   \
    X(loader_timeouts, counter, "read-through calls ended by a timeout")    \
    X(eager_refreshes, counter, "background eager refreshes started")       \
    X(negative_hits, counter, "not-found answered from a cached negative")  \
    X(lock_waits, counter, "misses that waited for another's load lock")

#define DAEMON_FIELDS(X)                                                     \
    X(connections_received, counter, "connections accepted")                \
    X(connections_rejected, counter, "connections refused (max clients)")   \
    X(connected, gauge, "connected clients")                                \
    X(commands, counter, "commands processed")                              \
    X(commands_in_loop, counter, "commands answered on the event loop")     \
    X(commands_deferred, counter, "commands not answered at once")          \
    X(commands_pipelined, counter, "deferred commands pipelined to Redis")  \
    X(protocol_errors, counter, "connections closed for protocol errors")   \
    X(read_timeouts, counter, "connections closed stalled mid-request")     \
    X(commands_rejected, counter, "unknown, unauthenticated, bad arity")   \
    X(output_pauses, counter, "clients paused for unsent replies")        \
    X(requests_too_big, counter, "requests refused over a size limit")    \
    X(net_input_bytes, counter, "bytes read from clients")                  \
    X(net_output_bytes, counter, "bytes written to clients")               \
    X(pinned, gauge, "clients with a Redis connection of their own")      \
    X(pinned_total, counter, "clients given a Redis connection of their own") \
    X(pinned_refused, counter, "pinning refused over --max-pinned")       \
    X(pubsub_messages, counter, "messages on the shared subscriber connection") \
    X(pubsub_deliveries, counter, "shared messages copied to local subscribers") \
    X(pubsub_slow_closed, counter, "subscribers closed over --max-output") \
    X(pubsub_upstream_lost, counter, "shared subscriber connection failures")

static int want(const tcd_req *r, const char *section, int is_default)
{
    if (!r || r->argc < 2)
        return is_default;
    for (int i = 1; i < r->argc; i++) {
        if (!strcasecmp(r->argv[i], section) ||
            !strcasecmp(r->argv[i], "all") ||
            !strcasecmp(r->argv[i], "everything") ||
            (is_default && !strcasecmp(r->argv[i], "default")))
            return 1;
    }
    return 0;
}

/* "# Tiercache": the library's counters and health, then the daemon's
 * counters (tiercached_*), then a blank line. */
static void tiercache_section(tcd_server *srv, const tc_stats *st, tcd_buf *b)
{
    tc_health h;
    long long age_ms;
    int ok = healthy_cached(srv, &h, &age_ms);
    static const char *coh[] = {"async", "strict", "none"};
    unsigned ci = (unsigned)srv->cfg->opts.coherence;
    addf(b, "# Tiercache\r\n");
#define X(name, kind, help) \
    addf(b, "%s:%llu\r\n", #name, (unsigned long long)st->name);
    TC_STATS_FIELDS(X)
#undef X
    addf(b, "coherence:%s\r\ntracking:%d\r\nl2_up:%d\r\nbus_up:%d\r\n"
            "breaker_open:%d\r\nl2_latency_us:%llu\r\nhealthy:%d\r\n"
            "health_age_ms:%lld\r\n",
         ci < 3 ? coh[ci] : "?", srv->cfg->opts.tracking == TC_YES,
         h.l2_up, h.bus_up, h.breaker_open,
         (unsigned long long)h.l2_latency_us, ok, age_ms);
    /* The invalidation lag histogram (tc_stats.lag_us_hist: bucket i
     * counts lags in [2^i, 2^(i+1)) us), for rates over an interval. */
    addf(b, "inval_lag_us_hist:");
    for (int i = 0; i < 24; i++)
        addf(b, "%s%llu", i ? "," : "", (unsigned long long)st->lag_us_hist[i]);
    addf(b, "\r\n\r\n");
}

/* "# Tiercached": the daemon's own counters (no Redis, no health PING). */
static void tiercached_section(tcd_server *srv, tcd_buf *b)
{
    addf(b, "# Tiercached\r\n");
#define X(name, kind, help) \
    addf(b, "tiercached_%s:%llu\r\n", #name,                                \
         (unsigned long long)TCD_READ(srv, name));
    DAEMON_FIELDS(X)
#undef X
    addf(b, "\r\n");
}

void tcd_stats_info_redis(tcd_server *srv, const tcd_req *req,
                          const char *text, size_t len, tcd_buf *out)
{
    tcd_buf b = {0};
    tc_stats st;
    tcd_buf_add(&b, text, len);
    /* Redis ends its last section with one CRLF: a blank line first. */
    if (len >= 2 && !memcmp(text + len - 2, "\r\n", 2) &&
        (want(req, "tiercache", 1) || want(req, "tiercached", 1)))
        tcd_buf_add(&b, "\r\n", 2);
    if (want(req, "tiercache", 1)) {
        tc_cache_stats(srv->cache, &st);
        tiercache_section(srv, &st, &b);
    }
    if (want(req, "tiercached", 1))
        tiercached_section(srv, &b);
    if (b.oom)
        tcd_reply_error(out, "ERR out of memory");
    else
        tcd_reply_bulk(out, b.p ? b.p + b.off : "", tcd_buf_pending(&b));
    tcd_buf_free(&b);
}

void tcd_stats_info(tcd_server *srv, const tcd_req *req, tcd_buf *out)
{
    tcd_buf b = {0};
    tc_stats st;
    long now = (long)time(NULL);
    tc_cache_stats(srv->cache, &st);
    if (want(req, "server", 1)) {
        struct utsname u;
        if (uname(&u) != 0)
            memset(&u, 0, sizeof(u));
        addf(&b, "# Server\r\nredis_version:%s\r\ntiercache_version:%d.%d.%d\r\n"
                 "redis_mode:standalone\r\nos:%s %s %s\r\narch_bits:%d\r\n"
                 "multiplexing_api:libev\r\nprocess_id:%ld\r\n"
                 "tcp_port:%d\r\nuptime_in_seconds:%ld\r\n"
                 "tiercache_instance_id:%s\r\n\r\n",
             TCD_REDIS_COMPAT_VERSION, TC_VERSION_MAJOR, TC_VERSION_MINOR,
             TC_VERSION_PATCH, u.sysname, u.release, u.machine,
             (int)(sizeof(void *) * 8), (long)getpid(), srv->cfg->port,
             now - (long)srv->started_at,
             tc_cache_instance_id(srv->cache));
    }
    if (want(req, "clients", 1))
        addf(&b, "# Clients\r\nconnected_clients:%llu\r\nmaxclients:%u\r\n"
                 "blocked_clients:0\r\n\r\n",
             (unsigned long long)TCD_READ(srv, connected),
             srv->cfg->max_clients);
    if (want(req, "persistence", 1))
        addf(&b, "# Persistence\r\nloading:0\r\n\r\n");
    if (want(req, "stats", 1)) {
        addf(&b, "# Stats\r\n");
#define X(name, kind, help) \
        addf(&b, "%s:%llu\r\n", #name, (unsigned long long)TCD_READ(srv, name));
        DAEMON_FIELDS(X)
#undef X
        addf(&b, "keyspace_hits:%llu\r\nkeyspace_misses:%llu\r\n\r\n",
             (unsigned long long)(st.l1_hits + st.l2_hits),
             (unsigned long long)st.l2_misses);
    }
    if (want(req, "tiercache", 1))
        tiercache_section(srv, &st, &b);
    if (want(req, "tiercached", 1))
        tiercached_section(srv, &b);
    if (want(req, "keyspace", 1))
        addf(&b, "# Keyspace\r\n");
    if (b.oom)
        tcd_reply_error(out, "ERR out of memory");
    else
        tcd_reply_bulk(out, b.p ? b.p + b.off : "", tcd_buf_pending(&b));
    tcd_buf_free(&b);
}

void tcd_stats_metrics(tcd_server *srv, tcd_buf *b)
{
    tc_stats st;
    tc_health h;
    int ok = tcd_stats_healthy(srv, &h);
    uint64_t cum = 0;
    double sum = 0;
    tc_cache_stats(srv->cache, &st);
#define X(name, kind, help)                                                  \
    addf(b, "# HELP tiercache_%s%s %s\n# TYPE tiercache_%s%s %s\n"          \
            "tiercache_%s%s %llu\n",                                         \
         #name, #kind[0] == 'c' ? "_total" : "", help, #name,                \
         #kind[0] == 'c' ? "_total" : "", #kind, #name,                      \
         #kind[0] == 'c' ? "_total" : "", (unsigned long long)st.name);
    TC_STATS_FIELDS(X)
#undef X
#define X(name, kind, help)                                                  \
    addf(b, "# HELP tiercached_%s%s %s\n# TYPE tiercached_%s%s %s\n"        \
            "tiercached_%s%s %llu\n",                                        \
         #name, #kind[0] == 'c' ? "_total" : "", help, #name,                \
         #kind[0] == 'c' ? "_total" : "", #kind, #name,                      \
         #kind[0] == 'c' ? "_total" : "",                                    \
         (unsigned long long)TCD_READ(srv, name));
    DAEMON_FIELDS(X)
#undef X
    addf(b, "# HELP tiercache_l2_up 1 when Redis answered PING\n"
            "# TYPE tiercache_l2_up gauge\ntiercache_l2_up %d\n"
            "# HELP tiercache_bus_up 1 when the invalidation bus is alive\n"
            "# TYPE tiercache_bus_up gauge\ntiercache_bus_up %d\n"
            "# HELP tiercache_breaker_open 1 while calls to Redis fail fast\n"
            "# TYPE tiercache_breaker_open gauge\ntiercache_breaker_open %d\n"
            "# HELP tiercache_healthy 1 when /health answers 200\n"
            "# TYPE tiercache_healthy gauge\ntiercache_healthy %d\n"
            "# HELP tiercache_l2_latency_seconds PING round trip\n"
            "# TYPE tiercache_l2_latency_seconds gauge\n"
            "tiercache_l2_latency_seconds %.6f\n",
         h.l2_up, h.bus_up, h.breaker_open, ok, (double)h.l2_latency_us / 1e6);
    addf(b, "# HELP tiercache_invalidation_lag_seconds origin-to-apply lag "
            "(_sum estimated from bucket midpoints)\n"
            "# TYPE tiercache_invalidation_lag_seconds histogram\n");
    for (int i = 0; i < 24; i++) {
        cum += st.lag_us_hist[i];
        sum += (double)st.lag_us_hist[i] * 1.5 * (double)(1ULL << i) / 1e6;
        addf(b, "tiercache_invalidation_lag_seconds_bucket{le=\"%.6f\"} %llu\n",
             (double)(1ULL << (i + 1)) / 1e6, (unsigned long long)cum);
    }
    addf(b, "tiercache_invalidation_lag_seconds_bucket{le=\"+Inf\"} %llu\n"
            "tiercache_invalidation_lag_seconds_sum %.6f\n"
            "tiercache_invalidation_lag_seconds_count %llu\n",
         (unsigned long long)cum, sum, (unsigned long long)cum);
}
