#include <stdarg.h>
#include <stdio.h>

#include "log.h"

void tc__log(const tc__logger *lg, tc_log_level lvl, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    if (!lg || !lg->fn)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    lg->fn(lg->ud, lvl, buf);
}
