/* Checking a pipeline's replies in the daemon's pipelining suites
 * (test_pipeline.c, test_cluster_pipeline.c): the reply wanted at each
 * place, WANT() to append one, expect_reply() to check one, send_all() to
 * write a batch of appended requests before reading any reply. One copy
 * here instead of one per suite. Test-only; runs on the test's thread. */
#ifndef TCD_TESTS_PIPELINED_H
#define TCD_TESTS_PIPELINED_H

#include "crit.h" /* Criterion, or the TSan build's shim */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* One expected reply: type and text (integers as text; an array as its
 * elements joined by ","; an error as the start of its text). */
typedef struct want {
    int type;
    char text[64];
} want;

/* Asserts that reply `r` (borrowed), number `i`, is what `w` wants. */
static inline void expect_reply(redisReply *r, const want *w, int i)
{
    char got[64] = "";
    cr_assert_not_null(r, "reply %d missing", i);
    if (r->type == REDIS_REPLY_INTEGER)
        snprintf(got, sizeof(got), "%lld", r->integer);
    else if (r->str)
        snprintf(got, sizeof(got), "%.*s", (int)(r->len > 63 ? 63 : r->len),
                 r->str);
    else if (r->type == REDIS_REPLY_ARRAY)
        for (size_t k = 0; k < r->elements; k++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
                     k ? "," : "",
                     r->element[k]->str ? r->element[k]->str : "nil");
    cr_assert_eq(r->type, w->type, "reply %d: type %d (%s), want %d (%s)", i,
                 r->type, got, w->type, w->text);
    if (w->type == REDIS_REPLY_ERROR)
        cr_assert(!strncmp(got, w->text, strlen(w->text)),
                  "reply %d: '%s', want '%s...'", i, got, w->text);
    else if (w->type != REDIS_REPLY_NIL)
        cr_assert_str_eq(got, w->text, "reply %d", i);
}

/* Reads replies number `from` up to `to` (excluded) from `c` and asserts
 * each is what ws[i] wants; returns `to`. */
static inline int expect_replies(redisContext *c, const want *ws, int from,
                                 int to)
{
    for (int i = from; i < to; i++) {
        void *rep = NULL;
        cr_assert_eq(redisGetReply(c, &rep), REDIS_OK, "reply %d: %s", i,
                     c->errstr);
        expect_reply(rep, &ws[i], i);
        freeReplyObject(rep);
    }
    return to;
}

/* Appends a wanted reply of type `ty`, its text printf-style, to `ws[n++]`
 * (`want *ws`, `int n` and the bound `MAX` in scope). */
#define WANT(ty, ...)                                                       \
    do {                                                                    \
        cr_assert_lt(n, MAX);                                               \
        ws[n].type = (ty);                                                  \
        snprintf(ws[n].text, sizeof(ws[n].text), __VA_ARGS__);              \
        n++;                                                                \
    } while (0)

/* Write what was appended to `c` without reading any reply. */
static inline void send_all(redisContext *c)
{
    int done = 0;
    while (!done)
        cr_assert_eq(redisBufferWrite(c, &done), REDIS_OK, "%s", c->errstr);
}

#endif
