#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int min_level = TC_LOG_INFO;

void tcd_log_set_level(tc_log_level level)
{
    atomic_store(&min_level, (int)level);
}

static void emit(tc_log_level level, const char *origin, const char *msg)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char line[1024];
    struct timespec ts;
    struct tm tm;
    int n;
    if ((int)level < atomic_load(&min_level))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s%s\n",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 names[(unsigned)level < 4 ? (unsigned)level : 3], origin,
                 msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) { /* truncated: keep one line */
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    /* One event, one line: embedded newlines would split it. */
    for (int i = 0; i < n - 1; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* stderr gone: nothing better to do */
    }
}

void tcd_log(tc_log_level level, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    if ((int)level < atomic_load(&min_level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, "", msg);
}

void tcd_log_lib(void *userdata, tc_log_level level, const char *msg)
{
    (void)userdata;
    emit(level, "tiercache: ", msg);
}

void tcd_log_limited(tcd_log_limit *lim, unsigned interval_ms,
                     tc_log_level level, const char *fmt, ...)
{
    struct timespec ts;
    long long now, last;
    unsigned long long dropped;
    char msg[900];
    va_list ap;
    if ((int)level < atomic_load(&min_level))
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
    last = atomic_load(&lim->last_ms);
    if ((last != 0 && now - last < (long long)interval_ms) ||
        !atomic_compare_exchange_strong(&lim->last_ms, &last, now)) {
        atomic_fetch_add(&lim->suppressed, 1);
        return;
    }
    dropped = atomic_exchange(&lim->suppressed, 0);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (dropped)
        tcd_log(level, "%s (%llu more like it in the last %u s)", msg,
                dropped, (interval_ms + 999) / 1000);
    else
        tcd_log(level, "%s", msg);
}
