/* tiercache's own commands: TC.INVALIDATE. */
#include "cmd_impl.h"

#include <string.h>

/* ---- TC.INVALIDATE ------------------------------------------------------- */

int tcd_cmd_inval_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    if (r->argc == 2)
        return TCD_DEFER;
    if (r->argc == 3 && (tcd_arg_is(r, 1, "PREFIX") || tcd_arg_is(r, 1, "PATTERN"))) {
        if (tcd_arg_is(r, 1, "PATTERN") && strlen(r->argv[2]) != r->argl[2]) {
            tcd_reply_error(out, "ERR pattern must not contain NUL bytes");
            return TCD_DONE;
        }
        return TCD_DEFER;
    }
    tcd_reply_error(out, "ERR syntax error: TC.INVALIDATE key | PREFIX p | "
                         "PATTERN glob | ALL");
    return TCD_DONE;
}

void tcd_cmd_inval_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_result rc;
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
