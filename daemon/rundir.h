/*
 * The default socket's directory: private to the user tiercached runs as,
 * so that no other local user can bind the socket first and impersonate
 * the daemon (as anyone can in /tmp). Not thread-safe; called once from
 * main() before the server starts.
 */
#ifndef TCD_RUNDIR_H
#define TCD_RUNDIR_H

#include <stddef.h>

/**
 * Pick $XDG_RUNTIME_DIR/tiercached, else /run/tiercached for root, else
 * /tmp/tiercached-<uid>; create it with mode 0700 if absent, and refuse
 * (logging why) one that is a symlink, not a directory, not owned by us,
 * or writable by group or others. Writes "<dir>/tiercached.sock" to `out`
 * (`cap` bytes). Returns 0, or -1 after logging.
 */
int tcd_rundir_socket(char *out, size_t cap);

#endif
