/*
 * Capped exponential backoff with jitter, for every reconnect loop (the L2
 * pool's reconnect thread and the bus). Plain data owned by one thread at a
 * time; no locks.
 */
#ifndef TC_BACKOFF_H
#define TC_BACKOFF_H

#include <stdint.h>

typedef struct tc__backoff {
    uint32_t min_ms, max_ms;
    uint32_t cur_ms; /* 0 = nothing failed since the last reset */
    uint64_t rng;    /* xorshift state, never 0 */
} tc__backoff;

/** Start at `min_ms`, cap at `max_ms` (min_ms >= 1). */
void tc__backoff_init(tc__backoff *b, uint32_t min_ms, uint32_t max_ms);
/** A failure: double the step (the first is min_ms), capped, and return the
 *  delay to wait, uniformly in [step/2, step] ms. */
uint32_t tc__backoff_next(tc__backoff *b);
/** A success: the next failure starts again from min_ms. */
void tc__backoff_reset(tc__backoff *b);

#endif
