/*
 * One instance process for the multi-process coherence checker
 * (test_coherence.c): `threads` threads run random operations over a small
 * key set through one tc_cache, every operation logged with its start and
 * end (CLOCK_MONOTONIC, comparable across processes on one machine).
 *
 *   tc_instance url=URL mode=strict|async id=N shm_path=PATH out=PATH
 *               [threads=T] [keys=K] [group=G] [wpct=P] [seed=S] [ms=CAP]
 *               [reads=gml] [writes=sdxpe] [tracking=0|1] [loader_us=U]
 *               [port=P] [phase_ms=M] [ca=PEM cert=PEM key=PEM]
 *
 * Keys are "g<k/G>:k<k>" under the cache's key prefix "c:", so the keys of
 * one group share the prefix "g<n>:". An operation is a write with
 * probability wpct percent, else a read; reads pick keys uniformly, writes
 * too or, with phase_ms, only keys of the group whose turn it is (each
 * group in turn for phase_ms). Its kind is a random letter of
 * `writes` or `reads` (repeat a letter to weight it):
 *   g tc_get            m tc_mget of 3 keys   l tc_get_or_load
 *   s tc_set            d tc_del              x tc_mdel of 2 keys
 *   p tc_invalidate_prefix of a group         e SET by a plain hiredis client
 * Every write first takes a new version (coherence_shm.h) and stores it in
 * the loader's database, then changes the cache. Values are "<who>:<ver>".
 * The loader reads the database, then waits loader_us (a slow query) before
 * it returns, so writes can land while it runs.
 *
 * The run ends when the checker sets shm->stop, or after `ms` at the latest;
 * while it sets shm->quiet[id], the instance does nothing. A monitor thread
 * publishes tc_cache_health().bus_up in shm->bus_up[id] every 10 ms, so the
 * checker can wait for the bus instead of sleeping; on a cluster, the
 * library's log line naming the node the bus subscribes on sets
 * shm->sub_port[id].
 * Log lines, per thread, written to `out` at the end:
 *   W <kind> <k> <version> <start_ns> <end_ns> <result>
 *   R <kind> <k> <version> <start_ns> <end_ns>           (found values only)
 *   S <strict_waits> <lease_expiries> <bus_flushes> <inval_applied>
 *     <l1_bypassed> <loader_calls> <l1_hits> <bus_reconnects>
 */
#include <hiredis/hiredis.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "coherence_shm.h"
#include "tiercache.h"

#define KEY_PREFIX "c:"

typedef struct conf {
    const char *url, *mode, *shm_path, *out, *reads, *writes;
    const char *ca, *cert, *key; /* TLS files; empty: none */
    int id, threads, keys, group, wpct, tracking, port, phase_ms;
    long long seed, ms, loader_us;
} conf;

/* Per-thread state; the log buffer is the thread's own until joined. */
typedef struct worker {
    const conf *cf;
    tc_cache *c;
    tcc_shared *sh;
    redisContext *rc; /* plain client for 'e' writes; this thread only */
    uint64_t rng;
    char *log;
    size_t len, cap;
    int failed;
} worker;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int key_name(const conf *cf, int k, char *buf, size_t n)
{
    return snprintf(buf, n, "g%d:k%d", k / cf->group, k);
}

