/*
 * Section 0: the L1 hit against its anchors (issue 12), and reader stalls.
 *
 * Anchors, all fed the same 16 B keys and 64 B values and the same hash
 * (tc__hash):
 *   - flat open addressing (oa.c): the single-core floor;
 *   - liburcu's lock-free hash table cds_lfht (lfht.c): what a good
 *     concurrent table costs;
 *   - tiercache: tc_get and tc_peek on a cache whose L1 holds every key.
 * At 1k, 100k and 1M keys, one thread reads in three ways: uniform random
 * order, Zipf 1.0 order (independent lookups, so the CPU may overlap them),
 * and "dependent" (uniform, but each key index depends on the previous
 * lookup's value byte: the latency of one lookup, no overlap). Each round
 * runs every row once in rotating order; a figure is the median over rounds.
 * At 1k and 100k keys, tc_get, cds_lfht and the (read-only) flat table also
 * run with 1 and 2 threads for throughput; scaling is the median of the
 * per-round 2-thread/1-thread ratios.
 *
 * Stalls: one reader thread times every lookup of 1k hot keys (tc__l1_get on
 * the L1 store itself, no Redis) while another thread either invalidates a
 * 1M-entry prefix or runs a fill storm of 2M new keys into a 1M-entry L1
 * (growth, then eviction). p99.9 and max of those lookups, median of runs.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "l1.h"
#include "lfht.h"
#include "oa.h"

#define ANCHOR_VLEN 64
#define ANCHOR_REPS 5
#define ANCHOR_MAXN 1000000

typedef char akey[BENCH_KEY_LEN + 1];

typedef struct aset {
    size_t n;
    const char *tag; /* "1k" */
    akey *keys;      /* shared by every size: key i is the same everywhere */
    uint32_t *perm;  /* uniform order over 0..n-1 */
    uint32_t *zipf;  /* Zipf order, ZLEN long */
    tc_cache *c;
    oa_tab *oa;
    lfht_tab *lf;
} aset;

#define ZLEN ((size_t)1 << 20)

enum { T_GET, T_PEEK, T_LFHT, T_OA, T_COUNT };
enum { M_UNI, M_ZIPF, M_DEP, M_COUNT };

static const char *const tname[T_COUNT] = {"l1", "l1_peek", "lfht", "oa"};
static const char *const mname[M_COUNT] = {"hit", "zipf", "dep"};

static atomic_ulong read_errors;

/* One lookup of key index i; returns the first value byte or -1. */
static inline int lookup(const aset *s, int t, uint32_t i)
{
    const char *k = s->keys[i];
    tc_value *v = NULL;
    int r;
    switch (t) {
    case T_GET:
    case T_PEEK:
        r = (t == T_GET ? tc_get : tc_peek)(s->c, k, BENCH_KEY_LEN, &v);
        if (r != TC_OK) {
            /* The bus lease lapsed (a loaded machine) and the read went to
             * L2 or was refused: counted, reported, not fatal. */
            atomic_fetch_add_explicit(&read_errors, 1, memory_order_relaxed);
            return 0;
        }
        r = *(const unsigned char *)tc_value_data(v);
        tc_value_release(v);
        return r;
    case T_LFHT:
        return lfht_get(s->lf, k, BENCH_KEY_LEN);
    default: {
        const char *p = oa_get(s->oa, k, BENCH_KEY_LEN);
        return p ? (unsigned char)*p : -1;
    }
    }
}

/* `ops` lookups of table t in mode m starting at *pos; -1 on a miss. */
static int run_ops(const aset *s, int t, int m, size_t ops, size_t *pos)
{
    size_t p = *pos;
    unsigned acc = 0;
    for (size_t k = 0; k < ops; k++) {
        int r;
        if (m == M_ZIPF) {
            r = lookup(s, t, s->zipf[p]);
            if (++p == ZLEN)
                p = 0;
        } else {
            r = lookup(s, t, s->perm[p]);
            /* Dependent: value bytes are ASCII (< 128), so the shift is 0,
             * but the CPU cannot know that before the load completes. */
            p += 1 + (m == M_DEP ? (size_t)((unsigned)r >> 7) : 0);
            if (p >= s->n)
                p = 0;
        }
        if (r < 0)
            return -1;
        acc += (unsigned)r;
    }
    *pos = p;
    atomic_fetch_add_explicit(&bench_sink, acc, memory_order_relaxed);
    return 0;
}


/* ---- building ----------------------------------------------------------- */

