/*
 * TLS for Redis connections: an OpenSSL client context (CA, client
 * certificate, verification policy) and the sessions made from it.
 *
 * A tc__tls is built once from the configuration and is immutable after
 * tc__tls_create(): any thread may make sessions from it concurrently
 * (OpenSSL allows SSL_new on a shared SSL_CTX that is no longer modified).
 * A tc__tls_session belongs to one connection and is used by one thread at
 * a time (the connection's owner).
 *
 * Sessions do their socket I/O through a BIO of our own that sends with
 * MSG_NOSIGNAL, so a peer that closed the connection never raises SIGPIPE
 * in the host process. Every step is non-blocking: the socket must be
 * O_NONBLOCK and the caller polls for the direction a step asks for.
 */
#ifndef TC_TLS_H
#define TC_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "tiercache.h"

/** Results of one non-blocking transport step (plain or TLS), besides a
 *  byte count > 0 or 0 (orderly end of stream, reads only). */
enum {
    TC__IO_ERROR = -1,      /* failed: see the session's detail */
    TC__IO_WANT_READ = -2,  /* poll for POLLIN, then call again */
    TC__IO_WANT_WRITE = -3  /* poll for POLLOUT, then call again */
};

/** What a tc__tls is built from: strings are borrowed for the call. */
typedef struct tc__tls_opts {
    const char *ca_file;     /* PEM bundle; NULL: see ca_dir */
    const char *ca_dir;      /* c_rehash'ed directory; with neither, the
                                system's default trust store */
    const char *cert_file;   /* client certificate chain (PEM) or NULL */
    const char *key_file;    /* its private key (PEM); needs cert_file */
    int insecure;            /* 1: no certificate or name verification */
} tc__tls_opts;

typedef struct tc__tls tc__tls;
typedef struct tc__tls_session tc__tls_session;

/** Build a client context. TC_BAD_ARGUMENT with detail in tc_errmsg() when
 *  a file cannot be loaded or the key does not match the certificate;
 *  TC_NO_MEMORY. On success `*out` is the caller's, freed by
 *  tc__tls_free(). Thread-safe (OpenSSL 1.1+ initialises itself). */
tc_result tc__tls_create(const tc__tls_opts *o, tc__tls **out);
/** Free a context once no session made from it remains. NULL is a no-op. */
void tc__tls_free(tc__tls *t);

/**
 * A session on the connected, non-blocking socket `fd` (borrowed: the
 * caller keeps and closes it). `server_name` (copied; a DNS name or an IP
 * literal) is checked against the certificate unless the context is
 * insecure, and sent as SNI when it is a DNS name. NULL + TC_NO_MEMORY on
 * failure (detail in tc_errmsg()).
 */
tc__tls_session *tc__tls_session_new(const tc__tls *t, int fd,
                                     const char *server_name, tc_result *why);
void tc__tls_session_free(tc__tls_session *s);

/** One handshake step: 1 when done, or a TC__IO_* code. */
int tc__tls_handshake(tc__tls_session *s);
/** Up to `len` bytes of plaintext: > 0, 0 at the end of the stream, or a
 *  TC__IO_* code. */
ssize_t tc__tls_read(tc__tls_session *s, void *buf, size_t len);
/** Write up to `len` (> 0) bytes: the count written or a TC__IO_* code. */
ssize_t tc__tls_write(tc__tls_session *s, const void *buf, size_t len);
/** 1 when plaintext is buffered in the session (poll would not show it). */
int tc__tls_pending(tc__tls_session *s);

/** After TC__IO_ERROR: the result class (TC_AUTH when either side refused
 *  the other's certificate, TC_L2_UNAVAILABLE otherwise) and a message
 *  owned by the session, valid until its next call or free. */
tc_result tc__tls_error(const tc__tls_session *s, const char **msg);

#endif
