/* Server commands: INFO COMMAND. */
#include "cmd_impl.h"

#include "stats.h"

/* ---- INFO COMMAND ---------------------------------------------------------- */

void tcd_cmd_info_work(tcd_server *srv, tcd_req *r, tcd_buf *out)
{
    tcd_stats_info(srv, r, out);
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

int tcd_cmd_command(tcd_client *cl, tcd_req *r, tcd_buf *out)
{
    size_t ncmds;
    const tcd_cmd *table = tcd_cmd_table(&ncmds);
    (void)cl;
    if (r->argc == 1) {
        tcd_reply_array(out, (long long)ncmds);
        for (size_t i = 0; i < ncmds; i++)
            command_info(&table[i], out);
    } else if (tcd_arg_is(r, 1, "COUNT") && r->argc == 2) {
        tcd_reply_int(out, (long long)ncmds);
    } else if (tcd_arg_is(r, 1, "LIST") && r->argc == 2) {
        tcd_reply_array(out, (long long)ncmds);
        for (size_t i = 0; i < ncmds; i++)
            tcd_reply_cstr(out, table[i].name);
    } else if (tcd_arg_is(r, 1, "INFO")) {
        if (r->argc == 2) {
            tcd_reply_array(out, (long long)ncmds);
            for (size_t i = 0; i < ncmds; i++)
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
    } else if (tcd_arg_is(r, 1, "DOCS")) {
        if (r->argc == 2) {
            tcd_reply_array(out, 2 * (long long)ncmds);
            for (size_t i = 0; i < ncmds; i++)
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