static int build(const bench_cfg *cfg, aset *s, bench_rng *rng)
{
    tc_options o;
    char val[ANCHOR_VLEN];
    bench_cache_options(cfg, &o);
    o.l1_max_entries = s->n * 2;
    o.l1_max_bytes = s->n * 1024;
    s->c = bench_cache_create(&o);
    s->oa = oa_create(s->n);
    s->lf = lfht_create(s->n);
    s->perm = rng_perm(rng, s->n);
    s->zipf = bench_zipf_order(rng, s->n, ZLEN);
    if (!s->c || !s->oa || !s->lf || !s->perm || !s->zipf)
        return -1;
    for (size_t b = 0; b < s->n; b += 256) {
        const void *keys[256];
        size_t klens[256];
        tc_value *out[256];
        tc_result res[256];
        size_t m = s->n - b < 256 ? s->n - b : 256;
        int err = 0;
        for (size_t j = 0; j < m; j++) {
            keys[j] = s->keys[b + j];
            klens[j] = BENCH_KEY_LEN;
        }
        tc_result r = tc_mget(s->c, m, keys, klens, out, res);
        for (size_t j = 0; j < m; j++) {
            err |= res[j] != TC_OK || !out[j];
            tc_value_release(out[j]);
        }
        if (r != TC_OK || err) {
            fprintf(stderr, "tc-bench: anchors: tc_mget: %s (%s)\n",
                    tc_strerror(r), tc_errmsg());
            return -1;
        }
        for (size_t j = 0; j < m; j++) {
            bench_value(val, sizeof val, b + j);
            if (oa_put(s->oa, s->keys[b + j], BENCH_KEY_LEN, val,
                       sizeof val) != 0 ||
                lfht_put(s->lf, s->keys[b + j], BENCH_KEY_LEN, val,
                         sizeof val) != 0)
                return -1;
        }
    }
    return 0;
}

static void teardown(aset *s)
{
    tc_cache_destroy(s->c);
    oa_destroy(s->oa);
    lfht_destroy(s->lf);
    free(s->perm);
    free(s->zipf);
}

/* ---- one thread ------------------------------------------------------------ */

static int single_thread(const bench_cfg *cfg, aset *s)
{
    const size_t reps = cfg->quick ? 2 : ANCHOR_REPS;
    const size_t ops = cfg->quick ? 20000 : s->n >= 1000000 ? 60000 : 150000;
    double ns[T_COUNT][M_COUNT][ANCHOR_REPS];
    size_t pos[T_COUNT][M_COUNT];
    tc_stats st0, st1;
    for (int t = 0; t < T_COUNT; t++)
        for (int m = 0; m < M_COUNT; m++) {
            pos[t][m] = (size_t)(t * M_COUNT + m) * 7919 % s->n;
            /* Warm: every key once (CPU caches, TLB, page faults). */
            if (m == M_UNI && run_ops(s, t, M_UNI, s->n, &pos[t][m]) != 0)
                return -1;
        }
    tc_cache_stats(s->c, &st0);
    for (size_t r = 0; r < reps; r++) {
        for (int k = 0; k < T_COUNT * M_COUNT; k++) {
            int j = (k + (int)r * 5) % (T_COUNT * M_COUNT);
            int t = j / M_COUNT, m = j % M_COUNT;
            uint64_t t0 = bench_now_ns();
            if (run_ops(s, t, m, ops, &pos[t][m]) != 0)
                return -1;
            ns[t][m][r] = (double)(bench_now_ns() - t0) / (double)ops;
        }
    }
    tc_cache_stats(s->c, &st1);
    printf("   %-5s %-10s %9s %9s %9s %9s %12s\n", s->tag, "", "tc_get",
           "tc_peek", "cds_lfht", "flat OA", "tc_get/lfht");
    for (int m = 0; m < M_COUNT; m++) {
        double med[T_COUNT];
        for (int t = 0; t < T_COUNT; t++) {
            char key[64];
            med[t] = bench_median(ns[t][m], reps);
            snprintf(key, sizeof key, "%s_%s_ns_%s_1t", tname[t], mname[m],
                     s->tag);
            res_num(key, med[t]);
        }
        printf("   %-5s %-10s %9.1f %9.1f %9.1f %9.1f %11.2fx\n", "",
               m == M_UNI ? "uniform" : m == M_ZIPF ? "Zipf 1.0"
                                                    : "dependent",
               med[T_GET], med[T_PEEK], med[T_LFHT], med[T_OA],
               med[T_GET] / med[T_LFHT]);
        if (m == M_UNI) {
            char key[64];
            snprintf(key, sizeof key, "ratio_l1_lfht_%s", s->tag);
            res_num(key, med[T_GET] / med[T_LFHT]);
        }
    }
    uint64_t bypass = st1.l1_bypassed - st0.l1_bypassed;
    uint64_t miss = st1.l1_misses - st0.l1_misses;
    unsigned long errs = atomic_exchange(&read_errors, 0);
    if (bypass || miss || errs)
        printf("   note: %llu L1 misses, %llu bypassed reads (bus lease "
               "lapsed), %lu failed reads among the tc_get/tc_peek rows\n",
               (unsigned long long)miss, (unsigned long long)bypass, errs);
    return 0;
}

