/*
 * Redis Cluster key slots: CRC16 (XMODEM) of the key, or of its hash tag
 * (the bytes between the first '{' and the next '}', when not empty),
 * modulo 16384, exactly as Redis computes it (cluster.c keyHashSlot).
 *
 * The library keeps keys of its own next to each user key (its stamps,
 * its negative marker, its load lock: stamps.h, negative.h, stampede.c)
 * that must share the user key's slot, so that one MULTI or one script can
 * carry both on a cluster. tc__slot_tag() names, for every slot, a short
 * string that hashes to it: a key made "...{<tag>}..." lands in that slot.
 *
 * Pure functions; the tag table is built once (pthread_once) and is
 * immutable after: thread-safe.
 */
#ifndef TC_SLOT_H
#define TC_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define TC__SLOTS 16384
#define TC__SLOT_TAG_MAX 8 /* a tag and its NUL */

/** The slot of `key` (klen bytes). */
unsigned tc__slot_of(const void *key, size_t klen);

/** A string of at most TC__SLOT_TAG_MAX - 1 characters, without braces,
 *  whose slot is `slot` (< TC__SLOTS). Static storage, never freed. */
const char *tc__slot_tag(unsigned slot);

#endif
