/*
 * The bus: its thread, its two connections and their life cycle. What
 * arrives is routed to apply.c (invalidations), lease.c (heartbeats) and
 * strict.c (acknowledgements).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"
#include "clock.h"
#include "error.h"
#include "handshake.h"
#include "sentinel.h"
#include "cluster.h"
#include "relay.h"
#include "signals.h"

int tc__reply_is(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return r->type == REDIS_REPLY_STRING && r->len == n &&
           strncasecmp(r->str, s, n) == 0;
}

/* ------------------------------------------------------------------ */
/* Subscriber: routing                                                 */
/* ------------------------------------------------------------------ */

static void subscribed_one(tc__bus *bus)
{
    if (--bus->subs_pending == 0) {
        bus->subscribed = 1;
        tc__lease_ready(bus);
    }
}

/* The link `ac` is (Redis Cluster), or NULL. */
static tc__bus_link *link_of(tc__bus *bus, const tc__aconn *ac)
{
    for (size_t i = 0; i < bus->nlinks; i++)
        if (bus->links[i].sub == ac)
            return &bus->links[i];
    return NULL;
}

tc__bus_link *tc__bus_link_of(tc__bus *bus, const tc__aconn *ac)
{
    return link_of(bus, ac);
}

void tc__bus_link_subscribe(tc__bus *bus, tc__bus_link *l)
{
    if (bus->cfg->tracking)
        tc__aconn_subscribef(l->sub, "SUBSCRIBE %s %s", l->channel,
                             TC__TRACKING_CHANNEL);
    else
        tc__aconn_subscribef(l->sub, "SUBSCRIBE %s", l->channel);
}

/* One of this bus's live connections (not a late callback of a dropped
 * one). */
static int ours(tc__bus *bus, const tc__aconn *ac)
{
    return ac && (ac == bus->sub || ac == bus->cmd || link_of(bus, ac));
}

static void on_sub_reply(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    tc__bus_link *l = NULL;
    redisReply *ch;
    if (!r || (ac != bus->sub && !(l = link_of(bus, ac))))
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        /* e.g. NOPERM: an ACL user without access to our channels. */
        tc__log(&bus->cfg->log, TC_LOG_ERROR, "bus SUBSCRIBE refused: %.*s",
                (int)r->len, r->str);
        tc__bus_reset(bus, "SUBSCRIBE refused");
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    ch = r->element[1];
    if (tc__reply_is(r->element[0], "subscribe")) {
        subscribed_one(bus);
        return;
    }
    if (!tc__reply_is(r->element[0], "message") ||
        ch->type != REDIS_REPLY_STRING)
        return;
    {
        const tc__bus_hook *h = atomic_load(&bus->message_hook);
        if (h)
            h->fn(h->arg);
    }
    if (tc__reply_is(ch, TC__TRACKING_CHANNEL)) {
        tc__apply_tracking(bus, r->element[2]);
        return;
    }
    if (r->element[2]->type != REDIS_REPLY_STRING)
        return;
    if (l) {
        if (tc__reply_is(ch, l->channel))
            tc__apply_message(bus, r->element[2]->str, r->element[2]->len);
    } else if (tc__reply_is(ch, bus->ch_inv) ||
               tc__reply_is(ch, bus->cfg->channel)) {
        tc__apply_message(bus, r->element[2]->str, r->element[2]->len);
    } else if (tc__reply_is(ch, bus->ch_pong)) {
        tc__lease_on_pong(bus, r->element[2]->str, r->element[2]->len);
    } else if (tc__reply_is(ch, bus->ch_ack)) {
        tc__strict_on_ack_message(&bus->strict, r->element[2]->str,
                                  r->element[2]->len);
    }
}

static void on_setup_reply(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    if (!r || !ours(bus, ac))
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        tc__log(&bus->cfg->log, TC_LOG_ERROR, "bus setup refused: %.*s",
                (int)r->len, r->str);
        tc__bus_reset(bus, "setup refused");
    }
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

/* A connection failed: it reports it once, and is freed here. */
static void on_conn_error(tc__aconn *ac, const char *why, void *data)
{
    tc__bus *bus = data;
    char msg[320];
    if (!ours(bus, ac))
        return;
    snprintf(msg, sizeof(msg), "bus connection lost: %s", why);
    tc__bus_reset(bus, msg);
}

