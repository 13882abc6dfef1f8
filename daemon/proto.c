#include "parse.h"
#include "proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/read.h>

/* Longest `*N\r\n` / `$N\r\n` header we wait for: sign, 19 digits, CRLF and
 * slack. Redis allows 64 KiB here; nothing legitimate needs more than this. */
#define HDR_MAX 32
/* A request over a limit is skipped (and the connection kept) only when
 * its sizes are plausible; beyond these it is garbage: close, as Redis. */
#define SKIP_MAX_ARGS (1LL << 20)
#define SKIP_MAX_BULK (1ULL << 30)

/* The request being filled by the reader callbacks. */
typedef struct fill {
    tcd_req *req;
    char *cursor; /* next free byte of the string area */
    char *end;
    int strings;  /* elements copied */
    int bad;      /* the reader produced something the pre-scan excluded */
} fill;

struct tcd_proto {
    redisReader *reader;
    fill fill;
    char errbuf[160];
};

/* ---- redisReader object callbacks: build argv in the pre-sized block ---- */

static void *cb_string(const redisReadTask *t, char *s, size_t len)
{
    fill *f = t->privdata;
    char *dst;
    if (!t->parent || t->idx < 0 || t->idx >= f->req->argc ||
        (size_t)(f->end - f->cursor) < len + 1) {
        f->bad = 1;
        return f; /* non-NULL: NULL would mean OOM to the reader */
    }
    dst = f->cursor;
    memcpy(dst, s, len);
    dst[len] = '\0';
    f->cursor += len + 1;
    f->req->argv[t->idx] = dst;
    f->req->argl[t->idx] = len;
    f->strings++;
    return dst;
}

static void *cb_array(const redisReadTask *t, int n)
{
    fill *f = t->privdata;
    if (t->parent || n != f->req->argc)
        f->bad = 1;
    return f->req;
}

static void *cb_integer(const redisReadTask *t, long long v)
{
    fill *f = t->privdata;
    (void)v;
    f->bad = 1;
    return f;
}

static void *cb_nil(const redisReadTask *t)
{
    fill *f = t->privdata;
    f->bad = 1;
    return f;
}

static void cb_free(void *obj)
{
    (void)obj; /* everything lives in the request block, which we own */
}

static redisReplyObjectFunctions cb_fns = {
    cb_string, cb_array, cb_integer, cb_nil, cb_free,
};

static redisReader *reader_new(tcd_proto *p)
{
    redisReader *r = redisReaderCreateWithFunctions(&cb_fns);
    if (r)
        r->privdata = &p->fill;
    return r;
}

tcd_proto *tcd_proto_create(void)
{
    tcd_proto *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->reader = reader_new(p);
    if (!p->reader) {
        free(p);
        return NULL;
    }
    return p;
}

void tcd_proto_free(tcd_proto *p)
{
    if (!p)
        return;
    redisReaderFree(p->reader);
    free(p);
}

void tcd_req_free(tcd_req *r)
{
    free(r);
}

/* One block: header, argv[], argl[], then the NUL-terminated strings. */
static tcd_req *req_alloc(size_t argc, size_t payload, char **strings,
                          size_t *strlen_out)
{
    size_t head = sizeof(tcd_req);
    size_t ptrs = argc * sizeof(char *);
    size_t lens = argc * sizeof(size_t);
    size_t str = payload + argc;
    tcd_req *r;
    /* Limits keep these small; still, never wrap. */
    if (argc > SIZE_MAX / 64 || payload > SIZE_MAX / 2)
        return NULL;
    r = malloc(head + ptrs + lens + str + 1);
    if (!r)
        return NULL;
    r->argc = (int)argc;
    r->argv = (char **)(void *)((char *)r + head);
    r->argl = (size_t *)(void *)((char *)r + head + ptrs);
    *strings = (char *)r + head + ptrs + lens;
    *strlen_out = str + 1;
    return r;
}

/* Parse a header number as Redis does (string2ll, lib/parse.h). */
static int parse_ll(const char *s, size_t n, long long *out)
{
    int64_t v;
    if (tc__parse_i64(s, n, INT64_MIN, INT64_MAX, &v) != 0)
        return -1;
    *out = (long long)v;
    return 0;
}

