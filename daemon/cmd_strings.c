/* String commands: GET MGET SET. */
#include "cmd_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* MGET keys handled with stack arrays up to this many. */
#define SMALL_KEYS 32

/* ---- GET MGET EXISTS ------------------------------------------------------- */

int tcd_cmd_get_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    tc_value *v = NULL;
    if (tc_peek(cl->srv->cache, r->argv[1], r->argl[1], &v) == TC_OK) {
        tcd_reply_value(out, v);
        return TCD_DONE;
    }
    return TCD_DEFER;
}

void tcd_cmd_get_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_value *v = NULL;
    tc_result rc = tc_get(srv->cache, r->argv[1], r->argl[1], &v);
    if (rc == TC_OK)
        tcd_reply_value(out, v);
    else if (rc == TC_NOT_FOUND)
        tcd_reply_nil(out);
    else if (rc == TC_PROTOCOL || rc == TC_TOO_LARGE)
        tcd_cmd_forward_work(srv, r, out); /* WRONGTYPE, a long key: Redis's
                                              own answer */
    else
        tcd_reply_tc_error(out, rc);
}

/* MGET's reply is built whole: refuse one larger than --max-reply rather
 * than let one command (MGET of a big key, 65,536 times) take the memory. */
static int reply_fits(const tcd_server *srv, tc_value *const *vals, size_t n,
                      tcd_buf *out)
{
    size_t bytes = 16;
    for (size_t i = 0; i < n; i++)
        bytes += 24 + (vals[i] ? tc_value_len(vals[i]) : 0);
    if (bytes <= srv->cfg->max_reply)
        return 1;
    tcd_reply_errorf(out, "ERR MGET reply of %zu bytes exceeds the "
                          "--max-reply limit of %zu bytes", bytes,
                     srv->cfg->max_reply);
    return 0;
}

int tcd_cmd_mget_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    tc_value *small[SMALL_KEYS] = {0};
    int n = r->argc - 1;
    if (n > SMALL_KEYS)
        return TCD_DEFER;
    /* All from L1 or none: a partial hit goes to tc_mget, which counts
     * every key once (peeking them one by one counted the hits twice). */
    if (tc_mpeek(cl->srv->cache, (size_t)n,
                 (const void *const *)(r->argv + 1), r->argl + 1,
                 small) != TC_OK)
        return TCD_DEFER;
    if (!reply_fits(cl->srv, small, (size_t)n, out)) {
        for (int i = 0; i < n; i++)
            tc_value_release(small[i]);
        return TCD_DONE;
    }
    tcd_reply_array(out, n);
    for (int i = 0; i < n; i++)
        tcd_reply_value(out, small[i]);
    return TCD_DONE;
}

void tcd_cmd_mget_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    size_t n = (size_t)r->argc - 1;
    tc_value **vals = calloc(n, sizeof(*vals));
    tc_result *res = calloc(n, sizeof(*res));
    tc_result rc;
    size_t i;
    if (!vals || !res) {
        free(vals);
        free(res);
        tcd_reply_error(out, "ERR out of memory");
        return;
    }
    rc = tc_mget(srv->cache, n, (const void *const *)(r->argv + 1),
                 r->argl + 1, vals, res);
    for (i = 0; i < n; i++)
        if (res[i] != TC_OK && res[i] != TC_NOT_FOUND)
            break;
    if (i < n || (rc != TC_OK && rc != TC_NOT_FOUND)) {
        /* Never a silent nil for a key that could not be looked up. */
        tcd_reply_tc_error(out, i < n ? res[i] : rc);
    } else if (reply_fits(srv, vals, n, out)) {
        tcd_reply_array(out, (long long)n);
        for (i = 0; i < n; i++) {
            if (res[i] == TC_OK && vals[i]) {
                tcd_reply_bulk(out, tc_value_data(vals[i]),
                               tc_value_len(vals[i]));
            } else {
                tcd_reply_nil(out);
            }
        }
    }
    for (i = 0; i < n; i++)
        tc_value_release(vals[i]);
    free(vals);
    free(res);
}
/* ---- SET ----------------------------------------------------------------- */

int tcd_set_parse(const tcd_req *r, tc_set_opts *o, tcd_buf *out)
{
    int have_expire = 0;
    memset(o, 0, sizeof(*o));
    for (int i = 3; i < r->argc; i++) {
        if (tcd_arg_is(r, i, "NX") && !(o->flags & TC_SET_XX)) {
            o->flags |= TC_SET_NX;
        } else if (tcd_arg_is(r, i, "XX") && !(o->flags & TC_SET_NX)) {
            o->flags |= TC_SET_XX;
        } else if ((tcd_arg_is(r, i, "EX") || tcd_arg_is(r, i, "PX")) &&
                   !have_expire && i + 1 < r->argc) {
            int ex = tcd_arg_is(r, i, "EX");
            long long v;
            if (tcd_arg_ll(r, i + 1, &v) != 0) {
                if (out)
                    tcd_reply_error(out, "ERR value is not an integer or out "
                                         "of range");
                return -1;
            }
            if (v <= 0 || (ex && v > LLONG_MAX / 1000)) {
                if (out)
                    tcd_reply_error(out, "ERR invalid expire time in 'set' "
                                         "command");
                return -1;
            }
            o->l2_ttl_ms = (uint64_t)v * (ex ? 1000u : 1u);
            have_expire = 1;
            i++;
        } else if (tcd_arg_is(r, i, "KEEPTTL") || tcd_arg_is(r, i, "GET") ||
                   tcd_arg_is(r, i, "EXAT") || tcd_arg_is(r, i, "PXAT")) {
            if (out)
                tcd_reply_errorf(out, "ERR SET option '%s' is not supported "
                                      "by tiercached", r->argv[i]);
            return -1;
        } else {
            if (out)
                tcd_reply_error(out, "ERR syntax error");
            return -1;
        }
    }
    if (!have_expire)
        o->l2_ttl_ms = TC_TTL_NONE; /* as Redis: kept until deleted (L1
                                       still keeps it for its own TTL) */
    return 0;
}

int tcd_cmd_set_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    (void)r;
    (void)out;
    return TCD_DEFER;
}

void tcd_cmd_set_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_set_opts o;
    tc_result rc;
    /* Options tc_set_ex() does not take (GET, KEEPTTL, EXAT, PXAT) and
     * syntax errors go to Redis as they are: its reply, its error text. */
    if (tcd_set_parse(r, &o, NULL) != 0) {
        tcd_cmd_forward_work(srv, r, out);
        return;
    }
    rc = tc_set_ex(srv->cache, r->argv[1], r->argl[1], r->argv[2], r->argl[2],
                   &o);
    if (rc == TC_OK) {
        tcd_reply_status(out, "OK");
    } else if (rc == TC_NOT_STORED) {
        tcd_reply_nil(out);
    } else {
        tcd_reply_tc_error(out, rc);
    }
}

