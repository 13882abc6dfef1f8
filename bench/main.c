/*
 * tc-bench: why tiercache is worth linking, in about two minutes, every
 * figure next to its physical baseline from the same run (issue 4).
 *
 *   tc-bench [--quick] [--unix] [--threads N] [--json FILE] [--plot FILE]
 *
 * Redis comes from REDIS_URL (default redis://127.0.0.1:6379); with --unix
 * from the socket in TC_BENCH_UNIX. `./dev bench` starts a throwaway server
 * and sets both. The bench writes keys under "tcb:" and deletes them after.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const char *const required_keys[] = {
    "l1_get_p50_ns",        "l1_get_p99_ns",
    "floor_get_p50_ns",     "l2_get_p50_us",
    "l2_get_p99_us",        "raw_get_p50_us",
    "raw_get_p99_us",       "l1_mops_1t",
    "l1_mops_2t",           "pubsub_raw_p50_us",
    "pubsub_raw_p99_us",    "inval_p50_us",
    "inval_p99_us",         "write_async_p50_us",
    "write_strict_p50_us",  "l1_overhead_bytes",
    "hit_ratio_policy_zipf10_1pct", "hit_ratio_lru_zipf10_1pct",
    "hit_ratio_policy_scan_1pct",   "hit_ratio_lru_scan_1pct",
    "l1_hit_ns_1k_1t",      "l1_hit_ns_100k_1t",
    "l1_hit_ns_1m_1t",      "lfht_hit_ns_1k_1t",
    "lfht_hit_ns_100k_1t",  "lfht_hit_ns_1m_1t",
    "oa_hit_ns_1k_1t",      "oa_hit_ns_100k_1t",
    "oa_hit_ns_1m_1t",      "l1_mops_1k_1t",
    "l1_mops_1k_2t",        "l1_mops_100k_1t",
    "l1_mops_100k_2t",      "lfht_mops_1k_1t",
    "lfht_mops_1k_2t",      "lfht_mops_100k_1t",
    "lfht_mops_100k_2t",    "l1_reader_max_us_during_invalidate_1m",
    "l1_reader_max_us_during_fill",
    "tag_read_overhead_ns", "tag_invalidate_100k_ms",
    "zstd_ratio_64k",       "zstd_decompress_us_64k",
    "stampede_loader_calls_local", "stampede_loader_calls_coordinated",
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tc-bench [options]\n"
            "  --quick          smoke run of a few seconds (rough figures)\n"
            "  --unix           use the unix socket in TC_BENCH_UNIX\n"
            "  --threads N      add an N-thread point to the scaling table\n"
            "  --json FILE      write every figure as one flat JSON object\n"
            "  --plot FILE.png  chart latency percentiles with gnuplot\n"
            "  --keys N         key space of latency sections (100000)\n"
            "  --trials N       coherence trials (2000; --quick 200)\n"
            "  --seed N         seed of every key order and trace (42)\n"
            "  --only LIST      sections, comma-separated: memory,anchors,\n"
            "                   latency,scaling,coherence,hitratio,compress,\n"
            "                   tags,fleet,relay,fleet_cluster,relay_cluster,\n"
            "                   stampede\n"
            "environment: REDIS_URL (redis://127.0.0.1:6379), TC_BENCH_UNIX\n");
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '-' || *end || end == s)
        return -1;
    *out = (size_t)v;
    return 0;
}

/* Fill the connection part of cfg from REDIS_URL / TC_BENCH_UNIX. */
static int configure_redis(bench_cfg *cfg)
{
    const char *url = getenv("REDIS_URL");
    if (!url || !*url)
        url = "redis://127.0.0.1:6379";
    tc_options o;
    memset(&o, 0, sizeof o);
    char storage[1024];
    if (strlen(url) >= sizeof storage ||
        tc_options_parse_url(&o, url, storage, sizeof storage) != TC_OK) {
        fprintf(stderr, "tc-bench: bad REDIS_URL '%s': %s\n", url,
                tc_errmsg());
        return -1;
    }
    snprintf(cfg->raw_host, sizeof cfg->raw_host, "%s",
             o.host ? o.host : "127.0.0.1");
    cfg->raw_port = o.port ? o.port : 6379;
    snprintf(cfg->username, sizeof cfg->username, "%s",
             o.username ? o.username : "");
    snprintf(cfg->password, sizeof cfg->password, "%s",
             o.password ? o.password : "");
    cfg->db = o.db > 0 ? o.db : 0;
    if (o.unix_path) {
        cfg->use_unix = 1;
        snprintf(cfg->raw_unix, sizeof cfg->raw_unix, "%s", o.unix_path);
    }
    if (cfg->use_unix && !o.unix_path) {
        const char *sock = getenv("TC_BENCH_UNIX");
        if (!sock || !*sock) {
            fprintf(stderr, "tc-bench: --unix needs TC_BENCH_UNIX (the "
                            "server's unix socket)\n");
            return -1;
        }
        snprintf(cfg->raw_unix, sizeof cfg->raw_unix, "%s", sock);
    }
    if (cfg->use_unix) {
        /* The socket path and the credentials of REDIS_URL, if any. */
        snprintf(cfg->url, sizeof cfg->url, "unix://%s", cfg->raw_unix);
        snprintf(cfg->transport, sizeof cfg->transport, "unix socket %s",
                 cfg->raw_unix);
    } else {
        snprintf(cfg->url, sizeof cfg->url, "%s", url);
        snprintf(cfg->transport, sizeof cfg->transport, "TCP %s:%d",
                 cfg->raw_host, cfg->raw_port);
    }
    return 0;
}