/* ROLE on a connection to the master the sentinels named: anything but a
 * master (the sentinels lag a failover) means ask them again. */
static void on_role_reply(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    if (!r || !ours(bus, ac))
        return;
    if (!tc__sentinel_role_is_master(r)) {
        tc__sentinel_lost_master(bus->cfg->sentinel, bus->sgen);
        tc__bus_reset(bus, "bus reached a server that is not the master");
    }
}

/* Queue `setup`'s commands (borrowed) on `ac`, each reply to `cb` with
 * `bus`: 0, or -1 out of memory (`ac` is left to the caller). Bus thread. */
static int send_setup(tc__bus *bus, tc__aconn *ac, tc__setup_cmds *setup,
                      tc__aconn_reply_fn cb)
{
    for (int i = 0; i < setup->n; i++)
        if (tc__aconn_command_argv(ac, cb, bus, setup->cmd[i].argc,
                                   setup->cmd[i].argv,
                                   setup->cmd[i].argvlen) != 0)
            return -1;
    return 0;
}

/* Connect to `host`:`port` (NULL host: the configured unix socket). */
static tc__aconn *open_conn(tc__bus *bus, const char *host, int port)
{
    const tc__config *cfg = bus->cfg;
    tc__setup_cmds setup;
    tc__conn_opts o;
    tc__aconn_events ev = {on_conn_error, on_sub_reply, bus};
    tc__aconn *ac;
    tc__conn_opts_of(cfg, &o);
    if (host) {
        o.host = host;
        o.unix_path = NULL;
        o.port = port;
    }
    if (tc__aconn_open(bus->loop, &o, &ev, &ac) != TC_OK)
        return NULL; /* why: in tc_errmsg() */
    tc__setup_cmds_make(cfg, &setup);
    if (send_setup(bus, ac, &setup, on_setup_reply) != 0)
        goto oom;
    if (cfg->sentinel && tc__aconn_commandf(ac, on_role_reply, bus, "ROLE"))
        goto oom;
    return ac;
oom:
    tc__aconn_free(ac);
    tc__fail(TC_NO_MEMORY, "out of memory");
    return NULL;
}

static void on_relay_setup_reply(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    if (!r || !ours(bus, ac) || r->type != REDIS_REPLY_ERROR)
        return;
    /* WRONGPASS: bus_relay='s credentials; an error to TC.RELAY: a relay
     * whose upstream is not this cluster. */
    tc__log(&bus->cfg->log, TC_LOG_ERROR,
            "bus relay (tiercached) refused the set-up: %.*s", (int)r->len,
            r->str);
    tc__bus_reset(bus, "bus relay set-up refused");
}

/* A subscriber connection for node `host`:`port` (NULL host: the
 * configured unix socket): to the node itself, or through the relay
 * (relay.c), which on a cluster is told the node. */
static tc__aconn *open_sub(tc__bus *bus, const char *host, int port)
{
    const tc__config *cfg = bus->cfg;
    tc__setup_cmds setup;
    tc__conn_opts o;
    tc__aconn_events ev = {on_conn_error, on_sub_reply, bus};
    tc__aconn *ac;
    if (!tc__relay_on(cfg))
        return open_conn(bus, host, port);
    tc__relay_conn_opts(cfg, &o);
    if (tc__aconn_open(bus->loop, &o, &ev, &ac) != TC_OK)
        return NULL; /* why: in tc_errmsg() */
    tc__relay_setup_cmds(cfg, cfg->cluster ? host : NULL, port, &setup);
    if (send_setup(bus, ac, &setup, on_relay_setup_reply) != 0) {
        tc__aconn_free(ac);
        tc__fail(TC_NO_MEMORY, "out of memory");
        return NULL;
    }
    return ac;
}