/* ---- threads ------------------------------------------------------------- */

typedef struct worker {
    pthread_t th;
    const aset *s;
    int t, m;
    size_t pos;
    pthread_barrier_t *bar;
    atomic_int *stop;
    uint64_t ops;
    int err;
} worker;

static void *worker_main(void *p)
{
    worker *w = p;
    if (w->t == T_LFHT)
        lfht_thread_online();
    pthread_barrier_wait(w->bar);
    while (!atomic_load_explicit(w->stop, memory_order_relaxed) && !w->err) {
        w->err = run_ops(w->s, w->t, w->m, 512, &w->pos);
        w->ops += 512;
    }
    if (w->t == T_LFHT)
        lfht_thread_offline();
    return NULL;
}

/* Total Mops/s of `n` threads for `ms`; <0 on failure. */
static double throughput(const aset *s, int t, int m, unsigned n,
                         unsigned ms)
{
    worker w[2];
    pthread_barrier_t bar;
    atomic_int stop;
    uint64_t ops = 0, dt;
    int err = 0;
    atomic_init(&stop, 0);
    pthread_barrier_init(&bar, NULL, n + 1);
    for (unsigned i = 0; i < n; i++) {
        w[i] = (worker){.s = s, .t = t, .m = m, .bar = &bar, .stop = &stop,
                        .pos = (m == M_ZIPF ? ZLEN : s->n) * i / n};
        if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "tc-bench: pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&bar);
    uint64_t t0 = bench_now_ns();
    bench_sleep_us(ms * 1000u);
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < n; i++) {
        pthread_join(w[i].th, NULL);
        ops += w[i].ops;
        err |= w[i].err;
    }
    dt = bench_now_ns() - t0;
    pthread_barrier_destroy(&bar);
    return err ? -1 : (double)ops / ((double)dt / 1e3);
}

static const int mt_tables[3] = {T_GET, T_LFHT, T_OA};

static int multi_thread(const bench_cfg *cfg, const aset *s)
{
    const size_t reps = cfg->quick ? 1 : 3;
    const unsigned ms = cfg->quick ? 60 : 150;
    double mops[3][2][2][3], ratio[3][2][3]; /* table, order, threads, rep */
    for (size_t r = 0; r < reps; r++) {
        for (int k = 0; k < 12; k++) {
            int j = (k + (int)r * 5) % 12;
            int ti = j / 4, z = (j / 2) % 2, th = j % 2;
            double v = throughput(s, mt_tables[ti], z ? M_ZIPF : M_UNI,
                                  th ? 2 : 1, ms);
            if (v < 0)
                return -1;
            mops[ti][z][th][r] = v;
        }
        for (int ti = 0; ti < 3; ti++)
            for (int z = 0; z < 2; z++)
                ratio[ti][z][r] = mops[ti][z][1][r] / mops[ti][z][0][r];
    }
    static const char *const names[3] = {"l1", "lfht", "oa"};
    double scal[3][2];
    printf("   %-5s throughput, Mops/s total: 1 thread, 2 threads (scaling)\n",
           s->tag);
    for (int z = 0; z < 2; z++) {
        printf("         %-9s", z ? "Zipf 1.0" : "uniform");
        for (int ti = 0; ti < 3; ti++) {
            double m1 = bench_median(mops[ti][z][0], reps),
                   m2 = bench_median(mops[ti][z][1], reps);
            char key[64];
            scal[ti][z] = bench_median(ratio[ti][z], reps);
            snprintf(key, sizeof key, "%s%s_mops_%s_1t", names[ti],
                     z ? "_zipf" : "", s->tag);
            res_num(key, m1);
            snprintf(key, sizeof key, "%s%s_mops_%s_2t", names[ti],
                     z ? "_zipf" : "", s->tag);
            res_num(key, m2);
            snprintf(key, sizeof key, "%s%s_scaling_%s", names[ti],
                     z ? "_zipf" : "", s->tag);
            res_num(key, scal[ti][z]);
            printf("  %s %6.1f %6.1f (%.2fx)",
                   ti == 0 ? "tc_get" : ti == 1 ? "lfht" : "OA", m1, m2,
                   scal[ti][z]);
        }
        printf("\n");
    }
    char key[64];
    snprintf(key, sizeof key, "ratio_scaling_l1_lfht_%s", s->tag);
    res_num(key, scal[0][0] / scal[1][0]);
    return 0;
}

