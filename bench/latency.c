/*
 * Sections 1 and 2: get latency of the four ways to read a key (raw hiredis
 * GET, tiercache L2 hit, tiercache L1 hit, the uthash+mutex floor) for 64 B
 * and 4 KiB values, and the thread scaling of L1 hits.
 *
 * Fairness: every pair that is compared runs interleaved in blocks, with the
 * block order alternating, so a noisy neighbour hurts both sides alike. The
 * L2-hit cache has a 1024-entry L1 and reads each key once, in a random
 * order, so every get is a true L1 miss that goes to L2 and fills L1 (which
 * is what an L2 hit costs a real caller); the statistics confirm it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "floor.h"

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

static unsigned default_shards(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = 16u * (unsigned)(cpus > 0 ? cpus : 1), s = 1;
    while (s < want && s < 1024)
        s <<= 1;
    return s;
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

static int measure_l2(const bench_cfg *cfg, const keyset *ks, size_t nops,
                      samples *raw, samples *l2)
{
    const size_t warm = 1000;
    if (nops + warm > ks->n)
        nops = ks->n > warm ? ks->n - warm : ks->n / 2;
    redisContext *rc = bench_redis_connect(cfg);
    if (!rc)
        return -1;
    tc_options o;
    bench_cache_options(cfg, &o);
    o.l1_max_entries = 1024; /* one pass over a permutation: never a hit */
    tc_cache *c = bench_cache_create(&o);
    if (!c) {
        redisFree(rc);
        return -1;
    }
    int err = 0;
    /* Warm connections, buffers and Redis on keys the timed part skips. */
    for (size_t i = ks->n - warm; i < ks->n && !err; i++)
        err = raw_get(rc, ks, ks->perm[i]) || tc_get_check(c, ks, ks->perm[i]);
    tc_stats s0, s1;
    tc_cache_stats(c, &s0);
    const size_t blk = 250;
    for (size_t b = 0; b < nops && !err; b += blk) {
        size_t e = b + blk < nops ? b + blk : nops;
        int raw_first = (int)((b / blk) & 1);
        for (int pass = 0; pass < 2 && !err; pass++) {
            if ((pass == 0) == raw_first) {
                for (size_t i = b; i < e && !err; i++) {
                    /* A different key than the L2 side reads now, so that
                     * neither side finds the other's key hot in Redis. */
                    size_t k = ks->perm[(i + ks->n / 2) % (ks->n - warm)];
                    uint64_t t0 = bench_now_ns();
                    err = raw_get(rc, ks, k);
                    samples_add(raw, (double)(bench_now_ns() - t0));
                }
            } else {
                for (size_t i = b; i < e && !err; i++) {
                    uint64_t t0 = bench_now_ns();
                    err = tc_get_check(c, ks, ks->perm[i]);
                    samples_add(l2, (double)(bench_now_ns() - t0));
                }
            }
        }
    }
    tc_cache_stats(c, &s1);
    if (err) {
        fprintf(stderr, "tc-bench: get failed: %s\n",
                rc->err ? rc->errstr : tc_errmsg());
    } else {
        uint64_t hits = s1.l1_hits - s0.l1_hits;
        uint64_t l2h = s1.l2_hits - s0.l2_hits;
        char key[64];
        snprintf(key, sizeof key, "l2_get_l1_hits%s", ks->suffix);
        res_num(key, (double)hits);
        if (hits != 0 || l2h != nops)
            fprintf(stderr,
                    "tc-bench: warning: L2-hit run saw %llu L1 hits and %llu "
                    "L2 hits for %zu gets\n",
                    (unsigned long long)hits, (unsigned long long)l2h, nops);
    }
    tc_cache_destroy(c);
    redisFree(rc);
    return err ? -1 : 0;
}

/* ---- L1 hit against the floor -------------------------------------------- */

static int l1_batch(tc_cache *c, const keyset *ks, size_t *pos)
{
    size_t p = *pos;
    unsigned acc = 0;
    int err = 0;
    for (int k = 0; k < BENCH_BATCH; k++) {
        tc_value *v = NULL;
        if (tc_get(c, key_of(ks, ks->perm[p]), BENCH_KEY_LEN, &v) != TC_OK) {
            err = -1;
            break;
        }
        acc += *(const unsigned char *)tc_value_data(v);
        tc_value_release(v);
        if (++p == ks->n)
            p = 0;
    }
    *pos = p;
    atomic_fetch_add_explicit(&bench_sink, acc, memory_order_relaxed);
    return err;
}

