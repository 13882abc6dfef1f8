/*
 * Pipelined forwarding: a client's GET that missed L1, its plain SET and
 * the commands tiercached forwards to Redis are sent from the event loop
 * over the library's asynchronous connections (tc_async_*, tiercache.h),
 * many in flight per connection, instead of one blocking round trip per
 * request on a worker. The library keeps the guarantees of tc_get,
 * tc_set_ex and tc_command (guarded L1 fills, the invalidation in the
 * write's MULTI); what it refuses (strict writes, blocking and unknown
 * commands, SET NX/XX, EXEC, pinned clients) keeps the worker path.
 *
 * Order: a client's requests share one lane (one Redis connection), so
 * Redis runs them in the order sent; a worker job of the client waits
 * until its pipelined requests are answered, and nothing of it is
 * pipelined while one is at a worker (dispatch.c). Replies enter the
 * client's reply order in their slots as before.
 *
 * Threads: loop thread only.
 */
#ifndef TCD_PIPELINE_H
#define TCD_PIPELINE_H

#include "server.h"

/** Open the lanes (srv->async); without them (sentinels, no memory) every
 *  deferred command takes the worker path. Logs why. */
void tcd_pipeline_open(tcd_server *srv);
/** Pipelined requests of one client at most. */
#define TCD_PIPELINE_DEPTH 64
/** May one more of the client's requests be pipelined? Its replies held
 *  plus those in flight (each estimated from its last replies) stay
 *  within --max-output, so a client that does not read cannot make the
 *  daemon hold more than that plus the replies already asked for. */
int tcd_pipeline_room(const tcd_client *cl);
enum { TCD_PIPELINE_NO = 0, TCD_PIPELINE_SENT = 1, TCD_PIPELINE_ANSWERED = 2 };
/** Send the client's job `j` to Redis if the pipeline takes it: SENT (its
 *  reply comes later; the job belongs to the pipeline until then; counted
 *  in cl->ainflight), ANSWERED (a GET L1 answered: the reply is in
 *  j->out, not yet marked done), or NO (run it on a worker). */
int tcd_pipeline_try(tcd_client *cl, tcd_job *j);
/** Shutdown: stop pipelining; run the loop until every pipelined request
 *  is answered (the library times out a silent Redis), then close. */
void tcd_pipeline_close(tcd_server *srv);

#endif
