/* Options, redis:// and unix:// URLs, and the environment. */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "parse.h"
#include "sentinel.h"
#include "cluster.h"
#include "tls.h"

/* Parts of a URL; strings point into `buf`, owned by the struct. */
typedef struct url_parts {
    char *buf;
    const char *host, *unix_path, *username, *password;
    int port; /* 0 = not given */
    int db;   /* -1 = not given */
    int tls;  /* 1: rediss:// */
    /* redis-sentinel://: the sentinels, the master's name, and the
     * sentinels' own credentials (query parameters). */
    unsigned nsentinels;
    const char *sentinel_host[TC__MAX_SENTINELS];
    int sentinel_port[TC__MAX_SENTINELS]; /* 0 = not given */
    const char *master, *sentinel_username, *sentinel_password;
    /* redis-cluster:// (issue 10): the seed nodes. */
    unsigned ncluster;
    const char *cluster_host[TC__CLUSTER_MAX_SEEDS];
    int cluster_port[TC__CLUSTER_MAX_SEEDS]; /* 0 = not given */
    const char *bus_relay; /* ?bus_relay= (relay.c), decoded */
} url_parts;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decode [s, e) into `out` (NUL-terminated); -1 on a bad escape. */
static int pct_decode(const char *s, const char *e, char *out)
{
    while (s < e) {
        if (*s == '%') {
            int h, l;
            if (e - s < 3 || (h = hexval(s[1])) < 0 || (l = hexval(s[2])) < 0)
                return -1;
            *out++ = (char)(h * 16 + l);
            s += 3;
        } else {
            *out++ = *s++;
        }
    }
    *out = '\0';
    return 0;
}

/* A number in [lo, hi] spelling all of [s, e) (parse.h). */
static int parse_int(const char *s, const char *e, long lo, long hi, long *v)
{
    uint64_t x;
    if (tc__parse_u64(s, (size_t)(e - s), (uint64_t)lo, (uint64_t)hi, &x))
        return -1;
    *v = (long)x;
    return 0;
}

static tc_result bad_url(url_parts *u, const char *why)
{
    free(u->buf);
    memset(u, 0, sizeof(*u));
    /* The URL itself is not repeated: it may carry a password. */
    return tc__fail(TC_BAD_ARGUMENT, "malformed Redis URL: %s", why);
}

/* "user:pass@" or "pass@" (redis-cli style ":pass@") before the host. */
static tc_result parse_userinfo(url_parts *u, const char *s, const char *e,
                                char **w)
{
    const char *colon = memchr(s, ':', (size_t)(e - s));
    if (colon) {
        if (colon > s) {
            if (pct_decode(s, colon, *w))
                return bad_url(u, "bad %-escape in user name");
            u->username = *w;
            *w += strlen(*w) + 1;
        }
        s = colon + 1;
    }
    if (pct_decode(s, e, *w))
        return bad_url(u, "bad %-escape in password");
    /* Without a colon, "redis://secret@host" is the password-only form. */
    if (**w)
        u->password = *w;
    *w += strlen(*w) + 1;
    return TC_OK;
}

/* Does [q, end) start with `name`? */
static int has_param(const char *q, const char *end, const char *name)
{
    size_t n = strlen(name);
    return (size_t)(end - q) > n && strncmp(q, name, n) == 0;
}

/* db=N and bus_relay=...; for redis-sentinel:// (`sentinel`) also
 * sentinel_username= and sentinel_password=, decoded into *w. */
static tc_result parse_query(url_parts *u, const char *q, const char *e,
                             int sentinel, char **w)
{
    while (q < e) {
        const char *amp = memchr(q, '&', (size_t)(e - q));
        const char *end = amp ? amp : e;
        const char **dst = NULL;
        size_t skip = 0;
        long v;
        if (has_param(q, end, "db=")) {
            if (parse_int(q + 3, end, 0, 1 << 20, &v))
                return bad_url(u, "db must be a number from 0");
            u->db = (int)v;
        } else if (has_param(q, end, "bus_relay=")) {
            dst = &u->bus_relay, skip = 10;
        } else if (sentinel && has_param(q, end, "sentinel_username=")) {
            dst = &u->sentinel_username, skip = 18;
        } else if (sentinel && has_param(q, end, "sentinel_password=")) {
            dst = &u->sentinel_password, skip = 18;
        } else if (end > q) {
            return bad_url(u, sentinel
                                  ? "unknown query parameter (known: db=, "
                                    "bus_relay=, sentinel_username=, "
                                    "sentinel_password=)"
                                  : "unknown query parameter (known: db=, "
                                    "bus_relay=)");
        }
        if (dst) {
            if (pct_decode(q + skip, end, *w))
                return bad_url(u, "bad %-escape in a query parameter");
            *dst = *w;
            *w += strlen(*w) + 1;
        }
        q = amp ? amp + 1 : e;
    }
    return TC_OK;
}

/* "host[:port]" or "[ipv6][:port]" spelling all of [p, hend): the host,
 * decoded into *w, and the port (0 when not given). */
static tc_result parse_host(url_parts *u, const char *p, const char *hend,
                            char **w, const char **host, int *port)
{
    const char *pcolon = NULL;
    *host = NULL;
    *port = 0;
    if (p < hend && *p == '[') { /* [ipv6]:port */
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb)
            return bad_url(u, "unclosed '[' in host");
        memcpy(*w, p + 1, (size_t)(rb - p - 1));
        (*w)[rb - p - 1] = '\0';
        if (rb + 1 < hend) {
            if (rb[1] != ':')
                return bad_url(u, "junk after ']' in host");
            pcolon = rb + 1;
        }
    } else {
        pcolon = memchr(p, ':', (size_t)(hend - p));
        if (pct_decode(p, pcolon ? pcolon : hend, *w))
            return bad_url(u, "bad %-escape in host");
    }
    if (**w) {
        *host = *w;
        *w += strlen(*w) + 1;
    }
    if (pcolon) {
        long v;
        if (parse_int(pcolon + 1, hend, 1, 65535, &v))
            return bad_url(u, "port must be a number from 1 to 65535");
        *port = (int)v;
    }
    for (const char *s = *host ? *host : ""; *s; s++)
        if (isspace((unsigned char)*s) || *s == '@' || *s == '/' ||
            *s == ',')
            return bad_url(u, "invalid character in host");
    if (!*host)
        return bad_url(u, "missing host");
    return TC_OK;
}

