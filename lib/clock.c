/* The library's clock (see clock.h for why CLOCK_BOOTTIME). */
#include <errno.h>

#include "clock.h"

int tc__cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc)
        return rc;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

int tc__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                        uint64_t deadline_ns)
{
    uint64_t now = tc__now_ns(), left, abs;
    struct timespec mono, ts;
    if (now >= deadline_ns)
        return ETIMEDOUT;
    left = deadline_ns - now;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    abs = tc__sat_add((uint64_t)mono.tv_sec * 1000000000ULL +
                          (uint64_t)mono.tv_nsec, left);
    if (abs > (uint64_t)INT64_MAX)
        abs = (uint64_t)INT64_MAX; /* time_t range: "practically never" */
    ts.tv_sec = (time_t)(abs / 1000000000ULL);
    ts.tv_nsec = (long)(abs % 1000000000ULL);
    pthread_cond_timedwait(cv, mu, &ts);
    return tc__now_ns() >= deadline_ns ? ETIMEDOUT : 0;
}
