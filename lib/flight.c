#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (oom_flag = 1)

#include "flight.h"

struct tc__flight {
    UT_hash_handle hh;
    unsigned shard;
    unsigned refs;          /* shard mutex */
    uint64_t gen;           /* immutable: L1 generation when it started */
    int detached;           /* shard mutex: replaced in the table */
    int done;               /* shard mutex */
    tc_result result;       /* shard mutex, once done */
    struct tc_value *value; /* flight's own reference, once done */
    pthread_cond_t cv;
    char key[];
};

typedef struct fshard {
    pthread_mutex_t mu;
    tc__flight *table; /* flights still in progress */
} __attribute__((aligned(64))) fshard;

struct tc__flights {
    fshard *shards;
    unsigned n;
};

tc__flights *tc__flights_create(unsigned nshards)
{
    tc__flights *fl = calloc(1, sizeof(*fl));
    if (!fl)
        return NULL;
    if (posix_memalign((void **)&fl->shards, 64, sizeof(fshard) * nshards)) {
        free(fl);
        return NULL;
    }
    memset(fl->shards, 0, sizeof(fshard) * nshards);
    for (unsigned i = 0; i < nshards; i++)
        pthread_mutex_init(&fl->shards[i].mu, NULL);
    fl->n = nshards;
    return fl;
}

void tc__flights_destroy(tc__flights *fl)
{
    if (!fl)
        return;
    for (unsigned i = 0; i < fl->n; i++)
        pthread_mutex_destroy(&fl->shards[i].mu);
    free(fl->shards);
    free(fl);
}

int tc__flight_join(tc__flights *fl, uint64_t h, const void *key, size_t klen,
                    uint64_t gen, tc__flight **out)
{
    unsigned si = (unsigned)(h >> 40) & (fl->n - 1);
    fshard *s = &fl->shards[si];
    tc__flight *f;
    int oom_flag = 0;

    pthread_mutex_lock(&s->mu);
    HASH_FIND_BYHASHVALUE(hh, s->table, key, (unsigned)klen, (unsigned)h, f);
    if (f && f->gen == gen) {
        f->refs++;
        pthread_mutex_unlock(&s->mu);
        *out = f;
        return 0;
    }
    if (f) {
        /* It started before an invalidation we have seen: its value may be
         * older than a write that returned before we started. Leave it to
         * its followers and lead a new flight. */
        HASH_DELETE(hh, s->table, f);
        f->detached = 1;
    }
    f = calloc(1, sizeof(*f) + klen + 1);
    if (!f) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    memcpy(f->key, key, klen);
    f->shard = si;
    f->gen = gen;
    f->refs = 1;
    tc__cond_init(&f->cv);
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, s->table, f->key, (unsigned)klen,
                                (unsigned)h, f);
    pthread_mutex_unlock(&s->mu);
    if (oom_flag) {
        pthread_cond_destroy(&f->cv);
        free(f);
        return -1;
    }
    *out = f;
    return 1;
}

/* Drop one reference (shard mutex held); returns the flight to free. */
static tc__flight *unref(tc__flight *f)
{
    return --f->refs == 0 ? f : NULL;
}

static void flight_free(tc__flight *f)
{
    if (!f)
        return;
    tc_value_release(f->value);
    pthread_cond_destroy(&f->cv);
    free(f);
}

void tc__flight_finish(tc__flights *fl, tc__flight *f, tc_result r,
                       struct tc_value *v)
{
    fshard *s = &fl->shards[f->shard];
    tc__flight *dead;
    if (v)
        atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    pthread_mutex_lock(&s->mu);
    if (!f->detached)
        HASH_DELETE(hh, s->table, f);
    f->result = r;
    f->value = v;
    f->done = 1;
    pthread_cond_broadcast(&f->cv);
    dead = unref(f);
    pthread_mutex_unlock(&s->mu);
    flight_free(dead);
}

void tc__flight_ref(tc__flights *fl, tc__flight *f)
{
    fshard *s = &fl->shards[f->shard];
    pthread_mutex_lock(&s->mu);
    f->refs++;
    pthread_mutex_unlock(&s->mu);
}

void tc__flight_leave(tc__flights *fl, tc__flight *f)
{
    fshard *s = &fl->shards[f->shard];
    tc__flight *dead;
    pthread_mutex_lock(&s->mu);
    dead = unref(f);
    pthread_mutex_unlock(&s->mu);
    flight_free(dead);
}

tc_result tc__flight_wait(tc__flights *fl, tc__flight *f,
                          struct tc_value **out)
{
    tc_result r;
    tc__flight_wait_until(fl, f, UINT64_MAX, &r, out);
    return r;
}

int tc__flight_wait_until(tc__flights *fl, tc__flight *f, uint64_t deadline,
                          tc_result *res, struct tc_value **out)
{
    fshard *s = &fl->shards[f->shard];
    tc__flight *dead;
    tc_result r;
    pthread_mutex_lock(&s->mu);
    while (!f->done) {
        if (deadline == UINT64_MAX) {
            pthread_cond_wait(&f->cv, &s->mu);
        } else {
            if (tc__now_ns() >= deadline) {
                pthread_mutex_unlock(&s->mu);
                return 0;
            }
            tc__cond_wait_until(&f->cv, &s->mu, deadline);
        }
    }
    r = f->result;
    if (r == TC_OK && f->value) {
        atomic_fetch_add_explicit(&f->value->refs, 1, memory_order_relaxed);
        *out = f->value;
    }
    dead = unref(f);
    pthread_mutex_unlock(&s->mu);
    flight_free(dead);
    *res = r;
    return 1;
}
