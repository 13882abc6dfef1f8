/*
 * Fleet cost on a 3-master Redis Cluster (issue 10): what the invalidation
 * bus costs each node as the number of instances grows, with classic
 * pub/sub as the library runs it and with sharded pub/sub for comparison.
 *
 * The section starts its own throwaway cluster (cluster.c: 3 masters, no
 * replicas, free ports, private temp dir, stopped by pid at the end).
 * N simulated instances each hold, as the library's bus does, one
 * subscriber connection per master (a thread drains all 3N with epoll):
 *
 *   pubsub:  SUBSCRIBE <channel>@127.0.0.1:<port> on that master;
 *   sharded: SSUBSCRIBE <channel>{tag} on that master (a tag hashing to
 *            one of its slots; a channel per slot would cost each message
 *            the same, one dict lookup, but 16384 subscriptions each).
 *
 * A publisher connection per master writes as the library does, spread
 * evenly over the three masters: MULTI, SET {tag}u:<i>, PUBLISH (or
 * SPUBLISH) on that master's channel an invalidation of the library's
 * format, EXEC; pipelined 100 writes per master per round trip. The run
 * waits until every subscriber got every message, then reads each node's
 * CPU (INFO cpu, user + sys). Per write of the cluster (not per write the
 * node ran): each node's CPU, the busiest node's, and all three together.
 * A classic PUBLISH is also forwarded over the cluster bus to the other
 * two nodes, where no one subscribes to it: its cost on them is measured
 * alone by writing on master 0 only with one instance (fwd rows).
 *
 * The same rows run on the bench's own Redis (REDIS_URL) as a single
 * master ("single": N subscribers on one channel, the same writes), in
 * the same run, interleaved with the cluster's, for the ratio.
 *
 * From the busiest node's line (least squares over the rows): the largest
 * fleet a 3-master cluster carries at 10,000 writes/s spread over its
 * masters (the busiest node's core saturated), each instance subscribing,
 * and behind relays at 16 processes per host, modelled as one subscriber
 * per host per master (hosts = subscribing instances here; relay.c
 * measures the real relay on one Redis).
 *
 * JSON, for M in pubsub, sharded, single: fleet_cluster_M_busiest_cpu_us_
 * {N}, fleet_cluster_M_total_cpu_us_{N} (N = 1, 10, 100, 500, 1000;
 * --quick 1, 10, 100), fleet_cluster_M_busiest_cpu_us_per_instance,
 * fleet_cluster_M_max_instances_10k_writes,
 * fleet_cluster_M_relay_max_instances_10k_writes_k16; for M in pubsub,
 * sharded: fleet_cluster_M_fwd_cpu_us (per message, on each non-owning
 * node), fleet_cluster_M_owner_cpu_us_1 (the owning node, 1 instance).
 *
 * bench_relay_cluster (--only relay_cluster) measures the relays instead
 * of modelling them: H real tiercached relays (relay.c's helpers) against
 * the cluster, K = 16 local subscribers each, every one with a connection
 * per master on which it sends TC.RELAY 127.0.0.1 <port> and SUBSCRIBE
 * <channel>@127.0.0.1:<port> (as the library's bus does through a relay);
 * the same writes; each master must hold exactly H tiercached-pubsub
 * connections (CLIENT LIST). JSON: fleet_relay_cluster_busiest_cpu_us_
 * h{H}_k16 (H = 1, 5, 10), fleet_relay_cluster_upstreams_per_node_h{H},
 * fleet_relay_cluster_busiest_cpu_us_per_relay,
 * fleet_relay_cluster_max_hosts_10k_writes,
 * fleet_relay_cluster_max_instances_10k_writes_k16.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"
#include "cluster.h"

#define MASTERS BENCH_CLUSTER_MASTERS
#define PER_TRIP 100 /* writes per master per round trip */

static const char stem[] = "tcbench:fleetc";

typedef struct fc_env {
    const bench_cfg *cfg;
    int masters;                /* MASTERS, or 1: the bench's own Redis */
    bench_cluster cl;
    redisContext *ctl[MASTERS]; /* INFO */
    redisContext *pub[MASTERS]; /* the writers */
    char tag[MASTERS][16];      /* a hash tag served by master m */
    char chan[2][MASTERS][96];  /* [sharded][m] */
} fc_env;

static int digits(size_t n)
{
    int d = 1;
    while (n >= 10)
        n /= 10, d++;
    return d;
}

