/* libFuzzer target for tiercached's request path: the pre-scan, redisReader
 * and inline splitting, fed in two chunks the way a socket delivers them.
 * Run: fuzz_proto -max_total_time=20 corpus/ */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const tcd_limits lim = {.max_args = 64, .max_bulk = 4096,
                               .max_request = 8192, .max_inline = 1024};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tcd_proto *p;
    tcd_scan sc = {0};
    size_t off = 0, split, have;
    tcd_buf out = {0};
    if (!p && !(p = tcd_proto_create()))
        abort();
    /* First byte picks where the input is cut, as two reads. */
    split = size ? (size_t)data[0] * size / 256 : 0;
    have = split;
    while (off < size) {
        tcd_req *r = NULL;
        size_t used = 0;
        const char *err = NULL;
        int rc = tcd_proto_parse(p, &sc, &lim, (const char *)data + off,
                                 have - off, &used, &r, &err);
        if (rc == TCD_PARSE_ERR) {
            if (!err || strncmp(err, "Protocol error: ", 16) != 0)
                abort();
            tcd_reply_error(&out, err);
            break;
        }
        if (rc == TCD_PARSE_TOO_BIG) {
            /* Refused with the limit named; the rest is skipped. */
            if (!err || strncmp(err, "Protocol error: ", 16) != 0 ||
                !strstr(err, " limit of ") || r)
                abort();
            tcd_reply_error(&out, err);
        }
        if (rc == TCD_PARSE_MORE) {
            if (have == size)
                break;
            have = size; /* the second read */
            continue;
        }
        if (used == 0 || used > have - off)
            abort();
        if (r) {
            if (r->argc <= 0 || (size_t)r->argc > lim.max_args)
                abort();
            for (int i = 0; i < r->argc; i++) {
                if (r->argl[i] > lim.max_bulk || r->argv[i][r->argl[i]] != 0)
                    abort();
                tcd_reply_bulk(&out, r->argv[i], r->argl[i]);
            }
            tcd_req_free(r);
        }
        off += used;
        if (have < off)
            have = off;
    }
    tcd_buf_free(&out);
    return 0;
}
