/*
 * Private to the command table (commands.c) and the command families
 * (cmd_conn.c, cmd_strings.c, cmd_keys.c, cmd_server.c, cmd_tc.c): the
 * handlers the table names and the argument helpers they share. Loop
 * handlers (tcd_loop_fn) run on the event loop, work handlers (tcd_work_fn)
 * on a worker thread; see commands.h.
 */
#ifndef TCD_CMD_IMPL_H
#define TCD_CMD_IMPL_H

#include "commands.h"

/** 1 when argument i equals `word`, ignoring case. */
int tcd_arg_is(const tcd_req *r, int i, const char *word);
/** Redis's string2ll on argument i: 0 and *out, or -1. */
int tcd_arg_ll(const tcd_req *r, int i, long long *out);
/** Bulk reply with the value's bytes, then release `v`. */
void tcd_reply_value(tcd_buf *out, tc_value *v);

/* cmd_conn.c */
int tcd_cmd_ping(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_ping_work(tcd_server *srv, tcd_req *r, tcd_buf *out);
int tcd_cmd_echo(tcd_client *cl, tcd_req *r, tcd_buf *out);
int tcd_cmd_select(tcd_client *cl, tcd_req *r, tcd_buf *out);
int tcd_cmd_quit(tcd_client *cl, tcd_req *r, tcd_buf *out);
int tcd_cmd_auth(tcd_client *cl, tcd_req *r, tcd_buf *out);
int tcd_cmd_hello(tcd_client *cl, tcd_req *r, tcd_buf *out);
int tcd_cmd_client(tcd_client *cl, tcd_req *r, tcd_buf *out);
int tcd_cmd_reset(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_reset_work(tcd_server *srv, tcd_req *r, tcd_buf *out);

/* cmd_strings.c */
int tcd_cmd_get_loop(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_get_work(tcd_server *srv, tcd_req *r, tcd_buf *out);
int tcd_cmd_mget_loop(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_mget_work(tcd_server *srv, tcd_req *r, tcd_buf *out);
/** Parse SET's options into `o`: 0, or -1 after writing the error to
 *  `out` (when not NULL). Options tc_set_ex() does not take are errors. */
int tcd_set_parse(const tcd_req *r, tc_set_opts *o, tcd_buf *out);
int tcd_cmd_set_loop(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_set_work(tcd_server *srv, tcd_req *r, tcd_buf *out);

/* cmd_keys.c */
int tcd_cmd_exists_loop(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_exists_work(tcd_server *srv, tcd_req *r, tcd_buf *out);
void tcd_cmd_del_work(tcd_server *srv, tcd_req *r, tcd_buf *out);
void tcd_cmd_ttl_work(tcd_server *srv, tcd_req *r, tcd_buf *out);
void tcd_cmd_pttl_work(tcd_server *srv, tcd_req *r, tcd_buf *out);

/* cmd_tc.c */
int tcd_cmd_inval_loop(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_inval_work(tcd_server *srv, tcd_req *r, tcd_buf *out);
int tcd_cmd_tcset_loop(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_tcset_work(tcd_server *srv, tcd_req *r, tcd_buf *out);
int tcd_cmd_ratelimit_loop(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_ratelimit_work(tcd_server *srv, tcd_req *r, tcd_buf *out);
int tcd_cmd_setmany_loop(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_setmany_work(tcd_server *srv, tcd_req *r, tcd_buf *out);

/* cmd_forward.c */
/** Encode a library reply as Redis sent it. */
void tcd_reply_redis(tcd_buf *out, const tc_reply *r);
/** Answer a tc_command*() result: the reply (freed), or the failure. */
void tcd_forward_reply(tcd_buf *out, tc_result rc, tc_reply *rep);
/** Run the request on Redis through tc_command() and answer its reply. */
void tcd_cmd_forward_work(tcd_server *srv, tcd_req *r, tcd_buf *out);

/* cmd_multi.c: MULTI EXEC DISCARD (client state; see commands.h) */
int tcd_cmd_multi(tcd_client *cl, tcd_req *r, tcd_buf *out);
int tcd_cmd_exec(tcd_client *cl, tcd_req *r, tcd_buf *out);
int tcd_cmd_discard(tcd_client *cl, tcd_req *r, tcd_buf *out);
int tcd_cmd_watch(tcd_client *cl, tcd_req *r, tcd_buf *out);
void tcd_cmd_exec_work(tcd_server *srv, tcd_req *r, tcd_buf *out);

/* cmd_server.c */
void tcd_cmd_info_work(tcd_server *srv, tcd_req *r, tcd_buf *out);

#endif
