/*
 * Shared subscriptions: the SUBSCRIBE and PSUBSCRIBE of every local client
 * are served from one upstream subscriber connection per tiercached, so that
 * Redis sends each message once per host, not once per process (issue 10,
 * "Cost as the fleet grows"; bench/README.md, "fleet").
 *
 * What a client sees is what redis-server would send it:
 *   - a confirmation only once the upstream subscription is active (a
 *     message published after the client's confirmation reaches it, none
 *     published before it sent SUBSCRIBE does), with the client's own
 *     subscription count;
 *   - message and pmessage frames as Redis encodes them, in the order the
 *     upstream connection received them, each one inserted before the
 *     client's first reply not yet made;
 *   - PING answered only after an upstream PING sent after it came back,
 *     so that its pong still proves that every message published before
 *     the PING was delivered first;
 *   - UNSUBSCRIBE, PUNSUBSCRIBE and RESET the same way: a message published
 *     before the client left still reaches it, before the confirmation;
 *   - UNSUBSCRIBE / PUNSUBSCRIBE with and without arguments, RESET, QUIT,
 *     and Redis's refusal of other commands in RESP2 pub/sub mode.
 * The upstream connection failing closes every client in shared pub/sub
 * mode that it serves (their libraries then reconnect, as on any bus
 * reset: whatever was published meanwhile is lost to them, and they know
 * it).
 *
 * On Redis Cluster a client may first name a node, `TC.RELAY host port`
 * (the library's bus does, one connection per node it subscribes on,
 * lib/relay.c): its subscriptions and PINGs are then served from an
 * upstream connection to that node, one per node however many clients
 * name it, so that the pongs prove that node's stream. Other clients share
 * the default upstream connection (where tc_session_open() connects). A client with
 * more than --max-output bytes of messages and replies waiting is closed,
 * as redis-server's client-output-buffer-limit pubsub closes it.
 * SSUBSCRIBE and MONITOR, and subscriptions of a client already pinned
 * (WATCH, SELECT ...), keep their own connection (pin.h).
 *
 * Threads: tcd_pubsub_* run on the loop thread. Each upstream connection
 * (a tc_session) belongs to a thread of its own, which sends what the loop
 * queues and hands what Redis pushes back through an ev_async.
 */
#ifndef TCD_PUBSUB_H
#define TCD_PUBSUB_H

#include "server.h"

typedef struct tcd_pubsub tcd_pubsub;

/** Start the upstream thread (the connection opens on the first
 *  subscription) unless --shared-pubsub is off. 0, or -1 after logging. */
int tcd_pubsub_init(tcd_server *srv);
/** Stop the thread and free what is left (after every client closed). */
void tcd_pubsub_shutdown(tcd_server *srv);
/** 1 when the request (borrowed) is answered here: a SUBSCRIBE or
 *  PSUBSCRIBE (or UNSUBSCRIBE, PUNSUBSCRIBE, TC.RELAY) of a client that is
 *  not pinned, or any command of a client in shared pub/sub mode but QUIT
 *  and RESET. For RESET of such a client, it leaves its subscriptions here
 *  (without replies, as Redis drops them) and 0 is returned: the daemon's
 *  RESET answers, in a reply slot of its own, since this made an empty one
 *  pending ahead of it until the upstream pong. So call it before choosing
 *  whether the request's reply needs a slot. */
int tcd_pubsub_takes(tcd_client *cl, const tcd_req *req);
/** Answer `req` (borrowed). `slot`: a finished reply slot made by dispatch
 *  because replies are pending ahead (not yet in the client's order), or
 *  NULL: the reply goes to the client's output at once, unless it must
 *  wait for Redis, then a slot is made here. */
void tcd_pubsub_command(tcd_client *cl, tcd_req *req, tcd_job *slot);
/** The client is closing: forget its subscriptions and waits. */
void tcd_pubsub_client_gone(tcd_client *cl);

#endif
