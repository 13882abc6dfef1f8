/*
 * The facade's private parts, shared by the files that implement the public
 * calls:
 *   cache.c       create/destroy, argument checks, prefixed keys
 *   read.c        tc_get, tc_peek, tc_mget, tc_pttl
 *   write.c       tc_set, tc_set_ex, tc_del, tc_mdel
 *   publish.c     one write and its invalidation in one transaction;
 *                 strict waiting
 *   loader.c      tc_get_or_load, tc_get_or_load_ex (read-through,
 *                 single-flight, fail-safe, timeouts, negative caching)
 *   known.c       the last-known store (fail-safe copies, refresh state)
 *   background.c  the pool that runs loads outliving their caller
 *   refresh.c     eager refresh
 *   stampede.c    the cross-instance load lock
 *   negative.c    the L2 marker of a cached "not found"
 *   stamps.c      the L2-side guard that stops a read-through store from
 *                 writing back a value older than a delete
 *   invalidate.c  prefix, pattern and whole-cache invalidation
 *   stats.c       stats and health
 *   warm.c        tc_set_many, tc_warm (batched writes)
 *   compress.c    zstd frames of L2 values (compress.h)
 *   ratelimit.c   tc_rate_limit (Redis script; ratelocal.c while it is down)
 *   watched.c     a session's write while it WATCHes, in one script with
 *                 its invalidation (command.h)
 *   testhooks.c   hooks for in-tree tests
 * Nothing here is part of the API or installed.
 *
 * Ownership: struct tc_cache is immutable after create except its atomics
 * (and `bus`, which destroy clears while only background jobs, which never
 * read it, may still run); L1 shards, the L2 pool, the bus, single-flight,
 * the last-known store and the background pool each guard their own state,
 * so the facade holds no lock of its own. The handle is reference counted
 * (`refs`): the application's reference, dropped by tc_cache_destroy(),
 * and one per background thread (background.h); the last frees it.
 */
#ifndef TC_CACHE_H
#define TC_CACHE_H

#include <stdatomic.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "error.h"
#include "background.h"
#include "flight.h"
#include "known.h"
#include "l1.h"
#include "l2.h"
#include "msg.h"
#include "negative.h"
#include "stamps.h"
#include "tiercache.h"

/** Called by tc_get()/tc_mget()/tc_get_or_load() after the L2 reply arrived
 *  and before the L1 fill, on the calling thread. Lets a test hold a reader
 *  in exactly the window where the fill race lives. */
typedef void (*tc__fill_hook_fn)(void *arg, const void *key, size_t klen);

struct tc_cache {
    tc__config cfg;  /* immutable after create */
    tc__l1 *l1;      /* NULL when disabled */
    tc__l2 *l2;      /* NULL when disabled */
    tc__bus *bus;    /* NULL when disabled or coherence NONE */
    tc__flights *flights;
    char id[TC__ORIGIN_MAX + 1];
    char *stamps_key; /* owned: see stamps.c */
    char *neg_prefix, *lock_prefix; /* owned: negative.c, stampede.c */
    size_t neg_prefix_len, lock_prefix_len;
    tc__known *known; /* last-known store: NULL when disabled */
    tc__bg *bg;       /* background loads: NULL when disabled */
    atomic_uint refs; /* see above */
    atomic_uint_fast64_t l2_hits, l2_misses, loader_calls, l1_bypassed,
        l1_too_large;
    atomic_uint_fast64_t stale_served, loader_timeouts, eager_refreshes,
        negative_hits, lock_waits;
    atomic_uint_fast64_t stamp_seq;
    atomic_uint_fast64_t rate_fallbacks; /* ratelimit.c */
    atomic_uint_fast64_t values_compressed, values_decompressed; /* compress.c */
    struct tc__ratelocal *_Atomic ratelocal; /* ratelimit.c: NULL until
                                                the first local decision,
                                                then owned; freed by
                                                destroy */
    struct tc__cmdtab *_Atomic cmdtab; /* command.c: NULL until first use,
                                          then immutable; freed by destroy */
    tc__fill_hook_fn fill_hook; /* tests only; set before use */
    void *fill_hook_arg;
    tc__fill_hook_fn load_hook; /* tests only: after the loader returned */
    void *load_hook_arg;
    tc__fill_hook_fn tag_hook; /* tests only: tags.c, cluster tagged write */
    void *tag_hook_arg;
    tc__fill_hook_fn session_write_hook; /* tests only: see testhooks.c */
    void *session_write_hook_arg;
};