/* ---- stalls -------------------------------------------------------------- */

/* Log-linear histogram of ns: exact below 64, then 16 steps per octave. */
#define HBUCKETS (64 + 16 * 40)

typedef struct hist {
    uint64_t count[HBUCKETS];
    uint64_t n, max;
} hist;

static unsigned hbucket(uint64_t ns)
{
    if (ns < 64)
        return (unsigned)ns;
    unsigned e = 63u - (unsigned)__builtin_clzll(ns);
    unsigned b = 64 + (e - 6) * 16 + (unsigned)((ns >> (e - 4)) & 15);
    return b < HBUCKETS ? b : HBUCKETS - 1;
}

static double hbucket_top(unsigned b)
{
    if (b < 64)
        return b;
    unsigned e = (b - 64) / 16 + 6, sub = (b - 64) % 16;
    return (double)((16ull + sub + 1) << (e - 4));
}

static double hist_pct(const hist *h, double pct)
{
    uint64_t want = (uint64_t)ceil(pct / 100.0 * (double)h->n), acc = 0;
    for (unsigned b = 0; b < HBUCKETS; b++)
        if ((acc += h->count[b]) >= want && want)
            return fmin(hbucket_top(b), (double)h->max);
    return (double)h->max;
}

typedef struct stall_reader {
    pthread_t th;
    tc__l1 *l1;
    akey *hot;
    size_t nhot;
    atomic_int phase; /* 0 warm, 1 record, 2 stop */
    atomic_int started;
    hist h;
    uint64_t misses;
} stall_reader;

static void *stall_main(void *p)
{
    stall_reader *r = p;
    size_t i = 0;
    atomic_store(&r->started, 1);
    for (;;) {
        int ph = atomic_load_explicit(&r->phase, memory_order_relaxed);
        if (ph == 2)
            break;
        const char *k = r->hot[i];
        uint64_t t0 = bench_now_ns();
        tc_value *v = tc__l1_get(r->l1, tc__hash(k, BENCH_KEY_LEN), k,
                                 BENCH_KEY_LEN, tc__now_ns());
        if (v)
            atomic_fetch_add_explicit(
                &bench_sink, *(const unsigned char *)tc_value_data(v),
                memory_order_relaxed);
        else
            r->misses++;
        tc_value_release(v);
        uint64_t dt = bench_now_ns() - t0;
        if (ph == 1) {
            r->h.count[hbucket(dt)]++;
            r->h.n++;
            if (dt > r->h.max)
                r->h.max = dt;
        }
        if (++i == r->nhot)
            i = 0;
    }
    return NULL;
}

static int l1_put(tc__l1 *l1, const char *k, const char *val, size_t vlen)
{
    uint64_t h = tc__hash(k, BENCH_KEY_LEN);
    return tc__l1_fill(l1, h, k, BENCH_KEY_LEN, val, vlen,
                       tc__now_ns() + 3600ull * 1000000000ull,
                       tc__l1_gen(l1, h), 0, NULL);
}

static unsigned l1_shards(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = 16u * (unsigned)(cpus > 0 ? cpus : 1), s = 1;
    while (s < want && s < 1024)
        s <<= 1;
    return s; /* the library's default for a 1M-entry L1 */
}

/* One stall run; kind 0: invalidate a 1M-entry prefix, 1: fill storm.
 * Writes p99.9 and max in us and the writer's time in ms. */
