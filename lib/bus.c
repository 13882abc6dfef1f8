/* Invalidation bus: helper thread, subscriptions, liveness lease, acks. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>

#include "bus.h"
#include "error.h"
#include "msg.h"

#define PING_RING 64
#define TRACKING_CHANNEL "__redis__:invalidate"

typedef struct ack_id {
    char id[TC__ORIGIN_MAX + 1];
} ack_id;

struct tc__strict_wait {
    uint64_t seq;
    ack_id *acked;        /* smu: distinct instances that acknowledged */
    size_t nacked, cap;   /* smu */
    struct tc__strict_wait *next;
};

struct tc__bus {
    const tc__config *cfg;
    tc__l1 *l1;
    char id[TC__ORIGIN_MAX + 1];
    char *members_key, *ch_ack, *ch_pong; /* owned */

    /* Bus thread only. */
    struct ev_loop *loop;
    ev_async wake;
    ev_timer tick, retry, connect_deadline;
    redisAsyncContext *sub, *cmd;
    int subs_pending;        /* subscribe confirmations still expected */
    int subscribed;          /* all confirmations in */
    int tracking_ready;      /* CLIENT TRACKING acknowledged (or not used) */
    int ever_subscribed;
    int tearing_down;
    uint64_t ping_sent[PING_RING];
    unsigned ping_head, ping_tail; /* ring of unanswered PING send times */
    uint64_t refresh_sent[PING_RING];
    unsigned refresh_head, refresh_tail; /* unanswered membership refreshes */
    uint64_t ping_deadline, refresh_deadline; /* L1 lease from each proof */
    uint32_t backoff_ms;
    uint64_t rng;

    pthread_t thread;
    int started;

    /* Shared with other threads. */
    pthread_mutex_t qmu;
    int stop_requested;      /* qmu */
    atomic_uint_fast64_t l1_ok_until; /* tc__now_ns() */
    atomic_uint_fast64_t seq;
    atomic_uint_fast64_t generation;
    atomic_uint_fast64_t published, received, applied, malformed, own_skipped,
        reconnects, flushes, strict_waits, strict_expiries;
    atomic_uint_fast64_t lag_hist[24];

    pthread_mutex_t smu;
    pthread_cond_t scv;
    struct tc__strict_wait *waiters; /* smu */
    int stopping;                    /* smu */
};

static void schedule_retry(tc__bus *bus);
static void teardown(tc__bus *bus);

/* ------------------------------------------------------------------ */
/* Applying messages                                                   */
/* ------------------------------------------------------------------ */

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

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

static int has_acked(const tc__strict_wait *w, const char *id, size_t len)
{
    for (size_t i = 0; i < w->nacked; i++)
        if (strlen(w->acked[i].id) == len && memcmp(w->acked[i].id, id, len) == 0)
            return 1;
    return 0;
}

/* Record that instance `id` applied strict message `seq` (acks may arrive
 * before the writer knows whom to wait for: they are kept until then). */
static void ack_local(tc__bus *bus, uint64_t seq, const char *id, size_t len)
{
    if (len == 0 || len > TC__ORIGIN_MAX)
        return;
    pthread_mutex_lock(&bus->smu);
    for (tc__strict_wait *w = bus->waiters; w; w = w->next) {
        if (w->seq != seq)
            continue;
        if (!has_acked(w, id, len)) {
            if (w->nacked == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 8;
                ack_id *a = realloc(w->acked, cap * sizeof(*a));
                if (!a)
                    break; /* the writer then waits for the lease: safe */
                w->acked = a;
                w->cap = cap;
            }
            memcpy(w->acked[w->nacked].id, id, len);
            w->acked[w->nacked++].id[len] = '\0';
            pthread_cond_broadcast(&bus->scv);
        }
        break;
    }
    pthread_mutex_unlock(&bus->smu);
}

static void apply_key(tc__bus *bus, const char *k, size_t klen)
{
    tc__l1_invalidate_key(bus->l1, tc__hash(k, klen), k, klen);
}

