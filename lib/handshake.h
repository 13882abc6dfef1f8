/*
 * Connection set-up: the commands every new Redis connection runs first
 * (AUTH, SELECT), built once from the configuration for both the L2 pool's
 * blocking connections and the bus's async ones. Pure data; the struct
 * borrows strings from the configuration (immutable after create).
 */
#ifndef TC_HANDSHAKE_H
#define TC_HANDSHAKE_H

#include <stddef.h>

#include "config.h"

typedef struct tc__setup_cmd {
    int argc;
    const char *argv[3];
    size_t argvlen[3];
} tc__setup_cmd;

typedef struct tc__setup_cmds {
    int n;
    tc__setup_cmd cmd[2];
    char db[16]; /* storage for SELECT's argument */
} tc__setup_cmds;

/** AUTH [user] pass when a password is set; SELECT db when db != 0. */
void tc__setup_cmds_make(const tc__config *cfg, tc__setup_cmds *out);

#endif
