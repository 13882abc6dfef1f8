/* zstd compression of L2 values: see compress.h for the format. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "cache.h"
#include "compress.h"

#define LEVEL 3 /* zstd's default: see README, "Compression", for costs */

/* One compression and one decompression context per thread, freed by the
 * key's destructor when the thread exits. */
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;
static pthread_key_t cctx_key, dctx_key;
static int keys_ok;

static void free_cctx(void *p) { ZSTD_freeCCtx(p); }
static void free_dctx(void *p) { ZSTD_freeDCtx(p); }

static void make_keys(void)
{
    keys_ok = pthread_key_create(&cctx_key, free_cctx) == 0 &&
              pthread_key_create(&dctx_key, free_dctx) == 0;
}

static ZSTD_CCtx *cctx(void)
{
    ZSTD_CCtx *x;
    pthread_once(&keys_once, make_keys);
    if (!keys_ok)
        return NULL;
    if (!(x = pthread_getspecific(cctx_key)) && (x = ZSTD_createCCtx()))
        pthread_setspecific(cctx_key, x);
    return x;
}

static ZSTD_DCtx *dctx(void)
{
    ZSTD_DCtx *x;
    pthread_once(&keys_once, make_keys);
    if (!keys_ok)
        return NULL;
    if (!(x = pthread_getspecific(dctx_key)) && (x = ZSTD_createDCtx()))
        pthread_setspecific(dctx_key, x);
    return x;
}

/* Does a stored value carry the frame header? */
static int framed(const unsigned char *v, size_t len)
{
    return len >= TC__Z_HEADER && !memcmp(v, TC__Z_MARKER, 4) &&
           (v[4] == 'z' || v[4] == 'p');
}

tc_result tc__z_encode(tc_cache *c, const void *val, size_t vlen,
                       const void **out, size_t *outlen, void **owned)
{
    size_t min = c->cfg.compress_min;
    unsigned char *buf;
    *out = val, *outlen = vlen, *owned = NULL;
    if (!min)
        return TC_OK; /* off: values are stored as given */
    if (vlen >= min) {
        size_t cap = TC__Z_HEADER + ZSTD_compressBound(vlen), n;
        ZSTD_CCtx *x = cctx();
        if (!x || !(buf = malloc(cap)))
            return tc__fail(TC_NO_MEMORY, "out of memory compressing");
        n = ZSTD_compressCCtx(x, buf + TC__Z_HEADER, cap - TC__Z_HEADER, val,
                              vlen, LEVEL);
        if (!ZSTD_isError(n) && TC__Z_HEADER + n < vlen) {
            memcpy(buf, TC__Z_MARKER, 4);
            buf[4] = 'z';
            *out = *owned = buf, *outlen = TC__Z_HEADER + n;
            atomic_fetch_add_explicit(&c->values_compressed, 1,
                                      memory_order_relaxed);
            return TC_OK;
        }
        free(buf); /* not worth it: store it plain */
    }
    if (!framed(val, vlen))
        return TC_OK;
    /* Plain, but it would read as a frame: mark it plain. */
    if (!(buf = malloc(TC__Z_HEADER + vlen)))
        return tc__fail(TC_NO_MEMORY, "out of memory");
    memcpy(buf, TC__Z_MARKER, 4);
    buf[4] = 'p';
    memcpy(buf + TC__Z_HEADER, val, vlen);
    *out = *owned = buf, *outlen = TC__Z_HEADER + vlen;
    return TC_OK;
}

tc_result tc__z_decode(tc_cache *c, const void *val, size_t vlen,
                       const void **out, size_t *outlen, void **owned)
{
    const unsigned char *v = val;
    unsigned long long size;
    size_t n;
    ZSTD_DCtx *x;
    void *buf;
    *out = val, *outlen = vlen, *owned = NULL;
    if (!framed(v, vlen))
        return TC_OK;
    if (!c->cfg.compress_min)
        return tc__fail(TC_COMPRESSED,
                        "value stored compressed by an instance with "
                        "compress_min_bytes set; set it here to read it");
    if (v[4] == 'p') {
        *out = v + TC__Z_HEADER, *outlen = vlen - TC__Z_HEADER;
        return TC_OK;
    }
    size = ZSTD_getFrameContentSize(v + TC__Z_HEADER, vlen - TC__Z_HEADER);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
        return tc__fail(TC_CORRUPT, "compressed value: not a zstd frame "
                                    "with its content size");
    if (size > c->cfg.max_value)
        return tc__fail(TC_TOO_LARGE,
                        "compressed value would decompress to %llu bytes, "
                        "above max_value_bytes %zu",
                        size, c->cfg.max_value);
    if (!(x = dctx()) || !(buf = malloc(size ? (size_t)size : 1)))
        return tc__fail(TC_NO_MEMORY, "out of memory decompressing");
    /* The buffer holds exactly the announced size: a frame that inflates
     * to more fails here instead of allocating more. */
    n = ZSTD_decompressDCtx(x, buf, (size_t)size, v + TC__Z_HEADER,
                            vlen - TC__Z_HEADER);
    if (ZSTD_isError(n) || n != size) {
        free(buf);
        return tc__fail(TC_CORRUPT, "compressed value does not decode: %s",
                        ZSTD_isError(n) ? ZSTD_getErrorName(n)
                                        : "size differs from its header");
    }
    atomic_fetch_add_explicit(&c->values_decompressed, 1,
                              memory_order_relaxed);
    *out = *owned = buf, *outlen = n;
    return TC_OK;
}
