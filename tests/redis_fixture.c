#include "redis_fixture.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

void tcr_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

int tcr_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int port = -1;
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

static int write_conf(const tcr_server *s)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/redis.conf", s->dir);
    f = fopen(path, "w");
    if (!f)
        return -1;
    if (s->tls) /* TLS only: plain TCP off, as in production */
        fprintf(f,
                "port 0\ntls-port %d\ntls-cert-file %s/server.crt\n"
                "tls-key-file %s/server.key\ntls-ca-cert-file %s\n"
                "tls-auth-clients no\n",
                s->port, s->cert_dir, s->cert_dir, s->ca_file);
    else
        fprintf(f, "port %d\n", s->port);
    if (s->sentinel) { /* no dataset: no save, dir and log only */
        fprintf(f,
                "bind 127.0.0.1\nunixsocket %s\nunixsocketperm 700\n"
                "dir %s\ndaemonize no\nlogfile %s/sentinel.log\n"
                "protected-mode no\n%s",
                s->sock, s->dir, s->dir, s->conf_extra);
        fclose(f);
        return 0;
    }
    /* repl-diskless-sync-delay 0: a replica's sync (Sentinel's, a
     * cluster's) starts at once, not after Redis's default 5 s wait for
     * more replicas to share it. */
    fprintf(f,
            "bind 127.0.0.1\nunixsocket %s\nunixsocketperm 700\n"
            "dir %s\nsave \"\"\nappendonly no\ndaemonize no\n"
            "logfile %s/redis.log\nprotected-mode no\n"
            "repl-diskless-sync-delay 0\n%s",
            s->sock, s->dir, s->dir, s->conf_extra);
    fclose(f);
    return 0;
}

redisContext *tcr_connect_unix(const char *path, int timeout_s)
{
    struct timeval tv = {timeout_s, 0};
    redisContext *c = redisConnectUnixWithTimeout(path, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c)
        redisSetTimeout(c, tv);
    return c;
}

