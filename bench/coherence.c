/*
 * Section 3: invalidation between two processes.
 *
 * The peer is a fork()ed child, forked while the parent runs no thread. Both
 * sides talk over two pipes (not timed) and stamp times with CLOCK_MONOTONIC,
 * which all processes on one machine share, so t1 (peer) - t0 (writer) is a
 * one-way latency.
 *
 * The two measurements have the same shape, so that the apparatus costs
 * both the same:
 *   raw:       writer PUBLISHes; in the peer a subscriber thread (hiredis,
 *              blocking read) stores the sequence number in an atomic, and
 *              the peer's main thread spins on that atomic.
 *   tiercache: writer tc_set_ex(TC_SET_ASYNC)s a key the peer holds in L1;
 *              the peer's bus thread applies the invalidation, and the
 *              peer's main thread spins on tc_peek() until L1 stops serving
 *              the old value.
 * Both spinners call sched_yield() between polls, so on a 2-core machine
 * they give the core to the thread that does the real work. One peer
 * process holds both the raw subscriber and the cache, and raw and
 * tiercache trials alternate, so machine noise hits both alike. The
 * writer's own bus also receives each tiercache message (the library
 * subscribes every instance); the raw writer has no subscriber.
 *
 * Then the writer times strict (TC_SET_STRICT) and async (TC_SET_ASYNC)
 * writes, interleaved, while the peer holds the key and idles.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

enum { OP_READY = 1, OP_ARM_RAW, OP_ARM_TC, OP_SEEN, OP_HOLD, OP_STATS,
       OP_QUIT };

typedef struct msg {
    int32_t op;
    int32_t ok;
    uint64_t a, b;
} msg;

typedef struct peer {
    pid_t pid;
    int rd, wr;
} peer;

#define SPIN_LIMIT_NS 2000000000u
#define VLEN 64

/* Write all `left` bytes of `buf` to the pipe; 0 on success. */
static int wr_bytes(int fd, const void *buf, size_t left)
{
    const char *p = buf;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        left -= (size_t)n;
    }
    return 0;
}

static int wr_msg(int fd, const msg *m)
{
    return wr_bytes(fd, m, sizeof *m);
}

static int rd_bytes(int fd, void *buf, size_t len, int timeout_ms)
{
    char *p = buf;
    while (len) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return -1;
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int rd_msg(int fd, msg *m, int32_t want)
{
    if (rd_bytes(fd, m, sizeof *m, 10000) != 0)
        return -1;
    return m->op == want ? 0 : -1;
}

static int send_op(int fd, int32_t op, uint64_t a)
{
    msg m = {op, 1, a, 0};
    return wr_msg(fd, &m);
}

typedef int (*peer_fn)(const bench_cfg *cfg, int rd, int wr);

static int peer_spawn(peer *p, peer_fn fn, const bench_cfg *cfg)
{
    int down[2], up[2];
    if (pipe(down) != 0)
        return -1;
    if (pipe(up) != 0) {
        close(down[0]);
        close(down[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(down[1]);
        close(up[0]);
        int rc = fn(cfg, down[0], up[1]);
        _exit(rc == 0 ? 0 : 1);
    }
    close(down[0]);
    close(up[1]);
    p->pid = pid;
    p->rd = up[0];
    p->wr = down[1];
    return 0;
}

/* Ask the peer to quit, then reap it (killing it if it does not go). */
static void peer_finish(peer *p)
{
    if (p->pid <= 0)
        return;
    (void)send_op(p->wr, OP_QUIT, 0);
    close(p->wr);
    int status = 0;
    for (int i = 0; i < 500; i++) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            break;
        }
        bench_sleep_us(10000);
    }
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &status, 0);
        p->pid = 0;
    }
    close(p->rd);
}

static void jitter_sleep(bench_rng *r)
{
    bench_sleep_us(20 + (unsigned)(rng_next(r) % 60));
}

/* ---- the peer process ---------------------------------------------------- */

#define RAW_CHANNEL BENCH_PREFIX "rawbus"

typedef struct raw_sub {
    redisContext *rc;
    _Atomic uint64_t seen;    /* last sequence number received */
    _Atomic uint64_t recv_ns; /* when it was received */
} raw_sub;

