/*
 * One instance process for the multi-process coherence test: random reads
 * and writes over a small key set, every operation logged with its start and
 * end (CLOCK_MONOTONIC, comparable across processes on one machine).
 *
 *   tc_instance URL MODE ID KEYS MS WRITE_PCT SEED OUT
 *
 * Values are "<id>:<version>", the version from INCR ver:<key>, so every
 * write of a key has a unique version. Log lines:
 *   W <key> <version> <start_ns> <end_ns> <result>
 *   R <key> <version> <start_ns> <end_ns>          (found)
 *   S <strict_waits> <lease_expiries> <bus_flushes> <inval_applied>
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tiercache.h"

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

int main(int argc, char **argv)
{
    tc_options o;
    tc_cache *c = NULL;
    redisContext *rc;
    tc_stats st;
    FILE *out;
    uint64_t seed, deadline;
    int id, nkeys, write_pct;
    char *log;
    size_t cap = 1 << 20, len = 0;

    if (argc != 9) {
        fprintf(stderr, "usage: tc_instance URL MODE ID KEYS MS WPCT SEED OUT\n");
        return 2;
    }
    memset(&o, 0, sizeof(o));
    o.url = argv[1];
    o.ignore_env = TC_YES;
    o.coherence = strcmp(argv[2], "strict") == 0 ? TC_COHERENCE_STRICT
                                                 : TC_COHERENCE_ASYNC;
    o.lease_ms = 100;
    o.command_timeout_ms = 500;
    o.reconnect_min_ms = 10;
    o.reconnect_max_ms = 100;
    id = atoi(argv[3]);
    nkeys = atoi(argv[4]);
    deadline = now_ns() + (uint64_t)atoll(argv[5]) * 1000000ULL;
    write_pct = atoi(argv[6]);
    seed = (uint64_t)atoll(argv[7]) * 2654435761ULL + 1;
    if (tc_cache_create(&o, &c) != TC_OK) {
        fprintf(stderr, "instance %d: create: %s\n", id, tc_errmsg());
        return 1;
    }
    {
        struct timeval tv = {2, 0};
        rc = redisConnectWithTimeout("127.0.0.1", atoi(strrchr(argv[1], ':') + 1),
                                     tv);
        if (!rc || rc->err) {
            fprintf(stderr, "instance %d: version connection failed\n", id);
            return 1;
        }
    }
    log = malloc(cap);
    while (now_ns() < deadline) {
        char key[16], val[48];
        int k = (int)(rng_next(&seed) % (uint64_t)nkeys);
        int klen = snprintf(key, sizeof(key), "key%d", k);
        if (cap - len < 256) {
            cap *= 2;
            log = realloc(log, cap);
        }
        if ((int)(rng_next(&seed) % 100) < write_pct) {
            redisReply *r = redisCommand(rc, "INCR ver:%s", key);
            long long ver;
            uint64_t t0, t1;
            tc_result res;
            if (!r) { /* connection killed by the test: reconnect */
                redisReconnect(rc);
                continue;
            }
            if (r->type != REDIS_REPLY_INTEGER) {
                freeReplyObject(r);
                continue;
            }
            ver = r->integer;
            freeReplyObject(r);
            int vlen = snprintf(val, sizeof(val), "%d:%lld", id, ver);
            t0 = now_ns();
            res = tc_set(c, key, (size_t)klen, val, (size_t)vlen, 0);
            t1 = now_ns();
            len += (size_t)snprintf(log + len, cap - len,
                                    "W %s %lld %llu %llu %d\n", key, ver,
                                    (unsigned long long)t0,
                                    (unsigned long long)t1, (int)res);
        } else {
            tc_value *v = NULL;
            uint64_t t0 = now_ns(), t1;
            tc_result res = tc_get(c, key, (size_t)klen, &v);
            t1 = now_ns();
            if (res == TC_OK) {
                char text[48];
                size_t n = tc_value_len(v) < sizeof(text) - 1
                               ? tc_value_len(v)
                               : sizeof(text) - 1;
                const char *colon;
                long long ver;
                memcpy(text, tc_value_data(v), n); /* values are not */
                text[n] = '\0';                    /* NUL-terminated */
                colon = strchr(text, ':');
                ver = colon ? atoll(colon + 1) : -1;
                len += (size_t)snprintf(log + len, cap - len,
                                        "R %s %lld %llu %llu\n", key, ver,
                                        (unsigned long long)t0,
                                        (unsigned long long)t1);
                tc_value_release(v);
            }
        }
    }
    tc_cache_stats(c, &st);
    len += (size_t)snprintf(log + len, cap - len, "S %llu %llu %llu %llu\n",
                            (unsigned long long)st.strict_waits,
                            (unsigned long long)st.strict_lease_expiries,
                            (unsigned long long)st.bus_flushes,
                            (unsigned long long)st.inval_applied);
    out = fopen(argv[8], "w");
    if (!out || fwrite(log, 1, len, out) != len) {
        fprintf(stderr, "instance %d: cannot write log\n", id);
        return 1;
    }
    fclose(out);
    free(log);
    redisFree(rc);
    tc_cache_destroy(c);
    return 0;
}
