/* Criterion, or tests/shim.h in the ThreadSanitizer build (see there). */
#ifndef TC_CRIT_H
#define TC_CRIT_H
#ifdef TC_TEST_SHIM
#include "shim.h"
#else
#include <criterion/criterion.h>
#endif
#endif
