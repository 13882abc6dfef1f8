/* Compression of L2 values: transparent between instances that have it,
 * a clear error for one that has not, never garbage, and a frame can never
 * make a reader allocate more than max_value_bytes. */
#include <hiredis/hiredis.h>
#include <zstd.h>

#include "common.h"

REDIS_SUITE(compress);

/* A JSON-like value of `n` bytes: repetitive records, as an API returns. */
static char *json_like(size_t n)
{
    char *s = malloc(n + 1);
    size_t off = 0;
    for (unsigned i = 0; off < n; i++) {
        char rec[128];
        int k = snprintf(rec, sizeof(rec),
                         "{\"id\":%u,\"name\":\"user%u\",\"active\":%s,"
                         "\"score\":%u},",
                         i, i * 7919 % 100000, i % 3 ? "true" : "false",
                         i * 31 % 1000);
        size_t take = (size_t)k < n - off ? (size_t)k : n - off;
        memcpy(s + off, rec, take);
        off += take;
    }
    s[n] = '\0';
    return s;
}

static tc_options zopts(size_t min)
{
    tc_options o = test_opts(&srv);
    o.compress_min_bytes = min;
    return o;
}

/* Bytes Redis holds for `key` (STRLEN). */
static long long l2_len(const char *key)
{
    char *n = tcr_cmd(&srv, NULL, "STRLEN", key, NULL);
    long long v = n ? atoll(n) : -1;
    free(n);
    return v;
}

/* Store raw bytes in Redis, bypassing the library. */
static void raw_set(const char *key, const void *val, size_t len)
{
    redisContext *rc = redisConnect("127.0.0.1", srv.port);
    redisReply *r;
    cr_assert(rc && !rc->err);
    r = redisCommand(rc, "SET %s %b", key, val, len);
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(rc);
}

static void expect_value(tc_cache *c, const char *key, const void *want,
                         size_t len)
{
    tc_value *v = NULL;
    tc_result r = tc_get(c, key, strlen(key), &v);
    cr_assert_eq(r, TC_OK, "get %s: %s (%s)", key, tc_strerror(r),
                 tc_errmsg());
    cr_assert_eq(tc_value_len(v), len);
    cr_assert_eq(memcmp(tc_value_data(v), want, len), 0);
    tc_value_release(v);
}

