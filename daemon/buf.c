#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tcd_buf_free(tcd_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static int reserve(tcd_buf *b, size_t n)
{
    size_t need, cap;
    char *np;
    if (b->oom)
        return -1;
    if (b->cap - b->len >= n)
        return 0;
    if (b->off > 0 && b->off >= b->len / 2) { /* slide down before growing */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return 0;
    }
    need = b->len + n;
    if (need < n) {
        b->oom = 1;
        return -1;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap * 2 > cap ? cap * 2 : need;
    np = realloc(b->p, cap);
    if (!np) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

void tcd_buf_add(tcd_buf *b, const void *data, size_t n)
{
    if (n == 0 || reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

char *tcd_buf_space(tcd_buf *b, size_t n)
{
    if (reserve(b, n) != 0)
        return NULL;
    return b->p + b->len;
}

void tcd_buf_consume(tcd_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len) {
        b->off = b->len = 0;
        if (b->cap > 64 * 1024) { /* do not keep a big idle buffer */
            free(b->p);
            b->p = NULL;
            b->cap = 0;
        }
    }
}

static void add_line(tcd_buf *b, char type, const char *s, size_t n)
{
    if (reserve(b, n + 3) != 0)
        return;
    b->p[b->len++] = type;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
}

void tcd_reply_status(tcd_buf *b, const char *s)
{
    add_line(b, '+', s, strlen(s));
}

void tcd_reply_error(tcd_buf *b, const char *text)
{
    size_t n = strlen(text), at;
    add_line(b, '-', text, n);
    if (b->oom)
        return;
    at = b->len - n - 2;
    for (size_t i = 0; i < n; i++)
        if (b->p[at + i] == '\r' || b->p[at + i] == '\n')
            b->p[at + i] = ' ';
}

void tcd_reply_errorf(tcd_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    tcd_reply_error(b, tmp);
}

/* ":123\r\n", "$5\r\n", "*2\r\n" */
static void add_num(tcd_buf *b, char type, long long v)
{
    char tmp[24];
    char *e = tmp + sizeof(tmp), *q = e;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
                                 : (unsigned long long)v;
    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--q = '-';
    add_line(b, type, q, (size_t)(e - q));
}

void tcd_reply_int(tcd_buf *b, long long v)
{
    add_num(b, ':', v);
}

void tcd_reply_bulk(tcd_buf *b, const void *data, size_t n)
{
    if (reserve(b, n + 32) != 0)
        return;
    add_num(b, '$', (long long)n);
    tcd_buf_add(b, data, n);
    tcd_buf_add(b, "\r\n", 2);
}

void tcd_reply_cstr(tcd_buf *b, const char *s)
{
    tcd_reply_bulk(b, s, strlen(s));
}

void tcd_reply_nil(tcd_buf *b)
{
    tcd_buf_add(b, "$-1\r\n", 5);
}

void tcd_reply_array(tcd_buf *b, long long n)
{
    add_num(b, '*', n);
}
