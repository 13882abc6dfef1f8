/*
 * The facade's private parts: hooks for in-tree tests only. Nothing here is
 * part of the API or installed.
 */
#ifndef TC_CACHE_H
#define TC_CACHE_H

#include "tiercache.h"

/** Called by tc_get()/tc_mget()/tc_get_or_load() after the L2 reply arrived
 *  and before the L1 fill, on the calling thread. Lets a test hold a reader
 *  in exactly the window where the fill race lives. */
typedef void (*tc__fill_hook_fn)(void *arg, const void *key, size_t klen);
void tc__cache_set_fill_hook(tc_cache *c, tc__fill_hook_fn fn, void *arg);

/** The bus generation: increments every time the bus (re)proves itself
 *  alive after being down. 0 without a bus. */
uint64_t tc__cache_bus_generation(tc_cache *c);

/** 1 when this instance may serve L1 now. */
int tc__cache_l1_servable(tc_cache *c);

/** What L1 holds for `key`, whether or not it may be served now: a new
 *  reference, or NULL. */
tc_value *tc__cache_l1_contents(tc_cache *c, const void *key, size_t klen);

#endif
