/* tiercache: the management tool's entry point (see cli.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int main(int argc, char **argv)
{
    cli_args a;
    int help_rc, rc = cli_args_parse(argc, argv, &a, &help_rc);
    /* A daemon that hangs up must not kill the tool mid-write. */
    signal(SIGPIPE, SIG_IGN);
    if (help_rc >= 0 || rc != CLI_OK) {
        cli_args_free(&a);
        return help_rc >= 0 ? help_rc : rc;
    }
    if (!strcmp(a.cmd, "health"))
        rc = cli_health(&a);
    else if (!strcmp(a.cmd, "stats"))
        rc = cli_stats(&a);
    else if (!strcmp(a.cmd, "clear"))
        rc = cli_clear(&a);
    else
        rc = cli_warm(&a);
    cli_args_free(&a);
    return rc;
}
