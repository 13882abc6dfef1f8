/* tiercache stats: a snapshot of the counters, or with --interval one line
 * per interval whose rates come from the counter deltas over the measured
 * interval (not its nominal length). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* a/(a+b) in percent into buf, or "-" when nothing happened. */
static const char *ratio(uint64_t a, uint64_t b, char *buf, size_t n)
{
    if (!a && !b)
        return "-";
    snprintf(buf, n, "%.1f", 100.0 * (double)a / (double)(a + b));
    return buf;
}

static const char *lag(const uint64_t *h, double pct, char *buf, size_t n)
{
    long long us = cli_lag_pct(h, pct);
    if (us < 0)
        return "-";
    snprintf(buf, n, "<%lld", us);
    return buf;
}

static void print_snapshot(const cli_target *t, const cli_snap *s)
{
    char b1[32], b2[32], b3[32];
    printf("target: %s\n", t->where);
    printf("healthy: %d\nl2_up: %d\nbus_up: %d\n", s->healthy, s->l2_up,
           s->bus_up);
    if (s->coherence[0])
        printf("coherence: %s\n", s->coherence);
    if (s->has_l1) {
        printf("l1_hits: %llu\nl1_misses: %llu\nl1_entries: %llu\n",
               (unsigned long long)s->l1_hits,
               (unsigned long long)s->l1_misses,
               (unsigned long long)s->l1_entries);
        printf("l1_hit_pct: %s\n", ratio(s->l1_hits, s->l1_misses, b1,
                                          sizeof(b1)));
    }
    printf("l2_hits: %llu\nl2_misses: %llu\nl2_hit_pct: %s\n",
           (unsigned long long)s->l2_hits, (unsigned long long)s->l2_misses,
           ratio(s->l2_hits, s->l2_misses, b1, sizeof(b1)));
    printf("commands: %llu\ninvalidations: %llu\n",
           (unsigned long long)s->commands, (unsigned long long)s->inval);
    printf("lag_p50_us: %s\nlag_p99_us: %s\n", lag(s->lag, 50, b2, sizeof(b2)),
           lag(s->lag, 99, b3, sizeof(b3)));
}

static void print_header(const cli_snap *s)
{
    printf("%-8s %10s %10s %7s %7s %9s %9s %9s %4s %4s\n", "time", "cmd/s",
           "get/s", "l1_hit%", "l2_hit%", "inval/s", "lag_p50us", "lag_p99us",
           "l2", "bus");
    (void)s;
}

/* One line from the deltas between snapshots a and b. `own` commands per
 * snapshot are the tool's own (INFO) and are not counted. */
static void print_line(const cli_snap *a, const cli_snap *b, uint64_t own)
{
    double dt = b->t - a->t;
    uint64_t cmds = b->commands - a->commands, hist[24];
    uint64_t l1h = b->l1_hits - a->l1_hits, l1m = b->l1_misses - a->l1_misses;
    uint64_t l2h = b->l2_hits - a->l2_hits, l2m = b->l2_misses - a->l2_misses;
    uint64_t gets = b->has_l1 ? l1h + l1m : l2h + l2m;
    char b1[32], b2[32], b3[32], b4[32], tbuf[16];
    time_t now = time(NULL);
    struct tm tm;
    cmds = cmds > own ? cmds - own : 0;
    for (int i = 0; i < 24; i++)
        hist[i] = b->lag[i] - a->lag[i];
    localtime_r(&now, &tm);
    strftime(tbuf, sizeof(tbuf), "%H:%M:%S", &tm);
    printf("%-8s %10.1f %10.1f %7s %7s %9.1f %9s %9s %4s %4s\n", tbuf,
           (double)cmds / dt, (double)gets / dt,
           b->has_l1 ? ratio(l1h, l1m, b1, sizeof(b1)) : "-",
           ratio(l2h, l2m, b2, sizeof(b2)),
           (double)(b->inval - a->inval) / dt, lag(hist, 50, b3, sizeof(b3)),
           lag(hist, 99, b4, sizeof(b4)), b->l2_up ? "up" : "down",
           b->bus_up ? "up" : "down");
    fflush(stdout);
}

static void sleep_until(double t)
{
    struct timespec ts;
    double left;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    left = t - ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    if (left <= 0)
        return;
    ts.tv_sec = (time_t)left;
    ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

/* Did a counter go back (a restarted daemon)? Then there is no delta. */
static int went_back(const cli_snap *a, const cli_snap *b)
{
    return b->commands < a->commands || b->l1_hits < a->l1_hits ||
           b->l1_misses < a->l1_misses || b->l2_hits < a->l2_hits ||
           b->l2_misses < a->l2_misses || b->inval < a->inval;
}

/* A line for an interval whose snapshot failed; a monitor keeps going. */
static void print_down(const cli_target *t)
{
    char tbuf[16];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(tbuf, sizeof(tbuf), "%H:%M:%S", &tm);
    printf("%-8s unreachable: %s\n", tbuf, t->where);
    fflush(stdout);
}

int cli_stats(const cli_args *a)
{
    cli_target t;
    cli_snap prev, cur;
    int rc = cli_target_open(a, &t), have_prev = 1;
    double next;
    if (rc != CLI_OK)
        return CLI_DOWN;
    if ((rc = cli_snap_take(&t, &prev)) != CLI_OK)
        goto out;
    if (!a->interval_s) {
        print_snapshot(&t, &prev);
        goto out;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    print_header(&prev);
    fflush(stdout);
    next = prev.t;
    for (long n = 0; !stop && (!a->count || n < a->count); n++) {
        next += a->interval_s;
        sleep_until(next);
        if (stop)
            break;
        /* A daemon connection that failed is opened again (a library
         * instance reconnects by itself). */
        if (!t.rc && !t.c && cli_target_open(a, &t) != CLI_OK) {
            snprintf(t.where, sizeof(t.where), "tiercached at %s",
                     a->daemon);
            rc = CLI_DOWN;
            print_down(&t);
            continue;
        }
        if ((rc = cli_snap_take(&t, &cur)) != CLI_OK) {
            print_down(&t);
            have_prev = 0;
            if (t.rc && t.rc->err)
                cli_target_close(&t);
            continue;
        }
        /* Each snapshot costs two commands of its own: two INFOs to a
         * daemon; INFO and the health PING to Redis. After an outage the
         * first snapshot only starts the next interval. */
        if (have_prev && !went_back(&prev, &cur))
            print_line(&prev, &cur, 2);
        prev = cur;
        have_prev = 1;
    }
out:
    cli_target_close(&t);
    return rc;
}