/* "[userinfo@]h1[:p1][,h2[:p2]...]" from `p` to `end`: the user info, then
 * up to `max` hosts into hosts/ports (*n of them); `too_many` is the
 * error past that. Shared by the Sentinel and Cluster URLs. */
static tc_result parse_host_list(url_parts *u, const char *p, const char *end,
                                 char **w, const char **hosts, int *ports,
                                 unsigned *n, unsigned max,
                                 const char *too_many)
{
    const char *at = NULL;
    tc_result r;
    for (const char *s = p; s < end; s++)
        if (*s == '@')
            at = s;
    if (at) {
        if ((r = parse_userinfo(u, p, at, w)) != TC_OK)
            return r;
        p = at + 1;
    }
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *hend = comma ? comma : end;
        /* [ipv6] may hold no comma, so the first ',' ends this entry. */
        if (*n == max)
            return bad_url(u, too_many);
        if ((r = parse_host(u, p, hend, w, &hosts[*n], &ports[*n])) != TC_OK)
            return r;
        (*n)++;
        p = hend + 1;
    }
    return TC_OK;
}

/* redis-sentinel://[user:pass@]h1[:p1][,h2[:p2]...]/master[/db][?query]
 * from `p` (after the scheme) to `e`. user:pass are the master's. */
static tc_result parse_sentinel_url(url_parts *u, const char *p,
                                    const char *e, char **w)
{
    const char *q = memchr(p, '?', (size_t)(e - p)), *slash;
    const char *name, *name_end;
    tc_result r;
    if (q) {
        if ((r = parse_query(u, q + 1, e, 1, w)) != TC_OK)
            return r;
        e = q;
    }
    slash = memchr(p, '/', (size_t)(e - p));
    if (!slash)
        return bad_url(u, "redis-sentinel:// needs /master-name after the "
                          "sentinels");
    if ((r = parse_host_list(u, p, slash, w, u->sentinel_host,
                             u->sentinel_port, &u->nsentinels,
                             TC__MAX_SENTINELS,
                             "too many sentinels (at most 16)")) != TC_OK)
        return r;
    name = slash + 1;
    name_end = memchr(name, '/', (size_t)(e - name));
    if (!name_end)
        name_end = e;
    if (name == name_end)
        return bad_url(u, "missing master name after the sentinels");
    if (pct_decode(name, name_end, *w))
        return bad_url(u, "bad %-escape in master name");
    u->master = *w;
    *w += strlen(*w) + 1;
    for (const char *s = u->master; *s; s++)
        if (isspace((unsigned char)*s))
            return bad_url(u, "invalid character in master name");
    if (name_end < e && name_end + 1 < e) {
        long v;
        if (parse_int(name_end + 1, e, 0, 1 << 20, &v))
            return bad_url(u, "database must be a number from 0");
        u->db = (int)v;
    }
    return TC_OK;
}

/* redis-cluster://[user:pass@]h1[:p1][,h2[:p2]...][/][?query] (rediss-
 * for TLS) from `p` (after the scheme) to `e`: the seed nodes. */
static tc_result parse_cluster_url(url_parts *u, const char *p, const char *e,
                                   char **w)
{
    const char *q = memchr(p, '?', (size_t)(e - p)), *end;
    tc_result r;
    if (q) {
        if ((r = parse_query(u, q + 1, e, 0, w)) != TC_OK)
            return r;
        e = q;
    }
    end = memchr(p, '/', (size_t)(e - p));
    if (end && end + 1 < e)
        return bad_url(u, "redis-cluster:// has no database (a cluster "
                          "only has db 0)");
    if (!end)
        end = e;
    if ((r = parse_host_list(u, p, end, w, u->cluster_host, u->cluster_port,
                             &u->ncluster, TC__CLUSTER_MAX_SEEDS,
                             "too many cluster seed nodes (at most 16)")) !=
        TC_OK)
        return r;
    return TC_OK;
}

static tc_result parse_url(const char *url, url_parts *u)
{
    size_t n = strlen(url);
    const char *p, *e = url + n, *q, *at, *slash;
    char *w;
    tc_result r;

    memset(u, 0, sizeof(*u));
    u->db = -1;
    u->buf = malloc(n * 2 + 8);
    if (!u->buf)
        return tc__fail(TC_NO_MEMORY, "out of memory parsing URL");
    w = u->buf;

    if (strncasecmp(url, "redis-sentinel://", 17) == 0)
        return parse_sentinel_url(u, url + 17, e, &w);
    if (strncasecmp(url, "redis-cluster://", 16) == 0)
        return parse_cluster_url(u, url + 16, e, &w);
    if (strncasecmp(url, "rediss-cluster://", 17) == 0) {
        u->tls = 1;
        return parse_cluster_url(u, url + 17, e, &w);
    }
    if (strncasecmp(url, "redis://", 8) == 0 ||
        strncasecmp(url, "rediss://", 9) == 0) {
        u->tls = url[5] == 's' || url[5] == 'S';
        p = url + (u->tls ? 9 : 8);
        q = memchr(p, '?', (size_t)(e - p));
        if (q) {
            if ((r = parse_query(u, q + 1, e, 0, &w)) != TC_OK)
                return r;
            e = q;
        }
        slash = memchr(p, '/', (size_t)(e - p));
        at = NULL;
        for (const char *s = p; s < (slash ? slash : e); s++)
            if (*s == '@')
                at = s; /* the last '@' ends the userinfo */
        if (at) {
            if ((r = parse_userinfo(u, p, at, &w)) != TC_OK)
                return r;
            p = at + 1;
        }
        if ((r = parse_host(u, p, slash ? slash : e, &w, &u->host,
                            &u->port)) != TC_OK)
            return r;
        if (slash && slash + 1 < e) {
            long v;
            if (parse_int(slash + 1, e, 0, 1 << 20, &v))
                return bad_url(u, "database must be a number from 0");
            u->db = (int)v;
        }
        return TC_OK;
    }
    if (strncasecmp(url, "unix://", 7) == 0) {
        p = url + 7;
        q = memchr(p, '?', (size_t)(e - p));
        if (q) {
            if ((r = parse_query(u, q + 1, e, 0, &w)) != TC_OK)
                return r;
            e = q;
        }
        at = NULL;
        if (*p != '/') { /* unix://[user:pass@]/path */
            at = memchr(p, '@', (size_t)(e - p));
            if (!at)
                return bad_url(u, "unix socket path must be absolute");
            if ((r = parse_userinfo(u, p, at, &w)) != TC_OK)
                return r;
            p = at + 1;
        }
        if (p >= e || *p != '/')
            return bad_url(u, "unix socket path must be absolute");
        if (pct_decode(p, e, w))
            return bad_url(u, "bad %-escape in path");
        u->unix_path = w;
        return TC_OK;
    }
    return bad_url(u, "scheme must be redis://, rediss://, unix://, "
                      "redis-sentinel:// or redis-cluster://");
}