/* Find "\r\n" in s[0..n); returns the offset of '\r' or -1. */
static long find_crlf(const char *s, size_t n)
{
    const char *q = n ? memchr(s, '\r', n) : NULL;
    while (q) {
        size_t off = (size_t)(q - s);
        if (off + 1 >= n)
            return -1;
        if (q[1] == '\n')
            return (long)off;
        q = memchr(q + 1, '\r', n - off - 1);
    }
    return -1;
}

static int fail(const char **err, const char *msg)
{
    *err = msg;
    return TCD_PARSE_ERR;
}

/* Refuse a request over a limit and skip the rest of it: `args` more
 * element headers, after `bytes` bytes of the current element. */
static int too_big(tcd_proto *p, tcd_scan *sc, long long args,
                   unsigned long long bytes, size_t consumed,
                   size_t *consumed_out, const char **err, const char *fmt,
                   unsigned long long got, size_t limit, const char *flag)
{
    snprintf(p->errbuf, sizeof(p->errbuf), fmt, got, flag, limit);
    memset(sc, 0, sizeof(*sc));
    *err = p->errbuf;
    if (args > SKIP_MAX_ARGS || bytes > SKIP_MAX_BULK)
        return TCD_PARSE_ERR;
    sc->skip_args = args;
    sc->skip_bytes = bytes;
    *consumed_out = consumed;
    return TCD_PARSE_TOO_BIG;
}

/* Skip what is left of a refused request, storing nothing. */
static int skip_rest(tcd_scan *sc, const char *buf, size_t len,
                     size_t *consumed, const char **err)
{
    size_t used = 0;
    for (;;) {
        const char *h;
        size_t avail, look;
        long cr;
        long long bl;
        if (sc->skip_bytes) {
            size_t take = len - used;
            if ((unsigned long long)take > sc->skip_bytes)
                take = (size_t)sc->skip_bytes;
            used += take;
            sc->skip_bytes -= take;
            if (sc->skip_bytes)
                break;
        }
        if (sc->skip_args == 0 || used == len)
            break;
        h = buf + used;
        avail = len - used;
        look = avail < HDR_MAX ? avail : HDR_MAX;
        if (h[0] != '$')
            return fail(err, "Protocol error: expected '$' in a request "
                             "being skipped");
        cr = find_crlf(h, look);
        if (cr < 0) {
            if (avail >= HDR_MAX)
                return fail(err, "Protocol error: too big bulk count string");
            break;
        }
        if (parse_ll(h + 1, (size_t)cr - 1, &bl) != 0 || bl < 0)
            return fail(err, "Protocol error: invalid bulk length");
        sc->skip_bytes = (unsigned long long)bl + 2;
        sc->skip_args--;
        used += (size_t)cr + 2;
    }
    *consumed = used;
    return used ? TCD_PARSE_OK : TCD_PARSE_MORE;
}