/* Bytes of one RESP2 pub/sub push of `msg` on `chan`. */
static long long frame_len(int sharded, const char *chan, size_t mlen)
{
    size_t clen = strlen(chan);
    return 4 + (sharded ? 14 : 13) + 1 + digits(clen) + 2 + (long long)clen +
           2 + 1 + digits(mlen) + 2 + (long long)mlen + 2;
}

static redisContext *node_connect(const fc_env *e, int m)
{
    struct timeval tv = {10, 0};
    int port = e->cl.port[m];
    redisContext *c;
    if (e->masters == 1) /* the bench's own Redis (REDIS_URL) */
        return bench_redis_connect(e->cfg);
    c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        fprintf(stderr, "tc-bench: connect to node :%d: %s\n", port,
                c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    return c;
}

/* Read the replies of `k` pipelined writes (MULTI, SET, PUBLISH, EXEC)
 * on c: 0 when every EXEC ran both commands. */
static int read_writes(redisContext *c, int k)
{
    for (int i = 0; i < k * 4; i++) {
        redisReply *r = NULL;
        int bad;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            fprintf(stderr, "tc-bench: write: %s\n", c->errstr);
            return -1;
        }
        bad = r->type == REDIS_REPLY_ERROR ||
              (i % 4 == 3 &&
               (r->type != REDIS_REPLY_ARRAY || r->elements != 2));
        if (bad)
            fprintf(stderr, "tc-bench: write: %s\n",
                    r->type == REDIS_REPLY_ERROR ? r->str : "EXEC aborted");
        freeReplyObject(r);
        if (bad)
            return -1;
    }
    return 0;
}

/* `msgs` writes as the library does them, spread over the masters (or
 * all on master `only` when >= 0), pipelined PER_TRIP per master; adds to
 * *want the bytes `subs` subscribers per channel receive. 0 or -1. */
static int fc_write(fc_env *e, int sharded, int msgs, int only, long long subs,
                    long long *want)
{
    char msg[160], key[64];
    for (int b = 0; b < msgs; b += PER_TRIP * e->masters) {
        int k[MASTERS] = {0};
        for (int j = 0; j < PER_TRIP * e->masters && b + j < msgs; j++) {
            int i = b + j, m = only >= 0 ? only : i % e->masters;
            int kl = snprintf(key, sizeof(key), "{%s}u:%d", e->tag[m], i);
            int ml = snprintf(msg, sizeof(msg), "v1 key @fleetbench0000:%d:"
                              "1700000000000000 %.*s", i, kl, key);
            redisAppendCommand(e->pub[m], "MULTI");
            redisAppendCommand(e->pub[m], "SET %b v", key, (size_t)kl);
            redisAppendCommand(e->pub[m], sharded ? "SPUBLISH %s %b"
                                                  : "PUBLISH %s %b",
                               e->chan[sharded][m], msg, (size_t)ml);
            redisAppendCommand(e->pub[m], "EXEC");
            *want += subs * frame_len(sharded, e->chan[sharded][m], (size_t)ml);
            k[m]++;
        }
        for (int m = 0; m < e->masters; m++)
            if (k[m] && read_writes(e->pub[m], k[m]) != 0)
                return -1;
    }
    return 0;
}

/* Wait until the drain `d` got `want` bytes (up to 120 s: Redis has then
 * done all the writing the fan-out costs it), then each node's CPU since
 * cpu0[] per write (of `msgs`) into us[]. 0 or -1. */
static int fc_settle(fc_env *e, bench_drain *d, long long want,
                     const double cpu0[MASTERS], int msgs, double us[MASTERS])
{
    double cpu1, cmds;
    for (int t = 0; t < 12000 && atomic_load(&d->bytes) < want; t++)
        bench_sleep_us(10000);
    if (atomic_load(&d->bytes) < want) {
        fprintf(stderr, "tc-bench: subscribers got %lld of %lld bytes\n",
                (long long)atomic_load(&d->bytes), want);
        return -1;
    }
    for (int m = 0; m < e->masters; m++) {
        if (bench_redis_usage(e->ctl[m], &cpu1, &cmds) != 0)
            return -1;
        us[m] = (cpu1 - cpu0[m]) * 1e6 / msgs;
    }
    return 0;
}

/* One row: N instances, `msgs` writes spread over the masters (or all on
 * master `only` when >= 0); each node's CPU per write into us[]. 0 or -1. */
