/* Options, redis:// and unix:// URLs, and the environment. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "error.h"

/* Parts of a URL; strings point into `buf`, owned by the struct. */
typedef struct url_parts {
    char *buf;
    const char *host, *unix_path, *username, *password;
    int port; /* 0 = not given */
    int db;   /* -1 = not given */
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

/* Strict decimal in [lo, hi] for [s, e). */
static int parse_int(const char *s, const char *e, long lo, long hi, long *v)
{
    long x = 0;
    if (s == e || e - s > 10)
        return -1;
    for (; s < e; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        x = x * 10 + (*s - '0');
    }
    if (x < lo || x > hi)
        return -1;
    *v = x;
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

static tc_result parse_query(url_parts *u, const char *q, const char *e)
{
    while (q < e) {
        const char *amp = memchr(q, '&', (size_t)(e - q));
        const char *end = amp ? amp : e;
        long v;
        if (end - q > 3 && strncmp(q, "db=", 3) == 0) {
            if (parse_int(q + 3, end, 0, 1 << 20, &v))
                return bad_url(u, "db must be a number from 0");
            u->db = (int)v;
        } else if (end > q) {
            return bad_url(u, "unknown query parameter (only db= is known)");
        }
        q = amp ? amp + 1 : e;
    }
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

    if (strncasecmp(url, "redis://", 8) == 0) {
        p = url + 8;
        q = memchr(p, '?', (size_t)(e - p));
        if (q) {
            if ((r = parse_query(u, q + 1, e)) != TC_OK)
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
        {
            const char *hend = slash ? slash : e, *pcolon = NULL;
            if (p < hend && *p == '[') { /* [ipv6]:port */
                const char *rb = memchr(p, ']', (size_t)(hend - p));
                if (!rb)
                    return bad_url(u, "unclosed '[' in host");
                memcpy(w, p + 1, (size_t)(rb - p - 1));
                w[rb - p - 1] = '\0';
                if (rb + 1 < hend) {
                    if (rb[1] != ':')
                        return bad_url(u, "junk after ']' in host");
                    pcolon = rb + 1;
                }
            } else {
                pcolon = memchr(p, ':', (size_t)(hend - p));
                if (pct_decode(p, pcolon ? pcolon : hend, w))
                    return bad_url(u, "bad %-escape in host");
            }
            if (*w) {
                u->host = w;
                w += strlen(w) + 1;
            }
            if (pcolon) {
                long v;
                if (parse_int(pcolon + 1, hend, 1, 65535, &v))
                    return bad_url(u, "port must be a number from 1 to 65535");
                u->port = (int)v;
            }
            for (const char *s = u->host ? u->host : ""; *s; s++)
                if (isspace((unsigned char)*s) || *s == '@' || *s == '/')
                    return bad_url(u, "invalid character in host");
        }
        if (!u->host)
            return bad_url(u, "missing host");
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
            if ((r = parse_query(u, q + 1, e)) != TC_OK)
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
    if (strncasecmp(url, "rediss://", 9) == 0)
        return bad_url(u, "TLS (rediss://) is not supported");
    return bad_url(u, "scheme must be redis:// or unix://");
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
    opts->url = NULL;
    free(u.buf);
    return TC_OK;
}

static const char *env(const tc_options *o, const char *name)
{
    const char *v;
    if (o && o->ignore_env == TC_YES)
        return NULL;
    v = getenv(name);
    return v && *v ? v : NULL;
}

static tc_result env_long(const tc_options *o, const char *name, long lo,
                          long hi, long *out, int *set)
{
    const char *v = env(o, name);
    *set = 0;
    if (!v)
        return TC_OK;
    if (parse_int(v, v + strlen(v), lo, hi, out))
        return tc__fail(TC_BAD_ARGUMENT, "%s must be a number from %ld to %ld",
                        name, lo, hi);
    *set = 1;
    return TC_OK;
}

static int parse_bool(const char *v, int *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(v, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
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
    memset(c, 0, sizeof(*c));
}

/* Fill where-fields from a URL only where still unset. */
static void take_url(tc__config *c, const url_parts *u, int *have_where)
{
    if (!*have_where) {
        if (u->unix_path) {
            c->unix_path = strdup(u->unix_path);
            *have_where = 1;
        } else if (u->host) {
            c->host = strdup(u->host);
            if (u->port && !c->port)
                c->port = u->port;
            *have_where = 1;
        }
    }
    if (!c->username && u->username)
        c->username = strdup(u->username);
    if (!c->password && u->password)
        c->password = strdup(u->password);
    if (c->db < 0 && u->db >= 0)
        c->db = u->db;
}

tc_result tc__config_resolve(const tc_options *o, tc__config *c)
{
    static const tc_options none;
    url_parts u;
    tc_result r;
    const char *v;
    long n;
    int set, have_where = 0;

    if (!o)
        o = &none;
    memset(c, 0, sizeof(*c));
    c->db = -1;

    /* Where: explicit fields, then opts->url, then REDIS_HOST/PORT/...,
     * then REDIS_URL, then 127.0.0.1:6379. */
    if (o->unix_path) {
        c->unix_path = strdup(o->unix_path);
        have_where = 1;
    } else if (o->host) {
        c->host = strdup(o->host);
        have_where = 1;
    }
    if (o->port < 0 || o->port > 65535) {
        r = tc__fail(TC_BAD_ARGUMENT, "port must be from 1 to 65535");
        goto fail_r;
    }
    c->port = o->port;
    c->username = dup_or_null(o->username);
    c->password = dup_or_null(o->password);
    if (o->db < -1) {
        r = tc__fail(TC_BAD_ARGUMENT, "db must not be negative");
        goto fail_r;
    }
    if (o->db)
        c->db = o->db < 0 ? 0 : o->db;

    if (o->url) {
        if ((r = parse_url(o->url, &u)) != TC_OK)
            goto fail_r;
        take_url(c, &u, &have_where);
        free(u.buf);
    }
    if (!have_where && (v = env(o, "REDIS_HOST"))) {
        c->host = strdup(v);
        have_where = 1;
    }
    if ((r = env_long(o, "REDIS_PORT", 1, 65535, &n, &set)) != TC_OK)
        goto fail_r;
    if (set && !c->port && !c->unix_path)
        c->port = (int)n;
    if (!c->username && (v = env(o, "REDIS_USERNAME")))
        c->username = strdup(v);
    if (!c->password && (v = env(o, "REDIS_PASSWORD")))
        c->password = strdup(v);
    if ((r = env_long(o, "REDIS_DB", 0, 1 << 20, &n, &set)) != TC_OK)
        goto fail_r;
    if (set && c->db < 0)
        c->db = (int)n;
    if ((v = env(o, "REDIS_URL"))) {
        if ((r = parse_url(v, &u)) != TC_OK) {
            char why[200];
            snprintf(why, sizeof(why), "%s", tc_errmsg());
            tc__fail(r, "REDIS_URL: %s", why);
            goto fail_r;
        }
        take_url(c, &u, &have_where);
        free(u.buf);
    }
    if (!have_where)
        c->host = strdup("127.0.0.1");
    if (!c->port)
        c->port = 6379;
    if (c->db < 0)
        c->db = 0;
    if (c->username && !c->password) {
        r = tc__fail(TC_BAD_ARGUMENT, "a Redis user name needs a password");
        goto fail_r;
    }

    /* Keys and TTLs. */
    v = o->key_prefix ? o->key_prefix : env(o, "CACHE_KEY_PREFIX");
    c->prefix = strdup(v ? v : "");
    c->prefix_len = strlen(c->prefix);
    c->default_ttl_ms = o->default_ttl_ms;
    if ((r = env_long(o, "CACHE_DEFAULT_TTL", 1, 10L * 365 * 86400, &n,
                      &set)) != TC_OK)
        goto fail_r;
    if (!c->default_ttl_ms)
        c->default_ttl_ms = set ? (uint64_t)n * 1000 : 900000;
    c->l1_ttl_ms = o->l1_ttl_ms;
    if (!c->l1_ttl_ms) {
        c->l1_ttl_ms = c->default_ttl_ms == TC_TTL_NONE ? 60000
                                                        : c->default_ttl_ms / 10;
        if (c->l1_ttl_ms > 60000)
            c->l1_ttl_ms = 60000;
        if (!c->l1_ttl_ms)
            c->l1_ttl_ms = 1;
    }

    c->enabled = 1;
    if (o->enabled == TC_NO) {
        c->enabled = 0;
    } else if (o->enabled != TC_YES && (v = env(o, "CACHE_ENABLED"))) {
        if (parse_bool(v, &c->enabled)) {
            r = tc__fail(TC_BAD_ARGUMENT, "CACHE_ENABLED must be true or false");
            goto fail_r;
        }
    }

    /* L1. */
    c->l1_max_bytes = o->l1_max_bytes ? o->l1_max_bytes : 64u << 20;
    c->l1_max_entries = o->l1_max_entries ? o->l1_max_entries : 1000000;
    c->l1_shards = o->l1_shards;
    if (!c->l1_shards) {
        c->l1_shards = 1;
        while (c->l1_shards < 16 * ncores() && c->l1_shards < 1024 &&
               c->l1_shards * 2 <= c->l1_max_entries)
            c->l1_shards <<= 1;
    }
    if (c->l1_shards > c->l1_max_entries) {
        /* Each shard holds at least one entry. */
        r = tc__fail(TC_BAD_ARGUMENT, "l1_shards exceeds l1_max_entries");
        goto fail_r;
    }
    if (c->l1_shards > 1024 || (c->l1_shards & (c->l1_shards - 1))) {
        r = tc__fail(TC_BAD_ARGUMENT, "l1_shards must be a power of two <= 1024");
        goto fail_r;
    }
    c->max_key = o->max_key_bytes ? o->max_key_bytes : 1024;
    c->max_value = o->max_value_bytes ? o->max_value_bytes : 16u << 20;
    if (c->max_key > 512u << 20 || c->max_value > 512u << 20) {
        r = tc__fail(TC_BAD_ARGUMENT, "key/value limits above Redis's 512 MiB");
        goto fail_r;
    }

    /* L2. */
    c->pool_size = o->pool_size ? o->pool_size : 2 * ncores();
    if (c->pool_size > 256) {
        r = tc__fail(TC_BAD_ARGUMENT, "pool_size must be at most 256");
        goto fail_r;
    }
    c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000;
    c->command_timeout_ms = o->command_timeout_ms ? o->command_timeout_ms : 500;
    c->reconnect_min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : 50;
    c->reconnect_max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : 2000;
    if (c->reconnect_max_ms < c->reconnect_min_ms)
        c->reconnect_max_ms = c->reconnect_min_ms;
    c->breaker_threshold = o->breaker_threshold ? o->breaker_threshold : 3;

    /* Coherence. */
    c->coherence = o->coherence;
    if ((unsigned)c->coherence > TC_COHERENCE_NONE) {
        r = tc__fail(TC_BAD_ARGUMENT, "unknown coherence mode");
        goto fail_r;
    }
    if (c->coherence == TC_COHERENCE_ASYNC && (v = env(o, "TC_COHERENCE"))) {
        if (strcasecmp(v, "strict") == 0)
            c->coherence = TC_COHERENCE_STRICT;
        else if (strcasecmp(v, "none") == 0)
            c->coherence = TC_COHERENCE_NONE;
        else if (strcasecmp(v, "async") != 0) {
            r = tc__fail(TC_BAD_ARGUMENT,
                         "TC_COHERENCE must be async, strict or none");
            goto fail_r;
        }
    }
    v = o->channel ? o->channel : "cache:invalidate";
    c->channel = malloc(c->prefix_len + strlen(v) + 1);
    if (c->channel)
        sprintf(c->channel, "%s%s", c->prefix, v);
    c->lease_ms = o->lease_ms ? o->lease_ms : 100;
    c->clock_margin_pct = o->clock_margin_pct ? o->clock_margin_pct : 5;
    if (c->clock_margin_pct >= 50) {
        r = tc__fail(TC_BAD_ARGUMENT, "clock_margin_pct must be below 50");
        goto fail_r;
    }
    c->tracking = o->tracking == TC_YES;
    c->log.fn = o->log;
    c->log.ud = o->log_userdata;

    if ((!c->host && !c->unix_path) || !c->prefix || !c->channel) {
        r = tc__fail(TC_NO_MEMORY, "out of memory resolving options");
        goto fail_r;
    }
    return TC_OK;
fail_r:
    tc__config_free(c);
    return r;
}

void tc__config_where(const tc__config *c, char *buf, size_t len)
{
    if (c->unix_path)
        snprintf(buf, len, "unix:%s", c->unix_path);
    else
        snprintf(buf, len, "%s:%d", c->host, c->port);
}
