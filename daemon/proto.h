/*
 * Request parsing for tiercached: RESP arrays of bulk strings (what every
 * client library sends) and inline commands (what a person types into
 * redis-cli or telnet).
 *
 * Untrusted lengths are checked before anything is allocated from them: a
 * resumable pre-scan walks the `*N` and `$L` headers of the request at the
 * front of the client's input, rejects absurd counts and lengths at once, and
 * only when the whole request is present (and within the limits) is it handed
 * to hiredis's redisReader, whose object callbacks copy the arguments into one
 * block sized from the already-validated totals.
 *
 * Thread safety: a tcd_proto (it owns one redisReader) is used by one thread
 * at a time; the event loop owns the daemon's. A tcd_req may move between
 * threads once parsed.
 */
#ifndef TCD_PROTO_H
#define TCD_PROTO_H

#include <stddef.h>

/** Limits applied to every request before allocation. */
typedef struct tcd_limits {
    size_t max_args;    /* elements in one multibulk array */
    size_t max_bulk;    /* bytes in one bulk string */
    size_t max_request; /* bytes in one whole request, headers included */
    size_t max_inline;  /* bytes in one inline command line */
} tcd_limits;

/** One parsed command: argc arguments, each NUL-terminated (binary-safe by
 *  argl). A single allocation, freed with tcd_req_free(). */
typedef struct tcd_req {
    int argc;
    char **argv;
    size_t *argl;
} tcd_req;

void tcd_req_free(tcd_req *r);

/** Resumable scan state of the request at the front of one client's input.
 *  Zero-initialise; tcd_proto_parse() resets it after every request. */
typedef struct tcd_scan {
    size_t pos;        /* bytes of the current request already validated */
    long long nargs;   /* declared element count; 0 until `*N` was read */
    long long seen;    /* elements fully present and validated */
    size_t payload;    /* sum of element lengths validated so far */
    /* Skipping the rest of a request refused as too big: */
    long long skip_args;           /* element headers still to skip */
    unsigned long long skip_bytes; /* bytes of the current element left */
} tcd_scan;

typedef struct tcd_proto tcd_proto;

/** Returns NULL on allocation failure. */
tcd_proto *tcd_proto_create(void);
void tcd_proto_free(tcd_proto *p);

enum {
    TCD_PARSE_OK = 0,   /* *consumed bytes used; *out is a request or NULL
                           (an empty request, e.g. a blank line: skip it) */
    TCD_PARSE_MORE = 1, /* the request is incomplete: read more and call
                           again with the same bytes plus the new ones */
    TCD_PARSE_ERR = 2,  /* protocol error: *err is static text such as
                           "Protocol error: invalid bulk length"; reply
                           "-ERR <text>" and close the connection */
    TCD_PARSE_TOO_BIG = 3 /* a well-formed request over a limit: *err names
                           the limit and its flag (text valid until the next
                           call). *consumed bytes are used; reply "-ERR
                           <text>" and keep parsing: the following calls skip
                           the rest of the request (returning TCD_PARSE_OK
                           with *out == NULL) without storing it. Or treat
                           it as TCD_PARSE_ERR and close. */
};

/**
 * Parse the request at the front of buf[0..len). `scan` carries progress on
 * an incomplete request between calls. On TCD_PARSE_OK, *out (if not NULL)
 * is the caller's, to be freed with tcd_req_free().
 */
int tcd_proto_parse(tcd_proto *p, tcd_scan *scan, const tcd_limits *lim,
                    const char *buf, size_t len, size_t *consumed,
                    tcd_req **out, const char **err);

#endif
