/* Signals: see signals.h. */
#include <errno.h>
#include <time.h>

#include "signals.h"

int tc__thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int rc;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void tc__sigpipe_enter(tc__sigpipe_guard *g)
{
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
    g->was_blocked = sigismember(&g->old, SIGPIPE) == 1;
}

void tc__sigpipe_leave(tc__sigpipe_guard *g)
{
    if (!g->was_pending) {
        sigset_t pipe, pending;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE) == 1) {
            /* Ours: consume it before unblocking. */
            struct timespec zero = {0, 0};
            int rc;
            do
                rc = sigtimedwait(&pipe, NULL, &zero);
            while (rc < 0 && errno == EINTR);
        }
    }
    if (!g->was_blocked)
        pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}
