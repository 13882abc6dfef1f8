/* tc-bench: a throwaway local 3-master Redis Cluster (see cluster.h). */
#include "cluster.h"

#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench.h"

int bench_cluster_slot(const char *key, size_t len)
{
    size_t s, e;
    uint16_t crc = 0;
    for (s = 0; s < len && key[s] != '{'; s++)
        ;
    if (s < len) { /* a non-empty {tag} hashes alone */
        for (e = s + 1; e < len && key[e] != '}'; e++)
            ;
        if (e < len && e != s + 1) {
            key += s + 1;
            len = e - s - 1;
        }
    }
    for (size_t i = 0; i < len; i++) { /* CRC16-CCITT (XMODEM) */
        crc ^= (uint16_t)((unsigned char)key[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc & 16383;
}

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Run argv with stdout and stderr to `log`, dying with the bench. */
static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* A string reply of `cmd` on a new connection to `port`; NULL on failure. */
static redisReply *ask(int port, const char *cmd)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *r = NULL;
    if (c && !c->err)
        r = redisCommand(c, cmd);
    if (c)
        redisFree(c);
    return r;
}

static int all_ok(const bench_cluster *t)
{
    for (int i = 0; i < BENCH_CLUSTER_MASTERS; i++) {
        redisReply *r = ask(t->port[i], "CLUSTER INFO");
        int ok = r && r->type == REDIS_REPLY_STRING &&
                 strstr(r->str, "cluster_state:ok") &&
                 strstr(r->str, "cluster_known_nodes:3");
        freeReplyObject(r);
        if (!ok)
            return 0;
    }
    return 1;
}

/* Fill t->owner from node 0's CLUSTER SLOTS; 0 when every slot is known. */
static int map_slots(bench_cluster *t)
{
    redisReply *r = ask(t->port[0], "CLUSTER SLOTS");
    int known = 0;
    memset(t->owner, 0xff, sizeof(t->owner));
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements;
         i++) {
        redisReply *e = r->element[i];
        int m = -1;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[2]->type != REDIS_REPLY_ARRAY ||
            e->element[2]->elements < 2)
            continue;
        for (int k = 0; k < BENCH_CLUSTER_MASTERS; k++)
            if (e->element[2]->element[1]->integer == t->port[k])
                m = k;
        for (long long s = e->element[0]->integer;
             m >= 0 && s <= e->element[1]->integer && s < 16384; s++) {
            t->owner[s] = (unsigned char)m;
            known++;
        }
    }
    freeReplyObject(r);
    return known == 16384 ? 0 : -1;
}

int bench_cluster_start(bench_cluster *t)
{
    char port[BENCH_CLUSTER_MASTERS][16], bus[16], ndir[128], log[160];
    char addr[BENCH_CLUSTER_MASTERS][32];
    char *cargv[BENCH_CLUSTER_MASTERS + 8];
    int n = 0, st;
    pid_t cli;
    memset(t, 0, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "/tmp/tc-bench-cluster.XXXXXX");
    if (!mkdtemp(t->dir)) {
        t->dir[0] = 0;
        perror("tc-bench: mkdtemp");
        return -1;
    }
    for (int i = 0; i < BENCH_CLUSTER_MASTERS; i++) {
        int bp = free_port();
        t->port[i] = free_port();
        if (t->port[i] < 0 || bp < 0)
            goto fail;
        snprintf(port[i], sizeof(port[i]), "%d", t->port[i]);
        snprintf(bus, sizeof(bus), "%d", bp);
        snprintf(ndir, sizeof(ndir), "%s/n%d", t->dir, i);
        snprintf(log, sizeof(log), "%s/n%d.log", t->dir, i);
        if (mkdir(ndir, 0700) != 0)
            goto fail;
        {
            char *argv[] = {"redis-server", "--port", port[i], "--bind",
                            "127.0.0.1", "--cluster-enabled", "yes",
                            "--cluster-config-file", "nodes.conf",
                            "--cluster-port", bus, "--cluster-node-timeout",
                            "5000", "--save", "", "--appendonly", "no",
                            "--dir", ndir, "--maxclients", "10000", NULL};
            if ((t->pid[i] = spawn(argv, log)) < 0) {
                t->pid[i] = 0;
                goto fail;
            }
        }
    }
    for (int i = 0; i < BENCH_CLUSTER_MASTERS; i++) { /* up within 5 s */
        int up = 0;
        for (int k = 0; k < 500 && !up; k++) {
            redisReply *r = ask(t->port[i], "PING");
            up = r != NULL;
            freeReplyObject(r);
            if (!up)
                bench_sleep_us(10000);
        }
        if (!up) {
            fprintf(stderr, "tc-bench: cluster node %d did not start (see "
                            "%s/n%d.log)\n", i, t->dir, i);
            goto fail;
        }
    }
    cargv[n++] = "redis-cli";
    cargv[n++] = "--cluster";
    cargv[n++] = "create";
    for (int i = 0; i < BENCH_CLUSTER_MASTERS; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", t->port[i]);
        cargv[n++] = addr[i];
    }
    cargv[n++] = "--cluster-replicas";
    cargv[n++] = "0";
    cargv[n++] = "--cluster-yes";
    cargv[n] = NULL;
    snprintf(log, sizeof(log), "%s/create.log", t->dir);
    if ((cli = spawn(cargv, log)) < 0 || waitpid(cli, &st, 0) != cli ||
        !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "tc-bench: redis-cli --cluster create failed (is "
                        "redis-cli installed?)\n");
        goto fail;
    }
    for (int k = 0; k < 400; k++) { /* ready within 20 s */
        if (all_ok(t) && map_slots(t) == 0)
            return 0;
        bench_sleep_us(50000);
    }
    fprintf(stderr, "tc-bench: cluster not ready in 20 s\n");
fail:
    bench_cluster_stop(t);
    return -1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void bench_cluster_stop(bench_cluster *t)
{
    for (int i = 0; i < BENCH_CLUSTER_MASTERS; i++)
        if (t->pid[i] > 0) {
            kill(t->pid[i], SIGTERM);
            waitpid(t->pid[i], NULL, 0);
            t->pid[i] = 0;
        }
    if (t->dir[0]) {
        nftw(t->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        t->dir[0] = 0;
    }
}