/* Drop both connections (bus thread); safe from their own callbacks. */
static void drop_conns(tc__bus *bus)
{
    tc__aconn *sub = bus->sub, *cmd = bus->cmd;
    tc__bus_link *links = bus->links;
    size_t nlinks = bus->nlinks;
    tc__lease_drop(bus);
    bus->subscribed = 0;
    bus->tracking_ready = 0;
    bus->sub = bus->cmd = NULL;
    bus->links = NULL;
    bus->nlinks = 0;
    bus->topo_head = bus->topo_tail = 0;
    tc__aconn_free(sub);
    tc__aconn_free(cmd);
    for (size_t i = 0; i < nlinks; i++) {
        tc__aconn_free(links[i].sub);
        free(links[i].channel);
    }
    free(links);
    ev_timer_stop(bus->loop, &bus->connect_deadline);
}

/* Redis Cluster (cluster.h): the heartbeat connection and the main
 * subscription (acknowledgements, heartbeat tokens, and that master's own
 * invalidation channel) on the master of the state keys' slot, and one
 * more subscription on every other node that master's CLUSTER NODES
 * lists, replicas and masters without slots included, for that node's
 * invalidation channel (lease.c proves each one with its own tokens). A
 * failed node resets the bus, and the next connect learns the topology
 * again. 0, or -1 after a reset. */
static int cluster_connect(tc__bus *bus)
{
    const tc__config *cfg = bus->cfg;
    tc__node_addr ca, *m = malloc(TC__CLUSTER_MAX_NODES * sizeof(*m));
    size_t n = 0;
    char why[320];
    tc_result r;
    uint64_t asked = tc__now_ns(); /* before CLUSTER NODES is sent */
    if (!m) {
        tc__bus_reset(bus, "bus: out of memory");
        return -1;
    }
    r = tc__cluster_bus_nodes(cfg->cluster, cfg, bus->members_key, &ca, m,
                              TC__CLUSTER_MAX_NODES, &n);
    if (r != TC_OK) {
        free(m);
        snprintf(why, sizeof(why), "bus: %s", tc_errmsg());
        tc__bus_reset(bus, why);
        return -1;
    }
    free(bus->ch_inv);
    bus->ch_inv = tc__cluster_node_channel_dup(cfg->channel, &ca);
    bus->links = calloc(n ? n : 1, sizeof(*bus->links));
    if (!bus->ch_inv || !bus->links) {
        free(m);
        tc__bus_reset(bus, "bus: out of memory");
        return -1;
    }
    bus->sub_addr = ca;
    tc__log(&cfg->log, TC_LOG_INFO,
            "bus: subscribing on %s:%d and %zu other nodes, heartbeats on "
            "%s:%d",
            ca.host, ca.port, n ? n - 1 : 0, ca.host, ca.port);
    bus->sub = open_sub(bus, ca.host, ca.port);
    bus->cmd = bus->sub ? open_conn(bus, ca.host, ca.port) : NULL;
    for (size_t i = 0; i < n && bus->cmd; i++) {
        tc__bus_link *l = &bus->links[bus->nlinks];
        if (m[i].port == ca.port && !strcmp(m[i].host, ca.host))
            continue;
        if (!(l->channel = tc__cluster_node_channel_dup(cfg->channel,
                                                         &m[i]))) {
            tc__fail(TC_NO_MEMORY, "out of memory");
            break;
        }
        if (!(l->sub = open_sub(bus, m[i].host, m[i].port))) {
            free(l->channel);
            l->channel = NULL;
            break;
        }
        l->addr = m[i];
        bus->nlinks++;
    }
    if (!bus->sub || !bus->cmd || bus->nlinks + 1 < n) {
        free(m);
        snprintf(why, sizeof(why), "bus connect failed: %s", tc_errmsg());
        tc__bus_reset(bus, why);
        return -1;
    }
    free(m);
    /* The list just taken names no node without a subscription: the first
     * topology proof (lease.c). */
    tc__lease_on_topology(bus, asked);
    return 0;
}

/* Has this bus a subscription on `a`? */
static int subscribed_on(const tc__bus *bus, const tc__node_addr *a)
{
    if (a->port == bus->sub_addr.port && !strcmp(a->host, bus->sub_addr.host))
        return 1;
    for (size_t i = 0; i < bus->nlinks; i++)
        if (a->port == bus->links[i].addr.port &&
            !strcmp(a->host, bus->links[i].addr.host))
            return 1;
    return 0;
}

