/* tiercache's own commands: TC.INVALIDATE, TC.SET (tags). */
#include "cmd_impl.h"

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
