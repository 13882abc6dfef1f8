/*
 * The header of the table, the target check (issue 4's targets, each shown
 * as a ratio of two figures measured in the same run) and the gnuplot chart.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ')
                    p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(buf, len, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

static void redis_version(const bench_cfg *cfg, char *buf, size_t len)
{
    snprintf(buf, len, "?");
    redisContext *c = bench_redis_connect(cfg);
    if (!c)
        return;
    redisReply *r = redisCommand(c, "INFO server");
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "redis_version:");
        if (p) {
            p += strlen("redis_version:");
            size_t n = strcspn(p, "\r\n");
            snprintf(buf, len, "%.*s", (int)n, p);
        }
    }
    if (r)
        freeReplyObject(r);
    redisFree(c);
}

void report_header(const bench_cfg *cfg)
{
    char cpu[256], rv[64], host[600];
    struct utsname u;
    cpu_model(cpu, sizeof cpu);
    redis_version(cfg, rv, sizeof rv);
    if (uname(&u) != 0)
        memset(&u, 0, sizeof u);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    snprintf(host, sizeof host, "%s, %ld CPUs, Linux %s", cpu, cpus,
             u.release);
    printf("tc-bench %d.%d.%d%s  %s\n", TC_VERSION_MAJOR, TC_VERSION_MINOR,
           TC_VERSION_PATCH, cfg->quick ? " (--quick: smoke run, figures "
                                          "are rough)" : "",
           date);
    printf("machine: %s\n", host);
    printf("redis-server %s over %s\n", rv, cfg->transport);
    fflush(stdout);
    res_str("machine", host);
    res_num("cpus", (double)cpus);
    res_str("redis_version", rv);
    res_str("transport", cfg->use_unix ? "unix" : "tcp");
    res_str("date", date);
    res_num("quick", cfg->quick);
    res_num("seed", (double)cfg->seed);
    res_num("keys", (double)cfg->keys);
}

/* ---- targets -------------------------------------------------------------- */

typedef struct target {
    const char *what;
    const char *json; /* ratio key written to JSON */
    double value;
    int at_most;      /* 1: value <= goal, 0: value >= goal */
    double goal;
    const char *unit; /* "x" for ratios, " B" for bytes */
} target;

static double ratio(const char *a, const char *b)
{
    return res_get(a) / res_get(b);
}

static double min_ratio(const char *const *pol, const char *const *lru,
                        size_t n)
{
    double m = NAN;
    for (size_t i = 0; i < n; i++) {
        double r = ratio(pol[i], lru[i]);
        if (isnan(m) || r < m)
            m = r;
    }
    return m;
}

static void context_line(const char *what, double v)
{
    if (!isfinite(v))
        printf("   %-46s %10s\n", what, "n/a");
    else
        printf(v >= 10 ? "   %-46s %9.0fx\n" : "   %-46s %9.2fx\n", what, v);
}

