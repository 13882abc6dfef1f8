/* The fixture of a daemon suite on Redis Cluster (test_relay.c,
 * test_cluster_pipeline.c): every case starts a cluster of its own
 * (cluster_fixture.h) and the harness starts its daemons on it
 * (harness.h's redis.url). One copy here instead of one per suite.
 * Include after harness.h. */
#ifndef TCD_TESTS_CLUSTER_SUITE_H
#define TCD_TESTS_CLUSTER_SUITE_H

#include "crit.h" /* Criterion, or the TSan build's shim */
#include <string.h>

#include "cluster_fixture.h"

/* Declares `static tcr_cluster cl` and the Criterion suite `suite` (each
 * case `timeout` seconds at most) whose every case starts a cluster in
 * `cl` and points the harness at it (.init), then stops the daemons and
 * the cluster (.fini). */
#define DAEMON_CLUSTER_SUITE(suite, timeout_s)                              \
    static tcr_cluster cl;                                                  \
    static void cl_setup(void)                                              \
    {                                                                       \
        setup_process();                                                    \
        cr_assert_eq(tcr_cluster_start(&cl, 60000), 0,                      \
                     "cluster did not start");                              \
        /* The harness starts every daemon on redis.url. */                 \
        memset(&redis, 0, sizeof(redis));                                   \
        cr_assert_lt(strlen(cl.url), sizeof(redis.url));                    \
        memcpy(redis.url, cl.url, strlen(cl.url) + 1);                      \
    }                                                                       \
    static void cl_teardown(void)                                           \
    {                                                                       \
        teardown(); /* the daemons (and `redis`, which is not running) */   \
        tcr_cluster_stop(&cl);                                              \
    }                                                                       \
    TestSuite(suite, .init = cl_setup, .fini = cl_teardown,                 \
              .timeout = (timeout_s))

#endif
