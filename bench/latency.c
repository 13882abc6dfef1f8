/*
 * Sections 1 and 2: get latency of the four ways to read a key (raw hiredis
 * GET, tiercache L2 hit, tiercache L1 hit, the flat open-addressing floor of oa.c) for 64 B
 * and 4 KiB values, and the thread scaling of L1 hits.
 *
 * Fairness: all rows of one value size run interleaved, in blocks whose
 * order rotates every round, so a noisy neighbour hurts every row alike and
 * the ratios hold. The L2-hit cache has a 1024-entry L1 and reads each key
 * once, in a random order, so every get is a true L1 miss that goes to L2
 * and fills L1 (which is what an L2 hit costs a real caller); its statistics
 * confirm it. The L1-hit cache holds every key; floor and L1 read the keys
 * in the same uniform random order (every key equally likely: the worst
 * case for CPU caches), and again in a Zipf 1.0 order (hot keys stay in CPU
 * cache, as with real traffic).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "oa.h"

typedef char bench_keybuf[BENCH_PREFIX_LEN + BENCH_KEY_LEN + 1];

typedef struct keyset {
    char cls;
    const char *label; /* "64 B" */
    const char *suffix; /* JSON key suffix: "" or "_4k" */
    size_t n, vlen;
    bench_keybuf *raw; /* prefixed, for the raw baseline */
    uint32_t *perm;
} keyset;

static const char *key_of(const keyset *ks, size_t i)
{
    return ks->raw[i] + BENCH_PREFIX_LEN;
}

static void put_row(const char *name, samples *s, double ops_per_sample,
                    const char *json_prefix, int ns_unit)
{
    char a[32], b[32], c[32];
    double p50 = samples_pct(s, 50), p99 = samples_pct(s, 99),
           p999 = samples_pct(s, 99.9);
    double sum = samples_sum(s);
    double ops = sum > 0 ? (double)s->n * ops_per_sample / (sum / 1e9) : 0;
    printf("   %-34s %10s %10s %10s %9.2f M\n", name,
           bench_fmt_ns(a, sizeof a, p50), bench_fmt_ns(b, sizeof b, p99),
           bench_fmt_ns(c, sizeof c, p999), ops / 1e6);
    char key[96];
    double div = ns_unit ? 1.0 : 1000.0;
    const char *unit = ns_unit ? "ns" : "us";
    snprintf(key, sizeof key, "%s_p50_%s", json_prefix, unit);
    res_num(key, p50 / div);
    snprintf(key, sizeof key, "%s_p90_%s", json_prefix, unit);
    res_num(key, samples_pct(s, 90) / div);
    snprintf(key, sizeof key, "%s_p99_%s", json_prefix, unit);
    res_num(key, p99 / div);
    snprintf(key, sizeof key, "%s_p999_%s", json_prefix, unit);
    res_num(key, p999 / div);
    snprintf(key, sizeof key, "%s_ops", json_prefix);
    res_num(key, ops);
}

/* ---- raw GET against tiercache L2 hit ------------------------------------- */

