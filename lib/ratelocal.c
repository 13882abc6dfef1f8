/* The local (per-process) rate limiter: see ratelocal.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ratelocal.h"

#define SETS 1024
#define WAYS 4
#define LOCKS 64

typedef struct entry {
    uint64_t id;        /* 0: free */
    uint64_t limit, window_ms;
    uint64_t start_ms;  /* start of the current window */
    uint64_t last_ms;   /* last request: for eviction */
    uint32_t cur, prev; /* counts in the current and previous window */
} entry;

struct tc__ratelocal {
    pthread_mutex_t locks[LOCKS];
    atomic_uint_fast64_t evictions;
    entry e[SETS * WAYS]; /* set s is e[s*WAYS .. s*WAYS+WAYS-1] */
};

tc__ratelocal *tc__ratelocal_create(void)
{
    tc__ratelocal *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    for (int i = 0; i < LOCKS; i++)
        pthread_mutex_init(&t->locks[i], NULL);
    return t;
}

void tc__ratelocal_destroy(tc__ratelocal *t)
{
    if (!t)
        return;
    for (int i = 0; i < LOCKS; i++)
        pthread_mutex_destroy(&t->locks[i]);
    free(t);
}

uint64_t tc__ratelocal_evictions(tc__ratelocal *t)
{
    return t ? atomic_load(&t->evictions) : 0;
}

/* The entry for `id` in `set` (locked), claiming a free, idle or least
 * recently used one when it is not there. */
static entry *find(tc__ratelocal *t, entry *set, uint64_t id, uint64_t now)
{
    entry *victim = NULL;
    for (int i = 0; i < WAYS; i++)
        if (set[i].id == id)
            return &set[i];
    for (int i = 0; i < WAYS && !victim; i++) {
        /* Free, or idle for two windows: its counts are all zero by now. */
        if (!set[i].id || set[i].last_ms + 2 * set[i].window_ms <= now)
            victim = &set[i];
    }
    if (!victim) {
        victim = &set[0];
        for (int i = 1; i < WAYS; i++)
            if (set[i].last_ms < victim->last_ms)
                victim = &set[i];
        atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
    }
    memset(victim, 0, sizeof(*victim));
    victim->id = id;
    return victim;
}

void tc__ratelocal_decide(tc__ratelocal *t, uint64_t id, uint64_t limit,
                          uint64_t window_ms, tc_rate_algo algo,
                          uint64_t now_ms, tc_rate_result *out)
{
    size_t s = (size_t)(id % SETS);
    pthread_mutex_t *mu = &t->locks[s % LOCKS];
    uint64_t used, elapsed, prev_part = 0;
    entry *e;

    memset(out, 0, sizeof(*out));
    out->fallback = 1;
    if (!id)
        id = 1; /* 0 marks a free entry */
    pthread_mutex_lock(mu);
    e = find(t, &t->e[s * WAYS], id, now_ms);
    if (now_ms < e->last_ms)
        now_ms = e->last_ms; /* another thread read the clock later */
    if (e->limit != limit || e->window_ms != window_ms) {
        /* New, or the same key with another limit: start afresh. */
        e->limit = limit, e->window_ms = window_ms;
        e->start_ms = now_ms, e->cur = e->prev = 0;
    }
    if (now_ms - e->start_ms >= window_ms) {
        uint64_t k = (now_ms - e->start_ms) / window_ms;
        e->prev = k == 1 ? e->cur : 0;
        e->cur = 0;
        e->start_ms += k * window_ms;
    }
    elapsed = now_ms - e->start_ms;
    /* prev <= TC_RATE_LIMIT_MAX and window <= TC_TTL_MAX_MS: no overflow. */
    if (algo == TC_RATE_SLIDING && e->prev)
        prev_part = (e->prev * (window_ms - elapsed) + window_ms - 1) /
                    window_ms;
    used = prev_part + e->cur;
    if (used < limit) {
        out->allowed = 1;
        e->cur++;
        used++;
    }
    e->last_ms = now_ms;
    out->remaining = used < limit ? limit - used : 0;
    out->reset_ms = used ? window_ms - elapsed : 0;
    pthread_mutex_unlock(mu);
}