static void *raw_sub_thread(void *p)
{
    raw_sub *s = p;
    for (;;) {
        void *rv = NULL;
        if (redisGetReply(s->rc, &rv) != REDIS_OK)
            break;
        uint64_t now = bench_now_ns();
        redisReply *r = rv;
        int quit = 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[2]->type == REDIS_REPLY_STRING) {
            if (strcmp(r->element[2]->str, "quit") == 0) {
                quit = 1;
            } else {
                uint64_t seq = strtoull(r->element[2]->str, NULL, 10);
                atomic_store_explicit(&s->recv_ns, now, memory_order_relaxed);
                atomic_store_explicit(&s->seen, seq, memory_order_release);
            }
        }
        freeReplyObject(r);
        if (quit)
            break;
    }
    return NULL;
}

static void inval_key(char key[BENCH_KEY_LEN + 1], size_t i)
{
    bench_key(key, 'i', i);
}

static void seq_value(char val[VLEN], uint64_t seq)
{
    memset(val, 'x', VLEN);
    char head[32];
    int n = snprintf(head, sizeof head, "%" PRIu64 ";", seq);
    memcpy(val, head, (size_t)n);
}

static uint64_t value_seq(const tc_value *v)
{
    char head[32];
    size_t n = tc_value_len(v) < sizeof head - 1 ? tc_value_len(v)
                                                 : sizeof head - 1;
    memcpy(head, tc_value_data(v), n);
    head[n] = 0;
    return strtoull(head, NULL, 10);
}

/* Read `key` until L1 serves it; returns its sequence number, or
 * UINT64_MAX on failure. */
static uint64_t hold_in_l1(tc_cache *c, const char *key)
{
    for (int tries = 0; tries < 1000; tries++) {
        tc_value *v = NULL;
        if (tc_get(c, key, BENCH_KEY_LEN, &v) != TC_OK)
            return UINT64_MAX;
        tc_value_release(v);
        v = NULL;
        if (tc_peek(c, key, BENCH_KEY_LEN, &v) == TC_OK) {
            uint64_t seq = value_seq(v);
            tc_value_release(v);
            return seq;
        }
        bench_sleep_us(100); /* a fill was refused as possibly stale */
    }
    return UINT64_MAX;
}

/* Raw trial: spin until the subscriber thread has seen `seq`. */
static msg peer_raw_trial(raw_sub *s, uint64_t seq)
{
    uint64_t start = bench_now_ns();
    int ok = 1;
    while (atomic_load_explicit(&s->seen, memory_order_acquire) < seq) {
        sched_yield();
        if (bench_now_ns() - start > SPIN_LIMIT_NS) {
            ok = 0;
            break;
        }
    }
    msg out = {OP_SEEN, ok, bench_now_ns(),
               atomic_load_explicit(&s->recv_ns, memory_order_relaxed)};
    return out;
}

/* tiercache trial: spin until L1 stops serving `old`. */
static msg peer_tc_trial(tc_cache *c, const char *key, uint64_t old,
                         uint64_t seq)
{
    uint64_t start = bench_now_ns();
    int ok = 1;
    for (;;) {
        tc_value *v = NULL;
        if (tc_peek(c, key, BENCH_KEY_LEN, &v) != TC_OK)
            break;
        uint64_t now_serving = value_seq(v);
        tc_value_release(v);
        if (now_serving != old)
            break;
        sched_yield();
        if (bench_now_ns() - start > SPIN_LIMIT_NS) {
            ok = 0;
            break;
        }
    }
    uint64_t t1 = bench_now_ns();
    /* A real invalidation: L2 now has the writer's new value. If L2 still
     * has the old one, L1 stopped serving for another reason (the lease
     * passed) and the trial does not count. */
    uint64_t now_seq = ok ? hold_in_l1(c, key) : UINT64_MAX;
    msg out = {OP_SEEN, ok && now_seq == seq, t1, now_seq};
    return out;
}

static int write_stats(int fd, const tc_stats *st)
{
    return wr_bytes(fd, st, sizeof *st);
}

/* The peer: a raw subscriber thread and a tiercache cache side by side, so
 * that raw and tiercache trials can alternate under the same conditions. */
