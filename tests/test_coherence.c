/*
 * Multi-process coherence: several tc_instance processes hammer one
 * redis-server with random reads and writes; a checker replays their logs.
 *
 * A read R that returned the value of write W is stale when some other write
 * W' of the same key began after W ended and ended before R began: W' was
 * complete before R started, and R still saw the older W. Strict mode allows
 * no stale read; async mode allows them only within the lease (a read must
 * not begin later than lease_ms after the overwriting write returned).
 */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define MAX_PROCS 8
#define NKEYS 8
#define LEASE_MS 100

typedef struct op {
    long long ver;
    uint64_t start, end;
    int ok;
} op;

typedef struct keylog {
    op *w, *r;
    size_t nw, nr, capw, capr;
} keylog;

typedef struct run {
    keylog keys[NKEYS];
    uint64_t strict_waits, lease_expiries, flushes, applied;
    size_t reads, writes;
} run;

static tcr_server srv;
static char tmpdir[256];

static void setup(void)
{
    cr_assert_eq(tcr_start(&srv, NULL), 0, "redis-server did not start");
    snprintf(tmpdir, sizeof(tmpdir), "%s", srv.dir);
}

static void teardown(void)
{
    tcr_stop(&srv);
}

TestSuite(coherence, .init = setup, .fini = teardown);

static void push(op **a, size_t *n, size_t *cap, op o)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *a = realloc(*a, *cap * sizeof(op));
    }
    (*a)[(*n)++] = o;
}

static void parse_log(run *rn, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[256];
    cr_assert_not_null(f, "no log %s", path);
    while (fgets(line, sizeof(line), f)) {
        char kind, key[32];
        long long ver;
        unsigned long long t0, t1, a, b, c2, d;
        int res = 0, k;
        if (line[0] == 'S' &&
            sscanf(line, "S %llu %llu %llu %llu", &a, &b, &c2, &d) == 4) {
            rn->strict_waits += a;
            rn->lease_expiries += b;
            rn->flushes += c2;
            rn->applied += d;
            continue;
        }
        if (sscanf(line, "%c %31s %lld %llu %llu %d", &kind, key, &ver, &t0, &t1,
                   &res) < 5 ||
            sscanf(key, "key%d", &k) != 1 || k < 0 || k >= NKEYS)
            cr_assert_fail("bad log line in %s: %s", path, line);
        if (kind == 'W') {
            keylog *kl = &rn->keys[k];
            push(&kl->w, &kl->nw, &kl->capw, (op){ver, t0, t1, res == TC_OK});
            rn->writes++;
        } else {
            keylog *kl = &rn->keys[k];
            push(&kl->r, &kl->nr, &kl->capr, (op){ver, t0, t1, 1});
            rn->reads++;
        }
    }
    fclose(f);
}

/* Replay: count stale reads; print the offenders; return the worst
 * staleness in ns (how long after the overwriting write returned the stale
 * read began). */
static size_t check(run *rn, uint64_t *worst_ns, uint64_t print_over_ns)
{
    size_t stale = 0, printed = 0;
    *worst_ns = 0;
    for (int k = 0; k < NKEYS; k++) {
        keylog *kl = &rn->keys[k];
        for (size_t i = 0; i < kl->nr; i++) {
            op *r = &kl->r[i], *w = NULL;
            uint64_t w_end = 0, first_over = UINT64_MAX;
            long long over_ver = -1;
            if (r->ver != 0) {
                for (size_t j = 0; j < kl->nw; j++)
                    if (kl->w[j].ver == r->ver)
                        w = &kl->w[j];
                cr_assert_not_null(w, "key%d: read version %lld that no "
                                      "logged write produced", k, r->ver);
                w_end = w->end;
            }
            for (size_t j = 0; j < kl->nw; j++) {
                op *o = &kl->w[j];
                if (o->ok && o->start > w_end && o->end < r->start &&
                    o->end < first_over) {
                    first_over = o->end;
                    over_ver = o->ver;
                }
            }
            if (first_over == UINT64_MAX)
                continue;
            stale++;
            if (r->start - first_over > *worst_ns)
                *worst_ns = r->start - first_over;
            if (r->start - first_over >= print_over_ns && printed++ < 20)
                fprintf(stderr,
                        "STALE key%d: read [%llu,%llu] saw v%lld, but v%lld "
                        "was written by %llu (%.3f ms before the read)\n",
                        k, (unsigned long long)r->start,
                        (unsigned long long)r->end, r->ver, over_ver,
                        (unsigned long long)first_over,
                        (r->start - first_over) / 1e6);
        }
    }
    return stale;
}

static void free_run(run *rn)
{
    for (int k = 0; k < NKEYS; k++) {
        free(rn->keys[k].w);
        free(rn->keys[k].r);
    }
}

typedef enum disturb { CALM, KILL_PUBSUB, KILL_ALL, STOP_ONE } disturb;