static int ping_ok(const tcr_server *s)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectUnixWithTimeout(s->sock, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        /* With requirepass, PING answers NOAUTH: still alive. */
        ok = r != NULL;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

static int spawn(tcr_server *s)
{
    char conf[512];
    pid_t parent = getpid();
    pid_t pid;
    snprintf(conf, sizeof(conf), "%s/redis.conf", s->dir);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Die with the test process, whatever way it ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (s->sentinel)
            execlp("redis-sentinel", "redis-sentinel", conf, (char *)NULL);
        else
            execlp("redis-server", "redis-server", conf, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 500; i++) { /* up to 10 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            return -1;
        }
        if (ping_ok(s))
            return 0;
        tcr_sleep_ms(20);
    }
    return -1;
}

/* Make the CA, the server and client certificates and an unrelated CA in
 * s->dir with the openssl CLI (EC keys: quick to make). */
static int make_certs(tcr_server *s)
{
    char cmd[4096];
    snprintf(s->ca_file, sizeof(s->ca_file), "%s/ca.crt", s->dir);
    snprintf(s->ca_dir, sizeof(s->ca_dir), "%s/cadir", s->dir);
    snprintf(s->other_ca_file, sizeof(s->other_ca_file), "%s/other-ca.crt",
             s->dir);
    snprintf(s->client_cert, sizeof(s->client_cert), "%s/client.crt", s->dir);
    snprintf(s->client_key, sizeof(s->client_key), "%s/client.key", s->dir);
#define TCR_KEY "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && exec >openssl.log 2>&1 && set -e\n"
             "openssl req -x509 " TCR_KEY " -keyout ca.key -out ca.crt "
             "-days 2 -subj '/CN=tcr test CA'\n"
             "openssl req -x509 " TCR_KEY " -keyout other-ca.key "
             "-out other-ca.crt -days 2 -subj '/CN=tcr other CA'\n"
             "openssl req " TCR_KEY " -keyout server.key -out server.csr "
             "-subj /CN=localhost\n"
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\\n"
             "extendedKeyUsage=serverAuth\\n' >server.ext\n"
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
             "-CAcreateserial -days 2 -extfile server.ext -out server.crt\n"
             "openssl req " TCR_KEY " -keyout client.key -out client.csr "
             "-subj '/CN=tcr client'\n"
             "printf 'extendedKeyUsage=clientAuth\\n' >client.ext\n"
             "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key "
             "-CAcreateserial -days 2 -extfile client.ext -out client.crt\n"
             "mkdir cadir && cp ca.crt cadir/ && openssl rehash cadir\n",
             s->dir);
#undef TCR_KEY
    if (system(cmd) != 0) {
        fprintf(stderr, "tcr: openssl failed, see %s/openssl.log\n", s->dir);
        return -1;
    }
    return 0;
}

/* Start a server (a sentinel when `sentinel`); TLS-only when `tls`, with
 * certificates of its own, or those of `certs` when not NULL. */
static int start(tcr_server *s, const char *conf_extra, int tls, int sentinel,
                 const tcr_server *certs);

int tcr_start(tcr_server *s, const char *conf_extra)
{
    return start(s, conf_extra, 0, 0, NULL);
}

int tcr_start_sentinel(tcr_server *s, const char *conf_extra)
{
    return start(s, conf_extra, 0, 1, NULL);
}

int tcr_start_tls(tcr_server *s, const char *conf_extra)
{
    return start(s, conf_extra, 1, 0, NULL);
}

int tcr_start_tls_sharing(tcr_server *s, const char *conf_extra,
                          const tcr_server *certs)
{
    return start(s, conf_extra, 1, 0, certs);
}

static int start(tcr_server *s, const char *conf_extra, int tls, int sentinel,
                 const tcr_server *certs)
{
    char tmpl[] = "/tmp/tcr.XXXXXX";
    memset(s, 0, sizeof(*s));
    if (!mkdtemp(tmpl))
        return -1;
    snprintf(s->dir, sizeof(s->dir), "%s", tmpl);
    snprintf(s->cert_dir, sizeof(s->cert_dir), "%s", tmpl);
    snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
    snprintf(s->conf_extra, sizeof(s->conf_extra), "%s",
             conf_extra ? conf_extra : "");
    s->sentinel = sentinel;
    s->tls = tls;
    if (tls && certs) {
        snprintf(s->cert_dir, sizeof(s->cert_dir), "%s", certs->cert_dir);
        memcpy(s->ca_file, certs->ca_file, sizeof(s->ca_file));
        memcpy(s->ca_dir, certs->ca_dir, sizeof(s->ca_dir));
        memcpy(s->other_ca_file, certs->other_ca_file,
               sizeof(s->other_ca_file));
        memcpy(s->client_cert, certs->client_cert, sizeof(s->client_cert));
        memcpy(s->client_key, certs->client_key, sizeof(s->client_key));
    } else if (tls && make_certs(s) != 0) {
        tcr_stop(s);
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = tcr_free_port();
        if (s->port <= 0 || write_conf(s) != 0)
            continue;
        snprintf(s->url, sizeof(s->url), "%s://127.0.0.1:%d",
                 tls ? "rediss" : "redis", s->port);
        snprintf(s->unix_url, sizeof(s->unix_url), "unix://%s", s->sock);
        if (spawn(s) == 0)
            return 0;
    }
    tcr_stop(s);
    return -1;
}

void tcr_kill(tcr_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGKILL);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        s->pid = 0;
    }
}

int tcr_restart(tcr_server *s)
{
    tcr_kill(s);
    unlink(s->sock);
    return spawn(s);
}

void tcr_stop(tcr_server *s)
{
    char cmd[600];
    tcr_kill(s);
    if (s->dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
        if (system(cmd) != 0) {
            /* Leftover temp dir: harmless, nothing else to do. */
        }
        s->dir[0] = '\0';
    }
}

void tcr_pause(tcr_server *s)
{
    if (s->pid > 0)
        kill(s->pid, SIGSTOP);
}

