/*
 * Logging to stderr: one line per event, "<time> <LEVEL> <message>", written
 * with a single write() so lines from different threads never interleave.
 * Thread-safe.
 */
#ifndef TCD_LOG_H
#define TCD_LOG_H

#include "tiercache.h"

/** Lines below `level` are dropped. Set once at start-up. */
void tcd_log_set_level(tc_log_level level);
void tcd_log(tc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** tc_log_fn adapter for the library's log callback. */
void tcd_log_lib(void *userdata, tc_log_level level, const char *msg);

/** State of one rate-limited message; zero-initialise (static storage). */
typedef struct tcd_log_limit {
    _Atomic long long last_ms;            /* when it was last written */
    _Atomic unsigned long long suppressed; /* dropped since then */
} tcd_log_limit;

/** Like tcd_log, but at most one line per `interval_ms` for `lim`; the line
 *  written says how many were dropped since the last one. For messages a
 *  client can trigger at will (failed AUTH, HTTP on the RESP port).
 *  Thread-safe. */
void tcd_log_limited(tcd_log_limit *lim, unsigned interval_ms,
                     tc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define tcd_debug(...) tcd_log(TC_LOG_DEBUG, __VA_ARGS__)
#define tcd_info(...) tcd_log(TC_LOG_INFO, __VA_ARGS__)
#define tcd_warn(...) tcd_log(TC_LOG_WARN, __VA_ARGS__)
#define tcd_error(...) tcd_log(TC_LOG_ERROR, __VA_ARGS__)

#endif
