/*
 * Multi-process coherence: several tc_instance processes (each with a few
 * threads) run random operations against one redis-server; a checker
 * replays their logs.
 *
 * Every write of a key takes a new version from shared memory
 * (coherence_shm.h), so a value names exactly the write that produced it.
 * A read R that returned the value of write W is stale when some other
 * write W' of the same key began after W ended and ended (successfully)
 * before R began: W' was complete before R started, and R still saw the
 * older W. Concurrent writes are not ordered, so either of their values is
 * fine afterwards.
 *
 * Strict mode allows no read to be stale with respect to a library write.
 * Writes by a plain Redis client (tracking runs) and async mode allow stale
 * reads only within the lease: a read must not begin later than lease_ms
 * after the overwriting write returned. On a Redis Cluster whose master is
 * killed, a read whose overwriting write returned before the kill may
 * instead begin up to CLUSTER_FAILOVER_MS after the kill (below).
 *
 * Workloads: the original get/set walk, and every operation (tc_get,
 * tc_mget, tc_get_or_load with a loader reading a shared "database",
 * tc_set, tc_del, tc_mdel, tc_invalidate_prefix, and with tracking SETs by
 * a plain client), writes in bursts on one group of keys at a time.
 *
 * Faults: connections killed, an instance stopped, Redis down when the
 * instances are created (started later by the test), and instance 0's bus
 * refused by an ACL user without channel access (granted later), alone or
 * after Redis was down at create; a Sentinel master killed -9; and a Redis
 * Cluster of three masters and three replicas (tests/cluster_fixture.c),
 * the keys on all three, calm or with a master killed -9 (issue 10).
 * These runs would catch issue 8's holes:
 * 1 (L1 filled before the bus first proved itself is served after it: the
 * first-bus runs), 2 (a single-flight follower takes the value of a flight
 * older than a finished write) and 3 (the loader's SET NX stores a value
 * older than a delete that finished meanwhile: the read-through runs).
 *
 * Every run reports its counts on one "CHECK" line; the assertions are
 * about the staleness rule and about the workload having run, never about
 * timings: the test waits on conditions (instances created, buses up, keys
 * rewritten, operations done) and sleeps only to pace disturbances.
 *
 * TC_COHERENCE_MS (default 2500) sets the length of one run.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster_fixture.h"
#include "coherence_shm.h"
#include "common.h"

#define MAX_PROCS 4
#define LEASE_MS 100
#define KEY_PREFIX "c:" /* as in tc_instance.c */
#define WAIT_MS 20000   /* generous deadline for conditions */

typedef enum disturb {
    CALM,
    KILL_PUBSUB,
    KILL_ALL,
    STOP_ONE,
    REDIS_DOWN,  /* Redis down at create; the test starts it later */
    BUS_REFUSED, /* instance 0's user may not subscribe; granted later */
    REDIS_DOWN_BUS_REFUSED, /* both: instance 0's pool recovers, its bus not */
    TLS_KILL_ALL, /* a TLS-only Redis (client certificates required); normal
                     connections killed as in KILL_ALL */
    KILL_MASTER, /* Sentinel topology: kill -9 the master (issue 10) */
    CLUSTER_CALM, /* a Redis Cluster of 3 masters and 3 replicas */
    CLUSTER_KILL_MASTER /* the same; kill -9 a master, a replica promoted */
} disturb;

static const char *const disturb_name[] = {
    "calm", "kill-pubsub", "kill-normal", "sigstop", "redis-down-at-create",
    "bus-refused", "redis-down+bus-refused", "tls+kill-normal",
    "sentinel-kill-master", "cluster-calm", "cluster-kill-master"};

/* On a cluster, a write's invalidation travels from the key's master to the
 * other nodes over the cluster bus: a master killed right after a write may
 * take it along (README, "Redis Cluster"). A bus learns of the death from
 * CLUSTER INFO, polled every LEASE_MS / 2, once its node flags the master
 * PFAIL: after cluster-node-timeout without data from it, and at most one
 * more unanswered ping (sent within half a node timeout, by clusterCron's
 * 100 ms ticks) later. So a stale read of a key whose overwriting write
 * returned before the kill may begin up to this long after the kill. */
#define CLUSTER_FAILOVER_MS                                                  \
    (TCR_CLUSTER_NODE_TIMEOUT_MS * 3 / 2 + 200 + LEASE_MS / 2 + LEASE_MS)

/* What one run does. */
typedef struct spec {
    const char *name;
    const char *mode;   /* "strict" or "async" */
    disturb d;
    int nprocs, threads, keys, group, wpct, tracking, loader_us, phase_ms;
    const char *reads;  /* tc_instance op letters */
    const char *writes;
} spec;

typedef struct wr {
    uint64_t start, end;
    char kind;
    int ok, present;
} wr;

typedef struct rd {
    long long ver;
    uint64_t start, end;
    char kind;
} rd;

typedef struct keylog {
    wr *byver;           /* indexed by version, 1..nver */
    long long nver;
    rd *r;
    size_t nr, capr;
} keylog;

/* Read kinds: g m l; write kinds: s d x p e. */
#define KINDS "gmlsdxpe"
#define NKINDS 8

