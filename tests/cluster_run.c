/*
 * tcr-cluster-run [--tls] [--] COMMAND [ARG...]
 *
 * Runs a test executable with a Redis Cluster shared by its cases
 * (cluster_fixture.h, "Shared clusters"): starts one cluster of three
 * masters and three replicas (and a TLS-only one with --tls), writes their
 * descriptions into a private temp dir, runs COMMAND with
 * $TCR_SHARED_CLUSTER (and $TCR_SHARED_CLUSTER_TLS) naming them, then
 * stops every node by its pid and removes the dirs, whether COMMAND
 * passed, failed or crashed; SIGTERM, SIGINT or SIGHUP (meson's timeout,
 * ^C) are passed on to COMMAND and end the same way. The nodes are started
 * with PR_SET_PDEATHSIG (redis_fixture.h), so they die with this process
 * even when it is killed outright. Exits with COMMAND's status (128 + the
 * signal that ended it). When a cluster cannot start, COMMAND runs without
 * it, and each case starts its own (tcr_cluster_shared()).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster_fixture.h"

static volatile sig_atomic_t caught;

static void on_signal(int sig)
{
    caught = sig;
}

/* Start a cluster and describe it in dir/name; 0 or -1. */
static int share(tcr_cluster *t, int tls, const char *dir, const char *name,
                 const char *env, char *path, size_t len)
{
    int rc = tls ? tcr_cluster_start_tls(t, 60000) : tcr_cluster_start(t, 60000);
    if (rc != 0)
        return -1;
    snprintf(path, len, "%s/%s", dir, name);
    if (tcr_cluster_save(t, path) != 0 || setenv(env, path, 1) != 0) {
        tcr_cluster_stop(t);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    tcr_cluster plain, tls;
    char dir[] = "/tmp/tcr-shared-XXXXXX", ppath[512] = "", tpath[512] = "";
    int a = 1, want_tls = 0, have_plain, have_tls = 0, st = 0;
    struct sigaction sa;
    pid_t pid;
    if (a < argc && !strcmp(argv[a], "--tls"))
        want_tls = 1, a++;
    if (a < argc && !strcmp(argv[a], "--"))
        a++;
    if (a >= argc) {
        fprintf(stderr, "usage: tcr-cluster-run [--tls] [--] COMMAND "
                        "[ARG...]\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: waitpid returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    memset(&plain, 0, sizeof(plain));
    memset(&tls, 0, sizeof(tls));
    unsetenv(TCR_SHARED_CLUSTER_ENV);
    unsetenv(TCR_SHARED_CLUSTER_TLS_ENV);
    if (!mkdtemp(dir)) {
        perror("tcr-cluster-run: mkdtemp");
        return 1;
    }
    have_plain = share(&plain, 0, dir, "cluster", TCR_SHARED_CLUSTER_ENV,
                       ppath, sizeof(ppath)) == 0;
    if (!have_plain)
        fprintf(stderr, "tcr-cluster-run: no shared cluster: every case "
                        "starts its own\n");
    if (want_tls && !caught) {
        have_tls = share(&tls, 1, dir, "cluster-tls",
                         TCR_SHARED_CLUSTER_TLS_ENV, tpath,
                         sizeof(tpath)) == 0;
        if (!have_tls)
            fprintf(stderr, "tcr-cluster-run: no shared TLS cluster: every "
                            "case starts its own\n");
    }
    fflush(NULL);
    pid = caught ? -1 : fork();
    if (pid == 0) {
        execvp(argv[a], argv + a);
        fprintf(stderr, "tcr-cluster-run: %s: %s\n", argv[a],
                strerror(errno));
        _exit(127);
    }
    if (pid > 0) {
        int passed_on = 0;
        while (waitpid(pid, &st, 0) < 0) {
            if (errno != EINTR) {
                st = 1 << 8;
                break;
            }
            if (caught && !passed_on) {
                kill(pid, caught);
                passed_on = 1;
            }
        }
    }
    if (have_tls)
        tcr_cluster_stop(&tls);
    if (have_plain)
        tcr_cluster_stop(&plain);
    if (*ppath)
        unlink(ppath);
    if (*tpath)
        unlink(tpath);
    rmdir(dir);
    if (pid < 0)
        return caught ? 128 + caught : 1;
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
