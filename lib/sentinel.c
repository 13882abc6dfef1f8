/* Redis Sentinel discovery: see sentinel.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "conn.h"
#include "error.h"
#include "log.h"
#include "parse.h"
#include "sentinel.h"

struct tc__sentinel {
    /* Immutable after create: copies, owned. */
    unsigned n;
    char **hosts;
    int *ports;
    char *master;          /* the monitored master's name */
    char *user, *pass;     /* AUTH to the sentinels, or NULL; never logged */
    uint32_t connect_timeout_ms, command_timeout_ms;
    const struct tc__tls *tls; /* borrowed from the configuration, which
                                  outlives us; NULL: plain TCP */
    char *server_name;         /* owned or NULL: verify this, not the host */
    tc__logger log;

    pthread_mutex_t mu;
    unsigned first;        /* mu: the sentinel to ask first */
    char host[256];        /* mu: the last address found ("" for none) */
    int port;              /* mu */

    atomic_uint_fast64_t generation;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void tc__sentinel_free(tc__sentinel *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->n; i++)
        free(s->hosts ? s->hosts[i] : NULL);
    free(s->hosts);
    free(s->ports);
    free(s->master);
    free(s->server_name);
    free(s->user);
    if (s->pass) {
        volatile char *p = s->pass;
        while (*p)
            *p++ = 0;
        free(s->pass);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

tc_result tc__sentinel_create(const tc__config *cfg, tc__sentinel **out)
{
    tc__sentinel *s = calloc(1, sizeof(*s));
    int oom = 0;
    if (!s)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    s->hosts = calloc(cfg->nsentinels, sizeof(*s->hosts));
    s->ports = calloc(cfg->nsentinels, sizeof(*s->ports));
    oom = !s->hosts || !s->ports;
    for (unsigned i = 0; !oom && i < cfg->nsentinels; i++) {
        oom = !(s->hosts[i] = strdup(cfg->sentinel_hosts[i]));
        s->ports[i] = cfg->sentinel_ports[i];
        s->n = i + 1;
    }
    if (!oom) {
        s->master = strdup(cfg->master_name);
        s->user = dup_or_null(cfg->sentinel_username);
        s->pass = dup_or_null(cfg->sentinel_password);
        s->server_name = dup_or_null(cfg->tls ? cfg->tls_server_name : NULL);
        oom = !s->master || (cfg->sentinel_username && !s->user) ||
              (cfg->sentinel_password && !s->pass) ||
              (cfg->tls && cfg->tls_server_name && !s->server_name);
    }
    if (oom) {
        tc__sentinel_free(s);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    s->connect_timeout_ms = cfg->connect_timeout_ms;
    s->command_timeout_ms = cfg->command_timeout_ms;
    /* With TLS on, the sentinels are reached over TLS too, with the same
     * CA, client certificate and server name as the master (a deployment
     * that encrypts Redis encrypts its sentinels: redis-sentinel's own
     * tls-port and tls-replication). */
    s->tls = cfg->tls ? cfg->tls_ctx : NULL;
    s->log = cfg->log;
    *out = s;
    return TC_OK;
}

uint64_t tc__sentinel_generation(const tc__sentinel *s)
{
    return atomic_load_explicit(&s->generation, memory_order_acquire);
}

void tc__sentinel_lost_master(tc__sentinel *s, uint64_t seen)
{
    uint64_t g = seen;
    if (atomic_compare_exchange_strong(&s->generation, &g, seen + 1)) {
        pthread_mutex_lock(&s->mu);
        s->first = (s->first + 1) % s->n;
        pthread_mutex_unlock(&s->mu);
        tc__log(&s->log, TC_LOG_WARN,
                "Redis master '%s' is no longer the master: asking the "
                "sentinels again", s->master);
    }
}

int tc__sentinel_error_means_demoted(const char *str, size_t len)
{
    static const char *const codes[] = {"READONLY", "LOADING", "MASTERDOWN"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        size_t n = strlen(codes[i]);
        if (len >= n && strncmp(str, codes[i], n) == 0 &&
            (len == n || str[n] == ' '))
            return 1;
    }
    return 0;
}

int tc__sentinel_role_is_master(const void *reply)
{
    const redisReply *r = reply;
    const redisReply *e;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1)
        return 0;
    e = r->element[0];
    return (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) &&
           e->len == 6 && strncasecmp(e->str, "master", 6) == 0;
}

/* What asking one sentinel gave. */
enum { ASK_OK, ASK_UNKNOWN, ASK_FAILED };

/* Ask sentinel i; on ASK_OK host/port are set. `why` gets a short reason
 * otherwise and *cls its class. */
static int ask(tc__sentinel *s, unsigned i, char *host, size_t hostlen,
               int *port, char *why, size_t whylen, tc_result *cls)
{
    tc__conn_opts o;
    tc__conn *c = NULL;
    redisReply *r = NULL;
    tc_result rc;
    int res = ASK_FAILED;
    uint64_t p;

    memset(&o, 0, sizeof(o));
    o.host = s->hosts[i];
    o.port = s->ports[i];
    o.connect_timeout_ms = s->connect_timeout_ms;
    o.command_timeout_ms = s->command_timeout_ms;
    o.tls = s->tls;
    o.server_name = s->server_name;
    *cls = TC_L2_UNAVAILABLE;
    if ((rc = tc__conn_open(&o, &c)) != TC_OK) {
        *cls = rc;
        snprintf(why, whylen, "%s", tc_errmsg());
        return ASK_FAILED;
    }
    if (s->pass) {
        const char *a[3] = {"AUTH", s->user ? s->user : s->pass, s->pass};
        if ((rc = tc__conn_command(c, s->user ? 3 : 2, a, NULL, &r)) !=
            TC_OK) {
            *cls = rc;
            snprintf(why, whylen, "%s", tc_errmsg());
            goto out;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            *cls = TC_AUTH;
            snprintf(why, whylen, "sentinel %s:%d refused AUTH: %.*s",
                     o.host, o.port, (int)(r->len > 120 ? 120 : r->len),
                     r->str);
            goto out;
        }
        freeReplyObject(r);
        r = NULL;
    }
    {
        const char *a[3] = {"SENTINEL", "get-master-addr-by-name", s->master};
        if ((rc = tc__conn_command(c, 3, a, NULL, &r)) != TC_OK) {
            *cls = rc;
            snprintf(why, whylen, "%s", tc_errmsg());
            goto out;
        }
    }
    if (r->type == REDIS_REPLY_NIL) {
        snprintf(why, whylen, "sentinel %s:%d knows no master '%s'", o.host,
                 o.port, s->master);
        res = ASK_UNKNOWN;
    } else if (r->type == REDIS_REPLY_ERROR) {
        *cls = strncmp(r->str, "NOAUTH", 6) == 0 ? TC_AUTH : TC_PROTOCOL;
        snprintf(why, whylen, "sentinel %s:%d: %.*s", o.host, o.port,
                 (int)(r->len > 120 ? 120 : r->len), r->str);
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
               r->element[0]->type != REDIS_REPLY_STRING ||
               r->element[1]->type != REDIS_REPLY_STRING ||
               r->element[0]->len >= hostlen ||
               tc__parse_u64(r->element[1]->str, r->element[1]->len, 1, 65535,
                             &p)) {
        *cls = TC_PROTOCOL;
        snprintf(why, whylen, "sentinel %s:%d: unexpected answer", o.host,
                 o.port);
    } else {
        memcpy(host, r->element[0]->str, r->element[0]->len);
        host[r->element[0]->len] = '\0';
        *port = (int)p;
        res = ASK_OK;
    }
out:
    if (r)
        freeReplyObject(r);
    tc__conn_free(c);
    return res;
}

tc_result tc__sentinel_resolve(tc__sentinel *s, char *host, size_t hostlen,
                               int *port)
{
    char detail[1024] = "", why[300];
    size_t dlen = 0;
    unsigned first, answered = 0, unknown = 0;
    int auth = 0, timeouts = 0;

    pthread_mutex_lock(&s->mu);
    first = s->first;
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < s->n; i++) {
        unsigned k = (first + i) % s->n;
        tc_result cls;
        int res = ask(s, k, host, hostlen, port, why, sizeof(why), &cls);
        if (res == ASK_OK) {
            pthread_mutex_lock(&s->mu);
            s->first = k;
            if (strcmp(s->host, host) != 0 || s->port != *port) {
                if (s->host[0]) {
                    atomic_fetch_add(&s->generation, 1);
                    tc__log(&s->log, TC_LOG_WARN,
                            "Redis master '%s' moved from %s:%d to %s:%d",
                            s->master, s->host, s->port, host, *port);
                }
                snprintf(s->host, sizeof(s->host), "%s", host);
                s->port = *port;
            }
            pthread_mutex_unlock(&s->mu);
            return TC_OK;
        }
        answered += res == ASK_UNKNOWN || cls == TC_PROTOCOL;
        unknown += res == ASK_UNKNOWN;
        auth |= cls == TC_AUTH;
        timeouts += cls == TC_TIMEOUT;
        if (dlen < sizeof(detail))
            dlen += (size_t)snprintf(detail + dlen, sizeof(detail) - dlen,
                                     "%s%s", dlen ? "; " : "", why);
    }
    if (unknown && unknown == answered && !auth)
        return tc__fail(TC_BAD_ARGUMENT,
                        "no sentinel knows a master named '%s' (%s)",
                        s->master, detail);
    if (auth)
        return tc__fail(TC_AUTH, "sentinels for '%s' refused us: %s",
                        s->master, detail);
    return tc__fail(timeouts == (int)s->n ? TC_TIMEOUT : TC_L2_UNAVAILABLE,
                    "no sentinel answered for master '%s' (%s)", s->master,
                    detail);
}