static int fc_row(fc_env *e, int sharded, int n, int msgs, int only,
                  double us[MASTERS])
{
    int nsub = n * e->masters, made = 0, rc = -1;
    redisContext **subs = calloc((size_t)nsub, sizeof(*subs));
    bench_drain d = {.ep = epoll_create1(EPOLL_CLOEXEC)};
    long long want = 0;
    double cpu0[MASTERS], cmds;
    if (!subs || d.ep < 0)
        goto out;
    for (; made < nsub; made++) {
        int m = made % e->masters;
        redisReply *r;
        if (!(subs[made] = node_connect(e, m)))
            goto out;
        r = redisCommand(subs[made], sharded ? "SSUBSCRIBE %s"
                                             : "SUBSCRIBE %s",
                         e->chan[sharded][m]);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "tc-bench: %s: %s\n",
                    sharded ? "SSUBSCRIBE" : "SUBSCRIBE",
                    r && r->type == REDIS_REPLY_ERROR ? r->str
                                                      : subs[made]->errstr);
            freeReplyObject(r);
            goto out;
        }
        freeReplyObject(r);
        if (bench_drain_add(&d, subs[made]->fd) != 0)
            goto out;
    }
    if (bench_drain_start(&d) != 0)
        goto out;
    for (int m = 0; m < e->masters; m++)
        if (bench_redis_usage(e->ctl[m], &cpu0[m], &cmds) != 0)
            goto out;
    if (fc_write(e, sharded, msgs, only, n, &want) != 0)
        goto out;
    if (fc_settle(e, &d, want, cpu0, msgs, us) != 0)
        goto out;
    rc = 0;
out:
    bench_drain_stop(&d);
    for (int i = 0; subs && i < nsub; i++)
        if (subs[i])
            redisFree(subs[i]);
    free(subs);
    return rc;
}

/* The cluster (single = 0), or the bench's own Redis as one master
 * (single = 1: the same rows on one server, for the ratio). 0 or -1. */
static int env_open(fc_env *e, const bench_cfg *cfg, int single)
{
    e->cfg = cfg;
    e->masters = single ? 1 : MASTERS;
    if (!single && bench_cluster_start(&e->cl) != 0)
        return -1;
    for (int m = 0; m < e->masters; m++) {
        if (!(e->ctl[m] = node_connect(e, m)) ||
            !(e->pub[m] = node_connect(e, m)))
            return -1;
        /* The smallest t<i> whose slot master m serves. */
        for (int i = 0;; i++) {
            int l = snprintf(e->tag[m], sizeof(e->tag[m]), "t%d", i);
            if (single ||
                e->cl.owner[bench_cluster_slot(e->tag[m], (size_t)l)] == m)
                break;
        }
        if (single)
            snprintf(e->chan[0][m], sizeof(e->chan[0][m]), "%s", stem);
        else
            snprintf(e->chan[0][m], sizeof(e->chan[0][m]),
                     "%s@127.0.0.1:%d", stem, e->cl.port[m]);
        snprintf(e->chan[1][m], sizeof(e->chan[1][m]), "%s{%s}", stem,
                 e->tag[m]);
    }
    return 0;
}

static void env_close(fc_env *e)
{
    for (int m = 0; m < MASTERS; m++) {
        if (e->ctl[m])
            redisFree(e->ctl[m]);
        if (e->pub[m])
            redisFree(e->pub[m]);
    }
    bench_cluster_stop(&e->cl);
}

enum { SIZES = 5, MODES = 3 }; /* pubsub, sharded on the cluster; one Redis */
static const char *const mode_name[MODES] = {"pubsub", "sharded", "single"};

/* Least-squares line y = a + b x over n points. */
static void fit(const int *x, const double *y, int n, double *a, double *b)
{
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        sx += x[i];
        sy += y[i];
        sxx += (double)x[i] * x[i];
        sxy += x[i] * y[i];
    }
    *b = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    *a = (sy - *b * sx) / n;
}

