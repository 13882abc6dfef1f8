#include "commands.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "stats.h"

#define MAX_CLIENT_NAME 1024
/* MGET/EXISTS/DEL keys handled with stack arrays up to this many. */
#define SMALL_KEYS 32

/* ---- helpers ------------------------------------------------------------ */

static int arg_is(const tcd_req *r, int i, const char *word)
{
    return r->argl[i] == strlen(word) && !strcasecmp(r->argv[i], word);
}

/* Redis's string2ll: strict decimal, no spaces, no leading '+'. */
static int arg_ll(const tcd_req *r, int i, long long *out)
{
    const char *s = r->argv[i];
    size_t n = r->argl[i];
    char *end;
    long long v;
    if (n == 0 || n > 20 || s[0] == ' ' || s[0] == '+' ||
        (n > 1 && s[0] == '0') || (n > 2 && s[0] == '-' && s[1] == '0'))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end != s + n)
        return -1;
    *out = v;
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

static void reply_value(tcd_buf *out, tc_value *v)
{
    tcd_reply_bulk(out, tc_value_data(v), tc_value_len(v));
    tc_value_release(v);
}

/* ---- PING ECHO SELECT QUIT ----------------------------------------------- */

static int cmd_ping(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    if (r->argc > 2)
        tcd_reply_error(out, "ERR wrong number of arguments for 'ping' command");
    else if (r->argc == 2)
        tcd_reply_bulk(out, r->argv[1], r->argl[1]);
    else
        tcd_reply_status(out, "PONG");
    return TCD_DONE;
}

static int cmd_echo(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    tcd_reply_bulk(out, r->argv[1], r->argl[1]);
    return TCD_DONE;
}

static int cmd_select(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    long long db;
    (void)cl;
    if (arg_ll(r, 1, &db) != 0 || db < INT_MIN || db > INT_MAX)
        tcd_reply_error(out, "ERR value is not an integer or out of range");
    else if (db != 0)
        tcd_reply_error(out, "ERR DB index is out of range");
    else
        tcd_reply_status(out, "OK");
    return TCD_DONE;
}

static int cmd_quit(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    (void)r;
    tcd_reply_status(out, "OK");
    return TCD_CLOSE;
}

/* ---- AUTH HELLO CLIENT ----------------------------------------------------- */

/* Constant-time comparison: the time taken does not reveal the prefix. */
static int password_ok(const tcd_server *srv, const char *p, size_t n)
{
    const char *want = srv->cfg->password;
    size_t wn = strlen(want);
    unsigned char diff = (unsigned char)(wn != n);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(p[i] ^ want[wn ? i % wn : 0]);
    return diff == 0;
}

static int try_auth(tcd_client *cl, tcd_req *r, int user_i, int pass_i,
                    tcd_buf *out)
{
    if (user_i >= 0 && !arg_is(r, user_i, "default")) {
        tcd_reply_error(out, "WRONGPASS invalid username-password pair or "
                             "user is disabled.");
        return -1;
    }
    if (!password_ok(cl->srv, r->argv[pass_i], r->argl[pass_i])) {
        tcd_log(TC_LOG_WARN, "client %llu: AUTH failed",
                (unsigned long long)cl->id);
        tcd_reply_error(out, "WRONGPASS invalid username-password pair or "
                             "user is disabled.");
        return -1;
    }
    cl->authed = 1;
    return 0;
}

static int cmd_auth(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    const char *pw = cl->srv->cfg->password;
    if (r->argc > 3) {
        tcd_reply_error(out, "ERR syntax error");
        return TCD_DONE;
    }
    if (!pw || !*pw) {
        tcd_reply_error(out, "ERR AUTH <password> called without any password "
                             "configured for the default user. Are you sure "
                             "your configuration is correct?");
        return TCD_DONE;
    }
    if (try_auth(cl, r, r->argc == 3 ? 1 : -1, r->argc - 1, out) == 0)
        tcd_reply_status(out, "OK");
    return TCD_DONE;
}

