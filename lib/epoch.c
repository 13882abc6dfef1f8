/* Epoch-based reclamation (see epoch.h for the scheme and why ours). */
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "epoch.h"

_Thread_local tc__epoch_rec *tc__epoch_self
    __attribute__((tls_model("initial-exec")));
atomic_uint_fast64_t tc__epoch_now = 1;
int tc__epoch_fenceless;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static tc__epoch_rec *_Atomic registry; /* head; records never leave */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

static int membarrier(int cmd)
{
    return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

/* A thread ended: its record is outside any section and free for reuse. */
static void on_thread_exit(void *p)
{
    tc__epoch_rec *r = p;
    tc__epoch_self = NULL; /* a later destructor that reads re-registers */
    atomic_store_explicit(&r->ctr, 0, memory_order_release);
    atomic_store_explicit(&r->in_use, 0, memory_order_release);
}

/* In a forked child only the forking thread exists: every other record
 * belongs to a thread that is gone. */
static void on_fork_child(void)
{
    pthread_mutex_init(&registry_lock, NULL);
    for (tc__epoch_rec *r = atomic_load(&registry); r;
         r = atomic_load(&r->next)) {
        if (r == tc__epoch_self)
            continue;
        atomic_store(&r->ctr, 0);
        atomic_store(&r->in_use, 0);
    }
}

static void init_once(void)
{
    pthread_key_create(&exit_key, on_thread_exit);
    pthread_atfork(NULL, NULL, on_fork_child);
    tc__epoch_fenceless =
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

void tc__epoch_init(void)
{
    pthread_once(&once, init_once);
}

tc__epoch_rec *tc__epoch_register(void)
{
    tc__epoch_rec *r;
    tc__epoch_init();
    pthread_mutex_lock(&registry_lock);
    for (r = atomic_load(&registry); r; r = atomic_load(&r->next))
        if (!atomic_load_explicit(&r->in_use, memory_order_acquire))
            break;
    if (!r) {
        if (posix_memalign((void **)&r, 64, sizeof(*r)) != 0) {
            pthread_mutex_unlock(&registry_lock);
            return NULL;
        }
        atomic_init(&r->ctr, 0);
        atomic_init(&r->next, atomic_load(&registry));
        atomic_init(&r->in_use, 1);
        atomic_store_explicit(&registry, r, memory_order_release);
    } else {
        atomic_store(&r->in_use, 1);
    }
    pthread_mutex_unlock(&registry_lock);
    if (pthread_setspecific(exit_key, r) != 0) {
        atomic_store(&r->in_use, 0);
        return NULL;
    }
    tc__epoch_self = r;
    return r;
}

void tc__epoch_synchronize(void)
{
    uint64_t e;
    tc__epoch_init();
    e = atomic_fetch_add_explicit(&tc__epoch_now, 1, memory_order_seq_cst) + 1;
    /* Make every reader's published counter (and the loads it ordered
     * before) visible: a full barrier on each CPU running our threads. */
    if (tc__epoch_fenceless) /* registered in init: it cannot fail */
        (void)membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    for (tc__epoch_rec *r = atomic_load_explicit(&registry,
                                                 memory_order_acquire);
         r; r = atomic_load_explicit(&r->next, memory_order_acquire)) {
        unsigned spins = 0;
        for (;;) {
            uint64_t c = atomic_load_explicit(&r->ctr, memory_order_acquire);
            if (c == 0 || c >= e)
                break; /* outside, or entered after the bump */
            if (++spins < 4096) {
                /* A running reader leaves within ~100 ns: spin rather than
                 * give the CPU away (on a busy machine a yield costs ms). */
                cpu_relax();
            } else if (spins < 4096 + 16) {
                sched_yield();
            } else {
                /* A preempted reader: let it run. */
                struct timespec ts = {0, 50000};
                nanosleep(&ts, NULL);
            }
        }
    }
}
