/*
 * L1 store: sharded uthash tables, SIEVE eviction, generation slots.
 *
 * SIEVE (Zhang et al., NSDI '24) keeps one FIFO queue and a "visited" bit per
 * entry: a hit only sets the bit; eviction moves a hand from the oldest entry
 * towards the newest, clearing set bits and evicting the first entry whose bit
 * is clear. Entries inserted by a one-time scan are never visited and leave
 * first, so hot keys survive scans that flush plain LRU. The queue is
 * uthash's own insertion-order list (hh.prev/hh.next), so the policy costs no
 * pointers beyond the one uthash already keeps.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* uthash must not exit() on allocation failure: report it instead. The
 * variable named here is declared at every insertion site. */
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (oom_flag = 1)

#include "glob.h"
#include "l1.h"

typedef struct shard {
    pthread_mutex_t lock;
    struct tc_value *table; /* uthash head; also the SIEVE queue's oldest */
    struct tc_value *hand;  /* SIEVE hand; NULL = start at the oldest */
    size_t bytes, entries;
    uint64_t hits, misses, evictions, expirations, fills_skipped;
    uint64_t gen[TC__GEN_SLOTS];
} __attribute__((aligned(64))) shard;

struct tc__l1 {
    shard *shards;
    unsigned nshards;
    unsigned shift;          /* 64 - log2(nshards) */
    size_t max_bytes;        /* per shard */
    size_t max_entries;      /* per shard */
    uint64_t epoch_ns;       /* entry expiries count ms from here */
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
    return TC__L1_OVERHEAD + v->hh.keylen + v->vlen;
}

tc__l1 *tc__l1_create(size_t max_bytes, size_t max_entries, unsigned shards)
{
    tc__l1 *l1;
    unsigned bits = 0;

    if (shards == 0 || (shards & (shards - 1)) != 0)
        return NULL;
    while ((1u << bits) < shards)
        bits++;
    l1 = calloc(1, sizeof(*l1));
    if (!l1)
        return NULL;
    if (posix_memalign((void **)&l1->shards, 64, sizeof(shard) * shards)) {
        free(l1);
        return NULL;
    }
    memset(l1->shards, 0, sizeof(shard) * shards);
    for (unsigned i = 0; i < shards; i++)
        pthread_mutex_init(&l1->shards[i].lock, NULL);
    l1->nshards = shards;
    l1->shift = 64 - bits;
    l1->max_bytes = max_bytes / shards;
    l1->max_entries = max_entries / shards ? max_entries / shards : 1;
    l1->epoch_ns = tc__now_ns();
    return l1;
}

static void value_release(struct tc_value *v)
{
    tc_value_release(v);
}

