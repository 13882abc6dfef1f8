/* Connection commands: PING ECHO SELECT QUIT AUTH HELLO CLIENT. */
#include "cmd_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MAX_CLIENT_NAME 1024

/* ---- PING ECHO SELECT QUIT ----------------------------------------------- */

/* PING tells the truth about Redis: it is answered on a worker after a
 * PING of L2, and is an error while Redis does not answer (it was PONG
 * regardless, so every health check said healthy). */
int tcd_cmd_ping(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    if (r->argc > 2) {
        tcd_reply_error(out, "ERR wrong number of arguments for 'ping' command");
        return TCD_DONE;
    }
    return TCD_DEFER;
}

void tcd_cmd_ping_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tc_health h;
    tc_result rc;
    if (tcd_cmd_ping(NULL, r, out) == TCD_DONE)
        return; /* wrong arity, answered */
    rc = tc_cache_health(srv->cache, &h);
    if (rc != TC_OK || !h.l2_up)
        tcd_reply_tc_error(out, rc != TC_OK ? rc : TC_L2_UNAVAILABLE);
    else if (r->argc == 2)
        tcd_reply_bulk(out, r->argv[1], r->argl[1]);
    else
        tcd_reply_status(out, "PONG");
}

int tcd_cmd_echo(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    (void)cl;
    tcd_reply_bulk(out, r->argv[1], r->argl[1]);
    return TCD_DONE;
}

int tcd_cmd_select(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    long long db;
    (void)cl;
    if (tcd_arg_ll(r, 1, &db) != 0 || db < INT_MIN || db > INT_MAX)
        tcd_reply_error(out, "ERR value is not an integer or out of range");
    else if (db != 0)
        tcd_reply_error(out, "ERR DB index is out of range");
    else
        tcd_reply_status(out, "OK");
    return TCD_DONE;
}

int tcd_cmd_quit(tcd_client *cl, tcd_req *r, tcd_buf *out)
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
    if (user_i >= 0 && !tcd_arg_is(r, user_i, "default")) {
        tcd_reply_error(out, "WRONGPASS invalid username-password pair or "
                             "user is disabled.");
        return -1;
    }
    if (!password_ok(cl->srv, r->argv[pass_i], r->argl[pass_i])) {
        static tcd_log_limit auth_failures;
        /* A client can fail AUTH at will: one line a second at most. */
        tcd_log_limited(&auth_failures, 1000, TC_LOG_WARN,
                        "client %llu: AUTH failed",
                        (unsigned long long)cl->id);
        tcd_reply_error(out, "WRONGPASS invalid username-password pair or "
                             "user is disabled.");
        return -1;
    }
    cl->authed = 1;
    return 0;
}

int tcd_cmd_auth(tcd_client *cl, tcd_req *r, tcd_buf *out)
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