tc_result tc_options_parse_url(tc_options *opts, const char *url,
                               char *storage, size_t storage_len)
{
    url_parts u;
    tc_result r;
    size_t need = 0;
    char *w = storage;
    const char **dst[4];
    const char *src[4];

    if (!opts || !url || !storage)
        return tc__fail(TC_BAD_ARGUMENT, "NULL argument");
    if ((r = parse_url(url, &u)) != TC_OK)
        return r;
    if (u.nsentinels || u.ncluster || u.bus_relay) {
        /* tc_options has no fields for sentinels, cluster seeds or the
         * bus relay: keep
         * the URL itself
         * (copied into storage) for tc_cache_create() to read. */
        size_t len = strlen(url) + 1;
        free(u.buf);
        if (len > storage_len)
            return tc__fail(TC_BAD_ARGUMENT,
                            "URL storage too small (%zu < %zu)", storage_len,
                            len);
        memcpy(storage, url, len);
        opts->url = storage;
        return TC_OK;
    }
    src[0] = u.host, src[1] = u.unix_path, src[2] = u.username,
    src[3] = u.password;
    for (int i = 0; i < 4; i++)
        need += src[i] ? strlen(src[i]) + 1 : 0;
    if (need > storage_len) {
        free(u.buf);
        return tc__fail(TC_BAD_ARGUMENT, "URL storage too small (%zu < %zu)",
                        storage_len, need);
    }
    dst[0] = &opts->host, dst[1] = &opts->unix_path, dst[2] = &opts->username,
    dst[3] = &opts->password;
    for (int i = 0; i < 4; i++) {
        if (!src[i])
            continue;
        strcpy(w, src[i]);
        *dst[i] = w;
        w += strlen(w) + 1;
    }
    if (u.port)
        opts->port = u.port;
    if (u.db >= 0)
        opts->db = u.db ? u.db : -1;
    if (u.tls)
        opts->tls = TC_YES;
    opts->url = NULL;
    free(u.buf);
    return TC_OK;
}

/* ------------------------------------------------------------------ */
/* Resolution. Each field takes the first of: the explicit option, the */
/* options URL, the environment, the default. Every step below fills   */
/* only what is still unset, so the order of the steps in              */
/* tc__config_resolve() is the precedence.                             */
/* ------------------------------------------------------------------ */

/* State carried between the steps of one resolution. */
typedef struct resolving {
    int have_where;      /* host or unix path chosen */
    int where_from_env_url; /* ... and it came from REDIS_URL */
    char *link_host;     /* REDIS_PORT=tcp://host:port, owned */
    int link_port;
} resolving;

static const char *env(const tc_options *o, const char *name)
{
    const char *v;
    if (o->ignore_env == TC_YES)
        return NULL;
    v = getenv(name);
    return v && *v ? v : NULL;
}

/* *dst = copy of src (src non-NULL). */
static tc_result set_str(char **dst, const char *src)
{
    if (!(*dst = strdup(src)))
        return tc__fail(TC_NO_MEMORY, "out of memory resolving options");
    return TC_OK;
}

/* set_str() of an optional `src` (NULL: *dst stays NULL). */
static tc_result set_opt(char **dst, const char *src)
{
    return src ? set_str(dst, src) : TC_OK;
}

static unsigned ncores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

void tc__config_free(tc__config *c)
{
    if (!c)
        return;
    free(c->host);
    free(c->unix_path);
    free(c->username);
    if (c->password) {
        /* Do not leave the secret in freed memory. */
        volatile char *p = c->password;
        while (*p)
            *p++ = 0;
        free(c->password);
    }
    free(c->prefix);
    free(c->channel);
    free(c->tls_ca_file);
    free(c->tls_ca_dir);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->tls_server_name);
    tc__tls_free(c->tls_ctx);
    tc__sentinel_free(c->sentinel);
    tc__cluster_free(c->cluster);
    for (unsigned i = 0; i < c->ncluster_seeds; i++)
        free(c->cluster_hosts ? c->cluster_hosts[i] : NULL);
    free(c->cluster_hosts);
    free(c->cluster_ports);
    for (unsigned i = 0; i < c->nsentinels; i++)
        free(c->sentinel_hosts ? c->sentinel_hosts[i] : NULL);
    free(c->sentinel_hosts);
    free(c->sentinel_ports);
    free(c->master_name);
    free(c->relay_unix);
    free(c->relay_host);
    free(c->relay_username);
    if (c->relay_spec) { /* may hold the relay's password */
        volatile char *p = c->relay_spec;
        while (*p)
            *p++ = 0;
        free(c->relay_spec);
    }
    if (c->relay_password) {
        volatile char *p = c->relay_password;
        while (*p)
            *p++ = 0;
        free(c->relay_password);
    }
    free(c->sentinel_username);
    if (c->sentinel_password) {
        volatile char *p = c->sentinel_password;
        while (*p)
            *p++ = 0;
        free(c->sentinel_password);
    }
    memset(c, 0, sizeof(*c));
}

