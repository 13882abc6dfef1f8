/*
 * The command table: what tiercached answers, and where. A command's `loop`
 * handler runs on the event loop and must not block (tc_peek, connection
 * state); it may answer, or hand the request to its `work` handler, which
 * runs on a worker thread and may call any blocking library function.
 * A `work` handler sees only the request, the reply buffer and the server's
 * read-only parts.
 * The table is in commands.c; the handlers by family in cmd_conn.c,
 * cmd_strings.c, cmd_keys.c, cmd_server.c and cmd_tc.c.
 */
#ifndef TCD_COMMANDS_H
#define TCD_COMMANDS_H

#include "buf.h"
#include "proto.h"
#include "server.h"

enum { TCD_DONE = 0, TCD_DEFER = 1, TCD_CLOSE = 2 };

enum {
    TCD_CMD_NOAUTH = 1 << 0,   /* allowed before AUTH */
    TCD_CMD_WRITE = 1 << 1,
    TCD_CMD_READONLY = 1 << 2,
    TCD_CMD_FAST = 1 << 3,
    TCD_CMD_TXN = 1 << 4       /* not queued by MULTI, always on the loop:
                                  MULTI EXEC DISCARD WATCH QUIT RESET */
};

typedef int (*tcd_loop_fn)(tcd_client *cl, tcd_req *req, tcd_buf *out);
typedef void (*tcd_work_fn)(tcd_server *srv, tcd_req *req, tcd_buf *out);

typedef struct tcd_cmd {
    const char *name;     /* lower case, as Redis names it in errors */
    int arity;            /* Redis convention: n exact, -n at least n */
    unsigned flags;
    tcd_loop_fn loop;     /* NULL: always a worker */
    tcd_work_fn work;     /* NULL: never deferred */
    int first_key, last_key, step;
    const char *group, *summary;
} tcd_cmd;

/** Commands outside the table: run on Redis through tc_command(). */
extern const tcd_cmd tcd_cmd_forward;

/** Inside MULTI: queue the request (or answer its queue-time error and
 *  mark the transaction failed). Takes ownership of `r`; returns 1. */
int tcd_multi_queue(tcd_client *cl, tcd_req *r, tcd_buf *out);
/** Free the client's transaction state (queue, flags). */
void tcd_multi_reset(tcd_client *cl);
/** Free an EXEC job's batch. */
void tcd_multi_batch_free(tcd_req **batch, size_t n);
/** A transaction's requests as tc_command_multi() and tc_session_multi()
 *  take them: three arrays (the caller's, freed with tcd_multi_args_free())
 *  pointing into the borrowed requests. */
typedef struct tcd_multi_args {
    int *argcs;
    const char *const **argvs;
    const size_t **lens;
} tcd_multi_args;
/** Fill `a` from the `n` requests; -1 when out of memory (nothing to
 *  free). Any thread. */
int tcd_multi_args_make(tcd_req **batch, size_t n, tcd_multi_args *a);
void tcd_multi_args_free(tcd_multi_args *a);
/** Run an EXEC job's batch (worker thread); `local` (borrowed, may be
 *  NULL) holds the replies tiercached made itself, spliced in. */
void tcd_multi_run(tcd_server *srv, tcd_req **batch, size_t n,
                   tcd_txn_local *local, tcd_buf *out);
/** EXEC's reply: Redis's (`rep`, freed here) as tcd_forward_reply()
 *  writes it, with the replies of `local` (borrowed, may be NULL) at
 *  their places when Redis ran the transaction. Any thread. */
void tcd_multi_reply(tcd_buf *out, tc_result rc, tc_reply *rep,
                     tcd_txn_local *local);
/** A pinned client's EXEC `j` came back from its pin (loop thread): run
 *  the commands the daemon answers itself if Redis ran the transaction,
 *  and complete the reply; resume the client's input. */
void tcd_multi_finish(tcd_client *cl, tcd_job *j);
/** Free what tcd_cmd_exec() made; NULL does nothing. */
void tcd_txn_local_free(tcd_txn_local *l);

/** CLIENT subcommands (cmd_conn.c): 1 when the daemon answers it itself
 *  (SETNAME GETNAME ID SETINFO REPLY); else Redis does. */
int tcd_client_local(const tcd_req *r);
/** 1 for the CLIENT subcommands that need the client's own Redis
 *  connection (TRACKING CACHING NO-EVICT NO-TOUCH: state Redis keeps). */
int tcd_client_pins(const tcd_req *r);
/** CLIENT REPLY OFF/SKIP: 1 when the reply to `r` must not be sent.
 *  Called once per request, in order, before it runs (loop thread). */
int tcd_client_reply_quiet(tcd_client *cl, const tcd_req *r);

/** Case-insensitive lookup; NULL when unknown. */
const tcd_cmd *tcd_cmd_lookup(const char *name, size_t len);
/** Check arity; on failure writes Redis's error to `out` and returns 0. */
int tcd_cmd_check_arity(const tcd_cmd *cmd, const tcd_req *req,
                        tcd_buf *out);
/** Check the key count of a multi-key command against `max_keys`; on
 *  failure writes an error naming --max-keys and returns 0. */
int tcd_cmd_check_keys(const tcd_cmd *cmd, const tcd_req *req,
                       size_t max_keys, tcd_buf *out);
/** "-ERR unknown command '<name>', with args beginning with: ..." */
void tcd_cmd_reply_unknown(const tcd_req *req, tcd_buf *out);
/** Map a library failure to an error reply. Call on the thread that got it
 *  (the detail comes from tc_errmsg()). */
void tcd_reply_tc_error(tcd_buf *out, tc_result r);

#endif