/* A prefixed L2 key: on the stack when small. */
typedef struct tc__pkey {
    char *p;
    size_t len;
    char small[256];
} tc__pkey;

tc_result tc__pkey_make(const tc_cache *c, const void *key, size_t klen,
                        tc__pkey *k);
void tc__pkey_free(tc__pkey *k);
/** A key of tiercache's own that goes with the prefixed key `pk`: `base`,
 *  then on Redis Cluster "{<tag>}" naming pk's slot (slot.h), then pk when
 *  `with_pk`; so one MULTI or script may carry both on a cluster. Not
 *  NUL-terminated. Into *out (free with tc__pkey_free()). */
tc_result tc__own_key(const tc_cache *c, const char *base, size_t blen,
                      const char *pk, size_t pklen, int with_pk, tc__pkey *out);

/** The failure tc__check_key() found, with its detail. */
tc_result tc__key_error(const tc_cache *c, const void *key, size_t klen);

/** Argument checks; TC_OK or the failure with its detail. The key check
 *  runs on every read: inline, its failures out of line. */
static inline tc_result tc__check_key(const tc_cache *c, const void *key,
                                      size_t klen)
{
    if (__builtin_expect(c && key && klen && klen <= c->cfg.max_key, 1))
        return TC_OK;
    return tc__key_error(c, key, klen);
}
tc_result tc__check_value(const tc_cache *c, const void *val, size_t vlen);

/** May L1 answer reads at `now`? Without a bus, always; with one, only
 *  while it has proved itself alive within the lease. Counts as an L1
 *  read for the idle bus (lease.c). */
static inline int tc__l1_servable(tc_cache *c, uint64_t now)
{
    return !c->bus || now < tc__bus_l1_read_until(c->bus);
}

/** L1 lookup when L1 may be served now; counts reads that had to bypass
 *  it. A new reference or NULL. One clock read serves the lease and the
 *  expiry (tc__l1_get_until). */
static inline tc_value *tc__l1_lookup(tc_cache *c, uint64_t h,
                                      const void *key, size_t klen)
{
    int lapsed = 0;
    tc_value *v = tc__l1_get_until(
        c->l1, h, key, klen,
        c->bus ? tc__bus_l1_read_until(c->bus) : UINT64_MAX,
        TC__L1_COUNT_HIT | TC__L1_COUNT_MISS, &lapsed);
    if (lapsed)
        atomic_fetch_add_explicit(&c->l1_bypassed, 1, memory_order_relaxed);
    return v;
}
/** tc__l1_lookup that counts what `counting` (TC__L1_COUNT_*) says, and
 *  never a bypass: the miss or bypass of a peek is counted by the read the
 *  caller sends it to next (tc_peek, tc_mpeek). */
static inline tc_value *tc__l1_lookup_peek(tc_cache *c, uint64_t h,
                                           const void *key, size_t klen,
                                           int counting)
{
    int lapsed = 0;
    return tc__l1_get_until(
        c->l1, h, key, klen,
        c->bus ? tc__bus_l1_read_until(c->bus) : UINT64_MAX,
        counting, &lapsed);
}

/** L1 fill of a value just read from, or stored in, L2: expiring
 *  `l1_ttl_ms` (saturating) after `t0_ns`, the tc__now_ns() taken before
 *  the L2 request was sent (so L1 never outlives an L2 TTL that started
 *  counting while the reply was on its way); refused when `gen` moved.
 *  Counts values too large for L1. *ref (may be NULL) as tc__l1_fill(). */
int tc__l1_fill_ttl(tc_cache *c, uint64_t h, const void *key, size_t klen,
                    const void *val, size_t vlen, uint64_t t0_ns,
                    uint64_t l1_ttl_ms, uint64_t gen, int flags,
                    tc_value **ref);

/** Take / drop a reference to the handle (background threads). The last
 *  drop frees it. Any thread. */
void tc__cache_ref(tc_cache *c);
void tc__cache_unref(tc_cache *c);

/* read.c */
/** What read-through also asks of an L2 read. */
typedef struct tc__l2_read {
    tc__stamps stamps; /* out: the key's stamps, read before the GET */
    int64_t pttl;      /* out: PTTL of the key (-2 absent, -1 no expiry) */
    uint64_t t0_ns;    /* out: when the request was sent */
    int ask_negative;  /* in: also read the negative marker */
    int negative;      /* out: 1 when the key is absent and a valid marker
                          holds (0 unless ask_negative) */
    int64_t neg_pttl;  /* out: the marker's PTTL */
} tc__l2_read;

