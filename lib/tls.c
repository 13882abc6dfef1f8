/* TLS: OpenSSL client context, handshake, verification, I/O steps. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "error.h"
#include "tls.h"

struct tc__tls {
    SSL_CTX *ctx; /* owned; configured in tc__tls_create, then read-only */
    int insecure;
};

struct tc__tls_session {
    SSL *ssl;        /* owned; owns its BIO */
    char name[256];  /* the expected server name, for messages */
    tc_result cls;   /* after TC__IO_ERROR */
    char err[240];   /* after TC__IO_ERROR */
};

/* ---- A socket BIO that cannot raise SIGPIPE ----------------------------
 * OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when
 * the peer has gone. Ours sends with MSG_NOSIGNAL. The fd is the BIO's
 * data; the BIO never closes it. */

static int bio_write(BIO *b, const char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    ssize_t n;
    BIO_clear_retry_flags(b);
    do
        n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    ssize_t n;
    BIO_clear_retry_flags(b);
    do
        n = recv(fd, buf, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    return (int)n;
}

static int bio_puts(BIO *b, const char *s)
{
    return bio_write(b, s, (int)strlen(s));
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    /* Nothing is buffered here: a flush has nothing to do; every other
     * control (fd queries, kTLS, datagram MTU...) is unsupported. */
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *nosig_method; /* built once, never freed */
static pthread_once_t nosig_once = PTHREAD_ONCE_INIT;

static void nosig_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "tiercache socket");
    if (!m)
        return;
    if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
        !BIO_meth_set_puts(m, bio_puts) || !BIO_meth_set_ctrl(m, bio_ctrl) ||
        !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return;
    }
    nosig_method = m;
}

/* ---- Context ----------------------------------------------------------- */

/* The first queued OpenSSL error as text (and clear the queue). */
static const char *ssl_errtext(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(buf, len, "unknown OpenSSL error");
    } else {
        const char *reason = ERR_reason_error_string(e);
        if (reason)
            snprintf(buf, len, "%s", reason);
        else
            ERR_error_string_n(e, buf, len);
    }
    ERR_clear_error();
    return buf;
}

tc_result tc__tls_create(const tc__tls_opts *o, tc__tls **out)
{
    char e[160];
    tc__tls *t;
    SSL_CTX *ctx;

    if ((o->key_file != NULL) != (o->cert_file != NULL))
        return tc__fail(TC_BAD_ARGUMENT,
                        "TLS: a client certificate needs its key and the "
                        "key its certificate (tls_cert_file, tls_key_file)");
    pthread_once(&nosig_once, nosig_init);
    if (!nosig_method)
        return tc__fail(TC_NO_MEMORY, "TLS: cannot make the socket BIO");
    t = calloc(1, sizeof(*t));
    if (!t)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        free(t);
        return tc__fail(TC_NO_MEMORY, "TLS: cannot create a context: %s",
                        ssl_errtext(e, sizeof(e)));
    }
    t->ctx = ctx;
    t->insecure = o->insecure;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A server that closes without close_notify (killed, restarted) is an
     * end of stream, as on plain TCP, not a protocol error. */
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF /* OpenSSL 3; 1.1.1 reports it as
                                      SSL_ERROR_SYSCALL with errno 0 */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (o->ca_file || o->ca_dir) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, o->ca_dir) != 1) {
            tc__tls_free(t);
            return tc__fail(TC_BAD_ARGUMENT, "TLS: cannot load CA %s %s: %s",
                            o->ca_file ? "file" : "directory",
                            o->ca_file ? o->ca_file : o->ca_dir,
                            ssl_errtext(e, sizeof(e)));
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tc__tls_free(t);
        return tc__fail(TC_BAD_ARGUMENT,
                        "TLS: cannot load the system's CA store: %s",
                        ssl_errtext(e, sizeof(e)));
    }
    if (o->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
            tc__tls_free(t);
            return tc__fail(TC_BAD_ARGUMENT,
                            "TLS: cannot load client certificate %s: %s",
                            o->cert_file, ssl_errtext(e, sizeof(e)));
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) !=
            1) {
            tc__tls_free(t);
            return tc__fail(TC_BAD_ARGUMENT,
                            "TLS: cannot load client key %s: %s", o->key_file,
                            ssl_errtext(e, sizeof(e)));
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            tc__tls_free(t);
            return tc__fail(TC_BAD_ARGUMENT,
                            "TLS: client key %s does not match certificate "
                            "%s", o->key_file, o->cert_file);
        }
    }
    SSL_CTX_set_verify(ctx, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       NULL);
    *out = t;
    return TC_OK;
}

