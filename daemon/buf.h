/*
 * Growable byte buffer and RESP2 reply encoders. A tcd_buf is owned by one
 * thread at a time (a client's output in the loop, a job's reply in a worker).
 * Allocation failure sets `oom` and drops further output; the owner then
 * closes the connection instead of sending a truncated reply.
 */
#ifndef TCD_BUF_H
#define TCD_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct tcd_buf {
    char *p;
    size_t off; /* bytes already consumed from the front */
    size_t len; /* bytes written, including consumed ones */
    size_t cap;
    int oom;
} tcd_buf;

void tcd_buf_free(tcd_buf *b);
/** Bytes not yet consumed. */
static inline size_t tcd_buf_pending(const tcd_buf *b) { return b->len - b->off; }
void tcd_buf_add(tcd_buf *b, const void *data, size_t n);
/** Make room for n more bytes and return where they go (NULL on failure);
 *  the caller fills some and adds their count to b->len. */
char *tcd_buf_space(tcd_buf *b, size_t n);
/** Mark n bytes consumed; compacts or frees storage when it pays off. */
void tcd_buf_consume(tcd_buf *b, size_t n);

void tcd_reply_status(tcd_buf *b, const char *s);          /* +s */
/** -text; `text` must carry its own code ("ERR ...", "NOAUTH ...").
 *  CR and LF inside are replaced by spaces, as Redis does. */
void tcd_reply_error(tcd_buf *b, const char *text);
void tcd_reply_errorf(tcd_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void tcd_reply_int(tcd_buf *b, long long v);
void tcd_reply_bulk(tcd_buf *b, const void *data, size_t n);
void tcd_reply_cstr(tcd_buf *b, const char *s);             /* bulk */
void tcd_reply_nil(tcd_buf *b);
void tcd_reply_array(tcd_buf *b, long long n);

#endif
