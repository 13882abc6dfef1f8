/*
 * Negative caching in L2: a loader's "not found" kept for a short TTL as a
 * marker key next to the (absent) key, "__tiercache:<channel>:neg:<key>",
 * holding the stamps (stamps.h) of the key's bucket when it was stored.
 * It counts only while those stamps are unchanged: any library write or
 * delete of the key (or of a key sharing its bucket), and any prefix or
 * pattern invalidation, voids it without touching it; so does the key
 * itself existing. Stored by the stamps-guarded script (TC__STORE_NEG).
 *
 * Pure helpers over caller-owned buffers; thread-safe.
 */
#ifndef TC_NEGATIVE_H
#define TC_NEGATIVE_H

#include <hiredis/hiredis.h>

#include "tiercache.h"

struct tc_cache;
struct tc__pkey;
struct tc__stamps;

/** The marker key of the prefixed key `pk` (free with tc__pkey_free()). */
tc_result tc__neg_key(const struct tc_cache *c, const char *pk, size_t pklen,
                      struct tc__pkey *out);
/** 1 when `marker` (the GET reply of the marker key) is a negative that
 *  still holds under the stamps `now` read in the same round trip. */
int tc__neg_valid(const redisReply *marker, const struct tc__stamps *now);

#endif
