/* tiercache health: is the cache usable? Exit 0 healthy, 1 degraded (the
 * target answers, but Redis or the invalidation bus does not: a daemon
 * then serves what it may from L1 and refuses the rest), 2 down (the
 * daemon, or Redis in direct mode, cannot be reached). One line on stdout
 * says which, and why. */
#include <stdio.h>
#include <time.h>

#include "cli.h"

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int verdict(const cli_target *t, const cli_snap *s)
{
    const char *coh = s->coherence[0] ? s->coherence : "";
    if (s->healthy) {
        printf("healthy: %s; Redis up, invalidation bus %s%s%s\n", t->where,
               s->bus_up ? "up" : "off", coh[0] ? ", coherence " : "", coh);
        return CLI_OK;
    }
    if (!s->l2_up && !t->rc) {
        printf("down: %s does not answer PING\n", t->where);
        return CLI_DOWN;
    }
    printf("degraded: %s; %s\n", t->where,
           !s->l2_up ? "Redis does not answer"
                     : "the invalidation bus is not up (L1 not trusted)");
    return CLI_DEGRADED;
}

int cli_health(const cli_args *a)
{
    cli_target t;
    cli_snap s;
    int rc = cli_target_open(a, &t);
    if (rc != CLI_OK) {
        printf("down: %s\n", a->daemon ? "tiercached unreachable"
                                       : "Redis unreachable");
        return CLI_DOWN;
    }
    rc = cli_snap_take(&t, &s);
    /* A fresh library instance proves its bus within moments: wait for it
     * (up to the timeout) before calling it degraded. */
    for (long waited = 0; rc == CLI_OK && t.c && s.l2_up && !s.bus_up &&
                          waited < a->timeout_ms;
         waited += 50) {
        pause_ms(50);
        rc = cli_snap_take(&t, &s);
    }
    if (rc != CLI_OK) {
        if (t.c) /* Redis did not answer INFO */
            printf("down: %s does not answer\n", t.where);
        else
            printf("down: %s does not answer INFO\n", t.where);
        cli_target_close(&t);
        return CLI_DOWN;
    }
    rc = verdict(&t, &s);
    cli_target_close(&t);
    return rc;
}