static tc_result check_reserved(const tc_options *o, tc__config *c,
                                resolving *st)
{
    (void)c, (void)st;
    for (size_t i = 0; i < sizeof(o->reserved_) / sizeof(o->reserved_[0]);
         i++)
        if (o->reserved_[i])
            return tc__fail(TC_BAD_ARGUMENT,
                            "tc_options.reserved_[%zu] must be zero "
                            "(zero-initialise tc_options; built against a "
                            "newer tiercache.h?)",
                            i);
    return TC_OK;
}

/* --- Where L2 lives, credentials, db --------------------------------- */

static tc_result from_options(const tc_options *o, tc__config *c,
                              resolving *st)
{
    tc_result r = TC_OK;
    if (o->port < 0 || o->port > 65535)
        return tc__fail(TC_BAD_ARGUMENT, "port must be from 1 to 65535");
    if (o->db < -1)
        return tc__fail(TC_BAD_ARGUMENT, "db must not be negative");
    c->port = o->port;
    if (o->db)
        c->db = o->db < 0 ? 0 : o->db;
    if (o->unix_path)
        r = set_str(&c->unix_path, o->unix_path);
    else if (o->host)
        r = set_str(&c->host, o->host);
    st->have_where = o->unix_path || o->host;
    if (r == TC_OK && o->username)
        r = set_str(&c->username, o->username);
    if (r == TC_OK && o->password)
        r = set_str(&c->password, o->password);
    if (r == TC_OK && o->key_prefix)
        r = set_str(&c->prefix, o->key_prefix);
    return r;
}

/* Fill where-fields from a URL only where still unset. */
/* The sentinels of a redis-sentinel:// URL, their credentials and the
 * master's name into c (where-fields still unset). */
static tc_result take_sentinels(tc__config *c, const url_parts *u)
{
    tc_result r = TC_OK;
    c->sentinel_hosts = calloc(u->nsentinels, sizeof(*c->sentinel_hosts));
    c->sentinel_ports = calloc(u->nsentinels, sizeof(*c->sentinel_ports));
    if (!c->sentinel_hosts || !c->sentinel_ports)
        return tc__fail(TC_NO_MEMORY, "out of memory resolving options");
    c->nsentinels = u->nsentinels;
    for (unsigned i = 0; i < u->nsentinels && r == TC_OK; i++) {
        r = set_str(&c->sentinel_hosts[i], u->sentinel_host[i]);
        c->sentinel_ports[i] = u->sentinel_port[i] ? u->sentinel_port[i]
                                                   : 26379;
    }
    if (r == TC_OK)
        r = set_str(&c->master_name, u->master);
    if (r == TC_OK && u->sentinel_username)
        r = set_str(&c->sentinel_username, u->sentinel_username);
    if (r == TC_OK && u->sentinel_password)
        r = set_str(&c->sentinel_password, u->sentinel_password);
    return r;
}

/* The seeds of a redis-cluster:// URL into c (where-fields still unset);
 * host:port is the first seed, for messages and plain connections. */
static tc_result take_cluster(tc__config *c, const url_parts *u)
{
    tc_result r = TC_OK;
    c->cluster_hosts = calloc(u->ncluster, sizeof(*c->cluster_hosts));
    c->cluster_ports = calloc(u->ncluster, sizeof(*c->cluster_ports));
    if (!c->cluster_hosts || !c->cluster_ports)
        return tc__fail(TC_NO_MEMORY, "out of memory resolving options");
    c->ncluster_seeds = u->ncluster;
    for (unsigned i = 0; i < u->ncluster && r == TC_OK; i++) {
        r = set_str(&c->cluster_hosts[i], u->cluster_host[i]);
        c->cluster_ports[i] = u->cluster_port[i] ? u->cluster_port[i] : 6379;
    }
    if (r == TC_OK)
        r = set_str(&c->host, c->cluster_hosts[0]);
    c->port = c->cluster_ports[0];
    c->tls = u->tls;
    return r;
}

static tc_result take_url(tc__config *c, const url_parts *u, resolving *st)
{
    tc_result r = TC_OK;
    if (!st->have_where && u->nsentinels) {
        r = take_sentinels(c, u);
        st->have_where = 1;
    } else if (!st->have_where && u->ncluster) {
        r = take_cluster(c, u);
        st->have_where = 1;
    } else if (!st->have_where && u->unix_path) {
        r = set_str(&c->unix_path, u->unix_path);
        st->have_where = 1;
    } else if (!st->have_where && u->host) {
        r = set_str(&c->host, u->host);
        if (u->port && !c->port)
            c->port = u->port;
        st->have_where = 1;
        c->tls = u->tls; /* rediss:// named this server */
    }
    if (r == TC_OK && !c->username && u->username)
        r = set_str(&c->username, u->username);
    if (r == TC_OK && !c->password && u->password)
        r = set_str(&c->password, u->password);
    if (c->db < 0 && u->db >= 0)
        c->db = u->db;
    if (r == TC_OK && !c->relay_spec && u->bus_relay)
        r = set_str(&c->relay_spec, u->bus_relay);
    return r;
}

static tc_result from_options_url(const tc_options *o, tc__config *c,
                                  resolving *st)
{
    url_parts u;
    tc_result r;
    if (!o->url)
        return TC_OK;
    if ((r = parse_url(o->url, &u)) != TC_OK)
        return r;
    r = take_url(c, &u, st);
    free(u.buf);
    return r;
}

/* REDIS_PORT: a port number, or the docker-link form "tcp://host:port"
 * (IPv6 hosts in brackets). For the latter *host is a new string. */