static int floor_batch(floor_tab *f, const keyset *ks, size_t *pos)
{
    size_t p = *pos;
    unsigned acc = 0;
    int err = 0;
    for (int k = 0; k < BENCH_BATCH; k++) {
        floor_ent *e = floor_get(f, key_of(ks, ks->perm[p]), BENCH_KEY_LEN);
        if (!e) {
            err = -1;
            break;
        }
        acc += (unsigned char)floor_value(e)[0];
        floor_release(e);
        if (++p == ks->n)
            p = 0;
    }
    *pos = p;
    atomic_fetch_add_explicit(&bench_sink, acc, memory_order_relaxed);
    return err;
}

/* A cache whose L1 holds every key of `ks`, and the floor with the same. */
static int build_l1(const bench_cfg *cfg, const keyset *ks, tc_cache **cout,
                    floor_tab **fout)
{
    tc_options o;
    bench_cache_options(cfg, &o);
    o.l1_max_entries = ks->n * 2;
    o.l1_max_bytes = ks->n * (ks->vlen + BENCH_KEY_LEN + 512) * 2;
    tc_cache *c = bench_cache_create(&o);
    if (!c)
        return -1;
    floor_tab *f = floor_create(default_shards());
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
            err = floor_put(f, key_of(ks, b + j), BENCH_KEY_LEN, val,
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
        floor_destroy(f);
        tc_cache_destroy(c);
        return -1;
    }
    *cout = c;
    *fout = f;
    return 0;
}

static int measure_l1(const keyset *ks, tc_cache *c, floor_tab *f,
                      size_t nbatches, samples *fl, samples *l1)
{
    size_t pf = 0, pl = ks->n / 3;
    /* Warm-up pass over every key (not timed). */
    for (size_t i = 0; i < ks->n / BENCH_BATCH + 1; i++)
        if (l1_batch(c, ks, &pl) || floor_batch(f, ks, &pf))
            return -1;
    tc_stats s0, s1;
    tc_cache_stats(c, &s0);
    const size_t blk = 200;
    for (size_t b = 0; b < nbatches; b += blk) {
        size_t e = b + blk < nbatches ? b + blk : nbatches;
        int floor_first = (int)((b / blk) & 1);
        for (int pass = 0; pass < 2; pass++) {
            int do_floor = (pass == 0) == floor_first;
            for (size_t i = b; i < e; i++) {
                uint64_t t0 = bench_now_ns();
                int err = do_floor ? floor_batch(f, ks, &pf)
                                   : l1_batch(c, ks, &pl);
                uint64_t dt = bench_now_ns() - t0;
                if (err) {
                    fprintf(stderr, "tc-bench: %s lookup missed\n",
                            do_floor ? "floor" : "L1");
                    return -1;
                }
                samples_add(do_floor ? fl : l1, (double)dt / BENCH_BATCH);
            }
        }
    }
    tc_cache_stats(c, &s1);
    uint64_t ops = (uint64_t)nbatches * BENCH_BATCH;
    uint64_t hits = s1.l1_hits - s0.l1_hits;
    uint64_t rt = s1.l2_round_trips - s0.l2_round_trips;
    char key[64];
    snprintf(key, sizeof key, "l1_get_hit_fraction%s", ks->suffix);
    res_num(key, (double)hits / (double)ops);
    if (hits != ops || rt != 0)
        fprintf(stderr,
                "tc-bench: warning: L1-hit run: %llu L1 hits, %llu L2 round "
                "trips, %llu bypassed for %llu gets\n",
                (unsigned long long)hits, (unsigned long long)rt,
                (unsigned long long)(s1.l1_bypassed - s0.l1_bypassed),
                (unsigned long long)ops);
    return 0;
}

/* ---- thread scaling ------------------------------------------------------ */

typedef struct scale_arg {
    pthread_t th;
    int use_floor;
    tc_cache *c;
    floor_tab *f;
    const keyset *ks;
    size_t pos;
    pthread_barrier_t *bar;
    atomic_int *stop;
    uint64_t ops;
    int err;
} scale_arg;