static int raw_get(redisContext *rc, const keyset *ks, size_t i)
{
    redisReply *r = redisCommand(rc, "GET %b", ks->raw[i],
                                 (size_t)(BENCH_PREFIX_LEN + BENCH_KEY_LEN));
    if (!r)
        return -1;
    int ok = r->type == REDIS_REPLY_STRING && (size_t)r->len >= ks->vlen;
    if (ok)
        atomic_fetch_add_explicit(&bench_sink, (unsigned char)r->str[0],
                                  memory_order_relaxed);
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static int tc_get_check(tc_cache *c, const keyset *ks, size_t i)
{
    tc_value *v = NULL;
    tc_result r = tc_get(c, key_of(ks, i), BENCH_KEY_LEN, &v);
    if (r != TC_OK)
        return -1;
    int ok = tc_value_len(v) == ks->vlen;
    atomic_fetch_add_explicit(&bench_sink,
                              *(const unsigned char *)tc_value_data(v),
                              memory_order_relaxed);
    tc_value_release(v);
    return ok ? 0 : -1;
}

/* ---- L1 hit against the floor -------------------------------------------- */

/* An access order: indices into the key set, read cyclically. */
typedef struct order {
    const uint32_t *idx;
    size_t len;
    size_t pos;
} order;

static int l1_batch(tc_cache *c, const keyset *ks, order *o)
{
    size_t p = o->pos;
    unsigned acc = 0;
    int err = 0;
    for (int k = 0; k < BENCH_BATCH; k++) {
        tc_value *v = NULL;
        if (tc_get(c, key_of(ks, o->idx[p]), BENCH_KEY_LEN, &v) != TC_OK) {
            err = -1;
            break;
        }
        acc += *(const unsigned char *)tc_value_data(v);
        tc_value_release(v);
        if (++p == o->len)
            p = 0;
    }
    o->pos = p;
    atomic_fetch_add_explicit(&bench_sink, acc, memory_order_relaxed);
    return err;
}

static int floor_batch(oa_tab *f, const keyset *ks, order *o)
{
    size_t p = o->pos;
    unsigned acc = 0;
    int err = 0;
    for (int k = 0; k < BENCH_BATCH; k++) {
        const char *v = oa_get(f, key_of(ks, o->idx[p]), BENCH_KEY_LEN);
        if (!v) {
            err = -1;
            break;
        }
        acc += (unsigned char)v[0];
        if (++p == o->len)
            p = 0;
    }
    o->pos = p;
    atomic_fetch_add_explicit(&bench_sink, acc, memory_order_relaxed);
    return err;
}

/* A cache whose L1 holds every key of `ks`, and the floor with the same. */
static int build_l1(const bench_cfg *cfg, const keyset *ks, tc_cache **cout,
                    oa_tab **fout)
{
    tc_options o;
    bench_cache_options(cfg, &o);
    o.l1_max_entries = ks->n * 2;
    o.l1_max_bytes = ks->n * (ks->vlen + BENCH_KEY_LEN + 512) * 2;
    tc_cache *c = bench_cache_create(&o);
    if (!c)
        return -1;
    oa_tab *f = oa_create(ks->n);
    char *val = malloc(ks->vlen);
    const void *keys[256];
    size_t klens[256];
    tc_value *out[256];
    tc_result res[256];
    int err = !f || !val;
    for (size_t b = 0; b < ks->n && !err; b += 256) {
        size_t m = ks->n - b < 256 ? ks->n - b : 256;
        for (size_t j = 0; j < m; j++) {
            keys[j] = key_of(ks, b + j);
            klens[j] = BENCH_KEY_LEN;
        }
        tc_result r = tc_mget(c, m, keys, klens, out, res);
        for (size_t j = 0; j < m; j++) {
            if (res[j] != TC_OK || !out[j] || tc_value_len(out[j]) != ks->vlen)
                err = 1;
            tc_value_release(out[j]);
        }
        if (r != TC_OK || err) {
            fprintf(stderr, "tc-bench: tc_mget: %s (%s)\n", tc_strerror(r),
                    tc_errmsg());
            err = 1;
        }
        for (size_t j = 0; j < m && !err; j++) {
            bench_value(val, ks->vlen, b + j);
            err = oa_put(f, key_of(ks, b + j), BENCH_KEY_LEN, val,
                            ks->vlen) != 0;
        }
    }
    free(val);
    tc_stats st;
    tc_cache_stats(c, &st);
    if (!err && st.l1_entries < ks->n)
        fprintf(stderr, "tc-bench: warning: L1 holds %llu of %zu keys\n",
                (unsigned long long)st.l1_entries, ks->n);
    if (err) {
        oa_destroy(f);
        tc_cache_destroy(c);
        return -1;
    }
    *cout = c;
    *fout = f;
    return 0;
}

/* A Zipf(1.0) access order over the key set (hot keys first in rank order,
 * ranks shuffled onto keys): what a cache in front of real traffic sees. */
uint32_t *bench_zipf_order(bench_rng *rng, size_t n, size_t len)
{
    double *cdf = malloc(n * sizeof *cdf);
    uint32_t *out = malloc(len * sizeof *out);
    uint32_t *perm = rng_perm(rng, n);
    if (!cdf || !out || !perm) {
        free(cdf);
        free(out);
        free(perm);
        return NULL;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        cdf[i] = (sum += 1.0 / (double)(i + 1));
    for (size_t i = 0; i < len; i++) {
        double u = rng_unit(rng) * sum;
        size_t lo = 0, hi = n - 1;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        out[i] = perm[lo];
    }
    free(cdf);
    free(perm);
    return out;
}

/* ---- all four, interleaved ------------------------------------------------ */

enum { S_RAW, S_L2, S_FLOOR, S_L1, S_FLOOR_Z, S_L1_Z, S_COUNT };

typedef struct lat_run {
    samples s[S_COUNT];
} lat_run;

/*
 * Rounds of six blocks (raw GET, L2 hit, floor, L1, floor Zipf, L1 Zipf),
 * the block order rotating every round. Raw and L2 blocks time each get;
 * floor and L1 blocks time batches of BENCH_BATCH gets.
 */
static int measure_all(const bench_cfg *cfg, const keyset *ks, tc_cache *l1c,
                       oa_tab *f, const uint32_t *zseq, size_t zlen,
                       size_t nops, size_t nbatches, lat_run *out)
{
    const size_t warm = 1000, blk = 250;
    if (nops + warm > ks->n)
        nops = ks->n > warm ? ks->n - warm : ks->n / 2;
    redisContext *rc = bench_redis_connect(cfg);
    if (!rc)
        return -1;
    tc_options o;
    bench_cache_options(cfg, &o);
    o.l1_max_entries = 1024; /* one pass over a permutation: never a hit */
    tc_cache *l2c = bench_cache_create(&o);
    if (!l2c) {
        redisFree(rc);
        return -1;
    }
    order uni_f = {ks->perm, ks->n, 0}, uni_l = {ks->perm, ks->n, ks->n / 3};
    order z_f = {zseq, zlen, 0}, z_l = {zseq, zlen, zlen / 3};
    int err = 0;
    /* Warm connections, buffers and Redis on keys the timed part skips,
     * and walk every L1 key once. */
    for (size_t i = ks->n - warm; i < ks->n && !err; i++)
        err = raw_get(rc, ks, ks->perm[i]) ||
              tc_get_check(l2c, ks, ks->perm[i]);
    for (size_t i = 0; i < ks->n / BENCH_BATCH + 1 && !err; i++)
        err = l1_batch(l1c, ks, &uni_l) || floor_batch(f, ks, &uni_f);
    tc_stats a0, a1, b0, b1;
    tc_cache_stats(l2c, &a0);
    tc_cache_stats(l1c, &b0);
    size_t rounds = (nops + blk - 1) / blk;
    size_t per_round = nbatches / rounds ? nbatches / rounds : 1;
    for (size_t r = 0; r < rounds && !err; r++) {
        size_t b = r * blk, e = b + blk < nops ? b + blk : nops;
        for (int k = 0; k < S_COUNT && !err; k++) {
            int kind = (int)((k + (int)r) % S_COUNT);
            if (kind == S_RAW || kind == S_L2) {
                for (size_t i = b; i < e && !err; i++) {
                    /* Raw reads other keys than the L2 side, so that
                     * neither finds the other's key hot in Redis. */
                    size_t key = kind == S_RAW
                                     ? ks->perm[(i + ks->n / 2) %
                                                (ks->n - warm)]
                                     : ks->perm[i];
                    uint64_t t0 = bench_now_ns();
                    err = kind == S_RAW ? raw_get(rc, ks, key)
                                        : tc_get_check(l2c, ks, key);
                    samples_add(&out->s[kind],
                                (double)(bench_now_ns() - t0));
                }
                continue;
            }
            for (size_t i = 0; i < per_round && !err; i++) {
                uint64_t t0 = bench_now_ns();
                switch (kind) {
                case S_FLOOR: err = floor_batch(f, ks, &uni_f); break;
                case S_L1: err = l1_batch(l1c, ks, &uni_l); break;
                case S_FLOOR_Z: err = floor_batch(f, ks, &z_f); break;
                default: err = l1_batch(l1c, ks, &z_l); break;
                }
                samples_add(&out->s[kind], (double)(bench_now_ns() - t0) /
                                               BENCH_BATCH);
            }
        }
    }
    tc_cache_stats(l2c, &a1);
    tc_cache_stats(l1c, &b1);
    if (err) {
        fprintf(stderr, "tc-bench: get failed: %s\n",
                rc->err ? rc->errstr : tc_errmsg());
    } else {
        char key[64];
        uint64_t hits = a1.l1_hits - a0.l1_hits, l2h = a1.l2_hits - a0.l2_hits;
        snprintf(key, sizeof key, "l2_get_l1_hits%s", ks->suffix);
        res_num(key, (double)hits);
        if (hits != 0 || l2h != out->s[S_L2].n)
            fprintf(stderr,
                    "tc-bench: warning: L2-hit run saw %llu L1 hits and %llu "
                    "L2 hits for %zu gets\n",
                    (unsigned long long)hits, (unsigned long long)l2h,
                    out->s[S_L2].n);
        uint64_t ops = (uint64_t)(out->s[S_L1].n + out->s[S_L1_Z].n) *
                       BENCH_BATCH;
        hits = b1.l1_hits - b0.l1_hits;
        snprintf(key, sizeof key, "l1_get_hit_fraction%s", ks->suffix);
        res_num(key, (double)hits / (double)ops);
        if (hits != ops)
            printf("   note: %llu of %llu L1-hit gets did not hit L1 (%llu "
                   "bypassed: the bus lease lapsed)\n",
                   (unsigned long long)(ops - hits), (unsigned long long)ops,
                   (unsigned long long)(b1.l1_bypassed - b0.l1_bypassed));
    }
    tc_cache_destroy(l2c);
    redisFree(rc);
    return err ? -1 : 0;
}

/* ---- thread scaling ------------------------------------------------------ */

typedef struct scale_arg {
    pthread_t th;
    int kind; /* K_* */
    tc_cache *c;
    oa_tab *f;
    const keyset *ks;
    order ord;
    pthread_barrier_t *bar;
    atomic_int *stop;
    uint64_t ops;
    int err;
} scale_arg;

/* Pure arithmetic, no memory traffic: how many cores the machine really
 * gives us right now (a VM's vCPUs may share a physical core). */
static int spin_batch(order *o)
{
    uint64_t x = o->pos | 1;
    for (int k = 0; k < BENCH_BATCH * 16; k++)
        x = x * 6364136223846793005u + 1442695040888963407u;
    o->pos = (size_t)x;
    return 0;
}

enum { K_FLOOR, K_L1, K_FLOOR_Z, K_L1_Z, K_SPIN, K_KINDS };

static void *scale_worker(void *p)
{
    scale_arg *a = p;
    pthread_barrier_wait(a->bar);
    while (!atomic_load_explicit(a->stop, memory_order_relaxed) && !a->err) {
        for (int k = 0; k < 8 && !a->err; k++)
            a->err = a->kind == K_SPIN ? spin_batch(&a->ord)
                     : a->kind == K_FLOOR || a->kind == K_FLOOR_Z
                         ? floor_batch(a->f, a->ks, &a->ord)
                         : l1_batch(a->c, a->ks, &a->ord);
        a->ops += 8 * BENCH_BATCH;
    }
    atomic_fetch_add_explicit(&bench_sink, (unsigned)a->ord.pos,
                              memory_order_relaxed);
    return NULL;
}

/* Aggregate Mops/s of `threads` threads for `dur_ms`; <0 on failure. */
static double scale_run(int kind, tc_cache *c, oa_tab *f,
                        const keyset *ks, const order *zipf, unsigned threads,
                        unsigned dur_ms)
{
    scale_arg *a = calloc(threads, sizeof *a);
    if (!a)
        return -1;
    pthread_barrier_t bar;
    atomic_int stop;
    atomic_init(&stop, 0);
    pthread_barrier_init(&bar, NULL, threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        a[t].kind = kind;
        a[t].c = c;
        a[t].f = f;
        a[t].ks = ks;
        if (kind == K_FLOOR_Z || kind == K_L1_Z)
            a[t].ord = (order){zipf->idx, zipf->len,
                               (size_t)t * zipf->len / threads};
        else
            a[t].ord = (order){ks->perm, ks->n, (size_t)t * ks->n / threads};
        a[t].bar = &bar;
        a[t].stop = &stop;
        if (pthread_create(&a[t].th, NULL, scale_worker, &a[t]) != 0) {
            fprintf(stderr, "tc-bench: pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&bar);
    uint64_t t0 = bench_now_ns();
    bench_sleep_us(dur_ms * 1000u);
    atomic_store(&stop, 1);
    uint64_t ops = 0;
    int err = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(a[t].th, NULL);
        ops += a[t].ops;
        err |= a[t].err;
    }
    uint64_t dt = bench_now_ns() - t0;
    pthread_barrier_destroy(&bar);
    free(a);
    return err ? -1 : (double)ops / ((double)dt / 1e3);
}


#define SCALE_REPS 5

/*
 * Rounds of (floor, L1, CPU spin) x (1 thread, 2 threads, ...), in rotating
 * order. Each point is the median over rounds; each scaling factor is the
 * median of the per-round ratios, so a noisy round spoils one ratio, not
 * the figure.
 */
static void bench_scaling(const bench_cfg *cfg, const keyset *ks, tc_cache *c,
                          oa_tab *f, const order *zipf)
{
    unsigned counts[3] = {1, 2, cfg->threads};
    size_t npts = (cfg->threads && cfg->threads != 1 && cfg->threads != 2)
                      ? 3 : 2;
    const size_t reps = cfg->quick ? 1 : SCALE_REPS;
    const unsigned dur = cfg->quick ? 100 : 150;
    double mops[K_KINDS][3][SCALE_REPS], ratio[K_KINDS][3][SCALE_REPS];
    tc_stats s0, s1;
    tc_cache_stats(c, &s0);
    for (size_t r = 0; r < reps; r++) {
        for (size_t k = 0; k < K_KINDS * npts; k++) {
            size_t j = (k + r) % (K_KINDS * npts), p = j / K_KINDS;
            int kind = (int)(j % K_KINDS);
            double v = scale_run(kind, c, f, ks, zipf, counts[p], dur);
            if (v < 0) {
                fprintf(stderr, "tc-bench: thread scaling run failed\n");
                bench_fail();
                return;
            }
            mops[kind][p][r] = v;
        }
        for (int kind = 0; kind < K_KINDS; kind++)
            for (size_t p = 0; p < npts; p++)
                ratio[kind][p][r] = mops[kind][p][r] / mops[kind][0][r];
    }
    tc_cache_stats(c, &s1);
    printf("\n2. L1 hit throughput, %s values, %zu keys, all threads on one "
           "cache (median of %zu rounds\n   of %u ms per point, order "
           "rotating); CPU spin: a dependent multiply chain, no memory\n",
           ks->label, ks->n, reps, dur);
    printf("   %-8s %-14s %11s %8s %13s %8s\n", "threads", "key order",
           "L1 Mops/s", "scaling", "floor Mops/s", "scaling");
    static const char *const names[K_KINDS] = {"floor", "l1", "floor_zipf",
                                               "l1_zipf", "cpu"};
    for (int z = 0; z < 2; z++) {
        int kl = z ? K_L1_Z : K_L1, kf = z ? K_FLOOR_Z : K_FLOOR;
        for (size_t p = 0; p < npts; p++) {
            double m[K_KINDS], q[K_KINDS];
            for (int kind = 0; kind < K_KINDS; kind++) {
                m[kind] = bench_median(mops[kind][p], reps);
                q[kind] = bench_median(ratio[kind][p], reps);
                char key[64];
                if (z == 1)
                    continue; /* record once */
                if (kind != K_SPIN) {
                    snprintf(key, sizeof key, "%s_mops_%ut", names[kind],
                             counts[p]);
                    res_num(key, m[kind]);
                }
                snprintf(key, sizeof key, "%s_scaling_%ut", names[kind],
                         counts[p]);
                res_num(key, q[kind]);
            }
            printf("   %-8u %-14s %11.2f %7.2fx %13.2f %7.2fx\n", counts[p],
                   z ? "Zipf 1.0" : "uniform", m[kl], q[kl], m[kf], q[kf]);
        }
    }
    for (size_t p = 1; p < npts; p++)
        printf("   CPU spin, %u threads: %.2fx of one thread\n", counts[p],
               bench_median(ratio[K_SPIN][p], reps));
    uint64_t bypass = s1.l1_bypassed - s0.l1_bypassed;
    uint64_t rt = s1.l2_round_trips - s0.l2_round_trips;
    res_num("l1_scaling_bypassed", (double)bypass);
    if (bypass || rt)
        printf("   note: %llu reads bypassed L1 (bus lease lapsed) and %llu "
               "L2 round trips while threads were busy\n",
               (unsigned long long)bypass, (unsigned long long)rt);
}

/* ---- driver -------------------------------------------------------------- */

static int keyset_init(keyset *ks, bench_rng *rng, char cls, size_t n,
                       size_t vlen, const char *label, const char *suffix)
{
    memset(ks, 0, sizeof *ks);
    ks->cls = cls;
    ks->n = n;
    ks->vlen = vlen;
    ks->label = label;
    ks->suffix = suffix;
    ks->raw = malloc(n * sizeof *ks->raw);
    ks->perm = rng_perm(rng, n);
    if (!ks->raw || !ks->perm)
        return -1;
    for (size_t i = 0; i < n; i++) {
        memcpy(ks->raw[i], BENCH_PREFIX, BENCH_PREFIX_LEN);
        bench_key(ks->raw[i] + BENCH_PREFIX_LEN, cls, i);
    }
    return 0;
}

static void keyset_free(keyset *ks)
{
    free(ks->raw);
    free(ks->perm);
}

static void one_size(const bench_cfg *cfg, bench_rng *rng, char cls,
                     size_t vlen, const char *label, const char *suffix)
{
    keyset ks;
    if (keyset_init(&ks, rng, cls, cfg->keys, vlen, label, suffix) != 0 ||
        bench_l2_fill(cfg, cls, ks.n, vlen) != 0) {
        fprintf(stderr, "tc-bench: %s latency skipped\n", label);
        bench_fail();
        keyset_free(&ks);
        return;
    }
    lat_run run;
    memset(&run, 0, sizeof run);
    size_t nops = cfg->quick ? 3000 : ks.n;
    if (vlen > 1024 && !cfg->quick)
        nops = ks.n / 2;
    size_t nbatches = cfg->quick ? 2000 : 40000;
    size_t zlen = (size_t)1 << 20;
    uint32_t *zseq = bench_zipf_order(rng, ks.n, zlen);
    tc_cache *c = NULL;
    oa_tab *f = NULL;
    int ok = zseq && build_l1(cfg, &ks, &c, &f) == 0 &&
             measure_all(cfg, &ks, c, f, zseq, zlen, nops, nbatches,
                         &run) == 0;
    if (ok) {
        static const struct {
            int s;
            const char *name, *json;
            int ns;
        } rows[] = {
            {S_FLOOR, "floor: flat open addr. (batched*)", "floor_get", 1},
            {S_L1, "tiercache L1 hit (batched*)", "l1_get", 1},
            {S_L2, "tiercache L2 hit (L1 miss)", "l2_get", 0},
            {S_RAW, "raw hiredis GET", "raw_get", 0},
            {S_FLOOR_Z, "floor, Zipf 1.0 order (batched*)", "floor_get_zipf",
             1},
            {S_L1_Z, "L1 hit, Zipf 1.0 order (batched*)", "l1_get_zipf", 1},
        };
        printf("   %s values\n", label);
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            char pre[64];
            snprintf(pre, sizeof pre, "%s%s", rows[i].json, suffix);
            put_row(rows[i].name, &run.s[rows[i].s], 1, pre, rows[i].ns);
        }
        char key[64];
        snprintf(key, sizeof key, "l2_get_samples%s", suffix);
        res_num(key, (double)run.s[S_L2].n);
        snprintf(key, sizeof key, "l1_get_samples%s", suffix);
        res_num(key, (double)run.s[S_L1].n);
    } else {
        fprintf(stderr, "tc-bench: %s latency failed\n", label);
        bench_fail();
    }
    fflush(stdout);
    oa_destroy(f);
    tc_cache_destroy(c);
    for (int i = 0; i < S_COUNT; i++)
        samples_free(&run.s[i]);
    free(zseq);
    bench_l2_drop(cfg, cls, ks.n);
    keyset_free(&ks);
}

void bench_latency(const bench_cfg *cfg)
{
    bench_rng rng;
    rng_seed(&rng, cfg->seed ^ 0x4c4154u);
    printf("\n1. get latency, %zu keys of %d B, uniform random order unless "
           "noted, %s;\n   the six rows of a size run interleaved in rotating "
           "blocks\n",
           cfg->keys, BENCH_KEY_LEN, cfg->transport);
    printf("   %-34s %10s %10s %10s %11s\n", "", "p50", "p99", "p99.9",
           "ops/s");
    fflush(stdout);
    one_size(cfg, &rng, 's', 64, "64 B", "");
    one_size(cfg, &rng, 'l', 4096, "4 KiB", "_4k");
    printf("   * batched: each sample is one timed batch of %d gets divided "
           "by %d,\n     so p99/p99.9 are of batch means (a clock read costs "
           "about as much as a get)\n",
           BENCH_BATCH, BENCH_BATCH);
    fflush(stdout);
}

/* Section 2 builds its own 64 B set, so that --only can pick it. */
void bench_scaling_section(const bench_cfg *cfg)
{
    bench_rng rng;
    rng_seed(&rng, cfg->seed ^ 0x5343u);
    keyset ks;
    if (keyset_init(&ks, &rng, 't', cfg->keys, 64, "64 B", "") != 0 ||
        bench_l2_fill(cfg, 't', ks.n, 64) != 0) {
        keyset_free(&ks);
        fprintf(stderr, "tc-bench: scaling skipped\n");
        bench_fail();
        return;
    }
    tc_cache *c = NULL;
    oa_tab *f = NULL;
    size_t zlen = (size_t)1 << 20;
    uint32_t *zseq = bench_zipf_order(&rng, ks.n, zlen);
    order zipf = {zseq, zlen, 0};
    if (zseq && build_l1(cfg, &ks, &c, &f) == 0)
        bench_scaling(cfg, &ks, c, f, &zipf);
    else
        bench_fail();
    free(zseq);
    oa_destroy(f);
    tc_cache_destroy(c);
    bench_l2_drop(cfg, 't', ks.n);
    keyset_free(&ks);
    fflush(stdout);
}
