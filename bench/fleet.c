/*
 * Fleet cost (issue 10): what the invalidation bus costs Redis as the
 * number of instances grows.
 *
 *   per write: N plain subscriber connections on one channel (N = 1, 10,
 *   100, 500; a thread drains them all with epoll), a publisher pipelines
 *   invalidation messages of the library's format; Redis CPU (INFO cpu,
 *   user + sys) per published message.
 *   idle / busy: N real tc_cache instances in this process (N = 1, 10,
 *   100) at default settings, idle (measured once idle_after_ms has
 *   passed without a read: the heartbeat has stopped) or kept reading L1
 *   (a peek each every 10 ms: the lease heartbeat runs); Redis commands
 *   per second (script-internal ones included, as Redis counts them) and
 *   Redis CPU per second, per instance.
 *   From the per-write slope: the largest fleet one Redis core carries at
 *   10,000 writes per second.
 *
 * JSON: fleet_write_cpu_us_{1,10,100,500}, fleet_write_cpu_us_per_sub,
 * fleet_max_instances_10k_writes, fleet_{idle,busy}_cmds_per_s_per_instance_
 * {1,10,100}, fleet_{idle,busy}_cpu_us_per_s_per_instance_{1,10,100}.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"

static const char channel[] = "tcbench:fleet";

/* A message of the library's format naming `nkeys` keys ("key" for one,
 * "keys" with <len>:<bytes> bodies for more), number `i`. */
static void make_msg(char *msg, size_t cap, int i, int nkeys)
{
    size_t n;
    if (nkeys == 1) {
        snprintf(msg, cap, "v1 key @fleetbench0000:%d:1700000000000000 "
                           "user:%d", i, i);
        return;
    }
    n = (size_t)snprintf(msg, cap,
                         "v1 keys @fleetbench0000:%d:1700000000000000 ", i);
    for (int k = 0; k < nkeys && n < cap; k++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "user:%d", i * nkeys + k);
        n += (size_t)snprintf(msg + n, cap - n, "%d:%s", kl, key);
    }
}

/* Redis CPU per published message with `nsubs` subscribers, in us. */
static double write_cost(const bench_cfg *cfg, redisContext *rc, int nsubs,
                         int msgs, int nkeys)
{
    redisContext **subs = calloc((size_t)nsubs, sizeof(*subs));
    bench_drain d = {.ep = epoll_create1(EPOLL_CLOEXEC)};
    double cpu0, cpu1, n0, n1, cost = -1;
    int made = 0;
    char msg[2048];
    if (!subs || d.ep < 0)
        goto out;
    for (; made < nsubs; made++) {
        redisReply *r;
        if (!(subs[made] = bench_redis_connect(cfg)))
            goto out;
        r = redisCommand(subs[made], "SUBSCRIBE %s", channel);
        if (!r)
            goto out;
        freeReplyObject(r);
        if (bench_drain_add(&d, subs[made]->fd) != 0)
            goto out;
    }
    if (bench_drain_start(&d) != 0)
        goto out;
    if (bench_redis_usage(rc, &cpu0, &n0) != 0)
        goto out;
    for (int b = 0; b < msgs; b += 100) {
        for (int j = 0; j < 100; j++) {
            make_msg(msg, sizeof(msg), b + j, nkeys);
            redisAppendCommand(rc, "PUBLISH %s %s", channel, msg);
        }
        for (int j = 0; j < 100; j++) {
            redisReply *r = NULL;
            if (redisGetReply(rc, (void **)&r) != REDIS_OK)
                goto out;
            freeReplyObject(r);
        }
    }
    if (bench_redis_usage(rc, &cpu1, &n1) != 0)
        goto out;
    cost = (cpu1 - cpu0) * 1e6 / msgs;
out:
    bench_drain_stop(&d);
    for (int i = 0; subs && i < nsubs; i++)
        if (subs[i])
            redisFree(subs[i]);
    free(subs);
    return cost;
}

/* Keeps instances reading L1 (one peek each every 10 ms) for the busy
 * rows: what an instance costs while its lease is in use. */
typedef struct reader {
    tc_cache **c;
    int n;
    atomic_int stop;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    while (!atomic_load(&r->stop)) {
        for (int i = 0; i < r->n; i++) {
            tc_value *v = NULL;
            tc_peek(r->c[i], "fleet:k", 7, &v);
            tc_value_release(v);
        }
        bench_sleep_us(10000);
    }
    return NULL;
}

/* Instances: Redis commands and CPU per second, per instance. Idle: after
 * the default idle_after_ms (5 s; 0.5 s with --quick) without a read, so
 * the bus has stopped its heartbeat. Busy: read all along. */