int report_targets(const bench_cfg *cfg)
{
    (void)cfg;
    static const char *const pol_all[] = {
        "hit_ratio_policy_zipf08_1pct", "hit_ratio_policy_zipf08_10pct",
        "hit_ratio_policy_zipf10_1pct", "hit_ratio_policy_zipf10_10pct",
        "hit_ratio_policy_scan_1pct",   "hit_ratio_policy_scan_10pct"};
    static const char *const lru_all[] = {
        "hit_ratio_lru_zipf08_1pct", "hit_ratio_lru_zipf08_10pct",
        "hit_ratio_lru_zipf10_1pct", "hit_ratio_lru_zipf10_10pct",
        "hit_ratio_lru_scan_1pct",   "hit_ratio_lru_scan_10pct"};
    target t[] = {
        {"L1 hit p50 / floor p50, 64 B", "ratio_l1_floor_p50",
         ratio("l1_get_p50_ns", "floor_get_p50_ns"), 1, 1.5, "x"},
        {"L1 hit p50 / floor p50, 4 KiB", "ratio_l1_floor_p50_4k",
         ratio("l1_get_4k_p50_ns", "floor_get_4k_p50_ns"), 1, 1.5, "x"},
        {"L2 hit p50 / L1 hit p50 (L1 speed-up), 64 B", "ratio_l2_l1_p50",
         res_get("l2_get_p50_us") * 1000.0 / res_get("l1_get_p50_ns"), 0,
         100, "x"},
        {"L2 hit p50 / raw GET p50, 64 B", "ratio_l2_raw_p50",
         ratio("l2_get_p50_us", "raw_get_p50_us"), 1, 1.10, "x"},
        {"L2 hit p50 / raw GET p50, 4 KiB", "ratio_l2_raw_p50_4k",
         ratio("l2_get_4k_p50_us", "raw_get_4k_p50_us"), 1, 1.10, "x"},
        {"L1 throughput 2 threads / 1 thread", "ratio_l1_scaling_2t",
         res_get("l1_scaling_2t"), 0, 1.7, "x"},
        {"invalidation p50 / raw pub/sub p50", "ratio_inval_p50",
         ratio("inval_p50_us", "pubsub_raw_p50_us"), 1, 1.3, "x"},
        {"invalidation p99 / raw pub/sub p99", "ratio_inval_p99",
         ratio("inval_p99_us", "pubsub_raw_p99_us"), 1, 2.0, "x"},
        {"strict write p50 / async write p50", "ratio_strict_async_p50",
         ratio("write_strict_p50_us", "write_async_p50_us"), 1, 3.0, "x"},
        {"L1 bytes per entry beyond key+value", NULL,
         res_get("l1_overhead_bytes"), 1, 100, " B"},
        {"hit ratio L1 policy / LRU, worst of 6", "ratio_hit_policy_lru_min",
         min_ratio(pol_all, lru_all, 6), 0, 1.0, "x"},
        {"hit ratio L1 policy / LRU, scan traces", "ratio_hit_policy_lru_scan",
         min_ratio(pol_all + 4, lru_all + 4, 2), 0, 1.05, "x"},
    };
    int met = 0, missed = 0, unknown = 0;
    printf("\ntargets (issue 4), each a ratio of two figures from this run\n");
    printf("   %-46s %10s %10s   %s\n", "", "measured", "target", "");
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char val[32], goal[32];
        const char *status;
        if (isnan(t[i].value) || isinf(t[i].value)) {
            snprintf(val, sizeof val, "n/a");
            status = "not measured";
            unknown++;
        } else {
            int ok = t[i].at_most ? t[i].value <= t[i].goal
                                  : t[i].value >= t[i].goal;
            if (t[i].unit[0] == 'x')
                snprintf(val, sizeof val, t[i].value >= 10 ? "%.0fx"
                                                           : "%.2fx",
                         t[i].value);
            else
                snprintf(val, sizeof val, "%.0f%s", t[i].value, t[i].unit);
            status = ok ? "met" : "MISSED";
            ok ? met++ : missed++;
        }
        if (t[i].unit[0] == 'x')
            snprintf(goal, sizeof goal, "%s %.*fx", t[i].at_most ? "<=" : ">=",
                     t[i].goal >= 10 ? 0 : 2, t[i].goal);
        else
            snprintf(goal, sizeof goal, "%s %.0f%s",
                     t[i].at_most ? "<=" : ">=", t[i].goal, t[i].unit);
        printf("   %-46s %10s %10s   %s\n", t[i].what, val, goal, status);
        if (t[i].json)
            res_num(t[i].json, t[i].value);
    }
    printf("   %d met, %d missed%s\n", met, missed,
           unknown ? ", some not measured" : "");
    /* What the machine allows: the same ratios for the physical baselines
     * measured in this run. */
    printf("   context from the same run (what the physical baselines "
           "reach):\n");
    double c1 = res_get("l2_get_p50_us") * 1000.0 / res_get("floor_get_p50_ns");
    double c2 =
        res_get("l2_get_p50_us") * 1000.0 / res_get("l1_get_zipf_p50_ns");
    context_line("L2 hit p50 / floor p50, 64 B", c1);
    context_line("L2 hit p50 / L1 hit p50, Zipf 1.0 order", c2);
    context_line("floor throughput 2 threads / 1 thread",
                 res_get("floor_scaling_2t"));
    context_line("L1 throughput 2 / 1 thread, Zipf 1.0 order",
                 res_get("l1_zipf_scaling_2t"));
    context_line("floor throughput 2 / 1 thread, Zipf 1.0 order",
                 res_get("floor_zipf_scaling_2t"));
    context_line("CPU spin 2 threads / 1 thread", res_get("cpu_scaling_2t"));
    res_num("ratio_l2_floor_p50", c1);
    res_num("ratio_l2_l1_zipf_p50", c2);
    printf("   \"scan traces\": clearly above LRU is taken as >= 1.05x on "
           "both capacities\n");
    res_num("targets_met", met);
    res_num("targets_missed", missed);
    fflush(stdout);
    return missed;
}

