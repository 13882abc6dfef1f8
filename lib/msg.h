/*
 * Invalidation messages: the text format published on the channel (README,
 * "Invalidation messages"). Pure functions, no state, no locks.
 *
 *   v1 <kind> [@<origin>:<seq>:<ts_us> ]<body>
 *
 * kind: key (body = one key), keys (body = <len>:<bytes> repeated),
 * prefix (body = prefix), pattern (body = glob), all (body ignored).
 * The meta token is optional (hand-published messages omit it; write "@- "
 * to publish by hand a key that itself starts with '@'). seq != 0 asks the
 * receivers to acknowledge to the origin (strict mode). The body is every
 * byte after the header, so keys may hold spaces, newlines and NULs.
 */
#ifndef TC_MSG_H
#define TC_MSG_H

#include <stddef.h>
#include <stdint.h>

typedef enum tc__msg_kind {
    TC__MSG_KEY,
    TC__MSG_KEYS,
    TC__MSG_PREFIX,
    TC__MSG_PATTERN,
    TC__MSG_ALL
} tc__msg_kind;

#define TC__ORIGIN_MAX 32

typedef struct tc__msg {
    tc__msg_kind kind;
    char origin[TC__ORIGIN_MAX + 1]; /* "" when absent */
    uint64_t seq;
    uint64_t ts_us;                  /* origin's CLOCK_REALTIME, 0 if absent */
    const char *body;                /* borrowed from the parsed buffer */
    size_t body_len;
} tc__msg;

/** Parse `len` bytes; 0 on success, -1 when malformed (`why` says why). */
int tc__msg_parse(const char *buf, size_t len, tc__msg *out, const char **why);

/** Iterate the keys of a `keys` body: returns 1 and the next key, 0 at the
 *  end, -1 when malformed. `*pos` starts at 0. */
int tc__msg_next_key(const tc__msg *m, size_t *pos, const char **key,
                     size_t *klen);

/** Encode a message into a malloc'd buffer (caller frees); for
 *  TC__MSG_KEYS `n` keys are given in keys/klens, for the other kinds
 *  keys[0]/klens[0] is the body (n = 1; n = 0 for all). NULL when out of
 *  memory. */
char *tc__msg_encode(tc__msg_kind kind, const char *origin, uint64_t seq,
                     uint64_t ts_us, size_t n, const void *const *keys,
                     const size_t *klens, size_t *len);

#endif
