/* Result codes' detail text: thread-local, see tc_errmsg(). */
#ifndef TC_ERROR_H
#define TC_ERROR_H

#include "tiercache.h"

/** Record detail text for the calling thread and return `r`. Never pass a
 *  password in the arguments. */
tc_result tc__fail(tc_result r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
