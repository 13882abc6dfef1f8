/*
 * tcd-bench-lat: one client, one request at a time, the p50 latency of a
 * write in microseconds; daemon/bench.sh runs it against redis-server,
 * tiercached and nutcracker alike, so the client's own cost is the same on
 * every side of a ratio.
 *
 * Usage: tcd-bench-lat HOST PORT N MODE
 *   incr     INCR of one of 1,000 keys (as redis-benchmark -t incr -r 1000)
 *   multi10  MULTI, INCR of 10 keys, EXEC (as bench_multi.py)
 *   floor    what tiercached sends redis-server for a forwarded INCR:
 *            MULTI, INCR, HSET of the key's stamp, PUBLISH of its
 *            invalidation on tiercached's channel, EXEC, in one write. Sent
 *            to redis-server directly, it is the least a write that carries
 *            its invalidation can cost without a proxy hop.
 *   floor10  the same for multi10: the 10 INCRs, one HSET of 10 stamps, one
 *            PUBLISH naming the 10 keys.
 * Prints "p50 p90" in microseconds; exits non-zero on any error reply.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* One command, its arguments NUL-terminated strings (buffered). */
static void append(redisContext *c, int argc, const char **argv)
{
    redisAppendCommandArgv(c, argc, argv, NULL);
}

int main(int argc, char **argv)
{
    redisContext *c;
    long long *lat;
    int n, keys, txn, floor;
    const char *mode;
    if (argc != 5) {
        fprintf(stderr, "usage: tcd-bench-lat HOST PORT N "
                        "incr|multi10|floor|floor10\n");
        return 2;
    }
    n = atoi(argv[3]);
    mode = argv[4];
    keys = strstr(mode, "10") ? 10 : 1;
    floor = strncmp(mode, "floor", 5) == 0;
    txn = floor || keys > 1;
    if (n < 1 || (!floor && strcmp(mode, "incr") && strcmp(mode, "multi10"))) {
        fprintf(stderr, "tcd-bench-lat: bad N or MODE\n");
        return 2;
    }
    c = redisConnect(argv[1], atoi(argv[2]));
    if (!c || c->err) {
        fprintf(stderr, "tcd-bench-lat: cannot connect\n");
        return 1;
    }
    if (!(lat = malloc((size_t)n * sizeof(*lat))))
        return 1;
    srand(1);
    for (int i = 0; i < n; i++) {
        char key[10][32], stamp[48], msg[512], field[10][8];
        const char *hset[2 + 2 * 10], *pub[3];
        int sent = 0, at;
        long long t0 = now_ns();
        if (txn) {
            const char *a[1] = {"MULTI"};
            append(c, 1, a), sent++;
        }
        for (int k = 0; k < keys; k++) {
            const char *a[2] = {"INCR", key[k]};
            if (keys == 1)
                snprintf(key[k], sizeof(key[k]), "counter:%06d", rand() % 1000);
            else
                snprintf(key[k], sizeof(key[k]), "bench:multi:%d", k);
            append(c, 2, a), sent++;
        }
        if (floor) {
            /* The shapes tiercached sends: stamps hash, "b<n>" fields,
             * "<id>:<counter>" stamps, "v1 key(s) @<id>:0:<us> <keys>". */
            snprintf(stamp, sizeof(stamp), "0f00000000000000:%d", i + 1);
            hset[0] = "HSET", hset[1] = "__tiercache:invalidate:stamps";
            at = snprintf(msg, sizeof(msg), "v1 %s @0f00000000000000:0:%lld",
                          keys > 1 ? "keys" : "key", t0 / 1000);
            for (int k = 0; k < keys; k++) {
                snprintf(field[k], sizeof(field[k]), "b%d",
                         (int)((unsigned)rand() % 4096));
                hset[2 + 2 * k] = field[k], hset[3 + 2 * k] = stamp;
                at += snprintf(msg + at, sizeof(msg) - (size_t)at, " %s",
                               key[k]);
            }
            append(c, 2 + 2 * keys, hset), sent++;
            pub[0] = "PUBLISH", pub[1] = "__tiercache:invalidate", pub[2] = msg;
            append(c, 3, pub), sent++;
        }
        if (txn) {
            const char *a[1] = {"EXEC"};
            append(c, 1, a), sent++;
        }
        for (int k = 0; k < sent; k++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                fprintf(stderr, "tcd-bench-lat: %s\n", c->errstr);
                return 1;
            }
            if (r->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "tcd-bench-lat: %s\n", r->str);
                return 1;
            }
            freeReplyObject(r);
        }
        lat[i] = now_ns() - t0;
    }
    qsort(lat, (size_t)n, sizeof(*lat), cmp);
    printf("%.1f %.1f\n", lat[n / 2] / 1000.0, lat[n * 9 / 10] / 1000.0);
    free(lat);
    redisFree(c);
    return 0;
}
