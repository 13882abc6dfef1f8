/* Redis-style glob matching (the syntax of SCAN MATCH and PSUBSCRIBE).
 * Pure function, no state: callable from any thread. */
#ifndef TC_GLOB_H
#define TC_GLOB_H

#include <stddef.h>

/** 1 when [s, s+slen) matches the pattern [pat, pat+plen): *, ?, [set],
 *  [^set], [a-z], backslash escapes. Iterative with one backtrack point,
 *  so hostile patterns cannot recurse; O(plen * slen) at worst. */
int tc__glob_match(const char *pat, size_t plen, const char *s, size_t slen);

#endif
