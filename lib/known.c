/* The last-known store (see known.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (oom_flag = 1)
#include <uthash.h>

#include "known.h"
#include "l1.h"

#define KNOWN_SHARDS 16

/* A record: every field is guarded by its shard's mutex. */
typedef struct krec {
    UT_hash_handle hh;
    struct krec *older, *newer; /* FIFO by last update */
    struct tc_value *value;     /* the record's reference; NULL: negative */
    uint64_t gen, known_ns, expires_ns, ttl_ms;
    tc__stamps stamps;
    size_t bytes;               /* charged to the shard */
    int refreshing;
    uint64_t retry_ns;          /* no refresh claim before (tc__now_ns) */
    size_t klen;
    char key[];
} krec;

typedef struct kshard {
    pthread_mutex_t mu; /* guards everything below and the records */
    krec *table;
    krec *oldest, *newest;
    size_t entries, bytes;
} __attribute__((aligned(64))) kshard;

struct tc__known {
    kshard shards[KNOWN_SHARDS];
    size_t max_entries, max_bytes; /* per shard; immutable after create */
};

tc__known *tc__known_create(size_t max_entries, size_t max_bytes)
{
    tc__known *k;
    if (posix_memalign((void **)&k, 64, sizeof(*k)))
        return NULL;
    memset(k, 0, sizeof(*k));
    for (int i = 0; i < KNOWN_SHARDS; i++)
        pthread_mutex_init(&k->shards[i].mu, NULL);
    k->max_entries = max_entries / KNOWN_SHARDS ? max_entries / KNOWN_SHARDS
                                                : 1;
    k->max_bytes = max_bytes / KNOWN_SHARDS;
    return k;
}

static void rec_free(krec *r)
{
    tc_value_release(r->value);
    free(r);
}

void tc__known_destroy(tc__known *k)
{
    if (!k)
        return;
    for (int i = 0; i < KNOWN_SHARDS; i++) {
        kshard *s = &k->shards[i];
        krec *r, *tmp;
        HASH_ITER(hh, s->table, r, tmp) {
            HASH_DELETE(hh, s->table, r);
            rec_free(r);
        }
        pthread_mutex_destroy(&s->mu);
    }
    free(k);
}

static kshard *shard_of(tc__known *k, uint64_t h)
{
    return &k->shards[(h >> 20) % KNOWN_SHARDS];
}

/* FIFO links (shard lock held). */
static void fifo_unlink(kshard *s, krec *r)
{
    if (r->older)
        r->older->newer = r->newer;
    else
        s->oldest = r->newer;
    if (r->newer)
        r->newer->older = r->older;
    else
        s->newest = r->older;
    r->older = r->newer = NULL;
}

static void fifo_push(kshard *s, krec *r)
{
    r->older = s->newest;
    r->newer = NULL;
    if (s->newest)
        s->newest->newer = r;
    else
        s->oldest = r;
    s->newest = r;
}

/* Unlink a record (shard lock held); the caller frees it outside. */
static void unlink_rec(kshard *s, krec *r)
{
    HASH_DELETE(hh, s->table, r);
    fifo_unlink(s, r);
    s->entries--;
    s->bytes -= r->bytes;
}

static krec *find(kshard *s, uint64_t h, const void *key, size_t klen)
{
    krec *r;
    HASH_FIND_BYHASHVALUE(hh, s->table, key, (unsigned)klen, (unsigned)h, r);
    return r;
}

