/*
 * Fleet cost behind relays (issue 10): instances that subscribe through
 * their host's tiercached (bus_relay=, lib/relay.c; daemon/pubsub.c), so
 * that Redis sends each invalidation once per host.
 *
 *   H relays (tiercached processes, --coherence none so that their own
 *   bus stays quiet), each carrying K local subscriber connections on one
 *   channel (a thread drains them all with epoll), N = H x K instances; a
 *   publisher pipelines invalidation messages of the library's format
 *   straight to Redis and the run waits until every local subscriber got
 *   every message. Redis CPU (INFO cpu) per published message, and the
 *   relays' CPU (/proc/<pid>/stat, all H together) per message per local
 *   subscriber.
 *   From the per-relay slope: the largest number of hosts (relays) one
 *   Redis core carries at 10,000 writes per second, and the fleet that
 *   makes with 16 processes per host (the assumption: one worker process
 *   per core of a 16-core host).
 *
 * The relays are the tiercached built with the bench (TC_BENCH_TIERCACHED
 * at build time, or $TIERCACHED).
 *
 * JSON: fleet_relay_write_cpu_us_h{H}_k{K}, fleet_relay_cpu_us_per_msg_
 * per_sub_h{H}_k{K}, fleet_relay_write_cpu_us_per_relay,
 * fleet_relay_max_hosts_10k_writes, fleet_relay_max_instances_10k_writes_k16.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static const char channel[] = "tcbench:relay";

const char *bench_tiercached_path(void)
{
    const char *p = getenv("TIERCACHED");
#ifdef TC_BENCH_TIERCACHED
    if (!p)
        p = TC_BENCH_TIERCACHED;
#endif
    return p;
}

static double redis_cpu_s(redisContext *rc)
{
    double cpu = 0, cmds;
    bench_redis_usage(rc, &cpu, &cmds);
    return cpu;
}

double bench_proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    p = fgets(buf, sizeof(buf), f);
    fclose(f);
    if (!p || !(p = strrchr(buf, ')')))
        return 0;
    /* After ")": state(3) ... utime(14) stime(15). */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int bench_unix_connect(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Relay `i` of a bench_relays, listening on <dir>/r<i>.sock: 0, or -1
 * (r->pid may then be set). */
static int relay_start(const char *url, const char *dir, int i,
                       bench_relay_proc *r)
{
    const char *bin = bench_tiercached_path();
    snprintf(r->sock, sizeof(r->sock), "%s/r%d.sock", dir, i);
    if (!bin)
        return -1;
    r->pid = fork();
    if (r->pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        execl(bin, bin, "--socket", r->sock, "--redis-url", url,
              "--coherence", "none", "--workers", "1", "--log-level",
              "error", "--max-output", "268435456", (char *)NULL);
        _exit(127);
    }
    if (r->pid < 0)
        return -1;
    for (int t = 0; t < 500; t++) { /* up within 5 s */
        int fd = bench_unix_connect(r->sock);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        bench_sleep_us(10000);
    }
    return -1;
}

bench_relays *bench_relays_start(const char *url, int n)
{
    bench_relays *rs = calloc(1, sizeof(*rs) + (size_t)n * sizeof(rs->r[0]));
    if (!rs)
        return NULL;
    snprintf(rs->dir, sizeof(rs->dir), "/tmp/tc-bench-relay.XXXXXX");
    if (!mkdtemp(rs->dir)) {
        free(rs);
        return NULL;
    }
    for (; rs->n < n; rs->n++)
        if (relay_start(url, rs->dir, rs->n, &rs->r[rs->n]) != 0) {
            fprintf(stderr, "tc-bench: relay %d did not start (%s)\n", rs->n,
                    bench_tiercached_path() ? bench_tiercached_path()
                                            : "no tiercached: set TIERCACHED");
            rs->n++; /* its pid may be set */
            bench_relays_stop(rs);
            return NULL;
        }
    return rs;
}

void bench_relays_stop(bench_relays *rs)
{
    char cmd[100];
    if (!rs)
        return;
    for (int i = 0; i < rs->n; i++)
        if (rs->r[i].pid > 0) {
            kill(rs->r[i].pid, SIGTERM);
            waitpid(rs->r[i].pid, NULL, 0);
        }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", rs->dir);
    if (system(cmd) != 0) {
        /* a leftover temp dir: harmless */
    }
    free(rs);
}

int bench_relay_subscribe(int fd, const char *node, int port,
                          const char *chan)
{
    char req[512], buf[256];
    int n = 0;
    size_t got = 0;
    if (node) {
        char p[16];
        int pl = snprintf(p, sizeof(p), "%d", port);
        n = snprintf(req, sizeof(req),
                     "*3\r\n$8\r\nTC.RELAY\r\n$%zu\r\n%s\r\n$%d\r\n%s\r\n",
                     strlen(node), node, pl, p);
    }
    n += snprintf(req + n, sizeof(req) - (size_t)n,
                  "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n", strlen(chan),
                  chan);
    if (n >= (int)sizeof(req) || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    /* "+OK" (TC.RELAY), then "*3 subscribe <ch> :1", which ends with
     * ":1\r\n"; an error ("-ERR ...") fails. */
    while (got < sizeof(buf)) {
        ssize_t k = read(fd, buf + got, sizeof(buf) - got);
        if (k <= 0)
            return -1;
        got += (size_t)k;
        if (buf[0] == '-' || (node && got >= 1 && buf[0] != '+'))
            return -1;
        if (got >= 4 && !memcmp(buf + got - 4, ":1\r\n", 4))
            return 0;
    }
    return -1;
}

static int digits(size_t n)
{
    int d = 1;
    while (n >= 10)
        n /= 10, d++;
    return d;
}

/* One row: Redis CPU per write (us), the relays' CPU per message per
 * local subscriber (us). 0, or -1 when something failed. */
static int relay_row(const bench_cfg *cfg, redisContext *rc, int h, int k,
                     int msgs, double *redis_us, double *relay_us)
{
    char msg[256];
    bench_relays *rs = NULL;
    bench_relay_proc *r;
    int *fds = malloc(sizeof(int) * (size_t)(h * k)), nfd = 0, rcode = -1;
    bench_drain d = {.ep = epoll_create1(EPOLL_CLOEXEC)};
    long long want = 0;
    double cpu0, cpu1, rel0 = 0, rel1 = 0;
    if (!fds || d.ep < 0 || !(rs = bench_relays_start(cfg->url, h)))
        goto out;
    r = rs->r;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < k; j++) {
            int fd = bench_unix_connect(r[i].sock);
            if (fd < 0 || bench_relay_subscribe(fd, NULL, 0, channel) != 0) {
                if (fd >= 0)
                    close(fd);
                goto out;
            }
            fds[nfd++] = fd;
            if (bench_drain_add(&d, fd) != 0)
                goto out;
        }
    if (bench_drain_start(&d) != 0)
        goto out;
    cpu0 = redis_cpu_s(rc);
    for (int i = 0; i < h; i++)
        rel0 += bench_proc_cpu_s(r[i].pid);
    for (int b = 0; b < msgs; b += 100) {
        for (int j = 0; j < 100; j++) {
            size_t ml;
            snprintf(msg, sizeof(msg), "v1 key @fleetbench0000:%d:"
                                       "1700000000000000 user:%d", b + j,
                     b + j);
            ml = strlen(msg);
            /* *3 $7 message $<ch> ch $<ml> msg */
            want += (long long)(4 + 4 + 9 + 1 + digits(strlen(channel)) + 2 +
                                strlen(channel) + 2 + 1 + digits(ml) + 2 + ml +
                                2) * (long long)nfd;
            redisAppendCommand(rc, "PUBLISH %s %s", channel, msg);
        }
        for (int j = 0; j < 100; j++) {
            redisReply *rep = NULL;
            if (redisGetReply(rc, (void **)&rep) != REDIS_OK)
                goto out;
            freeReplyObject(rep);
        }
    }
    cpu1 = redis_cpu_s(rc);
    for (int t = 0; t < 6000 && atomic_load(&d.bytes) < want; t++)
        bench_sleep_us(10000); /* every message delivered (60 s at most) */
    for (int i = 0; i < h; i++)
        rel1 += bench_proc_cpu_s(r[i].pid);
    if (atomic_load(&d.bytes) < want) {
        fprintf(stderr, "tc-bench: relays delivered %lld of %lld bytes\n",
                (long long)atomic_load(&d.bytes), want);
        goto out;
    }
    *redis_us = (cpu1 - cpu0) * 1e6 / msgs;
    *relay_us = (rel1 - rel0) * 1e6 / msgs / nfd;
    rcode = 0;
out:
    bench_drain_stop(&d);
    for (int i = 0; i < nfd; i++)
        close(fds[i]);
    free(fds);
    bench_relays_stop(rs);
    return rcode;
}

void bench_relay(const bench_cfg *cfg)
{
    static const int full[][2] = {{1, 100}, {5, 100}, {10, 50}, {20, 25}};
    static const int quick[][2] = {{1, 10}, {4, 10}};
    const int(*rows)[2] = cfg->quick ? quick : full;
    int nrows = cfg->quick ? 2 : 4, msgs = cfg->quick ? 2000 : 20000;
    double w[4], rl[4], slope;
    redisContext *rc = bench_redis_connect(cfg);
    char key[96];

    printf("\n== fleet behind relays: one subscriber connection per host "
           "==\n");
    if (!rc) {
        bench_fail();
        return;
    }
    printf("  %-22s %10s %16s %22s\n", "relays x local subs", "instances",
           "Redis CPU/write", "relay CPU/msg/local sub");
    for (int i = 0; i < nrows; i++) {
        int h = rows[i][0], k = rows[i][1];
        if (relay_row(cfg, rc, h, k, msgs, &w[i], &rl[i]) != 0) {
            fprintf(stderr, "tc-bench: relay row %d x %d failed\n", h, k);
            bench_fail();
            redisFree(rc);
            return;
        }
        printf("  %4d x %-15d %10d %13.1f us %19.2f us\n", h, k, h * k, w[i],
               rl[i]);
        snprintf(key, sizeof(key), "fleet_relay_write_cpu_us_h%d_k%d", h, k);
        res_num(key, w[i]);
        snprintf(key, sizeof(key),
                 "fleet_relay_cpu_us_per_msg_per_sub_h%d_k%d", h, k);
        res_num(key, rl[i]);
    }
    slope = (w[nrows - 1] - w[0]) / (rows[nrows - 1][0] - rows[0][0]);
    res_num("fleet_relay_write_cpu_us_per_relay", slope);
    if (slope > 0) {
        /* 10,000 writes/s x (base + slope x H) = one core's second. */
        double hosts = (1e6 / 10000 - (w[0] - slope)) / slope;
        printf("  largest fleet one Redis core carries at 10,000 writes/s: "
               "%.0f hosts (%.2f us per write per relay); with 16 processes "
               "per host: %.0f instances\n", hosts, slope, hosts * 16);
        res_num("fleet_relay_max_hosts_10k_writes", hosts);
        res_num("fleet_relay_max_instances_10k_writes_k16", hosts * 16);
    }
    redisFree(rc);
}
