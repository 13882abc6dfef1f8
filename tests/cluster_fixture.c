/* Test fixture: a local Redis Cluster (see cluster_fixture.h). */
#include "cluster_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

void tcr_cluster_stop(tcr_cluster *t)
{
    if (t->shared) { /* tcr-cluster-run's: it stops the nodes */
        memset(t, 0, sizeof(*t));
        return;
    }
    /* node 0 last: with TLS, its dir holds every node's certificates */
    for (int i = TCR_CLUSTER_NODES - 1; i >= 0; i--)
        tcr_stop(&t->node[i]);
}

/* `r`, the reply (taken) of a command `what` on s: 1 when it is +OK,
 * else 0 with the reason on stderr. */
static int ok_cmd(const tcr_server *s, const char *what, char *r)
{
    int ok = r && !strcmp(r, "OK");
    if (!ok)
        fprintf(stderr, "tcr: cluster node port %d: %s: %s\n", s->port, what,
                r ? r : "(no reply)");
    free(r);
    return ok;
}

/* Every node knows all the others by their ids, none is still in a
 * handshake, and every link is connected (what CLUSTER REPLICATE needs). */
static int all_met(void *p)
{
    tcr_cluster *t = p;
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char *nodes = tcr_cmd(&t->node[i], NULL, "CLUSTER", "NODES", NULL);
        int lines = 0, ok = nodes != NULL;
        for (char *l = nodes, *e; ok && l && *l; l = e ? e + 1 : NULL) {
            e = strchr(l, '\n');
            if (e)
                *e = '\0';
            if (!*l)
                continue;
            lines++;
            ok = !strstr(l, "handshake") && !strstr(l, "noaddr") &&
                 strstr(l, " connected") != NULL;
        }
        free(nodes);
        if (!ok || lines != TCR_CLUSTER_NODES)
            return 0;
    }
    return 1;
}

/* Make the cluster as `redis-cli --cluster create --cluster-replicas 1`
 * does (its slot ranges, one config epoch per node, MEET, then
 * REPLICATE), without its fixed one-second sleeps: every wait is on a
 * condition. Nodes 0-2 are the masters, node 3+i replicates node i. */
static int create(tcr_cluster *t, const int *bus_port, int timeout_ms)
{
    char id[TCR_CLUSTER_NODES][41];
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char epoch[16];
        if (tcr_cluster_id(&t->node[i], id[i]) != 0) {
            fprintf(stderr, "tcr: cluster node %d: no CLUSTER MYID\n", i);
            return -1;
        }
        snprintf(epoch, sizeof(epoch), "%d", i + 1);
        if (!ok_cmd(&t->node[i], "CLUSTER SET-CONFIG-EPOCH",
                    tcr_cmd(&t->node[i], NULL, "CLUSTER", "SET-CONFIG-EPOCH",
                            epoch, NULL)))
            return -1;
    }
    for (int i = 0; i < 3; i++) {
        char lo[16], hi[16];
        snprintf(lo, sizeof(lo), "%d", 16384 * i / 3);
        snprintf(hi, sizeof(hi), "%d", 16384 * (i + 1) / 3 - 1);
        if (!ok_cmd(&t->node[i], "CLUSTER ADDSLOTSRANGE",
                    tcr_cmd(&t->node[i], NULL, "CLUSTER", "ADDSLOTSRANGE",
                            lo, hi, NULL)))
            return -1;
    }
    for (int i = 1; i < TCR_CLUSTER_NODES; i++) {
        char port[16], bus[16];
        snprintf(port, sizeof(port), "%d", t->node[0].port);
        snprintf(bus, sizeof(bus), "%d", bus_port[0]);
        if (!ok_cmd(&t->node[i], "CLUSTER MEET",
                    tcr_cmd(&t->node[i], NULL, "CLUSTER", "MEET", "127.0.0.1",
                            port, bus, NULL)))
            return -1;
    }
    if (!tcr_wait(all_met, t, timeout_ms)) {
        fprintf(stderr, "tcr: cluster nodes did not all meet in %d ms\n",
                timeout_ms);
        return -1;
    }
    for (int i = 3; i < TCR_CLUSTER_NODES; i++)
        if (!ok_cmd(&t->node[i], "CLUSTER REPLICATE",
                    tcr_cmd(&t->node[i], NULL, "CLUSTER", "REPLICATE",
                            id[i - 3], NULL)))
            return -1;
    return 0;
}

