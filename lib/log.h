/* Logging through the user's optional callback; the library never prints. */
#ifndef TC_LOG_H
#define TC_LOG_H

#include "tiercache.h"

typedef struct tc__logger {
    tc_log_fn fn;
    void *ud;
} tc__logger;

/** Format and hand to the callback, if any. Never pass a password. */
void tc__log(const tc__logger *lg, tc_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
