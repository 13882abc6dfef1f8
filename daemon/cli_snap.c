/* tiercache: one snapshot of the counters the tool reports. From a daemon:
 * `INFO tiercache` (the library's counters, health, and the invalidation
 * lag histogram) and `INFO tiercached` (its command count). From Redis
 * directly: Redis's `INFO stats` (commands, keyspace hits and misses: the
 * fleet's L2 hit ratio) and this instance's own bus counters (every
 * invalidation the fleet publishes reaches it, with its lag). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The value of "name:" in INFO text (at a line start), or NULL. */
static const char *field(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (!strncmp(p, name, n) && p[n] == ':')
            return p + n + 1;
    }
    return NULL;
}

static uint64_t num(const char *text, const char *name)
{
    const char *v = field(text, name);
    return v ? strtoull(v, NULL, 10) : 0;
}

/* "c0,c1,...,c23" into hist. */
static void hist(const char *text, const char *name, uint64_t *h)
{
    const char *v = field(text, name);
    char *end;
    for (int i = 0; v && i < 24; i++) {
        h[i] = strtoull(v, &end, 10);
        if (*end != ',')
            break;
        v = end + 1;
    }
}

/* INFO <section> from the daemon: its text (free with freeReplyObject). */
static redisReply *daemon_info(cli_target *t, const char *section)
{
    const char *argv[2] = {"INFO", section};
    size_t lens[2] = {4, strlen(section)};
    redisReply *rep = cli_daemon_cmd(t, 2, argv, lens);
    if (rep && rep->type != REDIS_REPLY_STRING) {
        cli_err("%s: INFO %s: %s", t->where, section,
                rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

static int from_daemon(cli_target *t, cli_snap *s)
{
    redisReply *tc = daemon_info(t, "tiercache"), *tcd;
    const char *coh;
    if (!tc)
        return CLI_DOWN;
    if (!(tcd = daemon_info(t, "tiercached"))) {
        freeReplyObject(tc);
        return CLI_DOWN;
    }
    s->has_l1 = 1;
    s->l1_hits = num(tc->str, "l1_hits");
    s->l1_misses = num(tc->str, "l1_misses");
    s->l1_entries = num(tc->str, "l1_entries");
    s->l2_hits = num(tc->str, "l2_hits");
    s->l2_misses = num(tc->str, "l2_misses");
    s->inval = num(tc->str, "inval_applied");
    hist(tc->str, "inval_lag_us_hist", s->lag);
    s->l2_up = (int)num(tc->str, "l2_up");
    s->bus_up = (int)num(tc->str, "bus_up");
    s->healthy = (int)num(tc->str, "healthy");
    if ((coh = field(tc->str, "coherence")))
        snprintf(s->coherence, sizeof(s->coherence), "%.*s",
                 (int)strcspn(coh, "\r\n"), coh);
    /* Less the two INFO commands of this snapshot. */
    s->commands = num(tcd->str, "tiercached_commands");
    freeReplyObject(tcd);
    freeReplyObject(tc);
    return CLI_OK;
}

static int from_redis(cli_target *t, cli_snap *s)
{
    const char *argv[2] = {"INFO", "stats"};
    size_t lens[2] = {4, 5};
    tc_reply *rep = NULL;
    tc_stats st;
    tc_health h;
    tc_result r;
    tc_cache_stats(t->c, &st);
    memcpy(s->lag, st.lag_us_hist, sizeof(s->lag));
    s->inval = st.inval_received;
    tc_cache_health(t->c, &h);
    s->l2_up = h.l2_up;
    s->bus_up = h.bus_up;
    s->healthy = h.l2_up && h.bus_up;
    r = tc_command(t->c, 2, argv, lens, &rep);
    if (r != TC_OK || tc_reply_type(rep) != TC_REPLY_STRING) {
        if (r == TC_OK)
            cli_err("%s: INFO stats: %.*s", t->where, (int)tc_reply_len(rep),
                    tc_reply_str(rep) ? tc_reply_str(rep) : "");
        else
            cli_err("%s: %s (%s)", t->where, tc_strerror(r), tc_errmsg());
        tc_reply_free(rep);
        return CLI_DOWN;
    }
    {
        /* The reply is not NUL-terminated: copy it. */
        char *text = strndup(tc_reply_str(rep), tc_reply_len(rep));
        tc_reply_free(rep);
        if (!text) {
            cli_err("out of memory");
            return CLI_DOWN;
        }
        s->l2_hits = num(text, "keyspace_hits");
        s->l2_misses = num(text, "keyspace_misses");
        s->commands = num(text, "total_commands_processed");
        free(text);
    }
    return CLI_OK;
}

int cli_snap_take(cli_target *t, cli_snap *s)
{
    memset(s, 0, sizeof(*s));
    s->t = now_s();
    return t->rc ? from_daemon(t, s) : from_redis(t, s);
}