static int want(const bench_cfg *cfg, const char *section)
{
    if (!cfg->only)
        return 1;
    size_t n = strlen(section);
    for (const char *p = cfg->only; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, section, n) == 0)
            return 1;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.keys = 100000;
    cfg.seed = 42;
    size_t trials = 0, threads = 0;
    enum { O_QUICK = 1, O_UNIX, O_THREADS, O_JSON, O_PLOT, O_KEYS, O_TRIALS,
           O_SEED, O_ONLY, O_HELP };
    static const struct option opts[] = {
        {"quick", no_argument, NULL, O_QUICK},
        {"unix", no_argument, NULL, O_UNIX},
        {"threads", required_argument, NULL, O_THREADS},
        {"json", required_argument, NULL, O_JSON},
        {"plot", required_argument, NULL, O_PLOT},
        {"keys", required_argument, NULL, O_KEYS},
        {"trials", required_argument, NULL, O_TRIALS},
        {"seed", required_argument, NULL, O_SEED},
        {"only", required_argument, NULL, O_ONLY},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int ch;
    size_t seed;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case O_QUICK: cfg.quick = 1; break;
        case O_UNIX: cfg.use_unix = 1; break;
        case O_THREADS:
            if (parse_size(optarg, &threads) || threads < 1 || threads > 256) {
                fprintf(stderr, "tc-bench: --threads wants 1..256\n");
                return 2;
            }
            cfg.threads = (unsigned)threads;
            break;
        case O_JSON: cfg.json_path = optarg; break;
        case O_PLOT: cfg.plot_path = optarg; break;
        case O_KEYS:
            if (parse_size(optarg, &cfg.keys) || cfg.keys < 2000 ||
                cfg.keys > 10000000) {
                fprintf(stderr, "tc-bench: --keys wants 2000..10000000\n");
                return 2;
            }
            break;
        case O_TRIALS:
            if (parse_size(optarg, &trials) || trials < 10) {
                fprintf(stderr, "tc-bench: --trials wants at least 10\n");
                return 2;
            }
            break;
        case O_SEED:
            if (parse_size(optarg, &seed)) {
                fprintf(stderr, "tc-bench: --seed wants a number\n");
                return 2;
            }
            cfg.seed = seed;
            break;
        case O_ONLY: cfg.only = optarg; break;
        case 'h':
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (cfg.quick && cfg.keys == 100000)
        cfg.keys = 20000;
    cfg.trials = trials ? trials : cfg.quick ? 200 : 2000;
    if (configure_redis(&cfg) != 0)
        return 2;
    redisContext *probe = bench_redis_connect(&cfg);
    if (!probe) {
        fprintf(stderr, "tc-bench: start a redis-server, or run ./dev bench "
                        "which starts one\n");
        return 2;
    }
    redisFree(probe);

    uint64_t t0 = bench_now_ns();
    report_header(&cfg);
    /* Memory first: it needs a heap that has not grown and shrunk yet. */
    if (want(&cfg, "memory"))
        bench_memory(&cfg);
    if (want(&cfg, "anchors"))
        bench_anchors(&cfg);
    if (want(&cfg, "latency"))
        bench_latency(&cfg);
    if (want(&cfg, "scaling"))
        bench_scaling_section(&cfg);
    if (want(&cfg, "coherence"))
        bench_coherence(&cfg);
    if (want(&cfg, "hitratio"))
        bench_hitratio(&cfg);
    if (want(&cfg, "compress"))
        bench_compress(&cfg);
    if (want(&cfg, "tags"))
        bench_tags(&cfg);
    if (want(&cfg, "stampede"))
        bench_stampede(&cfg);
    if (want(&cfg, "fleet"))
        bench_fleet(&cfg);
    if (want(&cfg, "relay"))
        bench_relay(&cfg);
    if (want(&cfg, "fleet_cluster"))
        bench_fleet_cluster(&cfg);
    /* Not in the --quick smoke run unless named: relays on a cluster take
     * longer than it allows. */
    if (want(&cfg, "relay_cluster") && (!cfg.quick || cfg.only))
        bench_relay_cluster(&cfg);
    report_targets(&cfg);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    res_num("bench_seconds", round(secs * 10) / 10);
    printf("\nran in %.1f s\n", secs);

    int rc = 0;
    if (bench_failures()) {
        fprintf(stderr, "tc-bench: %d section(s) failed\n", bench_failures());
        rc = 1;
    }
    if (!cfg.only) {
        for (size_t i = 0; i < sizeof required_keys / sizeof *required_keys;
             i++) {
            /* --quick measures no 1M-key rows. */
            if (cfg.quick && (strstr(required_keys[i], "_1m_1t") ||
                              strstr(required_keys[i], "_100k_ms")))
                continue;
            if (!isfinite(res_get(required_keys[i]))) {
                fprintf(stderr, "tc-bench: no figure for %s\n",
                        required_keys[i]);
                rc = 1;
            }
        }
    }
    if (cfg.json_path && res_write_json(cfg.json_path) != 0)
        rc = 1;
    if (cfg.plot_path && report_plot(&cfg, cfg.plot_path) != 0)
        rc = 1;
    res_free();
    return rc;
}
