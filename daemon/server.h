/*
 * The event loop side of tiercached: the server's state and lifetime
 * (server.c), and the structures its parts share: listeners (listen.c),
 * client I/O and back-pressure (client.c), dispatch and per-client ordering
 * (dispatch.c), the worker pool (workers.c).
 *
 * Threads: one libev loop thread owns every tcd_client and the server's
 * mutable state. Worker threads (workers.h) see a job's request, its reply
 * buffer and the read-only parts of the server (cache, config, counters);
 * finished jobs come back through an ev_async and a locked queue. Counters are
 * atomics because INFO (a worker) and /metrics (the HTTP thread) read them.
 */
#ifndef TCD_SERVER_H
#define TCD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <ev.h>

#include "buf.h"
#include "config.h"
#include "proto.h"
#include "tiercache.h"

/* What HELLO and INFO report as redis_version: the Redis release whose
 * commands and error texts tiercached follows. */
#define TCD_REDIS_COMPAT_VERSION "7.0.0"

typedef struct tcd_server tcd_server;
typedef struct tcd_client tcd_client;
typedef struct tcd_workers tcd_workers;
struct tcd_cmd;
struct tcd_pin;
struct tcd_pubsub;
struct tcd_psclient;

/** The replies of an EXEC's commands that tiercached answers itself
 * (CLIENT SETNAME, AUTH, ...: cmd_multi.c), put at their places among
 * Redis's replies to the others. Owned by the job that carries it. */
typedef struct tcd_txn_local {
    size_t n;             /* commands in the transaction */
    tcd_buf *rep;         /* n replies */
    unsigned char *here;  /* 1: answered by tiercached, not sent to Redis */
    tcd_req **req;        /* n; those answered here, owned, until run */
    int deferred;         /* a pinned client's: its own commands run on
                             the loop once Redis ran the transaction (a
                             WATCH may abort it), the client's input held
                             until then */
    int ran;              /* deferred: Redis ran it; rep holds Redis's
                             replies (set by the pin thread) */
} tcd_txn_local;

/** A reply slot in a client's in-order list; also a worker job. */
typedef struct tcd_job {
    struct tcd_job *next;   /* client's reply order (loop only) */
    struct tcd_job *qnext;  /* worker / done queue link (queue locks) */
    tcd_client *client;     /* loop only */
    tcd_server *srv;
    const struct tcd_cmd *cmd;
    tcd_req *req;           /* owned; freed when the job is freed */
    tcd_req **batch;        /* EXEC: the transaction's requests (owned) */
    size_t nbatch;
    tcd_txn_local *txn_local; /* EXEC: replies made here, or NULL (owned) */
    tcd_buf out;            /* the reply */
    int done;               /* loop only: reply complete */
    int close_after;        /* QUIT or protocol error: close once sent */
    size_t charged;         /* loop only: bytes counted in the client's
                               `held` for this slot (request or reply) */
    struct tcd_pin *pin;    /* a message Redis pushed to a pinned client
                               (pin.h), on its way to the loop; else NULL */
    int pipelined_write;    /* loop only: pipelined (pipeline.h), and may
                               write (anything but GET) */
    const char *unwatch_reply; /* a pinned client's DISCARD, or an EXEC
                               answered without running: UNWATCH on its
                               connection (as Redis's own would), then
                               this reply (static) */
    int quiet;              /* CLIENT REPLY OFF/SKIP: the reply is made,
                               then dropped instead of sent */
    int pin_note;           /* set by a pin thread for the loop (pin.h:
                               tcd_pin_noted) */
} tcd_job;

/** Daemon counters; relaxed atomics, read by INFO and /metrics. */
typedef struct tcd_counters {
    atomic_ullong connections_received;
    atomic_ullong connections_rejected;
    atomic_ullong connected;
    atomic_ullong commands;
    atomic_ullong commands_in_loop;   /* answered at once (incl. L1 hits) */
    atomic_ullong commands_deferred;  /* not answered at once */
    atomic_ullong commands_pipelined; /* ... sent to Redis from the loop
                                         (pipeline.h), not to a worker */
    atomic_ullong protocol_errors;
    atomic_ullong read_timeouts;
    atomic_ullong commands_rejected;  /* unknown, NOAUTH, arity */
    atomic_ullong output_pauses;      /* a client stopped for unsent bytes */
    atomic_ullong requests_too_big;   /* refused over a limit, skipped */
    atomic_ullong net_input_bytes, net_output_bytes;
    atomic_ullong pinned;             /* pin threads running now */
    atomic_ullong pinned_total;       /* clients given a connection of
                                         their own (pin.h) */
    atomic_ullong pinned_refused;     /* ... refused over --max-pinned */
    atomic_ullong pubsub_messages;    /* pushed on the shared subscriber
                                         connection (pubsub.h) */
    atomic_ullong pubsub_deliveries;  /* ... copied to a local client */
    atomic_ullong pubsub_slow_closed; /* subscribers closed over
                                         --max-output */
    atomic_ullong pubsub_upstream_lost; /* shared connection failures */
} tcd_counters;

