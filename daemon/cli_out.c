/* tiercache: output shared by the subcommands. Results go to stdout,
 * errors and progress to stderr, so a script can pipe the one and log the
 * other. */
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"

void cli_err(const char *fmt, ...)
{
    va_list ap;
    fputs("tiercache: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_progress(const cli_args *a, const char *what, size_t done,
                  size_t total)
{
    if (a->quiet)
        return;
    fprintf(stderr, "%s: %zu/%zu keys (%.0f%%)\n", what, done, total,
            total ? 100.0 * (double)done / (double)total : 100.0);
}

long long cli_lag_pct(const uint64_t *hist, double pct)
{
    uint64_t n = 0, seen = 0;
    for (int i = 0; i < 24; i++)
        n += hist[i];
    if (!n)
        return -1;
    for (int i = 0; i < 24; i++) {
        seen += hist[i];
        /* The first bucket whose running count reaches pct of all. */
        if ((double)seen * 100.0 >= pct * (double)n)
            return 1LL << (i + 1); /* bucket i: [2^i, 2^(i+1)) us */
    }
    return 1LL << 24;
}