static int valid_name(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '!' || s[i] > '~')
            return 0;
    return 1;
}

static int set_name(tcd_client *cl, const char *s, size_t n, tcd_buf *out)
{
    char *copy = NULL;
    if (!valid_name(s, n)) {
        tcd_reply_error(out, "ERR Client names cannot contain spaces, newlines "
                             "or special characters.");
        return -1;
    }
    if (n > MAX_CLIENT_NAME) {
        tcd_reply_error(out, "ERR Client name is too long");
        return -1;
    }
    if (n > 0) {
        copy = malloc(n + 1);
        if (!copy) {
            tcd_reply_error(out, "ERR out of memory");
            return -1;
        }
        memcpy(copy, s, n);
        copy[n] = '\0';
    }
    free(cl->name);
    cl->name = copy;
    return 0;
}

static int cmd_hello(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    const char *pw = cl->srv->cfg->password;
    int need_auth = pw && *pw && !cl->authed;
    int i = 2;
    if (r->argc >= 2) {
        long long ver;
        if (arg_ll(r, 1, &ver) != 0) {
            tcd_reply_error(out, "ERR Protocol version is not an integer or "
                                 "out of range");
            return TCD_DONE;
        }
        if (ver != 2) {
            tcd_reply_error(out, "NOPROTO sorry, this protocol version is "
                                 "not supported");
            return TCD_DONE;
        }
    }
    /* Options: validate all first, as Redis does, then apply. */
    for (i = 2; i < r->argc; i++) {
        int left = r->argc - i - 1;
        if (arg_is(r, i, "AUTH") && left >= 2)
            i += 2;
        else if (arg_is(r, i, "SETNAME") && left >= 1)
            i += 1;
        else {
            tcd_reply_errorf(out, "ERR Syntax error in HELLO option '%.64s'",
                             r->argv[i]);
            return TCD_DONE;
        }
    }
    for (i = 2; i < r->argc; i++) {
        if (arg_is(r, i, "AUTH")) {
            if (!pw || !*pw) {
                tcd_reply_error(out, "ERR AUTH <password> called without any "
                                     "password configured for the default "
                                     "user. Are you sure your configuration "
                                     "is correct?");
                return TCD_DONE;
            }
            if (try_auth(cl, r, i + 1, i + 2, out) != 0)
                return TCD_DONE;
            need_auth = 0;
            i += 2;
        } else {
            i += 1;
        }
    }
    if (need_auth) {
        tcd_reply_error(out, "NOAUTH HELLO must be called with the client "
                             "already authenticated, otherwise the HELLO "
                             "<proto> AUTH <user> <pass> option can be used "
                             "to authenticate the client and select the RESP "
                             "protocol version at the same time");
        return TCD_DONE;
    }
    for (i = 2; i < r->argc; i++) {
        if (arg_is(r, i, "SETNAME")) {
            if (set_name(cl, r->argv[i + 1], r->argl[i + 1], out) != 0)
                return TCD_DONE;
            i += 1;
        } else {
            i += 2;
        }
    }
    tcd_reply_array(out, 14);
    tcd_reply_cstr(out, "server");
    tcd_reply_cstr(out, "redis");
    tcd_reply_cstr(out, "version");
    tcd_reply_cstr(out, TCD_REDIS_COMPAT_VERSION);
    tcd_reply_cstr(out, "proto");
    tcd_reply_int(out, 2);
    tcd_reply_cstr(out, "id");
    tcd_reply_int(out, (long long)cl->id);
    tcd_reply_cstr(out, "mode");
    tcd_reply_cstr(out, "standalone");
    tcd_reply_cstr(out, "role");
    tcd_reply_cstr(out, "master");
    tcd_reply_cstr(out, "modules");
    tcd_reply_array(out, 0);
    return TCD_DONE;
}

