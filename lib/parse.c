/* The strict number and boolean parser (see parse.h). */
#include <string.h>
#include <strings.h>

#include "parse.h"

/* Digits of `base` (8 or 10) in [s, s + n), without overflow. */
static int digits(const char *s, size_t n, unsigned base, uint64_t *out)
{
    uint64_t x = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)((unsigned char)s[i] - '0');
        if (d >= base || x > (UINT64_MAX - d) / base)
            return -1;
        x = x * base + d;
    }
    *out = x;
    return 0;
}

int tc__parse_u64(const char *s, size_t n, uint64_t lo, uint64_t hi,
                  uint64_t *out)
{
    uint64_t x;
    if (!s || digits(s, n, 10, &x) || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

int tc__parse_i64(const char *s, size_t n, int64_t lo, int64_t hi,
                  int64_t *out)
{
    int neg;
    uint64_t mag;
    int64_t x;
    if (!s || n == 0)
        return -1;
    neg = s[0] == '-';
    s += neg, n -= (size_t)neg;
    /* string2ll: no leading zero, and so no "-0" either. */
    if (n == 0 || (s[0] == '0' && (n > 1 || neg)))
        return -1;
    if (digits(s, n, 10, &mag))
        return -1;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1)
            return -1;
        /* -(INT64_MAX + 1) without signed overflow. */
        x = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return -1;
        x = (int64_t)mag;
    }
    if (x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

int tc__parse_octal(const char *s, size_t n, uint64_t hi, uint64_t *out)
{
    uint64_t x;
    if (!s || digits(s, n, 8, &x) || x > hi)
        return -1;
    *out = x;
    return 0;
}

int tc__parse_bool(const char *s, size_t n, int *out)
{
    static const char *const words[2][4] = {{"0", "false", "no", "off"},
                                            {"1", "true", "yes", "on"}};
    if (!s)
        return -1;
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < 4; i++)
            if (n == strlen(words[v][i]) &&
                strncasecmp(s, words[v][i], n) == 0) {
                *out = v;
                return 0;
            }
    return -1;
}