void tcr_resume(tcr_server *s)
{
    if (s->pid > 0)
        kill(s->pid, SIGCONT);
}

static void append(char **buf, size_t *len, const char *p, size_t n)
{
    char *nb = realloc(*buf, *len + n + 2);
    if (!nb)
        return;
    memcpy(nb + *len, p, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
}

static void render(redisReply *r, char **buf, size_t *len)
{
    char tmp[32];
    switch (r->type) {
    case REDIS_REPLY_INTEGER:
        snprintf(tmp, sizeof(tmp), "%lld", r->integer);
        append(buf, len, tmp, strlen(tmp));
        break;
    case REDIS_REPLY_NIL:
        append(buf, len, "(nil)", 5);
        break;
    case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < r->elements; i++) {
            if (i)
                append(buf, len, "\n", 1);
            render(r->element[i], buf, len);
        }
        break;
    default:
        append(buf, len, r->str, r->len);
    }
}

char *tcr_cmd(const tcr_server *s, const char *auth, ...)
{
    const char *argv[64];
    int argc = 0;
    va_list ap;
    redisContext *c;
    redisReply *r;
    char *out = NULL;
    size_t len = 0;

    va_start(ap, auth);
    for (const char *a; argc < 64 && (a = va_arg(ap, const char *));)
        argv[argc++] = a;
    va_end(ap);

    if (!(c = tcr_connect_unix(s->sock, 2)))
        return NULL;
    if (auth) {
        r = redisCommand(c, "AUTH %s", auth);
        if (r)
            freeReplyObject(r);
    }
    r = redisCommandArgv(c, argc, argv, NULL);
    if (r) {
        append(&out, &len, "", 0);
        render(r, &out, &len);
        freeReplyObject(r);
    }
    redisFree(c);
    return out;
}

int tcr_wait(int (*cond)(void *), void *arg, int timeout_ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long el;
        if (cond(arg))
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &t);
        el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (el > timeout_ms)
            return cond(arg) ? 1 : 0;
        tcr_sleep_ms(2);
    }
}

char tcr_proc_state(pid_t pid)
{
    char path[64], buf[512], *rp;
    FILE *f;
    size_t n;
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')'. */
    rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp[2] : 0;
}

int tcr_stopped(void *p)
{
    char st = tcr_proc_state(((const tcr_server *)p)->pid);
    return st == 'T' || st == 't';
}

double tcr_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_BOOTTIME, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

void tcr_sleep_until_ms(double when_ms)
{
    double now;
    while ((now = tcr_now_ms()) < when_ms) {
        double left = when_ms - now;
        tcr_sleep_ms(left < 1 ? 1 : (int)left + 1);
    }
}

/* ---- Sentinel topology ---------------------------------------------- */

/* Lines of `text` (tcr_cmd's rendering of an array: one element a line),
 * counted. */
static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p++)
        n++;
    return n;
}

int tcr_sentinel_master_port(const tcr_sentinels *t, int i)
{
    char *r = tcr_cmd(&t->sentinel[i], NULL, "SENTINEL",
                      "get-master-addr-by-name", t->name, NULL);
    const char *nl = r ? strchr(r, '\n') : NULL;
    int port = nl ? atoi(nl + 1) : -1;
    free(r);
    return port > 0 ? port : -1;
}

int tcr_sentinels_agree(const tcr_sentinels *t, const tcr_server *s)
{
    char *role;
    int ok;
    for (int i = 0; i < 3; i++)
        if (t->sentinel[i].pid > 0 &&
            tcr_sentinel_master_port(t, i) != s->port)
            return 0;
    role = tcr_cmd(s, NULL, "ROLE", NULL);
    ok = role && strncmp(role, "master", 6) == 0;
    free(role);
    return ok;
}

/* An "name:<number>" field of an INFO text, or -1. */
static long long info_field(const char *info, const char *name)
{
    const char *p = info ? strstr(info, name) : NULL;
    return p ? atoll(p + strlen(name)) : -1;
}