Test(compress, round_trip_between_two_instances)
{
    tc_options o = zopts(1024);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    char *big = json_like(65536);
    tc_stats st;
    tc_value *out[2];
    tc_result res[2];
    const void *keys[2] = {"j", "small"};
    size_t klens[2] = {1, 5};
    cr_assert_eq(tc_set(a, "j", 1, big, 65536, 0), TC_OK);
    cr_assert_lt(l2_len("j"), 65536 / 4, "not compressed in L2: %lld",
                 l2_len("j"));
    expect_value(b, "j", big, 65536);
    /* And through a multi-get, an L1 hit, and a read-through store. */
    cr_assert_eq(set_str(a, "small", "tiny", 0), TC_OK);
    cr_assert_eq(l2_len("small"), 4, "below the threshold: stored plain");
    tc_cache_destroy(b);
    b = must_create(&o);
    cr_assert_eq(tc_mget(b, 2, keys, klens, out, res), TC_OK);
    cr_assert(res[0] == TC_OK && res[1] == TC_OK);
    cr_assert_eq(tc_value_len(out[0]), 65536);
    cr_assert_eq(memcmp(tc_value_data(out[0]), big, 65536), 0);
    cr_assert(value_is(out[1], "tiny"));
    tc_value_release(out[0]);
    expect_value(b, "j", big, 65536); /* L1 holds it decompressed */
    tc_cache_stats(a, &st);
    cr_assert_eq(st.values_compressed, 1);
    /* A conditional write (the script path) compresses too. */
    {
        tc_set_opts so = {0, 0, TC_SET_NX};
        cr_assert_eq(tc_set_ex(a, "nx", 2, big, 65536, &so), TC_OK);
        cr_assert_lt(l2_len("nx"), 65536 / 4);
        expect_value(b, "nx", big, 65536);
    }
    tc_cache_stats(b, &st);
    cr_assert_geq(st.values_decompressed, 2); /* j and nx, from L2 */
    cr_assert(l1_holds(b, "j", big), "L1 must hold the value decompressed");
    free(big);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

static tc_result load_big(void *ud, const void *key, size_t klen, void **val,
                          size_t *vlen)
{
    (void)key, (void)klen;
    *val = json_like(*(size_t *)ud);
    *vlen = *(size_t *)ud;
    return TC_OK;
}

Test(compress, read_through_and_warming_store_compressed)
{
    tc_options o = zopts(512);
    tc_cache *a = must_create(&o), *b = must_create(&o);
    size_t n = 20000;
    tc_value *v;
    char *want = json_like(n);
    const void *keys[1] = {"w"}, *vals[1] = {want};
    size_t kl[1] = {1}, vl[1] = {n};
    cr_assert_eq(tc_get_or_load(a, "r", 1, load_big, &n, 0, &v), TC_OK);
    tc_value_release(v);
    cr_assert_lt(l2_len("r"), (long long)n / 2);
    expect_value(b, "r", want, n);
    cr_assert_eq(tc_set_many(a, 1, keys, kl, vals, vl, 0, 0, NULL, NULL),
                 TC_OK);
    cr_assert_lt(l2_len("w"), (long long)n / 2);
    expect_value(b, "w", want, n);
    free(want);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

Test(compress, threshold_and_incompressible_values)
{
    tc_options o = zopts(1024);
    tc_cache *a = must_create(&o);
    char *below = json_like(1023), *at = json_like(1024);
    unsigned char rnd[4096];
    uint64_t x = 88172645463325252ULL; /* xorshift64: incompressible */
    for (size_t i = 0; i < sizeof(rnd); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        rnd[i] = (unsigned char)(x >> 56);
    }
    cr_assert_eq(tc_set(a, "below", 5, below, 1023, 0), TC_OK);
    cr_assert_eq(l2_len("below"), 1023);
    cr_assert_eq(tc_set(a, "at", 2, at, 1024, 0), TC_OK);
    cr_assert_lt(l2_len("at"), 1024);
    /* Not worth compressing: stored as given. */
    cr_assert_eq(tc_set(a, "rnd", 3, rnd, sizeof(rnd), 0), TC_OK);
    cr_assert_eq(l2_len("rnd"), (long long)sizeof(rnd));
    tc_cache_destroy(a);
    a = must_create(&o);
    expect_value(a, "below", below, 1023);
    expect_value(a, "at", at, 1024);
    expect_value(a, "rnd", rnd, sizeof(rnd));
    free(below);
    free(at);
    tc_cache_destroy(a);
}

Test(compress, reader_without_compression_gets_a_clear_error)
{
    tc_options on = zopts(100), off = test_opts(&srv);
    tc_cache *a = must_create(&on), *b = must_create(&off);
    char *big = json_like(5000);
    tc_value *v = NULL;
    tc_result r;
    cr_assert_eq(tc_set(a, "k", 1, big, 5000, 0), TC_OK);
    r = tc_get(b, "k", 1, &v);
    cr_assert_eq(r, TC_COMPRESSED, "got %s", tc_strerror(r));
    cr_assert_null(v);
    cr_assert_not_null(strstr(tc_errmsg(), "compress_min_bytes"), "%s",
                       tc_errmsg());
    cr_assert(l1_holds(b, "k", NULL), "garbage kept in L1");
    /* Plain values below the threshold stay readable by everyone. */
    cr_assert_eq(set_str(a, "p", "plain", 0), TC_OK);
    {
        char *s = get_str(b, "p", &r);
        cr_assert_eq(r, TC_OK);
        cr_assert_str_eq(s, "plain");
        free(s);
    }
    free(big);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

Test(compress, plain_value_that_looks_like_a_frame)
{
    tc_options o = zopts(1024);
    tc_cache *a = must_create(&o), *b;
    static const char tricky[] = "\0\xfftcz not a frame";
    cr_assert_eq(tc_set(a, "t", 1, tricky, sizeof(tricky), 0), TC_OK);
    cr_assert_eq(l2_len("t"), (long long)sizeof(tricky) + 5,
                 "marked plain");
    b = must_create(&o);
    expect_value(b, "t", tricky, sizeof(tricky));
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

Test(compress, corrupt_frame_is_a_clear_error)
{
    tc_options o = zopts(100);
    tc_cache *a = must_create(&o);
    char *big = json_like(10000);
    char frame[64 + 10000];
    size_t n;
    tc_value *v = NULL;
    memcpy(frame, "\0\xfftcz", 5);
    n = ZSTD_compress(frame + 5, sizeof(frame) - 5, big, 10000, 3);
    cr_assert(!ZSTD_isError(n));
    /* Garbage after the marker. */
    raw_set("garbage", "\0\xfftczxxxxxxxxxxxxxxx", 20);
    cr_assert_eq(tc_get(a, "garbage", 7, &v), TC_CORRUPT);
    /* A real frame, truncated. */
    raw_set("cut", frame, 5 + n / 2);
    cr_assert_eq(tc_get(a, "cut", 3, &v), TC_CORRUPT, "%s", tc_errmsg());
    /* A real frame, one payload byte flipped. */
    frame[5 + n / 2] ^= 0x55;
    raw_set("flipped", frame, 5 + n);
    {
        tc_result r = tc_get(a, "flipped", 7, &v);
        if (r == TC_OK) { /* zstd may not notice: never a wrong length */
            cr_assert_eq(tc_value_len(v), 10000);
            tc_value_release(v);
        } else {
            cr_assert_eq(r, TC_CORRUPT, "%s", tc_strerror(r));
        }
    }
    cr_assert_null(tc__cache_l1_contents(a, "garbage", 7));
    free(big);
    tc_cache_destroy(a);
}

/* max_value_bytes bounds the decompressed size: checked against the
 * frame's header before allocating, and a frame that inflates past its
 * header fails inside the buffer of the announced size. */
Test(compress, decompression_bomb_is_bounded)
{
    tc_options big = zopts(100), small = zopts(100);
    tc_cache *w, *r;
    size_t eight = 8u << 20;
    char *zeros = calloc(1, eight);
    char *frame = malloc(ZSTD_compressBound(eight) + 1024);
    size_t n1, n2;
    tc_value *v = NULL;
    tc_result res;
    small.max_value_bytes = 1u << 20;
    w = must_create(&big);
    r = must_create(&small);
    cr_assert_eq(tc_set(w, "bomb", 4, zeros, eight, 0), TC_OK);
    cr_assert_lt(l2_len("bomb"), 4096, "8 MiB of zeros compress well");
    res = tc_get(r, "bomb", 4, &v);
    cr_assert_eq(res, TC_TOO_LARGE, "got %s", tc_strerror(res));
    cr_assert_not_null(strstr(tc_errmsg(), "max_value_bytes"));
    /* A small frame announcing 100 bytes, then a frame of 8 MiB. */
    memcpy(frame, "\0\xfftcz", 5);
    n1 = ZSTD_compress(frame + 5, 1024, zeros, 100, 3);
    cr_assert(!ZSTD_isError(n1));
    n2 = ZSTD_compress(frame + 5 + n1, ZSTD_compressBound(eight), zeros, eight,
                       3);
    cr_assert(!ZSTD_isError(n2));
    raw_set("sneaky", frame, 5 + n1 + n2);
    res = tc_get(r, "sneaky", 6, &v);
    cr_assert_eq(res, TC_CORRUPT, "got %s", tc_strerror(res));
    /* A frame without its content size is refused, not streamed. */
    {
        ZSTD_CCtx *cc = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
        n1 = ZSTD_compress2(cc, frame + 5, ZSTD_compressBound(eight), zeros,
                            eight);
        ZSTD_freeCCtx(cc);
        cr_assert(!ZSTD_isError(n1));
        raw_set("nosize", frame, 5 + n1);
        cr_assert_eq(tc_get(r, "nosize", 6, &v), TC_CORRUPT);
    }
    free(zeros);
    free(frame);
    tc_cache_destroy(w);
    tc_cache_destroy(r);
}

Test(compress, threshold_from_the_environment)
{
    tc_options o = test_opts(&srv);
    tc_cache *a;
    char *big = json_like(4000);
    o.ignore_env = TC_NO;
    setenv("TC_COMPRESS_MIN_BYTES", "1000", 1);
    a = must_create(&o);
    unsetenv("TC_COMPRESS_MIN_BYTES");
    cr_assert_eq(tc_set(a, "e", 1, big, 4000, 0), TC_OK);
    cr_assert_lt(l2_len("e"), 4000);
    tc_cache_destroy(a);
    setenv("TC_COMPRESS_MIN_BYTES", "lots", 1);
    cr_assert_eq(tc_cache_create(&o, &a), TC_BAD_ARGUMENT);
    unsetenv("TC_COMPRESS_MIN_BYTES");
    o.compress_min_bytes = (512u << 20) + 1;
    cr_assert_eq(tc_cache_create(&o, &a), TC_BAD_ARGUMENT);
    free(big);
}
