/* Request parser: RESP and inline framing, and limits enforced before any
 * allocation sized from the request. No server needed. */
#include "crit.h" /* Criterion, or the TSan build's shim */
#include <stdio.h>
#include <string.h>

#include "proto.h"

static tcd_proto *p;
static tcd_limits lim = {.max_args = 16, .max_bulk = 64, .max_request = 256,
                         .max_inline = 64};

static void setup(void)
{
    p = tcd_proto_create();
    cr_assert_not_null(p);
}

static void teardown(void)
{
    tcd_proto_free(p);
}

TestSuite(proto, .init = setup, .fini = teardown);

/* Parse `s` completely; returns the result of the last call. */
static int parse1(const char *s, size_t n, tcd_req **out, size_t *used,
                  const char **err)
{
    tcd_scan sc = {0};
    return tcd_proto_parse(p, &sc, &lim, s, n, used, out, err);
}

Test(proto, multibulk_request)
{
    const char s[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\0l\r\n\r\n";
    tcd_req *r;
    size_t used;
    const char *err;
    cr_assert_eq(parse1(s, sizeof(s) - 1, &r, &used, &err), TCD_PARSE_OK);
    cr_assert_eq(used, sizeof(s) - 1);
    cr_assert_eq(r->argc, 3);
    cr_assert_str_eq(r->argv[0], "SET");
    cr_assert_eq(r->argl[2], 5);
    cr_assert(memcmp(r->argv[2], "v\0l\r\n", 5) == 0);
    tcd_req_free(r);
}

Test(proto, pipelined_requests_one_at_a_time)
{
    const char s[] = "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
    tcd_req *r;
    size_t used, off = 0;
    const char *err;
    tcd_scan sc = {0};
    cr_assert_eq(tcd_proto_parse(p, &sc, &lim, s, sizeof(s) - 1, &used, &r,
                                 &err), TCD_PARSE_OK);
    cr_assert_eq(r->argc, 1);
    tcd_req_free(r);
    off = used;
    cr_assert_eq(tcd_proto_parse(p, &sc, &lim, s + off, sizeof(s) - 1 - off,
                                 &used, &r, &err), TCD_PARSE_OK);
    cr_assert_eq(r->argc, 2);
    cr_assert_str_eq(r->argv[1], "hi");
    tcd_req_free(r);
}

Test(proto, byte_by_byte_feed_resumes)
{
    const char s[] = "*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n";
    size_t n = sizeof(s) - 1;
    tcd_scan sc = {0};
    tcd_req *r = NULL;
    size_t used = 0;
    const char *err;
    for (size_t have = 1; have < n; have++)
        cr_assert_eq(tcd_proto_parse(p, &sc, &lim, s, have, &used, &r, &err),
                     TCD_PARSE_MORE, "prefix of %zu bytes", have);
    cr_assert_eq(tcd_proto_parse(p, &sc, &lim, s, n, &used, &r, &err),
                 TCD_PARSE_OK);
    cr_assert_eq(used, n);
    cr_assert_str_eq(r->argv[1], "0123456789");
    tcd_req_free(r);
}

Test(proto, inline_commands_with_quotes)
{
    const char s[] = "set  \"a b\" 'c\\'d' \"\\x41\\n\"\r\n";
    tcd_req *r;
    size_t used;
    const char *err;
    cr_assert_eq(parse1(s, sizeof(s) - 1, &r, &used, &err), TCD_PARSE_OK);
    cr_assert_eq(used, sizeof(s) - 1);
    cr_assert_eq(r->argc, 4);
    cr_assert_str_eq(r->argv[1], "a b");
    cr_assert_str_eq(r->argv[2], "c'd");
    cr_assert_str_eq(r->argv[3], "A\n");
    tcd_req_free(r);
}

Test(proto, empty_requests_are_skipped)
{
    tcd_req *r = (tcd_req *)1;
    size_t used;
    const char *err;
    cr_assert_eq(parse1("\r\n", 2, &r, &used, &err), TCD_PARSE_OK);
    cr_assert_null(r);
    cr_assert_eq(used, 2);
    cr_assert_eq(parse1("*0\r\n", 4, &r, &used, &err), TCD_PARSE_OK);
    cr_assert_null(r);
    cr_assert_eq(parse1("*-1\r\n", 5, &r, &used, &err), TCD_PARSE_OK);
    cr_assert_null(r);
}

static void expect_err(const char *s, size_t n, const char *want)
{
    tcd_req *r = NULL;
    size_t used;
    const char *err = NULL;
    cr_assert_eq(parse1(s, n, &r, &used, &err), TCD_PARSE_ERR, "input %.*s",
                 (int)n, s);
    cr_assert_null(r);
    cr_assert(!strncmp(err, want, strlen(want)), "got '%s', want '%s...'",
              err, want);
}

Test(proto, redis_protocol_error_texts)
{
    expect_err("*abc\r\n", 6, "Protocol error: invalid multibulk length");
    expect_err("*1\r\n:1\r\n", 8, "Protocol error: expected '$', got ':'");
    expect_err("*1\r\n$abc\r\n", 10, "Protocol error: invalid bulk length");
    expect_err("*1\r\n$-1\r\n", 9, "Protocol error: invalid bulk length");
    expect_err("\"abc\r\n", 6, "Protocol error: unbalanced quotes in request");
    expect_err("*1\r\n$4\r\nPINGxx", 14,
               "Protocol error: expected CRLF after bulk");
}

Test(proto, absurd_sizes_rejected_from_the_header_alone)
{
    /* Only the header is present: the error must come before the data. */
    expect_err("*99999999999\r\n", 14,
               "Protocol error: invalid multibulk length");
    expect_err("*1\r\n$99999999999999999999\r\n", 27,
               "Protocol error: invalid bulk length");
}

Test(proto, request_total_bounded)
{
    /* 5 x 60-byte args fit max_bulk but not max_request (256). */
    char s[512];
    size_t n = (size_t)snprintf(s, sizeof(s), "*5\r\n");
    tcd_req *r = NULL;
    size_t used;
    const char *err = NULL;
    for (int i = 0; i < 5; i++)
        n += (size_t)snprintf(s + n, sizeof(s) - n, "$60\r\n%060d\r\n", i);
    cr_assert_eq(parse1(s, n, &r, &used, &err), TCD_PARSE_TOO_BIG);
    cr_assert_not_null(strstr(err, "over the --max-request limit of 256"),
                       "%s", err);
}

/* Parse all of s[0..n) as the daemon does; returns how many requests came
 * out, with the TOO_BIG error texts joined in `errs`. */
static int parse_all(const char *s, size_t n, char *errs, size_t cap,
                     int *too_big)
{
    tcd_scan sc = {0};
    size_t off = 0;
    int reqs = 0;
    errs[0] = '\0';
    *too_big = 0;
    while (off < n) {
        tcd_req *r = NULL;
        size_t used = 0;
        const char *err = NULL;
        int rc = tcd_proto_parse(p, &sc, &lim, s + off, n - off, &used, &r,
                                 &err);
        cr_assert(rc == TCD_PARSE_OK || rc == TCD_PARSE_TOO_BIG,
                  "rc %d at %zu: %s", rc, off, err ? err : "");
        if (rc == TCD_PARSE_TOO_BIG) {
            (*too_big)++;
            snprintf(errs + strlen(errs), cap - strlen(errs), "%s|", err);
        }
        if (r) {
            reqs++;
            tcd_req_free(r);
        }
        cr_assert(used > 0 || rc == TCD_PARSE_TOO_BIG, "no progress");
        off += used;
    }
    return reqs;
}

Test(proto, over_limit_requests_are_skipped_with_the_flag_named)
{
    char s[1024], errs[1024];
    size_t n = 0;
    int too_big;
    /* An argument over --max-bulk (64), delivered a byte at a time would
     * work too; here whole: then the next request parses normally. */
    n += (size_t)sprintf(s + n, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n");
    memset(s + n, 'v', 100);
    n += 100;
    n += (size_t)sprintf(s + n, "\r\n*1\r\n$4\r\nPING\r\n");
    /* Over --max-args (16), then another PING. */
    n += (size_t)sprintf(s + n, "*17\r\n");
    for (int i = 0; i < 17; i++)
        n += (size_t)sprintf(s + n, "$1\r\nx\r\n");
    n += (size_t)sprintf(s + n, "*1\r\n$4\r\nPING\r\n");
    cr_assert_eq(parse_all(s, n, errs, sizeof(errs), &too_big), 2);
    cr_assert_eq(too_big, 2);
    cr_assert_str_eq(errs,
        "Protocol error: invalid bulk length: 100 bytes is over the "
        "--max-bulk limit of 64|Protocol error: invalid multibulk length: "
        "17 arguments is over the --max-args limit of 16|");
}

Test(proto, skipping_resumes_across_partial_input)
{
    char s[256];
    size_t n = (size_t)sprintf(s, "*2\r\n$3\r\nGET\r\n$70\r\n");
    tcd_scan sc = {0};
    tcd_req *r = NULL;
    size_t used = 0, off;
    const char *err = NULL;
    memset(s + n, 'z', 70);
    n += 70;
    n += (size_t)sprintf(s + n, "\r\n*1\r\n$4\r\nPING\r\n");
    cr_assert_eq(tcd_proto_parse(p, &sc, &lim, s, n, &used, &r, &err),
                 TCD_PARSE_TOO_BIG);
    off = used;
    /* Feed the rest one byte more each time, as a slow socket would. */
    for (size_t end = off + 1; end <= n && off < n; end++) {
        int rc = tcd_proto_parse(p, &sc, &lim, s + off, end - off, &used, &r,
                                 &err);
        cr_assert(rc == TCD_PARSE_OK || rc == TCD_PARSE_MORE, "rc %d", rc);
        off += rc == TCD_PARSE_OK ? used : 0;
        if (r)
            break;
    }
    cr_assert_not_null(r, "the request after the skipped one was lost");
    cr_assert_str_eq(r->argv[0], "PING");
    tcd_req_free(r);
}

Test(proto, headers_without_end_bounded)
{
    char s[100];
    memset(s, '9', sizeof(s));
    s[0] = '*';
    expect_err(s, 40, "Protocol error: too big mbulk count string");
    memcpy(s, "*1\r\n$", 5);
    expect_err(s, 40, "Protocol error: too big bulk count string");
    memset(s, 'a', sizeof(s));
    expect_err(s, 65, "Protocol error: too big inline request");
}

Test(proto, binary_garbage_is_an_error_or_a_command_never_a_crash)
{
    unsigned char g[64];
    for (unsigned seed = 1; seed < 2000; seed++) {
        tcd_req *r = NULL;
        size_t used;
        const char *err;
        int rc;
        unsigned x = seed;
        for (size_t i = 0; i < sizeof(g); i++) {
            x = x * 1103515245u + 12345u;
            g[i] = (unsigned char)(x >> 16);
        }
        g[0] = (seed & 1) ? '*' : g[0];
        rc = parse1((const char *)g, sizeof(g), &r, &used, &err);
        cr_assert(rc == TCD_PARSE_OK || rc == TCD_PARSE_MORE ||
                  rc == TCD_PARSE_ERR);
        if (rc == TCD_PARSE_OK)
            cr_assert(used <= sizeof(g));
        tcd_req_free(r);
    }
}