static int cmd_client(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    if (arg_is(r, 1, "SETNAME") && r->argc == 3) {
        if (set_name(cl, r->argv[2], r->argl[2], out) == 0)
            tcd_reply_status(out, "OK");
    } else if (arg_is(r, 1, "GETNAME") && r->argc == 2) {
        if (cl->name)
            tcd_reply_cstr(out, cl->name);
        else
            tcd_reply_nil(out);
    } else if (arg_is(r, 1, "ID") && r->argc == 2) {
        tcd_reply_int(out, (long long)cl->id);
    } else if (arg_is(r, 1, "SETINFO") && r->argc == 4) {
        /* Newer clients announce themselves; nothing to keep. */
        tcd_reply_status(out, "OK");
    } else {
        tcd_reply_errorf(out, "ERR unknown subcommand '%.128s'. Try CLIENT "
                              "HELP.", r->argv[1]);
    }
    return TCD_DONE;
}

/* ---- GET MGET EXISTS ------------------------------------------------------- */

static int cmd_get_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    tc_value *v = NULL;
    if (tc_peek(cl->srv->cache, r->argv[1], r->argl[1], &v) == TC_OK) {
        reply_value(out, v);
        return TCD_DONE;
    }
    return TCD_DEFER;
}

static void cmd_get_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_value *v = NULL;
    tc_result rc = tc_get(srv->cache, r->argv[1], r->argl[1], &v);
    if (rc == TC_OK)
        reply_value(out, v);
    else if (rc == TC_NOT_FOUND)
        tcd_reply_nil(out);
    else
        tcd_reply_tc_error(out, rc);
}

static int cmd_mget_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    tc_value *small[SMALL_KEYS];
    int n = r->argc - 1;
    if (n > SMALL_KEYS)
        return TCD_DEFER;
    for (int i = 0; i < n; i++) {
        if (tc_peek(cl->srv->cache, r->argv[i + 1], r->argl[i + 1],
                    &small[i]) != TC_OK) {
            for (int j = 0; j < i; j++)
                tc_value_release(small[j]);
            return TCD_DEFER;
        }
    }
    tcd_reply_array(out, n);
    for (int i = 0; i < n; i++)
        reply_value(out, small[i]);
    return TCD_DONE;
}

static void cmd_mget_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    size_t n = (size_t)r->argc - 1;
    tc_value **vals = calloc(n, sizeof(*vals));
    tc_result *res = calloc(n, sizeof(*res));
    tc_result rc;
    size_t i;
    if (!vals || !res) {
        free(vals);
        free(res);
        tcd_reply_error(out, "ERR out of memory");
        return;
    }
    rc = tc_mget(srv->cache, n, (const void *const *)(r->argv + 1),
                 r->argl + 1, vals, res);
    for (i = 0; i < n; i++)
        if (res[i] != TC_OK && res[i] != TC_NOT_FOUND)
            break;
    if (i < n || (rc != TC_OK && rc != TC_NOT_FOUND)) {
        /* Never a silent nil for a key that could not be looked up. */
        tcd_reply_tc_error(out, i < n ? res[i] : rc);
    } else {
        tcd_reply_array(out, (long long)n);
        for (i = 0; i < n; i++) {
            if (res[i] == TC_OK && vals[i]) {
                tcd_reply_bulk(out, tc_value_data(vals[i]),
                               tc_value_len(vals[i]));
            } else {
                tcd_reply_nil(out);
            }
        }
    }
    for (i = 0; i < n; i++)
        tc_value_release(vals[i]);
    free(vals);
    free(res);
}

static int cmd_exists_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
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

static void cmd_exists_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    long long n = 0;
    for (int i = 1; i < r->argc; i++) {
        tc_value *v = NULL;
        int64_t ttl;
        tc_result rc;
        if (tc_peek(srv->cache, r->argv[i], r->argl[i], &v) == TC_OK) {
            tc_value_release(v);
            n++;
            continue;
        }
        rc = tc_pttl(srv->cache, r->argv[i], r->argl[i], &ttl);
        if (rc == TC_OK) {
            n++;
        } else if (rc != TC_NOT_FOUND) {
            tcd_reply_tc_error(out, rc);
            return;
        }
    }
    tcd_reply_int(out, n);
}

