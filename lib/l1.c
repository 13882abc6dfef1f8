/*
 * L1 store: lock-free reads over flat open-addressing indexes, SIEVE
 * eviction, generation slots (see l1.h for ownership and locking).
 *
 * Index: one atomic word per slot, 0 (empty), TOMB (a removed entry: probes
 * go on past it), or an entry pointer whose alignment bits carry a few bits
 * of the key's hash (the tag), so that most probes that pass another key's
 * slot do not touch that entry. Linear probing; writers keep at most 3/4 of
 * the slots non-empty. Growth is incremental: a new array (sized for the
 * live entries at a load of 3/8) is published with the old one hanging off
 * it, every later write moves MIGRATE_STEP slots across, and readers look in
 * the old array first, then the new: a writer moves an entry by storing it
 * in the new array before it tombstones the old slot, so a reader that finds
 * the tombstone finds the entry. A reader that started before the new array
 * was published and misses looks again if the index pointer moved. No write
 * ever rebuilds a whole array.
 *
 * SIEVE (Zhang et al., NSDI '24) keeps one FIFO queue and a "visited" bit per
 * entry: a hit only sets the bit (if clear); eviction moves a hand from the
 * oldest entry towards the newest, clearing set bits and evicting the first
 * entry whose bit is clear. Entries inserted by a one-time scan are never
 * visited and leave first, so hot keys survive scans that flush plain LRU.
 * One eviction clears at most EVICT_SCAN bits, then evicts where the hand
 * stands: bounded work per fill even when every entry was read.
 */
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "epoch.h"
#include "glob.h"
#include "l1.h"

/* ---- index --------------------------------------------------------------- */

#define TAG_MASK ((uintptr_t)15)
_Static_assert(alignof(max_align_t) >= 16, "malloc alignment carries the tag");
#define TOMB ((uintptr_t)1) /* pointer part 0 */

#define MIGRATE_STEP 32 /* old slots moved per write while growing */
#define EVICT_SCAN 128  /* visited bits cleared per eviction, at most */
#define SCAN_CHUNK 256  /* entries examined per lock hold in scans */
#define RETIRE_BATCH 256 /* retired entries per grace period */

typedef struct ix {
    size_t mask;
    size_t used;                 /* shard lock: non-empty slots */
    struct ix *_Atomic old;      /* array being migrated from, or NULL */
    struct ix *retired_next;     /* shard lock: retire list */
    _Atomic uintptr_t slot[];
} ix;

static inline uintptr_t tag_of(uint64_t h)
{
    return (uintptr_t)(h >> 40) & TAG_MASK;
}

static inline struct tc_value *ptr_of(uintptr_t sv)
{
    return (struct tc_value *)(sv & ~TAG_MASK);
}

static ix *ix_new(size_t cap)
{
    ix *x = calloc(1, sizeof(*x) + cap * sizeof(x->slot[0]));
    if (x)
        x->mask = cap - 1;
    return x;
}

/* Key equality without a call for the usual short keys (8..16 bytes: two
 * overlapping words); memcmp() for the rest. */
