#include "commands.h"
#include "parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd_impl.h"

/* ---- helpers ------------------------------------------------------------ */

int tcd_arg_is(const tcd_req *r, int i, const char *word)
{
    return r->argl[i] == strlen(word) && !strcasecmp(r->argv[i], word);
}

/* Redis's string2ll: strict decimal, no spaces, no leading '+'. */
int tcd_arg_ll(const tcd_req *r, int i, long long *out)
{
    int64_t v;
    if (tc__parse_i64(r->argv[i], r->argl[i], INT64_MIN, INT64_MAX, &v))
        return -1;
    *out = (long long)v;
    return 0;
}

void tcd_reply_tc_error(tcd_buf *out, tc_result r)
{
    const char *detail = tc_errmsg();
    const char *what;
    switch (r) {
    case TC_TIMEOUT:
        what = "ERR tiercache: L2 timeout";
        break;
    case TC_L2_UNAVAILABLE:
        what = "ERR tiercache: L2 unavailable";
        break;
    case TC_TOO_LARGE:
        what = "ERR tiercache: key or value too large";
        break;
    case TC_DISABLED:
        what = "ERR tiercache: caching is disabled";
        break;
    case TC_AUTH:
        what = "ERR tiercache: L2 refused the credentials";
        break;
    default:
        what = NULL;
    }
    if (what && detail && *detail)
        tcd_reply_errorf(out, "%s (%s)", what, detail);
    else if (what)
        tcd_reply_error(out, what);
    else if (detail && *detail)
        tcd_reply_errorf(out, "ERR tiercache: %s (%s)", tc_strerror(r),
                         detail);
    else
        tcd_reply_errorf(out, "ERR tiercache: %s", tc_strerror(r));
}

void tcd_reply_value(tcd_buf *out, tc_value *v)
{
    tcd_reply_bulk(out, tc_value_data(v), tc_value_len(v));
    tc_value_release(v);
}

/* ---- the table ---------------------------------------------------------- */

#define KEYS1 1, 1, 1
#define NOKEYS 0, 0, 0
static const tcd_cmd table[] = {
    {"get", 2, TCD_CMD_READONLY | TCD_CMD_FAST,
     tcd_cmd_get_loop, tcd_cmd_get_work,
     KEYS1, "string", "Returns the string value of a key."},
    {"set", -3, TCD_CMD_WRITE,
     tcd_cmd_set_loop, tcd_cmd_set_work, KEYS1, "string",
     "Sets the string value of a key (EX, PX, NX, XX)."},
    {"mget", -2, TCD_CMD_READONLY | TCD_CMD_FAST,
     tcd_cmd_mget_loop,
     tcd_cmd_mget_work, 1, -1, 1, "string",
     "Atomically returns the string values of one or more keys."},
    {"del", -2, TCD_CMD_WRITE,
     NULL, tcd_cmd_del_work, 1, -1, 1, "generic",
     "Deletes one or more keys."},
    {"exists", -2, TCD_CMD_READONLY | TCD_CMD_FAST,
     tcd_cmd_exists_loop,
     tcd_cmd_exists_work, 1, -1, 1, "generic",
     "Determines whether one or more keys exist."},
    {"ttl", 2, TCD_CMD_READONLY | TCD_CMD_FAST,
     NULL, tcd_cmd_ttl_work, KEYS1,
     "generic", "Returns the expiration time in seconds of a key."},
    {"pttl", 2, TCD_CMD_READONLY | TCD_CMD_FAST,
     NULL, tcd_cmd_pttl_work, KEYS1,
     "generic", "Returns the expiration time in milliseconds of a key."},
    {"ping", -1, TCD_CMD_FAST,
     tcd_cmd_ping, tcd_cmd_ping_work, NOKEYS, "connection",
     "PINGs Redis: PONG while it answers, an error while it does not."},
    {"echo", 2, TCD_CMD_FAST,
     tcd_cmd_echo, NULL, NOKEYS, "connection",
     "Returns the given string."},
    {"select", 2, TCD_CMD_FAST,
     tcd_cmd_select, NULL, NOKEYS, "connection",
     "Changes the selected database (only 0 exists)."},
    {"multi", 1, TCD_CMD_TXN | TCD_CMD_FAST,
     tcd_cmd_multi, NULL, NOKEYS, "transactions",
     "Starts a transaction (queued here, run by EXEC on one connection)."},
    {"exec", 1, TCD_CMD_TXN,
     tcd_cmd_exec, tcd_cmd_exec_work, NOKEYS, "transactions",
     "Runs the queued commands atomically; one invalidation."},
    {"discard", 1, TCD_CMD_TXN | TCD_CMD_FAST,
     tcd_cmd_discard, NULL, NOKEYS, "transactions",
     "Discards the queued commands."},
    {"watch", -2, TCD_CMD_TXN | TCD_CMD_FAST,
     tcd_cmd_watch, tcd_cmd_forward_work, NOKEYS, "transactions",
     "Not supported yet (needs a connection of its own)."},
    {"quit", -1, TCD_CMD_NOAUTH | TCD_CMD_FAST | TCD_CMD_TXN,
     tcd_cmd_quit, NULL, NOKEYS,
     "connection", "Closes the connection."},
    {"auth", -2, TCD_CMD_NOAUTH | TCD_CMD_FAST,
     tcd_cmd_auth, NULL, NOKEYS,
     "connection", "Authenticates the connection."},
    {"hello", -1, TCD_CMD_NOAUTH | TCD_CMD_FAST,
     tcd_cmd_hello, NULL, NOKEYS,
     "connection", "Handshakes with the server (RESP2 only)."},
    {"client", -2, 0,
     tcd_cmd_client, NULL, NOKEYS, "connection",
     "SETNAME, GETNAME, ID, SETINFO, REPLY here; the others on Redis."},
    {"reset", 1, TCD_CMD_NOAUTH | TCD_CMD_FAST | TCD_CMD_TXN,
     tcd_cmd_reset, tcd_cmd_reset_work, NOKEYS, "connection",
     "Resets the connection (MULTI, WATCH, SELECT, pub/sub, CLIENT REPLY, "
     "AUTH)."},
    {"info", -1, 0,
     NULL, tcd_cmd_info_work, NOKEYS, "server",
     "Returns information and statistics about the server and the cache."},
    {"tc.invalidate", -2, TCD_CMD_WRITE,
     tcd_cmd_inval_loop, tcd_cmd_inval_work,
     NOKEYS, "tiercache",
     "Invalidates a key, a prefix, a glob pattern, tags or every L1."},
    {"tc.set", -5, TCD_CMD_WRITE,
     tcd_cmd_tcset_loop, tcd_cmd_tcset_work,
     KEYS1, "tiercache",
     "Sets a value recorded under tags (TC.INVALIDATE TAGS drops them)."},
    {"tc.ratelimit", -4, TCD_CMD_WRITE,
     tcd_cmd_ratelimit_loop, tcd_cmd_ratelimit_work,
     KEYS1, "tiercache",
     "Counts a request against a limit: [allowed, remaining, reset_ms, "
     "fallback]."},
    {"tc.setmany", -4, TCD_CMD_WRITE,
     tcd_cmd_setmany_loop, tcd_cmd_setmany_work,
     2, -1, 2, "tiercache",
     "Sets many keys with one TTL in one transaction and one invalidation."},
};
#define NCMDS (sizeof(table) / sizeof(table[0]))

