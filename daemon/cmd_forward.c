/*
 * Forwarding: every command tiercached does not answer itself goes to Redis
 * through tc_command() (the library keeps every L1 coherent with what it
 * wrote), and Redis's reply is sent back as Redis gave it. Runs on a worker.
 */
#include "cmd_impl.h"

#include <stdlib.h>

void tcd_reply_redis(tcd_buf *out, const tc_reply *r)
{
    switch (tc_reply_type(r)) {
    case TC_REPLY_STRING:
        tcd_reply_bulk(out, tc_reply_str(r), tc_reply_len(r));
        break;
    case TC_REPLY_STATUS:
        tcd_buf_add(out, "+", 1);
        tcd_buf_add(out, tc_reply_str(r), tc_reply_len(r));
        tcd_buf_add(out, "\r\n", 2);
        break;
    case TC_REPLY_ERROR:
        tcd_buf_add(out, "-", 1);
        tcd_buf_add(out, tc_reply_str(r), tc_reply_len(r));
        tcd_buf_add(out, "\r\n", 2);
        break;
    case TC_REPLY_INTEGER:
        tcd_reply_int(out, tc_reply_integer(r));
        break;
    case TC_REPLY_ARRAY:
        tcd_reply_array(out, (long long)tc_reply_elements(r));
        for (size_t i = 0; i < tc_reply_elements(r); i++)
            tcd_reply_redis(out, tc_reply_element(r, i));
        break;
    case TC_REPLY_NIL:
    default:
        if (tc_reply_is_nil_array(r))
            tcd_buf_add(out, "*-1\r\n", 5);
        else
            tcd_reply_nil(out);
        break;
    }
}

void tcd_forward_reply(tcd_buf *out, tc_result rc, tc_reply *rep)
{
    if (rc == TC_OK) {
        tcd_reply_redis(out, rep);
        tc_reply_free(rep);
    } else if (rc == TC_BAD_ARGUMENT) {
        tcd_reply_errorf(out, "ERR tiercached: %s", tc_errmsg());
    } else {
        tcd_reply_tc_error(out, rc);
    }
}

void tcd_cmd_forward_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_reply *rep = NULL;
    tc_result rc = tc_command(srv->cache, r->argc,
                              (const char *const *)r->argv, r->argl, &rep);
    tcd_forward_reply(out, rc, rep);
}