/** GET + PTTL (+ what `rd` asks for, when not NULL) in one round trip;
 *  fills L1 guarded by `gen`. */
tc_result tc__read_l2(tc_cache *c, uint64_t h, const void *key, size_t klen,
                      uint64_t gen, tc__l2_read *rd, tc_value **out);

/** Interpret the GET and PTTL replies (borrowed) of a read sent at `t0`
 *  (tc__now_ns()) and fill L1 unless generation `gen` moved since: TC_OK
 *  with a new reference in *out, TC_NOT_FOUND, or the failure. The shared
 *  half of every L2 read (tc__read_l2, tc_mget, async.c). */
tc_result tc__take_l2_value(tc_cache *c, uint64_t h, const void *key,
                            size_t klen, uint64_t gen, uint64_t t0,
                            redisReply *val, redisReply *ttl, tc_value **out);

/* publish.c */
/** One atomic write: register a strict waiter if `strict`, encode the
 *  invalidation. Then tc__txn_exec(), then always tc__txn_end(). */
typedef struct tc__txn {
    int strict;
    tc__strict_wait *w;
    uint64_t seq;
    char *msg;       /* owned; NULL without a bus */
    size_t msglen;
} tc__txn;

tc_result tc__txn_begin(tc_cache *c, tc__txn *t, tc__msg_kind kind, size_t nk,
                        const void *const *keys, const size_t *klens,
                        int strict);
/** MULTI, the `n` writes, PUBLISH (unless `inline_publish`: writes[0] is a
 *  script that publishes t->msg itself, only when it changed something),
 *  the strict member count, EXEC. On TC_OK *exec is the EXEC reply (caller
 *  frees); its first `n` elements are the writes' results. */
tc_result tc__txn_exec(tc_cache *c, tc__txn *t, size_t n, const tc__cmd *writes,
                       int inline_publish, redisReply **exec);
/** tc__txn_exec on `conn`, a connection of the caller's own (a session:
 *  its WATCH holds), or on the pool when NULL. A WATCH that aborted the
 *  EXEC fails with TC_PROTOCOL "EXEC: transaction aborted"; any other
 *  failure leaves `conn` unusable. On Redis Cluster `node` names the
 *  master `conn` is connected to (NULL elsewhere): the invalidation goes
 *  on that master's channel (tc__cluster_node_channel_dup()), which every bus
 *  hears over its own subscription there, as l2_cluster.c does for the
 *  pool's writes. */
struct tc__node_addr;
tc_result tc__txn_exec_on(tc_cache *c, tc__conn *conn,
                          const struct tc__node_addr *node, tc__txn *t,
                          size_t n, const tc__cmd *writes, int inline_publish,
                          redisReply **exec);
/** tc__txn_exec on the pool, sent whole to the master of cluster slot
 *  `slot` (-1: any master) whatever keys the writes name (tc_command
 *  found them from the key specs); as tc__txn_exec elsewhere. */
tc_result tc__txn_exec_slot(tc_cache *c, int slot, tc__txn *t, size_t n,
                            const tc__cmd *writes, int inline_publish,
                            redisReply **exec);
/** The commands of one atomic write, as tc__txn_exec_on() sends them:
 *  MULTI, the writes, PUBLISH, the strict count, EXEC. Borrows `t`, the
 *  writes and the configuration; `cmds` is owned (tc__txn_cmds_free()). */
typedef struct tc__txn_cmds {
    tc__cmd *cmds;
    size_t n;
    const char *multi[1], *execv[1], *pub[3], *count[8];
    size_t publ[3], countl[8];
    char lease[16];
} tc__txn_cmds;
tc_result tc__txn_build(tc_cache *c, tc__txn *t, size_t n,
                        const tc__cmd *writes, int inline_publish,
                        tc__txn_cmds *out);
void tc__txn_cmds_free(tc__txn_cmds *tc);
/** Judge the EXEC reply `e` (taken) of `ncmd` commands built by
 *  tc__txn_build(): TC_OK and *exec (caller frees), or TC_PROTOCOL
 *  "EXEC: <Redis's error>" / "EXEC: transaction aborted". */
tc_result tc__txn_take_exec(tc_cache *c, size_t ncmd, int inline_publish,
                            redisReply *e, redisReply **exec);
/** Wait for the acknowledgements when `published` (strict), else just
 *  unregister; frees the message. */
void tc__txn_end(tc_cache *c, tc__txn *t, const redisReply *exec,
                 int published);
