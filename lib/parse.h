/*
 * Strict parsing of numbers and booleans from text: the one parser for the
 * whole tree (configuration, environment, URLs, the daemon's flags, message
 * headers), in the spirit of Redis's string2ll. Pure functions over a byte
 * range [s, s + n) that need no NUL terminator: no locale, no errno, no
 * state; safe from any thread.
 *
 * All of them accept exactly the digits (or words) they describe: no sign
 * unless stated, no leading or trailing space, no "0x", no empty string, no
 * value that overflows. On failure they return -1 and leave *out unchanged,
 * so a caller may preload *out with a default.
 */
#ifndef TC_PARSE_H
#define TC_PARSE_H

#include <stddef.h>
#include <stdint.h>

/** Decimal digits only, value in [lo, hi]. Leading zeros are allowed
 *  ("007" is 7). Returns 0 and sets *out, or -1. */
int tc__parse_u64(const char *s, size_t n, uint64_t lo, uint64_t hi,
                  uint64_t *out);

/** Signed decimal exactly as Redis's string2ll accepts it: an optional '-',
 *  then digits without leading zeros ("0" itself is fine, "-0" and "01" are
 *  not), value in [lo, hi]. For Redis command arguments, where a value Redis
 *  would refuse must be refused too. Returns 0 and sets *out, or -1. */
int tc__parse_i64(const char *s, size_t n, int64_t lo, int64_t hi,
                  int64_t *out);

/** Octal digits only (file modes: "0600" or "600"), value at most `hi`.
 *  Returns 0 and sets *out, or -1. */
int tc__parse_octal(const char *s, size_t n, uint64_t hi, uint64_t *out);

/** Case-insensitive 1/true/yes/on (sets *out = 1) or 0/false/no/off
 *  (*out = 0). Returns 0, or -1 for anything else. */
int tc__parse_bool(const char *s, size_t n, int *out);

#endif