static void bus_connect(tc__bus *bus)
{
    const tc__config *cfg = bus->cfg;
    const char *host = cfg->unix_path ? NULL : cfg->host;
    char mhost[256];
    int port = cfg->port;
    atomic_fetch_add(&bus->connects, 1);
    if (cfg->sentinel) {
        /* Ask the sentinels on every (re)connect; blocks this thread for
         * at most a connect + command timeout per sentinel, while the bus
         * has no connection (and L1 is not served) anyway. */
        tc_result r;
        bus->sgen = tc__sentinel_generation(cfg->sentinel);
        r = tc__sentinel_resolve(cfg->sentinel, mhost, sizeof(mhost), &port);
        if (r != TC_OK) {
            char why[300];
            snprintf(why, sizeof(why), "bus: %s", tc_errmsg());
            tc__bus_reset(bus, why);
            return;
        }
        host = mhost;
    }
    if (cfg->cluster) {
        if (cluster_connect(bus) != 0)
            return;
    } else {
        bus->sub = open_sub(bus, host, port);
        bus->cmd = bus->sub ? open_conn(bus, host, port) : NULL;
        if (!bus->sub || !bus->cmd) {
            char why[320];
            snprintf(why, sizeof(why), "bus connect failed: %s", tc_errmsg());
            tc__bus_reset(bus, why);
            return;
        }
    }
    bus->tracking_ready = !cfg->tracking;
    /* Each link's SUBSCRIBE confirms one channel, two with tracking. */
    bus->subs_pending = 3 + (cfg->tracking ? 1 : 0) +
                        (int)bus->nlinks * (cfg->tracking ? 2 : 1);
    if (cfg->tracking && cfg->cluster) {
        tc__tracking_start(bus);
        bus->subs_pending++;
        tc__aconn_subscribef(bus->sub, "SUBSCRIBE %s %s %s %s %s",
                             bus->ch_inv, cfg->channel, bus->ch_ack,
                             bus->ch_pong, TC__TRACKING_CHANNEL);
    } else if (cfg->tracking) {
        tc__tracking_start(bus);
        tc__aconn_subscribef(bus->sub, "SUBSCRIBE %s %s %s %s", cfg->channel,
                             bus->ch_ack, bus->ch_pong, TC__TRACKING_CHANNEL);
    } else if (cfg->cluster) {
        /* The plain channel too: messages published by hand there reach
         * us over the cluster bus (unproven, as any cluster-bus path). */
        bus->subs_pending++;
        tc__aconn_subscribef(bus->sub, "SUBSCRIBE %s %s %s %s", bus->ch_inv,
                             cfg->channel, bus->ch_ack, bus->ch_pong);
    } else {
        tc__aconn_subscribef(bus->sub, "SUBSCRIBE %s %s %s", cfg->channel,
                             bus->ch_ack, bus->ch_pong);
    }
    /* Tracking: a link subscribes once its node tracks (tracking.c). */
    for (size_t i = 0; i < bus->nlinks; i++)
        if (cfg->tracking)
            tc__tracking_start_link(bus, &bus->links[i]);
        else
            tc__bus_link_subscribe(bus, &bus->links[i]);
    ev_timer_set(&bus->connect_deadline,
                 ((double)cfg->connect_timeout_ms + cfg->command_timeout_ms) /
                     1000.0,
                 0.);
    ev_timer_start(bus->loop, &bus->connect_deadline);
}

void tc__bus_reset(tc__bus *bus, const char *why)
{
    uint32_t delay;
    if (!bus->sub && !bus->cmd && ev_is_active(&bus->retry))
        return; /* already reset, a retry is pending */
    atomic_fetch_add(&bus->resets, 1);
    tc__log(&bus->cfg->log, TC_LOG_WARN, "%s; reconnecting", why);
    drop_conns(bus);
    delay = tc__backoff_next(&bus->backoff);
    ev_timer_stop(bus->loop, &bus->retry);
    ev_timer_set(&bus->retry, delay / 1000.0, 0.);
    ev_timer_start(bus->loop, &bus->retry);
}

static void on_connect_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    tc__bus *bus = w->data;
    (void)loop, (void)revents;
    if (!bus->subscribed || !bus->tracking_ready)
        tc__bus_reset(bus, "bus setup timed out");
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    tc__bus *bus = w->data;
    (void)loop, (void)revents;
    if (!bus->sub && !bus->cmd)
        bus_connect(bus);
}

