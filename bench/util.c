/*
 * tc-bench helpers: time, percentiles, the results registry, the PRNG, and
 * the Redis plumbing shared by every section.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

_Atomic unsigned bench_sink;
static int failures;

void bench_fail(void)
{
    failures++;
}

int bench_failures(void)
{
    return failures;
}

/* ---- time ---------------------------------------------------------------- */

void bench_sleep_us(unsigned us)
{
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const char *bench_fmt_ns(char *buf, size_t len, double ns)
{
    if (isnan(ns))
        snprintf(buf, len, "-");
    else if (ns < 1000.0)
        snprintf(buf, len, "%.0f ns", ns);
    else if (ns < 100000.0)
        snprintf(buf, len, "%.1f us", ns / 1e3);
    else if (ns < 1e6)
        snprintf(buf, len, "%.0f us", ns / 1e3);
    else
        snprintf(buf, len, "%.2f ms", ns / 1e6);
    return buf;
}

/* ---- samples ------------------------------------------------------------- */

void samples_add(samples *s, double ns)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            fprintf(stderr, "tc-bench: out of memory\n");
            exit(1);
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = ns;
    s->sorted = 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double samples_pct(samples *s, double pct)
{
    if (s->n == 0)
        return NAN;
    if (!s->sorted) {
        qsort(s->v, s->n, sizeof *s->v, cmp_double);
        s->sorted = 1;
    }
    double rank = ceil(pct / 100.0 * (double)s->n);
    size_t i = rank < 1.0 ? 0 : (size_t)rank - 1;
    if (i >= s->n)
        i = s->n - 1;
    return s->v[i];
}

double samples_sum(const samples *s)
{
    double t = 0;
    for (size_t i = 0; i < s->n; i++)
        t += s->v[i];
    return t;
}

void samples_free(samples *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ---- results registry ---------------------------------------------------- */

typedef struct res_entry {
    char *key;
    char *str; /* NULL for numbers */
    double num;
} res_entry;

static res_entry *res_v;
static size_t res_n, res_cap;

static res_entry *res_slot(const char *key)
{
    for (size_t i = 0; i < res_n; i++)
        if (strcmp(res_v[i].key, key) == 0)
            return &res_v[i];
    if (res_n == res_cap) {
        size_t cap = res_cap ? res_cap * 2 : 64;
        res_entry *v = realloc(res_v, cap * sizeof *v);
        if (!v)
            return NULL;
        res_v = v;
        res_cap = cap;
    }
    res_entry *e = &res_v[res_n];
    e->key = strdup(key);
    if (!e->key)
        return NULL;
    e->str = NULL;
    e->num = NAN;
    res_n++;
    return e;
}

void res_num(const char *key, double v)
{
    res_entry *e = res_slot(key);
    if (!e)
        return;
    free(e->str);
    e->str = NULL;
    e->num = v;
}

void res_str(const char *key, const char *v)
{
    res_entry *e = res_slot(key);
    if (!e)
        return;
    free(e->str);
    e->str = strdup(v);
}

double res_get(const char *key)
{
    for (size_t i = 0; i < res_n; i++)
        if (strcmp(res_v[i].key, key) == 0)
            return res_v[i].str ? NAN : res_v[i].num;
    return NAN;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

int res_write_json(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tc-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fputs("{\n", f);
    for (size_t i = 0; i < res_n; i++) {
        fputs("  ", f);
        json_string(f, res_v[i].key);
        fputs(": ", f);
        if (res_v[i].str)
            json_string(f, res_v[i].str);
        else if (!isfinite(res_v[i].num))
            fputs("null", f);
        else if (res_v[i].num == floor(res_v[i].num) &&
                 fabs(res_v[i].num) < 1e15)
            fprintf(f, "%.0f", res_v[i].num);
        else
            fprintf(f, "%.6g", res_v[i].num);
        fputs(i + 1 < res_n ? ",\n" : "\n", f);
    }
    fputs("}\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "tc-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

void res_free(void)
{
    for (size_t i = 0; i < res_n; i++) {
        free(res_v[i].key);
        free(res_v[i].str);
    }
    free(res_v);
    res_v = NULL;
    res_n = res_cap = 0;
}

/* ---- PRNG ---------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void rng_seed(bench_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rng_next(bench_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_unit(bench_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

uint32_t *rng_perm(bench_rng *r, size_t n)
{
    uint32_t *p = malloc((n ? n : 1) * sizeof *p);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(r) % i);
        uint32_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* ---- keys and values ----------------------------------------------------- */

void bench_key(char out[BENCH_KEY_LEN + 1], char cls, size_t i)
{
    snprintf(out, BENCH_KEY_LEN + 1, "b%c:%013zu", cls, i % 10000000000000u);
}

void bench_value(char *out, size_t vlen, size_t i)
{
    char head[24];
    int n = snprintf(head, sizeof head, "%zu:", i);
    for (size_t k = 0; k < vlen; k++)
        out[k] = k < (size_t)n ? head[k] : (char)('a' + (k % 26));
}

/* ---- Redis --------------------------------------------------------------- */

redisContext *bench_redis_connect(const bench_cfg *cfg)
{
    struct timeval tv = {2, 0};
    redisContext *c = cfg->use_unix
                          ? redisConnectUnixWithTimeout(cfg->raw_unix, tv)
                          : redisConnectWithTimeout(cfg->raw_host,
                                                    cfg->raw_port, tv);
    if (!c || c->err) {
        fprintf(stderr, "tc-bench: cannot connect to Redis (%s): %s\n",
                cfg->transport, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (cfg->password[0]) {
        r = cfg->username[0]
                ? redisCommand(c, "AUTH %s %s", cfg->username, cfg->password)
                : redisCommand(c, "AUTH %s", cfg->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "tc-bench: Redis AUTH failed\n");
            if (r)
                freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (cfg->db > 0) {
        r = redisCommand(c, "SELECT %d", cfg->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "tc-bench: Redis SELECT %d failed\n", cfg->db);
            if (r)
                freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

/* Drain `n` pipelined replies; count errors. -1 on connection failure. */
static int drain(redisContext *c, size_t n)
{
    int errors = 0;
    for (size_t i = 0; i < n; i++) {
        void *rv = NULL;
        if (redisGetReply(c, &rv) != REDIS_OK)
            return -1;
        redisReply *r = rv;
        if (r->type == REDIS_REPLY_ERROR)
            errors++;
        freeReplyObject(r);
    }
    return errors;
}

static void log_stderr(void *ud, tc_log_level level, const char *msg)
{
    (void)ud;
    if (level >= TC_LOG_WARN)
        fprintf(stderr, "tiercache[%s]: %s\n",
                level == TC_LOG_WARN ? "warn" : "error", msg);
}

void bench_cache_options(const bench_cfg *cfg, tc_options *o)
{
    memset(o, 0, sizeof *o);
    o->url = cfg->url;
    o->ignore_env = TC_YES;
    o->key_prefix = BENCH_PREFIX;
    o->l1_ttl_ms = 600u * 1000u; /* outlives any run; L2 TTL stays 900 s */
    o->log = log_stderr;
}

tc_cache *bench_cache_create(const tc_options *o)
{
    tc_cache *c = NULL;
    tc_result r = tc_cache_create(o, &c);
    if (r != TC_OK) {
        fprintf(stderr, "tc-bench: tc_cache_create: %s (%s)\n",
                tc_strerror(r), tc_errmsg());
        return NULL;
    }
    tc_health h;
    uint64_t deadline = bench_now_ns() + 5000000000u;
    for (;;) {
        memset(&h, 0, sizeof h);
        tc_result hr = tc_cache_health(c, &h);
        if (hr == TC_OK && h.l2_up &&
            (o->coherence == TC_COHERENCE_NONE || h.bus_up))
            break;
        if (bench_now_ns() > deadline) {
            fprintf(stderr,
                    "tc-bench: cache not ready after 5 s (l2_up=%d "
                    "bus_up=%d: %s)\n",
                    h.l2_up, h.bus_up, tc_errmsg());
            tc_cache_destroy(c);
            return NULL;
        }
        bench_sleep_us(2000);
    }
    return c;
}

/* 1 if a cache reads key i of `cls` back as exactly the bytes we stored. */
static int check_layout(tc_cache *c, char cls, size_t i, size_t vlen,
                        char *buf)
{
    char key[BENCH_KEY_LEN + 1];
    bench_key(key, cls, i);
    bench_value(buf, vlen, i);
    tc_value *v = NULL;
    if (tc_get(c, key, BENCH_KEY_LEN, &v) != TC_OK)
        return 0;
    int ok = tc_value_len(v) == vlen &&
             memcmp(tc_value_data(v), buf, vlen) == 0;
    tc_value_release(v);
    return ok;
}

int bench_l2_fill(const bench_cfg *cfg, char cls, size_t n, size_t vlen)
{
    redisContext *rc = bench_redis_connect(cfg);
    if (!rc)
        return -1;
    char *val = malloc(vlen);
    if (!val) {
        redisFree(rc);
        return -1;
    }
    char key[BENCH_PREFIX_LEN + BENCH_KEY_LEN + 1];
    memcpy(key, BENCH_PREFIX, BENCH_PREFIX_LEN);
    size_t pending = 0;
    int rc_err = 0;
    for (size_t i = 0; i < n && rc_err == 0; i++) {
        bench_key(key + BENCH_PREFIX_LEN, cls, i);
        bench_value(val, vlen, i);
        redisAppendCommand(rc, "SET %b %b", key,
                           (size_t)(BENCH_PREFIX_LEN + BENCH_KEY_LEN), val,
                           vlen);
        if (++pending == 512) {
            rc_err = drain(rc, pending);
            pending = 0;
        }
    }
    if (rc_err == 0 && pending)
        rc_err = drain(rc, pending);
    if (rc_err != 0) {
        fprintf(stderr, "tc-bench: preloading L2 failed: %s\n",
                rc->err ? rc->errstr : "SET answered an error");
        free(val);
        redisFree(rc);
        return -1;
    }

    /* Does the library read raw values? Check a few keys through a cache. */
    tc_options o;
    bench_cache_options(cfg, &o);
    o.coherence = TC_COHERENCE_NONE;
    tc_cache *c = bench_cache_create(&o);
    if (!c) {
        free(val);
        redisFree(rc);
        return -1;
    }
    int ok = check_layout(c, cls, 0, vlen, val) &&
             check_layout(c, cls, n / 2, vlen, val) &&
             check_layout(c, cls, n - 1, vlen, val);
    if (!ok) {
        fprintf(stderr,
                "tc-bench: note: tiercache does not read raw SET values as "
                "stored; preloading %zu keys through tc_set instead\n",
                n);
        for (size_t i = 0; i < n; i++) {
            bench_key(key, cls, i);
            bench_value(val, vlen, i);
            tc_result r = tc_set(c, key, BENCH_KEY_LEN, val, vlen, 0);
            if (r != TC_OK) {
                fprintf(stderr, "tc-bench: tc_set: %s (%s)\n", tc_strerror(r),
                        tc_errmsg());
                tc_cache_destroy(c);
                free(val);
                redisFree(rc);
                return -1;
            }
        }
        /* The raw baseline must read the same keys, else it times nil
         * replies: check that it does. */
        bench_key(key + BENCH_PREFIX_LEN, cls, n / 2);
        redisReply *r = redisCommand(rc, "GET %b", key,
                                     (size_t)(BENCH_PREFIX_LEN + BENCH_KEY_LEN));
        int raw_ok = r && r->type == REDIS_REPLY_STRING &&
                     (size_t)r->len >= vlen;
        if (r)
            freeReplyObject(r);
        if (!raw_ok) {
            fprintf(stderr, "tc-bench: cannot find the library's L2 key "
                            "layout; the raw baseline would not be fair\n");
            tc_cache_destroy(c);
            free(val);
            redisFree(rc);
            return -1;
        }
    }
    tc_cache_destroy(c);
    free(val);
    redisFree(rc);
    return 0;
}

void bench_l2_drop(const bench_cfg *cfg, char cls, size_t n)
{
    redisContext *rc = bench_redis_connect(cfg);
    if (!rc)
        return;
    char key[BENCH_PREFIX_LEN + BENCH_KEY_LEN + 1];
    memcpy(key, BENCH_PREFIX, BENCH_PREFIX_LEN);
    size_t pending = 0;
    for (size_t i = 0; i < n; i++) {
        bench_key(key + BENCH_PREFIX_LEN, cls, i);
        redisAppendCommand(rc, "UNLINK %b", key,
                           (size_t)(BENCH_PREFIX_LEN + BENCH_KEY_LEN));
        if (++pending == 1024) {
            if (drain(rc, pending) < 0)
                break;
            pending = 0;
        }
    }
    if (pending)
        (void)drain(rc, pending);
    redisFree(rc);
}

/* ---- memory -------------------------------------------------------------- */

size_t bench_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (n != 2)
        return 0;
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

int bench_redis_usage(redisContext *rc, double *cpu_s, double *cmds)
{
    redisReply *r = redisCommand(rc, "INFO");
    const char *p;
    int ok = r && r->type == REDIS_REPLY_STRING;
    double u = 0, s = 0, n = 0;
    if (ok && (p = strstr(r->str, "used_cpu_user:")))
        u = atof(p + 14);
    if (ok && (p = strstr(r->str, "used_cpu_sys:")))
        s = atof(p + 13);
    if (ok && (p = strstr(r->str, "total_commands_processed:")))
        n = atof(p + 25);
    if (r)
        freeReplyObject(r);
    *cpu_s = u + s;
    *cmds = n;
    return ok ? 0 : -1;
}

static void *drain_main(void *arg)
{
    bench_drain *d = arg;
    struct epoll_event ev[64];
    char buf[65536];
    while (!atomic_load(&d->stop)) {
        int n = epoll_wait(d->ep, ev, 64, 50);
        for (int i = 0; i < n; i++) {
            ssize_t k;
            while ((k = read(ev[i].data.fd, buf, sizeof(buf))) > 0)
                atomic_fetch_add(&d->bytes, k);
        }
    }
    return NULL;
}

int bench_drain_add(bench_drain *d, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -1;
    return epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev);
}

int bench_drain_start(bench_drain *d)
{
    if (pthread_create(&d->th, NULL, drain_main, d) != 0)
        return -1;
    d->started = 1;
    return 0;
}

void bench_drain_stop(bench_drain *d)
{
    if (d->started) {
        atomic_store(&d->stop, 1);
        pthread_join(d->th, NULL);
        d->started = 0;
    }
    if (d->ep >= 0)
        close(d->ep);
    d->ep = -1;
}