static int parse_redis_port(const char *v, char **host, int *port)
{
    const char *h, *he, *p, *e = v + strlen(v);
    uint64_t n;
    *host = NULL;
    if (strncasecmp(v, "tcp://", 6) != 0) {
        if (tc__parse_u64(v, (size_t)(e - v), 1, 65535, &n))
            return -1;
        *port = (int)n;
        return 0;
    }
    h = v + 6;
    if (*h == '[') {
        he = strchr(++h, ']');
        if (!he || he[1] != ':')
            return -1;
        p = he + 2;
    } else {
        he = strrchr(h, ':');
        if (!he)
            return -1;
        p = he + 1;
    }
    if (he == h || tc__parse_u64(p, (size_t)(e - p), 1, 65535, &n))
        return -1;
    for (const char *s = h; s < he; s++)
        if (isspace((unsigned char)*s) || strchr("@/[]", *s) ||
            (*s == ':' && v[6] != '['))
            return -1;
    *host = strndup(h, (size_t)(he - h));
    *port = (int)n;
    return *host ? 0 : -2;
}

static tc_result from_env_vars(const tc_options *o, tc__config *c,
                               resolving *st)
{
    static const struct {
        const char *name;
        size_t off; /* char * in tc__config, filled when NULL */
    } strs[] = {
        {"REDIS_USERNAME", offsetof(tc__config, username)},
        {"REDIS_PASSWORD", offsetof(tc__config, password)},
        {"CACHE_KEY_PREFIX", offsetof(tc__config, prefix)},
    };
    const char *v;
    tc_result r;
    uint64_t n;

    if (!st->have_where && (v = env(o, "REDIS_HOST"))) {
        if ((r = set_str(&c->host, v)) != TC_OK)
            return r;
        st->have_where = 1;
    }
    /* Not read at all when an explicit port or a unix socket overrides
     * it: a value nobody uses must not fail the create. */
    if (!c->port && !c->unix_path && (v = env(o, "REDIS_PORT"))) {
        int port, rc = parse_redis_port(v, &st->link_host, &port);
        if (rc == -2)
            return tc__fail(TC_NO_MEMORY, "out of memory resolving options");
        if (rc)
            return tc__fail(TC_BAD_ARGUMENT,
                            "REDIS_PORT must be a port number from 1 to 65535 "
                            "or tcp://host:port");
        if (st->link_host)
            st->link_port = port; /* applied after REDIS_URL */
        else
            c->port = port;
    }
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        char **dst = (char **)(void *)((char *)c + strs[i].off);
        if (!*dst && (v = env(o, strs[i].name)) &&
            (r = set_str(dst, v)) != TC_OK)
            return r;
    }
    if (c->db < 0 && (v = env(o, "REDIS_DB"))) {
        if (tc__parse_u64(v, strlen(v), 0, 1 << 20, &n))
            return tc__fail(TC_BAD_ARGUMENT,
                            "REDIS_DB must be a number from 0 to %d", 1 << 20);
        c->db = (int)n;
    }
    return TC_OK;
}

static tc_result from_env_url(const tc_options *o, tc__config *c,
                              resolving *st)
{
    const char *v;
    url_parts u;
    tc_result r;
    int had_where = st->have_where;
    if (had_where && c->username && c->password && c->db >= 0)
        return TC_OK; /* nothing left for it to give */
    if (!(v = env(o, "REDIS_URL")))
        return TC_OK;
    if ((r = parse_url(v, &u)) != TC_OK) {
        char why[200];
        snprintf(why, sizeof(why), "%s", tc_errmsg());
        return tc__fail(r, "REDIS_URL: %s", why);
    }
    r = take_url(c, &u, st);
    free(u.buf);
    st->where_from_env_url = !had_where && st->have_where;
    return r;
}

/* The docker-link REDIS_PORT is what an orchestrator injects, not what the
 * user chose: its port counts as REDIS_PORT's, its host is the last resort,
 * and a REDIS_URL that named the server wins over both. */
static tc_result from_docker_link(const tc_options *o, tc__config *c,
                                  resolving *st)
{
    (void)o;
    if (!st->link_host || st->where_from_env_url)
        return TC_OK;
    if (!c->port)
        c->port = st->link_port;
    if (!st->have_where) {
        c->host = st->link_host;
        st->link_host = NULL;
        st->have_where = 1;
    }
    return TC_OK;
}

static tc_result where_defaults(const tc_options *o, tc__config *c,
                                resolving *st)
{
    tc_result r = TC_OK;
    (void)o;
    if (!st->have_where)
        r = set_str(&c->host, "127.0.0.1");
    if (!c->port)
        c->port = 6379;
    if (c->db < 0)
        c->db = 0;
    return r;
}

/* --- Numbers: one table, option > environment > default --------------- */

#define TEN_YEARS_S (10ULL * 365 * 86400)

typedef struct num_field {
    const char *name;    /* the tc_options field, for messages */
    size_t opt_off, opt_size, cfg_off, cfg_size;
    uint64_t def;        /* 0: derived later from other fields */
    uint64_t max;        /* explicit values are 1..max */
    int ttl;             /* TC_TTL_NONE is accepted too */
    const char *note;    /* appended to the range in messages */
    const char *env;     /* variable, or NULL */
    uint64_t env_unit;   /* ms per unit of the variable */
} num_field;

/* The option and the config field have the same width, 4 or 8 bytes: a
 * compile error (negative array size) otherwise. */
#define OPT_SIZE(opt) sizeof(((tc_options *)0)->opt)
#define CFG_SIZE(cfg) sizeof(((tc__config *)0)->cfg)
#define SAME_WIDTH(opt, cfg)                                                 \
    (OPT_SIZE(opt) +                                                         \
     0 * sizeof(char[OPT_SIZE(opt) == CFG_SIZE(cfg) &&                       \
                             (OPT_SIZE(opt) == 4 || OPT_SIZE(opt) == 8)      \
                         ? 1                                                 \
                         : -1]))
#define NUM(opt, cfg, def, max, ttl, note, env, unit)                        \
    {#opt, offsetof(tc_options, opt), SAME_WIDTH(opt, cfg),                  \
     offsetof(tc__config, cfg), CFG_SIZE(cfg), def, max, ttl, note, env, unit}