static void *scale_worker(void *p)
{
    scale_arg *a = p;
    pthread_barrier_wait(a->bar);
    while (!atomic_load_explicit(a->stop, memory_order_relaxed) && !a->err) {
        for (int k = 0; k < 8 && !a->err; k++)
            a->err = a->use_floor ? floor_batch(a->f, a->ks, &a->pos)
                                  : l1_batch(a->c, a->ks, &a->pos);
        a->ops += 8 * BENCH_BATCH;
    }
    return NULL;
}

/* Aggregate Mops/s of `threads` threads for `dur_ms`; <0 on failure. */
static double scale_run(int use_floor, tc_cache *c, floor_tab *f,
                        const keyset *ks, unsigned threads, unsigned dur_ms)
{
    scale_arg *a = calloc(threads, sizeof *a);
    if (!a)
        return -1;
    pthread_barrier_t bar;
    atomic_int stop;
    atomic_init(&stop, 0);
    pthread_barrier_init(&bar, NULL, threads + 1);
    unsigned started = 0;
    for (unsigned t = 0; t < threads; t++) {
        a[t].use_floor = use_floor;
        a[t].c = c;
        a[t].f = f;
        a[t].ks = ks;
        a[t].pos = (size_t)t * ks->n / threads;
        a[t].bar = &bar;
        a[t].stop = &stop;
        if (pthread_create(&a[t].th, NULL, scale_worker, &a[t]) != 0)
            break;
        started++;
    }
    if (started < threads) { /* cannot happen short of resource limits */
        fprintf(stderr, "tc-bench: pthread_create failed\n");
        exit(1);
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

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void bench_scaling(const bench_cfg *cfg, const keyset *ks, tc_cache *c,
                          floor_tab *f)
{
    unsigned counts[3] = {1, 2, cfg->threads};
    unsigned npts = (cfg->threads && cfg->threads != 1 && cfg->threads != 2)
                        ? 3 : 2;
    const int reps = cfg->quick ? 1 : 3;
    const unsigned dur = cfg->quick ? 150 : 400;
    double l1m[3][3], flm[3][3];
    tc_stats s0, s1;
    tc_cache_stats(c, &s0);
    for (int r = 0; r < reps; r++)
        for (unsigned p = 0; p < npts; p++) {
            flm[p][r] = scale_run(1, c, f, ks, counts[p], dur);
            l1m[p][r] = scale_run(0, c, f, ks, counts[p], dur);
            if (flm[p][r] < 0 || l1m[p][r] < 0) {
                fprintf(stderr, "tc-bench: thread scaling run failed\n");
                return;
            }
        }
    tc_cache_stats(c, &s1);
    printf("\n2. L1 hit throughput, %s values, %zu keys, all threads on one "
           "cache (median of %d x %u ms)\n",
           ks->label, ks->n, reps, dur);
    printf("   %-8s %14s %10s %16s %10s\n", "threads", "L1 Mops/s", "scaling",
           "floor Mops/s", "scaling");
    double l1_base = 0, fl_base = 0;
    for (unsigned p = 0; p < npts; p++) {
        qsort(l1m[p], (size_t)reps, sizeof(double), cmp_d);
        qsort(flm[p], (size_t)reps, sizeof(double), cmp_d);
        double l = l1m[p][reps / 2], fm = flm[p][reps / 2];
        if (p == 0) {
            l1_base = l;
            fl_base = fm;
        }
        printf("   %-8u %14.2f %9.2fx %16.2f %9.2fx\n", counts[p], l,
               l / l1_base, fm, fm / fl_base);
        char key[64];
        snprintf(key, sizeof key, "l1_mops_%ut", counts[p]);
        res_num(key, l);
        snprintf(key, sizeof key, "floor_mops_%ut", counts[p]);
        res_num(key, fm);
    }
    uint64_t bypass = s1.l1_bypassed - s0.l1_bypassed;
    uint64_t rt = s1.l2_round_trips - s0.l2_round_trips;
    res_num("l1_scaling_bypassed", (double)bypass);
    if (bypass || rt)
        printf("   note: %llu reads bypassed L1 and %llu went to L2 while "
               "threads were busy\n",
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
                     size_t vlen, const char *label, const char *suffix,
                     int scaling)
{
    keyset ks;
    if (keyset_init(&ks, rng, cls, cfg->keys, vlen, label, suffix) != 0 ||
        bench_l2_fill(cfg, cls, ks.n, vlen) != 0) {
        fprintf(stderr, "tc-bench: %s latency skipped\n", label);
        keyset_free(&ks);
        return;
    }
    samples raw = {0}, l2 = {0}, fl = {0}, l1 = {0};
    size_t nops = cfg->quick ? 3000 : ks.n;
    if (vlen > 1024 && !cfg->quick)
        nops = ks.n / 2;
    size_t nbatches = cfg->quick ? 2000 : 40000;
    tc_cache *c = NULL;
    floor_tab *f = NULL;
    int ok = measure_l2(cfg, &ks, nops, &raw, &l2) == 0 &&
             build_l1(cfg, &ks, &c, &f) == 0 &&
             measure_l1(&ks, c, f, nbatches, &fl, &l1) == 0;
    if (ok) {
        char pre[64];
        printf("   %s values\n", label);
        snprintf(pre, sizeof pre, "floor_get%s", suffix);
        put_row("floor: uthash+mutex (batched*)", &fl, 1, pre, 1);
        snprintf(pre, sizeof pre, "l1_get%s", suffix);
        put_row("tiercache L1 hit (batched*)", &l1, 1, pre, 1);
        snprintf(pre, sizeof pre, "l2_get%s", suffix);
        put_row("tiercache L2 hit (L1 miss)", &l2, 1, pre, 0);
        snprintf(pre, sizeof pre, "raw_get%s", suffix);
        put_row("raw hiredis GET", &raw, 1, pre, 0);
        char key[64];
        snprintf(key, sizeof key, "l2_get_samples%s", suffix);
        res_num(key, (double)l2.n);
        snprintf(key, sizeof key, "l1_get_samples%s", suffix);
        res_num(key, (double)l1.n);
        fflush(stdout);
        if (scaling)
            bench_scaling(cfg, &ks, c, f);
    } else {
        fprintf(stderr, "tc-bench: %s latency failed\n", label);
    }
    floor_destroy(f);
    tc_cache_destroy(c);
    samples_free(&raw);
    samples_free(&l2);
    samples_free(&fl);
    samples_free(&l1);
    bench_l2_drop(cfg, cls, ks.n);
    keyset_free(&ks);
}

void bench_latency(const bench_cfg *cfg)
{
    bench_rng rng;
    rng_seed(&rng, cfg->seed ^ 0x4c4154u);
    printf("\n1. get latency, %zu keys of %d B in random order, %s\n",
           cfg->keys, BENCH_KEY_LEN, cfg->transport);
    printf("   %-34s %10s %10s %10s %11s\n", "", "p50", "p99", "p99.9",
           "ops/s");
    fflush(stdout);
    one_size(cfg, &rng, 's', 64, "64 B", "", 0);
    one_size(cfg, &rng, 'l', 4096, "4 KiB", "_4k", 0);
    printf("   * batched: each sample is one timed batch of %d gets divided "
           "by %d,\n     so p99/p99.9 are of batch means (a clock read costs "
           "about as much as a get)\n",
           BENCH_BATCH, BENCH_BATCH);
    fflush(stdout);
}

/* Section 2 reuses the 64 B set-up; it is its own entry point so that
 * --only can pick it. */
void bench_scaling_section(const bench_cfg *cfg)
{
    bench_rng rng;
    rng_seed(&rng, cfg->seed ^ 0x5343u);
    keyset ks;
    if (keyset_init(&ks, &rng, 't', cfg->keys, 64, "64 B", "") != 0 ||
        bench_l2_fill(cfg, 't', ks.n, 64) != 0) {
        keyset_free(&ks);
        fprintf(stderr, "tc-bench: scaling skipped\n");
        return;
    }
    tc_cache *c = NULL;
    floor_tab *f = NULL;
    if (build_l1(cfg, &ks, &c, &f) == 0)
        bench_scaling(cfg, &ks, c, f);
    floor_destroy(f);
    tc_cache_destroy(c);
    bench_l2_drop(cfg, 't', ks.n);
    keyset_free(&ks);
    fflush(stdout);
}
