/* Redis Cluster topology (see cluster.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "cluster.h"
#include "conn.h"
#include "error.h"
#include "l2.h"
#include "log.h"
#include "parse.h"
#include "slot.h"

#define NO_NODE 0xFFFF

struct tc__cluster {
    tc__node_addr seeds[TC__CLUSTER_MAX_SEEDS];
    unsigned nseeds;

    pthread_mutex_t mu;  /* the map below */
    tc__node_addr nodes[TC__CLUSTER_MAX_NODES]; /* masters ever seen */
    unsigned nnodes;
    uint16_t slot_node[TC__SLOTS]; /* index into nodes, NO_NODE */
    int filled;                    /* a CLUSTER SLOTS answer was taken */
    uint64_t refreshed_ns;         /* end of the last refresh */

    pthread_mutex_t refresh_mu; /* one refresh at a time */

    /* The bus's watch (mu). */
    uint64_t watch_sent_ns, watch_epoch;
    int watch_degraded;
};

tc_result tc__cluster_create(const tc__config *cfg, tc__cluster **out)
{
    tc__cluster *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return tc__fail(TC_NO_MEMORY, "out of memory");
    for (unsigned i = 0; i < cfg->ncluster_seeds && i < TC__CLUSTER_MAX_SEEDS;
         i++) {
        snprintf(cl->seeds[i].host, sizeof(cl->seeds[i].host), "%s",
                 cfg->cluster_hosts[i]);
        cl->seeds[i].port = cfg->cluster_ports[i];
        cl->nseeds++;
    }
    for (unsigned s = 0; s < TC__SLOTS; s++)
        cl->slot_node[s] = NO_NODE;
    pthread_mutex_init(&cl->mu, NULL);
    pthread_mutex_init(&cl->refresh_mu, NULL);
    *out = cl;
    return TC_OK;
}

void tc__cluster_free(tc__cluster *cl)
{
    if (!cl)
        return;
    pthread_mutex_destroy(&cl->mu);
    pthread_mutex_destroy(&cl->refresh_mu);
    free(cl);
}

/* Index of host:port in nodes, added when new; NO_NODE when full. mu. */
static unsigned node_index(tc__cluster *cl, const char *host, int port)
{
    for (unsigned i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].port == port && !strcmp(cl->nodes[i].host, host))
            return i;
    if (cl->nnodes == TC__CLUSTER_MAX_NODES)
        return NO_NODE;
    snprintf(cl->nodes[cl->nnodes].host, TC__CLUSTER_HOST_MAX, "%s", host);
    cl->nodes[cl->nnodes].port = port;
    return cl->nnodes++;
}

/* Take a CLUSTER SLOTS reply asked of `asked`; 0 on success. An empty
 * host (or "?") in the reply means the node that answered. */
static int take_slots(tc__cluster *cl, const redisReply *r,
                      const tc__node_addr *asked)
{
    uint16_t *map; /* on the heap: callers' threads may have small stacks */
    size_t covered = 0;
    if (r->type != REDIS_REPLY_ARRAY || !(map = malloc(TC__SLOTS * 2)))
        return -1;
    for (unsigned s = 0; s < TC__SLOTS; s++)
        map[s] = NO_NODE;
    pthread_mutex_lock(&cl->mu);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i], *m;
        const char *host;
        unsigned idx;
        long long a, b;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY ||
            e->element[2]->elements < 2)
            continue;
        a = e->element[0]->integer, b = e->element[1]->integer;
        m = e->element[2];
        if (m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER || a < 0 || b < a ||
            b >= TC__SLOTS)
            continue;
        host = m->element[0]->len && strcmp(m->element[0]->str, "?")
                   ? m->element[0]->str
                   : asked->host;
        idx = node_index(cl, host, (int)m->element[1]->integer);
        for (long long s = a; s <= b; s++)
            map[s] = (uint16_t)idx;
        covered += (size_t)(b - a + 1);
    }
    if (covered)
        memcpy(cl->slot_node, map, sizeof(cl->slot_node));
    cl->filled |= covered > 0;
    pthread_mutex_unlock(&cl->mu);
    free(map);
    return covered ? 0 : -1;
}

