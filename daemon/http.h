/*
 * Optional loopback HTTP endpoint (libmicrohttpd, its own thread):
 * GET /metrics (Prometheus text) and GET /health (200 healthy, 503 not).
 */
#ifndef TCD_HTTP_H
#define TCD_HTTP_H

#include "server.h"

typedef struct tcd_http tcd_http;

/** Listen on 127.0.0.1:port. `srv` is borrowed and must outlive the
 *  endpoint. Returns NULL after logging the failure. */
tcd_http *tcd_http_start(tcd_server *srv, int port);
/** Stop the thread and close the port. NULL is a no-op. */
void tcd_http_stop(tcd_http *h);

#endif
