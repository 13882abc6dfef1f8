/* Reconnect backoff: see backoff.h. */
#include "backoff.h"
#include "clock.h"

void tc__backoff_init(tc__backoff *b, uint32_t min_ms, uint32_t max_ms)
{
    b->min_ms = min_ms ? min_ms : 1;
    b->max_ms = max_ms < b->min_ms ? b->min_ms : max_ms;
    b->cur_ms = 0;
    b->rng = (tc__now_ns() ^ (uint64_t)(uintptr_t)b) | 1;
}

uint32_t tc__backoff_next(tc__backoff *b)
{
    uint64_t x = b->rng;
    if (b->cur_ms == 0)
        b->cur_ms = b->min_ms;
    else
        b->cur_ms = b->cur_ms > b->max_ms / 2 ? b->max_ms : b->cur_ms * 2;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b->rng = x;
    return b->cur_ms / 2 + (uint32_t)(x % (b->cur_ms / 2 + 1));
}

void tc__backoff_reset(tc__backoff *b)
{
    b->cur_ms = 0;
}
