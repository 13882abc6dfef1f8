/*
 * The bus's private state, shared by the files that make up the bus:
 *   bus.c       the thread, its two connections, set-up and bus_reset()
 *   lease.c     liveness: heartbeats, the L1 lease, membership
 *   apply.c     applying invalidation messages and tracking pushes to L1
 *   tracking.c  CLIENT TRACKING set-up (command connection; on a cluster
 *               also each other node's subscriber)
 *   strict.c    strict writers' acknowledgement registry
 *
 * Ownership: fields under "bus thread only" are read and written by the bus
 * thread alone (libev callbacks), never under a lock. Fields under "shared"
 * are atomics, or protected by the mutex named next to them.
 */
#ifndef TC_BUS_INTERNAL_H
#define TC_BUS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <ev.h>
#include "aconn.h"

#include "backoff.h"
#include "bus.h"
#include "cluster.h"
#include "msg.h"

#define TC__LEASE_RING 64
/* bus->reading: no L1 read since the bus thread's last tick; one since;
 * idle (the first reader to see it wakes the bus thread). */
#define TC__READ_NONE 0
#define TC__READ_SEEN 1
#define TC__READ_IDLE 2
#define TC__TRACKING_CHANNEL "__redis__:invalidate"

/* Redis Cluster: a subscription on one more node (bus.c), for that
 * master's own invalidation channel; the heartbeat's tokens go through it
 * as PINGs on the subscribed connection (lease.c). Bus thread only. */
typedef struct tc__bus_link {
    tc__aconn *sub;  /* owned */
    tc__node_addr addr; /* the node it is connected to */
    char *channel;   /* owned: tc__cluster_node_channel_dup() */
    uint64_t oldest; /* tokens below this came back or were skipped */
    uint64_t until;  /* what its last token proved (lease.c); 0: nothing */
} tc__bus_link;

typedef struct tc__strict_registry {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct tc__strict_wait *waiters; /* mu */
    int stopping;                    /* mu */
} tc__strict_registry;

struct tc__bus {
    const tc__config *cfg;
    tc__l1 *l1;
    char id[TC__ORIGIN_MAX + 1];
    /* Owned names, immutable after create. */
    char *members_key, *clock_key, *ch_ack, *ch_pong;
    char *epoch_key; /* lease.c: which master the members set is from */

    /* Bus thread only. */
    struct ev_loop *loop;
    ev_async wake;
    ev_timer tick, retry, connect_deadline;
    tc__aconn *sub, *cmd;    /* owned; NULL when not connected */
    /* Redis Cluster: the other nodes' subscriptions (every node CLUSTER
     * NODES listed but sub's; NULL/0 on one Redis), and the channel sub hears this
     * library's invalidations on (owned: cfg->channel on one Redis, sub's
     * master's node channel on a cluster). */
    tc__bus_link *links;
    size_t nlinks;
    char *ch_inv;
    /* Redis Cluster: the node sub is on; what the last CLUSTER NODES poll
     * that listed no node without a subscription proved (lease.c: its
     * send time + the lease; 0: nothing); the send times of the polls in
     * flight on cmd (a FIFO: replies come in order). */
    tc__node_addr sub_addr;
    uint64_t topo_until;
#define TC__TOPO_RING 8
    uint64_t topo_sent[TC__TOPO_RING];
    uint64_t topo_head, topo_tail;
    uint64_t hb_until;       /* lease.c: what the last heartbeat proved */
    int subs_pending;        /* subscribe confirmations still expected */
    int subscribed;          /* all confirmations in */
    int tracking_ready;      /* CLIENT TRACKING acknowledged (or not used) */
    uint64_t hb_sent[TC__LEASE_RING]; /* send time of heartbeat n % RING */
    uint64_t hb_next, hb_oldest;      /* heartbeats sent / oldest unanswered */
    tc__backoff backoff;
    uint64_t sgen;           /* sentinel generation the connections were
                                made in (sentinel.h) */
    int idle;                /* lease.c: heartbeat stopped, out of the
                                count (see "Idle" there) */
    int epoch_checked;       /* the heartbeat checked the master epoch on
                                this connection */
    uint64_t last_read_ns;   /* last tick that saw an L1 read */
    uint64_t next_keepalive_ns; /* idle: when the next keepalive is due */

    pthread_t thread;
    int started;

