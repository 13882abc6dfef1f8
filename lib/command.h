/*
 * Any Redis command through the cache (command.c): tc_command,
 * tc_command_multi, tc_command_check and tc_reply. The command table
 * (cmdspec.h) hangs off the cache handle; this is how the facade frees it.
 */
#ifndef TC_COMMAND_H
#define TC_COMMAND_H

#include "tiercache.h"

/** Free the cache's command table, if fetched. tc_cache_destroy() only. */
void tc__cmdtab_release(tc_cache *c);

#endif