static void on_invalidation(tc__bus *bus, const char *buf, size_t len)
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
            ack_local(bus, m.seq, bus->id, strlen(bus->id));
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
    if (m.seq && m.origin[0] && bus->cmd) {
        /* Acknowledge to the origin, naming ourselves: "<seq> <id>". */
        char chan[512], ack[24 + TC__ORIGIN_MAX + 2];
        int n = snprintf(chan, sizeof(chan), "%s:ack:%s", bus->cfg->channel,
                         m.origin);
        snprintf(ack, sizeof(ack), "%llu %s", (unsigned long long)m.seq,
                 bus->id);
        if (n > 0 && (size_t)n < sizeof(chan))
            redisAsyncCommand(bus->cmd, NULL, NULL, "PUBLISH %s %s", chan, ack);
    }
}

/* "<seq> <instance id>"; anything else is ignored. */
static void on_ack(tc__bus *bus, const char *buf, size_t len)
{
    uint64_t seq = 0;
    size_t i = 0;
    for (; i < len && i < 20 && buf[i] >= '0' && buf[i] <= '9'; i++)
        seq = seq * 10 + (uint64_t)(buf[i] - '0');
    if (i == 0 || i >= len || buf[i] != ' ')
        return;
    ack_local(bus, seq, buf + i + 1, len - i - 1);
}

/* Server-assisted tracking: the payload is an array of full Redis keys, or
 * nil when the server flushed everything. */