/* ---- SET DEL TTL PTTL ------------------------------------------------------ */

/* Parse SET's options into `o`; on a syntax problem write the error. */
static int parse_set(const tcd_req *r, tc_set_opts *o, tcd_buf *out)
{
    int have_expire = 0;
    memset(o, 0, sizeof(*o));
    for (int i = 3; i < r->argc; i++) {
        if (arg_is(r, i, "NX") && !(o->flags & TC_SET_XX)) {
            o->flags |= TC_SET_NX;
        } else if (arg_is(r, i, "XX") && !(o->flags & TC_SET_NX)) {
            o->flags |= TC_SET_XX;
        } else if ((arg_is(r, i, "EX") || arg_is(r, i, "PX")) &&
                   !have_expire && i + 1 < r->argc) {
            int ex = arg_is(r, i, "EX");
            long long v;
            if (arg_ll(r, i + 1, &v) != 0) {
                if (out)
                    tcd_reply_error(out, "ERR value is not an integer or out "
                                         "of range");
                return -1;
            }
            if (v <= 0 || (ex && v > LLONG_MAX / 1000)) {
                if (out)
                    tcd_reply_error(out, "ERR invalid expire time in 'set' "
                                         "command");
                return -1;
            }
            o->l2_ttl_ms = (uint64_t)v * (ex ? 1000u : 1u);
            have_expire = 1;
            i++;
        } else if (arg_is(r, i, "KEEPTTL") || arg_is(r, i, "GET") ||
                   arg_is(r, i, "EXAT") || arg_is(r, i, "PXAT")) {
            if (out)
                tcd_reply_errorf(out, "ERR SET option '%s' is not supported "
                                      "by tiercached", r->argv[i]);
            return -1;
        } else {
            if (out)
                tcd_reply_error(out, "ERR syntax error");
            return -1;
        }
    }
    return 0;
}

static int cmd_set_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    tc_set_opts o;
    (void)cl;
    return parse_set(r, &o, out) == 0 ? TCD_DEFER : TCD_DONE;
}

static void cmd_set_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_set_opts o;
    tc_result rc;
    if (parse_set(r, &o, out) != 0)
        return;
    rc = tc_set_ex(srv->cache, r->argv[1], r->argl[1], r->argv[2], r->argl[2],
                   &o);
    if (rc == TC_OK) {
        tcd_reply_status(out, "OK");
    } else if (rc == TC_NOT_STORED) {
        tcd_reply_nil(out);
    } else {
        tcd_reply_tc_error(out, rc);
    }
}

static void cmd_del_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
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

static void cmd_ttl_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    ttl_common(srv, r, out, 0);
}

static void cmd_pttl_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    ttl_common(srv, r, out, 1);
}

/* ---- TC.INVALIDATE ------------------------------------------------------- */

static int cmd_inval_loop(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    if (r->argc == 2)
        return TCD_DEFER;
    if (r->argc == 3 && (arg_is(r, 1, "PREFIX") || arg_is(r, 1, "PATTERN"))) {
        if (arg_is(r, 1, "PATTERN") && strlen(r->argv[2]) != r->argl[2]) {
            tcd_reply_error(out, "ERR pattern must not contain NUL bytes");
            return TCD_DONE;
        }
        return TCD_DEFER;
    }
    tcd_reply_error(out, "ERR syntax error: TC.INVALIDATE key | PREFIX p | "
                         "PATTERN glob | ALL");
    return TCD_DONE;
}

