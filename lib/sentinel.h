/*
 * Redis Sentinel discovery (issue 10): which server is the master now.
 *
 * Every connection to L2, the pool's (l2.c) and the bus's (bus.c) alike,
 * asks here for the master's address when it (re)connects, then checks
 * with ROLE, on the connection itself, that the server it reached is a
 * master. A connection that finds a replica (ROLE, or READONLY/LOADING/
 * MASTERDOWN replies) reports it with tc__sentinel_lost_master(), which
 * bumps the generation: every pool slot and the bus drop connections made
 * under an older generation, so nobody keeps talking to a demoted master.
 *
 * Why no +switch-master subscription: a killed master closes every
 * connection to it, and a demoted one answers the bus's heartbeat (every
 * lease/4) with READONLY, so both are noticed without a long-lived
 * connection per instance to a sentinel; the address is asked again on
 * every reconnect anyway. What a subscription would add is an earlier
 * warning while an isolated old master still accepts writes (README,
 * "Sentinel": Redis's own split-brain window).
 *
 * Thread safety: all functions may be called from any thread at once
 * (the pool's threads, the reconnect thread, the bus thread). The object
 * copies what it needs from the configuration at create; the last answer
 * is under its mutex, the generation is atomic. tc__sentinel_resolve()
 * blocks for at most (connect + command timeout) per sentinel.
 */
#ifndef TC_SENTINEL_H
#define TC_SENTINEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define TC__MAX_SENTINELS 16

typedef struct tc__sentinel tc__sentinel;

/** Build from cfg's sentinel fields (copied; with cfg->tls, the sentinels
 *  are reached over TLS with cfg->tls_ctx, borrowed: the configuration
 *  outlives the object). TC_NO_MEMORY on failure.
 *  *out is the configuration's, freed with tc__sentinel_free(). */
tc_result tc__sentinel_create(const tc__config *cfg, tc__sentinel **out);
/** NULL is a no-op. */
void tc__sentinel_free(tc__sentinel *s);

/**
 * Ask the sentinels in turn (the last one that answered first) for the
 * master's address with SENTINEL get-master-addr-by-name. On TC_OK `host`
 * (hostlen bytes, NUL-terminated) and *port hold it. When the address
 * differs from the last one found, the generation is bumped. Failures,
 * with detail in tc_errmsg() naming every sentinel tried:
 * TC_BAD_ARGUMENT when every sentinel that answered said it knows no
 * master by that name; TC_AUTH when a sentinel refused our credentials;
 * TC_L2_UNAVAILABLE (or TC_TIMEOUT) when none answered.
 */
tc_result tc__sentinel_resolve(tc__sentinel *s, char *host, size_t hostlen,
                               int *port);

/** The generation: bumped whenever the master's address changed or a
 *  connection found that its server is no longer the master. One atomic
 *  load. */
uint64_t tc__sentinel_generation(const tc__sentinel *s);

/** A connection made under generation `seen` reached a server that is not
 *  (or no longer) the master: bump the generation once per `seen` (later
 *  reports of the same generation do nothing) and ask the next sentinel
 *  first next time. */
void tc__sentinel_lost_master(tc__sentinel *s, uint64_t seen);

/** 1 when an error reply says its server is not a writable master (and so
 *  rediscovery is due): READONLY, LOADING, MASTERDOWN. */
int tc__sentinel_error_means_demoted(const char *str, size_t len);

/** 1 when a ROLE reply names a master. */
int tc__sentinel_role_is_master(const void *role_reply);

#endif
