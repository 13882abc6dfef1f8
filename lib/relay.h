/*
 * Bus relay: the bus's subscriber connection to a local tiercached instead
 * of Redis (TC_BUS_RELAY), so that one subscriber connection per host, the
 * daemon's, carries every local process's invalidations (relay.c says why
 * the lease still holds). Pure functions of the configuration.
 */
#ifndef TC_RELAY_H
#define TC_RELAY_H

#include "config.h"
#include "conn.h"
#include "handshake.h"

/** 1 when the bus subscribes through a relay. */
int tc__relay_on(const tc__config *cfg);
/** The relay's connection options (pointers into `cfg`): plain, no TLS,
 *  the connect and command timeouts of `cfg`. */
void tc__relay_conn_opts(const tc__config *cfg, tc__conn_opts *o);
/** What the bus's subscriber sends the relay before it subscribes: AUTH
 *  with bus_relay's credentials when it has some, and on Redis Cluster
 *  `TC.RELAY <node_host> <node_port>`, the node whose upstream subscriber
 *  connection at the relay is to carry this connection's subscriptions
 *  and PINGs (NULL node_host: none). `out` borrows from `cfg` and
 *  `node_host`, and keeps the port's digits itself. */
void tc__relay_setup_cmds(const tc__config *cfg, const char *node_host,
                          int node_port, tc__setup_cmds *out);

#endif