/* CLUSTER SLOTS of one node; 0 when taken. */
static int ask_node(tc__cluster *cl, const tc__config *cfg,
                    const tc__node_addr *a, tc_result *why)
{
    tc__config nc = *cfg; /* shallow: only read for this connect */
    tc__conn *c;
    redisReply *r = NULL;
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    int rc = -1;
    nc.host = (char *)a->host;
    nc.port = a->port;
    nc.unix_path = NULL;
    nc.cluster = NULL;
    if (!(c = tc__l2_connect(&nc, why)))
        return -1;
    if ((*why = tc__conn_command(c, 2, argv, NULL, &r)) == TC_OK) {
        if (r->type == REDIS_REPLY_ERROR)
            *why = tc__fail(TC_PROTOCOL, "CLUSTER SLOTS on %s:%d: %s", a->host,
                            a->port, r->str);
        else if ((rc = take_slots(cl, r, a)) != 0)
            *why = tc__fail(TC_L2_UNAVAILABLE,
                            "CLUSTER SLOTS on %s:%d: no slot is served",
                            a->host, a->port);
        freeReplyObject(r);
    }
    tc__conn_free(c);
    return rc;
}

tc_result tc__cluster_refresh(tc__cluster *cl, const tc__config *cfg,
                              int force)
{
    tc__node_addr *try;
    unsigned n = 0;
    uint64_t asked_at = tc__now_ns();
    tc_result why = TC_L2_UNAVAILABLE, first = TC_OK;
    char tried[512] = "", err[256] = "";
    size_t tl = 0;

    pthread_mutex_lock(&cl->refresh_mu);
    pthread_mutex_lock(&cl->mu);
    if (cl->filled && !force &&
        (cl->refreshed_ns > asked_at ||
         asked_at - cl->refreshed_ns < 20 * 1000000ULL)) {
        pthread_mutex_unlock(&cl->mu);
        pthread_mutex_unlock(&cl->refresh_mu);
        return TC_OK;
    }
    try = malloc((TC__CLUSTER_MAX_NODES + TC__CLUSTER_MAX_SEEDS) *
                 sizeof(*try));
    if (!try) {
        pthread_mutex_unlock(&cl->mu);
        pthread_mutex_unlock(&cl->refresh_mu);
        return tc__fail(TC_NO_MEMORY, "out of memory");
    }
    /* Masters that serve slots now first, then the seeds. */
    for (unsigned i = 0; i < cl->nnodes; i++) {
        int serves = 0;
        for (unsigned s = 0; s < TC__SLOTS && !serves; s++)
            serves = cl->slot_node[s] == i;
        if (serves)
            try[n++] = cl->nodes[i];
    }
    pthread_mutex_unlock(&cl->mu);
    for (unsigned i = 0; i < cl->nseeds; i++)
        try[n++] = cl->seeds[i];
    for (unsigned i = 0; i < n; i++) {
        if (ask_node(cl, cfg, &try[i], &why) == 0) {
            pthread_mutex_lock(&cl->mu);
            cl->refreshed_ns = tc__now_ns();
            pthread_mutex_unlock(&cl->mu);
            pthread_mutex_unlock(&cl->refresh_mu);
            free(try);
            return TC_OK;
        }
        if (first == TC_OK || why == TC_AUTH)
            first = why;
        if (!err[0])
            snprintf(err, sizeof(err), "%s", tc_errmsg());
        if (tl < sizeof(tried))
            tl += (size_t)snprintf(tried + tl, sizeof(tried) - tl, "%s%s:%d",
                                   i ? ", " : "", try[i].host, try[i].port);
    }
    pthread_mutex_unlock(&cl->refresh_mu);
    free(try);
    return tc__fail(first == TC_OK ? TC_L2_UNAVAILABLE : first,
                    "Redis Cluster: no node answered CLUSTER SLOTS (tried %s; "
                    "first error: %s)",
                    tried, err);
}

tc_result tc__cluster_addr(tc__cluster *cl, const tc__config *cfg,
                           unsigned slot, tc__node_addr *out)
{
    tc_result r;
    unsigned idx;
    pthread_mutex_lock(&cl->mu);
    if (!cl->filled) {
        pthread_mutex_unlock(&cl->mu);
        if ((r = tc__cluster_refresh(cl, cfg, 0)) != TC_OK)
            return r;
        pthread_mutex_lock(&cl->mu);
    }
    idx = cl->slot_node[slot % TC__SLOTS];
    if (idx != NO_NODE)
        *out = cl->nodes[idx];
    pthread_mutex_unlock(&cl->mu);
    if (idx == NO_NODE)
        return tc__fail(TC_L2_UNAVAILABLE,
                        "Redis Cluster: no master serves slot %u", slot);
    return TC_OK;
}