static int idle_cost(const bench_cfg *cfg, redisContext *rc, int n, int busy,
                     double *cmds_per_s, double *cpu_us_per_s)
{
    tc_cache **c = calloc((size_t)n, sizeof(*c));
    tc_options o;
    reader rd = {c, n, 0};
    pthread_t th;
    double cpu0, cpu1, n0, n1;
    uint64_t t0, t1;
    int made = 0, rcode = -1, started = 0;
    if (!c)
        return -1;
    bench_cache_options(cfg, &o);
    o.pool_size = 1;
    o.channel = channel;
    if (cfg->quick)
        o.idle_after_ms = 500;
    for (; made < n; made++)
        if (!(c[made] = bench_cache_create(&o)))
            goto out;
    if (busy) {
        if (pthread_create(&th, NULL, reader_main, &rd) != 0)
            goto out;
        started = 1;
    } else {
        /* Past idle_after_ms, a tick (lease / 4) and the last heartbeat. */
        bench_sleep_us(((cfg->quick ? 500 : 5000) + 1000) * 1000);
    }
    if (bench_redis_usage(rc, &cpu0, &n0) != 0)
        goto out;
    t0 = bench_now_ns();
    bench_sleep_us(cfg->quick ? 1000000 : (busy ? 3000000 : 6000000));
    if (bench_redis_usage(rc, &cpu1, &n1) != 0)
        goto out;
    t1 = bench_now_ns();
    {
        double secs = (double)(t1 - t0) / 1e9;
        /* One INFO of ours falls in the window. */
        *cmds_per_s = (n1 - n0 - 1) / secs / n;
        *cpu_us_per_s = (cpu1 - cpu0) * 1e6 / secs / n;
    }
    rcode = 0;
out:
    if (started) {
        atomic_store(&rd.stop, 1);
        pthread_join(th, NULL);
    }
    for (int i = 0; i < made; i++)
        tc_cache_destroy(c[i]);
    free(c);
    return rcode;
}

void bench_fleet(const bench_cfg *cfg)
{
    static const int subs[] = {1, 10, 100, 500};
    static const int idle[] = {1, 10, 100};
    double w[4] = {0}, slope;
    redisContext *rc = bench_redis_connect(cfg);
    char key[64];
    int msgs = cfg->quick ? 2000 : 20000;

    printf("\n== fleet: what the bus costs Redis as instances grow ==\n");
    if (!rc) {
        bench_fail();
        return;
    }
    printf("  %-34s %14s\n", "subscribers (instances)", "Redis CPU/write");
    for (int i = 0; i < 4; i++) {
        w[i] = write_cost(cfg, rc, subs[i], subs[i] >= 100 ? msgs / 4 : msgs,
                          1);
        if (w[i] < 0) {
            fprintf(stderr, "tc-bench: fleet write cost with %d subscribers "
                            "failed\n", subs[i]);
            bench_fail();
            redisFree(rc);
            return;
        }
        printf("  %-34d %11.1f us\n", subs[i], w[i]);
        snprintf(key, sizeof(key), "fleet_write_cpu_us_%d", subs[i]);
        res_num(key, w[i]);
    }
    slope = (w[3] - w[0]) / (subs[3] - subs[0]);
    res_num("fleet_write_cpu_us_per_sub", slope);
    if (slope > 0) {
        /* 10,000 writes/s x (base + slope x N) = one core's second. */
        double n = (1e6 / 10000 - (w[0] - slope)) / slope;
        printf("  largest fleet one Redis core carries at 10,000 writes/s: "
               "%.0f instances (%.2f us per write per subscriber)\n",
               n, slope);
        res_num("fleet_max_instances_10k_writes", n);
    }
    /* What coalescing could buy: the same at 1 and 100 subscribers with
     * K keys per message; a fleet writing 10,000 keys/s in messages of K
     * keys publishes 10,000 / K messages/s. */
    printf("  %-34s %14s %14s %14s\n", "keys per message (coalescing)",
           "us/msg, 1 sub", "us/msg, 100", "fleet at 10k");
    for (int i = 0; i < 4; i++) {
        static const int kk[] = {1, 4, 16, 64};
        int m = cfg->quick ? 500 : 5000;
        double c1 = write_cost(cfg, rc, 1, m, kk[i]);
        double c100 = write_cost(cfg, rc, 100, m, kk[i]);
        double sl = (c100 - c1) / 99, fleet = 0;
        char label[32];
        if (c1 < 0 || c100 < 0) {
            bench_fail();
            break;
        }
        if (sl > 0)
            fleet = (1e6 * kk[i] / 10000 - (c1 - sl)) / sl;
        snprintf(label, sizeof(label), "%d", kk[i]);
        printf("  %-34s %11.1f us %11.1f us %14.0f\n", label, c1, c100, fleet);
        snprintf(key, sizeof(key), "fleet_keys%d_cpu_us_1", kk[i]);
        res_num(key, c1);
        snprintf(key, sizeof(key), "fleet_keys%d_cpu_us_100", kk[i]);
        res_num(key, c100);
        snprintf(key, sizeof(key), "fleet_keys%d_max_instances_10k", kk[i]);
        res_num(key, fleet);
    }
    printf("  %-34s %14s %14s\n", "instances (default settings)",
           "cmds/s each", "CPU us/s each");
    for (int busy = 0; busy < 2; busy++)
        for (int i = 0; i < 3; i++) {
            double cmds, cpu;
            char label[32];
            if (cfg->quick && idle[i] > 10)
                break;
            if (idle_cost(cfg, rc, idle[i], busy, &cmds, &cpu) != 0) {
                fprintf(stderr, "tc-bench: fleet idle cost failed\n");
                bench_fail();
                break;
            }
            snprintf(label, sizeof(label), "%d %s", idle[i],
                     busy ? "reading" : "idle");
            printf("  %-34s %14.1f %14.1f\n", label, cmds, cpu);
            snprintf(key, sizeof(key), "fleet_%s_cmds_per_s_per_instance_%d",
                     busy ? "busy" : "idle", idle[i]);
            res_num(key, cmds);
            snprintf(key, sizeof(key),
                     "fleet_%s_cpu_us_per_s_per_instance_%d",
                     busy ? "busy" : "idle", idle[i]);
            res_num(key, cpu);
        }
    redisFree(rc);
}