const tcd_cmd tcd_cmd_forward = {"forward", -1, 0, NULL, tcd_cmd_forward_work,
                                 NOKEYS, "tiercache",
                                 "Any other command: run on Redis."};

const tcd_cmd *tcd_cmd_lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (strlen(table[i].name) == len && !strcasecmp(table[i].name, name))
            return &table[i];
    return NULL;
}

int tcd_cmd_check_arity(const tcd_cmd *cmd, const tcd_req *req, tcd_buf *out)
{
    if ((cmd->arity > 0 && req->argc != cmd->arity) ||
        (cmd->arity < 0 && req->argc < -cmd->arity)) {
        tcd_reply_errorf(out, "ERR wrong number of arguments for '%s' command",
                         cmd->name);
        return 0;
    }
    return 1;
}

int tcd_cmd_check_keys(const tcd_cmd *cmd, const tcd_req *req,
                       size_t max_keys, tcd_buf *out)
{
    size_t keys;
    if (cmd->last_key >= 0 || req->argc <= cmd->first_key)
        return 1;
    keys = (size_t)(req->argc - cmd->first_key) / (size_t)cmd->step;
    if (keys <= max_keys)
        return 1;
    tcd_reply_errorf(out, "ERR %s of %zu keys exceeds the --max-keys limit "
                          "of %zu", cmd->name, keys, max_keys);
    return 0;
}

void tcd_cmd_reply_unknown(const tcd_req *req, tcd_buf *out)
{
    /* Redis: "'%.128s'" for the name, then quoted args while the list is
     * under 128 bytes, each cut to what is left of the 128. */
    char args[300];
    size_t al = 0;
    args[0] = '\0';
    for (int i = 1; i < req->argc && al < 128; i++) {
        int n = snprintf(args + al, sizeof(args) - al, "'%.*s' ",
                         (int)(128 - al), req->argv[i]);
        if (n < 0)
            break;
        al += (size_t)n < sizeof(args) - al ? (size_t)n : sizeof(args) - al - 1;
    }
    tcd_reply_errorf(out, "ERR unknown command '%.128s', with args beginning "
                          "with: %s", req->argv[0], args);
}
