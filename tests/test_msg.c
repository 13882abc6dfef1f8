/* Invalidation messages: encode/parse round trips, hand-published forms,
 * rejection of malformed input, and robustness against garbage. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crit.h"

#include "msg.h"

#define S(lit) lit, sizeof(lit) - 1 /* a literal and its length, NULs kept */

/* Parse a copy in an exactly sized heap buffer, so that ASan sees any read
 * past the end. The copy is returned in *copy (caller frees). */
static int parse_copy(const char *buf, size_t len, tc__msg *m,
                      const char **why, char **copy)
{
    char *c = malloc(len ? len : 1);
    cr_assert_not_null(c);
    memcpy(c, buf, len);
    *copy = c;
    *why = NULL;
    return tc__msg_parse(c, len, m, why);
}

static void body_is(const tc__msg *m, const char *want, size_t wlen)
{
    cr_assert_eq(m->body_len, wlen, "body length %zu, want %zu", m->body_len,
                 wlen);
    if (wlen)
        cr_assert_arr_eq(m->body, want, wlen);
}

/* Encode then parse; the parsed message borrows *enc (caller frees). */
static void round_trip(tc__msg_kind kind, const char *origin, uint64_t seq,
                       uint64_t ts, size_t n, const void *const *keys,
                       const size_t *klens, tc__msg *m, char **enc)
{
    size_t len = 0;
    const char *why = NULL;
    *enc = tc__msg_encode(kind, origin, seq, ts, n, keys, klens, &len);
    cr_assert_not_null(*enc);
    if (tc__msg_parse(*enc, len, m, &why) != 0) {
        free(*enc);
        cr_assert_fail("own encoding rejected: %s", why ? why : "?");
    }
    cr_assert_eq(m->kind, kind);
    cr_assert_str_eq(m->origin, origin);
    cr_assert_eq(m->seq, seq);
    cr_assert_eq(m->ts_us, ts);
    cr_assert_geq(m->body, *enc);
    cr_assert_leq(m->body + m->body_len, *enc + len);
}

/* ------------------------------------------------------------------ */
/* Round trips                                                         */
/* ------------------------------------------------------------------ */

Test(msg, round_trip_key)
{
    static const char key[] = "user 42:\0x\n@y";
    const void *keys[] = {key};
    size_t klens[] = {sizeof(key) - 1};
    tc__msg m;
    char *enc;
    round_trip(TC__MSG_KEY, "0123456789abcdef", 7, 1700000000123456ULL, 1,
               keys, klens, &m, &enc);
    body_is(&m, key, sizeof(key) - 1);
    free(enc);
}

Test(msg, round_trip_key_starting_with_at)
{
    /* The encoder always writes a meta token, so a key beginning with '@'
     * (or with "@-" and a space) is never mistaken for one. */
    static const char *const ks[] = {"@weird", "@- x", "@a:1:2 k", "@"};
    for (size_t i = 0; i < 4; i++) {
        const void *keys[] = {ks[i]};
        size_t klens[] = {strlen(ks[i])};
        tc__msg m;
        char *enc;
        round_trip(TC__MSG_KEY, "orig", 0, 0, 1, keys, klens, &m, &enc);
        body_is(&m, ks[i], strlen(ks[i]));
        free(enc);
    }
}