/* ---- plot ---------------------------------------------------------------- */

int report_plot(const bench_cfg *cfg, const char *path)
{
    if (strpbrk(path, "'\"\\\n")) {
        fprintf(stderr, "tc-bench: --plot: unusual characters in path\n");
        return -1;
    }
    const char *term = system("gnuplot -e 'set terminal pngcairo' "
                              "</dev/null >/dev/null 2>&1") == 0
                           ? "pngcairo size 1000,620 noenhanced font ',10'"
                           : "png size 1000,620 noenhanced";
    FILE *g = popen("gnuplot", "w");
    if (!g) {
        fprintf(stderr, "tc-bench: cannot run gnuplot\n");
        return -1;
    }
    static const char *const pct[] = {"p50", "p90", "p99", "p999"};
    static const struct {
        const char *prefix, *unit, *title;
    } rows[] = {
        {"floor_get", "ns", "floor uthash+mutex 64 B (batch mean)"},
        {"l1_get", "ns", "tiercache L1 hit 64 B (batch mean)"},
        {"l2_get", "us", "tiercache L2 hit 64 B"},
        {"raw_get", "us", "raw hiredis GET 64 B"},
        {"floor_get_4k", "ns", "floor 4 KiB (batch mean)"},
        {"l1_get_4k", "ns", "tiercache L1 hit 4 KiB (batch mean)"},
        {"l2_get_4k", "us", "tiercache L2 hit 4 KiB"},
        {"raw_get_4k", "us", "raw hiredis GET 4 KiB"},
    };
    fprintf(g, "set terminal %s\n", term);
    fprintf(g, "set output '%s'\n", path);
    fprintf(g, "set title 'tiercache get latency, %zu keys, %s"
               "%s'\n",
            cfg->keys, cfg->use_unix ? "unix socket" : "TCP loopback",
            cfg->quick ? " (quick run)" : "");
    fprintf(g, "set logscale y\nset ylabel 'latency, us (log scale)'\n"
               "set xtics ('p50' 0, 'p90' 1, 'p99' 2, 'p99.9' 3)\n"
               "set xrange [-0.3:3.3]\nset grid ytics mytics\n"
               "set key outside right top\n");
    fprintf(g, "$d << EOD\n");
    for (int p = 0; p < 4; p++) {
        fprintf(g, "%d", p);
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            char key[96];
            snprintf(key, sizeof key, "%s_%s_%s", rows[r].prefix, pct[p],
                     rows[r].unit);
            double v = res_get(key);
            if (rows[r].unit[0] == 'n')
                v /= 1000.0;
            if (isnan(v))
                fprintf(g, " NaN");
            else
                fprintf(g, " %.6g", v);
        }
        fprintf(g, "\n");
    }
    fprintf(g, "EOD\nplot ");
    static const char *const colors[] = {"#1b9e77", "#d95f02", "#7570b3",
                                         "#e7298a"};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
        fprintf(g, "%s$d using 1:%zu with linespoints lw 2 dt %d "
                   "lc rgb '%s' pt %zu title '%s'",
                r ? ", " : "", r + 2, r < 4 ? 1 : 2, colors[r % 4], 5 + r % 4,
                rows[r].title);
    fprintf(g, "\n");
    int rc = pclose(g);
    if (rc != 0) {
        fprintf(stderr, "tc-bench: gnuplot failed (status %d)\n", rc);
        return -1;
    }
    printf("plot written to %s\n", path);
    return 0;
}
