/*
 * Epoch-based reclamation for the L1's lock-free readers.
 *
 * A reader brackets its access to shared entries with tc__epoch_enter() /
 * tc__epoch_exit(); a writer that unlinked something calls
 * tc__epoch_synchronize() and may then free it: every section that could
 * still see the unlinked object has ended. Sections are short (one lookup
 * and a copy or reference) and never nest.
 *
 * Why our own and not liburcu or ck_epoch: readers are arbitrary
 * application threads the library never sees registered. urcu-memb and
 * ck_epoch need explicit per-thread registration (and unregistration before
 * a thread exits); urcu-bp registers lazily but its atomics are inline
 * assembly that ThreadSanitizer cannot see, so every free after a grace
 * period would be reported as a race (the L1 suite runs under TSan). This
 * file is the same scheme as urcu-memb (a per-thread counter published
 * without a fence, made visible by membarrier(2) on the writer's side, or
 * by a full fence where membarrier is missing), with C11 atomics TSan can
 * check, lazy registration through a thread-local pointer, reuse of the
 * record of an exited thread (pthread key destructor) and a fork handler.
 *
 * Ownership: records live for the life of the process (reused, never
 * freed), linked in one list whose head only grows (registry mutex for
 * writers; readers of the list walk it with acquire loads). Each record's
 * counter is written only by its thread (and by the exit/fork handlers).
 */
#ifndef TC_EPOCH_H
#define TC_EPOCH_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct tc__epoch_rec {
    _Alignas(64) atomic_uint_fast64_t ctr; /* 0: outside; else the epoch */
    atomic_int in_use;                      /* registry mutex for 0 -> 1 */
    struct tc__epoch_rec *_Atomic next;     /* registry list, immutable once
                                               published */
} tc__epoch_rec;

extern _Thread_local tc__epoch_rec *tc__epoch_self
    __attribute__((tls_model("initial-exec")));
extern atomic_uint_fast64_t tc__epoch_now; /* starts at 1, only grows */
extern int tc__epoch_fenceless; /* membarrier(2) serves the writer side */

/** One-time set-up (membarrier registration). Idempotent, thread-safe; call
 *  before the first section (tc__l1_create() does). */
void tc__epoch_init(void);

/** The calling thread's record, registering it on first use; NULL when out
 *  of memory. */
tc__epoch_rec *tc__epoch_register(void);

/** Enter a read-side section; NULL (no section) only when the thread could
 *  not be registered. Any thread. */
static inline tc__epoch_rec *tc__epoch_enter(void)
{
    tc__epoch_rec *r = tc__epoch_self;
    uint64_t e;
    if (__builtin_expect(!r, 0) && !(r = tc__epoch_register()))
        return NULL;
    /* acquire: a section that reads the epoch a writer's synchronize
     * produced sees everything that writer unlinked before it. */
    e = atomic_load_explicit(&tc__epoch_now, memory_order_acquire);
    if (__builtin_expect(tc__epoch_fenceless, 1)) {
        /* The store may pass the loads that follow it in the store buffer;
         * the writer's membarrier() orders them (as urcu-memb does). */
        atomic_store_explicit(&r->ctr, e, memory_order_release);
        atomic_signal_fence(memory_order_seq_cst);
    } else {
        atomic_exchange_explicit(&r->ctr, e, memory_order_seq_cst);
    }
    return r;
}

/** Leave the section entered with `r`. */
static inline void tc__epoch_exit(tc__epoch_rec *r)
{
    atomic_store_explicit(&r->ctr, 0, memory_order_release);
}

/** Wait until every section that began before this call has ended. Never
 *  call it inside a section or with a lock readers' writers need held for
 *  long: it may sleep. Any thread. */
void tc__epoch_synchronize(void);

#endif
