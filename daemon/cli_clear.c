/* tiercache clear: delete keys by pattern, prefix, tag or name from Redis
 * and from every instance's L1 (--all: every L1 only). Through a daemon
 * with TC.INVALIDATE; against Redis with the library's own invalidation
 * calls, whose messages reach every instance on the bus. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int via_daemon(cli_target *t, const cli_args *a)
{
    const char *argv[2 + 64];
    size_t lens[2 + 64];
    int argc = 0;
    redisReply *rep;
    int rc = CLI_OK;
    argv[argc++] = "TC.INVALIDATE";
    if (a->pattern) {
        argv[argc++] = "PATTERN";
        argv[argc++] = a->pattern;
    } else if (a->prefix) {
        argv[argc++] = "PREFIX";
        argv[argc++] = a->prefix;
    } else if (a->ntags) {
        if (a->ntags > 64) {
            cli_err("clear: at most 64 tags at once");
            return CLI_FAILED;
        }
        argv[argc++] = "TAGS";
        for (size_t i = 0; i < a->ntags; i++)
            argv[argc++] = a->tags[i];
    } else if (a->all) {
        argv[argc++] = "ALL";
    }
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (a->nkeys) {
        /* One TC.INVALIDATE per key (each like DEL). */
        for (size_t i = 0; i < a->nkeys && rc == CLI_OK; i++) {
            const char *kv[2] = {"TC.INVALIDATE", a->keys[i]};
            size_t kl[2] = {13, strlen(a->keys[i])};
            if (!(rep = cli_daemon_cmd(t, 2, kv, kl)))
                return CLI_DOWN;
            if (rep->type == REDIS_REPLY_ERROR) {
                cli_err("clear %s: %s", a->keys[i], rep->str);
                rc = CLI_FAILED;
            }
            freeReplyObject(rep);
        }
        if (rc == CLI_OK)
            printf("cleared %zu key(s)\n", a->nkeys);
        return rc;
    }
    if (!(rep = cli_daemon_cmd(t, argc, argv, lens)))
        return CLI_DOWN;
    if (rep->type == REDIS_REPLY_ERROR) {
        cli_err("clear: %s", rep->str);
        rc = CLI_FAILED;
    } else if (rep->type == REDIS_REPLY_INTEGER) {
        printf("cleared %lld key(s) tagged", rep->integer);
        for (size_t i = 0; i < a->ntags; i++)
            printf(" %s", a->tags[i]);
        printf("\n");
    } else {
        printf("cleared %s %s\n", argv[1], argc > 2 ? argv[2] : "");
    }
    freeReplyObject(rep);
    return rc;
}

static int via_redis(cli_target *t, const cli_args *a)
{
    tc_result r = TC_OK;
    uint64_t deleted = 0;
    if (a->pattern)
        r = tc_invalidate_pattern(t->c, a->pattern);
    else if (a->prefix)
        r = tc_invalidate_prefix(t->c, a->prefix, strlen(a->prefix));
    else if (a->ntags)
        r = tc_invalidate_tags(t->c, a->ntags, a->tags, &deleted);
    else if (a->all)
        r = tc_invalidate_all(t->c);
    else
        for (size_t i = 0; i < a->nkeys && r == TC_OK; i++)
            r = tc_del(t->c, a->keys[i], strlen(a->keys[i]));
    if (r != TC_OK) {
        cli_err("clear: %s (%s)", tc_strerror(r), tc_errmsg());
        return r == TC_L2_UNAVAILABLE || r == TC_TIMEOUT ? CLI_DOWN
                                                         : CLI_FAILED;
    }
    if (a->pattern)
        printf("cleared PATTERN %s\n", a->pattern);
    else if (a->prefix)
        printf("cleared PREFIX %s\n", a->prefix);
    else if (a->ntags) {
        printf("cleared %llu key(s) tagged", (unsigned long long)deleted);
        for (size_t i = 0; i < a->ntags; i++)
            printf(" %s", a->tags[i]);
        printf("\n");
    } else if (a->all)
        printf("cleared ALL (every L1; Redis untouched)\n");
    else
        printf("cleared %zu key(s)\n", a->nkeys);
    return CLI_OK;
}

int cli_clear(const cli_args *a)
{
    cli_target t;
    int rc = cli_target_open(a, &t);
    if (rc != CLI_OK)
        return CLI_DOWN;
    rc = t.rc ? via_daemon(&t, a) : via_redis(&t, a);
    cli_target_close(&t);
    return rc;
}
