/*
 * Strict writes' acknowledgement registry. A strict writer registers a
 * waiter (a fresh seq) before it publishes; every instance that applies the
 * message acknowledges "<seq> <its id>" on the writer's ack channel; the
 * writer waits until every instance Redis counted as possibly serving L1
 * has acknowledged, or until its lease has passed (see lease.c for why that
 * bound is always safe).
 *
 * Ownership: the waiter list and each waiter's ack set are protected by
 * the registry mutex; a waiter is freed by the writer that registered it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"
#include "clock.h"
#include "parse.h"

typedef struct ack_id {
    char id[TC__ORIGIN_MAX + 1];
} ack_id;

struct tc__strict_wait {
    uint64_t seq;
    ack_id *acked;      /* registry mu: distinct instances that acknowledged */
    size_t nacked, cap; /* registry mu */
    struct tc__strict_wait *next;
};

int tc__strict_init(tc__strict_registry *s)
{
    memset(s, 0, sizeof(*s));
    if (pthread_mutex_init(&s->mu, NULL))
        return -1;
    if (tc__cond_init(&s->cv)) {
        pthread_mutex_destroy(&s->mu);
        return -1;
    }
    return 0;
}

void tc__strict_shutdown(tc__strict_registry *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void tc__strict_destroy(tc__strict_registry *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

static int has_acked(const tc__strict_wait *w, const char *id, size_t len)
{
    for (size_t i = 0; i < w->nacked; i++)
        if (strlen(w->acked[i].id) == len && memcmp(w->acked[i].id, id, len) == 0)
            return 1;
    return 0;
}

void tc__strict_ack(tc__strict_registry *s, uint64_t seq, const char *id,
                    size_t len)
{
    if (len == 0 || len > TC__ORIGIN_MAX)
        return;
    pthread_mutex_lock(&s->mu);
    for (tc__strict_wait *w = s->waiters; w; w = w->next) {
        if (w->seq != seq)
            continue;
        if (!has_acked(w, id, len)) {
            if (w->nacked == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 8;
                ack_id *a = realloc(w->acked, cap * sizeof(*a));
                if (!a)
                    break; /* the writer then waits for the lease: safe */
                w->acked = a;
                w->cap = cap;
            }
            memcpy(w->acked[w->nacked].id, id, len);
            w->acked[w->nacked++].id[len] = '\0';
            pthread_cond_broadcast(&s->cv);
        }
        break;
    }
    pthread_mutex_unlock(&s->mu);
}

/* "<seq> <instance id>"; anything else is ignored. */
void tc__strict_on_ack_message(tc__strict_registry *s, const char *buf,
                               size_t len)
{
    const char *sp = memchr(buf, ' ', len);
    uint64_t seq;
    if (!sp || tc__parse_u64(buf, (size_t)(sp - buf), 0, UINT64_MAX, &seq))
        return;
    tc__strict_ack(s, seq, sp + 1, len - (size_t)(sp + 1 - buf));
}

uint64_t tc__bus_strict_begin(tc__bus *bus, tc__strict_wait **out)
{
    tc__strict_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return 0;
    w->seq = atomic_fetch_add(&bus->seq, 1) + 1;
    pthread_mutex_lock(&bus->strict.mu);
    w->next = bus->strict.waiters;
    bus->strict.waiters = w;
    pthread_mutex_unlock(&bus->strict.mu);
    *out = w;
    return w->seq;
}

/* Has every instance in `members` acknowledged? (registry mu held) */
static int all_acked(const tc__strict_wait *w, const redisReply *members)
{
    if (!members)
        return 0;
    for (size_t i = 0; i < members->elements; i++) {
        const redisReply *m = members->element[i];
        if (m->type != REDIS_REPLY_STRING || !has_acked(w, m->str, m->len))
            return 0;
    }
    return 1;
}

int tc__bus_strict_wait(tc__bus *bus, tc__strict_wait *w,
                        const redisReply *members, uint64_t deadline_ns)
{
    tc__strict_registry *s = &bus->strict;
    int ok;
    atomic_fetch_add(&bus->strict_waits, 1);
    pthread_mutex_lock(&s->mu);
    while (!all_acked(w, members) && !s->stopping)
        if (tc__cond_wait_until(&s->cv, &s->mu, deadline_ns) == ETIMEDOUT)
            break;
    ok = all_acked(w, members);
    for (tc__strict_wait **pp = &s->waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    free(w->acked);
    free(w);
    if (!ok && deadline_ns)
        atomic_fetch_add(&bus->strict_expiries, 1);
    return ok;
}