    /* Shared. */
    pthread_mutex_t qmu;
    int stop_requested;               /* qmu */
    atomic_uint_fast64_t l1_ok_until; /* tc__now_ns(); 0 = not servable */
    atomic_int reading;   /* TC__READ_*: readers note reads here; next to
                             l1_ok_until, which every reader loads too */
    atomic_int idle_up;   /* idle and the last keepalive came back
                             (health: the bus is up though L1 is not
                             served) */
    atomic_uint_fast64_t seq;         /* last strict seq handed out */
    atomic_uint_fast64_t generation;  /* times the bus (re)proved itself */
    atomic_uint_fast64_t published, received, applied, malformed, own_skipped,
        reconnects, flushes, strict_waits, strict_expiries, resets,
        connects;
    atomic_uint_fast64_t lag_hist[24];

    tc__strict_registry strict;
    _Atomic(const tc__bus_hook *) message_hook; /* tests only; any thread */
    atomic_int hold_cluster_watch;              /* tests only; any thread */
};

/* bus.c */
/** Drop both connections and the lease, then retry after the backoff.
 *  Idempotent while a retry is pending; safe from any connection callback
 *  (the contexts' own late disconnect callbacks are recognised and
 *  ignored). `why` is logged once. Bus thread only. */
void tc__bus_reset(tc__bus *bus, const char *why);

/** Redis Cluster: the link whose subscriber `ac` is, or NULL. Bus thread
 *  only. */
tc__bus_link *tc__bus_link_of(tc__bus *bus, const tc__aconn *ac);
/** Redis Cluster: SUBSCRIBE link `l` to its node's invalidation channel
 *  (and, in tracking mode, to __redis__:invalidate); each channel's
 *  confirmation counts down subs_pending. Bus thread only. */
void tc__bus_link_subscribe(tc__bus *bus, tc__bus_link *l);

/* lease.c */
/** Both connections are set up: flush L1 (nothing filled before this
 *  proof may be served after it) and send the first heartbeat. */
void tc__lease_ready(tc__bus *bus);
/** Periodic heartbeat; resets the bus when heartbeats go unanswered. */
void tc__lease_tick(tc__bus *bus);
/** A heartbeat message arrived on the subscription (payload `buf`). */
void tc__lease_on_pong(tc__bus *bus, const char *buf, size_t len);
/** Redis Cluster: a CLUSTER NODES sent at `sent_ns` listed no node
 *  without a subscription of this bus: L1 may be served until then + the
 *  lease, as far as the topology goes. */
void tc__lease_on_topology(tc__bus *bus, uint64_t sent_ns);
/** A PING token came back on link `l` (Redis Cluster). */
void tc__lease_on_link_pong(tc__bus *bus, tc__bus_link *l,
                            const redisReply *r);
/** Forget the lease (connections gone): L1 stops being served at once. */
void tc__lease_drop(tc__bus *bus);
/** A reader found the bus idle (ev_async wake-up): heartbeat again. */
void tc__lease_wake(tc__bus *bus);

/* apply.c */
/** An invalidation message arrived on the channel. */
void tc__apply_message(tc__bus *bus, const char *buf, size_t len);
/** A CLIENT TRACKING push (array of Redis keys, or nil for a flush). */
void tc__apply_tracking(tc__bus *bus, const redisReply *keys);

/* tracking.c */
/** Start CLIENT TRACKING on the command connection, redirected to the
 *  subscriber (whose CLIENT ID is asked first). Sets tracking_ready when
 *  Redis accepts; resets the bus when it refuses. */
void tc__tracking_start(tc__bus *bus);
/** Redis Cluster: on link `l`'s node, its subscriber enables CLIENT
 *  TRACKING redirected to itself (Redis accepts a client as its own
 *  redirect target, and delivers to it as a message on
 *  __redis__:invalidate once it has subscribed, in RESP2), then
 *  subscribes (tc__bus_link_subscribe): the link confirms no subscription,
 *  so the lease is not proven, before its node tracks. Resets the bus when
 *  the node refuses. Bus thread only. */
void tc__tracking_start_link(tc__bus *bus, tc__bus_link *l);

/* strict.c */
int tc__strict_init(tc__strict_registry *s);
/** Wake every waiter for good (the bus is going away). */
void tc__strict_shutdown(tc__strict_registry *s);
void tc__strict_destroy(tc__strict_registry *s);
/** Record that instance `id` applied strict message `seq`. Any thread. */
void tc__strict_ack(tc__strict_registry *s, uint64_t seq, const char *id,
                    size_t len);
/** An ack message "<seq> <id>" arrived on our ack channel. */
void tc__strict_on_ack_message(tc__strict_registry *s, const char *buf,
                               size_t len);

/** Compare a reply to a C string (case-insensitive), for routing. */
int tc__reply_is(const redisReply *r, const char *s);

#endif
