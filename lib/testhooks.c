/* Hooks for in-tree tests only (declared in cache.h; not exported). */
#include "cache.h"

void tc__cache_set_fill_hook(tc_cache *c, tc__fill_hook_fn fn, void *arg)
{
    c->fill_hook_arg = arg;
    c->fill_hook = fn;
}

void tc__cache_set_load_hook(tc_cache *c, tc__fill_hook_fn fn, void *arg)
{
    c->load_hook_arg = arg;
    c->load_hook = fn;
}

void tc__cache_set_tag_hook(tc_cache *c, tc__fill_hook_fn fn, void *arg)
{
    c->tag_hook_arg = arg;
    c->tag_hook = fn;
}

void tc__cache_set_session_write_hook(tc_cache *c, tc__fill_hook_fn fn,
                                      void *arg)
{
    c->session_write_hook_arg = arg;
    c->session_write_hook = fn;
}

uint64_t tc__cache_bus_generation(tc_cache *c)
{
    return c->bus ? tc__bus_generation(c->bus) : 0;
}

void tc__cache_set_bus_hook(tc_cache *c, const tc__bus_hook *h)
{
    if (c->bus)
        tc__bus_set_message_hook(c->bus, h);
}

uint64_t tc__cache_bus_resets(tc_cache *c)
{
    return c->bus ? tc__bus_resets(c->bus) : 0;
}

uint64_t tc__cache_bus_connects(tc_cache *c)
{
    return c->bus ? tc__bus_connects(c->bus) : 0;
}

tc_value *tc__cache_l1_contents(tc_cache *c, const void *key, size_t klen)
{
    return c->l1 ? tc__l1_get(c->l1, tc__hash(key, klen), key, klen,
                              tc__now_ns())
                 : NULL;
}

void tc__cache_hold_cluster_watch(tc_cache *c, int hold)
{
    if (c->bus)
        tc__bus_hold_cluster_watch(c->bus, hold);
}

size_t tc__cache_background_busy(tc_cache *c)
{
    return tc__bg_busy(c->bg);
}