/** Whether a write with these TC_SET_* flags waits for acknowledgements. */
int tc__write_is_strict(const tc_cache *c, int flags);

/* write.c */
/** Builds the command that stores the value in place of SET (tags.c: a
 *  script that records the tags, then SETs; a failure stores nothing).
 *  `k` is the prefixed key, `px` the TTL in ms ("" = none). Pointers in
 *  *cmd may point into *mem (malloc'd, freed by the caller after use). */
typedef tc_result (*tc__set_cmd_fn)(void *ud, const tc__pkey *k,
                                    const void *val, size_t vlen,
                                    const char *px, size_t pxlen,
                                    tc__cmd *cmd, void **mem);
/** tc_set_ex(), with the value stored by `set_cmd` (NULL: a plain SET);
 *  not with NX/XX (TC_BAD_ARGUMENT). */
tc_result tc__set(tc_cache *c, const void *key, size_t klen, const void *val,
                  size_t vlen, const tc_set_opts *o, tc__set_cmd_fn set_cmd,
                  void *set_ud);
/** One tc__set() in two halves, so that the write can also be sent
 *  without waiting (async.c): begin checks, builds the commands, registers
 *  the transaction and drops this instance's copy; the caller runs
 *  tc__txn_exec(c, &op->t, op->ncmd, op->cmds, op->cond, &exec) or sends
 *  the same commands itself, then always calls finish with the outcome
 *  (`exec` taken), which fills or invalidates L1 and returns tc_set_ex()'s
 *  result. With `no_message` (not for NX/XX or strict writes) no
 *  invalidation message is encoded: the caller publishes one naming this
 *  key in the same transaction (async.c's group commit), and this
 *  instance's copy is not dropped yet: the caller calls tc__set_drop_l1()
 *  before it sends the write (a group drops its keys together, their
 *  index lines prefetched). `key` and `val` are borrowed until finish;
 *  `op` must not move between the two (its commands point into it). */
typedef struct tc__set_op {
    tc__txn t;
    tc__pkey k, sk; /* the key; its stamps hash (stamps.h) */
    uint64_t h, gen, t0, l1_ttl;
    int cond;
    int l1_later;   /* no_message: tc__set_drop_l1() not called yet */
    const void *key, *val;
    size_t klen, vlen;
    const char *argv[12];
    size_t argl[12];
    tc__cmd cmds[2];
    size_t ncmd;
    char px[24], field[8], stamp[TC__STAMP_MAX];
    void *set_mem, *zbuf;
} tc__set_op;
tc_result tc__set_begin(tc_cache *c, const void *key, size_t klen,
                        const void *val, size_t vlen, const tc_set_opts *o,
                        const tc__set_cmd_fn set_cmd, void *set_ud,
                        int no_message, tc__set_op *op);
tc_result tc__set_finish(tc_cache *c, tc__set_op *op, tc_result r,
                         redisReply *exec);
/** tc__set_finish() for a no_message write answered inside a group's
 *  transaction: `set_reply` is its SET's own reply (borrowed; read only
 *  when `r` is TC_OK), no EXEC array is built for it. */
tc_result tc__set_finish_reply(tc_cache *c, tc__set_op *op, tc_result r,
                               const redisReply *set_reply);
/** Drop this instance's copy of a no_message write's key (tc__set_begin);
 *  its generation guards the fill at finish. Before the write is sent. */
void tc__set_drop_l1(tc_cache *c, tc__set_op *op);
/** tc_mdel() with one more command in the same transaction (its reply is
 *  the EXEC reply's third element); on Redis Cluster all `keys` must then
 *  share a slot (else TC_BAD_ARGUMENT). */
tc_result tc__mdel(tc_cache *c, size_t n, const void *const *keys,
                   const size_t *klens, const tc__cmd *extra,
                   uint64_t *deleted);

/** Redis Cluster: keys[0..n) grouped by the slot of their prefixed key
 *  (slot.h), for the calls that run one MULTI per slot (tc_mdel,
 *  tc_set_many, tags). Group g is keys[order[starts[g]]] ...
 *  keys[order[starts[g + 1] - 1]], each group in the caller's order, the
 *  groups by ascending slot; *ngroups their number. `order` (n entries)
 *  and `starts` (n + 1) are the caller's. TC_OK or TC_NO_MEMORY; keys are
 *  not checked here. Thread-safe (nothing shared). */
tc_result tc__keys_by_slot(const tc_cache *c, size_t n,
                           const void *const *keys, const size_t *klens,
                           size_t *order, size_t *starts, size_t *ngroups);