void bench_fleet_cluster(const bench_cfg *cfg)
{
    static const int sizes[SIZES] = {1, 10, 100, 500, 1000};
    int nsizes = cfg->quick ? 3 : SIZES;
    double busiest[MODES][SIZES], us[MASTERS], fleet[MODES] = {0};
    double owner_1 = 0, owner_max = 0;
    fc_env *e = calloc(2, sizeof(*e)); /* [0] the cluster, [1] one Redis */
    char key[96];

    printf("\n== fleet on a 3-master Redis Cluster: CPU per write of the "
           "cluster, writes spread over the masters ==\n");
    fflush(stdout);
    if (!e || env_open(&e[0], cfg, 0) != 0 || env_open(&e[1], cfg, 1) != 0) {
        fprintf(stderr, "tc-bench: fleet_cluster: no cluster\n");
        bench_fail();
        goto done;
    }
    /* Every write on master 0: the cluster bus's part (1 instance), and
     * what a master's delivery costs when it runs alone (the most
     * instances). */
    printf("  %-30s %12s %12s\n", "writes on master 0 only",
           "owner", "each other");
    for (int r = 0; r < 3; r++) {
        int s = r == 1, n = r < 2 ? 1 : sizes[nsizes - 1];
        int msgs = r < 2 ? 15000 : 3000;
        char label[48];
        if (fc_row(&e[0], s, n, cfg->quick ? msgs / 10 : msgs, 0, us) != 0) {
            bench_fail();
            goto done;
        }
        snprintf(label, sizeof(label), "%d instance%s, %s", n,
                 n > 1 ? "s" : "", mode_name[s]);
        printf("  %-30s %9.1f us %9.1f us\n", label, us[0],
               (us[1] + us[2]) / 2);
        snprintf(key, sizeof(key), "fleet_cluster_%s_owner_cpu_us_%d",
                 mode_name[s], n);
        res_num(key, us[0]);
        if (r == 2)
            owner_max = us[0], owner_1 = res_get("fleet_cluster_pubsub_"
                                                 "owner_cpu_us_1");
        else {
            snprintf(key, sizeof(key), "fleet_cluster_%s_fwd_cpu_us",
                     mode_name[s]);
            res_num(key, (us[1] + us[2]) / 2);
        }
    }
    printf("  %-10s %-8s %9s %9s %9s %10s %10s\n", "instances", "mode",
           "node 0", "node 1", "node 2", "busiest", "all nodes");
    for (int i = 0; i < nsizes; i++)
        for (int s = 0; s < MODES; s++) {
            int n = sizes[i], msgs = 600000 / n;
            double tot = 0;
            if (msgs > 30000)
                msgs = 30000;
            if (msgs < 3000)
                msgs = 3000;
            if (cfg->quick)
                msgs /= 10;
            if (fc_row(&e[s == 2], s == 1, n, msgs, -1, us) != 0) {
                fprintf(stderr, "tc-bench: fleet_cluster %s with %d "
                                "instances failed\n", mode_name[s], n);
                bench_fail();
                goto done;
            }
            busiest[s][i] = us[0];
            for (int m = 0; m < e[s == 2].masters; m++) {
                tot += us[m];
                if (us[m] > busiest[s][i])
                    busiest[s][i] = us[m];
            }
            if (s == 2)
                printf("  %-10d %-8s %6.1f us %9s %9s %7.1f us %7.1f us\n", n,
                       "1 Redis", us[0], "", "", busiest[s][i], tot);
            else
                printf("  %-10d %-8s %6.1f us %6.1f us %6.1f us %7.1f us "
                       "%7.1f us\n", n, mode_name[s], us[0], us[1], us[2],
                       busiest[s][i], tot);
            snprintf(key, sizeof(key), "fleet_cluster_%s_busiest_cpu_us_%d",
                     mode_name[s], n);
            res_num(key, busiest[s][i]);
            snprintf(key, sizeof(key), "fleet_cluster_%s_total_cpu_us_%d",
                     mode_name[s], n);
            res_num(key, tot);
        }
    for (int s = 0; s < MODES; s++) {
        double a, b;
        fit(sizes, busiest[s], nsizes, &a, &b);
        snprintf(key, sizeof(key),
                 "fleet_cluster_%s_busiest_cpu_us_per_instance",
                 mode_name[s]);
        res_num(key, b);
        if (b <= 0)
            continue;
        /* 10,000 writes/s x (a + b N) = the busiest node's core. */
        fleet[s] = (1e6 / 10000 - a) / b;
        snprintf(key, sizeof(key), "fleet_cluster_%s_max_instances_10k_writes",
                 mode_name[s]);
        res_num(key, fleet[s]);
        snprintf(key, sizeof(key),
                 "fleet_cluster_%s_relay_max_instances_10k_writes_k16",
                 mode_name[s]);
        res_num(key, fleet[s] * 16);
    }
    printf("  largest fleet at 10,000 writes/s (busiest node's core full; "
           "least squares over the rows):\n"
           "  %-34s %10s %14s %22s\n", "", "us/write/inst", "instances",
           "behind relays, k=16");
    for (int s = 0; s < MODES; s++)
        printf("  %-34s %10.3f %14.0f %22.0f\n",
               s == 0 ? "3-master cluster, PUBLISH (library)"
               : s == 1 ? "3-master cluster, SPUBLISH"
                        : "one Redis, PUBLISH (same writes)",
               res_get(s == 0   ? "fleet_cluster_pubsub_busiest_cpu_us_per_"
                                  "instance"
                       : s == 1 ? "fleet_cluster_sharded_busiest_cpu_us_per_"
                                  "instance"
                                : "fleet_cluster_single_busiest_cpu_us_per_"
                                  "instance"),
               fleet[s], fleet[s] * 16);
    printf("  (behind relays: modelled as one subscriber per host per "
           "master, hosts = the instances above, 16 processes per host)\n");
    {
        /* A master with a core of its own: its delivery as measured alone
         * (writes on master 0 only), a third of the writes each. */
        double b = (owner_max - owner_1) / (sizes[nsizes - 1] - 1) / 3;
        if (b > 0) {
            double n = (1e6 / 10000 - busiest[0][0]) / b;
            printf("  with a core per master (derived: the owner's slope "
                   "alone, %.3f us per write per instance, / 3): %.0f "
                   "instances\n", b * 3, n);
            res_num("fleet_cluster_pubsub_max_instances_10k_writes_"
                    "core_per_node", n);
        }
    }
done:
    if (e) {
        env_close(&e[0]);
        env_close(&e[1]);
    }
    free(e);
}