static int parse_multibulk(tcd_proto *p, tcd_scan *sc, const tcd_limits *lim,
                           const char *buf, size_t len, size_t *consumed,
                           tcd_req **out, const char **err)
{
    if (sc->nargs == 0) {
        size_t look = len < HDR_MAX ? len : HDR_MAX;
        long cr = find_crlf(buf, look);
        long long n;
        if (cr < 0)
            return len >= HDR_MAX
                       ? fail(err, "Protocol error: too big mbulk count string")
                       : TCD_PARSE_MORE;
        if (parse_ll(buf + 1, (size_t)cr - 1, &n) != 0)
            return fail(err, "Protocol error: invalid multibulk length");
        if (n <= 0) { /* `*0` and `*-1`: nothing to run, as in Redis */
            *consumed = (size_t)cr + 2;
            *out = NULL;
            memset(sc, 0, sizeof(*sc));
            return TCD_PARSE_OK;
        }
        if ((unsigned long long)n > lim->max_args)
            return too_big(p, sc, n, 0, (size_t)cr + 2, consumed, err,
                           "Protocol error: invalid multibulk length: %llu "
                           "arguments is over the %s limit of %zu",
                           (unsigned long long)n, lim->max_args,
                           "--max-args");
        sc->nargs = n;
        sc->pos = (size_t)cr + 2;
        sc->seen = 0;
        sc->payload = 0;
    }

    while (sc->seen < sc->nargs) {
        const char *h = buf + sc->pos;
        size_t avail = len - sc->pos;
        size_t look = avail < HDR_MAX ? avail : HDR_MAX;
        long cr;
        long long bl;
        size_t need;
        if (avail == 0)
            return TCD_PARSE_MORE;
        if (h[0] != '$') {
            snprintf(p->errbuf, sizeof(p->errbuf),
                     "Protocol error: expected '$', got '%c'",
                     (h[0] >= 32 && h[0] < 127) ? h[0] : '?');
            return fail(err, p->errbuf);
        }
        cr = find_crlf(h, look);
        if (cr < 0)
            return avail >= HDR_MAX
                       ? fail(err, "Protocol error: too big bulk count string")
                       : TCD_PARSE_MORE;
        if (parse_ll(h + 1, (size_t)cr - 1, &bl) != 0 || bl < 0)
            return fail(err, "Protocol error: invalid bulk length");
        if ((unsigned long long)bl > lim->max_bulk)
            return too_big(p, sc, sc->nargs - sc->seen - 1,
                           (unsigned long long)bl + 2,
                           sc->pos + (size_t)cr + 2, consumed, err,
                           "Protocol error: invalid bulk length: %llu bytes "
                           "is over the %s limit of %zu",
                           (unsigned long long)bl, lim->max_bulk,
                           "--max-bulk");
        need = (size_t)cr + 2 + (size_t)bl + 2;
        if (sc->pos + need > lim->max_request)
            return too_big(p, sc, sc->nargs - sc->seen - 1,
                           (unsigned long long)bl + 2,
                           sc->pos + (size_t)cr + 2, consumed, err,
                           "Protocol error: request of at least %llu bytes "
                           "is over the %s limit of %zu",
                           (unsigned long long)(sc->pos + need),
                           lim->max_request, "--max-request");
        if (avail < need)
            return TCD_PARSE_MORE;
        if (h[need - 2] != '\r' || h[need - 1] != '\n')
            return fail(err, "Protocol error: expected CRLF after bulk");
        sc->pos += need;
        sc->payload += (size_t)bl;
        sc->seen++;
    }

    /* Whole request present and within limits: now allocate and parse. */
    {
        size_t total = sc->pos, strcap;
        char *strings;
        void *obj = NULL;
        int rc;
        tcd_req *req = req_alloc((size_t)sc->nargs, sc->payload, &strings,
                                 &strcap);
        memset(sc, 0, sizeof(*sc));
        if (!req)
            return fail(err, "Protocol error: out of memory");
        p->fill.req = req;
        p->fill.cursor = strings;
        p->fill.end = strings + strcap;
        p->fill.strings = 0;
        p->fill.bad = 0;
        rc = redisReaderFeed(p->reader, buf, total);
        if (rc == REDIS_OK)
            rc = redisReaderGetReply(p->reader, &obj);
        if (rc != REDIS_OK || obj != req || p->fill.bad ||
            p->fill.strings != req->argc || p->reader->len != p->reader->pos) {
            /* Cannot happen after the pre-scan; start from a clean reader. */
            redisReaderFree(p->reader);
            p->reader = reader_new(p);
            tcd_req_free(req);
            if (!p->reader)
                return fail(err, "Protocol error: out of memory");
            return fail(err, "Protocol error: malformed request");
        }
        *consumed = total;
        *out = req;
        return TCD_PARSE_OK;
    }
}

/* Inline command: split like redis-cli / Redis's sdssplitargs. */
static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

/* Split line[0..n) into args. If `req` is NULL only count args and bytes.
 * Returns 0, or -1 for unbalanced quotes. */