void tc__cluster_moved(tc__cluster *cl, unsigned slot, const char *host,
                       int port)
{
    unsigned idx;
    pthread_mutex_lock(&cl->mu);
    idx = node_index(cl, host, port);
    if (idx != NO_NODE)
        cl->slot_node[slot % TC__SLOTS] = (uint16_t)idx;
    pthread_mutex_unlock(&cl->mu);
}

size_t tc__cluster_masters(tc__cluster *cl, const tc__config *cfg,
                           tc__node_addr *out, size_t max)
{
    unsigned char seen[TC__CLUSTER_MAX_NODES] = {0};
    size_t n = 0;
    pthread_mutex_lock(&cl->mu);
    if (!cl->filled) {
        pthread_mutex_unlock(&cl->mu);
        if (tc__cluster_refresh(cl, cfg, 0) != TC_OK)
            return 0;
        pthread_mutex_lock(&cl->mu);
    }
    for (unsigned s = 0; s < TC__SLOTS; s++) {
        unsigned i = cl->slot_node[s];
        if (i != NO_NODE && !seen[i]) {
            seen[i] = 1;
            if (n < max)
                out[n] = cl->nodes[i];
            n++;
        }
    }
    pthread_mutex_unlock(&cl->mu);
    return n < max ? n : max;
}

/* Does the space-separated, comma-joined flags field `f` (length n) hold
 * `flag`? */
static int has_flag(const char *f, size_t n, const char *flag)
{
    size_t fl = strlen(flag);
    for (const char *p = f, *e = f + n; p < e;) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        size_t l = c ? (size_t)(c - p) : (size_t)(e - p);
        if (l == fl && !strncmp(p, flag, fl))
            return 1;
        p = c ? c + 1 : e;
    }
    return 0;
}

int tc__cluster_parse_nodes(const char *text, size_t len,
                            const tc__node_addr *asked, tc__node_addr *out,
                            size_t max)
{
    size_t n = 0;
    for (const char *p = text, *e = text + len; p < e;) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *le = nl ? nl : e, *f[3], *q = p, *colon = NULL, *at;
        size_t fl[3];
        int nf = 0;
        uint64_t port;
        /* <id> <ip:port@cport[,hostname]> <flags> ... */
        while (nf < 3 && q < le) {
            const char *sp = memchr(q, ' ', (size_t)(le - q));
            f[nf] = q;
            fl[nf++] = (size_t)((sp ? sp : le) - q);
            q = sp ? sp + 1 : le;
        }
        p = nl ? nl + 1 : e;
        if (nf < 3 || has_flag(f[2], fl[2], "fail") ||
            has_flag(f[2], fl[2], "noaddr") ||
            has_flag(f[2], fl[2], "handshake"))
            continue;
        at = memchr(f[1], '@', fl[1]);
        at = at ? at : f[1] + fl[1];
        for (const char *c = f[1]; c < at; c++)
            if (*c == ':')
                colon = c; /* the last ':' (IPv6 hosts have more) */
        if (!colon || (size_t)(colon - f[1]) >= TC__CLUSTER_HOST_MAX ||
            tc__parse_u64(colon + 1, (size_t)(at - colon - 1), 1, 65535,
                          &port))
            return -1;
        if (n == max)
            return -1;
        if (colon == f[1]) /* a node that does not know its own address */
            snprintf(out[n].host, TC__CLUSTER_HOST_MAX, "%s", asked->host);
        else {
            memcpy(out[n].host, f[1], (size_t)(colon - f[1]));
            out[n].host[colon - f[1]] = '\0';
        }
        out[n++].port = (int)port;
    }
    return n ? (int)n : -1;
}

/* CLUSTER NODES of `a` (blocking), parsed into `out`. */
static tc_result list_nodes(const tc__config *cfg, const tc__node_addr *a,
                            tc__node_addr *out, size_t max, size_t *n)
{
    tc__config nc = *cfg; /* shallow: only read for this connect */
    tc__conn *c;
    redisReply *r = NULL;
    const char *argv[2] = {"CLUSTER", "NODES"};
    tc_result why;
    nc.host = (char *)a->host;
    nc.port = a->port;
    nc.unix_path = NULL;
    nc.cluster = NULL;
    if (!(c = tc__l2_connect(&nc, &why)))
        return why;
    if ((why = tc__conn_command(c, 2, argv, NULL, &r)) == TC_OK) {
        int got = r->type == REDIS_REPLY_STRING
                      ? tc__cluster_parse_nodes(r->str, r->len, a, out, max)
                      : -1;
        if (got < 0)
            why = tc__fail(TC_PROTOCOL, "CLUSTER NODES on %s:%d: %s", a->host,
                           a->port,
                           r->type == REDIS_REPLY_ERROR ? r->str
                                                        : "unexpected reply");
        else
            *n = (size_t)got;
        freeReplyObject(r);
    }
    tc__conn_free(c);
    return why;
}