typedef struct catch_up {
    const tcr_sentinels *t;
    long long target;
} catch_up;

static int replica_reached(void *p)
{
    catch_up *c = p;
    char *info = tcr_cmd(&c->t->replica, NULL, "INFO", "replication", NULL);
    long long off = info_field(info, "slave_repl_offset:");
    int up = info && strstr(info, "master_link_status:up") != NULL;
    free(info);
    return up && off >= c->target;
}

int tcr_replica_caught_up(const tcr_sentinels *t, int timeout_ms)
{
    char *info = tcr_cmd(&t->master, NULL, "INFO", "replication", NULL);
    catch_up c = {t, info_field(info, "master_repl_offset:")};
    free(info);
    return c.target >= 0 && tcr_wait(replica_reached, &c, timeout_ms);
}

/* Ready for a failover: the replica in sync, each sentinel seeing the
 * replica and both other sentinels. */
static int topology_ready(void *p)
{
    tcr_sentinels *t = p;
    char *info = tcr_cmd(&t->replica, NULL, "INFO", "replication", NULL);
    int ok = info && strstr(info, "master_link_status:up");
    free(info);
    for (int i = 0; ok && i < 3; i++) {
        char *reps = tcr_cmd(&t->sentinel[i], NULL, "SENTINEL", "replicas",
                             t->name, NULL);
        char *sens = tcr_cmd(&t->sentinel[i], NULL, "SENTINEL", "sentinels",
                             t->name, NULL);
        char port[16];
        snprintf(port, sizeof(port), "\n%d\n", t->replica.port);
        /* Each entry is a flat list of name/value lines: count "flags". */
        ok = reps && strstr(reps, port) && sens &&
             count_lines_with(sens, "\nflags\n") +
                     (strncmp(sens, "flags\n", 6) == 0) >= 2;
        free(reps);
        free(sens);
    }
    return ok;
}

static int sentinels_start(tcr_sentinels *t, const char *name,
                           int timeout_ms, int tls)
{
    char conf[600];
    const char *tls_repl = tls ? "tls-replication yes\n" : "";
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    if (start(&t->master, NULL, tls, 0, NULL) != 0)
        goto fail;
    snprintf(conf, sizeof(conf), "replicaof 127.0.0.1 %d\n%s",
             t->master.port, tls_repl);
    if (start(&t->replica, conf, tls, 0, tls ? &t->master : NULL) != 0)
        goto fail;
    snprintf(conf, sizeof(conf),
             "sentinel monitor %s 127.0.0.1 %d 2\n"
             "sentinel down-after-milliseconds %s 1000\n"
             "sentinel failover-timeout %s 5000\n"
             "sentinel parallel-syncs %s 1\n%s",
             name, t->master.port, name, name, name, tls_repl);
    for (int i = 0; i < 3; i++)
        if (start(&t->sentinel[i], conf, tls, 1, tls ? &t->master : NULL) !=
            0)
            goto fail;
    snprintf(t->url, sizeof(t->url),
             "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/%s",
             t->sentinel[0].port, t->sentinel[1].port, t->sentinel[2].port,
             name);
    if (!tcr_wait(topology_ready, t, timeout_ms) ||
        !tcr_replica_caught_up(t, timeout_ms)) {
        fprintf(stderr, "tcr: sentinel topology not ready in %d ms\n",
                timeout_ms);
        goto fail;
    }
    return 0;
fail:
    tcr_sentinels_stop(t);
    return -1;
}

int tcr_sentinels_start(tcr_sentinels *t, const char *name, int timeout_ms)
{
    return sentinels_start(t, name, timeout_ms, 0);
}

int tcr_sentinels_start_tls(tcr_sentinels *t, const char *name,
                            int timeout_ms)
{
    return sentinels_start(t, name, timeout_ms, 1);
}

void tcr_sentinels_stop(tcr_sentinels *t)
{
    for (int i = 0; i < 3; i++)
        tcr_stop(&t->sentinel[i]);
    tcr_stop(&t->replica);
    tcr_stop(&t->master);
}
