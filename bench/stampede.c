/*
 * Section 6: a stampede on one key (issue 11). PROCS fork()ed processes,
 * each a tiercache instance of its own on the bench's Redis, each with
 * THREADS threads, all call tc_get_or_load_ex() on one cold key at once;
 * the loader takes LOAD_MS (a database query). Counted: loader calls in
 * all, once with per-process single-flight only ("local"), once with the
 * load lock across instances (coordinate = TC_YES). ROUNDS rounds of each,
 * interleaved, a fresh key per round; the figure is the median.
 *
 * The processes are forked while the parent runs no thread of tiercache's
 * (every cache of earlier sections is destroyed); a shared anonymous
 * mapping carries the start signal and the counts.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define PROCS 3
#define THREADS 8
#define ROUNDS 5
#define LOAD_MS 50

typedef struct shared {
    atomic_int ready, go, calls, bad;
    atomic_uint_fast64_t slowest_ns; /* the longest call of the round */
} shared;

static shared *S;

static tc_result slow_loader(void *ud, const void *key, size_t klen,
                             void **val, size_t *vlen, tc_load_ttl *ttl)
{
    (void)ud, (void)key, (void)klen, (void)ttl;
    atomic_fetch_add(&S->calls, 1);
    bench_sleep_us(LOAD_MS * 1000);
    *val = strdup("loaded");
    *vlen = 6;
    return *val ? TC_OK : TC_NO_MEMORY;
}

typedef struct targ {
    tc_cache *c;
    const char *key;
    const tc_load_options *lo;
    pthread_barrier_t *bar;
} targ;

static void *caller(void *p)
{
    targ *t = p;
    tc_value *v = NULL;
    uint64_t t0, took, was;
    pthread_barrier_wait(t->bar);
    t0 = bench_now_ns();
    if (tc_get_or_load_ex(t->c, t->key, strlen(t->key), slow_loader, NULL,
                          t->lo, &v) != TC_OK)
        atomic_fetch_add(&S->bad, 1);
    took = bench_now_ns() - t0;
    was = atomic_load(&S->slowest_ns);
    while (took > was &&
           !atomic_compare_exchange_weak(&S->slowest_ns, &was, took)) {
    }
    tc_value_release(v);
    return NULL;
}

static void child(const bench_cfg *cfg, const char *key, int coordinate)
{
    tc_options o;
    tc_load_options lo;
    pthread_t th[THREADS];
    pthread_barrier_t bar;
    targ t;
    tc_cache *c;
    bench_cache_options(cfg, &o);
    if (!(c = bench_cache_create(&o)))
        _exit(2);
    memset(&lo, 0, sizeof lo);
    lo.coordinate = coordinate ? TC_YES : TC_NO;
    lo.lock_ms = 2000;
    pthread_barrier_init(&bar, NULL, THREADS);
    t = (targ){c, key, &lo, &bar};
    atomic_fetch_add(&S->ready, 1);
    while (!atomic_load(&S->go))
        bench_sleep_us(100);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, caller, &t);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    tc_cache_destroy(c);
    _exit(0);
}

/* One round: loader calls in all (and the slowest call's ms in *slow_ms),
 * or -1 when a process failed. */
static int one_round(const bench_cfg *cfg, const char *key, int coordinate,
                     double *slow_ms)
{
    pid_t pids[PROCS];
    int ok = 1;
    uint64_t deadline;
    atomic_store(&S->ready, 0);
    atomic_store(&S->go, 0);
    atomic_store(&S->calls, 0);
    atomic_store(&S->bad, 0);
    atomic_store(&S->slowest_ns, 0);
    fflush(NULL);
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            child(cfg, key, coordinate);
        if (pids[i] < 0)
            ok = 0;
    }
    /* Start them together once every instance is up. */
    deadline = bench_now_ns() + 10000000000ull;
    while (ok && atomic_load(&S->ready) < PROCS && bench_now_ns() < deadline)
        bench_sleep_us(1000);
    atomic_store(&S->go, 1);
    for (int i = 0; i < PROCS; i++) {
        int st;
        if (pids[i] > 0 &&
            (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) ||
             WEXITSTATUS(st) != 0))
            ok = 0;
    }
    if (!ok || atomic_load(&S->ready) < PROCS || atomic_load(&S->bad))
        return -1;
    *slow_ms = (double)atomic_load(&S->slowest_ns) / 1e6;
    return atomic_load(&S->calls);
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

void bench_stampede(const bench_cfg *cfg)
{
    int calls[2][ROUNDS];
    double slow[2][ROUNDS];
    char keys[2][ROUNDS][48];
    redisContext *rc;
    static const char *const names[2] = {"local", "coordinated"};
    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S == MAP_FAILED) {
        perror("tc-bench: mmap");
        bench_fail();
        return;
    }
    printf("\n6. Stampede: %d processes x %d threads miss one key at once "
           "(loader %d ms), %d rounds\n",
           PROCS, THREADS, LOAD_MS, ROUNDS);
    for (int r = 0; r < ROUNDS; r++) {
        /* Interleaved, alternating which mode goes first. */
        for (int k = 0; k < 2; k++) {
            int m = (r + k) % 2;
            snprintf(keys[m][r], sizeof keys[m][r], "stampede:%s:%d:%d",
                     names[m], (int)getpid(), r);
            calls[m][r] = one_round(cfg, keys[m][r], m, &slow[m][r]);
            if (calls[m][r] < 0) {
                fprintf(stderr, "tc-bench: stampede round failed\n");
                bench_fail();
                munmap(S, sizeof *S);
                return;
            }
        }
    }
    for (int m = 0; m < 2; m++) {
        int sorted[ROUNDS];
        char key[64];
        memcpy(sorted, calls[m], sizeof sorted);
        qsort(sorted, ROUNDS, sizeof *sorted, cmp_int);
        double ms = bench_median(slow[m], ROUNDS);
        printf("  %-11s  loader calls median %d (min %d, max %d); slowest "
               "caller median %.1f ms\n",
               names[m], sorted[ROUNDS / 2], sorted[0], sorted[ROUNDS - 1],
               ms);
        snprintf(key, sizeof key, "stampede_loader_calls_%s", names[m]);
        res_num(key, sorted[ROUNDS / 2]);
        snprintf(key, sizeof key, "stampede_slowest_ms_%s", names[m]);
        res_num(key, round(ms * 10) / 10);
    }
    if ((rc = bench_redis_connect(cfg))) {
        for (int m = 0; m < 2; m++)
            for (int r = 0; r < ROUNDS; r++) {
                redisReply *rep = redisCommand(rc, "DEL %s%s", BENCH_PREFIX,
                                               keys[m][r]);
                freeReplyObject(rep);
            }
        redisFree(rc);
    }
    munmap(S, sizeof *S);
}