static void run_instances(run *rn, const char *mode, int nprocs, int ms,
                          disturb d)
{
    const char *bin = getenv("TC_INSTANCE_BIN");
    pid_t pids[MAX_PROCS];
    char out[MAX_PROCS][320];
    char key[16];
    cr_assert_not_null(bin, "TC_INSTANCE_BIN not set");
    memset(rn, 0, sizeof(*rn));
    for (int k = 0; k < NKEYS; k++) {
        char *raw;
        snprintf(key, sizeof(key), "key%d", k);
        raw = tcr_cmd(&srv, NULL, "SET", key, "init:0", NULL);
        free(raw);
    }
    for (int i = 0; i < nprocs; i++) {
        char id[8], dur[16], seed[16], keys[8];
        snprintf(out[i], sizeof(out[i]), "%s/inst%d.log", tmpdir, i);
        snprintf(id, sizeof(id), "%d", i);
        snprintf(dur, sizeof(dur), "%d", ms);
        snprintf(seed, sizeof(seed), "%d", 1000 + i);
        snprintf(keys, sizeof(keys), "%d", NKEYS);
        pids[i] = fork();
        if (pids[i] == 0) { /* no assertions here: the runner would see a
                               report from a process it did not start */
            execl(bin, bin, srv.url, mode, id, keys, dur, "15", seed, out[i],
                  (char *)NULL);
            _exit(127);
        }
        cr_assert_gt(pids[i], 0, "fork failed");
    }
    /* Disturbances, bounded in count and time; the instances end on their
     * own deadline. */
    for (int t = 0; t < ms / 250; t++) {
        char *raw = NULL;
        tcr_sleep_ms(250);
        if (d == KILL_PUBSUB)
            raw = tcr_cmd(&srv, NULL, "CLIENT", "KILL", "TYPE", "pubsub", NULL);
        else if (d == KILL_ALL && t % 2 == 0)
            raw = tcr_cmd(&srv, NULL, "CLIENT", "KILL", "TYPE", "normal", NULL);
        else if (d == STOP_ONE && t == 1) {
            kill(pids[nprocs - 1], SIGSTOP);
            tcr_sleep_ms(400);
            kill(pids[nprocs - 1], SIGCONT);
        }
        free(raw);
    }
    for (int i = 0; i < nprocs; i++) {
        int st = 0;
        while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR) {
        }
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "instance %d failed (status %d)", i, st);
        parse_log(rn, out[i]);
    }
}

static void report(const char *name, run *rn, size_t stale, uint64_t worst)
{
    fprintf(stderr,
            "%s: %zu reads, %zu writes, %zu stale (worst %.3f ms after the "
            "write returned); strict waits %llu, lease expiries %llu, "
            "L1 flushes %llu, invalidations applied %llu\n",
            name, rn->reads, rn->writes, stale, worst / 1e6,
            (unsigned long long)rn->strict_waits,
            (unsigned long long)rn->lease_expiries,
            (unsigned long long)rn->flushes, (unsigned long long)rn->applied);
}

static void expect_strict(disturb d, const char *name)
{
    run rn;
    uint64_t worst;
    size_t stale;
    run_instances(&rn, "strict", 3, 2500, d);
    stale = check(&rn, &worst, 0);
    report(name, &rn, stale, worst);
    cr_assert_gt(rn.reads, 1000, "too few reads to mean anything");
    cr_assert_gt(rn.writes, 50);
    cr_assert_eq(stale, 0, "%zu stale reads in strict mode", stale);
    if (d == STOP_ONE)
        cr_assert_gt(rn.lease_expiries, 0,
                     "writers never waited out the stopped instance's lease");
    free_run(&rn);
}

static void expect_async(disturb d, const char *name)
{
    run rn;
    uint64_t worst;
    size_t stale;
    run_instances(&rn, "async", 3, 2500, d);
    stale = check(&rn, &worst, (uint64_t)LEASE_MS * 1000000ULL);
    report(name, &rn, stale, worst);
    cr_assert_gt(rn.reads, 1000);
    cr_assert_gt(rn.writes, 50);
    cr_assert_leq(worst, (uint64_t)LEASE_MS * 1000000ULL,
                  "a stale read began %.3f ms after the write returned",
                  worst / 1e6);
    free_run(&rn);
}

Test(coherence, strict_no_stale_reads) { expect_strict(CALM, "strict"); }

Test(coherence, strict_no_stale_reads_while_pubsub_killed)
{
    expect_strict(KILL_PUBSUB, "strict+kill-pubsub");
}

Test(coherence, strict_no_stale_reads_while_connections_killed)
{
    expect_strict(KILL_ALL, "strict+kill-normal");
}

Test(coherence, strict_no_stale_reads_with_a_stopped_instance)
{
    expect_strict(STOP_ONE, "strict+sigstop");
}

Test(coherence, async_stale_reads_within_bound)
{
    expect_async(CALM, "async");
}

Test(coherence, async_within_bound_while_pubsub_killed)
{
    expect_async(KILL_PUBSUB, "async+kill-pubsub");
}