#define TCD_COUNT(srv, field, n) \
    atomic_fetch_add_explicit(&(srv)->counters.field, (n), memory_order_relaxed)
#define TCD_READ(srv, field) \
    atomic_load_explicit(&(srv)->counters.field, memory_order_relaxed)

struct tcd_client {
    tcd_client *prev, *next; /* server's client list */
    tcd_server *srv;
    int fd;
    uint64_t id;
    ev_io rio, wio;
    tcd_buf in;
    tcd_scan scan;
    ev_tstamp partial_since; /* 0, or when an incomplete request started */
    tcd_buf out;
    tcd_job *head, *tail;    /* replies not yet in `out`, in order */
    unsigned inflight;       /* jobs at workers: 0 or 1, so that one
                                client's commands run in its order */
    unsigned ainflight;      /* jobs pipelined to Redis (pipeline.h),
                                never while one is at a worker */
    unsigned awrites;        /* ... of which may write */
    size_t reply_est;        /* expected bytes of a pipelined reply:
                                max(last, previous / 2); 0 = none yet */
    tcd_job *wait_head, *wait_tail; /* deferred, not yet submitted (qnext) */
    unsigned queued;         /* slots in head..tail */
    size_t held;             /* bytes of the slots in head..tail: requests
                                not yet run, replies not yet in `out` */
    size_t held_replies;     /* the replies' part of `held` */
    int authed;
    int held_back;           /* next job held: replies over --max-output */
    int reading;             /* rio started */
    int closing;             /* read no more; close once `out` is sent */
    int dead;                /* fd closed; freed when inflight and
                                ainflight are 0 */
    int touched;             /* on the server's touched list */
    tcd_client *touched_next;
    char *name;              /* CLIENT SETNAME, or NULL */
    /* MULTI (cmd_multi.c): queued requests, owned, not yet run. */
    int multi, multi_dirty;
    tcd_req **mq;
    size_t mq_n, mq_cap, mq_bytes;
    tcd_req **exec_batch;    /* handed from EXEC to its job by dispatch */
    size_t exec_n;
    tcd_txn_local *exec_local; /* likewise */
    /* Pinned (pin.h): a Redis connection and a thread of its own. */
    struct tcd_pin *pin;
    int was_pinned;          /* its commands never go to the shared pool */
    const char *unwatch_reply; /* handed from DISCARD/EXEC to its job */
    int pin_streaming;       /* sent SUBSCRIBE or MONITOR: every command
                                but QUIT and RESET goes to Redis */
    int pin_hold;            /* nothing more is parsed until the pin's
                                answer to RESET, or to MULTI in pub/sub
                                mode, changes where commands go */
    int reply_off, reply_skip; /* CLIENT REPLY OFF; SKIP (the next one) */
    struct tcd_psclient *ps; /* shared subscriptions (pubsub.h), or NULL */
};

struct tcd_server {
    struct ev_loop *loop;
    const tcd_config *cfg;
    tc_cache *cache;
    tcd_proto *proto;
    tcd_workers *workers;
    ev_io unix_io, tcp_io;
    int unix_fd, tcp_fd;
    int listening;          /* listeners' watchers started */
    ev_timer accept_retry;  /* after EMFILE */
    ev_timer sweep;         /* stalled partial requests */
    ev_signal sigterm, sigint;
    ev_async done_async;    /* workers -> loop */
    tc_async *async;        /* pipelined forwarding (pipeline.h), or NULL */
    ev_prepare flush_prep;  /* send what pipelined replies completed */
    tcd_client *clients;
    tcd_client *touched;
    uint64_t next_client_id;
    uint64_t started_at;    /* unix seconds */
    int stopping;
    int workers_gone;       /* pool drained: jobs still waiting get an
                               error instead of a worker */
    pthread_mutex_t pins_mu;
    pthread_cond_t pins_cv;
    unsigned pins_live;     /* pins_mu: pinned clients' threads running */
    struct tcd_pubsub *pubsub; /* shared subscriptions (pubsub.h), or
                                  NULL with --no-shared-pubsub */
    tcd_counters counters;
};

/** Set up listeners, workers and watchers on `loop`. `cache` is borrowed.
 *  Returns 0, or -1 after logging why. */
int tcd_server_init(tcd_server *srv, struct ev_loop *loop,
                    const tcd_config *cfg, tc_cache *cache);
/** Close listeners (unlinking the socket file), finish queued jobs, send
 *  what can be sent without blocking, close every client. */
void tcd_server_shutdown(tcd_server *srv);

/** Connected clients (loop thread). */
unsigned tcd_server_clients(const tcd_server *srv);

#endif