int tc__known_put(tc__known *k, uint64_t h, const void *key, size_t klen,
                  struct tc_value *value, uint64_t gen,
                  const tc__stamps *stamps, uint64_t known_ns,
                  uint64_t expires_ns, uint64_t ttl_ms)
{
    kshard *s = shard_of(k, h);
    size_t bytes = sizeof(krec) + klen + (value ? tc_value_len(value) : 0);
    krec *r = calloc(1, sizeof(*r) + klen), *old, *dead = NULL, *evicted;
    int oom_flag = 0;
    if (!r)
        return -1;
    memcpy(r->key, key, klen);
    r->klen = klen;
    if (value)
        atomic_fetch_add_explicit(&value->refs, 1, memory_order_relaxed);
    r->value = value;
    r->gen = gen;
    r->stamps = *stamps;
    r->known_ns = known_ns;
    r->expires_ns = expires_ns;
    r->ttl_ms = ttl_ms;
    r->bytes = bytes;
    pthread_mutex_lock(&s->mu);
    if ((old = find(s, h, key, klen))) {
        r->refreshing = old->refreshing;
        r->retry_ns = old->retry_ns;
        unlink_rec(s, old);
        dead = old;
    }
    if (bytes > k->max_bytes) {
        pthread_mutex_unlock(&s->mu);
        if (dead)
            rec_free(dead);
        rec_free(r);
        return 0; /* too large to keep: nothing known */
    }
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, s->table, r->key, (unsigned)klen,
                                (unsigned)h, r);
    if (oom_flag) {
        pthread_mutex_unlock(&s->mu);
        if (dead)
            rec_free(dead);
        rec_free(r);
        return -1;
    }
    fifo_push(s, r);
    s->entries++;
    s->bytes += bytes;
    /* Evict oldest first; unlinked ones are chained through `older` and
     * freed outside the lock. */
    evicted = NULL;
    while ((s->entries > k->max_entries || s->bytes > k->max_bytes) &&
           s->oldest != r) {
        krec *o = s->oldest;
        unlink_rec(s, o);
        o->older = evicted;
        evicted = o;
    }
    pthread_mutex_unlock(&s->mu);
    if (dead)
        rec_free(dead);
    while (evicted) {
        krec *next = evicted->older;
        rec_free(evicted);
        evicted = next;
    }
    return 0;
}

int tc__known_get(tc__known *k, uint64_t h, const void *key, size_t klen,
                  tc__known_info *out)
{
    kshard *s = shard_of(k, h);
    krec *r;
    pthread_mutex_lock(&s->mu);
    if ((r = find(s, h, key, klen))) {
        out->value = r->value;
        if (r->value)
            atomic_fetch_add_explicit(&r->value->refs, 1,
                                      memory_order_relaxed);
        out->gen = r->gen;
        out->stamps = r->stamps;
        out->known_ns = r->known_ns;
        out->expires_ns = r->expires_ns;
        out->ttl_ms = r->ttl_ms;
    }
    pthread_mutex_unlock(&s->mu);
    return r != NULL;
}

void tc__known_drop(tc__known *k, uint64_t h, const void *key, size_t klen)
{
    kshard *s = shard_of(k, h);
    krec *r;
    pthread_mutex_lock(&s->mu);
    if ((r = find(s, h, key, klen)))
        unlink_rec(s, r);
    pthread_mutex_unlock(&s->mu);
    if (r)
        rec_free(r);
}

int tc__known_claim_refresh(tc__known *k, uint64_t h, const void *key,
                            size_t klen, uint64_t gen, uint64_t now_ns)
{
    kshard *s = shard_of(k, h);
    krec *r;
    int claimed = 0;
    pthread_mutex_lock(&s->mu);
    if ((r = find(s, h, key, klen)) && r->gen == gen && !r->refreshing &&
        now_ns >= r->retry_ns)
        claimed = r->refreshing = 1;
    pthread_mutex_unlock(&s->mu);
    return claimed;
}

void tc__known_end_refresh(tc__known *k, uint64_t h, const void *key,
                           size_t klen, uint64_t retry_ns)
{
    kshard *s = shard_of(k, h);
    krec *r;
    pthread_mutex_lock(&s->mu);
    if ((r = find(s, h, key, klen))) {
        r->refreshing = 0;
        r->retry_ns = retry_ns;
    }
    pthread_mutex_unlock(&s->mu);
}
