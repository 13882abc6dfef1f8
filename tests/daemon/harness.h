/*
 * What the tiercached test suites share: start and stop real tiercached
 * processes on the suite's redis-server (`redis`), each on a unix socket
 * in a private temp dir, killed with the test process (PDEATHSIG) and
 * stopped by pid in the suite's fini, which also scans their logs for
 * sanitizer reports. Included by test_daemon.c and test_pinned.c, which
 * declare their TestSuite with `setup` and `teardown`.
 */
#ifndef TCD_TEST_HARNESS_H
#define TCD_TEST_HARNESS_H

#define DEADLINE_MS 15000

typedef struct tcd_proc {
    pid_t pid;
    char dir[128];
    char sock[200];
    int http_port;
} tcd_proc;

static tcr_server redis;
static tcd_proc procs[8];
static int nprocs;

static inline const char *daemon_path(void)
{
    const char *p = getenv("TIERCACHED");
    cr_assert_not_null(p, "TIERCACHED must point at the binary");
    return p;
}

static inline redisContext *connect_to(const tcd_proc *t)
{
    return tcr_connect_unix(t->sock, 5);
}

static inline int answers_ping(void *arg)
{
    redisContext *c = connect_to(arg);
    redisReply *r;
    int ok = 0;
    if (!c)
        return 0;
    r = redisCommand(c, "PING");
    ok = r != NULL; /* PONG, or NOAUTH with a password: either way, up */
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* Start tiercached on L2 = the test's redis, plus extra flags (NULL-ended). */
static inline tcd_proc *start_daemon(const char *first, ...)
{
    tcd_proc *t;
    char tmpl[] = "/tmp/tcd-test.XXXXXX";
    const char *argv[48];
    int argc = 0;
    pid_t parent = getpid();
    va_list ap;
    char http[16];
    cr_assert_lt(nprocs, (int)(sizeof(procs) / sizeof(procs[0])),
                 "a case starts more daemons than procs[] holds");
    t = &procs[nprocs++];
    cr_assert_not_null(mkdtemp(tmpl));
    snprintf(t->dir, sizeof(t->dir), "%s", tmpl);
    snprintf(t->sock, sizeof(t->sock), "%s/tcd.sock", tmpl);
    argv[argc++] = daemon_path();
    argv[argc++] = "--socket";
    argv[argc++] = t->sock;
    argv[argc++] = "--redis-url";
    argv[argc++] = redis.url;
    argv[argc++] = "--log-level";
    argv[argc++] = "warn";
    va_start(ap, first);
    for (const char *a = first; a && argc < 44; a = va_arg(ap, const char *)) {
        if (!strcmp(a, "--http")) { /* metrics on a free loopback port */
            t->http_port = tcr_free_port();
            snprintf(http, sizeof(http), "%d", t->http_port);
            argv[argc++] = "--http-port";
            argv[argc++] = http;
        } else {
            argv[argc++] = a;
        }
    }
    va_end(ap);
    argv[argc] = NULL;
    t->pid = fork();
    if (t->pid == 0) { /* no Criterion calls in the child */
        char log[200];
        int fd;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        /* Its own log, checked for sanitizer reports at teardown. */
        snprintf(log, sizeof(log), "%s/tcd.log", tmpl);
        fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    cr_assert_gt(t->pid, 0, "fork failed");
    cr_assert(tcr_wait(answers_ping, t, DEADLINE_MS),
              "tiercached did not come up on %s", t->sock);
    return t;
}

/* SIGTERM (and SIGCONT, for one a failed case left stopped), wait
 * (generously), then SIGKILL. Returns the exit status. */
static inline int stop_daemon(tcd_proc *t)
{
    int st = -1;
    if (t->pid <= 0)
        return 0;
    kill(t->pid, SIGTERM);
    kill(t->pid, SIGCONT);
    for (int i = 0; i < DEADLINE_MS / 10; i++) {
        if (waitpid(t->pid, &st, WNOHANG) == t->pid) {
            t->pid = 0;
            return st;
        }
        tcr_sleep_ms(10);
    }
    kill(t->pid, SIGKILL);
    waitpid(t->pid, &st, 0);
    t->pid = 0;
    return -1;
}

/* Wait (generously) for a daemon already told to stop; SIGKILL after. */
static inline int wait_exit(tcd_proc *t)
{
    int st = -1;
    for (int i = 0; i < DEADLINE_MS / 10; i++) {
        if (waitpid(t->pid, &st, WNOHANG) == t->pid) {
            t->pid = 0;
            return st;
        }
        tcr_sleep_ms(10);
    }
    return stop_daemon(t);
}

/* What every daemon suite's process needs before its first daemon: no
 * daemons yet, room for 1000+ client connections, and SIGPIPE ignored
 * (a test writes to daemons it has killed). */
static inline void setup_process(void)
{
    struct rlimit rl;
    nprocs = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
}

static inline void setup(void)
{
    setup_process();
    cr_assert_eq(tcr_start(&redis, NULL), 0, "redis-server did not start");
}

/* The daemon's log, if it holds a sanitizer report (else NULL). */
static inline char *sanitizer_report(const tcd_proc *t)
{
    char path[200];
    static char buf[1 << 16];
    size_t n;
    FILE *f;
    snprintf(path, sizeof(path), "%s/tcd.log", t->dir);
    f = fopen(path, "r");
    if (!f)
        return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (strstr(buf, "Sanitizer") || strstr(buf, "runtime error:"))
        return buf;
    return NULL;
}

static inline void teardown(void)
{
    char cmd[200];
    int bad = -1, status = 0;
    char *report = NULL;
    for (int i = 0; i < nprocs; i++) {
        if (procs[i].pid > 0) {
            /* SIGTERM, so that a sanitizer build also checks for leaks on
             * the way out; it must exit 0. */
            int st = stop_daemon(&procs[i]);
            if (st != 0 && bad < 0) {
                bad = i;
                status = st;
            }
        }
        if (!report)
            report = sanitizer_report(&procs[i]);
        if (report && bad < 0)
            bad = i;
    }
    if (bad >= 0 && !report)
        report = sanitizer_report(&procs[bad]);
    for (int i = 0; i < nprocs; i++) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", procs[i].dir);
        if (system(cmd) != 0) {
            /* leftover temp dir: harmless */
        }
    }
    tcr_stop(&redis);
    if (bad >= 0)
        cr_assert_fail("tiercached #%d: exit status 0x%x%s%s", bad, status,
                       report ? "; its log:\n" : "", report ? report : "");
}

/* redisvCommand's reply (the caller frees it); fails the test without one. */
static inline redisReply *vcmd(redisContext *c, const char *fmt, va_list ap)
{
    redisReply *r = redisvCommand(c, fmt, ap);
    cr_assert_not_null(r, "no reply to %s: %s", fmt, c->errstr);
    return r;
}

/* Run a command and expect the reply text `want`. `want` says which kind
 * of reply that must be: an error when it starts with "-" (the error's
 * text must start with the rest) or with an error code (an upper-case word
 * and a space, as in "ERR syntax error", "NOAUTH ...": the whole text),
 * else a status or bulk string. An error reply never passes for a success
 * whose text happens to match, nor the other way round. */
/* A command's reply (the caller frees it); fails the test without one. */
static inline redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    va_start(ap, fmt);
    r = vcmd(c, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- replies ------------------------------------------------------------- */

static inline void expect_status(redisContext *c, const char *want,
                                 const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    int prefix = want[0] == '-';
    size_t code = strspn(want + prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    int want_error = prefix || (code > 0 && want[code] == ' ');
    va_start(ap, fmt);
    r = vcmd(c, fmt, ap);
    va_end(ap);
    if (want_error)
        cr_assert(r->type == REDIS_REPLY_ERROR, "%s: type %d (%.*s), want an "
                  "error", fmt, r->type, r->str ? (int)r->len : 0,
                  r->str ? r->str : "");
    else
        cr_assert(r->type == REDIS_REPLY_STATUS ||
                      r->type == REDIS_REPLY_STRING,
                  "%s: type %d (%.*s), want a success", fmt, r->type,
                  r->str ? (int)r->len : 0, r->str ? r->str : "");
    if (prefix)
        cr_assert(!strncmp(r->str, want + 1, strlen(want + 1)),
                  "%s: got %s, want %s...", fmt, r->str, want + 1);
    else
        cr_assert_str_eq(r->str, want, "%s: got %s", fmt, r->str);
    freeReplyObject(r);
}

static inline void expect_int(redisContext *c, long long want,
                              const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    va_start(ap, fmt);
    r = vcmd(c, fmt, ap);
    va_end(ap);
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "%s: type %d (%s)", fmt,
                 r->type, r->str ? r->str : "");
    cr_assert_eq(r->integer, want, "%s: %lld", fmt, r->integer);
    freeReplyObject(r);
}

static inline void expect_nil(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    va_start(ap, fmt);
    r = vcmd(c, fmt, ap);
    va_end(ap);
    cr_assert_eq(r->type, REDIS_REPLY_NIL, "%s: type %d (%s)", fmt, r->type,
                 r->str ? r->str : "");
    freeReplyObject(r);
}

/* A field of `INFO <sections>` of daemon `t`, or -1. */
static inline long long info_field_in(tcd_proc *t, const char *sections,
                                      const char *field)
{
    redisContext *c = connect_to(t);
    redisReply *r;
    const char *p;
    long long v;
    const char *argv[4] = {"INFO"};
    char buf[64];
    int argc = 1;
    cr_assert_not_null(c);
    snprintf(buf, sizeof(buf), "%s", sections); /* words: one argument each */
    for (char *w = strtok(buf, " "); w && argc < 4; w = strtok(NULL, " "))
        argv[argc++] = w;
    r = redisCommandArgv(c, argc, argv, NULL);
    cr_assert_not_null(r, "no reply to INFO %s: %s", sections, c->errstr);
    p = r->type == REDIS_REPLY_STRING ? strstr(r->str, field) : NULL;
    v = p ? atoll(p + strlen(field) + 1) : -1;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* A field of `INFO tiercache tiercached` of daemon `t`, or -1. The
 * tiercache section probes Redis's health (a PING at most once a second):
 * with Redis hung, ask for "tiercached" alone (info_field_in). */
static inline long long info_field(tcd_proc *t, const char *field)
{
    return info_field_in(t, "tiercache tiercached", field);
}

/* Wait until a GET of `key` through `c` (a connection to `t`, which only
 * this case reads through) answers `want` from t's L1: its l1_hits grew.
 * L1 is served only while t's bus holds its lease, which a daemon just
 * started may not hold yet; until then each GET goes to Redis. */
static inline void await_l1_hit(tcd_proc *t, redisContext *c,
                                const char *key, const char *want)
{
    for (int i = 0; i < DEADLINE_MS / 10; i++) {
        long long before = info_field(t, "l1_hits");
        redisReply *r = cmd(c, "GET %s", key);
        int ok = r->type == REDIS_REPLY_STRING && !strcmp(r->str, want);
        freeReplyObject(r);
        cr_assert(ok, "GET %s did not answer %s", key, want);
        if (info_field(t, "l1_hits") > before)
            return;
        tcr_sleep_ms(10);
    }
    cr_assert_fail("GET %s never answered from L1", key);
}

static inline long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* ---- raw bytes ------------------------------------------------------------ */

/* A raw connection to a unix socket, with a receive timeout. */
static inline int raw_connect(const char *path)
{
    struct sockaddr_un a;
    struct timeval tv = {DEADLINE_MS / 1000, 0};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Read until the stream ends with `tail` (or EOF, or 10 s pass);
 * NUL-terminated. */
static inline size_t read_until(int fd, char *buf, size_t cap,
                                const char *tail)
{
    size_t got = 0, tl = strlen(tail);
    double end = tcr_now_ms() + 10000;
    while (got + 1 < cap && tcr_now_ms() < end) {
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (got >= tl && !memcmp(buf + got - tl, tail, tl))
            break;
    }
    buf[got] = '\0';
    return got;
}

/* `s` with CR and LF shown as \\r and \\n, in `buf`. */
static inline const char *escaped(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 3 < cap; s++) {
        if (*s == '\r' || *s == '\n') {
            buf[n++] = '\\';
            buf[n++] = *s == '\r' ? 'r' : 'n';
        } else {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
    return buf;
}

/* Take MONITOR's feed lines ("+<time> [<db> <addr>] ...") out of `s`:
 * they show other clients' commands (the daemon's own heartbeats, say),
 * which come when they come. No other reply looks like one. */
static inline void strip_monitor_feed(char *s)
{
    char *w = s;
    while (*s) {
        size_t digits = strspn(s + 1, "0123456789");
        char *end;
        if (s[0] == '+' && digits > 0 && s[1 + digits] == '.' &&
            (end = strstr(s, "\r\n")) &&
            memchr(s, '[', (size_t)(end - s))) {
            s = end + 2;
            continue;
        }
        end = strstr(s, "\r\n");
        end = end ? end + 2 : s + strlen(s);
        memmove(w, s, (size_t)(end - s));
        w += end - s;
        s = end;
    }
    *w = '\0';
}

/* Send `in` (raw RESP or inline commands) on one connection to daemon `t`
 * and on one to the suite's redis-server, read each until `tail`, and
 * expect the very same bytes, MONITOR's feed aside. */
static inline void expect_redis_bytes(const tcd_proc *t, const char *in,
                                      const char *tail)
{
    static char via[16384], direct[16384];
    size_t n = strlen(in);
    int fd = raw_connect(t->sock);
    cr_assert_eq(send(fd, in, n, 0), (ssize_t)n);
    read_until(fd, via, sizeof(via), tail);
    close(fd);
    fd = raw_connect(redis.sock);
    cr_assert_eq(send(fd, in, n, 0), (ssize_t)n);
    read_until(fd, direct, sizeof(direct), tail);
    close(fd);
    cr_assert(strstr(direct, tail), "redis-server: %s", direct);
    strip_monitor_feed(via);
    strip_monitor_feed(direct);
    if (strcmp(via, direct) != 0) {
        static char a[65536], b[65536];
        cr_assert_fail("for:\n%s\ntiercached: %s\nredis-server: %s", in,
                       escaped(via, a, sizeof(a)),
                       escaped(direct, b, sizeof(b)));
    }
}

#endif
