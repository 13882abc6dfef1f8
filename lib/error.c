#include <stdarg.h>
#include <stdio.h>

#include "error.h"

static _Thread_local char errbuf[256];

const char *tc_strerror(tc_result r)
{
    switch (r) {
    case TC_OK: return "success";
    case TC_NOT_FOUND: return "key not found";
    case TC_TIMEOUT: return "Redis did not answer in time";
    case TC_L2_UNAVAILABLE: return "Redis (L2) unavailable";
    case TC_TOO_LARGE: return "key or value too large";
    case TC_BAD_ARGUMENT: return "bad argument";
    case TC_NO_MEMORY: return "out of memory";
    case TC_AUTH: return "Redis refused the credentials";
    case TC_PROTOCOL: return "unexpected reply from Redis";
    case TC_LOADER: return "loader failed";
    case TC_DISABLED: return "caching is disabled";
    case TC_NOT_STORED: return "not stored: NX/XX condition not met";
    case TC_COMPRESSED:
        return "value is compressed and compression is off here";
    case TC_CORRUPT: return "compressed value does not decode";
    case TC_LOADER_TIMEOUT: return "loader did not return in time";
    case TC_STALE: return "stale: a fail-safe copy was served";
    }
    return "unknown result code";
}

const char *tc_errmsg(void)
{
    return errbuf;
}

tc_result tc__fail(tc_result r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
    va_end(ap);
    return r;
}