/* Every replica's link to its master is up. */
static int replicas_synced(void *p)
{
    tcr_cluster *t = p;
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char *info;
        int ok = 1;
        if (t->node[i].pid <= 0)
            continue;
        info = tcr_cmd(&t->node[i], NULL, "INFO", "replication", NULL);
        if (!info)
            return 0;
        if (strstr(info, "role:slave"))
            ok = strstr(info, "master_link_status:up") != NULL &&
                 strstr(info, "master_sync_in_progress:0") != NULL;
        free(info);
        if (!ok)
            return 0;
    }
    return 1;
}

/* CLUSTER SLOTS is nested, which tcr_cmd() flattens: walk it with
 * hiredis. */

static redisContext *connect_node(const tcr_server *s)
{
    return tcr_connect_unix(s->sock, 1);
}

/* slot -> master port from one node's CLUSTER SLOTS; 0 on success. */
static int slot_map(const tcr_server *s, int *map)
{
    redisContext *c = connect_node(s);
    redisReply *r;
    int ok = -1;
    if (!c)
        return -1;
    for (int i = 0; i < 16384; i++)
        map[i] = -1;
    r = redisCommand(c, "CLUSTER SLOTS");
    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
                e->element[2]->type != REDIS_REPLY_ARRAY ||
                e->element[2]->elements < 2)
                continue;
            for (long long sl = e->element[0]->integer;
                 sl <= e->element[1]->integer && sl < 16384; sl++)
                map[sl] = (int)e->element[2]->element[1]->integer;
        }
        ok = 0;
    }
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

int tcr_cluster_ok(void *p)
{
    tcr_cluster *t = p;
    static int first[16384], other[16384];
    int have = 0;
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char *info;
        int ok;
        if (t->node[i].pid <= 0)
            continue;
        info = tcr_cmd(&t->node[i], NULL, "CLUSTER", "INFO", NULL);
        ok = info && strstr(info, "cluster_state:ok");
        free(info);
        if (!ok || slot_map(&t->node[i], have ? other : first) != 0)
            return 0;
        if (have && memcmp(first, other, sizeof(first)) != 0)
            return 0;
        if (!have)
            for (int s = 0; s < 16384; s++)
                if (first[s] < 0 || !tcr_cluster_node(t, first[s]) ||
                    tcr_cluster_node(t, first[s])->pid <= 0)
                    return 0;
        have = 1;
    }
    return have;
}

/* A cluster node's configuration, into conf; its cluster bus port. */
static int node_conf(char *conf, size_t len, int tls)
{
    /* The bus port would be port + 10000: name a free one instead. */
    int cport = tcr_free_port();
    snprintf(conf, len,
             "cluster-enabled yes\ncluster-config-file nodes.conf\n"
             "cluster-node-timeout %d\ncluster-port %d\n"
             "enable-debug-command yes\n%s",
             TCR_CLUSTER_NODE_TIMEOUT_MS, cport,
             tls ? "tls-cluster yes\ntls-replication yes\n" : "");
    return cport;
}

static int start_cluster(tcr_cluster *t, int timeout_ms, int tls)
{
    size_t ul;
    int bus_port[TCR_CLUSTER_NODES];
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char conf[256];
        int rc;
        bus_port[i] = node_conf(conf, sizeof(conf), tls);
        rc = !tls    ? tcr_start(&t->node[i], conf)
             : i == 0 ? tcr_start_tls(&t->node[i], conf)
                      : tcr_start_tls_sharing(&t->node[i], conf, &t->node[0]);
        if (rc != 0) {
            fprintf(stderr, "tcr: cluster node %d did not start\n", i);
            goto fail;
        }
    }
    /* The cluster bus always asks for the connecting node's certificate
     * (tls-auth-clients does not apply to it): the nodes present the
     * client certificate of the shared CA. */
    for (int i = 0; tls && i < TCR_CLUSTER_NODES; i++) {
        char *ok = tcr_cmd(&t->node[i], NULL, "CONFIG", "SET",
                           "tls-client-cert-file", t->node[0].client_cert,
                           "tls-client-key-file", t->node[0].client_key,
                           NULL);
        int good = ok && !strcmp(ok, "OK");
        free(ok);
        if (!good) {
            fprintf(stderr, "tcr: cluster node %d: CONFIG SET "
                            "tls-client-cert-file failed\n", i);
            goto fail;
        }
    }
    if (create(t, bus_port, timeout_ms) != 0)
        goto fail;
    if (!tcr_wait(tcr_cluster_ok, t, timeout_ms) ||
        !tcr_wait(replicas_synced, t, timeout_ms)) {
        fprintf(stderr, "tcr: cluster not ready in %d ms\n", timeout_ms);
        goto fail;
    }
    ul = (size_t)snprintf(t->url, sizeof(t->url), "%s",
                          tls ? "rediss-cluster://" : "redis-cluster://");
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        ul += (size_t)snprintf(t->url + ul, sizeof(t->url) - ul,
                               "%s127.0.0.1:%d", i ? "," : "",
                               t->node[i].port);
    return 0;