void tc_value_release(tc_value *v)
{
    if (v && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
        free(v);
}

const void *tc_value_data(const tc_value *v)
{
    return v ? v->data + v->hh.keylen : NULL;
}

size_t tc_value_len(const tc_value *v)
{
    return v ? v->vlen : 0;
}

/* Unlink `e` from shard `s` (lock held) and chain it on `*dead` through
 * hh.next, to be released once the lock is dropped. */
static void unlink_entry(shard *s, struct tc_value *e, struct tc_value **dead)
{
    if (s->hand == e)
        s->hand = e->hh.next;
    HASH_DELETE(hh, s->table, e);
    s->bytes -= charge(e);
    s->entries--;
    e->hh.next = *dead;
    *dead = e;
}

static void release_chain(struct tc_value *dead)
{
    while (dead) {
        struct tc_value *next = dead->hh.next;
        value_release(dead);
        dead = next;
    }
}

void tc__l1_destroy(tc__l1 *l1)
{
    if (!l1)
        return;
    tc__l1_clear(l1);
    for (unsigned i = 0; i < l1->nshards; i++)
        pthread_mutex_destroy(&l1->shards[i].lock);
    free(l1->shards);
    free(l1);
}

struct tc_value *tc__value_new(const void *val, size_t vlen)
{
    struct tc_value *v;
    if (vlen > UINT32_MAX)
        return NULL;
    v = malloc(offsetof(struct tc_value, data) + (vlen ? vlen : 1));
    if (!v)
        return NULL;
    memset(v, 0, offsetof(struct tc_value, data));
    atomic_init(&v->refs, 1);
    v->vlen = (uint32_t)vlen;
    if (vlen)
        memcpy(v->data, val, vlen);
    return v;
}

#define VISITED 1ULL

/* Expiry is stored rounded down to the ms: an entry may expire up to 1 ms
 * early, never late. */
static inline int expired(const tc__l1 *l1, const struct tc_value *e,
                          uint64_t now)
{
    return now >= l1->epoch_ns + (e->meta >> 1) * 1000000ULL;
}

struct tc_value *tc__l1_get(tc__l1 *l1, uint64_t h, const void *key,
                            size_t klen, uint64_t now)
{
    shard *s = shard_of(l1, h);
    struct tc_value *e, *dead = NULL;

    pthread_mutex_lock(&s->lock);
    HASH_FIND_BYHASHVALUE(hh, s->table, key, (unsigned)klen, (unsigned)h, e);
    if (e) {
        if (expired(l1, e, now)) {
            unlink_entry(s, e, &dead);
            s->expirations++;
            e = NULL;
        } else {
            if (!(e->meta & VISITED))
                e->meta |= VISITED;
            atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        }
    }
    if (e)
        s->hits++;
    else
        s->misses++;
    pthread_mutex_unlock(&s->lock);
    release_chain(dead);
    return e;
}

uint64_t tc__l1_gen(tc__l1 *l1, uint64_t h)
{
    shard *s = shard_of(l1, h);
    uint64_t g;
    pthread_mutex_lock(&s->lock);
    g = s->gen[slot_of(h)];
    pthread_mutex_unlock(&s->lock);
    return g;
}

/* SIEVE: evict one entry (lock held). Expired entries go regardless of
 * their bit. Returns 0 when the shard is empty. */
static int evict_one(const tc__l1 *l1, shard *s, uint64_t now,
                     struct tc_value **dead)
{
    struct tc_value *e = s->hand ? s->hand : s->table;
    while (e) {
        if ((e->meta & VISITED) && !expired(l1, e, now)) {
            e->meta &= ~VISITED;
            e = e->hh.next ? e->hh.next : s->table;
            continue;
        }
        if (expired(l1, e, now))
            s->expirations++;
        else
            s->evictions++;
        s->hand = e->hh.next;
        unlink_entry(s, e, dead);
        return 1;
    }
    return 0;
}

int tc__l1_fill(tc__l1 *l1, uint64_t h, const void *key, size_t klen,
                const void *val, size_t vlen, uint64_t expires_ns,
                uint64_t gen, int flags, struct tc_value **ref)
{
    shard *s = shard_of(l1, h);
    struct tc_value *e, *old, *dead = NULL;
    size_t need = TC__L1_OVERHEAD + klen + vlen;
    uint64_t now;
    int oom_flag = 0;
    int rc = TC__FILL_INSERTED;

    if (need > l1->max_bytes || klen > UINT32_MAX || vlen > UINT32_MAX)
        return TC__FILL_NOFIT;
    /* Build the entry outside the lock. */
    e = malloc(offsetof(struct tc_value, data) + klen + vlen);
    if (!e)
        return TC__FILL_NOMEM;
    memset(e, 0, offsetof(struct tc_value, data));
    atomic_init(&e->refs, 1); /* the table's reference */
    e->vlen = (uint32_t)vlen;
    e->meta = (expires_ns > l1->epoch_ns
                   ? (expires_ns - l1->epoch_ns) / 1000000ULL
                   : 0) << 1;
    memcpy(e->data, key, klen);
    memcpy(e->data + klen, val, vlen);

    now = tc__now_ns();
    pthread_mutex_lock(&s->lock);
    if (s->gen[slot_of(h)] != gen) {
        s->fills_skipped++;
        rc = TC__FILL_STALE;
        goto out;
    }
    HASH_FIND_BYHASHVALUE(hh, s->table, key, (unsigned)klen, (unsigned)h, old);
    if (old)
        unlink_entry(s, old, &dead);
    while (s->bytes + need > l1->max_bytes || s->entries + 1 > l1->max_entries)
        if (!evict_one(l1, s, now, &dead))
            break;
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, s->table, e->data, (unsigned)klen,
                                (unsigned)h, e);
    if (oom_flag) {
        rc = TC__FILL_NOMEM;
        goto out;
    }
    s->bytes += need;
    s->entries++;
    if (flags & TC__FILL_BUMP)
        s->gen[slot_of(h)]++;
    if (ref) {
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        *ref = e;
    }
    e = NULL;
out:
    pthread_mutex_unlock(&s->lock);
    free(e);
    release_chain(dead);
    return rc;
}

uint64_t tc__l1_invalidate_key(tc__l1 *l1, uint64_t h, const void *key,
                               size_t klen)
{
    shard *s = shard_of(l1, h);
    struct tc_value *e, *dead = NULL;
    uint64_t g;
    pthread_mutex_lock(&s->lock);
    HASH_FIND_BYHASHVALUE(hh, s->table, key, (unsigned)klen, (unsigned)h, e);
    if (e)
        unlink_entry(s, e, &dead);
    g = ++s->gen[slot_of(h)];
    pthread_mutex_unlock(&s->lock);
    release_chain(dead);
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

static size_t drop_matching(tc__l1 *l1, match_fn fn, const void *arg,
                            size_t alen)
{
    size_t n = 0;
    for (unsigned i = 0; i < l1->nshards; i++) {
        shard *s = &l1->shards[i];
        struct tc_value *e, *tmp, *dead = NULL;
        pthread_mutex_lock(&s->lock);
        HASH_ITER(hh, s->table, e, tmp) {
            if (fn(arg, alen, e->data, e->hh.keylen)) {
                unlink_entry(s, e, &dead);
                n++;
            }
        }
        for (unsigned g = 0; g < TC__GEN_SLOTS; g++)
            s->gen[g]++;
        pthread_mutex_unlock(&s->lock);
        release_chain(dead);
    }
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
        out->l1_hits += s->hits;
        out->l1_misses += s->misses;
        out->l1_entries += s->entries;
        out->l1_bytes += s->bytes;
        out->l1_evictions += s->evictions;
        out->l1_expirations += s->expirations;
        out->fills_skipped += s->fills_skipped;
        pthread_mutex_unlock(&s->lock);
    }
}