static void cmd_inval_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_result rc;
    if (r->argc == 2 && arg_is(r, 1, "ALL"))
        rc = tc_invalidate_all(srv->cache);
    else if (r->argc == 2)
        rc = tc_del(srv->cache, r->argv[1], r->argl[1]);
    else if (r->argc == 3 && arg_is(r, 1, "PREFIX"))
        rc = tc_invalidate_prefix(srv->cache, r->argv[2], r->argl[2]);
    else if (r->argc == 3 && arg_is(r, 1, "PATTERN") &&
             strlen(r->argv[2]) == r->argl[2])
        rc = tc_invalidate_pattern(srv->cache, r->argv[2]);
    else {
        cmd_inval_loop(NULL, r, out); /* writes the right error */
        return;
    }
    if (rc == TC_OK)
        tcd_reply_status(out, "OK");
    else
        tcd_reply_tc_error(out, rc);
}

/* ---- INFO COMMAND ---------------------------------------------------------- */

static void cmd_info_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tcd_stats_info(srv, r, out);
}

static int cmd_command(tcd_client *cl, tcd_req *r, tcd_buf *out);

#define KEYS1 1, 1, 1
#define NOKEYS 0, 0, 0
static const tcd_cmd table[] = {
    {"get", 2, TCD_CMD_READONLY | TCD_CMD_FAST, cmd_get_loop, cmd_get_work,
     KEYS1, "string", "Returns the string value of a key."},
    {"set", -3, TCD_CMD_WRITE, cmd_set_loop, cmd_set_work, KEYS1, "string",
     "Sets the string value of a key (EX, PX, NX, XX)."},
    {"mget", -2, TCD_CMD_READONLY | TCD_CMD_FAST, cmd_mget_loop,
     cmd_mget_work, 1, -1, 1, "string",
     "Atomically returns the string values of one or more keys."},
    {"del", -2, TCD_CMD_WRITE, NULL, cmd_del_work, 1, -1, 1, "generic",
     "Deletes one or more keys."},
    {"exists", -2, TCD_CMD_READONLY | TCD_CMD_FAST, cmd_exists_loop,
     cmd_exists_work, 1, -1, 1, "generic",
     "Determines whether one or more keys exist."},
    {"ttl", 2, TCD_CMD_READONLY | TCD_CMD_FAST, NULL, cmd_ttl_work, KEYS1,
     "generic", "Returns the expiration time in seconds of a key."},
    {"pttl", 2, TCD_CMD_READONLY | TCD_CMD_FAST, NULL, cmd_pttl_work, KEYS1,
     "generic", "Returns the expiration time in milliseconds of a key."},
    {"ping", -1, TCD_CMD_FAST, cmd_ping, NULL, NOKEYS, "connection",
     "Returns the server's liveliness response."},
    {"echo", 2, TCD_CMD_FAST, cmd_echo, NULL, NOKEYS, "connection",
     "Returns the given string."},
    {"select", 2, TCD_CMD_FAST, cmd_select, NULL, NOKEYS, "connection",
     "Changes the selected database (only 0 exists)."},
    {"quit", -1, TCD_CMD_NOAUTH | TCD_CMD_FAST, cmd_quit, NULL, NOKEYS,
     "connection", "Closes the connection."},
    {"auth", -2, TCD_CMD_NOAUTH | TCD_CMD_FAST, cmd_auth, NULL, NOKEYS,
     "connection", "Authenticates the connection."},
    {"hello", -1, TCD_CMD_NOAUTH | TCD_CMD_FAST, cmd_hello, NULL, NOKEYS,
     "connection", "Handshakes with the server (RESP2 only)."},
    {"client", -2, 0, cmd_client, NULL, NOKEYS, "connection",
     "SETNAME, GETNAME, ID."},
    {"command", -1, 0, cmd_command, NULL, NOKEYS, "server",
     "Returns detailed information about all commands."},
    {"info", -1, 0, NULL, cmd_info_work, NOKEYS, "server",
     "Returns information and statistics about the server and the cache."},
    {"tc.invalidate", -2, TCD_CMD_WRITE, cmd_inval_loop, cmd_inval_work,
     NOKEYS, "tiercache",
     "Invalidates a key, a prefix, a glob pattern or every L1."},
};
#define NCMDS (sizeof(table) / sizeof(table[0]))

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