static int stall_run(int kind, size_t n, double *p999, double *max,
                     double *work_ms)
{
    enum { NHOT = 1000 };
    char val[ANCHOR_VLEN];
    akey *hot = malloc(NHOT * sizeof *hot);
    tc__l1 *l1 = tc__l1_create((size_t)4 << 30, kind ? n : 2 * n + NHOT,
                               l1_shards());
    stall_reader *r = calloc(1, sizeof *r);
    int err = !hot || !l1 || !r;
    memset(val, 'v', sizeof val);
    for (size_t i = 0; i < NHOT && !err; i++) {
        bench_key(hot[i], 'h', i);
        err = l1_put(l1, hot[i], val, sizeof val) != TC__FILL_INSERTED;
    }
    for (size_t i = 0; i < n && !err && kind == 0; i++) {
        akey k;
        bench_key(k, 's', i);
        err = l1_put(l1, k, val, sizeof val) != TC__FILL_INSERTED;
    }
    if (!err) {
        r->l1 = l1;
        r->hot = hot;
        r->nhot = NHOT;
        err = pthread_create(&r->th, NULL, stall_main, r) != 0;
    }
    if (!err) {
        while (!atomic_load(&r->started))
            bench_sleep_us(100);
        bench_sleep_us(20000);
        atomic_store(&r->phase, 1);
        uint64_t t0 = bench_now_ns();
        if (kind == 0) {
            if (tc__l1_invalidate_prefix(l1, "bs", 2) != n)
                err = 1;
        } else {
            for (size_t i = 0; i < 2 * n && !err; i++) {
                akey k;
                bench_key(k, 'f', i);
                err = l1_put(l1, k, val, sizeof val) != TC__FILL_INSERTED;
            }
        }
        *work_ms = (double)(bench_now_ns() - t0) / 1e6;
        atomic_store(&r->phase, 2);
        pthread_join(r->th, NULL);
        *p999 = hist_pct(&r->h, 99.9) / 1e3;
        *max = (double)r->h.max / 1e3;
    }
    tc__l1_destroy(l1);
    free(hot);
    free(r);
    return err ? -1 : 0;
}

static void stalls(const bench_cfg *cfg)
{
    const size_t reps = cfg->quick ? 1 : 3;
    const size_t n = cfg->quick ? 200000 : 1000000;
    res_num("l1_stall_entries", (double)n);
    static const char *const what[2] = {"invalidate_1m", "fill"};
    printf("   reader lookups (1k hot keys, tc__l1_get) while another "
           "thread works, median of %zu runs:\n", reps);
    for (int kind = 0; kind < 2; kind++) {
        double p[3], m[3], w[3];
        for (size_t i = 0; i < reps; i++)
            if (stall_run(kind, n, &p[i], &m[i], &w[i]) != 0) {
                fprintf(stderr, "tc-bench: stall run failed\n");
                bench_fail();
                return;
            }
        double mp = bench_median(p, reps), mm = bench_median(m, reps),
               mw = bench_median(w, reps);
        char key[80];
        snprintf(key, sizeof key, "l1_reader_p999_us_during_%s", what[kind]);
        res_num(key, mp);
        snprintf(key, sizeof key, "l1_reader_max_us_during_%s", what[kind]);
        res_num(key, mm);
        snprintf(key, sizeof key, "l1_%s_ms", kind ? "fill_storm" : what[0]);
        res_num(key, mw);
        printf("   %-14s %8zu entries: p99.9 %8.1f us   max %9.1f us   (%.0f "
               "ms)\n", kind ? "fill storm, 2x" : "invalidate", n, mp, mm,
               mw);
    }
}

/* ---- driver -------------------------------------------------------------- */

void bench_anchors(const bench_cfg *cfg)
{
    static const struct {
        size_t n;
        const char *tag;
    } sizes[] = {{1000, "1k"}, {100000, "100k"}, {1000000, "1m"}};
    size_t nsizes = cfg->quick ? 2 : 3;
    size_t maxn = sizes[nsizes - 1].n;
    bench_rng rng;
    akey *keys = malloc(maxn * sizeof *keys);
    rng_seed(&rng, cfg->seed ^ 0x414e43u);
    printf("\n0. L1 hit against its anchors: ns per lookup, 16 B keys, %d B "
           "values, 1 thread,\n   median of %d rounds (rows rotating); "
           "dependent: each key depends on the last value\n",
           ANCHOR_VLEN, cfg->quick ? 2 : ANCHOR_REPS);
    fflush(stdout);
    if (!keys || bench_l2_fill(cfg, 'a', maxn, ANCHOR_VLEN) != 0) {
        fprintf(stderr, "tc-bench: anchors skipped\n");
        free(keys);
        bench_fail();
        return;
    }
    for (size_t i = 0; i < maxn; i++)
        bench_key(keys[i], 'a', i);
    lfht_thread_online();
    for (size_t z = 0; z < nsizes; z++) {
        aset s;
        memset(&s, 0, sizeof s);
        s.n = sizes[z].n;
        s.tag = sizes[z].tag;
        s.keys = keys;
        if (build(cfg, &s, &rng) != 0 || single_thread(cfg, &s) != 0 ||
            (s.n <= 100000 && multi_thread(cfg, &s) != 0)) {
            fprintf(stderr, "tc-bench: anchors at %s keys failed\n", s.tag);
            bench_fail();
        }
        teardown(&s);
        fflush(stdout);
    }
    lfht_thread_offline();
    bench_l2_drop(cfg, 'a', maxn);
    free(keys);
    stalls(cfg);
    fflush(stdout);
}