static inline int key_eq(const char *a, const void *key, size_t n)
{
    if (n >= 8 && n <= 16) {
        const char *b = key;
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8);
        memcpy(&b0, b, 8);
        memcpy(&a1, a + n - 8, 8);
        memcpy(&b1, b + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    return memcmp(a, key, n) == 0;
}

/* Reader and writer: the entry for key in `x`, or NULL. */
static inline struct tc_value *ix_find(const ix *x, uint64_t h,
                                       const void *key, size_t klen)
{
    uintptr_t tag = tag_of(h);
    size_t i = (size_t)h & x->mask;
    for (size_t n = 0; n <= x->mask; n++, i = (i + 1) & x->mask) {
        uintptr_t sv = atomic_load_explicit(&x->slot[i], memory_order_acquire);
        struct tc_value *e;
        if (!sv)
            return NULL;
        if ((sv & TAG_MASK) != tag || !(e = ptr_of(sv)))
            continue;
        if (e->klen == klen && key_eq(e->data, key, klen))
            return e;
    }
    return NULL;
}

/* Writer: the slot holding exactly `e` in `x`, or NULL. */
static _Atomic uintptr_t *ix_slot_of(ix *x, uint64_t h,
                                     const struct tc_value *e)
{
    size_t i = (size_t)h & x->mask;
    for (size_t n = 0; n <= x->mask; n++, i = (i + 1) & x->mask) {
        uintptr_t sv = atomic_load_explicit(&x->slot[i], memory_order_relaxed);
        if (!sv)
            return NULL;
        if (ptr_of(sv) == e)
            return &x->slot[i];
    }
    return NULL;
}

/* Writer: put `e` (whose key is in neither array) in the first free slot of
 * its probe sequence. The caller made sure one is free. */
static void ix_put(ix *x, uint64_t h, struct tc_value *e)
{
    size_t i = (size_t)h & x->mask;
    for (;;) {
        uintptr_t sv = atomic_load_explicit(&x->slot[i], memory_order_relaxed);
        if (!sv || sv == TOMB) {
            if (!sv)
                x->used++;
            atomic_store_explicit(&x->slot[i], (uintptr_t)e | tag_of(h),
                                  memory_order_release);
            return;
        }
        i = (i + 1) & x->mask;
    }
}

/* ---- store --------------------------------------------------------------- */

#define NSTRIPES 64

/* Hit and miss counters: a thread's own stripe for the first NSTRIPES
 * threads that read (written with plain load + store), shared (atomic add)
 * for later ones. */
typedef struct stripe {
    alignas(64) atomic_uint_fast64_t hits;
    atomic_uint_fast64_t misses;
} stripe;

static _Thread_local unsigned tls_stripe
    __attribute__((tls_model("initial-exec"))); /* 0: not yet assigned */
static atomic_uint stripe_next;

typedef struct shard {
    /* Read by readers; written by writers only when the index changes. */
    alignas(64) ix *_Atomic index;
    /* Everything below: shard lock. */
    alignas(64) pthread_mutex_t lock;
    size_t migrate_pos;            /* next slot of ix->old to move */
    struct tc_value *head, *tail;  /* SIEVE queue: oldest, newest */
    struct tc_value *hand;         /* SIEVE hand; NULL = start at head */
    struct tc_value *scan_cur, *scan_last; /* a running scan's range */
    size_t bytes, entries;
    uint64_t evictions, expirations, fills_skipped;
    struct tc_value *dead;         /* retired, awaiting a grace period */
    size_t ndead;
    ix *dead_ix;
    /* Written under the lock, read lock-free by tc__l1_gen(). */
    atomic_uint_fast64_t gen[TC__GEN_SLOTS];
} shard;

/* Index slots over all shards from which a lookup prefetches its slot
 * before reading the clock (tc__l1_get_until): 2^17 slots hold some 50k
 * to 100k entries, several MB with their keys and values. */
#define DEEP_SLOTS ((size_t)1 << 17)

struct tc__l1 {
    shard *shards;
    unsigned nshards;
    atomic_int deep;         /* an index grew to DEEP_SLOTS / nshards; never
                                reset (a hint) */
    unsigned shift;          /* 64 - log2(nshards) */
    size_t max_bytes;        /* per shard */
    size_t max_entries;      /* per shard */
    uint64_t epoch_ns;       /* entry expiries count ns from here */
    pthread_mutex_t scan_lock; /* one prefix/glob/clear scan at a time */
    stripe stripes[NSTRIPES];
};

static inline shard *shard_of(tc__l1 *l1, uint64_t h)
{
    return &l1->shards[l1->nshards == 1 ? 0 : h >> l1->shift];
}

static inline unsigned slot_of(uint64_t h)
{
    return (unsigned)(h >> 32) & (TC__GEN_SLOTS - 1);
}

static inline size_t charge(const struct tc_value *v)
{
    return TC__L1_OVERHEAD + v->klen + v->vlen;
}

static inline uint64_t hash_of(const struct tc_value *e)
{
    return tc__hash(e->data, e->klen);
}

static void count(tc__l1 *l1, int hit)
{
    unsigned i = tls_stripe;
    stripe *st;
    atomic_uint_fast64_t *c;
    if (!i)
        tls_stripe = i = atomic_fetch_add(&stripe_next, 1) + 1;
    st = &l1->stripes[(i - 1) % NSTRIPES];
    c = hit ? &st->hits : &st->misses;
    if (i <= NSTRIPES) /* ours alone: no locked instruction */
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed)
                                     + 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

tc__l1 *tc__l1_create(size_t max_bytes, size_t max_entries, unsigned shards)
{
    tc__l1 *l1;
    unsigned bits = 0;

    if (shards == 0 || (shards & (shards - 1)) != 0)
        return NULL;
    tc__epoch_init();
    while ((1u << bits) < shards)
        bits++;
    if (posix_memalign((void **)&l1, 64, sizeof(*l1)))
        return NULL;
    memset(l1, 0, sizeof(*l1));
    if (posix_memalign((void **)&l1->shards, 64, sizeof(shard) * shards)) {
        free(l1);
        return NULL;
    }
    memset(l1->shards, 0, sizeof(shard) * shards);
    for (unsigned i = 0; i < shards; i++) {
        ix *x = ix_new(16);
        if (!x) {
            while (i--) {
                pthread_mutex_destroy(&l1->shards[i].lock);
                free(atomic_load(&l1->shards[i].index));
            }
            free(l1->shards);
            free(l1);
            return NULL;
        }
        atomic_init(&l1->shards[i].index, x);
        pthread_mutex_init(&l1->shards[i].lock, NULL);
    }
    pthread_mutex_init(&l1->scan_lock, NULL);
    l1->nshards = shards;
    l1->shift = 64 - bits;
    l1->max_bytes = max_bytes / shards;
    l1->max_entries = max_entries / shards ? max_entries / shards : 1;
    l1->epoch_ns = tc__now_ns();
    return l1;
}

#define VISITED 1ULL

/* Expiry is stored rounded down to an even ns: an entry may expire 1 ns
 * early, never late. */
static inline int expired_at(const tc__l1 *l1, uint64_t meta, uint64_t now)
{
    return now >= l1->epoch_ns + (meta & ~VISITED);
}

/* ---- retiring ------------------------------------------------------------ */

/* Lock held: hand the shard's retired entries and arrays to the caller once
 * there are enough to be worth a grace period (`all`: any at all). */
typedef struct retired {
    struct tc_value *e;
    size_t n;
    ix *x;
} retired;

static void take_retired(shard *s, retired *r, int all)
{
    if (s->ndead && (all || s->dead_ix || s->ndead >= RETIRE_BATCH)) {
        struct tc_value *t = s->dead;
        while (t->next)
            t = t->next;
        t->next = r->e;
        r->e = s->dead;
        r->n += s->ndead;
        s->dead = NULL;
        s->ndead = 0;
    }
    while (s->dead_ix) {
        ix *x = s->dead_ix;
        s->dead_ix = x->retired_next;
        x->retired_next = r->x;
        r->x = x;
    }
}

/* No lock held: wait out readers, then free what was taken. */
static void reclaim(retired *r)
{
    if (!r->e && !r->x)
        return;
    tc__epoch_synchronize();
    while (r->e) {
        struct tc_value *next = r->e->next;
        tc_value_release(r->e); /* the table's reference */
        r->e = next;
    }
    while (r->x) {
        ix *next = r->x->retired_next;
        free(r->x);
        r->x = next;
    }
    r->n = 0;
}

/* ---- writer side (shard lock held) --------------------------------------- */

/* Remove `e` from the queue and the budget and retire it; its index slot
 * is the caller's business. */
static void retire_entry(shard *s, struct tc_value *e)
{
    if (s->hand == e)
        s->hand = e->next;
    if (e == s->scan_last) {
        if (e == s->scan_cur)
            s->scan_cur = s->scan_last = NULL;
        else
            s->scan_last = e->prev;
    } else if (e == s->scan_cur) {
        s->scan_cur = e->next;
    }
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    s->bytes -= charge(e);
    s->entries--;
    e->next = s->dead;
    s->dead = e;
    s->ndead++;
}

/* Tombstone `e`'s slot, in whichever array holds it. */
static void clear_slot(shard *s, uint64_t h, struct tc_value *e)
{
    ix *x = atomic_load_explicit(&s->index, memory_order_relaxed);
    ix *o = atomic_load_explicit(&x->old, memory_order_relaxed);
    _Atomic uintptr_t *p = ix_slot_of(x, h, e);
    if (!p && o)
        p = ix_slot_of(o, h, e);
    if (p)
        atomic_store_explicit(p, TOMB, memory_order_release);
}

static void unlink_entry(shard *s, uint64_t h, struct tc_value *e)
{
    clear_slot(s, h, e);
    retire_entry(s, e);
}

/* Move up to `n` slots of the old array into the current one; retire the
 * old array when done. Called by fill and invalidate_key, the only writes
 * that insert: see make_room() for why the new array never fills first. */
static void migrate(shard *s, size_t n)
{
    ix *x = atomic_load_explicit(&s->index, memory_order_relaxed);
    ix *o = atomic_load_explicit(&x->old, memory_order_relaxed);
    if (!o)
        return;
    for (; n && s->migrate_pos <= o->mask; n--, s->migrate_pos++) {
        _Atomic uintptr_t *p = &o->slot[s->migrate_pos];
        struct tc_value *e = ptr_of(atomic_load_explicit(p,
                                                         memory_order_relaxed));
        if (!e)
            continue;
        /* New home first, then the tombstone: see the file comment. */
        ix_put(x, hash_of(e), e);
        atomic_store_explicit(p, TOMB, memory_order_release);
    }
    if (s->migrate_pos > o->mask) {
        atomic_store_explicit(&x->old, NULL, memory_order_release);
        o->retired_next = s->dead_ix;
        s->dead_ix = o;
    }
}

/* Make room for one more slot in the current array: start a migration to
 * an array sized for the live entries when 3/4 of the slots are used.
 * Returns 0, or -1 when no slot can be had (out of memory and full). */
static int make_room(tc__l1 *l1, shard *s)
{
    ix *x = atomic_load_explicit(&s->index, memory_order_relaxed), *n;
    size_t cap = 16;
    if ((x->used + 1) * 4 <= (x->mask + 1) * 3)
        return 0;
    /* A migration still running: finish it first. Cannot happen with the
     * sizes chosen below: the new array starts at most 1/2 full and takes
     * at most one entry per write, while each write moves MIGRATE_STEP = 32
     * of the old array's at most 4x as many slots, so the migration ends
     * with the new array at most 1/2 + 4/32 = 5/8 full. */
    while (atomic_load_explicit(&x->old, memory_order_relaxed))
        migrate(s, SIZE_MAX);
    /* Load 1/2 .. 1/4 right after growing (an 8-byte slot costs 16-32 B
     * per entry then, less as the array fills). */
    while (cap < (s->entries + 1) * 2 || cap < (x->mask + 1) / 4)
        cap <<= 1;
    n = ix_new(cap);
    if (!n)
        return x->used + 2 <= x->mask + 1 ? 0 : -1;
    atomic_init(&n->old, x);
    if (cap >= DEEP_SLOTS / l1->nshards)
        atomic_store_explicit(&l1->deep, 1, memory_order_relaxed);
    s->migrate_pos = 0;
    atomic_store_explicit(&s->index, n, memory_order_release);
    return 0;
}

/* SIEVE: evict one entry. Expired entries go regardless of their bit.
 * Returns 0 when the shard is empty. */
static int evict_one(const tc__l1 *l1, shard *s, uint64_t now)
{
    struct tc_value *e = s->hand ? s->hand : s->head;
    for (unsigned k = 0; e; k++) {
        uint64_t m = atomic_load_explicit(&e->meta, memory_order_relaxed);
        int exp = expired_at(l1, m, now);
        if ((m & VISITED) && !exp && k < EVICT_SCAN) {
            atomic_fetch_and_explicit(&e->meta, ~VISITED,
                                      memory_order_relaxed);
            e = e->next ? e->next : s->head;
            continue;
        }
        if (exp)
            s->expirations++;
        else
            s->evictions++;
        s->hand = e->next;
        unlink_entry(s, hash_of(e), e);
        return 1;
    }
    return 0;
}

/* The linked entry for key, in either array. */
static struct tc_value *find_locked(shard *s, uint64_t h, const void *key,
                                    size_t klen)
{
    ix *x = atomic_load_explicit(&s->index, memory_order_relaxed);
    ix *o = atomic_load_explicit(&x->old, memory_order_relaxed);
    struct tc_value *e = o ? ix_find(o, h, key, klen) : NULL;
    return e ? e : ix_find(x, h, key, klen);
}

/* ---- reads --------------------------------------------------------------- */

/* A reader found `key` expired: remove it if it still is. */
static void drop_expired(tc__l1 *l1, shard *s, uint64_t h, const void *key,
                         size_t klen, uint64_t now)
{
    retired r = {NULL, 0, NULL};
    struct tc_value *e;
    pthread_mutex_lock(&s->lock);
    e = find_locked(s, h, key, klen);
    if (e && expired_at(l1, atomic_load_explicit(&e->meta,
                                                 memory_order_relaxed), now)) {
        unlink_entry(s, h, e);
        s->expirations++;
    }
    take_retired(s, &r, 0);
    pthread_mutex_unlock(&s->lock);
    reclaim(&r);
}

/* A lookup at `now`, counting what `counting` (TC__L1_COUNT_*) says. */
static inline struct tc_value *get_at(tc__l1 *l1, uint64_t h,
                                      const void *key, size_t klen,
                                      uint64_t now, int counting)
{
    shard *s = shard_of(l1, h);
    struct tc_value *e, *v = NULL;
    int exp = 0;
    tc__epoch_rec *rec = tc__epoch_enter();
    if (!rec) {
        if (counting & TC__L1_COUNT_MISS)
            count(l1, 0);
        return NULL;
    }
    {
        ix *x = atomic_load_explicit(&s->index, memory_order_acquire), *x2;
        for (;;) {
            ix *o = atomic_load_explicit(&x->old, memory_order_acquire);
            e = o ? ix_find(o, h, key, klen) : NULL;
            if (!e)
                e = ix_find(x, h, key, klen);
            /* A miss in an array a newer one has replaced meanwhile may
             * be a tombstone left by the migration: look again there. The
             * tombstone was stored after the newer array was published, so
             * a reader that saw it sees the new index pointer. */
            if (e || (x2 = atomic_load_explicit(&s->index,
                                                memory_order_acquire)) == x)
                break;
            x = x2;
        }
    }
    if (e) {
        uint64_t m = atomic_load_explicit(&e->meta, memory_order_relaxed);
        if (expired_at(l1, m, now)) {
            exp = 1;
        } else {
            if (!(m & VISITED)) /* written once per sweep, not per hit */
                atomic_fetch_or_explicit(&e->meta, VISITED,
                                         memory_order_relaxed);
            if (e->vlen <= TC__L1_COPY_MAX) {
                v = tc__value_new(e->data + e->klen, e->vlen);
            } else {
                /* The table's reference outlives this section. */
                atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
                v = e;
            }
        }
    }
    tc__epoch_exit(rec);
    if (exp)
        drop_expired(l1, s, h, key, klen, now);
    if (counting & (v ? TC__L1_COUNT_HIT : TC__L1_COUNT_MISS))
        count(l1, v != NULL);
    return v;
}

struct tc_value *tc__l1_get(tc__l1 *l1, uint64_t h, const void *key,
                            size_t klen, uint64_t now)
{
    return get_at(l1, h, key, klen, now,
                  TC__L1_COUNT_HIT | TC__L1_COUNT_MISS);
}

struct tc_value *tc__l1_get_ex(tc__l1 *l1, uint64_t h, const void *key,
                               size_t klen, uint64_t now, int counting)
{
    return get_at(l1, h, key, klen, now, counting);
}

struct tc_value *tc__l1_get_until(tc__l1 *l1, uint64_t h, const void *key,
                                  size_t klen, uint64_t until, int counting,
                                  int *lapsed)
{
    uint64_t now;
    /* In a store too large for the CPU caches, start loading the index slot
     * first: its cache miss then overlaps the clock read, which waits for
     * every load before it but not for a prefetch (measured: 0.8x the hit
     * time at 100k entries). In a small store the two loads that find the
     * slot would only delay the clock read. A hint only: the array may be
     * replaced meanwhile. */
    if (atomic_load_explicit(&l1->deep, memory_order_relaxed)) {
        ix *x = atomic_load_explicit(&shard_of(l1, h)->index,
                                     memory_order_relaxed);
        __builtin_prefetch(&x->slot[(size_t)h & x->mask]);
    }
    now = tc__now_ns();
    if (now >= until) {
        *lapsed = 1;
        return NULL;
    }
    return get_at(l1, h, key, klen, now, counting);
}

void tc__l1_count_hits(tc__l1 *l1, size_t n)
{
    while (n--)
        count(l1, 1);
}

void tc__l1_prefetch(tc__l1 *l1, uint64_t h, int stage)
{
    shard *s = shard_of(l1, h);
    tc__epoch_rec *rec = tc__epoch_enter(); /* the index is not freed */
    ix *x;
    size_t i;
    if (!rec)
        return;
    x = atomic_load_explicit(&s->index, memory_order_acquire);
    i = (size_t)h & x->mask;
    if (stage == 0) {
        __builtin_prefetch((const void *)&x->slot[i]);
        __builtin_prefetch((const void *)&s->gen[slot_of(h)]);
    } else {
        uintptr_t sv = atomic_load_explicit(&x->slot[i], memory_order_relaxed);
        if ((sv & TAG_MASK) == tag_of(h) && ptr_of(sv))
            __builtin_prefetch((const void *)ptr_of(sv));
    }
    tc__epoch_exit(rec);
}

uint64_t tc__l1_gen(tc__l1 *l1, uint64_t h)
{
    return atomic_load_explicit(&shard_of(l1, h)->gen[slot_of(h)],
                                memory_order_acquire);
}

/* ---- writes -------------------------------------------------------------- */

static void bump(shard *s, unsigned slot)
{
    atomic_store_explicit(&s->gen[slot],
                          atomic_load_explicit(&s->gen[slot],
                                               memory_order_relaxed) + 1,
                          memory_order_release);
}

int tc__l1_fill(tc__l1 *l1, uint64_t h, const void *key, size_t klen,
                const void *val, size_t vlen, uint64_t expires_ns,
                uint64_t gen, int flags, struct tc_value **ref)
{
    shard *s = shard_of(l1, h);
    struct tc_value *e, *old;
    retired r = {NULL, 0, NULL};
    size_t need = TC__L1_OVERHEAD + klen + vlen;
    uint64_t now, rel;
    int rc = TC__FILL_INSERTED;

    /* klen > 0 marks an entry, as opposed to a standalone value (value.c) */
    if (need > l1->max_bytes || klen == 0 || klen > UINT32_MAX ||
        vlen > UINT32_MAX)
        return TC__FILL_NOFIT;
    /* Build the entry outside the lock. */
    e = malloc(offsetof(struct tc_value, data) + klen + vlen);
    if (!e)
        return TC__FILL_NOMEM;
    memset(e, 0, offsetof(struct tc_value, data));
    atomic_init(&e->refs, 1); /* the table's reference */
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    rel = expires_ns > l1->epoch_ns ? expires_ns - l1->epoch_ns : 0;
    atomic_init(&e->meta, rel & ~VISITED);
    memcpy(e->data, key, klen);
    memcpy(e->data + klen, val, vlen);

    now = tc__now_ns();
    pthread_mutex_lock(&s->lock);
    if (atomic_load_explicit(&s->gen[slot_of(h)], memory_order_relaxed) !=
        gen) {
        s->fills_skipped++;
        rc = TC__FILL_STALE;
        goto out;
    }
    migrate(s, MIGRATE_STEP);
    old = find_locked(s, h, key, klen);
    if (old)
        retire_entry(s, old); /* its slot is reused or cleared below */
    while (s->bytes + need > l1->max_bytes ||
           s->entries + 1 > l1->max_entries)
        if (!evict_one(l1, s, now))
            break;
    {
        ix *x = atomic_load_explicit(&s->index, memory_order_relaxed);
        _Atomic uintptr_t *p = old ? ix_slot_of(x, h, old) : NULL;
        if (p) {
            /* Replace in place: readers see the old entry or the new. */
            atomic_store_explicit(p, (uintptr_t)e | tag_of(h),
                                  memory_order_release);
        } else {
            if (make_room(l1, s) != 0) {
                if (old)
                    clear_slot(s, h, old);
                rc = TC__FILL_NOMEM;
                goto out;
            }
            ix_put(atomic_load_explicit(&s->index, memory_order_relaxed), h, e);
            if (old) /* it was in the old array: new home first */
                clear_slot(s, h, old);
        }
    }
    e->prev = s->tail;
    e->next = NULL;
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    s->bytes += need;
    s->entries++;
    if (flags & TC__FILL_BUMP)
        bump(s, slot_of(h));
    if (ref) {
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        *ref = e;
    }
    e = NULL;
out:
    take_retired(s, &r, 0);
    pthread_mutex_unlock(&s->lock);
    free(e);
    reclaim(&r);
    return rc;
}

uint64_t tc__l1_invalidate_key(tc__l1 *l1, uint64_t h, const void *key,
                               size_t klen)
{
    shard *s = shard_of(l1, h);
    struct tc_value *e;
    retired r = {NULL, 0, NULL};
    uint64_t g;
    pthread_mutex_lock(&s->lock);
    migrate(s, MIGRATE_STEP);
    e = find_locked(s, h, key, klen);
    if (e)
        unlink_entry(s, h, e);
    bump(s, slot_of(h));
    g = atomic_load_explicit(&s->gen[slot_of(h)], memory_order_relaxed);
    take_retired(s, &r, 0);
    pthread_mutex_unlock(&s->lock);
    reclaim(&r);
    return g;
}

typedef int (*match_fn)(const void *arg, size_t alen, const char *k,
                        size_t klen);

static int match_prefix(const void *p, size_t plen, const char *k, size_t klen)
{
    return klen >= plen && memcmp(k, p, plen) == 0;
}

static int match_glob(const void *p, size_t plen, const char *k, size_t klen)
{
    return tc__glob_match(p, plen, k, klen);
}

static int match_all(const void *p, size_t plen, const char *k, size_t klen)
{
    (void)p, (void)plen, (void)k, (void)klen;
    return 1;
}

/*
 * Every generation of a shard is bumped first, so no fill that read one
 * before the invalidation lands after it; then the shard's queue is walked
 * from its oldest entry to the entry newest at the start, SCAN_CHUNK
 * entries per lock hold. Other writers may run between chunks: an entry
 * they unlink moves the scan's cursor or end (retire_entry), entries they
 * add land after the end. Readers never wait on any of it.
 */
static size_t drop_matching(tc__l1 *l1, match_fn fn, const void *arg,
                            size_t alen)
{
    size_t n = 0;
    pthread_mutex_lock(&l1->scan_lock);
    for (unsigned i = 0; i < l1->nshards; i++) {
        shard *s = &l1->shards[i];
        retired r = {NULL, 0, NULL};
        int done;
        pthread_mutex_lock(&s->lock);
        for (unsigned g = 0; g < TC__GEN_SLOTS; g++)
            bump(s, g);
        s->scan_cur = s->head;
        s->scan_last = s->tail;
        pthread_mutex_unlock(&s->lock);
        do {
            pthread_mutex_lock(&s->lock);
            for (unsigned k = 0; k < SCAN_CHUNK && s->scan_cur; k++) {
                struct tc_value *e = s->scan_cur;
                if (e == s->scan_last)
                    s->scan_cur = s->scan_last = NULL;
                else
                    s->scan_cur = e->next;
                if (fn(arg, alen, e->data, e->klen)) {
                    unlink_entry(s, hash_of(e), e);
                    n++;
                }
            }
            done = !s->scan_cur;
            take_retired(s, &r, 1);
            pthread_mutex_unlock(&s->lock);
            /* One grace period per 16 chunks' worth of dropped entries. */
            if (done || r.x || r.n >= 16 * SCAN_CHUNK)
                reclaim(&r);
        } while (!done);
    }
    pthread_mutex_unlock(&l1->scan_lock);
    return n;
}

size_t tc__l1_invalidate_prefix(tc__l1 *l1, const void *prefix, size_t plen)
{
    return drop_matching(l1, match_prefix, prefix, plen);
}

size_t tc__l1_invalidate_glob(tc__l1 *l1, const char *glob, size_t glen)
{
    return drop_matching(l1, match_glob, glob, glen);
}

size_t tc__l1_clear(tc__l1 *l1)
{
    return drop_matching(l1, match_all, NULL, 0);
}

void tc__l1_stats(tc__l1 *l1, tc_stats *out)
{
    for (unsigned i = 0; i < l1->nshards; i++) {
        shard *s = &l1->shards[i];
        pthread_mutex_lock(&s->lock);
        out->l1_entries += s->entries;
        out->l1_bytes += s->bytes;
        out->l1_evictions += s->evictions;
        out->l1_expirations += s->expirations;
        out->fills_skipped += s->fills_skipped;
        pthread_mutex_unlock(&s->lock);
    }
    for (unsigned i = 0; i < NSTRIPES; i++) {
        out->l1_hits += atomic_load_explicit(&l1->stripes[i].hits,
                                             memory_order_relaxed);
        out->l1_misses += atomic_load_explicit(&l1->stripes[i].misses,
                                               memory_order_relaxed);
    }
}

void tc__l1_destroy(tc__l1 *l1)
{
    if (!l1)
        return;
    for (unsigned i = 0; i < l1->nshards; i++) {
        shard *s = &l1->shards[i];
        ix *x = atomic_load(&s->index), *o = atomic_load(&x->old);
        retired r = {NULL, 0, NULL};
        /* No reader may run now: no grace period needed, but reclaim()
         * waits one anyway (cheap) and frees. */
        while (s->head)
            retire_entry(s, s->head);
        if (o) {
            o->retired_next = s->dead_ix;
            s->dead_ix = o;
        }
        x->retired_next = s->dead_ix;
        s->dead_ix = x;
        take_retired(s, &r, 1);
        reclaim(&r);
        pthread_mutex_destroy(&s->lock);
    }
    pthread_mutex_destroy(&l1->scan_lock);
    free(l1->shards);
    free(l1);
}