/* ---- behind real relays (tc-bench --only relay_cluster) ---------------- */

/* Subscriber connections named tiercached-pubsub on `c` (CLIENT LIST), or
 * -1 when CLIENT LIST failed. */
static int relay_upstreams(redisContext *c)
{
    redisReply *r = redisCommand(c, "CLIENT LIST");
    int n = 0;
    if (!r || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return -1;
    }
    for (const char *p = r->str; (p = strstr(p, " name=tiercached-pubsub "));
         p++)
        n++;
    freeReplyObject(r);
    return n;
}

/* Subscribers of `chan` on `c` (PUBSUB NUMSUB), or -1. */
static long long numsub(redisContext *c, const char *chan)
{
    redisReply *r = redisCommand(c, "PUBSUB NUMSUB %s", chan);
    long long n = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_INTEGER)
        n = r->element[1]->integer;
    freeReplyObject(r);
    return n;
}

/* One row: H relays against the cluster, K local subscribers each, every
 * one with a connection per master (TC.RELAY + SUBSCRIBE on that master's
 * channel, as the library's bus does through a relay); `msgs` writes
 * spread over the masters. Each node's CPU per write into us[], its
 * tiercached-pubsub connections into up[]. 0 or -1. */
static int fc_relay_row(fc_env *e, int h, int k, int msgs, double us[MASTERS],
                        int up[MASTERS])
{
    char url[64];
    bench_relays *rs = NULL;
    bench_relay_proc *r;
    int nfd = 0, rc = -1;
    int *fds = malloc(sizeof(int) * (size_t)h * (size_t)k * MASTERS);
    bench_drain d = {.ep = epoll_create1(EPOLL_CLOEXEC)};
    long long want = 0;
    double cpu0[MASTERS], cmds;
    snprintf(url, sizeof(url), "redis-cluster://127.0.0.1:%d", e->cl.port[0]);
    if (!fds || d.ep < 0 || !(rs = bench_relays_start(url, h)))
        goto out;
    r = rs->r;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < k * MASTERS; j++) {
            int m = j % MASTERS, fd = bench_unix_connect(r[i].sock);
            if (fd < 0)
                goto out;
            fds[nfd++] = fd;
            if (bench_relay_subscribe(fd, "127.0.0.1", e->cl.port[m],
                                      e->chan[0][m]) != 0) {
                fprintf(stderr, "tc-bench: TC.RELAY/SUBSCRIBE through relay "
                                "%d to :%d failed\n", i, e->cl.port[m]);
                goto out;
            }
            if (bench_drain_add(&d, fd) != 0)
                goto out;
        }
    /* Each relay's upstream subscription is on every master (up to 10 s). */
    for (int m = 0; m < MASTERS; m++) {
        int t = 0;
        while (numsub(e->ctl[m], e->chan[0][m]) < h && t++ < 1000)
            bench_sleep_us(10000);
        if ((up[m] = relay_upstreams(e->ctl[m])) < 0)
            goto out;
    }
    if (bench_drain_start(&d) != 0)
        goto out;
    for (int m = 0; m < MASTERS; m++)
        if (bench_redis_usage(e->ctl[m], &cpu0[m], &cmds) != 0)
            goto out;
    if (fc_write(e, 0, msgs, -1, (long long)h * k, &want) != 0 ||
        fc_settle(e, &d, want, cpu0, msgs, us) != 0)
        goto out;
    rc = 0;