static const num_field num_fields[] = {
    NUM(default_ttl_ms, default_ttl_ms, 900000, TC_TTL_MAX_MS, 1,
        " (ten years) or TC_TTL_NONE", "CACHE_DEFAULT_TTL", 1000),
    NUM(l1_ttl_ms, l1_ttl_ms, 0, TC_TTL_MAX_MS, 1,
        " (ten years) or TC_TTL_NONE", NULL, 0),
    NUM(l1_max_bytes, l1_max_bytes, 64u << 20, SIZE_MAX, 0, "", NULL, 0),
    NUM(l1_max_entries, l1_max_entries, 1000000, SIZE_MAX, 0, "", NULL, 0),
    NUM(l1_shards, l1_shards, 0, 1024, 0, ", a power of two", NULL, 0),
    NUM(max_key_bytes, max_key, 1024, 512u << 20, 0, " (Redis's 512 MiB)",
        NULL, 0),
    NUM(max_value_bytes, max_value, 16u << 20, 512u << 20, 0,
        " (Redis's 512 MiB)", NULL, 0),
    NUM(pool_size, pool_size, 0, 256, 0, "", NULL, 0),
    NUM(connect_timeout_ms, connect_timeout_ms, 1000, TC_TIMEOUT_MAX_MS, 0,
        " (one hour)", NULL, 0),
    NUM(command_timeout_ms, command_timeout_ms, 500, TC_TIMEOUT_MAX_MS, 0,
        " (one hour)", NULL, 0),
    NUM(reconnect_min_ms, reconnect_min_ms, 50, TC_TIMEOUT_MAX_MS, 0,
        " (one hour)", NULL, 0),
    NUM(reconnect_max_ms, reconnect_max_ms, 2000, TC_TIMEOUT_MAX_MS, 0,
        " (one hour)", NULL, 0),
    NUM(breaker_threshold, breaker_threshold, 3, UINT_MAX, 0, "", NULL, 0),
    NUM(lease_ms, lease_ms, 100, TC_TIMEOUT_MAX_MS, 0, " (one hour)", NULL,
        0),
    NUM(clock_margin_pct, clock_margin_pct, 5, 49, 0, "", NULL, 0),
    NUM(idle_after_ms, idle_after_ms, 5000, TC_IDLE_NEVER, 0,
        " (TC_IDLE_NEVER: never idle)", "TC_IDLE_AFTER_MS", 1),
    NUM(compress_min_bytes, compress_min, 0, 512u << 20, 0, " (512 MiB)",
        "TC_COMPRESS_MIN_BYTES", 1),
};

