/* tiercache's own commands: TC.INVALIDATE, TC.SET (tags), TC.RATELIMIT,
 * TC.SETMANY. */
#include "cmd_impl.h"

#include <stdlib.h>
#include <string.h>

/* Arguments from `from` on, as tags: 1 when none holds a NUL byte (tags
 * are C strings in the library), else an error is answered. */
static int tags_ok(const tcd_req *r, int from, tcd_buf *out)
{
    for (int i = from; i < r->argc; i++)
        if (strlen(r->argv[i]) != r->argl[i]) {
            tcd_reply_error(out, "ERR tags must not contain NUL bytes");
            return 0;
        }
    return 1;
}

/* ---- TC.INVALIDATE ------------------------------------------------------- */

int tcd_cmd_inval_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    if (r->argc == 2)
        return TCD_DEFER;
    if (r->argc >= 3 && tcd_arg_is(r, 1, "TAGS"))
        return tags_ok(r, 2, out) ? TCD_DEFER : TCD_DONE;
    if (r->argc == 3 && (tcd_arg_is(r, 1, "PREFIX") || tcd_arg_is(r, 1, "PATTERN"))) {
        if (tcd_arg_is(r, 1, "PATTERN") && strlen(r->argv[2]) != r->argl[2]) {
            tcd_reply_error(out, "ERR pattern must not contain NUL bytes");
            return TCD_DONE;
        }
        return TCD_DEFER;
    }
    tcd_reply_error(out, "ERR syntax error: TC.INVALIDATE key | PREFIX p | "
                         "PATTERN glob | TAGS tag [tag ...] | ALL");
    return TCD_DONE;
}

void tcd_cmd_inval_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_result rc;
    if (r->argc >= 3 && tcd_arg_is(r, 1, "TAGS")) {
        uint64_t deleted = 0;
        rc = tc_invalidate_tags(srv->cache, (size_t)(r->argc - 2),
                                (const char *const *)(r->argv + 2), &deleted);
        if (rc == TC_OK)
            tcd_reply_int(out, (long long)deleted);
        else
            tcd_reply_tc_error(out, rc);
        return;
    }
    if (r->argc == 2 && tcd_arg_is(r, 1, "ALL"))
        rc = tc_invalidate_all(srv->cache);
    else if (r->argc == 2)
        rc = tc_del(srv->cache, r->argv[1], r->argl[1]);
    else if (r->argc == 3 && tcd_arg_is(r, 1, "PREFIX"))
        rc = tc_invalidate_prefix(srv->cache, r->argv[2], r->argl[2]);
    else if (r->argc == 3 && tcd_arg_is(r, 1, "PATTERN") &&
             strlen(r->argv[2]) == r->argl[2])
        rc = tc_invalidate_pattern(srv->cache, r->argv[2]);
    else {
        tcd_cmd_inval_loop(NULL, r, out); /* writes the right error */
        return;
    }
    if (rc == TC_OK)
        tcd_reply_status(out, "OK");
    else
        tcd_reply_tc_error(out, rc);
}

/* ---- TC.SET key value [EX s | PX ms] TAGS tag [tag ...] ------------------ */

/* Where the tags start (the argument after TAGS), and the TTL in ms (0:
 * the default); -1 after answering a syntax error. */
static int tcset_parse(const tcd_req *r, uint64_t *ttl_ms, tcd_buf *out)
{
    int i = 3;
    long long n;
    *ttl_ms = 0;
    if (i < r->argc && (tcd_arg_is(r, i, "EX") || tcd_arg_is(r, i, "PX"))) {
        int ex = tcd_arg_is(r, i, "EX");
        if (i + 1 >= r->argc || tcd_arg_ll(r, i + 1, &n) != 0 || n <= 0 ||
            (ex && n > (long long)(TC_TTL_MAX_MS / 1000)) ||
            (uint64_t)n > TC_TTL_MAX_MS) {
            tcd_reply_error(out, "ERR invalid expire time in 'tc.set' command");
            return -1;
        }
        *ttl_ms = (uint64_t)n * (ex ? 1000 : 1);
        i += 2;
    }
    if (i + 1 >= r->argc || !tcd_arg_is(r, i, "TAGS")) {
        tcd_reply_error(out, "ERR syntax error: TC.SET key value [EX s | PX "
                             "ms] TAGS tag [tag ...]");
        return -1;
    }
    return tags_ok(r, i + 1, out) ? i + 1 : -1;
}

int tcd_cmd_tcset_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    uint64_t ttl;
    (void)cl;
    return tcset_parse(r, &ttl, out) < 0 ? TCD_DONE : TCD_DEFER;
}

void tcd_cmd_tcset_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    uint64_t ttl;
    int t = tcset_parse(r, &ttl, out);
    tc_set_opts o = {0, 0, 0};
    tc_result rc;
    if (t < 0)
        return;
    o.l2_ttl_ms = ttl;
    rc = tc_set_tagged(srv->cache, r->argv[1], r->argl[1], r->argv[2],
                       r->argl[2], &o, (size_t)(r->argc - t),
                       (const char *const *)(r->argv + t));
    if (rc == TC_OK)
        tcd_reply_status(out, "OK");
    else
        tcd_reply_tc_error(out, rc);
}