Test(msg, round_trip_keys)
{
    static const char k0[] = "";
    static const char k1[] = "a";
    static const char k2[] = "x:y:z";
    static const char k3[] = "with space";
    static const char k4[] = "nul\0in\0side";
    static const char k5[] = "12:34";
    static const char k6[] = "@at";
    static char k7[300];
    const void *keys[] = {k0, k1, k2, k3, k4, k5, k6, k7};
    size_t klens[] = {0,
                      1,
                      sizeof(k2) - 1,
                      sizeof(k3) - 1,
                      sizeof(k4) - 1,
                      sizeof(k5) - 1,
                      sizeof(k6) - 1,
                      sizeof(k7)};
    size_t n = sizeof(keys) / sizeof(keys[0]), pos = 0, klen, i = 0;
    const char *k;
    tc__msg m;
    char *enc;
    int rc;
    memset(k7, ':', sizeof(k7));
    k7[0] = '9';
    round_trip(TC__MSG_KEYS, "abc", 3, 42, n, keys, klens, &m, &enc);
    while ((rc = tc__msg_next_key(&m, &pos, &k, &klen)) == 1) {
        cr_assert_lt(i, n, "more keys than encoded");
        cr_assert_eq(klen, klens[i], "key %zu: length %zu, want %zu", i, klen,
                     klens[i]);
        if (klen)
            cr_assert_arr_eq(k, keys[i], klen, "key %zu", i);
        i++;
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(i, n, "%zu keys decoded, %zu encoded", i, n);
    free(enc);
}

Test(msg, round_trip_prefix_and_pattern)
{
    static const char pfx[] = "user:\0 ";
    static const char pat[] = "user:[a-z]*\\? x";
    const void *k1[] = {pfx}, *k2[] = {pat};
    size_t l1[] = {sizeof(pfx) - 1}, l2[] = {sizeof(pat) - 1};
    tc__msg m;
    char *enc;
    round_trip(TC__MSG_PREFIX, "o", 1, 2, 1, k1, l1, &m, &enc);
    body_is(&m, pfx, sizeof(pfx) - 1);
    free(enc);
    round_trip(TC__MSG_PATTERN, "o", 1, 2, 1, k2, l2, &m, &enc);
    body_is(&m, pat, sizeof(pat) - 1);
    free(enc);
}

Test(msg, round_trip_all)
{
    tc__msg m;
    char *enc;
    round_trip(TC__MSG_ALL, "instance-1", 99, 123, 0, NULL, NULL, &m, &enc);
    cr_assert_eq(m.body_len, 0);
    free(enc);
}

Test(msg, round_trip_longest_origin)
{
    char origin[TC__ORIGIN_MAX + 1];
    const void *keys[] = {"k"};
    size_t klens[] = {1};
    tc__msg m;
    char *enc;
    memset(origin, 'o', TC__ORIGIN_MAX);
    origin[TC__ORIGIN_MAX] = '\0';
    round_trip(TC__MSG_KEY, origin, 5, 6, 1, keys, klens, &m, &enc);
    body_is(&m, "k", 1);
    free(enc);
}

Test(msg, round_trip_19_digit_numbers)
{
    const void *keys[] = {"k"};
    size_t klens[] = {1};
    tc__msg m;
    char *enc;
    round_trip(TC__MSG_KEY, "o", 9999999999999999999ULL,
               1000000000000000000ULL, 1, keys, klens, &m, &enc);
    free(enc);
}

/* The encoder takes any uint64_t for seq and ts, so the parser must accept
 * all 20-digit values it writes (up to 18446744073709551615). */
Test(msg, round_trip_full_u64_range)
{
    const void *keys[] = {"k"};
    size_t klens[] = {1};
    tc__msg m;
    char *enc;
    round_trip(TC__MSG_KEY, "o", UINT64_MAX, UINT64_MAX, 1, keys, klens, &m,
               &enc);
    free(enc);
    round_trip(TC__MSG_KEY, "o", 10000000000000000000ULL, 1, 1, keys, klens,
               &m, &enc);
    free(enc);
}

/* ------------------------------------------------------------------ */
/* Hand-published messages (redis-cli PUBLISH)                         */
/* ------------------------------------------------------------------ */

static void parse_ok(const char *buf, size_t len, tc__msg_kind kind,
                     const char *body, size_t blen)
{
    tc__msg m;
    const char *why;
    char *copy;
    cr_assert_eq(parse_copy(buf, len, &m, &why, &copy), 0,
                 "\"%.*s\" rejected: %s", (int)len, buf, why ? why : "?");
    cr_assert_eq(m.kind, kind, "\"%.*s\"", (int)len, buf);
    cr_assert_str_eq(m.origin, "");
    cr_assert_eq(m.seq, 0);
    cr_assert_eq(m.ts_us, 0);
    body_is(&m, body, blen);
    free(copy);
}

Test(msg, hand_published_forms)
{
    parse_ok(S("v1 key user:42"), TC__MSG_KEY, S("user:42"));
    parse_ok(S("v1 prefix user:"), TC__MSG_PREFIX, S("user:"));
    parse_ok(S("v1 pattern user:*"), TC__MSG_PATTERN, S("user:*"));
    parse_ok(S("v1 all"), TC__MSG_ALL, S(""));
    parse_ok(S("v1 key @- @weird"), TC__MSG_KEY, S("@weird"));
    parse_ok(S("v1 key with spaces  and\0nul"), TC__MSG_KEY,
             S("with spaces  and\0nul"));
    parse_ok(S("v1 keys 3:abc1:d"), TC__MSG_KEYS, S("3:abc1:d"));
}

Test(msg, meta_token_is_parsed)
{
    tc__msg m;
    const char *why;
    char *copy;
    cr_assert_eq(parse_copy(S("v1 key @host-1:17:1700000000000001 user:42"), &m,
                            &why, &copy),
                 0, "%s", why);
    cr_assert_eq(m.kind, TC__MSG_KEY);
    cr_assert_str_eq(m.origin, "host-1");
    cr_assert_eq(m.seq, 17);
    cr_assert_eq(m.ts_us, 1700000000000001ULL);
    body_is(&m, S("user:42"));
    free(copy);
}

Test(msg, all_with_meta_and_no_body)
{
    tc__msg m;
    const char *why;
    char *copy;
    cr_assert_eq(parse_copy(S("v1 all @o:1:2"), &m, &why, &copy), 0, "%s",
                 why);
    cr_assert_eq(m.kind, TC__MSG_ALL);
    cr_assert_str_eq(m.origin, "o");
    cr_assert_eq(m.seq, 1);
    cr_assert_eq(m.ts_us, 2);
    cr_assert_eq(m.body_len, 0);
    free(copy);
}

/* ------------------------------------------------------------------ */
/* Malformed input                                                     */
/* ------------------------------------------------------------------ */

static void parse_bad(const char *buf, size_t len)
{
    tc__msg m;
    const char *why;
    char *copy;
    int rc = parse_copy(buf, len, &m, &why, &copy);
    free(copy);
    cr_assert_eq(rc, -1, "accepted: \"%.*s\"", (int)len, buf);
    cr_assert(why && *why, "no reason for \"%.*s\"", (int)len, buf);
}

Test(msg, malformed_is_rejected_with_a_reason)
{
    char longorigin[128];
    int n;
    parse_bad(S(""));
    parse_bad(S("v"));
    parse_bad(S("v1"));
    parse_bad(S("v1 "));
    parse_bad(S("v2 key x"));
    parse_bad(S("V1 key x"));
    parse_bad(S("x1 key x"));
    parse_bad(S("v1 nope x"));
    parse_bad(S("v1 KEY x"));
    parse_bad(S("v1 keyx y"));
    parse_bad(S("v1  key x"));
    parse_bad(S("v1 key"));
    parse_bad(S("v1 key "));
    parse_bad(S("v1 prefix"));
    parse_bad(S("v1 pattern "));
    parse_bad(S("v1 keys"));
    parse_bad(S("v1 key @abc x"));
    parse_bad(S("v1 key @o:1:x k"));
    parse_bad(S("v1 key @o:x:1 k"));
    parse_bad(S("v1 key @o:1: k"));
    parse_bad(S("v1 key @o::1 k"));
    parse_bad(S("v1 key @:1:2 k"));
    parse_bad(S("v1 key @o:1 k"));
    parse_bad(S("v1 key @o:-1:2 k"));
    parse_bad(S("v1 key @o:1:2"));
    parse_bad(S("v1 key @o:1:2 "));
    parse_bad(S("v1 key @-"));
    parse_bad(S("v1 key @- "));
    parse_bad(S("v1 key @o:1:123456789012345678901 k"));
    parse_bad(S("v1 keys 5:ab"));
    parse_bad(S("v1 keys x:abc"));
    parse_bad(S("v1 keys :abc"));
    parse_bad(S("v1 keys -1:a"));
    parse_bad(S("v1 keys 1:ab"));
    parse_bad(S("v1 keys 1:a2:b"));
    parse_bad(S("v1 keys 99999999999999999999:a"));
    parse_bad(S("v1 keys 18446744073709551617:a"));
    parse_bad(S("v1 keys 0000000000000000000000001:a"));
    parse_bad(S("v1 keys @o:1:2 3:ab"));
    n = snprintf(longorigin, sizeof(longorigin), "v1 key @%0*d:1:2 k",
                 TC__ORIGIN_MAX + 1, 0);
    parse_bad(longorigin, (size_t)n);
}

Test(msg, version_and_kind_reasons_differ)
{
    tc__msg m;
    const char *w1 = NULL, *w2 = NULL;
    cr_assert_eq(tc__msg_parse(S("v2 key x"), &m, &w1), -1);
    cr_assert_eq(tc__msg_parse(S("v1 nope x"), &m, &w2), -1);
    cr_assert_str_neq(w1, w2, "the reason should say what is wrong");
}

/* xorshift64*: a seeded PRNG, so that a failure reproduces. */
static uint64_t rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

Test(msg, random_garbage_never_crashes)
{
    static const char *const heads[] = {"v1 key ", "v1 keys ", "v1 prefix ",
                                        "v1 pattern ", "v1 all ", "v1 ",
                                        "v1 keys @o:1:2 ", ""};
    static const char alphabet[] = "0123456789::::@@  -aZ\0\n\xff";
    uint64_t seed = 0x5eed1234abcdULL;
    int accepted = 0, rejected = 0;
    for (int iter = 0; iter < 5000; iter++) {
        char tmp[160];
        size_t len = 0, body;
        const char *head = heads[rng(&seed) % 8];
        const char *why;
        char *buf;
        tc__msg m;
        int rc;
        if (iter % 4 == 0)
            head = ""; /* fully random */
        memcpy(tmp, head, strlen(head));
        len = strlen(head);
        body = rng(&seed) % 64;
        for (size_t i = 0; i < body; i++) {
            uint64_t r = rng(&seed);
            tmp[len++] = iter % 4 == 0 ? (char)(r >> 24)
                                       : alphabet[r % (sizeof(alphabet) - 1)];
        }
        rc = parse_copy(tmp, len, &m, &why, &buf);
        cr_assert(rc == 0 || rc == -1, "iteration %d: rc %d", iter, rc);
        if (rc == 0) {
            accepted++;
            cr_assert_geq(m.body, buf, "iteration %d", iter);
            cr_assert_leq(m.body + m.body_len, buf + len, "iteration %d",
                          iter);
            cr_assert_leq(strlen(m.origin), TC__ORIGIN_MAX);
            if (m.kind == TC__MSG_KEYS) {
                size_t pos = 0, klen;
                const char *k;
                int r;
                while ((r = tc__msg_next_key(&m, &pos, &k, &klen)) == 1) {
                    cr_assert_geq(k, m.body);
                    cr_assert_leq(k + klen, m.body + m.body_len);
                }
                cr_assert_eq(r, 0, "validated list failed to iterate");
            }
        } else {
            rejected++;
            cr_assert(why && *why, "iteration %d: no reason", iter);
        }
        free(buf);
    }
    /* The generator reached both outcomes, so the checks above ran. */
    cr_assert_gt(accepted, 100);
    cr_assert_gt(rejected, 100);
}

/* ------------------------------------------------------------------ */
/* Key list iteration                                                  */
/* ------------------------------------------------------------------ */

Test(msg, next_key_iterates_and_stops)
{
    tc__msg m;
    const char *k, *why;
    size_t pos = 0, klen;
    char *copy;
    cr_assert_eq(parse_copy(S("v1 keys 3:abc0:2:d\0"), &m, &why, &copy), 0,
                 "%s", why);
    cr_assert_eq(tc__msg_next_key(&m, &pos, &k, &klen), 1);
    cr_assert_eq(klen, 3);
    cr_assert_arr_eq(k, "abc", 3);
    cr_assert_eq(pos, 5);
    cr_assert_eq(tc__msg_next_key(&m, &pos, &k, &klen), 1);
    cr_assert_eq(klen, 0);
    cr_assert_eq(tc__msg_next_key(&m, &pos, &k, &klen), 1);
    cr_assert_eq(klen, 2);
    cr_assert_arr_eq(k, "d\0", 2);
    cr_assert_eq(pos, m.body_len);
    cr_assert_eq(tc__msg_next_key(&m, &pos, &k, &klen), 0);
    cr_assert_eq(tc__msg_next_key(&m, &pos, &k, &klen), 0, "not sticky");
    free(copy);
}

Test(msg, next_key_reports_malformed_lists)
{
    /* A hand-built message (not through parse, which would refuse it). */
    static const char body[] = "1:a9:b";
    tc__msg m;
    const char *k;
    size_t pos = 0, klen;
    memset(&m, 0, sizeof(m));
    m.kind = TC__MSG_KEYS;
    m.body = body;
    m.body_len = sizeof(body) - 1;
    cr_assert_eq(tc__msg_next_key(&m, &pos, &k, &klen), 1);
    cr_assert_arr_eq(k, "a", 1);
    cr_assert_eq(tc__msg_next_key(&m, &pos, &k, &klen), -1);
}
