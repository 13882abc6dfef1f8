/* The flat open-addressing floor table (see oa.h). Same hash as the L1
 * (tc__hash), so the comparison is of the tables, not of the hashes. */
#include <stdlib.h>
#include <string.h>

#include "l1.h"
#include "oa.h"

typedef struct oa_ent {
    uint32_t klen, vlen;
    char data[]; /* key bytes, then value bytes */
} oa_ent;

typedef struct oa_slot {
    uint64_t h;
    oa_ent *e; /* NULL: empty */
} oa_slot;

struct oa_tab {
    size_t mask, used;
    oa_slot *slot;
};

oa_tab *oa_create(size_t n)
{
    oa_tab *t = calloc(1, sizeof *t);
    size_t cap = 16;
    if (!t)
        return NULL;
    while (cap < 2 * n)
        cap <<= 1;
    t->slot = calloc(cap, sizeof *t->slot);
    if (!t->slot) {
        free(t);
        return NULL;
    }
    t->mask = cap - 1;
    return t;
}

static oa_slot *find(const oa_tab *t, uint64_t h, const void *key,
                     size_t klen)
{
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        oa_slot *s = &t->slot[i];
        if (!s->e || (s->h == h && s->e->klen == klen &&
                      memcmp(s->e->data, key, klen) == 0))
            return s;
    }
}

int oa_put(oa_tab *t, const void *key, size_t klen, const void *val,
           size_t vlen)
{
    uint64_t h = tc__hash(key, klen);
    oa_slot *s = find(t, h, key, klen);
    oa_ent *e;
    if (!s->e && (t->used + 1) * 2 > t->mask + 1)
        return -1;
    e = malloc(sizeof *e + klen + vlen);
    if (!e)
        return -1;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    memcpy(e->data, key, klen);
    memcpy(e->data + klen, val, vlen);
    if (s->e)
        free(s->e);
    else
        t->used++;
    s->h = h;
    s->e = e;
    return 0;
}

const char *oa_get(const oa_tab *t, const void *key, size_t klen)
{
    const oa_slot *s = find(t, tc__hash(key, klen), key, klen);
    return s->e ? s->e->data + klen : NULL;
}

void oa_destroy(oa_tab *t)
{
    if (!t)
        return;
    for (size_t i = 0; i <= t->mask; i++)
        free(t->slot[i].e);
    free(t->slot);
    free(t);
}