static void logf_(worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void logf_(worker *w, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (w->cap - w->len < 256) {
        char *nb = realloc(w->log, w->cap * 2);
        if (!nb) {
            w->failed = 1;
            return;
        }
        w->log = nb;
        w->cap *= 2;
    }
    va_start(ap, fmt);
    n = vsnprintf(w->log + w->len, w->cap - w->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < w->cap - w->len)
        w->len += (size_t)n;
}

/* Version carried by a value "<who>:<ver>", or -1. */
static long long value_version(const tc_value *v)
{
    char text[48];
    size_t n = tc_value_len(v) < sizeof(text) - 1 ? tc_value_len(v)
                                                  : sizeof(text) - 1;
    const char *colon;
    memcpy(text, tc_value_data(v), n); /* values are not NUL-terminated */
    text[n] = '\0';
    colon = strchr(text, ':');
    return colon ? atoll(colon + 1) : -1;
}

static void log_read(worker *w, char kind, int k, const tc_value *v,
                     uint64_t t0, uint64_t t1)
{
    logf_(w, "R %c %d %lld %llu %llu\n", kind, k, value_version(v),
          (unsigned long long)t0, (unsigned long long)t1);
}

static void log_write(worker *w, char kind, int k, long long ver, uint64_t t0,
                      uint64_t t1, int res)
{
    logf_(w, "W %c %d %lld %llu %llu %d\n", kind, k, ver,
          (unsigned long long)t0, (unsigned long long)t1, res);
}

/* A new version of key k, already in the database. */
static long long new_version(worker *w, int k)
{
    long long v = atomic_fetch_add(&w->sh->next_ver[k], 1) + 1;
    atomic_store(&w->sh->db[k], v);
    return v;
}

/* `n` distinct random keys out of `span` keys starting at `first`. */
static void pick_keys(worker *w, int n, int *ks, int first, int span)
{
    for (int i = 0; i < n; i++) {
        int dup;
        do {
            ks[i] = first + (int)(rng_next(&w->rng) % (uint64_t)span);
            dup = 0;
            for (int j = 0; j < i; j++)
                dup |= ks[j] == ks[i];
        } while (dup);
    }
}

/* The group writes go to: all of them, or with phase_ms, one group at a
 * time in turn (the same in every instance: one clock), so each key is
 * written in bursts and then left alone for a while. A stale copy left at
 * the end of a burst is then served until something drops it, not merely
 * until the next write comes along. */
static void write_span(const worker *w, int *first, int *span)
{
    int ngroups = w->cf->keys / w->cf->group;
    if (w->cf->phase_ms <= 0) {
        *first = 0, *span = w->cf->keys;
        return;
    }
    *first = (int)(now_ns() / 1000000ULL / (uint64_t)w->cf->phase_ms %
                   (uint64_t)ngroups) * w->cf->group;
    *span = w->cf->group;
}

typedef struct load_arg {
    worker *w;
    int k;
} load_arg;

static tc_result loader(void *ud, const void *key, size_t klen, void **val,
                        size_t *vlen)
{
    load_arg *a = ud;
    long long v = atomic_load(&a->w->sh->db[a->k]);
    struct timespec d = {0, (long)a->w->cf->loader_us * 1000L};
    char *buf = malloc(32);
    (void)key, (void)klen;
    if (!buf)
        return TC_NO_MEMORY;
    if (d.tv_nsec)
        nanosleep(&d, NULL);
    *vlen = (size_t)snprintf(buf, 32, "L:%lld", v);
    *val = buf;
    return TC_OK;
}

/* Returns the first result that was not TC_OK or TC_NOT_FOUND, if any. */
static tc_result do_read(worker *w, char kind)
{
    char names[3][32];
    const void *keys[3];
    size_t klens[3];
    tc_value *vals[3] = {NULL, NULL, NULL};
    tc_result res[3];
    int ks[3], n = kind == 'm' ? 3 : 1;
    uint64_t t0, t1;
    tc_result bad = TC_OK;
    pick_keys(w, n, ks, 0, w->cf->keys);
    for (int i = 0; i < n; i++) {
        klens[i] = (size_t)key_name(w->cf, ks[i], names[i], sizeof(names[i]));
        keys[i] = names[i];
    }
    t0 = now_ns();
    if (kind == 'g') {
        res[0] = tc_get(w->c, keys[0], klens[0], &vals[0]);
    } else if (kind == 'm') {
        tc_mget(w->c, 3, keys, klens, vals, res);
    } else {
        load_arg a = {w, ks[0]};
        res[0] = tc_get_or_load(w->c, keys[0], klens[0], loader, &a, 0,
                                &vals[0]);
    }
    t1 = now_ns();
    for (int i = 0; i < n; i++) {
        if (res[i] == TC_OK && vals[i])
            log_read(w, kind, ks[i], vals[i], t0, t1);
        else if (res[i] != TC_NOT_FOUND)
            bad = res[i];
        tc_value_release(vals[i]);
    }
    return bad;
}

static tc_result do_write(worker *w, char kind)
{
    char names[TCC_MAX_KEYS][32], val[48];
    const void *keys[TCC_MAX_KEYS];
    size_t klens[TCC_MAX_KEYS];
    long long vers[TCC_MAX_KEYS];
    int ks[TCC_MAX_KEYS], n = 1, first, span;
    uint64_t t0, t1;
    int res;

    write_span(w, &first, &span);
    if (kind == 'x') {
        n = 2;
        pick_keys(w, n, ks, first, span);
    } else if (kind == 'p') {
        n = w->cf->group;
        pick_keys(w, 1, ks, first, span);
        for (int i = 0, g = ks[0] / n; i < n; i++)
            ks[i] = g * n + i;
    } else {
        pick_keys(w, 1, ks, first, span);
    }
    for (int i = 0; i < n; i++) {
        klens[i] = (size_t)key_name(w->cf, ks[i], names[i], sizeof(names[i]));
        keys[i] = names[i];
    }
    t0 = now_ns();
    for (int i = 0; i < n; i++)
        vers[i] = new_version(w, ks[i]);
    switch (kind) {
    case 's': {
        int vlen = snprintf(val, sizeof(val), "w%d:%lld", w->cf->id, vers[0]);
        res = tc_set(w->c, keys[0], klens[0], val, (size_t)vlen, 0);
        break;
    }
    case 'd':
        res = tc_del(w->c, keys[0], klens[0]);
        break;
    case 'x':
        res = tc_mdel(w->c, (size_t)n, keys, klens, NULL);
        break;
    case 'p': {
        char prefix[16];
        int plen = snprintf(prefix, sizeof(prefix), "g%d:", ks[0] / w->cf->group);
        res = tc_invalidate_prefix(w->c, prefix, (size_t)plen);
        break;
    }
    default: { /* 'e': a plain client writes L2, the library is not told */
        redisReply *r;
        int vlen = snprintf(val, sizeof(val), "x%d:%lld", w->cf->id, vers[0]);
        r = w->rc ? redisCommand(w->rc, "SET " KEY_PREFIX "%b %b", keys[0],
                                 klens[0], val, (size_t)vlen)
                  : NULL;
        res = r && r->type == REDIS_REPLY_STATUS ? TC_OK : TC_L2_UNAVAILABLE;
        if (r)
            freeReplyObject(r);
        else if (w->rc && redisReconnect(w->rc) != REDIS_OK) {
            /* Redis is down: the next write tries again. */
        }
        break;
    }
    }
    t1 = now_ns();
    for (int i = 0; i < n; i++)
        log_write(w, kind, ks[i], vers[i], t0, t1, res);
    return (tc_result)res;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    const conf *cf = w->cf;
    uint64_t deadline = now_ns() + (uint64_t)cf->ms * 1000000ULL;
    size_t nr = strlen(cf->reads), nw = strlen(cf->writes);
    struct timespec pause = {0, 1000000L};
    while (!atomic_load(&w->sh->stop) && now_ns() < deadline && !w->failed) {
        tc_result r;
        if (atomic_load(&w->sh->quiet[cf->id])) {
            nanosleep(&pause, NULL);
            continue;
        }
        if (nw && (int)(rng_next(&w->rng) % 100) < cf->wpct)
            r = do_write(w, cf->writes[rng_next(&w->rng) % nw]);
        else if (nr)
            r = do_read(w, cf->reads[rng_next(&w->rng) % nr]);
        else
            break;
        atomic_fetch_add(&w->sh->ops[cf->id], 1);
        if (r == TC_L2_UNAVAILABLE || r == TC_TIMEOUT)
            nanosleep(&pause, NULL); /* Redis is down: no busy loop */
    }
    return NULL;
}

typedef struct monitor {
    tc_cache *c;
    tcc_shared *sh;
    int id;
    atomic_int done;
} monitor;

/* Publish this instance's bus state for the checker, which waits on it. */
static void *monitor_main(void *arg)
{
    monitor *m = arg;
    struct timespec d = {0, 10 * 1000000L};
    while (!atomic_load(&m->done)) {
        tc_health h;
        tc_cache_health(m->c, &h);
        atomic_store(&m->sh->bus_up[m->id], h.bus_up);
        nanosleep(&d, NULL);
    }
    return NULL;
}

/* The library's log: only "bus: subscribing on <host>:<port> and ..." (a
 * cluster bus: the master of its heartbeat and main subscription) is
 * noted, in shm->sub_port[id]. Any thread. */
typedef struct lognote {
    tcc_shared *sh;
    int id;
} lognote;

static void on_log(void *ud, tc_log_level lvl, const char *msg)
{
    lognote *ln = ud;
    const char *p = strstr(msg, "bus: subscribing on ");
    (void)lvl;
    if (p && (p = strchr(p + 20, ':')) != NULL)
        atomic_store(&ln->sh->sub_port[ln->id], atoi(p + 1));
}

static int parse_args(int argc, char **argv, conf *cf)
{
    memset(cf, 0, sizeof(*cf));
    cf->threads = 1, cf->keys = 8, cf->group = 4, cf->wpct = 15;
    cf->seed = 1, cf->ms = 60000, cf->reads = "g", cf->writes = "s";
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        const char *v;
        if (!eq)
            return -1;
        *eq = '\0', v = eq + 1;
#define STR(name) if (!strcmp(argv[i], #name)) cf->name = v; else
#define NUM(name) if (!strcmp(argv[i], #name)) cf->name = atoi(v); else
#define LNUM(name) if (!strcmp(argv[i], #name)) cf->name = atoll(v); else
        STR(url) STR(mode) STR(shm_path) STR(out) STR(reads) STR(writes)
        STR(ca) STR(cert) STR(key)
        NUM(id) NUM(threads) NUM(keys) NUM(group) NUM(wpct) NUM(tracking)
        NUM(port) NUM(phase_ms) LNUM(seed) LNUM(ms) LNUM(loader_us)
        return -1;
#undef STR
#undef NUM
#undef LNUM
    }
    if (!cf->url || !cf->mode || !cf->shm_path || !cf->out ||
        cf->id < 0 || cf->id >= TCC_MAX_PROCS || cf->threads < 1 ||
        cf->threads > 16 || cf->keys < 3 || cf->keys > TCC_MAX_KEYS ||
        cf->group < 1 || cf->keys % cf->group != 0)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    conf cf;
    tc_options o;
    tc_cache *c = NULL;
    tc_stats st;
    tcc_shared *sh;
    worker *ws;
    pthread_t th[16], mon;
    monitor m;
    lognote ln;
    FILE *out;
    int fd, rc = 0;

    if (parse_args(argc, argv, &cf) != 0) {
        fprintf(stderr, "usage: tc_instance url= mode= id= shm_path= out= "
                        "[threads= keys= group= wpct= seed= ms= reads= "
                        "writes= tracking= loader_us= port=]\n");
        return 2;
    }
    fd = open(cf.shm_path, O_RDWR);
    sh = fd < 0 ? MAP_FAILED
                : mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED,
                       fd, 0);
    if (sh == MAP_FAILED) {
        fprintf(stderr, "instance %d: cannot map %s\n", cf.id, cf.shm_path);
        return 1;
    }
    close(fd);
    memset(&o, 0, sizeof(o));
    o.url = cf.url;
    o.ignore_env = TC_YES;
    o.tls_ca_file = cf.ca && *cf.ca ? cf.ca : NULL;
    o.tls_cert_file = cf.cert && *cf.cert ? cf.cert : NULL;
    o.tls_key_file = cf.key && *cf.key ? cf.key : NULL;
    o.coherence = strcmp(cf.mode, "strict") == 0 ? TC_COHERENCE_STRICT
                                                 : TC_COHERENCE_ASYNC;
    o.key_prefix = KEY_PREFIX;
    o.tracking = cf.tracking ? TC_YES : TC_NO;
    o.lease_ms = 100;
    o.connect_timeout_ms = 300;
    o.command_timeout_ms = 500;
    o.reconnect_min_ms = 10;
    o.reconnect_max_ms = 100;
    ln.sh = sh, ln.id = cf.id;
    o.log = on_log;
    o.log_userdata = &ln;
    if (tc_cache_create(&o, &c) != TC_OK) {
        fprintf(stderr, "instance %d: create: %s\n", cf.id, tc_errmsg());
        return 1;
    }
    atomic_fetch_add(&sh->created, 1);
    m.c = c, m.sh = sh, m.id = cf.id;
    atomic_init(&m.done, 0);
    if (pthread_create(&mon, NULL, monitor_main, &m) != 0)
        return 1;
    ws = calloc((size_t)cf.threads, sizeof(*ws));
    for (int i = 0; ws && i < cf.threads; i++) {
        worker *w = &ws[i];
        w->cf = &cf, w->c = c, w->sh = sh;
        w->rng = ((uint64_t)cf.seed * 2654435761ULL + (uint64_t)i * 40503ULL) | 1;
        w->cap = 1 << 16;
        w->log = malloc(w->cap);
        if (strchr(cf.writes, 'e')) {
            struct timeval tv = {1, 0};
            w->rc = redisConnectWithTimeout("127.0.0.1", cf.port, tv);
            if (w->rc && !w->rc->err)
                redisSetTimeout(w->rc, tv);
        }
        if (!w->log || pthread_create(&th[i], NULL, worker_main, w) != 0) {
            fprintf(stderr, "instance %d: cannot start thread %d\n", cf.id, i);
            return 1;
        }
    }
    if (!ws)
        return 1;
    for (int i = 0; i < cf.threads; i++)
        pthread_join(th[i], NULL);
    atomic_store(&m.done, 1);
    pthread_join(mon, NULL);

    out = fopen(cf.out, "w");
    if (!out) {
        fprintf(stderr, "instance %d: cannot write log\n", cf.id);
        return 1;
    }
    for (int i = 0; i < cf.threads; i++) {
        if (ws[i].failed || fwrite(ws[i].log, 1, ws[i].len, out) != ws[i].len)
            rc = 1;
        free(ws[i].log);
        if (ws[i].rc)
            redisFree(ws[i].rc);
    }
    tc_cache_stats(c, &st);
    fprintf(out, "S %llu %llu %llu %llu %llu %llu %llu %llu\n",
            (unsigned long long)st.strict_waits,
            (unsigned long long)st.strict_lease_expiries,
            (unsigned long long)st.bus_flushes,
            (unsigned long long)st.inval_applied,
            (unsigned long long)st.l1_bypassed,
            (unsigned long long)st.loader_calls,
            (unsigned long long)st.l1_hits,
            (unsigned long long)st.bus_reconnects);
    if (fclose(out) != 0)
        rc = 1;
    if (rc)
        fprintf(stderr, "instance %d: cannot write log\n", cf.id);
    free(ws);
    tc_cache_destroy(c);
    munmap(sh, sizeof(*sh));
    return rc;
}
