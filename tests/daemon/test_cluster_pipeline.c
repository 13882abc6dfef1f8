/*
 * tiercached's pipelined forwarding on Redis Cluster (issue 10): a hiredis
 * client with many requests in flight through one tiercached in front of
 * a real local cluster of three masters and three replicas
 * (cluster_fixture.h). GET misses, SETs and forwarded commands go to each
 * key's master from the event loop (tc_async_*), multi-slot commands to a
 * worker, and the replies come back in request order; also while a slot
 * moves to another master (CLUSTER SETSLOT by hand) and the requests sent
 * to its old master meet MOVED.
 */
#include "crit.h" /* Criterion, or the TSan build's shim */
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cluster_fixture.h"

#include "harness.h"
#include "cluster_suite.h"
#include "cluster_nodes.h"
#include "pipelined.h"

DAEMON_CLUSTER_SUITE(cluster_pipeline, 240);

Test(cluster_pipeline, pipelined_client_across_masters_in_order_through_a_move)
{
    enum { ROUNDS = 40, MAX = ROUNDS * 3 * 8 + 64 };
    tcd_proc *t = start_daemon("--command-timeout-ms", "10000", NULL);
    redisContext *c = connect_to(t);
    want *ws = calloc(MAX, sizeof(*ws));
    tcr_server *ms[3], *a, *b;
    char tag[3][64], mv[64], slot[16], idb[41];
    long long before, moved;
    int n = 0, got = 0;
    cr_assert_not_null(c);
    keys_on_masters(&cl, "pl", tag, ms);
    /* A slot of the first master's that holds nothing: it moves to the
     * second by SETSLOT alone, halfway through. */
    a = ms[0], b = ms[1];
    cr_assert_eq(tcr_cluster_key_on(&cl, a, "plmove", mv, sizeof(mv)), 0);
    snprintf(slot, sizeof(slot), "%d", tcr_cluster_keyslot(&cl, mv));
    cr_assert_eq(tcr_cluster_id(b, idb), 0);
    before = info_field(t, "tiercached_commands_pipelined");

    /* First half: every master's keys (hash tags keep each master's in
     * one slot), and reads of the slot that will move. */
    for (int i = 0; i < ROUNDS; i++) {
        for (int m = 0; m < 3; m++) {
            redisAppendCommand(c, "SET {%s}:k v%d", tag[m], i);
            WANT(REDIS_REPLY_STATUS, "OK");
            redisAppendCommand(c, "GET {%s}:k", tag[m]);
            WANT(REDIS_REPLY_STRING, "v%d", i);
            redisAppendCommand(c, "INCR {%s}:n", tag[m]);
            WANT(REDIS_REPLY_INTEGER, "%d", i + 1);
            redisAppendCommand(c, "GET {%s}:miss%d", tag[m], i);
            WANT(REDIS_REPLY_NIL, "-");
        }
        if (i % 10 == 0) { /* keys of three slots: a worker's */
            redisAppendCommand(c, "MGET {%s}:k {%s}:k {%s}:k", tag[0], tag[1],
                               tag[2]);
            WANT(REDIS_REPLY_ARRAY, "v%d,v%d,v%d", i, i, i);
        }
        redisAppendCommand(c, "GET {%s}:x", mv);
        WANT(REDIS_REPLY_NIL, "-");
    }
    send_all(c);
    /* Some answered, many still in flight: the slot moves now. */
    got = expect_replies(c, ws, got, n / 4);
    moved = errorstat_count("MOVED", a);
    free(tcr_cmd(b, NULL, "CLUSTER", "SETSLOT", slot, "NODE", idb, NULL));
    free(tcr_cmd(a, NULL, "CLUSTER", "SETSLOT", slot, "NODE", idb, NULL));
    for (int i = 0; i < TCR_CLUSTER_NODES; i++)
        free(tcr_cmd(&cl.node[i], NULL, "CLUSTER", "SETSLOT", slot, "NODE",
                     idb, NULL));

    /* Second half: writes and reads of the moved slot (the daemon still
     * sends them to a, which answers MOVED), between the others'. */
    for (int i = 0; i < ROUNDS; i++) {
        redisAppendCommand(c, "SET {%s}:x m%d", mv, i);
        WANT(REDIS_REPLY_STATUS, "OK");
        redisAppendCommand(c, "GET {%s}:k", tag[2]);
        WANT(REDIS_REPLY_STRING, "v%d", ROUNDS - 1);
        redisAppendCommand(c, "GET {%s}:x", mv);
        WANT(REDIS_REPLY_STRING, "m%d", i);
        redisAppendCommand(c, "INCR {%s}:n", mv);
        WANT(REDIS_REPLY_INTEGER, "%d", i + 1);
        redisAppendCommand(c, "INCR {%s}:n", tag[1]);
        WANT(REDIS_REPLY_INTEGER, "%d", ROUNDS + i + 1);
    }
    send_all(c);
    got = expect_replies(c, ws, got, n);
    /* The paths this checks were taken: the loop's pipelined forwarding,
     * and MOVED from the slot's old master. */
    cr_assert_geq(info_field(t, "tiercached_commands_pipelined"),
                  before + ROUNDS * 12, "commands were not pipelined");
    cr_assert_gt(errorstat_count("MOVED", a), moved, "a never answered MOVED");
    {
        char key[80], *v;
        snprintf(key, sizeof(key), "{%s}:x", mv);
        v = tcr_cmd(b, NULL, "GET", key, NULL);
        cr_assert(v && !strcmp(v, "m39"), "%s on b: %s", key, v);
        free(v);
    }
    free(ws);
    redisFree(c);
}
