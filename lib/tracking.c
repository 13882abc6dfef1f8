/*
 * Server-assisted invalidation (tracking mode): the command connection runs
 * CLIENT TRACKING on REDIRECT <subscriber's id> BCAST PREFIX <key prefix>,
 * so writes by any Redis client under the prefix reach the subscriber as
 * pushes on __redis__:invalidate (applied in apply.c). On Redis Cluster the
 * same runs on the state keys' master, and each other node's subscriber
 * (a link) enables it on its own node redirected to itself, before it
 * subscribes. Bus thread only.
 */
#include <stdio.h>

#include "bus_internal.h"

static void on_tracking_reply(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    if (!r || ac != bus->cmd)
        return; /* a connection we already dropped */
    if (r->type == REDIS_REPLY_ERROR) {
        tc__log(&bus->cfg->log, TC_LOG_ERROR, "CLIENT TRACKING refused: %.*s",
                (int)r->len, r->str);
        tc__bus_reset(bus, "CLIENT TRACKING refused");
        return;
    }
    bus->tracking_ready = 1;
    if (bus->subscribed)
        tc__lease_ready(bus);
}

static void on_client_id(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    char id[24];
    if (!r || ac != bus->sub || !bus->cmd)
        return;
    if (r->type != REDIS_REPLY_INTEGER) {
        tc__bus_reset(bus, "CLIENT ID refused");
        return;
    }
    snprintf(id, sizeof(id), "%lld", r->integer);
    /* The configuration refuses tracking without a key prefix: BCAST on
     * every key would also track the bus's own members set. */
    tc__aconn_commandf(bus->cmd, on_tracking_reply, bus,
                       "CLIENT TRACKING on REDIRECT %s BCAST PREFIX %b", id,
                       bus->cfg->prefix, bus->cfg->prefix_len);
}

void tc__tracking_start(tc__bus *bus)
{
    tc__aconn_commandf(bus->sub, on_client_id, bus, "CLIENT ID");
}

/* Redis Cluster: a link's own CLIENT TRACKING (tc__tracking_start_link). */
static void on_link_tracking_reply(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    tc__bus_link *l;
    if (!r || !(l = tc__bus_link_of(bus, ac)))
        return; /* a connection we already dropped */
    if (r->type == REDIS_REPLY_ERROR) {
        tc__log(&bus->cfg->log, TC_LOG_ERROR,
                "CLIENT TRACKING refused on %s:%d: %.*s", l->addr.host,
                l->addr.port, (int)r->len, r->str);
        tc__bus_reset(bus, "CLIENT TRACKING refused");
        return;
    }
    tc__bus_link_subscribe(bus, l);
}

static void on_link_client_id(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    tc__bus_link *l;
    char id[24];
    if (!r || !(l = tc__bus_link_of(bus, ac)))
        return;
    if (r->type != REDIS_REPLY_INTEGER) {
        tc__log(&bus->cfg->log, TC_LOG_ERROR,
                "CLIENT ID refused on %s:%d: %.*s", l->addr.host,
                l->addr.port, (int)r->len, r->str ? r->str : "");
        tc__bus_reset(bus, "CLIENT ID refused");
        return;
    }
    snprintf(id, sizeof(id), "%lld", r->integer);
    tc__aconn_commandf(ac, on_link_tracking_reply, bus,
                       "CLIENT TRACKING on REDIRECT %s BCAST PREFIX %b", id,
                       bus->cfg->prefix, bus->cfg->prefix_len);
}

void tc__tracking_start_link(tc__bus *bus, tc__bus_link *l)
{
    tc__aconn_commandf(l->sub, on_link_client_id, bus, "CLIENT ID");
}
