/* Redis-style glob matching, for pattern invalidation of L1. */
#include "glob.h"

/* Redis-style glob: *, ?, [set], [^set], [a-z], backslash escapes. Written
 * iteratively with one backtrack point for '*', so it cannot recurse deeply
 * on hostile patterns. */
static int class_match(const char **pp, const char *pend, char c)
{
    const char *p = *pp + 1;
    int neg = 0, hit = 0;
    if (p < pend && *p == '^') {
        neg = 1;
        p++;
    }
    while (p < pend && *p != ']') {
        if (*p == '\\' && p + 1 < pend) {
            p++;
            if (*p == c)
                hit = 1;
        } else if (p + 2 < pend && p[1] == '-' && p[2] != ']') {
            char lo = p[0], hi = p[2];
            if (lo > hi) {
                char t = lo;
                lo = hi;
                hi = t;
            }
            if (c >= lo && c <= hi)
                hit = 1;
            p += 2;
        } else if (*p == c) {
            hit = 1;
        }
        p++;
    }
    *pp = p < pend ? p + 1 : pend; /* past ']' (an unclosed set ends it) */
    return neg ? !hit : hit;
}

int tc__glob_match(const char *pat, size_t plen, const char *s, size_t slen)
{
    const char *p = pat, *pend = pat + plen, *send = s + slen;
    const char *star_p = NULL, *star_s = NULL;
    while (s < send) {
        if (p < pend && *p == '*') {
            while (p < pend && *p == '*')
                p++;
            if (p == pend)
                return 1;
            star_p = p;
            star_s = s;
            continue;
        }
        if (p < pend) {
            const char *np = p;
            int ok;
            if (*p == '?') {
                ok = 1;
                np = p + 1;
            } else if (*p == '[') {
                ok = class_match(&np, pend, *s);
            } else if (*p == '\\' && p + 1 < pend) {
                ok = p[1] == *s;
                np = p + 2;
            } else {
                ok = *p == *s;
                np = p + 1;
            }
            if (ok) {
                p = np;
                s++;
                continue;
            }
        }
        if (!star_p)
            return 0;
        p = star_p;
        s = ++star_s;
    }
    while (p < pend && *p == '*')
        p++;
    return p == pend;
}
