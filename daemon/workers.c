#include "workers.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"

struct tcd_workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tcd_job *qhead, *qtail; /* mu */
    unsigned backlog;       /* mu */
    int stop;               /* mu */
    pthread_mutex_t done_mu;
    tcd_job *dhead, *dtail; /* done_mu */
    tcd_work_run run;
    struct ev_loop *loop;
    ev_async *async;
    unsigned n, started;
    pthread_t *threads;
};

static void *worker_main(void *arg)
{
    tcd_workers *w = arg;
    for (;;) {
        tcd_job *job;
        pthread_mutex_lock(&w->mu);
        while (!w->qhead && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        job = w->qhead;
        if (!job) { /* stop and nothing left */
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        w->qhead = job->qnext;
        if (!w->qhead)
            w->qtail = NULL;
        w->backlog--;
        pthread_mutex_unlock(&w->mu);

        job->qnext = NULL;
        w->run(job);
        tcd_workers_complete(w, job);
    }
}

void tcd_workers_complete(tcd_workers *w, tcd_job *job)
{
    job->qnext = NULL;
    pthread_mutex_lock(&w->done_mu);
    if (w->dtail)
        w->dtail->qnext = job;
    else
        w->dhead = job;
    w->dtail = job;
    pthread_mutex_unlock(&w->done_mu);
    ev_async_send(w->loop, w->async);
}

tcd_workers *tcd_workers_create(unsigned n, tcd_work_run run,
                                struct ev_loop *loop, ev_async *async)
{
    tcd_workers *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->threads = calloc(n, sizeof(pthread_t));
    if (!w->threads) {
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_mutex_init(&w->done_mu, NULL);
    w->run = run;
    w->loop = loop;
    w->async = async;
    w->n = n;
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
            tcd_error("cannot start worker thread %u of %u", i + 1, n);
            tcd_workers_drain(w);
            tcd_workers_destroy(w);
            return NULL;
        }
        w->started++;
    }
    return w;
}

void tcd_workers_submit(tcd_workers *w, tcd_job *job)
{
    job->qnext = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->qtail)
        w->qtail->qnext = job;
    else
        w->qhead = job;
    w->qtail = job;
    w->backlog++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

tcd_job *tcd_workers_take_done(tcd_workers *w)
{
    tcd_job *list;
    pthread_mutex_lock(&w->done_mu);
    list = w->dhead;
    w->dhead = w->dtail = NULL;
    pthread_mutex_unlock(&w->done_mu);
    return list;
}

unsigned tcd_workers_backlog(tcd_workers *w)
{
    unsigned n;
    pthread_mutex_lock(&w->mu);
    n = w->backlog;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void tcd_workers_drain(tcd_workers *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < w->started; i++)
        pthread_join(w->threads[i], NULL);
    w->started = 0;
}

void tcd_workers_destroy(tcd_workers *w)
{
    if (!w)
        return;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->done_mu);
    free(w->threads);
    free(w);
}
