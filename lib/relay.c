/*
 * Bus relay (TC_BUS_RELAY): the bus's subscriber connection goes to the
 * local tiercached, which serves every local process's SUBSCRIBE from one
 * upstream subscriber connection of its own (daemon/pubsub.c). Redis then
 * sends each invalidation once per host instead of once per process
 * (issue 10, "Cost as the fleet grows"). Only the subscriber moves: the
 * heartbeat script, acknowledgements and L2 still go to Redis directly.
 * With a relay the subscriber sends no AUTH, SELECT or ROLE (the daemon
 * has its own credentials and follows its own master; pub/sub knows no
 * database); tracking (its REDIRECT names the subscriber's own Redis
 * connection) and Redis Cluster (the bus subscribes on a node of its own)
 * are refused at create.
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
