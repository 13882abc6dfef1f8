#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "parse.h"

static const char *const kinds[] = {"key", "keys", "prefix", "pattern", "all"};


int tc__msg_parse(const char *buf, size_t len, tc__msg *m, const char **why)
{
    const char *p = buf, *e = buf + len, *sp;
    size_t klen;
    int kind = -1;

    memset(m, 0, sizeof(*m));
    if (len < 3 || memcmp(buf, "v1 ", 3) != 0) {
        *why = len >= 2 && buf[0] == 'v' ? "unsupported version"
                                         : "not a tiercache message";
        return -1;
    }
    p += 3;
    sp = memchr(p, ' ', (size_t)(e - p));
    klen = (size_t)((sp ? sp : e) - p);
    for (int i = 0; i < 5; i++)
        if (strlen(kinds[i]) == klen && memcmp(p, kinds[i], klen) == 0)
            kind = i;
    if (kind < 0) {
        *why = "unknown kind";
        return -1;
    }
    m->kind = (tc__msg_kind)kind;
    p = sp ? sp + 1 : e;
    if (p < e && *p == '@') { /* @origin:seq:ts or @- */
        const char *c1, *c2;
        sp = memchr(p, ' ', (size_t)(e - p));
        if (!sp && m->kind != TC__MSG_ALL) {
            *why = "meta token without a body";
            return -1;
        }
        if (!sp)
            sp = e;
        if (!(sp - p == 2 && p[1] == '-')) {
            c1 = memchr(p, ':', (size_t)(sp - p));
            c2 = c1 ? memchr(c1 + 1, ':', (size_t)(sp - c1 - 1)) : NULL;
            if (!c2 || c1 - p - 1 < 1 || c1 - p - 1 > TC__ORIGIN_MAX ||
                tc__parse_u64(c1 + 1, (size_t)(c2 - c1 - 1), 0, UINT64_MAX,
                              &m->seq) ||
                tc__parse_u64(c2 + 1, (size_t)(sp - c2 - 1), 0, UINT64_MAX,
                              &m->ts_us)) {
                *why = "malformed @origin:seq:ts";
                return -1;
            }
            memcpy(m->origin, p + 1, (size_t)(c1 - p - 1));
        }
        p = sp < e ? sp + 1 : e;
    }
    m->body = p;
    m->body_len = (size_t)(e - p);
    if (m->kind != TC__MSG_ALL && m->body_len == 0) {
        *why = "empty body";
        return -1;
    }
    if (m->kind == TC__MSG_KEYS) { /* validate the whole list up front */
        size_t pos = 0;
        const char *k;
        int rc;
        while ((rc = tc__msg_next_key(m, &pos, &k, &klen)) == 1) {
        }
        if (rc < 0) {
            *why = "malformed key list";
            return -1;
        }
    }
    return 0;
}

int tc__msg_next_key(const tc__msg *m, size_t *pos, const char **key,
                     size_t *klen)
{
    const char *p = m->body + *pos, *e = m->body + m->body_len, *colon;
    uint64_t n;
    if (p == e)
        return 0;
    colon = memchr(p, ':', (size_t)(e - p) < 21 ? (size_t)(e - p) : 21);
    if (!colon ||
        tc__parse_u64(p, (size_t)(colon - p), 0, UINT64_MAX, &n) ||
        n > (uint64_t)(e - colon - 1))
        return -1;
    *key = colon + 1;
    *klen = (size_t)n;
    *pos = (size_t)(colon + 1 + n - m->body);
    return 1;
}

char *tc__msg_encode(tc__msg_kind kind, const char *origin, uint64_t seq,
                     uint64_t ts_us, size_t n, const void *const *keys,
                     const size_t *klens, size_t *len)
{
    size_t cap = 3 + 8 + TC__ORIGIN_MAX + 2 * 21 + 8, off;
    char *buf;
    for (size_t i = 0; i < n; i++)
        cap += klens[i] + 22;
    buf = malloc(cap);
    if (!buf)
        return NULL;
    off = (size_t)snprintf(buf, cap, "v1 %s @%s:%llu:%llu ", kinds[kind],
                           origin, (unsigned long long)seq,
                           (unsigned long long)ts_us);
    for (size_t i = 0; i < n; i++) {
        if (kind == TC__MSG_KEYS)
            off += (size_t)snprintf(buf + off, cap - off, "%zu:", klens[i]);
        memcpy(buf + off, keys[i], klens[i]);
        off += klens[i];
    }
    *len = off;
    return buf;
}