int tcd_cmd_hello(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    const char *pw = cl->srv->cfg->password;
    int need_auth = pw && *pw && !cl->authed;
    int i = 2;
    if (r->argc >= 2) {
        long long ver;
        if (tcd_arg_ll(r, 1, &ver) != 0) {
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
        if (tcd_arg_is(r, i, "AUTH") && left >= 2)
            i += 2;
        else if (tcd_arg_is(r, i, "SETNAME") && left >= 1)
            i += 1;
        else {
            tcd_reply_errorf(out, "ERR Syntax error in HELLO option '%.64s'",
                             r->argv[i]);
            return TCD_DONE;
        }
    }
    for (i = 2; i < r->argc; i++) {
        if (tcd_arg_is(r, i, "AUTH")) {
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
        if (tcd_arg_is(r, i, "SETNAME")) {
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

/* The CLIENT subcommands answered here, with Redis's arity (the state
 * they read or change is the daemon's connection, not a pooled one). */
static const struct {
    const char *name;
    int arity;
} local_subs[] = {{"setname", 3}, {"getname", 2}, {"id", 2},
                  {"setinfo", 4}, {"reply", 3}};

int tcd_client_local(const tcd_req *r)
{
    if (r->argc < 2)
        return 0;
    for (size_t i = 0; i < sizeof(local_subs) / sizeof(local_subs[0]); i++)
        if (tcd_arg_is(r, 1, local_subs[i].name))
            return 1;
    return 0;
}

int tcd_client_pins(const tcd_req *r)
{
    return r->argc >= 2 &&
           (tcd_arg_is(r, 1, "tracking") || tcd_arg_is(r, 1, "caching") ||
            tcd_arg_is(r, 1, "no-evict") || tcd_arg_is(r, 1, "no-touch"));
}

static int is_client_reply(const tcd_req *r)
{
    return r->argc >= 2 && tcd_arg_is(r, 0, "client") &&
           tcd_arg_is(r, 1, "reply");
}

/* As Redis: OFF silences every reply, errors included, until
 * CLIENT REPLY ON (whose +OK is sent); SKIP silences the next command's. */
int tcd_client_reply_quiet(tcd_client *cl, const tcd_req *r)
{
    int quiet = cl->reply_off || cl->reply_skip;
    cl->reply_skip = 0; /* consumed by this command */
    if (is_client_reply(r) && r->argc == 3 && tcd_arg_is(r, 2, "on"))
        return 0;
    if (r->argc == 1 && tcd_arg_is(r, 0, "reset"))
        return 0; /* RESET turns replies on, then answers */
    return quiet;
}

static void client_reply(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    if (tcd_arg_is(r, 2, "on")) {
        cl->reply_off = cl->reply_skip = 0;
        tcd_reply_status(out, "OK");
    } else if (tcd_arg_is(r, 2, "off")) {
        cl->reply_off = 1;
    } else if (tcd_arg_is(r, 2, "skip")) {
        cl->reply_skip = !cl->reply_off;
    } else {
        tcd_reply_error(out, "ERR syntax error");
    }
}

int tcd_cmd_client(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    size_t i = 0, n = sizeof(local_subs) / sizeof(local_subs[0]);
    while (i < n && !tcd_arg_is(r, 1, local_subs[i].name))
        i++;
    if (i == n) { /* route() sends the others to Redis */
        tcd_reply_errorf(out, "ERR unknown subcommand '%.128s'. Try CLIENT "
                              "HELP.", r->argv[1]);
    } else if (r->argc != local_subs[i].arity) {
        tcd_reply_errorf(out, "ERR wrong number of arguments for 'client|%s' "
                              "command", local_subs[i].name);
    } else if (tcd_arg_is(r, 1, "SETNAME")) {
        if (set_name(cl, r->argv[2], r->argl[2], out) == 0)
            tcd_reply_status(out, "OK");
    } else if (tcd_arg_is(r, 1, "GETNAME")) {
        if (cl->name)
            tcd_reply_cstr(out, cl->name);
        else
            tcd_reply_nil(out);
    } else if (tcd_arg_is(r, 1, "ID")) {
        tcd_reply_int(out, (long long)cl->id);
    } else if (tcd_arg_is(r, 1, "REPLY")) {
        client_reply(cl, r, out);
    } else {
        /* SETINFO: newer clients announce themselves; nothing to keep. */
        tcd_reply_status(out, "OK");
    }
    return TCD_DONE;
}

/* ---- RESET ---------------------------------------------------------------- */

/* As Redis's RESET: out of MULTI, name cleared, replies on, AUTH needed
 * again when a password is set; a pinned client's connection goes (its
 * thread closes it, so Redis drops WATCH, SELECT, subscriptions, MONITOR,
 * CLIENT TRACKING) and it is an ordinary client again (pin.c). */
int tcd_cmd_reset(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    const char *pw = cl->srv->cfg->password;
    (void)r;
    tcd_multi_reset(cl);
    free(cl->name);
    cl->name = NULL;
    cl->reply_off = cl->reply_skip = 0;
    if (pw && *pw)
        cl->authed = 0;
    if (cl->pin) {
        cl->pin_hold = 1; /* where the next command goes depends on it */
        return TCD_DEFER;
    }
    tcd_reply_status(out, "RESET");
    return TCD_DONE;
}

void tcd_cmd_reset_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    (void)srv;
    (void)r;
    tcd_reply_status(out, "RESET"); /* unpinned: answered on the loop */
}