/* Redis Cluster: a failed node or a failover drops L1 (cluster.h). */
static void on_cluster_info(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    if (r && ac == bus->cmd && r->type == REDIS_REPLY_STRING &&
        tc__cluster_watch(bus->cfg->cluster, r->str, r->len) &&
        !atomic_load(&bus->hold_cluster_watch))
        tc__bus_reset(bus, "Redis Cluster: a node failed or the topology "
                           "changed: L1 dropped");
}

/* Redis Cluster: the topology poll (lease.c, "Redis Cluster"). A node
 * listed without a subscription of this bus (one that joined since the
 * bus connected, or came back from a failure) resets the bus, whose next
 * connect subscribes there too; a list of known nodes only extends what
 * the topology proves. */
static void on_cluster_nodes(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    tc__node_addr *m;
    uint64_t sent;
    int n;
    if (!r || ac != bus->cmd || bus->topo_head == bus->topo_tail)
        return;
    sent = bus->topo_sent[bus->topo_head++ % TC__TOPO_RING];
    if (r->type != REDIS_REPLY_STRING) {
        tc__log(&bus->cfg->log, TC_LOG_ERROR,
                "bus CLUSTER NODES refused: %.*s", (int)r->len,
                r->str ? r->str : "");
        tc__bus_reset(bus, "CLUSTER NODES refused");
        return;
    }
    if (!(m = malloc(TC__CLUSTER_MAX_NODES * sizeof(*m))))
        return; /* proves nothing: the lease lapses, the next poll may */
    n = tc__cluster_parse_nodes(r->str, r->len, &bus->sub_addr, m,
                                TC__CLUSTER_MAX_NODES);
    if (n < 0) { /* the next connect's CLUSTER NODES says why */
        free(m);
        tc__bus_reset(bus, "Redis Cluster: CLUSTER NODES unreadable");
        return;
    }
    for (int i = 0; i < n; i++)
        if (!subscribed_on(bus, &m[i])) {
            char why[400];
            snprintf(why, sizeof(why),
                     "Redis Cluster: node %s:%d has no subscription of this "
                     "bus: L1 dropped",
                     m[i].host, m[i].port);
            free(m);
            tc__bus_reset(bus, why);
            return;
        }
    free(m);
    tc__lease_on_topology(bus, sent);
}

/* Redis Cluster, every lease / 2: the CLUSTER INFO watch and the CLUSTER
 * NODES poll, on the heartbeat connection. */
static void poll_cluster(tc__bus *bus)
{
    uint64_t now = tc__now_ns();
    if (!tc__cluster_watch_due(bus->cfg->cluster, now,
                               tc__ms_to_ns(bus->cfg->lease_ms) / 2))
        return;
    tc__aconn_commandf(bus->cmd, on_cluster_info, bus, "CLUSTER INFO");
    if (bus->topo_tail - bus->topo_head < TC__TOPO_RING &&
        tc__aconn_commandf(bus->cmd, on_cluster_nodes, bus,
                           "CLUSTER NODES") == 0)
        bus->topo_sent[bus->topo_tail++ % TC__TOPO_RING] = now;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    tc__bus *bus = w->data;
    (void)loop, (void)revents;
    /* A failover seen by anyone in this process (a pool connection that
     * got READONLY, a new address from the sentinels): the subscription
     * may be on the old master, whose invalidations no longer come. */
    if (bus->cfg->sentinel && (bus->sub || bus->cmd) &&
        bus->sgen != tc__sentinel_generation(bus->cfg->sentinel)) {
        tc__bus_reset(bus, "Redis master changed");
        return;
    }
    if (bus->cfg->cluster && bus->cmd)
        poll_cluster(bus);
    tc__lease_tick(bus);
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
        drop_conns(bus);
        ev_timer_stop(loop, &bus->tick);
        ev_timer_stop(loop, &bus->retry);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    tc__lease_wake(bus);
}

