/*
 * Compression of values in L2 (opt-in: tc_options.compress_min_bytes).
 *
 * A value the library stores in L2 is either plain (its bytes as given) or
 * framed: the 4-byte marker "\0\xfftc", a kind byte, then the payload.
 * Kind 'z': a zstd frame (with its content size) of the value; kind 'p':
 * the value itself, used when compression is on and a value that was not
 * worth compressing happens to begin with the marker and a kind byte, so
 * that no plain value is ever read as a frame. A reader with compression
 * off does not decode: a framed value is TC_COMPRESSED, never bytes that
 * look like the value. Values are compressed at or above the threshold
 * and only kept compressed when that saves bytes.
 *
 * Pure functions over caller buffers, plus per-thread zstd contexts (made
 * on first use, freed at thread exit): thread-safe.
 */
#ifndef TC_COMPRESS_H
#define TC_COMPRESS_H

#include <stddef.h>

#include "tiercache.h"

struct tc_cache;

#define TC__Z_MARKER "\0\xfftc"
#define TC__Z_HEADER 5 /* marker + kind */

/** The L2 form of `val`: *out is `val` itself, or a buffer in *owned
 *  (malloc'd, the caller frees it; NULL when not needed). TC_NO_MEMORY. */
tc_result tc__z_encode(struct tc_cache *c, const void *val, size_t vlen,
                       const void **out, size_t *outlen, void **owned);

/** The value stored as `val`: *out points into `val` or to *owned (as
 *  above). TC_COMPRESSED when framed and this cache has compression off,
 *  TC_CORRUPT for a frame that does not decode, TC_TOO_LARGE when it
 *  would decode to more than max_value_bytes (checked before anything is
 *  allocated), detail in tc_errmsg(). */
tc_result tc__z_decode(struct tc_cache *c, const void *val, size_t vlen,
                       const void **out, size_t *outlen, void **owned);

#endif