static int peer_main(const bench_cfg *cfg, int rd, int wr)
{
    raw_sub s;
    atomic_init(&s.seen, 0);
    atomic_init(&s.recv_ns, 0);
    s.rc = bench_redis_connect(cfg);
    if (!s.rc)
        return 1;
    redisReply *r = redisCommand(s.rc, "SUBSCRIBE %s", RAW_CHANNEL);
    if (!r) {
        redisFree(s.rc);
        return 1;
    }
    freeReplyObject(r);
    pthread_t th;
    if (pthread_create(&th, NULL, raw_sub_thread, &s) != 0) {
        redisFree(s.rc);
        return 1;
    }
    tc_options o;
    bench_cache_options(cfg, &o);
    o.coherence = TC_COHERENCE_ASYNC;
    tc_cache *c = bench_cache_create(&o);
    redisContext *getc = bench_redis_connect(cfg);
    char key[BENCH_KEY_LEN + 1], key2[BENCH_KEY_LEN + 1];
    inval_key(key, 0);
    inval_key(key2, 1);
    int rc = c && getc ? send_op(wr, OP_READY, 0) : -1;
    msg m;
    while (rc == 0 && rd_bytes(rd, &m, sizeof m, 60000) == 0) {
        msg out;
        if (m.op == OP_ARM_RAW) {
            /* Re-read the key from Redis, as the tiercache side does before
             * each trial, so that both start from the same state. */
            redisReply *g = redisCommand(getc, "GET %s%s", BENCH_PREFIX, key);
            if (!g)
                break;
            freeReplyObject(g);
            if (send_op(wr, OP_READY, 0) != 0)
                break;
            out = peer_raw_trial(&s, m.a);
        } else if (m.op == OP_ARM_TC) {
            uint64_t old = hold_in_l1(c, key);
            msg ready = {OP_READY, old != UINT64_MAX, old, 0};
            if (wr_msg(wr, &ready) != 0 || !ready.ok)
                break;
            out = peer_tc_trial(c, key, old, m.a);
        } else if (m.op == OP_HOLD) {
            uint64_t seq = hold_in_l1(c, key2);
            out = (msg){OP_READY, seq != UINT64_MAX, seq, 0};
        } else if (m.op == OP_STATS) {
            tc_stats st;
            tc_cache_stats(c, &st);
            if (write_stats(wr, &st) != 0)
                break;
            continue;
        } else {
            break;
        }
        if (wr_msg(wr, &out) != 0)
            break;
    }
    tc_cache_destroy(c);
    if (getc)
        redisFree(getc);
    /* The writer publishes "quit" on the raw channel before OP_QUIT; do not
     * hang if it could not. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    if (pthread_timedjoin_np(th, NULL, &ts) != 0)
        _exit(0);
    redisFree(s.rc);
    return 0;
}

/* ---- the writer ----------------------------------------------------------- */

/* Approximate percentile from the log2 lag histogram: the upper edge of the
 * bucket holding the rank (so it overstates by up to 2x). */
static double hist_pct_us(const uint64_t *h, double pct)
{
    uint64_t total = 0;
    for (int i = 0; i < 24; i++)
        total += h[i];
    if (!total)
        return NAN;
    uint64_t rank = (uint64_t)(pct / 100.0 * (double)total + 0.5), acc = 0;
    if (rank == 0)
        rank = 1;
    for (int i = 0; i < 24; i++) {
        acc += h[i];
        if (acc >= rank)
            return (double)(2ull << i);
    }
    return NAN;
}

typedef struct coh_result {
    samples raw, raw_recv, lag, w_async, w_strict;
    size_t spurious, strict_expiries;
    tc_stats peer;
} coh_result;

static int raw_trial(redisContext *rc, peer *p, uint64_t seq, bench_rng *rng,
                     coh_result *res, int keep)
{
    msg m;
    if (send_op(p->wr, OP_ARM_RAW, seq) != 0 || rd_msg(p->rd, &m, OP_READY))
        return -1;
    jitter_sleep(rng);
    char payload[32];
    snprintf(payload, sizeof payload, "%" PRIu64, seq);
    uint64_t t0 = bench_now_ns();
    redisReply *r = redisCommand(rc, "PUBLISH %s %s", RAW_CHANNEL, payload);
    int delivered = r && r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    if (r)
        freeReplyObject(r);
    if (!delivered || rd_msg(p->rd, &m, OP_SEEN) != 0 || !m.ok) {
        fprintf(stderr, "tc-bench: raw pub/sub trial %" PRIu64 " failed\n",
                seq);
        return -1;
    }
    if (keep) {
        samples_add(&res->raw, (double)(m.a - t0));
        samples_add(&res->raw_recv, (double)(m.b - t0));
    }
    return 0;
}

static int tc_trial(tc_cache *c, peer *p, uint64_t seq, bench_rng *rng,
                    coh_result *res, int keep, size_t trials)
{
    msg m;
    char key[BENCH_KEY_LEN + 1], val[VLEN];
    inval_key(key, 0);
    if (send_op(p->wr, OP_ARM_TC, seq) != 0 || rd_msg(p->rd, &m, OP_READY) ||
        !m.ok) {
        fprintf(stderr, "tc-bench: peer could not hold the key in L1\n");
        return -1;
    }
    jitter_sleep(rng);
    seq_value(val, seq);
    tc_set_opts so = {0, 0, TC_SET_ASYNC};
    uint64_t t0 = bench_now_ns();
    tc_result r = tc_set_ex(c, key, BENCH_KEY_LEN, val, VLEN, &so);
    if (r != TC_OK || rd_msg(p->rd, &m, OP_SEEN) != 0) {
        fprintf(stderr,
                "tc-bench: invalidation trial %" PRIu64 " failed: %s (%s)\n",
                seq, tc_strerror(r), tc_errmsg());
        return -1;
    }
    if (!m.ok) {
        if (++res->spurious > trials / 10 + 5) {
            fprintf(stderr, "tc-bench: peer's L1 keeps dropping the key "
                            "without an invalidation\n");
            return -1;
        }
        return 0;
    }
    if (keep)
        samples_add(&res->lag, (double)(m.a - t0));
    return 0;
}

/* Strict against async writes, the peer alive and holding the key. A strict
 * write that ends because the lease passed (not every instance
 * acknowledged) still returns TC_OK: those are counted from the stats. */
static int write_trial(tc_cache *c, peer *p, size_t i, bench_rng *rng,
                       coh_result *res, int keep)
{
    msg m;
    char key2[BENCH_KEY_LEN + 1], val[VLEN];
    inval_key(key2, 1);
    if (send_op(p->wr, OP_HOLD, 0) != 0 || rd_msg(p->rd, &m, OP_READY) ||
        !m.ok)
        return -1;
    jitter_sleep(rng);
    /* Pairs in alternating order: async-strict, strict-async, ... */
    int strict = (int)((i & 1) ^ ((i >> 1) & 1));
    tc_set_opts wo = {0, 0, strict ? TC_SET_STRICT : TC_SET_ASYNC};
    seq_value(val, i);
    uint64_t t0 = bench_now_ns();
    tc_result r = tc_set_ex(c, key2, BENCH_KEY_LEN, val, VLEN, &wo);
    uint64_t dt = bench_now_ns() - t0;
    if (r != TC_OK) {
        fprintf(stderr, "tc-bench: %s write failed: %s (%s)\n",
                strict ? "strict" : "async", tc_strerror(r), tc_errmsg());
        return -1;
    }
    if (keep)
        samples_add(strict ? &res->w_strict : &res->w_async, (double)dt);
    return 0;
}

static int run_coherence(const bench_cfg *cfg, coh_result *res)
{
    peer p = {0, -1, -1};
    /* Fork first: the parent runs no thread yet. */
    if (peer_spawn(&p, peer_main, cfg) != 0)
        return -1;
    redisContext *rc = bench_redis_connect(cfg);
    tc_options o;
    bench_cache_options(cfg, &o);
    o.coherence = TC_COHERENCE_ASYNC;
    tc_cache *c = rc ? bench_cache_create(&o) : NULL;
    msg m;
    int err = !c || rd_msg(p.rd, &m, OP_READY) != 0;
    char key[BENCH_KEY_LEN + 1], val[VLEN];
    tc_set_opts so = {0, 0, TC_SET_ASYNC};
    seq_value(val, 0);
    for (size_t i = 0; i < 2 && !err; i++) {
        inval_key(key, i);
        if (tc_set_ex(c, key, BENCH_KEY_LEN, val, VLEN, &so) != TC_OK) {
            fprintf(stderr, "tc-bench: tc_set: %s\n", tc_errmsg());
            err = 1;
        }
    }
    bench_rng rng;
    rng_seed(&rng, cfg->seed ^ 0x494e56u);
    const size_t warm = 50, trials = cfg->trials;
    /* Raw and tiercache trials alternate in pairs (raw-tc, tc-raw, ...). */
    for (size_t i = 0; i < 2 * (trials + warm) && !err; i++) {
        int keep = i >= 2 * warm;
        uint64_t seq = i / 2 + 1;
        if ((i & 1) ^ ((i >> 1) & 1))
            err = tc_trial(c, &p, seq, &rng, res, keep, trials) != 0;
        else
            err = raw_trial(rc, &p, seq, &rng, res, keep) != 0;
    }
    tc_stats ws0, ws1;
    if (!err)
        tc_cache_stats(c, &ws0);
    for (size_t i = 0; i < 2 * (trials + warm) && !err; i++)
        err = write_trial(c, &p, i, &rng, res, i >= 2 * warm) != 0;
    if (!err) {
        tc_cache_stats(c, &ws1);
        res->strict_expiries =
            (size_t)(ws1.strict_lease_expiries - ws0.strict_lease_expiries);
        if (send_op(p.wr, OP_STATS, 0) != 0 ||
            rd_bytes(p.rd, &res->peer, sizeof res->peer, 10000) != 0)
            memset(&res->peer, 0, sizeof res->peer);
    }
    if (rc) {
        redisReply *r = redisCommand(rc, "PUBLISH %s quit", RAW_CHANNEL);
        if (r)
            freeReplyObject(r);
        redisFree(rc);
    }
    tc_cache_destroy(c);
    peer_finish(&p);
    return err ? -1 : 0;
}

static void row(const char *name, samples *s, const char *json)
{
    char a[32], b[32], c[32];
    printf("   %-40s %10s %10s %10s %7zu\n", name,
           bench_fmt_ns(a, sizeof a, samples_pct(s, 50)),
           bench_fmt_ns(b, sizeof b, samples_pct(s, 99)),
           bench_fmt_ns(c, sizeof c, samples_pct(s, 99.9)), s->n);
    char key[96];
    snprintf(key, sizeof key, "%s_p50_us", json);
    res_num(key, samples_pct(s, 50) / 1e3);
    snprintf(key, sizeof key, "%s_p99_us", json);
    res_num(key, samples_pct(s, 99) / 1e3);
    snprintf(key, sizeof key, "%s_p999_us", json);
    res_num(key, samples_pct(s, 99.9) / 1e3);
}

void bench_coherence(const bench_cfg *cfg)
{
    printf("\n3. invalidation between two processes, %zu trials each, "
           "interleaved, %s\n",
           cfg->trials, cfg->transport);
    printf("   %-40s %10s %10s %10s %7s\n", "", "p50", "p99", "p99.9", "n");
    fflush(stdout);
    coh_result res;
    memset(&res, 0, sizeof res);
    if (run_coherence(cfg, &res) == 0) {
        row("raw PUBLISH -> peer thread sees it", &res.raw, "pubsub_raw");
        row("  (of which: subscriber socket read)", &res.raw_recv,
            "pubsub_raw_recv");
        row("tc_set -> peer's L1 stops serving old", &res.lag, "inval");
        row("async write (tc_set_ex TC_SET_ASYNC)", &res.w_async,
            "write_async");
        row("strict write (tc_set_ex TC_SET_STRICT)", &res.w_strict,
            "write_strict");
        double h50 = hist_pct_us(res.peer.lag_us_hist, 50),
               h99 = hist_pct_us(res.peer.lag_us_hist, 99);
        res_num("inval_hist_p50_us_upper", h50);
        res_num("inval_hist_p99_us_upper", h99);
        res_num("inval_spurious", (double)res.spurious);
        res_num("write_strict_lease_expiries", (double)res.strict_expiries);
        printf("   peer's own lag histogram (log2 buckets, upper edge): "
               "p50 <= %.0f us, p99 <= %.0f us\n",
               h50, h99);
        if (res.spurious || res.strict_expiries)
            printf("   note: %zu trials where L1 dropped the key without an "
                   "invalidation; %zu strict writes ended by the lease\n",
                   res.spurious, res.strict_expiries);
    } else {
        fprintf(stderr, "tc-bench: invalidation section failed\n");
        bench_fail();
    }
    samples_free(&res.raw);
    samples_free(&res.raw_recv);
    samples_free(&res.lag);
    samples_free(&res.w_async);
    samples_free(&res.w_strict);
    fflush(stdout);
}
