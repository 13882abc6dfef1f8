/*
 * tc-bench-tls: what TLS costs an L2 hit. Starts a plain and a TLS-only
 * redis-server (the test fixture's throwaway CA), and times, for a 64 B and
 * a 4 KiB value: tc_get() of a key not in L1 and found in Redis (an L2 hit
 * as a caller sees it: a tc_cache at default settings but for a 1024-entry
 * L1, reading 4096 keys in turn; a tc_peek() before each, untimed, skips
 * any key L1 still holds), GET through the L2 pool alone (tc__l2_run, one
 * connection), and a new connection (connect + handshake + PING). Plain and
 * TLS run interleaved in blocks whose order alternates, so machine noise
 * hits both alike. Prints p50/p99/mean per row; never judges the figures.
 *
 * Usage: tc-bench-tls [gets per row, default 20000]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "conn.h"
#include "error.h"
#include "l2.h"
#include "redis_fixture.h"

enum { BLOCK = 500, CONNECTS = 200 };

typedef struct side {
    const char *name;
    tcr_server srv;
    tc__config cfg;
    tc__l2 *l2;
    tc_cache *c;   /* for the tc_get() rows */
    size_t next;   /* the next of its GET_KEYS keys to read */
} side;

enum { GET_KEYS = 4096, GET_L1 = 1024 };

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void row(const char *what, const char *name, uint64_t *ns, size_t n)
{
    double sum = 0;
    qsort(ns, n, sizeof(*ns), cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    printf("  %-22s %-6s %9.1f %9.1f %9.1f\n", what, name,
           (double)ns[n / 2] / 1e3, (double)ns[n * 99 / 100] / 1e3,
           sum / (double)n / 1e3);
}

static int setup(side *s, int tls)
{
    tc_options o;
    memset(&o, 0, sizeof(o));
    s->name = tls ? "tls" : "plain";
    if ((tls ? tcr_start_tls(&s->srv, NULL) : tcr_start(&s->srv, NULL)) != 0) {
        fprintf(stderr, "cannot start the %s redis-server\n", s->name);
        return -1;
    }
    o.url = s->srv.url;
    o.ignore_env = TC_YES;
    o.pool_size = 1;
    o.tls_ca_file = tls ? s->srv.ca_file : NULL;
    if (tc__config_resolve(&o, &s->cfg) != TC_OK ||
        tc__l2_create(&s->cfg, &s->l2) != TC_OK) {
        fprintf(stderr, "%s: %s\n", s->name, tc_errmsg());
        return -1;
    }
    o.pool_size = 0; /* the default */
    o.l1_max_entries = GET_L1;
    if (tc_cache_create(&o, &s->c) != TC_OK) {
        fprintf(stderr, "%s cache: %s\n", s->name, tc_errmsg());
        return -1;
    }
    return 0;
}

static void get_key(char *key, size_t len, size_t vlen, size_t i)
{
    snprintf(key, len, "tlsget:%zu:%zu", vlen, i);
}

/* Store the GET_KEYS keys of `vlen` bytes through s->c. */
static int fill(side *s, size_t vlen)
{
    char *v = malloc(vlen), key[48];
    int rc = 0;
    if (!v)
        return -1;
    memset(v, 'v', vlen);
    for (size_t i = 0; i < GET_KEYS && !rc; i++) {
        get_key(key, sizeof(key), vlen, i);
        if (tc_set(s->c, key, strlen(key), v, vlen, 0) != TC_OK) {
            fprintf(stderr, "%s tc_set: %s\n", s->name, tc_errmsg());
            rc = -1;
        }
    }
    free(v);
    return rc;
}

/* Time `n` tc_get()s of keys of `vlen` bytes that L1 does not hold into
 * ns[]; *in_l1 counts the keys skipped because it did. */
static int cache_gets(side *s, size_t vlen, uint64_t *ns, size_t n,
                      size_t *in_l1)
{
    char key[48];
    for (size_t i = 0; i < n;) {
        tc_value *v = NULL;
        uint64_t t0;
        get_key(key, sizeof(key), vlen, s->next++ % GET_KEYS);
        if (tc_peek(s->c, key, strlen(key), &v) == TC_OK) {
            tc_value_release(v);
            (*in_l1)++;
            continue;
        }
        t0 = tc__now_ns();
        if (tc_get(s->c, key, strlen(key), &v) != TC_OK ||
            tc_value_len(v) != vlen) {
            fprintf(stderr, "%s tc_get: %s\n", s->name, tc_errmsg());
            tc_value_release(v);
            return -1;
        }
        ns[i++] = tc__now_ns() - t0;
        tc_value_release(v);
    }
    return 0;
}

/* Time `n` GETs of `key` on side s into ns[]. */
static int gets(side *s, const char *key, size_t vlen, uint64_t *ns, size_t n)
{
    tc__cmd get = {2, (const char *[]){"GET", key}, (size_t[]){3, strlen(key)}};
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        uint64_t t0 = tc__now_ns();
        if (tc__l2_run(s->l2, 1, &get, &r, 0) != TC_OK || r->len != vlen) {
            fprintf(stderr, "%s GET: %s\n", s->name, tc_errmsg());
            return -1;
        }
        ns[i] = tc__now_ns() - t0;
        freeReplyObject(r);
    }
    return 0;
}

