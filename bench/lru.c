/*
 * LRU: uthash table plus an intrusive doubly linked recency list. Entries
 * come from one preallocated pool, so the policy costs no malloc per miss.
 */
#include <stdlib.h>

#include <uthash.h>

#include "lru.h"

typedef struct lru_ent {
    uint64_t key;
    struct lru_ent *prev, *next; /* recency list, most recent at head.next */
    UT_hash_handle hh;
} lru_ent;

struct lru {
    size_t cap, used;
    lru_ent *table;
    lru_ent head; /* sentinel */
    lru_ent *pool;
};

lru *lru_create(size_t capacity)
{
    lru *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->cap = capacity ? capacity : 1;
    l->pool = calloc(l->cap, sizeof *l->pool);
    if (!l->pool) {
        free(l);
        return NULL;
    }
    l->head.prev = l->head.next = &l->head;
    return l;
}

static void unlink_ent(lru_ent *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void push_front(lru *l, lru_ent *e)
{
    e->next = l->head.next;
    e->prev = &l->head;
    l->head.next->prev = e;
    l->head.next = e;
}

int lru_access(lru *l, uint64_t key)
{
    lru_ent *e = NULL;
    HASH_FIND(hh, l->table, &key, sizeof key, e);
    if (e) {
        unlink_ent(e);
        push_front(l, e);
        return 1;
    }
    if (l->used < l->cap) {
        e = &l->pool[l->used++];
    } else {
        e = l->head.prev; /* least recently used */
        unlink_ent(e);
        HASH_DELETE(hh, l->table, e);
    }
    e->key = key;
    HASH_ADD(hh, l->table, key, sizeof key, e);
    push_front(l, e);
    return 0;
}

void lru_destroy(lru *l)
{
    if (!l)
        return;
    HASH_CLEAR(hh, l->table);
    free(l->pool);
    free(l);
}
