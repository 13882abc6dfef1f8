/*
 * Reporting: INFO's Redis-style sections and the Prometheus text for
 * GET /metrics, both from tc_cache_stats() plus the daemon's counters.
 * Callable from any thread (workers, the HTTP thread): reads only the
 * server's read-only fields and atomics.
 */
#ifndef TCD_STATS_H
#define TCD_STATS_H

#include "buf.h"
#include "server.h"

/** INFO [section ...] reply (a bulk string) into `out`. The tiercache
 *  section's health is at most a second old (health_age_ms): INFO PINGs L2
 *  once a second at most. */
void tcd_stats_info(tcd_server *srv, const tcd_req *req, tcd_buf *out);
/** INFO's reply when Redis answered INFO with `text`: Redis's sections,
 *  then the tiercache section when asked for (or by default). */
void tcd_stats_info_redis(tcd_server *srv, const tcd_req *req,
                          const char *text, size_t len, tcd_buf *out);
/** Prometheus exposition text into `out` (plain bytes, no RESP framing). */
void tcd_stats_metrics(tcd_server *srv, tcd_buf *out);
/** 1 when L2 answers and the bus is up (or not used). Fills `h`. One
 *  PING of L2 (for /health: always live). */
int tcd_stats_healthy(tcd_server *srv, tc_health *h);

#endif
