/*
 * Values handed out (struct tc_value, l1.h): standalone copies and the
 * release of any value, L1 entries included.
 *
 * An L1 hit copies a small value into a new tc_value, and the caller
 * releases it soon after: malloc() and free() cost about as much as the
 * lookup itself. Small copies therefore come from a per-thread pool (one
 * free list per size class, at most POOL_MAX buffers each) and return to
 * the pool of whichever thread releases them. A buffer that changes
 * threads travels with its value, under the caller's own synchronisation,
 * as any malloc'd block does; the lists themselves are only ever touched by
 * their own thread, so they need no atomics. A full list, a thread that is
 * exiting and every value larger than the largest class use malloc/free.
 * A thread's lists are freed when it exits (pthread key destructor).
 *
 * Marks: an L1 entry has klen > 0 and its expiry in `meta`; a standalone
 * value has klen == 0 and in `meta` 0 (malloc'd) or its class + 1 (pooled).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "l1.h"

#if defined(__SANITIZE_ADDRESS__)
#define TC__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TC__ASAN 1
#endif
#endif
#ifdef TC__ASAN
/* A pooled buffer is poisoned past its list link: a value used after its
 * release is still reported, as it would be after free(). */
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define POOL_CLASSES 4 /* value capacity 32 << class: 32, 64, 128, 256 B */
#define POOL_MAX 16    /* buffers kept per class and thread */
_Static_assert((32u << (POOL_CLASSES - 1)) == TC__L1_COPY_MAX,
               "the largest class holds any copied-out value");

enum { POOL_UNUSED = 0, POOL_LIVE, POOL_DEAD };

typedef struct pool {
    struct tc_value *head[POOL_CLASSES]; /* linked through `next` */
    unsigned char n[POOL_CLASSES];
    unsigned char state;
} pool;

static _Thread_local pool tls_pool __attribute__((tls_model("initial-exec")));
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_key_t pool_key;

static inline size_t buf_size(unsigned cls)
{
    return offsetof(struct tc_value, data) + ((size_t)32 << cls);
}

/* The thread is exiting: free its buffers; later releases use free(). */
static void pool_exit(void *arg)
{
    pool *p = arg;
    for (unsigned c = 0; c < POOL_CLASSES; c++) {
        while (p->head[c]) {
            struct tc_value *v = p->head[c];
            UNPOISON(v, buf_size(c));
            p->head[c] = v->next;
            free(v);
        }
        p->n[c] = 0;
    }
    p->state = POOL_DEAD;
}

static void pool_key_create(void)
{
    if (pthread_key_create(&pool_key, pool_exit) != 0)
        pool_key = (pthread_key_t)-1; /* never pool: see pool_put() */
}

static inline unsigned class_of(size_t vlen)
{
    return vlen <= 32 ? 0 : vlen <= 64 ? 1 : vlen <= 128 ? 2 : 3;
}

static void pool_put(struct tc_value *v, unsigned cls)
{
    pool *p = &tls_pool;
    if (p->n[cls] >= POOL_MAX || p->state == POOL_DEAD) {
        free(v);
        return;
    }
    if (p->state == POOL_UNUSED) {
        /* The destructor runs only for a non-NULL value. */
        pthread_once(&pool_once, pool_key_create);
        if (pool_key == (pthread_key_t)-1 ||
            pthread_setspecific(pool_key, p) != 0) {
            free(v);
            return;
        }
        p->state = POOL_LIVE;
    }
    v->next = p->head[cls];
    p->head[cls] = v;
    p->n[cls]++;
    POISON((char *)v + sizeof(v->prev) + sizeof(v->next),
           buf_size(cls) - sizeof(v->prev) - sizeof(v->next));
}

void tc_value_release(tc_value *v)
{
    uint_fast64_t mark;
    if (!v)
        return;
    /* A holder that sees refs == 1 is the only one: nobody can add a
     * reference (only holders do), so no locked instruction is needed. */
    if (atomic_load_explicit(&v->refs, memory_order_acquire) != 1 &&
        atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    mark = atomic_load_explicit(&v->meta, memory_order_relaxed);
    if (v->klen == 0 && mark != 0)
        pool_put(v, (unsigned)mark - 1);
    else
        free(v);
}

const void *tc_value_data(const tc_value *v)
{
    return v ? v->data + v->klen : NULL;
}

size_t tc_value_len(const tc_value *v)
{
    return v ? v->vlen : 0;
}

/* memcpy() for the values copied out on a hit (n <= TC__L1_COPY_MAX) in
 * fixed-size moves, no loop: with a length it cannot see, the compiler
 * otherwise inlines `rep movsq` (a loop becomes one too), whose start-up
 * alone costs more than copying 64 bytes. */
static inline void copy_short(char *d, const char *s, size_t n)
{
    if (n >= 16) {
        /* 16-byte blocks cover [0, n - 16) (k < n), then the last 16. */
        size_t k = (n - 1) & ~(size_t)15;
        char *dl = d + n - 16;
        const char *sl = s + n - 16;
        if (k & 128) {
            memcpy(d, s, 128);
            d += 128, s += 128;
        }
        if (k & 64) {
            memcpy(d, s, 64);
            d += 64, s += 64;
        }
        if (k & 32) {
            memcpy(d, s, 32);
            d += 32, s += 32;
        }
        if (k & 16)
            memcpy(d, s, 16);
        memcpy(dl, sl, 16);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    }
}

_Static_assert(TC__L1_COPY_MAX <= 256, "copy_short() covers up to 256 B");

struct tc_value *tc__value_new(const void *val, size_t vlen)
{
    struct tc_value *v;
    uint_fast64_t mark = 0;
    if (vlen > UINT32_MAX)
        return NULL;
    if (vlen <= TC__L1_COPY_MAX) {
        unsigned cls = class_of(vlen);
        pool *p = &tls_pool;
        if ((v = p->head[cls])) {
            UNPOISON(v, buf_size(cls));
            p->head[cls] = v->next;
            p->n[cls]--;
        } else if (!(v = malloc(buf_size(cls)))) {
            return NULL;
        }
        mark = cls + 1;
    } else if (!(v = malloc(offsetof(struct tc_value, data) + vlen))) {
        return NULL;
    }
    v->prev = v->next = NULL;
    atomic_init(&v->meta, mark);
    atomic_init(&v->refs, 1);
    v->vlen = (uint32_t)vlen;
    v->klen = 0;
    if (vlen <= TC__L1_COPY_MAX)
        copy_short(v->data, val, vlen);
    else
        memcpy(v->data, val, vlen);
    return v;
}
