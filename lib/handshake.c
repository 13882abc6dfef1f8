/* Connection set-up commands: see handshake.h. */
#include <stdio.h>
#include <string.h>

#include "handshake.h"

static void add(tc__setup_cmds *s, int argc, const char *a0, const char *a1,
                const char *a2)
{
    tc__setup_cmd *c = &s->cmd[s->n++];
    const char *a[3] = {a0, a1, a2};
    c->argc = argc;
    for (int i = 0; i < argc; i++) {
        c->argv[i] = a[i];
        c->argvlen[i] = strlen(a[i]);
    }
}

void tc__setup_cmds_make(const tc__config *cfg, tc__setup_cmds *out)
{
    out->n = 0;
    if (cfg->password) {
        if (cfg->username)
            add(out, 3, "AUTH", cfg->username, cfg->password);
        else
            add(out, 2, "AUTH", cfg->password, NULL);
    }
    if (cfg->db) {
        snprintf(out->db, sizeof(out->db), "%d", cfg->db);
        add(out, 2, "SELECT", out->db, NULL);
    }
}