static int split_inline(const char *line, size_t n, tcd_req *req, char *dst,
                        size_t *argc_out, size_t *bytes_out)
{
    size_t i = 0, argc = 0, bytes = 0;
    for (;;) {
        size_t start_bytes;
        int inq = 0, insq = 0, done = 0;
        while (i < n && is_space(line[i]))
            i++;
        if (i >= n)
            break;
        start_bytes = bytes;
        if (req)
            req->argv[argc] = dst + start_bytes + argc;
        while (!done) {
            char c = i < n ? line[i] : '\0';
            char emit = 0;
            int has = 0;
            if (inq) {
                if (i >= n)
                    return -1;
                if (c == '\\' && i + 3 < n && line[i + 1] == 'x' &&
                    hexval(line[i + 2]) >= 0 && hexval(line[i + 3]) >= 0) {
                    emit = (char)(hexval(line[i + 2]) * 16 + hexval(line[i + 3]));
                    has = 1;
                    i += 3;
                } else if (c == '\\' && i + 1 < n) {
                    char e = line[++i];
                    emit = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t'
                         : e == 'b' ? '\b' : e == 'a' ? '\a' : e;
                    has = 1;
                } else if (c == '"') {
                    if (i + 1 < n && !is_space(line[i + 1]))
                        return -1;
                    done = 1;
                } else {
                    emit = c;
                    has = 1;
                }
            } else if (insq) {
                if (i >= n)
                    return -1;
                if (c == '\\' && i + 1 < n && line[i + 1] == '\'') {
                    i++;
                    emit = '\'';
                    has = 1;
                } else if (c == '\'') {
                    if (i + 1 < n && !is_space(line[i + 1]))
                        return -1;
                    done = 1;
                } else {
                    emit = c;
                    has = 1;
                }
            } else {
                if (i >= n || is_space(c)) {
                    done = 1;
                } else if (c == '"') {
                    inq = 1;
                } else if (c == '\'') {
                    insq = 1;
                } else {
                    emit = c;
                    has = 1;
                }
            }
            if (has) {
                if (req)
                    dst[bytes + argc] = emit;
                bytes++;
            }
            if (i < n)
                i++;
        }
        if (req) {
            dst[bytes + argc] = '\0';
            req->argl[argc] = bytes - start_bytes;
        }
        argc++;
    }
    *argc_out = argc;
    *bytes_out = bytes;
    return 0;
}

static int parse_inline(tcd_scan *sc, const tcd_limits *lim, const char *buf,
                        size_t len, size_t *consumed, tcd_req **out,
                        const char **err)
{
    size_t look = len < lim->max_inline + 1 ? len : lim->max_inline + 1;
    const char *nl = memchr(buf, '\n', look);
    size_t linelen, argc, bytes, strcap;
    char *strings;
    tcd_req *req;
    (void)sc;
    if (!nl)
        return len > lim->max_inline
                   ? fail(err, "Protocol error: too big inline request")
                   : TCD_PARSE_MORE;
    linelen = (size_t)(nl - buf);
    *consumed = linelen + 1;
    if (linelen > 0 && buf[linelen - 1] == '\r')
        linelen--;
    if (split_inline(buf, linelen, NULL, NULL, &argc, &bytes) != 0)
        return fail(err, "Protocol error: unbalanced quotes in request");
    if (argc == 0) {
        *out = NULL;
        return TCD_PARSE_OK;
    }
    if (argc > lim->max_args)
        return fail(err, "Protocol error: invalid multibulk length");
    req = req_alloc(argc, bytes, &strings, &strcap);
    if (!req)
        return fail(err, "Protocol error: out of memory");
    split_inline(buf, linelen, req, strings, &argc, &bytes);
    *out = req;
    return TCD_PARSE_OK;
}

int tcd_proto_parse(tcd_proto *p, tcd_scan *scan, const tcd_limits *lim,
                    const char *buf, size_t len, size_t *consumed,
                    tcd_req **out, const char **err)
{
    *out = NULL;
    *consumed = 0;
    *err = NULL;
    if (len == 0)
        return TCD_PARSE_MORE;
    if (scan->skip_args || scan->skip_bytes)
        return skip_rest(scan, buf, len, consumed, err);
    if (buf[0] == '*')
        return parse_multibulk(p, scan, lim, buf, len, consumed, out, err);
    return parse_inline(scan, lim, buf, len, consumed, out, err);
}
