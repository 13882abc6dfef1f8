/* Negative caching in L2 (see negative.h). */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "negative.h"

tc_result tc__neg_key(const tc_cache *c, const char *pk, size_t pklen,
                      tc__pkey *out)
{
    /* On a cluster: in pk's slot, for the store script (stamps.c). */
    return tc__own_key(c, c->neg_prefix, c->neg_prefix_len, pk, pklen, 1,
                       out);
}

int tc__neg_valid(const redisReply *marker, const tc__stamps *now)
{
    size_t kl, al;
    if (!now->ok || marker->type != REDIS_REPLY_STRING)
        return 0;
    kl = strlen(now->key);
    al = strlen(now->all);
    return marker->len == kl + 1 + al &&
           memcmp(marker->str, now->key, kl) == 0 && marker->str[kl] == '\n' &&
           memcmp(marker->str + kl + 1, now->all, al) == 0;
}
