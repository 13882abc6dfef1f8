/* Generic key commands: EXISTS DEL TTL PTTL. */
#include "cmd_impl.h"

#include <stdlib.h>

int tcd_cmd_exists_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    for (int i = 1; i < r->argc; i++) {
        tc_value *v = NULL;
        if (tc_peek(cl->srv->cache, r->argv[i], r->argl[i], &v) != TC_OK)
            return TCD_DEFER;
        tc_value_release(v);
    }
    tcd_reply_int(out, r->argc - 1);
    return TCD_DONE;
}

/* Not all in L1: Redis counts them (any type, repeated keys included). */
void tcd_cmd_exists_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tcd_cmd_forward_work(srv, r, out);
}

void tcd_cmd_del_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    uint64_t deleted = 0;
    tc_result rc = tc_mdel(srv->cache, (size_t)r->argc - 1,
                           (const void *const *)(r->argv + 1), r->argl + 1,
                           &deleted);
    if (rc == TC_OK) {
        tcd_reply_int(out, (long long)deleted);
    } else {
        tcd_reply_tc_error(out, rc);
    }
}

static void ttl_common(tcd_server *srv, tcd_req *r, tcd_buf *out, int ms)
{
    int64_t ttl = 0;
    tc_result rc = tc_pttl(srv->cache, r->argv[1], r->argl[1], &ttl);
    if (rc == TC_NOT_FOUND)
        tcd_reply_int(out, -2);
    else if (rc != TC_OK)
        tcd_reply_tc_error(out, rc);
    else if (ttl < 0)
        tcd_reply_int(out, -1);
    else
        tcd_reply_int(out, ms ? ttl : (ttl + 500) / 1000);
}

void tcd_cmd_ttl_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    ttl_common(srv, r, out, 0);
}

void tcd_cmd_pttl_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    ttl_common(srv, r, out, 1);
}
