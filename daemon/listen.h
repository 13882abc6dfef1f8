/*
 * Listeners: the unix socket and the optional loopback TCP port, accepting
 * clients in batches and pausing briefly when descriptors run out.
 * Threads: loop thread only.
 */
#ifndef TCD_LISTEN_H
#define TCD_LISTEN_H

#include "server.h"

/** Open the configured listeners and start accepting on srv->loop.
 *  Returns 0, or -1 after logging why. */
int tcd_listen_start(tcd_server *srv);
/** Stop accepting, close the listeners and unlink the socket file.
 *  Safe to call more than once and after a failed start. */
void tcd_listen_stop(tcd_server *srv);

#endif
