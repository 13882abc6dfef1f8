/* Hashing and clocks shared by the L1 store and the facade. */
#include <string.h>
#include <time.h>

#include "l1.h"

static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

__extension__ typedef unsigned __int128 tc__u128;

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    tc__u128 r = (tc__u128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* A multiply-mix hash in the style of wyhash: 8 bytes per step, full
 * avalanche at the end. Quality matters: the top bits pick the shard, the
 * low 32 the uthash bucket, bits 32..37 the generation slot. */
uint64_t tc__hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL;
    uint64_t h = 0x8bb84b93962eacc9ULL ^ ((uint64_t)len * k0);
    size_t i = 0;
    for (; i + 8 <= len; i += 8)
        h = mix(h ^ rd64(p + i), k1);
    if (i < len) {
        uint64_t t = 0;
        memcpy(&t, p + i, len - i);
        h = mix(h ^ t ^ ((uint64_t)(len - i) << 56), k1);
    }
    return mix(h ^ (h >> 31), k0) ^ len;
}
