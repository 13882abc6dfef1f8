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

/** 1 when the bus subscribes through a relay. */
int tc__relay_on(const tc__config *cfg);
/** The relay's connection options (pointers into `cfg`): plain, no TLS,
 *  the connect and command timeouts of `cfg`. */
void tc__relay_conn_opts(const tc__config *cfg, tc__conn_opts *o);

#endif
