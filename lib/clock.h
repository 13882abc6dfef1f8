/*
 * The library's clock for expiry, leases and deadlines.
 *
 * CLOCK_BOOTTIME: monotonic and, unlike CLOCK_MONOTONIC, it keeps counting
 * while the system is suspended. A host that resumes from suspend therefore
 * sees its L1 lease and entry expiries as lapsed, instead of serving L1 for
 * up to a lease without proof. Never stepped by wall-clock changes.
 * Pure function of the kernel clock: callable from any thread.
 */
#ifndef TC_CLOCK_H
#define TC_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define TC__CLOCK CLOCK_BOOTTIME

/** Now on TC__CLOCK, in ns. Inline: an L1 hit reads it once, and the call
 *  would be a fair share of the hit. */
static inline uint64_t tc__now_ns(void)
{
    struct timespec ts;
    clock_gettime(TC__CLOCK, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/** a + b, saturating at UINT64_MAX (deadlines "never"). */
static inline uint64_t tc__sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

/** ms -> ns, saturating (TC_TTL_NONE and huge TTLs stay "never"). */
static inline uint64_t tc__ms_to_ns(uint64_t ms)
{
    return ms > UINT64_MAX / 1000000ULL ? UINT64_MAX : ms * 1000000ULL;
}

/** The deadline `ms` from now, saturating. */
static inline uint64_t tc__deadline_ms(uint64_t ms)
{
    return tc__sat_add(tc__now_ns(), tc__ms_to_ns(ms));
}

/** Initialise a condition variable for tc__cond_wait_until(). 0 or errno. */
int tc__cond_init(pthread_cond_t *cv);

/** pthread_cond_timedwait() until `deadline_ns` on tc__now_ns()'s clock
 *  (pthread condition variables cannot wait on CLOCK_BOOTTIME: the
 *  remaining time is waited on CLOCK_MONOTONIC). `mu` held, as for
 *  pthread_cond_timedwait. Returns ETIMEDOUT once the deadline passed, else
 *  0 (a wake-up, possibly spurious: callers re-check their condition). */
int tc__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                        uint64_t deadline_ns);

#endif