int main(int argc, char **argv)
{
    size_t per_row = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    static const size_t sizes[2] = {64, 4096};
    side sd[2];
    uint64_t *ns[2][2] = {{NULL, NULL}, {NULL, NULL}}, *cn[2] = {NULL, NULL};
    uint64_t *cg[2][2] = {{NULL, NULL}, {NULL, NULL}};
    size_t in_l1[2] = {0, 0};
    tc_stats st0[2], st1[2];
    int rc = 1;

    memset(sd, 0, sizeof(sd));
    per_row = (per_row + BLOCK - 1) / BLOCK * BLOCK;
    if (setup(&sd[0], 0) || setup(&sd[1], 1))
        goto out;
    for (int s = 0; s < 2; s++) {
        cn[s] = calloc(CONNECTS, sizeof(uint64_t));
        for (int z = 0; z < 2; z++) {
            char *v = malloc(sizes[z]);
            char key[16];
            redisReply *r = NULL;
            tc__cmd set = {3, (const char *[]){"SET", key, v}, NULL};
            snprintf(key, sizeof(key), "bench:%zu", sizes[z]);
            set.argvlen = (size_t[]){3, strlen(key), sizes[z]};
            if (!v)
                goto out;
            memset(v, 'v', sizes[z]);
            ns[s][z] = calloc(per_row, sizeof(uint64_t));
            cg[s][z] = calloc(per_row, sizeof(uint64_t));
            if (tc__l2_run(sd[s].l2, 1, &set, &r, 0) != TC_OK) {
                fprintf(stderr, "SET: %s\n", tc_errmsg());
                free(v);
                goto out;
            }
            freeReplyObject(r);
            free(v);
            if (!ns[s][z] || !cg[s][z] || fill(&sd[s], sizes[z]))
                goto out;
        }
    }
    /* Warm up both (connections made, caches hot). */
    for (int s = 0; s < 2; s++)
        if (gets(&sd[s], "bench:64", 64, ns[s][0], BLOCK) ||
            cache_gets(&sd[s], 64, cg[s][0], BLOCK, &in_l1[s]))
            goto out;
    for (int s = 0; s < 2; s++) {
        in_l1[s] = 0;
        tc_cache_stats(sd[s].c, &st0[s]);
    }
    for (size_t done = 0, round = 0; done < per_row; done += BLOCK, round++)
        for (int z = 0; z < 2; z++)
            for (int k = 0; k < 2; k++) {
                int s = (int)((k + round) % 2);
                char key[16];
                snprintf(key, sizeof(key), "bench:%zu", sizes[z]);
                if (gets(&sd[s], key, sizes[z], ns[s][z] + done, BLOCK))
                    goto out;
            }
    for (size_t done = 0, round = 0; done < per_row; done += BLOCK, round++)
        for (int z = 0; z < 2; z++)
            for (int k = 0; k < 2; k++) {
                int s = (int)((k + round) % 2);
                if (cache_gets(&sd[s], sizes[z], cg[s][z] + done, BLOCK,
                               &in_l1[s]))
                    goto out;
            }
    for (int s = 0; s < 2; s++)
        tc_cache_stats(sd[s].c, &st1[s]);
    for (int i = 0; i < CONNECTS; i++)
        for (int k = 0; k < 2; k++) {
            int s = (k + i) % 2;
            tc_result why;
            uint64_t t0 = tc__now_ns();
            tc__conn *c = tc__l2_connect(&sd[s].cfg, &why);
            if (!c) {
                fprintf(stderr, "connect: %s\n", tc_errmsg());
                goto out;
            }
            cn[s][i] = tc__now_ns() - t0;
            tc__conn_free(c);
        }
    printf("L2 hit, tc_get() of a key not in L1, loopback (us):\n");
    printf("  %-22s %-6s %9s %9s %9s\n", "", "", "p50", "p99", "mean");
    for (int z = 0; z < 2; z++)
        for (int s = 0; s < 2; s++)
            row(z ? "tc_get, 4 KiB value" : "tc_get, 64 B value", sd[s].name,
                cg[s][z], per_row);
    for (int s = 0; s < 2; s++)
        printf("  %s: %llu L2 hits and %llu L1 hits counted for %zu timed "
               "gets (%zu keys skipped: in L1)\n", sd[s].name,
               (unsigned long long)(st1[s].l2_hits - st0[s].l2_hits),
               (unsigned long long)(st1[s].l1_hits - st0[s].l1_hits),
               2 * per_row, in_l1[s]);
    printf("L2 through the pool, loopback, one connection (us):\n");
    printf("  %-22s %-6s %9s %9s %9s\n", "", "", "p50", "p99", "mean");
    for (int z = 0; z < 2; z++)
        for (int s = 0; s < 2; s++)
            row(z ? "L2 hit, 4 KiB value" : "L2 hit, 64 B value", sd[s].name,
                ns[s][z], per_row);
    for (int s = 0; s < 2; s++)
        row("new connection + PING", sd[s].name, cn[s], CONNECTS);
    rc = 0;
out:
    for (int s = 0; s < 2; s++) {
        if (sd[s].c)
            tc_cache_destroy(sd[s].c);
        free(cg[s][0]);
        free(cg[s][1]);
        tc__l2_destroy(sd[s].l2);
        tc__config_free(&sd[s].cfg);
        tcr_stop(&sd[s].srv);
        free(ns[s][0]);
        free(ns[s][1]);
        free(cn[s]);
    }
    return rc;
}
