/*
 * Plain LRU over integer keys, capacity in entries: the reference policy the
 * L1's eviction is compared against in the hit-ratio section.
 */
#ifndef TC_BENCH_LRU_H
#define TC_BENCH_LRU_H

#include <stddef.h>
#include <stdint.h>

typedef struct lru lru;

/* NULL on allocation failure. */
lru *lru_create(size_t capacity);
/* 1 on a hit (the key moves to the front), 0 on a miss (the key is inserted,
 * evicting the least recently used key when full). */
int lru_access(lru *l, uint64_t key);
void lru_destroy(lru *l);

#endif
