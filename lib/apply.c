/*
 * Where an invalidation is applied: messages from the channel (ours, other
 * instances', hand-published ones) and CLIENT TRACKING pushes are turned
 * into L1 invalidations here, on the bus thread; strict messages are then
 * acknowledged to their writer.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bus_internal.h"

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

/* Propagation lag histogram: origin's wall clock to ours (same host in
 * tests and bench; across hosts it includes their clock offset). */
static void count_lag(tc__bus *bus, uint64_t ts_us)
{
    uint64_t now = realtime_us(), lag = now > ts_us ? now - ts_us : 0;
    unsigned b = 0;
    while (lag >= 2 && b < 23) {
        lag >>= 1;
        b++;
    }
    atomic_fetch_add_explicit(&bus->lag_hist[b], 1, memory_order_relaxed);
}

static void apply_key(tc__bus *bus, const char *k, size_t klen)
{
    tc__l1_invalidate_key(bus->l1, tc__hash(k, klen), k, klen);
}

/* Acknowledge strict message `seq` to its origin, naming ourselves. */
static void acknowledge(tc__bus *bus, const tc__msg *m)
{
    char chan[512], ack[24 + TC__ORIGIN_MAX + 2];
    int n = snprintf(chan, sizeof(chan), "%s:ack:%s", bus->cfg->channel,
                     m->origin);
    snprintf(ack, sizeof(ack), "%llu %s", (unsigned long long)m->seq, bus->id);
    if (n > 0 && (size_t)n < sizeof(chan) && bus->cmd)
        tc__aconn_commandf(bus->cmd, NULL, NULL, "PUBLISH %s %s", chan, ack);
}

void tc__apply_message(tc__bus *bus, const char *buf, size_t len)
{
    tc__msg m;
    const char *why;
    atomic_fetch_add_explicit(&bus->received, 1, memory_order_relaxed);
    if (tc__msg_parse(buf, len, &m, &why) != 0) {
        atomic_fetch_add_explicit(&bus->malformed, 1, memory_order_relaxed);
        tc__log(&bus->cfg->log, TC_LOG_WARN,
                "dropped malformed invalidation (%zu bytes): %s", len, why);
        return;
    }
    if (strcmp(m.origin, bus->id) == 0) {
        /* Our own write: L1 was updated before the write returned. */
        atomic_fetch_add_explicit(&bus->own_skipped, 1, memory_order_relaxed);
        if (m.seq)
            tc__strict_ack(&bus->strict, m.seq, bus->id, strlen(bus->id));
        return;
    }
    switch (m.kind) {
    case TC__MSG_KEY:
        apply_key(bus, m.body, m.body_len);
        break;
    case TC__MSG_KEYS: {
        size_t pos = 0, klen;
        const char *k;
        while (tc__msg_next_key(&m, &pos, &k, &klen) == 1)
            apply_key(bus, k, klen);
        break;
    }
    case TC__MSG_PREFIX:
        tc__l1_invalidate_prefix(bus->l1, m.body, m.body_len);
        break;
    case TC__MSG_PATTERN:
        tc__l1_invalidate_glob(bus->l1, m.body, m.body_len);
        break;
    case TC__MSG_ALL:
        tc__l1_clear(bus->l1);
        break;
    }
    atomic_fetch_add_explicit(&bus->applied, 1, memory_order_relaxed);
    if (m.ts_us)
        count_lag(bus, m.ts_us);
    if (m.seq && m.origin[0])
        acknowledge(bus, &m);
}

void tc__apply_tracking(tc__bus *bus, const redisReply *keys)
{
    const tc__config *cfg = bus->cfg;
    atomic_fetch_add_explicit(&bus->received, 1, memory_order_relaxed);
    if (keys->type == REDIS_REPLY_NIL) {
        tc__l1_clear(bus->l1); /* the server flushed its keyspace */
    } else if (keys->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            if (k->type != REDIS_REPLY_STRING || k->len < cfg->prefix_len ||
                memcmp(k->str, cfg->prefix, cfg->prefix_len) != 0)
                continue;
            apply_key(bus, k->str + cfg->prefix_len, k->len - cfg->prefix_len);
        }
    } else {
        atomic_fetch_add_explicit(&bus->malformed, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&bus->applied, 1, memory_order_relaxed);
}
