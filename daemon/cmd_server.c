/* Server commands: INFO (Redis's, plus the tiercache section). */
#include "cmd_impl.h"

#include "stats.h"

/* Redis's INFO with "# Tiercache" added; while Redis does not answer, the
 * daemon's own view (its sections say what it knows), never an error. */
void tcd_cmd_info_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_reply *rep = NULL;
    tc_result rc;
    int ours = r->argc >= 2;
    for (int i = 1; i < r->argc && ours; i++)
        ours = tcd_arg_is(r, i, "tiercache") || tcd_arg_is(r, i, "tiercached");
    if (ours) {
        tcd_stats_info_redis(srv, r, "", 0, out); /* ours alone: no Redis */
        return;
    }
    rc = tc_command(srv->cache, r->argc, (const char *const *)r->argv, r->argl,
                    &rep);
    if (rc == TC_OK && tc_reply_type(rep) == TC_REPLY_STRING)
        tcd_stats_info_redis(srv, r, tc_reply_str(rep), tc_reply_len(rep),
                             out);
    else if (rc == TC_OK && tc_reply_type(rep) == TC_REPLY_ERROR)
        tcd_reply_redis(out, rep);
    else
        tcd_stats_info(srv, r, out);
    tc_reply_free(rep);
}