out:
    bench_drain_stop(&d);
    for (int i = 0; i < nfd; i++)
        close(fds[i]);
    free(fds);
    bench_relays_stop(rs);
    return rc;
}

enum { RELAY_ROWS = 3 };

void bench_relay_cluster(const bench_cfg *cfg)
{
    static const int hs[RELAY_ROWS] = {1, 5, 10};
    const int k = 16, msgs = cfg->quick ? 3000 : 60000;
    double busiest[RELAY_ROWS], us[MASTERS], a, b;
    int up[MASTERS];
    fc_env *e = calloc(1, sizeof(*e));
    char key[96];

    printf("\n== fleet behind real relays on a 3-master Redis Cluster: %d "
           "local subscribers per relay, each subscribed on every master "
           "through it ==\n", k);
    fflush(stdout);
    if (!e || env_open(e, cfg, 0) != 0) {
        fprintf(stderr, "tc-bench: relay_cluster: no cluster\n");
        bench_fail();
        goto done;
    }
    printf("  %-8s %10s %9s %9s %9s %10s %24s\n", "relays", "instances",
           "node 0", "node 1", "node 2", "busiest", "tiercached-pubsub/node");
    for (int i = 0; i < RELAY_ROWS; i++) {
        int h = hs[i], shared = 1;
        if (fc_relay_row(e, h, k, msgs, us, up) != 0) {
            fprintf(stderr, "tc-bench: relay_cluster with %d relays "
                            "failed\n", h);
            bench_fail();
            goto done;
        }
        busiest[i] = us[0];
        for (int m = 1; m < MASTERS; m++)
            if (us[m] > busiest[i])
                busiest[i] = us[m];
        for (int m = 0; m < MASTERS; m++)
            shared &= up[m] == h;
        printf("  %-8d %10d %6.1f us %6.1f us %6.1f us %7.1f us %10d %d %d "
               "(%s)\n", h, h * k, us[0], us[1], us[2], busiest[i], up[0],
               up[1], up[2], shared ? "= relays: shared" : "NOT = relays");
        if (!shared) {
            fprintf(stderr, "tc-bench: relay_cluster: a master does not "
                            "hold exactly %d relay upstreams\n", h);
            bench_fail();
        }
        snprintf(key, sizeof(key), "fleet_relay_cluster_busiest_cpu_us_h%d_"
                 "k%d", h, k);
        res_num(key, busiest[i]);
        snprintf(key, sizeof(key), "fleet_relay_cluster_upstreams_per_node_"
                 "h%d", h);
        res_num(key, up[0] == up[1] && up[1] == up[2] ? up[0] : -1);
    }
    fit(hs, busiest, RELAY_ROWS, &a, &b);
    res_num("fleet_relay_cluster_busiest_cpu_us_per_relay", b);
    if (b > 0) {
        /* 10,000 writes/s x (a + b H) = the busiest node's core. */
        double hosts = (1e6 / 10000 - a) / b;
        printf("  largest fleet at 10,000 writes/s spread over the masters "
               "(busiest node's core full; least squares): %.0f hosts "
               "(%.3f us per write per relay); with 16 processes per host: "
               "%.0f instances\n", hosts, b, hosts * 16);
        res_num("fleet_relay_cluster_max_hosts_10k_writes", hosts);
        res_num("fleet_relay_cluster_max_instances_10k_writes_k16",
                hosts * 16);
    } else
        printf("  no measurable cost per relay (%.3f us per write)\n", b);
done:
    if (e)
        env_close(e);
    free(e);
}