tc_result tc__cluster_bus_nodes(tc__cluster *cl, const tc__config *cfg,
                                const char *state_key, tc__node_addr *cmd,
                                tc__node_addr *nodes, size_t max, size_t *n)
{
    tc_result r = tc__cluster_refresh(cl, cfg, 0);
    if (r != TC_OK)
        return r;
    if ((r = tc__cluster_addr(cl, cfg, tc__slot_of(state_key,
                                                   strlen(state_key)),
                              cmd)) != TC_OK)
        return r;
    return list_nodes(cfg, cmd, nodes, max, n);
}

char *tc__cluster_node_channel_dup(const char *channel,
                                   const tc__node_addr *node)
{
    /* "@", ":", up to 5 port digits (6 with a sign), the NUL. */
    size_t len = strlen(channel) + strlen(node->host) + 16;
    char *s = malloc(len);
    int n;
    if (s && ((n = snprintf(s, len, "%s@%s:%d", channel, node->host,
                            node->port)) < 0 ||
              (size_t)n >= len)) {
        free(s);
        s = NULL;
    }
    return s;
}

int tc__cluster_watch_due(tc__cluster *cl, uint64_t now_ns, uint64_t every_ns)
{
    int due;
    pthread_mutex_lock(&cl->mu);
    due = !cl->watch_sent_ns || now_ns - cl->watch_sent_ns >= every_ns;
    if (due)
        cl->watch_sent_ns = now_ns;
    pthread_mutex_unlock(&cl->mu);
    return due;
}

/* The number after "<name>:" in a CLUSTER INFO text, or 0. */
static uint64_t info_u64(const char *info, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = info; p && p + n < info + len;) {
        const char *nl = memchr(p, '\n', (size_t)(info + len - p));
        if (!strncmp(p, name, n) && p[n] == ':') {
            uint64_t v = 0;
            for (const char *d = p + n + 1; d < info + len && *d >= '0' &&
                                            *d <= '9';
                 d++)
                v = v * 10 + (uint64_t)(*d - '0');
            return v;
        }
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

int tc__cluster_watch(tc__cluster *cl, const char *info, size_t len)
{
    uint64_t epoch = info_u64(info, len, "cluster_current_epoch");
    int degraded = info_u64(info, len, "cluster_slots_pfail") +
                       info_u64(info, len, "cluster_slots_fail") >
                   0;
    int drop;
    pthread_mutex_lock(&cl->mu);
    drop = (cl->watch_epoch && epoch > cl->watch_epoch) ||
           (degraded && !cl->watch_degraded);
    if (epoch > cl->watch_epoch)
        cl->watch_epoch = epoch;
    cl->watch_degraded = degraded;
    pthread_mutex_unlock(&cl->mu);
    return drop;
}

int tc__cluster_parse_redirect(const char *s, size_t len, int *ask,
                               unsigned *slot, tc__node_addr *to)
{
    const char *p, *e = s + len, *colon, *sp;
    uint64_t v;
    if (len > 6 && !strncmp(s, "MOVED ", 6))
        *ask = 0, p = s + 6;
    else if (len > 4 && !strncmp(s, "ASK ", 4))
        *ask = 1, p = s + 4;
    else
        return 0;
    sp = memchr(p, ' ', (size_t)(e - p));
    if (!sp || tc__parse_u64(p, (size_t)(sp - p), 0, TC__SLOTS - 1, &v))
        return 0;
    *slot = (unsigned)v;
    p = sp + 1;
    colon = NULL;
    for (const char *q = p; q < e; q++)
        if (*q == ':')
            colon = q; /* the last ':' (IPv6 hosts have more) */
    if (!colon || colon == p || (size_t)(colon - p) >= TC__CLUSTER_HOST_MAX)
        return 0;
    if (tc__parse_u64(colon + 1, (size_t)(e - colon - 1), 1, 65535, &v))
        return 0;
    memcpy(to->host, p, (size_t)(colon - p));
    to->host[colon - p] = '\0';
    to->port = (int)v;
    return 1;
}