typedef struct run {
    keylog keys[TCC_MAX_KEYS];
    int nkeys;
    size_t reads[NKINDS], writes[NKINDS], writes_failed;
    size_t stale, stale_lib, stale_by[NKINDS];
    uint64_t worst_ns, worst_lib_ns;
    uint64_t strict_waits, lease_expiries, flushes, applied, bypassed,
        loader_calls, l1_hits, bus_reconnects;
    int stops_seen;
    int masters;              /* cluster runs: masters holding the keys */
    size_t stale_failover;    /* excused by CLUSTER_FAILOVER_MS */
    uint64_t worst_failover_ns;
    uint64_t kill_ns;         /* KILL_MASTER: when (CLOCK_MONOTONIC) */
    int cluster_kill;         /* CLUSTER_KILL_MASTER */
    size_t writes_after_kill; /* successful writes begun after it */
} run;

static tcr_server srv;
static tcr_sentinels topo; /* KILL_MASTER runs; srv is then its master */
static tcr_cluster cl;     /* cluster runs; srv is then stopped */

/* An assertion for loops over every logged operation: Criterion's
 * --full-stats reports each cr_assert it passes, which costs seconds per
 * hundred thousand. */
#define require(cond, ...)                                                   \
    do {                                                                     \
        if (!(cond))                                                         \
            cr_assert_fail(__VA_ARGS__);                                     \
    } while (0)

static void setup(void)
{
    cr_assert_eq(tcr_start(&srv, NULL), 0, "redis-server did not start");
}

static void teardown(void)
{
    tcr_stop(&srv);
    tcr_sentinels_stop(&topo);
    tcr_cluster_stop(&cl);
}

TestSuite(coherence, .init = setup, .fini = teardown);

static int kind_index(char k)
{
    const char *p = strchr(KINDS, k);
    return p && k ? (int)(p - KINDS) : -1;
}

static int run_ms(void)
{
    const char *e = getenv("TC_COHERENCE_MS");
    int ms = e ? atoi(e) : 0;
    return ms >= 500 ? ms : 2500;
}

static void parse_log(run *rn, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[256];
    cr_assert_not_null(f, "no log %s", path);
    while (fgets(line, sizeof(line), f)) {
        char type, kind;
        long long ver;
        unsigned long long t0, t1, s[8];
        int res = 0, k, ki;
        if (line[0] == 'S') {
            require(sscanf(line, "S %llu %llu %llu %llu %llu %llu %llu %llu",
                           &s[0], &s[1], &s[2], &s[3], &s[4], &s[5], &s[6],
                           &s[7]) == 8,
                    "bad stats line in %s: %s", path, line);
            rn->strict_waits += s[0];
            rn->lease_expiries += s[1];
            rn->flushes += s[2];
            rn->applied += s[3];
            rn->bypassed += s[4];
            rn->loader_calls += s[5];
            rn->l1_hits += s[6];
            rn->bus_reconnects += s[7];
            continue;
        }
        if (sscanf(line, "%c %c %d %lld %llu %llu %d", &type, &kind, &k, &ver,
                   &t0, &t1, &res) < 6 ||
            k < 0 || k >= rn->nkeys || (ki = kind_index(kind)) < 0)
            cr_assert_fail("bad log line in %s: %s", path, line);
        if (type == 'W') {
            keylog *kl = &rn->keys[k];
            require(ver >= 1 && ver <= kl->nver && !kl->byver[ver].present,
                    "key %d: write of version %lld twice or never handed out",
                    k, ver);
            kl->byver[ver] = (wr){t0, t1, kind, res == TC_OK, 1};
            if (res == TC_OK && rn->kill_ns && t0 > rn->kill_ns)
                rn->writes_after_kill++;
            if (res == TC_OK)
                rn->writes[ki]++;
            else
                rn->writes_failed++;
        } else {
            keylog *kl = &rn->keys[k];
            if (kl->nr == kl->capr) {
                kl->capr = kl->capr ? kl->capr * 2 : 1024;
                kl->r = realloc(kl->r, kl->capr * sizeof(rd));
                require(kl->r, "out of memory");
            }
            kl->r[kl->nr++] = (rd){ver, t0, t1, kind};
            rn->reads[ki]++;
        }
    }
    fclose(f);
}

typedef struct okw {
    uint64_t start, end;
    int ext;
} okw;

