/* tiercache: the connection to the target. A daemon is spoken to with
 * hiredis (RESP2, as any client); Redis directly through a library
 * instance (tc_cache), so that clearing and warming publish invalidations
 * on the bus like any other instance's writes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cli.h"

static int daemon_open(const cli_args *a, cli_target *t)
{
    struct timeval tv = {a->timeout_ms / 1000, (a->timeout_ms % 1000) * 1000};
    const char *colon = strrchr(a->daemon, ':');
    redisReply *rep;
    snprintf(t->where, sizeof(t->where), "tiercached at %s", a->daemon);
    if (strchr(a->daemon, '/') || !colon) {
        t->rc = redisConnectUnixWithTimeout(a->daemon, tv);
    } else {
        char host[200];
        size_t hl = (size_t)(colon - a->daemon);
        if (hl >= sizeof(host))
            hl = sizeof(host) - 1;
        memcpy(host, a->daemon, hl);
        host[hl] = '\0';
        t->rc = redisConnectWithTimeout(host, atoi(colon + 1), tv);
    }
    if (!t->rc || t->rc->err) {
        cli_err("cannot reach %s: %s", t->where,
                t->rc ? t->rc->errstr : "out of memory");
        return CLI_DOWN;
    }
    redisSetTimeout(t->rc, tv);
    if (a->daemon_password) {
        const char *argv[2] = {"AUTH", a->daemon_password};
        size_t lens[2] = {4, strlen(a->daemon_password)};
        if (!(rep = cli_daemon_cmd(t, 2, argv, lens)))
            return CLI_DOWN;
        if (rep->type == REDIS_REPLY_ERROR) {
            cli_err("%s refused the password: %s", t->where, rep->str);
            freeReplyObject(rep);
            return CLI_DOWN;
        }
        freeReplyObject(rep);
    }
    return CLI_OK;
}

static int redis_open(const cli_args *a, cli_target *t)
{
    tc_options o;
    tc_result r;
    memset(&o, 0, sizeof(o));
    o.url = a->redis_url; /* NULL: REDIS_URL and the rest of the env */
    o.password = a->redis_password;
    o.channel = a->channel;
    o.key_prefix = a->key_prefix;
    o.connect_timeout_ms = (uint32_t)a->timeout_ms;
    o.command_timeout_ms = (uint32_t)a->timeout_ms;
    snprintf(t->where, sizeof(t->where), "Redis at %s",
             a->redis_url ? a->redis_url
             : getenv("REDIS_URL") ? "$REDIS_URL"
                                   : "the environment's address");
    if ((r = tc_cache_create(&o, &t->c)) != TC_OK) {
        cli_err("cannot reach %s: %s (%s)", t->where, tc_strerror(r),
                tc_errmsg());
        t->c = NULL;
        return CLI_DOWN;
    }
    return CLI_OK;
}

int cli_target_open(const cli_args *a, cli_target *t)
{
    int rc;
    memset(t, 0, sizeof(*t));
    t->a = a;
    rc = a->daemon ? daemon_open(a, t) : redis_open(a, t);
    if (rc != CLI_OK)
        cli_target_close(t);
    return rc;
}

void cli_target_close(cli_target *t)
{
    if (t->rc)
        redisFree(t->rc);
    tc_cache_destroy(t->c);
    t->rc = NULL;
    t->c = NULL;
}

redisReply *cli_daemon_cmd(cli_target *t, int argc, const char **argv,
                           const size_t *lens)
{
    redisReply *rep = redisCommandArgv(t->rc, argc, argv, lens);
    if (!rep)
        cli_err("%s: %s", t->where, t->rc->errstr[0] ? t->rc->errstr
                                                     : "connection lost");
    return rep;
}