/* ---- TC.RATELIMIT key limit window_ms [SLIDING|FIXED] -------------------- */

/* Arguments of TC.RATELIMIT; 0, or -1 with the error written to `out`. */
static int ratelimit_args(tcd_req *r, tcd_buf *out, uint64_t *limit,
                          uint64_t *window_ms, tc_rate_algo *algo)
{
    long long l, w;
    if (r->argc != 4 && r->argc != 5) {
        tcd_reply_error(out, "ERR wrong number of arguments for "
                             "'tc.ratelimit' command");
        return -1;
    }
    if (tcd_arg_ll(r, 2, &l) || l < 1 || l > (long long)TC_RATE_LIMIT_MAX) {
        tcd_reply_errorf(out, "ERR limit must be an integer in 1..%u",
                         TC_RATE_LIMIT_MAX);
        return -1;
    }
    if (tcd_arg_ll(r, 3, &w) || w < 1 || (unsigned long long)w > TC_TTL_MAX_MS) {
        tcd_reply_errorf(out, "ERR window_ms must be an integer in 1..%llu",
                         (unsigned long long)TC_TTL_MAX_MS);
        return -1;
    }
    *algo = TC_RATE_SLIDING;
    if (r->argc == 5) {
        if (tcd_arg_is(r, 4, "FIXED"))
            *algo = TC_RATE_FIXED;
        else if (!tcd_arg_is(r, 4, "SLIDING")) {
            tcd_reply_error(out, "ERR syntax error: TC.RATELIMIT key limit "
                                 "window_ms [SLIDING|FIXED]");
            return -1;
        }
    }
    *limit = (uint64_t)l, *window_ms = (uint64_t)w;
    return 0;
}

int tcd_cmd_ratelimit_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    uint64_t limit, window_ms;
    tc_rate_algo algo;
    (void)cl;
    return ratelimit_args(r, out, &limit, &window_ms, &algo) ? TCD_DONE
                                                              : TCD_DEFER;
}

void tcd_cmd_ratelimit_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    uint64_t limit, window_ms;
    tc_rate_algo algo;
    tc_rate_result rr;
    tc_result rc;
    if (ratelimit_args(r, out, &limit, &window_ms, &algo))
        return;
    rc = tc_rate_limit_ex(srv->cache, r->argv[1], r->argl[1], limit,
                          window_ms, algo, &rr);
    if (rc != TC_OK) {
        tcd_reply_tc_error(out, rc);
        return;
    }
    tcd_reply_array(out, 4);
    tcd_reply_int(out, rr.allowed);
    tcd_reply_int(out, (long long)rr.remaining);
    tcd_reply_int(out, (long long)rr.reset_ms);
    tcd_reply_int(out, rr.fallback);
}

/* ---- TC.SETMANY ttl_ms key value [key value ...] -------------------------- */

int tcd_cmd_setmany_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    long long ttl;
    (void)cl;
    if (r->argc < 4 || (r->argc - 2) % 2) {
        tcd_reply_error(out, "ERR wrong number of arguments for "
                             "'tc.setmany' command");
        return TCD_DONE;
    }
    if (tcd_arg_ll(r, 1, &ttl) || ttl < 0 ||
        (unsigned long long)ttl > TC_TTL_MAX_MS) {
        tcd_reply_error(out, "ERR ttl_ms must be 0 (default) or a positive "
                             "integer of at most ten years");
        return TCD_DONE;
    }
    return TCD_DEFER;
}

void tcd_cmd_setmany_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    size_t n = (size_t)(r->argc - 2) / 2;
    const void **k = malloc(n * sizeof(*k)), **v = malloc(n * sizeof(*v));
    size_t *kl = malloc(n * sizeof(*kl)), *vl = malloc(n * sizeof(*vl));
    long long ttl = 0;
    tc_result rc;
    if (!k || !v || !kl || !vl) {
        tcd_reply_tc_error(out, TC_NO_MEMORY);
        goto out;
    }
    tcd_arg_ll(r, 1, &ttl); /* checked on the loop */
    for (size_t i = 0; i < n; i++) {
        k[i] = r->argv[2 + 2 * i], kl[i] = r->argl[2 + 2 * i];
        v[i] = r->argv[3 + 2 * i], vl[i] = r->argl[3 + 2 * i];
    }
    /* One batch: one transaction, one invalidation message. */
    rc = tc_set_many(srv->cache, n, k, kl, v, vl, (uint64_t)ttl, n, NULL,
                     NULL);
    if (rc == TC_OK)
        tcd_reply_int(out, (long long)n);
    else
        tcd_reply_tc_error(out, rc);
out:
    free(k), free(v), free(kl), free(vl);
}