/* Unsigned integer fields of width 4 or 8 (checked by NUM()). */
static uint64_t get_uint(const void *base, size_t off, size_t size)
{
    const char *p = (const char *)base + off;
    if (size == sizeof(uint32_t)) {
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
    } else {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
}

static void put_uint(void *base, size_t off, size_t size, uint64_t v)
{
    char *p = (char *)base + off;
    if (size == sizeof(uint32_t)) {
        uint32_t w = (uint32_t)v;
        memcpy(p, &w, sizeof(w));
    } else {
        memcpy(p, &v, sizeof(v));
    }
}

static tc_result num_from_env(const tc_options *o, const num_field *f,
                              uint64_t *v)
{
    const char *s = f->env ? env(o, f->env) : NULL;
    uint64_t max, n;
    if (!s || !f->env_unit)
        return TC_OK;
    max = f->max / f->env_unit;
    if (tc__parse_u64(s, strlen(s), 1, max, &n))
        return tc__fail(TC_BAD_ARGUMENT, "%s must be a number from 1 to %"
                        PRIu64, f->env, max);
    *v = n * f->env_unit; /* no wrap: n <= max / unit */
    return TC_OK;
}

static tc_result numbers(const tc_options *o, tc__config *c, resolving *st)
{
    (void)st;
    for (size_t i = 0; i < sizeof(num_fields) / sizeof(num_fields[0]); i++) {
        const num_field *f = &num_fields[i];
        uint64_t v = get_uint(o, f->opt_off, f->opt_size);
        tc_result r;
        if (v > f->max && !(f->ttl && v == TC_TTL_NONE))
            return tc__fail(TC_BAD_ARGUMENT, "%s must be from 1 to %" PRIu64
                            "%s", f->name, f->max, f->note);
        if (!v && (r = num_from_env(o, f, &v)) != TC_OK)
            return r;
        put_uint(c, f->cfg_off, f->cfg_size, v ? v : f->def);
    }
    return TC_OK;
}

/* --- Modes ---------------------------------------------------------- */

static tc_result modes(const tc_options *o, tc__config *c, resolving *st)
{
    static const char *const coherence_names[] = {"async", "strict", "none"};
    const char *v;
    (void)st;

    c->enabled = o->enabled != TC_NO;
    if (o->enabled == TC_DEFAULT && (v = env(o, "CACHE_ENABLED")) &&
        tc__parse_bool(v, strlen(v), &c->enabled))
        return tc__fail(TC_BAD_ARGUMENT, "CACHE_ENABLED must be true or false");

    if ((unsigned)o->coherence > TC_COHERENCE_NONE)
        return tc__fail(TC_BAD_ARGUMENT, "unknown coherence mode");
    c->coherence = o->coherence;
    /* TC_COHERENCE_ASYNC is also the zero "default". */
    if (o->coherence == TC_COHERENCE_ASYNC && (v = env(o, "TC_COHERENCE"))) {
        unsigned i = 0;
        while (i < 3 && strcasecmp(v, coherence_names[i]) != 0)
            i++;
        if (i == 3)
            return tc__fail(TC_BAD_ARGUMENT,
                            "TC_COHERENCE must be async, strict or none");
        c->coherence = (tc_coherence)i;
    }
    c->tracking = o->tracking == TC_YES;
    c->log.fn = o->log;
    c->log.ud = o->log_userdata;
    return TC_OK;
}

/* --- Values derived from others, and checks across fields ------------ */

static tc_result derive(const tc_options *o, tc__config *c, resolving *st)
{
    const char *chan = o->channel ? o->channel : TC__DEFAULT_CHANNEL;
    (void)st;
    if (!c->l1_ttl_ms) {
        /* TC_TTL_NONE / 10 is above the cap as well. */
        c->l1_ttl_ms = c->default_ttl_ms / 10;
        if (c->l1_ttl_ms > 60000)
            c->l1_ttl_ms = 60000;
        if (!c->l1_ttl_ms)
            c->l1_ttl_ms = 1;
    }
    if (!c->l1_shards) {
        c->l1_shards = 1;
        while (c->l1_shards < 16 * ncores() && c->l1_shards < 1024 &&
               c->l1_shards * 2 <= c->l1_max_entries)
            c->l1_shards <<= 1;
    }
    if (!c->pool_size) {
        c->pool_size = 2 * ncores();
        if (c->pool_size > 256)
            c->pool_size = 256;
    }
    if (c->reconnect_max_ms < c->reconnect_min_ms)
        c->reconnect_max_ms = c->reconnect_min_ms;
    if (!c->prefix && set_str(&c->prefix, "") != TC_OK)
        return TC_NO_MEMORY;
    c->prefix_len = strlen(c->prefix);
    c->channel = malloc(c->prefix_len + strlen(chan) + 1);
    if (!c->channel)
        return tc__fail(TC_NO_MEMORY, "out of memory resolving options");
    sprintf(c->channel, "%s%s", c->prefix, chan);
    return TC_OK;
}

static tc_result cross_checks(const tc_options *o, tc__config *c,
                              resolving *st)
{
    (void)o, (void)st;
    if (c->username && !c->password)
        return tc__fail(TC_BAD_ARGUMENT, "a Redis user name needs a password");
    if (c->l1_shards & (c->l1_shards - 1))
        return tc__fail(TC_BAD_ARGUMENT,
                        "l1_shards must be a power of two <= 1024");
    if (c->l1_shards > c->l1_max_entries) /* each shard holds one at least */
        return tc__fail(TC_BAD_ARGUMENT, "l1_shards exceeds l1_max_entries");
    if (c->tracking && !c->prefix_len)
        return tc__fail(TC_BAD_ARGUMENT,
                        "tracking needs a key_prefix (or CACHE_KEY_PREFIX): "
                        "with an empty prefix CLIENT TRACKING BCAST reports "
                        "every key, the library's own ones included");
    return TC_OK;
}

/* --- TLS (issue 10) -------------------------------------------------- */

/* `opt`, else the environment variable `name`, copied into *dst. */
static tc_result tls_string(const tc_options *o, const char *opt,
                            const char *name, char **dst)
{
    const char *v = opt ? opt : env(o, name);
    return v ? set_str(dst, v) : TC_OK;
}

/* On/off: the explicit option, else the URL's scheme (c->tls, set by
 * take_url), else REDIS_TLS. Files and names: option > environment.
 * Builds c->tls_ctx when TLS is on, so that an unreadable CA or key fails
 * tc_cache_create() instead of every connection. */
static tc_result tls_settings(const tc_options *o, tc__config *c,
                              resolving *st)
{
    const char *v;
    tc__tls_opts to;
    tc_result r = TC_OK;
    (void)st;

    if (o->tls == TC_YES || o->tls == TC_NO)
        c->tls = o->tls == TC_YES;
    else if (!c->tls && (v = env(o, "REDIS_TLS")) &&
             tc__parse_bool(v, strlen(v), &c->tls))
        return tc__fail(TC_BAD_ARGUMENT, "REDIS_TLS must be true or false");
    if (o->tls_insecure == TC_YES)
        c->tls_insecure = 1;
    else if (o->tls_insecure != TC_NO && (v = env(o, "REDIS_TLS_INSECURE")) &&
             tc__parse_bool(v, strlen(v), &c->tls_insecure))
        return tc__fail(TC_BAD_ARGUMENT,
                        "REDIS_TLS_INSECURE must be true or false");
    if (!c->tls)
        return TC_OK;
    if (r == TC_OK)
        r = tls_string(o, o->tls_ca_file, "REDIS_TLS_CA_FILE", &c->tls_ca_file);
    if (r == TC_OK)
        r = tls_string(o, o->tls_ca_dir, "REDIS_TLS_CA_DIR", &c->tls_ca_dir);
    if (r == TC_OK)
        r = tls_string(o, o->tls_cert_file, "REDIS_TLS_CERT_FILE",
                       &c->tls_cert_file);
    if (r == TC_OK)
        r = tls_string(o, o->tls_key_file, "REDIS_TLS_KEY_FILE",
                       &c->tls_key_file);
    if (r == TC_OK)
        r = tls_string(o, o->tls_server_name, "REDIS_TLS_SERVER_NAME",
                       &c->tls_server_name);
    if (r != TC_OK)
        return r;
    if (c->unix_path && !c->tls_server_name)
        return tc__fail(TC_BAD_ARGUMENT,
                        "TLS over a unix socket needs tls_server_name");
    to.ca_file = c->tls_ca_file;
    to.ca_dir = c->tls_ca_dir;
    to.cert_file = c->tls_cert_file;
    to.key_file = c->tls_key_file;
    to.insecure = c->tls_insecure;
    return tc__tls_create(&to, &c->tls_ctx);
}

/* --- Sentinel (issue 10) ---------------------------------------------- */

/* With sentinels, no host names L2: build the discovery object that every
 * connection asks (sentinel.h). */
static tc_result sentinel_settings(const tc_options *o, tc__config *c,
                                   resolving *st)
{
    (void)o, (void)st;
    if (!c->nsentinels)
        return TC_OK;
    return tc__sentinel_create(c, &c->sentinel);
}

/* --- Redis Cluster (issue 10) ----------------------------------------- */

/* What a cluster cannot do yet (README, "Redis Cluster"), refused at
 * create with a clear error and a log line; then the topology object
 * that every connection asks (cluster.h). */
static tc_result cluster_settings(const tc_options *o, tc__config *c,
                                  resolving *st)
{
    const char *no = NULL;
    (void)o, (void)st;
    if (!c->ncluster_seeds)
        return TC_OK;
    if (c->db > 0)
        no = "Redis Cluster has only database 0";
    else if (strpbrk(c->channel, "{}"))
        no = "on Redis Cluster the channel (and key_prefix) must not hold "
             "'{' or '}': tiercache's own keys put a hash tag after it";
    if (no) {
        tc__log(&c->log, TC_LOG_ERROR, "%s", no);
        return tc__fail(TC_BAD_ARGUMENT, "%s", no);
    }
    return tc__cluster_create(c, &c->cluster);
}

/* --- Bus relay (issue 10, relay.c) ------------------------------------ */

/* The URL's bus_relay= (options URL, then REDIS_URL), else TC_BUS_RELAY:
 * "unix:///path", "/path", "host:port", "redis://host:port", with
 * credentials for a tiercached started with --requirepass
 * "redis://[user]:password@host:port" or "unix://[user]:password@/path"
 * (relay.c sends them as AUTH). Never logged: a malformed spec's error
 * does not repeat it. */
static tc_result relay_settings(const tc_options *o, tc__config *c,
                                resolving *st)
{
    const char *v = c->relay_spec ? c->relay_spec : env(o, "TC_BUS_RELAY");
    const char *colon, *no = NULL;
    (void)st;
    if (!v)
        return TC_OK;
    if (!strncmp(v, "redis://", 8) || !strncmp(v, "unix://", 7) ||
        !strncmp(v, "rediss://", 9)) {
        url_parts u;
        tc_result r = parse_url(v, &u);
        if (r != TC_OK) {
            char why[200];
            snprintf(why, sizeof(why), "%s", tc_errmsg());
            return tc__fail(r, "TC_BUS_RELAY: %s", why);
        }
        if (u.tls || u.db >= 0 || u.bus_relay || (u.host && !u.port))
            no = u.tls ? "TC_BUS_RELAY: the relay is plain TCP or a unix "
                         "socket (no rediss://)"
                       : u.db >= 0 || u.bus_relay
                             ? "TC_BUS_RELAY takes no database and no query"
                             : "TC_BUS_RELAY needs a port (host:port)";
        else if (set_opt(&c->relay_unix, u.unix_path) != TC_OK ||
                 set_opt(&c->relay_host, u.host) != TC_OK ||
                 set_opt(&c->relay_username, u.username) != TC_OK ||
                 set_opt(&c->relay_password, u.password) != TC_OK)
            r = tc__fail(TC_NO_MEMORY, "out of memory resolving options");
        c->relay_port = u.port;
        free(u.buf);
        if (r != TC_OK)
            return r;
        if (no)
            return tc__fail(TC_BAD_ARGUMENT, "%s", no);
    } else if (*v == '/') {
        if (set_str(&c->relay_unix, v) != TC_OK)
            return TC_NO_MEMORY;
    } else {
        uint64_t port;
        colon = strrchr(v, ':');
        if (!colon || colon == v || strpbrk(v, "@/") ||
            tc__parse_u64(colon + 1, strlen(colon + 1), 1, 65535, &port))
            return tc__fail(TC_BAD_ARGUMENT,
                            "TC_BUS_RELAY must be a unix socket path "
                            "(unix:///path) or host:port, credentials in "
                            "the redis://:password@host:port or "
                            "unix://:password@/path form");
        if (!(c->relay_host = strndup(v, (size_t)(colon - v))))
            return tc__fail(TC_NO_MEMORY, "out of memory resolving options");
        c->relay_port = (int)port;
    }
    if (c->tracking)
        no = "TC_BUS_RELAY cannot be used with tracking (CLIENT TRACKING "
             "redirects to the subscriber's own Redis connection)";
    if (no) {
        tc__log(&c->log, TC_LOG_ERROR, "%s", no);
        return tc__fail(TC_BAD_ARGUMENT, "%s", no);
    }
    return TC_OK;
}

tc_result tc__config_resolve(const tc_options *o, tc__config *c)
{
    typedef tc_result (*step)(const tc_options *, tc__config *, resolving *);
    /* In order of precedence for the fields they share. */
    static const step steps[] = {
        check_reserved,   /* tc_options.reserved_ is zero */
        from_options,     /* explicit host, port, credentials, db, prefix */
        from_options_url, /* opts->url */
        from_env_vars,    /* REDIS_HOST/PORT/USERNAME/PASSWORD/DB, prefix */
        from_env_url,     /* REDIS_URL */
        from_docker_link, /* REDIS_PORT=tcp://host:port */
        where_defaults,   /* 127.0.0.1:6379, db 0 */
        numbers,          /* TTLs, sizes, timeouts: option > env > default */
        modes,            /* enabled, coherence, tracking, log */
        derive,           /* l1_ttl, shards, pool, prefix, channel */
        cross_checks,
        tls_settings,     /* TLS on/off, files, context (issue 10) */
        sentinel_settings, /* redis-sentinel:// discovery (issue 10) */
        cluster_settings, /* redis-cluster:// topology (issue 10) */
        relay_settings,   /* TC_BUS_RELAY (issue 10, relay.c) */
    };
    static const tc_options none;
    resolving st = {0, 0, NULL, 0};
    tc_result r = TC_OK;

    if (!o)
        o = &none;
    memset(c, 0, sizeof(*c));
    c->db = -1;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && r == TC_OK;
         i++)
        r = steps[i](o, c, &st);
    free(st.link_host);
    if (r != TC_OK)
        tc__config_free(c);
    return r;
}

void tc__config_where(const tc__config *c, char *buf, size_t len)
{
    if (c->unix_path)
        snprintf(buf, len, "unix:%s", c->unix_path);
    else if (c->master_name)
        snprintf(buf, len, "sentinel master %s", c->master_name);
    else if (c->cluster)
        snprintf(buf, len, "cluster seed %s:%d", c->host, c->port);
    else
        snprintf(buf, len, "%s:%d", c->host, c->port);
}

const char *tc__channel_stem(const char *channel)
{
    static const char ns[] = "__tiercache:";
    if (!strncmp(channel, ns, sizeof(ns) - 1))
        return channel + sizeof(ns) - 1;
    return channel;
}