void tc__tls_free(tc__tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

/* ---- Sessions ---------------------------------------------------------- */

static int is_ip_literal(const char *name)
{
    unsigned char a[16];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

tc__tls_session *tc__tls_session_new(const tc__tls *t, int fd,
                                     const char *server_name, tc_result *why)
{
    tc__tls_session *s = calloc(1, sizeof(*s));
    BIO *bio = NULL;
    int ip = is_ip_literal(server_name);

    ERR_clear_error();
    if (!s || !(s->ssl = SSL_new(t->ctx)) ||
        !(bio = BIO_new(nosig_method)))
        goto oom;
    snprintf(s->name, sizeof(s->name), "%s", server_name);
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(s->ssl, bio, bio); /* the SSL owns the BIO from here */
    bio = NULL;
    if (!ip && SSL_set_tlsext_host_name(s->ssl, server_name) != 1)
        goto oom;
    if (!t->insecure) {
        X509_VERIFY_PARAM *p = SSL_get0_param(s->ssl);
        /* No wildcard in the middle of a label ("f*o.example.com"). */
        X509_VERIFY_PARAM_set_hostflags(p,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (ip ? X509_VERIFY_PARAM_set1_ip_asc(p, server_name) != 1
               : X509_VERIFY_PARAM_set1_host(p, server_name, 0) != 1)
            goto oom;
    }
    SSL_set_connect_state(s->ssl);
    return s;
oom:
    ERR_clear_error();
    BIO_free(bio);
    tc__tls_session_free(s);
    *why = tc__fail(TC_NO_MEMORY, "TLS: out of memory starting a session");
    return NULL;
}

void tc__tls_session_free(tc__tls_session *s)
{
    if (!s)
        return;
    /* No close_notify: Redis does not need one, and sending it on a dead
     * connection is one more chance to fail. */
    SSL_free(s->ssl);
    free(s);
}

static int fail(tc__tls_session *s, tc_result cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(tc__tls_session *s, tc_result cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    s->cls = cls;
    ERR_clear_error();
    return TC__IO_ERROR;
}

/* Turn a failed SSL_* call (its return `ret`) into a step result. */
static int step_result(tc__tls_session *s, int ret, int reading)
{
    int err = SSL_get_error(s->ssl, ret);
    int saved_errno = errno;
    unsigned long e;
    long v;
    char txt[160];

    switch (err) {
    case SSL_ERROR_WANT_READ:
        return TC__IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TC__IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        if (reading)
            return 0;
        return fail(s, TC_L2_UNAVAILABLE, "TLS: connection closed by the "
                                          "server");
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        (void)ret;
        if (saved_errno == 0) {
            if (reading)
                return 0;
            return fail(s, TC_L2_UNAVAILABLE,
                        "TLS: connection closed by the server");
        }
        if (saved_errno == EPIPE || saved_errno == ECONNRESET)
            return fail(s, TC_L2_UNAVAILABLE,
                        "TLS: connection closed by the server (%s)",
                        strerror(saved_errno));
        return fail(s, TC_L2_UNAVAILABLE, "TLS: %s", strerror(saved_errno));
    default:
        break;
    }
    v = SSL_get_verify_result(s->ssl);
    if (v != X509_V_OK) {
        if (v == X509_V_ERR_HOSTNAME_MISMATCH ||
            v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            return fail(s, TC_AUTH,
                        "TLS: the server's certificate is not valid for "
                        "host name '%s' (set tls_server_name if it serves "
                        "another name)", s->name);
        return fail(s, TC_AUTH,
                    "TLS: server certificate verification failed: %s "
                    "(check tls_ca_file / tls_ca_dir)",
                    X509_verify_cert_error_string(v));
    }
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
        switch (ERR_GET_REASON(e)) {
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
            return fail(s, TC_AUTH,
                        "TLS: the server requires a client certificate "
                        "(set tls_cert_file and tls_key_file): %s",
                        ssl_errtext(txt, sizeof(txt)));
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
            return fail(s, TC_AUTH,
                        "TLS: the server refused our client certificate: %s",
                        ssl_errtext(txt, sizeof(txt)));
        case SSL_R_WRONG_VERSION_NUMBER:
            return fail(s, TC_L2_UNAVAILABLE,
                        "TLS: %s (is this a TLS port?)",
                        ssl_errtext(txt, sizeof(txt)));
        default:
            break;
        }
    }
    return fail(s, TC_L2_UNAVAILABLE, "TLS: %s", ssl_errtext(txt, sizeof(txt)));
}

int tc__tls_handshake(tc__tls_session *s)
{
    int rc;
    ERR_clear_error();
    errno = 0;
    rc = SSL_do_handshake(s->ssl);
    return rc == 1 ? 1 : step_result(s, rc, 0);
}

ssize_t tc__tls_read(tc__tls_session *s, void *buf, size_t len)
{
    size_t got = 0;
    int rc;
    ERR_clear_error();
    errno = 0;
    rc = SSL_read_ex(s->ssl, buf, len, &got);
    return rc == 1 ? (ssize_t)got : step_result(s, rc, 1);
}

ssize_t tc__tls_write(tc__tls_session *s, const void *buf, size_t len)
{
    size_t put = 0;
    int rc;
    ERR_clear_error();
    errno = 0;
    rc = SSL_write_ex(s->ssl, buf, len, &put);
    return rc == 1 ? (ssize_t)put : step_result(s, rc, 0);
}

int tc__tls_pending(tc__tls_session *s)
{
    return SSL_pending(s->ssl) > 0;
}

tc_result tc__tls_error(const tc__tls_session *s, const char **msg)
{
    *msg = s->err;
    return s->cls;
}
