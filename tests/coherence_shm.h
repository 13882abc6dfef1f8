/*
 * Shared memory between the coherence checker (test_coherence.c) and its
 * instance processes (tc_instance.c): a file in the test's temp dir, mapped
 * MAP_SHARED by every process.
 *
 * Owner: the checker creates and zeroes it before it starts any instance and
 * unmaps it after they all exited. Protection: every field is a lock-free
 * atomic; no field is ever read and written as one step, except the version
 * counters, which are advanced with atomic_fetch_add.
 *
 * Versions: every write of key k (through the library, or by a plain Redis
 * client) takes the next version from next_ver[k], so versions are unique per
 * key and survive Redis restarts. Version 0 is the initial value.
 *
 * The "database" behind the read-through loader is db[k]: the version of the
 * latest write of k that reached the database. Writers store it before they
 * touch the cache (write-through and cache-aside alike), the loader reads it.
 */
#ifndef TC_COHERENCE_SHM_H
#define TC_COHERENCE_SHM_H

#include <stdatomic.h>
#include <stdint.h>

#define TCC_MAX_KEYS 64
#define TCC_MAX_PROCS 8

typedef struct tcc_shared {
    atomic_llong next_ver[TCC_MAX_KEYS]; /* last version handed out */
    atomic_llong db[TCC_MAX_KEYS];       /* the loader's database */
    atomic_int stop;                     /* checker: 1 = finish now */
    atomic_int created;                  /* instances past tc_cache_create */
    atomic_int bus_up[TCC_MAX_PROCS];    /* tc_cache_health().bus_up, polled */
    atomic_llong ops[TCC_MAX_PROCS];     /* operations done, per instance */
    atomic_int quiet[TCC_MAX_PROCS];     /* checker: 1 = pause operations */
    atomic_int sub_port[TCC_MAX_PROCS];  /* on a cluster, the port of the node
                                            the bus last subscribed on */
} tcc_shared;

#endif