/* loader.c: nothing shared. invalidate.c: nothing shared. */
/* loader.c */
/** A loader of either kind, with its userdata (copied into background
 *  jobs). */
typedef struct tc__loader {
    tc_loader_fn plain;  /* tc_get_or_load()'s */
    tc_loader_ex_fn ex;  /* or tc_get_or_load_ex()'s */
    void *ud;
} tc__loader;

/** Call the loader once, counting it and checking what it returned. On
 *  TC_OK *val (malloc'd, may be NULL when *vlen is 0) is the caller's;
 *  `ttl` is in/out (the call's TTLs; the loader may change them). */
tc_result tc__run_loader(tc_cache *c, const tc__loader *ld, const void *key,
                         size_t klen, void **val, size_t *vlen,
                         tc_load_ttl *ttl);
/** L1 TTL for a value whose L2 TTL is `l2_ttl` (clamped). */
uint64_t tc__l1_ttl_for(const tc_cache *c, uint64_t l2_ttl);

/* refresh.c */
/** On a hit of `key` (generation `gen`) with eager refresh at `pct`: start
 *  one background refresh when the entry has lived past `pct` percent of
 *  its L2 TTL and none is running. `lock_ms` non-zero: coordinated across
 *  instances through the key's load lock with that lease. Thread-safe. */
void tc__refresh_maybe(tc_cache *c, uint64_t h, const void *key, size_t klen,
                       uint64_t gen, unsigned pct, const tc__loader *ld,
                       uint64_t ttl_ms, uint64_t neg_ttl_ms, uint32_t lock_ms);

/* stampede.c */
/** Try to take the load lock of the prefixed key `pk` for `lock_ms`: 1
 *  taken (its token in `tok`, TC__STAMP_MAX bytes), 0 held by another, -1
 *  L2 failure. */
int tc__lock_try(tc_cache *c, const char *pk, size_t pklen, uint32_t lock_ms,
                 char *tok);
/** Release a lock taken with tc__lock_try(), only if still ours. */
void tc__lock_release(tc_cache *c, const char *pk, size_t pklen,
                      const char *tok);
/** The pause before a lock loser's poll number `n` (0, 1, ...): 2 ms
 *  doubling up to 50 ms. */
void tc__lock_pause(unsigned n);

/* invalidate.c: nothing shared. */

/* testhooks.c: for in-tree tests only. */
void tc__cache_set_fill_hook(tc_cache *c, tc__fill_hook_fn fn, void *arg);
/** Called by tc_get_or_load()'s leader after its loader returned and
 *  before it stores the value: the window of the read-through race. */
void tc__cache_set_load_hook(tc_cache *c, tc__fill_hook_fn fn, void *arg);
/** Called by tc_set_tagged() on Redis Cluster after it recorded the key in
 *  its tags' sets and before it writes the key: the window in which a tag
 *  invalidation could drain the set before the write lands. */
void tc__cache_set_tag_hook(tc_cache *c, tc__fill_hook_fn fn, void *arg);
/** Called by tc_session_command() once Redis answered a write made while
 *  the session WATCHes keys, before the command returns (key: the
 *  command's name): anything not yet published then is not atomic with
 *  the write. */
void tc__cache_set_session_write_hook(tc_cache *c, tc__fill_hook_fn fn,
                                      void *arg);
/** The bus generation: increments every time the bus (re)proves itself
 *  alive after being down. 0 without a bus. */
uint64_t tc__cache_bus_generation(tc_cache *c);
/** Holds the bus thread's message handling (see tc__bus_set_message_hook). */
void tc__cache_set_bus_hook(tc_cache *c, const tc__bus_hook *h);
/** Bus resets (connections dropped and retried) and connection attempts. */
uint64_t tc__cache_bus_resets(tc_cache *c);
uint64_t tc__cache_bus_connects(tc_cache *c);
/** See tc__bus_hold_cluster_watch(); no-op without a bus. */
void tc__cache_hold_cluster_watch(tc_cache *c, int hold);
/** Handles created and not yet freed, in this process. */
unsigned tc__cache_live_handles(void);
/** Background jobs queued or running. */
size_t tc__cache_background_busy(tc_cache *c);
/** 1 when this instance may serve L1 now. */
int tc__cache_l1_servable(tc_cache *c);
/** What L1 holds for `key`, whether or not it may be served now: a new
 *  reference, or NULL. */
tc_value *tc__cache_l1_contents(tc_cache *c, const void *key, size_t klen);

#endif
