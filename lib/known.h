/*
 * The last-known store: what this instance last knew about a read-through
 * key loaded with tc_get_or_load_ex() options that need it (fail-safe,
 * eager refresh, negative caching). Per key: the value (a reference) or a
 * cached "not found", the L1 generation read before it was obtained, the
 * stamps read with it (stamps.h), when it was obtained, when its L2 entry
 * expires, and whether a background refresh of it is running.
 *
 * A record is only as good as its generation: any invalidation of the key
 * this instance applies (through the bus, its own writes, a flush when the
 * bus comes back) moves the generation, and a record whose generation
 * moved is never used again; callers also compare its stamps with fresh
 * ones when Redis answers (loader.c).
 *
 * Bounded: at most a quarter of L1's entry and byte budgets, oldest record
 * dropped first (FIFO by last update).
 *
 * Ownership and locking: each shard's mutex guards its table, its FIFO
 * and every field of its records; values are reference-counted and handed
 * out as new references. Thread-safe.
 */
#ifndef TC_KNOWN_H
#define TC_KNOWN_H

#include <stddef.h>
#include <stdint.h>

#include "stamps.h"

struct tc_value;
typedef struct tc__known tc__known;

/** What a record says (a copy, taken under the shard lock). */
typedef struct tc__known_info {
    struct tc_value *value;  /* new reference, or NULL for a negative */
    uint64_t gen;            /* L1 generation read before it was obtained */
    tc__stamps stamps;       /* read with it; .ok == 0: unknown */
    uint64_t known_ns;       /* when it was obtained (tc__now_ns) */
    uint64_t expires_ns;     /* when its L2 entry expires (UINT64_MAX:
                                never); for a negative, when it stops */
    uint64_t ttl_ms;         /* its full L2 TTL, when known (else 0) */
} tc__known_info;

tc__known *tc__known_create(size_t max_entries, size_t max_bytes);
void tc__known_destroy(tc__known *k);

/** Record (replace) what is known about `key`. `value` is borrowed (the
 *  store takes its own reference; NULL records a negative). A record
 *  whose refresh is running keeps that flag. 0, or -1 out of memory. */
int tc__known_put(tc__known *k, uint64_t h, const void *key, size_t klen,
                  struct tc_value *value, uint64_t gen,
                  const tc__stamps *stamps, uint64_t known_ns,
                  uint64_t expires_ns, uint64_t ttl_ms);
/** Copy the record of `key` into *out (release out->value); 1 found,
 *  0 absent. */
int tc__known_get(tc__known *k, uint64_t h, const void *key, size_t klen,
                  tc__known_info *out);
/** Drop the record of `key`, if any. */
void tc__known_drop(tc__known *k, uint64_t h, const void *key, size_t klen);
/** Claim the refresh of `key` at `now_ns` (tc__now_ns): 1 when the caller
 *  now owns it (the record exists, has generation `gen`, no refresh was
 *  running, and the last one did not ask to be retried later), else 0. */
int tc__known_claim_refresh(tc__known *k, uint64_t h, const void *key,
                            size_t klen, uint64_t gen, uint64_t now_ns);
/** End a refresh claimed with tc__known_claim_refresh(); no new claim
 *  before `retry_ns` (tc__now_ns; 0: at once). */
void tc__known_end_refresh(tc__known *k, uint64_t h, const void *key,
                           size_t klen, uint64_t retry_ns);

#endif