static void on_tracking(tc__bus *bus, redisReply *keys)
{
    const tc__config *cfg = bus->cfg;
    atomic_fetch_add_explicit(&bus->received, 1, memory_order_relaxed);
    if (keys->type == REDIS_REPLY_NIL) {
        tc__l1_clear(bus->l1);
    } else if (keys->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *k = keys->element[i];
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

/* ------------------------------------------------------------------ */
/* Liveness                                                            */
/* ------------------------------------------------------------------ */

static int is_str(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return r->type == REDIS_REPLY_STRING && r->len == n &&
           strncasecmp(r->str, s, n) == 0;
}

/* How long a proof sent at time t lets L1 be served: the lease, less the
 * margin for clocks that run at different rates. */
static uint64_t lease_ns(const tc__bus *bus)
{
    return (uint64_t)bus->cfg->lease_ms * 1000000ULL *
           (100 - bus->cfg->clock_margin_pct) / 100;
}

/* L1 may be served until both proofs lapse: the pong (every message
 * published before the PING was applied) and the membership refresh (a
 * strict writer counts us until then, so it waits for our ack or for our
 * lease to lapse). */
static void publish_deadline(tc__bus *bus)
{
    uint64_t until;
    if (!bus->subscribed || !bus->tracking_ready)
        return;
    until = bus->ping_deadline < bus->refresh_deadline ? bus->ping_deadline
                                                       : bus->refresh_deadline;
    if (atomic_load(&bus->l1_ok_until) == 0 && until > tc__now_ns())
        atomic_fetch_add(&bus->generation, 1);
    atomic_store_explicit(&bus->l1_ok_until, until, memory_order_release);
}

/* Membership: a sorted set scored by the server's clock, so no two
 * machines' clocks are compared. Score = expiry in server ms. */
static const char refresh_script[] =
    "local t = redis.call('TIME') "
    "local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) "
    "redis.call('PEXPIRE', KEYS[1], 10 * tonumber(ARGV[2]) + 60000) "
    "return 1";

static void on_refresh_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    tc__bus *bus = priv;
    redisReply *r = reply;
    uint64_t sent;
    (void)ac;
    if (!r || bus->refresh_head == bus->refresh_tail)
        return;
    sent = bus->refresh_sent[bus->refresh_head++ % PING_RING];
    if (r->type == REDIS_REPLY_ERROR) {
        tc__log(&bus->cfg->log, TC_LOG_WARN, "membership refresh failed: %.*s",
                (int)r->len, r->str);
        return;
    }
    bus->refresh_deadline = sent + lease_ns(bus);
    publish_deadline(bus);
}

static void send_refresh(tc__bus *bus)
{
    char lease[16];
    if (!bus->cmd || (bus->refresh_tail - bus->refresh_head) >= PING_RING)
        return;
    snprintf(lease, sizeof(lease), "%u", bus->cfg->lease_ms);
    if (redisAsyncCommand(bus->cmd, on_refresh_reply, bus, "EVAL %s 1 %s %s %s",
                          refresh_script, bus->members_key, bus->id,
                          lease) == REDIS_OK)
        bus->refresh_sent[bus->refresh_tail++ % PING_RING] = tc__now_ns();
}

static void send_ping(tc__bus *bus)
{
    const char *argv[2] = {"PING", bus->ch_pong};
    redisAsyncContext *ac = bus->sub;
    if (!ac || (bus->ping_tail - bus->ping_head) >= PING_RING)
        return;
    /* Appended raw, without a reply callback: hiredis 0.14 would hand a
     * subscribed connection's next message to a PING callback. The pong
     * (["pong", <ch_pong>]) is routed by hiredis to the PSUBSCRIBE callback
     * registered for the pattern <ch_pong>. */
    if (redisAppendCommandArgv(&ac->c, 2, argv, NULL) != REDIS_OK)
        return;
    if (ac->ev.addWrite)
        ac->ev.addWrite(ac->ev.data);
    bus->ping_sent[bus->ping_tail++ % PING_RING] = tc__now_ns();
}

static void became_ready(tc__bus *bus)
{
    if (!bus->subscribed || !bus->tracking_ready)
        return;
    /* Anything cached before this subscription may have missed an
     * invalidation: drop it all (this also fails in-flight fills). */
    if (bus->ever_subscribed) {
        tc__l1_clear(bus->l1);
        atomic_fetch_add(&bus->flushes, 1);
        atomic_fetch_add(&bus->reconnects, 1);
        tc__log(&bus->cfg->log, TC_LOG_INFO,
                "bus resubscribed: L1 flushed, serving again after a pong");
    }
    bus->ever_subscribed = 1;
    bus->backoff_ms = 0;
    bus->ping_head = bus->ping_tail = 0;
    bus->refresh_head = bus->refresh_tail = 0;
    bus->ping_deadline = bus->refresh_deadline = 0;
    send_refresh(bus);
    send_ping(bus);
}

static void on_pong_pattern(redisAsyncContext *ac, void *reply, void *priv)
{
    tc__bus *bus = priv;
    redisReply *r = reply;
    (void)ac;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return;
    if (is_str(r->element[0], "psubscribe")) {
        if (--bus->subs_pending == 0) {
            bus->subscribed = 1;
            became_ready(bus);
        }
    } else if (is_str(r->element[0], "pong")) {
        if (bus->ping_head != bus->ping_tail) {
            uint64_t sent = bus->ping_sent[bus->ping_head++ % PING_RING];
            bus->ping_deadline = sent + lease_ns(bus);
            publish_deadline(bus);
        }
    }
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    tc__bus *bus = priv;
    redisReply *r = reply, *ch;
    (void)ac;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    ch = r->element[1];
    if (is_str(r->element[0], "subscribe")) {
        if (--bus->subs_pending == 0) {
            bus->subscribed = 1;
            became_ready(bus);
        }
        return;
    }
    if (!is_str(r->element[0], "message") || ch->type != REDIS_REPLY_STRING)
        return;
    if (is_str(ch, bus->cfg->channel)) {
        if (r->element[2]->type == REDIS_REPLY_STRING)
            on_invalidation(bus, r->element[2]->str, r->element[2]->len);
    } else if (is_str(ch, bus->ch_ack)) {
        if (r->element[2]->type == REDIS_REPLY_STRING)
            on_ack(bus, r->element[2]->str, r->element[2]->len);
    } else if (is_str(ch, TRACKING_CHANNEL)) {
        on_tracking(bus, r->element[2]);
    }
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    tc__bus *bus = priv;
    redisReply *r = reply;
    if (!r || bus->tearing_down)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        tc__log(&bus->cfg->log, TC_LOG_ERROR, "bus setup refused: %.*s",
                (int)r->len, r->str);
        (void)ac;
        teardown(bus);
        schedule_retry(bus);
    }
}

static void on_tracking_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    tc__bus *bus = priv;
    redisReply *r = reply;
    (void)ac;
    if (!r || bus->tearing_down)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        tc__log(&bus->cfg->log, TC_LOG_ERROR, "CLIENT TRACKING refused: %.*s",
                (int)r->len, r->str);
        teardown(bus);
        schedule_retry(bus);
        return;
    }
    bus->tracking_ready = 1;
    became_ready(bus);
}