static int by_start(const void *a, const void *b)
{
    const okw *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Replay one key: count stale reads, print the first offenders. */
static void check_key(run *rn, int k, int *printed)
{
    keylog *kl = &rn->keys[k];
    okw *w = malloc(((size_t)kl->nver + 1) * sizeof(*w));
    uint64_t *min_lib = malloc(((size_t)kl->nver + 2) * sizeof(uint64_t));
    uint64_t *min_ext = malloc(((size_t)kl->nver + 2) * sizeof(uint64_t));
    size_t n = 0;
    cr_assert(w && min_lib && min_ext, "out of memory");
    for (long long v = 1; v <= kl->nver; v++) {
        wr *x = &kl->byver[v];
        require(x->present, "key %d: version %lld handed out, never logged",
                k, v);
        if (x->ok)
            w[n++] = (okw){x->start, x->end, x->kind == 'e'};
    }
    qsort(w, n, sizeof(*w), by_start);
    /* min_*[i]: the earliest end among successful writes i..n-1 that began
     * no earlier than w[i] (library writes and plain-client writes apart). */
    min_lib[n] = min_ext[n] = UINT64_MAX;
    for (size_t i = n; i-- > 0;) {
        min_lib[i] = min_lib[i + 1];
        min_ext[i] = min_ext[i + 1];
        if (w[i].ext && w[i].end < min_ext[i])
            min_ext[i] = w[i].end;
        if (!w[i].ext && w[i].end < min_lib[i])
            min_lib[i] = w[i].end;
    }
    for (size_t i = 0; i < kl->nr; i++) {
        rd *r = &kl->r[i];
        uint64_t w_end = 0, over, late;
        size_t lo = 0, hi = n;
        int lib;
        require(r->ver >= 0 && r->ver <= kl->nver,
                "key %d: read version %lld that no write produced", k, r->ver);
        if (r->ver > 0)
            w_end = kl->byver[r->ver].end;
        while (lo < hi) { /* first write that began after W ended */
            size_t mid = (lo + hi) / 2;
            if (w[mid].start > w_end)
                hi = mid;
            else
                lo = mid + 1;
        }
        lib = min_lib[lo] < r->start;
        if (!lib && min_ext[lo] >= r->start)
            continue;
        over = lib ? min_lib[lo] : UINT64_MAX;
        if (min_ext[lo] < r->start && min_ext[lo] < over)
            over = min_ext[lo];
        late = r->start - over;
        rn->stale++;
        rn->stale_by[kind_index(r->kind)]++;
        rn->stale_lib += lib;
        if (rn->cluster_kill && late > (uint64_t)LEASE_MS * 1000000ULL &&
            over < rn->kill_ns &&
            r->start - rn->kill_ns <=
                (uint64_t)CLUSTER_FAILOVER_MS * 1000000ULL) {
            /* Its invalidation may have died with the master: counted,
             * held to CLUSTER_FAILOVER_MS instead of the lease. */
            rn->stale_failover++;
            if (late > rn->worst_failover_ns)
                rn->worst_failover_ns = late;
            if ((*printed)++ < 10)
                fprintf(stderr,
                        "  STALE (failover) key %d: %c read began %.3f ms "
                        "after the overwrite of v%lld returned, %.3f ms "
                        "after the kill\n",
                        k, r->kind, late / 1e6, r->ver,
                        (r->start - rn->kill_ns) / 1e6);
            continue;
        }
        if (late > rn->worst_ns)
            rn->worst_ns = late;
        if (lib && r->start - min_lib[lo] > rn->worst_lib_ns)
            rn->worst_lib_ns = r->start - min_lib[lo];
        if ((*printed)++ < 10)
            fprintf(stderr,
                    "  STALE key %d: %c read began %.3f ms after a %s write "
                    "that overwrote v%lld had returned\n",
                    k, r->kind, late / 1e6,
                    lib ? "library" : "plain-client", r->ver);
    }
    free(w);
    free(min_lib);
    free(min_ext);
}

static void check(run *rn)
{
    int printed = 0;
    for (int k = 0; k < rn->nkeys; k++)
        check_key(rn, k, &printed);
}

static void free_run(run *rn)
{
    for (int k = 0; k < TCC_MAX_KEYS; k++) {
        free(rn->keys[k].byver);
        free(rn->keys[k].r);
    }
}

typedef struct waitarg {
    tcc_shared *sh;
    int n, nkeys;
    long long ops[MAX_PROCS];
    long long vers[TCC_MAX_KEYS];
    uint64_t keymask; /* all_keys_rewritten: these keys only (0: all) */
} waitarg;

static int all_created(void *p)
{
    waitarg *a = p;
    return atomic_load(&a->sh->created) >= a->n;
}

static int all_bus_up(void *p)
{
    waitarg *a = p;
    for (int i = 0; i < a->n; i++)
        if (!atomic_load(&a->sh->bus_up[i]))
            return 0;
    return 1;
}

static int bus0_down(void *p)
{
    waitarg *a = p;
    return !atomic_load(&a->sh->bus_up[0]);
}

static int others_bus_up(void *p) /* all but instance 0 */
{
    waitarg *a = p;
    for (int i = 1; i < a->n; i++)
        if (!atomic_load(&a->sh->bus_up[i]))
            return 0;
    return 1;
}

/* Every instance did at least 100 more operations than at a->ops. */
static int all_progressed(void *p)
{
    waitarg *a = p;
    for (int i = 0; i < a->n; i++)
        if (atomic_load(&a->sh->ops[i]) < a->ops[i] + 100)
            return 0;
    return 1;
}

/* Instance 0 did at least 100 more operations than at a->ops. */
static int first_progressed(void *p)
{
    waitarg *a = p;
    return atomic_load(&a->sh->ops[0]) >= a->ops[0] + 100;
}

/* Every key (of a->keymask, when set) got a new version since
 * mark_versions(). */
static int all_keys_rewritten(void *p)
{
    waitarg *a = p;
    for (int k = 0; k < a->nkeys; k++)
        if ((!a->keymask || (a->keymask >> k & 1)) &&
            atomic_load(&a->sh->next_ver[k]) <= a->vers[k])
            return 0;
    return 1;
}

static void mark_versions(waitarg *a)
{
    for (int k = 0; k < a->nkeys; k++)
        a->vers[k] = atomic_load(&a->sh->next_ver[k]);
}

static void mark_progress(waitarg *a)
{
    for (int i = 0; i < a->n; i++)
        a->ops[i] = atomic_load(&a->sh->ops[i]);
}

static void key_name(const spec *sp, int k, char *buf, size_t n)
{
    snprintf(buf, n, KEY_PREFIX "g%d:k%d", k / sp->group, k);
}

static int replica_is_master(void *p)
{
    (void)p;
    return tcr_sentinels_agree(&topo, &topo.replica);
}

/* The killed master's replica serves its slots, and every live node
 * agrees on who serves every slot. */
typedef struct promoted {
    tcr_server *replica;
    const char *key; /* a key of the killed master's */
} promoted;

static int cluster_promoted(void *p)
{
    promoted *pr = p;
    return tcr_cluster_ok(&cl) &&
           tcr_cluster_master_of(&cl, pr->key) == pr->replica;
}

static char *cmd(const char *a0, const char *a1, const char *a2,
                 const char *a3, const char *a4, const char *a5,
                 const char *a6)
{
    return tcr_cmd(&srv, NULL, a0, a1, a2, a3, a4, a5, a6, NULL);
}

static void expect_reply(char *got, const char *want, const char *what)
{
    cr_assert(got && strcmp(got, want) == 0, "%s: %s", what,
              got ? got : "(no reply)");
    free(got);
}

static void run_instances(run *rn, const spec *sp)
{
    const char *bin = getenv("TC_INSTANCE_BIN");
    pid_t pids[MAX_PROCS];
    char out[MAX_PROCS][320], shm_path[320], user_url[400];
    int ms = run_ms(), fd;
    int down = sp->d == REDIS_DOWN || sp->d == REDIS_DOWN_BUS_REFUSED;
    int refused = sp->d == BUS_REFUSED || sp->d == REDIS_DOWN_BUS_REFUSED;
    int cluster = sp->d == CLUSTER_CALM || sp->d == CLUSTER_KILL_MASTER;
    const char *dir = srv.dir;
    tcr_server *masters[TCR_CLUSTER_NODES + 1] = {NULL}, *victim = NULL;
    char victim_key[32] = "";
    tcc_shared *sh;
    waitarg wa;

    cr_assert_not_null(bin, "TC_INSTANCE_BIN not set");
    cr_assert(sp->nprocs <= MAX_PROCS && sp->keys <= TCC_MAX_KEYS,
              "run too large");
    memset(rn, 0, sizeof(*rn));
    rn->nkeys = sp->keys;

    if (sp->d == TLS_KILL_ALL) {
        tcr_stop(&srv);
        cr_assert_eq(tcr_start_tls(&srv, "tls-auth-clients yes\n"), 0,
                     "TLS redis-server did not start");
    }
    if (refused) { /* a user that may run commands, not publish or
                      subscribe; in the config, so that it survives a
                      restart */
        tcr_stop(&srv);
        cr_assert_eq(tcr_start(&srv, "user u on >pw ~* resetchannels +@all\n"),
                     0, "redis-server did not start");
    }
    if (sp->d == KILL_MASTER) {
        /* The checker's own commands go to the master; the instances find
         * it through the sentinels. */
        tcr_stop(&srv);
        cr_assert_eq(tcr_sentinels_start(&topo, "mymaster", 60000), 0,
                     "sentinel topology did not start");
        srv = topo.master;
    }
    if (cluster) { /* the logs and the shared file go in node 0's dir,
                      which outlives node 0 until teardown */
        tcr_stop(&srv);
        cr_assert_eq(tcr_cluster_start(&cl, 60000), 0,
                     "the cluster did not start");
        dir = cl.node[0].dir;
    }
    rn->cluster_kill = sp->d == CLUSTER_KILL_MASTER;
    snprintf(shm_path, sizeof(shm_path), "%s/shared", dir);
    fd = open(shm_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0 && ftruncate(fd, sizeof(tcc_shared)) == 0,
              "cannot create %s", shm_path);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    cr_assert_neq(sh, MAP_FAILED, "cannot map %s", shm_path);
    memset(&wa, 0, sizeof(wa));
    wa.sh = sh;
    wa.n = sp->nprocs;
    wa.nkeys = sp->keys;

    for (int k = 0; k < sp->keys; k++) { /* version 0 of every key */
        char key[32];
        key_name(sp, k, key, sizeof(key));
        if (cluster) { /* on the key's master; note which masters */
            tcr_server *m = tcr_cluster_master_of(&cl, key);
            int i = 0;
            cr_assert_not_null(m, "no master serves %s", key);
            while (masters[i] && masters[i] != m)
                i++;
            if (!masters[i])
                masters[i] = m, rn->masters++;
            expect_reply(tcr_cmd(m, NULL, "SET", key, "i:0", NULL), "OK",
                         "SET");
        } else
            expect_reply(cmd("SET", key, "i:0", NULL, NULL, NULL, NULL),
                         "OK", "SET");
    }
    if (cluster)
        cr_assert_eq(rn->masters, 3, "the keys live on %d masters, not 3",
                     rn->masters);
    snprintf(user_url, sizeof(user_url), "redis://u:pw@127.0.0.1:%d", srv.port);
    if (down)
        tcr_kill(&srv);

    for (int i = 0; i < sp->nprocs; i++) {
        char a[16][64];
        snprintf(out[i], sizeof(out[i]), "%s/inst%d.log", dir, i);
        snprintf(a[0], 64, "mode=%s", sp->mode);
        snprintf(a[1], 64, "id=%d", i);
        snprintf(a[2], 64, "threads=%d", sp->threads);
        snprintf(a[3], 64, "keys=%d", sp->keys);
        snprintf(a[4], 64, "group=%d", sp->group);
        snprintf(a[5], 64, "wpct=%d", sp->wpct);
        snprintf(a[6], 64, "seed=%d", 1000 + i);
        snprintf(a[7], 64, "reads=%s", sp->reads);
        snprintf(a[8], 64, "writes=%s", sp->writes);
        snprintf(a[9], 64, "tracking=%d", sp->tracking);
        snprintf(a[10], 64, "loader_us=%d", sp->loader_us);
        snprintf(a[11], 64, "port=%d", srv.port);
        snprintf(a[12], 64, "ms=%d", 20 * ms); /* backstop; the test stops us */
        snprintf(a[13], 64, "phase_ms=%d", sp->phase_ms);
        pids[i] = fork();
        if (pids[i] == 0) { /* no assertions here: the runner would see a
                               report from a process it did not start */
            /* Die with the test, also when an assertion ends it early. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            char url[620], shm[340], o[4 * 320 + 8], tls[3][340];
            snprintf(url, sizeof(url), "url=%s",
                     sp->d == KILL_MASTER  ? topo.url
                     : cluster             ? cl.url
                     : refused && i == 0 ? user_url
                                         : srv.url);
            snprintf(shm, sizeof(shm), "shm_path=%s", shm_path);
            snprintf(o, sizeof(o), "out=%s", out[i]);
            snprintf(tls[0], sizeof(tls[0]), "ca=%s",
                     srv.tls ? srv.ca_file : "");
            snprintf(tls[1], sizeof(tls[1]), "cert=%s",
                     srv.tls ? srv.client_cert : "");
            snprintf(tls[2], sizeof(tls[2]), "key=%s",
                     srv.tls ? srv.client_key : "");
            execl(bin, bin, url, shm, o, a[0], a[1], a[2], a[3], a[4], a[5],
                  a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], tls[0],
                  tls[1], tls[2], (char *)NULL);
            _exit(127);
        }
        cr_assert_gt(pids[i], 0, "fork failed");
    }
    cr_assert(tcr_wait(all_created, &wa, WAIT_MS), "instances not created");

    /* Disturbances, bounded in count and time; sleeps only pace them. */
    if (down) {
        tcr_sleep_ms(ms / 5); /* instances run with Redis down */
        cr_assert_eq(tcr_restart(&srv), 0, "redis-server did not restart");
    }
    if (refused) {
        cr_assert(tcr_wait(others_bus_up, &wa, WAIT_MS),
                  "the unrestricted instances' bus never came up");
        tcr_sleep_ms(ms / 5); /* instance 0 fills L1 without a bus */
        /* Then it leaves its L1 alone while the others write every key: a
         * stale copy shows at its first read once the bus is up, instead
         * of being overwritten by its own next L2 read. */
        atomic_store(&sh->quiet[0], 1);
        mark_versions(&wa);
        cr_assert(tcr_wait(all_keys_rewritten, &wa, WAIT_MS),
                  "the others did not write every key");
        cr_assert_eq(atomic_load(&sh->bus_up[0]), 0,
                     "the bus came up although its channels were refused");
        expect_reply(cmd("ACL", "SETUSER", "u", "allchannels", NULL, NULL,
                         NULL),
                     "OK", "ACL SETUSER allchannels");
        cr_assert(tcr_wait(all_bus_up, &wa, WAIT_MS),
                  "instance 0's bus never came up after the grant");
        atomic_store(&sh->quiet[0], 0);
    }
    switch (sp->d) {
    case KILL_MASTER: {
        struct timespec ts;
        cr_assert(tcr_wait(all_bus_up, &wa, WAIT_MS),
                  "an instance's bus never came up");
        tcr_sleep_ms(ms / 4); /* instances run against the first master */
        /* Redis's own loss is kept out of the picture: with writes paused
         * and the replica caught up, a write the master acknowledged is
         * on the replica, and a write the pause holds fails with the kill.
         * (Without this a write acknowledged just before a kill may be
         * lost by asynchronous replication: README, "Sentinel".) */
        expect_reply(cmd("CLIENT", "PAUSE", "60000", "WRITE", NULL, NULL,
                         NULL),
                     "OK", "CLIENT PAUSE");
        cr_assert(tcr_replica_caught_up(&topo, WAIT_MS),
                  "the replica did not catch up");
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rn->kill_ns = (uint64_t)ts.tv_sec * 1000000000ULL +
                      (uint64_t)ts.tv_nsec;
        tcr_kill(&topo.master);
        srv.pid = 0; /* the same process, reaped: never signal its pid */
        cr_assert(tcr_wait(replica_is_master, NULL, 60000),
                  "the sentinels never promoted the replica");
        mark_progress(&wa);
        tcr_sleep_ms(ms * 3 / 5);
        cr_assert(tcr_wait(all_progressed, &wa, WAIT_MS),
                  "an instance made no progress after the failover");
        cr_assert(tcr_wait(all_bus_up, &wa, 60000),
                  "an instance's bus never came up on the new master");
        break;
    }
    case CLUSTER_KILL_MASTER: {
        /* As KILL_MASTER, on the master instance 0 subscribes on (every
         * master holds keys). From the kill on, instance 0 stays quiet
         * while the others write every key of the live masters (its
         * subscription misses those invalidations), then they stop too,
         * and instance 0 alone reads once its bus is back on the new
         * topology: a copy its L1 kept across the lost subscription shows
         * at its first read, instead of being refreshed by its own reads
         * of L2 while its bus was down or dropped by a later write's
         * invalidation. Then everyone runs on the new topology. */
        struct timespec ts;
        tcr_server *rep;
        promoted pr;
        cr_assert(tcr_wait(all_bus_up, &wa, WAIT_MS),
                  "an instance's bus never came up");
        victim = tcr_cluster_node(&cl, atomic_load(&sh->sub_port[0]));
        cr_assert_not_null(victim, "instance 0 named no node it subscribes "
                                   "on");
        for (int k = 0; k < sp->keys && !victim_key[0]; k++) {
            key_name(sp, k, victim_key, sizeof(victim_key));
            if (tcr_cluster_master_of(&cl, victim_key) != victim)
                victim_key[0] = '\0';
        }
        cr_assert(victim_key[0], "no key lives on instance 0's node");
        rep = tcr_cluster_replica_of(&cl, victim);
        cr_assert_not_null(rep, "instance 0 does not subscribe on a master "
                                "with a replica");
        pr = (promoted){rep, victim_key};
        tcr_sleep_ms(ms / 4); /* instances run against the first masters */
        expect_reply(tcr_cmd(victim, NULL, "CLIENT", "PAUSE", "60000",
                             "WRITE", NULL),
                     "OK", "CLIENT PAUSE");
        cr_assert(tcr_cluster_replica_caught_up(victim, rep, WAIT_MS),
                  "the replica did not catch up");
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rn->kill_ns = (uint64_t)ts.tv_sec * 1000000000ULL +
                      (uint64_t)ts.tv_nsec;
        atomic_store(&sh->quiet[0], 1);
        tcr_kill(victim);
        cr_assert(tcr_wait(bus0_down, &wa, WAIT_MS),
                  "instance 0's bus stayed up with its node dead");
        for (int k = 0; k < sp->keys; k++) {
            char key[32];
            key_name(sp, k, key, sizeof(key));
            if (tcr_cluster_master_of(&cl, key) != victim)
                wa.keymask |= 1ULL << k;
        }
        mark_versions(&wa);
        cr_assert(tcr_wait(all_keys_rewritten, &wa, WAIT_MS),
                  "the others did not write the live masters' keys");
        wa.keymask = 0;
        for (int i = 1; i < sp->nprocs; i++)
            atomic_store(&sh->quiet[i], 1);
        cr_assert(tcr_wait(cluster_promoted, &pr, 60000),
                  "the cluster never promoted the replica");
        cr_assert(tcr_wait(all_bus_up, &wa, 60000),
                  "an instance's bus never came up after the failover");
        mark_progress(&wa);
        atomic_store(&sh->quiet[0], 0);
        cr_assert(tcr_wait(first_progressed, &wa, WAIT_MS),
                  "instance 0 made no progress after the failover");
        for (int i = 1; i < sp->nprocs; i++)
            atomic_store(&sh->quiet[i], 0);
        mark_progress(&wa);
        tcr_sleep_ms(ms * 3 / 5);
        cr_assert(tcr_wait(all_progressed, &wa, WAIT_MS),
                  "an instance made no progress after the failover");
        cr_assert(tcr_wait(all_bus_up, &wa, 60000),
                  "an instance's bus never came up after the failover");
        break;
    }
    case REDIS_DOWN:
    case BUS_REFUSED:
    case REDIS_DOWN_BUS_REFUSED:
        cr_assert(tcr_wait(all_bus_up, &wa, WAIT_MS),
                  "an instance's bus never came up");
        mark_progress(&wa);
        tcr_sleep_ms(ms * 3 / 5);
        cr_assert(tcr_wait(all_progressed, &wa, WAIT_MS),
                  "an instance made no progress once its bus was up");
        break;
    default:
        for (int t = 0; t < ms / 250; t++) {
            char *raw = NULL;
            tcr_sleep_ms(250);
            if (sp->d == KILL_PUBSUB)
                raw = cmd("CLIENT", "KILL", "TYPE", "pubsub", NULL, NULL, NULL);
            else if ((sp->d == KILL_ALL || sp->d == TLS_KILL_ALL) &&
                     t % 2 == 0)
                raw = cmd("CLIENT", "KILL", "TYPE", "normal", NULL, NULL, NULL);
            else if (sp->d == STOP_ONE && t == 1) {
                int st = 0;
                pid_t p = pids[sp->nprocs - 1];
                kill(p, SIGSTOP);
                while (waitpid(p, &st, WUNTRACED) < 0 && errno == EINTR) {
                }
                rn->stops_seen += WIFSTOPPED(st);
                tcr_sleep_ms(400);
                kill(p, SIGCONT);
            }
            free(raw);
        }
    }
    atomic_store(&sh->stop, 1);

    for (int i = 0; i < sp->nprocs; i++) {
        int st = 0;
        while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR) {
        }
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "instance %d failed (status %d)", i, st);
    }
    for (int k = 0; k < sp->keys; k++) { /* final: every instance exited */
        keylog *kl = &rn->keys[k];
        kl->nver = atomic_load(&sh->next_ver[k]);
        kl->byver = calloc((size_t)kl->nver + 1, sizeof(wr));
        cr_assert_not_null(kl->byver, "out of memory");
    }
    for (int i = 0; i < sp->nprocs; i++)
        parse_log(rn, out[i]);
    munmap(sh, sizeof(*sh));
}

static void report(const spec *sp, const run *rn)
{
    char reads[128] = "", writes[128] = "", stale[128] = "";
    size_t nr = 0, nw = 0;
    for (int i = 0; i < NKINDS; i++) {
        size_t len;
        if (i < 3 && strchr(sp->reads, KINDS[i])) {
            len = strlen(reads);
            snprintf(reads + len, sizeof(reads) - len, " %c=%zu", KINDS[i],
                     rn->reads[i]);
            len = strlen(stale);
            snprintf(stale + len, sizeof(stale) - len, " %c=%zu", KINDS[i],
                     rn->stale_by[i]);
        }
        if (i >= 3 && strchr(sp->writes, KINDS[i])) {
            len = strlen(writes);
            snprintf(writes + len, sizeof(writes) - len, " %c=%zu", KINDS[i],
                     rn->writes[i]);
        }
        if (i < 3)
            nr += rn->reads[i];
        else
            nw += rn->writes[i];
    }
    fprintf(stderr,
            "CHECK %s mode=%s fault=%s: reads %zu (%s ), writes %zu (%s ; "
            "%zu failed), stale %zu (%s ; after a library write %zu), worst "
            "%.3f ms (library %.3f ms, lease %d ms); strict waits %llu, "
            "lease expiries %llu, L1 flushes %llu, invalidations applied "
            "%llu, L1 bypassed %llu, L1 hits %llu, loader calls %llu\n",
            sp->name, sp->mode, disturb_name[sp->d], nr, reads, nw, writes,
            rn->writes_failed, rn->stale, stale, rn->stale_lib,
            rn->worst_ns / 1e6, rn->worst_lib_ns / 1e6, LEASE_MS,
            (unsigned long long)rn->strict_waits,
            (unsigned long long)rn->lease_expiries,
            (unsigned long long)rn->flushes, (unsigned long long)rn->applied,
            (unsigned long long)rn->bypassed, (unsigned long long)rn->l1_hits,
            (unsigned long long)rn->loader_calls);
    if (sp->d == KILL_MASTER || sp->d == CLUSTER_KILL_MASTER)
        fprintf(stderr, "CHECK %s mode=%s fault=%s: %zu writes succeeded "
                "after the kill\n", sp->name, sp->mode, disturb_name[sp->d],
                rn->writes_after_kill);
    if (sp->d == CLUSTER_CALM || sp->d == CLUSTER_KILL_MASTER)
        fprintf(stderr, "CHECK %s mode=%s fault=%s: keys on %d masters\n",
                sp->name, sp->mode, disturb_name[sp->d], rn->masters);
    if (sp->d == CLUSTER_KILL_MASTER)
        fprintf(stderr, "CHECK %s mode=%s fault=%s: %zu stale reads held "
                "to the failover bound instead (begun within %d ms of the "
                "kill), worst %.3f ms\n", sp->name, sp->mode,
                disturb_name[sp->d], rn->stale_failover,
                CLUSTER_FAILOVER_MS, rn->worst_failover_ns / 1e6);
}

static void expect(const spec *sp)
{
    run rn;
    uint64_t bound = (uint64_t)LEASE_MS * 1000000ULL;
    run_instances(&rn, sp);
    check(&rn);
    report(sp, &rn);
    /* The workload ran: every kind of read found values, every kind of
     * write succeeded. */
    for (int i = 0; i < NKINDS; i++) {
        if (i < 3 && strchr(sp->reads, KINDS[i]))
            cr_assert_gt(rn.reads[i], 0, "no %c read found a value",
                         KINDS[i]);
        if (i >= 3 && strchr(sp->writes, KINDS[i]))
            cr_assert_gt(rn.writes[i], 0, "no %c write succeeded", KINDS[i]);
    }
    if (sp->d == STOP_ONE)
        cr_assert_eq(rn.stops_seen, 1, "the instance was never stopped");
    if (sp->d == KILL_MASTER || sp->d == CLUSTER_KILL_MASTER)
        cr_assert_gt(rn.writes_after_kill, 0,
                     "no write succeeded after the master was killed");
    if (strcmp(sp->mode, "strict") == 0) {
        cr_assert_gt(rn.strict_waits, 0, "no strict write was made");
        cr_assert_eq(rn.stale_lib, 0,
                     "%zu reads in strict mode saw a value older than a "
                     "library write that returned before they began "
                     "(worst %.3f ms after)",
                     rn.stale_lib, rn.worst_lib_ns / 1e6);
    }
    cr_assert_leq(rn.worst_ns, bound,
                  "a stale read began %.3f ms after the overwriting write "
                  "returned (lease %d ms)",
                  rn.worst_ns / 1e6, LEASE_MS);
    free_run(&rn);
}

/* The original get/set walk: 3 single-threaded instances, 8 keys. */
static void get_set(const char *name, const char *mode, disturb d)
{
    spec sp = {name, mode, d, 3, 1, 8, 4, 15, 0, 0, 0, "g", "s"};
    expect(&sp);
}

/* Every operation, 2 threads per instance. `reads` and `writes` weight the
 * kinds; writes go to one group of 4 keys at a time, 150 ms each, so a
 * key's last value of a burst stays for 450 ms;
 * the loader waits 2 ms between reading its database and returning, as a
 * real query would. */
static void all_ops(const char *name, const char *mode, disturb d,
                    const char *reads, const char *writes, int tracking)
{
    spec sp = {name, mode, d, 3, 2, 16, 4, 25, tracking, 2000, 150, reads,
               writes};
    expect(&sp);
}

Test(coherence, strict_no_stale_reads)
{
    get_set("get-set", "strict", CALM);
}

Test(coherence, strict_no_stale_reads_while_pubsub_killed)
{
    get_set("get-set", "strict", KILL_PUBSUB);
}

Test(coherence, strict_no_stale_reads_while_connections_killed)
{
    get_set("get-set", "strict", KILL_ALL);
}

/* Over TLS (issue 10): the pool and the bus both on the TLS connection
 * layer, connections killed under load. */
Test(coherence, strict_no_stale_reads_over_tls_while_connections_killed)
{
    get_set("get-set", "strict", TLS_KILL_ALL);
}

Test(coherence, strict_no_stale_reads_with_a_stopped_instance)
{
    get_set("get-set", "strict", STOP_ONE);
}

/* Sentinel (issue 10): kill -9 the master; the instances follow the
 * failover by themselves, and no read is stale across it. */
Test(coherence, strict_no_stale_reads_across_sentinel_failover)
{
    get_set("get-set", "strict", KILL_MASTER);
}

Test(coherence, async_within_bound_across_sentinel_failover)
{
    get_set("get-set", "async", KILL_MASTER);
}

/* Redis Cluster (issue 10): the keys on all three masters, calm and with
 * a master killed -9 and its replica promoted; the instances follow by
 * themselves. Async: within the lease, but for reads whose invalidation
 * may have died with the master (above CLUSTER_FAILOVER_MS). Strict: no
 * read older than a library write that returned before it began, the
 * member count taken after the write on the members' master (publish.c). */
Test(coherence, strict_no_stale_reads_on_cluster)
{
    get_set("get-set", "strict", CLUSTER_CALM);
}

Test(coherence, strict_read_through_and_deletes_on_cluster)
{
    all_ops("read-through", "strict", CLUSTER_CALM, "gmll", "ssdx", 0);
}

Test(coherence, strict_no_stale_reads_across_cluster_failover)
{
    get_set("get-set", "strict", CLUSTER_KILL_MASTER);
}

/* The same walk as the failover run, for its counts: it would not catch a
 * missed invalidation (each instance rewrites every key within
 * milliseconds); the read-through run below does. */
Test(coherence, async_within_bound_on_cluster)
{
    get_set("get-set", "async", CLUSTER_CALM);
}

/* Writes in bursts, so that a missed invalidation is not hidden by the
 * reader's own next write; no prefix invalidation (16384 stamp writes per
 * call on a cluster). */
Test(coherence, async_read_through_and_deletes_on_cluster)
{
    all_ops("read-through", "async", CLUSTER_CALM, "gmll", "ssdx", 0);
}

Test(coherence, async_within_bound_across_cluster_failover)
{
    get_set("get-set", "async", CLUSTER_KILL_MASTER);
}

Test(coherence, async_stale_reads_within_bound)
{
    get_set("get-set", "async", CALM);
}

Test(coherence, async_within_bound_while_pubsub_killed)
{
    get_set("get-set", "async", KILL_PUBSUB);
}

/* Read-through and every write kind: single-flight followers and the
 * loader's SET NX must never hand out a value older than a finished write
 * (holes 2 and 3 of issue 8). */
Test(coherence, strict_read_through_and_deletes)
{
    all_ops("read-through", "strict", CALM, "gmll", "ssdxp", 0);
}

Test(coherence, async_read_through_and_deletes_within_bound)
{
    all_ops("read-through", "async", CALM, "gmll", "ssdxp", 0);
}

/* Server-assisted tracking: a plain client writes L2 behind the library's
 * back; library writes stay strict, plain writes are bounded by the lease. */
Test(coherence, strict_tracking_with_plain_client_writes)
{
    all_ops("tracking", "strict", CALM, "ggm", "ssdee", 1);
}

Test(coherence, async_tracking_with_plain_client_writes_within_bound)
{
    all_ops("tracking", "async", CALM, "ggm", "ssdee", 1);
}

/* Nothing an instance cached before its bus first proved itself may be
 * served after (hole 1): Redis down at create, and the bus refused. No
 * loader here, so a failure points at the first subscription alone. */
Test(coherence, strict_redis_down_at_create)
{
    all_ops("first-bus", "strict", REDIS_DOWN, "ggm", "ssdxp", 0);
}

Test(coherence, async_redis_down_at_create_within_bound)
{
    all_ops("first-bus", "async", REDIS_DOWN, "ggm", "ssdxp", 0);
}

Test(coherence, strict_bus_refused_at_create)
{
    all_ops("first-bus", "strict", BUS_REFUSED, "ggm", "ssdxp", 0);
}

Test(coherence, async_bus_refused_at_create_within_bound)
{
    all_ops("first-bus", "async", BUS_REFUSED, "ggm", "ssdxp", 0);
}

Test(coherence, strict_redis_down_at_create_then_bus_refused)
{
    all_ops("first-bus", "strict", REDIS_DOWN_BUS_REFUSED, "ggm", "ssdxp", 0);
}

Test(coherence, async_redis_down_at_create_then_bus_refused_within_bound)
{
    all_ops("first-bus", "async", REDIS_DOWN_BUS_REFUSED, "ggm", "ssdxp", 0);
}