static void *bus_main(void *arg)
{
    tc__bus *bus = arg;
    bus_connect(bus);
    ev_run(bus->loop, 0);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Create / destroy                                                    */
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
    double tick;
    if (!bus)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    bus->cfg = cfg;
    bus->l1 = l1;
    snprintf(bus->id, sizeof(bus->id), "%s", id);
    /* On Redis Cluster the stem is a hash tag: the heartbeat's keys share
     * one slot (config.c refuses a channel holding braces there). */
    bus->members_key =
        join(cfg->cluster ? "__tiercache:{" : "__tiercache:",
             tc__channel_stem(cfg->channel),
             cfg->cluster ? "}:members" : ":members");
    bus->clock_key =
        join(cfg->cluster ? "__tiercache:{" : "__tiercache:",
             tc__channel_stem(cfg->channel),
             cfg->cluster ? "}:clock" : ":clock");
    bus->epoch_key =
        join(cfg->cluster ? "__tiercache:{" : "__tiercache:",
             tc__channel_stem(cfg->channel),
             cfg->cluster ? "}:epoch" : ":epoch");
    bus->ch_ack = join(cfg->channel, ":ack:", id);
    bus->ch_pong = join(cfg->channel, ":pong:", id);
    bus->ch_inv = join(cfg->channel, "", ""); /* a cluster's: bus_connect */
    bus->last_read_ns = tc__now_ns(); /* not idle before idle_after_ms */
    tc__backoff_init(&bus->backoff, cfg->reconnect_min_ms,
                     cfg->reconnect_max_ms);
    pthread_mutex_init(&bus->qmu, NULL);
    if (tc__strict_init(&bus->strict)) {
        free(bus);
        return tc__fail(TC_NO_MEMORY, "out of memory starting the bus");
    }
    bus->loop = ev_loop_new(EVFLAG_AUTO);
    if (!bus->members_key || !bus->clock_key || !bus->epoch_key ||
        !bus->ch_ack ||
        !bus->ch_pong || !bus->ch_inv || !bus->loop) {
        tc__bus_destroy(bus);
        return tc__fail(TC_NO_MEMORY, "out of memory starting the bus");
    }
    ev_async_init(&bus->wake, on_wake);
    bus->wake.data = bus;
    ev_async_start(bus->loop, &bus->wake);
    tick = cfg->lease_ms / 4000.0;
    ev_timer_init(&bus->tick, on_tick, tick, tick);
    bus->tick.data = bus;
    ev_timer_start(bus->loop, &bus->tick);
    ev_timer_init(&bus->retry, on_retry, 0., 0.);
    bus->retry.data = bus;
    ev_timer_init(&bus->connect_deadline, on_connect_deadline, 1., 0.);
    bus->connect_deadline.data = bus;
    if (tc__thread_create(&bus->thread, bus_main, bus) != 0) {
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
    tc__strict_shutdown(&bus->strict);
    if (bus->loop)
        ev_loop_destroy(bus->loop);
    pthread_mutex_destroy(&bus->qmu);
    tc__strict_destroy(&bus->strict);
    free(bus->members_key);
    free(bus->clock_key);
    free(bus->epoch_key);
    free(bus->ch_ack);
    free(bus->ch_pong);
    free(bus->ch_inv);
    free(bus);
}

/* ------------------------------------------------------------------ */
/* Facade helpers and counters                                         */
/* ------------------------------------------------------------------ */

void tc__bus_count_published(tc__bus *bus)
{
    atomic_fetch_add_explicit(&bus->published, 1, memory_order_relaxed);
}

void tc__bus_set_message_hook(tc__bus *bus, const tc__bus_hook *h)
{
    atomic_store(&bus->message_hook, h);
}

void tc__bus_hold_cluster_watch(tc__bus *bus, int hold)
{
    atomic_store(&bus->hold_cluster_watch, hold);
}

const char *tc__bus_members_key(const tc__bus *bus)
{
    return bus->members_key;
}

const char *tc__bus_clock_key(const tc__bus *bus)
{
    return bus->clock_key;
}

const char *tc__bus_epoch_key(const tc__bus *bus)
{
    return bus->epoch_key;
}

uint64_t tc__bus_generation(tc__bus *bus)
{
    return atomic_load(&bus->generation);
}

uint64_t tc__bus_resets(tc__bus *bus)
{
    return atomic_load(&bus->resets);
}

uint64_t tc__bus_connects(tc__bus *bus)
{
    return atomic_load(&bus->connects);
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