static void command_info(const tcd_cmd *c, tcd_buf *out)
{
    int nflags = 0;
    const char *flags[4];
    if (c->flags & TCD_CMD_WRITE)
        flags[nflags++] = "write";
    if (c->flags & TCD_CMD_READONLY)
        flags[nflags++] = "readonly";
    if (c->flags & TCD_CMD_FAST)
        flags[nflags++] = "fast";
    if (c->flags & TCD_CMD_NOAUTH)
        flags[nflags++] = "no_auth";
    tcd_reply_array(out, 10);
    tcd_reply_cstr(out, c->name);
    tcd_reply_int(out, c->arity);
    tcd_reply_array(out, nflags);
    for (int i = 0; i < nflags; i++)
        tcd_reply_status(out, flags[i]);
    tcd_reply_int(out, c->first_key);
    tcd_reply_int(out, c->last_key);
    tcd_reply_int(out, c->step);
    tcd_reply_array(out, 0); /* ACL categories */
    tcd_reply_array(out, 0); /* tips */
    tcd_reply_array(out, 0); /* key specs */
    tcd_reply_array(out, 0); /* subcommands */
}

static void command_docs(const tcd_cmd *c, tcd_buf *out)
{
    tcd_reply_cstr(out, c->name);
    tcd_reply_array(out, 6);
    tcd_reply_cstr(out, "summary");
    tcd_reply_cstr(out, c->summary);
    tcd_reply_cstr(out, "since");
    tcd_reply_cstr(out, "1.0.0");
    tcd_reply_cstr(out, "group");
    tcd_reply_cstr(out, c->group);
}

static int cmd_command(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    if (r->argc == 1) {
        tcd_reply_array(out, (long long)NCMDS);
        for (size_t i = 0; i < NCMDS; i++)
            command_info(&table[i], out);
    } else if (arg_is(r, 1, "COUNT") && r->argc == 2) {
        tcd_reply_int(out, (long long)NCMDS);
    } else if (arg_is(r, 1, "LIST") && r->argc == 2) {
        tcd_reply_array(out, (long long)NCMDS);
        for (size_t i = 0; i < NCMDS; i++)
            tcd_reply_cstr(out, table[i].name);
    } else if (arg_is(r, 1, "INFO")) {
        if (r->argc == 2) {
            tcd_reply_array(out, (long long)NCMDS);
            for (size_t i = 0; i < NCMDS; i++)
                command_info(&table[i], out);
        } else {
            tcd_reply_array(out, r->argc - 2);
            for (int i = 2; i < r->argc; i++) {
                const tcd_cmd *c = tcd_cmd_lookup(r->argv[i], r->argl[i]);
                if (c)
                    command_info(c, out);
                else
                    tcd_reply_nil(out);
            }
        }
    } else if (arg_is(r, 1, "DOCS")) {
        if (r->argc == 2) {
            tcd_reply_array(out, 2 * (long long)NCMDS);
            for (size_t i = 0; i < NCMDS; i++)
                command_docs(&table[i], out);
        } else {
            long long known = 0;
            for (int i = 2; i < r->argc; i++)
                known += tcd_cmd_lookup(r->argv[i], r->argl[i]) != NULL;
            tcd_reply_array(out, 2 * known);
            for (int i = 2; i < r->argc; i++) {
                const tcd_cmd *c = tcd_cmd_lookup(r->argv[i], r->argl[i]);
                if (c)
                    command_docs(c, out);
            }
        }
    } else {
        tcd_reply_errorf(out, "ERR unknown subcommand or wrong number of "
                              "arguments for '%.128s'. Try COMMAND HELP.",
                         r->argv[1]);
    }
    return TCD_DONE;
}