fail:
    tcr_cluster_stop(t);
    return -1;
}

int tcr_cluster_start(tcr_cluster *t, int timeout_ms)
{
    return start_cluster(t, timeout_ms, 0);
}

int tcr_cluster_start_tls(tcr_cluster *t, int timeout_ms)
{
    return start_cluster(t, timeout_ms, 1);
}

/* The description file: this tag, then the struct as this build lays it
 * out (tcr-cluster-run and the tests link the same fixture). */
static const char save_tag[] = "tcr_cluster v1";

int tcr_cluster_save(const tcr_cluster *t, const char *path)
{
    FILE *f = fopen(path, "wb");
    size_t size = sizeof(*t);
    int ok;
    if (!f)
        return -1;
    ok = fwrite(save_tag, sizeof(save_tag), 1, f) == 1 &&
         fwrite(&size, sizeof(size), 1, f) == 1 &&
         fwrite(t, sizeof(*t), 1, f) == 1;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int attach(tcr_cluster *t, const char *path, int timeout_ms)
{
    FILE *f = fopen(path, "rb");
    char tag[sizeof(save_tag)];
    size_t size = 0;
    int ok;
    memset(t, 0, sizeof(*t));
    if (!f) {
        fprintf(stderr, "tcr: shared cluster %s: cannot open it\n", path);
        return -1;
    }
    ok = fread(tag, sizeof(tag), 1, f) == 1 &&
         !memcmp(tag, save_tag, sizeof(tag)) &&
         fread(&size, sizeof(size), 1, f) == 1 && size == sizeof(*t) &&
         fread(t, sizeof(*t), 1, f) == 1;
    fclose(f);
    t->shared = 1;
    if (!ok) {
        fprintf(stderr, "tcr: shared cluster %s: not one of this build\n",
                path);
        tcr_cluster_stop(t);
        return -1;
    }
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        if (t->node[i].pid <= 0 || kill(t->node[i].pid, 0) != 0) {
            fprintf(stderr, "tcr: shared cluster: node %d (port %d) is "
                            "gone: a case before this one killed it\n",
                    i, t->node[i].port);
            tcr_cluster_stop(t);
            return -1;
        }
    if (!tcr_wait(tcr_cluster_ok, t, timeout_ms)) {
        fprintf(stderr, "tcr: shared cluster: not ok after %d ms: a case "
                        "before this one left it broken\n", timeout_ms);
        tcr_cluster_stop(t);
        return -1;
    }
    return 0;
}

int tcr_cluster_shared(tcr_cluster *t, int timeout_ms)
{
    const char *path = getenv(TCR_SHARED_CLUSTER_ENV);
    return path && *path ? attach(t, path, timeout_ms)
                         : tcr_cluster_start(t, timeout_ms);
}

int tcr_cluster_shared_tls(tcr_cluster *t, int timeout_ms)
{
    const char *path = getenv(TCR_SHARED_CLUSTER_TLS_ENV);
    return path && *path ? attach(t, path, timeout_ms)
                         : tcr_cluster_start_tls(t, timeout_ms);
}

tcr_server *tcr_cluster_node(tcr_cluster *t, int port)
{
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        if (t->node[i].port == port)
            return &t->node[i];
    return NULL;
}

int tcr_cluster_keyslot(tcr_cluster *t, const char *key)
{
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char *s;
        int slot;
        if (t->node[i].pid <= 0)
            continue;
        if (!(s = tcr_cmd(&t->node[i], NULL, "CLUSTER", "KEYSLOT", key, NULL)))
            continue;
        slot = atoi(s);
        free(s);
        return slot;
    }
    return -1;
}

tcr_server *tcr_cluster_master_of(tcr_cluster *t, const char *key)
{
    static int map[16384];
    int slot = tcr_cluster_keyslot(t, key);
    if (slot < 0)
        return NULL;
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        if (t->node[i].pid <= 0 || slot_map(&t->node[i], map) != 0)
            continue;
        return map[slot] > 0 ? tcr_cluster_node(t, map[slot]) : NULL;
    }
    return NULL;
}

