/* Test fixture: a local Redis Cluster (see cluster_fixture.h). */
#include "cluster_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

void tcr_cluster_stop(tcr_cluster *t)
{
    /* node 0 last: with TLS, its dir holds every node's certificates */
    for (int i = TCR_CLUSTER_NODES - 1; i >= 0; i--)
        tcr_stop(&t->node[i]);
}

typedef struct child {
    pid_t pid;
    int done, status;
} child;

static int exited(void *p)
{
    child *c = p;
    if (!c->done && waitpid(c->pid, &c->status, WNOHANG) == c->pid)
        c->done = 1;
    return c->done;
}

/* `redis-cli --cluster create` with its output in the first node's dir.
 * 0 when it exits 0 within `timeout_ms`. */
static int create(tcr_cluster *t, int timeout_ms)
{
    char *argv[TCR_CLUSTER_NODES + 11], addr[TCR_CLUSTER_NODES][32], log[512];
    int n = 0, st;
    pid_t pid, parent = getpid();
    argv[n++] = "redis-cli";
    argv[n++] = "--cluster";
    argv[n++] = "create";
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", t->node[i].port);
        argv[n++] = addr[i];
    }
    if (t->node[0].tls) {
        argv[n++] = "--tls";
        argv[n++] = "--cacert";
        argv[n++] = t->node[0].ca_file;
    }
    argv[n++] = "--cluster-replicas";
    argv[n++] = "1";
    argv[n++] = "--cluster-yes";
    argv[n] = NULL;
    snprintf(log, sizeof(log), "%s/cluster-create.log", t->node[0].dir);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *f;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if ((f = freopen(log, "w", stdout)) != NULL)
            dup2(fileno(f), 2);
        execvp("redis-cli", argv);
        _exit(127);
    }
    {
        child ch = {pid, 0, 0};
        /* It waits for the nodes to join as long as they take: bounded. */
        if (!tcr_wait(exited, &ch, timeout_ms)) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0) {
            }
            fprintf(stderr, "tcr: redis-cli --cluster create did not finish "
                            "in %d ms (see %s)\n", timeout_ms, log);
            return -1;
        }
        st = ch.status;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "tcr: redis-cli --cluster create failed (see %s)\n",
                log);
        return -1;
    }
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
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < TCR_CLUSTER_NODES; i++) {
        char conf[256];
        int rc;
        (void)node_conf(conf, sizeof(conf), tls);
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
    if (create(t, timeout_ms) != 0)
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