static void on_client_id(redisAsyncContext *ac, void *reply, void *priv)
{
    tc__bus *bus = priv;
    redisReply *r = reply;
    char id[24];
    (void)ac;
    if (!r || bus->tearing_down || !bus->cmd)
        return;
    if (r->type != REDIS_REPLY_INTEGER) {
        teardown(bus);
        schedule_retry(bus);
        return;
    }
    snprintf(id, sizeof(id), "%lld", r->integer);
    if (bus->cfg->prefix_len)
        redisAsyncCommand(bus->cmd, on_tracking_reply, bus,
                          "CLIENT TRACKING on REDIRECT %s BCAST PREFIX %b", id,
                          bus->cfg->prefix, bus->cfg->prefix_len);
    else
        redisAsyncCommand(bus->cmd, on_tracking_reply, bus,
                          "CLIENT TRACKING on REDIRECT %s BCAST", id);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    tc__bus *bus = ac->data;
    (void)status;
    if (ac == bus->sub)
        bus->sub = NULL;
    if (ac == bus->cmd)
        bus->cmd = NULL;
    if (!bus->tearing_down) {
        tc__log(&bus->cfg->log, TC_LOG_WARN, "bus connection lost: %s",
                ac->errstr[0] ? ac->errstr : "closed");
        teardown(bus);
        schedule_retry(bus);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    tc__bus *bus = ac->data;
    if (status == REDIS_OK)
        return;
    /* hiredis frees the context after this callback. */
    if (ac == bus->sub)
        bus->sub = NULL;
    if (ac == bus->cmd)
        bus->cmd = NULL;
    if (!bus->tearing_down) {
        tc__log(&bus->cfg->log, TC_LOG_DEBUG, "bus connect failed: %s",
                ac->errstr);
        teardown(bus);
        schedule_retry(bus);
    }
}

static redisAsyncContext *open_conn(tc__bus *bus)
{
    const tc__config *cfg = bus->cfg;
    redisAsyncContext *ac = cfg->unix_path
                                ? redisAsyncConnectUnix(cfg->unix_path)
                                : redisAsyncConnect(cfg->host, cfg->port);
    if (!ac)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = bus;
    if (redisLibevAttach(bus->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (cfg->password) {
        if (cfg->username)
            redisAsyncCommand(ac, on_setup_reply, bus, "AUTH %s %s",
                              cfg->username, cfg->password);
        else
            redisAsyncCommand(ac, on_setup_reply, bus, "AUTH %s",
                              cfg->password);
    }
    if (cfg->db)
        redisAsyncCommand(ac, on_setup_reply, bus, "SELECT %d", cfg->db);
    return ac;
}

static void teardown(tc__bus *bus)
{
    redisAsyncContext *sub = bus->sub, *cmd = bus->cmd;
    atomic_store_explicit(&bus->l1_ok_until, 0, memory_order_release);
    bus->tearing_down = 1;
    bus->subscribed = 0;
    bus->tracking_ready = 0;
    bus->sub = bus->cmd = NULL;
    if (sub)
        redisAsyncFree(sub);
    if (cmd)
        redisAsyncFree(cmd);
    bus->tearing_down = 0;
    ev_timer_stop(bus->loop, &bus->connect_deadline);
}

static void bus_connect(tc__bus *bus)
{
    const tc__config *cfg = bus->cfg;
    bus->sub = open_conn(bus);
    bus->cmd = bus->sub ? open_conn(bus) : NULL;
    if (!bus->sub || !bus->cmd) {
        teardown(bus);
        schedule_retry(bus);
        return;
    }
    bus->tracking_ready = !cfg->tracking;
    bus->subs_pending = 2 + (cfg->tracking ? 1 : 0) + 1;
    if (cfg->tracking) {
        redisAsyncCommand(bus->sub, on_client_id, bus, "CLIENT ID");
        redisAsyncCommand(bus->sub, on_sub_reply, bus, "SUBSCRIBE %s %s %s",
                          cfg->channel, bus->ch_ack, TRACKING_CHANNEL);
    } else {
        redisAsyncCommand(bus->sub, on_sub_reply, bus, "SUBSCRIBE %s %s",
                          cfg->channel, bus->ch_ack);
    }
    redisAsyncCommand(bus->sub, on_pong_pattern, bus, "PSUBSCRIBE %s",
                      bus->ch_pong);
    ev_timer_set(&bus->connect_deadline,
                 (cfg->connect_timeout_ms + cfg->command_timeout_ms) / 1000.0,
                 0.);
    ev_timer_start(bus->loop, &bus->connect_deadline);
}

static void on_connect_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    tc__bus *bus = w->data;
    (void)loop, (void)revents;
    if (!bus->subscribed || !bus->tracking_ready) {
        tc__log(&bus->cfg->log, TC_LOG_WARN, "bus setup timed out; retrying");
        teardown(bus);
        schedule_retry(bus);
    }
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    tc__bus *bus = w->data;
    (void)loop, (void)revents;
    if (!bus->sub)
        bus_connect(bus);
}

static void schedule_retry(tc__bus *bus)
{
    uint32_t min = bus->cfg->reconnect_min_ms, max = bus->cfg->reconnect_max_ms;
    uint64_t x = bus->rng;
    double delay;
    bus->backoff_ms = bus->backoff_ms ? bus->backoff_ms * 2 : min;
    if (bus->backoff_ms > max)
        bus->backoff_ms = max;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    bus->rng = x;
    /* Jitter: uniformly in [backoff/2, backoff]. */
    delay = (bus->backoff_ms / 2 + x % (bus->backoff_ms / 2 + 1)) / 1000.0;
    ev_timer_stop(bus->loop, &bus->retry);
    ev_timer_set(&bus->retry, delay, 0.);
    ev_timer_start(bus->loop, &bus->retry);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    tc__bus *bus = w->data;
    (void)loop, (void)revents;
    if (!bus->sub || !bus->subscribed)
        return;
    if (bus->ping_head != bus->ping_tail) {
        uint64_t oldest = bus->ping_sent[bus->ping_head % PING_RING];
        uint64_t limit = 2ULL * (bus->cfg->lease_ms + bus->cfg->command_timeout_ms) *
                         1000000ULL;
        if (tc__now_ns() - oldest > limit) {
            tc__log(&bus->cfg->log, TC_LOG_WARN,
                    "bus connection hung (no pong): reconnecting");
            teardown(bus);
            schedule_retry(bus);
            return;
        }
    }
    send_refresh(bus);
    send_ping(bus);
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    tc__bus *bus = w->data;
    int stop;
    (void)revents;
    pthread_mutex_lock(&bus->qmu);
    stop = bus->stop_requested;
    pthread_mutex_unlock(&bus->qmu);
    if (stop) {
        teardown(bus);
        ev_timer_stop(loop, &bus->tick);
        ev_timer_stop(loop, &bus->retry);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *bus_main(void *arg)
{
    tc__bus *bus = arg;
    bus_connect(bus);
    ev_run(bus->loop, 0);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Public to the library                                               */
/* ------------------------------------------------------------------ */

static char *join(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

tc_result tc__bus_create(const tc__config *cfg, tc__l1 *l1, const char *id,
                         tc__bus **out)
{
    tc__bus *bus = calloc(1, sizeof(*bus));
    if (!bus)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    bus->cfg = cfg;
    bus->l1 = l1;
    snprintf(bus->id, sizeof(bus->id), "%s", id);
    bus->members_key = join("__tiercache:", cfg->channel, ":members");
    bus->ch_ack = join(cfg->channel, ":ack:", id);
    bus->ch_pong = join(cfg->channel, ":pong:", id);
    bus->rng = tc__now_ns() | 1;
    pthread_mutex_init(&bus->qmu, NULL);
    pthread_mutex_init(&bus->smu, NULL);
    tc__cond_init(&bus->scv);
    bus->loop = ev_loop_new(EVFLAG_AUTO);
    if (!bus->members_key || !bus->ch_ack || !bus->ch_pong || !bus->loop) {
        tc__bus_destroy(bus);
        return tc__fail(TC_NO_MEMORY, "out of memory starting the bus");
    }
    ev_async_init(&bus->wake, on_wake);
    bus->wake.data = bus;
    ev_async_start(bus->loop, &bus->wake);
    ev_timer_init(&bus->tick, on_tick, cfg->lease_ms / 4000.0,
                  cfg->lease_ms / 4000.0);
    bus->tick.data = bus;
    ev_timer_start(bus->loop, &bus->tick);
    ev_timer_init(&bus->retry, on_retry, 0., 0.);
    bus->retry.data = bus;
    ev_timer_init(&bus->connect_deadline, on_connect_deadline, 1., 0.);
    bus->connect_deadline.data = bus;
    if (pthread_create(&bus->thread, NULL, bus_main, bus) != 0) {
        tc__bus_destroy(bus);
        return tc__fail(TC_NO_MEMORY, "cannot start the bus thread");
    }
    bus->started = 1;
    *out = bus;
    return TC_OK;
}

void tc__bus_destroy(tc__bus *bus)
{
    if (!bus)
        return;
    if (bus->started) {
        pthread_mutex_lock(&bus->qmu);
        bus->stop_requested = 1;
        pthread_mutex_unlock(&bus->qmu);
        ev_async_send(bus->loop, &bus->wake);
        pthread_join(bus->thread, NULL);
    }
    pthread_mutex_lock(&bus->smu);
    bus->stopping = 1;
    pthread_cond_broadcast(&bus->scv);
    pthread_mutex_unlock(&bus->smu);
    if (bus->loop)
        ev_loop_destroy(bus->loop);
    pthread_mutex_destroy(&bus->qmu);
    pthread_mutex_destroy(&bus->smu);
    pthread_cond_destroy(&bus->scv);
    free(bus->members_key);
    free(bus->ch_ack);
    free(bus->ch_pong);
    free(bus);
}

int tc__bus_l1_ok(tc__bus *bus, uint64_t now_ns)
{
    return now_ns <
           atomic_load_explicit(&bus->l1_ok_until, memory_order_acquire);
}

uint64_t tc__bus_strict_begin(tc__bus *bus, tc__strict_wait **out)
{
    tc__strict_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return 0;
    w->seq = atomic_fetch_add(&bus->seq, 1) + 1;
    pthread_mutex_lock(&bus->smu);
    w->next = bus->waiters;
    bus->waiters = w;
    pthread_mutex_unlock(&bus->smu);
    *out = w;
    return w->seq;
}

/* Has every instance in `members` acknowledged? (smu held) */
static int all_acked(const tc__strict_wait *w, const redisReply *members)
{
    if (!members)
        return 0;
    for (size_t i = 0; i < members->elements; i++) {
        const redisReply *m = members->element[i];
        if (m->type != REDIS_REPLY_STRING || !has_acked(w, m->str, m->len))
            return 0;
    }
    return 1;
}

int tc__bus_strict_wait(tc__bus *bus, tc__strict_wait *w,
                        const redisReply *members, uint64_t deadline_ns)
{
    int ok;
    atomic_fetch_add(&bus->strict_waits, 1);
    pthread_mutex_lock(&bus->smu);
    while (!all_acked(w, members) && !bus->stopping)
        if (tc__cond_wait_until(&bus->scv, &bus->smu, deadline_ns) == ETIMEDOUT)
            break;
    ok = all_acked(w, members);
    for (tc__strict_wait **pp = &bus->waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    pthread_mutex_unlock(&bus->smu);
    free(w->acked);
    free(w);
    if (!ok && deadline_ns)
        atomic_fetch_add(&bus->strict_expiries, 1);
    return ok;
}

void tc__bus_count_published(tc__bus *bus)
{
    atomic_fetch_add_explicit(&bus->published, 1, memory_order_relaxed);
}

const char *tc__bus_members_key(const tc__bus *bus)
{
    return bus->members_key;
}

const char *tc__bus_count_script(void)
{
    return "local t = redis.call('TIME') "
           "local now = t[1] * 1000 + math.floor(t[2] / 1000) "
           "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1) "
           "return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')";
}

uint64_t tc__bus_generation(tc__bus *bus)
{
    return atomic_load(&bus->generation);
}

void tc__bus_stats(tc__bus *bus, tc_stats *out)
{
    out->inval_published += atomic_load(&bus->published);
    out->inval_received += atomic_load(&bus->received);
    out->inval_applied += atomic_load(&bus->applied);
    out->inval_malformed += atomic_load(&bus->malformed);
    out->inval_own_skipped += atomic_load(&bus->own_skipped);
    out->bus_reconnects += atomic_load(&bus->reconnects);
    out->bus_flushes += atomic_load(&bus->flushes);
    out->strict_waits += atomic_load(&bus->strict_waits);
    out->strict_lease_expiries += atomic_load(&bus->strict_expiries);
    for (int i = 0; i < 24; i++)
        out->lag_us_hist[i] += atomic_load(&bus->lag_hist[i]);
}
