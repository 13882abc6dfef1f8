/*
 * tiercached: the tiercache two-tier cache behind the Redis protocol, for
 * processes that cannot link the C library (Node, Python, ...).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <ev.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "rundir.h"
#include "server.h"
#include "tiercache.h"

/* Every client is a descriptor: lift the soft limit as far as allowed. */
static void raise_nofile(unsigned want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            tcd_warn("cannot raise the open file limit: clients may be "
                     "refused");
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want)
        tcd_warn("open file limit %llu is below --max-clients + 64",
                 (unsigned long long)rl.rlim_cur);
}

static int run_check(tc_cache *cache, const tcd_config *cfg)
{
    tc_health h;
    tc_result rc = tc_cache_health(cache, &h);
    if (rc != TC_OK || !h.l2_up) {
        printf("tiercached --check: configuration valid; L2 NOT reachable: "
               "%s (%s)\n", tc_strerror(rc), tc_errmsg());
        return 1;
    }
    printf("tiercached --check: configuration valid; L2 reachable "
           "(PING %llu us); coherence %s%s\n",
           (unsigned long long)h.l2_latency_us,
           cfg->opts.coherence == TC_COHERENCE_STRICT ? "strict"
           : cfg->opts.coherence == TC_COHERENCE_NONE ? "none"
                                                      : "async",
           cfg->opts.tracking == TC_YES ? ", tracking on" : "");
    return 0;
}

static int serve(tcd_config *cfg)
{
    tc_cache *cache = NULL;
    tc_result rc;
    struct ev_loop *loop;
    tcd_server srv;
    tcd_http *http = NULL;
    char socket_path[108];
    int status = 0;

    if (cfg->help) {
        tcd_config_usage(stdout);
        return 0;
    }
    if (cfg->version) {
        printf("tiercached %d.%d.%d\n", TC_VERSION_MAJOR, TC_VERSION_MINOR,
               TC_VERSION_PATCH);
        return 0;
    }
    tcd_log_set_level(cfg->log_level);
    cfg->opts.log = tcd_log_lib;
    signal(SIGPIPE, SIG_IGN);

    rc = tc_cache_create(&cfg->opts, &cache);
    if (rc != TC_OK) {
        tcd_error("cannot start the cache: %s (%s)", tc_strerror(rc),
                  tc_errmsg());
        if (cfg->check)
            printf("tiercached --check: invalid: %s (%s)\n", tc_strerror(rc),
                   tc_errmsg());
        return cfg->check ? 1 : 2;
    }
    {
        /* Learn Redis's commands now (one COMMAND), not on the event loop
         * at the first MULTI. Redis down: learnt at first use instead. */
        const char *ping[1] = {"PING"};
        size_t pingl[1] = {4};
        (void)tc_command_check(cache, 1, ping, pingl);
    }
    if (cfg->check) {
        status = run_check(cache, cfg);
        tc_cache_destroy(cache);
        return status;
    }

    if (!cfg->socket_path) {
        if (tcd_rundir_socket(socket_path, sizeof(socket_path)) != 0) {
            tc_cache_destroy(cache);
            return 1;
        }
        cfg->socket_path = socket_path;
    }
    raise_nofile(cfg->max_clients + 64);
    loop = ev_default_loop(EVFLAG_AUTO);
    if (!loop) {
        tcd_error("cannot initialise libev");
        tc_cache_destroy(cache);
        return 1;
    }
    if (tcd_server_init(&srv, loop, cfg, cache) != 0) {
        tc_cache_destroy(cache);
        return 1;
    }
    if (cfg->http_port) {
        http = tcd_http_start(&srv, cfg->http_port);
        if (!http) {
            tcd_server_shutdown(&srv);
            tc_cache_destroy(cache);
            return 1;
        }
    }
    tcd_info("tiercached %d.%d.%d ready (instance %s, %u workers)",
             TC_VERSION_MAJOR, TC_VERSION_MINOR, TC_VERSION_PATCH,
             tc_cache_instance_id(cache), cfg->workers);

    ev_run(loop, 0);

    tcd_http_stop(http);
    tcd_server_shutdown(&srv);
    tc_cache_destroy(cache);
    ev_loop_destroy(loop);
    tcd_info("stopped");
    return status;
}

int main(int argc, char **argv)
{
    tcd_config cfg;
    int status;
    if (tcd_config_parse(&cfg, argc, argv, stderr) != 0) {
        tcd_config_free(&cfg);
        return 2;
    }
    status = serve(&cfg);
    tcd_config_free(&cfg);
    return status;
}
