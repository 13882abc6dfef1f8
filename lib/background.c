/* Background loads (see background.h). */
#include <pthread.h>
#include <stdlib.h>

#include "background.h"
#include "cache.h"
#include "signals.h"

typedef struct job {
    struct job *next;
    tc__bg_fn fn;
    void *arg;
} job;

struct tc__bg {
    tc_cache *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* jobs queued, or stopping */
    pthread_cond_t left_cv; /* a thread left while tc__bg_stop() waits */
    job *head, *tail;       /* mu, as every field below */
    size_t queued, running;
    unsigned threads, idle;
    int stopping;
    int stop_waiting;       /* tc__bg_stop() waits for idle threads */
    unsigned handed;        /* references left to tc__bg_stop() to drop */
};

tc__bg *tc__bg_create(tc_cache *c)
{
    tc__bg *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->c = c;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    pthread_cond_init(&b->left_cv, NULL);
    return b;
}

static void *worker(void *p)
{
    tc__bg *b = p;
    tc_cache *c = b->c;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        job *j;
        while (!b->head && !b->stopping) {
            b->idle++;
            pthread_cond_wait(&b->cv, &b->mu);
            b->idle--;
        }
        if (!(j = b->head))
            break; /* stopping and nothing left */
        b->head = j->next;
        if (!b->head)
            b->tail = NULL;
        b->queued--;
        b->running++;
        pthread_mutex_unlock(&b->mu);
        j->fn(j->arg, 0);
        free(j);
        pthread_mutex_lock(&b->mu);
        b->running--;
    }
    b->threads--;
    if (b->stop_waiting) {
        /* Destroy is waiting for us: it drops our reference, so that the
         * handle is freed on its thread when no loader is running. */
        b->handed++;
        pthread_cond_signal(&b->left_cv);
        pthread_mutex_unlock(&b->mu);
        return NULL;
    }
    pthread_mutex_unlock(&b->mu);
    tc__cache_unref(c); /* may free b and c: the last thing we do */
    return NULL;
}

int tc__bg_submit(tc__bg *b, tc__bg_fn fn, void *arg)
{
    job *j = malloc(sizeof(*j));
    pthread_t t;
    if (!j)
        return -1;
    j->next = NULL;
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&b->mu);
    if (b->stopping || b->queued >= TC__BG_QUEUE) {
        pthread_mutex_unlock(&b->mu);
        free(j);
        return -1;
    }
    if (b->idle <= b->queued && b->threads < TC__BG_THREADS) {
        tc__cache_ref(b->c);
        if (tc__thread_create(&t, worker, b) == 0) {
            pthread_detach(t);
            b->threads++;
        } else {
            tc__cache_unref(b->c); /* not the last: the caller holds one */
            if (b->threads == 0) {
                pthread_mutex_unlock(&b->mu);
                free(j);
                return -1;
            }
        }
    }
    if (b->tail)
        b->tail->next = j;
    else
        b->head = j;
    b->tail = j;
    b->queued++;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

void tc__bg_stop(tc__bg *b)
{
    job *j;
    unsigned handed;
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    j = b->head;
    b->head = b->tail = NULL;
    b->queued = 0;
    pthread_cond_broadcast(&b->cv);
    /* Wait for the threads that run no loader to leave (a loader that
     * never returns is not waited for). */
    b->stop_waiting = 1;
    while (b->threads > b->running)
        pthread_cond_wait(&b->left_cv, &b->mu);
    b->stop_waiting = 0;
    handed = b->handed;
    b->handed = 0;
    pthread_mutex_unlock(&b->mu);
    while (handed--)
        tc__cache_unref(b->c); /* never the last: destroy holds one */
    while (j) {
        job *next = j->next;
        j->fn(j->arg, 1);
        free(j);
        j = next;
    }
}

int tc__bg_stopping(tc__bg *b)
{
    int s;
    pthread_mutex_lock(&b->mu);
    s = b->stopping;
    pthread_mutex_unlock(&b->mu);
    return s;
}

size_t tc__bg_busy(tc__bg *b)
{
    size_t n;
    if (!b)
        return 0;
    pthread_mutex_lock(&b->mu);
    n = b->queued + b->running;
    pthread_mutex_unlock(&b->mu);
    return n;
}

void tc__bg_free(tc__bg *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    pthread_cond_destroy(&b->left_cv);
    free(b);
}
