/*
 * Bus relay (TC_BUS_RELAY): the bus's subscriber connection goes to the
 * local tiercached, which serves every local process's SUBSCRIBE from one
 * upstream subscriber connection of its own (daemon/pubsub.c). Redis then
 * sends each invalidation once per host instead of once per process
 * (issue 10, "Cost as the fleet grows"). Only the subscriber moves: the
 * heartbeat script, acknowledgements and L2 still go to Redis directly.
 * With a relay the subscriber sends no SELECT or ROLE (the daemon follows
 * its own master; pub/sub knows no database), and AUTH only with the
 * relay's own credentials (bus_relay=redis://:password@host:port, for a
 * tiercached with --requirepass), never Redis's. Tracking (its REDIRECT
 * names the subscriber's own Redis connection) is refused at create.
 *
 * Redis Cluster. The bus subscribes on every node it proves (bus.c: the
 * heartbeat's master and a link per other node), each subscription on its
 * own connection; through a relay each of those connections goes to the
 * relay and names its node first (TC.RELAY host port), and the relay
 * serves it from an upstream subscriber connection of its own to that
 * node, shared by every local connection naming the same node. A host
 * then costs each node one subscriber connection, however many processes
 * it runs. The argument below holds per node: U is the relay's upstream
 * connection to the node the local connection named, the tokens that
 * prove that node (the heartbeat's PUBLISH on its master, a link's PING,
 * which R answers only after a PING on U came back) travel on U with the
 * node's invalidations, and U failing closes the local connections bound
 * to it (the bus resets, as when a direct link fails).
 *
 * Why the lease (lease.c) still holds. A heartbeat token T coming back on
 * the subscriber must prove that every invalidation published before the
 * heartbeat script ran was applied first. Through a relay R with upstream
 * connection U:
 *  1. U is subscribed to the invalidation channel and to our heartbeat
 *     channel before the script that publishes T runs. R confirms our
 *     SUBSCRIBE of a channel only once Redis confirmed it on U (at once if
 *     U already was, for another local process); the bus starts its lease
 *     only after every confirmation (bus.c: subscribed_one), so the first
 *     heartbeat script runs after both subscriptions were active in
 *     Redis. U stays subscribed while any local client, we included, holds
 *     the channel: R unsubscribes upstream only when none does.
 *  2. Redis runs commands one at a time and appends each PUBLISH to U's
 *     output as it runs: every invalidation M published before the script
 *     is ahead of T in U's stream (also on a replica, whose PUBLISHes come
 *     in replication order).
 *  3. R handles U's stream on one loop, in arrival order, and copies each
 *     message into every subscribed local client's output in that order;
 *     a client it cannot keep up with (over --max-output, out of memory)
 *     is closed, never skipped. So M reaches us, and is applied (apply.c,
 *     on the bus thread), before T.
 *  4. U failing closes every local subscriber of R: our bus sees its
 *     subscriber drop and resets as on any lost connection (L1 flushed;
 *     a new lease needs new confirmations, on a new U). What was published
 *     between U's failure and that reset never arrives, and neither does
 *     any token published after U failed, so no lease is extended past
 *     it: L1 stops within one lease, as with a direct connection.
 *  5. R on another server than our heartbeat script (misconfigured, or on
 *     a master that failed over): the tokens never arrive, the lease
 *     lapses and L1 is not served. Safe, not live; the bus logs nothing
 *     more than "heartbeats unanswered".
 * Strict writers count acknowledgements by instance id, which arrive on
 * their ack channel through R like any message: nothing there depends on
 * order. A relay that is killed or hangs is a subscriber that is lost or
 * hung: the lease lapses within one lease in both cases (tests/test_relay.c).
 */
#include <stdio.h>
#include <string.h>

#include "relay.h"

int tc__relay_on(const tc__config *cfg)
{
    return cfg->relay_unix || cfg->relay_host;
}

void tc__relay_conn_opts(const tc__config *cfg, tc__conn_opts *o)
{
    tc__conn_opts_of(cfg, o);
    o->tls = NULL;
    o->server_name = NULL;
    o->unix_path = cfg->relay_unix;
    o->host = cfg->relay_unix ? NULL : cfg->relay_host;
    o->port = cfg->relay_port;
}

void tc__relay_setup_cmds(const tc__config *cfg, const char *node_host,
                          int node_port, tc__setup_cmds *out)
{
    tc__setup_cmd *c;
    out->n = 0;
    if (cfg->relay_password) {
        c = &out->cmd[out->n++];
        c->argc = 0;
        c->argv[c->argc++] = "AUTH";
        if (cfg->relay_username)
            c->argv[c->argc++] = cfg->relay_username;
        c->argv[c->argc++] = cfg->relay_password;
        for (int i = 0; i < c->argc; i++)
            c->argvlen[i] = strlen(c->argv[i]);
    }
    if (node_host) {
        snprintf(out->db, sizeof(out->db), "%d", node_port);
        c = &out->cmd[out->n++];
        c->argc = 3;
        c->argv[0] = "TC.RELAY";
        c->argv[1] = node_host;
        c->argv[2] = out->db;
        for (int i = 0; i < c->argc; i++)
            c->argvlen[i] = strlen(c->argv[i]);
    }
}