int tcr_cluster_id(const tcr_server *s, char *buf)
{
    char *id = tcr_cmd(s, NULL, "CLUSTER", "MYID", NULL);
    if (!id || strlen(id) != 40) {
        free(id);
        return -1;
    }
    memcpy(buf, id, 41);
    free(id);
    return 0;
}

tcr_server *tcr_cluster_replica_of(tcr_cluster *t, const tcr_server *m)
{
    char id[41];
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char *info;
        char want[64];
        int mine;
        if (t->node[i].pid <= 0 || &t->node[i] == m)
            continue;
        info = tcr_cmd(&t->node[i], NULL, "INFO", "replication", NULL);
        snprintf(want, sizeof(want), "master_port:%d\r", m->port);
        mine = info && strstr(info, want);
        free(info);
        if (mine)
            return &t->node[i];
    }
    (void)id;
    return NULL;
}

int tcr_cluster_key_on(tcr_cluster *t, const tcr_server *m, const char *stem,
                       char *buf, size_t len)
{
    static int map[16384];
    int have = 0;
    for (int i = 0; i < TCR_CLUSTER_NODES && !have; i++)
        have = t->node[i].pid > 0 && slot_map(&t->node[i], map) == 0;
    if (!have)
        return -1;
    for (int n = 0; n < 100000; n++) {
        int slot;
        snprintf(buf, len, "%s%d", stem, n);
        if ((slot = tcr_cluster_keyslot(t, buf)) >= 0 && map[slot] == m->port)
            return 0;
    }
    return -1;
}

static long long field(const char *info, const char *name)
{
    const char *p = info ? strstr(info, name) : NULL;
    return p ? atoll(p + strlen(name)) : -1;
}

typedef struct catch_up {
    const tcr_server *rep;
    long long target;
} catch_up;

static int reached(void *p)
{
    catch_up *c = p;
    char *info = tcr_cmd(c->rep, NULL, "INFO", "replication", NULL);
    long long off = field(info, "slave_repl_offset:");
    int up = info && strstr(info, "master_link_status:up") != NULL;
    free(info);
    return up && off >= c->target;
}

int tcr_cluster_replica_caught_up(const tcr_server *m, const tcr_server *rep,
                                  int timeout_ms)
{
    char *info = tcr_cmd(m, NULL, "INFO", "replication", NULL);
    catch_up c = {rep, field(info, "master_repl_offset:")};
    free(info);
    return c.target >= 0 && tcr_wait(reached, &c, timeout_ms);
}

typedef struct joined {
    tcr_cluster *t;
    const tcr_server *s;
} joined;

/* Every live node, `s` included, lists s, knows every other node, none
 * in handshake, and says cluster_state:ok (not tcr_cluster_ok(): a slot
 * may have moved to a node added before). */
static int all_know(void *p)
{
    joined *j = p;
    char want[32];
    int live = 1;
    snprintf(want, sizeof(want), ":%d@", j->s->port);
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        live += j->t->node[i].pid > 0;
    for (int i = 0; i <= TCR_CLUSTER_NODES; i++) {
        const tcr_server *n = i < TCR_CLUSTER_NODES ? &j->t->node[i] : j->s;
        char *nodes, *info;
        int ok;
        if (n->pid <= 0)
            continue;
        nodes = tcr_cmd(n, NULL, "CLUSTER", "NODES", NULL);
        info = tcr_cmd(n, NULL, "CLUSTER", "INFO", NULL);
        ok = nodes && info && strstr(nodes, want) &&
             !strstr(nodes, "handshake") &&
             strstr(info, "cluster_state:ok") &&
             field(info, "cluster_known_nodes:") >= live;
        free(nodes);
        free(info);
        if (!ok)
            return 0;
    }
    return 1;
}

int tcr_cluster_add_node(tcr_cluster *t, tcr_server *s, int timeout_ms)
{
    char conf[256], port[16], cport[16], *r;
    joined j = {t, s};
    int ok;
    snprintf(cport, sizeof(cport), "%d", node_conf(conf, sizeof(conf), 0));
    if (tcr_start(s, conf) != 0) {
        fprintf(stderr, "tcr: the added cluster node did not start\n");
        return -1;
    }
    snprintf(port, sizeof(port), "%d", s->port);
    r = tcr_cmd(&t->node[0], NULL, "CLUSTER", "MEET", "127.0.0.1", port,
                cport, NULL);
    ok = r && !strcmp(r, "OK");
    free(r);
    if (!ok || !tcr_wait(all_know, &j, timeout_ms)) {
        fprintf(stderr, "tcr: node %d did not join the cluster in %d ms\n",
                s->port, timeout_ms);
        tcr_stop(s);
        return -1;
    }
    return 0;
}
