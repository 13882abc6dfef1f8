/*
 * Stamps: the L2-side guard of read-through stores (memcache leases, kept
 * in Redis).
 *
 * A read-through leader reads the key (a miss) and, in the same round trip,
 * the key's stamp; it then calls the loader, and stores the loaded value
 * only if the stamp is unchanged, atomically on the server (one script).
 * Every library write of a key (set, delete) replaces its stamp in the same
 * MULTI as the write, and prefix/pattern invalidation replaces the global
 * stamp before it scans. So a loader that read the database before another
 * instance changed it and called tc_del() can never store its old value in
 * L2 afterwards: either its store ran before the delete (which then deletes
 * it) or the stamp moved and the store is refused.
 *
 * Stamps live in one hash (on Redis Cluster one per slot, see
 * tc__stamps_key()), "__tiercache:<channel>:stamps": field "b<n>" for
 * key bucket n (of TC__STAMP_BUCKETS; keys sharing a bucket only cause a
 * skipped L2 store, never a wrong one) and field "all". A stamp is
 * "<instance id>:<counter>", unique across instances and time, so no
 * ABA: a hash evicted or deleted by an operator also just refuses stores.
 * Writers outside tiercache do not stamp: this guard covers writes made
 * through the library and tiercached.
 *
 * Pure helpers over caller-owned buffers; thread-safe.
 */
#ifndef TC_STAMPS_H
#define TC_STAMPS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define TC__STAMP_BUCKETS 4096
#define TC__STAMP_MAX 64

typedef struct tc__stamps {
    char field[8];   /* "b<n>" */
    size_t field_len;
    char key[TC__STAMP_MAX], all[TC__STAMP_MAX]; /* "" when absent */
    int ok;          /* 0: unusable (odd reply): never store */
} tc__stamps;

struct tc_cache;

/** The stamp field of the key with hash `h` into `buf` (8 bytes). */
size_t tc__stamp_field(uint64_t h, char *buf);
/** A fresh, unique stamp into `buf` (TC__STAMP_MAX bytes). */
size_t tc__stamp_new(struct tc_cache *c, char *buf);
/** Record the HMGET <field> all reply of a read-through miss. */
void tc__stamps_take(const redisReply *r, tc__stamps *out);
/** Store `val` as the loaded value of the prefixed key `pk` (NX, PX ttl
 *  unless TC_TTL_NONE) if both stamps are unchanged. 1 stored, 0 refused
 *  (stamp moved or key present), -1 on an L2 failure (detail in
 *  tc_errmsg()). */
int tc__stamps_store(struct tc_cache *c, const char *pk, size_t pklen,
                     const void *val, size_t vlen, uint64_t l2_ttl_ms,
                     const tc__stamps *s);
/** Modes of tc__stamps_store_mode(). */
enum { TC__STORE_NX = 0, TC__STORE_OVER = 1, TC__STORE_NEG = 2 };
/** tc__stamps_store() in a mode: TC__STORE_NX as tc__stamps_store();
 *  TC__STORE_OVER replaces whatever the key holds (an eager refresh);
 *  TC__STORE_NEG stores the key's negative marker (negative.c) if the key
 *  is absent, `val` unused. Same guard, same results. */
int tc__stamps_store_mode(struct tc_cache *c, const char *pk, size_t pklen,
                          const void *val, size_t vlen, uint64_t l2_ttl_ms,
                          const tc__stamps *s, int mode);
/** Read the stamps of the key `key` (the caller's, unprefixed) with hash
 *  `h` (one HMGET): TC_OK or the L2 failure. */
int tc__stamps_read(struct tc_cache *c, uint64_t h, const void *key,
                    size_t klen, tc__stamps *out);
struct tc__pkey;
/** The stamps hash of the prefixed key `pk`: "__tiercache:<stem>:stamps",
 *  on Redis Cluster followed by "{<tag>}" naming pk's slot (slot.h): one
 *  hash per slot, so that a write's MULTI and the store script name keys
 *  of one slot, and "all" is a field of every slot's hash. Into *out, free
 *  with tc__pkey_free(). */
int tc__stamps_key(const struct tc_cache *c, const char *pk, size_t pklen,
                   struct tc__pkey *out);
/** 1 when two stamp readings of one key are usable and equal. */
int tc__stamps_same(const tc__stamps *a, const tc__stamps *b);
/** Replace the global stamp: before a prefix or pattern invalidation
 *  scans. TC_OK or the L2 failure. */
int tc__stamps_bump_all(struct tc_cache *c);

#endif
